//! `isodhcp-loadgen`: DHCPv4 load generator (AF_PACKET, run inside a
//! network namespace). One JSON object on stdout, progress on stderr.
//!
//! ```text
//! isodhcp-loadgen -i IF flood --rate 10000 --frames 100000 --seconds 10
//! isodhcp-loadgen -i IF probe --kind known --interval 200 --seconds 10
//! isodhcp-loadgen -i IF probe --kind new --interval 1000 --seconds 10
//! isodhcp-loadgen -i IF dora --clients 1000 --inflight 64 --seconds 30 [--renew 10]
//! ```

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand, ValueEnum};
use isodhcp::wire::Mac;
use isodhcp_loadgen::client::{self, ClientConfig, Plan, Repeat};
use isodhcp_loadgen::flood::{self, FloodConfig};
use isodhcp_loadgen::rng::{Rng, is_local_unicast};
use isodhcp_loadgen::sock::PacketSocket;

/// Hard ceilings, whatever the command line says.
const MAX_SECONDS: u64 = 600;
const MAX_FRAMES: u64 = 200_000_000;

#[derive(Parser)]
#[command(
    name = "isodhcp-loadgen",
    about = "DHCPv4 load generator (AF_PACKET; run inside a network namespace)"
)]
struct Cli {
    /// Interface to send on (and receive replies from).
    #[arg(short, long)]
    iface: String,
    /// RNG seed (default: clock and pid).
    #[arg(long)]
    seed: Option<u64>,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Clone, Copy, ValueEnum)]
enum Kind {
    Known,
    New,
}

#[derive(Clone, Copy, ValueEnum)]
enum RepeatArg {
    Renew,
    Rebind,
    Dora,
}

#[derive(Subcommand)]
enum Mode {
    /// Random-MAC DISCOVERs (chaddr == Ethernet source), until --frames or
    /// --seconds, whichever comes first.
    Flood {
        /// Frames per second; 0 = as fast as possible.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        #[arg(long, default_value_t = 1_000_000)]
        frames: u64,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// First MAC octet (hex, locally administered unicast).
        #[arg(long, default_value = "0a")]
        mac_prefix: String,
        /// VLAN tags on every frame, outermost first: `TPID:TCI,...` with a
        /// hex TPID, e.g. `88a8:0,8100:0` (stacked priority tags).
        #[arg(long, default_value = "")]
        tags: String,
    },
    /// DORA probe clients measuring success and latency.
    Probe {
        #[arg(long, value_enum)]
        kind: Kind,
        /// ms between attempts.
        #[arg(long, default_value_t = 200)]
        interval: u64,
        /// Seconds during which attempts start (then a drain period).
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Retransmission timeout, ms.
        #[arg(long, default_value_t = 1000)]
        timeout: u64,
        /// Sends per phase (DISCOVER, REQUEST) before giving up.
        #[arg(long, default_value_t = 4)]
        max_tries: u32,
        /// known: what each repeat does.
        #[arg(long, value_enum, default_value = "renew")]
        repeat: RepeatArg,
        /// known: the client MAC (default: the interface's).
        #[arg(long)]
        mac: Option<String>,
        /// new: send a RELEASE after each ACK.
        #[arg(long)]
        release: bool,
        /// new: at most this many attempts open at once.
        #[arg(long, default_value_t = 64)]
        max_inflight: usize,
        /// new: first MAC octet (hex).
        #[arg(long, default_value = "06")]
        mac_prefix: String,
    },
    /// N fresh clients, M in flight, full DORA (leases/s); with --renew R,
    /// then each renews R times (unicast REQUEST with ciaddr), M in flight.
    Dora {
        #[arg(long, default_value_t = 1000)]
        clients: u64,
        #[arg(long, default_value_t = 64)]
        inflight: usize,
        #[arg(long, default_value_t = 30)]
        seconds: u64,
        #[arg(long, default_value_t = 1000)]
        timeout: u64,
        #[arg(long, default_value_t = 4)]
        max_tries: u32,
        /// Send a RELEASE after each client's last ACK.
        #[arg(long)]
        release: bool,
        #[arg(long, default_value = "0e")]
        mac_prefix: String,
        /// After the DORA phase, renew every lease this many times, round
        /// after round (renewals/s); 0 = no renewal phase. The phase gets
        /// its own --seconds window.
        #[arg(long, default_value_t = 0)]
        renew: u32,
    },
}

fn prefix(s: &str) -> Result<u8> {
    let p = u8::from_str_radix(s, 16)
        .with_context(|| format!("MAC prefix {s:?} is not a hex octet"))?;
    if !is_local_unicast(p) {
        bail!("MAC prefix {p:02x} is not a locally administered unicast octet (x2, x6, xa, xe)");
    }
    Ok(p)
}

