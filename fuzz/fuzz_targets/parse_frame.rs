//! Feeds arbitrary bytes through everything that touches network input:
//! frame parsing, DHCP parsing, the lease engine and reply encoding. Any
//! panic is a bug (design.md §Protocol: no panic on anything from the network), and so is
//! an engine whose bookkeeping disagrees with itself or loses an address
//! after any input (checked after every call).
#![no_main]

use std::net::Ipv4Addr;

use isodhcp::engine::{Engine, EngineConfig, Input};
use isodhcp::wire::{Mac, dhcp::Message, frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a whole frame.
    if let Ok(f) = frame::parse(data) {
        if let Ok(m) = Message::parse(f.payload) {
            run_engine(f.src_mac, &m);
        }
    }
    // As a bare BOOTP payload, so the fuzzer need not find valid headers first.
    if let Ok(m) = Message::parse(data) {
        let _ = m.emit(Some(576), 0);
        run_engine(m.client_mac(), &m);
    }
});

fn run_engine(src: Mac, m: &Message) {
    let mut cfg = EngineConfig::new(
        Ipv4Addr::new(198, 18, 0, 1),
        Mac([2, 0, 0, 0, 0, 1]),
        "198.18.0.0/27".parse().unwrap(),
    );
    cfg.dns = vec![Ipv4Addr::new(198, 18, 0, 53)];
    cfg.lease_time = 600;
    cfg.max_offers = 4;
    cfg.playground_size = Some(8);
    cfg.classifier.compat.vendors = vec!["c".into()];
    cfg.classifier.playground.vendors = vec!["p".into()];
    let Ok(mut e) = Engine::new(cfg, &[]) else {
        return;
    };
    let now = 1_800_000_000_000;
    e.start(now, vec![], vec![]);
    let in_use = e.candidates(m);
    for i in 0..3 {
        let busy = if i == 0 {
            &in_use[..in_use.len().min(2)]
        } else {
            &[][..]
        };
        let _ = e.handle(
            now + i,
            Input::Dhcp {
                src_mac: src,
                msg: m,
                in_use: busy,
            },
        );
        check(&e);
    }
    let _ = e.handle(now + 10_000_000, Input::Tick);
    check(&e);
}

fn check(e: &Engine) {
    let problems: Vec<String> = e
        .check_consistency()
        .into_iter()
        .chain(e.check_conservation())
        .collect();
    assert!(problems.is_empty(), "{problems:#?}");
}
