//! Sigma → ClickHouse SQL: a compiled rule as a `WHERE` condition over Varde's `events` table, with
//! the semantics of [`crate::reference`], for hunting in history.
//!
//! The table keeps each event's typed columns and attributes as parallel `field_keys` /
//! `field_values` arrays, so a field test becomes an `arrayExists` over the pairs, with the same
//! preference order as the engine: attributes named like the field, else the mapped column, else
//! attributes whose name without spaces is the field.
//!
//! Written for ClickHouse 18.16 (Debian's) and current releases, and checked on both: on 18.16
//! by `tests/sigma_sql.rs`, on a current release (chdb) by `deploy/dev/check-sigma-sql-current.py`
//! in CI. Where the two differ, the SQL only uses what both do alike:
//! - **Conversions that fail.** `IPv4StringToNum`/`IPv6StringToNum` return 0 on malformed text in
//!   18.16 and throw in current releases (`300.1.1.1`, `C:\x`, `::zz`, `010.1.2.3`, a trailing
//!   space). They are only ever given text that a regular expression has found to be an address
//!   in Rust's `IpAddr` grammar (what the engine accepts); anything else is replaced by a constant
//!   address *before* the call, with `if`. So the SQL is safe whether or not the server
//!   short-circuits `AND`/`if`: 18.16 evaluates every branch, and current releases, which
//!   short-circuit at the top level, still evaluate every function of an `arrayExists` lambda on
//!   every element (the old guard `match(v, …) AND IPv4StringToNum(v)` threw there). The trimmed
//!   text is bound once by a one-element `arrayExists`, so the long patterns appear once per test.
//! - Functions both releases run alike, checked by both differential tests: `lowerUTF8` on ASCII
//!   and Norwegian letters, `position`/`startsWith`/`endsWith` (an empty needle matches),
//!   `match`/`extract`/`replaceRegexpOne` (RE2 in UTF-8 mode), nested `arrayExists` lambdas over
//!   the outer lambda's variables, `has`, `multiIf`, `toUInt64OrZero`. The SQL uses no `base64`,
//!   `like`/`ilike`, `…OrDefault` or `toIPv4OrNull`-style functions: base64 modifiers are
//!   compiled to literal needles, and 18.16 lacks the newer conversion functions.
//! - **Number text.** `toFloat64OrNull` reads `+4`, `+inf` and `+.5e-1` as numbers in current
//!   releases and as NULL in 18.16, and `.` and `e5` as 0 in 18.16: `lt`/`gt` first check the
//!   text against Rust's `f64` grammar (what the engine parses) and drop a leading `+`.
//! - **Time text.** `parseDateTimeBestEffortOrNull` turns `4444` into 1970 in 18.16 and 2106 in
//!   current releases, wraps `2024-02-31` into March in 18.16 (NULL now) and clamps years outside
//!   1970–2105 differently: the time modifiers read only the engine's forms (below) and work in
//!   UTC whatever the server's time zone.
//! - **`.` and newlines.** ClickHouse's `match` lets `.` match a newline unless the pattern says
//!   `(?-s)`; Rust's `regex` (the engine) does not without `(?s)`. Rule regular expressions are
//!   sent as `(?-s)(?:<re>)` (wildcards already carry `(?s)`). The group also turns off 18.16's
//!   regex prefilter, which ignores a leading `(?i)`.
//! - Values are trimmed of Unicode white space before `cidr`, `lt`/`gt` and time tests, as the
//!   engine trims them.
//!
//! Known differences, on inputs real events rarely carry: 18.16's `lowerUTF8` folds fewer
//! characters than Rust's Unicode lowercase (e.g. `İ`, `ẞ`, final `Σ`; current releases fold them
//! as Rust does); RE2's `\d`, `\w`, `\s`, `\b` are ASCII where Rust's are Unicode; the time
//! modifiers read `YYYY-MM-DD[T ]HH:MM:SS[.f][Z|±HH:MM]` (years 1970–2105) and whole seconds or
//! milliseconds since 1970 up to 2106, where the engine also takes other chrono forms, leap
//! seconds and times outside ClickHouse's `DateTime` range.

