//! RFC 2131 §4.3.1 (DISCOVER/OFFER) and the input rules of design.md §Protocol, with
//! crafted frames from a client namespace.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test dhcp_discover -- --test-threads=1`

use std::net::Ipv4Addr;
use std::time::Duration;

use isodhcp::wire::options::{self, MessageType};
use isodhcp_tests::crafted::{
    self, Dhcp, SERVER_MAC, To, has_route, lease_entry, lease_files_text, mac, request, setup,
    wait_lease_entry, with_broadcast,
};
use isodhcp_tests::{Lab, SERVER_IP, preflight};

const WAIT: Duration = Duration::from_secs(5);

fn ip(h: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, h)
}

/// design.md §Protocol: a DISCOVER commits nothing — no route, no lease-file record —
/// while a later full DORA of another client is applied and persisted (which
/// proves the daemon had time to write anything the DISCOVER would have).
#[test]
fn discover_commits_nothing() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("d1nocommit", 1).expect("building the lab");
    let hook_log = lab.dir().join("hook.log");
    let hook = lab.dir().join("hook.sh");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\necho \"$*\" >> {}\n", hook_log.display()),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mut cfg = crafted::config(&lab);
    cfg.extra
        .extend(["--hook-file".to_string(), hook.display().to_string()]);
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket in the client namespace");
    let a = mac(1, 1);
    let b = mac(1, 2);
    let offer = dhcp
        .discover(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let x = offer.msg.yiaddr;
    assert_eq!(offer.opt_ip(options::SERVER_ID), Some(SERVER_IP));
    assert_eq!(
        offer.opt_ip(options::SUBNET_MASK),
        Some(Ipv4Addr::BROADCAST)
    );
    assert_eq!(offer.opt_ip(options::ROUTER), Some(SERVER_IP));
    assert_eq!(
        (offer.src_ip, offer.src_port, offer.dst_port),
        (SERVER_IP, 67, 68)
    );
    assert_eq!(offer.src_mac, SERVER_MAC);

    // Control: B commits; its route and record appear.
    let (_, ack) = dhcp.dora(b, &[]).expect("control DORA");
    let y = ack.msg.yiaddr;
    lab.wait_server_route(y, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let lf = lab.dir().join("leases.json");
    wait_lease_entry(&lf, b, y, WAIT).expect("control lease on disk");

    assert!(
        !has_route(&lab, x),
        "a DISCOVER alone installed a route to {x}: {:?}",
        lab.server_routes()
    );
    assert!(
        lease_entry(&lf, a).is_none(),
        "a DISCOVER alone wrote a lease record for {a}:\n{}",
        lease_files_text(&lf)
    );
    // Hooks: B's `add` runs (asynchronously); A never gets one.
    let hooks = isodhcp_tests::wait_until("hook add for the control client", WAIT, || {
        let t = std::fs::read_to_string(&hook_log).unwrap_or_default();
        Ok(t.contains(&format!("add {b} {y}")).then_some(t))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert!(
        !hooks.to_lowercase().contains(&a.to_string()),
        "a DISCOVER alone ran a hook:\n{hooks}"
    );
    let state = crafted::lease_json(&lf).unwrap().to_string();
    assert!(
        !state.contains(&format!("\"{x}\"")),
        "the offered-only address {x} is on disk:\n{}",
        lease_files_text(&lf)
    );
}

/// design.md §Protocol: the offered address is held for the client: another MAC gets a
/// different address, the same MAC gets the same offer again; dynamic
/// addresses come from the top of the pool (design.md §Isolated mode).
#[test]
fn discover_holds_the_offer() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = setup("d1hold");
    let a = mac(2, 1);
    let b = mac(2, 2);
    let x = dhcp
        .discover(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()))
        .msg
        .yiaddr;
    let y = dhcp.discover(b, &[]).expect("second client").msg.yiaddr;
    assert_eq!(x, ip(254), "first offer must be the top of the pool");
    assert_ne!(x, y, "offer to {a} was not held: {b} got the same address");
    assert_eq!(y, ip(253));
    let again = dhcp.discover(a, &[]).expect("repeat DISCOVER").msg.yiaddr;
    assert_eq!(again, x, "a repeated DISCOVER must get the held offer");
}

/// RFC 2131 §4.1 / design.md §Protocol reply addressing for OFFER: without the broadcast
/// flag, unicast to yiaddr at chaddr; with it, broadcast. Source is the
/// server IP, UDP 67 → 68.
#[test]
fn offer_addressing() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = setup("d1addr");
    let a = mac(3, 1);
    let uni = dhcp
        .expect_reply(&request(MessageType::Discover, a))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert_eq!(uni.kind(), Some(MessageType::Offer));
    assert_eq!(
        uni.dst_mac, a,
        "OFFER without broadcast flag: Ethernet destination"
    );
    assert_eq!(
        uni.dst_ip, uni.msg.yiaddr,
        "OFFER without broadcast flag: IP destination"
    );
    assert_eq!(uni.src_ip, SERVER_IP);
    assert_eq!((uni.src_port, uni.dst_port), (67, 68));

    let b = mac(3, 2);
    let bc = dhcp
        .expect_reply(&with_broadcast(request(MessageType::Discover, b)))
        .expect("OFFER with broadcast flag");
    assert_eq!(bc.kind(), Some(MessageType::Offer));
    assert!(
        bc.is_broadcast(),
        "broadcast flag set: OFFER must go to ff:ff:ff:ff:ff:ff / 255.255.255.255, went to {} / {}",
        bc.dst_mac,
        bc.dst_ip
    );
    assert!(
        bc.msg.broadcast_flag(),
        "flags must be copied into the reply"
    );
    assert!(
        uni.payload.len() >= 300 && bc.payload.len() >= 300,
        "BOOTP payload must be padded to 300 bytes"
    );
}

