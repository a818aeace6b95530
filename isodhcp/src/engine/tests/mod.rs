//! Scripted timelines for the lease engine: each test feeds messages at given
//! times and checks the effects, like a client and the kernel would see them.
//! One file per area: RFC 2131 protocol rules, and the address modes (design.md §Modes).

mod hostile;
mod modes;
mod properties;
mod protocol;
pub(crate) mod stripe;

use super::*;
use crate::wire::dhcp::{BOOTREQUEST, Message};
use crate::wire::options::*;

pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const T0: Millis = 1_800_000_000_000;

pub fn ip(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 0, n)
}

pub fn cfg() -> EngineConfig {
    EngineConfig {
        dns: vec![Ipv4Addr::new(198, 18, 0, 53)],
        ..EngineConfig::new(
            SERVER,
            Mac([2, 0, 0, 0, 0, 1]),
            "198.18.0.0/24".parse().unwrap(),
        )
    }
}

pub fn engine(c: EngineConfig) -> Engine {
    let mut e = Engine::new(c, &[]).unwrap();
    e.start(T0, vec![], vec![]);
    e
}

pub fn mac(n: u8) -> Mac {
    Mac([2, 0, 0, 0, 1, n])
}

pub fn msg(m: Mac, t: MessageType) -> Message {
    let mut msg = Message {
        op: BOOTREQUEST,
        xid: 42,
        ..Message::default()
    };
    msg.chaddr[..6].copy_from_slice(&m.0);
    msg.options.set(MESSAGE_TYPE, vec![t as u8]);
    msg
}

pub fn discover(m: Mac) -> Message {
    let mut d = msg(m, MessageType::Discover);
    d.options.set(PARAM_REQUEST_LIST, vec![1, 3, 6, 121]);
    d
}

pub fn select(m: Mac, ip: Ipv4Addr, server: Ipv4Addr) -> Message {
    let mut r = msg(m, MessageType::Request);
    r.options.set_ip(SERVER_ID, server);
    r.options.set_ip(REQUESTED_IP, ip);
    r
}

pub fn reboot(m: Mac, ip: Ipv4Addr) -> Message {
    let mut r = msg(m, MessageType::Request);
    r.options.set_ip(REQUESTED_IP, ip);
    r
}

pub fn renew(m: Mac, ip: Ipv4Addr) -> Message {
    let mut r = msg(m, MessageType::Request);
    r.ciaddr = ip;
    r
}

/// The bytes a client sends for `m`: the engine reads requests as they
/// arrive, through a [`MessageView`] of the payload.
pub fn wire(m: &Message) -> Vec<u8> {
    m.emit(None, 0).unwrap()
}

pub fn view(payload: &[u8]) -> MessageView<'_> {
    MessageView::parse(payload).unwrap()
}

pub fn run(e: &mut Engine, now: Millis, m: &Message) -> Vec<Effect> {
    e.handle(
        now,
        Input::Dhcp {
            msg: &view(&wire(m)),
            in_use: &[],
        },
    )
}

pub fn replies(fx: &[Effect]) -> Vec<(MessageType, Message, &Reply)> {
    fx.iter()
        .filter_map(|f| match f {
            Effect::Send(r) => Some((r.kind, Message::parse(&r.payload).unwrap(), r)),
            _ => None,
        })
        .collect()
}

pub fn kind(fx: &[Effect]) -> MessageType {
    let r = replies(fx);
    assert_eq!(r.len(), 1, "exactly one reply: {fx:?}");
    r[0].0
}

pub fn bound(fx: &[Effect]) -> Vec<&Binding> {
    fx.iter()
        .filter_map(|f| {
            if let Effect::Bind(b) = f {
                Some(b)
            } else {
                None
            }
        })
        .collect()
}

pub fn unbound(fx: &[Effect]) -> Vec<&Binding> {
    fx.iter()
        .filter_map(|f| {
            if let Effect::Unbind(b) = f {
                Some(b)
            } else {
                None
            }
        })
        .collect()
}

pub fn offered(e: &mut Engine, now: Millis, m: Mac) -> Ipv4Addr {
    let fx = run(e, now, &discover(m));
    let r = replies(&fx);
    assert_eq!(r.len(), 1, "{fx:?}");
    assert_eq!(r[0].0, MessageType::Offer);
    r[0].1.yiaddr
}

pub fn lease(e: &mut Engine, now: Millis, m: Mac) -> Ipv4Addr {
    let ip = offered(e, now, m);
    let fx = run(e, now, &select(m, ip, SERVER));
    assert_eq!(kind(&fx), MessageType::Ack);
    ip
}
