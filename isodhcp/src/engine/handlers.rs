//! DHCP message handlers (RFC 2131 §4.3, design.md §Modes, §Protocol).

use std::net::Ipv4Addr;

use super::config::{
    ADOPT_BURST, ADOPT_RATE, ADOPTED_LEASE_S, CONFLICT_CANDIDATES, DECLINED_OFFER_CAP,
    QUARANTINE_CONFLICT_MS, QUARANTINE_DECLINE_MS, REASON_DECLINED_OFFER,
};
use super::lease::{RelayInfo, sanitise_hostname};
use super::{Effect, Engine, Ignored, Lease, Millis, Mode, Offer, Profile};
use crate::wire::Mac;
use crate::wire::options::{self, MessageType};
use crate::wire::view::MessageView;

/// Most offers revoked to serve one DISCOVER when the pool is empty.
const MAX_EVICTIONS: usize = 16;

fn vendor_of(msg: &MessageView<'_>) -> Option<String> {
    msg.options()
        .get(options::VENDOR_CLASS)
        .map(|v| String::from_utf8_lossy(&v).into_owned())
}

impl Engine {
    /// The profile a client should have now (design.md §Classification). The vendor class
    /// of the message counts, else the one remembered with its lease/offer.
    fn profile_for(&self, mac: Mac, vendor: Option<&str>) -> Profile {
        if let Some(s) = self.statics.get(&mac) {
            return Self::static_profile(s);
        }
        let remembered = self
            .leases
            .get(&mac)
            .and_then(|l| l.vendor.as_deref())
            .or_else(|| self.offers.get(&mac).and_then(|o| o.vendor.as_deref()));
        self.cfg
            .classifier
            .classify(mac, vendor.or(remembered), self.pool.playground().is_some())
    }

    /// Addresses the engine would try for a new isolated client, best first
    /// (design.md §Quarantine). The caller checks them against the neighbour table and
    /// passes the live ones back in [`super::Input::Dhcp`]. Empty when the
    /// client needs no new isolated address.
    pub fn candidates(&self, msg: &MessageView<'_>) -> Vec<Ipv4Addr> {
        let mac = msg.client_mac();
        if msg.options().message_type() != Some(MessageType::Discover)
            || self.leases.contains_key(&mac)
            || self.offers.contains_key(&mac)
        {
            return Vec::new();
        }
        if self.profile_for(mac, vendor_of(msg).as_deref()).mode != Mode::Isolated {
            return Vec::new();
        }
        self.pool.highest(CONFLICT_CANDIDATES)
    }

    /// Ends a lease whose profile no longer matches the configuration.
    fn drop_stale_profile(&mut self, mac: Mac, vendor: Option<&str>) -> Vec<Effect> {
        let Some(l) = self.leases.get(&mac) else {
            return Vec::new();
        };
        if l.is_static || l.profile == self.profile_for(mac, vendor) {
            return Vec::new();
        }
        let b = self.binding(l);
        tracing::info!(%mac, ip = %b.ip, "profile changed: lease released for re-allocation");
        self.remove_lease(mac);
        // The client is unknown again until it has a new offer: it must not
        // keep a known client's admission budget (XDP `known` map).
        vec![
            Effect::Unbind(b),
            Effect::Known(mac, false),
            Effect::PersistNow,
        ]
    }

