//! The `--hook-file` runner (SPEC §8).
//!
//! Guarantees:
//! - The hook is executed directly, without a shell, as
//!   `PATH add|del MAC IP [HOSTNAME]` (the hostname only when it is known and
//!   not empty). Its environment is the daemon's own, plus the daemon-wide
//!   variables of [`HookConfig::env`] (`ISODHCP_PID`, `ISODHCP_INTERFACE`,
//!   `ISODHCP_SERVER_IP`, `ISODHCP_POOL_CIDR`, `ISODHCP_DNS`,
//!   `ISODHCP_LEASE_FILE`, `ISODHCP_ISOLATION`), plus the per-event
//!   `ISODHCP_TOTAL_LEASES`, `ISODHCP_FREE_IPS`, `ISODHCP_MAC`, `ISODHCP_IP`,
//!   `ISODHCP_HOSTNAME` (if known) and, for `add` only, `ISODHCP_MODE`
//!   (`standard`/`compat`/`playground`), `ISODHCP_MASQ` and `ISODHCP_COMPAT`
//!   (`1`/`0`), `ISODHCP_EXPIRY` (Unix seconds, `inf` for statics),
//!   `ISODHCP_GATEWAY`, `ISODHCP_NETMASK` and `ISODHCP_SUBNET` (compat and
//!   playground only). Per-event variables an event does not define are
//!   removed from the inherited environment, so a stale value can never leak
//!   into a hook. stdin is `/dev/null`.
//! - [`Hooks::submit`] never blocks and never awaits: it queues the event and
//!   returns, so hooks never delay DHCP.
//! - Events for one MAC run strictly in submission order, one at a time (a
//!   `del` has finished before the next `add` for that MAC starts); events for
//!   different MACs run concurrently, at most [`HookConfig::max_concurrent`]
//!   at once (MACs take turns for free slots, first come first served).
//! - Each hook runs in its own process group; after [`HookConfig::timeout`]
//!   the whole group is killed (SIGKILL), so a hook's own children cannot
//!   outlive the timeout either. The same happens if the runtime drops a
//!   running hook (shutdown after [`Hooks::drain`] gave up).
//! - Every outcome is logged: exit 0 at debug, a non-zero exit or a signal
//!   with its status at warn, an exec failure (missing file, not executable,
//!   no `#!` line) with a clear reason at warn (rate-limited: once per minute
//!   plus a count of the suppressed ones). The hook's stdout and stderr go to
//!   the log at debug level, line by line (lossy UTF-8, lines capped at
//!   [`MAX_LINE`] bytes).
//! - Bounded memory: at most [`MAX_PENDING`] events wait for a slot; beyond
//!   that an event is dropped, counted in [`HookStats::dropped`], with a
//!   rate-limited warning.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::engine::{Binding, Mode};
use crate::wire::Mac;

/// Events waiting for a slot, beyond which new events are dropped.
pub const MAX_PENDING: usize = 10_000;
/// Longest line of hook output logged as one line.
pub const MAX_LINE: usize = 4096;
/// Default of [`HookConfig::max_concurrent`] (SPEC §8).
pub const DEFAULT_MAX_CONCURRENT: usize = 8;
/// Default of [`HookConfig::timeout`] (SPEC §8).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Minimum interval between two rate-limited warnings of one kind.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// After the hook exited, how long its output may still take to drain (a
/// background child of the hook may hold the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

/// Every per-event variable; those an event does not set are removed from the
/// inherited environment.
const EVENT_VARS: &[&str] = &[
    "ISODHCP_TOTAL_LEASES",
    "ISODHCP_FREE_IPS",
    "ISODHCP_MAC",
    "ISODHCP_IP",
    "ISODHCP_HOSTNAME",
    "ISODHCP_MODE",
    "ISODHCP_MASQ",
    "ISODHCP_COMPAT",
    "ISODHCP_EXPIRY",
    "ISODHCP_GATEWAY",
    "ISODHCP_NETMASK",
    "ISODHCP_SUBNET",
];

