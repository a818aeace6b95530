//! Auto-detection of server IP, pool and DNS (design.md §Auto-detection). Pure: callers pass
//! the interface addresses and the resolver files' contents.

use std::net::Ipv4Addr;

use crate::wire::cidr::Cidr;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DetectError {
    #[error("interface {0} has no IPv4 address: give --server-ip and --pool")]
    NoAddress(String),
    #[error("interface {iface} only holds {addr}/32, which yields no pool: give --pool")]
    HostOnly { iface: String, addr: Ipv4Addr },
}

/// Fills in whatever of server IP and pool is missing from the interface
/// address with the shortest prefix (so /30 and playground aliases never win).
pub fn server_and_pool(
    iface: &str,
    addrs: &[(Ipv4Addr, u8)],
    server_ip: Option<Ipv4Addr>,
    pool: Option<Cidr>,
) -> Result<(Ipv4Addr, Cidr), DetectError> {
    if let (Some(s), Some(p)) = (server_ip, pool) {
        return Ok((s, p));
    }
    // Prefer an address inside the given pool, then the shortest prefix.
    let best = addrs
        .iter()
        .filter(|(ip, _)| pool.is_none_or(|p| p.contains(*ip)))
        .min_by_key(|(_, len)| *len)
        .copied()
        .ok_or_else(|| DetectError::NoAddress(iface.into()))?;
    let server = server_ip.unwrap_or(best.0);
    let pool = match pool {
        Some(p) => p,
        None if best.1 >= 31 => {
            return Err(DetectError::HostOnly {
                iface: iface.into(),
                addr: best.0,
            });
        }
        None => {
            let c = Cidr {
                addr: best.0,
                prefix: best.1,
            };
            Cidr {
                addr: c.network(),
                prefix: best.1,
            }
        }
    };
    Ok((server, pool))
}

/// First non-loopback IPv4 `nameserver` line.
fn first_nameserver(conf: &str) -> Option<Ipv4Addr> {
    conf.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<Ipv4Addr>().ok())
        .find(|ip| !ip.is_loopback())
}

/// DNS per design.md §Auto-detection: resolv.conf, then systemd-resolved's upstream file,
/// else 1.1.1.1 (the bool says the fallback was used, so the caller warns).
pub fn dns(resolv_conf: Option<&str>, resolved_conf: Option<&str>) -> (Ipv4Addr, bool) {
    resolv_conf
        .and_then(first_nameserver)
        .or_else(|| resolved_conf.and_then(first_nameserver))
        .map(|d| (d, false))
        .unwrap_or((Ipv4Addr::new(1, 1, 1, 1), true))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

    #[test]
    fn shortest_prefix_wins() {
        let addrs = [
            (Ipv4Addr::new(198, 18, 0, 5), 30),
            (A, 24),
            (Ipv4Addr::new(198, 18, 0, 129), 26),
        ];
        let (s, p) = server_and_pool("g", &addrs, None, None).unwrap();
        assert_eq!((s, p.to_string()), (A, "198.18.0.0/24".into()));
        // Only what is missing is filled in.
        let given: Cidr = "198.18.0.0/23".parse().unwrap();
        assert_eq!(
            server_and_pool("g", &addrs, None, Some(given)).unwrap(),
            (A, given)
        );
        let s2 = Ipv4Addr::new(198, 18, 0, 2);
        assert_eq!(server_and_pool("g", &addrs, Some(s2), None).unwrap().0, s2);
    }

    #[test]
    fn unnumbered_needs_a_pool() {
        let e = server_and_pool("guest", &[(A, 32)], None, None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "interface guest only holds 198.18.0.1/32, which yields no pool: give --pool"
        );
        let p: Cidr = "198.18.0.0/24".parse().unwrap();
        assert_eq!(
            server_and_pool("guest", &[(A, 32)], None, Some(p)).unwrap(),
            (A, p)
        );
        assert!(matches!(
            server_and_pool("guest", &[], None, None),
            Err(DetectError::NoAddress(_))
        ));
    }

    #[test]
    fn dns_skips_loopback_stubs() {
        let stub = "# systemd\nnameserver 127.0.0.53\noptions edns0\n";
        let upstream = "nameserver ::1\nnameserver 198.18.0.53\n";
        assert_eq!(
            dns(Some(stub), Some(upstream)),
            (Ipv4Addr::new(198, 18, 0, 53), false)
        );
        assert_eq!(
            dns(Some("nameserver 198.18.1.1"), None),
            (Ipv4Addr::new(198, 18, 1, 1), false)
        );
        assert_eq!(dns(Some(stub), None), (Ipv4Addr::new(1, 1, 1, 1), true));
    }
}
