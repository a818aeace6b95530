//! clap `value_parser`s: each checks one flag's value on its own and
//! returns a [`UsageError`] naming the option and the value as given. The
//! messages are part of the command-line contract (isodhcp(8)).

use std::net::{Ipv4Addr, SocketAddr};

use crate::config::{Given, UsageError};
use crate::control::proto::{DUMP_SECTIONS, MAX_BLOCK_SECONDS};
use crate::engine::config::{CustomOption, StaticEntry};
use crate::system::nft::SetRef;
use crate::wire::Mac;
use crate::wire::cidr::{Cidr, CidrError, parse_ipv4};

fn bad(option: &'static str, value: &str, reason: impl Into<String>) -> UsageError {
    UsageError::new(option, value, reason)
}

/// `--interface`: a name the kernel could have.
pub(super) fn interface(s: &str) -> Result<String, UsageError> {
    if s.is_empty() || s.len() > 15 || s.contains(['/', ' ']) {
        return Err(bad("--interface", s, "not a valid interface name"));
    }
    Ok(s.to_string())
}

pub(super) fn server_ip(s: &str) -> Result<Ipv4Addr, UsageError> {
    parse_ipv4(s).ok_or_else(|| bad("--server-ip", s, "expected an IPv4 address"))
}

/// `--pool`: a prefix without host bits, /30 or larger.
pub(super) fn pool(s: &str) -> Result<Cidr, UsageError> {
    let p = s.parse::<Cidr>().map_err(|e| match e {
        CidrError::Syntax => bad("--pool", s, "expected ADDRESS/PREFIX"),
        CidrError::HostBits(c) => bad("--pool", s, format!("host bits set (did you mean {c}?)")),
    })?;
    if p.prefix > 30 {
        return Err(bad("--pool", &p.to_string(), "pool must be /30 or larger"));
    }
    Ok(p)
}

/// One `--dns`: one address or a comma-separated list.
pub(super) fn dns(s: &str) -> Result<Given<Vec<Ipv4Addr>>, UsageError> {
    let value = s
        .split(',')
        .map(|part| {
            parse_ipv4(part.trim()).ok_or_else(|| bad("--dns", s, "expected an IPv4 address"))
        })
        .collect::<Result<_, _>>()?;
    Ok(Given {
        value,
        text: s.to_string(),
    })
}

pub(super) fn lease_time(s: &str) -> Result<u32, UsageError> {
    let t: u32 = parse_uint("--lease-time", s)?;
    if t < 60 {
        return Err(bad("--lease-time", s, "must be at least 60 seconds"));
    }
    Ok(t)
}

pub(super) fn playground_size(s: &str) -> Result<Given<u32>, UsageError> {
    let n: u32 = parse_uint("--playground-size", s)?;
    if n < 6 {
        return Err(bad("--playground-size", s, "must be at least 6"));
    }
    Ok(Given {
        value: n,
        text: s.to_string(),
    })
}

/// `--rate-limit` and friends: 1..10,000,000 per second.
pub(super) fn rate(option: &'static str) -> impl Fn(&str) -> Result<u32, UsageError> + Clone {
    move |s| {
        let n: u32 = parse_uint(option, s)?;
        if n == 0 || n > 10_000_000 {
            return Err(bad(option, s, "must be 1..10000000"));
        }
        Ok(n)
    }
}

/// `--xdp-offer-stripe`: 0 (responder off) ..= the kernel map's size.
pub(super) fn stripe(s: &str) -> Result<u32, UsageError> {
    let n: u32 = parse_uint("--xdp-offer-stripe", s)?;
    let max = isodhcp_common::STRIPE_MAX;
    if n > max {
        return Err(bad("--xdp-offer-stripe", s, format!("must be 0..{max}")));
    }
    Ok(n)
}

pub(super) fn metrics_listen(s: &str) -> Result<SocketAddr, UsageError> {
    s.parse()
        .map_err(|_| bad("--metrics-listen", s, "expected ADDR:PORT"))
}

pub(super) fn mac(option: &'static str) -> impl Fn(&str) -> Result<Mac, UsageError> + Clone {
    move |s| parse_mac(option, s)
}

pub(super) fn oui(option: &'static str) -> impl Fn(&str) -> Result<[u8; 3], UsageError> + Clone {
    move |s| parse_oui(option, s)
}

/// `--nft-set-*`: "FAMILY TABLE NAME".
pub(super) fn set_ref(option: &'static str) -> impl Fn(&str) -> Result<SetRef, UsageError> + Clone {
    move |s| {
        SetRef::parse(s).ok_or_else(|| {
            bad(
                option,
                s,
                "expected \"FAMILY TABLE NAME\", e.g. \"inet filter iso_clients\"",
            )
        })
    }
}

