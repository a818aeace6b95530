//! Verdicts of the isodhcp XDP program on crafted frames, run in the kernel
//! through `BPF_PROG_TEST_RUN` (see `isodhcp_tests::xdp_run`). Frames come
//! from the daemon's own codec (`isodhcp::wire`).
//!
//! Needs root and the object built by `cargo xtask build-ebpf` (or
//! `ISODHCP_EBPF_OBJ`). Nothing is attached to an interface; every test loads
//! its own copy of the program with fresh maps.
//!
//! Time: the program sees the real monotonic clock and buckets refill in real
//! time. Every limit test uses rate 1/s and sends its burst + 1 frames back to
//! back (microseconds apart), so refill (one token per second) cannot flip a
//! result.
//!
//! `cargo test -p isodhcp-tests --release --test xdp_verdicts -- --test-threads=1`

use std::path::PathBuf;

use isodhcp_common::{Limits, NEW_CLIENT_BUCKET};
use isodhcp_tests::daemon::{bpftool_json, sum_field};
use isodhcp_tests::util::find_tool;
use isodhcp_tests::xdp_run::{
    XdpRun, action, counters_str, discover, expect, limits, monotonic_ns, udp,
};

const CLIENT: [u8; 6] = [0x02, 0x00, 0x5e, 0x00, 0x00, 0x01];
/// Ethernet + IPv4 (no options) + UDP.
const BOOTP: usize = 14 + 20 + 8;

fn load() -> XdpRun {
    XdpRun::load().expect("loading the XDP program")
}

fn mac(n: u16) -> [u8; 6] {
    let b = n.to_be_bytes();
    [0x02, 0x00, 0x5e, 0x10, b[0], b[1]]
}

/// Sets the IPv4 total length and UDP length after resizing the payload.
fn fix_lengths(f: &mut [u8]) {
    let ip_len = (f.len() - 14) as u16;
    f[16..18].copy_from_slice(&ip_len.to_be_bytes());
    f[38..40].copy_from_slice(&(ip_len - 20).to_be_bytes());
}

/// Generous limits: nothing in these tests comes close.
fn roomy() -> Limits {
    limits((1, 1000), (1, 1000), (1, 1000))
}

#[track_caller]
fn passes_to_stack(x: &XdpRun, f: &[u8], what: &str) {
    expect(
        &x.run(f).expect("run"),
        action::PASS,
        &[("dhcp", 1), ("pass_stack", 1)],
        what,
    );
}

#[track_caller]
fn drops(x: &XdpRun, f: &[u8], counter: &str, what: &str) {
    expect(
        &x.run(f).expect("run"),
        action::DROP,
        &[("dhcp", 1), (counter, 1)],
        what,
    );
}

