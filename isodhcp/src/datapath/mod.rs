//! Frame I/O for DHCP: receive client frames, send frames we built.
//!
//! [`FrameIo`] is the one interface the daemon uses. [`af_packet`] is the
//! packet socket with a classic BPF filter (design.md §Datapath, `--xdp off` path, and
//! the fallback for queues without an XDP socket); [`af_xdp`] receives what
//! the XDP program redirects. [`Hybrid`] serves both at once and answers on
//! the path a request came in on. Whatever the datapath, a UDP socket is
//! bound to port 67 on the interface ([`PortGuard`]) so the kernel never
//! answers DHCP traffic with ICMP port-unreachable (design.md §Protocol).
//! [`limiter`] applies the XDP program's admission rules in userspace when
//! XDP is off.

pub mod af_packet;
pub mod af_xdp;
pub mod ethtool;
pub mod limiter;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

/// Where a frame came in, so its reply leaves the same way: the packet
/// socket, or the AF_XDP socket of an RX queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    #[default]
    Packet,
    Xsk(usize),
}

/// Receives and sends whole Ethernet frames on one interface.
pub trait FrameIo {
    /// Waits for the next frame and copies it into `buf`; returns its length.
    fn recv(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<(usize, Origin)>>;
    /// Takes a frame that is already queued, without waiting (for batching).
    fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, Origin)>>;
    /// Sends one complete Ethernet frame the way `origin` came in; it may
    /// wait in a ring until [`FrameIo::flush_tx`].
    fn send(&mut self, frame: &[u8], origin: Origin) -> io::Result<()>;
    /// Transmits whatever `send` left queued; the daemon calls it once
    /// after a batch's replies.
    fn flush_tx(&mut self) {}
}

/// A UDP socket bound to 0.0.0.0:67 on the interface; what arrives on it is
/// discarded (the frame socket already saw it).
pub struct PortGuard {
    sock: tokio::net::UdpSocket,
}

impl PortGuard {
    pub fn bind(iface: &str) -> io::Result<PortGuard> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.bind_device(Some(iface.as_bytes()))?;
        s.set_reuse_address(true)?;
        s.set_broadcast(true)?;
        s.set_nonblocking(true)?;
        s.set_recv_buffer_size(64 * 1024)?;
        s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 67).into())?;
        let sock = tokio::net::UdpSocket::from_std(s.into())?;
        Ok(PortGuard { sock })
    }

    /// Drains the socket forever; run as a task.
    pub async fn drain(self) {
        let mut buf = [0u8; 1500];
        while self.sock.recv(&mut buf).await.is_ok() {}
    }
}

/// AF_XDP sockets plus the AF_PACKET fallback.
pub struct Hybrid {
    pub xdp: af_xdp::AfXdp,
    pub packet: af_packet::AfPacket,
    spare: Vec<u8>,
}

impl Hybrid {
    pub fn new(xdp: af_xdp::AfXdp, packet: af_packet::AfPacket) -> Hybrid {
        Hybrid {
            xdp,
            packet,
            spare: vec![0; 2048],
        }
    }
}

impl FrameIo for Hybrid {
    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<(usize, Origin)> {
        let Hybrid { xdp, packet, spare } = self;
        spare.resize(buf.len(), 0);
        tokio::select! {
            r = xdp.recv(buf) => r,
            r = packet.recv(spare) => {
                let (n, o) = r?;
                buf[..n].copy_from_slice(&spare[..n]);
                Ok((n, o))
            }
        }
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, Origin)>> {
        match self.xdp.try_recv(buf) {
            Some(r) => Ok(Some(r)),
            None => self.packet.try_recv(buf),
        }
    }

    fn send(&mut self, frame: &[u8], origin: Origin) -> io::Result<()> {
        match origin {
            Origin::Xsk(q) => self.xdp.send(frame, q),
            Origin::Packet => self.packet.send(frame, origin),
        }
    }

    fn flush_tx(&mut self) {
        self.xdp.flush_tx();
    }
}

/// The datapath the daemon runs.
pub enum Datapath {
    Packet(af_packet::AfPacket),
    Hybrid(Hybrid),
}

impl FrameIo for Datapath {
    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<(usize, Origin)> {
        match self {
            Datapath::Packet(p) => p.recv(buf).await,
            Datapath::Hybrid(h) => h.recv(buf).await,
        }
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, Origin)>> {
        match self {
            Datapath::Packet(p) => p.try_recv(buf),
            Datapath::Hybrid(h) => h.try_recv(buf),
        }
    }

    fn send(&mut self, frame: &[u8], origin: Origin) -> io::Result<()> {
        match self {
            Datapath::Packet(p) => p.send(frame, origin),
            Datapath::Hybrid(h) => h.send(frame, origin),
        }
    }

    fn flush_tx(&mut self) {
        if let Datapath::Hybrid(h) = self {
            h.flush_tx();
        }
    }
}
