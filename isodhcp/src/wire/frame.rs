//! Ethernet II / 802.1Q / IPv4 / UDP framing (RFC 791, RFC 768, IEEE 802.1Q).
//!
//! [`parse`] reads through up to two VLAN tags (802.1Q or 802.1ad, the same
//! depth as the XDP program) and checks the IPv4 header length,
//! total length, fragment bits and the UDP length; it does not verify the UDP
//! checksum, because frames seen on a packet socket may still carry a partial
//! (offloaded) checksum. [`build`] computes both checksums.

use std::net::Ipv4Addr;

use super::{Mac, WireError};

/// EtherType of IPv4.
pub const ETH_P_IP: u16 = 0x0800;
/// EtherType (TPID) of an IEEE 802.1Q VLAN tag (C-tag).
pub const ETH_P_8021Q: u16 = 0x8100;
/// EtherType (TPID) of an IEEE 802.1ad service tag (S-tag, QinQ outer tag).
pub const ETH_P_8021AD: u16 = 0x88a8;
/// UDP port servers listen on; clients send to it (RFC 2131 §4.1).
pub const DHCP_SERVER_PORT: u16 = 67;
/// UDP port clients listen on; servers send to it (RFC 2131 §4.1).
pub const DHCP_CLIENT_PORT: u16 = 68;
const ETH_LEN: usize = 14;
const IP_LEN: usize = 20;
const UDP_LEN: usize = 8;

/// A parsed IPv4/UDP frame; `payload` borrows the UDP data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UdpFrame<'a> {
    /// Ethernet destination address.
    pub dst_mac: Mac,
    /// Ethernet source address; admission and the engine require it to equal
    /// `chaddr` (design.md §Classification).
    pub src_mac: Mac,
    /// VLAN id of the first tag whose id is not 0, if any: such a frame
    /// belongs to that VLAN's interface, not to this one.
    pub vlan: Option<u16>,
    /// IPv4 source address (0.0.0.0 from a client without an address).
    pub src_ip: Ipv4Addr,
    /// IPv4 destination address (often 255.255.255.255).
    pub dst_ip: Ipv4Addr,
    /// UDP source port.
    pub src_port: u16,
    /// UDP destination port.
    pub dst_port: u16,
    /// The UDP data as long as the UDP length says (Ethernet padding left
    /// out): the BOOTP payload for DHCP.
    pub payload: &'a [u8],
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

/// Parses an Ethernet frame carrying IPv4/UDP.
pub fn parse(f: &[u8]) -> Result<UdpFrame<'_>, WireError> {
    if f.len() < ETH_LEN {
        return Err(WireError::Truncated("Ethernet header"));
    }
    let mut dst = [0u8; 6];
    let mut src = [0u8; 6];
    dst.copy_from_slice(&f[0..6]);
    src.copy_from_slice(&f[6..12]);
    let mut off = 12;
    let mut ethertype = be16(f, off);
    let mut vlan = None;
    for _ in 0..2 {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        if f.len() < off + 6 {
            return Err(WireError::Truncated("VLAN tag"));
        }
        let vid = be16(f, off + 2) & 0x0fff;
        if vid != 0 && vlan.is_none() {
            vlan = Some(vid);
        }
        off += 4;
        ethertype = be16(f, off);
    }
    off += 2;
    if ethertype != ETH_P_IP {
        return Err(WireError::NotIpv4Udp);
    }
    let ip = &f[off..];
    if ip.len() < IP_LEN {
        return Err(WireError::Truncated("IPv4 header"));
    }
    if ip[0] >> 4 != 4 {
        return Err(WireError::BadIpv4("version"));
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    if ihl < IP_LEN || ip.len() < ihl {
        return Err(WireError::BadIpv4("header length"));
    }
    let total = usize::from(be16(ip, 2));
    if total < ihl + UDP_LEN || total > ip.len() {
        return Err(WireError::BadIpv4("total length"));
    }
    // More-fragments bit or a non-zero fragment offset.
    if be16(ip, 6) & 0x3fff != 0 {
        return Err(WireError::Fragment);
    }
    if ip[9] != 17 {
        return Err(WireError::NotIpv4Udp);
    }
    let udp = &ip[ihl..total];
    let ulen = usize::from(be16(udp, 4));
    if ulen < UDP_LEN || ulen > udp.len() {
        return Err(WireError::BadUdpLength);
    }
    Ok(UdpFrame {
        dst_mac: Mac(dst),
        src_mac: Mac(src),
        vlan,
        src_ip: Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]),
        dst_ip: Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]),
        src_port: be16(udp, 0),
        dst_port: be16(udp, 2),
        payload: &udp[UDP_LEN..ulen],
    })
}

