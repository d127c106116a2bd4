//! The single option-table type shared by both agent dialects.
//!
//! One [`OptSpec`] describes one agent option: its stdin key, short letter, long name, argument
//! kind, metadata content type, default, required rule, help/shortdesc text, order, stdin
//! aliases and deprecation links. Everything user-visible is generated from these tables:
//!
//! * the C virt agents' dialect (`fence_xvm`/`fence_virt`, fence-agents 4.12.1
//!   `agents/virt/client/options.c`): getopt string, argv and stdin parsing, `-h`, metadata
//!   and the man page live in [`crate::fence_virt`];
//! * the Python `fencing.py` dialect (fence-agents 4.12.1 `lib/fencing.py`): GNU long/short
//!   argv, stdin, metadata and `-h` live in [`crate::fencing_py`].
//!
//! Shared text helpers (XML escaping, C `strtol`/`atoi` number parsing, the C help line
//! wrapper) are also here so both dialects format identically to their references.

/// How an option takes its argument on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgKind {
    /// No argument (`-u`, `--ssl`).
    Flag,
    /// A required argument (`-o off`, `--ip=host`).
    Value,
    /// No argument; every occurrence increments a level (`-d -d`, `-vvv`).
    Counter,
    /// An argument that must be attached (`-S3`; getopt `S::`); bare means a default.
    OptionalValue,
    /// Accepted by getopt but has no handler: using it is an error (C `-M` quirk).
    Unhandled,
}

/// Metadata `<content type=…>` of an option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentType {
    /// `boolean`
    Boolean,
    /// `string`
    String,
    /// `integer`
    Integer,
    /// `second` (integer seconds)
    Second,
    /// `select` with the given choices
    Select(&'static [&'static str]),
}

impl ContentType {
    /// The metadata spelling of the type.
    pub fn as_str(&self) -> &'static str {
        match self {
            ContentType::Boolean => "boolean",
            ContentType::String => "string",
            ContentType::Integer => "integer",
            ContentType::Second => "second",
            ContentType::Select(_) => "select",
        }
    }
}

/// One option of an agent. See the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptSpec {
    /// Internal key; also the stdin name and the metadata name (empty: CLI-only option).
    pub key: &'static str,
    /// Short option letter.
    pub short: Option<char>,
    /// Long option name without the leading `--`.
    pub long: Option<&'static str>,
    /// How the argument is taken.
    pub kind: ArgKind,
    /// Metadata content type.
    pub content: ContentType,
    /// Default value as printed in metadata.
    pub default: Option<&'static str>,
    /// Metadata `required` attribute.
    pub required: bool,
    /// The option column of `-h` (`-i <family>`, `-a, --ip=[ip]`).
    pub arg_help: &'static str,
    /// Metadata `<shortdesc>` text.
    pub shortdesc: &'static str,
    /// `-h` text when it differs from `shortdesc` (empty: use `shortdesc`).
    pub help: &'static str,
    /// Sort key for metadata and help (fencing.py dialect; the virt dialect uses table order).
    pub order: u32,
    /// Further stdin names meaning the same option (`option` for `action`).
    pub stdin_aliases: &'static [&'static str],
    /// Metadata `deprecated="1"`; also hides the option from the virt `-h` list.
    pub deprecated: bool,
    /// Metadata `obsoletes="<name>"`.
    pub obsoletes: Option<&'static str>,
    /// Hidden from `-h` and metadata (capability markers, stdin-only compat keys).
    pub hidden: bool,
    /// An addition of ours that the reference does not have (documented in the man page).
    pub addition: bool,
}

impl OptSpec {
    /// An empty spec, the base for struct-update syntax in option tables.
    pub const EMPTY: OptSpec = OptSpec {
        key: "",
        short: None,
        long: None,
        kind: ArgKind::Value,
        content: ContentType::String,
        default: None,
        required: false,
        arg_help: "",
        shortdesc: "",
        help: "",
        order: 1,
        stdin_aliases: &[],
        deprecated: false,
        obsoletes: None,
        hidden: false,
        addition: false,
    };

    /// The text shown by `-h`.
    pub fn help_text(&self) -> &'static str {
        if self.help.is_empty() {
            self.shortdesc
        } else {
            self.help
        }
    }

    /// Whether `name` (a stdin key) names this option, comparing as the dialect requires.
    pub fn matches_stdin(&self, name: &str, case_insensitive: bool) -> bool {
        let eq = |a: &str| {
            if case_insensitive {
                a.eq_ignore_ascii_case(name)
            } else {
                a == name
            }
        };
        (!self.key.is_empty() && eq(self.key)) || self.stdin_aliases.iter().any(|a| eq(a))
    }
}

