//! bpffs handling and pinned-link introspection for the XDP loader.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::XdpError;

/// Default bpffs mount point; mounted on demand when missing.
const BPFFS_ROOT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

pub(super) fn remove_pin(dir: &Path, name: &str) -> Result<(), XdpError> {
    match std::fs::remove_file(dir.join(name)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(XdpError::Pin {
            dir: dir.to_path_buf(),
            reason: format!("removing stale {name}: {e}"),
        }),
    }
}

/// Makes sure `dir` exists on a bpffs, mounting one at /sys/fs/bpf if needed
/// and allowed. `None` (with a warning) means: run unpinned.
pub(super) fn prepare_pin_dir(dir: &Path) -> Option<PathBuf> {
    let root = Path::new(BPFFS_ROOT);
    if dir.starts_with(root) && !is_bpffs(root) {
        match mount_bpffs(root) {
            Ok(()) => info!("mounted bpffs at {BPFFS_ROOT}"),
            Err(e) => {
                warn!(
                    "{BPFFS_ROOT} is not a bpffs and mounting one failed ({e}): running XDP unpinned"
                );
                return None;
            }
        }
    }
    if let Err(e) = std::fs::create_dir_all(dir) {
        warn!(
            "cannot create pin folder {}: {e}: running XDP unpinned",
            dir.display()
        );
        return None;
    }
    if !is_bpffs(dir) {
        warn!(
            "pin folder {} is not on a bpffs: running XDP unpinned",
            dir.display()
        );
        return None;
    }
    Some(dir.to_path_buf())
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct; `c` is a valid C string.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC
    }
}

fn mount_bpffs(at: &Path) -> io::Result<()> {
    let target = CString::new(at.as_os_str().as_bytes())?;
    // SAFETY: all pointers are valid C strings or null.
    let rc = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            target.as_ptr(),
            c"bpf".as_ptr(),
            0,
            c"mode=0700".as_ptr().cast(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The interface index of the XDP link pinned at `path` (0: its device is
/// gone). aya does not expose it, hence two raw bpf(2) calls.
pub(super) fn pinned_link_ifindex(path: &Path) -> io::Result<u32> {
    const BPF_OBJ_GET: libc::c_long = 7;
    const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
    const BPF_LINK_TYPE_XDP: u32 = 6;

    #[repr(C)]
    struct ObjGetAttr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    #[repr(C)]
    struct InfoAttr {
        bpf_fd: u32,
        info_len: u32,
        info: u64,
    }
    /// Head of `struct bpf_link_info`: type, id, prog_id, pad, then the union
    /// (8-aligned) whose `xdp` member starts with `ifindex`.
    #[repr(C)]
    #[derive(Default)]
    struct LinkInfoHead {
        type_: u32,
        id: u32,
        prog_id: u32,
        _pad: u32,
        ifindex: u32,
        _pad2: u32,
    }

    let c = CString::new(path.as_os_str().as_bytes())?;
    let get = ObjGetAttr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    // SAFETY: bpf(BPF_OBJ_GET) reads `get` and the C string it points to,
    // both alive for the call.
    let fd = unsafe { bpf(BPF_OBJ_GET, &get) }?;
    // SAFETY: the kernel returned a fresh fd that we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };

    let mut head = LinkInfoHead::default();
    let attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<LinkInfoHead>() as u32,
        info: &mut head as *mut LinkInfoHead as u64,
    };
    // SAFETY: the kernel writes at most `info_len` bytes into `head`, which
    // is alive for the call.
    unsafe { bpf(BPF_OBJ_GET_INFO_BY_FD, &attr) }?;
    if head.type_ != BPF_LINK_TYPE_XDP {
        return Err(io::Error::other(format!(
            "not an XDP link (type {})",
            head.type_
        )));
    }
    Ok(head.ifindex)
}

/// `bpf(cmd, attr, sizeof attr)`; the result, or the OS error.
///
/// # Safety
/// `attr` must be the attribute layout `cmd` expects, and every pointer in it
/// valid for what the kernel reads or writes through it during the call.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &T) -> io::Result<i64> {
    // SAFETY: per the contract; the size passed is that of `T`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_ref(attr),
            std::mem::size_of::<T>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(rc)
}
