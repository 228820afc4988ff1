//! Files of events for offline analysis and import: `.evtx` Windows event logs (read with the
//! `evtx` crate), `.json` (one or several concatenated JSON documents, as SigmaHQ's regression
//! samples are) and `.jsonl` / `.ndjson` (one document per line).
//!
//! Every document is classified as the edge classifies a JSON line
//! ([`crate::parse::oidc::classify_json`]): a Windows event record in the evtx, Winlogbeat or
//! NXLog shape is a `windows_event`, a login event an `oidc_login`, anything else a
//! `generic_json` event ([`crate::parse::json`]). Used by `varde-collector send` (which then
//! pseudonymises and ships the events like any other) and by the CERT's `varde rules match`.
//!
//! Bad records are reported in [`Imported::skipped`] with their position and reason: an
//! unreadable evtx record or a broken line of a `.jsonl` file is skipped and the rest read; a
//! broken document in a `.json` concatenation ends the reading of that file there.

use std::path::Path;

use serde_json::Value as Json;
use varde_core::{Event, SourceKind};
use wide::u8x16;

use crate::parse::json::JsonFields;
use crate::parse::oidc::{JsonOutcome, classify_json, evtx_from_text};

/// Why a file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The evtx parser refused the file (not an evtx file, damaged header).
    #[error("{path}: not a readable .evtx file: {message}")]
    Evtx {
        /// The file.
        path: String,
        /// What the parser said.
        message: String,
    },
    /// The file's name says nothing this module reads.
    #[error("{path}: unknown event file type (expected .evtx, .json, .jsonl or .ndjson)")]
    UnknownType {
        /// The file.
        path: String,
    },
}

/// The events of one file, and what was skipped.
#[derive(Debug, Default)]
pub struct Imported {
    /// Events in file order, each with its kind and its index among the file's documents.
    pub events: Vec<(usize, SourceKind, Event)>,
    /// Records that could not be read: (index, reason).
    pub skipped: Vec<(usize, String)>,
}

/// Whether `path` names a file this module reads (by its extension).
pub fn is_event_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("evtx" | "json" | "jsonl" | "ndjson")
    )
}

/// Reads one file of events (see the module docs). `receive_time_us` stands in as the receive
/// time (and as the event time of documents that carry none).
pub fn read_events(
    path: &Path,
    receive_time_us: i64,
    fields: &JsonFields,
) -> Result<Imported, ImportError> {
    let name = path.display().to_string();
    let mut out = Imported::default();
    let add = |i: usize, doc: &Json, out: &mut Imported| match classify_json(
        doc,
        receive_time_us,
        fields,
    ) {
        JsonOutcome::Windows(e) => out.events.push((i, SourceKind::WindowsEvent, *e)),
        JsonOutcome::Other(e) => out.events.push((i, SourceKind::GenericJson, *e)),
        JsonOutcome::Login(p) => {
            let kind = p.kind;
            out.events.push((i, kind, p.into_event(receive_time_us)));
        }
        JsonOutcome::NotMine | JsonOutcome::Failed(_) => {
            out.skipped.push((i, "not a JSON object".to_owned()));
        }
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("evtx") => {
            let mut parser = evtx::EvtxParser::from_path(path).map_err(|e| ImportError::Evtx {
                path: name.clone(),
                message: e.to_string(),
            })?;
            for (i, record) in parser.records_json_value().enumerate() {
                match record {
                    Ok(r) => add(i, &r.data, &mut out),
                    Err(e) => out.skipped.push((i, e.to_string())),
                }
            }
        }
        Some(ext @ ("json" | "jsonl" | "ndjson")) => {
            let bytes = std::fs::read(path).map_err(|source| ImportError::Io {
                path: name.clone(),
                source,
            })?;
            let text = crate::sources::utf8_lossy(&bytes);
            if ext == "json" {
                // Concatenated documents: a broken one ends the file there (a concatenation
                // cannot be resynchronised reliably), and says where.
                let mut stream = serde_json::Deserializer::from_str(&text).into_iter::<Json>();
                let mut i = 0;
                while let Some(doc) = stream.next() {
                    match doc {
                        Ok(doc) => add(i, &doc, &mut out),
                        Err(e) => {
                            out.skipped.push((
                                i,
                                format!(
                                    "{e} (at byte {}; the rest of the file is not read)",
                                    stream.byte_offset()
                                ),
                            ));
                            break;
                        }
                    }
                    i += 1;
                }
            } else {
                // One document per line: a broken line is skipped with its line number.
                let mut i = 0;
                for (n, line) in text.lines().enumerate() {
                    if line.trim().is_empty() {
                        continue;
                    }
                    if let Some(e) = evtx_from_text(line, receive_time_us) {
                        out.events.push((i, SourceKind::WindowsEvent, e));
                        i += 1;
                        continue;
                    }
                    match serde_json::from_str::<Json>(line) {
                        Ok(doc) => add(i, &doc, &mut out),
                        Err(e) => out.skipped.push((i, format!("line {}: {e}", n + 1))),
                    }
                    i += 1;
                }
            }
        }
        _ => return Err(ImportError::UnknownType { path: name }),
    }
    Ok(out)
}

