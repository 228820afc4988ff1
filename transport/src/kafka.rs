//! Kafka transport, on `rdkafka` (bundled librdkafka 2.12).
//!
//! Settings chosen for Varde's delivery contract (DESIGN.md, "Delivery semantics"):
//! - producer: `enable.idempotence=true`, `acks=all`, no Kafka-level compression by default
//!   (envelopes are already zstd frames; see [`KafkaSettings::compression`]);
//! - consumer: `enable.auto.commit=false` and `auto.offset.reset=earliest`; offsets are
//!   committed by [`Subscriber::commit`] once the pipeline has stored the rows.
//!
//! Anything else librdkafka accepts goes in `properties`, and wins over Varde's defaults.
//! librdkafka is built with OpenSSL (the `ssl` feature), so production settings work as they
//! are:
//!
//! - TLS: `security.protocol = "ssl"`, `ssl.ca.location` (the CERT's CA), and for mutual TLS
//!   `ssl.certificate.location` / `ssl.key.location`;
//! - SASL/SCRAM over TLS: `security.protocol = "sasl_ssl"`, `sasl.mechanism = "SCRAM-SHA-512"`,
//!   `sasl.username`, `sasl.password`.
//!
//! Kafka-level compression of the producer is [`KafkaSettings::compression`] (default `none`:
//! envelopes are zstd frames already; `lz4` or `zstd` help JSON-lines producers).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;
use serde::{Deserialize, Serialize};

use crate::{Error, Message, PartitionLag, Publisher, Result, Subscriber, next_offsets};

/// Connection settings shared by collectors and the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Prefix of every topic name Varde uses; the events topic of a tenant is
    /// `<prefix>events.<kommunenummer>`.
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// Producer compression: `none` (default), `gzip`, `snappy`, `lz4` or `zstd`.
    #[serde(default)]
    pub compression: Compression,
    /// Extra librdkafka properties (TLS, SASL, tuning). They override Varde's defaults.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Kafka-level compression of produced message sets (librdkafka's `compression.type`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    /// No compression (envelopes are compressed already).
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// librdkafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

fn default_prefix() -> String {
    "varde.".to_owned()
}

impl KafkaSettings {
    /// Settings for `brokers` with the default prefix and no extra properties.
    pub fn new(brokers: impl Into<String>) -> Self {
        KafkaSettings {
            brokers: brokers.into(),
            topic_prefix: default_prefix(),
            compression: Compression::None,
            properties: BTreeMap::new(),
        }
    }

    fn client_config(&self, defaults: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers);
        for (k, v) in defaults {
            config.set(*k, *v);
        }
        for (k, v) in &self.properties {
            config.set(k, v);
        }
        config
    }
}

/// Publishes with an idempotent, `acks=all` producer.
pub struct KafkaPublisher {
    producer: FutureProducer,
    timeout: Duration,
}

impl KafkaPublisher {
    /// Connects a producer. `client_id` names it in broker logs (use the collector id).
    /// `timeout` bounds how long one publish may wait for acknowledgement, retries included.
    pub fn new(settings: &KafkaSettings, client_id: &str, timeout: Duration) -> Result<Self> {
        let timeout_ms = timeout.as_millis().max(1).to_string();
        let producer = settings
            .client_config(&[
                ("client.id", client_id),
                ("enable.idempotence", "true"),
                ("acks", "all"),
                ("compression.type", settings.compression.as_str()),
                ("linger.ms", "5"),
                ("message.timeout.ms", &timeout_ms),
            ])
            .create()?;
        Ok(KafkaPublisher { producer, timeout })
    }
}

impl Publisher for KafkaPublisher {
    async fn publish(&self, topic: &str, key: &[u8], payload: &[u8]) -> Result<()> {
        let record = FutureRecord::to(topic).key(key).payload(payload);
        match self.producer.send(record, self.timeout).await {
            Ok(_) => Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut), _)) => {
                Err(Error::Timeout {
                    topic: topic.to_owned(),
                    timeout: self.timeout,
                })
            }
            Err((e, _)) => Err(Error::Kafka(e)),
        }
    }
}

/// Consumes in a consumer group with manual commits.
pub struct KafkaSubscriber {
    consumer: Arc<StreamConsumer>,
}

/// One partition's committed offset in a consumer group (`None`: nothing committed yet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// The next offset the group will read, as committed.
    pub offset: Option<i64>,
}

