//! Detection through DataFusion: the `sigma_match` function gives exactly the engine's matches
//! (also from a SQL hunt), alerts are deterministic, components are found, bad calls get clear
//! errors, and a changed rule file is picked up between batches.

use std::collections::BTreeSet;
use std::time::Duration;

use varde_core::{
    BatchBuilder, CollectorId, ComponentRegistry, Envelope, Event, Kommunenummer, SourceKind,
    Value, schema,
};
use varde_pipeline::detect::{DetectionConfig, Detector, component_columns};
use varde_rules::datafusion::rule_key;

fn envelope(kind: SourceKind, events: &[Event], seq: u64) -> Envelope {
    let tenant = Kommunenummer::parse("0301").expect("tenant");
    let collector = CollectorId::new("k0301-detect").expect("id");
    let mut b = BatchBuilder::new(kind, tenant, collector.clone(), events.len());
    for e in events {
        b.push(e).expect("push");
    }
    Envelope::new(kind, tenant, collector, seq, b.finish().expect("batch")).expect("envelope")
}

fn windows_detector() -> Detector {
    let (builder, _) = varde_testkit::sigma::windows_rules_with_vocabulary();
    Detector::new(
        builder.build().expect("rule set"),
        ComponentRegistry::builtin(),
    )
}

#[tokio::test]
async fn alerts_are_exactly_the_engines_matches() {
    let (builder, vocab) = varde_testkit::sigma::windows_rules_with_vocabulary();
    let detector = Detector::new(
        builder.build().expect("rule set"),
        ComponentRegistry::builtin(),
    );
    let rules = detector.rules();
    let events = varde_testkit::sigma::windows_events(&vocab, 1500);
    let env = envelope(SourceKind::WindowsEvent, &events, 1);

    let expected: BTreeSet<(u32, String)> = rules
        .match_batch(SourceKind::WindowsEvent, &env.batch)
        .expect("match")
        .into_iter()
        .map(|m| (m.row, rule_key(&rules.rules()[m.rule as usize])))
        .collect();
    assert!(!expected.is_empty(), "the generated events must fire rules");

    let alerts = detector.detect(&env, 42).await.expect("detect");
    let got: BTreeSet<(u32, String)> = alerts
        .iter()
        .map(|a| {
            let row = (0..1500u32)
                .find(|&r| varde_core::EventId::derive("k0301-detect", 1, r) == a.event_id)
                .expect("alert names an event of the batch");
            (row, a.rule_id.clone())
        })
        .collect();
    assert_eq!(got.len(), alerts.len(), "one alert per (rule, event)");
    assert_eq!(got, expected);

    // Detecting the same batch again (a replay) gives the same ids and keys.
    let again = detector.detect(&env, 43).await.expect("detect");
    let ids = |v: &[varde_store::Alert]| {
        v.iter()
            .map(|a| (a.alert_id, a.dedup_key))
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(&alerts), ids(&again));
    eprintln!(
        "{} rules, {} alerts on 1500 events",
        rules.rules().len(),
        alerts.len()
    );
}

#[tokio::test]
async fn a_sql_hunt_uses_the_same_matcher() {
    let detector = windows_detector();
    let (_, vocab) = varde_testkit::sigma::windows_rules_with_vocabulary();
    let events = varde_testkit::sigma::windows_events(&vocab, 400);
    let env = envelope(SourceKind::WindowsEvent, &events, 7);
    let expected = detector
        .rules()
        .match_batch(SourceKind::WindowsEvent, &env.batch)
        .expect("match")
        .iter()
        .filter(|m| detector.rules().rules()[m.rule as usize].meta.id == "hand-1")
        .count();
    assert!(expected > 0);

    let ctx = detector.session();
    ctx.register_batch("events", env.batch.clone())
        .expect("register");
    let columns: Vec<String> = schema::schema(SourceKind::WindowsEvent)
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    // Columns in another order than the schema's: they are found by name.
    let mut shuffled = columns.clone();
    shuffled.reverse();
    let sql = format!(
        "SELECT count(*) AS n FROM events WHERE array_has(sigma_match('windows_event', {}), 'hand-1')",
        shuffled.join(", ")
    );
    let out = ctx
        .sql(&sql)
        .await
        .expect("plan")
        .collect()
        .await
        .expect("run");
    let n = out[0]
        .column(0)
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .expect("count")
        .value(0);
    assert_eq!(n as usize, expected);

    // A required column left out, or a kind that does not exist: errors that say what.
    let err = ctx
        .sql("SELECT sigma_match('windows_event', message) FROM events")
        .await
        .expect("plan")
        .collect()
        .await
        .expect_err("event_time is required")
        .to_string();
    assert!(err.contains("need the column(s) event_time"), "{err}");
    let err = ctx
        .sql("SELECT sigma_match('no_such_kind', message) FROM events")
        .await
        .expect("plan")
        .collect()
        .await
        .expect_err("unknown kind")
        .to_string();
    assert!(err.contains("sigma_match"), "{err}");
}

