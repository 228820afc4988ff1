//! Windows event records in the evtx JSON shape, decoded in one pass from the text straight
//! into a [`Row`]: no tree of the document, no owned string per field. The same decoder reads a
//! document already parsed into a `serde_json::Value` ([`EvtxDecoder::decode_value`]), so
//! there is one definition of the shape, whatever the input.
//!
//! What goes where is described in [the module above](super). Two details the one pass makes
//! visible:
//! - A member repeated within one object of the record (two `"Image"` keys in `EventData`) is
//!   kept as often as it occurs, each as its own attribute; a typed column set twice keeps the
//!   later value. A repeated `Event`, `System`, `EventData` or `UserData` replaces the earlier
//!   one, as in a parsed tree.
//! - The attributes come in the order `System`, `EventData`, `UserData` whatever the order of
//!   the record's members.

use std::io::Write as _;

use serde::Deserialize;
use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value as Json;

use super::{NotAWindowsEvent, json, number, scalar_text, text, text_of};
use crate::event::{Attrs, Row, Span};

/// Why a line is not a Windows event record.
#[derive(Debug, thiserror::Error)]
pub enum EvtxError {
    /// Not JSON at all; the error says where.
    #[error("not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// JSON, but not the evtx shape.
    #[error(transparent)]
    NotWindows(#[from] NotAWindowsEvent),
}

/// Decodes evtx-shaped records one after another, reusing one [`Row`]'s buffers.
///
/// ```
/// use varde_core::windows::EvtxDecoder;
/// let mut decoder = EvtxDecoder::default();
/// let row = decoder.decode_str(
///     r#"{"Event":{"System":{"EventID":1,"Computer":"ws01"},"EventData":{"Image":"C:\\x.exe"}}}"#,
///     7,
/// )?;
/// assert_eq!(row.host(), Some("ws01"));
/// assert_eq!(row.attrs().collect::<Vec<_>>(), [("Image", "C:\\x.exe")]);
/// # Ok::<(), varde_core::windows::EvtxError>(())
/// ```
#[derive(Debug, Default)]
pub struct EvtxDecoder {
    d: Decoding,
    /// The fast reader's buffer for strings with escapes, kept from record to record.
    scratch: Vec<u8>,
}

#[derive(Debug, Default)]
struct Decoding {
    row: Row,
    /// The last `Event` member is an object.
    event: bool,
    /// The last `Event.System` member is an object.
    system: bool,
    /// `System.<member>` of the member being read, the prefix of its attributes (the text of
    /// a member's name; see [`crate::event::Row`]'s buffers).
    prefix: Vec<u8>,
    /// The attributes of the last `System`, `EventData` and `UserData`, as positions among
    /// the row's attributes. Each section's attributes are written where the record has them;
    /// when the sections came in this order, once each (as in every record Windows writes),
    /// that is already their order in the row.
    sections: [(usize, usize); 3],
    /// The last section begun, while the sections come in order, each once.
    last_section: Option<usize>,
    /// A section came out of order or again: [`Decoding::finish`] puts the row's attributes
    /// together from `sections`.
    reorder: bool,
    /// Where they are put together, kept from record to record.
    spare: Attrs,
}

/// Where a decoder writes a piece of text: the row's own text (host, typed values, and text
/// only read while decoding), or the open key or value of an attribute.
#[derive(Debug, Clone, Copy, PartialEq)]
enum To {
    Text,
    Key,
    Value,
}

const SYSTEM: usize = 0;
const EVENT_DATA: usize = 1;
const USER_DATA: usize = 2;

impl EvtxDecoder {
    /// Decodes one record from JSON text; `receive_time_us` is the receive time, and the event
    /// time when `TimeCreated` is missing or unreadable. The row is valid until the next call.
    ///
    /// The text is read by Varde's own JSON reader (`core/src/windows/json.rs`), the record's
    /// objects walked by hand ([`direct`]) where they have the usual shape; a document the
    /// reader declines is read again by serde_json, whose reading or error (with line and
    /// column) is then the answer.
    pub fn decode_str(&mut self, text: &str, receive_time_us: i64) -> Result<&Row, EvtxError> {
        self.d.begin(receive_time_us);
        let mut reader = json::Reader::new(text, &mut self.scratch);
        let fast = direct::top(&mut reader, &mut self.d).and_then(|()| reader.end());
        if fast.is_err() {
            self.d.begin(receive_time_us);
            let mut de = serde_json::Deserializer::from_str(text);
            Top(&mut self.d).deserialize(&mut de)?;
            de.end()?;
        }
        Ok(self.d.finish()?)
    }

    /// [`EvtxDecoder::decode_str`] into `row`: the decoded row and `row` change places, so the
    /// caller keeps the event and the decoder writes the next one into `row`'s old buffers
    /// (no copy either way). On an error `row` is left as it was.
    pub fn decode_into(
        &mut self,
        text: &str,
        receive_time_us: i64,
        row: &mut Row,
    ) -> Result<(), EvtxError> {
        self.decode_str(text, receive_time_us)?;
        std::mem::swap(&mut self.d.row, row);
        Ok(())
    }

