//! `/metrics` (Prometheus text format 0.0.4) and `/health` of `varde pipeline`, served on a
//! local port (the `[metrics]` section).
//!
//! The server is the collector's too ([`varde_transport::status`], hyper's HTTP/1 handler): two
//! read-only pages, no web framework. Listen on loopback or a management network: it serves
//! counts, not data.
//!
//! - `GET /metrics`: the loop's counters ([`Stats`]), rejections by reason, the store's health,
//!   consumer lag per topic and partition (refreshed in the background by [`refresh_lag`], so a
//!   scrape never waits for the broker), and retention ([`RetentionStats`]). Every name starts
//!   with `varde_pipeline_`; labels are bounded: `reason` (a fixed set), `table` (three),
//!   `topic`/`partition` (the partitions assigned to this instance).
//! - `GET /health`: `200` with a small JSON body while the loop runs and the store answers;
//!   `503` when the loop has stopped or stalled, or store writes (or, while idle, the store's
//!   liveness check, [`probe_store`]) have been failing for more than
//!   `store_unhealthy_after_s`.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, warn};
use varde_store::{EventStore, Table};
use varde_transport::PartitionLag;
use varde_transport::status::StatusCode;

use crate::retention::{RetentionSettings, RetentionStats};
use crate::{REJECT_REASONS, Stats};

/// The `[metrics]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSettings {
    /// Address to serve `/metrics` and `/health` on, e.g. `127.0.0.1:9465`.
    pub listen: SocketAddr,
    /// `/health` answers 503 once store writes (or the liveness check) have been failing this
    /// many seconds (default 30).
    #[serde(default = "default_unhealthy_after_s")]
    pub store_unhealthy_after_s: u64,
    /// Seconds between refreshes of the consumer lag (default 15).
    #[serde(default = "default_lag_interval_s")]
    pub lag_interval_s: u64,
}

fn default_unhealthy_after_s() -> u64 {
    30
}
fn default_lag_interval_s() -> u64 {
    15
}

impl MetricsSettings {
    /// Checks the values serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.store_unhealthy_after_s == 0 {
            return Err("metrics.store_unhealthy_after_s must be at least 1".into());
        }
        if self.lag_interval_s == 0 {
            return Err("metrics.lag_interval_s must be at least 1".into());
        }
        Ok(())
    }
}

/// The latest consumer lag, as [`refresh_lag`] keeps it.
#[derive(Debug, Default)]
pub struct LagStats {
    partitions: Mutex<Vec<PartitionLag>>,
    /// When the lag was last read, µs since the epoch (0: never).
    pub last_refresh_us: AtomicU64,
    /// Refreshes that failed.
    pub errors: AtomicU64,
}

