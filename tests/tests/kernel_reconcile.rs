//! Reconcile (design.md §Reconcile, §Routes, §Aliases, §Signals): SIGUSR1 puts back what a lease
//! needs (host route, gateway alias, named-set elements, SNAT rule, the
//! private table) and removes only what isodhcp made and no lease explains;
//! the start-up reconcile removes stale proto-108 routes and nothing else.
//!
//! Needs root, iproute2, nftables and the daemon binary; `--xdp off`. Run
//! single-threaded:
//! `cargo test -p isodhcp-tests --release --test kernel_reconcile -- --test-threads=1`.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use isodhcp::wire::Mac;
use isodhcp::wire::options::MessageType;
use isodhcp_tests::netinfo::{self, Route};
use isodhcp_tests::nftutil::{
    self, DhcpProbe, TestSets, chain_rules, nft, private_table, set_element, set_elements,
    snat_rules_for,
};
use isodhcp_tests::{
    Daemon, DaemonConfig, Lab, SERVER_IF, SERVER_IP, XdpMode, preflight, wait_until,
};

const WAIT: Duration = Duration::from_secs(10);

fn lab(tag: &str, clients: usize) -> Lab {
    preflight().expect("preflight");
    assert!(
        isodhcp_tests::util::find_tool("nft").is_some(),
        "nft is required (package nftables)"
    );
    Lab::new(tag, clients).expect("building the lab")
}

fn config(lab: &Lab, extra: Vec<String>) -> DaemonConfig {
    let mut c = DaemonConfig::for_lab(lab).expect("daemon configuration");
    c.xdp = XdpMode::Off;
    c.extra.extend(extra);
    c
}

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

/// All main-table routes of the server namespace.
fn server_routes(lab: &Lab) -> Vec<Route> {
    netinfo::routes(&lab.server, &[]).expect("ip route")
}

fn route_to(lab: &Lab, host: Ipv4Addr) -> Option<Route> {
    server_routes(lab)
        .into_iter()
        .find(|r| r.host() == Some(host) && r.dst != "default")
}

fn has_addr(lab: &Lab, a: Ipv4Addr, plen: u8) -> bool {
    netinfo::addrs(&lab.server, SERVER_IF)
        .expect("ip addr")
        .iter()
        .any(|x| x.ip == a && x.prefixlen == plen)
}

/// What the two leases of the SIGUSR1 test need in the kernel.
struct Leases {
    m_iso: Mac,
    m_compat: Mac,
    iso: Ipv4Addr,
    compat: Ipv4Addr,
    /// The compat client's gateway alias (a /30).
    gw: Ipv4Addr,
    /// The compat client's /30.
    sub: String,
}

/// Start the daemon (named sets, compat, masquerade, isolation) and give one
/// isolated masqueraded client and one compat client a lease by crafted DORA.
fn start_two_leases(lab: &Lab, sets: &TestSets) -> (Daemon, DhcpProbe, Leases) {
    let m_iso = Mac([0x02, 0x1e, 0x20, 0, 0, 1]);
    let m_compat = Mac([0x02, 0x1e, 0x20, 0, 0, 2]);
    let mut extra = sets.daemon_args();
    extra.extend(
        [
            "--compat-mac",
            &m_compat.to_string(),
            "--masquerade-mac",
            &m_iso.to_string(),
            "--isolation",
            "on",
        ]
        .map(String::from),
    );
    let d = lab
        .start_isodhcp(&config(lab, extra))
        .expect("isodhcp start");
    let c = lab.client(0);
    let mut probe = DhcpProbe::open(&c.ns, &c.ifname).expect("raw socket");
    let iso = probe
        .dora(m_iso, 3)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let compat = probe
        .dora(m_compat, 3)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let base = u32::from(compat) & !3;
    let leases = Leases {
        m_iso,
        m_compat,
        iso,
        compat,
        gw: Ipv4Addr::from(base + 1),
        sub: format!("{}/30", Ipv4Addr::from(base)),
    };
    (d, probe, leases)
}

