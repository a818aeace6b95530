//! The stateless OFFER responder (design.md §Offer responder): the XDP
//! program answers a DISCOVER from a never-seen MAC in place with the OFFER
//! the engine would send, and lets the REQUEST that follows through when it
//! names the address its offer carried (the DHCP analogue of a SYN cookie).
//!
//! Everything here is pure logic over a [`Frame`] (the packet: a byte slice
//! on the host, `bpf_xdp_load_bytes`/`bpf_xdp_store_bytes` in the kernel)
//! and a [`Looper`] (a plain `for` on the host, `bpf_loop` in the kernel),
//! so the XDP program and the unit tests run the same code. The verifier
//! rejects option scans through packet pointers and unrolled scans long
//! enough to matter; both loops here are `bpf_loop` callbacks.
//!
//! The option bytes come from a template the engine renders with its own
//! reply code ([`OfferCfg`]); [`plan`] orders them exactly as the engine
//! does (RFC 2131 §4.3.1: 53 and 54 first, then the client's option 55
//! order, then the rest in the engine's order), so the two cannot drift.
//! Addressing follows RFC 2131 §4.1 (broadcast flag → broadcast, else
//! unicast to yiaddr at chaddr); the UDP checksum is 0 ("not computed",
//! legal for IPv4, RFC 768). A reply is at most [`GROW_MAX`] bytes longer
//! than its request: the responder is no amplifier.

use crate::admit::{Tables, take_shared};
use crate::bucket::Limits;
use crate::counters::Slot;
use crate::parse::Request;
use crate::{ABI_VERSION, COOKIE_BUCKET, OFFER_BUCKET};

/// Option records in a template at most.
pub const RECORDS_MAX: usize = 32;
/// Bytes of encoded option records in a template at most.
pub const TEMPLATE_LEN: usize = 512;
/// One record (code, length, value) is at most this long.
pub const RECORD_MAX: usize = 255;
/// Length of the zero area (the source of sname/file).
pub const ZEROS_LEN: usize = 256;
/// Length of [`OfferCfg::tail`]: END plus the most padding a reply needs
/// (a 300-byte payload holds at least 240 + 3 + 6 bytes before END, so END
/// and padding are at most 51 bytes).
pub const TAIL_LEN: usize = 64;
/// Longest option 55 the responder reads; a longer one takes the daemon's path.
pub const PRL_MAX: usize = 64;
/// Capacity of the `stripe` map.
pub const STRIPE_MAX: u32 = 4096;
/// `rec_of` entry of a code the template does not carry.
pub const NO_RECORD: u8 = 0xff;
/// Iterations of the option scan: options (and pads) read at most.
pub const SCAN_STEPS: u32 = 160;
/// Bytes an OFFER may be longer than its DISCOVER: the engine's OFFER
/// for a plain 300-byte DISCOVER is a little longer (about 324 bytes with
/// DNS and routes), so "never grow" would answer no stock client; 64 bytes
/// keep any reply within 1.2× of its request.
pub const GROW_MAX: usize = 64;
/// How long (ns) the daemon's heartbeat stays valid after it was written.
pub const HEARTBEAT_NS: u64 = 3_000_000_000;

const ETH_HLEN: usize = 14;
const IP_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
/// Where the BOOTP message starts in an untagged frame with a 20-byte IP header.
pub const BOOTP_AT: usize = ETH_HLEN + IP_HLEN + UDP_HLEN;
const OPTIONS_AT: usize = 240;
/// Headers up to BOOTP's `hops`: rewritten with one store.
const HEAD_LEN: usize = BOOTP_AT + 4;
/// BOOTP payloads are padded to this (RFC 1542 §3.3 minimum).
pub const MIN_PAYLOAD: usize = 300;
const MIN_MAX_MESSAGE: usize = 576;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
const BROADCAST_FLAG: u16 = 0x8000;
const DHCP_CLIENT_PORT: u16 = 68;
const DHCP_SERVER_PORT: u16 = 67;

