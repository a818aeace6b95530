//! Firewall, reconcile and durability helpers: nftables inspection inside a
//! namespace, the operator's named sets, an "outside" namespace routed via
//! the server, TCP/UDP probes with deadlines, and a crafted-frame DHCP client
//! (AF_PACKET in a client namespace, frames built with `isodhcp::wire`).
//!
//! Same rules as the rest of the lab: namespaces only, 198.18.0.0/15, every
//! wait bounded, RAII cleanup (the outside namespace and every socket are
//! dropped with their guards; nft state lives in the server namespace and
//! goes away with it).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use crate::lab::{Lab, SERVER_IF};
use crate::netns::Netns;
use crate::util;

// ---------------------------------------------------------------------------
// nft
// ---------------------------------------------------------------------------

/// `nft ARGS...` inside `ns`, must succeed; returns stdout.
pub fn nft(ns: &Netns, args: &[&str]) -> Result<String> {
    util::find_tool("nft")
        .ok_or_else(|| anyhow!("required tool `nft` not found (Debian package `nftables`)"))?;
    ns.run_ok("nft", args)
}

/// `nft -f FILE` inside `ns` with `script` (written to `dir`).
pub fn nft_script(ns: &Netns, dir: &Path, script: &str) -> Result<()> {
    let p = dir.join(format!("nft-{}.nft", util::unique_suffix()));
    std::fs::write(&p, script)?;
    let r = nft(ns, &["-f", p.to_str().context("path not UTF-8")?]);
    let _ = std::fs::remove_file(&p);
    r.map(|_| ())
        .with_context(|| format!("nft script:\n{script}"))
}

/// `nft -j ARGS...` parsed; returns the `nftables` array.
pub fn nft_json(ns: &Netns, args: &[&str]) -> Result<Vec<Value>> {
    let mut a = vec!["-j"];
    a.extend_from_slice(args);
    let out = nft(ns, &a)?;
    let v: Value = serde_json::from_str(&out).with_context(|| format!("nft JSON: {out}"))?;
    Ok(v.get("nftables")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// Elements of a named set ("family table name"), as text: `198.18.0.7` for
/// addresses, `198.18.0.4/30` for prefixes, `a-b` for ranges that are not
/// prefixes.
pub fn set_elements(ns: &Netns, set: &str) -> Result<BTreeSet<String>> {
    let parts: Vec<&str> = set.split_whitespace().collect();
    if parts.len() != 3 {
        bail!("set reference {set:?} is not \"family table name\"");
    }
    let items = nft_json(ns, &["list", "set", parts[0], parts[1], parts[2]])?;
    let mut out = BTreeSet::new();
    for item in items {
        let Some(elems) = item.pointer("/set/elem").and_then(Value::as_array) else {
            continue;
        };
        for e in elems {
            let e = e.pointer("/elem/val").unwrap_or(e);
            if let Some(s) = e.as_str() {
                out.insert(s.to_string());
            } else if let (Some(a), Some(l)) = (
                e.pointer("/prefix/addr").and_then(Value::as_str),
                e.pointer("/prefix/len").and_then(Value::as_u64),
            ) {
                out.insert(format!("{a}/{l}"));
            } else if let (Some(lo), Some(hi)) = (
                e.pointer("/range/0").and_then(Value::as_str),
                e.pointer("/range/1").and_then(Value::as_str),
            ) {
                out.insert(format!("{lo}-{hi}"));
            } else {
                out.insert(e.to_string());
            }
        }
    }
    Ok(out)
}

/// `nft OP element inet filter SET { ELEM }` (OP `add` or `delete`): change
/// one element of a test named set by hand.
pub fn set_element(ns: &Netns, op: &str, set: &str, elem: &str) -> Result<String> {
    nft(
        ns,
        &[
            op,
            "element",
            "inet",
            "filter",
            set,
            &format!("{{ {elem} }}"),
        ],
    )
}

/// One rule of isodhcp's postrouting chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NatRule {
    pub handle: u64,
    pub comment: Option<String>,
    /// `ip daddr X` match.
    pub daddr: Option<Ipv4Addr>,
    /// `snat to X`.
    pub snat_to: Option<Ipv4Addr>,
    /// Rule as JSON (for messages).
    pub raw: String,
}

/// Name of isodhcp's private table for `iface` (sanitised to `[A-Za-z0-9_]`).
pub fn private_table(iface: &str) -> String {
    let s: String = iface
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("isodhcp_{s}")
}

/// Rules of `chain` in `ip <table>` with handles (empty if the chain is missing).
pub fn chain_rules(ns: &Netns, table: &str, chain: &str) -> Result<Vec<Value>> {
    let items = nft_json(ns, &["-a", "list", "chain", "ip", table, chain])?;
    Ok(items
        .into_iter()
        .filter_map(|i| i.get("rule").cloned())
        .collect())
}

/// The rules of isodhcp's postrouting chain (`ip isodhcp_srv0 postrouting`).
pub fn nat_rules(ns: &Netns) -> Result<Vec<NatRule>> {
    let rules = chain_rules(ns, &private_table(SERVER_IF), "postrouting")?;
    Ok(rules
        .into_iter()
        .map(|r| {
            let mut daddr = None;
            let mut snat_to = None;
            for x in r
                .get("expr")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if x.pointer("/match/left/payload/field")
                    .and_then(Value::as_str)
                    == Some("daddr")
                    && x.pointer("/match/op").and_then(Value::as_str) == Some("==")
                {
                    daddr = x
                        .pointer("/match/right")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok());
                }
                if let Some(a) = x.pointer("/snat/addr").and_then(Value::as_str) {
                    snat_to = a.parse().ok();
                }
            }
            NatRule {
                handle: r.get("handle").and_then(Value::as_u64).unwrap_or(0),
                comment: r.get("comment").and_then(Value::as_str).map(String::from),
                daddr,
                snat_to,
                raw: r.to_string(),
            }
        })
        .collect())
}

