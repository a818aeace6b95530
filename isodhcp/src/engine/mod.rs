//! Lease engine: sans-IO DHCP server state machine (RFC 2131 §4.3, SPEC §4–§5).
//!
//! `Engine::handle(now, input) -> Vec<Effect>`: time is passed in (Unix
//! milliseconds), nothing here reads a clock, opens a socket or talks to the
//! kernel. Effects are returned in the order they must be carried out:
//! kernel state first, then durable persistence, then the reply — so an ACK
//! never leaves before the lease is routed and on disk (SPEC §5 "Commit").
//!
//! Guarantees:
//! - A DISCOVER only reserves an address for the offer hold; it commits
//!   nothing (no route, no write). Outstanding offers are capped; the oldest
//!   is dropped first.
//! - REQUEST handling follows RFC 2131 §4.3.2 by client state (SELECTING,
//!   INIT-REBOOT, RENEWING/REBINDING) with the ACK/NAK/silence rules of SPEC §5.
//! - RELEASE is honoured only from the lease owner for its own address.
//! - Every lookup is a hash or ordered-set operation: O(log n) in leases.

pub mod cidr;
mod lease;
pub mod pool;
mod reply;

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

pub use lease::{Lease, LeaseRecord};

use crate::cli::CustomOption;
use crate::wire::dhcp::{BOOTREQUEST, HTYPE_ETHERNET, Message};
use crate::wire::options::{self, MessageType};
use crate::wire::Mac;
use cidr::Cidr;
use pool::Pool;

/// Unix time in milliseconds.
pub type Millis = u64;

/// Static configuration of the engine.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub server_ip: Ipv4Addr,
    pub server_mac: Mac,
    pub pool: Cidr,
    pub dns: Vec<Ipv4Addr>,
    pub lease_time: u32,
    pub offer_hold_ms: Millis,
    pub max_offers: usize,
    pub custom_options: Vec<CustomOption>,
}

/// Something that happened outside the engine.
#[derive(Debug)]
pub enum Input<'a> {
    /// A DHCP message received in a frame from `src_mac`.
    Dhcp { src_mac: Mac, msg: &'a Message },
    /// Periodic timer: expire offers and leases.
    Tick,
}

/// A reply frame to send: the BOOTP payload and where it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub payload: Vec<u8>,
    pub dst_mac: Mac,
    pub dst_ip: Ipv4Addr,
    pub kind: MessageType,
}

/// What the executors must do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Install the client's host route (replace semantics).
    RouteAdd(Ipv4Addr),
    /// Remove the client's host route.
    RouteDel(Ipv4Addr),
    /// Write the lease table durably before carrying out the next effect.
    PersistNow,
    /// The lease table changed in a way that may be written lazily (renewals).
    PersistLater,
    /// Send a reply frame.
    Send(Reply),
}

/// Why a message got no reply; counted, never logged per frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Drop {
    NotBootRequest,
    ChaddrMismatch,
    Relayed,
    NoMessageType,
    NotOurServer,
    NoAddressNamed,
    PoolExhausted,
    NotOwner,
    Unsupported,
    Encode,
}

/// Counters of the engine (messages by outcome).
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub dropped: HashMap<Drop, u64>,
    pub naks: u64,
    pub offers: u64,
    pub acks: u64,
    pub releases: u64,
    pub expired: u64,
}

#[derive(Debug, Clone, Copy)]
struct Offer {
    ip: Ipv4Addr,
    until: Millis,
}

