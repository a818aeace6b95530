//! Building OFFER, ACK and NAK replies (RFC 2131 §4.3.1, Table 3; SPEC §5).
//!
//! Addressing follows RFC 2131 §4.1: ciaddr set → unicast to ciaddr at the
//! client MAC; broadcast flag set or NAK → 255.255.255.255 at
//! ff:ff:ff:ff:ff:ff; else unicast to yiaddr at chaddr.

use std::net::Ipv4Addr;

use super::{Drop, Effect, Engine, Reply};
use crate::wire::dhcp::{BOOTREPLY, Message};
use crate::wire::options::{self, ClasslessRoute, MessageType, OptionList, encode_classless_routes};
use crate::wire::Mac;

impl Engine {
    /// Options for an OFFER/ACK to an isolated (/32) client (SPEC §4.1).
    fn lease_options(&self, o: &mut OptionList) {
        let lt = self.cfg.lease_time;
        let server = self.cfg.server_ip;
        o.set_u32(options::LEASE_TIME, lt);
        o.set_u32(options::RENEWAL_TIME, lt / 2);
        o.set_u32(options::REBINDING_TIME, (u64::from(lt) * 7 / 8) as u32);
        o.set_ip(options::SUBNET_MASK, Ipv4Addr::BROADCAST);
        o.set_ip(options::ROUTER, server);
        if !self.cfg.dns.is_empty() {
            o.set(options::DNS, self.cfg.dns.iter().flat_map(|d| d.octets()).collect());
        }
        let routes = encode_classless_routes(&[
            ClasslessRoute { dest: server, prefix: 32, router: Ipv4Addr::UNSPECIFIED },
            ClasslessRoute { dest: Ipv4Addr::UNSPECIFIED, prefix: 0, router: server },
        ]);
        o.set(options::CLASSLESS_ROUTES, routes.clone());
        o.set(options::MS_CLASSLESS_ROUTES, routes);
        for c in &self.cfg.custom_options {
            o.set(c.code, c.value.clone());
        }
    }

    /// Builds the reply effect for `req`. `yiaddr` is unused for NAK.
    pub(super) fn reply(&mut self, req: &Message, kind: MessageType, yiaddr: Ipv4Addr, nak_text: Option<&str>) -> Vec<Effect> {
        let mut m = Message {
            op: BOOTREPLY,
            htype: req.htype,
            hlen: req.hlen,
            xid: req.xid,
            flags: req.flags,
            giaddr: req.giaddr,
            chaddr: req.chaddr,
            ..Message::default()
        };
        m.options.set(options::MESSAGE_TYPE, vec![kind as u8]);
        m.options.set_ip(options::SERVER_ID, self.cfg.server_ip);
        if kind == MessageType::Nak {
            // RFC 2131 Table 3: a NAK carries only 53, 54 and a message.
            if let Some(t) = nak_text {
                m.options.set(options::MESSAGE, t.as_bytes().to_vec());
            }
        } else {
            m.yiaddr = yiaddr;
            m.ciaddr = req.ciaddr;
            self.lease_options(&mut m.options);
        }
        let prl = req.options.get(options::PARAM_REQUEST_LIST).unwrap_or_default();
        let keep = m.options.order_for(prl);
        let max = req.options.get_u16(options::MAX_MESSAGE_SIZE).map(usize::from);
        let payload = match m.emit(max, keep) {
            Ok(p) => p,
            Err(_) => return self.drop_msg(Drop::Encode),
        };
        let client = req.client_mac();
        let (dst_mac, dst_ip) = if !req.ciaddr.is_unspecified() && kind != MessageType::Nak {
            (client, req.ciaddr)
        } else if req.broadcast_flag() || kind == MessageType::Nak {
            (Mac::BROADCAST, Ipv4Addr::BROADCAST)
        } else {
            (client, yiaddr)
        };
        vec![Effect::Send(Reply { payload, dst_mac, dst_ip, kind })]
    }
}
