//! HS256 (RFC 7518 §3.2): HMAC-SHA256, and the unpadded base64url JWS uses (RFC 7515 §2).

use sha2::{Digest, Sha256};

const BLOCK: usize = 64;

/// HMAC-SHA256 (RFC 2104).
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad: Vec<u8> = block.iter().map(|b| b ^ 0x36).collect();
    let outer_pad: Vec<u8> = block.iter().map(|b| b ^ 0x5c).collect();
    let inner = Sha256::new().chain_update(&inner_pad).chain_update(message).finalize();
    Sha256::new().chain_update(&outer_pad).chain_update(inner).finalize().into()
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (u32::from(b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

/// Unpadded base64url; `None` for any other character, padding included.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut bits = 0u32;
    let mut count = 0;
    for c in text.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u32;
        bits = (bits << 6) | v;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    // Leftover bits must be zero (canonical encoding).
    (bits == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7515 appendix A.1: the HS256 example, with its key as a JWK `k`.
    const KEY: &str =
        "AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow";
    const HEADER: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9";
    const PAYLOAD: &str =
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ";
    const SIGNATURE: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    #[test]
    fn rfc7515_a1_signs_to_the_published_signature() {
        let key = b64url_decode(KEY).unwrap();
        let input = format!("{HEADER}.{PAYLOAD}");
        assert_eq!(b64url_encode(&hmac_sha256(&key, input.as_bytes())), SIGNATURE);
    }

    #[test]
    fn rfc7515_a1_header_and_payload_decode_to_the_published_octets() {
        let header = b64url_decode(HEADER).unwrap();
        assert_eq!(header, b"{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}");
        assert_eq!(b64url_encode(&header), HEADER);
        let payload = b64url_decode(PAYLOAD).unwrap();
        assert!(payload.starts_with(b"{\"iss\":\"joe\",\r\n \"exp\":1300819380"));
        assert_eq!(b64url_encode(&payload), PAYLOAD);
    }

    #[test]
    fn hmac_matches_rfc4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }

    #[test]
    fn base64url_is_strict() {
        assert_eq!(b64url_decode("YQ").unwrap(), b"a");
        assert!(b64url_decode("YQ==").is_none(), "no padding");
        assert!(b64url_decode("Y+Q").is_none(), "no standard-alphabet characters");
        assert!(b64url_decode("YR").is_none(), "non-zero leftover bits");
        assert!(b64url_decode("Y").is_none());
    }
}
