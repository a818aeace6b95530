//! nftables executor (SPEC §6.3): the private table `ip isodhcp_<iface>`
//! (forward chain for `--isolation`, playground accept rule, one SNAT rule
//! per masqueraded client) and the operator's named sets.
//!
//! Guarantees:
//! - Every batch of changes is one `nft -f -` transaction: a firewall rule
//!   never sees a half-applied batch, and sets are never flushed and
//!   refilled. If a batch fails as a whole (an element to delete was already
//!   gone), its commands are retried one by one and "already gone" counts as
//!   success, so the rest of the batch still lands.
//! - The private table is (re)built in one transaction at start, so its
//!   rules are never missing while it is replaced.
//! - Named sets are never created by isodhcp. A configured set that does not
//!   exist, or a missing `nft` binary, gives one clear warning; everything
//!   else keeps working, and the next reconcile looks again.
//! - Elements isodhcp did not add are never removed (sets may be co-managed).
//! - One nft run takes at most [`exec::NFT_TIMEOUT`]; one that hangs is
//!   killed, and a batch that timed out is not retried command by command.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use tracing::{debug, warn};

use crate::config::Isolation;
use crate::engine::cidr::Cidr;
use crate::engine::{Binding, Mode};
use crate::wire::Mac;
use exec::run_nft;
use netlink::ElementOp;
pub use parse::{parse_elements, parse_snat};

mod exec;
mod netlink;
mod parse;

#[derive(Debug, thiserror::Error)]
pub enum NftError {
    #[error("nft is not available: {0}")]
    Missing(std::io::Error),
    #[error("nft failed: {0}")]
    Failed(String),
    #[error("nft printed JSON we cannot read: {0}")]
    Json(String),
    #[error("nft did not finish within {0:?} and was killed")]
    Timeout(std::time::Duration),
}

/// A named set as `--nft-set-*` gives it: "family table name".
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SetRef {
    pub family: String,
    pub table: String,
    pub name: String,
}

impl SetRef {
    pub fn parse(s: &str) -> Option<SetRef> {
        let parts: Vec<&str> = s.split_whitespace().collect();
        let ok = |p: &str| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
        };
        match parts[..] {
            [f, t, n] if ["ip", "inet", "bridge", "netdev"].contains(&f) && ok(t) && ok(n) => {
                Some(SetRef {
                    family: f.into(),
                    table: t.into(),
                    name: n.into(),
                })
            }
            _ => None,
        }
    }
}

impl fmt::Display for SetRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} {}", self.family, self.table, self.name)
    }
}

/// Which named set receives what (SPEC §6.3).
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

impl NftConfig {
    /// What the bindings need.
    pub fn desired<'a>(&self, bindings: impl IntoIterator<Item = &'a Binding>) -> NftState {
        let mut s = NftState::default();
        for b in bindings {
            for (set, e) in elements(&self.sets, b) {
                s.elements.entry(set).or_default().insert(e);
            }
            if b.masq {
                s.snat.insert(Snat {
                    client: b.ip,
                    gateway: b.gateway,
                    mac: b.mac,
                });
            }
        }
        if let (Some(set), Some(pg)) = (&self.sets.playground_subnet, self.playground) {
            s.elements
                .entry(set.clone())
                .or_default()
                .insert(cidr_el(pg));
        }
        s
    }

    fn snat_rule(&self, r: &Snat) -> String {
        format!(
            "oifname \"{}\" ip daddr {} ip saddr != {} snat to {} comment \"isodhcp {}\"",
            self.iface, r.client, self.pool, r.gateway, r.mac
        )
    }

    /// The whole private table, replacing any previous one in the same
    /// transaction (create-if-missing, delete, define).
    pub fn table_script(&self, snat: &BTreeSet<Snat>) -> String {
        let t = &self.table;
        let i = &self.iface;
        let mut s = format!(
            "table ip {t} {{}}\ndelete table ip {t}\ntable ip {t} {{\n  chain forward {{\n    type filter hook forward priority filter; policy accept;\n"
        );
        if let Some(pg) = self.playground {
            s += &format!(
                "    iifname \"{i}\" oifname \"{i}\" ip saddr {pg} ip daddr {pg} accept comment \"isodhcp playground\"\n"
            );
        }
        let verdict = match self.isolation {
            Isolation::On => Some("drop"),
            Isolation::Off => Some("accept"),
            Isolation::System => None,
        };
        if let Some(v) = verdict {
            s += &format!(
                "    iifname \"{i}\" oifname \"{i}\" ip saddr {p} ip daddr {p} {v} comment \"isodhcp isolation\"\n",
                p = self.pool
            );
        }
        s += "  }\n";
        if verdict.is_some() {
            // The kernel sends a redirect when the interface's OR the "all"
            // send_redirects is 1; the daemon only owns the interface's. A
            // redirect would teach clients a direct path to each other
            // (before the forward rule even runs), so none leaves here.
            s += &format!(
                "  chain output {{\n    type filter hook output priority filter; policy accept;\n    oifname \"{i}\" icmp type redirect drop comment \"isodhcp isolation\"\n  }}\n"
            );
        }
        s += "  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n";
        for r in snat {
            s += &format!("    {}\n", self.snat_rule(r));
        }
        s += "  }\n}\n";
        s
    }

    /// Element and SNAT additions as nft commands.
    pub fn add_commands(&self, elements: &[(SetRef, Element)], snat: &[Snat]) -> Vec<String> {
        let mut cmds: Vec<String> = elements
            .iter()
            .map(|(s, e)| format!("add element {s} {{ {e} }}"))
            .collect();
        cmds.extend(snat.iter().map(|r| {
            format!(
                "add rule ip {} postrouting {}",
                self.table,
                self.snat_rule(r)
            )
        }));
        cmds
    }
}

