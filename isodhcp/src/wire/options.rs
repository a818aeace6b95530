//! DHCP option codes (RFC 2132) and an ordered option list.
//!
//! [`OptionList`] keeps options in insertion order and holds each code at most
//! once; [`OptionList::order_for`] reorders them for a reply: message type
//! and server identifier first, then the codes of the client's parameter
//! request list in the client's order (RFC 2131 §4.3.1 leaves order free;
//! clients that truncate replies keep what they asked for first), then the
//! rest.

use std::net::Ipv4Addr;

/// Option 0: pad, one byte without a length, skipped (RFC 2132 §3.1).
pub const PAD: u8 = 0;
/// Option 1: subnet mask, 4 bytes (RFC 2132 §3.3).
pub const SUBNET_MASK: u8 = 1;
/// Option 3: router (default gateway) list, 4 bytes each (RFC 2132 §3.5).
pub const ROUTER: u8 = 3;
/// Option 6: domain name server list, 4 bytes each (RFC 2132 §3.8).
pub const DNS: u8 = 6;
/// Option 12: client host name (RFC 2132 §3.14); never echoed in replies
/// (design.md §Options).
pub const HOSTNAME: u8 = 12;
/// Option 50: requested IP address, 4 bytes (RFC 2132 §9.1).
pub const REQUESTED_IP: u8 = 50;
/// Option 51: IP address lease time, seconds (RFC 2132 §9.2).
pub const LEASE_TIME: u8 = 51;
/// Option 52: option overload, 1 byte: 1 `file`, 2 `sname`, 3 both carry
/// options (RFC 2132 §9.3).
pub const OVERLOAD: u8 = 52;
/// Option 53: DHCP message type, 1 byte, see [`MessageType`] (RFC 2132 §9.6).
pub const MESSAGE_TYPE: u8 = 53;
/// Option 54: server identifier, the server's IPv4 address (RFC 2132 §9.7).
pub const SERVER_ID: u8 = 54;
/// Option 55: parameter request list, one option code per byte, in the
/// client's order of preference (RFC 2132 §9.8).
pub const PARAM_REQUEST_LIST: u8 = 55;
/// Option 56: message, text explaining an error such as a NAK (RFC 2132 §9.9).
pub const MESSAGE: u8 = 56;
/// Option 57: maximum DHCP message size, 2 bytes, counted with the IP and
/// UDP headers, at least 576 (RFC 2132 §9.10).
pub const MAX_MESSAGE_SIZE: u8 = 57;
/// Option 58: renewal (T1) time value, seconds (RFC 2132 §9.11).
pub const RENEWAL_TIME: u8 = 58;
/// Option 59: rebinding (T2) time value, seconds (RFC 2132 §9.12).
pub const REBINDING_TIME: u8 = 59;
/// Option 60: vendor class identifier, opaque bytes (RFC 2132 §9.13); matched
/// by vendor patterns (design.md §Classification).
pub const VENDOR_CLASS: u8 = 60;
/// Option 61: client identifier, type byte then identifier (RFC 2132 §9.14).
pub const CLIENT_ID: u8 = 61;
/// Option 82: relay agent information (RFC 3046); echoed unchanged
/// (design.md §Protocol).
pub const RELAY_AGENT_INFO: u8 = 82;
/// Option 121: classless static routes, see [`ClasslessRoute`] (RFC 3442).
pub const CLASSLESS_ROUTES: u8 = 121;
/// Option 249: Microsoft's private code for classless static routes (read by
/// older Windows clients), same encoding as option 121; sent alongside 121
/// (design.md §Options).
pub const MS_CLASSLESS_ROUTES: u8 = 249;
/// Option 255: end, a single byte closing an option area (RFC 2132 §3.2).
pub const END: u8 = 255;

/// DHCP message types (option 53, RFC 2132 §9.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageType {
    /// Client to server: looking for a server and an address (RFC 2131 §4.3.1).
    Discover = 1,
    /// Server to client: an address offered in answer to a DISCOVER.
    Offer = 2,
    /// Client to server: asks for the offered address (SELECTING), confirms a
    /// remembered one (INIT-REBOOT) or extends its lease (RENEWING/REBINDING)
    /// (RFC 2131 §4.3.2).
    Request = 3,
    /// Client to server: the address is already in use on the link
    /// (RFC 2131 §4.3.3; design.md §Quarantine).
    Decline = 4,
    /// Server to client: the lease is granted or extended, or, after an INFORM,
    /// the configuration parameters.
    Ack = 5,
    /// Server to client: the requested address is wrong for this client, which
    /// must start over with a DISCOVER.
    Nak = 6,
    /// Client to server: gives up its lease (RFC 2131 §4.3.4).
    Release = 7,
    /// Client to server: has an address already and asks only for the other
    /// configuration parameters (RFC 2131 §4.3.5).
    Inform = 8,
}

