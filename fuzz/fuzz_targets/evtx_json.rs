//! Any text as an evtx JSON record: decoding never panics, a decoded row fits a
//! `windows_event` batch, the text and its parsed tree agree on whether it is a record, and the
//! tree written out again gives the same event read as text and as a tree (the text is read by
//! the decoder's hand walk, the tree by its visitors; the original text is not compared event
//! for event, as a tree keeps only the last of repeated member names, where the text keeps all).
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
        let from_tree = decoder.decode_value(&tree, 0).ok().map(|row| row.to_event());
        assert_eq!(from_text, Some(from_tree.is_some()), "text and tree disagree on {text:?}");
        // Read back from that text too: serde_json's float parsing is not exact without its
        // `float_roundtrip` feature, so a float written out need not come back the same.
        let written = tree.to_string();
        if let Ok(again) = serde_json::from_str::<serde_json::Value>(&written) {
            let from_again = decoder.decode_value(&again, 0).ok().map(|row| row.to_event());
            let from_written = decoder.decode_str(&written, 0).ok().map(|row| row.to_event());
            assert_eq!(from_written, from_again, "text and tree disagree on {written:?}");
        }
    }
});
