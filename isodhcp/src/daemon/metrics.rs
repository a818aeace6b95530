//! `--metrics-listen ADDR:PORT` (design.md §Metrics): OpenMetrics text over HTTP,
//! encoded by `prometheus-client`. The HTTP side is deliberately tiny (GET
//! /metrics only, bounded request size, timeouts, a few connections at a
//! time); the numbers are read on the event loop so they are consistent.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::{debug, info};

use super::{Daemon, now_ms};

type Labels = Vec<(String, String)>;

/// A scrape waiting for the event loop.
pub type Scrape = oneshot::Sender<String>;

/// Seconds a durable lease write took (journal fsync or snapshot).
pub fn commit_histogram() -> Histogram {
    // 50 µs .. ~1.6 s
    Histogram::new(exponential_buckets(0.00005, 2.0, 16))
}

/// Binds the listener and serves scrapes, asking the loop through `tx`.
pub async fn serve(addr: SocketAddr, tx: mpsc::Sender<Scrape>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    info!(%addr, "metrics endpoint listening (GET /metrics)");
    let slots = Arc::new(Semaphore::new(4));
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                continue;
            };
            let tx = tx.clone();
            tokio::spawn(async move {
                if let Err(e) = handle(stream, tx).await {
                    debug!(error = %e, "metrics connection ended");
                }
                drop(permit);
            });
        }
    });
    Ok(())
}