use varde_core::SourceKind;
use varde_core::schema::{ColumnType, typed_columns};

use crate::compile::{Atom, AtomTable, CmpOp, Expr, StrOp, Test, TimePart};
use crate::mapping::{Column, KindMapping};
use crate::{Error, Result};

/// A ClickHouse string literal (on one line: newlines, tabs and returns are escaped).
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('\'');
    out
}

/// The condition of a compiled rule (see [`crate::RuleSet::compiled`]) over the `events` table,
/// including `source_kind = '<kind>'`.
pub fn condition(expr: &Expr, atoms: &AtomTable, mapping: &KindMapping) -> Result<String> {
    let body = expr_sql(expr, atoms, mapping)?;
    Ok(format!(
        "(source_kind = {} AND ({body}))",
        quote(mapping.kind.name())
    ))
}

fn expr_sql(expr: &Expr, atoms: &AtomTable, m: &KindMapping) -> Result<String> {
    Ok(match expr {
        Expr::True => "1".into(),
        Expr::False => "0".into(),
        Expr::Atom(a) => atom_sql(&atoms.atoms()[*a], m)?,
        Expr::Not(e) => format!("NOT ({})", expr_sql(e, atoms, m)?),
        Expr::And(es) => join(es, " AND ", atoms, m)?,
        Expr::Or(es) => or_sql(es, atoms, m)?,
    })
}

/// A disjunction, with the value tests on one field merged into a single scan of its values.
fn or_sql(es: &[Expr], atoms: &AtomTable, m: &KindMapping) -> Result<String> {
    let mut by_field: Vec<(String, Vec<String>)> = Vec::new();
    let mut rest: Vec<String> = Vec::new();
    for e in es {
        if let Expr::Atom(a) = e {
            let atom = &atoms.atoms()[*a];
            if let (Some(field), Some(pred)) = (atom.field.as_deref(), value_pred_fn(&atom.test))
                && in_arrays(field, m)
            {
                let p = pred("v0")?;
                match by_field.iter_mut().find(|(f, _)| f == field) {
                    Some((_, preds)) => preds.push(p),
                    None => by_field.push((field.to_owned(), vec![p])),
                }
                continue;
            }
        }
        rest.push(format!("({})", expr_sql(e, atoms, m)?));
    }
    for (field, preds) in by_field {
        let joined = preds
            .iter()
            .map(|p| format!("({p})"))
            .collect::<Vec<_>>()
            .join(" OR ");
        rest.push(format!(
            "arrayExists((k0, v0) -> {} AND ({joined}), field_keys, field_values)",
            key_pred(field.as_str(), m, "k0")
        ));
    }
    Ok(if rest.is_empty() {
        "0".into()
    } else {
        rest.join(" OR ")
    })
}

/// Whether a field's values live in the `field_keys`/`field_values` arrays (attributes and the
/// kind's typed columns do; host, message and severity have columns of their own).
fn in_arrays(field: &str, m: &KindMapping) -> bool {
    !matches!(
        m.spec(field).column,
        Some(Column::Host | Column::Message | Column::Severity | Column::EventTime)
    )
}

