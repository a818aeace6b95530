//! Types shared between the isodhcp XDP program (`isodhcp-ebpf`) and the daemon.
//!
//! Everything here is `#![no_std]`, `#[repr(C)]` and plain old data, so the kernel
//! side and userspace agree on the byte layout of every map value. Field names
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
#![no_std]

/// Name of the XDP program in the object.
pub const XDP_PROGRAM: &str = "isodhcp_xdp";
pub const COUNTERS_MAP: &str = "counters";
pub const LIMITS_MAP: &str = "limits";
pub const BUCKETS_MAP: &str = "buckets";
pub const DENY_MAP: &str = "deny";
pub const TRUST_MAP: &str = "trust";
pub const KNOWN_MAP: &str = "known";
pub const FRESH_MAP: &str = "fresh";
pub const XSKS_MAP: &str = "xsks";
/// Every map, in pin order.
pub const MAPS: [&str; 8] = [
    COUNTERS_MAP,
    LIMITS_MAP,
    BUCKETS_MAP,
    DENY_MAP,
    TRUST_MAP,
    KNOWN_MAP,
    FRESH_MAP,
    XSKS_MAP,
];

pub const GLOBAL_BUCKET: u32 = 0;
pub const NEW_CLIENT_BUCKET: u32 = 1;
pub const DENY_MAX: u32 = 4096;
pub const TRUST_MAX: u32 = 4096;
pub const KNOWN_MAX: u32 = 65536;
pub const FRESH_MAX: u32 = 8192;
pub const XSKS_MAX: u32 = 64;

/// Bumped whenever a map layout changes, so stale pins from another build are
/// replaced; also stored in [`Limits::abi`] so a pinned map can be checked.
pub const ABI_VERSION: u32 = 2;

/// Map key of a MAC address: the six bytes big-endian in the low 48 bits.
#[inline(always)]
pub fn mac_key(m: [u8; 6]) -> u64 {
    ((m[0] as u64) << 40)
        | ((m[1] as u64) << 32)
        | ((m[2] as u64) << 24)
        | ((m[3] as u64) << 16)
        | ((m[4] as u64) << 8)
        | (m[5] as u64)
}

/// Per-CPU verdict counters. One entry (key 0) of a per-CPU array.
///
/// Every frame lands in exactly one of `non_dhcp` or `dhcp`; every `dhcp`
/// frame lands in exactly one `drop_*`, `redirect` or `pass_stack` field.
/// `pass_trusted` additionally counts trusted frames that skipped the limits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Not IPv4/UDP to port 67: passed untouched.
    pub non_dhcp: u64,
    /// IPv4/UDP to port 67.
    pub dhcp: u64,
    /// IPv4 header length below 20 or beyond the frame.
    pub drop_ihl: u64,
    /// IPv4 fragment.
    pub drop_fragment: u64,
    /// UDP length below 8 or beyond the IP payload.
    pub drop_udp_len: u64,
    /// BOOTP fixed part (236 bytes) missing.
    pub drop_bootp_short: u64,
    /// Not op 1 / htype 1 / hlen 6.
    pub drop_not_request: u64,
    /// chaddr differs from the Ethernet source.
    pub drop_chaddr_spoof: u64,
    /// MAC in the deny map.
    pub drop_denied: u64,
    /// Known client over its per-MAC rate.
    pub drop_known_rate: u64,
    /// Unknown MAC that found the new-client budget empty.
    pub drop_new_budget: u64,
    /// Recently admitted unknown MAC over its per-MAC rate.
    pub drop_fresh_rate: u64,
    /// Over the global budget.
    pub drop_global: u64,
    /// Trusted MAC: per-MAC and new-client limits skipped.
    pub pass_trusted: u64,
    /// Redirected to the daemon's AF_XDP socket.
    pub redirect: u64,
    /// Passed to the kernel stack (no AF_XDP socket on this queue).
    pub pass_stack: u64,
}

impl Counters {
    /// Adds `o` field by field (summing per-CPU values).
    pub fn add(&mut self, o: &Counters) {
        for (a, b) in self.fields_mut().into_iter().zip(o.fields()) {
            *a += b;
        }
    }

    /// (name, value) of every field, in declaration order.
    pub fn named(&self) -> [(&'static str, u64); 16] {
        let v = self.fields();
        let mut out = [("", 0u64); 16];
        let mut i = 0;
        while i < 16 {
            out[i] = (COUNTER_NAMES[i], v[i]);
            i += 1;
        }
        out
    }

    fn fields(&self) -> [u64; 16] {
        [
            self.non_dhcp,
            self.dhcp,
            self.drop_ihl,
            self.drop_fragment,
            self.drop_udp_len,
            self.drop_bootp_short,
            self.drop_not_request,
            self.drop_chaddr_spoof,
            self.drop_denied,
            self.drop_known_rate,
            self.drop_new_budget,
            self.drop_fresh_rate,
            self.drop_global,
            self.pass_trusted,
            self.redirect,
            self.pass_stack,
        ]
    }

    fn fields_mut(&mut self) -> [&mut u64; 16] {
        [
            &mut self.non_dhcp,
            &mut self.dhcp,
            &mut self.drop_ihl,
            &mut self.drop_fragment,
            &mut self.drop_udp_len,
            &mut self.drop_bootp_short,
            &mut self.drop_not_request,
            &mut self.drop_chaddr_spoof,
            &mut self.drop_denied,
            &mut self.drop_known_rate,
            &mut self.drop_new_budget,
            &mut self.drop_fresh_rate,
            &mut self.drop_global,
            &mut self.pass_trusted,
            &mut self.redirect,
            &mut self.pass_stack,
        ]
    }
}

/// Field names of [`Counters`], in declaration order.
pub const COUNTER_NAMES: [&str; 16] = [
    "non_dhcp",
    "dhcp",
    "drop_ihl",
    "drop_fragment",
    "drop_udp_len",
    "drop_bootp_short",
    "drop_not_request",
    "drop_chaddr_spoof",
    "drop_denied",
    "drop_known_rate",
    "drop_new_budget",
    "drop_fresh_rate",
    "drop_global",
    "pass_trusted",
    "redirect",
    "pass_stack",
];

/// Rates (tokens per second) and bursts (tokens) of the admission limits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// [`ABI_VERSION`] of the daemon that wrote this.
    pub abi: u32,
    /// Per client MAC (`--rate-limit`, `--rate-burst`).
    pub mac_rate: u32,
    pub mac_burst: u32,
    /// Everything the daemon receives (`--global-rate-limit`; burst = 1 s worth).
    pub global_rate: u32,
    pub global_burst: u32,
    /// MACs the limiter has not seen yet (`--new-client-rate`; burst = 1 s worth).
    pub new_rate: u32,
    pub new_burst: u32,
    pub _pad: u32,
}

