//! `dump`: each section asked for, from the engine, the firewall plan and
//! the admission layer.

use crate::control::Response;
use crate::control::proto::DUMP_SECTIONS;
use crate::control::reply::{
    Blocked, DumpReply, DumpSection, FirewallInfo, PoolInfo, Quarantined, RateLimitInfo, SnatInfo,
    Subnet, XdpInfo,
};
use crate::engine::{Lease, Mode};

use super::super::admission::monotonic_ns;
use super::super::{Daemon, now_ms};
use super::{epoch, lease_info};

impl Daemon {
    pub(in crate::daemon) async fn dump(&mut self, sections: &[String]) -> Response {
        let mut out = DumpReply::default();
        for s in sections {
            let Some(section) = self.section(s) else {
                return Response::error(format!(
                    "unknown dump section {s:?} (known: {})",
                    DUMP_SECTIONS.join(",")
                ));
            };
            out.push(section);
        }
        Response::ok(&out)
    }

    fn section(&mut self, name: &str) -> Option<DumpSection> {
        Some(match name {
            "leases" => {
                let mut v: Vec<&Lease> = self.engine.leases().collect();
                v.sort_by_key(|l| u32::from(l.ip));
                DumpSection::Leases(v.into_iter().map(lease_info).collect())
            }
            "subnets" => DumpSection::Subnets(self.subnets()),
            "quarantine" => DumpSection::Quarantine(
                self.engine
                    .quarantined()
                    .into_iter()
                    .map(|q| Quarantined {
                        ip: q.ip.to_string(),
                        until: epoch(q.until),
                        reason: q.reason,
                    })
                    .collect(),
            ),
            "ratelimit" => {
                let r = &self.cfg.rates;
                DumpSection::Ratelimit(RateLimitInfo {
                    rate_limit: r.mac_rate,
                    rate_burst: r.mac_burst,
                    global_rate_limit: r.global_rate,
                    new_client_rate: r.new_rate,
                    counters: self.counters(),
                })
            }
            "pool" => DumpSection::Pool(self.pool_info()),
            "config" => DumpSection::Config(Box::new(self.config_reply())),
            "firewall" => DumpSection::Firewall(self.firewall()),
            "xdp" => DumpSection::Xdp(self.xdp()),
            _ => return None,
        })
    }

    fn subnets(&self) -> Vec<Subnet> {
        self.engine
            .desired(now_ms())
            .iter()
            .filter(|b| b.mode == Mode::Compat)
            .map(|b| Subnet {
                mac: b.mac.to_string(),
                gateway: b.gateway.to_string(),
                subnet: b.subnet.map(|s| s.to_string()),
            })
            .collect()
    }

    fn pool_info(&self) -> PoolInfo {
        let p = self.engine.pool();
        let range = |(a, b): &(std::net::Ipv4Addr, std::net::Ipv4Addr)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        };
        PoolInfo {
            cidr: p.cidr().to_string(),
            free: p.free_count() as u64,
            free_blocks: p.free_blocks() as u64,
            free_ranges: p.free_ranges().iter().map(range).collect(),
            playground: self.engine.playground_block().map(|b| b.to_string()),
        }
    }

    fn firewall(&self) -> FirewallInfo {
        let d = self.nft.cfg.desired(&self.engine.desired(now_ms()));
        FirewallInfo {
            table: self.nft.cfg.table.clone(),
            isolation: self.cfg.isolation.as_str().to_string(),
            snat: d
                .snat
                .iter()
                .map(|r| SnatInfo {
                    mac: r.mac.to_string(),
                    client: r.client.to_string(),
                    gateway: r.gateway.to_string(),
                })
                .collect(),
            sets: d
                .elements
                .iter()
                .map(|(s, e)| {
                    (
                        s.to_string(),
                        e.iter().map(std::string::ToString::to_string).collect(),
                    )
                })
                .collect(),
        }
    }

    /// The admission layer, and the blocks still in force.
    fn xdp(&mut self) -> XdpInfo {
        let now = monotonic_ns();
        self.blocked.retain(|_, until| *until == 0 || *until > now);
        let blocked = self
            .blocked
            .iter()
            .map(|(m, until)| Blocked {
                mac: m.to_string(),
                remaining_s: (*until != 0).then(|| (until - now) / 1_000_000_000),
            })
            .collect();
        XdpInfo {
            mode: self.admission.mode().to_string(),
            pin_dir: self.admission.pin_dir().map(|p| p.display().to_string()),
            offer_stripe: u64::from(self.engine.stripe().0),
            offer_stripe_filled: self.engine.stripe_used() as u64,
            counters: self.counters(),
            blocked,
        }
    }
}
