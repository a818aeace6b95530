//! Self-check of the lab harness against a real DHCP server (dnsmasq as a
//! stand-in): proves the namespaces, the bridge, the three client runners,
//! the TCP probe, the resolv.conf shielding and the RAII cleanup work before
//! anything is concluded about isodhcp.
//!
//! Run as root, single-threaded: `cargo test -p isodhcp-tests --release
//! --test lab_selfcheck -- --test-threads=1`.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use isodhcp_tests::{ClientKind, Dnsmasq, Lab, SERVER_IP, UPSTREAM_IP, preflight};

const PORT: u16 = 7001;

fn in_dnsmasq_range(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    o[0] == 198 && o[1] == 18 && o[2] == 0 && (100..=150).contains(&o[3])
}

/// Every client type gets a /24 lease from dnsmasq, a default route via
/// 198.18.0.1, reaches the server and an "upstream" address by TCP with its
/// leased address as source, and writes DNS into its private resolv.conf only.
#[test]
fn selfcheck_three_clients_against_dnsmasq() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("selfall", 3).expect("lab");
    let dns = Dnsmasq::start(&lab, &[]).expect("dnsmasq");
    let _tcp = lab.server_listen(PORT).expect("listener");

    for (i, kind) in ClientKind::ALL.into_iter().enumerate() {
        let c = lab.client(i);
        let lease = c
            .acquire(kind)
            .unwrap_or_else(|e| panic!("{kind}: {e:#}\ndnsmasq log:\n{}", dns.log_text()));
        eprintln!("{kind}: {}\n{}", lease.addr, c.describe());
        assert!(
            in_dnsmasq_range(lease.ip()),
            "{kind}: {} outside the dnsmasq range",
            lease.addr
        );
        assert_eq!(lease.addr.prefixlen, 24, "{kind}: prefix");
        let def = c
            .default_route()
            .unwrap()
            .unwrap_or_else(|| panic!("{kind}: no default route"));
        assert_eq!(def.gateway, Some(SERVER_IP), "{kind}: default route {def}");
        for target in [SERVER_IP, UPSTREAM_IP] {
            let seen = c
                .tcp_check(target, PORT)
                .unwrap_or_else(|e| panic!("{kind} -> {target}: {e:#}"));
            assert_eq!(
                seen,
                lease.ip(),
                "{kind}: server saw the wrong source address"
            );
        }
        let rc = c.resolv_conf();
        assert!(
            rc.contains("nameserver 198.18.0.53"),
            "{kind}: namespace resolv.conf lacks the DHCP DNS server:\n{rc}"
        );
    }
    // All three leases are distinct.
    let mut ips: Vec<_> = lab
        .clients
        .iter()
        .map(|c| c.addrs().unwrap()[0].ip)
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 3, "duplicate leases: {ips:?}");
    lab.check_host_untouched().expect("host state");
}

/// `dhclient -r` sends a RELEASE (dnsmasq logs it) and deconfigures the client;
/// `dhclient -x` + forget + `dhclient` gets the same address again (dnsmasq
/// remembers the MAC), i.e. the stop/forget/re-DISCOVER sequence used by the
/// foundation tests works.
#[test]
fn selfcheck_dhclient_release_and_rediscover() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("selfrel", 1).expect("lab");
    let dns = Dnsmasq::start(&lab, &[]).expect("dnsmasq");
    let c = lab.client(0);
    let first = c.dhclient().expect("dhclient");
    c.dhclient_stop(true).expect("dhclient -x");
    assert!(
        c.addrs().unwrap().is_empty(),
        "addresses left after stop+forget"
    );
    assert!(!c.dhclient_leasefile().exists());
    let discovers = c.log_text("dhclient").matches("DHCPDISCOVER").count();
    let again = c.dhclient().expect("dhclient again");
    assert_eq!(
        first.ip(),
        again.ip(),
        "dnsmasq gave the same MAC another address"
    );
    assert!(
        c.log_text("dhclient").matches("DHCPDISCOVER").count() > discovers,
        "second run did not start with a DISCOVER"
    );

    c.dhclient_release().expect("dhclient -r");
    let ok =
        isodhcp_tests::wait_until("DHCPRELEASE in dnsmasq log", Duration::from_secs(5), || {
            Ok(dns.log_text().contains("DHCPRELEASE").then_some(()))
        });
    ok.expect("release reached the server");
    assert!(c.addrs().unwrap().is_empty(), "dhclient -r left an address");
    lab.check_host_untouched().expect("host state");
}

