//! Tests of the edge entry point: every format on its way to a typed, pseudonymised event.

use super::*;
use crate::privacy::{PrivacyKey, PrivacyPolicy};
use proptest::prelude::*;
use varde_core::{BatchBuilder, CollectorId, Kommunenummer, Value};

const NOW: i64 = 1_714_557_600_000_000; // 2024-05-01T10:00:00Z

fn source() -> EdgeSource {
    EdgeSource::new(Privacy::new(
        &PrivacyKey::from_bytes([3; 32]),
        PrivacyPolicy::default(),
    ))
}

fn s(v: &str) -> Value {
    Value::Str(v.into())
}

fn fits(kind: SourceKind, event: &Event) -> bool {
    let (Ok(tenant), Ok(id)) = (Kommunenummer::parse("0301"), CollectorId::new("test")) else {
        return false;
    };
    BatchBuilder::new(kind, tenant, id, 1).push(event).is_ok()
}

#[test]
fn syslog_lines_become_typed_events() {
    let src = source();
    let cases: [(&str, SourceKind); 6] = [
        (
            "<38>1 2024-05-01T09:59:58.000Z fw01.k0301.kommune.no sshd 4242 - - Failed password for invalid user test from 203.0.113.7 port 40022 ssh2",
            SourceKind::Auth,
        ),
        (
            "<85>May  1 09:59:58 sak01 sudo: kari : TTY=pts/0 ; PWD=/home/kari ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx",
            SourceKind::Auth,
        ),
        (
            "<190>1 2024-05-01T09:59:58.000Z web01 nginx - - - 203.0.113.5 - - \"GET /innsyn HTTP/1.1\" 200 512",
            SourceKind::WebAccess,
        ),
        (
            "<134>1 2024-05-01T09:59:58.000Z portal01 innbyggerportal - LOGIN [idporten@53595 acr=\"idporten-loa-high\" client_id=\"k0301-portal\" outcome=\"success\"] ID-porten login",
            SourceKind::OidcLogin,
        ),
        (
            "<4>May  1 09:59:58 fw01 kernel: [UFW BLOCK] IN=eth0 SRC=203.0.113.5 DST=10.0.0.5",
            SourceKind::Syslog,
        ),
        (
            "<38>1 2024-05-01T09:59:58.000Z fw01 sshd 4242 - - Server listening on 0.0.0.0 port 22.",
            SourceKind::Auth,
        ),
    ];
    for (line, want) in cases {
        let (kind, event) = edge_event(line, NOW, &src);
        assert_eq!(kind, want, "{line}");
        assert!(fits(kind, &event), "{line}: {event:?}");
        assert!(event.host.is_some(), "{line}");
    }
    let (_, e) = edge_event(cases[0].0, NOW, &src);
    assert_eq!(e.get("user"), Some(&s("test")));
    assert_eq!(e.get("src_ip"), Some(&s("203.0.113.7")));
    assert_eq!(e.get("src_port"), Some(&Value::UInt(40022)));
    assert_eq!(e.event_time_us, 1_714_557_598_000_000);
    assert!(e.attrs.contains(&("syslog.app_name".into(), "sshd".into())));
    assert!(e.attrs.contains(&("syslog.proc_id".into(), "4242".into())));
    assert!(
        e.message
            .as_deref()
            .is_some_and(|m| m.starts_with("Failed password"))
    );
    let (_, e) = edge_event(cases[3].0, NOW, &src);
    assert_eq!(e.get("client_id"), Some(&s("k0301-portal")));
    assert!(!e.attrs.iter().any(|(k, _)| k.starts_with("sd.idporten")));
    let c = src.stats().snapshot();
    assert_eq!(c.lines, 8);
    // Cases 0, 1 and 5 (every sshd and sudo line is `auth`), and case 0 once more.
    assert_eq!(c.events_of(SourceKind::Auth), 4);
    assert_eq!(c.unparsed_lines, 0);
}

#[test]
fn raw_lines_from_files() {
    let src = source();
    let (kind, e) = edge_event(
        r#"203.0.113.5 - - [01/May/2024:09:59:58 +0200] "GET /api/sak?fnr=31129956715 HTTP/1.1" 200 120 "-" "Mozilla/5.0""#,
        NOW,
        &src,
    );
    assert_eq!(kind, SourceKind::WebAccess);
    assert_eq!(e.event_time_us, 1_714_550_398_000_000);
    let Some(Value::Str(query)) = e.get("url_query") else {
        panic!("query: {e:?}");
    };
    assert!(query.starts_with("fnr=fnr:"), "{query}");
    assert!(
        !e.message
            .as_deref()
            .unwrap_or_default()
            .contains("31129956715")
    );
    assert!(!e.attrs.iter().any(|(k, _)| k == "syslog.parse_error"));

    let (kind, e) = edge_event("console: link eth0 flapped", NOW, &src);
    assert_eq!(kind, SourceKind::Syslog);
    assert_eq!(e.message.as_deref(), Some("console: link eth0 flapped"));
    let c = src.stats().snapshot();
    assert_eq!((c.unparsed_lines, c.national_ids), (1, 2));
}

