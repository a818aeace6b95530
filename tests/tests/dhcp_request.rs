//! RFC 2131 §4.3.2 (REQUEST in SELECTING, INIT-REBOOT, RENEWING/REBINDING)
//! and the NAK rules of design.md §Protocol, with crafted frames.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test dhcp_request -- --test-threads=1`

use std::net::Ipv4Addr;
use std::time::Duration;

use isodhcp::wire::options::{self, MessageType};
use isodhcp_tests::SERVER_IP;
use isodhcp_tests::crafted::{
    Captured, To, has_route, lease_entry, lease_files_text, mac, request, setup, wait_lease_entry,
};

const WAIT: Duration = Duration::from_secs(5);

fn ip(h: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, h)
}

/// design.md §Protocol: a NAK carries exactly 53, 54 and 56, goes to
/// ff:ff:ff:ff:ff:ff / 255.255.255.255 and has no yiaddr.
fn assert_nak(r: &Captured, what: &str) {
    assert_eq!(r.kind(), Some(MessageType::Nak), "{what}: expected NAK");
    let mut codes = r.wire_codes();
    codes.sort_unstable();
    assert_eq!(
        codes,
        vec![53, 54, 56],
        "{what}: NAK must carry only options 53, 54, 56 (wire order {:?})",
        r.wire_codes()
    );
    assert_eq!(
        r.opt_ip(options::SERVER_ID),
        Some(SERVER_IP),
        "{what}: NAK option 54"
    );
    assert!(
        r.is_broadcast(),
        "{what}: NAK must go to ff:ff:ff:ff:ff:ff / 255.255.255.255, went to {} / {}",
        r.dst_mac,
        r.dst_ip
    );
    assert_eq!(r.msg.yiaddr, Ipv4Addr::UNSPECIFIED, "{what}: NAK yiaddr");
    assert!(
        r.payload.len() >= 300,
        "{what}: NAK payload not padded to 300"
    );
}

/// SELECTING with our server id and the offered address: commit (route and
/// durable record before the ACK), ACK to yiaddr at chaddr.
#[test]
fn selecting_commits_and_acks() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = setup("r2sel");
    let a = mac(1, 1);
    let (offer, ack) = dhcp
        .dora(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let x = offer.msg.yiaddr;
    // Commit happens before the ACK: no polling for route and record.
    assert!(
        has_route(&lab, x),
        "ACKed {x} but no route: {:?}",
        lab.server_routes()
    );
    let lf = lab.dir().join("leases.json");
    let e = lease_entry(&lf, a).unwrap_or_else(|| {
        panic!(
            "ACK sent before the lease was on disk:\n{}",
            lease_files_text(&lf)
        )
    });
    assert_eq!(e["ip"].as_str(), Some(x.to_string().as_str()));
    assert_eq!(ack.dst_mac, a);
    assert_eq!(
        ack.dst_ip, x,
        "ACK without broadcast flag/ciaddr goes to yiaddr"
    );
    assert_eq!(ack.opt_u32(options::LEASE_TIME), Some(600));
}

/// SELECTING naming another server: silence, and our offer is dropped (the
/// address is free again for the next client).
#[test]
fn selecting_other_server_is_silent_and_frees_offer() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = setup("r2other");
    let a = mac(2, 1);
    let x = dhcp
        .discover(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()))
        .msg
        .yiaddr;
    let mut r = request(MessageType::Request, a);
    r.options.set_ip(options::SERVER_ID, ip(2));
    r.options.set_ip(options::REQUESTED_IP, x);
    dhcp.expect_silence(&r, To::Broadcast)
        .expect("REQUEST for another server must not be answered");
    assert!(
        !has_route(&lab, x),
        "REQUEST for another server committed {x}"
    );
    let b = mac(2, 2);
    let y = dhcp.discover(b, &[]).expect("next client").msg.yiaddr;
    assert_eq!(
        y, x,
        "the offer to {a} must be dropped when it selected another server"
    );
}

/// SELECTING with our server id but a requested address that was not
/// offered: NAK (only 53/54/56, broadcast); nothing committed.
#[test]
fn selecting_wrong_address_naks() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = setup("r2wrong");
    let a = mac(3, 1);
    let x = dhcp
        .discover(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()))
        .msg
        .yiaddr;
    let wrong = ip(100);
    assert_ne!(x, wrong);
    let mut r = request(MessageType::Request, a);
    r.options.set_ip(options::SERVER_ID, SERVER_IP);
    r.options.set_ip(options::REQUESTED_IP, wrong);
    r.options
        .set(options::PARAM_REQUEST_LIST, vec![1, 3, 6, 51, 58, 59]);
    let nak = dhcp.expect_reply(&r).expect("NAK");
    assert_nak(&nak, "SELECTING wrong address");
    assert!(!has_route(&lab, wrong) && !has_route(&lab, x));
}

