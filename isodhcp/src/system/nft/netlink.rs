//! nf_tables over netlink for the hot path: adding and deleting plain
//! address elements of named sets in one kernel transaction, without
//! starting an `nft` process per batch.
//!
//! A batch is `NFNL_MSG_BATCH_BEGIN`, one `NFT_MSG_{NEW,DEL}SETELEM` per
//! element (each acknowledged), `NFNL_MSG_BATCH_END`: the kernel applies all
//! or nothing, so a firewall rule never sees half a batch. Interval sets,
//! rules and tables keep going through `nft -f` (rare, and nft's interval
//! handling is worth keeping). Message layout: include/uapi/linux/netfilter/
//! nf_tables.h and nfnetlink.h.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use super::SetRef;

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_DATA_VALUE: u16 = 1;
const NLA_F_NESTED: u16 = 0x8000;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 2;

/// One element change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementOp {
    pub add: bool,
    pub set: SetRef,
    pub addr: Ipv4Addr,
}

fn family(f: &str) -> Option<u8> {
    Some(match f {
        "inet" => 1,
        "ip" => 2,
        "netdev" => 5,
        "bridge" => 7,
        _ => return None,
    })
}

fn attr(buf: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    buf.extend_from_slice(&(len as u16).to_ne_bytes());
    buf.extend_from_slice(&ty.to_ne_bytes());
    buf.extend_from_slice(payload);
    buf.resize(buf.len().next_multiple_of(4), 0);
}

fn nested(buf: &mut Vec<u8>, ty: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    inner(buf);
    let len = (buf.len() - start) as u16;
    buf[start..start + 2].copy_from_slice(&len.to_ne_bytes());
    buf[start + 2..start + 4].copy_from_slice(&(ty | NLA_F_NESTED).to_ne_bytes());
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Appends one netlink message: header, nfgenmsg, then `body`.
fn message(
    buf: &mut Vec<u8>,
    ty: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    body: impl FnOnce(&mut Vec<u8>),
) {
    let start = buf.len();
    buf.extend_from_slice(&[0; 16]);
    buf.extend_from_slice(&[family, 0]);
    buf.extend_from_slice(&res_id.to_be_bytes());
    body(buf);
    let len = (buf.len() - start) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_ne_bytes());
    buf[start + 4..start + 6].copy_from_slice(&ty.to_ne_bytes());
    buf[start + 6..start + 8].copy_from_slice(&flags.to_ne_bytes());
    buf[start + 8..start + 12].copy_from_slice(&seq.to_ne_bytes());
    buf.resize(buf.len().next_multiple_of(4), 0);
}

