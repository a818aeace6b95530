//! Building OFFER, ACK, INFORM-ACK and NAK replies (RFC 2131 §4.3, Table 3;
//! design.md §Modes, §Protocol).
//!
//! Addressing follows RFC 2131 §4.1: ciaddr set → unicast to ciaddr at the
//! client MAC; broadcast flag set or NAK → 255.255.255.255 at
//! ff:ff:ff:ff:ff:ff; else unicast to yiaddr at chaddr.
//!
//! A reply is a fresh owned [`Message`]; from the request, a view of the
//! received bytes, it copies what RFC 2131 Table 3 carries over (htype,
//! hlen, xid, flags, giaddr, chaddr, ciaddr) and reads the parameter
//! request list, the maximum message size (RFC 2132 §9.10) and the relay
//! agent information it echoes (RFC 3046 §2.2). Nothing borrows the
//! request once the reply is encoded.

use std::net::Ipv4Addr;

use super::{Effect, Engine, Ignored, Mode, Reply};
use crate::wire::Mac;
use crate::wire::dhcp::{BOOTREPLY, Message};
use crate::wire::options::{
    self, ClasslessRoute, MessageType, OptionList, encode_classless_routes,
};
use crate::wire::view::MessageView;

impl Engine {
    /// Mask, router and classless routes of a mode; `ip` picks the /30.
    fn mode_options(&self, o: &mut OptionList, mode: Mode, ip: Ipv4Addr) {
        let server = self.cfg.server_ip;
        let (mask, gw, routes) = match mode {
            Mode::Isolated => (
                Ipv4Addr::BROADCAST,
                server,
                vec![
                    // RFC 3442 local-subnet route to the server, then the default.
                    ClasslessRoute {
                        dest: server,
                        prefix: 32,
                        router: Ipv4Addr::UNSPECIFIED,
                    },
                    ClasslessRoute {
                        dest: Ipv4Addr::UNSPECIFIED,
                        prefix: 0,
                        router: server,
                    },
                ],
            ),
            Mode::Compat => {
                let gw = Ipv4Addr::from((u32::from(ip) & !3) + 1);
                (
                    Ipv4Addr::new(255, 255, 255, 252),
                    gw,
                    vec![ClasslessRoute {
                        dest: Ipv4Addr::UNSPECIFIED,
                        prefix: 0,
                        router: gw,
                    }],
                )
            }
            Mode::Playground => {
                let (mask, gw) = self
                    .pool
                    .playground()
                    .map(|p| (p.block.mask_addr(), p.gateway))
                    .unwrap_or((Ipv4Addr::BROADCAST, server));
                (
                    mask,
                    gw,
                    vec![ClasslessRoute {
                        dest: Ipv4Addr::UNSPECIFIED,
                        prefix: 0,
                        router: gw,
                    }],
                )
            }
        };
        o.set_ip(options::SUBNET_MASK, mask);
        o.set_ip(options::ROUTER, gw);
        if !self.cfg.dns.is_empty() {
            o.set(
                options::DNS,
                self.cfg
                    .dns
                    .iter()
                    .flat_map(std::net::Ipv4Addr::octets)
                    .collect(),
            );
        }
        let routes = encode_classless_routes(&routes);
        o.set(options::CLASSLESS_ROUTES, routes.clone());
        o.set(options::MS_CLASSLESS_ROUTES, routes);
        for c in &self.cfg.custom_options {
            o.set(c.code, c.value.clone());
        }
    }

    fn base_reply(&self, req: &MessageView<'_>, kind: MessageType) -> Message {
        let mut m = Message {
            op: BOOTREPLY,
            htype: req.htype(),
            hlen: req.hlen(),
            xid: req.xid(),
            flags: req.flags(),
            giaddr: req.giaddr(),
            chaddr: *req.chaddr(),
            ..Message::default()
        };
        m.options.set(options::MESSAGE_TYPE, vec![kind as u8]);
        m.options.set_ip(options::SERVER_ID, self.cfg.server_ip);
        m
    }

    /// OFFER, ACK or (with `yiaddr` unspecified) INFORM-ACK for `req`.
    pub(super) fn reply(
        &mut self,
        req: &MessageView<'_>,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        mode: Mode,
    ) -> Vec<Effect> {
        let lt = self.cfg.lease_time;
        self.reply_for(req, kind, yiaddr, mode, lt)
    }

