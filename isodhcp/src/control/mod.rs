//! Control plane (design.md §Control): a Unix stream socket per instance, one JSON
//! request line and one JSON response line per connection, versioned.
//!
//! Guarantees:
//! - The socket is mode 0600; the peer's credentials are checked (same uid
//!   as the daemon, or root) before a byte of the request is read.
//! - Connections and request size are bounded ([`MAX_CONNECTIONS`],
//!   [`MAX_REQUEST`]); a slow client times out instead of holding a slot.
//! - A second daemon for the same interface refuses to start instead of
//!   stealing the socket of a live one; a stale socket file is replaced.
//! - Requests are answered on the daemon's event loop, between batches of
//!   DHCP frames, so they always see consistent state.
//! - Each command's answer is one type of [`reply`], built and serialised
//!   by the daemon and read back into the same type by the client; the
//!   JSON on the wire is that type's (see [`reply`] for its guarantees).

pub mod client;
pub mod proto;
pub mod render;
pub mod reply;
pub mod server;

use std::path::{Path, PathBuf};

pub use proto::{Command, Request, Response, VERSION};

/// Most clients served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// Largest request accepted, in bytes.
pub const MAX_REQUEST: usize = 64 * 1024;

/// `isodhcp_<iface>.sock` in `$STATE_DIRECTORY`, else `/var/lib/isodhcp`
/// when it exists, else the working directory (design.md §Control).
pub fn default_socket_path(sanitised_iface: &str) -> PathBuf {
    let name = format!("isodhcp_{sanitised_iface}.sock");
    if let Some(dir) = std::env::var_os("STATE_DIRECTORY").filter(|d| !d.is_empty()) {
        // systemd may pass several colon-separated folders: the first is ours.
        let first = dir
            .to_string_lossy()
            .split(':')
            .next()
            .unwrap_or_default()
            .to_string();
        return Path::new(&first).join(name);
    }
    let var = Path::new("/var/lib/isodhcp");
    if var.is_dir() {
        return var.join(name);
    }
    PathBuf::from(name)
}
