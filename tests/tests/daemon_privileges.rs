//! design.md §Privileges / isodhcp(8) PRIVILEGES: the daemon runs as an unprivileged
//! user holding only CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF, CAP_PERFMON and
//! CAP_NET_BIND_SERVICE (as `dist/isodhcp@.service` sets them up, with
//! `AmbientCapabilities`), its lease file and control socket in a folder
//! owned by that user; a stock client gets a lease and the host route
//! exists. Without capabilities it must fail at start with exit 1 and a
//! clear message, never exit 0 or panic.
//!
//! The daemon is started as `nsenter --net=/run/netns/SRV -- setpriv
//! --reuid=65534 --regid=65534 --clear-groups --inh-caps=... --ambient-caps=...
//! -- isodhcp ...`.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test daemon_privileges -- --test-threads=1`

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use isodhcp_tests::crafted::{lease_entry, parse_mac};
use isodhcp_tests::daemon::{Daemon, READY_MARKER};
use isodhcp_tests::util::{self, CmdOutput, find_tool, tail};
use isodhcp_tests::{DaemonConfig, Lab, SERVER_IP, XdpMode, preflight};

const NOBODY: u32 = 65534;
const CAPS: &str = "+net_admin,+net_raw,+bpf,+perfmon,+net_bind_service";
const WAIT: Duration = Duration::from_secs(10);

/// A folder owned by nobody (0700) inside the lab folder, for the lease
/// file and the control socket (what `StateDirectory=` gives the unit).
fn state_dir(lab: &Lab) -> PathBuf {
    let d = lab.dir().join("state");
    std::fs::create_dir_all(&d).unwrap();
    std::os::unix::fs::chown(&d, Some(NOBODY), Some(NOBODY)).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// setpriv arguments in front of the daemon's own.
fn setpriv_args(caps: Option<&str>, bin: &Path, args: &[String]) -> Vec<String> {
    let mut a = vec![
        format!("--reuid={NOBODY}"),
        format!("--regid={NOBODY}"),
        "--clear-groups".to_string(),
    ];
    match caps {
        Some(c) => {
            a.push(format!("--inh-caps={c}"));
            a.push(format!("--ambient-caps={c}"));
        }
        None => {
            a.push("--inh-caps=-all".into());
        }
    }
    a.push("--".into());
    a.push(bin.display().to_string());
    a.extend(args.iter().cloned());
    a
}

fn config(lab: &Lab, state: &Path, xdp: XdpMode) -> DaemonConfig {
    let mut cfg = DaemonConfig::for_lab(lab).expect("daemon configuration");
    cfg.xdp = xdp;
    cfg.lease_file = state.join("leases.json");
    cfg.extra.extend([
        "--socket".to_string(),
        state.join("isodhcp_srv0.sock").display().to_string(),
    ]);
    cfg
}

/// Start the daemon under setpriv in the server namespace.
fn start_unprivileged(lab: &Lab, cfg: &DaemonConfig, caps: Option<&str>, log: &str) -> Daemon {
    let setpriv = find_tool("setpriv").expect("setpriv (util-linux) is required");
    let bin = std::fs::canonicalize(&cfg.bin).unwrap();
    Daemon::start(
        &lab.server,
        &setpriv,
        &setpriv_args(caps, &bin, &cfg.args()),
        lab.dir(),
        &lab.dir().join(log),
    )
    .expect("spawning setpriv isodhcp")
}

/// `Cap*` lines of /proc/PID/status (hex masks).
fn caps_of(pid: u32) -> (u32, u64, u64) {
    let st = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |k: &str| {
        st.lines()
            .find_map(|l| l.strip_prefix(k))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap_or(0))
            .unwrap_or(0)
    };
    let uid = st
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(u32::MAX);
    (uid, field("CapEff:"), field("CapBnd:"))
}

const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
const CAP_NET_ADMIN: u64 = 1 << 12;
const CAP_NET_RAW: u64 = 1 << 13;
const CAP_PERFMON: u64 = 1 << 38;
const CAP_BPF: u64 = 1 << 39;

