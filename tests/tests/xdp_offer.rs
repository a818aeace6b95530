//! The XDP OFFER responder in the kernel (design.md §Offer responder), run
//! through `BPF_PROG_TEST_RUN` on frames from the daemon's codec: an
//! eligible DISCOVER leaves as the engine's own OFFER (XDP_TX), a REQUEST
//! for the offered address passes on its own budget, and everything only
//! the daemon may answer takes the path it took before.
//!
//! Needs root and the object built by `cargo xtask build-ebpf`. Budgets
//! refill in real time; every limit here is rate 0 or spent back to back.
//!
//! `cargo test -p isodhcp-tests --release --test xdp_offer -- --test-threads=1`

use std::net::Ipv4Addr;

use isodhcp::engine::{Effect, Engine, EngineConfig, Input};
use isodhcp::system::xdp::offer::{offer_cfg, stripe_slot};
use isodhcp::wire::Mac;
use isodhcp::wire::dhcp::{BOOTREQUEST, HTYPE_ETHERNET, Message};
use isodhcp::wire::frame::{self, Addressing, DHCP_CLIENT_PORT, DHCP_SERVER_PORT};
use isodhcp::wire::options::{self, MessageType};
use isodhcp::wire::view::MessageView;
use isodhcp_common::{Limits, OfferCfg, StripeSlot, mac_key, oui_key, stripe_index};
use isodhcp_tests::xdp_run::{XdpRun, action, expect, limits, monotonic_ns, udp, with_tags};

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER_MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0xff, 0x00, 0x01];
const T0: u64 = 1_800_000_000_000;

fn mac(n: u16) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0x00, 0x5e, 0x20, b[0], b[1]]
}

/// `l` with roomy OFFER and cookie budgets.
fn offers(mut l: Limits) -> Limits {
    l.offer_rate = 1000;
    l.offer_burst = 1000;
    l.cookie_rate = 1000;
    l.cookie_burst = 1000;
    l
}

fn engine_cfg(stripe: u32) -> EngineConfig {
    EngineConfig {
        dns: vec![Ipv4Addr::new(198, 18, 0, 53), Ipv4Addr::new(198, 18, 0, 54)],
        offer_stripe: stripe,
        stripe_key: 0xfeed_beef,
        ..EngineConfig::new(SERVER, Mac(SERVER_MAC), "198.18.0.0/24".parse().unwrap())
    }
}

fn engine(stripe: u32) -> Engine {
    let mut e = Engine::new(engine_cfg(stripe), &[]).expect("engine");
    e.start(T0, vec![], vec![]);
    e
}

/// The program with a stripe from `e` and the responder on.
struct Responder {
    x: XdpRun,
    e: Engine,
    cfg: OfferCfg,
}

impl Responder {
    fn new(l: Limits) -> Responder {
        let mut x = XdpRun::load().expect("loading the XDP program");
        x.set_limits(l).expect("limits");
        let e = engine(32);
        let mono = monotonic_ns();
        for u in e.stripe_slots() {
            x.set_stripe(u.index, stripe_slot(&u, T0, mono))
                .expect("stripe");
        }
        let cfg = offer_cfg(&e, mono + 60_000_000_000).expect("offer cfg");
        x.set_offer(&cfg).expect("offer_cfg");
        Responder { x, e, cfg }
    }

    fn slot(&self, m: [u8; 6]) -> (u32, Ipv4Addr) {
        let (len, key) = self.e.stripe();
        let i = stripe_index(key, mac_key(m), len);
        (
            i,
            self.e.stripe_slots()[i as usize].cur.expect("slot filled"),
        )
    }
}

fn request(m: [u8; 6], t: MessageType) -> Message {
    let mut msg = Message {
        op: BOOTREQUEST,
        htype: HTYPE_ETHERNET,
        hlen: 6,
        xid: 0x0bad_cafe,
        ..Message::default()
    };
    msg.chaddr[..6].copy_from_slice(&m);
    msg.options.set(options::MESSAGE_TYPE, vec![t as u8]);
    msg
}