/// The key test selecting a field's values among the pairs, with the engine's preference order:
/// attributes named like the field, else the mapped column, else attributes whose name without
/// spaces is the field.
fn key_pred(field: &str, m: &KindMapping, k: &str) -> String {
    let spec = m.spec(field);
    let column = match spec.column {
        Some(Column::Typed(i)) => typed_columns(m.kind).get(i).map(|c| c.name),
        _ => None,
    };
    let Some(attr) = &spec.attr else {
        return format!("{k} = {}", quote(column.unwrap_or("")));
    };
    let spaced = format!(
        "position({k}, ' ') > 0 AND replaceAll({k}, ' ', '') = {}",
        quote(attr)
    );
    let fallback = match column {
        Some(c) => format!(
            "({k} = {c} OR (NOT has(field_keys, {c}) AND {spaced}))",
            c = quote(c)
        ),
        None => format!("({spaced})"),
    };
    format!(
        "({k} = {a} OR (NOT has(field_keys, {a}) AND {fallback}))",
        a = quote(attr)
    )
}

/// For tests that look at one value at a time, the predicate on a value expression.
#[allow(clippy::type_complexity)]
fn value_pred_fn(test: &Test) -> Option<Box<dyn Fn(&str) -> Result<String> + '_>> {
    Some(match test {
        Test::Str { op, needle, cased } => Box::new(move |v| Ok(str_pred(*op, needle, *cased, v))),
        Test::Glob { regex, cased, .. } => Box::new(move |v| {
            let hay = if *cased {
                v.to_owned()
            } else {
                format!("lowerUTF8({v})")
            };
            Ok(format!("match({hay}, {})", quote(regex.as_str())))
        }),
        Test::Regex(regex) => Box::new(move |v| {
            Ok(format!(
                "match({v}, {})",
                quote(&format!("(?-s)(?:{})", regex.as_str()))
            ))
        }),
        Test::Cidr(net) => Box::new(move |v| Ok(cidr_pred(net, v))),
        Test::Cmp(op, n) => {
            let sym = match op {
                CmpOp::Lt => "<",
                CmpOp::Lte => "<=",
                CmpOp::Gt => ">",
                CmpOp::Gte => ">=",
            };
            Box::new(move |v| {
                let pred = format!(
                    "ifNull(toFloat64OrNull(replaceRegexpOne(x, '^\\\\+', '')) {sym} {n:?}, 0)"
                );
                Ok(with_trimmed(v, NUMBER_RE, "x", &pred))
            })
        }
        Test::Time(part, n) => {
            let f = match part {
                TimePart::Minute => "toMinute",
                TimePart::Hour => "toHour",
                TimePart::Day => "toDayOfMonth",
                TimePart::Week => "toISOWeek",
                TimePart::Month => "toMonth",
                TimePart::Year => "toYear",
            };
            Box::new(move |v| {
                let pred = format!("ifNull({f}({}, 'UTC') = {n}, 0)", time_sql("t"));
                Ok(with_trimmed(v, &time_sql_re(), "t", &pred))
            })
        }
        Test::Exists(_) | Test::Null | Test::FieldRef { .. } => return None,
    })
}

fn join(es: &[Expr], op: &str, atoms: &AtomTable, m: &KindMapping) -> Result<String> {
    let parts = es
        .iter()
        .map(|e| expr_sql(e, atoms, m).map(|s| format!("({s})")))
        .collect::<Result<Vec<_>>>()?;
    Ok(parts.join(op))
}

