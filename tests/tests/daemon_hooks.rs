//! `--hook-file` end to end (design.md §Hooks): the daemon runs the hook with the
//! documented argv and environment when a lease is committed and when it is
//! released, and a slow hook never delays the DHCP exchange.
//!
//! Needs root, iproute2, isc-dhcp-client and the daemon binary (see
//! `daemon_foundation.rs`). Run single-threaded: `cargo xtask test -- --test-threads=1`.

use std::collections::BTreeMap;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use isodhcp_tests::{ClientKind, DaemonConfig, Lab, SERVER_IF, SERVER_IP, preflight, wait_until};

/// Deadline for a hook record to show up once its trigger happened.
const HOOK_WAIT: Duration = Duration::from_secs(10);

fn lab(tag: &str, clients: usize) -> Lab {
    preflight().expect("preflight");
    Lab::new(tag, clients).expect("building the lab")
}

/// An executable `<labdir>/hook.sh` that appends to `<labdir>/hook.out`, per
/// run: `start ARGS`, then (after `delay`, if any) `run ARGS`, every
/// `ISODHCP_*` variable sorted, `end ARGS`. Arguments are printed one per
/// `[...]` so a hostname with spaces stays one argument.
fn write_hook(lab: &Lab, delay: Option<&str>) -> (PathBuf, PathBuf) {
    use std::io::Write;
    let script = lab.dir().join("hook.sh");
    let out = lab.dir().join("hook.out");
    let sleep = delay.map(|d| format!("sleep {d}\n")).unwrap_or_default();
    let text = format!(
        r#"#!/bin/sh
out='{out}'
args=''
for a in "$@"; do args="$args[$a]"; done
echo "start $args" >> "$out"
{sleep}{{ echo "run $args"; env | grep '^ISODHCP_' | sort; echo "end $args"; }} >> "$out"
"#,
        out = out.display()
    );
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&script)
        .expect("creating the hook script");
    f.write_all(text.as_bytes()).unwrap();
    (script, out)
}

/// One completed hook run: its arguments and its `ISODHCP_*` variables.
#[derive(Debug)]
struct Run {
    args: Vec<String>,
    vars: BTreeMap<String, String>,
}

/// Completed runs (`run` .. `end` records) in the order they finished.
fn runs(out: &Path) -> Vec<Run> {
    let text = std::fs::read_to_string(out).unwrap_or_default();
    let mut runs = Vec::new();
    let mut cur: Option<Run> = None;
    for line in text.lines() {
        if let Some(a) = line.strip_prefix("run ") {
            cur = Some(Run {
                args: split_args(a),
                vars: BTreeMap::new(),
            });
        } else if line.starts_with("end ") {
            runs.extend(cur.take());
        } else if let (Some(r), Some((k, v))) = (cur.as_mut(), line.split_once('=')) {
            r.vars.insert(k.to_string(), v.to_string());
        }
    }
    runs
}

/// `[add][02:..][198.18.0.254]` -> `["add", "02:..", "198.18.0.254"]`.
fn split_args(s: &str) -> Vec<String> {
    s.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .map(|s| s.split("][").map(str::to_string).collect())
        .unwrap_or_default()
}

/// Wait for a completed run whose first three arguments are `action mac ip`.
fn wait_run(lab: &Lab, out: &Path, action: &str, mac: &str, ip: &str) -> Run {
    wait_until(&format!("hook `{action} {mac} {ip}`"), HOOK_WAIT, || {
        Ok(runs(out).into_iter().find(|r| {
            r.args.len() >= 3
                && r.args[0] == action
                && r.args[1].eq_ignore_ascii_case(mac)
                && r.args[2] == ip
        }))
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e:#}\nhook output:\n{}\n{}",
            std::fs::read_to_string(out).unwrap_or_default(),
            lab.daemon_logs()
        )
    })
}

