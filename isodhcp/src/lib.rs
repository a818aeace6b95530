//! isodhcp: DHCPv4 server that gives every client a /32 lease and a kernel
//! host route, with an XDP program in front of it.
//!
//! Layers (each a folder): [`wire`] (pure codec), [`engine`] (sans-IO lease
//! state machine), [`store`] (lease file), [`system`] (kernel effects),
//! [`datapath`] (frame I/O), [`daemon`] (wiring), [`cli`] (command line);
//! [`text`] makes client-chosen text safe to show.

pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod datapath;
#[warn(missing_docs)]
pub mod engine;
pub mod store;
pub mod system;
pub mod text;
#[warn(missing_docs)]
pub mod wire;
