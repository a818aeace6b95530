//! Small helpers: workspace paths, running commands, privileges.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result};

/// A child command exited unsuccessfully; `main` exits with this code.
#[derive(Debug)]
pub struct ChildFailed(pub u8);

impl std::fmt::Display for ChildFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "command failed with exit code {}", self.0)
    }
}

impl std::error::Error for ChildFailed {}

/// The workspace root (parent of the xtask crate).
pub fn workspace_root() -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    here.parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The cargo target directory (`$CARGO_TARGET_DIR` or `<workspace>/target`).
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                workspace_root().join(d)
            }
        }
        None => workspace_root().join("target"),
    }
}

/// The cargo that runs xtask (stable), for host builds.
pub fn cargo() -> Command {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut c = Command::new(cargo);
    c.current_dir(workspace_root());
    c
}

/// Plain `cargo` from PATH (rustup picks the toolchain): without the
/// variables the xtask's own cargo run sets (toolchain, flags, target
/// directory), for `cargo install` of host tools and `cargo +nightly fuzz`.
pub fn host_cargo() -> Command {
    let mut cmd = Command::new("cargo");
    for k in [
        "RUSTC",
        "RUSTUP_TOOLCHAIN",
        "CARGO",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(k);
    }
    cmd
}

/// Runs `cmd`, echoing it; a non-zero exit becomes `ChildFailed`.
pub fn run(cmd: &mut Command) -> Result<()> {
    eprintln!("xtask: $ {}", show(cmd));
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    if status.success() {
        return Ok(());
    }
    let code = status.code().map_or(1, |c| c.clamp(1, 255) as u8);
    Err(ChildFailed(code)).with_context(|| show(cmd))
}

/// Runs `cmd` quietly and returns its stdout if it exited 0.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when running as root (effective uid 0).
pub fn is_root() -> bool {
    // /proc/self is owned by the effective uid of the reading process.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn show(cmd: &Command) -> String {
    let mut s = String::new();
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s += &format!("{}={} ", k.to_string_lossy(), v.to_string_lossy());
        }
    }
    s += &cmd.get_program().to_string_lossy();
    for a in cmd.get_args() {
        s.push(' ');
        s += &a.to_string_lossy();
    }
    s
}

/// Runs a `cargo test` command, passing its output through, and prints one
/// closing line `tests: N passed, N failed, N skipped` summed over every
/// `test result:` line. The exit status is cargo's.
pub fn run_counting_tests(cmd: &mut Command) -> Result<()> {
    use std::io::{BufRead, BufReader, Write};
    eprintln!("xtask: $ {}", show(cmd));
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {:?}", cmd.get_program()))?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    let stdout = child.stdout.take().context("no stdout")?;
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line?;
        let _ = writeln!(out, "{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            let n = |word: &str| -> u64 {
                rest.split(';')
                    .find_map(|p| {
                        p.trim()
                            .strip_suffix(word)
                            .and_then(|v| v.trim().rsplit(' ').next()?.parse().ok())
                    })
                    .unwrap_or(0)
            };
            passed += n(" passed");
            failed += n(" failed");
            ignored += n(" ignored");
        }
    }
    let status = child.wait()?;
    println!("tests: {passed} passed, {failed} failed, {ignored} skipped");
    if status.success() {
        return Ok(());
    }
    let code = status.code().map_or(1, |c| c.clamp(1, 255) as u8);
    Err(ChildFailed(code)).with_context(|| show(cmd))
}