impl MessageType {
    /// Lower-case name, for logs and metrics.
    pub fn name(self) -> &'static str {
        use MessageType::*;
        match self {
            Discover => "discover",
            Offer => "offer",
            Request => "request",
            Decline => "decline",
            Ack => "ack",
            Nak => "nak",
            Release => "release",
            Inform => "inform",
        }
    }

    /// The type for an option 53 value; `None` for values outside 1..=8.
    pub fn from_u8(v: u8) -> Option<Self> {
        use MessageType::*;
        Some(match v {
            1 => Discover,
            2 => Offer,
            3 => Request,
            4 => Decline,
            5 => Ack,
            6 => Nak,
            7 => Release,
            8 => Inform,
            _ => return None,
        })
    }
}

/// Ordered list of options, each code at most once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptionList(Vec<(u8, Vec<u8>)>);

impl OptionList {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list with room for `n` options.
    pub fn with_capacity(n: usize) -> Self {
        OptionList(Vec::with_capacity(n))
    }

    /// Sets `code` to `value`, replacing an earlier value in place.
    pub fn set(&mut self, code: u8, value: Vec<u8>) {
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some(slot) => slot.1 = value,
            None => self.0.push((code, value)),
        }
    }

    /// Appends `value` to `code` (RFC 3396 concatenation of split options).
    pub fn append(&mut self, code: u8, value: &[u8]) {
        match self.0.iter_mut().find(|(c, _)| *c == code) {
            Some(slot) => slot.1.extend_from_slice(value),
            None => self.0.push((code, value.to_vec())),
        }
    }

    /// The value of `code`, joined if it was appended in parts; `None` when
    /// absent.
    pub fn get(&self, code: u8) -> Option<&[u8]> {
        self.0
            .iter()
            .find(|(c, _)| *c == code)
            .map(|(_, v)| v.as_slice())
    }

    /// Removes `code` if present; the order of the others is kept.
    pub fn remove(&mut self, code: u8) {
        self.0.retain(|(c, _)| *c != code);
    }

    /// `(code, value)` pairs in list order (the order [`Self::order_for`] set,
    /// else insertion order).
    pub fn iter(&self) -> impl Iterator<Item = (u8, &[u8])> {
        self.0.iter().map(|(c, v)| (*c, v.as_slice()))
    }

    /// Number of options (distinct codes).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the list holds no option.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `code` to the 4 bytes of `ip`.
    pub fn set_ip(&mut self, code: u8, ip: Ipv4Addr) {
        self.set(code, ip.octets().to_vec());
    }

    /// Sets `code` to `v` in network byte order (4 bytes), as times in
    /// seconds are sent.
    pub fn set_u32(&mut self, code: u8, v: u32) {
        self.set(code, v.to_be_bytes().to_vec());
    }

    /// The value of `code` as an address; `None` unless it is exactly 4 bytes.
    pub fn get_ip(&self, code: u8) -> Option<Ipv4Addr> {
        let v = self.get(code)?;
        let b: [u8; 4] = v.try_into().ok()?;
        Some(Ipv4Addr::from(b))
    }

    /// The value of `code` as a big-endian `u16`; `None` unless it is exactly
    /// 2 bytes (option 57 is such a value).
    pub fn get_u16(&self, code: u8) -> Option<u16> {
        let b: [u8; 2] = self.get(code)?.try_into().ok()?;
        Some(u16::from_be_bytes(b))
    }

    /// The value of `code` as a big-endian `u32`; `None` unless it is exactly
    /// 4 bytes.
    pub fn get_u32(&self, code: u8) -> Option<u32> {
        let b: [u8; 4] = self.get(code)?.try_into().ok()?;
        Some(u32::from_be_bytes(b))
    }

    /// Option 53 (RFC 2132 §9.6), when it is one byte naming a known type.
    pub fn message_type(&self) -> Option<MessageType> {
        match self.get(MESSAGE_TYPE)? {
            [t] => MessageType::from_u8(*t),
            _ => None,
        }
    }

    /// Reorders for a reply: 53 first, then 54, then the client's parameter
    /// request list order, then everything else in insertion order. Returns
    /// the number of leading options that are "asked for" (53, 54 and PRL
    /// matches): those are the last to be left out when the message must shrink.
    pub fn order_for(&mut self, prl: &[u8]) -> usize {
        let mut out = Vec::with_capacity(self.0.len());
        let mut take = |code: u8, out: &mut Vec<(u8, Vec<u8>)>| {
            if let Some(i) = self.0.iter().position(|(c, _)| *c == code) {
                out.push(self.0.remove(i));
            }
        };
        take(MESSAGE_TYPE, &mut out);
        take(SERVER_ID, &mut out);
        for &c in prl {
            take(c, &mut out);
        }
        let asked = out.len();
        out.append(&mut self.0);
        self.0 = out;
        asked
    }

    /// Inserts `code` at position `at` (removing an earlier instance).
    pub fn insert(&mut self, at: usize, code: u8, value: Vec<u8>) {
        self.remove(code);
        let at = at.min(self.0.len());
        self.0.insert(at, (code, value));
    }

    /// Drops the last option; used when a reply must fit a size limit.
    pub fn pop(&mut self) -> Option<(u8, Vec<u8>)> {
        self.0.pop()
    }
}

