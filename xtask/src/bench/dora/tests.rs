use super::*;

fn run_with(server: Server, lps: f64, rps: f64) -> Run {
    Run {
        server,
        clients: 1000,
        out: json!({"successes_per_s": lps, "renew": {"successes_per_s": rps},
                    "stats": {"successes": 1000, "attempts": 1000, "failures": 0, "naks": 0,
                              "abandoned": 0, "retries": 0, "p50_ms": 1.0, "p99_ms": 2.0}}),
        cpu_pct: 50.0,
        window_s: 1.0,
        checks: Checks::default(),
        datapath: None,
        metrics: None,
    }
}

#[test]
fn medians_pick_the_middle_run() {
    let runs = vec![
        run_with(Server::Kea, 300.0, 10.0),
        run_with(Server::Kea, 100.0, 30.0),
        run_with(Server::Kea, 200.0, 20.0),
        run_with(Server::Isodhcp, 900.0, 90.0),
    ];
    let m = medians(&[Server::Kea, Server::Isodhcp], &runs);
    assert_eq!(m.len(), 2);
    assert_eq!(m[0].0.leases_per_s(), 200.0);
    assert_eq!((m[0].1, m[0].2, m[0].3), (100.0, 300.0, 3));
    assert_eq!(median_of(&runs, Server::Kea, Run::renew_per_s), Some(20.0));
    assert_eq!(ratio(Some(900.0), Some(200.0)), "4.50");
    assert_eq!(ratio(Some(1.0), None), "-");
}

#[test]
fn lease_files_are_counted() {
    let d = std::env::temp_dir().join(format!("xtask-dora-test-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let j = d.join("l.json");
    std::fs::write(
        &j,
        r#"{"version":1,"leases":{"0e:01:02:03:04:05":{"ip":"198.18.1.2"},"02:1d:00:00:00:10":{"ip":"198.18.1.3"}}}"#,
    )
    .unwrap();
    assert_eq!(isodhcp_file_leases(&j).unwrap(), 1);
    let k = d.join("k.csv");
    std::fs::write(
        &k,
        "address,hwaddr,client_id\n198.18.1.2,0e:01:02:03:04:05,\n198.18.1.2,0E:01:02:03:04:05,\n198.18.1.3,06:aa:bb:cc:dd:ee,\n",
    )
    .unwrap();
    assert_eq!(kea_file_leases(&k).unwrap(), 1);
    let m = d.join("dnsmasq.leases");
    std::fs::write(
        &m,
        "1795471476 0e:01:02:03:04:05 198.18.1.2 * 01:0e:01:02:03:04:05\n1795471476 06:01:02:03:04:05 198.18.1.3 * *\n",
    )
    .unwrap();
    assert_eq!(dnsmasq_file_leases(&m).unwrap(), 1);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn metrics_are_parsed() {
    let t = "# HELP x\nisodhcp_lease_commit_seconds_sum 0.5\nisodhcp_lease_commit_seconds_count 100\nisodhcp_lease_commit_seconds_bucket{le=\"0.1\"} 3\nisodhcp_messages_sent_total{type=\"ack\"} 7\n";
    let m = parse_metrics(t);
    assert_eq!(m.len(), 3);
    let mut r = run_with(Server::Isodhcp, 1.0, 1.0);
    r.metrics = Some(m);
    assert_eq!(commit_stats(&r), Some((100, 5.0)));
}

#[test]
fn control_json_is_searched() {
    let v = json!({"version": 1, "status": "ok", "leases": [{"ip": "198.18.1.1"}, {"ip": "198.18.1.2"}]});
    assert_eq!(find_array(&v, "leases", 0).map(Vec::len), Some(2));
    let v = json!({"version": 1, "data": {"datapath": "xdp native"}});
    assert_eq!(find_key(&v, "datapath", 0), Some(&json!("xdp native")));
}
