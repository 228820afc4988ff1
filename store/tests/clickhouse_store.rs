//! The ClickHouse store against the real server that `deploy/dev/services.sh up` starts
//! (ClickHouse 18.16 from Debian in CI), each test in its own database; and the embedded store
//! held to the same contract.

use varde_core::{
    AlertId, BatchBuilder, CollectorId, Envelope, Event, EventId, Kommunenummer, SourceKind, Value,
};
use varde_store::clickhouse::ClickHouseStore;
use varde_store::embedded::EmbeddedStore;
use varde_store::incident::{Change, Incident, IncidentChange, IncidentStatus, Severity, Tlp};
use varde_store::outbox::{Attempt, Channel, Notification, Outbox, Outcome, State};
use varde_store::reports::{ExportRecord, ReportLog, SubmittedReport};
use varde_store::{
    Alert, AlertQuery, DeadLetter, EventQuery, EventStore, GroupSeen, Resolution, RuleEntry,
    RuleSwitch, TriageAction, TriageKind, VolumeBy, VolumePoint,
};
use varde_testkit::TestEnv;

fn envelope(tenant: &str, collector: &str, seq: u64, n: usize) -> Envelope {
    let tenant = Kommunenummer::parse(tenant).expect("tenant");
    let collector = CollectorId::new(collector).expect("id");
    let mut b = BatchBuilder::new(SourceKind::WebAccess, tenant, collector.clone(), n);
    for i in 0..n {
        b.push(&Event {
            event_time_us: 1_714_557_600_000_000 + i as i64 * 1_500_000 + 7,
            receive_time_us: 1_714_557_601_000_000,
            host: Some(format!("web{}", i % 3)),
            severity: if i % 2 == 0 { Some(6) } else { None },
            message: Some(format!("GET /x/{i} HTTP/1.1")),
            typed: vec![
                ("status", Value::UInt(200 + (i % 5) as u64)),
                ("client_ip", Value::Str(format!("192.0.2.{}", i % 250))),
            ],
            attrs: vec![("x-forwarded-for".into(), "198.51.100.1".into())],
        })
        .expect("push");
    }
    Envelope::new(
        SourceKind::WebAccess,
        tenant,
        collector,
        seq,
        b.finish().expect("batch"),
    )
    .expect("envelope")
}

