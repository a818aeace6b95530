//! Reading a request (design.md §Offer responder): the fixed fields the
//! responder checks and the options it needs (RFC 2132), one option per
//! `bpf_loop` step in the kernel. The options are copied out of the frame
//! in one load and read from that copy (helper calls were most of the
//! scan's cost); only option 55 is loaded on its own.

use super::{
    BLOCK_MAX, BOOTP_AT, DISCOVER, ETH_HLEN, Frame, IP_HLEN, Looper, MAGIC_COOKIE, OPTIONS_AT,
    OfferCfg, PRL_MAX, REQUEST, SCAN_STEPS, Step, StripeSlot, UDP_HLEN, Work,
};
use crate::parse::Request;

/// Frame offset of the first option of an untagged request.
const OPTS_AT: usize = BOOTP_AT + OPTIONS_AT;
/// Bytes of the magic cookie, just before the options (and in the copy).
const COOKIE: usize = MAGIC_COOKIE.len();

const SCANNING: u8 = 0;
const ENDED: u8 = 1;
const BAD: u8 = 2;

/// The options that matter to the responder, read by [`Scan`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ScanState {
    /// Offset of the next option from the first.
    pub pos: u32,
    /// Bytes of options (to the end of the UDP payload).
    pub end: u32,
    /// Scanning, ended at END, or unusable.
    pub status: u8,
    /// Option 53.
    pub msg_type: u8,
    /// Length of option 55 read into `prl`.
    pub prl_len: u8,
    /// Something only the daemon may answer: option 52 or 82, a repeated
    /// option the responder reads, or an option 55 longer than [`PRL_MAX`].
    pub needs_daemon: u8,
    /// Option 60 is present.
    pub vendor: u8,
    /// Options 50, 53, 54, 55, 57 seen (bits 0..4).
    pub seen: u8,
    /// Option 57, 0 when absent.
    pub max_size: u16,
    /// Option 50 as `u32`, 0 when absent.
    pub requested: u32,
    /// Option 54 as `u32`, 0 when absent.
    pub server_id: u32,
    /// BOOTP flags of the request.
    pub flags: u16,
    /// Keeps the layout free of implicit padding.
    pub _pad: u16,
    /// The request's xid, as its bytes.
    pub xid: [u8; 4],
    /// Option 55.
    pub prl: [u8; PRL_MAX],
}

impl Default for ScanState {
    fn default() -> ScanState {
        ScanState {
            pos: 0,
            end: 0,
            status: SCANNING,
            msg_type: 0,
            prl_len: 0,
            needs_daemon: 0,
            vendor: 0,
            seen: 0,
            max_size: 0,
            requested: 0,
            server_id: 0,
            flags: 0,
            _pad: 0,
            xid: [0; 4],
            prl: [0; PRL_MAX],
        }
    }
}

impl ScanState {
    /// The scan reached END over well-formed options and nothing in them
    /// needs the daemon.
    pub fn usable(&self) -> bool {
        self.status == ENDED && self.needs_daemon == 0
    }

    #[inline(always)]
    fn once(&mut self, bit: u8) -> bool {
        if self.seen & bit != 0 {
            self.needs_daemon = 1;
            return false;
        }
        self.seen |= bit;
        true
    }
}

/// One option per step (a [`Step`]) over the copy `opts` of the options,
/// into `st`; option 55 is loaded from `frame`.
#[repr(C)]
pub struct Scan<'a, F> {
    /// The packet.
    pub frame: &'a mut F,
    /// The magic cookie and the options, copied out of the packet.
    pub opts: &'a [u8; BLOCK_MAX],
    /// The state.
    pub st: &'a mut ScanState,
}

impl<F: Frame> Scan<'_, F> {
    /// Byte `i` of the options (`COOKIE + i < COOKIE + end ≤ BLOCK_MAX`;
    /// the mask is for the verifier).
    #[inline(always)]
    fn byte(&self, i: usize) -> u8 {
        self.opts[(COOKIE + i) & (BLOCK_MAX - 1)]
    }

    #[inline(always)]
    fn be32(&self, v: usize) -> u32 {
        u32::from_be_bytes([
            self.byte(v),
            self.byte(v + 1),
            self.byte(v + 2),
            self.byte(v + 3),
        ])
    }

    #[inline(always)]
    fn read_option(&mut self, code: u8, v: usize, len: usize) {
        match code {
            50 if self.st.once(1) => match len {
                4 => self.st.requested = self.be32(v),
                _ => self.st.status = BAD,
            },
            53 if self.st.once(2) => match len {
                1 => self.st.msg_type = self.byte(v),
                _ => self.st.status = BAD,
            },
            54 if self.st.once(4) => match len {
                4 => self.st.server_id = self.be32(v),
                _ => self.st.status = BAD,
            },
            55 if self.st.once(8) => {
                if len > PRL_MAX {
                    self.st.needs_daemon = 1;
                } else if len > 0 {
                    if self.frame.load_prl(OPTS_AT + v, &mut self.st.prl, len) {
                        self.st.prl_len = len as u8;
                    } else {
                        self.st.status = BAD;
                    }
                }
            }
            57 if self.st.once(16) => match len {
                2 => self.st.max_size = u16::from_be_bytes([self.byte(v), self.byte(v + 1)]),
                _ => self.st.status = BAD,
            },
            52 | 82 => self.st.needs_daemon = 1,
            60 => self.st.vendor = 1,
            _ => {}
        }
    }
}

