//! From parsed rules to boolean expressions over **atoms**: one test of one field
//! (`CommandLine` contains `-enc`, `DestinationIp` in `10.0.0.0/8`, …). Atoms are shared by
//! every rule of a rule set, so an engine evaluates each distinct test once.

use std::collections::HashMap;
use std::net::IpAddr;

use base64::Engine as _;
use ipnet::IpNet;
use regex::Regex;

use crate::ast::{Detection, Item, RawValue, Search};
use crate::condition::{Cond, Pattern};
use crate::string::{Part, SigmaString};
use crate::{Error, Result};

/// How a literal needle must sit in a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StrOp {
    /// The whole value.
    Eq,
    /// Anywhere.
    Contains,
    /// At the start.
    StartsWith,
    /// At the end.
    EndsWith,
}

/// Numeric comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CmpOp {
    /// `lt`.
    Lt,
    /// `lte`.
    Lte,
    /// `gt`.
    Gt,
    /// `gte`.
    Gte,
}

/// A part of a timestamp, for the time modifiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimePart {
    /// 0–59.
    Minute,
    /// 0–23.
    Hour,
    /// 1–31.
    Day,
    /// ISO week, 1–53.
    Week,
    /// 1–12.
    Month,
    /// The year.
    Year,
}

/// What an atom tests.
#[derive(Debug, Clone)]
pub enum Test {
    /// A literal needle. Unless `cased`, the needle is stored lowercased and matching is
    /// case-insensitive (Unicode lowercase of both sides).
    Str {
        /// Position.
        op: StrOp,
        /// The text.
        needle: String,
        /// Case-sensitive.
        cased: bool,
    },
    /// A pattern with inner wildcards; `regex` is its anchored translation, matched against the
    /// value lowercased unless `cased` (the pattern's text is lowercased likewise); `literal` is
    /// its longest literal piece, a necessary substring used as prefilter.
    Glob {
        /// The anchored regex.
        regex: Regex,
        /// The same pattern matched piece by piece, when it has no `?`.
        stars: Option<Stars>,
        /// Longest literal piece.
        literal: String,
        /// Case-sensitive.
        cased: bool,
    },
    /// A regular expression (unanchored search).
    Regex(Regex),
    /// The value is an IP address inside the network.
    Cidr(IpNet),
    /// The value is a number and compares so.
    Cmp(CmpOp, f64),
    /// The field is present (`true`) or absent (`false`).
    Exists(bool),
    /// The field is absent or empty.
    Null,
    /// The value relates to the value of another field.
    FieldRef {
        /// The other field.
        other: String,
        /// How.
        op: StrOp,
        /// Case-sensitive.
        cased: bool,
    },
    /// A part of the value read as a timestamp equals a number.
    Time(TimePart, i64),
}

impl Test {
    /// A key identifying equal tests, for sharing atoms.
    fn key(&self) -> String {
        match self {
            Test::Str { op, needle, cased } => format!("s{op:?}{cased}:{needle}"),
            Test::Glob { regex, .. } => format!("g:{}", regex.as_str()),
            Test::Regex(r) => format!("r:{}", r.as_str()),
            Test::Cidr(n) => format!("c:{n}"),
            Test::Cmp(op, v) => format!("n{op:?}:{v}"),
            Test::Exists(b) => format!("e:{b}"),
            Test::Null => "null".into(),
            Test::FieldRef { other, op, cased } => format!("f{op:?}{cased}:{other}"),
            Test::Time(p, v) => format!("t{p:?}:{v}"),
        }
    }
}

/// One test of one field; `field == None` tests every field (keyword search).
#[derive(Debug, Clone)]
pub struct Atom {
    /// The Sigma field name, or `None` for keywords.
    pub field: Option<String>,
    /// The test.
    pub test: Test,
}

/// A boolean expression over atoms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    /// Always true.
    True,
    /// Always false.
    False,
    /// An atom, by index into the [`AtomTable`].
    Atom(usize),
    /// Negation.
    Not(Box<Expr>),
    /// Conjunction.
    And(Vec<Expr>),
    /// Disjunction.
    Or(Vec<Expr>),
}

