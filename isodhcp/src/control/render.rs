//! Text rendering of control answers for people; `--json` prints them raw.
//!
//! Answers carry text a guest chose (hostname, vendor class, option 82
//! sub-options). Every string and key goes through
//! [`escape_for_terminal`] on its way here, so none of it can drive the
//! operator's terminal or start a line of its own.

use std::fmt::Write;

use serde_json::Value;

use super::proto::Command;
use crate::text::escape_for_terminal;

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => escape_for_terminal(x).into_owned(),
        Value::Null => "-".into(),
        // JSON escapes controls but not format characters (U+202E...).
        other => escape_for_terminal(&other.to_string()).into_owned(),
    }
}

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

fn leases_table(out: &mut String, leases: &Value) {
    let _ = writeln!(
        out,
        "{:<17}  {:<15}  {:<10}  {:<4}  {:<20}  hostname",
        "mac", "ip", "mode", "masq", "expires"
    );
    if let Some(list) = leases.as_array() {
        for l in list {
            let _ = writeln!(
                out,
                "{:<17}  {:<15}  {:<10}  {:<4}  {:<20}  {}",
                s(&l["mac"]),
                s(&l["ip"]),
                s(&l["mode"]),
                if l["masq"].as_bool() == Some(true) {
                    "yes"
                } else {
                    "no"
                },
                s(&l["expires"]),
                s(&l["hostname"])
            );
        }
    }
}

/// Human-readable text of an answer to `cmd`.
pub fn text(cmd: &Command, v: &Value) -> String {
    let mut out = String::new();
    match cmd {
        Command::Dump { .. } => {
            if let Some(o) = v.as_object() {
                for (section, body) in o.iter().filter(|(k, _)| *k != "version" && *k != "status") {
                    let _ = writeln!(out, "[{}]", escape_for_terminal(section));
                    if section == "leases" {
                        leases_table(&mut out, body);
                    } else if let Value::Array(a) = body {
                        for item in a {
                            let _ = writeln!(out, "  {}", s(item));
                        }
                    } else {
                        kv(&mut out, body, "  ");
                    }
                }
            }
        }
        Command::Verify => {
            let findings = v["findings"].as_array().cloned().unwrap_or_default();
            let _ = writeln!(
                out,
                "{}: {} finding(s)",
                s(&v["result"]).to_uppercase(),
                findings.len()
            );
            for f in findings {
                let _ = writeln!(out, "  [{}] {}", s(&f["severity"]), s(&f["what"]));
            }
        }
        Command::Show { .. } => {
            kv(&mut out, &v["client"], "");
            let _ = writeln!(out, "checklist:");
            for c in v["checklist"].as_array().cloned().unwrap_or_default() {
                let mark = match c["ok"].as_bool() {
                    Some(true) => "ok ",
                    Some(false) => "MISSING",
                    None => "?",
                };
                let _ = writeln!(out, "  [{mark}] {}", s(&c["what"]));
            }
        }
        _ => {
            let body: serde_json::Map<String, Value> = v
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(k, _)| *k != "version" && *k != "status")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            kv(&mut out, &Value::Object(body), "");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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

    fn lease(h: &str) -> Value {
        json!({"mac": "02:00:00:00:00:01", "ip": "198.18.0.9", "mode": "standard",
            "masq": false, "expires": 1.0, "hostname": h, "vendor": h,
            "circuit_id": h, "remote_id": h})
    }

    fn show(h: &str) -> Value {
        json!({"version": 1, "status": "ok", "client": lease(h),
            "checklist": [{"what": h, "ok": true}]})
    }

    fn dump(h: &str) -> Value {
        json!({"version": 1, "status": "ok", "leases": [lease(h)],
            "quarantine": [{"ip": "198.18.0.7", "reason": h}], "pool": {h: h}})
    }

    #[test]
    fn hostile_client_text_is_escaped_for_people() {
        let show_cmd = Command::Show { key: "x".into() };
        type Build = fn(&str) -> Value;
        let cmds: [(Command, Build); 3] = [
            (show_cmd.clone(), show),
            (Command::Dump { sections: vec![] }, dump),
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
            let back: Value = serde_json::from_str(&json).unwrap();
            assert_eq!(back["client"]["vendor"], h);
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
}