/// One classless static route (RFC 3442 §3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClasslessRoute {
    /// Destination network; only its first `ceil(prefix / 8)` octets are
    /// encoded, so the octets after them decode as zero.
    pub dest: Ipv4Addr,
    /// Destination prefix length, 0..=32 (0 is the default route).
    pub prefix: u8,
    /// 0.0.0.0 means "on-link" (RFC 3442 §3, local subnet route).
    pub router: Ipv4Addr,
}

/// Encodes option 121/249 values: width byte, significant destination
/// octets, router (RFC 3442 §3).
pub fn encode_classless_routes(routes: &[ClasslessRoute]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in routes {
        let prefix = r.prefix.min(32);
        out.push(prefix);
        let octets = usize::from(prefix).div_ceil(8);
        out.extend_from_slice(&r.dest.octets()[..octets]);
        out.extend_from_slice(&r.router.octets());
    }
    out
}

/// Decodes option 121/249 values; `None` when malformed.
pub fn decode_classless_routes(mut v: &[u8]) -> Option<Vec<ClasslessRoute>> {
    let mut out = Vec::new();
    while let Some((&prefix, rest)) = v.split_first() {
        if prefix > 32 {
            return None;
        }
        let n = usize::from(prefix).div_ceil(8);
        if rest.len() < n + 4 {
            return None;
        }
        let mut d = [0u8; 4];
        d[..n].copy_from_slice(&rest[..n]);
        let r: [u8; 4] = rest[n..n + 4].try_into().ok()?;
        out.push(ClasslessRoute {
            dest: Ipv4Addr::from(d),
            prefix,
            router: Ipv4Addr::from(r),
        });
        v = &rest[n + 4..];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classless_route_golden_bytes() {
        // RFC 3442 §3 example encodings plus our isolated-client pair.
        let routes = [
            ClasslessRoute {
                dest: Ipv4Addr::new(198, 18, 0, 1),
                prefix: 32,
                router: Ipv4Addr::UNSPECIFIED,
            },
            ClasslessRoute {
                dest: Ipv4Addr::UNSPECIFIED,
                prefix: 0,
                router: Ipv4Addr::new(198, 18, 0, 1),
            },
            ClasslessRoute {
                dest: Ipv4Addr::new(10, 17, 0, 0),
                prefix: 16,
                router: Ipv4Addr::new(10, 0, 0, 1),
            },
        ];
        let enc = encode_classless_routes(&routes);
        assert_eq!(
            enc,
            [
                32, 198, 18, 0, 1, 0, 0, 0, 0, 0, 198, 18, 0, 1, 16, 10, 17, 10, 0, 0, 1
            ]
        );
        assert_eq!(decode_classless_routes(&enc).unwrap(), routes);
    }

    #[test]
    fn classless_route_rejects_garbage() {
        assert_eq!(decode_classless_routes(&[33, 0, 0, 0, 0]), None);
        assert_eq!(decode_classless_routes(&[24, 10, 0]), None);
    }

    #[test]
    fn order_puts_type_then_prl_first() {
        let mut o = OptionList::new();
        o.set(LEASE_TIME, vec![0, 0, 1, 0]);
        o.set(DNS, vec![1, 1, 1, 1]);
        o.set(SUBNET_MASK, vec![255; 4]);
        o.set(MESSAGE_TYPE, vec![2]);
        o.set(ROUTER, vec![1, 2, 3, 4]);
        let asked = o.order_for(&[ROUTER, SUBNET_MASK, 99]);
        let codes: Vec<u8> = o.iter().map(|(c, _)| c).collect();
        assert_eq!(codes, [MESSAGE_TYPE, ROUTER, SUBNET_MASK, LEASE_TIME, DNS]);
        assert_eq!(asked, 3);
    }

    #[test]
    fn append_concatenates() {
        let mut o = OptionList::new();
        o.append(HOSTNAME, b"ab");
        o.append(HOSTNAME, b"cd");
        assert_eq!(o.get(HOSTNAME), Some(&b"abcd"[..]));
    }
}
