//! The options block of the last OFFER, per CPU (design.md §Offer
//! responder, "Cost"). The options an OFFER carries depend on the template
//! and on the client's option 55 only, and a flood, like a room of one
//! kind of phone, sends the same option 55 again and again. So the
//! responder keeps the options, END and padding it last wrote, keyed by the
//! template's id and the option 55 bytes; a DISCOVER with the same option
//! 55 gets them with one store instead of a plan and a store per record.
//! The block is read back from the frame the responder just wrote, so a
//! hit writes the very bytes a miss would (`system::xdp::offer_tests`
//! holds both to the engine).

use super::{BOOTP_AT, Frame, OPTIONS_AT, OfferCfg, PRL_MAX, ScanState};

/// Longest options block (options, END and padding) the cache holds: a
/// power of two, so that a masked length stays inside it for the verifier.
/// A template is at most 512 bytes, so every block fits.
pub const BLOCK_MAX: usize = 1024;

/// The options block of the last OFFER written on this CPU.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OptionsCache {
    /// [`OfferCfg::template_id`] of the template the block came from.
    pub template_id: u64,
    /// 1: the block is usable.
    pub valid: u32,
    /// Length of the option 55 the block was planned for.
    pub prl_len: u32,
    /// Bytes of the planned options (without END and padding).
    pub opts_len: u32,
    /// Keeps the layout free of implicit padding.
    pub _pad: u32,
    /// The option 55 the block was planned for (bytes past `prl_len` are
    /// left over and never compared).
    pub prl: [u8; PRL_MAX],
    /// Options, END and padding: BOOTP bytes from the options on.
    pub block: [u8; BLOCK_MAX],
}

impl Default for OptionsCache {
    fn default() -> OptionsCache {
        OptionsCache {
            template_id: 0,
            valid: 0,
            prl_len: 0,
            opts_len: 0,
            _pad: 0,
            prl: [0; PRL_MAX],
            block: [0; BLOCK_MAX],
        }
    }
}

/// `(a ^ b)` over the first `n` bytes of two little-endian words.
#[inline(always)]
fn differs(a: &[u8; PRL_MAX], b: &[u8; PRL_MAX], at: usize, n: usize) -> bool {
    // Masked indices: in bounds for the verifier without a panic path.
    let m = PRL_MAX - 1;
    let w = |p: &[u8; PRL_MAX]| {
        u64::from_le_bytes([
            p[at & m],
            p[(at + 1) & m],
            p[(at + 2) & m],
            p[(at + 3) & m],
            p[(at + 4) & m],
            p[(at + 5) & m],
            p[(at + 6) & m],
            p[(at + 7) & m],
        ])
    };
    let mask = if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    (w(a) ^ w(b)) & mask != 0
}

impl OptionsCache {
    /// Whether the block answers the client scanned into `s` under `cfg`.
    #[inline(always)]
    pub fn hit(&self, cfg: &OfferCfg, s: &ScanState) -> bool {
        if self.valid == 0
            || self.template_id != cfg.template_id
            || self.prl_len != u32::from(s.prl_len)
        {
            return false;
        }
        let n = usize::from(s.prl_len);
        // Eight words, unrolled: no loop for the verifier.
        let mut at = 0;
        while at < PRL_MAX {
            if at < n && differs(&self.prl, &s.prl, at, n - at) {
                return false;
            }
            at += 8;
        }
        true
    }

    /// Reads back the options, END and padding of the OFFER just written
    /// into `frame` (BOOTP payload `payload` bytes, options `opts_len`) for
    /// the client scanned into `s`. On a failed read the cache is void.
    #[inline(always)]
    pub fn fill<F: Frame>(
        &mut self,
        frame: &mut F,
        cfg: &OfferCfg,
        s: &ScanState,
        payload: usize,
        opts_len: u32,
    ) {
        self.valid = 0;
        if frame.load_block(BOOTP_AT + OPTIONS_AT, &mut self.block, payload - OPTIONS_AT) {
            self.template_id = cfg.template_id;
            self.prl_len = u32::from(s.prl_len);
            self.prl = s.prl;
            self.opts_len = opts_len;
            self.valid = 1;
        }
    }

    /// Writes the block as the options of a BOOTP payload of `payload`
    /// bytes (the length [`hit`](Self::hit)'s `opts_len` gives).
    #[inline(always)]
    pub fn write<F: Frame>(&self, frame: &mut F, payload: usize) -> bool {
        frame.store_block(BOOTP_AT + OPTIONS_AT, &self.block, payload - OPTIONS_AT)
    }
}