/// A DISCOVER as stock clients send it: option 55 of dhcpcd, padded BOOTP.
fn discover(m: [u8; 6], prl: &[u8], broadcast: bool) -> Message {
    let mut d = request(m, MessageType::Discover);
    d.options.set(options::PARAM_REQUEST_LIST, prl.to_vec());
    d.options
        .set(options::MAX_MESSAGE_SIZE, 1472u16.to_be_bytes().to_vec());
    if broadcast {
        d.flags = 0x8000;
    }
    d
}

fn select(m: [u8; 6], ip: Ipv4Addr, server: Ipv4Addr) -> Message {
    let mut r = request(m, MessageType::Request);
    r.options.set_ip(options::SERVER_ID, server);
    r.options.set_ip(options::REQUESTED_IP, ip);
    r
}

fn frame_of(msg: &Message) -> Vec<u8> {
    let m: [u8; 6] = msg.chaddr[..6].try_into().unwrap();
    udp(m, 68, 67, &msg.emit(None, 0).expect("emit"))
}

/// The OFFER frame the daemon would send for `d`, with the stripe's
/// address in `yiaddr` and the kernel's UDP checksum (0).
fn engine_offer(d: &Message, ip: Ipv4Addr) -> Vec<u8> {
    let mut reference = engine(0);
    let payload = d.emit(None, 0).expect("emit");
    let view = MessageView::parse(&payload).expect("view");
    let fx = reference.handle(
        T0,
        Input::Dhcp {
            msg: &view,
            in_use: &[],
        },
    );
    let r = fx
        .iter()
        .find_map(|f| match f {
            Effect::Send(r) => Some(r),
            _ => None,
        })
        .expect("the engine offers");
    let mut out = r.payload.clone();
    out[16..20].copy_from_slice(&ip.octets());
    let dst_ip = if r.dst_ip.is_broadcast() {
        r.dst_ip
    } else {
        ip
    };
    let a = Addressing {
        src_mac: Mac(SERVER_MAC),
        dst_mac: r.dst_mac,
        src_ip: SERVER,
        dst_ip,
        src_port: DHCP_SERVER_PORT,
        dst_port: DHCP_CLIENT_PORT,
    };
    let mut f = frame::build(&a, &out).expect("build");
    f[40..42].copy_from_slice(&[0, 0]);
    f
}

#[test]
fn eligible_discover_leaves_as_the_engines_offer() {
    let r = Responder::new(offers(limits((1, 1000), (1, 1000), (0, 0))));
    let prls: [&[u8]; 4] = [
        &[1, 121, 33, 3, 6, 15, 26, 28, 42, 51, 54, 58, 59, 119],
        &[1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42],
        &[1, 3, 6, 12, 15, 28, 42],
        &[],
    ];
    // Twice over, the second time in reverse: the program's options cache
    // (per CPU) misses on a new option 55 and hits on a repeated one, and
    // either way the frame is the engine's.
    for n in (0..prls.len()).chain((0..prls.len()).rev()) {
        let prl = prls[n];
        for broadcast in [false, true] {
            let m = mac(n as u16);
            let d = discover(m, prl, broadcast);
            let o = r.x.run(&frame_of(&d)).expect("run");
            expect(
                &o,
                action::TX,
                &[("dhcp", 1), ("tx_offer", 1)],
                "eligible DISCOVER",
            );
            let want = engine_offer(&d, r.slot(m).1);
            assert_eq!(o.frame_out, want, "prl {prl:?} broadcast {broadcast}");
        }
    }
}

