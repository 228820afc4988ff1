//! From events to acknowledged envelopes: batching per source kind, batch sequence numbers,
//! the spool, and the sender that publishes from it.
//!
//! Sources send [`Input`]s into a bounded channel; one [`Shipper`] task turns them into
//! envelopes and hands each closed batch to a [`Sink`]:
//!
//! - in the collector, [`SpoolSink`]: the envelope is written to the disk spool
//!   ([`crate::spool`]) and [`send_from_spool`] publishes it from there, deleting it only once
//!   Kafka acknowledged it. When the spool is full (policy `block`) the sink waits, the channel
//!   fills and sources stop reading: TCP senders are pushed back.
//! - in `varde demo` and unit tests, any [`Publisher`] directly (retrying until acknowledged).
//!
//! A batch's sequence number is issued once, when the batch is closed, and travels inside the
//! envelope, so a batch sent again after a restart keeps its event ids.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tracing::{debug, error, info, warn};
use varde_core::{
    BatchBuilder, CollectorId, Envelope, EnvelopeHeader, EnvelopeWriter, Event, Kommunenummer, Row,
    SourceKind,
};
use varde_transport::retry::Delays;
use varde_transport::{Publisher, events_topic};

use crate::spool::{Appended, Checkpoint, SpoolError, SpoolHandle};

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
    /// Events written to the spool.
    pub events_spooled: AtomicU64,
    /// Events in acknowledged batches, per source kind (indexed by [`SourceKind::code`]).
    pub events_out_by_kind: [AtomicU64; 16],
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
    /// The collector's key: every envelope is signed with it.
    pub key: std::sync::Arc<varde_core::CollectorKey>,
}

/// Most events one [`Input::Rows`] carries. The channel to the shipper is sized in messages
/// ([`input_channel_capacity`]), so this bounds the events waiting in it.
pub const EVENTS_PER_INPUT: usize = 64;

/// Messages the channel from the sources to the shipper holds for batches of `max_rows`:
/// room for about one batch of events when the messages are full ([`EVENTS_PER_INPUT`]),
/// enough to keep the batcher busy (it is woken once per message) and small enough that a
/// full spool (policy `block`) pushes back on the sources quickly and that the events waiting
/// in it stay a small part of the collector's memory.
pub fn input_channel_capacity(max_rows: usize) -> usize {
    (max_rows / EVENTS_PER_INPUT).max(16)
}

/// One event of a [`RowBuf`]: its kind, the row and the position after its line, if any.
type RowSlot = (SourceKind, Row, Option<Checkpoint>);

/// Memory a [`RowPool`] keeps in rows for reuse; bufs given back beyond it are freed.
const POOL_KEEPS_BYTES: usize = 4 << 20;

/// A row's buffers above this size are freed when it goes back to its pool (a row that once
/// held a very long line should not keep that memory).
const ROW_KEEPS_BYTES: usize = 4096;

/// Where a source's [`RowBuf`]s come from and go back to once the shipper appended them: the
/// rows, and the memory of their text, are written again for the next read instead of being
/// made afresh for every line and freed on the shipper's thread. Keeps as many bufs as the
/// reads in flight need, up to [`POOL_KEEPS_BYTES`] of rows.
#[derive(Debug, Default)]
pub struct RowPool {
    free: std::sync::Mutex<Kept>,
}

/// The bufs a [`RowPool`] holds, and the bytes of their rows.
#[derive(Debug, Default)]
struct Kept {
    bufs: Vec<(Vec<RowSlot>, usize)>,
    bytes: usize,
}