/// Baseline: route, alias, set elements and one SNAT rule are there; returns
/// the SNAT rule's handle.
fn assert_baseline(lab: &Lab, sets: &TestSets, l: &Leases) -> u64 {
    let (iso, gw) = (l.iso, l.gw);
    assert!(route_to(lab, iso).is_some(), "no route to {iso}");
    assert!(has_addr(lab, gw, 30), "no alias {gw}/30");
    assert!(
        set_elements(&lab.server, &sets.set("iso"))
            .unwrap()
            .contains(&iso.to_string())
    );
    assert!(
        set_elements(&lab.server, &sets.set("subs"))
            .unwrap()
            .contains(&l.sub)
    );
    let rules = snat_rules_for(&lab.server, &l.m_iso.to_string()).unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    rules[0].handle
}

/// `ip route OP HOST/32 dev SERVER_IF proto 108 scope link src SERVER_IP`.
fn route108(lab: &Lab, op: &str, host: Ipv4Addr) {
    lab.server
        .ip(&[
            "route",
            op,
            &format!("{host}/32"),
            "dev",
            SERVER_IF,
            "proto",
            "108",
            "scope",
            "link",
            "src",
            "198.18.0.1",
        ])
        .unwrap();
}

/// Delete what the leases need by hand: route, alias, set elements, SNAT rule.
fn damage_lease_state(lab: &Lab, l: &Leases, snat_handle: u64) {
    netinfo::route_proto108(&lab.server, "del", &format!("{}/32", l.iso)).unwrap();
    lab.server
        .ip(&["addr", "del", &format!("{}/30", l.gw), "dev", SERVER_IF])
        .unwrap();
    set_element(&lab.server, "delete", "iso", &l.iso.to_string()).unwrap();
    set_element(&lab.server, "delete", "subs", &l.sub).unwrap();
    set_element(&lab.server, "delete", "gw", &l.gw.to_string()).unwrap();
    let table = private_table(SERVER_IF);
    nft(
        &lab.server,
        &[
            "delete",
            "rule",
            "ip",
            &table,
            "postrouting",
            "handle",
            &snat_handle.to_string(),
        ],
    )
    .unwrap();
}

const FOREIGN_EL: &str = "198.18.0.77";
const FOREIGN_SUB: &str = "198.18.0.64/30";

/// Foreign state (set elements, routes of other protocols, an administrator
/// address) and isodhcp-looking orphans (a proto-108 route and a /30 alias,
/// no lease).
fn add_foreign_state_and_orphans(lab: &Lab) {
    set_element(&lab.server, "add", "iso", FOREIGN_EL).unwrap();
    set_element(&lab.server, "add", "subs", FOREIGN_SUB).unwrap();
    lab.server
        .ip(&["route", "add", "198.18.0.99/32", "dev", SERVER_IF])
        .unwrap();
    lab.server
        .ip(&[
            "route",
            "add",
            "198.18.0.98/32",
            "dev",
            SERVER_IF,
            "proto",
            "static",
        ])
        .unwrap();
    lab.server
        .ip(&["addr", "add", "198.18.0.90/32", "dev", SERVER_IF])
        .unwrap();
    // isodhcp-looking orphans: a proto-108 route and a /30 alias, no lease.
    route108(lab, "add", ip(97));
    lab.server
        .ip(&["addr", "add", "198.18.0.41/30", "dev", SERVER_IF])
        .unwrap();
}

/// Wait for SIGUSR1 to restore the lease state and remove the orphans, then
/// check the shape of the restored route and SNAT rule.
fn assert_restored(lab: &Lab, sets: &TestSets, l: &Leases) {
    let (iso, gw) = (l.iso, l.gw);
    let iso_s = iso.to_string();
    let r = wait_until("SIGUSR1 reconcile to restore the lease state", WAIT, || {
        let route = route_to(lab, iso).is_some_and(|r| r.protocol.as_deref() == Some("108"));
        let alias = has_addr(lab, gw, 30);
        let el = set_elements(&lab.server, &sets.set("iso"))?.contains(&iso_s)
            && set_elements(&lab.server, &sets.set("subs"))?.contains(&l.sub)
            && set_elements(&lab.server, &sets.set("gw"))?.contains(&gw.to_string());
        let snat = snat_rules_for(&lab.server, &l.m_iso.to_string())?.len() == 1;
        let orphan_route = route_to(lab, ip(97)).is_some();
        let orphan_alias = has_addr(lab, ip(41), 30);
        Ok((route && alias && el && snat && !orphan_route && !orphan_alias).then_some(()))
    });
    if let Err(e) = r {
        panic!(
            "{e:#}\nroutes: {:?}\naddrs: {:?}\nsets: {:?}\nnat: {:?}\n{}",
            server_routes(lab),
            netinfo::addrs(&lab.server, SERVER_IF),
            sets.snapshot(&lab.server),
            nftutil::nat_rules(&lab.server),
            lab.daemon_logs()
        );
    }
    let r = route_to(lab, iso).unwrap();
    assert_eq!(r.dev.as_deref(), Some(SERVER_IF), "{r}");
    assert_eq!(r.scope.as_deref(), Some("link"), "{r}");
    assert_eq!(r.prefsrc, Some(SERVER_IP), "{r}");
    let snat = snat_rules_for(&lab.server, &l.m_iso.to_string()).unwrap();
    assert_eq!(snat[0].daddr, Some(iso));
    assert_eq!(snat[0].snat_to, Some(SERVER_IP));
}

