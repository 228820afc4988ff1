//! The JSON-lines form of events, for third-party shippers (Vector, Fluent Bit, Winlogbeat,
//! NXLog) that cannot produce the Arrow envelope.
//!
//! One JSON object per line. Reserved keys:
//!
//! | key                   | type                                     | meaning                            |
//! |-----------------------|------------------------------------------|------------------------------------|
//! | `kind`                | string, a [`SourceKind`] name            | default `generic_json`             |
//! | `time` / `@timestamp` | RFC 3339 string, or integer ms since epoch | event time; default: receive time |
//! | `host`                | string                                   |                                    |
//! | `severity`            | 0–7, or a syslog name (`err`, `warning`, …) |                                 |
//! | `message`             | string                                   |                                    |
//! | `fields`              | object                                   | extra fields, kept as text         |
//! | `tenant`              | string                                   | a *claim* only, checked, never trusted |
//!
//! Any key that names a typed column of the kind (see [`crate::schema::typed_columns`]) fills
//! that column and must have its type (text, non-negative integer, boolean, or a time as above);
//! a number given as a string of digits is accepted for integer columns. Every other key is kept
//! as an attribute, its value as text (strings as they are, anything else as compact JSON).
//! Nothing in a line is dropped.

use serde_json::{Map, Value as Json};

use crate::SourceKind;
use crate::event::{Event, Value};
use crate::schema::{self, ColumnType};

/// Why a JSON line could not become an event.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JsonLineError {
    /// Not valid JSON.
    #[error("not JSON: {0}")]
    Syntax(String),
    /// Valid JSON but not an object.
    #[error("expected a JSON object, got {0}")]
    NotObject(&'static str),
    /// A reserved key or typed column has the wrong type or value.
    #[error("field '{field}': {reason}")]
    Field {
        /// The key.
        field: String,
        /// What was wrong.
        reason: String,
    },
}

/// A parsed JSON line.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonLine {
    /// The event's source kind.
    pub kind: SourceKind,
    /// The event.
    pub event: Event,
    /// The tenant the line claims, if any; the pipeline rejects lines whose claim differs from
    /// the tenant of the authenticated sender.
    pub claimed_tenant: Option<String>,
}

/// Parses one line. `receive_time_us` becomes the receive time, and the event time when the line
/// has none.
pub fn parse_json_line(line: &str, receive_time_us: i64) -> Result<JsonLine, JsonLineError> {
    let json: Json =
        serde_json::from_str(line).map_err(|e| JsonLineError::Syntax(e.to_string()))?;
    let Json::Object(mut obj) = json else {
        return Err(JsonLineError::NotObject(json_type(&json)));
    };
    let kind = match obj.remove("kind") {
        None => SourceKind::GenericJson,
        Some(Json::String(s)) => s
            .parse()
            .map_err(|e: crate::kind::UnknownSourceKind| field_err("kind", e.to_string()))?,
        Some(other) => {
            return Err(field_err(
                "kind",
                format!("expected a string, got {}", json_type(&other)),
            ));
        }
    };
    let mut event = Event {
        receive_time_us,
        event_time_us: receive_time_us,
        ..Event::default()
    };
    for key in ["time", "@timestamp"] {
        if let Some(v) = obj.remove(key) {
            event.event_time_us = parse_time(key, &v)?;
        }
    }
    event.host = take_string(&mut obj, "host")?;
    event.message = take_string(&mut obj, "message")?;
    let claimed_tenant = take_string(&mut obj, "tenant")?;
    if let Some(v) = obj.remove("severity") {
        event.severity = Some(parse_severity(&v)?);
    }
    for spec in schema::typed_columns(kind) {
        if let Some(v) = obj.remove(spec.name) {
            if v.is_null() {
                continue;
            }
            event
                .typed
                .push((spec.name, typed_value(spec.name, spec.ty, &v)?));
        }
    }
    if let Some(fields) = obj.remove("fields") {
        match fields {
            Json::Object(map) => push_attrs(&mut event.attrs, map),
            Json::Null => {}
            other => {
                return Err(field_err(
                    "fields",
                    format!("expected an object, got {}", json_type(&other)),
                ));
            }
        }
    }
    push_attrs(&mut event.attrs, obj);
    Ok(JsonLine {
        kind,
        event,
        claimed_tenant,
    })
}

/// Severity from a syslog keyword (`emerg` … `debug`, with the common long forms).
pub fn severity_from_name(name: &str) -> Option<u8> {
    Some(match name.to_ascii_lowercase().as_str() {
        "emerg" | "emergency" | "panic" => 0,
        "alert" => 1,
        "crit" | "critical" | "fatal" => 2,
        "err" | "error" => 3,
        "warning" | "warn" => 4,
        "notice" => 5,
        "info" | "informational" | "information" => 6,
        "debug" | "trace" => 7,
        _ => return None,
    })
}

