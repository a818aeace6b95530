//! Who decides which DHCP frames reach the engine (design.md §Admission):
//! the XDP program in the kernel when it is attached, else the userspace
//! [`Limiter`]; both run the one decision of `isodhcp_common::decide`. This
//! module only orchestrates: it keeps the kernel maps and the userspace
//! tables in step (deny, trust, known clients), owns the clock of the
//! userspace path, and opens the matching datapath.

use anyhow::{Context, Result};
use isodhcp_common::{COUNTER_COUNT, Counters};
use tracing::{info, warn};

use super::Config;
use crate::config::XdpMode;
use crate::datapath::af_packet::AfPacket;
use crate::datapath::af_xdp::{self, AfXdp, Queue};
use crate::datapath::ethtool;
use crate::datapath::limiter::Limiter;
use crate::datapath::{Datapath, Hybrid, Origin};
use crate::engine::Engine;
use crate::engine::stripe::StripeUpdate;
use crate::system::xdp::{self, XdpAttachment, XdpError, XdpMaps};
use crate::wire::Mac;
use crate::wire::frame;
use crate::wire::view::MessageView;

/// CLOCK_MONOTONIC in ns: the clock of the kernel's token buckets and deny expiries.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

pub enum Admission {
    /// The XDP program validated and rate-limited every frame that reaches
    /// the AF_XDP sockets. Frames that arrive through the packet socket
    /// instead went around it (a queue without a socket, or anything the
    /// program passed that the kernel still delivered here): they go
    /// through the userspace [`Limiter`] with the same rules and limits.
    Kernel(Box<XdpAttachment>, Box<Limiter>),
    /// XDP is off: validate and limit here.
    User(Box<Limiter>),
}

impl Admission {
    /// The userspace limiter: the whole admission with XDP off, the packet
    /// socket's with XDP on.
    fn limiter(&mut self) -> &mut Limiter {
        match self {
            Admission::Kernel(_, l) | Admission::User(l) => l,
        }
    }

    /// Keeps the known-clients set (kernel map and limiter) in step with the engine.
    pub fn set_known(&mut self, mac: Mac, known: bool) {
        if let Admission::Kernel(x, _) = self {
            x.maps.set_known(mac, known);
        }
        self.limiter().set_known(mac, known);
    }

    /// Drops every frame from `mac` until `until_mono_ns` (0 = for ever).
    pub fn deny(&mut self, mac: Mac, until_mono_ns: u64) -> Result<(), String> {
        if let Admission::Kernel(x, _) = self {
            x.maps.deny(mac, until_mono_ns).map_err(|e| e.to_string())?;
        }
        self.limiter().deny(mac, until_mono_ns);
        Ok(())
    }

    pub fn undeny(&mut self, mac: Mac) -> Result<(), String> {
        if let Admission::Kernel(x, _) = self {
            x.maps.undeny(mac).map_err(|e| e.to_string())?;
        }
        self.limiter().undeny(mac);
        Ok(())
    }

    /// Writes a stripe slot the engine changed into the kernel map.
    pub fn set_stripe(&mut self, u: &StripeUpdate) {
        if let Admission::Kernel(x, _) = self {
            let slot = xdp::offer::stripe_slot(u, super::now_ms(), monotonic_ns());
            if let Err(e) = x.maps.set_stripe(u.index, slot) {
                warn!(index = u.index, error = %e, "cannot write an XDP stripe slot");
            }
        }
    }

    /// Whether XDP_TX fails on `iface` while the responder sends OFFERs:
    /// the driver's XDP_TX error count (ethtool statistics) grew since the
    /// last call by nine tenths of `tx_offer`'s growth or more
    /// ([`tx_failing`]). That happens on a veth whose peer runs no XDP
    /// program, where every OFFER would vanish. `last` carries the two
    /// counts from call to call. `Some`: the errors seen.
    pub fn offer_tx_failing(&self, iface: &str, last: &mut Option<(u64, u64)>) -> Option<u64> {
        if !self.offering() {
            return None;
        }
        let now = (self.counters().tx_offer, ethtool::xdp_tx_errors(iface)?);
        tx_failing(last.replace(now)?, now)
    }

    /// Turns the XDP OFFER responder off (its replies do not leave).
    pub fn offer_off(&mut self) {
        if let Admission::Kernel(x, _) = self {
            if let Err(e) = x.maps.offer_off() {
                warn!(error = %e, "cannot turn the XDP OFFER responder off");
            }
        }
    }

    /// Whether the XDP OFFER responder runs.
    pub fn offering(&self) -> bool {
        matches!(self, Admission::Kernel(x, _) if x.maps.offering())
    }

    /// Keeps the XDP OFFER responder alive for another heartbeat period;
    /// `stop` ends it at once (shutdown).
    pub fn heartbeat(&mut self, stop: bool) {
        if let Admission::Kernel(x, _) = self {
            let until = if stop {
                0
            } else {
                xdp::offer::alive_until(monotonic_ns())
            };
            if let Err(e) = x.maps.heartbeat(until) {
                warn!(error = %e, "cannot write the XDP OFFER responder's heartbeat");
            }
        }
    }