/// DHCPDISCOVER (option 53).
pub const DISCOVER: u8 = 1;
/// DHCPREQUEST (option 53).
pub const REQUEST: u8 = 3;

/// The responder's configuration: one entry of the `offer_cfg` array map,
/// written by the daemon. `stripe_len == 0` or a stale heartbeat turns the
/// responder off (every frame takes the path it took before).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OfferCfg {
    /// [`ABI_VERSION`](crate::ABI_VERSION) of the daemon that wrote this.
    pub abi: u32,
    /// Slots of the stripe in use (≤ [`STRIPE_MAX`]); 0 = responder off.
    pub stripe_len: u32,
    /// The daemon's heartbeat: CLOCK_MONOTONIC ns until which it is alive.
    pub alive_until_ns: u64,
    /// Key of [`stripe_index`], random per daemon start.
    pub hash_key: u64,
    /// The server address (option 54, IP source), as `u32::from(Ipv4Addr)`.
    pub server_ip: u32,
    /// 1: a DISCOVER carrying option 60 needs the daemon (vendor rules exist).
    pub vendor_rules: u32,
    /// MAC of the serving interface (Ethernet source).
    pub server_mac: [u8; 6],
    /// Records in the template.
    pub rec_count: u16,
    /// Option code of each record, in the engine's order.
    pub rec_code: [u8; RECORDS_MAX],
    /// Offset of each record in `template`.
    pub rec_off: [u16; RECORDS_MAX],
    /// Length of each record (code, length and value bytes).
    pub rec_len: [u16; RECORDS_MAX],
    /// Option code → record index, [`NO_RECORD`] for none.
    pub rec_of: [u8; 256],
    /// The encoded option records.
    pub template: [u8; TEMPLATE_LEN],
    /// END and zeros: the source of the options' end and padding.
    pub tail: [u8; TAIL_LEN],
    /// Always zero: the source of sname/file. With `tail` it is also the
    /// slack that keeps every store's source inside the entry for the
    /// verifier (a length it sees as up to 256 bytes from `template + 511`
    /// or from `tail`).
    pub zeros: [u8; ZEROS_LEN],
    /// 1: the `classified` map holds entries (else it is not consulted).
    pub classified_rules: u32,
    /// Keeps the layout free of implicit padding.
    pub _pad: u32,
}

impl Default for OfferCfg {
    fn default() -> OfferCfg {
        OfferCfg {
            abi: 0,
            stripe_len: 0,
            alive_until_ns: 0,
            hash_key: 0,
            server_ip: 0,
            vendor_rules: 0,
            server_mac: [0; 6],
            rec_count: 0,
            rec_code: [0; RECORDS_MAX],
            rec_off: [0; RECORDS_MAX],
            rec_len: [0; RECORDS_MAX],
            rec_of: [NO_RECORD; 256],
            template: [0; TEMPLATE_LEN],
            tail: {
                let mut t = [0; TAIL_LEN];
                t[0] = 255;
                t
            },
            zeros: [0; ZEROS_LEN],
            classified_rules: 0,
            _pad: 0,
        }
    }
}

/// Why a template does not fit [`OfferCfg`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateError {
    /// More than [`RECORDS_MAX`] options.
    TooManyOptions,
    /// One option's encoding is longer than [`RECORD_MAX`] bytes.
    OptionTooLong(u8),
    /// All records together exceed [`TEMPLATE_LEN`].
    TooLong,
}

impl OfferCfg {
    /// Stores the encoded option records (each `code, len, value…`) in the
    /// engine's order. Options 53 and 54 must be among them.
    pub fn set_template<'a>(
        &mut self,
        records: impl IntoIterator<Item = (u8, &'a [u8])>,
    ) -> Result<(), TemplateError> {
        self.rec_of = [NO_RECORD; 256];
        let mut n = 0;
        let mut at = 0;
        for (code, rec) in records {
            if n == RECORDS_MAX {
                return Err(TemplateError::TooManyOptions);
            }
            if rec.len() > RECORD_MAX {
                return Err(TemplateError::OptionTooLong(code));
            }
            if at + rec.len() > TEMPLATE_LEN {
                return Err(TemplateError::TooLong);
            }
            self.template[at..at + rec.len()].copy_from_slice(rec);
            self.rec_code[n] = code;
            self.rec_off[n] = at as u16;
            self.rec_len[n] = rec.len() as u16;
            self.rec_of[usize::from(code)] = n as u8;
            at += rec.len();
            n += 1;
        }
        self.rec_count = n as u16;
        Ok(())
    }
}

