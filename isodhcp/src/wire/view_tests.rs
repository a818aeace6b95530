//! The view against the decoder it replaced: `legacy` below is the owned
//! parser isodhcp used before [`MessageView`] (one `Vec` per option), kept
//! verbatim as the reference. On a corpus of real client frames, crafted
//! overload / split / malformed messages and seeded mutations of both, the
//! view must accept and reject exactly the same inputs, with the same
//! error, the same fixed fields and, for every code, the same option value.

use std::borrow::Cow;

use super::WireError;
use super::dhcp::{FIXED_LEN, MAGIC_COOKIE, Message};
use super::frame;
use super::options::{self, OptionList};
use super::view::{INDEX_CAP, MessageView};

mod legacy {
    use super::*;
    use std::net::Ipv4Addr;

    fn ip_at(b: &[u8], at: usize) -> Ipv4Addr {
        Ipv4Addr::new(b[at], b[at + 1], b[at + 2], b[at + 3])
    }

    fn parse_area(mut area: &[u8], out: &mut OptionList) -> Result<Option<u8>, WireError> {
        let mut overload = None;
        while let Some((&code, rest)) = area.split_first() {
            match code {
                options::PAD => area = rest,
                options::END => break,
                _ => {
                    let (&len, rest) = rest.split_first().ok_or(WireError::OptionOverrun(code))?;
                    let len = usize::from(len);
                    if rest.len() < len {
                        return Err(WireError::OptionOverrun(code));
                    }
                    let value = &rest[..len];
                    if code == options::OVERLOAD {
                        overload = value.first().copied();
                    } else {
                        out.append(code, value);
                    }
                    area = &rest[len..];
                }
            }
        }
        Ok(overload)
    }

    pub fn parse(b: &[u8]) -> Result<Message, WireError> {
        if b.len() < FIXED_LEN + 4 {
            return Err(WireError::Truncated("BOOTP fixed part"));
        }
        if b[FIXED_LEN..FIXED_LEN + 4] != MAGIC_COOKIE {
            return Err(WireError::NoMagicCookie);
        }
        let mut m = Message {
            op: b[0],
            htype: b[1],
            hlen: b[2],
            hops: b[3],
            xid: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            secs: u16::from_be_bytes([b[8], b[9]]),
            flags: u16::from_be_bytes([b[10], b[11]]),
            ciaddr: ip_at(b, 12),
            yiaddr: ip_at(b, 16),
            siaddr: ip_at(b, 20),
            giaddr: ip_at(b, 24),
            ..Message::default()
        };
        m.chaddr.copy_from_slice(&b[28..44]);
        m.sname.copy_from_slice(&b[44..108]);
        m.file.copy_from_slice(&b[108..236]);
        let overload = parse_area(&b[FIXED_LEN + 4..], &mut m.options)?;
        if matches!(overload, Some(1 | 3)) {
            parse_area(&b[108..236], &mut m.options)?;
        }
        if matches!(overload, Some(2 | 3)) {
            parse_area(&b[44..108], &mut m.options)?;
        }
        Ok(m)
    }
}

const FRAMES: [&[u8]; 3] = [
    include_bytes!("../../testdata/dhclient-discover.bin"),
    include_bytes!("../../testdata/udhcpc-discover.bin"),
    include_bytes!("../../testdata/dhcpcd-discover.bin"),
];

/// A BOOTREQUEST with `opts` after the cookie, `file` and `sname` prefixes.
fn bootp(opts: &[u8], file: &[u8], sname: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; FIXED_LEN];
    b[0] = 1;
    b[1] = 1;
    b[2] = 6;
    b[4..8].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    b[10] = 0x80;
    b[12..16].copy_from_slice(&[198, 18, 0, 7]);
    b[28..34].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    b[108..108 + file.len()].copy_from_slice(file);
    b[44..44 + sname.len()].copy_from_slice(sname);
    b.extend_from_slice(&MAGIC_COOKIE);
    b.extend_from_slice(opts);
    b
}

/// Options 1..=n, each two bytes long, then END.
fn many_codes(n: u8) -> Vec<u8> {
    let mut o: Vec<u8> = (1..=n)
        .filter(|&c| c != options::OVERLOAD)
        .flat_map(|c| [c, 2, c, !c])
        .collect();
    o.push(options::END);
    o
}