/// Foreign state untouched by the reconcile.
fn assert_foreign_untouched(lab: &Lab, sets: &TestSets) {
    let iso_set = set_elements(&lab.server, &sets.set("iso")).unwrap();
    assert!(
        iso_set.contains(FOREIGN_EL),
        "SIGUSR1 removed a foreign element: {iso_set:?}"
    );
    let subs = set_elements(&lab.server, &sets.set("subs")).unwrap();
    assert!(
        subs.contains(FOREIGN_SUB),
        "SIGUSR1 removed a foreign interval: {subs:?}"
    );
    for h in [99, 98] {
        assert!(
            route_to(lab, ip(h)).is_some(),
            "SIGUSR1 removed the non-108 route to {}: {:?}",
            ip(h),
            server_routes(lab)
        );
    }
    assert!(
        has_addr(lab, ip(90), 32),
        "SIGUSR1 removed the administrator's 198.18.0.90/32"
    );
    assert!(has_addr(lab, SERVER_IP, 24), "server address gone");
}

/// The daemon still serves both clients.
fn assert_still_serves(probe: &mut DhcpProbe, l: &Leases) {
    for (m, a) in [(l.m_iso, l.iso), (l.m_compat, l.compat)] {
        let r = probe.request_init_reboot(m, a, 3).unwrap();
        assert!(
            r.as_ref()
                .is_some_and(|r| r.kind == MessageType::Ack && r.yiaddr == a),
            "INIT-REBOOT {m} {a} after reconcile: {:?}",
            r.map(|r| r.kind)
        );
    }
}

/// The whole private table gone: SIGUSR1 rebuilds it (isolation rule and
/// SNAT rule included).
fn assert_table_rebuilt(lab: &Lab, d: &mut Daemon, l: &Leases) {
    let table = private_table(SERVER_IF);
    nft(&lab.server, &["delete", "table", "ip", &table]).unwrap();
    d.signal(libc::SIGUSR1).unwrap();
    let r = wait_until("SIGUSR1 to rebuild the private table", WAIT, || {
        let snat = snat_rules_for(&lab.server, &l.m_iso.to_string())
            .map(|r| r.len())
            .unwrap_or(0);
        let fwd = chain_rules(&lab.server, &table, "forward").unwrap_or_default();
        let iso_rule = fwd.iter().any(|r| {
            r.get("comment").and_then(|c| c.as_str()) == Some("isodhcp isolation")
                && r.to_string().contains("drop")
        });
        Ok((snat == 1 && iso_rule).then_some(()))
    });
    if let Err(e) = r {
        panic!(
            "{e:#}\ntable: {:?}\n{}",
            nft(&lab.server, &["list", "table", "ip", &table]),
            lab.daemon_logs()
        );
    }
}

/// One isolated masqueraded client and one compat client (crafted DORA);
/// delete their route, alias, set elements and SNAT rule by hand, add
/// foreign state (set elements, routes without proto 108, an administrator
/// address) and isodhcp-looking orphans (a proto-108 route and a /30 alias no
/// lease explains); SIGUSR1 restores the lease state, removes the orphans and
/// leaves the foreign state alone. Then the whole private table is deleted
/// and SIGUSR1 rebuilds it.
#[test]
fn sigusr1_restores_lease_state_and_leaves_foreign_state() {
    isodhcp_tests::needs_root!();
    let lab = lab("rcusr1", 1);
    let sets = TestSets::create(&lab).expect("named sets");
    let (mut d, mut probe, leases) = start_two_leases(&lab, &sets);
    let snat_handle = assert_baseline(&lab, &sets, &leases);

    damage_lease_state(&lab, &leases, snat_handle);
    add_foreign_state_and_orphans(&lab);

    d.signal(libc::SIGUSR1).unwrap();
    assert_restored(&lab, &sets, &leases);
    assert_foreign_untouched(&lab, &sets);
    assert_still_serves(&mut probe, &leases);

    assert_table_rebuilt(&lab, &mut d, &leases);
    assert!(d.is_running(), "daemon died");
}

