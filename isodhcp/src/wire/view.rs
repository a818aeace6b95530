//! Checked, borrowed views of received DHCP messages (smoltcp style).
//!
//! [`MessageView::parse`] validates a BOOTP payload once and then reads it
//! in place: the fixed fields (RFC 2131 §2, Figure 1) and the options
//! (RFC 2132) come straight from the received bytes, nothing is copied and
//! nothing is allocated unless one option was split into several instances.
//!
//! Guarantees:
//! - Construction checks the fixed part's length, the magic cookie
//!   (RFC 2131 §3, RFC 2132 §2) and that every option's length byte and value lie inside
//!   its area, in the areas RFC 2132 §9.3 names: the `options` field, then
//!   `file`, then `sname` when option 52 (overload) says they carry options.
//!   Anything else is a [`WireError`]; no accessor can panic or fail later.
//! - Option semantics are those of the owned decoder ([`Message::parse`],
//!   which is built on this view): PAD is skipped, END closes an area, bytes
//!   after END are ignored; option 52 is read only in the `options` field
//!   (its last instance counts) and never shows as an option; several
//!   instances of one code are concatenated in the order read (RFC 3396
//!   §5), and a code's position is that of its first instance.
//! - [`Options::get`] returns `Cow::Borrowed` for a single instance (the
//!   common case) and allocates only to join split instances.
//!
//! Index: parsing records, without heap, which codes occur (a 256-bit
//! set), which occur more than once, and where the first instance
//! of each of the first [`INDEX_CAP`] distinct codes lies. A lookup of an
//! absent code is one bit test; of an indexed code a scan of at most
//! `INDEX_CAP` bytes. Codes past the cap (only crafted messages have that
//! many) and split codes are found by walking the already-validated areas
//! again (a cold path). A full 254-entry table would also be heap-free,
//! but it would make every view over a kilobyte to initialise and move,
//! for messages that carry about ten options; a 256-byte code-to-slot map
//! in front of this index made lookups a little faster and construction a
//! little slower, no gain over parse plus the engine's lookups in
//! `benches/codec.rs`.

use std::borrow::Cow;
use std::net::Ipv4Addr;
use std::ops::Range;

use super::dhcp::{FIXED_LEN, FLAG_BROADCAST, MAGIC_COOKIE, Message};
use super::options::{self, MessageType, OptionList};
use super::{Mac, WireError};

/// Where `sname` and `file` lie in the BOOTP payload (RFC 2131 §2).
const SNAME: Range<usize> = 44..108;
const FILE: Range<usize> = 108..FIXED_LEN;
/// Start of the `options` field, after the magic cookie.
const OPTIONS_AT: usize = FIXED_LEN + MAGIC_COOKIE.len();
/// Distinct option codes whose first instance the index records.
pub const INDEX_CAP: usize = 24;

/// A set of option codes, one bit per code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct CodeSet([u64; 4]);

impl CodeSet {
    /// Adds `code`; true if it was not there before.
    fn insert(&mut self, code: u8) -> bool {
        let (word, bit) = (usize::from(code >> 6), 1u64 << (code & 63));
        let new = self.0[word] & bit == 0;
        self.0[word] |= bit;
        new
    }

    fn contains(&self, code: u8) -> bool {
        self.0[usize::from(code >> 6)] & (1u64 << (code & 63)) != 0
    }

    fn len(&self) -> usize {
        self.0.iter().map(|w| w.count_ones() as usize).sum()
    }
}

/// Walks one option area: `(code, value offset in the payload, value)` for
/// each option but PAD, up to END or the end of the area. A length byte or
/// value running past the area yields one error and ends the walk.
struct Walk<'a> {
    msg: &'a [u8],
    pos: usize,
    end: usize,
}

impl<'a> Walk<'a> {
    fn new(msg: &'a [u8], area: Range<usize>) -> Self {
        Walk {
            msg,
            pos: area.start,
            end: area.end.min(msg.len()),
        }
    }
}

