//! One table of frames, two admission paths: the XDP program in the kernel
//! (through `BPF_PROG_TEST_RUN`) and the daemon's userspace path for
//! `--xdp off` (`isodhcp::datapath::limiter::Limiter`). Both must reach the
//! same verdict and count it in the same counters, frame by frame, over the
//! same sequence of frames and tables (design.md §Admission).
//!
//! The two share one implementation (`isodhcp_common::decide`); this suite
//! is what keeps it that way, including the parts that are not shared: the
//! BPF map wrappers versus the `HashMap` tables, the XDP entry point's
//! actions versus the limiter's return value.
//!
//! Time: the kernel reads its own monotonic clock, the limiter is handed
//! the same clock right before each frame. Limits use rate 1/s and frames
//! go back to back, so the microseconds between the two readings cannot
//! refill a token.
//!
//! Needs root and the object built by `cargo xtask build-ebpf`.

use isodhcp::datapath::limiter::Limiter;
use isodhcp::wire::Mac;
use isodhcp_common::{Counters, Limits};
use isodhcp_tests::xdp_run::{
    XdpRun, action, counters_str, counters_sub, discover, limits, monotonic_ns, udp, with_tags,
};

/// Ethernet + IPv4 (no options) + UDP: where BOOTP starts.
const BOOTP: usize = 14 + 20 + 8;

fn mac(n: u16) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0x00, 0x5e, 0x20, b[0], b[1]]
}

/// Both paths with the same tables.
struct Both {
    xdp: XdpRun,
    user: Limiter,
    /// Rows checked so far (for the summary).
    rows: usize,
}

impl Both {
    fn new(l: Limits) -> Both {
        let mut xdp = XdpRun::load().expect("loading the XDP program");
        xdp.set_limits(l).expect("limits");
        Both {
            xdp,
            user: Limiter::new(l),
            rows: 0,
        }
    }

    fn deny(&mut self, m: [u8; 6], until: u64) {
        self.xdp.deny(m, until).unwrap();
        self.user.deny(Mac(m), until);
    }

    fn trust(&mut self, m: [u8; 6]) {
        self.xdp.trust(m).unwrap();
        self.user.trust(Mac(m));
    }

    fn known(&mut self, m: [u8; 6]) {
        self.xdp.known(m).unwrap();
        self.user.set_known(Mac(m), true);
    }

    /// Runs `frame` through both paths and asserts the same verdict and
    /// counters; returns the counters of this frame.
    #[track_caller]
    fn same(&mut self, frame: &[u8], what: &str) -> Counters {
        let before = self.user.counters;
        let delivered = self.user.decide(monotonic_ns(), frame);
        let user = counters_sub(&self.user.counters, &before);
        let k = self.xdp.run(frame).expect("BPF_PROG_TEST_RUN");
        assert_eq!(
            counters_str(&k.counters),
            counters_str(&user),
            "{what}: kernel vs userspace counters"
        );
        // No AF_XDP socket is bound in a test run: a delivered frame is
        // passed to the stack (`pass_stack`), as the limiter counts it.
        let dropped = k
            .counters
            .named()
            .iter()
            .any(|(n, v)| n.starts_with("drop_") && *v > 0);
        let want = if dropped { action::DROP } else { action::PASS };
        assert_eq!(
            k.action,
            want,
            "{what}: kernel action {}",
            action::name(k.action)
        );
        assert_eq!(
            delivered.is_some(),
            k.counters.pass_stack == 1,
            "{what}: delivered by userspace vs kernel"
        );
        if let Some(src) = delivered {
            assert_eq!(&src.0[..], &frame[6..12], "{what}: delivered MAC");
        }
        self.rows += 1;
        k.counters
    }
}

/// The well-formed DISCOVER of `m` with `edit` applied.
fn edited(m: [u8; 6], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut f = discover(m);
    edit(&mut f);
    f
}

