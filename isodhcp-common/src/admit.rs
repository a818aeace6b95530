//! Admission of DHCP requests (design.md §Admission): [`decide`] parses and
//! validates a frame ([`parse`](crate::parse)), then [`admit`] applies deny,
//! trust, known clients' per-MAC buckets, the new-client budget in front of
//! the table of fresh MACs, and the global budget. Written against
//! [`Tables`], so the one implementation runs in the kernel (the XDP program,
//! over BPF maps) and in the daemon (`--xdp off` and the packet-socket path,
//! over `HashMap`s).
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

use crate::bucket::{Bucket, Limits};
use crate::counters::Slot;
use crate::offer::Outcome;
use crate::parse::{Parsed, Request, parse};
use crate::{ABI_VERSION, GLOBAL_BUCKET, NEW_CLIENT_BUCKET};

/// The tables admission reads and writes: BPF maps in the kernel,
/// `HashMap`s in the daemon's userspace limiter.
pub trait Tables {
    /// Expiry of a deny entry (`CLOCK_MONOTONIC` ns, 0 = for ever).
    fn deny_until(&mut self, key: u64) -> Option<u64>;
    /// Whether `key` is on the trust list.
    fn trusted(&mut self, key: u64) -> bool;
    /// Per-MAC bucket of a client the daemon knows (lease or offer).
    fn known(&mut self, key: u64) -> Option<&mut Bucket>;
    /// Per-MAC bucket of an unknown MAC admitted recently.
    fn fresh(&mut self, key: u64) -> Option<&mut Bucket>;
    /// Best effort: a bounded table may fail or evict; admission does not care.
    fn fresh_insert(&mut self, key: u64, b: &Bucket);
    /// A shared bucket: [`GLOBAL_BUCKET`], [`NEW_CLIENT_BUCKET`],
    /// [`OFFER_BUCKET`](crate::OFFER_BUCKET) or [`COOKIE_BUCKET`](crate::COOKIE_BUCKET).
    fn shared(&mut self, idx: u32) -> Option<&mut Bucket>;
    /// Whether a compat or playground rule names this MAC or its OUI: only
    /// the daemon may answer it (design.md §Offer responder).
    fn classified(&mut self, _key: u64) -> bool {
        false
    }
}

/// Takes a token of the shared bucket `idx`; `None` when the table has no
/// such bucket.
#[inline(always)]
pub(crate) fn take_shared<T: Tables>(
    t: &mut T,
    idx: u32,
    now: u64,
    rate: u32,
    burst: u32,
) -> Option<bool> {
    t.shared(idx).map(|b| b.take(now, rate, burst))
}

/// Outcome of admission.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Hand the frame to the daemon. `trusted`: the per-MAC and new-client
    /// limits were skipped (counted in `pass_trusted`).
    Admit {
        /// The MAC is on the trust list.
        trusted: bool,
    },
    /// Drop, counted in this slot.
    Drop(Slot),
    /// The OFFER responder rewrote the frame into its reply: transmit it.
    Transmit,
}

/// What steps 3 and 4 of [`admit`] decided for an untrusted MAC.
enum PerMac {
    /// On to the global budget.
    Pass,
    Drop(Slot),
    Transmit,
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

/// Decides whether the request of `key` (a [`mac_key`](crate::mac_key))
/// reaches the daemon, at `now` (CLOCK_MONOTONIC ns).
#[inline(always)]
pub fn admit<T: Tables>(t: &mut T, key: u64, limits: Option<Limits>, now: u64) -> Admission {
    admit_with(t, key, limits, now, |_, _, _| Outcome::Daemon(None))
}

/// [`admit`] with an OFFER responder consulted for never-seen MACs (step
/// 4b; design.md §Offer responder), given the limits and `now` (one clock
/// read per frame: in a VM each costs tens of ns).
#[inline(always)]
pub fn admit_with<T: Tables>(
    t: &mut T,
    key: u64,
    limits: Option<Limits>,
    now: u64,
    respond: impl FnOnce(&mut T, &Limits, u64) -> Outcome,
) -> Admission {
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
        match per_mac(t, key, &l, now, respond) {
            PerMac::Pass => {}
            PerMac::Drop(s) => return Admission::Drop(s),
            PerMac::Transmit => return Admission::Transmit,
        }
    }
    // 5. Global budget over everything that is about to reach the daemon.
    if take_shared(t, GLOBAL_BUCKET, now, l.global_rate, l.global_burst) == Some(false) {
        return Admission::Drop(Slot::DropGlobal);
    }
    Admission::Admit { trusted }
}

