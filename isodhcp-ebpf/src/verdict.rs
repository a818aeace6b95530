//! Counter slots: which field of [`Counters`] a verdict lands in.
//!
//! A [`Slot`]'s discriminant *is* the byte offset of its field, so bumping a
//! counter is one add at `counters + slot` — no `match` that LLVM could turn
//! into a jump table or a `.rodata` lookup table (neither of which the BPF
//! target handles well).

use core::mem::offset_of;

use isodhcp_common::Counters;

#[repr(usize)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Slot {
    NonDhcp = offset_of!(Counters, non_dhcp),
    Dhcp = offset_of!(Counters, dhcp),
    DropIhl = offset_of!(Counters, drop_ihl),
    DropFragment = offset_of!(Counters, drop_fragment),
    DropUdpLen = offset_of!(Counters, drop_udp_len),
    DropBootpShort = offset_of!(Counters, drop_bootp_short),
    DropNotRequest = offset_of!(Counters, drop_not_request),
    DropChaddrSpoof = offset_of!(Counters, drop_chaddr_spoof),
    DropDenied = offset_of!(Counters, drop_denied),
    DropKnownRate = offset_of!(Counters, drop_known_rate),
    DropNewBudget = offset_of!(Counters, drop_new_budget),
    DropFreshRate = offset_of!(Counters, drop_fresh_rate),
    DropGlobal = offset_of!(Counters, drop_global),
    PassTrusted = offset_of!(Counters, pass_trusted),
    Redirect = offset_of!(Counters, redirect),
    PassStack = offset_of!(Counters, pass_stack),
    DropVlanDepth = offset_of!(Counters, drop_vlan_depth),
    PassVlan = offset_of!(Counters, pass_vlan),
}

/// Adds one to the counter `s` of `c`.
///
/// # Safety
/// `c` must point at a valid, writable [`Counters`] that nobody else writes
/// concurrently (this CPU's slot of the per-CPU array, or a stack value).
#[inline(always)]
pub unsafe fn bump(c: *mut Counters, s: Slot) {
    // SAFETY: every discriminant is the offset of an aligned u64 field inside
    // `Counters` (checked by the unit test below); `c` is valid per contract.
    unsafe {
        let p = (c as *mut u8).add(s as usize) as *mut u64;
        *p += 1;
    }
}

#[cfg(all(test, not(target_arch = "bpf")))]
mod tests {
    use super::*;
    use isodhcp_common::COUNTER_NAMES;

    // `packet_path` is counted by the daemon only.
    const ALL: [Slot; 18] = [
        Slot::NonDhcp,
        Slot::Dhcp,
        Slot::DropIhl,
        Slot::DropFragment,
        Slot::DropUdpLen,
        Slot::DropBootpShort,
        Slot::DropNotRequest,
        Slot::DropChaddrSpoof,
        Slot::DropDenied,
        Slot::DropKnownRate,
        Slot::DropNewBudget,
        Slot::DropFreshRate,
        Slot::DropGlobal,
        Slot::PassTrusted,
        Slot::Redirect,
        Slot::PassStack,
        Slot::DropVlanDepth,
        Slot::PassVlan,
    ];

    #[test]
    fn every_slot_bumps_its_named_field() {
        for (i, s) in ALL.into_iter().enumerate() {
            let mut c = Counters::default();
            unsafe { bump(&mut c, s) };
            let named = c.named();
            for (j, (name, v)) in named.iter().enumerate() {
                assert_eq!(*v, u64::from(i == j), "slot {s:?} vs field {name}");
            }
            assert_eq!(named[i].0, COUNTER_NAMES[i]);
        }
    }
}
