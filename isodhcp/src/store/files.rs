//! File handling of the lease folder that an attacker with write access to
//! that folder cannot redirect.
//!
//! - New files (snapshot temp files, `.corrupt-*` copies) are created with
//!   `O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600, under a name with a random
//!   suffix: a symlink planted at any name is never followed, and no name
//!   can be planted in advance.
//! - The journal is opened with `O_NOFOLLOW` for reading and appending.
//! - A lease folder that group or others may write is refused at start.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StoreError;

/// Attempts at a fresh random name before giving up (a collision of 64
/// random bits means someone is racing us; a few retries are plenty).
const NAME_ATTEMPTS: usize = 8;

/// Flags of every open in the lease folder.
const SAFE_FLAGS: libc::c_int = libc::O_NOFOLLOW | libc::O_CLOEXEC;

/// The folder holding `file` (`.` for a bare name).
pub(super) fn dir_of(file: &Path) -> &Path {
    match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

pub(super) fn sync_dir(file: &Path) -> io::Result<()> {
    File::open(dir_of(file))?.sync_all()
}

/// Refuses a lease folder that group or others may write: anyone who may
/// create files there could plant links or replace the lease file.
pub(super) fn check_dir(file: &Path) -> Result<(), StoreError> {
    let dir = dir_of(file);
    let meta = fs::metadata(dir).map_err(|e| StoreError::Dir(dir.to_path_buf(), e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(StoreError::UnsafeDir {
            dir: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

/// 16 hex digits from the kernel's random source.
fn random_hex() -> io::Result<String> {
    let mut b = [0u8; 8];
    // SAFETY: the buffer is valid for writes of its length.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != b.len() as isize {
        return Err(io::Error::last_os_error());
    }
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

/// Creates `<prefix><random>` exclusively, never through a symlink, mode 0600.
fn create_private(prefix: &str) -> io::Result<(PathBuf, File)> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for _ in 0..NAME_ATTEMPTS {
        let path = PathBuf::from(format!("{prefix}{}", random_hex()?));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(SAFE_FLAGS)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Writes `bytes` to `path` atomically and durably (private temp file,
/// fsync, rename, fsync of the folder), mode 0600. A failed write leaves no
/// temp file behind.
pub(super) fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (tmp, mut f) = create_private(&format!("{}.tmp-", path.display()))?;
    let written = f
        .write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| fs::rename(&tmp, path));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(path)
}

/// Keeps `bytes` (an unreadable file as it was read) as
/// `<file>.corrupt-<unix secs>-<random>`, mode 0600; returns its path.
pub(super) fn preserve(file: &Path, now_ms: u64, bytes: &[u8]) -> Result<PathBuf, StoreError> {
    let prefix = format!("{}.corrupt-{}-", file.display(), now_ms / 1000);
    let (saved, mut f) =
        create_private(&prefix).map_err(|e| StoreError::Preserve(PathBuf::from(&prefix), e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .and_then(|()| sync_dir(&saved))
        .map_err(|e| StoreError::Preserve(saved.clone(), e))?;
    Ok(saved)
}

/// Reads `path` without following a symlink at its last component; `None`
/// if it does not exist.
pub(super) fn read_nofollow(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    let opened = OpenOptions::new()
        .read(true)
        .custom_flags(SAFE_FLAGS)
        .open(path);
    let mut f = match opened {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Read(path.to_path_buf(), symlink_hint(e))),
    };
    let mut buf = Vec::new();
    f.read_to_end(&mut buf)
        .map_err(|e| StoreError::Read(path.to_path_buf(), e))?;
    Ok(Some(buf))
}

/// Opens `path` for appending, creating it mode 0600, never through a symlink.
pub(super) fn open_append(path: &Path) -> Result<File, StoreError> {
    OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .custom_flags(SAFE_FLAGS)
        .open(path)
        .map_err(|e| StoreError::Write(path.to_path_buf(), symlink_hint(e)))
}

/// `O_NOFOLLOW` on a symlink fails with ELOOP, whose text ("too many levels
/// of symbolic links") hides the cause.
fn symlink_hint(e: io::Error) -> io::Error {
    if e.raw_os_error() == Some(libc::ELOOP) {
        io::Error::other("it is a symbolic link, which is never followed; remove it")
    } else {
        e
    }
}
