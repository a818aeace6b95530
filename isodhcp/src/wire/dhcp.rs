//! BOOTP/DHCP message layout (RFC 2131 §2, RFC 2132).
//!
//! Fixed part (236 bytes) then the magic cookie and options. [`Message`] is
//! the owned form: the builder of replies ([`Message::emit`]) and of the
//! requests test clients send. Received messages are read through the
//! borrowed [`MessageView`], which checks every length; option overload
//! (RFC 2132 §9.3) pulls options from `file` and `sname`, and split options
//! are concatenated (RFC 3396).

use std::net::Ipv4Addr;

use super::options::{self, OptionList};
use super::view::MessageView;
use super::{Mac, WireError};

/// `op` of a message from client to server (RFC 2131 §2).
pub const BOOTREQUEST: u8 = 1;
/// `op` of a message from server to client (RFC 2131 §2).
pub const BOOTREPLY: u8 = 2;
/// `htype` of Ethernet (10 Mb/s Ethernet in the ARP hardware types), the
/// only hardware type served (design.md §Protocol).
pub const HTYPE_ETHERNET: u8 = 1;
/// The BROADCAST bit, the leftmost bit of `flags` (RFC 2131 §2): set by a
/// client that cannot receive unicast before it is configured; its reply is
/// then broadcast unless `ciaddr` is set (design.md §Protocol).
pub const FLAG_BROADCAST: u16 = 0x8000;
/// The four bytes 99.130.83.99 that start the `options` field
/// (RFC 2131 §3, RFC 2132 §2).
pub const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];
/// Length of the fixed part, up to the magic cookie (RFC 2131 §2).
pub const FIXED_LEN: usize = 236;
/// BOOTP payloads are padded to at least this size (RFC 1542 §3.3).
pub const MIN_PAYLOAD: usize = 300;
/// The smallest maximum message size a client may ask for (RFC 2132 §9.10).
pub const MIN_MAX_MESSAGE: usize = 576;
/// IPv4 + UDP header bytes counted in option 57's limit.
const IP_UDP_HEADERS: usize = 28;

/// A decoded DHCP message. `sname`/`file` are kept raw; when they carried
/// overloaded options their contents are folded into `options`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Message op code: [`BOOTREQUEST`] or [`BOOTREPLY`].
    pub op: u8,
    /// Hardware address type; [`HTYPE_ETHERNET`] for the clients served.
    pub htype: u8,
    /// Hardware address length in bytes, 6 for Ethernet.
    pub hlen: u8,
    /// Set to zero by clients, incremented by relay agents.
    pub hops: u8,
    /// Transaction ID chosen by the client; a reply carries the request's.
    pub xid: u32,
    /// Seconds since the client began acquiring or renewing its address.
    pub secs: u16,
    /// Flags; only [`FLAG_BROADCAST`] is defined, the other bits must be zero.
    pub flags: u16,
    /// Client IP address, set only by a client that already has one (BOUND,
    /// RENEWING, REBINDING, or for an INFORM); 0.0.0.0 otherwise.
    pub ciaddr: Ipv4Addr,
    /// 'Your' IP address: the address the server offers or assigns.
    pub yiaddr: Ipv4Addr,
    /// Address of the next server in bootstrap (TFTP); 0.0.0.0 when unused.
    pub siaddr: Ipv4Addr,
    /// Relay agent IP address; 0.0.0.0 when no relay agent forwarded the
    /// message (design.md §Deployment).
    pub giaddr: Ipv4Addr,
    /// Client hardware address; for Ethernet the first 6 bytes are the MAC
    /// and the rest should be zero.
    pub chaddr: [u8; 16],
    /// Optional server host name, NUL terminated, raw; it carries options when
    /// option 52 says so.
    pub sname: [u8; 64],
    /// Boot file name, NUL terminated, raw; it carries options when option 52
    /// says so.
    pub file: [u8; 128],
    /// The options. After parsing: every option of the message, overloaded
    /// and split ones joined, except PAD, END and 52. On output: written in
    /// this order, then END.
    pub options: OptionList,
}

impl Default for Message {
    fn default() -> Self {
        Message {
            op: BOOTREPLY,
            htype: HTYPE_ETHERNET,
            hlen: 6,
            hops: 0,
            xid: 0,
            secs: 0,
            flags: 0,
            ciaddr: Ipv4Addr::UNSPECIFIED,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            siaddr: Ipv4Addr::UNSPECIFIED,
            giaddr: Ipv4Addr::UNSPECIFIED,
            chaddr: [0; 16],
            sname: [0; 64],
            file: [0; 128],
            options: OptionList::new(),
        }
    }
}

impl Message {
    /// The client's MAC from chaddr (meaningful for htype 1 / hlen 6).
    pub fn client_mac(&self) -> Mac {
        let mut m = [0u8; 6];
        m.copy_from_slice(&self.chaddr[..6]);
        Mac(m)
    }

    /// True when the client set the BROADCAST bit ([`FLAG_BROADCAST`]).
    pub fn broadcast_flag(&self) -> bool {
        self.flags & FLAG_BROADCAST != 0
    }

    /// Decodes a BOOTP payload (the UDP data) into an owned message: the
    /// checks and option semantics of [`MessageView::parse`], then a copy.
    /// The daemon reads requests through the view; this is for clients
    /// (tests, load generator) that keep what they received.
    pub fn parse(b: &[u8]) -> Result<Message, WireError> {
        MessageView::parse(b).map(|v| v.to_message())
    }