/// A token bucket in milli-tokens. `last_ns == 0` means "never used": full.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub tokens_milli: u64,
    pub last_ns: u64,
}

/// Refill horizon: a bucket idle longer than this is simply full.
const MAX_ELAPSED_NS: u64 = 100_000_000_000;

impl Bucket {
    /// Refills at `rate` tokens/s up to `burst` tokens, then takes one token.
    /// Integer-only (it runs in the kernel too); returns whether a token was
    /// available.
    ///
    /// Time is only consumed as far as it turned into whole milli-tokens:
    /// the remainder carries over to the next call, so a bucket hit every
    /// few microseconds (a flood) still refills at exactly `rate` instead of
    /// losing every call's fraction to integer division.
    #[inline(always)]
    pub fn take(&mut self, now_ns: u64, rate: u32, burst: u32) -> bool {
        let cap = (burst as u64) * 1000;
        let rate = rate as u64;
        if self.last_ns == 0 || now_ns < self.last_ns {
            self.tokens_milli = cap;
            self.last_ns = now_ns;
        } else if rate > 0 {
            let mut elapsed = now_ns - self.last_ns;
            if elapsed > MAX_ELAPSED_NS {
                elapsed = MAX_ELAPSED_NS;
            }
            let add = elapsed * rate / 1_000_000;
            if add > 0 {
                let t = self.tokens_milli + add;
                if t >= cap {
                    self.tokens_milli = cap;
                    self.last_ns = now_ns;
                } else {
                    self.tokens_milli = t;
                    // Exactly the time these milli-tokens took to accrue.
                    self.last_ns += add * 1_000_000 / rate;
                }
            }
        }
        if self.tokens_milli >= 1000 {
            self.tokens_milli -= 1000;
            true
        } else {
            false
        }
    }
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY (all three): repr(C), Copy, made only of integer fields with no
    // padding holes that matter: every bit pattern is valid.
    unsafe impl aya::Pod for super::Counters {}
    unsafe impl aya::Pod for super::Limits {}
    unsafe impl aya::Pod for super::Bucket {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bursts_then_refills_at_rate() {
        let mut b = Bucket::default();
        let t0 = 1_000_000_000;
        // Burst of 5 at once, then empty.
        for _ in 0..5 {
            assert!(b.take(t0, 2, 5));
        }
        assert!(!b.take(t0, 2, 5));
        // 2 tokens/s: one token after 500 ms, not before.
        assert!(!b.take(t0 + 499_000_000, 2, 5));
        assert!(b.take(t0 + 500_000_000, 2, 5));
        assert!(!b.take(t0 + 500_000_000, 2, 5));
        // A long idle fills up to the burst only.
        let later = t0 + 3_600_000_000_000;
        for _ in 0..5 {
            assert!(b.take(later, 2, 5));
        }
        assert!(!b.take(later, 2, 5));
    }

    #[test]
    fn frequent_calls_do_not_lose_refill_to_rounding() {
        // A flood hits the bucket every 5 µs; at 100 tokens/s each call
        // earns 0.5 milli-tokens, which must add up rather than vanish.
        let mut b = Bucket::default();
        let t0 = 1_000_000_000;
        let mut granted = 0;
        let mut t = t0;
        while t < t0 + 2_000_000_000 {
            granted += u32::from(b.take(t, 100, 100));
            t += 5_000;
        }
        // Burst of 100 at the start, then 100/s for 2 s.
        assert!((295..=301).contains(&granted), "granted {granted}");
    }

    #[test]
    fn mac_key_is_big_endian_48_bits() {
        assert_eq!(mac_key([0x02, 0, 0, 0, 0x0d, 0x01]), 0x0200_0000_0d01);
    }

    #[test]
    fn counters_add_and_names_line_up() {
        let mut a = Counters {
            dhcp: 1,
            pass_stack: 2,
            ..Default::default()
        };
        a.add(&Counters {
            dhcp: 3,
            drop_global: 4,
            ..Default::default()
        });
        let named = a.named();
        assert_eq!(named[1], ("dhcp", 4));
        assert_eq!(named[12], ("drop_global", 4));
        assert_eq!(named[15], ("pass_stack", 2));
    }
}
