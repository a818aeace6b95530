//! Command line (SPEC §2): every option of isodhcp(8) with its name, short
//! form and default, plus the options isodhcp adds. Parsing is clap's;
//! [`validate`] turns the raw strings into a [`Config`] or one [`CliError`]
//! line naming the option and value (exit status 2). Nothing here touches
//! the system.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{ArgAction, Parser};

use crate::engine::classify::{Classifier, Matcher};
pub use crate::engine::config::{CustomOption, StaticEntry};
use crate::system::nft::{NamedSets, SetRef};
use crate::wire::Mac;
use crate::wire::cidr::{Cidr, CidrError, parse_ipv4};
use values::{parse_dhcp_option, parse_mac, parse_oui, parse_static, parse_uint};

mod values;

pub use crate::config::{Isolation, XdpMode};

#[derive(Parser, Debug)]
#[command(
    name = "isodhcp",
    version,
    about = "Unnumbered DHCP server with client isolation"
)]
pub struct Args {
    /// Interface to serve.
    #[arg(short = 'i', long, default_value = "guest")]
    pub interface: String,
    /// Router address on the interface (auto-detected if omitted).
    #[arg(short = 's', long = "server-ip")]
    pub server_ip: Option<String>,
    /// Address pool CIDR (auto-detected if omitted).
    #[arg(short = 'p', long)]
    pub pool: Option<String>,
    /// DNS server(s) offered to clients; repeatable or comma-separated, up to 3.
    #[arg(short = 'd', long)]
    pub dns: Vec<String>,
    /// Lease time in seconds (at least 60).
    #[arg(short = 't', long = "lease-time", default_value = "3600")]
    pub lease_time: String,
    /// JSON lease file (default dhcp_leases_<IFACE>.json).
    #[arg(short = 'f', long = "lease-file")]
    pub lease_file: Option<PathBuf>,
    /// MAC=IP[,hostname][,compat][,masquerade][,playground]
    #[arg(long = "static")]
    pub statics: Vec<String>,
    #[arg(long = "compat-mac")]
    pub compat_mac: Vec<String>,
    #[arg(long = "compat-oui")]
    pub compat_oui: Vec<String>,
    #[arg(long = "compat-vendor")]
    pub compat_vendor: Vec<String>,
    #[arg(long = "masquerade-mac")]
    pub masquerade_mac: Vec<String>,
    #[arg(long = "masquerade-oui")]
    pub masquerade_oui: Vec<String>,
    #[arg(long = "masquerade-vendor")]
    pub masquerade_vendor: Vec<String>,
    #[arg(long = "playground-size")]
    pub playground_size: Option<String>,
    #[arg(long = "playground-mac")]
    pub playground_mac: Vec<String>,
    #[arg(long = "playground-oui")]
    pub playground_oui: Vec<String>,
    #[arg(long = "playground-vendor")]
    pub playground_vendor: Vec<String>,
    #[arg(long = "nft-set-isolated")]
    pub nft_set_isolated: Option<String>,
    #[arg(long = "nft-set-compat")]
    pub nft_set_compat: Option<String>,
    #[arg(long = "nft-set-gateway")]
    pub nft_set_gateway: Option<String>,
    #[arg(long = "nft-set-network")]
    pub nft_set_network: Option<String>,
    #[arg(long = "nft-set-broadcast")]
    pub nft_set_broadcast: Option<String>,
    #[arg(long = "nft-set-subnet")]
    pub nft_set_subnet: Option<String>,
    #[arg(long = "nft-set-playground")]
    pub nft_set_playground: Option<String>,
    #[arg(long = "nft-set-playground-subnet")]
    pub nft_set_playground_subnet: Option<String>,
    /// Executable run on every lease change: add|del MAC IP [HOSTNAME].
    #[arg(long = "hook-file")]
    pub hook_file: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "system")]
    pub isolation: Isolation,
    /// CODE,TYPE,VALUE with TYPE one of ip, ips, str, int8, int16, int32, hex.
    #[arg(long = "dhcp-option")]
    pub dhcp_option: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub xdp: XdpMode,
    /// Per-client-MAC DHCP frames per second.
    #[arg(long = "rate-limit", default_value = "2")]
    pub rate_limit: String,
    #[arg(long = "rate-burst", default_value = "5")]
    pub rate_burst: String,
    #[arg(long = "global-rate-limit", default_value = "2000")]
    pub global_rate_limit: String,
    #[arg(long = "new-client-rate", default_value = "100")]
    pub new_client_rate: String,
    #[arg(long = "deny-mac")]
    pub deny_mac: Vec<String>,
    #[arg(long = "trust-mac")]
    pub trust_mac: Vec<String>,
    /// bpffs folder for pins (default /sys/fs/bpf/isodhcp/<IFACE>).
    #[arg(long = "bpf-pin-dir")]
    pub bpf_pin_dir: Option<PathBuf>,
    #[arg(long = "metrics-listen")]
    pub metrics_listen: Option<String>,
    #[arg(short = 'v', long, action = ArgAction::Count)]
    pub verbose: u8,
    #[arg(short = 'q', long)]
    pub quiet: bool,
    // Diagnostics client flags (SPEC §10).
    #[arg(long)]
    pub status: bool,
    #[arg(long, visible_alias = "check")]
    pub verify: bool,
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "leases,subnets")]
    pub dump: Option<String>,
    #[arg(long)]
    pub show: Option<String>,
    #[arg(long)]
    pub config: bool,
    #[arg(long)]
    pub json: bool,
    #[arg(long)]
    pub redact: bool,
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub socket: Option<PathBuf>,
    #[arg(long)]
    pub block: Option<String>,
    #[arg(long = "for")]
    pub block_for: Option<String>,
    #[arg(long)]
    pub unblock: Option<String>,
}

