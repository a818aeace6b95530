//! A client's lease, its persisted form, and the resources it implies.

use std::net::Ipv4Addr;

use super::Millis;
use super::classify::{Mode, Profile};
use crate::wire::Mac;
use crate::wire::cidr::Cidr;

/// Option 82 as received (RFC 3046), echoed unchanged in replies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RelayInfo {
    /// The option 82 value: sub-options as code, length, value (RFC 3046).
    pub raw: Vec<u8>,
}

impl RelayInfo {
    fn sub(&self, code: u8) -> Option<&[u8]> {
        let mut v = self.raw.as_slice();
        while let [c, len, rest @ ..] = v {
            let len = usize::from(*len);
            if rest.len() < len {
                return None;
            }
            if *c == code {
                return Some(&rest[..len]);
            }
            v = &rest[len..];
        }
        None
    }

    /// Sub-option 1.
    pub fn circuit_id(&self) -> Option<&[u8]> {
        self.sub(1)
    }

    /// Sub-option 2.
    pub fn remote_id(&self) -> Option<&[u8]> {
        self.sub(2)
    }
}

/// A lease held by the engine (dynamic or static).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The client's MAC; the engine holds at most one lease per MAC.
    pub mac: Mac,
    /// The leased address (for compat, `b+2` of its /30).
    pub ip: Ipv4Addr,
    /// Mode and masquerade flag the lease was made with; a configuration that
    /// now classifies the client otherwise ends the lease
    /// (design.md §Classification).
    pub profile: Profile,
    /// True for a static reservation (design.md §Statics): it never expires and
    /// its address never returns to the pool.
    pub is_static: bool,
    /// Unix ms at which the lease ends ([`super::NEVER`] for statics).
    pub expires: Millis,
    /// Set for leases read back already expired (design.md §Persistence, grace): the address
    /// stays reserved for the client until then.
    pub grace_until: Option<Millis>,
    /// Option 12 cleaned by `sanitise_hostname`, or a static entry's name;
    /// kept across renewals that leave it out.
    pub hostname: Option<String>,
    /// Option 60 seen in the first DISCOVER or REQUEST of the lease.
    pub vendor: Option<String>,
    /// Option 82 of the latest REQUEST that carried one (design.md §Protocol).
    pub relay: Option<RelayInfo>,
    /// Expiry as last written to disk (decides whether a renewal is batched).
    pub persisted_expires: Millis,
}

impl Lease {
    /// When the lease stops holding its address.
    pub fn hold_until(&self) -> Millis {
        self.grace_until.unwrap_or(self.expires)
    }
}

/// Everything the executors need to bring a lease's resources up or down:
/// route (isolated), alias (compat), nft set elements, SNAT, hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The client's MAC (hook argument, XDP known-clients map).
    pub mac: Mac,
    /// The leased address: target of the /32 route (isolated) and element of
    /// the mode's named sets.
    pub ip: Ipv4Addr,
    /// Decides the kernel state: a /32 host route (isolated), a `b+1/30`
    /// gateway alias (compat) or only the block's alias (playground), and
    /// which named sets the address joins (design.md §Kernel state).
    pub mode: Mode,
    /// Whether the client gets an SNAT rule (design.md §Masquerade).
    pub masq: bool,
    /// Server IP, /30 gateway or playground gateway.
    pub gateway: Ipv4Addr,
    /// The /30 (compat) or playground block.
    pub subnet: Option<Cidr>,
    /// Host name for the hook (`ISODHCP_HOSTNAME`), if known.
    pub hostname: Option<String>,
    /// `None` for statics.
    pub expires: Option<Millis>,
}

impl Binding {
    /// The client's netmask (`ISODHCP_NETMASK`): that of `subnet`, else
    /// 255.255.255.255 (isolated).
    pub fn netmask(&self) -> Ipv4Addr {
        self.subnet
            .map(|s| s.mask_addr())
            .unwrap_or(Ipv4Addr::BROADCAST)
    }
}

/// A lease as exchanged with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseRecord {
    /// The client's MAC, the key in the lease file.
    pub mac: Mac,
    /// The leased address.
    pub ip: Ipv4Addr,
    /// `None` for statics (never expire).
    pub expires: Option<Millis>,
    /// The lease's mode (lease file `mode`).
    pub mode: Mode,
    /// The lease's masquerade flag (lease file `masq`).
    pub masq: bool,
    /// Cleaned option 12, if the client sent one.
    pub hostname: Option<String>,
    /// Option 60 kept with the lease (design.md §Classification).
    pub vendor: Option<String>,
}

impl From<&Lease> for LeaseRecord {
    fn from(l: &Lease) -> Self {
        LeaseRecord {
            mac: l.mac,
            ip: l.ip,
            expires: (!l.is_static).then_some(l.expires),
            mode: l.profile.mode,
            masq: l.profile.masq,
            hostname: l.hostname.clone(),
            vendor: l.vendor.clone(),
        }
    }
}

/// A quarantined address as exchanged with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuarantineRecord {
    /// The address kept out of allocation.
    pub ip: Ipv4Addr,
    /// Unix ms at which the address returns to the pool.
    pub until: Millis,
    /// Why: `conflict`, `decline` or [`super::config::REASON_DECLINED_OFFER`].
    pub reason: String,
}

/// Option 12 decoded lossily, at most 63 bytes (design.md §Protocol), cut on a
/// character boundary. Control characters and invisible format characters
/// (bidi overrides and isolates, zero-width characters, soft hyphen, tags;
/// see [`crate::text::is_format`]) are removed: the name stays client-chosen
/// and untrusted, but it shows as what it is.
pub fn sanitise_hostname(raw: &[u8]) -> String {
    let s: String = String::from_utf8_lossy(raw)
        .chars()
        .filter(|c| !c.is_control() && !crate::text::is_format(*c))
        .collect();
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

    #[test]
    fn hostname_loses_format_characters() {
        let cases: [(&str, &str); 6] = [
            ("evil\u{202e}gpj.exe", "evilgpj.exe"),
            ("\u{2066}a\u{2067}b\u{2068}c\u{2069}\u{202a}\u{202d}", "abc"),
            (
                "zero\u{200b}\u{200c}\u{200d}\u{200e}\u{200f}width",
                "zerowidth",
            ),
            ("\u{feff}bom\u{ad}soft\u{2060}\u{2064}", "bomsoft"),
            ("tag\u{e0001}\u{e0041}\u{e007f}s", "tags"),
            ("café-ünïcode", "café-ünïcode"),
        ];
        for (raw, want) in cases {
            assert_eq!(sanitise_hostname(raw.as_bytes()), want, "{raw:?}");
        }
        // Trimming sees through them: nothing invisible is left at the ends.
        assert_eq!(
            sanitise_hostname(" \u{200b} host \u{feff}".as_bytes()),
            "host"
        );
    }

    #[test]
    fn relay_sub_options() {
        let r = RelayInfo {
            raw: vec![1, 3, b'p', b'o', b'1', 2, 2, b'a', b'p'],
        };
        assert_eq!(r.circuit_id(), Some(&b"po1"[..]));
        assert_eq!(r.remote_id(), Some(&b"ap"[..]));
        assert_eq!(RelayInfo { raw: vec![1, 9, 0] }.circuit_id(), None);
    }
}