/// Runs nft commands. Stateless apart from what it learned about sets.
#[derive(Debug)]
pub struct Nft {
    pub cfg: NftConfig,
    /// Netlink socket for element changes (opened on first use).
    sock: Option<netlink::NftSocket>,
    /// Configured sets found missing (warned once until they appear).
    missing: BTreeSet<SetRef>,
    nft_missing_warned: bool,
}

fn gone(e: &NftError) -> bool {
    matches!(e, NftError::Failed(m) if m.contains("No such file or directory"))
}

impl Nft {
    pub fn new(cfg: NftConfig) -> Nft {
        Nft {
            cfg,
            sock: None,
            missing: BTreeSet::new(),
            nft_missing_warned: false,
        }
    }

    fn note(&mut self, e: &NftError) {
        match e {
            NftError::Missing(_) if !self.nft_missing_warned => {
                warn!("{e}: firewall integration is off until it is installed");
                self.nft_missing_warned = true;
            }
            NftError::Timeout(_) => warn!("{e}; the next reconcile tries again"),
            _ => {}
        }
    }

    /// Checks which configured sets exist; warns once for each missing one.
    pub async fn check_sets(&mut self) {
        let sets: Vec<SetRef> = self.cfg.sets.all().cloned().collect();
        for s in sets {
            match run_nft(&["-j", "list", "set", &s.family, &s.table, &s.name], None).await {
                Ok(_) => {
                    self.missing.remove(&s);
                }
                Err(e) => {
                    self.note(&e);
                    // A hung nft says nothing about the set, and would hang
                    // again for the next one.
                    if matches!(e, NftError::Timeout(_)) {
                        break;
                    }
                    if !matches!(e, NftError::Missing(_)) && self.missing.insert(s.clone()) {
                        warn!(set = %s, "nft set does not exist (isodhcp never creates sets): its elements are skipped until it does");
                    }
                }
            }
        }
    }

    /// (Re)builds the private table with the given SNAT rules.
    pub async fn install_table(&mut self, snat: &BTreeSet<Snat>) -> Result<(), NftError> {
        let script = self.cfg.table_script(snat);
        let r = run_nft(&["-f", "-"], Some(&script)).await;
        if let Err(e) = &r {
            self.note(e);
        }
        r.map(|_| ())
    }

    /// Applies the changes of one batch of effects: additions and removals
    /// of set elements and SNAT rules, in one transaction when possible.
    pub async fn apply(&mut self, up: &[Binding], down: &[Binding]) -> Result<(), NftError> {
        let missing = self.missing.clone();
        let keep = |(s, _): &(SetRef, Element)| !missing.contains(s);
        // Plain addresses go over netlink in one transaction; prefixes
        // (interval sets) and SNAT rules through `nft -f`.
        let mut ops = Vec::new();
        let mut cmds = Vec::new();
        for b in down {
            for (s, e) in elements(&self.cfg.sets, b).into_iter().filter(keep) {
                match e {
                    Element::Addr(addr) => ops.push(ElementOp {
                        add: false,
                        set: s,
                        addr,
                    }),
                    Element::Prefix(..) => cmds.push(format!("delete element {s} {{ {e} }}")),
                }
            }
        }
        let down_snat: Vec<Ipv4Addr> = down.iter().filter(|b| b.masq).map(|b| b.ip).collect();
        if !down_snat.is_empty() {
            let found = self.observe_snat().await?;
            for (r, handle) in found {
                if down_snat.contains(&r.client) {
                    cmds.push(format!(
                        "delete rule ip {} postrouting handle {handle}",
                        self.cfg.table
                    ));
                }
            }
        }
        let mut prefixes = Vec::new();
        for (s, e) in up
            .iter()
            .flat_map(|b| elements(&self.cfg.sets, b))
            .filter(keep)
        {
            match e {
                Element::Addr(addr) => ops.push(ElementOp {
                    add: true,
                    set: s,
                    addr,
                }),
                Element::Prefix(..) => prefixes.push((s, e)),
            }
        }
        let snat: Vec<Snat> = up
            .iter()
            .filter(|b| b.masq)
            .map(|b| Snat {
                client: b.ip,
                gateway: b.gateway,
                mac: b.mac,
            })
            .collect();
        cmds.extend(self.cfg.add_commands(&prefixes, &snat));
        let slow = self.apply_elements(ops);
        cmds.extend(slow);
        self.run_batch(&cmds).await
    }

