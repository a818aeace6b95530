//! RFC 2131 §4.3.4 (RELEASE) and design.md §Protocol: only the lease owner releases,
//! only its own ciaddr; a release removes the route and the record.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test dhcp_release -- --test-threads=1`

use std::time::Duration;

use isodhcp::wire::options::MessageType;
use isodhcp_tests::crafted::{
    self, Dhcp, has_route, lease_entry, lease_files_text, mac, wait_lease_entry,
};
use isodhcp_tests::{Lab, preflight};

const WAIT: Duration = Duration::from_secs(5);

/// RELEASE from another MAC (for the owner's address) and from the owner for
/// an address that is not its lease are ignored; the owner's RELEASE of its
/// ciaddr removes the route and the on-disk record, and the address is free
/// again (the next client gets it: top of the pool).
#[test]
fn release_only_from_owner() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("r4rel", 1).expect("building the lab");
    let _d = lab
        .start_isodhcp(&crafted::config(&lab))
        .expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket");
    let lf = lab.dir().join("leases.json");
    let a = mac(1, 1);
    let b = mac(1, 2);
    let (_, ack) = dhcp
        .dora(a, &[])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let x = ack.msg.yiaddr;
    let (_, ack_b) = dhcp.dora(b, &[]).expect("second client");
    let y = ack_b.msg.yiaddr;
    wait_lease_entry(&lf, a, x, WAIT).unwrap();

    // Not the owner.
    dhcp.release(b, x).unwrap();
    // Owner, wrong ciaddr (B's address).
    dhcp.release(a, y).unwrap();
    // Frames are handled in order: once a renewal sent after them is
    // answered, the releases have been processed.
    let r = dhcp
        .renew(a, x)
        .expect("owner renewal after foreign RELEASE");
    assert_eq!(
        r.kind(),
        Some(MessageType::Ack),
        "a RELEASE from another MAC ended the owner's lease"
    );
    let r = dhcp.renew(b, y).expect("B renewal");
    assert_eq!(
        r.kind(),
        Some(MessageType::Ack),
        "a RELEASE naming B's address from A ended B's lease"
    );
    assert!(
        has_route(&lab, x) && has_route(&lab, y),
        "routes: {:?}",
        lab.server_routes()
    );
    assert!(lease_entry(&lf, a).is_some() && lease_entry(&lf, b).is_some());

    // Owner releases its own address.
    dhcp.release(a, x).unwrap();
    lab.wait_no_server_route(x, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    isodhcp_tests::wait_until("release on disk", WAIT, || {
        Ok(lease_entry(&lf, a).is_none().then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lease_files_text(&lf)));
    assert!(has_route(&lab, y), "B's route went away with A's release");
    // The address is free again: a new client gets it (highest free).
    let c = mac(1, 3);
    let z = dhcp.discover(c, &[]).expect("new client").msg.yiaddr;
    assert_eq!(z, x, "released {x} did not return to the pool");
    // And A's renewal is now refused.
    let r = dhcp.renew(a, x).expect("renewal after release");
    assert_eq!(r.kind(), Some(MessageType::Nak));
}
