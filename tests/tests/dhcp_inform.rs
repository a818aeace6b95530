//! RFC 2131 §4.3.5 (INFORM) and design.md §Protocol: ACK without yiaddr and without a
//! lease time, with the mode's mask and router, DNS and custom options,
//! unicast to ciaddr; ciaddr outside the pool is ignored.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test dhcp_inform -- --test-threads=1`

use std::net::Ipv4Addr;

use isodhcp::wire::options::{self, MessageType};
use isodhcp_tests::crafted::{self, Dhcp, To, has_route, mac, request};
use isodhcp_tests::{DNS_IP, Lab, SERVER_IP, preflight};

#[test]
fn inform_acks_configuration_only() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("r5inform", 1).expect("building the lab");
    let mut cfg = crafted::config(&lab);
    cfg.extra
        .extend(["--dhcp-option", "42,ip,198.18.0.9"].map(String::from));
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket");

    let a = mac(1, 1);
    let ci = Ipv4Addr::new(198, 18, 0, 77);
    let mut m = request(MessageType::Inform, a);
    m.ciaddr = ci;
    m.options
        .set(options::PARAM_REQUEST_LIST, vec![1, 3, 6, 42]);
    let r = dhcp
        .expect_reply_to(&m, To::Server { src: ci })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert_eq!(
        r.kind(),
        Some(MessageType::Ack),
        "INFORM must be answered with ACK"
    );
    assert_eq!(
        r.msg.yiaddr,
        Ipv4Addr::UNSPECIFIED,
        "INFORM-ACK must not carry yiaddr"
    );
    assert_eq!(
        r.opt(options::LEASE_TIME),
        None,
        "INFORM-ACK must not carry a lease time"
    );
    assert_eq!(
        r.opt_ip(options::SUBNET_MASK),
        Some(Ipv4Addr::BROADCAST),
        "isolated mask"
    );
    assert_eq!(r.opt_ip(options::ROUTER), Some(SERVER_IP));
    assert_eq!(r.opt(options::DNS), Some(&DNS_IP.octets()[..]));
    assert_eq!(
        r.opt(42),
        Some(&[198, 18, 0, 9][..]),
        "custom option in INFORM-ACK"
    );
    assert_eq!(r.opt_ip(options::SERVER_ID), Some(SERVER_IP));
    assert_eq!(
        (r.dst_ip, r.dst_mac),
        (ci, a),
        "INFORM-ACK goes unicast to ciaddr"
    );
    assert!(!has_route(&lab, ci), "INFORM must not commit anything");

    // ciaddr outside the pool: ignored.
    let out = Ipv4Addr::new(198, 18, 3, 7);
    let mut m = request(MessageType::Inform, a);
    m.ciaddr = out;
    dhcp.expect_silence(&m, To::Server { src: out })
        .expect("INFORM from outside the pool");
    // Control.
    let mut m = request(MessageType::Inform, a);
    m.ciaddr = ci;
    let r = dhcp
        .expect_reply_to(&m, To::Server { src: ci })
        .expect("control INFORM");
    assert_eq!(r.kind(), Some(MessageType::Ack));
}
