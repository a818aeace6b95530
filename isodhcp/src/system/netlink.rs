//! rtnetlink executor: interface facts, per-client host routes (design.md §Routes)
//! and gateway aliases (design.md §Aliases).
//!
//! Routes are `<ip>/32 dev <iface> scope link src <server IP>` in the main
//! table with protocol [`ROUTE_PROTO`], added with replace semantics (so
//! adding twice is harmless) and deleted idempotently (a missing route is
//! success). Only routes carrying our protocol number are ever listed or
//! removed, so routes made by anyone else are never touched.
//!
//! The daemon awaits these requests on its event loop, so each one (a dump
//! as a whole) is bounded by [`NETLINK_TIMEOUT`]: a kernel that does not
//! answer costs a [`NetlinkError::Timeout`], which callers log and survive,
//! instead of stopping DHCP.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::LinkAttribute;
use rtnetlink::packet_route::neighbour::{NeighbourAddress, NeighbourAttribute, NeighbourState};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::{AddressMessageBuilder, Handle, RouteMessageBuilder};

use super::route_batch::{RouteOp, RouteSocket};

use crate::wire::Mac;

/// Route protocol number marking isodhcp's host routes (`ip route show proto 108`).
pub const ROUTE_PROTO: u8 = 108;

/// Longest wait for one netlink request, or for a whole dump.
pub const NETLINK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("cannot open a netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("interface {0} does not exist")]
    NoInterface(String),
    #[error("interface {0} has no Ethernet address")]
    NoMac(String),
    #[error("netlink {op} failed: {source}")]
    Request {
        op: &'static str,
        source: rtnetlink::Error,
    },
    #[error("netlink {op} refused: {source}")]
    Refused {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("netlink {op} failed: {source}")]
    Batch {
        op: &'static str,
        source: std::io::Error,
    },
    #[error("netlink {op} got no answer within {limit:?}")]
    Timeout { op: &'static str, limit: Duration },
}

/// What the daemon needs to know about its interface.
#[derive(Debug, Clone)]
pub struct InterfaceInfo {
    pub index: u32,
    pub mac: Mac,
    /// IPv4 addresses with prefix lengths.
    pub addrs: Vec<(Ipv4Addr, u8)>,
}

#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
    /// Host route changes go in batches over a socket of their own.
    routes: Arc<tokio::sync::Mutex<RouteSocket>>,
}

fn req(op: &'static str) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    move |source| NetlinkError::Request { op, source }
}

/// `work` with the [`NETLINK_TIMEOUT`] deadline; `op` names it in the error.
async fn bounded<T>(
    op: &'static str,
    work: impl Future<Output = Result<T, NetlinkError>>,
) -> Result<T, NetlinkError> {
    tokio::time::timeout(NETLINK_TIMEOUT, work)
        .await
        .unwrap_or_else(|_| {
            Err(NetlinkError::Timeout {
                op,
                limit: NETLINK_TIMEOUT,
            })
        })
}

/// True for "no such route/address" answers, which idempotent deletes accept.
fn is_absent(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::ESRCH || m.raw_code() == -libc::EADDRNOTAVAIL || m.raw_code() == -libc::ENOENT)
}

impl Netlink {
    /// Opens a netlink connection; the connection task runs on the current runtime.
    pub fn connect() -> Result<Netlink, NetlinkError> {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(NetlinkError::Socket)?;
        let routes = RouteSocket::open().map_err(NetlinkError::Socket)?;
        tokio::spawn(conn);
        Ok(Netlink {
            handle,
            routes: Arc::new(tokio::sync::Mutex::new(routes)),
        })
    }

