//! One type per control command's answer, shared by the daemon (builds and
//! serialises it) and the client (deserialises it to render text). The
//! payload is flattened into the [`super::Response`] envelope next to
//! `version` and `status`.
//!
//! Guarantees (the wire format of isodhcp(8) DIAGNOSTICS):
//! - Field names and order are the struct fields' (serde_json keeps order);
//!   an `Option` is always written, as `null` when empty, never left out.
//! - Addresses, prefixes and MACs travel as strings (`--redact` rewrites
//!   MACs inside them); times as Unix seconds with a fraction, `null` for
//!   "never".
//! - Maps whose keys come from the data ([`Named`]) and `--dump` sections
//!   ([`DumpReply`]) keep the order the daemon wrote them in.

mod dump;
mod named;
#[cfg(test)]
mod tests;

use serde::{Deserialize, Serialize};

pub use dump::{
    Blocked, DumpReply, DumpSection, FirewallInfo, PoolInfo, Quarantined, RateLimitInfo, SnatInfo,
    Subnet, XdpInfo,
};
pub use named::Named;

/// `status`: the daemon at a glance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusReply {
    pub pid: u32,
    pub uptime_s: u64,
    pub interface: String,
    pub server_ip: String,
    pub pool: String,
    pub pool_size: u64,
    pub free_addresses: u64,
    pub free_blocks: u64,
    pub clients: ClientCounts,
    /// Addresses in quarantine.
    pub quarantine: u64,
    pub offers: Offers,
    /// Admission mode: "off" (userspace), "native" or "generic".
    pub datapath: String,
    /// Admission counters by name.
    pub admission: Named<u64>,
    pub messages: Messages,
    /// `null` without `--hook-file`.
    pub hooks: Option<HookCounts>,
}

/// Leases by mode; statics are counted apart from their mode.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClientCounts {
    pub standard: u64,
    pub compat: u64,
    pub playground: u64,
    #[serde(rename = "static")]
    pub statics: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offers {
    pub outstanding: u64,
    pub cap: u64,
    /// Slots of the XDP OFFER responder's stripe (0: responder off).
    pub xdp_stripe: u64,
    /// Slots holding an address now.
    pub xdp_stripe_filled: u64,
}

/// DHCP messages answered or seen since start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Messages {
    pub offers: u64,
    pub acks: u64,
    pub naks: u64,
    pub releases: u64,
    pub declines: u64,
    pub informs: u64,
    pub expired: u64,
    pub conflicts: u64,
    pub adoptions: u64,
    /// REQUESTs that took the address an XDP OFFER carried.
    pub stripe_claims: u64,
    pub logs_suppressed: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HookCounts {
    pub runs: u64,
    pub failures: u64,
    pub timeouts: u64,
    pub dropped: u64,
    pub coalesced: u64,
    pub running: u64,
    pub pending: u64,
}

/// `config` (and `--dump=config`): the configuration in effect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigReply {
    pub interface: String,
    pub server_ip: String,
    pub pool: String,
    pub dns: Vec<String>,
    pub lease_time: u32,
    pub lease_file: String,
    pub isolation: String,
    pub xdp: String,
    pub datapath: String,
    pub rate_limit: u32,
    pub rate_burst: u32,
    pub global_rate_limit: u32,
    pub new_client_rate: u32,
    /// Number of `--static` reservations.
    pub statics: u64,
    pub playground: Option<String>,
    pub nft_table: String,
    pub nft_sets: Vec<String>,
    pub hook_file: Option<String>,
    pub socket: String,
}

/// One lease, as `--dump=leases` lists and `--show` shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseInfo {
    pub mac: String,
    pub ip: String,
    pub mode: String,
    pub masq: bool,
    #[serde(rename = "static")]
    pub is_static: bool,
    /// Unix seconds; `null`: never (statics).
    pub expires: Option<f64>,
    pub grace_until: Option<f64>,
    pub hostname: Option<String>,
    pub vendor: Option<String>,
    pub circuit_id: Option<String>,
    pub remote_id: Option<String>,
}

/// `show`: one client and each resource its binding needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShowReply {
    pub client: LeaseInfo,
    pub checklist: Vec<CheckItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckItem {
    pub what: String,
    /// `null`: could not be looked at (or nothing is expected).
    pub ok: Option<bool>,
}

/// How bad a `verify` finding is; the worst one sets the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Moderate,
    Alarming,
    Unknown,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Moderate => "moderate",
            Severity::Alarming => "alarming",
            Severity::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub severity: Severity,
    pub what: String,
}

/// `verify`: findings and a Nagios exit code (0 ok, 1 moderate, 2
/// alarming, 3 unknown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyReply {
    /// "ok", "moderate", "alarming" or "unknown".
    pub result: String,
    pub exit_code: u8,
    pub findings: Vec<Finding>,
}

impl VerifyReply {
    /// The answer for `findings`: the worst severity above low decides.
    pub fn new(findings: Vec<Finding>) -> VerifyReply {
        let worst = findings
            .iter()
            .map(|f| f.severity)
            .filter(|s| *s > Severity::Low)
            .max();
        VerifyReply {
            result: worst.map_or("ok", Severity::as_str).to_string(),
            exit_code: worst.map_or(0, |s| s as u8),
            findings,
        }
    }
}

/// `block`: the MAC blocked, and for how long (`null`: for ever).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BlockReply {
    pub blocked: String,
    pub seconds: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnblockReply {
    pub unblocked: String,
}
