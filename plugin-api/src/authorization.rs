//! The `Authorization` header as DRF's `get_authorization_header(request).split()` sees it.

use crate::request::RequestView;

/// The `Authorization` header split on runs of ASCII whitespace, as Python's
/// `bytes.split()` does: `Basic  <b64>` and a tab both give two parts; `Basic ` alone gives
/// one. Empty when there is no header. Repeated headers arrive joined with `, `, so their
/// parts count too (DRF then says the credentials "should not contain spaces").
pub fn authorization_parts<'a>(request: &RequestView<'a>) -> Vec<&'a [u8]> {
    request
        .header_bytes("authorization")
        .map(|value| {
            value
                .split(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'))
                .filter(|part| !part.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// True when the first part is `keyword`, compared case-insensitively.
pub fn keyword_matches(parts: &[&[u8]], keyword: &str) -> bool {
    parts.first().is_some_and(|first| first.eq_ignore_ascii_case(keyword.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Header;

    fn parts(value: &[u8]) -> Vec<Vec<u8>> {
        let headers = [Header::new("authorization", value)];
        let req = RequestView::new("GET", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
        authorization_parts(&req).into_iter().map(<[u8]>::to_vec).collect()
    }

    #[test]
    fn splits_like_python_bytes_split() {
        assert_eq!(parts(b"Basic  abc"), vec![b"Basic".to_vec(), b"abc".to_vec()]);
        assert_eq!(parts(b"Token\tk\x0b"), vec![b"Token".to_vec(), b"k".to_vec()]);
        assert_eq!(parts(b"Basic "), vec![b"Basic".to_vec()]);
        assert_eq!(parts(b"   "), Vec::<Vec<u8>>::new());
        assert_eq!(parts(b"Token a, Token b").len(), 4);
    }

    #[test]
    fn keywords_compare_without_case() {
        assert!(keyword_matches(&[b"bEaReR"], "Bearer"));
        assert!(!keyword_matches(&[b"Bearerx"], "Bearer"));
        assert!(!keyword_matches(&[], "Bearer"));
    }
}
