//! Host tests of the scan and the template (the kernel side: xdp_offer).

extern crate std;
use super::host::VecFrame;
use super::*;
use std::vec;
use std::vec::Vec;

/// An untagged request frame with BOOTP fixed part, cookie and `opts`.
fn frame(opts: &[u8]) -> Vec<u8> {
    let mut f = vec![0u8; BOOTP_AT + OPTIONS_AT];
    f[14] = 0x45;
    let ulen = (UDP_HLEN + OPTIONS_AT + opts.len()) as u16;
    f[38..40].copy_from_slice(&ulen.to_be_bytes());
    f[BOOTP_AT + 236..BOOTP_AT + 240].copy_from_slice(&MAGIC_COOKIE);
    f.extend_from_slice(opts);
    f
}

fn scanned(opts: &[u8]) -> (bool, ScanState) {
    let mut f = frame(opts);
    let req = Request {
        mac: 1,
        l3: 14,
        l4: 34,
    };
    let mut w = Work::default();
    let len = f.len();
    let ok = scan(&mut Plain, &req, &mut VecFrame(&mut f), len, &mut w);
    (ok, w.scan)
}

#[test]
fn scan_reads_what_the_responder_needs() {
    let (ok, s) = scanned(&[
        53, 1, 3, 0, 0, 50, 4, 198, 18, 0, 9, 54, 4, 198, 18, 0, 1, 55, 3, 1, 3, 6, 57, 2, 5, 220,
        255,
    ]);
    assert!(ok);
    assert_eq!(s.msg_type, REQUEST);
    assert_eq!(s.requested, 0xc612_0009);
    assert_eq!(s.server_id, 0xc612_0001);
    assert_eq!(&s.prl[..usize::from(s.prl_len)], &[1, 3, 6]);
    assert_eq!(s.max_size, 1500);
}

#[test]
fn scan_refuses_what_it_cannot_vouch_for() {
    // END as the frame's very last byte is fine.
    assert!(scanned(&[53, 1, 1, 255]).0);
    // No END, a value running past the payload, a repeated 53, option
    // 82, option 52, an option 55 longer than PRL_MAX.
    assert!(!scanned(&[53, 1, 1]).0);
    assert!(!scanned(&[53, 1, 1, 12, 9, 1, 255]).0);
    assert!(!scanned(&[53, 1, 1, 53, 1, 3, 255]).0);
    assert!(!scanned(&[53, 1, 1, 82, 2, 1, 0, 255]).0);
    assert!(!scanned(&[53, 1, 1, 52, 1, 1, 255]).0);
    let mut long = vec![53, 1, 1, 55, 65];
    long.extend((0..65).map(|i| i as u8 + 1));
    long.push(255);
    assert!(!scanned(&long).0);
    // 53 of the wrong length.
    assert!(!scanned(&[53, 2, 1, 1, 255]).0);
}

#[test]
fn stripe_index_is_in_range_and_spreads() {
    assert_eq!(stripe_index(7, 1, 0), 0);
    let mut hits = [0u32; 16];
    for mac in 0..16_000u64 {
        let i = stripe_index(0xabc, 0x0200_0000_0000 | mac, 16);
        hits[i as usize] += 1;
    }
    // Sequential MACs spread evenly: every slot within 20 % of 1000.
    assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
    // Another key, another assignment: about 1 in 256 MACs keep their slot.
    let same = (0..1000u64)
        .filter(|m| stripe_index(1, *m, 256) == stripe_index(2, *m, 256))
        .count();
    assert!(same < 20, "{same}");
}

#[test]
fn template_limits_are_enforced() {
    let mut c = OfferCfg::default();
    let big = [0u8; 256];
    assert_eq!(
        c.set_template([(42u8, &big[..])]),
        Err(TemplateError::OptionTooLong(42))
    );
    let rec = [1u8; 200];
    assert_eq!(
        c.set_template([(1u8, &rec[..]), (2, &rec[..]), (3, &rec[..])]),
        Err(TemplateError::TooLong)
    );
    assert_eq!(c.set_template([(53u8, &[53u8, 1, 2][..])]), Ok(()));
    assert_eq!(c.rec_of[53], 0);
    assert_eq!(c.rec_of[54], NO_RECORD);
}
