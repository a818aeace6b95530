//! `cargo xtask deb`: the Debian package (design.md §Packaging).
//!
//! Built with `dpkg-deb` from a staged tree rather than cargo-deb: the
//! daemon's binary comes from `cargo xtask build` (it embeds the XDP object
//! built on nightly), and the maintainer scripts in `dist/debian/` are the
//! parts that matter. Layout:
//!
//! | path | from |
//! |---|---|
//! | `/usr/sbin/isodhcp` | `target/release/isodhcp`, stripped (XDP object embedded) |
//! | `/lib/systemd/system/isodhcp@.service` | `dist/isodhcp@.service` |
//! | `/usr/share/man/man8/isodhcp.8.gz` | `man/isodhcp.8` |
//! | `/usr/share/doc/isodhcp/` | `README.Debian`, `copyright`, `changelog.gz`, `examples/iface.conf` |
//! | `DEBIAN/{postinst,prerm,postrm}` | `dist/debian/` |
//!
//! `Depends` comes from `dpkg-shlibdeps` on the binary, plus `adduser`
//! (postinst) and `nftables` (the daemon runs `nft`).

use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::util::{output, run as sh, target_dir, workspace_root};

/// Package name.
const NAME: &str = "isodhcp";
/// Written into `Maintainer:` and the changelog unless `DEBFULLNAME` /
/// `DEBEMAIL` say otherwise.
const MAINTAINER: &str = "isodhcp developers <isodhcp@example.org>";

const DESCRIPTION: &str = "\
DHCPv4 server that isolates every client (/32 leases, XDP admission)
 isodhcp serves one interface of a Linux router hosting guest, IoT or
 untrusted clients. Every client gets a /32 address and a kernel host route,
 so all traffic between neighbours is routed through the router where
 nftables decides; legacy clients get a /30 micro-segment.
 .
 An XDP program validates and rate-limits DHCP frames per client MAC and
 globally inside the kernel and hands the admitted ones to the daemon over
 AF_XDP. Leases persist in a JSON lease file; a hook script runs on every
 lease change; one systemd instance (isodhcp@IFACE) serves each interface.";

/// Builds the daemon, [`package`]s it and runs lintian on the result.
pub fn deb() -> Result<PathBuf> {
    let deb = package(&crate::build::build()?)?;
    lint(&deb);
    Ok(deb)
}

/// Stages the package tree around the release binary `bin` and runs
/// `dpkg-deb`; returns the path of the `.deb` in `target/debian/`. No
/// lintian here: `cargo xtask test` packages too, and its package_deb
/// suite runs lintian and asserts on it.
pub fn package(bin: &Path) -> Result<PathBuf> {
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))
        .context("dpkg --print-architecture failed: is this Debian?")?
        .trim()
        .to_string();
    let out_dir = target_dir().join("debian");
    let stage = out_dir.join(format!("{NAME}_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("removing {}", stage.display()))?;
    }
    stage_files(&stage, bin)?;
    write_control(&stage, version, &arch)?;
    let deb = out_dir.join(format!("{NAME}_{version}_{arch}.deb"));
    sh(Command::new("dpkg-deb")
        .args(["--root-owner-group", "-Zxz", "--build"])
        .arg(&stage)
        .arg(&deb))?;
    Ok(deb)
}

/// Everything under `/`, with the modes dpkg will install.
fn stage_files(stage: &Path, bin: &Path) -> Result<()> {
    let root = workspace_root();
    let dist = root.join("dist");
    let doc = stage.join("usr/share/doc").join(NAME);
    let sbin = stage.join("usr/sbin/isodhcp");
    copy(bin, &sbin, 0o755)?;
    sh(Command::new("strip")
        .args(["--strip-unneeded", "--remove-section=.comment"])
        .arg(&sbin))?;
    copy(
        &dist.join("isodhcp@.service"),
        &stage.join("lib/systemd/system/isodhcp@.service"),
        0o644,
    )?;
    gzip(
        &root.join("man/isodhcp.8"),
        &stage.join("usr/share/man/man8/isodhcp.8.gz"),
    )?;
    for f in ["README.Debian", "copyright"] {
        copy(&dist.join("debian").join(f), &doc.join(f), 0o644)?;
    }
    copy(
        &dist.join("debian/iface.conf"),
        &doc.join("examples/iface.conf"),
        0o644,
    )?;
    let changelog = stage.join("changelog.tmp");
    fs::write(&changelog, changelog_text()?)?;
    gzip(&changelog, &doc.join("changelog.gz"))?;
    fs::remove_file(&changelog)?;
    copy(
        &dist.join("debian/lintian-overrides"),
        &stage.join("usr/share/lintian/overrides").join(NAME),
        0o644,
    )?;
    for s in ["postinst", "prerm", "postrm"] {
        copy(
            &dist.join("debian").join(s),
            &stage.join("DEBIAN").join(s),
            0o755,
        )?;
    }
    Ok(())
}

