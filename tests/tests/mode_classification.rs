//! Classification (design.md §Classification, §Masquerade): vendor class (option 60,
//! case-insensitive substring) selects compat; precedence MAC > OUI > vendor, compat beats
//! playground at one level; the vendor class is remembered with the lease; masquerade is an
//! orthogonal flag stored with the lease.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test mode_classification -- --test-threads=1`

use std::net::Ipv4Addr;

use isodhcp::wire::Mac;
use isodhcp::wire::options::{self, MessageType};
use isodhcp_tests::crafted::{self, Captured, To, lease_entry, lease_files_text, mac, request};

fn ip(h: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, h)
}

const COMPAT_MASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 252);
const PG_MASK: Ipv4Addr = Ipv4Addr::new(255, 255, 255, 248);

fn vendor(v: &str) -> Vec<(u8, Vec<u8>)> {
    vec![(options::VENDOR_CLASS, v.as_bytes().to_vec())]
}

fn mask(r: &Captured) -> Option<Ipv4Addr> {
    r.opt_ip(options::SUBNET_MASK)
}

#[test]
fn vendor_class_selects_compat() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = crafted::setup_with("k5vendor", &["--compat-vendor", "Android"]);
    let a = mac(1, 1);
    let o = dhcp
        .discover(a, &vendor("android-dhcp-14"))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert_eq!(
        (o.msg.yiaddr, mask(&o)),
        (ip(6), Some(COMPAT_MASK)),
        "vendor match → compat"
    );
    let b = mac(1, 2);
    let o = dhcp
        .discover(b, &vendor("MSFT 5.0"))
        .expect("non-matching vendor");
    assert_eq!(
        (o.msg.yiaddr, mask(&o)),
        (ip(254), Some(Ipv4Addr::BROADCAST)),
        "no match → isolated"
    );
    let c = mac(1, 3);
    let o = dhcp.discover(c, &[]).expect("no option 60");
    assert_eq!(
        mask(&o),
        Some(Ipv4Addr::BROADCAST),
        "no option 60 → isolated"
    );
    let d = mac(1, 4);
    let o = dhcp
        .discover(d, &vendor("XX-ANDROID-YY"))
        .expect("substring, other case");
    assert_eq!(
        mask(&o),
        Some(COMPAT_MASK),
        "vendor match is a case-insensitive substring"
    );
}

/// MAC > OUI > vendor across modes; compat beats playground at one level.
#[test]
fn classification_precedence() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = crafted::setup_with(
        "k5prec",
        &[
            "--playground-size",
            "6",
            "--compat-vendor",
            "android",
            "--compat-oui",
            "02:1e:01",
            "--playground-mac",
            "02:1e:01:00:00:01",
            "--playground-oui",
            "02:1e:02",
            "--compat-mac",
            "02:1e:03:00:00:01",
            "--playground-mac",
            "02:1e:03:00:00:01",
            "--compat-oui",
            "02:1e:04",
            "--playground-oui",
            "02:1e:04",
        ],
    );
    let cases: [(Mac, &str, Ipv4Addr, &str); 6] = [
        (
            Mac([2, 0x1e, 1, 0, 0, 1]),
            "android",
            PG_MASK,
            "playground MAC beats compat OUI and vendor",
        ),
        (
            Mac([2, 0x1e, 2, 0, 0, 1]),
            "android",
            PG_MASK,
            "playground OUI beats compat vendor",
        ),
        (Mac([2, 0x1e, 1, 0, 0, 2]), "", COMPAT_MASK, "compat OUI"),
        (
            Mac([2, 0x1e, 3, 0, 0, 1]),
            "",
            COMPAT_MASK,
            "compat MAC beats playground MAC (same level)",
        ),
        (
            Mac([2, 0x1e, 4, 0, 0, 1]),
            "",
            COMPAT_MASK,
            "compat OUI beats playground OUI (same level)",
        ),
        (
            Mac([2, 0x1e, 5, 0, 0, 1]),
            "",
            Ipv4Addr::BROADCAST,
            "no rule → isolated",
        ),
    ];
    for (m, v, want, why) in cases {
        let extra = if v.is_empty() { vec![] } else { vendor(v) };
        let o = dhcp
            .discover(m, &extra)
            .unwrap_or_else(|e| panic!("{m}: {e:#}\n{}", lab.daemon_logs()));
        assert_eq!(
            mask(&o),
            Some(want),
            "{m} (vendor {v:?}): {why}; offered {}",
            o.msg.yiaddr
        );
    }
}