/// SNAT rules whose comment is `isodhcp <mac>` (MAC compared case-insensitively).
pub fn snat_rules_for(ns: &Netns, mac: &str) -> Result<Vec<NatRule>> {
    let want = format!("isodhcp {}", mac.to_ascii_lowercase());
    Ok(nat_rules(ns)?
        .into_iter()
        .filter(|r| {
            r.comment
                .as_deref()
                .is_some_and(|c| c.to_ascii_lowercase() == want)
        })
        .collect())
}

/// The operator's named sets, created by the test in `table inet filter`
/// of the server namespace (isodhcp never creates sets, design.md §Firewall).
#[derive(Debug, Clone)]
pub struct TestSets {
    pub family: &'static str,
    pub table: &'static str,
}

/// (daemon option, set name, interval?) of every named set isodhcp knows.
pub const SET_OPTIONS: &[(&str, &str, bool)] = &[
    ("--nft-set-isolated", "iso", false),
    ("--nft-set-compat", "compat", false),
    ("--nft-set-gateway", "gw", false),
    ("--nft-set-network", "net", false),
    ("--nft-set-broadcast", "bc", false),
    ("--nft-set-subnet", "subs", true),
    ("--nft-set-playground", "pg", false),
    ("--nft-set-playground-subnet", "pgsub", true),
];

impl TestSets {
    /// `nft add table inet filter` and the eight sets (`subs` and `pgsub`
    /// interval sets) in the server namespace.
    pub fn create(lab: &Lab) -> Result<TestSets> {
        let mut s = String::from("add table inet filter\n");
        for (_, name, interval) in SET_OPTIONS {
            let flags = if *interval { " flags interval;" } else { "" };
            s += &format!("add set inet filter {name} {{ type ipv4_addr;{flags} }}\n");
        }
        nft_script(&lab.server, lab.dir(), &s)?;
        Ok(TestSets {
            family: "inet",
            table: "filter",
        })
    }

    /// `"inet filter NAME"`.
    pub fn set(&self, name: &str) -> String {
        format!("{} {} {name}", self.family, self.table)
    }

    /// `--nft-set-* "inet filter NAME"` for every set.
    pub fn daemon_args(&self) -> Vec<String> {
        let mut a = Vec::new();
        for (opt, name, _) in SET_OPTIONS {
            a.push(opt.to_string());
            a.push(self.set(name));
        }
        a
    }

    /// Elements of every set, by short name.
    pub fn snapshot(&self, ns: &Netns) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let mut m = BTreeMap::new();
        for (_, name, _) in SET_OPTIONS {
            m.insert(name.to_string(), set_elements(ns, &self.set(name))?);
        }
        Ok(m)
    }
}