impl<'a> Iterator for Walk<'a> {
    type Item = Result<(u8, usize, &'a [u8]), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        let area = self.msg.get(..self.end)?;
        loop {
            let code = *area.get(self.pos)?;
            match code {
                options::PAD => self.pos += 1,
                options::END => {
                    self.pos = self.end;
                    return None;
                }
                _ => {
                    let at = self.pos + 2;
                    let value = area
                        .get(self.pos + 1)
                        .and_then(|&len| area.get(at..at + usize::from(len)));
                    let Some(value) = value else {
                        self.pos = self.end;
                        return Some(Err(WireError::OptionOverrun(code)));
                    };
                    self.pos = at + value.len();
                    return Some(Ok((code, at, value)));
                }
            }
        }
    }
}

/// The options of a received message, validated, with an index of where
/// each code lies (see the module documentation).
#[derive(Clone, Debug)]
pub struct Options<'a> {
    /// The whole BOOTP payload; offsets below are into it.
    msg: &'a [u8],
    /// Value of option 52 in the `options` field (its last instance).
    overload: Option<u8>,
    /// Codes present (never PAD, END or 52).
    seen: CodeSet,
    /// Codes present more than once (RFC 3396 split options).
    split: CodeSet,
    /// Number of indexed codes, at most [`INDEX_CAP`].
    count: usize,
    /// The indexed codes; unused slots hold 0.
    codes: [u8; INDEX_CAP],
    /// Offset of the first instance's value of `codes[i]`, and its length.
    at: [u32; INDEX_CAP],
    len: [u8; INDEX_CAP],
}

impl<'a> Options<'a> {
    /// Validates and indexes the option areas of `msg`, a payload whose
    /// fixed part and cookie were checked.
    fn parse(msg: &'a [u8]) -> Result<Self, WireError> {
        let mut o = Options {
            msg,
            overload: None,
            seen: CodeSet::default(),
            split: CodeSet::default(),
            count: 0,
            codes: [0; INDEX_CAP],
            at: [0; INDEX_CAP],
            len: [0; INDEX_CAP],
        };
        for item in Walk::new(msg, OPTIONS_AT..msg.len()) {
            let (code, at, value) = item?;
            if code == options::OVERLOAD {
                o.overload = value.first().copied();
            } else {
                o.record(code, at, value.len());
            }
        }
        for area in o.overloaded() {
            for item in Walk::new(msg, area) {
                let (code, at, value) = item?;
                if code != options::OVERLOAD {
                    o.record(code, at, value.len());
                }
            }
        }
        Ok(o)
    }

    fn record(&mut self, code: u8, at: usize, len: usize) {
        if !self.seen.insert(code) {
            self.split.insert(code);
            return;
        }
        // A value is at most 255 bytes; an offset past 4 GiB (never from a
        // frame) is left to the walk, like codes past the cap.
        if let (true, Ok(at), Ok(len)) =
            (self.count < INDEX_CAP, u32::try_from(at), u8::try_from(len))
        {
            let i = self.count;
            self.codes[i] = code;
            self.at[i] = at;
            self.len[i] = len;
            self.count += 1;
        }
    }

    /// `file` then `sname`, as far as option 52 names them (RFC 2132 §9.3).
    fn overloaded(&self) -> impl Iterator<Item = Range<usize>> + use<> {
        let o = self.overload;
        let file = matches!(o, Some(1 | 3)).then_some(FILE);
        let sname = matches!(o, Some(2 | 3)).then_some(SNAME);
        file.into_iter().chain(sname)
    }

    /// Every instance of every option but PAD, END and 52, in reading order.
    fn instances(&self) -> impl Iterator<Item = (u8, &'a [u8])> + '_ {
        let msg = self.msg;
        std::iter::once(OPTIONS_AT..msg.len())
            .chain(self.overloaded())
            .flat_map(move |area| Walk::new(msg, area).map_while(Result::ok))
            .filter(|&(code, _, _)| code != options::OVERLOAD)
            .map(|(code, _, value)| (code, value))
    }

    /// The value of `code` (PAD, END and 52 are never options), its
    /// instances joined when it was split.
    #[inline]
    pub fn get(&self, code: u8) -> Option<Cow<'a, [u8]>> {
        if !self.seen.contains(code) {
            return None;
        }
        if !self.split.contains(code) {
            // Unused slots hold 0 (PAD), which is never seen.
            if let Some(i) = self.codes.iter().position(|&c| c == code) {
                let at = self.at[i] as usize;
                let value = self.msg.get(at..at + usize::from(self.len[i]));
                return value.map(Cow::Borrowed);
            }
        }
        self.get_walked(code)
    }

