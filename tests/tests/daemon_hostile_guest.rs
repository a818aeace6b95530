//! A hostile guest on the wire, in the namespace lab: each test performs an
//! attack with crafted frames from a client namespace and checks what an
//! operator sees afterwards (`--status`, a stock dhclient).
//!
//! `cargo test -p isodhcp-tests --release --test daemon_hostile_guest -- --test-threads=1`

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use isodhcp::wire::Mac;
use isodhcp::wire::frame::{self, Addressing, DHCP_CLIENT_PORT, DHCP_SERVER_PORT};
use isodhcp::wire::options::{self, MessageType};
use isodhcp_tests::control_world::cli_json;
use isodhcp_tests::crafted::{self, Dhcp, request};
use isodhcp_tests::xdp_run::with_tags;
use isodhcp_tests::{Lab, XdpMode, preflight, wait_until};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn sock(lab: &Lab) -> PathBuf {
    lab.dir().join("isodhcp_srv0.sock")
}

fn status(lab: &Lab) -> Value {
    let s = sock(lab);
    wait_until("control socket", WAIT, || Ok(s.exists().then_some(())))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    cli_json(&s, &["--status"])
}

fn attacker(n: u32) -> Mac {
    let b = n.to_be_bytes();
    Mac([0x02, 0xba, 0xd0, b[1], b[2], b[3]])
}

/// The daemon on a /26 (61 addresses) with limits no test here reaches.
fn start_on_a_26(lab: &Lab) -> isodhcp_tests::Daemon {
    let mut cfg = crafted::config(lab);
    cfg.pool = Some("198.18.0.0/26".into());
    cfg.extra.extend(
        [
            "--new-client-rate",
            "100000",
            "--global-rate-limit",
            "100000",
        ]
        .map(String::from),
    );
    lab.start_isodhcp(&cfg).expect("isodhcp start")
}

