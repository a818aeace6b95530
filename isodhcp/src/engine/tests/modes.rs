//! Address modes (design.md §Modes), classification, statics, quarantine, and the
//! per-mode options of design.md §Options (INFORM, option 82, custom options).

use std::collections::HashSet;

use super::*;
use crate::engine::classify::{Classifier, Matcher};

fn macs(list: &[Mac]) -> Matcher {
    Matcher {
        macs: list.iter().copied().collect::<HashSet<_>>(),
        ..Matcher::default()
    }
}

fn compat_cfg() -> EngineConfig {
    EngineConfig {
        classifier: Classifier {
            compat: macs(&[mac(1), mac(2)]),
            ..Classifier::default()
        },
        ..cfg()
    }
}

fn routes(o: &Message) -> Vec<ClasslessRoute> {
    decode_classless_routes(o.options.get(CLASSLESS_ROUTES).unwrap()).unwrap()
}

#[test]
fn compat_gets_lowest_free_block_base_plus_two() {
    let mut e = engine(compat_cfg());
    let fx = run(&mut e, T0, &discover(mac(1)));
    let (_, offer, _) = &replies(&fx)[0];
    // .0/30 holds the network address and the server: first block is .4/30.
    assert_eq!(offer.yiaddr, ip(6));
    assert_eq!(
        offer.options.get_ip(SUBNET_MASK),
        Some(Ipv4Addr::new(255, 255, 255, 252))
    );
    assert_eq!(offer.options.get_ip(ROUTER), Some(ip(5)));
    assert_eq!(
        routes(offer),
        [ClasslessRoute {
            dest: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            router: ip(5)
        }]
    );
    assert_eq!(
        offer.options.get(MS_CLASSLESS_ROUTES),
        offer.options.get(CLASSLESS_ROUTES)
    );
    let fx = run(&mut e, T0, &select(mac(1), ip(6), SERVER));
    let b = bound(&fx)[0];
    assert_eq!(
        (b.mode, b.gateway, b.subnet.unwrap().to_string()),
        (Mode::Compat, ip(5), "198.18.0.4/30".to_string())
    );
    assert_eq!(b.netmask(), Ipv4Addr::new(255, 255, 255, 252));
    // The next compat client gets the next block; isolated clients still come from the top.
    assert_eq!(offered(&mut e, T0, mac(2)), ip(10));
    assert_eq!(offered(&mut e, T0, mac(3)), ip(254));
    // Released blocks return whole.
    let mut rel = msg(mac(1), MessageType::Release);
    rel.ciaddr = ip(6);
    let fx = run(&mut e, T0, &rel);
    assert_eq!(unbound(&fx)[0].gateway, ip(5));
    for n in 4..8 {
        assert!(e.pool().is_free(ip(n)), "{n}");
    }
}

#[test]
fn compat_without_free_block_gets_no_offer() {
    // A /28 has two usable blocks: .0/30 holds the network address and the
    // server, .12/30 the broadcast address.
    let classifier = Classifier {
        compat: macs(&[mac(1), mac(2), mac(3)]),
        ..Classifier::default()
    };
    let mut e = engine(EngineConfig {
        pool: "198.18.0.0/28".parse().unwrap(),
        classifier,
        ..cfg()
    });
    assert_eq!(lease(&mut e, T0, mac(1)), ip(6));
    assert_eq!(lease(&mut e, T0, mac(2)), ip(10));
    assert!(run(&mut e, T0, &discover(mac(3))).is_empty());
    assert_eq!(e.stats.dropped[&Ignored::NoFreeBlock], 1);
}

fn playground_cfg() -> EngineConfig {
    EngineConfig {
        playground_size: Some(6),
        classifier: Classifier {
            playground: macs(&[mac(1), mac(2)]),
            ..Classifier::default()
        },
        ..cfg()
    }
}