/// The vendor class of the first DISCOVER is remembered: REQUESTs without
/// option 60 (SELECTING, RENEWING, INIT-REBOOT) keep the compat profile.
#[test]
fn vendor_remembered_without_option_60() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = crafted::setup_with("k5remember", &["--compat-vendor", "android"]);
    let lf = lab.dir().join("leases.json");
    let a = mac(2, 1);
    let o = dhcp
        .discover(a, &vendor("android-dhcp-14"))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert_eq!((o.msg.yiaddr, mask(&o)), (ip(6), Some(COMPAT_MASK)));
    let ack = dhcp.select(a, ip(6), &[]).expect("SELECTING without 60");
    assert_eq!(
        (ack.kind(), ack.msg.yiaddr, mask(&ack)),
        (Some(MessageType::Ack), ip(6), Some(COMPAT_MASK)),
        "REQUEST without option 60 must keep the compat profile"
    );
    let e = lease_entry(&lf, a).unwrap_or_else(|| panic!("{}", lease_files_text(&lf)));
    assert_eq!(e["mode"].as_str(), Some("compat"), "{e}");
    assert_eq!(
        e["vendor"].as_str(),
        Some("android-dhcp-14"),
        "vendor remembered with the lease: {e}"
    );

    let r = dhcp.renew(a, ip(6)).expect("RENEWING without 60");
    assert_eq!(
        (r.kind(), mask(&r)),
        (Some(MessageType::Ack), Some(COMPAT_MASK)),
        "renewal without option 60 was treated as a profile change"
    );
    let mut ir = request(MessageType::Request, a);
    ir.options.set_ip(options::REQUESTED_IP, ip(6));
    let r = dhcp
        .expect_reply_to(&ir, To::Broadcast)
        .expect("INIT-REBOOT without 60");
    assert_eq!((r.kind(), r.msg.yiaddr), (Some(MessageType::Ack), ip(6)));
    let again = dhcp.discover(a, &[]).expect("DISCOVER without 60");
    assert_eq!((again.msg.yiaddr, mask(&again)), (ip(6), Some(COMPAT_MASK)));
}

/// Masquerade is orthogonal: a vendor-matched client keeps its isolated
/// mode and its lease records `masq: true`; others `masq: false`.
#[test]
fn masquerade_flag_is_orthogonal() {
    isodhcp_tests::needs_root!();
    let (lab, _d, dhcp) = crafted::setup_with("k5masq", &["--masquerade-vendor", "android"]);
    let lf = lab.dir().join("leases.json");
    let a = mac(3, 1);
    let (_, ack) = dhcp
        .dora(a, &vendor("android-dhcp-14"))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert_eq!(
        mask(&ack),
        Some(Ipv4Addr::BROADCAST),
        "masquerade must not change the mode"
    );
    let b = mac(3, 2);
    dhcp.dora(b, &[]).expect("plain client");
    let ea = lease_entry(&lf, a).unwrap_or_else(|| panic!("{}", lease_files_text(&lf)));
    let eb = lease_entry(&lf, b).unwrap_or_else(|| panic!("{}", lease_files_text(&lf)));
    assert_eq!(ea["masq"].as_bool(), Some(true), "masqueraded client: {ea}");
    assert_eq!(eb["masq"].as_bool(), Some(false), "plain client: {eb}");
    assert_eq!(ea["mode"].as_str(), Some("standard"), "{ea}");
}
