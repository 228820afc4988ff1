//! Varde on a ClickHouse cluster, as processes: the local cluster of `deploy/dev/cluster.sh`
//! (ZooKeeper and 2 shards × 2 replicas of ClickHouse 18.16, started by `services.sh up`), the
//! development Kafka broker, collectors sending two municipalities' syslog, and two `varde
//! pipeline` instances, each taking one municipality's topic and writing through a node of
//! its own (shard 1's first replica and shard 2's first replica).
//!
//! Mid-stream, shard 1's first replica is killed with `-9` and started again later: the
//! instance writing through it waits and retries; the other one's writes of shard 1's rows go
//! to shard 1's second replica. After that every event and alert is visible exactly once
//! through the store's reads; a third instance in a new consumer group replays both topics
//! from the start, through a third node, and still nothing shows twice (every copy of a row
//! lands on the shard that holds it, where ReplacingMergeTree collapses it); the replicas of
//! each shard hold the same rows; and each municipality's reads see its own alerts only.
//!
//! The two instances take their topics by static assignment: the development broker does not
//! reliably rebalance a consumer group (DEVELOPERS.md, "Why tansu, and its limits").

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use varde_core::Kommunenummer;
use varde_store::clickhouse::{ClickHouseSettings, ClickHouseStore};
use varde_store::{AlertQuery, EventQuery, EventStore};
use varde_testkit::process::{
    Guard, collector_config, collector_send, pipeline_config, start_pipeline, static_assignment,
    write_syslog_lines,
};
use varde_testkit::{TestEnv, eventually, workspace_root};
use varde_transport::events_topic;
use varde_transport::kafka::{KafkaSettings, ensure_topics};

/// Lines per collector.
const LINES: usize = 6_000;
/// One planted root password login per this many lines.
const ROOT_EVERY: usize = 50;
/// Collectors per municipality.
const COLLECTORS: usize = 2;
/// The two municipalities: Bergen and Oslo.
const TENANTS: [&str; 2] = ["4601", "0301"];

fn varde() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_varde"))
}

