//! Executors for the engine's effects on the kernel (design.md §Kernel state) and the XDP
//! loader (design.md §Datapath). Every operation is idempotent; failures are reported to
//! the caller, which logs, counts and retries them at the next reconcile.
//!
//! Layout: [`reconcile`] decides (pure: what bindings need, and the diff
//! against what was found), [`kernel`], [`netlink`] and [`route_batch`] carry out
//! routes and aliases, [`nft`] the firewall (model, render, exec), [`hooks`] the
//! operator's hook script (its arguments and environment included),
//! [`xdp`] the admission program, [`detect`] the host facts.
//!
//! Guarantees:
//! - This layer imports only from layers below it (engine, wire,
//!   text, config); never from `cli`, `control` or `daemon`.
//! - The daemon hands over bindings and facts; every command, netlink
//!   request and hook environment is built here.

pub mod detect;
pub mod hooks;
pub mod kernel;
pub mod netlink;
pub mod nft;
pub mod reconcile;
pub mod route_batch;
pub mod xdp;