async fn contract<S: EventStore>(store: &S) {
    let a = envelope("0301", "k0301-web", 1, 100);
    let b = envelope("4601", "k4601-web", 1, 40);
    assert_eq!(
        store.write_envelopes(&[a.clone(), b]).await.expect("write"),
        140
    );
    // A replay of the same envelope (same collector and sequence) adds no visible event.
    store.write_envelopes(&[a]).await.expect("replay");

    let counts = store.event_counts().await.expect("counts");
    let got: Vec<(String, u64)> = counts
        .iter()
        .map(|c| (c.tenant.clone(), c.events))
        .collect();
    assert_eq!(got, vec![("0301".into(), 100), ("4601".into(), 40)]);

    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    let events = store
        .events(&EventQuery {
            tenant: Some(oslo),
            limit: 1000,
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 100, "no duplicate visible after the replay");
    let e = &events[3];
    assert_eq!(e.tenant, "0301");
    assert_eq!(e.event_time_us, 1_714_557_600_000_000 + 3 * 1_500_000 + 7);
    assert_eq!(e.source_kind, "web_access");
    assert_eq!(e.host, "web0");
    assert_eq!(e.severity, None);
    assert_eq!(e.message, "GET /x/3 HTTP/1.1");
    assert_eq!(e.event_id, EventId::derive("k0301-web", 1, 3).to_string());
    assert_eq!((e.batch_seq, e.batch_row), (1, 3));
    assert!(
        e.fields.contains(&("status".into(), "203".into())),
        "{:?}",
        e.fields
    );
    assert!(
        e.fields
            .contains(&("x-forwarded-for".into(), "198.51.100.1".into()))
    );

    let limited = store
        .events(&EventQuery {
            tenant: None,
            limit: 7,
        })
        .await
        .expect("events");
    assert_eq!(limited.len(), 7);

    // Collectors as their events show them: received at 1_714_557_601 s, events in the hour
    // before `now` counted once (the replay is not counted again).
    let now = 1_714_557_601_000_000 + 1_800_000_000;
    let seen: Vec<(String, String, i64, u64, Vec<String>)> = store
        .collectors(None, now)
        .await
        .expect("collectors")
        .into_iter()
        .map(|c| {
            (
                c.tenant,
                c.collector_id,
                c.last_receive_us,
                c.events_last_hour,
                c.kinds,
            )
        })
        .collect();
    let web = vec!["web_access".to_owned()];
    assert_eq!(
        seen,
        vec![
            (
                "0301".into(),
                "k0301-web".into(),
                1_714_557_601_000_000,
                100,
                web.clone()
            ),
            (
                "4601".into(),
                "k4601-web".into(),
                1_714_557_601_000_000,
                40,
                web.clone()
            ),
        ]
    );
    let bergen = Kommunenummer::parse("4601").expect("Bergen");
    assert_eq!(
        store
            .collectors(Some(bergen), now)
            .await
            .expect("collectors")
            .len(),
        1
    );
    // Two hours later: seen, but nothing in the last hour; nine days later: not seen.
    let later = store
        .collectors(Some(bergen), now + 7_200_000_000)
        .await
        .expect("collectors");
    assert_eq!(later[0].events_last_hour, 0);
    assert!(
        store
            .collectors(None, now + 9 * 86_400_000_000)
            .await
            .expect("collectors")
            .is_empty()
    );

    alerts_contract(store).await;
    lookups_and_triage_contract(store).await;
    incidents_contract(store).await;
    rules_contract(store).await;
    dead_letters_contract(store).await;
    collector_reports_contract(store).await;
}

/// A collector's reports on itself: the newest one in the last week is its status; reports are
/// not counted as its events or kinds.
async fn collector_reports_contract<S: EventStore>(store: &S) {
    use varde_core::status::CollectorStatus;
    let trondheim = Kommunenummer::parse("5001").expect("Trondheim");
    let collector = CollectorId::new("k5001-a").expect("id");
    let t0 = 1_714_557_600_000_000;
    let report = |at_us: i64, spool_events: u64| CollectorStatus {
        at_us,
        spool_bytes: spool_events * 100,
        spool_max_bytes: 1 << 30,
        spool_records: spool_events / 50,
        spool_events,
        oldest_unsent_s: 12,
        dropped_spool_full_events: 3,
        dropped_receive_buffer_datagrams: 4,
        dropped_capture_packets: 2,
        rejected_events: 0,
        journal_errors: 1,
        publish_errors: 9,
        version: "0.1.0".into(),
    };
    // Written newest first: the store picks by time, not by order.
    let (old, new) = (report(t0, 500), report(t0 + 60_000_000, 250));
    let mut b = BatchBuilder::new(SourceKind::GenericJson, trondheim, collector.clone(), 2);
    for r in [&new, &old] {
        b.push(&r.event()).expect("push");
    }
    let reports = Envelope::new(
        SourceKind::GenericJson,
        trondheim,
        collector.clone(),
        1,
        b.finish().expect("batch"),
    )
    .expect("envelope");
    let web = envelope("5001", "k5001-a", 2, 5);
    store.write_envelopes(&[reports, web]).await.expect("write");
    let seen = store
        .collectors(Some(trondheim), t0 + 1_800_000_000)
        .await
        .expect("collectors");
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].events_last_hour, 5);
    assert_eq!(seen[0].kinds, vec!["web_access".to_owned()]);
    assert_eq!(seen[0].status, Some(new));
    // Another municipality's collectors carry no report of Trondheim's.
    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    let others = store
        .collectors(Some(oslo), t0 + 1_800_000_000)
        .await
        .expect("collectors");
    assert!(others.iter().all(|c| c.status.is_none()), "{others:?}");
}