/// The lease engine.
#[derive(Debug)]
pub struct Engine {
    cfg: EngineConfig,
    pool: Pool,
    leases: HashMap<Mac, Lease>,
    owners: HashMap<Ipv4Addr, Mac>,
    /// (time, mac) at which a lease stops holding its address.
    expiry: BTreeSet<(Millis, Mac)>,
    offers: HashMap<Mac, Offer>,
    offer_expiry: BTreeSet<(Millis, Mac)>,
    pub stats: Stats,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let pool = Pool::new(cfg.pool, cfg.server_ip);
        Engine {
            cfg,
            pool,
            leases: HashMap::new(),
            owners: HashMap::new(),
            expiry: BTreeSet::new(),
            offers: HashMap::new(),
            offer_expiry: BTreeSet::new(),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &EngineConfig {
        &self.cfg
    }

    fn lease_ms(&self) -> Millis {
        Millis::from(self.cfg.lease_time) * 1000
    }

    /// Restores leases from the store (SPEC §7). Leases that expired less
    /// than one lease time ago are kept in a grace state: their address is
    /// not offered to anyone else until the grace ends, and they get no route
    /// until the client comes back. Returns the records that could not be
    /// restored, with the reason.
    pub fn restore(&mut self, now: Millis, records: Vec<LeaseRecord>) -> Vec<(LeaseRecord, &'static str)> {
        let mut rejected = Vec::new();
        for r in records {
            let Some(expires) = r.expires else {
                rejected.push((r, "lease without expiry (static): configure it with --static"));
                continue;
            };
            if !self.pool.assignable(r.ip) {
                rejected.push((r, "address not assignable from this pool"));
                continue;
            }
            if self.owners.contains_key(&r.ip) || self.leases.contains_key(&r.mac) {
                rejected.push((r, "duplicate MAC or address"));
                continue;
            }
            let grace_until = (expires <= now).then(|| expires.saturating_add(self.lease_ms()));
            if grace_until.is_some_and(|g| g <= now) {
                continue; // expired longer than a lease time ago: nothing to keep
            }
            self.insert_lease(Lease {
                mac: r.mac,
                ip: r.ip,
                expires,
                grace_until,
                hostname: r.hostname,
                vendor: r.vendor,
                persisted_expires: expires,
            });
        }
        rejected
    }

    fn insert_lease(&mut self, l: Lease) {
        self.pool.take(l.ip);
        self.owners.insert(l.ip, l.mac);
        self.expiry.insert((l.hold_until(), l.mac));
        self.leases.insert(l.mac, l);
    }

    fn remove_lease(&mut self, mac: Mac) -> Option<Lease> {
        let l = self.leases.remove(&mac)?;
        self.expiry.remove(&(l.hold_until(), mac));
        self.owners.remove(&l.ip);
        self.pool.give_back(l.ip);
        Some(l)
    }

    /// Active leases (for persistence and reconcile).
    pub fn leases(&self) -> impl Iterator<Item = &Lease> {
        self.leases.values()
    }

    pub fn lease(&self, mac: &Mac) -> Option<&Lease> {
        self.leases.get(mac)
    }

    /// Host routes that should exist now (SPEC §6.1): one per lease that has
    /// not expired (leases in grace have no route until the client returns).
    pub fn desired_routes(&self, now: Millis) -> BTreeSet<Ipv4Addr> {
        self.leases.values().filter(|l| l.expires > now).map(|l| l.ip).collect()
    }

    pub fn free_count(&self) -> usize {
        self.pool.free_count()
    }

    pub fn offers_outstanding(&self) -> usize {
        self.offers.len()
    }

    /// Marks every lease as written; called after a durable write.
    pub fn mark_persisted(&mut self) {
        for l in self.leases.values_mut() {
            l.persisted_expires = l.expires;
        }
    }

    fn drop_msg(&mut self, why: Drop) -> Vec<Effect> {
        *self.stats.dropped.entry(why).or_default() += 1;
        Vec::new()
    }

    pub fn handle(&mut self, now: Millis, input: Input<'_>) -> Vec<Effect> {
        match input {
            Input::Tick => self.tick(now),
            Input::Dhcp { src_mac, msg } => self.on_message(now, src_mac, msg),
        }
    }

    fn on_message(&mut self, now: Millis, src_mac: Mac, msg: &Message) -> Vec<Effect> {
        if msg.op != BOOTREQUEST || msg.htype != HTYPE_ETHERNET || msg.hlen != 6 {
            return self.drop_msg(Drop::NotBootRequest);
        }
        if msg.client_mac() != src_mac {
            return self.drop_msg(Drop::ChaddrMismatch);
        }
        if !msg.giaddr.is_unspecified() {
            return self.drop_msg(Drop::Relayed);
        }
        // Offers and leases that ran out are gone before we look at state.
        let mut fx = self.tick(now);
        let more = match msg.options.message_type() {
            Some(MessageType::Discover) => self.on_discover(now, msg),
            Some(MessageType::Request) => self.on_request(now, msg),
            Some(MessageType::Release) => self.on_release(msg),
            Some(_) => self.drop_msg(Drop::Unsupported),
            None => self.drop_msg(Drop::NoMessageType),
        };
        fx.extend(more);
        fx
    }

    fn on_discover(&mut self, now: Millis, msg: &Message) -> Vec<Effect> {
        let mac = msg.client_mac();
        let ip = if let Some(l) = self.leases.get(&mac) {
            l.ip
        } else if let Some(o) = self.offers.get(&mac) {
            o.ip
        } else {
            if self.offers.len() >= self.cfg.max_offers {
                if let Some(&(_, oldest)) = self.offer_expiry.iter().next() {
                    self.cancel_offer(oldest);
                }
            }
            match self.pool.take_highest() {
                Some(ip) => ip,
                None => return self.drop_msg(Drop::PoolExhausted),
            }
        };
        if !self.leases.contains_key(&mac) {
            self.hold_offer(now, mac, ip);
        }
        self.stats.offers += 1;
        self.reply(msg, MessageType::Offer, ip, None)
    }

    fn hold_offer(&mut self, now: Millis, mac: Mac, ip: Ipv4Addr) {
        if let Some(old) = self.offers.remove(&mac) {
            self.offer_expiry.remove(&(old.until, mac));
        }
        let until = now + self.cfg.offer_hold_ms;
        self.offers.insert(mac, Offer { ip, until });
        self.offer_expiry.insert((until, mac));
    }

    /// Drops an outstanding offer and returns its address to the pool.
    fn cancel_offer(&mut self, mac: Mac) {
        if let Some(o) = self.offers.remove(&mac) {
            self.offer_expiry.remove(&(o.until, mac));
            if !self.owners.contains_key(&o.ip) {
                self.pool.give_back(o.ip);
            }
        }
    }

    fn on_request(&mut self, now: Millis, msg: &Message) -> Vec<Effect> {
        let mac = msg.client_mac();
        let server_id = msg.options.get_ip(options::SERVER_ID);
        let requested = msg.options.get_ip(options::REQUESTED_IP);
        if let Some(sid) = server_id {
            // SELECTING.
            if sid != self.cfg.server_ip {
                self.cancel_offer(mac);
                return self.drop_msg(Drop::NotOurServer);
            }
            let ours = self.leases.get(&mac).map(|l| l.ip).or_else(|| self.offers.get(&mac).map(|o| o.ip));
            return match (ours, requested) {
                (Some(ip), Some(req)) if ip == req => self.commit(now, msg, ip),
                (_, None) if msg.ciaddr.is_unspecified() => self.drop_msg(Drop::NoAddressNamed),
                _ => self.nak(msg, "requested address was not offered to this client"),
            };
        }
        if !msg.ciaddr.is_unspecified() {
            // RENEWING / REBINDING.
            return match self.leases.get(&mac) {
                Some(l) if l.ip == msg.ciaddr => self.commit(now, msg, msg.ciaddr),
                _ => self.nak(msg, "no lease for this address"),
            };
        }
        let Some(req) = requested else {
            return self.drop_msg(Drop::NoAddressNamed);
        };
        // INIT-REBOOT.
        if let Some(l) = self.leases.get(&mac) {
            return if l.ip == req { self.commit(now, msg, req) } else { self.nak(msg, "requested address is not this client's lease") };
        }
        if !self.pool.assignable(req) {
            return self.nak(msg, "requested address is not valid on this network");
        }
        let held_by_other = self.owners.contains_key(&req) || self.offers.iter().any(|(m, o)| *m != mac && o.ip == req);
        if held_by_other || !(self.pool.is_free(req) || self.offers.get(&mac).is_some_and(|o| o.ip == req)) {
            return self.nak(msg, "requested address belongs to another client");
        }
        // The server lost its state: adopt the client's address.
        self.commit(now, msg, req)
    }

    /// Records or extends the lease and returns route, persistence and ACK effects.
    fn commit(&mut self, now: Millis, msg: &Message, ip: Ipv4Addr) -> Vec<Effect> {
        let mac = msg.client_mac();
        let expires = now + self.lease_ms();
        let hostname = msg.options.get(options::HOSTNAME).map(lease::sanitise_hostname).filter(|h| !h.is_empty());
        let vendor = msg.options.get(options::VENDOR_CLASS).map(|v| String::from_utf8_lossy(v).into_owned());
        let mut fx = Vec::new();
        match self.leases.get_mut(&mac) {
            Some(l) => {
                let was_active = l.expires > now;
                let old_key = l.hold_until();
                l.expires = expires;
                l.grace_until = None;
                if hostname.is_some() {
                    l.hostname = hostname;
                }
                if l.vendor.is_none() {
                    l.vendor = vendor;
                }
                let moved = expires.saturating_sub(l.persisted_expires);
                let lease = l.clone();
                self.expiry.remove(&(old_key, mac));
                self.expiry.insert((expires, mac));
                if !was_active {
                    fx.push(Effect::RouteAdd(ip));
                }
                // SPEC §7: renewals that move the expiry by less than half a
                // lease time are batched; bigger moves are written now.
                fx.push(if moved >= self.lease_ms() / 2 { Effect::PersistNow } else { Effect::PersistLater });
                tracing::debug!(%mac, ip = %lease.ip, "lease renewed");
            }
            None => {
                self.offers.remove(&mac).map(|o| self.offer_expiry.remove(&(o.until, mac)));
                self.pool.take(ip);
                self.insert_lease(Lease { mac, ip, expires, grace_until: None, hostname, vendor, persisted_expires: 0 });
                fx.push(Effect::RouteAdd(ip));
                fx.push(Effect::PersistNow);
                tracing::info!(%mac, %ip, "lease committed");
            }
        }
        self.stats.acks += 1;
        fx.extend(self.reply(msg, MessageType::Ack, ip, None));
        fx
    }

    fn nak(&mut self, msg: &Message, why: &str) -> Vec<Effect> {
        self.stats.naks += 1;
        tracing::info!(mac = %msg.client_mac(), reason = why, "NAK");
        self.reply(msg, MessageType::Nak, Ipv4Addr::UNSPECIFIED, Some(why))
    }

    fn on_release(&mut self, msg: &Message) -> Vec<Effect> {
        let mac = msg.client_mac();
        match self.leases.get(&mac) {
            Some(l) if l.ip == msg.ciaddr => {
                let ip = l.ip;
                self.remove_lease(mac);
                self.stats.releases += 1;
                tracing::info!(%mac, %ip, "lease released");
                vec![Effect::RouteDel(ip), Effect::PersistNow]
            }
            _ => self.drop_msg(Drop::NotOwner),
        }
    }

    fn tick(&mut self, now: Millis) -> Vec<Effect> {
        while let Some(&(until, mac)) = self.offer_expiry.first() {
            if until > now {
                break;
            }
            self.cancel_offer(mac);
        }
        let mut fx = Vec::new();
        while let Some(&(at, mac)) = self.expiry.first() {
            if at > now {
                break;
            }
            self.expiry.pop_first();
            let Some(l) = self.leases.remove(&mac) else { continue };
            self.owners.remove(&l.ip);
            self.pool.give_back(l.ip);
            self.stats.expired += 1;
            tracing::info!(%mac, ip = %l.ip, "lease expired");
            fx.push(Effect::RouteDel(l.ip));
            fx.push(Effect::PersistNow);
        }
        fx
    }
}

#[cfg(test)]
mod tests;
