//! ClickHouse stopped for a minute mid-stream, then started again, under a running pipeline
//! (the `varde` binary) fed by real collectors through the Kafka broker of
//! `deploy/dev/services.sh up`. The ClickHouse here is a private server of this test's own
//! (`varde_testkit::clickhouse`), so stopping it touches no other test. While it is down the
//! pipeline's `/health` says `store_failing`, its committed offset stands still and the lag in
//! `/metrics` rises; once it is back, every event and every alert is visible exactly once,
//! `/health` is `ok` again and the lag falls to zero.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use varde_core::Kommunenummer;
use varde_store::clickhouse::{ClickHouseSettings, ClickHouseStore};
use varde_store::{AlertQuery, EventQuery, EventStore};
use varde_testkit::clickhouse::PrivateClickHouse;
use varde_testkit::process::{
    collector_config, collector_send, pipeline_config, start_pipeline, write_syslog_lines,
};
use varde_testkit::{TestEnv, eventually, free_port, http_get};
use varde_transport::events_topic;
use varde_transport::kafka::{KafkaSettings, ensure_topics};

/// Lines each collector sends; one root password login (an alert) per `ROOT_EVERY`.
const LINES: usize = 4_000;
const ROOT_EVERY: usize = 40;
/// How long ClickHouse stays down.
const OUTAGE: Duration = Duration::from_secs(60);

/// Sends `LINES` lines through the collector configured by `config`.
fn send(dir: &Path, config: &Path) {
    let log = dir.join(format!(
        "{}.log",
        config
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("lines")
    ));
    write_syslog_lines(&log, LINES, ROOT_EVERY);
    collector_send(config, &log);
}

/// The sum of `varde_pipeline_consumer_lag_messages` over the partitions, once every
/// partition reports it.
async fn lag(metrics: SocketAddr, partitions: usize) -> Option<f64> {
    let (_, page) = http_get(metrics, "/metrics").await;
    let values: Vec<f64> = page
        .lines()
        .filter(|l| l.starts_with("varde_pipeline_consumer_lag_messages{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (values.len() == partitions).then(|| values.iter().sum())
}

async fn stored(store: &ClickHouseStore) -> u64 {
    store
        .event_counts()
        .await
        .map(|c| c.iter().map(|c| c.events).sum())
        .unwrap_or(0)
}

async fn committed_sum(kafka: &KafkaSettings, group: &str, topic: &str) -> i64 {
    varde_testkit::committed_offsets(kafka, group, topic)
        .await
        .iter()
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_down_for_a_minute_mid_stream_loses_and_duplicates_nothing() {
    let env = TestEnv::new("chdown");
    let kafka = env.kafka();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut ch = PrivateClickHouse::start(&dir.path().join("clickhouse"));
    let clickhouse: ClickHouseSettings = ch.settings("varde_outage");
    let store = ClickHouseStore::new(&clickhouse).expect("store");
    store.migrate().await.expect("migrate");
    let topic = events_topic(
        &kafka.topic_prefix,
        Kommunenummer::parse("4601").expect("Bergen"),
    );
    ensure_topics(&kafka, &[(topic.clone(), 2)])
        .await
        .expect("create topic");
    let group = format!("{}pipeline", kafka.topic_prefix);

    let metrics = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let config = pipeline_config(dir.path(), &kafka, &clickhouse, 4);
    let text = std::fs::read_to_string(&config).expect("read config");
    std::fs::write(
        &config,
        format!(
            "{text}\n[metrics]\nlisten = \"{metrics}\"\nstore_unhealthy_after_s = 2\nlag_interval_s = 1\n"
        ),
    )
    .expect("write config");
    let _pipeline = start_pipeline(
        Path::new(env!("CARGO_BIN_EXE_varde")),
        &config,
        Some(&dir.path().join("pipeline.log")),
    );

    // Both collectors are enrolled while the store is up; the second sends during the outage.
    let before = collector_config(dir.path(), "k4601-before", "4601", &kafka, &clickhouse, 250);
    let during = collector_config(dir.path(), "k4601-during", "4601", &kafka, &clickhouse, 250);
    send(dir.path(), &before);
    eventually(
        "the first collector's events stored",
        Duration::from_secs(120),
        || async { (stored(&store).await == LINES as u64).then_some(()) },
    )
    .await;
    let (code, _) = http_get(metrics, "/health").await;
    assert_eq!(code, 200);

    ch.stop();
    let down = Instant::now();
    let committed_at_stop = committed_sum(&kafka, &group, &topic).await;
    send(dir.path(), &during);
    let health = eventually(
        "/health to say store_failing",
        Duration::from_secs(30),
        || async {
            let (code, body) = http_get(metrics, "/health").await;
            (code == 503 && body.contains("store_failing")).then_some(body)
        },
    )
    .await;
    eprintln!("while ClickHouse is down: {health}");
    let behind = eventually("lag to rise", Duration::from_secs(30), || async {
        lag(metrics, 2).await.filter(|l| *l > 0.0)
    })
    .await;
    eprintln!("lag while down: {behind} messages");
    let (_, page) = http_get(metrics, "/metrics").await;
    let retries: f64 = page
        .lines()
        .find_map(|l| l.strip_prefix("varde_pipeline_write_retries_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("write_retries_total");
    assert!(retries > 0.0, "writes were retried");
    if let Some(wait) = OUTAGE.checked_sub(down.elapsed()) {
        tokio::time::sleep(wait).await;
    }
    assert_eq!(
        committed_sum(&kafka, &group, &topic).await,
        committed_at_stop,
        "nothing committed while the store was down"
    );
    ch.resume();
    eprintln!("ClickHouse back after {:?}", down.elapsed());

    eventually("every event stored", Duration::from_secs(180), || async {
        (stored(&store).await >= 2 * LINES as u64).then_some(())
    })
    .await;
    assert_eq!(stored(&store).await, 2 * LINES as u64);
    let events = store
        .events(&EventQuery {
            tenant: None,
            limit: 10 * LINES as u64,
        })
        .await
        .expect("events");
    assert_eq!(events.len(), 2 * LINES, "no duplicate visible");
    let planted = 2 * LINES / ROOT_EVERY;
    let alerts = eventually("every alert stored", Duration::from_secs(60), || async {
        let a = store
            .alerts(&AlertQuery {
                tenant: None,
                limit: 10 * planted as u64,
            })
            .await
            .ok()?;
        (a.len() >= planted).then_some(a)
    })
    .await;
    assert_eq!(alerts.len(), planted, "every alert once");
    eventually("/health ok again", Duration::from_secs(30), || async {
        let (code, _) = http_get(metrics, "/health").await;
        (code == 200).then_some(())
    })
    .await;
    assert!(committed_sum(&kafka, &group, &topic).await > committed_at_stop);
    eventually("lag back to zero", Duration::from_secs(30), || async {
        lag(metrics, 2).await.filter(|l| *l == 0.0)
    })
    .await;
    ch.stop();
}
