//! Compat /30 micro-segments (design.md §Compat mode): a stock busybox udhcpc configures
//! base+2/30 with the default route via base+1, the server holds the alias
//! base+1/30 and reaches it through that connected route; a release removes
//! the alias; blocks are the lowest aligned /30 whose four addresses are free.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test mode_compat -- --test-threads=1`

use std::net::Ipv4Addr;
use std::time::Duration;

use isodhcp::wire::options::{self, ClasslessRoute, MessageType, decode_classless_routes};
use isodhcp_tests::crafted::{
    self, Dhcp, has_route, lease_entry, lease_files_text, mac, parse_mac, request, server_addrs,
};
use isodhcp_tests::{Addr, Lab, SERVER_IP, UPSTREAM_IP, preflight, wait_until};

const WAIT: Duration = Duration::from_secs(10);
const PORT: u16 = 7042;

fn ip(h: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, h)
}

fn has_alias(lab: &Lab, a: Addr) -> bool {
    server_addrs(lab).contains(&a)
}

fn wait_alias(lab: &Lab, a: Addr, present: bool) {
    wait_until(
        &format!(
            "alias {a} on srv0 {}",
            if present { "present" } else { "gone" }
        ),
        WAIT,
        || Ok((has_alias(lab, a) == present).then_some(())),
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}; srv0 has {:?}\n{}",
            server_addrs(lab),
            lab.daemon_logs()
        )
    });
}

#[test]
fn compat_mac_udhcpc_gets_30() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("c2udhcpc", 1).expect("lab");
    let c = lab.client(0);
    let mut cfg = crafted::config(&lab);
    cfg.extra
        .extend(["--compat-mac".to_string(), c.mac.clone()]);
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let _tcp = lab.server_listen(PORT).expect("listener");

    let lease = c
        .udhcpc()
        .unwrap_or_else(|e| panic!("udhcpc: {e:#}\n{}", lab.daemon_logs()));
    eprintln!("{}", c.describe());
    assert_eq!(
        lease.addr,
        Addr {
            ip: ip(6),
            prefixlen: 30
        },
        "compat client must get base+2/30 of the lowest free block (198.18.0.4/30)"
    );
    let def = c
        .default_route()
        .unwrap()
        .unwrap_or_else(|| panic!("no default route\n{}", c.describe()));
    assert_eq!(
        def.gateway,
        Some(ip(5)),
        "default route must be via the /30 gateway"
    );
    let gw = Addr {
        ip: ip(5),
        prefixlen: 30,
    };
    assert!(
        has_alias(&lab, gw),
        "server must hold {gw} on srv0 once the ACK is sent; has {:?}",
        server_addrs(&lab)
    );
    assert!(
        !has_route(&lab, ip(6)),
        "compat clients are reached via the /30 connected route, not a proto-108 /32"
    );
    for target in [SERVER_IP, UPSTREAM_IP] {
        let seen = c
            .tcp_check(target, PORT)
            .unwrap_or_else(|e| panic!("TCP to {target}: {e:#}\n{}", c.describe()));
        assert_eq!(seen, ip(6));
    }
    let lf = cfg.lease_file.clone();
    let m = parse_mac(&c.mac);
    let e = lease_entry(&lf, m).unwrap_or_else(|| panic!("no record:\n{}", lease_files_text(&lf)));
    assert_eq!(e["mode"].as_str(), Some("compat"), "record {e}");

    // RELEASE (from the client's MAC and address) removes the alias.
    let dhcp = Dhcp::open(c).expect("raw socket");
    dhcp.release(m, ip(6)).unwrap();
    wait_alias(&lab, gw, false);
    wait_until("compat release on disk", WAIT, || {
        Ok(lease_entry(&lf, m).is_none().then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lease_files_text(&lf)));
    lab.check_host_untouched().expect("host state");
}

/// Lowest aligned /30 with all four addresses free: 198.18.0.0/30 holds the
/// network address and the server, an isolated lease at .13 blocks
/// 198.18.0.12/30, so compat clients get .6, .10, .18; a released block is
/// reused first. Options: mask /30, router and 121/249 default via base+1.
#[test]
fn compat_lowest_free_block() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("c2blocks", 1).expect("lab");
    let mut cfg = crafted::config(&lab);
    cfg.extra
        .extend(["--compat-oui", "02:1e:00"].map(String::from));
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket");

    // An isolated client (other OUI) adopts .13 through INIT-REBOOT.
    let iso = isodhcp::wire::Mac([0x02, 0x1f, 0, 0, 0, 1]);
    let mut r = request(MessageType::Request, iso);
    r.options.set_ip(options::REQUESTED_IP, ip(13));
    let ack = dhcp
        .expect_reply(&r)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert_eq!(
        (ack.kind(), ack.msg.yiaddr),
        (Some(MessageType::Ack), ip(13))
    );

    let mut got = Vec::new();
    for i in 1..=3u8 {
        let m = mac(1, i);
        let (offer, ack) = dhcp
            .dora(m, &[])
            .unwrap_or_else(|e| panic!("compat {m}: {e:#}\n{}", lab.daemon_logs()));
        let y = ack.msg.yiaddr;
        let gw = Ipv4Addr::from(u32::from(y) & !3 | 1);
        for (what, r) in [("OFFER", &offer), ("ACK", &ack)] {
            assert_eq!(
                r.opt_ip(options::SUBNET_MASK),
                Some(Ipv4Addr::new(255, 255, 255, 252)),
                "{what} mask"
            );
            assert_eq!(r.opt_ip(options::ROUTER), Some(gw), "{what} router");
            let want = vec![ClasslessRoute {
                dest: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                router: gw,
            }];
            for code in [options::CLASSLESS_ROUTES, options::MS_CLASSLESS_ROUTES] {
                assert_eq!(
                    r.opt(code).and_then(decode_classless_routes),
                    Some(want.clone()),
                    "{what} option {code}"
                );
            }
        }
        assert!(
            has_alias(
                &lab,
                Addr {
                    ip: gw,
                    prefixlen: 30
                }
            ),
            "alias {gw}/30 missing at ACK"
        );
        got.push(y);
    }
    assert_eq!(
        got,
        vec![ip(6), ip(10), ip(18)],
        "compat blocks must be the lowest fully free /30s"
    );

    // Release the middle block; the next compat client gets it back.
    dhcp.release(mac(1, 2), ip(10)).unwrap();
    wait_alias(
        &lab,
        Addr {
            ip: ip(9),
            prefixlen: 30,
        },
        false,
    );
    assert!(
        has_alias(
            &lab,
            Addr {
                ip: ip(5),
                prefixlen: 30
            }
        ),
        "release removed another alias"
    );
    let (_, ack) = dhcp.dora(mac(1, 4), &[]).expect("compat after release");
    assert_eq!(
        ack.msg.yiaddr,
        ip(10),
        "the freed block 198.18.0.8/30 must be reused first"
    );
}
