//! nftables executor (design.md §Firewall): the private table `ip isodhcp_<iface>`
//! (forward chain for `--isolation`, playground accept rule, one SNAT rule
//! per masqueraded client) and the operator's named sets.
//!
//! Split: [`model`] says what should exist (plain data from bindings and
//! config), [`render`] turns it into an nftables JSON document (the
//! `nftables` crate's typed schema), [`exec`] runs `nft -j -f -` and
//! `nft -j list`, [`parse`] reads what nft lists, and [`netlink`] adds and
//! deletes plain addresses of named sets without a process per lease.
//!
//! Guarantees:
//! - Every batch of changes is one `nft -j -f -` transaction: a firewall
//!   rule never sees a half-applied batch, and sets are never flushed and
//!   refilled. If a batch fails as a whole (an element to delete was already
//!   gone), its changes are retried one by one and "already gone" counts as
//!   success, so the rest of the batch still lands.
//! - The private table is (re)built in one transaction at start, so its
//!   rules are never missing while it is replaced.
//! - Named sets are never created by isodhcp. A configured set that does not
//!   exist, or a missing `nft` binary, gives one clear warning; everything
//!   else keeps working, and the next reconcile looks again.
//! - Elements isodhcp did not add are never removed (sets may be co-managed).
//! - One nft run takes at most [`exec::NFT_TIMEOUT`]; one that hangs is
//!   killed, and a batch that timed out is not retried change by change.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use tracing::{debug, info, warn};

use crate::engine::Binding;
pub use model::{
    Change, Element, NamedSets, NftConfig, NftState, SetRef, Snat, TableModel, elements, snat_of,
};
use netlink::ElementOp;
pub use parse::{parse_elements, parse_snat};

