//! design.md §Packaging: the Debian package built by `cargo xtask deb`
//! installs, serves, upgrades and goes away as README.Debian promises.
//!
//! One test walks the package's life on this machine (it is a root-only
//! lab; a guard purges the package and removes the user it created, also
//! when the test fails):
//! 1. `dpkg -i`: files and modes, the system user, `/var/lib/isodhcp` 0700,
//!    no lintian error.
//! 2. Start as the unit would: the installed `isodhcp@.service` is parsed,
//!    `%i` and `/etc/isodhcp/srv0.conf` expanded, `ExecStartPre=+` run as
//!    root, `ExecStart` run as the service user with exactly the unit's
//!    capabilities (setpriv), in the lab's server namespace. (This machine
//!    has no systemd as PID 1; where it has, `systemctl start isodhcp@IF`
//!    runs the same lines.) dhclient gets a lease; the operator's
//!    `isodhcp -i srv0 --status` and `--verify` work with their defaults.
//! 3. Upgrade to a higher version while the daemon runs, then the restart
//!    postinst asks systemd for: the lease is kept, and srv0 never is
//!    without an XDP program (sampled throughout) while the new program is
//!    swapped in behind the pinned link.
//! 4. `dpkg -r`: daemon stopped, binary gone, XDP detached, leases and
//!    configuration kept. 5. `dpkg -P`: leases and configuration gone.
//!
//! The `.deb` is `$ISODHCP_DEB` (set by `cargo xtask test`), else the one
//! `cargo xtask deb` leaves in `target/debian/`.
//!
//! Run as root: `cargo test -p isodhcp-tests --release --test package_deb -- --test-threads=1`

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use isodhcp_tests::daemon::Daemon;
use isodhcp_tests::netns::Netns;
use isodhcp_tests::util::{self, CmdOutput, find_tool, tail};
use isodhcp_tests::{Lab, needs_root, preflight};

const PKG: &str = "isodhcp";
const UNIT: &str = "/lib/systemd/system/isodhcp@.service";
const STATE: &str = "/var/lib/isodhcp";
const CONF_DIR: &str = "/etc/isodhcp";
const PIN_ROOT: &str = "/sys/fs/bpf/isodhcp";
const IFACE: &str = "srv0";

/// The instance's options, as an operator writes them.
const CONF: &str = "ISODHCP_OPTS=\"--server-ip 198.18.0.1 --pool 198.18.0.0/24 \
                    --dns 198.18.0.53 --lease-time 600 --xdp native -v\"\n";

fn sh(cmd: &mut Command) -> CmdOutput {
    util::run(cmd, Duration::from_secs(120)).expect("running a command")
}

fn sh_ok(cmd: &mut Command) -> String {
    let o = sh(cmd);
    assert!(o.ok(), "{cmd:?} failed:\n{}\n{}", o.stdout, o.stderr);
    o.stdout
}

fn dpkg(args: &[&str]) -> String {
    sh_ok(Command::new("dpkg").args(args))
}

/// `Version` of the installed package, `None` when not installed.
fn installed_version() -> Option<String> {
    let o = sh(Command::new("dpkg-query").args(["-W", "-f=${Status}|${Version}", PKG]));
    let (status, version) = o.stdout.split_once('|')?;
    (o.ok() && status.ends_with(" installed")).then(|| version.to_string())
}

fn deb_path() -> PathBuf {
    if let Some(p) = std::env::var_os("ISODHCP_DEB") {
        return PathBuf::from(p);
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debian");
    let mut debs: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|r| r.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    debs.retain(|p| p.extension().is_some_and(|e| e == "deb"));
    debs.sort();
    debs.pop().unwrap_or_else(|| {
        panic!(
            "no .deb in {}: build it with `cargo xtask deb` or set ISODHCP_DEB",
            dir.display()
        )
    })
}

/// Purges the package and removes the service user it created, whatever
/// the test's outcome.
struct Installed {
    user_existed: bool,
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = Command::new("dpkg").args(["--purge", PKG]).output();
        if !self.user_existed {
            let _ = Command::new("userdel").arg(PKG).output();
            let _ = Command::new("groupdel").arg(PKG).output();
        }
        let _ = std::fs::remove_dir_all(PIN_ROOT);
    }
}

