//! Small helpers: bounded command execution, polling with deadlines, unique
//! names, temp folders, preconditions.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

/// Default deadline for short administrative commands (`ip`, `bpftool`, ...).
pub const CMD_TIMEOUT: Duration = Duration::from_secs(10);

/// Poll interval used by [`wait_until`].
pub const POLL: Duration = Duration::from_millis(100);

/// A short suffix unique to this process and call: `<pid base36><counter base36>`.
pub fn unique_suffix() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}{}",
        base36(u64::from(std::process::id())),
        base36(u64::from(n))
    )
}

pub(crate) fn base36(mut v: u64) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    if v == 0 {
        return "0".into();
    }
    let mut out = Vec::new();
    while v > 0 {
        out.push(DIGITS[(v % 36) as usize]);
        v /= 36;
    }
    out.reverse();
    String::from_utf8(out).unwrap()
}

/// Poll `f` every [`POLL`] until it returns `Ok(Some(_))` or `timeout` passes.
/// `Err` from `f` is remembered and reported on timeout (it does not abort the
/// wait, conditions are often briefly unreadable).
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_err: Option<anyhow::Error> = None;
    // Bounded in time by the deadline and in count by timeout / POLL (+1).
    let max_iter = (timeout.as_millis() / POLL.as_millis()) as u64 + 2;
    for _ in 0..max_iter {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last_err = Some(e),
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(POLL);
    }
    match last_err {
        Some(e) => Err(e.context(format!("timed out after {timeout:?} waiting for {what}"))),
        None => Err(anyhow!("timed out after {timeout:?} waiting for {what}")),
    }
}

/// Output of a finished command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
}

pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Wait for a child with a deadline; kill (SIGKILL) and reap it on timeout.
/// Returns `None` on timeout.
pub fn wait_child(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    let max_iter = timeout.as_millis() as u64 / 20 + 2;
    for _ in 0..max_iter {
        if let Some(st) = child.try_wait()? {
            return Ok(Some(st));
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    Ok(None)
}

fn spawn_reader(r: Option<impl Read + Send + 'static>) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    if let Some(mut r) = r {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
        });
    }
    rx
}

/// Run a command that does not leave background processes behind, capturing
/// stdout/stderr through pipes, killing it after `timeout`.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<CmdOutput> {
    let desc = describe(cmd);
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning `{desc}`"))?;
    let out_rx = spawn_reader(child.stdout.take());
    let err_rx = spawn_reader(child.stderr.take());
    let status = wait_child(&mut child, timeout)?
        .ok_or_else(|| anyhow!("`{desc}` did not finish within {timeout:?} (killed)"))?;
    // A grandchild could keep a pipe open: do not wait for EOF forever.
    let stdout = out_rx
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_default();
    let stderr = err_rx
        .recv_timeout(Duration::from_secs(2))
        .unwrap_or_default();
    Ok(CmdOutput {
        status,
        stdout,
        stderr,
    })
}

/// Like [`run`] but output goes to `log` (appended); for commands that fork
/// daemons which keep stdout/stderr open (dhclient). Returns the exit status,
/// or an error on timeout.
pub fn run_logged(cmd: &mut Command, timeout: Duration, log: &Path) -> Result<ExitStatus> {
    let desc = describe(cmd);
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("opening {}", log.display()))?;
    use std::io::Write;
    let mut f2 = f.try_clone()?;
    let _ = writeln!(f2, "\n+ {desc}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .spawn()
        .with_context(|| format!("spawning `{desc}`"))?;
    match wait_child(&mut child, timeout)? {
        Some(st) => Ok(st),
        None => bail!(
            "`{desc}` did not finish within {timeout:?} (killed); log {}:\n{}",
            log.display(),
            tail(log, 40)
        ),
    }
}

/// Run and require exit status 0; returns stdout.
pub fn run_ok(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let desc = describe(cmd);
    let out = run(cmd, timeout)?;
    if !out.ok() {
        bail!(
            "`{desc}` failed ({}): {}{}",
            out.status,
            out.stderr.trim(),
            out.stdout.trim()
        );
    }
    Ok(out.stdout)
}

/// `ip ARGS...` in the root mount namespace, must succeed. (Only ever used with
/// `-n NS` or `netns` sub-commands: the root network namespace is never touched.)
pub fn ip(args: &[&str]) -> Result<String> {
    run_ok(tool_cmd("ip").args(args), CMD_TIMEOUT)
}

/// Last `n` lines of a text file (for error messages).
pub fn tail(path: &Path, n: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{}: {e}>", path.display()));
    let lines: Vec<&str> = s.lines().collect();
    let start = lines.len().saturating_sub(n);
    lines[start..].join("\n")
}

