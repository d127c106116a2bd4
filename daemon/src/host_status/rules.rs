//! The pm-monitor conversion rules (`rules = "/etc/pm-monitor.conf"`): an INI file with one
//! section per attribute and lines `OUTPUT = OP OPERAND`, in the format of NTT's pm_kvm_tools
//! `vm-manager.conf`. The first line of an attribute's section whose comparison holds gives the
//! answer; when none holds the raw value is passed on.
//!
//! Hand-parsed rather than through an INI crate: the order of lines matters (first match) and
//! the same output may appear on several lines, which map-based INI readers merge; and every
//! error has to name the file and the line.

use std::path::{Path, PathBuf};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// Equal strings.
    Eq,
    /// Different strings.
    Ne,
    /// Integer less than.
    Lt,
    /// Integer greater than.
    Gt,
    /// Integer less than or equal.
    Lte,
    /// Integer greater than or equal.
    Gte,
}

impl CmpOp {
    fn parse(s: &str) -> Option<CmpOp> {
        Some(match s {
            "eq" => CmpOp::Eq,
            "ne" => CmpOp::Ne,
            "lt" => CmpOp::Lt,
            "gt" => CmpOp::Gt,
            "lte" => CmpOp::Lte,
            "gte" => CmpOp::Gte,
            _ => return None,
        })
    }
}

/// The right-hand side of a rule: a string for eq/ne, an integer for the others.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Operand {
    Text(String),
    Int(i64),
}

/// One line `output = op operand`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    output: String,
    op: CmpOp,
    operand: Operand,
}

impl Rule {
    /// Does `value` satisfy this rule? Integer comparisons never hold for a value that is not
    /// an integer.
    pub fn matches(&self, value: &str) -> bool {
        match (&self.operand, self.op) {
            (Operand::Text(t), CmpOp::Eq) => value == t,
            (Operand::Text(t), CmpOp::Ne) => value != t,
            (Operand::Int(n), op) => match value.trim().parse::<i64>() {
                Ok(v) => match op {
                    CmpOp::Lt => v < *n,
                    CmpOp::Gt => v > *n,
                    CmpOp::Lte => v <= *n,
                    CmpOp::Gte => v >= *n,
                    CmpOp::Eq | CmpOp::Ne => unreachable!("eq/ne take text operands"),
                },
                Err(_) => false,
            },
            (Operand::Text(_), _) => unreachable!("integer operators take integer operands"),
        }
    }
}

/// All sections of a rules file, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    sections: Vec<(String, Vec<Rule>)>,
}

/// A rules file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file cannot be read.
    #[error("cannot read rules file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is wrong.
    #[error("{path}:{line}: {what}")]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: String,
    },
}

impl Rules {
    /// Read and check a rules file.
    pub fn load(path: &Path) -> Result<Rules, RulesError> {
        let text = std::fs::read_to_string(path).map_err(|source| RulesError::Read {
            path: path.to_owned(),
            source,
        })?;
        Rules::parse(&text).map_err(|(line, what)| RulesError::Line {
            path: path.to_owned(),
            line,
            what,
        })
    }

