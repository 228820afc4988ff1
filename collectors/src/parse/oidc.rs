//! Login events of municipal services (OpenID Connect, notably ID-porten) into `oidc_login`
//! events; JSON Windows event records into `windows_event`.
//!
//! # The JSON shape Varde accepts
//!
//! One JSON object per line (alone or as the message of a syslog line). It is a login event when
//! it has a string `client_id` **and** at least one of `acr`, `amr`, `sub`, `subject`, `outcome`,
//! `error`, `error_code`, `idp`, `iss`:
//!
//! ```json
//! {"time": "2026-11-23T17:59:58.120Z",          // or "timestamp" / "@timestamp"; RFC 3339
//!  "client_id": "k0301-innbyggerportal",       // the municipal service's OIDC client
//!  "service": "byggesak",                      // the municipal service, free text
//!  "outcome": "success",                       // "success" | "failure"; when absent: "failure"
//!                                              //   if "error" is present, else "success"
//!  "error": "access_denied",                   // or "error_code"
//!  "acr": "idporten-loa-high",                 // level of assurance
//!  "amr": ["BankID"],                          // a string or a list (joined with ",")
//!  "idp": "idporten",                          // or "iss" (the issuer URL)
//!  "sub": "pairwise-subject",                  // or "subject"
//!  "src_ip": "203.0.113.5",                    // or "client_ip" / "ip"
//!  "user_agent": "Mozilla/5.0 …",              // or "ua"
//!  "pid": "01019012345"}                       // anything else: kept as an attribute
//! ```
//!
//! Other fields become attributes under their own names (nested values as compact JSON). Values
//! that carry identity numbers (ID-porten's `pid` claim is the fødselsnummer) are pseudonymised
//! like any other text by [`crate::privacy`]. A JSON object with an `Event` member (evtx), a
//! `winlog` object (Winlogbeat) or an `EventID` (NXLog) is tried as a Windows event record
//! ([`varde_core::windows`]). Any other JSON object is a `generic_json` event
//! ([`super::json`]); a line that starts with `{` and ends with `}` but is not JSON is a parse
//! failure.
//!
//! # ID-porten logins in syslog structured data
//!
//! Syslog lines with an `idporten@53595` structured-data element (as Varde's sample citizen
//! portal writes them) become `oidc_login` events too: its parameters `client_id`, `acr`, `amr`,
//! `idp`, `sub`, `outcome`, `error`, `src_ip`, `user_agent` and `service` fill the columns of the
//! same names.

use serde_json::{Map, Value as Json};
use varde_core::windows::EvtxDecoder;
use varde_core::{Event, Row, SourceKind, Value};

use super::json::JsonFields;
use super::{Outcome, Parsed};

/// The structured-data id of ID-porten login parameters in syslog.
pub const IDPORTEN_SD_ID: &str = "idporten@53595";

const MARKERS: [&str; 9] = [
    "acr",
    "amr",
    "sub",
    "subject",
    "outcome",
    "error",
    "error_code",
    "idp",
    "iss",
];

/// What a JSON line turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonOutcome {
    /// A login event.
    Login(Parsed),
    /// A Windows event record, as a whole event of kind `windows_event`.
    Windows(Box<Event>),
    /// Any other JSON object, as a whole event of kind `generic_json` ([`super::json`]).
    Other(Box<Event>),
    /// Not a JSON object at all.
    NotMine,
    /// `{…}`-shaped but not valid JSON.
    Failed(&'static str),
}

/// Parses a body that may be a JSON object; `fields` says which members of a generic object
/// hold its host, message and time.
pub fn parse_json(body: &str, receive_time_us: i64, fields: &JsonFields) -> JsonOutcome {
    let trimmed = body.trim();
    if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
        return JsonOutcome::NotMine;
    }
    if let Some(e) = evtx_from_text(trimmed, receive_time_us) {
        return JsonOutcome::Windows(Box::new(e));
    }
    parse_json_tree(trimmed, receive_time_us, fields)
}

/// [`parse_json`] without its first step (the evtx shape read in one pass, which the edge
/// does into its own row): the document parsed into a tree and classified.
pub fn parse_json_tree(body: &str, receive_time_us: i64, fields: &JsonFields) -> JsonOutcome {
    let trimmed = body.trim();
    if !(trimmed.starts_with('{') && trimmed.ends_with('}')) {
        return JsonOutcome::NotMine;
    }
    match serde_json::from_str::<Json>(trimmed) {
        Ok(doc) => classify_json(&doc, receive_time_us, fields),
        Err(_) => JsonOutcome::Failed("json: not valid JSON"),
    }
}

/// A JSON text in the evtx shape, decoded in one pass without a tree of the document
/// ([`varde_core::windows::EvtxDecoder`]); `None` when the text is not such a record (or not
/// JSON), which [`classify_json`] then looks at whole. Only texts that name an `"Event"` member
/// are tried, so other JSON pays one substring search.
pub fn evtx_from_text(text: &str, receive_time_us: i64) -> Option<Event> {
    if !names_event(text) {
        return None;
    }
    DECODER.with_borrow_mut(|d| d.decode_str(text, receive_time_us).ok().map(Row::to_event))
}

