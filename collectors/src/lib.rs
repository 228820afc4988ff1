//! # varde-collector: the edge of Varde
//!
//! What a municipality installs on one small VM. It reads logs, parses them into the typed
//! columns of [`varde_core`] *before* anything leaves the municipality, batches them into Arrow
//! envelopes and publishes them to the tenant's Kafka topic with an idempotent, `acks=all`
//! producer.
//!
//! - [`config`]: the strict TOML configuration.
//! - [`identity`]: the collector's Ed25519 key file (every envelope is signed with it).
//! - [`enrol`]: enrolment with the CERT (`varde-collector enrol <token>`) and key rotation.
//! - [`syslog`]: RFC 5424 / RFC 3164 lines into events; non-syslog lines kept raw.
//! - [`privacy`]: keyed pseudonyms for national identity numbers (and, by policy, IP addresses)
//!   in every text field, before anything leaves the municipality.
//! - [`parse`]: edge parsers from text into the typed columns of `web_access`, `auth`,
//!   `oidc_login`, `windows_event` (evtx, Winlogbeat and NXLog JSON) and `generic_json`.
//! - [`flow`]: network flows: packets decoded and aggregated into bidirectional flows with DNS,
//!   TLS SNI and HTTP Host metadata, attributed to the shared components; `.pcap`/`.pcapng`.
//! - [`import`]: files of events for offline analysis (`.evtx`, `.json`, `.jsonl`).
//! - [`edge`]: the one entry point of the delivery side, [`edge::edge_event`]: syslog parsing →
//!   format detection → privacy, with per-source counters.
//! - [`sources`]: syslog over UDP, TCP and TLS (RFC 6587 framing detected per connection);
//!   files and file patterns, followed through rotation, resumed from their checkpoints.
//! - [`shipper`]: batching, batch sequence numbers; the sender that publishes from the spool.
//! - [`relp`]: the RELP listener (acknowledges each message once it is journalled).
//! - [`journal`]: the write-ahead journal of each network source: what a listener accepted is
//!   on disk before it is batched, and replayed after a crash.
//! - [`spool`]: the disk spool between the batcher and Kafka (write-ahead, checksummed,
//!   bounded); records leave it only once Kafka acknowledged them.
//! - [`metrics`]: `/metrics` (Prometheus text) and `/health` on a local port.
//! - [`memory`]: the C allocator's settings, made first thing in `main` (one arena, large
//!   blocks mapped on their own): the collector's peak RSS at full speed.
//! - [`status`]: the collector's report on itself (spool depth, drops) to the CERT, as an event.
//! - [`sample`]: synthetic municipal syslog (and edge input: access logs, IIS, JSON logins,
//!   lines with identity numbers) for the demo, the tests and the benchmarks.
//!
//! **Invariant:** this crate never depends on the pipeline, the store or the dashboard, and never
//! links DataFusion or ClickHouse; it stays small enough for a 1-vCPU VM.
#![deny(missing_docs)]

pub mod config;
pub mod edge;
pub mod enrol;
pub mod flow;
pub mod identity;
pub mod import;
pub mod journal;
pub mod memory;
pub mod metrics;
pub mod parse;
pub mod privacy;
pub mod relp;
pub mod sample;
pub mod shipper;
pub mod sources;
pub mod spool;
pub mod status;
pub mod syslog;