/// Steps 3 and 4 of [`admit`]: the per-MAC limits of an untrusted MAC.
#[inline(always)]
fn per_mac<T: Tables>(
    t: &mut T,
    key: u64,
    l: &Limits,
    now: u64,
    respond: impl FnOnce(&mut T, &Limits, u64) -> Outcome,
) -> PerMac {
    let verdict = |ok: bool, s: Slot| if ok { PerMac::Pass } else { PerMac::Drop(s) };
    // 3. Known client (lease or outstanding offer): per-MAC bucket only.
    if let Some(b) = t.known(key) {
        return verdict(b.take(now, l.mac_rate, l.mac_burst), Slot::DropKnownRate);
    }
    // 4a. Unknown MAC admitted recently: its per-MAC bucket.
    if let Some(b) = t.fresh(key) {
        return verdict(b.take(now, l.mac_rate, l.mac_burst), Slot::DropFreshRate);
    }
    // 4b. Never-seen MAC. The OFFER responder answers a DISCOVER without
    // state, and lets through a REQUEST that names the address its OFFER
    // carried on a budget of its own (the REQUEST proves the client real);
    // everything else goes on as before.
    match respond(t, l, now) {
        Outcome::Offered => return PerMac::Transmit,
        Outcome::Cookie => return PerMac::Pass,
        Outcome::Broken => return PerMac::Drop(Slot::DropOfferBroken),
        Outcome::Daemon(_) => {}
    }
    // It must first win a token from the new-client budget, and only then
    // gets a fresh entry: random MACs can neither pass in bulk nor churn
    // the table.
    if take_shared(t, NEW_CLIENT_BUCKET, now, l.new_rate, l.new_burst) != Some(true) {
        return PerMac::Drop(Slot::DropNewBudget);
    }
    let mut b = Bucket::default();
    let ok = b.take(now, l.mac_rate, l.mac_burst);
    t.fresh_insert(key, &b);
    // Only with a per-MAC burst of 0.
    verdict(ok, Slot::DropFreshRate)
}

/// What becomes of a frame: the one verdict both the XDP program and the
/// daemon's userspace path act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Not ours (not DHCP to port 67, or tagged for another VLAN): the
    /// kernel stack gets it untouched.
    Pass,
    /// Dropped; already counted.
    Drop,
    /// A valid, admitted DHCP request from this [`mac_key`](crate::mac_key):
    /// deliver it to the daemon (the caller counts how: `redirect` or
    /// `pass_stack`).
    Deliver {
        /// The client's MAC key.
        mac: u64,
    },
    /// The frame holds the OFFER responder's reply (counted `tx_offer`):
    /// transmit it on the interface it came in on.
    Transmit,
}

/// Parses, validates and admits the frame in `[data, end)`, counting every
/// verdict through `count` (design.md §Admission). This is the whole
/// admission decision: the XDP program and the daemon's userspace path both
/// call it, so their verdicts and counters cannot drift apart.
///
/// # Safety
/// As for [`parse`]: every byte of `[data, end)` is readable for the call.
#[inline(always)]
pub unsafe fn decide<T: Tables>(
    data: usize,
    end: usize,
    t: &mut T,
    limits: Option<Limits>,
    now: impl FnOnce() -> u64,
    count: impl FnMut(Slot),
) -> Decision {
    // SAFETY: passed on from the caller.
    unsafe {
        decide_with(data, end, t, limits, now, count, |_, _, _, _| {
            Outcome::Daemon(None)
        })
    }
}

/// [`decide`] with an OFFER responder for requests from never-seen MACs
/// (the XDP program's; design.md §Offer responder).
///
/// # Safety
/// As for [`decide`].
#[inline(always)]
pub unsafe fn decide_with<T: Tables>(
    data: usize,
    end: usize,
    t: &mut T,
    limits: Option<Limits>,
    now: impl FnOnce() -> u64,
    mut count: impl FnMut(Slot),
    respond: impl FnOnce(&mut T, &Request, &Limits, u64) -> Outcome,
) -> Decision {
    // SAFETY: passed on from the caller.
    let req = match unsafe { parse(data, end) } {
        Parsed::NotDhcp => {
            count(Slot::NonDhcp);
            return Decision::Pass;
        }
        Parsed::OtherVlan => {
            count(Slot::PassVlan);
            return Decision::Pass;
        }
        Parsed::Drop(Slot::DropVlanDepth) => {
            count(Slot::DropVlanDepth);
            return Decision::Drop;
        }
        Parsed::Drop(s) => {
            count(Slot::Dhcp);
            count(s);
            return Decision::Drop;
        }
        Parsed::Request(r) => {
            count(Slot::Dhcp);
            r
        }
    };
    match admit_with(t, req.mac, limits, now(), |t, l, now| {
        respond(t, &req, l, now)
    }) {
        Admission::Drop(s) => {
            count(s);
            Decision::Drop
        }
        Admission::Transmit => {
            count(Slot::TxOffer);
            Decision::Transmit
        }
        Admission::Admit { trusted } => {
            if trusted {
                count(Slot::PassTrusted);
            }
            Decision::Deliver { mac: req.mac }
        }
    }
}