/// Validated daemon configuration; `server_ip`/`pool`/`dns` may still be
/// filled in by auto-detection (SPEC §3).
#[derive(Clone, Debug)]
pub struct Config {
    pub interface: String,
    pub server_ip: Option<Ipv4Addr>,
    pub pool: Option<Cidr>,
    pub dns: Vec<Ipv4Addr>,
    pub lease_time: u32,
    pub lease_file: PathBuf,
    pub statics: Vec<StaticEntry>,
    /// The `--static` arguments as given, for error messages.
    pub static_args: Vec<String>,
    pub custom_options: Vec<CustomOption>,
    pub classifier: Classifier,
    pub playground_size: Option<u32>,
    pub xdp: XdpMode,
    /// Admission limits for the XDP program and the userspace limiter.
    pub limits: isodhcp_common::Limits,
    pub deny_macs: Vec<Mac>,
    pub trust_macs: Vec<Mac>,
    pub bpf_pin_dir: PathBuf,
    pub isolation: Isolation,
    pub hook_file: Option<PathBuf>,
    /// `--nft-set-*`: the operator's named sets.
    pub nft_sets: crate::system::nft::NamedSets,
    /// `--socket`: control socket path (default per SPEC §10).
    pub socket: Option<PathBuf>,
    /// `--metrics-listen`.
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// A bad command-line value: printed as one line, exit status 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value '{value}' for {option}: {reason}")]
pub struct CliError {
    pub option: &'static str,
    pub value: String,
    pub reason: String,
}

pub(crate) fn bad(option: &'static str, value: &str, reason: impl Into<String>) -> CliError {
    CliError {
        option,
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// Interface name reduced to `[A-Za-z0-9_]` for per-instance resource names (SPEC §1).
pub fn sanitise_iface(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Checks every value; returns the daemon configuration.
pub fn validate(a: &Args) -> Result<Config, CliError> {
    if a.interface.is_empty() || a.interface.len() > 15 || a.interface.contains(['/', ' ']) {
        return Err(bad(
            "--interface",
            &a.interface,
            "not a valid interface name",
        ));
    }
    let server_ip = a
        .server_ip
        .as_deref()
        .map(|s| parse_ipv4(s).ok_or_else(|| bad("--server-ip", s, "expected an IPv4 address")))
        .transpose()?;
    let pool = a
        .pool
        .as_deref()
        .map(|s| {
            s.parse::<Cidr>().map_err(|e| match e {
                CidrError::Syntax => bad("--pool", s, "expected ADDRESS/PREFIX"),
                CidrError::HostBits(c) => {
                    bad("--pool", s, format!("host bits set (did you mean {c}?)"))
                }
            })
        })
        .transpose()?;
    if let Some(p) = pool {
        if p.prefix > 30 {
            return Err(bad("--pool", &p.to_string(), "pool must be /30 or larger"));
        }
        if let Some(ip) = server_ip.filter(|ip| !p.contains(*ip)) {
            return Err(bad(
                "--server-ip",
                &ip.to_string(),
                format!("outside the pool {p}"),
            ));
        }
    }
    let mut dns = Vec::new();
    for d in &a.dns {
        for part in d.split(',') {
            dns.push(
                parse_ipv4(part.trim())
                    .ok_or_else(|| bad("--dns", d, "expected an IPv4 address"))?,
            );
        }
    }
    if dns.len() > 3 {
        return Err(bad("--dns", &a.dns.join(","), "at most 3 DNS servers"));
    }
    let lease_time: u32 = parse_uint("--lease-time", &a.lease_time)?;
    if lease_time < 60 {
        return Err(bad(
            "--lease-time",
            &a.lease_time,
            "must be at least 60 seconds",
        ));
    }
    let statics = a
        .statics
        .iter()
        .map(|s| parse_static(s))
        .collect::<Result<Vec<_>, _>>()?;
    for (i, s) in statics.iter().enumerate() {
        if let Some(other) = statics[..i].iter().find(|o| o.ip == s.ip && o.mac != s.mac) {
            return Err(bad(
                "--static",
                &a.statics[i],
                format!("{} is already given to {}", s.ip, other.mac),
            ));
        }
    }
    let matcher = |mo: &'static str,
                   macs: &[String],
                   oo: &'static str,
                   ouis: &[String],
                   vendors: &[String]|
     -> Result<Matcher, CliError> {
        Ok(Matcher {
            macs: macs
                .iter()
                .map(|m| parse_mac(mo, m))
                .collect::<Result<_, _>>()?,
            ouis: ouis
                .iter()
                .map(|o| parse_oui(oo, o))
                .collect::<Result<_, _>>()?,
            vendors: vendors.iter().map(|v| v.to_lowercase()).collect(),
        })
    };
    let classifier = Classifier {
        compat: matcher(
            "--compat-mac",
            &a.compat_mac,
            "--compat-oui",
            &a.compat_oui,
            &a.compat_vendor,
        )?,
        playground: matcher(
            "--playground-mac",
            &a.playground_mac,
            "--playground-oui",
            &a.playground_oui,
            &a.playground_vendor,
        )?,
        masquerade: matcher(
            "--masquerade-mac",
            &a.masquerade_mac,
            "--masquerade-oui",
            &a.masquerade_oui,
            &a.masquerade_vendor,
        )?,
    };
    let deny_macs = a
        .deny_mac
        .iter()
        .map(|m| parse_mac("--deny-mac", m))
        .collect::<Result<Vec<_>, _>>()?;
    let trust_macs = a
        .trust_mac
        .iter()
        .map(|m| parse_mac("--trust-mac", m))
        .collect::<Result<Vec<_>, _>>()?;
    let mut playground_size = None;
    if let Some(ps) = &a.playground_size {
        let n: u32 = parse_uint("--playground-size", ps)?;
        playground_size = Some(n);
        if n < 6 {
            return Err(bad("--playground-size", ps, "must be at least 6"));
        }
        if let Some(p) = pool.filter(|p| u64::from(n) > p.size()) {
            return Err(bad(
                "--playground-size",
                ps,
                format!("larger than the pool {p}"),
            ));
        }
    }
    if let Some(i) = statics
        .iter()
        .position(|s| s.playground)
        .filter(|_| playground_size.is_none())
    {
        return Err(bad(
            "--static",
            &a.statics[i],
            "playground needs --playground-size",
        ));
    }
    let custom_options = a
        .dhcp_option
        .iter()
        .map(|s| parse_dhcp_option(s))
        .collect::<Result<Vec<_>, _>>()?;
    let mut rates = [0u32; 4];
    for (slot, (o, v)) in rates.iter_mut().zip([
        ("--rate-limit", &a.rate_limit),
        ("--rate-burst", &a.rate_burst),
        ("--global-rate-limit", &a.global_rate_limit),
        ("--new-client-rate", &a.new_client_rate),
    ]) {
        let n: u32 = parse_uint(o, v)?;
        if n == 0 || n > 10_000_000 {
            return Err(bad(o, v, "must be 1..10000000"));
        }
        *slot = n;
    }
    let [mac_rate, mac_burst, global_rate, new_rate] = rates;
    // The global and new-client budgets allow one second's worth at once.
    let limits = isodhcp_common::Limits {
        abi: isodhcp_common::ABI_VERSION,
        mac_rate,
        mac_burst,
        global_rate,
        global_burst: global_rate,
        new_rate,
        new_burst: new_rate,
        _pad: 0,
    };
    let metrics_listen = a
        .metrics_listen
        .as_deref()
        .map(|m| {
            m.parse::<std::net::SocketAddr>()
                .map_err(|_| bad("--metrics-listen", m, "expected ADDR:PORT"))
        })
        .transpose()?;
    if let Some(b) = &a.block {
        parse_mac("--block", b)?;
    }
    if let Some(b) = &a.unblock {
        parse_mac("--unblock", b)?;
    }
    if let Some(f) = &a.block_for {
        values::parse_block_for(f)?;
    }
    let set = |o: &'static str, v: &Option<String>| -> Result<Option<SetRef>, CliError> {
        v.as_deref()
            .map(|s| {
                SetRef::parse(s).ok_or_else(|| {
                    bad(
                        o,
                        s,
                        "expected \"FAMILY TABLE NAME\", e.g. \"inet filter iso_clients\"",
                    )
                })
            })
            .transpose()
    };
    let nft_sets = NamedSets {
        isolated: set("--nft-set-isolated", &a.nft_set_isolated)?,
        compat: set("--nft-set-compat", &a.nft_set_compat)?,
        playground: set("--nft-set-playground", &a.nft_set_playground)?,
        gateway: set("--nft-set-gateway", &a.nft_set_gateway)?,
        network: set("--nft-set-network", &a.nft_set_network)?,
        broadcast: set("--nft-set-broadcast", &a.nft_set_broadcast)?,
        subnet: set("--nft-set-subnet", &a.nft_set_subnet)?,
        playground_subnet: set("--nft-set-playground-subnet", &a.nft_set_playground_subnet)?,
    };
    if let Some(h) = &a.hook_file {
        if h.as_os_str().is_empty() {
            return Err(bad("--hook-file", "", "empty path"));
        }
    }
    // With the pool on the command line, statics are checked now, before
    // anything (even the interface) is looked at; otherwise after detection.
    if let Some(p) = pool {
        validate_statics(&statics, &a.statics, server_ip, p)?;
        validate_playground_statics(&statics, &a.statics, server_ip, p, playground_size)?;
    }
    let san = sanitise_iface(&a.interface);
    Ok(Config {
        interface: a.interface.clone(),
        server_ip,
        pool,
        dns,
        lease_time,
        lease_file: a
            .lease_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("dhcp_leases_{}.json", a.interface))),
        statics,
        static_args: a.statics.clone(),
        custom_options,
        classifier,
        playground_size,
        xdp: a.xdp,
        limits,
        deny_macs,
        trust_macs,
        bpf_pin_dir: a
            .bpf_pin_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("/sys/fs/bpf/isodhcp/{san}"))),
        isolation: a.isolation,
        hook_file: a.hook_file.clone(),
        nft_sets,
        socket: a.socket.clone(),
        metrics_listen,
    })
}

