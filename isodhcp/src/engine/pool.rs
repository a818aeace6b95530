//! Free-address pool for isolated (/32) clients (SPEC §4.1).
//!
//! Free addresses live in an ordered set, so taking the highest free address
//! and returning one are O(log n). The pool's network and broadcast
//! addresses and the server IP are never in the set.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::cidr::Cidr;

#[derive(Debug, Clone)]
pub struct Pool {
    cidr: Cidr,
    server_ip: Ipv4Addr,
    free: BTreeSet<u32>,
}

impl Pool {
    pub fn new(cidr: Cidr, server_ip: Ipv4Addr) -> Pool {
        let lo = u32::from(cidr.network());
        let hi = u32::from(cidr.broadcast());
        let mut p = Pool { cidr, server_ip, free: BTreeSet::new() };
        p.free = (lo..=hi).filter(|a| p.assignable(Ipv4Addr::from(*a))).collect();
        p
    }

    /// Whether `ip` may ever be handed to a dynamic isolated client.
    pub fn assignable(&self, ip: Ipv4Addr) -> bool {
        self.cidr.contains(ip) && ip != self.cidr.network() && ip != self.cidr.broadcast() && ip != self.server_ip
    }

    pub fn is_free(&self, ip: Ipv4Addr) -> bool {
        self.free.contains(&u32::from(ip))
    }

    /// Takes the highest free address (keeps low, aligned /30 blocks free).
    pub fn take_highest(&mut self) -> Option<Ipv4Addr> {
        self.free.pop_last().map(Ipv4Addr::from)
    }

    /// Takes a specific address if it is free.
    pub fn take(&mut self, ip: Ipv4Addr) -> bool {
        self.free.remove(&u32::from(ip))
    }

    /// Returns an address to the pool (ignored for non-assignable ones).
    pub fn give_back(&mut self, ip: Ipv4Addr) {
        if self.assignable(ip) {
            self.free.insert(u32::from(ip));
        }
    }

    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    pub fn cidr(&self) -> Cidr {
        self.cidr
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocates_from_the_top_and_skips_reserved() {
        let mut p = Pool::new("198.18.0.0/29".parse().unwrap(), Ipv4Addr::new(198, 18, 0, 6));
        assert_eq!(p.free_count(), 5); // .1 .2 .3 .4 .5
        assert_eq!(p.take_highest(), Some(Ipv4Addr::new(198, 18, 0, 5)));
        assert!(p.take(Ipv4Addr::new(198, 18, 0, 1)));
        assert!(!p.take(Ipv4Addr::new(198, 18, 0, 1)));
        p.give_back(Ipv4Addr::new(198, 18, 0, 7)); // broadcast: never
        p.give_back(Ipv4Addr::new(198, 18, 0, 5));
        assert_eq!(p.take_highest(), Some(Ipv4Addr::new(198, 18, 0, 5)));
        assert_eq!(p.free_count(), 3);
    }
}
