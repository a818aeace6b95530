//! Engine configuration: what the command line decided, in engine terms.

use std::net::Ipv4Addr;

use super::Millis;
use super::classify::Classifier;
use crate::wire::Mac;
use crate::wire::cidr::Cidr;

/// One static reservation (design.md §Statics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticEntry {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    pub hostname: Option<String>,
    pub compat: bool,
    pub masquerade: bool,
    pub playground: bool,
}

/// A custom option from `--dhcp-option`, already encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomOption {
    pub code: u8,
    pub value: Vec<u8>,
}

/// Static configuration of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub server_ip: Ipv4Addr,
    pub server_mac: Mac,
    pub pool: Cidr,
    pub dns: Vec<Ipv4Addr>,
    pub lease_time: u32,
    pub offer_hold_ms: Millis,
    pub max_offers: usize,
    pub custom_options: Vec<CustomOption>,
    pub statics: Vec<StaticEntry>,
    pub classifier: Classifier,
    pub playground_size: Option<u32>,
}

impl EngineConfig {
    /// A configuration with defaults for everything but the addresses.
    pub fn new(server_ip: Ipv4Addr, server_mac: Mac, pool: Cidr) -> EngineConfig {
        EngineConfig {
            server_ip,
            server_mac,
            pool,
            dns: Vec::new(),
            lease_time: 3600,
            offer_hold_ms: 60_000,
            max_offers: 1024,
            custom_options: Vec::new(),
            statics: Vec::new(),
            classifier: Classifier::default(),
            playground_size: None,
        }
    }
}

/// Quarantine lengths and conflict probing (design.md §Quarantine).
pub const QUARANTINE_CONFLICT_MS: Millis = 300_000;
pub const QUARANTINE_DECLINE_MS: Millis = 600_000;
pub const CONFLICT_CANDIDATES: usize = 5;

/// INIT-REBOOT adoptions (a client the engine has no record of keeps the
/// address it asks for): at most this many at once, then this many a second.
pub const ADOPT_BURST: u32 = 32;
pub const ADOPT_RATE: u32 = 4;
/// Length of an adopted client's first lease (capped by the lease time);
/// its first renewal gets the full lease time.
pub const ADOPTED_LEASE_S: u32 = 120;

/// Quarantine entries from DECLINEs of offers (no ACK yet) at most: such a
/// DECLINE comes from a client that holds nothing.
pub const DECLINED_OFFER_CAP: usize = 4;
pub const REASON_DECLINED_OFFER: &str = "declined offer";
