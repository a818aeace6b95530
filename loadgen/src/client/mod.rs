//! DORA clients on one packet socket, driven by one event loop.
//!
//! Plans:
//! - [`Plan::Known`]: one fixed MAC does a full DORA once (reported as
//!   `initial`, not counted), then every `interval` one attempt: a renewal
//!   (unicast REQUEST with ciaddr, or broadcast REBINDING) or a full DORA.
//!   One attempt at a time, like a real client.
//! - [`Plan::New`]: every `interval` a fresh random MAC starts a full DORA;
//!   attempts overlap (at most `max_inflight`).
//! - [`Plan::Dora`]: `clients` fresh MACs, `inflight` at a time, as fast as
//!   the server answers (leases/s); with `renew` = R > 0, then every client
//!   that got a lease renews it (unicast REQUEST with ciaddr), R rounds,
//!   again `inflight` at a time (renewals/s, reported separately).
//!
//! Every message is retransmitted after `timeout` up to `max_tries` sends
//! per phase (DISCOVER phase, REQUEST phase); the xid stays the same. An
//! attempt succeeds on ACK (latency: first send to ACK) and fails on NAK
//! or when a phase runs out of tries. New attempts start only during
//! `duration`; in-flight ones may finish during a drain period long enough
//! for a full retry budget; whatever is still open then is "abandoned".

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::Result;
use isodhcp::wire::Mac;
use isodhcp::wire::options::MessageType;

use crate::packet::{Req, client_frame, parse_reply};
use crate::rng::Rng;
use crate::sock::PacketSocket;
use crate::stats::AttemptStats;

mod report;

pub use report::to_json;

/// How the known client repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// RENEWING: unicast REQUEST to the server with ciaddr.
    Renew,
    /// REBINDING: broadcast REQUEST with ciaddr.
    Rebind,
    /// A full DORA every time.
    Dora,
}

#[derive(Debug, Clone)]
pub enum Plan {
    Known {
        mac: Mac,
        interval: Duration,
        repeat: Repeat,
    },
    New {
        interval: Duration,
        max_inflight: usize,
        release: bool,
        mac_prefix: u8,
    },
    Dora {
        clients: u64,
        inflight: usize,
        release: bool,
        mac_prefix: u8,
        /// Rounds of renewals after the DORA phase (0 = none); each round
        /// renews every lease once.
        renew: u32,
    },
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub plan: Plan,
    pub timeout: Duration,
    pub max_tries: u32,
    /// Attempts start only during this window.
    pub duration: Duration,
}

impl ClientConfig {
    /// Drain period after `duration`: a full retry budget of both phases.
    pub fn drain(&self) -> Duration {
        self.timeout * self.max_tries * 2 + Duration::from_millis(500)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Selecting,
    Requesting,
    Renewing,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    ip: Ipv4Addr,
    server_ip: Ipv4Addr,
    server_mac: Mac,
}

/// Which statistics an attempt counts in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bucket {
    /// The known client's initial DORA (reported, not counted).
    Initial,
    /// The plan's main attempts.
    Main,
    /// The `dora` plan's renewal phase.
    Renew,
}

struct Attempt {
    mac: Mac,
    phase: Phase,
    frame: Vec<u8>,
    tries: u32,
    retries: u32,
    first_send: Instant,
    next_timeout: Instant,
    bucket: Bucket,
}

#[derive(Debug, Default, Clone)]
pub struct ClientResult {
    pub initial: Option<AttemptStats>,
    pub stats: AttemptStats,
    /// `dora` with `renew`: the renewal phase.
    pub renew: Option<AttemptStats>,
    /// Duration of the renewal phase.
    pub renew_elapsed: Duration,
    pub tx_frames: u64,
    pub rx_frames: u64,
    /// Replies not for one of our open attempts (other xids, late duplicates).
    pub rx_ignored: u64,
    /// New-client ticks skipped because `max_inflight` attempts were open.
    pub skipped_ticks: u64,
    /// From the first counted attempt to the end of the loop (for `dora`:
    /// of the DORA phase).
    pub elapsed: Duration,
}

/// What a phase's step decided (see `Engine::run_phase`).
enum Step {
    /// The phase is complete.
    Done,
    /// Go on; wake at this instant at the latest (besides timeouts).
    Wait(Option<Instant>),
}

/// Where a paced plan stands in its start schedule.
struct Pace {
    /// `known`, `new`: when the next attempt is due.
    next_start: Instant,
    /// `dora`: clients started so far.
    started: u64,
}

