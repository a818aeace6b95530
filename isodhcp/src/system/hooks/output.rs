//! The hook's stdout and stderr, line by line to the log.

use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tracing::debug;

use super::MAX_LINE;
use crate::text::escape_for_terminal;
use crate::wire::Mac;

/// Log `r` line by line at debug. Hooks often echo what the client sent
/// (its host name): control and format characters are escaped so that
/// text cannot rewrite the operator's terminal when the log is read.
pub(super) async fn log_lines<R: AsyncRead + Unpin>(
    r: R,
    stream: &'static str,
    mac: Mac,
    action: &'static str,
) {
    for_each_line(r, |line| {
        let text = String::from_utf8_lossy(line);
        debug!(%mac, action, stream, "hook: {}", escape_for_terminal(&text));
    })
    .await;
}

/// Calls `f` with each line of `r` (without `\n` or `\r\n`); lines longer
/// than [`MAX_LINE`] bytes are split; a read error ends the stream.
pub(super) async fn for_each_line<R: AsyncRead + Unpin>(r: R, mut f: impl FnMut(&[u8])) {
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
