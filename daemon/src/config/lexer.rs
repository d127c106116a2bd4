//! The `fence_virt.conf` lexer: identifiers, double-quoted values, braces, `=`, `;` and `#`
//! comments, with 1-based line and column positions. Compatible with the reference scanner
//! (`agents/virt/config/config.l`) except where [`super::tree`] says otherwise: an unmatched
//! `"` and an empty value are errors, and a carriage return is a blank.

use std::fmt;

use super::tree::Pos;

/// Characters that end an identifier (as in the reference lexer).
pub(super) fn is_delim(c: char) -> bool {
    is_space(c) || matches!(c, '{' | '}' | ';' | '=' | '"')
}

pub(super) fn is_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

pub(super) fn valid_ident(s: &str) -> bool {
    !s.is_empty() && !s.starts_with('#') && !s.chars().any(is_delim)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Tok {
    Ident(String),
    Value(String),
    Open,
    Close,
    Semi,
    Eq,
    Eof,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "identifier \"{s}\""),
            Tok::Value(s) => write!(f, "value \"{s}\""),
            Tok::Open => f.write_str("'{'"),
            Tok::Close => f.write_str("'}'"),
            Tok::Semi => f.write_str("';'"),
            Tok::Eq => f.write_str("'='"),
            Tok::Eof => f.write_str("end of file"),
        }
    }
}

pub(super) struct Lexer<'a> {
    chars: std::iter::Peekable<std::str::Chars<'a>>,
    pos: Pos,
}

impl<'a> Lexer<'a> {
    pub(super) fn new(text: &'a str) -> Lexer<'a> {
        Lexer {
            chars: text.chars().peekable(),
            pos: Pos { line: 1, column: 1 },
        }
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.next()?;
        if c == '\n' {
            self.pos.line += 1;
            self.pos.column = 1;
        } else {
            self.pos.column += 1;
        }
        Some(c)
    }

    /// The next token and where it starts, or a message and position for a lexical error.
    pub(super) fn next(&mut self) -> Result<(Tok, Pos), (String, Pos)> {
        loop {
            match self.chars.peek() {
                Some(&c) if is_space(c) => {
                    self.bump();
                }
                // `#` at the start of a token comments out the rest of the line; inside an
                // identifier it is an ordinary character (flex longest-match behaviour).
                Some('#') => {
                    while self.chars.peek().is_some_and(|&c| c != '\n') {
                        self.bump();
                    }
                }
                _ => break,
            }
        }
        let start = self.pos;
        let Some(c) = self.bump() else {
            return Ok((Tok::Eof, start));
        };
        let tok =
            match c {
                '{' => Tok::Open,
                '}' => Tok::Close,
                ';' => Tok::Semi,
                '=' => Tok::Eq,
                '"' => {
                    let mut v = String::new();
                    loop {
                        match self.bump() {
                            Some('"') => break,
                            Some(c) => v.push(c),
                            None => return Err((
                                "unterminated value: no closing '\"' before the end of the file"
                                    .to_string(),
                                start,
                            )),
                        }
                    }
                    if v.is_empty() {
                        return Err((
                        "empty value \"\" is not allowed: a value needs at least one character \
                         (remove the line to use the default)"
                            .to_string(),
                        start,
                    ));
                    }
                    Tok::Value(v)
                }
                c => {
                    let mut id = String::from(c);
                    while let Some(&c) = self.chars.peek() {
                        if is_delim(c) {
                            break;
                        }
                        id.push(c);
                        self.bump();
                    }
                    Tok::Ident(id)
                }
            };
        Ok((tok, start))
    }
}
