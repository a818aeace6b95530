//! Static entries (design.md §Statics): reserved at start (route / alias present as
//! soon as the daemon is ready, before any client speaks), handed out
//! exactly, never returned to the pool, configured hostname kept; invalid
//! entries are fatal (exit 2, one line naming --static).
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test pool_statics -- --test-threads=1`

use std::net::Ipv4Addr;
use std::process::Command;
use std::time::Duration;

use isodhcp::wire::options::{self, MessageType};
use isodhcp_tests::crafted::{
    self, Dhcp, To, has_route, lease_entry, lease_files_text, mac, quarantine, request,
    server_addrs,
};
use isodhcp_tests::util::{self, TempDir};
use isodhcp_tests::{
    Addr, ClientKind, Lab, SERVER_IF, SERVER_IP, UPSTREAM_IP, isodhcp_bin, preflight,
};

const PORT: u16 = 7046;

fn ip(h: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, h)
}

#[test]
fn static_route_before_client_speaks() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("s6route", 1).expect("lab");
    let c = lab.client(0);
    let mut cfg = crafted::config(&lab);
    cfg.extra.extend([
        "--static".to_string(),
        format!("{}=198.18.0.10,printer", c.mac),
    ]);
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    // No polling: reserved before `isodhcp ready`.
    let routes = lab.server_routes().unwrap();
    let r = routes
        .iter()
        .find(|r| r.host() == Some(ip(10)))
        .unwrap_or_else(|| {
            panic!(
                "static route missing at ready: {routes:?}\n{}",
                lab.daemon_logs()
            )
        });
    assert_eq!(r.dev.as_deref(), Some(SERVER_IF));
    assert_eq!(r.scope.as_deref(), Some("link"));
    assert_eq!(r.prefsrc, Some(SERVER_IP));
    let lf = cfg.lease_file.clone();
    let m = crafted::parse_mac(&c.mac);
    let e = lease_entry(&lf, m)
        .unwrap_or_else(|| panic!("no static record:\n{}", lease_files_text(&lf)));
    assert_eq!(e["ip"].as_str(), Some("198.18.0.10"), "{e}");
    assert_eq!(e["hostname"].as_str(), Some("printer"), "{e}");
    assert!(
        e.get("expires")
            .is_none_or(serde_json::value::Value::is_null),
        "statics never expire: {e}"
    );

    let _tcp = lab.server_listen(PORT).expect("listener");
    let lease = c
        .acquire(ClientKind::Dhclient)
        .unwrap_or_else(|e| panic!("dhclient: {e:#}\n{}", lab.daemon_logs()));
    assert_eq!(
        lease.addr,
        Addr {
            ip: ip(10),
            prefixlen: 32
        },
        "static client must get exactly its IP"
    );
    assert_eq!(c.tcp_check(UPSTREAM_IP, PORT).expect("TCP"), ip(10));

    // Client-sent hostname does not overwrite the configured one; clients are
    // told --lease-time.
    let dhcp = Dhcp::open(c).expect("raw socket");
    let mut r = request(MessageType::Request, m);
    r.ciaddr = ip(10);
    r.options.set(options::HOSTNAME, b"evil".to_vec());
    let ack = dhcp
        .expect_reply_to(&r, To::Server { src: ip(10) })
        .expect("renewal");
    assert_eq!(ack.kind(), Some(MessageType::Ack));
    assert_eq!(ack.opt_u32(options::LEASE_TIME), Some(600));
    let e = lease_entry(&lf, m).unwrap();
    assert_eq!(
        e["hostname"].as_str(),
        Some("printer"),
        "configured hostname overwritten: {e}"
    );
    lab.check_host_untouched().expect("host state");
}

/// RELEASE and DECLINE from a static client never free its address.
#[test]
fn static_never_returns_to_pool() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("s6keep", 1).expect("lab");
    let s = mac(1, 1);
    let mut cfg = crafted::config(&lab);
    cfg.extra
        .extend(["--static".to_string(), format!("{s}=198.18.0.20")]);
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket");
    let (offer, _) = dhcp
        .dora(s, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert_eq!(offer.msg.yiaddr, ip(20));

    dhcp.release(s, ip(20)).unwrap();
    dhcp.decline(s, ip(20)).unwrap();
    // Processed in order: another client's INIT-REBOOT for .20 after them.
    let other = mac(1, 2);
    let mut ir = request(MessageType::Request, other);
    ir.options.set_ip(options::REQUESTED_IP, ip(20));
    let r = dhcp
        .expect_reply(&ir)
        .expect("INIT-REBOOT for the static address");
    assert_eq!(
        r.kind(),
        Some(MessageType::Nak),
        "a static address went back to the pool"
    );
    assert!(
        has_route(&lab, ip(20)),
        "static route removed by RELEASE/DECLINE"
    );
    let lf = cfg.lease_file.clone();
    assert!(
        !quarantine(&lf).contains_key("198.18.0.20"),
        "static address quarantined"
    );
    assert!(
        lease_entry(&lf, s).is_some(),
        "static record removed:\n{}",
        lease_files_text(&lf)
    );
    let again = dhcp.discover(s, &[]).expect("static DISCOVER");
    assert_eq!(again.msg.yiaddr, ip(20));
}

/// A `compat` static has its /30 alias at start and no /32 route; dynamic
/// compat clients get other blocks.
#[test]
fn static_compat_reserved_at_start() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("s6compat", 1).expect("lab");
    let s = mac(2, 1);
    let mut cfg = crafted::config(&lab);
    cfg.extra.extend([
        "--static".to_string(),
        format!("{s}=198.18.0.6,compat"),
        "--compat-oui".into(),
        "02:1e:00".into(),
    ]);
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let gw = Addr {
        ip: ip(5),
        prefixlen: 30,
    };
    assert!(
        server_addrs(&lab).contains(&gw),
        "compat static alias {gw} missing at ready; srv0 {:?}\n{}",
        server_addrs(&lab),
        lab.daemon_logs()
    );
    assert!(!has_route(&lab, ip(6)));
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket");
    let (_, ack) = dhcp.dora(s, &[]).expect("static compat DORA");
    assert_eq!(ack.msg.yiaddr, ip(6));
    assert_eq!(
        ack.opt_ip(options::SUBNET_MASK),
        Some(Ipv4Addr::new(255, 255, 255, 252))
    );
    assert_eq!(ack.opt_ip(options::ROUTER), Some(ip(5)));
    let (_, ack) = dhcp.dora(mac(2, 2), &[]).expect("dynamic compat DORA");
    assert_eq!(
        ack.msg.yiaddr,
        ip(10),
        "dynamic compat must not get the static's block"
    );
}

const M: &str = "02:1e:00:00:00:10";

/// (extra args, text the error line must contain)
fn bad_statics() -> Vec<(Vec<String>, &'static str)> {
    let st = |v: &str| vec!["--static".to_string(), v.to_string()];
    let mut v = vec![
        (st(&format!("{M}=198.18.1.10")), "198.18.1.10"),
        (st(&format!("{M}=198.18.0.1")), "198.18.0.1"),
        (st(&format!("{M}=198.18.0.0")), "198.18.0.0"),
        (st(&format!("{M}=198.18.0.255")), "198.18.0.255"),
        (st(&format!("{M}=198.18.0.7,compat")), "198.18.0.7"),
        (st(&format!("{M}=198.18.0.2,compat")), "198.18.0.2"),
        (st(&format!("{M}=198.18.0.254,compat")), "198.18.0.254"),
        (st("02:1e:00:00:00=198.18.0.10"), "02:1e:00:00:00"),
        (st(&format!("{M}=198.18.0.300")), "198.18.0.300"),
    ];
    let mut dup = st(&format!("{M}=198.18.0.30"));
    dup.extend(st("02:1e:00:00:00:11=198.18.0.30"));
    v.push((dup, "198.18.0.30"));
    let mut both = st(&format!("{M}=198.18.0.250,compat,playground"));
    both.extend(["--playground-size".into(), "6".into()]);
    v.push((both, "198.18.0.250"));
    let mut outside = st(&format!("{M}=198.18.0.40,playground"));
    outside.extend(["--playground-size".into(), "6".into()]);
    v.push((outside, "198.18.0.40"));
    v
}

fn check_exit_2(cmd: &mut Command, args: &[String], needle: &str) -> Result<(), String> {
    let out = util::run(cmd, Duration::from_secs(10))
        .map_err(|e| format!("{args:?}: {e:#} (the daemon started instead of refusing)"))?;
    let text = format!("{}{}", out.stdout, out.stderr);
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    if out.status.code() != Some(2) {
        return Err(format!(
            "{args:?}: exit {:?}, want 2; output:\n{text}",
            out.status.code()
        ));
    }
    if lines.len() != 1 || !lines[0].contains("--static") || !lines[0].contains(needle) {
        return Err(format!(
            "{args:?}: want exactly one line naming --static and {needle:?}; output:\n{text}"
        ));
    }
    Ok(())
}

fn base_args(iface: &str, dir: &std::path::Path) -> Vec<String> {
    [
        "-i",
        iface,
        "-s",
        "198.18.0.1",
        "-p",
        "198.18.0.0/24",
        "-d",
        "198.18.0.53",
        "--xdp",
        "off",
    ]
    .iter()
    .map(std::string::ToString::to_string)
    .chain([
        "-f".to_string(),
        dir.join("leases.json").display().to_string(),
    ])
    .collect()
}

/// Bad `--static` values with `-s` and `-p` given: status 2 and one line
/// naming the option, before the interface is even looked at (it does not
/// exist here; no namespace needed).
#[test]
fn invalid_statics_exit_2_without_interface() {
    let bin = isodhcp_bin().expect("daemon binary");
    let dir = TempDir::new("s6bad").unwrap();
    let mut fails = Vec::new();
    for (extra, needle) in bad_statics() {
        let mut args = base_args("isdnone0", dir.path());
        args.extend(extra);
        let mut cmd = Command::new(&bin);
        cmd.args(&args)
            .current_dir(dir.path())
            .env("STATE_DIRECTORY", dir.path());
        if let Err(e) = check_exit_2(&mut cmd, &args, needle) {
            fails.push(e);
        }
    }
    assert!(
        fails.is_empty(),
        "{} invalid --static values not refused with status 2:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

/// Same values on a real interface (lab server namespace): status 2, one
/// line, and nothing applied.
#[test]
fn invalid_statics_exit_2_on_interface() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("s6badif", 0).expect("lab");
    let bin = isodhcp_bin().expect("daemon binary");
    let mut fails = Vec::new();
    for (extra, needle) in bad_statics() {
        let mut args = base_args(SERVER_IF, lab.dir());
        args.extend([
            "--bpf-pin-dir".to_string(),
            lab.pin_dir().display().to_string(),
        ]);
        args.extend(extra);
        let mut cmd = lab.server.nsenter_cmd(bin.to_str().unwrap());
        cmd.args(&args)
            .current_dir(lab.dir())
            .env("STATE_DIRECTORY", lab.dir());
        if let Err(e) = check_exit_2(&mut cmd, &args, needle) {
            fails.push(e);
        }
    }
    assert!(
        fails.is_empty(),
        "{} invalid --static values not refused with status 2:\n{}",
        fails.len(),
        fails.join("\n")
    );
    assert!(
        lab.server_routes().unwrap().is_empty(),
        "a refused start installed routes"
    );
    assert_eq!(
        server_addrs(&lab).len(),
        1,
        "a refused start added addresses: {:?}",
        server_addrs(&lab)
    );
}
