//! Literal prefilters for regular expressions.
//!
//! Most values of a field match none of its regular expressions, and most regular expressions
//! of Sigma rules contain literal text (`ipconfig\s+/all`, `https?://`, ` [0-7]{7,13}`). For
//! each expression we derive a small set of literals such that **every match contains at least
//! one of them**: either with ASCII letters lowercased, to be searched ASCII-case-insensitively
//! (which only widens the filter), or exact, to be searched as they are, whichever filters
//! better (see [`required_literals`]). The engine scans a value once for the literals of all expressions of a
//! field and runs only the expressions whose literals occurred; expressions without a usable set
//! stay in one [`regex::RegexSet`].
//!
//! The derivation walks the expression's syntax tree (`regex-syntax`, the parser the `regex`
//! crate itself uses, with the same default options). For each node it computes the finite set
//! of strings the node matches exactly, when small, and a set of literals one of which occurs in
//! every match of the node:
//! - a literal matches itself; a class of at most [`MAX_CLASS`] characters matches each of
//!   them; assertions match the empty string;
//! - a concatenation multiplies out adjacent exact sets while the product stays within
//!   [`MAX_SET`] strings; each such run, and each child's own required set, is required of the
//!   whole;
//! - an alternation requires the union of its branches' sets (every branch must have one);
//! - a repetition with minimum ≥ 1 requires what its body requires, or its body's exact set;
//!   a repetition that may match nothing requires nothing.
//!
//! Sets containing the empty string, or any literal shorter than [`MIN_LEN`] bytes, are not used.

use regex_syntax::hir::{Class, Hir, HirKind};

/// Largest number of strings an exact or required set may hold.
const MAX_SET: usize = 64;
/// Largest class expanded into its characters.
const MAX_CLASS: u32 = 8;
/// Shortest literal worth a prefilter, unless it is one of the [`RARE`] bytes.
const MIN_LEN: usize = 2;
/// Single bytes rare enough in event values to be worth a prefilter on their own (the
/// obfuscation patterns `\^.*\^.*\^`, `` `.*`.*` ``, `\+.*\+.*\+`).
const RARE: &[u8] = b"^`+{}<>|&;~!@#$%*[]";

type Set = Vec<Vec<u8>>;

#[derive(Default)]
struct Info {
    /// Every string the node can match, when that set is small.
    exact: Option<Set>,
    /// Literals one of which occurs in every match of the node.
    required: Option<Set>,
    /// Strings one of which starts every match (the exact set when there is one).
    prefix: Option<Set>,
    /// Strings one of which ends every match (the exact set when there is one).
    suffix: Option<Set>,
}

impl Info {
    fn exact(set: Option<Set>) -> Info {
        Info {
            prefix: set.clone(),
            suffix: set.clone(),
            exact: set,
            required: None,
        }
    }
}

/// The literals of a pattern's prefilter and how to search them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Literals {
    /// One of these occurs in every match.
    pub set: Vec<Vec<u8>>,
    /// Search them exactly (`true`), or ASCII-case-insensitively with ASCII letters lowercased
    /// (`false`).
    pub cased: bool,
}

/// Literals one of which occurs in every match of `pattern`, or `None` when no useful set was
/// found (the pattern does not parse, or its literals are too short or too many).
///
/// Two sets are derived: one with ASCII letters lowercased, to be searched
/// ASCII-case-insensitively (which only widens the filter, and lets a case-insensitive
/// expression's variants collapse into one longer literal), and one exact. The exact set wins
/// when it is at least as good: a case-sensitive `\s-[FTd]\s` then waits for `-T`, not for
/// every `--type`.
pub(super) fn required_literals(pattern: &str) -> Option<Literals> {
    let hir = regex_syntax::ParserBuilder::new()
        .build()
        .parse(pattern)
        .ok()?;
    let usable = |set: Set| {
        set.iter()
            .all(|l| {
                l.len() >= MIN_LEN || (l.len() == 1 && l.first().is_some_and(|b| RARE.contains(b)))
            })
            .then_some(set)
    };
    let pick = |fold: bool| {
        let info = analyse(&hir, fold);
        better(info.required, info.exact).and_then(usable)
    };
    let folded = pick(true);
    let cased = pick(false);
    match (folded, cased) {
        (Some(f), Some(c)) if score(&c) >= score(&f) => Some(Literals {
            set: c,
            cased: true,
        }),
        (Some(f), _) => Some(Literals {
            set: f,
            cased: false,
        }),
        (None, Some(c)) => Some(Literals {
            set: c,
            cased: true,
        }),
        (None, None) => None,
    }
}

