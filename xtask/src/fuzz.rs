//! `cargo xtask fuzz`: the fuzz targets of `fuzz/` through cargo-fuzz
//! (nightly, libFuzzer), one after the other, with a summary per target.
//!
//! Corpora: each target starts from its small, committed seeds in
//! `fuzz/seeds/<target>/` (read only) and grows a working corpus in
//! `target/fuzz-corpus/<target>/`, which persists between runs but stays out
//! of the repository. A crash stops the run with cargo-fuzz's report (the
//! input lands in `fuzz/artifacts/<target>/`) and a non-zero exit.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::util::{host_cargo, target_dir, workspace_root};

/// Every target, and the longest input it gets (bytes).
const TARGETS: [(&str, usize); 3] = [
    ("parse_frame", 1600),
    ("lease_file", 16384),
    ("control_line", 4096),
];

/// Options of `cargo xtask fuzz`.
#[derive(clap::Args, Debug, Clone)]
pub struct FuzzOpts {
    /// One target (`parse_frame`, `lease_file`, `control_line`); default all.
    #[arg(long)]
    pub target: Option<String>,
    /// Stop each target after this many executions (libFuzzer `-runs`).
    #[arg(long)]
    pub runs: Option<u64>,
    /// Stop each target after this many seconds (libFuzzer `-max_total_time`).
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
}

/// What one target's run did.
struct Outcome {
    target: &'static str,
    execs: u64,
    seconds: f64,
    corpus: usize,
}

/// `cargo xtask fuzz`: runs the chosen targets and prints a table.
pub fn run(o: &FuzzOpts) -> Result<()> {
    let chosen: Vec<(&'static str, usize)> = match &o.target {
        None => TARGETS.to_vec(),
        Some(t) => match TARGETS.iter().find(|(n, _)| n == t) {
            Some(&x) => vec![x],
            None => {
                bail!("unknown fuzz target {t:?}; targets: parse_frame, lease_file, control_line")
            }
        },
    };
    let mut done = Vec::new();
    for (target, max_len) in chosen {
        done.push(run_target(target, max_len, o.runs, o.seconds)?);
    }
    println!("\n| target | executions | seconds | execs/s | corpus files | crashes |");
    println!("|---|---|---|---|---|---|");
    for d in &done {
        println!(
            "| {} | {} | {:.0} | {:.0} | {} | 0 |",
            d.target,
            d.execs,
            d.seconds,
            d.execs as f64 / d.seconds.max(0.001),
            d.corpus
        );
    }
    Ok(())
}

/// The short run of every target that `cargo xtask test` does.
pub fn smoke(seconds: u64) -> Result<()> {
    for (target, max_len) in TARGETS {
        run_target(target, max_len, None, seconds)?;
    }
    Ok(())
}

fn run_target(
    target: &'static str,
    max_len: usize,
    runs: Option<u64>,
    seconds: u64,
) -> Result<Outcome> {
    let root = workspace_root();
    let seeds = root.join("fuzz/seeds").join(target);
    let work: PathBuf = target_dir().join("fuzz-corpus").join(target);
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let mut cmd = host_cargo();
    cmd.current_dir(&root)
        .args(["+nightly", "fuzz", "run", target])
        .arg(&work)
        .arg(&seeds)
        .arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={max_len}"))
        .arg("-print_final_stats=1");
    if let Some(n) = runs {
        cmd.arg(format!("-runs={n}"));
    }
    eprintln!(
        "xtask: fuzz {target} ({seconds} s at most{})",
        runs.map_or(String::new(), |n| format!(", {n} runs at most"))
    );
    let t = Instant::now();
    let out = cmd
        .stdout(Stdio::inherit())
        .output()
        .context("running cargo +nightly fuzz (cargo xtask setup installs it)")?;
    let log = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        // The panic message sits above the stack trace, out of the tail.
        let panic: Vec<&str> = log
            .lines()
            .skip_while(|l| !l.contains("panicked at"))
            .take(4)
            .collect();
        bail!(
            "fuzz target {target} failed ({}):\n{}\n...\n{}",
            out.status,
            panic.join("\n"),
            tail.join("\n")
        );
    }
    let execs = final_stat(&log, "stat::number_of_executed_units:")
        .with_context(|| format!("no execution count in the output of {target}"))?;
    let corpus = std::fs::read_dir(&work)
        .map(|d| d.flatten().count())
        .unwrap_or(0);
    Ok(Outcome {
        target,
        execs,
        seconds: t.elapsed().as_secs_f64(),
        corpus,
    })
}

/// The value of a `-print_final_stats` line.
fn final_stat(log: &str, key: &str) -> Option<u64> {
    log.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::final_stat;

    #[test]
    fn reads_libfuzzer_final_stats() {
        let log =
            "#1000\tDONE cov: 10\nstat::number_of_executed_units: 123456\nstat::peak_rss_mb: 80\n";
        assert_eq!(
            final_stat(log, "stat::number_of_executed_units:"),
            Some(123_456)
        );
        assert_eq!(final_stat(log, "stat::peak_rss_mb:"), Some(80));
        assert_eq!(final_stat(log, "stat::nothing:"), None);
    }
}
