//! What the pipeline does when a batch cannot be stored or detected, against the real
//! ClickHouse that `deploy/dev/services.sh up` starts: a poison message between good ones is
//! parked whole and the good ones are stored; a batch detection keeps failing on is parked whole
//! and never half-stored; every message is committed only once stored or parked.

use std::time::Duration;

use tokio::sync::watch;
use varde_core::{BatchBuilder, CollectorId, Envelope, Event, Kommunenummer, SourceKind, Value};
use varde_pipeline::detect::{Detect, DetectError, DetectionConfig, Detector, LoadReport};
use varde_pipeline::{DETECT_RETRIES, LoopSettings, Stats, run};
use varde_store::{Alert, AlertQuery, EventQuery, EventStore};
use varde_testkit::TestEnv;
use varde_transport::memory::MemoryBus;
use varde_transport::{Publisher, Subscriber, events_topic};

/// `rows` auth events of collector `collector` in Oslo; every row's host is `host`, and row 0
/// is a root login with a password (the pack's sshd rule fires on it).
fn envelope(collector: &str, seq: u64, rows: usize, host: &str) -> Vec<u8> {
    let tenant = Kommunenummer::parse("0301").expect("Oslo");
    let key = varde_testkit::test_key(collector);
    let collector = CollectorId::new(collector).expect("id");
    let mut b = BatchBuilder::new(SourceKind::Auth, tenant, collector.clone(), rows);
    for i in 0..rows {
        let message = if i == 0 {
            "Accepted password for root from 198.51.100.7 port 4242 ssh2".to_owned()
        } else {
            format!("session {i} closed")
        };
        b.push(&Event {
            event_time_us: 1_764_000_000_000_000 + i as i64,
            receive_time_us: 1_764_000_000_000_000,
            host: Some(host.to_owned()),
            message: Some(message),
            typed: vec![("program", Value::Str("sshd".into()))],
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
    .encode_signed(&key)
    .expect("encode")
}

fn pack_detector() -> Detector {
    let (detector, _) = Detector::from_config(&DetectionConfig {
        reload_interval_s: 0,
        ..DetectionConfig::default()
    })
    .expect("pack");
    detector
}

async fn run_to_end<D: Detect>(
    bus: &MemoryBus,
    topic: &str,
    store: &varde_store::clickhouse::ClickHouseStore,
    detector: &mut D,
    stats: &Stats,
) {
    bus.close();
    for collector in ["k0301-a", "k0301-p", "k0301-broken"] {
        varde_testkit::enrol_test_collector(store, collector, "0301").await;
    }
    let mut sub = bus.subscribe("pipeline", &[topic.to_owned()]);
    let (_stop, shutdown) = watch::channel(false);
    let settings = LoopSettings {
        poll_wait_ms: 10,
        ..LoopSettings::default()
    };
    tokio::time::timeout(
        Duration::from_secs(60),
        run(&mut sub, store, detector, settings, stats, shutdown),
    )
    .await
    .expect("the loop ends when the bus is drained");
    // Everything was committed: the group has nothing left to read.
    let mut again = bus.subscribe("pipeline", &[topic.to_owned()]);
    assert!(matches!(
        again.poll_batch(100, Duration::from_millis(10)).await,
        Err(varde_transport::Error::Closed)
    ));
}

fn hosts(events: &[varde_store::StoredEvent]) -> Vec<String> {
    let mut h: Vec<String> = events.iter().map(|e| e.host.clone()).collect();
    h.sort_unstable();
    h.dedup();
    h
}

#[tokio::test]
async fn a_poison_message_is_parked_and_the_good_ones_beside_it_are_stored() {
    let env = TestEnv::new("poison");
    let store = env.store().await;
    // A guard column that makes the server refuse any row from host `poison`, as a constraint
    // or a broken column would: ClickHouse answers code 395 for that insert, every time.
    store
        .execute(
            "ALTER TABLE {db}.events ADD COLUMN guard UInt8 \
             MATERIALIZED throwIf(host = 'poison')",
        )
        .await
        .expect("guard column");

    let bus = MemoryBus::new();
    let topic = events_topic("varde.", Kommunenummer::parse("0301").expect("Oslo"));
    let poison = envelope("k0301-p", 3, 4, "poison");
    for (i, bytes) in [
        envelope("k0301-a", 1, 5, "a1"),
        envelope("k0301-a", 2, 6, "a2"),
        poison.clone(),
        envelope("k0301-a", 4, 7, "a4"),
        envelope("k0301-a", 5, 8, "a5"),
    ]
    .iter()
    .enumerate()
    {
        bus.publish(&topic, b"", bytes).await.expect("publish");
        assert_eq!(bus.len(&topic), i + 1);
    }
    let stats = Stats::default();
    run_to_end(&bus, &topic, &store, &mut pack_detector(), &stats).await;

    let events = store
        .events(&EventQuery {
            tenant: None,
            limit: 1000,
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 5 + 6 + 7 + 8, "every good event, once");
    assert_eq!(hosts(&events), vec!["a1", "a2", "a4", "a5"]);
    let alerts = store
        .alerts(&AlertQuery {
            tenant: None,
            limit: 100,
        })
        .await
        .expect("alerts");
    let mut alert_hosts: Vec<&str> = alerts.iter().map(|a| a.host.as_str()).collect();
    alert_hosts.sort_unstable();
    assert_eq!(
        alert_hosts,
        vec!["a1", "a2", "a4", "a5"],
        "one root login each"
    );

    let letters = store.dead_letters(10).await.expect("dead letters");
    assert_eq!(letters.len(), 1, "{letters:?}");
    let l = &letters[0];
    assert_eq!(
        (l.reason.as_str(), l.offset, l.topic.as_str()),
        ("store_refused", 2, topic.as_str())
    );
    assert!(l.error.contains("Code: 395"), "{}", l.error);
    assert_eq!(
        l.payload, poison,
        "parked whole, ready to be processed again"
    );
    assert_eq!(Stats::get(&stats.store_refused), 1);
    assert_eq!(Stats::get(&stats.dead_letters), 1);
    assert_eq!(stats.rejected().get("store_refused"), Some(&1));
    assert_eq!(Stats::get(&stats.commits), 1);
    env.cleanup().await;
}

/// Real detection, except that it fails on every batch of one collector: real rules on real
/// batches cannot be made to fail on demand, and what is tested here is what the loop does then.
struct FailingFor {
    inner: Detector,
    collector: &'static str,
    attempts: std::sync::atomic::AtomicUsize,
}

impl Detect for FailingFor {
    fn reload_if_changed(&mut self) -> Option<LoadReport> {
        None
    }

    fn set_disabled(&mut self, disabled: std::collections::BTreeSet<String>) {
        self.inner.set_disabled(disabled);
    }

    async fn detect(&self, envelope: &Envelope, at: i64) -> Result<Vec<Alert>, DetectError> {
        if envelope.header.collector_id.as_str() == self.collector {
            self.attempts
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            return Err(DetectError::RowCount {
                expected: envelope.batch.num_rows(),
                got: 0,
            });
        }
        self.inner.detect(envelope, at).await
    }
}

#[tokio::test]
async fn a_batch_detection_fails_on_is_parked_whole_not_stored_without_its_alerts() {
    let env = TestEnv::new("detectfail");
    let store = env.store().await;
    let bus = MemoryBus::new();
    let topic = events_topic("varde.", Kommunenummer::parse("0301").expect("Oslo"));
    let broken = envelope("k0301-broken", 2, 3, "b2");
    bus.publish(&topic, b"", &envelope("k0301-a", 1, 4, "a1"))
        .await
        .expect("publish");
    bus.publish(&topic, b"", &broken).await.expect("publish");
    bus.publish(&topic, b"", &envelope("k0301-a", 3, 2, "a3"))
        .await
        .expect("publish");
    let stats = Stats::default();
    let mut detector = FailingFor {
        inner: pack_detector(),
        collector: "k0301-broken",
        attempts: Default::default(),
    };
    run_to_end(&bus, &topic, &store, &mut detector, &stats).await;

    assert_eq!(
        detector.attempts.load(std::sync::atomic::Ordering::Relaxed),
        1 + DETECT_RETRIES
    );
    let events = store
        .events(&EventQuery {
            tenant: None,
            limit: 100,
        })
        .await
        .expect("events");
    assert_eq!(
        hosts(&events),
        vec!["a1", "a3"],
        "nothing of the broken batch"
    );
    assert_eq!(events.len(), 6);
    let alerts = store
        .alerts(&AlertQuery {
            tenant: None,
            limit: 100,
        })
        .await
        .expect("alerts");
    assert_eq!(alerts.len(), 2, "the good batches' alerts");
    let letters = store.dead_letters(10).await.expect("dead letters");
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].reason.as_str(), letters[0].offset),
        ("detection", 1)
    );
    assert!(
        letters[0]
            .error
            .contains("returned 0 rows for a batch of 3"),
        "{}",
        letters[0].error
    );
    assert_eq!(letters[0].payload, broken);
    assert_eq!(Stats::get(&stats.detect_errors), 1);
    assert_eq!(Stats::get(&stats.detect_retries), DETECT_RETRIES as u64);
    assert_eq!(stats.rejected().get("detection"), Some(&1));
    env.cleanup().await;
}
