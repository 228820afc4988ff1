//! Reading Sigma fields out of event batches.
//!
//! A field's values in a row are, in this order of preference: the attributes whose key is the
//! field name (there may be several: a field holding a list contributes one value per element);
//! else the mapped column's value; else the attributes whose key, with spaces removed, is the
//! field name. Absent when none of these exists.

use std::borrow::Cow;

use varde_core::{BatchReader, ValueRef};

use crate::mapping::{Column, FieldSpec};

/// A column's value in a row, as text.
pub fn column_value<'a>(reader: &BatchReader<'a>, col: Column, row: usize) -> Option<Cow<'a, str>> {
    match col {
        Column::Host => reader.host(row).map(Cow::Borrowed),
        Column::Message => reader.message(row).map(Cow::Borrowed),
        Column::Severity => reader.severity(row).map(|s| Cow::Owned(s.to_string())),
        Column::EventTime => Some(Cow::Owned(varde_core::time::format_rfc3339(
            reader.event_time_us(row),
        ))),
        Column::Typed(i) => reader.typed(i, row).map(|v| match v {
            ValueRef::Str(s) => Cow::Borrowed(s),
            ValueRef::Time(t) => Cow::Owned(varde_core::time::format_rfc3339(t)),
            other => Cow::Owned(other.to_string()),
        }),
    }
}

fn strip_spaces(s: &str) -> Cow<'_, str> {
    if s.contains(' ') {
        Cow::Owned(s.replace(' ', ""))
    } else {
        Cow::Borrowed(s)
    }
}

/// The values of one field in one row (simple, row-at-a-time).
pub fn row_values<'a>(reader: &BatchReader<'a>, spec: &FieldSpec, row: usize) -> Vec<Cow<'a, str>> {
    if let Some(key) = &spec.attr {
        let exact: Vec<Cow<'a, str>> = reader
            .attrs(row)
            .filter(|(k, _)| k == key)
            .map(|(_, v)| Cow::Borrowed(v))
            .collect();
        if !exact.is_empty() {
            return exact;
        }
    }
    if let Some(v) = spec.column.and_then(|c| column_value(reader, c, row)) {
        return vec![v];
    }
    if let Some(key) = &spec.attr {
        return reader
            .attrs(row)
            .filter(|(k, _)| k.contains(' ') && strip_spaces(k) == key.as_str())
            .map(|(_, v)| Cow::Borrowed(v))
            .collect();
    }
    Vec::new()
}

/// Every text value of a row, for keyword search: the message, the host, typed text columns,
/// every attribute value.
pub fn keyword_values<'a>(reader: &BatchReader<'a>, row: usize) -> Vec<Cow<'a, str>> {
    let mut out = Vec::new();
    out.extend(reader.message(row).map(Cow::Borrowed));
    out.extend(reader.host(row).map(Cow::Borrowed));
    for i in 0..varde_core::schema::typed_columns(reader.kind()).len() {
        if let Some(ValueRef::Str(s)) = reader.typed(i, row) {
            out.push(Cow::Borrowed(s));
        }
    }
    out.extend(reader.attrs(row).map(|(_, v)| Cow::Borrowed(v)));
    out
}

/// Several values per row, for a whole batch: `values[offsets[r]..offsets[r + 1]]`.
#[derive(Debug, Default)]
pub struct MultiColumn<'a> {
    /// Row boundaries; `rows + 1` entries.
    pub offsets: Vec<u32>,
    /// The values.
    pub values: Vec<Cow<'a, str>>,
}

impl<'a> MultiColumn<'a> {
    /// The values of a row.
    pub fn row(&self, r: usize) -> &[Cow<'a, str>] {
        let (a, b) = (self.offsets[r] as usize, self.offsets[r + 1] as usize);
        &self.values[a..b]
    }
}