async fn handle(mut stream: TcpStream, tx: mpsc::Sender<Scrape>) -> std::io::Result<()> {
    let mut buf = vec![0u8; 8192];
    let mut n = 0;
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        while n < buf.len() && !buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
            let k = stream.read(&mut buf[n..]).await?;
            if k == 0 {
                break;
            }
            n += k;
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if read.is_err() {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&buf[..n]);
    let first = head.lines().next().unwrap_or_default();
    let (status, ctype, body) = if first.starts_with("GET /metrics ") || first == "GET /metrics" {
        let (back, text) = oneshot::channel();
        let body = if tx.send(back).await.is_ok() {
            text.await.unwrap_or_default()
        } else {
            String::new()
        };
        (
            "200 OK",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body,
        )
    } else {
        (
            "404 Not Found",
            "text/plain",
            "try GET /metrics\n".to_string(),
        )
    };
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tokio::time::timeout(Duration::from_secs(5), stream.write_all(resp.as_bytes()))
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Registers a gauge holding `v`.
fn gauge(r: &mut Registry, name: &str, help: &str, v: i64) {
    let g = Gauge::<i64>::default();
    g.set(v);
    r.register(name, help, g);
}

impl Daemon {
    /// The OpenMetrics text of the current state.
    pub(super) fn metrics_text(&self) -> String {
        let mut r = Registry::with_prefix("isodhcp");
        self.register_pool(&mut r);
        self.register_messages(&mut r);
        self.register_admission(&mut r);
        self.register_hooks(&mut r);
        r.register(
            "lease_commit_seconds",
            "Time of a durable lease write (journal append + fsync, or snapshot)",
            self.commit_latency.clone(),
        );
        let mut out = String::new();
        if encode(&mut out, &r).is_err() {
            out.clear();
        }
        out
    }

    /// Leases by mode, the pool, offers and uptime.
    fn register_pool(&self, r: &mut Registry) {
        let leases = Family::<Labels, Gauge>::default();
        let mut by_mode = std::collections::BTreeMap::new();
        for l in self.engine.leases() {
            *by_mode
                .entry((l.profile.mode.as_str(), l.is_static))
                .or_insert(0i64) += 1;
        }
        for ((mode, st), n) in by_mode {
            leases
                .get_or_create(&labels(&[
                    ("mode", mode),
                    ("static", if st { "true" } else { "false" }),
                ]))
                .set(n);
        }
        r.register("leases", "Leases by mode", leases);
        let pool = self.engine.pool();
        let uptime_s = now_ms().saturating_sub(self.started) / 1000;
        for (name, help, v) in [
            (
                "pool_size",
                "Addresses in the pool CIDR",
                pool.cidr().size(),
            ),
            (
                "pool_free",
                "Free addresses (main and playground pools)",
                pool.free_count() as u64,
            ),
            (
                "pool_quarantined",
                "Quarantined addresses",
                self.engine.quarantined_count() as u64,
            ),
            (
                "compat_blocks_free",
                "Free aligned /30 blocks",
                pool.free_blocks() as u64,
            ),
            (
                "offers_outstanding",
                "Offers held (capped)",
                self.engine.offers_outstanding() as u64,
            ),
            (
                "xdp_offer_stripe_slots",
                "Slots of the XDP OFFER responder's stripe (0: responder off)",
                u64::from(self.engine.stripe().0),
            ),
            (
                "xdp_offer_stripe_filled",
                "Stripe slots holding an address",
                self.engine.stripe_used() as u64,
            ),
            ("uptime_seconds", "Seconds since start", uptime_s),
        ] {
            gauge(r, name, help, v as i64);
        }
    }

    /// What the engine received, sent and ignored.
    fn register_messages(&self, r: &mut Registry) {
        let st = &self.engine.stats;
        let received = Family::<Labels, Counter>::default();
        for (t, n) in &st.received {
            received.get_or_create(&labels(&[("type", t)])).inc_by(*n);
        }
        r.register(
            "messages_received",
            "DHCP messages received by type",
            received,
        );
        let sent = Family::<Labels, Counter>::default();
        for (t, n) in [
            ("offer", st.offers),
            ("ack", st.acks + st.informs),
            ("nak", st.naks),
        ] {
            sent.get_or_create(&labels(&[("type", t)])).inc_by(n);
        }
        r.register("messages_sent", "DHCP replies by type", sent);
        let naks = Family::<Labels, Counter>::default();
        for (why, n) in &st.nak_reasons {
            naks.get_or_create(&labels(&[("reason", why)])).inc_by(*n);
        }
        r.register("naks", "NAKs by reason", naks);
        let adoptions = Counter::<u64>::default();
        adoptions.inc_by(st.adoptions);
        r.register(
            "adoptions",
            "INIT-REBOOT clients without a record whose address was adopted",
            adoptions,
        );
        let claims = Counter::<u64>::default();
        claims.inc_by(st.stripe_claims);
        r.register(
            "stripe_claims",
            "REQUESTs that took the address an XDP OFFER carried",
            claims,
        );
        let ignored = Family::<Labels, Counter>::default();
        for (why, n) in &st.dropped {
            ignored
                .get_or_create(&labels(&[("reason", &format!("{why:?}"))]))
                .inc_by(*n);
        }
        r.register(
            "messages_ignored",
            "Messages the engine answered with silence, by reason",
            ignored,
        );
    }

    /// Frames the admission layer dropped or let through.
    fn register_admission(&self, r: &mut Registry) {
        let adm = Family::<Labels, Counter>::default();
        let c = self.admission.counters();
        let layer = if self.admission.mode() == "off" {
            "userspace"
        } else {
            "xdp"
        };
        for (name, v) in c.named() {
            if let Some(reason) = name.strip_prefix("drop_") {
                adm.get_or_create(&labels(&[("layer", layer), ("reason", reason)]))
                    .inc_by(v);
            }
        }
        r.register(
            "admission_drops",
            "DHCP frames dropped before the engine, by reason",
            adm,
        );
        let passed = Family::<Labels, Counter>::default();
        for (name, v) in [
            ("redirect", c.redirect),
            ("pass_stack", c.pass_stack),
            ("pass_trusted", c.pass_trusted),
        ] {
            passed
                .get_or_create(&labels(&[("layer", layer), ("verdict", name)]))
                .inc_by(v);
        }
        r.register("admission_passed", "DHCP frames admitted, by path", passed);
    }

    fn register_hooks(&self, r: &mut Registry) {
        if let Some(h) = &self.hooks {
            let s = h.stats();
            let hooks = Family::<Labels, Counter>::default();
            for (k, v) in [
                ("run", s.runs),
                ("failure", s.failures),
                ("timeout", s.timeouts),
                ("dropped", s.dropped),
                ("coalesced", s.coalesced),
            ] {
                hooks.get_or_create(&labels(&[("outcome", k)])).inc_by(v);
            }
            r.register("hooks", "Hook executions by outcome", hooks);
        }
    }
}
