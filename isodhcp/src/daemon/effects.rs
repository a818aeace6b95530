//! Carrying out the engine's effects for a batch of frames, persistence and
//! reconcile (design.md §Commit order, §Kernel state, §Persistence). Orchestration only: what a
//! binding needs comes from `system::reconcile` and `system::nft::model`,
//! the changes are made by the executors in `system/`; this file orders
//! them and reports failures (which mark a reconcile as needed).

use anyhow::Result;
use tracing::{debug, info, warn};

use super::{Daemon, now_ms};
use crate::datapath::{FrameIo, Origin};
use crate::engine::{Binding, Effect, Reply};
use crate::system::hooks::{HookAction, HookEvent};
use crate::system::kernel::{self, Target};
use crate::system::netlink::NetlinkError;
use crate::system::reconcile::{self, Fix, KernelState};
use crate::wire::frame::{self, Addressing, DHCP_CLIENT_PORT, DHCP_SERVER_PORT};

impl Daemon {
    /// Applies the effects of a batch: kernel state for every frame, one nft
    /// transaction, one durable write, hooks, then the replies. A reply
    /// whose frame needed a durable write is withheld if the write failed
    /// (the client retries).
    pub(super) async fn apply(&mut self, batch: Vec<(Origin, Vec<Effect>)>) {
        let mut up: Vec<Binding> = Vec::new();
        let mut down: Vec<Binding> = Vec::new();
        let mut hooks: Vec<(HookAction, Binding)> = Vec::new();
        let mut sends: Vec<(Origin, Reply, bool)> = Vec::new();
        let mut fixes: Vec<Fix> = Vec::new();
        let mut persist = false;
        for (origin, effects) in batch {
            let mut frame_persists = false;
            for fx in effects {
                match fx {
                    Effect::Bind(b) => {
                        fixes.extend(reconcile::bring_up(&b));
                        hooks.push((HookAction::Add, b.clone()));
                        up.push(b);
                    }
                    Effect::Unbind(b) => {
                        fixes.extend(reconcile::take_down(&b));
                        hooks.push((HookAction::Del, b.clone()));
                        // Bound and unbound within one batch: nothing to tell nft.
                        match up.iter().position(|u| u.mac == b.mac && u.ip == b.ip) {
                            Some(i) => {
                                up.remove(i);
                            }
                            None => down.push(b),
                        }
                    }
                    Effect::Known(mac, known) => self.admission.set_known(mac, known),
                    Effect::PersistNow => {
                        persist = true;
                        frame_persists = true;
                    }
                    Effect::PersistLater => {
                        self.dirty_since.get_or_insert(now_ms());
                    }
                    Effect::Send(r) => sends.push((origin, r, frame_persists)),
                    Effect::Stripe(u) => self.admission.set_stripe(&u),
                }
            }
        }
        self.apply_fixes(fixes).await;
        if !up.is_empty() || !down.is_empty() {
            if let Err(e) = self.nft.apply(&up, &down).await {
                warn!(error = %e, "firewall update failed; will retry at the next reconcile");
                self.needs_reconcile = true;
            }
        }
        let durable = !persist
            || match self.flush() {
                Ok(()) => true,
                Err(e) => {
                    warn!(error = %e, "lease write failed; replies that needed it are withheld");
                    false
                }
            };
        if let Some(h) = &self.hooks {
            let (total, free) = (self.engine.leases().count(), self.engine.free_count());
            for (action, binding) in hooks {
                h.submit(HookEvent {
                    action,
                    binding,
                    total_leases: total,
                    free_ips: free,
                });
            }
        }
        for (origin, r, needs_disk) in sends {
            if durable || !needs_disk {
                self.send(&r, origin);
            }
        }
        self.io.flush_tx();
    }

    /// Writes what changed durably (journal, group commit); folds the
    /// journal into a snapshot when it has grown. After a failed write the
    /// next flush writes a full snapshot, so nothing taken is lost.
    pub(super) fn flush(&mut self) -> Result<()> {
        if self.snapshot_pending || self.store.wants_snapshot(self.engine.leases().count()) {
            return self.snapshot();
        }
        let dirty = self.engine.take_dirty();
        let t = std::time::Instant::now();
        let r = self.store.commit(&dirty);
        self.commit_latency.observe(t.elapsed().as_secs_f64());
        if let Err(e) = r {
            self.snapshot_pending = true;
            return Err(e.into());
        }
        self.dirty_since = None;
        if self.fold_at.is_none() && self.store.journal_lines() > 0 {
            self.fold_at = Some(tokio::time::Instant::now() + super::fold_delay(self.fold_cost));
        }
        Ok(())
    }

