//! The control plane (design.md §Control) and isodhcp(8) DIAGNOSTICS / EXIT STATUS, end to
//! end: a daemon in a namespace lab holding leases of every mode (isolated
//! from a stock dhclient and from crafted DORA, compat, playground, a static
//! with a hostname, a masqueraded client), then the diagnostics client
//! (`target/release/isodhcp --socket <labdir>/isodhcp_srv0.sock ...`, run
//! from the root namespace: a Unix socket path works across network
//! namespaces) is checked flag by flag, in text and `--json`, for the facts
//! each one must report, and `--redact` for what it must mask. (`--verify`
//! exit codes: control_verify; socket access and `--block`: control_access.)
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test control_diagnostics -- --test-threads=1`

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::Path;

use isodhcp_tests::control_world::*;
use isodhcp_tests::crafted::mac;
use isodhcp_tests::{SERVER_IP, XdpMode};
use serde_json::Value;

/// `--status`, JSON and text: pid, interface, clients by mode, pool, datapath,
/// admission counters. Returns the JSON answer.
fn check_status(w: &World) -> Value {
    let sock = &w.sock;
    let pid = w.daemon.pid().expect("daemon pid");
    let st = cli_json(sock, &["--status"]);
    assert_eq!(st["pid"], pid, "--status pid must be the daemon's: {st}");
    assert_eq!(st["interface"], "srv0", "{st}");
    let clients = &st["clients"];
    for (k, n) in [
        ("standard", 3),
        ("compat", 1),
        ("playground", 1),
        ("static", 1),
    ] {
        assert_eq!(clients[k], n, "--status clients.{k}: {st}");
    }
    assert_eq!(st["pool_size"], 256, "{st}");
    let free = st["free_addresses"]
        .as_u64()
        .unwrap_or_else(|| panic!("no free_addresses: {st}"));
    assert!(st["uptime_s"].is_u64(), "{st}");
    let datapath_off = w.xdp == XdpMode::Off;
    assert_eq!(
        st["datapath"] == "off",
        datapath_off,
        "--xdp {:?}: {st}",
        w.xdp
    );
    assert!(
        st["admission"]["drop_denied"].is_u64(),
        "admission counters: {st}"
    );
    let text = cli_text(sock, &["--status"]);
    for needle in [
        format!("pid: {pid}"),
        "  standard: 3".into(),
        "  compat: 1".into(),
        "  playground: 1".into(),
        "  static: 1".into(),
        "pool_size: 256".into(),
        format!("free_addresses: {free}"),
    ] {
        assert!(
            text.contains(&needle),
            "--status text lacks {needle:?}:\n{text}"
        );
    }
    st
}

/// `--config`, JSON and text.
fn check_config(w: &World) {
    let sock = &w.sock;
    let c = cli_json(sock, &["--config"]);
    assert_eq!(c["interface"], "srv0", "{c}");
    assert_eq!(c["pool"], "198.18.0.0/24", "{c}");
    assert_eq!(c["server_ip"], "198.18.0.1", "{c}");
    assert_eq!(c["lease_time"], 600, "{c}");
    assert_eq!(c["playground"], "198.18.0.248/29", "{c}");
    assert_eq!(c["socket"], sock.display().to_string(), "{c}");
    let text = cli_text(sock, &["--config"]);
    for needle in ["interface: srv0", "pool: 198.18.0.0/24", "lease_time: 600"] {
        assert!(
            text.contains(needle),
            "--config text lacks {needle:?}:\n{text}"
        );
    }
}

/// `--dump` (default: leases, subnets), JSON and text: one lease per known
/// client with its mode, and the compat /30.
fn check_dump_default(w: &World) {
    let sock = &w.sock;
    let d = cli_json(sock, &["--dump"]);
    let keys: BTreeSet<&str> = d
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .filter(|k| *k != "version" && *k != "status")
        .collect();
    assert_eq!(
        keys,
        BTreeSet::from(["leases", "subnets"]),
        "--dump default sections: {d}"
    );
    let leases = d["leases"]
        .as_array()
        .unwrap_or_else(|| panic!("leases: {d}"));
    assert_eq!(leases.len(), w.clients.len(), "--dump leases: {d}");
    for k in &w.clients {
        let l = leases
            .iter()
            .find(|l| l["mac"] == k.mac.as_str())
            .unwrap_or_else(|| panic!("--dump has no lease for {k:?}: {d}"));
        assert_eq!(l["ip"], k.ip.to_string(), "{k:?}: {l}");
        assert_eq!(l["mode"], k.mode, "{k:?}: {l}");
        assert_eq!(l["masq"], k.masq, "{k:?}: {l}");
        assert_eq!(l["static"], k.is_static, "{k:?}: {l}");
        if let Some(h) = &k.hostname {
            assert_eq!(l["hostname"], h.as_str(), "{k:?}: {l}");
        }
        if k.is_static {
            assert!(
                l["expires"].is_null(),
                "a static never expires server-side: {l}"
            );
        } else {
            assert!(l["expires"].is_f64() || l["expires"].is_u64(), "{l}");
        }
    }
    let subnets = d["subnets"]
        .as_array()
        .unwrap_or_else(|| panic!("subnets: {d}"));
    assert_eq!(subnets.len(), 1, "one compat client, one /30: {d}");
    assert_eq!(subnets[0]["mac"], M_COMPAT.to_string(), "{d}");
    assert_eq!(subnets[0]["subnet"], "198.18.0.4/30", "{d}");
    assert_eq!(subnets[0]["gateway"], "198.18.0.5", "{d}");
    let text = cli_text(sock, &["--dump"]);
    assert!(
        text.contains("[leases]") && text.contains("[subnets]"),
        "{text}"
    );
    for k in &w.clients {
        let ip = k.ip.to_string();
        assert!(
            text.lines()
                .any(|l| l.contains(&k.mac) && l.split_whitespace().any(|x| x == ip)),
            "--dump text has no line with {} and {ip}:\n{text}",
            k.mac
        );
    }
    assert!(
        text.contains("198.18.0.4/30"),
        "--dump text lacks the compat /30:\n{text}"
    );
}

/// `--dump=pool`: free addresses as ranges, leased ones excluded; the counts
/// agree with `--status` (`st`).
fn check_dump_pool(w: &World, st: &Value) {
    let sock = &w.sock;
    let free = st["free_addresses"]
        .as_u64()
        .unwrap_or_else(|| panic!("no free_addresses: {st}"));
    let p = cli_json(sock, &["--dump=pool"]);
    let pool = &p["pool"];
    assert_eq!(pool["cidr"], "198.18.0.0/24", "{p}");
    assert_eq!(pool["playground"], "198.18.0.248/29", "{p}");
    let ranges: Vec<String> = pool["free_ranges"]
        .as_array()
        .unwrap_or_else(|| panic!("free_ranges: {p}"))
        .iter()
        .map(|r| r.as_str().expect("range string").to_string())
        .collect();
    assert!(
        ranges.iter().any(|r| r.contains('-')),
        "free pool must be printed as ranges like 198.18.0.11-198.18.0.244: {ranges:?}"
    );
    let parsed: Vec<(u32, u32)> = ranges.iter().map(|r| parse_range(r)).collect();
    for pair in parsed.windows(2) {
        assert!(
            pair[0].1 + 1 < pair[1].0,
            "ranges must be sorted and merged: {ranges:?}"
        );
    }
    let in_ranges = |a: Ipv4Addr| {
        parsed
            .iter()
            .any(|(lo, hi)| (*lo..=*hi).contains(&u32::from(a)))
    };
    for k in &w.clients {
        assert!(
            !in_ranges(k.ip),
            "leased {} ({}) listed as free: {ranges:?}",
            k.ip,
            k.mode
        );
    }
    for never in [
        ip(0),
        SERVER_IP,
        ip(4),
        ip(5),
        ip(7),
        ip(255),
        ip(248),
        ip(249),
    ] {
        assert!(
            !in_ranges(never),
            "{never} must never be free in the main pool: {ranges:?}"
        );
    }
    let main_free: u32 = parsed.iter().map(|(a, b)| b - a + 1).sum();
    // 254 hosts - server - 7 hosts of the playground /29 - static - 3
    // isolated leases - the compat /30 (4 addresses) = 238.
    assert_eq!(main_free, 238, "free main-pool addresses: {ranges:?}");
    assert_eq!(
        pool["free"], free,
        "--dump=pool free vs --status free_addresses: {p} / {st}"
    );
    assert!(u64::from(main_free) <= free, "{p}");
    assert_eq!(pool["free_blocks"], st["free_blocks"], "{p} / {st}");
    let text = cli_text(sock, &["--dump=pool"]);
    assert!(text.contains("[pool]"), "{text}");
    for r in &ranges {
        assert!(
            text.contains(r.as_str()),
            "--dump=pool text lacks range {r}:\n{text}"
        );
    }
}

/// `--dump=quarantine,ratelimit,firewall,xdp,config`, JSON and text; the xdp
/// mode agrees with `--status` (`st`).
fn check_dump_sections(w: &World, st: &Value) {
    let sock = &w.sock;
    let secs = "quarantine,ratelimit,firewall,xdp,config";
    let d = cli_json(sock, &[&format!("--dump={secs}")]);
    for s in secs.split(',') {
        assert!(!d[s].is_null(), "--dump={secs}: no {s} section: {d}");
    }
    assert_eq!(
        d["quarantine"],
        serde_json::json!([]),
        "nothing quarantined: {d}"
    );
    assert_eq!(d["ratelimit"]["rate_limit"], 1000, "{d}");
    assert_eq!(d["ratelimit"]["rate_burst"], 1000, "{d}");
    assert!(d["ratelimit"]["counters"]["drop_denied"].is_u64(), "{d}");
    check_firewall_section(w, &d["firewall"]);
    assert_eq!(d["xdp"]["mode"], st["datapath"], "{d}");
    assert_eq!(d["xdp"]["blocked"], serde_json::json!([]), "{d}");
    assert!(
        d["xdp"]["counters"]["dhcp"].as_u64().unwrap_or(0) > 0,
        "{d}"
    );
    assert_eq!(d["config"]["interface"], "srv0", "{d}");
    let text = cli_text(sock, &[&format!("--dump={secs}")]);
    for s in secs.split(',') {
        assert!(
            text.contains(&format!("[{s}]")),
            "--dump text lacks [{s}]:\n{text}"
        );
    }
    assert!(text.contains("isodhcp_srv0"), "{text}");
}

/// The `firewall` section of `--dump`: the private table, one SNAT rule for
/// the one masqueraded client, and the named sets holding the leases.
fn check_firewall_section(w: &World, fw: &Value) {
    assert_eq!(fw["table"], "isodhcp_srv0", "{fw}");
    let snat = fw["snat"]
        .as_array()
        .unwrap_or_else(|| panic!("snat: {fw}"));
    assert_eq!(
        snat.len(),
        1,
        "exactly one SNAT rule (one masqueraded client): {fw}"
    );
    assert_eq!(snat[0]["client"], w.client(M_MASQ).ip.to_string(), "{fw}");
    assert_eq!(snat[0]["gateway"], "198.18.0.1", "{fw}");
    let set = |name: &str| -> BTreeSet<String> {
        fw["sets"][w.sets.set(name)]
            .as_array()
            .unwrap_or_else(|| panic!("--dump=firewall has no set {name}: {fw}"))
            .iter()
            .map(|x| x.as_str().unwrap_or_default().to_string())
            .collect()
    };
    let iso: BTreeSet<String> = w
        .clients
        .iter()
        .filter(|k| k.mode == "standard")
        .map(|k| k.ip.to_string())
        .collect();
    assert_eq!(set("iso"), iso, "isolated set: {fw}");
    assert_eq!(
        set("compat"),
        BTreeSet::from(["198.18.0.6".to_string()]),
        "{fw}"
    );
    assert_eq!(
        set("pg"),
        BTreeSet::from([w.client(M_PG).ip.to_string()]),
        "{fw}"
    );
    assert_eq!(
        set("gw"),
        BTreeSet::from(["198.18.0.5".to_string()]),
        "{fw}"
    );
    assert_eq!(
        set("subs"),
        BTreeSet::from(["198.18.0.4/30".to_string()]),
        "{fw}"
    );
}

/// `--show MAC / IP / hostname`: one client, checklist all ok.
fn check_show(w: &World) {
    let sock = &w.sock;
    let dh = w.dhclient().clone();
    let keys: Vec<(String, &Known)> = vec![
        (dh.mac.to_uppercase(), w.dhclient()),
        (w.client(M_ISO).ip.to_string(), w.client(M_ISO)),
        ("compat-cam".into(), w.client(M_COMPAT)),
        (M_PG.to_string(), w.client(M_PG)),
        ("masq-laptop".into(), w.client(M_MASQ)),
        ("PRINTER".into(), w.client(M_STATIC)),
    ];
    for (key, k) in keys {
        let s = cli_json(sock, &["--show", &key]);
        assert_eq!(s["client"]["mac"], k.mac.as_str(), "--show {key}: {s}");
        assert_eq!(s["client"]["ip"], k.ip.to_string(), "--show {key}: {s}");
        let list = s["checklist"]
            .as_array()
            .unwrap_or_else(|| panic!("--show {key}: {s}"));
        assert!(list.len() >= 2, "--show {key}: checklist too short: {s}");
        for item in list {
            assert_eq!(
                item["ok"],
                true,
                "--show {key}: not ok: {item}\n{s}\n{}",
                w.logs()
            );
        }
        let whats: Vec<&str> = list.iter().filter_map(|i| i["what"].as_str()).collect();
        let needle = match k.mode {
            "standard" => format!("route {}/32", k.ip),
            "compat" => "alias 198.18.0.5/30".into(),
            _ => "playground gateway 198.18.0.249".into(),
        };
        assert!(
            whats.iter().any(|x| x.contains(&needle)),
            "--show {key}: no {needle:?}: {whats:?}"
        );
        if k.masq {
            assert!(
                whats.iter().any(|x| x.contains("SNAT")),
                "--show {key}: no SNAT item: {whats:?}"
            );
        }
        let text = cli_text(sock, &["--show", &key]);
        assert!(
            text.contains(&k.mac) && text.contains(&k.ip.to_string()),
            "{text}"
        );
        assert!(
            text.contains("checklist:") && text.contains("[ok ]"),
            "{text}"
        );
        assert!(
            !text.contains("MISSING") && !text.contains("[?]"),
            "--show {key}:\n{text}"
        );
    }
}

/// Bad requests: an unknown `--dump` section is a command-line error (2, one
/// line); `--show` of an unknown key exits 1 and names it.
fn check_bad_requests(sock: &Path) {
    for bad in ["--dump=bogus", "--dump=leases,bogus"] {
        let o = cli(sock, &[bad]);
        assert_eq!(code(&o), Some(2), "{bad}: {}", show_out(&o));
        assert!(o.stdout.is_empty(), "{bad}: {}", show_out(&o));
        let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{bad}: one line: {}", show_out(&o));
        assert!(
            lines[0].contains("--dump") && lines[0].contains("bogus"),
            "{bad}: {}",
            show_out(&o)
        );
    }
    for key in ["02:00:00:99:99:99", "198.18.0.99", "nobody-here"] {
        let o = cli(sock, &["--show", key]);
        assert_eq!(code(&o), Some(1), "--show {key}: {}", show_out(&o));
        assert!(
            o.stderr.contains(key),
            "--show {key}: message must name the key: {}",
            show_out(&o)
        );
        let j = cli(sock, &["--show", key, "--json"]);
        assert_eq!(code(&j), Some(1), "--show {key} --json: {}", show_out(&j));
        let v: Value = serde_json::from_str(&j.stdout).unwrap_or(Value::Null);
        assert_eq!(v["status"], "error", "{}", show_out(&j));
    }
}

#[test]
fn diagnostics_report_every_mode() {
    isodhcp_tests::needs_root!();
    let w = world("ctldiag");
    let st = check_status(&w);
    check_config(&w);
    check_dump_default(&w);
    check_dump_pool(&w, &st);
    check_dump_sections(&w, &st);
    check_show(&w);
    check_bad_requests(&w.sock);
    drop(w.port);
}

// --redact ------------------------------------------------------------------

fn last3(mac: &str) -> String {
    mac.to_ascii_lowercase()[9..].to_string()
}

/// The world with one more lease restored in its grace period (expired 30 s
/// ago) for `grace`, hostname `grace-host`.
fn world_with_grace_lease(grace: &str) -> World {
    world_with("ctlredact", |cfg| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let file = serde_json::json!({
            "leases": {grace: {"ip": "198.18.0.100", "expires": now - 30.0,
                "mode": "standard", "masq": false, "hostname": "grace-host"}},
            "subnets": {}
        });
        std::fs::write(&cfg.lease_file, file.to_string()).unwrap();
    })
}

/// Unredacted, the facts are there (so the searches for leaks mean something).
fn assert_unredacted_shows(sock: &Path, macs: &[String]) {
    let plain = cli_text(sock, &["--dump=leases,subnets,firewall,xdp"]);
    for m in macs {
        assert!(
            plain.contains(m.as_str()),
            "unredacted dump lacks {m}:\n{plain}"
        );
    }
    for h in [
        "alice-phone",
        "compat-cam",
        "play-tv",
        "masq-laptop",
        "printer",
        "grace-host",
    ] {
        assert!(plain.contains(h), "unredacted dump lacks {h}:\n{plain}");
    }
}

/// Every query whose answer could name a client, `blocked` included.
fn redact_queries(w: &World, blocked: &str) -> Vec<Vec<String>> {
    let mut queries: Vec<Vec<String>> = vec![
        vec!["--dump".into()],
        vec!["--dump=leases,subnets,quarantine,ratelimit,pool,config,firewall,xdp".into()],
        vec!["--status".into()],
        vec!["--config".into()],
        vec!["--verify".into(), "--all".into()],
        vec!["--show".into(), "alice-phone".into()],
        vec!["--show".into(), w.client(M_COMPAT).ip.to_string()],
        vec!["--block".into(), blocked.to_string()],
    ];
    for k in &w.clients {
        queries.push(vec!["--show".into(), k.mac.clone()]);
    }
    queries
}

/// Run every query with `--redact`, in text and `--json`, and collect every
/// leak of a MAC (its last three octets) or a hostname, so one failure shows
/// them all.
fn redact_leaks(
    sock: &Path,
    queries: Vec<Vec<String>>,
    macs: &[String],
    hostnames: &[String],
) -> Vec<String> {
    let mut leaks: Vec<String> = Vec::new();
    for q in queries {
        for json in [false, true] {
            let mut a: Vec<&str> = q.iter().map(String::as_str).collect();
            a.push("--redact");
            if json {
                a.push("--json");
            }
            let o = cli(sock, &a);
            assert!(
                code(&o) == Some(0) || (q[0] == "--verify" && code(&o).is_some()),
                "{a:?}: {}",
                show_out(&o)
            );
            let out = format!("{}\n{}", o.stdout, o.stderr).to_ascii_lowercase();
            for m in macs {
                if out.contains(&last3(m)) {
                    leaks.push(format!("{a:?} leaks MAC {m}:\n{}", show_out(&o)));
                }
            }
            for h in hostnames.iter().filter(|h| h.len() >= 4) {
                if out.contains(&h.to_ascii_lowercase()) {
                    leaks.push(format!("{a:?} leaks hostname {h:?}:\n{}", show_out(&o)));
                }
            }
            if json {
                let v: Value = serde_json::from_str(&o.stdout).unwrap();
                check_hostnames_redacted(&v, &a);
            }
        }
    }
    leaks
}

#[test]
fn redact_masks_macs_and_hostnames() {
    isodhcp_tests::needs_root!();
    // A lease restored in its grace period (expired 30 s ago): `--verify
    // --all` reports it, and it must be masked there too.
    let grace = mac(0xc0, 0x66).to_string();
    let w = world_with_grace_lease(&grace);
    let sock = &w.sock;
    // A blocked MAC shows up in --dump=xdp: it must be masked too.
    let blocked = mac(0xc0, 0x77).to_string();
    cli_text(sock, &["--block", &blocked]);
    let mut macs: Vec<String> = w.clients.iter().map(|k| k.mac.clone()).collect();
    macs.push(blocked.clone());
    macs.push(grace.clone());
    let mut hostnames: Vec<String> = w
        .clients
        .iter()
        .filter_map(|k| k.hostname.clone())
        .collect();
    hostnames.push("grace-host".into());
    let all = cli_json(sock, &["--verify", "--all"]);
    assert!(
        findings(&all).iter().any(|(_, f)| f.contains("grace")),
        "--verify --all must report the lease in its grace period: {all}"
    );
    assert!(hostnames.len() >= 5, "{hostnames:?}");

    assert_unredacted_shows(sock, &macs);

    let leaks = redact_leaks(sock, redact_queries(&w, &blocked), &macs, &hostnames);
    // The masked form keeps the first three octets (02:1e:00 / 02:1d:..).
    let d = cli_text(sock, &["--dump", "--redact"]);
    assert!(
        d.contains("02:1e:00:xx:xx:xx"),
        "masked MACs keep the OUI:\n{d}"
    );
    assert!(
        d.contains(&w.client(M_ISO).ip.to_string()),
        "IPs are not redacted:\n{d}"
    );
    assert!(
        leaks.is_empty(),
        "--redact leaks ({}):\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

/// Every `hostname` field in a redacted answer is null or "(redacted)".
fn check_hostnames_redacted(v: &Value, ctx: &[&str]) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                if k == "hostname" {
                    assert!(
                        x.is_null() || x == "(redacted)",
                        "{ctx:?}: hostname {x} not redacted"
                    );
                } else {
                    check_hostnames_redacted(x, ctx);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| check_hostnames_redacted(x, ctx)),
        _ => {}
    }
}
