//! The XDP program against a hostile guest, through `BPF_PROG_TEST_RUN`:
//! frames wrapped in VLAN tags that once walked around every check, and a
//! shared bucket whose clock another CPU moved ahead.
//!
//! Needs root and the object built by `cargo xtask build-ebpf`.

use isodhcp_common::{Bucket, NEW_CLIENT_BUCKET};
use isodhcp_tests::xdp_run::{XdpRun, action, discover, expect, limits, with_tags};

fn mac(n: u16) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0x00, 0x5e, 0x20, b[0], b[1]]
}

fn tagged(mac: [u8; 6], tags: &[(u16, u16)]) -> Vec<u8> {
    with_tags(discover(mac), tags)
}

fn verdict(x: &XdpRun, f: &[u8], act: u32, counters: &[(&str, u64)], what: &str) {
    expect(&x.run(f).expect("run"), act, counters, what);
}

#[test]
fn tagged_flood_meets_the_same_limits() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = XdpRun::load().expect("load");
    // New-client budget 3; a per-MAC limit that never matters here.
    x.set_limits(limits((1, 100), (1, 1000), (1, 3))).unwrap();
    let wraps: [&[(u16, u16)]; 4] = [
        &[(0x88a8, 0)],
        &[(0x8100, 0)],
        &[(0x88a8, 0), (0x8100, 0)],
        &[(0x8100, 0x2000), (0x8100, 0)],
    ];
    // Random MACs behind priority tags: the first three win the budget,
    // the rest die in the kernel, counted like an untagged flood.
    for n in 0..40u16 {
        let f = tagged(mac(n), wraps[usize::from(n) % wraps.len()]);
        if n < 3 {
            verdict(
                &x,
                &f,
                action::PASS,
                &[("dhcp", 1), ("pass_stack", 1)],
                "winner",
            );
        } else {
            verdict(
                &x,
                &f,
                action::DROP,
                &[("dhcp", 1), ("drop_new_budget", 1)],
                "flood",
            );
        }
    }
}

#[test]
fn unreadable_priority_stacks_drop_and_other_vlans_pass() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = XdpRun::load().expect("load");
    x.set_limits(limits((1, 100), (1, 1000), (1, 100))).unwrap();
    let three = tagged(mac(1), &[(0x88a8, 0), (0x8100, 0), (0x8100, 0)]);
    verdict(
        &x,
        &three,
        action::DROP,
        &[("drop_vlan_depth", 1)],
        "three priority tags",
    );
    for tags in [
        &[(0x8100, 10)][..],
        &[(0x88a8, 0), (0x8100, 10)],
        &[(0x88a8, 7)],
    ] {
        verdict(
            &x,
            &tagged(mac(2), tags),
            action::PASS,
            &[("pass_vlan", 1)],
            &format!("DHCP for another VLAN {tags:x?}"),
        );
    }
    assert_eq!(x.fresh(mac(2)).unwrap(), None, "no limiter state for it");
}

#[test]
fn a_bucket_written_by_a_cpu_with_a_later_clock_is_not_refilled() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = XdpRun::load().expect("load");
    x.set_limits(limits((1, 100), (1, 1000), (1, 3))).unwrap();
    // Another CPU read a clock 10 s ahead of ours and spent the last token.
    let ahead = isodhcp_tests::xdp_run::monotonic_ns() + 10_000_000_000;
    x.set_bucket(
        NEW_CLIENT_BUCKET,
        Bucket {
            tokens_milli: 0,
            last_ns: ahead,
        },
    )
    .unwrap();
    for n in 0..5 {
        verdict(
            &x,
            &discover(mac(100 + n)),
            action::DROP,
            &[("dhcp", 1), ("drop_new_budget", 1)],
            "empty budget, clock behind the bucket",
        );
    }
    assert_eq!(x.bucket(NEW_CLIENT_BUCKET).unwrap().tokens_milli, 0);
}
