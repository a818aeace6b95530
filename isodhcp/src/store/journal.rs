//! The append-only journal beside the lease file (`<file>.journal`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::files::{self, sync_dir};
use super::{StoreError, io_err};

#[derive(Debug)]
pub(super) struct Journal {
    path: PathBuf,
    file: Option<File>,
    lines: usize,
    /// Unreadable lines were found: the journal as read, kept as a copy
    /// before the journal is emptied.
    damaged: Option<Vec<u8>>,
}

impl Journal {
    /// Replays `<lease file>.journal` onto the raw lease and quarantine maps.
    pub(super) fn open(
        lease_file: &Path,
        leases: &mut BTreeMap<String, Value>,
        quarantine: &mut BTreeMap<String, Value>,
        warnings: &mut Vec<String>,
    ) -> Result<Journal, StoreError> {
        let path = PathBuf::from(format!("{}.journal", lease_file.display()));
        let mut j = Journal {
            path,
            file: None,
            lines: 0,
            damaged: None,
        };
        let Some(text) = files::read_nofollow(&j.path)? else {
            return Ok(j);
        };
        let mut damaged = false;
        let complete = text.ends_with(b"\n");
        let lines: Vec<&[u8]> = text
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let n = lines.len();
        for (i, line) in lines.into_iter().enumerate() {
            let applied = serde_json::from_slice::<Value>(line)
                .ok()
                .is_some_and(|v| apply(&v, leases, quarantine));
            if applied {
                j.lines += 1;
            } else if i + 1 == n && !complete {
                tracing::debug!("ignoring a torn last journal line (never acknowledged)");
            } else {
                damaged = true;
                warnings.push(format!(
                    "journal line {} is unreadable; the journal will be preserved",
                    i + 1
                ));
            }
        }
        if damaged {
            j.damaged = Some(text);
        }
        Ok(j)
    }

    pub(super) fn lines(&self) -> usize {
        self.lines
    }

    fn file(&mut self) -> Result<&mut File, StoreError> {
        if self.file.is_none() {
            let f = files::open_append(&self.path)?;
            // A new journal file must survive a crash too.
            sync_dir(&self.path).map_err(io_err(&self.path))?;
            self.file = Some(f);
        }
        Ok(self.file.as_mut().expect("opened above"))
    }

    /// Appends the lines and fsyncs once.
    pub(super) fn append<T: serde::Serialize>(&mut self, lines: &[T]) -> Result<(), StoreError> {
        let mut buf = Vec::with_capacity(lines.len() * 160);
        for l in lines {
            serde_json::to_writer(&mut buf, l).expect("lease lines always serialise");
            buf.push(b'\n');
        }
        let path = self.path.clone();
        let f = self.file()?;
        f.write_all(&buf).map_err(io_err(&path))?;
        f.sync_data().map_err(io_err(&path))?;
        self.lines += lines.len();
        Ok(())
    }

    /// Copies a journal with unreadable lines aside before it is emptied.
    pub(super) fn preserve_if_damaged(&mut self, now_ms: u64) -> Result<(), StoreError> {
        if let Some(bytes) = &self.damaged {
            let saved = files::preserve(&self.path, now_ms, bytes)?;
            tracing::warn!(file = %saved.display(), "damaged lease journal preserved");
            self.damaged = None;
        }
        Ok(())
    }

    /// Empties the journal after a snapshot made it redundant.
    pub(super) fn truncate(&mut self) -> Result<(), StoreError> {
        let path = self.path.clone();
        let f = self.file()?;
        f.set_len(0).map_err(io_err(&path))?;
        f.sync_all().map_err(io_err(&path))?;
        self.lines = 0;
        Ok(())
    }
}

/// Applies one journal entry; false if it is not one we understand.
fn apply(
    v: &Value,
    leases: &mut BTreeMap<String, Value>,
    quarantine: &mut BTreeMap<String, Value>,
) -> bool {
    if let (Some(mac), Some(lease)) = (v.get("put").and_then(Value::as_str), v.get("lease")) {
        leases.insert(mac.to_string(), lease.clone());
        true
    } else if let Some(mac) = v.get("del").and_then(Value::as_str) {
        leases.remove(mac);
        true
    } else if let Some(q) = v.get("quarantine").and_then(Value::as_object) {
        *quarantine = q.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        true
    } else {
        false
    }
}
