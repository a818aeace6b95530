//! Frames the generator sends: DHCP client messages built with isodhcp's
//! public codec, and a pre-built DISCOVER template patched per flood frame
//! (new MAC and xid, UDP checksum updated incrementally, RFC 1624).

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use isodhcp::wire::Mac;
use isodhcp::wire::dhcp::{BOOTREPLY, BOOTREQUEST, HTYPE_ETHERNET, Message};
use isodhcp::wire::frame::{self, Addressing, DHCP_CLIENT_PORT, DHCP_SERVER_PORT};
use isodhcp::wire::options::{self, MessageType};

/// Offsets in an untagged Ethernet/IPv4(20)/UDP frame.
pub const ETH_SRC: usize = 6;
pub const UDP_OFF: usize = 14 + 20;
pub const UDP_CSUM: usize = UDP_OFF + 6;
pub const BOOTP_OFF: usize = UDP_OFF + 8;
pub const XID_OFF: usize = BOOTP_OFF + 4;
pub const CHADDR_OFF: usize = BOOTP_OFF + 28;

/// Parameter request list the probe clients send (like dhclient's core).
pub const PRL: &[u8] = &[
    options::SUBNET_MASK,
    options::ROUTER,
    options::DNS,
    options::LEASE_TIME,
    options::SERVER_ID,
    options::CLASSLESS_ROUTES,
];

/// What kind of client message to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Req {
    Discover,
    /// SELECTING: broadcast REQUEST with options 50 and 54.
    Select {
        requested: Ipv4Addr,
        server_id: Ipv4Addr,
    },
    /// RENEWING: unicast REQUEST, ciaddr set, no 50/54 (RFC 2131 §4.3.2).
    Renew {
        ciaddr: Ipv4Addr,
        server_ip: Ipv4Addr,
        server_mac: Mac,
    },
    /// REBINDING: broadcast REQUEST with ciaddr set, no 50/54.
    Rebind {
        ciaddr: Ipv4Addr,
    },
    /// RELEASE, unicast to the server.
    Release {
        ciaddr: Ipv4Addr,
        server_ip: Ipv4Addr,
        server_mac: Mac,
    },
}

/// The DHCP payload of a client message.
pub fn client_message(mac: Mac, xid: u32, secs: u16, req: Req) -> Message {
    let mut m = Message {
        op: BOOTREQUEST,
        htype: HTYPE_ETHERNET,
        hlen: 6,
        xid,
        secs,
        ..Message::default()
    };
    m.chaddr[..6].copy_from_slice(&mac.0);
    let mut client_id = vec![HTYPE_ETHERNET];
    client_id.extend_from_slice(&mac.0);
    let t = match req {
        Req::Discover => MessageType::Discover,
        Req::Select { .. } | Req::Renew { .. } | Req::Rebind { .. } => MessageType::Request,
        Req::Release { .. } => MessageType::Release,
    };
    m.options.set(options::MESSAGE_TYPE, vec![t as u8]);
    m.options.set(options::CLIENT_ID, client_id);
    match req {
        Req::Discover => {}
        Req::Select {
            requested,
            server_id,
        } => {
            m.options.set_ip(options::REQUESTED_IP, requested);
            m.options.set_ip(options::SERVER_ID, server_id);
        }
        Req::Renew { ciaddr, .. } | Req::Rebind { ciaddr } => m.ciaddr = ciaddr,
        Req::Release {
            ciaddr, server_ip, ..
        } => {
            m.ciaddr = ciaddr;
            m.options.set_ip(options::SERVER_ID, server_ip);
        }
    }
    if !matches!(req, Req::Release { .. }) {
        m.options
            .set(options::MAX_MESSAGE_SIZE, 1500u16.to_be_bytes().to_vec());
        m.options.set(options::PARAM_REQUEST_LIST, PRL.to_vec());
    }
    m
}