/// SQL that is true when any value of `field` satisfies `pred(v)` (with `v` an SQL expression);
/// `depth` keeps nested lambda variables apart.
fn any_value(
    field: &str,
    m: &KindMapping,
    depth: usize,
    pred: &dyn Fn(&str) -> Result<String>,
) -> Result<String> {
    let spec = m.spec(field);
    let (k, v) = (format!("k{depth}"), format!("v{depth}"));
    if in_arrays(field, m) {
        return Ok(format!(
            "arrayExists(({k}, {v}) -> {} AND ({}), field_keys, field_values)",
            key_pred(field, m, &k),
            pred(&v)?
        ));
    }
    let pairs = |key_test: String, p: String| {
        format!("arrayExists(({k}, {v}) -> {key_test} AND ({p}), field_keys, field_values)")
    };
    let column = match spec.column {
        None => "0".to_owned(),
        Some(Column::Host) => format!("(host != '' AND ({}))", pred("host")?),
        Some(Column::Message) => format!("(message != '' AND ({}))", pred("message")?),
        Some(Column::Severity) => format!(
            "(isNotNull(severity) AND ({}))",
            pred("toString(assumeNotNull(severity))")?
        ),
        Some(Column::EventTime) => {
            return Err(Error::Unsupported(format!(
                "field '{field}': the event time in SQL"
            )));
        }
        Some(Column::Typed(i)) => {
            let name = typed_columns(m.kind)
                .get(i)
                .map(|c| c.name)
                .ok_or_else(|| Error::invalid(format!("field '{field}': no such column")))?;
            pairs(format!("{k} = {}", quote(name)), pred(&v)?)
        }
    };
    let Some(attr) = &spec.attr else {
        return Ok(column);
    };
    let exact = pairs(format!("{k} = {}", quote(attr)), pred(&v)?);
    let spaced = pairs(
        format!(
            "position({k}, ' ') > 0 AND replaceAll({k}, ' ', '') = {}",
            quote(attr)
        ),
        pred(&v)?,
    );
    let column_has_value = match spec.column {
        None => "0".to_owned(),
        Some(Column::Host) => "host != ''".into(),
        Some(Column::Message) => "message != ''".into(),
        Some(Column::Severity) => "isNotNull(severity)".into(),
        Some(Column::EventTime) => "1".into(),
        Some(Column::Typed(i)) => {
            let name = typed_columns(m.kind).get(i).map_or("", |c| c.name);
            format!("has(field_keys, {})", quote(name))
        }
    };
    Ok(format!(
        "if(has(field_keys, {}), {exact}, if({column_has_value}, {column}, {spaced}))",
        quote(attr)
    ))
}

fn str_pred(op: StrOp, needle: &str, cased: bool, v: &str) -> String {
    let hay = if cased {
        v.to_owned()
    } else {
        format!("lowerUTF8({v})")
    };
    let n = quote(needle);
    match op {
        StrOp::Eq => format!("{hay} = {n}"),
        StrOp::Contains => format!("position({hay}, {n}) > 0"),
        StrOp::StartsWith => format!("startsWith({hay}, {n})"),
        StrOp::EndsWith => format!("endsWith({hay}, {n})"),
    }
}

/// The characters Rust's `str::trim` removes (Unicode `White_Space`), as an RE2 class.
const WS: &str =
    r"[\t\n\x0B\f\r \x{85}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}]";

/// An IPv4 address as Rust's `Ipv4Addr` reads it: four decimal octets up to 255, no leading zeros.
const IPV4_RE: &str = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}";

/// A number as Rust's `f64::from_str` reads it.
const NUMBER_RE: &str =
    r"[+-]?(?:(?i:inf|infinity|nan)|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)";

/// A time in the forms both the engine's `parse_time` and ClickHouse read alike: a valid
/// calendar date between 1970 and 2105, `T` or space, a time, an optional fraction and offset.
const DATE_TIME_RE: &str = concat!(
    r"(?:(?:19[7-9][0-9]|20[0-9][0-9]|210[0-5])-(?:(?:0[13578]|1[02])-(?:0[1-9]|[12][0-9]|3[01])|(?:0[469]|11)-(?:0[1-9]|[12][0-9]|30)|02-(?:0[1-9]|1[0-9]|2[0-8]))",
    r"|(?:19(?:7[26]|8[048]|9[26])|20(?:[02468][048]|[13579][26])|2104)-02-29)",
    r"[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,9})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])?"
);

