//! # varde-core: Varde's event model
//!
//! Everything that crosses a boundary between Varde's processes is defined here, and nothing
//! here does I/O: no sockets, no files, no async runtime, no DataFusion. Collectors, the pipeline,
//! the store and the dashboard all speak these types.
//!
//! - [`SourceKind`]: what sort of telemetry a batch holds (syslog, web access, auth, Windows
//!   event, flow, OIDC login, generic JSON).
//! - [`schema`]: the Arrow schema of each kind: common columns, typed columns per kind, and the
//!   remaining fields as parallel key/value lists.
//! - [`Event`] and [`BatchBuilder`]: rows in, Arrow batches out; [`BatchReader`] for checked
//!   typed access to a batch.
//! - [`Envelope`]: the wire form of one Kafka message, one zstd-compressed Arrow IPC batch with a
//!   small fixed header (schema version, collector id, batch sequence, row count, tenant).
//! - [`jsonl`]: the JSON-lines form third-party shippers can send instead.
//! - [`EventId`]: deterministic event ids from (collector id, batch sequence, row), so a
//!   replayed batch collapses in the store.
//! - [`Kommunenummer`]: tenants are municipalities, validated against SSB's list.
//! - [`windows`]: Windows event log records (evtx JSON) into `windows_event` events.
//! - [`status`]: a collector's report on itself (spool depth, drops), sent as an event.
//! - [`ComponentRegistry`]: the shared public components (ID-porten, Altinn, …) and the names
//!   and networks that identify their traffic.
//!
//! ```
//! use varde_core::{BatchBuilder, CollectorId, Envelope, Event, Kommunenummer, SourceKind, Value};
//!
//! let tenant = Kommunenummer::parse("4601")?; // Bergen
//! let collector = CollectorId::new("k4601-syslog-01")?;
//! let mut builder = BatchBuilder::new(SourceKind::Syslog, tenant, collector.clone(), 1);
//! builder.push(&Event {
//!     event_time_us: 1_700_000_000_000_000,
//!     receive_time_us: 1_700_000_000_000_100,
//!     host: Some("fw01".into()),
//!     severity: Some(4),
//!     message: Some("link down".into()),
//!     typed: vec![("app_name", Value::Str("kernel".into()))],
//!     attrs: vec![],
//! })?;
//! let envelope = Envelope::new(SourceKind::Syslog, tenant, collector, 1, builder.finish()?)?;
//! let bytes = envelope.encode()?;
//! assert_eq!(Envelope::decode(&bytes)?, envelope);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod component;
pub mod enrolment;
pub mod envelope;
pub mod event;
pub mod id;
pub mod identity;
pub mod jsonl;
pub mod kind;
pub mod pseudonym;
pub mod schema;
pub mod status;
pub mod tenant;
pub mod time;
pub mod windows;

pub use component::{Component, ComponentRegistry};
pub use envelope::{Envelope, EnvelopeError, EnvelopeHeader, EnvelopeWriter};
pub use event::{
    AttrTable, BatchBuilder, BatchReader, Event, Row, RowText, TypedColumn, Value, ValueRef,
};
pub use id::{AlertId, CollectorId, EventId};
pub use identity::{CollectorKey, KeyId, PublicKey};
pub use kind::SourceKind;
pub use tenant::{Kommunenummer, TenantError};

/// Errors of the event model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A typed value does not fit its column.
    #[error("column '{column}' holds {expected:?}, got {got}")]
    BadValue {
        /// The column.
        column: &'static str,
        /// Its type.
        expected: schema::ColumnType,
        /// What was given.
        got: String,
    },
    /// A typed value names a column the kind does not have.
    #[error("source kind {kind} has no typed column '{column}'")]
    UnknownColumn {
        /// The kind.
        kind: SourceKind,
        /// The column named.
        column: &'static str,
    },
    /// Severity outside 0–7.
    #[error("severity {0} is outside the syslog scale 0-7")]
    BadSeverity(u8),
    /// A batch does not have the schema of its kind.
    #[error("batch is not a {kind} batch of schema version {v}: {detail}", v = schema::SCHEMA_VERSION)]
    SchemaMismatch {
        /// The kind expected.
        kind: SourceKind,
        /// What differs.
        detail: String,
    },
    /// An invalid collector id.
    #[error("'{0}' is not a valid collector id: 1-64 characters from A-Z a-z 0-9 . _ -")]
    BadCollectorId(String),
    /// An invalid component registry.
    #[error("component registry: {0}")]
    Registry(String),
    /// One batch's text in one column (host, message, a typed text column, or the
    /// attributes) would pass Arrow's 2 GiB limit for one string column.
    #[error("a batch's text in one column would pass 2 GiB; close the batch sooner")]
    BatchFull,
    /// Arrow refused a batch.
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