/// Checks the statics against the pool once it is known (given or
/// auto-detected; SPEC §4.6). Fatal like every other bad value (exit 2).
/// `server_ip` may be unknown yet (auto-detection pending): then the checks
/// that need it wait for the second call.
pub fn validate_statics(
    statics: &[StaticEntry],
    raw: &[String],
    server_ip: Option<Ipv4Addr>,
    pool: Cidr,
) -> Result<(), CliError> {
    for (s, text) in statics.iter().zip(raw) {
        let why = if !pool.contains(s.ip) {
            Some(format!("{} is outside the pool {pool}", s.ip))
        } else if Some(s.ip) == server_ip {
            Some(format!("{} is the server IP", s.ip))
        } else if s.ip == pool.network() || s.ip == pool.broadcast() {
            Some(format!(
                "{} is the pool's network or broadcast address",
                s.ip
            ))
        } else if s.compat {
            let base = Cidr {
                addr: Ipv4Addr::from(u32::from(s.ip) & !3),
                prefix: 30,
            };
            let ok = u32::from(s.ip) & 3 == 2
                && !server_ip.is_some_and(|ip| base.contains(ip))
                && !base.contains(pool.network())
                && !base.contains(pool.broadcast());
            (!ok).then(|| format!("compat needs base+2 of an aligned /30 free of the server IP and the pool's network/broadcast ({base})"))
        } else {
            None
        };
        if let Some(reason) = why {
            return Err(bad("--static", text, reason));
        }
    }
    Ok(())
}