impl<F: Frame> Step for Scan<'_, F> {
    /// Reads one option (RFC 2132 §2): PAD is one byte, END stops, anything
    /// else is code, length, value, and the value must lie inside the UDP
    /// payload. END may be the payload's last byte; any other code there
    /// has no room for its length.
    fn step(&mut self, _i: u32) -> bool {
        if self.st.status != SCANNING {
            return false;
        }
        let pos = self.st.pos as usize;
        let end = self.st.end as usize;
        if pos >= end {
            self.st.status = BAD;
            return false;
        }
        match self.byte(pos) {
            0 => {
                self.st.pos += 1;
                return true;
            }
            255 => {
                self.st.status = ENDED;
                return false;
            }
            _ => {}
        }
        if pos + 2 > end {
            self.st.status = BAD;
            return false;
        }
        let code = self.byte(pos);
        let len = usize::from(self.byte(pos + 1));
        let v = pos + 2;
        if v + len > end {
            self.st.status = BAD;
            return false;
        }
        self.read_option(code, v, len);
        self.st.pos = (v + len) as u32;
        self.st.status == SCANNING
    }
}

/// The header fields the responder needs from an untagged request.
struct Fixed {
    /// IPv4 total length.
    ip_len: usize,
    udp_len: usize,
    flags: u16,
    xid: [u8; 4],
    ciaddr: u32,
    giaddr: u32,
}

#[inline(always)]
fn read_fixed<F: Frame>(f: &mut F) -> Option<Fixed> {
    // IPv4 header, UDP header and BOOTP up to giaddr in one load (helper
    // calls are most of the responder's cost).
    const AT: usize = ETH_HLEN;
    let h: [u8; BOOTP_AT + 28 - AT] = f.load(AT)?;
    if h[0] != 0x45 {
        return None;
    }
    let at = |o: usize| h[o - AT];
    let be16 = |o: usize| usize::from(u16::from_be_bytes([at(o), at(o + 1)]));
    let bytes4 = |o: usize| [at(o), at(o + 1), at(o + 2), at(o + 3)];
    Some(Fixed {
        ip_len: be16(ETH_HLEN + 2),
        udp_len: be16(ETH_HLEN + IP_HLEN + 4),
        flags: be16(BOOTP_AT + 10) as u16,
        xid: bytes4(BOOTP_AT + 4),
        ciaddr: u32::from_be_bytes(bytes4(BOOTP_AT + 12)),
        giaddr: u32::from_be_bytes(bytes4(BOOTP_AT + 24)),
    })
}

/// Reads the options of an untagged request from an unknown MAC of a frame
/// of `frame_len` bytes into `work`: `false` when the frame is not one the
/// responder may consider (VLAN tag, IP options, an IP length beyond the
/// frame, relayed, `ciaddr` set, no magic cookie, options malformed or
/// needing the daemon). Admission lets an IP length beyond the frame pass;
/// the daemon's frame parser ignores such a frame, and so must this.
#[inline(always)]
pub fn scan<F: Frame, L: Looper>(
    lp: &mut L,
    req: &Request,
    frame: &mut F,
    frame_len: usize,
    work: &mut Work,
) -> bool {
    if req.l3 != ETH_HLEN || req.l4 != ETH_HLEN + IP_HLEN {
        return false;
    }
    let Some(fx) = read_fixed(frame) else {
        return false;
    };
    if fx.giaddr != 0
        || fx.ciaddr != 0
        || fx.udp_len < UDP_HLEN + OPTIONS_AT
        || ETH_HLEN + fx.ip_len > frame_len
    {
        return false;
    }
    // The magic cookie and the options, copied in one load; more than the
    // copy holds (a frame of over 1,300 bytes) takes the daemon's path.
    let n = ETH_HLEN + IP_HLEN + fx.udp_len - OPTS_AT;
    if n == 0
        || COOKIE + n > BLOCK_MAX
        || !frame.load_block(OPTS_AT - COOKIE, &mut work.opts, COOKIE + n)
        || work.opts[..COOKIE] != MAGIC_COOKIE
    {
        return false;
    }
    // Field by field: `prl` is read only up to `prl_len`, and zeroing it
    // for every frame of a flood is a measurable share of the program.
    let st = &mut work.scan;
    st.pos = 0;
    st.end = n as u32;
    st.status = SCANNING;
    st.msg_type = 0;
    st.prl_len = 0;
    st.needs_daemon = 0;
    st.vendor = 0;
    st.seen = 0;
    st.max_size = 0;
    st.requested = 0;
    st.server_id = 0;
    st.flags = fx.flags;
    st.xid = fx.xid;
    let mut s = Scan {
        frame,
        opts: &work.opts,
        st: &mut work.scan,
    };
    lp.run(SCAN_STEPS, &mut s);
    work.scan.usable()
}

/// Whether a scanned REQUEST is a cookie: SELECTING (option 54 is ours)
/// for the address `slot` offers or offered until `prev_until_ns`.
#[inline(always)]
pub fn is_cookie(s: &ScanState, cfg: &OfferCfg, slot: &StripeSlot, now: u64) -> bool {
    s.msg_type == REQUEST
        && s.server_id == cfg.server_ip
        && s.requested != 0
        && (s.requested == slot.cur || (s.requested == slot.prev && now < slot.prev_until_ns))
}

/// Whether a scanned DISCOVER may be answered here, given the rules the
/// daemon wrote (`vendor_rules`).
#[inline(always)]
pub fn discover_eligible(s: &ScanState, cfg: &OfferCfg) -> bool {
    s.msg_type == DISCOVER && !(cfg.vendor_rules != 0 && s.vendor != 0)
}
