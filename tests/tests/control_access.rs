//! Control access and live blocking (design.md §Control), end to end: the socket and lease file
//! are private (mode 0600, other users get nothing), a second daemon on the
//! same socket refuses to start, and `--block`/`--unblock`/`--for` change
//! what the XDP program (or the userspace limiter) lets through.
//!
//! Run as root, single-threaded:
//! `cargo test -p isodhcp-tests --release --test control_access -- --test-threads=1`

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use isodhcp::wire::Mac;
use isodhcp::wire::options::MessageType;
use isodhcp_tests::control_world::*;
use isodhcp_tests::crafted::{self, Dhcp, mac, request};
use isodhcp_tests::daemon::{Daemon, bpftool_json, sum_field};
use isodhcp_tests::util::{self, CmdOutput, find_tool, tool_cmd};
use isodhcp_tests::{Lab, XdpMode, isodhcp_bin, preflight, wait_until};
use serde_json::Value;

const NOBODY: &str = "65534";

fn as_nobody(sock: &Path, args: &[&str]) -> CmdOutput {
    let bin = isodhcp_bin().unwrap();
    util::run(
        tool_cmd("setpriv")
            .args([
                &format!("--reuid={NOBODY}"),
                &format!("--regid={NOBODY}"),
                "--clear-groups",
                "--",
            ])
            .arg(bin)
            .arg("--socket")
            .arg(sock)
            .args(args),
        CLI_TIMEOUT,
    )
    .expect("setpriv")
}

fn mode_of(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// The socket is a socket, and it, the lease file and its journal are mode
/// 0600; the lab folder is traversable, so only those modes stop others.
fn assert_files_private(lab: &Lab, sock: &Path, lease_file: &Path) {
    let meta = std::fs::metadata(sock).expect("socket file");
    assert!(
        meta.file_type().is_socket(),
        "{} is not a socket",
        sock.display()
    );
    assert_eq!(
        mode_of(sock),
        0o600,
        "control socket mode (design.md §Control, §Privileges)"
    );
    assert_eq!(
        mode_of(lease_file),
        0o600,
        "lease file mode (design.md §Persistence)"
    );
    let journal = PathBuf::from(format!("{}.journal", lease_file.display()));
    if journal.exists() {
        assert_eq!(
            mode_of(&journal),
            0o600,
            "lease journal mode (isodhcp(8) FILES)"
        );
    }
    // The lab folder itself is traversable, so only the socket's own mode stops others.
    assert!(
        mode_of(lab.dir()) & 0o001 != 0,
        "lab dir must be traversable for this test"
    );
}

/// Another user (nobody): the 0600 socket refuses the connection, with a
/// clear message and no data.
fn assert_other_user_refused(sock: &Path) {
    for args in [
        &["--status"][..],
        &["--dump"],
        &["--dump", "--json"],
        &["--verify"],
    ] {
        let o = as_nobody(sock, args);
        assert_ne!(
            code(&o),
            Some(0),
            "nobody {args:?} must fail: {}",
            show_out(&o)
        );
        assert!(
            code(&o).is_some(),
            "nobody {args:?}: killed by a signal? {}",
            show_out(&o)
        );
        assert!(
            o.stderr.to_ascii_lowercase().contains("permission denied"),
            "nobody {args:?}: the message must say permission denied: {}",
            show_out(&o)
        );
        assert!(!o.stderr.contains("panicked"), "{}", show_out(&o));
        assert!(
            !o.stdout.contains("secret-host")
                && !o.stdout.contains("pid")
                && !o.stdout.contains("198.18."),
            "nobody {args:?} got data: {}",
            show_out(&o)
        );
    }
}

/// Even if the socket file's mode is loosened, the daemon checks the peer's
/// credentials before reading the request.
fn assert_peer_credentials_checked(sock: &Path) {
    // Several attempts: the answer must be the same every time (the daemon
    // answers before reading, so a client that dies on EPIPE while sending
    // its request would report a misleading error some of the time).
    std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o666)).unwrap();
    let mut outs = Vec::new();
    for i in 0..30 {
        let args: &[&str] = if i % 2 == 0 {
            &["--dump"]
        } else {
            &["--dump", "--json"]
        };
        outs.push(as_nobody(sock, args));
    }
    std::fs::set_permissions(sock, std::fs::Permissions::from_mode(0o600)).unwrap();
    for o in &outs {
        assert_ne!(code(o), Some(0), "peer-credential check: {}", show_out(o));
        assert!(
            !o.stdout.contains("secret-host") && !o.stdout.contains("198.18."),
            "another user got data: {}",
            show_out(o)
        );
    }
    let unclear: Vec<String> = outs
        .iter()
        .filter(|o| {
            !format!("{}{}", o.stdout, o.stderr)
                .to_ascii_lowercase()
                .contains("permission denied")
        })
        .map(show_out)
        .collect();
    assert!(
        unclear.is_empty(),
        "peer-credential refusal must say permission denied every time; {} of {} did not:\n{}",
        unclear.len(),
        outs.len(),
        unclear.join("\n")
    );
}

