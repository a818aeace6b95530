//! isodhcp(8) `--verify` / EXIT STATUS, end to end (design.md §Control): a
//! daemon in a namespace lab holding leases of every mode, then kernel and
//! nft state broken by hand, one thing at a time. `--verify` (text and
//! `--json`, run from the root namespace on the daemon's Unix socket) must
//! exit 2 for an alarming finding (a lease's route, alias or set element
//! missing), 1 for a moderate one (a proto-108 route no lease explains), the
//! worst when both, 0 again once SIGUSR1 has reconciled, and 3 when no daemon
//! answers on the socket.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test control_verify -- --test-threads=1`

use isodhcp_tests::control_world::*;
use isodhcp_tests::netinfo::route_proto108;
use isodhcp_tests::nftutil::set_element;

/// SIGUSR1, then wait for `--verify` to exit 0 again.
fn reconcile(w: &World, why: &str) {
    w.daemon.signal(libc::SIGUSR1).unwrap();
    wait_verify(&w.lab, &w.sock, 0, why);
}

/// Whether `--verify --json` has a finding of `severity` whose text holds
/// every one of `needles`.
fn has_finding(v: &serde_json::Value, severity: &str, needles: &[&str]) -> bool {
    findings(v)
        .iter()
        .any(|(s, f)| s == severity && needles.iter().all(|n| f.contains(n)))
}

/// A healthy daemon: `--verify` exits 0 and says OK.
fn assert_healthy(w: &World) {
    let (c, text, v) = verify(&w.sock);
    assert_eq!(
        c,
        0,
        "healthy daemon: --verify must exit 0:\n{text}\n{v}\n{}",
        w.logs()
    );
    assert_eq!(v["result"], "ok", "{v}");
    assert!(text.starts_with("OK"), "{text}");
}

/// Step 1: a client's host route deleted by hand → alarming (2), names it, and
/// `--show` flags it.
fn missing_route_is_alarming(w: &World) {
    let sock = &w.sock;
    let iso = w.dhclient().ip;
    route_proto108(&w.lab.server, "del", &format!("{iso}/32")).expect("deleting the route");
    let (c, text, v) = verify(sock);
    assert_eq!(c, 2, "missing route must be alarming:\n{text}\n{v}");
    assert_eq!(v["result"], "alarming", "{v}");
    assert!(
        has_finding(&v, "alarming", &[&iso.to_string(), "route"]),
        "no alarming finding naming route {iso}: {v}"
    );
    assert!(text.contains(&iso.to_string()), "text lacks {iso}:\n{text}");
    let show = cli(sock, &["--show", &iso.to_string()]);
    assert!(
        show.stdout.contains("MISSING"),
        "--show must flag the missing route:\n{}",
        show_out(&show)
    );
    reconcile(w, "SIGUSR1 restores the route");
}

/// Step 2: the compat alias deleted → alarming.
fn missing_alias_is_alarming(w: &World) {
    w.lab
        .server
        .ip(&["addr", "del", "198.18.0.5/30", "dev", "srv0"])
        .expect("deleting the alias");
    let (c, text, v) = verify(&w.sock);
    assert_eq!(c, 2, "missing alias must be alarming:\n{text}\n{v}");
    assert!(
        has_finding(&v, "alarming", &["198.18.0.5"]),
        "no alarming finding naming alias 198.18.0.5: {v}"
    );
    reconcile(w, "SIGUSR1 restores the alias");
}

/// Step 3: an element deleted from a named set → alarming.
fn missing_set_element_is_alarming(w: &World) {
    let alice = w.client(M_ISO).ip.to_string();
    set_element(&w.lab.server, "delete", "iso", &alice).expect("nft delete element");
    let (c, text, v) = verify(&w.sock);
    assert_eq!(c, 2, "missing set element must be alarming:\n{text}\n{v}");
    assert!(
        has_finding(&v, "alarming", &[&alice, "inet filter iso"]),
        "no alarming finding naming {alice} in inet filter iso: {v}"
    );
    reconcile(w, "SIGUSR1 restores the element");
}

/// Step 4: a stray proto-108 /32 for a pool address nobody leases → moderate (1);
/// with a missing route as well, the worst wins.
fn stray_route_is_moderate(w: &World) {
    let (sock, srv) = (&w.sock, &w.lab.server);
    route_proto108(srv, "add", "198.18.0.77/32").expect("adding a stray route");
    let (c, text, v) = verify(sock);
    assert_eq!(
        c, 1,
        "an unexplained proto-108 route must be moderate:\n{text}\n{v}"
    );
    assert_eq!(v["result"], "moderate", "{v}");
    assert!(
        has_finding(&v, "moderate", &["198.18.0.77"]),
        "no moderate finding naming 198.18.0.77: {v}"
    );
    assert!(
        !findings(&v).iter().any(|(s, _)| s == "alarming"),
        "nothing alarming here: {v}"
    );
    // Both at once: the worst wins.
    route_proto108(srv, "del", &format!("{}/32", w.dhclient().ip)).unwrap();
    let (c, _, v) = verify(sock);
    assert_eq!(c, 2, "moderate + alarming must exit 2: {v}");
    route_proto108(srv, "del", "198.18.0.77/32").unwrap();
    reconcile(w, "clean again");
}

/// Step 5: no daemon on that socket → 3, clear message; a stale socket file
/// (nobody listening) is the same.
fn no_daemon_exits_3(w: &World) {
    let nowhere = w.lab.dir().join("no-daemon-here.sock");
    for args in [&["--verify"][..], &["--verify", "--json"], &["--status"]] {
        let o = cli(&nowhere, args);
        assert_eq!(
            code(&o),
            Some(3),
            "{args:?} without a daemon: {}",
            show_out(&o)
        );
        assert!(
            o.stderr.contains("no-daemon-here.sock") && o.stderr.contains("daemon"),
            "{args:?}: message must say no daemon answers there: {}",
            show_out(&o)
        );
    }
    // A stale socket file (nobody listening) is the same.
    let stale = w.lab.dir().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    let o = cli(&stale, &["--verify"]);
    assert_eq!(code(&o), Some(3), "stale socket: {}", show_out(&o));
}

#[test]
fn verify_exit_codes_follow_findings() {
    isodhcp_tests::needs_root!();
    let w = world("ctlverify");
    assert_healthy(&w);
    missing_route_is_alarming(&w);
    missing_alias_is_alarming(&w);
    missing_set_element_is_alarming(&w);
    stray_route_is_moderate(&w);

    // --check is --verify.
    let o = cli(&w.sock, &["--check"]);
    assert_eq!(code(&o), Some(0), "{}", show_out(&o));

    no_daemon_exits_3(&w);
}
