//! Persistence (design.md §Persistence, §Signals, §Privileges): crash consistency under `kill -9`
//! during a stream of new leases, a corrupt lease file, file modes, and graceful shutdown on
//! SIGTERM/SIGINT/SIGHUP.
//!
//! Leases come from crafted DORA exchanges (AF_PACKET in a client namespace,
//! one MAC per lease). Needs root, iproute2 and the daemon binary;
//! `--xdp off`. `ISODHCP_TEST_SEED` replays the random kill points,
//! `ISODHCP_KILL_ROUNDS` changes the number of rounds (default 20). Run
//! single-threaded:
//! `cargo test -p isodhcp-tests --release --test persist_durability -- --test-threads=1`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use isodhcp::wire::Mac;
use isodhcp::wire::options::MessageType;
use isodhcp_tests::nftutil::{DhcpProbe, Rng, journal_path, leases_on_disk, test_mac};
use isodhcp_tests::persist::{config, daemon_logs, key, lab, mode};
use isodhcp_tests::{Client, Lab};

/// Asserts that every (MAC, IP) in `acked` is on disk (lease file + journal).
fn assert_on_disk(lab: &Lab, file: &Path, acked: &[(Mac, Ipv4Addr)], when: &str) {
    let disk = leases_on_disk(file).unwrap_or_else(|e| panic!("{when}: {e:#}"));
    let missing: Vec<String> = acked
        .iter()
        .filter(|(m, ip)| disk.get(&key(*m)) != Some(ip))
        .map(|(m, ip)| format!("{m}={ip} (disk: {:?})", disk.get(&key(*m))))
        .collect();
    assert!(
        missing.is_empty(),
        "{when}: {} ACKed lease(s) not on disk: {:?}\n{}",
        missing.len(),
        &missing[..missing.len().min(10)],
        daemon_logs(lab, 2)
    );
}

/// INIT-REBOOT for each (MAC, IP): must be ACKed with the same address.
fn assert_still_owned(lab: &Lab, probe: &mut DhcpProbe, acked: &[(Mac, Ipv4Addr)], when: &str) {
    for (m, ip) in acked {
        let r = probe.request_init_reboot(*m, *ip, 3).unwrap();
        match r {
            Some(r) if r.kind == MessageType::Ack && r.yiaddr == *ip => {}
            other => panic!(
                "{when}: INIT-REBOOT of {m} for its ACKed {ip} answered {:?} (yiaddr {:?})\n{}",
                other.as_ref().map(|r| r.kind),
                other.as_ref().map(|r| r.yiaddr),
                daemon_logs(lab, 2)
            ),
        }
    }
}

/// Two crafted clients doing DORA with new MACs (`test_mac(mac_seed, n)`,
/// `n` from `counter`) as a paced stream, collecting what was ACKed.
struct LeaseStream {
    acked: Arc<Mutex<Vec<(Mac, Ipv4Addr)>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl LeaseStream {
    /// Starts both stream threads on client `c`'s interface.
    fn start(c: &Client, mac_seed: u16, counter: &Arc<AtomicU32>) -> LeaseStream {
        let acked: Arc<Mutex<Vec<(Mac, Ipv4Addr)>>> = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..2 {
            let mut probe = DhcpProbe::open(&c.ns, &c.ifname).expect("raw socket");
            probe.reply_timeout = Duration::from_millis(400);
            let (acked, stop, counter) = (acked.clone(), stop.clone(), counter.clone());
            threads.push(std::thread::spawn(move || {
                // Bounded: at most 2000 leases per thread and round.
                for _ in 0..2000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let mac = test_mac(mac_seed, counter.fetch_add(1, Ordering::SeqCst));
                    if let Ok(ip) = probe.dora(mac, 1) {
                        acked.lock().unwrap().push((mac, ip));
                    }
                    // Pace the stream (a few hundred leases per second and
                    // thread) so twenty rounds fit the pool.
                    std::thread::sleep(Duration::from_millis(2));
                }
            }));
        }
        LeaseStream {
            acked,
            stop,
            threads,
        }
    }

    /// Are both threads still streaming?
    fn streaming(&self) -> bool {
        self.threads.iter().all(|t| !t.is_finished())
    }

