//! design.md §Quarantine: DECLINE quarantine (600 s, persisted, survives a restart),
//! DECLINE from a non-owner ignored, neighbour-table conflict detection.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test pool_quarantine -- --test-threads=1`

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use isodhcp::wire::options::MessageType;
use isodhcp_tests::crafted::{
    self, Dhcp, has_route, lease_entry, lease_files_text, mac, quarantine,
};
use isodhcp_tests::{Lab, SERVER_IF, preflight, wait_until};

const WAIT: Duration = Duration::from_secs(5);

fn ip(h: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, h)
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// DECLINE from the owner: lease ends (route gone), the address is in the
/// on-disk quarantine for about 600 s, and it is not offered to the next
/// client — also after a restart.
#[test]
fn decline_from_owner_quarantines() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("q7decl", 1).expect("lab");
    let cfg = crafted::config(&lab);
    let mut d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket");
    let lf = cfg.lease_file.clone();
    let a = mac(1, 1);
    let (_, ack) = dhcp
        .dora(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let x = ack.msg.yiaddr;
    assert_eq!(x, ip(254));
    lab.wait_server_route(x, WAIT).unwrap();

    dhcp.decline(a, x).unwrap();
    lab.wait_no_server_route(x, WAIT).unwrap_or_else(|e| {
        panic!(
            "DECLINE did not end the lease: {e:#}\n{}",
            lab.daemon_logs()
        )
    });
    let q = wait_until("quarantine entry on disk", WAIT, || {
        Ok(quarantine(&lf).get(&x.to_string()).cloned())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lease_files_text(&lf)));
    let until = q["until"]
        .as_f64()
        .unwrap_or_else(|| panic!("quarantine entry {q}"));
    let left = until - now();
    assert!(
        (540.0..=660.0).contains(&left),
        "DECLINE quarantine must last 600 s, entry {q} ends in {left:.0} s"
    );
    assert!(
        lease_entry(&lf, a).is_none(),
        "declined lease still on disk"
    );

    let b = mac(1, 2);
    let y = dhcp.discover(b, &[]).expect("next client").msg.yiaddr;
    assert_ne!(y, x, "the declined address {x} was offered again");
    assert_eq!(y, ip(253));
    // The declining client itself does not get it back either.
    let again = dhcp.discover(a, &[]).expect("decliner DISCOVER").msg.yiaddr;
    assert_ne!(again, x, "the declined address was offered to its decliner");

    // Survives a restart.
    d.signal(libc::SIGTERM).unwrap();
    assert!(d.wait_exit(Duration::from_secs(10)).unwrap().success());
    drop(d);
    let _d2 = lab.start_isodhcp(&cfg).expect("restart");
    assert!(
        quarantine(&lf).contains_key(&x.to_string()),
        "quarantine lost at restart:\n{}",
        lease_files_text(&lf)
    );
    let c = mac(1, 3);
    let z = dhcp
        .discover(c, &[])
        .expect("client after restart")
        .msg
        .yiaddr;
    assert_ne!(z, x, "quarantine did not survive the restart");
}

/// DECLINE for someone else's address (or for an address nobody holds) is
/// ignored: the owner keeps its lease and nothing is quarantined.
#[test]
fn decline_from_non_owner_is_ignored() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("q7foreign", 1).expect("lab");
    let cfg = crafted::config(&lab);
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket");
    let lf = cfg.lease_file.clone();
    let a = mac(2, 1);
    let b = mac(2, 2);
    let (_, ack) = dhcp
        .dora(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let x = ack.msg.yiaddr;
    lab.wait_server_route(x, WAIT).unwrap();

    dhcp.decline(b, x).unwrap();
    // A free address declined by a client that never held it.
    dhcp.decline(b, ip(253)).unwrap();
    // Processed in order: the owner's renewal after it is answered.
    let r = dhcp.renew(a, x).expect("owner renewal");
    assert_eq!(
        r.kind(),
        Some(MessageType::Ack),
        "foreign DECLINE ended the owner's lease"
    );
    assert!(
        has_route(&lab, x),
        "foreign DECLINE removed the owner's route"
    );
    let q = quarantine(&lf);
    assert!(
        !q.contains_key(&x.to_string()) && !q.contains_key(&ip(253).to_string()),
        "foreign DECLINE quarantined an address: {q:?}"
    );
    let c = mac(2, 3);
    let y = dhcp.discover(c, &[]).expect("next client").msg.yiaddr;
    assert_eq!(
        y,
        ip(253),
        "a DECLINE from a non-owner kept 198.18.0.253 out of the pool"
    );
}

/// Conflict detection: a neighbour entry (STALE, foreign MAC) for the next
/// candidate makes the daemon skip and quarantine it (300 s).
#[test]
fn neighbour_table_conflict_skips_address() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("q7neigh", 1).expect("lab");
    let cfg = crafted::config(&lab);
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket");
    lab.server
        .ip(&[
            "neigh",
            "replace",
            "198.18.0.254",
            "lladdr",
            "02:1e:99:99:99:99",
            "dev",
            SERVER_IF,
            "nud",
            "stale",
        ])
        .unwrap();
    let a = mac(3, 1);
    let offer = dhcp
        .discover(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert_eq!(
        offer.msg.yiaddr,
        ip(253),
        "198.18.0.254 is in use per the neighbour table and must be skipped"
    );
    // Commit something so the quarantine is written.
    let ack = dhcp.select(a, ip(253), &[]).expect("REQUEST");
    assert_eq!(ack.kind(), Some(MessageType::Ack));
    let lf = cfg.lease_file.clone();
    let q = wait_until("conflict quarantine on disk", WAIT, || {
        Ok(quarantine(&lf).get("198.18.0.254").cloned())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lease_files_text(&lf)));
    let left = q["until"].as_f64().unwrap_or(0.0) - now();
    assert!(
        (240.0..=360.0).contains(&left),
        "conflict quarantine must last 300 s: {q}"
    );
}