/// A `playground` static must lie in the playground block (SPEC §4.3/§4.6).
/// The block is the highest aligned one clear of the other statics; leases
/// from an earlier run can push it lower, which the engine checks again at
/// start.
pub fn validate_playground_statics(
    statics: &[StaticEntry],
    raw: &[String],
    server_ip: Option<Ipv4Addr>,
    pool: Cidr,
    size: Option<u32>,
) -> Result<(), CliError> {
    let Some(n) = size else { return Ok(()) };
    let avoid: Vec<Ipv4Addr> = statics
        .iter()
        .filter(|s| !s.playground)
        .map(|s| s.ip)
        .collect();
    let p = crate::engine::pool::Pool::new(
        pool,
        server_ip.unwrap_or(pool.network()),
        &[],
        Some(n),
        &avoid,
    );
    let Some(pg) = p.playground() else {
        return Err(bad(
            "--playground-size",
            &n.to_string(),
            "no aligned block of that size is free of the statics",
        ));
    };
    for (s, text) in statics.iter().zip(raw).filter(|(s, _)| s.playground) {
        if !pg.block.contains(s.ip)
            || s.ip == pg.block.network()
            || s.ip == pg.block.broadcast()
            || s.ip == pg.gateway
        {
            return Err(bad(
                "--static",
                text,
                format!(
                    "a playground static must be a host of the playground block {} (gateway {})",
                    pg.block, pg.gateway
                ),
            ));
        }
    }
    Ok(())
}