impl RowPool {
    fn kept_bufs(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.free
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An empty buf, reusing a kept one when there is one.
    pub fn take(self: &Arc<Self>) -> RowBuf {
        let rows = {
            let mut kept = self.kept_bufs();
            match kept.bufs.pop() {
                Some((rows, bytes)) => {
                    kept.bytes -= bytes;
                    rows
                }
                None => Vec::new(),
            }
        };
        RowBuf {
            rows,
            len: 0,
            pool: self.clone(),
        }
    }

    /// Bufs kept now, and the bytes of their rows.
    pub fn kept(&self) -> (usize, usize) {
        let kept = self.kept_bufs();
        (kept.bufs.len(), kept.bytes)
    }
}

/// Events of one read in row form, each with its kind and position (see [`Input::Rows`]);
/// dropped, its rows go back to the [`RowPool`] they came from.
#[derive(Debug)]
pub struct RowBuf {
    rows: Vec<RowSlot>,
    /// Rows in use; those after are kept for their buffers.
    len: usize,
    pool: Arc<RowPool>,
}

impl RowBuf {
    /// Events in the buf.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buf holds no event.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The row the next event is written into (emptied by the writer, e.g.
    /// [`crate::edge::edge_row`]); [`RowBuf::commit`] adds it.
    pub fn next_row(&mut self) -> &mut Row {
        if self.len == self.rows.len() {
            self.rows.push((SourceKind::Syslog, Row::default(), None));
        }
        let at = self.len.min(self.rows.len() - 1);
        &mut self.rows[at].1
    }

    /// Adds the row last given by [`RowBuf::next_row`] as an event of `kind`, with the
    /// position after its line.
    pub fn commit(&mut self, kind: SourceKind, checkpoint: Option<Checkpoint>) {
        if let Some(slot) = self.rows.get_mut(self.len) {
            slot.0 = kind;
            slot.2 = checkpoint;
            self.len += 1;
        }
    }

    /// The events, in order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut RowSlot> {
        self.rows.iter_mut().take(self.len)
    }
}

impl Drop for RowBuf {
    fn drop(&mut self) {
        let mut rows = std::mem::take(&mut self.rows);
        let mut bytes = rows.capacity() * std::mem::size_of::<RowSlot>();
        for (_, row, checkpoint) in &mut rows {
            row.shrink(ROW_KEEPS_BYTES);
            *checkpoint = None;
            bytes += row.heap_bytes();
        }
        let mut kept = self.pool.kept_bufs();
        if kept.bytes + bytes <= POOL_KEEPS_BYTES {
            kept.bytes += bytes;
            kept.bufs.push((rows, bytes));
        }
    }
}

