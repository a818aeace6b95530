//! Loading, attaching and pinning the XDP program (SPEC §9).
//!
//! The object is embedded at build time (`build.rs` copies it into `OUT_DIR`;
//! empty when the eBPF toolchain was not used, see [`XdpError::NotBuilt`]).
//!
//! Pins under `pin_dir` (normally `/sys/fs/bpf/isodhcp/<iface>/`):
//! - `link_native` or `link_generic`: the XDP link (bpf_link), named after its
//!   mode. While it is pinned the program stays attached, also after the daemon
//!   exits (fail-open: it passes every frame it does not handle).
//! - `counters`: the per-CPU [`Counters`] map, with BTF, so
//!   `bpftool map dump pinned <pin_dir>/counters` prints named fields.
//!
//! On start, a pinned link of a usable mode for the same interface is updated in
//! place (`bpf_link_update`: the new program replaces the old one atomically, no
//! unfiltered window); otherwise stale pins are removed and the program is
//! attached afresh. The counters pin is always replaced by the new map, never
//! reused (aya would silently reuse a pinned map without checking its layout).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use aya::maps::PerCpuArray;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode as AyaXdpMode};
use aya::{Ebpf, EbpfLoader};
use isodhcp_common::{COUNTERS_MAP, Counters, XDP_PROGRAM};
use tracing::{info, warn};

use crate::cli::XdpMode;

/// The XDP object built by `cargo xtask build-ebpf`; empty if none was built in.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/isodhcp-ebpf.o"));

/// Default bpffs mount point; mounted on demand when missing.
const BPFFS_ROOT: &str = "/sys/fs/bpf";
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

/// Link pin names, one per attach mode.
const LINK_PIN_NATIVE: &str = "link_native";
const LINK_PIN_GENERIC: &str = "link_generic";

#[derive(thiserror::Error, Debug)]
pub enum XdpError {
    #[error("this isodhcp binary has no XDP object built in (build with `cargo xtask build`)")]
    NotBuilt,
    #[error("XDP is disabled (--xdp off)")]
    Off,
    #[error("interface {0} not found")]
    NoInterface(String),
    /// Parsing, map creation or the verifier failed; includes the verifier log.
    #[error("loading the XDP program failed: {0}")]
    Load(String),
    #[error("attaching XDP to {iface} ({mode}) failed: {reason}")]
    Attach {
        iface: String,
        mode: &'static str,
        reason: String,
    },
    #[error("pinning under {}: {reason}", dir.display())]
    Pin { dir: PathBuf, reason: String },
    #[error("reading XDP counters: {0}")]
    Counters(String),
}

/// A loaded and attached XDP program. Keeps the eBPF object (program and maps)
/// alive; dropping it detaches the program unless its link is pinned.
pub struct XdpAttachment {
    /// "native" or "generic".
    pub mode_used: &'static str,
    /// Where link and maps are pinned; `None` when running unpinned.
    pub pin_dir: Option<PathBuf>,
    ebpf: Ebpf,
}

impl std::fmt::Debug for XdpAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpAttachment")
            .field("mode_used", &self.mode_used)
            .field("pin_dir", &self.pin_dir)
            .finish_non_exhaustive()
    }
}

/// True when this binary carries an XDP object.
pub fn object_built_in() -> bool {
    !OBJECT.is_empty()
}

/// Loads the embedded object, attaches it to `iface` in `mode` (Auto: native,
/// then generic) and pins link and counters under `pin_dir` (see module docs).
/// Without a usable bpffs it runs unpinned and logs a warning.
pub fn attach(iface: &str, mode: XdpMode, pin_dir: &Path) -> Result<XdpAttachment, XdpError> {
    let modes: &[Mode] = match mode {
        XdpMode::Off => return Err(XdpError::Off),
        XdpMode::Auto => &[Mode::Native, Mode::Generic],
        XdpMode::Native => &[Mode::Native],
        XdpMode::Generic => &[Mode::Generic],
    };
    if OBJECT.is_empty() {
        return Err(XdpError::NotBuilt);
    }
    let ifindex = ifindex(iface)?;
    let pins = prepare_pin_dir(pin_dir);

    let mut ebpf = EbpfLoader::new()
        .load(OBJECT)
        .map_err(|e| XdpError::Load(chain(&e)))?;
    let prog: &mut Xdp = ebpf
        .program_mut(XDP_PROGRAM)
        .ok_or_else(|| XdpError::Load(format!("program {XDP_PROGRAM} missing from the object")))?
        .try_into()
        .map_err(|e| XdpError::Load(chain(&e)))?;
    prog.load().map_err(|e| XdpError::Load(chain(&e)))?;

    let mut used = None;
    if let Some(dir) = &pins {
        used = replace_pinned(prog, dir, ifindex, iface, modes)?;
    }
    let used = match used {
        Some(m) => m,
        None => attach_fresh(prog, iface, modes, pins.as_deref())?,
    };

    if let Some(dir) = &pins {
        pin_counters(&ebpf, dir)?;
        info!(iface, mode = used.name(), pin_dir = %dir.display(), "XDP program attached and pinned");
    } else {
        info!(iface, mode = used.name(), "XDP program attached (unpinned)");
    }
    Ok(XdpAttachment {
        mode_used: used.name(),
        pin_dir: pins,
        ebpf,
    })
}

