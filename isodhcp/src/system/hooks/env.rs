//! Arguments and environment of hook executions: the daemon-wide variables
//! (computed once at start) and the per-event ones. Every `ISODHCP_*`
//! variable a hook sees is built here.

use std::net::Ipv4Addr;
use std::path::Path;

use crate::config::Isolation;
use crate::engine::{Binding, Mode};
use crate::wire::cidr::Cidr;

use super::{HookAction, HookEvent};

/// Longest label of a host name (RFC 1123).
const MAX_LABEL: usize = 63;
/// Longest host name, dots included (RFC 1123).
const MAX_NAME: usize = 253;

/// Every per-event variable; those an event does not set are removed from the
/// inherited environment.
pub(super) const EVENT_VARS: &[&str] = &[
    "ISODHCP_TOTAL_LEASES",
    "ISODHCP_FREE_IPS",
    "ISODHCP_MAC",
    "ISODHCP_IP",
    "ISODHCP_HOSTNAME",
    "ISODHCP_HOSTNAME_SAFE",
    "ISODHCP_MODE",
    "ISODHCP_MASQ",
    "ISODHCP_COMPAT",
    "ISODHCP_EXPIRY",
    "ISODHCP_GATEWAY",
    "ISODHCP_NETMASK",
    "ISODHCP_SUBNET",
];

/// The daemon-wide facts every hook sees.
#[derive(Debug, Clone, Copy)]
pub struct DaemonFacts<'a> {
    pub interface: &'a str,
    pub server_ip: Ipv4Addr,
    pub pool: Cidr,
    pub dns: &'a [Ipv4Addr],
    pub lease_file: &'a Path,
    pub isolation: Isolation,
}