const LEASED_MAC: &str = "02:1e:21:00:00:01";

/// A lease file with one lease (198.18.0.150, an hour left) for LEASED_MAC.
fn write_stored_lease(cfg: &DaemonConfig) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let file = serde_json::json!({
        "leases": {
            LEASED_MAC: {"ip": "198.18.0.150", "expires": now + 3600.0, "mode": "standard", "masq": false}
        },
        "subnets": {}
    });
    std::fs::write(&cfg.lease_file, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
}

/// With the daemon down: two stale proto-108 routes, routes of other
/// protocols, an isodhcp-looking orphan alias and an administrator's address.
fn add_stale_and_foreign_state(lab: &Lab) {
    let srv = &lab.server;
    route108(lab, "add", ip(200)); // stale
    route108(lab, "add", ip(201)); // stale
    srv.ip(&[
        "route",
        "add",
        "198.18.0.202/32",
        "dev",
        SERVER_IF,
        "proto",
        "static",
    ])
    .unwrap();
    srv.ip(&["route", "add", "198.18.0.203/32", "dev", SERVER_IF])
        .unwrap();
    srv.ip(&[
        "route",
        "add",
        "198.18.0.204/32",
        "dev",
        SERVER_IF,
        "proto",
        "107",
    ])
    .unwrap();
    srv.ip(&["addr", "add", "198.18.0.45/30", "dev", SERVER_IF])
        .unwrap(); // isodhcp-looking orphan alias
    srv.ip(&["addr", "add", "198.18.0.91/32", "dev", SERVER_IF])
        .unwrap(); // administrator's
}

/// No polling: reconcile at start happens before `isodhcp ready`.
fn assert_start_reconciled(lab: &Lab) {
    let routes = server_routes(lab);
    for h in [200, 201] {
        assert!(
            route_to(lab, ip(h)).is_none(),
            "stale proto-108 route to {} survived the start: {routes:?}\n{}",
            ip(h),
            lab.daemon_logs()
        );
    }
    for h in [202, 203, 204] {
        let r = route_to(lab, ip(h));
        assert!(
            r.is_some(),
            "start-up reconcile removed the non-108 route to {}: {routes:?}",
            ip(h)
        );
    }
    let r = route_to(lab, ip(150)).unwrap_or_else(|| {
        panic!(
            "route of the stored lease missing: {routes:?}\n{}",
            lab.daemon_logs()
        )
    });
    assert_eq!(r.protocol.as_deref(), Some("108"), "{r}");
    assert!(
        !has_addr(lab, ip(45), 30),
        "orphan /30 alias survived the start"
    );
    assert!(has_addr(lab, ip(91), 32), "administrator's address removed");
    assert!(has_addr(lab, SERVER_IP, 24), "server address removed");
}

/// Start-up reconcile: with the daemon down, a proto-108 /32 route for an
/// address no lease explains and a /30 alias are removed by the time it
/// logs `isodhcp ready`; the route of a lease in the file is (re)added;
/// routes of other protocols and the administrator's addresses stay.
#[test]
fn start_removes_stale_proto108_routes_only() {
    isodhcp_tests::needs_root!();
    let lab = lab("rcstart", 1);
    let cfg = config(&lab, Vec::new());
    write_stored_lease(&cfg);
    add_stale_and_foreign_state(&lab);

    let mut d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    assert_start_reconciled(&lab);

    // The stored lease is honoured.
    let c = lab.client(0);
    let mut probe = DhcpProbe::open(&c.ns, &c.ifname).unwrap();
    let r = probe
        .request_init_reboot(Mac::parse(LEASED_MAC).unwrap(), ip(150), 3)
        .unwrap();
    assert!(
        r.as_ref().is_some_and(|r| r.kind == MessageType::Ack),
        "INIT-REBOOT for the stored lease: {:?}",
        r.map(|r| r.kind)
    );
    assert!(d.is_running());
}