/// An IPv6 address as Rust's `Ipv6Addr` reads it: eight groups of one to four hex digits, or
/// fewer around one `::` standing for at least one zero group, the last two groups possibly
/// written as an IPv4 address (not before the `::`). No zone, no brackets.
fn ipv6_re() -> String {
    const H: &str = "[0-9A-Fa-f]{1,4}";
    // One to `max` groups ending the address (an IPv4 address counts as two).
    let tail = |max: usize| -> String {
        let mut alts = vec![format!("(?:{H}:){{0,{}}}{H}", max - 1)];
        if max >= 2 {
            alts.push(format!("(?:{H}:){{0,{}}}{IPV4_RE}", max - 2));
        }
        alts.join("|")
    };
    let mut alts = vec![
        format!("(?:{H}:){{7}}{H}"),
        format!("(?:{H}:){{6}}{IPV4_RE}"),
    ];
    for head in 0..=7usize {
        let head_re = match head {
            0 => String::new(),
            1 => H.to_owned(),
            n => format!("(?:{H}:){{{}}}{H}", n - 1),
        };
        let room = 7 - head;
        let tail_re = if room == 0 {
            String::new()
        } else {
            format!("(?:{})?", tail(room))
        };
        alts.push(format!("{head_re}::{tail_re}"));
    }
    format!("(?:{})", alts.join("|"))
}

/// The part of `v` matching `re` once trimmed of white space, or `''` when it does not match.
fn trimmed_match(v: &str, re: &str) -> String {
    format!("extract({v}, {})", quote(&format!("^{WS}*({re}){WS}*$")))
}

/// `pred(x)` with `x` bound, by a one-element `arrayExists`, to the part of `v` matching `re`
/// once trimmed (`''` when it does not match): the long pattern is written, and run, once.
fn with_trimmed(v: &str, re: &str, x: &str, pred: &str) -> String {
    format!("arrayExists({x} -> {pred}, [{}])", trimmed_match(v, re))
}

/// The time the text `t` (already matched by [`time_sql_re`]) stands for, as a
/// Nullable(DateTime) in UTC: the forms of [`DATE_TIME_RE`], and whole seconds or milliseconds
/// since 1970 (more than 10^11 is milliseconds, as in the engine) up to 2106.
fn time_sql(t: &str) -> String {
    let n = format!("toUInt64OrZero(replaceRegexpOne({t}, '^\\\\+', ''))");
    format!(
        "multiIf(position({t}, '-') > 0, parseDateTimeBestEffortOrNull({t}, 'UTC'), \
         {t} = '', NULL, \
         {n} <= 4294967295, toDateTime(toUInt32(least({n}, 4294967295)), 'UTC'), \
         {n} > 100000000000 AND {n} <= 4294967295999, toDateTime(toUInt32(least(intDiv({n}, 1000), 4294967295)), 'UTC'), \
         NULL)"
    )
}

/// The text forms the time modifiers read (see [`time_sql`]).
fn time_sql_re() -> String {
    format!(r"{DATE_TIME_RE}|\+?[0-9]{{1,13}}")
}

fn cidr_pred(net: &ipnet::IpNet, v: &str) -> String {
    match net {
        ipnet::IpNet::V4(n) => {
            let mask: u32 = if n.prefix_len() == 0 {
                0
            } else {
                u32::MAX << (32 - n.prefix_len())
            };
            // The `if` keeps malformed text away from IPv4StringToNum, which throws on it in
            // current releases, even where `AND` does not short-circuit (inside lambdas, and
            // everywhere in 18.16).
            let pred = format!(
                "ip != '' AND bitAnd(IPv4StringToNum(if(ip = '', '0.0.0.0', ip)), {mask}) = {}",
                u32::from(n.network()) & mask
            );
            with_trimmed(v, IPV4_RE, "ip", &pred)
        }
        ipnet::IpNet::V6(n) => {
            let bytes = n.network().octets();
            let full = usize::from(n.prefix_len() / 8);
            let rest = n.prefix_len() % 8;
            let addr = "IPv6StringToNum(if(ip = '', '::', ip))";
            let mut conds = vec!["ip != ''".to_owned()];
            if full > 0 {
                let hex: String = bytes[..full].iter().map(|b| format!("{b:02X}")).collect();
                conds.push(format!("substring({addr}, 1, {full}) = unhex('{hex}')"));
            }
            if rest > 0 {
                let mask = 0xffu8 << (8 - rest);
                conds.push(format!(
                    "bitAnd(reinterpretAsUInt8(substring({addr}, {}, 1)), {mask}) = {}",
                    full + 1,
                    bytes[full] & mask
                ));
            }
            with_trimmed(v, &ipv6_re(), "ip", &conds.join(" AND "))
        }
    }
}

