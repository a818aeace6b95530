//! Address pools (design.md §Modes).
//!
//! - The main pool holds every address isolated and compat clients may get:
//!   the pool CIDR minus its network and broadcast addresses, the server IP,
//!   the playground block and static reservations.
//! - Isolated clients take the highest free address; compat clients take the
//!   lowest aligned /30 whose four addresses are all free. A second ordered
//!   set of fully free /30 bases keeps both O(log n).
//! - The playground block is a separate pool; its addresses only ever return
//!   to it, and its network and broadcast addresses are never handed out.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use crate::wire::cidr::Cidr;

/// The shared playground block.
#[derive(Debug, Clone)]
pub struct Playground {
    /// The block: aligned, the next power of two at or above
    /// `--playground-size`, the highest that covers no static or restored
    /// lease of another mode (design.md §Playground mode).
    pub block: Cidr,
    /// The server IP when it is inside the block, else the block's first host.
    pub gateway: Ipv4Addr,
    free: BTreeSet<u32>,
}

/// Free addresses of the main pool and of the playground block, with the
/// fully free /30 blocks indexed (see the module documentation).
#[derive(Debug, Clone)]
pub struct Pool {
    cidr: Cidr,
    server_ip: Ipv4Addr,
    free: BTreeSet<u32>,
    free_blocks: BTreeSet<u32>,
    reserved: BTreeSet<u32>,
    playground: Option<Playground>,
}

fn base(a: u32) -> u32 {
    a & !3
}

impl Pool {
    /// `reserved` are static addresses (for compat statics, the whole /30);
    /// `avoid` are addresses the playground block must not cover (statics
    /// outside it and existing non-playground leases).
    pub fn new(
        cidr: Cidr,
        server_ip: Ipv4Addr,
        reserved: &[Ipv4Addr],
        playground_size: Option<u32>,
        avoid: &[Ipv4Addr],
    ) -> Pool {
        let mut p = Pool {
            cidr,
            server_ip,
            free: BTreeSet::new(),
            free_blocks: BTreeSet::new(),
            reserved: reserved.iter().map(|a| u32::from(*a)).collect(),
            playground: None,
        };
        if let Some(n) = playground_size {
            p.playground = p.choose_playground(n, avoid);
        }
        let lo = u32::from(cidr.network());
        let hi = u32::from(cidr.broadcast());
        for a in lo..=hi {
            let ip = Ipv4Addr::from(a);
            if p.main_assignable(ip) {
                p.insert_free(a);
            } else if let Some(pg) = p.playground.as_mut() {
                if pg.block.contains(ip)
                    && ip != pg.block.network()
                    && ip != pg.block.broadcast()
                    && ip != pg.gateway
                    && ip != server_ip
                    && !p.reserved.contains(&a)
                {
                    pg.free.insert(a);
                }
            }
        }
        p
    }

    /// Highest aligned block of the next power of two ≥ n inside the pool
    /// that covers no address in `avoid` (non-playground statics, existing
    /// leases); playground statics may lie inside it.
    fn choose_playground(&self, n: u32, avoid: &[Ipv4Addr]) -> Option<Playground> {
        let size = n.max(4).checked_next_power_of_two()?;
        let prefix = 32 - size.trailing_zeros() as u8;
        if prefix < self.cidr.prefix {
            return None;
        }
        let lo = u32::from(self.cidr.network());
        let mut b = u32::from(self.cidr.broadcast()) & !(size - 1);
        loop {
            let block = Cidr {
                addr: Ipv4Addr::from(b),
                prefix,
            };
            let clash = avoid.iter().any(|a| block.contains(*a));
            if !clash {
                let gateway = if block.contains(self.server_ip) {
                    self.server_ip
                } else {
                    Ipv4Addr::from(b + 1)
                };
                return Some(Playground {
                    block,
                    gateway,
                    free: BTreeSet::new(),
                });
            }
            if b == lo {
                return None;
            }
            b -= size;
        }
    }

    fn main_assignable(&self, ip: Ipv4Addr) -> bool {
        let a = u32::from(ip);
        self.cidr.contains(ip)
            && ip != self.cidr.network()
            && ip != self.cidr.broadcast()
            && ip != self.server_ip
            && !self.reserved.contains(&a)
            && !self
                .playground
                .as_ref()
                .is_some_and(|p| p.block.contains(ip))
    }

