//! Foundation integration tests: the isodhcp daemon against stock Linux DHCP
//! clients, all inside network namespaces (see `isodhcp_tests::Lab`).
//!
//! Needs root, iproute2, the clients (isc-dhcp-client, dhcpcd5, udhcpc) and
//! the daemon binary (`ISODHCP_BIN`, default `target/release/isodhcp`).
//! `ISODHCP_XDP=auto|native|generic|off` selects `--xdp` (default off) for
//! every test except `xdp_auto_counts_dhcp_frames`.
//! Run single-threaded: `cargo xtask test -- --test-threads=1`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use isodhcp_tests::daemon::{bpftool_json, sum_field};
use isodhcp_tests::util::{find_tool, run_ok};
use isodhcp_tests::{
    Client, ClientKind, DaemonConfig, Lab, LabConfig, Lease, Route, SERVER_IF, SERVER_IP,
    UPSTREAM_IP, XdpMode, preflight,
};

const PORT: u16 = 7002;
const ROUTE_WAIT: Duration = Duration::from_secs(5);

fn lab(tag: &str, clients: usize) -> Lab {
    preflight().expect("preflight");
    Lab::new(tag, clients).expect("building the lab")
}

fn config(lab: &Lab) -> DaemonConfig {
    DaemonConfig::for_lab(lab).expect("daemon configuration")
}

fn in_pool(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 198 && o[1] == 18 && o[2] == 0 && o[3] != 0 && o[3] != 255 && ip != SERVER_IP
}

/// Acquire with `kind`, then assert the isolated-mode outcome on both ends:
/// client has `ip/32` from the pool, a default route via 198.18.0.1, TCP to
/// the server address and to an address behind the default route works with
/// the leased source, DNS landed in the namespace's resolv.conf; the server
/// has `ip dev srv0 proto 108 scope link src 198.18.0.1`.
fn lease_and_check(lab: &Lab, c: &Client, kind: ClientKind) -> Lease {
    let lease = c
        .acquire(kind)
        .unwrap_or_else(|e| panic!("{kind} got no lease: {e:#}\n{}", lab.daemon_logs()));
    eprintln!("{kind}: {}\n{}", lease.addr, c.describe());
    assert!(
        in_pool(lease.ip()),
        "{kind}: leased {} is not a host of 198.18.0.0/24 (or is the server)",
        lease.addr
    );
    assert_eq!(
        lease.addr.prefixlen, 32,
        "{kind}: expected a /32 lease, got {}",
        lease.addr
    );

    let def = c.default_route().unwrap().unwrap_or_else(|| {
        panic!(
            "{kind}: no default route; routes: {:?}",
            c.routes().unwrap()
        )
    });
    assert_eq!(
        def.gateway,
        Some(SERVER_IP),
        "{kind}: default route is {def}"
    );

    let route = lab
        .wait_server_route(lease.ip(), ROUTE_WAIT)
        .unwrap_or_else(|e| panic!("{kind}: {e:#}\nserver routes: {:?}", lab.server_routes()));
    check_server_route(&route, lease.ip());

    for target in [SERVER_IP, UPSTREAM_IP] {
        let seen = c
            .tcp_check(target, PORT)
            .unwrap_or_else(|e| panic!("{kind}: TCP to {target}: {e:#}\n{}", c.describe()));
        assert_eq!(
            seen,
            lease.ip(),
            "{kind}: the server saw source {seen}, lease is {}",
            lease.ip()
        );
    }
    let rc = c.resolv_conf();
    assert!(
        rc.contains("nameserver 198.18.0.53"),
        "{kind}: DNS option not applied (namespace resolv.conf:\n{rc})"
    );
    lease
}