/// The documents of a concatenation of JSON documents (a `.json` file), each as its text
/// without the whitespace around it. A document is found by its brackets alone: an object or
/// array ends where its first bracket is closed, brackets in strings and escaped bytes not
/// counted (see [`JsonDocuments::container_end`]), so each
/// document's text is read once here and checked once, by whoever decodes it. Nothing is left
/// out: a broken document is yielded as it is, and the next one is found after it (its decoder
/// reports it, the edge keeps it as a line it could not parse); text between documents that is
/// not an object or array (a bare number, a stray word) is yielded up to the next `{` or `[`; an
/// unclosed last document is yielded to the end of the text.
pub struct JsonDocuments<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> JsonDocuments<'a> {
    /// The documents of `text`.
    pub fn new(text: &'a str) -> Self {
        JsonDocuments {
            text: text.as_bytes(),
            at: 0,
        }
    }

    /// Where the object or array opening at `start` is closed (the byte after its last
    /// bracket), or the text's end when it is not. A backslash escapes the byte after it (in a
    /// valid document backslashes stand only in strings); brackets in strings do not count.
    ///
    /// The text is read 64 bytes at a time, with the bit masks of simdjson's first stage
    /// (Langdale and Lemire, "Parsing gigabytes of JSON per second", 2019): which bytes are
    /// escaped follows from where each run of backslashes starts and how long it is; which are
    /// in strings is the running parity of the quotes not escaped. Only a block that could
    /// close the document has its brackets visited one by one; any other moves the depth by its
    /// counts of brackets.
    fn container_end(&self, start: usize) -> usize {
        const EVEN: u64 = 0x5555_5555_5555_5555;
        const ODD: u64 = !EVEN;
        let text = self.text;
        let mut depth = 0u64;
        // Carried from one block to the next: whether its first byte is escaped, whether it
        // starts in a string (all ones) or not (zero).
        let (mut escaped_first, mut in_string) = (0u64, 0u64);
        let mut base = start;
        while base < text.len() {
            let block = text.get(base..).unwrap_or_default();
            let block = block.get(..64).unwrap_or(block);
            let m = Masks::of(block);
            // Escaped bytes: the byte after a run of backslashes of odd length. A run that
            // starts on an even bit and ends on an odd one (or the reverse) is odd; the sum of
            // a run and its first bit sets the bit after the run's end.
            let backslashes = m.backslashes & !escaped_first;
            let run_starts = backslashes & !(backslashes << 1);
            let after_even = backslashes.wrapping_add(run_starts & EVEN) & !backslashes;
            let (after_odd, odd_run_at_end) = backslashes.overflowing_add(run_starts & ODD);
            let escaped = ((after_even & ODD) | (after_odd & !backslashes & EVEN)) | escaped_first;
            escaped_first = u64::from(odd_run_at_end);
            // In a string: from an opening quote (itself included) to its closing quote.
            let strings = prefix_xor(m.quotes & !escaped) ^ in_string;
            in_string = 0u64.wrapping_sub(strings >> 63);
            let outside = !strings & !escaped;
            let (opens, closes) = (m.opens & outside, m.closes & outside);
            if depth > u64::from(closes.count_ones()) {
                depth = depth + u64::from(opens.count_ones()) - u64::from(closes.count_ones());
            } else {
                let mut brackets = opens | closes;
                while brackets != 0 {
                    let bit = brackets & brackets.wrapping_neg();
                    brackets ^= bit;
                    if opens & bit != 0 {
                        depth += 1;
                    } else {
                        depth = depth.saturating_sub(1);
                        if depth == 0 {
                            return base + bit.trailing_zeros() as usize + 1;
                        }
                    }
                }
            }
            base += 64;
        }
        text.len()
    }
}

