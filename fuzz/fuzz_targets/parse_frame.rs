//! Feeds arbitrary bytes through everything that touches network input:
//! admission's frame checks (the parser the XDP program runs), frame
//! parsing, the checked DHCP view (`MessageView`, what the daemon hands the
//! engine), the lease engine and reply encoding. Any panic is a bug
//! (design.md §Protocol: no panic on anything from the network), and so is a view whose option
//! lookups disagree with its owned copy, an owned copy that does not
//! survive encoding and decoding, or an engine whose bookkeeping disagrees
//! with itself or loses an address after any input (checked after every
//! call).
//!
//! The XDP OFFER responder (design.md §Offer responder) runs on every
//! admitted frame too, and is checked against the engine: a frame it turns
//! into an OFFER must be one the daemon would parse and answer with the
//! very same bytes (only `yiaddr` differs: the stripe's address, and the
//! UDP checksum, which the kernel leaves 0), and a frame it does not answer
//! must be left untouched.
#![no_main]

use std::net::Ipv4Addr;

use isodhcp::engine::{Effect, Engine, EngineConfig, Input};
use isodhcp::system::xdp::offer::{offer_cfg, stripe_slot};
use isodhcp::wire::view::MessageView;
use isodhcp::wire::{Mac, dhcp::Message, frame};
use isodhcp_common::offer::host::{SharedBuckets, VecFrame, roomy_limits};
use isodhcp_common::offer::{self, Ctx, GROW_MAX, Outcome, Plain, Work};
use isodhcp_common::parse::{Parsed, Request, parse_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // As a whole frame: what admission delivers reaches the engine, as in
    // the daemon.
    let parsed = parse_frame(data);
    if let Parsed::Request(req) = parsed {
        check_responder(data, &req);
    }
    let admitted = matches!(parsed, Parsed::Request(_));
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

const NOW_MS: u64 = 1_800_000_000_000;

fn responder_cfg(stripe: u32) -> EngineConfig {
    let mut cfg = EngineConfig::new(
        Ipv4Addr::new(198, 18, 0, 1),
        Mac([2, 0, 0, 0, 0, 1]),
        "198.18.0.0/26".parse().unwrap(),
    );
    cfg.dns = vec![Ipv4Addr::new(198, 18, 0, 53)];
    cfg.offer_stripe = stripe;
    cfg.stripe_key = 7;
    cfg
}

/// The kernel's responder over `data`; an OFFER must be the engine's.
fn check_responder(data: &[u8], req: &Request) {
    let Ok(mut striped) = Engine::new(responder_cfg(8), &[]) else {
        return;
    };
    striped.start(NOW_MS, vec![], vec![]);
    let cfg = offer_cfg(&striped, u64::MAX).expect("offer cfg");
    let slots: Vec<_> = striped
        .stripe_slots()
        .iter()
        .map(|u| stripe_slot(u, NOW_MS, 1))
        .collect();
    let limits = roomy_limits();
    let mut work = Work::default();
    let mut yiaddr = 0;
    let run = |work: &mut Work, yiaddr: &mut u32| {
        let mut c = Ctx {
            work,
            cfg: &cfg,
            limits: &limits,
            now: 1,
            frame_len: data.len(),
        };
        let mut f = data.to_vec();
        let out = offer::respond(
            &mut Plain,
            VecFrame(&mut f),
            &mut SharedBuckets::default(),
            &mut c,
            req,
            |i| {
                let s = slots.get(i as usize).copied();
                *yiaddr = s.map_or(0, |s| s.cur);
                s
            },
            |_| {},
        );
        (out, f)
    };
    let (out, f) = run(&mut work, &mut yiaddr);
    // The same frame again on the same CPU state: the options cache (a
    // hit now, where the first run filled it) changes nothing.
    let again = run(&mut work, &mut yiaddr);
    assert_eq!((out, &f), (again.0, &again.1), "the options cache changed the reply");
    if out != Outcome::Offered {
        assert_eq!(f, data, "{out:?}: the frame must stay as it came");
        return;
    }
    assert!(f.len() <= data.len() + GROW_MAX, "{} > {} + {GROW_MAX}", f.len(), data.len());
    let uf = frame::parse(data).expect("the responder answered a frame the daemon cannot parse");
    let v = MessageView::parse(uf.payload).expect("the responder answered a message the daemon ignores");
    let mut reference = Engine::new(responder_cfg(0), &[]).expect("engine");
    reference.start(NOW_MS, vec![], vec![]);
    let fx = reference.handle(NOW_MS, Input::Dhcp { msg: &v, in_use: &[] });
    let reply = fx
        .iter()
        .find_map(|e| match e {
            Effect::Send(r) => Some(r),
            _ => None,
        })
        .expect("the responder answered a DISCOVER the engine does not answer");
    let mut want = reply.payload.clone();
    want[16..20].copy_from_slice(&yiaddr.to_be_bytes());
    assert_eq!(&f[offer::BOOTP_AT..], &want[..], "the XDP OFFER is not the engine's");
    let out = frame::parse(&f).expect("the XDP OFFER parses as a frame");
    assert_eq!(out.dst_mac, reply.dst_mac);
}
