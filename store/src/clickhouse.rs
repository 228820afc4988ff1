//! The ClickHouse store, over HTTP with RowBinary (`clickhouse` crate, validation off so that
//! ClickHouse 18.16, which lacks `RowBinaryWithNamesAndTypes`, works as well as current releases).

use std::borrow::Cow;
use std::collections::HashMap;
use std::time::Duration;

use clickhouse::{Client, Row, RowWrite};
use serde::{Deserialize, Serialize};
use tracing::info;
use varde_core::Envelope;

use crate::collectors::{Collectors, IdentityAction, IdentityRecord, TokenAction, TokenRecord};
use crate::incident::{Change, IncidentChange, IncidentStatus, SHARED_FIELDS, Severity, Tlp};
use crate::outbox::{Attempt, Channel, Notification, Outbox, OutboxEntry, Outcome};
use crate::reports::{ExportRecord, ReportLog, SubmittedReport};
use crate::schema::{CLUSTER_MIGRATIONS_TABLE, MIGRATIONS, MIGRATIONS_TABLE, on_cluster};
use crate::{
    Alert, AlertCount, AlertQuery, CollectorSeen, CorrelationHit, DeadLetter, DroppedPartition,
    Error, EventCount, EventQuery, EventStore, GroupSeen, Hunt, Resolution, Result, RuleEntry,
    RuleSwitch, StoredEvent, Table, TriageAction, TriageKind, VolumeBy, VolumePoint, WindowQuery,
    clamp_datetime, flatten,
};
use varde_core::status::CollectorStatus;
use varde_core::{AlertId, EventId, Kommunenummer};

/// Where the ClickHouse store lives.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSettings {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding Varde's tables (created by the migrations).
    #[serde(default = "default_database")]
    pub database: String,
    /// User name; ClickHouse's `default` when absent.
    #[serde(default)]
    pub user: Option<String>,
    /// Password.
    #[serde(default)]
    pub password: Option<String>,
    /// The ClickHouse cluster (a name of the servers' `remote_servers`) Varde's tables live on.
    /// Set, the migrations make a replicated local table on every node (`ON CLUSTER`) and a
    /// `Distributed` table over them under each table's name, writes wait until every shard
    /// has its rows (`insert_distributed_sync`), and reads go through the distributed tables.
    /// Absent: one server, nothing of this (see `docs/capacity.md`).
    #[serde(default)]
    pub cluster: Option<String>,
}

fn default_database() -> String {
    "varde".to_owned()
}

impl ClickHouseSettings {
    /// Settings for `url` and `database`, no credentials.
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> Self {
        ClickHouseSettings {
            url: url.into(),
            database: database.into(),
            user: None,
            password: None,
            cluster: None,
        }
    }
}

/// The ClickHouse implementation of [`EventStore`].
#[derive(Clone)]
pub struct ClickHouseStore {
    client: Client,
    db: String,
    /// The cluster of [`ClickHouseSettings::cluster`], checked to be a plain name.
    cluster: Option<String>,
}

#[derive(Row, Serialize)]
struct EventRow<'a> {
    event_date: u16,
    tenant: &'a str,
    event_time: u32,
    event_time_us: u32,
    receive_time: u32,
    event_id: [u8; 16],
    collector_id: &'a str,
    batch_seq: u64,
    batch_row: u32,
    source_kind: &'a str,
    host: &'a str,
    severity: Option<u8>,
    message: &'a str,
    field_keys: Vec<&'a str>,
    field_values: Vec<Cow<'a, str>>,
}

#[derive(Row, Deserialize)]
struct EventOut {
    event_id: String,
    tenant: String,
    event_time: u32,
    event_time_us: u32,
    receive_time: u32,
    source_kind: String,
    collector_id: String,
    batch_seq: u64,
    batch_row: u32,
    host: String,
    severity: Option<u8>,
    message: String,
    field_keys: Vec<String>,
    field_values: Vec<String>,
}

#[derive(Row, Deserialize)]
struct CountOut {
    tenant: String,
    source_kind: String,
    events: u64,
}

#[derive(Row, Serialize, Deserialize)]
struct AlertRow {
    event_date: u16,
    tenant: String,
    event_time: u32,
    event_time_us: u32,
    alert_id: [u8; 16],
    dedup_key: [u8; 16],
    component: String,
    rule_id: String,
    rule_title: String,
    rule_level: String,
    rule_tags: Vec<String>,
    event_id: [u8; 16],
    detect_time: u32,
    source_kind: String,
    host: String,
    matched_keys: Vec<String>,
    matched_values: Vec<String>,
}

impl AlertRow {
    fn of(a: &Alert) -> Self {
        let (event_time, event_time_us) = clamp_datetime(a.event_time_us);
        let (detect_time, _) = clamp_datetime(a.detect_time_us);
        AlertRow {
            event_date: u16::try_from(event_time / 86_400).unwrap_or(u16::MAX),
            tenant: a.tenant.clone(),
            event_time,
            event_time_us,
            alert_id: a.alert_id.0,
            dedup_key: a.dedup_key,
            component: a.component.clone(),
            rule_id: a.rule_id.clone(),
            rule_title: a.rule_title.clone(),
            rule_level: a.rule_level.clone(),
            rule_tags: a.rule_tags.clone(),
            event_id: a.event_id.0,
            detect_time,
            source_kind: a.source_kind.clone(),
            host: a.host.clone(),
            matched_keys: a.matched.iter().map(|(k, _)| k.clone()).collect(),
            matched_values: a.matched.iter().map(|(_, v)| v.clone()).collect(),
        }
    }

    fn into_alert(self) -> Alert {
        Alert {
            alert_id: AlertId(self.alert_id),
            dedup_key: self.dedup_key,
            tenant: self.tenant,
            component: self.component,
            rule_id: self.rule_id,
            rule_title: self.rule_title,
            rule_level: self.rule_level,
            rule_tags: self.rule_tags,
            event_id: EventId(self.event_id),
            event_time_us: i64::from(self.event_time) * 1_000_000 + i64::from(self.event_time_us),
            detect_time_us: i64::from(self.detect_time) * 1_000_000,
            source_kind: self.source_kind,
            host: self.host,
            matched: self
                .matched_keys
                .into_iter()
                .zip(self.matched_values)
                .collect(),
        }
    }
}

const ALERT_COLUMNS: &str = "event_date, tenant, toUInt32(event_time) AS event_time, \
    event_time_us, alert_id, dedup_key, component, rule_id, rule_title, rule_level, rule_tags, \
    event_id, toUInt32(detect_time) AS detect_time, source_kind, host, matched_keys, matched_values";

#[derive(Row, Serialize, Deserialize)]
struct TriageRow {
    at: u32,
    at_us: u32,
    tenant: String,
    dedup_key: [u8; 16],
    action_id: [u8; 16],
    action: String,
    actor: String,
    assignee: String,
    resolution: String,
    reason: String,
    until: u32,
    before: String,
}

#[derive(Row, Serialize, Deserialize)]
struct SwitchRow {
    at: u32,
    at_us: u32,
    switch_id: [u8; 16],
    rule_id: String,
    enabled: u8,
    actor: String,
    reason: String,
}

const SWITCH_COLUMNS: &str =
    "toUInt32(at) AS at, at_us, switch_id, rule_id, enabled, actor, reason";

impl SwitchRow {
    fn of(s: &RuleSwitch) -> Self {
        let (at, at_us) = clamp_datetime(s.at_us);
        SwitchRow {
            at,
            at_us,
            switch_id: s.switch_id,
            rule_id: s.rule_id.clone(),
            enabled: u8::from(s.enabled),
            actor: s.actor.clone(),
            reason: s.reason.clone(),
        }
    }

    fn into_switch(self) -> RuleSwitch {
        RuleSwitch {
            switch_id: self.switch_id,
            at_us: i64::from(self.at) * 1_000_000 + i64::from(self.at_us),
            rule_id: self.rule_id,
            enabled: self.enabled != 0,
            actor: self.actor,
            reason: self.reason,
        }
    }
}

const TRIAGE_COLUMNS: &str = "toUInt32(at) AS at, at_us, tenant, dedup_key, action_id, action, \
    actor, assignee, resolution, reason, toUInt32(until) AS until, before";

#[derive(Row, Serialize, Deserialize)]
struct IncidentRow {
    at: u32,
    at_us: u32,
    incident_id: [u8; 16],
    change_id: [u8; 16],
    actor: String,
    field: String,
    value: String,
    dedup_key: [u8; 16],
    tenants: Vec<String>,
    components: Vec<String>,
}

const INCIDENT_COLUMNS: &str = "toUInt32(at) AS at, at_us, incident_id, change_id, actor, field, \
    value, dedup_key, tenants, components";