struct Engine<'a> {
    sock: &'a PacketSocket,
    cfg: &'a ClientConfig,
    rng: Rng,
    open: HashMap<u32, Attempt>,
    known_lease: Option<Lease>,
    /// `dora` with `renew`: the leases the DORA phase got, in ACK order.
    leases: Vec<(Mac, Lease)>,
    res: ClientResult,
    initial: AttemptStats,
    renew: AttemptStats,
}

impl Engine<'_> {
    fn stats(&mut self, b: Bucket) -> &mut AttemptStats {
        match b {
            Bucket::Initial => &mut self.initial,
            Bucket::Main => &mut self.res.stats,
            Bucket::Renew => &mut self.renew,
        }
    }

    fn send(&mut self, frame: &[u8]) -> Result<()> {
        if self.sock.send(frame)? {
            self.res.tx_frames += 1;
        }
        Ok(())
    }

    fn start(&mut self, mac: Mac, req: Req, bucket: Bucket, now: Instant) -> Result<()> {
        let mut xid = self.rng.next_u32();
        while self.open.contains_key(&xid) {
            xid = self.rng.next_u32();
        }
        let phase = match req {
            Req::Discover => Phase::Selecting,
            _ => Phase::Renewing,
        };
        let frame = client_frame(mac, xid, 0, req)?;
        self.send(&frame)?;
        self.stats(bucket).attempts += 1;
        self.open.insert(
            xid,
            Attempt {
                mac,
                phase,
                frame,
                tries: 1,
                retries: 0,
                first_send: now,
                next_timeout: now + self.cfg.timeout,
                bucket,
            },
        );
        Ok(())
    }

    /// Starts the known client's next attempt (renewal if it holds a lease).
    fn start_known(
        &mut self,
        mac: Mac,
        repeat: Repeat,
        bucket: Bucket,
        now: Instant,
    ) -> Result<()> {
        let req = match (self.known_lease, repeat) {
            (Some(l), Repeat::Renew) => Req::Renew {
                ciaddr: l.ip,
                server_ip: l.server_ip,
                server_mac: l.server_mac,
            },
            (Some(l), Repeat::Rebind) => Req::Rebind { ciaddr: l.ip },
            _ => Req::Discover,
        };
        self.start(mac, req, bucket, now)
    }

    fn finish(&mut self, xid: u32, ok: bool, nak: bool, now: Instant) -> Option<Attempt> {
        let a = self.open.remove(&xid)?;
        let st = self.stats(a.bucket);
        st.retries += u64::from(a.retries);
        if ok {
            st.successes += 1;
            st.latencies_ms
                .push(now.duration_since(a.first_send).as_secs_f64() * 1000.0);
            st.success_retries.push(a.retries);
        } else {
            st.failures += 1;
            if nak {
                st.naks += 1;
            }
        }
        Some(a)
    }

    fn on_frame(&mut self, f: &[u8], now: Instant) -> Result<()> {
        self.res.rx_frames += 1;
        let Some(r) = parse_reply(f) else {
            self.res.rx_ignored += 1;
            return Ok(());
        };
        let Some(a) = self.open.get_mut(&r.xid) else {
            self.res.rx_ignored += 1;
            return Ok(());
        };
        if a.mac != r.chaddr {
            self.res.rx_ignored += 1;
            return Ok(());
        }
        match (r.kind, a.phase) {
            (MessageType::Offer, Phase::Selecting) => {
                let server_id = r.server_id.unwrap_or(r.src_ip);
                let frame = client_frame(
                    a.mac,
                    r.xid,
                    0,
                    Req::Select {
                        requested: r.yiaddr,
                        server_id,
                    },
                )?;
                a.phase = Phase::Requesting;
                a.tries = 1;
                a.next_timeout = now + self.cfg.timeout;
                a.frame.clone_from(&frame);
                self.send(&frame)?;
            }
            (MessageType::Ack, Phase::Requesting | Phase::Renewing) => {
                let a = self.finish(r.xid, true, false, now).expect("open attempt");
                let lease = Lease {
                    ip: r.yiaddr,
                    server_ip: r.server_id.unwrap_or(r.src_ip),
                    server_mac: r.src_mac,
                };
                // RELEASE after the client's last ACK: the DORA one, or the
                // renewal when the `dora` plan renews.
                let release = match self.cfg.plan {
                    Plan::Known { .. } => {
                        self.known_lease = Some(lease);
                        false
                    }
                    Plan::New { release, .. } => release,
                    Plan::Dora { release, renew, .. } => {
                        if renew > 0 && a.bucket == Bucket::Main {
                            self.leases.push((a.mac, lease));
                            false
                        } else {
                            release
                        }
                    }
                };
                if release {
                    let f = client_frame(
                        a.mac,
                        self.rng.next_u32(),
                        0,
                        Req::Release {
                            ciaddr: lease.ip,
                            server_ip: lease.server_ip,
                            server_mac: lease.server_mac,
                        },
                    )?;
                    self.send(&f)?;
                }
            }
            (MessageType::Nak, Phase::Requesting | Phase::Renewing) => {
                self.finish(r.xid, false, true, now);
                if matches!(self.cfg.plan, Plan::Known { .. }) {
                    self.known_lease = None;
                }
            }
            _ => self.res.rx_ignored += 1,
        }
        Ok(())
    }

    fn on_timeouts(&mut self, now: Instant) -> Result<()> {
        let due: Vec<u32> = self
            .open
            .iter()
            .filter(|(_, a)| a.next_timeout <= now)
            .map(|(x, _)| *x)
            .collect();
        for xid in due {
            let a = self.open.get_mut(&xid).expect("listed above");
            if a.tries >= self.cfg.max_tries {
                let phase = a.phase;
                self.finish(xid, false, false, now);
                if phase == Phase::Renewing && matches!(self.cfg.plan, Plan::Known { .. }) {
                    // A renewal nobody answered: start over with DORA next time.
                    self.known_lease = None;
                }
                continue;
            }
            a.tries += 1;
            a.retries += 1;
            a.next_timeout = now + self.cfg.timeout;
            let f = a.frame.clone();
            self.send(&f)?;
        }
        Ok(())
    }

    fn next_timeout(&self) -> Option<Instant> {
        self.open.values().map(|a| a.next_timeout).min()
    }

    /// Receives for at most `until - now` (capped), then handles timeouts.
    fn pump(&mut self, until: Instant, buf: &mut [u8]) -> Result<()> {
        let now = Instant::now();
        let wait = until
            .saturating_duration_since(now)
            .min(Duration::from_millis(50));
        if self.sock.wait_readable(wait)? {
            // Bounded: at most 4096 frames per pump.
            for _ in 0..4096 {
                let Some(f) = self.sock.try_recv(buf)? else {
                    break;
                };
                let f = f.to_vec();
                self.on_frame(&f, Instant::now())?;
            }
        }
        self.on_timeouts(Instant::now())
    }

    fn abandon_all(&mut self) {
        let open: Vec<Attempt> = self.open.drain().map(|(_, a)| a).collect();
        for a in open {
            let st = self.stats(a.bucket);
            st.abandoned += 1;
            st.retries += u64::from(a.retries);
        }
    }
}

