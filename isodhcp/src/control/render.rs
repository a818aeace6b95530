//! Text rendering of control answers for people; `--json` prints them raw.
//!
//! Answers carry text a guest chose (hostname, vendor class, option 82
//! sub-options). Every string and key goes through
//! [`escape_for_terminal`] on its way here, so none of it can drive the
//! operator's terminal or start a line of its own.

use std::fmt::Write;

use serde::Serialize;
use serde_json::Value;

use super::proto::{Command, Response};
use super::reply::{
    BlockReply, ConfigReply, DumpReply, DumpSection, LeaseInfo, ShowReply, StatusReply,
    UnblockReply, VerifyReply,
};
use crate::text::escape_for_terminal;

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => escape_for_terminal(x).into_owned(),
        Value::Null => "-".into(),
        // JSON escapes controls but not format characters (U+202E...).
        other => escape_for_terminal(&other.to_string()).into_owned(),
    }
}

/// A value as one cell: the same text [`kv`] shows for it.
fn cell(v: &impl Serialize) -> String {
    s(&serde_json::to_value(v).unwrap_or(Value::Null))
}

/// `key: value` lines, nested objects indented under their key.
fn kv(out: &mut String, obj: &Value, indent: &str) {
    if let Some(o) = obj.as_object() {
        for (k, v) in o {
            let k = escape_for_terminal(k);
            match v {
                Value::Object(_) => {
                    let _ = writeln!(out, "{indent}{k}:");
                    kv(out, v, &format!("{indent}  "));
                }
                Value::Array(a) => {
                    let _ = writeln!(
                        out,
                        "{indent}{k}: {}",
                        a.iter().map(s).collect::<Vec<_>>().join(", ")
                    );
                }
                _ => {
                    let _ = writeln!(out, "{indent}{k}: {}", s(v));
                }
            }
        }
    }
}

/// [`kv`] of a reply's fields.
fn fields(out: &mut String, reply: &impl Serialize, indent: &str) {
    kv(
        out,
        &serde_json::to_value(reply).unwrap_or(Value::Null),
        indent,
    );
}

fn leases_table(out: &mut String, leases: &[LeaseInfo]) {
    let _ = writeln!(
        out,
        "{:<17}  {:<15}  {:<10}  {:<4}  {:<20}  hostname",
        "mac", "ip", "mode", "masq", "expires"
    );
    for l in leases {
        let _ = writeln!(
            out,
            "{:<17}  {:<15}  {:<10}  {:<4}  {:<20}  {}",
            cell(&l.mac),
            cell(&l.ip),
            cell(&l.mode),
            if l.masq { "yes" } else { "no" },
            cell(&l.expires),
            cell(&l.hostname)
        );
    }
}

/// A list section: one item a line, as compact JSON.
fn list<T: Serialize>(out: &mut String, items: &[T]) {
    for item in items {
        let _ = writeln!(out, "  {}", cell(item));
    }
}

fn dump(out: &mut String, d: &DumpReply) {
    for section in &d.0 {
        let _ = writeln!(out, "[{}]", section.name());
        match section {
            DumpSection::Leases(l) => leases_table(out, l),
            DumpSection::Subnets(v) => list(out, v),
            DumpSection::Quarantine(v) => list(out, v),
            DumpSection::Ratelimit(v) => fields(out, v, "  "),
            DumpSection::Pool(v) => fields(out, v, "  "),
            DumpSection::Config(v) => fields(out, v, "  "),
            DumpSection::Firewall(v) => fields(out, v, "  "),
            DumpSection::Xdp(v) => fields(out, v, "  "),
        }
    }
}

fn verify(out: &mut String, v: &VerifyReply) {
    let _ = writeln!(
        out,
        "{}: {} finding(s)",
        cell(&v.result).to_uppercase(),
        v.findings.len()
    );
    for f in &v.findings {
        let _ = writeln!(out, "  [{}] {}", f.severity.as_str(), cell(&f.what));
    }
}

fn show(out: &mut String, v: &ShowReply) {
    fields(out, &v.client, "");
    let _ = writeln!(out, "checklist:");
    for c in &v.checklist {
        let mark = match c.ok {
            Some(true) => "ok ",
            Some(false) => "MISSING",
            None => "?",
        };
        let _ = writeln!(out, "  [{mark}] {}", cell(&c.what));
    }
}

