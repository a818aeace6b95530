//! Crafted DHCP frames from a client namespace (tests of design.md §Modes, §Protocol).
//!
//! [`RawPort`] is an `AF_PACKET` raw socket created by a thread that joined
//! the client's network namespace (the socket stays in that namespace and is
//! then used from the test thread). It sends whole Ethernet frames built with
//! the daemon's public codec (`isodhcp::wire`) and receives the server's
//! replies (UDP 67 → 68) with bounded waits. Every wait is a `poll(2)` with a
//! deadline; nothing sleeps and hopes.
//!
//! Silence checks ([`Dhcp::expect_silence`]) wait a fixed window; tests
//! follow them with a frame that must be answered, which proves the daemon
//! was alive and had read the ignored frame (frames are handled in order).

use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use isodhcp::wire::Mac;
use isodhcp::wire::dhcp::{BOOTREPLY, BOOTREQUEST, FLAG_BROADCAST, HTYPE_ETHERNET, Message};
use isodhcp::wire::frame::{self, Addressing, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, ETH_P_IP};
use isodhcp::wire::options::{self, MessageType};

use crate::daemon::DaemonConfig;
use crate::lab::{Client, Lab, SERVER_IP};

mod lease_file;

pub use lease_file::{lease_entry, lease_files_text, lease_json, quarantine, wait_lease_entry};

/// MAC of `srv0` in every lab (set by [`Lab::build`]).
pub const SERVER_MAC: Mac = Mac([0x02, 0x1d, 0, 0, 0, 0x01]);
/// How long a reply may take.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(6);
/// Window in which an ignored frame must stay unanswered.
pub const SILENCE: Duration = Duration::from_millis(1500);

/// A crafted-client MAC: `02:1e:00:00:<a>:<b>` (locally administered; every
/// lab has its own bridge, so tests may reuse them).
pub fn mac(a: u8, b: u8) -> Mac {
    Mac([0x02, 0x1e, 0, 0, a, b])
}

/// Parse `aa:bb:..` (a lab client's MAC).
pub fn parse_mac(s: &str) -> Mac {
    Mac::parse(s).unwrap_or_else(|| panic!("bad MAC {s:?}"))
}

/// Daemon configuration for crafted-frame tests: the lab defaults with the
/// per-MAC rate limit raised (tests send many frames per MAC on purpose) and
/// `--xdp off` unless `ISODHCP_XDP` says otherwise.
/// A one-client lab with the daemon started (see [`config`]) and a raw
/// port in the client namespace: the fixture of the RFC 2131 suites.
pub fn setup(tag: &str) -> (Lab, crate::Daemon, Dhcp) {
    setup_with(tag, &[])
}

/// [`setup`] with `extra` daemon arguments after those of [`config`].
pub fn setup_with(tag: &str, extra: &[&str]) -> (Lab, crate::Daemon, Dhcp) {
    crate::preflight().expect("preflight");
    let lab = Lab::new(tag, 1).expect("building the lab");
    let mut cfg = config(&lab);
    cfg.extra
        .extend(extra.iter().map(std::string::ToString::to_string));
    let d = lab.start_isodhcp(&cfg).expect("isodhcp start");
    let dhcp = Dhcp::open(lab.client(0)).expect("raw socket in the client namespace");
    (lab, d, dhcp)
}

pub fn config(lab: &Lab) -> DaemonConfig {
    let mut c = DaemonConfig::for_lab(lab).expect("daemon configuration");
    c.extra.extend(
        ["--rate-limit", "1000", "--rate-burst", "1000"]
            .iter()
            .map(std::string::ToString::to_string),
    );
    c
}

fn next_xid() -> u32 {
    static N: AtomicU32 = AtomicU32::new(1);
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (std::process::id() << 20) ^ t ^ N.fetch_add(1, Ordering::Relaxed).wrapping_mul(0x9e37_79b9)
}

/// A BOOTREQUEST of `kind` from `mac` with a fresh xid and option 53 only.
pub fn request(kind: MessageType, mac: Mac) -> Message {
    let mut chaddr = [0u8; 16];
    chaddr[..6].copy_from_slice(&mac.0);
    let mut m = Message {
        op: BOOTREQUEST,
        htype: HTYPE_ETHERNET,
        hlen: 6,
        xid: next_xid(),
        chaddr,
        ..Message::default()
    };
    m.options.set(options::MESSAGE_TYPE, vec![kind as u8]);
    m
}

/// Option 82 with a circuit-id and a remote-id sub-option (RFC 3046).
pub fn relay_agent_info() -> Vec<u8> {
    let mut v = vec![1, 6];
    v.extend_from_slice(b"ap1-p4");
    v.extend_from_slice(&[2, 8]);
    v.extend_from_slice(b"remote-9");
    v
}

