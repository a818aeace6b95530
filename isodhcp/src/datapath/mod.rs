//! Frame I/O for DHCP: receive client frames, send frames we built.
//!
//! [`FrameIo`] is the one interface the daemon uses; [`af_packet`] implements
//! it with a packet socket and a classic BPF filter (SPEC §9 `--xdp off`
//! path); AF_XDP joins behind the same trait. Whatever the datapath, a UDP
//! socket is bound to port 67 on the interface ([`PortGuard`]) so the kernel
//! never answers DHCP traffic with ICMP port-unreachable (SPEC §5).

pub mod af_packet;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};

use socket2::{Domain, Protocol, Socket, Type};

/// Receives and sends whole Ethernet frames on one interface.
pub trait FrameIo {
    /// Waits for the next frame and copies it into `buf`; returns its length.
    fn recv(&mut self, buf: &mut [u8]) -> impl Future<Output = io::Result<usize>>;
    /// Sends one complete Ethernet frame.
    fn send(&mut self, frame: &[u8]) -> io::Result<()>;
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