/// Incidents as append-only changes: every kind of change survives the round trip, a retried
/// write is read once, and a municipality sees only the incidents that concern it and only
/// their shared rows and its own links.
async fn incidents_contract<S: EventStore>(store: &S) {
    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    let bergen = Kommunenummer::parse("4601").expect("Bergen");
    let trondheim = Kommunenummer::parse("5001").expect("Trondheim");
    let at = 1_764_000_000_000_000;
    let c = |incident: u8, n: u8, change: Change| IncidentChange {
        change_id: [n; 16],
        incident_id: [incident; 16],
        at_us: at + i64::from(n) * 1_000_001,
        actor: "kari".into(),
        change,
    };
    let link = |key: u8, tenant: &str, component: &str| Change::LinkGroup {
        dedup_key: [key; 16],
        tenant: tenant.into(),
        component: component.into(),
        rule_title: format!("rule «{key}» 'quoted'"),
    };
    let first = vec![
        c(
            1,
            1,
            Change::Opened("Credential stuffing against ID-porten".into()),
        ),
        c(1, 2, link(7, "0301", "idporten")),
        c(1, 3, link(8, "4601", "")),
        c(1, 4, Change::Status(IncidentStatus::Containment)),
        c(1, 5, Change::Severity(Severity::High)),
        c(1, 6, Change::Tlp(Tlp::AmberStrict)),
        c(1, 7, Change::AwareAt(at - 3_600_000_000)),
        c(
            1,
            8,
            Change::Comment("Bergen's VPN; \\ 'quotes' \"and\" newlines\nkept".into()),
        ),
        c(1, 9, Change::Components(vec!["altinn".into()])),
        c(
            1,
            10,
            Change::Title("Credential stuffing, two municipalities".into()),
        ),
        // Trondheim named, then dropped again from the further municipalities.
        c(1, 11, Change::Municipalities(vec!["5001".into()])),
        c(1, 12, Change::Municipalities(vec![])),
        // A second incident, of Trondheim only by name.
        c(2, 13, Change::Opened("Phishing wave".into())),
        c(
            2,
            14,
            Change::Municipalities(vec!["5001".into(), "1103".into()]),
        ),
        c(2, 15, Change::Comment("CERT only".into())),
    ];
    assert_eq!(
        store.write_incident_changes(&first).await.expect("write"),
        15
    );
    // A retried write collapses.
    store
        .write_incident_changes(&first[..3])
        .await
        .expect("retry");

    let all = store.incident_changes(None, None).await.expect("read");
    assert_eq!(all, first, "every change, once, oldest first");
    let one = store
        .incident_changes(None, Some([2; 16]))
        .await
        .expect("read");
    assert_eq!(one, first[12..]);

    let fields = |rows: &[IncidentChange]| -> Vec<(u8, &'static str)> {
        rows.iter()
            .map(|r| (r.incident_id[0], r.change.field()))
            .collect()
    };
    // Oslo: incident 1 through its linked group; not Bergen's link, not the comment, not the
    // components or municipality lists; not incident 2.
    let seen = store
        .incident_changes(Some(oslo), None)
        .await
        .expect("read");
    assert_eq!(
        fields(&seen),
        [
            (1, "opened"),
            (1, "link_group"),
            (1, "status"),
            (1, "severity"),
            (1, "tlp"),
            (1, "aware_at"),
            (1, "title")
        ]
    );
    assert_eq!(seen[1], first[1]);
    let bergen_seen = store
        .incident_changes(Some(bergen), None)
        .await
        .expect("read");
    assert_eq!(bergen_seen[1], first[2]);
    assert_eq!(bergen_seen.len(), 7);
    // Trondheim: dropped from incident 1 by the latest list, named in incident 2.
    let trondheim_seen = store
        .incident_changes(Some(trondheim), None)
        .await
        .expect("read");
    assert_eq!(fields(&trondheim_seen), [(2, "opened")]);
    assert_eq!(
        store
            .incident_changes(Some(trondheim), Some([1; 16]))
            .await
            .expect("read"),
        vec![]
    );
    // The classification and root cause: kept, and shared with the municipality.
    let classified = [
        c(
            1,
            16,
            Change::Category("intrusion-attempts/brute-force".into()),
        ),
        c(1, 17, Change::RootCause("malicious-actions".into())),
        c(1, 18, Change::UsersAffected(Some(1200))),
    ];
    store
        .write_incident_changes(&classified)
        .await
        .expect("classify");
    for tenant in [None, Some(oslo)] {
        let rows = store
            .incident_changes(tenant, Some([1; 16]))
            .await
            .expect("read");
        let folded = Incident::fold(&rows);
        assert_eq!(
            folded[0].category, "intrusion-attempts/brute-force",
            "{tenant:?}"
        );
        assert_eq!(folded[0].root_cause, "malicious-actions", "{tenant:?}");
        assert_eq!(folded[0].users_affected, Some(1200), "{tenant:?}");
    }
}

