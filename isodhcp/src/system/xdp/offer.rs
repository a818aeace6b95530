//! What the XDP OFFER responder is told (design.md §Offer responder): its
//! configuration entry, built from the engine's own OFFER template, the
//! stripe slots in the kernel's clock, and the classification keys that
//! keep it away from clients the daemon must answer itself.

use std::net::Ipv4Addr;

use isodhcp_common::offer::{HEARTBEAT_NS, TemplateError};
use isodhcp_common::{ABI_VERSION, OfferCfg, StripeSlot, mac_key, oui_key};

use crate::engine::Engine;
use crate::engine::Millis;
use crate::engine::classify::Classifier;
use crate::engine::stripe::StripeUpdate;

/// Why the responder stays off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferOff {
    /// `--xdp-offer-stripe 0`, or a pool too small for a stripe.
    #[error("no stripe (--xdp-offer-stripe 0 or a pool under 4 addresses)")]
    NoStripe,
    /// A compat or playground rule with an empty vendor pattern classifies
    /// every client: only the daemon can answer.
    #[error("an empty --compat-vendor/--playground-vendor pattern classifies every client")]
    EveryoneClassified,
    /// The options do not fit the kernel's template.
    #[error("the OFFER options do not fit the XDP template: {0:?}")]
    Template(TemplateError),
}

/// Whether a vendor pattern of a mode other than isolated matches every
/// client (then the responder cannot answer anyone).
pub fn everyone_classified(c: &Classifier, playground: bool) -> bool {
    c.compat.vendors.iter().any(String::is_empty)
        || (playground && c.playground.vendors.iter().any(String::is_empty))
}

/// The `offer_cfg` entry for `engine`, alive until `alive_until_ns`.
pub fn offer_cfg(engine: &Engine, alive_until_ns: u64) -> Result<OfferCfg, OfferOff> {
    let (len, key) = engine.stripe();
    if len == 0 {
        return Err(OfferOff::NoStripe);
    }
    let ec = engine.config();
    let playground = engine.playground_block().is_some();
    if everyone_classified(&ec.classifier, playground) {
        return Err(OfferOff::EveryoneClassified);
    }
    let mut cfg = OfferCfg {
        abi: ABI_VERSION,
        stripe_len: len,
        alive_until_ns,
        hash_key: key,
        server_ip: u32::from(ec.server_ip),
        vendor_rules: u32::from(
            !ec.classifier.compat.vendors.is_empty()
                || (playground && !ec.classifier.playground.vendors.is_empty()),
        ),
        server_mac: ec.server_mac.0,
        classified_rules: u32::from(!classified_keys(&ec.classifier, playground).is_empty()),
        ..OfferCfg::default()
    };
    let t = engine.offer_template();
    cfg.set_template(t.iter().map(|(c, r)| (*c, r.as_slice())))
        .map_err(OfferOff::Template)?;
    Ok(cfg)
}

/// The heartbeat's deadline from the kernel clock `mono_ns`.
pub fn alive_until(mono_ns: u64) -> u64 {
    mono_ns + HEARTBEAT_NS
}

/// A stripe slot as the kernel map holds it: engine times (ms, wall clock
/// `now_ms`) turned into CLOCK_MONOTONIC ns (`mono_ns` at the same moment).
pub fn stripe_slot(u: &StripeUpdate, now_ms: Millis, mono_ns: u64) -> StripeSlot {
    let ip = |a: Option<Ipv4Addr>| a.map_or(0, u32::from);
    StripeSlot {
        cur: ip(u.cur),
        prev: ip(u.prev),
        prev_until_ns: if u.prev.is_some() {
            mono_ns + u.prev_until.saturating_sub(now_ms) * 1_000_000
        } else {
            0
        },
    }
}

/// Keys of the `classified` map: every MAC and OUI of a compat rule, and
/// of a playground rule when the playground exists.
pub fn classified_keys(c: &Classifier, playground: bool) -> Vec<u64> {
    let mut keys = Vec::new();
    let mut add = |m: &crate::engine::classify::Matcher| {
        keys.extend(m.macs.iter().map(|mac| mac_key(mac.0)));
        keys.extend(
            m.ouis
                .iter()
                .map(|o| oui_key(mac_key([o[0], o[1], o[2], 0, 0, 0]))),
        );
    };
    add(&c.compat);
    if playground {
        add(&c.playground);
    }
    keys
}

#[cfg(test)]
#[path = "offer_tests.rs"]
mod kernel_parity;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Mac;

    #[test]
    fn classified_keys_cover_macs_and_ouis() {
        let mut c = Classifier::default();
        c.compat.macs.insert(Mac([2, 0, 0, 0, 0, 1]));
        c.compat.ouis.insert([0x00, 0x1b, 0x63]);
        c.playground.macs.insert(Mac([2, 0, 0, 0, 0, 2]));
        let k = classified_keys(&c, false);
        assert!(k.contains(&0x0200_0000_0001));
        assert!(k.contains(&oui_key(0x001b_6311_2233)));
        assert!(
            !k.contains(&0x0200_0000_0002),
            "no playground: its rules do not apply"
        );
        assert!(classified_keys(&c, true).contains(&0x0200_0000_0002));
    }

    #[test]
    fn stripe_slot_converts_the_clock() {
        let u = StripeUpdate {
            index: 3,
            cur: Some(Ipv4Addr::new(198, 18, 0, 9)),
            prev: Some(Ipv4Addr::new(198, 18, 0, 10)),
            prev_until: 10_500,
        };
        let s = stripe_slot(&u, 10_000, 7_000_000_000);
        assert_eq!(s.cur, u32::from(Ipv4Addr::new(198, 18, 0, 9)));
        assert_eq!(s.prev_until_ns, 7_500_000_000);
        let none = stripe_slot(&StripeUpdate::default(), 10_000, 7);
        assert_eq!((none.cur, none.prev, none.prev_until_ns), (0, 0, 0));
    }
}