/// RFC 1071 ones' complement sum, folded.
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    for part in parts {
        let mut chunks = part.chunks_exact(2);
        for c in &mut chunks {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        if let [last] = chunks.remainder() {
            sum += u32::from(*last) << 8;
        }
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Addressing for an outgoing frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    /// Ethernet source address; for a reply, the serving interface's MAC.
    pub src_mac: Mac,
    /// Ethernet destination address; for a reply, the client's `chaddr` or
    /// broadcast (design.md §Protocol).
    pub dst_mac: Mac,
    /// IPv4 source address; for a reply, the server IP.
    pub src_ip: Ipv4Addr,
    /// IPv4 destination address; for a reply, `ciaddr`, `yiaddr` or
    /// 255.255.255.255 (RFC 2131 §4.1, design.md §Protocol).
    pub dst_ip: Ipv4Addr,
    /// UDP source port, [`DHCP_SERVER_PORT`] for replies.
    pub src_port: u16,
    /// UDP destination port, [`DHCP_CLIENT_PORT`] for replies.
    pub dst_port: u16,
}

/// Builds Ethernet II + IPv4 (TTL 64, DF clear) + UDP around `payload`.
pub fn build(a: &Addressing, payload: &[u8]) -> Result<Vec<u8>, WireError> {
    let udp_len = UDP_LEN + payload.len();
    let total = IP_LEN + udp_len;
    if total > usize::from(u16::MAX) {
        return Err(WireError::TooLarge(total));
    }
    let mut f = Vec::with_capacity(ETH_LEN + total);
    f.extend_from_slice(&a.dst_mac.0);
    f.extend_from_slice(&a.src_mac.0);
    f.extend_from_slice(&ETH_P_IP.to_be_bytes());
    let mut ip = [0u8; IP_LEN];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&a.src_ip.octets());
    ip[16..20].copy_from_slice(&a.dst_ip.octets());
    let c = checksum(&[&ip]);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&ip);
    let mut udp = [0u8; UDP_LEN];
    udp[0..2].copy_from_slice(&a.src_port.to_be_bytes());
    udp[2..4].copy_from_slice(&a.dst_port.to_be_bytes());
    udp[4..6].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let mut pseudo = [0u8; 12];
    pseudo[0..4].copy_from_slice(&a.src_ip.octets());
    pseudo[4..8].copy_from_slice(&a.dst_ip.octets());
    pseudo[9] = 17;
    pseudo[10..12].copy_from_slice(&(udp_len as u16).to_be_bytes());
    let mut c = checksum(&[&pseudo, &udp, payload]);
    if c == 0 {
        c = 0xffff; // RFC 768: a computed zero is sent as all ones.
    }
    udp[6..8].copy_from_slice(&c.to_be_bytes());
    f.extend_from_slice(&udp);
    f.extend_from_slice(payload);
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addressing() -> Addressing {
        Addressing {
            src_mac: Mac([2, 0, 0, 0, 0, 1]),
            dst_mac: Mac::BROADCAST,
            src_ip: Ipv4Addr::new(198, 18, 0, 1),
            dst_ip: Ipv4Addr::BROADCAST,
            src_port: 67,
            dst_port: 68,
        }
    }

    #[test]
    fn build_golden_headers() {
        let f = build(&addressing(), &[1, 2, 3, 4]).unwrap();
        // Ethernet, then IPv4 with total length 32 and a checksum computed by hand:
        // 4500 0020 0000 0000 4011 ---- c612 0001 ffff ffff.
        assert_eq!(
            &f[..14],
            &[255, 255, 255, 255, 255, 255, 2, 0, 0, 0, 0, 1, 8, 0]
        );
        assert_eq!(&f[14..24], &[0x45, 0, 0, 32, 0, 0, 0, 0, 64, 17]);
        assert_eq!(&f[24..26], &[0xb4, 0xba]);
        assert_eq!(checksum(&[&f[14..34]]), 0, "IPv4 checksum verifies");
        // UDP checksum verifies over the pseudo-header.
        let mut pseudo = vec![198, 18, 0, 1, 255, 255, 255, 255, 0, 17, 0, 12];
        pseudo.extend_from_slice(&f[34..]);
        assert_eq!(checksum(&[&pseudo]), 0);
    }

    #[test]
    fn round_trip() {
        let f = build(&addressing(), b"hello").unwrap();
        let p = parse(&f).unwrap();
        assert_eq!(p.src_ip, Ipv4Addr::new(198, 18, 0, 1));
        assert_eq!((p.src_port, p.dst_port), (67, 68));
        assert_eq!(p.payload, b"hello");
        assert_eq!(p.vlan, None);
    }

    #[test]
    fn parses_up_to_two_vlan_tags() {
        let f = build(&addressing(), b"x").unwrap();
        let tagged = |tags: &[[u8; 4]]| {
            let mut t = f[..12].to_vec();
            tags.iter().for_each(|g| t.extend_from_slice(g));
            t.extend_from_slice(&f[12..]);
            t
        };
        let one = tagged(&[[0x81, 0x00, 0x00, 0x2a]]);
        let p = parse(&one).unwrap();
        assert_eq!(p.vlan, Some(42));
        assert_eq!(p.payload, b"x");
        let prio = tagged(&[[0x88, 0xa8, 0, 0], [0x81, 0x00, 0x20, 0]]);
        let p = parse(&prio).unwrap();
        assert_eq!(p.vlan, None, "priority tags only");
        assert_eq!(p.payload, b"x");
        let inner = tagged(&[[0x88, 0xa8, 0, 0], [0x81, 0x00, 0, 7]]);
        assert_eq!(parse(&inner).unwrap().vlan, Some(7));
        let three = tagged(&[[0x88, 0xa8, 0, 0], [0x81, 0, 0, 0], [0x81, 0, 0, 0]]);
        assert_eq!(parse(&three), Err(WireError::NotIpv4Udp));
    }

    #[test]
    fn rejects_malformed() {
        let f = build(&addressing(), b"abcd").unwrap();
        assert_eq!(parse(&f[..20]), Err(WireError::Truncated("IPv4 header")));
        let mut frag = f.clone();
        frag[20] = 0x20; // more fragments
        assert_eq!(parse(&frag), Err(WireError::Fragment));
        let mut ihl = f.clone();
        ihl[14] = 0x44;
        assert_eq!(parse(&ihl), Err(WireError::BadIpv4("header length")));
        let mut ulen = f.clone();
        ulen[38..40].copy_from_slice(&100u16.to_be_bytes());
        assert_eq!(parse(&ulen), Err(WireError::BadUdpLength));
        let mut arp = f;
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(parse(&arp), Err(WireError::NotIpv4Udp));
    }

    #[test]
    fn never_panics_on_prefixes() {
        let f = build(&addressing(), &[9u8; 300]).unwrap();
        for n in 0..f.len() {
            let _ = parse(&f[..n]);
        }
    }
}
