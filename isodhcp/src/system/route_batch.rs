//! Host routes in batches: every route change of a commit goes to the
//! kernel in one `sendmsg` (design.md §Routes, §Performance).
//!
//! The rtnetlink crate sends one request per message and waits for its
//! acknowledgement through its connection task: a `sendto`, a `recvfrom`
//! and two task wake-ups per route, about a tenth of the daemon's time
//! under a DORA burst. Here the messages of a batch are concatenated;
//! NETLINK_ROUTE handles them one after another, in order, inside the
//! `sendmsg` call, so a delete after an add of the same address still
//! lands last.
//!
//! Guarantees:
//! - Every operation gets its own result, in the order given. Only the
//!   last message of a chunk asks for an acknowledgement; a failing one is
//!   answered with its error anyway (netlink_rcv_skb acks every error), and
//!   the answers come in order, so the last one's acknowledgement proves
//!   that every earlier error has been read.
//! - Adds replace (adding twice is harmless); deleting a missing route is
//!   success, as in [`super::netlink`].
//! - Answers are matched by sequence number; stale ones (of a chunk that
//!   timed out) are skipped. A chunk unanswered within [`NETLINK_TIMEOUT`]
//!   fails as a whole with [`NetlinkError::Timeout`]; a lost answer
//!   (receive buffer overrun) fails it with [`NetlinkError::Batch`]. The
//!   caller retries failures at the next reconcile.
//! - Chunks hold at most [`CHUNK`] messages, so a start-up with 50,000
//!   routes stays far below the socket's send buffer.

use std::io;
use std::net::Ipv4Addr;

use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::RouteNetlinkMessage;
use rtnetlink::sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use tokio::io::unix::AsyncFd;

use super::netlink::{NETLINK_TIMEOUT, Netlink, NetlinkError};

/// Messages per `sendmsg`: about 9 KiB of requests, and at most as many
/// error answers as the receive buffer holds with room to spare.
pub const CHUNK: usize = 128;

/// One route change: add (replace) or delete the host route to `ip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteOp {
    pub add: bool,
    pub ip: Ipv4Addr,
}

/// A NETLINK_ROUTE socket of its own, apart from rtnetlink's connection.
pub struct RouteSocket {
    fd: AsyncFd<Socket>,
    seq: u32,
}

impl std::fmt::Debug for RouteSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouteSocket")
            .field("seq", &self.seq)
            .finish()
    }
}

impl RouteSocket {
    /// Opens the socket in the caller's network namespace; needs a tokio
    /// runtime with I/O enabled.
    pub fn open() -> io::Result<RouteSocket> {
        let mut s = Socket::new(NETLINK_ROUTE)?;
        s.bind_auto()?;
        s.connect(&SocketAddr::new(0, 0))?;
        // Error answers without the request echoed back: 36 bytes each.
        s.set_cap_ack(true)?;
        s.set_rx_buf_sz(1 << 20)?;
        s.set_non_blocking(true)?;
        // SAFETY: the socket is owned by the AsyncFd from here on, and its
        // descriptor stays open and the same until the AsyncFd is dropped.
        let fd = unsafe { AsyncFd::register(s) }.map_err(io::Error::from)?;
        Ok(RouteSocket { fd, seq: 1 })
    }

    /// Applies `ops` for host routes on `ifindex` with source `src`; one
    /// result per op, in order.
    pub async fn apply(
        &mut self,
        ops: &[RouteOp],
        ifindex: u32,
        src: Ipv4Addr,
    ) -> Vec<Result<(), NetlinkError>> {
        let mut out = Vec::with_capacity(ops.len());
        for chunk in ops.chunks(CHUNK) {
            let first = self.seq;
            self.seq = self.seq.wrapping_add(chunk.len() as u32);
            let buf = encode(chunk, ifindex, src, first);
            let r = match tokio::time::timeout(NETLINK_TIMEOUT, self.exchange(&buf, chunk, first))
                .await
            {
                Ok(r) => r,
                Err(_) => Err(NetlinkError::Timeout {
                    op: "route batch",
                    limit: NETLINK_TIMEOUT,
                }),
            };
            match r {
                Ok(errs) => out.extend(errs.into_iter().zip(chunk).map(|(e, op)| verdict(op, e))),
                Err(e) => out.extend(chunk.iter().map(|_| Err(again(&e)))),
            }
        }
        out
    }