/// `--dump[=SECTIONS]`: the sections asked for, in the order given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sections(pub Vec<String>);

pub(super) fn dump_sections(s: &str) -> Result<Sections, UsageError> {
    let sections: Vec<String> = s
        .split(',')
        .map(|x| x.trim().to_string())
        .filter(|x| !x.is_empty())
        .collect();
    if let Some(unknown) = sections
        .iter()
        .find(|x| !DUMP_SECTIONS.contains(&x.as_str()))
    {
        return Err(bad(
            "--dump",
            unknown,
            format!("sections are {}", DUMP_SECTIONS.join(",")),
        ));
    }
    Ok(Sections(sections))
}

pub(super) fn parse_mac(option: &'static str, s: &str) -> Result<Mac, UsageError> {
    Mac::parse(s).ok_or_else(|| bad(option, s, "expected a MAC like aa:bb:cc:dd:ee:ff"))
}

pub(super) fn parse_oui(option: &'static str, s: &str) -> Result<[u8; 3], UsageError> {
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
) -> Result<T, UsageError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(option, s, "expected a non-negative integer"));
    }
    s.parse().map_err(|_| bad(option, s, "number out of range"))
}

/// `--for`: whole seconds, at most [`MAX_BLOCK_SECONDS`].
pub(super) fn block_for(s: &str) -> Result<Given<u64>, UsageError> {
    let value = seconds(s)?;
    Ok(Given {
        value,
        text: s.to_string(),
    })
}

fn seconds(s: &str) -> Result<u64, UsageError> {
    let reason = format!("at most {MAX_BLOCK_SECONDS} seconds (ten years)");
    let digits = !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    match parse_uint::<u64>("--for", s) {
        Ok(secs) if secs <= MAX_BLOCK_SECONDS => Ok(secs),
        // All digits but past u64 is just as much "too long".
        _ if digits => Err(bad("--for", s, reason)),
        other => other,
    }
}

/// `--static MAC=IP[,hostname][,compat][,masquerade][,playground]`.
pub(super) fn static_entry(s: &str) -> Result<Given<StaticEntry>, UsageError> {
    Ok(Given {
        value: parse_static(s)?,
        text: s.to_string(),
    })
}

pub(super) fn parse_static(s: &str) -> Result<StaticEntry, UsageError> {
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

/// `--dhcp-option CODE,TYPE,VALUE`, encoded.
pub(super) fn parse_dhcp_option(s: &str) -> Result<CustomOption, UsageError> {
    const O: &str = "--dhcp-option";
    let mut it = s.splitn(3, ',');
    let (Some(code), Some(ty), Some(val)) = (it.next(), it.next(), it.next()) else {
        return Err(bad(O, s, "expected CODE,TYPE,VALUE"));
    };
    let code: u8 = parse_uint::<u16>(O, code)
        .ok()
        .filter(|c| (1..=254).contains(c))
        .map(|c| c as u8)
        .ok_or_else(|| bad(O, s, "CODE must be 1..254"))?;
    if MANAGED_OPTIONS.contains(&code) {
        return Err(bad(O, s, format!("option {code} is managed by isodhcp")));
    }
    let value = option_value(ty, val).map_err(|reason| bad(O, s, reason))?;
    if value.len() > 255 {
        return Err(bad(O, s, "value longer than 255 bytes"));
    }
    Ok(CustomOption { code, value })
}

/// The bytes of a `--dhcp-option` VALUE of type `ty`, or why not.
fn option_value(ty: &str, val: &str) -> Result<Vec<u8>, String> {
    let int = |max: u64| -> Result<u64, String> {
        parse_uint::<u64>("", val)
            .ok()
            .filter(|v| *v <= max)
            .ok_or_else(|| format!("integer must be 0..{max}"))
    };
    Ok(match ty {
        "ip" => parse_ipv4(val).ok_or("bad IPv4 address")?.octets().to_vec(),
        "ips" => {
            let mut v = Vec::new();
            for p in val.split(',') {
                v.extend_from_slice(&parse_ipv4(p).ok_or("bad IPv4 address in list")?.octets());
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
                return Err("odd number of hex digits".into());
            }
            (0..digits.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&digits[i..i + 2], 16))
                .collect::<Result<Vec<u8>, _>>()
                .map_err(|_| "bad hex digit")?
        }
        _ => return Err("TYPE must be ip, ips, str, int8, int16, int32 or hex".into()),
    })
}
