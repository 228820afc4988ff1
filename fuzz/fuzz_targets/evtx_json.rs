//! Any text as an evtx JSON record: decoding never panics, a decoded row fits a
//! `windows_event` batch, and the text and its parsed tree agree on whether it is a record.
#![no_main]
use varde_core::windows::{EvtxDecoder, EvtxError};
use varde_core::{BatchBuilder, CollectorId, Kommunenummer, SourceKind};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (Ok(tenant), Ok(id)) = (Kommunenummer::parse("0301"), CollectorId::new("fuzz")) else { return };
    let mut decoder = EvtxDecoder::default();
    let from_text = match decoder.decode_str(&text, 0) {
        Ok(row) => {
            let mut b = BatchBuilder::new(SourceKind::WindowsEvent, tenant, id, 1);
            assert!(b.push_row(row).is_ok(), "a decoded row must fit the windows_event schema");
            Some(true)
        }
        Err(EvtxError::NotWindows(_)) => Some(false),
        Err(EvtxError::Json(_)) => None,
    };
    if let Ok(tree) = serde_json::from_str::<serde_json::Value>(&text) {
        let from_tree = decoder.decode_value(&tree, 0).is_ok();
        assert_eq!(from_text, Some(from_tree), "text and tree disagree on {text:?}");
    }
});
