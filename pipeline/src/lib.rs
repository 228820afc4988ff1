//! # varde-pipeline: the centre of Varde
//!
//! Consumes envelopes from every municipality's topic, checks each against the tenant of the
//! topic it came from, and stores the events. The loop is generic over the transport and the
//! store, so `varde demo` runs the very same code on the in-process bus and the embedded store.
//!
//! **Delivery:** at least once, with no visible duplicates. An offset is committed only after the
//! store has accepted every row of the messages before it; a crash replays uncommitted messages
//! and the store collapses the replayed rows by their deterministic event ids.
//!
//! **Hostile input:** a message that is not a valid envelope, or whose header claims a tenant
//! other than its topic's, is counted by reason, logged with topic, partition and offset, and
//! parked in the store's dead-letter table (reason, error, the first MiB of the payload) before
//! its offset is committed; it never stops the pipeline nor the good messages beside it.
//!
//! **Detection:** every accepted envelope goes through [`detect::Detector`] (DataFusion with
//! varde-rules' matcher and the shared-component lookup as functions); its alerts are written
//! after the events and before the commit, so a crash between the two replays both and the
//! store collapses both by their deterministic ids. An envelope that detection still fails on
//! after [`DETECT_RETRIES`] retries is not stored at all: it is parked whole in the dead-letter
//! table with reason `detection` (and counted), because storing its events without their alerts
//! would hide those alerts for good. An offset is committed only once every message before it
//! is stored with its alerts, or parked.
//!
//! **Store failures:** a write that fails because the store is unreachable, overloaded or not
//! set up is retried without end (backoff with jitter, [`varde_transport::retry`]), nothing is
//! committed meanwhile and `/health` turns unhealthy. A write the store *refuses* for the data
//! itself ([`varde_store::Error::refuses_data`]: a row the server will never take) is split in
//! halves until the envelope at fault is found; that one is parked whole with reason
//! `store_refused`, the others are stored, so one poison message never stalls a partition.
//!
//! **Operability:** [`metrics`] serves `/metrics` (these counters, consumer lag per partition,
//! retention) and `/health` (503 once the store has been failing too long); [`retention`]
//! drops day partitions older than each table's limit on a schedule. See `docs/pipeline.md`.
#![deny(missing_docs)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

pub mod correlate;
pub mod detect;
pub mod hunt;
pub mod identity;
pub mod jsonl;
pub mod metrics;
pub mod retention;

use backon::Retryable;
use serde::Deserialize;
use tokio::sync::watch;
use tracing::{debug, error, info, warn};
use varde_core::envelope::DEFAULT_MAX_PAYLOAD;
use varde_core::{Envelope, EnvelopeError, EnvelopeHeader};

use crate::detect::{Detect, DetectionConfig, LoadReport};
use crate::identity::{IdentitySettings, Verifier};
use crate::jsonl::{JsonLines, JsonLinesConfig};
use varde_store::clickhouse::ClickHouseSettings;
use varde_store::collectors::Collectors;
use varde_store::{Alert, DEAD_LETTER_PAYLOAD_MAX, DeadLetter, EventStore};
use varde_transport::kafka::KafkaSettings;
use varde_transport::{Message, Subscriber, retry, tenant_of_topic};

/// Counters of a pipeline instance.
#[derive(Debug, Default)]
pub struct Stats {
    /// Messages read from the transport.
    pub messages: AtomicU64,
    /// Envelopes accepted.
    pub envelopes: AtomicU64,
    /// Rows written to the store.
    pub rows_written: AtomicU64,
    /// Failed store writes (each was retried).
    pub write_retries: AtomicU64,
    /// Commits made.
    pub commits: AtomicU64,
    /// Alerts written.
    pub alerts_written: AtomicU64,
    /// Alerts whose event names no known shared component (an enrichment miss).
    pub enrichment_misses: AtomicU64,
    /// Envelopes detection failed on after its retries (parked with reason `detection`).
    pub detect_errors: AtomicU64,
    /// Detection attempts that failed and were retried.
    pub detect_retries: AtomicU64,
    /// Envelopes the store refused (parked with reason `store_refused`).
    pub store_refused: AtomicU64,
    /// JSON lines read from JSON-lines topics (blank lines not counted).
    pub jsonl_lines: AtomicU64,
    /// JSON lines refused (parked, one dead letter per message, reason `jsonl`).
    pub jsonl_refused_lines: AtomicU64,
    /// Identity numbers and IP addresses the pipeline pseudonymised in JSON lines.
    pub jsonl_pseudonymised: AtomicU64,
    /// Rules in use (a gauge).
    pub rules_loaded: AtomicU64,
    /// Rule documents that did not load at the last (re)load (a gauge).
    pub rule_errors: AtomicU64,
    /// Rule set reloads.
    pub rule_reloads: AtomicU64,
    /// Rules turned off from the dashboard, as last read from the store (a gauge).
    pub rules_disabled: AtomicU64,
    /// Correlation alerts raised.
    pub correlation_alerts: AtomicU64,
    /// Correlation hits refused as later than the allowed lateness.
    pub correlation_late: AtomicU64,
    /// Correlation groups evicted because too many were open.
    pub correlation_evicted: AtomicU64,
    /// Correlation groups open (a gauge).
    pub correlation_groups: AtomicU64,
    /// Logged correlation hits replayed into the windows at start.
    pub correlation_restored: AtomicU64,
    /// Correlation hits written to the store's log.
    pub correlation_logged: AtomicU64,
    /// Refused messages parked in the dead-letter table.
    pub dead_letters: AtomicU64,
    /// Unsigned envelopes accepted because `[identity] accept_unsigned` is set.
    pub unsigned_accepted: AtomicU64,
    /// Batches refused for their sender's identity, each written as a security event.
    pub identity_refused: AtomicU64,
    /// Reloads of the collector registry.
    pub registry_reloads: AtomicU64,
    /// Collectors in the registry (a gauge).
    pub registry_collectors: AtomicU64,
    /// Whether [`run`] is running (a gauge).
    pub running: AtomicBool,
    /// When the loop last came round (polled, or retried a write), µs since the epoch.
    pub loop_heartbeat_us: AtomicU64,
    /// Since when store writes have been failing (µs since the epoch; 0 while they succeed).
    pub write_failing_since_us: AtomicU64,
    /// Since when the store's liveness check has been failing (µs; 0 while it answers); see
    /// [`metrics::probe_store`].
    pub probe_failing_since_us: AtomicU64,
    /// When the store last answered (a write or a liveness check), µs since the epoch.
    pub store_last_ok_us: AtomicU64,
    /// Wall-clock time the loop spent in each [`Stage`], in µs (indexed by `Stage as usize`).
    pub stage_us: [AtomicU64; Stage::ALL.len()],
    rejected: Mutex<BTreeMap<&'static str, u64>>,
}

