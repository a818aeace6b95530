//! Wires the layers together: CLI config → interface facts → lease store →
//! engine → executors, on one single-threaded tokio event loop.
//!
//! Order of a commit (SPEC §5): the engine's effects are carried out in the
//! order returned — route, durable write, then the reply — so no ACK leaves
//! before the lease is routed and on disk. A failed route change is logged
//! and retried by the next reconcile (every tick while something failed, and
//! on SIGUSR1); it never stops the server.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use tokio::signal::unix::{SignalKind, signal};
use tracing::{debug, info, warn};

mod admission;

use crate::cli::{self, Config};
use crate::datapath::{Datapath, FrameIo, PortGuard};
use crate::engine::{
    Binding, Effect, Engine, EngineConfig, Input, LeaseRecord, Millis, Mode, Reply,
};
use crate::store::LeaseStore;
use crate::system::detect;
use crate::system::netlink::Netlink;
use crate::system::reconcile::{self, Fix, KernelState};
use crate::wire::frame::{self, Addressing, DHCP_CLIENT_PORT, DHCP_SERVER_PORT};
use admission::Admission;

use crate::wire::Mac;

/// How often expiries are processed.
const TICK: Duration = Duration::from_secs(1);
/// Batched renewals are flushed at least this often (SPEC §7).
const LAZY_FLUSH_MS: Millis = 60_000;

fn now_ms() -> Millis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

struct Daemon {
    engine: Engine,
    store: LeaseStore,
    nl: Netlink,
    io: Datapath,
    admission: Admission,
    iface: String,
    ifindex: u32,
    server_ip: Ipv4Addr,
    server_mac: Mac,
    /// Unflushed batched renewals since this time.
    dirty_since: Option<Millis>,
    /// A kernel change failed: reconcile at the next tick.
    needs_reconcile: bool,
    /// Drop counters last logged, and when.
    drops_logged: (u64, Millis),
}

impl Daemon {
    fn persist(&mut self) -> Result<()> {
        let records: Vec<LeaseRecord> = self.engine.leases().map(LeaseRecord::from).collect();
        self.store
            .write(now_ms(), records.iter(), &self.engine.quarantined())?;
        self.engine.mark_persisted();
        self.dirty_since = None;
        Ok(())
    }

    async fn apply(&mut self, effects: Vec<Effect>) {
        for fx in effects {
            match fx {
                Effect::Bind(b) => self.bind(&b, true).await,
                Effect::Unbind(b) => self.bind(&b, false).await,
                Effect::Known(mac, known) => self.admission.set_known(mac, known),
                Effect::PersistNow => {
                    if let Err(e) = self.persist() {
                        // Not on disk: withhold the rest (the ACK). The client retries.
                        warn!(error = %e, "lease write failed; reply withheld");
                        self.dirty_since.get_or_insert(now_ms());
                        return;
                    }
                }
                Effect::PersistLater => {
                    self.dirty_since.get_or_insert(now_ms());
                }
                Effect::Send(r) => self.send(&r),
            }
        }
    }

    /// Brings a lease's kernel resources up or down (SPEC §6.1, §6.2).
    async fn bind(&mut self, b: &Binding, up: bool) {
        let fix = match (b.mode, up) {
            (Mode::Isolated, true) => Fix::AddRoute(b.ip),
            (Mode::Isolated, false) => Fix::RemoveRoute(b.ip),
            (Mode::Compat, true) => Fix::AddAlias(b.gateway, 30),
            (Mode::Compat, false) => Fix::RemoveAlias(b.gateway, 30),
            (Mode::Playground, _) => return,
        };
        self.fix(fix).await;
    }

    async fn fix(&mut self, fix: Fix) {
        let (ifindex, src) = (self.ifindex, self.server_ip);
        let r = match &fix {
            Fix::AddRoute(ip) => self.nl.route_add(*ip, ifindex, src).await,
            Fix::RemoveRoute(ip) => self.nl.route_del(*ip, ifindex, src).await,
            Fix::AddAlias(ip, p) => self.nl.alias_add(*ip, *p, ifindex).await,
            Fix::RemoveAlias(ip, p) => self.nl.alias_del(*ip, *p, ifindex).await,
        };
        if let Err(e) = r {
            warn!(?fix, error = %e, "kernel change failed; will retry");
            self.needs_reconcile = true;
        }
    }

    fn send(&mut self, r: &Reply) {
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
            .and_then(|f| self.io.send(&f))
        {
            Ok(()) => debug!(kind = ?r.kind, dst = %r.dst_ip, "reply sent"),
            Err(e) => warn!(error = %e, "reply not sent"),
        }
    }

    async fn on_frame(&mut self, bytes: &[u8]) {
        let Some((src_mac, msg)) = self.admission.check(bytes) else {
            return;
        };
        // Conflict detection (SPEC §4.7): only for DISCOVERs that need a new address.
        let candidates = self.engine.candidates(&msg);
        let in_use = if candidates.is_empty() {
            Vec::new()
        } else {
            self.nl.neighbours_alive(self.ifindex, &candidates).await.unwrap_or_else(|e| {
                warn!(error = %e, "neighbour table unreadable; offering without conflict check");
                Vec::new()
            })
        };
        let fx = self.engine.handle(
            now_ms(),
            Input::Dhcp {
                src_mac,
                msg: &msg,
                in_use: &in_use,
            },
        );
        self.apply(fx).await;
    }