/// Extracts many fields of a whole batch in one pass over its attributes, with the same
/// preference order as [`row_values`].
pub fn extract<'a>(reader: &BatchReader<'a>, specs: &[FieldSpec]) -> Vec<MultiColumn<'a>> {
    let rows = reader.len();
    let mut by_key: crate::engine::FnvMap<&str, Vec<usize>> = Default::default();
    for (i, s) in specs.iter().enumerate() {
        if let Some(k) = &s.attr {
            by_key.entry(k.as_str()).or_default().push(i);
        }
    }
    // Most fields are absent from most rows: a column's offsets are filled up to a row only
    // when a value arrives for it (and to the end at the end), so an absent field costs nothing
    // per row.
    let mut out: Vec<MultiColumn<'a>> = specs
        .iter()
        .map(|_| MultiColumn {
            offsets: vec![0],
            values: Vec::new(),
        })
        .collect();
    let with_column: Vec<usize> = (0..specs.len())
        .filter(|&i| specs[i].column.is_some())
        .collect();
    let spaced_candidates: Vec<usize> = (0..specs.len())
        .filter(|&i| specs[i].column.is_none() && specs[i].attr.is_some())
        .collect();
    // Fields that got attribute values in the current row (their row is still open).
    let mut open: Vec<bool> = vec![false; specs.len()];
    let mut touched: Vec<usize> = Vec::new();
    let mut spaced: Vec<(&'a str, &'a str)> = Vec::new();
    // Events of one source mostly list the same attribute keys in the same order: remember the
    // previous row's key at each position and compare before hashing.
    // The key's targets and whether it contains a space are remembered with it.
    let mut previous: Vec<(&'a str, Option<&Vec<usize>>, bool)> = Vec::new();
    // Numbers of typed columns repeat from row to row (event ids): format each once.
    let mut numbers: Vec<Option<(u64, String)>> = vec![None; specs.len()];
    for row in 0..rows {
        spaced.clear();
        touched.clear();
        for (i, (k, v)) in reader.attrs(row).enumerate() {
            let (targets, space) = match previous.get(i) {
                Some((pk, t, sp)) if *pk == k => (*t, *sp),
                _ => {
                    let t = by_key.get(k);
                    let sp = k.contains(' ');
                    if i < previous.len() {
                        previous[i] = (k, t, sp);
                    } else {
                        previous.push((k, t, sp));
                    }
                    (t, sp)
                }
            };
            if let Some(targets) = targets {
                for &t in targets {
                    let col = &mut out[t];
                    if !open[t] {
                        open[t] = true;
                        touched.push(t);
                        start_row(col, rows, row);
                    }
                    col.values.push(Cow::Borrowed(v));
                }
            } else if space {
                spaced.push((k, v));
            }
        }
        // Fields with a column, when no attribute of theirs was found.
        for &i in &with_column {
            if open[i] {
                continue;
            }
            let value = match specs[i].column {
                Some(Column::Typed(t)) => match reader.typed(t, row) {
                    Some(ValueRef::UInt(n)) => Some(Cow::Owned(match &numbers[i] {
                        Some((m, text)) if *m == n => text.clone(),
                        _ => {
                            let text = n.to_string();
                            numbers[i] = Some((n, text.clone()));
                            text
                        }
                    })),
                    _ => column_value(reader, Column::Typed(t), row),
                },
                Some(c) => column_value(reader, c, row),
                None => None,
            };
            if let Some(v) = value {
                push_row(&mut out[i], rows, row, std::iter::once(v));
            } else {
                spaced_values(&mut out[i], &specs[i], rows, row, &spaced);
            }
        }
        // Fields without a column: their attributes, else attributes named with spaces.
        if !spaced.is_empty() {
            for &i in &spaced_candidates {
                if !open[i] {
                    spaced_values(&mut out[i], &specs[i], rows, row, &spaced);
                }
            }
        }
        for &i in &touched {
            let col = &mut out[i];
            col.offsets
                .push(u32::try_from(col.values.len()).unwrap_or(u32::MAX));
            open[i] = false;
        }
    }
    for col in &mut out {
        let len = u32::try_from(col.values.len()).unwrap_or(u32::MAX);
        col.offsets.resize(rows + 1, len);
    }
    out
}

/// Appends a row's values to a column whose offsets may stop before `row` (the batch has
/// `rows` rows: room for all of them is reserved on the first value).
fn push_row<'a>(
    col: &mut MultiColumn<'a>,
    rows: usize,
    row: usize,
    values: impl Iterator<Item = Cow<'a, str>>,
) {
    start_row(col, rows, row);
    col.values.extend(values);
    col.offsets
        .push(u32::try_from(col.values.len()).unwrap_or(u32::MAX));
}

/// Fills a column's offsets up to `row`, whose values come next (the batch has `rows` rows:
/// room for all of them is reserved on the first value).
fn start_row(col: &mut MultiColumn<'_>, rows: usize, row: usize) {
    if col.values.capacity() == 0 {
        col.values.reserve(rows);
        col.offsets.reserve(rows + 1);
    }
    let len = u32::try_from(col.values.len()).unwrap_or(u32::MAX);
    col.offsets.resize(row + 1, len);
}

/// The values of attributes whose key, spaces removed, is the field's name.
fn spaced_values<'a>(
    col: &mut MultiColumn<'a>,
    spec: &FieldSpec,
    rows: usize,
    row: usize,
    spaced: &[(&'a str, &'a str)],
) {
    let Some(key) = &spec.attr else {
        return;
    };
    let mut matching = spaced
        .iter()
        .filter(|(k, _)| strip_spaces(k) == key.as_str())
        .map(|(_, v)| Cow::Borrowed(*v))
        .peekable();
    if matching.peek().is_some() {
        push_row(col, rows, row, matching);
    }
}
