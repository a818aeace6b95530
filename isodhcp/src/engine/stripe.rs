//! The offer stripe (design.md §Offer responder): free isolated addresses
//! the engine sets aside for the XDP OFFER responder, one per slot. A keyed
//! hash of the client MAC (`isodhcp_common::stripe_index`, the kernel's own
//! function) picks the slot, so the OFFER the kernel sent and the REQUEST
//! the engine receives agree on the address without any state per client.
//!
//! A slot's `cur` is out of the free pool (counted "striped" by the
//! conservation check). When a client claims it with a REQUEST, the lease
//! takes it, the slot is refilled, and the claimed address stays `prev`
//! for [`PREV_MS`]: a second client that was offered it in that window
//! finds it leased and is NAKed, and DISCOVERs again (RFC 2131 §3.1.5).

use std::net::Ipv4Addr;

use isodhcp_common::{STRIPE_MAX, mac_key, stripe_index};

use super::{Effect, Engine, Millis};
use crate::wire::Mac;

/// How long a replaced slot address still counts for a REQUEST, ms.
pub const PREV_MS: Millis = 10_000;

/// One slot as the kernel map holds it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StripeUpdate {
    /// Index in the `stripe` map.
    pub index: u32,
    /// The address offered now.
    pub cur: Option<Ipv4Addr>,
    /// The address offered before the last refill.
    pub prev: Option<Ipv4Addr>,
    /// Engine time until which `prev` is honoured.
    pub prev_until: Millis,
}

/// The stripe: slots of [`StripeUpdate`], and the hash key.
#[derive(Debug, Default)]
pub struct Stripe {
    key: u64,
    slots: Vec<StripeUpdate>,
}

impl Stripe {
    /// A stripe of `len` empty slots under `key`.
    pub fn new(key: u64, len: u32) -> Stripe {
        Stripe {
            key,
            slots: (0..len.min(STRIPE_MAX))
                .map(|index| StripeUpdate {
                    index,
                    ..StripeUpdate::default()
                })
                .collect(),
        }
    }

    /// Slots in use by the kernel (0: responder off).
    pub fn slots(&self) -> u32 {
        self.slots.len() as u32
    }

    /// The hash key.
    pub fn key(&self) -> u64 {
        self.key
    }

    /// The slot of `mac`.
    pub fn index_of(&self, mac: Mac) -> Option<usize> {
        if self.slots.is_empty() {
            return None;
        }
        Some(stripe_index(self.key, mac_key(mac.0), self.slots()) as usize)
    }

    /// Addresses the stripe holds out of the free pool.
    pub fn held(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.slots.iter().filter_map(|s| s.cur)
    }
}

impl Engine {
    /// Sizes the stripe at start-up, once restored leases and statics are
    /// out of the pool: `--xdp-offer-stripe` slots, but no more than a
    /// quarter of the free addresses, so that every slot fills
    /// ([`Engine::stripe_fill_one`] keeps three quarters for the daemon's
    /// own path) and no MAC hashes to a slot left empty by the sizing; at
    /// least one slot when the responder is on (it stays empty in a pool
    /// too small to share, and the daemon's path serves).
    pub(super) fn stripe_size(&mut self) {
        let want = self.cfg.offer_stripe;
        let len = if want == 0 {
            0
        } else {
            want.min((self.pool.free_count() / 4) as u32).max(1)
        };
        self.stripe = Stripe::new(self.cfg.stripe_key, len);
    }

    /// Fills every empty slot from the free pool while the pool keeps at
    /// least three quarters of its free addresses for the daemon's own
    /// path; one [`Effect::Stripe`] per slot filled.
    pub(super) fn stripe_fill(&mut self) -> Vec<Effect> {
        let mut fx = Vec::new();
        let mut held = self.stripe.held().count();
        for i in 0..self.stripe.slots.len() {
            if self.stripe.slots[i].cur.is_some() {
                continue;
            }
            match self.stripe_fill_one(i, held) {
                Some(e) => fx.push(e),
                None => break,
            }
            held += 1;
        }
        fx
    }

    /// Gives one slot's address back to the pool (the pool ran dry for the
    /// daemon's own path); `None` when the stripe holds none.
    pub(super) fn stripe_release_one(&mut self) -> Option<Effect> {
        let s = self
            .stripe
            .slots
            .iter_mut()
            .rev()
            .find(|s| s.cur.is_some())?;
        let ip = s.cur.take()?;
        self.pool.give_back(ip);
        Some(Effect::Stripe(*s))
    }

    /// Whether `ip` is what `mac`'s slot offers (or offered until
    /// `prev_until`) and nobody holds it: a REQUEST for it answers an OFFER
    /// the XDP responder sent. Claiming takes it out of the stripe (the
    /// caller leases it) and refills the slot.
    pub(super) fn stripe_claim(
        &mut self,
        now: Millis,
        mac: Mac,
        ip: Ipv4Addr,
    ) -> Option<Vec<Effect>> {
        let i = self.stripe.index_of(mac)?;
        let s = self.stripe.slots[i];
        if s.cur == Some(ip) {
            let slot = &mut self.stripe.slots[i];
            slot.cur = None;
            slot.prev = Some(ip);
            slot.prev_until = now + PREV_MS;
            // The address leaves the stripe for the lease the caller makes.
            let mut fx = vec![Effect::Stripe(*slot)];
            let held = self.stripe.held().count();
            fx.extend(self.stripe_fill_one(i, held));
            return Some(fx);
        }
        let free_prev = s.prev == Some(ip) && now < s.prev_until && self.pool.is_free(ip);
        free_prev.then(|| {
            self.pool.take(ip);
            Vec::new()
        })
    }

    /// Fills empty slot `i` while the stripe holds `held` addresses: only
    /// if three quarters of the free pool stay for the daemon's own path.
    fn stripe_fill_one(&mut self, i: usize, held: usize) -> Option<Effect> {
        if self.pool.free_count() <= 3 * (held + 1) {
            return None;
        }
        let ip = self.pool.highest_except(&[])?;
        self.pool.take(ip);
        let slot = &mut self.stripe.slots[i];
        slot.cur = Some(ip);
        Some(Effect::Stripe(*slot))
    }

    /// Gives every stripe address back and drops the stripe: no XDP
    /// responder will offer them (XDP unavailable, or the responder off).
    pub fn stripe_off(&mut self) {
        for ip in self.stripe.held().collect::<Vec<_>>() {
            self.pool.give_back(ip);
        }
        self.stripe = Stripe::default();
    }

    /// The XDP responder's view: slots and key (design.md §Offer responder).
    pub fn stripe(&self) -> (u32, u64) {
        (self.stripe.slots(), self.stripe.key())
    }

    /// Every slot as the kernel map should hold it (start-up and reconcile).
    pub fn stripe_slots(&self) -> Vec<StripeUpdate> {
        self.stripe.slots.clone()
    }

    /// Slots holding an address now.
    pub fn stripe_used(&self) -> usize {
        self.stripe.held().count()
    }
}
