//! Versioned JSON lease file (SPEC §7).
//!
//! Reads the original tool's format (`{"leases": {MAC: {ip, expires?, mode?,
//! masq, hostname?}}, "subnets": {...}}`, `expires` a Unix epoch float) and
//! writes the same keys plus `"version"` and `"quarantine"`.
//!
//! Guarantees:
//! - Writes are atomic and durable: temporary file in the same directory,
//!   fsync, rename over the old file, fsync of the directory; mode 0600.
//! - Nothing on disk is silently discarded: a record this build cannot use
//!   (bad syntax, a mode it does not serve yet) is logged and carried over
//!   unchanged into every later write; a file that is not JSON at all is
//!   preserved as `<file>.corrupt-<unix time>` before the first rewrite.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::{LeaseRecord, Millis, Mode, QuarantineRecord};
use crate::wire::Mac;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read lease file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot write lease file {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("cannot preserve corrupt lease file as {0}: {1}")]
    Preserve(PathBuf, std::io::Error),
}

/// One lease as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct LeaseJson {
    ip: Ipv4Addr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    #[serde(default)]
    masq: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    vendor: Option<String>,
}

#[derive(Debug, Serialize)]
struct FileJson<'a> {
    version: u32,
    leases: BTreeMap<String, Value>,
    subnets: &'a BTreeMap<String, Value>,
    quarantine: &'a BTreeMap<String, Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct QuarantineJson {
    until: f64,
    #[serde(default)]
    reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct SubnetJson {
    gateway: Ipv4Addr,
    subnet: String,
}

/// What was read back.
#[derive(Debug, Default)]
pub struct Loaded {
    pub records: Vec<LeaseRecord>,
    pub quarantine: Vec<QuarantineRecord>,
    /// One line per record or section that could not be used.
    pub warnings: Vec<String>,
}

/// The lease file of one instance.
#[derive(Debug)]
pub struct LeaseStore {
    path: PathBuf,
    /// Records carried over verbatim (MAC → raw JSON).
    carried: BTreeMap<String, Value>,
    /// `subnets` entries of carried-over records.
    subnets: BTreeMap<String, Value>,
    /// Set when the file on disk must be preserved before the first rewrite.
    preserve_first: bool,
}

fn to_millis(secs: f64) -> Option<Millis> {
    (0.0..1e13)
        .contains(&secs)
        .then(|| (secs * 1000.0).round() as Millis)
}

fn decode_record(mac: &str, v: &Value) -> Result<LeaseRecord, String> {
    let m = Mac::parse(&mac.to_ascii_lowercase()).ok_or("key is not a MAC address")?;
    let j: LeaseJson = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
    let mode = match j.mode.as_deref() {
        None => Mode::Isolated,
        Some(m) => Mode::parse(m).ok_or_else(|| format!("unknown mode {m:?}"))?,
    };
    let expires = match j.expires {
        Some(e) => Some(to_millis(e).ok_or("expires is not a valid time")?),
        None => None,
    };
    Ok(LeaseRecord {
        mac: m,
        ip: j.ip,
        expires,
        mode,
        masq: j.masq,
        hostname: j.hostname,
        vendor: j.vendor,
    })
}

fn encode_record(r: &LeaseRecord) -> Value {
    let j = LeaseJson {
        ip: r.ip,
        expires: r.expires.map(|e| e as f64 / 1000.0),
        mode: Some(r.mode.as_str().into()),
        masq: r.masq,
        hostname: r.hostname.clone(),
        vendor: r.vendor.clone(),
    };
    serde_json::to_value(j).unwrap_or(Value::Null)
}

/// The original tool's `subnets` entry of a compat lease.
fn subnet_of(r: &LeaseRecord) -> Option<Value> {
    (r.mode == Mode::Compat).then(|| {
        let base = u32::from(r.ip) & !3;
        serde_json::to_value(SubnetJson {
            gateway: Ipv4Addr::from(base + 1),
            subnet: format!("{}/30", Ipv4Addr::from(base)),
        })
        .unwrap_or(Value::Null)
    })
}