fn check_server_route(r: &Route, ip: Ipv4Addr) {
    assert_eq!(r.host(), Some(ip), "route {r}");
    assert_eq!(r.dev.as_deref(), Some(SERVER_IF), "route {r}: device");
    assert_eq!(r.gateway, None, "route {r}: must be on-link");
    assert_eq!(r.scope.as_deref(), Some("link"), "route {r}: scope");
    assert_eq!(r.prefsrc, Some(SERVER_IP), "route {r}: src");
}

fn single_client(tag: &str, kind: ClientKind) {
    let lab = lab(tag, 1);
    let _daemon = lab.start_isodhcp(&config(&lab)).expect("isodhcp start");
    let _tcp = lab.server_listen(PORT).expect("listener");
    lease_and_check(&lab, lab.client(0), kind);
    lab.check_host_untouched().expect("host state");
}

#[test]
fn isolated_lease_dhclient() {
    isodhcp_tests::needs_root!();
    single_client("fdhcl", ClientKind::Dhclient);
}

#[test]
fn isolated_lease_dhcpcd() {
    isodhcp_tests::needs_root!();
    single_client("fdhcpcd", ClientKind::Dhcpcd);
}

#[test]
fn isolated_lease_udhcpc() {
    isodhcp_tests::needs_root!();
    single_client("fudhcpc", ClientKind::Udhcpc);
}

/// The three clients on one segment: three distinct /32 leases, one proto-108
/// route per client on the server, handed out from the top of the pool down
/// (design.md §Isolated mode).
#[test]
fn isolated_three_clients_one_route_each() {
    isodhcp_tests::needs_root!();
    let lab = lab("fthree", 3);
    let _daemon = lab.start_isodhcp(&config(&lab)).expect("isodhcp start");
    let _tcp = lab.server_listen(PORT).expect("listener");
    let mut ips = Vec::new();
    for (i, kind) in ClientKind::ALL.into_iter().enumerate() {
        ips.push(lease_and_check(&lab, lab.client(i), kind).ip());
    }
    let routes = lab.server_routes().unwrap();
    for ip in &ips {
        let n = routes.iter().filter(|r| r.host() == Some(*ip)).count();
        assert_eq!(
            n, 1,
            "expected exactly one proto-108 route to {ip}, routes: {routes:?}"
        );
    }
    assert_eq!(routes.len(), 3, "unexpected proto-108 routes: {routes:?}");
    let mut sorted = ips.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "duplicate leases {ips:?}");
    let expect: Vec<Ipv4Addr> = (252..=254).map(|h| Ipv4Addr::new(198, 18, 0, h)).collect();
    assert_eq!(
        sorted, expect,
        "dynamic addresses must come from the top of the pool downward"
    );
    lab.check_host_untouched().expect("host state");
}

/// `dhclient -r` (RELEASE) removes the client's host route on the server.
#[test]
fn dhclient_release_removes_server_route() {
    isodhcp_tests::needs_root!();
    let lab = lab("frel", 1);
    let _daemon = lab.start_isodhcp(&config(&lab)).expect("isodhcp start");
    let _tcp = lab.server_listen(PORT).expect("listener");
    let c = lab.client(0);
    let lease = lease_and_check(&lab, c, ClientKind::Dhclient);
    c.dhclient_release().expect("dhclient -r");
    lab.wait_no_server_route(lease.ip(), Duration::from_secs(10))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert!(
        c.addrs().unwrap().is_empty(),
        "dhclient -r left the address on the client"
    );
    lab.check_host_untouched().expect("host state");
}

