//! Stock clients against the XDP OFFER responder (design.md §Offer
//! responder), in namespaces: dhclient, dhcpcd and udhcpc lease through the
//! kernel's OFFER (the engine sends none) in native and generic mode; the
//! daemon's path still serves them when the stripe is empty; a restart
//! behind the pinned program offers again, and a stopped daemon's program
//! offers nothing.
//!
//! Native XDP_TX on a veth reaches the peer only if the peer runs an XDP
//! program: the lab attaches the object's pass-through program to the
//! switch's port towards the server (`Lab::pass_through_xdp`).
//!
//! `cargo test -p isodhcp-tests --release --test xdp_offer_clients -- --test-threads=1`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use isodhcp::wire::options::MessageType;
use isodhcp_tests::control_world::cli_json;
use isodhcp_tests::crafted::{Dhcp, request};
use isodhcp_tests::daemon::{bpftool_json, sum_field};
use isodhcp_tests::util::wait_until;
use isodhcp_tests::{ClientKind, Daemon, DaemonConfig, Lab, XdpMode, preflight};
use serde_json::Value;

const KINDS: [ClientKind; 3] = [ClientKind::Dhclient, ClientKind::Dhcpcd, ClientKind::Udhcpc];

/// A lab; in native mode with the pass-through program on the switch's
/// port towards the server.
fn lab(tag: &str, clients: usize, mode: XdpMode) -> Lab {
    preflight().expect("preflight");
    let lab = Lab::new(tag, clients).expect("lab");
    if mode == XdpMode::Native {
        lab.pass_through_xdp("psrv")
            .expect("pass-through XDP on the switch port");
    }
    lab
}

fn config(lab: &Lab, mode: XdpMode) -> DaemonConfig {
    let mut cfg = DaemonConfig::for_lab(lab).expect("config");
    cfg.xdp = mode;
    cfg
}