    async fn on_tick(&mut self) {
        let now = now_ms();
        let fx = self.engine.handle(now, Input::Tick);
        self.apply(fx).await;
        if self
            .dirty_since
            .is_some_and(|t| now.saturating_sub(t) >= LAZY_FLUSH_MS)
        {
            if let Err(e) = self.persist() {
                warn!(error = %e, "batched lease write failed; will retry");
            }
        }
        if self.needs_reconcile {
            self.reconcile().await;
        }
        self.log_drops(now, false);
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

    /// Reads the kernel state isodhcp manages.
    async fn observe(&self) -> Result<KernelState, crate::system::netlink::NetlinkError> {
        let routes = self.nl.our_routes(self.ifindex).await?;
        let info = self.nl.interface(&self.iface).await?;
        let pg = self.engine.playground_block().map(|b| b.prefix);
        let aliases =
            KernelState::our_aliases(&info.addrs, self.engine.pool().cidr(), self.server_ip, pg);
        Ok(KernelState { routes, aliases })
    }

    /// Makes kernel state match the leases (SPEC §6.4).
    async fn reconcile(&mut self) {
        self.needs_reconcile = false;
        let observed = match self.observe().await {
            Ok(o) => o,
            Err(e) => {
                warn!(error = %e, "cannot read kernel state; reconcile postponed");
                self.needs_reconcile = true;
                return;
            }
        };
        let desired = KernelState::desired(
            &self.engine.desired(now_ms()),
            self.engine.playground_alias(),
        );
        let fixes = reconcile::diff(&desired, &observed);
        if !fixes.is_empty() {
            info!(count = fixes.len(), "reconcile: fixing kernel state");
        }
        for f in fixes {
            self.fix(f).await;
        }
    }
}

fn read_dns() -> Vec<Ipv4Addr> {
    let a = std::fs::read_to_string("/etc/resolv.conf").ok();
    let b = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
    let (d, fallback) = detect::dns(a.as_deref(), b.as_deref());
    if fallback {
        warn!("no usable nameserver in /etc/resolv.conf: offering 1.1.1.1 (set --dns)");
    }
    vec![d]
}

/// Runs the daemon until a terminating signal. Errors are fatal start-up
/// failures (exit 1).
pub async fn run(cfg: Config) -> Result<()> {
    let nl = Netlink::connect()?;
    let info = nl.interface(&cfg.interface).await?;
    let (server_ip, pool) =
        detect::server_and_pool(&cfg.interface, &info.addrs, cfg.server_ip, cfg.pool)?;
    if !pool.contains(server_ip) {
        bail!("server IP {server_ip} is outside the pool {pool}");
    }
    cli::validate_statics(&cfg.statics, &cfg.static_args, server_ip, pool)?;
    let dns = if cfg.dns.is_empty() {
        read_dns()
    } else {
        cfg.dns.clone()
    };
    info!(interface = %cfg.interface, %server_ip, %pool, ?dns, "configuration");

    let (mut store, loaded) = LeaseStore::open(&cfg.lease_file)?;
    for w in &loaded.warnings {
        warn!(file = %cfg.lease_file.display(), "{w}");
    }
    let existing: Vec<Ipv4Addr> = loaded
        .records
        .iter()
        .filter(|r| r.mode != Mode::Playground)
        .map(|r| r.ip)
        .collect();
    let mut engine = Engine::new(
        EngineConfig {
            dns,
            lease_time: cfg.lease_time,
            custom_options: cfg.custom_options.clone(),
            statics: cfg.statics.clone(),
            classifier: cfg.classifier.clone(),
            playground_size: cfg.playground_size,
            ..EngineConfig::new(server_ip, info.mac, pool)
        },
        &existing,
    )
    .map_err(|e| cli::CliError {
        option: "--static/--playground-size",
        value: String::new(),
        reason: e.to_string(),
    })?;
    let (start_fx, rejected) = engine.start(now_ms(), loaded.records, loaded.quarantine);
    for (rec, why) in rejected {
        warn!(mac = %rec.mac, ip = %rec.ip, "lease not restored: {why}; kept in the lease file");
        store.carry(&rec);
    }
    if let Some(pg) = engine.playground_block() {
        info!(block = %pg, "playground block reserved");
    }
    info!(leases = engine.leases().count(), file = %cfg.lease_file.display(), "leases loaded");

    let (admission, io) = admission::setup(&cfg, info.index, &engine)?;
    let guard =
        PortGuard::bind(&cfg.interface).context("cannot bind UDP port 67 on the interface")?;
    tokio::spawn(guard.drain());

    let mut d = Daemon {
        engine,
        store,
        nl,
        io,
        admission,
        iface: cfg.interface.clone(),
        ifindex: info.index,
        server_ip,
        server_mac: info.mac,
        dirty_since: None,
        needs_reconcile: false,
        drops_logged: (0, 0),
    };
    // Statics come up (and their hooks run) before any client speaks; then
    // everything else the leases need is reconciled.
    d.apply(start_fx).await;
    d.reconcile().await;
    if d.engine.leases().count() > 0 {
        d.persist().context("cannot write the lease file")?;
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
                Ok(n) => {
                    let frame = buf[..n].to_vec();
                    d.on_frame(&frame).await;
                }
                Err(e) => warn!(error = %e, "receive failed"),
            },
            _ = tick.tick() => d.on_tick().await,
            _ = usr1.recv() => {
                info!("SIGUSR1: reconciling kernel state");
                d.reconcile().await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => break,
        }
    }
    d.log_drops(now_ms(), true);
    d.persist().context("final lease write failed")?;
    info!("leases flushed; exiting");
    Ok(())
}