/// `DEBIAN/control` and `DEBIAN/md5sums`.
fn write_control(stage: &Path, version: &str, arch: &str) -> Result<()> {
    let depends = shlib_depends(&stage.join("usr/sbin/isodhcp"))?;
    let mut md5 = String::new();
    let mut kib = 0u64;
    for f in files_under(stage)? {
        let rel = f.strip_prefix(stage)?;
        if rel.starts_with("DEBIAN") {
            continue;
        }
        kib += fs::metadata(&f)?.len().div_ceil(1024);
        let sum = output(Command::new("md5sum").arg(&f))
            .with_context(|| format!("md5sum {}", f.display()))?;
        let sum = sum.split_whitespace().next().unwrap_or_default();
        writeln!(md5, "{sum}  {}", rel.display())?;
    }
    let control = format!(
        "Package: {NAME}\nVersion: {version}\nArchitecture: {arch}\n\
         Maintainer: {}\nInstalled-Size: {kib}\n\
         Depends: {depends}, adduser, nftables\nRecommends: bpftool\n\
         Section: net\nPriority: optional\nDescription: {DESCRIPTION}\n",
        maintainer()
    );
    fs::write(stage.join("DEBIAN/control"), control)?;
    fs::write(stage.join("DEBIAN/md5sums"), md5)?;
    Ok(())
}

/// `Depends` for the shared libraries the binary links (dpkg-shlibdeps,
/// which wants a `debian/control` in its working folder).
fn shlib_depends(bin: &Path) -> Result<String> {
    let work = target_dir().join("debian/shlibdeps");
    fs::create_dir_all(work.join("debian"))?;
    fs::write(
        work.join("debian/control"),
        format!("Source: {NAME}\n\nPackage: {NAME}\nArchitecture: any\n"),
    )?;
    let out = output(
        Command::new("dpkg-shlibdeps")
            .current_dir(&work)
            .arg("-O")
            .arg(bin),
    )
    .context("dpkg-shlibdeps failed (apt install dpkg-dev)")?;
    let deps = out
        .lines()
        .find_map(|l| l.strip_prefix("shlibs:Depends="))
        .map(str::trim)
        .filter(|d| !d.is_empty());
    match deps {
        Some(d) => Ok(d.to_string()),
        None => bail!("dpkg-shlibdeps printed no shlibs:Depends: {out}"),
    }
}

fn maintainer() -> String {
    match (std::env::var("DEBFULLNAME"), std::env::var("DEBEMAIL")) {
        (Ok(n), Ok(e)) if !n.is_empty() && !e.is_empty() => format!("{n} <{e}>"),
        _ => MAINTAINER.to_string(),
    }
}

/// A one-entry Debian changelog dated by the last commit (reproducible).
fn changelog_text() -> Result<String> {
    let date = output(Command::new("git").current_dir(workspace_root()).args([
        "log",
        "-1",
        "--format=%cD",
    ]))
    .map(|d| d.trim().to_string())
    .filter(|d| !d.is_empty())
    .unwrap_or_else(|| "Thu, 01 Jan 1970 00:00:00 +0000".into());
    let commit = output(Command::new("git").current_dir(workspace_root()).args([
        "rev-parse",
        "--short",
        "HEAD",
    ]))
    .unwrap_or_default();
    Ok(format!(
        "{NAME} ({}) unstable; urgency=medium\n\n  * Built by cargo xtask deb from commit {}.\n\n -- {}  {date}\n",
        env!("CARGO_PKG_VERSION"),
        commit.trim(),
        maintainer()
    ))
}

/// `lintian` when installed: its findings are printed, not fatal here (the
/// package test asserts there are no errors).
fn lint(deb: &Path) {
    let Some(lintian) = isodhcp_tests::util::find_tool("lintian") else {
        eprintln!("xtask: lintian not installed (cargo xtask setup installs it): not checked");
        return;
    };
    let out = Command::new(lintian).arg(deb).output();
    match out {
        Ok(o) => {
            let text = String::from_utf8_lossy(&o.stdout);
            if text.trim().is_empty() {
                eprintln!("xtask: lintian: clean");
            } else {
                eprintln!("xtask: lintian:\n{}", text.trim_end());
            }
        }
        Err(e) => eprintln!("xtask: lintian did not run: {e}"),
    }
}

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::copy(from, to).with_context(|| format!("{} -> {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// `gzip -9n` (no name or time stamp: reproducible, as lintian wants).
fn gzip(from: &Path, to: &Path) -> Result<()> {
    if let Some(dir) = to.parent() {
        fs::create_dir_all(dir)?;
    }
    let sink = fs::File::create(to).with_context(|| format!("creating {}", to.display()))?;
    let status = Command::new("gzip")
        .args(["-9n", "-c"])
        .arg(from)
        .stdout(sink)
        .status()
        .context("cannot run gzip")?;
    if !status.success() {
        bail!("gzip {} failed: {status}", from.display());
    }
    fs::set_permissions(to, fs::Permissions::from_mode(0o644))?;
    Ok(())
}

fn files_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in fs::read_dir(&d)? {
            let p = e?.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