/// [`evtx_from_text`] into `row` (the collector's own path: no owned string per field; the
/// decoder keeps `row`'s old buffers for the next record); `false`, `row` unchanged, when the
/// text is not such a record.
pub fn evtx_into(text: &str, receive_time_us: i64, row: &mut Row) -> bool {
    names_event(text)
        && DECODER.with_borrow_mut(|d| d.decode_into(text, receive_time_us, row).is_ok())
}

thread_local! {
    /// This thread's decoder, its buffers kept from record to record.
    static DECODER: std::cell::RefCell<EvtxDecoder> = std::cell::RefCell::default();
}

/// Whether a text names an `"Event"` member: only those are tried as evtx records.
fn names_event(text: &str) -> bool {
    text.contains("\"Event\"")
}

/// What a parsed JSON document is: a login event, a Windows event record (evtx, Winlogbeat or
/// NXLog shape), or any other object (`generic_json`); not an object at all is `NotMine`.
pub fn classify_json(doc: &Json, receive_time_us: i64, fields: &JsonFields) -> JsonOutcome {
    let Json::Object(obj) = doc else {
        return JsonOutcome::NotMine;
    };
    let windows_shaped = obj.contains_key("Event")
        || obj.get("winlog").is_some_and(Json::is_object)
        || obj.contains_key("EventID");
    if windows_shaped
        && let Ok(e) = varde_core::windows::event_from_windows_json(doc, receive_time_us)
    {
        return JsonOutcome::Windows(Box::new(e));
    }
    let is_login = matches!(obj.get("client_id"), Some(Json::String(_)))
        && MARKERS.iter().any(|k| obj.contains_key(*k));
    if !is_login {
        return JsonOutcome::Other(Box::new(super::json::generic(obj, receive_time_us, fields)));
    }
    JsonOutcome::Login(login(obj))
}

