//! Types shared between the isodhcp XDP program (`isodhcp-ebpf`) and the daemon.
//!
//! Everything here is `#![no_std]`, `#[repr(C)]` and plain old data, so the kernel
//! side and userspace agree on the byte layout of every map value. Field names
//! matter: the XDP object is built with BTF, and `bpftool map dump` prints them.
#![no_std]

/// Name of the per-CPU counters map in the XDP object and under the pin folder.
pub const COUNTERS_MAP: &str = "counters";
/// Name of the XDP program in the object.
pub const XDP_PROGRAM: &str = "isodhcp_xdp";
/// Bumped whenever a map layout changes, so stale pins from another build are replaced.
pub const ABI_VERSION: u32 = 1;

/// Per-CPU verdict counters. One entry (key 0) of a per-CPU array.
///
/// Every frame the program sees lands in exactly one of `non_dhcp` or `dhcp`;
/// every DHCP frame lands in exactly one `pass_*`/`drop_*` verdict field.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames that are not IPv4/UDP to port 67: passed untouched.
    pub non_dhcp: u64,
    /// IPv4/UDP frames to port 67 (candidate DHCP requests).
    pub dhcp: u64,
    /// DHCP frames passed to the kernel stack (the daemon's socket picks them up).
    pub pass_stack: u64,
    /// Frames dropped because a header was truncated or malformed.
    pub drop_malformed: u64,
}

impl Counters {
    /// Sum per-CPU values into one total.
    pub fn add(&mut self, o: &Counters) {
        self.non_dhcp += o.non_dhcp;
        self.dhcp += o.dhcp;
        self.pass_stack += o.pass_stack;
        self.drop_malformed += o.drop_malformed;
    }
}

#[cfg(feature = "user")]
// SAFETY: Counters is repr(C), Copy, and made only of u64 fields: every bit pattern is valid.
unsafe impl aya::Pod for Counters {}
