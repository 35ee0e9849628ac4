//! The `Authorization` header as DRF's `get_authorization_header(request).split()` sees it.

use crate::request::RequestView;

/// The `Authorization` header split on runs of ASCII whitespace, as Python's
/// `bytes.split()` does: `Basic  <b64>` and a tab both give two parts; `Basic ` alone gives
/// one. Empty when there is no header. Repeated headers arrive joined with `, `, so their
/// parts count too (DRF then says the credentials "should not contain spaces").
pub fn authorization_parts<'a>(request: &RequestView<'a>) -> Vec<&'a [u8]> {
    request.header_bytes("authorization").map(|value| split(value).collect()).unwrap_or_default()
}

/// The parts of a header value, split as Python's `bytes.split()` splits.
fn split(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value
        .split(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0b' | b'\x0c'))
        .filter(|part| !part.is_empty())
}

/// The `Authorization` header as DRF's `TokenAuthentication`, `BasicAuthentication` and
/// simplejwt read it: `keyword credentials`, split as [`authorization_parts`] splits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credentials<'a> {
    /// No header, or one with another keyword: the scheme is not attempted.
    Absent,
    /// The keyword alone: DRF's `No credentials provided.`
    Missing,
    /// More than one part after the keyword: DRF's `should not contain spaces.`
    Spaced,
    /// The one part after the keyword.
    Given(&'a [u8]),
}

/// The credentials sent after `keyword` (compared case-insensitively), read without
/// collecting the header's parts: what every request to a token, Basic or JWT route pays.
pub fn credentials<'a>(request: &RequestView<'a>, keyword: &str) -> Credentials<'a> {
    let Some(value) = request.header_bytes("authorization") else { return Credentials::Absent };
    let mut parts = split(value);
    if !parts.next().is_some_and(|first| first.eq_ignore_ascii_case(keyword.as_bytes())) {
        return Credentials::Absent;
    }
    match (parts.next(), parts.next()) {
        (None, _) => Credentials::Missing,
        (Some(given), None) => Credentials::Given(given),
        (Some(_), Some(_)) => Credentials::Spaced,
    }
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

    fn credentials_of(value: &[u8], keyword: &str) -> Credentials<'static> {
        let value: &'static [u8] = Box::leak(value.to_vec().into_boxed_slice());
        let headers: &'static [Header<'static>] = Box::leak(Box::new([Header::new("authorization", value)]));
        let req = RequestView::new("GET", "/", "", headers, "127.0.0.1:1".parse().unwrap());
        credentials(&req, keyword)
    }

    #[test]
    fn credentials_read_as_the_split_parts_say() {
        assert_eq!(credentials_of(b"token  abc", "Token"), Credentials::Given(b"abc"));
        assert_eq!(credentials_of(b"Token\tk\x0b", "Token"), Credentials::Given(b"k"));
        assert_eq!(credentials_of(b"Token ", "Token"), Credentials::Missing);
        assert_eq!(credentials_of(b"Token a b", "Token"), Credentials::Spaced);
        assert_eq!(credentials_of(b"Token a, Token b", "Token"), Credentials::Spaced);
        assert_eq!(credentials_of(b"Bearer abc", "Token"), Credentials::Absent);
        assert_eq!(credentials_of(b"   ", "Token"), Credentials::Absent);
        let headers = [];
        let none = RequestView::new("GET", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
        assert_eq!(credentials(&none, "Token"), Credentials::Absent);
    }

    #[test]
    fn keywords_compare_without_case() {
        assert!(keyword_matches(&[b"bEaReR"], "Bearer"));
        assert!(!keyword_matches(&[b"Bearerx"], "Bearer"));
        assert!(!keyword_matches(&[], "Bearer"));
    }
}