fn seconds(s: u64) -> Result<Duration> {
    if s == 0 || s > MAX_SECONDS {
        bail!("--seconds must be 1..={MAX_SECONDS}");
    }
    Ok(Duration::from_secs(s))
}

fn run(cli: Cli) -> Result<()> {
    let rng = cli.seed.map(Rng::new).unwrap_or_else(Rng::from_entropy);
    match cli.mode {
        Mode::Flood {
            rate,
            frames,
            seconds: s,
            mac_prefix,
            tags,
        } => {
            run_flood(&cli.iface, rng, rate, frames, s, &mac_prefix, &tags)?;
        }
        Mode::Probe {
            kind,
            interval,
            seconds: s,
            timeout,
            max_tries,
            repeat,
            mac,
            release,
            max_inflight,
            mac_prefix,
        } => {
            let sock = PacketSocket::open(&cli.iface, true)?;
            let interval = Duration::from_millis(interval.max(1));
            let plan = match kind {
                Kind::Known => known_plan(mac.as_deref(), sock.mac, interval, repeat)?,
                Kind::New => Plan::New {
                    interval,
                    max_inflight: max_inflight.clamp(1, 4096),
                    release,
                    mac_prefix: prefix(&mac_prefix)?,
                },
            };
            run_clients(&sock, plan, seconds(s)?, timeout, max_tries, rng)?;
        }
        Mode::Dora {
            clients,
            inflight,
            seconds: s,
            timeout,
            max_tries,
            release,
            mac_prefix,
            renew,
        } => {
            let sock = PacketSocket::open(&cli.iface, true)?;
            let plan = Plan::Dora {
                clients: clients.min(MAX_FRAMES),
                inflight: inflight.clamp(1, 4096),
                release,
                mac_prefix: prefix(&mac_prefix)?,
                renew: renew.min(1000),
            };
            run_clients(&sock, plan, seconds(s)?, timeout, max_tries, rng)?;
        }
    }
    Ok(())
}

/// `flood`: validates the limits, sends, prints the JSON report.
fn run_flood(
    iface: &str,
    mut rng: Rng,
    rate: u64,
    frames: u64,
    s: u64,
    mac_prefix: &str,
    tags: &str,
) -> Result<()> {
    if frames == 0 || frames > MAX_FRAMES {
        bail!("--frames must be 1..={MAX_FRAMES}");
    }
    let cfg = FloodConfig {
        rate,
        max_frames: frames,
        duration: seconds(s)?,
        mac_prefix: prefix(mac_prefix)?,
        tags: isodhcp_loadgen::packet::parse_tags(tags)?,
    };
    let sock = PacketSocket::open(iface, false)?;
    eprintln!(
        "loadgen: flood on {} ({}): rate {}, at most {} frames / {} s",
        iface,
        sock.mac,
        if rate == 0 {
            "max".to_string()
        } else {
            format!("{rate}/s")
        },
        frames,
        s
    );
    eprintln!("loadgen: ready");
    let r = flood::run(&sock, &cfg, &mut rng)?;
    eprintln!(
        "loadgen: flood done: {} frames in {:.2} s = {:.0}/s ({} refused)",
        r.sent,
        r.elapsed.as_secs_f64(),
        r.rate(),
        r.refused
    );
    println!("{}", flood::to_json(&cfg, &r));
    Ok(())
}

/// `probe --kind known`: the plan for one fixed MAC (`--mac`, default the
/// interface's).
fn known_plan(mac: Option<&str>, own: Mac, interval: Duration, repeat: RepeatArg) -> Result<Plan> {
    Ok(Plan::Known {
        mac: match mac {
            Some(m) => Mac::parse(m).with_context(|| format!("bad --mac {m:?}"))?,
            None => own,
        },
        interval,
        repeat: match repeat {
            RepeatArg::Renew => Repeat::Renew,
            RepeatArg::Rebind => Repeat::Rebind,
            RepeatArg::Dora => Repeat::Dora,
        },
    })
}

fn run_clients(
    sock: &PacketSocket,
    plan: Plan,
    duration: Duration,
    timeout_ms: u64,
    max_tries: u32,
    rng: Rng,
) -> Result<()> {
    let cfg = ClientConfig {
        plan,
        timeout: Duration::from_millis(timeout_ms.clamp(10, 60_000)),
        max_tries: max_tries.clamp(1, 16),
        duration,
    };
    eprintln!("loadgen: {:?} on {} ({})", cfg.plan, sock.ifindex, sock.mac);
    let r = client::run(sock, &cfg, rng, || {
        eprintln!("loadgen: ready");
    })?;
    if let Some(i) = &r.initial {
        eprintln!("loadgen: initial DORA: {}", i.summary());
    }
    eprintln!("loadgen: {}", r.stats.summary());
    if let Some(s) = &r.renew {
        eprintln!("loadgen: renewals: {}", s.summary());
    }
    println!("{}", client::to_json(&cfg, &r));
    Ok(())
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("loadgen: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
