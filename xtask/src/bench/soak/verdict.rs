//! What makes a soak fail, as pure functions over the samples (unit-tested
//! below): growth after warm-up, lost leases, persistent `--verify`
//! findings. The same rules hold for 10 minutes and for 24 hours.

use serde_json::{Value, json};

/// One reading, every `--sample-secs`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Sample {
    /// Seconds since the daemon was ready.
    pub t: f64,
    pub rss_kib: u64,
    pub fds: u64,
    pub leases: u64,
    pub journal_bytes: u64,
    pub hooks_pending: u64,
    pub hooks_runs: u64,
    pub cpu_s: f64,
}

impl Sample {
    pub(super) fn to_json(&self) -> Value {
        json!({
            "t_s": self.t, "rss_kib": self.rss_kib, "fds": self.fds,
            "leases": self.leases, "journal_bytes": self.journal_bytes,
            "hooks_pending": self.hooks_pending, "hooks_runs": self.hooks_runs,
            "cpu_s": self.cpu_s,
        })
    }
}

/// RSS may drift by this much between the two halves after warm-up
/// (allocator noise), whichever is larger.
const RSS_SLACK_KIB: u64 = 2048;
const RSS_SLACK_PCT: u64 = 5;
/// The fewest open fds in the second half may exceed the fewest in the
/// first by this many. Minima, because hooks and `nft` children in flight
/// add pipes to any one reading; a leak raises the floor.
const FD_SLACK: u64 = 2;
/// The journal is compacted into the snapshot; it may not outgrow twice
/// the first half's maximum plus this.
const JOURNAL_SLACK_BYTES: u64 = 256 * 1024;
/// Hook backlog allowed at the end, over the first half's maximum.
const HOOK_SLACK: u64 = 16;

fn median(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v.get(v.len() / 2).copied().unwrap_or(0)
}

/// The samples after warm-up, split into halves.
fn halves(samples: &[Sample], warmup_s: f64) -> Option<(&[Sample], &[Sample])> {
    let after: Vec<usize> = (0..samples.len())
        .filter(|&i| samples[i].t >= warmup_s)
        .collect();
    let first = *after.first()?;
    let post = &samples[first..];
    if post.len() < 4 {
        return None;
    }
    Some(post.split_at(post.len() / 2))
}

/// Growth findings after warm-up (empty = flat). Too few samples after
/// warm-up is itself a finding: a soak that measured nothing must not pass.
pub(super) fn growth(samples: &[Sample], warmup_s: f64) -> Vec<String> {
    let Some((a, b)) = halves(samples, warmup_s) else {
        return vec![format!(
            "fewer than 4 samples after the {warmup_s:.0} s warm-up: run longer"
        )];
    };
    let mut out = Vec::new();
    let col = |s: &[Sample], f: fn(&Sample) -> u64| s.iter().map(f).collect::<Vec<u64>>();
    let (ra, rb) = (
        median(&mut col(a, |s| s.rss_kib)),
        median(&mut col(b, |s| s.rss_kib)),
    );
    let rss_slack = RSS_SLACK_KIB.max(ra * RSS_SLACK_PCT / 100);
    if rb > ra + rss_slack {
        out.push(format!(
            "RSS grows: median {ra} KiB in the first half after warm-up, {rb} KiB in the second (slack {rss_slack} KiB)"
        ));
    }
    let max = |s: &[Sample], f: fn(&Sample) -> u64| s.iter().map(f).max().unwrap_or(0);
    let (fa, fb) = (max(a, |s| s.fds), max(b, |s| s.fds));
    if fb > fa + FD_SLACK {
        out.push(format!(
            "open fds grow: at most {fa} in the first half, {fb} in the second"
        ));
    }
    let (ja, jb) = (max(a, |s| s.journal_bytes), max(b, |s| s.journal_bytes));
    if jb > 2 * ja + JOURNAL_SLACK_BYTES {
        out.push(format!(
            "journal grows: at most {ja} B in the first half, {jb} B in the second"
        ));
    }
    let ha = max(a, |s| s.hooks_pending);
    let hend = b.last().map_or(0, |s| s.hooks_pending);
    if hend > ha + HOOK_SLACK {
        out.push(format!(
            "hook backlog grows: at most {ha} in the first half, {hend} at the end"
        ));
    }
    out
}

