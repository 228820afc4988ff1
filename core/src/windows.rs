//! Windows event log records, in the JSON shape the `evtx` crate renders (and that SigmaHQ's
//! regression samples use), into events of kind `windows_event`.
//!
//! ```json
//! {"Event": {"System": {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Sysmon"}},
//!                       "EventID": 1, "Channel": "…", "Computer": "…", "EventRecordID": 7,
//!                       "TimeCreated": {"#attributes": {"SystemTime": "2025-10-22T20:33:27.276702Z"}}},
//!            "EventData": {"Image": "C:\\Windows\\System32\\sc.exe", …}}}
//! ```
//!
//! - `System` fills the typed columns: `win_event_id` (a plain number, or `{"#text": n}` when the
//!   XML carried Qualifiers), `channel`, `provider` (`Provider/@Name`), `computer`, `record_id`; the
//!   event time is `TimeCreated/@SystemTime`. `Level` maps to the syslog severity scale.
//! - `EventData` (and the children of `UserData`'s single element) become attributes under their
//!   own names, values as text; nested values as compact JSON. Keys keep their spaces: field lookup
//!   (in varde-rules) also tries names with spaces removed, as the Sigma specification asks.
//! - `EventData` given as `{"Data": [{"#attributes": {"Name": "X"}, "#text": "v"}, …]}` or as an
//!   unnamed list is handled too (`Data`, `Data1`, … for unnamed items).
//! - Other `System` children are kept as attributes prefixed `System.` (`System.Execution_ProcessID`).

use serde_json::{Map, Value as Json};

use crate::event::{Event, Value};

/// Why a JSON document is not a Windows event record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Windows event record: {0}")]
pub struct NotAWindowsEvent(pub &'static str);

/// Converts one evtx-style JSON record. `receive_time_us` is used as the receive time, and as
/// the event time when `TimeCreated` is missing or unreadable.
pub fn event_from_evtx_json(doc: &Json, receive_time_us: i64) -> Result<Event, NotAWindowsEvent> {
    let event = doc
        .get("Event")
        .and_then(Json::as_object)
        .ok_or(NotAWindowsEvent("no \"Event\" object"))?;
    let system = event
        .get("System")
        .and_then(Json::as_object)
        .ok_or(NotAWindowsEvent("no \"Event.System\" object"))?;
    let mut out = Event {
        event_time_us: receive_time_us,
        receive_time_us,
        ..Event::default()
    };
    for (key, value) in system {
        match key.as_str() {
            "EventID" => {
                if let Some(id) = number(text_of(value)).and_then(|n| u32::try_from(n).ok()) {
                    out.typed.push(("win_event_id", Value::UInt(u64::from(id))));
                }
            }
            "Channel" => push_str(&mut out, "channel", value),
            "Computer" => {
                push_str(&mut out, "computer", value);
                out.host = scalar_text(value);
            }
            "EventRecordID" => {
                if let Some(n) = number(text_of(value)) {
                    out.typed.push(("record_id", Value::UInt(n)));
                }
            }
            "Provider" => {
                if let Some(name) = attribute(value, "Name") {
                    out.typed.push(("provider", Value::Str(name)));
                }
                flatten_attributes(&mut out.attrs, "System.Provider", value);
            }
            "TimeCreated" => {
                if let Some(t) = attribute(value, "SystemTime")
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(&t).ok())
                {
                    out.event_time_us = t.timestamp_micros();
                }
            }
            "Level" => {
                out.severity = number(text_of(value)).map(|l| match l {
                    1 => 2, // critical
                    2 => 3, // error
                    3 => 4, // warning
                    5 => 7, // verbose
                    _ => 6, // information (4) and "log always" (0)
                });
                out.attrs.push(("System.Level".into(), text(value)));
            }
            _ => flatten_attributes(&mut out.attrs, &format!("System.{key}"), value),
        }
    }
    match event.get("EventData") {
        Some(Json::Object(data)) => event_data(&mut out.attrs, data),
        Some(Json::Array(items)) => data_list(&mut out.attrs, items),
        _ => {}
    }
    if let Some(Json::Object(user)) = event.get("UserData") {
        // UserData holds one provider-defined element whose children are the fields.
        for inner in user.values() {
            match inner {
                Json::Object(fields) => {
                    for (k, v) in fields {
                        if k != "#attributes" {
                            out.attrs.push((k.clone(), text(v)));
                        }
                    }
                }
                other => out.attrs.push(("UserData".into(), text(other))),
            }
        }
    }
    Ok(out)
}

fn event_data(attrs: &mut Vec<(String, String)>, data: &Map<String, Json>) {
    for (k, v) in data {
        match (k.as_str(), v) {
            ("#attributes", _) => {}
            ("Data", Json::Array(items)) => data_list(attrs, items),
            ("Data", Json::Object(o)) if o.contains_key("#attributes") => {
                data_list(attrs, std::slice::from_ref(v))
            }
            _ => attrs.push((k.clone(), text(v))),
        }
    }
}

