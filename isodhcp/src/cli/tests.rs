use super::values::{parse_dhcp_option, parse_static};
use super::*;

fn args(extra: &[&str]) -> Args {
    let mut v = vec!["isodhcp"];
    v.extend_from_slice(extra);
    Args::try_parse_from(v).expect("clap accepts")
}

fn err(extra: &[&str]) -> CliError {
    validate(&args(extra)).unwrap_err()
}

#[test]
fn defaults_follow_the_manual() {
    let c = validate(&args(&[])).unwrap();
    assert_eq!(c.interface, "guest");
    assert_eq!(c.lease_time, 3600);
    assert_eq!(c.lease_file, PathBuf::from("dhcp_leases_guest.json"));
    assert_eq!(c.xdp, XdpMode::Auto);
    assert_eq!(c.isolation, Isolation::System);
    assert_eq!(c.bpf_pin_dir, PathBuf::from("/sys/fs/bpf/isodhcp/guest"));
}

#[test]
fn manual_examples_parse() {
    validate(&args(&[
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
    validate(&args(&[
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
    validate(&args(&[
        "--static",
        "00:11:22:33:44:55=10.100.0.10,printer,compat",
        "--nft-set-isolated",
        "inet filter client_iso",
    ]))
    .unwrap();
    let c = validate(&args(&[
        "-d",
        "198.18.0.53,198.18.0.54",
        "--dns",
        "198.18.0.55",
    ]))
    .unwrap();
    assert_eq!(c.dns.len(), 3);
}

#[test]
fn bad_values_name_option_and_value() {
    let e = err(&["-p", "198.18.0.1/24"]);
    assert_eq!(e.option, "--pool");
    assert_eq!(
        e.to_string(),
        "invalid value '198.18.0.1/24' for --pool: host bits set (did you mean 198.18.0.0/24?)"
    );
    assert_eq!(
        err(&["-p", "198.18.0.0/24", "-s", "198.19.0.1"]).option,
        "--server-ip"
    );
    assert_eq!(err(&["-t", "59"]).option, "--lease-time");
    assert_eq!(err(&["-t", "1h"]).option, "--lease-time");
    assert_eq!(err(&["--compat-oui", "B8-27-EB"]).option, "--compat-oui");
    assert_eq!(err(&["--deny-mac", "aa:bb:cc:dd:ee"]).option, "--deny-mac");
    assert_eq!(err(&["-d", "dns.example"]).option, "--dns");
    assert_eq!(
        err(&["-d", "1.1.1.1,1.0.0.1,8.8.8.8,8.8.4.4"]).option,
        "--dns"
    );
    assert_eq!(
        err(&["--static", "aa:bb:cc:dd:ee:ff=1.2.3"]).option,
        "--static"
    );
    assert_eq!(
        err(&["--static", "aa:bb:cc:dd:ee:ff=198.18.0.6,compat,playground"]).option,
        "--static"
    );
    assert_eq!(
        err(&[
            "--static",
            "aa:bb:cc:dd:ee:01=198.18.0.6",
            "--static",
            "aa:bb:cc:dd:ee:02=198.18.0.6"
        ])
        .option,
        "--static"
    );
    assert_eq!(err(&["--playground-size", "5"]).option, "--playground-size");
    assert_eq!(
        err(&["-p", "198.18.0.0/28", "--playground-size", "32"]).option,
        "--playground-size"
    );
    assert_eq!(err(&["--rate-limit", "0"]).option, "--rate-limit");
    assert_eq!(err(&["--new-client-rate", "x"]).option, "--new-client-rate");
    assert_eq!(
        err(&["--metrics-listen", "nope"]).option,
        "--metrics-listen"
    );
}

#[test]
fn statics_are_checked_against_the_pool() {
    let pool: Cidr = "198.18.0.0/24".parse().unwrap();
    let server = Ipv4Addr::new(198, 18, 0, 1);
    let check = |s: &str| {
        let e = parse_static(s).unwrap();
        validate_statics(&[e], &[s.to_string()], Some(server), pool)
    };
    assert!(check("02:00:00:00:00:01=198.18.0.10,printer").is_ok());
    assert!(check("02:00:00:00:00:01=198.18.0.6,compat").is_ok());
    for bad in [
        "02:00:00:00:00:01=198.18.1.10",
        "02:00:00:00:00:01=198.18.0.1",
        "02:00:00:00:00:01=198.18.0.255",
        "02:00:00:00:00:01=198.18.0.7,compat",
        "02:00:00:00:00:01=198.18.0.2,compat",
        "02:00:00:00:00:01=198.18.0.254,compat",
    ] {
        assert_eq!(check(bad).unwrap_err().option, "--static", "{bad}");
    }
}

#[test]
fn limits_follow_the_flags() {
    let c = validate(&args(&[
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
    let l = c.limits;
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
    assert_eq!(c.deny_macs, [Mac([2, 0, 0, 0, 0, 9])]);
    let d = validate(&args(&[])).unwrap().limits;
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
        validate(&args(&v))
    };
    assert!(with("02:00:00:00:00:01=198.18.0.250,playground").is_ok());
    assert_eq!(
        with("02:00:00:00:00:01=198.18.0.40,playground")
            .unwrap_err()
            .option,
        "--static"
    );
    assert_eq!(
        with("02:00:00:00:00:01=198.18.0.249,playground")
            .unwrap_err()
            .option,
        "--static",
        "the gateway"
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
    for bad in [
        "3,ip,1.2.3.4",
        "0,str,x",
        "255,str,x",
        "300,str,x",
        "42,ip,1.2.3",
        "23,int8,256",
        "43,hex,abc",
        "42,float,1",
        "42,str",
    ] {
        assert!(o(bad).is_err(), "{bad}");
    }
    assert!(o(&format!("43,str,{}", "x".repeat(256))).is_err());
}

#[test]
fn client_flags_are_recognised() {
    use crate::control::proto::Command;
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
        cmd(&["--block", "02:00:00:00:00:01", "--for", "30"]),
        Some(Command::Block {
            mac: "02:00:00:00:00:01".into(),
            seconds: Some(30)
        })
    );
    assert_eq!(cmd(&[]), None);
    assert_eq!(
        control_request(&args(&["--dump=bogus"]))
            .unwrap_err()
            .option,
        "--dump"
    );
    assert_eq!(
        control_request(&args(&["--block", "zz"]))
            .unwrap_err()
            .option,
        "--block"
    );
    assert_eq!(
        control_request(&args(&["--for", "3"])).unwrap_err().option,
        "--for"
    );
    let r = control_request(&args(&["--status", "--redact"]))
        .unwrap()
        .unwrap();
    assert!(r.redact);
}

#[test]
fn sanitises_interface_names() {
    assert_eq!(sanitise_iface("wlan0.10"), "wlan0_10");
    assert_eq!(sanitise_iface("br-guest"), "br_guest");
}

#[test]
fn block_duration_is_bounded() {
    let mac = "02:00:00:00:00:01";
    for huge in ["99999999999999999999", "18446744073709551615", "315360001"] {
        let v = err(&["--block", mac, "--for", huge]);
        assert_eq!(v.option, "--for", "{v}");
        assert!(v.reason.contains("at most 315360000"), "{v}");
        let c = control_request(&args(&["--block", mac, "--for", huge])).unwrap_err();
        assert_eq!(c, v);
    }
    let ten_years = control_request(&args(&["--block", mac, "--for", "315360000"]))
        .unwrap()
        .map(|r| r.cmd);
    assert_eq!(
        ten_years,
        Some(crate::control::proto::Command::Block {
            mac: mac.into(),
            seconds: Some(315_360_000)
        })
    );
}
