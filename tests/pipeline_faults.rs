//! The pipeline under faults, as processes against the real Kafka and ClickHouse of
//! `deploy/dev/services.sh up`: `kill -9` mid-stream and a restart (a full replay in a new
//! consumer group; resuming in the same group), and two instances in one consumer group with
//! one of them killed mid-stream and replaced. After each, every event and every alert is
//! visible exactly once through the store's read API. The tests that need the broker's group
//! coordinator to recover from a killed member are ignored on the development broker (see
//! DEVELOPERS.md, "Why tansu, and its limits").

use std::path::Path;
use std::time::Duration;

use varde_core::Kommunenummer;
use varde_store::clickhouse::ClickHouseStore;
use varde_store::{AlertQuery, EventStore};
use varde_testkit::process::{
    Guard, collector_config, collector_send, pipeline_config, start_pipeline,
    start_second_pipeline_with_metrics, static_assignment, write_syslog_lines,
};
use varde_testkit::{TestEnv, eventually};
use varde_transport::events_topic;
use varde_transport::kafka::ensure_topics;

/// Lines per collector.
const LINES: usize = 20_000;
/// One planted root password login per this many lines.
const ROOT_EVERY: usize = 50;
/// Collectors (each its own Kafka key, so their batches spread over the partitions).
const COLLECTORS: usize = 4;
/// Planted logins in all (`LINES` is a multiple of `ROOT_EVERY`; one per `ROOT_EVERY` lines).
const PLANTED: usize = COLLECTORS * LINES / ROOT_EVERY;

/// The tests of this file run one at a time: each starts pipelines, collectors and a few
/// hundred thousand rows of traffic, and two of them at once on a small machine only measure
/// its load.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn varde() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_varde"))
}

/// Publishes `LINES` lines from each of `COLLECTORS` collectors of Bergen to Kafka and returns
/// the number of events sent.
fn send_all(
    dir: &Path,
    kafka: &varde_transport::kafka::KafkaSettings,
    clickhouse: &varde_store::clickhouse::ClickHouseSettings,
) -> usize {
    let log = dir.join("syslog.log");
    write_syslog_lines(&log, LINES, ROOT_EVERY);
    for c in 0..COLLECTORS {
        let config = collector_config(
            dir,
            &format!("k4601-fault{c}"),
            "4601",
            kafka,
            clickhouse,
            250,
        );
        collector_send(&config, &log);
    }
    LINES * COLLECTORS
}

async fn visible_events(store: &ClickHouseStore) -> u64 {
    store
        .event_counts()
        .await
        .map(|c| c.iter().map(|c| c.events).sum())
        .unwrap_or(0)
}

/// Waits until every event is stored, then checks that events and alerts are exact: no loss and
/// no duplicate visible through the read API.
async fn assert_exact(store: &ClickHouseStore, events: usize) {
    eventually("every event stored", Duration::from_secs(300), || async {
        (visible_events(store).await >= events as u64).then_some(())
    })
    .await;
    assert_eq!(visible_events(store).await, events as u64, "events exact");
    let bergen = Kommunenummer::parse("4601").expect("Bergen");
    let read = store
        .events(&varde_store::EventQuery {
            tenant: Some(bergen),
            limit: 10 * events as u64,
        })
        .await
        .expect("read events");
    assert_eq!(read.len(), events, "no duplicate event visible");

    let planted = PLANTED;
    let alerts = eventually("every alert stored", Duration::from_secs(120), || async {
        let a = store
            .alerts(&AlertQuery {
                tenant: Some(bergen),
                limit: 10 * planted as u64,
            })
            .await
            .ok()?;
        (a.len() >= planted).then_some(a)
    })
    .await;
    assert_eq!(
        alerts.len(),
        planted,
        "one alert per planted login, none twice"
    );
    let counts = store.alert_counts().await.expect("alert counts");
    assert_eq!(
        counts.iter().map(|c| c.alerts).sum::<u64>(),
        planted as u64,
        "{counts:?}"
    );
}

