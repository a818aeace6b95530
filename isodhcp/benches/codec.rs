//! Codec benchmark: why isodhcp carries its own DHCP codec.
//!
//! Decodes the DISCOVERs captured from dhclient, dhcpcd and udhcpc and
//! encodes an ACK, with `isodhcp::wire` and with `dhcproto` (the common
//! Rust DHCP crate), and prints ns per operation. The daemon decodes with
//! the checked view (`MessageView`); the lines after it show the view with
//! the lookups the engine makes, and the owned decode (view plus a copy of
//! every option) that test clients use. Run with
//! `cargo bench -p isodhcp --bench codec`.
//! Figures are wall-clock on a shared machine: compare the ratio, not the
//! absolute numbers.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use dhcproto::{Decodable, Decoder, Encodable, Encoder};
use isodhcp::wire::dhcp::Message;
use isodhcp::wire::frame;
use isodhcp::wire::options;
use isodhcp::wire::view::MessageView;

const FRAMES: [&[u8]; 3] = [
    include_bytes!("../testdata/dhclient-discover.bin"),
    include_bytes!("../testdata/dhcpcd-discover.bin"),
    include_bytes!("../testdata/udhcpc-discover.bin"),
];
const ROUNDS: u32 = 200_000;

fn time(label: &str, mut f: impl FnMut()) -> f64 {
    for _ in 0..ROUNDS / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..ROUNDS {
        f();
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(ROUNDS);
    println!("{label:<44} {ns:>8.1} ns/op");
    ns
}

fn ack() -> Message {
    let mut m = Message {
        xid: 0x1234,
        yiaddr: Ipv4Addr::new(198, 18, 0, 254),
        ..Message::default()
    };
    m.chaddr[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
    m.options.set(options::MESSAGE_TYPE, vec![5]);
    m.options
        .set_ip(options::SERVER_ID, Ipv4Addr::new(198, 18, 0, 1));
    m.options.set_u32(options::LEASE_TIME, 3600);
    m.options.set_ip(options::SUBNET_MASK, Ipv4Addr::BROADCAST);
    m.options
        .set_ip(options::ROUTER, Ipv4Addr::new(198, 18, 0, 1));
    m.options.set(
        options::CLASSLESS_ROUTES,
        vec![32, 198, 18, 0, 1, 0, 0, 0, 0, 0, 198, 18, 0, 1],
    );
    m
}

fn main() {
    let payloads: Vec<&[u8]> = FRAMES
        .iter()
        .map(|f| frame::parse(f).expect("captured frame").payload)
        .collect();
    println!("DHCP codec, {ROUNDS} rounds per line");
    let ours = time("isodhcp::wire   decode 3 real DISCOVERs", || {
        for p in &payloads {
            black_box(MessageView::parse(black_box(p)).is_ok());
        }
    });
    time("isodhcp::wire   decode 3 + engine's 7 lookups", || {
        for p in &payloads {
            let Ok(v) = MessageView::parse(black_box(p)) else {
                continue;
            };
            let o = v.options();
            black_box((o.message_type(), o.get_ip(options::SERVER_ID)));
            black_box((o.get_ip(options::REQUESTED_IP), o.get(options::HOSTNAME)));
            black_box((
                o.get(options::VENDOR_CLASS),
                o.get(options::PARAM_REQUEST_LIST),
            ));
            black_box(o.get_u16(options::MAX_MESSAGE_SIZE));
        }
    });
    time("isodhcp::wire   decode 3, owned (view + copy)", || {
        for p in &payloads {
            black_box(Message::parse(black_box(p)).is_ok());
        }
    });
    let theirs = time("dhcproto 0.15   decode 3 real DISCOVERs", || {
        for p in &payloads {
            black_box(dhcproto::v4::Message::decode(&mut Decoder::new(black_box(p))).is_ok());
        }
    });
    let m = ack();
    let ours_enc = time("isodhcp::wire   encode ACK (PRL order, pad)", || {
        let mut o = m.clone();
        o.options.order_for(&[1, 3, 6, 121]);
        black_box(o.emit(Some(576), 2).map(|v| v.len()).ok());
    });
    let dp = dhcproto::v4::Message::decode(&mut Decoder::new(&m.emit(None, 0).expect("encodes")))
        .expect("decodes");
    let theirs_enc = time("dhcproto 0.15   encode the same ACK", || {
        let mut buf = Vec::with_capacity(400);
        black_box(dp.encode(&mut Encoder::new(&mut buf)).is_ok());
        black_box(buf.len());
    });
    let f = &FRAMES[0];
    time("isodhcp::wire   frame parse (Eth/IPv4/UDP)", || {
        black_box(frame::parse(black_box(f)).is_ok());
    });
    println!(
        "decode: isodhcp {:.2}x dhcproto's speed; encode: {:.2}x",
        theirs / ours,
        theirs_enc / ours_enc
    );
}
