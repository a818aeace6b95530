//! The control-plane test world (design.md §Control): a daemon in a namespace lab
//! holding leases of every mode, the diagnostics client runner and the
//! parsers the `control_*` suites share.
#![allow(clippy::missing_panics_doc)]

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::crafted::{self, Dhcp};
use crate::daemon::Daemon;
use crate::nftutil::TestSets;
use crate::util::{self, CmdOutput};
use crate::{DaemonConfig, Lab, XdpMode, isodhcp_bin, preflight, wait_until};
use isodhcp::wire::Mac;
use isodhcp::wire::options::{self};
use serde_json::Value;

pub const WAIT: Duration = Duration::from_secs(10);
pub const CLI_TIMEOUT: Duration = Duration::from_secs(15);

pub fn ip(h: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, h)
}

// ---------------------------------------------------------------------------
// The diagnostics client
// ---------------------------------------------------------------------------

/// `isodhcp --socket SOCK ARGS...` from the root namespace.
pub fn cli(sock: &Path, args: &[&str]) -> CmdOutput {
    let bin = isodhcp_bin().expect("isodhcp binary");
    util::run(
        Command::new(bin).arg("--socket").arg(sock).args(args),
        CLI_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("isodhcp {args:?}: {e:#}"))
}

pub fn code(o: &CmdOutput) -> Option<i32> {
    o.status.code()
}

pub fn show_out(o: &CmdOutput) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        o.stdout,
        o.stderr
    )
}

/// Text output of a diagnostics flag that must succeed (exit 0).
pub fn cli_text(sock: &Path, args: &[&str]) -> String {
    let o = cli(sock, args);
    assert_eq!(code(&o), Some(0), "isodhcp {args:?}: {}", show_out(&o));
    assert!(
        !o.stdout.trim().is_empty(),
        "isodhcp {args:?} printed nothing"
    );
    o.stdout
}

/// `--json` output of a diagnostics flag that must succeed, parsed.
pub fn cli_json(sock: &Path, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let o = cli(sock, &a);
    assert_eq!(code(&o), Some(0), "isodhcp {a:?}: {}", show_out(&o));
    let v: Value = serde_json::from_str(&o.stdout)
        .unwrap_or_else(|e| panic!("isodhcp {a:?}: output is not JSON ({e}): {}", o.stdout));
    assert_eq!(v["version"], 1, "isodhcp {a:?}: no protocol version: {v}");
    assert_eq!(v["status"], "ok", "isodhcp {a:?}: {v}");
    v
}

/// `--verify` (text and JSON): (exit code, text output, JSON answer). The
/// exit codes of both forms must agree.
pub fn verify(sock: &Path) -> (i32, String, Value) {
    let t = cli(sock, &["--verify"]);
    let j = cli(sock, &["--verify", "--json"]);
    let tc = code(&t).unwrap_or(-1);
    assert_eq!(
        Some(tc),
        code(&j),
        "--verify and --verify --json disagree:\n{}\n{}",
        show_out(&t),
        show_out(&j)
    );
    let v: Value = serde_json::from_str(&j.stdout)
        .unwrap_or_else(|e| panic!("--verify --json is not JSON ({e}): {}", show_out(&j)));
    (tc, t.stdout, v)
}

