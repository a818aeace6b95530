//! Wires the layers together: CLI config → interface facts → lease store →
//! engine → executors, on one single-threaded tokio event loop.
//!
//! Frames are handled in batches: the loop waits for one frame, then takes
//! every frame already queued (up to [`BATCH`]), runs each through admission
//! and the engine, and hands all their effects to [`effects`] at once. That
//! is where the commit order (design.md §Commit order) holds for the whole batch: kernel
//! state (routes, aliases, one nft transaction), then one durable journal
//! write (group commit), then hooks are queued, then the replies leave.

mod admission;
mod config;
mod control;
mod effects;
mod metrics;
mod setup;

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{info, warn};

use crate::datapath::{Datapath, FrameIo, Origin};
use crate::engine::{Effect, Engine, Input, LogBudget, Millis};
use crate::store::LeaseStore;
use crate::system::hooks::Hooks;
use crate::system::netlink::Netlink;
use crate::system::nft::Nft;
use crate::wire::Mac;
use admission::Admission;
pub use config::{Config, Facts, ResolveError, Resolved};
use setup::ControlQueue;
pub use setup::RunError;

/// How often expiries are processed.
const TICK: Duration = Duration::from_secs(1);
/// Batched renewals are flushed at least this often (design.md §Persistence).
const LAZY_FLUSH_MS: Millis = 60_000;
/// A journal commit shows in the lease file at most this long after it
/// (what operators, scripts and the original tool read). One rewrite serves
/// every commit of the window, so there are about one or two folds a second
/// at most however many commits.
const FOLD_WITHIN: Duration = Duration::from_secs(1);
/// Bounds of the fold delay: see [`fold_delay`].
const FOLD_DELAY_MIN: Duration = Duration::from_millis(500);
const FOLD_DELAY_MAX: Duration = Duration::from_millis(900);
/// A failed fold is retried after this long.
const FOLD_RETRY: Duration = Duration::from_secs(5);
/// Safety net behind the fold deadline: a non-empty journal is folded at
/// least this often whatever happened to the deadline.
const SNAPSHOT_EVERY_MS: Millis = 300_000;
/// Most frames handled in one batch (one group commit).
const BATCH: usize = 64;

fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Everything the event loop owns.
struct Daemon {
    cfg: Config,
    started: Millis,
    socket_path: PathBuf,
    /// MACs blocked at run time or by `--deny-mac`: CLOCK_MONOTONIC expiry, 0 = for ever.
    blocked: HashMap<Mac, u64>,
    /// Removes the socket file on shutdown.
    #[allow(dead_code)]
    control_socket: crate::control::server::ControlSocket,
    engine: Engine,
    store: LeaseStore,
    nl: Netlink,
    nft: Nft,
    hooks: Option<Hooks>,
    io: Datapath,
    admission: Admission,
    iface: String,
    ifindex: u32,
    server_ip: Ipv4Addr,
    server_mac: Mac,
    /// Unflushed batched renewals since this time.
    dirty_since: Option<Millis>,
    /// A journal write failed: the next flush writes a full snapshot.
    snapshot_pending: bool,
    /// When the last full snapshot was written.
    last_snapshot: Millis,
    /// The journal holds commits the lease file does not show yet: fold it
    /// into a snapshot at this time (set by the first such commit).
    fold_at: Option<tokio::time::Instant>,
    /// What the last full snapshot took (sets the fold delay).
    fold_cost: Duration,
    /// A kernel or firewall change failed: reconcile at the next tick.
    needs_reconcile: bool,
    /// Drop counters last logged, and when.
    drops_logged: (u64, Millis),
    /// (tx_offer, driver XDP_TX errors) at the last tick.
    offer_watch: Option<(u64, u64)>,
    /// Alive neighbour entries, read at most once per batch of frames.
    neighbours: Option<Vec<(Ipv4Addr, Option<Mac>)>>,
    /// Log lines about replies that could not be sent.
    reply_log: LogBudget,
    /// Durations of durable lease writes (metrics).
    commit_latency: prometheus_client::metrics::histogram::Histogram,
}

