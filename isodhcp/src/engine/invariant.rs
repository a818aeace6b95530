//! Self-checks of the engine's bookkeeping, for `--verify`, the property
//! tests and the fuzz target.
//!
//! Address conservation: every address a dynamic client may ever get (the
//! main pool and the playground block, minus statics, the server and the
//! network/broadcast addresses) is in exactly one place at any time: free,
//! held by an outstanding offer, held by a lease (a compat lease or offer
//! holds its whole /30), or quarantined. An address in none of them has
//! leaked: it is lost until restart. Static addresses are reserved when the
//! engine is built and never enter the pool, so they are outside the count.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use super::{Engine, Mode};

/// The addresses a holder of `ip` in `mode` keeps out of the pool.
fn held(ip: Ipv4Addr, mode: Mode) -> impl Iterator<Item = u32> {
    let a = u32::from(ip);
    let (lo, n) = if mode == Mode::Compat {
        (a & !3, 4)
    } else {
        (a, 1)
    };
    lo..lo + n
}

impl Engine {
    /// Internal bookkeeping that disagrees with itself (for `--verify`);
    /// empty when everything is consistent. O(leases).
    pub fn check_consistency(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (mac, l) in &self.leases {
            if self.owners.get(&l.ip) != Some(mac) {
                out.push(format!(
                    "lease {mac} → {} is missing from the owner index",
                    l.ip
                ));
            }
            if self.pool.is_free(l.ip) {
                out.push(format!(
                    "{} is leased to {mac} but also in the free pool",
                    l.ip
                ));
            }
        }
        if self.owners.len() != self.leases.len() {
            out.push(format!(
                "{} owner entries for {} leases",
                self.owners.len(),
                self.leases.len()
            ));
        }
        out
    }

    /// Address conservation (see the module docs): one line per address
    /// that is in no place or in two. O(pool size).
    pub fn check_conservation(&self) -> Vec<String> {
        let mut places: HashMap<u32, Vec<&'static str>> = HashMap::new();
        let mut put = |a: u32, what: &'static str| places.entry(a).or_default().push(what);
        for l in self.leases.values().filter(|l| !l.is_static) {
            held(l.ip, l.profile.mode).for_each(|a| put(a, "leased"));
        }
        for o in self.offers.values() {
            // An offer made to a client that already has a lease names the
            // lease's address; only offers without one hold anything.
            if !self.owners.contains_key(&o.ip) {
                held(o.ip, o.profile.mode).for_each(|a| put(a, "offered"));
            }
        }
        for ip in self.quarantine.addresses() {
            put(u32::from(ip), "quarantined");
        }
        for ip in self.stripe.held() {
            put(u32::from(ip), "striped");
        }
        let mut out = Vec::new();
        for ip in self.pool.universe() {
            let a = u32::from(ip);
            let mut at = places.remove(&a).unwrap_or_default();
            if self.pool.is_free(ip) {
                at.push("free");
            }
            match at.len() {
                1 => {}
                0 => out.push(format!(
                    "{ip} is neither free, offered, leased nor quarantined: leaked"
                )),
                _ => out.push(format!(
                    "{ip} is counted {} times: {}",
                    at.len(),
                    at.join(", ")
                )),
            }
        }
        for (a, at) in places {
            out.push(format!(
                "{} is {} but not an address of the pool",
                Ipv4Addr::from(a),
                at.join(", ")
            ));
        }
        out
    }
}
