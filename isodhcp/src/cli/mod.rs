//! Command line: every option of isodhcp(8) with its name, short form and
//! default ([`Args`], parsed by clap; each value checked on its own). It
//! becomes either the daemon's [`Config`] ([`config`]) or, with a
//! diagnostics flag, a control request ([`control_request`]). Nothing here
//! touches the system.
//!
//! Guarantees: a bad value is refused with one line naming the option and
//! the value as given ([`refusal`] for what clap refuses, [`UsageError`]
//! for the rest), exit status 2.

mod args;
mod values;

use std::path::PathBuf;

use clap::error::ErrorKind;

pub use args::Args;
pub use values::Sections;

use crate::config::{RateLimits, UsageError, sanitise_iface};
use crate::control::{Command, Request, VERSION};
use crate::daemon::Config;
use crate::engine::classify::{Classifier, Matcher};
use crate::system::nft::NamedSets;
use crate::wire::Mac;

/// The line to print for a command line clap refused (exit status 2), or
/// `None` for `--help` and `--version` (print clap's text, exit 0).
pub fn refusal(e: &clap::Error) -> Option<String> {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => None,
        // A value parser's own message names option and value as given.
        ErrorKind::ValueValidation => match std::error::Error::source(e) {
            Some(why) => Some(why.to_string()),
            None => Some(first_line(e)),
        },
        _ => Some(first_line(e)),
    }
}

/// clap's first line without its "error: " prefix.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    text.lines()
        .next()
        .unwrap_or("invalid arguments")
        .trim_start_matches("error: ")
        .to_string()
}

/// The daemon configuration the flags give, checked as a whole.
pub fn config(a: &Args) -> Result<Config, UsageError> {
    let cfg = Config {
        interface: a.interface.clone(),
        server_ip: a.server_ip,
        pool: a.pool,
        dns: a.dns.clone(),
        lease_time: a.lease_time,
        lease_file: a
            .lease_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(format!("dhcp_leases_{}.json", a.interface))),
        statics: a.statics.clone(),
        custom_options: a.dhcp_option.clone(),
        classifier: classifier(a),
        playground_size: a.playground_size.clone(),
        xdp: a.xdp,
        rates: RateLimits {
            mac_rate: a.rate_limit,
            mac_burst: a.rate_burst,
            global_rate: a.global_rate_limit,
            new_rate: a.new_client_rate,
            offer_rate: a.xdp_offer_rate,
            cookie_rate: a.cookie_rate,
        },
        offer_stripe: a.xdp_offer_stripe,
        deny_macs: a.deny_mac.clone(),
        trust_macs: a.trust_mac.clone(),
        bpf_pin_dir: a.bpf_pin_dir.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "/sys/fs/bpf/isodhcp/{}",
                sanitise_iface(&a.interface)
            ))
        }),
        isolation: a.isolation,
        hook_file: a.hook_file.clone(),
        nft_sets: nft_sets(a),
        socket: a.socket.clone(),
        metrics_listen: a.metrics_listen,
    };
    cfg.check()?;
    Ok(cfg)
}

fn matcher(macs: &[Mac], ouis: &[[u8; 3]], vendors: &[String]) -> Matcher {
    Matcher {
        macs: macs.iter().copied().collect(),
        ouis: ouis.iter().copied().collect(),
        vendors: vendors.iter().map(|v| v.to_lowercase()).collect(),
    }
}

fn classifier(a: &Args) -> Classifier {
    Classifier {
        compat: matcher(&a.compat_mac, &a.compat_oui, &a.compat_vendor),
        playground: matcher(&a.playground_mac, &a.playground_oui, &a.playground_vendor),
        masquerade: matcher(&a.masquerade_mac, &a.masquerade_oui, &a.masquerade_vendor),
    }
}

fn nft_sets(a: &Args) -> NamedSets {
    NamedSets {
        isolated: a.nft_set_isolated.clone(),
        compat: a.nft_set_compat.clone(),
        playground: a.nft_set_playground.clone(),
        gateway: a.nft_set_gateway.clone(),
        network: a.nft_set_network.clone(),
        broadcast: a.nft_set_broadcast.clone(),
        subnet: a.nft_set_subnet.clone(),
        playground_subnet: a.nft_set_playground_subnet.clone(),
    }
}

/// The control request for the diagnostics flags given, if any: with one,
/// the binary acts as a client of a running daemon.
pub fn control_request(a: &Args) -> Result<Option<Request>, UsageError> {
    let cmd = if a.status {
        Command::Status
    } else if a.verify {
        Command::Verify
    } else if let Some(Sections(sections)) = &a.dump {
        Command::Dump {
            sections: sections.clone(),
        }
    } else if let Some(k) = &a.show {
        Command::Show { key: k.clone() }
    } else if a.config {
        Command::Config
    } else if let Some(m) = a.block {
        Command::Block {
            mac: m.to_string(),
            seconds: a.block_for.as_ref().map(|f| f.value),
        }
    } else if let Some(m) = a.unblock {
        Command::Unblock { mac: m.to_string() }
    } else {
        if let Some(f) = &a.block_for {
            return Err(UsageError::new("--for", &f.text, "only with --block"));
        }
        return Ok(None);
    };
    Ok(Some(Request {
        version: VERSION,
        cmd,
        redact: a.redact,
        all: a.all,
    }))
}

#[cfg(test)]
mod tests;
