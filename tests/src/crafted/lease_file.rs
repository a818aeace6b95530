//! The daemon's lease file and journal as the tests read them.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use isodhcp::wire::Mac;

use crate::util::wait_until;

/// The lease file as JSON (error if missing or not JSON), with the
/// daemon's append-only journal (`<file>.journal`, one `{"put": MAC,
/// "lease": {..}}` / `{"del": MAC}` / `{"quarantine": {..}}` per line)
/// replayed onto it: together they are what is durable on disk (design.md §Persistence).
pub fn lease_json(path: &Path) -> Result<serde_json::Value> {
    use serde_json::Value;
    let mut j: Value = match std::fs::read_to_string(path) {
        Ok(t) => {
            serde_json::from_str(&t).with_context(|| format!("lease file is not JSON:\n{t}"))?
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            serde_json::json!({"leases": {}, "quarantine": {}})
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let jpath = format!("{}.journal", path.display());
    if let Ok(t) = std::fs::read_to_string(&jpath) {
        for line in t.lines().filter(|l| !l.trim().is_empty()) {
            let Ok(v) = serde_json::from_str::<Value>(line) else {
                continue;
            };
            if let (Some(mac), Some(lease)) = (v.get("put").and_then(Value::as_str), v.get("lease"))
            {
                j["leases"][mac] = lease.clone();
            } else if let Some(mac) = v.get("del").and_then(Value::as_str) {
                if let Some(m) = j["leases"].as_object_mut() {
                    m.remove(mac);
                }
            } else if let Some(q) = v.get("quarantine") {
                j["quarantine"] = q.clone();
            }
        }
    } else if !path.exists() {
        bail!("neither {} nor {jpath} exists", path.display());
    }
    Ok(j)
}

/// Lease file and journal as text (for failure messages).
pub fn lease_files_text(path: &Path) -> String {
    format!(
        "{}:\n{}\n{}.journal:\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{e}>")),
        path.display(),
        std::fs::read_to_string(format!("{}.journal", path.display()))
            .unwrap_or_else(|e| format!("<{e}>"))
    )
}

/// The `quarantine` map on disk (lease file + journal).
pub fn quarantine(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    lease_json(path)
        .ok()
        .and_then(|j| j.get("quarantine").and_then(|q| q.as_object().cloned()))
        .unwrap_or_default()
}

/// The `leases` entry of `mac` (keys compared case-insensitively).
pub fn lease_entry(path: &Path, mac: Mac) -> Option<serde_json::Value> {
    let j = lease_json(path).ok()?;
    let key = mac.to_string();
    j.get("leases")?
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(&key))
        .map(|(_, v)| v.clone())
}

/// Wait until the lease file has an entry for `mac` with `ip`.
pub fn wait_lease_entry(
    path: &Path,
    mac: Mac,
    ip: Ipv4Addr,
    timeout: Duration,
) -> Result<serde_json::Value> {
    let want = ip.to_string();
    wait_until(&format!("lease file entry {mac} = {ip}"), timeout, || {
        Ok(lease_entry(path, mac).filter(|e| e["ip"].as_str() == Some(want.as_str())))
    })
    .with_context(|| format!("on disk now:\n{}", lease_files_text(path)))
}
