//! Retention by day partitions: on the real ClickHouse that `deploy/dev/services.sh up` starts
//! (18.16 in CI, which has no TTL), each test in its own database; and the embedded store held
//! to the same contract.

use varde_core::{AlertId, EventId};
use varde_store::embedded::EmbeddedStore;
use varde_store::{
    Alert, AlertQuery, DeadLetter, EventQuery, EventStore, Table, partition_id_of_day, today_day,
};
use varde_testkit::{DAY_US, TestEnv, envelope_on};

fn alert_on(day: u16, row: u32) -> Alert {
    let event_id = EventId::derive("k0301-ret", u64::from(day), row);
    Alert {
        alert_id: AlertId::derive("rule-1", event_id),
        dedup_key: [7; 16],
        tenant: "0301".into(),
        component: String::new(),
        rule_id: "rule-1".into(),
        rule_title: "A rule".into(),
        rule_level: "high".into(),
        rule_tags: vec![],
        event_id,
        event_time_us: i64::from(day) * DAY_US + 60_000_000,
        detect_time_us: i64::from(today_day()) * DAY_US,
        source_kind: "syslog".into(),
        host: String::new(),
        matched: vec![],
    }
}

fn letter_on(day: u16, offset: i64) -> DeadLetter {
    DeadLetter {
        topic: "varde.events.0301".into(),
        partition: 0,
        offset,
        reason: "not_an_envelope".into(),
        error: "bad magic".into(),
        received_time_us: i64::from(day) * DAY_US + 1_000_000,
        payload_len: 3,
        payload: b"abc".to_vec(),
    }
}

async fn days_of_events<S: EventStore>(store: &S) -> Vec<u16> {
    let mut days: Vec<u16> = store
        .events(&EventQuery {
            tenant: None,
            limit: 10_000,
        })
        .await
        .expect("events")
        .iter()
        .map(|e| u16::try_from(e.event_time_us / DAY_US).expect("day"))
        .collect();
    days.dedup();
    days
}

async fn retention_contract<S: EventStore>(store: &S) {
    let today = today_day();
    let (old, older, recent) = (today - 31, today - 400, today - 10);
    // Each day in its own INSERT and one day in two, so a partition can hold several parts.
    for (seq, day) in [(1, older), (2, old), (3, recent), (4, today), (5, old)] {
        store
            .write_envelopes(&[envelope_on(day, seq, 5)])
            .await
            .expect("write");
    }
    store
        .write_alerts(&[alert_on(old, 0), alert_on(old, 1), alert_on(recent, 0)])
        .await
        .expect("alerts");
    store
        .write_dead_letters(&[letter_on(older, 1), letter_on(today, 2)])
        .await
        .expect("letters");
    assert_eq!(days_of_events(store).await, vec![older, old, recent, today]);

    // 30 days of events: a day older than today − 30 goes, whole.
    let dropped = store
        .drop_partitions_older_than(Table::Events, today - 30)
        .await
        .expect("retention");
    let got: Vec<(String, u16, u64)> = dropped
        .iter()
        .map(|p| (p.partition.clone(), p.day, p.rows))
        .collect();
    assert_eq!(
        got,
        vec![
            (partition_id_of_day(older), older, 5),
            (partition_id_of_day(old), old, 10),
        ]
    );
    assert_eq!(days_of_events(store).await, vec![recent, today]);
    let counts = store.event_counts().await.expect("counts");
    assert_eq!(counts.len(), 1);
    assert_eq!(counts[0].events, 10, "the recent days keep all their rows");
    // A second run with the same cutoff has nothing left to drop.
    assert!(
        store
            .drop_partitions_older_than(Table::Events, today - 30)
            .await
            .expect("second run")
            .is_empty()
    );

    // Tables are independent: the alerts of the old day stayed until their own retention.
    let alerts = store
        .alerts(&AlertQuery {
            tenant: None,
            limit: 100,
        })
        .await
        .expect("alerts");
    assert_eq!(alerts.len(), 3);
    let dropped = store
        .drop_partitions_older_than(Table::Alerts, today - 30)
        .await
        .expect("alert retention");
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].day, old);
    let alerts = store
        .alerts(&AlertQuery {
            tenant: None,
            limit: 100,
        })
        .await
        .expect("alerts");
    assert_eq!(alerts, vec![alert_on(recent, 0)]);

    let dropped = store
        .drop_partitions_older_than(Table::DeadLetters, today - 30)
        .await
        .expect("dead letter retention");
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].day, older);
    let letters = store.dead_letters(100).await.expect("letters");
    assert_eq!(letters, vec![letter_on(today, 2)]);
    for table in Table::ALL {
        assert!(
            store
                .drop_partitions_older_than(table, today - 30)
                .await
                .expect("again")
                .is_empty(),
            "{table}"
        );
    }
}

#[tokio::test]
async fn clickhouse_retention_drops_whole_old_days_only() {
    let env = TestEnv::new("clickhouse_retention");
    let store = env.store().await;
    store.check_alive().await.expect("alive");
    retention_contract(&store).await;
    env.cleanup().await;
}

/// The same on the local cluster (`deploy/dev/cluster.sh`, 2 shards x 2 replicas): partitions
/// are listed from one replica of each shard and dropped on every node, so no replica keeps an
/// old day.
#[tokio::test]
async fn clickhouse_retention_on_a_cluster_drops_old_days_on_every_node() {
    let env = TestEnv::new("cluster_retention");
    let store = env.cluster_store(0).await;
    retention_contract(&store).await;
    let cutoff = today_day() - 30;
    for node in 0..4 {
        let s = varde_store::clickhouse::ClickHouseStore::new(&env.cluster_clickhouse(node))
            .expect("store");
        s.execute("SYSTEM SYNC REPLICA {db}.events_local")
            .await
            .expect("sync");
        let old = s
            .select_strings(&format!(
                "SELECT toString(count()) FROM {{db}}.events_local WHERE toUInt16(event_date) < {cutoff}"
            ))
            .await
            .expect("count")[0]
            .clone();
        assert_eq!(old, "0", "node {node} kept an old day");
    }
    store.drop_database().await.expect("drop on the cluster");
}

#[tokio::test]
async fn embedded_retention_drops_whole_old_days_only() {
    retention_contract(&EmbeddedStore::new()).await;
}