fn corpus() -> Vec<Vec<u8>> {
    let mut c: Vec<Vec<u8>> = FRAMES
        .iter()
        .map(|f| frame::parse(f).unwrap().payload.to_vec())
        .collect();
    let hostname_ab = [12, 2, b'a', b'b', 255];
    let hostname_cd = [12, 2, b'c', b'd', 255];
    c.extend([
        bootp(&[53, 1, 1, 55, 3, 1, 3, 6, 255], &[], &[]),
        // Overload 3: file is read before sname, the hostname is joined.
        bootp(&[53, 1, 3, 52, 1, 3, 255], &hostname_ab, &hostname_cd),
        // Overload 1 and 2 alone, and values naming no area.
        bootp(&[53, 1, 3, 52, 1, 1, 255], &hostname_ab, &hostname_cd),
        bootp(&[53, 1, 3, 52, 1, 2, 255], &hostname_ab, &hostname_cd),
        bootp(&[53, 1, 3, 52, 1, 7, 255], &hostname_ab, &hostname_cd),
        // The last 52 counts; an empty one cancels; 52 in file is ignored.
        bootp(&[52, 1, 3, 52, 1, 2, 255], &hostname_ab, &hostname_cd),
        bootp(&[52, 1, 3, 52, 0, 53, 1, 1], &hostname_ab, &hostname_cd),
        bootp(&[52, 1, 1], &[52, 1, 2, 12, 1, b'x'], &hostname_cd),
        // Split options (RFC 3396) interleaved, an empty first instance,
        // PAD runs, bytes after END, no END at all.
        bootp(
            &[
                12, 1, b'a', 0, 0, 60, 1, b'v', 12, 2, b'b', b'c', 12, 0, 60, 1, b'w', 255, 9, 9,
            ],
            &[],
            &[],
        ),
        bootp(&[61, 0, 53, 1, 1, 61, 3, 1, 2, 3], &[], &[]),
        bootp(&[0, 0, 0, 53, 1, 8, 43, 0], &[], &[]),
        bootp(&[], &[], &[]),
        // More distinct codes than the index holds; split ones past the cap.
        bootp(&many_codes(INDEX_CAP as u8 + 20), &[], &[]),
        bootp(&many_codes(254), &[], &[]),
        {
            let mut o = many_codes(INDEX_CAP as u8 + 10);
            o.pop();
            o.extend_from_slice(&[INDEX_CAP as u8 + 5, 1, 0xaa, 255]);
            bootp(&o, &[], &[])
        },
        // Malformed: length byte missing, value short, overrun in file or sname.
        bootp(&[53, 1, 1, 12], &[], &[]),
        bootp(&[53, 5, 1], &[], &[]),
        bootp(&[52, 1, 1], &[12, 200, b'a'], &[]),
        bootp(
            &[52, 1, 3],
            &hostname_ab,
            &[[0u8; 63].as_slice(), &[60]].concat(),
        ),
        bootp(&[52, 1, 2], &[12, 200], &hostname_cd),
        vec![0u8; 100],
        bootp(&[], &[], &[])[..FIXED_LEN + 3].to_vec(),
        {
            let mut b = bootp(&[53, 1, 1, 255], &[], &[]);
            b[FIXED_LEN] = 0;
            b
        },
    ]);
    c
}

/// Small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Seeded mutations of `b`: byte flips biased towards the option areas,
/// truncations and overload values.
fn mutations(b: &[u8], seed: u64, n: usize) -> Vec<Vec<u8>> {
    let mut r = Rng(seed | 1);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let mut m = b.to_vec();
        for _ in 0..1 + r.below(4) {
            let at = match r.below(3) {
                0 => 44 + r.below(192),
                _ => FIXED_LEN + r.below(m.len().saturating_sub(FIXED_LEN).max(1)),
            };
            if let Some(x) = m.get_mut(at) {
                *x = match r.below(4) {
                    0 => options::OVERLOAD,
                    1 => r.below(4) as u8,
                    _ => r.next() as u8,
                };
            }
        }
        if r.below(5) == 0 {
            m.truncate(r.below(m.len() + 1));
        }
        out.push(m);
    }
    out
}