/// The bytes of a block of up to 64 that [`JsonDocuments`] reads: bit `j` for byte `j`, bits
/// past the block's end clear.
struct Masks {
    quotes: u64,
    backslashes: u64,
    /// `{` and `[`.
    opens: u64,
    /// `}` and `]`.
    closes: u64,
}

impl Masks {
    /// Sixteen bytes at a time; with the `0x20` bit set, `[` and `{` are one byte and `]` and
    /// `}` another (no other byte becomes either).
    fn of(block: &[u8]) -> Masks {
        let mut m = Masks {
            quotes: 0,
            backslashes: 0,
            opens: 0,
            closes: 0,
        };
        let mut padded = [0u8; 64]; // zero bytes are none of these
        let block: &[u8; 64] = match block.try_into() {
            Ok(whole) => whole,
            Err(_) => {
                let len = block.len().min(64);
                padded[..len].copy_from_slice(&block[..len]);
                &padded
            }
        };
        for (k, part) in block.chunks_exact(16).enumerate() {
            let bytes = u8x16::new(part.try_into().unwrap_or_default());
            let folded = bytes | u8x16::splat(0x20);
            let bits = |hits: u8x16| u64::from(hits.move_mask() as u16) << (16 * k);
            m.quotes |= bits(bytes.cmp_eq(u8x16::splat(b'"')));
            m.backslashes |= bits(bytes.cmp_eq(u8x16::splat(b'\\')));
            m.opens |= bits(folded.cmp_eq(u8x16::splat(b'{')));
            m.closes |= bits(folded.cmp_eq(u8x16::splat(b'}')));
        }
        m
    }
}

/// Bit `i` of the result is the parity of bits `0..=i` of `x`.
fn prefix_xor(mut x: u64) -> u64 {
    for shift in [1, 2, 4, 8, 16, 32] {
        x ^= x << shift;
    }
    x
}

