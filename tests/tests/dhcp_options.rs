//! Options in OFFER/ACK (design.md §Options): 51/58/59 values, parameter-request-list
//! order, option 57, padding, hostname never echoed, custom options,
//! option 82 echoed unchanged.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test dhcp_options -- --test-threads=1`

use std::net::Ipv4Addr;

use isodhcp::wire::options::{self, ClasslessRoute, MessageType, decode_classless_routes};
use isodhcp_tests::crafted::{self, Captured, mac, relay_agent_info, request};
use isodhcp_tests::{DNS_IP, SERVER_IP};

const PRL: [u8; 8] = [6, 3, 42, 1, 121, 12, 51, 59];

/// Checks every rule on one OFFER or ACK (lease time 600 s).
fn check_reply(r: &Captured, what: &str) {
    let codes = r.wire_codes();
    // 53 and 54 first, then the PRL order (12 is asked for but never sent).
    let want_prefix = [53u8, 54, 6, 3, 42, 1, 121, 51, 59];
    assert!(
        codes.len() >= want_prefix.len() && codes[..want_prefix.len()] == want_prefix,
        "{what}: options must start with 53, 54 then the client's option-55 order \
         {PRL:?} (without 12); wire order {codes:?}"
    );
    for c in [53u8, 54, 51, 58, 59, 1, 3, 6, 121, 249, 42] {
        assert!(
            codes.contains(&c),
            "{what}: option {c} missing; wire order {codes:?}"
        );
    }
    let mut dedup = codes.clone();
    dedup.sort_unstable();
    dedup.dedup();
    assert_eq!(
        dedup.len(),
        codes.len(),
        "{what}: an option appears twice: {codes:?}"
    );
    assert!(
        !codes.contains(&12),
        "{what}: option 12 (hostname) must never be echoed"
    );
    assert_eq!(r.opt_u32(options::LEASE_TIME), Some(600), "{what}: 51");
    assert_eq!(
        r.opt_u32(options::RENEWAL_TIME),
        Some(300),
        "{what}: 58 = 50 % of the lease"
    );
    assert_eq!(
        r.opt_u32(options::REBINDING_TIME),
        Some(525),
        "{what}: 59 = 87.5 % of the lease"
    );
    assert_eq!(
        r.opt_ip(options::SUBNET_MASK),
        Some(Ipv4Addr::BROADCAST),
        "{what}: 1"
    );
    assert_eq!(r.opt_ip(options::ROUTER), Some(SERVER_IP), "{what}: 3");
    assert_eq!(r.opt(options::DNS), Some(&DNS_IP.octets()[..]), "{what}: 6");
    assert_eq!(
        r.opt(42),
        Some(&[198, 18, 0, 9][..]),
        "{what}: --dhcp-option 42,ip,198.18.0.9"
    );
    let want_routes = vec![
        ClasslessRoute {
            dest: SERVER_IP,
            prefix: 32,
            router: Ipv4Addr::UNSPECIFIED,
        },
        ClasslessRoute {
            dest: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            router: SERVER_IP,
        },
    ];
    for code in [options::CLASSLESS_ROUTES, options::MS_CLASSLESS_ROUTES] {
        let routes = r
            .opt(code)
            .and_then(decode_classless_routes)
            .unwrap_or_else(|| panic!("{what}: option {code} missing or undecodable"));
        assert_eq!(routes, want_routes, "{what}: option {code}");
    }
    assert!(
        r.payload.len() >= 300,
        "{what}: BOOTP payload {} < 300",
        r.payload.len()
    );
}

#[test]
fn offer_and_ack_options() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = crafted::setup_with("o5opts", &["--dhcp-option", "42,ip,198.18.0.9"]);
    let a = mac(1, 1);
    let extra = vec![
        (options::PARAM_REQUEST_LIST, PRL.to_vec()),
        (options::HOSTNAME, b"crafted-host".to_vec()),
    ];
    let (offer, ack) = dhcp
        .dora(a, &extra)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    check_reply(&offer, "OFFER");
    check_reply(&ack, "ACK");
    // Renewal (hostname omitted): same rules.
    let mut r = request(MessageType::Request, a);
    r.ciaddr = ack.msg.yiaddr;
    r.options.set(options::PARAM_REQUEST_LIST, PRL.to_vec());
    r.options.set(options::HOSTNAME, b"crafted-host".to_vec());
    let renew = dhcp
        .expect_reply_to(
            &r,
            crafted::To::Server {
                src: ack.msg.yiaddr,
            },
        )
        .expect("renewal");
    assert_eq!(renew.kind(), Some(MessageType::Ack));
    check_reply(&renew, "renewal ACK");
}