/// Kills the pipeline with `-9` mid-stream and starts it again, in the same consumer group (it
/// resumes from the committed offsets) or, with `same_group = false`, in a new one (it replays
/// every message from the start, as after lost offsets). Either way every event and alert is
/// visible exactly once.
async fn kill_9_mid_stream_then_restart(name: &str, same_group: bool) {
    let _serial = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new(name);
    let kafka = env.kafka();
    let clickhouse = env.clickhouse();
    let store = env.store().await;
    let topic = events_topic(
        &kafka.topic_prefix,
        Kommunenummer::parse("4601").expect("Bergen"),
    );
    ensure_topics(&kafka, &[(topic, 4)])
        .await
        .expect("create topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let events = send_all(dir.path(), &kafka, &clickhouse);

    // Small polls (4 envelopes of 250 rows) so that the stream takes a while.
    let config = pipeline_config(dir.path(), &kafka, &clickhouse, 4);
    let mut first = start_pipeline(varde(), &config, Some(&dir.path().join("first.log")));
    let at_kill = eventually("some rows stored", Duration::from_secs(120), || async {
        let n = visible_events(&store).await;
        (n > 0).then_some(n)
    })
    .await;
    first.kill9();
    eprintln!("killed -9 with {at_kill} of {events} events stored");
    assert!(
        at_kill < events as u64,
        "the pipeline finished before the kill; the test proves nothing"
    );
    let restart_config = if same_group {
        config
    } else {
        let text = std::fs::read_to_string(&config).expect("read pipeline config");
        let text = text.replacen("pipeline\"", "pipeline-replay\"", 1);
        let path = dir.path().join("replay.toml");
        std::fs::write(&path, text).expect("write pipeline config");
        path
    };
    let _second = start_pipeline(
        varde(),
        &restart_config,
        Some(&dir.path().join("second.log")),
    );
    assert_exact(&store, events).await;
    env.cleanup().await;
}

/// After `kill -9`, a pipeline in a new consumer group replays the whole topic: the stores
/// collapse the replay, so nothing is lost and nothing shows twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_stream_then_a_full_replay_loses_and_duplicates_nothing() {
    kill_9_mid_stream_then_restart("kill9replay", false).await;
}

/// After `kill -9`, a pipeline with static assignment (every partition of its municipalities'
/// topics, offsets from its group) is restarted in the same group: it resumes exactly at the
/// offsets the killed one committed, read back through the protocol, and every event and alert
/// is visible once. The restarted instance's `/metrics` shows it read exactly the messages from
/// those offsets on: a replay from the start would read more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_then_restart_in_the_same_group_resumes_from_the_committed_offsets() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new("kill9static");
    let kafka = env.kafka();
    let clickhouse = env.clickhouse();
    let store = env.store().await;
    let topic = events_topic(
        &kafka.topic_prefix,
        Kommunenummer::parse("4601").expect("Bergen"),
    );
    ensure_topics(&kafka, &[(topic.clone(), 4)])
        .await
        .expect("create topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let events = send_all(dir.path(), &kafka, &clickhouse);
    let group = format!("{}pipeline", kafka.topic_prefix);

    let config = pipeline_config(dir.path(), &kafka, &clickhouse, 4);
    let text = static_assignment(&config, "4601");
    let mut first = start_pipeline(varde(), &config, Some(&dir.path().join("first.log")));
    eventually("a first commit", Duration::from_secs(120), || async {
        let sum: i64 = varde_testkit::committed_offsets(&kafka, &group, &topic)
            .await
            .iter()
            .sum();
        (sum > 0).then_some(())
    })
    .await;
    first.kill9();
    let at_kill = varde_testkit::committed_offsets(&kafka, &group, &topic).await;
    let stored_at_kill = visible_events(&store).await;
    eprintln!(
        "killed -9 at committed offsets {at_kill:?}, {stored_at_kill} of {events} events stored"
    );
    assert!(
        stored_at_kill < events as u64,
        "the pipeline finished before the kill; the test proves nothing"
    );

    let (_second, metrics) = start_second_pipeline_with_metrics(
        varde(),
        dir.path(),
        &text,
        &dir.path().join("second.log"),
    );
    assert_exact(&store, events).await;
    // Read by the second instance = committed at the end − committed at the kill.
    eventually(
        "the second instance read exactly the uncommitted messages",
        Duration::from_secs(60),
        || async {
            let end = varde_testkit::committed_offsets(&kafka, &group, &topic).await;
            let expected: i64 = end.iter().zip(&at_kill).map(|(e, k)| e - k).sum();
            let (_, body) = varde_testkit::http_get(metrics, "/metrics").await;
            let read: i64 = body
                .lines()
                .find_map(|l| l.strip_prefix("varde_pipeline_messages_total "))
                .and_then(|v| v.trim().parse::<f64>().ok())
                .map(|v| v as i64)?;
            eprintln!("second instance read {read}; committed {at_kill:?} -> {end:?}");
            (read == expected && expected > 0).then_some(())
        },
    )
    .await;
    env.cleanup().await;
}

