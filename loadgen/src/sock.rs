//! AF_PACKET raw socket bound to one interface.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use isodhcp::wire::Mac;

const ETH_P_IP: u16 = 0x0800;
const PACKET_QDISC_BYPASS: libc::c_int = 20;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;

/// Classic BPF: IPv4, UDP, not a fragment, destination port 68
/// (`tcpdump -dd 'ip and udp dst port 68'`).
const FILTER_UDP_DST_68: [libc::sock_filter; 11] = [
    bpf(0x28, 0, 0, 12),
    bpf(0x15, 0, 8, 0x0800),
    bpf(0x30, 0, 0, 23),
    bpf(0x15, 0, 6, 17),
    bpf(0x28, 0, 0, 20),
    bpf(0x45, 4, 0, 0x1fff),
    bpf(0xb1, 0, 0, 14),
    bpf(0x48, 0, 0, 16),
    bpf(0x15, 0, 1, 68),
    bpf(0x06, 0, 0, 0x0004_0000),
    bpf(0x06, 0, 0, 0),
];

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// A packet socket on one interface.
pub struct PacketSocket {
    fd: OwnedFd,
    pub ifindex: i32,
    pub mac: Mac,
}

fn check(rc: libc::c_int, what: &str) -> Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error()).with_context(|| what.to_string())
    } else {
        Ok(rc)
    }
}

fn setsockopt<T>(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    v: &T,
    what: &str,
) -> Result<()> {
    // SAFETY: `v` points to a valid T of the given size for the call.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (v as *const T).cast(),
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    check(rc, what).map(|_| ())
}

/// Best-effort transmit tuning: bypass the qdisc layer (veth has none
/// anyway) and a 4 MiB send buffer.
fn tune_send(fd: RawFd) {
    let one: libc::c_int = 1;
    let _ = setsockopt(
        fd,
        libc::SOL_PACKET,
        PACKET_QDISC_BYPASS,
        &one,
        "PACKET_QDISC_BYPASS",
    );
    let sndbuf: libc::c_int = 4 << 20;
    let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, &sndbuf, "SO_SNDBUF");
}

/// Receive set-up: the IPv4/UDP-to-port-68 filter (required), then, best
/// effort, no copies of our own frames and a 4 MiB receive buffer.
fn setup_receive(fd: RawFd) -> Result<()> {
    let one: libc::c_int = 1;
    let prog = libc::sock_fprog {
        len: FILTER_UDP_DST_68.len() as u16,
        filter: FILTER_UDP_DST_68.as_ptr() as *mut _,
    };
    setsockopt(
        fd,
        libc::SOL_SOCKET,
        libc::SO_ATTACH_FILTER,
        &prog,
        "SO_ATTACH_FILTER",
    )?;
    let _ = setsockopt(
        fd,
        libc::SOL_PACKET,
        PACKET_IGNORE_OUTGOING,
        &one,
        "PACKET_IGNORE_OUTGOING",
    );
    let rcvbuf: libc::c_int = 4 << 20;
    let _ = setsockopt(fd, libc::SOL_SOCKET, libc::SO_RCVBUF, &rcvbuf, "SO_RCVBUF");
    Ok(())
}

/// Binds the socket to `ifindex` for ethertype `proto` (host order; 0:
/// receive nothing).
fn bind_ll(fd: RawFd, ifindex: i32, proto: u16) -> Result<()> {
    // SAFETY: zeroed sockaddr_ll is valid; fields set below.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto.to_be();
    sll.sll_ifindex = ifindex;
    // SAFETY: sll is a valid sockaddr_ll of the given size.
    check(
        unsafe {
            libc::bind(
                fd,
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        },
        "bind(AF_PACKET)",
    )?;
    Ok(())
}

/// The interface's MAC: getsockname() on a bound packet socket reports the
/// device address.
fn bound_mac(fd: RawFd) -> Result<Mac> {
    // SAFETY: out-parameters sized correctly.
    let mut got: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    check(
        unsafe { libc::getsockname(fd, (&mut got as *mut libc::sockaddr_ll).cast(), &mut len) },
        "getsockname(AF_PACKET)",
    )?;
    let mut mac = [0u8; 6];
    mac.copy_from_slice(&got.sll_addr[..6]);
    Ok(Mac(mac))
}

impl PacketSocket {
    /// Opens a socket on `ifname`. `receive`: also receive IPv4/UDP frames to
    /// port 68 (classic BPF filter, attached before binding, so nothing else
    /// is ever queued); otherwise the socket is transmit-only.
    pub fn open(ifname: &str, receive: bool) -> Result<PacketSocket> {
        let name = CString::new(ifname).context("interface name")?;
        // SAFETY: valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
        if ifindex == 0 {
            bail!("interface {ifname} not found in this network namespace");
        }
        // Protocol 0: no frames are delivered until bind() names one.
        // SAFETY: plain syscall.
        let raw = check(
            unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) },
            "socket(AF_PACKET) (needs CAP_NET_RAW)",
        )?;
        // SAFETY: fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        tune_send(fd.as_raw_fd());
        let proto = if receive {
            setup_receive(fd.as_raw_fd())?;
            ETH_P_IP
        } else {
            0
        };
        bind_ll(fd.as_raw_fd(), ifindex, proto)?;
        let mac = bound_mac(fd.as_raw_fd())?;
        Ok(PacketSocket { fd, ifindex, mac })
    }

    pub fn send(&self, frame: &[u8]) -> Result<bool> {
        // SAFETY: valid buffer; the socket is bound, so no address is needed.
        let rc = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOBUFS | libc::EAGAIN) => Ok(false),
                _ => Err(e).context("send"),
            };
        }
        Ok(true)
    }

    /// Sends up to `frames.len()` frames in one sendmmsg(); returns how many
    /// the kernel took (0 when it had no room).
    pub fn send_batch(&self, frames: &[Vec<u8>]) -> Result<usize> {
        let mut iovs: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut _,
                iov_len: f.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iovs
            .iter_mut()
            .map(|iov| {
                // SAFETY: zeroed msghdr is valid; iov set below.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov as *mut libc::iovec;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        // SAFETY: msgs/iovs are valid for the duration of the call.
        let rc = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                msgs.len() as libc::c_uint,
                0,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::ENOBUFS | libc::EAGAIN) => Ok(0),
                _ => Err(e).context("sendmmsg"),
            };
        }
        Ok(rc as usize)
    }

    /// Waits up to `timeout` for a frame to be readable.
    pub fn wait_readable(&self, timeout: Duration) -> Result<bool> {
        let mut p = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut p, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(e).context("poll");
        }
        Ok(rc > 0)
    }

    /// Non-blocking receive; `None` when nothing is queued.
    pub fn try_recv<'a>(&self, buf: &'a mut [u8]) -> Result<Option<&'a [u8]>> {
        // SAFETY: valid buffer.
        let rc = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(None),
                _ => Err(e).context("recv"),
            };
        }
        Ok(Some(&buf[..rc as usize]))
    }
}