impl XdpAttachment {
    /// The counters of the program, summed over all CPUs.
    pub fn counters(&self) -> Result<Counters, XdpError> {
        let map = self
            .ebpf
            .map(COUNTERS_MAP)
            .ok_or_else(|| XdpError::Counters(format!("map {COUNTERS_MAP} missing")))?;
        let array: PerCpuArray<_, Counters> =
            PerCpuArray::try_from(map).map_err(|e| XdpError::Counters(chain(&e)))?;
        let per_cpu = array
            .get(&0, 0)
            .map_err(|e| XdpError::Counters(chain(&e)))?;
        let mut sum = Counters::default();
        for c in per_cpu.iter() {
            sum.add(c);
        }
        Ok(sum)
    }

    /// Removes the pins and detaches the program (for a clean `--xdp off`
    /// hand-over or tests). Plain drop keeps a pinned program attached.
    pub fn detach(self) -> Result<(), XdpError> {
        if let Some(dir) = &self.pin_dir {
            for name in [LINK_PIN_NATIVE, LINK_PIN_GENERIC, COUNTERS_MAP] {
                remove_pin(dir, name)?;
            }
        }
        drop(self.ebpf);
        Ok(())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Native,
    Generic,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Native => "native",
            Mode::Generic => "generic",
        }
    }
    fn pin_name(self) -> &'static str {
        match self {
            Mode::Native => LINK_PIN_NATIVE,
            Mode::Generic => LINK_PIN_GENERIC,
        }
    }
    fn aya(self) -> AyaXdpMode {
        match self {
            Mode::Native => AyaXdpMode::Driver,
            Mode::Generic => AyaXdpMode::Skb,
        }
    }
}

/// Atomically swaps the program behind a pinned link of an allowed mode.
/// Returns the mode on success, `None` when there is nothing to replace
/// (stale pins, including links of a mode not allowed now, are removed).
fn replace_pinned(
    prog: &mut Xdp,
    dir: &Path,
    ifindex: u32,
    iface: &str,
    modes: &[Mode],
) -> Result<Option<Mode>, XdpError> {
    for mode in [Mode::Native, Mode::Generic] {
        let path = dir.join(mode.pin_name());
        if !path.exists() {
            continue;
        }
        match pinned_link_ifindex(&path) {
            Ok(i) if i == ifindex && modes.contains(&mode) => match swap_link(prog, &path) {
                Ok(()) => {
                    info!(
                        iface,
                        mode = mode.name(),
                        "replaced the program behind the pinned XDP link"
                    );
                    return Ok(Some(mode));
                }
                Err(e) => warn!(
                    iface,
                    "cannot update pinned XDP link {}: {e}; re-attaching",
                    path.display()
                ),
            },
            Ok(i) if i == ifindex => warn!(
                iface,
                "pinned XDP link is in {} mode, {} requested: re-attaching (brief unfiltered window)",
                mode.name(),
                modes[0].name()
            ),
            // The interface it was attached to is gone: the link is dead.
            Ok(0) => {}
            Ok(other) => {
                return Err(XdpError::Pin {
                    dir: dir.to_path_buf(),
                    reason: format!(
                        "{} belongs to interface index {other}, not {iface} ({ifindex}); \
                         another instance uses this pin folder (see --bpf-pin-dir)",
                        path.display()
                    ),
                });
            }
            Err(e) => warn!(iface, "stale pin {}: {e}; removing", path.display()),
        }
        remove_pin(dir, mode.pin_name())?;
    }
    Ok(None)
}

