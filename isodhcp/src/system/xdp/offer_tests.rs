//! The kernel's OFFER against the engine's (design.md §Offer responder):
//! the responder's code (`isodhcp_common::offer`, run here on the host as
//! the XDP program runs it) turns a DISCOVER into the engine's OFFER byte
//! for byte, and leaves alone what only the daemon may answer.

use isodhcp_common::offer::host::{SharedBuckets, VecFrame, roomy_limits};
use isodhcp_common::offer::{self, Ctx, Outcome, Plain, Work};
use isodhcp_common::parse::{Parsed, parse_frame};
use isodhcp_common::{Slot, StripeSlot};

use super::{offer_cfg, stripe_slot};
use crate::engine::tests::stripe::{slot_of, striped};
use crate::engine::tests::{SERVER, T0, cfg, discover, engine, ip, mac, msg, replies, run, wire};
use crate::engine::{CustomOption, Engine, EngineConfig};
use crate::wire::Mac;
use crate::wire::dhcp::Message;
use crate::wire::frame::{self, Addressing, DHCP_CLIENT_PORT, DHCP_SERVER_PORT};
use crate::wire::options::*;
use std::net::Ipv4Addr;

/// The frame a client sends: broadcast from 0.0.0.0, padded like real
/// clients pad (dhclient and udhcpc send at least 300 bytes of BOOTP; some
/// send more).
fn client_frame(m: &Message, pad_to: usize) -> Vec<u8> {
    let mut payload = wire(m);
    if payload.len() < pad_to {
        payload.resize(pad_to, 0);
    }
    let a = Addressing {
        src_mac: Mac(m.chaddr[..6].try_into().unwrap()),
        dst_mac: Mac::BROADCAST,
        src_ip: Ipv4Addr::UNSPECIFIED,
        dst_ip: Ipv4Addr::BROADCAST,
        src_port: DHCP_CLIENT_PORT,
        dst_port: DHCP_SERVER_PORT,
    };
    frame::build(&a, &payload).unwrap()
}

/// Runs the kernel's responder code over `f` against `e`'s stripe.
fn respond(e: &Engine, f: &mut Vec<u8>, now_ns: u64) -> (Outcome, Vec<Slot>) {
    respond_alive(e, f, now_ns, now_ns + 1_000_000_000)
}

/// [`respond`] with the daemon's heartbeat valid until `alive_until`.
fn respond_alive(
    e: &Engine,
    f: &mut Vec<u8>,
    now_ns: u64,
    alive_until: u64,
) -> (Outcome, Vec<Slot>) {
    respond_in(e, f, now_ns, alive_until, &mut Work::default())
}

/// [`respond_alive`] with the CPU's scratch state `work` (and its options
/// cache) carried over from earlier frames, as the kernel's per-CPU entry is.
fn respond_in(
    e: &Engine,
    f: &mut Vec<u8>,
    now_ns: u64,
    alive_until: u64,
    work: &mut Work,
) -> (Outcome, Vec<Slot>) {
    let cfg = offer_cfg(e, alive_until).unwrap();
    let slots: Vec<StripeSlot> = e
        .stripe_slots()
        .iter()
        .map(|u| stripe_slot(u, T0, now_ns))
        .collect();
    let Parsed::Request(req) = parse_frame(f) else {
        panic!("not a valid request frame");
    };
    let len = f.len();
    let l = roomy_limits();
    let mut c = Ctx {
        work,
        cfg: &cfg,
        limits: &l,
        now: now_ns,
        frame_len: len,
    };
    let counted = std::cell::RefCell::new(Vec::new());
    let o = offer::respond(
        &mut Plain,
        VecFrame(f),
        &mut SharedBuckets::default(),
        &mut c,
        &req,
        |i| slots.get(i as usize).copied(),
        |s| counted.borrow_mut().push(s),
    );
    (o, counted.into_inner())
}

/// The engine's OFFER frame for `d`, as the daemon would send it, with the
/// address the stripe would give.
fn engine_offer(d: &Message, ip: Ipv4Addr) -> Vec<u8> {
    let mut reference = engine(EngineConfig {
        custom_options: vec![CustomOption {
            code: 42,
            value: vec![198, 18, 0, 123],
        }],
        ..cfg()
    });
    let fx = run(&mut reference, T0, d);
    let r = replies(&fx);
    assert_eq!(r.len(), 1, "{fx:?}");
    let mut payload = r[0].2.payload.clone();
    payload[16..20].copy_from_slice(&ip.octets());
    let dst_ip = if r[0].2.dst_ip.is_broadcast() {
        r[0].2.dst_ip
    } else {
        ip
    };
    let a = Addressing {
        src_mac: cfg().server_mac,
        dst_mac: r[0].2.dst_mac,
        src_ip: SERVER,
        dst_ip,
        src_port: DHCP_SERVER_PORT,
        dst_port: DHCP_CLIENT_PORT,
    };
    let mut f = frame::build(&a, &payload).unwrap();
    f[40..42].copy_from_slice(&[0, 0]); // the kernel sends UDP checksum 0
    f
}

