use std::net::Ipv4Addr;
use std::path::PathBuf;

use super::*;
use crate::engine::classify::Classifier;

const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);

fn given<T>(value: T, text: &str) -> Given<T> {
    Given {
        value,
        text: text.into(),
    }
}

fn static_entry(text: &str, ip: Ipv4Addr, compat: bool) -> Given<StaticEntry> {
    let mac = Mac::parse(text.split('=').next().unwrap()).unwrap();
    given(
        StaticEntry {
            mac,
            ip,
            hostname: None,
            compat,
            masquerade: false,
            playground: false,
        },
        text,
    )
}

/// The configuration of `isodhcp -i guest` with nothing else given.
fn bare() -> Config {
    Config {
        interface: "guest".into(),
        server_ip: None,
        pool: None,
        dns: Vec::new(),
        lease_time: 3600,
        lease_file: PathBuf::from("dhcp_leases_guest.json"),
        statics: Vec::new(),
        custom_options: Vec::new(),
        classifier: Classifier::default(),
        playground_size: None,
        xdp: XdpMode::Auto,
        rates: RateLimits {
            mac_rate: 2,
            mac_burst: 5,
            global_rate: 2000,
            new_rate: 100,
            offer_rate: 1000,
            cookie_rate: 100,
        },
        offer_stripe: 256,
        deny_macs: Vec::new(),
        trust_macs: Vec::new(),
        bpf_pin_dir: PathBuf::from("/sys/fs/bpf/isodhcp/guest"),
        isolation: Isolation::System,
        hook_file: None,
        nft_sets: NamedSets::default(),
        socket: None,
        metrics_listen: None,
    }
}

fn facts(addrs: &[(Ipv4Addr, u8)], resolv: Option<&str>) -> Facts {
    Facts {
        addrs: addrs.to_vec(),
        resolv_conf: resolv.map(String::from),
        resolved_conf: None,
    }
}

#[test]
fn detection_completes_server_pool_and_dns() {
    let r = bare()
        .resolve(&facts(
            &[(SERVER, 24), (Ipv4Addr::new(198, 18, 0, 5), 30)],
            Some("nameserver 127.0.0.53\nnameserver 198.18.0.53\n"),
        ))
        .unwrap();
    assert_eq!(
        r,
        Resolved {
            server_ip: SERVER,
            pool: "198.18.0.0/24".parse().unwrap(),
            dns: vec![Ipv4Addr::new(198, 18, 0, 53)],
            dns_fallback: false,
        }
    );
    let r = bare().resolve(&facts(&[(SERVER, 24)], None)).unwrap();
    assert_eq!(
        (r.dns, r.dns_fallback),
        (vec![Ipv4Addr::new(1, 1, 1, 1)], true)
    );
    // Given values win over what the interface says.
    let mut c = bare();
    c.dns = vec![given(vec![Ipv4Addr::new(9, 9, 9, 9)], "9.9.9.9")];
    c.pool = Some("198.18.0.0/23".parse().unwrap());
    let r = c
        .resolve(&facts(&[(SERVER, 24)], Some("nameserver 198.18.0.53")))
        .unwrap();
    assert_eq!(r.pool.to_string(), "198.18.0.0/23");
    assert_eq!(
        (r.dns, r.dns_fallback),
        (vec![Ipv4Addr::new(9, 9, 9, 9)], false)
    );
}

#[test]
fn what_detection_cannot_settle_is_an_error() {
    assert_eq!(
        bare().resolve(&facts(&[], None)).unwrap_err().to_string(),
        "interface guest has no IPv4 address: give --server-ip and --pool"
    );
    let mut c = bare();
    c.server_ip = Some(Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(
        c.resolve(&facts(&[(SERVER, 24)], None)).unwrap_err(),
        ResolveError::Outside {
            server_ip: Ipv4Addr::new(10, 0, 0, 1),
            pool: "198.18.0.0/24".parse().unwrap()
        }
    );
}

#[test]
fn statics_are_checked_against_the_detected_pool() {
    let mut c = bare();
    c.statics = vec![static_entry("02:00:00:00:00:01=198.18.0.1", SERVER, false)];
    // Without a pool nothing can be said yet...
    assert_eq!(c.check(), Ok(()));
    // ...once detected, the static is the server's own address.
    let e = c.resolve(&facts(&[(SERVER, 24)], None)).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid value '02:00:00:00:00:01=198.18.0.1' for --static: 198.18.0.1 is the server IP"
    );
    assert!(matches!(e, ResolveError::Usage(_)));
    c.statics = vec![static_entry(
        "02:00:00:00:00:01=198.18.1.6,compat",
        Ipv4Addr::new(198, 18, 1, 6),
        true,
    )];
    assert_eq!(
        c.resolve(&facts(&[(SERVER, 24)], None))
            .unwrap_err()
            .to_string(),
        "invalid value '02:00:00:00:00:01=198.18.1.6,compat' for --static: 198.18.1.6 is outside the pool 198.18.0.0/24"
    );
}

#[test]
fn engine_refusals_quote_the_flag_as_given() {
    let mut c = bare();
    let text = "02:00:00:00:00:0A=198.18.0.9,printer";
    c.statics = vec![static_entry(text, Ipv4Addr::new(198, 18, 0, 9), false)];
    let e = c.refusal(ConfigError::Static {
        mac: Mac([2, 0, 0, 0, 0, 0x0a]),
        ip: Ipv4Addr::new(198, 18, 0, 9),
        why: "taken by a lease",
    });
    assert_eq!(
        e.to_string(),
        format!("invalid value '{text}' for --static: taken by a lease")
    );
    assert_eq!(
        c.refusal(ConfigError::NoPlaygroundBlock(64)).to_string(),
        "invalid value '64' for --playground-size: no aligned block of that size is free of statics and existing leases"
    );
}

#[test]
fn socket_defaults_per_interface() {
    let mut c = bare();
    c.interface = "br-guest".into();
    assert!(c.socket_path().ends_with("isodhcp_br_guest.sock"));
    c.socket = Some(PathBuf::from("/run/x.sock"));
    assert_eq!(c.socket_path(), PathBuf::from("/run/x.sock"));
}
