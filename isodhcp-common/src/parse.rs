//! Bounds-checked header parsing and DHCP request validation
//! (design.md §Admission): the one implementation of the frame checks, run by
//! the XDP program and by the daemon's userspace path alike.
//!
//! Pure functions over `[data, data_end)`, so they also run (and are
//! unit-tested) on the host with an ordinary byte buffer ([`parse_frame`]). Every packet read
//! goes through [`byte`], [`be16`] or [`mac`], each of which compares
//! `data + off + len` against `end` right before the load: the form the
//! verifier understands. Offsets are bounded (at most two VLAN tags, IHL ≤
//! 60), so every variable packet offset has a small known maximum.
//!
//! # VLAN tags
//! The kernel strips 802.1Q (0x8100) and 802.1ad (0x88a8) tags after XDP
//! has run. A tag with VLAN id 0 (priority tag) is removed and what it
//! carried is delivered to this interface; at the first tag with a non-zero
//! id the frame belongs to that VLAN's interface (or is marked "other host"
//! when there is none). So the program reads through up to two tags: DHCP
//! behind priority tags only is ours and checked like an untagged frame;
//! DHCP for another VLAN is passed (`pass_vlan`); a stack of more than two
//! priority tags, which the program cannot see through, is dropped
//! (`drop_vlan_depth`). Without this, tagging a flood walked it past every
//! check and limit into the daemon's packet socket.

use crate::counters::Slot;
use crate::mac_key;

const ETH_HLEN: usize = 14;
const VLAN_HLEN: usize = 4;
const ETH_SRC: usize = 6;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88a8;
const VLAN_VID_MASK: u16 = 0x0fff;
const IPPROTO_UDP: u8 = 17;
const IPV4_MIN_HLEN: usize = 20;
const IP_MF: u16 = 0x2000;
const IP_OFFSET: u16 = 0x1fff;
const UDP_HLEN: usize = 8;
const DHCP_SERVER_PORT: u16 = 67;
/// BOOTP fixed part: op .. file, without the magic cookie.
const BOOTP_FIXED: usize = 236;
const BOOTP_CHADDR: usize = 28;
const BOOTREQUEST: u8 = 1;
const HTYPE_ETHERNET: u8 = 1;

/// A DHCP request that passed every header check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Request {
    /// [`mac_key`] of the client (Ethernet source == chaddr).
    pub mac: u64,
    /// Offset of the IPv4 header (14, 18 or 22 behind priority tags).
    pub l3: usize,
    /// Offset of the UDP header; the BOOTP message starts 8 bytes later and
    /// at least its 236-byte fixed part is inside the frame.
    ///
    /// `l3`/`l4` are what a future in-kernel OFFER responder needs to read the
    /// options and rewrite the frame in place for XDP_TX.
    pub l4: usize,
}

/// What the program decided a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Not IPv4/UDP to port 67, or too short/odd to tell: pass untouched.
    NotDhcp,
    /// IPv4/UDP to port 67 that fails a check, or a frame the kernel would
    /// deliver here but the program cannot read: drop, counted in this slot.
    Drop(Slot),
    /// IPv4/UDP to port 67 tagged for another VLAN: pass, count `pass_vlan`.
    OtherVlan,
    /// A well-formed BOOTREQUEST whose chaddr matches the Ethernet source.
    Request(Request),
}

/// Reads one byte at `off`, or `None` when it lies beyond `end`.
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

/// Reads six bytes at `off` as a [`mac_key`] (one bounds check for all six).
#[inline(always)]
fn mac(data: usize, end: usize, off: usize) -> Option<u64> {
    if data + off + 6 > end {
        return None;
    }
    let p = (data + off) as *const u8;
    // SAFETY: all six bytes are inside `[data, end)`, checked just above.
    let m = unsafe { [*p, *p.add(1), *p.add(2), *p.add(3), *p.add(4), *p.add(5)] };
    Some(mac_key(m))
}

/// Classifies and validates a frame held in a byte slice.
pub fn parse_frame(frame: &[u8]) -> Parsed {
    let data = frame.as_ptr() as usize;
    // SAFETY: `[data, data + len)` is the slice, readable for this call.
    unsafe { parse(data, data + frame.len()) }
}

/// Classifies and validates the frame in `[data, end)`.
///
/// # Safety
/// Every byte of `[data, end)` must be readable for the whole call (the XDP
/// context's packet range, or a live byte slice). Nothing outside it is read.
#[inline(always)]
pub unsafe fn parse(data: usize, end: usize) -> Parsed {
    let c = match candidate(data, end) {
        Ok(c) => c,
        Err(p) => return p,
    };
    if c.other_vlan {
        return Parsed::OtherVlan;
    }
    match validate(data, end, &c) {
        Ok(r) => Parsed::Request(r),
        Err(s) => Parsed::Drop(s),
    }
}

