//! Client side of the control socket: the diagnostics flags of the CLI
//! (`--status`, `--verify`, `--dump`, `--show`, `--config`, `--block`,
//! `--unblock`). Exit status: 0 ok; for `--verify` Nagios-style 0 ok,
//! 1 moderate, 2 alarming, 3 unknown; 3 when no daemon answers; 1 when the
//! daemon answers with an error.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::proto::{Command, Request, Response};
use super::render;
use super::reply::VerifyReply;

/// Why a request got no answer.
#[derive(Debug)]
pub enum CallError {
    /// Nothing listens there (exit 3).
    NoDaemon(String),
    /// The socket or the daemon refused us (exit 1).
    Denied(String),
    /// Anything else (exit 3).
    Failed(String),
}

/// Sends one request and returns the answer.
pub fn call(path: &Path, req: &Request) -> Result<Response, CallError> {
    let mut s = UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => CallError::Denied(format!(
            "permission denied on {}: the control socket belongs to another user (run as root or as the daemon's user)",
            path.display()
        )),
        _ => CallError::NoDaemon(format!(
            "no isodhcp daemon answers on {} ({e}); is it running for this interface? (see --socket)",
            path.display()
        )),
    })?;
    let t = Some(Duration::from_secs(10));
    s.set_read_timeout(t)
        .and_then(|()| s.set_write_timeout(t))
        .map_err(|e| CallError::Failed(e.to_string()))?;
    let mut line = serde_json::to_vec(req).map_err(|e| CallError::Failed(e.to_string()))?;
    line.push(b'\n');
    // A daemon that refuses us answers and closes without reading: our write
    // may fail, but its answer is waiting to be read.
    let sent = s.write_all(&line);
    let mut answer = String::new();
    let read = BufReader::new(s).read_line(&mut answer);
    if answer.is_empty() {
        return Err(match (sent, read) {
            (Err(e), _) => CallError::Failed(format!("cannot send the request: {e}")),
            (_, Err(e)) => CallError::Failed(format!("no answer from the daemon: {e}")),
            _ => CallError::Failed("the daemon closed the connection without an answer".into()),
        });
    }
    serde_json::from_str(&answer)
        .map_err(|e| CallError::Failed(format!("unreadable answer from the daemon: {e}")))
}

/// Runs a diagnostics command and prints the answer; returns the exit status.
pub fn run(path: &Path, req: &Request, json: bool) -> u8 {
    let resp = match call(path, req) {
        Ok(r) => r,
        Err(CallError::Denied(msg)) => {
            eprintln!("isodhcp: {msg}");
            return 1;
        }
        Err(CallError::NoDaemon(msg) | CallError::Failed(msg)) => {
            eprintln!("isodhcp: {msg}");
            return 3;
        }
    };
    let value = serde_json::to_value(&resp).unwrap_or(Value::Null);
    // A closed pipe (`| head`) is not an error worth a panic.
    let mut out = std::io::stdout().lock();
    if json {
        let _ = writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else if !resp.is_ok() {
        let msg = resp.message.as_deref().unwrap_or("error");
        eprintln!("isodhcp: {}", crate::text::escape_for_terminal(msg));
    } else {
        let _ = write!(out, "{}", render::text(&req.cmd, &resp));
    }
    if !resp.is_ok() {
        return 1;
    }
    match req.cmd {
        Command::Verify => resp
            .reply::<VerifyReply>()
            .map_or(3, |v| v.exit_code.min(3)),
        _ => 0,
    }
}
