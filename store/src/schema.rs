//! The ClickHouse schema, as versioned migrations.
//!
//! Every statement must run on ClickHouse 18.16 (what Debian ships, and what CI installs) and on
//! current releases, so the schema keeps to what 18.16 has: `MergeTree` family with custom
//! `PARTITION BY`, `DateTime('UTC')` (no `DateTime64`), `FixedString`, `Array(String)`, `Nullable`;
//! no TTL, no `LowCardinality`, no `Map`/`JSON`/`IPv6` columns.
//!
//! Migrations are append-only: never edit one that has shipped; add the next version.
//! Applied versions are recorded in `<db>.schema_migrations`.

/// One schema change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migration {
    /// Version, strictly increasing from 1.
    pub version: u32,
    /// Short name, recorded with the version.
    pub name: &'static str,
    /// Statements; `{db}` is replaced by the database name.
    pub statements: &'static [&'static str],
}

/// Every migration, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "events",
        statements: &[
            // One row per event. Replayed batches produce rows with the same ORDER BY key (the event
            // id is deterministic, and so are the tenant and event time of a row), which
            // ReplacingMergeTree collapses on merge; readers count with uniqExact(event_id) or FINAL
            // so a duplicate is never visible before that.
            //
            // Typed columns of each source kind, and every remaining field, are stored as parallel
            // key/value arrays (field_keys/field_values); hot fields get their own columns in later
            // migrations when queries need them.
            "CREATE TABLE IF NOT EXISTS {db}.events (
            event_date Date,
            tenant String,
            event_time DateTime('UTC'),
            event_time_us UInt32,
            receive_time DateTime('UTC'),
            event_id FixedString(16),
            collector_id String,
            batch_seq UInt64,
            batch_row UInt32,
            source_kind String,
            host String,
            severity Nullable(UInt8),
            message String,
            field_keys Array(String),
            field_values Array(String)
        ) ENGINE = ReplacingMergeTree()
        PARTITION BY event_date
        ORDER BY (tenant, event_time, event_id)",
        ],
    },
    Migration {
        version: 2,
        name: "alerts",
        statements: &[
            // One row per (rule, event) match. The alert id is derived from both, so a replayed
            // batch re-detects into rows with the same ORDER BY key, which ReplacingMergeTree
            // collapses; readers use FINAL or uniqExact(alert_id) until the merge happens.
            // dedup_key groups repeats (rule, tenant, component, host) for the dashboard.
            "CREATE TABLE IF NOT EXISTS {db}.alerts (
                event_date Date,
                tenant String,
                event_time DateTime('UTC'),
                event_time_us UInt32,
                alert_id FixedString(16),
                dedup_key FixedString(16),
                component String,
                rule_id String,
                rule_title String,
                rule_level String,
                rule_tags Array(String),
                event_id FixedString(16),
                detect_time DateTime('UTC'),
                source_kind String,
                host String,
                matched_keys Array(String),
                matched_values Array(String)
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY event_date
            ORDER BY (tenant, event_time, alert_id)",
        ],
    },
    Migration {
        version: 3,
        name: "dead_letters",
        statements: &[
            // Messages the pipeline refused (not an envelope, another tenant's batch, a schema it
            // does not know, too big), kept for inspection with the reason. A replayed refusal
            // has the same (topic, partition, offset) and collapses. Dropped by partition (day)
            // like every table.
            "CREATE TABLE IF NOT EXISTS {db}.dead_letters (
                received_date Date,
                received_time DateTime('UTC'),
                topic String,
                partition Int32,
                offset Int64,
                reason String,
                error String,
                payload_len UInt64,
                payload String
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY received_date
            ORDER BY (topic, partition, offset)",
        ],
    },
    Migration {
        version: 4,
        name: "triage",
        statements: &[
            // The dashboard's triage history: one row per analyst action on a group of alerts
            // (dedup key), never updated or deleted; a group's status is its newest row. The
            // action id is random per action, so a retried insert collapses. Kept by month and
            // never dropped by retention: it is the audit trail of triage.
            "CREATE TABLE IF NOT EXISTS {db}.triage (
                at DateTime('UTC'),
                at_us UInt32,
                tenant String,
                dedup_key FixedString(16),
                action_id FixedString(16),
                action String,
                actor String,
                assignee String,
                resolution String,
                reason String,
                until DateTime('UTC'),
                before String
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(at)
            ORDER BY (tenant, dedup_key, at, action_id)",
        ],
    },
    Migration {
        version: 5,
        name: "incident_changes",
        statements: &[
            // Incidents as their history: one row per change (opened, title, status, severity,
            // TLP, awareness time, a linked group of alerts, further municipalities or
            // components, a comment), never updated or deleted; the incident is the fold of its
            // rows. `tenants` holds the municipality of a linked group or the list of further
            // municipalities, so a municipality's query can find what concerns it. The change
            // id is random, so a retried insert collapses. Kept by month, never dropped by
            // retention: it is the CERT's record.
            "CREATE TABLE IF NOT EXISTS {db}.incident_changes (
                at DateTime('UTC'),
                at_us UInt32,
                incident_id FixedString(16),
                change_id FixedString(16),
                actor String,
                field String,
                value String,
                dedup_key FixedString(16),
                tenants Array(String),
                components Array(String)
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY toYYYYMM(at)
            ORDER BY (incident_id, at, change_id)",
        ],
    },
    Migration {
        version: 6,
        name: "rules",
        statements: &[
            // The catalog of loaded rules: every pipeline (re)load writes all its rules and load
            // errors stamped with the load time; a source keeps only its newest row after merges,
            // and readers take the rows of the newest load, so removed files drop out. Small
            // (one row per rule file) and not retained by day: it is overwritten, not grown.
            "CREATE TABLE IF NOT EXISTS {db}.rules (
                loaded_at DateTime('UTC'),
                loaded_at_us UInt32,
                source String,
                rule_id String,
                title String,
                level String,
                status String,
                tags Array(String),
                author String,
                description String,
                references Array(String),
                falsepositives Array(String),
                kind String,
                text String,
                error String
            ) ENGINE = ReplacingMergeTree(loaded_at)
            ORDER BY (source, rule_id)",
        ],
    },
    Migration {
        version: 7,
        name: "rule_switches",
        statements: &[
            // Rules turned off and on again from the dashboard: append-only, one row per
            // switch, the newest row of a rule is its state (no row: on). The pipeline reads it
            // between batches. Never dropped by retention: it is part of the audit trail.
            "CREATE TABLE IF NOT EXISTS {db}.rule_switches (
                at DateTime('UTC'),
                at_us UInt32,
                switch_id FixedString(16),
                rule_id String,
                enabled UInt8,
                actor String,
                reason String
            ) ENGINE = ReplacingMergeTree()
            ORDER BY (rule_id, at, at_us, switch_id)",
        ],
    },
    Migration {
        version: 8,
        name: "correlation_hits",
        statements: &[
            // The correlations' hits, one row per hit a correlation took into a group's window,
            // written with the batch's alerts before its offset is committed. A starting
            // pipeline replays the newest hours in `seq` order to rebuild its open windows. A
            // hit written twice (a retried insert) has the same key and collapses; readers use
            // FINAL. Dropped by retention by the day it was observed.
            "CREATE TABLE IF NOT EXISTS {db}.correlation_hits (
                observed_date Date,
                observed DateTime('UTC'),
                observed_us UInt32,
                seq UInt64,
                correlation String,
                definition FixedString(16),
                group_values Array(String),
                rule_pos UInt16,
                event_id FixedString(16),
                event_time_us Int64,
                tenant String,
                has_value UInt8,
                value String
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY observed_date
            ORDER BY (seq, correlation, event_id, rule_pos)",
        ],
    },
    Migration {
        version: 9,
        name: "notification_outbox",
        statements: &[
            // Every notification to a municipality's contact, as rendered when queued. Its id
            // is derived from what it is about, so a producer that queues it again (after a
            // restart) writes the same key and it collapses; readers use FINAL. Kept like the
            // audit trail (not dropped by retention): what the CERT told whom, and when.
            "CREATE TABLE IF NOT EXISTS {db}.notifications (
                created_date Date,
                created DateTime('UTC'),
                created_us UInt32,
                notification_id FixedString(16),
                contact String,
                tenant String,
                channel String,
                target String,
                kind String,
                tlp String,
                subject String,
                text String,
                html String,
                payload String
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY created_date
            ORDER BY (notification_id)",
            // One row per try to send one; the newest decides its state.
            "CREATE TABLE IF NOT EXISTS {db}.notification_attempts (
                at_date Date,
                at DateTime('UTC'),
                at_us UInt32,
                notification_id FixedString(16),
                attempt UInt32,
                outcome String,
                error String,
                next_us Int64
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY at_date
            ORDER BY (notification_id, attempt, outcome)",
        ],
    },
    Migration {
        version: 10,
        name: "incident_reports_and_exports",
        statements: &[
            // Every report of an incident as submitted to the authority: never changed, a new
            // report of the same stage is a new version. Kept like the audit trail.
            "CREATE TABLE IF NOT EXISTS {db}.incident_reports (
                at_date Date,
                at DateTime('UTC'),
                at_us UInt32,
                report_id FixedString(16),
                incident_id FixedString(16),
                stage String,
                version UInt32,
                actor String,
                tlp String,
                summary String,
                impact String,
                mitigation String,
                cross_border String,
                stix String
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY at_date
            ORDER BY (incident_id, stage, version, report_id)",
            // Every export of an incident (who took which format), for the audit log.
            "CREATE TABLE IF NOT EXISTS {db}.exports (
                at_date Date,
                at DateTime('UTC'),
                at_us UInt32,
                export_id FixedString(16),
                actor String,
                tenant String,
                incident_id FixedString(16),
                stage String,
                format String
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY at_date
            ORDER BY (at, export_id)",
        ],
    },
    Migration {
        version: 11,
        name: "collector_registry",
        statements: &[
            // Every change to an enrolled collector's identity (a key added, a key's end of
            // validity, a revocation): the registry the pipeline verifies envelopes against is
            // folded from these rows. Never changed, kept like the audit trail.
            "CREATE TABLE IF NOT EXISTS {db}.collector_identity (
                at_date Date,
                at DateTime('UTC'),
                at_us UInt32,
                collector_id String,
                tenant String,
                name String,
                action String,
                key_id String,
                public_key String,
                until_us Int64,
                actor String,
                reason String
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY at_date
            ORDER BY (collector_id, at, at_us, action, key_id)",
            // Enrolment tokens: issued (with the hash of the secret, never the secret), used.
            "CREATE TABLE IF NOT EXISTS {db}.enrolment_tokens (
                at_date Date,
                at DateTime('UTC'),
                at_us UInt32,
                token_id String,
                secret_hash String,
                tenant String,
                name String,
                expires_us Int64,
                action String,
                collector_id String,
                actor String
            ) ENGINE = ReplacingMergeTree()
            PARTITION BY at_date
            ORDER BY (token_id, action, at, at_us, collector_id)",
        ],
    },
];