impl IncidentRow {
    fn of(c: &IncidentChange) -> Self {
        let (at, at_us) = clamp_datetime(c.at_us);
        let mut row = IncidentRow {
            at,
            at_us,
            incident_id: c.incident_id,
            change_id: c.change_id,
            actor: c.actor.clone(),
            field: c.change.field().to_owned(),
            value: String::new(),
            dedup_key: [0; 16],
            tenants: Vec::new(),
            components: Vec::new(),
        };
        match &c.change {
            Change::Opened(t)
            | Change::Title(t)
            | Change::Comment(t)
            | Change::Category(t)
            | Change::RootCause(t) => row.value = t.clone(),
            Change::UsersAffected(n) => row.value = n.map(|n| n.to_string()).unwrap_or_default(),
            Change::Status(s) => row.value = s.as_str().to_owned(),
            Change::Severity(s) => row.value = s.as_str().to_owned(),
            Change::Tlp(t) => row.value = t.as_str().to_owned(),
            Change::AwareAt(us) => row.value = us.to_string(),
            Change::LinkGroup {
                dedup_key,
                tenant,
                component,
                rule_title,
            } => {
                row.dedup_key = *dedup_key;
                row.tenants = vec![tenant.clone()];
                if !component.is_empty() {
                    row.components = vec![component.clone()];
                }
                row.value = rule_title.clone();
            }
            Change::Municipalities(m) => row.tenants = m.clone(),
            Change::Components(m) => row.components = m.clone(),
        }
        row
    }

    fn into_change(self) -> Result<IncidentChange> {
        let bad = |what: &str| Error::BadRow(format!("incident_changes: {what}"));
        let change = match self.field.as_str() {
            "opened" => Change::Opened(self.value),
            "title" => Change::Title(self.value),
            "comment" => Change::Comment(self.value),
            "category" => Change::Category(self.value),
            "root_cause" => Change::RootCause(self.value),
            "users_affected" => Change::UsersAffected(match self.value.as_str() {
                "" => None,
                v => Some(
                    v.parse()
                        .map_err(|_| bad("users affected is not a number"))?,
                ),
            }),
            "status" => Change::Status(
                IncidentStatus::parse(&self.value).ok_or_else(|| bad("unknown status"))?,
            ),
            "severity" => Change::Severity(
                Severity::parse(&self.value).ok_or_else(|| bad("unknown severity"))?,
            ),
            "tlp" => Change::Tlp(Tlp::parse(&self.value).ok_or_else(|| bad("unknown TLP"))?),
            "aware_at" => Change::AwareAt(
                self.value
                    .parse()
                    .map_err(|_| bad("awareness time is not a number"))?,
            ),
            "link_group" => Change::LinkGroup {
                dedup_key: self.dedup_key,
                tenant: self
                    .tenants
                    .into_iter()
                    .next()
                    .ok_or_else(|| bad("a link without its municipality"))?,
                component: self.components.into_iter().next().unwrap_or_default(),
                rule_title: self.value,
            },
            "municipalities" => Change::Municipalities(self.tenants),
            "components" => Change::Components(self.components),
            other => return Err(bad(&format!("unknown change {other:?}"))),
        };
        Ok(IncidentChange {
            change_id: self.change_id,
            incident_id: self.incident_id,
            at_us: i64::from(self.at) * 1_000_000 + i64::from(self.at_us),
            actor: self.actor,
            change,
        })
    }
}

#[derive(Row, Serialize, Deserialize)]
struct RuleRow {
    loaded_at: u32,
    loaded_at_us: u32,
    source: String,
    rule_id: String,
    title: String,
    level: String,
    status: String,
    tags: Vec<String>,
    author: String,
    description: String,
    references: Vec<String>,
    falsepositives: Vec<String>,
    kind: String,
    text: String,
    error: String,
}

const RULE_COLUMNS: &str = "toUInt32(loaded_at) AS loaded_at, loaded_at_us, source, rule_id, \
    title, level, status, tags, author, description, references, falsepositives, kind, text, error";

impl RuleRow {
    fn of(loaded_at_us: i64, e: &RuleEntry) -> Self {
        let (loaded_at, sub) = clamp_datetime(loaded_at_us);
        RuleRow {
            loaded_at,
            loaded_at_us: sub,
            source: e.source.clone(),
            rule_id: e.rule_id.clone(),
            title: e.title.clone(),
            level: e.level.clone(),
            status: e.status.clone(),
            tags: e.tags.clone(),
            author: e.author.clone(),
            description: e.description.clone(),
            references: e.references.clone(),
            falsepositives: e.falsepositives.clone(),
            kind: e.kind.clone(),
            text: e.text.clone(),
            error: e.error.clone(),
        }
    }

    fn into_entry(self) -> RuleEntry {
        RuleEntry {
            rule_id: self.rule_id,
            source: self.source,
            title: self.title,
            level: self.level,
            status: self.status,
            tags: self.tags,
            author: self.author,
            description: self.description,
            references: self.references,
            falsepositives: self.falsepositives,
            kind: self.kind,
            text: self.text,
            error: self.error,
        }
    }
}

impl TriageRow {
    fn of(a: &TriageAction) -> Self {
        let (at, at_us) = clamp_datetime(a.at_us);
        let (until, _) = clamp_datetime(a.until_us);
        TriageRow {
            at,
            at_us,
            tenant: a.tenant.clone(),
            dedup_key: a.dedup_key,
            action_id: a.action_id,
            action: a.kind.as_str().to_owned(),
            actor: a.actor.clone(),
            assignee: a.assignee.clone(),
            resolution: a
                .resolution
                .map(Resolution::as_str)
                .unwrap_or_default()
                .to_owned(),
            reason: a.reason.clone(),
            until,
            before: a.before.clone(),
        }
    }

    fn into_action(self) -> Result<TriageAction> {
        let kind = TriageKind::parse(&self.action)
            .ok_or_else(|| Error::BadRow(format!("triage: unknown action {:?}", self.action)))?;
        Ok(TriageAction {
            action_id: self.action_id,
            at_us: i64::from(self.at) * 1_000_000 + i64::from(self.at_us),
            tenant: self.tenant,
            dedup_key: self.dedup_key,
            kind,
            actor: self.actor,
            assignee: self.assignee,
            resolution: Resolution::parse(&self.resolution),
            reason: self.reason,
            until_us: i64::from(self.until) * 1_000_000,
            before: self.before,
        })
    }
}

/// `IN (…)` of 16-byte keys, as ClickHouse literals (hex made here from bytes: nothing of a
/// request reaches the SQL text).
fn keys_in(keys: &[[u8; 16]]) -> String {
    let items: Vec<String> = keys
        .iter()
        .map(|k| {
            let hex: String = k.iter().map(|b| format!("{b:02x}")).collect();
            format!("unhex('{hex}')")
        })
        .collect();
    items.join(", ")
}

/// What every read of events selects, in [`EventOut`]'s order.
const EVENT_COLUMNS: &str = "hex(event_id) AS event_id, tenant, toUInt32(event_time) AS event_time, \
    event_time_us, toUInt32(receive_time) AS receive_time, source_kind, collector_id, batch_seq, \
    batch_row, host, severity, message, field_keys, field_values";

impl EventOut {
    fn into_event(self) -> StoredEvent {
        StoredEvent {
            event_id: self.event_id.to_ascii_lowercase(),
            tenant: self.tenant,
            event_time_us: i64::from(self.event_time) * 1_000_000 + i64::from(self.event_time_us),
            receive_time_us: i64::from(self.receive_time) * 1_000_000,
            source_kind: self.source_kind,
            collector_id: self.collector_id,
            batch_seq: self.batch_seq,
            batch_row: self.batch_row,
            host: self.host,
            severity: self.severity,
            message: self.message,
            fields: self.field_keys.into_iter().zip(self.field_values).collect(),
        }
    }
}

#[derive(Row, Serialize, Deserialize)]
struct CorrelationHitRow {
    observed_date: u16,
    observed: u32,
    observed_us: u32,
    seq: u64,
    correlation: String,
    definition: [u8; 16],
    group_values: Vec<String>,
    rule_pos: u16,
    event_id: [u8; 16],
    event_time_us: i64,
    tenant: String,
    has_value: u8,
    value: String,
}

const CORRELATION_HIT_COLUMNS: &str = "toUInt16(observed_date) AS observed_date, \
    toUInt32(observed) AS observed, observed_us, seq, correlation, definition, group_values, \
    rule_pos, event_id, event_time_us, tenant, has_value, value";

impl CorrelationHitRow {
    fn of(h: &CorrelationHit) -> Self {
        let (observed, observed_us) = clamp_datetime(h.observed_us);
        CorrelationHitRow {
            observed_date: crate::day_of_us(h.observed_us),
            observed,
            observed_us,
            seq: h.seq,
            correlation: h.correlation.clone(),
            definition: h.definition,
            group_values: h.group.clone(),
            rule_pos: h.rule_pos,
            event_id: h.event_id.0,
            event_time_us: h.event_time_us,
            tenant: h.tenant.clone(),
            has_value: u8::from(h.value.is_some()),
            value: h.value.clone().unwrap_or_default(),
        }
    }