    /// Applies element changes over netlink; returns those that must go
    /// through `nft -f` instead (no netlink socket, or it failed).
    fn apply_elements(&mut self, ops: Vec<ElementOp>) -> Vec<String> {
        let as_cmd = |op: &ElementOp| {
            format!(
                "{} element {} {{ {} }}",
                if op.add { "add" } else { "delete" },
                op.set,
                op.addr
            )
        };
        if ops.is_empty() {
            return Vec::new();
        }
        if self.sock.is_none() {
            self.sock = netlink::NftSocket::open().ok();
        }
        let Some(sock) = self.sock.as_mut() else {
            return ops.iter().map(as_cmd).collect();
        };
        match sock.apply(&ops) {
            Ok(Ok(())) => Vec::new(),
            Ok(Err(errno)) => {
                // Refused as a whole (typically: an element to delete was
                // already gone). Apply one by one; "already gone" is fine.
                debug!(
                    errno,
                    "nf_tables refused the element batch; applying one by one"
                );
                let mut slow = Vec::new();
                for op in ops {
                    match sock.apply(std::slice::from_ref(&op)) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) if !op.add && e == libc::ENOENT => {}
                        Ok(Err(e)) => {
                            warn!(set = %op.set, addr = %op.addr, error = %std::io::Error::from_raw_os_error(e), "nft element change refused")
                        }
                        Err(_) => slow.push(as_cmd(&op)),
                    }
                }
                slow
            }
            Err(e) => {
                debug!(error = %e, "nf_tables netlink failed; using nft");
                self.sock = None;
                ops.iter().map(as_cmd).collect()
            }
        }
    }

    /// One transaction; on failure, each command alone ("already gone" is fine).
    pub async fn run_batch(&mut self, cmds: &[String]) -> Result<(), NftError> {
        if cmds.is_empty() {
            return Ok(());
        }
        let script = cmds.join("\n") + "\n";
        match run_nft(&["-f", "-"], Some(&script)).await {
            Ok(_) => Ok(()),
            Err(e) if cmds.len() == 1 => {
                self.note(&e);
                if gone(&e) && cmds[0].starts_with("delete") {
                    Ok(())
                } else {
                    Err(e)
                }
            }
            Err(e) => {
                self.note(&e);
                // Retrying one by one helps with "already gone", not with
                // an nft that is missing or hangs.
                if matches!(e, NftError::Missing(_) | NftError::Timeout(_)) {
                    return Err(e);
                }
                debug!(error = %e, "nft batch failed; applying its commands one by one");
                let mut first = None;
                for c in cmds {
                    match run_nft(&["-f", "-"], Some(&format!("{c}\n"))).await {
                        Err(e @ NftError::Timeout(_)) => {
                            self.note(&e);
                            return Err(e);
                        }
                        Err(e) if !(gone(&e) && c.starts_with("delete")) => {
                            first.get_or_insert(e);
                        }
                        _ => {}
                    }
                }
                first.map_or(Ok(()), Err)
            }
        }
    }

    /// SNAT rules in our postrouting chain, with their handles.
    pub async fn observe_snat(&mut self) -> Result<Vec<(Snat, u64)>, NftError> {
        let out = match run_nft(
            &[
                "-j",
                "-a",
                "list",
                "chain",
                "ip",
                &self.cfg.table,
                "postrouting",
            ],
            None,
        )
        .await
        {
            Ok(o) => o,
            Err(e) if gone(&e) => return Ok(Vec::new()),
            Err(e) => {
                self.note(&e);
                return Err(e);
            }
        };
        parse_snat(&out)
    }

    /// Elements of the configured sets that exist.
    pub async fn observe_elements(
        &mut self,
    ) -> Result<BTreeMap<SetRef, BTreeSet<Element>>, NftError> {
        let mut out = BTreeMap::new();
        let sets: Vec<SetRef> = self.cfg.sets.all().cloned().collect();
        for s in sets {
            match run_nft(&["-j", "list", "set", &s.family, &s.table, &s.name], None).await {
                Ok(json) => {
                    out.insert(s, parse_elements(&json)?);
                }
                Err(e) if gone(&e) => {}
                Err(e) => {
                    self.note(&e);
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    /// Whether our table with both chains exists.
    pub async fn table_present(&mut self) -> bool {
        match run_nft(&["-j", "list", "table", "ip", &self.cfg.table], None).await {
            Ok(json) => json.contains("\"forward\"") && json.contains("\"postrouting\""),
            Err(e) => {
                self.note(&e);
                false
            }
        }
    }
}

#[cfg(test)]
mod tests;
