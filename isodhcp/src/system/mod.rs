//! Executors for the engine's effects on the kernel (SPEC §6) and the XDP
//! loader (SPEC §9). Every operation is idempotent; failures are reported to
//! the caller, which logs, counts and retries them at the next reconcile.

pub mod detect;
pub mod hooks;
pub mod kernel;
pub mod netlink;
pub mod nft;
pub mod reconcile;
pub mod xdp;