    fn into_hit(self) -> CorrelationHit {
        CorrelationHit {
            seq: self.seq,
            observed_us: i64::from(self.observed) * 1_000_000 + i64::from(self.observed_us),
            correlation: self.correlation,
            definition: self.definition,
            group: self.group_values,
            rule_pos: self.rule_pos,
            event_id: EventId(self.event_id),
            event_time_us: self.event_time_us,
            tenant: self.tenant,
            value: (self.has_value != 0).then_some(self.value),
        }
    }
}

#[derive(Row, Serialize, Deserialize)]
struct DeadLetterRow {
    received_date: u16,
    received_time: u32,
    topic: String,
    partition: i32,
    offset: i64,
    reason: String,
    error: String,
    payload_len: u64,
    #[serde(with = "serde_bytes_as_string")]
    payload: Vec<u8>,
}

/// ClickHouse `String` holds any bytes; RowBinary writes them length-prefixed like a string.
mod serde_bytes_as_string {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(bytes)
    }

    struct BytesVisitor;

    impl<'de> serde::de::Visitor<'de> for BytesVisitor {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("bytes")
        }

        fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
            Ok(v.to_vec())
        }

        fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
            Ok(v)
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        d.deserialize_byte_buf(BytesVisitor)
    }
}

#[derive(Row, Deserialize)]
struct AlertCountOut {
    tenant: String,
    rule_id: String,
    alerts: u64,
}

#[derive(Row, Deserialize)]
struct PartitionOut {
    partition_id: String,
    day: u16,
    part_rows: u64,
}

#[derive(Row, Serialize)]
struct MigrationRow<'a> {
    version: u32,
    name: &'a str,
    applied_at: u32,
}

impl ClickHouseStore {
    /// Writes `rows` into `table` of Varde's database in one INSERT; the number written.
    /// Nothing is sent for no rows.
    async fn insert_rows<T>(
        &self,
        table: &str,
        rows: impl ExactSizeIterator<Item = T>,
    ) -> Result<u64>
    where
        T: RowWrite + for<'a> Row<Value<'a> = T>,
    {
        if rows.len() == 0 {
            return Ok(0);
        }
        let mut insert = self
            .client
            .insert_unescaped::<T>(&format!("{}.{table}", self.db))
            .await?;
        let mut written = 0u64;
        for row in rows {
            insert.write(&row).await?;
            written += 1;
        }
        insert.end().await?;
        Ok(written)
    }

    /// A store on `settings`. Does not contact the server; see [`ClickHouseStore::ping`] and
    /// [`ClickHouseStore::migrate`].
    pub fn new(settings: &ClickHouseSettings) -> Result<Self> {
        let db = &settings.database;
        if db.is_empty() || !db.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(Error::BadDatabaseName(db.clone()));
        }
        if let Some(cluster) = &settings.cluster
            && !crate::schema::valid_cluster_name(cluster)
        {
            return Err(Error::BadDatabaseName(cluster.clone()));
        }
        let mut client = Client::default()
            .with_url(&settings.url)
            .with_validation(false);
        if settings.cluster.is_some() {
            // An INSERT into a distributed table returns once every shard has its rows (not
            // once the receiving node has queued them), so a batch the pipeline commits is on
            // its shards; subqueries over distributed tables run once and are sent to every
            // shard (`GLOBAL IN`), which is what single-server queries mean.
            // Replicas are tried in the servers' order (the first healthy one), for writes and
            // reads alike, so that what was just written is what is read while that replica is
            // up.
            client = client
                .with_setting("insert_distributed_sync", "1")
                .with_setting("distributed_product_mode", "global")
                .with_setting("load_balancing", "in_order");
        }
        if let Some(user) = &settings.user {
            client = client.with_user(user);
        }
        if let Some(password) = &settings.password {
            client = client.with_password(password);
        }
        Ok(ClickHouseStore {
            client,
            db: db.clone(),
            cluster: settings.cluster.clone(),
        })
    }

    /// ` ON CLUSTER <name>` in cluster mode, nothing otherwise.
    fn on_cluster(&self) -> String {
        self.cluster
            .as_deref()
            .map_or_else(String::new, |c| format!(" ON CLUSTER {c}"))
    }

    /// The table that holds `table`'s rows on each node: itself on one server, its local
    /// part in cluster mode.
    fn local_table(&self, table: &str) -> String {
        if self.cluster.is_some() {
            format!("{table}{}", crate::schema::LOCAL_SUFFIX)
        } else {
            table.to_owned()
        }
    }

    /// The database name.
    pub fn database(&self) -> &str {
        &self.db
    }

    /// The server's version, as a liveness check.
    pub async fn ping(&self) -> Result<String> {
        Ok(self
            .client
            .query("SELECT version()")
            .fetch_one::<String>()
            .await?)
    }

    /// Creates the database and applies every migration not yet applied, in order. Safe to run
    /// at every start and from several processes (statements are `IF NOT EXISTS`).
    pub async fn migrate(&self) -> Result<Vec<u32>> {
        let db = &self.db;
        self.client
            .query(&format!(
                "CREATE DATABASE IF NOT EXISTS {db}{}",
                self.on_cluster()
            ))
            .execute()
            .await?;
        let migrations_table = match &self.cluster {
            Some(c) => CLUSTER_MIGRATIONS_TABLE.replace("{cluster}", c),
            None => MIGRATIONS_TABLE.to_owned(),
        };
        self.client
            .query(&migrations_table.replace("{db}", db))
            .execute()
            .await?;
        let applied: Vec<u32> = self
            .client
            .query(&format!("SELECT version FROM {db}.schema_migrations"))
            .fetch_all()
            .await?;
        let mut newly = Vec::new();
        for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
            for statement in m.statements {
                let statements = match &self.cluster {
                    Some(c) => on_cluster(statement, c).map_err(Error::Schema)?.to_vec(),
                    None => vec![(*statement).to_owned()],
                };
                for statement in statements {
                    self.client
                        .query(&statement.replace("{db}", db))
                        .execute()
                        .await
                        .map_err(|source| Error::Migration {
                            version: m.version,
                            name: m.name,
                            source,
                        })?;
                }
            }
            let mut insert = self
                .client
                .insert_unescaped::<MigrationRow<'_>>(&format!("{db}.schema_migrations"))
                .await?;
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO)
                .as_secs();
            insert
                .write(&MigrationRow {
                    version: m.version,
                    name: m.name,
                    applied_at: u32::try_from(now).unwrap_or(u32::MAX),
                })
                .await?;
            insert.end().await?;
            info!(database = %db, version = m.version, name = m.name, "applied migration");
            newly.push(m.version);
        }
        Ok(newly)
    }

    /// Runs a query whose rows are one text column and returns them: for hunts built by
    /// varde-rules' SQL conversion and for diagnostics. `{db}` in `sql` is replaced by the
    /// database name; the text is sent as it is (a `?` is not a bind placeholder here).
    pub async fn select_strings(&self, sql: &str) -> Result<Vec<String>> {
        Ok(self
            .client
            .query(&sql.replace("{db}", &self.db).replace('?', "??"))
            .with_setting("max_query_size", "16777216")
            .with_setting("max_ast_elements", "2000000")
            .with_setting("max_expanded_ast_elements", "2000000")
            .fetch_all::<String>()
            .await?)
    }

    /// Runs one statement that returns no rows (DDL, `OPTIMIZE`, `SYSTEM …`); `{db}` is replaced
    /// by the database name. For operators' tooling and tests.
    pub async fn execute(&self, sql: &str) -> Result<()> {
        self.client
            .query(&sql.replace("{db}", &self.db).replace('?', "??"))
            .execute()
            .await?;
        Ok(())
    }

    /// Drops the database and everything in it. For tests and `varde` tooling only.
    pub async fn drop_database(&self) -> Result<()> {
        self.client
            .query(&format!(
                "DROP DATABASE IF EXISTS {}{}",
                self.db,
                self.on_cluster()
            ))
            .execute()
            .await?;
        Ok(())
    }
}