/// A message from sources to the shipper.
#[derive(Debug)]
pub enum Input {
    /// An event of a kind.
    Event(SourceKind, Event),
    /// An event from a file source, with the file position after it: the position is stored
    /// in the spool with the batch, so a restart resumes after the last spooled line.
    Tracked(SourceKind, Event, Checkpoint),
    /// Events of one read (a TCP read, a burst of datagrams, a run of a file's lines), in
    /// order, each with its position when it has one: one message for up to
    /// [`EVENTS_PER_INPUT`] events, so the batcher is woken once for them, not once per line.
    Rows(RowBuf),
    /// Send everything buffered now and acknowledge on the channel when it is acknowledged.
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// An event on its way into a batch, owned or in row form.
#[derive(Clone, Copy)]
enum Item<'a> {
    Event(&'a Event),
    Row(&'a Row),
}

/// A closed batch, encoded, ready for its sink.
#[derive(Debug)]
pub struct ClosedBatch {
    /// Source kind.
    pub kind: SourceKind,
    /// Batch sequence number (inside the envelope too).
    pub seq: u64,
    /// Events in it.
    pub rows: u32,
    /// The encoded envelope.
    pub envelope: Vec<u8>,
    /// Positions of the file sources whose events it holds.
    pub checkpoints: Vec<Checkpoint>,
}

/// Where the [`Shipper`] hands closed batches.
pub trait Sink: Send {
    /// Takes a batch; returns once it is safe (acknowledged, or in the spool). Counts what it
    /// did in `stats`.
    fn deliver(&mut self, batch: ClosedBatch, stats: &Stats) -> impl Future<Output = ()> + Send;
}

/// A sink that publishes directly, retrying until acknowledged (no spool: `varde demo`, tests).
pub struct DirectSink<P: Publisher> {
    publisher: P,
    topic: String,
    key: Vec<u8>,
}

impl<P: Publisher> Sink for DirectSink<P> {
    async fn deliver(&mut self, batch: ClosedBatch, stats: &Stats) {
        publish_until_acked(
            &self.publisher,
            &self.topic,
            &self.key,
            &batch.envelope,
            stats,
            batch.seq,
        )
        .await;
        count_out(
            stats,
            batch.kind,
            u64::from(batch.rows),
            batch.envelope.len(),
        );
    }
}

/// Publishes one envelope, retrying with backoff until the broker acknowledges it.
async fn publish_until_acked<P: Publisher>(
    publisher: &P,
    topic: &str,
    key: &[u8],
    bytes: &[u8],
    stats: &Stats,
    seq: u64,
) {
    let mut delays = Delays::new();
    loop {
        match publisher.publish(topic, key, bytes).await {
            Ok(()) => return,
            Err(e) => {
                Stats::add(&stats.publish_errors, 1);
                let backoff = delays.next_delay();
                warn!(error = %e, %topic, seq, retry_in = ?backoff, "publish failed");
                tokio::time::sleep(backoff).await;
            }
        }
    }
}

/// The collector's sink: the disk spool.
#[derive(Debug, Clone)]
pub struct SpoolSink {
    spool: SpoolHandle,
}

impl SpoolSink {
    /// A sink writing to `spool`.
    pub fn new(spool: SpoolHandle) -> Self {
        SpoolSink { spool }
    }
}

impl Sink for SpoolSink {
    async fn deliver(&mut self, batch: ClosedBatch, stats: &Stats) {
        let envelope = Arc::new(batch.envelope);
        let checkpoints = Arc::new(batch.checkpoints);
        let mut delays = Delays::new();
        loop {
            match self
                .spool
                .append(envelope.clone(), batch.rows, checkpoints.clone())
                .await
            {
                Ok(Appended::Stored) => {
                    Stats::add(&stats.events_spooled, u64::from(batch.rows));
                    return;
                }
                Ok(Appended::DroppedItself) => {
                    // Handed to the spool, which had to drop it at once (counted there), so
                    // that spooled = acknowledged + dropped + waiting holds.
                    Stats::add(&stats.events_spooled, u64::from(batch.rows));
                    return;
                }
                Err(e @ SpoolError::TooLarge { .. }) => {
                    Stats::add(&stats.events_rejected, u64::from(batch.rows));
                    error!(error = %e, seq = batch.seq, rows = batch.rows, "batch rejected by the spool");
                    return;
                }
                Err(e) => {
                    // A disk error: keep the batch and retry; sources wait meanwhile.
                    let backoff = delays.next_delay();
                    error!(error = %e, retry_in = ?backoff, "cannot write to the spool");
                    tokio::time::sleep(backoff).await;
                }
            }
        }
    }
}

/// One open batch of a kind.
struct OpenBatch {
    builder: BatchBuilder,
    started: Instant,
    /// Per source key: (identity, position after the last line of the key in this batch).
    checkpoints: BTreeMap<Arc<str>, (u64, u64)>,
    /// Per source key: (identity, position where the first line of the key in this batch
    /// began). While this batch is open, no other batch may record a checkpoint past it.
    first_start: BTreeMap<Arc<str>, (u64, u64)>,
}

/// The checkpoint keys of network sources' journals start with this (see
/// [`crate::journal`]).
pub const JOURNAL_PREFIX: &str = "journal:";

/// The per-kind checkpoint key of journal `key`: `<key>#<kind>`.
pub fn kind_key(key: &str, kind: SourceKind) -> String {
    format!("{key}#{}", kind.name())
}

/// Batches events and hands closed batches to its sink.
pub struct Shipper<S: Sink> {
    sink: S,
    settings: ShipperSettings,
    sequence: SequenceSource,
    stats: Arc<Stats>,
    open: BTreeMap<SourceKind, OpenBatch>,
    /// Per source key: the position after the newest line handed to any batch.
    last_after: BTreeMap<Arc<str>, (u64, u64)>,
    /// Encodes every batch, its buffers kept from one batch to the next.
    writer: EnvelopeWriter,
}

impl<P: Publisher> Shipper<DirectSink<P>> {
    /// A shipper publishing directly through `publisher` (no spool: `varde demo`, tests).
    pub fn new(
        publisher: P,
        settings: ShipperSettings,
        sequence: SequenceSource,
        stats: Arc<Stats>,
    ) -> Self {
        let sink = DirectSink {
            publisher,
            topic: events_topic(&settings.topic_prefix, settings.tenant),
            key: settings.collector_id.as_str().as_bytes().to_vec(),
        };
        Shipper::with_sink(sink, settings, sequence, stats)
    }
}

impl<S: Sink> Shipper<S> {
    /// A shipper handing closed batches to `sink`.
    pub fn with_sink(
        sink: S,
        settings: ShipperSettings,
        sequence: SequenceSource,
        stats: Arc<Stats>,
    ) -> Self {
        Shipper {
            sink,
            settings,
            sequence,
            stats,
            open: BTreeMap::new(),
            last_after: BTreeMap::new(),
            writer: EnvelopeWriter::new(),
        }
    }

    /// Runs until every sender of `inputs` is gone, then closes what is left.
    pub async fn run(mut self, mut inputs: mpsc::Receiver<Input>) {
        let tick = (self.settings.max_delay / 4).max(Duration::from_millis(10));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                input = inputs.recv() => match input {
                    Some(Input::Event(kind, event)) => self.push(kind, &event).await,
                    Some(Input::Tracked(kind, event, checkpoint)) => {
                        self.push_tracked(kind, &event, Some(checkpoint)).await;
                    }
                    Some(Input::Rows(mut rows)) => {
                        for (kind, row, checkpoint) in rows.iter_mut() {
                            self.push_item(*kind, Item::Row(row), checkpoint.take()).await;
                        }
                    }
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

    /// Appends one event, closing its batch when full.
    pub async fn push(&mut self, kind: SourceKind, event: &Event) {
        self.push_tracked(kind, event, None).await;
    }

    /// Appends one event and the file position after it.
    pub async fn push_tracked(
        &mut self,
        kind: SourceKind,
        event: &Event,
        checkpoint: Option<Checkpoint>,
    ) {
        self.push_item(kind, Item::Event(event), checkpoint).await;
    }

    async fn push_item(
        &mut self,
        kind: SourceKind,
        item: Item<'_>,
        checkpoint: Option<Checkpoint>,
    ) {
        Stats::add(&self.stats.events_in, 1);
        let s = &self.settings;
        let open = self.open.entry(kind).or_insert_with(|| OpenBatch {
            builder: BatchBuilder::new(kind, s.tenant, s.collector_id.clone(), s.max_rows),
            started: Instant::now(),
            checkpoints: BTreeMap::new(),
            first_start: BTreeMap::new(),
        });
        if open.builder.is_empty() {
            open.started = Instant::now();
        }
        if let Some(c) = checkpoint {
            // Recorded even when the event is rejected below: the line was handled. The key is
            // copied only the first time a batch sees it (this runs for every line).
            let position = (c.file_id, c.offset);
            match open.checkpoints.get_mut(&c.key) {
                Some(p) => *p = position,
                None => {
                    open.first_start.insert(c.key.clone(), (c.file_id, c.start));
                    open.checkpoints.insert(c.key.clone(), position);
                }
            }
            match self.last_after.get_mut(&c.key) {
                Some(p) => *p = position,
                None => {
                    self.last_after.insert(c.key, position);
                }
            }
        }
        let pushed = match item {
            Item::Event(event) => open.builder.push(event),
            Item::Row(row) => open.builder.push_row(row),
        };
        if let Err(e) = pushed {
            Stats::add(&self.stats.events_rejected, 1);
            warn!(error = %e, %kind, "event rejected by the batch builder");
            return;
        }
        if open.builder.len() >= self.settings.max_rows {
            self.flush(kind).await;
        }
    }

    async fn flush_due(&mut self) {
        let due: Vec<SourceKind> = self
            .open
            .iter()
            .filter(|(_, o)| {
                !o.builder.is_empty() && o.started.elapsed() >= self.settings.max_delay
            })
            .map(|(k, _)| *k)
            .collect();
        for kind in due {
            self.flush(kind).await;
        }
    }

    /// Closes every open batch.
    pub async fn flush_all(&mut self) {
        let kinds: Vec<SourceKind> = self.open.keys().copied().collect();
        for kind in kinds {
            self.flush(kind).await;
        }
    }

    /// The checkpoints a batch of `kind` closing now may record: for each source key, the
    /// newest position handed to any batch, held back to where the first line of that key
    /// still waiting in another open batch began. Batches are per kind, so lines of one file
    /// or journal sit in several open batches at once; a checkpoint past a line that is not
    /// yet spooled would skip that line after a crash. Positions never move backwards: all
    /// lines before the result are spooled or in this batch.
    fn safe_checkpoints(
        &self,
        kind: SourceKind,
        own: BTreeMap<Arc<str>, (u64, u64)>,
    ) -> Vec<Checkpoint> {
        let mut out = Vec::with_capacity(own.len());
        for (key, (file_id, own_offset)) in own {
            let newest = match self.last_after.get(&key) {
                Some((id, after)) if *id == file_id => (*after).max(own_offset),
                _ => own_offset,
            };
            let held = self
                .open
                .iter()
                .filter(|(k, o)| **k != kind && !o.builder.is_empty())
                .filter_map(|(_, o)| o.first_start.get(&key))
                .filter(|(id, _)| *id == file_id)
                .map(|(_, start)| *start)
                .min();
            let offset = held.map_or(newest, |h| h.min(newest));
            // Exact per kind for a journal: every line of this kind up to `own_offset` is in
            // this batch or an earlier one. A journal replay skips the lines these say are
            // spooled.
            let per_kind = key
                .starts_with(JOURNAL_PREFIX)
                .then(|| kind_key(&key, kind));
            out.push(Checkpoint {
                key,
                file_id,
                offset,
                start: offset,
            });
            if let Some(key) = per_kind {
                out.push(Checkpoint {
                    key: key.into(),
                    file_id,
                    offset: own_offset,
                    start: own_offset,
                });
            }
        }
        out
    }

    /// Closes the open batch of `kind` and hands it to the sink.
    async fn flush(&mut self, kind: SourceKind) {
        let Some(open) = self.open.get_mut(&kind) else {
            return;
        };
        if open.builder.is_empty() {
            return;
        }
        let rows = open.builder.len() as u64;
        let own = std::mem::take(&mut open.checkpoints);
        open.first_start.clear();
        let finished = open.builder.finish();
        let checkpoints = self.safe_checkpoints(kind, own);
        let batch = match finished {
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
        let encoded =
            Envelope::new(kind, s.tenant, s.collector_id.clone(), seq, batch).and_then(|e| {
                self.writer
                    .encode_signed(&e, &s.key)
                    .map(|bytes| (bytes, e.batch))
            });
        let bytes = match encoded {
            Ok((bytes, batch)) => {
                // The batch is in the envelope's bytes now: its buffers go back to the builder.
                if let Some(open) = self.open.get_mut(&kind) {
                    open.builder.recycle(batch);
                }
                bytes
            }
            Err(e) => {
                Stats::add(&self.stats.events_rejected, rows);
                warn!(error = %e, %kind, rows, "envelope could not be encoded");
                return;
            }
        };
        let closed = ClosedBatch {
            kind,
            seq,
            rows: u32::try_from(rows).unwrap_or(u32::MAX),
            envelope: bytes,
            checkpoints,
        };
        self.sink.deliver(closed, &self.stats).await;
        debug!(%kind, rows, seq, "batch delivered to its sink");
    }
}

fn count_out(stats: &Stats, kind: SourceKind, rows: u64, bytes: usize) {
    Stats::add(&stats.events_out, rows);
    Stats::add(&stats.batches_out, 1);
    Stats::add(&stats.bytes_out, bytes as u64);
    if let Some(c) = stats.events_out_by_kind.get(usize::from(kind.code())) {
        Stats::add(c, rows);
    }
}

/// Settings of [`send_from_spool`].
#[derive(Debug, Clone)]
pub struct SenderSettings {
    /// The tenant's events topic.
    pub topic: String,
    /// Message key (the collector id: one partition, in order).
    pub key: Vec<u8>,
    /// Records published concurrently (librdkafka keeps their order).
    pub max_in_flight: usize,
}

/// Publishes the spool's records in order until `stop` turns true; each record is released
/// from the spool only once Kafka acknowledged it. A failed publish is retried with backoff and jitter
/// (records after a failed one are sent again too, with the same ids).
pub async fn send_from_spool<P: Publisher>(
    spool: SpoolHandle,
    publisher: P,
    settings: SenderSettings,
    stats: Arc<Stats>,
    mut stop: watch::Receiver<bool>,
) {
    let mut delays = Delays::new();
    let max = settings.max_in_flight.max(1);
    loop {
        if *stop.borrow() {
            return;
        }
        let records = tokio::select! {
            r = spool.claim(max) => r,
            _ = stop.changed() => return,
        };
        let records = match records {
            Ok(r) => r,
            Err(e) => {
                error!(error = %e, "cannot read the spool; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        let publishes = futures::future::join_all(
            records
                .iter()
                .map(|r| publisher.publish(&settings.topic, &settings.key, &r.envelope)),
        );
        let results = tokio::select! {
            r = publishes => r,
            _ = stop.changed() => {
                // Still in the spool: sent again at the next start, with the same ids.
                let _ = spool.release().await;
                return;
            }
        };
        let ok = results.iter().take_while(|r| r.is_ok()).count();
        for r in &records[..ok] {
            let kind =
                EnvelopeHeader::peek(&r.envelope).map_or(SourceKind::Syslog, |(h, _)| h.kind);
            count_out(&stats, kind, u64::from(r.rows), r.envelope.len());
        }
        let failed = records.len() - ok;
        let acked: Vec<_> = records.into_iter().take(ok).collect();
        if !acked.is_empty()
            && let Err(e) = spool.ack(acked).await
        {
            error!(error = %e, "cannot record acknowledgements in the spool");
        }
        if failed == 0 {
            delays.reset();
            continue;
        }
        Stats::add(&stats.publish_errors, 1);
        let backoff = delays.next_delay();
        if let Some(Err(e)) = results.get(ok) {
            warn!(error = %e, topic = %settings.topic, retry_in = ?backoff, unsent = failed, "publish failed; records stay in the spool");
        }
        if let Err(e) = spool.release().await {
            error!(error = %e, "cannot release records in the spool");
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Waits until the spool holds no unacknowledged record, or `timeout` passes; `true` if empty.
pub async fn drain(spool: &SpoolHandle, timeout: Option<Duration>) -> bool {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        if spool.depth().0 == 0 {
            return true;
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            info!(
                records = spool.depth().0,
                "records left in the spool for the next start"
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use varde_transport::Subscriber;
    use varde_transport::memory::MemoryBus;

    /// Bufs given back are taken again, their rows emptied and their positions let go; the
    /// pool keeps at most `POOL_KEEPS_BYTES` of them, and no row's very long text.
    #[test]
    fn row_bufs_go_back_to_their_pool_emptied_and_bounded() {
        let pool = Arc::new(RowPool::default());
        let key: Arc<str> = Arc::from("journal");
        let mut buf = pool.take();
        let long = "x".repeat(ROW_KEEPS_BYTES * 2);
        for text in ["short line", long.as_str()] {
            let row = buf.next_row();
            row.clear(1);
            row.set_message_text(Some(text));
            let checkpoint = Checkpoint {
                key: key.clone(),
                file_id: 1,
                start: 0,
                offset: 10,
            };
            buf.commit(SourceKind::Syslog, Some(checkpoint));
        }
        assert_eq!(buf.len(), 2);
        drop(buf);
        let (bufs, bytes) = pool.kept();
        assert_eq!(bufs, 1);
        assert!(
            bytes < ROW_KEEPS_BYTES,
            "the long text was let go: {bytes} bytes kept"
        );
        assert_eq!(Arc::strong_count(&key), 1, "positions are let go");
        let mut again = pool.take();
        assert!(again.is_empty());
        assert_eq!(pool.kept(), (0, 0));
        assert_eq!(again.next_row().message(), None);
        again.commit(SourceKind::Syslog, None);
        assert_eq!(again.next_row().message(), None);
        drop(again);
        // Bufs of rows filled to just under the row limit, until the pool is full.
        let per_row = ROW_KEEPS_BYTES / 2;
        let text = "y".repeat(per_row);
        let many: Vec<RowBuf> = (0..POOL_KEEPS_BYTES / (per_row * EVENTS_PER_INPUT) + 4)
            .map(|_| {
                let mut buf = pool.take();
                for _ in 0..EVENTS_PER_INPUT {
                    buf.next_row().set_message_text(Some(&text));
                    buf.commit(SourceKind::Syslog, None);
                }
                buf
            })
            .collect();
        drop(many);
        let (bufs, bytes) = pool.kept();
        assert!(bytes <= POOL_KEEPS_BYTES, "{bytes} bytes kept");
        assert!(bufs >= 2, "{bufs} bufs kept");
    }

    /// A closed batch as the test sees it: its kind and its checkpoints (key, offset).
    type Seen = (SourceKind, Vec<(String, u64)>);

    /// Keeps what it is handed.
    #[derive(Default)]
    struct Keep(Arc<std::sync::Mutex<Vec<Seen>>>);

    impl Sink for Keep {
        async fn deliver(&mut self, batch: ClosedBatch, _stats: &Stats) {
            let cps = batch
                .checkpoints
                .into_iter()
                .map(|c| (c.key.to_string(), c.offset))
                .collect();
            self.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((batch.kind, cps));
        }
    }

    fn test_key() -> Arc<varde_core::CollectorKey> {
        Arc::new(varde_core::CollectorKey::generate().expect("key").0)
    }

    #[tokio::test]
    async fn a_checkpoint_waits_for_earlier_lines_in_another_kinds_open_batch() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = Keep::default();
        let seen = kept.0.clone();
        let mut shipper = Shipper::with_sink(
            kept,
            ShipperSettings {
                collector_id: CollectorId::new("k0301-t").expect("id"),
                tenant: Kommunenummer::parse("0301").expect("Oslo"),
                topic_prefix: "varde.".into(),
                max_rows: 2,
                max_delay: Duration::from_secs(60),
                key: test_key(),
            },
            SequenceSource::open(dir.path()).expect("sequence"),
            Arc::new(Stats::default()),
        );
        // One file: line 1 (auth) at 0..10, lines 2 and 3 (syslog) at 10..20 and 20..30.
        let cp = |key: &str, start, offset| Checkpoint {
            key: key.into(),
            file_id: 7,
            offset,
            start,
        };
        let e = Event::default();
        shipper
            .push_tracked(SourceKind::Auth, &e, Some(cp("f", 0, 10)))
            .await;
        shipper
            .push_tracked(SourceKind::Syslog, &e, Some(cp("f", 10, 20)))
            .await;
        shipper
            .push_tracked(SourceKind::Syslog, &e, Some(cp("f", 20, 30)))
            .await;
        // The syslog batch closed (two rows) while line 1 waits in the open auth batch: its
        // checkpoint must not pass line 1's start, or a crash now would skip line 1.
        let first = seen.lock().expect("seen")[0].clone();
        assert_eq!(first, (SourceKind::Syslog, vec![("f".to_owned(), 0)]));
        // The auth batch closes: now everything up to line 3 is spooled.
        shipper.flush_all().await;
        let second = seen.lock().expect("seen")[1].clone();
        assert_eq!(second, (SourceKind::Auth, vec![("f".to_owned(), 30)]));
        // A journal's lines also get exact per-kind checkpoints.
        shipper
            .push_tracked(SourceKind::Auth, &e, Some(cp("journal:x", 0, 40)))
            .await;
        shipper.flush_all().await;
        let third = seen.lock().expect("seen")[2].clone();
        assert_eq!(
            third.1,
            vec![
                ("journal:x".to_owned(), 40),
                ("journal:x#auth".to_owned(), 40)
            ]
        );
    }

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
            key: test_key(),
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