/// The daemon-wide variables: `ISODHCP_PID`, `ISODHCP_INTERFACE`,
/// `ISODHCP_SERVER_IP`, `ISODHCP_POOL_CIDR`, `ISODHCP_DNS` (comma-separated),
/// `ISODHCP_LEASE_FILE`, `ISODHCP_ISOLATION` (on, off or system).
pub fn daemon_env(f: &DaemonFacts<'_>) -> Vec<(String, String)> {
    let isolation = f.isolation.as_str();
    let dns: Vec<String> = f.dns.iter().map(std::string::ToString::to_string).collect();
    [
        ("ISODHCP_PID", std::process::id().to_string()),
        ("ISODHCP_INTERFACE", f.interface.to_string()),
        ("ISODHCP_SERVER_IP", f.server_ip.to_string()),
        ("ISODHCP_POOL_CIDR", f.pool.to_string()),
        ("ISODHCP_DNS", dns.join(",")),
        ("ISODHCP_LEASE_FILE", f.lease_file.display().to_string()),
        ("ISODHCP_ISOLATION", isolation.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// `$1 $2 $3 [$4]`.
pub(super) fn argv(ev: &HookEvent) -> Vec<String> {
    let b = &ev.binding;
    let mut a = vec![
        ev.action.as_str().to_string(),
        b.mac.to_string(),
        b.ip.to_string(),
    ];
    if let Some(h) = hostname(b) {
        a.push(h.to_string());
    }
    a
}

fn hostname(b: &Binding) -> Option<&str> {
    b.hostname.as_deref().filter(|h| !h.is_empty())
}

/// The per-event variables of `ev` (design.md §Hooks).
pub(super) fn event_env(ev: &HookEvent) -> Vec<(&'static str, String)> {
    let b = &ev.binding;
    let mut e = vec![
        ("ISODHCP_TOTAL_LEASES", ev.total_leases.to_string()),
        ("ISODHCP_FREE_IPS", ev.free_ips.to_string()),
        ("ISODHCP_MAC", b.mac.to_string()),
        ("ISODHCP_IP", b.ip.to_string()),
    ];
    if let Some(h) = hostname(b) {
        e.push(("ISODHCP_HOSTNAME", h.to_string()));
        if let Some(safe) = safe_hostname(h) {
            e.push(("ISODHCP_HOSTNAME_SAFE", safe));
        }
    }
    if ev.action == HookAction::Add {
        let flag = |v: bool| if v { "1" } else { "0" }.to_string();
        let expiry = match b.expires {
            Some(ms) if ms != crate::engine::NEVER => (ms / 1000).to_string(),
            _ => "inf".to_string(),
        };
        e.push(("ISODHCP_MODE", b.mode.as_str().to_string()));
        e.push(("ISODHCP_MASQ", flag(b.masq)));
        e.push(("ISODHCP_COMPAT", flag(b.mode == Mode::Compat)));
        e.push(("ISODHCP_EXPIRY", expiry));
        e.push(("ISODHCP_GATEWAY", b.gateway.to_string()));
        e.push(("ISODHCP_NETMASK", b.netmask().to_string()));
        if b.mode != Mode::Isolated {
            if let Some(s) = b.subnet {
                e.push(("ISODHCP_SUBNET", s.to_string()));
            }
        }
    }
    e
}

/// The client's host name reduced to RFC 1123 form, safe to paste into a
/// shell word, a DNS zone or a log line: labels of ASCII letters, digits and
/// hyphens (spaces and underscores become hyphens, every other character is
/// dropped: control, format such as bidi or zero-width, non-ASCII,
/// punctuation), at most 63 bytes each, no hyphen at either end, joined by
/// dots; empty labels are dropped; at most 253 bytes in all (whole labels
/// past that are dropped). `None` if nothing is left.
pub(super) fn safe_hostname(raw: &str) -> Option<String> {
    let mut out = String::new();
    for label in raw.split('.') {
        let mut l: String = label
            .chars()
            .filter_map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '-' => Some(c),
                ' ' | '_' => Some('-'),
                _ => None,
            })
            .collect();
        l.truncate(MAX_LABEL);
        let l = l.trim_matches('-');
        if l.is_empty() {
            continue;
        }
        let need = l.len() + usize::from(!out.is_empty());
        if out.len() + need > MAX_NAME {
            break;
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(l);
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn daemon_wide_variables() {
        let dns = [Ipv4Addr::new(198, 18, 0, 1), Ipv4Addr::new(1, 1, 1, 1)];
        let env = daemon_env(&DaemonFacts {
            interface: "guest0",
            server_ip: Ipv4Addr::new(198, 18, 0, 1),
            pool: "198.18.0.0/24".parse().unwrap(),
            dns: &dns,
            lease_file: Path::new("/var/lib/isodhcp/guest0.leases"),
            isolation: Isolation::System,
        });
        let pid = std::process::id().to_string();
        let want = [
            ("ISODHCP_PID", pid.as_str()),
            ("ISODHCP_INTERFACE", "guest0"),
            ("ISODHCP_SERVER_IP", "198.18.0.1"),
            ("ISODHCP_POOL_CIDR", "198.18.0.0/24"),
            ("ISODHCP_DNS", "198.18.0.1,1.1.1.1"),
            ("ISODHCP_LEASE_FILE", "/var/lib/isodhcp/guest0.leases"),
            ("ISODHCP_ISOLATION", "system"),
        ];
        let got: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn hostname_safe_forms() {
        let cases: &[(&str, Option<&str>)] = &[
            ("laser printer", Some("laser-printer")),
            ("Host-01.lan", Some("Host-01.lan")),
            ("-lead.trail-", Some("lead.trail")),
            ("a..b.", Some("a.b")),
            (".a", Some("a")),
            ("evil\u{202E}txt.exe", Some("eviltxt.exe")),
            ("\u{2066}iso\u{2069}late\u{200F}", Some("isolate")),
            ("zero\u{200B}wid\u{200D}th\u{FEFF}", Some("zerowidth")),
            ("bell\x07\x1b[31mred\r\n\t", Some("bell31mred")),
            ("caf\u{e9}_bar", Some("caf-bar")),
            ("a;rm -rf /", Some("arm--rf")),
            ("$(reboot)`id`", Some("rebootid")),
            ("\u{202E}\u{200B}\x1b\x00", None),
            ("...", None),
            ("---", None),
            ("_", None),
            ("", None),
        ];
        for (raw, want) in cases {
            assert_eq!(safe_hostname(raw).as_deref(), *want, "{raw:?}");
        }
        let long = "a".repeat(70);
        assert_eq!(safe_hostname(&long).unwrap(), "a".repeat(63));
        // Cut at 63 leaves a trailing hyphen, which goes too.
        let cut = format!("{}-{}", "a".repeat(62), "b".repeat(10));
        assert_eq!(safe_hostname(&cut).unwrap(), "a".repeat(62));
        // Four labels of 63 make 255 bytes: the last one does not fit.
        let label = "x".repeat(63);
        let four = [label.as_str(); 4].join(".");
        let got = safe_hostname(&four).unwrap();
        assert_eq!(got, [label.as_str(); 3].join("."));
        assert!(got.len() <= 253);
        // Whatever the input, the output is in label form.
        let all: String = (0u8..=255).map(char::from).collect();
        let got = safe_hostname(&all).unwrap();
        assert!(got.len() <= 253);
        for l in got.split('.') {
            assert!(!l.is_empty() && l.len() <= 63, "{got}");
            assert!(!l.starts_with('-') && !l.ends_with('-'), "{got}");
            assert!(l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-'));
        }
    }
}
