//! Admission of validated DHCP requests (SPEC §9): deny, trust, known clients'
//! per-MAC buckets, the new-client budget in front of the LRU of fresh MACs,
//! and the global budget. Written against [`Tables`] so the same code runs in
//! the kernel (over the BPF maps) and in host unit tests (over a mock).
//!
//! # Concurrency
//! The buckets (shared `buckets` array entries and per-MAC values of `known`
//! and `fresh`) are read-modified-written without atomics or locks: two CPUs
//! taking from the same bucket at the same instant can both see the same
//! token count and both succeed. Over-admission is therefore bounded by the
//! number of CPUs racing inside one read-modify-write window (a few dozen
//! nanoseconds), i.e. at most `ncpus - 1` extra frames per race, and never
//! accumulates: each racer writes a state at most one token richer than the
//! truth. That is accepted for a rate limiter; a spinlock would serialise
//! every CPU on the global bucket.

use isodhcp_common::{ABI_VERSION, Bucket, GLOBAL_BUCKET, Limits, NEW_CLIENT_BUCKET};

use crate::verdict::Slot;

/// The maps admission reads and writes. Pointers returned stay valid for
/// the rest of the program run (BPF map values; `Box`ed values in the mock).
pub trait Tables {
    /// Expiry of a deny entry (`CLOCK_MONOTONIC` ns, 0 = for ever).
    fn deny_until(&self, key: u64) -> Option<u64>;
    fn trusted(&self, key: u64) -> bool;
    fn known(&self, key: u64) -> Option<*mut Bucket>;
    fn fresh(&self, key: u64) -> Option<*mut Bucket>;
    /// Best effort: an LRU insert may fail or evict; admission does not care.
    fn fresh_insert(&self, key: u64, b: &Bucket);
    /// Entry [`GLOBAL_BUCKET`] or [`NEW_CLIENT_BUCKET`] of `buckets`.
    fn shared(&self, idx: u32) -> Option<*mut Bucket>;
}

/// Outcome of admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Hand the frame to the daemon. `trusted`: the per-MAC and new-client
    /// limits were skipped (counted in `pass_trusted`).
    Admit { trusted: bool },
    /// Drop, counted in this slot.
    Drop(Slot),
}

/// The limits to enforce: `None` until the daemon has written `limits` with
/// this build's [`ABI_VERSION`] (then admission is fail-open: no limits;
/// a non-zero foreign ABI would mean a layout we cannot interpret).
#[inline(always)]
pub fn active(l: Option<&Limits>) -> Option<Limits> {
    match l {
        Some(l) if l.abi == ABI_VERSION => Some(*l),
        _ => None,
    }
}

/// Spends one token of the bucket at `b`.
#[inline(always)]
fn take(b: *mut Bucket, now: u64, rate: u32, burst: u32) -> bool {
    // SAFETY: `b` is a live map value (see `Tables`); concurrent updates from
    // other CPUs are tolerated, see the module docs.
    unsafe { (*b).take(now, rate, burst) }
}

/// Decides whether the request of `key` (a [`mac_key`](isodhcp_common::mac_key))
/// reaches the daemon, at `now` (`bpf_ktime_get_ns`, CLOCK_MONOTONIC).
#[inline(always)]
pub fn admit<T: Tables>(t: &T, key: u64, limits: Option<Limits>, now: u64) -> Admission {
    // 1. Deny: an entry denies until its expiry (0 = for ever). Applies even
    //    before the daemon wrote `limits`: it is an operator decision.
    if let Some(until) = t.deny_until(key) {
        if until == 0 || now < until {
            return Admission::Drop(Slot::DropDenied);
        }
    }
    // 2. Trust: skip the per-MAC and new-client limits, not the global one.
    let trusted = t.trusted(key);
    let Some(l) = limits else {
        return Admission::Admit { trusted };
    };
    if !trusted {
        if let Some(b) = t.known(key) {
            // 3. Known client (lease or outstanding offer): per-MAC bucket only.
            if !take(b, now, l.mac_rate, l.mac_burst) {
                return Admission::Drop(Slot::DropKnownRate);
            }
        } else if let Some(b) = t.fresh(key) {
            // 4a. Unknown MAC admitted recently: its per-MAC bucket.
            if !take(b, now, l.mac_rate, l.mac_burst) {
                return Admission::Drop(Slot::DropFreshRate);
            }
        } else {
            // 4b. Never-seen MAC.
            //
            // OFFER RESPONDER HOOK: this is where an in-kernel OFFER responder
            // would answer a DISCOVER statelessly (build the OFFER in place,
            // XDP_TX) instead of spending the new-client budget; the REQUEST
            // that follows proves the client real. It needs `Request::l3/l4`
            // to read options and rewrite the frame, so `admit` would return
            // a third outcome (`Respond`) to the entry point.
            //
            // It must first win a token from the new-client budget, and
            // only then gets an LRU entry: random MACs can neither pass in
            // bulk nor churn the LRU.
            let Some(nb) = t.shared(NEW_CLIENT_BUCKET) else {
                return Admission::Drop(Slot::DropNewBudget);
            };
            if !take(nb, now, l.new_rate, l.new_burst) {
                return Admission::Drop(Slot::DropNewBudget);
            }
            let mut b = Bucket::default();
            let ok = b.take(now, l.mac_rate, l.mac_burst);
            t.fresh_insert(key, &b);
            if !ok {
                // Only with a per-MAC burst of 0.
                return Admission::Drop(Slot::DropFreshRate);
            }
        }
    }
    // 5. Global budget over everything that is about to reach the daemon.
    if let Some(g) = t.shared(GLOBAL_BUCKET) {
        if !take(g, now, l.global_rate, l.global_burst) {
            return Admission::Drop(Slot::DropGlobal);
        }
    }
    Admission::Admit { trusted }
}

