//! Reading Sigma fields out of event batches.
//!
//! A field's values in a row are, in this order of preference: the attributes whose key is the
//! field name (there may be several: a field holding a list contributes one value per element);
//! else the mapped column's value; else the attributes whose key, with spaces removed, is the
//! field name. Absent when none of these exists.

use std::borrow::Cow;
use std::sync::OnceLock;

use varde_core::{AttrTable, BatchReader, TypedColumn, ValueRef};

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
        Column::Typed(i) => reader
            .typed_column(i)
            .and_then(|column| typed_value(column, row)),
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
    for_each_keyword_value(reader, row, |v| out.push(Cow::Borrowed(v)));
    out
}

/// Calls `f` with every text value of a row, in the order of [`keyword_values`].
pub fn for_each_keyword_value<'a>(
    reader: &BatchReader<'a>,
    row: usize,
    mut f: impl FnMut(&'a str),
) {
    if let Some(m) = reader.message(row) {
        f(m);
    }
    if let Some(h) = reader.host(row) {
        f(h);
    }
    for i in 0..varde_core::schema::typed_columns(reader.kind()).len() {
        if let Some(ValueRef::Str(s)) = reader.typed(i, row) {
            f(s);
        }
    }
    for (_, v) in reader.attrs(row) {
        f(v);
    }
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
    // Fields that got attribute values in the current row (their row is still open).
    let mut open: Vec<bool> = vec![false; specs.len()];
    let mut touched: Vec<usize> = Vec::new();
    // Events of one source list the same attribute keys in the same order: a row's keys are
    // looked up once per distinct list of keys (a layout), found again by hashing the list's
    // bytes and comparing them; a row then costs the values of its tested keys only.
    let mut layouts: Vec<Layout<'a, '_>> = Vec::new();
    let mut by_keys: crate::engine::FnvMap<u64, Vec<usize>> = Default::default();
    let mut last: Option<usize> = None;
    let table = reader.attr_table();
    // Typed columns, their types looked up once per batch.
    let typed: Vec<Option<TypedColumn<'a>>> = specs
        .iter()
        .map(|s| match s.column {
            Some(Column::Typed(t)) => reader.typed_column(t),
            _ => None,
        })
        .collect();
    for row in 0..rows {
        touched.clear();
        let positions = table.row(row);
        let first = positions.start;
        let (bytes, ends) = table.key_run(positions.clone());
        let found = match last {
            Some(l) if layouts[l].is(bytes, ends) => l,
            _ => {
                let mut h = crate::engine::Fnv::default();
                std::hash::Hasher::write(&mut h, bytes);
                std::hash::Hasher::write_usize(&mut h, ends.len());
                let hash = std::hash::Hasher::finish(&h);
                let same = by_keys.entry(hash).or_default();
                match same.iter().copied().find(|&l| layouts[l].is(bytes, ends)) {
                    Some(l) => l,
                    None => {
                        let mut layout = Layout {
                            bytes,
                            ends,
                            tested: Vec::new(),
                            spaced: Vec::new(),
                        };
                        for at in positions {
                            let k = table.key(at);
                            let i = u32::try_from(at - first).unwrap_or(u32::MAX);
                            if let Some(targets) = by_key.get(k) {
                                layout.tested.push((i, targets));
                            }
                            if k.contains(' ') {
                                let Some(targets) = by_key.get(k.replace(' ', "").as_str()) else {
                                    continue;
                                };
                                for &t in targets {
                                    match layout.spaced.iter_mut().find(|(f, _)| *f == t) {
                                        Some((_, at)) => at.push(i),
                                        None => layout.spaced.push((t, vec![i])),
                                    }
                                }
                            }
                        }
                        same.push(layouts.len());
                        layouts.push(layout);
                        layouts.len() - 1
                    }
                }
            }
        };
        last = Some(found);
        let layout = &layouts[found];
        for &(i, targets) in &layout.tested {
            let v = table.value(row, first + i as usize);
            for &t in targets {
                let col = &mut out[t];
                if !open[t] {
                    open[t] = true;
                    touched.push(t);
                    start_row(col, rows, row);
                }
                col.values.push(Cow::Borrowed(v));
            }
        }
        // Fields with a column, when no attribute of theirs was found.
        for &i in &with_column {
            if open[i] {
                continue;
            }
            let value = match (typed[i], specs[i].column) {
                (Some(column), _) => typed_value(column, row),
                (None, Some(c)) => column_value(reader, c, row),
                (None, None) => None,
            };
            if let Some(v) = value {
                push_row(&mut out[i], rows, row, std::iter::once(v));
            } else if let Some((_, at)) = layout.spaced.iter().find(|(f, _)| *f == i) {
                push_row(&mut out[i], rows, row, values_at(&table, row, first, at));
            }
        }
        // Fields without a column: their attributes, else attributes named with spaces.
        for (i, at) in &layout.spaced {
            if specs[*i].column.is_none() && !open[*i] {
                push_row(&mut out[*i], rows, row, values_at(&table, row, first, at));
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

/// The attribute keys of a row, in order, and what extraction does with each: the keys' bytes
/// and where they end (as the batch's offsets: relative positions are compared), the positions
/// of keys some field reads (with those fields), and per field the positions of keys that are
/// its name once their spaces are removed (read when the field has no value otherwise).
struct Layout<'a, 's> {
    bytes: &'a [u8],
    ends: &'a [i32],
    tested: Vec<(u32, &'s Vec<usize>)>,
    spaced: Vec<(usize, Vec<u32>)>,
}

impl Layout<'_, '_> {
    /// Whether a row's keys (`bytes`, `ends` as [`AttrTable::key_run`] gives them) are these.
    #[inline]
    fn is(&self, bytes: &[u8], ends: &[i32]) -> bool {
        self.ends.len() == ends.len()
            && self.bytes == bytes
            && match (self.ends.first(), ends.first()) {
                (Some(a), Some(b)) => self
                    .ends
                    .iter()
                    .zip(ends)
                    .all(|(x, y)| x.wrapping_sub(*a) == y.wrapping_sub(*b)),
                _ => true,
            }
    }
}

/// A typed column's value in a row, as text (numbers in decimal, times in RFC 3339).
#[inline]
fn typed_value(column: TypedColumn<'_>, row: usize) -> Option<Cow<'_, str>> {
    column.get(row).map(|v| match v {
        ValueRef::Str(s) => Cow::Borrowed(s),
        ValueRef::UInt(n) => number(n),
        ValueRef::Time(t) => Cow::Owned(varde_core::time::format_rfc3339(t)),
        other => Cow::Owned(other.to_string()),
    })
}

/// Below this, a number's text is borrowed from one table made on first use (event ids,
/// levels, tasks repeat on every row): 39 kB of digits.
const SMALL_NUMBERS: usize = 10_000;

/// A number as decimal text, without allocating when it is small.
fn number(n: u64) -> Cow<'static, str> {
    static TABLE: OnceLock<(String, Vec<u32>)> = OnceLock::new();
    let (digits, ends) = TABLE.get_or_init(|| {
        let mut digits = String::new();
        let mut ends = vec![0u32];
        for i in 0..SMALL_NUMBERS {
            digits.push_str(&i.to_string());
            ends.push(u32::try_from(digits.len()).unwrap_or(u32::MAX));
        }
        (digits, ends)
    });
    let small = usize::try_from(n)
        .ok()
        .filter(|&i| i < SMALL_NUMBERS)
        .and_then(|i| digits.get(ends[i] as usize..ends[i + 1] as usize));
    match small {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(n.to_string()),
    }
}

/// The values of a row's attributes at positions `at` (relative to the row's first, `first`).
fn values_at<'a, 'p>(
    table: &'p AttrTable<'a>,
    row: usize,
    first: usize,
    at: &'p [u32],
) -> impl Iterator<Item = Cow<'a, str>> + 'p {
    at.iter()
        .map(move |&i| Cow::Borrowed(table.value(row, first + i as usize)))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows whose keys share their bytes but not their boundaries, repeat a key, hold a space,
    /// have none, or come back after another layout: the batch-wide extraction gives each row
    /// the values the row-at-a-time definition gives it.
    #[test]
    fn layouts_are_told_apart_by_their_keys_and_boundaries() {
        use varde_core::{BatchBuilder, CollectorId, Event, Kommunenummer, SourceKind};
        let rows: &[&[(&str, &str)]] = &[
            &[("ab", "1"), ("c", "2")],
            &[("a", "3"), ("bc", "4")],
            &[("ab", "5"), ("c", "6")],
            &[],
            &[("ab", "7"), ("ab", "8"), ("a b", "9")],
            &[("a", "10"), ("bc", "11")],
            &[("a b", "12")],
            &[
                ("a b", "13"),
                ("c d", "14"),
                ("ab", "15"),
                ("h o s t", "16"),
            ],
            &[
                ("h o s t", "17"),
                ("a  b", "18"),
                ("cd", "19"),
                ("c d", "20"),
            ],
            &[("a b", "21"), ("c d", "22")],
        ];
        let (Ok(tenant), Ok(collector)) = (Kommunenummer::parse("0301"), CollectorId::new("t"))
        else {
            panic!("tenant and collector id");
        };
        let mut b = BatchBuilder::new(SourceKind::WindowsEvent, tenant, collector, rows.len());
        for (i, attrs) in rows.iter().enumerate() {
            let event = Event {
                // Every third row has a host: the column is preferred to keys with spaces.
                host: (i % 3 == 0).then(|| "h".to_owned()),
                attrs: attrs
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                ..Event::default()
            };
            if let Err(e) = b.push(&event) {
                panic!("push: {e}");
            }
        }
        let batch = match b.finish() {
            Ok(batch) => batch,
            Err(e) => panic!("batch: {e}"),
        };
        let reader = match BatchReader::new(SourceKind::WindowsEvent, &batch) {
            Ok(r) => r,
            Err(e) => panic!("reader: {e}"),
        };
        let mut specs: Vec<FieldSpec> = ["ab", "c", "a", "bc", "ab", "cd", "c d", "a b"]
            .iter()
            .map(|k| FieldSpec {
                attr: Some((*k).to_owned()),
                column: None,
            })
            .collect();
        specs.push(FieldSpec {
            attr: Some("host".to_owned()),
            column: Some(Column::Host),
        });
        specs.push(FieldSpec {
            attr: None,
            column: Some(Column::Host),
        });
        let columns = extract(&reader, &specs);
        for (i, spec) in specs.iter().enumerate() {
            for row in 0..rows.len() {
                assert_eq!(
                    columns[i].row(row),
                    row_values(&reader, spec, row).as_slice(),
                    "field {:?}, row {row}",
                    spec.attr
                );
            }
        }
        assert_eq!(columns[0].row(4), ["7", "8"]);
        assert_eq!(columns[0].row(6), ["12"]);
        assert_eq!(columns[3].row(1), ["4"]);
        assert_eq!(columns[0].row(8), ["18"]);
        assert_eq!(columns[5].row(8), ["19"]);
        assert_eq!(columns[5].row(9), ["22"]);
        assert_eq!(columns[6].row(8), ["20"]);
        assert_eq!(columns[8].row(6), ["h"]);
        assert_eq!(columns[8].row(7), ["16"]);
        assert_eq!(columns[8].row(8), ["17"]);
        assert_eq!(columns[9].row(8), [] as [&str; 0]);
    }

    #[test]
    fn numbers_read_as_their_decimal_text() {
        for n in [0u64, 7, 4688, 9_999, 10_000, 65_535, u64::MAX] {
            assert_eq!(number(n), n.to_string());
        }
    }
}
