//! Text rendering of control answers for people; `--json` prints them raw.

use std::fmt::Write;

use serde_json::Value;

use super::proto::Command;

fn s(v: &Value) -> String {
    match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

fn kv(out: &mut String, obj: &Value, indent: &str) {
    if let Some(o) = obj.as_object() {
        for (k, v) in o {
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
                    let _ = writeln!(out, "[{section}]");
                    if section == "leases" {
                        leases_table(&mut out, body);
                    } else if let Value::Array(a) = body {
                        for item in a {
                            let _ = writeln!(
                                out,
                                "  {}",
                                if item.is_object() {
                                    item.to_string()
                                } else {
                                    s(item)
                                }
                            );
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