/// A server reply seen on the wire.
#[derive(Debug, Clone)]
pub struct Captured {
    pub dst_mac: Mac,
    pub src_mac: Mac,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    /// The UDP payload (the BOOTP message) as sent.
    pub payload: Vec<u8>,
    pub msg: Message,
}

impl Captured {
    pub fn kind(&self) -> Option<MessageType> {
        self.msg.options.message_type()
    }
    pub fn opt(&self, code: u8) -> Option<&[u8]> {
        self.msg.options.get(code)
    }
    pub fn opt_ip(&self, code: u8) -> Option<Ipv4Addr> {
        self.msg.options.get_ip(code)
    }
    pub fn opt_u32(&self, code: u8) -> Option<u32> {
        let b: [u8; 4] = self.opt(code)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }
    /// Option codes in the order they appear on the wire (PAD skipped, up
    /// to END; main option area only).
    pub fn wire_codes(&self) -> Vec<u8> {
        wire_option_codes(&self.payload)
    }
    pub fn is_broadcast(&self) -> bool {
        self.dst_mac == Mac::BROADCAST && self.dst_ip == Ipv4Addr::BROADCAST
    }
}

/// Option codes of a BOOTP payload's main option area, in wire order.
pub fn wire_option_codes(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 240;
    while i < p.len() {
        match p[i] {
            options::PAD => i += 1,
            options::END => break,
            c => {
                out.push(c);
                let Some(&len) = p.get(i + 1) else { break };
                i += 2 + usize::from(len);
            }
        }
    }
    out
}

/// AF_PACKET raw socket bound to one interface of a namespace.
pub struct RawPort {
    fd: OwnedFd,
    pub ifname: String,
}

const PACKET_OUTGOING: u8 = 4;

impl RawPort {
    /// Open on `ifname` inside `ns`.
    pub fn open(ns: &crate::netns::Netns, ifname: &str) -> Result<RawPort> {
        let name = ifname.to_string();
        let fd = ns.run_in(move || {
            let proto = (ETH_P_IP).to_be();
            // SAFETY: plain socket(2) call; the fd is owned right after.
            let raw = unsafe {
                libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                    i32::from(proto),
                )
            };
            if raw < 0 {
                bail!("socket(AF_PACKET): {}", std::io::Error::last_os_error());
            }
            // SAFETY: `raw` is a fresh, valid fd that nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let cname = std::ffi::CString::new(name.clone())?;
            // SAFETY: valid NUL-terminated string.
            let idx = unsafe { libc::if_nametoindex(cname.as_ptr()) };
            if idx == 0 {
                bail!("no interface {name} in this namespace");
            }
            // SAFETY: zeroed sockaddr_ll is a valid value.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = idx as i32;
            // SAFETY: bind with a correctly sized sockaddr_ll.
            let rc = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                    std::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            if rc != 0 {
                bail!(
                    "bind(AF_PACKET, {name}): {}",
                    std::io::Error::last_os_error()
                );
            }
            Ok(fd)
        })?;
        Ok(RawPort {
            fd,
            ifname: ifname.to_string(),
        })
    }

    /// Send one Ethernet frame.
    pub fn send(&self, f: &[u8]) -> Result<()> {
        // SAFETY: send(2) from a valid buffer on our bound socket.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), f.as_ptr().cast(), f.len(), 0) };
        if n < 0 || n as usize != f.len() {
            bail!(
                "send on {}: {}",
                self.ifname,
                std::io::Error::last_os_error()
            );
        }
        Ok(())
    }

    /// Next received (not outgoing) frame before `deadline`.
    pub fn recv(&self, deadline: Instant) -> Result<Option<Vec<u8>>> {
        let mut buf = vec![0u8; 4096];
        // Bounded: each round either returns or consumes wall time until the deadline.
        for _ in 0..100_000 {
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let ms = (deadline - now).as_millis().clamp(1, 1000) as i32;
            let mut pfd = libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::Interrupted {
                    continue;
                }
                bail!("poll: {e}");
            }
            if rc == 0 {
                continue;
            }
            // SAFETY: zeroed sockaddr_ll is valid; recvfrom writes at most its size.
            let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
            let mut sl = std::mem::size_of::<libc::sockaddr_ll>() as u32;
            let n = unsafe {
                libc::recvfrom(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    libc::MSG_DONTWAIT,
                    &mut sll as *mut libc::sockaddr_ll as *mut libc::sockaddr,
                    &mut sl,
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
                ) {
                    continue;
                }
                bail!("recvfrom: {e}");
            }
            if sll.sll_pkttype == PACKET_OUTGOING {
                continue;
            }
            return Ok(Some(buf[..n as usize].to_vec()));
        }
        Ok(None)
    }

    /// Discard everything queued.
    pub fn drain(&self) {
        let d = Instant::now() + Duration::from_millis(1);
        for _ in 0..10_000 {
            match self.recv(d) {
                Ok(Some(_)) => {}
                _ => break,
            }
        }
    }
}