    pub async fn interface(&self, name: &str) -> Result<InterfaceInfo, NetlinkError> {
        bounded("interface get", async {
            let mut links = self
                .handle
                .link()
                .get()
                .match_name(name.to_string())
                .execute();
            let link = match links.try_next().await {
                Ok(Some(l)) => l,
                Ok(None) => return Err(NetlinkError::NoInterface(name.into())),
                Err(rtnetlink::Error::NetlinkError(m)) if m.raw_code() == -libc::ENODEV => {
                    return Err(NetlinkError::NoInterface(name.into()));
                }
                Err(e) => return Err(req("link get")(e)),
            };
            let index = link.header.index;
            let mac = link
                .attributes
                .iter()
                .find_map(|a| match a {
                    LinkAttribute::Address(b) if b.len() == 6 => {
                        Some(Mac([b[0], b[1], b[2], b[3], b[4], b[5]]))
                    }
                    _ => None,
                })
                .ok_or_else(|| NetlinkError::NoMac(name.into()))?;
            let mut addrs = Vec::new();
            let mut s = self
                .handle
                .address()
                .get()
                .set_link_index_filter(index)
                .execute();
            while let Some(a) = s.try_next().await.map_err(req("address get"))? {
                let local = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Local(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                let addr = a.attributes.iter().find_map(|x| match x {
                    AddressAttribute::Address(IpAddr::V4(ip)) => Some(*ip),
                    _ => None,
                });
                if let Some(ip) = local.or(addr) {
                    addrs.push((ip, a.header.prefix_len));
                }
            }
            Ok::<_, NetlinkError>(InterfaceInfo { index, mac, addrs })
        })
        .await
    }

    pub(crate) fn host_route(ip: Ipv4Addr, ifindex: u32, src: Ipv4Addr) -> RouteMessage {
        RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(ip, 32)
            .output_interface(ifindex)
            .pref_source(src)
            .scope(RouteScope::Link)
            .protocol(RouteProtocol::Other(ROUTE_PROTO))
            .build()
    }

    /// Adds (replaces) and deletes host routes, in order, in as few
    /// kernel round trips as [`super::route_batch`] allows; one result per
    /// op. Deleting a missing route is success.
    pub async fn routes(
        &self,
        ops: &[RouteOp],
        ifindex: u32,
        src: Ipv4Addr,
    ) -> Vec<Result<(), NetlinkError>> {
        self.routes.lock().await.apply(ops, ifindex, src).await
    }

    /// Adds (or keeps) an alias address on the interface.
    pub async fn alias_add(
        &self,
        ip: Ipv4Addr,
        prefix: u8,
        ifindex: u32,
    ) -> Result<(), NetlinkError> {
        bounded("address replace", async {
            self.handle
                .address()
                .add(ifindex, IpAddr::V4(ip), prefix)
                .replace()
                .execute()
                .await
                .map_err(req("address replace"))
        })
        .await
    }

    /// Removes an alias address; a missing one is success.
    pub async fn alias_del(
        &self,
        ip: Ipv4Addr,
        prefix: u8,
        ifindex: u32,
    ) -> Result<(), NetlinkError> {
        bounded("address delete", async {
            let msg = AddressMessageBuilder::<Ipv4Addr>::new()
                .index(ifindex)
                .address(ip, prefix)
                .build();
            match self.handle.address().del(msg).execute().await {
                Err(e) if is_absent(&e) => Ok(()),
                r => r.map_err(req("address delete")),
            }
        })
        .await
    }

    /// The entries of the neighbour table on `ifindex` that are alive
    /// (REACHABLE, STALE, DELAY or PROBE; design.md §Quarantine), with their MAC.
    pub async fn neighbours_alive(
        &self,
        ifindex: u32,
    ) -> Result<Vec<(Ipv4Addr, Option<Mac>)>, NetlinkError> {
        bounded("neighbour dump", async {
            let mut out = Vec::new();
            let mut s = self
                .handle
                .neighbours()
                .get()
                .set_address_family(rtnetlink::packet_route::AddressFamily::Inet)
                .execute();
            while let Some(n) = s.try_next().await.map_err(req("neighbour dump"))? {
                if n.header.ifindex != ifindex
                    || !matches!(
                        n.header.state,
                        NeighbourState::Reachable
                            | NeighbourState::Stale
                            | NeighbourState::Delay
                            | NeighbourState::Probe
                    )
                {
                    continue;
                }
                let lladdr = n.attributes.iter().find_map(|a| match a {
                    NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                        Some(Mac([b[0], b[1], b[2], b[3], b[4], b[5]]))
                    }
                    _ => None,
                });
                for a in &n.attributes {
                    if let NeighbourAttribute::Destination(NeighbourAddress::Inet(ip)) = a {
                        out.push((*ip, lladdr));
                    }
                }
            }
            Ok::<_, NetlinkError>(out)
        })
        .await
    }

    /// Our /32 routes on `ifindex` in the main table.
    pub async fn our_routes(&self, ifindex: u32) -> Result<BTreeSet<Ipv4Addr>, NetlinkError> {
        bounded("route dump", async {
            let mut out = BTreeSet::new();
            let mut s = self
                .handle
                .route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute();
            while let Some(r) = s.try_next().await.map_err(req("route dump"))? {
                if r.header.protocol != RouteProtocol::Other(ROUTE_PROTO)
                    || r.header.destination_prefix_length != 32
                {
                    continue;
                }
                let oif = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Oif(i) => Some(*i),
                    _ => None,
                });
                let dst = r.attributes.iter().find_map(|a| match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                    _ => None,
                });
                if let (Some(i), Some(ip)) = (oif, dst) {
                    if i == ifindex {
                        out.insert(ip);
                    }
                }
            }
            Ok::<_, NetlinkError>(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// A connection whose task never runs stands for a kernel that never
    /// answers: every request must give up by itself, and soon.
    #[test]
    fn unanswered_requests_time_out() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (conn, handle, _) = rtnetlink::new_connection().unwrap();
            let nl = Netlink {
                handle,
                routes: Arc::new(tokio::sync::Mutex::new(RouteSocket::open().unwrap())),
            };
            let dst = Ipv4Addr::new(198, 18, 0, 9);
            let started = Instant::now();
            let all = async {
                tokio::join!(
                    nl.interface("lo"),
                    nl.our_routes(1),
                    nl.neighbours_alive(1),
                    nl.alias_add(dst, 30, 1),
                    nl.alias_del(dst, 30, 1),
                )
            };
            // The outer bound only keeps a broken build from hanging the suite.
            let r = tokio::time::timeout(Duration::from_secs(10), all).await;
            let (a, b, c, f, g) = r.expect("netlink requests must give up by themselves");
            let timed_out =
                |r: Result<(), NetlinkError>| matches!(r, Err(NetlinkError::Timeout { .. }));
            assert!(timed_out(a.map(|_| ())), "interface");
            assert!(timed_out(b.map(|_| ())), "our_routes");
            assert!(timed_out(c.map(|_| ())), "neighbours_alive");
            assert!([f, g].into_iter().all(timed_out), "alias changes");
            assert!(started.elapsed() < Duration::from_secs(4));
            drop(conn);
        });
    }
}
