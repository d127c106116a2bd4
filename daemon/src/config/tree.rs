//! The generic `fence_virt.conf` tree: blocks, entries and positions, path lookups (paths are
//! read by `paths`, text by `lexer` and `parser`), `sc_set`-style edits and the `-c` dump.
//! Compatible with fence-agents 4.12.1 `agents/virt/config` ("simpleconfig": `config.l`,
//! `config.y`, `simpleconfig.c`):
//!
//! * Every block and value is stored **prepended** to its parent, i.e. each level holds its
//!   children in reverse file order (reference quirk kept on purpose: it defines which duplicate
//!   wins). A plain lookup therefore returns the **last** occurrence in the file, `[n]` counts
//!   in that reversed order (`group[1]` is the last `group` in the file) and a path only ever
//!   descends into the first matching block in storage order (the last copy of a section).
//! * Names and keys match ASCII-case-insensitively (the reference uses `strcasecmp`).
//! * [`ConfigTree::dump`] prints byte-for-byte what `fence_virtd -c` / `-d 4` print.
//!
//! Deliberate differences from the flex/bison reader, all of them about files the reference
//! rejects or misreads:
//! * Errors carry file, line **and** column and say what was expected; line numbers stay right
//!   after a value that spans lines (the reference stops counting inside values).
//! * A `"` without a closing quote is an error. The reference's scanner silently drops an
//!   unmatched `"` (flex default rule) and may accept the rest (`foo "{ }` parses as `foo { }`).
//! * A carriage return counts as whitespace, so CRLF files load (the reference reads `\r` as an
//!   identifier and reports a syntax error).
//! * Blocks nest at most [`MAX_DEPTH`] deep (the reference's bison stack gives up at 10000
//!   levels with "memory exhausted"); the parser is iterative, and the limit keeps the
//!   recursive dump and drop of the tree safe too.

use std::fmt::{self, Write as _};
use std::path::Path;

use super::lexer::valid_ident;
use super::parser::Parser;
use super::paths::{parse_path, select_block, select_entry, Last, Segment};
use super::ConfigError;

/// How deeply blocks may nest (real files use three levels).
pub const MAX_DEPTH: usize = 100;

/// A 1-based position in the configuration text. Columns count characters (a tab is one
/// column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pos {
    /// Line, from 1.
    pub line: u32,
    /// Column, from 1.
    pub column: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One `key = "value";` assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The key as written.
    pub key: String,
    /// The value without its quotes (never empty when parsed from a file).
    pub value: String,
    /// Where the key starts.
    pub key_pos: Pos,
    /// Where the value's opening quote is.
    pub value_pos: Pos,
}

/// A block `name { … }` or `name = "value" { … }`. Children are kept in storage order, which is
/// the reverse of file order (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Block {
    /// The block name as written (empty for the file's root).
    pub name: String,
    /// The optional block value (`group = "g1" { … }`).
    pub value: Option<String>,
    /// Where the name starts.
    pub pos: Pos,
    /// Where the value's opening quote is, if there is a value.
    pub value_pos: Option<Pos>,
    /// Child blocks, storage (reversed) order.
    pub blocks: Vec<Block>,
    /// Assignments, storage (reversed) order.
    pub entries: Vec<Entry>,
}

impl Block {
    /// Child blocks called `name` (case-insensitive), storage order: the last one in the file
    /// comes first.
    pub fn blocks_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Block> + 'a {
        self.blocks
            .iter()
            .filter(move |b| b.name.eq_ignore_ascii_case(name))
    }

    /// The child block a path lookup would descend into: the last `name` block in the file.
    pub fn block(&self, name: &str) -> Option<&Block> {
        self.blocks
            .iter()
            .find(|b| b.name.eq_ignore_ascii_case(name))
    }

    /// Assignments to `key` (case-insensitive), storage order: the last one in the file first.
    pub fn entries_named<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        self.entries
            .iter()
            .filter(move |e| e.key.eq_ignore_ascii_case(key))
    }

    /// The effective assignment of `key`: the last one in the file.
    pub fn entry(&self, key: &str) -> Option<&Entry> {
        self.entries
            .iter()
            .find(|e| e.key.eq_ignore_ascii_case(key))
    }

    /// The effective value of `key` (the last one in the file).
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.value.as_str())
    }

    pub(super) fn is_empty(&self) -> bool {
        self.blocks.is_empty() && self.entries.is_empty()
    }

    /// Reverse the children of this block and of every block below (file order ⇄ storage order).
    fn reverse_all(&mut self) {
        self.blocks.reverse();
        self.entries.reverse();
        for b in &mut self.blocks {
            b.reverse_all();
        }
    }
}

