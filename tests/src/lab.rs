//! The lab topology: server namespace, switch namespace with a bridge, N client
//! namespaces.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Result, bail};

use crate::netinfo::{self, Route};
use crate::netns::{Netns, TcpServer};
use crate::util::{self, TempDir, unique_suffix, wait_until};

/// Name of the server's interface in the server namespace.
pub const SERVER_IF: &str = "srv0";
/// Server address used by every lab.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// Pool the tests hand to the daemon.
pub const POOL: &str = "198.18.0.0/24";
/// DNS server address the tests tell the daemon to announce (nothing listens).
pub const DNS_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 53);
/// An address on the server namespace's `lo`, outside every client subnet:
/// reaching it from a client needs a working default route.
pub const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

/// How the server holds its address on `srv0`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerAddr {
    /// `198.18.0.1/24` (connected route to the pool).
    Numbered,
    /// `198.18.0.1/32` (no connected route; only the daemon's host routes).
    Unnumbered,
}

/// Lab parameters.
#[derive(Debug, Clone)]
pub struct LabConfig {
    /// Short test tag, part of every namespace name (`[a-z0-9]`, ≤ 12 chars).
    pub tag: String,
    pub clients: usize,
    pub server: ServerAddr,
}

impl LabConfig {
    pub fn new(tag: &str, clients: usize) -> LabConfig {
        LabConfig {
            tag: tag.into(),
            clients,
            server: ServerAddr::Numbered,
        }
    }
    pub fn unnumbered(mut self) -> LabConfig {
        self.server = ServerAddr::Unnumbered;
        self
    }
}

/// A client namespace with one interface on the bridge.
pub struct Client {
    pub index: usize,
    /// Interface name inside the client namespace (unique across the host,
    /// since dhcpcd keys its pid/lease files by interface name).
    pub ifname: String,
    /// MAC address of `ifname` (locally administered, unique per lab).
    pub mac: String,
    /// Folder for this client's pid/lease/log files.
    pub dir: PathBuf,
    pub ns: Netns,
}

impl Drop for Client {
    fn drop(&mut self) {
        // Files dhcpcd keeps outside our temp folder, keyed by our unique
        // interface name.
        let ifn = &self.ifname;
        let _ = std::fs::remove_file(format!("/var/lib/dhcpcd/{ifn}.lease"));
        for f in [
            format!("/run/dhcpcd/{ifn}-4.pid"),
            format!("/run/dhcpcd/{ifn}.pid"),
            format!("/run/dhcpcd/{ifn}-4.sock"),
            format!("/run/dhcpcd/{ifn}.sock"),
            format!("/run/dhcpcd/{ifn}-4.unpriv.sock"),
            format!("/run/dhcpcd/{ifn}.unpriv.sock"),
        ] {
            let _ = std::fs::remove_file(f);
        }
        if let Ok(rd) = std::fs::read_dir("/run/dhcpcd/hook-state") {
            for d in rd.flatten().take(64) {
                if let Ok(files) = std::fs::read_dir(d.path()) {
                    for f in files.flatten().take(1024) {
                        let name = f.file_name().to_string_lossy().into_owned();
                        if name == *ifn || name.starts_with(&format!("{ifn}.")) {
                            let _ = std::fs::remove_file(f.path());
                        }
                    }
                }
            }
        }
        // self.ns drops after this body: kills dhclient/dhcpcd left inside.
    }
}

/// Snapshot of host state the lab must never change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSnapshot {
    pub resolv_conf: Option<Vec<u8>>,
    pub hostname: String,
}

