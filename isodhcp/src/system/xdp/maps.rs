//! The maps the daemon writes (contract in `isodhcp_common`): rate limits,
//! deny and trust lists, the known-clients map and the AF_XDP socket map.
//! Every write is idempotent (insert replaces, remove of a missing key is
//! success).
//!
//! The known-clients map is written once per client, not once per packet:
//! [`XdpMaps::set_known`] keeps a userspace mirror of the keys this process
//! put in (or found in) the map, and only a key missing from it costs a
//! `bpf()` call, an insert that leaves an existing entry (and its bucket)
//! alone. Every OFFER and every ACK says "known", so this is one syscall
//! per new client instead of three per DORA (design.md §Performance).

use std::collections::HashSet;
use std::os::fd::AsRawFd;

use aya::Ebpf;
use aya::maps::{Array, HashMap, MapData, MapError, XskMap};
use isodhcp_common::{
    Bucket, CLASSIFIED_MAP, DENY_MAP, KNOWN_MAP, LIMITS_MAP, Limits, OFFER_CFG_MAP, OfferCfg,
    STRIPE_MAP, StripeSlot, TRUST_MAP, XSKS_MAP, mac_key,
};

use super::{XdpError, chain};
use crate::wire::Mac;

pub struct XdpMaps {
    limits: Array<MapData, Limits>,
    deny: HashMap<MapData, u64, u64>,
    trust: HashMap<MapData, u64, u32>,
    known: HashMap<MapData, u64, Bucket>,
    xsks: XskMap<MapData>,
    offer_cfg: Array<MapData, OfferCfg>,
    stripe: Array<MapData, StripeSlot>,
    classified: HashMap<MapData, u64, u32>,
    /// What `offer_cfg` holds (the heartbeat rewrites it).
    offer: Option<OfferCfg>,
    /// Keys known to be in `known`: inserted by us, or found there.
    known_mirror: HashSet<u64>,
    known_full_warned: bool,
}

/// `BPF_NOEXIST` (include/uapi/linux/bpf.h): insert only if absent.
const BPF_NOEXIST: u64 = 1;

fn take<T: TryFrom<aya::maps::Map, Error = MapError>>(
    ebpf: &mut Ebpf,
    name: &str,
) -> Result<T, XdpError> {
    let map = ebpf
        .take_map(name)
        .ok_or_else(|| XdpError::Load(format!("map {name} missing from the object")))?;
    T::try_from(map).map_err(|e| XdpError::Load(format!("map {name}: {}", chain(&e))))
}

fn absent_ok(r: Result<(), MapError>) -> Result<(), MapError> {
    match r {
        Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r,
    }
}

impl XdpMaps {
    pub(super) fn take(ebpf: &mut Ebpf) -> Result<XdpMaps, XdpError> {
        Ok(XdpMaps {
            limits: take(ebpf, LIMITS_MAP)?,
            deny: take(ebpf, DENY_MAP)?,
            trust: take(ebpf, TRUST_MAP)?,
            known: take(ebpf, KNOWN_MAP)?,
            xsks: take(ebpf, XSKS_MAP)?,
            offer_cfg: take(ebpf, OFFER_CFG_MAP)?,
            stripe: take(ebpf, STRIPE_MAP)?,
            classified: take(ebpf, CLASSIFIED_MAP)?,
            offer: None,
            known_mirror: HashSet::new(),
            known_full_warned: false,
        })
    }

    /// Writes the admission limits; until then the program admits without limits.
    pub fn set_limits(&mut self, l: &Limits) -> Result<(), MapError> {
        self.limits.set(0, l, 0)
    }

    /// Drops every frame from `mac` until `until_mono_ns` (CLOCK_MONOTONIC; 0 = for ever).
    pub fn deny(&mut self, mac: Mac, until_mono_ns: u64) -> Result<(), MapError> {
        self.deny.insert(mac_key(mac.0), until_mono_ns, 0)
    }

    pub fn undeny(&mut self, mac: Mac) -> Result<(), MapError> {
        absent_ok(self.deny.remove(&mac_key(mac.0)))
    }

    /// Exempts `mac` from the per-MAC and new-client limits.
    pub fn trust(&mut self, mac: Mac) -> Result<(), MapError> {
        self.trust.insert(mac_key(mac.0), 1, 0)
    }

    /// Adds (with a full per-MAC bucket, unless present) or removes a known client.
    pub fn set_known(&mut self, mac: Mac, known: bool) {
        let key = mac_key(mac.0);
        let r = if known {
            if self.known_mirror.contains(&key) {
                return;
            }
            match self.known.insert(key, Bucket::default(), BPF_NOEXIST) {
                Err(MapError::SyscallError(e))
                    if e.io_error.raw_os_error() == Some(libc::EEXIST) =>
                {
                    Ok(())
                }
                r => r,
            }
            .map(|()| {
                self.known_mirror.insert(key);
            })
        } else {
            self.known_mirror.remove(&key);
            absent_ok(self.known.remove(&key))
        };
        if let Err(e) = r {
            if !self.known_full_warned {
                tracing::warn!(%mac, error = %chain(&e), "XDP known-clients map update failed (map full?)");
                self.known_full_warned = true;
            }
        }
    }

    /// Whether `mac` is in the known-clients map.
    pub fn is_known(&self, mac: Mac) -> bool {
        self.known.get(&mac_key(mac.0), 0).is_ok()
    }

    /// Turns the OFFER responder on with `cfg` (design.md §Offer responder).
    pub fn set_offer(&mut self, cfg: OfferCfg) -> Result<(), MapError> {
        self.offer_cfg.set(0, cfg, 0)?;
        self.offer = Some(cfg);
        Ok(())
    }

    /// Turns the OFFER responder off for good (this run).
    pub fn offer_off(&mut self) -> Result<(), MapError> {
        self.offer = None;
        self.offer_cfg.set(0, OfferCfg::default(), 0)
    }

    /// Whether the responder was turned on.
    pub fn offering(&self) -> bool {
        self.offer.is_some()
    }

    /// Keeps the responder alive until `until_mono_ns`; 0 stops it at once
    /// (a pinned program must never offer for a daemon that is gone).
    pub fn heartbeat(&mut self, until_mono_ns: u64) -> Result<(), MapError> {
        let Some(mut cfg) = self.offer else {
            return Ok(());
        };
        cfg.alive_until_ns = until_mono_ns;
        self.offer_cfg.set(0, cfg, 0)?;
        self.offer = Some(cfg);
        Ok(())
    }

    /// Writes slot `index` of the stripe.
    pub fn set_stripe(&mut self, index: u32, slot: StripeSlot) -> Result<(), MapError> {
        self.stripe.set(index, slot, 0)
    }

    /// Marks a MAC or OUI key (`isodhcp_common::oui_key`) as classified
    /// by a compat or playground rule: only the daemon answers it.
    pub fn classify(&mut self, key: u64) -> Result<(), MapError> {
        self.classified.insert(key, 1, 0)
    }

    /// Steers RX queue `queue` to an AF_XDP socket.
    pub fn bind_socket(&mut self, queue: u32, fd: &impl AsRawFd) -> Result<(), MapError> {
        self.xsks.set(queue, fd.as_raw_fd(), 0)
    }
}
