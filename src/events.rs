//! Reading event files for `varde rules match` and `varde rules bench`: `.evtx` (Windows event
//! logs, via the `evtx` crate), `.json` (one or several concatenated JSON documents, as in
//! SigmaHQ's regression samples) and `.jsonl` (one document per line).
//!
//! A document with an `Event.System` object is a Windows event record (`windows_event`);
//! anything else becomes a `generic_json` event whose attributes are the document's fields,
//! nested objects flattened with dots (`userIdentity.arn`) and arrays as one attribute per
//! element, so a rule on the field matches any element.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value as Json;
use varde_core::{Event, SourceKind};

/// Events of one file, in file order, with their kinds.
pub fn read(path: &Path) -> Result<Vec<(SourceKind, Event)>> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default();
    let docs: Vec<Json> = match ext {
        "evtx" => {
            let mut parser = evtx::EvtxParser::from_path(path)
                .with_context(|| format!("opening {}", path.display()))?;
            let mut docs = Vec::new();
            for (i, record) in parser.records_json_value().enumerate() {
                match record {
                    Ok(r) => docs.push(r.data),
                    Err(e) => eprintln!("{}: record {i} skipped: {e}", path.display()),
                }
            }
            docs
        }
        "json" | "jsonl" | "ndjson" => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let mut docs = Vec::new();
            for (i, doc) in serde_json::Deserializer::from_str(&text)
                .into_iter::<Json>()
                .enumerate()
            {
                docs.push(doc.with_context(|| format!("{}: document {i}", path.display()))?);
            }
            docs
        }
        other => bail!(
            "{}: unknown event file type '.{other}' (expected .evtx, .json or .jsonl)",
            path.display()
        ),
    };
    Ok(docs.iter().map(convert).collect())
}

/// One document as an event of its kind.
pub fn convert(doc: &Json) -> (SourceKind, Event) {
    if let Ok(e) = varde_core::windows::event_from_evtx_json(doc, 0) {
        return (SourceKind::WindowsEvent, e);
    }
    let mut event = Event::default();
    flatten("", doc, &mut event.attrs);
    (SourceKind::GenericJson, event)
}

fn flatten(prefix: &str, value: &Json, out: &mut Vec<(String, String)>) {
    match value {
        Json::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        Json::Array(items) => {
            for item in items {
                flatten(prefix, item, out);
            }
        }
        Json::Null => {}
        Json::String(s) => out.push((prefix.to_owned(), s.clone())),
        other => out.push((prefix.to_owned(), other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generic_documents_flatten_with_dots_and_array_elements() {
        let doc: Json =
            serde_json::from_str(r#"{"a":{"b":1,"c":["x","y"]},"d":null,"e":"t"}"#).expect("json");
        let (kind, e) = convert(&doc);
        assert_eq!(kind, SourceKind::GenericJson);
        assert_eq!(
            e.attrs,
            vec![
                ("a.b".into(), "1".into()),
                ("a.c".into(), "x".into()),
                ("a.c".into(), "y".into()),
                ("e".into(), "t".into())
            ]
        );
    }
}