/// Option 55 lists of the byte-for-byte tests: common, empty, long,
/// repeated and unknown codes.
const PRLS: [&[u8]; 6] = [
    &[1, 3, 6, 121],
    &[],
    &[121, 249, 6, 3, 1, 51, 54, 58, 59, 42, 15, 119, 252],
    &[3, 3, 1, 200, 201, 53, 54, 255, 0],
    &[6, 42, 1],
    &[1, 28, 2, 3, 15, 6, 119, 12, 44, 47, 26, 121, 42],
];

/// A DISCOVER of `m` with option 55 `prl` (none when empty).
fn discover_with(m: Mac, prl: &[u8], bcast: bool) -> Message {
    let mut d = msg(m, MessageType::Discover);
    if !prl.is_empty() {
        d.options.set(PARAM_REQUEST_LIST, prl.to_vec());
    }
    d.options.set(VENDOR_CLASS, b"dhcpcd-10".to_vec());
    d.options.set(CLIENT_ID, [&[1u8][..], &m.0].concat());
    if bcast {
        d.flags = 0x8000;
    }
    d
}

/// Every option 55 list, broadcast and unicast, several paddings, in an
/// order that makes the options cache miss and hit (one CPU's `work` for
/// all): every OFFER is the engine's, byte for byte.
#[test]
fn xdp_offer_is_the_engines_offer_byte_for_byte() {
    let e = striped(64);
    let mut work = Work::default();
    let order = (0..PRLS.len()).chain((0..PRLS.len()).rev());
    for n in order {
        let prl = PRLS[n];
        for (bcast, pad) in [(false, 300), (true, 300), (false, 548), (true, 400)] {
            let m = mac(n as u8 + 10);
            let d = discover_with(m, prl, bcast);
            let mut f = client_frame(&d, pad);
            let now = 5_000_000_000;
            let (o, counted) = respond_in(&e, &mut f, now, now + 1_000_000_000, &mut work);
            assert_eq!(o, Outcome::Offered, "prl {prl:?}: {counted:?}");
            let want = engine_offer(&d, slot_of(&e, m));
            assert_eq!(f, want, "prl {prl:?} broadcast {bcast} pad {pad}");
            // The IP header checksum verifies.
            let ip_hdr: &[u8] = &f[14..34];
            let sum = ip_hdr
                .chunks(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .sum::<u32>();
            assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff);
        }
    }
}

/// The options cache serves a repeated option 55 (a poisoned byte in the
/// block shows up in the frame) and nothing else: another option 55, or
/// the same under a changed template, is planned afresh.
#[test]
fn the_options_cache_serves_only_the_same_option_55_and_template() {
    let e = striped(64);
    let now = 5_000_000_000;
    let alive = now + 1_000_000_000;
    let mut work = Work::default();
    let prl: &[u8] = &[1, 3, 6, 121];
    let mut f = client_frame(&discover_with(mac(30), prl, false), 300);
    assert_eq!(
        respond_in(&e, &mut f, now, alive, &mut work).0,
        Outcome::Offered
    );
    assert_eq!(work.cache.valid, 1);
    // Poison the block's last byte (END or padding).
    let last = f.len() - offer::BOOTP_AT - 240 - 1;
    assert_ne!(f[offer::BOOTP_AT + 240 + last], 0xa5);
    work.cache.block[last] = 0xa5;
    let mut f = client_frame(&discover_with(mac(31), prl, true), 300);
    assert_eq!(
        respond_in(&e, &mut f, now, alive, &mut work).0,
        Outcome::Offered
    );
    assert_eq!(
        f[offer::BOOTP_AT + 240 + last],
        0xa5,
        "a hit writes the block"
    );
    // The same length and first bytes, one code different: a miss.
    work.cache.block[last] = 0xa5;
    let d = discover_with(mac(32), &[1, 3, 6, 42], false);
    let mut f = client_frame(&d, 300);
    assert_eq!(
        respond_in(&e, &mut f, now, alive, &mut work).0,
        Outcome::Offered
    );
    assert_eq!(f, engine_offer(&d, slot_of(&e, mac(32))));
    // The same option 55 under another template: a miss.
    work.cache.block[last] = 0xa5;
    let other = engine(EngineConfig {
        offer_stripe: 64,
        stripe_key: 0x5eed,
        custom_options: vec![CustomOption {
            code: 42,
            value: vec![198, 18, 0, 124],
        }],
        ..cfg()
    });
    let d = discover_with(mac(32), &[1, 3, 6, 42], false);
    let mut f = client_frame(&d, 300);
    assert_eq!(
        respond_in(&other, &mut f, now, alive, &mut work).0,
        Outcome::Offered
    );
    assert_ne!(f[offer::BOOTP_AT + 240 + last], 0xa5);
}

