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

mod build;
mod cache;
#[cfg(any(test, feature = "user"))]
pub mod host;
mod scan;
#[cfg(test)]
mod tests;

pub use build::{
    Emit, Plan, PlanState, fits, ip_checksum, payload_len, plan, write_head, write_options,
};
pub use cache::{BLOCK_MAX, OptionsCache};
pub use scan::{Scan, ScanState, discover_eligible, is_cookie, scan};

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
/// Headers and BOOTP up to `giaddr` (chaddr follows): rewritten with one
/// store.
const HEAD_LEN: usize = BOOTP_AT + 28;
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
    /// Identifies the template's content (a hash of its records, set by
    /// [`OfferCfg::set_template`]): the key of the [`OptionsCache`].
    pub template_id: u64,
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
            template_id: 0,
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
        // FNV-1a (64 bits) over every record's code, length and bytes: a
        // changed template gets another id, so it never meets a block
        // cached from the old one (a collision among the few templates one
        // machine ever writes is not a practical concern).
        let mut id: u64 = 0xcbf2_9ce4_8422_2325;
        let mut mix = |b: u8| id = (id ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        for (code, rec) in records {
            mix(code);
            mix(rec.len() as u8);
            rec.iter().for_each(|b| mix(*b));
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
        self.template_id = id | 1;
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
    /// The `N` bytes at `off`; `None` if they are not all inside. (Filled
    /// by the load itself: a zeroed buffer costs the BPF program a call
    /// to its byte-by-byte `memset`.)
    fn load<const N: usize>(&mut self, off: usize) -> Option<[u8; N]>;
    /// Copies `len` (1..=[`PRL_MAX`]) bytes at `off` into `dst`.
    fn load_prl(&mut self, off: usize, dst: &mut [u8; PRL_MAX], len: usize) -> bool;
    /// Writes `len` (1..=[`RECORD_MAX`]) bytes from `src` at `off`.
    ///
    /// # Safety
    /// `src` points to `len` readable bytes (inside an [`OfferCfg`] or a
    /// local buffer).
    unsafe fn store(&mut self, off: usize, src: *const u8, len: usize) -> bool;
    /// Copies `len` (1..=[`BLOCK_MAX`]) bytes at `off` into `dst`.
    fn load_block(&mut self, off: usize, dst: &mut [u8; BLOCK_MAX], len: usize) -> bool;
    /// Writes the first `len` (1..=[`BLOCK_MAX`]) bytes of `src` at `off`.
    fn store_block(&mut self, off: usize, src: &[u8; BLOCK_MAX], len: usize) -> bool;
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

/// The responder's working state for one frame. Too large for the BPF
/// stack (512 bytes, shared with the loop callbacks), so the kernel keeps
/// it in a per-CPU array map entry; the host uses any `Work::default()`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Work {
    /// What the option scan found.
    pub scan: ScanState,
    /// The order of the template's records for this client.
    pub plan: PlanState,
    /// The options block of the last OFFER.
    pub cache: OptionsCache,
    /// The request's magic cookie and options, copied out of the frame
    /// by [`scan`].
    pub opts: [u8; BLOCK_MAX],
}

impl Default for Work {
    fn default() -> Work {
        Work {
            scan: ScanState::default(),
            plan: PlanState::default(),
            cache: OptionsCache::default(),
            opts: [0; BLOCK_MAX],
        }
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
    let hit = c.work.cache.hit(cfg, &c.work.scan);
    let opts_len = if hit {
        c.work.cache.opts_len
    } else {
        plan(lp, cfg, c.work);
        c.work.plan.len
    };
    let payload = payload_len(opts_len as usize);
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
    let xid = c.work.scan.xid;
    if !write_head(&mut frame, cfg, payload, flags, xid, chaddr, slot.cur) {
        return Outcome::Broken;
    }
    let w = &mut *c.work;
    if hit {
        if !w.cache.write(&mut frame, payload) {
            return Outcome::Broken;
        }
    } else {
        if !write_options(lp, &mut frame, cfg, &w.plan, payload) {
            return Outcome::Broken;
        }
        w.cache.fill(&mut frame, cfg, &w.scan, payload, opts_len);
    }
    Outcome::Offered
}
