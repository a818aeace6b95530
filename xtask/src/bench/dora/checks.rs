//! Where `cargo xtask bench dora` checks the leases really exist: the
//! control socket, the kernel (routes, nft set, neighbours) and lease files.

use super::*;

/// `isodhcp --socket SOCK --dump=leases --json`: number of leases.
pub(super) fn ctl_lease_count(bin: &Path, sock: &Path) -> Result<u64> {
    let v = ctl_json(bin, sock, &["--dump=leases"])?;
    find_array(&v, "leases", 0)
        .map(|a| a.len() as u64)
        .with_context(|| {
            format!(
                "no leases array in the dump: {}",
                truncate(&v.to_string(), 300)
            )
        })
}

/// The datapath isodhcp reports in `--status` (`xdp ...` / `af_packet`).
pub(super) fn ctl_datapath(bin: &Path, sock: &Path) -> Option<String> {
    let v = ctl_json(bin, sock, &["--status"]).ok()?;
    find_key(&v, "datapath", 0).map(|d| match d {
        Value::String(s) => s.clone(),
        o => o.to_string(),
    })
}

pub(super) fn ctl_json(bin: &Path, sock: &Path, args: &[&str]) -> Result<Value> {
    let mut cmd = std::process::Command::new(bin);
    cmd.arg("--socket").arg(sock).args(args).arg("--json");
    let out = isodhcp_tests::util::run_ok(&mut cmd, Duration::from_secs(20))?;
    serde_json::from_str(out.trim())
        .with_context(|| format!("control JSON: {}", truncate(&out, 300)))
}

pub(super) fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

/// First value under `key` (breadth: this level, then nested objects).
pub(super) fn find_key<'a>(v: &'a Value, key: &str, depth: usize) -> Option<&'a Value> {
    let o = v.as_object()?;
    if let Some(x) = o.get(key) {
        return Some(x);
    }
    if depth >= 4 {
        return None;
    }
    o.values().find_map(|x| find_key(x, key, depth + 1))
}

pub(super) fn find_array<'a>(v: &'a Value, key: &str, depth: usize) -> Option<&'a Vec<Value>> {
    find_key(v, key, depth)?.as_array()
}

/// isodhcp's routes in the server namespace.
pub(super) fn route_count(lab: &Lab) -> Result<u64> {
    let out = lab.server.ip(&["route", "show", "proto", "108"])?;
    Ok(out.lines().filter(|l| !l.trim().is_empty()).count() as u64)
}

/// Elements of the nft set.
pub(super) fn set_count(lab: &Lab) -> Result<u64> {
    let p: Vec<&str> = NFT_SET.split_whitespace().collect();
    let out = lab
        .server
        .run_ok("nft", &["-j", "list", "set", p[0], p[1], p[2]])?;
    let v: Value = serde_json::from_str(&out).context("nft JSON")?;
    Ok(v["nftables"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i.pointer("/set/elem").and_then(Value::as_array))
        .map(|a| a.len() as u64)
        .sum())
}

/// Neighbour entries (any state) in the server namespace.
pub(super) fn neigh_count(lab: &Lab) -> u64 {
    lab.server
        .ip(&["neigh", "show"])
        .map(|o| o.lines().filter(|l| !l.trim().is_empty()).count() as u64)
        .unwrap_or(0)
}

/// Host-wide ARP table (`entries`, `table_fulls`); the ARP table and its
/// gc thresholds are shared by all namespaces.
pub(super) fn arp_table(lab: &Lab) -> Option<(u64, u64)> {
    let v = lab
        .server
        .ip_json(&["-s", "ntable", "show", "name", "arp_cache"])
        .ok()?;
    let t = v.as_array()?.iter().find(|t| t.get("entries").is_some())?;
    Some((
        t["entries"].as_u64()?,
        t["table_fulls"].as_u64().unwrap_or(0),
    ))
}

pub(super) fn is_ours(mac: &str) -> bool {
    mac.to_ascii_lowercase()
        .starts_with(&format!("{MAC_PREFIX}:"))
}

/// Leases of the generator's MACs in isodhcp's JSON lease file.
pub(super) fn isodhcp_file_leases(file: &Path) -> Result<u64> {
    let v: Value = serde_json::from_str(
        &std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?,
    )
    .with_context(|| format!("parsing {}", file.display()))?;
    Ok(v["leases"]
        .as_object()
        .map_or(0, |m| m.keys().filter(|k| is_ours(k)).count() as u64))
}

/// Distinct hwaddrs of the generator's MACs in Kea's memfile CSV.
pub(super) fn kea_file_leases(file: &Path) -> Result<u64> {
    let s = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let set: std::collections::BTreeSet<String> = s
        .lines()
        .skip(1)
        .filter_map(|l| l.split(',').nth(1))
        .filter(|h| is_ours(h))
        .map(str::to_ascii_lowercase)
        .collect();
    Ok(set.len() as u64)
}

/// Leases of the generator's MACs in dnsmasq's lease file
/// (`expiry mac ip hostname client-id` per line).
pub(super) fn dnsmasq_file_leases(file: &Path) -> Result<u64> {
    let s = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(s.lines()
        .filter(|l| l.split_whitespace().nth(1).is_some_and(is_ours))
        .count() as u64)
}
