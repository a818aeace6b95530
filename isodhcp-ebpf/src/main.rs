//! The isodhcp XDP program.
//!
//! Fail-open classifier: every frame that is not IPv4/UDP to port 67 is passed
//! untouched. IPv4/UDP/67 frames (candidate DHCP requests) are counted and, for
//! now, also passed to the kernel stack. Admission control, per-reason drops and
//! AF_XDP redirection come later (SPEC §9); `classify` is where they hook in.
//!
//! Built for `bpfel-unknown-none` with bpf-linker (`cargo xtask build-ebpf`).
//! On the host this crate compiles to a dummy binary so that
//! `cargo clippy --workspace --all-targets` works without the eBPF toolchain.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]

mod parse;

use aya_ebpf::{
    bindings::xdp_action, btf_maps::PerCpuArray, macros::btf_map, macros::xdp, programs::XdpContext,
};
use isodhcp_common::Counters;

use crate::parse::{Class, classify};

/// Verdict counters: one entry (key 0), one copy per CPU. A BTF-defined map so
/// `bpftool map dump` prints the field names of `Counters`.
#[btf_map(name = "counters")]
static COUNTERS: PerCpuArray<Counters, 1> = PerCpuArray::new();

#[xdp]
pub fn isodhcp_xdp(ctx: XdpContext) -> u32 {
    let class = classify(ctx.data(), ctx.data_end());
    // The lookup of key 0 of a 1-entry array cannot fail; if it ever did, we
    // still pass the frame (fail-open) and only lose the count.
    if let Some(c) = COUNTERS.get_ptr_mut(0) {
        // SAFETY: `c` points at this CPU's slot of the per-CPU array; XDP
        // programs run with migration disabled, so nobody else writes it now.
        let c = unsafe { &mut *c };
        match class {
            Class::NotDhcp => c.non_dhcp += 1,
            Class::Dhcp => {
                c.dhcp += 1;
                c.pass_stack += 1;
            }
        }
    }
    xdp_action::XDP_PASS
}

/// The kernel refuses GPL-only helpers to non-GPL programs; the project is GPL.
#[cfg(target_arch = "bpf")]
#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs that could reach this; it is never executed.
    loop {}
}

/// Host builds only: lets `cargo build/clippy --workspace` compile this crate.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