/// A DISCOVER of mac 7 with option 57.
fn base() -> Message {
    let mut d = discover(mac(7));
    d.options
        .set(MAX_MESSAGE_SIZE, 1500u16.to_be_bytes().to_vec());
    d
}

#[test]
fn xdp_leaves_what_only_the_daemon_may_answer() {
    let e = striped(64);
    let now = 5_000_000_000;
    let cases: Vec<(&str, Message, Slot)> = vec![
        (
            "relayed",
            Message {
                giaddr: ip(9),
                ..base()
            },
            Slot::OfferIneligible,
        ),
        (
            "ciaddr",
            Message {
                ciaddr: ip(9),
                ..base()
            },
            Slot::OfferIneligible,
        ),
        (
            "option 82",
            {
                let mut d = base();
                d.options.set(RELAY_AGENT_INFO, vec![1, 2, 0, 1]);
                d
            },
            Slot::OfferIneligible,
        ),
        (
            "option 52",
            {
                let mut d = base();
                d.options.set(52, vec![1]);
                d
            },
            Slot::OfferIneligible,
        ),
    ];
    for (what, d, slot) in cases {
        let mut f = client_frame(&d, 300);
        let before = f.clone();
        let (o, counted) = respond(&e, &mut f, now);
        assert_eq!(o, Outcome::Daemon(Some(slot)), "{what}");
        assert_eq!(counted, [slot], "{what}");
        assert_eq!(f, before, "{what}: the frame is untouched");
    }
}

#[test]
fn xdp_leaves_frames_too_short_or_ignored_and_offers_only_for_a_live_daemon() {
    let e = striped(64);
    let now = 5_000_000_000;
    // A reply more than GROW_MAX bytes longer than its request takes the
    // daemon's path: an unpadded DISCOVER (about 260 bytes of BOOTP) does
    // not get a 324-byte OFFER from the kernel.
    let mut short = client_frame(&base(), 0);
    let end = short.iter().rposition(|&b| b == 255).unwrap() + 1;
    short.truncate(end);
    let ulen = (end - 34) as u16;
    short[38..40].copy_from_slice(&ulen.to_be_bytes());
    short[16..18].copy_from_slice(&(ulen + 20).to_be_bytes());
    short[24..26].copy_from_slice(&[0, 0]);
    let c = isodhcp_common::offer::ip_checksum(short[14..34].try_into().unwrap());
    short[24..26].copy_from_slice(&c.to_be_bytes());
    short[40..42].copy_from_slice(&[0, 0]);
    assert!(matches!(parse_frame(&short), Parsed::Request(_)));
    let mut f = short.clone();
    let (o, _) = respond(&e, &mut f, now);
    assert_eq!(o, Outcome::Daemon(Some(Slot::OfferNoRoom)));
    assert_eq!(f, short);
    // An IP total length beyond the frame: admission lets it pass, the
    // daemon's frame parser ignores it, and so does the responder (found
    // by the parse_frame fuzz target's comparison with the engine).
    let mut long = client_frame(&base(), 300);
    let claimed = (long.len() - 14 + 100) as u16;
    long[16..18].copy_from_slice(&claimed.to_be_bytes());
    assert!(matches!(parse_frame(&long), Parsed::Request(_)));
    assert!(frame::parse(&long).is_err());
    let mut f = long.clone();
    let (o, _) = respond(&e, &mut f, now);
    assert_eq!(o, Outcome::Daemon(Some(Slot::OfferIneligible)));
    assert_eq!(f, long);
    // Stale heartbeat: no offer for a daemon that is gone.
    let mut f = client_frame(&base(), 300);
    let (o, _) = respond_alive(&e, &mut f, now, now);
    assert_eq!(o, Outcome::Daemon(Some(Slot::OfferIneligible)));
    let (o, _) = respond_alive(&e, &mut f, now, now + 1);
    assert_eq!(o, Outcome::Offered);
}
