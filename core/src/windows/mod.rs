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
//!
//! The same records forwarded by Winlogbeat or NXLog come in their own JSON layouts:
//! [`event_from_winlogbeat_json`], [`event_from_nxlog_json`], and [`event_from_windows_json`]
//! for whichever of the three a document is.

use serde_json::Value as Json;

mod evtx;
mod json;

pub use evtx::{EvtxDecoder, EvtxError};

use crate::event::{Event, Row, Value};

/// Why a JSON document is not a Windows event record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Windows event record: {0}")]
pub struct NotAWindowsEvent(pub &'static str);

/// Converts one evtx-style JSON record already parsed into a tree (see [`EvtxDecoder`], which
/// reads the text without one). `receive_time_us` is used as the receive time, and as the event
/// time when `TimeCreated` is missing or unreadable.
pub fn event_from_evtx_json(doc: &Json, receive_time_us: i64) -> Result<Event, NotAWindowsEvent> {
    EvtxDecoder::default()
        .decode_value(doc, receive_time_us)
        .map(Row::to_event)
}

/// Converts a Windows event record in any of the JSON shapes municipalities forward: the evtx
/// shape above (`{"Event": …}`), Winlogbeat's ([`event_from_winlogbeat_json`]) or NXLog's
/// ([`event_from_nxlog_json`]).
pub fn event_from_windows_json(
    doc: &Json,
    receive_time_us: i64,
) -> Result<Event, NotAWindowsEvent> {
    let obj = doc
        .as_object()
        .ok_or(NotAWindowsEvent("not a JSON object"))?;
    if obj.contains_key("Event") {
        event_from_evtx_json(doc, receive_time_us)
    } else if obj.get("winlog").is_some_and(Json::is_object) {
        event_from_winlogbeat_json(doc, receive_time_us)
    } else {
        event_from_nxlog_json(doc, receive_time_us)
    }
}

/// Converts a document of Elastic's Winlogbeat (7.x and 8.x, ECS layout):
///
/// ```json
/// {"@timestamp": "2024-05-01T10:00:00.123Z", "message": "An account was successfully logged on.…",
///  "log": {"level": "information"}, "host": {"name": "ws01"},
///  "winlog": {"channel": "Security", "event_id": 4624, "provider_name": "Microsoft-Windows-Security-Auditing",
///             "computer_name": "ws01.oslo.kommune.no", "record_id": 912,
///             "event_data": {"TargetUserName": "kari", "LogonType": "3"}, "process": {"pid": 712}}}
/// ```
///
/// `winlog.event_id` (number or text), `channel`, `provider_name`, `computer_name` (else
/// `host.name`) and `record_id` fill the typed columns; `event_data` and `user_data` become
/// attributes under their own names, as from evtx; other `winlog` members become attributes
/// `winlog.<path>`; `@timestamp` is the event time and `log.level` the severity; the rendered
/// `message` is kept as the message. The rest of the document (ECS `event.*`, `agent.*`, …) is
/// not kept: it describes the shipper, not the event.
pub fn event_from_winlogbeat_json(
    doc: &Json,
    receive_time_us: i64,
) -> Result<Event, NotAWindowsEvent> {
    let winlog = doc
        .get("winlog")
        .and_then(Json::as_object)
        .ok_or(NotAWindowsEvent("no \"winlog\" object"))?;
    let event_id = winlog
        .get("event_id")
        .and_then(number)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(NotAWindowsEvent("no numeric \"winlog.event_id\""))?;
    let mut out = Event {
        event_time_us: rfc3339_us(doc.get("@timestamp")).unwrap_or(receive_time_us),
        receive_time_us,
        ..Event::default()
    };
    out.typed
        .push(("win_event_id", Value::UInt(u64::from(event_id))));
    for (key, value) in winlog {
        match key.as_str() {
            "event_id" => {}
            "channel" => push_str(&mut out, "channel", value),
            "provider_name" => push_str(&mut out, "provider", value),
            "computer_name" => {
                push_str(&mut out, "computer", value);
                out.host = scalar_text(value);
            }
            "record_id" => {
                if let Some(n) = number(value) {
                    out.typed.push(("record_id", Value::UInt(n)));
                }
            }
            "event_data" | "user_data" => {
                if let Json::Object(data) = value {
                    for (k, v) in data {
                        out.attrs.push((k.clone(), text(v)));
                    }
                }
            }
            _ => flatten_paths(&mut out.attrs, &format!("winlog.{key}"), value),
        }
    }
    if out.host.is_none() {
        out.host = doc
            .get("host")
            .and_then(|h| h.get("name"))
            .and_then(scalar_text);
    }
    out.severity = doc
        .get("log")
        .and_then(|l| l.get("level"))
        .and_then(Json::as_str)
        .and_then(|level| match level.to_ascii_lowercase().as_str() {
            "critical" => Some(2),
            "error" => Some(3),
            "warning" => Some(4),
            "information" | "info" => Some(6),
            "verbose" | "debug" => Some(7),
            _ => None,
        });
    out.message = doc.get("message").and_then(scalar_text);
    Ok(out)
}

/// The members of an NXLog `im_msvistalog` record that describe the record, not the event's
/// own data: kept as `System.<name>` attributes.
const NXLOG_META: &[&str] = &[
    "EventTime",
    "EventReceivedTime",
    "Keywords",
    "EventType",
    "Severity",
    "ProviderGuid",
    "Version",
    "Task",
    "OpcodeValue",
    "Opcode",
    "ActivityID",
    "RelatedActivityID",
    "ProcessID",
    "ThreadID",
    "Category",
    "Domain",
    "AccountName",
    "UserID",
    "AccountType",
    "SourceModuleName",
    "SourceModuleType",
];

/// Converts a record of NXLog's `im_msvistalog` written with `to_json()`:
///
/// ```json
/// {"EventTime": "2024-05-01T10:00:00+02:00", "Hostname": "ws01.oslo.kommune.no", "EventID": 4688,
///  "SourceName": "Microsoft-Windows-Security-Auditing", "Channel": "Security", "RecordNumber": 77,
///  "SeverityValue": 2, "Message": "A new process has been created.…",
///  "NewProcessName": "C:\\Windows\\System32\\cmd.exe", "SubjectUserName": "kari", …}
/// ```
///
/// `EventID`, `Channel`, `SourceName` (or `ProviderName`), `Hostname` and `RecordNumber` fill
/// the typed columns; NXLog's own members (`NXLOG_META` in this module) become
/// `System.<name>` attributes, every other member is the event's data and an attribute under
/// its own name. `EventTime`
/// is the event time when it carries a time zone (RFC 3339; NXLog's default
/// `YYYY-MM-DD hh:mm:ss` is local time of unknown zone, so the receive time is used and the
/// text kept); `SeverityValue` (1 debug … 5 critical) maps to the syslog scale.
pub fn event_from_nxlog_json(doc: &Json, receive_time_us: i64) -> Result<Event, NotAWindowsEvent> {
    let obj = doc
        .as_object()
        .ok_or(NotAWindowsEvent("not a JSON object"))?;
    let event_id = obj
        .get("EventID")
        .and_then(number)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(NotAWindowsEvent("no numeric \"EventID\""))?;
    if !(obj.contains_key("Channel") || obj.contains_key("SourceName")) {
        return Err(NotAWindowsEvent("neither \"Channel\" nor \"SourceName\""));
    }
    let mut out = Event {
        event_time_us: rfc3339_us(obj.get("EventTime")).unwrap_or(receive_time_us),
        receive_time_us,
        ..Event::default()
    };
    out.typed
        .push(("win_event_id", Value::UInt(u64::from(event_id))));
    for (key, value) in obj {
        match key.as_str() {
            "EventID" => {}
            "Channel" => push_str(&mut out, "channel", value),
            "SourceName" | "ProviderName" => {
                if !out.typed.iter().any(|(c, _)| *c == "provider") {
                    push_str(&mut out, "provider", value);
                }
            }
            "Hostname" => {
                push_str(&mut out, "computer", value);
                out.host = scalar_text(value);
            }
            "RecordNumber" => {
                if let Some(n) = number(value) {
                    out.typed.push(("record_id", Value::UInt(n)));
                }
            }
            "SeverityValue" => {
                out.severity = number(value).map(|v| match v {
                    5 => 2,
                    4 => 3,
                    3 => 4,
                    1 => 7,
                    _ => 6,
                });
            }
            "Message" => out.message = scalar_text(value),
            k if NXLOG_META.contains(&k) => out.attrs.push((format!("System.{k}"), text(value))),
            _ => out.attrs.push((key.clone(), text(value))),
        }
    }
    Ok(out)
}

/// RFC 3339 text (with a zone) as µs since the epoch.
fn rfc3339_us(value: Option<&Json>) -> Option<i64> {
    let text = value?.as_str()?;
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.timestamp_micros())
}

