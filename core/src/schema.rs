//! Arrow schemas of the event model, version [`SCHEMA_VERSION`].
//!
//! Every batch has the same leading **common columns**, then the **typed columns** of its source
//! kind, then two parallel list columns, `attr_keys` and `attr_values`, for every remaining field
//! (the schema-agnostic key/value layout: a source may carry any field without a schema change).
//!
//! | column         | Arrow type                      | null | meaning                                     |
//! |----------------|---------------------------------|------|---------------------------------------------|
//! | `event_time`   | Timestamp(µs, UTC)              | no   | when it happened, as the source says        |
//! | `receive_time` | Timestamp(µs, UTC)              | no   | when the collector received it              |
//! | `tenant`       | Utf8                            | no   | kommunenummer of the municipality           |
//! | `collector_id` | Utf8                            | no   | the collector that produced the batch       |
//! | `host`         | Utf8                            | yes  | host that emitted the event                 |
//! | `source_kind`  | Utf8                            | no   | [`SourceKind::name`]                        |
//! | `severity`     | UInt8                           | yes  | syslog scale: 0 emergency … 7 debug         |
//! | `message`      | Utf8                            | yes  | the raw or main text                        |
//! | *typed*        | per kind, see [`typed_columns`] | yes  |                                             |
//! | `attr_keys`    | List(Utf8)                      | no   | names of remaining fields                   |
//! | `attr_values`  | List(Utf8)                      | no   | their values, as text, same order           |
//!
//! Schemas only grow: a new version may add nullable typed columns; renaming or removing a
//! column, or changing a type, needs a new [`SCHEMA_VERSION`] that decoders must accept beside
//! the old one.

use std::sync::{Arc, OnceLock};

use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};

use crate::SourceKind;

/// The version of the event schemas described here. Carried in every wire envelope.
pub const SCHEMA_VERSION: u16 = 1;

/// Name of the event time column.
pub const EVENT_TIME: &str = "event_time";
/// Name of the receive time column.
pub const RECEIVE_TIME: &str = "receive_time";
/// Name of the tenant column.
pub const TENANT: &str = "tenant";
/// Name of the collector id column.
pub const COLLECTOR_ID: &str = "collector_id";
/// Name of the host column.
pub const HOST: &str = "host";
/// Name of the source kind column.
pub const SOURCE_KIND: &str = "source_kind";
/// Name of the severity column.
pub const SEVERITY: &str = "severity";
/// Name of the message column.
pub const MESSAGE: &str = "message";
/// Name of the list column holding the names of remaining fields.
pub const ATTR_KEYS: &str = "attr_keys";
/// Name of the list column holding the values of remaining fields.
pub const ATTR_VALUES: &str = "attr_values";

/// Number of common columns that lead every schema.
pub const COMMON_COLUMNS: usize = 8;

/// The value type of a typed column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    /// UTF-8 text.
    Utf8,
    /// Boolean.
    Bool,
    /// Unsigned 8-bit integer.
    UInt8,
    /// Unsigned 16-bit integer.
    UInt16,
    /// Unsigned 32-bit integer.
    UInt32,
    /// Unsigned 64-bit integer.
    UInt64,
    /// Microseconds since the Unix epoch, UTC.
    Timestamp,
}

impl ColumnType {
    /// The Arrow data type of this column type.
    pub fn data_type(self) -> DataType {
        match self {
            ColumnType::Utf8 => DataType::Utf8,
            ColumnType::Bool => DataType::Boolean,
            ColumnType::UInt8 => DataType::UInt8,
            ColumnType::UInt16 => DataType::UInt16,
            ColumnType::UInt32 => DataType::UInt32,
            ColumnType::UInt64 => DataType::UInt64,
            ColumnType::Timestamp => timestamp_type(),
        }
    }
}

/// A typed column of one source kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Column name (snake_case, unique within the schema).
    pub name: &'static str,
    /// Value type.
    pub ty: ColumnType,
}

const fn col(name: &'static str, ty: ColumnType) -> ColumnSpec {
    ColumnSpec { name, ty }
}

use ColumnType::{Bool, Timestamp, UInt8, UInt16, UInt32, UInt64, Utf8};

const SYSLOG: &[ColumnSpec] = &[
    col("facility", UInt8),
    col("app_name", Utf8),
    col("proc_id", Utf8),
    col("msg_id", Utf8),
    col("parse_error", Bool),
];

const WEB_ACCESS: &[ColumnSpec] = &[
    col("client_ip", Utf8),
    col("user", Utf8),
    col("method", Utf8),
    col("url_path", Utf8),
    col("url_query", Utf8),
    col("http_version", Utf8),
    col("status", UInt16),
    col("bytes_sent", UInt64),
    col("referrer", Utf8),
    col("user_agent", Utf8),
    col("vhost", Utf8),
    col("duration_us", UInt64),
];

