//! Latency statistics: nearest-rank percentiles.

use serde_json::{Value, json};

/// Nearest-rank percentile (`q` in 0..=100) of `sorted` (ascending): the
/// smallest value with at least `q` % of the samples at or below it.
/// `None` for no samples.
pub fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let n = sorted.len();
    let q = q.clamp(0.0, 100.0);
    let rank = ((q / 100.0) * n as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, n) - 1])
}

/// Outcome counters and latencies of one kind of attempt.
#[derive(Debug, Default, Clone)]
pub struct AttemptStats {
    pub attempts: u64,
    pub successes: u64,
    pub failures: u64,
    pub naks: u64,
    /// Attempts cut off by the hard deadline (neither success nor failure).
    pub abandoned: u64,
    /// Retransmissions summed over all attempts.
    pub retries: u64,
    /// Latency of each success, ms (first send to ACK).
    pub latencies_ms: Vec<f64>,
    /// Retries of each success (0 = first try).
    pub success_retries: Vec<u32>,
}

impl AttemptStats {
    pub fn success_pct(&self) -> f64 {
        if self.attempts == 0 {
            0.0
        } else {
            100.0 * self.successes as f64 / self.attempts as f64
        }
    }

    pub fn sorted_latencies(&self) -> Vec<f64> {
        let mut v = self.latencies_ms.clone();
        v.sort_by(f64::total_cmp);
        v
    }

    pub fn to_json(&self) -> Value {
        let s = self.sorted_latencies();
        let first_try = self.success_retries.iter().filter(|r| **r == 0).count();
        json!({
            "attempts": self.attempts,
            "successes": self.successes,
            "failures": self.failures,
            "naks": self.naks,
            "abandoned": self.abandoned,
            "retries": self.retries,
            "success_pct": round3(self.success_pct()),
            "first_try_successes": first_try,
            "p50_ms": percentile(&s, 50.0).map(round3),
            "p99_ms": percentile(&s, 99.0).map(round3),
            "max_ms": s.last().copied().map(round3),
        })
    }

    /// One line for stderr.
    pub fn summary(&self) -> String {
        let s = self.sorted_latencies();
        let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.1}"));
        format!(
            "{} attempts, {} ok ({:.1} %), {} failed, {} NAK, {} abandoned, {} retries, p50 {} ms, p99 {} ms",
            self.attempts,
            self.successes,
            self.success_pct(),
            self.failures,
            self.naks,
            self.abandoned,
            self.retries,
            f(percentile(&s, 50.0)),
            f(percentile(&s, 99.0)),
        )
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&v, 0.0), Some(1.0));
        assert_eq!(percentile(&v, 1.0), Some(1.0));
        assert_eq!(percentile(&v, 1.5), Some(2.0));
    }

    #[test]
    fn small_samples() {
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(percentile(&[7.0], 50.0), Some(7.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), Some(2.0));
        assert_eq!(percentile(&v, 75.0), Some(3.0));
        assert_eq!(percentile(&v, 99.0), Some(4.0));
        // p99 of 10 samples is the maximum.
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&v, 99.0), Some(10.0));
    }

    #[test]
    fn stats_json() {
        let s = AttemptStats {
            attempts: 4,
            successes: 3,
            failures: 1,
            latencies_ms: vec![3.0, 1.0, 2.0],
            success_retries: vec![0, 1, 0],
            ..Default::default()
        };
        assert_eq!(s.success_pct(), 75.0);
        let j = s.to_json();
        assert_eq!(j["p50_ms"], 2.0);
        assert_eq!(j["p99_ms"], 3.0);
        assert_eq!(j["first_try_successes"], 2);
        assert!(AttemptStats::default().to_json()["p50_ms"].is_null());
    }
}