/// An IPv4/UDP frame to port 67, not yet validated.
struct Candidate {
    l3: usize,
    /// IPv4 header length in bytes as the header claims it (may be bogus).
    ihl: usize,
    /// `ihl` is at least 20 and the header lies inside the frame.
    ihl_ok: bool,
    /// Where the UDP header is: `l3 + ihl` if `ihl_ok`, else `l3 + 20`.
    l4: usize,
    tot_len: u16,
    frag: u16,
    /// A tag with a non-zero VLAN id came first: another interface's frame.
    other_vlan: bool,
}

#[inline(always)]
fn is_vlan(proto: u16) -> bool {
    proto == ETH_P_8021Q || proto == ETH_P_8021AD
}

/// Reads through at most two VLAN tags (see the module docs). Returns the
/// IPv4 header offset, the ethertype there, and whether a non-zero VLAN id
/// came first; `Err` is the verdict for a frame decided here.
#[inline(always)]
fn untag(data: usize, end: usize) -> Result<(usize, u16, bool), Parsed> {
    let mut l3 = ETH_HLEN;
    let mut proto = be16(data, end, 12).ok_or(Parsed::NotDhcp)?;
    // Two rounds, unrolled by hand: a loop with a packet-dependent exit is
    // harder on the verifier than two copies of four loads.
    if is_vlan(proto) {
        let tci = be16(data, end, l3).ok_or(Parsed::NotDhcp)?;
        proto = be16(data, end, l3 + 2).ok_or(Parsed::NotDhcp)?;
        l3 += VLAN_HLEN;
        if tci & VLAN_VID_MASK != 0 {
            return Ok((l3, proto, true));
        }
        if is_vlan(proto) {
            let tci = be16(data, end, l3).ok_or(Parsed::NotDhcp)?;
            proto = be16(data, end, l3 + 2).ok_or(Parsed::NotDhcp)?;
            l3 += VLAN_HLEN;
            if tci & VLAN_VID_MASK != 0 {
                return Ok((l3, proto, true));
            }
            if is_vlan(proto) {
                return Err(Parsed::Drop(Slot::DropVlanDepth));
            }
        }
    }
    Ok((l3, proto, false))
}

/// Identifies IPv4/UDP to port 67; `Err(NotDhcp)` means "not DHCP, pass
/// untouched".
///
/// The destination port is read where the header puts it (`l3 + IHL·4`) or,
/// when the IHL is bogus, where a normal header would put it (`l3 + 20`), so
/// a DHCP frame with a broken IHL is still recognised and dropped with
/// `drop_ihl` (the kernel would drop it anyway). A frame cut off before the
/// port, and a non-first fragment (it has no UDP header, so it cannot be told
/// apart from any other UDP fragment), are not identified: passed untouched.
/// The first fragment of a fragmented DHCP datagram is dropped, so its other
/// fragments can never be reassembled.
#[inline(always)]
fn candidate(data: usize, end: usize) -> Result<Candidate, Parsed> {
    const NOT: Parsed = Parsed::NotDhcp;
    let (l3, proto, other_vlan) = untag(data, end)?;
    if proto != ETH_P_IP {
        return Err(NOT);
    }

    // IPv4: version, protocol, fragment field (all in the first 20 bytes).
    let vihl = byte(data, end, l3).ok_or(NOT)?;
    if vihl >> 4 != 4 {
        return Err(NOT);
    }
    if byte(data, end, l3 + 9).ok_or(NOT)? != IPPROTO_UDP {
        return Err(NOT);
    }
    let tot_len = be16(data, end, l3 + 2).ok_or(NOT)?;
    let frag = be16(data, end, l3 + 6).ok_or(NOT)?;
    if frag & IP_OFFSET != 0 {
        return Err(NOT);
    }

    let ihl = ((vihl & 0x0f) as usize) * 4;
    let ihl_ok = ihl >= IPV4_MIN_HLEN && data + l3 + ihl <= end;
    let l4 = if ihl_ok { l3 + ihl } else { l3 + IPV4_MIN_HLEN };
    if be16(data, end, l4 + 2).ok_or(NOT)? != DHCP_SERVER_PORT {
        return Err(NOT);
    }
    Ok(Candidate {
        l3,
        ihl,
        ihl_ok,
        l4,
        tot_len,
        frag,
        other_vlan,
    })
}