fn user_exists() -> bool {
    sh(Command::new("getent").args(["passwd", PKG])).ok()
}

#[test]
fn install_start_upgrade_remove_purge() {
    needs_root!();
    preflight().expect("preflight");
    if let Some(v) = installed_version() {
        // Never replace an operator's installation.
        eprintln!(
            "skipped: package {PKG} {v} is installed on this machine (dpkg -P {PKG} to test)"
        );
        return;
    }
    let deb = deb_path();
    let lab = Lab::new("pkg", 1).expect("lab");
    let guard = Installed {
        user_existed: user_exists(),
    };
    install(&deb);
    let mut d = start_as_unit(&lab, "unit-0.log");
    let ip = serves(&lab, &d);

    let new_deb = bumped(&lab, &deb, "+up1");
    let old_prog = xdp_prog(&lab.server).expect("XDP program on srv0");
    let sampler = XdpSampler::start(&lab.server);
    dpkg(&["-i", new_deb.to_str().unwrap()]);
    assert!(
        installed_version().is_some_and(|v| v.ends_with("+up1")),
        "upgrade not installed"
    );
    // What `systemctl try-restart 'isodhcp@*.service'` in postinst does.
    stop(&mut d);
    d = start_as_unit(&lab, "unit-1.log");
    let seen = sampler.stop();
    assert!(
        !seen.contains(&None),
        "srv0 was without an XDP program during the upgrade (samples {seen:?})"
    );
    assert!(
        d.log_text()
            .contains("replaced the program behind the pinned XDP link"),
        "the new daemon did not swap its program behind the pinned link:\n{}",
        d.log_text()
    );
    let new_prog = xdp_prog(&lab.server).expect("XDP program on srv0 after the upgrade");
    assert_ne!(
        new_prog, old_prog,
        "the upgraded daemon loaded its own program"
    );
    assert_eq!(
        serves(&lab, &d),
        ip,
        "the client's lease survived the upgrade"
    );

    stop(&mut d);
    remove(&lab);
    purge();
    drop(guard);
}

/// `dpkg -i` of a fresh package: files, user, state folder, lintian.
fn install(deb: &Path) {
    dpkg(&["-i", deb.to_str().unwrap()]);
    for (path, mode) in [
        ("/usr/sbin/isodhcp", 0o755),
        (UNIT, 0o644),
        ("/usr/share/man/man8/isodhcp.8.gz", 0o644),
        ("/usr/share/doc/isodhcp/README.Debian", 0o644),
        ("/usr/share/doc/isodhcp/copyright", 0o644),
        ("/usr/share/doc/isodhcp/examples/iface.conf", 0o644),
    ] {
        let m = std::fs::metadata(path).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert_eq!(m.mode() & 0o7777, mode, "mode of {path}");
        assert_eq!(m.uid(), 0, "owner of {path}");
    }
    let pw = sh_ok(Command::new("getent").args(["passwd", PKG]));
    let fields: Vec<&str> = pw.trim().split(':').collect();
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "system user expected, uid {uid}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{pw}");
    let st = std::fs::metadata(STATE).expect("state folder");
    assert_eq!(st.mode() & 0o7777, 0o700, "{STATE} mode");
    assert_eq!(st.uid(), uid, "{STATE} owner");
    assert!(Path::new(CONF_DIR).is_dir(), "{CONF_DIR} missing");
    let version = sh_ok(Command::new("/usr/sbin/isodhcp").arg("--version"));
    assert!(version.contains(env!("CARGO_PKG_VERSION")), "{version}");
    match find_tool("lintian") {
        Some(l) => {
            let o = sh(Command::new(l).arg(deb));
            let errors: Vec<&str> = o.stdout.lines().filter(|l| l.starts_with("E:")).collect();
            assert!(errors.is_empty(), "lintian errors:\n{}", o.stdout);
            eprintln!("lintian: {} warning(s)", o.stdout.lines().count());
        }
        None => eprintln!("lintian not installed: not checked (cargo xtask setup installs it)"),
    }
}

