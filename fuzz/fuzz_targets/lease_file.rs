//! The lease file and its journal as a hostile or torn disk might leave them
//! (design.md §Lease file): the first two input bytes (big-endian) are the
//! length of the lease file; the rest is the journal. Opening must never panic; whatever was
//! read must be written back in a file the store reads again without
//! complaint; and a lease file that could not be read must be preserved
//! byte for byte beside the new one. (The journal is replayed as far as it
//! reads; a damaged one is set aside by the store's own rules.)
#![no_main]

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;
use std::sync::OnceLock;

use isodhcp::store::LeaseStore;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// A private (0700) folder on tmpfs for this process.
fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("isodhcp-fuzz-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::DirBuilder::new().mode(0o700).create(&d).expect("fuzz folder");
        d
    })
}

/// Whether the store should keep this lease file aside as unreadable: not
/// JSON, not an object, or a `leases` member that is not an object.
fn unreadable(file: &[u8]) -> bool {
    match serde_json::from_slice::<Value>(file) {
        Ok(Value::Object(m)) => m.get("leases").is_some_and(|l| !l.is_object()),
        _ => true,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((len, rest)) = data.split_at_checked(2) else {
        return;
    };
    let at = usize::from(u16::from_be_bytes([len[0], len[1]])).min(rest.len());
    let (file, journal) = rest.split_at(at);
    let d = dir();
    for e in fs::read_dir(d).expect("fuzz folder").flatten() {
        let _ = fs::remove_file(e.path());
    }
    let path = d.join("leases.json");
    fs::write(&path, file).expect("write lease file");
    fs::write(d.join("leases.json.journal"), journal).expect("write journal");

    let (mut store, loaded) = LeaseStore::open(&path).expect("open never fails on content");
    store
        .snapshot(1_800_000_000_000, loaded.records.iter(), &loaded.quarantine)
        .expect("what was read can be written back");
    let (_, again) = LeaseStore::open(&path).expect("reopen");
    // Records the store could not use are carried verbatim and warned about
    // again; anything else would mean our own file is unreadable.
    assert!(
        again.warnings.iter().all(|w| w.contains("kept in the file unchanged")),
        "our own snapshot reads back with warnings: {:?}",
        again.warnings
    );
    assert_eq!(again.records.len(), loaded.records.len(), "records lost in the rewrite");
    assert_eq!(again.quarantine.len(), loaded.quarantine.len(), "quarantine lost in the rewrite");
    let preserved: Vec<Vec<u8>> = fs::read_dir(d)
        .expect("fuzz folder")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("leases.json.corrupt-"))
        .filter_map(|e| fs::read(e.path()).ok())
        .collect();
    if unreadable(file) {
        assert_eq!(preserved, [file.to_vec()], "unreadable lease file not preserved as it was");
    }
});