    /// Stops the stream; the leases ACKed, in ACK order.
    fn finish(self) -> Vec<(Mac, Ipv4Addr)> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().expect("stream thread");
        }
        self.acked.lock().unwrap().clone()
    }
}

/// No address was ever ACKed to two MACs.
fn assert_unique_ips(all: &[(Mac, Ipv4Addr)]) {
    let mut by_ip: BTreeMap<Ipv4Addr, Mac> = BTreeMap::new();
    for (m, ip) in all {
        if let Some(other) = by_ip.insert(*ip, *m) {
            panic!("{ip} ACKed to both {other} and {m}");
        }
    }
}

/// `kill -9` at a random moment of a stream of new leases (two concurrent
/// crafted clients, new MACs), ≥ 20 rounds. After each kill, every MAC that
/// received an ACK is in the lease file + journal; after the restart, an
/// INIT-REBOOT for it is ACKed with the same address, and no address was
/// ACKed to two MACs.
#[test]
fn kill9_during_lease_stream_keeps_every_acked_lease() {
    isodhcp_tests::needs_root!();
    let lab = lab("dukill", 1);
    let cfg = config(&lab);
    let (mut rng, seed) = Rng::from_env();
    eprintln!("ISODHCP_TEST_SEED={seed}");
    let rounds: usize = std::env::var("ISODHCP_KILL_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
        .max(1);
    let c = lab.client(0);
    let mut checker = DhcpProbe::open(&c.ns, &c.ifname).expect("raw socket");
    let counter = Arc::new(AtomicU32::new(1));
    let mac_seed = (seed & 0xffff) as u16;
    let mut all: Vec<(Mac, Ipv4Addr)> = Vec::new();
    let mut previous: Vec<(Mac, Ipv4Addr)> = Vec::new();
    let mut killed_mid_stream = 0;

    for round in 0..rounds {
        let mut d = lab
            .start_isodhcp(&cfg)
            .unwrap_or_else(|e| panic!("round {round}: restart after kill -9: {e:#}"));
        // The previous round's ACKed leases survived the crash.
        assert_still_owned(
            &lab,
            &mut checker,
            &previous,
            &format!("round {round}, after restart"),
        );

        let stream = LeaseStream::start(c, mac_seed, &counter);
        // Kill at a random point of the stream (bounded: 20..600 ms).
        let delay = Duration::from_millis(rng.range(20, 600));
        let t0 = Instant::now();
        std::thread::sleep(delay);
        let streaming = stream.streaming();
        d.signal(libc::SIGKILL).unwrap();
        let st = d
            .wait_exit(Duration::from_secs(10))
            .expect("exit after SIGKILL");
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&st),
            Some(libc::SIGKILL),
            "round {round}: daemon ended with {st} instead of SIGKILL (it must still be running \
             when killed)\n{}",
            daemon_logs(&lab, 1)
        );
        let round_acked = stream.finish();
        if streaming {
            killed_mid_stream += 1;
        }
        eprintln!(
            "round {round}: killed after {:?}, {} leases ACKed",
            t0.elapsed(),
            round_acked.len()
        );
        assert_on_disk(
            &lab,
            &cfg.lease_file,
            &round_acked,
            &format!("round {round}, after kill -9"),
        );
        assert_on_disk(
            &lab,
            &cfg.lease_file,
            &all,
            &format!("round {round}, earlier rounds"),
        );
        all.extend(round_acked.iter().copied());
        previous = round_acked;
    }

    assert_unique_ips(&all);
    assert!(
        all.len() >= 20,
        "only {} leases ACKed over {rounds} rounds",
        all.len()
    );
    assert_eq!(
        killed_mid_stream, rounds,
        "only {killed_mid_stream} of {rounds} kills hit a running lease stream"
    );
    // Final restart: every lease of every round is still owned.
    let _d = lab.start_isodhcp(&cfg).expect("final restart");
    assert_still_owned(&lab, &mut checker, &all, "final restart");
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A lease file of garbage bytes: preserved as `<file>.corrupt-<unix time>-<random>`
/// (byte for byte) before the first rewrite; the server starts and serves;
/// the new file is valid JSON with the new lease.
#[test]
fn corrupt_lease_file_is_preserved_and_server_serves() {
    isodhcp_tests::needs_root!();
    let lab = lab("ducorrupt", 1);
    let cfg = config(&lab);
    let garbage: Vec<u8> = b"{\"leases\": {\"02:00:\x00\xff\xfe garbage \x01\x02"
        .iter()
        .copied()
        .chain((0..=255u8).rev())
        .collect();
    std::fs::write(&cfg.lease_file, &garbage).unwrap();
    let t_before = unix_now();
    let mut d = lab
        .start_isodhcp(&cfg)
        .expect("isodhcp must start with a corrupt lease file");
    let t_after = unix_now();

    let c = lab.client(0);
    let mut probe = DhcpProbe::open(&c.ns, &c.ifname).unwrap();
    let mac = Mac([0x02, 0x1e, 0x30, 0, 0, 1]);
    let ip = probe
        .dora(mac, 3)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon_logs(&lab, 1)));

    let name = cfg
        .lease_file
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let prefix = format!("{name}.corrupt-");
    let saved: Vec<_> = std::fs::read_dir(lab.dir())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .collect();
    assert_eq!(
        saved.len(),
        1,
        "expected one {prefix}<time> file, found {:?}\n{}",
        saved
            .iter()
            .map(std::fs::DirEntry::file_name)
            .collect::<Vec<_>>(),
        daemon_logs(&lab, 1)
    );
    // `<unix time>-<random>`: the random part makes the name unpredictable.
    let suffix = saved[0].file_name().to_string_lossy()[prefix.len()..].to_string();
    let t: u64 = suffix
        .split_once('-')
        .map_or(suffix.as_str(), |(t, _)| t)
        .parse()
        .unwrap_or_else(|_| panic!("suffix {suffix:?} is not a Unix time"));
    assert!(
        (t_before.saturating_sub(2)..=t_after + 2).contains(&t),
        "suffix {t} is not the time of the start ({t_before}..{t_after})"
    );
    assert_eq!(
        std::fs::read(saved[0].path()).unwrap(),
        garbage,
        "the preserved file differs from the original bytes"
    );
    assert!(
        d.log_text()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("corrupt")),
        "no warning about the preserved file:\n{}",
        d.log_text()
    );

    d.signal(libc::SIGTERM).unwrap();
    let st = d.wait_exit(Duration::from_secs(10)).unwrap();
    assert_eq!(st.code(), Some(0), "SIGTERM exit status {st}");
    let disk = leases_on_disk(&cfg.lease_file).expect("new lease file is valid JSON");
    assert_eq!(
        disk.get(&key(mac)),
        Some(&ip),
        "new lease missing: {disk:?}"
    );
    // The preserved copy is still there after the rewrite.
    assert_eq!(std::fs::read(saved[0].path()).unwrap(), garbage);
}