#[test]
fn non_dhcp_passes_untouched() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = load();
    // Limits that would drop every DHCP frame: non-DHCP must not care.
    x.set_limits(limits((1, 0), (1, 0), (1, 0))).unwrap();

    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&CLIENT);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&CLIENT);
    arp.extend_from_slice(&[198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 198, 18, 0, 1]);

    let mut tcp67 = discover(CLIENT);
    tcp67[23] = 6; // protocol TCP, same bytes otherwise

    let dns = udp(CLIENT, 40000, 53, &[0u8; 40]);
    let bootpc = udp(CLIENT, 67, 68, &[0u8; 300]); // server-to-client port 68

    // IPv6/UDP to port 67 (DHCP is IPv4 only).
    let mut v6 = vec![0x33, 0x33, 0, 1, 0, 2];
    v6.extend_from_slice(&CLIENT);
    v6.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0, 0, 16, 17, 64]);
    v6.extend_from_slice(&[0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6.extend_from_slice(&[0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2]);
    v6.extend_from_slice(&[0, 68, 0, 67, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);

    // A non-first IPv4 fragment has no UDP header: not identifiable as DHCP.
    let mut frag = discover(CLIENT);
    frag[20..22].copy_from_slice(&[0x00, 0x10]);

    // IPv4 ethertype but IP version 6: not DHCP (the stack drops it).
    let mut badver = discover(CLIENT);
    badver[14] = 0x65;

    // Cut before the UDP destination port.
    let runt = discover(CLIENT)[..14 + 20 + 3].to_vec();

    // Two 802.1Q tags: only one is handled, the inner ethertype is not IPv4.
    let mut qinq = discover(CLIENT);
    qinq.splice(12..12, [0x81, 0x00, 0x00, 0x0a, 0x81, 0x00, 0x00, 0x0b]);

    for (what, f) in [
        ("ARP", &arp),
        ("TCP/67", &tcp67),
        ("UDP/53", &dns),
        ("UDP/68", &bootpc),
        ("IPv6 UDP/67", &v6),
        ("non-first fragment", &frag),
        ("IP version 6 in an IPv4 frame", &badver),
        ("runt", &runt),
        ("QinQ", &qinq),
    ] {
        let o = x.run(f).expect("run");
        expect(&o, action::PASS, &[("non_dhcp", 1)], what);
        assert_eq!(&o.frame_out, f, "{what}: frame modified");
    }
}

#[test]
fn conforming_frame_without_socket_passes_to_stack() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = load();
    let f = discover(CLIENT);
    // Limits not written yet (abi 0): fail-open, but still validated.
    passes_to_stack(&x, &f, "DISCOVER, no limits");
    let mut spoof = f.clone();
    spoof[BOOTP + 28] ^= 2;
    drops(&x, &spoof, "drop_chaddr_spoof", "spoof, no limits");

    x.set_limits(roomy()).unwrap();
    let o = x.run(&f).expect("run");
    expect(
        &o,
        action::PASS,
        &[("dhcp", 1), ("pass_stack", 1)],
        "DISCOVER",
    );
    assert_eq!(o.frame_out, f, "admitted frame modified");

    // Priority tags (VLAN id 0) that the kernel would strip: one 802.1Q,
    // one 802.1ad, or both stacked, are read through.
    for tags in [
        &[0x81, 0x00, 0x00, 0x00][..],
        &[0x88, 0xa8, 0x20, 0x00],
        &[0x88, 0xa8, 0x00, 0x00, 0x81, 0x00, 0x00, 0x00],
    ] {
        let mut tagged = f.clone();
        tagged.splice(12..12, tags.iter().copied());
        passes_to_stack(&x, &tagged, &format!("DISCOVER behind tags {tags:02x?}"));
    }

    // IP options (IHL 6), lengths consistent.
    let mut opts = f.clone();
    opts[14] = 0x46;
    opts.splice(34..34, [1, 1, 1, 0]);
    let ip_len = (opts.len() - 14) as u16;
    opts[16..18].copy_from_slice(&ip_len.to_be_bytes());
    passes_to_stack(&x, &opts, "DISCOVER with IP options");

    // DF set is not a fragment; Ethernet padding after the datagram is fine.
    let mut df = f.clone();
    df[20] = 0x40;
    df.extend_from_slice(&[0; 16]);
    passes_to_stack(&x, &df, "DISCOVER with DF and padding");
}

#[test]
fn malformed_requests_drop_with_their_counter() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = load();
    x.set_limits(roomy()).unwrap();
    let good = discover(CLIENT);
    let mut cases: Vec<(&str, Vec<u8>, &str)> = Vec::new();

    let mut f = good.clone();
    f[14] = 0x44; // IHL 4
    cases.push(("IHL 4", f, "drop_ihl"));
    let mut f = good.clone();
    f[14] = 0x4f; // IHL 15: 60-byte header in a frame cut to 50 IP bytes
    f.truncate(14 + 50);
    cases.push(("IHL beyond frame", f, "drop_ihl"));
    let mut f = good.clone();
    f[16..18].copy_from_slice(&19u16.to_be_bytes());
    cases.push(("total length below header", f, "drop_ihl"));

    let mut f = good.clone();
    f[20] = 0x20; // MF
    cases.push(("first fragment (MF)", f, "drop_fragment"));
    let mut f = good.clone();
    f[20] = 0x60; // DF + MF
    cases.push(("MF with DF", f, "drop_fragment"));

    let mut f = good.clone();
    f[38..40].copy_from_slice(&7u16.to_be_bytes());
    cases.push(("UDP length 7", f, "drop_udp_len"));
    let mut f = good.clone();
    let too_long = (good.len() - 14 - 20 + 1) as u16;
    f[38..40].copy_from_slice(&too_long.to_be_bytes());
    cases.push(("UDP length beyond IP length", f, "drop_udp_len"));
    let mut f = good.clone();
    f.truncate(BOOTP + 100); // IP/UDP lengths still claim 300 bytes
    cases.push(("frame cut inside BOOTP", f, "drop_udp_len"));
    let mut f = good.clone();
    f.truncate(14 + 20 + 6);
    cases.push(("UDP header cut", f, "drop_udp_len"));

    let mut f = good.clone();
    f.truncate(BOOTP + 235);
    fix_lengths(&mut f);
    cases.push(("BOOTP 235 bytes", f, "drop_bootp_short"));
    let mut f = good.clone();
    f.truncate(BOOTP + 10);
    fix_lengths(&mut f);
    f.extend_from_slice(&[0; 300]); // padding does not count
    cases.push(("BOOTP 10 bytes, padded frame", f, "drop_bootp_short"));

    let mut f = good.clone();
    f[BOOTP] = 2;
    cases.push(("op BOOTREPLY", f, "drop_not_request"));
    let mut f = good.clone();
    f[BOOTP + 1] = 6;
    cases.push(("htype 6", f, "drop_not_request"));
    let mut f = good.clone();
    f[BOOTP + 2] = 16;
    cases.push(("hlen 16", f, "drop_not_request"));

    let mut f = good.clone();
    f[BOOTP + 28 + 5] ^= 1;
    cases.push(("chaddr differs", f, "drop_chaddr_spoof"));
    let mut f = good.clone();
    f[6] = 0x0a; // Ethernet source differs
    cases.push(("Ethernet source differs", f, "drop_chaddr_spoof"));
    let mut f = good.clone();
    f.splice(12..12, [0x81, 0x00, 0x00, 0x00]);
    f[4 + BOOTP + 28] ^= 0x80;
    cases.push(("tagged spoof", f, "drop_chaddr_spoof"));
    let mut f = good.clone();
    f.splice(12..12, [0x88, 0xa8, 0x00, 0x00, 0x81, 0x00, 0x00, 0x00]);
    f[8 + BOOTP + 28] ^= 0x80;
    cases.push(("double-tagged spoof", f, "drop_chaddr_spoof"));

    for (what, f, counter) in &cases {
        drops(&x, f, counter, what);
    }
    // None of them touched the limiter state.
    assert_eq!(x.fresh(CLIENT).unwrap(), None);
    passes_to_stack(&x, &good, "good frame after all that");
}