impl<'a> Iterator for JsonDocuments<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let text = self.text;
        let start = self.at
            + text
                .get(self.at..)?
                .iter()
                .position(|b| !b.is_ascii_whitespace())?;
        let end = match text[start] {
            b'{' | b'[' => self.container_end(start),
            _ => memchr::memchr2(b'{', b'[', &text[start..]).map_or(text.len(), |k| start + k),
        };
        self.at = end.min(text.len());
        Some(text[start..self.at].trim_ascii())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Valid documents, concatenated with any whitespace between them, are found one by one,
    /// each exactly as serde_json's own stream reader reads the concatenation.
    #[test]
    fn documents_are_found_as_serde_json_reads_them() {
        let documents = [
            r#"{"a": {"b": [1, {"c": "}"}]}, "d": "]"}"#,
            r#"["x", "\"", "\\", "{[", "\u007d"]"#,
            r#"{"é": "ø\\\"}", "n": -1.5e3, "t": true, "z": null}"#,
            "[]",
            "{}",
            r#"[[[{"deep": [[[]]]}]]]"#,
            r#"{"text": "a line\nand \"quoted\" {braces} [brackets]"}"#,
        ];
        for separator in ["", "\n", "\r\n", " \t\n\n "] {
            let text = format!("\n{}{separator}", documents.join(separator));
            let found: Vec<&[u8]> = JsonDocuments::new(&text).collect();
            let want: Vec<&[u8]> = documents.iter().map(|d| d.as_bytes()).collect();
            assert_eq!(found, want, "separator {separator:?}");
            let serde: Vec<Json> = serde_json::Deserializer::from_str(&text)
                .into_iter::<Json>()
                .collect::<Result<_, _>>()
                .expect("valid");
            let ours: Vec<Json> = found
                .iter()
                .map(|d| serde_json::from_slice(d).expect("each a document"))
                .collect();
            assert_eq!(ours, serde);
        }
        assert_eq!(JsonDocuments::new("  \n ").count(), 0);
    }

    /// The documents of any text, valid or not, are those a byte-at-a-time walk finds: an
    /// object or array ends where its first bracket closes, a backslash escaping the byte after
    /// it and brackets in strings not counted; anything else runs to the next `{` or `[`. Generated texts of the bytes that matter,
    /// with runs of other bytes long enough to put each of them at every place of the 64-byte
    /// blocks, a backslash's escaped byte in the next block among them.
    #[test]
    fn documents_are_found_in_any_text_as_a_walk_byte_by_byte_finds_them() {
        fn walk_end(text: &[u8], start: usize) -> usize {
            let (mut depth, mut i) = (0usize, start);
            let mut in_string = false;
            while i < text.len() {
                match (text[i], in_string) {
                    (b'\\', _) => i += 1,
                    (b'"', _) => in_string = !in_string,
                    (b'{' | b'[', false) => depth += 1,
                    (b'}' | b']', false) => {
                        depth -= 1;
                        if depth == 0 {
                            return i + 1;
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            text.len()
        }
        fn walk(text: &str) -> Vec<&[u8]> {
            let bytes = text.as_bytes();
            let mut out = Vec::new();
            let mut at = 0;
            while let Some(k) = bytes[at..].iter().position(|b| !b.is_ascii_whitespace()) {
                let start = at + k;
                let end = if matches!(bytes[start], b'{' | b'[') {
                    walk_end(bytes, start)
                } else {
                    (start..bytes.len())
                        .find(|&i| matches!(bytes[i], b'{' | b'['))
                        .unwrap_or(bytes.len())
                };
                out.push(bytes[start..end].trim_ascii());
                at = end;
            }
            out
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let pieces = [
            "{", "}", "[", "]", "\"", "\\", "\\\"", " ", "\n", "é", "x", "1",
        ];
        let mut documents = 0;
        for round in 0..4_000 {
            let mut text = String::new();
            // Mostly balanced starts, so that documents long enough to span blocks are common.
            if round % 2 == 0 {
                text.push('{');
            }
            for _ in 0..next() % 60 {
                let r = next();
                if r % 4 == 0 {
                    text.push_str(&"a".repeat((r >> 8) as usize % 70));
                }
                text.push_str(pieces[(r >> 16) as usize % pieces.len()]);
            }
            let found: Vec<&[u8]> = JsonDocuments::new(&text).collect();
            assert_eq!(found, walk(&text), "{text:?}");
            documents += found.len();
        }
        assert!(documents > 4_000, "{documents} documents");
    }

    #[test]
    fn json_lines_classify_and_skip_broken_lines_with_their_number() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.jsonl");
        std::fs::write(
            &path,
            concat!(
                r#"{"winlog":{"event_id":4688,"channel":"Security","event_data":{"NewProcessName":"C:\\x.exe"}}}"#,
                "\n{broken\n\n",
                r#"{"client_id":"k0301-portal","acr":"idporten-loa-high"}"#,
                "\n",
                r#"{"a":{"b":[1,2]}}"#,
                "\n"
            ),
        )
        .expect("write");
        let got = read_events(&path, 5, &JsonFields::default()).expect("read");
        let kinds: Vec<(usize, SourceKind)> = got.events.iter().map(|(i, k, _)| (*i, *k)).collect();
        assert_eq!(
            kinds,
            vec![
                (0, SourceKind::WindowsEvent),
                (2, SourceKind::OidcLogin),
                (3, SourceKind::GenericJson)
            ]
        );
        assert_eq!(got.skipped.len(), 1);
        assert!(got.skipped[0].1.starts_with("line 2:"), "{:?}", got.skipped);
        let generic = &got.events[2].2;
        assert_eq!(
            generic.attrs,
            vec![
                ("a.b".to_owned(), "1".to_owned()),
                ("a.b".to_owned(), "2".to_owned())
            ]
        );
        assert_eq!(generic.receive_time_us, 5);
    }

    #[test]
    fn concatenated_documents_and_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.json");
        std::fs::write(&path, "{\"a\":1}\n{\"b\":\n2}{oops").expect("write");
        let got = read_events(&path, 0, &JsonFields::default()).expect("read");
        assert_eq!(got.events.len(), 2);
        assert_eq!(got.skipped.len(), 1);
        assert!(matches!(
            read_events(&dir.path().join("x.txt"), 0, &JsonFields::default()),
            Err(ImportError::UnknownType { .. })
        ));
        std::fs::write(dir.path().join("bad.evtx"), "not evtx").expect("write");
        assert!(matches!(
            read_events(&dir.path().join("bad.evtx"), 0, &JsonFields::default()),
            Err(ImportError::Evtx { .. })
        ));
    }
}