impl Expr {
    fn and(items: Vec<Expr>) -> Expr {
        let mut flat = Vec::with_capacity(items.len());
        for e in items {
            match e {
                Expr::True => {}
                Expr::False => return Expr::False,
                Expr::And(inner) => flat.extend(inner),
                e => flat.push(e),
            }
        }
        match flat.len() {
            0 => Expr::True,
            1 => flat.remove(0),
            _ => Expr::And(flat),
        }
    }

    fn or(items: Vec<Expr>) -> Expr {
        let mut flat = Vec::with_capacity(items.len());
        for e in items {
            match e {
                Expr::False => {}
                Expr::True => return Expr::True,
                Expr::Or(inner) => flat.extend(inner),
                e => flat.push(e),
            }
        }
        match flat.len() {
            0 => Expr::False,
            1 => flat.remove(0),
            _ => Expr::Or(flat),
        }
    }

    fn not(e: Expr) -> Expr {
        match e {
            Expr::True => Expr::False,
            Expr::False => Expr::True,
            Expr::Not(inner) => *inner,
            e => Expr::Not(Box::new(e)),
        }
    }

    /// Conjunction of two expressions.
    pub fn and_with(self, other: Expr) -> Expr {
        Expr::and(vec![self, other])
    }

    /// Every atom index used.
    pub fn atoms(&self, out: &mut Vec<usize>) {
        match self {
            Expr::Atom(a) => out.push(*a),
            Expr::Not(e) => e.atoms(out),
            Expr::And(v) | Expr::Or(v) => v.iter().for_each(|e| e.atoms(out)),
            Expr::True | Expr::False => {}
        }
    }
}

/// The atoms of a rule set, deduplicated.
#[derive(Debug, Default)]
pub struct AtomTable {
    atoms: Vec<Atom>,
    index: HashMap<(Option<String>, String), usize>,
}

impl AtomTable {
    /// Adds an atom (or finds the equal one) and returns its index.
    pub fn intern(&mut self, field: Option<&str>, test: Test) -> usize {
        let key = (field.map(str::to_owned), test.key());
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let i = self.atoms.len();
        self.atoms.push(Atom {
            field: field.map(str::to_owned),
            test,
        });
        self.index.insert(key, i);
        i
    }

    /// All atoms.
    pub fn atoms(&self) -> &[Atom] {
        &self.atoms
    }
}

/// Values for `expand` placeholders (`%name%` → values).
pub type Placeholders = HashMap<String, Vec<String>>;

/// A value on its way through the modifier chain.
#[derive(Debug, Clone)]
enum Val {
    Text(SigmaString),
    Bytes(Vec<u8>),
}

fn value_text(v: &RawValue) -> Option<String> {
    match v {
        RawValue::Str(s) => Some(s.clone()),
        RawValue::Int(i) => Some(i.to_string()),
        RawValue::Float(f) => Some(f.to_string()),
        RawValue::Bool(b) => Some(b.to_string()),
        RawValue::Null => None,
    }
}

const WINDASH: [char; 5] = ['-', '/', '\u{2013}', '\u{2014}', '\u{2015}'];

/// Positions of `-` or `/` that start a word-like parameter: not preceded by a word character,
/// followed by one (`\B[-/]\b`).
fn windash_variants(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let positions: Vec<usize> = (0..chars.len())
        .filter(|&i| {
            matches!(chars[i], '-' | '/')
                && !(i > 0 && word(chars[i - 1]))
                && chars.get(i + 1).is_some_and(|&c| word(c))
        })
        .collect();
    let mut out = vec![chars.clone()];
    for &p in &positions {
        out = out
            .into_iter()
            .flat_map(|v| {
                WINDASH.iter().map(move |&d| {
                    let mut v = v.clone();
                    v[p] = d;
                    v
                })
            })
            .collect();
    }
    out.into_iter().map(|v| v.into_iter().collect()).collect()
}

fn base64offset(data: &[u8]) -> Vec<String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let start = [0usize, 2, 3];
    let end = [0usize, 3, 2];
    (0..3)
        .map(|i| {
            let mut shifted = vec![b' '; i];
            shifted.extend_from_slice(data);
            let enc = engine.encode(&shifted);
            let cut = end[(data.len() + i) % 3];
            let stop = enc.len().saturating_sub(cut);
            enc.get(start[i]..stop).unwrap_or_default().to_owned()
        })
        .collect()
}

