//! DHCPv4 and frame codec: pure functions over byte slices, no I/O.
//!
//! Guarantees:
//! - Every parser takes untrusted bytes and returns [`WireError`] on anything
//!   malformed; none of them panics or reads out of bounds (fuzzed by
//!   `fuzz/fuzz_targets/parse_frame.rs`).
//! - Received messages are read in place through [`view::MessageView`],
//!   validated once on construction; it honours option overload (RFC 2132
//!   §9.3) and concatenates split options (RFC 3396), allocating only for
//!   the latter. [`dhcp::Message::parse`] is the same decoder with an owned
//!   result.
//! - [`dhcp::Message::emit`] writes options in the order given by
//!   [`options::OptionList`], splits values longer than 255 bytes (RFC 3396),
//!   respects a maximum message size (RFC 2132 §9.10) by leaving out
//!   lower-priority options, and pads the BOOTP payload to at least 300 bytes
//!   (RFC 1542 §3.3 / RFC 951 minimum).
//! - [`frame`] builds Ethernet II + IPv4 + UDP with correct IPv4 and UDP
//!   checksums (RFC 791, RFC 768) and parses them with one optional 802.1Q tag.
//! - [`cidr::Cidr`] parses strictly: a four-part dotted quad without
//!   leading zeros, a prefix of 0..=32, no host bits set.

pub mod cidr;
pub mod dhcp;
pub mod frame;
pub mod options;
pub mod view;

#[cfg(test)]
mod view_tests;

use std::fmt;

/// A MAC address (client hardware address for htype 1).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// `ff:ff:ff:ff:ff:ff`, the Ethernet broadcast address; NAKs and replies to
    /// clients that set the broadcast flag go to it (design.md §Protocol).
    pub const BROADCAST: Mac = Mac([0xff; 6]);

    /// Parses `aa:bb:cc:dd:ee:ff` (case-insensitive, colons only).
    pub fn parse(s: &str) -> Option<Mac> {
        let mut out = [0u8; 6];
        let mut n = 0;
        for part in s.split(':') {
            if n == 6 || part.len() != 2 {
                return None;
            }
            out[n] = u8::from_str_radix(part, 16).ok()?;
            n += 1;
        }
        (n == 6).then_some(Mac(out))
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Why bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated {0}")]
    /// The input ends inside the named part ("Ethernet header", "VLAN tag",
    /// "IPv4 header", "BOOTP fixed part").
    Truncated(&'static str),
    #[error("not an IPv4/UDP frame")]
    /// The EtherType after at most two VLAN tags is not IPv4, or the IPv4
    /// protocol is not UDP (17).
    NotIpv4Udp,
    #[error("bad IPv4 header: {0}")]
    /// The named IPv4 header field is invalid: a version other than 4, a header
    /// length under 20 bytes or past the frame, or a total length too short for
    /// the IPv4 and UDP headers or longer than the frame.
    BadIpv4(&'static str),
    #[error("IPv4 fragment")]
    /// The IPv4 packet is a fragment (more-fragments bit or a non-zero offset);
    /// fragments are never reassembled.
    Fragment,
    #[error("bad UDP length")]
    /// The UDP length field is under 8 or runs past the IPv4 payload.
    BadUdpLength,
    #[error("missing DHCP magic cookie")]
    /// The four bytes after the fixed part are not the magic cookie
    /// 99.130.83.99 (RFC 2131 §3).
    NoMagicCookie,
    #[error("option {0} overruns its field")]
    /// The option with this code has a length byte or value running past the end
    /// of its area (`options`, or an overloaded `file`/`sname`).
    OptionOverrun(u8),
    #[error("message too large ({0} bytes)")]
    /// The encoded size in bytes is too large: a message that does not fit the
    /// client's maximum message size even with every droppable option left
    /// out (the size it still has then), or a frame whose IPv4 total length
    /// would exceed 65535.
    TooLarge(usize),
}

#[cfg(test)]
mod golden {
    //! Frames captured from real clients in the namespace lab (tcpdump of
    //! the first DISCOVER of dhclient 4.4, busybox udhcpc 1.35, dhcpcd 9.4).
    use super::Mac;
    use super::dhcp::Message;
    use super::frame;
    use super::options::{self, MessageType};

    const DHCLIENT: &[u8] = include_bytes!("../../testdata/dhclient-discover.bin");
    const UDHCPC: &[u8] = include_bytes!("../../testdata/udhcpc-discover.bin");
    const DHCPCD: &[u8] = include_bytes!("../../testdata/dhcpcd-discover.bin");

    fn decode(f: &[u8]) -> (frame::UdpFrame<'_>, Message) {
        let udp = frame::parse(f).expect("frame parses");
        let m = Message::parse(udp.payload).expect("DHCP parses");
        (udp, m)
    }

    #[test]
    fn real_clients_decode() {
        for (f, last) in [(DHCLIENT, 1u8), (UDHCPC, 2), (DHCPCD, 3)] {
            let (udp, m) = decode(f);
            assert_eq!((udp.src_port, udp.dst_port), (68, 67));
            assert_eq!(udp.dst_mac, Mac::BROADCAST);
            assert_eq!(m.client_mac(), Mac([2, 0, 0, 0, 0x0d, last]));
            assert_eq!(m.client_mac(), udp.src_mac);
            assert_eq!(m.options.message_type(), Some(MessageType::Discover));
            let prl = m.options.get(options::PARAM_REQUEST_LIST).expect("PRL");
            assert!(
                prl.contains(&options::SUBNET_MASK) && prl.contains(&options::ROUTER),
                "{prl:?}"
            );
        }
        let (_, u) = decode(UDHCPC);
        assert_eq!(u.options.get_u16(options::MAX_MESSAGE_SIZE), Some(576));
        assert_eq!(
            u.options.get(options::VENDOR_CLASS),
            Some(&b"udhcp 1.35.0"[..])
        );
        let (_, d) = decode(DHCLIENT);
        assert!(
            d.options
                .get(options::PARAM_REQUEST_LIST)
                .unwrap()
                .contains(&options::CLASSLESS_ROUTES)
        );
    }

    #[test]
    fn real_clients_round_trip_byte_for_byte() {
        for f in [DHCLIENT, UDHCPC, DHCPCD] {
            let (udp, m) = decode(f);
            assert_eq!(m.emit(None, 0).unwrap(), udp.payload);
        }
    }
}
