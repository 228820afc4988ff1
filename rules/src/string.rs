//! Sigma strings: literal text with `*` (any sequence) and `?` (one character) wildcards.
//!
//! Escaping, as the specification has it: `\*`, `\?` and `\\` stand for the literal character;
//! a backslash before any other character, or at the end, is a literal backslash. So
//! `C:\Windows\` is the literal `C:\Windows\`, `\\*` is a backslash followed by a wildcard.

/// One piece of a Sigma string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Part {
    /// Literal text.
    Lit(String),
    /// `*`: any sequence of characters, possibly empty.
    Any,
    /// `?`: exactly one character.
    One,
}

/// A parsed Sigma string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SigmaString {
    parts: Vec<Part>,
}

impl SigmaString {
    /// Parses a rule value with Sigma's wildcard and escaping rules.
    pub fn parse(raw: &str) -> Self {
        let mut s = SigmaString::default();
        let mut chars = raw.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.peek() {
                    Some(&n @ ('*' | '?' | '\\')) => {
                        chars.next();
                        s.push_char(n);
                    }
                    _ => s.push_char('\\'),
                },
                '*' => s.push(Part::Any),
                '?' => s.push(Part::One),
                c => s.push_char(c),
            }
        }
        s
    }

    /// A string of literal text only (no wildcard interpretation).
    pub fn literal(text: &str) -> Self {
        let mut s = SigmaString::default();
        if !text.is_empty() {
            s.parts.push(Part::Lit(text.to_owned()));
        }
        s
    }

    fn push_char(&mut self, c: char) {
        if let Some(Part::Lit(l)) = self.parts.last_mut() {
            l.push(c);
        } else {
            self.parts.push(Part::Lit(c.to_string()));
        }
    }

    fn push(&mut self, p: Part) {
        // `**` is the same as `*`.
        if p == Part::Any && self.parts.last() == Some(&Part::Any) {
            return;
        }
        match (self.parts.last_mut(), p) {
            (Some(Part::Lit(l)), Part::Lit(r)) => l.push_str(&r),
            (_, p) => self.parts.push(p),
        }
    }

    /// This string followed by `other`.
    pub fn concat(mut self, other: &SigmaString) -> Self {
        for p in &other.parts {
            self.push(p.clone());
        }
        self
    }

    /// This string followed by one more piece.
    pub fn concat_part(mut self, part: Part) -> Self {
        self.push(part);
        self
    }

    /// The pieces.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The text when there is no wildcard.
    pub fn as_literal(&self) -> Option<String> {
        match self.parts.as_slice() {
            [] => Some(String::new()),
            [Part::Lit(l)] => Some(l.clone()),
            _ => None,
        }
    }

    /// Whether any wildcard is present.
    pub fn has_wildcards(&self) -> bool {
        self.parts.iter().any(|p| !matches!(p, Part::Lit(_)))
    }

    /// `*` + self + `*` (without doubling a `*` already there).
    pub fn contains(mut self) -> Self {
        self = self.starts_with();
        self.ends_with()
    }

    /// self + `*`.
    pub fn starts_with(mut self) -> Self {
        self.push(Part::Any);
        self
    }

    /// `*` + self.
    pub fn ends_with(mut self) -> Self {
        if self.parts.first() != Some(&Part::Any) {
            self.parts.insert(0, Part::Any);
        }
        self
    }

    /// Applies `f` to every literal piece, which may turn it into several alternatives; returns
    /// every combination. Used by `windash`.
    pub fn expand_literals(&self, f: impl Fn(&str) -> Vec<String>) -> Vec<SigmaString> {
        let mut out = vec![SigmaString::default()];
        for part in &self.parts {
            match part {
                Part::Lit(l) => {
                    let alternatives = f(l);
                    out = out
                        .iter()
                        .flat_map(|prefix| {
                            alternatives.iter().map(move |a| {
                                let mut p = prefix.clone();
                                p.push(Part::Lit(a.clone()));
                                p
                            })
                        })
                        .collect();
                }
                other => {
                    for p in &mut out {
                        p.push(other.clone());
                    }
                }
            }
        }
        out
    }

    /// A regex source (no anchors, no flags) matching exactly this string.
    pub fn to_regex_body(&self) -> String {
        let mut out = String::new();
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(&regex::escape(l)),
                Part::Any => out.push_str(".*"),
                Part::One => out.push('.'),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Part {
        Part::Lit(s.into())
    }

    #[test]
    fn escaping_follows_the_specification() {
        assert_eq!(
            SigmaString::parse(r"C:\Windows\").parts(),
            &[lit(r"C:\Windows\")]
        );
        assert_eq!(SigmaString::parse(r"a\*b").parts(), &[lit("a*b")]);
        assert_eq!(SigmaString::parse(r"a\?").parts(), &[lit("a?")]);
        assert_eq!(SigmaString::parse(r"\\*").parts(), &[lit(r"\"), Part::Any]);
        assert_eq!(SigmaString::parse(r"\\\*").parts(), &[lit(r"\*")]);
        assert_eq!(SigmaString::parse(r"\\\\").parts(), &[lit(r"\\")]);
        assert_eq!(
            SigmaString::parse(r"\\127.0.0").parts(),
            &[lit(r"\127.0.0")]
        );
        assert_eq!(
            SigmaString::parse("?:\\x*.exe").parts(),
            &[Part::One, lit(":\\x"), Part::Any, lit(".exe")]
        );
    }

    #[test]
    fn modifiers_do_not_double_wildcards() {
        let s = SigmaString::parse("*foo").contains();
        assert_eq!(s.parts(), &[Part::Any, lit("foo"), Part::Any]);
        assert_eq!(SigmaString::literal("").contains().parts(), &[Part::Any]);
    }
}
