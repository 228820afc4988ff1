//! A JSON reader for the evtx decoder's visitors: a `serde::Deserializer` over one document's
//! text that hands member names and unescaped strings to the visitor without serde_json's
//! per-document scratch buffer (one buffer kept for the decoder's life), finding a string's end
//! eight bytes at a time.
//!
//! It reads the JSON grammar of RFC 8259 and refuses everything serde_json refuses, but it says
//! nothing about why: on any refusal (or a visitor's error) the decoder reads the document again
//! with serde_json, whose error (with line and column) or reading is then the answer. So a
//! document this reader declines (a lone surrogate escape, nesting past serde_json's limit of
//! 128, a number it leaves to serde_json) is read exactly as serde_json reads it, only slower.
//! Numbers that are not plain integers are parsed by serde_json itself, so a float here is the
//! float serde_json makes of the same digits.

use std::fmt;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::forward_to_deserialize_any;
use wide::u8x16;

/// The position of the first `"`, `\` or control character (below 0x20) in `b` at or after
/// `i`: sixteen bytes at a time (`wide`'s safe SIMD: two equality tests, and a byte whose
/// minimum with 0x1f is itself is a control character; the lowest bit of the mask is the
/// answer), the last fewer than sixteen bytes eight at a time, then one by one.
fn special(b: &[u8], mut i: usize) -> Option<usize> {
    let (quote, backslash, control) = (u8x16::splat(b'"'), u8x16::splat(b'\\'), u8x16::splat(0x1f));
    while let Some(chunk) = b.get(i..i + 16) {
        let bytes = u8x16::new(<[u8; 16]>::try_from(chunk).unwrap_or_default());
        let hits = bytes.cmp_eq(quote) | bytes.cmp_eq(backslash) | bytes.min(control).cmp_eq(bytes);
        let mask = hits.move_mask();
        if mask != 0 {
            return Some(i + mask.trailing_zeros() as usize);
        }
        i += 16;
    }
    special_words(b, i)
}

/// [`special`] eight bytes at a time: a byte's high bit is set in `hits` where it equals one
/// of the two, or is below 0x20, and nowhere before the first such byte (a borrow only
/// carries up from a hit), so the lowest set bit is the answer.
fn special_words(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    const QUOTE: u64 = ONES * b'"' as u64;
    const BACKSLASH: u64 = ONES * b'\\' as u64;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let x = u64::from_le_bytes(word);
        let q = x ^ QUOTE;
        let s = x ^ BACKSLASH;
        let hits = ((q.wrapping_sub(ONES) & !q)
            | (s.wrapping_sub(ONES) & !s)
            | (x.wrapping_sub(ONES * 0x20) & !x))
            & HIGH;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|p| i + p)
}

/// Appends `b[from..to]` to `out`. A piece of at most 16 bytes (most names, most parts of a
/// Windows path between its backslashes) is copied as the whole 16 bytes from `from` when the
/// text has them, and `out` cut back to the piece: a copy of a known size is a few moves, where
/// one of any size is a call.
#[inline(always)]
fn append(out: &mut Vec<u8>, b: &[u8], from: usize, to: usize) {
    let n = to.saturating_sub(from);
    if n <= 16
        && let Some(word) = b.get(from..from + 16)
        && let Ok(word) = <&[u8; 16]>::try_from(word)
    {
        let len = out.len();
        out.extend_from_slice(word);
        out.truncate(len + n);
    } else {
        out.extend_from_slice(b.get(from..to).unwrap_or_default());
    }
}

/// The reader declined the text; serde_json says why.
#[derive(Debug)]
pub(super) struct Declined;

impl fmt::Display for Declined {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("declined by the fast JSON reader")
    }
}

impl std::error::Error for Declined {}

impl de::Error for Declined {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Declined
    }
}

type Result<T> = std::result::Result<T, Declined>;

/// serde_json's nesting limit: arrays and objects deeper than this are refused.
const DEPTH: u32 = 128;

/// One document's text being read; `scratch` holds the current string when it had escapes.
pub(super) struct Reader<'a, 's> {
    text: &'a str,
    pos: usize,
    depth: u32,
    scratch: &'s mut Vec<u8>,
}