/// Frames that exercise every check of the parser: (what, frame, the
/// counter it must land in).
fn malformed_and_foreign() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let c = mac(1);
    let set16 =
        |at: usize, v: u16| move |f: &mut Vec<u8>| f[at..at + 2].copy_from_slice(&v.to_be_bytes());
    vec![
        ("DISCOVER", discover(c), "pass_stack"),
        ("UDP to 53", udp(c, 68, 53, &[0; 300]), "non_dhcp"),
        ("TCP", edited(c, |f| f[14 + 9] = 6), "non_dhcp"),
        (
            "ARP ethertype",
            edited(c, |f| f[12..14].copy_from_slice(&[8, 6])),
            "non_dhcp",
        ),
        ("IPv6 version", edited(c, |f| f[14] = 0x65), "non_dhcp"),
        ("IHL 4", edited(c, |f| f[14] = 0x44), "drop_ihl"),
        (
            "IHL beyond frame",
            edited(c, |f| {
                f[14] = 0x4f;
                f.truncate(14 + 50);
            }),
            "drop_ihl",
        ),
        (
            "total length below header",
            edited(c, set16(16, 19)),
            "drop_ihl",
        ),
        (
            "first fragment",
            edited(c, |f| f[20] = 0x20),
            "drop_fragment",
        ),
        ("later fragment", edited(c, set16(20, 0x0010)), "non_dhcp"),
        ("UDP length 7", edited(c, set16(38, 7)), "drop_udp_len"),
        (
            "UDP length past frame",
            edited(c, set16(38, 0xffff)),
            "drop_udp_len",
        ),
        (
            "BOOTP short",
            edited(c, |f| {
                let ulen = 8 + 100u16;
                f[16..18].copy_from_slice(&(20 + ulen).to_be_bytes());
                f[38..40].copy_from_slice(&ulen.to_be_bytes());
            }),
            "drop_bootp_short",
        ),
        ("BOOTREPLY", edited(c, |f| f[BOOTP] = 2), "drop_not_request"),
        (
            "htype 6",
            edited(c, |f| f[BOOTP + 1] = 6),
            "drop_not_request",
        ),
        (
            "hlen 8",
            edited(c, |f| f[BOOTP + 2] = 8),
            "drop_not_request",
        ),
        (
            "chaddr spoof",
            edited(c, |f| f[BOOTP + 28 + 5] ^= 1),
            "drop_chaddr_spoof",
        ),
        (
            "source spoof",
            edited(c, |f| f[6] ^= 0x80),
            "drop_chaddr_spoof",
        ),
        (
            "priority tag",
            with_tags(discover(c), &[(0x8100, 0)]),
            "pass_stack",
        ),
        (
            "two priority tags",
            with_tags(discover(c), &[(0x88a8, 0), (0x8100, 0)]),
            "pass_stack",
        ),
        (
            "three priority tags",
            with_tags(discover(c), &[(0x88a8, 0), (0x8100, 0), (0x8100, 0)]),
            "drop_vlan_depth",
        ),
        (
            "VLAN 10",
            with_tags(discover(c), &[(0x8100, 10)]),
            "pass_vlan",
        ),
        (
            "spoof behind tags",
            with_tags(edited(c, |f| f[BOOTP + 28] ^= 1), &[(0x88a8, 0)]),
            "drop_chaddr_spoof",
        ),
    ]
}

#[test]
fn every_check_gives_the_same_verdict() {
    isodhcp_tests::needs_root!("BPF");
    let mut b = Both::new(limits((1, 1000), (1, 1000), (1, 1000)));
    for (what, f, counter) in malformed_and_foreign() {
        let c = b.same(&f, what);
        let named = c.named();
        let hit = named
            .iter()
            .find(|(n, _)| *n == counter)
            .expect("counter name");
        assert_eq!(
            hit.1,
            1,
            "{what}: expected {counter}, got {}",
            counters_str(&c)
        );
    }
}

#[test]
fn every_truncation_gives_the_same_verdict() {
    isodhcp_tests::needs_root!("BPF");
    let mut b = Both::new(limits((1, 1000), (1, 1000), (1, 1000)));
    for tags in [&[][..], &[(0x8100, 0)], &[(0x88a8, 0), (0x8100, 0)]] {
        let f = with_tags(discover(mac(2)), tags);
        for n in 14..f.len() {
            b.same(&f[..n], &format!("tags {tags:x?}, cut at {n}"));
        }
    }
    assert!(b.rows > 900, "{} rows", b.rows);
}

