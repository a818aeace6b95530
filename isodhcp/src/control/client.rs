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

/// Sends one request and returns the answer, or a message for the user.
pub fn call(path: &Path, req: &Request) -> Result<Response, String> {
    let mut s = UnixStream::connect(path).map_err(|e| format!("no isodhcp daemon answers on {} ({e}); is it running for this interface? (see --socket)", path.display()))?;
    let t = Some(Duration::from_secs(10));
    s.set_read_timeout(t)
        .and_then(|()| s.set_write_timeout(t))
        .map_err(|e| e.to_string())?;
    let mut line = serde_json::to_vec(req).map_err(|e| e.to_string())?;
    line.push(b'\n');
    s.write_all(&line)
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let mut answer = String::new();
    BufReader::new(s)
        .read_line(&mut answer)
        .map_err(|e| format!("no answer from the daemon: {e}"))?;
    serde_json::from_str(&answer).map_err(|e| format!("unreadable answer from the daemon: {e}"))
}

/// Runs a diagnostics command and prints the answer; returns the exit status.
pub fn run(path: &Path, req: &Request, json: bool) -> u8 {
    let resp = match call(path, req) {
        Ok(r) => r,
        Err(msg) => {
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
        eprintln!("isodhcp: {}", resp.message.as_deref().unwrap_or("error"));
    } else {
        let _ = write!(out, "{}", render::text(&req.cmd, &value));
    }
    if !resp.is_ok() {
        return 1;
    }
    match req.cmd {
        Command::Verify => value
            .get("exit_code")
            .and_then(Value::as_u64)
            .map_or(3, |c| c.min(3) as u8),
        _ => 0,
    }
}
