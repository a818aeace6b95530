//! Answers to control requests (SPEC §10), built on the event loop from the
//! engine, the admission layer and a fresh look at kernel and nft state.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

use super::admission::monotonic_ns;
use super::{Daemon, now_ms};
use crate::control::proto::{self, Command, DUMP_SECTIONS, Request, Response};
use crate::engine::{Binding, Lease, Millis, Mode};
use crate::system::nft::{Element, elements};
use crate::system::reconcile::KernelState;
use crate::wire::Mac;

fn epoch(ms: Millis) -> Value {
    if ms == crate::engine::NEVER {
        Value::Null
    } else {
        json!(ms as f64 / 1000.0)
    }
}

fn lease_json(l: &Lease) -> Value {
    json!({
        "mac": l.mac.to_string(),
        "ip": l.ip.to_string(),
        "mode": l.profile.mode.as_str(),
        "masq": l.profile.masq,
        "static": l.is_static,
        "expires": epoch(l.expires),
        "grace_until": l.grace_until.map(epoch),
        "hostname": l.hostname,
        "vendor": l.vendor,
        "circuit_id": l.relay.as_ref().and_then(|r| r.circuit_id()).map(|b| String::from_utf8_lossy(b).into_owned()),
        "remote_id": l.relay.as_ref().and_then(|r| r.remote_id()).map(|b| String::from_utf8_lossy(b).into_owned()),
    })
}

/// One `--verify` finding.
struct Finding {
    severity: u8, // 0 low, 1 moderate, 2 alarming, 3 unknown
    what: String,
}

impl Finding {
    fn json(&self) -> Value {
        let sev = ["low", "moderate", "alarming", "unknown"][usize::from(self.severity.min(3))];
        json!({"severity": sev, "what": self.what})
    }
}

