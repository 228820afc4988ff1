//! # varde-transport: how batches travel from collectors to the pipeline
//!
//! Two implementations of one narrow pair of traits:
//!
//! - [`kafka`]: production. Collectors publish envelopes to per-tenant topics
//!   (`<prefix>events.<kommunenummer>`) with an idempotent, `acks=all` producer; the pipeline
//!   consumes them in a consumer group and commits an offset only after the rows it covers are
//!   stored. Per-tenant topics are what binds a batch to its tenant: the broker's ACLs let a
//!   collector's credentials write only its own municipality's topic, and the pipeline takes the
//!   tenant from the topic, never from the payload.
//! - [`memory`]: the in-process bus of `varde demo`, with the same at-least-once contract
//!   (messages stay until committed, a new subscriber resumes from the last commit).
//!
//! [`retry`] is the one backoff policy (exponential, with jitter) that the collector's shipper and
//! the pipeline use when Kafka, the spool or ClickHouse fail.
//!
//! This crate owns the `rdkafka` dependency; no other crate links it.
#![deny(missing_docs)]

use std::future::Future;
use std::time::Duration;

use varde_core::Kommunenummer;

pub mod exposition;
pub mod kafka;
pub mod memory;
pub mod retry;
pub mod status;

/// Errors of the transports.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The Kafka client reported an error.
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A Kafka setting or topic name is not usable.
    #[error("kafka configuration: {0}")]
    Config(String),
    /// A publish was not acknowledged in time.
    #[error("publish to {topic} not acknowledged within {timeout:?}")]
    Timeout {
        /// The topic.
        topic: String,
        /// How long was waited.
        timeout: Duration,
    },
    /// The bus was closed.
    #[error("transport closed")]
    Closed,
}

impl Error {
    /// Whether retrying the same operation later can succeed (broker down, timeout), as opposed
    /// to a configuration error that needs a person.
    pub fn is_retriable(&self) -> bool {
        match self {
            Error::Kafka(e) => !matches!(e, rdkafka::error::KafkaError::ClientCreation(_)),
            Error::Timeout { .. } => true,
            Error::Config(_) | Error::Closed => false,
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Resolves on SIGINT (Ctrl-C) or SIGTERM: the signals that ask Varde's processes to finish
/// what they hold and stop.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

/// The topic that carries a tenant's envelopes: `<prefix>events.<kommunenummer>`.
pub fn events_topic(prefix: &str, tenant: Kommunenummer) -> String {
    format!("{prefix}events.{tenant}")
}

/// The tenant an events topic belongs to, from its name (see [`events_topic`]); `None` for a
/// topic that is not an events topic of a current municipality.
pub fn tenant_of_topic(topic: &str) -> Option<Kommunenummer> {
    let (_, last) = topic.rsplit_once("events.")?;
    Kommunenummer::parse(last).ok()
}

/// The topic a municipality's third-party shipper writes JSON lines to:
/// `<prefix>jsonl.<kommunenummer>` (see `docs/wire-format.md`).
pub fn jsonl_topic(prefix: &str, tenant: Kommunenummer) -> String {
    format!("{prefix}jsonl.{tenant}")
}

/// The tenant a JSON-lines topic belongs to, from its name (see [`jsonl_topic`]); `None` for
/// any other topic.
pub fn tenant_of_jsonl_topic(topic: &str) -> Option<Kommunenummer> {
    let (head, last) = topic.rsplit_once('.')?;
    if !(head == "jsonl" || head.ends_with(".jsonl")) {
        return None;
    }
    Kommunenummer::parse(last).ok()
}

/// One message read from a transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Topic it was read from.
    pub topic: String,
    /// Partition within the topic.
    pub partition: i32,
    /// Offset within the partition.
    pub offset: i64,
    /// The payload (an envelope, or JSON lines).
    pub payload: Vec<u8>,
    /// When the broker (or the producer) stamped the message, ms since the epoch; `None` when
    /// the transport has no timestamp for it.
    pub timestamp_ms: Option<i64>,
}

/// Where a consumer stands on one partition it is assigned (see
/// [`kafka::KafkaLagProbe::partitions`]). Offsets are Kafka's: the offset of the next message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The consumer's own position: the next offset it will hand out (`None` before it has
    /// fetched from the partition).
    pub position: Option<i64>,
    /// The group's committed offset (`None` when nothing was committed yet).
    pub committed: Option<i64>,
    /// The broker's low watermark (first offset still held), `None` when it did not answer.
    pub low_watermark: Option<i64>,
    /// The broker's high watermark (offset of the next message produced), `None` when it did
    /// not answer.
    pub high_watermark: Option<i64>,
}

impl PartitionLag {
    /// Messages the group has not committed yet: high watermark − committed offset (the low
    /// watermark standing in for the commit when there is none, as `auto.offset.reset =
    /// earliest` starts there); `None` without a high watermark. Never negative.
    pub fn committed_lag(&self) -> Option<i64> {
        let high = self.high_watermark?;
        let from = self.committed.or(self.low_watermark)?;
        Some((high - from).max(0))
    }
}

/// Sends payloads; a send completes only when the transport has durably accepted it
/// (for Kafka: acknowledged by all in-sync replicas).
pub trait Publisher: Send + Sync {
    /// Publishes `payload` to `topic`, keyed by `key` (same key, same partition, same order).
    fn publish(
        &self,
        topic: &str,
        key: &[u8],
        payload: &[u8],
    ) -> impl Future<Output = Result<()>> + Send;
}

/// Receives payloads in a consumer group, with explicit commits.
pub trait Subscriber: Send {
    /// Waits up to `wait` for messages and returns at most `max` of them (possibly none).
    fn poll_batch(
        &mut self,
        max: usize,
        wait: Duration,
    ) -> impl Future<Output = Result<Vec<Message>>> + Send;