/// Find an executable on PATH or in the sbin folders (tests may run with a
/// PATH lacking /sbin).
pub fn find_tool(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    for d in [
        "/usr/local/sbin",
        "/usr/local/bin",
        "/usr/sbin",
        "/usr/bin",
        "/sbin",
        "/bin",
    ] {
        dirs.push(d.into());
    }
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// `Command` for a tool, by absolute path when found (PATH may lack /sbin).
pub fn tool_cmd(name: &str) -> Command {
    Command::new(find_tool(name).unwrap_or_else(|| PathBuf::from(name)))
}

/// Absolute path of a program if found, else the name unchanged.
pub fn tool_path(name: &str) -> String {
    if name.contains('/') {
        return name.to_string();
    }
    find_tool(name)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| name.to_string())
}

/// Path of a required tool, or an error naming the Debian package.
pub fn require_tool(name: &str) -> Result<PathBuf> {
    find_tool(name).ok_or_else(|| {
        let pkg = match name {
            "ip" | "bridge" | "ss" => "iproute2",
            "dhclient" | "dhclient-script" => "isc-dhcp-client",
            "dhcpcd" => "dhcpcd5",
            "udhcpc" => "udhcpc",
            "busybox" => "busybox",
            "dnsmasq" => "dnsmasq-base",
            "bpftool" => "bpftool",
            "nsenter" | "unshare" | "mountpoint" => "util-linux",
            _ => "?",
        };
        anyhow!("required tool `{name}` not found (Debian package `{pkg}`)")
    })
}

/// Whether this process runs as root (effective uid 0), which every
/// namespace suite and the XDP verdict suites need.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Says once per test binary, on the real stderr (the harness does not
/// capture it), that its suites are skipped and why.
pub fn report_skip(needs: &str) {
    use std::io::Write;
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = writeln!(std::io::stderr(), "skipped: needs root ({needs})");
    });
}

/// First line of every test that needs root: as any other user the test
/// returns at once (so it passes) after [`report_skip`] said why. `cargo
/// test` as a normal user thus runs the unit tests and skips the namespace
/// suites instead of failing them; as root nothing changes, and a missing
/// tool still fails in [`preflight`].
///
/// `needs_root!()` names network namespaces; `needs_root!("BPF")` another need.
#[macro_export]
macro_rules! needs_root {
    () => {
        $crate::needs_root!("network namespaces")
    };
    ($needs:expr) => {
        if !$crate::util::is_root() {
            $crate::util::report_skip($needs);
            return;
        }
    };
}

/// Preconditions for every lab test: root, `ip`, `nsenter`, `unshare`.
/// Returns a clear error; tests `.expect()` it so they FAIL when unmet.
pub fn preflight() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        bail!(
            "isodhcp lab tests need root (network namespaces, veth, routes); euid is {euid}. \
             Run them through `cargo xtask test` as root."
        );
    }
    for t in ["ip", "nsenter", "unshare"] {
        require_tool(t)?;
    }
    let out = run(tool_cmd("ip").arg("-V"), CMD_TIMEOUT).context("running `ip -V`")?;
    if !out.ok() {
        bail!("`ip -V` failed: {}", out.stderr);
    }
    Ok(())
}

/// A temporary folder removed (recursively) on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    pub fn new(tag: &str) -> Result<TempDir> {
        let path = std::env::temp_dir().join(format!("isodhcp-test-{tag}-{}", unique_suffix()));
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        // The daemon refuses a lease folder others may write, whatever the
        // umask; others may still enter it (an unprivileged daemon's state
        // folder lives inside).
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod 0755 {}", path.display()))?;
        Ok(TempDir { path })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    /// Keep the folder (for debugging a failed run).
    pub fn keep(mut self) -> PathBuf {
        std::mem::take(&mut self.path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if self.path.as_os_str().is_empty() {
            return;
        }
        if std::env::var_os("ISODHCP_TEST_KEEP").is_some() {
            eprintln!("isodhcp-tests: keeping {}", self.path.display());
            return;
        }
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Process-wide flag set by SIGINT/SIGTERM once [`install_termination_flag`]
/// ran (used by the demo so Ctrl-C leads to an orderly teardown).
static TERMINATE: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_sig: libc::c_int) {
    TERMINATE.store(true, Ordering::SeqCst);
}

/// Install SIGINT/SIGTERM handlers that only set a flag.
pub fn install_termination_flag() {
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
    }
}

/// Has SIGINT/SIGTERM been received since [`install_termination_flag`]?
pub fn termination_requested() -> bool {
    TERMINATE.load(Ordering::SeqCst)
}
