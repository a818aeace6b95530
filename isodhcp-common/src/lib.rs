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
pub const ABI_VERSION: u32 = 3;

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

/// Declares [`Counters`], [`COUNTER_NAMES`] and [`COUNTER_COUNT`] from one
/// list, so a counter is named in exactly one place.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident,)*) => {
        /// Per-CPU verdict counters. One entry (key 0) of a per-CPU array.
        ///
        /// In the kernel, every frame lands in exactly one of `non_dhcp`,
        /// `pass_vlan`, `drop_vlan_depth` or `dhcp`; every `dhcp` frame lands
        /// in exactly one `drop_*`, `redirect` or `pass_stack` field.
        /// `pass_trusted` additionally counts trusted frames that skipped the
        /// limits. `packet_path` is the daemon's own (see there).
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        /// Field names of [`Counters`], in declaration order.
        pub const COUNTER_NAMES: [&str; COUNTER_COUNT] = [$(stringify!($name),)*];

        impl Counters {
            /// Every field's value, in declaration order.
            pub fn values(&self) -> [u64; COUNTER_COUNT] {
                [$(self.$name,)*]
            }

            /// Counters from values in declaration order.
            pub fn from_values(v: [u64; COUNTER_COUNT]) -> Counters {
                let [$($name,)*] = v;
                Counters { $($name,)* }
            }

            fn fields_mut(&mut self) -> [&mut u64; COUNTER_COUNT] {
                [$(&mut self.$name,)*]
            }
        }
    };
}

/// Number of fields of [`Counters`].
pub const COUNTER_COUNT: usize = 19;

counters! {
    /// Not IPv4/UDP to port 67: passed untouched.
    non_dhcp,
    /// IPv4/UDP to port 67.
    dhcp,
    /// IPv4 header length below 20 or beyond the frame.
    drop_ihl,
    /// IPv4 fragment.
    drop_fragment,
    /// UDP length below 8 or beyond the IP payload.
    drop_udp_len,
    /// BOOTP fixed part (236 bytes) missing.
    drop_bootp_short,
    /// Not op 1 / htype 1 / hlen 6.
    drop_not_request,
    /// chaddr differs from the Ethernet source.
    drop_chaddr_spoof,
    /// MAC in the deny map.
    drop_denied,
    /// Known client over its per-MAC rate.
    drop_known_rate,
    /// Unknown MAC that found the new-client budget empty.
    drop_new_budget,
    /// Recently admitted unknown MAC over its per-MAC rate.
    drop_fresh_rate,
    /// Over the global budget.
    drop_global,
    /// Trusted MAC: per-MAC and new-client limits skipped.
    pass_trusted,
    /// Redirected to the daemon's AF_XDP socket.
    redirect,
    /// Passed to the kernel stack (no AF_XDP socket on this queue).
    pass_stack,
    /// Priority-tagged (VLAN id 0) frame whose tag stack is deeper than the
    /// program reads: the kernel would strip the tags and deliver whatever
    /// is inside to this interface, so it is dropped unseen.
    drop_vlan_depth,
    /// DHCP tagged for a VLAN (id ≠ 0): not this interface's; passed to the
    /// kernel, which hands it to that VLAN's interface or discards it.
    pass_vlan,
    /// In XDP mode, a DHCP frame that reached the daemon's packet socket
    /// instead of its AF_XDP socket (userspace count; the frame then went
    /// through the same checks and limits as `--xdp off`).
    packet_path,
}

impl Counters {
    /// Adds `o` field by field (summing per-CPU values).
    pub fn add(&mut self, o: &Counters) {
        for (a, b) in self.fields_mut().into_iter().zip(o.values()) {
            *a += b;
        }
    }

    /// (name, value) of every field, in declaration order.
    pub fn named(&self) -> [(&'static str, u64); COUNTER_COUNT] {
        let v = self.values();
        let mut out = [("", 0u64); COUNTER_COUNT];
        let mut i = 0;
        while i < COUNTER_COUNT {
            out[i] = (COUNTER_NAMES[i], v[i]);
            i += 1;
        }
        out
    }
}

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
    ///
    /// A `now_ns` behind `last_ns` counts as no time at all. That happens
    /// when several CPUs share a bucket: one reads the clock, another reads
    /// a later clock and writes `last_ns` first. Treating it as "the clock
    /// went back, start over full" (as this once did) handed a multi-CPU
    /// flood a full burst on every such race.
    ///
    /// Bound: the bucket itself never grants more than `burst + rate·t`
    /// tokens over `t` seconds. Buckets shared between CPUs are updated
    /// without atomics (see the XDP program's admission), so each of `n`
    /// CPUs that race inside one read-modify-write can spend the same token:
    /// at worst `n · (burst + rate·t)`, and in practice a few extra frames
    /// per collision, never a refill.
    #[inline(always)]
    pub fn take(&mut self, now_ns: u64, rate: u32, burst: u32) -> bool {
        let cap = (burst as u64) * 1000;
        let rate = rate as u64;
        if self.last_ns == 0 {
            self.tokens_milli = cap;
            self.last_ns = now_ns;
        } else if rate > 0 && now_ns > self.last_ns {
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
    fn a_clock_behind_the_bucket_refills_nothing() {
        // Two CPUs share one bucket. CPU B reads a later clock and writes
        // first; CPU A then arrives with its earlier reading. A must see an
        // empty bucket, not a refilled one.
        let mut b = Bucket::default();
        let t0 = 1_000_000_000;
        for _ in 0..3 {
            assert!(b.take(t0, 1, 3));
        }
        assert!(!b.take(t0 + 10, 1, 3), "CPU B: empty");
        assert!(
            !b.take(t0 + 5, 1, 3),
            "CPU A, clock 5 ns behind B: still empty"
        );
        assert!(!b.take(t0, 1, 3), "CPU A again: still empty");
    }

    #[test]
    fn two_racing_cpus_stay_within_the_rate() {
        // Interleave two "CPUs" whose clocks disagree by up to 40 µs (each
        // reads the clock, then takes), flooding for 2 s. The bucket must
        // grant its burst plus 2 s of refill, not a burst per race.
        let mut b = Bucket::default();
        let (rate, burst) = (100u32, 10u32);
        let t0 = 1_000_000_000u64;
        let mut granted = 0u32;
        let mut t = t0;
        while t < t0 + 2_000_000_000 {
            let cpu_a = t;
            let cpu_b = t + 40_000;
            granted += u32::from(b.take(cpu_b, rate, burst));
            granted += u32::from(b.take(cpu_a, rate, burst));
            t += 20_000;
        }
        assert!(
            (200..=211).contains(&granted),
            "granted {granted}, want burst 10 + 2 s × 100/s"
        );
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
        assert_eq!(Counters::from_values(a.values()), a);
        assert_eq!(COUNTER_NAMES.len(), COUNTER_COUNT);
    }
}