const AUTH: &[ColumnSpec] = &[
    col("program", Utf8),
    col("user", Utf8),
    col("src_ip", Utf8),
    col("src_port", UInt16),
    col("outcome", Utf8),
    col("auth_method", Utf8),
    col("target_user", Utf8),
    col("command", Utf8),
];

const WINDOWS_EVENT: &[ColumnSpec] = &[
    col("win_event_id", UInt32),
    col("channel", Utf8),
    col("provider", Utf8),
    col("computer", Utf8),
    col("record_id", UInt64),
];

const FLOW: &[ColumnSpec] = &[
    col("src_ip", Utf8),
    col("src_port", UInt16),
    col("dst_ip", Utf8),
    col("dst_port", UInt16),
    col("protocol", UInt8),
    col("flow_start", Timestamp),
    col("flow_end", Timestamp),
    col("packets_out", UInt64),
    col("bytes_out", UInt64),
    col("packets_in", UInt64),
    col("bytes_in", UInt64),
    col("tcp_flags", UInt8),
    col("icmp_type", UInt8),
    col("icmp_code", UInt8),
    col("dns_query", Utf8),
    col("tls_sni", Utf8),
    col("http_host", Utf8),
    col("component", Utf8),
    col("exporter", Utf8),
    col("sampling_rate", UInt32),
];

const OIDC_LOGIN: &[ColumnSpec] = &[
    col("client_id", Utf8),
    col("subject", Utf8),
    col("acr", Utf8),
    col("amr", Utf8),
    col("idp", Utf8),
    col("outcome", Utf8),
    col("error_code", Utf8),
    col("src_ip", Utf8),
    col("user_agent", Utf8),
    col("service", Utf8),
];

/// The typed columns of a source kind, in schema order (after the common columns).
pub fn typed_columns(kind: SourceKind) -> &'static [ColumnSpec] {
    match kind {
        SourceKind::Syslog => SYSLOG,
        SourceKind::WebAccess => WEB_ACCESS,
        SourceKind::Auth => AUTH,
        SourceKind::WindowsEvent => WINDOWS_EVENT,
        SourceKind::Flow => FLOW,
        SourceKind::OidcLogin => OIDC_LOGIN,
        SourceKind::GenericJson => &[],
    }
}

/// The Arrow type of every timestamp in the event model: microseconds, UTC.
pub fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, false)))
}

fn build_schema(kind: SourceKind) -> SchemaRef {
    let mut fields = vec![
        Field::new(EVENT_TIME, timestamp_type(), false),
        Field::new(RECEIVE_TIME, timestamp_type(), false),
        Field::new(TENANT, DataType::Utf8, false),
        Field::new(COLLECTOR_ID, DataType::Utf8, false),
        Field::new(HOST, DataType::Utf8, true),
        Field::new(SOURCE_KIND, DataType::Utf8, false),
        Field::new(SEVERITY, DataType::UInt8, true),
        Field::new(MESSAGE, DataType::Utf8, true),
    ];
    fields.extend(
        typed_columns(kind)
            .iter()
            .map(|c| Field::new(c.name, c.ty.data_type(), true)),
    );
    fields.push(Field::new(ATTR_KEYS, string_list(), false));
    fields.push(Field::new(ATTR_VALUES, string_list(), false));
    Arc::new(Schema::new(fields))
}

/// The Arrow schema of a source kind (shared, built once).
pub fn schema(kind: SourceKind) -> SchemaRef {
    static SCHEMAS: OnceLock<Vec<SchemaRef>> = OnceLock::new();
    let all = SCHEMAS.get_or_init(|| SourceKind::ALL.iter().map(|k| build_schema(*k)).collect());
    // ALL is in code order starting at 1.
    Arc::clone(&all[usize::from(kind.code() - 1)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_schema_has_common_columns_first_and_unique_names() {
        for kind in SourceKind::ALL {
            let s = schema(kind);
            let names: Vec<&str> = s.fields().iter().map(|f| f.name().as_str()).collect();
            assert_eq!(
                &names[..COMMON_COLUMNS],
                &[
                    EVENT_TIME,
                    RECEIVE_TIME,
                    TENANT,
                    COLLECTOR_ID,
                    HOST,
                    SOURCE_KIND,
                    SEVERITY,
                    MESSAGE
                ]
            );
            assert_eq!(&names[names.len() - 2..], &[ATTR_KEYS, ATTR_VALUES]);
            let unique: HashSet<&str> = names.iter().copied().collect();
            assert_eq!(unique.len(), names.len(), "duplicate column in {kind}");
            assert_eq!(names.len(), COMMON_COLUMNS + typed_columns(kind).len() + 2);
        }
    }
}