#[test]
fn random_corruption_gives_the_same_verdict() {
    isodhcp_tests::needs_root!("BPF");
    // A fixed xorshift stream: reproducible, no extra crate. Flips one to
    // four bytes of a DISCOVER (tagged or not) in the first 80 bytes, where
    // every check looks, 3000 times.
    let mut b = Both::new(limits((1, 1000), (1, 1000), (1, 1000)));
    let mut s: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut seen = Counters::default();
    for i in 0..3000u16 {
        let tags: &[(u16, u16)] = if i % 3 == 0 { &[(0x8100, 0)] } else { &[] };
        let mut f = with_tags(discover(mac(3 + i % 50)), tags);
        for _ in 0..=(next() % 4) {
            let at = (next() % 80) as usize;
            f[at] = next() as u8;
        }
        seen.add(&b.same(&f, &format!("corruption #{i}")));
    }
    // The stream reached more than one verdict, or it proved nothing.
    let classes = seen.named().iter().filter(|(_, v)| *v > 0).count();
    assert!(classes >= 6, "verdicts reached: {}", counters_str(&seen));
}

#[test]
fn limits_and_lists_give_the_same_verdicts() {
    isodhcp_tests::needs_root!("BPF");
    // Per-MAC burst 2, global burst 12, new-client burst 3; all at 1/s.
    let mut b = Both::new(limits((1, 2), (1, 12), (1, 3)));
    let now = monotonic_ns();
    b.deny(mac(10), 0);
    b.deny(mac(11), now + 60_000_000_000);
    b.deny(mac(12), now - 1);
    b.trust(mac(13));
    b.known(mac(14));
    let mut seen = Counters::default();
    let mut send = |b: &mut Both, m: u16, what: &str| seen.add(&b.same(&discover(mac(m)), what));
    send(&mut b, 10, "denied for ever");
    send(&mut b, 11, "denied for a minute");
    send(&mut b, 12, "deny expired");
    for i in 0..3 {
        send(&mut b, 14, &format!("known #{i}"));
    }
    for i in 0..3 {
        send(&mut b, 13, &format!("trusted #{i}"));
    }
    for i in 0..3 {
        send(&mut b, 20, &format!("fresh #{i}"));
    }
    for m in 30..36 {
        send(&mut b, m, &format!("new MAC {m}"));
    }
    for i in 0..4 {
        send(&mut b, 13, &format!("trusted, global spent #{i}"));
    }
    for name in [
        "drop_denied",
        "drop_known_rate",
        "drop_fresh_rate",
        "drop_new_budget",
        "drop_global",
        "pass_trusted",
    ] {
        let v = seen.named().iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(
            v > 0,
            "scenario never reached {name}: {}",
            counters_str(&seen)
        );
    }
}

#[test]
fn deny_and_validation_apply_before_limits_are_written() {
    isodhcp_tests::needs_root!("BPF");
    // The kernel before the daemon wrote its limits (abi 0) admits without
    // limits; the userspace path always has its limits. What both must
    // share even then is validation and the deny list.
    let mut xdp = XdpRun::load().expect("load");
    let mut user = Limiter::new(limits((1, 1000), (1, 1000), (1, 1000)));
    xdp.deny(mac(40), 0).unwrap();
    user.deny(Mac(mac(40)), 0);
    for (what, f) in [
        ("denied", discover(mac(40))),
        ("spoof", edited(mac(41), |f| f[BOOTP + 28] ^= 1)),
    ] {
        let before = user.counters;
        assert!(user.decide(monotonic_ns(), &f).is_none(), "{what}");
        let u = counters_sub(&user.counters, &before);
        let k = xdp.run(&f).unwrap();
        assert_eq!(counters_str(&k.counters), counters_str(&u), "{what}");
        assert_eq!(k.action, action::DROP, "{what}");
    }
}