/// The complete Ethernet frame of a client message sent from `mac`.
pub fn client_frame(mac: Mac, xid: u32, secs: u16, req: Req) -> Result<Vec<u8>> {
    let payload = client_message(mac, xid, secs, req)
        .emit(None, 0)
        .context("encoding DHCP message")?;
    let (dst_mac, src_ip, dst_ip) = match req {
        Req::Discover | Req::Select { .. } => {
            (Mac::BROADCAST, Ipv4Addr::UNSPECIFIED, Ipv4Addr::BROADCAST)
        }
        Req::Rebind { ciaddr } => (Mac::BROADCAST, ciaddr, Ipv4Addr::BROADCAST),
        Req::Renew {
            ciaddr,
            server_ip,
            server_mac,
        }
        | Req::Release {
            ciaddr,
            server_ip,
            server_mac,
        } => (server_mac, ciaddr, server_ip),
    };
    let a = Addressing {
        src_mac: mac,
        dst_mac,
        src_ip,
        dst_ip,
        src_port: DHCP_CLIENT_PORT,
        dst_port: DHCP_SERVER_PORT,
    };
    frame::build(&a, &payload).context("building frame")
}

/// A server reply addressed to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub kind: MessageType,
    pub xid: u32,
    pub chaddr: Mac,
    pub yiaddr: Ipv4Addr,
    pub server_id: Option<Ipv4Addr>,
    /// Ethernet source of the reply (the server's MAC).
    pub src_mac: Mac,
    pub src_ip: Ipv4Addr,
}

/// Parses a frame as a DHCP reply (UDP to port 68, op BOOTREPLY, a message
/// type). `None` for anything else.
pub fn parse_reply(f: &[u8]) -> Option<Reply> {
    let u = frame::parse(f).ok()?;
    if u.dst_port != DHCP_CLIENT_PORT {
        return None;
    }
    let m = Message::parse(u.payload).ok()?;
    if m.op != BOOTREPLY || m.htype != HTYPE_ETHERNET || m.hlen != 6 {
        return None;
    }
    Some(Reply {
        kind: m.options.message_type()?,
        xid: m.xid,
        chaddr: m.client_mac(),
        yiaddr: m.yiaddr,
        server_id: m.options.get_ip(options::SERVER_ID),
        src_mac: u.src_mac,
        src_ip: u.src_ip,
    })
}

/// A DISCOVER built once with a zero MAC and xid; [`FloodTemplate::write`]
/// patches a copy for each frame.
#[derive(Debug, Clone)]
pub struct FloodTemplate {
    frame: Vec<u8>,
    /// Bytes of VLAN tags inserted after the MAC addresses.
    shift: usize,
    /// Ones' complement sum (unfolded) of the UDP pseudo header, header
    /// (checksum field zero) and payload with MAC and xid zero.
    base_sum: u32,
}

