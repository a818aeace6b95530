//! The isodhcp XDP program (design.md §Admission).
//!
//! Every frame that is not IPv4/UDP to port 67 is passed untouched (counted
//! `non_dhcp`); so is DHCP tagged for another VLAN (`pass_vlan`), while a
//! stack of priority tags too deep to read is dropped (`drop_vlan_depth`).
//! DHCP frames (`dhcp`) are validated and admitted or dropped by
//! `isodhcp_common::decide` (the same code the daemon runs with XDP off,
//! here over the BPF maps of [`maps`]), and survivors are redirected to the daemon's AF_XDP
//! socket of this RX queue, or passed to the kernel stack when none is bound.
//! Every DHCP frame lands in exactly one `drop_*`, `redirect` or `pass_stack`
//! counter.
//!
//! Built for `bpfel-unknown-none` with bpf-linker (`cargo xtask build-ebpf`).
//! On the host this crate compiles to a dummy binary so that
//! `cargo clippy --workspace --all-targets` works without the eBPF toolchain;
//! the logic it runs is unit-tested in `isodhcp-common`.
#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
// On the host only the unit tests use most of the code.
#![cfg_attr(not(target_arch = "bpf"), allow(dead_code))]

mod frame;
mod maps;

use aya_ebpf::{
    bindings::xdp_action, helpers::bpf_ktime_get_ns, macros::xdp, programs::XdpContext,
};
use isodhcp_common::counters::bump;
use isodhcp_common::offer::{self, Ctx, Outcome};
use isodhcp_common::{Decision, Slot, active, decide_with};

use crate::frame::{BpfLoop, XdpFrame};
use crate::maps::{COUNTERS, LIMITS, Maps, OFFER_CFG, STRIPE, WORK, XSKS};

#[xdp]
pub fn isodhcp_xdp(ctx: XdpContext) -> u32 {
    // The lookup of key 0 of a 1-entry array cannot fail; if it ever did, the
    // frame is still handled (fail-open for non-DHCP) and only the count is lost.
    let counters = COUNTERS.get_ptr_mut(0);
    // The last counter bumped, for the opt-in debug event (u32: aya-log-ebpf
    // 0.2 lost every record that carried a usize argument).
    #[cfg(feature = "debug-events")]
    let last = core::cell::Cell::new(0u32);
    let count = |s: Slot| {
        #[cfg(feature = "debug-events")]
        last.set((s as usize / 8) as u32);
        if let Some(c) = counters {
            // SAFETY: this CPU's slot of the per-CPU array; XDP runs with
            // migration disabled, so no other program run writes it now.
            unsafe { bump(c, s) }
        }
    };
    // SAFETY: bpf_ktime_get_ns has no preconditions (CLOCK_MONOTONIC ns).
    let now = || unsafe { bpf_ktime_get_ns() };
    let limits = active(LIMITS.get(0));
    let raw = ctx.ctx;
    let len = ctx.data_end() - ctx.data();
    // The OFFER responder (design.md §Offer responder), consulted for
    // requests from never-seen MACs only.
    let respond = |t: &mut Maps, req: &_, l: &_, now| match (OFFER_CFG.get(0), WORK.get_ptr_mut(0))
    {
        (Some(cfg), Some(work)) => {
            let mut c = Ctx {
                // SAFETY: this CPU's entry of the per-CPU scratch map; XDP
                // runs with migration disabled, so nothing else uses it now.
                work: unsafe { &mut *work },
                cfg,
                limits: l,
                now,
                frame_len: len,
            };
            let stripe = |i| STRIPE.get(i).copied();
            offer::respond(&mut BpfLoop, XdpFrame(raw), t, &mut c, req, stripe, count)
        }
        _ => Outcome::Daemon(None),
    };
    // SAFETY: `[data, data_end)` is the packet, readable for this run.
    let decision = unsafe {
        decide_with(
            ctx.data(),
            ctx.data_end(),
            &mut Maps,
            limits,
            now,
            count,
            respond,
        )
    };
    let action = act(&ctx, decision, count);
    #[cfg(feature = "debug-events")]
    if last.get() != 0 {
        // Every frame but non-DHCP. Counter numbers index
        // `isodhcp_common::COUNTER_NAMES` (the order `bpftool map dump name
        // counters` prints them in); the daemon logs them by name.
        aya_log_ebpf::debug!(
            &ctx,
            "dhcp frame: action {} counter #{}",
            action,
            last.get()
        );
    }
    action
}

/// The XDP action for `decision`; delivered frames go to this RX queue's
/// AF_XDP socket, or to the stack when none is bound.
#[inline(always)]
fn act(ctx: &XdpContext, decision: Decision, count: impl Fn(Slot)) -> u32 {
    match decision {
        Decision::Pass => xdp_action::XDP_PASS,
        Decision::Drop => xdp_action::XDP_DROP,
        Decision::Transmit => xdp_action::XDP_TX,
        Decision::Deliver { .. } => {
            // XDP_PASS in the flags is the action on lookup miss (no socket
            // bound for this queue); with 0 the kernel returns XDP_ABORTED.
            match XSKS.redirect(ctx.rx_queue_index(), u64::from(xdp_action::XDP_PASS)) {
                Ok(action) => {
                    count(Slot::Redirect);
                    action
                }
                Err(action) => {
                    count(Slot::PassStack);
                    action
                }
            }
        }
    }
}

/// Passes every frame. Attach it to the peer of a veth that carries
/// `isodhcp_xdp` in native mode: a veth delivers XDP_TX frames only to a
/// peer with an XDP program (the lab's switch ports, design.md §Offer responder).
#[xdp]
pub fn isodhcp_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The benchmarks' switch port towards the server: [`isodhcp_pass`], but
/// frames addressed to the flood generator's MACs (first octet
/// `LAB_FLOOD_OCTET`) are dropped here. On a real network the replies to a
/// flood leave the router through its NIC and cost the switch and the
/// attacker's host, not the router; in the lab the bridge and the
/// generator's namespace would carry them on the same two CPUs as the
/// generator and the server (design.md §Performance).
#[xdp]
pub fn isodhcp_lab_sink(ctx: XdpContext) -> u32 {
    let data = ctx.data();
    if data + 6 > ctx.data_end() {
        return xdp_action::XDP_PASS;
    }
    // SAFETY: the first byte of the frame, checked against data_end above.
    if unsafe { *(data as *const u8) } == isodhcp_common::LAB_FLOOD_OCTET {
        return xdp_action::XDP_DROP;
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
