//! Answers to control requests, built on the event loop from the engine,
//! the admission layer and a fresh look at kernel and nft state. Each
//! answer is the command's type of [`crate::control::reply`]; `--redact`
//! is applied to its JSON form, so no field escapes it.

mod dump;
mod verify;

use std::net::Ipv4Addr;

use serde_json::Value;

use super::admission::monotonic_ns;
use super::{Daemon, now_ms};
use crate::control::proto::{self, Command, Request, Response};
use crate::control::reply::{
    BlockReply, CheckItem, ClientCounts, ConfigReply, HookCounts, LeaseInfo, Messages, Named,
    Offers, ShowReply, StatusReply, UnblockReply,
};
use crate::engine::{Binding, Lease, Millis, Mode};
use crate::system::nft::elements;
use crate::system::reconcile::KernelState;
use crate::wire::Mac;

/// Unix milliseconds as the protocol's seconds; `None` for "never".
fn epoch(ms: Millis) -> Option<f64> {
    (ms != crate::engine::NEVER).then(|| ms as f64 / 1000.0)
}

fn lease_info(l: &Lease) -> LeaseInfo {
    let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
    LeaseInfo {
        mac: l.mac.to_string(),
        ip: l.ip.to_string(),
        mode: l.profile.mode.as_str().to_string(),
        masq: l.profile.masq,
        is_static: l.is_static,
        expires: epoch(l.expires),
        grace_until: l.grace_until.and_then(epoch),
        hostname: l.hostname.clone(),
        vendor: l.vendor.clone(),
        circuit_id: text(l.relay.as_ref().and_then(|r| r.circuit_id())),
        remote_id: text(l.relay.as_ref().and_then(|r| r.remote_id())),
    }
}

impl Daemon {
    pub(super) async fn answer(&mut self, req: Request) -> Response {
        let mut resp = match req.cmd.clone() {
            Command::Status => Response::ok(&self.status()),
            Command::Config => Response::ok(&self.config_reply()),
            Command::Dump { sections } => self.dump(&sections).await,
            Command::Show { key } => self.show(&key).await,
            Command::Verify => Response::ok(&self.verify(req.all).await),
            Command::Block { mac, seconds } => self.block(&mac, seconds),
            Command::Unblock { mac } => self.unblock(&mac),
        };
        if req.redact {
            let mut v = Value::Object(std::mem::take(&mut resp.body));
            proto::redact(&mut v);
            if let Value::Object(m) = v {
                resp.body = m;
            }
        }
        resp
    }

    /// The admission counters by name.
    fn counters(&self) -> Named<u64> {
        self.admission.counters().named().into_iter().collect()
    }

    fn status(&self) -> StatusReply {
        let mut clients = ClientCounts::default();
        for l in self.engine.leases() {
            let n = match (l.is_static, l.profile.mode) {
                (true, _) => &mut clients.statics,
                (false, Mode::Isolated) => &mut clients.standard,
                (false, Mode::Compat) => &mut clients.compat,
                (false, Mode::Playground) => &mut clients.playground,
            };
            *n += 1;
        }
        let st = &self.engine.stats;
        let hooks = self.hooks.as_ref().map(|h| {
            let s = h.stats();
            HookCounts {
                runs: s.runs,
                failures: s.failures,
                timeouts: s.timeouts,
                dropped: s.dropped,
                coalesced: s.coalesced,
                running: s.running,
                pending: s.pending,
            }
        });
        let pool = self.engine.pool();
        StatusReply {
            pid: std::process::id(),
            uptime_s: now_ms().saturating_sub(self.started) / 1000,
            interface: self.iface.clone(),
            server_ip: self.server_ip.to_string(),
            pool: pool.cidr().to_string(),
            pool_size: pool.cidr().size(),
            free_addresses: self.engine.free_count() as u64,
            free_blocks: pool.free_blocks() as u64,
            clients,
            quarantine: self.engine.quarantined_count() as u64,
            offers: Offers {
                outstanding: self.engine.offers_outstanding() as u64,
                cap: self.engine.config().max_offers as u64,
                xdp_stripe: u64::from(self.engine.stripe().0),
                xdp_stripe_filled: self.engine.stripe_used() as u64,
            },
            datapath: self.admission.mode().to_string(),
            admission: self.counters(),
            messages: Messages {
                offers: st.offers,
                acks: st.acks,
                naks: st.naks,
                releases: st.releases,
                declines: st.declines,
                informs: st.informs,
                expired: st.expired,
                conflicts: st.conflicts,
                adoptions: st.adoptions,
                stripe_claims: st.stripe_claims,
                logs_suppressed: st.logs_suppressed,
            },
            hooks,
        }
    }

    fn config_reply(&self) -> ConfigReply {
        let c = self.engine.config();
        let r = &self.cfg.rates;
        ConfigReply {
            interface: self.iface.clone(),
            server_ip: c.server_ip.to_string(),
            pool: c.pool.to_string(),
            dns: c.dns.iter().map(std::string::ToString::to_string).collect(),
            lease_time: c.lease_time,
            lease_file: self.cfg.lease_file.display().to_string(),
            isolation: self.cfg.isolation.as_str().to_string(),
            xdp: self.cfg.xdp.as_str().to_string(),
            datapath: self.admission.mode().to_string(),
            rate_limit: r.mac_rate,
            rate_burst: r.mac_burst,
            global_rate_limit: r.global_rate,
            new_client_rate: r.new_rate,
            statics: c.statics.len() as u64,
            playground: self.engine.playground_block().map(|b| b.to_string()),
            nft_table: self.nft.cfg.table.clone(),
            nft_sets: self
                .nft
                .cfg
                .sets
                .all()
                .map(std::string::ToString::to_string)
                .collect(),
            hook_file: self.cfg.hook_file.as_ref().map(|p| p.display().to_string()),
            socket: self.socket_path.display().to_string(),
        }
    }