    /// Whether the admission layer counts `mac` as a known client.
    pub fn is_known(&self, mac: Mac) -> bool {
        match self {
            Admission::Kernel(x, _) => x.maps.is_known(mac),
            Admission::User(l) => l.is_known(mac),
        }
    }

    /// Where the XDP objects are pinned (kernel mode).
    pub fn pin_dir(&self) -> Option<&std::path::Path> {
        match self {
            Admission::Kernel(x, _) => x.pin_dir.as_deref(),
            Admission::User(_) => None,
        }
    }

    /// Parses a frame and decides whether it reaches the engine. Frames the
    /// XDP program redirected were checked there; every other frame is
    /// validated and admitted here like the XDP program would, counting the
    /// verdict (in XDP mode also in `packet_path`).
    pub fn check<'b>(&mut self, bytes: &'b [u8], origin: Origin) -> Option<(Mac, MessageView<'b>)> {
        let l = match (self, origin) {
            (Admission::Kernel(..), Origin::Xsk(_)) => return parse_admitted(bytes),
            (Admission::Kernel(_, l), Origin::Packet) => {
                l.counters.packet_path += 1;
                l
            }
            (Admission::User(l), _) => l,
        };
        user_check(l, bytes)
    }

    /// Verdict counters. In XDP mode: the kernel's (summed over CPUs) plus
    /// what the packet-socket path counted (`packet_path` and its drops;
    /// its other fields would count frames the kernel already counted).
    pub fn counters(&self) -> Counters {
        match self {
            Admission::Kernel(x, l) => {
                let mut c = x.counters().unwrap_or_default();
                let mut extra = [0u64; COUNTER_COUNT];
                for (i, (name, v)) in l.counters.named().into_iter().enumerate() {
                    if name.starts_with("drop_") || name == "packet_path" {
                        extra[i] = v;
                    }
                }
                c.add(&Counters::from_values(extra));
                c
            }
            Admission::User(l) => l.counters,
        }
    }

    pub fn mode(&self) -> &'static str {
        match self {
            Admission::Kernel(x, _) => x.mode_used,
            Admission::User(_) => "off",
        }
    }
}

/// The XDP program's decision in userspace, for one frame from the packet
/// socket: the same `isodhcp_common::decide` over the limiter's tables.
fn user_check<'b>(l: &mut Limiter, bytes: &'b [u8]) -> Option<(Mac, MessageView<'b>)> {
    l.decide(monotonic_ns(), bytes)?;
    parse_admitted(bytes)
}

/// Source MAC and DHCP message of a frame admission delivered. It passed
/// the frame checks, so only the options can still be malformed: such a
/// frame is ignored, whichever path it came by.
fn parse_admitted(bytes: &[u8]) -> Option<(Mac, MessageView<'_>)> {
    let f = frame::parse(bytes).ok()?;
    MessageView::parse(f.payload).ok().map(|m| (f.src_mac, m))
}

/// Turns the XDP OFFER responder on (design.md §Offer responder): the
/// classification keys and stripe first, the configuration last, so the
/// program never offers before it has all it needs. A responder that
/// cannot run says why and leaves every frame to today's path.
fn prepare_offers(
    cfg: &Config,
    maps: &mut XdpMaps,
    engine: &Engine,
) -> Result<(), aya::maps::MapError> {
    let mono = monotonic_ns();
    let oc = match xdp::offer::offer_cfg(engine, xdp::offer::alive_until(mono)) {
        Ok(oc) => oc,
        Err(why) => {
            if cfg.offer_stripe > 0 {
                info!("XDP OFFER responder off: {why}");
            }
            return Ok(());
        }
    };
    let playground = engine.playground_block().is_some();
    for key in xdp::offer::classified_keys(&engine.config().classifier, playground) {
        maps.classify(key)?;
    }
    let now = super::now_ms();
    for u in engine.stripe_slots() {
        maps.set_stripe(u.index, xdp::offer::stripe_slot(&u, now, mono))?;
    }
    maps.set_offer(oc)?;
    info!(
        stripe = oc.stripe_len,
        filled = engine.stripe_used(),
        "XDP OFFER responder on"
    );
    Ok(())
}