/// The rule catalog: the newest load wins whole (a rule it lacks is gone), every field kept.
async fn rules_contract<S: EventStore>(store: &S) {
    assert_eq!(store.rules().await.expect("empty"), (None, vec![]));
    let rule = |source: &str, id: &str| RuleEntry {
        rule_id: id.into(),
        source: source.into(),
        title: format!("title of {id}"),
        level: "high".into(),
        status: "test".into(),
        tags: vec!["attack.t1078".into()],
        author: "Florian Roth (Nextron Systems), Kari 'Quote' Nordmann".into(),
        description: "multi\nline \\ text".into(),
        references: vec!["https://example.org/a?b=c".into()],
        falsepositives: vec!["Admins".into()],
        kind: "windows_event".into(),
        text: "title: x\ndetection:\n  sel:\n    a: '?'\n  condition: sel\n".into(),
        error: String::new(),
    };
    let broken = RuleEntry {
        source: "broken.yml".into(),
        error: "yaml: did not find expected key".into(),
        ..RuleEntry::default()
    };
    let first = vec![rule("a.yml", "id-a"), rule("b.yml", "id-b"), broken];
    let t1 = 1_764_000_000_123_456;
    assert_eq!(store.write_rules(t1, &first).await.expect("write"), 3);
    let (at, read) = store.rules().await.expect("read");
    assert_eq!(at, Some(t1));
    let mut expected = first.clone();
    expected.sort_by(|a, b| a.source.cmp(&b.source));
    assert_eq!(read, expected);
    // A reload without b.yml: b is gone from the catalog.
    let t2 = t1 + 60_000_000;
    store
        .write_rules(t2, &[rule("a.yml", "id-a")])
        .await
        .expect("write");
    assert_eq!(
        store.rules().await.expect("read"),
        (Some(t2), vec![rule("a.yml", "id-a")])
    );
    assert_eq!(
        store.rule("id-a").await.expect("one"),
        Some(rule("a.yml", "id-a"))
    );
    // Gone with the newer load, and never a load error by its empty id.
    assert_eq!(store.rule("id-b").await.expect("one"), None);
    assert_eq!(store.rule("").await.expect("one"), None);

    // Switches: append-only, read back oldest first with every field, a retried write once;
    // the newest switch of a rule is its state, whatever order they were written in.
    assert!(store.rule_switches().await.expect("none").is_empty());
    let switch = |n: u8, rule: &str, enabled: bool| RuleSwitch {
        switch_id: [n; 16],
        at_us: t1 + i64::from(n) * 1_000_001,
        rule_id: rule.into(),
        enabled,
        actor: "kari".into(),
        reason: format!("noisy in '{rule}' \\ \"quoted\""),
    };
    let history = vec![
        switch(1, "id-a", false),
        switch(2, "id-b", false),
        switch(3, "id-a", true),
        switch(4, "id-c", false),
        switch(5, "id-c", false),
    ];
    let mut shuffled = history.clone();
    shuffled.reverse();
    shuffled.push(history[0].clone());
    assert_eq!(
        store.write_rule_switches(&shuffled).await.expect("write"),
        6
    );
    let read = store.rule_switches().await.expect("read");
    assert_eq!(read, history);
    assert_eq!(
        varde_store::disabled_rules(&read)
            .into_iter()
            .collect::<Vec<_>>(),
        vec!["id-b".to_owned(), "id-c".to_owned()]
    );
}

async fn dead_letters_contract<S: EventStore>(store: &S) {
    // Arbitrary bytes, as a hostile producer would send them.
    let payload: Vec<u8> = (0..=255u8).chain([0, 0xff, b'?', b'\'']).collect();
    let letter = |offset: i64| DeadLetter {
        topic: "varde.events.0301".into(),
        partition: 2,
        offset,
        reason: "not_an_envelope".into(),
        error: "bad magic 0x00010203".into(),
        received_time_us: 1_714_557_600_000_000,
        payload_len: 5_000_000,
        payload: payload.clone(),
    };
    let letters = vec![letter(10), letter(11)];
    assert_eq!(store.write_dead_letters(&letters).await.expect("park"), 2);
    // Refused again after a replay: still one row per offset.
    store
        .write_dead_letters(&letters[..1])
        .await
        .expect("park again");
    let read = store.dead_letters(100).await.expect("read");
    assert_eq!(read, letters);
}

fn alert(tenant: &str, rule: &str, row: u32, detect_time_us: i64) -> Alert {
    let event_id = EventId::derive("k0301-web", 1, row);
    Alert {
        alert_id: AlertId::derive(rule, event_id),
        dedup_key: [row as u8 % 2; 16],
        tenant: tenant.into(),
        component: if row.is_multiple_of(2) {
            "idporten".into()
        } else {
            String::new()
        },
        rule_id: rule.into(),
        rule_title: format!("title of {rule}"),
        rule_level: "high".into(),
        rule_tags: vec!["attack.t1190".into(), "attack.initial-access".into()],
        event_id,
        event_time_us: 1_714_557_600_000_000 + i64::from(row) * 1_500_000 + 7,
        detect_time_us,
        source_kind: "web_access".into(),
        host: format!("web{}", row % 3),
        matched: vec![
            ("c-uri".into(), format!("/../x/{row}")),
            ("c-uri".into(), "second value".into()),
        ],
    }
}