fn swap_link(prog: &mut Xdp, path: &Path) -> Result<(), String> {
    let pinned = PinnedLink::from_pin(path).map_err(|e| chain(&e))?;
    // Keeps the pin file: if the update fails, the old program stays attached.
    let fd_link = FdLink::from(pinned);
    let link = XdpLink::try_from(fd_link).map_err(|e| chain(&e))?;
    prog.attach_to_link(link).map_err(|e| chain(&e))?;
    Ok(())
}

/// Attaches in the first mode that works; pins the link if `pins` is set.
fn attach_fresh(
    prog: &mut Xdp,
    iface: &str,
    modes: &[Mode],
    pins: Option<&Path>,
) -> Result<Mode, XdpError> {
    let mut last = String::new();
    for &mode in modes {
        let id = match prog.attach(iface, mode.aya()) {
            Ok(id) => id,
            Err(e) => {
                last = chain(&e);
                if modes.len() > 1 {
                    warn!(iface, "XDP {} attach failed: {last}", mode.name());
                }
                continue;
            }
        };
        if let Some(dir) = pins {
            let link = prog.take_link(id).map_err(|e| XdpError::Attach {
                iface: iface.into(),
                mode: mode.name(),
                reason: chain(&e),
            })?;
            // Fails only for a netlink (pre-5.9 kernel) attachment, which cannot be
            // pinned; the link is then dropped, which detaches it.
            let fd_link = FdLink::try_from(link).map_err(|e| XdpError::Pin {
                dir: dir.to_path_buf(),
                reason: format!("XDP link is not a bpf_link: {}", chain(&e)),
            })?;
            fd_link
                .pin(dir.join(mode.pin_name()))
                .map_err(|e| XdpError::Pin {
                    dir: dir.to_path_buf(),
                    reason: chain(&e),
                })?;
        }
        return Ok(mode);
    }
    Err(XdpError::Attach {
        iface: iface.into(),
        mode: if modes.len() > 1 {
            "auto"
        } else {
            modes[0].name()
        },
        reason: last,
    })
}

fn pin_counters(ebpf: &Ebpf, dir: &Path) -> Result<(), XdpError> {
    let pin_err = |reason: String| XdpError::Pin {
        dir: dir.to_path_buf(),
        reason,
    };
    remove_pin(dir, COUNTERS_MAP)?;
    ebpf.map(COUNTERS_MAP)
        .ok_or_else(|| pin_err(format!("map {COUNTERS_MAP} missing")))?
        .pin(dir.join(COUNTERS_MAP))
        .map_err(|e| pin_err(chain(&e)))
}

fn remove_pin(dir: &Path, name: &str) -> Result<(), XdpError> {
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
fn prepare_pin_dir(dir: &Path) -> Option<PathBuf> {
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

fn ifindex(iface: &str) -> Result<u32, XdpError> {
    let c = CString::new(iface).map_err(|_| XdpError::NoInterface(iface.into()))?;
    // SAFETY: `c` is a valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(XdpError::NoInterface(iface.into())),
        i => Ok(i),
    }
}

/// The interface index of the XDP link pinned at `path` (0: its device is
/// gone). aya does not expose it, hence two raw bpf(2) calls.
fn pinned_link_ifindex(path: &Path) -> io::Result<u32> {
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
    // SAFETY: bpf(BPF_OBJ_GET) reads `get` (size passed) and the C string it points to.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET,
            &get as *const ObjGetAttr,
            std::mem::size_of::<ObjGetAttr>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a fresh fd that we now own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };

    let mut head = LinkInfoHead::default();
    let attr = InfoAttr {
        bpf_fd: fd.as_raw_fd() as u32,
        info_len: std::mem::size_of::<LinkInfoHead>() as u32,
        info: &mut head as *mut LinkInfoHead as u64,
    };
    // SAFETY: the kernel writes at most `info_len` bytes into `head`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &attr as *const InfoAttr,
            std::mem::size_of::<InfoAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    if head.type_ != BPF_LINK_TYPE_XDP {
        return Err(io::Error::other(format!(
            "not an XDP link (type {})",
            head.type_
        )));
    }
    Ok(head.ifindex)
}

/// An error and its sources on one line (aya nests the verifier log in them).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let m = src.to_string();
        if !s.contains(&m) {
            s += ": ";
            s += &m;
        }
        cur = src.source();
    }
    s
}
