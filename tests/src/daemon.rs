//! Server-side processes: the isodhcp daemon under test and dnsmasq as a
//! stand-in server for proving the harness.

use std::net::Ipv4Addr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::lab::{DNS_IP, Lab, POOL, SERVER_IF, SERVER_IP, ServerAddr};
use crate::netinfo::Route;
use crate::netns::Netns;
use crate::util::{self, require_tool, tail, wait_child, wait_until};

/// Deadline for `isodhcp ready`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// The line the daemon logs once it serves.
pub const READY_MARKER: &str = "isodhcp ready";

/// `--xdp` value: the daemon's own type.
pub use isodhcp::config::XdpMode;

/// The lab's `--xdp` mode from env `ISODHCP_XDP` (`auto|native|generic|off`);
/// default `off`.
pub fn xdp_from_env() -> Result<XdpMode> {
    match std::env::var("ISODHCP_XDP").ok().as_deref() {
        None | Some("" | "off") => Ok(XdpMode::Off),
        Some("auto") => Ok(XdpMode::Auto),
        Some("native") => Ok(XdpMode::Native),
        Some("generic") => Ok(XdpMode::Generic),
        Some(o) => bail!("ISODHCP_XDP={o:?}: expected auto, native, generic or off"),
    }
}

/// The daemon binary: env `ISODHCP_BIN`, else `<target>/release/isodhcp`
/// where `<target>` is `CARGO_TARGET_DIR` or `<workspace>/target`.
pub fn isodhcp_bin() -> Result<PathBuf> {
    let p = match std::env::var_os("ISODHCP_BIN") {
        Some(p) => PathBuf::from(p),
        None => {
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("..")
                        .join("target")
                });
            target.join("release").join("isodhcp")
        }
    };
    if !p.exists() {
        bail!(
            "isodhcp binary {} not found: build it (`cargo xtask build`) or set ISODHCP_BIN",
            p.display()
        );
    }
    Ok(p)
}

/// Command line of one daemon instance (see the CLI contract).
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub bin: PathBuf,
    pub iface: String,
    pub server_ip: Option<Ipv4Addr>,
    pub pool: Option<String>,
    pub dns: Option<Ipv4Addr>,
    pub lease_secs: Option<u32>,
    pub lease_file: PathBuf,
    pub xdp: XdpMode,
    pub pin_dir: Option<PathBuf>,
    pub verbose: u8,
    pub extra: Vec<String>,
}

impl DaemonConfig {
    /// Defaults for a lab: `-i srv0 -s 198.18.0.1 -p 198.18.0.0/24 -d 198.18.0.53
    /// -t 600 -f <labdir>/leases.json --xdp $ISODHCP_XDP|off
    /// --bpf-pin-dir /sys/fs/bpf/isodhcp-test-<labid> -v`.
    pub fn for_lab(lab: &Lab) -> Result<DaemonConfig> {
        let mut c = DaemonConfig::for_lab_with_bin(lab, &isodhcp_bin()?);
        c.xdp = xdp_from_env()?;
        Ok(c)
    }

    /// [`DaemonConfig::for_lab`] with an explicit binary and `--xdp off`.
    pub fn for_lab_with_bin(lab: &Lab, bin: &Path) -> DaemonConfig {
        DaemonConfig {
            bin: bin.to_path_buf(),
            iface: SERVER_IF.into(),
            server_ip: Some(SERVER_IP),
            pool: Some(POOL.into()),
            dns: Some(DNS_IP),
            lease_secs: Some(600),
            lease_file: lab.dir().join("leases.json"),
            xdp: XdpMode::Off,
            pin_dir: Some(lab.pin_dir()),
            verbose: 1,
            extra: Vec::new(),
        }
    }

    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["-i".to_string(), self.iface.clone()];
        if let Some(s) = self.server_ip {
            a.extend(["-s".into(), s.to_string()]);
        }
        if let Some(p) = &self.pool {
            a.extend(["-p".into(), p.clone()]);
        }
        if let Some(d) = self.dns {
            a.extend(["-d".into(), d.to_string()]);
        }
        if let Some(t) = self.lease_secs {
            a.extend(["-t".into(), t.to_string()]);
        }
        a.extend(["-f".into(), self.lease_file.display().to_string()]);
        a.extend(["--xdp".into(), self.xdp.as_str().into()]);
        if let Some(p) = &self.pin_dir {
            a.extend(["--bpf-pin-dir".into(), p.display().to_string()]);
        }
        for _ in 0..self.verbose {
            a.push("-v".into());
        }
        a.extend(self.extra.iter().cloned());
        a
    }
}

impl Lab {
    /// bpffs folder reserved for this lab's daemon (removed when the lab drops).
    pub fn pin_dir(&self) -> PathBuf {
        PathBuf::from(format!("/sys/fs/bpf/isodhcp-test-{}", self.id))
    }