/// Attaches XDP per `--xdp` (auto falls back to userspace with a warning),
/// writes limits, deny/trust lists and the known clients, and opens the
/// datapath: AF_XDP sockets on every RX queue plus the packet socket.
pub fn setup(cfg: &Config, ifindex: u32, engine: &Engine) -> Result<(Admission, Datapath)> {
    let packet =
        AfPacket::open(ifindex).context("cannot open the packet socket (needs CAP_NET_RAW)")?;
    // AF_XDP sockets exist before the program does: they are registered in
    // its socket map together with limits and lists, before it is attached.
    let mut queues = Vec::new();
    if cfg.xdp != XdpMode::Off && xdp::object_built_in() {
        for q in 0..af_xdp::rx_queue_count(&cfg.interface) {
            match Queue::open(ifindex, q) {
                Ok(queue) => queues.push(queue),
                Err(e) => {
                    warn!(queue = q, error = %e, "no AF_XDP socket; this queue uses the packet socket");
                }
            }
        }
    }
    let prepare = |maps: &mut XdpMaps| -> Result<(), XdpError> {
        let w = |what: &str, e: aya::maps::MapError| XdpError::Load(format!("writing {what}: {e}"));
        maps.set_limits(&xdp::limits(&cfg.rates))
            .map_err(|e| w("limits", e))?;
        for m in &cfg.deny_macs {
            maps.deny(*m, 0).map_err(|e| w("the deny map", e))?;
        }
        for m in &cfg.trust_macs {
            maps.trust(*m).map_err(|e| w("the trust map", e))?;
        }
        engine.known_macs().for_each(|m| maps.set_known(m, true));
        prepare_offers(cfg, maps, engine).map_err(|e| w("the OFFER responder's maps", e))?;
        queues.retain(|queue| match maps.bind_socket(queue.queue_id, &queue.fd()) {
            Ok(()) => true,
            Err(e) => {
                warn!(queue = queue.queue_id, error = %e, "cannot register the AF_XDP socket; this queue uses the packet socket");
                false
            }
        });
        Ok(())
    };
    let attached = match cfg.xdp {
        XdpMode::Off => None,
        mode => match xdp::attach(&cfg.interface, mode, &cfg.bpf_pin_dir, prepare) {
            Ok(a) => Some(a),
            Err(e) if mode == XdpMode::Auto => {
                warn!(error = %e, "XDP unavailable: DHCP admission runs in userspace");
                None
            }
            Err(e) => return Err(e).context("--xdp"),
        },
    };
    if cfg.xdp == XdpMode::Off {
        match xdp::remove_pins(&cfg.bpf_pin_dir) {
            Ok(true) => {
                info!(pin_dir = %cfg.bpf_pin_dir.display(), "--xdp off: detached the XDP program a previous run left pinned");
            }
            Ok(false) => {}
            Err(e) => {
                warn!(error = %e, "--xdp off: cannot remove old XDP pins; a stale program may still filter DHCP");
            }
        }
    }
    let mut l = Limiter::new(xdp::limits(&cfg.rates));
    cfg.deny_macs.iter().for_each(|m| l.deny(*m, 0));
    cfg.trust_macs.iter().for_each(|m| l.trust(*m));
    engine.known_macs().for_each(|m| l.set_known(m, true));
    let Some(x) = attached else {
        info!("datapath: AF_PACKET with userspace rate limits");
        return Ok((Admission::User(Box::new(l)), Datapath::Packet(packet)));
    };
    let zc = queues.iter().filter(|q| q.zero_copy).count();
    info!(
        mode = x.mode_used,
        af_xdp_queues = queues.len(),
        zero_copy = zc,
        "datapath: XDP admission, AF_XDP delivery"
    );
    Ok((
        Admission::Kernel(Box::new(x), Box::new(l)),
        Datapath::Hybrid(Hybrid::new(AfXdp::new(queues), packet)),
    ))
}

/// [`Admission::offer_tx_failing`]'s rule over two samples of
/// `(tx_offer, xdp_tx_errors)`: the errors grew by at least nine tenths of
/// the OFFERs sent in between. A transmit ring that overflows now and then
/// under a flood loses a share of the replies, not nine in ten, and must
/// not turn the responder off (a guest could otherwise switch it off by
/// flooding); a driver where XDP_TX does not work loses them all.
pub(crate) fn tx_failing((s0, e0): (u64, u64), (s1, e1): (u64, u64)) -> Option<u64> {
    let sent = s1.saturating_sub(s0);
    let errors = e1.saturating_sub(e0);
    (sent > 0 && errors.saturating_mul(10) >= sent.saturating_mul(9)).then_some(errors)
}

#[cfg(test)]
mod tx_tests {
    use super::tx_failing;

    #[test]
    fn only_a_transmit_path_that_loses_nearly_everything_counts_as_failing() {
        // A veth whose peer runs no XDP program: every OFFER is an error.
        assert_eq!(tx_failing((10, 4), (13, 7)), Some(3));
        assert_eq!(tx_failing((0, 0), (1, 1)), Some(1));
        // A flood overflows the ring now and then: a share is lost.
        assert_eq!(tx_failing((0, 0), (100_000, 30_000)), None);
        assert_eq!(tx_failing((0, 0), (100, 89)), None);
        assert_eq!(tx_failing((0, 0), (100, 90)), Some(90));
        // Nothing sent, or errors from something else: no verdict.
        assert_eq!(tx_failing((5, 0), (5, 9)), None);
        assert_eq!(tx_failing((5, 9), (6, 9)), None);
        // Counters reset (driver reloaded): no underflow, no verdict.
        assert_eq!(tx_failing((5, 9), (0, 0)), None);
    }
}
