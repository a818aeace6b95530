use super::*;
use crate::config::Isolation;
use crate::engine::Mode;
use crate::wire::Mac;
use crate::wire::cidr::Cidr;
use model::{ChainKind, RuleModel, Verdict};

fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

fn set(n: &str) -> Option<SetRef> {
    SetRef::parse(&format!("inet filter {n}"))
}

fn sets() -> NamedSets {
    NamedSets {
        isolated: set("iso"),
        compat: set("compat"),
        playground: set("pg"),
        gateway: set("gw"),
        network: set("net"),
        broadcast: set("bc"),
        subnet: set("subs"),
        playground_subnet: set("pgsub"),
    }
}

fn cfg(isolation: Isolation) -> NftConfig {
    NftConfig {
        table: "isodhcp_guest0".into(),
        iface: "guest0".into(),
        pool: "198.18.0.0/24".parse().unwrap(),
        isolation,
        playground: Some("198.18.0.248/29".parse().unwrap()),
        sets: sets(),
    }
}

fn binding(mode: Mode, n: u8, masq: bool) -> Binding {
    let (gateway, subnet) = match mode {
        Mode::Isolated => (ip(1), None),
        Mode::Compat => (
            ip(n - 1),
            Some(Cidr {
                addr: ip(n - 2),
                prefix: 30,
            }),
        ),
        Mode::Playground => (ip(249), "198.18.0.248/29".parse().ok()),
    };
    Binding {
        mac: Mac([2, 0, 0, 0, 0, n]),
        ip: ip(n),
        mode,
        masq,
        gateway,
        subnet,
        hostname: None,
        expires: None,
    }
}

#[test]
fn set_refs_need_family_table_name() {
    assert_eq!(
        SetRef::parse("inet filter iso_clients")
            .unwrap()
            .to_string(),
        "inet filter iso_clients"
    );
    for bad in [
        "filter iso",
        "inet filter iso extra",
        "x filter iso",
        "inet fil;ter iso",
        "",
    ] {
        assert!(SetRef::parse(bad).is_none(), "{bad}");
    }
}

#[test]
fn elements_per_mode() {
    let s = sets();
    let names = |b: &Binding| {
        elements(&s, b)
            .into_iter()
            .map(|(r, e)| format!("{} {e}", r.name))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&binding(Mode::Isolated, 200, false)),
        ["iso 198.18.0.200"]
    );
    assert_eq!(
        names(&binding(Mode::Playground, 250, false)),
        ["pg 198.18.0.250"]
    );
    assert_eq!(
        names(&binding(Mode::Compat, 6, false)),
        [
            "compat 198.18.0.6",
            "gw 198.18.0.5",
            "net 198.18.0.4",
            "bc 198.18.0.7",
            "subs 198.18.0.4/30"
        ]
    );
    // Sets that are not configured get nothing.
    let none = NamedSets::default();
    assert!(elements(&none, &binding(Mode::Compat, 6, true)).is_empty());
}

#[test]
fn desired_state_includes_snat_and_playground_subnet() {
    let c = cfg(Isolation::On);
    let d = c.desired(&[
        binding(Mode::Isolated, 200, true),
        binding(Mode::Compat, 6, false),
    ]);
    assert_eq!(
        d.snat
            .iter()
            .map(|s| (s.client, s.gateway))
            .collect::<Vec<_>>(),
        [(ip(200), ip(1))]
    );
    assert_eq!(
        d.elements[&set("pgsub").unwrap()],
        [Element::Prefix(ip(248), 29)].into()
    );
    assert_eq!(
        d.elements[&set("subs").unwrap()],
        [Element::Prefix(ip(4), 30)].into()
    );
}

fn snat(n: u8) -> Snat {
    Snat {
        client: ip(n),
        gateway: ip(1),
        mac: Mac([2, 0, 0, 0, 0, n]),
    }
}

fn between(net: &str, verdict: Verdict, comment: &'static str) -> RuleModel {
    RuleModel::Between {
        iface: "guest0".into(),
        net: net.parse().unwrap(),
        verdict,
        comment,
    }
}

