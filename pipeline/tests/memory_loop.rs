//! The pipeline loop on the in-process bus and the embedded store (what `varde demo` runs):
//! good envelopes are stored, hostile messages beside them are rejected by reason, a replay
//! adds no visible event or alert, and Varde's rule pack raises exactly the alerts its rules say.

use std::time::Duration;

use tokio::sync::watch;
use varde_core::{BatchBuilder, CollectorId, Envelope, Event, Kommunenummer, SourceKind, Value};
use varde_pipeline::detect::{DetectionConfig, Detector};
use varde_pipeline::{LoopSettings, Stats, run};
use varde_store::EventStore;
use varde_store::embedded::EmbeddedStore;
use varde_testkit::enrol_test_collector;
use varde_transport::memory::MemoryBus;
use varde_transport::{Publisher, events_topic};

fn envelope_bytes(tenant: &str, seq: u64, rows: usize) -> Vec<u8> {
    let tenant = Kommunenummer::parse(tenant).expect("tenant");
    let collector = CollectorId::new(format!("k{tenant}-t")).expect("id");
    // sshd lines arrive as `auth` events from the collector's edge (the kind the pack's sshd
    // rule is routed to); the other rows here are `auth` too, told apart by `program`.
    let mut b = BatchBuilder::new(SourceKind::Auth, tenant, collector.clone(), rows);
    for i in 0..rows {
        // Every fifth line is a root login with a password: the pack's sshd rule fires on it.
        let (app, message) = if i % 5 == 0 {
            (
                "sshd",
                format!("Accepted password for root from 198.51.100.{i} port 4242 ssh2"),
            )
        } else {
            ("cron", format!("line {i}"))
        };
        b.push(&Event {
            event_time_us: i as i64,
            message: Some(message),
            typed: vec![("program", Value::Str(app.into()))],
            ..Event::default()
        })
        .expect("push");
    }
    Envelope::new(
        SourceKind::Auth,
        tenant,
        collector,
        seq,
        b.finish().expect("batch"),
    )
    .expect("envelope")
    .encode_signed(&varde_testkit::test_key(&format!("k{tenant}-t")))
    .expect("encode")
}

