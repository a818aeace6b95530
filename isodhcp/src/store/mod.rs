//! Versioned JSON lease file with an append-only journal (design.md §Lease file, §Persistence).
//!
//! The lease file (`dhcp_leases_<iface>.json`) is a full snapshot in the
//! original tool's format (`{"leases": {MAC: {ip, expires?, mode?, masq,
//! hostname?}}, "subnets": {...}}`, `expires` a Unix epoch float) plus
//! `"version"` and `"quarantine"`. Between snapshots, changes are appended to
//! `<file>.journal`, one JSON object per line (`{"put": MAC, "lease": {...}}`,
//! `{"del": MAC}`, `{"quarantine": {...}}`), so a commit costs one short
//! append and one fsync whatever the number of leases; the journal is folded
//! into a new snapshot once it outgrows the lease table (amortised O(1)), and
//! by the daemon shortly after every commit, so the snapshot stays current.
//!
//! Guarantees:
//! - [`LeaseStore::commit`] returns only after the journal is fsynced: what it
//!   was given survives a crash. One call serves every change of a batch
//!   (group commit).
//! - Snapshots are atomic: temporary file in the same directory, fsync,
//!   rename, fsync of the directory; then the journal is truncated. A crash
//!   in between replays the journal onto the new snapshot, which is harmless
//!   (puts and deletes are absolute). Files are mode 0600.
//! - Nothing is written through a symlink: new files get a random name and
//!   are created exclusively with `O_NOFOLLOW`, the journal is opened with
//!   `O_NOFOLLOW`, and a lease folder that group or others may write is
//!   refused at start ([`StoreError::UnsafeDir`]).
//! - Nothing on disk is silently discarded: a record this build cannot use is
//!   logged and carried over unchanged into every later snapshot; a file that
//!   is not JSON at all is preserved as `<file>.corrupt-<unix time>-<random>` before
//!   the first rewrite. A torn last journal line (crash mid-append, never
//!   acknowledged) is ignored; other unreadable journal lines are reported.

mod files;
mod journal;

use std::collections::BTreeMap;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::{Dirty, LeaseRecord, Millis, Mode, QuarantineRecord};
use crate::wire::Mac;
use journal::Journal;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read lease file {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("cannot write lease file {0}: {1}")]
    Write(PathBuf, std::io::Error),
    #[error("cannot preserve corrupt lease file as {0}: {1}")]
    Preserve(PathBuf, std::io::Error),
    #[error(
        "lease directory {} is writable by group or others (mode {mode:04o}), so another \
         user could plant files where leases are written; fix it with `chmod 0700 {}`",
        dir.display(),
        dir.display()
    )]
    UnsafeDir { dir: PathBuf, mode: u32 },
    #[error("cannot use lease directory {0}: {1}")]
    Dir(PathBuf, std::io::Error),
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

/// [`LeaseJson`] as written: the same fields in the same order (so the
/// same bytes), borrowed from the record instead of built as a
/// `serde_json::Value` per lease, which made a snapshot of 60,000 leases
/// cost 139 ms of CPU instead of 53 (`cargo bench -p isodhcp --bench store`).
#[derive(Debug, Serialize)]
struct LeaseOut<'a> {
    ip: Ipv4Addr,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<f64>,
    mode: &'static str,
    masq: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    hostname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    vendor: Option<&'a str>,
}

