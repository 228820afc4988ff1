//! Events in row form, and their conversion to and from Arrow batches.
//!
//! Collectors parse into [`Event`] rows and append them to a [`BatchBuilder`]; everything after
//! the collector works on the resulting [`RecordBatch`]. [`BatchReader`] gives typed, checked
//! access to a batch's columns for consumers that need rows (the ClickHouse writer, tests).

use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, TimestampMicrosecondBuilder, UInt8Builder, UInt16Builder, UInt32Builder,
    UInt64Builder,
};
use arrow_array::cast::AsArray;
use arrow_array::types::{TimestampMicrosecondType, UInt8Type, UInt16Type, UInt32Type, UInt64Type};
use arrow_array::{Array, ArrayRef, ListArray, RecordBatch, StringArray};
use arrow_buffer::{Buffer, NullBuffer, NullBufferBuilder, OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field};

use crate::schema::{self, COMMON_COLUMNS, ColumnSpec, ColumnType};
use crate::{CollectorId, Error, Kommunenummer, Result, SourceKind};

/// The value of a typed column in an [`Event`].
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Text.
    Str(String),
    /// Boolean.
    Bool(bool),
    /// Any unsigned integer; checked against the column's width when appended.
    UInt(u64),
    /// Microseconds since the Unix epoch, UTC.
    Time(i64),
}

impl Value {
    /// The value borrowed.
    pub fn as_ref(&self) -> ValueRef<'_> {
        match self {
            Value::Str(s) => ValueRef::Str(s),
            Value::Bool(b) => ValueRef::Bool(*b),
            Value::UInt(n) => ValueRef::UInt(*n),
            Value::Time(t) => ValueRef::Time(*t),
        }
    }
}

/// One event in row form, before it joins a batch.
///
/// The tenant, collector id and source kind are properties of the batch, not of the row: they
/// are given to the [`BatchBuilder`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Event {
    /// When the event happened, microseconds since the Unix epoch (UTC).
    pub event_time_us: i64,
    /// When the collector received it, microseconds since the Unix epoch (UTC).
    pub receive_time_us: i64,
    /// The host that emitted it.
    pub host: Option<String>,
    /// Severity on the syslog scale (0 emergency … 7 debug).
    pub severity: Option<u8>,
    /// The raw or main text.
    pub message: Option<String>,
    /// Values of the kind's typed columns, by column name. Absent columns are null.
    pub typed: Vec<(&'static str, Value)>,
    /// Remaining fields, as text, in order.
    pub attrs: Vec<(String, String)>,
}

impl Event {
    /// The typed value of a column, if set.
    pub fn get(&self, column: &str) -> Option<&Value> {
        self.typed
            .iter()
            .find_map(|(name, value)| (*name == column).then_some(value))
    }
}

/// One row on its way into a batch: what [`BatchBuilder::push_row`] appends, borrowed.
struct RowRef<'a, T, G, A> {
    event_time_us: i64,
    receive_time_us: i64,
    /// The host's text (UTF-8: a batch checks its text when finished).
    host: Option<&'a [u8]>,
    severity: Option<u8>,
    /// The message's text, as the host's.
    message: Option<&'a [u8]>,
    /// The typed values, walked once to check them.
    typed: T,
    /// The typed value at a place of that walk, for appending.
    typed_at: G,
    attrs: A,
}

/// A typed value on its way into its column: text as bytes (a batch checks its text when
/// finished), so that appending a [`Row`] reads no text back as `&str`.
#[derive(Debug, Clone, Copy)]
enum Cell<'a> {
    Str(&'a [u8]),
    Bool(bool),
    UInt(u64),
    Time(i64),
}

impl<'a> From<ValueRef<'a>> for Cell<'a> {
    fn from(v: ValueRef<'a>) -> Self {
        match v {
            ValueRef::Str(s) => Cell::Str(s.as_bytes()),
            ValueRef::Bool(b) => Cell::Bool(b),
            ValueRef::UInt(n) => Cell::UInt(n),
            ValueRef::Time(t) => Cell::Time(t),
        }
    }
}

/// A row's attributes on their way into the batch's two lists.
trait AttrSource {
    /// At least the bytes of all keys and of all values, and the number of pairs, to make
    /// room once.
    fn room(&self) -> (usize, usize, usize);
    /// Appends the keys and the values, after [`TextLists::reserve`] made that room.
    fn append_to(self, keys: &mut TextLists, values: &mut TextLists);
}

/// An [`Event`]'s attributes: one string at a time.
impl AttrSource for &[(String, String)] {
    fn room(&self) -> (usize, usize, usize) {
        let (k, v) = self.iter().fold((0, 0), |(k, v), (key, value)| {
            (k + key.len(), v + value.len())
        });
        (k, v, self.len())
    }

    fn append_to(self, keys: &mut TextLists, values: &mut TextLists) {
        for (k, v) in self {
            keys.push(k.as_bytes());
            values.push(v.as_bytes());
        }
    }
}

/// A [`Row`]'s attributes: each list's strings in one piece.
impl AttrSource for &Attrs {
    fn room(&self) -> (usize, usize, usize) {
        (
            self.keys.closed().len(),
            self.values.closed().len(),
            self.len(),
        )
    }

    fn append_to(self, keys: &mut TextLists, values: &mut TextLists) {
        keys.push_all(&self.keys);
        values.push_all(&self.values);
    }
}

/// A span of a [`Row`]'s text.
pub(crate) type Span = (u32, u32);

/// A typed value of a [`Row`]; text as a span of the row's text.
#[derive(Debug, Clone, Copy, PartialEq)]
enum RowValue {
    Str(Span),
    UInt(u64),
    Bool(bool),
    Time(i64),
}

impl RowValue {
    /// The value, its text read by `text`.
    fn read<'a>(self, text: impl FnOnce(Span) -> &'a str) -> ValueRef<'a> {
        match self {
            RowValue::Str(s) => ValueRef::Str(text(s)),
            RowValue::UInt(n) => ValueRef::UInt(n),
            RowValue::Bool(b) => ValueRef::Bool(b),
            RowValue::Time(t) => ValueRef::Time(t),
        }
    }
}

/// Strings written one after another into one buffer, each closed by recording its end: the
/// keys, or the values, of a [`Row`]'s attributes, in the order of the batch's lists, so that
/// appending a row copies each buffer in one piece. Text written after the last end is the
/// open string, closed or dropped by the writer.
///
/// The buffers of a [`Row`] are bytes, not `String`s, so that a decoder can copy the pieces of
/// its input it cut at ASCII bytes (quotes, backslashes) without checking again that each cut
/// falls between characters: what is written is only whole `&str`s, whole characters, and
/// such pieces of a `&str`, so it is UTF-8. Reading a piece back as text checks it (a piece
/// that were not would read as empty), and a batch checks all its text when finished.
#[derive(Debug, Clone, Default)]
pub(crate) struct Texts {
    text: Vec<u8>,
    /// End of each closed string in `text`.
    ends: Vec<u32>,
}

impl Texts {
    fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    /// The buffer; what is written at its end is the open string.
    pub(crate) fn text_mut(&mut self) -> &mut Vec<u8> {
        &mut self.text
    }

    /// Where the open string starts: the end of the last closed one.
    fn open_start(&self) -> usize {
        self.ends.last().map_or(0, |&e| e as usize)
    }

    /// The closed strings, one after another.
    fn closed(&self) -> &[u8] {
        self.text.get(..self.open_start()).unwrap_or_default()
    }

    /// Forgets the open string.
    pub(crate) fn drop_open(&mut self) {
        self.text.truncate(self.open_start());
    }

    /// The bytes of a span of the buffer.
    pub(crate) fn span_bytes(&mut self, (start, end): Span) -> Option<&[u8]> {
        self.text.get(start as usize..end as usize)
    }

    /// The `i`th closed string's bytes.
    fn bytes(&self, i: usize) -> &[u8] {
        let start = match i.checked_sub(1) {
            Some(before) => self.ends.get(before).copied().unwrap_or(0),
            None => 0,
        };
        let end = self.ends.get(i).copied().unwrap_or(start);
        self.text
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }
}

