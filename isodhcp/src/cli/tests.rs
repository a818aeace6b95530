use std::path::PathBuf;

use clap::Parser;

use super::values::{parse_dhcp_option, parse_static};
use super::*;
use crate::config::{Isolation, XdpMode};
use crate::control::proto::Command;

/// What clap makes of `isodhcp EXTRA...`, or the line main prints.
fn parse(extra: &[&str]) -> Result<Args, String> {
    let mut v = vec!["isodhcp"];
    v.extend_from_slice(extra);
    Args::try_parse_from(v).map_err(|e| refusal(&e).expect("not --help"))
}

fn args(extra: &[&str]) -> Args {
    parse(extra).expect("clap accepts")
}

/// The one line main prints (after "isodhcp: ") for a refused command line,
/// in main's order: clap, the configuration, the diagnostics request.
fn refused(extra: &[&str]) -> String {
    let a = match parse(extra) {
        Ok(a) => a,
        Err(line) => return line,
    };
    match config(&a).map(|_| control_request(&a)) {
        Err(e) | Ok(Err(e)) => e.to_string(),
        Ok(Ok(_)) => panic!("{extra:?} accepted"),
    }
}

#[test]
fn defaults_follow_the_manual() {
    let c = config(&args(&[])).unwrap();
    assert_eq!(c.interface, "guest");
    assert_eq!(c.lease_time, 3600);
    assert_eq!(c.lease_file, PathBuf::from("dhcp_leases_guest.json"));
    assert_eq!(c.xdp, XdpMode::Auto);
    assert_eq!(c.isolation, Isolation::System);
    assert_eq!(c.bpf_pin_dir, PathBuf::from("/sys/fs/bpf/isodhcp/guest"));
    let c = config(&args(&["-i", "br-guest"])).unwrap();
    assert_eq!(c.bpf_pin_dir, PathBuf::from("/sys/fs/bpf/isodhcp/br_guest"));
}

#[test]
fn manual_examples_parse() {
    let c = config(&args(&[
        "-i",
        "eth1",
        "-s",
        "192.168.50.1",
        "-p",
        "192.168.50.0/24",
        "--static",
        "00:11:22:33:44:55=192.168.50.10,laserprinter",
    ]))
    .unwrap();
    assert_eq!(c.statics[0].value.hostname.as_deref(), Some("laserprinter"));
    let c = config(&args(&[
        "-i",
        "eth1",
        "--compat-mac",
        "00:11:22:33:44:55",
        "--compat-oui",
        "B8:27:EB",
        "--compat-vendor",
        "MSFT 5.0",
    ]))
    .unwrap();
    assert!(c.classifier.compat.ouis.contains(&[0xb8, 0x27, 0xeb]));
    assert_eq!(c.classifier.compat.vendors, ["msft 5.0"]);
    let c = config(&args(&[
        "--static",
        "00:11:22:33:44:55=10.100.0.10,printer,compat",
        "--nft-set-isolated",
        "inet filter client_iso",
    ]))
    .unwrap();
    assert_eq!(
        c.nft_sets.isolated.map(|s| s.to_string()).as_deref(),
        Some("inet filter client_iso")
    );
    let c = config(&args(&[
        "-d",
        "198.18.0.53,198.18.0.54",
        "--dns",
        "198.18.0.55",
    ]))
    .unwrap();
    assert_eq!(c.dns.iter().map(|d| d.value.len()).sum::<usize>(), 3);
}