/// Every partition of `topics` (from the broker's metadata), in topic and partition order. A
/// topic that does not exist or has no partitions is an error: static assignment cannot wait for
/// one to appear.
fn all_partitions(
    consumer: &StreamConsumer,
    topics: &[String],
    timeout: Duration,
) -> Result<TopicPartitionList> {
    let mut tpl = TopicPartitionList::new();
    for topic in topics {
        let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
        let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
            return Err(Error::Config(format!(
                "topic {topic} not in the broker's metadata"
            )));
        };
        if let Some(e) = t.error() {
            return Err(Error::Config(format!("topic {topic}: {e:?}")));
        }
        if t.partitions().is_empty() {
            return Err(Error::Config(format!("topic {topic} has no partitions")));
        }
        let mut ids: Vec<i32> = t.partitions().iter().map(|p| p.id()).collect();
        ids.sort_unstable();
        for id in ids {
            tpl.add_partition(topic, id);
        }
    }
    Ok(tpl)
}

fn consumer_config(settings: &KafkaSettings, group_id: &str) -> Result<StreamConsumer> {
    Ok(settings
        .client_config(&[
            ("group.id", group_id),
            // A broker that holds fetches for the full wait time adds this much latency per
            // fetch; 5 ms keeps end-to-end latency low without busy polling.
            ("fetch.wait.max.ms", "5"),
            ("enable.auto.commit", "false"),
            ("auto.offset.reset", "earliest"),
            ("session.timeout.ms", "10000"),
            ("heartbeat.interval.ms", "1000"),
        ])
        .create()?)
}

/// The committed offsets of group `group_id` on every partition of `topics`, read through the
/// Kafka protocol (OffsetFetch) without joining the group. **Blocking** (bounded by `timeout`
/// per request).
pub fn committed_offsets(
    settings: &KafkaSettings,
    group_id: &str,
    topics: &[String],
    timeout: Duration,
) -> Result<Vec<Committed>> {
    let consumer = consumer_config(settings, group_id)?;
    let tpl = all_partitions(&consumer, topics, timeout)?;
    let committed = consumer.committed_offsets(tpl, timeout)?;
    Ok(committed
        .elements()
        .iter()
        .map(|e| Committed {
            topic: e.topic().to_owned(),
            partition: e.partition(),
            offset: match e.offset() {
                Offset::Offset(n) if n >= 0 => Some(n),
                _ => None,
            },
        })
        .collect())
}

impl KafkaSubscriber {
    /// Static assignment: takes every partition of `topics` itself, without the group
    /// coordinator's rebalancing, and starts each at the offset group `group_id` committed
    /// there (read back through the protocol), or at the beginning when nothing is committed.
    /// Commits go to the same group, so a restarted instance resumes exactly where the last one
    /// committed. For deployments that give each instance a fixed set of municipalities, and
    /// for brokers whose group coordinator does not recover a killed member. Partitions added
    /// to a topic later are taken at the next start. **Blocking** while it reads metadata and
    /// offsets (bounded by `timeout` per request).
    pub fn assigned(
        settings: &KafkaSettings,
        group_id: &str,
        topics: &[String],
        timeout: Duration,
    ) -> Result<Self> {
        if topics.is_empty() {
            return Err(Error::Config("no topics to consume".into()));
        }
        let consumer = consumer_config(settings, group_id)?;
        let all = all_partitions(&consumer, topics, timeout)?;
        let committed = consumer.committed_offsets(all, timeout)?;
        let mut start = TopicPartitionList::new();
        for e in committed.elements() {
            let offset = match e.offset() {
                Offset::Offset(n) if n >= 0 => Offset::Offset(n),
                _ => Offset::Beginning,
            };
            tracing::info!(topic = e.topic(), partition = e.partition(), start = ?offset,
                "partition assigned statically");
            start.add_partition_offset(e.topic(), e.partition(), offset)?;
        }
        consumer.assign(&start)?;
        Ok(KafkaSubscriber {
            consumer: Arc::new(consumer),
        })
    }

    /// Joins consumer group `group_id` and subscribes to `topics`.
    pub fn new(settings: &KafkaSettings, group_id: &str, topics: &[String]) -> Result<Self> {
        if topics.is_empty() {
            return Err(Error::Config("no topics to subscribe to".into()));
        }
        let consumer = consumer_config(settings, group_id)?;
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        consumer.subscribe(&names)?;
        Ok(KafkaSubscriber {
            consumer: Arc::new(consumer),
        })
    }

    /// A handle that reports this consumer's position, committed offsets and the partitions'
    /// watermarks (for lag metrics), usable from another thread while the subscriber polls.
    pub fn lag_probe(&self) -> KafkaLagProbe {
        KafkaLagProbe {
            consumer: self.consumer.clone(),
        }
    }
}

/// Reads where a [`KafkaSubscriber`] stands on each partition assigned to it.
#[derive(Clone)]
pub struct KafkaLagProbe {
    consumer: Arc<StreamConsumer>,
}