    /// Decodes one record already parsed into a tree.
    pub fn decode_value(
        &mut self,
        doc: &Json,
        receive_time_us: i64,
    ) -> Result<&Row, NotAWindowsEvent> {
        self.d.begin(receive_time_us);
        // Every visitor below accepts every JSON value, so reading a tree cannot fail.
        Top(&mut self.d)
            .deserialize(doc)
            .map_err(|_| NotAWindowsEvent("unreadable record"))?;
        self.d.finish()
    }
}

impl Decoding {
    fn begin(&mut self, receive_time_us: i64) {
        self.row.clear(receive_time_us);
        self.event = false;
        self.system = false;
        self.sections = [(0, 0); 3];
        self.last_section = None;
        self.reorder = false;
    }

    /// Starts (or starts again) the attributes of `section`.
    fn begin_section(&mut self, section: usize) {
        if self.last_section.is_some_and(|last| last >= section) {
            self.reorder = true;
        }
        self.last_section = Some(section);
        let at = self.row.attrs_mut().len();
        self.sections[section] = (at, at);
    }

    fn end_section(&mut self, section: usize) {
        self.sections[section].1 = self.row.attrs_mut().len();
    }

    fn finish(&mut self) -> Result<&Row, NotAWindowsEvent> {
        if !self.event {
            return Err(NotAWindowsEvent("no \"Event\" object"));
        }
        if !self.system {
            return Err(NotAWindowsEvent("no \"Event.System\" object"));
        }
        if self.reorder {
            self.row.attrs_mut().select(&self.sections, &mut self.spare);
        }
        Ok(&self.row)
    }

    /// The buffer `to` names.
    fn out(&mut self, to: To) -> &mut Vec<u8> {
        match to {
            To::Text => self.row.text_mut(),
            To::Key => self.row.attrs_mut().keys().text_mut(),
            To::Value => self.row.attrs_mut().values().text_mut(),
        }
    }

    /// Writes a JSON value's attribute text (see [`text`]) to `to` and returns its span there
    /// and whether it was a scalar (string, number or boolean).
    fn leaf(&mut self, leaf: Leaf<'_>, to: To) -> (Span, bool) {
        let out = self.out(to);
        let start = mark(out);
        let scalar = match leaf {
            Leaf::Str(s) => {
                out.extend_from_slice(s.as_bytes());
                true
            }
            Leaf::U64(n) => {
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                true
            }
            Leaf::I64(n) => {
                out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
                true
            }
            Leaf::F64(f) => match serde_json::Number::from_f64(f) {
                Some(n) => write!(out, "{n}").is_ok(),
                None => false, // as a parsed tree holds it: null
            },
            Leaf::Bool(b) => write!(out, "{b}").is_ok(),
            Leaf::Null => false,
            Leaf::Nested(v) => {
                let _ = write!(out, "{v}");
                false
            }
        };
        (since(out, start), scalar)
    }

    /// Writes `parts` to `to` and returns their span there.
    fn write(&mut self, to: To, parts: &[&str]) -> Span {
        let out = self.out(to);
        let start = mark(out);
        for p in parts {
            out.extend_from_slice(p.as_bytes());
        }
        since(out, start)
    }

    /// Writes the prefix and `suffix` (the text of a member's name) as the open key.
    fn prefixed(&mut self, sep: &str, suffix: &[u8]) {
        let out = self.row.attrs_mut().keys().text_mut();
        out.extend_from_slice(&self.prefix);
        out.extend_from_slice(sep.as_bytes());
        out.extend_from_slice(suffix);
    }

    /// Writes `text` (from a tree's helper) to the row's text and returns its span.
    fn owned(&mut self, text: Option<String>) -> Option<Span> {
        text.map(|t| self.write(To::Text, &[&t]))
    }

    /// Keeps `System.<name>` as the prefix of a `System` member's attributes; which of
    /// [`SYSTEM_NAMES`] it is.
    fn system_key(&mut self, name: &[u8]) -> Option<usize> {
        self.prefix.clear();
        self.prefix.extend_from_slice(b"System.");
        self.prefix.extend_from_slice(name);
        SYSTEM_NAMES.iter().position(|n| n.as_bytes() == name)
    }

    /// `Provider/@Name` (a span of the values) as the typed column `provider`.
    fn provider(&mut self, name: Option<Span>) {
        if let Some(span) = name {
            let span = self.row.value_to_text(span);
            self.row.set_str("provider", span);
        }
    }

    /// `TimeCreated/@SystemTime` (a span of the row's text) as the event time, when readable.
    fn time_created(&mut self, at: Option<Span>) {
        if let Some(t) = at
            .map(|span| self.row.span_text(span))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            self.row.event_time_us = t.timestamp_micros();
        }
    }

    /// Closes the open key and value as one attribute.
    fn close(&mut self) {
        self.row.attrs_mut().close();
    }
}

/// The end of what `out` holds, where the next span starts.
fn mark(out: &[u8]) -> u32 {
    u32::try_from(out.len()).unwrap_or(u32::MAX)
}

/// The span of `out` from `start` to its end.
fn since(out: &[u8], start: u32) -> Span {
    (start, mark(out))
}

