//! The pipeline loop on the in-process bus and the embedded store (what `varde demo` runs):
//! good envelopes are stored, hostile messages beside them are rejected by reason, a replay
//! adds no visible event.

use std::time::Duration;

use tokio::sync::watch;
use varde_core::{BatchBuilder, CollectorId, Envelope, Event, Kommunenummer, SourceKind};
use varde_pipeline::{LoopSettings, Stats, run};
use varde_store::EventStore;
use varde_store::embedded::EmbeddedStore;
use varde_transport::memory::MemoryBus;
use varde_transport::{Publisher, events_topic};

fn envelope_bytes(tenant: &str, seq: u64, rows: usize) -> Vec<u8> {
    let tenant = Kommunenummer::parse(tenant).expect("tenant");
    let collector = CollectorId::new(format!("k{tenant}-t")).expect("id");
    let mut b = BatchBuilder::new(SourceKind::Syslog, tenant, collector.clone(), rows);
    for i in 0..rows {
        b.push(&Event {
            event_time_us: i as i64,
            message: Some(format!("line {i}")),
            ..Event::default()
        })
        .expect("push");
    }
    Envelope::new(
        SourceKind::Syslog,
        tenant,
        collector,
        seq,
        b.finish().expect("batch"),
    )
    .expect("envelope")
    .encode()
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
    let stats = Stats::default();
    let mut sub = bus.subscribe("g", &[oslo.clone(), bergen.clone()]);
    let (_stop, shutdown) = watch::channel(false);
    let settings = LoopSettings {
        max_messages: 2,
        poll_wait_ms: 10,
        ..LoopSettings::default()
    };
    tokio::time::timeout(
        Duration::from_secs(10),
        run(&mut sub, &store, settings, &stats, shutdown),
    )
    .await
    .expect("loop ends when the bus closes");

    assert_eq!(Stats::get(&stats.messages), 6);
    assert_eq!(
        store.len(),
        17,
        "10 Oslo + 7 Bergen events, the replay collapsed"
    );
    let rejected = stats.rejected();
    assert_eq!(rejected.get("not_an_envelope"), Some(&1));
    assert_eq!(rejected.get("tenant_mismatch"), Some(&1));
    assert_eq!(rejected.values().sum::<u64>(), 3, "{rejected:?}");
    let counts = store.event_counts().await.expect("counts");
    assert_eq!(counts.iter().map(|c| c.events).sum::<u64>(), 17);

    // Everything was committed: a new subscriber of the group sees nothing more.
    let mut again = bus.subscribe("g", &[oslo, bergen]);
    assert!(matches!(
        varde_transport::Subscriber::poll_batch(&mut again, 10, Duration::from_millis(10)).await,
        Err(varde_transport::Error::Closed)
    ));
}
