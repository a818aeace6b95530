//! DHCP client runners, each with its distribution's stock configuration
//! script, run inside a client namespace.
//!
//! All run under `ip netns exec NS unshare --uts --` (see [`Netns::exec_cmd`]):
//! their scripts write `/etc/resolv.conf`, which inside `ip netns exec` is the
//! bind-mounted `/etc/netns/NS/resolv.conf`, and may set the host name, which
//! the private UTS namespace absorbs.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};

use crate::lab::Client;
use crate::netinfo::{self, Addr, Route};
use crate::util::{self, require_tool, tail};

/// Deadline for one client run (DORA plus ARP probing).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(40);

/// Debian's stock dhclient script.
pub const DHCLIENT_SCRIPT: &str = "/sbin/dhclient-script";

/// Where Debian's `udhcpc` package puts busybox udhcpc's default script.
pub const UDHCPC_SCRIPT_CANDIDATES: &[&str] = &[
    "/etc/udhcpc/default.script",
    "/usr/share/udhcpc/default.script",
];

/// Which DHCP client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientKind {
    /// ISC dhclient with `/sbin/dhclient-script`.
    Dhclient,
    /// dhcpcd 9 (oneshot, IPv4 only, default hooks).
    Dhcpcd,
    /// busybox udhcpc with the packaged default script.
    Udhcpc,
}

impl ClientKind {
    pub const ALL: [ClientKind; 3] = [ClientKind::Dhclient, ClientKind::Dhcpcd, ClientKind::Udhcpc];
    pub fn name(self) -> &'static str {
        match self {
            ClientKind::Dhclient => "dhclient",
            ClientKind::Dhcpcd => "dhcpcd",
            ClientKind::Udhcpc => "udhcpc",
        }
    }
}

impl std::fmt::Display for ClientKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Result of a successful client run: the address the client configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub kind: ClientKind,
    pub addr: Addr,
}

impl Lease {
    pub fn ip(&self) -> Ipv4Addr {
        self.addr.ip
    }
}

/// Path of udhcpc's stock script.
pub fn udhcpc_script() -> Result<&'static str> {
    UDHCPC_SCRIPT_CANDIDATES
        .iter()
        .copied()
        .find(|p| Path::new(p).exists())
        .ok_or_else(|| {
            anyhow!(
                "udhcpc default script not found in {UDHCPC_SCRIPT_CANDIDATES:?} (package `udhcpc`)"
            )
        })
}

impl Client {
    /// Log file of a client program in this client's folder.
    pub fn log_path(&self, prog: &str) -> PathBuf {
        self.dir.join(format!("{prog}.log"))
    }
    /// Everything a client program logged so far (all runs, appended).
    pub fn log_text(&self, prog: &str) -> String {
        std::fs::read_to_string(self.log_path(prog)).unwrap_or_default()
    }
    fn dhclient_pidfile(&self) -> PathBuf {
        self.dir.join("dhclient.pid")
    }
    pub fn dhclient_leasefile(&self) -> PathBuf {
        self.dir.join("dhclient.leases")
    }

    /// Run the given client and return the address it configured.
    pub fn acquire(&self, kind: ClientKind) -> Result<Lease> {
        match kind {
            ClientKind::Dhclient => self.dhclient(),
            ClientKind::Dhcpcd => self.dhcpcd(),
            ClientKind::Udhcpc => self.udhcpc(),
        }
    }

    fn dhclient_cmd(&self, extra: &[&str]) -> Result<std::process::Command> {
        require_tool("dhclient")?;
        if !Path::new(DHCLIENT_SCRIPT).exists() {
            bail!("{DHCLIENT_SCRIPT} missing (package isc-dhcp-client)");
        }
        let mut c = self.ns.exec_cmd("dhclient");
        c.arg("-4").args(extra);
        c.arg("-pf").arg(self.dhclient_pidfile());
        c.arg("-lf").arg(self.dhclient_leasefile());
        c.args(["-sf", DHCLIENT_SCRIPT, &self.ifname]);
        Ok(c)
    }

    /// `dhclient -4 -v -1 -pf .. -lf .. -sf /sbin/dhclient-script IF`. On
    /// success dhclient stays in the background (in the namespace) to renew.
    pub fn dhclient(&self) -> Result<Lease> {
        let log = self.log_path("dhclient");
        let st = util::run_logged(&mut self.dhclient_cmd(&["-v", "-1"])?, CLIENT_TIMEOUT, &log)?;
        if !st.success() {
            bail!(
                "dhclient on {} failed ({st}); log:\n{}",
                self.ifname,
                tail(&log, 40)
            );
        }
        self.lease_after(ClientKind::Dhclient, &log)
    }

    /// `dhclient -r`: send RELEASE, stop the background dhclient, deconfigure.
    pub fn dhclient_release(&self) -> Result<()> {
        let log = self.log_path("dhclient");
        let st = util::run_logged(
            &mut self.dhclient_cmd(&["-v", "-r"])?,
            Duration::from_secs(20),
            &log,
        )?;
        if !st.success() {
            bail!(
                "dhclient -r on {} failed ({st}); log:\n{}",
                self.ifname,
                tail(&log, 40)
            );
        }
        Ok(())
    }