/// The installed unit's settings: `(key, value)` in file order.
fn unit_settings() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(UNIT).expect("installed unit");
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.replace("%i", IFACE)))
        .collect()
}

fn setting<'a>(s: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    s.iter()
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// `KEY="value"` lines of an EnvironmentFile (systemd's subset we use).
fn env_file(path: &str) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// A command line of the unit with `$VAR` split at whitespace and `${VAR}`
/// kept as one word, as systemd expands them.
fn expand(line: &str, env: &[(String, String)]) -> Vec<String> {
    let lookup = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map_or("", |(_, v)| v.as_str())
    };
    let mut out = Vec::new();
    for w in line.split_whitespace() {
        if let Some(k) = w.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
            out.push(lookup(k).to_string());
        } else if let Some(k) = w.strip_prefix('$') {
            out.extend(lookup(k).split_whitespace().map(String::from));
        } else {
            out.push(w.to_string());
        }
    }
    out
}

/// Runs the installed unit's start-up for srv0 in the server namespace.
fn start_as_unit(lab: &Lab, log: &str) -> Daemon {
    let s = unit_settings();
    std::fs::write(format!("{CONF_DIR}/{IFACE}.conf"), CONF).expect("writing the instance conf");
    let mut env = Vec::new();
    for f in setting(&s, "EnvironmentFile") {
        env.extend(env_file(f.trim_start_matches('-')));
    }
    for pre in setting(&s, "ExecStartPre") {
        let argv = expand(pre.trim_start_matches('+'), &env);
        sh_ok(Command::new(&argv[0]).args(&argv[1..]));
    }
    let start = setting(&s, "ExecStart");
    assert_eq!(start.len(), 1, "one ExecStart: {start:?}");
    let caps = setting(&s, "AmbientCapabilities")
        .concat()
        .split_whitespace()
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_lowercase()))
        .collect::<Vec<_>>()
        .join(",");
    let user = setting(&s, "User").concat();
    let group = setting(&s, "Group").concat();
    assert!(
        !caps.is_empty() && user == PKG,
        "unit runs as {user} with {caps}"
    );
    let mut args = vec![
        format!("--reuid={user}"),
        format!("--regid={group}"),
        "--init-groups".into(),
        format!("--inh-caps={caps}"),
        format!("--ambient-caps={caps}"),
        format!("--bounding-set=-all,{caps}"),
    ];
    if setting(&s, "NoNewPrivileges") == ["yes"] {
        args.push("--no-new-privs".into());
    }
    args.push("--".into());
    args.extend(expand(start[0], &env));
    let setpriv = find_tool("setpriv").expect("setpriv (util-linux)");
    // StateDirectory=isodhcp: systemd's working folder and $STATE_DIRECTORY.
    let mut d = Daemon::start(
        &lab.server,
        &setpriv,
        &args,
        Path::new(STATE),
        &lab.dir().join(log),
    )
    .expect("starting the unit's ExecStart");
    d.wait_ready()
        .unwrap_or_else(|e| panic!("the unit's ExecStart did not start: {e:#}"));
    d
}

/// The operator's CLI with its defaults (socket in /var/lib/isodhcp);
/// must exit 0. Returns stdout.
fn cli(args: &[&str]) -> String {
    sh_ok(
        Command::new("/usr/sbin/isodhcp")
            .args(["-i", IFACE])
            .args(args),
    )
}

/// dhclient gets a /32 lease, the host route exists, `--status` and
/// `--verify` answer through the default socket. Returns the address.
fn serves(lab: &Lab, d: &Daemon) -> Ipv4Addr {
    let (lease, _) = lab.dhclient_isolated(0, d);
    let status = cli(&["--status"]);
    assert!(status.contains("native"), "XDP mode in --status:\n{status}");
    cli(&["--verify"]);
    let leases =
        std::fs::read_to_string(format!("{STATE}/dhcp_leases_{IFACE}.json")).unwrap_or_default();
    let journal = std::fs::read_to_string(format!("{STATE}/dhcp_leases_{IFACE}.json.journal"))
        .unwrap_or_default();
    assert!(
        leases.contains(&lease.ip().to_string()) || journal.contains(&lease.ip().to_string()),
        "lease {} not in {STATE}",
        lease.ip()
    );
    lease.ip()
}