    /// [`Self::reply`] for a lease of `lt` seconds (T1 and T2 follow it).
    pub(super) fn reply_for(
        &mut self,
        req: &MessageView<'_>,
        kind: MessageType,
        yiaddr: Ipv4Addr,
        mode: Mode,
        lt: u32,
    ) -> Vec<Effect> {
        let mut m = self.base_reply(req, kind);
        m.yiaddr = yiaddr;
        m.ciaddr = req.ciaddr();
        let at = if yiaddr.is_unspecified() {
            req.ciaddr()
        } else {
            yiaddr
        };
        let lease = (!yiaddr.is_unspecified()).then_some(lt);
        self.reply_options(&mut m.options, mode, at, lease);
        self.finish(req, m, kind, yiaddr)
    }

    /// The options after 53 and 54 of an OFFER, ACK or INFORM-ACK (`lease`
    /// `None`: no lease times), before the client's order is applied.
    fn reply_options(&self, o: &mut OptionList, mode: Mode, at: Ipv4Addr, lease: Option<u32>) {
        if let Some(lt) = lease {
            o.set_u32(options::LEASE_TIME, lt);
            o.set_u32(options::RENEWAL_TIME, lt / 2);
            o.set_u32(options::REBINDING_TIME, (u64::from(lt) * 7 / 8) as u32);
        }
        self.mode_options(o, mode, at);
    }

    /// The options of an isolated client's OFFER in the engine's own order,
    /// each encoded as code, length, value: the template the XDP OFFER
    /// responder orders and copies (design.md §Offer responder). The same
    /// code as [`Self::reply`] renders them, so the two cannot drift.
    pub fn offer_template(&self) -> Vec<(u8, Vec<u8>)> {
        let mut o = OptionList::default();
        o.set(options::MESSAGE_TYPE, vec![MessageType::Offer as u8]);
        o.set_ip(options::SERVER_ID, self.cfg.server_ip);
        // Isolated options do not depend on the address; any will do.
        let lease = Some(self.cfg.lease_time);
        self.reply_options(&mut o, Mode::Isolated, self.cfg.server_ip, lease);
        o.iter()
            .map(|(code, v)| {
                let mut rec = vec![code];
                // An option over 255 bytes would be split (RFC 3396); the
                // template refuses it, so its length byte is never read.
                rec.push(v.len().min(255) as u8);
                rec.extend_from_slice(v);
                (code, rec)
            })
            .collect()
    }

    /// NAK: only 53, 54 and a message (RFC 2131 Table 3), always broadcast.
    pub(super) fn nak_reply(&mut self, req: &MessageView<'_>, why: &str) -> Vec<Effect> {
        let mut m = self.base_reply(req, MessageType::Nak);
        m.options.set(options::MESSAGE, why.as_bytes().to_vec());
        self.finish(req, m, MessageType::Nak, Ipv4Addr::UNSPECIFIED)
    }

    fn finish(
        &mut self,
        req: &MessageView<'_>,
        mut m: Message,
        kind: MessageType,
        yiaddr: Ipv4Addr,
    ) -> Vec<Effect> {
        let prl = req
            .options()
            .get(options::PARAM_REQUEST_LIST)
            .unwrap_or_default();
        let mut keep = m.options.order_for(&prl);
        // RFC 3046 §2.2: option 82 is echoed unchanged and is never left out.
        if let Some(relay) = req
            .options()
            .get(options::RELAY_AGENT_INFO)
            .filter(|_| kind != MessageType::Nak)
        {
            m.options
                .insert(keep, options::RELAY_AGENT_INFO, relay.into_owned());
            keep += 1;
        }
        let max = req
            .options()
            .get_u16(options::MAX_MESSAGE_SIZE)
            .map(usize::from);
        let Ok(payload) = m.emit(max, keep) else {
            return self.ignore(Ignored::Encode);
        };
        let client = req.client_mac();
        let (dst_mac, dst_ip) = if kind == MessageType::Nak
            || (req.ciaddr().is_unspecified() && req.broadcast_flag())
        {
            (Mac::BROADCAST, Ipv4Addr::BROADCAST)
        } else if !req.ciaddr().is_unspecified() {
            (client, req.ciaddr())
        } else {
            (client, yiaddr)
        };
        vec![Effect::Send(Reply {
            payload,
            dst_mac,
            dst_ip,
            kind,
        })]
    }
}
