//! `dump`: the sections asked for, each under its name, in the order asked.

use serde::de::Error as _;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{ConfigReply, LeaseInfo, Named};

/// One section of a dump, named as `--dump` names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DumpSection {
    /// By address.
    Leases(Vec<LeaseInfo>),
    /// Compat clients' /30 subnets.
    Subnets(Vec<Subnet>),
    Quarantine(Vec<Quarantined>),
    Ratelimit(RateLimitInfo),
    Pool(PoolInfo),
    Config(Box<ConfigReply>),
    Firewall(FirewallInfo),
    Xdp(XdpInfo),
}

impl DumpSection {
    pub fn name(&self) -> &'static str {
        match self {
            DumpSection::Leases(_) => "leases",
            DumpSection::Subnets(_) => "subnets",
            DumpSection::Quarantine(_) => "quarantine",
            DumpSection::Ratelimit(_) => "ratelimit",
            DumpSection::Pool(_) => "pool",
            DumpSection::Config(_) => "config",
            DumpSection::Firewall(_) => "firewall",
            DumpSection::Xdp(_) => "xdp",
        }
    }
}

/// The sections of one dump, each named once (a section asked for twice
/// keeps its first place).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DumpReply(pub Vec<DumpSection>);

impl DumpReply {
    /// Adds `s`, or replaces the section of that name where it stands.
    pub fn push(&mut self, s: DumpSection) {
        match self.0.iter_mut().find(|x| x.name() == s.name()) {
            Some(old) => *old = s,
            None => self.0.push(s),
        }
    }
}

impl Serialize for DumpReply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for section in &self.0 {
            let name = section.name();
            match section {
                DumpSection::Leases(v) => m.serialize_entry(name, v)?,
                DumpSection::Subnets(v) => m.serialize_entry(name, v)?,
                DumpSection::Quarantine(v) => m.serialize_entry(name, v)?,
                DumpSection::Ratelimit(v) => m.serialize_entry(name, v)?,
                DumpSection::Pool(v) => m.serialize_entry(name, v)?,
                DumpSection::Config(v) => m.serialize_entry(name, v)?,
                DumpSection::Firewall(v) => m.serialize_entry(name, v)?,
                DumpSection::Xdp(v) => m.serialize_entry(name, v)?,
            }
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for DumpReply {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let sections = Map::<String, Value>::deserialize(d)?;
        sections
            .into_iter()
            .map(|(name, body)| {
                // A section alone is the enum's own (externally tagged) form.
                let one: Map<String, Value> = [(name, body)].into_iter().collect();
                DumpSection::deserialize(Value::Object(one)).map_err(D::Error::custom)
            })
            .collect::<Result<_, _>>()
            .map(DumpReply)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subnet {
    pub mac: String,
    pub gateway: String,
    pub subnet: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Quarantined {
    pub ip: String,
    /// Unix seconds; `null`: never lifted.
    pub until: Option<f64>,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RateLimitInfo {
    pub rate_limit: u32,
    pub rate_burst: u32,
    pub global_rate_limit: u32,
    pub new_client_rate: u32,
    pub counters: Named<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PoolInfo {
    pub cidr: String,
    pub free: u64,
    pub free_blocks: u64,
    /// "a-b", or "a" for a single address.
    pub free_ranges: Vec<String>,
    pub playground: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirewallInfo {
    pub table: String,
    pub isolation: String,
    pub snat: Vec<SnatInfo>,
    /// Elements isodhcp wants in each named set.
    pub sets: Named<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnatInfo {
    pub mac: String,
    pub client: String,
    pub gateway: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct XdpInfo {
    pub mode: String,
    pub pin_dir: Option<String>,
    /// Slots of the XDP OFFER responder's stripe (0: responder off).
    pub offer_stripe: u64,
    /// Slots holding an address now.
    pub offer_stripe_filled: u64,
    pub counters: Named<u64>,
    pub blocked: Vec<Blocked>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Blocked {
    pub mac: String,
    /// `null`: blocked for ever.
    pub remaining_s: Option<u64>,
}