    fn find(&self, key: &str) -> Option<&Lease> {
        if let Some(m) = Mac::parse(&key.to_ascii_lowercase()) {
            return self.engine.lease(&m);
        }
        if let Ok(ip) = key.parse::<Ipv4Addr>() {
            return self.engine.owner_of(ip).and_then(|m| self.engine.lease(&m));
        }
        self.engine.leases().find(|l| {
            l.hostname
                .as_deref()
                .is_some_and(|h| h.eq_ignore_ascii_case(key))
        })
    }

    async fn show(&mut self, key: &str) -> Response {
        let Some(lease) = self.find(key).cloned() else {
            return Response::error(format!("no client matches {key:?} (MAC, IP or hostname)"));
        };
        let b = self.engine.binding(&lease);
        let checklist = self.checklist(&b).await;
        Response::ok(&ShowReply {
            client: lease_info(&lease),
            checklist,
        })
    }

    /// Each resource a binding needs, and whether it is there now.
    async fn checklist(&mut self, b: &Binding) -> Vec<CheckItem> {
        let mut out = Vec::new();
        let kernel = self.observe().await.ok();
        let active = b.expires.is_none_or(|e| e > now_ms());
        let item = |what: String, ok: Option<bool>| CheckItem { what, ok };
        // Routes and aliases: the one binding → kernel-state mapping.
        let want = KernelState::desired([b], None);
        for ip in &want.routes {
            out.push(item(
                format!("route {ip}/32 dev {} proto 108", self.iface),
                kernel.as_ref().map(|k| k.routes.contains(ip)),
            ));
        }
        for (gw, len) in &want.aliases {
            out.push(item(
                format!("alias {gw}/{len} on {}", self.iface),
                kernel.as_ref().map(|k| k.aliases.contains(&(*gw, *len))),
            ));
        }
        // The playground gateway is shared by all playground clients.
        if b.mode == Mode::Playground {
            out.push(item(
                format!("playground gateway {} on {}", b.gateway, self.iface),
                kernel.as_ref().map(|k| {
                    k.aliases.iter().any(|(ip, _)| *ip == b.gateway) || b.gateway == self.server_ip
                }),
            ));
        }
        let observed = self.nft.observe_elements().await.ok();
        for (set, e) in elements(&self.nft.cfg.sets, b) {
            let ok = observed
                .as_ref()
                .map(|o| o.get(&set).is_some_and(|els| els.contains(&e)));
            out.push(item(format!("element {e} in set {set}"), ok));
        }
        if b.masq {
            let snat = self.nft.observe_snat().await.ok();
            out.push(item(
                format!("SNAT to {} for {}", b.gateway, b.ip),
                snat.map(|v| {
                    v.iter()
                        .any(|(r, _)| r.client == b.ip && r.gateway == b.gateway)
                }),
            ));
        }
        out.push(item(
            format!(
                "known client in the {} admission map",
                self.admission.mode()
            ),
            Some(self.admission.is_known(b.mac)),
        ));
        if !active {
            out.push(item(
                "lease is in its grace period (no kernel state expected)".into(),
                None,
            ));
        }
        out
    }

    fn block(&mut self, mac: &str, seconds: Option<u64>) -> Response {
        let Some(m) = Mac::parse(&mac.to_ascii_lowercase()) else {
            return Response::error(format!("{mac:?} is not a MAC address"));
        };
        // The client checks --for too, but any same-user process can talk
        // to the socket: the bound is enforced here, where it matters.
        let until = match seconds {
            None => 0,
            Some(s) if s > proto::MAX_BLOCK_SECONDS => {
                return Response::error(format!(
                    "block duration {s} s is too long: at most {} s (ten years)",
                    proto::MAX_BLOCK_SECONDS
                ));
            }
            Some(s) => monotonic_ns().saturating_add(s * 1_000_000_000),
        };
        match self.admission.deny(m, until) {
            Ok(()) => {
                self.blocked.insert(m, until);
                tracing::info!(mac = %m, ?seconds, "client blocked");
                Response::ok(&BlockReply {
                    blocked: m.to_string(),
                    seconds,
                })
            }
            Err(e) => Response::error(format!("cannot block {m}: {e}")),
        }
    }

    fn unblock(&mut self, mac: &str) -> Response {
        let Some(m) = Mac::parse(&mac.to_ascii_lowercase()) else {
            return Response::error(format!("{mac:?} is not a MAC address"));
        };
        match self.admission.undeny(m) {
            Ok(()) => {
                self.blocked.remove(&m);
                tracing::info!(mac = %m, "client unblocked");
                Response::ok(&UnblockReply {
                    unblocked: m.to_string(),
                })
            }
            Err(e) => Response::error(format!("cannot unblock {m}: {e}")),
        }
    }
}