/// The table that records applied migrations.
pub const MIGRATIONS_TABLE: &str = "CREATE TABLE IF NOT EXISTS {db}.schema_migrations (
    version UInt32,
    name String,
    applied_at DateTime('UTC')
) ENGINE = TinyLog";

/// The suffix of a table's local (per-node) part in cluster mode: `{db}.events` is then the
/// `Distributed` table over every shard's `{db}.events_local`.
pub const LOCAL_SUFFIX: &str = "_local";

/// The table that records applied migrations, in cluster mode: one replicated table with every
/// node a replica of it (one ZooKeeper path for the whole cluster), so that every node knows what
/// was applied.
pub const CLUSTER_MIGRATIONS_TABLE: &str =
    "CREATE TABLE IF NOT EXISTS {db}.schema_migrations ON CLUSTER {cluster} (
    version UInt32,
    name String,
    applied_at DateTime('UTC')
) ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{db}/schema_migrations', '{shard}-{replica}')
ORDER BY version";

/// Whether `name` can name a ClickHouse cluster in Varde's statements (letters, digits, `_`).
pub fn valid_cluster_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// One single-server `CREATE TABLE` of [`MIGRATIONS`] as cluster `cluster` runs it: a local table
/// on every node (`ON CLUSTER`, the engine made `Replicated…` with the ZooKeeper path
/// `/clickhouse/tables/{shard}/<db>/<table>` and the node's `{replica}` macro), and the
/// `Distributed` table under the original name, sharding rows by `cityHash64` of the table's
/// whole `ORDER BY` key. Rows that `ReplacingMergeTree` would collapse share that key, so every
/// copy of a row (a replayed batch, a retried insert) lands on the same shard and still
/// collapses there. `{db}` stays a placeholder; `{shard}` and `{replica}` are the servers' macros.
pub fn on_cluster(statement: &str, cluster: &str) -> Result<[String; 2], String> {
    const PREFIX: &str = "CREATE TABLE IF NOT EXISTS {db}.";
    let rest = statement
        .trim_start()
        .strip_prefix(PREFIX)
        .ok_or_else(|| format!("not a CREATE TABLE of Varde's database: {statement:.60}"))?;
    let name_len = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .ok_or("a CREATE TABLE without columns")?;
    let (name, body) = rest.split_at(name_len);
    let engine_at = body
        .find("ENGINE = ")
        .ok_or("a CREATE TABLE without ENGINE")?;
    let (columns, engine_and_keys) = body.split_at(engine_at);
    let engine_and_keys = &engine_and_keys["ENGINE = ".len()..];
    let open = engine_and_keys
        .find('(')
        .ok_or("an ENGINE without arguments")?;
    let close = engine_and_keys[open..]
        .find(')')
        .map(|i| open + i)
        .ok_or("an ENGINE without its closing parenthesis")?;
    let engine = &engine_and_keys[..open];
    if !engine.ends_with("MergeTree") || engine.starts_with("Replicated") {
        return Err(format!(
            "{name}: engine {engine} has no replicated form here"
        ));
    }
    let args = engine_and_keys[open + 1..close].trim();
    let keys = &engine_and_keys[close + 1..];
    let order_by = keys
        .rfind("ORDER BY ")
        .map(|i| keys[i + "ORDER BY ".len()..].trim())
        .ok_or_else(|| format!("{name}: no ORDER BY"))?;
    let key = order_by
        .strip_prefix('(')
        .and_then(|k| k.strip_suffix(')'))
        .unwrap_or(order_by);
    let extra = if args.is_empty() {
        String::new()
    } else {
        format!(", {args}")
    };
    let local = format!(
        "CREATE TABLE IF NOT EXISTS {{db}}.{name}{LOCAL_SUFFIX} ON CLUSTER {cluster}{columns}ENGINE = Replicated{engine}('/clickhouse/tables/{{shard}}/{{db}}/{name}', '{{replica}}'{extra}){keys}"
    );
    let distributed = format!(
        "CREATE TABLE IF NOT EXISTS {{db}}.{name} ON CLUSTER {cluster} AS {{db}}.{name}{LOCAL_SUFFIX} \
         ENGINE = Distributed({cluster}, {{db}}, {name}{LOCAL_SUFFIX}, cityHash64({key}))"
    );
    Ok([local, distributed])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_increase_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "{}", m.name);
            assert!(!m.statements.is_empty());
        }
    }

    #[test]
    fn statements_avoid_what_clickhouse_18_16_lacks() {
        for m in MIGRATIONS {
            for s in m.statements {
                for banned in [
                    "DateTime64",
                    "LowCardinality",
                    " TTL ",
                    "Map(",
                    "JSON",
                    "IPv6",
                    "Object(",
                ] {
                    assert!(!s.contains(banned), "migration {} uses {banned}", m.name);
                }
            }
        }
    }

    #[test]
    fn every_table_has_a_cluster_form_sharded_by_its_whole_key() {
        let mut tables = 0;
        for m in MIGRATIONS {
            for s in m.statements {
                let [local, distributed] =
                    on_cluster(s, "varde").unwrap_or_else(|e| panic!("migration {}: {e}", m.name));
                assert!(local.contains("_local ON CLUSTER varde"), "{local}");
                assert!(
                    local.contains(
                        "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{db}/"
                    ),
                    "{local}"
                );
                assert!(
                    distributed.contains("ENGINE = Distributed(varde, {db}, "),
                    "{distributed}"
                );
                tables += 1;
            }
        }
        assert_eq!(tables, 14);
        let [local, distributed] = on_cluster(MIGRATIONS[0].statements[0], "c1").expect("events");
        assert!(local.starts_with("CREATE TABLE IF NOT EXISTS {db}.events_local ON CLUSTER c1 ("));
        assert!(local.ends_with(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/{db}/events', '{replica}')\n        PARTITION BY event_date\n        ORDER BY (tenant, event_time, event_id)"
        ), "{local}");
        assert_eq!(
            distributed,
            "CREATE TABLE IF NOT EXISTS {db}.events ON CLUSTER c1 AS {db}.events_local \
             ENGINE = Distributed(c1, {db}, events_local, cityHash64(tenant, event_time, event_id))"
        );
        // A versioned engine keeps its version column after the replication arguments.
        let rules = MIGRATIONS
            .iter()
            .flat_map(|m| m.statements.iter())
            .find(|s| s.contains("ReplacingMergeTree(loaded_at)"))
            .expect("a versioned table");
        let [local, _] = on_cluster(rules, "c1").expect("versioned");
        assert!(local.contains("', '{replica}', loaded_at)"), "{local}");
        assert!(on_cluster(MIGRATIONS_TABLE, "c1").is_err());
        assert!(
            valid_cluster_name("varde_prod")
                && !valid_cluster_name("a b")
                && !valid_cluster_name("")
        );
    }
}
