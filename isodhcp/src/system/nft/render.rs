//! Model → nftables JSON document (the `nftables` crate's typed schema),
//! for `nft -j -f -`.
//!
//! Guarantees:
//! - Every nft command isodhcp sends is built here from typed values; no
//!   nft syntax is formatted by hand anywhere in the daemon.
//! - The table document replaces the private table in one transaction:
//!   add (create if missing), delete, then define it again.
//! - Rendering is pure and deterministic: the same model gives the same
//!   JSON, byte for byte.
//!
//! One limit of the schema: rule handles are `u32` there, the kernel's are
//! 64-bit. Handles grow by one per rule added to a table, so a handle past
//! `u32::MAX` is not reachable in practice; such a rule is left alone (the
//! next table rebuild removes it) rather than rendered wrongly.

use std::borrow::Cow;

use nftables::batch::Batch;
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression, Payload, PayloadField, Prefix};
use nftables::schema::{self, Chain, NfListObject, Nftables, Rule, Table};
use nftables::stmt::{Match, NAT, Operator, Statement};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::model::{
    ChainKind, ChainModel, Change, Element, NftConfig, RuleModel, SetRef, TableModel, Verdict,
};
use crate::wire::cidr::Cidr;

/// `priority filter` and `priority srcnat` of `nft(8)`.
const PRIO_FILTER: i32 = 0;
const PRIO_SRCNAT: i32 = 100;

/// The document as `nft -j -f -` reads it.
pub fn to_json(doc: &Nftables<'_>) -> String {
    // Serialising plain owned values into a String cannot fail.
    serde_json::to_string(doc).expect("an nftables document serialises")
}

/// The whole private table, replacing any previous one in one transaction.
pub fn table_document(t: &TableModel) -> Nftables<'static> {
    let mut b = Batch::new();
    let table = || {
        NfListObject::Table(Table {
            family: NfFamily::IP,
            name: t.name.clone().into(),
            handle: None,
        })
    };
    b.add(table());
    b.delete(table());
    b.add(table());
    for c in &t.chains {
        b.add(NfListObject::Chain(chain(&t.name, c)));
        for r in &c.rules {
            b.add(NfListObject::Rule(rule(&t.name, c.kind, r)));
        }
    }
    b.to_nftables()
}

/// Incremental changes, in order, as one document.
pub fn changes_document(cfg: &NftConfig, changes: &[Change]) -> Nftables<'static> {
    let mut b = Batch::new();
    for c in changes {
        match c {
            Change::AddElement(s, e) => b.add(element(s, *e)),
            Change::DeleteElement(s, e) => b.delete(element(s, *e)),
            Change::AddSnat(s) => b.add(NfListObject::Rule(rule(
                &cfg.table,
                ChainKind::Postrouting,
                &cfg.snat_rule(*s),
            ))),
            Change::DeleteRule(h) => {
                if let Ok(handle) = u32::try_from(*h) {
                    b.delete(NfListObject::Rule(Rule {
                        family: NfFamily::IP,
                        table: cfg.table.clone().into(),
                        chain: ChainKind::Postrouting.name().into(),
                        handle: Some(handle),
                        ..Rule::default()
                    }));
                }
            }
        }
    }
    b.to_nftables()
}

fn family(f: &str) -> NfFamily {
    match f {
        "inet" => NfFamily::INet,
        "bridge" => NfFamily::Bridge,
        "netdev" => NfFamily::NetDev,
        // `SetRef::parse` admits nothing else.
        _ => NfFamily::IP,
    }
}

fn element(s: &SetRef, e: Element) -> NfListObject<'static> {
    let value = match e {
        Element::Addr(a) => addr(a),
        Element::Prefix(a, len) => prefix(a, len),
    };
    NfListObject::Element(schema::Element {
        family: family(&s.family),
        table: s.table.clone().into(),
        name: s.name.clone().into(),
        elem: Cow::Owned(vec![value]),
    })
}

fn chain(table: &str, c: &ChainModel) -> Chain<'static> {
    let (kind, hook, prio) = match c.kind {
        ChainKind::Forward => (NfChainType::Filter, NfHook::Forward, PRIO_FILTER),
        ChainKind::Output => (NfChainType::Filter, NfHook::Output, PRIO_FILTER),
        ChainKind::Postrouting => (NfChainType::NAT, NfHook::Postrouting, PRIO_SRCNAT),
    };
    Chain {
        family: NfFamily::IP,
        table: table.to_string().into(),
        name: c.kind.name().into(),
        _type: Some(kind),
        hook: Some(hook),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

fn rule(table: &str, kind: ChainKind, r: &RuleModel) -> Rule<'static> {
    let (expr, comment) = match r {
        RuleModel::Between {
            iface,
            net,
            verdict,
            comment,
        } => {
            let v = match verdict {
                Verdict::Accept => Statement::Accept(None),
                Verdict::Drop => Statement::Drop(None),
            };
            let net = cidr(*net);
            let expr = vec![
                is(meta(MetaKey::Iifname), string(iface)),
                is(meta(MetaKey::Oifname), string(iface)),
                is(field("ip", "saddr"), net.clone()),
                is(field("ip", "daddr"), net),
                v,
            ];
            (expr, comment.to_string())
        }
        RuleModel::NoRedirects { iface } => (
            vec![
                is(meta(MetaKey::Oifname), string(iface)),
                is(field("icmp", "type"), string("redirect")),
                Statement::Drop(None),
            ],
            "isodhcp isolation".to_string(),
        ),
        RuleModel::Snat { iface, pool, snat } => (
            vec![
                is(meta(MetaKey::Oifname), string(iface)),
                is(field("ip", "daddr"), addr(snat.client)),
                matches(field("ip", "saddr"), Operator::NEQ, cidr(*pool)),
                Statement::SNAT(Some(NAT {
                    addr: Some(addr(snat.gateway)),
                    family: None,
                    port: None,
                    flags: None,
                })),
            ],
            format!("isodhcp {}", snat.mac),
        ),
    };
    Rule {
        family: NfFamily::IP,
        table: table.to_string().into(),
        chain: kind.name().into(),
        expr: Cow::Owned(expr),
        comment: Some(comment.into()),
        ..Rule::default()
    }
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn is(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    matches(left, Operator::EQ, right)
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn field(protocol: &'static str, name: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: name.into(),
        },
    )))
}

fn string(s: &str) -> Expression<'static> {
    Expression::String(s.to_string().into())
}

fn addr(a: std::net::Ipv4Addr) -> Expression<'static> {
    string(&a.to_string())
}

fn prefix(a: std::net::Ipv4Addr, len: u8) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(addr(a)),
        len: len.into(),
    }))
}

fn cidr(c: Cidr) -> Expression<'static> {
    prefix(c.network(), c.prefix)
}
