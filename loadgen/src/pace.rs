//! Rate pacing math: frame `k` (0-based) is due at `k / rate` seconds after
//! the start, so by elapsed time `t` the number of due frames is
//! `floor(t * rate) + 1`.

const NANOS: u128 = 1_000_000_000;

/// Frames that should have been sent by `elapsed_ns` at `rate` frames/s,
/// minus `sent`; 0 if the sender is ahead. `rate == 0` means unpaced and
/// returns `u64::MAX`.
pub fn due_frames(elapsed_ns: u64, rate: u64, sent: u64) -> u64 {
    if rate == 0 {
        return u64::MAX;
    }
    let due = u128::from(elapsed_ns) * u128::from(rate) / NANOS + 1;
    let due = u64::try_from(due).unwrap_or(u64::MAX);
    due.saturating_sub(sent)
}

/// Nanoseconds after the start at which frame number `sent` (0-based) is due.
/// `rate == 0` means unpaced: always due now (0).
pub fn due_at_ns(rate: u64, sent: u64) -> u64 {
    if rate == 0 {
        return 0;
    }
    // ceil(sent * 1e9 / rate)
    let n = u128::from(sent) * NANOS;
    let r = u128::from(rate);
    u64::try_from(n.div_ceil(r)).unwrap_or(u64::MAX)
}

/// Achieved rate in frames/s (0 for a zero duration).
pub fn achieved_rate(frames: u64, elapsed_ns: u64) -> f64 {
    if elapsed_ns == 0 {
        return 0.0;
    }
    frames as f64 * 1e9 / elapsed_ns as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_frame_is_due_at_once() {
        assert_eq!(due_frames(0, 1000, 0), 1);
        assert_eq!(due_frames(0, 1000, 1), 0);
        assert_eq!(due_at_ns(1000, 0), 0);
    }

    #[test]
    fn due_grows_linearly() {
        // 1000 pps: one frame per ms.
        assert_eq!(due_frames(999_999, 1000, 0), 1);
        assert_eq!(due_frames(1_000_000, 1000, 0), 2);
        assert_eq!(due_frames(1_000_000_000, 1000, 0), 1001);
        assert_eq!(due_frames(1_000_000_000, 1000, 1001), 0);
        assert_eq!(
            due_frames(1_000_000_000, 1000, 5000),
            0,
            "ahead: nothing due"
        );
        assert_eq!(due_at_ns(1000, 1), 1_000_000);
        assert_eq!(due_at_ns(1000, 1000), 1_000_000_000);
        // 3 pps: frame 1 at ceil(333_333_333.3) ns.
        assert_eq!(due_at_ns(3, 1), 333_333_334);
        assert_eq!(due_frames(333_333_333, 3, 1), 0);
        assert_eq!(due_frames(333_333_334, 3, 1), 1);
    }

    #[test]
    fn due_at_and_due_frames_agree() {
        for rate in [1, 7, 1000, 10_000, 1_234_567] {
            for k in [0u64, 1, 2, 99, 12_345] {
                let t = due_at_ns(rate, k);
                assert!(due_frames(t, rate, k) >= 1, "rate {rate} frame {k}");
                if t > 0 {
                    assert_eq!(due_frames(t - 1, rate, k), 0, "rate {rate} frame {k}");
                }
            }
        }
    }

    #[test]
    fn unpaced_and_huge_values_do_not_overflow() {
        assert_eq!(due_frames(5, 0, 10), u64::MAX);
        assert_eq!(due_at_ns(0, 10), 0);
        assert!(due_frames(u64::MAX, u64::MAX, 0) > 0);
        assert_eq!(due_at_ns(1, u64::MAX), u64::MAX);
    }

    #[test]
    fn achieved() {
        assert_eq!(achieved_rate(1000, 1_000_000_000), 1000.0);
        assert_eq!(achieved_rate(5, 0), 0.0);
    }
}