/// An ordered set of options: one agent's complete option table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptTable {
    /// The options, in the order the dialect prints them.
    pub specs: Vec<OptSpec>,
}

impl OptTable {
    /// Builds a table from specs.
    pub fn new(specs: Vec<OptSpec>) -> Self {
        OptTable { specs }
    }

    /// The option with this short letter.
    pub fn by_short(&self, c: char) -> Option<&OptSpec> {
        self.specs.iter().find(|s| s.short == Some(c))
    }

    /// The option with this long name.
    pub fn by_long(&self, long: &str) -> Option<&OptSpec> {
        self.specs.iter().find(|s| s.long == Some(long))
    }

    /// The option with this internal key.
    pub fn by_key(&self, key: &str) -> Option<&OptSpec> {
        self.specs.iter().find(|s| s.key == key)
    }

    /// The first option whose stdin name or alias matches.
    pub fn by_stdin(&self, name: &str, case_insensitive: bool) -> Option<&OptSpec> {
        self.specs
            .iter()
            .find(|s| s.matches_stdin(name, case_insensitive))
    }

    /// A C getopt(3) option string for the options that have a short letter, in table order.
    pub fn getopt_string(&self) -> String {
        let mut s = String::new();
        for spec in &self.specs {
            if let Some(c) = spec.short {
                s.push(c);
                match spec.kind {
                    ArgKind::Value | ArgKind::Unhandled => s.push(':'),
                    ArgKind::OptionalValue => s.push_str("::"),
                    ArgKind::Flag | ArgKind::Counter => {}
                }
            }
        }
        s
    }
}

/// Escapes `<` and `>` only, as the C virt agents' `print_desc_xml` does.
pub fn xml_escape_lt_gt(s: &str) -> String {
    s.replace('<', "&lt;").replace('>', "&gt;")
}

/// Escapes `& " < > '` as Python's `xml.sax.saxutils.escape` with the entity table fencing.py
/// passes.
pub fn xml_escape_full(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Formats one help entry the way the C virt agents' `output_help_text` does: two spaces, the
/// option column left-justified *and truncated* to `arg_width`, two spaces, the description cut
/// at the last space at or before column `help_width` and padded to it. A piece without such a
/// space is truncated to `help_width` and the rest is lost (reference quirk, kept).
pub fn c_help_lines(arg_width: usize, help_width: usize, arg: &str, desc: &str) -> String {
    fn pad_trunc(s: &str, w: usize) -> String {
        let t: String = s.chars().take(w).collect();
        format!("{t:<w$}")
    }
    let mut out = String::new();
    let mut arg_print = arg;
    let mut rest = desc;
    loop {
        let bytes = rest.as_bytes();
        let mut next = None;
        let mut line = rest;
        if bytes.len() > help_width {
            // find_rev(): search from index help_width down to 1 for a space.
            if let Some(i) = (1..=help_width).rev().find(|&i| bytes[i] == b' ') {
                line = &rest[..i];
                next = Some(&rest[i + 1..]);
            }
        }
        out.push_str("  ");
        out.push_str(&pad_trunc(arg_print, arg_width));
        out.push_str("  ");
        out.push_str(&pad_trunc(line, help_width));
        out.push('\n');
        match next {
            None => return out,
            Some(n) => {
                arg_print = " ";
                rest = n;
            }
        }
    }
}

/// C `strtol(s, &end, 0)`: returns the (saturated) value and whether the whole string was
/// consumed (`*end == '\0'`). Leading whitespace and a sign are accepted, base from the prefix
/// (`0x` hex, `0` octal, else decimal). No digits at all: value 0, `end` = start of string.
pub fn c_strtol(s: &str) -> (i64, bool) {
    let (neg, mag, ok) = c_strto_mag(s);
    let v = if neg {
        if mag > (i64::MAX as u128) + 1 {
            i64::MIN
        } else {
            (mag as i128).wrapping_neg() as i64
        }
    } else if mag > i64::MAX as u128 {
        i64::MAX
    } else {
        mag as i64
    };
    (v, ok)
}

/// C `strtoul(s, &end, 0)`: negative input wraps modulo 2^64 as in C; overflow saturates.
pub fn c_strtoul(s: &str) -> (u64, bool) {
    let (neg, mag, ok) = c_strto_mag(s);
    let v = if mag > u64::MAX as u128 {
        u64::MAX
    } else if neg {
        (mag as u64).wrapping_neg()
    } else {
        mag as u64
    };
    (v, ok)
}

/// C number prefix: skip `isspace` bytes, then an optional sign. Returns (index, negative).
fn c_space_sign(b: &[u8]) -> (usize, bool) {
    let mut i = 0;
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c) {
        i += 1;
    }
    let mut neg = false;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        neg = b[i] == b'-';
        i += 1;
    }
    (i, neg)
}