/// The exact lines of the command-line contract, one bad value each.
const REFUSED: &[(&[&str], &str)] = &[
    (
        &["-p", "198.18.0.1/24"],
        "invalid value '198.18.0.1/24' for --pool: host bits set (did you mean 198.18.0.0/24?)",
    ),
    (
        &["-p", "198.18.0.0/31"],
        "invalid value '198.18.0.0/31' for --pool: pool must be /30 or larger",
    ),
    (
        &["-p", "198.18.0.0/24", "-s", "198.19.0.1"],
        "invalid value '198.19.0.1' for --server-ip: outside the pool 198.18.0.0/24",
    ),
    (
        &["-i", "a/b"],
        "invalid value 'a/b' for --interface: not a valid interface name",
    ),
    (
        &["-t", "59"],
        "invalid value '59' for --lease-time: must be at least 60 seconds",
    ),
    (
        &["-t", "1h"],
        "invalid value '1h' for --lease-time: expected a non-negative integer",
    ),
    (
        &["-t", "99999999999"],
        "invalid value '99999999999' for --lease-time: number out of range",
    ),
    (
        &["--compat-oui", "B8-27-EB"],
        "invalid value 'B8-27-EB' for --compat-oui: expected an OUI like AA:BB:CC",
    ),
    (
        &["--deny-mac", "aa:bb:cc:dd:ee"],
        "invalid value 'aa:bb:cc:dd:ee' for --deny-mac: expected a MAC like aa:bb:cc:dd:ee:ff",
    ),
    (
        &["-d", "1.1.1.1,x"],
        "invalid value '1.1.1.1,x' for --dns: expected an IPv4 address",
    ),
    (
        &["-d", "1.1.1.1", "-d", "1.0.0.1", "-d", "8.8.8.8,8.8.4.4"],
        "invalid value '1.1.1.1,1.0.0.1,8.8.8.8,8.8.4.4' for --dns: at most 3 DNS servers",
    ),
    (
        &["--static", "aa:bb:cc:dd:ee:ff=1.2.3"],
        "invalid value 'aa:bb:cc:dd:ee:ff=1.2.3' for --static: bad IPv4 address",
    ),
    (
        &["--static", "aa:bb:cc:dd:ee:ff=198.18.0.6,compat,playground"],
        "invalid value 'aa:bb:cc:dd:ee:ff=198.18.0.6,compat,playground' for --static: compat and playground exclude each other",
    ),
    (
        &[
            "--static",
            "aa:bb:cc:dd:ee:01=198.18.0.6",
            "--static",
            "aa:bb:cc:dd:ee:02=198.18.0.6",
        ],
        "invalid value 'aa:bb:cc:dd:ee:02=198.18.0.6' for --static: 198.18.0.6 is already given to aa:bb:cc:dd:ee:01",
    ),
    (
        &["--static", "aa:bb:cc:dd:ee:01=198.18.0.6,playground"],
        "invalid value 'aa:bb:cc:dd:ee:01=198.18.0.6,playground' for --static: playground needs --playground-size",
    ),
    (
        &["--playground-size", "5"],
        "invalid value '5' for --playground-size: must be at least 6",
    ),
    (
        &["-p", "198.18.0.0/28", "--playground-size", "032"],
        "invalid value '032' for --playground-size: larger than the pool 198.18.0.0/28",
    ),
    (
        &["--rate-limit", "0"],
        "invalid value '0' for --rate-limit: must be 1..10000000",
    ),
    (
        &["--xdp-offer-stripe", "4097"],
        "invalid value '4097' for --xdp-offer-stripe: must be 0..4096",
    ),
    (
        &["--new-client-rate", "x"],
        "invalid value 'x' for --new-client-rate: expected a non-negative integer",
    ),
    (
        &["--metrics-listen", "nope"],
        "invalid value 'nope' for --metrics-listen: expected ADDR:PORT",
    ),
    (
        &["--nft-set-isolated", "inet filter"],
        "invalid value 'inet filter' for --nft-set-isolated: expected \"FAMILY TABLE NAME\", e.g. \"inet filter iso_clients\"",
    ),
    (
        &["--dhcp-option", "3,ip,1.2.3.4"],
        "invalid value '3,ip,1.2.3.4' for --dhcp-option: option 3 is managed by isodhcp",
    ),
    (
        &["--hook-file", ""],
        "a value is required for '--hook-file <HOOK_FILE>' but none was supplied",
    ),
    (
        &["--xdp", "turbo"],
        "invalid value 'turbo' for '--xdp <XDP>'",
    ),
    (&["--bogus"], "unexpected argument '--bogus' found"),
];