    fn insert_free(&mut self, a: u32) {
        self.free.insert(a);
        let b = base(a);
        if (b..b + 4).all(|x| self.free.contains(&x)) {
            self.free_blocks.insert(b);
        }
    }

    fn remove_free(&mut self, a: u32) -> bool {
        self.free_blocks.remove(&base(a));
        self.free.remove(&a)
    }

    /// The playground block, if `--playground-size` set one aside.
    pub fn playground(&self) -> Option<&Playground> {
        self.playground.as_ref()
    }

    /// The pool prefix.
    pub fn cidr(&self) -> Cidr {
        self.cidr
    }

    /// Whether a dynamic client of the main pool may ever hold `ip`.
    pub fn assignable(&self, ip: Ipv4Addr) -> bool {
        self.main_assignable(ip)
    }

    /// Whether `ip` is a host address of the playground block (not its
    /// network, broadcast or gateway address).
    pub fn playground_host(&self, ip: Ipv4Addr) -> bool {
        self.playground.as_ref().is_some_and(|p| {
            p.block.contains(ip)
                && ip != p.block.network()
                && ip != p.block.broadcast()
                && ip != p.gateway
                && ip != self.server_ip
        })
    }

    /// Whether a dynamic playground client may ever hold `ip`.
    pub fn playground_assignable(&self, ip: Ipv4Addr) -> bool {
        self.playground_host(ip) && !self.reserved.contains(&u32::from(ip))
    }

    /// Whether `ip` is free now in the main pool or the playground block
    /// (neither held, reserved, quarantined nor outside them).
    pub fn is_free(&self, ip: Ipv4Addr) -> bool {
        let a = u32::from(ip);
        self.free.contains(&a)
            || self
                .playground
                .as_ref()
                .is_some_and(|p| p.free.contains(&a))
    }

    /// The `n` highest free main-pool addresses, highest first (allocation
    /// candidates for isolated clients; nothing is taken).
    pub fn highest(&self, n: usize) -> Vec<Ipv4Addr> {
        self.free
            .iter()
            .rev()
            .take(n)
            .map(|a| Ipv4Addr::from(*a))
            .collect()
    }

    /// The highest free main-pool address not in `skip`.
    pub fn highest_except(&self, skip: &[Ipv4Addr]) -> Option<Ipv4Addr> {
        self.free
            .iter()
            .rev()
            .map(|a| Ipv4Addr::from(*a))
            .find(|ip| !skip.contains(ip))
    }

    /// Takes a specific free address (main or playground pool).
    pub fn take(&mut self, ip: Ipv4Addr) -> bool {
        let a = u32::from(ip);
        if let Some(p) = self.playground.as_mut() {
            if p.free.remove(&a) {
                return true;
            }
        }
        self.remove_free(a)
    }

    /// Takes the lowest fully free aligned /30; returns its base.
    pub fn take_block(&mut self) -> Option<Ipv4Addr> {
        let b = *self.free_blocks.first()?;
        for a in b..b + 4 {
            self.remove_free(a);
        }
        Some(Ipv4Addr::from(b))
    }

    /// Takes all four addresses of the /30 at `b` if they are free.
    pub fn take_block_at(&mut self, b: Ipv4Addr) -> bool {
        let b = u32::from(b);
        if !self.free_blocks.contains(&b) {
            return false;
        }
        for a in b..b + 4 {
            self.remove_free(a);
        }
        true
    }

    /// Returns a /30 to the main pool.
    pub fn give_back_block(&mut self, b: Ipv4Addr) {
        let b = u32::from(b) & !3;
        for a in b..b + 4 {
            self.give_back(Ipv4Addr::from(a));
        }
    }

    /// Highest free playground address.
    pub fn take_playground(&mut self) -> Option<Ipv4Addr> {
        self.playground
            .as_mut()?
            .free
            .pop_last()
            .map(Ipv4Addr::from)
    }

    /// Returns an address to the pool it belongs to; others are ignored.
    pub fn give_back(&mut self, ip: Ipv4Addr) {
        if self.main_assignable(ip) {
            self.insert_free(u32::from(ip));
        } else if self.playground_assignable(ip) {
            if let Some(p) = self.playground.as_mut() {
                p.free.insert(u32::from(ip));
            }
        }
    }