/// A [`Row`]'s attributes: keys and values as two [`Texts`], closed in pairs.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attrs {
    keys: Texts,
    values: Texts,
}

impl Attrs {
    fn heap_bytes(&self) -> usize {
        let texts = |t: &Texts| t.text.capacity() + t.ends.capacity() * 4;
        texts(&self.keys) + texts(&self.values)
    }

    fn clear(&mut self) {
        self.keys.clear();
        self.values.clear();
    }

    /// Attributes closed so far.
    pub(crate) fn len(&self) -> usize {
        self.keys.ends.len()
    }

    /// The open key, to write into.
    pub(crate) fn keys(&mut self) -> &mut Texts {
        &mut self.keys
    }

    /// The open value, to write into.
    pub(crate) fn values(&mut self) -> &mut Texts {
        &mut self.values
    }

    /// Closes the open key and the open value as one attribute.
    pub(crate) fn close(&mut self) {
        let end = |t: &Texts| u32::try_from(t.text.len()).unwrap_or(u32::MAX);
        self.keys.ends.push(end(&self.keys));
        self.values.ends.push(end(&self.values));
    }

    /// Keeps only the attributes of `ranges` (of closed attributes, by position), in their
    /// order, and forgets anything open; `spare` is where they are put together (its buffers
    /// are swapped with these, and kept for the next time).
    pub(crate) fn select(&mut self, ranges: &[(usize, usize)], spare: &mut Attrs) {
        spare.clear();
        for &(from, to) in ranges {
            for i in from..to.min(self.len()) {
                spare.keys.text.extend_from_slice(self.keys.bytes(i));
                spare.values.text.extend_from_slice(self.values.bytes(i));
                spare.close();
            }
        }
        std::mem::swap(self, spare);
    }
}

/// An event whose text lives in buffers the row keeps between events: the form a decoder
/// fills without allocating per field, appended by [`BatchBuilder::push_row`] or turned into an
/// [`Event`] by [`Row::to_event`]. [`crate::windows::EvtxDecoder`] fills one.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// When the event happened, microseconds since the Unix epoch (UTC).
    pub event_time_us: i64,
    /// When the collector received it, microseconds since the Unix epoch (UTC).
    pub receive_time_us: i64,
    /// Severity on the syslog scale (0 emergency … 7 debug).
    pub severity: Option<u8>,
    /// The host, the message and typed text, as bytes (see [`Texts`]); spans point here.
    text: Vec<u8>,
    host: Option<Span>,
    message: Option<Span>,
    typed: Vec<(&'static str, RowValue)>,
    attrs: Attrs,
}

impl Row {
    /// Empties the row for the next event, keeping its buffers.
    pub fn clear(&mut self, receive_time_us: i64) {
        self.event_time_us = receive_time_us;
        self.receive_time_us = receive_time_us;
        self.severity = None;
        self.text.clear();
        self.host = None;
        self.message = None;
        self.typed.clear();
        self.attrs.clear();
    }

    /// The row read as text: its UTF-8 checked once, for all its fields.
    pub fn read(&self) -> RowText<'_> {
        RowText {
            row: self,
            text: utf8(&self.text),
            keys: utf8(self.attrs.keys.closed()),
            values: utf8(self.attrs.values.closed()),
        }
    }

    /// The bytes of a span of the row's text.
    fn span_bytes(&self, (start, end): Span) -> Option<&[u8]> {
        self.text.get(start as usize..end as usize)
    }

    /// A typed value as it goes into its column.
    fn cell(&self, v: RowValue) -> Cell<'_> {
        match v {
            RowValue::Str(s) => Cell::Str(self.span_bytes(s).unwrap_or_default()),
            RowValue::UInt(n) => Cell::UInt(n),
            RowValue::Bool(b) => Cell::Bool(b),
            RowValue::Time(t) => Cell::Time(t),
        }
    }

    /// Bytes the row's buffers hold (their capacity), for a pool that keeps rows.
    pub fn heap_bytes(&self) -> usize {
        self.text.capacity()
            + self.typed.capacity() * std::mem::size_of::<(&str, RowValue)>()
            + self.attrs.heap_bytes()
    }

    /// The text of a span.
    pub(crate) fn span_text(&self, (start, end): Span) -> &str {
        utf8(
            self.text
                .get(start as usize..end as usize)
                .unwrap_or_default(),
        )
    }

    /// The host, if set.
    pub fn host(&self) -> Option<&str> {
        self.host.map(|s| self.span_text(s))
    }

    /// The message, if set.
    pub fn message(&self) -> Option<&str> {
        self.message.map(|s| self.span_text(s))
    }

    /// The typed values, in the order they were set.
    pub fn typed(&self) -> impl Iterator<Item = (&'static str, ValueRef<'_>)> + '_ {
        self.read().typed()
    }

    /// The attributes, in order.
    pub fn attrs(&self) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        self.read().attrs()
    }

    /// The same event with owned strings.
    pub fn to_event(&self) -> Event {
        let this = self.read();
        Event {
            event_time_us: self.event_time_us,
            receive_time_us: self.receive_time_us,
            host: this.host().map(str::to_owned),
            severity: self.severity,
            message: this.message().map(str::to_owned),
            typed: this
                .typed()
                .map(|(name, v)| {
                    let v = match v {
                        ValueRef::Str(s) => Value::Str(s.to_owned()),
                        ValueRef::Bool(b) => Value::Bool(b),
                        ValueRef::UInt(n) => Value::UInt(n),
                        ValueRef::Time(t) => Value::Time(t),
                    };
                    (name, v)
                })
                .collect(),
            attrs: this
                .attrs()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        }
    }

    /// The typed value of a column, if set (only its own text read back as `&str`).
    pub fn get(&self, column: &str) -> Option<ValueRef<'_>> {
        let v = self
            .typed
            .iter()
            .find_map(|(name, v)| (*name == column).then_some(*v))?;
        Some(v.read(|span| self.span_text(span)))
    }

    /// Writes `text` at the end of the row's text and returns its span.
    fn write(&mut self, text: &str) -> Span {
        let from = self.mark();
        self.text.extend_from_slice(text.as_bytes());
        self.since(from)
    }

    /// Sets the host.
    pub fn set_host_text(&mut self, host: Option<&str>) {
        self.host = host.map(|h| self.write(h));
    }

    /// Sets the message.
    pub fn set_message_text(&mut self, message: Option<&str>) {
        self.message = message.map(|m| self.write(m));
    }

    /// Sets a typed column; setting a column again replaces its value. Whether the kind has
    /// the column, and whether the value fits it, is checked when the row joins a batch.
    pub fn set_value(&mut self, column: &'static str, value: ValueRef<'_>) {
        let value = match value {
            ValueRef::Str(s) => RowValue::Str(self.write(s)),
            ValueRef::UInt(n) => RowValue::UInt(n),
            ValueRef::Bool(b) => RowValue::Bool(b),
            ValueRef::Time(t) => RowValue::Time(t),
        };
        self.set(column, value);
    }

    /// Appends an attribute whose key is the concatenation of `key` (such as `["sd.", id,
    /// ".", name]`, without making the key as a string first).
    pub fn push_attr(&mut self, key: &[&str], value: &str) {
        let attrs = &mut self.attrs;
        attrs.keys.drop_open();
        attrs.values.drop_open();
        for piece in key {
            attrs.keys.text.extend_from_slice(piece.as_bytes());
        }
        attrs.values.text.extend_from_slice(value.as_bytes());
        attrs.close();
    }

    /// Makes the row `event`, keeping its buffers.
    pub fn assign(&mut self, event: &Event) {
        self.clear(event.receive_time_us);
        self.event_time_us = event.event_time_us;
        self.severity = event.severity;
        self.set_host_text(event.host.as_deref());
        self.set_message_text(event.message.as_deref());
        for (name, value) in &event.typed {
            self.set_value(name, value.as_ref());
        }
        for (k, v) in &event.attrs {
            self.push_attr(&[k], v);
        }
    }

    /// Every text of the row, in a fixed order (see [`RowText::texts`]).
    pub fn texts(&self) -> impl Iterator<Item = &str> + '_ {
        self.read().texts()
    }

    /// Writes into `out` the same row with the texts `replace` gives a new text for (numbered
    /// as [`Row::texts`] yields them), keeping `out`'s buffers.
    pub fn rewrite_texts<'r>(
        &self,
        out: &mut Row,
        mut replace: impl FnMut(usize) -> Option<&'r str>,
    ) {
        let mut n = 0;
        let mut next = || {
            n += 1;
            n - 1
        };
        let this = self.read();
        out.clear(self.receive_time_us);
        out.event_time_us = self.event_time_us;
        out.severity = self.severity;
        if let Some(h) = this.host() {
            out.set_host_text(Some(replace(next()).unwrap_or(h)));
        }
        if let Some(m) = this.message() {
            out.set_message_text(Some(replace(next()).unwrap_or(m)));
        }
        for (name, value) in this.typed() {
            let value = match value {
                ValueRef::Str(text) => ValueRef::Str(replace(next()).unwrap_or(text)),
                other => other,
            };
            out.set_value(name, value);
        }
        for (k, v) in this.attrs() {
            let key = replace(next()).unwrap_or(k);
            out.push_attr(&[key], replace(next()).unwrap_or(v));
        }
    }

    /// Empties the row and lets go of buffers grown beyond `bytes` (a row that once held a very
    /// long line), so a row kept for reuse holds at most about that much.
    pub fn shrink(&mut self, bytes: usize) {
        self.clear(self.receive_time_us);
        let cap = |v: &mut Vec<u8>| {
            if v.capacity() > bytes {
                *v = Vec::new();
            }
        };
        cap(&mut self.text);
        cap(&mut self.attrs.keys.text);
        cap(&mut self.attrs.values.text);
    }

    /// The text buffer spans point into; a decoder writes a field here, then records its span.
    pub(crate) fn text_mut(&mut self) -> &mut Vec<u8> {
        &mut self.text
    }

    /// The end of the text written so far, where the next span starts.
    pub(crate) fn mark(&self) -> u32 {
        u32::try_from(self.text.len()).unwrap_or(u32::MAX)
    }

    /// The span from `start` to the end of the text written so far.
    pub(crate) fn since(&self, start: u32) -> Span {
        (start, self.mark())
    }

    pub(crate) fn set_host(&mut self, span: Option<Span>) {
        self.host = span;
    }

    /// Sets a typed column to a span of the text; setting a column again replaces its value.
    pub(crate) fn set_str(&mut self, column: &'static str, span: Span) {
        self.set(column, RowValue::Str(span));
    }

    /// Sets a typed column to a number; setting a column again replaces its value.
    pub(crate) fn set_uint(&mut self, column: &'static str, n: u64) {
        self.set(column, RowValue::UInt(n));
    }

    fn set(&mut self, column: &'static str, value: RowValue) {
        match self.typed.iter_mut().find(|(name, _)| *name == column) {
            Some(slot) => slot.1 = value,
            None => self.typed.push((column, value)),
        }
    }

    /// Forgets the typed values, host and severity, and the event time (back to the receive
    /// time), for a decoder that met a repeated section.
    pub(crate) fn clear_typed(&mut self) {
        self.typed.clear();
        self.host = None;
        self.severity = None;
        self.event_time_us = self.receive_time_us;
    }

    /// Copies a span of the row's text to the end of the open key (`key`) or value.
    pub(crate) fn copy_to_attr(&mut self, (start, end): Span, key: bool) {
        let text = self
            .text
            .get(start as usize..end as usize)
            .unwrap_or_default();
        let out = if key {
            &mut self.attrs.keys.text
        } else {
            &mut self.attrs.values.text
        };
        out.extend_from_slice(text);
    }

    /// Copies a span of the open or closed values to the row's text, and returns its span there.
    pub(crate) fn value_to_text(&mut self, (start, end): Span) -> Span {
        let from = self.mark();
        let text = self
            .attrs
            .values
            .text
            .get(start as usize..end as usize)
            .unwrap_or_default();
        self.text.extend_from_slice(text);
        self.since(from)
    }

    /// The attributes, written as keys and values closed in pairs.
    pub(crate) fn attrs_mut(&mut self) -> &mut Attrs {
        &mut self.attrs
    }
}