/// [`decide`] over a frame held in a byte slice (the daemon's path).
pub fn decide_frame<T: Tables>(
    frame: &[u8],
    t: &mut T,
    limits: Option<Limits>,
    now: impl FnOnce() -> u64,
    count: impl FnMut(Slot),
) -> Decision {
    let data = frame.as_ptr() as usize;
    // SAFETY: `[data, data + len)` is the slice, readable for this call.
    unsafe { decide(data, data + frame.len(), t, limits, now, count) }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::collections::HashMap;
    use std::vec::Vec;

    #[derive(Default)]
    struct Mock {
        deny: HashMap<u64, u64>,
        trust: Vec<u64>,
        known: HashMap<u64, Bucket>,
        fresh: HashMap<u64, Bucket>,
        shared: [Bucket; 2],
    }

    impl Tables for Mock {
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
            self.fresh.insert(key, *b);
        }
        fn shared(&mut self, idx: u32) -> Option<&mut Bucket> {
            self.shared.get_mut(idx as usize)
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
            ..Default::default()
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
            assert_eq!(admit(&mut m, 2, None, NOW), admitted());
        }
        assert_eq!(
            admit(&mut m, 1, None, NOW),
            Admission::Drop(Slot::DropDenied)
        );
        assert!(m.fresh.is_empty());
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
        assert_eq!(admit(&mut m, 1, l, NOW), Admission::Drop(Slot::DropDenied));
        assert_eq!(admit(&mut m, 2, l, NOW), admitted());
    }

    #[test]
    fn known_fresh_new_and_global() {
        let mut m = Mock::default();
        m.known.insert(7, Bucket::default());
        let l = limits((1, 2), (1, 100), (1, 1));
        // Known: burst 2, then over its rate.
        assert_eq!(admit(&mut m, 7, l, NOW), admitted());
        assert_eq!(admit(&mut m, 7, l, NOW), admitted());
        assert_eq!(
            admit(&mut m, 7, l, NOW),
            Admission::Drop(Slot::DropKnownRate)
        );
        // Unknown 8 wins the only new-client token, gets an LRU bucket with
        // one token spent; unknown 9 finds the budget empty and gets nothing.
        assert_eq!(admit(&mut m, 8, l, NOW), admitted());
        assert_eq!(m.fresh[&8].tokens_milli, 1000);
        assert_eq!(
            admit(&mut m, 9, l, NOW),
            Admission::Drop(Slot::DropNewBudget)
        );
        assert!(!m.fresh.contains_key(&9));
        // 8 is now fresh: per-MAC bucket, no new-client token needed.
        assert_eq!(admit(&mut m, 8, l, NOW), admitted());
        assert_eq!(
            admit(&mut m, 8, l, NOW),
            Admission::Drop(Slot::DropFreshRate)
        );
    }

    #[test]
    fn global_caps_known_and_new_alike() {
        let mut m = Mock::default();
        m.known.insert(7, Bucket::default());
        let l = limits((1, 100), (1, 3), (1, 100));
        assert_eq!(admit(&mut m, 7, l, NOW), admitted());
        assert_eq!(admit(&mut m, 8, l, NOW), admitted());
        assert_eq!(admit(&mut m, 7, l, NOW), admitted());
        assert_eq!(admit(&mut m, 7, l, NOW), Admission::Drop(Slot::DropGlobal));
        assert_eq!(admit(&mut m, 9, l, NOW), Admission::Drop(Slot::DropGlobal));
        // One second later the global bucket has one token again.
        assert_eq!(admit(&mut m, 9, l, NOW + 1_000_000_000), admitted());
    }

    #[test]
    fn trust_skips_per_mac_and_new_but_not_global() {
        let mut m = Mock::default();
        m.trust.push(3);
        let l = limits((1, 1), (1, 3), (1, 0));
        for _ in 0..3 {
            assert_eq!(admit(&mut m, 3, l, NOW), Admission::Admit { trusted: true });
        }
        assert_eq!(admit(&mut m, 3, l, NOW), Admission::Drop(Slot::DropGlobal));
        assert!(m.fresh.is_empty());
    }
}