/// One slot of the stripe (the `stripe` array map): the address the
/// responder offers to the MACs that hash here, and the one it offered
/// before the last refill (valid until `prev_until_ns`). Addresses are
/// `u32::from(Ipv4Addr)`, 0 = none.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StripeSlot {
    /// The address offered now.
    pub cur: u32,
    /// The address offered before the last refill.
    pub prev: u32,
    /// CLOCK_MONOTONIC ns until which a REQUEST for `prev` still passes.
    pub prev_until_ns: u64,
}

/// The stripe slot of `mac` (a [`mac_key`](crate::mac_key)) under `key`:
/// one keyed mix (splitmix64's finaliser) used by kernel and engine alike,
/// so retransmissions of one MAC always meet the same address.
#[inline(always)]
pub fn stripe_index(key: u64, mac: u64, len: u32) -> u32 {
    let mut z = mac ^ key;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    // `checked_rem`, not `%`: no panic path for the BPF target to reject.
    match z.checked_rem(u64::from(len)) {
        Some(r) => r as u32,
        None => 0,
    }
}

/// The packet the responder reads and rewrites.
pub trait Frame {
    /// Copies `N` bytes at `off` into `dst`; `false` if they are not all inside.
    fn load<const N: usize>(&mut self, off: usize, dst: &mut [u8; N]) -> bool;
    /// Copies `len` (1..=[`PRL_MAX`]) bytes at `off` into `dst`.
    fn load_prl(&mut self, off: usize, dst: &mut [u8; PRL_MAX], len: usize) -> bool;
    /// Writes `len` (1..=[`RECORD_MAX`]) bytes from `src` at `off`.
    ///
    /// # Safety
    /// `src` points to `len` readable bytes (inside an [`OfferCfg`] or a
    /// local buffer).
    unsafe fn store(&mut self, off: usize, src: *const u8, len: usize) -> bool;
    /// Makes the frame `len` bytes long (shrinking, or growing into the
    /// tailroom); `false` leaves it as it was.
    fn resize(&mut self, len: usize) -> bool;
}

/// One iteration of a bounded loop; `false` ends it.
pub trait Step {
    /// Runs iteration `i`.
    fn step(&mut self, i: u32) -> bool;
}

/// Runs a [`Step`] up to `n` times: a `for` loop on the host, `bpf_loop`
/// in the kernel.
pub trait Looper {
    /// Calls `s.step(0..n)` until it returns `false`.
    fn run<S: Step>(&mut self, n: u32, s: &mut S);
}

/// [`Looper`] for the host.
pub struct Plain;

impl Looper for Plain {
    fn run<S: Step>(&mut self, n: u32, s: &mut S) {
        for i in 0..n {
            if !s.step(i) {
                break;
            }
        }
    }
}

const SCANNING: u8 = 0;
const ENDED: u8 = 1;
const BAD: u8 = 2;

/// The responder's working state for one frame. Too large for the BPF
/// stack (512 bytes, shared with the loop callbacks), so the kernel keeps
/// it in a per-CPU array map entry; the host uses any `Work::default()`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Work {
    /// What the option scan found.
    pub scan: ScanState,
    /// The order of the template's records for this client.
    pub plan: PlanState,
}

/// The options that matter to the responder, read by [`Scan`].
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ScanState {
    /// Offset in the frame of the next option.
    pub pos: u32,
    /// End of the UDP payload in the frame.
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

/// One option per step (a [`Step`]) over `frame`, into `st`.
#[repr(C)]
pub struct Scan<'a, F> {
    /// The packet.
    pub frame: &'a mut F,
    /// The state.
    pub st: &'a mut ScanState,
}