    pub(super) fn on_discover(
        &mut self,
        now: Millis,
        msg: &MessageView<'_>,
        in_use: &[Ipv4Addr],
    ) -> Vec<Effect> {
        let mac = msg.client_mac();
        let vendor = vendor_of(msg);
        let mut fx = self.drop_stale_profile(mac, vendor.as_deref());
        if let Some(l) = self.leases.get(&mac) {
            let ip = l.ip;
            self.stats.offers += 1;
            fx.extend(self.reply(msg, MessageType::Offer, ip, l.profile.mode));
            return fx;
        }
        let profile = self.profile_for(mac, vendor.as_deref());
        if let Some(o) = self.offers.get(&mac).filter(|o| o.profile == profile) {
            let ip = o.ip;
            self.hold_offer(now, mac, ip, profile, vendor, false);
            self.stats.offers += 1;
            fx.extend(self.reply(msg, MessageType::Offer, ip, profile.mode));
            return fx;
        }
        fx.extend(self.cancel_offer(mac));
        if self.offers.len() >= self.cfg.max_offers {
            if let Some(&(_, oldest)) = self.offer_expiry.first() {
                fx.extend(self.cancel_offer(oldest));
            }
        }
        // An offer is no commitment: when the pool is empty, the oldest
        // outstanding offers give their addresses back, so a flood of
        // DISCOVERs can never hold a small pool hostage (design.md §Protocol).
        let mut ip = self.allocate(now, profile.mode, in_use);
        // The stripe gives its addresses back before any offer is revoked.
        while ip.is_none() && profile.mode != Mode::Compat {
            let Some(e) = self.stripe_release_one() else {
                break;
            };
            fx.push(e);
            ip = self.allocate(now, profile.mode, in_use);
        }
        let mut evicted = 0;
        while ip.is_none() && evicted < MAX_EVICTIONS {
            let Some(&(_, oldest)) = self.offer_expiry.first() else {
                break;
            };
            fx.extend(self.cancel_offer(oldest));
            evicted += 1;
            ip = self.allocate(now, profile.mode, in_use);
        }
        let Some(ip) = ip else {
            if profile.mode == Mode::Compat {
                if self
                    .block_warned
                    .get(&mac)
                    .is_none_or(|t| now.saturating_sub(*t) >= 60_000)
                {
                    if self.block_warned.len() > 4096 {
                        self.block_warned.clear();
                    }
                    self.block_warned.insert(mac, now);
                    tracing::warn!(%mac, "no free /30 block for a compat client");
                }
                fx.extend(self.ignore(Ignored::NoFreeBlock));
            } else {
                fx.extend(self.ignore(Ignored::PoolExhausted));
            }
            return fx;
        };
        self.hold_offer(now, mac, ip, profile, vendor, false);
        fx.push(Effect::Known(mac, true));
        self.stats.offers += 1;
        fx.extend(self.reply(msg, MessageType::Offer, ip, profile.mode));
        fx
    }

    fn allocate(&mut self, now: Millis, mode: Mode, in_use: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        match mode {
            Mode::Isolated => self.allocate_isolated(now, in_use),
            Mode::Compat => self
                .pool
                .take_block()
                .map(|b| Ipv4Addr::from(u32::from(b) + 2)),
            Mode::Playground => self.pool.take_playground(),
        }
    }

    /// Highest free address that the neighbour table does not show alive.
    /// Live ones are quarantined and never retried in this round; when the
    /// quarantine is full they stay free but are still skipped, and the walk
    /// goes on down the free set (past the probed candidates if it must), so
    /// a squatter can neither block allocation nor be handed out.
    fn allocate_isolated(&mut self, now: Millis, in_use: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        for ip in in_use {
            if !self.pool.is_free(*ip) {
                continue;
            }
            self.stats.conflicts += 1;
            tracing::warn!(%ip, "address answers in the neighbour table: quarantined");
            if self
                .quarantine
                .insert(*ip, now + QUARANTINE_CONFLICT_MS, "conflict")
            {
                self.quarantine_dirty = true;
                self.pool.take(*ip);
            }
        }
        let ip = self.pool.highest_except(in_use)?;
        self.pool.take(ip);
        Some(ip)
    }

    /// Holds `ip` for `mac` for the offer time (`adopted`: for an INIT-REBOOT
    /// client without a record). An offer of another address that this one
    /// replaces gives its address back: one client, one offer (the
    /// INIT-REBOOT-after-DISCOVER path once leaked an address here).
    fn hold_offer(
        &mut self,
        now: Millis,
        mac: Mac,
        ip: Ipv4Addr,
        profile: Profile,
        vendor: Option<String>,
        adopted: bool,
    ) {
        if let Some(old) = self.offers.remove(&mac) {
            self.offer_expiry.remove(&(old.until, mac));
            if old.ip != ip {
                self.return_offered(&old);
            }
        }
        let until = now + self.cfg.offer_hold_ms;
        self.offers.insert(
            mac,
            Offer {
                ip,
                until,
                profile,
                vendor,
                adopted,
            },
        );
        self.offer_expiry.insert((until, mac));
    }

    /// Gives an offer's address (or /30) back unless a lease owns it.
    fn return_offered(&mut self, o: &Offer) {
        if !self.owners.contains_key(&o.ip) {
            match o.profile.mode {
                Mode::Compat => self.pool.give_back_block(o.ip),
                _ => self.pool.give_back(o.ip),
            }
        }
    }

