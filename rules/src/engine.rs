//! The rule set: rules compiled once per source kind, matched against whole Arrow batches.
//!
//! For each source kind, every rule's tests become shared [atoms](crate::compile::Atom). Per
//! field, the literal tests of all rules are indexed once, so each value of a batch is looked
//! at once whatever the number of rules:
//! - `equals` and `startswith` needles (lowercased) sit in a byte trie walked from the start of
//!   the value, `endswith` needles in a trie of reversed needles walked from its end: a walk
//!   stops at the first byte no needle continues with, so these cost a few bytes per value;
//! - `contains` needles, the longest literal of each wildcard pattern and the literals of the
//!   regular expressions go into one Aho-Corasick automaton (ASCII-case-insensitive for ASCII
//!   values; a lowercase automaton for values with other characters; a case-sensitive one for
//!   `cased` needles), walked byte by byte over the value;
//! - wildcard patterns are verified only where their literal occurred: piece by piece with a
//!   substring search when they have no `?` ([`crate::compile::Stars`]), else
//!   by their anchored regular expression;
//! - a regular expression runs only on values that contain one of its required literals
//!   (derived from its syntax tree, see `engine/prefilter.rs`; found case-insensitively, and
//!   checked as written where the expression is case-sensitive there); the few without usable
//!   literals share one regex set per field.
//!
//! Values repeat within a batch (images, parents, users): each distinct value of a field is
//! scanned once per batch and its atoms reused, unless the field's values turn out not to repeat
//! (command lines). Keywords (tests without a field) are searched in every text value of a row:
//! when all of them are uncased `contains` needles, in one pass over the row's values joined by
//! a control byte no needle holds, skipping values already searched in a row where nothing was
//! found. The remaining tests (CIDR, numbers, presence, field references, time parts) run per
//! row, answered once for the rows that lack the field. Hits are per-atom bitmaps over the
//! batch's rows, allocated only for atoms that hit; each rule's condition is then evaluated
//! word by word over those bitmaps, short-circuiting on atoms that never hit, so a rule whose
//! literals did not occur in the batch costs a few operations, not one per row.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use aho_corasick::automaton::Automaton;
use aho_corasick::{Anchored, MatchKind, StartKind};
use arrow_array::RecordBatch;
use varde_core::{BatchReader, SourceKind};

use crate::ast::{Detection, Document, Filter, LogSource, Meta, Rule, Search};
use crate::compile::{self, AtomTable, Expr, Placeholders, StrOp, Test};
use crate::fields::{self, MultiColumn};
use crate::mapping::{FieldSpec, KindMapping, Mappings};
use crate::reference;
use crate::{Error, Result};

mod prefilter;

/// A rule that loaded, with where it applies.
#[derive(Debug, Clone)]
pub struct LoadedRule {
    /// Descriptive fields.
    pub meta: Meta,
    /// Its logsource.
    pub logsource: LogSource,
    /// The source kind it was routed to.
    pub kind: SourceKind,
    /// The file it came from.
    pub source: String,
    /// Fields it tests that events of its kind can never have (the items on them never match).
    pub unmapped_fields: Vec<String>,
}

/// A document that did not load, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// The file.
    pub source: String,
    /// The rule's id, when it got that far.
    pub rule_id: Option<String>,
    /// The rule's title, when it got that far.
    pub title: Option<String>,
    /// The reason class (`invalid`, `unsupported`, `yaml`, `io`).
    pub class: &'static str,
    /// The reason.
    pub reason: String,
}

/// Row `row` of the batch matched rule `rule` (an index into [`RuleSet::rules`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Match {
    /// Row in the batch.
    pub row: u32,
    /// Rule index.
    pub rule: u32,
}

#[derive(Debug, Clone, Copy)]
enum Target {
    Str(usize, StrOp),
    Glob(usize),
    /// A literal of the prefiltered regular expression `filtered[i]`.
    Regex(u32),
    /// An exact literal of the prefiltered regular expression `filtered[i]`, found
    /// case-insensitively: a candidate only where the value holds `exact[j]` as written.
    RegexExact(u32, u32),
}

/// A byte trie of lowercased needles, walked from one end of a value: the anchored tests
/// (`equals`, `startswith` from the start, `endswith` from the end, needles reversed). A walk
/// stops at the first byte no needle continues with, so it costs a few bytes per value
/// instead of a scan of the whole value.
#[derive(Default)]
struct Trie {
    /// Children of each node, sorted by byte.
    children: Vec<Vec<(u8, u32)>>,
    /// The tests of the needles ending at each node.
    ends: Vec<Vec<(usize, StrOp)>>,
}

impl Trie {
    fn insert(&mut self, needle: impl Iterator<Item = u8>, atom: usize, op: StrOp) -> Result<()> {
        if self.children.is_empty() {
            self.children.push(Vec::new());
            self.ends.push(Vec::new());
        }
        let mut node = 0usize;
        for b in needle {
            node = match self.children[node].binary_search_by_key(&b, |c| c.0) {
                Ok(i) => self.children[node][i].1 as usize,
                Err(i) => {
                    let next = self.children.len();
                    let id = u32::try_from(next).map_err(|_| Error::invalid("trie too large"))?;
                    self.children[node].insert(i, (b, id));
                    self.children.push(Vec::new());
                    self.ends.push(Vec::new());
                    next
                }
            };
        }
        self.ends[node].push((atom, op));
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.children.is_empty()
    }

    /// Walks `text` (the value's bytes, lowercased, in walking order; `len` bytes in all) and
    /// appends the atoms whose test holds.
    #[inline]
    fn walk(&self, text: impl Iterator<Item = u8>, len: usize, out: &mut Vec<usize>) {
        let Some(mut children) = self.children.first() else {
            return;
        };
        for (depth, b) in text.enumerate() {
            let Ok(i) = children.binary_search_by_key(&b, |c| c.0) else {
                return;
            };
            let node = children[i].1 as usize;
            for &(a, op) in &self.ends[node] {
                if op != StrOp::Eq || depth + 1 == len {
                    out.push(a);
                }
            }
            children = &self.children[node];
        }
    }
}