impl<F: Frame> Scan<'_, F> {
    #[inline(always)]
    fn load_u32(&mut self, off: usize, len: usize) -> Option<u32> {
        let mut b = [0u8; 4];
        (len == 4 && self.frame.load(off, &mut b)).then(|| u32::from_be_bytes(b))
    }

    #[inline(always)]
    fn read_option(&mut self, code: u8, v: usize, len: usize) {
        match code {
            50 if self.st.once(1) => match self.load_u32(v, len) {
                Some(ip) => self.st.requested = ip,
                None => self.st.status = BAD,
            },
            53 if self.st.once(2) => {
                let mut b = [0u8; 1];
                if len == 1 && self.frame.load(v, &mut b) {
                    self.st.msg_type = b[0];
                } else {
                    self.st.status = BAD;
                }
            }
            54 if self.st.once(4) => match self.load_u32(v, len) {
                Some(ip) => self.st.server_id = ip,
                None => self.st.status = BAD,
            },
            55 if self.st.once(8) => {
                if len > PRL_MAX {
                    self.st.needs_daemon = 1;
                } else if len > 0 {
                    if self.frame.load_prl(v, &mut self.st.prl, len) {
                        self.st.prl_len = len as u8;
                    } else {
                        self.st.status = BAD;
                    }
                }
            }
            57 if self.st.once(16) => {
                let mut b = [0u8; 2];
                if len == 2 && self.frame.load(v, &mut b) {
                    self.st.max_size = u16::from_be_bytes(b);
                } else {
                    self.st.status = BAD;
                }
            }
            52 | 82 => self.st.needs_daemon = 1,
            60 => self.st.vendor = 1,
            _ => {}
        }
    }
}

impl<F: Frame> Step for Scan<'_, F> {
    /// Reads one option (RFC 2132 §2): PAD is one byte, END stops, anything
    /// else is code, length, value, and the value must lie inside the UDP
    /// payload. END is read alone: it may be the frame's last byte.
    fn step(&mut self, _i: u32) -> bool {
        if self.st.status != SCANNING {
            return false;
        }
        let pos = self.st.pos as usize;
        let end = self.st.end as usize;
        // Code and length in one load where both are inside the payload;
        // the code alone at its very end (END may be the frame's last byte).
        let mut cl = [0u8; 2];
        let loaded = if pos + 2 <= end {
            self.frame.load(pos, &mut cl)
        } else {
            let mut c = [0u8; 1];
            let ok = pos < end && self.frame.load(pos, &mut c);
            cl[0] = c[0];
            // A code other than PAD or END here has no room for its length.
            ok && (c[0] == 0 || c[0] == 255)
        };
        if !loaded {
            self.st.status = BAD;
            return false;
        }
        match cl[0] {
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
        let len = usize::from(cl[1]);
        let v = pos + 2;
        if v + len > end {
            self.st.status = BAD;
            return false;
        }
        self.read_option(cl[0], v, len);
        self.st.pos = (v + len) as u32;
        self.st.status == SCANNING
    }
}

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

/// What the responder did with a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Not the responder's to answer: the frame takes the daemon's path.
    /// `Some` names the counter that says why (beside the frame's own verdict).
    Daemon(Option<Slot>),
    /// The frame now holds the OFFER: transmit it (XDP_TX).
    Offered,
    /// A REQUEST for the address its slot offered: admit it to the daemon
    /// past the new-client budget (the cookie budget paid for it).
    Cookie,
    /// A write into the frame failed after every check passed (never seen;
    /// the frame is half rewritten): drop it.
    Broken,
}

/// The header fields the responder needs from an untagged request.
struct Fixed {
    /// IPv4 total length.
    ip_len: usize,
    udp_len: usize,
    flags: u16,
    ciaddr: u32,
    giaddr: u32,
}

