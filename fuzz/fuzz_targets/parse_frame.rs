//! Feeds arbitrary bytes through everything that touches network input:
//! admission's frame checks (the parser the XDP program runs), frame
//! parsing, the checked DHCP view (`MessageView`, what the daemon hands the
//! engine), the lease engine and reply encoding. Any panic is a bug
//! (design.md §Protocol: no panic on anything from the network), and so is a view whose option
//! lookups disagree with its owned copy, an owned copy that does not
//! survive encoding and decoding, or an engine whose bookkeeping disagrees
//! with itself or loses an address after any input (checked after every
//! call).
#![no_main]

use std::net::Ipv4Addr;

use isodhcp::engine::{Engine, EngineConfig, Input};
use isodhcp::wire::view::MessageView;
use isodhcp::wire::{Mac, dhcp::Message, frame};
use isodhcp_common::parse::{Parsed, parse_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a whole frame: what admission delivers reaches the engine, as in
    // the daemon.
    let admitted = matches!(parse_frame(data), Parsed::Request(_));
    if let Ok(f) = frame::parse(data) {
        if let Ok(v) = MessageView::parse(f.payload) {
            if admitted {
                run_engine(&v);
            }
        }
    }
    // As a bare BOOTP payload, so the fuzzer need not find valid headers
    // first. The engine must not panic or lose an address even on messages
    // admission would have dropped.
    if let Ok(v) = MessageView::parse(data) {
        let m = check_view(&v);
        let _ = m.emit(Some(576), 0);
        run_engine(&v);
    }
});

/// The view answers every option lookup like its owned copy, and the
/// owned copy comes back unchanged from `emit` and `parse`. Returns it.
fn check_view(v: &MessageView<'_>) -> Message {
    let m = v.to_message();
    for code in 0..=255u8 {
        assert_eq!(v.options().get(code).as_deref(), m.options.get(code));
    }
    assert_eq!(v.options().len(), m.options.len());
    let bytes = m.emit(None, 0).expect("no size limit");
    assert_eq!(Message::parse(&bytes).as_ref(), Ok(&m), "{bytes:?}");
    m
}

fn run_engine(m: &MessageView<'_>) {
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