/// The checks of design.md §Admission, in order; `Err` names the counter of the drop.
#[inline(always)]
fn validate(data: usize, end: usize, c: &Candidate) -> Result<Request, Slot> {
    // IHL: at least 20, header inside the frame and inside the IP datagram.
    if !c.ihl_ok || (c.tot_len as usize) < c.ihl {
        return Err(Slot::DropIhl);
    }
    // Fragments: a non-first one never gets here (see `candidate`).
    if c.frag & IP_MF != 0 {
        return Err(Slot::DropFragment);
    }
    // UDP header and length, then the BOOTP fixed part.
    //
    // Verifier note: all reads below go through the one pointer `udp`,
    // right after one bounds check on that same pointer. The verifier tracks
    // packet ranges per pointer derivation: re-deriving `data + l4 + k`
    // separately (or letting LLVM drop a check it proves redundant from the
    // UDP length) makes it reject the program.
    let udp = data + c.l4;
    if udp + UDP_HLEN + BOOTP_FIXED > end {
        return Err(short_frame_verdict(udp, end, c));
    }
    // SAFETY (all reads up to `src`): `[udp, udp + 244)` is inside the frame,
    // checked just above.
    let (ulen, op, htype, hlen, chaddr) = unsafe {
        (
            rd16(udp + 4) as usize,
            rd8(udp + UDP_HLEN),
            rd8(udp + UDP_HLEN + 1),
            rd8(udp + UDP_HLEN + 2),
            rdmac(udp + UDP_HLEN + BOOTP_CHADDR),
        )
    };
    if ulen < UDP_HLEN || c.ihl + ulen > c.tot_len as usize || udp + ulen > end {
        return Err(Slot::DropUdpLen);
    }
    if ulen < UDP_HLEN + BOOTP_FIXED {
        return Err(Slot::DropBootpShort);
    }
    // op 1 (BOOTREQUEST), htype 1 (Ethernet), hlen 6.
    if op != BOOTREQUEST || htype != HTYPE_ETHERNET || hlen != 6 {
        return Err(Slot::DropNotRequest);
    }
    // chaddr must be the Ethernet source: one MAC, one limiter key.
    let src = mac(data, end, ETH_SRC).ok_or(Slot::DropChaddrSpoof)?;
    if chaddr != src {
        return Err(Slot::DropChaddrSpoof);
    }
    Ok(Request {
        mac: src,
        l3: c.l3,
        l4: c.l4,
    })
}

/// Verdict for a DHCP frame too short to hold the UDP header plus the BOOTP
/// fixed part after `udp`: `drop_udp_len` if the UDP header is cut off or
/// its length is wrong, else `drop_bootp_short` (a UDP length that is sane
/// and fits such a frame is below 8 + 236).
#[inline(always)]
fn short_frame_verdict(udp: usize, end: usize, c: &Candidate) -> Slot {
    if udp + UDP_HLEN > end {
        return Slot::DropUdpLen;
    }
    // SAFETY: the 8-byte UDP header is inside the frame, checked just above.
    let ulen = unsafe { rd16(udp + 4) } as usize;
    if ulen < UDP_HLEN || c.ihl + ulen > c.tot_len as usize || udp + ulen > end {
        return Slot::DropUdpLen;
    }
    Slot::DropBootpShort
}

/// Unchecked packet reads: the caller has bounds-checked `p` on the same
/// pointer (see `validate`).
#[inline(always)]
unsafe fn rd8(p: usize) -> u8 {
    unsafe { *(p as *const u8) }
}

#[inline(always)]
unsafe fn rd16(p: usize) -> u16 {
    unsafe { u16::from_be_bytes([rd8(p), rd8(p + 1)]) }
}