/// A JSON value that is not an object, as a visitor meets it.
enum Leaf<'v> {
    Str(&'v str),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Null,
    /// A list (or an object where only its text is wanted), read into a tree.
    Nested(&'v Json),
}

/// The visits of every scalar, forwarded to `self.leaf(Leaf)`. The visitor implements
/// `visit_map` and `visit_seq` itself, or takes [`leaves!`].
macro_rules! scalar_leaves {
    () => {
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(self.leaf(Leaf::Str(v)))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Ok(self.leaf(Leaf::U64(v)))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
            Ok(self.leaf(Leaf::I64(v)))
        }
        fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Ok(self.leaf(Leaf::F64(v)))
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
            Ok(self.leaf(Leaf::Bool(v)))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(self.leaf(Leaf::Null))
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(self.leaf(Leaf::Null))
        }
    };
}

/// [`scalar_leaves!`], and lists read into a tree as one leaf. The visitor implements
/// `visit_map` itself.
macro_rules! leaves {
    () => {
        scalar_leaves!();
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            let v = Json::deserialize(SeqAccessDeserializer::new(seq))?;
            Ok(self.leaf(Leaf::Nested(&v)))
        }
    };
}

/// Reads an object into a tree (for shapes that are rare and small).
fn tree<'de, A: MapAccess<'de>>(map: A) -> Result<Json, A::Error> {
    Json::deserialize(MapAccessDeserializer::new(map))
}

/// `DeserializeSeed` for a visitor that is its own seed: `$how` (`deserialize_any`, or
/// `deserialize_str` for member names) with the visitor itself.
macro_rules! seed {
    ($name:ty, $value:ty, $how:ident) => {
        impl<'de> DeserializeSeed<'de> for $name {
            type Value = $value;
            fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.$how(self)
            }
        }
    };
}

/// Which of `names` a member's name is (`None`: another name).
struct KeyIs(&'static [&'static str]);

seed!(KeyIs, Option<usize>, deserialize_str);

impl<'de> Visitor<'de> for KeyIs {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.iter().position(|n| *n == v))
    }
}

/// A member's name written as the open key; also says which of `names` it is.
struct KeyText<'a>(&'a mut Decoding, &'static [&'static str]);

seed!(KeyText<'_>, Option<usize>, deserialize_str);

impl<'de> Visitor<'de> for KeyText<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.0.write(To::Key, &[v]);
        Ok(self.1.iter().position(|n| *n == v))
    }
}

/// Any value as attribute text ([`text`]) written to `.1`: its span there, and whether it was
/// a scalar.
struct Text<'a>(&'a mut Decoding, To);

impl Text<'_> {
    fn leaf(self, leaf: Leaf<'_>) -> (Span, bool) {
        self.0.leaf(leaf, self.1)
    }
}

seed!(Text<'_>, (Span, bool), deserialize_any);

impl<'de> Visitor<'de> for Text<'_> {
    type Value = (Span, bool);
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    leaves!();
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let v = tree(map)?;
        Ok(self.leaf(Leaf::Nested(&v)))
    }
}

/// A value whose content does not matter unless it is an object, which `on_map` reads.
macro_rules! objects_only {
    ($name:ident) => {
        impl $name<'_> {
            fn leaf(self, _: Leaf<'_>) {}
        }
        seed!($name<'_>, (), deserialize_any);
    };
}

/// The document: its `Event` member.
struct Top<'a>(&'a mut Decoding);
objects_only!(Top);

impl<'de> Visitor<'de> for Top<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }
    leaves!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(k) = map.next_key_seed(KeyIs(&["Event"]))? {
            if k.is_some() {
                let t = self.0.row.receive_time_us;
                self.0.begin(t);
                map.next_value_seed(EventSeed(self.0))?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

/// `Event`: `System`, `EventData`, `UserData`.
struct EventSeed<'a>(&'a mut Decoding);
objects_only!(EventSeed);

impl<'de> Visitor<'de> for EventSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the Event object")
    }
    leaves!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let d = self.0;
        d.event = true;
        while let Some(k) = map.next_key_seed(KeyIs(&["System", "EventData", "UserData"]))? {
            match k {
                Some(0) => {
                    d.system = false;
                    d.row.clear_typed();
                    d.begin_section(SYSTEM);
                    map.next_value_seed(SystemSeed(&mut *d))?;
                    d.end_section(SYSTEM);
                }
                Some(1) => {
                    d.begin_section(EVENT_DATA);
                    map.next_value_seed(EventData(&mut *d))?;
                    d.end_section(EVENT_DATA);
                }
                Some(_) => {
                    d.begin_section(USER_DATA);
                    map.next_value_seed(UserData(&mut *d))?;
                    d.end_section(USER_DATA);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// `Event.System`: the typed columns, the event time, the severity, `System.*` attributes.
struct SystemSeed<'a>(&'a mut Decoding);
objects_only!(SystemSeed);

/// The `System` members Varde reads for more than attributes. The first five are read by
/// [`SysValue`] (a scalar as its text and number, an object into a small tree for the same
/// helpers as Winlogbeat's and NXLog's shapes); `Provider` and `TimeCreated` by [`Flatten`].
const SYSTEM_NAMES: &[&str] = &[
    "EventID",
    "Channel",
    "Computer",
    "EventRecordID",
    "Level",
    "Provider",
    "TimeCreated",
];

impl<'de> Visitor<'de> for SystemSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the System object")
    }
    leaves!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let d = self.0;
        d.system = true;
        while let Some(which) = map.next_key_seed(SystemKey(&mut *d))? {
            map.next_value_seed(SystemMember { d: &mut *d, which })?;
        }
        Ok(())
    }
}

