//! Writing the OFFER (design.md §Offer responder): the order of the
//! template's records for one client (the engine's `OptionList::order_for`)
//! and the rewrite of the frame, RFC 2131 §4.1 addressing included.

use super::{
    BOOTP_AT, BROADCAST_FLAG, DHCP_CLIENT_PORT, DHCP_SERVER_PORT, ETH_HLEN, Frame, GROW_MAX,
    HEAD_LEN, IP_HLEN, Looper, MIN_MAX_MESSAGE, MIN_PAYLOAD, OPTIONS_AT, OfferCfg, PRL_MAX,
    RECORD_MAX, RECORDS_MAX, Step, TAIL_LEN, TEMPLATE_LEN, UDP_HLEN, Work,
};

/// The records of one OFFER in emission order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct PlanState {
    /// Record indices in emission order.
    pub order: [u8; RECORDS_MAX],
    /// Entries of `order` in use.
    pub n: u32,
    /// Bytes of the records in `order`.
    pub len: u32,
    /// Records already in `order` (bit per index).
    pub taken: u32,
}

/// Orders the template's records for one client (a [`Step`]).
#[repr(C)]
pub struct Plan<'a> {
    /// The template.
    pub cfg: &'a OfferCfg,
    /// The client's options (option 55).
    pub work: &'a mut Work,
}

impl Step for Plan<'_> {
    /// Step `i` considers option 53 (i = 0), 54 (1), the client's option 55
    /// in its order (2..), then every record in the template's order: the
    /// order of the engine's `OptionList::order_for`.
    fn step(&mut self, i: u32) -> bool {
        let prl_len = u32::from(self.work.scan.prl_len);
        let code = if i == 0 {
            53
        } else if i == 1 {
            54
        } else if i - 2 < prl_len {
            self.work.scan.prl[((i - 2) as usize) & (PRL_MAX - 1)]
        } else if i - 2 - prl_len < u32::from(self.cfg.rec_count) {
            self.cfg.rec_code[((i - 2 - prl_len) as usize) & (RECORDS_MAX - 1)]
        } else {
            return false;
        };
        let r = self.cfg.rec_of[usize::from(code)];
        let p = &mut self.work.plan;
        if (r as usize) < RECORDS_MAX && p.taken & (1 << r) == 0 && p.n < RECORDS_MAX as u32 {
            p.taken |= 1 << r;
            p.order[(p.n as usize) & (RECORDS_MAX - 1)] = r;
            p.n += 1;
            p.len += u32::from(self.cfg.rec_len[usize::from(r)]);
        }
        true
    }
}

/// Orders the records of `cfg` for the client scanned into `work`.
#[inline(always)]
pub fn plan<L: Looper>(lp: &mut L, cfg: &OfferCfg, work: &mut Work) {
    // `order` is read only up to `n`.
    work.plan.n = 0;
    work.plan.len = 0;
    work.plan.taken = 0;
    let mut p = Plan { cfg, work };
    lp.run(2 + PRL_MAX as u32 + RECORDS_MAX as u32, &mut p);
}

/// Writes the planned records at `at` in the frame (a [`Step`]).
#[repr(C)]
pub struct Emit<'a, F> {
    /// The packet.
    pub frame: &'a mut F,
    /// The template.
    pub cfg: &'a OfferCfg,
    /// The plan.
    pub plan: &'a PlanState,
    /// Frame offset of the next record.
    pub at: u32,
    /// A store failed.
    pub failed: u32,
}

impl<F: Frame> Step for Emit<'_, F> {
    fn step(&mut self, i: u32) -> bool {
        if i >= self.plan.n {
            return false;
        }
        let r = (self.plan.order[(i as usize) & (RECORDS_MAX - 1)] as usize) & (RECORDS_MAX - 1);
        let off = usize::from(self.cfg.rec_off[r]) & (TEMPLATE_LEN - 1);
        let len = usize::from(self.cfg.rec_len[r]) & RECORD_MAX;
        if len == 0 {
            return true;
        }
        // SAFETY: `off < 512` and `len ≤ 255`, so the source lies inside
        // `template` and the `tail` and `zeros` after it, all inside `cfg`.
        let src = unsafe { self.cfg.template.as_ptr().add(off) };
        // SAFETY: as just said.
        if !unsafe { self.frame.store(self.at as usize, src, len) } {
            self.failed = 1;
            return false;
        }
        self.at += len as u32;
        true
    }
}

/// The BOOTP payload length of the OFFER for a plan of `opts` bytes.
#[inline(always)]
pub fn payload_len(opts: usize) -> usize {
    let l = OPTIONS_AT + opts + 1;
    if l < MIN_PAYLOAD { MIN_PAYLOAD } else { l }
}

/// Whether an OFFER with a payload of `payload` bytes fits: at most
/// [`GROW_MAX`] bytes beyond the request frame of `frame_len` bytes, and
/// within the client's option 57 (RFC 2132 §9.10).
#[inline(always)]
pub fn fits(payload: usize, frame_len: usize, max_size: u16) -> bool {
    if BOOTP_AT + payload > frame_len + GROW_MAX {
        return false;
    }
    if max_size != 0 {
        let m = usize::from(max_size);
        let m = if m < MIN_MAX_MESSAGE {
            MIN_MAX_MESSAGE
        } else {
            m
        };
        if payload > m - IP_HLEN - UDP_HLEN {
            return false;
        }
    }
    true
}

