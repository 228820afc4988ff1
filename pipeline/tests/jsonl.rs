//! JSON lines from a third-party shipper on a municipality's `jsonl` topic, through the pipeline
//! loop into the real ClickHouse: the tenant is the topic's, identity numbers are pseudonymised
//! before storage, detection runs as for envelopes, unusable lines are parked beside the good
//! ones, and a replayed message adds nothing visible.

use std::time::Duration;

use tokio::sync::watch;
use varde_collector::privacy::{PrivacyKey, PrivacyPolicy};
use varde_core::Kommunenummer;
use varde_pipeline::detect::{DetectionConfig, Detector};
use varde_pipeline::jsonl::JsonLines;
use varde_pipeline::{LoopSettings, Stats, run_with_json_lines};
use varde_store::{AlertQuery, EventQuery, EventStore};
use varde_testkit::TestEnv;
use varde_transport::memory::MemoryBus;
use varde_transport::{Publisher, jsonl_topic};

/// A valid (made-up) fødselsnummer.
const FNR: &str = "15059012387";

fn lines() -> String {
    [
        // An sshd root login as rsyslog's JSON template writes it: the pack's rule fires.
        r#"{"kind":"auth","time":"2026-12-01T10:00:00Z","host":"ssh01","program":"sshd","message":"Accepted password for root from 198.51.100.7 port 4242 ssh2"}"#.to_owned(),
        // A web request carrying an identity number in its query.
        format!(
            r#"{{"kind":"web_access","time":"2026-12-01T10:00:01Z","host":"web01","client_ip":"192.0.2.7","method":"GET","url_path":"/innsyn","url_query":"fnr={FNR}","status":200}}"#
        ),
        // Any JSON: the number in a nested field.
        format!(
            r#"{{"time":"2026-12-01T10:00:02Z","host":"app01","message":"oppslag","fields":{{"person":"{FNR}"}},"tenant":"0301"}}"#
        ),
        String::new(),
        "this is not json".to_owned(),
        r#"{"kind":"auth","host":"x","tenant":"4601","message":"claims Bergen"}"#.to_owned(),
        r#"{"kind":"web_access","status":"four hundred"}"#.to_owned(),
        r#"{"kind":"auth","time":"2026-12-01T10:00:03Z","host":"ssh02","program":"sshd","message":"Failed password for invalid user admin from 203.0.113.9 port 5555 ssh2"}"#.to_owned(),
    ]
    .join("\n")
}

#[tokio::test]
async fn json_lines_are_pseudonymised_detected_and_stored_and_bad_lines_parked() {
    let env = TestEnv::new("jsonl");
    let store = env.store().await;
    let bus = MemoryBus::new();
    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    let topic = jsonl_topic("varde.", oslo);
    let message = lines();
    bus.publish(&topic, b"", message.as_bytes())
        .await
        .expect("publish");
    bus.close();

    let mut jsonl = JsonLines::new(
        PrivacyKey::from_bytes([7; 32]),
        PrivacyPolicy::default(),
        1 << 20,
    );
    let (mut detector, _) = Detector::from_config(&DetectionConfig {
        reload_interval_s: 0,
        ..DetectionConfig::default()
    })
    .expect("pack");
    let stats = Stats::default();
    // The second pass reads the topic again in a new group: a replay, as after lost offsets.
    for group in ["g", "replay"] {
        let mut sub = bus.subscribe(group, std::slice::from_ref(&topic));
        let (_stop, shutdown) = watch::channel(false);
        tokio::time::timeout(
            Duration::from_secs(60),
            run_with_json_lines(
                &mut sub,
                &store,
                &mut detector,
                Some(&mut jsonl),
                LoopSettings {
                    poll_wait_ms: 10,
                    ..LoopSettings::default()
                },
                &stats,
                shutdown,
            ),
        )
        .await
        .expect("the loop ends when the bus is drained");
    }

    let events = store
        .events(&EventQuery {
            tenant: Some(oslo),
            limit: 100,
        })
        .await
        .expect("events");
    let mut kinds: Vec<&str> = events.iter().map(|e| e.source_kind.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        vec!["auth", "auth", "generic_json", "web_access"],
        "four good lines, once each although read twice"
    );
    for e in &events {
        let text = format!("{e:?}");
        assert!(
            !text.contains(FNR),
            "identity number stored in clear: {text}"
        );
    }
    let expected = jsonl.privacy(oslo).national_id_pseudonym(FNR.as_bytes());
    let web = events
        .iter()
        .find(|e| e.source_kind == "web_access")
        .expect("web event");
    assert!(
        format!("{web:?}").contains(&expected),
        "the query's number became Oslo's pseudonym {expected}: {web:?}"
    );
    let alerts = store
        .alerts(&AlertQuery {
            tenant: Some(oslo),
            limit: 10,
        })
        .await
        .expect("alerts");
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].host, "ssh01");
    assert_eq!(alerts[0].rule_id, "6f1a3c58-8b2d-4e7f-9c0a-3d5e7f9b1c07");

    let letters = store.dead_letters(10).await.expect("dead letters");
    assert_eq!(
        letters.len(),
        1,
        "one per message; the replay collapsed: {letters:?}"
    );
    let l = &letters[0];
    assert_eq!(l.reason, "jsonl");
    for part in [
        "line 5: not JSON",
        "line 6: claims tenant 4601",
        "line 7: field 'status'",
    ] {
        assert!(l.error.contains(part), "{part}: {}", l.error);
    }
    assert_eq!(
        String::from_utf8_lossy(&l.payload).lines().count(),
        3,
        "the three bad lines, to fix and send again"
    );
    assert_eq!(
        Stats::get(&stats.jsonl_lines),
        2 * 7,
        "seven lines that are not blank, read twice"
    );
    assert_eq!(Stats::get(&stats.jsonl_refused_lines), 6);
    assert_eq!(stats.rejected().get("jsonl"), Some(&2));
    env.cleanup().await;
}