#[tokio::test]
async fn good_data_is_stored_and_hostile_messages_are_counted() {
    let bus = MemoryBus::new();
    let oslo = events_topic("varde.", Kommunenummer::parse("0301").expect("Oslo"));
    let bergen = events_topic("varde.", Kommunenummer::parse("4601").expect("Bergen"));
    let good = envelope_bytes("0301", 1, 10);
    bus.publish(&oslo, b"", &good).await.expect("publish");
    bus.publish(&oslo, b"", b"not an envelope at all")
        .await
        .expect("publish");
    bus.publish(&oslo, b"", &good[..good.len() / 2])
        .await
        .expect("publish");
    // A Bergen batch on Oslo's topic: a collector claiming another tenant.
    bus.publish(&oslo, b"", &envelope_bytes("4601", 2, 5))
        .await
        .expect("publish");
    bus.publish(&bergen, b"", &envelope_bytes("4601", 3, 7))
        .await
        .expect("publish");
    // The same Oslo batch again, as after a collector retry.
    bus.publish(&oslo, b"", &good).await.expect("publish");
    bus.close();

    let store = EmbeddedStore::new();
    enrol_test_collector(&store, "k0301-t", "0301").await;
    enrol_test_collector(&store, "k4601-t", "4601").await;
    let stats = Stats::default();
    let mut sub = bus.subscribe("g", &[oslo.clone(), bergen.clone()]);
    let (_stop, shutdown) = watch::channel(false);
    let settings = LoopSettings {
        max_messages: 2,
        poll_wait_ms: 10,
        ..LoopSettings::default()
    };
    let config = DetectionConfig {
        reload_interval_s: 0,
        ..DetectionConfig::default()
    };
    let (mut detector, report) = Detector::from_config(&config).expect("pack");
    // The two expand rules need placeholders this test does not configure.
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    tokio::time::timeout(
        Duration::from_secs(30),
        run(&mut sub, &store, &mut detector, settings, &stats, shutdown),
    )
    .await
    .expect("loop ends when the bus closes");

    assert_eq!(Stats::get(&stats.messages), 6);
    assert_eq!(
        store.len(),
        19,
        "10 Oslo + 7 Bergen events, the replay collapsed, and the two refused batches' security events"
    );
    // The cut envelope's header is whole: its signature, over the payload's hash, fails.
    assert_eq!(Stats::get(&stats.identity_refused), 2);
    let rejected = stats.rejected();
    assert_eq!(rejected.get("not_an_envelope"), Some(&1));
    assert_eq!(rejected.get("tenant_mismatch"), Some(&1));
    assert_eq!(rejected.values().sum::<u64>(), 3, "{rejected:?}");
    // Each refused message is parked with its reason and payload.
    let letters = store.dead_letters(10).await.expect("dead letters");
    let mut reasons: Vec<&str> = letters.iter().map(|l| l.reason.as_str()).collect();
    reasons.sort_unstable();
    // The half envelope is cut inside its payload, which its signature covers.
    assert_eq!(
        reasons,
        vec!["bad_signature", "not_an_envelope", "tenant_mismatch"]
    );
    let junk = letters
        .iter()
        .find(|l| l.reason == "not_an_envelope")
        .expect("junk parked");
    assert_eq!(junk.payload, b"not an envelope at all");
    assert_eq!(junk.payload_len, 22);
    assert_eq!(junk.topic, oslo);
    assert_eq!(Stats::get(&stats.dead_letters), 3);
    let counts = store.event_counts().await.expect("counts");
    assert_eq!(counts.iter().map(|c| c.events).sum::<u64>(), 19);

    // Rows 0 and 5 of the Oslo batch and of the Bergen batch; the replayed Oslo batch was
    // detected again (6 alerts written) into the same alert ids (4 visible). The Bergen batch
    // on Oslo's topic is a security event for Oslo, whose topic was written to.
    assert_eq!(Stats::get(&stats.alerts_written), 8);
    let alert_counts = store.alert_counts().await.expect("alert counts");
    let mut by_tenant: Vec<(&str, &str, u64)> = alert_counts
        .iter()
        .map(|c| (c.tenant.as_str(), c.rule_id.as_str(), c.alerts))
        .collect();
    by_tenant.sort_unstable();
    let root_rule = by_tenant
        .iter()
        .find(|(_, r, _)| *r != varde_pipeline::identity::RULE_ID)
        .map(|(_, r, _)| *r)
        .expect("the root login rule");
    let mut want = vec![
        ("0301", root_rule, 2),
        ("0301", varde_pipeline::identity::RULE_ID, 2),
        ("4601", root_rule, 2),
    ];
    want.sort_unstable();
    assert_eq!(by_tenant, want);
    let (security, alerts): (Vec<_>, Vec<_>) = all_alerts(&store)
        .await
        .into_iter()
        .partition(|a| a.rule_id == varde_pipeline::identity::RULE_ID);
    let mut seen: Vec<(&str, &str, Option<&str>, Option<&str>)> = security
        .iter()
        .map(|a| {
            (
                a.tenant.as_str(),
                a.host.as_str(),
                a.matched_field("reason"),
                a.matched_field("claimed.tenant"),
            )
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(
        seen,
        vec![
            ("0301", "k0301-t", Some("bad_signature"), Some("0301")),
            ("0301", "k4601-t", Some("tenant_mismatch"), Some("4601")),
        ]
    );
    assert_eq!(alerts.len(), 4);
    for a in &alerts {
        assert_eq!(a.rule_level, "high");
        assert!(
            a.matched
                .iter()
                .any(|(k, v)| k == "message" && v.starts_with("Accepted password for root")),
            "{:?}",
            a.matched
        );
    }

    // The rule catalog: every rule of Varde's pack with its YAML and author, and the two that
    // did not load with their reason (independent expectation: the pack's files themselves).
    let (at, catalog) = store.rules().await.expect("catalog");
    assert!(at.is_some());
    let loaded: Vec<&varde_store::RuleEntry> =
        catalog.iter().filter(|e| e.error.is_empty()).collect();
    let failed: Vec<&varde_store::RuleEntry> =
        catalog.iter().filter(|e| !e.error.is_empty()).collect();
    assert_eq!(loaded.len() + failed.len(), varde_rules::pack::PACK.len());
    assert_eq!(failed.len(), 2, "{failed:?}");
    let root = loaded
        .iter()
        .find(|e| e.source == "rules/sigma/lnx_sshd_root_password_login.yml")
        .expect("the root login rule");
    let file = varde_rules::pack::PACK
        .iter()
        .find(|(n, _)| *n == "lnx_sshd_root_password_login.yml")
        .map(|(_, t)| *t)
        .expect("in the pack");
    assert_eq!(root.text, file);
    assert!(
        file.contains(&format!("author: {}", root.author)),
        "{}",
        root.author
    );
    assert!(alerts.iter().all(|a| a.rule_id == root.rule_id));

    // Everything was committed: a new subscriber of the group sees nothing more.
    let mut again = bus.subscribe("g", &[oslo, bergen]);
    assert!(matches!(
        varde_transport::Subscriber::poll_batch(&mut again, 10, Duration::from_millis(10)).await,
        Err(varde_transport::Error::Closed)
    ));
}

/// Every alert in the store (at most 100).
async fn all_alerts(store: &EmbeddedStore) -> Vec<varde_store::Alert> {
    store
        .alerts(&varde_store::AlertQuery {
            tenant: None,
            limit: 100,
        })
        .await
        .expect("alerts")
}

/// Runs the loop with default settings until the bus is closed and drained; its counts.
async fn run_to_end(
    sub: &mut varde_transport::memory::MemorySubscriber,
    store: &EmbeddedStore,
    detector: &mut Detector,
) -> Stats {
    let stats = Stats::default();
    let (_stop, shutdown) = watch::channel(false);
    tokio::time::timeout(
        Duration::from_secs(30),
        run(
            sub,
            store,
            detector,
            LoopSettings::default(),
            &stats,
            shutdown,
        ),
    )
    .await
    .expect("loop ends when the bus closes");
    stats
}

#[tokio::test]
async fn a_rule_switched_off_in_the_store_raises_no_alerts_until_it_is_switched_on() {
    let store = EmbeddedStore::new();
    enrol_test_collector(&store, "k0301-t", "0301").await;
    let config = DetectionConfig {
        reload_interval_s: 0,
        ..DetectionConfig::default()
    };
    let (mut detector, _) = Detector::from_config(&config).expect("pack");
    let root = detector
        .catalog()
        .into_iter()
        .find(|e| e.source == "rules/sigma/lnx_sshd_root_password_login.yml")
        .expect("the root login rule")
        .rule_id;
    let switch = |n: u8, enabled: bool| varde_store::RuleSwitch {
        switch_id: [n; 16],
        at_us: i64::from(n),
        rule_id: root.clone(),
        enabled,
        actor: "kari".into(),
        reason: "test".into(),
    };
    let oslo = events_topic("varde.", Kommunenummer::parse("0301").expect("Oslo"));
    // One run of the loop over one batch of 10 lines (2 root logins), with the store as it is.
    let run_once = |seq: u64| {
        let bus = MemoryBus::new();
        let topic = oslo.clone();
        async move {
            bus.publish(&topic, b"", &envelope_bytes("0301", seq, 10))
                .await
                .expect("publish");
            bus.close();
            bus.subscribe("g", &[topic])
        }
    };

    store
        .write_rule_switches(&[switch(1, false)])
        .await
        .expect("switch off");
    let mut sub = run_once(1).await;
    let stats = run_to_end(&mut sub, &store, &mut detector).await;
    assert_eq!(store.len(), 10, "the events are stored all the same");
    assert_eq!(Stats::get(&stats.alerts_written), 0);
    assert_eq!(Stats::get(&stats.rules_disabled), 1);

    // Switched on again: the next batch raises the rule's alerts.
    store
        .write_rule_switches(&[switch(2, true)])
        .await
        .expect("switch on");
    let mut sub = run_once(2).await;
    let stats = run_to_end(&mut sub, &store, &mut detector).await;
    assert_eq!(Stats::get(&stats.rules_disabled), 0);
    assert_eq!(Stats::get(&stats.alerts_written), 2);
    let alerts = all_alerts(&store).await;
    assert!(alerts.iter().all(|a| a.rule_id == root), "{alerts:?}");
}

#[tokio::test]
async fn a_correlation_over_a_packs_rule_fires_once_per_window_as_an_alert() {
    // `generate: true` keeps the root logins' own alerts; false (the default) leaves only the
    // correlation's.
    for generate in [true, false] {
        correlation_over_root_logins(generate).await;
    }
}

async fn correlation_over_root_logins(generate: bool) {
    // The root login rule's id, from the pack's own file.
    let file = varde_rules::pack::PACK
        .iter()
        .find(|(n, _)| *n == "lnx_sshd_root_password_login.yml")
        .map(|(_, t)| *t)
        .expect("in the pack");
    let root_id = file
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .expect("an id")
        .trim();
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("burst.yml"),
        format!(
            "title: Three root logins within a minute\nid: 33333333-3333-3333-3333-333333333333\nlevel: critical\ncorrelation:\n  type: event_count\n  rules: [{root_id}]\n  group-by: [tenant]\n  timespan: 1m\n  condition:\n    gte: 3\n  generate: {generate}\n"
        ),
    )
    .expect("write");
    let config = DetectionConfig {
        reload_interval_s: 0,
        rules: vec![dir.path().to_owned()],
        ..DetectionConfig::default()
    };
    let (mut detector, report) = Detector::from_config(&config).expect("rules");
    assert_eq!(report.errors.len(), 2, "{:?}", report.errors);
    let catalog = detector.catalog();
    let entry = catalog
        .iter()
        .find(|e| e.rule_id == "33333333-3333-3333-3333-333333333333")
        .expect("the correlation in the catalog");
    assert_eq!(
        (entry.kind.as_str(), entry.error.as_str()),
        ("correlation", "")
    );

    // Two batches of ten lines, two root logins each (rows 0 and 5, event times in µs), the
    // first delivered twice (a collector's retry: the same events, not new hits): the third
    // root login completes the window, the fourth starts a new one.
    let bus = MemoryBus::new();
    let oslo = events_topic("varde.", Kommunenummer::parse("0301").expect("Oslo"));
    for seq in [1, 1, 2] {
        bus.publish(&oslo, b"", &envelope_bytes("0301", seq, 10))
            .await
            .expect("publish");
    }
    bus.close();
    let store = EmbeddedStore::new();
    enrol_test_collector(&store, "k0301-t", "0301").await;
    let mut sub = bus.subscribe("g", &[oslo]);
    run_to_end(&mut sub, &store, &mut detector).await;
    let alerts = all_alerts(&store).await;
    let correlated: Vec<_> = alerts
        .iter()
        .filter(|a| a.rule_id == "33333333-3333-3333-3333-333333333333")
        .collect();
    assert_eq!(correlated.len(), 1, "{alerts:#?}");
    let c = correlated[0];
    assert_eq!(c.rule_level, "critical");
    assert_eq!(c.tenant, "0301");
    assert!(
        c.matched
            .contains(&("correlation.hits".to_owned(), "3".to_owned())),
        "{:?}",
        c.matched
    );
    assert!(
        c.matched
            .contains(&("tenant".to_owned(), "0301".to_owned()))
    );
    // The four root logins are alerts of their own as well, with `generate: true` only.
    let own = alerts.iter().filter(|a| a.rule_id == root_id).count();
    assert_eq!(own, if generate { 4 } else { 0 }, "generate: {generate}");
}