/// The value of a `System` member whose name ([`SystemKey`]) is `which` of
/// [`SYSTEM_NAMES`] (`None`: another name).
struct SystemMember<'a> {
    d: &'a mut Decoding,
    which: Option<usize>,
}

impl<'de> DeserializeSeed<'de> for SystemMember<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<(), D::Error> {
        let d = self.d;
        match self.which.map(|i| SYSTEM_NAMES[i]) {
            Some("Provider") => {
                let name = Flatten {
                    d: &mut *d,
                    emit: true,
                    want: "Name",
                }
                .deserialize(de)?;
                d.provider(name);
            }
            Some("TimeCreated") => {
                let at = Flatten {
                    d: &mut *d,
                    emit: false,
                    want: "SystemTime",
                }
                .deserialize(de)?;
                d.time_created(at);
            }
            Some(name) => {
                // Only the level is an attribute as well.
                let to = if name == "Level" { To::Value } else { To::Text };
                let value = SysValue(&mut *d, to).deserialize(de)?;
                system_scalar(d, name, value);
            }
            None => {
                Flatten {
                    d: &mut *d,
                    emit: true,
                    want: "",
                }
                .deserialize(de)?;
            }
        }
        Ok(())
    }
}

/// A `System` member read for a typed column: a value not an object written as its text to
/// `.1` (`span`, whether a scalar, and its number as [`number`] reads it); an object (as
/// `{"#text": 1, "#attributes": …}`, rare) read into a tree.
enum SysVal {
    Leaf {
        span: Span,
        scalar: bool,
        number: Option<u64>,
    },
    Tree(Json),
}

struct SysValue<'a>(&'a mut Decoding, To);

seed!(SysValue<'_>, SysVal, deserialize_any);

impl SysValue<'_> {
    fn leaf(self, leaf: Leaf<'_>) -> SysVal {
        let number = match leaf {
            Leaf::U64(n) => Some(n),
            Leaf::Str(s) => s.trim().parse().ok(),
            _ => None,
        };
        let (span, scalar) = self.0.leaf(leaf, self.1);
        SysVal::Leaf {
            span,
            scalar,
            number,
        }
    }
}

impl<'de> Visitor<'de> for SysValue<'_> {
    type Value = SysVal;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a System member")
    }
    leaves!();
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Ok(SysVal::Tree(tree(map)?))
    }
}

/// One of the first five [`SYSTEM_NAMES`]: for a leaf, `text_of` is the leaf itself. A
/// `Level` leaf was written as the open value, others to the row's text.
fn system_scalar(d: &mut Decoding, name: &str, value: SysVal) {
    let (scalar_of_text, scalar, number_of_text) = match value {
        SysVal::Leaf {
            span,
            scalar,
            number,
        } => (scalar.then_some(span), scalar.then_some(span), number),
        SysVal::Tree(v) => {
            let of_text = d.owned(scalar_text(text_of(&v)));
            let own = d.owned(scalar_text(&v));
            if name == "Level" {
                d.write(To::Value, &[&text(&v)]);
            }
            (of_text, own, number(text_of(&v)))
        }
    };
    match name {
        "EventID" => {
            if let Some(id) = number_of_text.and_then(|n| u32::try_from(n).ok()) {
                d.row.set_uint("win_event_id", u64::from(id));
            }
        }
        "Channel" => {
            if let Some(span) = scalar_of_text {
                d.row.set_str("channel", span);
            }
        }
        "Computer" => {
            if let Some(span) = scalar_of_text {
                d.row.set_str("computer", span);
            }
            d.row.set_host(scalar);
        }
        "EventRecordID" => {
            if let Some(n) = number_of_text {
                d.row.set_uint("record_id", n);
            }
        }
        _ => {
            // Level
            d.row.severity = number_of_text.map(|l| match l {
                1 => 2, // critical
                2 => 3, // error
                3 => 4, // warning
                5 => 7, // verbose
                _ => 6, // information (4) and "log always" (0)
            });
            d.write(To::Key, &["System.Level"]);
            d.close();
        }
    }
}

/// A `System` member's name, kept as the prefix `System.<name>` of its attributes; which of
/// [`SYSTEM_NAMES`] it is.
struct SystemKey<'a>(&'a mut Decoding);

seed!(SystemKey<'_>, Option<usize>, deserialize_str);

impl<'de> Visitor<'de> for SystemKey<'_> {
    type Value = Option<usize>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a member name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.0.system_key(v.as_bytes()))
    }
}

/// A `System` member as attributes: `{"#attributes": {"A": 1}, "#text": t}` as
/// `<prefix>_A` (in order) then `<prefix>`; a scalar as `<prefix>`; null as nothing. Attributes
/// are written only when `emit`; the scalar text of the attribute `want` is returned.
struct Flatten<'a> {
    d: &'a mut Decoding,
    emit: bool,
    want: &'static str,
}