/// Texts written one after another, and where each ends (see [`RowText::attr_buffers`]).
pub type TextsWithEnds<'a> = (&'a str, &'a [u32]);

/// A [`Row`] read as text (see [`Row::read`]): its buffers' UTF-8 checked once, each field then
/// a slice of them. Text a row holds is UTF-8 by construction; were a buffer not, every field
/// in it would read as empty.
#[derive(Debug, Clone, Copy)]
pub struct RowText<'a> {
    row: &'a Row,
    text: &'a str,
    keys: &'a str,
    values: &'a str,
}

impl<'a> RowText<'a> {
    fn span(&self, (start, end): Span) -> &'a str {
        self.text
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    fn value(&self, v: RowValue) -> ValueRef<'a> {
        v.read(|span| self.span(span))
    }

    /// The host, if set.
    pub fn host(&self) -> Option<&'a str> {
        self.row.host.map(|s| self.span(s))
    }

    /// The message, if set.
    pub fn message(&self) -> Option<&'a str> {
        self.row.message.map(|s| self.span(s))
    }

    /// The typed value of a column, if set.
    pub fn get(&self, column: &str) -> Option<ValueRef<'a>> {
        self.row
            .typed
            .iter()
            .find_map(|(name, v)| (*name == column).then(|| self.value(*v)))
    }

    /// The typed values, in the order they were set.
    pub fn typed(self) -> impl Iterator<Item = (&'static str, ValueRef<'a>)> + 'a {
        self.row
            .typed
            .iter()
            .map(move |(name, v)| (*name, self.value(*v)))
    }

    /// The attributes, in order.
    pub fn attrs(self) -> impl Iterator<Item = (&'a str, &'a str)> + Clone + 'a {
        let piece = |text: &'a str, ends: &'a [u32], i: usize| {
            let start = match i.checked_sub(1) {
                Some(before) => ends.get(before).copied().unwrap_or(0),
                None => 0,
            };
            let end = ends.get(i).copied().unwrap_or(start);
            text.get(start as usize..end as usize).unwrap_or_default()
        };
        let attrs = &self.row.attrs;
        (0..attrs.len()).map(move |i| {
            (
                piece(self.keys, &attrs.keys.ends, i),
                piece(self.values, &attrs.values.ends, i),
            )
        })
    }

    /// The attribute keys, then the values: each written one after another into one buffer,
    /// with where each ends (the `i`th attribute's key ends at the `i`th end of the keys).
    pub fn attr_buffers(&self) -> (TextsWithEnds<'a>, TextsWithEnds<'a>) {
        let attrs = &self.row.attrs;
        (
            (self.keys, &attrs.keys.ends),
            (self.values, &attrs.values.ends),
        )
    }

    /// The row's own buffer, and where in it each of [`RowText::own_texts`] lies, in the same
    /// order (byte ranges; the texts need not cover the buffer).
    pub fn own_buffer(self) -> (&'a str, impl Iterator<Item = (usize, usize)> + 'a) {
        let row = self.row;
        let typed = row.typed.iter().filter_map(|(_, v)| match *v {
            RowValue::Str(s) => Some(s),
            _ => None,
        });
        let spans = row
            .host
            .into_iter()
            .chain(row.message)
            .chain(typed)
            .map(|(start, end)| (start as usize, end as usize));
        (self.text, spans)
    }

    /// The texts in the row's own buffer, in the order of [`RowText::texts`]: the host, the
    /// message, the typed text values.
    pub fn own_texts(self) -> impl Iterator<Item = &'a str> + 'a {
        let typed = self.row.typed.iter().filter_map(move |(_, v)| match *v {
            RowValue::Str(s) => Some(self.span(s)),
            _ => None,
        });
        self.host().into_iter().chain(self.message()).chain(typed)
    }

    /// Every text of the row, in a fixed order: the host, the message, the typed text values,
    /// then each attribute's key and value. [`Row::rewrite_texts`] numbers them in this order.
    pub fn texts(self) -> impl Iterator<Item = &'a str> + 'a {
        self.own_texts()
            .chain(self.attrs().flat_map(|(k, v)| [k, v]))
    }
}

