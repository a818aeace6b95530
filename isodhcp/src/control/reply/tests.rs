//! The wire format of every answer against golden lines captured from the
//! daemon before the answers were typed (`golden/*.json`, raw socket lines
//! of a namespace-lab daemon holding leases of every mode; the `_hooks`,
//! `_findings` and `dump_quarantine` files were written by hand in the same
//! field order, for values that lab does not produce).

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::*;
use crate::control::Response;

/// Reads `golden` into the envelope and the reply type `T`, then writes the
/// reply back: it must come out byte for byte the same.
fn same_bytes<T: Serialize + DeserializeOwned>(golden: &str) -> T {
    let line = golden.trim_end_matches('\n');
    let resp: Response = serde_json::from_str(line).unwrap();
    assert!(resp.is_ok(), "{line}");
    let reply: T = resp.reply().unwrap_or_else(|e| panic!("{e}: {line}"));
    let again = serde_json::to_string(&Response::ok(&reply)).unwrap();
    assert_eq!(again, line);
    reply
}

macro_rules! golden {
    ($name:literal) => {
        include_str!(concat!("../golden/", $name, ".json"))
    };
}

#[test]
fn status() {
    let s: StatusReply = same_bytes(golden!("status"));
    assert_eq!(s.clients.statics, 1);
    assert_eq!(s.admission.0[0], ("non_dhcp".to_string(), 0));
    assert_eq!(s.hooks, None);
    let h: StatusReply = same_bytes(golden!("status_hooks"));
    assert_eq!(h.hooks.map(|h| (h.runs, h.coalesced)), Some((7, 2)));
}

#[test]
fn config() {
    let c: ConfigReply = same_bytes(golden!("config"));
    assert_eq!((c.isolation.as_str(), c.hook_file), ("system", None));
}

#[test]
fn dump_keeps_the_sections_in_the_order_asked() {
    let all: DumpReply = same_bytes(golden!("dump_all"));
    let names: Vec<&str> = all.0.iter().map(DumpSection::name).collect();
    assert_eq!(
        names,
        [
            "leases",
            "subnets",
            "quarantine",
            "ratelimit",
            "pool",
            "config",
            "firewall",
            "xdp"
        ]
    );
    let rev: DumpReply = same_bytes(golden!("dump_rev"));
    let names: Vec<&str> = rev.0.iter().map(DumpSection::name).collect();
    assert_eq!(names, ["xdp", "leases", "pool"]);
    let empty: DumpReply = same_bytes(golden!("dump_empty"));
    assert_eq!(empty, DumpReply::default());
    same_bytes::<DumpReply>(golden!("dump_xdp_blocked"));
    same_bytes::<DumpReply>(golden!("dump_redact"));
    let q: DumpReply = same_bytes(golden!("dump_quarantine"));
    let DumpSection::Quarantine(list) = &q.0[0] else {
        panic!("{q:?}")
    };
    assert_eq!(list[1].until, None);
}

#[test]
fn a_section_asked_twice_keeps_its_first_place() {
    let mut d = DumpReply::default();
    d.push(DumpSection::Leases(Vec::new()));
    d.push(DumpSection::Subnets(Vec::new()));
    d.push(DumpSection::Leases(Vec::new()));
    assert_eq!(
        serde_json::to_string(&d).unwrap(),
        r#"{"leases":[],"subnets":[]}"#
    );
}

#[test]
fn show() {
    for g in [
        golden!("show_static"),
        golden!("show_compat"),
        golden!("show_masq"),
        golden!("show_pg"),
    ] {
        let s: ShowReply = same_bytes(g);
        assert!(s.checklist.iter().all(|c| c.ok == Some(true)), "{g}");
    }
}

#[test]
fn verify() {
    let v: VerifyReply = same_bytes(golden!("verify"));
    assert_eq!(v, VerifyReply::new(Vec::new()));
    let f: VerifyReply = same_bytes(golden!("verify_findings"));
    assert_eq!(f, VerifyReply::new(f.findings.clone()));
    assert_eq!((f.result.as_str(), f.exit_code), ("alarming", 2));
    let low = VerifyReply::new(vec![Finding {
        severity: Severity::Low,
        what: "x".into(),
    }]);
    assert_eq!((low.result.as_str(), low.exit_code), ("ok", 0));
}

#[test]
fn block_and_unblock() {
    let b = BlockReply {
        blocked: "02:00:00:00:00:0a".into(),
        seconds: None,
    };
    assert_eq!(same_bytes::<BlockReply>(golden!("block")), b);
    let b = BlockReply {
        blocked: "02:00:00:00:00:09".into(),
        seconds: Some(300),
    };
    assert_eq!(same_bytes::<BlockReply>(golden!("block_for")), b);
    let u = UnblockReply {
        unblocked: "02:00:00:00:00:09".into(),
    };
    assert_eq!(same_bytes::<UnblockReply>(golden!("unblock")), u);
}

#[test]
fn errors_carry_only_a_message() {
    let line = golden!("dump_bad").trim_end();
    let resp: Response = serde_json::from_str(line).unwrap();
    assert!(!resp.is_ok());
    let again = Response::error(resp.message.clone().unwrap());
    assert_eq!(serde_json::to_string(&again).unwrap(), line);
}