seed!(Flatten<'_>, Option<Span>, deserialize_any);

impl Flatten<'_> {
    fn leaf(self, leaf: Leaf<'_>) -> Option<Span> {
        if self.emit && !matches!(leaf, Leaf::Null) {
            self.d.leaf(leaf, To::Value);
            self.d.prefixed("", b"");
            self.d.close();
        }
        None
    }
}

impl<'de> Visitor<'de> for Flatten<'_> {
    type Value = Option<Span>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a System member")
    }
    leaves!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Flatten { d, emit, want } = self;
        let mut wanted = None;
        let mut own_text = None;
        while let Some(k) = map.next_key_seed(KeyIs(&["#attributes", "#text"]))? {
            match k {
                Some(0) => {
                    if let Some(span) = map.next_value_seed(Attributes {
                        d: &mut *d,
                        emit,
                        want,
                    })? {
                        wanted = Some(span);
                    }
                }
                // Kept aside: it follows the attributes, wherever the record has it.
                Some(_) => own_text = Some(map.next_value_seed(Text(&mut *d, To::Text))?.0),
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if emit && let Some(v) = own_text {
            d.prefixed("", b"");
            d.row.copy_to_attr(v, false);
            d.close();
        }
        Ok(wanted)
    }
}

/// The `#attributes` object of a `System` member (see [`Flatten`]), or of a `Data` item (its
/// `Name`). Emitted attributes are written as keys and values; when not emitted, their values
/// go to the row's text (where the wanted one's span then points).
struct Attributes<'a> {
    d: &'a mut Decoding,
    emit: bool,
    want: &'static str,
}

seed!(Attributes<'_>, Option<Span>, deserialize_any);

impl Attributes<'_> {
    fn leaf(self, _: Leaf<'_>) -> Option<Span> {
        None
    }
}

impl<'de> Visitor<'de> for Attributes<'_> {
    type Value = Option<Span>;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an #attributes object")
    }
    leaves!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let Attributes { d, emit, want } = self;
        let mut wanted = None;
        let to = if emit { To::Value } else { To::Text };
        while let Some(is_wanted) = map.next_key_seed(AttrName {
            d: &mut *d,
            emit,
            want,
        })? {
            let (v, scalar) = map.next_value_seed(Text(&mut *d, to))?;
            if is_wanted {
                wanted = scalar.then_some(v);
            }
            if emit {
                d.close();
            }
        }
        Ok(wanted)
    }
}

/// An attribute's name: the open key `<prefix>_<name>` when `emit`; whether the name is the
/// one wanted.
struct AttrName<'a> {
    d: &'a mut Decoding,
    emit: bool,
    want: &'static str,
}

seed!(AttrName<'_>, bool, deserialize_str);

impl<'de> Visitor<'de> for AttrName<'_> {
    type Value = bool;
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an attribute name")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        if self.emit {
            self.d.prefixed("_", v.as_bytes());
        }
        Ok(v == self.want)
    }
}

/// `Event.EventData`: members as attributes under their own names, `Data` lists by their
/// items' `Name`; a list of items as such.
struct EventData<'a>(&'a mut Decoding);

seed!(EventData<'_>, (), deserialize_any);

impl EventData<'_> {
    fn leaf(self, _: Leaf<'_>) {}
}

impl<'de> Visitor<'de> for EventData<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the EventData object or list")
    }
    scalar_leaves!();
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        data_list(self.0, seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let d = self.0;
        while let Some(which) = map.next_key_seed(KeyText(&mut *d, &["#attributes", "Data"]))? {
            match which {
                Some(0) => {
                    d.row.attrs_mut().keys().drop_open();
                    map.next_value::<IgnoredAny>()?;
                }
                Some(_) => map.next_value_seed(DataMember { d: &mut *d })?,
                None => {
                    map.next_value_seed(Text(&mut *d, To::Value))?;
                    d.close();
                }
            }
        }
        Ok(())
    }
}

/// `EventData.Data`, whose name is the open key: a list of named items; one named item;
/// anything else an attribute `Data`.
struct DataMember<'a> {
    d: &'a mut Decoding,
}

seed!(DataMember<'_>, (), deserialize_any);

impl DataMember<'_> {
    fn leaf(self, leaf: Leaf<'_>) {
        self.d.leaf(leaf, To::Value);
        self.d.close();
    }
}

impl<'de> Visitor<'de> for DataMember<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("EventData.Data")
    }
    scalar_leaves!();
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        data_list(self.d, seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        // One item without the list around it: rare, read as a tree.
        let v = tree(map)?;
        if v.get("#attributes").is_some() {
            self.d.row.attrs_mut().keys().drop_open();
            Item {
                d: self.d,
                index: 0,
            }
            .deserialize(&v)
            .map_err(de::Error::custom)
        } else {
            self.leaf(Leaf::Nested(&v));
            Ok(())
        }
    }
}

fn data_list<'de, A: SeqAccess<'de>>(d: &mut Decoding, mut seq: A) -> Result<(), A::Error> {
    // The items name themselves: not `Data`, if that was the open key.
    d.row.attrs_mut().keys().drop_open();
    let mut index = 0;
    while seq.next_element_seed(Item { d: &mut *d, index })?.is_some() {
        index += 1;
    }
    Ok(())
}

