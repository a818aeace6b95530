//! DHCPv4 load generator for isodhcp benchmarks.
//!
//! Everything goes through one AF_PACKET socket on one interface; run it
//! inside a network namespace (the benchmark starts it with `nsenter --net`).
//!
//! - [`flood`]: random-MAC DISCOVERs, paced or unpaced, bounded by a frame
//!   count and a duration.
//! - [`client`]: DORA clients driven by an event loop (`probe --kind known`,
//!   `probe --kind new`, `dora`), with retransmission and per-attempt
//!   latency.
//!
//! The pure parts (frame patching, pacing, percentiles, RNG) are unit-tested;
//! the socket code is exercised by `cargo xtask bench`.

pub mod client;
pub mod flood;
pub mod pace;
pub mod packet;
pub mod rng;
pub mod sock;
pub mod stats;

pub use isodhcp::wire::Mac;
