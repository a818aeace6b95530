//! Start-up: leases and quarantine from the store, then the statics.

use std::net::Ipv4Addr;

use super::lease::sanitise_hostname;
use super::{
    Effect, Engine, Lease, LeaseRecord, Millis, Mode, NEVER, Profile, QuarantineRecord, StaticEntry,
};

impl Engine {
    /// Restores leases and quarantine from the store, then reserves the
    /// statics (design.md §Statics, §Persistence). Leases that expired less than one lease time
    /// ago are kept in a grace state: their address is not offered to anyone
    /// else until the grace ends, and they get no binding until the client
    /// comes back. Returns the effects that bring the statics up, and the
    /// records that could not be restored with the reason.
    pub fn start(
        &mut self,
        now: Millis,
        records: Vec<LeaseRecord>,
        quarantine: Vec<QuarantineRecord>,
    ) -> (Vec<Effect>, Vec<(LeaseRecord, &'static str)>) {
        let mut rejected = Vec::new();
        for q in quarantine {
            if q.until > now && self.pool.take(q.ip) {
                self.quarantine.insert(q.ip, q.until, q.reason);
            }
        }
        for r in records {
            match self.restore_one(now, r.clone()) {
                Ok(()) => {}
                Err(why) => rejected.push((r, why)),
            }
        }
        let mut fx = Vec::new();
        let statics: Vec<StaticEntry> = self.statics.values().cloned().collect();
        for s in statics {
            fx.extend(self.reserve_static(&s));
        }
        self.stripe_size();
        fx.extend(self.stripe_fill());
        (fx, rejected)
    }

    fn restore_one(&mut self, now: Millis, r: LeaseRecord) -> Result<(), &'static str> {
        if self.statics.contains_key(&r.mac) {
            return Err("MAC now has a --static entry; the static wins");
        }
        let Some(expires) = r.expires else {
            return Err("lease without expiry (static) and no --static entry for it");
        };
        if self.owners.contains_key(&r.ip) || self.leases.contains_key(&r.mac) {
            return Err("duplicate MAC or address");
        }
        let valid = match r.mode {
            Mode::Isolated => self.pool.assignable(r.ip) && self.pool.is_free(r.ip),
            Mode::Compat => {
                u32::from(r.ip) & 3 == 2
                    && self
                        .pool
                        .take_block_at(Ipv4Addr::from(u32::from(r.ip) & !3))
            }
            Mode::Playground => self.pool.playground_assignable(r.ip) && self.pool.is_free(r.ip),
        };
        if !valid {
            return Err("address is not valid for its mode in this pool");
        }
        let grace_until = (expires <= now).then(|| expires.saturating_add(self.lease_ms()));
        if grace_until.is_some_and(|g| g <= now) {
            if r.mode == Mode::Compat {
                self.pool.give_back_block(r.ip);
            }
            return Ok(()); // expired longer than a lease time ago: nothing to keep
        }
        self.insert_lease(Lease {
            mac: r.mac,
            ip: r.ip,
            profile: Profile {
                mode: r.mode,
                masq: r.masq,
            },
            is_static: false,
            expires,
            grace_until,
            // Cleaned again: a file written by an older build (or by hand)
            // may hold characters the current rules drop.
            hostname: r
                .hostname
                .map(|h| sanitise_hostname(h.as_bytes()))
                .filter(|h| !h.is_empty()),
            vendor: r.vendor,
            relay: None,
            persisted_expires: expires,
        });
        Ok(())
    }

    pub(super) fn static_profile(s: &StaticEntry) -> Profile {
        let mode = if s.compat {
            Mode::Compat
        } else if s.playground {
            Mode::Playground
        } else {
            Mode::Isolated
        };
        Profile {
            mode,
            masq: s.masquerade,
        }
    }

    fn reserve_static(&mut self, s: &StaticEntry) -> Vec<Effect> {
        let lease = Lease {
            mac: s.mac,
            ip: s.ip,
            profile: Self::static_profile(s),
            is_static: true,
            expires: NEVER,
            grace_until: None,
            hostname: s.hostname.clone(),
            vendor: None,
            relay: None,
            persisted_expires: NEVER,
        };
        let b = self.binding(&lease);
        self.owners.insert(lease.ip, lease.mac);
        self.leases.insert(lease.mac, lease);
        self.dirty.insert(s.mac);
        vec![Effect::Bind(b), Effect::Known(s.mac, true)]
    }
}
