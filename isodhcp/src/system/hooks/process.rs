//! Starting a hook process, waiting for its exit, killing its group.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::process::{Child, Command};

use super::env::{EVENT_VARS, argv, event_env};
use super::{HookConfig, HookEvent, Outcome};

pub(super) fn command(cfg: &HookConfig, ev: &HookEvent) -> Command {
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

/// Kills the hook's process group (at most once, before the hook is reaped).
struct GroupKill(Option<libc::pid_t>);

impl GroupKill {
    fn kill(&mut self) {
        if let Some(pgid) = self.0.take() {
            // SAFETY: kill(2) on the process group led by our own child,
            // which is never reaped before this runs (an unreaped zombie
            // still holds the id), so the id cannot have been reused.
            unsafe { libc::kill(-pgid, libc::SIGKILL) };
        }
    }
}

impl Drop for GroupKill {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits for the hook to exit (at most `timeout`), then kills its process
/// group and reaps it. The exit is awaited without reaping: while the hook
/// is an unreaped zombie its process group id cannot be reused, so the group
/// (with any child the hook left behind) is killed safely before the reap.
/// Dropped midway (runtime shutdown), the group is killed too.
pub(super) async fn finish(child: &mut Child, timeout: Duration) -> Outcome {
    let pid = child.id().map(|p| p as libc::pid_t);
    let mut group = GroupKill(pid);
    let exit = async {
        match pid {
            Some(pid) => exited(pid).await,
            None => Ok(()),
        }
    };
    let waited = tokio::time::timeout(timeout, exit).await;
    group.kill();
    let reaped = child.wait().await;
    match (waited, reaped) {
        (Ok(Ok(())), Ok(st)) => Outcome::Exited(st),
        (Ok(Ok(())), Err(e)) | (Ok(Err(e)), _) => Outcome::ExecFailed(e),
        (Err(_), _) => Outcome::TimedOut,
    }
}

/// Completes once our child `pid` has exited, without reaping it (it stays
/// a zombie until `Child::wait`).
async fn exited(pid: libc::pid_t) -> io::Result<()> {
    // SAFETY: pidfd_open(2) takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        return exited_polling(pid).await;
    }
    // SAFETY: the fd was just returned by the kernel and is owned by no one else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    // A pidfd becomes readable when the process exits.
    // SAFETY: the AsyncFd owns the OwnedFd, which stays open and unchanged
    // until both are dropped together.
    let afd = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE)? };
    let _ = afd.readable().await?;
    Ok(())
}

/// For kernels without pidfd_open (before 5.3): asks every 20 ms.
async fn exited_polling(pid: libc::pid_t) -> io::Result<()> {
    loop {
        if exited_now(pid)? {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether our child `pid` has exited, leaving it unreaped.
fn exited_now(pid: libc::pid_t) -> io::Result<bool> {
    // SAFETY: a zeroed siginfo_t is a valid out-parameter for waitid(2).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
    // SAFETY: waitid(2) on our own child, writing only into `info`; WNOWAIT
    // leaves it unreaped.
    let r = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid filled `info`; si_pid is 0 if nothing has exited.
    Ok(unsafe { info.si_pid() } != 0)
}

/// A clear reason for a failed exec.
pub(super) fn exec_error(e: &io::Error) -> String {
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
