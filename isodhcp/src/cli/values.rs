//! Parsers for single option values: MACs, OUIs, integers, `--static`,
//! `--dhcp-option`. Each returns a [`CliError`] naming the option.

use super::{CliError, bad};
use crate::engine::config::{CustomOption, StaticEntry};
use crate::wire::Mac;
use crate::wire::cidr::parse_ipv4;

pub(super) fn parse_mac(option: &'static str, s: &str) -> Result<Mac, CliError> {
    Mac::parse(s).ok_or_else(|| bad(option, s, "expected a MAC like aa:bb:cc:dd:ee:ff"))
}

pub(super) fn parse_oui(option: &'static str, s: &str) -> Result<[u8; 3], CliError> {
    let parts: Vec<&str> = s.split(':').collect();
    let err = || bad(option, s, "expected an OUI like AA:BB:CC");
    if parts.len() != 3 || parts.iter().any(|p| p.len() != 2) {
        return Err(err());
    }
    let mut out = [0u8; 3];
    for (o, p) in out.iter_mut().zip(parts) {
        *o = u8::from_str_radix(p, 16).map_err(|_| err())?;
    }
    Ok(out)
}

pub(super) fn parse_uint<T: std::str::FromStr>(
    option: &'static str,
    s: &str,
) -> Result<T, CliError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(option, s, "expected a non-negative integer"));
    }
    s.parse().map_err(|_| bad(option, s, "number out of range"))
}

/// `--for`: whole seconds, at most [`MAX_BLOCK_SECONDS`].
pub(super) fn parse_block_for(s: &str) -> Result<u64, CliError> {
    let max = crate::control::proto::MAX_BLOCK_SECONDS;
    let reason = format!("at most {max} seconds (ten years)");
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match parse_uint::<u64>("--for", s) {
        Ok(secs) if secs <= max => Ok(secs),
        // All digits but past u64 is just as much "too long".
        _ if digits => Err(bad("--for", s, reason)),
        other => other,
    }
}

pub(super) fn parse_static(s: &str) -> Result<StaticEntry, CliError> {
    const O: &str = "--static";
    let (mac, rest) = s.split_once('=').ok_or_else(|| {
        bad(
            O,
            s,
            "expected MAC=IP[,hostname][,compat][,masquerade][,playground]",
        )
    })?;
    let mac = Mac::parse(mac).ok_or_else(|| bad(O, s, "bad MAC address"))?;
    let mut parts = rest.split(',');
    let ip_s = parts.next().unwrap_or_default();
    let ip = parse_ipv4(ip_s).ok_or_else(|| bad(O, s, "bad IPv4 address"))?;
    let mut e = StaticEntry {
        mac,
        ip,
        hostname: None,
        compat: false,
        masquerade: false,
        playground: false,
    };
    for p in parts {
        match p {
            "compat" => e.compat = true,
            "masquerade" => e.masquerade = true,
            "playground" => e.playground = true,
            "" => return Err(bad(O, s, "empty field")),
            h if e.hostname.is_none() => e.hostname = Some(h.to_string()),
            _ => return Err(bad(O, s, "more than one hostname")),
        }
    }
    if e.compat && e.playground {
        return Err(bad(O, s, "compat and playground exclude each other"));
    }
    Ok(e)
}

const MANAGED_OPTIONS: [u8; 11] = [0, 1, 3, 51, 53, 54, 58, 59, 121, 249, 255];

pub(super) fn parse_dhcp_option(s: &str) -> Result<CustomOption, CliError> {
    const O: &str = "--dhcp-option";
    let mut it = s.splitn(3, ',');
    let (code, ty, val) = match (it.next(), it.next(), it.next()) {
        (Some(c), Some(t), Some(v)) => (c, t, v),
        _ => return Err(bad(O, s, "expected CODE,TYPE,VALUE")),
    };
    let code: u8 = parse_uint::<u16>(O, code)
        .ok()
        .filter(|c| (1..=254).contains(c))
        .map(|c| c as u8)
        .ok_or_else(|| bad(O, s, "CODE must be 1..254"))?;
    if MANAGED_OPTIONS.contains(&code) {
        return Err(bad(O, s, format!("option {code} is managed by isodhcp")));
    }
    let int = |max: u64| -> Result<u64, CliError> {
        parse_uint::<u64>(O, val)
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| bad(O, s, format!("integer must be 0..{max}")))
    };
    let value = match ty {
        "ip" => parse_ipv4(val)
            .ok_or_else(|| bad(O, s, "bad IPv4 address"))?
            .octets()
            .to_vec(),
        "ips" => {
            let mut v = Vec::new();
            for p in val.split(',') {
                v.extend_from_slice(
                    &parse_ipv4(p)
                        .ok_or_else(|| bad(O, s, "bad IPv4 address in list"))?
                        .octets(),
                );
            }
            v
        }
        "str" => val.as_bytes().to_vec(),
        "int8" => vec![int(0xff)? as u8],
        "int16" => (int(0xffff)? as u16).to_be_bytes().to_vec(),
        "int32" => (int(0xffff_ffff)? as u32).to_be_bytes().to_vec(),
        "hex" => {
            let digits: String = val.chars().filter(|c| *c != ':' && *c != ' ').collect();
            if !digits.len().is_multiple_of(2) {
                return Err(bad(O, s, "odd number of hex digits"));
            }
            (0..digits.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&digits[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| bad(O, s, "bad hex digit"))?
        }
        _ => {
            return Err(bad(
                O,
                s,
                "TYPE must be ip, ips, str, int8, int16, int32 or hex",
            ));
        }
    };
    if value.len() > 255 {
        return Err(bad(O, s, "value longer than 255 bytes"));
    }
    Ok(CustomOption { code, value })
}