enum ColumnBuilder {
    Utf8(TextColumn),
    Bool(BooleanBuilder),
    UInt8(UInt8Builder),
    UInt16(UInt16Builder),
    UInt32(UInt32Builder),
    UInt64(UInt64Builder),
    Time(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    fn new(ty: ColumnType, capacity: usize) -> Self {
        match ty {
            ColumnType::Utf8 => ColumnBuilder::Utf8(TextColumn::new(capacity)),
            ColumnType::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            ColumnType::UInt8 => ColumnBuilder::UInt8(UInt8Builder::with_capacity(capacity)),
            ColumnType::UInt16 => ColumnBuilder::UInt16(UInt16Builder::with_capacity(capacity)),
            ColumnType::UInt32 => ColumnBuilder::UInt32(UInt32Builder::with_capacity(capacity)),
            ColumnType::UInt64 => ColumnBuilder::UInt64(UInt64Builder::with_capacity(capacity)),
            ColumnType::Timestamp => ColumnBuilder::Time(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
        }
    }

    /// Checks that `value` fits this column without appending anything.
    fn check(&self, spec: &ColumnSpec, value: Cell<'_>) -> Result<()> {
        let fits = match (self, value) {
            (ColumnBuilder::Utf8(t), Cell::Str(s)) => {
                if !t.fits(s.len()) {
                    return Err(Error::BatchFull);
                }
                true
            }
            (ColumnBuilder::Bool(_), Cell::Bool(_))
            | (ColumnBuilder::UInt64(_), Cell::UInt(_))
            | (ColumnBuilder::Time(_), Cell::Time(_)) => true,
            (ColumnBuilder::UInt8(_), Cell::UInt(v)) => u8::try_from(v).is_ok(),
            (ColumnBuilder::UInt16(_), Cell::UInt(v)) => u16::try_from(v).is_ok(),
            (ColumnBuilder::UInt32(_), Cell::UInt(v)) => u32::try_from(v).is_ok(),
            _ => false,
        };
        if fits {
            Ok(())
        } else {
            let text;
            let value = match value {
                Cell::Str(s) => {
                    text = String::from_utf8_lossy(s);
                    ValueRef::Str(&text)
                }
                Cell::Bool(b) => ValueRef::Bool(b),
                Cell::UInt(n) => ValueRef::UInt(n),
                Cell::Time(t) => ValueRef::Time(t),
            };
            Err(Error::BadValue {
                column: spec.name,
                expected: spec.ty,
                got: format!("{} {:?}", value.type_name(), value),
            })
        }
    }

    /// Appends a value already accepted by [`ColumnBuilder::check`], or a null.
    fn append(&mut self, value: Option<Cell<'_>>) {
        match (self, value) {
            (ColumnBuilder::Utf8(t), Some(Cell::Str(s))) => t.append(Some(s)),
            (ColumnBuilder::Bool(b), Some(Cell::Bool(v))) => b.append_value(v),
            (ColumnBuilder::UInt8(b), Some(Cell::UInt(v))) => b.append_option(u8::try_from(v).ok()),
            (ColumnBuilder::UInt16(b), Some(Cell::UInt(v))) => {
                b.append_option(u16::try_from(v).ok())
            }
            (ColumnBuilder::UInt32(b), Some(Cell::UInt(v))) => {
                b.append_option(u32::try_from(v).ok())
            }
            (ColumnBuilder::UInt64(b), Some(Cell::UInt(v))) => b.append_value(v),
            (ColumnBuilder::Time(b), Some(Cell::Time(v))) => b.append_value(v),
            (ColumnBuilder::Utf8(t), _) => t.append(None),
            (ColumnBuilder::Bool(b), _) => b.append_null(),
            (ColumnBuilder::UInt8(b), _) => b.append_null(),
            (ColumnBuilder::UInt16(b), _) => b.append_null(),
            (ColumnBuilder::UInt32(b), _) => b.append_null(),
            (ColumnBuilder::UInt64(b), _) => b.append_null(),
            (ColumnBuilder::Time(b), _) => b.append_null(),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        Ok(match self {
            ColumnBuilder::Utf8(t) => t.finish()?,
            ColumnBuilder::Bool(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt8(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt16(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt32(b) => Arc::new(b.finish()),
            ColumnBuilder::UInt64(b) => Arc::new(b.finish()),
            ColumnBuilder::Time(b) => Arc::new(b.finish()),
        })
    }
}

/// Builds one Arrow batch of one source kind, for one tenant and collector.
pub struct BatchBuilder {
    kind: SourceKind,
    tenant: Kommunenummer,
    collector: CollectorId,
    rows: usize,
    event_time: TimestampMicrosecondBuilder,
    receive_time: TimestampMicrosecondBuilder,
    host: TextColumn,
    severity: UInt8Builder,
    message: TextColumn,
    typed: Vec<ColumnBuilder>,
    attr_keys: TextLists,
    attr_values: TextLists,
    /// The column of each typed value of the last row, by place, with the address and length
    /// of the name it was found by: a writer names its values with the same `&'static str`s
    /// row after row, so a name at the same address is the same column without comparing it.
    named: Vec<(usize, usize, usize)>,
}

/// Strings appended one after another into one buffer, with the end of each: the parts of a
/// `Utf8` array, kept as plain buffers until the batch is finished (appending a string is one
/// copy and one offset). Each batch starts with the room the previous one took (and an eighth
/// more), where Arrow's builders start from nothing and double their way up again every batch.
#[derive(Debug)]
struct Strings {
    bytes: Vec<u8>,
    /// End of each string in `bytes`, after a leading 0.
    ends: Vec<i32>,
}

impl Strings {
    fn new(strings: usize) -> Self {
        Strings {
            bytes: Vec::new(),
            ends: with_zero(strings.saturating_add(1)),
        }
    }

    /// Whether `more` bytes in `strings` more strings stay within the `i32` offsets of a
    /// `Utf8` array.
    fn fits(&self, more: usize, strings: usize) -> bool {
        self.bytes.len().saturating_add(more) <= i32::MAX as usize
            && self.ends.len().saturating_add(strings) <= i32::MAX as usize
    }

    /// Appends one string: the bytes of a `&str`, after [`Strings::fits`].
    fn push(&mut self, s: &[u8]) {
        self.bytes.extend_from_slice(s);
        self.ends.push(self.bytes.len() as i32);
    }

    /// Takes the buffers of a finished `Utf8` array for the next strings, where they are sole
    /// owners and at least as roomy as what [`Strings::finish`] left (but not more than twice
    /// that); call it only before anything is pushed again.
    fn recycle(&mut self, array: ArrayRef) {
        let Some((offsets, values, _)) = owned::<StringArray>(array).map(StringArray::into_parts)
        else {
            return;
        };
        if let Some(mut bytes) = reusable(values, self.bytes.capacity()) {
            bytes.clear();
            self.bytes = bytes;
        }
        if let Some(mut ends) = reusable(offsets.into_inner().into_inner(), self.ends.capacity()) {
            ends.clear();
            ends.push(0);
            self.ends = ends;
        }
    }

    /// Strings appended since the last [`Strings::finish`].
    fn count(&self) -> usize {
        self.ends.len() - 1
    }

    fn finish(&mut self, nulls: Option<NullBuffer>) -> Result<StringArray> {
        // The next batch gets the room this one took and an eighth more: a batch a little
        // larger than the last would otherwise double its buffers at its very end (copying
        // them whole, and handing Arrow twice the memory it needs).
        let headroom = |n: usize| n.saturating_add(n / 8);
        let (n_ends, n_bytes) = (self.ends.len(), self.bytes.len());
        let ends = std::mem::replace(&mut self.ends, with_zero(headroom(n_ends)));
        let bytes = std::mem::replace(&mut self.bytes, Vec::with_capacity(headroom(n_bytes)));
        Ok(StringArray::try_new(
            OffsetBuffer::new(ScalarBuffer::from(ends)),
            Buffer::from_vec(bytes),
            nulls,
        )?)
    }
}

/// One nullable `Utf8` column as [`Strings`] and a validity bitmap.
#[derive(Debug)]
struct TextColumn {
    strings: Strings,
    nulls: NullBufferBuilder,
}

impl TextColumn {
    fn new(capacity: usize) -> Self {
        TextColumn {
            strings: Strings::new(capacity),
            nulls: NullBufferBuilder::new(capacity),
        }
    }

    /// Whether a value of `len` bytes still fits the column.
    fn fits(&self, len: usize) -> bool {
        self.strings.fits(len, 1)
    }

    /// Appends a value or a null, after [`TextColumn::fits`].
    fn append(&mut self, value: Option<&[u8]>) {
        match value {
            Some(s) => {
                self.strings.push(s);
                self.nulls.append_non_null();
            }
            None => {
                self.strings.push(b"");
                self.nulls.append_null();
            }
        }
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let nulls = self.nulls.finish();
        Ok(Arc::new(self.strings.finish(nulls)?))
    }
}

/// One `List<Utf8>` column: the strings of all rows as [`Strings`], and where each row's list
/// ends.
#[derive(Debug)]
struct TextLists {
    strings: Strings,
    /// End of each row's list in the strings, after a leading 0.
    rows: Vec<i32>,
}

impl TextLists {
    fn new(rows: usize) -> Self {
        TextLists {
            strings: Strings::new(0),
            rows: with_zero(rows.saturating_add(1)),
        }
    }

    /// Makes room for `more` bytes in `strings` more strings; false when they would pass the
    /// `i32` offsets of a `Utf8` column.
    fn reserve(&mut self, more: usize, strings: usize) -> bool {
        let fits = self.strings.fits(more, strings);
        if fits {
            self.strings.bytes.reserve(more);
            self.strings.ends.reserve(strings);
        }
        fits
    }

    /// Appends one string to the open row: bytes of a `&str`, after [`TextLists::reserve`].
    fn push(&mut self, s: &[u8]) {
        self.strings.push(s);
    }

    /// Appends the closed strings of `texts` to the open row in one piece, after
    /// [`TextLists::reserve`].
    fn push_all(&mut self, texts: &Texts) {
        let base = self.strings.bytes.len();
        self.strings.bytes.extend_from_slice(texts.closed());
        self.strings
            .ends
            .extend(texts.ends.iter().map(|&e| (base + e as usize) as i32));
    }

    /// [`Strings::recycle`] for a finished `List<Utf8>` array: its strings' buffers and its
    /// row ends.
    fn recycle(&mut self, array: ArrayRef) {
        let Some((_, rows, values, _)) = owned::<ListArray>(array).map(ListArray::into_parts)
        else {
            return;
        };
        self.strings.recycle(values);
        if let Some(mut ends) = reusable(rows.into_inner().into_inner(), self.rows.capacity()) {
            ends.clear();
            ends.push(0);
            self.rows = ends;
        }
    }

    /// Closes the open row.
    fn end_row(&mut self) {
        self.rows.push(self.strings.count() as i32);
    }

    fn finish(&mut self) -> Result<ArrayRef> {
        let n_rows = self.rows.len();
        let rows = std::mem::replace(&mut self.rows, with_zero(n_rows));
        let values = self.strings.finish(None)?;
        let item = Arc::new(Field::new("item", DataType::Utf8, false));
        Ok(Arc::new(ListArray::try_new(
            item,
            OffsetBuffer::new(ScalarBuffer::from(rows)),
            Arc::new(values),
            None,
        )?))
    }
}

/// Typed columns whose values [`BatchBuilder`] places by position (every kind has fewer).
const TYPED_PLACES: usize = 48;
/// No value for the column in [`BatchBuilder`]'s placement.
const NO_VALUE: u8 = u8::MAX;

/// A [`Row`]'s piece of text as `&str` (see [`Texts`]; empty were it not UTF-8).
fn utf8(bytes: &[u8]) -> &str {
    simdutf8::basic::from_utf8(bytes).unwrap_or_default()
}

/// `[0]`, with room for `capacity` offsets.
fn with_zero(capacity: usize) -> Vec<i32> {
    let mut v = Vec::with_capacity(capacity.max(1));
    v.push(0);
    v
}

/// `array` as a `T` that owns its buffers alone, when nothing else holds them.
fn owned<T: Array + Clone + 'static>(array: ArrayRef) -> Option<T> {
    let typed = array.as_any().downcast_ref::<T>()?.clone();
    drop(array);
    Some(typed)
}

/// `buffer` as a vector to write into instead of one with `room`: when nothing else holds it,
/// it has at least that room and not more than twice that (one large batch does not pin its
/// memory for all that follow).
fn reusable<T: arrow_buffer::ArrowNativeType>(buffer: Buffer, room: usize) -> Option<Vec<T>> {
    let v = buffer.into_vec::<T>().ok()?;
    (v.capacity() >= room && v.capacity() <= room.saturating_mul(2)).then_some(v)
}

impl BatchBuilder {
    /// A builder for `kind` batches of `tenant` from `collector`, sized for `capacity` rows.
    pub fn new(
        kind: SourceKind,
        tenant: Kommunenummer,
        collector: CollectorId,
        capacity: usize,
    ) -> Self {
        BatchBuilder {
            kind,
            tenant,
            collector,
            rows: 0,
            event_time: TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            receive_time: TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            host: TextColumn::new(capacity),
            severity: UInt8Builder::with_capacity(capacity),
            message: TextColumn::new(capacity),
            typed: schema::typed_columns(kind)
                .iter()
                .map(|c| ColumnBuilder::new(c.ty, capacity))
                .collect(),
            attr_keys: TextLists::new(capacity),
            attr_values: TextLists::new(capacity),
            named: Vec::new(),
        }
    }

    /// The source kind of this builder.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Rows appended since the last [`BatchBuilder::finish`].
    pub fn len(&self) -> usize {
        self.rows
    }

    /// True when no row was appended since the last [`BatchBuilder::finish`].
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Appends one event. A typed value of the wrong type, or a typed column the kind does not
    /// have, is an error and appends nothing.
    pub fn push(&mut self, event: &Event) -> Result<()> {
        self.append(RowRef {
            event_time_us: event.event_time_us,
            receive_time_us: event.receive_time_us,
            host: event.host.as_deref().map(str::as_bytes),
            severity: event.severity,
            message: event.message.as_deref().map(str::as_bytes),
            typed: || {
                event
                    .typed
                    .iter()
                    .map(|(name, v)| (*name, v.as_ref().into()))
            },
            typed_at: |k: usize| event.typed.get(k).map(|(_, v)| v.as_ref().into()),
            attrs: event.attrs.as_slice(),
        })
    }

    /// Appends one [`Row`], as [`BatchBuilder::push`] appends an [`Event`] (the same checks),
    /// without making owned strings first.
    pub fn push_row(&mut self, row: &Row) -> Result<()> {
        self.append(RowRef {
            event_time_us: row.event_time_us,
            receive_time_us: row.receive_time_us,
            host: row.host.and_then(|span| row.span_bytes(span)),
            severity: row.severity,
            message: row.message.and_then(|span| row.span_bytes(span)),
            typed: || row.typed.iter().map(|(name, v)| (*name, row.cell(*v))),
            typed_at: |k: usize| row.typed.get(k).map(|(_, v)| row.cell(*v)),
            attrs: &row.attrs,
        })
    }

    fn append<'a, T, I, G, A>(&mut self, row: RowRef<'a, T, G, A>) -> Result<()>
    where
        T: Fn() -> I,
        I: Iterator<Item = (&'static str, Cell<'a>)>,
        G: Fn(usize) -> Option<Cell<'a>>,
        A: AttrSource,
    {
        let specs = schema::typed_columns(self.kind);
        // Each column's value, as its place in the row's typed values (the first of that
        // name), found while checking them: names are compared once per value, not once per
        // column and value. A row with more values than `place` counts looks them up by name.
        let mut place = [NO_VALUE; TYPED_PLACES];
        let mut placed = specs.len() <= TYPED_PLACES;
        for (k, (name, value)) in (row.typed)().enumerate() {
            let address = (name.as_ptr() as usize, name.len());
            let idx = match self.named.get(k) {
                Some(&(at, len, idx)) if (at, len) == address => idx,
                _ => {
                    let idx = specs.iter().position(|c| c.name == name).ok_or_else(|| {
                        Error::UnknownColumn {
                            kind: self.kind,
                            column: name,
                        }
                    })?;
                    if let Some(slot) = self.named.get_mut(k) {
                        *slot = (address.0, address.1, idx);
                    } else if self.named.len() == k {
                        self.named.push((address.0, address.1, idx));
                    }
                    idx
                }
            };
            self.typed[idx].check(&specs[idx], value)?;
            match (place.get_mut(idx), u8::try_from(k)) {
                (Some(slot), Ok(k)) if k != NO_VALUE => {
                    if *slot == NO_VALUE {
                        *slot = k;
                    }
                }
                _ => placed = false,
            }
        }
        if let Some(s) = row.severity
            && s > 7
        {
            return Err(Error::BadSeverity(s));
        }
        let (keys, values, n) = row.attrs.room();
        let text_fits = self.host.fits(row.host.map_or(0, <[u8]>::len))
            && self.message.fits(row.message.map_or(0, <[u8]>::len));
        if !(text_fits && self.attr_keys.reserve(keys, n) && self.attr_values.reserve(values, n)) {
            return Err(Error::BatchFull);
        }
        self.event_time.append_value(row.event_time_us);
        self.receive_time.append_value(row.receive_time_us);
        self.host.append(row.host);
        self.severity.append_option(row.severity);
        self.message.append(row.message);
        for (i, (spec, builder)) in specs.iter().zip(self.typed.iter_mut()).enumerate() {
            let value = if placed {
                match place.get(i).copied().unwrap_or(NO_VALUE) {
                    NO_VALUE => None,
                    k => (row.typed_at)(usize::from(k)),
                }
            } else {
                (row.typed)().find_map(|(name, v)| (name == spec.name).then_some(v))
            };
            builder.append(value);
        }
        row.attrs
            .append_to(&mut self.attr_keys, &mut self.attr_values);
        self.attr_keys.end_row();
        self.attr_values.end_row();
        self.rows += 1;
        Ok(())
    }

    /// Finishes the batch and resets the builder for the next one.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let n = self.rows;
        self.rows = 0;
        let constant =
            |s: &str| -> ArrayRef { Arc::new(StringArray::from_iter_values((0..n).map(|_| s))) };
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(self.event_time.finish()),
            Arc::new(self.receive_time.finish()),
            constant(self.tenant.as_str()),
            constant(self.collector.as_str()),
            self.host.finish()?,
            constant(self.kind.name()),
            Arc::new(self.severity.finish()),
            self.message.finish()?,
        ];
        for typed in &mut self.typed {
            columns.push(typed.finish()?);
        }
        columns.push(self.attr_keys.finish()?);
        columns.push(self.attr_values.finish()?);
        Ok(RecordBatch::try_new(schema::schema(self.kind), columns)?)
    }

    /// Gives a finished batch's text buffers back to the builder, for the next batch: the
    /// host, message and text columns and the attribute lists. A sender that drops each batch
    /// once it is encoded (the collector's shipper) so writes the next one into memory it
    /// already has, instead of fresh pages the kernel must fault in (the message column of
    /// 5,000 syslog lines is most of a megabyte). Buffers something else still holds, and
    /// anything after a row was appended again, are left alone; the batch is dropped either way.
    pub fn recycle(&mut self, batch: RecordBatch) {
        if self.rows != 0 {
            return;
        }
        let (_, columns, _) = batch.into_parts();
        // The order of `finish`: the two times, tenant, collector, host, kind, severity,
        // message, the typed columns, the attribute keys and values.
        let mut columns = columns.into_iter().skip(4);
        if let Some(host) = columns.next() {
            self.host.strings.recycle(host);
        }
        let mut columns = columns.skip(2);
        if let Some(message) = columns.next() {
            self.message.strings.recycle(message);
        }
        for builder in &mut self.typed {
            match (builder, columns.next()) {
                (ColumnBuilder::Utf8(text), Some(column)) => text.strings.recycle(column),
                (_, Some(_)) => {}
                (_, None) => return,
            }
        }
        if let Some(keys) = columns.next() {
            self.attr_keys.recycle(keys);
        }
        if let Some(values) = columns.next() {
            self.attr_values.recycle(values);
        }
    }
}

/// A typed value read from a batch by [`BatchReader::typed`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValueRef<'a> {
    /// Text.
    Str(&'a str),
    /// Boolean.
    Bool(bool),
    /// Unsigned integer of any width.
    UInt(u64),
    /// Microseconds since the Unix epoch, UTC.
    Time(i64),
}

impl ValueRef<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            ValueRef::Str(_) => "text",
            ValueRef::Bool(_) => "boolean",
            ValueRef::UInt(_) => "unsigned integer",
            ValueRef::Time(_) => "timestamp",
        }
    }
}