    /// [`Self::get`] for split codes and codes past the index: walks the
    /// validated areas again.
    #[cold]
    fn get_walked(&self, code: u8) -> Option<Cow<'a, [u8]>> {
        let mut values = self.instances().filter(|&(c, _)| c == code);
        let first = values.next()?.1;
        if !self.split.contains(code) {
            return Some(Cow::Borrowed(first));
        }
        let mut joined = first.to_vec();
        for (_, v) in values {
            joined.extend_from_slice(v);
        }
        Some(Cow::Owned(joined))
    }

    /// True when `code` occurs in any option area (never for PAD, END or 52);
    /// one bit test.
    pub fn contains(&self, code: u8) -> bool {
        self.seen.contains(code)
    }

    /// The value of `code` when it is exactly `N` bytes long.
    #[inline]
    fn get_array<const N: usize>(&self, code: u8) -> Option<[u8; N]> {
        self.get(code)?.as_ref().try_into().ok()
    }

    /// The value of `code` as an address; `None` unless it is exactly 4 bytes.
    pub fn get_ip(&self, code: u8) -> Option<Ipv4Addr> {
        self.get_array(code).map(Ipv4Addr::from)
    }

    /// The value of `code` as a big-endian `u16`; `None` unless it is exactly
    /// 2 bytes (option 57 is such a value).
    pub fn get_u16(&self, code: u8) -> Option<u16> {
        self.get_array(code).map(u16::from_be_bytes)
    }

    /// The value of `code` as a big-endian `u32`; `None` unless it is exactly
    /// 4 bytes.
    pub fn get_u32(&self, code: u8) -> Option<u32> {
        self.get_array(code).map(u32::from_be_bytes)
    }

    /// Option 53 (RFC 2132 §9.6), when it is one known byte.
    pub fn message_type(&self) -> Option<MessageType> {
        match self.get(options::MESSAGE_TYPE)?.as_ref() {
            [t] => MessageType::from_u8(*t),
            _ => None,
        }
    }

    /// Option 52 as received (RFC 2132 §9.3): 1 `file`, 2 `sname`, 3 both
    /// hold options; other values name no area.
    pub fn overload(&self) -> Option<u8> {
        self.overload
    }

    /// Each code once, at its first instance's position, value joined.
    pub fn iter(&self) -> impl Iterator<Item = (u8, Cow<'a, [u8]>)> + '_ {
        let mut done = CodeSet::default();
        self.instances()
            .filter(move |&(code, _)| done.insert(code))
            .map(|(code, v)| match self.split.contains(code) {
                true => (code, self.get(code).unwrap_or_default()),
                false => (code, Cow::Borrowed(v)),
            })
    }

    /// Number of distinct codes.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when the message carries no option besides PAD, END and 52.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The owned, ordered list (as [`Message::parse`] returns it): every
    /// instance appended in reading order, which joins split options.
    /// When the index holds every code once, it is the list already.
    pub fn to_list(&self) -> OptionList {
        let mut list = OptionList::with_capacity(self.len());
        if self.split == CodeSet::default() && self.count == self.len() {
            for i in 0..self.count {
                let at = self.at[i] as usize;
                let value = self.msg.get(at..at + usize::from(self.len[i]));
                list.append(self.codes[i], value.unwrap_or_default());
            }
            return list;
        }
        for (code, value) in self.instances() {
            list.append(code, value);
        }
        list
    }
}

/// A received BOOTP/DHCP message, validated, read in place.
#[derive(Clone, Debug)]
pub struct MessageView<'a> {
    b: &'a [u8],
    options: Options<'a>,
}

impl<'a> MessageView<'a> {
    /// Validates a BOOTP payload (the UDP data); see the module guarantees.
    pub fn parse(b: &'a [u8]) -> Result<Self, WireError> {
        if b.len() < OPTIONS_AT {
            return Err(WireError::Truncated("BOOTP fixed part"));
        }
        if b[FIXED_LEN..OPTIONS_AT] != MAGIC_COOKIE {
            return Err(WireError::NoMagicCookie);
        }
        Ok(MessageView {
            b,
            options: Options::parse(b)?,
        })
    }

