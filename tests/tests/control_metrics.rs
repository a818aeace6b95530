//! isodhcp(8) METRICS / design.md §Metrics, `--metrics-listen`: the OpenMetrics text
//! endpoint, scraped over real HTTP from inside the server namespace (a
//! `TcpStream` on a thread that joined the namespace), parsed line by line
//! and checked against what the lab did: leases by mode, messages received
//! and sent by type, durable commit latency histogram, admission drops by
//! reason (one MAC blocked on purpose), pool gauges equal to `--status`.
//! Anything but `GET /metrics` is a 404.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test control_metrics -- --test-threads=1`

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use isodhcp::wire::options::MessageType;
use isodhcp_tests::crafted::{self, Dhcp, To, mac, request};
use isodhcp_tests::util::{self, CmdOutput};
use isodhcp_tests::{DaemonConfig, Lab, XdpMode, isodhcp_bin, preflight, wait_until};
use serde_json::Value;

const PORT: u16 = 9464;

/// One sample line: `name{k="v",...} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// HTTP/1.1 GET `path` on 127.0.0.1:PORT inside the server namespace:
/// (status line, headers, body).
fn http_get(lab: &Lab, path: &str) -> (String, String, String) {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/openmetrics-text\r\nConnection: close\r\n\r\n"
    );
    let raw = lab
        .server
        .run_in(move || {
            let sa = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, PORT));
            let mut s = TcpStream::connect_timeout(&sa, Duration::from_secs(5))?;
            s.set_read_timeout(Some(Duration::from_secs(10)))?;
            s.set_write_timeout(Some(Duration::from_secs(5)))?;
            s.write_all(req.as_bytes())?;
            let mut buf = Vec::new();
            s.take(4 << 20).read_to_end(&mut buf)?;
            Ok(String::from_utf8(buf)?)
        })
        .unwrap_or_else(|e| panic!("GET {path}: {e:#}\n{}", lab.daemon_logs()));
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("GET {path}: no header/body separator: {raw:?}"));
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    // Content-Length must match what came.
    if let Some(cl) = headers.lines().find_map(|l| {
        l.strip_prefix("Content-Length: ")
            .or_else(|| l.strip_prefix("content-length: "))
    }) {
        assert_eq!(
            cl.trim().parse::<usize>().ok(),
            Some(body.len()),
            "GET {path}: Content-Length"
        );
    }
    (status.to_string(), headers.to_string(), body.to_string())
}

/// Parse OpenMetrics text strictly enough: every non-comment line is
/// `name{labels} value`, comments are `# HELP|TYPE|UNIT|EOF`, `# EOF` is last.
fn parse(text: &str) -> Vec<Sample> {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.last().copied(),
        Some("# EOF"),
        "OpenMetrics must end with # EOF:\n{text}"
    );
    assert_eq!(
        lines.iter().filter(|l| **l == "# EOF").count(),
        1,
        "exactly one # EOF:\n{text}"
    );
    let mut out = Vec::new();
    for l in &lines[..lines.len() - 1] {
        if let Some(c) = l.strip_prefix("# ") {
            let kw = c.split_whitespace().next().unwrap_or_default();
            assert!(
                ["HELP", "TYPE", "UNIT"].contains(&kw),
                "bad comment line {l:?}"
            );
            continue;
        }
        assert!(!l.is_empty(), "empty line in OpenMetrics output:\n{text}");
        let (series, value) = l
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {l:?}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((n, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("bad labels {l:?}"));
                let mut m = BTreeMap::new();
                for kv in split_labels(inner) {
                    let (k, v) = kv
                        .split_once('=')
                        .unwrap_or_else(|| panic!("bad label {kv:?} in {l:?}"));
                    let v = v
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or_else(|| panic!("unquoted label value in {l:?}"));
                    m.insert(k.to_string(), v.to_string());
                }
                (n.to_string(), m)
            }
        };
        assert!(
            name.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name {name:?}"
        );
        out.push(Sample {
            name,
            labels,
            value,
        });
    }
    out
}