/// A string as read: borrowed from the text, or unescaped into the scratch buffer.
enum Str<'a, 's> {
    Text(&'a str),
    Scratch(&'s str),
}

impl<'a, 's> Reader<'a, 's> {
    pub(super) fn new(text: &'a str, scratch: &'s mut Vec<u8>) -> Self {
        Reader {
            text,
            pos: 0,
            depth: DEPTH,
            scratch,
        }
    }

    /// Only whitespace may follow the document.
    pub(super) fn end(&mut self) -> Result<()> {
        match self.skip_ws() {
            None => Ok(()),
            Some(_) => Err(Declined),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// Skips whitespace and returns the next byte without taking it.
    #[inline(always)]
    fn skip_ws(&mut self) -> Option<u8> {
        let b = self.bytes();
        // Most tokens follow the last one directly (a record is one line).
        if let Some(&c) = b.get(self.pos)
            && c > b' '
        {
            return Some(c);
        }
        while let Some(&c) = b.get(self.pos) {
            match c {
                b' ' | b'\n' | b'\t' | b'\r' => self.pos += 1,
                _ => return Some(c),
            }
        }
        None
    }

    fn expect(&mut self, want: u8) -> Result<()> {
        if self.skip_ws() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(Declined)
        }
    }

    fn literal(&mut self, word: &str) -> Result<()> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(Declined)
        }
    }

    /// Reads a string whose opening quote was taken. Inlined into its callers (values and
    /// member names): a call of its own cost about as much as a short string's reading.
    #[inline(always)]
    fn string(&mut self) -> Result<Str<'a, '_>> {
        let b = self.bytes();
        let start = self.pos;
        let at = special(b, start).ok_or(Declined)?;
        if b[at] == b'"' {
            self.pos = at + 1;
            return Ok(Str::Text(&self.text[start..at]));
        }
        self.escaped()?;
        // What was written is UTF-8 (see `string_onto`); checked for the `&str` a visitor
        // takes, as only strings with escapes come here.
        Ok(Str::Scratch(
            std::str::from_utf8(self.scratch).map_err(|_| Declined)?,
        ))
    }

    /// Reads a string with escapes, whose opening quote was taken, into the scratch buffer.
    fn escaped(&mut self) -> Result<()> {
        let mut scratch = std::mem::take(self.scratch);
        scratch.clear();
        let read = self.string_onto(&mut scratch);
        *self.scratch = scratch;
        read
    }

    /// Reads a string whose opening quote was taken, appending its text, unescaped, to `out`:
    /// runs of the text cut at a quote or a backslash (ASCII bytes, so between characters), and
    /// whole characters for escapes, so what is appended is UTF-8.
    #[inline(always)]
    fn string_onto(&mut self, out: &mut Vec<u8>) -> Result<()> {
        let b = self.bytes();
        // Text from `from` on is still to be copied.
        let mut from = self.pos;
        loop {
            let at = special(b, self.pos).ok_or(Declined)?;
            match b[at] {
                b'"' => {
                    self.pos = at + 1;
                    append(out, b, from, at);
                    return Ok(());
                }
                b'\\' => {
                    append(out, b, from, at);
                    match b.get(at + 1) {
                        // `\\`, `\"` and `\/` stand for their second byte: it starts the
                        // next run of text to copy (a Windows path is mostly these).
                        Some(b'\\' | b'"' | b'/') => {
                            from = at + 1;
                            self.pos = at + 2;
                        }
                        _ => {
                            self.pos = at + 1;
                            let ch = self.escape()?;
                            out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
                            from = self.pos;
                        }
                    }
                }
                // A control character, which must be escaped.
                _ => return Err(Declined),
            }
        }
    }

    /// The next byte but whitespace, not taken.
    pub(super) fn peek(&mut self) -> Option<u8> {
        self.skip_ws()
    }

    /// Takes the `{` of an object when one comes next (false, and nothing taken, when
    /// something else does): for a caller that walks the members itself with
    /// [`Reader::next_member`] instead of through a visitor.
    pub(super) fn open_object(&mut self) -> Result<bool> {
        if self.skip_ws() != Some(b'{') {
            return Ok(false);
        }
        self.pos += 1;
        self.nest()?;
        Ok(true)
    }

    /// The next member's name (`first`: none was read yet), or `None` once the object's `}`
    /// is taken. The caller takes the `:` with [`Reader::colon`] once done with the name.
    pub(super) fn next_member(&mut self, first: &mut bool) -> Result<Option<&[u8]>> {
        let next = self.skip_ws().ok_or(Declined)?;
        if next == b'}' {
            self.pos += 1;
            self.depth += 1;
            return Ok(None);
        }
        if !*first {
            if next != b',' {
                return Err(Declined);
            }
            self.pos += 1;
            if self.skip_ws() != Some(b'"') {
                return Err(Declined);
            }
        } else if next != b'"' {
            return Err(Declined);
        }
        *first = false;
        self.pos += 1;
        let b = self.bytes();
        let start = self.pos;
        let at = special(b, start).ok_or(Declined)?;
        if b[at] == b'"' {
            self.pos = at + 1;
            return Ok(Some(&b[start..at]));
        }
        self.escaped()?;
        Ok(Some(self.scratch.as_slice()))
    }

    /// Takes the `:` between a member's name and its value.
    pub(super) fn colon(&mut self) -> Result<()> {
        self.expect(b':')
    }

    /// Reads the string that comes next (see [`Reader::peek`]), appending its text to `out`.
    pub(super) fn string_value_onto(&mut self, out: &mut Vec<u8>) -> Result<()> {
        self.expect(b'"')?;
        self.string_onto(out)
    }

    /// Reads one escape whose backslash was taken: one of `\b`, `\f`, `\n`, `\r`, `\t`,
    /// `\uXXXX` (the other three are read by [`Reader::string_onto`]).
    fn escape(&mut self) -> Result<char> {
        let c = *self.bytes().get(self.pos).ok_or(Declined)?;
        self.pos += 1;
        let ch = match c {
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let code = match hi {
                    0xD800..=0xDBFF => {
                        // A surrogate pair; anything else is left to serde_json.
                        if !self.text[self.pos..].starts_with("\\u") {
                            return Err(Declined);
                        }
                        self.pos += 2;
                        let lo = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return Err(Declined);
                        }
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(Declined),
                    n => n,
                };
                char::from_u32(code).ok_or(Declined)?
            }
            _ => return Err(Declined),
        };
        Ok(ch)
    }