/// An item of a `Data` list: `{"#attributes": {"Name": n}, "#text": v}` as the attribute `n`
/// (`Data`, `Data1`, … when unnamed), a bare value as an unnamed item.
struct Item<'a> {
    d: &'a mut Decoding,
    index: usize,
}

seed!(Item<'_>, (), deserialize_any);

impl Item<'_> {
    fn leaf(mut self, leaf: Leaf<'_>) {
        self.d.leaf(leaf, To::Value);
        self.unnamed();
        self.d.close();
    }

    /// Writes the open key of an unnamed item.
    fn unnamed(&mut self) {
        if self.index == 0 {
            self.d.write(To::Key, &["Data"]);
        } else {
            self.d
                .write(To::Key, &["Data", itoa::Buffer::new().format(self.index)]);
        }
    }
}

impl<'de> Visitor<'de> for Item<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a Data item")
    }
    leaves!();
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut name = None;
        while let Some(k) = map.next_key_seed(KeyIs(&["#attributes", "#text"]))? {
            match k {
                Some(0) => {
                    // Only the scalar `Name`; nothing of it is an attribute itself.
                    if let Some(n) = map.next_value_seed(Attributes {
                        d: &mut *self.d,
                        emit: false,
                        want: "Name",
                    })? {
                        name = Some(n);
                    }
                }
                // The open value; a later `#text` replaces it.
                Some(_) => {
                    self.d.row.attrs_mut().values().drop_open();
                    map.next_value_seed(Text(&mut *self.d, To::Value))?;
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match name {
            Some(n) => self.d.row.copy_to_attr(n, true),
            None => self.unnamed(),
        }
        self.d.close();
        Ok(())
    }
}

/// `Event.UserData`: its one provider-defined element's children as attributes.
struct UserData<'a>(&'a mut Decoding);
objects_only!(UserData);

impl<'de> Visitor<'de> for UserData<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("the UserData object")
    }
    leaves!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(UserElement(&mut *self.0))?;
        }
        Ok(())
    }
}

/// One element of `UserData`: its children (but `#attributes`) under their own names; a value
/// that is not an object as the attribute `UserData`.
struct UserElement<'a>(&'a mut Decoding);

seed!(UserElement<'_>, (), deserialize_any);

impl UserElement<'_> {
    fn leaf(self, leaf: Leaf<'_>) {
        self.0.leaf(leaf, To::Value);
        self.0.write(To::Key, &["UserData"]);
        self.0.close();
    }
}

impl<'de> Visitor<'de> for UserElement<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a UserData element")
    }
    leaves!();
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let d = self.0;
        while let Some(which) = map.next_key_seed(KeyText(&mut *d, &["#attributes"]))? {
            if which.is_some() {
                d.row.attrs_mut().keys().drop_open();
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Text(&mut *d, To::Value))?;
                d.close();
            }
        }
        Ok(())
    }
}

/// The record's usual shape walked by hand over Varde's JSON reader: the members of the
/// document, of `Event`, `System` and `EventData`, and `EventData`'s string values, without a
/// visitor's calls for each. Every other value (a `System` member's, nested objects and lists,
/// numbers) and every object of another shape is read by the same visitors as
/// [`EvtxDecoder::decode_value`] uses, on the same reader; this walk does what their
/// `visit_map`s do, member for member.
mod direct {
    use super::json::{Declined, Reader};
    use super::*;

    type Result = std::result::Result<(), Declined>;

    /// Walks the members of an object whose `{` was taken, to its `}`: `name` looks at each
    /// member's name, `value` reads its value with what `name` made of it.
    #[inline(always)]
    fn members<W>(
        r: &mut Reader<'_, '_>,
        d: &mut Decoding,
        mut name: impl FnMut(&mut Decoding, &[u8]) -> W,
        mut value: impl FnMut(&mut Reader<'_, '_>, &mut Decoding, W) -> Result,
    ) -> Result {
        let mut first = true;
        loop {
            let named = match r.next_member(&mut first)? {
                None => return Ok(()),
                Some(n) => name(d, n),
            };
            r.colon()?;
            value(r, d, named)?;
        }
    }

    /// [`Top`].
    pub(super) fn top(r: &mut Reader<'_, '_>, d: &mut Decoding) -> Result {
        if !r.open_object()? {
            return Top(d).deserialize(&mut *r);
        }
        members(
            r,
            d,
            |_, name| name == b"Event",
            |r, d, is_event| {
                if is_event {
                    let t = d.row.receive_time_us;
                    d.begin(t);
                    event(r, d)
                } else {
                    IgnoredAny::deserialize(&mut *r).map(|_| ())
                }
            },
        )
    }

