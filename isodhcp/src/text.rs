//! Client-controlled text (hostname, vendor class, relay agent sub-options)
//! made safe for places where people read it.
//!
//! A guest chooses those bytes. Printed raw, they can drive the operator's
//! terminal (ESC sequences set the title, clear the screen, move the
//! cursor), rewrite a line (CR, backspace) or make text read differently
//! from what it is (bidi overrides, zero-width characters). Human output
//! escapes them with [`escape_for_terminal`]; machine output (JSON) keeps
//! the exact string, since JSON has its own escaping.

use std::borrow::Cow;
use std::fmt::Write;

/// Unicode general category Cf ("format"): characters that change how the
/// text around them is shown without being shown themselves. Written out
/// by hand (Unicode 15.1) so no table crate is needed; the tag block is
/// taken whole, and the line and paragraph separators (Zl, Zp) are added
/// because they break a line as a newline would.
const FORMAT: [(u32, u32); 21] = [
    (0x00ad, 0x00ad),   // soft hyphen
    (0x0600, 0x0605),   // Arabic number signs
    (0x061c, 0x061c),   // Arabic letter mark
    (0x06dd, 0x06dd),   // Arabic end of ayah
    (0x070f, 0x070f),   // Syriac abbreviation mark
    (0x0890, 0x0891),   // Arabic pound/piastre mark above
    (0x08e2, 0x08e2),   // Arabic disputed end of ayah
    (0x180e, 0x180e),   // Mongolian vowel separator
    (0x200b, 0x200f),   // zero-width space/joiners, LRM, RLM
    (0x202a, 0x202e),   // bidi embeddings and overrides
    (0x2060, 0x2064),   // word joiner, invisible operators
    (0x2066, 0x206f),   // bidi isolates, deprecated format controls
    (0xfeff, 0xfeff),   // zero-width no-break space (BOM)
    (0xfff9, 0xfffb),   // interlinear annotation
    (0x110bd, 0x110bd), // Kaithi number sign
    (0x110cd, 0x110cd), // Kaithi number sign above
    (0x13430, 0x1343f), // Egyptian hieroglyph format controls
    (0x1bca0, 0x1bca3), // shorthand format controls
    (0x1d173, 0x1d17a), // musical symbol format controls
    (0xe0000, 0xe007f), // tag characters
    (0x2028, 0x2029),   // line/paragraph separator (Zl/Zp, not Cf): they break lines
];

/// Whether `c` is an invisible formatting character (see [`FORMAT`]).
pub fn is_format(c: char) -> bool {
    let c = u32::from(c);
    FORMAT.iter().any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Characters that must not reach a terminal as they are. The backslash is
/// one of them so that an escape in the output can't be forged by a client
/// that sends the six characters `\x1b`.
fn unsafe_for_terminal(c: char) -> bool {
    c.is_control() || is_format(c) || c == '\\'
}

/// `s` with control and format characters written as `\x1b` (below U+0100)
/// or `\u{202e}`, and `\` as `\\`. Borrowed when nothing needed escaping.
pub fn escape_for_terminal(s: &str) -> Cow<'_, str> {
    if !s.chars().any(unsafe_for_terminal) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if unsafe_for_terminal(c) && u32::from(c) < 0x100 => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if unsafe_for_terminal(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_format_characters() {
        let cases = [
            ("plain-host", "plain-host"),
            ("\x1b]0;t\x07", r"\x1b]0;t\x07"),
            ("a\rb\x08\n\t\x7f", r"a\x0db\x08\x0a\x09\x7f"),
            ("\u{85}\u{9b}2J", r"\x85\x9b2J"),
            ("x\u{202e}y\u{2066}\u{2069}", r"x\u{202e}y\u{2066}\u{2069}"),
            (
                "\u{200b}\u{feff}\u{ad}\u{2028}",
                r"\u{200b}\u{feff}\xad\u{2028}",
            ),
            ("\u{e0041}", r"\u{e0041}"),
            (r"fake\x1b", r"fake\\x1b"),
            ("café ü 日本 😀", "café ü 日本 😀"),
        ];
        for (raw, want) in cases {
            assert_eq!(escape_for_terminal(raw), want, "{raw:?}");
        }
        assert!(matches!(escape_for_terminal("host"), Cow::Borrowed(_)));
    }

    #[test]
    fn format_table_is_sorted_free_of_overlaps_and_knows_cf() {
        let mut t = FORMAT.to_vec();
        t.sort_unstable();
        assert!(t.windows(2).all(|w| w[0].1 < w[1].0), "{t:x?}");
        for c in [
            '\u{202a}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{200b}', '\u{200f}',
        ] {
            assert!(is_format(c), "{c:?}");
        }
        for c in ['a', ' ', '-', 'é', '\u{2065}', '\u{2010}', '\u{e0080}'] {
            assert!(!is_format(c), "{c:?}");
        }
    }
}