#[derive(Default)]
struct FieldMatcher {
    /// `equals` and `startswith` needles (lowercased), walked from the start of a value.
    prefixes: Trie,
    /// `endswith` needles (lowercased, reversed), walked from the end of a value.
    suffixes: Trie,
    /// `contains` needles and wildcard literals (lowercased), and the literals of prefiltered
    /// regular expressions (lowercased; an exact one is checked as written on a hit):
    /// ASCII-case-insensitive for ASCII values, exact for the lowercase of other values (where
    /// regular-expression literals do not apply).
    folded: Option<(Scanner, Scanner)>,
    folded_targets: Vec<Vec<Target>>,
    /// `cased` needles and wildcard literals, searched as they are.
    cased: Option<Scanner>,
    cased_targets: Vec<Vec<Target>>,
    empty: Vec<(usize, StrOp)>,
    unfiltered_globs: Vec<usize>,
    /// Regular expressions without a literal prefilter, in one set: one pass per value for all
    /// of them.
    regexes: Option<(regex::RegexSet, Vec<usize>)>,
    /// Regular expressions with a literal prefilter (atom, expression): run only on values
    /// where one of their literals occurred.
    filtered: Vec<(usize, regex::Regex)>,
    /// The literals of `filtered` alone (ASCII case-insensitive, each with its targets), for
    /// values that are not ASCII.
    regex_literals: Option<Scanner>,
    regex_literal_targets: Vec<Vec<Target>>,
    /// The exact literals of [`Target::RegexExact`].
    exact: Vec<Vec<u8>>,
    /// When every test is an uncased `contains`: a byte no needle holds, so the values of a
    /// row can be searched as one text joined by it (no occurrence spans it).
    joiner: Option<u8>,
    /// The length of the shortest needle: shorter ASCII values cannot hold one.
    shortest: usize,
}

/// An Aho-Corasick automaton reporting every occurrence of every needle (overlapping, standard
/// semantics), walked byte by byte here rather than through the crate's iterators: values are
/// short and have many hits, where the per-match cost of an iterator dominates.
enum Scanner {
    Dfa(aho_corasick::dfa::DFA),
    Nfa(aho_corasick::nfa::contiguous::NFA),
}

impl Scanner {
    /// A DFA over `needles`, or a contiguous NFA when the DFA cannot be built.
    fn build(needles: &[&Vec<u8>], ascii_ci: bool) -> Result<Self> {
        aho_corasick::dfa::DFA::builder()
            .ascii_case_insensitive(ascii_ci)
            .match_kind(MatchKind::Standard)
            .start_kind(StartKind::Unanchored)
            .build(needles)
            .map(Scanner::Dfa)
            .or_else(|_| {
                aho_corasick::nfa::contiguous::NFA::builder()
                    .ascii_case_insensitive(ascii_ci)
                    .match_kind(MatchKind::Standard)
                    .build(needles)
                    .map(Scanner::Nfa)
            })
            .map_err(|e| Error::invalid(format!("automaton: {e}")))
    }

    /// Calls `f(needle, start, end)` for every occurrence of every needle in `text`.
    #[inline]
    fn scan(&self, text: &[u8], f: impl FnMut(usize, usize, usize)) {
        match self {
            Scanner::Dfa(a) => scan_with(a, text, f),
            Scanner::Nfa(a) => scan_with(a, text, f),
        }
    }
}

#[inline]
fn scan_with<A: Automaton>(aut: &A, text: &[u8], mut f: impl FnMut(usize, usize, usize)) {
    let Ok(mut sid) = aut.start_state(Anchored::No) else {
        return;
    };
    let mut report = |sid, end: usize| {
        for i in 0..aut.match_len(sid) {
            let p = aut.match_pattern(sid, i);
            f(p.as_usize(), end.saturating_sub(aut.pattern_len(p)), end);
        }
    };
    if aut.is_match(sid) {
        report(sid, 0);
    }
    for (i, &b) in text.iter().enumerate() {
        sid = aut.next_state(Anchored::No, sid, b);
        if aut.is_special(sid) {
            if aut.is_dead(sid) {
                return;
            }
            if aut.is_match(sid) {
                report(sid, i + 1);
            }
        }
    }
}

impl FieldMatcher {
    fn build(atoms: &AtomTable, members: &[usize]) -> Result<Self> {
        let mut m = FieldMatcher::default();
        let mut folded: BTreeMap<Vec<u8>, Vec<Target>> = BTreeMap::new();
        let mut cased: BTreeMap<Vec<u8>, Vec<Target>> = BTreeMap::new();
        let mut regexes: Vec<(usize, String)> = Vec::new();
        let mut literal_targets: BTreeMap<Vec<u8>, Vec<Target>> = BTreeMap::new();
        for &a in members {
            match &atoms.atoms()[a].test {
                Test::Regex(r) => {
                    let source = r.as_str();
                    // The same expression, with room for its lazy DFA: expressions with wide
                    // Unicode classes (`\w{1,64}`) otherwise fall back to slower engines.
                    let own = regex::RegexBuilder::new(source)
                        .size_limit(64 << 20)
                        .dfa_size_limit(16 << 20)
                        .build()
                        .ok();
                    let literals = prefilter::required_literals(source);
                    let index = u32::try_from(m.filtered.len()).ok();
                    match (own, literals, index) {
                        (Some(own), Some(literals), Some(index)) => {
                            m.filtered.push((a, own));
                            for l in literals.set {
                                // Exact literals share the case-insensitive automaton (one
                                // pass over the value) and are checked as written on a hit.
                                let target = match u32::try_from(m.exact.len()) {
                                    Ok(j) if literals.cased => {
                                        m.exact.push(l.clone());
                                        Target::RegexExact(index, j)
                                    }
                                    _ => Target::Regex(index),
                                };
                                let mut key = l;
                                key.make_ascii_lowercase();
                                folded.entry(key.clone()).or_default().push(target);
                                literal_targets.entry(key).or_default().push(target);
                            }
                        }
                        _ => regexes.push((a, source.to_owned())),
                    }
                }
                Test::Str {
                    op,
                    needle,
                    cased: c,
                } => {
                    if needle.is_empty() {
                        m.empty.push((a, *op));
                    } else if !*c && *op != StrOp::Contains {
                        if *op == StrOp::EndsWith {
                            m.suffixes.insert(needle.bytes().rev(), a, *op)?;
                        } else {
                            m.prefixes.insert(needle.bytes(), a, *op)?;
                        }
                    } else {
                        let map = if *c { &mut cased } else { &mut folded };
                        map.entry(needle.as_bytes().to_vec())
                            .or_default()
                            .push(Target::Str(a, *op));
                    }
                }
                Test::Glob {
                    literal, cased: c, ..
                } => {
                    if literal.is_empty() {
                        m.unfiltered_globs.push(a);
                    } else {
                        let map = if *c { &mut cased } else { &mut folded };
                        map.entry(literal.as_bytes().to_vec())
                            .or_default()
                            .push(Target::Glob(a));
                    }
                }
                _ => {}
            }
        }
        let only_contains = folded
            .values()
            .flatten()
            .all(|t| matches!(t, Target::Str(_, StrOp::Contains)));
        if only_contains
            && !folded.is_empty()
            && cased.is_empty()
            && regexes.is_empty()
            && m.filtered.is_empty()
            && m.empty.is_empty()
            && m.unfiltered_globs.is_empty()
            && m.prefixes.is_empty()
            && m.suffixes.is_empty()
        {
            // A control byte: not a letter, so lowercasing around it is as at a value's ends.
            m.joiner = (0u8..0x20).find(|b| !folded.keys().any(|n| n.contains(b)));
            m.shortest = folded.keys().map(Vec::len).min().unwrap_or(0);
        }
        if !folded.is_empty() {
            let needles: Vec<&Vec<u8>> = folded.keys().collect();
            m.folded = Some((
                Scanner::build(&needles, true)?,
                Scanner::build(&needles, false)?,
            ));
            m.folded_targets = folded.into_values().collect();
        }
        if !literal_targets.is_empty() {
            let needles: Vec<&Vec<u8>> = literal_targets.keys().collect();
            m.regex_literals = Some(Scanner::build(&needles, true)?);
            m.regex_literal_targets = literal_targets.into_values().collect();
        }
        if !regexes.is_empty() {
            let set = regex::RegexSetBuilder::new(regexes.iter().map(|(_, r)| r))
                .size_limit(256 << 20)
                .dfa_size_limit(64 << 20)
                .build()
                .map_err(|e| Error::invalid(format!("regex set: {e}")))?;
            m.regexes = Some((set, regexes.into_iter().map(|(a, _)| a).collect()));
        }
        if !cased.is_empty() {
            let needles: Vec<&Vec<u8>> = cased.keys().collect();
            m.cased = Some(Scanner::build(&needles, false)?);
            m.cased_targets = cased.into_values().collect();
        }
        Ok(m)
    }