    fn hex4(&mut self) -> Result<u32> {
        let digits = self.bytes().get(self.pos..self.pos + 4).ok_or(Declined)?;
        let mut n = 0;
        for &d in digits {
            n = n * 16 + char::from(d).to_digit(16).ok_or(Declined)?;
        }
        self.pos += 4;
        Ok(n)
    }

    /// The digits of a non-negative integer of at most 19 digits (so within `u64`) when one
    /// comes next, taken; `None`, and nothing taken, for any other value. They are the text a
    /// visitor writes for the `u64` [`Reader::number`] hands it: JSON allows no leading zeros.
    pub(super) fn plain_integer(&mut self) -> Option<&'a [u8]> {
        let b = self.bytes();
        let start = self.pos;
        let digits = b
            .get(start..)?
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let end = start + digits;
        let plain = (1..=19).contains(&digits)
            && (digits == 1 || b[start] != b'0')
            && !matches!(b.get(end), Some(b'.' | b'e' | b'E'));
        if !plain {
            return None;
        }
        self.pos = end;
        b.get(start..end)
    }

    /// Reads a number at the current position and hands it to the visitor as serde_json does:
    /// a non-negative integer as `u64`, a negative one as `i64`, anything else (fractions,
    /// exponents, `-0`, integers past 64 bits) as the `f64` serde_json parses from the same
    /// digits.
    fn number<'de, V: Visitor<'de>>(&mut self, visitor: V) -> Result<V::Value> {
        let b = self.bytes();
        let start = self.pos;
        let negative = b[start] == b'-';
        let digits_at = start + usize::from(negative);
        let mut end = digits_at;
        let mut n: u64 = 0;
        let mut fits = true;
        while let Some(&d) = b.get(end)
            && d.is_ascii_digit()
        {
            match n
                .checked_mul(10)
                .and_then(|m| m.checked_add(u64::from(d - b'0')))
            {
                Some(m) => n = m,
                None => fits = false,
            }
            end += 1;
        }
        let digits = end - digits_at;
        if digits == 0 || (digits > 1 && b[digits_at] == b'0') {
            return Err(Declined);
        }
        let plain = !matches!(b.get(end), Some(b'.' | b'e' | b'E'));
        if plain && fits && !negative {
            self.pos = end;
            return visitor.visit_u64(n);
        }
        if plain
            && fits
            && let Some(neg) = 0i64.checked_sub_unsigned(n)
            && neg < 0
        {
            self.pos = end;
            return visitor.visit_i64(neg);
        }
        while let Some(&d) = b.get(end)
            && matches!(d, b'0'..=b'9' | b'.' | b'e' | b'E' | b'+' | b'-')
        {
            end += 1;
        }
        let f: f64 = serde_json::from_str(&self.text[start..end]).map_err(|_| Declined)?;
        self.pos = end;
        visitor.visit_f64(f)
    }

    fn nest(&mut self) -> Result<()> {
        self.depth = self
            .depth
            .checked_sub(1)
            .filter(|d| *d > 0)
            .ok_or(Declined)?;
        Ok(())
    }
}