#[cfg(all(test, not(target_arch = "bpf")))]
mod tests {
    use super::*;
    use std::boxed::Box;
    use std::cell::RefCell;
    use std::collections::HashMap;

    #[derive(Default)]
    struct Mock {
        deny: HashMap<u64, u64>,
        trust: Vec<u64>,
        known: RefCell<HashMap<u64, Box<Bucket>>>,
        fresh: RefCell<HashMap<u64, Box<Bucket>>>,
        shared: RefCell<[Box<Bucket>; 2]>,
    }

    impl Tables for Mock {
        fn deny_until(&self, key: u64) -> Option<u64> {
            self.deny.get(&key).copied()
        }
        fn trusted(&self, key: u64) -> bool {
            self.trust.contains(&key)
        }
        fn known(&self, key: u64) -> Option<*mut Bucket> {
            self.known
                .borrow_mut()
                .get_mut(&key)
                .map(|b| &mut **b as *mut Bucket)
        }
        fn fresh(&self, key: u64) -> Option<*mut Bucket> {
            self.fresh
                .borrow_mut()
                .get_mut(&key)
                .map(|b| &mut **b as *mut Bucket)
        }
        fn fresh_insert(&self, key: u64, b: &Bucket) {
            self.fresh.borrow_mut().insert(key, Box::new(*b));
        }
        fn shared(&self, idx: u32) -> Option<*mut Bucket> {
            self.shared
                .borrow_mut()
                .get_mut(idx as usize)
                .map(|b| &mut **b as *mut Bucket)
        }
    }

    const NOW: u64 = 5_000_000_000;

    fn limits(mac: (u32, u32), global: (u32, u32), new: (u32, u32)) -> Option<Limits> {
        Some(Limits {
            abi: ABI_VERSION,
            mac_rate: mac.0,
            mac_burst: mac.1,
            global_rate: global.0,
            global_burst: global.1,
            new_rate: new.0,
            new_burst: new.1,
            _pad: 0,
        })
    }

    fn admitted() -> Admission {
        Admission::Admit { trusted: false }
    }

    #[test]
    fn no_limits_is_fail_open_but_deny_applies() {
        let mut m = Mock::default();
        m.deny.insert(1, 0);
        for _ in 0..100 {
            assert_eq!(admit(&m, 2, None, NOW), admitted());
        }
        assert_eq!(admit(&m, 1, None, NOW), Admission::Drop(Slot::DropDenied));
        assert!(m.fresh.borrow().is_empty());
        let foreign = Limits {
            abi: ABI_VERSION + 1,
            ..Default::default()
        };
        assert_eq!(active(Some(&foreign)), None);
        assert_eq!(active(Some(&Limits::default())), None);
    }

    #[test]
    fn deny_expiry() {
        let mut m = Mock::default();
        let l = limits((1, 5), (100, 100), (100, 100));
        m.deny.insert(1, NOW + 1);
        m.deny.insert(2, NOW);
        assert_eq!(admit(&m, 1, l, NOW), Admission::Drop(Slot::DropDenied));
        assert_eq!(admit(&m, 2, l, NOW), admitted());
    }

    #[test]
    fn known_fresh_new_and_global() {
        let m = Mock::default();
        m.known.borrow_mut().insert(7, Box::default());
        let l = limits((1, 2), (1, 100), (1, 1));
        // Known: burst 2, then over its rate.
        assert_eq!(admit(&m, 7, l, NOW), admitted());
        assert_eq!(admit(&m, 7, l, NOW), admitted());
        assert_eq!(admit(&m, 7, l, NOW), Admission::Drop(Slot::DropKnownRate));
        // Unknown 8 wins the only new-client token, gets an LRU bucket with
        // one token spent; unknown 9 finds the budget empty and gets nothing.
        assert_eq!(admit(&m, 8, l, NOW), admitted());
        assert_eq!(m.fresh.borrow()[&8].tokens_milli, 1000);
        assert_eq!(admit(&m, 9, l, NOW), Admission::Drop(Slot::DropNewBudget));
        assert!(!m.fresh.borrow().contains_key(&9));
        // 8 is now fresh: per-MAC bucket, no new-client token needed.
        assert_eq!(admit(&m, 8, l, NOW), admitted());
        assert_eq!(admit(&m, 8, l, NOW), Admission::Drop(Slot::DropFreshRate));
    }

    #[test]
    fn global_caps_known_and_new_alike() {
        let m = Mock::default();
        m.known.borrow_mut().insert(7, Box::default());
        let l = limits((1, 100), (1, 3), (1, 100));
        assert_eq!(admit(&m, 7, l, NOW), admitted());
        assert_eq!(admit(&m, 8, l, NOW), admitted());
        assert_eq!(admit(&m, 7, l, NOW), admitted());
        assert_eq!(admit(&m, 7, l, NOW), Admission::Drop(Slot::DropGlobal));
        assert_eq!(admit(&m, 9, l, NOW), Admission::Drop(Slot::DropGlobal));
        // One second later the global bucket has one token again.
        assert_eq!(admit(&m, 9, l, NOW + 1_000_000_000), admitted());
    }

    #[test]
    fn trust_skips_per_mac_and_new_but_not_global() {
        let mut m = Mock::default();
        m.trust.push(3);
        let l = limits((1, 1), (1, 3), (1, 0));
        for _ in 0..3 {
            assert_eq!(admit(&m, 3, l, NOW), Admission::Admit { trusted: true });
        }
        assert_eq!(admit(&m, 3, l, NOW), Admission::Drop(Slot::DropGlobal));
        assert!(m.fresh.borrow().is_empty());
    }
}