#[test]
fn playground_clients_share_the_block() {
    let mut e = engine(playground_cfg());
    assert_eq!(e.playground_block().unwrap().to_string(), "198.18.0.248/29");
    assert_eq!(e.playground_alias(), Some((ip(249), 29)));
    let a = lease(&mut e, T0, mac(1));
    let b = lease(&mut e, T0, mac(2));
    assert_eq!((a, b), (ip(254), ip(253)));
    let fx = run(&mut e, T0, &discover(mac(1)));
    let (_, offer, _) = &replies(&fx)[0];
    assert_eq!(
        offer.options.get_ip(SUBNET_MASK),
        Some(Ipv4Addr::new(255, 255, 255, 248))
    );
    assert_eq!(offer.options.get_ip(ROUTER), Some(ip(249)));
    assert_eq!(
        routes(offer),
        [ClasslessRoute {
            dest: Ipv4Addr::UNSPECIFIED,
            prefix: 0,
            router: ip(249)
        }]
    );
    // Isolated clients never get block addresses.
    assert_eq!(offered(&mut e, T0, mac(3)), ip(247));
}

#[test]
fn playground_addresses_only_return_to_the_playground() {
    let mut e = engine(EngineConfig {
        playground_size: Some(8),
        ..playground_cfg()
    });
    let a = lease(&mut e, T0, mac(1));
    let mut rel = msg(mac(1), MessageType::Release);
    rel.ciaddr = a;
    run(&mut e, T0, &rel);
    assert!(e.pool().is_free(a));
    let block = e.playground_block().unwrap();
    for n in 3..20 {
        assert!(!block.contains(offered(&mut e, T0, mac(n))));
    }
}

#[test]
fn masquerade_is_orthogonal_and_vendor_is_remembered() {
    let c = EngineConfig {
        classifier: Classifier {
            masquerade: Matcher {
                vendors: vec!["android".into()],
                ..Matcher::default()
            },
            compat: macs(&[mac(1)]),
            ..Classifier::default()
        },
        ..cfg()
    };
    let mut e = engine(c);
    let mut d = discover(mac(1));
    d.options.set(VENDOR_CLASS, b"Android-dhcp-14".to_vec());
    let fx = run(&mut e, T0, &d);
    let ip = replies(&fx)[0].1.yiaddr;
    let mut r = select(mac(1), ip, SERVER);
    r.options.set(VENDOR_CLASS, b"Android-dhcp-14".to_vec());
    let fx = run(&mut e, T0, &r);
    let b = bound(&fx)[0];
    assert_eq!((b.mode, b.masq), (Mode::Compat, true));
    assert_eq!(
        e.lease(&mac(1)).unwrap().vendor.as_deref(),
        Some("Android-dhcp-14")
    );
    // A renewal without option 60 keeps the profile: no NAK, no re-binding.
    let fx = run(&mut e, T0 + 1000, &renew(mac(1), ip));
    assert_eq!(kind(&fx), MessageType::Ack);
    assert!(unbound(&fx).is_empty());
}

/// An engine restored from a run where mac(1) held 198.18.0.200 as an
/// isolated client, configured now to make it compat.
fn was_isolated_now_compat() -> Engine {
    let mut e = Engine::new(compat_cfg(), &[]).unwrap();
    let rec = LeaseRecord {
        mac: mac(1),
        ip: ip(200),
        expires: Some(T0 + 100_000),
        mode: Mode::Isolated,
        masq: false,
        hostname: None,
        vendor: None,
    };
    e.start(T0, vec![rec], vec![]);
    e
}

#[test]
fn profile_change_releases_and_naks_old_address() {
    let mut e = was_isolated_now_compat();
    let fx = run(&mut e, T0, &reboot(mac(1), ip(200)));
    assert_eq!(unbound(&fx)[0].ip, ip(200));
    assert!(fx.contains(&Effect::PersistNow));
    // Unknown again: it must not keep a known client's admission budget.
    assert!(fx.contains(&Effect::Known(mac(1), false)), "{fx:?}");
    assert_eq!(kind(&fx), MessageType::Nak);
    // The next DISCOVER allocates in the new mode.
    assert_eq!(offered(&mut e, T0, mac(1)), ip(6));
}

#[test]
fn profile_change_at_discover_reallocates() {
    let mut e = was_isolated_now_compat();
    let fx = run(&mut e, T0, &discover(mac(1)));
    assert_eq!(unbound(&fx)[0].ip, ip(200));
    assert_eq!(replies(&fx)[0].1.yiaddr, ip(6));
}

