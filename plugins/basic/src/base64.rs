//! Strict base64 (RFC 4648, standard alphabet, padded), as RFC 7617 asks. Python's decoder,
//! which DRF uses, skips junk characters; a strict decoder refuses them.

fn value(byte: u8) -> Option<u32> {
    Some(u32::from(match byte {
        b'A'..=b'Z' => byte - b'A',
        b'a'..=b'z' => byte - b'a' + 26,
        b'0'..=b'9' => byte - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => return None,
    }))
}

/// Decodes `input`, or `None` when it is not canonical padded base64.
pub(crate) fn decode(input: &[u8]) -> Option<Vec<u8>> {
    if !input.len().is_multiple_of(4) {
        return None;
    }
    let mut out = Vec::with_capacity(input.len() / 4 * 3);
    let chunks = input.chunks_exact(4);
    let last = chunks.len().checked_sub(1);
    for (i, chunk) in chunks.enumerate() {
        let padding = chunk.iter().rev().take_while(|&&b| b == b'=').count();
        if padding > 2 || (padding > 0 && Some(i) != last) {
            return None;
        }
        let mut bits = 0u32;
        for &byte in &chunk[..4 - padding] {
            bits = (bits << 6) | value(byte)?;
        }
        bits <<= 6 * padding as u32;
        let bytes = bits.to_be_bytes();
        // Non-zero bits under the padding are not canonical.
        let keep = 3 - padding;
        if bytes[1 + keep..].iter().any(|&b| b != 0) {
            return None;
        }
        out.extend_from_slice(&bytes[1..1 + keep]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn decodes_canonical_input_only() {
        assert_eq!(decode(b"YWxpY2U6cHc=").as_deref(), Some(&b"alice:pw"[..]));
        assert_eq!(decode(b"YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode(b"").as_deref(), Some(&b""[..]));
        assert_eq!(decode(b"YWxpY2U6cHc"), None, "missing padding");
        assert_eq!(decode(b"YW*pY2U6cHc="), None, "junk character");
        assert_eq!(decode(b"YR=="), None, "non-zero bits under the padding");
        assert_eq!(decode(b"YQ==YQ=="), None, "padding in the middle");
        assert_eq!(decode(b"Y==="), None, "too much padding");
    }
}