    /// Marks every message up to and including these as processed, so that a restart resumes
    /// after them. Call only once their effects are durable.
    fn commit(&mut self, messages: &[Message]) -> Result<()>;
}

/// The offset to commit per (topic, partition) for a set of processed messages: one past the
/// highest offset seen.
pub fn next_offsets(messages: &[Message]) -> Vec<(String, i32, i64)> {
    let mut out: Vec<(String, i32, i64)> = Vec::new();
    for m in messages {
        match out
            .iter_mut()
            .find(|(t, p, _)| *t == m.topic && *p == m.partition)
        {
            Some(entry) => entry.2 = entry.2.max(m.offset + 1),
            None => out.push((m.topic.clone(), m.partition, m.offset + 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_carry_the_tenant() {
        let oslo = Kommunenummer::parse("0301").expect("Oslo");
        let t = events_topic("varde.", oslo);
        assert_eq!(t, "varde.events.0301");
        assert_eq!(tenant_of_topic(&t), Some(oslo));
        assert_eq!(
            tenant_of_topic("test-42.varde.events.4601").map(|k| k.to_string()),
            Some("4601".into())
        );
        assert_eq!(tenant_of_topic("varde.events.9999"), None);
        assert_eq!(tenant_of_topic("varde.jsonl"), None);
        let oslo = Kommunenummer::parse("0301").expect("Oslo");
        assert_eq!(
            tenant_of_jsonl_topic(&jsonl_topic("varde.", oslo)),
            Some(oslo)
        );
        assert_eq!(tenant_of_jsonl_topic(&jsonl_topic("", oslo)), Some(oslo));
        assert_eq!(tenant_of_jsonl_topic("varde.events.0301"), None);
        assert_eq!(tenant_of_jsonl_topic("varde.notjsonl.0301"), None);
        assert_eq!(tenant_of_topic("varde.jsonl.0301"), None);
    }

    #[test]
    fn next_offsets_are_one_past_the_highest() {
        let m = |t: &str, p, o| Message {
            topic: t.into(),
            partition: p,
            offset: o,
            payload: vec![],
            timestamp_ms: None,
        };
        let got = next_offsets(&[m("a", 0, 5), m("a", 0, 3), m("a", 1, 0), m("b", 0, 9)]);
        assert_eq!(
            got,
            vec![("a".into(), 0, 6), ("a".into(), 1, 1), ("b".into(), 0, 10)]
        );
    }
}
