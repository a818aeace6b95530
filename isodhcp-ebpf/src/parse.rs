//! Bounds-checked header parsing. Pure functions over `[data, data_end)` so they
//! also run (and are unit-tested) on the host with an ordinary byte buffer.

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const IPPROTO_UDP: u8 = 17;
const IPV4_MIN_HLEN: usize = 20;
const UDP_HLEN: usize = 8;
const DHCP_SERVER_PORT: u16 = 67;

/// What the program decided a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// Not IPv4/UDP to port 67, or too short/odd to tell: pass untouched.
    NotDhcp,
    /// IPv4/UDP to port 67 (a candidate DHCP request).
    Dhcp,
}

/// Reads one byte at `off`, or `None` when it lies beyond `end`.
///
/// Every packet access goes through here: the explicit `data + off + 1 > end`
/// comparison is the form the verifier understands.
#[inline(always)]
fn byte(data: usize, end: usize, off: usize) -> Option<u8> {
    if data + off + 1 > end {
        return None;
    }
    // SAFETY: `data + off` is inside `[data, end)`, checked just above.
    Some(unsafe { *((data + off) as *const u8) })
}

/// Reads a big-endian u16 at `off` (both bytes bounds-checked).
#[inline(always)]
fn be16(data: usize, end: usize, off: usize) -> Option<u16> {
    if data + off + 2 > end {
        return None;
    }
    // SAFETY: both bytes are inside `[data, end)`, checked just above.
    let (hi, lo) = unsafe {
        (
            *((data + off) as *const u8),
            *((data + off + 1) as *const u8),
        )
    };
    Some(u16::from_be_bytes([hi, lo]))
}

/// Classifies the frame in `[data, end)`.
#[inline(always)]
pub fn classify(data: usize, end: usize) -> Class {
    match dhcp_l4_offset(data, end) {
        Some(_) => Class::Dhcp,
        None => Class::NotDhcp,
    }
}

/// Returns the offset of the UDP header if the frame is IPv4/UDP to port 67.
///
/// Truncated or odd headers yield `None` (pass, fail-open). Later the DHCP
/// checks of SPEC §9 (fragments, lengths, BOOTP fixed part) will turn some of
/// these into counted drops.
#[inline(always)]
fn dhcp_l4_offset(data: usize, end: usize) -> Option<usize> {
    // Ethernet, with at most one 802.1Q tag.
    let mut l3 = ETH_HLEN;
    let mut proto = be16(data, end, 12)?;
    if proto == ETH_P_8021Q {
        proto = be16(data, end, ETH_HLEN + 2)?;
        l3 += VLAN_HLEN;
    }
    if proto != ETH_P_IP {
        return None;
    }

    // IPv4.
    let vihl = byte(data, end, l3)?;
    if vihl >> 4 != 4 {
        return None;
    }
    let ihl = ((vihl & 0x0f) as usize) * 4;
    if ihl < IPV4_MIN_HLEN {
        return None;
    }
    if byte(data, end, l3 + 9)? != IPPROTO_UDP {
        return None;
    }
    // A non-first fragment carries no UDP header: it cannot be identified.
    if be16(data, end, l3 + 6)? & 0x1fff != 0 {
        return None;
    }

    // UDP: the whole header must be present.
    let l4 = l3 + ihl;
    if data + l4 + UDP_HLEN > end {
        return None;
    }
    if be16(data, end, l4 + 2)? != DHCP_SERVER_PORT {
        return None;
    }
    Some(l4)
}

#[cfg(all(test, not(target_arch = "bpf")))]
mod tests {
    use super::*;

    fn run(f: &[u8]) -> Class {
        let d = f.as_ptr() as usize;
        classify(d, d + f.len())
    }

    /// Ethernet + IPv4 (ihl 5) + UDP 68->dport, optional 802.1Q tag.
    fn frame(vlan: bool, proto: u8, dport: u16) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&[2, 0, 0, 0, 0, 1]);
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x0a]);
        }
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&[
            0x45, 0, 0, 28, 0, 0, 0, 0, 64, proto, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
        ]);
        f.extend_from_slice(&[0, 68]);
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f
    }

    #[test]
    fn dhcp_plain_and_tagged() {
        assert_eq!(run(&frame(false, 17, 67)), Class::Dhcp);
        assert_eq!(run(&frame(true, 17, 67)), Class::Dhcp);
    }

    #[test]
    fn other_traffic() {
        assert_eq!(run(&frame(false, 17, 53)), Class::NotDhcp);
        assert_eq!(run(&frame(false, 6, 67)), Class::NotDhcp);
        let mut arp = frame(false, 17, 67);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(run(&arp), Class::NotDhcp);
    }

    #[test]
    fn truncated_everywhere_is_passed() {
        let f = frame(true, 17, 67);
        for n in 0..f.len() {
            assert_eq!(run(&f[..n]), Class::NotDhcp, "len {n}");
        }
    }

    #[test]
    fn odd_ipv4_headers() {
        let mut f = frame(false, 17, 67);
        f[14] = 0x44; // ihl 4
        assert_eq!(run(&f), Class::NotDhcp);
        let mut f = frame(false, 17, 67);
        f[14] = 0x65; // version 6
        assert_eq!(run(&f), Class::NotDhcp);
        let mut f = frame(false, 17, 67);
        f[20..22].copy_from_slice(&[0x00, 0x10]); // fragment offset 16
        assert_eq!(run(&f), Class::NotDhcp);
        let mut f = frame(false, 17, 67);
        f[14] = 0x46; // ihl 6: UDP now starts 4 bytes later, header cut short
        assert_eq!(run(&f), Class::NotDhcp);
        f.splice(34..34, [0u8; 4]); // insert the 4 option bytes
        assert_eq!(run(&f), Class::Dhcp);
    }
}
