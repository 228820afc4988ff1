//! Hostile batches against the real broker and the real pipeline process: a forged tenant in the
//! header, a valid batch replayed on another tenant's topic, a revoked key, a flipped payload
//! byte, a truncated signature, an unsigned batch and an unknown collector, published to Kafka
//! beside good batches. Each is refused for its reason and parked; the identity refusals are
//! stored as security events of the municipality whose topic carried them; the good batches are
//! all stored. Then a revocation written while the pipeline runs refuses that collector's next
//! batch.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use varde_core::{BatchBuilder, CollectorId, Envelope, Event, Kommunenummer, SourceKind};
use varde_pipeline::identity::RULE_ID;
use varde_store::collectors::{CollectorRegistry, Collectors, IdentityRecord};
use varde_store::{AlertQuery, EventStore};
use varde_testkit::process::{pipeline_config, start_pipeline};
use varde_testkit::{TestEnv, enrol_test_collector, eventually, now_us, test_key};
use varde_transport::Publisher;
use varde_transport::events_topic;
use varde_transport::kafka::{KafkaPublisher, ensure_topics};

/// An envelope of `rows` syslog events from `collector`, claiming `tenant`.
fn envelope(collector: &str, tenant: Kommunenummer, seq: u64, rows: usize) -> Envelope {
    let id = CollectorId::new(collector).expect("id");
    let mut b = BatchBuilder::new(SourceKind::Syslog, tenant, id.clone(), rows);
    for i in 0..rows {
        b.push(&Event {
            event_time_us: now_us(),
            receive_time_us: now_us(),
            message: Some(format!("{collector} line {i} of batch {seq}")),
            ..Event::default()
        })
        .expect("push");
    }
    Envelope::new(
        SourceKind::Syslog,
        tenant,
        id,
        seq,
        b.finish().expect("batch"),
    )
    .expect("envelope")
}

fn signed(collector: &str, tenant: Kommunenummer, seq: u64, rows: usize) -> Vec<u8> {
    envelope(collector, tenant, seq, rows)
        .encode_signed(&test_key(collector))
        .expect("encode")
}

