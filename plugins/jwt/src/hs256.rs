//! HS256 (RFC 7518 §3.2) on RustCrypto's `hmac`, and the unpadded base64url JWS uses
//! (RFC 7515 §2) on the `base64` crate's strict engine.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 of `message` under `key`.
pub(crate) fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// Whether `signature` is the HMAC-SHA256 of `message` under `key`, compared in constant
/// time (by `hmac`, through `subtle`).
pub(crate) fn hmac_sha256_verify(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("any key length"));
    mac.update(message);
    mac.verify_slice(signature).is_ok()
}

pub(crate) fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Unpadded base64url; `None` for any other character, padding included, and for
/// non-canonical trailing bits.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(text).ok()
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
    fn hmac_matches_rfc4231_case_2_and_verifies_only_its_own_tag() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        let hex: String = mac.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
        assert!(hmac_sha256_verify(b"Jefe", b"what do ya want for nothing?", &mac));
        let mut wrong = mac;
        wrong[31] ^= 1;
        assert!(!hmac_sha256_verify(b"Jefe", b"what do ya want for nothing?", &wrong));
        assert!(!hmac_sha256_verify(b"Jefe", b"what do ya want for nothing?", &mac[..31]));
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
