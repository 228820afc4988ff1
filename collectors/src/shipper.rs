//! From events to acknowledged envelopes: batching per source kind, batch sequence numbers, and
//! publishing with retries.
//!
//! Sources send [`Event`]s into a bounded channel; one [`Shipper`] task turns them into
//! envelopes and publishes them. When the broker is slow or away the channel fills and sources
//! stop reading (TCP senders are pushed back), so nothing is dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, warn};
use varde_core::{BatchBuilder, CollectorId, Envelope, Event, Kommunenummer, SourceKind};
use varde_transport::{Publisher, events_topic};

/// Counters of one collector, shared by its tasks.
#[derive(Debug, Default)]
pub struct Stats {
    /// Events received from sources.
    pub events_in: AtomicU64,
    /// Events that could not join a batch (a parser produced a value its column cannot hold).
    pub events_rejected: AtomicU64,
    /// Lines kept raw because they were not valid syslog.
    pub parse_errors: AtomicU64,
    /// Events in acknowledged batches.
    pub events_out: AtomicU64,
    /// Acknowledged batches.
    pub batches_out: AtomicU64,
    /// Bytes of acknowledged envelopes.
    pub bytes_out: AtomicU64,
    /// Failed publish attempts (each was retried).
    pub publish_errors: AtomicU64,
}

impl Stats {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A counter's current value.
    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}

/// Hands out batch sequence numbers that never repeat for a collector, across restarts.
///
/// A sequence number is part of every event id, so a repeat would make two different events
/// look like one replayed event. Each number is `max(last + 1, now in µs)`, and the last number
/// is written to `<state_dir>/batch_seq`: a restart continues above it, and even with the state
/// lost the clock keeps numbers above any issued before.
#[derive(Debug)]
pub struct SequenceSource {
    last: u64,
    file: Option<PathBuf>,
}

impl SequenceSource {
    /// Loads the last issued number from `state_dir` (created if missing).
    pub fn open(state_dir: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(state_dir)?;
        let file = state_dir.join("batch_seq");
        let last = match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().parse().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(SequenceSource {
            last,
            file: Some(file),
        })
    }

    /// A source that keeps nothing on disk (for `varde demo` and tests).
    pub fn in_memory() -> Self {
        SequenceSource {
            last: 0,
            file: None,
        }
    }

    /// Issues the next number and records it.
    pub fn issue(&mut self) -> std::io::Result<u64> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
        self.last = (self.last + 1).max(now);
        if let Some(file) = &self.file {
            let tmp = file.with_extension("tmp");
            std::fs::write(&tmp, self.last.to_string())?;
            std::fs::rename(&tmp, file)?;
        }
        Ok(self.last)
    }
}

/// What the shipper needs to know about its collector.
#[derive(Debug, Clone)]
pub struct ShipperSettings {
    /// The collector's id.
    pub collector_id: CollectorId,
    /// Its tenant.
    pub tenant: Kommunenummer,
    /// Topic prefix (see [`events_topic`]).
    pub topic_prefix: String,
    /// Rows per batch.
    pub max_rows: usize,
    /// Longest time a row waits in an open batch.
    pub max_delay: Duration,
}

/// A message from sources to the shipper.
#[derive(Debug)]
pub enum Input {
    /// An event of a kind.
    Event(SourceKind, Event),
    /// Send everything buffered now and acknowledge on the channel when it is acknowledged.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// Batches events and publishes envelopes.
pub struct Shipper<P: Publisher> {
    publisher: P,
    settings: ShipperSettings,
    sequence: SequenceSource,
    stats: Arc<Stats>,
    open: BTreeMap<SourceKind, (BatchBuilder, Instant)>,
    topic: String,
}

impl<P: Publisher> Shipper<P> {
    /// A shipper publishing through `publisher`.
    pub fn new(
        publisher: P,
        settings: ShipperSettings,
        sequence: SequenceSource,
        stats: Arc<Stats>,
    ) -> Self {
        let topic = events_topic(&settings.topic_prefix, settings.tenant);
        Shipper {
            publisher,
            settings,
            sequence,
            stats,
            open: BTreeMap::new(),
            topic,
        }
    }

