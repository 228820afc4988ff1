//! # varde-store: where events end up, and how they are read back
//!
//! One trait, [`EventStore`], two implementations:
//!
//! - [`clickhouse::ClickHouseStore`]: production. The schema in [`schema`] is created by
//!   versioned migrations ([`clickhouse::ClickHouseStore::migrate`]) and runs on ClickHouse
//!   18.16 and current releases. Writes are one `INSERT` per call (callers batch envelopes to
//!   10k–100k rows, as ClickHouse advises); reads hide duplicates from replays.
//! - [`embedded::EmbeddedStore`]: in memory, for `varde demo`; same contract.
//!
//! **Contract of every store:** writing the same envelope twice (a replay after a crash, a
//! retried insert) never makes an event visible twice through the read methods, because rows
//! are keyed by the deterministic [`varde_core::EventId`]; the same holds for [`Alert`]s, keyed
//! by the deterministic [`varde_core::AlertId`].
//!
//! This crate owns the `clickhouse` dependency; no other crate links it.
#![deny(missing_docs)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;

use varde_core::time::split_micros;
use varde_core::{AlertId, BatchReader, Envelope, EventId, Kommunenummer};

pub mod clickhouse;
pub mod collectors;
pub mod embedded;
pub mod incident;
pub mod outbox;
pub mod reports;
pub mod schema;

