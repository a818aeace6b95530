//! Start-up (SPEC §3, §6.4, §7, §9): facts, validation against the pool,
//! leases, XDP and datapath, firewall, statics, reconcile, snapshot.

use std::net::Ipv4Addr;

use anyhow::{Context, Result, bail};
use tracing::{info, warn};

use super::{Daemon, admission, now_ms};
use crate::cli::{self, Config, Isolation};
use crate::control::{self, server::ControlSocket, server::Pending};
use crate::datapath::{Origin, PortGuard};
use crate::engine::{ConfigError, Engine, EngineConfig, Mode};
use crate::store::LeaseStore;
use crate::system::detect;
use crate::system::hooks::{self, HookConfig, Hooks};
use crate::system::netlink::Netlink;
use crate::system::nft::{Nft, NftConfig};
use tokio::sync::mpsc;

fn read_dns() -> Vec<Ipv4Addr> {
    let a = std::fs::read_to_string("/etc/resolv.conf").ok();
    let b = std::fs::read_to_string("/run/systemd/resolve/resolv.conf").ok();
    let (d, fallback) = detect::dns(a.as_deref(), b.as_deref());
    if fallback {
        warn!("no usable nameserver in /etc/resolv.conf: offering 1.1.1.1 (set --dns)");
    }
    vec![d]
}

/// SPEC §6.3: with isolation on or off, hairpinned traffic must not teach
/// clients to talk directly, so ICMP redirects are turned off on the interface.
fn disable_redirects(iface: &str) {
    let path = format!("/proc/sys/net/ipv4/conf/{iface}/send_redirects");
    match std::fs::write(&path, "0") {
        Ok(()) => info!(
            iface,
            "send_redirects=0 (isolation routes client traffic through this router)"
        ),
        Err(e) => {
            warn!(iface, error = %e, "cannot set send_redirects=0; clients may learn direct routes to each other")
        }
    }
}

/// Requests from the control socket, answered on the event loop.
pub(super) type ControlQueue = mpsc::Receiver<Pending>;

/// The engine's refusal of the configuration as a command-line error (exit 2)
/// naming the option and the value as given.
fn config_error(cfg: &Config, e: ConfigError) -> cli::CliError {
    match e {
        ConfigError::Static { mac, why, .. } => {
            let raw = cfg
                .statics
                .iter()
                .zip(&cfg.static_args)
                .find(|(s, _)| s.mac == mac)
                .map(|(_, r)| r.clone())
                .unwrap_or_else(|| mac.to_string());
            cli::CliError {
                option: "--static",
                value: raw,
                reason: why.to_string(),
            }
        }
        ConfigError::NoPlaygroundBlock(n) => cli::CliError {
            option: "--playground-size",
            value: n.to_string(),
            reason: "no aligned block of that size is free of statics and existing leases".into(),
        },
    }
}

pub(super) async fn start(cfg: &Config) -> Result<(Daemon, ControlQueue)> {
    // The control socket first: a second daemon for this interface stops
    // here, before it touches anything the first one manages.
    let socket_path = cfg
        .socket
        .clone()
        .unwrap_or_else(|| control::default_socket_path(&cli::sanitise_iface(&cfg.interface)));
    let mut ctl = ControlSocket::bind(&socket_path)?;
    let nl = Netlink::connect()?;
    let info = nl.interface(&cfg.interface).await?;
    let (server_ip, pool) =
        detect::server_and_pool(&cfg.interface, &info.addrs, cfg.server_ip, cfg.pool)?;
    if !pool.contains(server_ip) {
        bail!("server IP {server_ip} is outside the pool {pool}");
    }
    cli::validate_statics(&cfg.statics, &cfg.static_args, Some(server_ip), pool)?;
    let dns = if cfg.dns.is_empty() {
        read_dns()
    } else {
        cfg.dns.clone()
    };

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
    let engine_cfg = EngineConfig {
        dns: dns.clone(),
        lease_time: cfg.lease_time,
        custom_options: cfg.custom_options.clone(),
        statics: cfg.statics.clone(),
        classifier: cfg.classifier.clone(),
        playground_size: cfg.playground_size,
        ..EngineConfig::new(server_ip, info.mac, pool)
    };
    let mut engine = Engine::new(engine_cfg, &existing).map_err(|e| config_error(cfg, e))?;
    info!(interface = %cfg.interface, %server_ip, %pool, ?dns, "configuration");
    let (start_fx, rejected) = engine.start(now_ms(), loaded.records, loaded.quarantine);
    for (rec, why) in rejected {
        warn!(mac = %rec.mac, ip = %rec.ip, "lease not restored: {why}; kept in the lease file");
        store.carry(&rec);
    }
    if let Some(pg) = engine.playground_block() {
        info!(block = %pg, "playground block reserved");
    }
    info!(leases = engine.leases().count(), file = %cfg.lease_file.display(), "leases loaded");

    let (admission, io) = admission::setup(cfg, info.index, &engine)?;
    let guard =
        PortGuard::bind(&cfg.interface).context("cannot bind UDP port 67 on the interface")?;
    tokio::spawn(guard.drain());

    if cfg.isolation != Isolation::System {
        disable_redirects(&cfg.interface);
    }
    let nft = Nft::new(NftConfig {
        table: format!("isodhcp_{}", cli::sanitise_iface(&cfg.interface)),
        iface: cfg.interface.clone(),
        pool,
        isolation: cfg.isolation,
        playground: engine.playground_block(),
        sets: cfg.nft_sets.clone(),
    });
    let hooks = cfg.hook_file.as_ref().map(|path| {
        let env = hooks::daemon_env(&hooks::DaemonFacts {
            interface: &cfg.interface,
            server_ip,
            pool,
            dns: &dns,
            lease_file: &cfg.lease_file,
            isolation: cfg.isolation,
        });
        Hooks::new(HookConfig::new(path.clone(), env))
    });

    let (tx, rx) = mpsc::channel(control::MAX_CONNECTIONS);
    ctl.serve(tx);
    let blocked = cfg.deny_macs.iter().map(|m| (*m, 0)).collect();
    let mut d = Daemon {
        cfg: cfg.clone(),
        started: now_ms(),
        socket_path,
        blocked,
        control_socket: ctl,
        engine,
        store,
        nl,
        nft,
        hooks,
        io,
        admission,
        iface: cfg.interface.clone(),
        ifindex: info.index,
        server_ip,
        server_mac: info.mac,
        dirty_since: None,
        snapshot_pending: false,
        last_snapshot: 0,
        reply_log: Default::default(),
        fold_at: None,
        fold_cost: std::time::Duration::ZERO,
        needs_reconcile: false,
        drops_logged: (0, 0),
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