#[test]
fn bad_values_name_option_and_value() {
    for (argv, line) in REFUSED {
        assert_eq!(refused(argv), *line, "{argv:?}");
    }
}

#[test]
fn statics_are_checked_against_a_given_pool() {
    let base = ["-p", "198.18.0.0/24", "-s", "198.18.0.1", "--static"];
    let check = |st: &str| {
        let mut v = base.to_vec();
        v.push(st);
        config(&args(&v)).map(|_| ())
    };
    assert!(check("02:00:00:00:00:01=198.18.0.10,printer").is_ok());
    assert!(check("02:00:00:00:00:01=198.18.0.6,compat").is_ok());
    for (st, why) in [
        (
            "02:00:00:00:00:01=198.18.1.10",
            "198.18.1.10 is outside the pool 198.18.0.0/24",
        ),
        (
            "02:00:00:00:00:01=198.18.0.1",
            "198.18.0.1 is the server IP",
        ),
        (
            "02:00:00:00:00:01=198.18.0.255",
            "198.18.0.255 is the pool's network or broadcast address",
        ),
    ] {
        assert_eq!(
            check(st).unwrap_err().to_string(),
            format!("invalid value '{st}' for --static: {why}")
        );
    }
    for st in [
        "02:00:00:00:00:01=198.18.0.7,compat",
        "02:00:00:00:00:01=198.18.0.2,compat",
        "02:00:00:00:00:01=198.18.0.254,compat",
    ] {
        let e = check(st).unwrap_err();
        assert_eq!((e.option, e.value.as_str()), ("--static", st));
        assert!(e.reason.starts_with("compat needs base+2"), "{e}");
    }
}

#[test]
fn limits_follow_the_flags() {
    let c = config(&args(&[
        "--rate-limit",
        "10",
        "--rate-burst",
        "20",
        "--global-rate-limit",
        "500",
        "--new-client-rate",
        "50",
        "--deny-mac",
        "02:00:00:00:00:09",
    ]))
    .unwrap();
    let l = crate::system::xdp::limits(&c.rates);
    assert_eq!(
        (
            l.mac_rate,
            l.mac_burst,
            l.global_rate,
            l.global_burst,
            l.new_rate,
            l.new_burst
        ),
        (10, 20, 500, 500, 50, 50)
    );
    assert_eq!(l.abi, isodhcp_common::ABI_VERSION);
    assert_eq!(c.deny_macs, [Mac([2, 0, 0, 0, 0, 9])]);
    let d = config(&args(&[])).unwrap().rates;
    assert_eq!(
        (d.mac_rate, d.mac_burst, d.global_rate, d.new_rate),
        (2, 5, 2000, 100)
    );
}

#[test]
fn playground_statics_must_be_in_the_block() {
    let base = ["-p", "198.18.0.0/24", "--playground-size", "6"];
    let with = |st: &str| {
        let mut v = base.to_vec();
        v.extend(["--static", st]);
        config(&args(&v)).map(|_| ())
    };
    assert!(with("02:00:00:00:00:01=198.18.0.250,playground").is_ok());
    let why = "a playground static must be a host of the playground block 198.18.0.248/29 (gateway 198.18.0.249)";
    for st in [
        "02:00:00:00:00:01=198.18.0.40,playground",
        // the gateway
        "02:00:00:00:00:01=198.18.0.249,playground",
    ] {
        assert_eq!(
            with(st).unwrap_err().to_string(),
            format!("invalid value '{st}' for --static: {why}")
        );
    }
    assert_eq!(
        refused(&[
            "-p",
            "198.18.0.0/29",
            "--playground-size",
            "8",
            "--static",
            "02:00:00:00:00:01=198.18.0.3"
        ]),
        "invalid value '8' for --playground-size: no aligned block of that size is free of the statics"
    );
}

