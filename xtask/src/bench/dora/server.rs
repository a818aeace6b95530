//! The servers under test: a fresh lab each, started and stopped.

use super::*;

/// TSO off on the veths the frames cross (veth then takes the NAPI path,
/// so native XDP on `srv0` sees frames; same as the flood bench).
fn prepare_lab(lab: &Lab) -> Result<()> {
    let c = lab.client(0);
    c.ns.run_ok("ethtool", &["-K", &c.ifname, "tso", "off"])?;
    lab.server
        .run_ok("ethtool", &["-K", SERVER_IF, "tso", "off"])?;
    for port in ["psrv", "p0"] {
        lab.switch.run_ok("ethtool", &["-K", port, "tso", "off"])?;
    }
    Ok(())
}

/// A fresh lab with `server` running on `srv0`.
pub(super) fn start_server(server: Server, bins: &Bins, n: usize) -> Result<Live> {
    let lab = Lab::new("bdora", 1).context("building the lab")?;
    prepare_lab(&lab)?;
    let dir = lab.dir().to_path_buf();
    let (daemon, lease_file, cfg) = match server {
        Server::Isodhcp | Server::IsodhcpXdp | Server::IsodhcpNoSet => {
            let script = dir.join("sets.nft");
            std::fs::write(&script, NFT_SCRIPT)?;
            lab.server
                .run_ok("nft", &["-f", script.to_str().context("path not UTF-8")?])
                .context("creating the nft set")?;
            let mut cfg = DaemonConfig::for_lab_with_bin(&lab, &bins.daemon);
            cfg.pool = Some(POOL.into());
            cfg.lease_file = dir.join(format!("leases-{n}.json"));
            // -v would log per lease.
            cfg.verbose = 0;
            cfg.xdp = if server == Server::IsodhcpXdp {
                XdpMode::Auto
            } else {
                XdpMode::Off
            };
            cfg.extra = LIMIT_FLAGS
                .iter()
                .map(std::string::ToString::to_string)
                .collect();
            if server != Server::IsodhcpNoSet {
                cfg.extra
                    .extend(["--nft-set-isolated".into(), NFT_SET.into()]);
            }
            // Scraped once after the run (durable-write count and time).
            cfg.extra.extend([
                "--metrics-listen".into(),
                format!("127.0.0.1:{METRICS_PORT}"),
            ]);
            let d = lab.start_isodhcp(&cfg)?;
            (d, cfg.lease_file.clone(), Some(cfg))
        }
        Server::Kea => {
            let (d, f) = start_kea(&lab, n)?;
            (d, f, None)
        }
        Server::Dnsmasq => {
            let (d, f) = start_dnsmasq(&lab, n)?;
            (d, f, None)
        }
    };
    Ok(Live {
        server,
        lab,
        daemon: Some(daemon),
        lease_file,
        cfg,
    })
}

/// dnsmasq (DHCP only, DNS off) on `srv0` with a /16 range; ready once it
/// has bound UDP 67.
fn start_dnsmasq(lab: &Lab, n: usize) -> Result<(Daemon, PathBuf)> {
    let bin = find_tool("dnsmasq").context("dnsmasq not found")?;
    let dir = lab.dir();
    let leases = dir.join(format!("dnsmasq-{n}.leases"));
    let args: Vec<String> = vec![
        "--no-daemon".into(),
        "--port=0".into(),
        "--conf-file=/dev/null".into(),
        "--user=root".into(),
        "--group=root".into(),
        format!("--dhcp-range={DNSMASQ_RANGE}"),
        format!("--interface={SERVER_IF}"),
        "--bind-interfaces".into(),
        "--dhcp-authoritative".into(),
        "--dhcp-lease-max=1000000".into(),
        // No ICMP echo before each offer (it holds an offer up to 3 s);
        // neither Kea nor isodhcp probe that way.
        "--no-ping".into(),
        "--dhcp-option=option:router,198.18.0.1".into(),
        "--dhcp-option=option:dns-server,198.18.0.53".into(),
        "--log-facility=-".into(),
        format!("--dhcp-leasefile={}", leases.display()),
        format!(
            "--pid-file={}",
            dir.join(format!("dnsmasq-{n}.pid")).display()
        ),
    ];
    let log = dir.join(format!("dnsmasq-{n}.log"));
    let mut d = Daemon::start(&lab.server, &bin, &args, dir, &log)?;
    poll("dnsmasq to bind UDP 67", Duration::from_secs(15), || {
        if !d.is_running() {
            bail!("dnsmasq exited; log:\n{}", tail(&log, 30));
        }
        Ok(udp_port_bound(&lab.server, 67)?.then_some(()))
    })?;
    Ok((d, leases))
}

/// SIGTERM, then wait for a clean exit.
pub(super) fn stop(live: &mut Live) -> Result<()> {
    let mut d = live.daemon.take().context("server not running")?;
    d.signal(libc::SIGTERM)?;
    let st = d.wait_exit(Duration::from_secs(20))?;
    if !st.success() && live.server != Server::Kea {
        bail!(
            "{} exited with {st} on SIGTERM; log:\n{}",
            live.server.label(),
            tail(&d.log, 30)
        );
    }
    Ok(())
}
