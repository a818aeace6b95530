//! Token buckets and the limits they enforce: the arithmetic of admission,
//! shared by the kernel and the userspace limiter (design.md §Admission).

/// Rates (tokens per second) and bursts (tokens) of the admission limits.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    /// [`ABI_VERSION`](crate::ABI_VERSION) of the daemon that wrote this.
    pub abi: u32,
    /// Per client MAC (`--rate-limit`, `--rate-burst`).
    pub mac_rate: u32,
    /// Per client MAC burst (tokens).
    pub mac_burst: u32,
    /// Everything the daemon receives (`--global-rate-limit`; burst = 1 s worth).
    pub global_rate: u32,
    /// Global burst (tokens).
    pub global_burst: u32,
    /// MACs the limiter has not seen yet (`--new-client-rate`; burst = 1 s worth).
    pub new_rate: u32,
    /// New-client burst (tokens).
    pub new_burst: u32,
    /// Broadcast OFFERs sent from XDP per second (`--xdp-offer-rate`).
    pub offer_rate: u32,
    /// Their burst (tokens).
    pub offer_burst: u32,
    /// Cookie REQUESTs admitted per second (`--cookie-rate`).
    pub cookie_rate: u32,
    /// Their burst (tokens).
    pub cookie_burst: u32,
    /// Keeps the layout free of implicit padding; always 0.
    pub _pad: u32,
}

/// A token bucket in milli-tokens. `last_ns == 0` means "never used": full.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Tokens left, in thousandths.
    pub tokens_milli: u64,
    /// CLOCK_MONOTONIC ns up to which refill has been credited.
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
        let cap = u64::from(burst) * 1000;
        let rate = u64::from(rate);
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
}
