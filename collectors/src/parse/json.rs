//! Any other JSON object into a `generic_json` event, with a configurable choice of the members
//! that hold the host, the message and the time.
//!
//! A JSON line that is neither a login event nor a Windows event record (see [`super::oidc`]) is
//! kept whole as a `generic_json` event: nested objects are flattened into dotted attribute
//! names (`{"http": {"status": 500}}` → `http.status = "500"`), a list gives one attribute per
//! element under its name (so a Sigma rule on the field matches any element, as the engine does
//! for every multi-valued field), `null` members are left out. Three members also fill columns,
//! by the first name of each list that the object has (the `[json]` section of the collector's
//! configuration sets other names, as dotted paths):
//!
//! | column | default members tried, in order |
//! |---|---|
//! | `host` | `host`, `hostname`, `host.name` |
//! | `message` | `message`, `msg` |
//! | event time | `@timestamp`, `timestamp`, `time`, `ts` (RFC 3339 text, or a number of seconds since the epoch) |
//!
//! Every member stays an attribute too: Sigma rules routed to `generic_json` look fields up by
//! the names they arrived with (`message`, `host.name`).

use serde::Deserialize;
use serde_json::{Map, Value as Json};
use varde_core::Event;

/// Which members of a generic JSON object fill the host, message and event-time columns
/// (dotted paths for nested members). The `[json]` section of the collector's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonFields {
    /// Members naming the host, first present wins.
    #[serde(default = "default_host")]
    pub host: Vec<String>,
    /// Members holding the message text.
    #[serde(default = "default_message")]
    pub message: Vec<String>,
    /// Members holding the event's time (RFC 3339, or seconds since the epoch as a number).
    #[serde(default = "default_time")]
    pub time: Vec<String>,
}

fn names(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| (*s).to_owned()).collect()
}

fn default_host() -> Vec<String> {
    names(&["host", "hostname", "host.name"])
}

fn default_message() -> Vec<String> {
    names(&["message", "msg"])
}

fn default_time() -> Vec<String> {
    names(&["@timestamp", "timestamp", "time", "ts"])
}

impl Default for JsonFields {
    fn default() -> Self {
        JsonFields {
            host: default_host(),
            message: default_message(),
            time: default_time(),
        }
    }
}

/// Flattens `obj` into `(dotted name, value)` pairs, in the object's order; a list gives one pair per
/// element under the list's name.
fn flatten(prefix: &str, obj: &Map<String, Json>, out: &mut Vec<(String, Json)>) {
    for (k, v) in obj {
        let name = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        flatten_value(name, v, out);
    }
}

fn flatten_value(name: String, v: &Json, out: &mut Vec<(String, Json)>) {
    match v {
        Json::Object(inner) => flatten(&name, inner, out),
        Json::Array(items) => {
            for item in items {
                flatten_value(name.clone(), item, out);
            }
        }
        Json::Null => {}
        other => out.push((name, other.clone())),
    }
}

fn text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn time_us(v: &Json) -> Option<i64> {
    match v {
        Json::String(s) => chrono::DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.timestamp_micros()),
        Json::Number(n) => {
            let secs = n.as_f64()?;
            (secs.is_finite() && secs.abs() < 1e11).then_some((secs * 1e6) as i64)
        }
        _ => None,
    }
}

/// The object as a `generic_json` event (see the module docs).
pub fn generic(obj: &Map<String, Json>, receive_time_us: i64, fields: &JsonFields) -> Event {
    let mut members = Vec::new();
    flatten("", obj, &mut members);
    let mut event = Event {
        event_time_us: receive_time_us,
        receive_time_us,
        ..Event::default()
    };
    let find = |wanted: &[String], ok: &dyn Fn(&Json) -> bool| -> Option<Json> {
        wanted.iter().find_map(|w| {
            members
                .iter()
                .find(|(n, v)| n == w && ok(v))
                .map(|(_, v)| v.clone())
        })
    };
    let scalar = |v: &Json| matches!(v, Json::String(_) | Json::Number(_) | Json::Bool(_));
    event.host = find(&fields.host, &scalar).map(|v| text(&v));
    event.message = find(&fields.message, &scalar).map(|v| text(&v));
    if let Some(t) = find(&fields.time, &|v| time_us(v).is_some()).and_then(|v| time_us(&v)) {
        event.event_time_us = t;
    }
    event.attrs = members.into_iter().map(|(n, v)| (n, text(&v))).collect();
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(text: &str) -> Map<String, Json> {
        match serde_json::from_str(text) {
            Ok(Json::Object(o)) => o,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn objects_are_flattened_and_host_message_time_lifted() {
        let e = generic(
            &obj(
                r#"{"ts":"2024-05-01T10:00:00Z","host":{"name":"app01"},"msg":"payment failed","http":{"status":500,"path":"/betal"},"tags":["a","b"],"gone":null}"#,
            ),
            7,
            &JsonFields::default(),
        );
        assert_eq!(e.host.as_deref(), Some("app01"));
        assert_eq!(e.message.as_deref(), Some("payment failed"));
        assert_eq!(e.event_time_us, 1_714_557_600_000_000);
        assert_eq!(e.receive_time_us, 7);
        let mut attrs: Vec<(&str, &str)> = e
            .attrs
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        attrs.sort_unstable();
        assert_eq!(
            attrs,
            vec![
                ("host.name", "app01"),
                ("http.path", "/betal"),
                ("http.status", "500"),
                ("msg", "payment failed"),
                ("tags", "a"),
                ("tags", "b"),
                ("ts", "2024-05-01T10:00:00Z"),
            ]
        );
    }

    #[test]
    fn configured_members_win_and_unreadable_times_are_ignored() {
        let fields = JsonFields {
            host: vec!["src.server".into()],
            message: vec!["text".into()],
            time: vec!["when".into()],
        };
        let e = generic(
            &obj(r#"{"src":{"server":"db01"},"text":"hello","when":"yesterday","host":"other"}"#),
            9,
            &fields,
        );
        assert_eq!(e.host.as_deref(), Some("db01"));
        assert_eq!(e.message.as_deref(), Some("hello"));
        assert_eq!(e.event_time_us, 9);
        assert!(e.attrs.contains(&("when".into(), "yesterday".into())));
        assert!(e.attrs.contains(&("host".into(), "other".into())));
        let e = generic(&obj(r#"{"time":1714557600.5}"#), 0, &JsonFields::default());
        assert_eq!(e.event_time_us, 1_714_557_600_500_000);
    }
}