/// `$1` of the hook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAction {
    /// A lease was committed (ACK, static reservation).
    Add,
    /// A lease ended (release, expiry, decline, profile change).
    Del,
}

impl HookAction {
    pub fn as_str(self) -> &'static str {
        match self {
            HookAction::Add => "add",
            HookAction::Del => "del",
        }
    }
}

/// Hook runner configuration.
#[derive(Debug, Clone)]
pub struct HookConfig {
    pub path: PathBuf,
    /// Daemon-wide variables, computed once by the daemon: `ISODHCP_PID`,
    /// `ISODHCP_INTERFACE`, `ISODHCP_SERVER_IP`, `ISODHCP_POOL_CIDR`,
    /// `ISODHCP_DNS`, `ISODHCP_LEASE_FILE`, `ISODHCP_ISOLATION`.
    pub env: Vec<(String, String)>,
    /// Hooks running at once (SPEC: 8). 0 is treated as 1.
    pub max_concurrent: usize,
    /// A hook still running after this is killed (SPEC: 30 s).
    pub timeout: Duration,
}

impl HookConfig {
    /// SPEC defaults: 8 at once, 30 s timeout.
    pub fn new(path: PathBuf, env: Vec<(String, String)>) -> HookConfig {
        HookConfig {
            path,
            env,
            max_concurrent: DEFAULT_MAX_CONCURRENT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// One lease change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookEvent {
    pub action: HookAction,
    pub binding: Binding,
    /// Active leases after this change (`ISODHCP_TOTAL_LEASES`).
    pub total_leases: usize,
    /// Unassigned addresses after this change (`ISODHCP_FREE_IPS`).
    pub free_ips: usize,
}

/// Counters since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HookStats {
    /// Hook executions attempted (whatever their outcome).
    pub runs: u64,
    /// Executions that could not start, exited non-zero or died of a signal
    /// we did not send.
    pub failures: u64,
    /// Executions killed after the timeout (not counted in `failures`).
    pub timeouts: u64,
    /// Events dropped because the queue was full (or no runtime).
    pub dropped: u64,
    /// Events waiting for a slot now.
    pub pending: u64,
    /// Hooks running now.
    pub running: u64,
}

/// The hook runner. Cheap to clone (all clones share one queue).
#[derive(Clone)]
pub struct Hooks {
    shared: Arc<Shared>,
}

struct Shared {
    cfg: HookConfig,
    max_pending: usize,
    state: Mutex<State>,
    /// Signalled whenever a hook finishes (for [`Hooks::drain`]).
    done: Notify,
}

#[derive(Default)]
struct State {
    /// A MAC is present while it has pending events or a running hook.
    macs: HashMap<Mac, MacQueue>,
    /// MACs with pending events and no running hook, in the order they
    /// became ready.
    ready: VecDeque<Mac>,
    running: usize,
    pending: usize,
    stats: HookStats,
    drop_warn: RateLimit,
    exec_warn: RateLimit,
}

#[derive(Default)]
struct MacQueue {
    events: VecDeque<HookEvent>,
    /// In `ready` or running: no second task may be started for this MAC.
    scheduled: bool,
}

/// "Log now, and how many were suppressed since the last time".
#[derive(Default)]
struct RateLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimit {
    fn hit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(t) if now.duration_since(t) < WARN_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// How one execution ended.
enum Outcome {
    Exited(ExitStatus),
    TimedOut,
    ExecFailed(io::Error),
}

impl Hooks {
    pub fn new(cfg: HookConfig) -> Hooks {
        Hooks::with_queue_cap(cfg, MAX_PENDING)
    }

    fn with_queue_cap(cfg: HookConfig, max_pending: usize) -> Hooks {
        Hooks {
            shared: Arc::new(Shared {
                cfg,
                max_pending,
                state: Mutex::new(State::default()),
                done: Notify::new(),
            }),
        }
    }