fn var<'a>(r: &'a Run, k: &str) -> &'a str {
    r.vars
        .get(k)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("hook {:?} has no {k}; variables: {:#?}", r.args, r.vars))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// dhclient gets a lease: `add MAC IP [HOSTNAME]` with the isolated-mode
/// environment; `dhclient -r`: `del MAC IP [HOSTNAME]` without the add-only
/// variables.
#[test]
fn hook_add_and_del_for_dhclient() {
    isodhcp_tests::needs_root!();
    let lab = lab("hookad", 1);
    let (script, out) = write_hook(&lab, None);
    let mut cfg = DaemonConfig::for_lab(&lab).expect("daemon configuration");
    cfg.extra
        .extend(["--hook-file".to_string(), script.display().to_string()]);
    let daemon = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let c = lab.client(0);

    let t0 = now_secs();
    let lease = c
        .acquire(ClientKind::Dhclient)
        .unwrap_or_else(|e| panic!("dhclient got no lease: {e:#}\n{}", lab.daemon_logs()));
    let ip = lease.ip().to_string();

    let add = wait_run(&lab, &out, "add", &c.mac, &ip);
    eprintln!("add: {add:#?}");
    assert!(
        add.args.len() <= 4,
        "argv is `add MAC IP [HOSTNAME]`, got {:?}",
        add.args
    );
    assert_eq!(add.args[1], c.mac.to_ascii_lowercase(), "MAC is lower-case");
    match add.args.get(3) {
        Some(h) => assert_eq!(var(&add, "ISODHCP_HOSTNAME"), h),
        None => assert!(!add.vars.contains_key("ISODHCP_HOSTNAME")),
    }
    for (k, v) in [
        ("ISODHCP_MODE", "standard"),
        ("ISODHCP_NETMASK", "255.255.255.255"),
        ("ISODHCP_GATEWAY", "198.18.0.1"),
        ("ISODHCP_MASQ", "0"),
        ("ISODHCP_COMPAT", "0"),
        ("ISODHCP_MAC", add.args[1].as_str()),
        ("ISODHCP_IP", ip.as_str()),
        ("ISODHCP_INTERFACE", SERVER_IF),
        ("ISODHCP_SERVER_IP", &SERVER_IP.to_string()),
        ("ISODHCP_POOL_CIDR", "198.18.0.0/24"),
        ("ISODHCP_DNS", "198.18.0.53"),
        ("ISODHCP_ISOLATION", "system"),
        ("ISODHCP_TOTAL_LEASES", "1"),
    ] {
        assert_eq!(var(&add, k), v, "{k}; all: {:#?}", add.vars);
    }
    assert!(
        !add.vars.contains_key("ISODHCP_SUBNET"),
        "ISODHCP_SUBNET is for compat and playground only: {:#?}",
        add.vars
    );
    assert_eq!(
        var(&add, "ISODHCP_PID"),
        daemon.pid().unwrap().to_string(),
        "ISODHCP_PID"
    );
    assert!(
        var(&add, "ISODHCP_LEASE_FILE").ends_with("leases.json"),
        "ISODHCP_LEASE_FILE {}",
        var(&add, "ISODHCP_LEASE_FILE")
    );
    let free: u64 = var(&add, "ISODHCP_FREE_IPS")
        .parse()
        .expect("ISODHCP_FREE_IPS");
    assert!(free > 0 && free < 254, "ISODHCP_FREE_IPS {free}");
    // Lease time 600 s: expiry in Unix seconds, about now + 600.
    let expiry: u64 = var(&add, "ISODHCP_EXPIRY")
        .parse()
        .expect("ISODHCP_EXPIRY is an integer");
    assert!(
        expiry >= t0 + 590 && expiry <= now_secs() + 610,
        "ISODHCP_EXPIRY {expiry}, now {}",
        now_secs()
    );

    c.dhclient_release().expect("dhclient -r");
    let del = wait_run(&lab, &out, "del", &c.mac, &ip);
    eprintln!("del: {del:#?}");
    assert!(del.args.len() <= 4, "argv {:?}", del.args);
    assert_eq!(var(&del, "ISODHCP_MAC"), add.args[1]);
    assert_eq!(var(&del, "ISODHCP_IP"), ip);
    assert_eq!(var(&del, "ISODHCP_TOTAL_LEASES"), "0");
    for k in [
        "ISODHCP_MODE",
        "ISODHCP_NETMASK",
        "ISODHCP_GATEWAY",
        "ISODHCP_EXPIRY",
        "ISODHCP_SUBNET",
    ] {
        assert!(
            !del.vars.contains_key(k),
            "{k} is for `add` only: {:#?}",
            del.vars
        );
    }
    let all = runs(&out);
    assert_eq!(
        all.iter().map(|r| r.args[0].as_str()).collect::<Vec<_>>(),
        ["add", "del"],
        "exactly one add then one del: {all:#?}"
    );
    lab.check_host_untouched().expect("host state");
}