fn normalise(mut set: Set, fold: bool) -> Set {
    if fold {
        for l in &mut set {
            l.make_ascii_lowercase();
        }
    }
    set.sort_unstable();
    set.dedup();
    set
}

/// Preference key of a required set: longer shortest literal first (up to 8 bytes; a set of
/// [`RARE`] single bytes ranks between one and two bytes), then fewer literals. `None` for sets
/// that filter nothing.
fn score(set: &Set) -> Option<(usize, std::cmp::Reverse<usize>, usize)> {
    if set.is_empty() || set.iter().any(Vec::is_empty) {
        return None;
    }
    let min = set.iter().map(Vec::len).min().unwrap_or(0);
    let rare = set
        .iter()
        .all(|l| l.len() > 1 || l.first().is_some_and(|b| RARE.contains(b)));
    let rank = if min == 1 && rare { 3 } else { min.min(8) * 2 };
    Some((rank, std::cmp::Reverse(set.len()), min))
}

fn better(a: Option<Set>, b: Option<Set>) -> Option<Set> {
    let sa = a.as_ref().and_then(score);
    let sb = b.as_ref().and_then(score);
    match (sa, sb) {
        (None, None) => None,
        (Some(_), None) => a,
        (None, Some(_)) => b,
        (Some(x), Some(y)) => {
            if y > x {
                b
            } else {
                a
            }
        }
    }
}

fn class_strings(class: &Class, fold: bool) -> Option<Set> {
    let mut out = Vec::new();
    match class {
        Class::Unicode(c) => {
            let mut count = 0u32;
            for r in c.ranges() {
                count = count.saturating_add(u32::from(r.end()) - u32::from(r.start()) + 1);
                if count > MAX_CLASS {
                    return None;
                }
                for cp in u32::from(r.start())..=u32::from(r.end()) {
                    let ch = char::from_u32(cp)?;
                    let mut buf = [0u8; 4];
                    out.push(ch.encode_utf8(&mut buf).as_bytes().to_vec());
                }
            }
        }
        Class::Bytes(c) => {
            let mut count = 0u32;
            for r in c.ranges() {
                count = count.saturating_add(u32::from(r.end()) - u32::from(r.start()) + 1);
                if count > MAX_CLASS {
                    return None;
                }
                for b in r.start()..=r.end() {
                    out.push(vec![b]);
                }
            }
        }
    }
    Some(normalise(out, fold))
}

fn cross(a: &Set, b: &Set, fold: bool) -> Option<Set> {
    if a.len().saturating_mul(b.len()) > MAX_SET {
        return None;
    }
    let mut out = Vec::with_capacity(a.len() * b.len());
    for x in a {
        for y in b {
            let mut s = x.clone();
            s.extend_from_slice(y);
            out.push(s);
        }
    }
    Some(normalise(out, fold))
}

/// Union of sets, when every one is known and the union stays small.
fn union(sets: impl Iterator<Item = Option<Set>>, fold: bool) -> Option<Set> {
    let mut acc = Vec::new();
    for s in sets {
        acc.extend(s?);
        if acc.len() > MAX_SET {
            return None;
        }
    }
    Some(normalise(acc, fold))
}