/// A different PRL order yields that order (the order is the client's, not
/// a fixed one).
#[test]
fn prl_order_follows_the_client() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = crafted::setup_with("o5order", &[]);
    let a = mac(2, 1);
    let prl = vec![121u8, 59, 58, 6, 1, 3];
    let offer = dhcp
        .discover(a, &[(options::PARAM_REQUEST_LIST, prl.clone())])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let codes = offer.wire_codes();
    let mut want = vec![53u8, 54];
    want.extend(&prl);
    assert_eq!(&codes[..want.len()], &want[..], "wire order {codes:?}");
}

/// Option 57: with large custom options the full reply exceeds 548 bytes;
/// a client announcing 576 gets a BOOTP payload of at most 548 bytes
/// (576 − IP − UDP) that still carries 53, 54 and what it asked for.
#[test]
fn max_message_size_honoured() {
    isodhcp_tests::needs_root!();
    let big = "ab".repeat(200);
    let text = "x".repeat(200);
    let o224 = format!("224,hex,{big}");
    let o225 = format!("225,str,{text}");
    let (lab, _d, dhcp) =
        crafted::setup_with("o5max", &["--dhcp-option", &o224, "--dhcp-option", &o225]);
    let prl = vec![1u8, 3, 6, 51];

    // Control: no option 57 → the full reply is larger than 548.
    let a = mac(3, 1);
    let full = dhcp
        .discover(a, &[(options::PARAM_REQUEST_LIST, prl.clone())])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert!(
        full.payload.len() > 548,
        "test premise: reply without option 57 should exceed 548 bytes, is {}",
        full.payload.len()
    );
    assert_eq!(full.opt(224).map(<[u8]>::len), Some(200));
    assert_eq!(full.opt(225), Some(text.as_bytes()));

    for (i, m) in [(2u8, mac(3, 2)), (3, mac(3, 3))] {
        let mut extra = vec![(options::PARAM_REQUEST_LIST, prl.clone())];
        extra.push((options::MAX_MESSAGE_SIZE, 576u16.to_be_bytes().to_vec()));
        let r = if i == 2 {
            dhcp.discover(m, &extra).expect("OFFER with option 57")
        } else {
            dhcp.dora(m, &extra).expect("DORA with option 57").1
        };
        let what = if i == 2 { "OFFER" } else { "ACK" };
        assert!(
            r.payload.len() <= 548,
            "{what}: option 57 = 576 but the BOOTP payload is {} bytes",
            r.payload.len()
        );
        assert!(r.payload.len() >= 300, "{what}: payload not padded");
        let codes = r.wire_codes();
        assert_eq!(
            &codes[..6],
            &[53, 54, 1, 3, 6, 51],
            "{what}: wire order {codes:?}"
        );
        assert_ne!(r.msg.yiaddr, Ipv4Addr::UNSPECIFIED);
    }

    // A large limit keeps everything.
    let m = mac(3, 4);
    let r = dhcp
        .discover(
            m,
            &[
                (options::PARAM_REQUEST_LIST, prl.clone()),
                (options::MAX_MESSAGE_SIZE, 1500u16.to_be_bytes().to_vec()),
            ],
        )
        .expect("OFFER with option 57 = 1500");
    assert!(
        r.opt(224).is_some() && r.opt(225).is_some(),
        "1500-byte limit dropped options"
    );
}

/// RFC 3046 / design.md §Protocol: option 82 inserted by an access point (giaddr 0) is
/// echoed unchanged in OFFER and ACK.
#[test]
fn option_82_echoed_unchanged() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = crafted::setup_with("o5relay", &[]);
    let a = mac(4, 1);
    let ri = relay_agent_info();
    let (offer, ack) = dhcp
        .dora(a, &[(options::RELAY_AGENT_INFO, ri.clone())])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert_eq!(
        offer.opt(options::RELAY_AGENT_INFO),
        Some(&ri[..]),
        "OFFER option 82"
    );
    assert_eq!(
        ack.opt(options::RELAY_AGENT_INFO),
        Some(&ri[..]),
        "ACK option 82"
    );
    assert_eq!(offer.msg.giaddr, Ipv4Addr::UNSPECIFIED);
    // Without 82 in the request, none in the reply.
    let b = mac(4, 2);
    let o = dhcp.discover(b, &[]).expect("OFFER without 82");
    assert_eq!(o.opt(options::RELAY_AGENT_INFO), None);
}