impl EventStore for ClickHouseStore {
    async fn write_envelopes(&self, envelopes: &[Envelope]) -> Result<u64> {
        let mut insert = self
            .client
            .insert_unescaped::<EventRow<'_>>(&format!("{}.events", self.db))
            .await?;
        let mut written = 0u64;
        for envelope in envelopes {
            for r in flatten(envelope)? {
                let (event_time, event_time_us) = clamp_datetime(r.event_time_us);
                let (receive_time, _) = clamp_datetime(r.receive_time_us);
                insert
                    .write(&EventRow {
                        event_date: u16::try_from(event_time / 86_400).unwrap_or(u16::MAX),
                        tenant: r.tenant,
                        event_time,
                        event_time_us,
                        receive_time,
                        event_id: r.event_id.0,
                        collector_id: r.collector_id,
                        batch_seq: r.batch_seq,
                        batch_row: r.batch_row,
                        source_kind: r.source_kind,
                        host: r.host,
                        severity: r.severity,
                        message: r.message,
                        field_keys: r.field_keys,
                        field_values: r.field_values,
                    })
                    .await?;
                written += 1;
            }
        }
        insert.end().await?;
        Ok(written)
    }

    async fn event_counts(&self) -> Result<Vec<EventCount>> {
        let rows: Vec<CountOut> = self
            .client
            .query(&format!(
                "SELECT tenant, source_kind, uniqExact(event_id) AS events \
                 FROM {}.events GROUP BY tenant, source_kind ORDER BY tenant, source_kind",
                self.db
            ))
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| EventCount {
                tenant: r.tenant,
                source_kind: r.source_kind,
                events: r.events,
            })
            .collect())
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let mut sql = format!("SELECT {EVENT_COLUMNS} FROM {}.events FINAL", self.db);
        if query.tenant.is_some() {
            sql.push_str(" WHERE tenant = ?");
        }
        sql.push_str(" ORDER BY event_time, event_time_us, event_id LIMIT ?");
        let mut q = self.client.query(&sql);
        if let Some(tenant) = query.tenant {
            q = q.bind(tenant.as_str());
        }
        let rows: Vec<EventOut> = q.bind(query.limit).fetch_all().await?;
        Ok(rows.into_iter().map(EventOut::into_event).collect())
    }

    async fn hunt(&self, tenant: Option<Kommunenummer>, hunt: &Hunt) -> Result<Vec<StoredEvent>> {
        let (from, _) = clamp_datetime(hunt.from_us);
        let (to, _) = clamp_datetime(hunt.to_us);
        // Every value is a number or a checked kommunenummer, written into the text; the
        // condition's literals are quoted by varde_rules::sql, and its `?` are escaped for the
        // client's placeholders.
        let mut sql = format!(
            "SELECT {EVENT_COLUMNS} FROM {}.events FINAL \
             WHERE event_time >= toDateTime({from}) AND event_time < toDateTime({to})",
            self.db
        );
        if let Some(t) = tenant {
            sql.push_str(&format!(" AND tenant = '{}'", t.as_str()));
        }
        sql.push_str(&format!(
            " AND ({}) ORDER BY event_time, event_time_us, event_id LIMIT {}, {}",
            hunt.condition.replace('?', "??"),
            hunt.offset,
            hunt.limit
        ));
        let rows: Vec<EventOut> = self.client.query(&sql).fetch_all().await?;
        Ok(rows.into_iter().map(EventOut::into_event).collect())
    }

    async fn write_alerts(&self, alerts: &[Alert]) -> Result<u64> {
        self.insert_rows("alerts", alerts.iter().map(AlertRow::of))
            .await
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>> {
        let mut sql = format!("SELECT {ALERT_COLUMNS} FROM {}.alerts FINAL", self.db);
        if query.tenant.is_some() {
            sql.push_str(" WHERE tenant = ?");
        }
        sql.push_str(" ORDER BY event_time, event_time_us, alert_id LIMIT ?");
        let mut q = self.client.query(&sql);
        if let Some(tenant) = query.tenant {
            q = q.bind(tenant.as_str());
        }
        let rows: Vec<AlertRow> = q.bind(query.limit).fetch_all().await?;
        Ok(rows.into_iter().map(AlertRow::into_alert).collect())
    }

    async fn recent_alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>> {
        let mut sql = format!("SELECT {ALERT_COLUMNS} FROM {}.alerts FINAL", self.db);
        if query.tenant.is_some() {
            sql.push_str(" WHERE tenant = ?");
        }
        sql.push_str(" ORDER BY event_time DESC, event_time_us DESC, alert_id DESC LIMIT ?");
        let mut q = self.client.query(&sql);
        if let Some(tenant) = query.tenant {
            q = q.bind(tenant.as_str());
        }
        let rows: Vec<AlertRow> = q.bind(query.limit).fetch_all().await?;
        Ok(rows.into_iter().map(AlertRow::into_alert).collect())
    }

    async fn group_alerts(
        &self,
        tenant: Option<Kommunenummer>,
        dedup_key: [u8; 16],
        limit: u64,
    ) -> Result<Vec<Alert>> {
        let mut sql = format!(
            "SELECT {ALERT_COLUMNS} FROM {}.alerts FINAL WHERE dedup_key = {}",
            self.db,
            keys_in(&[dedup_key])
        );
        if tenant.is_some() {
            sql.push_str(" AND tenant = ?");
        }
        sql.push_str(" ORDER BY event_time DESC, event_time_us DESC, alert_id DESC LIMIT ?");
        let mut q = self.client.query(&sql);
        if let Some(t) = tenant {
            q = q.bind(t.as_str());
        }
        let rows: Vec<AlertRow> = q.bind(limit).fetch_all().await?;
        Ok(rows.into_iter().map(AlertRow::into_alert).collect())
    }

    async fn campaign_alerts(
        &self,
        rule_id: &str,
        window: &str,
        since_us: i64,
        limit: u64,
    ) -> Result<Vec<Alert>> {
        let (since, _) = clamp_datetime(since_us);
        // The window id is a 32-digit hex digest: found among the values, it is the campaign's.
        let sql = format!(
            "SELECT {ALERT_COLUMNS} FROM {}.alerts FINAL WHERE rule_id = ? \
             AND event_date >= toDate(toDateTime(?)) AND event_time >= toDateTime(?) \
             AND arrayExists((k, v) -> k = 'correlation.window' AND v = ?, matched_keys, matched_values) \
             ORDER BY tenant, alert_id LIMIT ?",
            self.db
        );
        let rows: Vec<AlertRow> = self
            .client
            .query(&sql)
            .bind(rule_id)
            .bind(since)
            .bind(since)
            .bind(window)
            .bind(limit)
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(AlertRow::into_alert).collect())
    }

    async fn component_spread(
        &self,
        tenant: Option<Kommunenummer>,
        component: &str,
        since_us: i64,
    ) -> Result<Vec<(String, u64)>> {
        #[derive(Row, Deserialize)]
        struct Spread {
            tenant: String,
            alerts: u64,
        }
        let (since, _) = clamp_datetime(since_us);
        let mut sql = format!(
            "SELECT tenant, uniqExact(alert_id) AS alerts FROM {}.alerts \
             WHERE component = ? AND event_time >= toDateTime(?)",
            self.db
        );
        if tenant.is_some() {
            sql.push_str(" AND tenant = ?");
        }
        sql.push_str(" GROUP BY tenant ORDER BY alerts DESC, tenant");
        let mut q = self.client.query(&sql).bind(component).bind(since);
        if let Some(t) = tenant {
            q = q.bind(t.as_str());
        }
        let rows: Vec<Spread> = q.fetch_all().await?;
        Ok(rows.into_iter().map(|r| (r.tenant, r.alerts)).collect())
    }

    async fn rule_spread(&self, rule_id: &str, since_us: i64) -> Result<Vec<(String, u64)>> {
        #[derive(Row, Deserialize)]
        struct Spread {
            tenant: String,
            alerts: u64,
        }
        let (since, _) = clamp_datetime(since_us);
        let rows: Vec<Spread> = self
            .client
            .query(&format!(
                "SELECT tenant, uniqExact(alert_id) AS alerts FROM {}.alerts \
                 WHERE rule_id = ? AND event_time >= toDateTime(?) \
                 GROUP BY tenant ORDER BY alerts DESC, tenant",
                self.db
            ))
            .bind(rule_id)
            .bind(since)
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(|r| (r.tenant, r.alerts)).collect())
    }

    async fn collectors(
        &self,
        tenant: Option<Kommunenummer>,
        now_us: i64,
    ) -> Result<Vec<CollectorSeen>> {
        #[derive(Row, Deserialize)]
        struct Seen {
            collector_id: String,
            tenant: String,
            last_receive: u32,
            events_last_hour: u64,
            kinds: Vec<String>,
        }
        #[derive(Row, Deserialize)]
        struct Report {
            collector_id: String,
            tenant: String,
            at: u64,
            keys: Vec<String>,
            values: Vec<String>,
        }
        let (now, _) = clamp_datetime(now_us);
        let hour_ago = now.saturating_sub(3600);
        let week_ago_day = now.saturating_sub(7 * 86_400) / 86_400;
        let own = format!("has(field_keys, '{}')", varde_core::status::MARKER);
        // The day partitions of the last week only; numbers and a checked kommunenummer inline.
        let scope = match tenant {
            Some(t) => format!(
                "event_date >= toDate({week_ago_day}) AND tenant = '{}'",
                t.as_str()
            ),
            None => format!("event_date >= toDate({week_ago_day})"),
        };
        let db = &self.db;
        let rows: Vec<Seen> = self
            .client
            .query(&format!(
                "SELECT collector_id, tenant, toUInt32(max(receive_time)) AS last_receive, \
                 uniqExactIf(event_id, receive_time >= toDateTime({hour_ago}) AND NOT {own}) \
                 AS events_last_hour, \
                 arraySort(groupUniqArrayIf(source_kind, NOT {own})) AS kinds FROM {db}.events \
                 WHERE {scope} GROUP BY collector_id, tenant ORDER BY tenant, collector_id"
            ))
            .fetch_all()
            .await?;
        let reports: Vec<Report> = self
            .client
            .query(&format!(
                "SELECT collector_id, tenant, \
                 max(toUInt64(event_time) * 1000000 + event_time_us) AS at, \
                 argMax(field_keys, toUInt64(event_time) * 1000000 + event_time_us) AS keys, \
                 argMax(field_values, toUInt64(event_time) * 1000000 + event_time_us) AS values \
                 FROM {db}.events WHERE {scope} AND source_kind = 'generic_json' AND {own} \
                 GROUP BY collector_id, tenant"
            ))
            .fetch_all()
            .await?;
        let mut reports: HashMap<(String, String), CollectorStatus> = reports
            .into_iter()
            .filter_map(|r| {
                let at = i64::try_from(r.at).unwrap_or(i64::MAX);
                let status = CollectorStatus::from_fields(at, &r.keys, &r.values)?;
                Some(((r.tenant, r.collector_id), status))
            })
            .collect();
        Ok(rows
            .into_iter()
            .map(|r| CollectorSeen {
                status: reports.remove(&(r.tenant.clone(), r.collector_id.clone())),
                collector_id: r.collector_id,
                tenant: r.tenant,
                last_receive_us: i64::from(r.last_receive) * 1_000_000,
                events_last_hour: r.events_last_hour,
                kinds: r.kinds,
            })
            .collect())
    }

    async fn alerts_detected(&self, from_us: i64, to_us: i64, limit: u64) -> Result<Vec<Alert>> {
        let (from, _) = clamp_datetime(from_us);
        let (to, _) = clamp_datetime(to_us);
        let rows: Vec<AlertRow> = self
            .client
            .query(&format!(
                "SELECT {ALERT_COLUMNS} FROM {}.alerts FINAL \
                 WHERE detect_time >= toDateTime(?) AND detect_time < toDateTime(?) \
                 ORDER BY detect_time, alert_id LIMIT ?",
                self.db
            ))
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(AlertRow::into_alert).collect())
    }

    async fn alerts_detected_after(
        &self,
        tenant: Option<Kommunenummer>,
        since_us: i64,
    ) -> Result<u64> {
        #[derive(Row, Deserialize)]
        struct Count {
            alerts: u64,
        }
        let (since, _) = clamp_datetime(since_us);
        let mut sql = format!(
            "SELECT uniqExact(alert_id) AS alerts FROM {}.alerts WHERE detect_time > toDateTime(?)",
            self.db
        );
        if tenant.is_some() {
            sql.push_str(" AND tenant = ?");
        }
        let mut q = self.client.query(&sql).bind(since);
        if let Some(t) = tenant {
            q = q.bind(t.as_str());
        }
        Ok(q.fetch_one::<Count>().await?.alerts)
    }

    async fn alert_volume(
        &self,
        tenant: Option<Kommunenummer>,
        by: VolumeBy,
        from_us: i64,
        to_us: i64,
        bucket_s: u32,
    ) -> Result<Vec<VolumePoint>> {
        #[derive(Row, Deserialize)]
        struct Point {
            bucket: u32,
            key: String,
            alerts: u64,
        }
        let b = bucket_s.max(1);
        let (from, _) = clamp_datetime(from_us);
        let (to, _) = clamp_datetime(to_us);
        let column = match by {
            VolumeBy::Tenant => "tenant",
            VolumeBy::Component => "component",
        };
        // Numbers and a checked kommunenummer only, written into the text.
        let mut sql = format!(
            "SELECT toUInt32(intDiv(toUInt32(event_time), {b}) * {b}) AS bucket, {column} AS key, \
             uniqExact(alert_id) AS alerts FROM {}.alerts \
             WHERE event_time >= toDateTime({from}) AND event_time < toDateTime({to})",
            self.db
        );
        if let Some(t) = tenant {
            sql.push_str(&format!(" AND tenant = '{}'", t.as_str()));
        }
        sql.push_str(" GROUP BY bucket, key ORDER BY bucket, key");
        let rows: Vec<Point> = self.client.query(&sql).fetch_all().await?;
        Ok(rows
            .into_iter()
            .map(|p| VolumePoint {
                bucket_us: i64::from(p.bucket) * 1_000_000,
                key: p.key,
                alerts: p.alerts,
            })
            .collect())
    }

    async fn alert_counts(&self) -> Result<Vec<AlertCount>> {
        let rows: Vec<AlertCountOut> = self
            .client
            .query(&format!(
                "SELECT tenant, rule_id, uniqExact(alert_id) AS alerts \
                 FROM {}.alerts GROUP BY tenant, rule_id ORDER BY tenant, rule_id",
                self.db
            ))
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| AlertCount {
                tenant: r.tenant,
                rule_id: r.rule_id,
                alerts: r.alerts,
            })
            .collect())
    }

    async fn write_dead_letters(&self, letters: &[DeadLetter]) -> Result<u64> {
        self.insert_rows(
            "dead_letters",
            letters.iter().map(|l| {
                let (received_time, _) = clamp_datetime(l.received_time_us);
                DeadLetterRow {
                    received_date: u16::try_from(received_time / 86_400).unwrap_or(u16::MAX),
                    received_time,
                    topic: l.topic.clone(),
                    partition: l.partition,
                    offset: l.offset,
                    reason: l.reason.clone(),
                    error: l.error.clone(),
                    payload_len: l.payload_len,
                    payload: l.payload.clone(),
                }
            }),
        )
        .await
    }

    async fn drop_partitions_older_than(
        &self,
        table: Table,
        cutoff_day: u16,
    ) -> Result<Vec<DroppedPartition>> {
        // Every table is `PARTITION BY <a Date column>` (see `schema`), so a partition is one
        // day and its parts' max_date is that day. In cluster mode the parts of one replica of
        // every shard are read (`cluster()`), and each partition is dropped on every node.
        let local = self.local_table(table.name());
        let parts = match &self.cluster {
            Some(c) => format!("cluster('{c}', system, parts)"),
            None => "system.parts".to_owned(),
        };
        let partitions: Vec<PartitionOut> = self
            .client
            .query(&format!(
                "SELECT partition_id, toUInt16(max(max_date)) AS day, sum(rows) AS rows \
                 FROM {parts} WHERE database = ? AND table = ? AND active \
                 GROUP BY partition_id HAVING day < ? ORDER BY day, partition_id"
            ))
            .bind(self.db.as_str())
            .bind(local.as_str())
            .bind(cutoff_day)
            .fetch_all()
            .await?;
        let mut dropped = Vec::with_capacity(partitions.len());
        for p in partitions {
            if p.partition_id.is_empty()
                || !p
                    .partition_id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(Error::BadPartitionId(p.partition_id));
            }
            self.client
                .query(&format!(
                    "ALTER TABLE {}.{local}{} DROP PARTITION ID '{}'",
                    self.db,
                    self.on_cluster(),
                    p.partition_id
                ))
                .execute()
                .await?;
            info!(database = %self.db, table = table.name(), partition = %p.partition_id,
                rows = p.part_rows, "retention: dropped partition");
            dropped.push(DroppedPartition {
                partition: p.partition_id,
                day: p.day,
                rows: p.part_rows,
            });
        }
        Ok(dropped)
    }

    async fn check_alive(&self) -> Result<()> {
        self.ping().await.map(|_| ())
    }

    async fn alert(&self, tenant: Option<Kommunenummer>, id: AlertId) -> Result<Option<Alert>> {
        let mut sql = format!(
            "SELECT {ALERT_COLUMNS} FROM {}.alerts FINAL WHERE alert_id = unhex(?)",
            self.db
        );
        if tenant.is_some() {
            sql.push_str(" AND tenant = ?");
        }
        sql.push_str(" LIMIT 1");
        let mut q = self.client.query(&sql).bind(id.to_string());
        if let Some(t) = tenant {
            q = q.bind(t.as_str());
        }
        let rows: Vec<AlertRow> = q.fetch_all().await?;
        Ok(rows.into_iter().next().map(AlertRow::into_alert))
    }

    async fn event(
        &self,
        tenant: Option<Kommunenummer>,
        id: EventId,
    ) -> Result<Option<StoredEvent>> {
        let mut sql = format!(
            "SELECT {EVENT_COLUMNS} FROM {}.events FINAL WHERE event_id = ?",
            self.db
        );
        if tenant.is_some() {
            sql.push_str(" AND tenant = ?");
        }
        sql.push_str(" LIMIT 1");
        // In WHERE, `event_id` is the alias above (ClickHouse resolves aliases there): the
        // upper-case hex of the stored id.
        let mut q = self
            .client
            .query(&sql)
            .bind(id.to_string().to_ascii_uppercase());
        if let Some(t) = tenant {
            q = q.bind(t.as_str());
        }
        let rows: Vec<EventOut> = q.fetch_all().await?;
        Ok(rows.into_iter().next().map(EventOut::into_event))
    }

    async fn groups(
        &self,
        tenant: Option<Kommunenummer>,
        keys: &[[u8; 16]],
    ) -> Result<Vec<GroupSeen>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        #[derive(Row, Deserialize)]
        struct GroupOut {
            dedup_key: [u8; 16],
            tenant: String,
            last_detect: u32,
            component: String,
            rule_title: String,
            rule_level: String,
        }
        let mut sql = format!(
            "SELECT dedup_key, tenant, toUInt32(max(detect_time)) AS last_detect, \
             any(component) AS component, any(rule_title) AS rule_title, \
             any(rule_level) AS rule_level \
             FROM {}.alerts WHERE dedup_key IN ({})",
            self.db,
            keys_in(keys)
        );
        if tenant.is_some() {
            sql.push_str(" AND tenant = ?");
        }
        sql.push_str(" GROUP BY dedup_key, tenant ORDER BY dedup_key, tenant");
        let mut q = self.client.query(&sql);
        if let Some(t) = tenant {
            q = q.bind(t.as_str());
        }
        let rows: Vec<GroupOut> = q.fetch_all().await?;
        Ok(rows
            .into_iter()
            .map(|r| GroupSeen {
                dedup_key: r.dedup_key,
                tenant: r.tenant,
                last_detect_us: i64::from(r.last_detect) * 1_000_000,
                component: r.component,
                rule_title: r.rule_title,
                rule_level: r.rule_level,
            })
            .collect())
    }

    async fn write_triage(&self, actions: &[TriageAction]) -> Result<u64> {
        self.insert_rows("triage", actions.iter().map(TriageRow::of))
            .await
    }

    async fn triage(
        &self,
        tenant: Option<Kommunenummer>,
        keys: &[[u8; 16]],
    ) -> Result<Vec<TriageAction>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut sql = format!(
            "SELECT {TRIAGE_COLUMNS} FROM {}.triage FINAL WHERE dedup_key IN ({})",
            self.db,
            keys_in(keys)
        );
        if tenant.is_some() {
            sql.push_str(" AND tenant = ?");
        }
        sql.push_str(" ORDER BY at, at_us, action_id");
        let mut q = self.client.query(&sql);
        if let Some(t) = tenant {
            q = q.bind(t.as_str());
        }
        let rows: Vec<TriageRow> = q.fetch_all().await?;
        rows.into_iter().map(TriageRow::into_action).collect()
    }

    async fn write_rules(&self, loaded_at_us: i64, entries: &[RuleEntry]) -> Result<u64> {
        self.insert_rows(
            "rules",
            entries.iter().map(|e| RuleRow::of(loaded_at_us, e)),
        )
        .await
    }

    async fn rules(&self) -> Result<(Option<i64>, Vec<RuleEntry>)> {
        let db = &self.db;
        // The newest load, to the microsecond; an empty table has no rows at all.
        let rows: Vec<RuleRow> = self
            .client
            .query(&format!(
                "SELECT {RULE_COLUMNS} FROM {db}.rules FINAL \
                 WHERE (toUInt64(loaded_at) * 1000000 + loaded_at_us) = \
                 (SELECT max(toUInt64(loaded_at) * 1000000 + loaded_at_us) FROM {db}.rules) \
                 ORDER BY source, rule_id"
            ))
            .fetch_all()
            .await?;
        let at = rows
            .first()
            .map(|r| i64::from(r.loaded_at) * 1_000_000 + i64::from(r.loaded_at_us));
        Ok((at, rows.into_iter().map(RuleRow::into_entry).collect()))
    }

    async fn rule(&self, rule_id: &str) -> Result<Option<RuleEntry>> {
        let db = &self.db;
        let rows: Vec<RuleRow> = self
            .client
            .query(&format!(
                "SELECT {RULE_COLUMNS} FROM {db}.rules FINAL \
                 WHERE rule_id = ? AND error = '' AND (toUInt64(loaded_at) * 1000000 + loaded_at_us) = \
                 (SELECT max(toUInt64(loaded_at) * 1000000 + loaded_at_us) FROM {db}.rules) \
                 ORDER BY source LIMIT 1"
            ))
            .bind(rule_id)
            .fetch_all()
            .await?;
        Ok(rows.into_iter().next().map(RuleRow::into_entry))
    }

    async fn triage_log(&self, limit: u64) -> Result<Vec<TriageAction>> {
        let rows: Vec<TriageRow> = self
            .client
            .query(&format!(
                "SELECT {TRIAGE_COLUMNS} FROM {}.triage FINAL \
                 ORDER BY at DESC, at_us DESC, action_id DESC LIMIT ?",
                self.db
            ))
            .bind(limit)
            .fetch_all()
            .await?;
        rows.into_iter().map(TriageRow::into_action).collect()
    }

    async fn write_rule_switches(&self, switches: &[RuleSwitch]) -> Result<u64> {
        self.insert_rows("rule_switches", switches.iter().map(SwitchRow::of))
            .await
    }

    async fn rule_switches(&self) -> Result<Vec<RuleSwitch>> {
        let rows: Vec<SwitchRow> = self
            .client
            .query(&format!(
                "SELECT {SWITCH_COLUMNS} FROM {}.rule_switches FINAL \
                 ORDER BY at, at_us, switch_id",
                self.db
            ))
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(SwitchRow::into_switch).collect())
    }

    async fn write_correlation_hits(&self, hits: &[CorrelationHit]) -> Result<u64> {
        self.insert_rows("correlation_hits", hits.iter().map(CorrelationHitRow::of))
            .await
    }

    async fn correlation_hits(&self, observed_since_us: i64) -> Result<Vec<CorrelationHit>> {
        let (since, _) = clamp_datetime(observed_since_us);
        let rows: Vec<CorrelationHitRow> = self
            .client
            .query(&format!(
                "SELECT {CORRELATION_HIT_COLUMNS} FROM {}.correlation_hits FINAL \
                 WHERE observed >= toDateTime(?, 'UTC') ORDER BY seq, correlation, event_id, rule_pos",
                self.db
            ))
            .bind(since)
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(CorrelationHitRow::into_hit).collect())
    }

    async fn window_hits(
        &self,
        tenant: Option<Kommunenummer>,
        window: &WindowQuery,
        limit: u64,
    ) -> Result<Vec<CorrelationHit>> {
        let mut sql = format!(
            "SELECT {CORRELATION_HIT_COLUMNS} FROM {}.correlation_hits FINAL \
             WHERE correlation = ? AND group_values = ? AND event_time_us >= ? \
             AND event_time_us <= ?",
            self.db
        );
        if tenant.is_some() {
            sql.push_str(" AND tenant = ?");
        }
        // A hit taken again after a restart is the same event: one row per event and rule.
        sql.push_str(" ORDER BY event_time_us, event_id, rule_pos, seq LIMIT 1 BY event_id, rule_pos LIMIT ?");
        let mut q = self
            .client
            .query(&sql)
            .bind(window.correlation.as_str())
            .bind(&window.group)
            .bind(window.first_us)
            .bind(window.last_us);
        if let Some(t) = tenant {
            q = q.bind(t.as_str());
        }
        let rows: Vec<CorrelationHitRow> = q.bind(limit).fetch_all().await?;
        Ok(rows.into_iter().map(CorrelationHitRow::into_hit).collect())
    }

    async fn write_incident_changes(&self, changes: &[IncidentChange]) -> Result<u64> {
        self.insert_rows("incident_changes", changes.iter().map(IncidentRow::of))
            .await
    }

    async fn incident_changes(
        &self,
        tenant: Option<Kommunenummer>,
        incident: Option<[u8; 16]>,
    ) -> Result<Vec<IncidentChange>> {
        let db = &self.db;
        let mut sql = format!("SELECT {INCIDENT_COLUMNS} FROM {db}.incident_changes FINAL WHERE 1");
        if let Some(id) = incident {
            sql.push_str(&format!(" AND incident_id = {}", keys_in(&[id])));
        }
        if tenant.is_some() {
            // Incidents that concern the municipality: a linked group of its own, or named in
            // the latest list of further municipalities; of those, the shared rows and the
            // links of its own groups only.
            let shared: Vec<String> = SHARED_FIELDS.iter().map(|f| format!("'{f}'")).collect();
            sql.push_str(&format!(
                " AND (incident_id IN (SELECT incident_id FROM {db}.incident_changes \
                 WHERE field = 'link_group' AND has(tenants, ?)) \
                 OR incident_id IN (SELECT incident_id FROM (SELECT incident_id, \
                 argMax(tenants, toUInt64(at) * 1000000 + at_us) AS latest \
                 FROM {db}.incident_changes WHERE field = 'municipalities' GROUP BY incident_id) \
                 WHERE has(latest, ?))) \
                 AND (field IN ({}) OR (field = 'link_group' AND has(tenants, ?)))",
                shared.join(", ")
            ));
        }
        sql.push_str(" ORDER BY at, at_us, change_id");
        let mut q = self.client.query(&sql);
        if let Some(t) = tenant {
            q = q.bind(t.as_str()).bind(t.as_str()).bind(t.as_str());
        }
        let rows: Vec<IncidentRow> = q.fetch_all().await?;
        rows.into_iter().map(IncidentRow::into_change).collect()
    }

    async fn dead_letters(&self, limit: u64) -> Result<Vec<DeadLetter>> {
        let rows: Vec<DeadLetterRow> = self
            .client
            .query(&format!(
                "SELECT received_date, toUInt32(received_time) AS received_time, topic, partition, \
                 offset, reason, error, payload_len, payload FROM {}.dead_letters FINAL \
                 ORDER BY received_time, topic, partition, offset LIMIT ?",
                self.db
            ))
            .bind(limit)
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| DeadLetter {
                topic: r.topic,
                partition: r.partition,
                offset: r.offset,
                reason: r.reason,
                error: r.error,
                received_time_us: i64::from(r.received_time) * 1_000_000,
                payload_len: r.payload_len,
                payload: r.payload,
            })
            .collect())
    }
}