fn object(v: Option<&Value>) -> BTreeMap<String, Value> {
    v.and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

impl LeaseStore {
    /// Opens and reads the lease file. A missing file is an empty store.
    pub fn open(path: &Path) -> Result<(LeaseStore, Loaded), StoreError> {
        let mut store = LeaseStore {
            path: path.to_path_buf(),
            carried: BTreeMap::new(),
            subnets: BTreeMap::new(),
            preserve_first: false,
        };
        let mut loaded = Loaded::default();
        let text = match fs::read(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((store, loaded)),
            Err(e) => return Err(StoreError::Read(path.to_path_buf(), e)),
        };
        let root: Value = match serde_json::from_slice(&text) {
            Ok(v @ Value::Object(_)) => v,
            Ok(_) => {
                store.preserve_first = true;
                loaded.warnings.push(
                    "lease file is not a JSON object; it will be preserved and replaced".into(),
                );
                return Ok((store, loaded));
            }
            Err(e) => {
                store.preserve_first = true;
                loaded.warnings.push(format!(
                    "lease file is not valid JSON ({e}); it will be preserved and replaced"
                ));
                return Ok((store, loaded));
            }
        };
        let subnets = object(root.get("subnets"));
        for (ip, v) in object(root.get("quarantine")) {
            match (
                ip.parse::<Ipv4Addr>(),
                serde_json::from_value::<QuarantineJson>(v),
            ) {
                (Ok(ip), Ok(q)) if to_millis(q.until).is_some() => {
                    loaded.quarantine.push(QuarantineRecord {
                        ip,
                        until: to_millis(q.until).unwrap_or(0),
                        reason: q.reason,
                    })
                }
                _ => loaded
                    .warnings
                    .push(format!("quarantine record {ip} is unreadable; dropped")),
            }
        }
        match root.get("leases") {
            None => {}
            Some(Value::Object(leases)) => {
                for (mac, v) in leases {
                    match decode_record(mac, v) {
                        Ok(r) => loaded.records.push(r),
                        Err(why) => {
                            loaded.warnings.push(format!(
                                "lease record {mac}: {why}; kept in the file unchanged"
                            ));
                            store.carried.insert(mac.clone(), v.clone());
                            if let Some(sub) = subnets.get(mac) {
                                store.subnets.insert(mac.clone(), sub.clone());
                            }
                        }
                    }
                }
            }
            Some(_) => {
                store.preserve_first = true;
                loaded.warnings.push(
                    "\"leases\" is not an object; the file will be preserved and replaced".into(),
                );
            }
        }
        Ok((store, loaded))
    }

    /// Carries a record back into the file verbatim (e.g. one the engine
    /// could not restore), so it is not lost.
    pub fn carry(&mut self, r: &LeaseRecord) {
        self.carried.insert(r.mac.to_string(), encode_record(r));
        if let Some(s) = subnet_of(r) {
            self.subnets.insert(r.mac.to_string(), s);
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes all `records` (plus carried-over ones) and the quarantine
    /// atomically and durably.
    pub fn write<'a>(
        &mut self,
        now: Millis,
        records: impl Iterator<Item = &'a LeaseRecord>,
        quarantine: &[QuarantineRecord],
    ) -> Result<(), StoreError> {
        if self.preserve_first {
            let saved = PathBuf::from(format!("{}.corrupt-{}", self.path.display(), now / 1000));
            fs::copy(&self.path, &saved).map_err(|e| StoreError::Preserve(saved.clone(), e))?;
            tracing::warn!(file = %saved.display(), "unreadable lease file preserved");
            self.preserve_first = false;
        }
        let mut leases = self.carried.clone();
        let mut subnets = self.subnets.clone();
        for r in records {
            leases.insert(r.mac.to_string(), encode_record(r));
            if let Some(s) = subnet_of(r) {
                subnets.insert(r.mac.to_string(), s);
            }
        }
        let quarantine = quarantine
            .iter()
            .map(|q| {
                (
                    q.ip.to_string(),
                    serde_json::json!({"until": q.until as f64 / 1000.0, "reason": q.reason}),
                )
            })
            .collect();
        let doc = FileJson {
            version: FORMAT_VERSION,
            leases,
            subnets: &subnets,
            quarantine: &quarantine,
        };
        let bytes = serde_json::to_vec_pretty(&doc).expect("JSON of plain maps always serialises");
        let werr = |e| StoreError::Write(self.path.clone(), e);
        let tmp = PathBuf::from(format!("{}.tmp", self.path.display()));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(werr)?;
            f.write_all(&bytes).map_err(werr)?;
            f.sync_all().map_err(werr)?;
        }
        fs::rename(&tmp, &self.path).map_err(werr)?;
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        File::open(dir).and_then(|d| d.sync_all()).map_err(werr)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
