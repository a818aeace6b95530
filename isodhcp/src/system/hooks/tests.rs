use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use super::*;
use crate::engine::cidr::Cidr;

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
        let stat = format!("/proc/{}/stat", pid.trim());
        let t1 = Instant::now();
        loop {
            let state = std::fs::read_to_string(&stat)
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, r)| r.chars().next()))
                .flatten();
            if matches!(state, None | Some('Z') | Some('X')) {
                break;
            }
            assert!(t1.elapsed() < Duration::from_secs(3), "{stat}: {state:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
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

#[tokio::test(flavor = "current_thread")]
async fn full_queue_drops_and_counts() {
    let d = Dir::new("queue");
    let mut cfg = config(d.script("echo \"$2\" >> OUT"));
    cfg.max_concurrent = 1;
    let h = Hooks::with_queue_cap(cfg, 3);
    for i in 0..6u8 {
        let mac = format!("02:00:00:00:02:{i:02x}");
        h.submit(ev(HookAction::Add, isolated(&mac, 100 + i)));
    }
    // One started at once, three wait, two were dropped.
    let st = h.stats();
    assert_eq!((st.running, st.pending, st.dropped), (1, 3, 2));
    h.drain(DEADLINE).await;
    assert_eq!(d.out().lines().count(), 4);
    assert_eq!(h.stats().runs, 4);
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