#[derive(Row, Serialize, Deserialize)]
struct NotificationRow {
    created_date: u16,
    created: u32,
    created_us: u32,
    notification_id: [u8; 16],
    contact: String,
    tenant: String,
    channel: String,
    target: String,
    kind: String,
    tlp: String,
    subject: String,
    text: String,
    html: String,
    payload: String,
}

const NOTIFICATION_COLUMNS: &str = "created_date, toUInt32(created) AS created, created_us, \
    notification_id, contact, tenant, channel, target, kind, tlp, subject, text, html, payload";

impl NotificationRow {
    fn of(n: &Notification) -> Self {
        let (created, created_us) = clamp_datetime(n.created_us);
        NotificationRow {
            created_date: u16::try_from(created / 86_400).unwrap_or(u16::MAX),
            created,
            created_us,
            notification_id: n.notification_id,
            contact: n.contact.clone(),
            tenant: n.tenant.clone(),
            channel: n.channel.as_str().to_owned(),
            target: n.target.clone(),
            kind: n.kind.clone(),
            tlp: n.tlp.clone(),
            subject: n.subject.clone(),
            text: n.text.clone(),
            html: n.html.clone(),
            payload: n.payload.clone(),
        }
    }

    fn into_notification(self) -> Notification {
        Notification {
            notification_id: self.notification_id,
            created_us: i64::from(self.created) * 1_000_000 + i64::from(self.created_us),
            contact: self.contact,
            tenant: self.tenant,
            // Only Varde writes the table; an unknown name would be a newer Varde's channel.
            channel: Channel::parse(&self.channel).unwrap_or(Channel::Webhook),
            target: self.target,
            kind: self.kind,
            tlp: self.tlp,
            subject: self.subject,
            text: self.text,
            html: self.html,
            payload: self.payload,
        }
    }
}