/// INIT-REBOOT (no 54, option 50, ciaddr 0): own lease → ACK; address of
/// another client → NAK; outside the pool → NAK; a free valid address is
/// adopted (commit + ACK).
#[test]
fn init_reboot_rules() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = setup("r2reboot");
    let lf = lab.dir().join("leases.json");
    let a = mac(4, 1);
    let (_, ack) = dhcp
        .dora(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let x = ack.msg.yiaddr;

    let reboot = |m, want: Ipv4Addr| {
        let mut r = request(MessageType::Request, m);
        r.options.set_ip(options::REQUESTED_IP, want);
        dhcp.expect_reply(&r)
    };

    let own = reboot(a, x).expect("INIT-REBOOT own lease");
    assert_eq!(
        own.kind(),
        Some(MessageType::Ack),
        "own lease must be ACKed"
    );
    assert_eq!(own.msg.yiaddr, x);

    let b = mac(4, 2);
    let foreign = reboot(b, x).expect("INIT-REBOOT foreign address");
    assert_nak(&foreign, "INIT-REBOOT for another client's address");
    assert_eq!(
        lease_entry(&lf, a).and_then(|e| e["ip"].as_str().map(String::from)),
        Some(x.to_string()),
        "the owner's lease must be untouched"
    );

    let outside = reboot(b, Ipv4Addr::new(198, 18, 1, 20)).expect("INIT-REBOOT outside");
    assert_nak(&outside, "INIT-REBOOT outside the pool");

    let server = reboot(b, SERVER_IP).expect("INIT-REBOOT server IP");
    assert_nak(&server, "INIT-REBOOT for the server IP");

    // A's own lease was re-ACKed; a different address from A is NAKed.
    let a_other = reboot(a, ip(50)).expect("INIT-REBOOT other address from owner");
    assert_nak(
        &a_other,
        "INIT-REBOOT for an address that is not the client's lease",
    );

    let free = ip(100);
    let adopt = reboot(b, free).expect("INIT-REBOOT free address");
    assert_eq!(
        adopt.kind(),
        Some(MessageType::Ack),
        "a free valid address must be adopted (server lost its state)"
    );
    assert_eq!(adopt.msg.yiaddr, free);
    assert!(has_route(&lab, free), "adopted {free} has no route");
    wait_lease_entry(&lf, b, free, WAIT).expect("adopted lease on disk");
}

/// RENEWING (ciaddr set, unicast): ACK unicast to ciaddr at the client MAC;
/// a ciaddr that is not the client's lease is NAKed (broadcast).
#[test]
fn renewing_unicast_and_nak() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = setup("r2renew");
    let a = mac(5, 1);
    let (_, ack) = dhcp
        .dora(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let x = ack.msg.yiaddr;
    let r = dhcp.renew(a, x).expect("RENEWING reply");
    assert_eq!(r.kind(), Some(MessageType::Ack));
    assert_eq!(r.msg.yiaddr, x);
    assert_eq!(r.msg.ciaddr, x, "ACK to a RENEWING client keeps ciaddr");
    assert_eq!(r.dst_ip, x, "RENEWING ACK must be unicast to ciaddr");
    assert_eq!(r.dst_mac, a, "RENEWING ACK must go to the client MAC");
    assert_eq!(r.src_ip, SERVER_IP);

    // Broadcast flag set but ciaddr set: still unicast to ciaddr (RFC 2131 §4.1).
    let mut rb = request(MessageType::Request, a);
    rb.ciaddr = x;
    rb.flags |= isodhcp::wire::dhcp::FLAG_BROADCAST;
    let r = dhcp
        .expect_reply_to(&rb, To::Broadcast)
        .expect("REBINDING reply");
    assert_eq!(r.kind(), Some(MessageType::Ack));
    assert_eq!(
        (r.dst_ip, r.dst_mac),
        (x, a),
        "ciaddr set → unicast to ciaddr"
    );

    // Wrong ciaddr: NAK, broadcast.
    let b = mac(5, 2);
    let mut bad = request(MessageType::Request, b);
    bad.ciaddr = x;
    let nak = dhcp
        .expect_reply_to(&bad, To::Server { src: x })
        .expect("NAK for a foreign ciaddr");
    assert_nak(&nak, "RENEWING with another client's ciaddr");
    assert!(has_route(&lab, x), "the owner's route must stay");
}

/// A REQUEST naming no address at all (no 50, no 54, ciaddr 0) is dropped;
/// the daemon still answers the next valid message.
#[test]
fn request_without_address_is_dropped() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = setup("r2noaddr");
    let a = mac(6, 1);
    let r = request(MessageType::Request, a);
    dhcp.expect_silence(&r, To::Broadcast)
        .expect("REQUEST without any address");
    // Also with an outstanding offer.
    let x = dhcp
        .discover(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()))
        .msg
        .yiaddr;
    let r = request(MessageType::Request, a);
    dhcp.expect_silence(&r, To::Broadcast)
        .expect("REQUEST without any address, offer outstanding");
    assert!(!has_route(&lab, x));
    let ack = dhcp.select(a, x, &[]).expect("control REQUEST");
    assert_eq!(ack.kind(), Some(MessageType::Ack));
}