pub fn findings(v: &Value) -> Vec<(String, String)> {
    v["findings"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            (
                f["severity"].as_str().unwrap_or("?").to_string(),
                f["what"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect()
}

/// Poll `--verify --json` until it exits `want` (e.g. after a SIGUSR1
/// reconcile), then check text and JSON agree on the settled state.
pub fn wait_verify(lab: &Lab, sock: &Path, want: i32, why: &str) -> (String, Value) {
    let mut last = String::new();
    let r = wait_until(&format!("--verify to exit {want} ({why})"), WAIT, || {
        let o = cli(sock, &["--verify", "--json"]);
        last = show_out(&o);
        Ok((code(&o) == Some(want)).then_some(()))
    });
    if let Err(e) = r {
        panic!("{e:#}; last:\n{last}\n{}", lab.daemon_logs());
    }
    let (c, text, v) = verify(sock);
    assert_eq!(
        c, want,
        "--verify changed again after settling ({why}):\n{text}\n{v}"
    );
    (text, v)
}

// ---------------------------------------------------------------------------
// A daemon with leases of every mode
// ---------------------------------------------------------------------------

/// One client the world knows about.
#[derive(Debug, Clone)]
pub struct Known {
    pub mac: String,
    pub ip: Ipv4Addr,
    pub mode: &'static str,
    pub hostname: Option<String>,
    pub masq: bool,
    pub is_static: bool,
}

pub const M_ISO: Mac = Mac([0x02, 0x1e, 0, 0, 0xc0, 0x01]);
pub const M_COMPAT: Mac = Mac([0x02, 0x1e, 0, 0, 0xc0, 0x02]);
pub const M_PG: Mac = Mac([0x02, 0x1e, 0, 0, 0xc0, 0x03]);
pub const M_STATIC: Mac = Mac([0x02, 0x1e, 0, 0, 0xc0, 0x04]);
pub const M_MASQ: Mac = Mac([0x02, 0x1e, 0, 0, 0xc0, 0x05]);
pub const STATIC_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 10);

/// Field order matters: the daemon stops before the lab goes away.
pub struct World {
    pub daemon: Daemon,
    pub sets: TestSets,
    pub sock: PathBuf,
    /// `--xdp` the daemon runs with (`ISODHCP_XDP`, default off).
    pub xdp: XdpMode,
    pub clients: Vec<Known>,
    /// Crafted-frame port on client 1.
    pub port: Dhcp,
    pub lab: Lab,
}

impl World {
    pub fn client(&self, m: Mac) -> &Known {
        let s = m.to_string();
        self.clients
            .iter()
            .find(|k| k.mac == s)
            .expect("known client")
    }
    pub fn dhclient(&self) -> &Known {
        &self.clients[0]
    }
    pub fn logs(&self) -> String {
        self.lab.daemon_logs()
    }
}

pub fn hostname_opt(h: &str) -> (u8, Vec<u8>) {
    (options::HOSTNAME, h.as_bytes().to_vec())
}

/// Lab with two client namespaces; daemon with the operator's eight named
/// sets, `--compat-mac`, `--playground-size 6 --playground-mac`, a static
/// `printer` at 198.18.0.10 and `--masquerade-mac`. Client 0 gets an
/// isolated lease from dhclient; crafted DORA from client 1's port gives an
/// isolated (`alice-phone`), a compat (`compat-cam`), a playground
/// (`play-tv`), a masqueraded (`masq-laptop`) lease and the static one.
pub fn world(tag: &str) -> World {
    world_with(tag, |_| {})
}

/// [`world`] with `tweak` applied to the daemon's configuration before the
/// start.
pub fn world_with(tag: &str, tweak: impl FnOnce(&mut DaemonConfig)) -> World {
    preflight().expect("preflight");
    let lab = Lab::new(tag, 2).expect("lab");
    let sets = TestSets::create(&lab).expect("named sets");
    let mut cfg = crafted::config(&lab);
    cfg.extra.extend(sets.daemon_args());
    for a in [
        "--compat-mac".to_string(),
        M_COMPAT.to_string(),
        "--playground-size".into(),
        "6".into(),
        "--playground-mac".into(),
        M_PG.to_string(),
        "--static".into(),
        format!("{M_STATIC}={STATIC_IP},printer"),
        "--masquerade-mac".into(),
        M_MASQ.to_string(),
    ] {
        cfg.extra.push(a);
    }
    tweak(&mut cfg);
    let daemon = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let sock = wait_control_socket(&lab, &cfg);
    let (clients, port) = lease_clients(&lab);
    let w = World {
        daemon,
        sets,
        sock,
        xdp: cfg.xdp,
        clients,
        port,
        lab,
    };
    check_world(w)
}

/// The daemon's control socket (`--socket`, default in $STATE_DIRECTORY,
/// the lab folder), once the file exists.
fn wait_control_socket(lab: &Lab, cfg: &DaemonConfig) -> PathBuf {
    let sock = match cfg.extra.iter().position(|a| a == "--socket") {
        Some(i) => PathBuf::from(&cfg.extra[i + 1]),
        None => lab.dir().join("isodhcp_srv0.sock"),
    };
    wait_until("control socket file", WAIT, || {
        Ok(sock.exists().then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    sock
}

/// The world's leases: dhclient on client 0, then crafted DORA from client
/// 1's port for each mode and the static client; returns the clients and
/// the port.
fn lease_clients(lab: &Lab) -> (Vec<Known>, Dhcp) {
    let mut clients = Vec::new();
    let c0 = lab.client(0);
    let l = c0
        .dhclient()
        .unwrap_or_else(|e| panic!("dhclient: {e:#}\n{}", lab.daemon_logs()));
    assert_eq!(l.addr.prefixlen, 32, "dhclient lease {}", l.addr);
    clients.push(Known {
        mac: c0.mac.clone(),
        ip: l.ip(),
        mode: "standard",
        hostname: None, // filled in from the daemon's answer below
        masq: false,
        is_static: false,
    });
    let port = Dhcp::open(lab.client(1)).expect("raw port");
    for (m, host, mode, masq) in [
        (M_ISO, "alice-phone", "standard", false),
        (M_COMPAT, "compat-cam", "compat", false),
        (M_PG, "play-tv", "playground", false),
        (M_MASQ, "masq-laptop", "standard", true),
    ] {
        let (_, ack) = port
            .dora(m, &[hostname_opt(host)])
            .unwrap_or_else(|e| panic!("DORA {m} ({mode}): {e:#}\n{}", lab.daemon_logs()));
        clients.push(Known {
            mac: m.to_string(),
            ip: ack.msg.yiaddr,
            mode,
            hostname: Some(host.into()),
            masq,
            is_static: false,
        });
    }
    // The static client asks too (its configured hostname must win).
    let (_, ack) = port
        .dora(M_STATIC, &[hostname_opt("not-the-static-name")])
        .unwrap_or_else(|e| panic!("DORA static: {e:#}\n{}", lab.daemon_logs()));
    assert_eq!(
        ack.msg.yiaddr, STATIC_IP,
        "static client must get its address"
    );
    clients.push(Known {
        mac: M_STATIC.to_string(),
        ip: STATIC_IP,
        mode: "standard",
        hostname: Some("printer".into()),
        masq: false,
        is_static: true,
    });
    (clients, port)
}

/// Facts the suites rely on (design.md §Compat mode, §Playground mode),
/// then dhclient's hostname as the daemon saw it filled in.
fn check_world(mut w: World) -> World {
    assert_eq!(
        w.client(M_COMPAT).ip,
        ip(6),
        "compat client: lowest free /30 is 198.18.0.4/30"
    );
    let pg = w.client(M_PG).ip;
    assert!(
        (250..=254).contains(&pg.octets()[3]),
        "playground client {pg} must be in 198.18.0.248/29 (gateway .249)"
    );
    // dhclient's hostname (Debian sends the host name) as the daemon saw it.
    let d = cli_json(&w.sock, &["--show", &w.dhclient().mac.clone()]);
    let h = d["client"]["hostname"].as_str().map(String::from);
    w.clients[0].hostname = h;
    w
}

// ---------------------------------------------------------------------------
// --status, --config, --dump, --show
// ---------------------------------------------------------------------------

pub fn parse_range(r: &str) -> (u32, u32) {
    let (a, b) = r.split_once('-').unwrap_or((r, r));
    let a: Ipv4Addr = a
        .parse()
        .unwrap_or_else(|_| panic!("free range {r:?}: bad start"));
    let b: Ipv4Addr = b
        .parse()
        .unwrap_or_else(|_| panic!("free range {r:?}: bad end"));
    assert!(
        u32::from(a) <= u32::from(b),
        "free range {r:?} runs backwards"
    );
    (u32::from(a), u32::from(b))
}
