//! `--static` checks that need other values: no address given twice, every
//! address a usable host of the pool, playground statics inside the
//! playground block.

use std::net::Ipv4Addr;

use crate::config::{Given, UsageError};
use crate::engine::StaticEntry;
use crate::engine::pool::Pool;
use crate::wire::cidr::Cidr;

/// No address is given to two MACs.
pub(super) fn check_unique(statics: &[Given<StaticEntry>]) -> Result<(), UsageError> {
    for (i, s) in statics.iter().enumerate() {
        let s_ip = s.value.ip;
        if let Some(other) = statics[..i]
            .iter()
            .find(|o| o.value.ip == s_ip && o.value.mac != s.value.mac)
        {
            return Err(UsageError::new(
                "--static",
                &s.text,
                format!("{s_ip} is already given to {}", other.value.mac),
            ));
        }
    }
    Ok(())
}

/// Checks the statics against the pool once it is known (given or
/// auto-detected). `server_ip` may be unknown yet (auto-detection pending):
/// then the checks that need it wait for the second call.
pub(super) fn check_in_pool(
    statics: &[Given<StaticEntry>],
    server_ip: Option<Ipv4Addr>,
    pool: Cidr,
) -> Result<(), UsageError> {
    for s in statics {
        if let Some(reason) = misfit(&s.value, server_ip, pool) {
            return Err(UsageError::new("--static", &s.text, reason));
        }
    }
    Ok(())
}

/// Why a static cannot have its address in `pool`, if it cannot.
fn misfit(s: &StaticEntry, server_ip: Option<Ipv4Addr>, pool: Cidr) -> Option<String> {
    if !pool.contains(s.ip) {
        Some(format!("{} is outside the pool {pool}", s.ip))
    } else if Some(s.ip) == server_ip {
        Some(format!("{} is the server IP", s.ip))
    } else if s.ip == pool.network() || s.ip == pool.broadcast() {
        Some(format!(
            "{} is the pool's network or broadcast address",
            s.ip
        ))
    } else if s.compat {
        let base = Cidr {
            addr: Ipv4Addr::from(u32::from(s.ip) & !3),
            prefix: 30,
        };
        let ok = u32::from(s.ip) & 3 == 2
            && !server_ip.is_some_and(|ip| base.contains(ip))
            && !base.contains(pool.network())
            && !base.contains(pool.broadcast());
        (!ok).then(|| format!("compat needs base+2 of an aligned /30 free of the server IP and the pool's network/broadcast ({base})"))
    } else {
        None
    }
}

/// A `playground` static must lie in the playground block. The block is
/// the highest aligned one clear of the other statics; leases from an
/// earlier run can push it lower, which the engine checks again at start.
pub(super) fn check_playground(
    statics: &[Given<StaticEntry>],
    server_ip: Option<Ipv4Addr>,
    pool: Cidr,
    size: Option<u32>,
) -> Result<(), UsageError> {
    let Some(n) = size else { return Ok(()) };
    let avoid: Vec<Ipv4Addr> = statics
        .iter()
        .filter(|s| !s.value.playground)
        .map(|s| s.value.ip)
        .collect();
    let p = Pool::new(
        pool,
        server_ip.unwrap_or(pool.network()),
        &[],
        Some(n),
        &avoid,
    );
    let Some(pg) = p.playground() else {
        return Err(UsageError::new(
            "--playground-size",
            &n.to_string(),
            "no aligned block of that size is free of the statics",
        ));
    };
    for s in statics.iter().filter(|s| s.value.playground) {
        let ip = s.value.ip;
        if !pg.block.contains(ip)
            || ip == pg.block.network()
            || ip == pg.block.broadcast()
            || ip == pg.gateway
        {
            return Err(UsageError::new(
                "--static",
                &s.text,
                format!(
                    "a playground static must be a host of the playground block {} (gateway {})",
                    pg.block, pg.gateway
                ),
            ));
        }
    }
    Ok(())
}