#[test]
fn deny_drops_until_expiry() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = load();
    x.set_limits(roomy()).unwrap();
    let (forever, later, expired) = (mac(1), mac(2), mac(3));
    let now = monotonic_ns();
    x.deny(forever, 0).unwrap();
    x.deny(later, now + 3_600_000_000_000).unwrap();
    x.deny(expired, now - 1).unwrap();
    x.trust(forever).unwrap(); // deny wins over trust
    drops(
        &x,
        &discover(forever),
        "drop_denied",
        "denied for ever (and trusted)",
    );
    drops(&x, &discover(later), "drop_denied", "denied for an hour");
    passes_to_stack(&x, &discover(expired), "expired deny entry");

    // Deny applies before the daemon wrote the limits, too.
    let mut y = load();
    y.deny(forever, 0).unwrap();
    drops(&y, &discover(forever), "drop_denied", "denied, no limits");
}

#[test]
fn trust_bypasses_the_per_mac_limit() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = load();
    x.set_limits(limits((1, 2), (1, 1000), (1, 1))).unwrap();
    let t = mac(7);
    x.trust(t).unwrap();
    for i in 0..6 {
        let o = x.run(&discover(t)).unwrap();
        expect(
            &o,
            action::PASS,
            &[("dhcp", 1), ("pass_trusted", 1), ("pass_stack", 1)],
            &format!("trusted frame {i}"),
        );
    }
    // Trusted frames neither spent the new-client budget nor got an LRU entry.
    assert_eq!(x.fresh(t).unwrap(), None);
    passes_to_stack(
        &x,
        &discover(mac(8)),
        "unknown MAC still gets the one new-client token",
    );
}

