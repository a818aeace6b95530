//! Network-namespace lab for isodhcp integration tests.
//!
//! Topology built by [`Lab`]: one *server* namespace (interface `srv0`), one
//! *switch* namespace holding a bridge, and N *client* namespaces, each with a
//! veth whose peer is a port of that bridge. Nothing is ever created in, or
//! changed in, the root network namespace: veth pairs are created inside the
//! switch namespace with their peer directly in the target namespace.
//!
//! Rules the lab enforces:
//! - addresses only from 198.18.0.0/15;
//! - every namespace, process, temp folder and bpffs folder is owned by an RAII
//!   guard whose `Drop` removes it (also on panic);
//! - every wait is a poll with a deadline;
//! - namespace names are `isd-<tag>-<pid><n>-<role>` (unique per test run and lab);
//! - clients run under `ip netns exec NS unshare --uts --`: `ip netns exec`
//!   bind-mounts `/etc/netns/NS/resolv.conf` over `/etc/resolv.conf` (the file is
//!   created before any client runs and removed in `Drop`), and the private UTS
//!   namespace keeps client hooks from changing the host name;
//! - daemons run under `nsenter --net=/run/netns/NS` (no /sys remount, so the
//!   daemon sees the host's /sys/fs/bpf).
//!
//! Tests need root. Each one starts with [`needs_root!`]: as another user it
//! returns at once with one line `skipped: needs root (network namespaces)`
//! on stderr, so `cargo test` as a normal user skips the suites instead of
//! failing them. As root, [`preflight`] turns any other missing precondition
//! into a clear error (tests call `.expect()` on it, so they fail, never pass
//! silently).

pub mod clients;
pub mod control_world;
pub mod crafted;
pub mod daemon;
pub mod lab;
pub mod netinfo;
pub mod netns;
pub mod nftutil;
pub mod persist;
pub mod probe;
pub mod util;
pub mod xdp_run;

pub use clients::{ClientKind, Lease};
pub use daemon::{Daemon, DaemonConfig, Dnsmasq, XdpMode, isodhcp_bin, xdp_from_env};
pub use isodhcp_common::LAB_FLOOD_OCTET;
pub use lab::{
    Client, DNS_IP, HostSnapshot, Lab, LabConfig, POOL, SERVER_IF, SERVER_IP, ServerAddr,
    UPSTREAM_IP,
};
pub use netinfo::{Addr, Route};
pub use netns::{Netns, TcpServer};
pub use util::{TempDir, preflight, require_tool, wait_until};