/// A parsed configuration file with the reference's lookup semantics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigTree {
    file: String,
    root: Block,
}

/// Why [`ConfigTree::set`] refused an edit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SetError {
    /// The path does not end in `@key` or has a malformed segment.
    #[error(
        "invalid configuration path {0:?}: expected segments like `listeners/multicast/@port`"
    )]
    BadPath(String),
    /// The value cannot be written back in the file format (empty, or contains `"`).
    #[error("value {0:?} cannot be stored: values must be non-empty and contain no '\"'")]
    BadValue(String),
}

impl ConfigTree {
    /// Read and parse `path`. The file name appears in every error message.
    pub fn load(path: &Path) -> Result<ConfigTree, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        // The reference reads bytes; we need text. Invalid UTF-8 is replaced rather than
        // rejected so that any file the reference accepts still loads.
        let text = String::from_utf8_lossy(&bytes);
        ConfigTree::parse(path.display().to_string(), &text)
    }

    /// Parse `text`; `file` names the source in error messages.
    pub fn parse(file: impl Into<String>, text: &str) -> Result<ConfigTree, ConfigError> {
        let file = file.into();
        let root = Parser::new(&file, text).parse()?;
        Ok(ConfigTree { file, root })
    }

    /// An empty tree (what `fence_virtd -c` starts from when the user chooses "from scratch").
    pub fn empty(file: impl Into<String>) -> ConfigTree {
        ConfigTree {
            file: file.into(),
            root: Block::default(),
        }
    }

    /// The file name used in messages.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// The top level: blocks and top-level assignments, storage order.
    pub fn root(&self) -> &Block {
        &self.root
    }

    /// Look a path up like the reference's `sc_get`: `fence_virtd/@backend`,
    /// `groups/group[2]/@uuid[3]`, `groups/group[@g1]/@ip`. A path that does not end in
    /// `@key` names a block and yields that block's value (`group = "g1" { … }` → `g1`).
    /// Malformed paths (missing `]`, index `0`, non-numeric index) find nothing.
    pub fn get(&self, path: &str) -> Option<&str> {
        let (blocks, last) = parse_path(path)?;
        let parent = self.descend(&blocks)?;
        match last {
            Last::Entry(key, sel) => select_entry(parent, &key, sel).map(|e| e.value.as_str()),
            Last::Block(seg) => select_block(parent, &seg)?.value.as_deref(),
        }
    }

    /// Like [`get`](Self::get) for a `…/@key` path, returning the whole assignment (with its
    /// position, for error messages).
    pub fn get_entry(&self, path: &str) -> Option<&Entry> {
        let (blocks, last) = parse_path(path)?;
        let parent = self.descend(&blocks)?;
        match last {
            Last::Entry(key, sel) => select_entry(parent, &key, sel),
            Last::Block(_) => None,
        }
    }

    /// The block a path of block segments leads to (`groups/group[2]`), following the same
    /// rules as [`get`](Self::get).
    pub fn find_block(&self, path: &str) -> Option<&Block> {
        let (blocks, last) = parse_path(path)?;
        let parent = self.descend(&blocks)?;
        match last {
            Last::Block(seg) => select_block(parent, &seg),
            Last::Entry(..) => None,
        }
    }

    fn descend(&self, segs: &[Segment]) -> Option<&Block> {
        let mut cur = &self.root;
        for seg in segs {
            cur = select_block(cur, seg)?;
        }
        Some(cur)
    }

    /// Set or remove a value like the reference's `sc_set` (used by `fence_virtd -c` and by
    /// `-d N`, which writes the level back): descend into the first matching block of each
    /// segment, creating (prepending) missing ones; replace the first matching assignment in
    /// place, or prepend a new one. `None` removes the first matching assignment (the reference
    /// sets it to NULL, which its dump skips). Only plain segments are allowed, as in the
    /// reference.
    pub fn set(&mut self, path: &str, value: Option<&str>) -> Result<(), SetError> {
        let bad = || SetError::BadPath(path.to_string());
        if let Some(v) = value {
            if v.is_empty() || v.contains('"') {
                return Err(SetError::BadValue(v.to_string()));
            }
        }
        let mut parts: Vec<&str> = path.split('/').collect();
        let key = parts
            .pop()
            .and_then(|k| k.strip_prefix('@'))
            .filter(|k| valid_ident(k))
            .ok_or_else(bad)?;
        let mut cur = &mut self.root;
        for name in parts {
            if !valid_ident(name) {
                return Err(bad());
            }
            let idx = match cur
                .blocks
                .iter()
                .position(|b| b.name.eq_ignore_ascii_case(name))
            {
                Some(i) => i,
                None => {
                    cur.blocks.insert(
                        0,
                        Block {
                            name: name.to_string(),
                            ..Block::default()
                        },
                    );
                    0
                }
            };
            cur = &mut cur.blocks[idx];
        }
        let found = cur
            .entries
            .iter()
            .position(|e| e.key.eq_ignore_ascii_case(key));
        match (found, value) {
            (Some(i), Some(v)) => cur.entries[i].value = v.to_string(),
            (Some(i), None) => {
                cur.entries.remove(i);
            }
            (None, Some(v)) => cur.entries.insert(
                0,
                Entry {
                    key: key.to_string(),
                    value: v.to_string(),
                    key_pos: Pos::default(),
                    value_pos: Pos::default(),
                },
            ),
            (None, None) => {}
        }
        Ok(())
    }

    /// The text `fence_virtd -c` prints and writes (and `-d 4` prints): blocks first, each
    /// `name {` or `name = "value" {`, children indented one tab per level (child blocks, then
    /// values), `}` plus an empty line after every block; top-level values last; everything in
    /// storage order. Parsing this text again reverses the order once more, exactly as with
    /// the reference (so a `-c` run flips which duplicate wins); use
    /// [`dump_file_order`](Self::dump_file_order) to keep the meaning.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for b in &self.root.blocks {
            dump_block(&mut out, b, 0);
        }
        for e in &self.root.entries {
            dump_entry(&mut out, e, 0);
        }
        out
    }

    /// The same format as [`dump`](Self::dump) but in file order, so that parsing the result
    /// gives back a tree with the same lookups (every duplicate keeps its rank).
    pub fn dump_file_order(&self) -> String {
        let mut copy = self.root.clone();
        copy.reverse_all();
        ConfigTree {
            file: self.file.clone(),
            root: copy,
        }
        .dump()
    }
}