    fn is_empty(&self) -> bool {
        self.folded.is_none()
            && self.prefixes.is_empty()
            && self.suffixes.is_empty()
            && self.cased.is_none()
            && self.empty.is_empty()
            && self.unfiltered_globs.is_empty()
            && self.regexes.is_none()
            && self.filtered.is_empty()
    }

    /// Appends to `out` every atom some value of `text` satisfies (possibly with repeats):
    /// `text` holds the values, each followed by the joiner, ASCII values as they are and the
    /// others lowercased (as [`fold`] does). The needles are lowercase, so the ASCII
    /// case-insensitive automaton finds them in both. Only for a matcher with a
    /// [`joiner`](Self::joiner).
    fn scan_joined(&self, text: &[u8], out: &mut Vec<usize>) {
        if let Some((ascii_ci, _)) = &self.folded {
            ascii_ci.scan(text, |p, _, _| {
                for t in &self.folded_targets[p] {
                    if let Target::Str(a, StrOp::Contains) = t {
                        out.push(*a);
                    }
                }
            });
        }
    }

    /// Appends to `out` every atom this value satisfies (possibly with repeats).
    fn scan(&self, value: &str, atoms: &AtomTable, scratch: &mut Scratch, out: &mut Vec<usize>) {
        for &(a, op) in &self.empty {
            if op != StrOp::Eq || value.is_empty() {
                out.push(a);
            }
        }
        let mut lowered: Option<Cow<'_, str>> = None;
        // Wildcard patterns whose literal occurred: verified once each, after the scan.
        let Scratch {
            globs: candidates,
            regexes: regex_candidates,
            lower,
        } = scratch;
        candidates.clear();
        regex_candidates.clear();
        // Prefiltered regular expressions whose literal occurred.
        let ascii = value.is_ascii();
        if !ascii
            && (self.folded.is_some() || !self.prefixes.is_empty() || !self.suffixes.is_empty())
        {
            lowered = Some(fold(value));
        }
        if !self.prefixes.is_empty() || !self.suffixes.is_empty() {
            if ascii {
                let len = value.len();
                let bytes = value.as_bytes();
                self.prefixes
                    .walk(bytes.iter().map(u8::to_ascii_lowercase), len, out);
                self.suffixes
                    .walk(bytes.iter().rev().map(u8::to_ascii_lowercase), len, out);
            } else {
                let bytes = lowered.as_deref().unwrap_or(value).as_bytes();
                self.prefixes.walk(bytes.iter().copied(), bytes.len(), out);
                self.suffixes
                    .walk(bytes.iter().rev().copied(), bytes.len(), out);
            }
        }
        if let Some((ascii_ac, exact_ac)) = &self.folded {
            let (ac, text): (&Scanner, &str) = if ascii {
                (ascii_ac, value)
            } else {
                (exact_ac, lowered.as_deref().unwrap_or(value))
            };
            let len = text.len();
            ac.scan(text.as_bytes(), |p, start, end| {
                for t in &self.folded_targets[p] {
                    match *t {
                        Target::Regex(_) | Target::RegexExact(..) => {
                            if ascii {
                                self.regex_hit(*t, value, start, end, regex_candidates);
                            }
                        }
                        t => target_hit(t, start, end, len, out, candidates),
                    }
                }
            });
        }
        if let (false, Some(ac)) = (ascii, &self.regex_literals) {
            ac.scan(value.as_bytes(), |p, start, end| {
                for t in &self.regex_literal_targets[p] {
                    self.regex_hit(*t, value, start, end, regex_candidates);
                }
            });
        }
        if let Some(ac) = &self.cased {
            let len = value.len();
            ac.scan(value.as_bytes(), |p, start, end| {
                for t in &self.cased_targets[p] {
                    target_hit(*t, start, end, len, out, candidates);
                }
            });
        }
        candidates.sort_unstable();
        candidates.dedup();
        candidates.extend_from_slice(&self.unfiltered_globs);
        if !candidates.is_empty() {
            // Uncased patterns are matched against the value lowercased: an ASCII value is
            // lowercased once into a reused buffer.
            let folded = match &lowered {
                Some(l) => l.as_ref(),
                None if ascii => {
                    lower.clear();
                    lower.push_str(value);
                    lower.make_ascii_lowercase();
                    lower.as_str()
                }
                None => {
                    lowered = Some(fold(value));
                    lowered.as_deref().unwrap_or(value)
                }
            };
            for &a in candidates.iter() {
                if glob_holds(atoms, a, value, folded) {
                    out.push(a);
                }
            }
        }
        if let Some((set, ids)) = &self.regexes {
            out.extend(set.matches(value).iter().map(|i| ids[i]));
        }
        regex_candidates.sort_unstable();
        regex_candidates.dedup();
        for &i in regex_candidates.iter() {
            if let Some((a, regex)) = self.filtered.get(i as usize)
                && regex.is_match(value)
            {
                out.push(*a);
            }
        }
    }