    /// Start isodhcp in the server namespace with `cfg`; waits for
    /// `isodhcp ready`. Each start logs to a new `isodhcp-<n>.log`.
    pub fn start_isodhcp(&self, cfg: &DaemonConfig) -> Result<Daemon> {
        let log = (0..1000)
            .map(|n| self.dir().join(format!("isodhcp-{n}.log")))
            .find(|p| !p.exists())
            .ok_or_else(|| anyhow!("too many daemon logs"))?;
        let mut d = Daemon::start(&self.server, &cfg.bin, &cfg.args(), self.dir(), &log)?;
        d.wait_ready()?;
        Ok(d)
    }
}

impl Lab {
    /// Client `i` runs dhclient against `d`: it must get a /32 lease, and
    /// the server a host route to it with the server address as source
    /// (design.md §Isolated mode). Panics with the daemon's log otherwise.
    pub fn dhclient_isolated(&self, i: usize, d: &Daemon) -> (crate::clients::Lease, Route) {
        let lease = self
            .client(i)
            .dhclient()
            .unwrap_or_else(|e| panic!("dhclient: {e:#}\n{}", d.log_text()));
        assert_eq!(lease.addr.prefixlen, 32, "{}", lease.addr);
        let r = self
            .wait_server_route(lease.ip(), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{e:#}\n{}", d.log_text()));
        assert_eq!(r.prefsrc, Some(SERVER_IP), "route {r}");
        (lease, r)
    }
}

/// A daemon process in a namespace (started with `nsenter --net=`, so the
/// child pid IS the daemon). Drop: SIGTERM, 3 s grace, SIGKILL, reap.
pub struct Daemon {
    child: Option<Child>,
    pub log: PathBuf,
    pub args: Vec<String>,
    pub bin: PathBuf,
}

impl Daemon {
    /// Spawn `bin args...` in `ns`, cwd and `STATE_DIRECTORY` = `workdir`,
    /// stdout+stderr appended to `log`, in its own process group (a Ctrl-C on
    /// the terminal reaches only the test/demo, which then tears down).
    pub fn start(
        ns: &Netns,
        bin: &Path,
        args: &[String],
        workdir: &Path,
        log: &Path,
    ) -> Result<Daemon> {
        require_tool("nsenter")?;
        // Absolute: the child's working directory is `workdir`.
        let bin = &std::fs::canonicalize(bin)
            .with_context(|| format!("daemon binary {}", bin.display()))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening {}", log.display()))?;
        let mut cmd = ns.nsenter_cmd(bin.to_str().context("binary path not UTF-8")?);
        cmd.args(args)
            .current_dir(workdir)
            .env("STATE_DIRECTORY", workdir)
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {} in {}", bin.display(), ns.name()))?;
        Ok(Daemon {
            child: Some(child),
            log: log.to_path_buf(),
            args: args.to_vec(),
            bin: bin.clone(),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The whole log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Poll the log for [`READY_MARKER`] (deadline [`READY_TIMEOUT`]); fails
    /// at once if the process exits first.
    pub fn wait_ready(&mut self) -> Result<()> {
        self.wait_for_log(READY_MARKER, READY_TIMEOUT)
    }

    /// Poll the log for a line containing `needle`.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let max = timeout.as_millis() as u64 / 50 + 2;
        for _ in 0..max {
            if self.log_text().lines().any(|l| l.contains(needle)) {
                return Ok(());
            }
            if let Some(c) = self.child.as_mut() {
                if let Some(st) = c.try_wait()? {
                    self.child = None;
                    bail!(
                        "{} exited ({st}) before logging {needle:?}; args {:?}; log {}:\n{}",
                        self.bin.display(),
                        self.args,
                        self.log.display(),
                        tail(&self.log, 60)
                    );
                }
            } else {
                bail!("daemon is not running");
            }
            if Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "no {needle:?} in the log within {timeout:?}; args {:?}; log {}:\n{}",
            self.args,
            self.log.display(),
            tail(&self.log, 60)
        )
    }

    /// Send a signal (e.g. `libc::SIGTERM`).
    pub fn signal(&self, sig: libc::c_int) -> Result<()> {
        let pid = self.pid().ok_or_else(|| anyhow!("daemon not running"))?;
        // SAFETY: kill(2) on our own child's pid (not yet reaped, so not reused).
        if unsafe { libc::kill(pid as libc::pid_t, sig) } != 0 {
            bail!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// Wait for exit (deadline `timeout`, default use 10 s); kills on timeout
    /// and returns an error then.
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let mut c = self
            .child
            .take()
            .ok_or_else(|| anyhow!("daemon not running"))?;
        match wait_child(&mut c, timeout)? {
            Some(st) => Ok(st),
            None => bail!(
                "daemon did not exit within {timeout:?} (killed); log:\n{}",
                tail(&self.log, 40)
            ),
        }
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if matches!(c.try_wait(), Ok(None)) {
                // SAFETY: our own unreaped child.
                unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
                let _ = wait_child(&mut c, Duration::from_secs(3));
            }
        }
    }
}

/// Is some socket bound to UDP `port` in `ns`? (reads the namespace's
/// `/proc/net/udp` from a thread that joined it).
pub fn udp_port_bound(ns: &Netns, port: u16) -> Result<bool> {
    let needle = format!(":{port:04X} ");
    ns.run_in(move || {
        let t = std::fs::read_to_string("/proc/thread-self/net/udp")?;
        Ok(t.lines().skip(1).any(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| format!("{a} ").ends_with(&needle))
        }))
    })
}

/// dnsmasq as a stand-in DHCP server on `srv0` (DNS off), used to prove the
/// lab and the client runners against a real server.
pub struct Dnsmasq {
    daemon: Daemon,
}

impl Dnsmasq {
    /// Range 198.18.0.100–150, mask /24, router 198.18.0.1, DNS option
    /// 198.18.0.53; `extra` are more dnsmasq options (e.g. to send a /32 mask
    /// and option 121). Waits until UDP 67 is bound in the server namespace.
    pub fn start(lab: &Lab, extra: &[&str]) -> Result<Dnsmasq> {
        let bin = require_tool("dnsmasq")?;
        if lab.config.server == ServerAddr::Unnumbered {
            bail!("the dnsmasq stand-in needs a numbered server");
        }
        let dir = lab.dir();
        let mut args: Vec<String> = [
            "--no-daemon",
            "--port=0",
            "--conf-file=/dev/null",
            "--user=root",
            "--group=root",
            "--dhcp-range=198.18.0.100,198.18.0.150,255.255.255.0,1h",
            "--interface=srv0",
            "--bind-interfaces",
            "--dhcp-authoritative",
            "--log-dhcp",
            "--log-facility=-",
            "--dhcp-option=option:dns-server,198.18.0.53",
        ]
        .iter()
        .map(std::string::ToString::to_string)
        .collect();
        args.push(format!(
            "--dhcp-leasefile={}",
            dir.join("dnsmasq.leases").display()
        ));
        args.push(format!("--pid-file={}", dir.join("dnsmasq.pid").display()));
        args.extend(extra.iter().map(std::string::ToString::to_string));
        let log = dir.join("dnsmasq.log");
        let mut daemon = Daemon::start(&lab.server, &bin, &args, dir, &log)?;
        let r = wait_until("dnsmasq to bind UDP 67", Duration::from_secs(10), || {
            if !daemon.is_running() {
                bail!("dnsmasq exited; log:\n{}", tail(&log, 30));
            }
            Ok(udp_port_bound(&lab.server, 67)?.then_some(()))
        });
        if let Err(e) = r {
            return Err(e.context(format!("dnsmasq log:\n{}", tail(&log, 30))));
        }
        Ok(Dnsmasq { daemon })
    }

    pub fn log_text(&self) -> String {
        self.daemon.log_text()
    }
}

/// Shorthand used by tests: `util::run_ok` on `bpftool ... -j` parsed as JSON.
pub fn bpftool_json(args: &[&str]) -> Result<serde_json::Value> {
    let bin = require_tool("bpftool")?;
    let out = util::run_ok(
        std::process::Command::new(bin).args(args).arg("-j"),
        util::CMD_TIMEOUT,
    )?;
    serde_json::from_str(&out).with_context(|| format!("bpftool JSON: {out}"))
}

/// Sum of every numeric JSON field named `field`, anywhere in `v` (per-CPU
/// map dumps repeat the struct once per CPU, possibly under `formatted`).
pub fn sum_field(v: &serde_json::Value, field: &str) -> u64 {
    use serde_json::Value;
    fn walk(v: &Value, field: &str, depth: usize, acc: &mut u64) {
        if depth > 32 {
            return;
        }
        match v {
            Value::Object(m) => {
                // bpftool prints BTF-formatted data under "formatted" next to
                // raw hex; count the formatted copy only.
                if let Some(f) = m.get("formatted") {
                    walk(f, field, depth + 1, acc);
                    return;
                }
                for (k, x) in m {
                    if k == field {
                        if let Some(n) = x.as_u64() {
                            *acc = acc.saturating_add(n);
                            continue;
                        }
                    }
                    walk(x, field, depth + 1, acc);
                }
            }
            Value::Array(a) => {
                for x in a {
                    walk(x, field, depth + 1, acc);
                }
            }
            _ => {}
        }
    }
    let mut acc = 0;
    walk(v, field, 0, &mut acc);
    acc
}
