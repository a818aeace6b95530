//! Engine configuration: what the command line decided, in engine terms.

use std::net::Ipv4Addr;

use super::Millis;
use super::classify::Classifier;
use crate::wire::Mac;
use crate::wire::cidr::Cidr;

/// One static reservation (design.md §Statics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StaticEntry {
    /// The client's MAC (its `chaddr`).
    pub mac: Mac,
    /// The reserved address, never returned to the free pool; for `compat`,
    /// `b+2` of an aligned /30 whose four addresses are all reserved.
    pub ip: Ipv4Addr,
    /// Host name from the entry; option 12 from the client never replaces it.
    pub hostname: Option<String>,
    /// The `compat` flag: a /30 with gateway `b+1` (design.md §Compat mode).
    pub compat: bool,
    /// The `masquerade` flag (design.md §Masquerade).
    pub masquerade: bool,
    /// The `playground` flag: a host of the playground block
    /// (design.md §Playground mode).
    pub playground: bool,
}

/// A custom option from `--dhcp-option`, already encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomOption {
    /// Option code; never one the server sets itself (0, 1, 3, 51, 53, 54, 58,
    /// 59, 121, 249, 255), the command line refuses those.
    pub code: u8,
    /// The value as sent, encoded from the option's type; at most 255 bytes.
    pub value: Vec<u8>,
}

/// Static configuration of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The server's address on the interface: option 54, source of replies,
    /// and router of isolated clients (design.md §Isolated mode).
    pub server_ip: Ipv4Addr,
    /// MAC address of the serving interface.
    pub server_mac: Mac,
    /// The pool prefix; its network and broadcast addresses and the server IP
    /// are never handed out.
    pub pool: Cidr,
    /// DNS servers sent in option 6, in this order; when empty, no option 6.
    pub dns: Vec<Ipv4Addr>,
    /// Lease time in seconds (option 51; T1 is half of it, T2 seven eighths);
    /// default 3600, the command line refuses less than 60.
    pub lease_time: u32,
    /// How long an offered address stays held for the client, ms (default
    /// 60 s, the offer hold of design.md §Protocol).
    pub offer_hold_ms: Millis,
    /// Outstanding offers at most; at the cap a new DISCOVER drops the oldest
    /// offer (default 1024).
    pub max_offers: usize,
    /// Options from `--dhcp-option`, set on every OFFER, ACK and INFORM-ACK
    /// after the mode's own options.
    pub custom_options: Vec<CustomOption>,
    /// Static reservations (design.md §Statics), checked by the command line.
    pub statics: Vec<StaticEntry>,
    /// Rules that pick the mode of dynamic clients (design.md §Classification).
    pub classifier: Classifier,
    /// `--playground-size`: the playground block holds the next power of two
    /// at or above this many addresses; `None` for no playground.
    pub playground_size: Option<u32>,
    /// Slots of the XDP OFFER responder's stripe (`--xdp-offer-stripe`,
    /// capped at a quarter of the pool); 0: no stripe.
    pub offer_stripe: u32,
    /// Key of the stripe's MAC hash, random per start.
    pub stripe_key: u64,
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
            offer_stripe: 0,
            stripe_key: 0,
        }
    }
}

// Quarantine lengths and conflict probing (design.md §Quarantine).

/// Quarantine of an address the conflict probe found in use, ms (300 s).
pub const QUARANTINE_CONFLICT_MS: Millis = 300_000;
/// Quarantine of an address its owner DECLINEd, ms (600 s).
pub const QUARANTINE_DECLINE_MS: Millis = 600_000;
/// Free addresses probed in the neighbour table before a new isolated
/// address is offered.
pub const CONFLICT_CANDIDATES: usize = 5;

/// INIT-REBOOT adoptions (a client the engine has no record of keeps the
/// address it asks for): at most this many at once, then the budget refills
/// at [`ADOPT_RATE`].
pub const ADOPT_BURST: u32 = 32;
/// Adoptions per second once [`ADOPT_BURST`] is used up.
pub const ADOPT_RATE: u32 = 4;
/// Length of an adopted client's first lease, seconds (capped by the lease
/// time); its first renewal gets the full lease time.
pub const ADOPTED_LEASE_S: u32 = 120;

/// Quarantine entries from DECLINEs of offers (no ACK yet) at most: such a
/// DECLINE comes from a client that holds nothing.
pub const DECLINED_OFFER_CAP: usize = 4;
/// Quarantine reason (lease file `reason`) of an address whose offer was
/// DECLINEd; counted against [`DECLINED_OFFER_CAP`].
pub const REASON_DECLINED_OFFER: &str = "declined offer";
