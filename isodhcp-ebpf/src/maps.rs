//! The maps of the map contract in `isodhcp_common` (names, key and value
//! types, sizes), as BTF-defined maps so `bpftool map dump` prints field names.

use aya_ebpf::{
    bindings::BPF_ANY,
    btf_maps::{Array, HashMap, LruHashMap, PerCpuArray, XskMap},
    macros::btf_map,
};
use isodhcp_common::{
    BUCKETS as BUCKET_COUNT, Bucket, CLASSIFIED_MAX, Counters, DENY_MAX, FRESH_MAX, KNOWN_MAX,
    Limits, OfferCfg, STRIPE_MAX, StripeSlot, TRUST_MAX, XSKS_MAX, offer::Work, oui_key,
};

use isodhcp_common::Tables;

/// Verdict counters: one entry (key 0), one copy per CPU.
#[btf_map(name = "counters")]
pub static COUNTERS: PerCpuArray<Counters, 1> = PerCpuArray::new();

/// Admission limits, written by the daemon; `abi == 0` until then.
#[btf_map(name = "limits")]
pub static LIMITS: Array<Limits, 1> = Array::new();

/// Shared token buckets: `GLOBAL_BUCKET`, `NEW_CLIENT_BUCKET`,
/// `OFFER_BUCKET`, `COOKIE_BUCKET`.
#[btf_map(name = "buckets")]
static BUCKETS: Array<Bucket, { BUCKET_COUNT as usize }> = Array::new();

/// MAC key -> expiry (CLOCK_MONOTONIC ns, 0 = for ever).
#[btf_map(name = "deny")]
static DENY: HashMap<u64, u64, { DENY_MAX as usize }> = HashMap::new();

/// MAC key -> 1.
#[btf_map(name = "trust")]
static TRUST: HashMap<u64, u32, { TRUST_MAX as usize }> = HashMap::new();

/// MAC key -> per-MAC bucket of a client the daemon knows.
#[btf_map(name = "known")]
static KNOWN: HashMap<u64, Bucket, { KNOWN_MAX as usize }> = HashMap::new();

/// MAC key -> per-MAC bucket of an unknown MAC that won a new-client token.
#[btf_map(name = "fresh")]
static FRESH: LruHashMap<u64, Bucket, { FRESH_MAX as usize }> = LruHashMap::new();

/// RX queue -> AF_XDP socket of the daemon.
#[btf_map(name = "xsks")]
pub static XSKS: XskMap<{ XSKS_MAX as usize }> = XskMap::new();

/// The OFFER responder's configuration; `abi == 0` (responder off) until
/// the daemon writes it.
#[btf_map(name = "offer_cfg")]
pub static OFFER_CFG: Array<OfferCfg, 1> = Array::new();

/// The addresses the responder offers, by `stripe_index`.
#[btf_map(name = "stripe")]
pub static STRIPE: Array<StripeSlot, { STRIPE_MAX as usize }> = Array::new();

/// The responder's per-frame working state (too large for the BPF stack).
#[btf_map(name = "offer_work")]
pub static WORK: PerCpuArray<Work, 1> = PerCpuArray::new();

/// MAC keys and OUI keys of compat/playground classification rules -> 1.
#[btf_map(name = "classified")]
static CLASSIFIED: HashMap<u64, u32, { CLASSIFIED_MAX as usize }> = HashMap::new();

/// [`Tables`] over the BPF maps.
pub struct Maps;

impl Tables for Maps {
    #[inline(always)]
    fn deny_until(&mut self, key: u64) -> Option<u64> {
        // SAFETY: a plain copy out of the value; the daemon may rewrite it
        // concurrently, which at worst yields the old or the new expiry.
        DENY.get_ptr(key).map(|p| unsafe { *p })
    }

    #[inline(always)]
    fn trusted(&mut self, key: u64) -> bool {
        TRUST.get_ptr(key).is_some()
    }

    #[inline(always)]
    fn known(&mut self, key: u64) -> Option<&mut Bucket> {
        // SAFETY: a live map value for the rest of this run; other CPUs may
        // update it concurrently, which admission tolerates (see
        // `isodhcp_common::admit`, "Concurrency").
        KNOWN.get_ptr_mut(key).map(|p| unsafe { &mut *p })
    }

    #[inline(always)]
    fn fresh(&mut self, key: u64) -> Option<&mut Bucket> {
        // SAFETY: as for `known`.
        FRESH.get_ptr_mut(key).map(|p| unsafe { &mut *p })
    }

    #[inline(always)]
    fn fresh_insert(&mut self, key: u64, b: &Bucket) {
        // Fails only on memory pressure; a racing insert of the same key
        // simply wins. Either way the frame was already admitted.
        let _ = FRESH.insert(key, b, u64::from(BPF_ANY));
    }

    #[inline(always)]
    fn shared(&mut self, idx: u32) -> Option<&mut Bucket> {
        // SAFETY: as for `known`.
        BUCKETS.get_ptr_mut(idx).map(|p| unsafe { &mut *p })
    }

    #[inline(always)]
    fn classified(&mut self, key: u64) -> bool {
        CLASSIFIED.get_ptr(key).is_some() || CLASSIFIED.get_ptr(oui_key(key)).is_some()
    }
}