fn static_entry(m: Mac, n: u8) -> StaticEntry {
    StaticEntry {
        mac: m,
        ip: ip(n),
        hostname: Some("printer".into()),
        compat: false,
        masquerade: false,
        playground: false,
    }
}

#[test]
fn statics_are_reserved_at_start_and_never_freed() {
    let c = EngineConfig {
        statics: vec![
            static_entry(mac(1), 10),
            StaticEntry {
                compat: true,
                masquerade: true,
                ..static_entry(mac(2), 22)
            },
        ],
        ..cfg()
    };
    let mut e = Engine::new(c, &[]).unwrap();
    let (fx, _) = e.start(T0, vec![], vec![]);
    let mut b: Vec<&Binding> = bound(&fx);
    b.sort_by_key(|b| b.ip);
    assert_eq!(b.len(), 2, "bound before any client speaks");
    assert_eq!(
        (b[0].ip, b[0].mode, b[0].expires),
        (ip(10), Mode::Isolated, None)
    );
    assert_eq!(
        (b[1].ip, b[1].mode, b[1].gateway, b[1].masq),
        (ip(22), Mode::Compat, ip(21), true)
    );
    for n in [10, 20, 21, 22, 23] {
        assert!(!e.pool().is_free(ip(n)), "{n} reserved");
    }
    // The static client is offered its address, told the lease time, keeps its hostname.
    assert_eq!(offered(&mut e, T0, mac(1)), ip(10));
    let mut r = select(mac(1), ip(10), SERVER);
    r.options.set(HOSTNAME, b"other".to_vec());
    let fx = run(&mut e, T0, &r);
    assert_eq!(
        replies(&fx)[0].1.options.get(LEASE_TIME),
        Some(&3600u32.to_be_bytes()[..])
    );
    assert_eq!(
        e.lease(&mac(1)).unwrap().hostname.as_deref(),
        Some("printer")
    );
    // RELEASE and DECLINE never free it; it never expires.
    let mut rel = msg(mac(1), MessageType::Release);
    rel.ciaddr = ip(10);
    assert!(run(&mut e, T0, &rel).is_empty());
    let mut dec = msg(mac(1), MessageType::Decline);
    dec.options.set_ip(REQUESTED_IP, ip(10));
    assert!(run(&mut e, T0, &dec).is_empty());
    assert!(e.handle(T0 + 100 * 3_600_000, Input::Tick).is_empty());
    assert_eq!(e.lease(&mac(1)).unwrap().ip, ip(10));
}

#[test]
fn playground_static_must_be_in_the_block() {
    let c = EngineConfig {
        statics: vec![StaticEntry {
            playground: true,
            ..static_entry(mac(1), 10)
        }],
        ..playground_cfg()
    };
    assert!(matches!(
        Engine::new(c, &[]),
        Err(ConfigError::Static { .. })
    ));
    let c = EngineConfig {
        statics: vec![StaticEntry {
            playground: true,
            ..static_entry(mac(1), 250)
        }],
        ..playground_cfg()
    };
    assert!(Engine::new(c, &[]).is_ok());
}

#[test]
fn conflicting_addresses_are_quarantined_and_skipped() {
    let mut e = engine(cfg());
    let d = wire(&discover(mac(1)));
    let fx = e.handle(
        T0,
        Input::Dhcp {
            msg: &view(&d),
            in_use: &[ip(254), ip(253)],
        },
    );
    assert_eq!(replies(&fx)[0].1.yiaddr, ip(252));
    assert_eq!(e.quarantined_count(), 2);
    assert_eq!(e.stats.conflicts, 2);
    // Nobody gets them during the quarantine; afterwards they return.
    assert_eq!(offered(&mut e, T0, mac(2)), ip(251));
    e.handle(T0 + 300_000, Input::Tick);
    assert!(e.pool().is_free(ip(254)));
    // Every candidate alive: all five are quarantined and the walk goes
    // on down the free set, so the client still gets an address at once.
    let d3 = wire(&discover(mac(3)));
    let c = e.candidates(&view(&d3));
    assert_eq!(c.len(), 5);
    let fx = e.handle(
        T0 + 300_000,
        Input::Dhcp {
            msg: &view(&d3),
            in_use: &c,
        },
    );
    let got = replies(&fx)[0].1.yiaddr;
    assert!(!c.contains(&got) && got < c[4], "{got} after {c:?}");
    assert!(c.iter().all(|a| !e.pool().is_free(*a)));
}

