//! Userspace tables for admission (design.md §Admission): the deny and
//! trust lists, known clients' and fresh MACs' buckets and the shared
//! buckets as `HashMap`s, behind [`Tables`], so `isodhcp_common::decide` —
//! the code the XDP program runs — decides here too (`--xdp off`, and frames
//! that reach the packet socket in XDP mode). Pure: time is passed in
//! (monotonic ns).

use std::collections::{HashMap, HashSet, VecDeque};

use isodhcp_common::{Bucket, Counters, Decision, Limits, Tables, decide_frame, mac_key};

use crate::wire::Mac;

/// Most unknown MACs tracked at once (like the kernel's LRU map).
const FRESH_MAX: usize = isodhcp_common::FRESH_MAX as usize;

/// The admission tables of the userspace path, and its counters.
#[derive(Debug)]
pub struct Limiter {
    limits: Limits,
    maps: Maps,
    /// Verdicts of every frame that went through [`Limiter::decide`].
    pub counters: Counters,
}

/// [`Tables`] over `HashMap`s, keyed by [`mac_key`].
#[derive(Debug, Default)]
struct Maps {
    deny: HashMap<u64, u64>,
    trust: HashSet<u64>,
    known: HashMap<u64, Bucket>,
    fresh: HashMap<u64, Bucket>,
    /// Insertion order of `fresh`, oldest first (bounded like the LRU).
    fresh_order: VecDeque<u64>,
    shared: [Bucket; 2],
}

impl Tables for Maps {
    fn deny_until(&mut self, key: u64) -> Option<u64> {
        self.deny.get(&key).copied()
    }

    fn trusted(&mut self, key: u64) -> bool {
        self.trust.contains(&key)
    }

    fn known(&mut self, key: u64) -> Option<&mut Bucket> {
        self.known.get_mut(&key)
    }

    fn fresh(&mut self, key: u64) -> Option<&mut Bucket> {
        self.fresh.get_mut(&key)
    }

    fn fresh_insert(&mut self, key: u64, b: &Bucket) {
        if self.fresh.len() >= FRESH_MAX {
            if let Some(old) = self.fresh_order.pop_front() {
                self.fresh.remove(&old);
            }
        }
        if self.fresh.insert(key, *b).is_none() {
            self.fresh_order.push_back(key);
        }
    }

    fn shared(&mut self, idx: u32) -> Option<&mut Bucket> {
        self.shared.get_mut(idx as usize)
    }
}

fn key(mac: Mac) -> u64 {
    mac_key(mac.0)
}

impl Limiter {
    /// Tables enforcing `limits` (any `abi`: userspace has no stale layout).
    pub fn new(limits: Limits) -> Limiter {
        Limiter {
            limits: Limits {
                abi: isodhcp_common::ABI_VERSION,
                ..limits
            },
            maps: Maps::default(),
            counters: Counters::default(),
        }
    }

    /// Denies `mac` until `until_ns` (0 = for ever).
    pub fn deny(&mut self, mac: Mac, until_ns: u64) {
        self.maps.deny.insert(key(mac), until_ns);
    }

    /// Lifts a deny entry.
    pub fn undeny(&mut self, mac: Mac) {
        self.maps.deny.remove(&key(mac));
    }

    /// Puts `mac` on the trust list.
    pub fn trust(&mut self, mac: Mac) {
        self.maps.trust.insert(key(mac));
    }

    /// Adds `mac` to the known clients (own bucket, no new-client budget) or
    /// removes it.
    pub fn set_known(&mut self, mac: Mac, known: bool) {
        if known {
            self.maps.known.entry(key(mac)).or_default();
        } else {
            self.maps.known.remove(&key(mac));
        }
    }

    /// Whether `mac` is a known client.
    pub fn is_known(&self, mac: Mac) -> bool {
        self.maps.known.contains_key(&key(mac))
    }

    /// Runs the admission decision on one whole Ethernet frame at `now_ns`,
    /// counting the verdict; `Some` is the source MAC of a request that
    /// reaches the engine (counted `pass_stack`).
    pub fn decide(&mut self, now_ns: u64, frame: &[u8]) -> Option<Mac> {
        let c = &mut self.counters;
        let d = decide_frame(
            frame,
            &mut self.maps,
            Some(self.limits),
            || now_ns,
            |s| c.bump(s),
        );
        match d {
            Decision::Deliver { .. } => {
                c.pass_stack += 1;
                let src: [u8; 6] = frame.get(6..12)?.try_into().ok()?;
                Some(Mac(src))
            }
            // The userspace path has no OFFER responder.
            Decision::Pass | Decision::Drop | Decision::Transmit => None,
        }
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
            ..Default::default()
        }
    }

    fn mac(n: u16) -> Mac {
        let b = n.to_be_bytes();
        Mac([2, 0, 0, 0, b[0], b[1]])
    }

    /// A minimal valid DHCP request frame from `m` (Ethernet, IPv4, UDP to
    /// 67, 240-byte BOOTREQUEST with chaddr = source).
    fn frame(m: Mac) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&m.0);
        f.extend_from_slice(&[0x08, 0x00]);
        let tot = (20 + 8 + 240u16).to_be_bytes();
        f.extend_from_slice(&[0x45, 0, tot[0], tot[1], 0, 0, 0, 0, 64, 17, 0, 0]);
        f.extend_from_slice(&[0, 0, 0, 0, 255, 255, 255, 255, 0, 68, 0, 67]);
        f.extend_from_slice(&(8 + 240u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        let mut bootp = vec![0u8; 240];
        bootp[..3].copy_from_slice(&[1, 1, 6]);
        bootp[28..34].copy_from_slice(&m.0);
        f.extend_from_slice(&bootp);
        f
    }

    impl Limiter {
        fn admit(&mut self, now: u64, m: Mac) -> bool {
            self.decide(now, &frame(m)) == Some(m)
        }
    }

    #[test]
    fn frames_that_fail_a_check_are_counted_and_dropped() {
        let mut l = Limiter::new(limits());
        let mut f = frame(mac(1));
        f[14 + 20 + 8 + 28] ^= 1; // chaddr != source
        assert_eq!(l.decide(T, &f), None);
        let mut f = frame(mac(1));
        f[14 + 20 + 2..14 + 20 + 4].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(l.decide(T, &f), None);
        assert_eq!(l.counters.drop_chaddr_spoof, 1);
        assert_eq!(l.counters.non_dhcp, 1);
        assert_eq!(l.counters.dhcp, 1);
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