#[inline(always)]
fn read_fixed<F: Frame>(f: &mut F) -> Option<Fixed> {
    // IPv4 header, UDP header and BOOTP up to giaddr in one load (helper
    // calls are most of the responder's cost), the magic cookie in another.
    const AT: usize = ETH_HLEN;
    let mut h = [0u8; BOOTP_AT + 28 - AT];
    let mut cookie = [0u8; 4];
    if !f.load(AT, &mut h)
        || h[0] != 0x45
        || !f.load(BOOTP_AT + 236, &mut cookie)
        || cookie != MAGIC_COOKIE
    {
        return None;
    }
    let be16 = |o: usize| usize::from(u16::from_be_bytes([h[o - AT], h[o - AT + 1]]));
    let be32 =
        |o: usize| u32::from_be_bytes([h[o - AT], h[o - AT + 1], h[o - AT + 2], h[o - AT + 3]]);
    Some(Fixed {
        ip_len: be16(ETH_HLEN + 2),
        udp_len: be16(ETH_HLEN + IP_HLEN + 4),
        flags: be16(BOOTP_AT + 10) as u16,
        ciaddr: be32(BOOTP_AT + 12),
        giaddr: be32(BOOTP_AT + 24),
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
    // Field by field: `prl` is read only up to `prl_len`, and zeroing it
    // for every frame of a flood is a measurable share of the program.
    let st = &mut work.scan;
    st.pos = (BOOTP_AT + OPTIONS_AT) as u32;
    st.end = (ETH_HLEN + IP_HLEN + fx.udp_len) as u32;
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
    let mut s = Scan {
        frame,
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
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < IP_HLEN {
        sum += u32::from(u16::from_be_bytes([h[i], h[i + 1]]));
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// Rewrites the frame (already checked by [`scan`], [`plan`] and [`fits`],
/// and resized to `BOOTP_AT + payload_len(plan)`) into the OFFER of
/// `yiaddr`: Ethernet, IP and UDP headers, the BOOTP fixed fields RFC 2131
/// Table 3 sets, the planned options, END and padding. `false` if a write
/// failed (the frame is then unusable: drop it).
#[inline(always)]
pub fn write_offer<F: Frame, L: Looper>(
    lp: &mut L,
    frame: &mut F,
    cfg: &OfferCfg,
    p: &PlanState,
    flags: u16,
    chaddr: [u8; 6],
    yiaddr: u32,
) -> bool {
    let payload = payload_len(p.len as usize);
    let bcast = flags & BROADCAST_FLAG != 0;
    let (dmac, dip) = if bcast {
        ([0xff; 6], u32::MAX)
    } else {
        (chaddr, yiaddr)
    };
    // Ethernet, IPv4 as the daemon's frame builder writes it (TTL 64, DF
    // clear), UDP, then BOOTP op/htype/hlen/hops: one store.
    let mut h = [0u8; HEAD_LEN];
    h[..6].copy_from_slice(&dmac);
    h[6..12].copy_from_slice(&cfg.server_mac);
    h[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
    let ip = ETH_HLEN;
    h[ip] = 0x45;
    h[ip + 2..ip + 4].copy_from_slice(&((IP_HLEN + UDP_HLEN + payload) as u16).to_be_bytes());
    h[ip + 8] = 64;
    h[ip + 9] = 17;
    h[ip + 12..ip + 16].copy_from_slice(&cfg.server_ip.to_be_bytes());
    h[ip + 16..ip + 20].copy_from_slice(&dip.to_be_bytes());
    let mut iph = [0u8; IP_HLEN];
    iph.copy_from_slice(&h[ip..ip + IP_HLEN]);
    h[ip + 10..ip + 12].copy_from_slice(&ip_checksum(&iph).to_be_bytes());
    let udp = ETH_HLEN + IP_HLEN;
    h[udp..udp + 2].copy_from_slice(&DHCP_SERVER_PORT.to_be_bytes());
    h[udp + 2..udp + 4].copy_from_slice(&DHCP_CLIENT_PORT.to_be_bytes());
    h[udp + 4..udp + 6].copy_from_slice(&((UDP_HLEN + payload) as u16).to_be_bytes());
    // op 2 (BOOTREPLY), htype 1 and hlen 6 (the request's, checked by the
    // parser), hops 0.
    h[BOOTP_AT..BOOTP_AT + 4].copy_from_slice(&[2, 1, 6, 0]);
    // ciaddr 0 (checked), yiaddr, siaddr 0, giaddr 0 (checked).
    let mut addrs = [0u8; 16];
    addrs[4..8].copy_from_slice(&yiaddr.to_be_bytes());
    let z = cfg.zeros.as_ptr();
    // SAFETY: every source is a local array of the given length, or `zeros`
    // (256 bytes) for at most 192 bytes. xid and flags stay; secs is zeroed.
    let ok = unsafe {
        frame.store(0, h.as_ptr(), HEAD_LEN)
            && frame.store(BOOTP_AT + 8, z, 2)
            && frame.store(BOOTP_AT + 12, addrs.as_ptr(), 16)
            && frame.store(BOOTP_AT + 44, z, 192)
    };
    if !ok {
        return false;
    }
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

/// What [`respond`] works with beside the frame and the shared buckets.
pub struct Ctx<'a> {
    /// Scratch state (a per-CPU map entry in the kernel).
    pub work: &'a mut Work,
    /// The responder's configuration (the `offer_cfg` map entry).
    pub cfg: &'a OfferCfg,
    /// The limits (offer and cookie budgets).
    pub limits: &'a Limits,
    /// CLOCK_MONOTONIC ns.
    pub now: u64,
    /// Length of the request frame.
    pub frame_len: usize,
}

/// The responder's decision for a request from a never-seen MAC (step 4b
/// of admission, design.md §Offer responder). Every way out that is not
/// [`Outcome::Offered`] or [`Outcome::Cookie`] leaves the frame untouched.
/// A [`Outcome::Daemon`] with a reason is counted here.
#[inline(always)]
pub fn respond<T: Tables, F: Frame, L: Looper>(
    lp: &mut L,
    frame: F,
    t: &mut T,
    c: &mut Ctx<'_>,
    req: &Request,
    stripe: impl FnOnce(u32) -> Option<StripeSlot>,
    count: impl Fn(Slot),
) -> Outcome {
    let o = respond_inner(lp, frame, t, c, req, stripe, &count);
    if let Outcome::Daemon(Some(s)) = o {
        count(s);
    }
    o
}

#[inline(always)]
fn respond_inner<T: Tables, F: Frame, L: Looper>(
    lp: &mut L,
    frame: F,
    t: &mut T,
    c: &mut Ctx<'_>,
    req: &Request,
    stripe: impl FnOnce(u32) -> Option<StripeSlot>,
    count: &impl Fn(Slot),
) -> Outcome {
    let cfg = c.cfg;
    let frame_len = c.frame_len;
    if cfg.abi != ABI_VERSION || cfg.stripe_len == 0 || cfg.stripe_len > STRIPE_MAX {
        return Outcome::Daemon(None);
    }
    if c.now >= cfg.alive_until_ns {
        return Outcome::Daemon(Some(Slot::OfferIneligible));
    }
    let mut frame = frame;
    if !scan(lp, req, &mut frame, frame_len, c.work) {
        return Outcome::Daemon(Some(Slot::OfferIneligible));
    }
    let s = &c.work.scan;
    let flags = s.flags;
    let slot = stripe(stripe_index(cfg.hash_key, req.mac, cfg.stripe_len)).unwrap_or_default();
    if s.msg_type == REQUEST {
        if !is_cookie(s, cfg, &slot, c.now) {
            return Outcome::Daemon(None);
        }
        let l = c.limits;
        if take_shared(t, COOKIE_BUCKET, c.now, l.cookie_rate, l.cookie_burst) != Some(true) {
            return Outcome::Daemon(Some(Slot::CookieRate));
        }
        count(Slot::PassCookie);
        return Outcome::Cookie;
    }
    if s.msg_type != DISCOVER {
        return Outcome::Daemon(None);
    }
    if !discover_eligible(s, cfg) || (cfg.classified_rules != 0 && t.classified(req.mac)) {
        return Outcome::Daemon(Some(Slot::OfferIneligible));
    }
    if slot.cur == 0 {
        return Outcome::Daemon(Some(Slot::OfferNoAddress));
    }
    let max_size = s.max_size;
    plan(lp, cfg, c.work);
    let payload = payload_len(c.work.plan.len as usize);
    if !fits(payload, frame_len, max_size) {
        return Outcome::Daemon(Some(Slot::OfferNoRoom));
    }
    if flags & BROADCAST_FLAG != 0 {
        let l = c.limits;
        if take_shared(t, OFFER_BUCKET, c.now, l.offer_rate, l.offer_burst) != Some(true) {
            return Outcome::Daemon(Some(Slot::OfferRate));
        }
    }
    // The last check: a frame that cannot take the new length stays as it was.
    if !frame.resize(BOOTP_AT + payload) {
        return Outcome::Daemon(Some(Slot::OfferNoRoom));
    }
    let m = req.mac.to_be_bytes();
    let chaddr = [m[2], m[3], m[4], m[5], m[6], m[7]];
    if write_offer(lp, &mut frame, cfg, &c.work.plan, flags, chaddr, slot.cur) {
        Outcome::Offered
    } else {
        Outcome::Broken
    }
}

/// A [`Frame`] over a byte vector and [`Tables`](crate::Tables) with only
/// the shared buckets (the host side; tests and fuzzing).
#[cfg(any(test, feature = "user"))]
pub mod host {
    extern crate std;
    use super::{Frame, PRL_MAX};
    use crate::{BUCKETS, Bucket, Tables};
    use std::vec::Vec;

    /// Tables in which no MAC is denied, trusted, known, fresh or
    /// classified: what the responder sees of a never-seen MAC.
    #[derive(Default)]
    pub struct SharedBuckets(pub [Bucket; BUCKETS as usize]);

    impl Tables for SharedBuckets {
        fn deny_until(&mut self, _: u64) -> Option<u64> {
            None
        }
        fn trusted(&mut self, _: u64) -> bool {
            false
        }
        fn known(&mut self, _: u64) -> Option<&mut Bucket> {
            None
        }
        fn fresh(&mut self, _: u64) -> Option<&mut Bucket> {
            None
        }
        fn fresh_insert(&mut self, _: u64, _: &Bucket) {}
        fn shared(&mut self, idx: u32) -> Option<&mut Bucket> {
            self.0.get_mut(idx as usize)
        }
    }

    /// The frame as a growable byte vector.
    pub struct VecFrame<'a>(pub &'a mut Vec<u8>);

    impl Frame for VecFrame<'_> {
        fn load<const N: usize>(&mut self, off: usize, dst: &mut [u8; N]) -> bool {
            match self.0.get(off..off + N) {
                Some(s) => {
                    dst.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }

        fn load_prl(&mut self, off: usize, dst: &mut [u8; PRL_MAX], len: usize) -> bool {
            match self.0.get(off..off + len) {
                Some(s) if len <= PRL_MAX => {
                    dst[..len].copy_from_slice(s);
                    true
                }
                _ => false,
            }
        }

        unsafe fn store(&mut self, off: usize, src: *const u8, len: usize) -> bool {
            // SAFETY: the caller's contract.
            let s = unsafe { core::slice::from_raw_parts(src, len) };
            match self.0.get_mut(off..off + len) {
                Some(d) => {
                    d.copy_from_slice(s);
                    true
                }
                None => false,
            }
        }

        fn resize(&mut self, len: usize) -> bool {
            self.0.resize(len, 0);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::host::VecFrame;
    use super::*;
    use std::vec;
    use std::vec::Vec;

    /// An untagged request frame with BOOTP fixed part, cookie and `opts`.
    fn frame(opts: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; BOOTP_AT + OPTIONS_AT];
        f[14] = 0x45;
        let ulen = (UDP_HLEN + OPTIONS_AT + opts.len()) as u16;
        f[38..40].copy_from_slice(&ulen.to_be_bytes());
        f[BOOTP_AT + 236..BOOTP_AT + 240].copy_from_slice(&MAGIC_COOKIE);
        f.extend_from_slice(opts);
        f
    }

    fn scanned(opts: &[u8]) -> (bool, ScanState) {
        let mut f = frame(opts);
        let req = Request {
            mac: 1,
            l3: 14,
            l4: 34,
        };
        let mut w = Work::default();
        let len = f.len();
        let ok = scan(&mut Plain, &req, &mut VecFrame(&mut f), len, &mut w);
        (ok, w.scan)
    }

    #[test]
    fn scan_reads_what_the_responder_needs() {
        let (ok, s) = scanned(&[
            53, 1, 3, 0, 0, 50, 4, 198, 18, 0, 9, 54, 4, 198, 18, 0, 1, 55, 3, 1, 3, 6, 57, 2, 5,
            220, 255,
        ]);
        assert!(ok);
        assert_eq!(s.msg_type, REQUEST);
        assert_eq!(s.requested, 0xc612_0009);
        assert_eq!(s.server_id, 0xc612_0001);
        assert_eq!(&s.prl[..usize::from(s.prl_len)], &[1, 3, 6]);
        assert_eq!(s.max_size, 1500);
    }

    #[test]
    fn scan_refuses_what_it_cannot_vouch_for() {
        // END as the frame's very last byte is fine.
        assert!(scanned(&[53, 1, 1, 255]).0);
        // No END, a value running past the payload, a repeated 53, option
        // 82, option 52, an option 55 longer than PRL_MAX.
        assert!(!scanned(&[53, 1, 1]).0);
        assert!(!scanned(&[53, 1, 1, 12, 9, 1, 255]).0);
        assert!(!scanned(&[53, 1, 1, 53, 1, 3, 255]).0);
        assert!(!scanned(&[53, 1, 1, 82, 2, 1, 0, 255]).0);
        assert!(!scanned(&[53, 1, 1, 52, 1, 1, 255]).0);
        let mut long = vec![53, 1, 1, 55, 65];
        long.extend((0..65).map(|i| i as u8 + 1));
        long.push(255);
        assert!(!scanned(&long).0);
        // 53 of the wrong length.
        assert!(!scanned(&[53, 2, 1, 1, 255]).0);
    }

    #[test]
    fn stripe_index_is_in_range_and_spreads() {
        assert_eq!(stripe_index(7, 1, 0), 0);
        let mut hits = [0u32; 16];
        for mac in 0..16_000u64 {
            let i = stripe_index(0xabc, 0x0200_0000_0000 | mac, 16);
            hits[i as usize] += 1;
        }
        // Sequential MACs spread evenly: every slot within 20 % of 1000.
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
        // Another key, another assignment: about 1 in 256 MACs keep their slot.
        let same = (0..1000u64)
            .filter(|m| stripe_index(1, *m, 256) == stripe_index(2, *m, 256))
            .count();
        assert!(same < 20, "{same}");
    }

    #[test]
    fn template_limits_are_enforced() {
        let mut c = OfferCfg::default();
        let big = [0u8; 256];
        assert_eq!(
            c.set_template([(42u8, &big[..])]),
            Err(TemplateError::OptionTooLong(42))
        );
        let rec = [1u8; 200];
        assert_eq!(
            c.set_template([(1u8, &rec[..]), (2, &rec[..]), (3, &rec[..])]),
            Err(TemplateError::TooLong)
        );
        assert_eq!(c.set_template([(53u8, &[53u8, 1, 2][..])]), Ok(()));
        assert_eq!(c.rec_of[53], 0);
        assert_eq!(c.rec_of[54], NO_RECORD);
    }
}