/// Split `a="x",b="y,z"` at commas outside quotes.
fn split_labels(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut esc = false;
    for ch in s.chars() {
        match ch {
            '\\' if quoted && !esc => {
                esc = true;
                cur.push(ch);
                continue;
            }
            '"' if !esc => quoted = !quoted,
            ',' if !quoted => {
                out.push(std::mem::take(&mut cur));
                continue;
            }
            _ => {}
        }
        esc = false;
        cur.push(ch);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn find<'a>(s: &'a [Sample], name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    s.iter()
        .filter(|x| {
            x.name == name
                && labels
                    .iter()
                    .all(|(k, v)| x.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

fn value(s: &[Sample], name: &str, labels: &[(&str, &str)], text: &str) -> f64 {
    let v = find(s, name, labels);
    assert_eq!(
        v.len(),
        1,
        "expected one sample {name}{labels:?}, got {v:?}\n{text}"
    );
    v[0].value
}

fn cli(sock: &Path, args: &[&str]) -> CmdOutput {
    util::run(
        Command::new(isodhcp_bin().unwrap())
            .arg("--socket")
            .arg(sock)
            .args(args),
        Duration::from_secs(15),
    )
    .expect("isodhcp client")
}

fn scrape(lab: &Lab) -> (String, Vec<Sample>) {
    let (status, headers, body) = http_get(lab, "/metrics");
    assert!(
        status.starts_with("HTTP/1.1 200"),
        "GET /metrics: {status}\n{headers}\n{body}"
    );
    assert!(
        headers
            .to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "GET /metrics content type: {headers}"
    );
    let s = parse(&body);
    (body, s)
}

/// The daemon under test: `--metrics-listen` on PORT, one compat MAC and one
/// static with a hostname, userspace datapath only.
fn metrics_config(lab: &Lab) -> DaemonConfig {
    let mut cfg = crafted::config(lab);
    cfg.xdp = XdpMode::Off;
    cfg.extra.extend([
        "--metrics-listen".to_string(),
        format!("127.0.0.1:{PORT}"),
        "--compat-mac".into(),
        mac(0xd0, 9).to_string(),
        "--static".into(),
        format!("{}=198.18.0.10,printer", mac(0xd0, 8)),
    ]);
    cfg
}

/// Before any client: lease gauges for the static only, no DISCOVER yet.
fn assert_nothing_happened_yet(lab: &Lab) {
    let (text, s) = scrape(lab);
    assert_eq!(
        value(
            &s,
            "isodhcp_leases",
            &[("mode", "standard"), ("static", "true")],
            &text
        ),
        1.0
    );
    assert!(
        find(&s, "isodhcp_leases", &[("static", "false")])
            .iter()
            .all(|x| x.value == 0.0),
        "{text}"
    );
    assert!(
        find(
            &s,
            "isodhcp_messages_received_total",
            &[("type", "discover")]
        )
        .iter()
        .all(|x| x.value == 0.0),
        "{text}"
    );
}

/// Three isolated DORAs, one compat DORA, one blocked MAC, and a REQUEST
/// for someone else's address (a NAK with a reason).
fn drive_clients(lab: &Lab, port: &Dhcp, sock: &Path) {
    for i in 1..=3 {
        port.dora(mac(0xd0, i), &[])
            .unwrap_or_else(|e| panic!("DORA {i}: {e:#}\n{}", lab.daemon_logs()));
    }
    port.dora(mac(0xd0, 9), &[]).expect("compat DORA");
    let blocked = mac(0xd0, 0x66);
    let o = cli(sock, &["--block", &blocked.to_string()]);
    assert!(o.ok(), "--block: {}", o.stderr);
    for _ in 0..2 {
        port.expect_silence(&request(MessageType::Discover, blocked), To::Broadcast)
            .expect("blocked MAC must get no answer");
    }
    // A REQUEST for someone else's address: a NAK with a reason.
    let mut r = request(MessageType::Request, mac(0xd0, 0x20));
    r.options.set_ip(
        isodhcp::wire::options::REQUESTED_IP,
        Ipv4Addr::new(198, 18, 0, 10),
    );
    let nak = port.expect_reply(&r).expect("NAK");
    assert_eq!(nak.kind(), Some(MessageType::Nak));
}

/// Leases by mode and messages by type match what `drive_clients` did;
/// returns the DISCOVER counter.
fn assert_leases_and_messages(s: &[Sample], text: &str) -> f64 {
    assert_eq!(
        value(
            s,
            "isodhcp_leases",
            &[("mode", "standard"), ("static", "false")],
            text
        ),
        3.0,
        "isodhcp_leases{{mode=standard}} must equal the leases given"
    );
    assert_eq!(
        value(
            s,
            "isodhcp_leases",
            &[("mode", "compat"), ("static", "false")],
            text
        ),
        1.0
    );
    assert_eq!(
        value(
            s,
            "isodhcp_leases",
            &[("mode", "standard"), ("static", "true")],
            text
        ),
        1.0
    );
    let discover = value(
        s,
        "isodhcp_messages_received_total",
        &[("type", "discover")],
        text,
    );
    assert!(
        discover >= 4.0,
        "4 DISCOVERs reached the engine: {discover}"
    );
    assert!(
        value(
            s,
            "isodhcp_messages_received_total",
            &[("type", "request")],
            text
        ) >= 5.0
    );
    assert!(value(s, "isodhcp_messages_sent_total", &[("type", "offer")], text) >= 4.0);
    assert!(value(s, "isodhcp_messages_sent_total", &[("type", "ack")], text) >= 4.0);
    assert!(value(s, "isodhcp_messages_sent_total", &[("type", "nak")], text) >= 1.0);
    let naks: f64 = find(s, "isodhcp_naks_total", &[])
        .iter()
        .map(|x| x.value)
        .sum();
    assert!(
        naks >= 1.0,
        "isodhcp_naks_total{{reason}} must count the NAK:\n{text}"
    );
    assert!(
        find(s, "isodhcp_naks_total", &[])
            .iter()
            .all(|x| x.labels.contains_key("reason")),
        "{text}"
    );
    discover
}

/// The durable commit latency histogram: timed, cumulative, +Inf = count.
fn assert_commit_histogram(s: &[Sample], text: &str) {
    let commits = value(s, "isodhcp_lease_commit_seconds_count", &[], text);
    assert!(commits >= 1.0, "lease commits must be timed: {commits}");
    let sum = value(s, "isodhcp_lease_commit_seconds_sum", &[], text);
    assert!(
        sum > 0.0 && sum < commits * 5.0,
        "commit time sum {sum} for {commits} commits"
    );
    let inf = value(
        s,
        "isodhcp_lease_commit_seconds_bucket",
        &[("le", "+Inf")],
        text,
    );
    assert_eq!(inf, commits, "+Inf bucket equals the count");
    let mut prev = 0.0;
    for b in find(s, "isodhcp_lease_commit_seconds_bucket", &[]) {
        assert!(
            b.value >= prev,
            "histogram buckets must be cumulative:\n{text}"
        );
        prev = b.value;
    }
}

/// Admission drops, by reason, with the layer.
fn assert_admission_drops(s: &[Sample], text: &str) {
    let drops = find(s, "isodhcp_admission_drops_total", &[]);
    let reasons: Vec<&str> = drops
        .iter()
        .filter_map(|x| x.labels.get("reason").map(String::as_str))
        .collect();
    for r in [
        "denied",
        "known_rate",
        "new_budget",
        "global",
        "chaddr_spoof",
    ] {
        assert!(
            reasons.contains(&r),
            "isodhcp_admission_drops_total{{reason={r:?}}} missing; have {reasons:?}"
        );
    }
    assert!(
        drops
            .iter()
            .all(|x| x.labels.get("layer").map(String::as_str) == Some("userspace")),
        "{text}"
    );
    let denied = value(
        s,
        "isodhcp_admission_drops_total",
        &[("reason", "denied")],
        text,
    );
    assert!(
        denied >= 2.0,
        "two DISCOVERs from a blocked MAC: denied = {denied}"
    );
    assert!(
        !find(s, "isodhcp_admission_passed_total", &[]).is_empty(),
        "{text}"
    );
}

/// Gauges agree with --status.
fn assert_gauges_match_status(s: &[Sample], text: &str, sock: &Path) {
    let o = cli(sock, &["--status", "--json"]);
    assert!(o.ok(), "{}", o.stderr);
    let st: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(value(s, "isodhcp_pool_size", &[], text), 256.0);
    assert_eq!(
        Some(value(s, "isodhcp_pool_free", &[], text) as u64),
        st["free_addresses"].as_u64(),
        "pool_free vs --status: {st}"
    );
    assert_eq!(
        Some(value(s, "isodhcp_compat_blocks_free", &[], text) as u64),
        st["free_blocks"].as_u64(),
        "{st}"
    );
    assert_eq!(value(s, "isodhcp_pool_quarantined", &[], text), 0.0);
    assert_eq!(value(s, "isodhcp_offers_outstanding", &[], text), 0.0);
    assert!(value(s, "isodhcp_uptime_seconds", &[], text) >= 0.0);
}

/// Counters only grow between scrapes.
fn assert_counters_grow(lab: &Lab, port: &Dhcp, discover: f64) {
    port.dora(mac(0xd0, 4), &[]).expect("DORA 4");
    let (text2, s2) = scrape(lab);
    let d2 = value(
        &s2,
        "isodhcp_messages_received_total",
        &[("type", "discover")],
        &text2,
    );
    assert!(d2 > discover, "discover counter {discover} → {d2}");
    assert_eq!(
        value(
            &s2,
            "isodhcp_leases",
            &[("mode", "standard"), ("static", "false")],
            &text2
        ),
        4.0
    );
}

/// Anything else is a 404, and the endpoint still answers afterwards.
fn assert_other_paths_404(lab: &Lab) {
    for path in ["/", "/metricsx", "/index.html"] {
        let (status, _, body) = http_get(lab, path);
        assert!(
            status.starts_with("HTTP/1.1 404"),
            "GET {path}: {status}\n{body}"
        );
        assert!(
            !body.contains("isodhcp_leases"),
            "GET {path} leaked metrics"
        );
    }
    // Still answering after the 404s.
    wait_until("scrape after 404s", Duration::from_secs(5), || {
        Ok(Some(scrape(lab)))
    })
    .expect("metrics endpoint still up");
}

#[test]
fn metrics_endpoint_reports_what_happened() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("metrics", 1).expect("lab");
    let cfg = metrics_config(&lab);
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let sock = lab.dir().join("isodhcp_srv0.sock");

    assert_nothing_happened_yet(&lab);

    let port = Dhcp::open(lab.client(0)).unwrap();
    drive_clients(&lab, &port, &sock);

    let (text, s) = scrape(&lab);
    eprintln!("{text}");
    let discover = assert_leases_and_messages(&s, &text);
    assert_commit_histogram(&s, &text);
    assert_admission_drops(&s, &text);
    assert_gauges_match_status(&s, &text, &sock);

    assert_counters_grow(&lab, &port, discover);
    assert_other_paths_404(&lab);
}

#[test]
fn metrics_listen_off_by_default_and_bad_address_refused() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("metricsoff", 0).expect("lab");
    let cfg = crafted::config(&lab);
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    // Nothing listens on any TCP port in the server namespace.
    let tcp = lab
        .server
        .run_in(|| Ok(std::fs::read_to_string("/proc/thread-self/net/tcp")?))
        .unwrap();
    let listening: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter(|l| l.split_whitespace().nth(3) == Some("0A"))
        .collect();
    assert!(
        listening.is_empty(),
        "no metrics endpoint unless asked: {listening:?}"
    );
    // A malformed --metrics-listen is a command-line error (exit 2, names the option).
    let o = util::run(
        Command::new(isodhcp_bin().unwrap()).args(["-i", "srv0", "--metrics-listen", "nonsense"]),
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(o.status.code(), Some(2), "{} {}", o.stdout, o.stderr);
    assert!(o.stderr.contains("--metrics-listen"), "{}", o.stderr);
}
