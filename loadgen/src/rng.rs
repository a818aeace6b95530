//! A small non-cryptographic RNG (SplitMix64) and random MACs.

use isodhcp::wire::Mac;

/// SplitMix64: fast, good enough for MACs and transaction ids.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Seeded from the clock and the pid.
    pub fn from_entropy() -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng(t ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// A MAC whose first octet is `prefix` and the other five are random.
    /// `prefix` should be a locally administered unicast octet (`x2`, `x6`,
    /// `xA`, `xE`); see [`is_local_unicast`].
    pub fn mac(&mut self, prefix: u8) -> Mac {
        let r = self.next_u64().to_be_bytes();
        Mac([prefix, r[0], r[1], r[2], r[3], r[4]])
    }
}

/// Locally administered (bit 1 set) and unicast (bit 0 clear) first octet.
pub fn is_local_unicast(first_octet: u8) -> bool {
    first_octet & 0x03 == 0x02
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macs_keep_the_prefix_and_vary() {
        let mut r = Rng::new(1);
        let a = r.mac(0x0a);
        let b = r.mac(0x0a);
        assert_eq!(a.0[0], 0x0a);
        assert_eq!(b.0[0], 0x0a);
        assert_ne!(a, b);
        assert!(is_local_unicast(0x0a) && is_local_unicast(0x06) && is_local_unicast(0x02));
        assert!(!is_local_unicast(0x01) && !is_local_unicast(0x00) && !is_local_unicast(0x03));
    }

    #[test]
    fn deterministic_for_a_seed() {
        let (mut a, mut b) = (Rng::new(42), Rng::new(42));
        for _ in 0..10 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }
}