/// Errors of the stores.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// ClickHouse refused or failed a request.
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] ::clickhouse::error::Error),
    /// A database name that is not a plain identifier.
    #[error("'{0}' is not a usable database name: letters, digits and '_' only")]
    BadDatabaseName(String),
    /// The server listed a partition id Varde would not put into an `ALTER` statement.
    #[error("unexpected partition id '{0}' in system.parts")]
    BadPartitionId(String),
    /// A batch could not be read (does not have its kind's schema).
    #[error("batch: {0}")]
    Batch(#[from] varde_core::Error),
    /// A stored row Varde cannot read (written by a newer version, or edited by hand).
    #[error("unreadable row: {0}")]
    BadRow(String),
    /// What this store cannot do (the embedded store runs no SQL, so it cannot hunt).
    #[error("{0}")]
    Unsupported(&'static str),
    /// A migration statement that has no cluster form (see `schema::on_cluster`).
    #[error("schema: {0}")]
    Schema(String),
    /// A migration failed.
    #[error("migration {version} ({name}): {source}")]
    Migration {
        /// Version of the failed migration.
        version: u32,
        /// Its name.
        name: &'static str,
        /// Why.
        source: ::clickhouse::error::Error,
    },
}

/// ClickHouse error codes that refuse the data sent, not the server's state: the same rows will
/// be refused again however often they are retried, while other rows go in. Codes not listed
/// here (server overloaded, read-only replica, unknown table, access denied, codes of newer
/// releases) are taken as the server's state and retried: a batch is parked only when it is
/// certain that the batch itself is the problem.
pub const REFUSING_CODES: &[u32] = &[
    6,   // CANNOT_PARSE_TEXT
    8,   // THERE_IS_NO_COLUMN
    10,  // NOT_FOUND_COLUMN_IN_BLOCK
    16,  // NO_SUCH_COLUMN_IN_TABLE
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    33,  // CANNOT_READ_ALL_DATA (rows do not have the table's shape)
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    43,  // ILLEGAL_TYPE_OF_ARGUMENT
    44,  // ILLEGAL_COLUMN
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    128, // TOO_LARGE_ARRAY_SIZE
    131, // TOO_LARGE_STRING_SIZE
    190, // SIZES_OF_ARRAYS_DOESNT_MATCH
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (a guard column refusing a row)
    469, // VIOLATED_CONSTRAINT
];

/// The error code in a ClickHouse error text (`Code: 395, e.displayText() = …` on 18.16,
/// `Code: 395. DB::Exception: …` on current releases).
pub fn clickhouse_code(text: &str) -> Option<u32> {
    let rest = &text[text.find("Code: ")? + 6..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

impl Error {
    /// Whether the store refuses *this data*: retrying the same rows cannot succeed, other rows
    /// can (a row the server refuses, a batch without its kind's schema). The pipeline parks
    /// such a batch in the dead-letter table instead of retrying it.
    pub fn refuses_data(&self) -> bool {
        use ::clickhouse::error::Error as Ch;
        match self {
            Error::Batch(_) => true,
            Error::ClickHouse(e) => match e {
                Ch::BadResponse(text) => clickhouse_code(text).is_some_and(|code| {
                    REFUSING_CODES.contains(&code)
                        // 252 is also "too many parts", the server's state; only the per-insert
                        // partition limit is about the rows.
                        || (code == 252 && text.contains("partitions for single INSERT"))
                }),
                Ch::Network(_) | Ch::TimedOut | Ch::InvalidParams(_) | Ch::Other(_) => false,
                // Everything else fails while encoding these rows on this side.
                _ => true,
            },
            Error::BadDatabaseName(_)
            | Error::BadPartitionId(_)
            | Error::BadRow(_)
            | Error::Unsupported(_)
            | Error::Schema(_)
            | Error::Migration { .. } => false,
        }
    }

    /// Whether retrying later can succeed (server down, overloaded, or not yet set up), as
    /// opposed to data the server will always refuse ([`Error::refuses_data`]).
    pub fn is_retriable(&self) -> bool {
        !self.refuses_data()
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Number of distinct stored events of one tenant and source kind.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct EventCount {
    /// Kommunenummer.
    pub tenant: String,
    /// Source kind name.
    pub source_kind: String,
    /// Distinct events.
    pub events: u64,
}

/// A stored event, as the read API returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Event id, 32 hex digits.
    pub event_id: String,
    /// Kommunenummer.
    pub tenant: String,
    /// Event time, µs since the epoch.
    pub event_time_us: i64,
    /// When the collector received it, µs since the epoch (whole seconds).
    pub receive_time_us: i64,
    /// Source kind name.
    pub source_kind: String,
    /// Collector id.
    pub collector_id: String,
    /// Batch sequence number.
    pub batch_seq: u64,
    /// Row within the batch.
    pub batch_row: u32,
    /// Host, empty when unknown.
    pub host: String,
    /// Severity.
    pub severity: Option<u8>,
    /// Message, empty when none.
    pub message: String,
    /// Typed columns and remaining fields, as text.
    pub fields: Vec<(String, String)>,
}

/// Which events to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventQuery {
    /// Only this tenant's events; `None` for all tenants (CERT-wide).
    pub tenant: Option<Kommunenummer>,
    /// At most this many, oldest first.
    pub limit: u64,
}

/// One alert: a rule matching an event, with what the analyst needs to triage it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alert {
    /// Deterministic id (rule, event): a re-detected event yields the same id.
    pub alert_id: AlertId,
    /// Groups repeated alerts: the same rule, tenant, component and host (see varde-pipeline).
    pub dedup_key: [u8; 16],
    /// Kommunenummer of the event.
    pub tenant: String,
    /// Shared component the event concerns (`idporten`, …), empty when none is known.
    pub component: String,
    /// The rule's id (its Sigma `id`).
    pub rule_id: String,
    /// The rule's title.
    pub rule_title: String,
    /// The rule's level (`informational` … `critical`), empty when the rule has none.
    pub rule_level: String,
    /// The rule's tags (ATT&CK techniques and others).
    pub rule_tags: Vec<String>,
    /// The event.
    pub event_id: EventId,
    /// The event's time, µs since the epoch.
    pub event_time_us: i64,
    /// When the pipeline detected it, µs since the epoch.
    pub detect_time_us: i64,
    /// Source kind name of the event.
    pub source_kind: String,
    /// Host of the event, empty when unknown.
    pub host: String,
    /// The fields the rule tests, with the event's values (one pair per value).
    pub matched: Vec<(String, String)>,
}

impl Alert {
    /// The value of the matched field `name` (a correlation alert's `correlation.window`, …).
    pub fn matched_field(&self, name: &str) -> Option<&str> {
        self.matched
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One document of the rules a pipeline loaded: a rule with what the dashboard shows of it
/// (and credits, per the Detection Rule License), or a file that did not load, with why.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RuleEntry {
    /// The id alerts carry (the Sigma id, or `title:<title>` without one); empty for a file
    /// that did not load before its id was read.
    pub rule_id: String,
    /// The file (or `rules/sigma/<file>` for Varde's built-in pack).
    pub source: String,
    /// Title.
    pub title: String,
    /// Level.
    pub level: String,
    /// Sigma status (stable, test, experimental, ...).
    pub status: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Author(s), as the rule credits them.
    pub author: String,
    /// Description.
    pub description: String,
    /// References.
    pub references: Vec<String>,
    /// Known false positives.
    pub falsepositives: Vec<String>,
    /// The source kind it runs on.
    pub kind: String,
    /// The rule's YAML (at most 64 KiB; empty when the file could not be read again).
    pub text: String,
    /// Why it did not load; empty for a loaded rule.
    pub error: String,
}

/// A collector as the events it delivered show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorSeen {
    /// Its id.
    pub collector_id: String,
    /// Its municipality.
    pub tenant: String,
    /// When the pipeline last received an event of it, µs since the epoch (whole seconds).
    pub last_receive_us: i64,
    /// Distinct events received in the hour before `now` (its own reports not counted).
    pub events_last_hour: u64,
    /// The source kinds it sent, sorted (its own reports not counted).
    pub kinds: Vec<String>,
    /// Its newest report on itself in the last week (spool depth, drops), if it sent one.
    pub status: Option<varde_core::status::CollectorStatus>,
}

/// What alert volume is counted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeBy {
    /// Per municipality.
    Tenant,
    /// Per shared component (empty: none).
    Component,
}

/// Distinct alerts of one time bucket and one municipality or component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumePoint {
    /// Start of the bucket, µs since the epoch (event time).
    pub bucket_us: i64,
    /// The municipality or component.
    pub key: String,
    /// Distinct alerts.
    pub alerts: u64,
}