/// RFC 1071 checksum of a 20-byte IPv4 header.
#[inline(always)]
pub fn ip_checksum(h: &[u8; IP_HLEN]) -> u16 {
    ip_checksum_of(h, 0)
}

/// [`ip_checksum`] of the header at `at` in `b`.
#[inline(always)]
fn ip_checksum_of<const N: usize>(b: &[u8; N], at: usize) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IP_HLEN {
        sum += u32::from(u16::from_be_bytes([b[at + i], b[at + i + 1]]));
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Rewrites the frame's headers (already checked by [`scan`], [`plan`] and
/// [`fits`], and resized to `BOOTP_AT + payload`) into those of the OFFER
/// of `yiaddr`: Ethernet, IP and UDP headers and the BOOTP fixed fields
/// RFC 2131 Table 3 sets (RFC 2131 §4.1 addressing); `xid` and `flags` are
/// the request's. The options follow from [`write_options`] or the cache.
/// `false` if a write failed.
#[inline(always)]
pub fn write_head<F: Frame>(
    frame: &mut F,
    cfg: &OfferCfg,
    payload: usize,
    flags: u16,
    xid: [u8; 4],
    chaddr: [u8; 6],
    yiaddr: u32,
) -> bool {
    let bcast = flags & BROADCAST_FLAG != 0;
    let (dmac, dip) = if bcast {
        ([0xff; 6], u32::MAX)
    } else {
        (chaddr, yiaddr)
    };
    // Ethernet, IPv4 as the daemon's frame builder writes it (TTL 64, DF
    // clear), UDP, then BOOTP: op 2 (BOOTREPLY), htype 1 and hlen 6 (the
    // request's, checked by the parser), hops 0, the request's xid, secs 0,
    // the request's flags, ciaddr 0 (checked), yiaddr, siaddr 0, giaddr 0
    // (checked): one store. Every byte is spelled out (a zeroed buffer
    // costs the BPF program a byte-by-byte `memset`); the IP checksum goes
    // in after.
    let m = cfg.server_mac;
    let tl = ((IP_HLEN + UDP_HLEN + payload) as u16).to_be_bytes();
    let sip = cfg.server_ip.to_be_bytes();
    let dst = dip.to_be_bytes();
    let ul = ((UDP_HLEN + payload) as u16).to_be_bytes();
    let [sp0, sp1] = DHCP_SERVER_PORT.to_be_bytes();
    let [cp0, cp1] = DHCP_CLIENT_PORT.to_be_bytes();
    let fl = flags.to_be_bytes();
    let y = yiaddr.to_be_bytes();
    #[rustfmt::skip]
    let mut h: [u8; HEAD_LEN] = [
        dmac[0], dmac[1], dmac[2], dmac[3], dmac[4], dmac[5],
        m[0], m[1], m[2], m[3], m[4], m[5],
        0x08, 0x00,
        0x45, 0, tl[0], tl[1], 0, 0, 0, 0, 64, 17, 0, 0,
        sip[0], sip[1], sip[2], sip[3], dst[0], dst[1], dst[2], dst[3],
        sp0, sp1, cp0, cp1, ul[0], ul[1], 0, 0,
        2, 1, 6, 0,
        xid[0], xid[1], xid[2], xid[3],
        0, 0, fl[0], fl[1],
        0, 0, 0, 0,
        y[0], y[1], y[2], y[3],
        0, 0, 0, 0,
        0, 0, 0, 0,
    ];
    let ip = ETH_HLEN;
    let sum = ip_checksum_of(&h, ip).to_be_bytes();
    h[ip + 10] = sum[0];
    h[ip + 11] = sum[1];
    // SAFETY: `h` holds HEAD_LEN bytes; `zeros` (256 bytes) holds the 192
    // of sname and file. chaddr stays.
    unsafe {
        frame.store(0, h.as_ptr(), HEAD_LEN) && frame.store(BOOTP_AT + 44, cfg.zeros.as_ptr(), 192)
    }
}

/// Writes the planned options, END and the padding to `payload` bytes of
/// BOOTP, record by record from the template. `false` if a write failed.
#[inline(always)]
pub fn write_options<F: Frame, L: Looper>(
    lp: &mut L,
    frame: &mut F,
    cfg: &OfferCfg,
    p: &PlanState,
    payload: usize,
) -> bool {
    let mut e = Emit {
        frame,
        cfg,
        plan: p,
        at: (BOOTP_AT + OPTIONS_AT) as u32,
        failed: 0,
    };
    lp.run(RECORDS_MAX as u32, &mut e);
    if e.failed != 0 {
        return false;
    }
    // END and the padding to the payload length in one store from `tail`.
    let at = e.at as usize;
    let n = BOOTP_AT + payload - at;
    // SAFETY: `n ≤ TAIL_LEN`, checked: inside `tail`.
    n <= TAIL_LEN && unsafe { frame.store(at, cfg.tail.as_ptr(), n) }
}
