//! What should exist in nftables, as plain data: the private table (chains
//! and rules), the elements of the operator's named sets, the SNAT rules,
//! and the incremental changes between two states.
//!
//! Guarantees:
//! - Pure: nothing here talks to the kernel or formats nft syntax; `render`
//!   turns these values into an nftables JSON document.
//! - One binding maps to set elements in [`elements`] and to a SNAT rule in
//!   [`snat_of`]; start-up, reconcile and the per-lease path all use them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use crate::config::Isolation;
use crate::engine::{Binding, Mode};
use crate::wire::Mac;
use crate::wire::cidr::Cidr;

/// A named set as `--nft-set-*` gives it: "family table name".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetRef {
    pub family: String,
    pub table: String,
    pub name: String,
}

/// The families a named set may live in.
pub const SET_FAMILIES: [&str; 4] = ["ip", "inet", "bridge", "netdev"];

impl SetRef {
    pub fn parse(s: &str) -> Option<SetRef> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        match parts[..] {
            [f, t, n] if SET_FAMILIES.contains(&f) && ok(t) && ok(n) => Some(SetRef {
                family: f.into(),
                table: t.into(),
                name: n.into(),
            }),
            _ => None,
        }
    }
}

impl fmt::Display for SetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.family, self.table, self.name)
    }
}

/// Which named set receives what (design.md §Firewall).
#[derive(Debug, Clone, Default)]
pub struct NamedSets {
    pub isolated: Option<SetRef>,
    pub compat: Option<SetRef>,
    pub playground: Option<SetRef>,
    pub gateway: Option<SetRef>,
    pub network: Option<SetRef>,
    pub broadcast: Option<SetRef>,
    pub subnet: Option<SetRef>,
    pub playground_subnet: Option<SetRef>,
}

impl NamedSets {
    pub fn all(&self) -> impl Iterator<Item = &SetRef> {
        [
            &self.isolated,
            &self.compat,
            &self.playground,
            &self.gateway,
            &self.network,
            &self.broadcast,
            &self.subnet,
            &self.playground_subnet,
        ]
        .into_iter()
        .flatten()
    }
}

/// A set element: an address or (interval sets) a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Element {
    Addr(Ipv4Addr),
    Prefix(Ipv4Addr, u8),
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Element::Addr(a) => write!(f, "{a}"),
            Element::Prefix(a, p) => write!(f, "{a}/{p}"),
        }
    }
}

/// One SNAT rule: traffic to `client` from outside the pool gets `gateway` as source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Snat {
    pub client: Ipv4Addr,
    pub gateway: Ipv4Addr,
    pub mac: Mac,
}

/// Static facts of the firewall side of one instance.
#[derive(Debug, Clone)]
pub struct NftConfig {
    /// `isodhcp_<sanitised iface>`.
    pub table: String,
    pub iface: String,
    pub pool: Cidr,
    pub isolation: Isolation,
    pub playground: Option<Cidr>,
    pub sets: NamedSets,
}

/// Firewall state isodhcp manages, wanted or found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NftState {
    pub elements: BTreeMap<SetRef, BTreeSet<Element>>,
    pub snat: BTreeSet<Snat>,
}

fn cidr_el(c: Cidr) -> Element {
    Element::Prefix(c.network(), c.prefix)
}

/// The set elements a binding puts in the named sets.
pub fn elements(sets: &NamedSets, b: &Binding) -> Vec<(SetRef, Element)> {
    let mut out = Vec::new();
    let mut put = |s: &Option<SetRef>, e: Element| {
        if let Some(s) = s {
            out.push((s.clone(), e));
        }
    };
    match b.mode {
        Mode::Isolated => put(&sets.isolated, Element::Addr(b.ip)),
        Mode::Playground => put(&sets.playground, Element::Addr(b.ip)),
        Mode::Compat => {
            put(&sets.compat, Element::Addr(b.ip));
            if let Some(sub) = b.subnet {
                put(&sets.gateway, Element::Addr(b.gateway));
                put(&sets.network, Element::Addr(sub.network()));
                put(&sets.broadcast, Element::Addr(sub.broadcast()));
                put(&sets.subnet, cidr_el(sub));
            }
        }
    }
    out
}

/// The SNAT rule a binding needs, if it is masqueraded.
pub fn snat_of(b: &Binding) -> Option<Snat> {
    b.masq.then_some(Snat {
        client: b.ip,
        gateway: b.gateway,
        mac: b.mac,
    })
}

/// A verdict of one of the private table's forward rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    Drop,
}

/// The base chains of the private table; each implies its type, hook and
/// priority (filter/forward/filter, filter/output/filter, nat/postrouting/srcnat).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainKind {
    Forward,
    Output,
    Postrouting,
}

impl ChainKind {
    pub fn name(self) -> &'static str {
        match self {
            ChainKind::Forward => "forward",
            ChainKind::Output => "output",
            ChainKind::Postrouting => "postrouting",
        }
    }
}