    /// Notes the regular expression of a literal found at `start..end` of `value` (the
    /// original value: ASCII-case-insensitive automata keep byte positions) as a candidate,
    /// unless its literal is exact and the value holds it in another case.
    #[inline]
    fn regex_hit(
        &self,
        target: Target,
        value: &str,
        start: usize,
        end: usize,
        candidates: &mut Vec<u32>,
    ) {
        match target {
            Target::Regex(i) => candidates.push(i),
            Target::RegexExact(i, j) => {
                let found = value.as_bytes().get(start..end);
                if found.is_some_and(|f| self.exact.get(j as usize).is_some_and(|e| e == f)) {
                    candidates.push(i);
                }
            }
            Target::Str(..) | Target::Glob(_) => {}
        }
    }
}

/// Buffers of [`FieldMatcher::scan`], reused from value to value.
#[derive(Default)]
struct Scratch {
    /// Wildcard patterns whose literal occurred.
    globs: Vec<usize>,
    /// Prefiltered regular expressions (indices into `filtered`) whose literal occurred.
    regexes: Vec<u32>,
    /// An ASCII value lowercased, for the wildcard patterns.
    lower: String,
}

/// Records the atom of an automaton match when its position fits the test (`len` is the
/// length of the scanned text), or notes a wildcard pattern to verify.
fn target_hit(
    target: Target,
    start: usize,
    end: usize,
    len: usize,
    out: &mut Vec<usize>,
    candidates: &mut Vec<usize>,
) {
    match target {
        Target::Str(a, op) => {
            let ok = match op {
                StrOp::Contains => true,
                StrOp::StartsWith => start == 0,
                StrOp::EndsWith => end == len,
                StrOp::Eq => start == 0 && end == len,
            };
            if ok {
                out.push(a);
            }
        }
        Target::Glob(a) => candidates.push(a),
        Target::Regex(_) | Target::RegexExact(..) => {}
    }
}

/// The `fieldref` test of one value against one value of the other field, as
/// [`reference::test_holds`] defines it, without lowercasing copies when both are ASCII.
fn fieldref_holds(op: StrOp, cased: bool, value: &str, other: &str) -> bool {
    if cased {
        return reference::str_matches(op, other, true, value);
    }
    if value.is_ascii() && other.is_ascii() {
        let (v, o) = (value.as_bytes(), other.as_bytes());
        return match op {
            StrOp::Eq => v.eq_ignore_ascii_case(o),
            StrOp::StartsWith => v.len() >= o.len() && v[..o.len()].eq_ignore_ascii_case(o),
            StrOp::EndsWith => v.len() >= o.len() && v[v.len() - o.len()..].eq_ignore_ascii_case(o),
            StrOp::Contains => {
                o.is_empty() || v.windows(o.len()).any(|w| w.eq_ignore_ascii_case(o))
            }
        };
    }
    reference::str_matches(op, &other.to_lowercase(), false, value)
}

/// Lowercases as the reference does (`str::to_lowercase`), cheaply for ASCII.
fn fold(value: &str) -> Cow<'_, str> {
    if value.is_ascii() {
        Cow::Owned(value.to_ascii_lowercase())
    } else {
        Cow::Owned(value.to_lowercase())
    }
}

/// A fast word-at-a-time hash (the Fx scheme) for per-batch maps keyed by field values and
/// attribute names: not DoS-resistant, which is fine for maps that live for one batch.
#[derive(Default)]
pub(crate) struct Fnv(u64);

impl Fnv {
    #[inline]
    fn add(&mut self, w: u64) {
        self.0 = (self.0.rotate_left(5) ^ w).wrapping_mul(0x517c_c1b7_2722_0a95);
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }
    /// Words of 8 bytes; the tail as the last 8 bytes (overlapping the word before), or for
    /// short inputs a few fixed reads, so that no copy of variable length is made.
    fn write(&mut self, bytes: &[u8]) {
        let n = bytes.len();
        let word = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let half = |at: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[at..at + 4]);
            u64::from(u32::from_le_bytes(w))
        };
        if n >= 8 {
            let mut at = 0;
            while at + 8 <= n {
                self.add(word(at));
                at += 8;
            }
            if at < n {
                self.add(word(n - 8));
            }
        } else if n >= 4 {
            self.add(half(0) | half(n - 4) << 32);
        } else if n > 0 {
            let b = |i: usize| u64::from(bytes[i]);
            self.add(b(0) | b(n / 2) << 8 | b(n - 1) << 16);
        }
        self.add(n as u64);
    }
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }
}

pub(crate) type FnvMap<K, V> = HashMap<K, V, std::hash::BuildHasherDefault<Fnv>>;

/// The last value seen at each of 1,024 places, chosen by a cheap hash of the value (its length
/// and its first and last eight bytes), with what was found for it: a value that repeats within
/// a batch is found again with one comparison, before the batch's map is asked (hashing every
/// byte and probing the map cost about four times more).
struct Recent<'a, V> {
    slots: Vec<Option<(&'a str, V)>>,
}

impl<V: Copy> Default for Recent<'_, V> {
    fn default() -> Self {
        Recent {
            slots: vec![None; 1 << Self::BITS],
        }
    }
}

impl<'a, V: Copy> Recent<'a, V> {
    const BITS: u32 = 10;

    fn place(value: &str) -> usize {
        let b = value.as_bytes();
        let n = b.len();
        let read8 = |at: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[at..at + 8]);
            u64::from_le_bytes(w)
        };
        let w = if n >= 8 {
            read8(0) ^ read8(n - 8).rotate_left(29)
        } else {
            b.iter().fold(0u64, |w, &x| w << 8 | u64::from(x))
        };
        let h = (w ^ n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        (h >> (64 - Self::BITS)) as usize
    }

    /// What was put for `value`, when it is still there.
    fn get(&self, value: &str) -> Option<V> {
        match self.slots[Self::place(value)] {
            Some((k, v)) if k == value => Some(v),
            _ => None,
        }
    }

    /// Puts `value` in its place, in place of whatever was there.
    fn put(&mut self, value: &'a str, v: V) {
        self.slots[Self::place(value)] = Some((value, v));
    }
}

