//! What `bench flood` reads of the XDP program: its pinned counters, its
//! run time per frame (`kernel.bpf_stats_enabled`) and whether it is
//! attached.

use std::collections::BTreeMap;
use std::path::Path;

use isodhcp_tests::daemon::bpftool_json;
use isodhcp_tests::{Lab, SERVER_IF};
use serde_json::Value;

/// `kernel.bpf_stats_enabled` on for the bench (the XDP program's run time
/// per frame), the old value restored on drop.
pub(super) struct BpfStats(Option<String>);

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub(super) fn enable() -> BpfStats {
        let before = std::fs::read_to_string(BPF_STATS).ok();
        if before.is_some() {
            let _ = std::fs::write(BPF_STATS, "1");
        }
        BpfStats(before)
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Some(b) = &self.0 {
            let _ = std::fs::write(BPF_STATS, b.trim());
        }
    }
}

/// (run_time_ns, run_cnt) summed over the loaded programs named
/// `isodhcp_xdp` (the lab's, one at a time).
pub(super) fn xdp_run_stats() -> Option<(u64, u64)> {
    let v = bpftool_json(&["prog", "show", "name", "isodhcp_xdp"]).ok()?;
    let progs = match v {
        Value::Array(a) => a,
        o => vec![o],
    };
    Some(progs.iter().fold((0, 0), |(t, n), p| {
        (
            t + p["run_time_ns"].as_u64().unwrap_or(0),
            n + p["run_cnt"].as_u64().unwrap_or(0),
        )
    }))
}

/// The XDP `counters` map summed over CPUs, by field name.
pub(super) fn xdp_counters(pin_dir: &Path) -> Option<BTreeMap<String, u64>> {
    let p = pin_dir.join("counters");
    if !p.exists() {
        return None;
    }
    let v = bpftool_json(&["map", "dump", "pinned", p.to_str()?]).ok()?;
    let mut m = BTreeMap::new();
    sum_fields(&v, &mut m, 0);
    Some(m)
}

/// Sums every numeric field by name; where bpftool gives a BTF-formatted
/// copy next to raw hex, only the formatted copy counts.
fn sum_fields(v: &Value, acc: &mut BTreeMap<String, u64>, depth: usize) {
    if depth > 32 {
        return;
    }
    match v {
        Value::Object(o) => {
            if let Some(f) = o.get("formatted") {
                return sum_fields(f, acc, depth + 1);
            }
            for (k, x) in o {
                match x {
                    Value::Number(n) if k != "key" && k != "cpu" => {
                        if let Some(n) = n.as_u64() {
                            *acc.entry(k.clone()).or_default() += n;
                        }
                    }
                    _ => sum_fields(x, acc, depth + 1),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| sum_fields(x, acc, depth + 1)),
        _ => {}
    }
}

pub(super) fn delta(
    before: &Option<BTreeMap<String, u64>>,
    after: &Option<BTreeMap<String, u64>>,
) -> Option<BTreeMap<String, u64>> {
    let after = after.as_ref()?;
    Some(
        after
            .iter()
            .map(|(k, v)| {
                let b = before.as_ref().and_then(|b| b.get(k)).copied().unwrap_or(0);
                (k.clone(), v.saturating_sub(b))
            })
            .collect(),
    )
}

/// Is an XDP program attached to srv0?
pub(super) fn xdp_attached(lab: &Lab) -> Option<bool> {
    let v = lab
        .server
        .ip_json(&["link", "show", "dev", SERVER_IF])
        .ok()?;
    let l = v.as_array()?.first()?;
    Some(l.get("xdp").is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn per_cpu_counters_are_summed_by_name() {
        let v = json!([{"key": 0, "values": [
            {"cpu": 0, "value": {"dhcp": 5, "drop_new_client": 3, "redirect": 1}},
            {"cpu": 1, "value": {"dhcp": 7, "drop_new_client": 4, "redirect": 0}}
        ]}]);
        let mut m = BTreeMap::new();
        sum_fields(&v, &mut m, 0);
        assert_eq!(m["dhcp"], 12);
        assert_eq!(m["drop_new_client"], 7);
        assert!(!m.contains_key("cpu") && !m.contains_key("key"));
        // A formatted copy next to raw bytes: only the formatted one counts.
        let v = json!([{"key": ["0x00"], "formatted": {"values": [{"cpu": 0, "value": {"dhcp": 2}}]},
                        "values": [{"cpu": 0, "value": ["0x02"]}]}]);
        let mut m = BTreeMap::new();
        sum_fields(&v, &mut m, 0);
        assert_eq!(m["dhcp"], 2);
    }
}