/// A hunt over stored events: a `WHERE` condition that `varde_rules::sql` made from a parsed
/// Sigma rule (never text from a request), a time range and a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunt {
    /// The condition over the `events` table.
    pub condition: String,
    /// From this event time, µs since the epoch (inclusive; whole seconds).
    pub from_us: i64,
    /// To this event time (exclusive; whole seconds).
    pub to_us: i64,
    /// At most this many events.
    pub limit: u64,
    /// After skipping this many (oldest first).
    pub offset: u64,
}

/// Which alerts to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertQuery {
    /// Only this tenant's alerts; `None` for all tenants (CERT-wide).
    pub tenant: Option<Kommunenummer>,
    /// At most this many, oldest event first.
    pub limit: u64,
}

/// Number of distinct alerts of one rule and tenant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AlertCount {
    /// Kommunenummer.
    pub tenant: String,
    /// Rule id.
    pub rule_id: String,
    /// Distinct alerts.
    pub alerts: u64,
}

/// What an analyst did to a group of alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TriageKind {
    /// Seen; someone is on it.
    Acknowledge,
    /// Given to an analyst (`assignee`).
    Assign,
    /// Closed with a [`Resolution`].
    Resolve,
    /// Hidden from the queue until `until_us` (`reason` says why); still stored and counted.
    Suppress,
    /// Back to new: undoes a resolution or a suppression.
    Reopen,
}

impl TriageKind {
    /// Every kind.
    pub const ALL: [TriageKind; 5] = [
        TriageKind::Acknowledge,
        TriageKind::Assign,
        TriageKind::Resolve,
        TriageKind::Suppress,
        TriageKind::Reopen,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            TriageKind::Acknowledge => "acknowledge",
            TriageKind::Assign => "assign",
            TriageKind::Resolve => "resolve",
            TriageKind::Suppress => "suppress",
            TriageKind::Reopen => "reopen",
        }
    }

    /// The kind of a stored name.
    pub fn parse(s: &str) -> Option<TriageKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// One alert group as the store sees it: whose it is and when detection last added to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSeen {
    /// The group (see [`Alert::dedup_key`]).
    pub dedup_key: [u8; 16],
    /// Kommunenummer of its alerts.
    pub tenant: String,
    /// When its newest alert was detected, µs since the epoch (whole seconds in ClickHouse).
    pub last_detect_us: i64,
    /// Its shared component, empty when none (the same for every alert of a group).
    pub component: String,
    /// Its rule's title.
    pub rule_title: String,
    /// Its rule's level.
    pub rule_level: String,
}

/// How a resolved group of alerts ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resolution {
    /// A real attack that had an effect.
    TruePositiveWithImpact,
    /// A real attack without effect (blocked, failed).
    TruePositiveWithoutImpact,
    /// The rule matched something that was not what it looks for.
    FalsePositive,
    /// What the rule looks for, but sanctioned (an admin's tool, a test).
    Legitimate,
    /// Does not apply (the system is gone, the data was wrong).
    NotApplicable,
}