impl<'de> de::Deserializer<'de> for &mut Reader<'de, '_> {
    type Error = Declined;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value> {
        match self.skip_ws().ok_or(Declined)? {
            b'"' => {
                self.pos += 1;
                match self.string()? {
                    Str::Text(s) => visitor.visit_borrowed_str(s),
                    Str::Scratch(s) => visitor.visit_str(s),
                }
            }
            b'{' => {
                self.pos += 1;
                self.nest()?;
                let value = visitor.visit_map(Members {
                    r: &mut *self,
                    first: true,
                })?;
                self.depth += 1;
                self.expect(b'}')?;
                Ok(value)
            }
            b'[' => {
                self.pos += 1;
                self.nest()?;
                let value = visitor.visit_seq(Items {
                    r: &mut *self,
                    first: true,
                })?;
                self.depth += 1;
                self.expect(b']')?;
                Ok(value)
            }
            b't' => {
                self.literal("true")?;
                visitor.visit_bool(true)
            }
            b'f' => {
                self.literal("false")?;
                visitor.visit_bool(false)
            }
            b'n' => {
                self.literal("null")?;
                visitor.visit_unit()
            }
            b'-' | b'0'..=b'9' => self.number(visitor),
            _ => Err(Declined),
        }
    }

    forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// The members of an object whose `{` was taken; the `}` is left for the caller.
struct Members<'r, 'a, 's> {
    r: &'r mut Reader<'a, 's>,
    first: bool,
}

impl<'de> MapAccess<'de> for Members<'_, 'de, '_> {
    type Error = Declined;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>> {
        let next = self.r.skip_ws().ok_or(Declined)?;
        if next == b'}' {
            return Ok(None);
        }
        if !self.first {
            if next != b',' {
                return Err(Declined);
            }
            self.r.pos += 1;
            if self.r.skip_ws() != Some(b'"') {
                return Err(Declined);
            }
        } else if next != b'"' {
            return Err(Declined);
        }
        self.first = false;
        self.r.pos += 1;
        match self.r.string()? {
            Str::Text(s) => seed.deserialize(de::value::BorrowedStrDeserializer::new(s)),
            Str::Scratch(s) => seed.deserialize(de::value::StrDeserializer::new(s)),
        }
        .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value> {
        self.r.expect(b':')?;
        seed.deserialize(&mut *self.r)
    }
}

/// The items of an array whose `[` was taken; the `]` is left for the caller.
struct Items<'r, 'a, 's> {
    r: &'r mut Reader<'a, 's>,
    first: bool,
}