/// The view and the legacy parser agree on `b`, code by code.
fn assert_same(b: &[u8]) {
    let want = legacy::parse(b);
    let view = MessageView::parse(b);
    let (want, view) = match (want, view) {
        (Err(w), Err(v)) => return assert_eq!(w, v, "{b:?}"),
        (Ok(w), Ok(v)) => (w, v),
        (w, v) => panic!("legacy {w:?} but view {v:?} for {b:?}"),
    };
    assert_eq!(view.to_message(), want, "owned conversion of {b:?}");
    assert_eq!(Message::parse(b).as_ref(), Ok(&want));
    let o = view.options();
    for code in 0..=255u8 {
        let got = o.get(code);
        assert_eq!(
            got.as_deref(),
            want.options.get(code),
            "option {code} of {b:?}"
        );
        assert_eq!(o.contains(code), got.is_some());
    }
    assert_eq!(o.len(), want.options.len());
    assert_eq!(o.message_type(), want.options.message_type());
    assert_eq!(o.get_u16(57), want.options.get_u16(57));
    assert_eq!(o.get_ip(54), want.options.get_ip(54));
    assert_eq!(
        (view.client_mac(), view.broadcast_flag()),
        (want.client_mac(), want.broadcast_flag())
    );
    assert_eq!(view.as_bytes(), b);
}

#[test]
fn view_equals_legacy_parser_on_the_corpus() {
    let corpus = corpus();
    let ok = corpus
        .iter()
        .filter(|b| MessageView::parse(b).is_ok())
        .count();
    assert!(ok >= 15, "the corpus must mostly parse, {ok} did");
    for b in &corpus {
        assert_same(b);
    }
}

#[test]
fn view_equals_legacy_parser_on_mutations() {
    let mut parsed = 0;
    for (i, b) in corpus().iter().enumerate() {
        for m in mutations(b, 0x5eed + i as u64, 400) {
            parsed += usize::from(MessageView::parse(&m).is_ok());
            assert_same(&m);
        }
    }
    assert!(
        parsed > 1000,
        "mutations must reach the option logic: {parsed}"
    );
}

#[test]
fn single_instances_are_borrowed_split_ones_joined() {
    let b = bootp(&[12, 1, b'a', 53, 1, 3, 12, 2, b'b', b'c', 255], &[], &[]);
    let v = MessageView::parse(&b).unwrap();
    let o = v.options();
    assert!(matches!(o.get(53), Some(Cow::Borrowed([3]))));
    assert!(matches!(o.get(12), Some(Cow::Owned(ref h)) if h == b"abc"));
    let order: Vec<u8> = o.iter().map(|(c, _)| c).collect();
    assert_eq!(order, [12, 53]);
    for f in FRAMES {
        let v = MessageView::parse(frame::parse(f).unwrap().payload).unwrap();
        assert!(
            v.options()
                .iter()
                .all(|(_, v)| matches!(v, Cow::Borrowed(_)))
        );
    }
}

#[test]
fn fixed_fields_and_overload_read_in_place() {
    let b = bootp(
        &[53, 1, 3, 52, 1, 3, 255],
        &[12, 1, b'f', 255],
        &[15, 1, b's', 255],
    );
    let v = MessageView::parse(&b).unwrap();
    assert_eq!((v.op(), v.htype(), v.hlen(), v.hops()), (1, 1, 6, 0));
    assert_eq!((v.xid(), v.secs(), v.flags()), (0xdead_beef, 0, 0x8000));
    assert_eq!(v.ciaddr(), std::net::Ipv4Addr::new(198, 18, 0, 7));
    assert!(
        v.yiaddr().is_unspecified() && v.siaddr().is_unspecified() && v.giaddr().is_unspecified()
    );
    assert_eq!(&v.chaddr()[..6], &[2, 0, 0, 0, 0, 1]);
    assert_eq!(&v.file()[..4], &[12, 1, b'f', 255]);
    assert_eq!(&v.sname()[..4], &[15, 1, b's', 255]);
    assert_eq!(v.options().overload(), Some(3));
    assert_eq!(v.options().get(52), None, "52 is never an option");
    assert_eq!(v.options().get(15).as_deref(), Some(&b"s"[..]));
}
