//! The manual page must describe every flag the binary accepts.

use clap::CommandFactory;
use isodhcp::cli::Args;

#[test]
fn every_flag_is_in_the_manual_page() {
    let man = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../man/isodhcp.8"))
        .expect("man/isodhcp.8");
    let text = man
        .replace("\\-", "-")
        .replace("\\fB", "")
        .replace("\\fR", "")
        .replace("\\fI", "");
    let mut missing = Vec::new();
    for arg in Args::command().get_arguments() {
        if let Some(long) = arg.get_long() {
            if !text.contains(&format!("--{long}")) {
                missing.push(format!("--{long}"));
            }
        }
        if let Some(short) = arg.get_short() {
            if !text.contains(&format!("-{short},")) && !text.contains(&format!("-{short} ")) {
                missing.push(format!("-{short}"));
            }
        }
        for alias in arg.get_visible_aliases().unwrap_or_default() {
            if !text.contains(&format!("--{alias}")) {
                missing.push(format!("--{alias}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not described in man/isodhcp.8: {missing:?}"
    );
    // Every hook variable of design.md §Hooks and every signal are documented too.
    for needle in [
        "ISODHCP_SUBNET",
        "ISODHCP_EXPIRY",
        "ISODHCP_MODE",
        "SIGUSR1",
        "SIGHUP",
        "isodhcp_lease_commit_seconds",
    ] {
        assert!(text.contains(needle), "{needle} missing from man/isodhcp.8");
    }
}
