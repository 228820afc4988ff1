//! The condition language: `and`, `or`, `not`, parentheses, `1 of` / `all of` a pattern or
//! `them`. Precedence from loosest to tightest: `or`, `and`, `not`, `x of`, parentheses.

use crate::{Error, Result};

/// Which search identifiers a quantifier ranges over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pattern {
    /// Every identifier that does not start with `_`.
    Them,
    /// Identifiers matching a `*` wildcard pattern (other characters literal).
    Glob(String),
}

impl Pattern {
    /// Whether `ident` is in range.
    pub fn matches(&self, ident: &str) -> bool {
        match self {
            Pattern::Them => !ident.starts_with('_'),
            Pattern::Glob(p) => !ident.starts_with('_') && glob(p, ident),
        }
    }
}

fn glob(pattern: &str, s: &str) -> bool {
    let mut pieces = pattern.split('*');
    let first = pieces.next().unwrap_or_default();
    let Some(mut rest) = s.strip_prefix(first) else {
        return false;
    };
    let pieces: Vec<&str> = pieces.collect();
    let Some((last, middle)) = pieces.split_last() else {
        return rest.is_empty();
    };
    for piece in middle {
        match rest.find(piece) {
            Some(i) => rest = &rest[i + piece.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// A parsed condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cond {
    /// A search identifier.
    Ident(String),
    /// At least one of.
    OneOf(Pattern),
    /// All of.
    AllOf(Pattern),
    /// Negation.
    Not(Box<Cond>),
    /// Conjunction.
    And(Vec<Cond>),
    /// Disjunction.
    Or(Vec<Cond>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Open,
    Close,
    Word(String),
}

fn tokens(text: &str) -> Result<Vec<Token>> {
    let mut out = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut Vec<Token>| {
        if !word.is_empty() {
            out.push(Token::Word(std::mem::take(word)));
        }
    };
    for c in text.chars() {
        match c {
            '(' => {
                flush(&mut word, &mut out);
                out.push(Token::Open);
            }
            ')' => {
                flush(&mut word, &mut out);
                out.push(Token::Close);
            }
            c if c.is_whitespace() => flush(&mut word, &mut out),
            '|' if word.is_empty() => {
                return Err(Error::Unsupported(
                    "aggregation ('| count() …') in a condition: use a correlation rule".into(),
                ));
            }
            c => word.push(c),
        }
    }
    flush(&mut word, &mut out);
    Ok(out)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    text: String,
}

impl Parser {
    fn peek_word(&self) -> Option<&str> {
        match self.tokens.get(self.pos) {
            Some(Token::Word(w)) => Some(w.as_str()),
            _ => None,
        }
    }

    fn err(&self, what: &str) -> Error {
        Error::invalid(format!(
            "condition '{}': {what} at token {}",
            self.text,
            self.pos + 1
        ))
    }

    fn or(&mut self) -> Result<Cond> {
        let mut items = vec![self.and()?];
        while self.peek_word() == Some("or") {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Cond::Or(items)
        })
    }

    fn and(&mut self) -> Result<Cond> {
        let mut items = vec![self.not()?];
        while self.peek_word() == Some("and") {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Cond::And(items)
        })
    }

    fn not(&mut self) -> Result<Cond> {
        if self.peek_word() == Some("not") {
            self.pos += 1;
            return Ok(Cond::Not(Box::new(self.not()?)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Cond> {
        match self.tokens.get(self.pos).cloned() {
            Some(Token::Open) => {
                self.pos += 1;
                let inner = self.or()?;
                if self.tokens.get(self.pos) != Some(&Token::Close) {
                    return Err(self.err("missing ')'"));
                }
                self.pos += 1;
                Ok(inner)
            }
            Some(Token::Word(w)) if matches!(w.as_str(), "1" | "any" | "all") => {
                if let Some(Token::Word(of)) = self.tokens.get(self.pos + 1)
                    && of == "of"
                {
                    let target = match self.tokens.get(self.pos + 2) {
                        Some(Token::Word(t)) => t.clone(),
                        _ => return Err(self.err("a pattern or 'them' must follow 'of'")),
                    };
                    self.pos += 3;
                    let pattern = if target == "them" {
                        Pattern::Them
                    } else {
                        Pattern::Glob(target)
                    };
                    Ok(if w == "all" {
                        Cond::AllOf(pattern)
                    } else {
                        Cond::OneOf(pattern)
                    })
                } else {
                    self.pos += 1;
                    Ok(Cond::Ident(w))
                }
            }
            Some(Token::Word(w)) if matches!(w.as_str(), "and" | "or" | "of") => {
                Err(self.err(&format!("unexpected '{w}'")))
            }
            Some(Token::Word(w)) if w.chars().all(|c| c.is_ascii_digit()) => Err(self.err(
                &format!("'{w} of' is not supported: only '1 of' and 'all of'"),
            )),
            Some(Token::Word(w)) => {
                self.pos += 1;
                Ok(Cond::Ident(w))
            }
            Some(Token::Close) => Err(self.err("unexpected ')'")),
            None => Err(self.err("unexpected end")),
        }
    }
}

/// Parses a condition string.
pub fn parse(text: &str) -> Result<Cond> {
    let mut p = Parser {
        tokens: tokens(text)?,
        pos: 0,
        text: text.to_owned(),
    };
    let cond = p.or()?;
    if p.pos != p.tokens.len() {
        return Err(p.err("unexpected trailing input"));
    }
    Ok(cond)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> Cond {
        Cond::Ident(s.into())
    }

    #[test]
    fn precedence_is_not_then_and_then_or() {
        assert_eq!(
            parse("a or b and not c").expect("valid"),
            Cond::Or(vec![
                id("a"),
                Cond::And(vec![id("b"), Cond::Not(Box::new(id("c")))])
            ])
        );
        assert_eq!(
            parse("(a or b) and c").expect("valid"),
            Cond::And(vec![Cond::Or(vec![id("a"), id("b")]), id("c")])
        );
    }

    #[test]
    fn quantifiers() {
        assert_eq!(
            parse("1 of selection* and not all of them").expect("valid"),
            Cond::And(vec![
                Cond::OneOf(Pattern::Glob("selection*".into())),
                Cond::Not(Box::new(Cond::AllOf(Pattern::Them)))
            ])
        );
        assert!(Pattern::Glob("sel*".into()).matches("selection_img"));
        assert!(Pattern::Glob("sel*".into()).matches("select_tree_execution|endswith"));
        assert!(!Pattern::Glob("sel*".into()).matches("filter"));
        assert!(!Pattern::Them.matches("_internal"));
        assert!(Pattern::Glob("*_main_*".into()).matches("filter_main_mdadm.conf"));
    }

    #[test]
    fn errors_are_precise() {
        assert!(parse("a and").is_err());
        assert!(
            parse("(a or b")
                .expect_err("unbalanced")
                .to_string()
                .contains("missing ')'")
        );
        assert!(parse("selection | count() > 5").is_err());
        assert!(
            parse("2 of them")
                .expect_err("n of")
                .to_string()
                .contains("'2 of'")
        );
    }
}