    /// The fold deadline passed: one snapshot shows every commit since the
    /// last one in the lease file. A failure is retried a little later.
    pub(super) fn fold(&mut self) {
        self.fold_at = None;
        let t = std::time::Instant::now();
        match self.snapshot() {
            Ok(()) => debug!(
                ms = t.elapsed().as_millis() as u64,
                "journal folded into the lease file"
            ),
            Err(e) => {
                warn!(error = %e, "lease file update failed; will retry");
                self.fold_at = Some(tokio::time::Instant::now() + super::FOLD_RETRY);
            }
        }
    }

    /// A full, atomic snapshot of every lease and the quarantine.
    pub(super) fn snapshot(&mut self) -> Result<()> {
        let started = std::time::Instant::now();
        self.engine.take_dirty();
        let records = self.engine.snapshot();
        let t = std::time::Instant::now();
        let r = self
            .store
            .snapshot(now_ms(), records.iter(), &self.engine.quarantined());
        self.commit_latency.observe(t.elapsed().as_secs_f64());
        self.fold_cost = started.elapsed();
        match r {
            Ok(()) => {
                self.snapshot_pending = false;
                self.dirty_since = None;
                self.last_snapshot = now_ms();
                self.fold_at = None;
                Ok(())
            }
            Err(e) => {
                self.snapshot_pending = true;
                Err(e.into())
            }
        }
    }

    fn send(&mut self, r: &Reply, origin: Origin) {
        let a = Addressing {
            src_mac: self.server_mac,
            dst_mac: r.dst_mac,
            src_ip: self.server_ip,
            dst_ip: r.dst_ip,
            src_port: DHCP_SERVER_PORT,
            dst_port: DHCP_CLIENT_PORT,
        };
        match frame::build(&a, &r.payload)
            .map_err(std::io::Error::other)
            .and_then(|f| self.io.send(&f, origin))
        {
            Ok(()) => debug!(kind = ?r.kind, dst = %r.dst_ip, "reply sent"),
            // A guest can provoke replies that cannot be sent (e.g. to an
            // address with no route): one line per reply would let it fill
            // the journal.
            Err(e) if self.reply_log.allow(now_ms()) => warn!(error = %e, "reply not sent"),
            Err(_) => {}
        }
    }

    /// Carries out kernel changes (see `system::kernel` for their order);
    /// a failed one is logged and retried at the next reconcile.
    async fn apply_fixes(&mut self, fixes: Vec<Fix>) {
        let results = kernel::apply_fixes(&self.nl, self.target(), &fixes).await;
        for (fix, r) in fixes.iter().zip(results) {
            if let Err(e) = r {
                warn!(?fix, error = %e, "kernel change failed; will retry");
                self.needs_reconcile = true;
            }
        }
    }

    fn target(&self) -> Target {
        Target {
            ifindex: self.ifindex,
            server_ip: self.server_ip,
        }
    }

    /// Reads the kernel state isodhcp manages.
    pub(super) async fn observe(&self) -> Result<KernelState, NetlinkError> {
        let pg = self.engine.playground_block().map(|b| b.prefix);
        let pool = self.engine.pool().cidr();
        kernel::observe(&self.nl, self.target(), &self.iface, pool, pg).await
    }

    /// Makes kernel and firewall state match the leases (design.md §Reconcile): adds
    /// what is missing, removes only what isodhcp made and no lease explains.
    pub(super) async fn reconcile(&mut self) {
        self.needs_reconcile = false;
        let bindings = self.engine.desired(now_ms());
        match self.observe().await {
            Ok(observed) => {
                let desired = KernelState::desired(&bindings, self.engine.playground_alias());
                let fixes = reconcile::diff(&desired, &observed);
                if !fixes.is_empty() {
                    info!(count = fixes.len(), "reconcile: fixing kernel state");
                }
                self.apply_fixes(fixes).await;
            }
            Err(e) => {
                warn!(error = %e, "cannot read kernel state; reconcile postponed");
                self.needs_reconcile = true;
            }
        }
        if let Err(e) = self.nft.reconcile(&bindings).await {
            warn!(error = %e, "firewall reconcile failed; will retry");
            self.needs_reconcile = true;
        }
    }
}
