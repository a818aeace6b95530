//! The `--hook-file` runner (design.md §Hooks).
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
//! - Each hook runs in its own process group. When the hook exits, and at
//!   the latest after [`HookConfig::timeout`], the whole group is killed
//!   (SIGKILL): a hook's own children never outlive it (a hook that means to
//!   leave something running must start it in a new session, `setsid`). The
//!   same happens if the runtime drops a running hook (shutdown after
//!   [`Hooks::drain`] gave up).
//! - Every outcome is logged: exit 0 at debug, a non-zero exit or a signal
//!   with its status at warn, an exec failure (missing file, not executable,
//!   no `#!` line) with a clear reason at warn (rate-limited: once per minute
//!   plus a count of the suppressed ones). The hook's stdout and stderr go to
//!   the log at debug level, line by line (lossy UTF-8, lines capped at
//!   [`MAX_LINE`] bytes).
//! - Bounded memory, and no `del` is ever lost: once [`MAX_PENDING`] events
//!   wait, a new event is merged into the waiting events of its MAC instead
//!   of being queued behind them (counted in [`HookStats::coalesced`], with
//!   a rate-limited warning): an `add` replaces a waiting `add` (the newest
//!   lease wins), a `del` cancels a waiting `add` of the same address (the
//!   hook never saw that lease), a `del` repeating a waiting `del` of the
//!   same address is dropped; any other `del` is queued. Per MAC the order
//!   is kept; beyond the cap at most a `del` and an `add` wait per MAC, so
//!   memory is bounded by the number of MACs with lease changes in flight.
//! - `ISODHCP_HOSTNAME` (and `$4`) is the name the client sent: client
//!   controlled and untrusted (control characters are removed on receipt,
//!   anything else may be there). `ISODHCP_HOSTNAME_SAFE` is the same name
//!   reduced to RFC 1123 form (letters, digits, inner hyphens; labels of at
//!   most 63 bytes joined by dots; 253 bytes in all); it is absent if nothing
//!   is left.
use std::collections::{HashMap, VecDeque};
use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::{debug, warn};

use crate::engine::Binding;
use crate::wire::Mac;
pub use env::{DaemonFacts, daemon_env};
use output::log_lines;
use process::{command, exec_error, finish};

mod env;
mod output;
mod process;

/// Events waiting for a slot, beyond which new events are merged per MAC.
pub const MAX_PENDING: usize = 10_000;
/// Longest line of hook output logged as one line.
pub const MAX_LINE: usize = 4096;
/// Default of [`HookConfig::max_concurrent`] (design.md §Hooks).
pub const DEFAULT_MAX_CONCURRENT: usize = 8;
/// Default of [`HookConfig::timeout`] (design.md §Hooks).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Minimum interval between two rate-limited warnings of one kind.
const WARN_EVERY: Duration = Duration::from_secs(60);
/// After the hook exited, how long its output may still take to drain (a
/// background child of the hook may hold the pipes open).
const OUTPUT_GRACE: Duration = Duration::from_secs(1);

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
    /// Daemon-wide variables, built once at start by [`daemon_env`]: `ISODHCP_PID`,
    /// `ISODHCP_INTERFACE`, `ISODHCP_SERVER_IP`, `ISODHCP_POOL_CIDR`,
    /// `ISODHCP_DNS`, `ISODHCP_LEASE_FILE`, `ISODHCP_ISOLATION`.
    pub env: Vec<(String, String)>,
    /// Hooks running at once (design.md §Hooks: 8). 0 is treated as 1.
    pub max_concurrent: usize,
    /// A hook still running after this is killed (design.md §Hooks: 30 s).
    pub timeout: Duration,
}

impl HookConfig {
    /// Defaults of design.md §Hooks: 8 at once, 30 s timeout.
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
    /// Events dropped because there was no runtime to run them.
    pub dropped: u64,
    /// Events merged into the waiting events of their MAC because the queue
    /// was full (see the module documentation).
    pub coalesced: u64,
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
    full_warn: RateLimit,
    exec_warn: RateLimit,
}

#[derive(Default)]
struct MacQueue {
    events: VecDeque<HookEvent>,
    /// In `ready` or running: no second task may be started for this MAC.
    scheduled: bool,
}

impl MacQueue {
    /// Queues `ev` behind the waiting events; returns 1 (events added).
    fn push(&mut self, ev: HookEvent) -> isize {
        self.events.push_back(ev);
        1
    }

    /// Merges `ev` into the waiting events (the queue is full); returns the
    /// change in waiting events (-1, 0 or 1). A `del` is only ever dropped
    /// where the hook never saw its lease or sees the same `del` anyway.
    fn merge(&mut self, ev: HookEvent) -> isize {
        let last = self.events.back().map(|l| (l.action, l.binding.ip));
        match (ev.action, last) {
            // The newest lease replaces one the hook has not seen yet.
            (HookAction::Add, Some((HookAction::Add, _))) => {
                if let Some(l) = self.events.back_mut() {
                    *l = ev;
                }
                0
            }
            // Added and ended before the hook saw it: neither runs.
            (HookAction::Del, Some((HookAction::Add, ip))) if ip == ev.binding.ip => {
                self.events.pop_back();
                -1
            }
            // The same `del` is waiting already.
            (HookAction::Del, Some((HookAction::Del, ip))) if ip == ev.binding.ip => 0,
            _ => self.push(ev),
        }
    }
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
pub(super) enum Outcome {
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
        let full = st.pending >= self.shared.max_pending;
        let action = ev.action;
        let q = st.macs.entry(mac).or_default();
        let added = if full { q.merge(ev) } else { q.push(ev) };
        let ready = !q.scheduled;
        q.scheduled = true;
        if ready {
            st.ready.push_back(mac);
        }
        // `added` is -1, 0 or 1: events removed or added by the merge.
        st.pending = st.pending.saturating_add_signed(added);
        if full && added < 1 {
            st.stats.coalesced += 1;
        }
        let warn_full = if full {
            st.full_warn.hit(Instant::now()).map(|n| (n, st.pending))
        } else {
            None
        };
        let start = self.shared.take_startable(&mut st);
        drop(st);
        self.shared.spawn_all(start);
        if let Some((suppressed, pending)) = warn_full {
            warn!(
                %mac,
                action = action.as_str(),
                pending,
                suppressed,
                "hook queue full: merging events per MAC (hooks are slower than lease changes)"
            );
        }
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
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
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
                // A merge cancelled its only waiting event: nothing to run.
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
    let out = child
        .stdout
        .take()
        .map(|r| tokio::spawn(log_lines(r, "stdout", mac, action)));
    let err = child
        .stderr
        .take()
        .map(|r| tokio::spawn(log_lines(r, "stderr", mac, action)));

    let outcome = finish(&mut child, cfg.timeout).await;
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
    log_outcome(cfg, &ev, started.elapsed(), &outcome);
    slot.outcome = Some(outcome);
}
/// One log line for how a hook run ended.
fn log_outcome(cfg: &HookConfig, ev: &HookEvent, took: Duration, outcome: &Outcome) {
    let (mac, ip, action) = (ev.binding.mac, ev.binding.ip, ev.action.as_str());
    let ms = took.as_millis() as u64;
    match outcome {
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
}

#[cfg(test)]
mod tests;
