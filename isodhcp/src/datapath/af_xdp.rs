//! AF_XDP datapath (design.md §Datapath): one XDP socket per RX queue of the interface,
//! each with its own UMEM; the XDP program redirects admitted DHCP frames to
//! the socket of the queue they arrived on, and replies leave through the
//! socket that received the request.
//!
//! Each UMEM is split in two halves: receive frames live on the fill/RX
//! rings, transmit frames on a free list refilled from the completion ring.
//! Zero-copy is tried first and copy mode used where the driver lacks it
//! (veth). Ring sizes are small: DHCP is a control protocol and the XDP
//! program admits only rate-limited traffic.

use std::io;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::ptr::NonNull;

use tokio::io::unix::AsyncFd;
use xdpilone::xdp::XdpDesc;

use super::Origin;
use xdpilone::{
    BufIdx, DeviceQueue, IfInfo, RingRx, RingTx, Socket, SocketConfig, Umem, UmemConfig,
};

const FRAME_SIZE: u32 = 2048;
const FRAMES: u32 = 512;
const RX_FRAMES: u32 = FRAMES / 2;
const RING: u32 = 256;
/// Frames the kernel transmits per TX wake-up in copy mode
/// (`TX_BATCH_SIZE` in net/xdp/xsk.c).
const TX_BATCH: u32 = 32;
const XDP_COPY: u16 = 1 << 1;
const XDP_ZEROCOPY: u16 = 1 << 2;
const XDP_USE_NEED_WAKEUP: u16 = 1 << 3;

fn errno(e: xdpilone::Errno) -> io::Error {
    io::Error::from_raw_os_error(e.get_raw().abs())
}

/// Page-aligned anonymous memory for a UMEM, unmapped on drop.
struct Area {
    ptr: NonNull<u8>,
    len: usize,
}

impl Area {
    fn new(len: usize) -> io::Result<Area> {
        // SAFETY: anonymous private mapping; checked for MAP_FAILED below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Area {
            ptr: NonNull::new(p.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?,
            len,
        })
    }

    fn slice(&self) -> NonNull<[u8]> {
        NonNull::slice_from_raw_parts(self.ptr, self.len)
    }
}

impl Drop for Area {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping made in `new`; the UMEM using it is dropped first
        // (field order in `Queue`).
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A borrowed fd for tokio's readiness (the socket itself is owned by xdpilone).
struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// One XDP socket bound to one RX queue. Field order matters for drop:
/// rings and the socket go before the UMEM, the UMEM before its memory.
pub struct Queue {
    ready: AsyncFd<Fd>,
    rx: RingRx,
    tx: RingTx,
    dev: DeviceQueue,
    free_tx: Vec<u64>,
    _sock: Socket,
    umem: Umem,
    _area: Area,
    pub queue_id: u32,
    pub zero_copy: bool,
}

impl Queue {
    /// Creates and binds an XDP socket on `ifindex`/`queue_id`: zero-copy
    /// where the driver offers it, else copy mode.
    pub fn open(ifindex: u32, queue_id: u32) -> io::Result<Queue> {
        match Self::open_with(ifindex, queue_id, XDP_ZEROCOPY | XDP_USE_NEED_WAKEUP) {
            Ok(q) => Ok(q),
            Err(zc) => Self::open_with(ifindex, queue_id, XDP_COPY | XDP_USE_NEED_WAKEUP)
                .map_err(|e| io::Error::new(e.kind(), format!("{e} (zero-copy: {zc})"))),
        }
    }

    /// One attempt with its own UMEM: a failed bind leaves the rings of the
    /// UMEM socket configured, so a retry needs a fresh one.
    fn open_with(ifindex: u32, queue_id: u32, flags: u16) -> io::Result<Queue> {
        let area = Area::new((FRAME_SIZE * FRAMES) as usize)?;
        let cfg = UmemConfig {
            fill_size: RING,
            complete_size: RING,
            frame_size: FRAME_SIZE,
            headroom: 0,
            flags: 0,
        };
        // SAFETY: the area is page-aligned, FRAME_SIZE * FRAMES long and outlives
        // the UMEM (dropped after it, see field order).
        let umem = unsafe { Umem::new(cfg, area.slice()) }.map_err(errno)?;
        let mut info = IfInfo::invalid();
        info.from_ifindex(ifindex).map_err(errno)?;
        info.set_queue(queue_id);
        let sock = Socket::with_shared(&info, &umem).map_err(errno)?;
        let mut dev = umem.fq_cq(&sock).map_err(errno)?;
        let sc = SocketConfig {
            rx_size: NonZeroU32::new(RING),
            tx_size: NonZeroU32::new(RING),
            bind_flags: flags,
        };
        let user = umem.rx_tx(&sock, &sc).map_err(errno)?;
        let rx = user.map_rx().map_err(errno)?;
        let tx = user.map_tx().map_err(errno)?;
        umem.bind(&user).map_err(errno)?;
        {
            let mut fill = dev.fill(RX_FRAMES);
            fill.insert((0..RX_FRAMES).map(|i| u64::from(i * FRAME_SIZE)));
            fill.commit();
        }
        let free_tx = (RX_FRAMES..FRAMES)
            .map(|i| u64::from(i * FRAME_SIZE))
            .collect();
        // SAFETY: the fd belongs to `sock`, which this Queue owns and drops
        // after `ready` (field order), so it stays the same open socket.
        let ready = unsafe {
            AsyncFd::register_with_interest(Fd(user.as_raw_fd()), tokio::io::Interest::READABLE)
        }
        .map_err(io::Error::from)?;
        Ok(Queue {
            ready,
            rx,
            tx,
            dev,
            free_tx,
            _sock: sock,
            umem,
            _area: area,
            queue_id,
            zero_copy: flags & XDP_ZEROCOPY != 0,
        })
    }