#[test]
fn w3c_headers_are_remembered_per_source() {
    let src = source();
    let (kind, _) = edge_event(
        "#Software: Microsoft Internet Information Services 10.0",
        NOW,
        &src,
    );
    assert_eq!(kind, SourceKind::Syslog);
    edge_event(
        "#Fields: date time c-ip cs-method cs-uri-stem sc-status time-taken",
        NOW,
        &src,
    );
    let (kind, e) = edge_event("2024-05-01 07:59:58 203.0.113.5 GET /owa 401 31", NOW, &src);
    assert_eq!(kind, SourceKind::WebAccess);
    assert_eq!(e.get("status"), Some(&Value::UInt(401)));
    assert_eq!(e.get("duration_us"), Some(&Value::UInt(31_000)));
    // A line that does not fit the header is kept and counted.
    let (kind, e) = edge_event("2024-05-01 07:59:58 203.0.113.5 GET", NOW, &src);
    assert_eq!(kind, SourceKind::Syslog);
    assert!(e.attrs.iter().any(|(k, _)| k == "edge.parse_error"));
    assert_eq!(src.stats().snapshot().parse_failures, 1);
    // Another source has not seen the header: only lines with IIS's default fields are W3C, and
    // an application's own timestamped line is just a line.
    let other = source();
    let (kind, _) = edge_event(
        "2024-05-01 07:59:58 203.0.113.5 GET /owa 401 31",
        NOW,
        &other,
    );
    assert_eq!(kind, SourceKind::Syslog);
    let (kind, _) = edge_event(
        "2024-05-01 07:59:58 10.0.0.8 GET /owa - 443 - 203.0.113.5 curl/8 - 401 1 2 31",
        NOW,
        &other,
    );
    assert_eq!(kind, SourceKind::WebAccess);
    let c = other.stats().snapshot();
    assert_eq!((c.parse_failures, c.unparsed_lines), (0, 1));
}

#[test]
fn json_lines() {
    let src = source();
    let (kind, e) = edge_event(
        r#"{"time":"2024-05-01T09:59:58Z","client_id":"k0301-portal","acr":"idporten-loa-substantial","pid":"31129956715","ip":"203.0.113.5"}"#,
        NOW,
        &src,
    );
    assert_eq!(kind, SourceKind::OidcLogin);
    assert!(fits(kind, &e));
    let pid = e
        .attrs
        .iter()
        .find(|(k, _)| k == "pid")
        .map(|(_, v)| v.as_str());
    assert!(pid.is_some_and(|p| p.starts_with("fnr:")), "{pid:?}");
    let (kind, e) = edge_event("{\"client_id\": broken}", NOW, &src);
    assert_eq!(kind, SourceKind::Syslog);
    assert_eq!(e.message.as_deref(), Some("{\"client_id\": broken}"));
    let (kind, e) = edge_event(
        r#"<14>1 2024-05-01T09:59:58Z ad01 nxlog - - - {"Event":{"System":{"EventID":4625,"Channel":"Security"}}}"#,
        NOW,
        &src,
    );
    assert_eq!(kind, SourceKind::WindowsEvent);
    assert_eq!(e.host.as_deref(), Some("ad01"));
    assert!(fits(kind, &e));
    let c = src.stats().snapshot();
    assert_eq!(c.parse_failures, 1);
    assert_eq!(c.events_of(SourceKind::WindowsEvent), 1);
}

#[test]
fn prometheus_text() {
    let src = source();
    edge_event("fnr 31129956715", NOW, &src);
    let text = varde_transport::exposition::encode(EdgeStats::families(&[(
        "file:/var/log/a\"b",
        src.stats(),
    )]));
    assert!(
        text.contains(
            "varde_collector_pseudonymised_total{source=\"file:/var/log/a\\\"b\",what=\"national_id\"} 1"
        ),
        "{text}"
    );
    assert!(text.contains(
        "varde_collector_edge_events_total{source=\"file:/var/log/a\\\"b\",kind=\"syslog\"} 1"
    ));
    assert_eq!(text.matches("# TYPE").count(), 6);
    assert!(!text.contains("31129956715"));
}