    /// `dhclient -x`: stop the background dhclient WITHOUT releasing. With
    /// `forget`, also delete its lease file and the interface's addresses, so
    /// the next [`Client::dhclient`] starts with a fresh DISCOVER.
    pub fn dhclient_stop(&self, forget: bool) -> Result<()> {
        let log = self.log_path("dhclient");
        let st = util::run_logged(
            &mut self.dhclient_cmd(&["-v", "-x"])?,
            Duration::from_secs(20),
            &log,
        )?;
        if !st.success() {
            bail!(
                "dhclient -x on {} failed ({st}); log:\n{}",
                self.ifname,
                tail(&log, 40)
            );
        }
        if forget {
            let _ = std::fs::remove_file(self.dhclient_leasefile());
            self.flush()?;
        }
        Ok(())
    }

    /// `dhcpcd -4 -1 -L -t 30 IF`: oneshot (exits once bound, leaving the
    /// configuration in place), IPv4 only, no IPv4LL fallback, stock
    /// /etc/dhcpcd.conf and hooks. Privilege separation stays on (the
    /// `dhcpcd` user exists on Debian); pid/lease files are per interface and
    /// removed when the [`Client`] drops.
    pub fn dhcpcd(&self) -> Result<Lease> {
        require_tool("dhcpcd")?;
        let log = self.log_path("dhcpcd");
        let mut c = self.ns.exec_cmd("dhcpcd");
        c.args(["-4", "-1", "-L", "-t", "30", &self.ifname]);
        let st = util::run_logged(&mut c, CLIENT_TIMEOUT, &log)?;
        if !st.success() {
            bail!(
                "dhcpcd on {} failed ({st}); log:\n{}",
                self.ifname,
                tail(&log, 40)
            );
        }
        self.lease_after(ClientKind::Dhcpcd, &log)
    }

    /// `udhcpc -i IF -q -n -t 10 -T 1 -s /etc/udhcpc/default.script`
    /// (busybox; quits once bound, fails after 10 unanswered DISCOVERs).
    pub fn udhcpc(&self) -> Result<Lease> {
        require_tool("udhcpc")?;
        let script = udhcpc_script()?;
        let log = self.log_path("udhcpc");
        let mut c = self.ns.exec_cmd("udhcpc");
        c.args([
            "-i",
            &self.ifname,
            "-q",
            "-n",
            "-t",
            "10",
            "-T",
            "1",
            "-s",
            script,
        ]);
        let st = util::run_logged(&mut c, CLIENT_TIMEOUT, &log)?;
        if !st.success() {
            bail!(
                "udhcpc on {} failed ({st}); log:\n{}",
                self.ifname,
                tail(&log, 40)
            );
        }
        self.lease_after(ClientKind::Udhcpc, &log)
    }

    fn lease_after(&self, kind: ClientKind, log: &Path) -> Result<Lease> {
        let addrs = self.addrs()?;
        let addr = addrs
            .iter()
            .copied()
            .find(|a| !a.ip.is_link_local())
            .ok_or_else(|| {
                anyhow!(
                    "{kind} on {} exited successfully but the interface has no IPv4 address \
                     ({addrs:?}); log:\n{}",
                    self.ifname,
                    tail(log, 40)
                )
            })?;
        Ok(Lease { kind, addr })
    }

    /// IPv4 addresses of the client interface.
    pub fn addrs(&self) -> Result<Vec<Addr>> {
        netinfo::addrs(&self.ns, &self.ifname)
    }

    /// IPv4 routes (main table) in the client namespace.
    pub fn routes(&self) -> Result<Vec<Route>> {
        netinfo::routes(&self.ns, &[])
    }

    /// The default route, if any.
    pub fn default_route(&self) -> Result<Option<Route>> {
        Ok(self.routes()?.into_iter().find(Route::is_default))
    }

    /// Plain `ip -4 addr` + `ip -4 route` of the client (for printing).
    pub fn describe(&self) -> String {
        let a = self
            .ns
            .ip(&["-4", "-br", "addr", "show", "dev", &self.ifname])
            .unwrap_or_default();
        let r = self.ns.ip(&["-4", "route", "show"]).unwrap_or_default();
        format!(
            "{} ({}, {}):\n  {}\n  {}",
            self.ns.name(),
            self.ifname,
            self.mac,
            a.trim(),
            r.trim().replace('\n', "\n  ")
        )
    }

    /// Remove every IPv4 address and route from the client interface.
    pub fn flush(&self) -> Result<()> {
        self.ns.ip(&["-4", "addr", "flush", "dev", &self.ifname])?;
        // Route flush fails harmlessly when nothing is left.
        let _ = self.ns.ip(&["-4", "route", "flush", "dev", &self.ifname]);
        Ok(())
    }

    /// TCP connect from this client to `ip:port` (a [`crate::TcpServer`]);
    /// returns the source address the server saw.
    pub fn tcp_check(&self, ip: Ipv4Addr, port: u16) -> Result<Ipv4Addr> {
        let banner = self.ns.tcp_connect(ip, port)?;
        let peer = banner
            .strip_prefix("isodhcp-lab ")
            .ok_or_else(|| anyhow!("unexpected banner {banner:?} from {ip}:{port}"))?;
        peer.parse().with_context(|| format!("banner {banner:?}"))
    }

    /// Contents of this client's namespace-private resolv.conf.
    pub fn resolv_conf(&self) -> String {
        std::fs::read_to_string(self.ns.resolv_conf()).unwrap_or_default()
    }
}