async fn reasons<S: EventStore>(store: &S) -> BTreeMap<String, Vec<String>> {
    let mut by_reason: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for l in store.dead_letters(100).await.expect("dead letters") {
        by_reason.entry(l.reason).or_default().push(l.topic);
    }
    by_reason
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_replayed_revoked_and_damaged_batches_are_refused_and_good_ones_stored() {
    let env = TestEnv::new("collector_identity");
    let kafka = env.kafka();
    let clickhouse = env.clickhouse();
    let store = env.store().await;
    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    let bergen = Kommunenummer::parse("4601").expect("Bergen");
    let (oslo_topic, bergen_topic) = (
        events_topic(&kafka.topic_prefix, oslo),
        events_topic(&kafka.topic_prefix, bergen),
    );
    ensure_topics(
        &kafka,
        &[(oslo_topic.clone(), 1), (bergen_topic.clone(), 1)],
    )
    .await
    .expect("topics");

    enrol_test_collector(&store, "k0301-id", "0301").await;
    enrol_test_collector(&store, "k4601-id", "4601").await;
    enrol_test_collector(&store, "k0301-gone", "0301").await;
    let registry = CollectorRegistry::fold(&store.identity_log().await.expect("log"));
    let gone = registry
        .get(&CollectorId::new("k0301-gone").expect("id"))
        .expect("enrolled");
    store
        .write_identity(&[IdentityRecord::revoked(
            now_us(),
            gone,
            None,
            "admin:test",
            "the VM was stolen",
        )])
        .await
        .expect("revoke");

    let dir = tempfile::tempdir().expect("tempdir");
    let config = pipeline_config(dir.path(), &kafka, &clickhouse, 50);
    let _pipeline = start_pipeline(
        Path::new(env!("CARGO_BIN_EXE_varde")),
        &config,
        Some(&dir.path().join("pipeline.log")),
    );

    let publisher =
        KafkaPublisher::new(&kafka, "identity-test", Duration::from_secs(30)).expect("producer");
    let good_oslo = signed("k0301-id", oslo, 1, 10);
    let mut flipped = signed("k0301-id", oslo, 2, 10);
    let last = flipped.len() - 1;
    flipped[last] ^= 0x01;
    let cut = {
        let bytes = signed("k0301-id", oslo, 3, 10);
        // Inside the signature: the header needs its 64 bytes whole.
        let (_, payload_at) = varde_core::EnvelopeHeader::peek(&bytes).expect("header");
        bytes[..payload_at - 20].to_vec()
    };
    // Signed by Oslo's collector, claiming Bergen, on Bergen's topic.
    let forged = envelope("k0301-id", bergen, 4, 5)
        .encode_signed(&test_key("k0301-id"))
        .expect("encode");
    let unsigned = envelope("k0301-id", oslo, 5, 5).encode().expect("encode");
    let stranger = signed("k0301-stranger", oslo, 6, 5);
    let revoked = signed("k0301-gone", oslo, 7, 5);
    let good_bergen = signed("k4601-id", bergen, 8, 7);
    for (topic, bytes) in [
        (&oslo_topic, &good_oslo),
        (&oslo_topic, &flipped),
        (&oslo_topic, &cut),
        (&bergen_topic, &forged),
        // Oslo's good batch again, on Bergen's topic.
        (&bergen_topic, &good_oslo),
        (&oslo_topic, &unsigned),
        (&oslo_topic, &stranger),
        (&oslo_topic, &revoked),
        (&bergen_topic, &good_bergen),
    ] {
        publisher.publish(topic, b"", bytes).await.expect("publish");
    }

    let want: BTreeMap<String, Vec<String>> = [
        ("bad_signature", &oslo_topic),
        ("truncated", &oslo_topic),
        ("tenant_forged", &bergen_topic),
        ("tenant_mismatch", &bergen_topic),
        ("unsigned", &oslo_topic),
        ("unknown_collector", &oslo_topic),
        ("revoked_key", &oslo_topic),
    ]
    .into_iter()
    .map(|(r, t)| (r.to_owned(), vec![t.clone()]))
    .collect();
    let got = eventually(
        "every hostile batch parked",
        Duration::from_secs(120),
        || async {
            let got = reasons(&store).await;
            (got.len() >= want.len()).then_some(got)
        },
    )
    .await;
    assert_eq!(got, want);

    // The good batches are stored, and the security events beside them: one per identity
    // refusal (the truncated envelope is malformed input, not an identity).
    let counts = eventually(
        "the good batches stored",
        Duration::from_secs(60),
        || async {
            let counts = store.event_counts().await.expect("counts");
            let total: u64 = counts.iter().map(|c| c.events).sum();
            (total >= 17 + 6).then_some(counts)
        },
    )
    .await;
    let by_tenant = |t: &str| {
        counts
            .iter()
            .filter(|c| c.tenant == t)
            .map(|c| c.events)
            .sum::<u64>()
    };
    // Oslo: 10 good + bad_signature, unsigned, unknown_collector, revoked_key events.
    assert_eq!(by_tenant("0301"), 10 + 4);
    // Bergen: 7 good + tenant_forged, tenant_mismatch events.
    assert_eq!(by_tenant("4601"), 7 + 2);
    let alerts = store
        .alerts(&AlertQuery {
            tenant: None,
            limit: 100,
        })
        .await
        .expect("alerts");
    let mut security: Vec<(String, String)> = alerts
        .iter()
        .filter(|a| a.rule_id == RULE_ID)
        .map(|a| {
            (
                a.tenant.clone(),
                a.matched_field("reason").unwrap_or_default().to_owned(),
            )
        })
        .collect();
    security.sort();
    assert_eq!(
        security,
        vec![
            ("0301".to_owned(), "bad_signature".to_owned()),
            ("0301".to_owned(), "revoked_key".to_owned()),
            ("0301".to_owned(), "unknown_collector".to_owned()),
            ("0301".to_owned(), "unsigned".to_owned()),
            ("4601".to_owned(), "tenant_forged".to_owned()),
            ("4601".to_owned(), "tenant_mismatch".to_owned()),
        ]
    );

    // A revocation written while the pipeline runs: Bergen's collector's next batch is refused.
    let registry = CollectorRegistry::fold(&store.identity_log().await.expect("log"));
    let bergen_collector = registry
        .get(&CollectorId::new("k4601-id").expect("id"))
        .expect("enrolled");
    store
        .write_identity(&[IdentityRecord::revoked(
            now_us(),
            bergen_collector,
            None,
            "admin:test",
            "key leaked",
        )])
        .await
        .expect("revoke");
    publisher
        .publish(&bergen_topic, b"", &signed("k4601-id", bergen, 9, 3))
        .await
        .expect("publish");
    eventually(
        "the revoked collector's next batch refused",
        Duration::from_secs(60),
        || async {
            let got = reasons(&store).await;
            (got.get("revoked_key").map(Vec::len) == Some(2)).then_some(())
        },
    )
    .await;
    let bergen_events: u64 = store
        .event_counts()
        .await
        .expect("counts")
        .iter()
        .filter(|c| c.tenant == "4601")
        .map(|c| c.events)
        .sum();
    // 7 good rows and 3 security events; none of the revoked batch's 3 rows.
    assert_eq!(bergen_events, 7 + 3);
    env.cleanup().await;
}
