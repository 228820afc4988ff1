//! `/metrics` and `/health` of the pipeline, served in-process on a free port and read with a
//! plain TCP client; and retention through the pipeline's scheduler on the real ClickHouse
//! (`deploy/dev/services.sh up`), counted where `/metrics` shows it.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::watch;
use varde_core::{Envelope, Kommunenummer};
use varde_pipeline::metrics::{LagReader, LagStats, MetricsState, probe_store, refresh_lag, serve};
use varde_pipeline::retention::{RetentionSettings, RetentionStats, retention_pass, run_retention};
use varde_pipeline::{Stage, Stats};
use varde_store::embedded::EmbeddedStore;
use varde_store::{EventStore, Table, today_day};
use varde_testkit::{TestEnv, envelope_on};
use varde_transport::PartitionLag;

use varde_testkit::http_get as get;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_are_served() {
    let stats = Arc::new(Stats::default());
    stats.messages.store(12, Ordering::Relaxed);
    stats.rows_written.store(340, Ordering::Relaxed);
    stats.rules_loaded.store(9, Ordering::Relaxed);
    stats.stage_us[Stage::Detect as usize].store(1_500_000, Ordering::Relaxed);
    stats.running.store(true, Ordering::Relaxed);
    stats.write_succeeded();

    // Retention on the embedded store: two old days go.
    let store = EmbeddedStore::new();
    let today = today_day();
    for (seq, day) in [(1, today - 50), (2, today - 31), (3, today - 2)] {
        store
            .write_envelopes(&[envelope_on(day, seq, 4)])
            .await
            .expect("write");
    }
    let retention = RetentionSettings::default();
    let retention_stats = Arc::new(RetentionStats::default());
    let dropped = retention_pass(&store, &retention, today, &retention_stats).await;
    assert_eq!(dropped.len(), 2, "{dropped:?}");

    // Lag from a stand-in reader (the Kafka one is tested in varde-transport).
    let (stop, shutdown) = watch::channel(false);
    let lag = Arc::new(LagStats::default());
    let read: LagReader = Arc::new(|| {
        Ok(vec![PartitionLag {
            topic: "varde.events.0301".into(),
            partition: 1,
            position: Some(120),
            committed: Some(100),
            low_watermark: Some(0),
            high_watermark: Some(130),
        }])
    });
    let refresher = tokio::spawn(refresh_lag(
        read,
        lag.clone(),
        Duration::from_secs(60),
        shutdown.clone(),
    ));
    while lag.partitions().is_empty() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let state = Arc::new(MetricsState {
        group_id: "varde-pipeline".into(),
        stats: stats.clone(),
        lag,
        retention,
        retention_stats,
        unhealthy_after: Duration::from_secs(30),
        started: Instant::now(),
    });
    let server = tokio::spawn(serve(listener, state, shutdown));

    let (code, text) = get(addr, "/metrics").await;
    assert_eq!(code, 200);
    for line in [
        "# TYPE varde_pipeline_messages_total counter",
        "varde_pipeline_messages_total 12",
        "varde_pipeline_rows_written_total 340",
        "varde_pipeline_rules_loaded 9",
        "# TYPE varde_pipeline_stage_seconds_total counter",
        "varde_pipeline_stage_seconds_total{stage=\"detect\"} 1.5",
        "varde_pipeline_stage_seconds_total{stage=\"commit\"} 0.0",
        "varde_pipeline_rejected_total{reason=\"tenant_mismatch\"} 0",
        "varde_pipeline_running 1",
        "varde_pipeline_consumer_position{topic=\"varde.events.0301\",partition=\"1\"} 120",
        "varde_pipeline_consumer_committed_offset{topic=\"varde.events.0301\",partition=\"1\"} 100",
        "varde_pipeline_partition_high_watermark{topic=\"varde.events.0301\",partition=\"1\"} 130",
        "varde_pipeline_consumer_lag_messages{topic=\"varde.events.0301\",partition=\"1\"} 30",
        "varde_pipeline_retention_dropped_partitions_total{table=\"events\"} 2",
        "varde_pipeline_retention_dropped_rows_total{table=\"events\"} 8",
        "varde_pipeline_retention_dropped_partitions_total{table=\"alerts\"} 0",
        "varde_pipeline_retention_days{table=\"alerts\"} 400",
        "varde_pipeline_retention_runs_total 1",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    assert!(
        text.lines()
            .any(|l| l.starts_with("varde_pipeline_retention_last_run_timestamp_seconds 1")),
        "{text}"
    );
    // A scraper's parser reads the page: every sample is typed by its family.
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text");
    assert!(scrape.samples.len() > 40, "{text}");
    let untyped: Vec<&str> = scrape
        .samples
        .iter()
        .filter(|s| matches!(s.value, prometheus_parse::Value::Untyped(_)))
        .map(|s| s.metric.as_str())
        .collect();
    assert!(untyped.is_empty(), "samples without a TYPE: {untyped:?}");
    // Every sample is a varde_pipeline_ metric.
    assert!(
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| l.starts_with("varde_pipeline_")),
        "{text}"
    );

    let (code, body) = get(addr, "/health").await;
    assert_eq!(code, 200, "{body}");
    let health: serde_json::Value = serde_json::from_str(&body).expect("/health is JSON");
    assert_eq!(health["status"], "ok", "{body}");
    assert_eq!(health["messages"], 12, "{body}");

    // Writes failing for a minute: the operator sees the store outage.
    let minute_ago = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_micros(),
    )
    .expect("µs")
        - 60_000_000;
    stats
        .write_failing_since_us
        .store(minute_ago, Ordering::Relaxed);
    let (code, body) = get(addr, "/health").await;
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("\"status\":\"store_failing\""), "{body}");
    let (_, text) = get(addr, "/metrics").await;
    let failing: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("varde_pipeline_store_write_failing_seconds "))
        .and_then(|v| v.parse().ok())
        .expect("failing gauge");
    assert!(failing >= 60.0, "{failing}");

    // A write succeeds again: healthy.
    stats.write_succeeded();
    assert_eq!(get(addr, "/health").await.0, 200);
    // The loop stopped: unhealthy.
    stats.running.store(false, Ordering::Relaxed);
    let (code, body) = get(addr, "/health").await;
    assert_eq!(code, 503);
    assert!(body.contains("stopped"), "{body}");

    assert_eq!(get(addr, "/nothing").await.0, 404);
    let _ = stop.send(true);
    server.await.expect("server stops on shutdown");
    refresher.await.expect("refresher stops on shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_on_clickhouse_and_is_counted() {
    let env = TestEnv::new("pipeline_retention");
    let store = env.store().await;
    let today = today_day();
    for (seq, day) in [
        (1, today - 45),
        (2, today - 30),
        (3, today - 29),
        (4, today),
    ] {
        store
            .write_envelopes(&[envelope_on(day, seq, 3)])
            .await
            .expect("write");
    }
    let settings = RetentionSettings {
        events_days: 30,
        ..RetentionSettings::default()
    };
    let stats = Arc::new(RetentionStats::default());
    let (stop, shutdown) = watch::channel(false);
    let task = {
        let (store, stats) = (store.clone(), stats.clone());
        tokio::spawn(async move { run_retention(&store, settings, &stats, shutdown).await })
    };
    // The first run happens at start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while stats.runs.load(Ordering::Relaxed) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(true);
    task.await.expect("retention task");
    assert_eq!(stats.runs.load(Ordering::Relaxed), 1);
    assert_eq!(stats.errors.load(Ordering::Relaxed), 0);
    // today − 45 is gone; today − 30 is the first day kept.
    assert_eq!(stats.dropped_partitions(Table::Events), 1);
    assert_eq!(stats.dropped_rows(Table::Events), 3);
    let counts = store.event_counts().await.expect("counts");
    assert_eq!(counts.iter().map(|c| c.events).sum::<u64>(), 9);
    // A second run drops nothing.
    assert!(
        retention_pass(&store, &settings, today, &stats)
            .await
            .is_empty()
    );
    assert_eq!(stats.dropped_partitions(Table::Events), 1);
    env.cleanup().await;
}

