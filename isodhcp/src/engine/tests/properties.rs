//! Property test: random sequences of client messages, neighbour-table
//! answers and time steps, over a small pool with all three address modes.
//! After every input the engine's bookkeeping must agree with itself and
//! every address of the pool must be in exactly one place (see
//! `engine::invariant`). Deterministic: a failing seed is printed and can
//! be replayed.

use std::collections::HashSet;

use super::*;
use crate::engine::classify::{Classifier, Matcher};

/// xorshift64*: small, deterministic, good enough to pick test inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn config() -> EngineConfig {
    let by_mac = |n: &[u8]| Matcher {
        macs: n.iter().map(|i| mac(*i)).collect::<HashSet<_>>(),
        ..Matcher::default()
    };
    EngineConfig {
        pool: "198.18.0.0/27".parse().unwrap(),
        lease_time: 60,
        offer_hold_ms: 5_000,
        max_offers: 6,
        playground_size: Some(8),
        classifier: Classifier {
            compat: Matcher {
                vendors: vec!["legacy".into()],
                ..by_mac(&[1, 2])
            },
            playground: by_mac(&[3, 4]),
            ..Classifier::default()
        },
        statics: vec![StaticEntry {
            mac: mac(5),
            ip: ip(20),
            hostname: None,
            compat: false,
            masquerade: false,
            playground: false,
        }],
        ..cfg()
    }
}

/// One random client message: any type, from one of a dozen MACs, naming a
/// random address of the pool (or the server) where the type takes one.
fn random_message(r: &mut Rng) -> Message {
    let m = mac(1 + r.below(12) as u8);
    let addr = ip(r.below(34) as u8);
    let mut out = match r.below(8) {
        0 | 1 => discover(m),
        2 => select(m, addr, if r.below(5) == 0 { ip(99) } else { SERVER }),
        3 => reboot(m, addr),
        4 => renew(m, addr),
        5 => {
            let mut x = msg(m, MessageType::Release);
            x.ciaddr = addr;
            x
        }
        6 => {
            let mut x = msg(m, MessageType::Decline);
            x.options.set_ip(REQUESTED_IP, addr);
            x
        }
        _ => {
            let mut x = msg(m, MessageType::Inform);
            x.ciaddr = addr;
            x
        }
    };
    if r.below(6) == 0 {
        out.options.set(VENDOR_CLASS, b"legacy".to_vec());
    }
    out
}

fn run_seed(seed: u64, steps: usize) {
    let mut r = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut e = Engine::new(config(), &[]).unwrap();
    let mut now = T0;
    e.start(now, vec![], vec![]);
    for step in 0..steps {
        now += r.below(3_000);
        if r.below(10) == 0 {
            e.handle(now, Input::Tick);
        } else {
            let b = wire(&random_message(&mut r));
            let m = view(&b);
            // The neighbour table shows some of the candidates alive.
            let in_use: Vec<Ipv4Addr> = e
                .candidates(&m)
                .into_iter()
                .filter(|_| r.below(3) == 0)
                .collect();
            e.handle(
                now,
                Input::Dhcp {
                    msg: &m,
                    in_use: &in_use,
                },
            );
        }
        let problems: Vec<String> = e
            .check_consistency()
            .into_iter()
            .chain(e.check_conservation())
            .collect();
        assert!(
            problems.is_empty(),
            "seed {seed}, step {step}: {problems:#?}"
        );
    }
    // Once everything has run out, the whole pool is free again.
    e.handle(now + 10 * 60 * 60 * 1000, Input::Tick);
    let free = e.free_count();
    let universe = e.pool().universe().count();
    assert_eq!(free, universe, "seed {seed}: not all addresses came back");
}

#[test]
fn random_sequences_conserve_every_address() {
    for seed in 0..300 {
        run_seed(seed, 400);
    }
}