fn dump_block(out: &mut String, b: &Block, depth: usize) {
    indent(out, depth);
    match &b.value {
        Some(v) => {
            let _ = writeln!(out, "{} = \"{}\" {{", b.name, v);
        }
        None => {
            let _ = writeln!(out, "{} {{", b.name);
        }
    }
    for c in &b.blocks {
        dump_block(out, c, depth + 1);
    }
    for e in &b.entries {
        dump_entry(out, e, depth + 1);
    }
    indent(out, depth);
    out.push_str("}\n\n");
}

fn dump_entry(out: &mut String, e: &Entry, depth: usize) {
    indent(out, depth);
    let _ = writeln!(out, "{} = \"{}\";", e.key, e.value);
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push('\t');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConfigTree, ConfigError> {
        ConfigTree::parse("/etc/fence_virt.conf", text)
    }

    fn err(text: &str) -> String {
        parse(text).expect_err("must not parse").to_string()
    }

    const SAMPLE: &str = "# top comment\n\
top1 = \"t1\";\n\
fence_virtd {\n\
\tlistener = \"multicast\";\n\
\tdebug = \"0\";\n\
\tlistener = \"tcp\";\n\
}\n\
top2 = \"t2\";\n\
groups {\n\
\tgroup = \"g1\" {\n\
\t\tuuid = \"a\"; uuid = \"b\";\n\
\t\tip = \"1.2.3.4\";\n\
\t\tsub { x = \"y\"; }\n\
\t\tempty { }\n\
\t}\n\
\tgroup { uuid = \"c\"; ip = \"5.6.7.8\"; }\n\
}\n\
listeners { multi#line = \"v\n w\"; }\n";

    /// What fence_virtd 4.12.1 printed for SAMPLE with `-F -d 4` (run on this machine), except
    /// that `-d 4` had also written `debug = "4"` into the tree.
    const SAMPLE_DUMP: &str = "listeners {\n\
\tmulti#line = \"v\n w\";\n\
}\n\
\n\
groups {\n\
\tgroup {\n\
\t\tip = \"5.6.7.8\";\n\
\t\tuuid = \"c\";\n\
\t}\n\
\n\
\tgroup = \"g1\" {\n\
\t\tempty {\n\
\t\t}\n\
\n\
\t\tsub {\n\
\t\t\tx = \"y\";\n\
\t\t}\n\
\n\
\t\tip = \"1.2.3.4\";\n\
\t\tuuid = \"b\";\n\
\t\tuuid = \"a\";\n\
\t}\n\
\n\
}\n\
\n\
fence_virtd {\n\
\tlistener = \"tcp\";\n\
\tdebug = \"4\";\n\
\tlistener = \"multicast\";\n\
}\n\
\n\
top2 = \"t2\";\n\
top1 = \"t1\";\n";

    #[test]
    fn dump_matches_reference_output() {
        let mut t = parse(SAMPLE).unwrap();
        t.set("fence_virtd/@debug", Some("4")).unwrap();
        assert_eq!(t.dump(), SAMPLE_DUMP);
    }

    #[test]
    fn last_occurrence_wins_and_index_counts_reversed() {
        let t = parse(SAMPLE).unwrap();
        assert_eq!(t.get("fence_virtd/@listener"), Some("tcp"));
        assert_eq!(t.get("fence_virtd/@listener[1]"), Some("tcp"));
        assert_eq!(t.get("fence_virtd/@listener[2]"), Some("multicast"));
        assert_eq!(t.get("fence_virtd/@listener[3]"), None);
        // group[1] is the last group in the file.
        assert_eq!(t.get("groups/group[1]/@uuid"), Some("c"));
        assert_eq!(t.get("groups/group[2]/@uuid"), Some("b"));
        assert_eq!(t.get("groups/group[2]/@uuid[2]"), Some("a"));
        assert_eq!(t.get("groups/group[2]/@uuid[3]"), None);
        assert_eq!(t.get("groups/group[2]"), Some("g1"));
        assert_eq!(t.get("groups/group[1]"), None, "block without a value");
        assert_eq!(t.get("groups/group[@G1]/@ip"), Some("1.2.3.4"));
        assert_eq!(t.get("groups/group[2]/sub/@x"), Some("y"));
        assert_eq!(t.get("@top1"), Some("t1"));
        assert_eq!(t.get("listeners/@multi#line"), Some("v\n w"));
    }

    #[test]
    fn lookups_are_case_insensitive() {
        let t = parse("Fence_VirtD { BACKEND = \"libvirt\"; }").unwrap();
        assert_eq!(t.get("fence_virtd/@backend"), Some("libvirt"));
        assert_eq!(t.get("FENCE_VIRTD/@Backend"), Some("libvirt"));
    }

    #[test]
    fn duplicate_section_hides_the_earlier_copy() {
        let t = parse(
            "listeners { multicast { port = \"1\"; interface = \"eth0\"; } }\n\
             listeners { multicast { port = \"2\"; } }\n",
        )
        .unwrap();
        assert_eq!(t.get("listeners/multicast/@port"), Some("2"));
        // The reference never looks into the first `listeners` block.
        assert_eq!(t.get("listeners/multicast/@interface"), None);
        assert_eq!(t.get("listeners[2]/multicast/@interface"), Some("eth0"));
    }

    #[test]
    fn malformed_paths_find_nothing() {
        let t = parse(SAMPLE).unwrap();
        for p in [
            "groups/group[0]/@uuid",
            "groups/group[x]/@uuid",
            "groups/group[1/@uuid",
            "groups/group[@]/@uuid",
            "fence_virtd/@listener[@x]",
            "fence_virtd/@",
            "",
        ] {
            assert_eq!(t.get(p), None, "{p}");
        }
    }

    #[test]
    fn positions_are_recorded() {
        let t = parse("a {\n\tb = \"c\";\n}\n").unwrap();
        let e = t.get_entry("a/@b").unwrap();
        assert_eq!(e.key_pos, Pos { line: 2, column: 2 });
        assert_eq!(e.value_pos, Pos { line: 2, column: 6 });
        assert_eq!(t.find_block("a").unwrap().pos, Pos { line: 1, column: 1 });
    }

    #[test]
    fn grammar_corners_the_reference_accepts() {
        // Empty blocks, valued blocks, top-level values, no whitespace, comments after tokens.
        let t = parse("a {}b=\"x\" { }c=\"1\";d { e=\"2\";}# trailing\n").unwrap();
        assert!(t.find_block("a").unwrap().is_empty());
        assert_eq!(t.get("b"), Some("x"));
        assert_eq!(t.get("@c"), Some("1"));
        assert_eq!(t.get("d/@e"), Some("2"));
        // CRLF line ends are accepted (the reference rejects them).
        let t = parse("a {\r\n b = \"c\";\r\n}\r\n").unwrap();
        assert_eq!(t.get("a/@b"), Some("c"));
    }

    #[test]
    fn empty_file_is_an_error() {
        let m = err("");
        assert_eq!(
            m,
            "/etc/fence_virt.conf:1:1: empty configuration: the file holds no blocks or settings \
             (fence_virtd needs at least fence_virtd { listener = \"…\"; backend = \"…\"; })"
        );
        let m = err("# just a comment\n\n");
        assert!(
            m.starts_with("/etc/fence_virt.conf:3:1: empty configuration"),
            "{m}"
        );
    }

    #[test]
    fn empty_value_is_an_error() {
        let m = err("fence_virtd {\n\tbackend = \"\";\n}\n");
        assert!(
            m.starts_with("/etc/fence_virt.conf:2:12: empty value \"\""),
            "{m}"
        );
    }

    #[test]
    fn unquoted_value_is_an_error() {
        let m = err("fence_virtd {\n\tbackend = libvirt;\n}\n");
        assert_eq!(
            m,
            "/etc/fence_virt.conf:2:12: expected a double-quoted value after '=' for \
             \"backend\", found unquoted word libvirt (write backend = \"libvirt\";)"
        );
    }

    #[test]
    fn missing_semicolon_is_an_error() {
        let m = err("fence_virtd {\n\tbackend = \"libvirt\"\n\tlistener = \"tcp\";\n}\n");
        assert_eq!(
            m,
            "/etc/fence_virt.conf:3:2: expected ';' after backend = \"libvirt\" (line 2), found \
             identifier \"listener\""
        );
        let m = err("a { b = \"c\" }");
        assert!(
            m.starts_with("/etc/fence_virt.conf:1:13: expected ';'"),
            "{m}"
        );
    }

    #[test]
    fn missing_equals_is_an_error() {
        let m = err("fence_virtd {\n        listener \"tcp\";\n}\n");
        assert_eq!(
            m,
            "/etc/fence_virt.conf:2:18: expected '=' or '{' after identifier \"listener\", found \
             value \"tcp\""
        );
    }

    #[test]
    fn unbalanced_braces_are_errors() {
        let m = err("a { b = \"c\"; } }");
        assert_eq!(
            m,
            "/etc/fence_virt.conf:1:16: unbalanced '}': no block is open here"
        );
        let m = err("a {\n b { c = \"d\";\n }\n");
        assert_eq!(
            m,
            "/etc/fence_virt.conf:4:1: unexpected end of file: block \"a\" opened at line 1, \
             column 1 is not closed (expected '}')"
        );
        let m = err("}");
        assert!(m.contains("unbalanced '}'"), "{m}");
    }

    #[test]
    fn stray_tokens_are_errors() {
        assert!(err("= \"x\";").starts_with("/etc/fence_virt.conf:1:1: expected an identifier"));
        assert!(err("\"x\";").contains("found value \"x\""));
        assert!(err("a = \"x\"").contains("found end of file"));
        assert!(err("a").contains("after identifier \"a\", found end of file"));
        let m = err("a = \"x;\n");
        assert!(
            m.starts_with("/etc/fence_virt.conf:1:5: unterminated value"),
            "{m}"
        );
    }

    #[test]
    fn line_numbers_stay_right_after_multiline_values() {
        let m = err("a = \"x\ny\";\nb = c;\n");
        assert!(m.starts_with("/etc/fence_virt.conf:3:5:"), "{m}");
    }

    #[test]
    fn nesting_depth_is_bounded() {
        let n = MAX_DEPTH;
        let text = format!("{}{}", "a {".repeat(n), "}".repeat(n));
        let t = parse(&text).unwrap();
        assert_eq!(t.root().blocks.len(), 1);
        let n = 100_000;
        let text = format!("{}{}", "a {".repeat(n), "}".repeat(n));
        let m = err(&text);
        assert_eq!(
            m,
            format!(
                "/etc/fence_virt.conf:1:{}: blocks nested more than {MAX_DEPTH} levels deep",
                MAX_DEPTH * 3 + 1
            )
        );
    }

    #[test]
    fn dump_round_trip() {
        let t = parse(SAMPLE).unwrap();
        // A C `-c` rewrite reverses the file once: lookups now see the other duplicate.
        let once = parse(&t.dump()).unwrap();
        assert_eq!(once.get("fence_virtd/@listener"), Some("multicast"));
        // Twice gives the original tree back (positions aside), and the same dump.
        let twice = parse(&once.dump()).unwrap();
        assert_eq!(twice.dump(), t.dump());
        // The file-order dump keeps every lookup.
        let kept = parse(&t.dump_file_order()).unwrap();
        assert_eq!(kept.dump(), t.dump());
        assert_eq!(kept.get("fence_virtd/@listener"), Some("tcp"));
        assert_eq!(kept.get("groups/group[2]/@uuid[2]"), Some("a"));
    }

    #[test]
    fn set_follows_sc_set() {
        let mut t = parse("fence_virtd { listener = \"a\"; listener = \"b\"; }").unwrap();
        t.set("fence_virtd/@listener", Some("c")).unwrap();
        assert_eq!(t.get("fence_virtd/@listener[1]"), Some("c"));
        assert_eq!(t.get("fence_virtd/@listener[2]"), Some("a"));
        t.set("backends/libvirt/@uri", Some("qemu:///system"))
            .unwrap();
        assert_eq!(t.get("backends/libvirt/@uri"), Some("qemu:///system"));
        t.set("fence_virtd/@listener", None).unwrap();
        assert_eq!(t.get("fence_virtd/@listener"), Some("a"));
        assert_eq!(
            t.dump(),
            "backends {\n\tlibvirt {\n\t\turi = \"qemu:///system\";\n\t}\n\n}\n\n\
             fence_virtd {\n\tlistener = \"a\";\n}\n\n"
        );
        assert!(matches!(t.set("a/b", Some("x")), Err(SetError::BadPath(_))));
        assert!(matches!(
            t.set("a/@b", Some("")),
            Err(SetError::BadValue(_))
        ));
        assert!(matches!(
            t.set("a/@b", Some("x\"y")),
            Err(SetError::BadValue(_))
        ));
    }
}
