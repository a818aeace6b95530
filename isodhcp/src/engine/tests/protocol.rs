//! RFC 2131 §4.3 rules and design.md §Protocol: DISCOVER, REQUEST by client state,
//! RELEASE, expiry, offer cap, restore and grace.

use super::*;
use crate::wire::dhcp::FLAG_BROADCAST;

#[test]
fn discover_offers_top_of_pool_and_commits_nothing() {
    let mut e = engine(cfg());
    let fx = run(&mut e, T0, &discover(mac(1)));
    assert_eq!(
        fx.len(),
        2,
        "only the known-MAC update and the OFFER: {fx:?}"
    );
    assert_eq!(fx[0], Effect::Known(mac(1), true));
    let r = replies(&fx);
    let (kind, offer, reply) = &r[0];
    assert_eq!(*kind, MessageType::Offer);
    assert_eq!(offer.yiaddr, Ipv4Addr::new(198, 18, 0, 254));
    assert_eq!(offer.options.get_ip(SUBNET_MASK), Some(Ipv4Addr::BROADCAST));
    assert_eq!(offer.options.get_ip(ROUTER), Some(SERVER));
    assert_eq!(offer.options.get_ip(SERVER_ID), Some(SERVER));
    assert_eq!(
        offer.options.get(LEASE_TIME),
        Some(&3600u32.to_be_bytes()[..])
    );
    assert_eq!(
        offer.options.get(RENEWAL_TIME),
        Some(&1800u32.to_be_bytes()[..])
    );
    assert_eq!(
        offer.options.get(REBINDING_TIME),
        Some(&3150u32.to_be_bytes()[..])
    );
    let routes = decode_classless_routes(offer.options.get(CLASSLESS_ROUTES).unwrap()).unwrap();
    assert_eq!(
        routes,
        [
            ClasslessRoute {
                dest: SERVER,
                prefix: 32,
                router: Ipv4Addr::UNSPECIFIED
            },
            ClasslessRoute {
                dest: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                router: SERVER
            },
        ]
    );
    assert_eq!(
        offer.options.get(MS_CLASSLESS_ROUTES),
        offer.options.get(CLASSLESS_ROUTES)
    );
    // PRL order after 53 and 54.
    let codes: Vec<u8> = offer.options.iter().map(|(c, _)| c).take(6).collect();
    assert_eq!(codes, [53, 54, 1, 3, 6, 121]);
    // No broadcast flag, no ciaddr: unicast to yiaddr at chaddr.
    assert_eq!(
        (reply.dst_mac, reply.dst_ip),
        (mac(1), Ipv4Addr::new(198, 18, 0, 254))
    );
    assert_eq!(e.leases().count(), 0);
    // A second client gets the next address down; the first keeps its offer.
    assert_eq!(offered(&mut e, T0, mac(2)), Ipv4Addr::new(198, 18, 0, 253));
    assert_eq!(
        offered(&mut e, T0 + 1000, mac(1)),
        Ipv4Addr::new(198, 18, 0, 254)
    );
}

#[test]
fn selecting_commits_in_order_route_persist_ack() {
    let mut e = engine(cfg());
    let ip = offered(&mut e, T0, mac(1));
    let fx = run(&mut e, T0 + 10, &select(mac(1), ip, SERVER));
    assert!(
        matches!(&fx[0], Effect::Bind(b) if b.ip == ip && b.mode == Mode::Isolated && b.gateway == SERVER && b.subnet.is_none())
    );
    assert_eq!(fx[1], Effect::Known(mac(1), true));
    assert_eq!(fx[2], Effect::PersistNow);
    let r = replies(&fx);
    assert_eq!(r[0].0, MessageType::Ack);
    assert_eq!(r[0].1.yiaddr, ip);
    assert_eq!(e.lease(&mac(1)).unwrap().expires, T0 + 10 + 3_600_000);
}

#[test]
fn broadcast_flag_gets_broadcast_reply() {
    let mut e = engine(cfg());
    let mut d = discover(mac(1));
    d.flags = FLAG_BROADCAST;
    let fx = run(&mut e, T0, &d);
    let r = replies(&fx)[0].2;
    assert_eq!((r.dst_mac, r.dst_ip), (Mac::BROADCAST, Ipv4Addr::BROADCAST));
}