fn analyse(hir: &Hir, fold: bool) -> Info {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => Info::exact(Some(vec![Vec::new()])),
        HirKind::Literal(l) => Info::exact(Some(normalise(vec![l.0.to_vec()], fold))),
        HirKind::Class(c) => Info::exact(class_strings(c, fold)),
        HirKind::Capture(c) => analyse(&c.sub, fold),
        HirKind::Repetition(r) => {
            if r.min == 0 {
                return Info::default();
            }
            let sub = analyse(&r.sub, fold);
            if r.min == 1 && r.max == Some(1) {
                return sub;
            }
            Info {
                exact: None,
                required: better(sub.required, sub.exact),
                prefix: sub.prefix,
                suffix: sub.suffix,
            }
        }
        HirKind::Concat(children) => {
            let infos: Vec<Info> = children.iter().map(|c| analyse(c, fold)).collect();
            let mut best: Option<Set> = None;
            let mut run: Set = vec![Vec::new()];
            let mut all_exact = true;
            for info in &infos {
                best = better(best, info.required.clone());
                if let Some(e) = &info.exact {
                    match cross(&run, e, fold) {
                        Some(product) => run = product,
                        None => {
                            all_exact = false;
                            best = better(best, Some(std::mem::replace(&mut run, e.clone())));
                        }
                    }
                    continue;
                }
                all_exact = false;
                // The run is followed by one of the child's prefixes.
                let joined = info
                    .prefix
                    .as_ref()
                    .and_then(|p| cross(&run, p, fold))
                    .unwrap_or_else(|| run.clone());
                best = better(best, Some(joined));
                run = info.suffix.clone().unwrap_or_else(|| vec![Vec::new()]);
            }
            let mut prefix = vec![Vec::new()];
            for info in &infos {
                let next = info.exact.as_ref().or(info.prefix.as_ref());
                match next.and_then(|n| cross(&prefix, n, fold)) {
                    Some(p) => prefix = p,
                    None => break,
                }
                if info.exact.is_none() {
                    break;
                }
            }
            let mut suffix = vec![Vec::new()];
            for info in infos.iter().rev() {
                let next = info.exact.as_ref().or(info.suffix.as_ref());
                match next.and_then(|n| cross(n, &suffix, fold)) {
                    Some(s) => suffix = s,
                    None => break,
                }
                if info.exact.is_none() {
                    break;
                }
            }
            let exact = all_exact.then(|| run.clone());
            Info {
                exact,
                required: better(best, Some(run)),
                prefix: Some(prefix),
                suffix: Some(suffix),
            }
        }
        HirKind::Alternation(branches) => {
            let infos: Vec<Info> = branches.iter().map(|b| analyse(b, fold)).collect();
            let exact = union(infos.iter().map(|i| i.exact.clone()), fold);
            let required = union(
                infos
                    .iter()
                    .map(|i| better(i.required.clone(), i.exact.clone())),
                fold,
            );
            let prefix = union(
                infos
                    .iter()
                    .map(|i| i.exact.clone().or_else(|| i.prefix.clone())),
                fold,
            );
            let suffix = union(
                infos
                    .iter()
                    .map(|i| i.exact.clone().or_else(|| i.suffix.clone())),
                fold,
            );
            Info {
                exact,
                required,
                prefix,
                suffix,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::required_literals;

    fn lits(p: &str) -> Option<Vec<String>> {
        required_literals(p).map(|s| {
            s.set
                .into_iter()
                .map(|l| String::from_utf8_lossy(&l).into_owned())
                .collect()
        })
    }

    #[test]
    fn literals_of_typical_sigma_expressions() {
        assert_eq!(lits(r"ipconfig\s+/all"), Some(vec!["ipconfig".into()]));
        assert_eq!(lits(r"https?://0[0-9]{3,11}"), Some(vec!["http".into()]));
        assert_eq!(lits(r"(?i)\s(-u|--user)\s*:").map(|v| v.len()), Some(3));
        assert_eq!(lits(r" [0-7]{7,13}").map(|v| v.len()), Some(8));
        assert_eq!(
            lits(r"(?i)kelvin"),
            Some(vec!["kelvin".into(), "\u{212a}elvin".into()])
        );
        // Nothing usable: everything optional, or only wide classes.
        assert_eq!(lits(r"a*"), None);
        assert_eq!(lits(r"\w+\s\d"), None);
        assert_eq!(lits(r"abc|\w"), None);
        assert_eq!(lits(r"("), None);
        assert_eq!(lits(r"\^.*\^.*\^"), Some(vec!["^".into()]));
        assert_eq!(lits(r":[^ \\]"), None);
        assert_eq!(lits(r"\s-\s*<"), Some(vec!["<".into()]));
        // A case-sensitive expression waits for its literals as written; a case-insensitive
        // one for their lowercase, searched ASCII-case-insensitively.
        let cased = required_literals(r"\s-[FTd]\s").expect("literals");
        assert!(cased.cased);
        assert_eq!(
            cased.set,
            vec![b"-F".to_vec(), b"-T".to_vec(), b"-d".to_vec()]
        );
        let folded = required_literals(r"(?i)\s-[FTd]\s").expect("literals");
        assert!(!folded.cased);
        assert_eq!(
            folded.set,
            vec![b"-d".to_vec(), b"-f".to_vec(), b"-t".to_vec()]
        );
        assert!(!required_literals(r"(?i)kelvin").expect("literals").cased);
        assert_eq!(
            lits(r"(?i)\.exe\s+[^\x22]{0,64}wermgr\.exe"),
            Some(vec!["wermgr.exe".into()])
        );
    }
}