/// One unreadable record among good ones: the good lease is restored, the
/// bad record is reported and carried over unchanged (nothing on disk is
/// silently discarded).
#[test]
fn unreadable_record_is_kept_and_good_ones_restored() {
    isodhcp_tests::needs_root!();
    let lab = lab("dubadrec", 1);
    let cfg = config(&lab);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let good = Mac([0x02, 0x1e, 0x31, 0, 0, 1]);
    let bad = "02:1e:31:00:00:02";
    let doc = serde_json::json!({
        "leases": {
            good.to_string(): {"ip": "198.18.0.160", "expires": now + 3000.0, "mode": "standard", "masq": false},
            bad: {"ip": "not-an-address", "expires": now + 3000.0, "masq": false}
        },
        "subnets": {}
    });
    std::fs::write(&cfg.lease_file, serde_json::to_vec(&doc).unwrap()).unwrap();
    let mut d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    assert!(
        d.log_text()
            .lines()
            .any(|l| l.contains("WARN") && l.contains(bad)),
        "no warning naming the unreadable record {bad}:\n{}",
        d.log_text()
    );
    let c = lab.client(0);
    let mut probe = DhcpProbe::open(&c.ns, &c.ifname).unwrap();
    assert_still_owned(
        &lab,
        &mut probe,
        &[(good, Ipv4Addr::new(198, 18, 0, 160))],
        "restored lease",
    );
    d.signal(libc::SIGTERM).unwrap();
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg.lease_file).unwrap()).unwrap();
    assert_eq!(
        v["leases"][bad]["ip"].as_str(),
        Some("not-an-address"),
        "the unreadable record was not carried over: {v}"
    );
}

