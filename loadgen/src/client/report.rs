//! The client result as the JSON document the tool prints.

use serde_json::{Value, json};

use super::{ClientConfig, ClientResult, Plan};
use crate::stats::AttemptStats;

/// The JSON report of one client run: the plan, the settings and the
/// statistics of every phase.
pub fn to_json(cfg: &ClientConfig, r: &ClientResult) -> Value {
    let (mode, kind, extra) = match &cfg.plan {
        Plan::Known {
            mac,
            interval,
            repeat,
        } => (
            "probe",
            "known",
            json!({"mac": mac.to_string(), "interval_ms": interval.as_millis() as u64,
                   "repeat": format!("{repeat:?}").to_lowercase()}),
        ),
        Plan::New {
            interval,
            max_inflight,
            release,
            mac_prefix,
        } => (
            "probe",
            "new",
            json!({"interval_ms": interval.as_millis() as u64, "max_inflight": max_inflight,
                   "release": release, "mac_prefix": format!("{mac_prefix:02x}")}),
        ),
        Plan::Dora {
            clients,
            inflight,
            release,
            mac_prefix,
            renew,
        } => (
            "dora",
            "dora",
            json!({"clients": clients, "inflight": inflight, "release": release,
                   "mac_prefix": format!("{mac_prefix:02x}"), "renew_rounds": renew}),
        ),
    };
    let secs = r.elapsed.as_secs_f64();
    let rsecs = r.renew_elapsed.as_secs_f64();
    let per_s = |n: u64, s: f64| {
        if s > 0.0 {
            ((n as f64 / s) * 10.0).round() / 10.0
        } else {
            0.0
        }
    };
    json!({
        "mode": mode,
        "kind": kind,
        "config": extra,
        "timeout_ms": cfg.timeout.as_millis() as u64,
        "max_tries": cfg.max_tries,
        "duration_s": cfg.duration.as_secs_f64(),
        "elapsed_s": (secs * 1000.0).round() / 1000.0,
        "initial": r.initial.as_ref().map(AttemptStats::to_json),
        "stats": r.stats.to_json(),
        "successes_per_s": per_s(r.stats.successes, secs),
        "renew": r.renew.as_ref().map(|s| json!({
            "stats": s.to_json(),
            "elapsed_s": (rsecs * 1000.0).round() / 1000.0,
            "successes_per_s": per_s(s.successes, rsecs),
        })),
        "tx_frames": r.tx_frames,
        "rx_frames": r.rx_frames,
        "rx_ignored": r.rx_ignored,
        "skipped_ticks": r.skipped_ticks,
    })
}
