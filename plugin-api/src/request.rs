//! The request as a scheme sees it: borrowed from the host, never copied across the ABI.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use abi_stable::std_types::{RSlice, RStr};
use abi_stable::StableAbi;

/// One header. The host gives names in lower case and joins repeated headers into one
/// (`, ` between values, `; ` for `cookie`), as WSGI servers do.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct Header<'a> {
    name: RStr<'a>,
    value: RSlice<'a, u8>,
}

impl<'a> Header<'a> {
    pub fn new(name: &'a str, value: &'a [u8]) -> Self {
        Header { name: RStr::from_str(name), value: RSlice::from_slice(value) }
    }

    pub fn name(&self) -> &'a str {
        self.name.as_str()
    }

    pub fn value(&self) -> &'a [u8] {
        self.value.as_slice()
    }
}

/// The peer's socket address in a fixed-size, ABI-stable form.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerAddr {
    ip: [u8; 16],
    port: u16,
    is_ipv4: bool,
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        let (ip, is_ipv4) = match addr.ip() {
            IpAddr::V4(v4) => (v4.to_ipv6_mapped().octets(), true),
            IpAddr::V6(v6) => (v6.octets(), false),
        };
        PeerAddr { ip, port: addr.port(), is_ipv4 }
    }
}

impl From<PeerAddr> for SocketAddr {
    fn from(peer: PeerAddr) -> Self {
        let v6 = Ipv6Addr::from(peer.ip);
        let ip = match (peer.is_ipv4, v6.to_ipv4_mapped()) {
            (true, Some(v4)) => IpAddr::V4(v4),
            _ => IpAddr::V6(v6),
        };
        SocketAddr::new(ip, peer.port)
    }
}

impl Default for PeerAddr {
    fn default() -> Self {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).into()
    }
}

/// A borrowed view of one HTTP request: method, path, query, headers and peer address.
#[repr(C)]
#[derive(StableAbi, Debug, Clone, Copy)]
pub struct RequestView<'a> {
    method: RStr<'a>,
    path: RStr<'a>,
    query: RStr<'a>,
    headers: RSlice<'a, Header<'a>>,
    peer: PeerAddr,
    body: RSlice<'a, u8>,
    /// What the host knows of the request beyond its bytes, by name (`scheme` = `https`, a
    /// TLS client certificate's subject, ...): the layout is fixed, later facts travel here.
    facts: RSlice<'a, Header<'a>>,
}

impl<'a> RequestView<'a> {
    /// Built by the host (and by tests and benches); `headers` must have lower-case names.
    pub fn new(
        method: &'a str,
        path: &'a str,
        query: &'a str,
        headers: &'a [Header<'a>],
        peer: SocketAddr,
    ) -> Self {
        RequestView {
            method: RStr::from_str(method),
            path: RStr::from_str(path),
            query: RStr::from_str(query),
            headers: RSlice::from_slice(headers),
            peer: peer.into(),
            body: RSlice::from_slice(&[]),
            facts: RSlice::from_slice(&[]),
        }
    }

    /// The same request with facts the host knows about it (name, value), by name.
    pub fn with_facts(mut self, facts: &'a [Header<'a>]) -> Self {
        self.facts = RSlice::from_slice(facts);
        self
    }

    /// A fact the host gave about this request (`scheme`, say); `None` when it gave none.
    pub fn fact(&self, name: &str) -> Option<&'a [u8]> {
        self.facts.as_slice().iter().find(|f| f.name() == name).map(|f| f.value())
    }

    /// The same request with its (already read, size-limited) body.
    pub fn with_body(mut self, body: &'a [u8]) -> Self {
        self.body = RSlice::from_slice(body);
        self
    }

    /// The method in upper case, as sent (`GET`, `POST`).
    pub fn method(&self) -> &'a str {
        self.method.as_str()
    }

    /// GET, HEAD, OPTIONS and TRACE are safe; CSRF checks apply to every other method.
    pub fn is_safe_method(&self) -> bool {
        matches!(self.method(), "GET" | "HEAD" | "OPTIONS" | "TRACE")
    }

    pub fn path(&self) -> &'a str {
        self.path.as_str()
    }

    /// The raw query string, without `?`; empty when there is none.
    pub fn query(&self) -> &'a str {
        self.query.as_str()
    }

    pub fn headers(&self) -> impl Iterator<Item = Header<'a>> + 'a {
        self.headers.as_slice().iter().copied()
    }

    /// The raw bytes of a header; `name` is matched without regard to case.
    pub fn header_bytes(&self, name: &str) -> Option<&'a [u8]> {
        self.headers.as_slice().iter().find(|h| h.name().eq_ignore_ascii_case(name)).map(|h| h.value())
    }

    /// A header as text: UTF-8 when it is, else Latin-1 (what WSGI hands Django).
    pub fn header(&self, name: &str) -> Option<Cow<'a, str>> {
        self.header_bytes(name).map(latin1_or_utf8)
    }

    pub fn peer(&self) -> SocketAddr {
        self.peer.into()
    }

    /// A cookie's value (`Cookie` pairs split on `;` by the `cookie` crate, surrounding
    /// quotes removed, no percent-decoding: as Django reads them). When a name repeats, the
    /// last one counts, as in Django's `parse_cookie`.
    pub fn cookie(&self, name: &str) -> Option<Cow<'a, str>> {
        let header = latin1_or_utf8(self.header_bytes("cookie")?);
        let value = cookie::Cookie::split_parse(header.as_ref())
            .filter_map(Result::ok)
            .filter(|c| c.name() == name)
            .last()
            .map(|c| c.value_trimmed().to_owned())?;
        Some(Cow::Owned(value))
    }

    /// The request body as the host read it (empty for bodiless requests). Handlers and
    /// schemes that need a form field (a CSRF token) read it here.
    pub fn body(&self) -> &'a [u8] {
        self.body.as_slice()
    }
}

/// Decodes bytes as UTF-8, or as Latin-1 when they are not UTF-8.
pub fn latin1_or_utf8(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => Cow::Owned(bytes.iter().map(|&b| char::from(b)).collect()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_address_round_trips_for_both_families() {
        for text in ["127.0.0.1:8000", "[::1]:443", "[::ffff:10.0.0.1]:1"] {
            let addr: SocketAddr = text.parse().unwrap();
            assert_eq!(SocketAddr::from(PeerAddr::from(addr)), addr);
        }
    }

    #[test]
    fn header_lookup_ignores_case_and_decodes_latin1() {
        let headers = [Header::new("x-username", b"j\xf6rg")];
        let req = RequestView::new("GET", "/", "", &headers, "127.0.0.1:1".parse().unwrap());
        assert_eq!(req.header("X-USERNAME").as_deref(), Some("jörg"));
        assert_eq!(req.header_bytes("x-username"), Some(&b"j\xf6rg"[..]));
        assert!(req.header("authorization").is_none());
    }
}