    /// Sends one chunk and collects its answers: the errno per op (0 = done).
    async fn exchange(
        &self,
        buf: &[u8],
        chunk: &[RouteOp],
        first: u32,
    ) -> Result<Vec<i32>, NetlinkError> {
        let sent = self
            .fd
            .async_io(tokio::io::Interest::WRITABLE, |s| s.send(buf, 0))
            .await
            .map_err(batch_io)?;
        if sent != buf.len() {
            return Err(batch_io(io::Error::other("short netlink send")));
        }
        let last = first.wrapping_add(chunk.len() as u32 - 1);
        let mut errs = vec![0i32; chunk.len()];
        let mut rx = [0u8; 8192];
        loop {
            let n = self
                .fd
                .async_io(tokio::io::Interest::READABLE, |s| {
                    s.recv(&mut &mut rx[..], 0)
                })
                .await
                .map_err(batch_io)?;
            for (seq, errno) in answers(&rx[..n]) {
                let i = seq.wrapping_sub(first) as usize;
                if i < chunk.len() {
                    errs[i] = errno;
                }
                if seq == last {
                    return Ok(errs);
                }
            }
        }
    }
}

/// The same failure once more, for every op of a failed chunk.
fn again(e: &NetlinkError) -> NetlinkError {
    match e {
        NetlinkError::Timeout { op, limit } => NetlinkError::Timeout { op, limit: *limit },
        NetlinkError::Batch { op, source } => NetlinkError::Batch {
            op,
            source: io::Error::new(source.kind(), source.to_string()),
        },
        other => batch_io(io::Error::other(other.to_string())),
    }
}

fn batch_io(source: io::Error) -> NetlinkError {
    NetlinkError::Batch {
        op: "route batch",
        source,
    }
}

/// The result of one op from its errno: a delete of a missing route is done.
fn verdict(op: &RouteOp, errno: i32) -> Result<(), NetlinkError> {
    let absent = errno == libc::ESRCH || errno == libc::ENOENT || errno == libc::EADDRNOTAVAIL;
    if errno == 0 || (!op.add && absent) {
        return Ok(());
    }
    Err(NetlinkError::Refused {
        op: if op.add {
            "route replace"
        } else {
            "route delete"
        },
        source: io::Error::from_raw_os_error(errno),
    })
}

/// The requests of a chunk, sequence numbers from `first`; only the last
/// asks for an acknowledgement.
pub fn encode(chunk: &[RouteOp], ifindex: u32, src: Ipv4Addr, first: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(chunk.len() * 64);
    for (i, op) in chunk.iter().enumerate() {
        let route = Netlink::host_route(op.ip, ifindex, src);
        let (payload, mut flags) = if op.add {
            (
                RouteNetlinkMessage::NewRoute(route),
                NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
            )
        } else {
            (RouteNetlinkMessage::DelRoute(route), NLM_F_REQUEST)
        };
        if i + 1 == chunk.len() {
            flags |= NLM_F_ACK;
        }
        let mut m = NetlinkMessage::from(payload);
        m.header.flags = flags;
        m.header.sequence_number = first.wrapping_add(i as u32);
        m.finalize();
        let at = buf.len();
        buf.resize(at + m.buffer_len(), 0);
        m.serialize(&mut buf[at..]);
        buf.resize(buf.len().next_multiple_of(4), 0);
    }
    buf
}