async fn alerts_contract<S: EventStore>(store: &S) {
    let first: Vec<Alert> = (0..10)
        .map(|r| alert("0301", "rule-a", r, 1_714_557_700_000_000))
        .chain((0..3).map(|r| alert("4601", "rule-b", r, 1_714_557_700_000_000)))
        .collect();
    assert_eq!(store.write_alerts(&first).await.expect("write"), 13);
    // A replay re-detects the same alerts later: same ids, nothing new visible.
    let replay: Vec<Alert> = (0..10)
        .map(|r| alert("0301", "rule-a", r, 1_714_557_800_000_000))
        .collect();
    store.write_alerts(&replay).await.expect("replay");
    assert_eq!(store.write_alerts(&[]).await.expect("nothing"), 0);

    let counts: Vec<(String, String, u64)> = store
        .alert_counts()
        .await
        .expect("counts")
        .into_iter()
        .map(|c| (c.tenant, c.rule_id, c.alerts))
        .collect();
    assert_eq!(
        counts,
        vec![
            ("0301".into(), "rule-a".into(), 10),
            ("4601".into(), "rule-b".into(), 3)
        ]
    );
    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    // Detected at 700 (Bergen's three, Oslo's ten first) and again at 800 (Oslo's replay):
    // counted once each, by the later second only when the later second is after `since`.
    let bergen = Kommunenummer::parse("4601").expect("Bergen");
    for (tenant, since, expected) in [
        (None, 1_714_557_699_999_999, 13),
        (None, 1_714_557_700_000_000, 10),
        (None, 1_714_557_700_999_999, 10),
        (Some(oslo), 1_714_557_799_000_000, 10),
        (Some(bergen), 1_714_557_700_000_000, 0),
        (Some(bergen), 1_714_557_600_000_000, 3),
        (None, 1_714_557_800_000_000, 0),
    ] {
        assert_eq!(
            store
                .alerts_detected_after(tenant, since)
                .await
                .expect("count"),
            expected,
            "{tenant:?} after {since}"
        );
    }
    // By detection time, for the notifier: a replayed alert counts at its newest detection.
    let detected = |from: i64, to: i64, limit: u64| async move {
        store
            .alerts_detected(from, to, limit)
            .await
            .expect("detected")
            .iter()
            .map(|a| a.tenant.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        detected(1_714_557_700_000_000, 1_714_557_701_000_000, 100).await,
        vec!["4601"; 3]
    );
    assert_eq!(
        detected(1_714_557_700_000_000, 1_714_557_900_000_000, 100).await,
        [vec!["4601"; 3], vec!["0301"; 10]].concat()
    );
    assert_eq!(
        detected(1_714_557_800_000_000, 1_714_557_900_000_000, 4)
            .await
            .len(),
        4
    );
    assert!(
        detected(1_714_557_801_000_000, 1_714_557_900_000_000, 100)
            .await
            .is_empty()
    );
    // One group's alerts, newest first: Oslo's key-0 group is its even rows.
    let group: Vec<u32> = store
        .group_alerts(Some(oslo), [0; 16], 3)
        .await
        .expect("group")
        .iter()
        .map(|a| ((a.event_time_us - 1_714_557_600_000_007) / 1_500_000) as u32)
        .collect();
    assert_eq!(group, [8, 6, 4]);
    assert!(
        store
            .group_alerts(Some(bergen), [1; 16], 10)
            .await
            .expect("group")
            .iter()
            .all(|a| a.tenant == "4601" && a.dedup_key == [1; 16])
    );
    // Where a rule fired: rule-a in Oslo only (10), rule-b in Bergen (3); from row 7 on, 3.
    assert_eq!(
        store.rule_spread("rule-a", 0).await.expect("spread"),
        vec![("0301".to_owned(), 10)]
    );
    assert_eq!(
        store
            .rule_spread("rule-a", 1_714_557_610_000_000)
            .await
            .expect("spread"),
        vec![("0301".to_owned(), 3)]
    );
    assert_eq!(
        store.rule_spread("nothing", 0).await.expect("spread"),
        vec![]
    );
    // Where ID-porten's alerts came from (even rows): Oslo 5, Bergen 2; Bergen's own only.
    assert_eq!(
        store
            .component_spread(None, "idporten", 0)
            .await
            .expect("spread"),
        vec![("0301".to_owned(), 5), ("4601".to_owned(), 2)]
    );
    assert_eq!(
        store
            .component_spread(Some(bergen), "idporten", 0)
            .await
            .expect("spread"),
        vec![("4601".to_owned(), 2)]
    );
    // Volume per 10 s of event time (rows 1.5 s apart from a whole ten seconds): rows 0–6 in
    // the first bucket, 7–9 in the second; ID-porten's are the even rows.
    let at = |s: i64| 1_714_557_600_000_000 + s * 1_000_000;
    let point = |s: i64, key: &str, alerts: u64| VolumePoint {
        bucket_us: at(s),
        key: key.into(),
        alerts,
    };
    let (from, to) = (at(0), at(60));
    assert_eq!(
        store
            .alert_volume(None, VolumeBy::Tenant, from, to, 10)
            .await
            .expect("volume"),
        vec![
            point(0, "0301", 7),
            point(0, "4601", 3),
            point(10, "0301", 3)
        ]
    );
    assert_eq!(
        store
            .alert_volume(None, VolumeBy::Component, from, to, 10)
            .await
            .expect("volume"),
        vec![
            point(0, "", 4),
            point(0, "idporten", 6),
            point(10, "", 2),
            point(10, "idporten", 1)
        ]
    );
    assert_eq!(
        store
            .alert_volume(Some(bergen), VolumeBy::Component, from, at(5), 10)
            .await
            .expect("volume"),
        vec![point(0, "", 1), point(0, "idporten", 2)]
    );
    let read = store
        .alerts(&AlertQuery {
            tenant: Some(oslo),
            limit: 100,
        })
        .await
        .expect("alerts");
    assert_eq!(read.len(), 10, "no duplicate visible after the replay");
    let mut expected = alert("0301", "rule-a", 4, 0);
    expected.detect_time_us = read[4].detect_time_us;
    assert_eq!(read[4], expected, "every field survives the round trip");
    assert!(
        [1_714_557_700_000_000, 1_714_557_800_000_000].contains(&read[4].detect_time_us),
        "{}",
        read[4].detect_time_us
    );
    let all = store
        .alerts(&AlertQuery {
            tenant: None,
            limit: 5,
        })
        .await
        .expect("alerts");
    assert_eq!(all.len(), 5);
    // The newest first, for the dashboard's queue: the same alerts as the oldest-first read,
    // reversed, when the limit takes them all; the newest ones when it does not.
    let recent = store
        .recent_alerts(&AlertQuery {
            tenant: Some(oslo),
            limit: 100,
        })
        .await
        .expect("recent alerts");
    let reversed: Vec<_> = read.iter().rev().map(|a| a.alert_id).collect();
    assert_eq!(
        recent.iter().map(|a| a.alert_id).collect::<Vec<_>>(),
        reversed
    );
    let newest3 = store
        .recent_alerts(&AlertQuery {
            tenant: Some(oslo),
            limit: 3,
        })
        .await
        .expect("recent alerts");
    assert_eq!(
        newest3.iter().map(|a| a.alert_id).collect::<Vec<_>>(),
        reversed[..3].to_vec()
    );
    assert!(
        newest3
            .windows(2)
            .all(|w| w[0].event_time_us >= w[1].event_time_us)
    );
}

/// Reads by id and the triage history: the tenant given is the query's condition, so another
/// municipality's id reads as nothing.
async fn lookups_and_triage_contract<S: EventStore>(store: &S) {
    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    let trondheim = Kommunenummer::parse("5001").expect("Trondheim");
    let a = alert("0301", "rule-a", 4, 0);
    let found = store.alert(Some(oslo), a.alert_id).await.expect("alert");
    assert_eq!(found.map(|f| f.rule_title), Some(a.rule_title.clone()));
    assert!(
        store
            .alert(None, a.alert_id)
            .await
            .expect("alert")
            .is_some()
    );
    assert_eq!(
        store
            .alert(Some(trondheim), a.alert_id)
            .await
            .expect("alert"),
        None
    );
    assert_eq!(
        store.alert(None, AlertId([9; 16])).await.expect("alert"),
        None
    );

    let event_id = EventId::derive("k0301-web", 1, 4);
    let event = store.event(Some(oslo), event_id).await.expect("event");
    assert_eq!(event.map(|e| e.event_id), Some(event_id.to_string()));
    assert_eq!(
        store.event(Some(trondheim), event_id).await.expect("event"),
        None
    );
    assert!(
        store
            .event(None, EventId([9; 16]))
            .await
            .expect("event")
            .is_none()
    );

    // Detection last added to Oslo's groups in the replay (800), to Gjøvik's in the first write.
    let seen = |key: u8, tenant: &str, last: i64| GroupSeen {
        dedup_key: [key; 16],
        tenant: tenant.into(),
        last_detect_us: last,
        // Even rows (key 0) are ID-porten's; titles are the rule's.
        component: if key == 0 {
            "idporten".into()
        } else {
            String::new()
        },
        rule_title: if tenant == "0301" {
            "title of rule-a"
        } else {
            "title of rule-b"
        }
        .into(),
        rule_level: "high".into(),
    };
    let both = store
        .groups(None, &[[0; 16], [7; 16]])
        .await
        .expect("groups");
    assert_eq!(
        both,
        vec![
            seen(0, "0301", 1_714_557_800_000_000),
            seen(0, "4601", 1_714_557_700_000_000)
        ]
    );
    let own = store
        .groups(Some(oslo), &[[0; 16], [1; 16]])
        .await
        .expect("groups");
    assert_eq!(
        own,
        vec![
            seen(0, "0301", 1_714_557_800_000_000),
            seen(1, "0301", 1_714_557_800_000_000)
        ]
    );
    assert_eq!(store.groups(None, &[]).await.expect("groups"), vec![]);

    let action = |n: u8, kind: TriageKind, tenant: &str| TriageAction {
        action_id: [n; 16],
        at_us: 1_764_000_000_000_000 + i64::from(n) * 1_000_001,
        tenant: tenant.into(),
        dedup_key: [0; 16],
        kind,
        actor: "kari".into(),
        assignee: if kind == TriageKind::Assign {
            "ola".into()
        } else {
            String::new()
        },
        resolution: (kind == TriageKind::Resolve).then_some(Resolution::FalsePositive),
        reason: format!("reason '{n}' with \"quotes\""),
        until_us: if kind == TriageKind::Suppress {
            1_764_086_400_000_000
        } else {
            0
        },
        before: "new".into(),
    };
    let history = vec![
        action(1, TriageKind::Acknowledge, "0301"),
        action(2, TriageKind::Assign, "0301"),
        action(3, TriageKind::Resolve, "0301"),
        action(4, TriageKind::Suppress, "4601"),
    ];
    // Written in another order, and one of them twice (a retried write): read back once each,
    // oldest first, every field intact.
    let mut shuffled = history.clone();
    shuffled.reverse();
    shuffled.push(history[1].clone());
    assert_eq!(store.write_triage(&shuffled).await.expect("triage"), 5);
    assert_eq!(store.triage(None, &[[0; 16]]).await.expect("read"), history);
    assert_eq!(
        store
            .triage(Some(oslo), &[[0; 16], [1; 16]])
            .await
            .expect("read"),
        history[..3].to_vec()
    );
    assert!(
        store
            .triage(None, &[[1; 16]])
            .await
            .expect("read")
            .is_empty()
    );
    assert!(store.triage(None, &[]).await.expect("read").is_empty());
    // The audit log: every group's actions, newest first, at most `limit`.
    let newest: Vec<TriageAction> = history.iter().rev().cloned().collect();
    assert_eq!(store.triage_log(10).await.expect("log"), newest);
    assert_eq!(
        store.triage_log(2).await.expect("log"),
        newest[..2].to_vec()
    );
}

#[tokio::test]
async fn clickhouse_store_keeps_the_contract() {
    let env = TestEnv::new("clickhouse_store");
    let store = env.store().await;
    let version = store.ping().await.expect("ping");
    eprintln!("ClickHouse {version}");
    // Migrations are idempotent: a second run applies nothing.
    assert!(store.migrate().await.expect("migrate again").is_empty());
    contract(&store).await;
    outbox_contract(&store).await;
    report_log_contract(&store).await;
    env.cleanup().await;
}

/// The same contract on the local cluster (`deploy/dev/cluster.sh`: 2 shards x 2 replicas),
/// through the distributed tables: replays still collapse (every copy of a row on one shard),
/// the `GLOBAL IN` of the incident queries, and both shards hold rows.
#[tokio::test]
async fn clickhouse_store_on_a_cluster_keeps_the_contract() {
    let env = TestEnv::new("cluster_store");
    let store = ClickHouseStore::new(&env.cluster_clickhouse(0)).expect("store");
    let applied = store
        .migrate()
        .await
        .expect("migrations apply on the cluster");
    assert!(!applied.is_empty());
    // Another node sees them applied (the migrations table is replicated to every node).
    let other = ClickHouseStore::new(&env.cluster_clickhouse(3)).expect("store");
    assert!(other.migrate().await.expect("migrate again").is_empty());
    contract(&store).await;
    outbox_contract(&store).await;
    report_log_contract(&store).await;
    // The events are spread over both shards, and a replica of each shard has them.
    let per_node = |node: u16| {
        let s = ClickHouseStore::new(&env.cluster_clickhouse(node)).expect("store");
        async move {
            s.execute("SYSTEM SYNC REPLICA {db}.events_local")
                .await
                .expect("sync replica");
            s.select_strings("SELECT toString(count()) FROM {db}.events_local")
                .await
                .expect("count")[0]
                .parse::<u64>()
                .expect("number")
        }
    };
    let (s1r1, s1r2, s2r1, s2r2) = (
        per_node(0).await,
        per_node(1).await,
        per_node(2).await,
        per_node(3).await,
    );
    assert!(
        s1r1 > 0 && s2r1 > 0,
        "both shards hold events: {s1r1} and {s2r1}"
    );
    assert_eq!((s1r1, s2r1), (s1r2, s2r2), "replicas of a shard agree");
    store.drop_database().await.expect("drop on the cluster");
}

#[tokio::test]
async fn embedded_store_keeps_the_contract() {
    let store = EmbeddedStore::new();
    contract(&store).await;
    outbox_contract(&store).await;
    report_log_contract(&store).await;
}

/// Submitted reports and exports: kept as written (a retried write once), reports oldest
/// first and by incident, exports newest first.
async fn report_log_contract<S: ReportLog>(store: &S) {
    let t0 = 1_796_119_200_000_000_i64;
    let report = |n: u8, incident: u8, stage: &str, version: u32| SubmittedReport {
        report_id: [n; 16],
        incident_id: [incident; 16],
        stage: stage.into(),
        version,
        at_us: t0 + i64::from(n) * 1_000_001,
        actor: "kari".into(),
        tlp: Tlp::AmberStrict,
        summary: "Spray against 'ID-porten' \\ \"quoted\"\nsecond line".into(),
        impact: "3 municipalities".into(),
        mitigation: "blocked at the edge".into(),
        cross_border: "none known".into(),
        stix: "{\"type\": \"bundle\"}".into(),
    };
    let written = vec![
        report(1, 7, "early-warning", 1),
        report(2, 7, "notification", 1),
        report(3, 8, "early-warning", 1),
        report(4, 7, "notification", 2),
    ];
    store.write_reports(&written).await.expect("reports");
    store.write_reports(&written[..1]).await.expect("retry");
    assert_eq!(store.reports(None).await.expect("all"), written);
    let seven = store.reports(Some([7; 16])).await.expect("one incident");
    assert_eq!(seven.len(), 3);
    assert_eq!(seven[2].version, 2);
    let export = |n: u8| ExportRecord {
        export_id: [n; 16],
        at_us: t0 + i64::from(n) * 1_000_001,
        actor: if n == 2 { "oslo".into() } else { "kari".into() },
        tenant: if n == 2 { "0301".into() } else { String::new() },
        incident_id: [7; 16],
        stage: "notification".into(),
        format: "stix".into(),
    };
    store
        .write_exports(&[export(1), export(2), export(3)])
        .await
        .expect("exports");
    let newest = store.exports(2).await.expect("exports");
    assert_eq!(newest, vec![export(3), export(2)]);
}

/// The outbox: a notification queued twice is one row, kept as first written; its tries come
/// back in order; the newest try decides its state; `since` and `limit` bound the read.
async fn outbox_contract<S: Outbox>(store: &S) {
    let t0 = 1_796_119_200_000_000_i64;
    let note = |n: u8, subject: &str| Notification {
        notification_id: [n; 16],
        created_us: t0 + i64::from(n) * 1_000_001,
        contact: "Oslo IT-vakt".into(),
        tenant: "0301".into(),
        channel: if n.is_multiple_of(2) {
            Channel::Email
        } else {
            Channel::Webhook
        },
        target: "it-vakt@oslo.example".into(),
        kind: "digest".into(),
        tlp: "TLP:AMBER".into(),
        subject: subject.into(),
        text: "æøå 'quoted' \\ \"x\"\n2 alerts".into(),
        html: "<p>2 alerts</p>".into(),
        payload: String::new(),
    };
    assert!(store.outbox(0, 100).await.expect("empty").is_empty());
    let first = vec![note(1, "one"), note(2, "two"), note(3, "three")];
    store.write_notifications(&first).await.expect("queue");
    // Queued again after a restart: the same id, the same row.
    store
        .write_notifications(&[note(2, "two")])
        .await
        .expect("queue again");
    assert_eq!(
        store
            .queued_ids(&[[2; 16], [9; 16], [3; 16]])
            .await
            .expect("ids")
            .len(),
        2
    );
    let attempt = |n: u8, attempt: u32, outcome: Outcome| Attempt {
        notification_id: [n; 16],
        attempt,
        at_us: t0 + 60_000_000 + i64::from(attempt) * 1_000_003,
        outcome,
        error: if outcome == Outcome::Sent {
            String::new()
        } else {
            "451 4.3.0 try again later".into()
        },
        next_us: t0 + 120_000_000,
    };
    store
        .write_attempts(&[
            attempt(1, 1, Outcome::Retry),
            attempt(1, 2, Outcome::Sent),
            attempt(3, 1, Outcome::Failed),
            // A retried write of the same try.
            attempt(1, 1, Outcome::Retry),
        ])
        .await
        .expect("tries");
    let read = store.outbox(0, 100).await.expect("read");
    let ids: Vec<u8> = read
        .iter()
        .map(|e| e.notification.notification_id[0])
        .collect();
    assert_eq!(ids, vec![3, 2, 1], "newest first");
    assert_eq!(read[2].notification, first[0]);
    assert_eq!(
        read[2].attempts,
        vec![attempt(1, 1, Outcome::Retry), attempt(1, 2, Outcome::Sent)]
    );
    assert_eq!(
        read[2].state(),
        State::Sent {
            at_us: attempt(1, 2, Outcome::Sent).at_us
        }
    );
    assert_eq!(
        read[1].state(),
        State::Queued {
            due_us: first[1].created_us,
            tries: 0
        }
    );
    assert_eq!(
        read[0].state(),
        State::Failed {
            at_us: attempt(3, 1, Outcome::Failed).at_us
        }
    );
    // Bounded by time and count.
    let since = store.outbox(first[1].created_us, 100).await.expect("since");
    assert_eq!(since.len(), 2);
    assert_eq!(store.outbox(0, 1).await.expect("limit").len(), 1);
}

#[tokio::test]
async fn bad_database_names_are_refused() {
    let settings =
        varde_store::clickhouse::ClickHouseSettings::new("http://127.0.0.1:1", "x; DROP");
    assert!(varde_store::clickhouse::ClickHouseStore::new(&settings).is_err());
}