/// Where a crafted frame goes.
#[derive(Debug, Clone, Copy)]
pub enum To {
    /// 0.0.0.0 → 255.255.255.255 at ff:ff:ff:ff:ff:ff.
    Broadcast,
    /// `src` → the server IP at the server MAC (RENEWING, INFORM, RELEASE).
    Server { src: Ipv4Addr },
}

/// Crafted DHCP client on one lab client's interface.
pub struct Dhcp {
    pub port: RawPort,
}

impl Dhcp {
    pub fn open(c: &Client) -> Result<Dhcp> {
        Ok(Dhcp {
            port: RawPort::open(&c.ns, &c.ifname)?,
        })
    }

    /// Send `msg` with the Ethernet source = its chaddr.
    pub fn send(&self, msg: &Message, to: To) -> Result<()> {
        self.send_as(msg, msg.client_mac(), to)
    }

    /// Send `msg` with an explicit Ethernet source.
    pub fn send_as(&self, msg: &Message, eth_src: Mac, to: To) -> Result<()> {
        let payload = msg
            .emit(None, 0)
            .map_err(|e| anyhow!("encoding request: {e}"))?;
        let (src_ip, dst_ip, dst_mac) = match to {
            To::Broadcast => (Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST, Mac::BROADCAST),
            To::Server { src } => (src, SERVER_IP, SERVER_MAC),
        };
        let f = frame::build(
            &Addressing {
                src_mac: eth_src,
                dst_mac,
                src_ip,
                dst_ip,
                src_port: DHCP_CLIENT_PORT,
                dst_port: DHCP_SERVER_PORT,
            },
            &payload,
        )
        .map_err(|e| anyhow!("building frame: {e}"))?;
        self.port.send(&f)
    }

    /// Wait for a server reply to xid `xid` (UDP 67 → 68, op 2).
    pub fn wait_reply(&self, xid: u32, deadline: Instant) -> Result<Option<Captured>> {
        for _ in 0..100_000 {
            let Some(f) = self.port.recv(deadline)? else {
                return Ok(None);
            };
            let Ok(u) = frame::parse(&f) else { continue };
            if u.src_port != DHCP_SERVER_PORT || u.dst_port != DHCP_CLIENT_PORT {
                continue;
            }
            let Ok(msg) = Message::parse(u.payload) else {
                continue;
            };
            if msg.op != BOOTREPLY || msg.xid != xid {
                continue;
            }
            return Ok(Some(Captured {
                dst_mac: u.dst_mac,
                src_mac: u.src_mac,
                src_ip: u.src_ip,
                dst_ip: u.dst_ip,
                src_port: u.src_port,
                dst_port: u.dst_port,
                payload: u.payload.to_vec(),
                msg,
            }));
        }
        Ok(None)
    }

    /// Send and wait for the reply; retransmits every 2 s (like a client)
    /// until [`REPLY_TIMEOUT`]. `None` if nothing came.
    pub fn exchange_to(&self, msg: &Message, to: To) -> Result<Option<Captured>> {
        self.port.drain();
        let end = Instant::now() + REPLY_TIMEOUT;
        for _ in 0..10 {
            self.send(msg, to)?;
            let d = (Instant::now() + Duration::from_secs(2)).min(end);
            if let Some(r) = self.wait_reply(msg.xid, d)? {
                return Ok(Some(r));
            }
            if Instant::now() >= end {
                break;
            }
        }
        Ok(None)
    }

    /// Broadcast `msg`; a reply is required.
    pub fn expect_reply(&self, msg: &Message) -> Result<Captured> {
        self.expect_reply_to(msg, To::Broadcast)
    }

    pub fn expect_reply_to(&self, msg: &Message, to: To) -> Result<Captured> {
        self.exchange_to(msg, to)?.ok_or_else(|| {
            anyhow!(
                "no reply within {REPLY_TIMEOUT:?} to {:?} from {} (xid {:#x})",
                msg.options.message_type(),
                msg.client_mac(),
                msg.xid
            )
        })
    }

