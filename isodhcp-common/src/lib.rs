//! What the isodhcp XDP program (`isodhcp-ebpf`) and the daemon share: the
//! map contract and its value types, and the one admission implementation
//! ([`parse`], [`admit`], [`decide`]) both of them run (design.md §Admission).
//!
//! Everything here is `#![no_std]`; map values are `#[repr(C)]` plain old
//! data, so the kernel side and userspace agree on their byte layout. Field names
//! matter: the XDP object is built with BTF, and `bpftool map dump` prints them.
//!
//! The map contract (names as pinned under `/sys/fs/bpf/isodhcp/<iface>/`):
//!
//! | map | kind | key | value | written by |
//! |---|---|---|---|---|
//! | `counters` | per-CPU array, 1 entry | 0 | [`Counters`] | kernel |
//! | `limits` | array, 1 entry | 0 | [`Limits`] | daemon at start |
//! | `buckets` | array, 2 entries | [`GLOBAL_BUCKET`], [`NEW_CLIENT_BUCKET`] | [`Bucket`] | kernel |
//! | `deny` | hash | [`mac_key`] | expiry, `CLOCK_MONOTONIC` ns, 0 = never | daemon |
//! | `trust` | hash | [`mac_key`] | `u32` 1 | daemon |
//! | `known` | hash | [`mac_key`] | [`Bucket`] (per-MAC) | daemon inserts/deletes, kernel spends |
//! | `fresh` | LRU hash | [`mac_key`] | [`Bucket`] (per-MAC) | kernel |
//! | `xsks` | XSKMAP | RX queue | AF_XDP socket | daemon |
//! | `offer_cfg` | array, 1 entry | 0 | [`OfferCfg`] (template, heartbeat) | daemon |
//! | `stripe` | array, [`STRIPE_MAX`] entries | [`stripe_index`] | [`StripeSlot`] | daemon |
//! | `offer_work` | per-CPU array, 1 entry | 0 | [`offer::Work`] | kernel (scratch) |
//! | `classified` | hash | [`mac_key`] or [`oui_key`] | `u32` 1: compat/playground rule | daemon |
#![no_std]
#![warn(missing_docs)]

/// Name of the XDP program in the object.
pub const XDP_PROGRAM: &str = "isodhcp_xdp";
/// First MAC octet of the benchmarks' flood generator: the lab's
/// `isodhcp_lab_sink` switch-port program drops frames addressed to it
/// (the attacker's replies leave the lab at the first hop, as a real
/// network carries them off the router). Nothing else uses it.
pub const LAB_FLOOD_OCTET: u8 = 0x0a;
/// Verdict counters ([`Counters`]).
pub const COUNTERS_MAP: &str = "counters";
/// Admission limits ([`Limits`]).
pub const LIMITS_MAP: &str = "limits";
/// The shared buckets ([`GLOBAL_BUCKET`], [`NEW_CLIENT_BUCKET`]).
pub const BUCKETS_MAP: &str = "buckets";
/// Denied MACs and their expiry.
pub const DENY_MAP: &str = "deny";
/// Trusted MACs.
pub const TRUST_MAP: &str = "trust";
/// Known clients' per-MAC buckets.
pub const KNOWN_MAP: &str = "known";
/// Recently admitted unknown MACs' buckets (LRU).
pub const FRESH_MAP: &str = "fresh";
/// AF_XDP sockets by RX queue.
pub const XSKS_MAP: &str = "xsks";
/// The OFFER responder's configuration ([`OfferCfg`]).
pub const OFFER_CFG_MAP: &str = "offer_cfg";
/// The addresses the OFFER responder offers ([`StripeSlot`]).
pub const STRIPE_MAP: &str = "stripe";
/// The OFFER responder's per-CPU scratch state ([`offer::Work`]).
pub const OFFER_WORK_MAP: &str = "offer_work";
/// MACs and OUIs a classification rule gives another mode than isolated.
pub const CLASSIFIED_MAP: &str = "classified";
/// Every map, in pin order.
pub const MAPS: [&str; 12] = [
    COUNTERS_MAP,
    LIMITS_MAP,
    BUCKETS_MAP,
    DENY_MAP,
    TRUST_MAP,
    KNOWN_MAP,
    FRESH_MAP,
    XSKS_MAP,
    OFFER_CFG_MAP,
    STRIPE_MAP,
    OFFER_WORK_MAP,
    CLASSIFIED_MAP,
];

/// Index of the global budget in `buckets`.
pub const GLOBAL_BUCKET: u32 = 0;
/// Index of the new-client budget in `buckets`.
pub const NEW_CLIENT_BUCKET: u32 = 1;
/// Index of the budget of broadcast OFFERs sent from XDP in `buckets`.
pub const OFFER_BUCKET: u32 = 2;
/// Index of the budget of cookie REQUESTs in `buckets`.
pub const COOKIE_BUCKET: u32 = 3;
/// Entries of `buckets`.
pub const BUCKETS: u32 = 4;
/// Capacity of `classified`.
pub const CLASSIFIED_MAX: u32 = 8192;
/// Capacity of `deny`.
pub const DENY_MAX: u32 = 4096;
/// Capacity of `trust`.
pub const TRUST_MAX: u32 = 4096;
/// Capacity of `known`.
pub const KNOWN_MAX: u32 = 65536;
/// Capacity of `fresh` (and of the userspace table standing in for it).
pub const FRESH_MAX: u32 = 8192;
/// Capacity of `xsks` (RX queues served).
pub const XSKS_MAX: u32 = 64;

/// Bumped whenever a map layout changes, so stale pins from another build are
/// replaced; also stored in [`Limits::abi`] so a pinned map can be checked.
pub const ABI_VERSION: u32 = 5;

/// Map key of a MAC address: the six bytes big-endian in the low 48 bits.
#[inline(always)]
pub fn mac_key(m: [u8; 6]) -> u64 {
    (u64::from(m[0]) << 40)
        | (u64::from(m[1]) << 32)
        | (u64::from(m[2]) << 24)
        | (u64::from(m[3]) << 16)
        | (u64::from(m[4]) << 8)
        | u64::from(m[5])
}

/// Key of an OUI (the first three bytes of a [`mac_key`]) in `classified`:
/// bit 63 set, so it never equals a MAC's key.
#[inline(always)]
pub fn oui_key(mac: u64) -> u64 {
    (1 << 63) | (mac >> 24)
}

pub mod admit;
pub mod bucket;
pub mod counters;
pub mod offer;
pub mod parse;

pub use admit::{
    Admission, Decision, Tables, active, admit, admit_with, decide, decide_frame, decide_with,
};
pub use bucket::{Bucket, Limits};
pub use counters::{COUNTER_COUNT, COUNTER_NAMES, Counters, Slot};
pub use offer::{OfferCfg, STRIPE_MAX, StripeSlot, stripe_index};

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all five): repr(C), Copy, made only of integer fields with no
    // padding holes that matter: every bit pattern is valid.
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::Limits {}
    unsafe impl aya::Pod for super::Bucket {}
    unsafe impl aya::Pod for super::OfferCfg {}
    unsafe impl aya::Pod for super::StripeSlot {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_key_is_big_endian_48_bits() {
        assert_eq!(mac_key([0x02, 0, 0, 0, 0x0d, 0x01]), 0x0200_0000_0d01);
    }
}