impl Resolution {
    /// Every resolution.
    pub const ALL: [Resolution; 5] = [
        Resolution::TruePositiveWithImpact,
        Resolution::TruePositiveWithoutImpact,
        Resolution::FalsePositive,
        Resolution::Legitimate,
        Resolution::NotApplicable,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::TruePositiveWithImpact => "true_positive_with_impact",
            Resolution::TruePositiveWithoutImpact => "true_positive_without_impact",
            Resolution::FalsePositive => "false_positive",
            Resolution::Legitimate => "legitimate",
            Resolution::NotApplicable => "not_applicable",
        }
    }

    /// The resolution of a stored name.
    pub fn parse(s: &str) -> Option<Resolution> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// One row of the append-only triage history: who did what to which group of alerts, when,
/// and what the group's status was before (the audit trail of triage).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriageAction {
    /// Random id of the action: a retried write collapses into one row.
    pub action_id: [u8; 16],
    /// When, µs since the epoch.
    pub at_us: i64,
    /// Kommunenummer of the group's alerts.
    pub tenant: String,
    /// The group (see [`Alert::dedup_key`]).
    pub dedup_key: [u8; 16],
    /// What was done.
    pub kind: TriageKind,
    /// The account that did it.
    pub actor: String,
    /// For [`TriageKind::Assign`]: the analyst; empty otherwise.
    pub assignee: String,
    /// For [`TriageKind::Resolve`].
    pub resolution: Option<Resolution>,
    /// Free text: why (required for suppressions).
    pub reason: String,
    /// For [`TriageKind::Suppress`]: until when, µs since the epoch; 0 otherwise.
    pub until_us: i64,
    /// The group's status before the action, as the dashboard showed it.
    pub before: String,
}

/// A message the pipeline refused, parked for inspection (the dead-letter table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    /// Topic it was read from.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// The rejection reason label (`not_an_envelope`, `tenant_mismatch`, …).
    pub reason: String,
    /// The error, as logged.
    pub error: String,
    /// When the pipeline refused it, µs since the epoch.
    pub received_time_us: i64,
    /// Length of the whole payload in bytes.
    pub payload_len: u64,
    /// The payload: its first [`DEAD_LETTER_PAYLOAD_MAX`] bytes for hostile input, all of it for
    /// a valid envelope parked by detection or the store (`detection`, `store_refused`), so it
    /// can be processed again once the fault is fixed.
    pub payload: Vec<u8>,
}

/// How much of a refused payload is kept (the rest is counted in `payload_len`).
pub const DEAD_LETTER_PAYLOAD_MAX: usize = 1 << 20;

/// A table whose rows age out by retention (each is partitioned by day).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Table {
    /// `events`, partitioned by the event's day (`event_date`).
    Events,
    /// `alerts`, partitioned by the day of the alert's event (`event_date`).
    Alerts,
    /// `dead_letters`, partitioned by the day the message was refused (`received_date`).
    DeadLetters,
    /// `correlation_hits`, partitioned by the day the hit was observed (`observed_date`).
    CorrelationHits,
}

impl Table {
    /// Every table retention applies to.
    pub const ALL: [Table; 4] = [
        Table::Events,
        Table::Alerts,
        Table::DeadLetters,
        Table::CorrelationHits,
    ];