#[tokio::test]
async fn a_dead_store_shows_in_the_liveness_check() {
    let settings = varde_store::clickhouse::ClickHouseSettings::new("http://127.0.0.1:1", "varde");
    let store = varde_store::clickhouse::ClickHouseStore::new(&settings).expect("store");
    let stats = Stats::default();
    let (_stop, shutdown) = watch::channel(false);
    let _ = tokio::time::timeout(
        Duration::from_secs(2),
        probe_store(&store, &stats, Duration::from_secs(60), shutdown),
    )
    .await;
    assert_ne!(stats.probe_failing_since_us.load(Ordering::Relaxed), 0);
    assert_eq!(stats.store_last_ok_us.load(Ordering::Relaxed), 0);
}

/// The embedded store, refusing event writes while `down` is set (as ClickHouse down would).
struct FlakyStore {
    inner: EmbeddedStore,
    down: std::sync::atomic::AtomicBool,
}

impl EventStore for FlakyStore {
    async fn write_envelopes(&self, envelopes: &[Envelope]) -> varde_store::Result<u64> {
        if self.down.load(Ordering::Relaxed) {
            return Err(varde_store::Error::BadPartitionId(
                "store down (test)".into(),
            ));
        }
        self.inner.write_envelopes(envelopes).await
    }
    async fn event_counts(&self) -> varde_store::Result<Vec<varde_store::EventCount>> {
        self.inner.event_counts().await
    }
    async fn events(
        &self,
        query: &varde_store::EventQuery,
    ) -> varde_store::Result<Vec<varde_store::StoredEvent>> {
        self.inner.events(query).await
    }
    async fn write_alerts(&self, alerts: &[varde_store::Alert]) -> varde_store::Result<u64> {
        self.inner.write_alerts(alerts).await
    }
    async fn alerts(
        &self,
        query: &varde_store::AlertQuery,
    ) -> varde_store::Result<Vec<varde_store::Alert>> {
        self.inner.alerts(query).await
    }
    async fn recent_alerts(
        &self,
        query: &varde_store::AlertQuery,
    ) -> varde_store::Result<Vec<varde_store::Alert>> {
        self.inner.recent_alerts(query).await
    }
    async fn alert_counts(&self) -> varde_store::Result<Vec<varde_store::AlertCount>> {
        self.inner.alert_counts().await
    }
    async fn write_dead_letters(
        &self,
        letters: &[varde_store::DeadLetter],
    ) -> varde_store::Result<u64> {
        self.inner.write_dead_letters(letters).await
    }
    async fn dead_letters(&self, limit: u64) -> varde_store::Result<Vec<varde_store::DeadLetter>> {
        self.inner.dead_letters(limit).await
    }
    async fn drop_partitions_older_than(
        &self,
        table: Table,
        cutoff_day: u16,
    ) -> varde_store::Result<Vec<varde_store::DroppedPartition>> {
        self.inner
            .drop_partitions_older_than(table, cutoff_day)
            .await
    }
    async fn check_alive(&self) -> varde_store::Result<()> {
        self.inner.check_alive().await
    }
    async fn alert(
        &self,
        tenant: Option<Kommunenummer>,
        id: varde_core::AlertId,
    ) -> varde_store::Result<Option<varde_store::Alert>> {
        self.inner.alert(tenant, id).await
    }
    async fn event(
        &self,
        tenant: Option<Kommunenummer>,
        id: varde_core::EventId,
    ) -> varde_store::Result<Option<varde_store::StoredEvent>> {
        self.inner.event(tenant, id).await
    }
    async fn groups(
        &self,
        tenant: Option<Kommunenummer>,
        keys: &[[u8; 16]],
    ) -> varde_store::Result<Vec<varde_store::GroupSeen>> {
        self.inner.groups(tenant, keys).await
    }
    async fn write_triage(
        &self,
        actions: &[varde_store::TriageAction],
    ) -> varde_store::Result<u64> {
        self.inner.write_triage(actions).await
    }
    async fn alerts_detected_after(
        &self,
        tenant: Option<Kommunenummer>,
        since_us: i64,
    ) -> varde_store::Result<u64> {
        self.inner.alerts_detected_after(tenant, since_us).await
    }
    async fn hunt(
        &self,
        tenant: Option<Kommunenummer>,
        hunt: &varde_store::Hunt,
    ) -> varde_store::Result<Vec<varde_store::StoredEvent>> {
        self.inner.hunt(tenant, hunt).await
    }
    async fn write_rules(
        &self,
        loaded_at_us: i64,
        entries: &[varde_store::RuleEntry],
    ) -> varde_store::Result<u64> {
        self.inner.write_rules(loaded_at_us, entries).await
    }
    async fn rules(&self) -> varde_store::Result<(Option<i64>, Vec<varde_store::RuleEntry>)> {
        self.inner.rules().await
    }
    async fn rule(&self, rule_id: &str) -> varde_store::Result<Option<varde_store::RuleEntry>> {
        self.inner.rule(rule_id).await
    }
    async fn alert_volume(
        &self,
        tenant: Option<Kommunenummer>,
        by: varde_store::VolumeBy,
        from_us: i64,
        to_us: i64,
        bucket_s: u32,
    ) -> varde_store::Result<Vec<varde_store::VolumePoint>> {
        self.inner
            .alert_volume(tenant, by, from_us, to_us, bucket_s)
            .await
    }
    async fn group_alerts(
        &self,
        tenant: Option<Kommunenummer>,
        dedup_key: [u8; 16],
        limit: u64,
    ) -> varde_store::Result<Vec<varde_store::Alert>> {
        self.inner.group_alerts(tenant, dedup_key, limit).await
    }
    async fn component_spread(
        &self,
        tenant: Option<Kommunenummer>,
        component: &str,
        since_us: i64,
    ) -> varde_store::Result<Vec<(String, u64)>> {
        self.inner
            .component_spread(tenant, component, since_us)
            .await
    }
    async fn rule_spread(
        &self,
        rule_id: &str,
        since_us: i64,
    ) -> varde_store::Result<Vec<(String, u64)>> {
        self.inner.rule_spread(rule_id, since_us).await
    }
    async fn collectors(
        &self,
        tenant: Option<Kommunenummer>,
        now_us: i64,
    ) -> varde_store::Result<Vec<varde_store::CollectorSeen>> {
        self.inner.collectors(tenant, now_us).await
    }
    async fn triage_log(&self, limit: u64) -> varde_store::Result<Vec<varde_store::TriageAction>> {
        self.inner.triage_log(limit).await
    }
    async fn write_incident_changes(
        &self,
        changes: &[varde_store::incident::IncidentChange],
    ) -> varde_store::Result<u64> {
        self.inner.write_incident_changes(changes).await
    }
    async fn incident_changes(
        &self,
        tenant: Option<Kommunenummer>,
        incident: Option<[u8; 16]>,
    ) -> varde_store::Result<Vec<varde_store::incident::IncidentChange>> {
        self.inner.incident_changes(tenant, incident).await
    }
    async fn write_rule_switches(
        &self,
        switches: &[varde_store::RuleSwitch],
    ) -> varde_store::Result<u64> {
        self.inner.write_rule_switches(switches).await
    }
    async fn rule_switches(&self) -> varde_store::Result<Vec<varde_store::RuleSwitch>> {
        self.inner.rule_switches().await
    }
    async fn write_correlation_hits(
        &self,
        hits: &[varde_store::CorrelationHit],
    ) -> varde_store::Result<u64> {
        self.inner.write_correlation_hits(hits).await
    }
    async fn correlation_hits(
        &self,
        since_us: i64,
    ) -> varde_store::Result<Vec<varde_store::CorrelationHit>> {
        self.inner.correlation_hits(since_us).await
    }
    async fn alerts_detected(
        &self,
        from_us: i64,
        to_us: i64,
        limit: u64,
    ) -> varde_store::Result<Vec<varde_store::Alert>> {
        self.inner.alerts_detected(from_us, to_us, limit).await
    }
    async fn campaign_alerts(
        &self,
        rule_id: &str,
        window: &str,
        since_us: i64,
        limit: u64,
    ) -> varde_store::Result<Vec<varde_store::Alert>> {
        self.inner
            .campaign_alerts(rule_id, window, since_us, limit)
            .await
    }
    async fn window_hits(
        &self,
        tenant: Option<Kommunenummer>,
        window: &varde_store::WindowQuery,
        limit: u64,
    ) -> varde_store::Result<Vec<varde_store::CorrelationHit>> {
        self.inner.window_hits(tenant, window, limit).await
    }
    async fn triage(
        &self,
        tenant: Option<Kommunenummer>,
        keys: &[[u8; 16]],
    ) -> varde_store::Result<Vec<varde_store::TriageAction>> {
        self.inner.triage(tenant, keys).await
    }
}

