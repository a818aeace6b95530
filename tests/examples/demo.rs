//! Runs the xtask demo (xtask/src/demo.rs) straight from this crate:
//! `cargo run -p isodhcp-tests --release --example demo -- [BIN] [SECS]`
//! (BIN defaults to `ISODHCP_BIN` / target/release/isodhcp, SECS to 30).

#[path = "../../xtask/src/demo.rs"]
mod demo;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let bin = match args.next() {
        Some(b) => std::path::PathBuf::from(b),
        None => isodhcp_tests::isodhcp_bin()?,
    };
    let secs = args.next().map(|s| s.parse()).transpose()?.unwrap_or(30);
    demo::demo(&bin, secs)
}