/// What a batch remembers about the values it has seen: every value put, in a map, fronted by
/// a [`Recent`] table that values take a place in once they are asked for again (values seen
/// once, ids and times, would only push the repeating ones out).
struct Seen<'a, V> {
    map: FnvMap<&'a str, V>,
    recent: Recent<'a, V>,
}

impl<V: Copy> Default for Seen<'_, V> {
    fn default() -> Self {
        Seen {
            map: FnvMap::default(),
            recent: Recent::default(),
        }
    }
}

impl<'a, V: Copy> Seen<'a, V> {
    /// What was put for `value`, if it was.
    fn get(&mut self, value: &'a str) -> Option<V> {
        if let Some(v) = self.recent.get(value) {
            return Some(v);
        }
        let v = *self.map.get(value)?;
        self.recent.put(value, v);
        Some(v)
    }

    fn insert(&mut self, value: &'a str, v: V) {
        self.map.insert(value, v);
    }

    /// What was put for `value`, and whether it was; else `make()`, put now. One hash of
    /// `value` either way.
    fn get_or_insert_with(&mut self, value: &'a str, make: impl FnOnce() -> V) -> (V, bool) {
        if let Some(v) = self.recent.get(value) {
            return (v, true);
        }
        match self.map.entry(value) {
            std::collections::hash_map::Entry::Occupied(o) => {
                let v = *o.get();
                self.recent.put(value, v);
                (v, true)
            }
            std::collections::hash_map::Entry::Vacant(e) => (*e.insert(make()), false),
        }
    }
}

/// The glob test on one value (`folded`: the value lowercased as the reference does): the
/// pattern piece by piece where it has no `?`, else its anchored regex; over the value as it is
/// when `cased`, else over `folded`.
fn glob_holds(atoms: &AtomTable, a: usize, value: &str, folded: &str) -> bool {
    let Test::Glob {
        regex,
        stars,
        cased,
        ..
    } = &atoms.atoms()[a].test
    else {
        return false;
    };
    let text = if *cased { value } else { folded };
    match stars {
        Some(stars) => stars.matches(text.as_bytes()),
        None => regex.is_match(text),
    }
}

/// Per-atom hit bitmaps for one batch, allocated on first hit.
struct Hits {
    words: usize,
    bits: Vec<Option<Vec<u64>>>,
}

impl Hits {
    fn new(atoms: usize, rows: usize) -> Self {
        Hits {
            words: rows.div_ceil(64),
            bits: vec![None; atoms],
        }
    }

    /// Sets the bits of every row of a batch of `rows` rows.
    fn set_all(&mut self, atom: usize, rows: usize) {
        let mut b = vec![u64::MAX; self.words];
        if let Some(last) = b.last_mut()
            && !rows.is_multiple_of(64)
        {
            *last = (1u64 << (rows % 64)) - 1;
        }
        self.bits[atom] = Some(b);
    }

    fn set(&mut self, atom: usize, row: usize) {
        let words = self.words;
        let b = self.bits[atom].get_or_insert_with(|| vec![0; words]);
        b[row / 64] |= 1 << (row % 64);
    }
}

enum Bits<'a> {
    Zero,
    One,
    Ref(&'a [u64]),
    Own(Vec<u64>),
}

impl Bits<'_> {
    fn words(&self) -> &[u64] {
        match self {
            Bits::Ref(r) => r,
            Bits::Own(v) => v,
            Bits::Zero | Bits::One => &[],
        }
    }
}

fn eval<'a>(expr: &Expr, hits: &'a Hits, tail_mask: u64) -> Bits<'a> {
    let n = hits.words;
    match expr {
        Expr::True => Bits::One,
        Expr::False => Bits::Zero,
        Expr::Atom(a) => match &hits.bits[*a] {
            Some(b) => Bits::Ref(b),
            None => Bits::Zero,
        },
        Expr::Not(e) => match eval(e, hits, tail_mask) {
            Bits::Zero => Bits::One,
            Bits::One => Bits::Zero,
            b => {
                let mut v: Vec<u64> = b.words().iter().map(|w| !w).collect();
                if let Some(last) = v.last_mut() {
                    *last &= tail_mask;
                }
                Bits::Own(v)
            }
        },
        Expr::And(es) => {
            let mut acc = Bits::One;
            for e in es {
                match eval(e, hits, tail_mask) {
                    Bits::Zero => return Bits::Zero,
                    Bits::One => {}
                    b => {
                        acc = match acc {
                            Bits::One => b,
                            other => {
                                let v: Vec<u64> = other
                                    .words()
                                    .iter()
                                    .zip(b.words())
                                    .map(|(x, y)| x & y)
                                    .collect();
                                if v.iter().all(|w| *w == 0) {
                                    return Bits::Zero;
                                }
                                Bits::Own(v)
                            }
                        };
                    }
                }
            }
            acc
        }
        Expr::Or(es) => {
            let mut acc = Bits::Zero;
            for e in es {
                match eval(e, hits, tail_mask) {
                    Bits::One => return Bits::One,
                    Bits::Zero => {}
                    b => {
                        acc = match acc {
                            Bits::Zero => b,
                            other => Bits::Own(
                                other
                                    .words()
                                    .iter()
                                    .zip(b.words())
                                    .map(|(x, y)| x | y)
                                    .collect(),
                            ),
                        };
                    }
                }
            }
            let _ = n;
            acc
        }
    }
}

struct KindEngine {
    mapping: KindMapping,
    atoms: AtomTable,
    rules: Vec<(u32, Expr)>,
    specs: Vec<FieldSpec>,
    field_index: HashMap<String, usize>,
    matchers: Vec<FieldMatcher>,
    keyword: FieldMatcher,
    row_atoms: Vec<usize>,
}

impl KindEngine {
    fn new(mapping: KindMapping) -> Self {
        KindEngine {
            mapping,
            atoms: AtomTable::default(),
            rules: Vec::new(),
            specs: Vec::new(),
            field_index: HashMap::new(),
            matchers: Vec::new(),
            keyword: FieldMatcher::default(),
            row_atoms: Vec::new(),
        }
    }

    fn field(&mut self, name: &str) -> usize {
        if let Some(&i) = self.field_index.get(name) {
            return i;
        }
        let i = self.specs.len();
        self.specs.push(self.mapping.spec(name));
        self.field_index.insert(name.to_owned(), i);
        i
    }