fn unprivileged_serves(tag: &str, xdp: XdpMode) {
    preflight().expect("preflight");
    let lab = Lab::new(tag, 1).expect("lab");
    let state = state_dir(&lab);
    let cfg = config(&lab, &state, xdp);
    let bpffs_open = std::fs::metadata("/sys/fs/bpf").is_ok_and(|m| m.mode() & 0o002 != 0);
    if xdp != XdpMode::Off && !bpffs_open {
        // /sys/fs/bpf is root-only here: do what an administrator would, a
        // bpffs pin folder the service user may write. (Where bpffs is
        // world-writable, the daemon creates its pin folder itself.)
        let pins = lab.pin_dir();
        std::fs::create_dir_all(&pins).expect("creating the pin folder");
        std::os::unix::fs::chown(&pins, Some(NOBODY), Some(NOBODY)).unwrap();
    }
    let mut d = start_unprivileged(&lab, &cfg, Some(CAPS), "isodhcp-0.log");
    d.wait_ready()
        .unwrap_or_else(|e| panic!("unprivileged daemon did not start: {e:#}"));

    // It really is nobody with exactly the five capabilities.
    let pid = d.pid().unwrap();
    let (uid, eff, _) = caps_of(pid);
    assert_eq!(uid, NOBODY, "daemon euid");
    let want = CAP_NET_ADMIN | CAP_NET_RAW | CAP_BPF | CAP_PERFMON | CAP_NET_BIND_SERVICE;
    assert_eq!(eff, want, "effective capabilities {eff:#x}, want {want:#x}");

    // A stock client gets a lease; the host route is there.
    let c = lab.client(0);
    let (lease, r) = lab.dhclient_isolated(0, &d);
    assert_eq!(r.dev.as_deref(), Some("srv0"), "route {r}");
    assert!(
        c.default_route()
            .unwrap()
            .is_some_and(|r| r.gateway == Some(SERVER_IP))
    );

    // Lease file and socket: owned by nobody, 0600; the record is on disk.
    let sock = state.join("isodhcp_srv0.sock");
    for p in [&cfg.lease_file, &sock] {
        let m = std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        assert_eq!(m.uid(), NOBODY, "{} owner", p.display());
        assert_eq!(m.mode() & 0o777, 0o600, "{} mode", p.display());
    }
    let e = lease_entry(&cfg.lease_file, parse_mac(&c.mac)).expect("lease on disk");
    assert_eq!(
        e["ip"].as_str(),
        Some(lease.ip().to_string().as_str()),
        "{e}"
    );

    // Root may query the unprivileged daemon's socket (design.md §Control: same uid or root).
    let o = client(&sock, &["--status", "--json"]);
    assert!(o.ok(), "--status as root: {} {}", o.stdout, o.stderr);
    let st: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(st["pid"], pid, "{st}");
    assert_eq!(st["clients"]["standard"], 1, "{st}");
    if xdp != XdpMode::Off {
        assert_ne!(
            st["datapath"],
            "off",
            "XDP with CAP_BPF/CAP_NET_ADMIN must attach: {st}\n{}",
            d.log_text()
        );
    }
    // --verify: the unprivileged daemon can read its kernel state.
    let o = client(&sock, &["--verify"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "--verify: {}{}\n{}",
        o.stdout,
        o.stderr,
        d.log_text()
    );

    // Clean shutdown (exit 0) as the unprivileged user.
    d.signal(libc::SIGTERM).unwrap();
    let st = d.wait_exit(WAIT).expect("exit");
    assert_eq!(
        st.code(),
        Some(0),
        "clean shutdown: {st}\n{}",
        tail(&d.log, 20)
    );
}

fn client(sock: &Path, args: &[&str]) -> CmdOutput {
    util::run(
        Command::new(isodhcp_tests::isodhcp_bin().unwrap())
            .arg("--socket")
            .arg(sock)
            .args(args),
        Duration::from_secs(15),
    )
    .unwrap()
}

#[test]
fn unprivileged_with_capabilities_serves() {
    isodhcp_tests::needs_root!();
    unprivileged_serves("privoff", XdpMode::Off);
}

#[test]
fn unprivileged_with_capabilities_serves_xdp() {
    isodhcp_tests::needs_root!();
    unprivileged_serves("privxdp", XdpMode::Auto);
}

#[test]
fn without_capabilities_exits_1_clearly() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("privnone", 0).expect("lab");
    let state = state_dir(&lab);
    for xdp in [XdpMode::Off, XdpMode::Auto] {
        let cfg = config(&lab, &state, xdp);
        let log = format!("nocaps-{}.log", xdp.as_str());
        let mut d = start_unprivileged(&lab, &cfg, None, &log);
        let st = d.wait_exit(Duration::from_secs(20)).unwrap_or_else(|e| {
            panic!(
                "--xdp {}: without capabilities the daemon must exit: {e:#}",
                xdp.as_str()
            )
        });
        let text = std::fs::read_to_string(lab.dir().join(&log)).unwrap_or_default();
        assert_eq!(
            st.code(),
            Some(1),
            "--xdp {}: exit 1 expected ({st}); log:\n{text}",
            xdp.as_str()
        );
        assert!(!text.contains("panicked"), "must not panic:\n{text}");
        assert!(
            !text.contains(READY_MARKER),
            "must not claim to serve:\n{text}"
        );
        let lower = text.to_ascii_lowercase();
        assert!(
            lower.contains("permission")
                || lower.contains("not permitted")
                || lower.contains("cap_"),
            "--xdp {}: the message must say it lacks permission/capabilities:\n{text}",
            xdp.as_str()
        );
        // Nothing was left behind: no socket, no route, no nft table.
        assert!(
            !state.join("isodhcp_srv0.sock").exists(),
            "stale socket left:\n{text}"
        );
    }
    // Exit status reporting works through setpriv (the no-capability run
    // did reach isodhcp, not fail in setpriv itself).
    let log = std::fs::read_to_string(lab.dir().join("nocaps-off.log")).unwrap_or_default();
    assert!(log.contains("isodhcp"), "{log}");
}

