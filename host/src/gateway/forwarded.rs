//! `X-Forwarded-For`, `-Proto` and `-Host`: believed only from a trusted proxy, and set on
//! every request authhost forwards.

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use authhost_plugin_api::net::Cidr;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, HOST};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether `peer` is one of `trusted`.
pub fn is_trusted(peer: IpAddr, trusted: &[Cidr]) -> bool {
    trusted.iter().any(|range| range.contains(peer))
}

/// The client's address: the peer itself, unless the peer is a trusted proxy, in which case
/// `X-Forwarded-For` is read from the right, past every trusted proxy, to the first address
/// no trusted proxy vouches for (the rightmost address a client cannot have forged). A
/// malformed entry ends the walk: the address before it stands.
pub fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[Cidr]) -> SocketAddr {
    // Most requests carry no X-Forwarded-For: a look at their few names is cheaper than the
    // lookup, which hashes the name.
    if !is_trusted(peer.ip(), trusted) || !headers.keys().any(|name| name == X_FORWARDED_FOR) {
        return peer;
    }
    let mut client = peer.ip();
    let entries = headers.get_all(&X_FORWARDED_FOR).iter().rev();
    'walk: for value in entries {
        let Ok(text) = value.to_str() else { break };
        for entry in text.rsplit(',') {
            let Some(ip) = parse_entry(entry) else { break 'walk };
            client = ip;
            if !is_trusted(ip, trusted) {
                break 'walk;
            }
        }
    }
    SocketAddr::new(client, if client == peer.ip() { peer.port() } else { 0 })
}

/// One `X-Forwarded-For` entry: an address, an `[IPv6]:port` or an `IPv4:port`.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let entry = entry.trim();
    entry.parse::<IpAddr>().ok().or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
}

/// Sets the three headers on a request about to be forwarded: `For` gains the peer (kept
/// only from a trusted peer, else replaced), `Proto` and `Host` are kept from a trusted
/// peer and otherwise describe the connection authhost received.
pub fn set(headers: &mut HeaderMap, peer: SocketAddr, trusted_peer: bool, tls: bool) {
    let mut chain = String::with_capacity(48);
    if trusted_peer {
        for earlier in headers.get_all(&X_FORWARDED_FOR).iter().filter_map(|v| v.to_str().ok()) {
            chain.push_str(earlier);
            chain.push_str(", ");
        }
    }
    // Writing to a String cannot fail.
    let _ = write!(chain, "{}", peer.ip());
    if let Ok(value) = HeaderValue::from_str(&chain) {
        headers.insert(X_FORWARDED_FOR.clone(), value);
    }
    if !(trusted_peer && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static(proto));
    }
    if !(trusted_peer && headers.contains_key(&X_FORWARDED_HOST)) {
        match headers.get(HOST).cloned() {
            Some(host) => headers.insert(X_FORWARDED_HOST.clone(), host),
            None => headers.remove(&X_FORWARDED_HOST),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in xff {
            map.append(X_FORWARDED_FOR.clone(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    fn loopback() -> Vec<Cidr> {
        vec![Cidr::LOOPBACK_V4, Cidr::LOOPBACK_V6]
    }

    #[test]
    fn the_header_is_believed_only_from_a_trusted_peer() {
        let trusted: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let stranger: SocketAddr = "10.1.1.1:5000".parse().unwrap();
        let h = headers(&["203.0.113.9"]);
        assert_eq!(client_addr(trusted, &h, &loopback()).ip().to_string(), "203.0.113.9");
        assert_eq!(client_addr(stranger, &h, &loopback()), stranger);
        assert_eq!(client_addr(trusted, &HeaderMap::new(), &loopback()), trusted);
    }

    #[test]
    fn the_walk_stops_at_the_first_address_no_trusted_proxy_vouches_for() {
        let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        // The client forged the first entry; the proxy appended the real one.
        let h = headers(&["6.6.6.6, 198.51.100.7", "127.0.0.2"]);
        assert_eq!(client_addr(peer, &h, &loopback()).ip().to_string(), "198.51.100.7");
        let garbage = headers(&["nonsense, 127.0.0.3"]);
        assert_eq!(client_addr(peer, &garbage, &loopback()).ip().to_string(), "127.0.0.3");
        let with_port = headers(&["[2001:db8::1]:443"]);
        assert_eq!(client_addr(peer, &with_port, &loopback()).ip().to_string(), "2001:db8::1");
    }

    #[test]
    fn forwarded_headers_are_replaced_for_an_untrusted_peer_and_extended_for_a_trusted_one() {
        let mut h = headers(&["6.6.6.6"]);
        h.insert(HOST, HeaderValue::from_static("app.example"));
        h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("https"));
        let mut untrusted = h.clone();
        set(&mut untrusted, "10.0.0.5:1".parse().unwrap(), false, false);
        assert_eq!(untrusted[&X_FORWARDED_FOR], "10.0.0.5");
        assert_eq!(untrusted[&X_FORWARDED_PROTO], "http");
        assert_eq!(untrusted[&X_FORWARDED_HOST], "app.example");
        set(&mut h, "127.0.0.1:1".parse().unwrap(), true, false);
        assert_eq!(h[&X_FORWARDED_FOR], "6.6.6.6, 127.0.0.1");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        // Over authhost's own TLS, an untrusted peer's request goes on as https.
        let mut over_tls = headers(&[]);
        set(&mut over_tls, "10.0.0.5:1".parse().unwrap(), false, true);
        assert_eq!(over_tls[&X_FORWARDED_PROTO], "https");
    }
}