/// The whole batch for `ops`, with sequence numbers from `seq`; returns the
/// bytes and the sequence numbers that expect an acknowledgement.
pub fn encode_batch(ops: &[ElementOp], seq: u32) -> Option<(Vec<u8>, Vec<u32>)> {
    let mut buf = Vec::with_capacity(64 + ops.len() * 96);
    let mut acked = Vec::with_capacity(ops.len());
    let mut s = seq;
    message(
        &mut buf,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        s,
        0,
        NFNL_SUBSYS_NFTABLES,
        |_| {},
    );
    for op in ops {
        s = s.wrapping_add(1);
        let fam = family(&op.set.family)?;
        let (kind, flags) = if op.add {
            (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
        } else {
            (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
        };
        message(
            &mut buf,
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            flags,
            s,
            fam,
            0,
            |b| {
                attr(b, NFTA_SET_ELEM_LIST_TABLE, &cstr(&op.set.table));
                attr(b, NFTA_SET_ELEM_LIST_SET, &cstr(&op.set.name));
                nested(b, NFTA_SET_ELEM_LIST_ELEMENTS, |b| {
                    nested(b, NFTA_LIST_ELEM, |b| {
                        nested(b, NFTA_SET_ELEM_KEY, |b| {
                            attr(b, NFTA_DATA_VALUE, &op.addr.octets());
                        });
                    });
                });
            },
        );
        acked.push(s);
    }
    s = s.wrapping_add(1);
    message(
        &mut buf,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        s,
        0,
        NFNL_SUBSYS_NFTABLES,
        |_| {},
    );
    Some((buf, acked))
}

/// A netfilter netlink socket in the daemon's network namespace.
#[derive(Debug)]
pub struct NftSocket {
    fd: OwnedFd,
    seq: u32,
}

impl NftSocket {
    pub fn open() -> io::Result<NftSocket> {
        // SAFETY: plain socket(2); checked below and owned at once.
        let raw = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC,
                NETLINK_NETFILTER,
            )
        };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fresh descriptor, nobody else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let tv = libc::timeval {
            tv_sec: 1,
            tv_usec: 0,
        };
        // SAFETY: tv is a valid timeval for the call.
        unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            )
        };
        Ok(NftSocket { fd, seq: 1 })
    }

    /// Applies `ops` as one transaction. `Ok(Err(errno))` when the kernel
    /// refused it (nothing was applied), `Err` on a socket problem.
    pub fn apply(&mut self, ops: &[ElementOp]) -> io::Result<Result<(), i32>> {
        if ops.is_empty() {
            return Ok(Ok(()));
        }
        let first = self.seq;
        let (buf, mut waiting) =
            encode_batch(ops, first).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.seq = first.wrapping_add(ops.len() as u32 + 2);
        // SAFETY: buf is valid for reads of its length.
        let n = unsafe { libc::send(self.fd.as_raw_fd(), buf.as_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        let mut refused = None;
        let mut rx = vec![0u8; 64 * 1024];
        // Bounded: every round reads one datagram (or times out after 1 s)
        // and the loop ends once every message was answered.
        for _ in 0..(ops.len() + 8) {
            if waiting.is_empty() {
                break;
            }
            // SAFETY: rx is valid for writes of its length.
            let n = unsafe { libc::recv(self.fd.as_raw_fd(), rx.as_mut_ptr().cast(), rx.len(), 0) };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let mut off = 0;
            let n = n as usize;
            while off + 16 <= n {
                let len =
                    u32::from_ne_bytes(rx[off..off + 4].try_into().expect("4 bytes")) as usize;
                let ty = u16::from_ne_bytes(rx[off + 4..off + 6].try_into().expect("2 bytes"));
                let seq = u32::from_ne_bytes(rx[off + 8..off + 12].try_into().expect("4 bytes"));
                if len < 16 || off + len > n {
                    break;
                }
                if ty == NLMSG_ERROR && len >= 20 {
                    let err =
                        i32::from_ne_bytes(rx[off + 16..off + 20].try_into().expect("4 bytes"));
                    waiting.retain(|s| *s != seq);
                    if err != 0 && refused.is_none() {
                        refused = Some(-err);
                    }
                    // A refused batch is aborted: later messages get no answer.
                    if err != 0 {
                        waiting.clear();
                    }
                }
                off += len.next_multiple_of(4);
            }
        }
        if !waiting.is_empty() && refused.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "nf_tables did not acknowledge the batch",
            ));
        }
        Ok(refused.map_or(Ok(()), Err))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_layout_golden() {
        let set = SetRef::parse("inet filter iso").unwrap();
        let (b, acked) = encode_batch(
            &[ElementOp {
                add: true,
                set,
                addr: Ipv4Addr::new(198, 18, 0, 254),
            }],
            7,
        )
        .unwrap();
        assert_eq!(acked, [8]);
        // BATCH_BEGIN: 20 bytes, type 0x10, seq 7, res_id = htons(10).
        assert_eq!(&b[0..4], &20u32.to_ne_bytes());
        assert_eq!(&b[4..6], &0x10u16.to_ne_bytes());
        assert_eq!(&b[8..12], &7u32.to_ne_bytes());
        assert_eq!(&b[16..20], &[0, 0, 0, 10]);
        // NEWSETELEM for family inet, table "filter", set "iso", key 198.18.0.254.
        let m = &b[20..];
        let len = u32::from_ne_bytes(m[0..4].try_into().unwrap()) as usize;
        assert_eq!(&m[4..6], &((10u16 << 8) | 12).to_ne_bytes());
        assert_eq!(&m[6..8], &(1u16 | 4 | 0x400).to_ne_bytes());
        assert_eq!(m[16], 1, "NFPROTO_INET");
        let body = &m[20..len];
        assert_eq!(&body[4..11], b"filter\0");
        assert!(body.windows(4).any(|w| w == b"iso\0"));
        assert!(body.ends_with(&[198, 18, 0, 254]));
        // BATCH_END follows.
        assert_eq!(&m[len + 4..len + 6], &0x11u16.to_ne_bytes());
        assert_eq!(b.len(), 20 + len + 20);
    }

    #[test]
    fn unknown_family_is_refused() {
        let set = SetRef {
            family: "arp".into(),
            table: "t".into(),
            name: "s".into(),
        };
        assert!(
            encode_batch(
                &[ElementOp {
                    add: false,
                    set,
                    addr: Ipv4Addr::LOCALHOST
                }],
                1
            )
            .is_none()
        );
    }
}
