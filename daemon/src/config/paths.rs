//! Lookup paths into the tree, as the reference's `sc_get` reads them:
//! `section/block[2]/@key`, `groups/group[@label]`, `fence_virtd/@listener`. A segment picks the
//! first (storage order), the n-th (1-based) or the block whose own value matches.

use super::tree::{Block, Entry};

/// How a path segment picks among same-named siblings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Select {
    First,
    /// 1-based, storage order.
    Index(usize),
    /// `[@value]`: the block whose value matches (case-insensitive).
    Value(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Segment {
    pub(super) name: String,
    pub(super) sel: Select,
}

pub(super) enum Last {
    Block(Segment),
    Entry(String, Select),
}

pub(super) fn parse_segment(s: &str) -> Option<Segment> {
    let (name, sel) = match s.find('[') {
        None => (s, Select::First),
        Some(open) => {
            let inner = s[open + 1..].strip_suffix(']')?;
            let sel = if let Some(v) = inner.strip_prefix('@') {
                if v.is_empty() {
                    return None;
                }
                Select::Value(v.to_string())
            } else {
                let n: usize = inner.parse().ok()?;
                if n == 0 {
                    return None;
                }
                Select::Index(n)
            };
            (&s[..open], sel)
        }
    };
    if name.is_empty() {
        return None;
    }
    Some(Segment {
        name: name.to_string(),
        sel,
    })
}

pub(super) fn parse_path(path: &str) -> Option<(Vec<Segment>, Last)> {
    let mut parts: Vec<&str> = path.split('/').collect();
    let last = parts.pop()?;
    let blocks = parts
        .into_iter()
        .map(parse_segment)
        .collect::<Option<Vec<_>>>()?;
    let last = match last.strip_prefix('@') {
        Some(k) => {
            let seg = parse_segment(k)?;
            if matches!(seg.sel, Select::Value(_)) {
                return None;
            }
            Last::Entry(seg.name, seg.sel)
        }
        None => Last::Block(parse_segment(last)?),
    };
    Some((blocks, last))
}

pub(super) fn select_block<'a>(parent: &'a Block, seg: &Segment) -> Option<&'a Block> {
    let mut it = parent
        .blocks
        .iter()
        .filter(|b| b.name.eq_ignore_ascii_case(&seg.name));
    match &seg.sel {
        Select::First => it.next(),
        Select::Index(n) => it.nth(n - 1),
        Select::Value(v) => it.find(|b| {
            b.value
                .as_deref()
                .is_some_and(|bv| bv.eq_ignore_ascii_case(v))
        }),
    }
}

pub(super) fn select_entry<'a>(parent: &'a Block, key: &str, sel: Select) -> Option<&'a Entry> {
    let mut it = parent
        .entries
        .iter()
        .filter(|e| e.key.eq_ignore_ascii_case(key));
    match sel {
        Select::First => it.next(),
        Select::Index(n) => it.nth(n - 1),
        Select::Value(_) => None,
    }
}