/// dnsmasq made to send what isodhcp sends in isolated mode (mask
/// 255.255.255.255, router 198.18.0.1, option 121 = 198.18.0.1/32 on-link then
/// default via 198.18.0.1): every stock client ends with a /32 address and a
/// working default route. This pins down the client behaviour the foundation
/// tests rely on.
#[test]
fn selfcheck_isolated_options_via_dnsmasq() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("selfiso", 3).expect("lab");
    let dns = Dnsmasq::start(
        &lab,
        &[
            "--dhcp-option=option:netmask,255.255.255.255",
            "--dhcp-option=121,198.18.0.1/32,0.0.0.0,0.0.0.0/0,198.18.0.1",
        ],
    )
    .expect("dnsmasq");
    let _tcp = lab.server_listen(PORT).expect("listener");
    for (i, kind) in ClientKind::ALL.into_iter().enumerate() {
        let c = lab.client(i);
        let lease = c
            .acquire(kind)
            .unwrap_or_else(|e| panic!("{kind}: {e:#}\ndnsmasq log:\n{}", dns.log_text()));
        eprintln!("{kind}: {}\n{}", lease.addr, c.describe());
        assert_eq!(lease.addr.prefixlen, 32, "{kind}: expected a /32");
        let def = c
            .default_route()
            .unwrap()
            .unwrap_or_else(|| panic!("{kind}: no default route"));
        assert_eq!(def.gateway, Some(SERVER_IP), "{kind}: default route {def}");
        let seen = c
            .tcp_check(UPSTREAM_IP, PORT)
            .unwrap_or_else(|e| panic!("{kind}: {e:#}"));
        assert_eq!(seen, lease.ip());
    }
    lab.check_host_untouched().expect("host state");
}

/// The lab's switch only switches: with br_netfilter loaded on the host
/// (it is on this VM), bridged frames must not go through iptables hooks.
#[test]
fn selfcheck_switch_skips_bridge_netfilter() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("selfbrnf", 1).expect("lab");
    let knobs = lab
        .switch
        .run_ok(
            "sh",
            &[
                "-c",
                "cat /proc/sys/net/bridge/bridge-nf-call-* 2>/dev/null; true",
            ],
        )
        .expect("read the switch's sysctls");
    if knobs.trim().is_empty() {
        eprintln!("br_netfilter is not loaded here: nothing to check");
        return;
    }
    assert!(
        knobs.split_whitespace().all(|v| v == "0"),
        "bridge-nf-call-* in the switch: {knobs:?}"
    );
}

/// Namespaces and /etc/netns folders disappear when a lab is dropped, also
/// when the test panics while the lab is alive.
#[test]
fn selfcheck_cleanup_on_panic() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let names = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let names2 = names.clone();
    let r = std::panic::catch_unwind(move || {
        let lab = Lab::new("selfpanic", 2).expect("lab");
        let mut n = names2.lock().unwrap();
        n.push(lab.server.name().to_string());
        n.push(lab.switch.name().to_string());
        for c in &lab.clients {
            n.push(c.ns.name().to_string());
        }
        drop(n);
        // A long-running process inside a namespace must be killed too.
        let mut child = lab
            .client(0)
            .ns
            .nsenter_cmd("sleep")
            .arg("300")
            .spawn()
            .expect("sleep");
        let _ = &mut child;
        panic!("deliberate panic with the lab alive");
    });
    assert!(r.is_err());
    let names = names.lock().unwrap();
    assert_eq!(names.len(), 4);
    for n in names.iter() {
        assert!(
            !Path::new("/run/netns").join(n).exists(),
            "namespace {n} left behind"
        );
        assert!(
            !Path::new("/etc/netns").join(n).exists(),
            "/etc/netns/{n} left behind"
        );
    }
}

/// Preconditions are enforced (this machine runs tests as root).
#[test]
fn selfcheck_preflight_passes_as_root() {
    isodhcp_tests::needs_root!();
    preflight().expect("tests must run as root with iproute2 installed");
}