#[test]
fn dhcp_option_types() {
    let o = |s: &str| parse_dhcp_option(s);
    assert_eq!(o("42,ip,198.18.0.9").unwrap().value, [198, 18, 0, 9]);
    assert_eq!(o("42,ips,198.18.0.9,198.18.0.10").unwrap().value.len(), 8);
    assert_eq!(o("15,str,guest.lan").unwrap().value, b"guest.lan");
    assert_eq!(o("26,int16,1400").unwrap().value, [5, 120]);
    assert_eq!(o("23,int8,64").unwrap().value, [64]);
    assert_eq!(o("35,int32,60").unwrap().value, [0, 0, 0, 60]);
    assert_eq!(o("43,hex,01:02 0a").unwrap().value, [1, 2, 10]);
    for (bad, why) in [
        ("3,ip,1.2.3.4", "option 3 is managed by isodhcp"),
        ("0,str,x", "CODE must be 1..254"),
        ("255,str,x", "CODE must be 1..254"),
        ("300,str,x", "CODE must be 1..254"),
        ("42,ip,1.2.3", "bad IPv4 address"),
        ("42,ips,1.2.3.4,x", "bad IPv4 address in list"),
        ("23,int8,256", "integer must be 0..255"),
        ("43,hex,abc", "odd number of hex digits"),
        ("43,hex,zz", "bad hex digit"),
        (
            "42,float,1",
            "TYPE must be ip, ips, str, int8, int16, int32 or hex",
        ),
        ("42,str", "expected CODE,TYPE,VALUE"),
    ] {
        let e = o(bad).unwrap_err();
        assert_eq!(
            (e.option, e.value.as_str(), e.reason.as_str()),
            ("--dhcp-option", bad, why)
        );
    }
    assert!(o(&format!("43,str,{}", "x".repeat(256))).is_err());
    assert!(parse_static("02:00:00:00:00:01=198.18.0.9,a,b").is_err());
}

#[test]
fn client_flags_are_recognised() {
    let cmd = |a: &[&str]| control_request(&args(a)).unwrap().map(|r| r.cmd);
    assert_eq!(cmd(&["--check"]), Some(Command::Verify));
    assert_eq!(
        cmd(&["--dump"]),
        Some(Command::Dump {
            sections: vec!["leases".into(), "subnets".into()]
        })
    );
    assert_eq!(
        cmd(&["--dump=xdp,pool"]),
        Some(Command::Dump {
            sections: vec!["xdp".into(), "pool".into()]
        })
    );
    assert_eq!(
        cmd(&["--block", "02:00:00:00:00:0A", "--for", "30"]),
        Some(Command::Block {
            mac: "02:00:00:00:00:0a".into(),
            seconds: Some(30)
        })
    );
    assert_eq!(cmd(&[]), None);
    assert_eq!(
        refused(&["--dump=bogus"]),
        "invalid value 'bogus' for --dump: sections are leases,subnets,quarantine,ratelimit,pool,config,firewall,xdp"
    );
    assert_eq!(
        refused(&["--block", "zz"]),
        "invalid value 'zz' for --block: expected a MAC like aa:bb:cc:dd:ee:ff"
    );
    assert_eq!(
        refused(&["--for", "03"]),
        "invalid value '03' for --for: only with --block"
    );
    let r = control_request(&args(&["--status", "--redact"]))
        .unwrap()
        .unwrap();
    assert!(r.redact);
}

#[test]
fn block_duration_is_bounded() {
    let mac = "02:00:00:00:00:01";
    for huge in ["99999999999999999999", "18446744073709551615", "315360001"] {
        assert_eq!(
            refused(&["--block", mac, "--for", huge]),
            format!("invalid value '{huge}' for --for: at most 315360000 seconds (ten years)")
        );
    }
    assert_eq!(
        refused(&["--block", mac, "--for", "x"]),
        "invalid value 'x' for --for: expected a non-negative integer"
    );
    let ten_years = control_request(&args(&["--block", mac, "--for", "315360000"]))
        .unwrap()
        .map(|r| r.cmd);
    assert_eq!(
        ten_years,
        Some(Command::Block {
            mac: mac.into(),
            seconds: Some(315_360_000)
        })
    );
}