impl Daemon {
    /// Admission, conflict probe and engine for one frame.
    async fn on_frame(&mut self, bytes: &[u8], origin: Origin) -> Vec<Effect> {
        let Some((src_mac, msg)) = self.admission.check(bytes, origin) else {
            return Vec::new();
        };
        // Conflict detection (design.md §Quarantine): only for DISCOVERs that need a new
        // address; the neighbour table is read once per batch. An entry of
        // the asking client itself is no conflict.
        let candidates = self.engine.candidates(&msg);
        let mut in_use = Vec::new();
        if !candidates.is_empty() {
            if self.neighbours.is_none() {
                self.neighbours = Some(self.nl.neighbours_alive(self.ifindex).await.unwrap_or_else(|e| {
                    warn!(error = %e, "neighbour table unreadable; offering without conflict check");
                    Vec::new()
                }));
            }
            let alive = self.neighbours.as_deref().unwrap_or_default();
            in_use = candidates
                .into_iter()
                .filter(|c| {
                    alive
                        .iter()
                        .any(|(ip, mac)| ip == c && *mac != Some(src_mac))
                })
                .collect();
        }
        self.engine.handle(
            now_ms(),
            Input::Dhcp {
                msg: &msg,
                in_use: &in_use,
            },
        )
    }

    /// The first frame, then whatever is queued behind it, as one batch.
    async fn on_frames(&mut self, first: (usize, Origin), buf: &mut [u8]) {
        self.neighbours = None;
        let mut batch = Vec::new();
        let (n, origin) = first;
        let fx = self.on_frame(&buf[..n], origin).await;
        batch.push((origin, fx));
        while batch.len() < BATCH {
            match self.io.try_recv(buf) {
                Ok(Some((n, origin))) => {
                    let fx = self.on_frame(&buf[..n], origin).await;
                    batch.push((origin, fx));
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(error = %e, "receive failed");
                    break;
                }
            }
        }
        self.apply(batch).await;
    }

    async fn on_tick(&mut self) {
        let now = now_ms();
        self.admission.heartbeat(false);
        self.watch_offer_tx();
        let fx = self.engine.handle(now, Input::Tick);
        self.apply(vec![(Origin::Packet, fx)]).await;
        if self
            .dirty_since
            .is_some_and(|t| now.saturating_sub(t) >= LAZY_FLUSH_MS)
        {
            if let Err(e) = self.flush() {
                warn!(error = %e, "batched lease write failed; will retry");
            }
        }
        if self.store.journal_lines() > 0
            && now.saturating_sub(self.last_snapshot) >= SNAPSHOT_EVERY_MS
        {
            if let Err(e) = self.snapshot() {
                warn!(error = %e, "periodic lease snapshot failed; will retry");
            }
        }
        if self.needs_reconcile {
            self.reconcile().await;
        }
        self.log_drops(now, false);
    }

    /// The XDP OFFER responder stops when its replies do not leave the
    /// interface (design.md §Offer responder): DHCP then takes the daemon's
    /// path, as it did before the responder existed.
    fn watch_offer_tx(&mut self) {
        let Some(errors) = self
            .admission
            .offer_tx_failing(&self.iface, &mut self.offer_watch)
        else {
            return;
        };
        warn!(
            interface = %self.iface,
            xdp_tx_errors = errors,
            "XDP_TX does not work on this interface (a veth needs an XDP program on its peer): \
             XDP OFFER responder off, DHCP takes the daemon's path"
        );
        self.admission.offer_off();
        self.engine.stripe_off();
    }

