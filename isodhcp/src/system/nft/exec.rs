//! Running the `nft` command, bounded in time: applying a JSON document
//! (`nft -j -f -`) and reading state (`nft -j list ...`). These are the only
//! nft command lines isodhcp runs.
//!
//! The daemon awaits nft on its event loop, so an nft that hangs (a stuck
//! netlink socket, a kernel busy with a huge ruleset, a wedged lock) would
//! stop DHCP with it. Every run therefore has a deadline; past it the
//! process is killed, reaped, and the caller gets [`NftError::Timeout`].

use std::ffi::OsStr;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use super::NftError;
use super::model::SetRef;
use nftables::schema::Nftables;

/// Longest one nft run may take.
pub const NFT_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `nft args`, feeding `stdin` if given; its stdout on success.
async fn run_nft(args: &[&str], stdin: Option<&str>) -> Result<String, NftError> {
    run_program(OsStr::new("nft"), args, stdin, NFT_TIMEOUT).await
}

/// Applies one document as one transaction (`nft -j -f -`).
pub(super) async fn apply(doc: &Nftables<'_>) -> Result<(), NftError> {
    let json = super::render::to_json(doc);
    run_nft(&["-j", "-f", "-"], Some(&json)).await.map(|_| ())
}

/// `nft -j list set FAMILY TABLE NAME`.
pub(super) async fn list_set(s: &SetRef) -> Result<String, NftError> {
    run_nft(&["-j", "list", "set", &s.family, &s.table, &s.name], None).await
}

/// `nft -j -a list chain ip TABLE CHAIN`: the rules with their handles.
pub(super) async fn list_chain(table: &str, chain: &str) -> Result<String, NftError> {
    run_nft(&["-j", "-a", "list", "chain", "ip", table, chain], None).await
}

/// `nft -j list table ip TABLE`.
pub(super) async fn list_table(table: &str) -> Result<String, NftError> {
    run_nft(&["-j", "list", "table", "ip", table], None).await
}

/// Runs `program` (nft, or a stand-in in tests) with a deadline.
pub(super) async fn run_program(
    program: &OsStr,
    args: &[&str],
    stdin: Option<&str>,
    limit: Duration,
) -> Result<String, NftError> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().map_err(NftError::Missing)?;
    match tokio::time::timeout(limit, converse(&mut child, stdin)).await {
        Ok(r) => r,
        Err(_) => {
            // Kill and wait, so no zombie is left behind; the result does
            // not matter, the process is gone either way.
            let _ = child.kill().await;
            Err(NftError::Timeout(limit))
        }
    }
}

/// Writes stdin, reads both outputs to their end and waits for the exit.
async fn converse(child: &mut Child, stdin: Option<&str>) -> Result<String, NftError> {
    let failed = |e: std::io::Error| NftError::Failed(e.to_string());
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(text.as_bytes()).await.map_err(failed)?;
        // Dropping the pipe here closes it: nft sees the end of its input.
    }
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut so, mut se) = (child.stdout.take(), child.stderr.take());
    let read_out = async {
        match so.as_mut() {
            Some(p) => p.read_to_end(&mut out).await.map(|_| ()),
            None => Ok(()),
        }
    };
    let read_err = async {
        match se.as_mut() {
            Some(p) => p.read_to_end(&mut err).await.map(|_| ()),
            None => Ok(()),
        }
    };
    let (ro, re, status) = tokio::join!(read_out, read_err, child.wait());
    ro.and(re).map_err(failed)?;
    if status.map_err(failed)?.success() {
        Ok(String::from_utf8_lossy(&out).into_owned())
    } else {
        Err(NftError::Failed(
            String::from_utf8_lossy(&err).trim().replace('\n', " | "),
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::time::Instant;

    use super::*;

    /// A stand-in for nft: a shell script in a fresh private folder.
    fn fake_nft(tag: &str, body: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("isodhcp-fake-nft-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let path = dir.join("nft");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o700)).unwrap();
        path
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn a_hanging_nft_is_killed_at_its_deadline() {
        let nft = fake_nft("hang", "echo $$ > \"$(dirname \"$0\")/pid\"\nexec sleep 30");
        let started = Instant::now();
        let r = rt().block_on(async {
            // The outer bound only keeps a broken build from hanging the suite.
            tokio::time::timeout(
                Duration::from_secs(5),
                run_program(
                    nft.as_os_str(),
                    &["-f", "-"],
                    Some("flush ruleset\n"),
                    Duration::from_millis(300),
                ),
            )
            .await
        });
        let r = r.expect("run_program must give up by itself, not hang");
        assert!(matches!(r, Err(NftError::Timeout(_))), "{r:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        // The stand-in is gone, not left running (or as a zombie).
        let pid = std::fs::read_to_string(nft.with_file_name("pid")).unwrap();
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid.trim()));
        assert!(stat.is_err(), "nft still there: {stat:?}");
        let _ = std::fs::remove_dir_all(nft.parent().unwrap());
    }

    #[test]
    fn a_prompt_nft_answers_as_before() {
        let nft = fake_nft(
            "ok",
            "cat >/dev/null\necho '{\"nftables\":[]}'\necho oops >&2\n[ \"$1\" = -j ]",
        );
        let rt = rt();
        let run = |args: &'static [&'static str]| {
            rt.block_on(run_program(
                nft.as_os_str(),
                args,
                Some("x\n"),
                Duration::from_secs(5),
            ))
        };
        assert_eq!(run(&["-j"]).unwrap().trim(), "{\"nftables\":[]}");
        assert!(matches!(run(&["-f"]), Err(NftError::Failed(m)) if m == "oops"));
        let _ = std::fs::remove_dir_all(nft.parent().unwrap());
    }
}
