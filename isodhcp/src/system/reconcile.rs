//! Desired-versus-observed diff (SPEC §6.4). Pure: the caller reads the
//! kernel, this decides, executors apply. Today it covers host routes;
//! aliases, nft elements and XDP maps join it with their features.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// One change that closes a gap between desired and observed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    /// A lease needs this route and it is missing.
    AddRoute(Ipv4Addr),
    /// A route with our protocol number that no lease explains.
    RemoveRoute(Ipv4Addr),
}

/// The fixes that make `observed` equal `desired`, additions first (a
/// client never loses a route it needs because of the order).
pub fn routes(desired: &BTreeSet<Ipv4Addr>, observed: &BTreeSet<Ipv4Addr>) -> Vec<Fix> {
    let add = desired.difference(observed).map(|ip| Fix::AddRoute(*ip));
    let remove = observed.difference(desired).map(|ip| Fix::RemoveRoute(*ip));
    add.chain(remove).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[u8]) -> BTreeSet<Ipv4Addr> {
        v.iter().map(|n| Ipv4Addr::new(198, 18, 0, *n)).collect()
    }

    #[test]
    fn adds_missing_and_removes_orphans_only() {
        let fixes = routes(&ips(&[1, 2, 3]), &ips(&[2, 3, 9]));
        assert_eq!(fixes, [Fix::AddRoute(Ipv4Addr::new(198, 18, 0, 1)), Fix::RemoveRoute(Ipv4Addr::new(198, 18, 0, 9))]);
        assert!(routes(&ips(&[4]), &ips(&[4])).is_empty());
    }
}
