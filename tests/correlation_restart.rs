//! A correlation window survives `kill -9`: the pipeline, as a process against the real Kafka
//! and ClickHouse of `deploy/dev/services.sh up`, takes six of the ten failed root logins that
//! the pack's burst correlation (`lnx_sshd_admin_login_burst`: ten within ten minutes on one
//! server) needs, commits them, and is killed. The restarted pipeline gets the other four only:
//! the first six are behind the committed offsets, so only the hit log
//! (`correlation_hits`) can bring them back. The correlation fires exactly once, over all ten.

use std::path::Path;
use std::time::Duration;

use varde_core::Kommunenummer;
use varde_store::{AlertQuery, EventStore};
use varde_testkit::process::{
    collector_config, collector_send, pipeline_config, start_pipeline,
    start_second_pipeline_with_metrics, static_assignment,
};
use varde_testkit::{TestEnv, eventually};
use varde_transport::events_topic;
use varde_transport::kafka::ensure_topics;

/// `id` of the pack's `lnx_sshd_admin_login_burst.yml`.
const BURST: &str = "9b4e1f73-2c8d-4a6e-b5f0-1d3a7c9e2b68";

fn varde() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_varde"))
}

/// Failed root password logins `from..to` to one Oslo server, a second apart.
fn failed_root_logins(path: &Path, from: usize, to: usize) {
    let lines: String = (from..to)
        .map(|i| {
            format!(
                "<38>1 2026-12-01T10:00:{i:02}Z app01.oslo.kommune.no sshd 77 - - Failed password for root from 198.51.100.20 port {} ssh2\n",
                40_000 + i
            )
        })
        .collect();
    std::fs::write(path, lines).expect("write log lines");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_open_at_kill_9_fires_once_after_the_restart() {
    let env = TestEnv::new("corrrestart");
    let kafka = env.kafka();
    let clickhouse = env.clickhouse();
    let store = env.store().await;
    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    let topic = events_topic(&kafka.topic_prefix, oslo);
    ensure_topics(&kafka, &[(topic.clone(), 1)])
        .await
        .expect("create topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = collector_config(dir.path(), "k0301-burst", "0301", &kafka, &clickhouse, 100);
    let group = format!("{}pipeline", kafka.topic_prefix);

    // Static assignment: the restarted instance resumes from the killed one's commits at once.
    let config = pipeline_config(dir.path(), &kafka, &clickhouse, 4);
    let text = static_assignment(&config, "0301");

    let first_lines = dir.path().join("first.log");
    failed_root_logins(&first_lines, 0, 6);
    collector_send(&collector, &first_lines);
    let mut first = start_pipeline(varde(), &config, Some(&dir.path().join("pipeline1.log")));
    eventually(
        "six hits logged and their message committed",
        Duration::from_secs(120),
        || async {
            let hits = store.correlation_hits(0).await.ok()?;
            let committed: i64 = varde_testkit::committed_offsets(&kafka, &group, &topic)
                .await
                .iter()
                .sum();
            (hits.len() == 6 && committed > 0).then_some(())
        },
    )
    .await;
    first.kill9();
    let burst_alerts = || async {
        store
            .alerts(&AlertQuery {
                tenant: Some(oslo),
                limit: 100,
            })
            .await
            .expect("read alerts")
            .into_iter()
            .filter(|a| a.rule_id == BURST)
            .collect::<Vec<_>>()
    };
    assert!(
        burst_alerts().await.is_empty(),
        "six hits must not fire a correlation of ten"
    );
    let hits = store.correlation_hits(0).await.expect("read the hit log");
    assert!(
        hits.iter()
            .all(|h| h.correlation == BURST && h.group == ["0301", "app01.oslo.kommune.no"]),
        "{hits:?}"
    );

    let second_lines = dir.path().join("second.log");
    failed_root_logins(&second_lines, 6, 10);
    collector_send(&collector, &second_lines);
    let (_second, metrics) = start_second_pipeline_with_metrics(
        varde(),
        dir.path(),
        &text,
        &dir.path().join("pipeline2.log"),
    );
    let fired = eventually(
        "the burst correlation fired",
        Duration::from_secs(120),
        || async {
            let a = burst_alerts().await;
            (!a.is_empty()).then_some(a)
        },
    )
    .await;
    // Everything committed: nothing more can come.
    eventually(
        "both messages committed",
        Duration::from_secs(60),
        || async {
            let committed: i64 = varde_testkit::committed_offsets(&kafka, &group, &topic)
                .await
                .iter()
                .sum();
            (committed >= 2).then_some(())
        },
    )
    .await;
    let after = burst_alerts().await;
    assert_eq!(after.len(), 1, "fired once: {after:?}");
    assert_eq!(fired[0].alert_id, after[0].alert_id);
    let field = |name: &str| after[0].matched_field(name).map(str::to_owned);
    assert_eq!(field("correlation.hits").as_deref(), Some("10"));
    assert_eq!(
        field("correlation.scope").as_deref(),
        Some("one municipality")
    );
    assert_eq!(field("host").as_deref(), Some("app01.oslo.kommune.no"));
    // The window's first hit is the first login, second 0 of 10:00.
    assert_eq!(
        field("correlation.first_us").as_deref(),
        Some("1796119200000000")
    );
    let (_, body) = varde_testkit::http_get(metrics, "/metrics").await;
    assert!(
        body.lines()
            .any(|l| l == "varde_pipeline_correlation_hits_restored_total 6"),
        "{body}"
    );
    // The base rule is referenced with `generate: false`: no alert of its own.
    let all = store
        .alerts(&AlertQuery {
            tenant: Some(oslo),
            limit: 100,
        })
        .await
        .expect("read alerts");
    assert_eq!(all.len(), 1, "{all:?}");
    env.cleanup().await;
}