/// `deploy/dev/cluster.sh <args>`, with the development directory the services use.
fn cluster_sh(args: &[&str]) {
    let out = Command::new(workspace_root().join("deploy/dev/cluster.sh"))
        .args(args)
        .output()
        .expect("run deploy/dev/cluster.sh");
    assert!(
        out.status.success(),
        "cluster.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The pid of a cluster node's server, from the pid file cluster.sh keeps.
fn node_pid(shard: u16, replica: u16) -> String {
    let dev = std::env::var("VARDE_DEV_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| workspace_root().join(".dev"));
    let file = dev.join(format!("cluster/ch-{shard}-{replica}/clickhouse.pid"));
    std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .trim()
        .to_owned()
}

/// A pipeline configuration on the cluster through `clickhouse`, taking `tenant`'s topic by
/// static assignment; `name` makes the file (and, with `group`, the consumer group) its own.
fn cluster_pipeline(
    dir: &Path,
    name: &str,
    kafka: &KafkaSettings,
    clickhouse: &ClickHouseSettings,
    tenants: &[&str],
    group: Option<&str>,
) -> PathBuf {
    let sub = dir.join(name);
    std::fs::create_dir_all(&sub).expect("dir");
    let config = pipeline_config(&sub, kafka, clickhouse, 4);
    static_assignment(&config, tenants[0]);
    let mut text = std::fs::read_to_string(&config).expect("read config");
    let list: Vec<String> = tenants.iter().map(|t| format!("\"{t}\"")).collect();
    text = text.replacen(
        &format!("tenants = [\"{}\"]", tenants[0]),
        &format!("tenants = [{}]", list.join(", ")),
        1,
    );
    text = text.replacen(
        &format!("database = \"{}\"\n", clickhouse.database),
        &format!(
            "database = \"{}\"\ncluster = \"varde\"\n",
            clickhouse.database
        ),
        1,
    );
    if let Some(group) = group {
        text = text.replacen("pipeline\"\n", &format!("{group}\"\n"), 1);
    }
    std::fs::write(&config, text).expect("write config");
    config
}

async fn visible_events(store: &ClickHouseStore) -> u64 {
    store
        .event_counts()
        .await
        .map(|c| c.iter().map(|c| c.events).sum())
        .unwrap_or(0)
}

/// Every event and alert of both municipalities visible once, each municipality's alerts its
/// own.
async fn assert_exact(store: &ClickHouseStore, per_tenant: usize) {
    let events = per_tenant * TENANTS.len();
    eventually("every event stored", Duration::from_secs(300), || async {
        (visible_events(store).await >= events as u64).then_some(())
    })
    .await;
    assert_eq!(visible_events(store).await, events as u64, "events exact");
    let planted = per_tenant / ROOT_EVERY;
    for tenant in TENANTS {
        let k = Kommunenummer::parse(tenant).expect("tenant");
        let read = store
            .events(&EventQuery {
                tenant: Some(k),
                limit: 10 * per_tenant as u64,
            })
            .await
            .expect("read events");
        assert_eq!(
            read.len(),
            per_tenant,
            "{tenant}: no duplicate event visible"
        );
        let alerts = eventually("every alert stored", Duration::from_secs(120), || async {
            let a = store
                .alerts(&AlertQuery {
                    tenant: Some(k),
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
            "{tenant}: one alert per planted login"
        );
        assert!(
            alerts.iter().all(|a| a.tenant == tenant),
            "{tenant} reads another municipality's alert"
        );
    }
}

/// Rows of `table` on each node, after the node has caught up with its shard's log.
async fn rows_per_node(env: &TestEnv, table: &str) -> Vec<u64> {
    let mut out = Vec::new();
    for node in 0..4 {
        let s = ClickHouseStore::new(&env.cluster_clickhouse(node)).expect("store");
        s.execute(&format!("SYSTEM SYNC REPLICA {{db}}.{table}_local"))
            .await
            .expect("sync replica");
        let n = s
            .select_strings(&format!(
                "SELECT toString(count()) FROM {{db}}.{table}_local FINAL"
            ))
            .await
            .expect("count")[0]
            .parse::<u64>()
            .expect("number");
        out.push(n);
    }
    out
}

/// Runs `check` until its third value is true or `timeout` passes; keeps the last figures in
/// `last`; whether it became true.
async fn eventually_or_none<F, Fut>(
    timeout: Duration,
    mut check: F,
    last: &mut (Vec<u64>, Vec<u64>),
) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = (Vec<u64>, Vec<u64>, bool)>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (events, alerts, done) = check().await;
        *last = (events, alerts);
        if done {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_pipelines_on_a_cluster_lose_and_duplicate_nothing_through_a_replica_s_crash() {
    let env = TestEnv::new("cluster_e2e");
    let kafka = env.kafka();
    // Pipeline A and the collectors' registrations through shard 1's first replica, pipeline
    // B through shard 2's first replica, the checks through shard 2's second.
    let (via_a, via_b, via_check) = (
        env.cluster_clickhouse(0),
        env.cluster_clickhouse(2),
        env.cluster_clickhouse(3),
    );
    let store = env.cluster_store(3).await;
    for tenant in TENANTS {
        let topic = events_topic(
            &kafka.topic_prefix,
            Kommunenummer::parse(tenant).expect("tenant"),
        );
        ensure_topics(&kafka, &[(topic, 2)])
            .await
            .expect("create topic");
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("syslog.log");
    write_syslog_lines(&log, LINES, ROOT_EVERY);
    for tenant in TENANTS {
        for c in 0..COLLECTORS {
            let config = collector_config(
                dir.path(),
                &format!("k{tenant}-cl{c}"),
                tenant,
                &kafka,
                &via_a,
                250,
            );
            collector_send(&config, &log);
        }
    }
    let per_tenant = LINES * COLLECTORS;

    let a = cluster_pipeline(dir.path(), "a", &kafka, &via_a, &[TENANTS[0]], None);
    let b = cluster_pipeline(dir.path(), "b", &kafka, &via_b, &[TENANTS[1]], None);
    let _a = start_pipeline(varde(), &a, Some(&dir.path().join("a.log")));
    let _b = start_pipeline(varde(), &b, Some(&dir.path().join("b.log")));

    let at_kill = eventually("some rows stored", Duration::from_secs(120), || async {
        let n = visible_events(&store).await;
        (n > 0).then_some(n)
    })
    .await;
    let pid = node_pid(1, 1);
    let killed = Command::new("kill")
        .args(["-9", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    eprintln!(
        "shard 1 replica 1 killed -9 with {at_kill} of {} events stored",
        per_tenant * 2
    );
    assert!(
        at_kill < (per_tenant * 2) as u64,
        "the pipelines finished before the kill; the test proves nothing"
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster_sh(&["start-node", "1", "1"]);
    assert_exact(&store, per_tenant).await;

    // A third instance in a new consumer group replays both topics through another node.
    let replay = cluster_pipeline(
        dir.path(),
        "replay",
        &kafka,
        &via_check,
        &TENANTS,
        Some("replay"),
    );
    let mut replay_guard: Guard =
        start_pipeline(varde(), &replay, Some(&dir.path().join("replay.log")));
    // It has replayed everything once its committed offsets are those of the first two (read
    // after their last commits settled).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (first, again) = (
        format!("{}pipeline", kafka.topic_prefix),
        format!("{}replay", kafka.topic_prefix),
    );
    for tenant in TENANTS {
        let topic = events_topic(
            &kafka.topic_prefix,
            Kommunenummer::parse(tenant).expect("tenant"),
        );
        let done = varde_testkit::committed_offsets(&kafka, &first, &topic).await;
        assert!(
            done.iter().sum::<i64>() > 0,
            "{tenant}: nothing committed: {done:?}"
        );
        eventually(
            "the replay to reach the end",
            Duration::from_secs(300),
            || {
                let (kafka, again, topic, done) =
                    (kafka.clone(), again.clone(), topic.clone(), done.clone());
                async move {
                    let offsets = varde_testkit::committed_offsets(&kafka, &again, &topic).await;
                    (offsets == done).then_some(())
                }
            },
        )
        .await;
    }
    replay_guard.kill9();
    assert_exact(&store, per_tenant).await;

    // Replicas converge: both replicas of a shard come to hold the same rows (the restarted
    // one fetches what it missed in the background), and the shards together hold each event
    // once.
    let mut last = (Vec::new(), Vec::new());
    let converged = eventually_or_none(
        Duration::from_secs(120),
        || async {
            let events = rows_per_node(&env, "events").await;
            let alerts = rows_per_node(&env, "alerts").await;
            let same = events[0] == events[1]
                && events[2] == events[3]
                && alerts[0] == alerts[1]
                && alerts[2] == alerts[3];
            (events.clone(), alerts.clone(), same)
        },
        &mut last,
    )
    .await;
    let (events, alerts) = last;
    assert!(
        converged,
        "replicas did not converge in 120 s: events per node {events:?}, alerts per node {alerts:?}"
    );
    assert_eq!(events[0] + events[2], (per_tenant * 2) as u64, "{events:?}");
    assert_eq!(
        alerts[0] + alerts[2],
        (per_tenant * 2 / ROOT_EVERY) as u64,
        "{alerts:?}"
    );
    store.drop_database().await.expect("drop on the cluster");
}