fn atom_sql(atom: &Atom, m: &KindMapping) -> Result<String> {
    let Some(field) = atom.field.as_deref() else {
        return keyword_sql(&atom.test, m.kind);
    };
    if let Some(pred) = value_pred_fn(&atom.test) {
        return any_value(field, m, 0, &*pred);
    }
    Ok(match &atom.test {
        Test::Exists(b) => {
            let present = any_value(field, m, 0, &|_| Ok("1".into()))?;
            if *b {
                present
            } else {
                format!("NOT ({present})")
            }
        }
        Test::Null => format!(
            "NOT ({})",
            any_value(field, m, 0, &|v| Ok(format!("{v} != ''")))?
        ),
        Test::FieldRef { other, op, cased } => any_value(field, m, 0, &|v| {
            any_value(other, m, 1, &|o| {
                let (a, b) = if *cased {
                    (v.to_owned(), o.to_owned())
                } else {
                    (format!("lowerUTF8({v})"), format!("lowerUTF8({o})"))
                };
                Ok(match op {
                    StrOp::Eq => format!("{a} = {b}"),
                    StrOp::Contains => format!("position({a}, {b}) > 0"),
                    StrOp::StartsWith => format!("startsWith({a}, {b})"),
                    StrOp::EndsWith => format!("endsWith({a}, {b})"),
                })
            })
        })?,
        _ => return Err(Error::invalid("value test handled above")),
    })
}