impl Daemon {
    pub(super) async fn answer(&mut self, req: Request) -> Response {
        let mut resp = match req.cmd.clone() {
            Command::Status => Response::ok(self.status()),
            Command::Config => Response::ok(self.config_json()),
            Command::Dump { sections } => self.dump(&sections).await,
            Command::Show { key } => self.show(&key).await,
            Command::Verify => Response::ok(self.verify(req.all).await),
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

    fn status(&self) -> Value {
        let mut by_mode = json!({"standard": 0, "compat": 0, "playground": 0, "static": 0});
        for l in self.engine.leases() {
            let key = if l.is_static {
                "static"
            } else {
                l.profile.mode.as_str()
            };
            by_mode[key] = json!(by_mode[key].as_u64().unwrap_or(0) + 1);
        }
        let st = &self.engine.stats;
        let counters: serde_json::Map<String, Value> = self
            .admission
            .counters()
            .named()
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let hooks = self.hooks.as_ref().map(|h| {
            let s = h.stats();
            json!({"runs": s.runs, "failures": s.failures, "timeouts": s.timeouts, "dropped": s.dropped, "coalesced": s.coalesced, "running": s.running, "pending": s.pending})
        });
        json!({
            "pid": std::process::id(),
            "uptime_s": now_ms().saturating_sub(self.started) / 1000,
            "interface": self.iface,
            "server_ip": self.server_ip.to_string(),
            "pool": self.engine.pool().cidr().to_string(),
            "pool_size": self.engine.pool().cidr().size(),
            "free_addresses": self.engine.free_count(),
            "free_blocks": self.engine.pool().free_blocks(),
            "clients": by_mode,
            "quarantine": self.engine.quarantined_count(),
            "offers": {"outstanding": self.engine.offers_outstanding(), "cap": self.engine.config().max_offers},
            "datapath": self.admission.mode(),
            "admission": counters,
            "messages": {"offers": st.offers, "acks": st.acks, "naks": st.naks, "releases": st.releases, "declines": st.declines, "informs": st.informs, "expired": st.expired, "conflicts": st.conflicts, "adoptions": st.adoptions, "logs_suppressed": st.logs_suppressed},
            "hooks": hooks,
        })
    }

    fn config_json(&self) -> Value {
        let c = self.engine.config();
        let l = &self.cfg.rates;
        json!({
            "interface": self.iface,
            "server_ip": c.server_ip.to_string(),
            "pool": c.pool.to_string(),
            "dns": c.dns.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
            "lease_time": c.lease_time,
            "lease_file": self.cfg.lease_file.display().to_string(),
            "isolation": format!("{:?}", self.cfg.isolation).to_lowercase(),
            "xdp": format!("{:?}", self.cfg.xdp).to_lowercase(),
            "datapath": self.admission.mode(),
            "rate_limit": l.mac_rate, "rate_burst": l.mac_burst, "global_rate_limit": l.global_rate, "new_client_rate": l.new_rate,
            "statics": c.statics.len(),
            "playground": self.engine.playground_block().map(|b| b.to_string()),
            "nft_table": self.nft.cfg.table,
            "nft_sets": self.nft.cfg.sets.all().map(|s| s.to_string()).collect::<Vec<_>>(),
            "hook_file": self.cfg.hook_file.as_ref().map(|p| p.display().to_string()),
            "socket": self.socket_path.display().to_string(),
        })
    }

    async fn dump(&mut self, sections: &[String]) -> Response {
        let mut out = serde_json::Map::new();
        for s in sections {
            let body = match s.as_str() {
                "leases" => {
                    let mut v: Vec<&Lease> = self.engine.leases().collect();
                    v.sort_by_key(|l| u32::from(l.ip));
                    json!(v.into_iter().map(lease_json).collect::<Vec<_>>())
                }
                "subnets" => json!(self.engine.desired(now_ms()).iter().filter(|b| b.mode == Mode::Compat).map(|b| json!({"mac": b.mac.to_string(), "gateway": b.gateway.to_string(), "subnet": b.subnet.map(|s| s.to_string())})).collect::<Vec<_>>()),
                "quarantine" => json!(self.engine.quarantined().iter().map(|q| json!({"ip": q.ip.to_string(), "until": epoch(q.until), "reason": q.reason})).collect::<Vec<_>>()),
                "ratelimit" => {
                    let l = &self.cfg.rates;
                    let counters: serde_json::Map<String, Value> = self.admission.counters().named().iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                    json!({"rate_limit": l.mac_rate, "rate_burst": l.mac_burst, "global_rate_limit": l.global_rate, "new_client_rate": l.new_rate, "counters": counters})
                }
                "pool" => {
                    let p = self.engine.pool();
                    let ranges: Vec<String> = p.free_ranges().iter().map(|(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") }).collect();
                    json!({"cidr": p.cidr().to_string(), "free": p.free_count(), "free_blocks": p.free_blocks(), "free_ranges": ranges, "playground": self.engine.playground_block().map(|b| b.to_string())})
                }
                "config" => self.config_json(),
                "firewall" => {
                    let d = self.nft.cfg.desired(&self.engine.desired(now_ms()));
                    json!({
                        "table": self.nft.cfg.table,
                        "isolation": format!("{:?}", self.cfg.isolation).to_lowercase(),
                        "snat": d.snat.iter().map(|r| json!({"mac": r.mac.to_string(), "client": r.client.to_string(), "gateway": r.gateway.to_string()})).collect::<Vec<_>>(),
                        "sets": d.elements.iter().map(|(s, e)| (s.to_string(), json!(e.iter().map(|x| x.to_string()).collect::<Vec<_>>()))).collect::<serde_json::Map<_, _>>(),
                    })
                }
                "xdp" => {
                    let now = monotonic_ns();
                    self.blocked.retain(|_, until| *until == 0 || *until > now);
                    let blocked: Vec<Value> = self.blocked.iter().map(|(m, until)| json!({"mac": m.to_string(), "remaining_s": if *until == 0 { Value::Null } else { json!((until - now) / 1_000_000_000) }})).collect();
                    let counters: serde_json::Map<String, Value> = self.admission.counters().named().iter().map(|(k, v)| (k.to_string(), json!(v))).collect();
                    json!({"mode": self.admission.mode(), "pin_dir": self.admission.pin_dir().map(|p| p.display().to_string()), "counters": counters, "blocked": blocked})
                }
                other => return Response::error(format!("unknown dump section {other:?} (known: {})", DUMP_SECTIONS.join(","))),
            };
            out.insert(s.clone(), body);
        }
        Response::ok(Value::Object(out))
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
        Response::ok(json!({"client": lease_json(&lease), "checklist": checklist}))
    }

    /// Each resource a binding needs, and whether it is there now.
    async fn checklist(&mut self, b: &Binding) -> Vec<Value> {
        let mut out = Vec::new();
        let kernel = self.observe().await.ok();
        let active = b.expires.is_none_or(|e| e > now_ms());
        let item = |what: String, ok: Option<bool>| json!({"what": what, "ok": ok});
        match b.mode {
            Mode::Isolated => out.push(item(
                format!("route {}/32 dev {} proto 108", b.ip, self.iface),
                kernel.as_ref().map(|k| k.routes.contains(&b.ip)),
            )),
            Mode::Compat => out.push(item(
                format!("alias {}/30 on {}", b.gateway, self.iface),
                kernel
                    .as_ref()
                    .map(|k| k.aliases.contains(&(b.gateway, 30))),
            )),
            Mode::Playground => out.push(item(
                format!("playground gateway {} on {}", b.gateway, self.iface),
                kernel.as_ref().map(|k| {
                    k.aliases.iter().any(|(ip, _)| *ip == b.gateway) || b.gateway == self.server_ip
                }),
            )),
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

    /// Read-only reconcile (SPEC §10): findings and a Nagios exit code.
    async fn verify(&mut self, all: bool) -> Value {
        let mut f: Vec<Finding> = Vec::new();
        let mut add = |severity: u8, what: String| f.push(Finding { severity, what });
        let bindings = self.engine.desired(now_ms());
        match self.observe().await {
            Ok(observed) => {
                let desired = KernelState::desired(&bindings, self.engine.playground_alias());
                for ip in desired.routes.difference(&observed.routes) {
                    add(2, format!("route {ip}/32 missing"));
                }
                for ip in observed.routes.difference(&desired.routes) {
                    add(
                        1,
                        format!("route {ip}/32 (proto 108) explained by no lease"),
                    );
                }
                for (ip, p) in desired.aliases.difference(&observed.aliases) {
                    add(2, format!("alias {ip}/{p} missing"));
                }
                for (ip, p) in observed.aliases.difference(&desired.aliases) {
                    add(1, format!("alias {ip}/{p} explained by no lease"));
                }
            }
            Err(e) => add(3, format!("kernel state unreadable: {e}")),
        }
        let want = self.nft.cfg.desired(&bindings);
        match self.nft.observe_elements().await {
            Ok(have) => {
                for (set, els) in &want.elements {
                    match have.get(set) {
                        None => add(3, format!("set {set} does not exist")),
                        Some(h) => {
                            for e in els.difference(h) {
                                add(2, format!("element {e} missing from set {set}"));
                            }
                            let pool = self.engine.pool().cidr();
                            let extra: BTreeSet<&Element> = h
                                .difference(els)
                                .filter(|e| matches!(e, Element::Addr(a) if pool.contains(*a)))
                                .collect();
                            for e in extra {
                                add(
                                    0,
                                    format!(
                                        "element {e} in co-managed set {set} explained by no lease"
                                    ),
                                );
                            }
                        }
                    }
                }
            }
            Err(e) => add(3, format!("nft sets unreadable: {e}")),
        }
        match self.nft.observe_snat().await {
            Ok(have) => {
                let have: BTreeSet<_> = have.into_iter().map(|(r, _)| r).collect();
                for r in want.snat.difference(&have) {
                    add(2, format!("SNAT rule for {} missing", r.client));
                }
                for r in have.difference(&want.snat) {
                    add(
                        1,
                        format!("SNAT rule for {} explained by no lease", r.client),
                    );
                }
            }
            Err(e) => add(3, format!("nft table unreadable: {e}")),
        }
        if self.cfg.xdp != crate::config::XdpMode::Off && self.admission.mode() == "off" {
            add(
                2,
                "XDP program is not attached: admission runs in userspace".into(),
            );
        }
        if let Some(dir) = self.admission.pin_dir() {
            if !dir.join("link_native").exists() && !dir.join("link_generic").exists() {
                add(2, format!("no pinned XDP link under {}", dir.display()));
            }
        }
        for problem in self.engine.check_consistency() {
            add(2, format!("bookkeeping: {problem}"));
        }
        for problem in self.engine.check_conservation() {
            add(1, format!("address conservation: {problem}"));
        }
        if all {
            if self.engine.offers_outstanding() > 0 {
                add(
                    0,
                    format!("{} offers outstanding", self.engine.offers_outstanding()),
                );
            }
            for l in self.engine.leases().filter(|l| l.grace_until.is_some()) {
                add(0, format!("lease {} → {} in its grace period", l.mac, l.ip));
            }
        }
        let worst = f
            .iter()
            .map(|x| x.severity)
            .filter(|s| *s > 0)
            .max()
            .unwrap_or(0);
        let result = ["ok", "moderate", "alarming", "unknown"][usize::from(worst)];
        json!({"result": result, "exit_code": worst, "findings": f.iter().map(Finding::json).collect::<Vec<_>>()})
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
                Response::ok(json!({"blocked": m.to_string(), "seconds": seconds}))
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
                Response::ok(json!({"unblocked": m.to_string()}))
            }
            Err(e) => Response::error(format!("cannot unblock {m}: {e}")),
        }
    }
}
