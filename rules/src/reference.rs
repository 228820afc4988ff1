//! The plain, row-at-a-time meaning of every test: the definition the vectorised engine must
//! agree with (a property test checks it), and the evaluator of the tests that are per-row by
//! nature (regex, CIDR, numbers, presence, field references, time parts).
//!
//! Decisions where Sigma engines disagree (each has a test in `tests/semantics.rs`):
//! - **Case:** text compares case-insensitively by Unicode lowercase (`str::to_lowercase`) of
//!   both sides, so `Æ` matches `æ`; `cased` compares exactly; regular expressions are
//!   case-sensitive unless `|i` or `(?i)`.
//! - **Numbers:** a rule number matches the field's text in decimal form: `EventID: 4624` matches
//!   `4624` whether it arrived as a number or as the string `"4624"`; `lt`/`gt` read the field
//!   as a number and fail on text that is not one.
//! - **Several values in a field** (a list in the event, or a repeated attribute): a test
//!   holds if it holds for any one value; `null` holds only if every value is empty.
//! - **null vs missing:** `field: null` holds for an absent field and for an empty one (Varde's
//!   attributes cannot tell JSON null from empty); `''` holds only for a present, empty field.
//! - **neq** holds for an absent field (it is not equal to the value).
//! - **Keywords** are case-insensitive substrings of any text field of the event: message, host,
//!   typed text columns and every attribute value.
//! - **fieldref** compares case-insensitively unless `cased`, and is false when either field is
//!   absent.

use std::borrow::Cow;
use std::net::IpAddr;

use chrono::{Datelike, NaiveDateTime, Timelike};

use crate::compile::{Atom, CmpOp, Expr, StrOp, Test, TimePart};

/// Whether `value` satisfies a literal test. `needle` is already lowercased unless `cased`.
pub fn str_matches(op: StrOp, needle: &str, cased: bool, value: &str) -> bool {
    let folded: Cow<'_, str> = if cased {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(value.to_lowercase())
    };
    match op {
        StrOp::Eq => folded == needle,
        StrOp::Contains => folded.contains(needle),
        StrOp::StartsWith => folded.starts_with(needle),
        StrOp::EndsWith => folded.ends_with(needle),
    }
}

/// Reads a timestamp in the forms events carry: RFC 3339, `YYYY-MM-DD HH:MM:SS[.fff]` (Sysmon's
/// `UtcTime`), or seconds / milliseconds since the epoch.
pub fn parse_time(value: &str) -> Option<NaiveDateTime> {
    let v = value.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return Some(t.naive_utc());
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M:%S",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(v, fmt) {
            return Some(t);
        }
    }
    let n: i64 = v.parse().ok()?;
    let t = if n.abs() > 100_000_000_000 {
        chrono::DateTime::from_timestamp_millis(n)
    } else {
        chrono::DateTime::from_timestamp(n, 0)
    };
    t.map(|t| t.naive_utc())
}

fn time_part(t: &NaiveDateTime, part: TimePart) -> i64 {
    i64::from(match part {
        TimePart::Minute => t.minute(),
        TimePart::Hour => t.hour(),
        TimePart::Day => t.day(),
        TimePart::Week => t.iso_week().week(),
        TimePart::Month => t.month(),
        TimePart::Year => return i64::from(t.year()),
    })
}

/// Whether a test holds for a field with these values. `other` gives the values of another
/// field (for `fieldref`).
pub fn test_holds<'v>(
    test: &Test,
    values: &[Cow<'v, str>],
    other: &dyn Fn(&str) -> Vec<Cow<'v, str>>,
) -> bool {
    match test {
        Test::Str { op, needle, cased } => {
            values.iter().any(|v| str_matches(*op, needle, *cased, v))
        }
        Test::Glob { regex, cased, .. } => values.iter().any(|v| {
            if *cased {
                regex.is_match(v)
            } else {
                regex.is_match(&v.to_lowercase())
            }
        }),
        Test::Regex(regex) => values.iter().any(|v| regex.is_match(v)),
        Test::Cidr(net) => values
            .iter()
            .any(|v| v.trim().parse::<IpAddr>().is_ok_and(|ip| net.contains(&ip))),
        Test::Cmp(op, n) => values.iter().any(|v| {
            v.trim().parse::<f64>().is_ok_and(|x| match op {
                CmpOp::Lt => x < *n,
                CmpOp::Lte => x <= *n,
                CmpOp::Gt => x > *n,
                CmpOp::Gte => x >= *n,
            })
        }),
        Test::Exists(want) => values.is_empty() != *want,
        Test::Null => values.iter().all(|v| v.is_empty()),
        Test::FieldRef {
            other: name,
            op,
            cased,
        } => {
            let others = other(name);
            values.iter().any(|v| {
                others.iter().any(|o| {
                    let o: Cow<'_, str> = if *cased {
                        Cow::Borrowed(o)
                    } else {
                        Cow::Owned(o.to_lowercase())
                    };
                    str_matches(*op, &o, *cased, v)
                })
            })
        }
        Test::Time(part, n) => values
            .iter()
            .any(|v| parse_time(v).is_some_and(|t| time_part(&t, *part) == *n)),
    }
}

/// Evaluates an expression given each atom's truth.
pub fn eval(expr: &Expr, atom: &mut dyn FnMut(usize) -> bool) -> bool {
    match expr {
        Expr::True => true,
        Expr::False => false,
        Expr::Atom(a) => atom(*a),
        Expr::Not(e) => !eval(e, atom),
        Expr::And(es) => es.iter().all(|e| eval(e, atom)),
        Expr::Or(es) => es.iter().any(|e| eval(e, atom)),
    }
}

/// Whether an atom holds for a row, given how to read fields (`None` = every text field).
pub fn atom_holds<'v>(
    atom: &Atom,
    field_values: &dyn Fn(Option<&str>) -> Vec<Cow<'v, str>>,
) -> bool {
    let values = field_values(atom.field.as_deref());
    test_holds(&atom.test, &values, &|name| field_values(Some(name)))
}