/// The registry is read from the embedded store whether or not its event writes fail.
impl varde_store::collectors::Collectors for FlakyStore {
    async fn write_identity(
        &self,
        records: &[varde_store::collectors::IdentityRecord],
    ) -> varde_store::Result<u64> {
        self.inner.write_identity(records).await
    }
    async fn identity_log(
        &self,
    ) -> varde_store::Result<Vec<varde_store::collectors::IdentityRecord>> {
        self.inner.identity_log().await
    }
    async fn identity_version(&self) -> varde_store::Result<(u64, i64)> {
        self.inner.identity_version().await
    }
    async fn write_tokens(
        &self,
        records: &[varde_store::collectors::TokenRecord],
    ) -> varde_store::Result<u64> {
        self.inner.write_tokens(records).await
    }
    async fn tokens(
        &self,
        token_id: Option<&str>,
    ) -> varde_store::Result<Vec<varde_store::collectors::TokenRecord>> {
        self.inner.tokens(token_id).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_reports_a_failing_store_until_it_answers() {
    use varde_pipeline::detect::{DetectionConfig, Detector};
    use varde_pipeline::{LoopSettings, run};
    use varde_transport::{Publisher, events_topic, memory::MemoryBus};

    let bus = MemoryBus::new();
    let topic = events_topic("varde.", Kommunenummer::parse("0301").expect("Oslo"));
    let bytes = envelope_on(today_day(), 1, 5)
        .encode_signed(&varde_testkit::test_key("k0301-ret"))
        .expect("encode");
    bus.publish(&topic, b"", &bytes).await.expect("publish");
    let mut sub = bus.subscribe("g", std::slice::from_ref(&topic));
    let store = Arc::new(FlakyStore {
        inner: EmbeddedStore::new(),
        down: true.into(),
    });
    varde_testkit::enrol_test_collector(&store.inner, "k0301-ret", "0301").await;
    let stats = Arc::new(Stats::default());
    let (stop, shutdown) = watch::channel(false);
    let (mut detector, _) = Detector::from_config(&DetectionConfig {
        reload_interval_s: 0,
        ..DetectionConfig::default()
    })
    .expect("pack");
    let since_waiting = Instant::now();
    let task = {
        let (store, stats) = (store.clone(), stats.clone());
        tokio::spawn(async move {
            run(
                &mut sub,
                &*store,
                &mut detector,
                LoopSettings::default(),
                &stats,
                shutdown,
            )
            .await;
        })
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Stats::get(&stats.write_retries) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(Stats::get(&stats.write_retries) >= 2);
    assert!(stats.running.load(Ordering::Relaxed));
    let since = stats.write_failing_since_us.load(Ordering::Relaxed);
    assert_ne!(since, 0, "the failure's start is recorded");
    assert_eq!(
        Stats::get(&stats.commits),
        0,
        "nothing committed while failing"
    );

    store.down.store(false, Ordering::Relaxed);
    while Stats::get(&stats.commits) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(Stats::get(&stats.rows_written), 5);
    // The waits for the store are the store stage's time (two retries wait at least 100 ms).
    let store_us = Stats::get(&stats.stage_us[Stage::Store as usize]);
    let waited_us = u64::try_from(since_waiting.elapsed().as_micros()).unwrap_or(u64::MAX);
    assert!(
        (100_000..=waited_us).contains(&store_us),
        "store stage {store_us} µs of {waited_us} µs"
    );
    assert_eq!(stats.write_failing_since_us.load(Ordering::Relaxed), 0);
    assert!(stats.store_last_ok_us.load(Ordering::Relaxed) >= since);
    let _ = stop.send(true);
    task.await.expect("loop stops");
    assert!(!stats.running.load(Ordering::Relaxed));
}