fn data_list(attrs: &mut Vec<(String, String)>, items: &[Json]) {
    for (i, item) in items.iter().enumerate() {
        let name = attribute(item, "Name").unwrap_or_else(|| {
            if i == 0 {
                "Data".into()
            } else {
                format!("Data{i}")
            }
        });
        let value = item.get("#text").map_or_else(
            || {
                if item.is_object() {
                    String::new()
                } else {
                    text(item)
                }
            },
            text,
        );
        attrs.push((name, value));
    }
}

/// `{"#attributes": {"A": 1}}` children as `prefix_A`; a scalar as `prefix`.
fn flatten_attributes(attrs: &mut Vec<(String, String)>, prefix: &str, value: &Json) {
    match value {
        Json::Object(o) => {
            if let Some(Json::Object(a)) = o.get("#attributes") {
                for (k, v) in a {
                    attrs.push((format!("{prefix}_{k}"), text(v)));
                }
            }
            if let Some(t) = o.get("#text") {
                attrs.push((prefix.to_owned(), text(t)));
            }
        }
        Json::Null => {}
        other => attrs.push((prefix.to_owned(), text(other))),
    }
}

fn attribute(value: &Json, name: &str) -> Option<String> {
    value
        .get("#attributes")
        .and_then(|a| a.get(name))
        .and_then(scalar_text)
}

/// `{"#text": x}` → x; anything else as is.
fn text_of(value: &Json) -> &Json {
    value.get("#text").unwrap_or(value)
}

fn number(value: &Json) -> Option<u64> {
    match value {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn scalar_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value as attribute text: strings as they are, other scalars in JSON form, null as empty,
/// structures as compact JSON.
fn text(value: &Json) -> String {
    match value {
        Json::Null => String::new(),
        Json::String(s) => s.clone(),
        other => scalar_text(other).unwrap_or_else(|| other.to_string()),
    }
}

fn push_str(event: &mut Event, column: &'static str, value: &Json) {
    if let Some(s) = scalar_text(text_of(value)) {
        event.typed.push((column, Value::Str(s)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysmon_process_creation() {
        let doc: Json = serde_json::from_str(
            r##"{"Event":{"#attributes":{"xmlns":"x"},"System":{
                "Provider":{"#attributes":{"Name":"Microsoft-Windows-Sysmon","Guid":"G"}},
                "EventID":1,"Level":4,"EventRecordID":256875,
                "TimeCreated":{"#attributes":{"SystemTime":"2025-10-22T20:33:27.276702Z"}},
                "Execution":{"#attributes":{"ProcessID":3168}},
                "Channel":"Microsoft-Windows-Sysmon/Operational","Computer":"ar-win-1"},
              "EventData":{"Image":"C:\\Windows\\System32\\sc.exe","ProcessId":3424,"RuleName":"-"}}}"##,
        )
        .expect("json");
        let e = event_from_evtx_json(&doc, 0).expect("windows event");
        assert_eq!(e.get("win_event_id"), Some(&Value::UInt(1)));
        assert_eq!(
            e.get("channel"),
            Some(&Value::Str("Microsoft-Windows-Sysmon/Operational".into()))
        );
        assert_eq!(
            e.get("provider"),
            Some(&Value::Str("Microsoft-Windows-Sysmon".into()))
        );
        assert_eq!(e.get("record_id"), Some(&Value::UInt(256_875)));
        assert_eq!(e.host.as_deref(), Some("ar-win-1"));
        assert_eq!(e.severity, Some(6));
        assert_eq!(e.event_time_us, 1_761_165_207_276_702);
        assert!(
            e.attrs
                .contains(&("Image".into(), "C:\\Windows\\System32\\sc.exe".into()))
        );
        assert!(e.attrs.contains(&("ProcessId".into(), "3424".into())));
        assert!(
            e.attrs
                .contains(&("System.Execution_ProcessID".into(), "3168".into()))
        );
    }

    #[test]
    fn qualified_event_ids_data_lists_and_user_data() {
        let doc: Json = serde_json::from_str(
            r##"{"Event":{"System":{"EventID":{"#attributes":{"Qualifiers":16384},"#text":7036},
                "Channel":"System"},
              "EventData":{"Data":[{"#attributes":{"Name":"param1"},"#text":"Windows Update"},"running"]},
              "UserData":{"LogFileCleared":{"Channel":"Security","SubjectUserName":"adm"}}}}"##,
        )
        .expect("json");
        let e = event_from_evtx_json(&doc, 5).expect("windows event");
        assert_eq!(e.get("win_event_id"), Some(&Value::UInt(7036)));
        assert_eq!(e.event_time_us, 5);
        assert!(
            e.attrs
                .contains(&("param1".into(), "Windows Update".into()))
        );
        assert!(e.attrs.contains(&("Data1".into(), "running".into())));
        assert!(e.attrs.contains(&("Channel".into(), "Security".into())));
    }

    #[test]
    fn other_documents_are_refused() {
        assert!(event_from_evtx_json(&serde_json::json!({"a": 1}), 0).is_err());
        assert!(event_from_evtx_json(&serde_json::json!({"Event": {}}), 0).is_err());
    }
}
