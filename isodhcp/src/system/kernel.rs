//! Carrying out [`Fix`]es over netlink, and reading the kernel state
//! isodhcp manages (our routes, our aliases) for the reconcile diff.
//!
//! Guarantees:
//! - Fixes to distinct addresses are independent and go to netlink at
//!   once; when one address has several fixes (down then up in one batch)
//!   they run one by one, in order.
//! - Once netlink timed out, the remaining ordered fixes are failed at once
//!   rather than each waiting as long again; the caller retries them at the
//!   next reconcile.
//! - Every fix gets its own result, in the order given.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::netlink::{NETLINK_TIMEOUT, Netlink, NetlinkError};
use super::reconcile::{Fix, KernelState};
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
    let distinct = fixes.iter().map(Fix::target).collect::<BTreeSet<_>>().len() == fixes.len();
    if distinct {
        return futures::future::join_all(fixes.iter().map(|f| run_fix(nl, at, f))).await;
    }
    let mut r: Vec<Result<(), NetlinkError>> = Vec::with_capacity(fixes.len());
    for f in fixes {
        let stalled = r
            .iter()
            .any(|x| matches!(x, Err(NetlinkError::Timeout { .. })));
        r.push(if stalled {
            Err(NetlinkError::Timeout {
                op: "change (skipped after a timeout)",
                limit: NETLINK_TIMEOUT,
            })
        } else {
            run_fix(nl, at, f).await
        });
    }
    r
}

async fn run_fix(nl: &Netlink, at: Target, fix: &Fix) -> Result<(), NetlinkError> {
    let (ifindex, src) = (at.ifindex, at.server_ip);
    match fix {
        Fix::AddRoute(ip) => nl.route_add(*ip, ifindex, src).await,
        Fix::RemoveRoute(ip) => nl.route_del(*ip, ifindex, src).await,
        Fix::AddAlias(ip, p) => nl.alias_add(*ip, *p, ifindex).await,
        Fix::RemoveAlias(ip, p) => nl.alias_del(*ip, *p, ifindex).await,
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
