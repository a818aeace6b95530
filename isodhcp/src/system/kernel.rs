//! Carrying out [`Fix`]es over netlink, and reading the kernel state
//! isodhcp manages (our routes, our aliases) for the reconcile diff.
//!
//! Guarantees:
//! - Route fixes go to the kernel as one batch, in the order given
//!   ([`super::route_batch`]), so a down then up of one address lands in
//!   that order.
//! - Alias fixes to distinct addresses are independent and go to netlink
//!   at once; when one address has several (down then up in one batch)
//!   they run one by one, in order. Routes and aliases are independent
//!   kernel objects (our routes' source is the server's own address), so
//!   the two groups need no order between them.
//! - Once netlink timed out, the remaining ordered alias fixes are failed
//!   at once rather than each waiting as long again; the caller retries
//!   them at the next reconcile.
//! - Every fix gets its own result, in the order given.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::netlink::{NETLINK_TIMEOUT, Netlink, NetlinkError};
use super::reconcile::{Fix, KernelState};
use super::route_batch::RouteOp;
use crate::wire::cidr::Cidr;

/// Where fixes apply: the interface and the server's own address (the
/// source of our host routes).
#[derive(Debug, Clone, Copy)]
pub struct Target {
    pub ifindex: u32,
    pub server_ip: Ipv4Addr,
}

/// Applies `fixes`; one result per fix, in order.
pub async fn apply_fixes(nl: &Netlink, at: Target, fixes: &[Fix]) -> Vec<Result<(), NetlinkError>> {
    let mut out: Vec<Option<Result<(), NetlinkError>>> = fixes.iter().map(|_| None).collect();
    let (at_route, ops): (Vec<usize>, Vec<RouteOp>) = fixes
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match f {
            Fix::AddRoute(ip) => Some((i, RouteOp { add: true, ip: *ip })),
            Fix::RemoveRoute(ip) => Some((
                i,
                RouteOp {
                    add: false,
                    ip: *ip,
                },
            )),
            Fix::AddAlias(..) | Fix::RemoveAlias(..) => None,
        })
        .unzip();
    if !ops.is_empty() {
        let done = nl.routes(&ops, at.ifindex, at.server_ip).await;
        for (i, r) in at_route.into_iter().zip(done) {
            out[i] = Some(r);
        }
    }
    let aliases: Vec<(usize, Alias)> = fixes
        .iter()
        .enumerate()
        .filter_map(|(i, f)| match *f {
            Fix::AddAlias(ip, p) => Some((i, (true, ip, p))),
            Fix::RemoveAlias(ip, p) => Some((i, (false, ip, p))),
            Fix::AddRoute(_) | Fix::RemoveRoute(_) => None,
        })
        .collect();
    for ((i, _), r) in aliases.iter().zip(apply_aliases(nl, at, &aliases).await) {
        out[*i] = Some(r);
    }
    // Every fix is a route or an alias, so every slot was filled above.
    out.into_iter().flatten().collect()
}

/// An alias change: add?, address, prefix length.
type Alias = (bool, Ipv4Addr, u8);

/// Alias fixes: at once when their addresses are distinct, else in order.
async fn apply_aliases(
    nl: &Netlink,
    at: Target,
    fixes: &[(usize, Alias)],
) -> Vec<Result<(), NetlinkError>> {
    let distinct = fixes
        .iter()
        .map(|(_, a)| a.1)
        .collect::<BTreeSet<_>>()
        .len()
        == fixes.len();
    if distinct {
        return futures::future::join_all(fixes.iter().map(|(_, a)| run_alias(nl, at, *a))).await;
    }
    let mut r: Vec<Result<(), NetlinkError>> = Vec::with_capacity(fixes.len());
    for (_, a) in fixes {
        let stalled = r
            .iter()
            .any(|x| matches!(x, Err(NetlinkError::Timeout { .. })));
        r.push(if stalled {
            Err(NetlinkError::Timeout {
                op: "change (skipped after a timeout)",
                limit: NETLINK_TIMEOUT,
            })
        } else {
            run_alias(nl, at, *a).await
        });
    }
    r
}

async fn run_alias(nl: &Netlink, at: Target, (add, ip, p): Alias) -> Result<(), NetlinkError> {
    if add {
        nl.alias_add(ip, p, at.ifindex).await
    } else {
        nl.alias_del(ip, p, at.ifindex).await
    }
}

/// Reads the kernel state isodhcp manages on `iface`: routes with our
/// protocol number, and the aliases [`KernelState::our_aliases`] claims.
pub async fn observe(
    nl: &Netlink,
    at: Target,
    iface: &str,
    pool: Cidr,
    playground_prefix: Option<u8>,
) -> Result<KernelState, NetlinkError> {
    let routes = nl.our_routes(at.ifindex).await?;
    let info = nl.interface(iface).await?;
    let aliases = KernelState::our_aliases(&info.addrs, pool, at.server_ip, playground_prefix);
    Ok(KernelState { routes, aliases })
}