#[inline(always)]
unsafe fn rdmac(p: usize) -> u64 {
    unsafe {
        mac_key([
            rd8(p),
            rd8(p + 1),
            rd8(p + 2),
            rd8(p + 3),
            rd8(p + 4),
            rd8(p + 5),
        ])
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec;
    use std::vec::Vec;

    const SRC: [u8; 6] = [2, 0, 0, 0, 0, 1];

    fn run(f: &[u8]) -> Parsed {
        parse_frame(f)
    }

    fn drop(s: Slot) -> Parsed {
        Parsed::Drop(s)
    }

    /// Ethernet (+ optional 802.1Q) + IPv4 (ihl 5) + UDP 68->dport + a
    /// 300-byte BOOTREQUEST whose chaddr is the Ethernet source.
    fn frame(vlan: bool, proto: u8, dport: u16) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&SRC);
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x00]); // priority tag
        }
        f.extend_from_slice(&[0x08, 0x00]);
        let tot = (20 + 8 + 300u16).to_be_bytes();
        f.extend_from_slice(&[
            0x45, 0, tot[0], tot[1], 0, 0, 0, 0, 64, proto, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255,
        ]);
        f.extend_from_slice(&[0, 68]);
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&(8 + 300u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        let mut bootp = vec![0u8; 300];
        bootp[..3].copy_from_slice(&[1, 1, 6]);
        bootp[28..34].copy_from_slice(&SRC);
        f.extend_from_slice(&bootp);
        f
    }

    fn request(l3: usize) -> Parsed {
        Parsed::Request(Request {
            mac: mac_key(SRC),
            l3,
            l4: l3 + 20,
        })
    }

    #[test]
    fn dhcp_plain_and_tagged() {
        assert_eq!(run(&frame(false, 17, 67)), request(14));
        assert_eq!(run(&frame(true, 17, 67)), request(18));
    }

    #[test]
    fn other_traffic() {
        assert_eq!(run(&frame(false, 17, 53)), Parsed::NotDhcp);
        assert_eq!(run(&frame(false, 6, 67)), Parsed::NotDhcp);
        let mut arp = frame(false, 17, 67);
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert_eq!(run(&arp), Parsed::NotDhcp);
        let mut v6 = frame(false, 17, 67);
        v6[14] = 0x65; // version 6 behind an IPv4 ethertype
        assert_eq!(run(&v6), Parsed::NotDhcp);
    }

    /// `frame(false, ..)` with `tags` (TPID, TCI) inserted after the MACs.
    fn tagged(tags: &[(u16, u16)]) -> Vec<u8> {
        let mut f = frame(false, 17, 67);
        let mut at = 12;
        for (tpid, tci) in tags {
            let mut t = tpid.to_be_bytes().to_vec();
            t.extend_from_slice(&tci.to_be_bytes());
            f.splice(at..at, t);
            at += 4;
        }
        f
    }

    #[test]
    fn priority_tags_are_read_through() {
        // What the kernel would strip and deliver here is checked like an
        // untagged request, whatever the TPIDs (802.1Q, 802.1ad, mixed).
        for tpid in [0x8100, 0x88a8] {
            assert_eq!(run(&tagged(&[(tpid, 0)])), request(18), "{tpid:#x}");
            assert_eq!(run(&tagged(&[(tpid, 0x2000)])), request(18), "PCP only");
            for inner in [0x8100, 0x88a8] {
                assert_eq!(run(&tagged(&[(tpid, 0), (inner, 0)])), request(22));
            }
        }
        // The checks apply behind the tags too.
        let mut f = tagged(&[(0x88a8, 0), (0x8100, 0)]);
        f[22 + 20 + 8 + 28] ^= 1; // chaddr
        assert_eq!(run(&f), drop(Slot::DropChaddrSpoof));
    }

    #[test]
    fn deeper_priority_stacks_drop_and_other_vlans_pass() {
        let three = tagged(&[(0x88a8, 0), (0x8100, 0), (0x8100, 0)]);
        assert_eq!(run(&three), drop(Slot::DropVlanDepth));
        // A non-zero VLAN id first: another interface's frame.
        assert_eq!(run(&tagged(&[(0x8100, 10)])), Parsed::OtherVlan);
        assert_eq!(
            run(&tagged(&[(0x88a8, 0), (0x8100, 10)])),
            Parsed::OtherVlan
        );
        // Reading stops at the first real VLAN id, like the kernel's
        // delivery: what lies behind it is another interface's business, so
        // a deeper stack there passes (as not DHCP) instead of dropping.
        assert_eq!(
            run(&tagged(&[(0x88a8, 5), (0x8100, 0), (0x8100, 0)])),
            Parsed::NotDhcp
        );
        // Tagged, but not DHCP: untouched.
        let mut f = tagged(&[(0x8100, 10)]);
        f[18 + 20 + 2..18 + 20 + 4].copy_from_slice(&53u16.to_be_bytes());
        assert_eq!(run(&f), Parsed::NotDhcp);
    }

    #[test]
    fn truncation_before_the_port_passes_after_it_drops() {
        for vlan in [false, true] {
            let f = frame(vlan, 17, 67);
            let l3 = if vlan { 18 } else { 14 };
            for n in 0..f.len() {
                let got = run(&f[..n]);
                let want = if n < l3 + 24 {
                    Parsed::NotDhcp
                } else if n < l3 + 20 + 8 + 300 {
                    // The UDP length no longer fits the frame.
                    drop(Slot::DropUdpLen)
                } else {
                    request(l3)
                };
                assert_eq!(got, want, "vlan {vlan} len {n}");
            }
        }
    }

    #[test]
    fn ihl() {
        let mut f = frame(false, 17, 67);
        f[14] = 0x44; // ihl 4
        assert_eq!(run(&f), drop(Slot::DropIhl));
        f[14] = 0x40; // ihl 0
        assert_eq!(run(&f), drop(Slot::DropIhl));
        let mut f = frame(false, 17, 67);
        f[14] = 0x4f; // ihl 15 (60 bytes) in a frame cut at 50 IP bytes
        f.truncate(14 + 50);
        assert_eq!(run(&f), drop(Slot::DropIhl));
        let mut f = frame(false, 17, 67);
        f[16..18].copy_from_slice(&[0, 19]); // total length below the header
        assert_eq!(run(&f), drop(Slot::DropIhl));
        // ihl 6 with 4 option bytes really inserted: fine.
        let mut f = frame(false, 17, 67);
        f[14] = 0x46;
        f.splice(34..34, [0u8; 4]);
        f[16..18].copy_from_slice(&(24 + 8 + 300u16).to_be_bytes());
        assert_eq!(
            run(&f),
            Parsed::Request(Request {
                mac: mac_key(SRC),
                l3: 14,
                l4: 38
            })
        );
    }

    #[test]
    fn fragments() {
        let mut f = frame(false, 17, 67);
        f[20] = 0x20; // MF, offset 0: first fragment
        assert_eq!(run(&f), drop(Slot::DropFragment));
        let mut f = frame(false, 17, 67);
        f[20] = 0x40; // DF only: not a fragment
        assert_eq!(run(&f), request(14));
        let mut f = frame(false, 17, 67);
        f[20..22].copy_from_slice(&[0x00, 0x10]); // offset 16: no UDP header
        assert_eq!(run(&f), Parsed::NotDhcp);
    }

    #[test]
    fn udp_length() {
        for ulen in [0u16, 7, 8 + 300 + 1, 0xffff] {
            let mut f = frame(false, 17, 67);
            f[38..40].copy_from_slice(&ulen.to_be_bytes());
            assert_eq!(run(&f), drop(Slot::DropUdpLen), "ulen {ulen}");
        }
        // UDP length inside the frame but beyond the IP total length.
        let mut f = frame(false, 17, 67);
        f[16..18].copy_from_slice(&(20 + 8 + 299u16).to_be_bytes());
        assert_eq!(run(&f), drop(Slot::DropUdpLen));
        // Ethernet padding after the datagram is fine.
        let mut f = frame(false, 17, 67);
        f.extend_from_slice(&[0; 10]);
        assert_eq!(run(&f), request(14));
    }

    #[test]
    fn bootp_short() {
        // A consistent datagram whose payload is shorter than 236 bytes.
        let mut f = frame(false, 17, 67);
        f.truncate(14 + 20 + 8 + 235);
        f[16..18].copy_from_slice(&(20 + 8 + 235u16).to_be_bytes());
        f[38..40].copy_from_slice(&(8 + 235u16).to_be_bytes());
        assert_eq!(run(&f), drop(Slot::DropBootpShort));
        // Exactly 236 is enough.
        let mut f = frame(false, 17, 67);
        f.truncate(14 + 20 + 8 + 236);
        f[16..18].copy_from_slice(&(20 + 8 + 236u16).to_be_bytes());
        f[38..40].copy_from_slice(&(8 + 236u16).to_be_bytes());
        assert_eq!(run(&f), request(14));
        // Short UDP length, frame padded: the payload counts, not the frame.
        let mut f = frame(false, 17, 67);
        f[16..18].copy_from_slice(&(20 + 8 + 100u16).to_be_bytes());
        f[38..40].copy_from_slice(&(8 + 100u16).to_be_bytes());
        assert_eq!(run(&f), drop(Slot::DropBootpShort));
    }

    #[test]
    fn not_request_and_spoof() {
        for (i, v) in [(0, 2u8), (1, 6), (2, 8)] {
            let mut f = frame(false, 17, 67);
            f[42 + i] = v;
            assert_eq!(run(&f), drop(Slot::DropNotRequest), "byte {i} = {v}");
        }
        let mut f = frame(false, 17, 67);
        f[42 + 28 + 5] ^= 1;
        assert_eq!(run(&f), drop(Slot::DropChaddrSpoof));
        let mut f = frame(false, 17, 67);
        f[6] ^= 0x80;
        assert_eq!(run(&f), drop(Slot::DropChaddrSpoof));
    }
}