fn as_text(v: &Json) -> Option<String> {
    match v {
        Json::Null => None,
        Json::String(s) => Some(s.clone()),
        Json::Array(items) => Some(
            items
                .iter()
                .map(|i| match i {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect::<Vec<_>>()
                .join(","),
        ),
        other => Some(other.to_string()),
    }
}

fn login(obj: &Map<String, Json>) -> Parsed {
    let mut p = Parsed::new(SourceKind::OidcLogin);
    let mut used: Vec<&str> = Vec::new();
    let mut column = |p: &mut Parsed, column: &'static str, keys: &[&'static str]| {
        if let Some((key, text)) = keys
            .iter()
            .find_map(|k| obj.get(*k).and_then(as_text).map(|t| (*k, t)))
        {
            used.push(key);
            p.text(column, &text);
        }
    };
    column(&mut p, "client_id", &["client_id"]);
    column(&mut p, "subject", &["sub", "subject"]);
    column(&mut p, "acr", &["acr"]);
    column(&mut p, "amr", &["amr"]);
    column(&mut p, "idp", &["idp", "iss"]);
    column(&mut p, "error_code", &["error", "error_code"]);
    column(&mut p, "src_ip", &["src_ip", "client_ip", "ip"]);
    column(&mut p, "user_agent", &["user_agent", "ua"]);
    column(&mut p, "service", &["service"]);
    column(&mut p, "outcome", &["outcome"]);
    if !p.typed.iter().any(|(c, _)| *c == "outcome") {
        let failed = p.typed.iter().any(|(c, _)| *c == "error_code");
        p.text("outcome", if failed { "failure" } else { "success" });
    }
    for key in ["time", "timestamp", "@timestamp"] {
        if let Some(Json::String(t)) = obj.get(key)
            && let Ok(t) = chrono::DateTime::parse_from_rfc3339(t)
        {
            p.event_time_us = Some(t.timestamp_micros());
            used.push(key);
            break;
        }
    }
    for (k, v) in obj {
        if used.contains(&k.as_str()) {
            continue;
        }
        if let Some(text) = as_text(v) {
            p.attrs.push((k.clone(), text));
        }
    }
    p
}

/// Turns a syslog event with `idporten@53595` structured data into a login event.
pub fn from_structured_data(attrs: &[(String, String)]) -> Outcome {
    if attrs.is_empty() {
        return Outcome::NotMine;
    }
    let prefix = format!("sd.{IDPORTEN_SD_ID}.");
    if !attrs.iter().any(|(k, _)| k.starts_with(&prefix)) {
        return Outcome::NotMine;
    }
    let mut p = Parsed::new(SourceKind::OidcLogin);
    for (key, value) in attrs {
        let Some(name) = key.strip_prefix(&prefix) else {
            continue;
        };
        let column = match name {
            "client_id" => "client_id",
            "sub" | "subject" => "subject",
            "acr" => "acr",
            "amr" => "amr",
            "idp" => "idp",
            "outcome" => "outcome",
            "error" | "error_code" => "error_code",
            "src_ip" => "src_ip",
            "user_agent" => "user_agent",
            "service" => "service",
            _ => continue,
        };
        if p.typed.iter().any(|(c, _)| *c == column) {
            continue;
        }
        p.typed.push((column, Value::Str(value.clone())));
        p.consumed_attrs.push(key.clone());
    }
    Outcome::Parsed(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    static F: std::sync::LazyLock<JsonFields> = std::sync::LazyLock::new(JsonFields::default);

    fn get<'a>(p: &'a Parsed, column: &str) -> Option<&'a Value> {
        p.typed
            .iter()
            .find_map(|(c, v)| (*c == column).then_some(v))
    }

    fn s(v: &str) -> Option<Value> {
        Some(Value::Str(v.into()))
    }

    #[test]
    fn json_logins() {
        let JsonOutcome::Login(p) = parse_json(
            r#"{"time":"2026-11-23T17:59:58.120Z","client_id":"k0301-portal","service":"byggesak","acr":"idporten-loa-high","amr":["BankID","TOTP"],"iss":"https://idporten.no","sub":"abc","ip":"203.0.113.5","pid":"31129956715","n":3}"#,
            0,
            &F,
        ) else {
            panic!("login");
        };
        assert_eq!(get(&p, "client_id").cloned(), s("k0301-portal"));
        assert_eq!(get(&p, "amr").cloned(), s("BankID,TOTP"));
        assert_eq!(get(&p, "idp").cloned(), s("https://idporten.no"));
        assert_eq!(get(&p, "subject").cloned(), s("abc"));
        assert_eq!(get(&p, "src_ip").cloned(), s("203.0.113.5"));
        assert_eq!(get(&p, "outcome").cloned(), s("success"));
        assert_eq!(p.event_time_us, Some(1_795_456_798_120_000));
        assert!(p.attrs.contains(&("pid".into(), "31129956715".into())));
        assert!(p.attrs.contains(&("n".into(), "3".into())));
        assert!(!p.attrs.iter().any(|(k, _)| k == "time" || k == "acr"));

        let JsonOutcome::Login(p) = parse_json(
            r#"{"client_id":"k0301-portal","error":"access_denied"}"#,
            0,
            &F,
        ) else {
            panic!("login");
        };
        assert_eq!(get(&p, "outcome").cloned(), s("failure"));
        assert_eq!(get(&p, "error_code").cloned(), s("access_denied"));
    }

    #[test]
    fn other_json() {
        assert!(matches!(
            parse_json(r#"{"client_id":"x"}"#, 0, &F),
            JsonOutcome::Other(_)
        ));
        let JsonOutcome::Other(e) = parse_json(r#"{"level":"info","msg":"hei"}"#, 0, &F) else {
            panic!("generic");
        };
        assert_eq!(e.message.as_deref(), Some("hei"));
        assert_eq!(parse_json("plain text", 0, &F), JsonOutcome::NotMine);
        assert!(matches!(
            parse_json("{not json}", 0, &F),
            JsonOutcome::Failed(_)
        ));
        let win = r#"{"Event":{"System":{"EventID":4625,"Channel":"Security","Computer":"ad01"},"EventData":{"TargetUserName":"kari"}}}"#;
        let beat = r#"{"winlog":{"event_id":4625,"channel":"Security","computer_name":"ad01","event_data":{"TargetUserName":"kari"}}}"#;
        let nxlog =
            r#"{"EventID":4625,"Channel":"Security","Hostname":"ad01","TargetUserName":"kari"}"#;
        for doc in [win, beat, nxlog] {
            let JsonOutcome::Windows(e) = parse_json(doc, 5, &F) else {
                panic!("windows: {doc}");
            };
            assert_eq!(e.get("win_event_id"), Some(&Value::UInt(4625)), "{doc}");
            assert_eq!(e.host.as_deref(), Some("ad01"), "{doc}");
            assert!(
                e.attrs.contains(&("TargetUserName".into(), "kari".into())),
                "{doc}"
            );
        }
        // An EventID that is no Windows record is generic JSON.
        assert!(matches!(
            parse_json(r#"{"EventID":"abc"}"#, 0, &F),
            JsonOutcome::Other(_)
        ));
    }

    #[test]
    fn structured_data() {
        let attrs = vec![
            (
                "sd.idporten@53595.acr".to_owned(),
                "idporten-loa-high".to_owned(),
            ),
            (
                "sd.idporten@53595.client_id".to_owned(),
                "k0301-portal".to_owned(),
            ),
            ("sd.idporten@53595.outcome".to_owned(), "success".to_owned()),
            ("sd.other@1.x".to_owned(), "y".to_owned()),
        ];
        let Outcome::Parsed(p) = from_structured_data(&attrs) else {
            panic!("parsed");
        };
        assert_eq!(get(&p, "acr").cloned(), s("idporten-loa-high"));
        assert_eq!(p.consumed_attrs.len(), 3);
        assert_eq!(from_structured_data(&attrs[3..]), Outcome::NotMine);
    }
}