#[derive(Row, Serialize, Deserialize)]
struct AttemptRow {
    at_date: u16,
    at: u32,
    at_us: u32,
    notification_id: [u8; 16],
    attempt: u32,
    outcome: String,
    error: String,
    next_us: i64,
}

const ATTEMPT_COLUMNS: &str = "at_date, toUInt32(at) AS at, at_us, notification_id, attempt, \
    outcome, error, next_us";

impl AttemptRow {
    fn of(a: &Attempt) -> Self {
        let (at, at_us) = clamp_datetime(a.at_us);
        AttemptRow {
            at_date: u16::try_from(at / 86_400).unwrap_or(u16::MAX),
            at,
            at_us,
            notification_id: a.notification_id,
            attempt: a.attempt,
            outcome: a.outcome.as_str().to_owned(),
            error: a.error.clone(),
            next_us: a.next_us,
        }
    }

    fn into_attempt(self) -> Attempt {
        Attempt {
            notification_id: self.notification_id,
            attempt: self.attempt,
            at_us: i64::from(self.at) * 1_000_000 + i64::from(self.at_us),
            outcome: Outcome::parse(&self.outcome).unwrap_or(Outcome::Retry),
            error: self.error,
            next_us: self.next_us,
        }
    }
}

impl Outbox for ClickHouseStore {
    async fn write_notifications(&self, notifications: &[Notification]) -> Result<u64> {
        self.insert_rows(
            "notifications",
            notifications.iter().map(NotificationRow::of),
        )
        .await
    }

