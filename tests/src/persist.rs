//! Shared set-up of the persistence suites (`durability`, `lease_file`):
//! the lab, a daemon configuration with room for many leases, and readers
//! for what the daemon left on disk.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use isodhcp::wire::Mac;

use crate::{DaemonConfig, Lab, XdpMode, preflight};

pub fn lab(tag: &str, clients: usize) -> Lab {
    preflight().expect("preflight");
    Lab::new(tag, clients).expect("building the lab")
}

/// A /18 pool (room for every lease of every round), generous rate limits
/// (the stream is one client namespace sending for many MACs).
pub fn config(lab: &Lab) -> DaemonConfig {
    let mut c = DaemonConfig::for_lab(lab).expect("daemon configuration");
    c.xdp = XdpMode::Off;
    c.pool = Some("198.18.0.0/18".into());
    c.lease_secs = Some(3600);
    c.extra.extend(
        [
            "--new-client-rate",
            "10000",
            "--global-rate-limit",
            "100000",
            "--rate-limit",
            "100",
            "--rate-burst",
            "100",
        ]
        .map(String::from),
    );
    c
}

/// The last `last` daemon logs of the lab, for assertion messages.
pub fn daemon_logs(lab: &Lab, last: usize) -> String {
    let mut logs: Vec<_> = (0..1000)
        .map(|n| lab.dir().join(format!("isodhcp-{n}.log")))
        .take_while(|p| p.exists())
        .collect();
    let skip = logs.len().saturating_sub(last);
    logs.drain(..skip);
    let mut s = String::new();
    for p in logs {
        s.push_str(&format!(
            "--- {} ---\n{}\n",
            p.display(),
            std::fs::read_to_string(&p).unwrap_or_default()
        ));
    }
    s
}

/// A MAC as a key of the lease file's `leases` object.
pub fn key(m: Mac) -> String {
    m.to_string()
}

/// Permission bits of `p`.
pub fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}