impl LagStats {
    /// The latest reading, sorted by topic and partition.
    pub fn partitions(&self) -> Vec<PartitionLag> {
        self.partitions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Replaces the reading.
    pub fn set(&self, partitions: Vec<PartitionLag>) {
        *self.partitions.lock().unwrap_or_else(|p| p.into_inner()) = partitions;
        self.last_refresh_us.store(now_us(), Ordering::Relaxed);
    }
}

/// Reads the consumer's lag (a blocking call: the Kafka subscriber's
/// [`varde_transport::kafka::KafkaLagProbe::partitions`]).
pub type LagReader = Arc<dyn Fn() -> varde_transport::Result<Vec<PartitionLag>> + Send + Sync>;

/// Calls `read` on a blocking thread every `every` and keeps the answer in `lag`, until
/// `shutdown` turns true.
pub async fn refresh_lag(
    read: LagReader,
    lag: Arc<LagStats>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let reader = read.clone();
        match tokio::task::spawn_blocking(move || reader()).await {
            Ok(Ok(partitions)) => lag.set(partitions),
            Ok(Err(e)) => {
                lag.errors.fetch_add(1, Ordering::Relaxed);
                debug!(error = %e, "lag: could not read the assignment");
            }
            Err(e) => {
                lag.errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "lag: reader panicked");
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Checks every `every` that the store answers ([`EventStore::check_alive`]) and records it in
/// [`Stats::probe_failing_since_us`] and [`Stats::store_last_ok_us`]: an idle pipeline writes
/// nothing, so without it a store outage would show only when data arrives.
pub async fn probe_store<St: EventStore>(
    store: &St,
    stats: &Stats,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let now = now_us();
        match store.check_alive().await {
            Ok(()) => {
                stats.store_last_ok_us.store(now, Ordering::Relaxed);
                stats.probe_failing_since_us.store(0, Ordering::Relaxed);
            }
            Err(e) => {
                let first = stats
                    .probe_failing_since_us
                    .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok();
                if first {
                    warn!(error = %e, "store liveness check failed");
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// What the endpoint reports on.
pub struct MetricsState {
    /// The consumer group (a label of `varde_pipeline_info`).
    pub group_id: String,
    /// The loop's counters.
    pub stats: Arc<Stats>,
    /// The latest consumer lag.
    pub lag: Arc<LagStats>,
    /// Retention settings (the `varde_pipeline_retention_days` gauges).
    pub retention: RetentionSettings,
    /// Retention counters.
    pub retention_stats: Arc<RetentionStats>,
    /// `/health` turns 503 after the store has been failing this long, or the loop has not
    /// come round for this long.
    pub unhealthy_after: Duration,
    /// When the pipeline started.
    pub started: Instant,
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Seconds since `since_us` (0 when `since_us` is 0: not failing / never).
fn age_s(since_us: u64, now: u64) -> f64 {
    if since_us == 0 {
        0.0
    } else {
        now.saturating_sub(since_us) as f64 / 1e6
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Renders the Prometheus text exposition.
pub fn render(state: &MetricsState) -> String {
    let now = now_us();
    let s = &state.stats;
    let mut out = String::with_capacity(8192);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP varde_pipeline_{name} {help}");
        let _ = writeln!(out, "# TYPE varde_pipeline_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "varde_pipeline_{name}{labels} {value}");
        }
    };
    let one = |v: u64| [(String::new(), v as f64)];
    family(
        "info",
        "gauge",
        "The pipeline's consumer group and version.",
        &[(
            format!(
                "{{group_id=\"{}\",version=\"{}\"}}",
                escape(&state.group_id),
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        )],
    );
    family(
        "uptime_seconds",
        "gauge",
        "Seconds since the pipeline started.",
        &[(String::new(), state.started.elapsed().as_secs_f64())],
    );
    family(
        "running",
        "gauge",
        "1 while the consume-store-commit loop runs.",
        &one(u64::from(s.running.load(Ordering::Relaxed))),
    );
    for (name, help, c) in [
        ("messages_total", "Messages read from Kafka.", &s.messages),
        (
            "envelopes_total",
            "Envelopes accepted and stored.",
            &s.envelopes,
        ),
        (
            "rows_written_total",
            "Event rows written to the store (replays included).",
            &s.rows_written,
        ),
        (
            "write_retries_total",
            "Failed store writes while the store was unavailable; each was retried with backoff and jitter, nothing was committed meanwhile.",
            &s.write_retries,
        ),
        ("commits_total", "Offset commits made.", &s.commits),
        (
            "alerts_written_total",
            "Alerts written to the store (replays included).",
            &s.alerts_written,
        ),
        (
            "enrichment_misses_total",
            "Alerts whose event names no known shared component.",
            &s.enrichment_misses,
        ),
        (
            "detect_errors_total",
            "Envelopes detection failed on after its retries (parked whole, not stored).",
            &s.detect_errors,
        ),
        (
            "detect_retries_total",
            "Detection attempts that failed and were retried.",
            &s.detect_retries,
        ),
        (
            "store_refused_total",
            "Envelopes the store refused for their data (parked whole; the rest of the poll was stored).",
            &s.store_refused,
        ),
        (
            "jsonl_lines_total",
            "JSON lines read from the JSON-lines topics of third-party shippers.",
            &s.jsonl_lines,
        ),
        (
            "jsonl_refused_lines_total",
            "JSON lines refused (parked, one dead letter per message, reason jsonl).",
            &s.jsonl_refused_lines,
        ),
        (
            "jsonl_pseudonymised_total",
            "Identity numbers and IP addresses pseudonymised in JSON lines before storage.",
            &s.jsonl_pseudonymised,
        ),
        (
            "rule_reloads_total",
            "Rule set reloads after a rule file changed.",
            &s.rule_reloads,
        ),
        (
            "dead_letters_total",
            "Refused messages parked in the dead_letters table.",
            &s.dead_letters,
        ),
    ] {
        family(name, "counter", help, &one(get(c)));
    }
    family(
        "rules_loaded",
        "gauge",
        "Rules in use.",
        &one(get(&s.rules_loaded)),
    );
    family(
        "rule_errors",
        "gauge",
        "Rule documents that did not load at the last (re)load.",
        &one(get(&s.rule_errors)),
    );
    let rejected = s.rejected();
    let mut by_reason: Vec<(String, f64)> = REJECT_REASONS
        .iter()
        .map(|r| {
            (
                format!("{{reason=\"{r}\"}}"),
                rejected.get(r).copied().unwrap_or(0) as f64,
            )
        })
        .collect();
    by_reason.extend(
        rejected
            .iter()
            .filter(|(r, _)| !REJECT_REASONS.contains(r))
            .map(|(r, n)| (format!("{{reason=\"{}\"}}", escape(r)), *n as f64)),
    );
    family(
        "rejected_total",
        "counter",
        "Messages refused, by reason (each is logged and parked as a dead letter).",
        &by_reason,
    );
    family(
        "store_write_failing_seconds",
        "gauge",
        "How long store writes have been failing (0 while they succeed).",
        &[(String::new(), age_s(get(&s.write_failing_since_us), now))],
    );
    family(
        "store_check_failing_seconds",
        "gauge",
        "How long the store's liveness check has been failing (0 while it answers).",
        &[(String::new(), age_s(get(&s.probe_failing_since_us), now))],
    );
    family(
        "store_last_ok_timestamp_seconds",
        "gauge",
        "When the store last answered a write or a liveness check (Unix time; 0: never).",
        &[(String::new(), get(&s.store_last_ok_us) as f64 / 1e6)],
    );

    // Lag, per assigned topic and partition.
    let lag = state.lag.partitions();
    let per_partition = |f: &dyn Fn(&PartitionLag) -> Option<i64>| -> Vec<(String, f64)> {
        lag.iter()
            .filter_map(|p| {
                let v = f(p)?;
                Some((
                    format!(
                        "{{topic=\"{}\",partition=\"{}\"}}",
                        escape(&p.topic),
                        p.partition
                    ),
                    v as f64,
                ))
            })
            .collect()
    };
    family(
        "consumer_position",
        "gauge",
        "The next offset this instance will read, per assigned partition (the consumer's own count).",
        &per_partition(&|p| p.position),
    );
    family(
        "consumer_committed_offset",
        "gauge",
        "The group's committed offset (the next offset to read after a restart).",
        &per_partition(&|p| p.committed),
    );
    family(
        "partition_high_watermark",
        "gauge",
        "The broker's high watermark (offset of the next message produced).",
        &per_partition(&|p| p.high_watermark),
    );
    family(
        "partition_low_watermark",
        "gauge",
        "The broker's low watermark (first offset still held).",
        &per_partition(&|p| p.low_watermark),
    );
    family(
        "consumer_lag_messages",
        "gauge",
        "Messages not yet committed: high watermark - committed offset (low watermark when none).",
        &per_partition(&PartitionLag::committed_lag),
    );
    family(
        "lag_last_refresh_timestamp_seconds",
        "gauge",
        "When the lag figures were last read (Unix time; 0: never).",
        &[(String::new(), get(&state.lag.last_refresh_us) as f64 / 1e6)],
    );
    family(
        "lag_refresh_errors_total",
        "counter",
        "Lag refreshes that failed.",
        &one(get(&state.lag.errors)),
    );

    // Retention.
    let per_table = |f: &dyn Fn(Table) -> u64| -> Vec<(String, f64)> {
        Table::ALL
            .iter()
            .map(|t| (format!("{{table=\"{}\"}}", t.name()), f(*t) as f64))
            .collect()
    };
    let r = &state.retention_stats;
    family(
        "retention_days",
        "gauge",
        "Days kept per table (0: forever).",
        &per_table(&|t| u64::from(state.retention.days(t))),
    );
    family(
        "retention_dropped_partitions_total",
        "counter",
        "Day partitions dropped by retention, per table.",
        &per_table(&|t| r.dropped_partitions(t)),
    );
    family(
        "retention_dropped_rows_total",
        "counter",
        "Rows in the day partitions dropped by retention, per table.",
        &per_table(&|t| r.dropped_rows(t)),
    );
    family(
        "retention_runs_total",
        "counter",
        "Retention runs completed.",
        &one(get(&r.runs)),
    );
    family(
        "retention_errors_total",
        "counter",
        "Tables a retention run failed on (retried at the next run).",
        &one(get(&r.errors)),
    );
    family(
        "retention_last_run_timestamp_seconds",
        "gauge",
        "When the last retention run ended (Unix time; 0: none yet).",
        &[(String::new(), get(&r.last_run_us) as f64 / 1e6)],
    );
    out
}

/// The `/health` answer: status code and JSON body.
pub fn health(state: &MetricsState) -> (StatusCode, String) {
    let now = now_us();
    let s = &state.stats;
    let limit = state.unhealthy_after.as_secs_f64();
    let running = s.running.load(Ordering::Relaxed);
    let write_failing = age_s(get(&s.write_failing_since_us), now);
    let check_failing = age_s(get(&s.probe_failing_since_us), now);
    let loop_age = age_s(get(&s.loop_heartbeat_us), now);
    let status = if !running {
        "stopped"
    } else if write_failing > limit || check_failing > limit {
        "store_failing"
    } else if loop_age > limit {
        "loop_stalled"
    } else {
        "ok"
    };
    let body = format!(
        "{{\"status\":\"{status}\",\"store_write_failing_seconds\":{write_failing:.1},\
         \"store_check_failing_seconds\":{check_failing:.1},\"loop_last_seen_seconds\":{loop_age:.1},\
         \"messages\":{},\"rows_written\":{}}}\n",
        get(&s.messages),
        get(&s.rows_written)
    );
    let code = if status == "ok" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, body)
}

impl varde_transport::status::StatusPages for MetricsState {
    fn metrics(&self) -> String {
        render(self)
    }

    fn health(&self) -> (StatusCode, String) {
        health(self)
    }
}

/// Serves `/metrics` and `/health` on `listener` until `shutdown` turns true (the server is
/// [`varde_transport::status`]).
pub async fn serve(
    listener: TcpListener,
    state: Arc<MetricsState>,
    shutdown: watch::Receiver<bool>,
) {
    varde_transport::status::serve(listener, state, shutdown).await;
}