#[test]
fn request_for_other_server_drops_offer_silently() {
    let mut e = engine(cfg());
    let ip = offered(&mut e, T0, mac(1));
    let fx = run(
        &mut e,
        T0,
        &select(mac(1), ip, Ipv4Addr::new(198, 18, 0, 2)),
    );
    assert_eq!(fx, [Effect::Known(mac(1), false)], "no reply");
    assert_eq!(e.offers_outstanding(), 0);
    // The address is free again and goes to the next client.
    assert_eq!(offered(&mut e, T0, mac(2)), ip);
}

#[test]
fn selecting_wrong_address_is_naked_with_only_53_54_56() {
    let mut e = engine(cfg());
    offered(&mut e, T0, mac(1));
    let fx = run(
        &mut e,
        T0,
        &select(mac(1), Ipv4Addr::new(198, 18, 0, 9), SERVER),
    );
    let r = replies(&fx);
    assert_eq!(r[0].0, MessageType::Nak);
    let codes: Vec<u8> = r[0].1.options.iter().map(|(c, _)| c).collect();
    assert_eq!(codes, [53, 54, 56]);
    assert_eq!(
        (r[0].2.dst_mac, r[0].2.dst_ip),
        (Mac::BROADCAST, Ipv4Addr::BROADCAST)
    );
}

#[test]
fn init_reboot_rules() {
    let mut e = engine(cfg());
    let ip = lease(&mut e, T0, mac(1));
    // Own lease: ACK.
    assert_eq!(
        replies(&run(&mut e, T0 + 5, &reboot(mac(1), ip)))[0].0,
        MessageType::Ack
    );
    // Someone else's address: NAK.
    assert_eq!(
        replies(&run(&mut e, T0 + 5, &reboot(mac(2), ip)))[0].0,
        MessageType::Nak
    );
    // Outside the pool, the server IP, network and broadcast: NAK.
    for bad in [
        Ipv4Addr::new(198, 19, 0, 5),
        SERVER,
        Ipv4Addr::new(198, 18, 0, 0),
        Ipv4Addr::new(198, 18, 0, 255),
    ] {
        assert_eq!(
            replies(&run(&mut e, T0 + 5, &reboot(mac(3), bad)))[0].0,
            MessageType::Nak,
            "{bad}"
        );
    }
    // A free, valid address (server lost its state): adopted.
    let free = Ipv4Addr::new(198, 18, 0, 77);
    let fx = run(&mut e, T0 + 5, &reboot(mac(4), free));
    assert_eq!(bound(&fx)[0].ip, free);
    assert_eq!(replies(&fx)[0].0, MessageType::Ack);
    assert_eq!(e.lease(&mac(4)).unwrap().ip, free);
    // An address under offer to another client is not adopted.
    let held = offered(&mut e, T0 + 6, mac(5));
    assert_eq!(
        replies(&run(&mut e, T0 + 7, &reboot(mac(6), held)))[0].0,
        MessageType::Nak
    );
}

#[test]
fn renewing_extends_and_batches_small_moves() {
    let mut e = engine(cfg());
    let ip = lease(&mut e, T0, mac(1));
    e.take_dirty();
    let mut renew = msg(mac(1), MessageType::Request);
    renew.ciaddr = ip;
    // At T1 the expiry moves by half a lease: written now.
    let fx = run(&mut e, T0 + 1_800_000, &renew);
    assert!(fx.contains(&Effect::PersistNow), "{fx:?}");
    assert!(
        bound(&fx).is_empty(),
        "a renewal of an active lease binds nothing again"
    );
    let r = replies(&fx);
    assert_eq!(
        (r[0].2.dst_mac, r[0].2.dst_ip),
        (mac(1), ip),
        "unicast to ciaddr"
    );
    e.take_dirty();
    // A renewal a minute later moves it by a minute: batched.
    let fx = run(&mut e, T0 + 1_860_000, &renew);
    assert!(fx.contains(&Effect::PersistLater), "{fx:?}");
    // Renewing an address that is not ours: NAK.
    let mut other = msg(mac(2), MessageType::Request);
    other.ciaddr = ip;
    assert_eq!(
        replies(&run(&mut e, T0 + 1_860_000, &other))[0].0,
        MessageType::Nak
    );
}