/// The control request for the diagnostics flags given (SPEC §10), if any:
/// with one, the binary acts as a client of a running daemon. Bad values
/// (a `--dump` section, a `--block` MAC) are command-line errors.
pub fn control_request(a: &Args) -> Result<Option<crate::control::Request>, CliError> {
    use crate::control::proto::{Command, DUMP_SECTIONS};
    let cmd = if a.status {
        Command::Status
    } else if a.verify {
        Command::Verify
    } else if let Some(d) = &a.dump {
        let sections: Vec<String> = d
            .split(',')
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad_one) = sections
            .iter()
            .find(|s| !DUMP_SECTIONS.contains(&s.as_str()))
        {
            return Err(bad(
                "--dump",
                bad_one,
                format!("sections are {}", DUMP_SECTIONS.join(",")),
            ));
        }
        Command::Dump { sections }
    } else if let Some(k) = &a.show {
        Command::Show { key: k.clone() }
    } else if a.config {
        Command::Config
    } else if let Some(m) = &a.block {
        let seconds = a
            .block_for
            .as_deref()
            .map(values::parse_block_for)
            .transpose()?;
        Command::Block {
            mac: parse_mac("--block", m)?.to_string(),
            seconds,
        }
    } else if let Some(m) = &a.unblock {
        Command::Unblock {
            mac: parse_mac("--unblock", m)?.to_string(),
        }
    } else {
        if a.block_for.is_some() {
            return Err(bad(
                "--for",
                a.block_for.as_deref().unwrap_or_default(),
                "only with --block",
            ));
        }
        return Ok(None);
    };
    Ok(Some(crate::control::Request {
        version: crate::control::VERSION,
        cmd,
        redact: a.redact,
        all: a.all,
    }))
}

#[cfg(test)]
mod tests;
