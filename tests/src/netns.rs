//! Named network namespace guard and socket helpers that run inside a namespace.

use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};

use crate::util::{self, CMD_TIMEOUT};

/// A named network namespace (`ip netns add`). `Drop` kills every process
/// still inside it (SIGKILL, by pid from `ip netns pids`), deletes it and
/// removes `/etc/netns/NAME`.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Create the namespace, bring `lo` up and create
    /// `/etc/netns/NAME/resolv.conf` so that anything run with
    /// `ip netns exec NAME` writes that file instead of the host's.
    pub fn create(name: &str) -> Result<Netns> {
        if name.len() > 64 || name.contains('/') || name.is_empty() {
            bail!("bad namespace name {name:?}");
        }
        if std::path::Path::new("/run/netns").join(name).exists() {
            bail!("namespace {name} already exists (stale from an earlier run?)");
        }
        // Create the resolv.conf shadow first: no window in which a client
        // could see the host's file.
        let etc = PathBuf::from("/etc/netns").join(name);
        std::fs::create_dir_all(&etc).with_context(|| format!("creating {}", etc.display()))?;
        std::fs::write(
            etc.join("resolv.conf"),
            "# isodhcp-tests: namespace-private resolv.conf\n",
        )
        .context("writing namespace resolv.conf")?;
        let ns = Netns {
            name: name.to_string(),
        };
        util::ip(&["netns", "add", name])?;
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Path of the namespace-private resolv.conf (`/etc/netns/NAME/resolv.conf`).
    pub fn resolv_conf(&self) -> PathBuf {
        PathBuf::from("/etc/netns")
            .join(&self.name)
            .join("resolv.conf")
    }

    /// `ip -n NAME ARGS...`, must succeed; returns stdout.
    pub fn ip(&self, args: &[&str]) -> Result<String> {
        let mut v = vec!["-n", self.name.as_str()];
        v.extend_from_slice(args);
        util::ip(&v)
    }

    /// `ip -j -n NAME ARGS...` parsed as JSON.
    pub fn ip_json(&self, args: &[&str]) -> Result<serde_json::Value> {
        let mut v = vec!["-j", "-n", self.name.as_str()];
        v.extend_from_slice(args);
        let out = util::ip(&v)?;
        if out.trim().is_empty() {
            return Ok(serde_json::Value::Array(vec![]));
        }
        serde_json::from_str(&out)
            .with_context(|| format!("parsing `ip {}` JSON: {out}", v.join(" ")))
    }

    /// Command run with `ip netns exec NAME unshare --uts -- PROG` (private
    /// resolv.conf bind mount and a private host name). Use for DHCP clients
    /// and anything that may run hook scripts.
    pub fn exec_cmd(&self, prog: &str) -> Command {
        let mut c = util::tool_cmd("ip");
        let unshare = util::tool_path("unshare");
        let prog = util::tool_path(prog);
        c.args(["netns", "exec", &self.name, &unshare, "--uts", "--", &prog]);
        c
    }

    /// Command run with `nsenter --net=/run/netns/NAME -- PROG`: network
    /// namespace only, same mount namespace (sees /sys/fs/bpf). For daemons.
    pub fn nsenter_cmd(&self, prog: &str) -> Command {
        let mut c = util::tool_cmd("nsenter");
        c.arg(format!("--net={}", self.path().display()))
            .arg("--")
            .arg(util::tool_path(prog));
        c
    }

    /// Run a short command inside (nsenter), must succeed; returns stdout.
    pub fn run_ok(&self, prog: &str, args: &[&str]) -> Result<String> {
        util::run_ok(self.nsenter_cmd(prog).args(args), CMD_TIMEOUT)
    }

    /// Pids of processes whose network namespace is this one.
    pub fn pids(&self) -> Vec<i32> {
        util::run(
            util::tool_cmd("ip").args(["netns", "pids", &self.name]),
            CMD_TIMEOUT,
        )
        .map(|o| {
            o.stdout
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
    }

    /// Run `f` on a fresh thread whose network namespace is this one, and
    /// return its result. Sockets created by `f` stay in this namespace.
    pub fn run_in<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let path = self.path();
        std::thread::spawn(move || -> Result<T> {
            let file = std::fs::File::open(&path)
                .with_context(|| format!("opening {}", path.display()))?;
            // SAFETY: plain syscall on a valid fd; affects only this thread.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                bail!(
                    "setns({}): {}",
                    path.display(),
                    std::io::Error::last_os_error()
                );
            }
            f()
        })
        .join()
        .map_err(|_| anyhow!("namespace thread panicked"))?
    }

    /// Start a TCP listener on `addr:port` inside this namespace; it accepts
    /// connections in the background and answers each with
    /// `isodhcp-lab <peer address>\n`.
    pub fn tcp_listen(&self, addr: Ipv4Addr, port: u16) -> Result<TcpServer> {
        let sa = SocketAddrV4::new(addr, port);
        let listener =
            self.run_in(move || TcpListener::bind(sa).with_context(|| format!("bind {sa}")))?;
        TcpServer::start(listener, sa)
    }

    /// Connect from inside this namespace to `addr:port` (timeout 5 s) and
    /// return the banner line the [`TcpServer`] sent.
    pub fn tcp_connect(&self, addr: Ipv4Addr, port: u16) -> Result<String> {
        let sa = SocketAddr::V4(SocketAddrV4::new(addr, port));
        let ns = self.name.clone();
        self.run_in(move || {
            let t = Duration::from_secs(5);
            let s = TcpStream::connect_timeout(&sa, t)
                .with_context(|| format!("TCP connect from {ns} to {sa}"))?;
            s.set_read_timeout(Some(t))?;
            let mut line = String::new();
            BufReader::new(s)
                .read_line(&mut line)
                .with_context(|| format!("reading banner from {sa} in {ns}"))?;
            Ok(line.trim().to_string())
        })
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // Kill what is left inside (bounded: a few rounds, 3 s).
        let deadline = Instant::now() + Duration::from_secs(3);
        for _ in 0..30 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for p in pids {
                // SAFETY: kill(2) on a pid that `ip netns pids` reported for
                // this namespace (a namespace this guard created).
                unsafe { libc::kill(p, libc::SIGKILL) };
            }
            if Instant::now() >= deadline {
                eprintln!("isodhcp-tests: processes still alive in {}", self.name);
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Err(e) = util::ip(&["netns", "del", &self.name]) {
            eprintln!("isodhcp-tests: deleting namespace {}: {e:#}", self.name);
        }
        let _ = std::fs::remove_dir_all(PathBuf::from("/etc/netns").join(&self.name));
    }
}

/// Background TCP acceptor (see [`Netns::tcp_listen`]). Stops on drop; also
/// stops by itself after 10 minutes.
pub struct TcpServer {
    addr: SocketAddrV4,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpServer {
    fn start(listener: TcpListener, addr: SocketAddrV4) -> Result<TcpServer> {
        listener.set_nonblocking(true)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let thread = std::thread::spawn(move || {
            let end = Instant::now() + Duration::from_secs(600);
            while !stop2.load(Ordering::Relaxed) && Instant::now() < end {
                match listener.accept() {
                    Ok((mut s, peer)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
                        let _ = writeln!(s, "isodhcp-lab {}", peer.ip());
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        Ok(TcpServer {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddrV4 {
        self.addr
    }
}

impl Drop for TcpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