    /// [`EventSeed`].
    fn event(r: &mut Reader<'_, '_>, d: &mut Decoding) -> Result {
        if !r.open_object()? {
            return EventSeed(d).deserialize(&mut *r);
        }
        d.event = true;
        let sections = [&b"System"[..], b"EventData", b"UserData"];
        members(
            r,
            d,
            |_, name| sections.iter().position(|n| *n == name),
            |r, d, which| {
                match which {
                    Some(0) => {
                        d.system = false;
                        d.row.clear_typed();
                        d.begin_section(SYSTEM);
                        system(r, d)?;
                        d.end_section(SYSTEM);
                    }
                    Some(1) => {
                        d.begin_section(EVENT_DATA);
                        event_data(r, d)?;
                        d.end_section(EVENT_DATA);
                    }
                    Some(_) => {
                        d.begin_section(USER_DATA);
                        UserData(&mut *d).deserialize(&mut *r)?;
                        d.end_section(USER_DATA);
                    }
                    None => {
                        IgnoredAny::deserialize(&mut *r)?;
                    }
                }
                Ok(())
            },
        )
    }

    /// [`SystemSeed`].
    fn system(r: &mut Reader<'_, '_>, d: &mut Decoding) -> Result {
        if !r.open_object()? {
            return SystemSeed(d).deserialize(&mut *r);
        }
        d.system = true;
        members(r, d, Decoding::system_key, |r, d, which| {
            match which.map(|i| SYSTEM_NAMES[i]) {
                Some("Provider") => {
                    let name = flatten(
                        r,
                        Flatten {
                            d: &mut *d,
                            emit: true,
                            want: "Name",
                        },
                    )?;
                    d.provider(name);
                }
                Some("TimeCreated") => {
                    let at = flatten(
                        r,
                        Flatten {
                            d: &mut *d,
                            emit: false,
                            want: "SystemTime",
                        },
                    )?;
                    d.time_created(at);
                }
                // A string or number, as `SysValue` reads it.
                Some(name) if matches!(r.peek(), Some(b'"' | b'0'..=b'9')) => {
                    let to = if name == "Level" { To::Value } else { To::Text };
                    let (span, scalar) = text(r, d, to)?;
                    let read = match to {
                        To::Value => d.row.attrs_mut().values().span_bytes(span),
                        _ => d.row.text_mut().get(span.0 as usize..span.1 as usize),
                    };
                    let number = read
                        .and_then(|t| std::str::from_utf8(t).ok())
                        .and_then(|t| t.trim().parse().ok());
                    system_scalar(
                        d,
                        name,
                        SysVal::Leaf {
                            span,
                            scalar,
                            number,
                        },
                    );
                }
                Some(_) => SystemMember { d: &mut *d, which }.deserialize(&mut *r)?,
                None => {
                    flatten(
                        r,
                        Flatten {
                            d: &mut *d,
                            emit: true,
                            want: "",
                        },
                    )?;
                }
            }
            Ok(())
        })
    }

    /// A value as attribute text written to `to`: a string read straight there, anything
    /// else by [`Text`]. Its span there, and whether it was a scalar.
    #[inline(always)]
    fn text(
        r: &mut Reader<'_, '_>,
        d: &mut Decoding,
        to: To,
    ) -> std::result::Result<(Span, bool), Declined> {
        match r.peek() {
            Some(b'"') => {
                let out = d.out(to);
                let start = mark(out);
                r.string_value_onto(out)?;
                Ok((since(out, start), true))
            }
            Some(b'0'..=b'9') => match r.plain_integer() {
                // Its digits are the text a visitor writes for that number.
                Some(digits) => {
                    let out = d.out(to);
                    let start = mark(out);
                    out.extend_from_slice(digits);
                    Ok((since(out, start), true))
                }
                None => Text(d, to).deserialize(&mut *r),
            },
            _ => Text(d, to).deserialize(&mut *r),
        }
    }

    /// What `how` ([`Flatten`]) reads, walked by hand.
    fn flatten(
        r: &mut Reader<'_, '_>,
        how: Flatten<'_>,
    ) -> std::result::Result<Option<Span>, Declined> {
        let Flatten { d, emit, want } = how;
        if !r.open_object()? {
            // A string or number, as `Flatten::leaf` writes it.
            if emit && matches!(r.peek(), Some(b'"' | b'0'..=b'9')) {
                text(r, d, To::Value)?;
                d.prefixed("", b"");
                d.close();
                return Ok(None);
            }
            return Flatten { d, emit, want }.deserialize(&mut *r);
        }
        let mut wanted = None;
        let mut own_text = None;
        let parts = [&b"#attributes"[..], b"#text"];
        members(
            r,
            d,
            |_, name| parts.iter().position(|n| *n == name),
            |r, d, which| {
                match which {
                    Some(0) => {
                        if let Some(span) = attributes(r, Attributes { d, emit, want })? {
                            wanted = Some(span);
                        }
                    }
                    Some(_) => own_text = Some(text(r, d, To::Text)?.0),
                    None => {
                        IgnoredAny::deserialize(&mut *r)?;
                    }
                }
                Ok(())
            },
        )?;
        if emit && let Some(v) = own_text {
            d.prefixed("", b"");
            d.row.copy_to_attr(v, false);
            d.close();
        }
        Ok(wanted)
    }

