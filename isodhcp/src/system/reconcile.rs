//! Desired-versus-observed diff (design.md §Reconcile). Pure: the caller reads the
//! kernel, this decides, executors apply. It covers host routes and gateway
//! aliases; nft elements and SNAT rules are mapped in `system::nft::model`.
//!
//! Guarantees:
//! - [`KernelState::desired`] is the only mapping from bindings to routes
//!   and aliases. Start-up, SIGUSR1 and `--verify` diff it against what the
//!   kernel shows; the per-lease path ([`bring_up`], [`take_down`]) diffs it
//!   against nothing, so both paths always agree on what a binding needs.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::engine::{Binding, Mode};
use crate::wire::cidr::Cidr;

/// Kernel state, as wanted or as found. Only state isodhcp manages appears
/// here: routes with our protocol number, aliases inside the pool.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KernelState {
    pub routes: BTreeSet<Ipv4Addr>,
    pub aliases: BTreeSet<(Ipv4Addr, u8)>,
}

impl KernelState {
    /// What the bindings (and the playground gateway alias) need.
    pub fn desired<'a>(
        bindings: impl IntoIterator<Item = &'a Binding>,
        playground_alias: Option<(Ipv4Addr, u8)>,
    ) -> KernelState {
        let mut s = KernelState::default();
        for b in bindings {
            match b.mode {
                Mode::Isolated => {
                    s.routes.insert(b.ip);
                }
                Mode::Compat => {
                    s.aliases.insert((b.gateway, 30));
                }
                Mode::Playground => {}
            }
        }
        s.aliases.extend(playground_alias);
        s
    }

    /// Aliases isodhcp may have made among the interface's addresses:
    /// pool-internal, with the /30 or the playground prefix, never the
    /// server IP. Everything else on the interface is the administrator's.
    pub fn our_aliases(
        addrs: &[(Ipv4Addr, u8)],
        pool: Cidr,
        server_ip: Ipv4Addr,
        playground_prefix: Option<u8>,
    ) -> BTreeSet<(Ipv4Addr, u8)> {
        addrs
            .iter()
            .filter(|(ip, len)| {
                *ip != server_ip
                    && pool.contains(*ip)
                    && (*len == 30 || Some(*len) == playground_prefix)
            })
            .copied()
            .collect()
    }
}

/// One change that closes a gap between desired and observed state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fix {
    AddRoute(Ipv4Addr),
    RemoveRoute(Ipv4Addr),
    AddAlias(Ipv4Addr, u8),
    RemoveAlias(Ipv4Addr, u8),
}

impl Fix {
    /// What the fix changes: the address (route or alias).
    pub fn target(&self) -> std::net::Ipv4Addr {
        match self {
            Fix::AddRoute(ip)
            | Fix::RemoveRoute(ip)
            | Fix::AddAlias(ip, _)
            | Fix::RemoveAlias(ip, _) => *ip,
        }
    }
}

/// The fixes that make `observed` equal `desired`, additions first (a
/// client never loses something it needs because of the order).
pub fn diff(desired: &KernelState, observed: &KernelState) -> Vec<Fix> {
    let mut out: Vec<Fix> = desired
        .aliases
        .difference(&observed.aliases)
        .map(|(ip, p)| Fix::AddAlias(*ip, *p))
        .collect();
    out.extend(
        desired
            .routes
            .difference(&observed.routes)
            .map(|ip| Fix::AddRoute(*ip)),
    );
    out.extend(
        observed
            .routes
            .difference(&desired.routes)
            .map(|ip| Fix::RemoveRoute(*ip)),
    );
    out.extend(
        observed
            .aliases
            .difference(&desired.aliases)
            .map(|(ip, p)| Fix::RemoveAlias(*ip, *p)),
    );
    out
}

/// The changes a new binding needs: everything it maps to, added.
pub fn bring_up(b: &Binding) -> Vec<Fix> {
    diff(&KernelState::desired([b], None), &KernelState::default())
}

/// The changes an ended binding needs: everything it mapped to, removed.
pub fn take_down(b: &Binding) -> Vec<Fix> {
    diff(&KernelState::default(), &KernelState::desired([b], None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Mac;

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, n)
    }

    fn binding(n: u8, mode: Mode) -> Binding {
        let gateway = if mode == Mode::Compat {
            ip(n - 1)
        } else {
            ip(1)
        };
        Binding {
            mac: Mac([2, 0, 0, 0, 0, n]),
            ip: ip(n),
            mode,
            masq: false,
            gateway,
            subnet: None,
            hostname: None,
            expires: None,
        }
    }

    #[test]
    fn adds_missing_and_removes_orphans_only() {
        let desired = KernelState::desired(
            &[
                binding(200, Mode::Isolated),
                binding(6, Mode::Compat),
                binding(130, Mode::Playground),
            ],
            Some((ip(129), 29)),
        );
        assert_eq!(desired.routes, [ip(200)].into());
        assert_eq!(desired.aliases, [(ip(5), 30), (ip(129), 29)].into());
        let observed = KernelState {
            routes: [ip(9)].into(),
            aliases: [(ip(5), 30), (ip(13), 30)].into(),
        };
        assert_eq!(
            diff(&desired, &observed),
            [
                Fix::AddAlias(ip(129), 29),
                Fix::AddRoute(ip(200)),
                Fix::RemoveRoute(ip(9)),
                Fix::RemoveAlias(ip(13), 30),
            ]
        );
        assert!(diff(&desired, &desired).is_empty());
    }

    #[test]
    fn per_lease_changes_follow_the_same_mapping() {
        let iso = binding(200, Mode::Isolated);
        let compat = binding(6, Mode::Compat);
        let pg = binding(130, Mode::Playground);
        assert_eq!(bring_up(&iso), [Fix::AddRoute(ip(200))]);
        assert_eq!(take_down(&iso), [Fix::RemoveRoute(ip(200))]);
        assert_eq!(bring_up(&compat), [Fix::AddAlias(ip(5), 30)]);
        assert_eq!(take_down(&compat), [Fix::RemoveAlias(ip(5), 30)]);
        // Playground clients use the block's connected route.
        assert!(bring_up(&pg).is_empty() && take_down(&pg).is_empty());
        // Whatever reconcile would add for a binding, bring_up adds.
        let all = [iso, compat, pg];
        let up: Vec<Fix> = all.iter().flat_map(bring_up).collect();
        let mut from_reconcile = diff(&KernelState::desired(&all, None), &KernelState::default());
        from_reconcile.sort_by_key(Fix::target);
        let mut up_sorted = up.clone();
        up_sorted.sort_by_key(Fix::target);
        assert_eq!(up_sorted, from_reconcile);
    }

    #[test]
    fn only_pool_internal_alias_prefixes_are_ours() {
        let pool: Cidr = "198.18.0.0/24".parse().unwrap();
        let addrs = [
            (ip(1), 24),
            (ip(5), 30),
            (ip(129), 29),
            (Ipv4Addr::new(198, 19, 0, 5), 30),
            (ip(77), 32),
            (ip(1), 30),
        ];
        assert_eq!(
            KernelState::our_aliases(&addrs, pool, ip(1), Some(29)),
            [(ip(5), 30), (ip(129), 29)].into()
        );
        assert_eq!(
            KernelState::our_aliases(&addrs, pool, ip(1), None),
            [(ip(5), 30)].into()
        );
    }
}
