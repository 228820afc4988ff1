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
    let mut out: Vec<MultiColumn<'a>> = specs
        .iter()
        .map(|_| MultiColumn {
            offsets: Vec::with_capacity(rows + 1),
            values: Vec::with_capacity(rows),
        })
        .collect();
    for c in &mut out {
        c.offsets.push(0);
    }
    let mut found: Vec<Vec<Cow<'a, str>>> = vec![Vec::new(); specs.len()];
    let mut spaced: Vec<(&'a str, &'a str)> = Vec::new();
    // Events of one source mostly list the same attribute keys in the same order: remember the
    // previous row's key at each position and compare before hashing.
    let mut previous: Vec<(&'a str, Option<&Vec<usize>>)> = Vec::new();
    for row in 0..rows {
        spaced.clear();
        for (i, (k, v)) in reader.attrs(row).enumerate() {
            let targets = match previous.get(i) {
                Some((pk, t)) if *pk == k => *t,
                _ => {
                    let t = by_key.get(k);
                    if i < previous.len() {
                        previous[i] = (k, t);
                    } else {
                        previous.push((k, t));
                    }
                    t
                }
            };
            if let Some(targets) = targets {
                for &t in targets {
                    found[t].push(Cow::Borrowed(v));
                }
            } else if k.contains(' ') {
                spaced.push((k, v));
            }
        }
        for (i, spec) in specs.iter().enumerate() {
            let col = &mut out[i];
            if found[i].is_empty() {
                if let Some(v) = spec.column.and_then(|c| column_value(reader, c, row)) {
                    col.values.push(v);
                } else if let Some(key) = &spec.attr {
                    for (k, v) in &spaced {
                        if strip_spaces(k) == key.as_str() {
                            col.values.push(Cow::Borrowed(*v));
                        }
                    }
                }
            } else {
                col.values.append(&mut found[i]);
            }
            col.offsets
                .push(u32::try_from(col.values.len()).unwrap_or(u32::MAX));
        }
    }
    out
}