/// Keywords: any text field (message, host, text columns, attribute values).
fn keyword_sql(test: &Test, kind: SourceKind) -> Result<String> {
    let numeric: Vec<String> = typed_columns(kind)
        .iter()
        .filter(|c| c.ty != ColumnType::Utf8)
        .map(|c| quote(c.name))
        .collect();
    let pred = |v: &str| -> Result<String> {
        Ok(match test {
            Test::Str { op, needle, cased } => str_pred(*op, needle, *cased, v),
            Test::Glob { regex, cased, .. } => {
                let hay = if *cased {
                    v.to_owned()
                } else {
                    format!("lowerUTF8({v})")
                };
                format!("match({hay}, {})", quote(regex.as_str()))
            }
            _ => {
                return Err(Error::Unsupported(
                    "keyword search with this modifier in SQL".into(),
                ));
            }
        })
    };
    let key_test = if numeric.is_empty() {
        "1".to_owned()
    } else {
        format!("k0 NOT IN ({})", numeric.join(", "))
    };
    Ok(format!(
        "(message != '' AND ({})) OR (host != '' AND ({})) OR arrayExists((k0, v0) -> {key_test} AND ({}), field_keys, field_values)",
        pred("message")?,
        pred("host")?,
        pred("v0")?
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings near the edges of the address, number and time grammars.
    const TRICKY: &[&str] = &[
        "10.1.2.3",
        " 10.1.2.3\t",
        "300.1.1.1",
        "010.1.2.3",
        "1.2.3",
        "1.2.3.4.5",
        "255.255.255.255",
        "256.0.0.1",
        "0.0.0.0",
        "1.2.3.04",
        "C:\\x",
        "C:\\Windows\\x",
        "::zz",
        "::",
        "::1",
        "1::",
        ":1::",
        "1:::2",
        "fe80::1",
        "FE80::1%eth0",
        "[::1]",
        "::ffff:10.1.2.3",
        "::1.2.3.4",
        "1:2:3:4:5:6:1.2.3.4",
        "1:2:3:4:5:6:7:1.2.3.4",
        "1.2.3.4::",
        "1:2:3:4:5:6:7:8",
        "1:2:3:4:5:6:7:8:9",
        "1:2:3:4:5:6:7::",
        "1:2:3:4:5:6:7:8::",
        "::1:2:3:4:5:6:7",
        "::1:2:3:4:5:6:7:8",
        "1::2:3:4:5:6:7",
        "1::2:3:4:5:6:7:8",
        "12345::",
        "0000:0::00",
        "2001:db8:8123::1",
        "1::1.2.3.4",
        "1:2:3:4:5::1.2.3.4",
        "1:2:3:4:5:6::1.2.3.4",
        "4",
        "+4",
        "-4",
        "+.5e-1",
        ".",
        "e5",
        "1e",
        "inf",
        "+INF",
        "-Infinity",
        "nan",
        "NaN",
        "5.",
        ".5",
        "1E3",
        "0x10",
        "1_0",
        " 4 ",
        "4 x",
        "\u{a0}7\u{3000}",
    ];

    fn rust_re(re: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?:{re})$")).expect("regex")
    }

    #[test]
    fn address_patterns_accept_what_rust_parses() {
        let v4 = rust_re(IPV4_RE);
        let v6 = rust_re(&ipv6_re());
        for s in TRICKY {
            let t = s.trim();
            assert_eq!(
                v4.is_match(t),
                t.parse::<std::net::Ipv4Addr>().is_ok(),
                "IPv4 {s:?}"
            );
            assert_eq!(
                v6.is_match(t),
                t.parse::<std::net::Ipv6Addr>().is_ok(),
                "IPv6 {s:?}"
            );
        }
        // Random strings over the addresses' alphabet.
        let alphabet = b"0123456789aF:.";
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        for _ in 0..200_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 24) as usize;
            let mut y = x;
            let s: String = (0..len)
                .map(|_| {
                    y = y.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    alphabet[((y >> 33) % alphabet.len() as u64) as usize] as char
                })
                .collect();
            assert_eq!(
                v4.is_match(&s),
                s.parse::<std::net::Ipv4Addr>().is_ok(),
                "{s:?}"
            );
            assert_eq!(
                v6.is_match(&s),
                s.parse::<std::net::Ipv6Addr>().is_ok(),
                "{s:?}"
            );
        }
    }

    #[test]
    fn number_pattern_accepts_what_rust_parses() {
        let re = rust_re(NUMBER_RE);
        for s in TRICKY
            .iter()
            .chain(&["+-4", "--4", "4e+", "4e+1", "infinit", "+nan", "Inf"])
        {
            let t = s.trim();
            assert_eq!(re.is_match(t), t.parse::<f64>().is_ok(), "{s:?}");
        }
    }

    #[test]
    fn time_pattern_accepts_only_what_the_engine_reads() {
        let re = rust_re(DATE_TIME_RE);
        for s in [
            "2024-05-01 03:15:00.000",
            "2024-05-01T03:15:00",
            "2024-05-01T03:15:00Z",
            "2024-05-01 03:15:00+02:00",
            "2024-02-29 00:00:00",
            "2000-02-29 00:00:00",
            "2105-12-31 23:59:59.123456789",
        ] {
            assert!(re.is_match(s), "{s}");
            assert!(crate::reference::parse_time(s).is_some(), "{s}");
        }
        for s in [
            "2023-02-29 00:00:00",
            "2100-02-29 00:00:00",
            "2024-04-31 00:00:00",
            "2024-13-01 00:00:00",
            "2024-05-01 24:00:00",
            "1969-12-31 23:59:59",
            "2024-05-01",
            "4444",
        ] {
            assert!(!re.is_match(s), "{s}");
        }
    }
}