#[test]
fn socket_and_lease_file_are_private() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    assert!(
        find_tool("setpriv").is_some(),
        "setpriv (util-linux) is required"
    );
    let lab = Lab::new("ctlperm", 1).expect("lab");
    let cfg = crafted::config(&lab);
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let sock = lab.dir().join("isodhcp_srv0.sock");
    let port = Dhcp::open(lab.client(0)).unwrap();
    port.dora(mac(0xc1, 1), &[hostname_opt("secret-host")])
        .unwrap_or_else(|e| panic!("DORA: {e:#}\n{}", lab.daemon_logs()));

    assert_files_private(&lab, &sock, &cfg.lease_file);
    assert_other_user_refused(&sock);
    assert_peer_credentials_checked(&sock);
    // Root still gets it.
    let d = cli_json(&sock, &["--dump"]);
    assert_eq!(d["leases"][0]["hostname"], "secret-host", "{d}");
}

#[test]
fn second_daemon_refuses_the_socket() {
    isodhcp_tests::needs_root!();
    preflight().expect("preflight");
    let lab = Lab::new("ctltwice", 1).expect("lab");
    let cfg = crafted::config(&lab);
    let first = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let pid = first.pid().unwrap();
    let sock = lab.dir().join("isodhcp_srv0.sock");
    let port = Dhcp::open(lab.client(0)).unwrap();
    port.dora(mac(0xc2, 1), &[])
        .expect("DORA with the first daemon");

    let log = lab.dir().join("second.log");
    let mut second = Daemon::start(&lab.server, &cfg.bin, &cfg.args(), lab.dir(), &log)
        .expect("spawning the second daemon");
    let st = second
        .wait_exit(Duration::from_secs(15))
        .expect("second daemon must exit");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(
        st.code(),
        Some(1),
        "second daemon: exit 1 expected ({st}); log:\n{text}"
    );
    assert!(
        text.contains(&sock.display().to_string()),
        "the refusal must name the socket {}; log:\n{text}",
        sock.display()
    );
    assert!(!text.contains("panicked"), "{text}");
    assert!(
        !text.contains("isodhcp ready"),
        "second daemon must not serve:\n{text}"
    );

    // The first one keeps its socket and keeps serving.
    assert!(
        sock.exists(),
        "the second daemon removed the first one's socket"
    );
    let s = cli_json(&sock, &["--status"]);
    assert_eq!(s["pid"], pid, "{s}");
    let (_, ack) = port
        .dora(mac(0xc2, 2), &[])
        .unwrap_or_else(|e| panic!("first daemon stopped serving: {e:#}\n{}", lab.daemon_logs()));
    lab.wait_server_route(ack.msg.yiaddr, WAIT)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    let d = cli_json(&sock, &["--dump"]);
    assert_eq!(d["leases"].as_array().map(Vec::len), Some(2), "{d}");
    drop(first);
}