impl<'de> SeqAccess<'de> for Items<'_, 'de, '_> {
    type Error = Declined;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>> {
        let next = self.r.skip_ws().ok_or(Declined)?;
        if next == b']' {
            return Ok(None);
        }
        if !self.first {
            if next != b',' {
                return Err(Declined);
            }
            self.r.pos += 1;
            if self.r.skip_ws() == Some(b']') {
                return Err(Declined);
            }
        }
        self.first = false;
        seed.deserialize(&mut *self.r).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde::Deserialize;
    use serde_json::Value as Json;

    /// The reader's tree of `text`, or `None` where it declines.
    fn read(text: &str) -> Option<Json> {
        let mut scratch = Vec::new();
        let mut r = Reader::new(text, &mut scratch);
        let v = Json::deserialize(&mut r).ok()?;
        r.end().ok()?;
        Some(v)
    }

    #[test]
    fn special_bytes_are_found_where_they_are() {
        let reference = |b: &[u8], i: usize| {
            b[i..]
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        };
        for text in [
            "",
            "abc",
            "abcdefghijklmnop\"",
            "æøå€😀\\x",
            "a\u{1f}b",
            "\u{7f}\u{80}\u{ff} !#[]",
        ] {
            let b = text.as_bytes();
            for i in 0..=b.len() {
                assert_eq!(
                    special(b, i),
                    reference(b, i).map(|p| i + p),
                    "{text:?} from {i}"
                );
            }
        }
        // Every byte value at every place in a word, after every other byte value.
        for before in 0..=255u8 {
            for hit in 0..=255u8 {
                for at in 0..35 {
                    let mut b = vec![before; 37];
                    b[at] = hit;
                    assert_eq!(
                        special(&b, 0),
                        reference(&b, 0),
                        "{before} then {hit} at {at}"
                    );
                }
            }
        }
    }

    #[test]
    fn reads_what_serde_json_reads() {
        for text in [
            r#"{"a":[1,-2,3.5,-0,1e3,18446744073709551615,18446744073709551616,-9223372036854775808,-9223372036854775809],"b":{"c":null,"d":true,"e":false}}"#,
            r#" [ "x\"y\\z\/\b\f\n\r\t\u00e6\u20ac\ud83d\ude00" , {} , [] ] "#,
            r#""plain æøå""#,
            "0",
            "-1.5E-7",
        ] {
            let want: Json = serde_json::from_str(text).expect(text);
            assert_eq!(read(text), Some(want), "{text}");
        }
    }

    #[test]
    fn declines_what_serde_json_refuses() {
        for text in [
            "",
            "{",
            r#"{"a":1,}"#,
            "[1,]",
            "[,1]",
            r#"{"a" 1}"#,
            r#"{,"a":1}"#,
            "01",
            "-",
            "1.",
            "1e",
            "+1",
            ".5",
            "tru",
            "nul",
            r#""a"#,
            "\"a\u{1}b\"",
            r#""\x""#,
            r#""\u12""#,
            r#""\ud800""#,
            r#""\udc00""#,
            "[1] 2",
            "{\"a\":1}}",
            "12abc",
        ] {
            assert!(
                serde_json::from_str::<Json>(text).is_err(),
                "serde_json takes {text}"
            );
            assert_eq!(read(text), None, "{text}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(serde_json::from_str::<Json>(&deep).is_err());
        assert_eq!(read(&deep), None);
        let limit = format!("{}{}", "[".repeat(127), "]".repeat(127));
        assert_eq!(read(&limit), serde_json::from_str::<Json>(&limit).ok());
    }

    fn value() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            any::<u64>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            any::<f64>().prop_map(Json::from),
            "[a-z\\\\\"/\\u{0}-\\u{1f}æ€😀 ]{0,10}".prop_map(Json::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                prop::collection::vec(("[a-z\\\\\"é]{0,4}", inner), 0..4)
                    .prop_map(|kv| Json::Object(kv.into_iter().collect())),
            ]
        })
    }

    /// JSON text, then bytes of JSON's own alphabet put in or taken out here and there.
    fn text() -> impl Strategy<Value = String> {
        let edit = (
            any::<prop::sample::Index>(),
            prop::option::of(prop::sample::select(
                "{}[],:\"\\ 0123456789eE.+-tfnulrsabu/\u{1}\n\t"
                    .chars()
                    .collect::<Vec<_>>(),
            )),
        );
        // Runs of whitespace longer than any indentation a value above gets, at any place.
        let blanks = prop::collection::vec((any::<prop::sample::Index>(), 0usize..48), 0..3);
        (
            value(),
            any::<bool>(),
            prop::collection::vec(edit, 0..3),
            blanks,
        )
            .prop_map(|(v, pretty, edits, blanks)| {
                let mut t = if pretty {
                    serde_json::to_string_pretty(&v)
                } else {
                    serde_json::to_string(&v)
                }
                .unwrap_or_default();
                for (at, c) in edits {
                    let bounds: Vec<usize> =
                        t.char_indices().map(|(i, _)| i).chain([t.len()]).collect();
                    let i = bounds[at.index(bounds.len())];
                    match c {
                        Some(c) => t.insert(i, c),
                        None if i < t.len() => {
                            t.remove(i);
                        }
                        None => {}
                    }
                }
                for (at, len) in blanks {
                    let bounds: Vec<usize> =
                        t.char_indices().map(|(i, _)| i).chain([t.len()]).collect();
                    let run: String = " \n\t\r".chars().cycle().skip(len).take(len).collect();
                    t.insert_str(bounds[at.index(bounds.len())], &run);
                }
                t
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// serde_json is the reference: what the reader takes, serde_json takes and reads the
        /// same; what serde_json takes, the reader takes (these texts have no lone surrogate
        /// escapes and no deep nesting, the two things it leaves to serde_json).
        #[test]
        fn the_reader_agrees_with_serde_json(t in text()) {
            let reference = serde_json::from_str::<Json>(&t).ok();
            prop_assert_eq!(read(&t), reference, "{}", t);
        }
    }
}