/// The steps of one round of the loop, timed separately (`varde_pipeline_stage_seconds_total`).
/// The store write of one poll runs beside the decoding and detection of the next, so
/// [`Stage::Store`] overlaps the other two and the stages can add up to more than the time the
/// loop ran; waiting for an empty poll is in none of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Envelope checks and decoding (and JSON lines' parsing and pseudonymisation).
    Decode = 0,
    /// Enrichment and Sigma matching (the DataFusion plan), with its retries.
    Detect = 1,
    /// Writing events, alerts and dead letters, including waits for an unavailable store.
    Store = 2,
    /// Committing the offsets.
    Commit = 3,
}

impl Stage {
    /// Every stage, in loop order.
    pub const ALL: [Stage; 4] = [Stage::Decode, Stage::Detect, Stage::Store, Stage::Commit];

    /// The label value of the stage.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Decode => "decode",
            Stage::Detect => "detect",
            Stage::Store => "store",
            Stage::Commit => "commit",
        }
    }
}

impl Stats {
    /// Adds the time since `since` to `stage`; returns now, the start of the next stage.
    pub fn timed(&self, stage: Stage, since: std::time::Instant) -> std::time::Instant {
        let now = std::time::Instant::now();
        let us = u64::try_from(now.duration_since(since).as_micros()).unwrap_or(u64::MAX);
        self.stage_us[stage as usize].fetch_add(us, Ordering::Relaxed);
        now
    }

    /// A counter's value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    /// Rejected messages by reason.
    pub fn rejected(&self) -> BTreeMap<&'static str, u64> {
        self.rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Records that the store answered: clears the write failure.
    pub fn write_succeeded(&self) {
        let now = now_us_u64();
        self.store_last_ok_us.store(now, Ordering::Relaxed);
        self.write_failing_since_us.store(0, Ordering::Relaxed);
        self.loop_heartbeat_us.store(now, Ordering::Relaxed);
    }

    /// Records a failed write: the failure's start is kept until a write succeeds.
    pub fn write_failed(&self) {
        let now = now_us_u64();
        let _ = self.write_failing_since_us.compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        self.loop_heartbeat_us.store(now, Ordering::Relaxed);
    }

    fn reject(&self, reason: &'static str) {
        *self
            .rejected
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(reason)
            .or_default() += 1;
    }
}

/// Every rejection reason [`reject_reason`] and the tenant check can give (the `reason` label of
/// `varde_pipeline_rejected_total`).
pub const REJECT_REASONS: &[&str] = &[
    "truncated",
    "not_an_envelope",
    "envelope_version",
    "unknown_kind",
    "schema_version",
    "bad_tenant",
    "bad_collector_id",
    "oversized",
    "compression",
    "arrow",
    "batch_shape",
    "schema_mismatch",
    "unsigned",
    "unknown_collector",
    "unknown_key",
    "bad_signature",
    "revoked_key",
    "expired_key",
    "tenant_forged",
    "tenant_mismatch",
    "detection",
    "store_refused",
    "jsonl",
];

/// Retries of a failed detection before the envelope is parked (about 1.5 s in all).
pub const DETECT_RETRIES: usize = 3;

/// The reason label of a rejected envelope (bounded set, for counters).
pub fn reject_reason(e: &EnvelopeError) -> &'static str {
    match e {
        EnvelopeError::Truncated { .. } => "truncated",
        EnvelopeError::BadMagic(_) => "not_an_envelope",
        EnvelopeError::UnsupportedEnvelopeVersion(_) => "envelope_version",
        EnvelopeError::UnknownKind(_) => "unknown_kind",
        EnvelopeError::UnsupportedSchemaVersion(_) => "schema_version",
        EnvelopeError::BadTenant(_) => "bad_tenant",
        EnvelopeError::BadCollectorId(_) => "bad_collector_id",
        EnvelopeError::Oversized { .. } => "oversized",
        EnvelopeError::Compression(_) => "compression",
        EnvelopeError::Framing(_) | EnvelopeError::Ipc(_) => "arrow",
        EnvelopeError::BatchCount(_) | EnvelopeError::RowCount { .. } => "batch_shape",
        EnvelopeError::Mismatch(_) => "schema_mismatch",
        EnvelopeError::BadSignature { .. } => "bad_signature",
        EnvelopeError::Unsigned => "unsigned",
    }
}