    /// Drops an outstanding offer and returns its address to the pool.
    pub(super) fn cancel_offer(&mut self, mac: Mac) -> Vec<Effect> {
        let Some(o) = self.offers.remove(&mac) else {
            return Vec::new();
        };
        self.offer_expiry.remove(&(o.until, mac));
        self.return_offered(&o);
        if self.leases.contains_key(&mac) {
            Vec::new()
        } else {
            vec![Effect::Known(mac, false)]
        }
    }

    pub(super) fn on_request(&mut self, now: Millis, msg: &MessageView<'_>) -> Vec<Effect> {
        let mac = msg.client_mac();
        let server_id = msg.options().get_ip(options::SERVER_ID);
        let requested = msg.options().get_ip(options::REQUESTED_IP);
        let vendor = vendor_of(msg);
        if let Some(sid) = server_id {
            // SELECTING.
            if sid != self.cfg.server_ip {
                let fx = self.cancel_offer(mac);
                self.ignore(Ignored::NotOurServer);
                return fx;
            }
            let ours = self
                .leases
                .get(&mac)
                .map(|l| l.ip)
                .or_else(|| self.offers.get(&mac).map(|o| o.ip));
            return match (ours, requested) {
                (Some(ip), Some(req)) if ip == req => self.commit(now, msg, ip),
                (_, None) => self.ignore(Ignored::NoAddressNamed),
                (_, Some(req)) => match self.claim_striped(now, msg, req, vendor) {
                    Some(fx) => fx,
                    None => self.nak(msg, "requested address was not offered to this client"),
                },
            };
        }
        // A lease whose profile changed is released; the client must DISCOVER.
        let mut fx = self.drop_stale_profile(mac, vendor.as_deref());
        if !fx.is_empty() {
            fx.extend(self.nak(msg, "client profile changed"));
            return fx;
        }
        if !msg.ciaddr().is_unspecified() {
            // RENEWING / REBINDING.
            return match self.leases.get(&mac) {
                Some(l) if l.ip == msg.ciaddr() => self.commit(now, msg, msg.ciaddr()),
                _ => self.nak(msg, "no lease for this address"),
            };
        }
        let Some(req) = requested else {
            return self.ignore(Ignored::NoAddressNamed);
        };
        // INIT-REBOOT.
        if let Some(l) = self.leases.get(&mac) {
            return if l.ip == req {
                self.commit(now, msg, req)
            } else {
                self.nak(msg, "requested address is not this client's lease")
            };
        }
        // A client told to go back to INIT will DISCOVER afresh: an offer
        // it still holds from an earlier DISCOVER is moot, so every NAK
        // below returns it at once instead of after the offer hold.
        let profile = self.profile_for(mac, vendor.as_deref());
        let valid = match profile.mode {
            Mode::Isolated => self.pool.assignable(req),
            Mode::Compat => u32::from(req) & 3 == 2 && self.pool.cidr().contains(req),
            Mode::Playground => self.pool.playground_assignable(req),
        };
        if !valid {
            return self.forget_and_nak(msg, "requested address is not valid for this client");
        }
        if self.offers.get(&mac).is_some_and(|o| o.ip == req) {
            return self.commit(now, msg, req);
        }
        let held_by_other =
            self.owners.contains_key(&req) || self.offers.values().any(|o| o.ip == req);
        let free = match profile.mode {
            Mode::Compat => self.pool.take_block_at(Ipv4Addr::from(u32::from(req) & !3)),
            _ => self.pool.is_free(req),
        };
        if held_by_other || !free {
            return self.forget_and_nak(msg, "requested address belongs to another client");
        }
        // The server lost its state: adopt the client's address, within a
        // budget. Each adoption is a single frame that takes an address, so
        // unbounded it would let one guest drain the pool; past the budget
        // the client is told to DISCOVER (a full exchange per address), and
        // an adopted lease is short until its first renewal.
        if !self
            .adopt_budget
            .take(now.saturating_mul(1_000_000), ADOPT_RATE, ADOPT_BURST)
        {
            if profile.mode == Mode::Compat {
                self.pool.give_back_block(req);
            }
            return self.forget_and_nak(msg, "adoption budget exhausted: rediscover");
        }
        self.stats.adoptions += 1;
        self.hold_offer(now, mac, req, profile, vendor, true);
        self.commit(now, msg, req)
    }