#[test]
fn known_client_over_its_rate_drops() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = load();
    x.set_limits(limits((1, 3), (1, 1000), (1, 1000))).unwrap();
    let k = mac(20);
    x.known(k).unwrap();
    for i in 0..3 {
        passes_to_stack(&x, &discover(k), &format!("known frame {i} (burst 3)"));
    }
    drops(&x, &discover(k), "drop_known_rate", "known frame 4");
    drops(&x, &discover(k), "drop_known_rate", "known frame 5");
    // Known clients never touch the new-client budget or the LRU.
    assert_eq!(x.fresh(k).unwrap(), None);
    assert_eq!(x.bucket(NEW_CLIENT_BUCKET).unwrap().last_ns, 0);
    // Another known client has its own bucket.
    let k2 = mac(21);
    x.known(k2).unwrap();
    passes_to_stack(&x, &discover(k2), "second known client");
}

#[test]
fn new_client_budget_exhaustion_spares_known_clients() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = load();
    // New-client budget 2, per-MAC burst 3.
    x.set_limits(limits((1, 3), (1, 1000), (1, 2))).unwrap();
    let known = mac(100);
    x.known(known).unwrap();

    passes_to_stack(&x, &discover(mac(1)), "unknown 1 wins a new-client token");
    passes_to_stack(&x, &discover(mac(2)), "unknown 2 wins the last token");
    let b = x
        .fresh(mac(1))
        .unwrap()
        .expect("unknown 1 has an LRU bucket");
    assert_eq!(
        b.tokens_milli, 2000,
        "LRU bucket starts with one token spent (burst 3)"
    );

    // A random-MAC burst: every further unknown MAC is dropped, no LRU entry.
    for n in 3..40 {
        drops(
            &x,
            &discover(mac(n)),
            "drop_new_budget",
            &format!("unknown {n}"),
        );
        assert_eq!(
            x.fresh(mac(n)).unwrap(),
            None,
            "unknown {n} got an LRU entry"
        );
        if n % 10 == 0 {
            passes_to_stack(
                &x,
                &discover(known),
                &format!("known client amid the flood ({n})"),
            );
        }
    }
    // Admitted unknown MACs continue under their own per-MAC bucket ...
    passes_to_stack(
        &x,
        &discover(mac(1)),
        "unknown 1, second frame (fresh bucket)",
    );
    passes_to_stack(
        &x,
        &discover(mac(1)),
        "unknown 1, third frame (fresh bucket)",
    );
    // ... and are limited by it.
    drops(
        &x,
        &discover(mac(1)),
        "drop_fresh_rate",
        "unknown 1, fourth frame",
    );
}

#[test]
fn global_budget_caps_everything() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = load();
    x.set_limits(limits((1, 1000), (1, 3), (1, 1000))).unwrap();
    let (known, trusted) = (mac(50), mac(51));
    x.known(known).unwrap();
    x.trust(trusted).unwrap();
    passes_to_stack(&x, &discover(known), "known 1");
    passes_to_stack(&x, &discover(mac(52)), "unknown 1");
    let o = x.run(&discover(trusted)).unwrap();
    expect(
        &o,
        action::PASS,
        &[("dhcp", 1), ("pass_trusted", 1), ("pass_stack", 1)],
        "trusted 1",
    );
    drops(&x, &discover(known), "drop_global", "known over global");
    drops(&x, &discover(mac(53)), "drop_global", "unknown over global");
    drops(&x, &discover(trusted), "drop_global", "trusted over global");
    let c = x.counters().unwrap();
    assert_eq!(
        (c.dhcp, c.drop_global, c.pass_stack),
        (6, 3, 3),
        "{}",
        counters_str(&c)
    );
}

#[test]
fn foreign_abi_limits_fail_open() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = load();
    let mut l = limits((1, 0), (1, 0), (1, 0));
    l.abi = 0xdead;
    x.set_limits_raw(l).unwrap();
    passes_to_stack(&x, &discover(CLIENT), "limits of another ABI are ignored");
    x.set_limits(l).unwrap();
    drops(
        &x,
        &discover(CLIENT),
        "drop_new_budget",
        "same limits, this ABI",
    );
}