    fn finish(&mut self) -> Result<()> {
        let mut members: Vec<Vec<usize>> = Vec::new();
        let mut keyword = Vec::new();
        let atoms: Vec<(Option<String>, bool, Option<String>)> = self
            .atoms
            .atoms()
            .iter()
            .map(|a| {
                let literal = matches!(
                    a.test,
                    Test::Str { .. } | Test::Glob { .. } | Test::Regex(_)
                );
                let other = match &a.test {
                    Test::FieldRef { other, .. } => Some(other.clone()),
                    _ => None,
                };
                (a.field.clone(), literal, other)
            })
            .collect();
        for (i, (field, literal, other)) in atoms.into_iter().enumerate() {
            if let Some(o) = other {
                self.field(&o);
            }
            match field {
                None => keyword.push(i),
                Some(f) => {
                    let fi = self.field(&f);
                    if members.len() <= fi {
                        members.resize(fi + 1, Vec::new());
                    }
                    if literal {
                        members[fi].push(i);
                    } else {
                        self.row_atoms.push(i);
                    }
                }
            }
        }
        members.resize(self.specs.len(), Vec::new());
        self.matchers = members
            .iter()
            .map(|m| FieldMatcher::build(&self.atoms, m))
            .collect::<Result<_>>()?;
        self.keyword = FieldMatcher::build(&self.atoms, &keyword)?;
        Ok(())
    }

    fn match_batch(&self, reader: &BatchReader<'_>, out: &mut Vec<Match>) {
        let rows = reader.len();
        if rows == 0 || self.rules.is_empty() {
            return;
        }
        let columns = fields::extract(reader, &self.specs);
        let mut hits = Hits::new(self.atoms.atoms().len(), rows);
        let mut scratch = Scratch::default();
        for (fi, matcher) in self.matchers.iter().enumerate() {
            if matcher.is_empty() {
                continue;
            }
            // Field values repeat a lot within a batch (images, users, parents): scan each
            // distinct value once and reuse its atoms.
            let col = &columns[fi];
            if col.values.is_empty() {
                continue;
            }
            let mut cache: Seen<'_, (u32, u32)> = Seen::default();
            let mut found: Vec<usize> = Vec::new();
            let (mut lookups, mut repeats) = (0u32, 0u32);
            let mut caching = true;
            for row in 0..rows {
                for v in col.row(row) {
                    if !caching {
                        found.clear();
                        matcher.scan(v, &self.atoms, &mut scratch, &mut found);
                        for &a in &found {
                            hits.set(a, row);
                        }
                        continue;
                    }
                    lookups += 1;
                    let ((s, e), repeat) = cache.get_or_insert_with(v, || {
                        let s = found.len();
                        matcher.scan(v, &self.atoms, &mut scratch, &mut found);
                        found[s..].sort_unstable();
                        let mut w = s;
                        for r in s..found.len() {
                            if r == s || found[r] != found[w - 1] {
                                found[w] = found[r];
                                w += 1;
                            }
                        }
                        found.truncate(w);
                        (s as u32, w as u32)
                    });
                    repeats += u32::from(repeat);
                    for &a in &found[s as usize..e as usize] {
                        hits.set(a, row);
                    }
                    // Values that rarely repeat (command lines) are not worth hashing.
                    if lookups == 512 && repeats < 128 {
                        caching = false;
                        found.clear();
                    }
                }
            }
        }
        if let Some(joiner) = self.keyword.joiner {
            // Keywords are searched in every text value of a row: in one pass over the row's
            // values joined, not one search per value. Values repeat from row to row and
            // almost none holds a keyword: the values of rows where nothing was found are
            // remembered and not searched again.
            let mut text: Vec<u8> = Vec::new();
            let mut found = Vec::new();
            let mut clean: Seen<'_, ()> = Seen::default();
            let mut searched: Vec<&str> = Vec::new();
            for row in 0..rows {
                text.clear();
                searched.clear();
                fields::for_each_keyword_value(reader, row, |v| {
                    let ascii = v.is_ascii();
                    if (ascii && v.len() < self.keyword.shortest) || clean.get(v).is_some() {
                        return;
                    }
                    if ascii {
                        text.extend_from_slice(v.as_bytes());
                    } else {
                        text.extend_from_slice(v.to_lowercase().as_bytes());
                    }
                    text.push(joiner);
                    searched.push(v);
                });
                if text.is_empty() {
                    continue;
                }
                found.clear();
                self.keyword.scan_joined(&text, &mut found);
                if found.is_empty() {
                    for &v in &searched {
                        clean.insert(v, ());
                    }
                }
                for &a in &found {
                    hits.set(a, row);
                }
            }
        } else if !self.keyword.is_empty() {
            let mut found = Vec::new();
            for row in 0..rows {
                for v in fields::keyword_values(reader, row) {
                    found.clear();
                    self.keyword.scan(&v, &self.atoms, &mut scratch, &mut found);
                    for &a in &found {
                        hits.set(a, row);
                    }
                }
            }
        }
        for &a in &self.row_atoms {
            let atom = &self.atoms.atoms()[a];
            let Some(fi) = atom.field.as_deref().and_then(|f| self.field_index.get(f)) else {
                continue;
            };
            let col: &MultiColumn<'_> = &columns[*fi];
            if let Test::FieldRef { other, op, cased } = &atom.test {
                // Both fields are in the batch's columns (`finish` interned the other one).
                let Some(oi) = self.field_index.get(other.as_str()) else {
                    continue;
                };
                let others: &MultiColumn<'_> = &columns[*oi];
                for row in 0..rows {
                    let theirs = others.row(row);
                    let holds = col
                        .row(row)
                        .iter()
                        .any(|v| theirs.iter().any(|o| fieldref_holds(*op, *cased, v, o)));
                    if holds {
                        hits.set(a, row);
                    }
                }
                continue;
            }
            // The remaining tests read only their own field's values (field references were
            // handled above): on a row without values the answer is the same for every row.
            let none = |_: &str| -> Vec<Cow<'_, str>> { Vec::new() };
            let when_absent = reference::test_holds(&atom.test, &[], &none);
            if col.values.is_empty() {
                if when_absent {
                    hits.set_all(a, rows);
                }
                continue;
            }
            for row in 0..rows {
                let values = col.row(row);
                let holds = if values.is_empty() {
                    when_absent
                } else {
                    reference::test_holds(&atom.test, values, &none)
                };
                if holds {
                    hits.set(a, row);
                }
            }
        }
        let tail = rows % 64;
        let tail_mask = if tail == 0 {
            u64::MAX
        } else {
            (1u64 << tail) - 1
        };
        for (rule, expr) in &self.rules {
            match eval(expr, &hits, tail_mask) {
                Bits::Zero => {}
                Bits::One => out.extend((0..rows).map(|r| Match {
                    row: r as u32,
                    rule: *rule,
                })),
                b => {
                    for (w, word) in b.words().iter().enumerate() {
                        let mut word = *word;
                        while word != 0 {
                            let bit = word.trailing_zeros() as usize;
                            let row = w * 64 + bit;
                            if row < rows {
                                out.push(Match {
                                    row: row as u32,
                                    rule: *rule,
                                });
                            }
                            word &= word - 1;
                        }
                    }
                }
            }
        }
    }