impl HostSnapshot {
    pub fn take() -> HostSnapshot {
        HostSnapshot {
            resolv_conf: std::fs::read("/etc/resolv.conf").ok(),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default(),
        }
    }
    /// Error if the host's /etc/resolv.conf or host name changed.
    pub fn check_unchanged(&self) -> Result<()> {
        let now = HostSnapshot::take();
        if now.resolv_conf != self.resolv_conf {
            bail!(
                "host /etc/resolv.conf CHANGED during the test: before {:?}, after {:?}",
                self.resolv_conf.as_deref().map(String::from_utf8_lossy),
                now.resolv_conf.as_deref().map(String::from_utf8_lossy)
            );
        }
        if now.hostname != self.hostname {
            bail!(
                "host name CHANGED during the test: {:?} -> {:?}",
                self.hostname,
                now.hostname
            );
        }
        Ok(())
    }
}

/// MAC bytes unique per lab: derived from the pid and the lab id (FNV-1a
/// of the id).
fn mac_seed(id: &str) -> u32 {
    let mut h: u32 = 2166136261;
    for b in id.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16777619);
    }
    h
}

/// The whole topology. Drop order: clients, server, switch, temp folder.
pub struct Lab {
    pub clients: Vec<Client>,
    pub server: Netns,
    pub switch: Netns,
    pub config: LabConfig,
    /// Unique id of this lab (part of names).
    pub id: String,
    host: HostSnapshot,
    dir: TempDir,
}

impl Lab {
    /// Numbered server (`198.18.0.1/24`) and `clients` client namespaces.
    pub fn new(tag: &str, clients: usize) -> Result<Lab> {
        Lab::build(LabConfig::new(tag, clients))
    }

    /// Builds the topology of `config`: the switch with its bridge, the
    /// server, then every client; returns once every endpoint has carrier.
    pub fn build(config: LabConfig) -> Result<Lab> {
        util::preflight()?;
        Lab::check_config(&config)?;
        let tag = &config.tag;
        let host = HostSnapshot::take();
        let id = unique_suffix();
        let dir = TempDir::new(&format!("{tag}-{id}"))?;
        let prefix = format!("isd-{tag}-{id}");

        let switch = Netns::create(&format!("{prefix}-sw"))?;
        let server = Netns::create(&format!("{prefix}-srv"))?;
        Lab::wire_server(&switch, &server, &config)?;

        let mut lab = Lab {
            clients: Vec::new(),
            server,
            switch,
            config: config.clone(),
            id: id.clone(),
            host,
            dir,
        };
        let seed = mac_seed(&id);
        for i in 0..config.clients {
            lab.add_client(&prefix, i, seed)?;
        }
        // Readiness: every endpoint has carrier.
        wait_link_up(&lab.server, SERVER_IF)?;
        for c in &lab.clients {
            wait_link_up(&c.ns, &c.ifname)?;
        }
        Ok(lab)
    }