/// How the loop batches its work.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoopSettings {
    /// Most messages taken per poll (default 200).
    #[serde(default = "default_max_messages")]
    pub max_messages: usize,
    /// How long a poll waits for the first message, in milliseconds (default 200).
    #[serde(default = "default_poll_wait_ms")]
    pub poll_wait_ms: u64,
    /// Largest uncompressed envelope accepted, in bytes (default 64 MiB).
    #[serde(default = "default_max_payload")]
    pub max_payload_bytes: usize,
    /// How often the rules turned off and on from the dashboard are read from the store, in
    /// seconds (default 10): the longest a switch takes to apply.
    #[serde(default = "default_switch_interval_s")]
    pub rule_switch_interval_s: u64,
    /// How senders are checked: `[identity]` in the pipeline's configuration, set by the caller.
    #[serde(skip)]
    pub identity: IdentitySettings,
}

fn default_switch_interval_s() -> u64 {
    10
}

fn default_max_messages() -> usize {
    200
}
fn default_poll_wait_ms() -> u64 {
    200
}
fn default_max_payload() -> usize {
    DEFAULT_MAX_PAYLOAD
}

impl Default for LoopSettings {
    fn default() -> Self {
        LoopSettings {
            max_messages: default_max_messages(),
            poll_wait_ms: default_poll_wait_ms(),
            max_payload_bytes: default_max_payload(),
            rule_switch_interval_s: default_switch_interval_s(),
            identity: IdentitySettings::default(),
        }
    }
}

/// A refused message, as parked in the dead-letter table: hostile input keeps its first
/// [`DEAD_LETTER_PAYLOAD_MAX`] bytes; a valid envelope parked for detection or the store
/// (`whole`) keeps all of them, so that it can be processed again once the fault is fixed.
fn dead_letter(m: &Message, reason: &str, error: String, whole: bool) -> DeadLetter {
    let kept = if whole {
        m.payload.len()
    } else {
        m.payload.len().min(DEAD_LETTER_PAYLOAD_MAX)
    };
    DeadLetter {
        topic: m.topic.clone(),
        partition: m.partition,
        offset: m.offset,
        reason: reason.to_owned(),
        error,
        received_time_us: now_us(),
        payload_len: m.payload.len() as u64,
        payload: m.payload[..kept].to_vec(),
    }
}

/// A refused message: the dead letter to park, and for a refusal of its sender's identity the
/// security event (an event and its alert) to store.
struct Refused {
    letter: DeadLetter,
    security: Option<(Envelope, Alert)>,
}

/// Checks one message's sender ([`identity`]) on its header and the still-compressed payload,
/// then decodes it; a refused one (counted and logged) comes back as what to park and store.
fn accept(
    m: &Message,
    settings: &LoopSettings,
    stats: &Stats,
    verifier: &Verifier,
) -> Result<Envelope, Box<Refused>> {
    let refused = |reason: &'static str, e: String| {
        stats.reject(reason);
        warn!(topic = %m.topic, partition = m.partition, offset = m.offset, reason, error = %e,
            "envelope rejected");
        Box::new(Refused {
            letter: dead_letter(m, reason, e, false),
            security: None,
        })
    };
    let header = match EnvelopeHeader::peek(&m.payload) {
        Ok((header, _)) => header,
        Err(e) => return Err(refused(reject_reason(&e), e.to_string())),
    };
    let topic_tenant = tenant_of_topic(&m.topic);
    let now = now_us();
    match verifier.check(&m.payload, &header, topic_tenant, now) {
        Ok(true) => {}
        Ok(false) => {
            stats.unsigned_accepted.fetch_add(1, Ordering::Relaxed);
        }
        Err(refusal) => {
            stats.identity_refused.fetch_add(1, Ordering::Relaxed);
            let mut r = refused(refusal.reason, refusal.error.clone());
            error!(topic = %m.topic, partition = m.partition, offset = m.offset,
                reason = refusal.reason, claimed_tenant = %header.tenant,
                collector = %header.collector_id,
                "batch refused for its sender's identity; a security event is stored");
            r.security = identity::security_event(m, &header, topic_tenant, &refusal, now);
            return Err(r);
        }
    }
    match Envelope::decode_with_limit(&m.payload, settings.max_payload_bytes) {
        Ok(e) => Ok(e),
        Err(e) => Err(refused(reject_reason(&e), e.to_string())),
    }
}

impl Stats {
    /// Records the outcome of a rule (re)load in the gauges.
    pub fn record_rules(&self, report: &LoadReport) {
        self.rules_loaded
            .store(report.loaded as u64, Ordering::Relaxed);
        self.rule_errors
            .store(report.errors.len() as u64, Ordering::Relaxed);
    }
}

/// Calls `write` until it succeeds or the store refuses the data, retrying while the store is
/// unreachable or overloaded ([`varde_transport::retry::policy`]) and counting each failure.
/// `None` when `shutdown` turns true first (nothing is committed then, so the batch is replayed on
/// restart); `Some(Err)` only for [`varde_store::Error::refuses_data`].
async fn write_retrying<F, Fut>(
    what: &str,
    stats: &Stats,
    shutdown: &mut watch::Receiver<bool>,
    write: F,
) -> Option<varde_store::Result<u64>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = varde_store::Result<u64>>,
{
    let attempt = write
        .retry(retry::policy())
        .sleep(tokio::time::sleep)
        .when(varde_store::Error::is_retriable)
        .notify(|e, wait| {
            stats.write_retries.fetch_add(1, Ordering::Relaxed);
            stats.write_failed();
            warn!(error = %e, retry_in = ?wait, what, "store unavailable; holding the batch");
        });
    tokio::select! {
        r = attempt => {
            // Stored, or refused for the data itself: either way the store answered.
            stats.write_succeeded();
            Some(r)
        }
        _ = shutdown.changed() => None,
    }
}