fn utf16(text: &str, big_endian: bool, bom: bool) -> Vec<u8> {
    let mut out = Vec::new();
    if bom {
        out.extend_from_slice(&[0xff, 0xfe]);
    }
    for unit in text.encode_utf16() {
        let b = if big_endian && !bom {
            unit.to_be_bytes()
        } else {
            unit.to_le_bytes()
        };
        out.extend_from_slice(&b);
    }
    out
}

fn lower(s: &str) -> String {
    s.to_lowercase()
}

/// Turns a final Sigma string into a test.
fn string_test(s: &SigmaString, cased: bool) -> Result<Test> {
    let fold = |t: &str| if cased { t.to_owned() } else { lower(t) };
    let parts = s.parts();
    let str_test = |op, t: &str| Test::Str {
        op,
        needle: fold(t),
        cased,
    };
    Ok(match parts {
        [] => str_test(StrOp::Eq, ""),
        [Part::Lit(l)] => str_test(StrOp::Eq, l),
        [Part::Any] => str_test(StrOp::Contains, ""),
        [Part::Any, Part::Lit(l), Part::Any] => str_test(StrOp::Contains, l),
        [Part::Lit(l), Part::Any] => str_test(StrOp::StartsWith, l),
        [Part::Any, Part::Lit(l)] => str_test(StrOp::EndsWith, l),
        _ => {
            // The pattern is matched against the value lowercased (unless cased), so the
            // regex itself is case-sensitive and its literal pieces are exact prefilters.
            let folded = if cased {
                s.clone()
            } else {
                let mut f = SigmaString::default();
                for p in parts {
                    f = match p {
                        Part::Lit(l) => f.concat(&SigmaString::literal(&lower(l))),
                        other => f.concat_part(other.clone()),
                    };
                }
                f
            };
            let source = format!("(?s)^{}$", folded.to_regex_body());
            let regex = Regex::new(&source)
                .map_err(|e| Error::invalid(format!("wildcard pattern: {e}")))?;
            let literal = folded
                .parts()
                .iter()
                .filter_map(|p| match p {
                    Part::Lit(l) => Some(l.as_str()),
                    _ => None,
                })
                .max_by_key(|l| l.len())
                .unwrap_or_default()
                .to_owned();
            Test::Glob {
                regex,
                stars: Stars::new(folded.parts()),
                literal,
                cased,
            }
        }
    })
}

/// A wildcard pattern of literal pieces and `*` only, matched without a regular expression:
/// the first piece must start the text unless the pattern starts with `*`, the last must end it
/// unless the pattern ends with `*`, and the pieces between are found in order, each at its
/// first occurrence after the previous one (a later occurrence would only leave less room for
/// the rest). Pieces are whole UTF-8 strings, so they can only be found at character
/// boundaries: byte positions give the answer of the anchored `(?s)^…$` translation.
#[derive(Debug, Clone)]
pub struct Stars {
    head: Option<Vec<u8>>,
    middle: Vec<memchr::memmem::Finder<'static>>,
    tail: Option<Vec<u8>>,
}

impl Stars {
    /// The matcher of `parts`, or `None` when they hold a `?` (one character, not one byte) or
    /// no `*` at all.
    pub fn new(parts: &[Part]) -> Option<Stars> {
        if !parts.contains(&Part::Any) || parts.contains(&Part::One) {
            return None;
        }
        let mut pieces: std::collections::VecDeque<&[u8]> = parts
            .iter()
            .filter_map(|p| match p {
                Part::Lit(l) => Some(l.as_bytes()),
                Part::Any | Part::One => None,
            })
            .collect();
        let head = match parts.first() {
            Some(Part::Lit(_)) => pieces.pop_front().map(<[u8]>::to_vec),
            _ => None,
        };
        let tail = match parts.last() {
            Some(Part::Lit(_)) => pieces.pop_back().map(<[u8]>::to_vec),
            _ => None,
        };
        let middle = pieces
            .into_iter()
            .filter(|p| !p.is_empty())
            .map(|p| memchr::memmem::Finder::new(p).into_owned())
            .collect();
        Some(Stars { head, middle, tail })
    }

