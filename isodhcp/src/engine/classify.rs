//! Client classification (design.md §Classification): which mode and masquerade flag a
//! client gets.
//!
//! Precedence: static entry > MAC list > OUI > vendor substring (option 60,
//! case-insensitive; an empty pattern matches every client, even one that
//! sends no option 60). Within one level compat beats playground.
//! Masquerade is orthogonal: any level that matches sets it.

use std::collections::HashSet;

use crate::wire::Mac;

/// Address mode of a client (design.md §Modes). Serialised with the original tool's
/// words: `standard`, `compat`, `playground`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// A /32 behind the server IP as router (design.md §Isolated mode); the
    /// default. Written `standard`.
    Isolated,
    /// `b+2` of an aligned /30 with gateway `b+1` (design.md §Compat mode).
    Compat,
    /// A host of the shared playground block (design.md §Playground mode).
    Playground,
}

impl Mode {
    /// The lease-file and hook word: `standard`, `compat` or `playground`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Isolated => "standard",
            Mode::Compat => "compat",
            Mode::Playground => "playground",
        }
    }

    /// Reads a lease-file `mode`: the words of [`Mode::as_str`], and
    /// `isolated` too; `None` for anything else.
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "standard" | "isolated" => Some(Mode::Isolated),
            "compat" => Some(Mode::Compat),
            "playground" => Some(Mode::Playground),
            _ => None,
        }
    }
}

/// (mode, masquerade) of a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Profile {
    /// Address mode.
    pub mode: Mode,
    /// Masquerade flag: connections from outside the pool reach the client
    /// source-NATed to its gateway (design.md §Masquerade).
    pub masq: bool,
}

/// One list of `--X-mac`, `--X-oui`, `--X-vendor` values.
#[derive(Clone, Debug, Default)]
pub struct Matcher {
    /// Whole MACs (`--X-mac`), the strongest level.
    pub macs: HashSet<Mac>,
    /// First three MAC bytes (`--X-oui`).
    pub ouis: HashSet<[u8; 3]>,
    /// Lower-cased substrings.
    pub vendors: Vec<String>,
}

/// The level at which a matcher matched; lower is stronger.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Mac,
    Oui,
    Vendor,
}

impl Matcher {
    fn level(&self, mac: Mac, vendor: Option<&str>) -> Option<Level> {
        if self.macs.contains(&mac) {
            return Some(Level::Mac);
        }
        let oui = [mac.0[0], mac.0[1], mac.0[2]];
        if self.ouis.contains(&oui) {
            return Some(Level::Oui);
        }
        let v = vendor.unwrap_or("").to_lowercase();
        self.vendors
            .iter()
            .any(|p| v.contains(p.as_str()))
            .then_some(Level::Vendor)
    }

    /// True when the list has no MAC, OUI or vendor pattern, so it matches
    /// nobody.
    pub fn is_empty(&self) -> bool {
        self.macs.is_empty() && self.ouis.is_empty() && self.vendors.is_empty()
    }
}

/// All classification rules except statics (the engine checks those first).
#[derive(Clone, Debug, Default)]
pub struct Classifier {
    /// `--compat-*`: clients for [`Mode::Compat`].
    pub compat: Matcher,
    /// `--playground-*`: clients for [`Mode::Playground`].
    pub playground: Matcher,
    /// `--masquerade-*`: clients whose profile gets `masq`.
    pub masquerade: Matcher,
}

impl Classifier {
    /// Profile of a dynamic client. `playground_enabled` is false when no
    /// playground block exists, so playground matches fall back to isolated.
    pub fn classify(&self, mac: Mac, vendor: Option<&str>, playground_enabled: bool) -> Profile {
        let c = self.compat.level(mac, vendor);
        let p = if playground_enabled {
            self.playground.level(mac, vendor)
        } else {
            None
        };
        let mode = match (c, p) {
            (Some(c), Some(p)) if p < c => Mode::Playground,
            (Some(_), _) => Mode::Compat,
            (None, Some(_)) => Mode::Playground,
            (None, None) => Mode::Isolated,
        };
        Profile {
            mode,
            masq: self.masquerade.level(mac, vendor).is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: Mac = Mac([0xb8, 0x27, 0xeb, 1, 2, 3]);

    fn matcher(mac: bool, oui: bool, vendor: Option<&str>) -> Matcher {
        Matcher {
            macs: if mac { [M].into() } else { HashSet::new() },
            ouis: if oui {
                [[0xb8, 0x27, 0xeb]].into()
            } else {
                HashSet::new()
            },
            vendors: vendor.map(|v| vec![v.to_lowercase()]).unwrap_or_default(),
        }
    }

    #[test]
    fn default_is_isolated_without_masquerade() {
        let p = Classifier::default().classify(M, Some("MSFT 5.0"), true);
        assert_eq!(
            p,
            Profile {
                mode: Mode::Isolated,
                masq: false
            }
        );
    }

    #[test]
    fn precedence_mac_over_oui_over_vendor() {
        // Playground by MAC beats compat by OUI.
        let c = Classifier {
            compat: matcher(false, true, None),
            playground: matcher(true, false, None),
            ..Default::default()
        };
        assert_eq!(c.classify(M, None, true).mode, Mode::Playground);
        // Compat by OUI beats playground by vendor.
        let c = Classifier {
            compat: matcher(false, true, None),
            playground: matcher(false, false, Some("msft")),
            ..Default::default()
        };
        assert_eq!(c.classify(M, Some("MSFT 5.0"), true).mode, Mode::Compat);
        // Same level: compat beats playground.
        let c = Classifier {
            compat: matcher(false, false, Some("MSFT")),
            playground: matcher(false, false, Some("5.0")),
            ..Default::default()
        };
        assert_eq!(c.classify(M, Some("msft 5.0"), true).mode, Mode::Compat);
        // No playground block: playground matches are isolated.
        let c = Classifier {
            playground: matcher(true, false, None),
            ..Default::default()
        };
        assert_eq!(c.classify(M, None, false).mode, Mode::Isolated);
    }

    #[test]
    fn vendor_is_case_insensitive_and_empty_pattern_matches_all() {
        let c = Classifier {
            masquerade: matcher(false, false, Some("Android")),
            ..Default::default()
        };
        assert!(c.classify(M, Some("android-dhcp-14"), true).masq);
        assert!(!c.classify(M, None, true).masq);
        let c = Classifier {
            compat: matcher(false, false, Some("")),
            ..Default::default()
        };
        assert_eq!(c.classify(M, None, true).mode, Mode::Compat);
    }
}