    async fn write_attempts(&self, attempts: &[Attempt]) -> Result<u64> {
        self.insert_rows("notification_attempts", attempts.iter().map(AttemptRow::of))
            .await
    }

    async fn outbox(&self, since_us: i64, limit: u64) -> Result<Vec<OutboxEntry>> {
        let (since, _) = clamp_datetime(since_us);
        let rows: Vec<NotificationRow> = self
            .client
            .query(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM {}.notifications FINAL \
                 WHERE created >= toDateTime(?) \
                 ORDER BY created DESC, created_us DESC, notification_id LIMIT 1 BY notification_id LIMIT ?",
                self.db
            ))
            .bind(since)
            .bind(limit)
            .fetch_all()
            .await?;
        let mut entries: Vec<OutboxEntry> = rows
            .into_iter()
            .map(|r| OutboxEntry {
                notification: r.into_notification(),
                attempts: Vec::new(),
            })
            .collect();
        if entries.is_empty() {
            return Ok(entries);
        }
        let ids: Vec<[u8; 16]> = entries
            .iter()
            .map(|e| e.notification.notification_id)
            .collect();
        let mut by_id: HashMap<[u8; 16], Vec<Attempt>> = HashMap::new();
        for chunk in ids.chunks(1_000) {
            let rows: Vec<AttemptRow> = self
                .client
                .query(&format!(
                    "SELECT {ATTEMPT_COLUMNS} FROM {}.notification_attempts FINAL \
                     WHERE notification_id IN ({}) ORDER BY attempt, at, at_us",
                    self.db,
                    keys_in(chunk)
                ))
                .fetch_all()
                .await?;
            for r in rows {
                let a = r.into_attempt();
                by_id.entry(a.notification_id).or_default().push(a);
            }
        }
        for e in &mut entries {
            if let Some(a) = by_id.remove(&e.notification.notification_id) {
                e.attempts = a;
            }
        }
        Ok(entries)
    }

    async fn queued_ids(&self, ids: &[[u8; 16]]) -> Result<Vec<[u8; 16]>> {
        #[derive(Row, Deserialize)]
        struct Id {
            notification_id: [u8; 16],
        }
        let mut out = Vec::new();
        for chunk in ids.chunks(1_000) {
            let rows: Vec<Id> = self
                .client
                .query(&format!(
                    "SELECT DISTINCT notification_id FROM {}.notifications \
                     WHERE notification_id IN ({})",
                    self.db,
                    keys_in(chunk)
                ))
                .fetch_all()
                .await?;
            out.extend(rows.into_iter().map(|r| r.notification_id));
        }
        Ok(out)
    }
}

#[derive(Row, Serialize, Deserialize)]
struct ReportRow {
    at_date: u16,
    at: u32,
    at_us: u32,
    report_id: [u8; 16],
    incident_id: [u8; 16],
    stage: String,
    version: u32,
    actor: String,
    tlp: String,
    summary: String,
    impact: String,
    mitigation: String,
    cross_border: String,
    stix: String,
}

const REPORT_COLUMNS: &str = "at_date, toUInt32(at) AS at, at_us, report_id, incident_id, stage, \
    version, actor, tlp, summary, impact, mitigation, cross_border, stix";

#[derive(Row, Serialize, Deserialize)]
struct ExportRow {
    at_date: u16,
    at: u32,
    at_us: u32,
    export_id: [u8; 16],
    actor: String,
    tenant: String,
    incident_id: [u8; 16],
    stage: String,
    format: String,
}