#[test]
fn cookie_request_passes_with_the_new_client_budget_at_zero() {
    let mut r = Responder::new(offers(limits((1, 1000), (1, 1000), (0, 0))));
    let m = mac(1);
    let (i, ip) = r.slot(m);
    let o = r.x.run(&frame_of(&select(m, ip, SERVER))).expect("run");
    expect(
        &o,
        action::PASS,
        &[("dhcp", 1), ("pass_cookie", 1), ("pass_stack", 1)],
        "cookie REQUEST",
    );
    let wrong_ip = Ipv4Addr::from(u32::from(ip) ^ 1);
    for (what, req) in [
        ("wrong option 50", select(mac(2), wrong_ip, SERVER)),
        (
            "wrong option 54",
            select(mac(2), r.slot(mac(2)).1, Ipv4Addr::new(198, 18, 0, 2)),
        ),
    ] {
        let o = r.x.run(&frame_of(&req)).expect("run");
        expect(
            &o,
            action::DROP,
            &[("dhcp", 1), ("drop_new_budget", 1)],
            what,
        );
    }
    // After a refill the old address passes for a while, then no more.
    let next = Ipv4Addr::new(198, 18, 0, 7);
    let slot = |until| StripeSlot {
        cur: u32::from(next),
        prev: u32::from(ip),
        prev_until_ns: until,
    };
    r.x.set_stripe(i, slot(monotonic_ns() + 10_000_000_000))
        .unwrap();
    let o = r.x.run(&frame_of(&select(m, ip, SERVER))).expect("run");
    expect(
        &o,
        action::PASS,
        &[("dhcp", 1), ("pass_cookie", 1), ("pass_stack", 1)],
        "prev in time",
    );
    r.x.set_stripe(i, slot(monotonic_ns())).unwrap();
    let o = r.x.run(&frame_of(&select(m, ip, SERVER))).expect("run");
    expect(
        &o,
        action::DROP,
        &[("dhcp", 1), ("drop_new_budget", 1)],
        "prev expired",
    );
}

#[test]
fn cookie_requests_have_a_budget_of_their_own() {
    let mut l = offers(limits((1, 1000), (1, 1000), (0, 0)));
    l.cookie_rate = 0;
    l.cookie_burst = 2;
    let r = Responder::new(l);
    let m = mac(3);
    let f = frame_of(&select(m, r.slot(m).1, SERVER));
    for _ in 0..2 {
        let o = r.x.run(&f).expect("run");
        expect(
            &o,
            action::PASS,
            &[("dhcp", 1), ("pass_cookie", 1), ("pass_stack", 1)],
            "within",
        );
    }
    let o = r.x.run(&f).expect("run");
    expect(
        &o,
        action::DROP,
        &[("dhcp", 1), ("cookie_rate", 1), ("drop_new_budget", 1)],
        "over",
    );
}

#[test]
fn what_only_the_daemon_may_answer_takes_todays_path() {
    let roomy = offers(limits((1, 1000), (1, 1000), (1, 1000)));
    let prl = [1u8, 3, 6];
    let mut r = Responder::new(roomy);
    let today = |r: &Responder, f: &[u8], extra: &[(&str, u64)], what: &str| {
        let o = r.x.run(f).expect("run");
        let mut want = vec![("dhcp", 1), ("pass_stack", 1)];
        want.extend_from_slice(extra);
        expect(&o, action::PASS, &want, what);
        assert_eq!(o.frame_out, f, "{what}: frame untouched");
    };
    let inel = [("offer_ineligible", 1)];
    let mut relayed = discover(mac(10), &prl, false);
    relayed
        .options
        .set(options::RELAY_AGENT_INFO, vec![1, 2, 0, 1]);
    today(&r, &frame_of(&relayed), &inel, "option 82");
    let tagged = with_tags(frame_of(&discover(mac(11), &prl, false)), &[(0x8100, 0)]);
    today(&r, &tagged, &inel, "priority tag");
    // Classification rules exist: the daemon says so in the configuration.
    r.cfg.classified_rules = 1;
    r.x.set_offer(&r.cfg).unwrap();
    r.x.classify(mac_key(mac(12))).unwrap();
    today(
        &r,
        &frame_of(&discover(mac(12), &prl, false)),
        &inel,
        "classified MAC",
    );
    let oui = [0x00, 0x1b, 0x63, 0, 0, 1];
    r.x.classify(oui_key(mac_key(oui))).unwrap();
    today(
        &r,
        &frame_of(&discover(oui, &prl, false)),
        &inel,
        "classified OUI",
    );
    let mut vendor = discover(mac(13), &prl, false);
    vendor
        .options
        .set(options::VENDOR_CLASS, b"MSFT 5.0".to_vec());
    let o = r.x.run(&frame_of(&vendor)).expect("run");
    expect(
        &o,
        action::TX,
        &[("dhcp", 1), ("tx_offer", 1)],
        "vendor class, no vendor rule",
    );
    let mut with_rules = r.cfg;
    with_rules.vendor_rules = 1;
    r.x.set_offer(&with_rules).unwrap();
    today(
        &r,
        &frame_of(&vendor),
        &inel,
        "vendor class with vendor rules",
    );
    // An empty slot: nothing to offer.
    let (i, _) = r.slot(mac(14));
    r.x.set_stripe(i, StripeSlot::default()).unwrap();
    today(
        &r,
        &frame_of(&discover(mac(14), &prl, false)),
        &[("offer_no_address", 1)],
        "empty slot",
    );
    // A stale heartbeat: no OFFER for a daemon that is gone.
    let mut stale = r.cfg;
    stale.alive_until_ns = monotonic_ns();
    r.x.set_offer(&stale).unwrap();
    today(
        &r,
        &frame_of(&discover(mac(15), &prl, false)),
        &inel,
        "stale heartbeat",
    );
    // The responder off (no configuration written): no offer counters at all.
    r.x.set_offer(&OfferCfg::default()).unwrap();
    today(
        &r,
        &frame_of(&discover(mac(16), &prl, false)),
        &[],
        "responder off",
    );
}