    /// Parse rules text; an error gives the 1-based line and what is wrong.
    pub fn parse(text: &str) -> Result<Rules, (usize, String)> {
        let mut sections: Vec<(String, Vec<Rule>)> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
                continue;
            }
            if let Some(rest) = line.strip_prefix('[') {
                let name = rest
                    .strip_suffix(']')
                    .ok_or((n, "section header without closing ']'".to_string()))?
                    .trim();
                if name.is_empty() {
                    return Err((n, "empty section name".into()));
                }
                if sections.iter().any(|(s, _)| s == name) {
                    return Err((n, format!("section [{name}] appears twice")));
                }
                sections.push((name.to_string(), Vec::new()));
                continue;
            }
            let Some((output, cond)) = line.split_once('=') else {
                return Err((n, "expected 'output = op operand'".into()));
            };
            let output = output.trim();
            if output.is_empty() {
                return Err((n, "empty output value before '='".into()));
            }
            let cond = cond.trim();
            let (op, operand) = match cond.split_once(char::is_whitespace) {
                Some((op, rest)) => (op, rest.trim()),
                None => (cond, ""),
            };
            let op = CmpOp::parse(op).ok_or_else(|| {
                (
                    n,
                    format!("unknown operator '{op}' (expected eq, ne, lt, gt, lte or gte)"),
                )
            })?;
            if operand.is_empty() {
                return Err((n, "missing operand after the operator".into()));
            }
            let operand = match op {
                CmpOp::Eq | CmpOp::Ne => Operand::Text(operand.to_string()),
                _ => Operand::Int(
                    operand
                        .parse()
                        .map_err(|_| (n, format!("operand '{operand}' is not an integer")))?,
                ),
            };
            if output.len() > fence_proto::HOSTSTATUS_VALUE_LEN - 1 {
                return Err((n, "output longer than 63 bytes cannot be sent".into()));
            }
            let Some((_, rules)) = sections.last_mut() else {
                return Err((n, "rule before the first [attribute] section".into()));
            };
            rules.push(Rule {
                output: output.to_string(),
                op,
                operand,
            });
        }
        Ok(Rules { sections })
    }

    /// The answer for `attribute` having `value`: the first matching rule's output, else the
    /// value itself.
    pub fn apply<'a>(&'a self, attribute: &str, value: &'a str) -> &'a str {
        self.sections
            .iter()
            .find(|(s, _)| s == attribute)
            .and_then(|(_, rules)| rules.iter().find(|r| r.matches(value)))
            .map_or(value, |r| r.output.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(text: &str) -> Rules {
        Rules::parse(text).unwrap()
    }

    #[test]
    fn first_match_wins_and_no_match_passes_the_value() {
        let r =
            rules("; comment\n[default_ping_set]\nred = eq 0\nyellow = lt 100\ngreen = eq 100\n");
        assert_eq!(r.apply("default_ping_set", "0"), "red");
        assert_eq!(r.apply("default_ping_set", "50"), "yellow");
        assert_eq!(r.apply("default_ping_set", "100"), "green");
        assert_eq!(r.apply("default_ping_set", "200"), "200");
        assert_eq!(r.apply("pingd", "0"), "0", "no section: raw value");
    }

    #[test]
    fn every_operator() {
        let r = rules(
            "[s]\nis-on = eq on\n[n]\nnot-off = ne off\n[lt]\nx = lt 10\n[gt]\nx = gt 10\n\
             [lte]\nx = lte 10\n[gte]\nx = gte 10\n",
        );
        assert_eq!(r.apply("s", "on"), "is-on");
        assert_eq!(r.apply("s", "onn"), "onn");
        assert_eq!(r.apply("n", "off"), "off");
        assert_eq!(r.apply("n", "up"), "not-off");
        for (sec, v, hit) in [
            ("lt", "9", true),
            ("lt", "10", false),
            ("gt", "11", true),
            ("gt", "10", false),
            ("lte", "10", true),
            ("lte", "11", false),
            ("gte", "10", true),
            ("gte", "9", false),
            ("lt", "-5", true),
            ("lt", "abc", false),
            ("gte", "", false),
        ] {
            assert_eq!(r.apply(sec, v) == "x", hit, "{sec} {v}");
        }
    }

    #[test]
    fn the_same_output_may_appear_on_several_lines() {
        let r = rules("[p]\nbad = lt 10\ngood = lt 100\nbad = gte 100\n");
        assert_eq!(r.apply("p", "5"), "bad");
        assert_eq!(r.apply("p", "50"), "good");
        assert_eq!(r.apply("p", "500"), "bad");
    }

    #[test]
    fn bad_lines_name_their_line() {
        for (text, line, what) in [
            ("[a]\nx = foo 1\n", 2, "unknown operator"),
            ("[a]\n\nx = lt ten\n", 3, "not an integer"),
            ("x = eq 1\n", 1, "before the first"),
            ("[a\n", 1, "closing"),
            ("[a]\njunk\n", 2, "expected"),
            ("[a]\nx = eq\n", 2, "missing operand"),
            ("[a]\n = eq 1\n", 2, "empty output"),
            ("[a]\n[a]\n", 2, "twice"),
        ] {
            let (l, w) = Rules::parse(text).unwrap_err();
            assert_eq!(l, line, "{text:?}");
            assert!(w.contains(what), "{text:?}: {w}");
        }
    }

    /// The example in `conf/` stays valid and means what its comments say.
    #[test]
    fn example_rules_file_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/pm-monitor-rules.ini");
        let r = Rules::load(&p).unwrap();
        assert_eq!(r.apply("pingd", "0"), "red");
        assert_eq!(r.apply("pingd", "99"), "yellow");
        assert_eq!(r.apply("pingd", "100"), "green");
        assert_eq!(r.apply("#state", "online"), "ok");
        assert_eq!(r.apply("#state", "standby"), "standby");
    }

    #[test]
    fn load_error_names_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pm-monitor.conf");
        std::fs::write(&p, "[pingd]\nok = gte 100\nbad = around 5\n").unwrap();
        let e = Rules::load(&p).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{}:3: ", p.display())), "{e}");
    }
}