    /// Queue `ev`; never blocks, never awaits. Must be called from within a
    /// tokio runtime (the hook runs as a task of the current runtime);
    /// otherwise the event is dropped with a warning.
    pub fn submit(&self, ev: HookEvent) {
        let mac = ev.binding.mac;
        if tokio::runtime::Handle::try_current().is_err() {
            let mut st = self.shared.lock();
            st.stats.dropped += 1;
            drop(st);
            warn!(%mac, action = ev.action.as_str(), "hook event dropped: no tokio runtime");
            return;
        }
        let mut st = self.shared.lock();
        if st.pending >= self.shared.max_pending {
            st.stats.dropped += 1;
            if let Some(suppressed) = st.drop_warn.hit(Instant::now()) {
                let pending = st.pending;
                drop(st);
                warn!(
                    %mac,
                    action = ev.action.as_str(),
                    pending,
                    suppressed,
                    "hook queue full: event dropped (hooks are slower than lease changes)"
                );
            }
            return;
        }
        st.pending += 1;
        let q = st.macs.entry(mac).or_default();
        q.events.push_back(ev);
        if !q.scheduled {
            q.scheduled = true;
            st.ready.push_back(mac);
        }
        let start = self.shared.take_startable(&mut st);
        drop(st);
        self.shared.spawn_all(start);
    }

    /// For shutdown: waits until every queued and running hook has finished,
    /// or `deadline` has passed (then logs what is left; running hooks are
    /// killed when the runtime drops them).
    pub async fn drain(&self, deadline: Duration) {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.shared.done.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let (pending, running) = {
                let st = self.shared.lock();
                (st.pending, st.running)
            };
            if pending == 0 && running == 0 {
                return;
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                warn!(
                    pending,
                    running, "hooks still queued or running at shutdown; they will not complete"
                );
                return;
            }
        }
    }