impl std::fmt::Display for ValueRef<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ValueRef::Str(s) => f.write_str(s),
            ValueRef::Bool(b) => write!(f, "{b}"),
            ValueRef::UInt(v) => write!(f, "{v}"),
            ValueRef::Time(t) => write!(f, "{t}"),
        }
    }
}

/// Checked, typed access to the columns of an event batch.
///
/// [`BatchReader::new`] verifies once that the batch has exactly the schema of its kind, so the
/// accessors cannot fail afterwards.
pub struct BatchReader<'a> {
    kind: SourceKind,
    batch: &'a RecordBatch,
    event_time: &'a arrow_array::PrimitiveArray<TimestampMicrosecondType>,
    receive_time: &'a arrow_array::PrimitiveArray<TimestampMicrosecondType>,
    tenant: &'a StringArray,
    collector_id: &'a StringArray,
    host: &'a StringArray,
    severity: &'a arrow_array::PrimitiveArray<UInt8Type>,
    message: &'a StringArray,
    attr_keys: &'a ListArray,
    attr_values: &'a ListArray,
}

impl<'a> BatchReader<'a> {
    /// Checks `batch` against the schema of `kind` and returns a reader over it.
    pub fn new(kind: SourceKind, batch: &'a RecordBatch) -> Result<Self> {
        let expected = schema::schema(kind);
        if batch.schema().fields() != expected.fields() {
            return Err(Error::SchemaMismatch {
                kind,
                detail: describe_mismatch(&expected, &batch.schema()),
            });
        }
        let c = |i: usize| batch.column(i).as_ref();
        let n = batch.num_columns();
        let attr_keys: &ListArray = c(n - 2).as_list();
        let attr_values: &ListArray = c(n - 1).as_list();
        if let Some(row) = (0..batch.num_rows())
            .find(|&r| attr_keys.value_length(r) != attr_values.value_length(r))
        {
            return Err(Error::SchemaMismatch {
                kind,
                detail: format!("row {row}: attr_keys and attr_values differ in length"),
            });
        }
        Ok(BatchReader {
            kind,
            batch,
            event_time: c(0).as_primitive(),
            receive_time: c(1).as_primitive(),
            tenant: c(2).as_string(),
            collector_id: c(3).as_string(),
            host: c(4).as_string(),
            severity: c(6).as_primitive(),
            message: c(7).as_string(),
            attr_keys,
            attr_values,
        })
    }

