//! A client's lease and its persisted form.

use std::net::Ipv4Addr;

use super::Millis;
use crate::wire::Mac;

/// A committed lease held by the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// Unix ms at which the lease ends.
    pub expires: Millis,
    /// Set for leases read back already expired (SPEC §7 grace): the address
    /// stays reserved for the client until then.
    pub grace_until: Option<Millis>,
    pub hostname: Option<String>,
    pub vendor: Option<String>,
    /// Expiry as last written to disk (decides whether a renewal is batched).
    pub persisted_expires: Millis,
}

impl Lease {
    /// When the lease stops holding its address.
    pub fn hold_until(&self) -> Millis {
        self.grace_until.unwrap_or(self.expires)
    }
}

/// A lease as exchanged with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    pub mac: Mac,
    pub ip: Ipv4Addr,
    /// `None` for statics (never expire).
    pub expires: Option<Millis>,
    pub hostname: Option<String>,
    pub vendor: Option<String>,
}

impl From<&Lease> for LeaseRecord {
    fn from(l: &Lease) -> Self {
        LeaseRecord { mac: l.mac, ip: l.ip, expires: Some(l.expires), hostname: l.hostname.clone(), vendor: l.vendor.clone() }
    }
}

/// Option 12 decoded lossily, control characters removed, at most 63 bytes
/// (SPEC §5), cut on a character boundary.
pub fn sanitise_hostname(raw: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(raw).chars().filter(|c| !c.is_control()).collect();
    let s = s.trim();
    let mut end = s.len().min(63);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_is_cleaned_and_capped() {
        assert_eq!(sanitise_hostname(b"lap\x07top\n"), "laptop");
        assert_eq!(sanitise_hostname(&[0xff, b'a']), "\u{fffd}a");
        assert_eq!(sanitise_hostname(&[b'x'; 80]).len(), 63);
        let multi = "é".repeat(40); // 80 bytes
        assert_eq!(sanitise_hostname(multi.as_bytes()).len(), 62);
    }
}