    /// Whether the whole of `text` matches the pattern.
    pub fn matches(&self, text: &[u8]) -> bool {
        let mut from = 0;
        let mut to = text.len();
        if let Some(head) = &self.head {
            if !text.starts_with(head) {
                return false;
            }
            from = head.len();
        }
        if let Some(tail) = &self.tail {
            if to - from < tail.len() || !text.ends_with(tail) {
                return false;
            }
            to -= tail.len();
        }
        for piece in &self.middle {
            match piece.find(&text[from..to]) {
                Some(i) => from += i + piece.needle().len(),
                None => return false,
            }
        }
        true
    }
}

/// Compiles one detection item into an expression.
fn item(item: &Item, atoms: &mut AtomTable, placeholders: &Placeholders) -> Result<Expr> {
    let field = item.field.as_deref();
    let name = field.unwrap_or("keywords");
    let bad = |m: String| Error::invalid(format!("field '{name}': {m}"));
    let mut mods: Vec<&str> = item.modifiers.iter().map(String::as_str).collect();
    let mut all = false;
    let mut cased = false;
    let mut negate = false;
    mods.retain(|m| match *m {
        "all" => {
            all = true;
            false
        }
        "cased" => {
            cased = true;
            false
        }
        "neq" => {
            negate = true;
            false
        }
        _ => true,
    });
    if all && item.values.len() == 1 && field.is_some() {
        // The specification forbids `all` on one value; it changes nothing, so accept it.
        all = false;
    }
    let combine = |exprs: Vec<Expr>| {
        if all {
            Expr::and(exprs)
        } else {
            Expr::or(exprs)
        }
    };
    let finish = |e: Expr| if negate { Expr::not(e) } else { e };
    let mut intern = |test: Test| Expr::Atom(atoms.intern(field, test));

    // Modifiers that replace string matching altogether.
    match mods.first().copied() {
        Some("exists") => {
            let [RawValue::Bool(b)] = item.values.as_slice() else {
                return Err(bad("'exists' needs a single true or false".into()));
            };
            return Ok(finish(intern(Test::Exists(*b))));
        }
        Some("re") => {
            let mut flags = String::new();
            for m in &mods[1..] {
                match *m {
                    "i" | "ignorecase" => flags.push('i'),
                    "m" | "multiline" => flags.push('m'),
                    "s" | "dotall" => flags.push('s'),
                    other => return Err(bad(format!("modifier '{other}' cannot follow 're'"))),
                }
            }
            let mut exprs = Vec::new();
            for v in &item.values {
                let text = value_text(v).ok_or_else(|| bad("null regular expression".into()))?;
                let source = if flags.is_empty() {
                    text.clone()
                } else {
                    format!("(?{flags}){text}")
                };
                let regex = regex::RegexBuilder::new(&source)
                    .size_limit(64 << 20)
                    .build()
                    .map_err(|e| bad(format!("regular expression '{text}': {e}")))?;
                exprs.push(intern(Test::Regex(regex)));
            }
            return Ok(finish(combine(exprs)));
        }
        Some("cidr") => {
            if mods.len() > 1 {
                return Err(bad("'cidr' takes no further modifiers".into()));
            }
            let mut exprs = Vec::new();
            for v in &item.values {
                let text = value_text(v).unwrap_or_default();
                let net: IpNet = text
                    .parse()
                    .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| bad(format!("'{text}' is not a network")))?;
                exprs.push(intern(Test::Cidr(net)));
            }
            return Ok(finish(combine(exprs)));
        }
        Some(op @ ("lt" | "lte" | "gt" | "gte")) => {
            let op = match op {
                "lt" => CmpOp::Lt,
                "lte" => CmpOp::Lte,
                "gt" => CmpOp::Gt,
                _ => CmpOp::Gte,
            };
            let mut exprs = Vec::new();
            for v in &item.values {
                let n = match v {
                    RawValue::Int(i) => *i as f64,
                    RawValue::Float(f) => *f,
                    RawValue::Str(s) => s
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("'{s}' is not a number")))?,
                    _ => return Err(bad("comparison needs a number".into())),
                };
                exprs.push(intern(Test::Cmp(op, n)));
            }
            return Ok(finish(combine(exprs)));
        }
        Some(part @ ("minute" | "hour" | "day" | "week" | "month" | "year")) => {
            let part = match part {
                "minute" => TimePart::Minute,
                "hour" => TimePart::Hour,
                "day" => TimePart::Day,
                "week" => TimePart::Week,
                "month" => TimePart::Month,
                _ => TimePart::Year,
            };
            let mut exprs = Vec::new();
            for v in &item.values {
                let n = match v {
                    RawValue::Int(i) => *i,
                    RawValue::Str(s) => s
                        .trim()
                        .parse()
                        .map_err(|_| bad(format!("'{s}' is not a number")))?,
                    _ => return Err(bad("a time part needs a number".into())),
                };
                exprs.push(intern(Test::Time(part, n)));
            }
            return Ok(finish(combine(exprs)));
        }
        _ => {}
    }
    if let Some(pos) = mods.iter().position(|m| *m == "fieldref") {
        let op = match mods
            .iter()
            .find(|m| matches!(**m, "contains" | "startswith" | "endswith"))
        {
            Some(&"contains") => StrOp::Contains,
            Some(&"startswith") => StrOp::StartsWith,
            Some(&"endswith") => StrOp::EndsWith,
            _ => StrOp::Eq,
        };
        if let Some(other) = mods
            .iter()
            .enumerate()
            .find(|(i, m)| *i != pos && !matches!(**m, "contains" | "startswith" | "endswith"))
        {
            return Err(bad(format!(
                "modifier '{}' cannot be combined with 'fieldref'",
                other.1
            )));
        }
        let mut exprs = Vec::new();
        for v in &item.values {
            let other = value_text(v).ok_or_else(|| bad("fieldref needs a field name".into()))?;
            exprs.push(intern(Test::FieldRef { other, op, cased }));
        }
        return Ok(finish(combine(exprs)));
    }

    // String matching with transformations, applied in the order written.
    let mut exprs = Vec::new();
    for v in &item.values {
        let Some(text) = value_text(v) else {
            if !mods.is_empty() {
                return Err(bad("null cannot take modifiers".into()));
            }
            exprs.push(intern(Test::Null));
            continue;
        };
        let mut texts = vec![text];
        if mods.contains(&"expand") {
            texts = expand(&texts[0], placeholders).map_err(&bad)?;
        }
        let mut vals: Vec<Val> = texts
            .iter()
            .map(|t| {
                if matches!(v, RawValue::Str(_)) {
                    Val::Text(SigmaString::parse(t))
                } else {
                    Val::Text(SigmaString::literal(t))
                }
            })
            .collect();
        for m in &mods {
            vals = apply(m, vals).map_err(&bad)?;
        }
        let alternatives = vals
            .into_iter()
            .map(|v| match v {
                Val::Text(s) => string_test(&s, cased).map(&mut intern),
                Val::Bytes(_) => Err(bad(
                    "an encoded value needs 'base64' or 'base64offset' after it".into(),
                )),
            })
            .collect::<Result<Vec<_>>>()?;
        exprs.push(Expr::or(alternatives));
    }
    if field.is_none() && !all {
        return Ok(finish(Expr::or(exprs)));
    }
    Ok(finish(combine(exprs)))
}