    /// Send once (Ethernet source `eth_src`) and require that nothing
    /// answers xid within [`SILENCE`].
    pub fn expect_silence_as(&self, msg: &Message, eth_src: Mac, to: To) -> Result<()> {
        self.port.drain();
        self.send_as(msg, eth_src, to)?;
        if let Some(r) = self.wait_reply(msg.xid, Instant::now() + SILENCE)? {
            bail!(
                "expected no reply to {:?} from {} but got {:?} (yiaddr {}, to {} / {})",
                msg.options.message_type(),
                msg.client_mac(),
                r.kind(),
                r.msg.yiaddr,
                r.dst_ip,
                r.dst_mac
            );
        }
        Ok(())
    }

    pub fn expect_silence(&self, msg: &Message, to: To) -> Result<()> {
        self.expect_silence_as(msg, msg.client_mac(), to)
    }

    /// DISCOVER from `mac` (with `extra` options) → the OFFER.
    pub fn discover(&self, mac: Mac, extra: &[(u8, Vec<u8>)]) -> Result<Captured> {
        let mut d = request(MessageType::Discover, mac);
        for (c, v) in extra {
            d.options.set(*c, v.clone());
        }
        let r = self.expect_reply(&d)?;
        if r.kind() != Some(MessageType::Offer) {
            bail!(
                "DISCOVER from {mac} answered with {:?}, not OFFER",
                r.kind()
            );
        }
        Ok(r)
    }

    /// REQUEST (SELECTING) for `ip` naming our server → the reply.
    pub fn select(&self, mac: Mac, ip: Ipv4Addr, extra: &[(u8, Vec<u8>)]) -> Result<Captured> {
        let mut r = request(MessageType::Request, mac);
        r.options.set_ip(options::SERVER_ID, SERVER_IP);
        r.options.set_ip(options::REQUESTED_IP, ip);
        for (c, v) in extra {
            r.options.set(*c, v.clone());
        }
        self.expect_reply(&r)
    }

    /// Full DISCOVER/OFFER/REQUEST/ACK; returns (OFFER, ACK). Fails unless
    /// the second reply is an ACK for the offered address.
    pub fn dora(&self, mac: Mac, extra: &[(u8, Vec<u8>)]) -> Result<(Captured, Captured)> {
        let offer = self.discover(mac, extra)?;
        let ack = self.select(mac, offer.msg.yiaddr, extra)?;
        if ack.kind() != Some(MessageType::Ack) || ack.msg.yiaddr != offer.msg.yiaddr {
            bail!(
                "REQUEST for offered {} from {mac} answered with {:?} yiaddr {}",
                offer.msg.yiaddr,
                ack.kind(),
                ack.msg.yiaddr
            );
        }
        Ok((offer, ack))
    }

    /// RENEWING REQUEST (ciaddr = `ip`, unicast to the server) → reply.
    pub fn renew(&self, mac: Mac, ip: Ipv4Addr) -> Result<Captured> {
        let mut r = request(MessageType::Request, mac);
        r.ciaddr = ip;
        self.expect_reply_to(&r, To::Server { src: ip })
    }

    /// RELEASE of `ip` from `mac` (unicast to the server; no reply expected).
    pub fn release(&self, mac: Mac, ip: Ipv4Addr) -> Result<()> {
        let mut r = request(MessageType::Release, mac);
        r.ciaddr = ip;
        r.options.set_ip(options::SERVER_ID, SERVER_IP);
        self.send(&r, To::Server { src: ip })
    }

    /// DECLINE of `ip` from `mac` (broadcast, option 50 and 54; RFC 2131 §4.4.1).
    pub fn decline(&self, mac: Mac, ip: Ipv4Addr) -> Result<()> {
        let mut r = request(MessageType::Decline, mac);
        r.options.set_ip(options::REQUESTED_IP, ip);
        r.options.set_ip(options::SERVER_ID, SERVER_IP);
        self.send(&r, To::Broadcast)
    }
}

/// Set the broadcast flag on a request.
pub fn with_broadcast(mut m: Message) -> Message {
    m.flags |= FLAG_BROADCAST;
    m
}

/// IPv4 addresses (with prefix) on the server's `srv0`.
pub fn server_addrs(lab: &Lab) -> Vec<crate::netinfo::Addr> {
    crate::netinfo::addrs(&lab.server, crate::lab::SERVER_IF).unwrap_or_default()
}

/// Does the server namespace have a proto-108 route to `ip`?
pub fn has_route(lab: &Lab, ip: Ipv4Addr) -> bool {
    lab.server_routes()
        .map(|r| r.iter().any(|r| r.host() == Some(ip)))
        .unwrap_or(false)
}
