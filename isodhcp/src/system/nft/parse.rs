//! Reading `nft -j` output: the elements of a set, the SNAT rules of our
//! postrouting chain.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::Value;

use super::{Element, NftError, Snat};
use crate::wire::Mac;

fn nftables(json: &str) -> Result<Vec<Value>, NftError> {
    let v: Value = serde_json::from_str(json).map_err(|e| NftError::Json(e.to_string()))?;
    Ok(v.get("nftables")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

/// Elements of a `nft -j list set` answer (addresses and prefixes).
pub fn parse_elements(json: &str) -> Result<BTreeSet<Element>, NftError> {
    let mut out = BTreeSet::new();
    for item in nftables(json)? {
        let Some(elems) = item.pointer("/set/elem").and_then(Value::as_array) else {
            continue;
        };
        for e in elems {
            // Plain address, {"prefix": {...}}, or {"elem": {"val": ...}} with timeouts/comments.
            let e = e.pointer("/elem/val").unwrap_or(e);
            if let Some(a) = e.as_str().and_then(|s| s.parse().ok()) {
                out.insert(Element::Addr(a));
            } else if let (Some(a), Some(l)) = (
                e.pointer("/prefix/addr").and_then(Value::as_str),
                e.pointer("/prefix/len").and_then(Value::as_u64),
            ) {
                if let Ok(a) = a.parse() {
                    out.insert(Element::Prefix(a, l as u8));
                }
            } else if let (Some(lo), Some(hi)) = (
                e.pointer("/range/0").and_then(Value::as_str),
                e.pointer("/range/1").and_then(Value::as_str),
            ) {
                // A range nft could not print as a prefix: keep it if it is one.
                if let (Ok(lo), Ok(hi)) = (lo.parse::<Ipv4Addr>(), hi.parse::<Ipv4Addr>()) {
                    let size = u32::from(hi).wrapping_sub(u32::from(lo)).wrapping_add(1);
                    if size.is_power_of_two() {
                        out.insert(Element::Prefix(lo, 32 - size.trailing_zeros() as u8));
                    }
                }
            }
        }
    }
    Ok(out)
}

/// SNAT rules (with handles) of a `nft -j -a list chain` answer; only rules
/// carrying our comment count.
pub fn parse_snat(json: &str) -> Result<Vec<(Snat, u64)>, NftError> {
    let mut out = Vec::new();
    for item in nftables(json)? {
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let Some(mac) = rule
            .get("comment")
            .and_then(Value::as_str)
            .and_then(|c| c.strip_prefix("isodhcp "))
            .and_then(Mac::parse)
        else {
            continue;
        };
        let handle = rule.get("handle").and_then(Value::as_u64).unwrap_or(0);
        let exprs = rule
            .get("expr")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let mut client = None;
        let mut gateway = None;
        for x in &exprs {
            if x.pointer("/match/left/payload/field")
                .and_then(Value::as_str)
                == Some("daddr")
            {
                client = x
                    .pointer("/match/right")
                    .and_then(Value::as_str)
                    .and_then(|s| s.parse().ok());
            }
            if let Some(a) = x.pointer("/snat/addr").and_then(Value::as_str) {
                gateway = a.parse().ok();
            }
        }
        if let (Some(client), Some(gateway)) = (client, gateway) {
            out.push((
                Snat {
                    client,
                    gateway,
                    mac,
                },
                handle,
            ));
        }
    }
    Ok(out)
}
