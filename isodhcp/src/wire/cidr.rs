//! IPv4 prefixes (`a.b.c.d/n`), strict parsing.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 prefix `addr/prefix`. [`Cidr::new`] and `FromStr` guarantee
/// `prefix <= 32` and no host bits set in `addr`; a struct literal is not
/// checked. Its host bits are masked by [`Cidr::network`],
/// [`Cidr::broadcast`] and [`Cidr::contains`] but show in `Display` and
/// equality; a prefix over 32 makes the mask meaningless.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cidr {
    /// Network address; host bits zero when built by [`Cidr::new`] or parsed.
    pub addr: Ipv4Addr,
    /// Prefix length in bits, 0..=32.
    pub prefix: u8,
}

impl Cidr {
    /// A prefix whose host bits are zero; `None` otherwise.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Option<Cidr> {
        let c = Cidr { addr, prefix };
        (prefix <= 32 && c.network() == addr).then_some(c)
    }

    /// The netmask as a host-order integer: `prefix` leading one bits.
    pub fn mask(&self) -> u32 {
        if self.prefix == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.prefix))
        }
    }

    /// The netmask as an address, e.g. 255.255.255.0 for a /24 (the value of
    /// option 1).
    pub fn mask_addr(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.mask())
    }

    /// `addr` with the host bits cleared: the first address of the prefix.
    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    /// `addr` with every host bit set: the last address of the prefix.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.mask())
    }

    /// True when `ip` lies inside the prefix (network and broadcast included).
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    /// Number of addresses in the prefix.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix))
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Parses a strict dotted quad (no leading zeros beyond "0", exactly four parts).
pub fn parse_ipv4(s: &str) -> Option<Ipv4Addr> {
    // std's parser already rejects octal-looking and short forms.
    Ipv4Addr::from_str(s).ok()
}

/// Why a string is not a [`Cidr`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CidrError {
    #[error("expected ADDRESS/PREFIX")]
    /// Not `ADDRESS/PREFIX` with a strict dotted quad and a decimal prefix
    /// 0..=32 of one or two digits.
    Syntax,
    #[error("host bits set (did you mean {0}?)")]
    /// Well formed, but the address has host bits set; carries the network the
    /// user probably meant.
    HostBits(Cidr),
}

impl FromStr for Cidr {
    type Err = CidrError;
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let (a, p) = s.split_once('/').ok_or(CidrError::Syntax)?;
        let addr = parse_ipv4(a).ok_or(CidrError::Syntax)?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(CidrError::Syntax);
        }
        let prefix: u8 = p.parse().map_err(|_| CidrError::Syntax)?;
        if prefix > 32 {
            return Err(CidrError::Syntax);
        }
        let c = Cidr { addr, prefix };
        if c.network() != addr {
            return Err(CidrError::HostBits(Cidr {
                addr: c.network(),
                prefix,
            }));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_measures() {
        let c: Cidr = "198.18.0.0/24".parse().unwrap();
        assert_eq!(c.broadcast(), Ipv4Addr::new(198, 18, 0, 255));
        assert_eq!(c.mask_addr(), Ipv4Addr::new(255, 255, 255, 0));
        assert!(c.contains(Ipv4Addr::new(198, 18, 0, 7)));
        assert!(!c.contains(Ipv4Addr::new(198, 18, 1, 7)));
        assert_eq!(c.size(), 256);
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(Ipv4Addr::new(1, 2, 3, 4)));
    }

    #[test]
    fn rejects_host_bits_and_garbage() {
        assert!(matches!(
            "198.18.0.1/24".parse::<Cidr>(),
            Err(CidrError::HostBits(_))
        ));
        for bad in [
            "198.18.0.0",
            "198.18.0.0/33",
            "198.18.0/24",
            "198.18.0.0/+4",
            "x/24",
            "198.18.0.0/",
        ] {
            assert_eq!(bad.parse::<Cidr>(), Err(CidrError::Syntax), "{bad}");
        }
    }
}