// ---------------------------------------------------------------------------
// --block / --unblock / --for
// ---------------------------------------------------------------------------

fn discover_answered(port: &Dhcp, m: Mac) -> bool {
    let d = request(MessageType::Discover, m);
    port.exchange_to(&d, crafted::To::Broadcast)
        .expect("exchange")
        .is_some_and(|r| r.kind() == Some(MessageType::Offer))
}

fn blocked_macs(sock: &Path) -> Vec<(String, Value)> {
    let d = cli_json(sock, &["--dump=xdp"]);
    d["xdp"]["blocked"]
        .as_array()
        .unwrap_or_else(|| panic!("--dump=xdp: {d}"))
        .iter()
        .map(|b| {
            (
                b["mac"].as_str().unwrap_or_default().to_string(),
                b["remaining_s"].clone(),
            )
        })
        .collect()
}

fn denied_counter(w: &Lab, sock: &Path, xdp: bool) -> u64 {
    let d = cli_json(sock, &["--dump=xdp"]);
    let from_daemon = d["xdp"]["counters"]["drop_denied"].as_u64().unwrap_or(0);
    if xdp {
        let counters = w.pin_dir().join("counters");
        let dump = bpftool_json(&["map", "dump", "pinned", counters.to_str().unwrap()])
            .expect("bpftool map dump pinned counters");
        let k = sum_field(&dump, "drop_denied");
        assert_eq!(
            k, from_daemon,
            "bpftool and --dump=xdp disagree on drop_denied: {dump}\n{d}"
        );
        k
    } else {
        from_daemon
    }
}

/// `--xdp auto` attaches in the lab (pinned counters); `--xdp off` does not.
fn assert_datapath(lab: &Lab, sock: &Path, kernel: bool) {
    let st = cli_json(sock, &["--status"]);
    if kernel {
        assert_ne!(
            st["datapath"],
            "off",
            "--xdp auto must attach in the lab: {st}\n{}",
            lab.daemon_logs()
        );
        assert!(
            lab.pin_dir().join("counters").exists(),
            "no pinned counters\n{}",
            lab.daemon_logs()
        );
    } else {
        assert_eq!(st["datapath"], "off", "{st}");
    }
}

/// Blocked: no answer at all (not even with retransmissions), counted, listed;
/// unblocked: a full DORA works again.
fn check_block_then_unblock(lab: &Lab, port: &Dhcp, sock: &Path, xdp: XdpMode) {
    let kernel = xdp != XdpMode::Off;
    let victim = mac(0xc3, 1);
    let other = mac(0xc3, 2);

    // Blocked: no answer at all (not even with retransmissions), counted.
    let before = denied_counter(lab, sock, kernel);
    let b = cli_json(sock, &["--block", &victim.to_string()]);
    assert_eq!(b["blocked"], victim.to_string(), "{b}");
    assert!(
        !discover_answered(port, victim),
        "blocked {victim} got an OFFER ({xdp:?})\n{}",
        lab.daemon_logs()
    );
    assert!(
        discover_answered(port, other),
        "an unblocked client must still be served"
    );
    let after = denied_counter(lab, sock, kernel);
    assert!(
        after > before,
        "drop_denied did not grow ({before} → {after})"
    );
    let listed = blocked_macs(sock);
    assert!(
        listed
            .iter()
            .any(|(m, rem)| *m == victim.to_string() && rem.is_null()),
        "--dump=xdp must list {victim} blocked for ever: {listed:?}"
    );
    let text = cli_text(sock, &["--dump=xdp"]);
    assert!(
        text.contains(&victim.to_string()),
        "--dump=xdp text:\n{text}"
    );

    // Unblocked: a full DORA works again.
    let u = cli_json(sock, &["--unblock", &victim.to_string()]);
    assert_eq!(u["unblocked"], victim.to_string(), "{u}");
    assert!(blocked_macs(sock).is_empty(), "unblocked MAC still listed");
    port.dora(victim, &[])
        .unwrap_or_else(|e| panic!("after --unblock {victim}: {e:#}\n{}", lab.daemon_logs()));
}

