//! The OFFER responder's packet and loop primitives in the kernel
//! (`isodhcp_common::offer::{Frame, Looper}`): packet bytes are read and
//! written with `bpf_xdp_load_bytes`/`bpf_xdp_store_bytes` (the verifier
//! rejects option scans through packet pointers) and loops run as
//! `bpf_loop` callbacks (design.md §Offer responder).

use core::ffi::c_void;
use core::mem::MaybeUninit;

use aya_ebpf::bindings::xdp_md;
use aya_ebpf::helpers::{bpf_loop, bpf_xdp_adjust_tail, bpf_xdp_load_bytes, bpf_xdp_store_bytes};
use isodhcp_common::offer::{BLOCK_MAX, Frame, Looper, PRL_MAX, RECORD_MAX, Step};

/// The packet of this run.
#[derive(Clone, Copy)]
pub struct XdpFrame(pub *mut xdp_md);

impl Frame for XdpFrame {
    #[inline(always)]
    fn load<const N: usize>(&mut self, off: usize) -> Option<[u8; N]> {
        let mut dst = MaybeUninit::<[u8; N]>::uninit();
        // SAFETY: the helper checks `off..off + N` against the packet and
        // writes N bytes into `dst`, which holds N (uninitialised memory is
        // what it expects: ARG_PTR_TO_UNINIT_MEM).
        let ok =
            unsafe { bpf_xdp_load_bytes(self.0, off as u32, dst.as_mut_ptr().cast(), N as u32) };
        // SAFETY: on success all N bytes were written.
        (ok == 0).then(|| unsafe { dst.assume_init() })
    }

    #[inline(always)]
    fn load_prl(&mut self, off: usize, dst: &mut [u8; PRL_MAX], len: usize) -> bool {
        self.load_upto(off, dst, len)
    }

    #[inline(always)]
    unsafe fn store(&mut self, off: usize, src: *const u8, len: usize) -> bool {
        if len == 0 || len > RECORD_MAX {
            return false;
        }
        // As in `load_upto`: 1..=256 to the verifier, `len` in fact.
        let len = (((len - 1) & 0xff) + 1) as u32;
        // SAFETY: the helper checks the packet range; `src` holds `len`
        // bytes (the caller's contract).
        unsafe { bpf_xdp_store_bytes(self.0, off as u32, src as *mut c_void, len) == 0 }
    }

    #[inline(always)]
    fn load_block(&mut self, off: usize, dst: &mut [u8; BLOCK_MAX], len: usize) -> bool {
        self.load_upto(off, dst, len)
    }

    #[inline(always)]
    fn store_block(&mut self, off: usize, src: &[u8; BLOCK_MAX], len: usize) -> bool {
        if len == 0 || len > BLOCK_MAX {
            return false;
        }
        // As in `load_upto`.
        let len = (((len - 1) & (BLOCK_MAX - 1)) + 1) as u32;
        // SAFETY: the helper checks the packet range; `src` holds
        // BLOCK_MAX ≥ len bytes.
        unsafe { bpf_xdp_store_bytes(self.0, off as u32, src.as_ptr() as *mut c_void, len) == 0 }
    }

    #[inline(always)]
    fn resize(&mut self, len: usize) -> bool {
        // SAFETY: the context of this run.
        let ctx = unsafe { &*self.0 };
        let cur = i64::from(ctx.data_end - ctx.data);
        let delta = len as i64 - cur;
        if delta == 0 {
            return true;
        }
        // SAFETY: the helper grows into the tailroom or shrinks, and fails
        // (leaving the frame alone) when it cannot.
        unsafe { bpf_xdp_adjust_tail(self.0, delta as i32) == 0 }
    }
}

impl XdpFrame {
    /// Copies `len` (1..=N) bytes at `off` into `dst`; `N` is a power of
    /// two.
    #[inline(always)]
    fn load_upto<const N: usize>(&mut self, off: usize, dst: &mut [u8; N], len: usize) -> bool {
        if len == 0 || len > N {
            return false;
        }
        // The same value, in a form whose bounds (1..=N) survive LLVM for
        // the verifier, which refuses a length that may be zero.
        let len = (((len - 1) & (N - 1)) + 1) as u32;
        // SAFETY: the helper checks `off..off + len` against the packet and
        // writes len ≤ N bytes into `dst`, which holds N.
        unsafe { bpf_xdp_load_bytes(self.0, off as u32, dst.as_mut_ptr().cast(), len) == 0 }
    }
}

/// Runs steps as a `bpf_loop` (kernel ≥ 5.17): the verifier checks the
/// callback once instead of every unrolled iteration.
pub struct BpfLoop;

extern "C" fn callback<S: Step>(i: u32, s: *mut c_void) -> i64 {
    // SAFETY: `s` is the `&mut S` `run` passed to bpf_loop, live for the call.
    let s = unsafe { &mut *s.cast::<S>() };
    if s.step(i) { 0 } else { 1 }
}

impl Looper for BpfLoop {
    #[inline(always)]
    fn run<S: Step>(&mut self, n: u32, s: &mut S) {
        // SAFETY: `callback::<S>` matches bpf_loop's callback signature and
        // reads only `s`.
        unsafe {
            bpf_loop(n, callback::<S> as *mut c_void, (s as *mut S).cast(), 0);
        }
    }
}
