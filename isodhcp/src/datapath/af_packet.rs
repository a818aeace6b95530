//! AF_PACKET datapath: a packet socket bound to the interface with a classic
//! BPF filter that admits only IPv4/UDP to port 67 (non-fragments), so the
//! daemon never copies unrelated traffic. The filter is attached before the
//! socket is bound, so no unfiltered frame is ever queued.

use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use tokio::io::unix::AsyncFd;

use super::{FrameIo, Origin};

/// `tcpdump -dd 'not pkt_type otherhost and ip and udp dst port 67'`:
/// ld pkttype; jeq OTHERHOST → drop; ldh [12]; jeq 0x800; ldb [23]; jeq 17;
/// ldh [20]; jset 0x1fff (fragment); ldxb 4*([14]&0xf); ldh [x+16]; jeq 67;
/// accept; drop.
///
/// "Other host" frames are unicast to another MAC, or tagged for a VLAN
/// this interface does not carry (the kernel strips the tag, then marks the
/// frame so); the IP stack ignores them and so must we, or a tag walks a
/// frame around the XDP program (which passes other VLANs' DHCP).
const FILTER: [libc::sock_filter; 13] = [
    bpf(0x20, 0, 0, SKF_AD_PKTTYPE),
    bpf(0x15, 10, 0, libc::PACKET_OTHERHOST as u32),
    bpf(0x28, 0, 0, 12),
    bpf(0x15, 0, 8, 0x0800),
    bpf(0x30, 0, 0, 23),
    bpf(0x15, 0, 6, 17),
    bpf(0x28, 0, 0, 20),
    bpf(0x45, 4, 0, 0x1fff),
    bpf(0xb1, 0, 0, 14),
    bpf(0x48, 0, 0, 16),
    bpf(0x15, 0, 1, 67),
    bpf(0x06, 0, 0, 0x0004_0000),
    bpf(0x06, 0, 0, 0),
];

/// Classic BPF ancillary load of `skb->pkt_type` (SKF_AD_OFF + SKF_AD_PKTTYPE).
const SKF_AD_PKTTYPE: u32 = 0xffff_f000 + 4;

/// Receive buffer asked for the packet socket (bytes).
const RCVBUF: libc::c_int = 4 << 20;

const fn bpf(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

pub struct AfPacket {
    fd: AsyncFd<OwnedFd>,
    ifindex: i32,
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

impl AfPacket {
    pub fn open(ifindex: u32) -> io::Result<AfPacket> {
        let ifindex =
            i32::try_from(ifindex).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: plain socket(2); protocol 0 means nothing is queued until bind.
        let raw = check(unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                0,
            )
        })?;
        // SAFETY: raw is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let prog = libc::sock_fprog {
            len: FILTER.len() as u16,
            filter: FILTER.as_ptr() as *mut _,
        };
        // SAFETY: prog points at a valid filter array that outlives the call.
        check(unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_ATTACH_FILTER,
                (&prog as *const libc::sock_fprog).cast(),
                mem::size_of::<libc::sock_fprog>() as u32,
            )
        })?;
        // A deep receive queue: without XDP a flood shares this socket with
        // real clients. SO_RCVBUFFORCE (CAP_NET_ADMIN) may exceed rmem_max;
        // without the capability the plain request is capped by the kernel.
        let size: libc::c_int = RCVBUF;
        for opt in [libc::SO_RCVBUFFORCE, libc::SO_RCVBUF] {
            // SAFETY: `size` is a valid c_int for the call.
            let rc = unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    opt,
                    (&size as *const libc::c_int).cast(),
                    mem::size_of::<libc::c_int>() as u32,
                )
            };
            if rc == 0 {
                break;
            }
        }
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut sll: libc::sockaddr_ll = unsafe { mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        sll.sll_ifindex = ifindex;
        // SAFETY: sll is a valid sockaddr_ll of the given size.
        check(unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        })?;
        // SAFETY: OwnedFd keeps the same open descriptor for as long as the AsyncFd owns it.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(io::Error::from)?;
        Ok(AfPacket { fd, ifindex })
    }
}

/// One non-blocking read: `Ok(Some(len))` for a frame we want, `Ok(None)`
/// for one we skip (our own outgoing, another host's, or larger than `buf`), `Err` with
/// `WouldBlock` when the queue is empty.
fn read_one(fd: RawFd, buf: &mut [u8]) -> io::Result<Option<usize>> {
    // SAFETY: sockaddr_ll is plain data.
    let mut from: libc::sockaddr_ll = unsafe { mem::zeroed() };
    let mut len = mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: buf and from are valid for writes of the given sizes.
    let n = unsafe {
        libc::recvfrom(
            fd,
            buf.as_mut_ptr().cast(),
            buf.len(),
            libc::MSG_TRUNC | libc::MSG_DONTWAIT,
            (&mut from as *mut libc::sockaddr_ll).cast(),
            &mut len,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    let ours = !matches!(
        from.sll_pkttype,
        libc::PACKET_OUTGOING | libc::PACKET_OTHERHOST
    );
    Ok((ours && n <= buf.len()).then_some(n))
}

impl FrameIo for AfPacket {
    async fn recv(&mut self, buf: &mut [u8]) -> io::Result<(usize, Origin)> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| read_one(fd.as_raw_fd(), buf)) {
                Ok(Ok(Some(n))) => return Ok((n, Origin::Packet)),
                Ok(Ok(None)) | Err(_) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }

    fn try_recv(&mut self, buf: &mut [u8]) -> io::Result<Option<(usize, Origin)>> {
        loop {
            match read_one(self.fd.as_raw_fd(), buf) {
                Ok(Some(n)) => return Ok(Some((n, Origin::Packet))),
                Ok(None) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) => return Err(e),
            }
        }
    }

    fn send(&mut self, frame: &[u8], _origin: Origin) -> io::Result<()> {
        if frame.len() < 14 {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        // SAFETY: sockaddr_ll is plain data.
        let mut to: libc::sockaddr_ll = unsafe { mem::zeroed() };
        to.sll_family = libc::AF_PACKET as u16;
        to.sll_protocol = (libc::ETH_P_IP as u16).to_be();
        to.sll_ifindex = self.ifindex;
        to.sll_halen = 6;
        to.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: frame and to are valid for reads of the given sizes.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&to as *const libc::sockaddr_ll).cast(),
                mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }
}