/// SIGTERM (what `systemctl stop` sends) and a clean exit.
fn stop(d: &mut Daemon) {
    d.signal(libc::SIGTERM).expect("SIGTERM");
    let st = d.wait_exit(Duration::from_secs(10)).expect("daemon exit");
    assert!(st.success(), "exit status {st}\n{}", tail(&d.log, 20));
}

/// A copy of `deb` whose version is higher by `suffix`.
fn bumped(lab: &Lab, deb: &Path, suffix: &str) -> PathBuf {
    let tree = lab.dir().join("deb-tree");
    sh_ok(Command::new("dpkg-deb").arg("-R").arg(deb).arg(&tree));
    let control = tree.join("DEBIAN/control");
    let text = std::fs::read_to_string(&control).unwrap();
    let text = text
        .lines()
        .map(|l| match l.strip_prefix("Version: ") {
            Some(v) => format!("Version: {v}{suffix}\n"),
            None => format!("{l}\n"),
        })
        .collect::<String>();
    std::fs::write(&control, text).unwrap();
    std::fs::set_permissions(tree.join("DEBIAN"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = lab.dir().join("upgrade.deb");
    sh_ok(
        Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&tree)
            .arg(&out),
    );
    out
}

/// `dpkg -r`: binary gone, XDP detached, leases and conf kept.
fn remove(lab: &Lab) {
    dpkg(&["-r", PKG]);
    assert!(
        !Path::new("/usr/sbin/isodhcp").exists(),
        "binary left after remove"
    );
    assert!(
        Path::new(&format!("{STATE}/dhcp_leases_{IFACE}.json")).exists(),
        "remove must keep the leases"
    );
    assert!(
        Path::new(&format!("{CONF_DIR}/{IFACE}.conf")).exists(),
        "remove must keep the configuration"
    );
    assert!(!Path::new(PIN_ROOT).exists(), "pins left after remove");
    assert_eq!(
        xdp_prog(&lab.server),
        None,
        "XDP program left on srv0 after remove"
    );
}

/// `dpkg -P`: leases and configuration gone, the package unknown.
fn purge() {
    dpkg(&["-P", PKG]);
    assert_eq!(installed_version(), None);
    assert!(!Path::new(STATE).exists(), "{STATE} left after purge");
    assert!(!Path::new(CONF_DIR).exists(), "{CONF_DIR} left after purge");
}

/// Id of the XDP program on srv0 (`ip -j link`), `None` when there is none.
fn xdp_prog(ns: &Netns) -> Option<u64> {
    xdp_prog_in(ns.name()).expect("reading srv0 with ip -j link")
}

/// `Some(id or None)` from `ip -j link`; `None` if `ip` could not tell.
fn xdp_prog_in(ns: &str) -> Option<Option<u64>> {
    let out = util::ip(&["-j", "-n", ns, "link", "show", "dev", IFACE]).ok()?;
    let v: serde_json::Value = serde_json::from_str(&out).ok()?;
    let link = v.get(0)?;
    let xdp = &link["xdp"];
    Some(
        xdp["prog"]["id"]
            .as_u64()
            .or_else(|| xdp["attached"][0]["prog"]["id"].as_u64()),
    )
}

/// Samples srv0's XDP program id from a thread until stopped (bounded to 60 s).
struct XdpSampler {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<BTreeSet<Option<u64>>>,
}

impl XdpSampler {
    fn start(ns: &Netns) -> XdpSampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let ns_name = ns.name().to_string();
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(60);
            let mut seen = BTreeSet::new();
            while !flag.load(Ordering::Relaxed) && Instant::now() < end {
                if let Some(id) = xdp_prog_in(&ns_name) {
                    seen.insert(id);
                }
            }
            seen
        });
        XdpSampler { stop, thread }
    }

    fn stop(self) -> BTreeSet<Option<u64>> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("sampler thread")
    }
}
