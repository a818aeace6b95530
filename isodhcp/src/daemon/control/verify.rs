//! `verify`: a read-only reconcile. What the leases need is compared with
//! what the kernel, nft and the admission layer hold; each difference is a
//! finding with a severity (the worst one is the Nagios exit code).

use std::collections::BTreeSet;

use crate::config::XdpMode;
use crate::control::reply::{Finding, Severity, VerifyReply};
use crate::engine::Binding;
use crate::system::nft::Element;
use crate::system::reconcile::KernelState;

use super::super::{Daemon, now_ms};

/// Findings as they are made.
#[derive(Default)]
struct Findings(Vec<Finding>);

impl Findings {
    fn add(&mut self, severity: Severity, what: String) {
        self.0.push(Finding { severity, what });
    }
}

impl Daemon {
    pub(in crate::daemon) async fn verify(&mut self, all: bool) -> VerifyReply {
        let mut f = Findings::default();
        let bindings = self.engine.desired(now_ms());
        self.verify_kernel(&bindings, &mut f).await;
        self.verify_nft(&bindings, &mut f).await;
        if self.cfg.xdp != XdpMode::Off && self.admission.mode() == "off" {
            f.add(
                Severity::Alarming,
                "XDP program is not attached: admission runs in userspace".into(),
            );
        }
        if let Some(dir) = self.admission.pin_dir() {
            if !dir.join("link_native").exists() && !dir.join("link_generic").exists() {
                f.add(
                    Severity::Alarming,
                    format!("no pinned XDP link under {}", dir.display()),
                );
            }
        }
        for problem in self.engine.check_consistency() {
            f.add(Severity::Alarming, format!("bookkeeping: {problem}"));
        }
        for problem in self.engine.check_conservation() {
            f.add(
                Severity::Moderate,
                format!("address conservation: {problem}"),
            );
        }
        if all {
            if self.engine.offers_outstanding() > 0 {
                let n = self.engine.offers_outstanding();
                f.add(Severity::Low, format!("{n} offers outstanding"));
            }
            for l in self.engine.leases().filter(|l| l.grace_until.is_some()) {
                f.add(
                    Severity::Low,
                    format!("lease {} → {} in its grace period", l.mac, l.ip),
                );
            }
        }
        VerifyReply::new(f.0)
    }

    /// Routes and aliases.
    async fn verify_kernel(&mut self, bindings: &[Binding], f: &mut Findings) {
        let observed = match self.observe().await {
            Ok(o) => o,
            Err(e) => return f.add(Severity::Unknown, format!("kernel state unreadable: {e}")),
        };
        let desired = KernelState::desired(bindings, self.engine.playground_alias());
        for ip in desired.routes.difference(&observed.routes) {
            f.add(Severity::Alarming, format!("route {ip}/32 missing"));
        }
        for ip in observed.routes.difference(&desired.routes) {
            f.add(
                Severity::Moderate,
                format!("route {ip}/32 (proto 108) explained by no lease"),
            );
        }
        for (ip, p) in desired.aliases.difference(&observed.aliases) {
            f.add(Severity::Alarming, format!("alias {ip}/{p} missing"));
        }
        for (ip, p) in observed.aliases.difference(&desired.aliases) {
            f.add(
                Severity::Moderate,
                format!("alias {ip}/{p} explained by no lease"),
            );
        }
    }

    /// Named-set elements and SNAT rules.
    async fn verify_nft(&mut self, bindings: &[Binding], f: &mut Findings) {
        let want = self.nft.cfg.desired(bindings);
        match self.nft.observe_elements().await {
            Ok(have) => {
                for (set, els) in &want.elements {
                    let Some(h) = have.get(set) else {
                        f.add(Severity::Unknown, format!("set {set} does not exist"));
                        continue;
                    };
                    for e in els.difference(h) {
                        f.add(
                            Severity::Alarming,
                            format!("element {e} missing from set {set}"),
                        );
                    }
                    let pool = self.engine.pool().cidr();
                    let extra: BTreeSet<&Element> = h
                        .difference(els)
                        .filter(|e| matches!(e, Element::Addr(a) if pool.contains(*a)))
                        .collect();
                    for e in extra {
                        f.add(
                            Severity::Low,
                            format!("element {e} in co-managed set {set} explained by no lease"),
                        );
                    }
                }
            }
            Err(e) => f.add(Severity::Unknown, format!("nft sets unreadable: {e}")),
        }
        match self.nft.observe_snat().await {
            Ok(have) => {
                let have: BTreeSet<_> = have.into_iter().map(|(r, _)| r).collect();
                for r in want.snat.difference(&have) {
                    f.add(
                        Severity::Alarming,
                        format!("SNAT rule for {} missing", r.client),
                    );
                }
                for r in have.difference(&want.snat) {
                    f.add(
                        Severity::Moderate,
                        format!("SNAT rule for {} explained by no lease", r.client),
                    );
                }
            }
            Err(e) => f.add(Severity::Unknown, format!("nft table unreadable: {e}")),
        }
    }
}