/// A hook that sleeps 5 s does not hold up the ACK: dhclient is bound in
/// under 3 s, while the hook is still sleeping; the hook then completes.
#[test]
fn slow_hook_does_not_delay_the_ack() {
    isodhcp_tests::needs_root!();
    let lab = lab("hookslow", 1);
    let (script, out) = write_hook(&lab, Some("5"));
    let mut cfg = DaemonConfig::for_lab(&lab).expect("daemon configuration");
    cfg.extra
        .extend(["--hook-file".to_string(), script.display().to_string()]);
    let _daemon = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let c = lab.client(0);

    let t0 = Instant::now();
    let lease = c
        .acquire(ClientKind::Dhclient)
        .unwrap_or_else(|e| panic!("dhclient got no lease: {e:#}\n{}", lab.daemon_logs()));
    let took = t0.elapsed();
    let at_bound = std::fs::read_to_string(&out).unwrap_or_default();
    eprintln!("dhclient bound {} in {took:?}", lease.addr);
    assert!(
        took < Duration::from_secs(3),
        "dhclient needed {took:?} with a 5 s hook: the hook delays DHCP\n{}",
        lab.daemon_logs()
    );
    assert!(
        !at_bound.contains("run add"),
        "the hook finished before the client was bound ({took:?}): {at_bound}"
    );
    // The hook did run, and finished on its own (also keeps its `sleep` from
    // outliving the lab).
    let add = wait_run(&lab, &out, "add", &c.mac, &lease.ip().to_string());
    assert_eq!(var(&add, "ISODHCP_MODE"), "standard");
    lab.check_host_untouched().expect("host state");
}

/// A client names itself with a bidi override, a zero-width space and an
/// escape sequence (option 12): the hook gets the name as sent (minus the
/// control characters the daemon removes on receipt) in ISODHCP_HOSTNAME
/// and its RFC 1123 form in ISODHCP_HOSTNAME_SAFE.
#[test]
fn hook_gets_a_safe_hostname() {
    isodhcp_tests::needs_root!();
    use isodhcp_tests::crafted::{self, Dhcp};
    let lab = lab("hooksafe", 1);
    let (script, out) = write_hook(&lab, None);
    let mut cfg = crafted::config(&lab);
    cfg.extra
        .extend(["--hook-file".to_string(), script.display().to_string()]);
    let _daemon = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket");
    let mac = crafted::mac(7, 1);
    let raw = "evil\u{202E}gpj\u{200B}.exe \x1b[2J";
    let (_, ack) = dhcp
        .dora(mac, &[(12, raw.as_bytes().to_vec())])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let ip = ack.msg.yiaddr.to_string();
    let add = wait_run(&lab, &out, "add", &mac.to_string(), &ip);
    assert_eq!(var(&add, "ISODHCP_HOSTNAME_SAFE"), "evilgpj.exe-2J");
    let hostname = var(&add, "ISODHCP_HOSTNAME");
    assert!(
        hostname.starts_with("evil") && !hostname.contains('\x1b'),
        "{hostname:?}"
    );
}
