//! Random-MAC DISCOVER flood: paced or unpaced, bounded by a frame count
//! AND a duration (whichever comes first), stops by itself.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};

use crate::pace::{achieved_rate, due_at_ns, due_frames};
use crate::packet::FloodTemplate;
use crate::rng::Rng;
use crate::sock::PacketSocket;

/// Frames per sendmmsg().
pub const BATCH: usize = 64;

#[derive(Debug, Clone)]
pub struct FloodConfig {
    /// Frames/s; 0 = as fast as possible.
    pub rate: u64,
    pub max_frames: u64,
    pub duration: Duration,
    /// First octet of every flood MAC.
    pub mac_prefix: u8,
    /// VLAN tags (TPID, TCI) every frame carries, outermost first.
    pub tags: Vec<(u16, u16)>,
}

#[derive(Debug, Clone, Default)]
pub struct FloodResult {
    pub sent: u64,
    /// Frames the kernel refused (ENOBUFS/EAGAIN), not retried.
    pub refused: u64,
    pub elapsed: Duration,
}

impl FloodResult {
    pub fn rate(&self) -> f64 {
        achieved_rate(self.sent, self.elapsed.as_nanos() as u64)
    }
}

pub fn run(sock: &PacketSocket, cfg: &FloodConfig, rng: &mut Rng) -> Result<FloodResult> {
    let tpl = FloodTemplate::tagged(&cfg.tags)?;
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(tpl.len())).collect();
    let mut res = FloodResult::default();
    let start = Instant::now();
    let deadline_ns = cfg.duration.as_nanos() as u64;
    // Bounded: every iteration either sends >= 1 frame, counts a refusal,
    // or sleeps/yields until the next due time; the deadline ends it.
    loop {
        let el = start.elapsed().as_nanos() as u64;
        if el >= deadline_ns || res.sent + res.refused >= cfg.max_frames {
            break;
        }
        let left = cfg.max_frames - res.sent - res.refused;
        let due = due_frames(el, cfg.rate, res.sent + res.refused)
            .min(BATCH as u64)
            .min(left) as usize;
        if due == 0 {
            let next = due_at_ns(cfg.rate, res.sent + res.refused).min(deadline_ns);
            let wait = next.saturating_sub(el);
            if wait > 200_000 {
                std::thread::sleep(Duration::from_nanos(wait - 100_000));
            } else {
                std::thread::yield_now();
            }
            continue;
        }
        for b in bufs.iter_mut().take(due) {
            tpl.write(rng.mac(cfg.mac_prefix), rng.next_u32(), b);
        }
        let n = sock.send_batch(&bufs[..due])?;
        res.sent += n as u64;
        if n < due {
            // The kernel had no room: count the rest as refused (a flood
            // does not retry) and give the receiver a moment.
            res.refused += (due - n) as u64;
            std::thread::yield_now();
        }
    }
    res.elapsed = start.elapsed();
    Ok(res)
}

pub fn to_json(cfg: &FloodConfig, r: &FloodResult) -> Value {
    json!({
        "mode": "flood",
        "target_rate": cfg.rate,
        "max_frames": cfg.max_frames,
        "max_seconds": cfg.duration.as_secs_f64(),
        "mac_prefix": format!("{:02x}", cfg.mac_prefix),
        "tags": cfg.tags.iter().map(|(p, t)| format!("{p:04x}:{t}")).collect::<Vec<_>>(),
        "frames_sent": r.sent,
        "frames_refused": r.refused,
        "elapsed_s": (r.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        "achieved_rate": r.rate().round(),
    })
}