    /// The tag names namespaces and interfaces: 1..=12 of [a-z0-9]; at most
    /// 50 clients.
    fn check_config(config: &LabConfig) -> Result<()> {
        let tag = &config.tag;
        if tag.is_empty()
            || tag.len() > 12
            || !tag
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            bail!("lab tag must be 1..=12 chars of [a-z0-9], got {tag:?}");
        }
        if config.clients > 50 {
            bail!("at most 50 clients per lab");
        }
        Ok(())
    }

    /// The bridge `br0` in `switch`, and the server's port on it: `srv0`
    /// in `server` with the server MAC, the server address (/24 numbered,
    /// /32 unnumbered) and the upstream address on `lo`.
    fn wire_server(switch: &Netns, server: &Netns, config: &LabConfig) -> Result<()> {
        // Bridge in the switch namespace.
        switch.ip(&[
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        ])?;
        switch.ip(&["link", "set", "br0", "up"])?;
        // The switch only switches: where the host has br_netfilter loaded
        // (container engines load it), every bridged frame would also
        // traverse the host-style iptables hooks of this namespace, a cost
        // no real switch adds and that the sender's softirq pays.
        switch.run_ok(
            "sh",
            &[
                "-c",
                "for f in /proc/sys/net/bridge/bridge-nf-call-*; do [ -e \"$f\" ] && echo 0 > \"$f\"; done; true",
            ],
        )?;
        // Server port: veth created in the switch namespace, peer moved into
        // the server namespace at creation (root namespace never involved).
        switch.ip(&[
            "link",
            "add",
            "psrv",
            "type",
            "veth",
            "peer",
            "name",
            SERVER_IF,
            "netns",
            server.name(),
        ])?;
        switch.ip(&["link", "set", "psrv", "master", "br0", "up"])?;
        server.ip(&[
            "link",
            "set",
            SERVER_IF,
            "address",
            "02:1d:00:00:00:01",
            "up",
        ])?;
        let plen = match config.server {
            ServerAddr::Numbered => 24,
            ServerAddr::Unnumbered => 32,
        };
        server.ip(&[
            "addr",
            "add",
            &format!("{SERVER_IP}/{plen}"),
            "dev",
            SERVER_IF,
        ])?;
        server.ip(&["addr", "add", &format!("{UPSTREAM_IP}/32"), "dev", "lo"])?;
        Ok(())
    }

    /// Client `i`: namespace `<prefix>-c<i>`, its veth to port `p<i>` on
    /// the bridge, a MAC unique to this lab (from `seed`) and a folder.
    fn add_client(&mut self, prefix: &str, i: usize, seed: u32) -> Result<()> {
        let ns = Netns::create(&format!("{prefix}-c{i}"))?;
        let id = &self.id;
        let ifname = format!("i{id}c{i}");
        if ifname.len() > 15 {
            bail!("interface name {ifname} too long");
        }
        let port = format!("p{i}");
        self.switch.ip(&[
            "link",
            "add",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            &ifname,
            "netns",
            ns.name(),
        ])?;
        self.switch
            .ip(&["link", "set", &port, "master", "br0", "up"])?;
        let mac = format!(
            "02:1d:{:02x}:{:02x}:{:02x}:{:02x}",
            (seed >> 16) & 0xff,
            (seed >> 8) & 0xff,
            seed & 0xff,
            (i + 0x10) & 0xff
        );
        ns.ip(&["link", "set", &ifname, "address", &mac, "up"])?;
        let cdir = self.dir.path().join(format!("c{i}"));
        std::fs::create_dir_all(&cdir)?;
        self.clients.push(Client {
            index: i,
            ifname,
            mac,
            dir: cdir,
            ns,
        });
        Ok(())
    }

    /// Attaches the object's pass-through program (`isodhcp_pass`) in
    /// native mode to `port` of the switch. A veth delivers XDP_TX frames
    /// (the XDP OFFER responder's replies) only to a peer that runs an XDP
    /// program; a real NIC needs nothing of the kind. The attachment lives
    /// as long as the port (the lab's namespaces).
    pub fn pass_through_xdp(&self, port: &str) -> Result<()> {
        self.port_xdp(port, "isodhcp_pass")
    }

    /// [`Lab::pass_through_xdp`] with the benchmarks' sink: frames to the
    /// flood generator's MACs (first octet `isodhcp_common::LAB_FLOOD_OCTET`)
    /// are dropped at `port` instead of crossing the bridge to the
    /// generator's namespace (`isodhcp_lab_sink`).
    pub fn sink_xdp(&self, port: &str) -> Result<()> {
        self.port_xdp(port, "isodhcp_lab_sink")
    }

    /// Attaches `program` of the object in native mode to `port` of the
    /// switch.
    fn port_xdp(&self, port: &str, program: &str) -> Result<()> {
        let obj = crate::xdp_run::object_path();
        let pins = PathBuf::from(format!("/sys/fs/bpf/isodhcp-lab-{}-{port}", self.id));
        let obj_s = obj.display().to_string();
        let pins_s = pins.display().to_string();
        util::run_ok(
            util::tool_cmd("bpftool").args(["prog", "loadall", &obj_s, &pins_s, "type", "xdp"]),
            Duration::from_secs(30),
        )?;
        let prog = format!("{pins_s}/{program}");
        let attached = self.switch.run_ok(
            "bpftool",
            &["net", "attach", "xdpdrv", "pinned", &prog, "dev", port],
        );
        let _ = std::fs::remove_dir_all(&pins);
        attached.map(|_| ())
    }

    /// Folder for this lab's files (logs, lease files); removed on drop.
    /// Every daemon log of this lab (`isodhcp-<n>.log`, one per start), for
    /// failure messages.
    pub fn daemon_logs(&self) -> String {
        let mut s = String::new();
        for n in 0..1000 {
            let p = self.dir().join(format!("isodhcp-{n}.log"));
            let Ok(t) = std::fs::read_to_string(&p) else {
                break;
            };
            s.push_str(&format!("--- {} ---\n{t}\n", p.display()));
        }
        s
    }

    /// VLAN offload off on the switch's port towards the server. The bridge
    /// moves a frame's outer tag into packet metadata; with offload on, the
    /// tag would stay there and the server's XDP program would see the
    /// frame untagged. With it off the tags are back in the frame, as on a
    /// wire from a real switch.
    pub fn tags_on_the_wire(&self) -> Result<()> {
        self.switch
            .run_ok(
                "ethtool",
                &[
                    "-K",
                    "psrv",
                    "txvlan",
                    "off",
                    "tx-vlan-stag-hw-insert",
                    "off",
                ],
            )
            .map(drop)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn client(&self, i: usize) -> &Client {
        &self.clients[i]
    }

    pub fn server_ip(&self) -> Ipv4Addr {
        SERVER_IP
    }

    /// isodhcp's routes in the server namespace (`ip route show proto 108`).
    pub fn server_routes(&self) -> Result<Vec<Route>> {
        netinfo::isodhcp_routes(&self.server)
    }

    /// Wait until the server namespace has a proto-108 /32 route to `ip`.
    pub fn wait_server_route(&self, ip: Ipv4Addr, timeout: Duration) -> Result<Route> {
        wait_until(&format!("server route {ip}/32 proto 108"), timeout, || {
            Ok(self
                .server_routes()?
                .into_iter()
                .find(|r| r.host() == Some(ip)))
        })
    }

    /// Wait until the server namespace has no proto-108 route to `ip`.
    pub fn wait_no_server_route(&self, ip: Ipv4Addr, timeout: Duration) -> Result<()> {
        wait_until(
            &format!("server route {ip}/32 proto 108 to disappear"),
            timeout,
            || {
                let present = self.server_routes()?.iter().any(|r| r.host() == Some(ip));
                Ok((!present).then_some(()))
            },
        )
    }

    /// TCP listener on 0.0.0.0:`port` in the server namespace (answers on
    /// 198.18.0.1 and on [`UPSTREAM_IP`]).
    pub fn server_listen(&self, port: u16) -> Result<TcpServer> {
        self.server.tcp_listen(Ipv4Addr::UNSPECIFIED, port)
    }

    /// Host state taken when the lab was built.
    pub fn host_snapshot(&self) -> &HostSnapshot {
        &self.host
    }

    /// Error if the host's /etc/resolv.conf or host name changed since build.
    pub fn check_host_untouched(&self) -> Result<()> {
        self.host.check_unchanged()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Clients, server and switch namespaces drop after this body (their
        // guards kill what runs inside). The daemon's bpffs folder, if any:
        let pins = self.pin_dir();
        if pins.exists() {
            if let Err(e) = std::fs::remove_dir_all(&pins) {
                eprintln!("isodhcp-tests: removing {}: {e}", pins.display());
            }
        }
    }
}

fn wait_link_up(ns: &Netns, dev: &str) -> Result<()> {
    wait_until(
        &format!("{dev} carrier in {}", ns.name()),
        Duration::from_secs(5),
        || {
            let v = ns.ip_json(&["link", "show", "dev", dev])?;
            let up = v
                .as_array()
                .and_then(|a| a.first())
                .and_then(|l| l.get("flags"))
                .and_then(|f| f.as_array())
                .is_some_and(|f| f.iter().any(|x| x.as_str() == Some("LOWER_UP")));
            Ok(up.then_some(()))
        },
    )
}