/// SIGTERM → exit 0 with the lease on disk; kernel routes stay (design.md §Persistence). We
/// then delete them (as a reboot would) and restart with the same arguments:
/// the route is back as soon as `isodhcp ready` is logged, before the client
/// says anything, and a fresh DISCOVER from the same MAC gets the same address.
#[test]
fn restart_restores_route_and_address() {
    isodhcp_tests::needs_root!();
    let lab = lab("frestart", 1);
    let cfg = config(&lab);
    let mut daemon = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let _tcp = lab.server_listen(PORT).expect("listener");
    let c = lab.client(0);
    let lease = lease_and_check(&lab, c, ClientKind::Dhclient);

    // Silence the client: stop dhclient without RELEASE, forget its lease.
    c.dhclient_stop(true).expect("dhclient -x");

    daemon.signal(libc::SIGTERM).unwrap();
    let st = daemon
        .wait_exit(Duration::from_secs(10))
        .expect("daemon exit after SIGTERM");
    assert!(
        st.success(),
        "SIGTERM must end in exit status 0, got {st}\n{}",
        lab.daemon_logs()
    );
    drop(daemon);

    // The lease is on disk.
    assert!(
        cfg.lease_file.exists(),
        "lease file {} missing after SIGTERM",
        cfg.lease_file.display()
    );
    let text = std::fs::read_to_string(&cfg.lease_file).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("lease file is not JSON ({e}):\n{text}"));
    let entry = json["leases"]
        .as_object()
        .and_then(|m| {
            m.iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(&c.mac))
                .map(|(_, v)| v.clone())
        })
        .unwrap_or_else(|| panic!("lease file has no entry for {}:\n{text}", c.mac));
    assert_eq!(
        entry["ip"].as_str(),
        Some(lease.ip().to_string().as_str()),
        "lease file entry {entry}"
    );

    // Kernel state is left in place at shutdown (design.md §Persistence)...
    let routes = lab.server_routes().unwrap();
    assert!(
        routes.iter().any(|r| r.host() == Some(lease.ip())),
        "SIGTERM removed the host route (it must stay for the next start): {routes:?}"
    );
    // ...and we remove it to prove the restart rebuilds it from the lease file.
    lab.server
        .ip(&["-4", "route", "flush", "proto", "108"])
        .unwrap();
    assert!(lab.server_routes().unwrap().is_empty());

    let _daemon2 = lab.start_isodhcp(&cfg).expect("isodhcp restart");
    // No polling: the route must be there once the daemon says it is ready.
    let routes = lab.server_routes().unwrap();
    let r = routes
        .iter()
        .find(|r| r.host() == Some(lease.ip()))
        .unwrap_or_else(|| {
            panic!(
                "route to {} not restored at start; routes {routes:?}\n{}",
                lease.ip(),
                lab.daemon_logs()
            )
        });
    check_server_route(r, lease.ip());

    // Fresh DISCOVER (no dhclient lease file) from the same MAC.
    assert!(!c.dhclient_leasefile().exists());
    let discovers = c.log_text("dhclient").matches("DHCPDISCOVER").count();
    let again = lease_and_check(&lab, c, ClientKind::Dhclient);
    assert!(
        c.log_text("dhclient").matches("DHCPDISCOVER").count() > discovers,
        "the second dhclient run did not start with a DISCOVER"
    );
    assert_eq!(
        again.ip(),
        lease.ip(),
        "same MAC got a different address after restart"
    );
    lab.check_host_untouched().expect("host state");
}

/// Unnumbered deployment: 198.18.0.1/32 on srv0, `-s 198.18.0.1 -p 198.18.0.0/24`.
#[test]
fn unnumbered_server() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::build(LabConfig::new("funnum", 1).unnumbered()).expect("lab");
    let addrs = isodhcp_tests::netinfo::addrs(&lab.server, SERVER_IF).unwrap();
    assert_eq!(addrs.len(), 1);
    assert_eq!(addrs[0].prefixlen, 32, "lab must hold a /32 on srv0");
    let cfg = config(&lab);
    assert_eq!(cfg.server_ip, Some(SERVER_IP));
    assert_eq!(cfg.pool.as_deref(), Some("198.18.0.0/24"));
    let _daemon = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let _tcp = lab.server_listen(PORT).expect("listener");
    lease_and_check(&lab, lab.client(0), ClientKind::Dhclient);
    lab.check_host_untouched().expect("host state");
}