#[test]
fn request_without_address_is_dropped() {
    let mut e = engine(cfg());
    assert!(run(&mut e, T0, &msg(mac(1), MessageType::Request)).is_empty());
    assert_eq!(e.stats.dropped[&Ignored::NoAddressNamed], 1);
}

#[test]
fn release_only_from_owner_for_own_address() {
    let mut e = engine(cfg());
    let ip = lease(&mut e, T0, mac(1));
    let mut rel = msg(mac(2), MessageType::Release);
    rel.ciaddr = ip;
    assert!(run(&mut e, T0, &rel).is_empty());
    let mut rel = msg(mac(1), MessageType::Release);
    rel.ciaddr = Ipv4Addr::new(198, 18, 0, 3);
    assert!(run(&mut e, T0, &rel).is_empty());
    assert!(e.lease(&mac(1)).is_some());
    rel.ciaddr = ip;
    let fx = run(&mut e, T0, &rel);
    assert_eq!(unbound(&fx)[0].ip, ip);
    assert_eq!(fx[1..], [Effect::Known(mac(1), false), Effect::PersistNow]);
    assert!(e.lease(&mac(1)).is_none());
    assert_eq!(offered(&mut e, T0, mac(3)), ip, "address back in the pool");
}

#[test]
fn leases_and_offers_expire_on_tick() {
    let mut e = engine(cfg());
    let ip = lease(&mut e, T0, mac(1));
    let held = offered(&mut e, T0, mac(2));
    assert!(e.handle(T0 + 59_999, Input::Tick).is_empty());
    assert_eq!(e.offers_outstanding(), 1);
    assert_eq!(
        e.handle(T0 + 60_000, Input::Tick),
        [Effect::Known(mac(2), false)]
    );
    assert_eq!(e.offers_outstanding(), 0);
    assert!(e.handle(T0 + 3_599_999, Input::Tick).is_empty());
    let fx = e.handle(T0 + 3_600_000, Input::Tick);
    assert_eq!(unbound(&fx)[0].ip, ip);
    assert_eq!(fx[1..], [Effect::Known(mac(1), false), Effect::PersistNow]);
    assert_eq!(e.free_count(), 253);
    assert_eq!(offered(&mut e, T0 + 3_600_001, mac(3)), ip.max(held));
}

#[test]
fn offer_table_is_capped_oldest_first() {
    let mut e = engine(EngineConfig {
        max_offers: 3,
        ..cfg()
    });
    let first = offered(&mut e, T0, mac(1));
    for n in 2..=4 {
        offered(&mut e, T0 + u64::from(n), mac(n));
    }
    assert_eq!(e.offers_outstanding(), 3);
    // mac(1)'s offer was evicted: its SELECTING REQUEST is NAKed.
    assert_eq!(
        replies(&run(&mut e, T0 + 10, &select(mac(1), first, SERVER)))[0].0,
        MessageType::Nak
    );
}

#[test]
fn pool_exhaustion_sends_nothing() {
    let mut e = engine(EngineConfig {
        pool: "198.18.0.0/30".parse().unwrap(),
        ..cfg()
    });
    lease(&mut e, T0, mac(1)); // .2 (.1 is the server)
    assert!(run(&mut e, T0, &discover(mac(2))).is_empty());
    assert_eq!(e.stats.dropped[&Ignored::PoolExhausted], 1);
}

#[test]
fn relayed_requests_are_dropped_and_counted() {
    // Frame-level checks (BOOTREQUEST, chaddr = source) are admission's
    // (isodhcp_common::parse); the engine drops what is not for it.
    let mut e = engine(cfg());
    let mut relayed = discover(mac(1));
    relayed.giaddr = Ipv4Addr::new(198, 18, 1, 1);
    assert!(run(&mut e, T0, &relayed).is_empty());
    assert_eq!(e.stats.dropped[&Ignored::Relayed], 1);
}

/// The `reason` labels of the `messages_ignored` metric are the variants'
/// `Debug` names (daemon/metrics.rs); renaming the enum kept them.
#[test]
fn ignored_reasons_render_as_the_metric_labels() {
    use Ignored::*;
    let all = [
        Relayed,
        NoMessageType,
        NotOurServer,
        NoAddressNamed,
        PoolExhausted,
        NoFreeBlock,
        NotOwner,
        DeclineNotOwner,
        InformOutsidePool,
        Unsupported,
        Encode,
    ];
    let labels: Vec<String> = all.iter().map(|w| format!("{w:?}")).collect();
    assert_eq!(
        labels,
        [
            "Relayed",
            "NoMessageType",
            "NotOurServer",
            "NoAddressNamed",
            "PoolExhausted",
            "NoFreeBlock",
            "NotOwner",
            "DeclineNotOwner",
            "InformOutsidePool",
            "Unsupported",
            "Encode",
        ]
    );
}

