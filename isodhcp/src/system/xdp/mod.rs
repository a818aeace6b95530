//! Loading, attaching and pinning the XDP program (design.md §Datapath).
//!
//! The object is embedded at build time (`build.rs` copies it into `OUT_DIR`;
//! empty when the eBPF toolchain was not used, see [`XdpError::NotBuilt`]).
//!
//! Pins under `pin_dir` (normally `/sys/fs/bpf/isodhcp/<iface>/`):
//! - `link_native` or `link_generic`: the XDP link (bpf_link), named after its
//!   mode. While it is pinned the program stays attached, also after the daemon
//!   exits (fail-open: it passes every frame it does not handle).
//! - every map of the contract in `isodhcp_common` (`counters`, `limits`,
//!   `buckets`, `deny`, `trust`, `known`, `fresh`, `xsks`), with BTF, so
//!   `bpftool map dump pinned <pin_dir>/counters` prints named fields.
//!
//! On start, a pinned link of a usable mode for the same interface is updated in
//! place (`bpf_link_update`: the new program replaces the old one atomically, no
//! unfiltered window); otherwise stale pins are removed and the program is
//! attached afresh. Map pins are always replaced by the new maps, never reused
//! (aya would silently reuse a pinned map without checking its layout); the
//! daemon refills them (limits, deny/trust lists, known clients) at start.

mod events;
mod maps;
pub mod offer;
mod pins;

use std::ffi::CString;
use std::path::{Path, PathBuf};

use aya::maps::PerCpuArray;
use aya::programs::links::{FdLink, PinnedLink};
use aya::programs::xdp::XdpLink;
use aya::programs::{Xdp, XdpMode as AyaXdpMode};
use aya::{Ebpf, EbpfLoader};
use isodhcp_common::{ABI_VERSION, COUNTERS_MAP, Counters, Limits, MAPS, XDP_PROGRAM};
use tracing::{info, warn};

pub use maps::XdpMaps;
use pins::{pinned_link_ifindex, prepare_pin_dir, remove_pin};

use crate::config::{RateLimits, XdpMode};

/// The XDP object built by `cargo xtask build-ebpf`; empty if none was built in.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/isodhcp-ebpf.o"));

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
    /// The maps the daemon writes.
    pub maps: XdpMaps,
    ebpf: Ebpf,
    /// The task forwarding opt-in debug events ([`events`]), if compiled in.
    events: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for XdpAttachment {
    fn drop(&mut self) {
        if let Some(t) = self.events.take() {
            t.abort();
        }
    }
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

/// The kernel's form of the admission rates (also the userspace
/// limiter's): the global and new-client budgets allow one second's worth
/// at once.
pub fn limits(r: &RateLimits) -> Limits {
    Limits {
        abi: ABI_VERSION,
        mac_rate: r.mac_rate,
        mac_burst: r.mac_burst,
        global_rate: r.global_rate,
        global_burst: r.global_rate,
        new_rate: r.new_rate,
        new_burst: r.new_rate,
        offer_rate: r.offer_rate,
        offer_burst: r.offer_rate,
        cookie_rate: r.cookie_rate,
        cookie_burst: r.cookie_rate,
        _pad: 0,
    }
}

/// Loads the embedded object, attaches it to `iface` in `mode` (Auto: native,
/// then generic) and pins link and counters under `pin_dir` (see module docs).
/// Without a usable bpffs it runs unpinned and logs a warning.
///
/// `prepare` runs after the program and its maps are loaded and pinned but
/// before the program is attached (or swapped in behind the pinned link):
/// the caller fills limits, deny/trust lists, known clients and AF_XDP
/// sockets there, so the program never runs with empty maps (it would admit
/// without limits in that window).
pub fn attach(
    iface: &str,
    mode: XdpMode,
    pin_dir: &Path,
    prepare: impl FnOnce(&mut XdpMaps) -> Result<(), XdpError>,
) -> Result<XdpAttachment, XdpError> {
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
    if let Some(dir) = &pins {
        pin_maps(&ebpf, dir)?;
    }
    let mut maps = XdpMaps::take(&mut ebpf)?;
    let events = tokio::runtime::Handle::try_current()
        .ok()
        .and_then(|_| events::start(&mut ebpf));
    prepare(&mut maps)?;
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
    match &pins {
        Some(dir) => {
            info!(iface, mode = used.name(), pin_dir = %dir.display(), "XDP program attached and pinned");
        }
        None => info!(iface, mode = used.name(), "XDP program attached (unpinned)"),
    }
    Ok(XdpAttachment {
        mode_used: used.name(),
        pin_dir: pins,
        maps,
        ebpf,
        events,
    })
}

/// Removes the program link and map pins a previous run left under
/// `pin_dir`, which detaches that program (the pin held the last
/// reference). Used with `--xdp off`, so no stale program keeps applying
/// old limits in front of the packet socket.
pub fn remove_pins(pin_dir: &Path) -> Result<bool, XdpError> {
    let had = [LINK_PIN_NATIVE, LINK_PIN_GENERIC]
        .iter()
        .any(|n| pin_dir.join(n).exists());
    for name in [LINK_PIN_NATIVE, LINK_PIN_GENERIC].into_iter().chain(MAPS) {
        remove_pin(pin_dir, name)?;
    }
    Ok(had)
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

fn pin_maps(ebpf: &Ebpf, dir: &Path) -> Result<(), XdpError> {
    let pin_err = |reason: String| XdpError::Pin {
        dir: dir.to_path_buf(),
        reason,
    };
    for name in MAPS {
        remove_pin(dir, name)?;
        ebpf.map(name)
            .ok_or_else(|| pin_err(format!("map {name} missing from the object")))?
            .pin(dir.join(name))
            .map_err(|e| pin_err(chain(&e)))?;
    }
    Ok(())
}

fn ifindex(iface: &str) -> Result<u32, XdpError> {
    let c = CString::new(iface).map_err(|_| XdpError::NoInterface(iface.into()))?;
    // SAFETY: `c` is a valid C string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(XdpError::NoInterface(iface.into())),
        i => Ok(i),
    }
}

/// An error and its sources on one line (aya nests the verifier log in them).
pub(super) fn chain(e: &dyn std::error::Error) -> String {
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