    /// Every address a dynamic client may ever hold, main pool and
    /// playground (what address conservation counts).
    pub fn universe(&self) -> impl Iterator<Item = Ipv4Addr> + '_ {
        let lo = u32::from(self.cidr.network());
        let hi = u32::from(self.cidr.broadcast());
        (lo..=hi)
            .map(Ipv4Addr::from)
            .filter(|ip| self.main_assignable(*ip) || self.playground_assignable(*ip))
    }

    /// Free addresses, main pool and playground block together.
    pub fn free_count(&self) -> usize {
        self.free.len() + self.playground.as_ref().map_or(0, |p| p.free.len())
    }

    /// Aligned /30 blocks whose four addresses are all free (what compat
    /// clients can still get).
    pub fn free_blocks(&self) -> usize {
        self.free_blocks.len()
    }

    /// Free main-pool addresses as inclusive ranges (for `--dump=pool`).
    pub fn free_ranges(&self) -> Vec<(Ipv4Addr, Ipv4Addr)> {
        let mut out: Vec<(u32, u32)> = Vec::new();
        for &a in &self.free {
            match out.last_mut() {
                Some((_, hi)) if *hi + 1 == a => *hi = a,
                _ => out.push((a, a)),
            }
        }
        out.into_iter()
            .map(|(a, b)| (Ipv4Addr::from(a), Ipv4Addr::from(b)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u8) -> Ipv4Addr {
        Ipv4Addr::new(198, 18, 0, n)
    }

    #[test]
    fn allocates_from_the_top_and_skips_reserved() {
        let mut p = Pool::new("198.18.0.0/29".parse().unwrap(), ip(6), &[], None, &[]);
        assert_eq!(p.free_count(), 5); // .1 .2 .3 .4 .5
        assert_eq!(p.highest(2), [ip(5), ip(4)]);
        assert!(p.take(ip(5)));
        assert!(p.take(ip(1)));
        assert!(!p.take(ip(1)));
        p.give_back(ip(7)); // broadcast: never
        p.give_back(ip(5));
        assert_eq!(p.highest(1), [ip(5)]);
        assert_eq!(p.free_count(), 4);
    }

    #[test]
    fn compat_blocks_are_lowest_fully_free_and_aligned() {
        let mut p = Pool::new(
            "198.18.0.0/27".parse().unwrap(),
            ip(1),
            &[ip(10)],
            None,
            &[],
        );
        // .0/30 holds network and server; .8/30 holds a static: first is .4.
        assert_eq!(p.take_block(), Some(ip(4)));
        assert!(p.take(ip(13)));
        // .12/30 now has a taken address: next is .16.
        assert_eq!(p.take_block(), Some(ip(16)));
        p.give_back_block(ip(4));
        assert_eq!(p.take_block(), Some(ip(4)));
        // .28/30 holds the broadcast: never a block.
        assert_eq!(p.take_block(), Some(ip(20)));
        assert_eq!(p.take_block(), Some(ip(24)));
        assert_eq!(p.take_block(), None);
    }

    #[test]
    fn playground_block_is_highest_clear_block() {
        let pool: Cidr = "198.18.0.0/24".parse().unwrap();
        // 6 → 8 addresses; .248/29 has a lease to avoid, so .240/29.
        let mut p = Pool::new(pool, ip(1), &[], Some(6), &[ip(250)]);
        let pg = p.playground().unwrap().clone();
        assert_eq!(pg.block.to_string(), "198.18.0.240/29");
        assert_eq!(pg.gateway, ip(241));
        assert!(!p.assignable(ip(245)), "block is not in the main pool");
        assert!(p.playground_assignable(ip(242)));
        for not in [ip(240), ip(241), ip(247)] {
            assert!(!p.playground_assignable(not), "{not}");
        }
        assert_eq!(p.take_playground(), Some(ip(246)));
        p.give_back(ip(246));
        assert_eq!(p.take_playground(), Some(ip(246)));
        // Addresses of the block never land in the main pool.
        assert!(!p.highest(300).contains(&ip(243)));
    }

    #[test]
    fn playground_gateway_is_server_ip_when_inside() {
        let p = Pool::new("198.18.0.0/28".parse().unwrap(), ip(1), &[], Some(16), &[]);
        let pg = p.playground().unwrap();
        assert_eq!(pg.gateway, ip(1));
        assert_eq!(p.free_count(), 13); // .2 ... .14
    }

    #[test]
    fn free_ranges_are_merged() {
        let mut p = Pool::new("198.18.0.0/29".parse().unwrap(), ip(1), &[], None, &[]);
        p.take(ip(4));
        assert_eq!(p.free_ranges(), [(ip(2), ip(3)), (ip(5), ip(6))]);
    }
}