#[test]
fn init_reboot_cycles_from_new_macs_leave_the_pool_whole() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("hgreboot", 2).expect("lab");
    let _d = start_on_a_26(&lab);
    let full = status(&lab)["free_addresses"].as_u64().unwrap();
    assert_eq!(full, 61, "a /26 minus network, broadcast and server");

    let dhcp = Dhcp::open(lab.client(0)).expect("raw port");
    let target = Ipv4Addr::new(198, 18, 0, 10);
    let mut adopted = 0;
    for n in 0..500 {
        let m = attacker(n);
        // DISCOVER: the server holds an address for the offer.
        let offer = dhcp
            .discover(m, &[])
            .unwrap_or_else(|e| panic!("cycle {n}: {e:#}\n{}", lab.daemon_logs()));
        assert_ne!(offer.msg.yiaddr, target);
        // INIT-REBOOT for another free address, then RELEASE it.
        let mut r = request(MessageType::Request, m);
        r.options.set_ip(options::REQUESTED_IP, target);
        let reply = dhcp.expect_reply(&r).expect("INIT-REBOOT answered");
        if reply.kind() == Some(MessageType::Ack) {
            adopted += 1;
            // An adopted lease is short until its first renewal.
            assert_eq!(reply.opt_u32(options::LEASE_TIME), Some(120));
            dhcp.release(m, target).expect("release");
        }
    }
    assert!(adopted >= 32, "the adoption path ran ({adopted} times)");
    // Nothing leaked: every address is free again (RELEASEs have no reply,
    // so wait until the last one is handled).
    wait_until("the whole pool free", WAIT, || {
        let v = status(&lab);
        Ok((v["free_addresses"].as_u64() == Some(full)
            && v["offers"]["outstanding"].as_u64() == Some(0))
        .then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {}", status(&lab)));
    // And a stock client leases at once.
    let t = Instant::now();
    let l = lab.client(1).dhclient().expect("dhclient");
    assert!(l.ip() > target, "{}", l.ip());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "dhclient took {:?}",
        t.elapsed()
    );
}

/// A broadcast DISCOVER from `mac` with `tags` (TPID, TCI) after the MACs.
fn tagged_discover(mac: Mac, tags: &[(u16, u16)]) -> Vec<u8> {
    let payload = request(MessageType::Discover, mac).emit(None, 0).unwrap();
    let f = frame::build(
        &Addressing {
            src_mac: mac,
            dst_mac: Mac::BROADCAST,
            src_ip: Ipv4Addr::UNSPECIFIED,
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: DHCP_CLIENT_PORT,
            dst_port: DHCP_SERVER_PORT,
        },
        &payload,
    )
    .unwrap();
    with_tags(f, tags)
}

#[test]
fn tagged_flood_dies_in_xdp_with_named_counters() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("hgvlan", 1).expect("lab");
    lab.tags_on_the_wire().expect("VLAN offload off");
    let mut cfg = crafted::config(&lab);
    cfg.xdp = XdpMode::Auto;
    cfg.extra
        .extend(["--new-client-rate", "5"].map(String::from));
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let before = status(&lab);
    assert_ne!(before["datapath"], "off", "XDP must be attached: {before}");

    let dhcp = Dhcp::open(lab.client(0)).expect("raw port");
    let wraps: [&[(u16, u16)]; 3] = [
        &[(0x88a8, 0)],
        &[(0x88a8, 0), (0x8100, 0)],
        &[(0x8100, 0), (0x8100, 0)],
    ];
    for n in 0..600u32 {
        let f = tagged_discover(attacker(n), wraps[n as usize % 3]);
        dhcp.port.send(&f).expect("send");
    }
    // Every frame is accounted for in the kernel's named counters.
    let v = wait_until("the flood counted", WAIT, || {
        let v = status(&lab);
        let a = &v["admission"];
        let seen = a["drop_new_budget"].as_u64().unwrap_or(0)
            + a["pass_stack"].as_u64().unwrap_or(0)
            + a["redirect"].as_u64().unwrap_or(0);
        Ok((seen >= 600).then_some(v))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {}", status(&lab)));
    let a = &v["admission"];
    assert!(a["drop_new_budget"].as_u64().unwrap() >= 580, "{a}");
    // The engine saw only what won the new-client budget.
    let offers = v["messages"]["offers"].as_u64().unwrap();
    assert!(
        offers <= 20,
        "{offers} offers: tagged frames walked around XDP: {v}"
    );
}

#[test]
fn dhcp_tagged_for_another_vlan_is_not_answered() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("hgother", 1).expect("lab");
    let _d = lab
        .start_isodhcp(&crafted::config(&lab))
        .expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw port");
    let m = attacker(1);
    // Tagged for VLAN 10, which this interface does not carry: the kernel
    // marks it "other host" and nobody here may answer it.
    for tags in [
        &[(0x8100, 10)][..],
        &[(0x88a8, 7)],
        &[(0x88a8, 0), (0x8100, 10)],
    ] {
        dhcp.port.drain();
        let f = tagged_discover(m, tags);
        let xid = isodhcp::wire::dhcp::Message::parse(frame::parse(&f).unwrap().payload)
            .unwrap()
            .xid;
        dhcp.port.send(&f).unwrap();
        let r = dhcp
            .wait_reply(xid, Instant::now() + crafted::SILENCE)
            .unwrap();
        assert!(r.is_none(), "DISCOVER tagged {tags:x?} was answered: {r:?}");
    }
    // The daemon is alive and answers the same client untagged.
    dhcp.discover(m, &[]).expect("untagged DISCOVER answered");
}

#[test]
fn squatters_and_a_full_quarantine_do_not_block_allocation() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("hgsquat", 1).expect("lab");
    let _d = start_on_a_26(&lab);
    let dhcp = Dhcp::open(lab.client(0)).expect("raw port");
    // Fill the quarantine (half of a /26): lease and DECLINE, 32 times.
    // Isolated clients take the highest free address: .62 down to .31.
    for n in 0..32 {
        let m = attacker(1000 + n);
        let (_, ack) = dhcp.dora(m, &[]).expect("dora");
        assert_eq!(ack.msg.yiaddr, Ipv4Addr::new(198, 18, 0, 62 - n as u8));
        dhcp.decline(m, ack.msg.yiaddr).expect("decline");
    }
    wait_until("quarantine full", WAIT, || {
        Ok((status(&lab)["quarantine"].as_u64() == Some(32)).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {}", status(&lab)));
    // Squat the five highest free addresses: answer for them from the
    // guest side so the server's neighbour table shows them alive.
    let c = lab.client(0);
    c.ns.ip(&["route", "add", "198.18.0.1", "dev", &c.ifname])
        .unwrap();
    for h in 26..=30u8 {
        let a = format!("198.18.0.{h}");
        c.ns.ip(&["addr", "add", &format!("{a}/32"), "dev", &c.ifname])
            .unwrap();
        let st =
            c.ns.exec_cmd("busybox")
                .args(["ping", "-c", "1", "-W", "2", "-I", &a, "198.18.0.1"])
                .output()
                .expect("ping");
        assert!(st.status.success(), "ping from {a}: {st:?}");
    }
    // A new client still gets an address at once, and not a squatted one.
    let offer = dhcp
        .discover(attacker(1), &[])
        .expect("an OFFER despite the squatters");
    let got = offer.msg.yiaddr;
    assert!(
        got < Ipv4Addr::new(198, 18, 0, 26),
        "offered squatted {got}"
    );
}