#[test]
fn known_clients_and_trusted_macs_are_answered_by_the_daemon() {
    let mut r = Responder::new(offers(limits((1, 1000), (1, 1000), (0, 0))));
    r.x.known(mac(20)).unwrap();
    r.x.trust(mac(21)).unwrap();
    let o =
        r.x.run(&frame_of(&discover(mac(20), &[1, 3], false)))
            .expect("run");
    expect(&o, action::PASS, &[("dhcp", 1), ("pass_stack", 1)], "known");
    let o =
        r.x.run(&frame_of(&discover(mac(21), &[1, 3], false)))
            .expect("run");
    expect(
        &o,
        action::PASS,
        &[("dhcp", 1), ("pass_trusted", 1), ("pass_stack", 1)],
        "trusted",
    );
}

#[test]
fn broadcast_offers_are_capped_unicast_ones_are_not() {
    let mut l = offers(limits((1, 1000), (1, 1000), (0, 0)));
    l.offer_rate = 0;
    l.offer_burst = 2;
    let r = Responder::new(l);
    for n in 0..2 {
        let o =
            r.x.run(&frame_of(&discover(mac(30 + n), &[1, 3], true)))
                .expect("run");
        expect(
            &o,
            action::TX,
            &[("dhcp", 1), ("tx_offer", 1)],
            "broadcast within",
        );
    }
    let o =
        r.x.run(&frame_of(&discover(mac(32), &[1, 3], true)))
            .expect("run");
    expect(
        &o,
        action::DROP,
        &[("dhcp", 1), ("offer_rate", 1), ("drop_new_budget", 1)],
        "over",
    );
    for n in 0..20 {
        let o =
            r.x.run(&frame_of(&discover(mac(40 + n), &[1, 3], false)))
                .expect("run");
        expect(&o, action::TX, &[("dhcp", 1), ("tx_offer", 1)], "unicast");
    }
}

#[test]
fn an_offer_is_never_much_longer_than_its_request() {
    let r = Responder::new(offers(limits((1, 1000), (1, 1000), (0, 0))));
    let d = discover(mac(50), &[1, 3, 6, 121, 249], false);
    let f = frame_of(&d);
    let o = r.x.run(&f).expect("run");
    expect(&o, action::TX, &[("dhcp", 1), ("tx_offer", 1)], "DISCOVER");
    assert!(
        o.frame_out.len() <= f.len() + isodhcp_common::offer::GROW_MAX,
        "{} > {} + {}",
        o.frame_out.len(),
        f.len(),
        isodhcp_common::offer::GROW_MAX
    );
}