/// Human-readable text of a successful answer to `cmd`. An answer that is
/// not the command's reply type (a daemon of another build) is shown field
/// by field.
pub fn text(cmd: &Command, resp: &Response) -> String {
    let mut out = String::new();
    let typed = match cmd {
        Command::Dump { .. } => resp.reply().map(|d| dump(&mut out, &d)),
        Command::Verify => resp.reply().map(|v| verify(&mut out, &v)),
        Command::Show { .. } => resp.reply().map(|v| show(&mut out, &v)),
        Command::Status => resp
            .reply::<StatusReply>()
            .map(|v| fields(&mut out, &v, "")),
        Command::Config => resp
            .reply::<ConfigReply>()
            .map(|v| fields(&mut out, &v, "")),
        Command::Block { .. } => resp.reply::<BlockReply>().map(|v| fields(&mut out, &v, "")),
        Command::Unblock { .. } => resp
            .reply::<UnblockReply>()
            .map(|v| fields(&mut out, &v, "")),
    };
    if typed.is_err() {
        out.clear();
        kv(&mut out, &Value::Object(resp.body.clone()), "");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::reply::{CheckItem, FirewallInfo, Named, Quarantined};

    /// What a hostile guest can put in option 12, option 60 and option 82.
    const HOSTILE: [&str; 4] = [
        "\x1b]0;owned\x07evil\x1b[2J",
        "ok\r\x08\x08fake\u{202e}txt.exe\u{2066}",
        "zero\u{200b}width\u{feff}\u{2028}line\nbreak",
        "tag\u{e0041}\u{85}c1\u{7f}",
    ];

    fn raw_chars(text: &str) -> Vec<char> {
        let bad = |c: char| {
            (c.is_control() && c != '\n')
                || matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{2028}' | '\u{e0000}'..='\u{e007f}')
        };
        text.chars().filter(|c| bad(*c)).collect()
    }

    fn lease(h: &str) -> LeaseInfo {
        LeaseInfo {
            mac: "02:00:00:00:00:01".into(),
            ip: "198.18.0.9".into(),
            mode: "standard".into(),
            masq: false,
            is_static: false,
            expires: Some(1.0),
            grace_until: None,
            hostname: Some(h.into()),
            vendor: Some(h.into()),
            circuit_id: Some(h.into()),
            remote_id: Some(h.into()),
        }
    }

    fn show(h: &str) -> Response {
        Response::ok(&ShowReply {
            client: lease(h),
            checklist: vec![CheckItem {
                what: h.into(),
                ok: Some(true),
            }],
        })
    }

    /// Client text in a lease, a quarantine reason and (as a key) a set name.
    fn dump(h: &str) -> Response {
        Response::ok(&DumpReply(vec![
            DumpSection::Leases(vec![lease(h)]),
            DumpSection::Quarantine(vec![Quarantined {
                ip: "198.18.0.7".into(),
                until: None,
                reason: h.into(),
            }]),
            DumpSection::Firewall(FirewallInfo {
                table: "isodhcp_guest".into(),
                isolation: "on".into(),
                snat: Vec::new(),
                sets: Named(vec![(h.into(), vec![h.into()])]),
            }),
        ]))
    }

    #[test]
    fn hostile_client_text_is_escaped_for_people() {
        let show_cmd = Command::Show { key: "x".into() };
        type Build = fn(&str) -> Response;
        let cmds: [(Command, Build); 3] = [
            (show_cmd.clone(), show),
            (Command::Dump { sections: vec![] }, dump),
            // Not a status answer: shown field by field, escaped all the same.
            (Command::Status, dump),
        ];
        for h in HOSTILE {
            for (cmd, build) in &cmds {
                let out = text(cmd, &build(h));
                assert_eq!(raw_chars(&out), Vec::<char>::new(), "{cmd:?}: {out:?}");
                // A client-controlled value never starts a line of its own.
                let plain = text(cmd, &build("h")).lines().count();
                assert_eq!(out.lines().count(), plain, "{cmd:?}: {out}");
            }
            // --json prints the answer as is: the exact string comes back.
            let json = serde_json::to_string_pretty(&show(h)).unwrap();
            let back: Response = serde_json::from_str(&json).unwrap();
            assert_eq!(
                back.reply::<ShowReply>().unwrap().client.vendor.as_deref(),
                Some(h)
            );
        }
        let out = text(&show_cmd, &show(HOSTILE[0]));
        assert!(
            out.contains(r"hostname: \x1b]0;owned\x07evil\x1b[2J"),
            "{out}"
        );
        let out = text(&show_cmd, &show(HOSTILE[1]));
        let want = r"vendor: ok\x0d\x08\x08fake\u{202e}txt.exe\u{2066}";
        assert!(out.contains(want), "{out}");
    }

    #[test]
    fn dump_text_layout() {
        let out = text(&Command::Dump { sections: vec![] }, &dump("printer"));
        let want = "[leases]\n\
            mac                ip               mode        masq  expires               hostname\n\
            02:00:00:00:00:01  198.18.0.9       standard    no    1.0                   printer\n\
            [quarantine]\n  \
            {\"ip\":\"198.18.0.7\",\"until\":null,\"reason\":\"printer\"}\n\
            [firewall]\n  \
            table: isodhcp_guest\n  \
            isolation: on\n  \
            snat: \n  \
            sets:\n    \
            printer: printer\n";
        assert_eq!(out, want);
    }
}