    /// Encodes the message. `max_len` is the client's maximum DHCP message
    /// size (option 57, counted with IP and UDP headers); options beyond the
    /// first `keep` are dropped from the end until the message fits. The
    /// result is padded to [`MIN_PAYLOAD`].
    pub fn emit(&self, max_len: Option<usize>, keep: usize) -> Result<Vec<u8>, WireError> {
        let limit = max_len.map(|m| m.max(MIN_MAX_MESSAGE) - IP_UDP_HEADERS);
        let mut opts = self.options.clone();
        loop {
            let out = self.emit_with(&opts);
            match limit {
                Some(l) if out.len() > l => {
                    if opts.len() <= keep {
                        return Err(WireError::TooLarge(out.len()));
                    }
                    opts.pop();
                }
                _ => return Ok(out),
            }
        }
    }

    fn emit_with(&self, opts: &OptionList) -> Vec<u8> {
        let mut b = Vec::with_capacity(MIN_PAYLOAD + 64);
        b.extend_from_slice(&[self.op, self.htype, self.hlen, self.hops]);
        b.extend_from_slice(&self.xid.to_be_bytes());
        b.extend_from_slice(&self.secs.to_be_bytes());
        b.extend_from_slice(&self.flags.to_be_bytes());
        for ip in [self.ciaddr, self.yiaddr, self.siaddr, self.giaddr] {
            b.extend_from_slice(&ip.octets());
        }
        b.extend_from_slice(&self.chaddr);
        b.extend_from_slice(&self.sname);
        b.extend_from_slice(&self.file);
        b.extend_from_slice(&MAGIC_COOKIE);
        for (code, value) in opts.iter() {
            // RFC 3396: values over 255 bytes are split into several instances.
            if value.is_empty() {
                b.extend_from_slice(&[code, 0]);
            }
            for chunk in value.chunks(255) {
                b.push(code);
                b.push(chunk.len() as u8);
                b.extend_from_slice(chunk);
            }
        }
        b.push(options::END);
        if b.len() < MIN_PAYLOAD {
            b.resize(MIN_PAYLOAD, options::PAD);
        }
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::options::*;

    fn request_bytes(opts: &[u8]) -> Vec<u8> {
        let mut b = vec![0u8; FIXED_LEN];
        b[0] = BOOTREQUEST;
        b[1] = 1;
        b[2] = 6;
        b[4..8].copy_from_slice(&0x1234_5678u32.to_be_bytes());
        b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        b.extend_from_slice(&MAGIC_COOKIE);
        b.extend_from_slice(opts);
        b
    }

    #[test]
    fn parses_fixed_part_and_options() {
        let b = request_bytes(&[53, 1, 1, 55, 3, 1, 3, 6, 255]);
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.op, BOOTREQUEST);
        assert_eq!(m.xid, 0x1234_5678);
        assert_eq!(m.client_mac(), Mac([2, 0, 0, 0, 0, 1]));
        assert_eq!(m.options.message_type(), Some(MessageType::Discover));
        assert_eq!(m.options.get(PARAM_REQUEST_LIST), Some(&[1, 3, 6][..]));
    }

    #[test]
    fn honours_overload_file_then_sname() {
        let mut b = request_bytes(&[53, 1, 3, 52, 1, 3, 255]);
        // file carries hostname "ab", sname carries more of it (RFC 3396 concatenation).
        b[108..113].copy_from_slice(&[12, 2, b'a', b'b', 255]);
        b[44..49].copy_from_slice(&[12, 2, b'c', b'd', 255]);
        let m = Message::parse(&b).unwrap();
        assert_eq!(m.options.get(HOSTNAME), Some(&b"abcd"[..]));
        assert_eq!(m.options.message_type(), Some(MessageType::Request));
    }

    #[test]
    fn rejects_truncated_and_overrun() {
        assert_eq!(
            Message::parse(&[0u8; 100]),
            Err(WireError::Truncated("BOOTP fixed part"))
        );
        let b = request_bytes(&[53, 5, 1]);
        assert_eq!(Message::parse(&b), Err(WireError::OptionOverrun(53)));
        let mut b = request_bytes(&[]);
        b[FIXED_LEN] = 0;
        assert_eq!(Message::parse(&b), Err(WireError::NoMagicCookie));
    }

    #[test]
    fn emit_round_trips_and_pads() {
        let mut m = Message {
            xid: 7,
            flags: FLAG_BROADCAST,
            yiaddr: Ipv4Addr::new(198, 18, 0, 254),
            ..Default::default()
        };
        m.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
        m.options.set(MESSAGE_TYPE, vec![2]);
        m.options.set_ip(SERVER_ID, Ipv4Addr::new(198, 18, 0, 1));
        let b = m.emit(None, 0).unwrap();
        assert_eq!(b.len(), MIN_PAYLOAD);
        assert_eq!(Message::parse(&b).unwrap(), m);
    }

    #[test]
    fn emit_splits_long_options() {
        let mut m = Message::default();
        m.options.set(43, vec![7u8; 300]);
        let b = m.emit(None, 0).unwrap();
        assert_eq!(&b[240..242], &[43, 255]);
        assert_eq!(&b[497..499], &[43, 45]);
        assert_eq!(
            Message::parse(&b).unwrap().options.get(43).unwrap().len(),
            300
        );
    }

    #[test]
    fn emit_respects_max_message_size() {
        let mut m = Message::default();
        m.options.set(MESSAGE_TYPE, vec![5]);
        m.options.set(43, vec![1u8; 250]);
        m.options.set(44, vec![1u8; 250]);
        let b = m.emit(Some(576), 1).unwrap();
        assert!(b.len() <= 576 - 28);
        let back = Message::parse(&b).unwrap();
        assert!(back.options.get(43).is_some());
        assert!(back.options.get(44).is_none());
        // Nothing may be dropped: error instead of a silently broken reply.
        assert_eq!(
            m.emit(Some(576), 3),
            Err(WireError::TooLarge(m.emit(None, 0).unwrap().len()))
        );
    }
}