    fn match_reference(&self, reader: &BatchReader<'_>, out: &mut Vec<Match>) {
        for row in 0..reader.len() {
            let values = |field: Option<&str>| -> Vec<Cow<'_, str>> {
                match field {
                    None => fields::keyword_values(reader, row),
                    Some(f) => fields::row_values(reader, &self.mapping.spec(f), row),
                }
            };
            for (rule, expr) in &self.rules {
                let hit = reference::eval(expr, &mut |a| {
                    reference::atom_holds(&self.atoms.atoms()[a], &values)
                });
                if hit {
                    out.push(Match {
                        row: row as u32,
                        rule: *rule,
                    });
                }
            }
        }
    }
}

/// Compiled rules, ready to match batches of every source kind.
pub struct RuleSet {
    rules: Vec<LoadedRule>,
    errors: Vec<LoadError>,
    kinds: BTreeMap<SourceKind, KindEngine>,
    correlations: Vec<(String, crate::correlation::Correlation)>,
}

/// Builds a [`RuleSet`].
pub struct RuleSetBuilder {
    mappings: Mappings,
    placeholders: Placeholders,
    rules: Vec<(String, Rule)>,
    filters: Vec<Filter>,
    errors: Vec<LoadError>,
    correlations: Vec<(String, crate::correlation::Correlation)>,
}

fn load_error(source: &str, meta: Option<&Meta>, e: &Error) -> LoadError {
    LoadError {
        source: source.to_owned(),
        rule_id: meta.map(|m| m.id.clone()).filter(|s| !s.is_empty()),
        title: meta.map(|m| m.title.clone()).filter(|s| !s.is_empty()),
        class: e.class(),
        reason: e.to_string(),
    }
}

/// One alternative of a route: (column, value) pairs that must all hold.
type Alternative = Vec<(String, String)>;

/// A detection with some fields renamed (Sigma name → attribute name).
fn renamed(detection: &Detection, names: &[(String, String)]) -> Detection {
    let mut d = detection.clone();
    if names.is_empty() {
        return d;
    }
    for (_, search) in &mut d.searches {
        if let Search::Maps(maps) = search {
            for item in maps.iter_mut().flatten() {
                let to = item
                    .field
                    .as_ref()
                    .and_then(|f| names.iter().find(|(from, _)| from == f))
                    .map(|(_, to)| to.clone());
                if to.is_some() {
                    item.field = to;
                }
            }
        }
    }
    d
}

/// A rule's detection and the meta filters that apply to it, with `names` renamed.
fn compile_renamed(
    rule: &Rule,
    filters: &[Filter],
    names: &[(String, String)],
    atoms: &mut AtomTable,
    placeholders: &Placeholders,
) -> Result<Expr> {
    let mut expr = compile::detection(&renamed(&rule.detection, names), atoms, placeholders)?;
    for f in filters {
        let named = f.rules.is_empty()
            || f.rules
                .iter()
                .any(|r| r == &rule.meta.id || r == &rule.meta.title);
        if named && logsource_contains(&f.logsource, &rule.logsource) {
            let fexpr = compile::detection(&renamed(&f.detection, names), atoms, placeholders)
                .map_err(|e| e.context(format!("filter '{}'", f.meta.title)))?;
            expr = expr.and_with(fexpr);
        }
    }
    Ok(expr)
}

fn logsource_contains(outer: &LogSource, inner: &LogSource) -> bool {
    let key =
        |o: &Option<String>, i: &Option<String>| o.as_ref().is_none_or(|o| i.as_ref() == Some(o));
    key(&outer.product, &inner.product)
        && key(&outer.category, &inner.category)
        && key(&outer.service, &inner.service)
}

impl RuleSetBuilder {
    /// A builder with the shipped field mappings and the given placeholder values.
    pub fn new(placeholders: Placeholders) -> Result<Self> {
        Ok(RuleSetBuilder {
            mappings: Mappings::builtin()?,
            placeholders,
            rules: Vec::new(),
            filters: Vec::new(),
            errors: Vec::new(),
            correlations: Vec::new(),
        })
    }

    /// Adds every document of a YAML text read from `source`.
    pub fn add_yaml(&mut self, source: &str, text: &str) {
        for doc in crate::ast::parse_documents(text) {
            match doc {
                Ok(Document::Rule(r)) => self.rules.push((source.to_owned(), r)),
                Ok(Document::Filter(f)) => self.filters.push(f),
                Ok(Document::Correlation(c)) => self.correlations.push((source.to_owned(), c)),
                Err(e) => self.errors.push(load_error(source, None, &e)),
            }
        }
    }

    /// Records a file that could not be read.
    pub fn add_io_error(&mut self, source: &str, e: &std::io::Error) {
        self.errors.push(LoadError {
            source: source.to_owned(),
            rule_id: None,
            title: None,
            class: "io",
            reason: e.to_string(),
        });
    }