    /// One summary line of admission drops a minute at most, and only when
    /// they grew: floods show up in the log without a line per frame.
    fn log_drops(&mut self, now: Millis, force: bool) {
        if !force && now.saturating_sub(self.drops_logged.1) < 60_000 {
            return;
        }
        let c = self.admission.counters();
        let drops: u64 = c
            .named()
            .iter()
            .filter(|(n, _)| n.starts_with("drop_"))
            .map(|(_, v)| v)
            .sum();
        if drops > self.drops_logged.0 || force {
            let by_reason: Vec<String> = c
                .named()
                .iter()
                .filter(|(n, v)| n.starts_with("drop_") && *v > 0)
                .map(|(n, v)| format!("{n}={v}"))
                .collect();
            info!(
                datapath = self.admission.mode(),
                admitted = c.redirect + c.pass_stack,
                dropped = drops,
                "admission: {}",
                by_reason.join(" ")
            );
        }
        self.drops_logged = (drops, now);
    }
}

/// How long after a commit to fold, given what the last full snapshot took:
/// early enough that the fold is done within [`FOLD_WITHIN`] (twice the last
/// cost, for a loaded machine), late enough to serve many commits at once.
/// 0.9 s at small lease counts; 20-60 ms per fold at 10,000 leases gives
/// 0.88-0.9 s.
fn fold_delay(last_cost: Duration) -> Duration {
    FOLD_WITHIN
        .saturating_sub(last_cost * 2)
        .clamp(FOLD_DELAY_MIN, FOLD_DELAY_MAX)
}

/// Completes at `at`; never if there is none.
async fn sleep_until_some(at: Option<tokio::time::Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// Runs the daemon until a terminating signal. Errors are fatal: a value
/// the operator gave is refused ([`RunError::Usage`], exit 2) or start-up
/// or shutdown failed ([`RunError::Failed`], exit 1).
pub async fn run(cfg: Config) -> Result<(), RunError> {
    let (d, control) = setup::start(&cfg).await?;
    Ok(serve(d, control, &cfg).await?)
}

/// The event loop, then the final lease write.
async fn serve(mut d: Daemon, mut control: ControlQueue, cfg: &Config) -> Result<()> {
    let (scrape_tx, mut scrapes) = tokio::sync::mpsc::channel::<metrics::Scrape>(4);
    if let Some(addr) = cfg.metrics_listen {
        metrics::serve(addr, scrape_tx)
            .await
            .with_context(|| format!("--metrics-listen {addr}"))?;
    }
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut tick = tokio::time::interval(TICK);
    let mut buf = vec![0u8; 2048];
    info!(interface = %cfg.interface, "isodhcp ready");
    loop {
        tokio::select! {
            r = d.io.recv(&mut buf) => match r {
                Ok(first) => d.on_frames(first, &mut buf).await,
                Err(e) => warn!(error = %e, "receive failed"),
            },
            _ = tick.tick() => d.on_tick().await,
            () = sleep_until_some(d.fold_at) => d.fold(),
            Some(back) = scrapes.recv() => {
                let _ = back.send(d.metrics_text());
            }
            Some((req, back)) = control.recv() => {
                let answer = d.answer(req).await;
                let _ = back.send(answer);
            }
            _ = usr1.recv() => {
                info!("SIGUSR1: reconciling kernel and firewall state");
                d.reconcile().await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => break,
        }
    }
    // A pinned program outlives the daemon: it must stop offering now.
    d.admission.heartbeat(true);
    d.log_drops(now_ms(), true);
    d.snapshot().context("final lease write failed")?;
    if let Some(h) = &d.hooks {
        h.drain(Duration::from_secs(5)).await;
    }
    info!("leases flushed; exiting");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fold_delay_leaves_room_for_the_fold() {
        let ms = Duration::from_millis;
        assert_eq!(fold_delay(ms(0)), ms(900));
        assert_eq!(fold_delay(ms(30)), ms(900));
        assert_eq!(fold_delay(ms(60)), ms(880));
        assert_eq!(fold_delay(ms(150)), ms(700));
        assert_eq!(fold_delay(ms(400)), ms(500));
        assert_eq!(fold_delay(Duration::from_secs(10)), ms(500));
    }
}