#[test]
fn table_model_per_isolation() {
    let c = cfg(Isolation::On);
    let t = c.table(&[snat(200)].into());
    assert_eq!(t.name, "isodhcp_guest0");
    let kinds: Vec<ChainKind> = t.chains.iter().map(|c| c.kind).collect();
    assert_eq!(
        kinds,
        [
            ChainKind::Forward,
            ChainKind::Output,
            ChainKind::Postrouting
        ]
    );
    assert_eq!(
        t.chains[0].rules,
        [
            between("198.18.0.248/29", Verdict::Accept, "isodhcp playground"),
            between("198.18.0.0/24", Verdict::Drop, "isodhcp isolation"),
        ]
    );
    assert_eq!(
        t.chains[1].rules,
        [RuleModel::NoRedirects {
            iface: "guest0".into()
        }]
    );
    assert_eq!(t.chains[2].rules, [c.snat_rule(snat(200))]);
    let off = cfg(Isolation::Off).table(&BTreeSet::new());
    assert_eq!(
        off.chains[0].rules[1],
        between("198.18.0.0/24", Verdict::Accept, "isodhcp isolation")
    );
    // `--isolation system`: no isolation rule, no output chain.
    let system = cfg(Isolation::System).table(&BTreeSet::new());
    assert_eq!(system.chains.len(), 2);
    assert_eq!(system.chains[0].rules.len(), 1);
    assert!(system.chains[1].rules.is_empty());
}

#[test]
fn changes_from_bindings() {
    let c = cfg(Isolation::On);
    let up = [binding(Mode::Isolated, 200, true)];
    let down = [binding(Mode::Compat, 6, true)];
    let skip: BTreeSet<SetRef> = [set("gw").unwrap()].into();
    let s = |n: &str| set(n).unwrap();
    assert_eq!(
        c.changes(&up, &down, &[9], &skip),
        [
            Change::DeleteElement(s("compat"), Element::Addr(ip(6))),
            Change::DeleteElement(s("net"), Element::Addr(ip(4))),
            Change::DeleteElement(s("bc"), Element::Addr(ip(7))),
            Change::DeleteElement(s("subs"), Element::Prefix(ip(4), 30)),
            Change::DeleteRule(9),
            Change::AddElement(s("iso"), Element::Addr(ip(200))),
            Change::AddSnat(snat(200)),
        ]
    );
    assert!(Change::DeleteRule(1).is_delete());
    assert!(!Change::AddSnat(snat(200)).is_delete());
}

fn json(doc: &nftables::schema::Nftables<'_>) -> serde_json::Value {
    serde_json::from_str(&render::to_json(doc)).unwrap()
}

#[test]
fn table_document_golden() {
    let mut c = cfg(Isolation::System);
    c.playground = None;
    let doc = render::table_document(&c.table(&[snat(200)].into()));
    let table = serde_json::json!({"family": "ip", "name": "isodhcp_guest0"});
    let chain = |name: &str, ty: &str, prio: i32| {
        serde_json::json!({"add": {"chain": {"family": "ip", "table": "isodhcp_guest0",
            "name": name, "type": ty, "hook": name, "prio": prio, "policy": "accept"}}})
    };
    let want = serde_json::json!({"nftables": [
        {"add": {"table": table}},
        {"delete": {"table": table}},
        {"add": {"table": table}},
        chain("forward", "filter", 0),
        chain("postrouting", "nat", 100),
        {"add": {"rule": {"family": "ip", "table": "isodhcp_guest0", "chain": "postrouting",
            "expr": [
                {"match": {"left": {"meta": {"key": "oifname"}}, "right": "guest0", "op": "=="}},
                {"match": {"left": {"payload": {"protocol": "ip", "field": "daddr"}},
                    "right": "198.18.0.200", "op": "=="}},
                {"match": {"left": {"payload": {"protocol": "ip", "field": "saddr"}},
                    "right": {"prefix": {"addr": "198.18.0.0", "len": 24}}, "op": "!="}},
                {"snat": {"addr": "198.18.0.1"}}
            ],
            "comment": "isodhcp 02:00:00:00:00:c8"}}}
    ]});
    assert_eq!(json(&doc), want);
    // Deterministic, byte for byte.
    assert_eq!(
        render::to_json(&doc),
        render::to_json(&render::table_document(&c.table(&[snat(200)].into())))
    );
}