fn sum_words(b: &[u8]) -> u32 {
    let mut s = 0u32;
    let mut it = b.chunks_exact(2);
    for c in &mut it {
        s += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [x] = it.remainder() {
        s += u32::from(*x) << 8;
    }
    s
}

fn fold(mut s: u32) -> u16 {
    while s >> 16 != 0 {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

impl FloodTemplate {
    pub fn new() -> Result<FloodTemplate> {
        FloodTemplate::tagged(&[])
    }

    /// A template with `tags` (TPID, TCI) after the MAC addresses, outermost
    /// first: what a guest wraps a flood in to try and get it past XDP.
    pub fn tagged(tags: &[(u16, u16)]) -> Result<FloodTemplate> {
        // No client id (it would repeat the MAC): only chaddr and the
        // Ethernet source carry the MAC.
        let mut m = client_message(Mac([0; 6]), 0, 0, Req::Discover);
        m.options.remove(options::CLIENT_ID);
        let payload = m.emit(None, 0)?;
        let frame = frame::build(
            &Addressing {
                src_mac: Mac([0; 6]),
                dst_mac: Mac::BROADCAST,
                src_ip: Ipv4Addr::UNSPECIFIED,
                dst_ip: Ipv4Addr::BROADCAST,
                src_port: DHCP_CLIENT_PORT,
                dst_port: DHCP_SERVER_PORT,
            },
            &payload,
        )?;
        let udp_len = frame.len() - UDP_OFF;
        let mut pseudo = [0u8; 12];
        pseudo[4..8].copy_from_slice(&Ipv4Addr::BROADCAST.octets());
        pseudo[9] = 17;
        pseudo[10..12].copy_from_slice(&(udp_len as u16).to_be_bytes());
        let mut udp = frame[UDP_OFF..].to_vec();
        udp[6] = 0;
        udp[7] = 0;
        let base_sum = sum_words(&pseudo) + sum_words(&udp);
        let mut frame = frame;
        for (i, (tpid, tci)) in tags.iter().enumerate() {
            let [a, b] = tpid.to_be_bytes();
            let [c, d] = tci.to_be_bytes();
            frame.splice(12 + 4 * i..12 + 4 * i, [a, b, c, d]);
        }
        Ok(FloodTemplate {
            frame,
            shift: 4 * tags.len(),
            base_sum,
        })
    }

    pub fn len(&self) -> usize {
        self.frame.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frame.is_empty()
    }

    /// Writes the DISCOVER of `mac` with `xid` into `out` (resized to the
    /// frame length): Ethernet source and chaddr = `mac`, valid checksums.
    pub fn write(&self, mac: Mac, xid: u32, out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&self.frame);
        out[ETH_SRC..ETH_SRC + 6].copy_from_slice(&mac.0);
        let k = self.shift;
        out[k + CHADDR_OFF..k + CHADDR_OFF + 6].copy_from_slice(&mac.0);
        let x = xid.to_be_bytes();
        out[k + XID_OFF..k + XID_OFF + 4].copy_from_slice(&x);
        // chaddr and xid start at even offsets from the UDP header.
        let s = self.base_sum + sum_words(&mac.0) + sum_words(&x);
        let mut c = !fold(s);
        if c == 0 {
            c = 0xffff;
        }
        out[k + UDP_CSUM..k + UDP_CSUM + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// Parses `TPID:TCI[,TPID:TCI]` (hex TPID, decimal TCI), e.g. `88a8:0,8100:0`.
pub fn parse_tags(s: &str) -> Result<Vec<(u16, u16)>> {
    if s.is_empty() {
        return Ok(Vec::new());
    }
    s.split(',')
        .map(|t| {
            let (tpid, tci) = t
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("tag {t:?}: want TPID:TCI"))?;
            Ok((u16::from_str_radix(tpid, 16)?, tci.parse()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::Rng;

    /// The reference: a full build through isodhcp's codec.
    fn reference(mac: Mac, xid: u32) -> Vec<u8> {
        let mut m = client_message(mac, xid, 0, Req::Discover);
        m.options.remove(options::CLIENT_ID);
        let payload = m.emit(None, 0).unwrap();
        frame::build(
            &Addressing {
                src_mac: mac,
                dst_mac: Mac::BROADCAST,
                src_ip: Ipv4Addr::UNSPECIFIED,
                dst_ip: Ipv4Addr::BROADCAST,
                src_port: 68,
                dst_port: 67,
            },
            &payload,
        )
        .unwrap()
    }

    #[test]
    fn patched_flood_frames_equal_full_builds() {
        let t = FloodTemplate::new().unwrap();
        let mut rng = Rng::new(7);
        let mut out = Vec::new();
        for i in 0..2000 {
            let mac = rng.mac(0x0a);
            let xid = if i == 0 { 0xffff_ffff } else { rng.next_u32() };
            t.write(mac, xid, &mut out);
            assert_eq!(out, reference(mac, xid), "mac {mac} xid {xid:#x}");
        }
    }

    #[test]
    fn flood_frames_are_valid_discovers_with_chaddr_equal_source() {
        let t = FloodTemplate::new().unwrap();
        let mac = Mac([0x0a, 1, 2, 3, 4, 5]);
        let mut out = Vec::new();
        t.write(mac, 0x1234_5678, &mut out);
        let u = frame::parse(&out).unwrap();
        assert_eq!(u.src_mac, mac);
        assert_eq!(u.dst_mac, Mac::BROADCAST);
        assert_eq!((u.src_port, u.dst_port), (68, 67));
        let m = Message::parse(u.payload).unwrap();
        assert_eq!(m.op, BOOTREQUEST);
        assert_eq!(m.client_mac(), mac);
        assert_eq!(m.xid, 0x1234_5678);
        assert_eq!(m.options.message_type(), Some(MessageType::Discover));
        assert!(out.len() >= 14 + 20 + 8 + 300);
    }

    #[test]
    fn client_frames_round_trip() {
        let mac = Mac([6, 1, 2, 3, 4, 5]);
        let srv = Ipv4Addr::new(198, 18, 0, 1);
        let ip = Ipv4Addr::new(198, 18, 1, 9);
        let f = client_frame(
            mac,
            9,
            0,
            Req::Select {
                requested: ip,
                server_id: srv,
            },
        )
        .unwrap();
        let u = frame::parse(&f).unwrap();
        let m = Message::parse(u.payload).unwrap();
        assert_eq!(m.options.message_type(), Some(MessageType::Request));
        assert_eq!(m.options.get_ip(options::REQUESTED_IP), Some(ip));
        assert_eq!(m.options.get_ip(options::SERVER_ID), Some(srv));
        let smac = Mac([2, 0x1d, 0, 0, 0, 1]);
        let f = client_frame(
            mac,
            9,
            0,
            Req::Renew {
                ciaddr: ip,
                server_ip: srv,
                server_mac: smac,
            },
        )
        .unwrap();
        let u = frame::parse(&f).unwrap();
        assert_eq!((u.dst_mac, u.src_ip, u.dst_ip), (smac, ip, srv));
        let m = Message::parse(u.payload).unwrap();
        assert_eq!(m.ciaddr, ip);
        assert_eq!(m.options.get(options::REQUESTED_IP), None);
    }

    #[test]
    fn replies_are_recognised() {
        let mac = Mac([6, 1, 2, 3, 4, 5]);
        let mut m = Message {
            op: BOOTREPLY,
            xid: 77,
            yiaddr: Ipv4Addr::new(198, 18, 1, 2),
            ..Message::default()
        };
        m.chaddr[..6].copy_from_slice(&mac.0);
        m.options
            .set(options::MESSAGE_TYPE, vec![MessageType::Offer as u8]);
        m.options
            .set_ip(options::SERVER_ID, Ipv4Addr::new(198, 18, 0, 1));
        let smac = Mac([2, 0x1d, 0, 0, 0, 1]);
        let f = frame::build(
            &Addressing {
                src_mac: smac,
                dst_mac: mac,
                src_ip: Ipv4Addr::new(198, 18, 0, 1),
                dst_ip: m.yiaddr,
                src_port: 67,
                dst_port: 68,
            },
            &m.emit(None, 0).unwrap(),
        )
        .unwrap();
        let r = parse_reply(&f).unwrap();
        assert_eq!(r.kind, MessageType::Offer);
        assert_eq!((r.xid, r.chaddr, r.src_mac), (77, mac, smac));
        assert_eq!(r.server_id, Some(Ipv4Addr::new(198, 18, 0, 1)));
        // A client message is not a reply.
        let d = client_frame(mac, 1, 0, Req::Discover).unwrap();
        assert_eq!(parse_reply(&d), None);
    }

    #[test]
    fn tagged_template_matches_the_reference_behind_its_tags() {
        let tags = parse_tags("88a8:0,8100:0").unwrap();
        assert_eq!(tags, [(0x88a8, 0), (0x8100, 0)]);
        let tpl = FloodTemplate::tagged(&tags).unwrap();
        let mut out = Vec::new();
        let mac = Mac([0x0a, 1, 2, 3, 4, 5]);
        tpl.write(mac, 0xdead_beef, &mut out);
        let want = reference(mac, 0xdead_beef);
        assert_eq!(&out[..12], &want[..12]);
        assert_eq!(&out[12..20], &[0x88, 0xa8, 0, 0, 0x81, 0x00, 0, 0]);
        assert_eq!(&out[20..], &want[12..]);
    }
}