/// Removes a bpffs pin on drop.
struct Pin(PathBuf);

impl Drop for Pin {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn pinned_counters_dump_with_field_names() {
    isodhcp_tests::needs_root!("BPF");
    let x = load();
    find_tool("bpftool").expect("bpftool is needed for this test");
    let pin = Pin(PathBuf::from(format!(
        "/sys/fs/bpf/isodhcp-xdp-verdicts-{}",
        std::process::id()
    )));
    let _ = std::fs::remove_file(&pin.0);
    x.pin_counters(&pin.0)
        .expect("pin counters (is /sys/fs/bpf a bpffs?)");
    x.run(&discover(CLIENT)).unwrap();
    x.run(&discover(CLIENT)).unwrap();
    x.run(&udp(CLIENT, 1, 53, &[0; 8])).unwrap();
    let path = pin.0.to_str().unwrap();
    let v = bpftool_json(&["map", "dump", "pinned", path]).expect("bpftool map dump");
    let text = v.to_string();
    for name in isodhcp_common::COUNTER_NAMES {
        assert!(
            text.contains(&format!("\"{name}\"")),
            "field {name} missing from {text}"
        );
    }
    assert_eq!(sum_field(&v, "dhcp"), 2, "{text}");
    assert_eq!(sum_field(&v, "pass_stack"), 2, "{text}");
    assert_eq!(sum_field(&v, "non_dhcp"), 1, "{text}");
}

/// Mean in-kernel cost per frame (`--nocapture` prints it). Only sanity-checked.
#[test]
fn cost_per_frame() {
    isodhcp_tests::needs_root!("BPF");
    let mut x = load();
    let dns = udp(CLIENT, 1, 53, &[0; 64]);
    let f = discover(CLIENT);
    let (a, non) = x.bench(&dns, 1_000_000).unwrap();
    assert_eq!(a, action::PASS);
    let (a, open) = x.bench(&f, 1_000_000).unwrap();
    assert_eq!(a, action::PASS);
    x.set_limits(limits((1, 1), (1, 1000), (1, 1000))).unwrap();
    x.known(CLIENT).unwrap();
    let (a, limited) = x.bench(&f, 1_000_000).unwrap();
    assert_eq!(a, action::DROP);
    let (a, flood) = x.bench(&discover(mac(999)), 1_000_000).unwrap();
    assert_eq!(a, action::DROP);
    println!(
        "XDP ns/frame: non-DHCP pass {}, DHCP admitted (no limits) {}, known over rate {}, unknown MAC (fresh over rate) {}",
        non.as_nanos(),
        open.as_nanos(),
        limited.as_nanos(),
        flood.as_nanos()
    );
    for d in [non, open, limited, flood] {
        assert!(d.as_micros() < 20, "implausible cost {d:?}");
    }
}

/// The opt-in debug events: the default object has no ring buffer for them
/// at all; the `--xdp-debug` build (`ISODHCP_EBPF_DEBUG_OBJ`, which `cargo
/// xtask test` builds and sets) passes the verifier, decides the same, and
/// writes one record per DHCP frame and none for other traffic.
#[test]
fn debug_events_only_in_the_debug_build() {
    isodhcp_tests::needs_root!("BPF");
    assert!(
        !load().has_map("AYA_LOGS"),
        "the default object carries the debug ring buffer"
    );
    let Some(p) = std::env::var_os("ISODHCP_EBPF_DEBUG_OBJ").filter(|p| !p.is_empty()) else {
        eprintln!(
            "debug object not checked: ISODHCP_EBPF_DEBUG_OBJ unset (cargo xtask test sets it)"
        );
        return;
    };
    let mut x = XdpRun::load_object(&PathBuf::from(p)).expect("the debug object must load");
    x.set_limits(roomy()).unwrap();
    passes_to_stack(&x, &discover(CLIENT), "DISCOVER, debug build");
    let o = x.run(&udp(CLIENT, 68, 53, &[0; 64])).expect("run");
    assert_eq!(o.action, action::PASS, "DNS frame, debug build");
    assert_eq!(
        x.ring_records("AYA_LOGS").unwrap(),
        1,
        "records for one DHCP and one other frame"
    );
}
