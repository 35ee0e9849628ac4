//! Addresses and CIDR ranges (`10.0.0.0/8`, `::1`, `fd00::/8`), for lists of trusted
//! proxies: the host's `[gateway] trusted_proxies` and the remote-user scheme's.

use std::net::IpAddr;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: u128,
    prefix: u32,
}

/// Both families in one space: IPv4 as IPv4-mapped IPv6, so `::ffff:10.0.0.1` is
/// `10.0.0.1`.
fn to_bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

impl Cidr {
    /// `127.0.0.0/8`.
    pub const LOOPBACK_V4: Cidr = Cidr { network: 0xffff_7f00_0000, prefix: 104 };
    /// `::1`.
    pub const LOOPBACK_V6: Cidr = Cidr { network: 1, prefix: 128 };

    pub fn contains(&self, ip: IpAddr) -> bool {
        let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - self.prefix) };
        to_bits(ip) & mask == self.network
    }
}

impl FromStr for Cidr {
    type Err = ();

    fn from_str(text: &str) -> Result<Self, ()> {
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text.trim(), None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| ())?;
        let (max, offset) = match ip {
            IpAddr::V4(_) => (32, 96),
            IpAddr::V6(_) => (128, 0),
        };
        let prefix: u32 = match prefix {
            Some(p) => p.parse().ok().filter(|p| *p <= max).ok_or(())?,
            None => max,
        };
        let prefix = prefix + offset;
        let mask = if prefix == 0 { 0 } else { u128::MAX << (128 - prefix) };
        Ok(Cidr { network: to_bits(ip) & mask, prefix })
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
        assert!("nonsense".parse::<Cidr>().is_err());
    }
}
