//! Start-up: control socket, interface facts, the configuration completed
//! ([`Config::resolve`]), leases, XDP and datapath, firewall, statics,
//! reconcile, snapshot.
//!
//! Guarantees:
//! - The control socket is bound first: a second daemon for the same
//!   interface stops before it touches anything the first one manages.
//! - A value the operator gave that turns out unusable (a static outside
//!   the detected pool, one the engine refuses) is a [`RunError::Usage`]
//!   (exit 2); every other start-up failure is [`RunError::Failed`] (exit 1).

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::config::{Config, Facts, ResolveError, Resolved};
use super::{Daemon, admission, now_ms};
use crate::config::{Isolation, UsageError, XdpMode, sanitise_iface};
use crate::control::{self, server::ControlSocket, server::Pending};
use crate::datapath::{Origin, PortGuard};
use crate::engine::{Effect, Engine, EngineConfig, Mode};
use crate::store::LeaseStore;
use crate::system::hooks::{self, HookConfig, Hooks};
use crate::system::netlink::{InterfaceInfo, Netlink};
use crate::system::nft::{Nft, NftConfig};

/// Why the daemon did not start (or stopped): the exit status follows.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A value the operator gave is refused (exit status 2).
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// Anything else (exit status 1).
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

impl RunError {
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Usage(_) => 2,
            RunError::Failed(_) => 1,
        }
    }
}

impl From<ResolveError> for RunError {
    fn from(e: ResolveError) -> RunError {
        match e {
            ResolveError::Usage(u) => RunError::Usage(u),
            ResolveError::Detect(d) => RunError::Failed(d.into()),
            other => RunError::Failed(other.into()),
        }
    }
}

/// Requests from the control socket, answered on the event loop.
pub(super) type ControlQueue = mpsc::Receiver<Pending>;

/// Turns ICMP redirects off on the interface: with isolation on or off,
/// hairpinned traffic must not teach clients to talk directly.
fn disable_redirects(iface: &str) {
    let path = format!("/proc/sys/net/ipv4/conf/{iface}/send_redirects");
    match std::fs::write(&path, "0") {
        Ok(()) => info!(
            iface,
            "send_redirects=0 (isolation routes client traffic through this router)"
        ),
        Err(e) => {
            warn!(iface, error = %e, "cannot set send_redirects=0; clients may learn direct routes to each other");
        }
    }
}

/// What start-up holds before the configuration is complete.
struct Opened {
    socket_path: std::path::PathBuf,
    ctl: ControlSocket,
    nl: Netlink,
    info: InterfaceInfo,
}

/// The control socket first, then the interface.
async fn open(cfg: &Config) -> Result<Opened> {
    let socket_path = cfg.socket_path();
    let ctl = ControlSocket::bind(&socket_path)?;
    let nl = Netlink::connect()?;
    let info = nl.interface(&cfg.interface).await?;
    Ok(Opened {
        socket_path,
        ctl,
        nl,
        info,
    })
}

/// The facts [`Config::resolve`] needs; the resolver files only without `--dns`.
fn facts(cfg: &Config, info: &InterfaceInfo) -> Facts {
    let read = |p: &str| {
        cfg.dns
            .is_empty()
            .then(|| std::fs::read_to_string(p).ok())
            .flatten()
    };
    Facts {
        addrs: info.addrs.clone(),
        resolv_conf: read("/etc/resolv.conf"),
        resolved_conf: read("/run/systemd/resolve/resolv.conf"),
    }
}

/// The lease file and the engine restored from it, with the effects that
/// bring restored leases back (applied once everything is up).
fn restore(cfg: &Config, r: &Resolved, info: &InterfaceInfo) -> Result<Restored, RunError> {
    let (mut store, loaded) = LeaseStore::open(&cfg.lease_file).map_err(anyhow::Error::from)?;
    for w in &loaded.warnings {
        warn!(file = %cfg.lease_file.display(), "{w}");
    }
    let existing: Vec<Ipv4Addr> = loaded
        .records
        .iter()
        .filter(|r| r.mode != Mode::Playground)
        .map(|r| r.ip)
        .collect();
    let engine_cfg = EngineConfig {
        dns: r.dns.clone(),
        lease_time: cfg.lease_time,
        custom_options: cfg.custom_options.clone(),
        statics: cfg.static_entries(),
        classifier: cfg.classifier.clone(),
        playground_size: cfg.playground_size(),
        offer_stripe: if cfg.xdp == XdpMode::Off {
            0
        } else {
            cfg.offer_stripe
        },
        stripe_key: random_key(),
        ..EngineConfig::new(r.server_ip, info.mac, r.pool)
    };
    let mut engine = Engine::new(engine_cfg, &existing).map_err(|e| cfg.refusal(e))?;
    info!(interface = %cfg.interface, server_ip = %r.server_ip, pool = %r.pool, dns = ?r.dns, "configuration");
    let (start_fx, rejected) = engine.start(now_ms(), loaded.records, loaded.quarantine);
    for (rec, why) in rejected {
        warn!(mac = %rec.mac, ip = %rec.ip, "lease not restored: {why}; kept in the lease file");
        store.carry(&rec);
    }
    if let Some(pg) = engine.playground_block() {
        info!(block = %pg, "playground block reserved");
    }
    info!(leases = engine.leases().count(), file = %cfg.lease_file.display(), "leases loaded");
    Ok((engine, store, start_fx))
}