    /// The socket, for the XSKMAP.
    pub fn fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the fd stays open as long as `self` (xdpilone owns it).
        unsafe { BorrowedFd::borrow_raw(self.ready.get_ref().0) }
    }

    fn chunk(&self, addr: u64) -> Option<NonNull<[u8]>> {
        let idx = u32::try_from(addr / u64::from(FRAME_SIZE)).ok()?;
        self.umem.frame(BufIdx(idx)).map(|c| c.addr)
    }

    /// Copies one received frame into `buf` and returns the frame to the
    /// fill ring. `None` when the RX ring is empty.
    fn try_recv(&mut self, buf: &mut [u8]) -> Option<usize> {
        let desc = {
            let mut r = self.rx.receive(1);
            let d = r.read();
            r.release();
            d
        }?;
        let base = desc.addr - desc.addr % u64::from(FRAME_SIZE);
        let n = match self.chunk(base) {
            Some(c) => {
                let start = (desc.addr - base) as usize;
                let len = (desc.len as usize).min(buf.len());
                // SAFETY: the kernel handed this frame to us via the RX ring; it is
                // ours until we put it back on the fill ring below.
                let frame = unsafe { c.as_ref() };
                let end = (start + len).min(frame.len());
                buf[..end - start].copy_from_slice(&frame[start..end]);
                end - start
            }
            None => 0,
        };
        let mut fill = self.dev.fill(1);
        fill.insert_once(base);
        fill.commit();
        Some(n)
    }

    fn reclaim(&mut self) {
        let mut c = self.dev.complete(RING);
        while let Some(addr) = c.read() {
            self.free_tx.push(addr - addr % u64::from(FRAME_SIZE));
        }
        c.release();
    }

    fn send(&mut self, frame: &[u8]) -> io::Result<()> {
        if frame.len() > FRAME_SIZE as usize {
            return Err(io::Error::from(io::ErrorKind::InvalidInput));
        }
        self.reclaim();
        let addr = self
            .free_tx
            .pop()
            .ok_or_else(|| io::Error::from(io::ErrorKind::WouldBlock))?;
        let Some(mut c) = self.chunk(addr) else {
            return Err(io::Error::other("TX frame outside the UMEM"));
        };
        // SAFETY: the frame came off the free list: the kernel does not use it.
        let dst = unsafe { c.as_mut() };
        dst[..frame.len()].copy_from_slice(frame);
        let sent = {
            let mut w = self.tx.transmit(1);
            let ok = w.insert_once(XdpDesc {
                addr,
                len: frame.len() as u32,
                options: 0,
            });
            w.commit();
            ok
        };
        if !sent {
            self.free_tx.push(addr);
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        // Zero-copy drivers send on their own unless they ask for a wake-up.
        // In copy mode every wake-up (a `sendto`) transmits at most
        // TX_BATCH frames, so frames queue here and [`Queue::flush_tx`]
        // sends the batch's replies with one call per TX_BATCH.
        if self.zero_copy {
            if self.tx.needs_wakeup() {
                self.tx.wake();
            }
        } else if self.tx.pending() >= TX_BATCH {
            self.tx.wake();
        }
        Ok(())
    }

    /// Hands every queued frame to the kernel (copy mode); bounded by the
    /// ring size, so a driver that stalls cannot hold the caller.
    fn flush_tx(&mut self) {
        if self.zero_copy {
            return;
        }
        for _ in 0..RING / TX_BATCH + 1 {
            if self.tx.pending() == 0 {
                return;
            }
            self.tx.wake();
        }
    }
}

/// Receive and transmit over every queue's socket.
pub struct AfXdp {
    queues: Vec<Queue>,
}

impl AfXdp {
    pub fn new(queues: Vec<Queue>) -> AfXdp {
        AfXdp { queues }
    }

    pub fn queues(&self) -> &[Queue] {
        &self.queues
    }

    /// Takes a frame from any queue without waiting.
    pub fn try_recv(&mut self, buf: &mut [u8]) -> Option<(usize, Origin)> {
        for (i, q) in self.queues.iter_mut().enumerate() {
            if let Some(n) = q.try_recv(buf) {
                return Some((n, Origin::Xsk(i)));
            }
        }
        None
    }

    /// Waits for a frame on any queue.
    pub async fn recv(&mut self, buf: &mut [u8]) -> io::Result<(usize, Origin)> {
        loop {
            if let Some(n) = self.try_recv(buf) {
                return Ok(n);
            }
            if self.queues.is_empty() {
                return std::future::pending().await;
            }
            let waits = self.queues.iter().map(|q| Box::pin(q.ready.readable()));
            let (ready, _, _) = futures::future::select_all(waits).await;
            ready?.clear_ready();
        }
    }

    /// Sends through the socket of queue index `i` (the one that received the request).
    pub fn send(&mut self, frame: &[u8], i: usize) -> io::Result<()> {
        match self.queues.get_mut(i) {
            Some(q) => q.send(frame),
            None => Err(io::Error::from(io::ErrorKind::NotConnected)),
        }
    }

    /// Transmits every frame [`AfXdp::send`] queued.
    pub fn flush_tx(&mut self) {
        self.queues.iter_mut().for_each(Queue::flush_tx);
    }
}

pub use super::ethtool::rx_queue_count;