#[test]
fn forward_rules_render_as_nft_reads_them() {
    let doc = render::table_document(&cfg(Isolation::On).table(&BTreeSet::new()));
    let v = json(&doc);
    let rules: Vec<&serde_json::Value> = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.pointer("/add/rule"))
        .collect();
    assert_eq!(rules.len(), 3);
    let pair = |net: &str, len: u32, verdict: &str, comment: &str| {
        let p = serde_json::json!({"prefix": {"addr": net, "len": len}});
        serde_json::json!({"family": "ip", "table": "isodhcp_guest0", "chain": "forward",
            "expr": [
                {"match": {"left": {"meta": {"key": "iifname"}}, "right": "guest0", "op": "=="}},
                {"match": {"left": {"meta": {"key": "oifname"}}, "right": "guest0", "op": "=="}},
                {"match": {"left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": p, "op": "=="}},
                {"match": {"left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": p, "op": "=="}},
                {verdict: null}
            ],
            "comment": comment})
    };
    assert_eq!(
        *rules[0],
        pair("198.18.0.248", 29, "accept", "isodhcp playground")
    );
    assert_eq!(
        *rules[1],
        pair("198.18.0.0", 24, "drop", "isodhcp isolation")
    );
    assert_eq!(
        *rules[2],
        serde_json::json!({"family": "ip", "table": "isodhcp_guest0", "chain": "output",
            "expr": [
                {"match": {"left": {"meta": {"key": "oifname"}}, "right": "guest0", "op": "=="}},
                {"match": {"left": {"payload": {"protocol": "icmp", "field": "type"}},
                    "right": "redirect", "op": "=="}},
                {"drop": null}
            ],
            "comment": "isodhcp isolation"})
    );
}

#[test]
fn changes_document_golden() {
    let c = cfg(Isolation::On);
    let changes = [
        Change::DeleteElement(set("subs").unwrap(), Element::Prefix(ip(4), 30)),
        Change::DeleteRule(7),
        Change::AddElement(set("iso").unwrap(), Element::Addr(ip(200))),
    ];
    let want = serde_json::json!({"nftables": [
        {"delete": {"element": {"family": "inet", "table": "filter", "name": "subs",
            "elem": [{"prefix": {"addr": "198.18.0.4", "len": 30}}]}}},
        {"delete": {"rule": {"family": "ip", "table": "isodhcp_guest0", "chain": "postrouting",
            "expr": [], "handle": 7}}},
        {"add": {"element": {"family": "inet", "table": "filter", "name": "iso",
            "elem": ["198.18.0.200"]}}}
    ]});
    assert_eq!(json(&render::changes_document(&c, &changes)), want);
    // An SNAT addition is the same rule the table holds.
    let add = json(&render::changes_document(&c, &[Change::AddSnat(snat(200))]));
    let table = json(&render::table_document(&c.table(&[snat(200)].into())));
    let last = table["nftables"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(add["nftables"][0], last);
}

#[test]
fn parses_nft_json() {
    let set = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"set": {"family": "inet", "name": "subs", "table": "filter", "type": "ipv4_addr", "flags": ["interval"], "elem": [{"prefix": {"addr": "198.18.0.4", "len": 30}}, "198.18.0.9", {"elem": {"val": "198.18.0.10", "comment": "x"}}]}}]}"#;
    assert_eq!(
        parse_elements(set).unwrap(),
        [
            Element::Prefix(ip(4), 30),
            Element::Addr(ip(9)),
            Element::Addr(ip(10))
        ]
        .into()
    );
    let chain = r#"{"nftables": [{"chain": {"family": "ip", "table": "isodhcp_x", "name": "postrouting", "handle": 1}}, {"rule": {"family": "ip", "table": "isodhcp_x", "chain": "postrouting", "handle": 2, "comment": "isodhcp 02:00:00:00:00:01", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "x0"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "daddr"}}, "right": "198.18.0.254"}}, {"match": {"op": "!=", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "198.18.0.0", "len": 24}}}}, {"snat": {"addr": "198.18.0.1"}}]}}, {"rule": {"handle": 3, "comment": "someone else", "expr": []}}]}"#;
    assert_eq!(
        parse_snat(chain).unwrap(),
        [(
            Snat {
                client: ip(254),
                gateway: ip(1),
                mac: Mac([2, 0, 0, 0, 0, 1])
            },
            2
        )]
    );
    assert!(parse_elements("not json").is_err());
}