/// Residents whose address changed or vanished between two readings:
/// `(mac, before, after)`.
pub(super) fn lost_leases(
    before: &[(String, String)],
    after: &[(String, String)],
) -> Vec<(String, String, Option<String>)> {
    before
        .iter()
        .filter_map(|(mac, ip)| {
            let now = after.iter().find(|(m, _)| m == mac).map(|(_, i)| i.clone());
            (now.as_deref() != Some(ip.as_str())).then(|| (mac.clone(), ip.clone(), now))
        })
        .collect()
}

/// `(mac, ip)` of every lease in a `--dump --json` answer: any object with
/// string fields `mac` and `ip`.
pub(super) fn leases_in(v: &Value) -> Vec<(String, String)> {
    fn walk(v: &Value, depth: usize, out: &mut Vec<(String, String)>) {
        if depth > 16 {
            return;
        }
        match v {
            Value::Object(m) => {
                if let (Some(Value::String(mac)), Some(Value::String(ip))) =
                    (m.get("mac"), m.get("ip"))
                {
                    out.push((mac.to_lowercase(), ip.clone()));
                }
                m.values().for_each(|x| walk(x, depth + 1, out));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, depth + 1, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(v, 0, &mut out);
    out
}

/// Findings present in every one of `rounds` (a finding that a commit in
/// flight explains goes away on the next round; a real one stays).
pub(super) fn persistent(rounds: &[Vec<String>]) -> Vec<String> {
    let Some((first, rest)) = rounds.split_first() else {
        return Vec::new();
    };
    first
        .iter()
        .filter(|f| rest.iter().all(|r| r.contains(f)))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(rss: impl Fn(usize) -> u64, fds: impl Fn(usize) -> u64) -> Vec<Sample> {
        (0..20)
            .map(|i| Sample {
                t: i as f64 * 10.0,
                rss_kib: rss(i),
                fds: fds(i),
                ..Sample::default()
            })
            .collect()
    }

    #[test]
    fn flat_series_pass_and_growth_fails() {
        assert!(growth(&series(|i| 20_000 + (i as u64 % 3) * 100, |_| 30), 60.0).is_empty());
        // Warm-up growth is allowed.
        assert!(
            growth(
                &series(
                    |i| if i < 6 {
                        10_000 + i as u64 * 2000
                    } else {
                        22_000
                    },
                    |_| 30
                ),
                60.0
            )
            .is_empty()
        );
        let leak = growth(&series(|i| 20_000 + i as u64 * 500, |_| 30), 60.0);
        assert!(leak.iter().any(|f| f.starts_with("RSS grows")), "{leak:?}");
        let fd_leak = growth(&series(|_| 20_000, |i| 30 + i as u64), 60.0);
        assert!(
            fd_leak.iter().any(|f| f.starts_with("open fds grow")),
            "{fd_leak:?}"
        );
    }

    #[test]
    fn too_short_a_run_is_a_finding() {
        let s = series(|_| 1, |_| 1);
        assert_eq!(growth(&s[..5], 60.0).len(), 1);
    }

    #[test]
    fn leases_are_found_and_losses_reported() {
        let v = json!({"sections": [{"leases": [
            {"mac": "02:00:00:00:00:01", "ip": "198.18.0.9", "mode": "isolated"},
            {"mac": "02:00:00:00:00:02", "ip": "198.18.0.10"}]}]});
        let l = leases_in(&v);
        assert_eq!(l.len(), 2);
        let after = vec![
            l[0].clone(),
            ("02:00:00:00:00:02".into(), "198.18.0.11".into()),
        ];
        let lost = lost_leases(&l, &after);
        assert_eq!(
            lost,
            [(
                "02:00:00:00:00:02".into(),
                "198.18.0.10".into(),
                Some("198.18.0.11".into())
            )]
        );
        assert_eq!(lost_leases(&l, &l[..1]).len(), 1);
    }

    #[test]
    fn only_findings_seen_every_round_persist() {
        let r = vec![
            vec!["a".into(), "b".into()],
            vec!["b".into()],
            vec!["b".into(), "c".into()],
        ];
        assert_eq!(persistent(&r), ["b"]);
        assert!(persistent(&[]).is_empty());
    }
}