/// A rule of the private table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleModel {
    /// Traffic entering and leaving `iface` with source and destination in
    /// `net` gets `verdict`; the comment names the feature.
    Between {
        iface: String,
        net: Cidr,
        verdict: Verdict,
        comment: &'static str,
    },
    /// No ICMP redirect leaves through `iface`.
    NoRedirects { iface: String },
    /// Traffic to the client from outside the pool leaves with the
    /// gateway as source; commented "isodhcp <mac>" so it can be found again.
    Snat {
        iface: String,
        pool: Cidr,
        snat: Snat,
    },
}

/// One base chain with its rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainModel {
    pub kind: ChainKind,
    pub rules: Vec<RuleModel>,
}

/// The whole private table `ip <name>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableModel {
    pub name: String,
    pub chains: Vec<ChainModel>,
}

/// One incremental change to nftables state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    AddElement(SetRef, Element),
    DeleteElement(SetRef, Element),
    AddSnat(Snat),
    /// A rule of our postrouting chain, by handle.
    DeleteRule(u64),
}

impl Change {
    /// Deletions may find their target already gone, which is fine.
    pub fn is_delete(&self) -> bool {
        matches!(self, Change::DeleteElement(..) | Change::DeleteRule(_))
    }
}

impl NftConfig {
    /// What the bindings need.
    pub fn desired<'a>(&self, bindings: impl IntoIterator<Item = &'a Binding>) -> NftState {
        let mut s = NftState::default();
        for b in bindings {
            for (set, e) in elements(&self.sets, b) {
                s.elements.entry(set).or_default().insert(e);
            }
            s.snat.extend(snat_of(b));
        }
        if let (Some(set), Some(pg)) = (&self.sets.playground_subnet, self.playground) {
            s.elements
                .entry(set.clone())
                .or_default()
                .insert(cidr_el(pg));
        }
        s
    }

    /// The private table with the given SNAT rules: the forward chain
    /// (playground accept, `--isolation` verdict), the output chain (no
    /// redirects) when isolation is managed, the postrouting chain (SNAT).
    pub fn table(&self, snat: &BTreeSet<Snat>) -> TableModel {
        let iface = &self.iface;
        let mut forward = Vec::new();
        if let Some(pg) = self.playground {
            forward.push(RuleModel::Between {
                iface: iface.clone(),
                net: pg,
                verdict: Verdict::Accept,
                comment: "isodhcp playground",
            });
        }
        let verdict = match self.isolation {
            Isolation::On => Some(Verdict::Drop),
            Isolation::Off => Some(Verdict::Accept),
            Isolation::System => None,
        };
        let mut chains = Vec::new();
        if let Some(verdict) = verdict {
            forward.push(RuleModel::Between {
                iface: iface.clone(),
                net: self.pool,
                verdict,
                comment: "isodhcp isolation",
            });
        }
        chains.push(ChainModel {
            kind: ChainKind::Forward,
            rules: forward,
        });
        if verdict.is_some() {
            // The kernel sends a redirect when the interface's OR the "all"
            // send_redirects is 1; the daemon only owns the interface's. A
            // redirect would teach clients a direct path to each other
            // (before the forward rule even runs), so none leaves here.
            chains.push(ChainModel {
                kind: ChainKind::Output,
                rules: vec![RuleModel::NoRedirects {
                    iface: iface.clone(),
                }],
            });
        }
        chains.push(ChainModel {
            kind: ChainKind::Postrouting,
            rules: snat.iter().map(|s| self.snat_rule(*s)).collect(),
        });
        TableModel {
            name: self.table.clone(),
            chains,
        }
    }

    /// The postrouting rule for one SNAT.
    pub fn snat_rule(&self, snat: Snat) -> RuleModel {
        RuleModel::Snat {
            iface: self.iface.clone(),
            pool: self.pool,
            snat,
        }
    }

    /// The changes that bring `up` in and take `down` out: elements
    /// (configured sets only, those in `skip` left out) and SNAT rules to
    /// add; `down_rules` are the handles of SNAT rules to delete.
    pub fn changes(
        &self,
        up: &[Binding],
        down: &[Binding],
        down_rules: &[u64],
        skip: &BTreeSet<SetRef>,
    ) -> Vec<Change> {
        let keep = |(s, _): &(SetRef, Element)| !skip.contains(s);
        let mut out: Vec<Change> = down
            .iter()
            .flat_map(|b| elements(&self.sets, b))
            .filter(keep)
            .map(|(s, e)| Change::DeleteElement(s, e))
            .collect();
        out.extend(down_rules.iter().map(|h| Change::DeleteRule(*h)));
        out.extend(
            up.iter()
                .flat_map(|b| elements(&self.sets, b))
                .filter(keep)
                .map(|(s, e)| Change::AddElement(s, e)),
        );
        out.extend(up.iter().filter_map(snat_of).map(Change::AddSnat));
        out
    }
}
