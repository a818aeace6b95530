//! A hostile guest against the engine: each test performs one attack from
//! the issue "hostile guests" with crafted messages and checks that it no
//! longer costs the pool anything.

use super::*;
use crate::engine::config::{self, CONFLICT_CANDIDATES, DECLINED_OFFER_CAP};

fn small_pool() -> EngineConfig {
    EngineConfig {
        pool: "198.18.0.0/26".parse().unwrap(),
        ..cfg()
    }
}

fn release(m: Mac, ip: Ipv4Addr) -> Message {
    let mut r = msg(m, MessageType::Release);
    r.ciaddr = ip;
    r.options.set_ip(SERVER_ID, SERVER);
    r
}

fn decline(m: Mac, ip: Ipv4Addr) -> Message {
    let mut d = msg(m, MessageType::Decline);
    d.options.set_ip(REQUESTED_IP, ip);
    d.options.set_ip(SERVER_ID, SERVER);
    d
}

fn attacker(n: u32) -> Mac {
    let b = n.to_be_bytes();
    Mac([0x02, 0xbad_u16 as u8, b[0], b[1], b[2], b[3]])
}

fn assert_conserved(e: &Engine) {
    assert_eq!(e.check_consistency(), Vec::<String>::new());
    assert_eq!(e.check_conservation(), Vec::<String>::new());
}

#[test]
fn discover_then_init_reboot_then_release_leaks_nothing() {
    let mut e = engine(small_pool());
    let full = e.free_count();
    for n in 0..200u32 {
        let now = T0 + u64::from(n) * 1000;
        let m = attacker(n);
        let a = offered(&mut e, now, m);
        // INIT-REBOOT for another free address, no server id.
        let b = ip(10);
        assert_ne!(a, b);
        let fx = run(&mut e, now, &reboot(m, b));
        assert_eq!(kind(&fx), MessageType::Ack, "cycle {n}");
        run(&mut e, now, &release(m, b));
        assert_eq!(
            e.free_count(),
            full,
            "cycle {n}: the offer's address leaked"
        );
        assert_conserved(&e);
    }
}

#[test]
fn full_quarantine_neither_blocks_allocation_nor_hands_out_squatted_addresses() {
    let mut e = engine(small_pool());
    // Fill the quarantine (cap: half the pool) with DECLINEs of real leases.
    for n in 0..40u32 {
        let m = attacker(n);
        let ip = lease(&mut e, T0, m);
        run(&mut e, T0, &decline(m, ip));
    }
    assert_eq!(e.quarantined_count(), 32, "quarantine at its cap");
    // A squatter answers for the five highest free addresses.
    let squatted = e.pool().highest(CONFLICT_CANDIDATES);
    let d = wire(&discover(mac(1)));
    assert_eq!(e.candidates(&view(&d)), squatted);
    let fx = e.handle(
        T0,
        Input::Dhcp {
            msg: &view(&d),
            in_use: &squatted,
        },
    );
    let r = replies(&fx);
    assert_eq!(r.len(), 1, "a free address remains: {fx:?}");
    assert!(
        !squatted.contains(&r[0].1.yiaddr),
        "{} is in use",
        r[0].1.yiaddr
    );
    assert_conserved(&e);
}

#[test]
fn evicting_offers_never_hands_out_an_address_in_use() {
    // /29: .2 to .6 free. Five offers take them all.
    let mut e = engine(EngineConfig {
        pool: "198.18.0.0/29".parse().unwrap(),
        ..cfg()
    });
    for n in 0..5 {
        offered(&mut e, T0 + n, attacker(n as u32));
    }
    assert_eq!(e.free_count(), 0);
    // The oldest offer (.6) is revoked for a newcomer, but .6 answers in
    // the neighbour table.
    let d = wire(&discover(mac(1)));
    let fx = e.handle(
        T0 + 10,
        Input::Dhcp {
            msg: &view(&d),
            in_use: &[ip(6)],
        },
    );
    let r = replies(&fx);
    assert_eq!(r.len(), 1, "{fx:?}");
    assert_ne!(r[0].1.yiaddr, ip(6), "an address in use was offered");
    assert_conserved(&e);
}

