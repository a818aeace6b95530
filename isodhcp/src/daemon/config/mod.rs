//! The daemon's configuration: what the command line gave ([`Config`],
//! each value already checked on its own by `cli`), checked as a whole
//! ([`Config::check`]), then completed by what start-up found on the
//! machine ([`Config::resolve`] with [`Facts`]).
//!
//! Guarantees:
//! - [`Config::check`] and [`Config::resolve`] are pure: they read no file
//!   and touch nothing, so a bad command line is refused (exit 2) before
//!   anything is changed, and both are unit-tested.
//! - Every refusal is a [`UsageError`] naming the option and the value as
//!   the operator wrote it; what detection cannot work out is a
//!   [`ResolveError`] (exit 1), as before the daemon touches the network.

mod statics;
#[cfg(test)]
mod tests;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::config::{Given, Isolation, RateLimits, UsageError, XdpMode, sanitise_iface};
use crate::engine::classify::Classifier;
use crate::engine::{ConfigError, CustomOption, StaticEntry};
use crate::system::detect::{self, DetectError};
use crate::system::nft::NamedSets;
use crate::wire::Mac;
use crate::wire::cidr::Cidr;

/// Validated daemon configuration; `server_ip`, `pool` and `dns` may still
/// be completed by auto-detection ([`Config::resolve`]).
#[derive(Clone, Debug)]
pub struct Config {
    pub interface: String,
    pub server_ip: Option<Ipv4Addr>,
    pub pool: Option<Cidr>,
    /// Every `--dns` as given (one may list several); none: resolv.conf.
    pub dns: Vec<Given<Vec<Ipv4Addr>>>,
    pub lease_time: u32,
    pub lease_file: PathBuf,
    pub statics: Vec<Given<StaticEntry>>,
    pub custom_options: Vec<CustomOption>,
    pub classifier: Classifier,
    pub playground_size: Option<Given<u32>>,
    pub xdp: XdpMode,
    /// Admission rates for the XDP program and the userspace limiter.
    pub rates: RateLimits,
    /// `--xdp-offer-stripe`: addresses set aside for the XDP OFFER
    /// responder (design.md §Offer responder); 0 turns it off.
    pub offer_stripe: u32,
    pub deny_macs: Vec<Mac>,
    pub trust_macs: Vec<Mac>,
    pub bpf_pin_dir: PathBuf,
    pub isolation: Isolation,
    pub hook_file: Option<PathBuf>,
    /// `--nft-set-*`: the operator's named sets.
    pub nft_sets: NamedSets,
    /// `--socket`: control socket path (default: [`Config::socket_path`]).
    pub socket: Option<PathBuf>,
    pub metrics_listen: Option<SocketAddr>,
}

/// What start-up found on the machine.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// IPv4 addresses of the interface, with prefix lengths.
    pub addrs: Vec<(Ipv4Addr, u8)>,
    /// `/etc/resolv.conf` (read only without `--dns`).
    pub resolv_conf: Option<String>,
    /// systemd-resolved's upstream file (read only without `--dns`).
    pub resolved_conf: Option<String>,
}

/// The values detection completes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub server_ip: Ipv4Addr,
    pub pool: Cidr,
    pub dns: Vec<Ipv4Addr>,
    /// No usable nameserver was found: `dns` is the fallback 1.1.1.1.
    pub dns_fallback: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error(transparent)]
    Detect(#[from] DetectError),
    #[error("server IP {server_ip} is outside the pool {pool}")]
    Outside { server_ip: Ipv4Addr, pool: Cidr },
    /// A value given is refused once the pool is known.
    #[error(transparent)]
    Usage(#[from] UsageError),
}

impl Config {
    /// The statics without the text they were given as.
    pub fn static_entries(&self) -> Vec<StaticEntry> {
        self.statics.iter().map(|s| s.value.clone()).collect()
    }

    /// The control socket: `--socket`, else the per-interface default.
    pub fn socket_path(&self) -> PathBuf {
        self.socket.clone().unwrap_or_else(|| {
            crate::control::default_socket_path(&sanitise_iface(&self.interface))
        })
    }

    /// Checks the values that depend on each other. With the pool on the
    /// command line, statics are checked now, before anything (even the
    /// interface) is looked at; otherwise [`Config::resolve`] does it.
    pub fn check(&self) -> Result<(), UsageError> {
        if let Some((ip, p)) = self
            .server_ip
            .zip(self.pool)
            .filter(|(ip, p)| !p.contains(*ip))
        {
            return Err(UsageError::new(
                "--server-ip",
                &ip.to_string(),
                format!("outside the pool {p}"),
            ));
        }
        let dns: Vec<&Ipv4Addr> = self.dns.iter().flat_map(|d| &d.value).collect();
        if dns.len() > 3 {
            let texts: Vec<&str> = self.dns.iter().map(|d| d.text.as_str()).collect();
            return Err(UsageError::new(
                "--dns",
                &texts.join(","),
                "at most 3 DNS servers",
            ));
        }
        statics::check_unique(&self.statics)?;
        if let Some((ps, p)) = self.playground_size.as_ref().zip(self.pool) {
            if u64::from(ps.value) > p.size() {
                return Err(UsageError::new(
                    "--playground-size",
                    &ps.text,
                    format!("larger than the pool {p}"),
                ));
            }
        }
        if self.playground_size.is_none() {
            if let Some(s) = self.statics.iter().find(|s| s.value.playground) {
                return Err(UsageError::new(
                    "--static",
                    &s.text,
                    "playground needs --playground-size",
                ));
            }
        }
        if let Some(p) = self.pool {
            statics::check_in_pool(&self.statics, self.server_ip, p)?;
            statics::check_playground(&self.statics, self.server_ip, p, self.playground_size())?;
        }
        Ok(())
    }

    pub fn playground_size(&self) -> Option<u32> {
        self.playground_size.as_ref().map(|p| p.value)
    }

    /// Completes server IP, pool and DNS from `facts` and checks the statics
    /// against the pool found.
    pub fn resolve(&self, facts: &Facts) -> Result<Resolved, ResolveError> {
        let (server_ip, pool) =
            detect::server_and_pool(&self.interface, &facts.addrs, self.server_ip, self.pool)?;
        if !pool.contains(server_ip) {
            return Err(ResolveError::Outside { server_ip, pool });
        }
        statics::check_in_pool(&self.statics, Some(server_ip), pool)?;
        let given: Vec<Ipv4Addr> = self.dns.iter().flat_map(|d| d.value.clone()).collect();
        let (dns, dns_fallback) = if given.is_empty() {
            let (d, fallback) =
                detect::dns(facts.resolv_conf.as_deref(), facts.resolved_conf.as_deref());
            (vec![d], fallback)
        } else {
            (given, false)
        };
        Ok(Resolved {
            server_ip,
            pool,
            dns,
            dns_fallback,
        })
    }

    /// The engine's refusal of the configuration as a command-line error
    /// naming the option and the value as given.
    pub fn refusal(&self, e: ConfigError) -> UsageError {
        match e {
            ConfigError::Static { mac, why, .. } => {
                let raw = self
                    .statics
                    .iter()
                    .find(|s| s.value.mac == mac)
                    .map(|s| s.text.clone())
                    .unwrap_or_else(|| mac.to_string());
                UsageError::new("--static", &raw, why)
            }
            ConfigError::NoPlaygroundBlock(n) => UsageError::new(
                "--playground-size",
                &n.to_string(),
                "no aligned block of that size is free of statics and existing leases",
            ),
        }
    }
}