fn expand(text: &str, placeholders: &Placeholders) -> std::result::Result<Vec<String>, String> {
    let re = Regex::new(r"%(\w+)%").map_err(|e| e.to_string())?;
    let mut out = vec![text.to_owned()];
    for cap in re.captures_iter(text) {
        let (whole, name) = (&cap[0], &cap[1]);
        let values = placeholders
            .get(name)
            .ok_or_else(|| format!("placeholder %{name}% is not configured"))?;
        out = out
            .iter()
            .flat_map(|o| values.iter().map(move |v| o.replacen(whole, v, 1)))
            .collect();
    }
    Ok(out)
}

fn literal_of(v: &Val, m: &str) -> std::result::Result<String, String> {
    match v {
        Val::Text(s) => s
            .as_literal()
            .ok_or_else(|| format!("'{m}' cannot encode a value with wildcards")),
        Val::Bytes(_) => Err(format!("'{m}' cannot follow another encoding")),
    }
}

fn apply(m: &str, vals: Vec<Val>) -> std::result::Result<Vec<Val>, String> {
    let engine = base64::engine::general_purpose::STANDARD;
    let bytes_of = |v: &Val| -> std::result::Result<Vec<u8>, String> {
        match v {
            Val::Bytes(b) => Ok(b.clone()),
            Val::Text(s) => s
                .as_literal()
                .map(String::into_bytes)
                .ok_or_else(|| format!("'{m}' cannot encode a value with wildcards")),
        }
    };
    let text_map = |f: fn(SigmaString) -> SigmaString| {
        vals.iter()
            .map(|v| match v {
                Val::Text(s) => Ok(Val::Text(f(s.clone()))),
                Val::Bytes(_) => Err(format!("'{m}' must come after the encoding modifiers")),
            })
            .collect()
    };
    match m {
        "contains" => text_map(SigmaString::contains),
        "startswith" => text_map(SigmaString::starts_with),
        "endswith" => text_map(SigmaString::ends_with),
        "expand" => Ok(vals),
        "windash" => {
            let mut out = Vec::new();
            for v in &vals {
                let Val::Text(s) = v else {
                    return Err("'windash' cannot follow an encoding".into());
                };
                let variants = s.expand_literals(windash_variants);
                if variants.len() > 5usize.pow(5) {
                    return Err("'windash' on more than 5 dashes".into());
                }
                out.extend(variants.into_iter().map(Val::Text));
            }
            Ok(out)
        }
        "wide" | "utf16le" | "utf16be" | "utf16" => vals
            .iter()
            .map(|v| {
                let text = literal_of(v, m)?;
                Ok(Val::Bytes(match m {
                    "utf16be" => utf16(&text, true, false),
                    "utf16" => utf16(&text, false, true),
                    _ => utf16(&text, false, false),
                }))
            })
            .collect(),
        "base64" => vals
            .iter()
            .map(|v| {
                Ok(Val::Text(SigmaString::literal(
                    &engine.encode(bytes_of(v)?),
                )))
            })
            .collect(),
        "base64offset" => {
            let mut out = Vec::new();
            for v in &vals {
                out.extend(
                    base64offset(&bytes_of(v)?)
                        .into_iter()
                        .map(|s| Val::Text(SigmaString::literal(&s))),
                );
            }
            Ok(out)
        }
        other => Err(format!("unknown modifier '{other}'")),
    }
}