    pub fn stats(&self) -> HookStats {
        let st = self.shared.lock();
        HookStats {
            pending: st.pending as u64,
            running: st.running as u64,
            ..st.stats
        }
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves consistent counters behind
        // (no multi-step update can unwind midway), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Claim slots for ready MACs: pops their next event and counts it as
    /// running. The caller spawns the returned jobs after unlocking.
    fn take_startable(&self, st: &mut State) -> Vec<(Mac, HookEvent)> {
        let max = self.cfg.max_concurrent.max(1);
        let mut out = Vec::new();
        while st.running < max {
            let Some(mac) = st.ready.pop_front() else {
                break;
            };
            let Some(ev) = st.macs.get_mut(&mac).and_then(|q| q.events.pop_front()) else {
                // Cannot happen (a ready MAC has events); forget it.
                st.macs.remove(&mac);
                continue;
            };
            st.pending -= 1;
            st.running += 1;
            st.stats.runs += 1;
            out.push((mac, ev));
        }
        out
    }

    fn spawn_all(self: &Arc<Self>, jobs: Vec<(Mac, HookEvent)>) {
        for (mac, ev) in jobs {
            let slot = Slot {
                shared: Arc::clone(self),
                mac,
                outcome: None,
            };
            tokio::spawn(run(slot, ev));
        }
    }
}

/// A claimed slot. Dropping it (normally, or when the runtime cancels the
/// task) releases the slot, records the outcome and starts what is next.
struct Slot {
    shared: Arc<Shared>,
    mac: Mac,
    outcome: Option<Outcome>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.shared.lock();
        st.running -= 1;
        match &self.outcome {
            Some(Outcome::Exited(s)) if !s.success() => st.stats.failures += 1,
            Some(Outcome::ExecFailed(_)) => st.stats.failures += 1,
            Some(Outcome::TimedOut) => st.stats.timeouts += 1,
            _ => {}
        }
        let more = match st.macs.get_mut(&self.mac) {
            Some(q) if !q.events.is_empty() => true,
            _ => {
                st.macs.remove(&self.mac);
                false
            }
        };
        if more {
            st.ready.push_back(self.mac);
        }
        // A task dropped before it finished (runtime shutdown, abort) starts
        // nothing: spawning from here could cascade through the whole queue.
        let start = if self.outcome.is_some() && tokio::runtime::Handle::try_current().is_ok() {
            self.shared.take_startable(&mut st)
        } else {
            Vec::new()
        };
        drop(st);
        self.shared.spawn_all(start);
        self.shared.done.notify_waiters();
    }
}

/// `$1 $2 $3 [$4]`.
fn argv(ev: &HookEvent) -> Vec<String> {
    let b = &ev.binding;
    let mut a = vec![
        ev.action.as_str().to_string(),
        b.mac.to_string(),
        b.ip.to_string(),
    ];
    if let Some(h) = hostname(b) {
        a.push(h.to_string());
    }
    a
}

fn hostname(b: &Binding) -> Option<&str> {
    b.hostname.as_deref().filter(|h| !h.is_empty())
}

/// The per-event variables of `ev` (SPEC §8).
fn event_env(ev: &HookEvent) -> Vec<(&'static str, String)> {
    let b = &ev.binding;
    let mut e = vec![
        ("ISODHCP_TOTAL_LEASES", ev.total_leases.to_string()),
        ("ISODHCP_FREE_IPS", ev.free_ips.to_string()),
        ("ISODHCP_MAC", b.mac.to_string()),
        ("ISODHCP_IP", b.ip.to_string()),
    ];
    if let Some(h) = hostname(b) {
        e.push(("ISODHCP_HOSTNAME", h.to_string()));
    }
    if ev.action == HookAction::Add {
        let flag = |v: bool| if v { "1" } else { "0" }.to_string();
        let expiry = match b.expires {
            Some(ms) if ms != crate::engine::NEVER => (ms / 1000).to_string(),
            _ => "inf".to_string(),
        };
        e.push(("ISODHCP_MODE", b.mode.as_str().to_string()));
        e.push(("ISODHCP_MASQ", flag(b.masq)));
        e.push(("ISODHCP_COMPAT", flag(b.mode == Mode::Compat)));
        e.push(("ISODHCP_EXPIRY", expiry));
        e.push(("ISODHCP_GATEWAY", b.gateway.to_string()));
        e.push(("ISODHCP_NETMASK", b.netmask().to_string()));
        if b.mode != Mode::Isolated {
            if let Some(s) = b.subnet {
                e.push(("ISODHCP_SUBNET", s.to_string()));
            }
        }
    }
    e
}

fn command(cfg: &HookConfig, ev: &HookEvent) -> Command {
    let mut cmd = Command::new(&cfg.path);
    cmd.args(argv(ev));
    for v in EVENT_VARS {
        cmd.env_remove(v);
    }
    cmd.envs(cfg.env.iter().map(|(k, v)| (k, v)));
    cmd.envs(event_env(ev));
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Kills the hook's process group unless disarmed (the hook was reaped).
struct GroupKill(Option<libc::pid_t>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) on the process group led by our own child, which
            // has not been reaped yet (we disarm before reaping it), so the id
            // cannot have been reused.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn run(mut slot: Slot, ev: HookEvent) {
    let cfg = &slot.shared.cfg;
    let mac = ev.binding.mac;
    let ip = ev.binding.ip;
    let action = ev.action.as_str();
    let mut cmd = command(cfg, &ev);
    let started = Instant::now();

    // ETXTBSY: the file is open for writing somewhere (being replaced, or
    // inherited by a concurrently forked child); retry briefly.
    let mut attempt = 0;
    let spawned = loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            r => break r,
        }
    };
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let why = exec_error(&e);
            let limited = slot.shared.lock().exec_warn.hit(Instant::now());
            if let Some(suppressed) = limited {
                warn!(
                    hook = %cfg.path.display(),
                    %mac,
                    %ip,
                    action,
                    suppressed,
                    "hook not run: {why}"
                );
            }
            slot.outcome = Some(Outcome::ExecFailed(e));
            return;
        }
    };
    let mut group = GroupKill(child.id().map(|p| p as libc::pid_t));
    let out = child
        .stdout
        .take()
        .map(|r| tokio::spawn(log_lines(r, "stdout", mac, action)));
    let err = child
        .stderr
        .take()
        .map(|r| tokio::spawn(log_lines(r, "stderr", mac, action)));

    let outcome = match tokio::time::timeout(cfg.timeout, child.wait()).await {
        Ok(Ok(st)) => {
            // Reaped: the pid may be reused from now on.
            group.0 = None;
            Outcome::Exited(st)
        }
        Ok(Err(e)) => {
            group.kill();
            let _ = child.wait().await;
            Outcome::ExecFailed(e)
        }
        Err(_) => {
            group.kill();
            let _ = child.wait().await;
            Outcome::TimedOut
        }
    };
    let output = async {
        if let Some(h) = out {
            let _ = h.await;
        }
        if let Some(h) = err {
            let _ = h.await;
        }
    };
    if tokio::time::timeout(OUTPUT_GRACE, output).await.is_err() {
        debug!(%mac, action, "hook output still open (a background child?); no longer logged");
    }
    let ms = started.elapsed().as_millis() as u64;
    match &outcome {
        Outcome::Exited(st) if st.success() => {
            debug!(%mac, %ip, action, ms, "hook finished");
        }
        Outcome::Exited(st) => {
            warn!(hook = %cfg.path.display(), %mac, %ip, action, ms, "hook failed: {st}");
        }
        Outcome::TimedOut => {
            warn!(
                hook = %cfg.path.display(),
                %mac,
                %ip,
                action,
                timeout_ms = cfg.timeout.as_millis() as u64,
                "hook timed out: killed"
            );
        }
        Outcome::ExecFailed(e) => {
            warn!(hook = %cfg.path.display(), %mac, %ip, action, "hook wait failed: {e}");
        }
    }
    slot.outcome = Some(outcome);
}