#[test]
fn the_sample_parses_into_every_edge_kind() {
    let src = source();
    for line in crate::sample::edge_sample_lines("0301", 2000, NOW) {
        let (kind, e) = edge_event(&line, NOW, &src);
        assert!(fits(kind, &e), "{line}");
    }
    let c = src.stats().snapshot();
    for kind in [
        SourceKind::Syslog,
        SourceKind::Auth,
        SourceKind::WebAccess,
        SourceKind::OidcLogin,
    ] {
        assert!(c.events_of(kind) > 50, "{kind}: {c:?}");
    }
    assert!(c.national_ids > 20, "{c:?}");
    assert!(c.account_numbers_kept > 0, "{c:?}");
    assert_eq!(c.parse_failures, 0, "{c:?}");
}

proptest! {
    /// Any line: no panic, exactly one event that fits its kind's schema, no valid identity
    /// number left in its text.
    #[test]
    fn any_line_gives_one_event_that_fits(line in "\\PC{0,200}") {
        let src = source();
        let (kind, e) = edge_event(&line, NOW, &src);
        prop_assert!(fits(kind, &e));
        prop_assert_eq!(src.stats().snapshot().lines, 1);
    }

    /// Lines built from the formats' pieces: same guarantees, and the text is never lost.
    #[test]
    fn format_like_lines_are_never_dropped(
        prefix in prop_oneof![
            Just(""), Just("<38>1 2024-05-01T09:59:58Z h sshd 1 - - "), Just("<85>May  1 09:59:58 h sudo: "),
            Just("<190>1 2024-05-01T09:59:58Z h nginx - - - "), Just("2024-05-01 07:59:58 "), Just("#Fields: "),
        ],
        body in prop::collection::vec(prop_oneof![
            Just("Failed password for ".to_owned()), Just(" from ".to_owned()), Just(" port ".to_owned()),
            Just(" : TTY=x ; USER=root ; COMMAND=".to_owned()), Just("\"GET / HTTP/1.1\" ".to_owned()),
            Just("[01/May/2024:09:59:58 +0000] ".to_owned()), Just("{\"client_id\":\"a\",\"acr\":".to_owned()),
            Just("}".to_owned()), "[0-9]{1,12}", "[ -~]{0,12}",
        ], 0..10),
    ) {
        let line = format!("{prefix}{}", body.concat());
        let src = source();
        let (kind, e) = edge_event(&line, NOW, &src);
        prop_assert!(fits(kind, &e));
        prop_assert!(e.message.is_some());
    }
}

/// A Windows event record sent as a JSON line is the event the tree reading makes of the same
/// document (`event_from_windows_json`, serde_json's tree), pseudonymised, with the syslog
/// header's host when the record names none; whatever rows the edge wrote before.
#[test]
fn windows_json_lines_are_the_tree_readings_events_pseudonymised() {
    let src = source();
    let records = [
        r##"{"Event":{"System":{"Provider":{"#attributes":{"Name":"Microsoft-Windows-Security-Auditing"}},"EventID":4688,"TimeCreated":{"#attributes":{"SystemTime":"2024-05-01T09:59:58.123Z"}},"Computer":"ws01.k0301.kommune.no","Channel":"Security"},"EventData":{"NewProcessName":"C:\\Windows\\System32\\cmd.exe","CommandLine":"cmd /c echo 31129956715","SubjectUserName":"kari"}}}"##,
        r##"{"Event":{"System":{"EventID":4625,"Channel":"Security"},"EventData":{"IpAddress":"10.0.0.7","TargetUserName":"admin"}}}"##,
        r##"{"Event":{"EventData":{"Data":[{"#attributes":{"Name":"a"},"#text":"1"}]},"System":{"EventID":1}}}"##,
    ];
    let (mut row, mut spare) = (Row::default(), Row::default());
    for (i, record) in records.iter().enumerate() {
        let line = format!("<14>1 2024-05-01T09:59:58Z ad01 nxlog - - - {record}");
        let t = NOW + i as i64;
        let kind = edge_row(&line, t, &src, &mut row, &mut spare);
        assert_eq!(kind, SourceKind::WindowsEvent, "{record}");
        let doc: serde_json::Value = serde_json::from_str(record).expect("valid JSON");
        let mut want =
            varde_core::windows::event_from_windows_json(&doc, t).expect("a Windows record");
        if want.host.is_none() {
            want.host = Some("ad01".into());
        }
        src.privacy().scrub_event(&mut want);
        assert_eq!(row.to_event(), want, "{record}");
        // The same record as a bare JSON line (a file of JSON lines): no header, no host from it.
        let kind = edge_row(&format!(" {record}\r"), t, &src, &mut row, &mut spare);
        assert_eq!(kind, SourceKind::WindowsEvent, "{record}");
        let mut want = varde_core::windows::event_from_windows_json(&doc, t).expect("a record");
        src.privacy().scrub_event(&mut want);
        assert_eq!(row.to_event(), want, "{record}");
    }
    let c = src.stats().snapshot();
    assert_eq!(c.events_of(SourceKind::WindowsEvent), 6);
    assert_eq!(c.national_ids, 2);
    assert_eq!(c.unparsed_lines, 0);
}