#[tokio::test]
async fn alerts_carry_the_component_and_the_matched_fields() {
    let mut builder = varde_rules::RuleSetBuilder::new(Default::default()).expect("mappings");
    varde_rules::pack::add_pack(&mut builder);
    let detector = Detector::new(builder.build().expect("pack"), ComponentRegistry::builtin());
    let web = |vhost: &str, path: &str| Event {
        event_time_us: 1_714_557_600_000_000,
        host: Some("web01.k0301.kommune.no".into()),
        typed: vec![
            ("vhost", Value::Str(vhost.into())),
            ("url_path", Value::Str(path.into())),
            ("method", Value::Str("GET".into())),
            ("status", Value::UInt(404)),
        ],
        ..Event::default()
    };
    let env = envelope(
        SourceKind::WebAccess,
        &[
            web("innsyn.idporten.no", "/../../etc/passwd"),
            web("www.oslo.kommune.no", "/../../etc/passwd"),
            web("www.oslo.kommune.no", "/innsyn"),
        ],
        3,
    );
    let alerts = detector.detect(&env, 1).await.expect("detect");
    let traversal: Vec<_> = alerts
        .iter()
        .filter(|a| a.rule_title.to_lowercase().contains("traversal"))
        .collect();
    assert_eq!(traversal.len(), 2, "{alerts:#?}");
    assert_eq!(traversal[0].component, "idporten");
    assert_eq!(traversal[1].component, "");
    assert_ne!(traversal[0].dedup_key, traversal[1].dedup_key);
    for a in &traversal {
        assert!(
            a.matched.iter().any(|(_, v)| v == "/../../etc/passwd"),
            "{:?}",
            a.matched
        );
        assert_eq!(a.tenant, "0301");
        assert_eq!(a.source_kind, "web_access");
    }
}

#[test]
fn component_columns_exist_in_their_schemas() {
    for kind in SourceKind::ALL {
        let s = schema::schema(kind);
        for c in component_columns(kind) {
            assert!(s.field_with_name(c).is_ok(), "{kind}: {c}");
        }
    }
}

#[tokio::test]
async fn a_changed_rule_file_is_picked_up_between_batches() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rule = |needle: &str| {
        format!(
            "title: planted\nid: planted-1\nlogsource: {{product: linux}}\ndetection:\n    s:\n        message|contains: '{needle}'\n    condition: s\nlevel: low\n"
        )
    };
    std::fs::write(dir.path().join("planted.yml"), rule("first-needle")).expect("write");
    let config = DetectionConfig {
        builtin_pack: false,
        rules: vec![dir.path().to_owned()],
        reload_interval_s: 1,
        ..DetectionConfig::default()
    };
    let (mut detector, report) = Detector::from_config(&config).expect("load");
    assert_eq!(report.loaded, 1);
    let line = |m: &str| Event {
        message: Some(m.into()),
        ..Event::default()
    };
    let env = envelope(
        SourceKind::Syslog,
        &[line("a first-needle here"), line("a second-needle here")],
        1,
    );
    let before = detector.detect(&env, 1).await.expect("detect");
    assert_eq!(before.len(), 1);

    // A broken file beside it is reported and does not stop the good rule from loading.
    std::fs::write(dir.path().join("planted.yml"), rule("second-needle-longer")).expect("write");
    std::fs::write(dir.path().join("broken.yml"), "title: [unclosed").expect("write");
    // Reloads are checked once per interval (1 s here); poll until the check has run.
    let report = varde_testkit::eventually("rules reloaded", Duration::from_secs(10), || {
        let r = detector.reload_if_changed();
        async move { r }
    })
    .await;
    assert_eq!(report.loaded, 1);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].source.ends_with("broken.yml"));
    let env = envelope(
        SourceKind::Syslog,
        &[
            line("a first-needle here"),
            line("a second-needle-longer here"),
        ],
        2,
    );
    let after = detector.detect(&env, 2).await.expect("detect");
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].matched,
        vec![(
            "message".to_owned(),
            "a second-needle-longer here".to_owned()
        )]
    );
}