/// A clear reason for a failed exec.
fn exec_error(e: &io::Error) -> String {
    match (e.kind(), e.raw_os_error()) {
        (io::ErrorKind::NotFound, _) => format!("hook file does not exist ({e})"),
        (io::ErrorKind::PermissionDenied, _) => {
            format!("hook file is not executable (chmod +x?) ({e})")
        }
        (_, Some(libc::ENOEXEC)) => {
            format!("hook file is not a valid executable (missing #! line?) ({e})")
        }
        _ => format!("cannot execute hook file: {e}"),
    }
}

/// Log `r` line by line at debug.
async fn log_lines<R: AsyncRead + Unpin>(
    r: R,
    stream: &'static str,
    mac: Mac,
    action: &'static str,
) {
    for_each_line(r, |line| {
        debug!(%mac, action, stream, "hook: {}", String::from_utf8_lossy(line));
    })
    .await;
}

/// Calls `f` with each line of `r` (without `\n` or `\r\n`); lines longer
/// than [`MAX_LINE`] bytes are split; a read error ends the stream.
async fn for_each_line<R: AsyncRead + Unpin>(r: R, mut f: impl FnMut(&[u8])) {
    let mut emit = |line: &[u8]| {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        f(line.strip_suffix(b"\r").unwrap_or(line));
    };
    let mut r = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        let buf = match r.fill_buf().await {
            Ok(b) if !b.is_empty() => b,
            _ => break,
        };
        let room = MAX_LINE - line.len();
        let (take, complete) = match buf.iter().take(room).position(|&c| c == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len().min(room), line.len() + buf.len() >= MAX_LINE),
        };
        line.extend_from_slice(&buf[..take]);
        r.consume(take);
        if complete {
            emit(&line);
            line.clear();
        }
    }
    if !line.is_empty() {
        emit(&line);
    }
}

#[cfg(test)]
mod tests;
