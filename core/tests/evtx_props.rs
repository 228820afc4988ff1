//! Property tests of the evtx decoder: a record read from its JSON text and the same record read
//! from a parsed tree give the same event (escapes, numbers, nesting, `#text`/`#attributes`
//! forms, `Data` lists), every decoded row fits a `windows_event` batch, and no text, valid or
//! not, makes the decoder panic or leaves anything behind for the next record.

use proptest::prelude::*;
use serde_json::{Map, Value as Json, json};
use varde_core::windows::EvtxDecoder;
use varde_core::{BatchBuilder, CollectorId, Kommunenummer, SourceKind};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9 ._-]{0,12}",
        // Backslashes, quotes, control characters and non-ASCII: what JSON escapes.
        "[\\\\\"\\n\\t\\u{0}-\\u{1f}æøå€😀a-z]{0,12}",
        Just(r"C:\Windows\System32\cmd.exe".to_owned()),
        Just("2024-05-01T10:00:00.123456Z".to_owned()),
    ]
}

fn leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<u64>().prop_map(|n| json!(n)),
        any::<i64>().prop_map(|n| json!(n)),
        (-1e12f64..1e12).prop_map(|f| json!(f)),
        text().prop_map(Json::String),
    ]
}

fn nested() -> impl Strategy<Value = Json> {
    leaf().prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
            prop::collection::vec((text(), inner), 0..4)
                .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        ]
    })
}

/// `{"#attributes": {…}, "#text": …}` in any part, or any value.
fn xml_like() -> impl Strategy<Value = Json> {
    prop_oneof![
        nested(),
        (
            prop::option::of(prop::collection::vec((text(), nested()), 0..3)),
            prop::option::of(nested()),
            prop::option::of(leaf()),
        )
            .prop_map(|(attrs, text, name)| {
                let mut o = Map::new();
                if let Some(kv) = attrs {
                    let mut a: Map<String, Json> = kv.into_iter().collect();
                    if let Some(n) = name {
                        a.insert("Name".into(), n);
                    }
                    o.insert("#attributes".into(), Json::Object(a));
                }
                if let Some(t) = text {
                    o.insert("#text".into(), t);
                }
                Json::Object(o)
            }),
    ]
}

fn system() -> impl Strategy<Value = Json> {
    let names = prop::sample::select(vec![
        "EventID",
        "Channel",
        "Computer",
        "EventRecordID",
        "Level",
        "Provider",
        "TimeCreated",
        "Execution",
        "Security",
        "Version",
    ]);
    prop::collection::vec(
        (
            prop_oneof![names.prop_map(str::to_owned), text()],
            xml_like(),
        ),
        0..8,
    )
    .prop_map(|kv| Json::Object(kv.into_iter().collect()))
}

fn event_data() -> impl Strategy<Value = Json> {
    let data_list = || prop::collection::vec(xml_like(), 0..4).prop_map(Json::Array);
    prop_oneof![
        prop::collection::vec(
            (
                prop_oneof![Just("Data".to_owned()), text()],
                prop_oneof![nested(), data_list()]
            ),
            0..6
        )
        .prop_map(|kv| Json::Object(kv.into_iter().collect())),
        data_list(),
        leaf(),
    ]
}

fn record() -> impl Strategy<Value = Json> {
    (
        system(),
        prop::option::of(event_data()),
        prop::option::of(nested()),
        prop::option::of(nested()),
    )
        .prop_map(|(system, data, user, other)| {
            let mut event = Map::new();
            event.insert("System".into(), system);
            if let Some(d) = data {
                event.insert("EventData".into(), d);
            }
            if let Some(u) = user {
                event.insert("UserData".into(), u);
            }
            let mut top = Map::new();
            top.insert("Event".into(), Json::Object(event));
            if let Some(o) = other {
                top.insert("Other".into(), o);
            }
            Json::Object(top)
        })
}

/// The record's text with `Event`'s members in the order Windows writes them (`System`,
/// `EventData`, `UserData`; a tree sorts them by name, `EventData` first), the order the
/// decoder's hand walk keeps without putting the attributes together again.
fn in_windows_order(doc: &Json) -> String {
    let event = &doc["Event"];
    let members: Vec<String> = ["System", "EventData", "UserData"]
        .iter()
        .filter_map(|k| event.get(*k).map(|v| format!("{}:{v}", json!(k))))
        .collect();
    format!("{{\"Event\":{{{}}}}}", members.join(","))
}

fn builder() -> BatchBuilder {
    BatchBuilder::new(
        SourceKind::WindowsEvent,
        Kommunenummer::parse("0301").expect("tenant"),
        CollectorId::new("props").expect("id"),
        4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn text_and_tree_give_the_same_event(
        doc in record(),
        pretty in any::<bool>(),
        windows_order in any::<bool>(),
    ) {
        let text = if windows_order {
            in_windows_order(&doc)
        } else if pretty {
            serde_json::to_string_pretty(&doc).expect("serialise")
        } else {
            serde_json::to_string(&doc).expect("serialise")
        };
        let mut decoder = EvtxDecoder::default();
        let from_text = decoder.decode_str(&text, 11).expect("a record").to_event();
        let mut b = builder();
        b.push_row(decoder.decode_str(&text, 11).expect("a record"))
            .expect("a decoded row fits its batch");
        // The tree as a reader of the text has it (serde_json's float parsing is not exact
        // without its `float_roundtrip` feature, the same for both paths).
        let tree: Json = serde_json::from_str(&text).expect("valid JSON");
        let from_tree = decoder.decode_value(&tree, 11).expect("a record").to_event();
        prop_assert_eq!(from_text, from_tree);
    }

    #[test]
    fn any_text_is_an_error_or_a_row_and_the_next_record_is_whole(
        junk in prop_oneof![
            ".{0,80}",
            record().prop_map(|d| d.to_string()).prop_flat_map(|t| {
                let n = t.len();
                (Just(t), 0..=n).prop_map(|(t, cut)| {
                    t.char_indices().nth(cut).map_or(t.clone(), |(i, _)| t[..i].to_owned())
                })
            }),
        ]
    ) {
        let mut decoder = EvtxDecoder::default();
        let mut b = builder();
        if let Ok(row) = decoder.decode_str(&junk, 0) {
            prop_assert!(b.push_row(row).is_ok());
        }
        let good = r#"{"Event":{"System":{"EventID":4688,"Computer":"ws01"},"EventData":{"Image":"C:\\x.exe"}}}"#;
        let row = decoder.decode_str(good, 5).expect("a record");
        prop_assert_eq!(row.host(), Some("ws01"));
        prop_assert_eq!(row.attrs().collect::<Vec<_>>(), vec![("Image", "C:\\x.exe")]);
        prop_assert_eq!(row.event_time_us, 5);
    }
}