#[test]
fn declines_without_a_lease_cannot_fill_the_quarantine() {
    let mut e = engine(small_pool());
    let full = e.free_count();
    for n in 0..30u32 {
        let m = attacker(n);
        let a = offered(&mut e, T0, m);
        run(&mut e, T0, &decline(m, a));
    }
    assert_eq!(e.quarantined_count(), DECLINED_OFFER_CAP);
    assert_eq!(e.free_count(), full - DECLINED_OFFER_CAP);
    assert_conserved(&e);
}

#[test]
fn adoptions_are_budgeted_and_short() {
    let mut e = engine(small_pool());
    let mut acks = 0;
    let mut naks = 0;
    for n in 0..40u32 {
        let fx = run(&mut e, T0, &reboot(attacker(n), ip(2 + n as u8)));
        match kind(&fx) {
            MessageType::Ack => {
                acks += 1;
                let lt = replies(&fx)[0].1.options.get_u32(LEASE_TIME);
                assert_eq!(lt, Some(config::ADOPTED_LEASE_S), "short first lease");
            }
            MessageType::Nak => naks += 1,
            k => panic!("{k:?}"),
        }
    }
    assert_eq!(
        (acks, naks),
        (config::ADOPT_BURST, 40 - config::ADOPT_BURST)
    );
    assert_eq!(e.stats.adoptions, u64::from(config::ADOPT_BURST));
    assert_eq!(
        e.stats.nak_reasons["adoption budget exhausted: rediscover"],
        u64::from(40 - config::ADOPT_BURST)
    );
    // A NAKed client loses the offer it held: it will DISCOVER afresh.
    let m = attacker(77);
    let a = offered(&mut e, T0, m);
    assert!(!e.pool().is_free(a));
    let fx = run(&mut e, T0, &reboot(m, ip(61)));
    assert_eq!(kind(&fx), MessageType::Nak);
    assert!(e.pool().is_free(a), "the offer's address came back");
    assert!(fx.contains(&Effect::Known(m, false)));
    // The budget refills: one more a quarter second later.
    let fx = run(&mut e, T0 + 250, &reboot(attacker(99), ip(60)));
    assert_eq!(kind(&fx), MessageType::Ack);
    // An adopted client that renews gets the full lease time.
    let fx = run(&mut e, T0 + 60_000, &renew(attacker(0), ip(2)));
    let r = replies(&fx);
    assert_eq!(r[0].1.options.get_u32(LEASE_TIME), Some(3600));
    // Unrenewed adoptions expire after the short lease.
    let before = e.free_count();
    run(&mut e, T0 + 121_000, &discover(mac(9)));
    assert!(e.free_count() > before + 25, "adopted leases expired");
    assert_conserved(&e);
}

#[test]
fn nak_log_lines_are_rate_limited() {
    let mut e = engine(cfg());
    for _ in 0..100 {
        run(&mut e, T0, &select(mac(1), ip(9), SERVER));
    }
    assert_eq!(e.stats.naks, 100);
    assert_eq!(e.stats.logs_suppressed, 100 - u64::from(LogBudget::LINES));
    // The next window logs again.
    run(
        &mut e,
        T0 + LogBudget::WINDOW_MS,
        &select(mac(1), ip(9), SERVER),
    );
    assert_eq!(e.stats.logs_suppressed, 100 - u64::from(LogBudget::LINES));
}

#[test]
fn hostnames_from_an_older_lease_file_are_cleaned_on_load() {
    let mut e = Engine::new(cfg(), &[]).unwrap();
    let rec = LeaseRecord {
        mac: mac(1),
        ip: ip(200),
        expires: Some(T0 + 100_000),
        mode: Mode::Isolated,
        masq: false,
        hostname: Some("evil\u{202e}gpj.exe\u{200b}".into()),
        vendor: None,
    };
    e.start(T0, vec![rec], vec![]);
    assert_eq!(
        e.lease(&mac(1)).unwrap().hostname.as_deref(),
        Some("evilgpj.exe")
    );
}
