//! A [`Frame`] over a byte vector and [`Tables`](crate::Tables) with only
//! the shared buckets (the host side; tests and fuzzing).

extern crate std;
use super::{BLOCK_MAX, Frame, PRL_MAX};
use crate::{ABI_VERSION, BUCKETS, Bucket, Limits, Tables};
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

/// Limits under which the responder's budgets do not get in the way of a
/// test: 10 OFFERs and 10 cookies a second, burst 10.
pub fn roomy_limits() -> Limits {
    Limits {
        abi: ABI_VERSION,
        offer_rate: 10,
        offer_burst: 10,
        cookie_rate: 10,
        cookie_burst: 10,
        ..Limits::default()
    }
}

/// The frame as a growable byte vector.
pub struct VecFrame<'a>(pub &'a mut Vec<u8>);

impl Frame for VecFrame<'_> {
    fn load<const N: usize>(&mut self, off: usize) -> Option<[u8; N]> {
        self.0.get(off..off + N)?.try_into().ok()
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

    fn load_block(&mut self, off: usize, dst: &mut [u8; BLOCK_MAX], len: usize) -> bool {
        match self.0.get(off..off + len) {
            Some(s) if (1..=BLOCK_MAX).contains(&len) => {
                dst[..len].copy_from_slice(s);
                true
            }
            _ => false,
        }
    }

    fn store_block(&mut self, off: usize, src: &[u8; BLOCK_MAX], len: usize) -> bool {
        match self.0.get_mut(off..off + len) {
            Some(d) if (1..=BLOCK_MAX).contains(&len) => {
                d.copy_from_slice(&src[..len]);
                true
            }
            _ => false,
        }
    }

    fn resize(&mut self, len: usize) -> bool {
        self.0.resize(len, 0);
        true
    }
}