    fn array<const N: usize>(&self, at: usize) -> &'a [u8; N] {
        let b: &'a [u8] = self.b;
        b[at..at + N]
            .try_into()
            .expect("parse checked the fixed part")
    }

    fn ip(&self, at: usize) -> Ipv4Addr {
        Ipv4Addr::from(*self.array::<4>(at))
    }

    /// The payload this view reads.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.b
    }

    /// Message op code, `BOOTREQUEST` (1) or `BOOTREPLY` (2) (RFC 2131 §2).
    pub fn op(&self) -> u8 {
        self.b[0]
    }

    /// Hardware address type, 1 for Ethernet.
    pub fn htype(&self) -> u8 {
        self.b[1]
    }

    /// Hardware address length in bytes, 6 for Ethernet.
    pub fn hlen(&self) -> u8 {
        self.b[2]
    }

    /// Relay hop count: zero from a client, incremented by relay agents.
    pub fn hops(&self) -> u8 {
        self.b[3]
    }

    /// Transaction ID chosen by the client, copied into the reply.
    pub fn xid(&self) -> u32 {
        u32::from_be_bytes(*self.array(4))
    }

    /// Seconds since the client began acquiring or renewing its address.
    pub fn secs(&self) -> u16 {
        u16::from_be_bytes(*self.array(8))
    }

    /// Flags; only the BROADCAST bit is defined, see [`Self::broadcast_flag`].
    pub fn flags(&self) -> u16 {
        u16::from_be_bytes(*self.array(10))
    }

    /// Client IP address, set only by a client that already has one (BOUND,
    /// RENEWING, REBINDING, or for an INFORM); 0.0.0.0 otherwise.
    pub fn ciaddr(&self) -> Ipv4Addr {
        self.ip(12)
    }

    /// 'Your' IP address: set by servers in replies, 0.0.0.0 in requests.
    pub fn yiaddr(&self) -> Ipv4Addr {
        self.ip(16)
    }

    /// Address of the next server in bootstrap (TFTP); 0.0.0.0 when unused.
    pub fn siaddr(&self) -> Ipv4Addr {
        self.ip(20)
    }

    /// Relay agent IP address; 0.0.0.0 when no relay agent forwarded the
    /// message (design.md §Deployment).
    pub fn giaddr(&self) -> Ipv4Addr {
        self.ip(24)
    }

    /// Client hardware address field; for Ethernet the MAC is its first 6 bytes.
    pub fn chaddr(&self) -> &'a [u8; 16] {
        self.array(28)
    }

    /// `sname` as received (it may hold overloaded options).
    pub fn sname(&self) -> &'a [u8; 64] {
        self.array(SNAME.start)
    }

    /// `file` as received (it may hold overloaded options).
    pub fn file(&self) -> &'a [u8; 128] {
        self.array(FILE.start)
    }

    /// The client's MAC from chaddr (meaningful for htype 1 / hlen 6).
    pub fn client_mac(&self) -> Mac {
        Mac(*self.array(28))
    }

    /// True when the client set the BROADCAST bit of `flags` (RFC 2131 §2).
    pub fn broadcast_flag(&self) -> bool {
        self.flags() & FLAG_BROADCAST != 0
    }

    /// The validated options, read in place.
    pub fn options(&self) -> &Options<'a> {
        &self.options
    }

    /// The owned message (what [`Message::parse`] returns).
    pub fn to_message(&self) -> Message {
        Message {
            op: self.op(),
            htype: self.htype(),
            hlen: self.hlen(),
            hops: self.hops(),
            xid: self.xid(),
            secs: self.secs(),
            flags: self.flags(),
            ciaddr: self.ciaddr(),
            yiaddr: self.yiaddr(),
            siaddr: self.siaddr(),
            giaddr: self.giaddr(),
            chaddr: *self.chaddr(),
            sname: *self.sname(),
            file: *self.file(),
            options: self.options.to_list(),
        }
    }
}