/// Compiles a search.
fn search(s: &Search, atoms: &mut AtomTable, placeholders: &Placeholders) -> Result<Expr> {
    match s {
        Search::Keywords(values) => item(
            &Item {
                field: None,
                modifiers: vec!["contains".into()],
                values: values.clone(),
            },
            atoms,
            placeholders,
        ),
        Search::Maps(maps) => {
            let mut ors = Vec::with_capacity(maps.len());
            for map in maps {
                let mut ands = Vec::with_capacity(map.len());
                for it in map {
                    let it = if it.field.is_none() && !it.modifiers.iter().any(|m| m == "contains")
                    {
                        // The field-less `'|all'` form: keywords, every one required.
                        let mut k = it.clone();
                        k.modifiers.insert(0, "contains".into());
                        k
                    } else {
                        it.clone()
                    };
                    ands.push(item(&it, atoms, placeholders)?);
                }
                ors.push(Expr::and(ands));
            }
            Ok(Expr::or(ors))
        }
    }
}

/// Compiles a detection into one expression, resolving the condition's identifiers.
pub fn detection(
    d: &Detection,
    atoms: &mut AtomTable,
    placeholders: &Placeholders,
) -> Result<Expr> {
    let mut compiled: Vec<(String, Expr)> = Vec::with_capacity(d.searches.len());
    for (name, s) in &d.searches {
        compiled.push((name.clone(), search(s, atoms, placeholders)?));
    }
    let mut alternatives = Vec::new();
    for cond in &d.conditions {
        alternatives.push(resolve(cond, &compiled)?);
    }
    Ok(Expr::or(alternatives))
}