/// Expected contents of the eight sets, by short name (all present, maybe empty).
pub fn expected_sets(pairs: &[(&str, &str)]) -> BTreeMap<String, BTreeSet<String>> {
    let mut m: BTreeMap<String, BTreeSet<String>> = SET_OPTIONS
        .iter()
        .map(|(_, n, _)| (n.to_string(), BTreeSet::new()))
        .collect();
    for (set, el) in pairs {
        m.entry(set.to_string()).or_default().insert(el.to_string());
    }
    m
}

// ---------------------------------------------------------------------------
// sysctl, outside namespace
// ---------------------------------------------------------------------------

/// `sysctl -n KEY` inside `ns`.
pub fn sysctl(ns: &Netns, key: &str) -> Result<String> {
    Ok(ns.run_ok("sysctl", &["-n", key])?.trim().to_string())
}

/// `sysctl -w KEY=VALUE` inside `ns`.
pub fn set_sysctl(ns: &Netns, key: &str, value: &str) -> Result<()> {
    ns.run_ok("sysctl", &["-q", "-w", &format!("{key}={value}")])?;
    Ok(())
}

/// Address of the server's end of the outside link.
pub const OUTSIDE_GW: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 1);
/// Address of the outside host (not in the pool, not the server).
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 1, 2);

/// A namespace "outside" the pool, linked to the server namespace by a veth
/// (`srvout` 198.19.1.1/30 in the server, `out0` 198.19.1.2/30 here, default
/// route via the server), with IPv4 forwarding on in the server namespace.
/// Dropping it deletes the namespace (and with it the veth pair).
pub struct Outside {
    pub ns: Netns,
}

impl Outside {
    pub fn attach(lab: &Lab) -> Result<Outside> {
        let ns = Netns::create(&format!("isd-{}-{}-out", lab.config.tag, lab.id))?;
        ns.ip(&[
            "link",
            "add",
            "out0",
            "type",
            "veth",
            "peer",
            "name",
            "srvout",
            "netns",
            lab.server.name(),
        ])?;
        ns.ip(&["addr", "add", &format!("{OUTSIDE_IP}/30"), "dev", "out0"])?;
        ns.ip(&["link", "set", "out0", "up"])?;
        lab.server
            .ip(&["addr", "add", &format!("{OUTSIDE_GW}/30"), "dev", "srvout"])?;
        lab.server.ip(&["link", "set", "srvout", "up"])?;
        ns.ip(&["route", "add", "default", "via", &OUTSIDE_GW.to_string()])
            .or_else(|_| {
                // The connected route appears with carrier; retry briefly.
                util::wait_until("outside default route", Duration::from_secs(5), || {
                    Ok(ns
                        .ip(&[
                            "route",
                            "replace",
                            "default",
                            "via",
                            &OUTSIDE_GW.to_string(),
                        ])
                        .ok())
                })
            })?;
        set_sysctl(&lab.server, "net.ipv4.ip_forward", "1")?;
        Ok(Outside { ns })
    }
}

// ---------------------------------------------------------------------------
// TCP / UDP probes
// ---------------------------------------------------------------------------

