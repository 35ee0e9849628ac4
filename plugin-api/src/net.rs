//! Addresses and CIDR ranges (`10.0.0.0/8`, `::1`, `fd00::/8`), for lists of trusted
//! proxies: the host's `[gateway] trusted_proxies` and the remote-user scheme's.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

/// A range of addresses (`ipnet`'s), matching IPv4-mapped IPv6 addresses as the IPv4
/// addresses they are: `::ffff:10.0.0.1` is in `10.0.0.0/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr(IpNet);

impl Cidr {
    /// `127.0.0.0/8`.
    pub const LOOPBACK_V4: Cidr = Cidr(IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)));
    /// `::1`.
    pub const LOOPBACK_V6: Cidr = Cidr(IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)));

    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }
}

impl FromStr for Cidr {
    type Err = ();

    /// `10.0.0.0/8`, `fd00::/8`, or one address (`::1`). Host bits are dropped
    /// (`10.1.2.3/8` is `10.0.0.0/8`).
    fn from_str(text: &str) -> Result<Self, ()> {
        let text = text.trim();
        let net = match text.parse::<IpNet>() {
            Ok(net) => net,
            Err(_) => IpNet::from(text.parse::<IpAddr>().map_err(|_| ())?),
        };
        // An IPv4-mapped range is the IPv4 range it maps.
        let net = match net {
            IpNet::V6(v6) if v6.prefix_len() >= 96 => match v6.addr().to_ipv4_mapped() {
                Some(v4) => IpNet::V4(Ipv4Net::new(v4, v6.prefix_len() - 96).map_err(|_| ())?),
                None => net,
            },
            other => other,
        };
        Ok(Cidr(net.trunc()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let lan: Cidr = "10.0.0.0/8".parse().unwrap();
        assert!(lan.contains(ip("10.255.0.1")));
        assert!(lan.contains(ip("::ffff:10.0.0.1")));
        assert!(!lan.contains(ip("11.0.0.1")));
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        assert_eq!(Cidr::LOOPBACK_V4, "127.0.0.0/8".parse().unwrap());
        assert_eq!(Cidr::LOOPBACK_V6, "::1".parse().unwrap());
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert_eq!("10.1.2.3/8".parse::<Cidr>(), "10.0.0.0/8".parse::<Cidr>());
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert!(mapped.contains(ip("10.1.1.1")) && !mapped.contains(ip("11.0.0.1")));
        assert!("nonsense".parse::<Cidr>().is_err());
    }
}