    /// The source kind.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.batch.num_rows()
    }

    /// True when the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.batch.num_rows() == 0
    }

    /// Event time of a row, µs since the epoch.
    pub fn event_time_us(&self, row: usize) -> i64 {
        self.event_time.value(row)
    }

    /// Receive time of a row, µs since the epoch.
    pub fn receive_time_us(&self, row: usize) -> i64 {
        self.receive_time.value(row)
    }

    /// Tenant of a row (kommunenummer as text).
    pub fn tenant(&self, row: usize) -> &'a str {
        self.tenant.value(row)
    }

    /// Collector id of a row.
    pub fn collector_id(&self, row: usize) -> &'a str {
        self.collector_id.value(row)
    }

    /// Host of a row.
    pub fn host(&self, row: usize) -> Option<&'a str> {
        self.host.is_valid(row).then(|| self.host.value(row))
    }

    /// Severity of a row.
    pub fn severity(&self, row: usize) -> Option<u8> {
        self.severity
            .is_valid(row)
            .then(|| self.severity.value(row))
    }

    /// Message of a row.
    pub fn message(&self, row: usize) -> Option<&'a str> {
        self.message.is_valid(row).then(|| self.message.value(row))
    }

    /// The value of the typed column `index` (in [`schema::typed_columns`] order) at `row`.
    pub fn typed(&self, index: usize, row: usize) -> Option<ValueRef<'a>> {
        self.typed_column(index)?.get(row)
    }

    /// The typed column `index` (in [`schema::typed_columns`] order), its type looked up once:
    /// for readers of many rows of one column.
    pub fn typed_column(&self, index: usize) -> Option<TypedColumn<'a>> {
        let spec = schema::typed_columns(self.kind).get(index)?;
        let array: &'a dyn Array = self.batch.column(COMMON_COLUMNS + index).as_ref();
        Some(match spec.ty {
            ColumnType::Utf8 => TypedColumn::Str(array.as_string::<i32>()),
            ColumnType::Bool => TypedColumn::Bool(array.as_boolean()),
            ColumnType::UInt8 => TypedColumn::UInt8(array.as_primitive::<UInt8Type>()),
            ColumnType::UInt16 => TypedColumn::UInt16(array.as_primitive::<UInt16Type>()),
            ColumnType::UInt32 => TypedColumn::UInt32(array.as_primitive::<UInt32Type>()),
            ColumnType::UInt64 => TypedColumn::UInt64(array.as_primitive::<UInt64Type>()),
            ColumnType::Timestamp => {
                TypedColumn::Time(array.as_primitive::<TimestampMicrosecondType>())
            }
        })
    }

    /// Every row's attributes at once, for readers of the whole batch: the keys and values of
    /// all rows in two flat arrays, each row a range of positions in both.
    pub fn attr_table(&self) -> AttrTable<'a> {
        AttrTable {
            key_lists: self.attr_keys.value_offsets(),
            value_lists: self.attr_values.value_offsets(),
            keys: self.attr_keys.values().as_string(),
            values: self.attr_values.values().as_string(),
        }
    }

    /// The remaining fields of a row, as (key, value) pairs in order.
    pub fn attrs(&self, row: usize) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let keys: &'a StringArray = self.attr_keys.values().as_string();
        let values: &'a StringArray = self.attr_values.values().as_string();
        let (k0, k1) = list_range(self.attr_keys, row);
        let (v0, _) = list_range(self.attr_values, row);
        (0..k1 - k0).map(move |i| (keys.value(k0 + i), values.value(v0 + i)))
    }

    /// Every typed column with a value, as (name, text) pairs: the key/value view the store
    /// uses for kinds whose typed columns have no column of their own in a table.
    pub fn typed_fields(&self, row: usize) -> Vec<(&'static str, String)> {
        schema::typed_columns(self.kind)
            .iter()
            .enumerate()
            .filter_map(|(i, spec)| self.typed(i, row).map(|v| (spec.name, v.to_string())))
            .collect()
    }
}

