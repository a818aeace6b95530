//! Settings shared by the command line and the layers below it. They live
//! here, not in `cli`, so that `system` can use them without importing the
//! command line (layers only import downwards). This module imports nothing
//! else of the crate: every layer may use it.
//!
//! The daemon's whole configuration, and how it is completed by what start-up
//! detects, is `daemon::Config` (above `system`, whose types it holds).

use std::fmt;

use clap::ValueEnum;

/// `--isolation`: whether client-to-client traffic is blocked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Isolation {
    On,
    Off,
    System,
}

impl Isolation {
    /// The flag's value as the operator writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Isolation::On => "on",
            Isolation::Off => "off",
            Isolation::System => "system",
        }
    }
}

/// `--xdp`: how the XDP program is attached, if at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum XdpMode {
    Auto,
    Native,
    Generic,
    Off,
}

impl XdpMode {
    /// The flag's value as the operator writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            XdpMode::Auto => "auto",
            XdpMode::Native => "native",
            XdpMode::Generic => "generic",
            XdpMode::Off => "off",
        }
    }
}

/// DHCP admission rates as the flags give them, per second. The kernel's
/// form (with bursts and ABI version) is built by `system::xdp::limits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimits {
    /// `--rate-limit`: frames per client MAC.
    pub mac_rate: u32,
    /// `--rate-burst`: frames a client MAC may send at once.
    pub mac_burst: u32,
    /// `--global-rate-limit`: frames from all clients.
    pub global_rate: u32,
    /// `--new-client-rate`: frames from MACs without a lease.
    pub new_rate: u32,
    /// `--xdp-offer-rate`: broadcast OFFERs the XDP responder sends.
    pub offer_rate: u32,
    /// `--cookie-rate`: REQUESTs for an XDP OFFER's address admitted.
    pub cookie_rate: u32,
}

/// A value the operator gave is refused: printed as one line naming the
/// option and the value as given, exit status 2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid value '{value}' for {option}: {reason}")]
pub struct UsageError {
    pub option: &'static str,
    pub value: String,
    pub reason: String,
}

impl UsageError {
    pub fn new(option: &'static str, value: &str, reason: impl Into<String>) -> UsageError {
        UsageError {
            option,
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

/// A parsed value with the text it was parsed from, for messages that must
/// quote the operator's spelling.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Given<T> {
    pub value: T,
    pub text: String,
}

impl<T> fmt::Display for Given<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Interface name reduced to `[A-Za-z0-9_]` for per-instance resource names
/// (socket, nft table, bpffs folder).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sanitises_interface_names() {
        assert_eq!(sanitise_iface("wlan0.10"), "wlan0_10");
        assert_eq!(sanitise_iface("br-guest"), "br_guest");
    }

    #[test]
    fn names_match_the_flag_values() {
        for i in Isolation::value_variants() {
            let pv = i.to_possible_value().unwrap();
            assert_eq!(pv.get_name(), i.as_str());
            assert_eq!(format!("{i:?}").to_lowercase(), i.as_str());
        }
        for x in XdpMode::value_variants() {
            let pv = x.to_possible_value().unwrap();
            assert_eq!(pv.get_name(), x.as_str());
            assert_eq!(format!("{x:?}").to_lowercase(), x.as_str());
        }
    }

    #[test]
    fn usage_errors_name_option_and_value() {
        let e = UsageError::new("--pool", "198.18.0.1/24", "host bits set");
        assert_eq!(
            e.to_string(),
            "invalid value '198.18.0.1/24' for --pool: host bits set"
        );
    }
}
