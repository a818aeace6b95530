//! Issue 9 item 6, end to end: a guest that puts terminal escapes, CR and
//! backspace, bidi overrides and zero-width characters into its hostname
//! (option 12), vendor class (option 60) and relay agent information
//! (option 82) cannot reach the operator's terminal through `--show` or
//! `--dump`; `--json` still gives the exact strings (hostname: as stored,
//! i.e. with control and format characters removed).
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test control_hostile -- --test-threads=1`

use isodhcp::wire::options;
use isodhcp_tests::control_world::{cli, cli_json, code, show_out};
use isodhcp_tests::crafted::{self, mac};

/// Characters that must never reach a terminal raw (a newline is fine: the
/// output is made of lines).
fn raw_chars(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| {
            (c.is_control() && *c != '\n')
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
        })
        .collect()
}

#[test]
fn hostile_client_text_is_escaped_in_show_and_dump() {
    isodhcp_tests::needs_root!();
    let (lab, _daemon, port) = crafted::setup("ctlhostile");
    let sock = lab.dir().join("isodhcp_srv0.sock");
    let vendor = "\x1b]0;pwned\x07MSFT\x1b[2J\r\x08\x08\u{202e}5.0";
    let circuit = "ap1\x1b[31m\u{2066}p4\u{200b}";
    let remote = "r\u{feff}emote\n[ok ] fake line";
    let hostname = "evil\u{202e}gpj\u{200b}.exe";
    let mut relay = vec![1, circuit.len() as u8];
    relay.extend_from_slice(circuit.as_bytes());
    relay.extend_from_slice(&[2, remote.len() as u8]);
    relay.extend_from_slice(remote.as_bytes());
    let m = mac(0x99, 1);
    port.dora(
        m,
        &[
            (options::HOSTNAME, hostname.as_bytes().to_vec()),
            (options::VENDOR_CLASS, vendor.as_bytes().to_vec()),
            (options::RELAY_AGENT_INFO, relay),
        ],
    )
    .unwrap_or_else(|e| panic!("DORA: {e:#}\n{}", lab.daemon_logs()));

    let key = m.to_string();
    for args in [
        vec!["--show", key.as_str()],
        vec!["--dump"],
        vec!["--dump=leases,quarantine,pool,xdp"],
    ] {
        let o = cli(&sock, &args);
        assert_eq!(code(&o), Some(0), "{args:?}: {}", show_out(&o));
        let raw = raw_chars(&o.stdout);
        assert!(raw.is_empty(), "{args:?}: raw {raw:?} in\n{:?}", o.stdout);
        assert!(
            !o.stdout.lines().any(|l| l.starts_with("[ok ] fake")),
            "{args:?}: a client value started a line:\n{}",
            o.stdout
        );
    }
    let show = cli(&sock, &["--show", &key]).stdout;
    for want in [
        r"vendor: \x1b]0;pwned\x07MSFT\x1b[2J\x0d\x08\x08\u{202e}5.0",
        r"circuit_id: ap1\x1b[31m\u{2066}p4\u{200b}",
        r"remote_id: r\u{feff}emote\x0a[ok ] fake line",
        "hostname: evilgpj.exe",
    ] {
        assert!(show.contains(want), "--show lacks {want:?}:\n{show}");
    }

    // --json: the exact strings.
    let v = cli_json(&sock, &["--show", &key]);
    let c = &v["client"];
    assert_eq!(c["vendor"], vendor, "{v}");
    assert_eq!(c["circuit_id"], circuit, "{v}");
    assert_eq!(c["remote_id"], remote, "{v}");
    assert_eq!(c["hostname"], "evilgpj.exe", "{v}");
    let d = cli_json(&sock, &["--dump=leases"]);
    let lease = d["leases"]
        .as_array()
        .and_then(|a| a.iter().find(|l| l["mac"] == key.as_str()))
        .unwrap_or_else(|| panic!("no lease for {key}: {d}"));
    assert_eq!(lease["vendor"], vendor, "{d}");
}