#[test]
fn hostname_kept_across_renewals_that_omit_it() {
    let mut e = engine(cfg());
    let ip = offered(&mut e, T0, mac(1));
    let mut r = select(mac(1), ip, SERVER);
    r.options.set(HOSTNAME, b"printer\x01".to_vec());
    run(&mut e, T0, &r);
    let mut renew = msg(mac(1), MessageType::Request);
    renew.ciaddr = ip;
    run(&mut e, T0 + 1000, &renew);
    assert_eq!(
        e.lease(&mac(1)).unwrap().hostname.as_deref(),
        Some("printer")
    );
}

fn record(n: u8, expires: Millis) -> LeaseRecord {
    LeaseRecord {
        mac: mac(n),
        ip: ip(n),
        expires: Some(expires),
        mode: Mode::Isolated,
        masq: false,
        hostname: None,
        vendor: None,
    }
}

#[test]
fn restore_keeps_active_and_grace_leases() {
    let mut e = Engine::new(cfg(), &[]).unwrap();
    let (fx, rejected) = e.start(
        T0,
        vec![
            record(10, T0 + 1000),      // active
            record(11, T0 - 1000),      // expired a second ago: grace
            record(12, T0 - 3_600_001), // expired long ago: gone
            LeaseRecord {
                ip: Ipv4Addr::new(198, 19, 0, 1),
                ..record(13, T0 + 1000)
            },
        ],
        vec![],
    );
    assert!(fx.is_empty(), "no statics");
    assert_eq!(rejected.len(), 1);
    assert_eq!(
        e.desired(T0).iter().map(|b| b.ip).collect::<Vec<_>>(),
        [ip(10)]
    );
    // The grace address is not offered to others, but its owner gets it back.
    let mut other = reboot(mac(11), ip(11));
    other.chaddr[..6].copy_from_slice(&mac(20).0);
    assert_eq!(kind(&run(&mut e, T0, &other)), MessageType::Nak);
    let fx = run(&mut e, T0, &reboot(mac(11), ip(11)));
    assert_eq!(bound(&fx)[0].ip, ip(11));
    assert_eq!(kind(&fx), MessageType::Ack);
    // The expired-long-ago address is free again.
    assert!(e.pool().is_free(ip(12)));
    assert_eq!(e.free_count(), 253 - 2);
}

#[test]
fn grace_lease_frees_its_address_after_grace() {
    let mut e = Engine::new(cfg(), &[]).unwrap();
    e.start(T0, vec![record(11, T0 - 1000)], vec![]);
    assert!(e.handle(T0 + 3_598_999, Input::Tick).is_empty());
    let fx = e.handle(T0 + 3_599_000, Input::Tick);
    assert_eq!(unbound(&fx)[0].ip, ip(11));
    assert!(e.lease(&mac(11)).is_none());
    assert!(e.pool().is_free(ip(11)));
}

#[test]
fn dirty_tracks_exactly_the_changed_leases() {
    let mut e = engine(cfg());
    let a = lease(&mut e, T0, mac(1));
    offered(&mut e, T0, mac(2)); // an offer changes nothing on disk
    let d = e.take_dirty();
    assert_eq!(d.leases.len(), 1);
    assert_eq!(d.leases[0].0, mac(1));
    assert_eq!(d.leases[0].1.as_ref().unwrap().ip, a);
    assert!(d.quarantine.is_none());
    assert!(!e.is_dirty());
    let mut rel = msg(mac(1), MessageType::Release);
    rel.ciaddr = a;
    run(&mut e, T0, &rel);
    assert_eq!(e.take_dirty().leases, [(mac(1), None)]);
    let mut dec = msg(mac(3), MessageType::Decline);
    let b = lease(&mut e, T0, mac(3));
    dec.options.set_ip(REQUESTED_IP, b);
    run(&mut e, T0, &dec);
    let d = e.take_dirty();
    assert_eq!(d.quarantine.unwrap().len(), 1);
}
