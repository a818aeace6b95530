//! Quarantined addresses (design.md §Quarantine): addresses found in use by someone
//! else, or declined by their owner, are kept out of allocation for a while.
//! The table is capped; at the cap new entries are refused (the caller
//! alerts once and moves on to other candidates).

use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;

use super::Millis;
use super::lease::QuarantineRecord;

#[derive(Debug)]
pub struct Quarantine {
    cap: usize,
    entries: HashMap<Ipv4Addr, (Millis, String)>,
    order: BTreeSet<(Millis, Ipv4Addr)>,
    alerted: bool,
}

impl Quarantine {
    pub fn new(cap: usize) -> Quarantine {
        Quarantine {
            cap,
            entries: HashMap::new(),
            order: BTreeSet::new(),
            alerted: false,
        }
    }

    /// Adds `ip` until `until`; false (and one alert) when the table is full.
    pub fn insert(&mut self, ip: Ipv4Addr, until: Millis, reason: impl Into<String>) -> bool {
        if let Some((old, _)) = self.entries.get(&ip) {
            self.order.remove(&(*old, ip));
        } else if self.entries.len() >= self.cap {
            if !self.alerted {
                tracing::warn!(
                    cap = self.cap,
                    "quarantine is full: further conflicts are not quarantined"
                );
                self.alerted = true;
            }
            return false;
        }
        self.entries.insert(ip, (until, reason.into()));
        self.order.insert((until, ip));
        true
    }

    /// Removes and returns the addresses whose time is up.
    pub fn expire(&mut self, now: Millis) -> Vec<Ipv4Addr> {
        let mut out = Vec::new();
        while let Some(&(until, ip)) = self.order.first() {
            if until > now {
                break;
            }
            self.order.pop_first();
            self.entries.remove(&ip);
            out.push(ip);
        }
        if !out.is_empty() {
            self.alerted = false;
        }
        out
    }

    /// Quarantined addresses whose reason is `reason`.
    pub fn count(&self, reason: &str) -> usize {
        self.entries.values().filter(|(_, r)| r == reason).count()
    }

    pub fn addresses(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        self.entries.keys().copied()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn records(&self) -> Vec<QuarantineRecord> {
        self.entries
            .iter()
            .map(|(ip, (until, reason))| QuarantineRecord {
                ip: *ip,
                until: *until,
                reason: reason.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capped_and_expiring() {
        let mut q = Quarantine::new(2);
        let ip = |n| Ipv4Addr::new(198, 18, 0, n);
        assert!(q.insert(ip(1), 100, "conflict"));
        assert!(q.insert(ip(2), 50, "decline"));
        assert!(!q.insert(ip(3), 100, "conflict"), "at the cap");
        assert!(
            q.insert(ip(1), 200, "decline"),
            "refresh is not a new entry"
        );
        assert_eq!(q.expire(49), Vec::<Ipv4Addr>::new());
        assert_eq!(q.expire(50), [ip(2)]);
        assert!(q.insert(ip(3), 100, "conflict"));
        assert_eq!(q.len(), 2);
        assert_eq!(q.expire(1000).len(), 2);
        assert_eq!(q.len(), 0);
    }
}
