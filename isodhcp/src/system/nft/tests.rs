use super::*;

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

#[test]
fn table_script_golden() {
    let snat: BTreeSet<Snat> = [Snat {
        client: ip(200),
        gateway: ip(1),
        mac: Mac([2, 0, 0, 0, 0, 200]),
    }]
    .into();
    assert_eq!(
        cfg(Isolation::On).table_script(&snat),
        "table ip isodhcp_guest0 {}\n\
         delete table ip isodhcp_guest0\n\
         table ip isodhcp_guest0 {\n  chain forward {\n    type filter hook forward priority filter; policy accept;\n\
         \x20   iifname \"guest0\" oifname \"guest0\" ip saddr 198.18.0.248/29 ip daddr 198.18.0.248/29 accept comment \"isodhcp playground\"\n\
         \x20   iifname \"guest0\" oifname \"guest0\" ip saddr 198.18.0.0/24 ip daddr 198.18.0.0/24 drop comment \"isodhcp isolation\"\n  }\n\
         \x20 chain output {\n    type filter hook output priority filter; policy accept;\n\
         \x20   oifname \"guest0\" icmp type redirect drop comment \"isodhcp isolation\"\n  }\n\
         \x20 chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n\
         \x20   oifname \"guest0\" ip daddr 198.18.0.200 ip saddr != 198.18.0.0/24 snat to 198.18.0.1 comment \"isodhcp 02:00:00:00:00:c8\"\n  }\n}\n"
    );
    let off = cfg(Isolation::Off).table_script(&BTreeSet::new());
    assert!(off.contains("ip daddr 198.18.0.0/24 accept comment \"isodhcp isolation\""));
    let system = cfg(Isolation::System).table_script(&BTreeSet::new());
    assert!(!system.contains("isolation"));
    assert!(!system.contains("chain output"));
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