const EXPORT_COLUMNS: &str = "at_date, toUInt32(at) AS at, at_us, export_id, actor, tenant, \
    incident_id, stage, format";

impl ReportLog for ClickHouseStore {
    async fn write_reports(&self, reports: &[SubmittedReport]) -> Result<u64> {
        self.insert_rows(
            "incident_reports",
            reports.iter().map(|r| {
                let (at, at_us) = clamp_datetime(r.at_us);
                ReportRow {
                    at_date: u16::try_from(at / 86_400).unwrap_or(u16::MAX),
                    at,
                    at_us,
                    report_id: r.report_id,
                    incident_id: r.incident_id,
                    stage: r.stage.clone(),
                    version: r.version,
                    actor: r.actor.clone(),
                    tlp: r.tlp.as_str().to_owned(),
                    summary: r.summary.clone(),
                    impact: r.impact.clone(),
                    mitigation: r.mitigation.clone(),
                    cross_border: r.cross_border.clone(),
                    stix: r.stix.clone(),
                }
            }),
        )
        .await
    }

    async fn reports(&self, incident: Option<[u8; 16]>) -> Result<Vec<SubmittedReport>> {
        let mut sql = format!(
            "SELECT {REPORT_COLUMNS} FROM {}.incident_reports FINAL WHERE 1",
            self.db
        );
        if let Some(id) = incident {
            sql.push_str(&format!(" AND incident_id = {}", keys_in(&[id])));
        }
        sql.push_str(" ORDER BY at, at_us, report_id");
        let rows: Vec<ReportRow> = self.client.query(&sql).fetch_all().await?;
        rows.into_iter()
            .map(|r| {
                Ok(SubmittedReport {
                    report_id: r.report_id,
                    incident_id: r.incident_id,
                    stage: r.stage,
                    version: r.version,
                    at_us: i64::from(r.at) * 1_000_000 + i64::from(r.at_us),
                    actor: r.actor,
                    tlp: Tlp::parse(&r.tlp)
                        .ok_or_else(|| Error::BadRow("incident_reports: unknown TLP".into()))?,
                    summary: r.summary,
                    impact: r.impact,
                    mitigation: r.mitigation,
                    cross_border: r.cross_border,
                    stix: r.stix,
                })
            })
            .collect()
    }

    async fn write_exports(&self, exports: &[ExportRecord]) -> Result<u64> {
        self.insert_rows(
            "exports",
            exports.iter().map(|e| {
                let (at, at_us) = clamp_datetime(e.at_us);
                ExportRow {
                    at_date: u16::try_from(at / 86_400).unwrap_or(u16::MAX),
                    at,
                    at_us,
                    export_id: e.export_id,
                    actor: e.actor.clone(),
                    tenant: e.tenant.clone(),
                    incident_id: e.incident_id,
                    stage: e.stage.clone(),
                    format: e.format.clone(),
                }
            }),
        )
        .await
    }

    async fn exports(&self, limit: u64) -> Result<Vec<ExportRecord>> {
        let rows: Vec<ExportRow> = self
            .client
            .query(&format!(
                "SELECT {EXPORT_COLUMNS} FROM {}.exports FINAL \
                 ORDER BY at DESC, at_us DESC, export_id LIMIT ?",
                self.db
            ))
            .bind(limit)
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| ExportRecord {
                export_id: r.export_id,
                at_us: i64::from(r.at) * 1_000_000 + i64::from(r.at_us),
                actor: r.actor,
                tenant: r.tenant,
                incident_id: r.incident_id,
                stage: r.stage,
                format: r.format,
            })
            .collect())
    }
}

#[derive(Row, Serialize, Deserialize)]
struct IdentityRow {
    at_date: u16,
    at: u32,
    at_us: u32,
    collector_id: String,
    tenant: String,
    name: String,
    action: String,
    key_id: String,
    public_key: String,
    until_us: i64,
    actor: String,
    reason: String,
}

const IDENTITY_COLUMNS: &str = "at_date, toUInt32(at) AS at, at_us, collector_id, tenant, name, \
    action, key_id, public_key, until_us, actor, reason";

#[derive(Row, Serialize, Deserialize)]
struct TokenRow {
    at_date: u16,
    at: u32,
    at_us: u32,
    token_id: String,
    secret_hash: String,
    tenant: String,
    name: String,
    expires_us: i64,
    action: String,
    collector_id: String,
    actor: String,
}

const TOKEN_COLUMNS: &str = "at_date, toUInt32(at) AS at, at_us, token_id, secret_hash, tenant, \
    name, expires_us, action, collector_id, actor";

impl Collectors for ClickHouseStore {
    async fn write_identity(&self, records: &[IdentityRecord]) -> Result<u64> {
        self.insert_rows(
            "collector_identity",
            records.iter().map(|r| {
                let (at, at_us) = clamp_datetime(r.at_us);
                IdentityRow {
                    at_date: u16::try_from(at / 86_400).unwrap_or(u16::MAX),
                    at,
                    at_us,
                    collector_id: r.collector_id.clone(),
                    tenant: r.tenant.clone(),
                    name: r.name.clone(),
                    action: r.action.as_str().to_owned(),
                    key_id: r.key_id.clone(),
                    public_key: r.public_key.clone(),
                    until_us: r.until_us,
                    actor: r.actor.clone(),
                    reason: r.reason.clone(),
                }
            }),
        )
        .await
    }

    async fn identity_log(&self) -> Result<Vec<IdentityRecord>> {
        let rows: Vec<IdentityRow> = self
            .client
            .query(&format!(
                "SELECT {IDENTITY_COLUMNS} FROM {}.collector_identity FINAL \
                 ORDER BY at, at_us, collector_id, action, key_id",
                self.db
            ))
            .fetch_all()
            .await?;
        rows.into_iter()
            .map(|r| {
                Ok(IdentityRecord {
                    at_us: i64::from(r.at) * 1_000_000 + i64::from(r.at_us),
                    action: IdentityAction::parse(&r.action).ok_or_else(|| {
                        Error::BadRow(format!("collector_identity: action {:?}", r.action))
                    })?,
                    collector_id: r.collector_id,
                    tenant: r.tenant,
                    name: r.name,
                    key_id: r.key_id,
                    public_key: r.public_key,
                    until_us: r.until_us,
                    actor: r.actor,
                    reason: r.reason,
                })
            })
            .collect()
    }

    async fn identity_version(&self) -> Result<(u64, i64)> {
        let (rows, at, at_us): (u64, u32, u32) = self
            .client
            .query(&format!(
                "SELECT count(), toUInt32(max(at)), max(at_us) FROM {}.collector_identity",
                self.db
            ))
            .fetch_one()
            .await?;
        Ok((rows, i64::from(at) * 1_000_000 + i64::from(at_us)))
    }

    async fn write_tokens(&self, records: &[TokenRecord]) -> Result<u64> {
        self.insert_rows(
            "enrolment_tokens",
            records.iter().map(|r| {
                let (at, at_us) = clamp_datetime(r.at_us);
                TokenRow {
                    at_date: u16::try_from(at / 86_400).unwrap_or(u16::MAX),
                    at,
                    at_us,
                    token_id: r.token_id.clone(),
                    secret_hash: r.secret_hash.clone(),
                    tenant: r.tenant.clone(),
                    name: r.name.clone(),
                    expires_us: r.expires_us,
                    action: r.action.as_str().to_owned(),
                    collector_id: r.collector_id.clone(),
                    actor: r.actor.clone(),
                }
            }),
        )
        .await
    }

    async fn tokens(&self, token_id: Option<&str>) -> Result<Vec<TokenRecord>> {
        let mut sql = format!(
            "SELECT {TOKEN_COLUMNS} FROM {}.enrolment_tokens FINAL WHERE 1",
            self.db
        );
        if token_id.is_some() {
            sql.push_str(" AND token_id = ?");
        }
        sql.push_str(" ORDER BY at, at_us, token_id, action");
        let mut query = self.client.query(&sql);
        if let Some(id) = token_id {
            query = query.bind(id);
        }
        let rows: Vec<TokenRow> = query.fetch_all().await?;
        rows.into_iter()
            .map(|r| {
                Ok(TokenRecord {
                    at_us: i64::from(r.at) * 1_000_000 + i64::from(r.at_us),
                    action: TokenAction::parse(&r.action).ok_or_else(|| {
                        Error::BadRow(format!("enrolment_tokens: action {:?}", r.action))
                    })?,
                    token_id: r.token_id,
                    secret_hash: r.secret_hash,
                    tenant: r.tenant,
                    name: r.name,
                    expires_us: r.expires_us,
                    collector_id: r.collector_id,
                    actor: r.actor,
                })
            })
            .collect()
    }
}