    /// Compiles everything added.
    pub fn build(self) -> Result<RuleSet> {
        let RuleSetBuilder {
            mappings,
            placeholders,
            rules,
            filters,
            mut errors,
            correlations,
        } = self;
        let mut kinds: BTreeMap<SourceKind, KindEngine> = BTreeMap::new();
        let mut loaded = Vec::new();
        for (source, rule) in rules {
            let routing = mappings.route(&rule.logsource);
            let engine = kinds
                .entry(routing.kind)
                .or_insert_with(|| KindEngine::new(mappings.kind(routing.kind).clone()));
            // Alternatives of the route that rename fields get the detection compiled with
            // their names; alternatives whose expression comes out the same share it.
            let mut branches: Vec<(Expr, Vec<&Alternative>)> = Vec::new();
            let mut failed = None;
            let renames: Vec<&[(String, String)]> = if routing.when.is_empty() {
                vec![&[]]
            } else {
                routing
                    .when
                    .iter()
                    .enumerate()
                    .map(|(i, _)| routing.fields.get(i).map_or(&[][..], Vec::as_slice))
                    .collect()
            };
            for (i, names) in renames.iter().enumerate() {
                let compiled =
                    compile_renamed(&rule, &filters, names, &mut engine.atoms, &placeholders);
                let expr = match compiled {
                    Ok(e) => e,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                };
                let alt = routing.when.get(i);
                match branches.iter_mut().find(|(e, _)| *e == expr) {
                    Some((_, alts)) => alts.extend(alt),
                    None => branches.push((expr, alt.into_iter().collect())),
                }
            }
            if let Some(e) = failed {
                errors.push(load_error(&source, Some(&rule.meta), &e));
                continue;
            }
            let mut exprs: Vec<Expr> = Vec::new();
            for (expr, alts) in branches {
                if alts.is_empty() {
                    exprs.push(expr);
                    continue;
                }
                let route = Expr::Or(
                    alts.iter()
                        .map(|alt| {
                            Expr::And(
                                alt.iter()
                                    .map(|(col, value)| {
                                        Expr::Atom(engine.atoms.intern(
                                            Some(col),
                                            Test::Str {
                                                op: StrOp::Eq,
                                                needle: value.to_lowercase(),
                                                cased: false,
                                            },
                                        ))
                                    })
                                    .collect(),
                            )
                        })
                        .collect(),
                );
                exprs.push(expr.and_with(route));
            }
            let expr = if exprs.len() == 1 {
                exprs.remove(0)
            } else {
                Expr::Or(exprs)
            };
            let mut used = Vec::new();
            expr.atoms(&mut used);
            let mut unmapped: Vec<String> = used
                .iter()
                .filter_map(|&a| engine.atoms.atoms()[a].field.clone())
                .filter(|f| !engine.mapping.can_have(f))
                .collect();
            unmapped.sort();
            unmapped.dedup();
            let index =
                u32::try_from(loaded.len()).map_err(|_| Error::invalid("too many rules"))?;
            engine.rules.push((index, expr));
            loaded.push(LoadedRule {
                meta: rule.meta,
                logsource: rule.logsource,
                kind: routing.kind,
                source,
                unmapped_fields: unmapped,
            });
        }
        for engine in kinds.values_mut() {
            engine.finish()?;
        }
        // Correlations reference loaded rules or other correlations, by name or id; one that
        // names anything else is refused with the names it could not find.
        let known = |r: &str| {
            loaded
                .iter()
                .any(|l: &LoadedRule| l.meta.id == r || l.meta.name.as_deref() == Some(r))
                || correlations
                    .iter()
                    .any(|(_, c)| c.id == r || c.name.as_deref() == Some(r))
        };
        let mut kept = Vec::new();
        for (source, c) in &correlations {
            let missing: Vec<&str> = c
                .rules
                .iter()
                .map(String::as_str)
                .filter(|r| !known(r))
                .collect();
            if missing.is_empty() {
                kept.push((source.clone(), c.clone()));
            } else {
                errors.push(LoadError {
                    source: source.clone(),
                    rule_id: Some(c.id.clone()).filter(|s| !s.is_empty()),
                    title: Some(c.title.clone()),
                    class: "invalid",
                    reason: format!(
                        "correlation references rules that did not load: {}",
                        missing.join(", ")
                    ),
                });
            }
        }
        Ok(RuleSet {
            rules: loaded,
            errors,
            kinds,
            correlations: kept,
        })
    }
}

impl RuleSet {
    /// Rules that loaded, indexed by [`Match::rule`].
    pub fn rules(&self) -> &[LoadedRule] {
        &self.rules
    }

    /// Documents that did not load.
    pub fn errors(&self) -> &[LoadError] {
        &self.errors
    }

    /// The correlation rules that parsed and whose references all loaded, with their files.
    pub fn correlations(&self) -> &[(String, crate::correlation::Correlation)] {
        &self.correlations
    }

    /// A loaded rule's compiled expression (routing included), with the atoms it indexes and the
    /// mapping of its kind: what [`crate::sql`] translates.
    pub fn compiled(&self, rule: usize) -> Option<(&Expr, &AtomTable, &KindMapping)> {
        let kind = self.rules.get(rule)?.kind;
        let engine = self.kinds.get(&kind)?;
        let (_, expr) = engine.rules.iter().find(|(r, _)| *r as usize == rule)?;
        Some((expr, &engine.atoms, &engine.mapping))
    }

    /// Number of distinct atoms per source kind (a measure of sharing).
    pub fn atom_counts(&self) -> Vec<(SourceKind, usize)> {
        self.kinds
            .iter()
            .map(|(k, e)| (*k, e.atoms.atoms().len()))
            .collect()
    }

    /// Matches every rule of the batch's kind against every row; matches come grouped by rule.
    pub fn match_batch(&self, kind: SourceKind, batch: &RecordBatch) -> Result<Vec<Match>> {
        let reader = BatchReader::new(kind, batch).map_err(|e| Error::invalid(e.to_string()))?;
        let mut out = Vec::new();
        if let Some(engine) = self.kinds.get(&kind) {
            engine.match_batch(&reader, &mut out);
        }
        Ok(out)
    }

    /// The same result as [`RuleSet::match_batch`], computed row by row with the reference
    /// definitions: the oracle of the property tests.
    pub fn match_batch_reference(
        &self,
        kind: SourceKind,
        batch: &RecordBatch,
    ) -> Result<Vec<Match>> {
        let reader = BatchReader::new(kind, batch).map_err(|e| Error::invalid(e.to_string()))?;
        let mut out = Vec::new();
        if let Some(engine) = self.kinds.get(&kind) {
            engine.match_reference(&reader, &mut out);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A value is found again while no other value took its place, whatever its length; a
    /// value never put is not found.
    #[test]
    fn recent_values_are_found_again_until_replaced() {
        let values: Vec<String> = (0..3_000)
            .map(|i| "x".repeat(i % 20) + &i.to_string())
            .collect();
        let mut recent: Recent<'_, usize> = Recent::default();
        let mut placed: HashMap<usize, usize> = HashMap::new();
        for (i, v) in values.iter().enumerate() {
            recent.put(v, i);
            placed.insert(Recent::<usize>::place(v), i);
        }
        for (i, v) in values.iter().enumerate() {
            let last_here = placed.get(&Recent::<usize>::place(v)) == Some(&i);
            assert_eq!(recent.get(v), last_here.then_some(i), "{v:?}");
        }
        assert_eq!(recent.get("never put"), None);
        assert!(placed.len() > 900, "{} places of 1,024 used", placed.len());
    }

    /// Without keyword tests there is nothing to search a row's values for: no joined search.
    #[test]
    fn only_a_matcher_with_needles_joins_values() {
        let empty = FieldMatcher::build(&AtomTable::default(), &[]);
        assert!(empty.is_ok_and(|m| m.is_empty() && m.joiner.is_none()));
    }
}