fn field_err(field: &str, reason: impl Into<String>) -> JsonLineError {
    JsonLineError::Field {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn json_type(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

fn take_string(obj: &mut Map<String, Json>, key: &str) -> Result<Option<String>, JsonLineError> {
    match obj.remove(key) {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(s)) => Ok(Some(s)),
        Some(other) => Err(field_err(
            key,
            format!("expected a string, got {}", json_type(&other)),
        )),
    }
}

fn parse_time(key: &str, v: &Json) -> Result<i64, JsonLineError> {
    match v {
        Json::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .map(|t| t.timestamp_micros())
            .map_err(|e| field_err(key, format!("'{s}' is not an RFC 3339 time: {e}"))),
        Json::Number(n) => n
            .as_i64()
            .and_then(|ms| ms.checked_mul(1000))
            .ok_or_else(|| {
                field_err(
                    key,
                    format!("{n} is not an integer of milliseconds since the epoch"),
                )
            }),
        other => Err(field_err(
            key,
            format!("expected a time, got {}", json_type(other)),
        )),
    }
}

fn parse_severity(v: &Json) -> Result<u8, JsonLineError> {
    let bad = || {
        field_err(
            "severity",
            format!("expected 0-7 or a syslog severity name, got {v}"),
        )
    };
    match v {
        Json::Number(n) => n
            .as_u64()
            .filter(|s| *s <= 7)
            .and_then(|s| u8::try_from(s).ok())
            .ok_or_else(bad),
        Json::String(s) => severity_from_name(s).ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn typed_value(name: &str, ty: ColumnType, v: &Json) -> Result<Value, JsonLineError> {
    let mismatch = |what: &str| field_err(name, format!("expected {what}, got {v}"));
    Ok(match ty {
        ColumnType::Utf8 => match v {
            Json::String(s) => Value::Str(s.clone()),
            Json::Number(n) => Value::Str(n.to_string()),
            Json::Bool(b) => Value::Str(b.to_string()),
            _ => return Err(mismatch("text")),
        },
        ColumnType::Bool => match v {
            Json::Bool(b) => Value::Bool(*b),
            _ => return Err(mismatch("a boolean")),
        },
        ColumnType::UInt8 | ColumnType::UInt16 | ColumnType::UInt32 | ColumnType::UInt64 => {
            let n = match v {
                Json::Number(n) => n.as_u64(),
                Json::String(s) => s.trim().parse::<u64>().ok(),
                _ => None,
            }
            .ok_or_else(|| mismatch("a non-negative integer"))?;
            let max = match ty {
                ColumnType::UInt8 => u64::from(u8::MAX),
                ColumnType::UInt16 => u64::from(u16::MAX),
                ColumnType::UInt32 => u64::from(u32::MAX),
                _ => u64::MAX,
            };
            if n > max {
                return Err(field_err(name, format!("{n} is larger than {max}")));
            }
            Value::UInt(n)
        }
        ColumnType::Timestamp => Value::Time(parse_time(name, v)?),
    })
}

fn push_attrs(attrs: &mut Vec<(String, String)>, map: Map<String, Json>) {
    for (k, v) in map {
        let text = match v {
            Json::String(s) => s,
            other => other.to_string(),
        };
        attrs.push((k, text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_line_fills_typed_columns_and_keeps_the_rest() {
        let line = r#"{"kind":"web_access","time":"2024-05-01T10:00:00Z","host":"web1",
            "severity":"info","message":"GET /","client_ip":"192.0.2.7","status":"404",
            "bytes_sent":512,"fields":{"x":1},"shipper":"vector","tenant":"0301"}"#;
        let j = parse_json_line(line, 42).expect("valid line");
        assert_eq!(j.kind, SourceKind::WebAccess);
        assert_eq!(j.event.event_time_us, 1_714_557_600_000_000);
        assert_eq!(j.event.receive_time_us, 42);
        assert_eq!(j.event.severity, Some(6));
        assert_eq!(j.event.get("status"), Some(&Value::UInt(404)));
        assert_eq!(j.event.get("bytes_sent"), Some(&Value::UInt(512)));
        assert_eq!(j.claimed_tenant.as_deref(), Some("0301"));
        assert!(j.event.attrs.contains(&("x".into(), "1".into())));
        assert!(j.event.attrs.contains(&("shipper".into(), "vector".into())));
    }

    #[test]
    fn bad_lines_say_what_is_wrong() {
        let err = |l: &str| parse_json_line(l, 0).expect_err(l).to_string();
        assert!(err("not json").starts_with("not JSON"));
        assert!(err("[1]").contains("an array"));
        assert!(err(r#"{"kind":"nope"}"#).contains("unknown source kind 'nope'"));
        assert!(err(r#"{"kind":"web_access","status":70000}"#).contains("larger than 65535"));
        assert!(err(r#"{"time":"yesterday"}"#).contains("RFC 3339"));
        assert!(err(r#"{"severity":9}"#).contains("severity"));
    }

    #[test]
    fn generic_lines_default_to_receive_time() {
        let j = parse_json_line(r#"{"a":{"b":[1,2]}}"#, 7).expect("valid");
        assert_eq!(j.kind, SourceKind::GenericJson);
        assert_eq!(j.event.event_time_us, 7);
        assert_eq!(j.event.attrs, vec![("a".into(), r#"{"b":[1,2]}"#.into())]);
    }
}