    /// A SELECTING REQUEST for the address the XDP responder offered this
    /// MAC (its stripe slot's): commit it like an answer to our own offer
    /// (design.md §Offer responder). `None`: not such a REQUEST.
    fn claim_striped(
        &mut self,
        now: Millis,
        msg: &MessageView<'_>,
        req: Ipv4Addr,
        vendor: Option<String>,
    ) -> Option<Vec<Effect>> {
        let mac = msg.client_mac();
        if self.leases.contains_key(&mac) {
            return None;
        }
        let profile = self.profile_for(mac, vendor.as_deref());
        if profile.mode != Mode::Isolated {
            return None;
        }
        let claimed = self.stripe_claim(now, mac, req)?;
        let mut fx = self.cancel_offer(mac);
        fx.extend(claimed);
        self.hold_offer(now, mac, req, profile, vendor, false);
        self.stats.stripe_claims += 1;
        fx.extend(self.commit(now, msg, req));
        Some(fx)
    }

    /// Records or extends the lease and returns bind, persistence and ACK effects.
    fn commit(&mut self, now: Millis, msg: &MessageView<'_>, ip: Ipv4Addr) -> Vec<Effect> {
        let mac = msg.client_mac();
        let adopted =
            !self.leases.contains_key(&mac) && self.offers.get(&mac).is_some_and(|o| o.adopted);
        let lease_s = if adopted {
            self.cfg.lease_time.min(ADOPTED_LEASE_S)
        } else {
            self.cfg.lease_time
        };
        let expires = now + Millis::from(lease_s) * 1000;
        let hostname = msg
            .options()
            .get(options::HOSTNAME)
            .map(|h| sanitise_hostname(&h))
            .filter(|h| !h.is_empty());
        let relay = msg
            .options()
            .get(options::RELAY_AGENT_INFO)
            .map(|r| RelayInfo {
                raw: r.into_owned(),
            });
        let mut fx = Vec::new();
        let mode;
        match self.leases.get_mut(&mac) {
            Some(l) => {
                mode = l.profile.mode;
                fx = self.extend_lease(now, mac, ip, expires, hostname, relay);
            }
            None => {
                let Some(o) = self.offers.remove(&mac) else {
                    return self.nak(msg, "no offer for this client");
                };
                self.offer_expiry.remove(&(o.until, mac));
                mode = o.profile.mode;
                let lease = Lease {
                    mac,
                    ip,
                    profile: o.profile,
                    is_static: false,
                    expires,
                    grace_until: None,
                    hostname,
                    vendor: o.vendor,
                    relay,
                    persisted_expires: 0,
                };
                let b = self.binding(&lease);
                self.insert_lease(lease);
                self.dirty.insert(mac);
                fx.push(Effect::Bind(b));
                fx.push(Effect::Known(mac, true));
                fx.push(Effect::PersistNow);
                tracing::info!(%mac, %ip, mode = mode.as_str(), "lease committed");
            }
        }
        self.stats.acks += 1;
        fx.extend(self.reply_for(msg, MessageType::Ack, ip, mode, lease_s));
        fx
    }

    /// A REQUEST from a client that holds a lease: extends it (statics keep
    /// their expiry and only learn a missing host name) and returns the bind
    /// and persistence effects.
    fn extend_lease(
        &mut self,
        now: Millis,
        mac: Mac,
        ip: Ipv4Addr,
        expires: Millis,
        hostname: Option<String>,
        relay: Option<RelayInfo>,
    ) -> Vec<Effect> {
        let mut fx = Vec::new();
        let Some(l) = self.leases.get_mut(&mac) else {
            return fx;
        };
        if relay.is_some() {
            l.relay = relay;
        }
        if l.is_static {
            if l.hostname.is_none() && hostname.is_some() {
                l.hostname = hostname;
                self.dirty.insert(mac);
            }
            return fx;
        }
        let was_active = l.expires > now;
        let old_key = l.hold_until();
        l.expires = expires;
        l.grace_until = None;
        if hostname.is_some() {
            l.hostname = hostname;
        }
        let moved = expires.saturating_sub(l.persisted_expires);
        self.dirty.insert(mac);
        self.expiry.remove(&(old_key, mac));
        self.expiry.insert((expires, mac));
        let l = &self.leases[&mac];
        if !was_active {
            fx.push(Effect::Bind(self.binding(l)));
            fx.push(Effect::Known(mac, true));
        }
        // design.md §Persistence: renewals that move the expiry by less than half a
        // lease time are batched; bigger moves are written now.
        fx.push(if moved >= self.lease_ms() / 2 {
            Effect::PersistNow
        } else {
            Effect::PersistLater
        });
        tracing::debug!(%mac, %ip, "lease renewed");
        fx
    }