fn resolve(cond: &Cond, searches: &[(String, Expr)]) -> Result<Expr> {
    let select = |p: &Pattern| -> Result<Vec<Expr>> {
        let picked: Vec<Expr> = searches
            .iter()
            .filter(|(n, _)| p.matches(n))
            .map(|(_, e)| e.clone())
            .collect();
        if picked.is_empty() {
            let shown = match p {
                Pattern::Them => "them".to_owned(),
                Pattern::Glob(g) => g.clone(),
            };
            return Err(Error::invalid(format!(
                "condition: '{shown}' matches no search identifier"
            )));
        }
        Ok(picked)
    };
    Ok(match cond {
        Cond::Ident(name) => searches
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, e)| e.clone())
            .ok_or_else(|| {
                Error::invalid(format!("condition names '{name}', which is not defined"))
            })?,
        Cond::OneOf(p) => Expr::or(select(p)?),
        Cond::AllOf(p) => Expr::and(select(p)?),
        Cond::Not(c) => Expr::not(resolve(c, searches)?),
        Cond::And(cs) => Expr::and(
            cs.iter()
                .map(|c| resolve(c, searches))
                .collect::<Result<_>>()?,
        ),
        Cond::Or(cs) => Expr::or(
            cs.iter()
                .map(|c| resolve(c, searches))
                .collect::<Result<_>>()?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Patterns of a few pieces over a small alphabet (so that pieces overlap, repeat and
        /// sit at both ends) give the same answer piece by piece as their anchored regex, the
        /// translation the reference matcher uses.
        #[test]
        fn stars_agree_with_the_anchored_regex(
            pattern in prop::collection::vec(prop::sample::select(&["a", "b", "\\", "*", "é"][..]), 0..8),
            text in prop::collection::vec(prop::sample::select(&["a", "b", "\\", "é"][..]), 0..12),
        ) {
            let (pattern, text) = (pattern.concat(), text.concat());
            let s = SigmaString::parse(&pattern);
            if let Some(stars) = Stars::new(s.parts()) {
                let regex = Regex::new(&format!("(?s)^{}$", s.to_regex_body()))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(stars.matches(text.as_bytes()), regex.is_match(&text));
            }
        }
    }

    #[test]
    fn stars_need_a_star_and_no_question_mark() {
        assert!(Stars::new(SigmaString::parse("abc").parts()).is_none());
        assert!(Stars::new(SigmaString::parse("a?c*").parts()).is_none());
        let Some(stars) = Stars::new(SigmaString::parse("ab*ba").parts()) else {
            panic!("ab*ba has a star");
        };
        assert!(stars.matches(b"abba"));
        assert!(stars.matches(b"ab-ba"));
        // Head and tail may not share bytes.
        assert!(!stars.matches(b"aba"));
    }

    #[test]
    fn windash_replaces_parameter_dashes_only() {
        let v = windash_variants(" -s -i cmd");
        assert_eq!(v.len(), 25);
        assert!(v.contains(&" /s \u{2013}i cmd".to_owned()));
        assert_eq!(windash_variants("a-b"), vec!["a-b".to_owned()]);
        assert_eq!(windash_variants(" --x").len(), 5);
    }

    #[test]
    fn base64offset_matches_the_reference_vectors() {
        assert_eq!(base64offset(b"cmd"), vec!["Y21k", "NtZ", "jbW"]);
        assert_eq!(base64offset(b"IEX ("), vec!["SUVYIC", "lFWCAo", "JRVggK"]);
        let wide = utf16("::FromBase64String", false, false);
        assert_eq!(
            base64offset(&wide),
            vec![
                "OgA6AEYAcgBvAG0AQgBhAHMAZQA2ADQAUwB0AHIAaQBuAGcA",
                "oAOgBGAHIAbwBtAEIAYQBzAGUANgA0AFMAdAByAGkAbgBnA",
                "6ADoARgByAG8AbQBCAGEAcwBlADYANABTAHQAcgBpAG4AZw"
            ]
        );
    }

    #[test]
    fn expand_needs_configuration() {
        let mut p = Placeholders::new();
        assert!(
            expand("%known_cdcs%", &p)
                .expect_err("unconfigured")
                .contains("%known_cdcs%")
        );
        p.insert("known_cdcs".into(), vec!["dc1".into(), "dc2".into()]);
        assert_eq!(
            expand("x%known_cdcs%", &p).expect("configured"),
            vec!["xdc1", "xdc2"]
        );
    }
}