impl KafkaLagProbe {
    /// One entry per partition currently assigned to the consumer, sorted by topic and
    /// partition. **Blocking**: asks the broker for the group's committed offsets (one request)
    /// and for each partition's watermarks (one request per partition, each bounded by
    /// `timeout`); call it from a blocking thread (`tokio::task::spawn_blocking`). The
    /// consumer's own position needs no request. A watermark the broker did not answer for is
    /// `None`; an error is returned only when the assignment itself cannot be read.
    ///
    /// Note: some brokers (tansu 0.6, the development broker) answer the "latest offset"
    /// request wrongly, so the high watermark may be off there; the position is the consumer's
    /// own count.
    pub fn partitions(&self, timeout: Duration) -> Result<Vec<PartitionLag>> {
        let position = self.consumer.position()?;
        let committed = match self.consumer.committed(timeout) {
            Ok(tpl) => Some(tpl),
            Err(e) => {
                tracing::debug!(error = %e, "lag: committed offsets unavailable");
                None
            }
        };
        let offset = |o: Offset| match o {
            Offset::Offset(n) if n >= 0 => Some(n),
            _ => None,
        };
        let mut out: Vec<PartitionLag> = position
            .elements()
            .iter()
            .map(|e| {
                let committed = committed
                    .as_ref()
                    .and_then(|c| c.find_partition(e.topic(), e.partition()))
                    .and_then(|c| offset(c.offset()));
                let (low, high) = match self.consumer.fetch_watermarks(
                    e.topic(),
                    e.partition(),
                    timeout,
                ) {
                    Ok((low, high)) => (
                        Some(low).filter(|l| *l >= 0),
                        Some(high).filter(|h| *h >= 0),
                    ),
                    Err(err) => {
                        tracing::debug!(topic = e.topic(), partition = e.partition(), error = %err,
                                "lag: watermarks unavailable");
                        (None, None)
                    }
                };
                PartitionLag {
                    topic: e.topic().to_owned(),
                    partition: e.partition(),
                    position: offset(e.offset()),
                    committed,
                    low_watermark: low,
                    high_watermark: high,
                }
            })
            .collect();
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }
}

impl Subscriber for KafkaSubscriber {
    async fn poll_batch(&mut self, max: usize, wait: Duration) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        let mut limit = wait;
        while out.len() < max {
            match tokio::time::timeout(limit, self.consumer.recv()).await {
                Err(_) => break,
                Ok(Err(e)) => {
                    if out.is_empty() {
                        return Err(Error::Kafka(e));
                    }
                    break;
                }
                Ok(Ok(m)) => {
                    out.push(Message {
                        topic: m.topic().to_owned(),
                        partition: m.partition(),
                        offset: m.offset(),
                        payload: m.payload().unwrap_or_default().to_vec(),
                        timestamp_ms: m.timestamp().to_millis(),
                    });
                    // Once something arrived, take only what is already buffered.
                    limit = Duration::from_millis(2);
                }
            }
        }
        Ok(out)
    }

    fn commit(&mut self, messages: &[Message]) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut tpl = TopicPartitionList::new();
        for (topic, partition, next) in next_offsets(messages) {
            tpl.add_partition_offset(&topic, partition, Offset::Offset(next))?;
        }
        self.consumer.commit(&tpl, CommitMode::Sync)?;
        Ok(())
    }
}

/// Creates topics that do not exist yet (existing ones are left as they are).
pub async fn ensure_topics(settings: &KafkaSettings, topics: &[(String, i32)]) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = settings.client_config(&[]).create()?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1)))
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &options).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(Error::Config(format!("creating topic {name}: {code}")));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// librdkafka is built with OpenSSL: TLS and SASL/SCRAM settings are accepted (a build
    /// without it refuses them when the client is created).
    #[test]
    fn tls_and_sasl_scram_properties_are_accepted() {
        for (protocol, extra) in [
            ("ssl", vec![]),
            (
                "sasl_ssl",
                vec![
                    ("sasl.mechanism", "SCRAM-SHA-512"),
                    ("sasl.username", "k0301"),
                    ("sasl.password", "secret"),
                ],
            ),
        ] {
            let mut settings = KafkaSettings::new("127.0.0.1:9");
            settings.compression = Compression::Lz4;
            settings
                .properties
                .insert("security.protocol".into(), protocol.into());
            for (k, v) in extra {
                settings.properties.insert(k.into(), v.into());
            }
            let made = KafkaPublisher::new(&settings, "k0301-test", Duration::from_secs(1));
            assert!(made.is_ok(), "{protocol}: {:?}", made.err());
        }
    }

    #[test]
    fn every_compression_is_accepted_by_librdkafka() {
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut settings = KafkaSettings::new("127.0.0.1:9");
            settings.compression = c;
            let made = KafkaPublisher::new(&settings, "k0301-test", Duration::from_secs(1));
            assert!(made.is_ok(), "{}: {:?}", c.as_str(), made.err());
        }
    }
}