    /// What `how` ([`Attributes`]) reads, walked by hand.
    fn attributes(
        r: &mut Reader<'_, '_>,
        how: Attributes<'_>,
    ) -> std::result::Result<Option<Span>, Declined> {
        let Attributes { d, emit, want } = how;
        if !r.open_object()? {
            return Attributes { d, emit, want }.deserialize(&mut *r);
        }
        let to = if emit { To::Value } else { To::Text };
        let mut wanted = None;
        members(
            r,
            d,
            |d, name| {
                if emit {
                    d.prefixed("_", name);
                }
                name == want.as_bytes()
            },
            |r, d, is_wanted| {
                let (v, scalar) = text(r, d, to)?;
                if is_wanted {
                    wanted = scalar.then_some(v);
                }
                if emit {
                    d.close();
                }
                Ok(())
            },
        )?;
        Ok(wanted)
    }

    /// [`EventData`].
    fn event_data(r: &mut Reader<'_, '_>, d: &mut Decoding) -> Result {
        if !r.open_object()? {
            return EventData(d).deserialize(&mut *r);
        }
        let special = [&b"#attributes"[..], b"Data"];
        members(
            r,
            d,
            |d, name| {
                d.out(To::Key).extend_from_slice(name);
                special.iter().position(|n| *n == name)
            },
            |r, d, which| {
                match which {
                    Some(0) => {
                        d.row.attrs_mut().keys().drop_open();
                        IgnoredAny::deserialize(&mut *r)?;
                    }
                    Some(_) => DataMember { d: &mut *d }.deserialize(&mut *r)?,
                    None => {
                        text(r, d, To::Value)?;
                        d.close();
                    }
                }
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(row: &Row) -> Vec<(String, String)> {
        row.attrs()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn sections_come_in_order_and_repeated_members_are_all_kept() {
        let text = r##"{"Event":{
            "UserData":{"Cleared":{"SubjectUserName":"adm","#attributes":{"xmlns":"x"}}},
            "EventData":{"Image":"C:\\a.exe","Image":"C:\\b.exe","Data":[{"#attributes":{"Name":"p"},"#text":1},"bare"]},
            "System":{"EventID":4688,"EventID":"4689","Execution":{"#text":"t","#attributes":{"ProcessID":4}},
                      "TimeCreated":{"#attributes":{"SystemTime":"2024-05-01T10:00:00+02:00"}}}}}"##;
        let mut d = EvtxDecoder::default();
        let row = d.decode_str(text, 9).expect("a record");
        assert_eq!(
            attrs(row),
            [
                ("System.Execution_ProcessID", "4"),
                ("System.Execution", "t"),
                ("Image", "C:\\a.exe"),
                ("Image", "C:\\b.exe"),
                ("p", "1"),
                ("Data1", "bare"),
                ("SubjectUserName", "adm"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
        );
        // A typed column set twice keeps the later value.
        assert_eq!(
            row.typed().collect::<Vec<_>>(),
            [("win_event_id", crate::ValueRef::UInt(4689))]
        );
        assert_eq!(row.event_time_us, 1_714_550_400_000_000);
        assert_eq!(row.receive_time_us, 9);
    }

    #[test]
    fn a_repeated_section_replaces_the_earlier_one() {
        let text = r#"{"Event":{"System":{"EventID":1,"Computer":"a","Level":2},"EventData":{"A":"1"},
            "System":{"EventID":2},"EventData":{"B":"2"}}}"#;
        let mut d = EvtxDecoder::default();
        let row = d.decode_str(text, 0).expect("a record");
        assert_eq!(row.host(), None);
        assert_eq!(row.severity, None);
        assert_eq!(
            row.typed().collect::<Vec<_>>(),
            [("win_event_id", crate::ValueRef::UInt(2))]
        );
        assert_eq!(attrs(row), [("B".to_owned(), "2".to_owned())]);
    }

    #[test]
    fn broken_and_foreign_documents_say_why_and_the_decoder_goes_on() {
        let mut d = EvtxDecoder::default();
        let err = d
            .decode_str("{\"Event\":{\"System\":{\"EventID\":1,}}}", 0)
            .expect_err("trailing comma");
        assert!(matches!(err, EvtxError::Json(_)), "{err}");
        assert!(err.to_string().contains("column"), "{err}");
        let err = d
            .decode_str(r#"{"Event":{"System":{}}} trailing"#, 0)
            .expect_err("text after the record");
        assert!(matches!(err, EvtxError::Json(_)), "{err}");
        for (doc, why) in [
            (r#"{"a":1}"#, "no \"Event\" object"),
            (r#"[1]"#, "no \"Event\" object"),
            (r#"{"Event":{"System":1}}"#, "no \"Event.System\" object"),
            (
                r#"{"Event":{"System":{}},"Event":2}"#,
                "no \"Event\" object",
            ),
        ] {
            let err = d.decode_str(doc, 0).expect_err(doc);
            assert!(err.to_string().contains(why), "{doc}: {err}");
        }
        // The next good record is whole, nothing left over from the failures.
        let row = d
            .decode_str(
                r#"{"Event":{"System":{"Computer":"ws"},"EventData":{"K":"v"}}}"#,
                3,
            )
            .expect("a record");
        assert_eq!(row.host(), Some("ws"));
        assert_eq!(attrs(row), [("K".to_owned(), "v".to_owned())]);
        assert_eq!(row.event_time_us, 3);
    }
}