/// The hardened unit in the repository matches design.md §Privileges: exactly the five
/// capabilities (ambient and bounding set), no new privileges, read-only
/// system, a state directory for leases and socket, reload = SIGUSR1.
#[test]
fn unit_file_is_hardened_as_specified() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist/isodhcp@.service");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let get = |k: &str| -> Vec<String> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.strip_prefix(&format!("{k}=")))
            .map(String::from)
            .collect()
    };
    let one = |k: &str| -> String {
        let v = get(k);
        assert_eq!(
            v.len(),
            1,
            "{k}= must appear once in {}: {v:?}",
            path.display()
        );
        v[0].clone()
    };
    let want: std::collections::BTreeSet<&str> = [
        "CAP_NET_ADMIN",
        "CAP_NET_RAW",
        "CAP_BPF",
        "CAP_PERFMON",
        "CAP_NET_BIND_SERVICE",
    ]
    .into();
    for k in ["AmbientCapabilities", "CapabilityBoundingSet"] {
        let v = one(k);
        let have: std::collections::BTreeSet<&str> = v.split_whitespace().collect();
        assert_eq!(have, want, "{k}");
    }
    assert_eq!(one("NoNewPrivileges"), "yes");
    assert_eq!(one("ProtectSystem"), "strict");
    assert_eq!(one("StateDirectory"), "isodhcp");
    let reload = one("ExecReload");
    assert!(
        reload.contains("kill") && reload.contains("-USR1") && reload.contains("$MAINPID"),
        "{reload}"
    );
    let start = one("ExecStart");
    assert!(start.contains("--interface %i"), "{start}");
    // The lease file it names lives in the state directory (writable under ProtectSystem=strict).
    assert!(start.contains("/var/lib/isodhcp/"), "{start}");
    // The package's binary, options from /etc/isodhcp/IFACE.conf (design.md §Packaging).
    assert!(start.starts_with("/usr/sbin/isodhcp "), "{start}");
    assert!(start.ends_with(" $ISODHCP_OPTS"), "{start}");
    assert_eq!(one("EnvironmentFile"), "-/etc/isodhcp/%i.conf");
    assert!(
        get("User").is_empty() || one("User") != "root",
        "must not run as root"
    );
    let families = one("RestrictAddressFamilies");
    for f in ["AF_UNIX", "AF_NETLINK", "AF_PACKET", "AF_XDP", "AF_INET"] {
        assert!(
            families.split_whitespace().any(|x| x == f),
            "RestrictAddressFamilies lacks {f}: {families}"
        );
    }
}