fn sock(lab: &Lab) -> PathBuf {
    let s = lab.dir().join("isodhcp_srv0.sock");
    wait_until("control socket", Duration::from_secs(10), || {
        Ok(s.exists().then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    s
}

fn status(lab: &Lab) -> Value {
    cli_json(&sock(lab), &["--status"])
}

fn counter(pins: &Path, name: &str) -> u64 {
    let dump = bpftool_json(&[
        "map",
        "dump",
        "pinned",
        pins.join("counters").to_str().unwrap(),
    ])
    .expect("bpftool map dump counters");
    sum_field(&dump, name)
}

/// Every stock client leases through the kernel's OFFER: the engine sends
/// no OFFER, the program sent one per client and let each REQUEST through
/// as a cookie.
fn stock_clients_through_xdp(tag: &str, mode: XdpMode) {
    isodhcp_tests::needs_root!();
    let lab = lab(tag, 3, mode);
    let mut cfg = config(&lab, mode);
    // Well under a quarter of the /24: every claim is refilled, so no
    // client can hash to a slot its predecessor emptied (the daemon's path
    // would answer it, as designed, and the engine count an OFFER).
    cfg.extra = vec!["--xdp-offer-stripe".into(), "16".into()];
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let st = status(&lab);
    assert_eq!(st["datapath"], mode.as_str(), "{st}");
    assert_eq!(st["offers"]["xdp_stripe"], 16, "{st}");
    assert_eq!(st["offers"]["xdp_stripe_filled"], 16, "{st}");
    for (i, kind) in KINDS.iter().enumerate() {
        let c = lab.client(i);
        let lease = c
            .acquire(*kind)
            .unwrap_or_else(|e| panic!("{kind} got no lease: {e:#}\n{}", lab.daemon_logs()));
        lab.wait_server_route(lease.ip(), Duration::from_secs(5))
            .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
    }
    let st = status(&lab);
    let msgs = &st["messages"];
    assert_eq!(msgs["offers"], 0, "the engine offered: {st}");
    assert!(msgs["stripe_claims"].as_u64().unwrap() >= 3, "{st}");
    assert_eq!(st["offers"]["xdp_stripe_filled"], 16, "{st}");
    let a = &st["admission"];
    assert!(a["tx_offer"].as_u64().unwrap() >= 3, "{st}");
    assert!(a["pass_cookie"].as_u64().unwrap() >= 3, "{st}");
    lab.check_host_untouched().expect("host state");
}

#[test]
fn stock_clients_lease_through_the_xdp_offer_native() {
    stock_clients_through_xdp("offnat", XdpMode::Native);
}

#[test]
fn stock_clients_lease_through_the_xdp_offer_generic() {
    stock_clients_through_xdp("offgen", XdpMode::Generic);
}

/// A pool too small to fill the stripe (a /30: one address for clients; the
/// stripe leaves three quarters of the free pool to the daemon's own path):
/// the program finds no address and the daemon answers as before.
#[test]
fn clients_lease_through_the_daemon_when_the_stripe_is_empty() {
    isodhcp_tests::needs_root!();
    let lab = lab("offempty", 1, XdpMode::Native);
    let mut cfg = config(&lab, XdpMode::Native);
    cfg.pool = Some("198.18.0.0/30".into());
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let lease = lab
        .client(0)
        .acquire(ClientKind::Dhclient)
        .unwrap_or_else(|e| panic!("no lease: {e:#}\n{}", lab.daemon_logs()));
    let st = status(&lab);
    eprintln!("{} {st}", lease.addr);
    assert_eq!(st["offers"]["xdp_stripe"], 1, "{st}");
    assert_eq!(st["offers"]["xdp_stripe_filled"], 0, "{st}");
    assert!(st["messages"]["offers"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["admission"]["tx_offer"], 0, "{st}");
    assert!(
        st["admission"]["offer_no_address"].as_u64().unwrap() >= 1,
        "{st}"
    );
}

/// One DISCOVER from a fresh MAC of client `i`'s port; whether an OFFER
/// came back within a second.
fn offered(lab: &Lab, i: usize, n: u8) -> bool {
    let port = Dhcp::open(lab.client(i)).expect("raw port");
    let m = isodhcp_tests::crafted::mac(0x77, n);
    let mut d = request(MessageType::Discover, m);
    d.xid = 0x0ff0_0000 | u32::from(n);
    port.send_as(&d, m, isodhcp_tests::crafted::To::Broadcast)
        .expect("send DISCOVER");
    let deadline = Instant::now() + Duration::from_secs(1);
    matches!(port.wait_reply(d.xid, deadline), Ok(Some(r)) if r.kind() == Some(MessageType::Offer))
}

/// The pinned program outlives the daemon: stopped, it offers nothing (the
/// heartbeat is void); restarted behind the same pinned link, it offers
/// again and a stock client leases through it.
#[test]
fn the_pinned_program_offers_only_for_a_live_daemon() {
    isodhcp_tests::needs_root!();
    let lab = lab("offpin", 2, XdpMode::Native);
    let cfg = config(&lab, XdpMode::Native);
    let pins = lab.pin_dir();
    let mut d: Daemon = lab.start_isodhcp(&cfg).expect("isodhcp start");
    assert!(
        offered(&lab, 1, 1),
        "a live daemon's program offers\n{}",
        lab.daemon_logs()
    );
    let tx = counter(&pins, "tx_offer");
    assert!(tx >= 1, "the OFFER came from XDP");
    d.signal(libc::SIGTERM).expect("SIGTERM");
    d.wait_exit(Duration::from_secs(10)).expect("exit");
    assert!(pins.join("counters").exists(), "the program stays pinned");
    assert!(!offered(&lab, 1, 2), "a stopped daemon's program offered");
    assert_eq!(
        counter(&pins, "tx_offer"),
        tx,
        "no XDP OFFER without the daemon"
    );
    let _d2 = lab.start_isodhcp(&cfg).expect("isodhcp restart");
    let lease = lab
        .client(0)
        .acquire(ClientKind::Dhcpcd)
        .unwrap_or_else(|e| panic!("no lease after restart: {e:#}\n{}", lab.daemon_logs()));
    let st = status(&lab);
    eprintln!("{} {st}", lease.addr);
    assert_eq!(st["messages"]["offers"], 0, "{st}");
    assert!(
        st["messages"]["stripe_claims"].as_u64().unwrap() >= 1,
        "{st}"
    );
}

/// Native XDP on a veth whose peer runs no XDP program: XDP_TX frames
/// vanish. The daemon sees the driver count them as errors, turns the
/// responder off, says so, and the client's next DISCOVER gets the
/// daemon's OFFER.
#[test]
fn the_responder_turns_itself_off_where_xdp_tx_fails() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("offnopeer", 1).expect("lab");
    let mut d = lab
        .start_isodhcp(&config(&lab, XdpMode::Native))
        .expect("isodhcp start");
    let lease = lab
        .client(0)
        .acquire(ClientKind::Dhclient)
        .unwrap_or_else(|e| panic!("no lease: {e:#}\n{}", lab.daemon_logs()));
    d.wait_for_log("XDP OFFER responder off", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let st = status(&lab);
    eprintln!("{} {st}", lease.addr);
    assert!(st["admission"]["tx_offer"].as_u64().unwrap() >= 1, "{st}");
    assert!(st["messages"]["offers"].as_u64().unwrap() >= 1, "{st}");
    assert_eq!(st["offers"]["xdp_stripe"], 0, "{st}");
}