/// Objects flattened into `prefix.key` attributes; scalars and lists as text.
fn flatten_paths(attrs: &mut Vec<(String, String)>, prefix: &str, value: &Json) {
    match value {
        Json::Object(o) => {
            for (k, v) in o {
                flatten_paths(attrs, &format!("{prefix}.{k}"), v);
            }
        }
        Json::Null => {}
        other => attrs.push((prefix.to_owned(), text(other))),
    }
}

/// `{"#text": x}` → x; anything else as is.
pub(crate) fn text_of(value: &Json) -> &Json {
    value.get("#text").unwrap_or(value)
}

pub(crate) fn number(value: &Json) -> Option<u64> {
    match value {
        Json::Number(n) => n.as_u64(),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

pub(crate) fn scalar_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A value as attribute text: strings as they are, other scalars in JSON form, null as empty,
/// structures as compact JSON.
pub(crate) fn text(value: &Json) -> String {
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
    fn winlogbeat_documents() {
        let doc: Json = serde_json::from_str(
            r##"{"@timestamp":"2024-05-01T10:00:00.123Z","message":"A new process has been created.",
              "log":{"level":"information"},"host":{"name":"ws01"},"agent":{"type":"winlogbeat"},
              "winlog":{"channel":"Security","event_id":"4688","provider_name":"Microsoft-Windows-Security-Auditing",
                "computer_name":"ws01.oslo.kommune.no","record_id":912,"process":{"pid":4,"thread":{"id":8}},
                "event_data":{"NewProcessName":"C:\\Windows\\System32\\cmd.exe","SubjectUserName":"kari"}}}"##,
        )
        .expect("json");
        let e = event_from_windows_json(&doc, 7).expect("winlogbeat");
        assert_eq!(e.get("win_event_id"), Some(&Value::UInt(4688)));
        assert_eq!(e.get("channel"), Some(&Value::Str("Security".into())));
        assert_eq!(
            e.get("provider"),
            Some(&Value::Str("Microsoft-Windows-Security-Auditing".into()))
        );
        assert_eq!(e.get("record_id"), Some(&Value::UInt(912)));
        assert_eq!(e.host.as_deref(), Some("ws01.oslo.kommune.no"));
        assert_eq!(e.event_time_us, 1_714_557_600_123_000);
        assert_eq!(e.receive_time_us, 7);
        assert_eq!(e.severity, Some(6));
        assert_eq!(
            e.message.as_deref(),
            Some("A new process has been created.")
        );
        assert!(e.attrs.contains(&(
            "NewProcessName".into(),
            "C:\\Windows\\System32\\cmd.exe".into()
        )));
        assert!(
            e.attrs
                .contains(&("winlog.process.thread.id".into(), "8".into()))
        );
        assert!(!e.attrs.iter().any(|(k, _)| k.starts_with("agent")));
    }

    #[test]
    fn nxlog_documents() {
        let doc: Json = serde_json::from_str(
            r##"{"EventTime":"2024-05-01 12:00:00","Hostname":"ws02","EventID":4625,
              "SourceName":"Microsoft-Windows-Security-Auditing","Channel":"Security","RecordNumber":77,
              "SeverityValue":4,"Message":"An account failed to log on.","ProcessID":612,
              "TargetUserName":"admin","LogonType":"3","SourceModuleType":"im_msvistalog"}"##,
        )
        .expect("json");
        let e = event_from_windows_json(&doc, 99).expect("nxlog");
        assert_eq!(e.get("win_event_id"), Some(&Value::UInt(4625)));
        assert_eq!(e.get("record_id"), Some(&Value::UInt(77)));
        assert_eq!(e.host.as_deref(), Some("ws02"));
        // No zone in NXLog's default EventTime: the receive time, the text kept.
        assert_eq!(e.event_time_us, 99);
        assert!(
            e.attrs
                .contains(&("System.EventTime".into(), "2024-05-01 12:00:00".into()))
        );
        assert_eq!(e.severity, Some(3));
        assert!(e.attrs.contains(&("TargetUserName".into(), "admin".into())));
        assert!(e.attrs.contains(&("System.ProcessID".into(), "612".into())));
        assert_eq!(e.message.as_deref(), Some("An account failed to log on."));
        // Not a Windows record at all.
        let other: Json = serde_json::from_str(r#"{"EventID":"x","level":"info"}"#).expect("json");
        assert!(event_from_windows_json(&other, 0).is_err());
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