fn c_strto_mag(s: &str) -> (bool, u128, bool) {
    let b = s.as_bytes();
    let (mut i, neg) = c_space_sign(b);
    let mut base = 10u32;
    if i + 1 < b.len() && b[i] == b'0' && (b[i + 1] == b'x' || b[i + 1] == b'X') {
        if i + 2 < b.len() && (b[i + 2] as char).is_ascii_hexdigit() {
            base = 16;
            i += 2;
        } else {
            // "0x" with no hex digit: only the "0" is converted.
            return (neg, 0, i + 1 == b.len());
        }
    } else if i < b.len() && b[i] == b'0' {
        base = 8;
    }
    let start = i;
    let mut mag: u128 = 0;
    while i < b.len() {
        let Some(d) = (b[i] as char).to_digit(base) else {
            break;
        };
        mag = mag.saturating_mul(base as u128).saturating_add(d as u128);
        i += 1;
    }
    if i == start {
        // No conversion: end pointer is the start of the string.
        return (false, 0, s.is_empty());
    }
    (neg, mag, i == b.len())
}

/// C `strtol` result stored into an `int` (the virt agents do `int ret = strtol(...)`): the
/// value is truncated to 32 bits as on x86-64.
pub fn c_strtol_int(s: &str) -> (i32, bool) {
    let (v, ok) = c_strtol(s);
    (v as i32, ok)
}

/// C `atoi`: leading whitespace, optional sign, decimal digits; anything else ends the number.
pub fn c_atoi(s: &str) -> i32 {
    let b = s.as_bytes();
    let (mut i, neg) = c_space_sign(b);
    let mut v: i64 = 0;
    while i < b.len() && b[i].is_ascii_digit() {
        v = v.saturating_mul(10).saturating_add((b[i] - b'0') as i64);
        i += 1;
    }
    (if neg { -v } else { v }) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strtol_bases_and_tails() {
        assert_eq!(c_strtol("1229"), (1229, true));
        assert_eq!(c_strtol("0x10"), (16, true));
        assert_eq!(c_strtol("010"), (8, true));
        assert_eq!(c_strtol("09"), (0, false));
        assert_eq!(c_strtol("12abc"), (12, false));
        assert_eq!(c_strtol(" -5"), (-5, true));
        assert_eq!(c_strtol(""), (0, true));
        assert_eq!(c_strtol("abc"), (0, false));
        assert_eq!(c_strtol("0x"), (0, false));
        assert_eq!(c_strtol("99999999999999999999999"), (i64::MAX, true));
        assert_eq!(c_strtol_int("4294967297"), (1, true));
        assert_eq!(c_strtoul("-1"), (u64::MAX, true));
        assert_eq!(c_atoi("12x"), 12);
        assert_eq!(c_atoi("-3"), -3);
        assert_eq!(c_atoi("x"), 0);
    }

    #[test]
    fn help_wrapping_matches_c_layout() {
        let s = c_help_lines(
            20,
            55,
            "-p <port>",
            "TCP, Multicast, VMChannel, or VM socket port (default=1229)",
        );
        assert_eq!(
            s,
            format!(
                "  {:<20}  {:<55}\n  {:<20}  {:<55}\n",
                "-p <port>", "TCP, Multicast, VMChannel, or VM socket port", " ", "(default=1229)"
            )
        );
        // A piece with no space inside the width is truncated (reference quirk).
        let long = "x".repeat(60);
        assert_eq!(
            c_help_lines(4, 10, "-a", &long),
            format!("  -a    {}\n", "x".repeat(10))
        );
    }

    #[test]
    fn getopt_string_from_table() {
        let t = OptTable::new(vec![
            OptSpec {
                short: Some('d'),
                kind: ArgKind::Counter,
                ..OptSpec::EMPTY
            },
            OptSpec {
                short: Some('S'),
                kind: ArgKind::OptionalValue,
                ..OptSpec::EMPTY
            },
            OptSpec {
                short: Some('M'),
                kind: ArgKind::Unhandled,
                ..OptSpec::EMPTY
            },
            OptSpec {
                short: Some('o'),
                ..OptSpec::EMPTY
            },
            OptSpec {
                long: Some("attribute"),
                ..OptSpec::EMPTY
            },
        ]);
        assert_eq!(t.getopt_string(), "dS::M:o:");
    }

    #[test]
    fn escaping() {
        assert_eq!(xml_escape_lt_gt("a<b>&"), "a&lt;b&gt;&");
        assert_eq!(xml_escape_full("'&\"<>"), "&apos;&amp;&quot;&lt;&gt;");
    }
}
