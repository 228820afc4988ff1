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
use varde_transport::exposition::{self, Family, Value};
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

/// The `/metrics` families.
pub fn families(state: &MetricsState) -> Vec<Family> {
    let now = now_us();
    let s = &state.stats;
    let mut out: Vec<Family> = Vec::with_capacity(64);
    let p = |name: &str| format!("varde_pipeline_{name}");
    out.push(
        Family::gauge(p("info"), "The pipeline's consumer group and version.").with(
            [
                ("group_id", state.group_id.as_str()),
                ("version", env!("CARGO_PKG_VERSION")),
            ],
            Value::Int(1),
        ),
    );
    out.push(
        Family::gauge(p("uptime_seconds"), "Seconds since the pipeline started.")
            .value(Value::Float(state.started.elapsed().as_secs_f64())),
    );
    out.push(
        Family::gauge(p("running"), "1 while the consume-store-commit loop runs.")
            .value(Value::Int(u64::from(s.running.load(Ordering::Relaxed)))),
    );
    for (name, help, c) in [
        ("messages", "Messages read from Kafka.", &s.messages),
        ("envelopes", "Envelopes accepted and stored.", &s.envelopes),
        (
            "rows_written",
            "Event rows written to the store (replays included).",
            &s.rows_written,
        ),
        (
            "write_retries",
            "Failed store writes while the store was unavailable; each was retried with backoff and jitter, nothing was committed meanwhile.",
            &s.write_retries,
        ),
        ("commits", "Offset commits made.", &s.commits),
        (
            "alerts_written",
            "Alerts written to the store (replays included).",
            &s.alerts_written,
        ),
        (
            "enrichment_misses",
            "Alerts whose event names no known shared component.",
            &s.enrichment_misses,
        ),
        (
            "detect_errors",
            "Envelopes detection failed on after its retries (parked whole, not stored).",
            &s.detect_errors,
        ),
        (
            "detect_retries",
            "Detection attempts that failed and were retried.",
            &s.detect_retries,
        ),
        (
            "store_refused",
            "Envelopes the store refused for their data (parked whole; the rest of the poll was stored).",
            &s.store_refused,
        ),
        (
            "jsonl_lines",
            "JSON lines read from the JSON-lines topics of third-party shippers.",
            &s.jsonl_lines,
        ),
        (
            "jsonl_refused_lines",
            "JSON lines refused (parked, one dead letter per message, reason jsonl).",
            &s.jsonl_refused_lines,
        ),
        (
            "jsonl_pseudonymised",
            "Identity numbers and IP addresses pseudonymised in JSON lines before storage.",
            &s.jsonl_pseudonymised,
        ),
        (
            "rule_reloads",
            "Rule set reloads after a rule file changed.",
            &s.rule_reloads,
        ),
        (
            "dead_letters",
            "Refused messages parked in the dead_letters table.",
            &s.dead_letters,
        ),
        (
            "identity_refused",
            "Batches refused for their sender's identity (unsigned, unknown, forged, revoked, wrong topic), each stored as a security event.",
            &s.identity_refused,
        ),
        (
            "unsigned_accepted",
            "Unsigned envelopes accepted because [identity] accept_unsigned is set.",
            &s.unsigned_accepted,
        ),
        (
            "registry_reloads",
            "Reloads of the collector registry after its identity log changed.",
            &s.registry_reloads,
        ),
    ] {
        out.push(Family::counter(p(name), help).value(Value::Int(get(c))));
    }
    out.push(
        Family::gauge(
            p("registry_collectors"),
            "Collectors in the collector registry.",
        )
        .value(Value::Int(get(&s.registry_collectors))),
    );
    out.push(
        Family::gauge(p("rules_loaded"), "Rules in use.").value(Value::Int(get(&s.rules_loaded))),
    );
    for (name, help, c) in [
        (
            "correlation_alerts",
            "Correlation alerts raised.",
            &s.correlation_alerts,
        ),
        (
            "correlation_late_hits",
            "Correlation hits refused as later than the allowed lateness.",
            &s.correlation_late,
        ),
        (
            "correlation_groups_evicted",
            "Correlation groups evicted because too many were open.",
            &s.correlation_evicted,
        ),
        (
            "correlation_hits_logged",
            "Correlation hits written to the store's log.",
            &s.correlation_logged,
        ),
        (
            "correlation_hits_restored",
            "Logged correlation hits replayed into the windows at start.",
            &s.correlation_restored,
        ),
    ] {
        out.push(Family::counter(p(name), help).value(Value::Int(get(c))));
    }
    out.push(
        Family::gauge(p("correlation_groups"), "Correlation groups open.")
            .value(Value::Int(get(&s.correlation_groups))),
    );
    out.push(
        Family::gauge(
            p("rules_disabled"),
            "Rules turned off from the dashboard (their alerts are not raised).",
        )
        .value(Value::Int(get(&s.rules_disabled))),
    );
    out.push(
        Family::gauge(
            p("rule_errors"),
            "Rule documents that did not load at the last (re)load.",
        )
        .value(Value::Int(get(&s.rule_errors))),
    );
    out.push(crate::Stage::ALL.iter().fold(
        Family::counter(
            p("stage_seconds"),
            "Wall-clock seconds the loop spent per stage (decode, detect, store incl. waits for the store, commit).",
        ),
        |family, stage| {
            family.with(
                [("stage", stage.name())],
                Value::Float(get(&s.stage_us[*stage as usize]) as f64 / 1e6),
            )
        },
    ));
    let rejected = s.rejected();
    let mut by_reason = Family::counter(
        p("rejected"),
        "Messages refused, by reason (each is logged and parked as a dead letter).",
    );
    for r in REJECT_REASONS {
        by_reason.push(
            [("reason", *r)],
            Value::Int(rejected.get(r).copied().unwrap_or(0)),
        );
    }
    for (r, n) in rejected.iter().filter(|(r, _)| !REJECT_REASONS.contains(r)) {
        by_reason.push([("reason", *r)], Value::Int(*n));
    }
    out.push(by_reason);
    out.push(
        Family::gauge(
            p("store_write_failing_seconds"),
            "How long store writes have been failing (0 while they succeed).",
        )
        .value(Value::Float(age_s(get(&s.write_failing_since_us), now))),
    );
    out.push(
        Family::gauge(
            p("store_check_failing_seconds"),
            "How long the store's liveness check has been failing (0 while it answers).",
        )
        .value(Value::Float(age_s(get(&s.probe_failing_since_us), now))),
    );
    out.push(
        Family::gauge(
            p("store_last_ok_timestamp_seconds"),
            "When the store last answered a write or a liveness check (Unix time; 0: never).",
        )
        .value(Value::Float(get(&s.store_last_ok_us) as f64 / 1e6)),
    );

    // Lag, per assigned topic and partition.
    let lag = state.lag.partitions();
    let per_partition = |name: &str, help: &str, f: &dyn Fn(&PartitionLag) -> Option<i64>| {
        let mut family = Family::gauge(p(name), help);
        for part in &lag {
            if let Some(v) = f(part) {
                family.push(
                    [
                        ("topic", part.topic.clone()),
                        ("partition", part.partition.to_string()),
                    ],
                    Value::Signed(v),
                );
            }
        }
        family
    };
    out.push(per_partition(
        "consumer_position",
        "The next offset this instance will read, per assigned partition (the consumer's own count).",
        &|p| p.position,
    ));
    out.push(per_partition(
        "consumer_committed_offset",
        "The group's committed offset (the next offset to read after a restart).",
        &|p| p.committed,
    ));
    out.push(per_partition(
        "partition_high_watermark",
        "The broker's high watermark (offset of the next message produced).",
        &|p| p.high_watermark,
    ));
    out.push(per_partition(
        "partition_low_watermark",
        "The broker's low watermark (first offset still held).",
        &|p| p.low_watermark,
    ));
    out.push(per_partition(
        "consumer_lag_messages",
        "Messages not yet committed: high watermark - committed offset (low watermark when none).",
        &PartitionLag::committed_lag,
    ));
    out.push(
        Family::gauge(
            p("lag_last_refresh_timestamp_seconds"),
            "When the lag figures were last read (Unix time; 0: never).",
        )
        .value(Value::Float(get(&state.lag.last_refresh_us) as f64 / 1e6)),
    );
    out.push(
        Family::counter(p("lag_refresh_errors"), "Lag refreshes that failed.")
            .value(Value::Int(get(&state.lag.errors))),
    );

    // Retention.
    let per_table = |family: Family, f: &dyn Fn(Table) -> u64| {
        Table::ALL.iter().fold(family, |family, t| {
            family.with([("table", t.name())], Value::Int(f(*t)))
        })
    };
    let r = &state.retention_stats;
    out.push(per_table(
        Family::gauge(p("retention_days"), "Days kept per table (0: forever)."),
        &|t| u64::from(state.retention.days(t)),
    ));
    out.push(per_table(
        Family::counter(
            p("retention_dropped_partitions"),
            "Day partitions dropped by retention, per table.",
        ),
        &|t| r.dropped_partitions(t),
    ));
    out.push(per_table(
        Family::counter(
            p("retention_dropped_rows"),
            "Rows in the day partitions dropped by retention, per table.",
        ),
        &|t| r.dropped_rows(t),
    ));
    out.push(
        Family::counter(p("retention_runs"), "Retention runs completed.")
            .value(Value::Int(get(&r.runs))),
    );
    out.push(
        Family::counter(
            p("retention_errors"),
            "Tables a retention run failed on (retried at the next run).",
        )
        .value(Value::Int(get(&r.errors))),
    );
    out.push(
        Family::gauge(
            p("retention_last_run_timestamp_seconds"),
            "When the last retention run ended (Unix time; 0: none yet).",
        )
        .value(Value::Float(get(&r.last_run_us) as f64 / 1e6)),
    );
    out
}

/// Renders the Prometheus text exposition.
pub fn render(state: &MetricsState) -> String {
    exposition::encode(families(state))
}

/// `v` to one decimal: what a person reading `/health` needs.
fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
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
    let body = serde_json::json!({
        "status": status,
        "store_write_failing_seconds": round1(write_failing),
        "store_check_failing_seconds": round1(check_failing),
        "loop_last_seen_seconds": round1(loop_age),
        "messages": get(&s.messages),
        "rows_written": get(&s.rows_written),
    })
    .to_string()
        + "\n";
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