mod exec;
pub mod model;
mod netlink;
mod parse;
pub mod render;

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
            match exec::list_set(&s).await {
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
        let doc = render::table_document(&self.cfg.table(snat));
        let r = exec::apply(&doc).await;
        if let Err(e) = &r {
            self.note(e);
        }
        r
    }

    /// Applies the changes of one batch of effects: additions and removals
    /// of set elements and SNAT rules, in one transaction when possible.
    pub async fn apply(&mut self, up: &[Binding], down: &[Binding]) -> Result<(), NftError> {
        let down_snat: Vec<Ipv4Addr> = down.iter().filter_map(snat_of).map(|s| s.client).collect();
        let mut handles = Vec::new();
        if !down_snat.is_empty() {
            for (r, handle) in self.observe_snat().await? {
                if down_snat.contains(&r.client) {
                    handles.push(handle);
                }
            }
        }
        let changes = self.cfg.changes(up, down, &handles, &self.missing);
        // Plain addresses go over netlink in one transaction; prefixes
        // (interval sets) and SNAT rules through `nft -j -f`.
        let (ops, mut slow): (Vec<Change>, Vec<Change>) = changes.into_iter().partition(|c| {
            matches!(
                c,
                Change::AddElement(_, Element::Addr(_))
                    | Change::DeleteElement(_, Element::Addr(_))
            )
        });
        slow.extend(self.apply_elements(ops));
        self.run_batch(&slow).await
    }

    /// Applies plain-address element changes over netlink; returns those
    /// that must go through nft instead (no netlink socket, or it failed).
    fn apply_elements(&mut self, changes: Vec<Change>) -> Vec<Change> {
        let ops: Vec<ElementOp> = changes.iter().filter_map(element_op).collect();
        if ops.is_empty() {
            return Vec::new();
        }
        if self.sock.is_none() {
            self.sock = netlink::NftSocket::open().ok();
        }
        let Some(sock) = self.sock.as_mut() else {
            return changes;
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
                for (op, change) in ops.into_iter().zip(changes) {
                    match sock.apply(std::slice::from_ref(&op)) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) if !op.add && e == libc::ENOENT => {}
                        Ok(Err(e)) => {
                            warn!(set = %op.set, addr = %op.addr, error = %std::io::Error::from_raw_os_error(e), "nft element change refused");
                        }
                        Err(_) => slow.push(change),
                    }
                }
                slow
            }
            Err(e) => {
                debug!(error = %e, "nf_tables netlink failed; using nft");
                self.sock = None;
                changes
            }
        }
    }

    /// One transaction; on failure, each change alone ("already gone" is fine).
    pub async fn run_batch(&mut self, changes: &[Change]) -> Result<(), NftError> {
        if changes.is_empty() {
            return Ok(());
        }
        let doc = render::changes_document(&self.cfg, changes);
        match exec::apply(&doc).await {
            Ok(()) => Ok(()),
            Err(e) if changes.len() == 1 => {
                self.note(&e);
                if gone(&e) && changes[0].is_delete() {
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
                debug!(error = %e, "nft batch failed; applying its changes one by one");
                let mut first = None;
                for c in changes {
                    let doc = render::changes_document(&self.cfg, std::slice::from_ref(c));
                    match exec::apply(&doc).await {
                        Err(e @ NftError::Timeout(_)) => {
                            self.note(&e);
                            return Err(e);
                        }
                        Err(e) if !(gone(&e) && c.is_delete()) => {
                            first.get_or_insert(e);
                        }
                        _ => {}
                    }
                }
                first.map_or(Ok(()), Err)
            }
        }
    }

    /// Makes the firewall match the bindings: the private table if it is
    /// missing, then SNAT rules no binding explains removed, and missing
    /// SNAT rules and set elements added (elements of sets that do not
    /// exist are skipped).
    pub async fn reconcile(&mut self, bindings: &[Binding]) -> Result<(), NftError> {
        let desired = self.cfg.desired(bindings);
        self.check_sets().await;
        if !self.table_present().await {
            info!(table = %self.cfg.table, "reconcile: installing the nft table");
            self.install_table(&desired.snat).await?;
        }
        let observed = self.observe_snat().await?;
        let present: BTreeSet<Snat> = observed.iter().map(|(s, _)| *s).collect();
        let mut changes: Vec<Change> = observed
            .iter()
            .filter(|(s, _)| !desired.snat.contains(s))
            .map(|(_, h)| Change::DeleteRule(*h))
            .collect();
        let elements = self.observe_elements().await?;
        for (set, want) in &desired.elements {
            // Sets that do not exist are skipped (warned about by check_sets).
            let Some(have) = elements.get(set) else {
                continue;
            };
            changes.extend(
                want.difference(have)
                    .map(|e| Change::AddElement(set.clone(), *e)),
            );
        }
        changes.extend(
            desired
                .snat
                .difference(&present)
                .map(|s| Change::AddSnat(*s)),
        );
        if !changes.is_empty() {
            info!(count = changes.len(), "reconcile: fixing firewall state");
        }
        self.run_batch(&changes).await
    }

    /// SNAT rules in our postrouting chain, with their handles.
    pub async fn observe_snat(&mut self) -> Result<Vec<(Snat, u64)>, NftError> {
        let out = match exec::list_chain(&self.cfg.table, "postrouting").await {
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
            match exec::list_set(&s).await {
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
        match exec::list_table(&self.cfg.table).await {
            Ok(json) => json.contains("\"forward\"") && json.contains("\"postrouting\""),
            Err(e) => {
                self.note(&e);
                false
            }
        }
    }
}

/// A plain-address element change as a netlink operation.
fn element_op(c: &Change) -> Option<ElementOp> {
    let (add, set, addr) = match c {
        Change::AddElement(s, Element::Addr(a)) => (true, s, a),
        Change::DeleteElement(s, Element::Addr(a)) => (false, s, a),
        _ => return None,
    };
    Some(ElementOp {
        add,
        set: set.clone(),
        addr: *addr,
    })
}

#[cfg(test)]
mod tests;
