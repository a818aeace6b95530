//! Typed views of `ip -j addr` / `ip -j route` inside a namespace.

use std::net::Ipv4Addr;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::netns::Netns;

/// Route protocol number isodhcp uses for its host routes (design.md §Routes).
pub const ISODHCP_RT_PROTO: u8 = 108;

/// One IPv4 address of an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    pub ip: Ipv4Addr,
    pub prefixlen: u8,
}

impl std::fmt::Display for Addr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.ip, self.prefixlen)
    }
}

/// One IPv4 route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// `default`, `198.18.0.7` (host route) or `198.18.0.0/24`.
    pub dst: String,
    pub gateway: Option<Ipv4Addr>,
    pub dev: Option<String>,
    pub protocol: Option<String>,
    pub scope: Option<String>,
    pub prefsrc: Option<Ipv4Addr>,
    pub flags: Vec<String>,
}

impl Route {
    pub fn is_default(&self) -> bool {
        self.dst == "default" || self.dst == "0.0.0.0/0"
    }
    /// The destination as a host address if this is a /32 route.
    pub fn host(&self) -> Option<Ipv4Addr> {
        let d = self.dst.strip_suffix("/32").unwrap_or(&self.dst);
        d.parse().ok()
    }
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.dst)?;
        if let Some(g) = self.gateway {
            write!(f, " via {g}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        if let Some(p) = &self.protocol {
            write!(f, " proto {p}")?;
        }
        if let Some(s) = &self.scope {
            write!(f, " scope {s}")?;
        }
        if let Some(s) = self.prefsrc {
            write!(f, " src {s}")?;
        }
        for fl in &self.flags {
            write!(f, " {fl}")?;
        }
        Ok(())
    }
}

fn s(v: &Value, k: &str) -> Option<String> {
    v.get(k).and_then(|x| match x {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

/// IPv4 addresses on `dev` in `ns`.
pub fn addrs(ns: &Netns, dev: &str) -> Result<Vec<Addr>> {
    let v = ns.ip_json(&["-4", "addr", "show", "dev", dev])?;
    let mut out = Vec::new();
    for link in v.as_array().into_iter().flatten() {
        for a in link
            .get("addr_info")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if a.get("family").and_then(Value::as_str) != Some("inet") {
                continue;
            }
            let ip: Ipv4Addr = s(a, "local")
                .context("addr_info without local")?
                .parse()
                .context("bad address in ip -j output")?;
            let prefixlen = a.get("prefixlen").and_then(Value::as_u64).unwrap_or(0) as u8;
            out.push(Addr { ip, prefixlen });
        }
    }
    Ok(out)
}

/// Parse `ip -j route` output.
pub fn parse_routes(v: &Value) -> Vec<Route> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| {
            Some(Route {
                dst: s(r, "dst")?,
                gateway: s(r, "gateway").and_then(|g| g.parse().ok()),
                dev: s(r, "dev"),
                protocol: s(r, "protocol"),
                scope: s(r, "scope"),
                prefsrc: s(r, "prefsrc").and_then(|g| g.parse().ok()),
                flags: r
                    .get("flags")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
            })
        })
        .collect()
}

/// IPv4 routes of the main table in `ns` (`ip -j -4 route show [EXTRA...]`).
pub fn routes(ns: &Netns, extra: &[&str]) -> Result<Vec<Route>> {
    let mut args = vec!["-4", "route", "show"];
    args.extend_from_slice(extra);
    Ok(parse_routes(&ns.ip_json(&args)?))
}

/// Routes with isodhcp's protocol number (`ip route show proto 108`).
pub fn isodhcp_routes(ns: &Netns) -> Result<Vec<Route>> {
    let p = ISODHCP_RT_PROTO.to_string();
    routes(ns, &["proto", &p])
}

/// Plain-text `ip route show proto 108` (for printing).
pub fn isodhcp_routes_text(ns: &Netns) -> Result<String> {
    ns.ip(&[
        "-4",
        "route",
        "show",
        "proto",
        &ISODHCP_RT_PROTO.to_string(),
    ])
}

/// `ip route OP DST dev srv0 proto 108` in `ns`: add or delete an
/// isodhcp-looking host route by hand (DST like `198.18.0.7/32`).
pub fn route_proto108(ns: &Netns, op: &str, dst: &str) -> Result<String> {
    let proto = ISODHCP_RT_PROTO.to_string();
    ns.ip(&["route", op, dst, "dev", crate::SERVER_IF, "proto", &proto])
}
