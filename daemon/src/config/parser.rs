//! The `fence_virt.conf` parser: turns the [`super::lexer`] tokens into a [`Block`] tree stored
//! the reference's way (children prepended, i.e. reverse file order), iteratively and at most
//! [`MAX_DEPTH`] levels deep, with errors naming file, line and column.

use super::lexer::{Lexer, Tok};
use super::tree::{Block, Entry, Pos, MAX_DEPTH};
use super::ConfigError;

pub(super) struct Parser<'a> {
    file: &'a str,
    lex: Lexer<'a>,
}

impl<'a> Parser<'a> {
    pub(super) fn new(file: &'a str, text: &'a str) -> Parser<'a> {
        Parser {
            file,
            lex: Lexer::new(text),
        }
    }

    fn err(&self, pos: Pos, message: String) -> ConfigError {
        ConfigError::Syntax {
            file: self.file.to_string(),
            pos,
            message,
        }
    }

    fn tok(&mut self) -> Result<(Tok, Pos), ConfigError> {
        self.lex.next().map_err(|(m, p)| self.err(p, m))
    }

    /// Iterative parse; `stack[0]` is the root, children are collected in file order and
    /// reversed when their block closes.
    pub(super) fn parse(mut self) -> Result<Block, ConfigError> {
        let mut stack: Vec<Block> = vec![Block::default()];
        loop {
            let (tok, pos) = self.tok()?;
            match tok {
                Tok::Ident(name) => {
                    let (t2, p2) = self.tok()?;
                    let too_deep = stack.len() > MAX_DEPTH;
                    let deep_err = |p: &Self| {
                        p.err(
                            pos,
                            format!("blocks nested more than {MAX_DEPTH} levels deep"),
                        )
                    };
                    match t2 {
                        Tok::Open if too_deep => return Err(deep_err(&self)),
                        Tok::Open => stack.push(Block {
                            name,
                            pos,
                            ..Block::default()
                        }),
                        Tok::Eq => {
                            let (t3, p3) = self.tok()?;
                            let value = match t3 {
                                Tok::Value(v) => v,
                                Tok::Ident(w) => {
                                    return Err(self.err(
                                        p3,
                                        format!(
                                            "expected a double-quoted value after '=' for \
                                             \"{name}\", found unquoted word {w} (write \
                                             {name} = \"{w}\";)"
                                        ),
                                    ))
                                }
                                other => {
                                    return Err(self.err(
                                        p3,
                                        format!(
                                            "expected a double-quoted value after '=' for \
                                             \"{name}\", found {other}"
                                        ),
                                    ))
                                }
                            };
                            let (t4, p4) = self.tok()?;
                            match t4 {
                                Tok::Semi => {
                                    let top = stack.last_mut().expect("root is never popped");
                                    top.entries.push(Entry {
                                        key: name,
                                        value,
                                        key_pos: pos,
                                        value_pos: p3,
                                    });
                                }
                                Tok::Open if too_deep => return Err(deep_err(&self)),
                                Tok::Open => stack.push(Block {
                                    name,
                                    value: Some(value),
                                    pos,
                                    value_pos: Some(p3),
                                    ..Block::default()
                                }),
                                other => {
                                    return Err(self.err(
                                        p4,
                                        format!(
                                            "expected ';' after {name} = \"{value}\" (line {}), \
                                             found {other}",
                                            pos.line
                                        ),
                                    ))
                                }
                            }
                        }
                        other => {
                            return Err(self.err(
                                p2,
                                format!(
                                    "expected '=' or '{{' after identifier \"{name}\", found \
                                     {other}"
                                ),
                            ))
                        }
                    }
                }
                Tok::Close => {
                    if stack.len() == 1 {
                        return Err(
                            self.err(pos, "unbalanced '}': no block is open here".to_string())
                        );
                    }
                    let mut done = stack.pop().expect("checked above");
                    done.blocks.reverse();
                    done.entries.reverse();
                    stack
                        .last_mut()
                        .expect("root is never popped")
                        .blocks
                        .push(done);
                }
                Tok::Eof => {
                    if stack.len() > 1 {
                        let open = stack.last().expect("non-empty");
                        return Err(self.err(
                            pos,
                            format!(
                                "unexpected end of file: block \"{}\" opened at line {}, column \
                                 {} is not closed (expected '}}')",
                                open.name, open.pos.line, open.pos.column
                            ),
                        ));
                    }
                    let mut root = stack.pop().expect("root");
                    if root.is_empty() {
                        return Err(self.err(
                            pos,
                            "empty configuration: the file holds no blocks or settings \
                             (fence_virtd needs at least fence_virtd { listener = \"…\"; \
                             backend = \"…\"; })"
                                .to_string(),
                        ));
                    }
                    root.blocks.reverse();
                    root.entries.reverse();
                    return Ok(root);
                }
                other => {
                    return Err(self.err(
                        pos,
                        format!("expected an identifier or '}}', found {other}"),
                    ))
                }
            }
        }
    }
}