/// The envelopes of one poll that detection got through, with their alerts and messages.
struct Detected {
    envelopes: Vec<Envelope>,
    alerts: Vec<Vec<Alert>>,
    /// Per envelope: the correlation hits its alerts were, for the log.
    hits: Vec<Vec<varde_store::CorrelationHit>>,
    message: Vec<usize>,
}

/// Stores `batch` (events, then their alerts). A refused range is split in halves until the
/// envelope at fault is alone; its index and the refusal come back, to be parked. `None` when
/// `shutdown` turned true first.
async fn store_detected<St: EventStore>(
    store: &St,
    stats: &Stats,
    shutdown: &mut watch::Receiver<bool>,
    batch: &Detected,
) -> Option<Vec<(usize, String)>> {
    let mut refused = Vec::new();
    let mut work: Vec<std::ops::Range<usize>> = Vec::new();
    work.push(0..batch.envelopes.len());
    while let Some(range) = work.pop() {
        if range.is_empty() {
            continue;
        }
        let envelopes = &batch.envelopes[range.clone()];
        let outcome = match write_retrying("events", stats, shutdown, || {
            store.write_envelopes(envelopes)
        })
        .await?
        {
            Err(e) => Err(format!("events refused: {e}")),
            Ok(rows) => {
                let alerts: Vec<Alert> = batch.alerts[range.clone()].concat();
                let written = if alerts.is_empty() {
                    Ok(0)
                } else {
                    write_retrying("alerts", stats, shutdown, || store.write_alerts(&alerts))
                        .await?
                };
                let hits: Vec<varde_store::CorrelationHit> = batch.hits[range.clone()].concat();
                let written = match written {
                    Ok(n) if !hits.is_empty() => {
                        match write_retrying("correlation hits", stats, shutdown, || {
                            store.write_correlation_hits(&hits)
                        })
                        .await?
                        {
                            Ok(h) => {
                                stats.correlation_logged.fetch_add(h, Ordering::Relaxed);
                                Ok(n)
                            }
                            Err(e) => Err(format!(
                                "correlation hits refused (events and alerts stored): {e}"
                            )),
                        }
                    }
                    Ok(n) => Ok(n),
                    Err(e) => Err(format!("alerts refused (events stored): {e}")),
                };
                match written {
                    Ok(n) => {
                        stats.rows_written.fetch_add(rows, Ordering::Relaxed);
                        stats
                            .envelopes
                            .fetch_add(envelopes.len() as u64, Ordering::Relaxed);
                        stats.alerts_written.fetch_add(n, Ordering::Relaxed);
                        let misses = alerts.iter().filter(|a| a.component.is_empty()).count();
                        stats
                            .enrichment_misses
                            .fetch_add(misses as u64, Ordering::Relaxed);
                        debug!(rows, alerts = n, envelopes = envelopes.len(), "stored");
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        if let Err(why) = outcome {
            if range.len() == 1 {
                refused.push((range.start, why));
            } else {
                let mid = range.start + range.len() / 2;
                work.push(mid..range.end);
                work.push(range.start..mid);
            }
        }
    }
    Some(refused)
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn now_us_u64() -> u64 {
    u64::try_from(now_us()).unwrap_or(0)
}

/// Runs the consume → check → detect → store → commit loop until `shutdown` turns true or the
/// transport closes. Finishes the batch in hand before returning. [`Stats::running`] is true
/// while it runs.
pub async fn run<S: Subscriber, St: EventStore + Collectors, D: Detect>(
    subscriber: &mut S,
    store: &St,
    detector: &mut D,
    settings: LoopSettings,
    stats: &Stats,
    shutdown: watch::Receiver<bool>,
) {
    run_with_json_lines(subscriber, store, detector, None, settings, stats, shutdown).await;
}

/// [`run`], taking messages of JSON-lines topics (`<prefix>jsonl.<kommunenummer>`) through
/// `json_lines` ([`jsonl`]) when it is given; without it such messages are refused like any
/// other message that is not an envelope.
pub async fn run_with_json_lines<S: Subscriber, St: EventStore + Collectors, D: Detect>(
    subscriber: &mut S,
    store: &St,
    detector: &mut D,
    json_lines: Option<&mut JsonLines>,
    settings: LoopSettings,
    stats: &Stats,
    shutdown: watch::Receiver<bool>,
) {
    run_loop(
        subscriber, store, detector, json_lines, settings, stats, shutdown,
    )
    .await;
    stats.running.store(false, Ordering::Relaxed);
}

/// Adds `letter` to `letters`; a second letter for the same message (the dead-letter table
/// keeps one row per topic, partition and offset) is folded into the first: its reason and
/// error are appended to the first's error, and the payload kept is the longer one (a whole
/// message holds its bad lines too).
fn park(letters: &mut Vec<DeadLetter>, letter: DeadLetter) {
    match letters.iter_mut().find(|l| {
        l.topic == letter.topic && l.partition == letter.partition && l.offset == letter.offset
    }) {
        Some(first) => {
            first.error = format!("{}; also {}: {}", first.error, letter.reason, letter.error);
            if letter.payload.len() > first.payload.len() {
                first.payload = letter.payload;
            }
        }
        None => letters.push(letter),
    }
}

/// One poll's work between detection and commit: its messages, what detection got through, and
/// the messages to park.
struct Polled {
    messages: Vec<Message>,
    detected: Detected,
    letters: Vec<DeadLetter>,
}

/// What one poll gave.
enum Next {
    /// Messages, checked and detected, to store and then commit.
    Batch(Polled),
    /// Nothing to do this round (an empty poll, or a failed one after its pause).
    Idle,
    /// Shutdown, or the transport closed.
    Stop,
}

/// Polls once, then checks, decodes and detects what came ([`Stage::Decode`], [`Stage::Detect`]).
/// Yields to the scheduler between envelopes so the store write of the previous poll, which
/// runs beside it, keeps moving.
#[allow(clippy::too_many_arguments)]
async fn poll_and_detect<S: Subscriber, St: Collectors, D: Detect>(
    subscriber: &mut S,
    store: &St,
    detector: &mut D,
    json_lines: &mut Option<&mut JsonLines>,
    verifier: &mut Verifier,
    settings: &LoopSettings,
    stats: &Stats,
    shutdown: &mut watch::Receiver<bool>,
) -> Next {
    let wait = Duration::from_millis(settings.poll_wait_ms);
    let polled = tokio::select! {
        p = subscriber.poll_batch(settings.max_messages, wait) => p,
        _ = shutdown.changed() => return Next::Stop,
    };
    let messages = match polled {
        Ok(m) => m,
        Err(varde_transport::Error::Closed) => return Next::Stop,
        Err(e) => {
            warn!(error = %e, "poll failed; retrying");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => return Next::Idle,
                _ = shutdown.changed() => return Next::Stop,
            }
        }
    };
    if messages.is_empty() {
        return Next::Idle;
    }
    stats
        .messages
        .fetch_add(messages.len() as u64, Ordering::Relaxed);
    let mut clock = std::time::Instant::now();
    let mut accepted: Vec<(usize, Envelope)> = Vec::with_capacity(messages.len());
    let mut letters: Vec<DeadLetter> = Vec::new();
    let mut security: Vec<(usize, Envelope, Alert)> = Vec::new();
    // The registry as the store has it now, before any message of this poll is judged: a
    // revocation written before the poll applies to all of it, a collector enrolled a moment
    // ago is known. One small query when the registry is unchanged.
    match verifier.refresh(store).await {
        Ok(true) => {
            stats.registry_reloads.fetch_add(1, Ordering::Relaxed);
            info!(
                collectors = verifier.registry().collectors.len(),
                "collector registry reloaded"
            );
        }
        Ok(false) => {}
        Err(e) => warn!(error = %e, "collector registry not checked; using the one loaded"),
    }
    stats.registry_collectors.store(
        verifier.registry().collectors.len() as u64,
        Ordering::Relaxed,
    );
    for (i, m) in messages.iter().enumerate() {
        if let (Some(jl), Some(tenant)) = (
            json_lines.as_deref_mut(),
            varde_transport::tenant_of_jsonl_topic(&m.topic),
        ) {
            let received_us = m.timestamp_ms.map_or_else(now_us, |ms| ms * 1000);
            let decoded = jl.decode(&m.payload, tenant, m.partition, m.offset, received_us);
            let refused = decoded.refused.len() as u64;
            stats
                .jsonl_lines
                .fetch_add(decoded.lines + refused, Ordering::Relaxed);
            stats.jsonl_pseudonymised.fetch_add(
                decoded.privacy.national_ids + decoded.privacy.ip_addresses,
                Ordering::Relaxed,
            );
            if refused > 0 {
                stats
                    .jsonl_refused_lines
                    .fetch_add(refused, Ordering::Relaxed);
                stats.reject(jsonl::JSONL_REASON);
                let (error, payload) = jsonl::refused_letter(&decoded.refused);
                warn!(topic = %m.topic, partition = m.partition, offset = m.offset,
                    lines = refused, error = %error, "JSON lines refused; parked");
                let mut letter = dead_letter(m, jsonl::JSONL_REASON, error, true);
                letter.payload = payload;
                park(&mut letters, letter);
            }
            accepted.extend(decoded.envelopes.into_iter().map(|e| (i, e)));
            continue;
        }
        match accept(m, settings, stats, verifier) {
            Ok(e) => accepted.push((i, e)),
            Err(refused) => {
                let Refused {
                    letter,
                    security: event,
                } = *refused;
                park(&mut letters, letter);
                if let Some((envelope, alert)) = event {
                    security.push((i, envelope, alert));
                }
            }
        }
    }
    clock = stats.timed(Stage::Decode, clock);
    let detect_time = now_us();
    let mut detected = Detected {
        envelopes: Vec::with_capacity(accepted.len()),
        alerts: Vec::with_capacity(accepted.len()),
        hits: Vec::with_capacity(accepted.len()),
        message: Vec::with_capacity(accepted.len()),
    };
    // Security events are stored like detected batches, with their one alert each.
    for (i, envelope, alert) in security {
        detected.envelopes.push(envelope);
        detected.alerts.push(vec![alert]);
        detected.hits.push(Vec::new());
        detected.message.push(i);
    }
    for (i, envelope) in accepted {
        let attempt = (|| detector.detect(&envelope, detect_time))
            .retry(retry::bounded(DETECT_RETRIES))
            .sleep(tokio::time::sleep)
            .notify(|e, wait| {
                stats.detect_retries.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, retry_in = ?wait, collector = %envelope.header.collector_id,
                    batch_seq = envelope.header.batch_seq, "detection failed; retrying");
            });
        match attempt.await {
            Ok(found) => {
                detected.envelopes.push(envelope);
                detected.alerts.push(found);
                detected.hits.push(detector.take_correlation_log());
                detected.message.push(i);
            }
            Err(e) => {
                let m = &messages[i];
                stats.detect_errors.fetch_add(1, Ordering::Relaxed);
                stats.reject("detection");
                error!(error = %e, topic = %m.topic, partition = m.partition, offset = m.offset,
                    collector = %envelope.header.collector_id,
                    batch_seq = envelope.header.batch_seq, kind = %envelope.header.kind,
                    "detection failed on a batch after retries; parked whole, not stored");
                park(
                    &mut letters,
                    dead_letter(m, "detection", e.to_string(), true),
                );
            }
        }
        // Detection is CPU work that rarely waits; let the previous poll's write go on.
        stats.timed(Stage::Detect, clock);
        tokio::task::yield_now().await;
        clock = std::time::Instant::now();
    }
    stats.timed(Stage::Detect, clock);
    Next::Batch(Polled {
        messages,
        detected,
        letters,
    })
}

/// Stores one poll's events and alerts and parks its refused messages ([`Stage::Store`]).
/// The messages to commit come back; `None` when `shutdown` turned true first (nothing may be
/// committed then).
async fn store_polled<St: EventStore>(
    store: &St,
    stats: &Stats,
    shutdown: &mut watch::Receiver<bool>,
    polled: Polled,
) -> Option<Vec<Message>> {
    let clock = std::time::Instant::now();
    let Polled {
        messages,
        detected,
        mut letters,
    } = polled;
    if !detected.envelopes.is_empty() {
        let refused = store_detected(store, stats, shutdown, &detected).await?;
        for (j, why) in refused {
            let m = &messages[detected.message[j]];
            let h = &detected.envelopes[j].header;
            stats.store_refused.fetch_add(1, Ordering::Relaxed);
            stats.reject("store_refused");
            error!(error = %why, topic = %m.topic, partition = m.partition, offset = m.offset,
                collector = %h.collector_id, batch_seq = h.batch_seq, kind = %h.kind,
                "the store refuses this batch; parked whole");
            park(&mut letters, dead_letter(m, "store_refused", why, true));
        }
    }
    if !letters.is_empty() {
        // Parking must not fail silently: a dead-letter table that refuses its rows holds
        // the batch (nothing committed) until an operator fixes it.
        let mut delays = retry::Delays::new();
        loop {
            match write_retrying("dead letters", stats, shutdown, || {
                store.write_dead_letters(&letters)
            })
            .await?
            {
                Ok(n) => {
                    stats.dead_letters.fetch_add(n, Ordering::Relaxed);
                    break;
                }
                Err(e) => {
                    stats.write_failed();
                    let wait = delays.next_delay();
                    error!(error = %e, retry_in = ?wait,
                        "the dead-letter table refuses rows; holding the batch");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => return None,
                    }
                }
            }
        }
    }
    stats.timed(Stage::Store, clock);
    Some(messages)
}

/// The loop, two polls deep: while poll n is stored, poll n+1 is taken and detected; poll n is
/// committed once stored, before poll n+1 is stored, so commits stay in order and each covers
/// only stored (or parked) messages.
#[allow(clippy::too_many_arguments)]
async fn run_loop<S: Subscriber, St: EventStore + Collectors, D: Detect>(
    subscriber: &mut S,
    store: &St,
    detector: &mut D,
    mut json_lines: Option<&mut JsonLines>,
    settings: LoopSettings,
    stats: &Stats,
    mut shutdown: watch::Receiver<bool>,
) {
    stats.running.store(true, Ordering::Relaxed);
    let mut in_flight: Option<Polled> = None;
    // The rule catalog for the dashboard: written at start and after each reload; a failed
    // write is tried again next round and never holds events back.
    let mut catalog_pending = true;
    // Rules turned off from the dashboard: read at start and every `rule_switch_interval_s`; a
    // failed read keeps the switches in force and is tried again next round.
    let switch_every = Duration::from_secs(settings.rule_switch_interval_s);
    let mut switches_read: Option<std::time::Instant> = None;
    // The collector registry: loaded before the first poll (no envelope can be checked
    // without it), then reloaded whenever the store's identity log changed, checked every
    // round; a failed check keeps the registry in use and is tried again next round.
    let mut verifier = Verifier::new(settings.identity);
    {
        let mut delays = retry::Delays::new();
        loop {
            match verifier.refresh(store).await {
                Ok(_) => break,
                Err(e) => {
                    let wait = delays.next_delay();
                    warn!(error = %e, retry_in = ?wait,
                        "collector registry not read; waiting before the first poll");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {
                            stats.running.store(false, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }
        stats.registry_reloads.fetch_add(1, Ordering::Relaxed);
        stats.registry_collectors.store(
            verifier.registry().collectors.len() as u64,
            Ordering::Relaxed,
        );
    }
    // Open correlation windows are rebuilt from the hit log before the first poll is
    // detected; until the store answers nothing is polled (it could not be stored anyway).
    if let Some(horizon) = detector.correlation_restore_horizon_us() {
        let mut delays = retry::Delays::new();
        loop {
            match store
                .correlation_hits(now_us().saturating_sub(horizon))
                .await
            {
                Ok(hits) => {
                    let r = detector.restore_correlations(&hits);
                    stats
                        .correlation_restored
                        .store(r.replayed, Ordering::Relaxed);
                    info!(
                        replayed = r.replayed,
                        skipped = r.skipped,
                        groups = r.groups,
                        "correlation windows restored from the hit log"
                    );
                    break;
                }
                Err(e) => {
                    let wait = delays.next_delay();
                    warn!(error = %e, retry_in = ?wait,
                        "correlation hit log not read; waiting before the first poll");
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => {
                            stats.running.store(false, Ordering::Relaxed);
                            return;
                        }
                    }
                }
            }
        }
    }
    loop {
        stats
            .loop_heartbeat_us
            .store(now_us_u64(), Ordering::Relaxed);
        if *shutdown.borrow() {
            // A detected poll not yet stored is not committed: it is replayed on restart.
            break;
        }
        if let Some(report) = detector.reload_if_changed() {
            stats.record_rules(&report);
            stats.rule_reloads.fetch_add(1, Ordering::Relaxed);
            catalog_pending = true;
        }
        if catalog_pending {
            let entries = detector.catalog();
            if entries.is_empty() {
                catalog_pending = false;
            } else {
                match store.write_rules(now_us(), &entries).await {
                    Ok(n) => {
                        catalog_pending = false;
                        debug!(entries = n, "rule catalog written");
                    }
                    Err(e) => {
                        warn!(error = %e, "rule catalog not written; trying again next round")
                    }
                }
            }
        }
        if switches_read.is_none_or(|at| at.elapsed() >= switch_every) {
            match store.rule_switches().await {
                Ok(switches) => {
                    switches_read = Some(std::time::Instant::now());
                    let disabled = varde_store::disabled_rules(&switches);
                    stats
                        .rules_disabled
                        .store(disabled.len() as u64, Ordering::Relaxed);
                    detector.set_disabled(disabled);
                }
                Err(e) => warn!(error = %e, "rule switches not read; trying again next round"),
            }
        }
        let c = detector.correlation_stats();
        stats.correlation_alerts.store(c.fired, Ordering::Relaxed);
        stats.correlation_late.store(c.late, Ordering::Relaxed);
        stats
            .correlation_evicted
            .store(c.evicted, Ordering::Relaxed);
        stats.correlation_groups.store(c.groups, Ordering::Relaxed);
        let mut store_shutdown = shutdown.clone();
        let batch = in_flight.take();
        let storing = async {
            match batch {
                Some(polled) => store_polled(store, stats, &mut store_shutdown, polled)
                    .await
                    .map(Some),
                None => Some(None),
            }
        };
        let polling = poll_and_detect(
            subscriber,
            store,
            detector,
            &mut json_lines,
            &mut verifier,
            &settings,
            stats,
            &mut shutdown,
        );
        let (stored, next) = tokio::join!(storing, polling);
        let Some(stored) = stored else {
            return;
        };
        if let Some(messages) = stored {
            let clock = std::time::Instant::now();
            match subscriber.commit(&messages) {
                Ok(()) => {
                    stats.commits.fetch_add(1, Ordering::Relaxed);
                }
                // Not fatal: the messages are replayed after a restart and collapse in the store.
                Err(e) => warn!(error = %e, "commit failed; these messages may be replayed"),
            }
            stats.timed(Stage::Commit, clock);
        }
        match next {
            Next::Batch(polled) => in_flight = Some(polled),
            Next::Idle => {}
            Next::Stop => break,
        }
    }
    info!(
        messages = Stats::get(&stats.messages),
        rows = Stats::get(&stats.rows_written),
        alerts = Stats::get(&stats.alerts_written),
        rejected = ?stats.rejected(),
        "pipeline loop stopped"
    );
}

/// Configuration of `varde pipeline`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Kafka consumer group; instances with the same group share the partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Municipalities whose topics to consume; when absent, every topic named
    /// `<prefix>events.<4 digits>` (a pattern subscription that picks up new topics).
    #[serde(default)]
    pub tenants: Option<Vec<varde_core::Kommunenummer>>,
    /// How partitions are taken: `group` (the group coordinator shares them among the
    /// instances of `group_id`, the default) or `static` (this instance takes every partition of
    /// its `tenants`' topics itself and resumes from the group's committed offsets; needs
    /// `tenants`, and instances with disjoint tenant lists to scale out).
    #[serde(default)]
    pub assignment: Assignment,
    /// Kafka.
    pub kafka: KafkaSettings,
    /// ClickHouse.
    pub clickhouse: ClickHouseSettings,
    /// Loop batching.
    #[serde(default, rename = "loop")]
    pub loop_settings: LoopSettings,
    /// Rules and enrichment.
    #[serde(default)]
    pub detection: DetectionConfig,
    /// `/metrics` and `/health`; not served when absent.
    #[serde(default)]
    pub metrics: Option<metrics::MetricsSettings>,
    /// Retention per table (defaults apply when absent: see [`retention::RetentionSettings`]).
    #[serde(default)]
    pub retention: retention::RetentionSettings,
    /// JSON lines from third-party shippers: when present, the tenants'
    /// `<prefix>jsonl.<kommunenummer>` topics are consumed too (see [`jsonl`]).
    #[serde(default)]
    pub jsonl: Option<JsonLinesConfig>,
    /// How the senders of envelopes are checked (see [`identity`]).
    #[serde(default)]
    pub identity: IdentitySettings,
}

/// How a pipeline instance gets its partitions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Assignment {
    /// Kafka's group coordinator assigns and rebalances partitions among the group's members.
    #[default]
    Group,
    /// Every partition of the configured tenants' topics, taken by this instance; offsets are
    /// read from and committed to the group all the same.
    Static,
}

fn default_group() -> String {
    "varde-pipeline".to_owned()
}

/// Why a pipeline configuration file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: PathBuf,
    /// What and where.
    pub message: String,
}

impl PipelineConfig {
    /// Reads and validates a configuration file (unknown keys are errors, with line and column).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let config: PipelineConfig = toml::from_str(&text).map_err(|e| ConfigError {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        if config.loop_settings.max_messages == 0 {
            return Err(ConfigError {
                path: path.to_owned(),
                message: "loop.max_messages must be at least 1".into(),
            });
        }
        if config.assignment == Assignment::Static && config.tenants.is_none() {
            return Err(ConfigError {
                path: path.to_owned(),
                message: "assignment = \"static\" needs `tenants`: the municipalities whose \
                          topics this instance takes"
                    .into(),
            });
        }
        if let Some(m) = &config.metrics
            && let Err(message) = m.validate()
        {
            return Err(ConfigError {
                path: path.to_owned(),
                message,
            });
        }
        Ok(config)
    }

    /// The topics (or one `^`-anchored pattern) to subscribe to.
    pub fn topics(&self) -> Vec<String> {
        let prefix = &self.kafka.topic_prefix;
        match &self.tenants {
            Some(tenants) => tenants
                .iter()
                .map(|t| varde_transport::events_topic(prefix, *t))
                .chain(
                    tenants
                        .iter()
                        .filter(|_| self.jsonl.is_some())
                        .map(|t| varde_transport::jsonl_topic(prefix, *t)),
                )
                .collect(),
            None => {
                let escaped: String = prefix
                    .chars()
                    .flat_map(|c| {
                        let esc = (!c.is_ascii_alphanumeric()).then_some('\\');
                        esc.into_iter().chain(std::iter::once(c))
                    })
                    .collect();
                if self.jsonl.is_some() {
                    vec![format!("^{escaped}(events|jsonl)\\.[0-9]{{4}}$")]
                } else {
                    vec![format!("^{escaped}events\\.[0-9]{{4}}$")]
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pattern_subscription_escapes_the_prefix() {
        let config: PipelineConfig = toml::from_str(
            r#"
            [kafka]
            brokers = "b:9092"
            [clickhouse]
            url = "http://c:8123"
            "#,
        )
        .expect("valid");
        assert_eq!(
            config.topics(),
            vec![r"^varde\.events\.[0-9]{4}$".to_owned()]
        );
        assert_eq!(config.group_id, "varde-pipeline");
        assert_eq!(config.clickhouse.database, "varde");
        assert!(config.metrics.is_none());
        assert_eq!(config.retention.events_days, 30);
    }

    #[test]
    fn metrics_and_retention_sections_are_strict() {
        let base = "[kafka]\nbrokers = \"b\"\n[clickhouse]\nurl = \"u\"\n";
        let ok: PipelineConfig = toml::from_str(&format!(
            "{base}[metrics]\nlisten = \"127.0.0.1:0\"\n[retention]\nevents_days = 0\n"
        ))
        .expect("valid");
        let m = ok.metrics.expect("metrics");
        assert_eq!((m.store_unhealthy_after_s, m.lag_interval_s), (30, 15));
        assert_eq!(ok.retention.events_days, 0, "0 keeps events forever");
        assert_eq!(ok.retention.alerts_days, 400);
        for (bad, word) in [
            ("[metrics]\nlisten = \"127.0.0.1:0\"\nlisen = 1\n", "lisen"),
            ("[metrics]\nlisten = \"not an address\"\n", "listen"),
            ("[retention]\nevent_days = 3\n", "event_days"),
            ("[retention]\nevents_days = -1\n", "events_days"),
        ] {
            let err = toml::from_str::<PipelineConfig>(&format!("{base}{bad}"))
                .expect_err(bad)
                .to_string();
            assert!(err.contains(word), "{bad}: {err}");
        }
    }

    #[test]
    fn the_shipped_example_loads_with_every_pack_rule() {
        // Run-time CARGO_MANIFEST_DIR: true even when the build cache came from another clone.
        let dir = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
        let path = Path::new(&dir).join("../deploy/examples/pipeline.toml");
        let config = PipelineConfig::load(&path).expect("example config");
        assert_eq!(config.kafka.brokers, "127.0.0.1:19092");
        let m = config.metrics.expect("the example serves /metrics");
        assert_eq!(m.listen.to_string(), "127.0.0.1:9465");
        assert_eq!(config.retention, retention::RetentionSettings::default());
        let (detector, report) =
            detect::Detector::from_config(&config.detection).expect("detection from the example");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        // Every file of the pack: a detection rule or a correlation.
        assert_eq!(
            report.loaded + detector.rules().correlations().len(),
            varde_rules::pack::PACK.len()
        );
    }

    #[test]
    fn a_jsonl_section_adds_the_json_lines_topics() {
        let base =
            "[kafka]\nbrokers = \"b\"\n[clickhouse]\nurl = \"u\"\n[jsonl]\nkey_file = \"/k\"\n";
        let all: PipelineConfig = toml::from_str(base).expect("valid");
        assert_eq!(
            all.topics(),
            vec![r"^varde\.(events|jsonl)\.[0-9]{4}$".to_owned()]
        );
        let some: PipelineConfig =
            toml::from_str(&format!("tenants = [\"0301\"]\n{base}")).expect("valid");
        assert_eq!(
            some.topics(),
            vec![
                "varde.events.0301".to_owned(),
                "varde.jsonl.0301".to_owned()
            ]
        );
        let err = toml::from_str::<PipelineConfig>(&format!("{base}key_fil = 1\n"))
            .expect_err("typo")
            .to_string();
        assert!(err.contains("key_fil"), "{err}");
    }

    #[test]
    fn static_assignment_needs_its_tenants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("p.toml");
        let base = "[kafka]\nbrokers = \"b\"\n[clickhouse]\nurl = \"u\"\n";
        std::fs::write(&path, format!("assignment = \"static\"\n{base}")).expect("write");
        let err = PipelineConfig::load(&path)
            .expect_err("no tenants")
            .to_string();
        assert!(err.contains("needs `tenants`"), "{err}");
        std::fs::write(
            &path,
            format!("assignment = \"static\"\ntenants = [\"0301\"]\n{base}"),
        )
        .expect("write");
        let ok = PipelineConfig::load(&path).expect("static with tenants");
        assert_eq!(ok.assignment, Assignment::Static);
        std::fs::write(&path, format!("assignment = \"sticky\"\n{base}")).expect("write");
        assert!(PipelineConfig::load(&path).is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = toml::from_str::<PipelineConfig>(
            "[kafka]\nbrokers = \"b\"\n[clickhouse]\nurl = \"u\"\ndatabse = \"x\"\n",
        )
        .expect_err("typo")
        .to_string();
        assert!(err.contains("databse"), "{err}");
        assert!(err.contains("line 5"), "{err}");
    }
}