type Restored = (Engine, LeaseStore, Vec<Effect>);

/// A key for the stripe's MAC hash, different on every start (std's
/// randomly seeded SipHash keys; no other randomness is needed).
fn random_key() -> u64 {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(std::process::id())
}

/// The hook runner for `--hook-file`, with the instance's environment.
fn hook_runner(cfg: &Config, r: &Resolved) -> Option<Hooks> {
    let path = cfg.hook_file.as_ref()?;
    let env = hooks::daemon_env(&hooks::DaemonFacts {
        interface: &cfg.interface,
        server_ip: r.server_ip,
        pool: r.pool,
        dns: &r.dns,
        lease_file: &cfg.lease_file,
        isolation: cfg.isolation,
    });
    Some(Hooks::new(HookConfig::new(path.clone(), env)))
}

pub(super) async fn start(cfg: &Config) -> Result<(Daemon, ControlQueue), RunError> {
    let opened = open(cfg).await?;
    let r = cfg.resolve(&facts(cfg, &opened.info))?;
    if r.dns_fallback {
        warn!("no usable nameserver in /etc/resolv.conf: offering 1.1.1.1 (set --dns)");
    }
    let restored = restore(cfg, &r, &opened.info)?;
    Ok(assemble(cfg, opened, &r, restored).await?)
}

/// Datapath, firewall and hooks around the engine; then statics come up and
/// everything the leases need is reconciled.
async fn assemble(
    cfg: &Config,
    o: Opened,
    r: &Resolved,
    (mut engine, store, start_fx): Restored,
) -> Result<(Daemon, ControlQueue)> {
    let (admission, io) = admission::setup(cfg, o.info.index, &engine)?;
    if !admission.offering() {
        // No XDP responder: the stripe's addresses go back to the pool.
        engine.stripe_off();
    }
    let guard =
        PortGuard::bind(&cfg.interface).context("cannot bind UDP port 67 on the interface")?;
    tokio::spawn(guard.drain());
    if cfg.isolation != Isolation::System {
        disable_redirects(&cfg.interface);
    }
    let nft = Nft::new(NftConfig {
        table: format!("isodhcp_{}", sanitise_iface(&cfg.interface)),
        iface: cfg.interface.clone(),
        pool: r.pool,
        isolation: cfg.isolation,
        playground: engine.playground_block(),
        sets: cfg.nft_sets.clone(),
    });
    let hooks = hook_runner(cfg, r);
    let (tx, rx) = mpsc::channel(control::MAX_CONNECTIONS);
    let mut ctl = o.ctl;
    ctl.serve(tx);
    let mut d = Daemon {
        cfg: cfg.clone(),
        started: now_ms(),
        socket_path: o.socket_path,
        blocked: cfg.deny_macs.iter().map(|m| (*m, 0)).collect(),
        control_socket: ctl,
        engine,
        store,
        nl: o.nl,
        nft,
        hooks,
        io,
        admission,
        iface: cfg.interface.clone(),
        ifindex: o.info.index,
        server_ip: r.server_ip,
        server_mac: o.info.mac,
        dirty_since: None,
        snapshot_pending: false,
        last_snapshot: 0,
        reply_log: Default::default(),
        fold_at: None,
        fold_cost: std::time::Duration::ZERO,
        needs_reconcile: false,
        drops_logged: (0, 0),
        offer_watch: None,
        neighbours: None,
        commit_latency: super::metrics::commit_histogram(),
    };
    // The private table first (SNAT rules for restored leases included), then
    // statics come up (and their hooks run) before any client speaks, then
    // everything else the leases need is reconciled.
    let snat = d.nft.cfg.desired(&d.engine.desired(now_ms())).snat;
    if let Err(e) = d.nft.install_table(&snat).await {
        warn!(error = %e, "cannot install the nft table; will retry");
    }
    d.apply(vec![(Origin::Packet, start_fx)]).await;
    d.reconcile().await;
    d.snapshot().context("cannot write the lease file")?;
    info!(socket = %d.socket_path.display(), "control socket ready");
    Ok((d, rx))
}