    /// Cancels the client's outstanding offer, then NAKs.
    fn forget_and_nak(&mut self, msg: &MessageView<'_>, why: &'static str) -> Vec<Effect> {
        let mut fx = self.cancel_offer(msg.client_mac());
        fx.extend(self.nak(msg, why));
        fx
    }

    fn nak(&mut self, msg: &MessageView<'_>, why: &'static str) -> Vec<Effect> {
        self.stats.naks += 1;
        *self.stats.nak_reasons.entry(why).or_default() += 1;
        if self.may_log() {
            tracing::info!(mac = %msg.client_mac(), reason = why, "NAK");
        }
        self.nak_reply(msg, why)
    }

    pub(super) fn on_release(&mut self, msg: &MessageView<'_>) -> Vec<Effect> {
        let mac = msg.client_mac();
        match self.leases.get(&mac) {
            Some(l) if l.ip == msg.ciaddr() && l.is_static => {
                tracing::info!(%mac, ip = %l.ip, "static client released; address stays reserved");
                Vec::new()
            }
            Some(l) if l.ip == msg.ciaddr() => {
                let b = self.binding(l);
                self.remove_lease(mac);
                self.stats.releases += 1;
                tracing::info!(%mac, ip = %b.ip, "lease released");
                vec![
                    Effect::Unbind(b),
                    Effect::Known(mac, false),
                    Effect::PersistNow,
                ]
            }
            _ => self.ignore(Ignored::NotOwner),
        }
    }

    /// DECLINE (RFC 2131 §4.3.3): the owner found its address in use.
    pub(super) fn on_decline(&mut self, now: Millis, msg: &MessageView<'_>) -> Vec<Effect> {
        let mac = msg.client_mac();
        let declined = msg.options().get_ip(options::REQUESTED_IP);
        let owned = self
            .leases
            .get(&mac)
            .filter(|l| Some(l.ip) == declined)
            .cloned();
        let offered = self
            .offers
            .get(&mac)
            .filter(|o| Some(o.ip) == declined)
            .map(|o| o.ip);
        self.stats.declines += 1;
        match (owned, offered) {
            (Some(l), _) if l.is_static => {
                tracing::warn!(%mac, ip = %l.ip, "static client declined its address; it stays reserved");
                Vec::new()
            }
            (Some(l), _) => {
                let b = self.binding(&l);
                self.remove_lease(mac);
                let mut fx = vec![Effect::Unbind(b), Effect::Known(mac, false)];
                self.quarantine_declined(now, l.ip);
                tracing::warn!(%mac, ip = %l.ip, "address declined: quarantined");
                fx.push(Effect::PersistNow);
                fx
            }
            (None, Some(ip)) => {
                // A DECLINE before any ACK comes from a client that holds
                // nothing: anyone can send it from any MAC, so these get a
                // small quarantine share of their own and cannot fill it.
                let fx = self.cancel_offer(mac);
                if self.quarantine.count(REASON_DECLINED_OFFER) < DECLINED_OFFER_CAP {
                    self.quarantine_as(now, ip, REASON_DECLINED_OFFER);
                }
                fx
            }
            _ => self.ignore(Ignored::DeclineNotOwner),
        }
    }

    /// Keeps a declined pool address out of allocation (a compat block went
    /// back whole; only the declined address stays out).
    fn quarantine_declined(&mut self, now: Millis, ip: Ipv4Addr) {
        self.quarantine_as(now, ip, "decline");
    }

    fn quarantine_as(&mut self, now: Millis, ip: Ipv4Addr, reason: &str) {
        if self.pool.cidr().contains(ip)
            && self
                .quarantine
                .insert(ip, now + QUARANTINE_DECLINE_MS, reason)
        {
            self.quarantine_dirty = true;
            self.pool.take(ip);
        }
    }

    /// INFORM (RFC 2131 §4.3.5): configuration only, no address.
    pub(super) fn on_inform(&mut self, msg: &MessageView<'_>) -> Vec<Effect> {
        if !self.pool.cidr().contains(msg.ciaddr()) {
            return self.ignore(Ignored::InformOutsidePool);
        }
        let mac = msg.client_mac();
        let mode = match self.leases.get(&mac) {
            Some(l) => l.profile.mode,
            None => self.profile_for(mac, vendor_of(msg).as_deref()).mode,
        };
        self.stats.informs += 1;
        self.reply(msg, MessageType::Ack, Ipv4Addr::UNSPECIFIED, mode)
    }
}