    /// Runs until every sender of `inputs` is gone, then sends what is left.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let tick = (self.settings.max_delay / 4).max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(Input::Event(kind, event)) => self.push(kind, &event).await,
                    Some(Input::Flush(done)) => {
                        self.flush_all().await;
                        let _ = done.send(());
                    }
                    None => break,
                },
                _ = ticker.tick() => self.flush_due().await,
            }
        }
        self.flush_all().await;
    }

    /// Appends one event, sending its batch when full.
    pub async fn push(&mut self, kind: SourceKind, event: &Event) {
        Stats::add(&self.stats.events_in, 1);
        let s = &self.settings;
        let (builder, started) = self.open.entry(kind).or_insert_with(|| {
            (
                BatchBuilder::new(kind, s.tenant, s.collector_id.clone(), s.max_rows),
                Instant::now(),
            )
        });
        if builder.is_empty() {
            *started = Instant::now();
        }
        if let Err(e) = builder.push(event) {
            Stats::add(&self.stats.events_rejected, 1);
            warn!(error = %e, %kind, "event rejected by the batch builder");
            return;
        }
        if builder.len() >= self.settings.max_rows {
            self.flush(kind).await;
        }
    }

    async fn flush_due(&mut self) {
        let due: Vec<SourceKind> = self
            .open
            .iter()
            .filter(|(_, (b, started))| {
                !b.is_empty() && started.elapsed() >= self.settings.max_delay
            })
            .map(|(k, _)| *k)
            .collect();
        for kind in due {
            self.flush(kind).await;
        }
    }

    /// Sends every open batch.
    pub async fn flush_all(&mut self) {
        let kinds: Vec<SourceKind> = self.open.keys().copied().collect();
        for kind in kinds {
            self.flush(kind).await;
        }
    }

    /// Sends the open batch of `kind`, retrying until the broker acknowledges it.
    async fn flush(&mut self, kind: SourceKind) {
        let Some((builder, _)) = self.open.get_mut(&kind) else {
            return;
        };
        if builder.is_empty() {
            return;
        }
        let rows = builder.len() as u64;
        let batch = match builder.finish() {
            Ok(b) => b,
            Err(e) => {
                // Cannot happen for rows the builder accepted; count rather than crash.
                Stats::add(&self.stats.events_rejected, rows);
                warn!(error = %e, %kind, rows, "batch could not be finished");
                return;
            }
        };
        let seq = loop {
            match self.sequence.issue() {
                Ok(seq) => break seq,
                Err(e) => {
                    warn!(error = %e, "cannot record the batch sequence; retrying in 1s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let s = &self.settings;
        let bytes = match Envelope::new(kind, s.tenant, s.collector_id.clone(), seq, batch)
            .and_then(|e| e.encode())
        {
            Ok(bytes) => bytes,
            Err(e) => {
                Stats::add(&self.stats.events_rejected, rows);
                warn!(error = %e, %kind, rows, "envelope could not be encoded");
                return;
            }
        };
        let key = s.collector_id.as_str().as_bytes().to_vec();
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.publisher.publish(&self.topic, &key, &bytes).await {
                Ok(()) => break,
                Err(e) => {
                    Stats::add(&self.stats.publish_errors, 1);
                    warn!(error = %e, topic = %self.topic, seq, retry_in = ?backoff, "publish failed");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        Stats::add(&self.stats.events_out, rows);
        Stats::add(&self.stats.batches_out, 1);
        Stats::add(&self.stats.bytes_out, bytes.len() as u64);
        debug!(%kind, rows, seq, bytes = bytes.len(), "batch acknowledged");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use varde_transport::Subscriber;
    use varde_transport::memory::MemoryBus;

    #[test]
    fn sequences_increase_across_restarts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = SequenceSource::open(dir.path()).expect("open");
        let a = s.issue().expect("issue");
        let b = s.issue().expect("issue");
        assert!(b > a);
        drop(s);
        let mut s = SequenceSource::open(dir.path()).expect("reopen");
        assert!(s.issue().expect("issue") > b);
    }

    #[tokio::test]
    async fn batches_close_at_max_rows_and_on_flush() {
        let bus = MemoryBus::new();
        let tenant = Kommunenummer::parse("0301").expect("Oslo");
        let settings = ShipperSettings {
            collector_id: CollectorId::new("k0301-t").expect("id"),
            tenant,
            topic_prefix: "varde.".into(),
            max_rows: 3,
            max_delay: Duration::from_secs(3600),
        };
        let stats = Arc::new(Stats::default());
        let mut shipper = Shipper::new(
            bus.clone(),
            settings,
            SequenceSource::in_memory(),
            stats.clone(),
        );
        for _ in 0..7 {
            shipper.push(SourceKind::Syslog, &Event::default()).await;
        }
        assert_eq!(bus.len("varde.events.0301"), 2, "two full batches");
        shipper.flush_all().await;
        assert_eq!(bus.len("varde.events.0301"), 3);
        assert_eq!(Stats::get(&stats.events_out), 7);

        let mut sub = bus.subscribe("g", &["varde.events.0301".to_owned()]);
        let msgs = sub
            .poll_batch(10, Duration::from_millis(10))
            .await
            .expect("poll");
        let rows: Vec<u32> = msgs
            .iter()
            .map(|m| {
                Envelope::decode(&m.payload)
                    .expect("valid")
                    .header
                    .row_count
            })
            .collect();
        assert_eq!(rows, vec![3, 3, 1]);
    }
}