/// design.md §Deployment, §Protocol: frames from a relay (giaddr != 0) are dropped; the same
/// DISCOVER without giaddr is answered.
#[test]
fn giaddr_set_is_dropped() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = setup("d1giaddr");
    let a = mac(4, 1);
    let mut d = request(MessageType::Discover, a);
    d.giaddr = Ipv4Addr::new(198, 18, 7, 1);
    dhcp.expect_silence(&d, To::Broadcast)
        .unwrap_or_else(|e| panic!("relayed DISCOVER: {e:#}"));
    let ok = dhcp
        .discover(a, &[])
        .unwrap_or_else(|e| panic!("control DISCOVER: {e:#}\n{}", lab.daemon_logs()));
    assert_eq!(ok.msg.giaddr, Ipv4Addr::UNSPECIFIED);
}

/// design.md §Classification: chaddr must equal the Ethernet source; a mismatch is dropped.
#[test]
fn chaddr_not_ethernet_source_is_dropped() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = setup("d1spoof");
    let a = mac(5, 1);
    let other = mac(5, 2);
    let d = request(MessageType::Discover, a);
    dhcp.expect_silence_as(&d, other, To::Broadcast)
        .unwrap_or_else(|e| panic!("spoofed chaddr: {e:#}"));
    // Also as a REQUEST for an address.
    let mut r = request(MessageType::Request, a);
    r.options.set_ip(options::REQUESTED_IP, ip(100));
    dhcp.expect_silence_as(&r, other, To::Broadcast)
        .unwrap_or_else(|e| panic!("spoofed chaddr REQUEST: {e:#}"));
    assert!(
        !has_route(&lab, ip(100)),
        "spoofed REQUEST committed 198.18.0.100"
    );
    dhcp.discover(a, &[])
        .unwrap_or_else(|e| panic!("control DISCOVER: {e:#}\n{}", lab.daemon_logs()));
}

/// design.md §Protocol: anything but BOOTREQUEST / htype 1 / hlen 6 is dropped, never a
/// crash; the daemon keeps answering.
#[test]
fn non_bootrequest_is_dropped() {
    isodhcp_tests::needs_root!();
    let (lab, mut d, dhcp) = setup("d1bad");
    let a = mac(6, 1);
    let mut m = request(MessageType::Discover, a);
    m.op = 2;
    dhcp.expect_silence(&m, To::Broadcast).expect("op 2");
    let mut m = request(MessageType::Discover, a);
    m.htype = 6;
    dhcp.expect_silence(&m, To::Broadcast).expect("htype 6");
    let mut m = request(MessageType::Discover, a);
    m.hlen = 16;
    dhcp.expect_silence(&m, To::Broadcast).expect("hlen 16");
    assert!(d.is_running(), "daemon died:\n{}", lab.daemon_logs());
    dhcp.discover(a, &[])
        .unwrap_or_else(|e| panic!("control DISCOVER: {e:#}\n{}", lab.daemon_logs()));
}