    /// The table's name in the database (also the `table` label of metrics).
    pub fn name(self) -> &'static str {
        match self {
            Table::Events => "events",
            Table::Alerts => "alerts",
            Table::DeadLetters => "dead_letters",
            Table::CorrelationHits => "correlation_hits",
        }
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One day partition dropped by retention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DroppedPartition {
    /// The partition's id (`YYYYMMDD` in ClickHouse).
    pub partition: String,
    /// Its day, in days since 1970-01-01 (UTC).
    pub day: u16,
    /// Rows it held (before merges collapsed replays, so an upper bound of distinct rows).
    pub rows: u64,
}

/// Today's day number (days since 1970-01-01, UTC), as the stores' `Date` columns count.
pub fn today_day() -> u16 {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    u16::try_from(secs / 86_400).unwrap_or(u16::MAX)
}

/// ClickHouse's id of a `Date` partition: the day as `YYYYMMDD` (proleptic Gregorian, UTC).
pub fn partition_id_of_day(day: u16) -> String {
    // Howard Hinnant's civil_from_days.
    let z = i64::from(day) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

/// The day (days since 1970-01-01, UTC) of a time in µs since the epoch, as the stores
/// partition by it: clamped to ClickHouse's `Date` range.
pub fn day_of_us(us: i64) -> u16 {
    let (secs, _) = clamp_datetime(us);
    u16::try_from(secs / 86_400).unwrap_or(u16::MAX)
}

/// Where events are written and read back.
pub trait EventStore: Send + Sync {
    /// Stores every row of these envelopes; returns the number of rows written. Idempotent per
    /// event: writing an envelope again adds no visible event.
    fn write_envelopes(&self, envelopes: &[Envelope]) -> impl Future<Output = Result<u64>> + Send;

    /// Distinct events per tenant and source kind.
    fn event_counts(&self) -> impl Future<Output = Result<Vec<EventCount>>> + Send;

    /// Events, oldest first, without duplicates.
    fn events(&self, query: &EventQuery) -> impl Future<Output = Result<Vec<StoredEvent>>> + Send;

    /// Stores alerts; returns the number written. Idempotent per alert id: writing an alert
    /// again adds no visible alert.
    fn write_alerts(&self, alerts: &[Alert]) -> impl Future<Output = Result<u64>> + Send;

    /// Alerts, oldest event first, without duplicates.
    fn alerts(&self, query: &AlertQuery) -> impl Future<Output = Result<Vec<Alert>>> + Send;

    /// The newest alerts (at most `query.limit`, of `query.tenant` when given), newest event
    /// first, without duplicates: the dashboard's queue.
    fn recent_alerts(&self, query: &AlertQuery) -> impl Future<Output = Result<Vec<Alert>>> + Send;

    /// The alerts of every municipality detected in `[from_us, to_us)`, oldest detection first
    /// (then by id), at most `limit`: what the notifier puts into a digest. Whole seconds, as
    /// ClickHouse keeps detection times.
    fn alerts_detected(
        &self,
        from_us: i64,
        to_us: i64,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Alert>>> + Send;

    /// How many distinct alerts (of `tenant`, when given) detection added in a later second
    /// than that of `since_us`: what the dashboard's live queue announces. Whole seconds, as
    /// ClickHouse keeps detection times.
    fn alerts_detected_after(
        &self,
        tenant: Option<Kommunenummer>,
        since_us: i64,
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Distinct alerts (of `tenant`, when given) per `bucket_s` seconds of event time from
    /// `from_us` to `to_us`, per municipality or component; buckets without alerts are left out.
    /// Oldest bucket first, then by key.
    fn alert_volume(
        &self,
        tenant: Option<Kommunenummer>,
        by: VolumeBy,
        from_us: i64,
        to_us: i64,
        bucket_s: u32,
    ) -> impl Future<Output = Result<Vec<VolumePoint>>> + Send;

    /// The newest alerts of the group `dedup_key` (of `tenant`, when given), newest event
    /// first, at most `limit`.
    fn group_alerts(
        &self,
        tenant: Option<Kommunenummer>,
        dedup_key: [u8; 16],
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Alert>>> + Send;

    /// Where rule `rule_id` fired from event time `since_us` on: distinct alerts per
    /// municipality, most first (then by kommunenummer). For the CERT: it spans municipalities.
    fn rule_spread(
        &self,
        rule_id: &str,
        since_us: i64,
    ) -> impl Future<Output = Result<Vec<(String, u64)>>> + Send;

    /// The rows of one campaign: the alerts of correlation `rule_id` that carry
    /// `correlation.window = window` (one per municipality it touched, those that joined after
    /// it fired included), with event times from `since_us` (the window's first hit) on, by
    /// kommunenummer, at most `limit`. For the CERT only: it names every municipality.
    fn campaign_alerts(
        &self,
        rule_id: &str,
        window: &str,
        since_us: i64,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Alert>>> + Send;

    /// The collectors (of `tenant`, when given) that delivered events with event dates in the
    /// week before `now_us`, by municipality and id.
    fn collectors(
        &self,
        tenant: Option<Kommunenummer>,
        now_us: i64,
    ) -> impl Future<Output = Result<Vec<CollectorSeen>>> + Send;

    /// Where alerts on shared component `component` came from from event time `since_us` on
    /// (of `tenant`, when given): distinct alerts per municipality, most first.
    fn component_spread(
        &self,
        tenant: Option<Kommunenummer>,
        component: &str,
        since_us: i64,
    ) -> impl Future<Output = Result<Vec<(String, u64)>>> + Send;

    /// Distinct alerts per tenant and rule.
    fn alert_counts(&self) -> impl Future<Output = Result<Vec<AlertCount>>> + Send;

    /// Parks refused messages; idempotent per (topic, partition, offset).
    fn write_dead_letters(
        &self,
        letters: &[DeadLetter],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Parked messages, oldest first, without duplicates.
    fn dead_letters(&self, limit: u64) -> impl Future<Output = Result<Vec<DeadLetter>>> + Send;

    /// Retention: drops every whole day partition of `table` whose day is before `cutoff_day`
    /// (days since 1970-01-01, UTC) and returns what was dropped, oldest first. Running it
    /// again with the same cutoff drops nothing.
    fn drop_partitions_older_than(
        &self,
        table: Table,
        cutoff_day: u16,
    ) -> impl Future<Output = Result<Vec<DroppedPartition>>> + Send;

    /// A cheap round trip to the store, to tell an idle pipeline's store from a dead one.
    fn check_alive(&self) -> impl Future<Output = Result<()>> + Send;

    /// One alert, if it exists **and belongs to `tenant`** when one is given (`None`: any
    /// tenant, for the CERT). Tenant isolation is this query's condition, not the caller's.
    fn alert(
        &self,
        tenant: Option<Kommunenummer>,
        id: AlertId,
    ) -> impl Future<Output = Result<Option<Alert>>> + Send;

    /// One event, if it exists and belongs to `tenant` when one is given.
    fn event(
        &self,
        tenant: Option<Kommunenummer>,
        id: EventId,
    ) -> impl Future<Output = Result<Option<StoredEvent>>> + Send;

    /// The alert groups among `keys` that have alerts (of `tenant`, when given), one per dedup
    /// key and tenant, ordered by key and tenant; keys without alerts are left out.
    fn groups(
        &self,
        tenant: Option<Kommunenummer>,
        keys: &[[u8; 16]],
    ) -> impl Future<Output = Result<Vec<GroupSeen>>> + Send;

    /// The events (of `tenant`, when given) in the hunt's time range that meet its condition,
    /// oldest first, one page. The tenant is the query's own condition.
    fn hunt(
        &self,
        tenant: Option<Kommunenummer>,
        hunt: &Hunt,
    ) -> impl Future<Output = Result<Vec<StoredEvent>>> + Send;

    /// Appends triage actions; returns how many. Rows are never changed or removed.
    fn write_triage(&self, actions: &[TriageAction]) -> impl Future<Output = Result<u64>> + Send;

    /// The triage history of the groups `keys` (of `tenant`, when given), oldest first.
    fn triage(
        &self,
        tenant: Option<Kommunenummer>,
        keys: &[[u8; 16]],
    ) -> impl Future<Output = Result<Vec<TriageAction>>> + Send;

    /// Records the rules a pipeline has loaded (and the files that did not load), all stamped
    /// `loaded_at_us`: the catalog the dashboard shows.
    fn write_rules(
        &self,
        loaded_at_us: i64,
        entries: &[RuleEntry],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// The most recent catalog (the entries of the latest load), by source, and when it was
    /// loaded (`None` when no pipeline has written one).
    fn rules(&self) -> impl Future<Output = Result<(Option<i64>, Vec<RuleEntry>)>> + Send;

    /// The rule `rule_id` of the most recent catalog, if it loaded there.
    fn rule(&self, rule_id: &str) -> impl Future<Output = Result<Option<RuleEntry>>> + Send;

    /// Every group's triage actions, newest first, at most `limit`: the audit log.
    fn triage_log(&self, limit: u64) -> impl Future<Output = Result<Vec<TriageAction>>> + Send;

    /// Appends changes to incidents; returns how many. Rows are never changed or removed.
    fn write_incident_changes(
        &self,
        changes: &[incident::IncidentChange],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// The changes of every incident (of `incident` alone, when given), oldest first. With a
    /// `tenant`, only incidents that concern it and only the rows it may see ([`incident`]).
    fn incident_changes(
        &self,
        tenant: Option<Kommunenummer>,
        incident: Option<[u8; 16]>,
    ) -> impl Future<Output = Result<Vec<incident::IncidentChange>>> + Send;

    /// Appends rule switches; returns how many. Rows are never changed or removed.
    fn write_rule_switches(
        &self,
        switches: &[RuleSwitch],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Every rule switch, oldest first: the history [`disabled_rules`] reads the state from.
    fn rule_switches(&self) -> impl Future<Output = Result<Vec<RuleSwitch>>> + Send;

    /// Appends correlation hits to the log; returns how many. Rows are never changed.
    fn write_correlation_hits(
        &self,
        hits: &[CorrelationHit],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// The logged correlation hits observed at or after `observed_since_us`, in `seq` order
    /// (a hit written twice comes back once).
    fn correlation_hits(
        &self,
        observed_since_us: i64,
    ) -> impl Future<Output = Result<Vec<CorrelationHit>>> + Send;

    /// The hits of one group of a correlation with event times in `[first_us, last_us]` (a
    /// fired window's span), oldest first, at most `limit`; of `tenant`'s events only, when
    /// given (a municipality sees its own part of a campaign).
    fn window_hits(
        &self,
        tenant: Option<Kommunenummer>,
        window: &WindowQuery,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<CorrelationHit>>> + Send;
}

/// A fired correlation window, to read its hits back ([`EventStore::window_hits`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowQuery {
    /// The correlation (its catalog id).
    pub correlation: String,
    /// The group: the values of its `group-by` fields, in order.
    pub group: Vec<String>,
    /// The window's first hit's event time, µs.
    pub first_us: i64,
    /// Its last hit's.
    pub last_us: i64,
}

/// One hit a correlation took into a group's window, as the pipeline logs it
/// (`correlation_hits`) with the alerts of the same batch, before the batch is committed.
/// Replayed in `seq` order when a pipeline starts, the log rebuilds the windows a restart or a
/// crash would otherwise forget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorrelationHit {
    /// Order of observation: strictly increasing within a pipeline, and past the newest
    /// logged one after a restart.
    pub seq: u64,
    /// When the pipeline took the hit, µs since the epoch (the log's day partition).
    pub observed_us: i64,
    /// The correlation (its catalog id, as its alerts carry it).
    pub correlation: String,
    /// A digest of the correlation's definition: a hit logged under another definition of the
    /// same id (the rule was edited) is not replayed into the new one.
    pub definition: [u8; 16],
    /// The group: the values of the correlation's `group-by` fields, in order.
    pub group: Vec<String>,
    /// Which of the correlation's rules hit (its position in `rules`).
    pub rule_pos: u16,
    /// The event that hit.
    pub event_id: EventId,
    /// The event's time, µs since the epoch.
    pub event_time_us: i64,
    /// The municipality the event came from.
    pub tenant: String,
    /// The value of the condition's field, for the value types.
    pub value: Option<String>,
}

/// An analyst turning a rule off or on again from the dashboard: one append-only row; the
/// newest row of a rule is its state, and a rule with no row is on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleSwitch {
    /// Random id of the switch: a retried write collapses into one row.
    pub switch_id: [u8; 16],
    /// When, µs since the epoch.
    pub at_us: i64,
    /// The rule (its catalog id, as alerts carry it).
    pub rule_id: String,
    /// `false` turns the rule off: the pipeline stops raising its alerts.
    pub enabled: bool,
    /// The account that switched it.
    pub actor: String,
    /// Why (required by the dashboard).
    pub reason: String,
}

/// The rules whose newest switch turned them off, from switches in any order.
pub fn disabled_rules(switches: &[RuleSwitch]) -> std::collections::BTreeSet<String> {
    let mut newest: HashMap<&str, &RuleSwitch> = HashMap::new();
    for s in switches {
        let e = newest.entry(s.rule_id.as_str()).or_insert(s);
        if (s.at_us, s.switch_id) > (e.at_us, e.switch_id) {
            *e = s;
        }
    }
    newest
        .into_values()
        .filter(|s| !s.enabled)
        .map(|s| s.rule_id.clone())
        .collect()
}

/// One event of an envelope, flattened for storage: the shape both stores keep.
pub(crate) struct FlatRow<'a> {
    pub event_id: EventId,
    pub tenant: &'a str,
    pub event_time_us: i64,
    pub receive_time_us: i64,
    pub collector_id: &'a str,
    pub batch_seq: u64,
    pub batch_row: u32,
    pub source_kind: &'static str,
    pub host: &'a str,
    pub severity: Option<u8>,
    pub message: &'a str,
    pub field_keys: Vec<&'a str>,
    pub field_values: Vec<Cow<'a, str>>,
}

/// Flattens every row of an envelope.
pub(crate) fn flatten(envelope: &Envelope) -> Result<Vec<FlatRow<'_>>> {
    let h = &envelope.header;
    let reader = BatchReader::new(h.kind, &envelope.batch)?;
    let mut rows = Vec::with_capacity(reader.len());
    for row in 0..reader.len() {
        let batch_row = u32::try_from(row).unwrap_or(u32::MAX);
        let typed = reader.typed_fields(row);
        let mut field_keys = Vec::with_capacity(typed.len() + 4);
        let mut field_values = Vec::with_capacity(typed.len() + 4);
        for (k, v) in typed {
            field_keys.push(k);
            field_values.push(Cow::Owned(v));
        }
        for (k, v) in reader.attrs(row) {
            field_keys.push(k);
            field_values.push(Cow::Borrowed(v));
        }
        rows.push(FlatRow {
            event_id: EventId::derive(h.collector_id.as_str(), h.batch_seq, batch_row),
            tenant: h.tenant.as_str(),
            event_time_us: reader.event_time_us(row),
            receive_time_us: reader.receive_time_us(row),
            collector_id: h.collector_id.as_str(),
            batch_seq: h.batch_seq,
            batch_row,
            source_kind: h.kind.name(),
            host: reader.host(row).unwrap_or(""),
            severity: reader.severity(row),
            message: reader.message(row).unwrap_or(""),
            field_keys,
            field_values,
        });
    }
    Ok(rows)
}

/// Seconds for a ClickHouse `DateTime` (an unsigned 32-bit count): times outside 1970–2106 are
/// clamped to its range rather than wrapped.
pub(crate) fn clamp_datetime(us: i64) -> (u32, u32) {
    let (secs, frac) = split_micros(us);
    let clamped = u32::try_from(secs.clamp(0, i64::from(u32::MAX))).unwrap_or(u32::MAX);
    (clamped, frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_ids_are_clickhouse_days() {
        assert_eq!(partition_id_of_day(0), "19700101");
        assert_eq!(partition_id_of_day(19_845), "20240502");
        assert_eq!(partition_id_of_day(19_782), "20240229");
        assert_eq!(day_of_us(1_714_608_000_000_000), 19_845);
        assert_eq!(day_of_us(-5), 0);
    }

    fn response(text: &str) -> Error {
        Error::ClickHouse(::clickhouse::error::Error::BadResponse(text.to_owned()))
    }

    #[test]
    fn refusals_are_told_from_the_server_state() {
        // Texts as ClickHouse 18.16 and current releases print them.
        let throw = "Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf' \
                     function is non zero, e.what() = DB::Exception";
        assert_eq!(clickhouse_code(throw), Some(395));
        assert!(response(throw).refuses_data());
        assert!(
            response(
                "Code: 53. DB::Exception: Type mismatch in IN or VALUES section. (TYPE_MISMATCH)"
            )
            .refuses_data()
        );
        assert!(response("Code: 252. DB::Exception: Too many partitions for single INSERT block (more than 100).").refuses_data());
        for held in [
            "Code: 252. DB::Exception: Too many parts (300). Merges are processing significantly slower than inserts. (TOO_MANY_PARTS)",
            "Code: 241. DB::Exception: Memory limit (total) exceeded. (MEMORY_LIMIT_EXCEEDED)",
            "Code: 60, e.displayText() = DB::Exception: Table v.events doesn't exist., e.what() = DB::Exception",
            "Code: 516. DB::Exception: default: Authentication failed. (AUTHENTICATION_FAILED)",
            "<html>502 Bad Gateway</html>",
        ] {
            let e = response(held);
            assert!(e.is_retriable(), "{held}");
        }
        assert!(Error::ClickHouse(::clickhouse::error::Error::TimedOut).is_retriable());
        assert!(!Error::ClickHouse(::clickhouse::error::Error::Custom("x".into())).is_retriable());
        assert_eq!(clickhouse_code("Code: "), None);
    }
}