/// After `kill -9`, the restarted pipeline resumes in its group from the committed offsets.
/// Needs a broker whose group coordinator lets the restarted member take the dead one's
/// partitions: run it against a Kafka or Redpanda cluster with `VARDE_KAFKA_PORT=<port> cargo
/// test --test pipeline_faults -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tansu 0.6.0, the dev/CI broker, does not reliably hand a killed member's partitions to its restarted successor: seen 2026-12-01, 1 of 3 runs stuck for 5 minutes"]
async fn kill_9_mid_stream_then_restart_in_the_group_loses_and_duplicates_nothing() {
    kill_9_mid_stream_then_restart("kill9", true).await;
}

/// Needs a broker whose group coordinator evicts a killed member: run it against a Kafka or
/// Redpanda cluster with `VARDE_KAFKA_PORT=<port> cargo test --test pipeline_faults --
/// --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "tansu 0.6.0, the dev/CI broker, does not rebalance a group after a member is killed -9: seen 2026-12-01 in 3 of 4 runs, the survivor and a replacement instance kept waiting for 5 minutes (also with max.poll.interval.ms = 15 s)"]
async fn two_instances_share_the_group_and_one_takes_over_from_the_other() {
    let _serial = ONE_AT_A_TIME.lock().await;
    let env = TestEnv::new("twoinst");
    let kafka = env.kafka();
    let clickhouse = env.clickhouse();
    let store = env.store().await;
    let topic = events_topic(
        &kafka.topic_prefix,
        Kommunenummer::parse("4601").expect("Bergen"),
    );
    ensure_topics(&kafka, &[(topic, 4)])
        .await
        .expect("create topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = pipeline_config(dir.path(), &kafka, &clickhouse, 4);
    // A rebalance waits for every known member to rejoin, up to the rebalance timeout
    // (librdkafka: max.poll.interval.ms, 300 s by default); a killed member never rejoins, so
    // keep that wait short.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&config)
            .expect("open pipeline config");
        writeln!(
            f,
            "\n[kafka.properties]\n\"max.poll.interval.ms\" = \"15000\""
        )
        .expect("write pipeline config");
    }
    let a_log = dir.path().join("a.log");
    let b_log = dir.path().join("b.log");
    let mut a: Guard = start_pipeline(varde(), &config, Some(&a_log));
    let _b: Guard = start_pipeline(varde(), &config, Some(&b_log));
    // Both join before the data arrives.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = send_all(dir.path(), &kafka, &clickhouse);
    let at_kill = eventually("some rows stored", Duration::from_secs(120), || async {
        let n = visible_events(&store).await;
        (n > 0).then_some(n)
    })
    .await;
    a.kill9();
    eprintln!("instance a killed -9 with {at_kill} of {events} events stored");
    // systemd restarts a killed pipeline (Restart=always): a replacement joins the group. The
    // survivor alone would take over once the dead member's session expires
    // (session.timeout.ms = 10 s); the replacement makes the group rebalance at once.
    let c_log = dir.path().join("c.log");
    let _c: Guard = start_pipeline(varde(), &config, Some(&c_log));
    // On failure the instances' logs say why (rebalance, commit, store errors): print their
    // ends before the test's temporary directory goes.
    let checked = tokio::spawn({
        let store = store.clone();
        async move { assert_exact(&store, events).await }
    })
    .await;
    for (name, log) in [("a", &a_log), ("b", &b_log), ("c", &c_log)] {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        eprintln!("instance {name} log: {} lines", lines.len());
        if checked.is_err() {
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("  {name}| {line}");
            }
        }
    }
    if let Err(e) = checked {
        std::panic::resume_unwind(e.into_panic());
    }
    env.cleanup().await;
}