/// Runs the plan. `on_ready` is called once the client is measuring (for
/// the known client: after its initial DORA).
pub fn run(
    sock: &PacketSocket,
    cfg: &ClientConfig,
    rng: Rng,
    on_ready: impl FnOnce(),
) -> Result<ClientResult> {
    let mut e = Engine {
        sock,
        cfg,
        rng,
        open: HashMap::new(),
        known_lease: None,
        leases: Vec::new(),
        res: ClientResult::default(),
        initial: AttemptStats::default(),
        renew: AttemptStats::default(),
    };
    let mut buf = vec![0u8; 4096];

    if let Plan::Known { mac, .. } = cfg.plan {
        e.initial_dora(mac, &mut buf)?;
    }
    on_ready();

    e.main_phase(&mut buf)?;

    if let Plan::Dora {
        renew, inflight, ..
    } = cfg.plan
    {
        if renew > 0 {
            e.renew_phase(inflight, renew, &mut buf)?;
        }
    }
    Ok(e.res)
}

impl Engine<'_> {
    /// The known client's initial DORA (bounded by one attempt's retry
    /// budget), reported as `initial`.
    fn initial_dora(&mut self, mac: Mac, buf: &mut [u8]) -> Result<()> {
        let now = Instant::now();
        self.start(mac, Req::Discover, Bucket::Initial, now)?;
        let hard = now + self.cfg.drain();
        while !self.open.is_empty() && Instant::now() < hard {
            let until = self.next_timeout().unwrap_or(hard).min(hard);
            self.pump(until, buf)?;
        }
        self.abandon_all();
        self.res.initial = Some(self.initial.clone());
        Ok(())
    }

    /// The plan's counted attempts: starts them during `duration`, then
    /// drains; sets `res.elapsed`.
    fn main_phase(&mut self, buf: &mut [u8]) -> Result<()> {
        let start = Instant::now();
        let mut pace = Pace {
            next_start: start,
            started: 0,
        };
        self.run_phase(start, buf, |e, starting, now| {
            if e.start_due(starting, now, &mut pace)? || (!starting && e.open.is_empty()) {
                return Ok(Step::Done);
            }
            // Paced plans also wake for their next start; `dora` starts only
            // when a reply or a timeout frees a slot (no busy polling).
            let paced = starting && !matches!(e.cfg.plan, Plan::Dora { .. });
            Ok(Step::Wait(paced.then(|| pace.next_start.max(now))))
        })?;
        self.res.elapsed = start.elapsed();
        Ok(())
    }

    /// The event loop of a phase that began at `start`. Each turn, `step`
    /// starts what is due (`starting`: still within `duration`) and says
    /// whether the phase is complete or, besides the next timeout, until
    /// when at the latest to wait; at the hard stop (`duration` + drain)
    /// whatever is still open is abandoned.
    fn run_phase(
        &mut self,
        start: Instant,
        buf: &mut [u8],
        mut step: impl FnMut(&mut Self, bool, Instant) -> Result<Step>,
    ) -> Result<()> {
        let stop_starting = start + self.cfg.duration;
        let hard_stop = stop_starting + self.cfg.drain();
        // Bounded by hard_stop: every pump waits at most 50 ms.
        loop {
            let now = Instant::now();
            if now >= hard_stop {
                self.abandon_all();
                break;
            }
            let starting = now < stop_starting;
            let wake = match step(self, starting, now)? {
                Step::Done => break,
                Step::Wait(wake) => wake,
            };
            let mut until = self.next_timeout().unwrap_or(hard_stop).min(hard_stop);
            if let Some(w) = wake {
                until = until.min(w);
            }
            self.pump(until, buf)?;
        }
        Ok(())
    }

    /// Starts the attempts the plan wants at `now` (none once `starting` is
    /// over). Returns true when the plan is complete (`dora`: every client
    /// started and none open).
    fn start_due(&mut self, starting: bool, now: Instant, pace: &mut Pace) -> Result<bool> {
        let cfg = self.cfg;
        match cfg.plan {
            Plan::Known {
                mac,
                interval,
                repeat,
            } => {
                if starting && self.open.is_empty() && now >= pace.next_start {
                    self.start_known(mac, repeat, Bucket::Main, now)?;
                    pace.next_start = (pace.next_start + interval).max(now);
                }
            }
            Plan::New {
                interval,
                max_inflight,
                mac_prefix,
                ..
            } => {
                // At most 1000 starts per loop turn (catch-up bound).
                for _ in 0..1000 {
                    if !(starting && now >= pace.next_start) {
                        break;
                    }
                    if self.open.len() < max_inflight {
                        let mac = self.rng.mac(mac_prefix);
                        self.start(mac, Req::Discover, Bucket::Main, now)?;
                    } else {
                        self.res.skipped_ticks += 1;
                    }
                    pace.next_start += interval;
                }
            }
            Plan::Dora {
                clients,
                inflight,
                mac_prefix,
                ..
            } => {
                while starting && pace.started < clients && self.open.len() < inflight {
                    let mac = self.rng.mac(mac_prefix);
                    self.start(mac, Req::Discover, Bucket::Main, now)?;
                    pace.started += 1;
                }
                if pace.started >= clients && self.open.is_empty() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Every lease of the DORA phase renewed `rounds` times (RENEWING:
    /// unicast REQUEST to the server with ciaddr; round after round),
    /// `inflight` at a time; starts only during `duration`, then the usual
    /// drain.
    fn renew_phase(&mut self, inflight: usize, rounds: u32, buf: &mut [u8]) -> Result<()> {
        let leases = std::mem::take(&mut self.leases);
        let total = leases.len() * rounds as usize;
        let start = Instant::now();
        let mut next = 0usize;
        self.run_phase(start, buf, |e, starting, now| {
            while starting && next < total && e.open.len() < inflight {
                let (mac, l) = leases[next % leases.len()];
                next += 1;
                let req = Req::Renew {
                    ciaddr: l.ip,
                    server_ip: l.server_ip,
                    server_mac: l.server_mac,
                };
                e.start(mac, req, Bucket::Renew, now)?;
            }
            if e.open.is_empty() && (!starting || next >= total) {
                return Ok(Step::Done);
            }
            Ok(Step::Wait(None))
        })?;
        self.res.renew_elapsed = start.elapsed();
        self.res.renew = Some(std::mem::take(&mut self.renew));
        Ok(())
    }
}