/// The (sequence number, errno) of every NLMSG_ERROR answer in a datagram;
/// errno 0 is an acknowledgement.
pub fn answers(dgram: &[u8]) -> Vec<(u32, i32)> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + 16 <= dgram.len() {
        let Ok(m) = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&dgram[off..]) else {
            break;
        };
        let len = m.header.length as usize;
        if let NetlinkPayload::Error(e) = &m.payload {
            let errno = e.code.map_or(0, |c| -c.get());
            out.push((m.header.sequence_number, errno));
        }
        if len < 16 {
            break;
        }
        off += len.next_multiple_of(4);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(add: bool, last: u8) -> RouteOp {
        RouteOp {
            add,
            ip: Ipv4Addr::new(198, 18, 1, last),
        }
    }

    /// The chunk parses back as the same requests, in order, and only the
    /// last one asks for an acknowledgement.
    #[test]
    fn chunk_round_trips_with_one_ack() {
        let src = Ipv4Addr::new(198, 18, 0, 1);
        let ops = [op(true, 2), op(false, 3), op(true, 4)];
        let buf = encode(&ops, 7, src, 100);
        let mut off = 0;
        let mut seen = Vec::new();
        while off < buf.len() {
            let m = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&buf[off..]).unwrap();
            let add = match &m.payload {
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewRoute(r)) => {
                    assert_eq!(
                        r,
                        &Netlink::host_route(
                            Ipv4Addr::new(198, 18, 1, 2 + seen.len() as u8),
                            7,
                            src
                        )
                    );
                    true
                }
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelRoute(_)) => false,
                p => panic!("unexpected {p:?}"),
            };
            let acked = m.header.flags & NLM_F_ACK != 0;
            seen.push((add, m.header.sequence_number, acked));
            off += (m.header.length as usize).next_multiple_of(4);
        }
        assert_eq!(
            seen,
            [(true, 100, false), (false, 101, false), (true, 102, true)]
        );
    }

    #[test]
    fn deleting_a_missing_route_is_done_adding_is_not() {
        assert!(verdict(&op(false, 1), libc::ESRCH).is_ok());
        assert!(verdict(&op(true, 1), 0).is_ok());
        assert!(verdict(&op(true, 1), libc::ESRCH).is_err());
        assert!(verdict(&op(false, 1), libc::EPERM).is_err());
    }

    /// Against the kernel, in a network namespace of this test's own
    /// thread (skipped without CAP_SYS_ADMIN): a batch adds, replaces and
    /// deletes in order, and reports the one refused op by itself.
    #[test]
    fn kernel_applies_a_batch_in_order() {
        std::thread::spawn(|| {
            // SAFETY: unshare(2) affects only this thread, which ends with the test.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                eprintln!("skipped: no private network namespace");
                return;
            }
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .unwrap();
            assert!(up.success());
            in_namespace();
        })
        .join()
        .unwrap();
    }

    fn in_namespace() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut s = RouteSocket::open().unwrap();
            let src = Ipv4Addr::LOCALHOST;
            // Delete of a route never made, add, add again (replace); an
            // add whose source the namespace lacks (refused); delete.
            let mut r = s
                .apply(&[op(false, 9), op(true, 9), op(true, 9)], 1, src)
                .await;
            r.extend(
                s.apply(&[op(true, 10)], 1, Ipv4Addr::new(198, 18, 0, 77))
                    .await,
            );
            r.extend(s.apply(&[op(true, 11), op(false, 9)], 1, src).await);
            let ok: Vec<bool> = r.iter().map(Result::is_ok).collect();
            assert_eq!(ok, [true, true, true, false, true, true], "{r:?}");
            let nl = Netlink::connect().unwrap();
            let have: Vec<Ipv4Addr> = nl.our_routes(1).await.unwrap().into_iter().collect();
            assert_eq!(have, [Ipv4Addr::new(198, 18, 1, 11)]);
            // Errors of ops that asked for no acknowledgement are read and
            // matched too: with a foreign source both adds are refused,
            // while the delete between them (of a missing route) is done.
            let bad = Ipv4Addr::new(198, 18, 0, 77);
            let r = s
                .apply(&[op(true, 12), op(false, 12), op(true, 13)], 1, bad)
                .await;
            let ok: Vec<bool> = r.iter().map(Result::is_ok).collect();
            assert_eq!(ok, [false, true, false], "{r:?}");
            // More than one chunk.
            let many: Vec<RouteOp> = (0..300u16)
                .map(|i| RouteOp {
                    add: true,
                    ip: Ipv4Addr::new(198, 19, (i >> 8) as u8, i as u8),
                })
                .collect();
            let r = s.apply(&many, 1, src).await;
            assert!(r.iter().all(Result::is_ok), "{r:?}");
            assert_eq!(nl.our_routes(1).await.unwrap().len(), 1 + 300);
        });
    }
}
