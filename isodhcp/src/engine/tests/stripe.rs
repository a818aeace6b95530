//! The engine's side of the XDP OFFER responder (design.md §Offer
//! responder): a REQUEST for the address the responder offered commits and
//! refills the stripe, collisions end in a NAK, and the stripe gives way
//! when the pool runs dry. The kernel's side against the engine:
//! `system::xdp::offer_tests`.

use isodhcp_common::{mac_key, stripe_index};

use super::*;

/// An engine with a stripe of `n` slots (key fixed) and a custom option.
pub(crate) fn striped(n: u32) -> Engine {
    engine(EngineConfig {
        offer_stripe: n,
        stripe_key: 0x5eed,
        custom_options: vec![crate::engine::CustomOption {
            code: 42,
            value: vec![198, 18, 0, 123],
        }],
        ..cfg()
    })
}

/// The address the stripe holds for `m`.
pub(crate) fn slot_of(e: &Engine, m: Mac) -> Ipv4Addr {
    let (len, key) = e.stripe();
    let i = stripe_index(key, mac_key(m.0), len) as usize;
    e.stripe_slots()[i].cur.expect("slot filled")
}

#[test]
fn a_request_for_the_striped_address_commits_and_refills() {
    let mut e = striped(16);
    let m = mac(1);
    let want = slot_of(&e, m);
    let free = e.free_count();
    let fx = run(&mut e, T0, &select(m, want, SERVER));
    assert_eq!(kind(&fx), MessageType::Ack, "{fx:?}");
    assert_eq!(replies(&fx)[0].1.yiaddr, want);
    assert_eq!(bound(&fx)[0].ip, want);
    assert!(fx.contains(&Effect::Known(m, true)));
    assert_eq!(e.stats.stripe_claims, 1);
    assert_eq!(e.stats.offers, 0, "the engine sent no OFFER");
    // The slot was refilled with another address from the pool.
    let refill = fx
        .iter()
        .filter(|f| matches!(f, Effect::Stripe(u) if u.cur.is_some()))
        .count();
    assert_eq!(refill, 1, "{fx:?}");
    assert_ne!(slot_of(&e, m), want);
    assert_eq!(e.free_count(), free - 1);
    assert!(
        e.check_conservation().is_empty(),
        "{:?}",
        e.check_conservation()
    );
}

/// Every slot of the stripe holds an address at start-up, on a fresh pool
/// and on one that restored leases already use: a MAC never hashes to a
/// slot the sizing left empty (it would miss the responder by bad luck).
#[test]
fn every_slot_is_filled_at_start() {
    let fresh = striped(256);
    let (len, _) = fresh.stripe();
    assert_eq!(len as usize, (fresh.free_count() + fresh.stripe_used()) / 4);
    assert_eq!(fresh.stripe_used(), len as usize);

    let mut used = Engine::new(
        EngineConfig {
            offer_stripe: 256,
            stripe_key: 7,
            ..cfg()
        },
        &[],
    )
    .unwrap();
    let records = (10..110)
        .map(|n| LeaseRecord {
            mac: mac(n),
            ip: ip(n),
            expires: Some(T0 + 60_000),
            mode: Mode::Isolated,
            masq: false,
            hostname: None,
            vendor: None,
        })
        .collect();
    let (_, rejected) = used.start(T0, records, vec![]);
    assert!(rejected.is_empty(), "{rejected:?}");
    let (len, _) = used.stripe();
    assert!(len < fresh.stripe().0, "{len}");
    assert_eq!(used.stripe_used(), len as usize);
    assert!(used.check_conservation().is_empty());
}

#[test]
fn a_request_for_another_address_or_server_is_refused() {
    let mut e = striped(16);
    let m = mac(2);
    let want = slot_of(&e, m);
    let other = Ipv4Addr::from(u32::from(want) - 100);
    let fx = run(&mut e, T0, &select(m, other, SERVER));
    assert_eq!(kind(&fx), MessageType::Nak);
    let fx = run(&mut e, T0, &select(m, want, ip(254)));
    assert!(replies(&fx).is_empty(), "another server's: silence");
    assert_eq!(e.stats.stripe_claims, 0);
    assert!(e.check_conservation().is_empty());
}

#[test]
fn the_loser_of_a_slot_collision_is_naked_and_rediscovers() {
    let mut e = striped(4);
    let (len, key) = e.stripe();
    let a = mac(1);
    let ia = stripe_index(key, mac_key(a.0), len);
    let b = (2..=255)
        .map(mac)
        .find(|m| stripe_index(key, mac_key(m.0), len) == ia)
        .expect("a MAC in the same slot");
    let both = slot_of(&e, a);
    assert_eq!(
        kind(&run(&mut e, T0, &select(a, both, SERVER))),
        MessageType::Ack
    );
    let fx = run(&mut e, T0 + 1, &select(b, both, SERVER));
    assert_eq!(kind(&fx), MessageType::Nak);
    // Its next DISCOVER meets the refilled slot, which it can claim.
    let next = slot_of(&e, b);
    assert_ne!(next, both);
    assert_eq!(
        kind(&run(&mut e, T0 + 2, &select(b, next, SERVER))),
        MessageType::Ack
    );
    assert!(e.check_conservation().is_empty());
}

#[test]
fn the_stripe_gives_way_when_the_pool_runs_dry() {
    // /27: 29 usable addresses (30 minus the server); the stripe takes at most a quarter.
    let mut e = engine(EngineConfig {
        offer_stripe: 256,
        stripe_key: 1,
        pool: "198.18.0.0/27".parse().unwrap(),
        ..cfg()
    });
    let held = e.stripe_used();
    assert!(held > 0 && held <= 8, "{held}");
    let total = e.free_count() + held;
    for n in 0..total {
        lease(&mut e, T0, mac(n as u8 + 1));
    }
    assert_eq!(e.stripe_used(), 0);
    assert_eq!(e.free_count(), 0);
    assert!(
        e.check_conservation().is_empty(),
        "{:?}",
        e.check_conservation()
    );
}