#[test]
fn decline_from_owner_quarantines_and_persists() {
    let mut e = engine(cfg());
    let a = lease(&mut e, T0, mac(1));
    let mut dec = msg(mac(2), MessageType::Decline);
    dec.options.set_ip(REQUESTED_IP, a);
    assert!(
        run(&mut e, T0, &dec).is_empty(),
        "someone else's address: ignored"
    );
    assert_eq!(e.stats.dropped[&Ignored::DeclineNotOwner], 1);
    let mut dec = msg(mac(1), MessageType::Decline);
    dec.options.set_ip(REQUESTED_IP, a);
    let fx = run(&mut e, T0, &dec);
    assert_eq!(unbound(&fx)[0].ip, a);
    assert_eq!(fx.last(), Some(&Effect::PersistNow));
    assert_eq!(e.quarantined()[0].reason, "decline");
    assert_ne!(
        offered(&mut e, T0, mac(1)),
        a,
        "not offered again while quarantined"
    );
    e.handle(T0 + 600_000, Input::Tick);
    assert!(e.pool().is_free(a));
}

#[test]
fn quarantine_survives_restart() {
    let mut e = Engine::new(cfg(), &[]).unwrap();
    e.start(
        T0,
        vec![],
        vec![QuarantineRecord {
            ip: ip(254),
            until: T0 + 1000,
            reason: "decline".into(),
        }],
    );
    assert_eq!(offered(&mut e, T0, mac(1)), ip(253));
}

#[test]
fn inform_gets_config_without_address_or_lease_time() {
    let mut e = engine(compat_cfg());
    let mut inf = msg(mac(1), MessageType::Inform);
    inf.ciaddr = ip(6);
    let fx = run(&mut e, T0, &inf);
    let (k, m, r) = &replies(&fx)[0];
    assert_eq!(*k, MessageType::Ack);
    assert_eq!(m.yiaddr, Ipv4Addr::UNSPECIFIED);
    assert!(m.options.get(LEASE_TIME).is_none() && m.options.get(RENEWAL_TIME).is_none());
    assert_eq!(
        m.options.get_ip(SUBNET_MASK),
        Some(Ipv4Addr::new(255, 255, 255, 252))
    );
    assert_eq!(m.options.get_ip(ROUTER), Some(ip(5)));
    assert_eq!((r.dst_mac, r.dst_ip), (mac(1), ip(6)));
    inf.ciaddr = Ipv4Addr::new(198, 19, 0, 6);
    assert!(run(&mut e, T0, &inf).is_empty());
}

#[test]
fn relay_info_is_echoed_and_kept() {
    let mut e = engine(cfg());
    let a = offered(&mut e, T0, mac(1));
    let mut r = select(mac(1), a, SERVER);
    let relay = vec![1, 3, b'a', b'p', b'1', 2, 1, 7];
    r.options.set(RELAY_AGENT_INFO, relay.clone());
    let fx = run(&mut e, T0, &r);
    assert_eq!(
        replies(&fx)[0].1.options.get(RELAY_AGENT_INFO),
        Some(&relay[..])
    );
    assert_eq!(
        e.lease(&mac(1))
            .unwrap()
            .relay
            .as_ref()
            .unwrap()
            .circuit_id(),
        Some(&b"ap1"[..])
    );
}

#[test]
fn custom_options_are_appended() {
    let c = EngineConfig {
        custom_options: vec![CustomOption {
            code: 42,
            value: vec![198, 18, 0, 9],
        }],
        ..cfg()
    };
    let mut e = engine(c);
    let fx = run(&mut e, T0, &discover(mac(1)));
    assert_eq!(
        replies(&fx)[0].1.options.get(42),
        Some(&[198, 18, 0, 9][..])
    );
}
