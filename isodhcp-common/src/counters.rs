//! The verdict counters, declared once.
//!
//! One table (the `counters!` invocation below) generates the [`Counters`]
//! struct (the per-CPU map value `bpftool` prints), [`COUNTER_NAMES`] (the
//! names `--status`, `/metrics` and the control protocol use) and [`Slot`]
//! (what admission returns to say where a verdict is counted).
//!
//! A [`Slot`]'s discriminant *is* the byte offset of its field, so bumping a
//! counter is one add at `counters + slot` — no `match` that LLVM could turn
//! into a jump table or a `.rodata` lookup table (neither of which the BPF
//! target handles well).

use core::mem::offset_of;

/// Declares [`Counters`], [`COUNTER_NAMES`], [`COUNTER_COUNT`] and [`Slot`]
/// from one list, so a counter is named in exactly one place.
macro_rules! counters {
    ($($(#[doc = $doc:literal])* $name:ident => $slot:ident,)*) => {
        /// Per-CPU verdict counters. One entry (key 0) of a per-CPU array.
        ///
        /// In the kernel, every frame lands in exactly one of `non_dhcp`,
        /// `pass_vlan`, `drop_vlan_depth` or `dhcp`; every `dhcp` frame lands
        /// in exactly one `drop_*`, `redirect`, `pass_stack` or `tx_offer`
        /// field. `pass_trusted` and `pass_cookie` additionally count
        /// admitted frames, and `offer_*`/`cookie_rate` say why the OFFER
        /// responder left a frame to the daemon's path.
        /// `packet_path` is the daemon's own (see there).
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        pub struct Counters {
            $($(#[doc = $doc])* pub $name: u64,)*
        }

        /// Field names of [`Counters`], in declaration order.
        pub const COUNTER_NAMES: [&str; COUNTER_COUNT] = [$(stringify!($name),)*];

        /// Number of fields of [`Counters`].
        pub const COUNTER_COUNT: usize = [$(stringify!($name),)*].len();

        /// A field of [`Counters`]; the discriminant is its byte offset.
        #[repr(usize)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub enum Slot {
            $($(#[doc = $doc])* $slot = offset_of!(Counters, $name),)*
        }

        impl Slot {
            /// Every slot, in declaration order.
            pub const ALL: [Slot; COUNTER_COUNT] = [$(Slot::$slot,)*];
        }

        impl Counters {
            /// Every field's value, in declaration order.
            pub fn values(&self) -> [u64; COUNTER_COUNT] {
                [$(self.$name,)*]
            }

            /// Counters from values in declaration order.
            pub fn from_values(v: [u64; COUNTER_COUNT]) -> Counters {
                let [$($name,)*] = v;
                Counters { $($name,)* }
            }

            fn fields_mut(&mut self) -> [&mut u64; COUNTER_COUNT] {
                [$(&mut self.$name,)*]
            }
        }
    };
}

counters! {
    /// Not IPv4/UDP to port 67: passed untouched.
    non_dhcp => NonDhcp,
    /// IPv4/UDP to port 67.
    dhcp => Dhcp,
    /// IPv4 header length below 20 or beyond the frame.
    drop_ihl => DropIhl,
    /// IPv4 fragment.
    drop_fragment => DropFragment,
    /// UDP length below 8 or beyond the IP payload.
    drop_udp_len => DropUdpLen,
    /// BOOTP fixed part (236 bytes) missing.
    drop_bootp_short => DropBootpShort,
    /// Not op 1 / htype 1 / hlen 6.
    drop_not_request => DropNotRequest,
    /// chaddr differs from the Ethernet source.
    drop_chaddr_spoof => DropChaddrSpoof,
    /// MAC in the deny map.
    drop_denied => DropDenied,
    /// Known client over its per-MAC rate.
    drop_known_rate => DropKnownRate,
    /// Unknown MAC that found the new-client budget empty.
    drop_new_budget => DropNewBudget,
    /// Recently admitted unknown MAC over its per-MAC rate.
    drop_fresh_rate => DropFreshRate,
    /// Over the global budget.
    drop_global => DropGlobal,
    /// Trusted MAC admitted: per-MAC and new-client limits skipped.
    pass_trusted => PassTrusted,
    /// Redirected to the daemon's AF_XDP socket.
    redirect => Redirect,
    /// Passed to the kernel stack (no AF_XDP socket on this queue), or, on
    /// the userspace path, handed to the engine.
    pass_stack => PassStack,
    /// Priority-tagged (VLAN id 0) frame whose tag stack is deeper than the
    /// parser reads: the kernel would strip the tags and deliver whatever
    /// is inside to this interface, so it is dropped unseen.
    drop_vlan_depth => DropVlanDepth,
    /// DHCP tagged for a VLAN (id ≠ 0): not this interface's; passed to the
    /// kernel, which hands it to that VLAN's interface or discards it.
    pass_vlan => PassVlan,
    /// In XDP mode, a DHCP frame that reached the daemon's packet socket
    /// instead of its AF_XDP socket (userspace count; the frame then went
    /// through the same checks and limits as `--xdp off`).
    packet_path => PacketPath,
    /// A DISCOVER from a never-seen MAC answered in XDP with the OFFER the
    /// engine would send (XDP_TX; design.md §Offer responder).
    tx_offer => TxOffer,
    /// A REQUEST for the address an XDP OFFER carried, admitted past the
    /// new-client budget (also counted where it went: `redirect`/`pass_stack`).
    pass_cookie => PassCookie,
    /// A request from a never-seen MAC the responder may not answer (VLAN
    /// tag, IP options, relayed, option 52/82, a classification rule,
    /// malformed options, daemon not alive): the frame went on as before.
    offer_ineligible => OfferIneligible,
    /// A DISCOVER whose stripe slot holds no address (pool nearly full).
    offer_no_address => OfferNoAddress,
    /// A broadcast OFFER over `--xdp-offer-rate`: the frame went on as before.
    offer_rate => OfferRate,
    /// An OFFER that would not fit the request frame or option 57.
    offer_no_room => OfferNoRoom,
    /// A cookie REQUEST over `--cookie-rate`: the frame went on as before.
    cookie_rate => CookieRate,
    /// An OFFER whose rewrite failed after every check passed: dropped
    /// (never expected).
    drop_offer_broken => DropOfferBroken,
}

impl Counters {
    /// Adds `o` field by field (summing per-CPU values).
    pub fn add(&mut self, o: &Counters) {
        for (a, b) in self.fields_mut().into_iter().zip(o.values()) {
            *a += b;
        }
    }

    /// (name, value) of every field, in declaration order.
    pub fn named(&self) -> [(&'static str, u64); COUNTER_COUNT] {
        let v = self.values();
        let mut out = [("", 0u64); COUNTER_COUNT];
        let mut i = 0;
        while i < COUNTER_COUNT {
            out[i] = (COUNTER_NAMES[i], v[i]);
            i += 1;
        }
        out
    }

    /// Adds one to the counter `s`.
    #[inline(always)]
    pub fn bump(&mut self, s: Slot) {
        // SAFETY: `self` is a valid, exclusively borrowed `Counters`.
        unsafe { bump(self, s) }
    }
}

/// Adds one to the counter `s` of `c`.
///
/// # Safety
/// `c` must point at a valid, writable [`Counters`] that nobody else writes
/// concurrently (this CPU's slot of the per-CPU array, or a local value).
#[inline(always)]
pub unsafe fn bump(c: *mut Counters, s: Slot) {
    // SAFETY: every discriminant is the offset of an aligned u64 field inside
    // `Counters` (`offset_of!` in the macro; checked by the unit test below);
    // `c` is valid per contract.
    unsafe {
        let p = (c as *mut u8).add(s as usize) as *mut u64;
        *p += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_slot_bumps_its_named_field() {
        for (i, s) in Slot::ALL.into_iter().enumerate() {
            let mut c = Counters::default();
            c.bump(s);
            let named = c.named();
            for (j, (name, v)) in named.iter().enumerate() {
                assert_eq!(*v, u64::from(i == j), "slot {s:?} vs field {name}");
            }
            assert_eq!(named[i].0, COUNTER_NAMES[i]);
        }
    }

    #[test]
    fn add_and_names_line_up() {
        let mut a = Counters {
            dhcp: 1,
            pass_stack: 2,
            ..Default::default()
        };
        a.add(&Counters {
            dhcp: 3,
            drop_global: 4,
            ..Default::default()
        });
        let named = a.named();
        assert_eq!(named[1], ("dhcp", 4));
        assert_eq!(named[12], ("drop_global", 4));
        assert_eq!(named[15], ("pass_stack", 2));
        assert_eq!(Counters::from_values(a.values()), a);
        assert_eq!(COUNTER_COUNT, 27);
    }
}