/// Lease file and journal are 0600, also when the file existed with 0644.
#[test]
fn lease_file_mode_0600() {
    isodhcp_tests::needs_root!();
    let lab = lab("dumode", 1);
    let cfg = config(&lab);
    std::fs::write(&cfg.lease_file, b"{\"leases\": {}, \"subnets\": {}}").unwrap();
    std::fs::set_permissions(&cfg.lease_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let c = lab.client(0);
    let mut probe = DhcpProbe::open(&c.ns, &c.ifname).unwrap();
    probe
        .dora(Mac([0x02, 0x1e, 0x32, 0, 0, 1]), 3)
        .expect("DORA");
    assert_eq!(mode(&cfg.lease_file), 0o600, "lease file mode after start");
    let j = journal_path(&cfg.lease_file);
    if j.exists() {
        assert_eq!(mode(&j), 0o600, "journal mode");
    }
    d.signal(libc::SIGTERM).unwrap();
    assert_eq!(
        d.wait_exit(Duration::from_secs(10)).unwrap().code(),
        Some(0)
    );
    assert_eq!(
        mode(&cfg.lease_file),
        0o600,
        "lease file mode after shutdown"
    );
    for e in std::fs::read_dir(lab.dir()).unwrap().flatten() {
        let n = e.file_name().to_string_lossy().into_owned();
        if n.starts_with("leases.json") {
            assert_eq!(mode(&e.path()), 0o600, "{n} mode");
        }
    }
}

/// SIGTERM, SIGINT and SIGHUP: exit status 0, every lease in the lease file,
/// journal empty; the next start serves the same leases.
#[test]
fn shutdown_signals_exit_zero_with_leases_flushed() {
    isodhcp_tests::needs_root!();
    let lab = lab("dusig", 1);
    let cfg = config(&lab);
    let c = lab.client(0);
    let mut probe = DhcpProbe::open(&c.ns, &c.ifname).unwrap();
    let mut leases: Vec<(Mac, Ipv4Addr)> = Vec::new();
    for (round, (sig, name)) in [
        (libc::SIGTERM, "SIGTERM"),
        (libc::SIGINT, "SIGINT"),
        (libc::SIGHUP, "SIGHUP"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut d = lab.start_isodhcp(&cfg).expect("isodhcp start");
        assert_still_owned(&lab, &mut probe, &leases, &format!("start before {name}"));
        for i in 0..3u8 {
            let mac = Mac([0x02, 0x1e, 0x33, 0, round as u8, i]);
            let ip = probe
                .dora(mac, 3)
                .unwrap_or_else(|e| panic!("{e:#}\n{}", daemon_logs(&lab, 1)));
            leases.push((mac, ip));
        }
        d.signal(sig).unwrap();
        let st = d
            .wait_exit(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(
            st.code(),
            Some(0),
            "{name}: exit status {st}\n{}",
            daemon_logs(&lab, 1)
        );
        // Everything is in the lease file itself...
        let text = std::fs::read(&cfg.lease_file).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&text).expect("lease file is JSON");
        for (m, ip) in &leases {
            assert_eq!(
                v["leases"][key(*m)]["ip"].as_str(),
                Some(ip.to_string().as_str()),
                "{name}: {m} missing from the lease file: {v}"
            );
        }
        // ...and the journal is empty after a clean shutdown.
        let j = journal_path(&cfg.lease_file);
        let jlen = std::fs::metadata(&j).map(|m| m.len()).unwrap_or(0);
        assert_eq!(
            jlen,
            0,
            "{name}: journal {} not empty after a clean shutdown",
            j.display()
        );
    }
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    assert_still_owned(&lab, &mut probe, &leases, "after the last clean shutdown");
}