/// `--xdp auto`: the program is attached to srv0, and the pinned `counters`
/// map counts the DHCP frames of a lease.
#[test]
fn xdp_auto_counts_dhcp_frames() {
    isodhcp_tests::needs_root!();
    let lab = lab("fxdp", 1);
    assert!(
        find_tool("bpftool").is_some(),
        "bpftool is required (package bpftool)"
    );
    ensure_bpffs();
    let mut cfg = config(&lab);
    cfg.xdp = XdpMode::Auto;
    let pins = lab.pin_dir();
    assert_eq!(cfg.pin_dir.as_deref(), Some(pins.as_path()));
    let _daemon = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let _tcp = lab.server_listen(PORT).expect("listener");

    let link = lab
        .server
        .ip_json(&["link", "show", "dev", SERVER_IF])
        .unwrap();
    assert!(
        link[0].get("xdp").is_some(),
        "--xdp auto on a veth must attach an XDP program to srv0; link: {link}\n{}",
        lab.daemon_logs()
    );
    lease_and_check(&lab, lab.client(0), ClientKind::Dhclient);

    let counters = pins.join("counters");
    assert!(
        counters.exists(),
        "{} not pinned\n{}",
        counters.display(),
        lab.daemon_logs()
    );
    let dump = bpftool_json(&["map", "dump", "pinned", counters.to_str().unwrap()])
        .expect("bpftool map dump");
    eprintln!("counters: {dump}");
    let dhcp = sum_field(&dump, "dhcp");
    assert!(dhcp > 0, "counter `dhcp` is 0 after a lease; dump: {dump}");
    lab.check_host_untouched().expect("host state");
}

/// A program a previous `--xdp auto` run left pinned must not keep filtering
/// (with stale limits and known clients) after a restart with `--xdp off`.
#[test]
fn xdp_off_detaches_a_leftover_program() {
    isodhcp_tests::needs_root!();
    let lab = lab("fxdpoff", 1);
    ensure_bpffs();
    let mut cfg = config(&lab);
    cfg.xdp = XdpMode::Auto;
    let mut d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let xdp_attached = || {
        lab.server
            .ip_json(&["link", "show", "dev", SERVER_IF])
            .unwrap()[0]
            .get("xdp")
            .is_some()
    };
    assert!(
        xdp_attached(),
        "--xdp auto must attach\n{}",
        lab.daemon_logs()
    );
    d.signal(libc::SIGTERM).expect("SIGTERM");
    d.wait_exit(Duration::from_secs(10)).expect("exit");
    assert!(
        xdp_attached(),
        "the pinned program stays attached across a restart (design.md §Datapath)"
    );
    drop(d);
    cfg.xdp = XdpMode::Off;
    let _d = lab
        .start_isodhcp(&cfg)
        .expect("isodhcp restart with --xdp off");
    assert!(
        !xdp_attached(),
        "--xdp off must detach the old program\n{}",
        lab.daemon_logs()
    );
    assert!(
        !lab.pin_dir().join("link_native").exists() && !lab.pin_dir().join("link_generic").exists()
    );
    let _tcp = lab.server_listen(PORT).expect("listener");
    lease_and_check(&lab, lab.client(0), ClientKind::Dhclient);
}

/// bpffs must be mounted on /sys/fs/bpf (in the host mount namespace) for pins
/// to be visible to bpftool; mount it if missing (`cargo xtask setup` does the same).
fn ensure_bpffs() {
    let mounted = std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .any(|l| l.split_whitespace().nth(4) == Some("/sys/fs/bpf") && l.contains(" - bpf "));
    if !mounted {
        eprintln!("mounting bpffs on /sys/fs/bpf");
        run_ok(
            isodhcp_tests::util::tool_cmd("mount").args(["-t", "bpf", "bpf", "/sys/fs/bpf"]),
            Duration::from_secs(10),
        )
        .expect("mount -t bpf bpf /sys/fs/bpf");
    }
    assert!(Path::new("/sys/fs/bpf").exists());
}
