//! Versioned request and response envelope shared by daemon and client;
//! the payload of each answer is a type of [`super::reply`].

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Protocol version; a daemon answers requests of other versions with an error.
pub const VERSION: u32 = 1;

/// One request: `{"version":1,"cmd":"status"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub version: u32,
    #[serde(flatten)]
    pub cmd: Command,
    /// Mask hostnames and the last three octets of MACs in the answer.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redact: bool,
    /// `--verify`: include transient findings.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case")]
pub enum Command {
    Status,
    Config,
    Dump {
        sections: Vec<String>,
    },
    Show {
        key: String,
    },
    Verify,
    Block {
        mac: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<u64>,
    },
    Unblock {
        mac: String,
    },
}

/// Longest `--block --for`: ten years of 365 days. Anything longer is
/// "for ever" in practice, and the bound keeps the deadline (monotonic
/// nanoseconds in a u64) far from overflowing.
pub const MAX_BLOCK_SECONDS: u64 = 10 * 365 * 86_400;

/// Sections `--dump` knows; `--dump` alone means leases and subnets.
pub const DUMP_SECTIONS: [&str; 8] = [
    "leases",
    "subnets",
    "quarantine",
    "ratelimit",
    "pool",
    "config",
    "firewall",
    "xdp",
];

/// One response: `{"version":1,"status":"ok",...}` or
/// `{"version":1,"status":"error","message":"..."}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub version: u32,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Command-specific payload, flattened into the object.
    #[serde(flatten)]
    pub body: serde_json::Map<String, Value>,
}

impl Response {
    /// A successful answer carrying `reply` (a type of [`super::reply`]).
    pub fn ok(reply: &impl Serialize) -> Response {
        match serde_json::to_value(reply) {
            Ok(Value::Object(body)) => Response {
                version: VERSION,
                status: "ok".into(),
                message: None,
                body,
            },
            Ok(_) => Response::error("internal error: the answer is not an object"),
            Err(e) => Response::error(format!("internal error: cannot encode the answer: {e}")),
        }
    }

    /// The payload read back as the reply type of the command asked.
    pub fn reply<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(Value::Object(self.body.clone()))
    }

    pub fn error(message: impl Into<String>) -> Response {
        Response {
            version: VERSION,
            status: "error".into(),
            message: Some(message.into()),
            body: serde_json::Map::new(),
        }
    }

    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Masks a MAC's last three octets: `02:00:00:xx:xx:xx`.
pub fn redact_mac(mac: &str) -> String {
    match mac.get(..8) {
        Some(head) if mac.len() == 17 => format!("{head}:xx:xx:xx"),
        _ => mac.to_string(),
    }
}

/// Masks every MAC written inside `text` (`aa:bb:cc:dd:ee:ff`, any case).
pub fn redact_text(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let is_mac = b.len() - i >= 17
            && text.is_char_boundary(i)
            && text.is_char_boundary(i + 17)
            && crate::wire::Mac::parse(&text[i..i + 17].to_ascii_lowercase()).is_some()
            && (i == 0 || !b[i - 1].is_ascii_hexdigit() && b[i - 1] != b':')
            && (i + 17 == b.len() || !b[i + 17].is_ascii_hexdigit() && b[i + 17] != b':');
        if is_mac {
            out.push_str(&text[i..i + 8]);
            out.push_str(":xx:xx:xx");
            i += 17;
        } else {
            let ch = text[i..].chars().next().unwrap_or(' ');
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Applies `--redact` to a whole answer: every MAC is masked wherever it is
/// written (values, sentences, object keys), every `hostname` becomes
/// "(redacted)".
pub fn redact(v: &mut Value) {
    match v {
        Value::String(s) => *s = redact_text(s),
        Value::Array(a) => a.iter_mut().for_each(redact),
        Value::Object(o) => {
            let entries: Vec<(String, Value)> = std::mem::take(o).into_iter().collect();
            for (k, mut val) in entries {
                if k == "hostname" && !val.is_null() {
                    val = Value::String("(redacted)".into());
                } else {
                    redact(&mut val);
                }
                let k = if crate::wire::Mac::parse(&k).is_some() {
                    redact_mac(&k)
                } else {
                    k
                };
                o.insert(k, val);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_wire_format() {
        let r = Request {
            version: 1,
            cmd: Command::Status,
            redact: false,
            all: false,
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"version":1,"cmd":"status"}"#
        );
        let d: Request = serde_json::from_str(
            r#"{"version":1,"cmd":"dump","sections":["leases","xdp"],"redact":true}"#,
        )
        .unwrap();
        assert_eq!(
            d.cmd,
            Command::Dump {
                sections: vec!["leases".into(), "xdp".into()]
            }
        );
        assert!(d.redact);
        let b: Request = serde_json::from_str(
            r#"{"version":1,"cmd":"block","mac":"02:00:00:00:00:01","seconds":30}"#,
        )
        .unwrap();
        assert_eq!(
            b.cmd,
            Command::Block {
                mac: "02:00:00:00:00:01".into(),
                seconds: Some(30)
            }
        );
        assert!(serde_json::from_str::<Request>(r#"{"version":1,"cmd":"reboot"}"#).is_err());
    }

    #[test]
    fn response_wire_format() {
        let r = Response::ok(&super::super::reply::UnblockReply {
            unblocked: "02:00:00:00:00:09".into(),
        });
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"version":1,"status":"ok","unblocked":"02:00:00:00:00:09"}"#
        );
        let e = Response::error("no such client");
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"version":1,"status":"error","message":"no such client"}"#
        );
    }

    #[test]
    fn redaction_masks_macs_and_hostnames_everywhere() {
        let mut v = serde_json::json!({"leases": {"02:00:00:aa:bb:cc": {"hostname": "alice-phone", "mac": "02:00:00:aa:bb:cc", "ip": "198.18.0.9"}}, "blocked": ["0a:0b:0c:0d:0e:0f"], "findings": ["lease 0A:0B:0C:1D:1E:1F → 198.18.0.9 in its grace period"]});
        redact(&mut v);
        let s = v.to_string();
        assert!(
            !s.contains("aa:bb:cc") && !s.contains("alice") && !s.contains("0d:0e:0f"),
            "{s}"
        );
        assert!(s.contains("02:00:00:xx:xx:xx") && s.contains("198.18.0.9"));
    }
}
