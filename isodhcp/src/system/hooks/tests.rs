use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::env::{EVENT_VARS, argv, event_env};
use super::output::for_each_line;
use super::*;
use crate::engine::Mode;
use crate::wire::cidr::Cidr;

const MAC_A: &str = "02:00:00:00:00:33";
const MAC_B: &str = "02:00:00:00:00:44";
const DEADLINE: Duration = Duration::from_secs(15);

/// A folder in the temp dir, unique per test, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let p = std::env::temp_dir().join(format!(
            "isodhcp-hooks-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
    /// `#!/bin/sh` + `body` as an executable `hook`; `OUT` and `DIR` in
    /// `body` are replaced by the output file and this folder.
    fn script(&self, body: &str) -> PathBuf {
        let text = format!(
            "#!/bin/sh\n{}\n",
            body.replace("OUT", self.path("out").to_str().unwrap())
                .replace("DIR", self.0.to_str().unwrap())
        );
        let p = self.path("hook");
        write_mode(&p, &text, 0o755);
        p
    }
    fn out(&self) -> String {
        std::fs::read_to_string(self.path("out")).unwrap_or_default()
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_mode(p: &Path, text: &str, mode: u32) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(p)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn fixed_env() -> Vec<(String, String)> {
    [
        ("ISODHCP_PID", "4242"),
        ("ISODHCP_INTERFACE", "guest"),
        ("ISODHCP_SERVER_IP", "198.18.0.1"),
        ("ISODHCP_POOL_CIDR", "198.18.0.0/24"),
        ("ISODHCP_DNS", "198.18.0.53"),
        (
            "ISODHCP_LEASE_FILE",
            "/var/lib/isodhcp/dhcp_leases_guest.json",
        ),
        ("ISODHCP_ISOLATION", "system"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn config(path: PathBuf) -> HookConfig {
    HookConfig::new(path, fixed_env())
}

fn compat(mac: &str) -> Binding {
    Binding {
        mac: Mac::parse(mac).unwrap(),
        ip: Ipv4Addr::new(198, 18, 0, 6),
        mode: Mode::Compat,
        masq: true,
        gateway: Ipv4Addr::new(198, 18, 0, 5),
        subnet: Cidr::new(Ipv4Addr::new(198, 18, 0, 4), 30),
        hostname: Some("laser printer".into()),
        expires: Some(1_795_471_476_250),
    }
}

fn isolated(mac: &str, last: u8) -> Binding {
    Binding {
        mac: Mac::parse(mac).unwrap(),
        ip: Ipv4Addr::new(198, 18, 0, last),
        mode: Mode::Isolated,
        masq: false,
        gateway: Ipv4Addr::new(198, 18, 0, 1),
        subnet: None,
        hostname: None,
        expires: None,
    }
}

fn ev(action: HookAction, binding: Binding) -> HookEvent {
    HookEvent {
        action,
        binding,
        total_leases: 3,
        free_ips: 250,
    }
}

fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}

/// Every variable of the hook interface (fixed and per-event).
fn interface_var(name: &str) -> bool {
    EVENT_VARS.contains(&name) || fixed_env().iter().any(|(k, _)| k == name)
}

#[tokio::test(flavor = "current_thread")]
async fn add_and_del_have_exact_argv_and_env() {
    let d = Dir::new("env");
    let hook = d.script(
        r#"{ printf 'ARGV'; for a in "$@"; do printf ' [%s]' "$a"; done; echo
env | grep -e '^ISODHCP_' -e '^PATH=' | sort; echo END; } >> OUT"#,
    );
    let h = Hooks::new(config(hook));
    h.submit(ev(HookAction::Add, compat(MAC_A)));
    h.submit(ev(HookAction::Del, compat(MAC_A)));
    h.drain(DEADLINE).await;
    let out = d.out();
    let records: Vec<&str> = out.split("END\n").filter(|r| !r.is_empty()).collect();
    assert_eq!(records.len(), 2, "{out}");

    let parse = |rec: &str| {
        let mut it = rec.lines();
        let argv = it.next().unwrap().to_string();
        let mut vars = BTreeMap::new();
        let mut path = false;
        for l in it {
            let (k, v) = l.split_once('=').unwrap();
            path |= k == "PATH";
            if interface_var(k) {
                vars.insert(k.to_string(), v.to_string());
            }
        }
        assert!(
            path,
            "the daemon's environment (PATH) is not inherited:\n{rec}"
        );
        (argv, vars)
    };
    let expect = |extra: &[(&str, &str)]| {
        let mut m: BTreeMap<String, String> = fixed_env().into_iter().collect();
        for (k, v) in [
            ("ISODHCP_TOTAL_LEASES", "3"),
            ("ISODHCP_FREE_IPS", "250"),
            ("ISODHCP_MAC", MAC_A),
            ("ISODHCP_IP", "198.18.0.6"),
            ("ISODHCP_HOSTNAME", "laser printer"),
            ("ISODHCP_HOSTNAME_SAFE", "laser-printer"),
        ]
        .iter()
        .chain(extra)
        {
            m.insert(k.to_string(), v.to_string());
        }
        m
    };

    let (argv, vars) = parse(records[0]);
    assert_eq!(
        argv,
        format!("ARGV [add] [{MAC_A}] [198.18.0.6] [laser printer]")
    );
    assert_eq!(
        vars,
        expect(&[
            ("ISODHCP_MODE", "compat"),
            ("ISODHCP_MASQ", "1"),
            ("ISODHCP_COMPAT", "1"),
            ("ISODHCP_EXPIRY", "1795471476"),
            ("ISODHCP_GATEWAY", "198.18.0.5"),
            ("ISODHCP_NETMASK", "255.255.255.252"),
            ("ISODHCP_SUBNET", "198.18.0.4/30"),
        ])
    );

    let (argv, vars) = parse(records[1]);
    assert_eq!(
        argv,
        format!("ARGV [del] [{MAC_A}] [198.18.0.6] [laser printer]")
    );
    assert_eq!(vars, expect(&[]));

    let st = h.stats();
    assert_eq!((st.runs, st.failures, st.timeouts), (2, 0, 0));
}

#[test]
fn env_for_isolated_static_and_playground() {
    let mut b = isolated(MAC_B, 10);
    b.hostname = Some(String::new()); // empty = unknown
    let e = ev(HookAction::Add, b.clone());
    assert_eq!(argv(&e), ["add", MAC_B, "198.18.0.10"]);
    let m: BTreeMap<_, _> = event_env(&e).into_iter().collect();
    assert_eq!(m["ISODHCP_MODE"], "standard");
    assert_eq!(m["ISODHCP_EXPIRY"], "inf");
    assert_eq!(m["ISODHCP_COMPAT"], "0");
    assert_eq!(m["ISODHCP_MASQ"], "0");
    assert_eq!(m["ISODHCP_NETMASK"], "255.255.255.255");
    assert_eq!(m["ISODHCP_GATEWAY"], "198.18.0.1");
    assert!(!m.contains_key("ISODHCP_SUBNET"));
    assert!(!m.contains_key("ISODHCP_HOSTNAME"));

    b.mode = Mode::Playground;
    b.gateway = Ipv4Addr::new(198, 18, 0, 193);
    b.subnet = Cidr::new(Ipv4Addr::new(198, 18, 0, 192), 26);
    b.expires = Some(crate::engine::NEVER);
    let m: BTreeMap<_, _> = event_env(&ev(HookAction::Add, b)).into_iter().collect();
    assert_eq!(m["ISODHCP_MODE"], "playground");
    assert_eq!(m["ISODHCP_COMPAT"], "0");
    assert_eq!(m["ISODHCP_EXPIRY"], "inf");
    assert_eq!(m["ISODHCP_NETMASK"], "255.255.255.192");
    assert_eq!(m["ISODHCP_SUBNET"], "198.18.0.192/26");
}

#[tokio::test(flavor = "current_thread")]
async fn events_of_one_mac_run_in_order() {
    let d = Dir::new("order");
    let hook = d.script(
        r#"echo "start $1 $ISODHCP_IP" >> OUT
[ "$1" = del ] && [ "$ISODHCP_IP" = 198.18.0.6 ] && sleep 0.3
echo "end $1 $ISODHCP_IP" >> OUT"#,
    );
    let h = Hooks::new(config(hook));
    let a = compat(MAC_A);
    let mut a2 = a.clone();
    a2.ip = Ipv4Addr::new(198, 18, 0, 10);
    h.submit(ev(HookAction::Del, a.clone()));
    h.submit(ev(HookAction::Add, a2.clone()));
    h.submit(ev(HookAction::Del, a2));
    h.submit(ev(HookAction::Add, a));
    // One hook per MAC at a time, whatever the free slots.
    assert_eq!((h.stats().running, h.stats().pending), (1, 3));
    h.drain(DEADLINE).await;
    assert_eq!(
        lines(&d.out()),
        [
            "start del 198.18.0.6",
            "end del 198.18.0.6",
            "start add 198.18.0.10",
            "end add 198.18.0.10",
            "start del 198.18.0.10",
            "end del 198.18.0.10",
            "start add 198.18.0.6",
            "end add 198.18.0.6",
        ]
    );
    assert_eq!(h.stats().runs, 4);
}

/// A's `del` waits (bounded, 5 s) for B's hook to have run: B must not
/// queue behind A. A's `add` still waits for A's `del`.
#[tokio::test(flavor = "current_thread")]
async fn different_macs_run_concurrently() {
    let d = Dir::new("conc");
    let hook = d.script(&format!(
        r#"echo "start $1 $2" >> OUT
if [ "$2" = {MAC_A} ] && [ "$1" = del ]; then
  i=0; while [ ! -e DIR/b ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
fi
[ "$2" = {MAC_B} ] && touch DIR/b
echo "end $1 $2" >> OUT"#
    ));
    let h = Hooks::new(config(hook));
    h.submit(ev(HookAction::Del, compat(MAC_A)));
    h.submit(ev(HookAction::Add, compat(MAC_A)));
    h.submit(ev(HookAction::Add, isolated(MAC_B, 254)));
    h.drain(DEADLINE).await;
    let out = d.out();
    let pos = |l: &str| {
        out.lines()
            .position(|x| x == l)
            .unwrap_or_else(|| panic!("no {l:?} in:\n{out}"))
    };
    assert!(
        pos(&format!("end add {MAC_B}")) < pos(&format!("end del {MAC_A}")),
        "B waited for A:\n{out}"
    );
    assert!(pos(&format!("end del {MAC_A}")) < pos(&format!("start add {MAC_A}")));
}

#[tokio::test(flavor = "current_thread")]
async fn at_most_max_concurrent_run() {
    let d = Dir::new("cap");
    std::fs::create_dir(d.path("locks")).unwrap();
    // Each hook holds a lock file while it runs: the count it sees can
    // only be lower than the real concurrency, never higher.
    let hook = d.script(
        r#"touch "DIR/locks/$ISODHCP_IP"
n=$(ls DIR/locks | wc -l)
echo "$n" >> OUT
sleep 0.3
rm "DIR/locks/$ISODHCP_IP""#,
    );
    let mut cfg = config(hook);
    cfg.max_concurrent = 2;
    let h = Hooks::new(cfg);
    let t0 = Instant::now();
    for i in 0..6 {
        let mac = format!("02:00:00:00:01:{i:02x}");
        h.submit(ev(HookAction::Add, isolated(&mac, 200 + i)));
    }
    let st = h.stats();
    assert_eq!((st.running, st.pending), (2, 4));
    h.drain(DEADLINE).await;
    let elapsed = t0.elapsed();
    let out = d.out();
    let counts: Vec<u32> = out.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(counts.len(), 6, "{out}");
    assert!(counts.iter().all(|&n| (1..=2).contains(&n)), "{counts:?}");
    // 6 hooks of >= 0.3 s through 2 slots take at least 3 rounds.
    assert!(elapsed >= Duration::from_millis(900), "{elapsed:?}");
    let st = h.stats();
    assert_eq!((st.runs, st.failures, st.running, st.pending), (6, 0, 0, 0));
}

#[tokio::test(flavor = "current_thread")]
async fn timeout_kills_the_hook_and_its_children() {
    let d = Dir::new("timeout");
    let hook = d.script("sleep 10 &\necho $! > DIR/pid\nwait\necho done >> OUT");
    let mut cfg = config(hook);
    cfg.timeout = Duration::from_millis(200);
    let h = Hooks::new(cfg);
    let t0 = Instant::now();
    h.submit(ev(HookAction::Add, compat(MAC_A)));
    h.drain(DEADLINE).await;
    let elapsed = t0.elapsed();
    assert!(elapsed < Duration::from_secs(3), "killed after {elapsed:?}");
    let st = h.stats();
    assert_eq!((st.runs, st.timeouts, st.failures), (1, 1, 0));
    assert_eq!(d.out(), "", "the hook ran to its end");
    // Its background `sleep` died with it (gone, or a zombie of init).
    if let Ok(pid) = std::fs::read_to_string(d.path("pid")) {
        let pid = pid.trim();
        let state = proc_state(pid);
        assert!(
            wait_dead(pid, Duration::from_secs(3)).await,
            "{pid}: {state:?}"
        );
    }
}

#[tokio::test(flavor = "current_thread")]
async fn failures_are_counted_not_fatal() {
    let d = Dir::new("fail");
    let noexec = d.path("noexec");
    write_mode(&noexec, "#!/bin/sh\necho ran >> OUT\n", 0o644);
    let h = Hooks::new(config(noexec));
    h.submit(ev(HookAction::Add, compat(MAC_A)));
    h.submit(ev(HookAction::Del, compat(MAC_A)));
    h.drain(DEADLINE).await;
    let st = h.stats();
    assert_eq!((st.runs, st.failures, st.timeouts), (2, 2, 0));

    let h = Hooks::new(config(d.path("missing")));
    h.submit(ev(HookAction::Add, compat(MAC_A)));
    h.drain(DEADLINE).await;
    assert_eq!(h.stats().failures, 1);

    let h = Hooks::new(config(d.script("echo oops >&2\nexit 3")));
    h.submit(ev(HookAction::Add, compat(MAC_A)));
    h.submit(ev(HookAction::Add, isolated(MAC_B, 9)));
    h.drain(DEADLINE).await;
    let st = h.stats();
    assert_eq!((st.runs, st.failures, st.timeouts), (2, 2, 0));

    assert!(exec_error(&io::Error::from_raw_os_error(libc::EACCES)).contains("not executable"));
    assert!(exec_error(&io::Error::from_raw_os_error(libc::ENOEXEC)).contains("#!"));
}

/// The queue is full (cap 3, one slot) while eight MACs go through three
/// add/del rounds, then four take a last lease. Whatever was merged, the
/// hook sees for each MAC a valid story: a `del` only for the lease it saw
/// added last, and at the end exactly the leases that exist. Before merging,
/// the `del`s past the cap were dropped and the hook was left believing
/// leases that had ended.
#[tokio::test(flavor = "current_thread")]
async fn full_queue_never_loses_a_del() {
    let d = Dir::new("queue");
    let mut cfg = config(d.script("echo \"$1 $2 $3\" >> OUT"));
    cfg.max_concurrent = 1;
    let h = Hooks::with_queue_cap(cfg, 3);
    let macs: Vec<String> = (0..8).map(|i| format!("02:00:00:00:02:{i:02x}")).collect();
    for round in 0..3u8 {
        for (i, m) in macs.iter().enumerate() {
            h.submit(ev(HookAction::Add, isolated(m, 10 * round + i as u8)));
        }
        for (i, m) in macs.iter().enumerate() {
            h.submit(ev(HookAction::Del, isolated(m, 10 * round + i as u8)));
        }
    }
    for (i, m) in macs.iter().enumerate().take(4) {
        h.submit(ev(HookAction::Add, isolated(m, 100 + i as u8)));
    }
    h.drain(DEADLINE).await;
    let out = d.out();
    let mut seen: BTreeMap<String, String> = BTreeMap::new();
    for l in out.lines() {
        let f: Vec<&str> = l.split(' ').collect();
        let (action, mac, ip) = (f[0], f[1].to_string(), f[2].to_string());
        match action {
            "add" => {
                seen.insert(mac, ip);
            }
            "del" => assert_eq!(
                seen.remove(&mac).as_deref(),
                Some(ip.as_str()),
                "del of {mac} {ip} for a lease the hook did not see:\n{out}"
            ),
            other => panic!("{other}:\n{out}"),
        }
    }
    let expect: BTreeMap<String, String> = macs
        .iter()
        .take(4)
        .enumerate()
        .map(|(i, m)| (m.clone(), format!("198.18.0.{}", 100 + i)))
        .collect();
    assert_eq!(
        seen, expect,
        "the hook's view differs from the leases:\n{out}"
    );
    let st = h.stats();
    assert_eq!((st.dropped, st.pending, st.running), (0, 0, 0));
    assert!(st.coalesced > 0, "{st:?}");
}

/// Beyond the cap, an event of a MAC with nothing waiting is still queued:
/// memory grows with MACs, not with events.
#[tokio::test(flavor = "current_thread")]
async fn full_queue_queues_one_event_per_new_mac() {
    let d = Dir::new("queuenew");
    let mut cfg = config(d.script("echo \"$2\" >> OUT"));
    cfg.max_concurrent = 1;
    let h = Hooks::with_queue_cap(cfg, 3);
    for i in 0..6u8 {
        let mac = format!("02:00:00:00:02:{i:02x}");
        h.submit(ev(HookAction::Add, isolated(&mac, 100 + i)));
        // A second add of the same lease (a renewal) replaces the first.
        h.submit(ev(HookAction::Add, isolated(&mac, 100 + i)));
    }
    // MAC 0 runs, its renewal and both events of MAC 1 fill the queue;
    // MACs 2..5 get one waiting event each (renewal merged).
    let st = h.stats();
    assert_eq!(
        (st.running, st.pending, st.coalesced, st.dropped),
        (1, 3 + 4, 4, 0),
        "{st:?}"
    );
    h.drain(DEADLINE).await;
    let out = d.out();
    for i in 0..6u8 {
        let mac = format!("02:00:00:00:02:{i:02x}");
        assert!(out.lines().any(|l| l == mac), "{mac} never ran:\n{out}");
    }
}

/// State of `pid` from /proc (`None` if gone).
fn proc_state(pid: &str) -> Option<char> {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").and_then(|(_, r)| r.chars().next()))
}

/// Waits (bounded) for `pid` to be gone or a zombie.
async fn wait_dead(pid: &str, within: Duration) -> bool {
    let t = Instant::now();
    loop {
        if matches!(proc_state(pid), None | Some('Z' | 'X')) {
            return true;
        }
        if t.elapsed() > within {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A hook that exits 0 but leaves `sleep 1000 &` behind: the child dies
/// with the hook's process group once the hook has exited.
#[tokio::test(flavor = "current_thread")]
async fn background_child_is_killed_when_the_hook_exits() {
    let d = Dir::new("orphan");
    let hook = d.script("sleep 1000 &\necho $! > DIR/pid\nexit 0");
    let h = Hooks::new(config(hook));
    h.submit(ev(HookAction::Add, compat(MAC_A)));
    h.drain(DEADLINE).await;
    let st = h.stats();
    assert_eq!((st.runs, st.failures, st.timeouts), (1, 0, 0));
    let pid = std::fs::read_to_string(d.path("pid")).unwrap();
    let pid = pid.trim();
    if !wait_dead(pid, Duration::from_secs(3)).await {
        // Clean up the process this test started before failing.
        if let Ok(p) = pid.parse::<libc::pid_t>() {
            // SAFETY: kill(2) of the `sleep` this test's hook started.
            unsafe { libc::kill(p, libc::SIGKILL) };
        }
        panic!("the hook's background child {pid} outlived the hook");
    }
}

#[test]
fn hostname_safe_in_the_environment() {
    let env_of = |h: &str| -> BTreeMap<&'static str, String> {
        let mut b = compat(MAC_A);
        b.hostname = Some(h.into());
        event_env(&ev(HookAction::Add, b)).into_iter().collect()
    };
    // Right-to-left override, zero-width space, escape sequence.
    let raw = "prin\u{202E}ter\u{200B} \x1b[2J";
    let m = env_of(raw);
    assert_eq!(m["ISODHCP_HOSTNAME"], raw, "the raw name stays as it was");
    assert_eq!(m["ISODHCP_HOSTNAME_SAFE"], "printer-2J");
    let m = env_of("\u{202E}\u{200B}");
    assert!(m.contains_key("ISODHCP_HOSTNAME"));
    assert!(!m.contains_key("ISODHCP_HOSTNAME_SAFE"), "{m:?}");
    assert!(EVENT_VARS.contains(&"ISODHCP_HOSTNAME_SAFE"));
}

#[test]
fn submit_outside_a_runtime_drops() {
    let h = Hooks::new(config(PathBuf::from("/nonexistent")));
    h.submit(ev(HookAction::Add, compat(MAC_A)));
    assert_eq!(h.stats().dropped, 1);
    assert_eq!(h.stats().pending, 0);
}

#[tokio::test(flavor = "current_thread")]
async fn output_is_split_into_lines() {
    let mut input = b"one\r\ntwo\n\nthree".to_vec();
    input.extend(std::iter::repeat_n(b'x', MAX_LINE + 10));
    input.extend(b"\nlast\n");
    let mut got: Vec<Vec<u8>> = Vec::new();
    for_each_line(&input[..], |l| got.push(l.to_vec())).await;
    let mut long = b"three".to_vec();
    long.extend(std::iter::repeat_n(b'x', MAX_LINE - 5));
    let expect: Vec<Vec<u8>> = vec![
        b"one".to_vec(),
        b"two".to_vec(),
        b"".to_vec(),
        long,
        vec![b'x'; 15],
        b"last".to_vec(),
    ];
    assert_eq!(got, expect);
}
