//! The playground block (design.md §Playground mode): `--playground-size 6` reserves the highest
//! aligned /29 of the pool (198.18.0.248/29), gateway = its first host as an
//! alias /29 on srv0; playground clients get mask /29 and router = gateway
//! and reach each other even with `--isolation on`; isolated clients stay
//! outside the block and, with isolation on, cannot reach into it.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test mode_playground -- --test-threads=1`

use std::net::Ipv4Addr;

use isodhcp::wire::options::{self, ClasslessRoute, decode_classless_routes};
use isodhcp_tests::crafted::{self, Dhcp, To, mac, request, server_addrs};
use isodhcp_tests::nftutil::set_sysctl;
use isodhcp_tests::{Addr, Lab, UPSTREAM_IP, preflight};

const PORT: u16 = 7043;

fn ip(h: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, h)
}

fn in_block(a: Ipv4Addr) -> bool {
    u32::from(a) & !7 == u32::from(ip(248))
}

#[test]
fn playground_clients_share_block() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("p3real", 3).expect("lab");
    let (a, b, c) = (lab.client(0), lab.client(1), lab.client(2));
    let mut cfg = crafted::config(&lab);
    cfg.extra.extend(
        [
            "--playground-size",
            "6",
            "--playground-mac",
            &a.mac,
            "--playground-mac",
            &b.mac,
            "--isolation",
            "on",
        ]
        .map(String::from),
    );
    // The router forwards between clients (isolated ones only talk via it).
    set_sysctl(&lab.server, "net.ipv4.ip_forward", "1").expect("ip_forward");
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let gw = Addr {
        ip: ip(249),
        prefixlen: 29,
    };
    assert!(
        server_addrs(&lab).contains(&gw),
        "playground gateway alias {gw} must be on srv0 at start; has {:?}\n{}",
        server_addrs(&lab),
        lab.daemon_logs()
    );
    let _tcp = lab.server_listen(PORT).expect("listener");

    let la = a
        .udhcpc()
        .unwrap_or_else(|e| panic!("A: {e:#}\n{}", lab.daemon_logs()));
    let lb = b
        .udhcpc()
        .unwrap_or_else(|e| panic!("B: {e:#}\n{}", lab.daemon_logs()));
    eprintln!("{}\n{}", a.describe(), b.describe());
    for (n, l, cl) in [("A", la, a), ("B", lb, b)] {
        assert!(
            in_block(l.ip()),
            "{n} got {} outside 198.18.0.248/29",
            l.addr
        );
        assert_eq!(l.addr.prefixlen, 29, "{n}: mask must be the block's /29");
        assert!(
            ![ip(248), ip(249), ip(255)].contains(&l.ip()),
            "{n} got the block's network, gateway or broadcast address {}",
            l.ip()
        );
        let def = cl.default_route().unwrap().expect("default route");
        assert_eq!(
            def.gateway,
            Some(ip(249)),
            "{n}: router must be the playground gateway"
        );
        let seen = cl
            .tcp_check(UPSTREAM_IP, PORT)
            .unwrap_or_else(|e| panic!("{n}: TCP via the gateway: {e:#}\n{}", cl.describe()));
        assert_eq!(seen, l.ip());
    }
    assert_ne!(la.ip(), lb.ip());

    // A reaches B directly.
    let _lb =
        b.ns.tcp_listen(Ipv4Addr::UNSPECIFIED, PORT + 1)
            .expect("listener in B");
    let seen = a
        .tcp_check(lb.ip(), PORT + 1)
        .unwrap_or_else(|e| panic!("TCP A→B: {e:#}\n{}\n{}", a.describe(), b.describe()));
    assert_eq!(seen, la.ip(), "B saw the wrong source");

    // An isolated client: /32 outside the block (highest free below it).
    let lc = c
        .udhcpc()
        .unwrap_or_else(|e| panic!("C: {e:#}\n{}", lab.daemon_logs()));
    assert_eq!(lc.addr.prefixlen, 32);
    assert!(
        !in_block(lc.ip()),
        "isolated client got {} inside the playground",
        lc.ip()
    );
    assert_eq!(
        lc.ip(),
        ip(247),
        "isolated addresses come from the top of the free pool"
    );
    // --isolation on: the isolated client cannot reach a playground client
    // through the router (the playground accept rule covers the block only),
    // while A still reaches B.
    assert!(
        c.tcp_check(lb.ip(), PORT + 1).is_err(),
        "isolated C reached playground B despite --isolation on\n{}",
        c.describe()
    );
    let seen = a
        .tcp_check(lb.ip(), PORT + 1)
        .unwrap_or_else(|e| panic!("TCP A→B with isolation on: {e:#}"));
    assert_eq!(seen, la.ip());
    lab.check_host_untouched().expect("host state");
}

/// Crafted: the block has exactly five leasable addresses (.250–.254); the
/// OFFER carries mask /29 and router/121 = gateway; a sixth playground client
/// gets nothing, and isolated clients never get block addresses.
#[test]
fn playground_block_limits() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("p3block", 1).expect("lab");
    let mut cfg = crafted::config(&lab);
    cfg.extra
        .extend(["--playground-size", "6", "--playground-oui", "02:1e:00"].map(String::from));
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket");
    let mut got = Vec::new();
    for i in 1..=5u8 {
        let (offer, ack) = dhcp
            .dora(mac(1, i), &[])
            .unwrap_or_else(|e| panic!("playground {i}: {e:#}\n{}", lab.daemon_logs()));
        assert_eq!(
            offer.opt_ip(options::SUBNET_MASK),
            Some(Ipv4Addr::new(255, 255, 255, 248))
        );
        assert_eq!(ack.opt_ip(options::ROUTER), Some(ip(249)));
        assert_eq!(
            ack.opt(options::CLASSLESS_ROUTES)
                .and_then(decode_classless_routes),
            Some(vec![ClasslessRoute {
                dest: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                router: ip(249)
            }])
        );
        got.push(ack.msg.yiaddr);
    }
    let first = got[0];
    got.sort();
    assert_eq!(got, (250..=254).map(ip).collect::<Vec<_>>());
    dhcp.expect_silence(
        &request(isodhcp::wire::options::MessageType::Discover, mac(1, 6)),
        To::Broadcast,
    )
    .expect("sixth playground client: the block is full");
    // Isolated client (other OUI): below the block.
    let iso = isodhcp::wire::Mac([0x02, 0x1f, 0, 0, 0, 1]);
    let o = dhcp.discover(iso, &[]).expect("isolated client");
    assert_eq!(o.msg.yiaddr, ip(247));
    assert_eq!(o.opt_ip(options::SUBNET_MASK), Some(Ipv4Addr::BROADCAST));
    // Released playground address goes back to the playground only.
    dhcp.release(mac(1, 1), first).unwrap();
    let o2 = dhcp
        .discover(isodhcp::wire::Mac([0x02, 0x1f, 0, 0, 0, 2]), &[])
        .expect("isolated 2");
    assert!(
        !in_block(o2.msg.yiaddr),
        "isolated client got playground address {}",
        o2.msg.yiaddr
    );
    let p = dhcp
        .discover(mac(1, 7), &[])
        .expect("playground after release");
    assert_eq!(
        p.msg.yiaddr, first,
        "released playground address must return to the playground"
    );
}