/// A typed column of a batch, downcast once (see [`BatchReader::typed_column`]).
#[derive(Clone, Copy)]
pub enum TypedColumn<'a> {
    /// Text.
    Str(&'a StringArray),
    /// Unsigned 8-bit integers.
    UInt8(&'a arrow_array::PrimitiveArray<UInt8Type>),
    /// Unsigned 16-bit integers.
    UInt16(&'a arrow_array::PrimitiveArray<UInt16Type>),
    /// Unsigned 32-bit integers.
    UInt32(&'a arrow_array::PrimitiveArray<UInt32Type>),
    /// Unsigned 64-bit integers.
    UInt64(&'a arrow_array::PrimitiveArray<UInt64Type>),
    /// Booleans.
    Bool(&'a arrow_array::BooleanArray),
    /// Microseconds since the epoch.
    Time(&'a arrow_array::PrimitiveArray<TimestampMicrosecondType>),
}

impl<'a> TypedColumn<'a> {
    /// The value at `row`.
    #[inline]
    pub fn get(&self, row: usize) -> Option<ValueRef<'a>> {
        let (valid, value) = match *self {
            TypedColumn::Str(a) => (a.is_valid(row), ValueRef::Str(a.value(row))),
            TypedColumn::Bool(a) => (a.is_valid(row), ValueRef::Bool(a.value(row))),
            TypedColumn::UInt8(a) => (a.is_valid(row), ValueRef::UInt(a.value(row).into())),
            TypedColumn::UInt16(a) => (a.is_valid(row), ValueRef::UInt(a.value(row).into())),
            TypedColumn::UInt32(a) => (a.is_valid(row), ValueRef::UInt(a.value(row).into())),
            TypedColumn::UInt64(a) => (a.is_valid(row), ValueRef::UInt(a.value(row))),
            TypedColumn::Time(a) => (a.is_valid(row), ValueRef::Time(a.value(row))),
        };
        valid.then_some(value)
    }
}

/// The attributes of every row of a batch (see [`BatchReader::attr_table`]).
#[derive(Clone, Copy)]
pub struct AttrTable<'a> {
    key_lists: &'a [i32],
    value_lists: &'a [i32],
    keys: &'a StringArray,
    values: &'a StringArray,
}

impl<'a> AttrTable<'a> {
    /// The positions of row `row`'s attributes in [`AttrTable::key`] and [`AttrTable::value`]
    /// (a [`BatchReader`] checked that keys and values have the same number per row).
    #[inline]
    pub fn row(&self, row: usize) -> std::ops::Range<usize> {
        let (start, end) = offsets_range(self.key_lists, row);
        start..end
    }

    /// Where row `row`'s values start, relative to where its keys start.
    #[inline]
    fn value_shift(&self, row: usize) -> isize {
        (self.value_lists[row] as isize) - (self.key_lists[row] as isize)
    }

    /// The keys at `positions` (a range of [`AttrTable::row`]) as one run of bytes, and the
    /// offsets where each starts and the last ends (`positions.len() + 1` of them, relative to
    /// the batch's key buffer: subtract the first to compare two runs).
    #[inline]
    pub fn key_run(&self, positions: std::ops::Range<usize>) -> (&'a [u8], &'a [i32]) {
        let offsets = self.keys.value_offsets();
        let ends = offsets.get(positions.start..=positions.end).unwrap_or(&[]);
        let bytes = match (ends.first(), ends.last()) {
            (Some(&a), Some(&b)) => usize::try_from(a)
                .ok()
                .zip(usize::try_from(b).ok())
                .and_then(|(a, b)| self.keys.value_data().get(a..b))
                .unwrap_or(&[]),
            _ => &[],
        };
        (bytes, ends)
    }

    /// The key at a position of [`AttrTable::row`].
    #[inline]
    pub fn key(&self, at: usize) -> &'a str {
        self.keys.value(at)
    }

    /// The value of row `row` at a position of [`AttrTable::row`].
    #[inline]
    pub fn value(&self, row: usize, at: usize) -> &'a str {
        self.values
            .value(at.saturating_add_signed(self.value_shift(row)))
    }
}

fn list_range(list: &ListArray, row: usize) -> (usize, usize) {
    offsets_range(list.value_offsets(), row)
}

/// Where row `row` starts and ends by a list's offsets.
fn offsets_range(offsets: &[i32], row: usize) -> (usize, usize) {
    // Offsets of a valid ListArray are non-negative and non-decreasing.
    let start = usize::try_from(offsets[row]).unwrap_or(0);
    let end = usize::try_from(offsets[row + 1]).unwrap_or(start);
    (start, end.max(start))
}

fn describe_mismatch(expected: &arrow_schema::Schema, got: &arrow_schema::Schema) -> String {
    for (i, want) in expected.fields().iter().enumerate() {
        match got.fields().get(i) {
            None => return format!("column {i} '{}' is missing", want.name()),
            Some(have) if have != want => {
                return format!(
                    "column {i}: expected '{}' {:?} (nullable {}), got '{}' {:?} (nullable {})",
                    want.name(),
                    want.data_type(),
                    want.is_nullable(),
                    have.name(),
                    have.data_type(),
                    have.is_nullable()
                );
            }
            Some(_) => {}
        }
    }
    format!(
        "{} columns where {} were expected",
        got.fields().len(),
        expected.fields().len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each column gets the first typed value of its name, in any order of the values, and
    /// nothing when the row has none.
    #[test]
    fn typed_values_land_in_their_columns_first_one_winning() {
        let tenant = Kommunenummer::parse("0301").expect("tenant");
        let collector = CollectorId::new("k0301-01").expect("id");
        let mut builder = BatchBuilder::new(SourceKind::Syslog, tenant, collector, 2);
        let str = |s: &str| Value::Str(s.to_owned());
        builder
            .push(&Event {
                typed: vec![
                    ("proc_id", str("42")),
                    ("app_name", str("sshd")),
                    ("app_name", str("second")),
                    ("facility", Value::UInt(4)),
                ],
                ..Event::default()
            })
            .expect("push");
        builder
            .push(&Event {
                typed: vec![("msg_id", str("ID47"))],
                ..Event::default()
            })
            .expect("push");
        let batch = builder.finish().expect("batch");
        let reader = BatchReader::new(SourceKind::Syslog, &batch).expect("reader");
        let column = |name: &str, row: usize| {
            let i = schema::typed_columns(SourceKind::Syslog)
                .iter()
                .position(|c| c.name == name)
                .expect("column");
            reader.typed(i, row)
        };
        assert_eq!(column("app_name", 0), Some(ValueRef::Str("sshd")));
        assert_eq!(column("proc_id", 0), Some(ValueRef::Str("42")));
        assert_eq!(column("facility", 0), Some(ValueRef::UInt(4)));
        assert_eq!(column("msg_id", 0), None);
        assert_eq!(column("msg_id", 1), Some(ValueRef::Str("ID47")));
        assert_eq!(column("app_name", 1), None);
    }

    /// A batch given back is where the next one is written: the message column of the second
    /// batch lives in the first one's buffer, and holds only its own rows.
    #[test]
    fn a_recycled_batch_is_the_next_ones_memory() {
        let tenant = Kommunenummer::parse("0301").expect("tenant");
        let collector = CollectorId::new("k0301-01").expect("id");
        let mut builder = BatchBuilder::new(SourceKind::Syslog, tenant, collector, 100);
        let fill = |builder: &mut BatchBuilder, text: &str| {
            for i in 0..100 {
                let event = Event {
                    message: Some(format!("{text} {i}")),
                    attrs: vec![("k".into(), text.into())],
                    ..Event::default()
                };
                builder.push(&event).expect("push");
            }
            builder.finish().expect("batch")
        };
        let first = fill(&mut builder, "første");
        let message_at = first.column(7).as_string::<i32>().values().as_ptr();
        builder.recycle(first);
        let second = fill(&mut builder, "andre");
        let messages = second.column(7).as_string::<i32>();
        assert_eq!(messages.values().as_ptr(), message_at);
        assert_eq!(messages.value(0), "andre 0");
        assert_eq!(messages.value(99), "andre 99");
        assert_eq!(messages.len(), 100);
        // A batch something else still holds gives nothing back.
        let kept = second.clone();
        builder.recycle(second);
        let third = fill(&mut builder, "tredje");
        assert_ne!(
            third.column(7).as_string::<i32>().values().as_ptr(),
            kept.column(7).as_string::<i32>().values().as_ptr()
        );
        assert_eq!(kept.column(7).as_string::<i32>().value(0), "andre 0");
    }

    /// A row appended with `push_row` and the same event appended with `push` make the same
    /// batch; the attribute lists keep their order and row boundaries.
    #[test]
    fn rows_and_events_build_the_same_batch() {
        let mut decoder = crate::windows::EvtxDecoder::default();
        let texts = [
            r#"{"Event":{"System":{"EventID":1,"Computer":"ws01","Level":4},"EventData":{"Image":"C:\\x.exe","CommandLine":"x /y"}}}"#,
            r#"{"Event":{"System":{"Channel":"Security"}}}"#,
            r#"{"Event":{"System":{"EventRecordID":7},"EventData":{"æ":"ø","":""}}}"#,
        ];
        let tenant = Kommunenummer::parse("4601").expect("tenant");
        let collector = CollectorId::new("c").expect("id");
        let mut by_row = BatchBuilder::new(SourceKind::WindowsEvent, tenant, collector.clone(), 1);
        let mut by_event = BatchBuilder::new(SourceKind::WindowsEvent, tenant, collector, 1);
        for t in texts {
            let row = decoder.decode_str(t, 5).expect("a record");
            by_row.push_row(row).expect("row");
            by_event.push(&row.to_event()).expect("event");
        }
        let (a, b) = (by_row.finish().expect("a"), by_event.finish().expect("b"));
        assert_eq!(a, b);
        let r = BatchReader::new(SourceKind::WindowsEvent, &a).expect("reader");
        assert_eq!(
            r.attrs(0).collect::<Vec<_>>(),
            [
                ("System.Level", "4"),
                ("Image", "C:\\x.exe"),
                ("CommandLine", "x /y")
            ]
        );
        assert_eq!(r.attrs(1).count(), 0);
        assert_eq!(r.attrs(2).collect::<Vec<_>>(), [("æ", "ø"), ("", "")]);
        assert_eq!(r.host(0), Some("ws01"));
        assert_eq!(r.severity(0), Some(6));
        // The builder starts over after finish.
        assert_eq!(by_row.finish().expect("empty").num_rows(), 0);
    }

    /// The text columns kept as plain buffers between batches give, batch after batch, the
    /// arrays Arrow's own `StringBuilder` gives for the same values (nulls, empty strings,
    /// multi-byte text), whatever the previous batch left in the buffers.
    #[test]
    fn text_columns_match_arrows_builder_across_batches() {
        use arrow_array::builder::StringBuilder;
        let tenant = Kommunenummer::parse("0301").expect("tenant");
        let collector = CollectorId::new("c").expect("id");
        let mut builder = BatchBuilder::new(SourceKind::Syslog, tenant, collector, 2);
        let hosts = [Some("web01"), None, Some(""), Some("vært-ø")];
        let apps = [None, Some("sshd"), Some("kjøring"), None, Some("")];
        for batch in 0..4usize {
            let rows = [3, 0, 7, 1][batch];
            let (mut want_host, mut want_message, mut want_app) = (
                StringBuilder::new(),
                StringBuilder::new(),
                StringBuilder::new(),
            );
            for i in 0..rows {
                let host = hosts[(i + batch) % hosts.len()];
                let app = apps[(i * 3 + batch) % apps.len()];
                let message =
                    (i % 3 != 1).then(|| format!("linje {batch}.{i} {}", "x".repeat(i * 40)));
                let mut event = Event {
                    host: host.map(str::to_owned),
                    message: message.clone(),
                    ..Event::default()
                };
                if let Some(a) = app {
                    event.typed.push(("app_name", Value::Str(a.to_owned())));
                }
                builder.push(&event).expect("push");
                want_host.append_option(host);
                want_message.append_option(message);
                want_app.append_option(app);
            }
            let got = builder.finish().expect("batch");
            let column = |name: &str| got.column_by_name(name).expect(name).clone();
            assert_eq!(
                column("host").to_data(),
                want_host.finish().into_data(),
                "batch {batch}"
            );
            assert_eq!(
                column("message").to_data(),
                want_message.finish().into_data(),
                "batch {batch}"
            );
            assert_eq!(
                column("app_name").to_data(),
                want_app.finish().into_data(),
                "batch {batch}"
            );
        }
    }
}