/// TCP connect from `ns` to `dst:port`, optionally binding the source address
/// first, with `timeout`; returns the banner a [`crate::TcpServer`] sent
/// (`isodhcp-lab <peer>`), parsed to the peer address the server saw.
pub fn tcp_peer(
    ns: &Netns,
    src: Option<Ipv4Addr>,
    dst: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> Result<Ipv4Addr> {
    let name = ns.name().to_string();
    let banner = ns.run_in(move || {
        let s = connect_from(src, SocketAddrV4::new(dst, port), timeout)
            .with_context(|| format!("TCP connect from {name} ({src:?}) to {dst}:{port}"))?;
        s.set_read_timeout(Some(timeout))?;
        let mut line = String::new();
        BufReader::new(s)
            .read_line(&mut line)
            .with_context(|| format!("reading banner from {dst}:{port} in {name}"))?;
        Ok(line.trim().to_string())
    })?;
    banner
        .strip_prefix("isodhcp-lab ")
        .ok_or_else(|| anyhow!("unexpected banner {banner:?}"))?
        .parse()
        .with_context(|| format!("banner {banner:?}"))
}

fn sockaddr_in(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}

/// Non-blocking connect with a deadline, optionally from a bound source.
fn connect_from(src: Option<Ipv4Addr>, dst: SocketAddrV4, timeout: Duration) -> Result<TcpStream> {
    // SAFETY: plain socket syscalls on a descriptor we own (wrapped in
    // OwnedFd right away); the sockaddr structures live on the stack for the
    // duration of each call.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        );
        if fd < 0 {
            bail!("socket: {}", std::io::Error::last_os_error());
        }
        let fd = OwnedFd::from_raw_fd(fd);
        if let Some(ip) = src {
            let sa = sockaddr_in(SocketAddrV4::new(ip, 0));
            if libc::bind(
                fd.as_raw_fd(),
                &sa as *const _ as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_in>() as u32,
            ) != 0
            {
                bail!("bind {ip}: {}", std::io::Error::last_os_error());
            }
        }
        let sa = sockaddr_in(dst);
        let rc = libc::connect(
            fd.as_raw_fd(),
            &sa as *const _ as *const libc::sockaddr,
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        );
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                bail!("connect: {e}");
            }
            let mut p = libc::pollfd {
                fd: fd.as_raw_fd(),
                events: libc::POLLOUT,
                revents: 0,
            };
            let n = libc::poll(&mut p, 1, timeout.as_millis() as i32);
            if n == 0 {
                bail!("connect timed out after {timeout:?}");
            }
            if n < 0 {
                bail!("poll: {}", std::io::Error::last_os_error());
            }
            let mut err: libc::c_int = 0;
            let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
            libc::getsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ERROR,
                &mut err as *mut _ as *mut libc::c_void,
                &mut len,
            );
            if err != 0 {
                bail!("connect: {}", std::io::Error::from_raw_os_error(err));
            }
        }
        let s = TcpStream::from(fd);
        s.set_nonblocking(false)?;
        Ok(s)
    }
}

/// Does a UDP datagram from `from` reach `to_ip:port` in `to`? Sends up to
/// five datagrams (200 ms apart) and waits for the first to arrive, at most
/// `timeout`. Returns the source address the receiver saw.
pub fn udp_reaches(
    from: &Netns,
    to: &Netns,
    to_ip: Ipv4Addr,
    port: u16,
    timeout: Duration,
) -> Result<Option<Ipv4Addr>> {
    let rx = to.run_in(move || {
        let s = UdpSocket::bind(SocketAddrV4::new(to_ip, port))
            .with_context(|| format!("bind UDP {to_ip}:{port}"))?;
        s.set_read_timeout(Some(Duration::from_millis(100)))?;
        Ok(s)
    })?;
    let tx = from.run_in(|| {
        let s = UdpSocket::bind(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))?;
        Ok(s)
    })?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 64];
    let mut sent = 0;
    let mut next_send = Instant::now();
    for _ in 0..(timeout.as_millis() / 50 + 2) {
        if sent < 5 && Instant::now() >= next_send {
            let _ = tx.send_to(b"isodhcp-lab-udp", SocketAddrV4::new(to_ip, port));
            sent += 1;
            next_send = Instant::now() + Duration::from_millis(200);
        }
        if let Ok((n, std::net::SocketAddr::V4(p))) = rx.recv_from(&mut buf) {
            if &buf[..n] == b"isodhcp-lab-udp" {
                return Ok(Some(*p.ip()));
            }
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    Ok(None)
}

// ---------------------------------------------------------------------------
// Crafted DHCP client
// ---------------------------------------------------------------------------

/// ICMP redirects received in `ns` (`Icmp: InRedirects` of `/proc/net/snmp`,
/// read from a thread inside the namespace).
pub fn icmp_in_redirects(ns: &Netns) -> Result<u64> {
    ns.run_in(|| {
        let t = std::fs::read_to_string("/proc/thread-self/net/snmp")?;
        let mut icmp = t.lines().filter(|l| l.starts_with("Icmp:"));
        let (names, values) = (
            icmp.next().context("no Icmp header")?,
            icmp.next().context("no Icmp values")?,
        );
        let i = names
            .split_whitespace()
            .position(|n| n == "InRedirects")
            .context("no InRedirects")?;
        values
            .split_whitespace()
            .nth(i)
            .context("short Icmp line")?
            .parse()
            .context("InRedirects value")
    })
}

// The probe client moved to `crate::probe`; re-exported for existing users.
pub use crate::probe::{DhcpProbe, Reply, Rng, journal_path, leases_on_disk, test_mac};
