//! Userspace admission control for `--xdp off` (SPEC §9): the same rules,
//! parameters and counters as the XDP program, applied to frames the packet
//! socket delivers. Pure: time is passed in (monotonic ns).
//!
//! Order: deny → trust (skips per-MAC and new-client limits) → known
//! clients' per-MAC bucket → unknown MACs must win a new-client token before
//! they get a per-MAC bucket (bounded table, oldest evicted) → global budget.

use std::collections::{HashMap, HashSet, VecDeque};

use isodhcp_common::{Bucket, Counters, Limits};

use crate::wire::Mac;

/// Most unknown MACs tracked at once (like the kernel's LRU map).
const FRESH_MAX: usize = isodhcp_common::FRESH_MAX as usize;

#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    deny: HashMap<Mac, u64>,
    trust: HashSet<Mac>,
    known: HashMap<Mac, Bucket>,
    fresh: HashMap<Mac, Bucket>,
    fresh_order: VecDeque<Mac>,
    global: Bucket,
    new_clients: Bucket,
    pub counters: Counters,
}

impl Limiter {
    pub fn new(limits: Limits) -> Limiter {
        Limiter {
            limits,
            deny: HashMap::new(),
            trust: HashSet::new(),
            known: HashMap::new(),
            fresh: HashMap::new(),
            fresh_order: VecDeque::new(),
            global: Bucket::default(),
            new_clients: Bucket::default(),
            counters: Counters::default(),
        }
    }

    /// Denies `mac` until `until_ns` (0 = for ever).
    pub fn deny(&mut self, mac: Mac, until_ns: u64) {
        self.deny.insert(mac, until_ns);
    }

    pub fn undeny(&mut self, mac: Mac) {
        self.deny.remove(&mac);
    }

    pub fn trust(&mut self, mac: Mac) {
        self.trust.insert(mac);
    }

    pub fn set_known(&mut self, mac: Mac, known: bool) {
        if known {
            self.known.entry(mac).or_default();
        } else {
            self.known.remove(&mac);
        }
    }

    pub fn is_known(&self, mac: Mac) -> bool {
        self.known.contains_key(&mac)
    }

    /// Decides whether a valid DHCP request from `mac` reaches the engine,
    /// counting the verdict.
    pub fn admit(&mut self, now_ns: u64, mac: Mac) -> bool {
        let l = self.limits;
        let c = &mut self.counters;
        if let Some(&until) = self.deny.get(&mac) {
            if until == 0 || until > now_ns {
                c.drop_denied += 1;
                return false;
            }
        }
        if self.trust.contains(&mac) {
            c.pass_trusted += 1;
        } else if let Some(b) = self.known.get_mut(&mac) {
            if !b.take(now_ns, l.mac_rate, l.mac_burst) {
                c.drop_known_rate += 1;
                return false;
            }
        } else if let Some(b) = self.fresh.get_mut(&mac) {
            if !b.take(now_ns, l.mac_rate, l.mac_burst) {
                c.drop_fresh_rate += 1;
                return false;
            }
        } else {
            if !self.new_clients.take(now_ns, l.new_rate, l.new_burst) {
                c.drop_new_budget += 1;
                return false;
            }
            let mut b = Bucket::default();
            b.take(now_ns, l.mac_rate, l.mac_burst);
            if self.fresh.len() >= FRESH_MAX {
                if let Some(old) = self.fresh_order.pop_front() {
                    self.fresh.remove(&old);
                }
            }
            self.fresh.insert(mac, b);
            self.fresh_order.push_back(mac);
        }
        if !self.global.take(now_ns, l.global_rate, l.global_burst) {
            c.drop_global += 1;
            return false;
        }
        c.pass_stack += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_000_000_000;

    fn limits() -> Limits {
        Limits {
            abi: isodhcp_common::ABI_VERSION,
            mac_rate: 1,
            mac_burst: 3,
            global_rate: 1000,
            global_burst: 1000,
            new_rate: 2,
            new_burst: 2,
            _pad: 0,
        }
    }

    fn mac(n: u16) -> Mac {
        let b = n.to_be_bytes();
        Mac([2, 0, 0, 0, b[0], b[1]])
    }

    #[test]
    fn known_clients_survive_a_random_mac_flood() {
        let mut l = Limiter::new(limits());
        l.set_known(mac(1), true);
        let mut passed = 0;
        for n in 100..1100 {
            passed += usize::from(l.admit(T, mac(n)));
        }
        assert_eq!(passed, 2, "only the new-client burst passes");
        assert_eq!(l.counters.drop_new_budget, 998);
        // The known client still has its whole burst.
        assert!((0..3).all(|_| l.admit(T, mac(1))));
        assert!(!l.admit(T, mac(1)));
        assert_eq!(l.counters.drop_known_rate, 1);
    }

    #[test]
    fn admitted_unknown_mac_gets_its_own_bucket() {
        let mut l = Limiter::new(limits());
        assert!(l.admit(T, mac(7)));
        // Further frames spend its per-MAC bucket, not the new-client budget.
        assert!(l.admit(T, mac(7)) && l.admit(T, mac(7)));
        assert!(!l.admit(T, mac(7)));
        assert_eq!(l.counters.drop_fresh_rate, 1);
        assert!(l.admit(T, mac(8)), "budget had a second token");
    }

    #[test]
    fn deny_trust_and_global() {
        let mut l = Limiter::new(Limits {
            global_rate: 1,
            global_burst: 2,
            ..limits()
        });
        l.deny(mac(1), 0);
        l.deny(mac(2), T - 1);
        l.trust(mac(3));
        assert!(!l.admit(T, mac(1)));
        assert_eq!(l.counters.drop_denied, 1);
        assert!(l.admit(T, mac(2)), "expired deny");
        assert!(l.admit(T, mac(3)));
        assert_eq!(l.counters.pass_trusted, 1);
        assert!(
            !l.admit(T, mac(3)),
            "global budget caps trusted clients too"
        );
        assert_eq!(l.counters.drop_global, 1);
        l.undeny(mac(1));
        assert!(!l.admit(T, mac(1)), "global still empty");
        assert!(l.admit(T + 1_000_000_000, mac(1)));
    }
}
