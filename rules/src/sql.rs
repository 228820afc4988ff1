//! Sigma → ClickHouse SQL: a compiled rule as a `WHERE` condition over Varde's `events` table, with
//! the semantics of [`crate::reference`], for hunting in history.
//!
//! The table keeps each event's typed columns and attributes as parallel `field_keys` /
//! `field_values` arrays, so a field test becomes an `arrayExists` over the pairs, with the same
//! preference order as the engine: attributes named like the field, else the mapped column, else
//! attributes whose name without spaces is the field.
//!
//! Written for ClickHouse 18.16 (Debian's) and current releases. One 18.16 quirk shapes the
//! output: its regex prefilter ignores a leading `(?i)`, so every regular expression is wrapped in
//! a non-capturing group, which turns the prefilter off.
//!
//! Known differences, on inputs real events rarely carry: ClickHouse's `lowerUTF8` folds fewer
//! characters than Rust's Unicode lowercase (e.g. `İ`); RE2's `\d`, `\w` are ASCII where Rust's
//! are Unicode; `parseDateTimeBestEffort` accepts other time formats than the engine's parser.

use varde_core::SourceKind;
use varde_core::schema::{ColumnType, typed_columns};

use crate::compile::{Atom, AtomTable, CmpOp, Expr, StrOp, Test, TimePart};
use crate::mapping::{Column, KindMapping};
use crate::{Error, Result};

/// A ClickHouse string literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\'' => out.push_str("\\'"),
            '\0' => out.push_str("\\0"),
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
                quote(&format!("(?:{})", regex.as_str()))
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
            Box::new(move |v| Ok(format!("ifNull(toFloat64OrNull({v}) {sym} {n:?}, 0)")))
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
                Ok(format!(
                    "ifNull({f}(parseDateTimeBestEffortOrNull({v})) = {n}, 0)"
                ))
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

fn cidr_pred(net: &ipnet::IpNet, v: &str) -> String {
    match net {
        ipnet::IpNet::V4(n) => {
            let mask: u32 = if n.prefix_len() == 0 {
                0
            } else {
                u32::MAX << (32 - n.prefix_len())
            };
            format!(
                "match({v}, '^[0-9]{{1,3}}\\\\.[0-9]{{1,3}}\\\\.[0-9]{{1,3}}\\\\.[0-9]{{1,3}}$') AND bitAnd(IPv4StringToNum({v}), {mask}) = {}",
                u32::from(n.network()) & mask
            )
        }
        ipnet::IpNet::V6(n) => {
            let bytes = n.network().octets();
            let full = usize::from(n.prefix_len() / 8);
            let rest = n.prefix_len() % 8;
            let addr = format!("IPv6StringToNum({v})");
            let mut conds = vec![
                format!("position({v}, ':') > 0"),
                format!("{addr} != toFixedString(unhex('00000000000000000000000000000000'), 16)"),
            ];
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
            conds.join(" AND ")
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