/// A bad MAC is a command-line error; so is a duration past ten years, and
/// the daemon refuses one sent by a client that skipped that check.
fn check_bad_block_requests(sock: &Path) {
    // A bad MAC is a command-line error.
    let o = cli(sock, &["--block", "not-a-mac"]);
    assert_eq!(code(&o), Some(2), "{}", show_out(&o));
    assert!(o.stderr.contains("--block"), "{}", show_out(&o));

    // A duration past ten years is a command-line error too, and the daemon
    // refuses one sent by a client that skipped that check.
    let huge = mac(0xc3, 9).to_string();
    for secs in ["99999999999999999999", "18446744073709551615", "315360001"] {
        let o = cli(sock, &["--block", &huge, "--for", secs]);
        assert_eq!(code(&o), Some(2), "--for {secs}: {}", show_out(&o));
        assert!(o.stderr.contains("--for"), "{}", show_out(&o));
    }
    let raw = isodhcp::control::Request {
        version: isodhcp::control::VERSION,
        cmd: isodhcp::control::Command::Block {
            mac: huge.clone(),
            seconds: Some(u64::MAX),
        },
        redact: false,
        all: false,
    };
    let answer = isodhcp::control::client::call(sock, &raw).expect("daemon answers");
    assert!(!answer.is_ok(), "{answer:?}");
    assert!(
        answer.message.as_deref().unwrap_or("").contains("at most"),
        "{answer:?}"
    );
    assert!(
        !blocked_macs(sock).iter().any(|(m, _)| *m == huge),
        "a refused --for must not block"
    );
}

/// `--for 2`: blocked now, free again by itself.
fn check_timed_block(lab: &Lab, port: &Dhcp, sock: &Path) {
    // --for 2: blocked now, free again by itself.
    let timed = mac(0xc3, 3);
    cli_json(sock, &["--block", &timed.to_string(), "--for", "2"]);
    let listed = blocked_macs(sock);
    assert!(
        listed
            .iter()
            .any(|(m, rem)| *m == timed.to_string() && rem.as_u64().is_some_and(|s| s <= 2)),
        "--dump=xdp must list {timed} with ≤ 2 s remaining: {listed:?}"
    );
    port.expect_silence(
        &request(MessageType::Discover, timed),
        crafted::To::Broadcast,
    )
    .unwrap_or_else(|e| panic!("{timed} blocked for 2 s: {e:#}"));
    wait_until("--block --for 2 to expire", Duration::from_secs(12), || {
        Ok(discover_answered(port, timed).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", lab.daemon_logs()));
    assert!(
        !blocked_macs(sock)
            .iter()
            .any(|(m, _)| *m == timed.to_string()),
        "expired block still listed"
    );
}

fn block_unblock(tag: &str, xdp: XdpMode) {
    preflight().expect("preflight");
    let lab = Lab::new(tag, 1).expect("lab");
    let mut cfg = crafted::config(&lab);
    cfg.xdp = xdp;
    let _d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let sock = lab.dir().join("isodhcp_srv0.sock");
    let kernel = xdp != XdpMode::Off;
    assert_datapath(&lab, &sock, kernel);
    let port = Dhcp::open(lab.client(0)).unwrap();
    check_block_then_unblock(&lab, &port, &sock, xdp);
    check_bad_block_requests(&sock);
    check_timed_block(&lab, &port, &sock);
}

#[test]
fn block_unblock_with_xdp() {
    isodhcp_tests::needs_root!();
    assert!(
        find_tool("bpftool").is_some(),
        "bpftool is required (package bpftool)"
    );
    block_unblock("ctlblkxdp", XdpMode::Auto);
}

#[test]
fn block_unblock_userspace_limiter() {
    isodhcp_tests::needs_root!();
    block_unblock("ctlblkoff", XdpMode::Off);
}
