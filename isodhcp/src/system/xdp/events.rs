//! Opt-in debug events of the XDP program (aya-log).
//!
//! An object built with `cargo xtask build-ebpf --xdp-debug` (the eBPF
//! crate's `debug-events` feature) writes one record per DHCP frame — its
//! XDP action and the counter it landed in — to an `AYA_LOGS` ring buffer.
//! The default build has no such map and no logging code at all, so the
//! events cost nothing per packet unless compiled in; then [`start`] finds
//! no map and returns `None`.
//!
//! Records are forwarded to `tracing` at debug level under the target
//! `isodhcp::xdp` (e.g. `ISODHCP_LOG=info,isodhcp::xdp=debug`), with the
//! counter's number replaced by its name.

use aya::Ebpf;
use aya_log::EbpfLogger;
use isodhcp_common::COUNTER_NAMES;
use tokio::io::unix::AsyncFd;
use tracing::{debug, info, warn};

/// Forwards the program's records to `tracing`.
struct ToTracing;

impl log::Log for ToTracing {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        debug!(target: "isodhcp::xdp", "{}", name_counter(&record.args().to_string()));
    }

    fn flush(&self) {}
}

/// `"... counter #6"` → `"... counter drop_not_request"`.
fn name_counter(msg: &str) -> String {
    match msg.rsplit_once('#') {
        Some((head, n)) => match n.parse::<usize>().ok().and_then(|i| COUNTER_NAMES.get(i)) {
            Some(name) => format!("{head}{name}"),
            None => msg.to_string(),
        },
        None => msg.to_string(),
    }
}

/// Starts forwarding debug events if the loaded object has them; must run
/// inside the tokio runtime. The task lives as long as the runtime.
pub fn start(ebpf: &mut Ebpf) -> Option<tokio::task::JoinHandle<()>> {
    let logger = match EbpfLogger::init_with_logger(ebpf, ToTracing) {
        Ok(l) => l,
        Err(aya_log::Error::MapNotFound) => return None,
        Err(e) => {
            warn!(error = %e, "XDP debug events present but unreadable");
            return None;
        }
    };
    // SAFETY: the logger owns the ring buffer's fd; it stays open and the
    // same while the `AsyncFd` owns the logger, and `as_raw_fd` always
    // returns it.
    let registered =
        unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) };
    let mut fd = match registered {
        Ok(fd) => fd,
        Err(e) => {
            warn!(error = %e, "XDP debug events present but unreadable");
            return None;
        }
    };
    info!("XDP debug events on (object built with --xdp-debug): target isodhcp::xdp");
    Some(tokio::spawn(async move {
        while let Ok(mut ready) = fd.readable_mut().await {
            ready.get_inner_mut().flush();
            ready.clear_ready();
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::name_counter;

    #[test]
    fn counter_numbers_become_names() {
        assert_eq!(
            name_counter("dhcp frame: action 1 counter #6"),
            "dhcp frame: action 1 counter drop_not_request"
        );
        assert_eq!(name_counter("counter #99"), "counter #99");
        assert_eq!(name_counter("no number"), "no number");
    }
}
