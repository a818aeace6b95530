//! Daemon side of the control socket: accept, check the peer, read one
//! bounded request line, hand it to the event loop, write the answer.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, warn};

use super::{MAX_CONNECTIONS, MAX_REQUEST, Request, Response, VERSION};

/// How long a client may take to send its request or read the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("another isodhcp already serves this interface (control socket {0} answers)")]
    InUse(PathBuf),
    #[error("control socket {0}: {1}")]
    Io(PathBuf, io::Error),
}

/// A request waiting for the event loop, with the way back.
pub type Pending = (Request, oneshot::Sender<Response>);

/// The bound socket; removes its file when dropped (clean shutdown).
pub struct ControlSocket {
    path: PathBuf,
    listener: Option<UnixListener>,
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

impl ControlSocket {
    /// Binds `path` with mode 0600. A live socket there means another
    /// daemon: refuse. A dead one is a leftover: replace it.
    pub fn bind(path: &Path) -> Result<ControlSocket, ControlError> {
        let err = |e| ControlError::Io(path.to_path_buf(), e);
        if path.exists() {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ControlError::InUse(path.to_path_buf()));
            }
            std::fs::remove_file(path).map_err(err)?;
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        // SAFETY: umask only changes the process's file creation mask; the
        // daemon is single-threaded while it starts.
        let old = unsafe { libc::umask(0o177) };
        let bound = UnixListener::bind(path);
        // SAFETY: as above, restoring the previous mask.
        unsafe { libc::umask(old) };
        Ok(ControlSocket {
            path: path.to_path_buf(),
            listener: Some(bound.map_err(err)?),
        })
    }

    /// Serves connections forever, passing requests to `tx`.
    pub fn serve(&mut self, tx: mpsc::Sender<Pending>) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    debug!("control socket busy: connection refused");
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, tx).await {
                        debug!(error = %e, "control connection ended");
                    }
                    drop(permit);
                });
            }
        });
    }
}

/// Same uid as the daemon, or root (design.md §Control).
fn allowed(stream: &UnixStream) -> bool {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    stream
        .peer_cred()
        .is_ok_and(|c| c.uid() == 0 || c.uid() == me)
}

async fn write_response(stream: &mut UnixStream, r: &Response) -> io::Result<()> {
    let mut line = serde_json::to_vec(r).map_err(io::Error::other)?;
    line.push(b'\n');
    tokio::time::timeout(IO_TIMEOUT, stream.write_all(&line))
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

/// One request line as a client sent it: the [`Request`], or why it is
/// refused (too large, not JSON, another protocol version, not a request),
/// the message of the error response. Pure, so it is fuzzed on its own.
pub fn decode_request(line: &[u8]) -> Result<Request, String> {
    if line.len() > MAX_REQUEST {
        return Err(format!("request larger than {MAX_REQUEST} bytes"));
    }
    let v = serde_json::from_slice::<serde_json::Value>(line)
        .map_err(|e| format!("not a JSON request: {e}"))?;
    if v.get("version").and_then(serde_json::Value::as_u64) != Some(u64::from(VERSION)) {
        return Err(format!(
            "unsupported protocol version (this daemon speaks {VERSION})"
        ));
    }
    serde_json::from_value::<Request>(v).map_err(|e| format!("bad request: {e}"))
}

async fn handle(mut stream: UnixStream, tx: mpsc::Sender<Pending>) -> io::Result<()> {
    if !allowed(&stream) {
        warn!("control request from another user refused");
        return write_response(
            &mut stream,
            &Response::error("permission denied: same user or root only"),
        )
        .await;
    }
    let mut line = Vec::new();
    let read = {
        let mut reader = BufReader::new(&mut stream).take(MAX_REQUEST as u64 + 1);
        tokio::time::timeout(IO_TIMEOUT, reader.read_until(b'\n', &mut line)).await
    };
    let answer = match read {
        Err(_) => Response::error("timed out reading the request"),
        Ok(Err(e)) => return Err(e),
        Ok(Ok(_)) => match decode_request(&line) {
            Err(why) => Response::error(why),
            Ok(req) => {
                let (back, answer) = oneshot::channel();
                if tx.send((req, back)).await.is_err() {
                    Response::error("daemon is shutting down")
                } else {
                    answer
                        .await
                        .unwrap_or_else(|_| Response::error("daemon is shutting down"))
                }
            }
        },
    };
    write_response(&mut stream, &answer).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::Command;

    fn refusal(line: &[u8]) -> String {
        decode_request(line).expect_err("must be refused")
    }

    #[test]
    fn request_lines_decode_or_are_refused_with_a_reason() {
        let ok = decode_request(br#"{"version":1,"cmd":"show","key":"printer"}"#).unwrap();
        assert_eq!(
            ok.cmd,
            Command::Show {
                key: "printer".into()
            }
        );
        assert!(refusal(b"{not json").starts_with("not a JSON request"));
        assert!(
            refusal(br#"{"version":2,"cmd":"status"}"#).starts_with("unsupported protocol version")
        );
        assert!(refusal(br#"{"cmd":"status"}"#).starts_with("unsupported protocol version"));
        assert!(refusal(br#"{"version":1,"cmd":"reboot"}"#).starts_with("bad request"));
        let big = vec![b' '; MAX_REQUEST + 1];
        assert!(refusal(&big).starts_with("request larger than"));
    }
}