impl<'a> LeaseOut<'a> {
    fn of(r: &'a LeaseRecord) -> LeaseOut<'a> {
        LeaseOut {
            ip: r.ip,
            expires: r.expires.map(|e| e as f64 / 1000.0),
            mode: r.mode.as_str(),
            masq: r.masq,
            hostname: r.hostname.as_deref(),
            vendor: r.vendor.as_deref(),
        }
    }
}

/// A `leases` entry of the file: one of ours, or one carried verbatim.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum EntryOut<'a> {
    Ours(LeaseOut<'a>),
    Carried(&'a Value),
}

/// One journal line.
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum LineOut<'a> {
    Put { put: String, lease: LeaseOut<'a> },
    Del { del: String },
    Quarantine { quarantine: BTreeMap<String, Value> },
}

#[derive(Debug, Serialize)]
struct FileJson<'a> {
    version: u32,
    leases: BTreeMap<String, EntryOut<'a>>,
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
    /// The unreadable file as it was read, preserved before the first rewrite.
    preserve_first: Option<Vec<u8>>,
    journal: Journal,
}

fn to_millis(secs: f64) -> Option<Millis> {
    (0.0..1e13)
        .contains(&secs)
        .then(|| (secs * 1000.0).round() as Millis)
}

/// Which record serves each MAC when keys that differ only in spelling
/// (case, as a hand-edited or hostile file may have) name the same one:
/// the key written the way we write it, else the first. The others are
/// carried verbatim under their own keys, which therefore never collide
/// with the one written back (nothing is lost in a rewrite).
fn one_key_per_mac(
    decoded: &[(String, Value, Result<LeaseRecord, String>)],
) -> BTreeMap<Mac, usize> {
    let mut keep: BTreeMap<Mac, usize> = BTreeMap::new();
    for (i, (key, _, r)) in decoded.iter().enumerate() {
        if let Ok(r) = r {
            let canonical = *key == r.mac.to_string();
            keep.entry(r.mac)
                .and_modify(|k| {
                    if canonical {
                        *k = i;
                    }
                })
                .or_insert(i);
        }
    }
    keep
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
    serde_json::to_value(LeaseOut::of(r)).unwrap_or(Value::Null)
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

fn decode_quarantine(raw: BTreeMap<String, Value>, loaded: &mut Loaded) {
    for (ip, v) in raw {
        match (
            ip.parse::<Ipv4Addr>(),
            serde_json::from_value::<QuarantineJson>(v),
        ) {
            (Ok(ip), Ok(q)) if to_millis(q.until).is_some() => {
                loaded.quarantine.push(QuarantineRecord {
                    ip,
                    until: to_millis(q.until).unwrap_or(0),
                    reason: q.reason,
                });
            }
            _ => loaded
                .warnings
                .push(format!("quarantine record {ip} is unreadable; dropped")),
        }
    }
}

fn encode_quarantine(q: &[QuarantineRecord]) -> BTreeMap<String, Value> {
    q.iter()
        .map(|q| {
            (
                q.ip.to_string(),
                serde_json::json!({"until": q.until as f64 / 1000.0, "reason": q.reason}),
            )
        })
        .collect()
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::Write(path.to_path_buf(), e)
}

impl LeaseStore {
    /// Opens and reads the lease file and its journal. Missing files are an
    /// empty store.
    pub fn open(path: &Path) -> Result<(LeaseStore, Loaded), StoreError> {
        files::check_dir(path)?;
        let mut loaded = Loaded::default();
        let mut preserve_first = None;
        let (mut leases, mut quarantine, subnets) = match fs::read(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Default::default(),
            Err(e) => return Err(StoreError::Read(path.to_path_buf(), e)),
            Ok(text) => {
                let parsed = serde_json::from_slice::<Value>(&text);
                match parsed {
                    Ok(root @ Value::Object(_)) => {
                        if root.get("leases").is_some_and(|l| !l.is_object()) {
                            preserve_first = Some(text);
                            loaded.warnings.push("\"leases\" is not an object; the file will be preserved and replaced".into());
                        }
                        (
                            object(root.get("leases")),
                            object(root.get("quarantine")),
                            object(root.get("subnets")),
                        )
                    }
                    Ok(_) => {
                        preserve_first = Some(text);
                        loaded.warnings.push(
                            "lease file is not a JSON object; it will be preserved and replaced"
                                .into(),
                        );
                        Default::default()
                    }
                    Err(e) => {
                        preserve_first = Some(text);
                        loaded.warnings.push(format!(
                            "lease file is not valid JSON ({e}); it will be preserved and replaced"
                        ));
                        Default::default()
                    }
                }
            }
        };
        let journal = Journal::open(path, &mut leases, &mut quarantine, &mut loaded.warnings)?;
        let mut store = LeaseStore {
            path: path.to_path_buf(),
            carried: BTreeMap::new(),
            subnets: BTreeMap::new(),
            preserve_first,
            journal,
        };
        decode_quarantine(quarantine, &mut loaded);
        let decoded: Vec<(String, Value, Result<LeaseRecord, String>)> = leases
            .into_iter()
            .map(|(key, v)| {
                let r = decode_record(&key, &v);
                (key, v, r)
            })
            .collect();
        let keep = one_key_per_mac(&decoded);
        for (i, (key, v, r)) in decoded.into_iter().enumerate() {
            let why = match r {
                Ok(r) if keep.get(&r.mac) == Some(&i) => {
                    loaded.records.push(r);
                    continue;
                }
                Ok(r) => format!("another record in the file is for the same MAC {}", r.mac),
                Err(why) => why,
            };
            loaded.warnings.push(format!(
                "lease record {key}: {why}; kept in the file unchanged"
            ));
            if let Some(sub) = subnets.get(&key) {
                store.subnets.insert(key.clone(), sub.clone());
            }
            store.carried.insert(key, v);
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

    /// Appends the changes to the journal and fsyncs it (group commit: one
    /// call for a whole batch). Empty changes cost nothing.
    pub fn commit(&mut self, changes: &Dirty) -> Result<(), StoreError> {
        if changes.leases.is_empty() && changes.quarantine.is_none() {
            return Ok(());
        }
        let mut lines = Vec::with_capacity(changes.leases.len() + 1);
        for (mac, rec) in &changes.leases {
            lines.push(match rec {
                Some(r) => LineOut::Put {
                    put: mac.to_string(),
                    lease: LeaseOut::of(r),
                },
                None => LineOut::Del {
                    del: mac.to_string(),
                },
            });
        }
        if let Some(q) = &changes.quarantine {
            lines.push(LineOut::Quarantine {
                quarantine: encode_quarantine(q),
            });
        }
        self.journal.append(&lines)
    }

    /// Journal entries not yet folded into the snapshot.
    pub fn journal_lines(&self) -> usize {
        self.journal.lines()
    }

    /// Whether the journal has outgrown a lease table of `leases` entries
    /// and should be folded into a snapshot.
    pub fn wants_snapshot(&self, leases: usize) -> bool {
        self.journal.lines() > (2 * leases).max(1000)
    }

    /// Writes a full snapshot of `records` (plus carried-over ones) and the
    /// quarantine atomically and durably, then empties the journal.
    pub fn snapshot<'a>(
        &mut self,
        now: Millis,
        records: impl Iterator<Item = &'a LeaseRecord>,
        quarantine: &[QuarantineRecord],
    ) -> Result<(), StoreError> {
        if let Some(bytes) = &self.preserve_first {
            let saved = files::preserve(&self.path, now, bytes)?;
            tracing::warn!(file = %saved.display(), "unreadable lease file preserved");
            self.preserve_first = None;
        }
        self.journal.preserve_if_damaged(now)?;
        let mut leases: BTreeMap<String, EntryOut> = self
            .carried
            .iter()
            .map(|(k, v)| (k.clone(), EntryOut::Carried(v)))
            .collect();
        let mut subnets = self.subnets.clone();
        for r in records {
            let key = r.mac.to_string();
            if let Some(s) = subnet_of(r) {
                subnets.insert(key.clone(), s);
            }
            leases.insert(key, EntryOut::Ours(LeaseOut::of(r)));
        }
        let quarantine = encode_quarantine(quarantine);
        let doc = FileJson {
            version: FORMAT_VERSION,
            leases,
            subnets: &subnets,
            quarantine: &quarantine,
        };
        let bytes = serde_json::to_vec_pretty(&doc).expect("JSON of plain maps always serialises");
        files::write_atomic(&self.path, &bytes).map_err(io_err(&self.path))?;
        self.journal.truncate()
    }
}

#[cfg(test)]
mod tests;
