//! The disk spool: a write-ahead log of envelopes between the batcher and Kafka.
//!
//! A municipality's link to the CERT goes down; the collector must keep every event until the
//! broker has it, survive `kill -9` and power loss, and never fill the VM's disk. The spool is
//! how: every batch is written here *before* it is published, and removed only after Kafka
//! acknowledged it (`acks=all`).
//!
//! ```
//! use std::sync::Arc;
//! use varde_collector::spool::{Spool, SpoolConfig, SpoolStats};
//!
//! let dir = tempfile::tempdir()?;
//! let config = SpoolConfig { dir: Some(dir.path().to_owned()), ..SpoolConfig::default() };
//! let mut spool = Spool::open(config.clone(), Arc::new(SpoolStats::default()))?;
//! spool.append(b"an encoded envelope", 12, &[])?;
//! let records = spool.claim(10)?;          // hand to Kafka...
//! assert_eq!(records[0].envelope, b"an encoded envelope");
//! drop(spool);                            // ...the collector dies before the acknowledgement
//!
//! let mut spool = Spool::open(config, Arc::new(SpoolStats::default()))?;
//! let again = spool.claim(10)?;           // the same record comes back
//! assert_eq!(again[0].rows, 12);
//! spool.ack(&again)?;                     // Kafka has it: it may go
//! assert_eq!(spool.depth(), (0, 0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## On disk
//! A directory (default `<state_dir>/spool`) of segment files `00000000000000000001.seg`, … and
//! two small files:
//!
//! - `ack`: the position (`<segment> <offset>`) of the first record not yet acknowledged,
//!   rewritten (temporary file + rename) after each acknowledgement. It is not fsynced: if it is
//!   lost or stale, records already acknowledged are sent again, with the same batch sequence,
//!   so their event ids are the same and the pipeline's stores collapse them.
//! - `checkpoints`: how far each file source has been read, as far as it is safely in the
//!   spool (see below); fsynced before any segment is deleted.
//! - `LOCK`: held (advisory lock) while a collector uses the directory; a second collector on
//!   the same spool is refused.
//!
//! A record (all integers little-endian):
//!
//! | size | field                                                                  |
//! |------|------------------------------------------------------------------------|
//! | 4    | body length *n*                                                        |
//! | 4    | rows in the envelope (events)                                          |
//! | 4    | length *m* of the checkpoint section at the start of the body          |
//! | 8    | time the record was spooled, µs since the epoch                        |
//! | 4    | CRC-32 of the 20 bytes above and of the body                           |
//! | *n*  | body: *m* bytes of checkpoints, then the encoded envelope              |
//!
//! A checkpoint section is a sequence of `key length (u16) | key | file id (u64) | offset
//! (u64)`: the positions of file sources that this record's events reach. Because the record and
//! the positions are one write, a crash can never leave "line read" without "line spooled" or
//! the reverse: after a restart a file source resumes exactly after the last spooled line.
//!
//! ## Recovery
//! [`Spool::open`] reads every segment from its start and checks each record's length and
//! checksum. The first record that is cut short (a torn write at power loss) or fails its
//! checksum ends the segment: the file is truncated there, and the event is counted
//! ([`SpoolStats::corrupt_tails`], [`SpoolStats::truncated_bytes`]) and logged. Records before it
//! are kept. Unacknowledged records are then sent again in order, each with its original batch
//! sequence number (it is inside the envelope), so the event ids do not change.
//!
//! ## Durability: `fsync`
//! - `batch` (default): every record is fsynced before the batcher continues. Nothing that
//!   reached the spool is lost at power loss. One fsync per batch (a batch is up to
//!   `batch.max_rows` events or `batch.max_delay_ms`), which a VM's disk handles easily.
//! - `interval`: fsync at most every `fsync_interval_ms`; a power loss can lose the records of
//!   the last interval (detected and truncated as above). A `kill -9` loses nothing: written
//!   data is in the kernel's page cache.
//! - `never`: leave it to the kernel (tests, throwaway setups).
//!
//! Events not yet in a closed batch (at most `batch.max_delay_ms` of them) live in memory only:
//! a crash loses them from TCP/UDP senders (syslog has no acknowledgements), while file sources
//! read them again because their checkpoint has not moved.
//!
//! ## The bound
//! The segment files never exceed `max_bytes` in total; a single record larger than half of it
//! is refused ([`SpoolError::TooLarge`], counted as rejected by the shipper). When a new record
//! does not fit, `when_full` decides:
//! - `block`: the batcher waits until acknowledgements free space; the shipper's channel fills,
//!   and sources stop reading: TCP senders are pushed back, UDP datagrams overflow the socket
//!   buffer (counted by the kernel, see `sources`).
//! - `drop_oldest`: whole segments of the oldest records that are not being sent right now are
//!   deleted. Every dropped record and event is counted ([`SpoolStats::dropped_records`],
//!   [`SpoolStats::dropped_events`]) and logged. Should nothing be freeable (everything left is
//!   in flight to Kafka), the new record itself is dropped, counted the same way.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::Notify;
use tracing::{error, info, warn};

/// Bytes of a record header.
pub const HEADER_LEN: usize = 24;
/// A header that declares a longer body than this is corrupt (envelopes are far smaller).
pub const MAX_BODY: u32 = 256 << 20;

/// When records are forced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// fsync every record before the batcher continues.
    #[default]
    Batch,
    /// fsync at most every `fsync_interval_ms`.
    Interval,
    /// Never fsync; the kernel writes back when it likes.
    Never,
}

/// What to do when a record does not fit within `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum FullPolicy {
    /// Wait for acknowledgements to free space (backpressure to the sources).
    #[default]
    Block,
    /// Delete the oldest records that are not in flight; count and log every drop.
    DropOldest,
}

/// The spool's settings (`[spool]` in the collector's configuration).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolConfig {
    /// Directory of the spool; default `<state_dir>/spool`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Upper bound of the segment files' total size, in bytes (default 1 GiB).
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u64,
    /// A segment is closed and a new one started at this size (default: `max_bytes / 16`,
    /// at most 64 MiB). At most `max_bytes / 4`.
    #[serde(default)]
    pub segment_bytes: Option<u64>,
    /// When records are forced to disk (`batch`, `interval`, `never`).
    #[serde(default)]
    pub fsync: FsyncPolicy,
    /// With `fsync = "interval"`: the interval, in milliseconds (default 1000).
    #[serde(default = "default_fsync_interval_ms")]
    pub fsync_interval_ms: u64,
    /// What happens when the bound is reached (`block`, `drop_oldest`).
    #[serde(default)]
    pub when_full: FullPolicy,
}

fn default_max_bytes() -> u64 {
    1 << 30
}
fn default_fsync_interval_ms() -> u64 {
    1000
}

impl Default for SpoolConfig {
    fn default() -> Self {
        SpoolConfig {
            dir: None,
            max_bytes: default_max_bytes(),
            segment_bytes: None,
            fsync: FsyncPolicy::default(),
            fsync_interval_ms: default_fsync_interval_ms(),
            when_full: FullPolicy::default(),
        }
    }
}

impl SpoolConfig {
    /// The segment size in effect.
    pub fn segment_bytes(&self) -> u64 {
        self.segment_bytes
            .unwrap_or((self.max_bytes / 16).min(64 << 20))
            .max(1)
    }

    /// Checks the values; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_bytes < 64 * 1024 {
            return Err(format!(
                "spool.max_bytes = {} is below the minimum of 65536",
                self.max_bytes
            ));
        }
        let seg = self.segment_bytes();
        if seg > self.max_bytes / 4 {
            return Err(format!(
                "spool.segment_bytes = {seg} must be at most spool.max_bytes / 4 = {}",
                self.max_bytes / 4
            ));
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval_ms == 0 {
            return Err("spool.fsync_interval_ms must be above 0".into());
        }
        Ok(())
    }
}

/// Errors of the spool.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// A file operation failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the spool directory.
    #[error("spool {0} is in use by another collector (its LOCK file is held)")]
    Locked(PathBuf),
    /// The record does not fit the bound (policy `block`): wait for acknowledgements.
    #[error("spool is full")]
    Full,
    /// The record alone is larger than the spool may ever hold.
    #[error("a record of {len} bytes can never fit a spool of {max} bytes")]
    TooLarge {
        /// Record size.
        len: u64,
        /// The bound.
        max: u64,
    },
    /// The spool's configuration is unusable.
    #[error("spool configuration: {0}")]
    Config(String),
}

type Result<T, E = SpoolError> = std::result::Result<T, E>;

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_owned(),
        source,
    }
}

/// How far a file source has been read: the file's identity (inode) and the byte offset after
/// the last line that is in the spool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The source's key (its path). Shared: every line of a source carries it, and a copy per
    /// line would be an allocation per line.
    pub key: std::sync::Arc<str>,
    /// Identity of the file (inode number), to notice rotation while the collector was down.
    pub file_id: u64,
    /// Byte offset after the last spooled line.
    pub offset: u64,
    /// Byte offset where that line began. Not stored in the spool: the shipper uses it to hold
    /// a checkpoint back while an earlier line of the same source waits in another open batch.
    pub start: u64,
}

/// The place of a record: segment id and byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Pos {
    /// Segment id.
    pub segment: u64,
    /// Byte offset within the segment.
    pub offset: u64,
}

/// One record handed to the sender.
#[derive(Debug, Clone)]
pub struct Record {
    /// Where it starts.
    pub pos: Pos,
    /// Where the next record starts.
    pub next: Pos,
    /// Events in it.
    pub rows: u32,
    /// When it was spooled (µs since the epoch).
    pub spooled_us: u64,
    /// The encoded envelope.
    pub envelope: Vec<u8>,
}

/// What the spool did with an appended record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// It is in the spool.
    Stored,
    /// Policy `drop_oldest` could free no room, so this record itself was dropped (counted).
    DroppedItself,
}

/// Counters and gauges of a spool, read by `/metrics`.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Records not yet acknowledged.
    pub depth_records: AtomicU64,
    /// Events in records not yet acknowledged.
    pub depth_events: AtomicU64,
    /// Bytes of segment files on disk.
    pub depth_bytes: AtomicU64,
    /// Spool time (µs since the epoch) of the oldest unacknowledged record; 0 when empty.
    pub oldest_unacked_us: AtomicU64,
    /// Records appended.
    pub appended_records: AtomicU64,
    /// Records acknowledged by Kafka and released.
    pub acked_records: AtomicU64,
    /// Records dropped by `drop_oldest` (never sent).
    pub dropped_records: AtomicU64,
    /// Events in dropped records.
    pub dropped_events: AtomicU64,
    /// Damaged tails found and truncated (at open, or a record unreadable later).
    pub corrupt_tails: AtomicU64,
    /// Bytes cut off with damaged tails.
    pub truncated_bytes: AtomicU64,
    /// fsync calls.
    pub fsyncs: AtomicU64,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

#[derive(Debug, Clone, Copy, Default)]
struct SegMeta {
    size: u64,
    records: u64,
    events: u64,
}

/// A record header, decoded.
#[derive(Debug, Clone, Copy)]
struct Header {
    body_len: u32,
    rows: u32,
    meta_len: u32,
    spooled_us: u64,
    crc: u32,
}

impl Header {
    fn decode(b: &[u8; HEADER_LEN]) -> Header {
        let u32_at = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut t = [0u8; 8];
        t.copy_from_slice(&b[12..20]);
        Header {
            body_len: u32_at(0),
            rows: u32_at(4),
            meta_len: u32_at(8),
            spooled_us: u64::from_le_bytes(t),
            crc: u32_at(20),
        }
    }
}

/// Encodes one record: header, checkpoints, envelope.
pub fn encode_record(
    envelope: &[u8],
    rows: u32,
    checkpoints: &[Checkpoint],
    spooled_us: u64,
) -> Vec<u8> {
    let mut meta = Vec::new();
    for c in checkpoints {
        let key = c.key.as_bytes();
        let key = &key[..key.len().min(usize::from(u16::MAX))];
        meta.extend_from_slice(&(key.len() as u16).to_le_bytes());
        meta.extend_from_slice(key);
        meta.extend_from_slice(&c.file_id.to_le_bytes());
        meta.extend_from_slice(&c.offset.to_le_bytes());
    }
    let body_len = (meta.len() + envelope.len()) as u32;
    let mut out = Vec::with_capacity(HEADER_LEN + body_len as usize);
    out.extend_from_slice(&body_len.to_le_bytes());
    out.extend_from_slice(&rows.to_le_bytes());
    out.extend_from_slice(&(meta.len() as u32).to_le_bytes());
    out.extend_from_slice(&spooled_us.to_le_bytes());
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&out[..20]);
    hasher.update(&meta);
    hasher.update(envelope);
    out.extend_from_slice(&hasher.finalize().to_le_bytes());
    out.extend_from_slice(&meta);
    out.extend_from_slice(envelope);
    out
}

/// Decodes a checkpoint section; `None` if it is malformed.
fn decode_checkpoints(mut meta: &[u8]) -> Option<Vec<Checkpoint>> {
    let mut out = Vec::new();
    while !meta.is_empty() {
        let len = usize::from(u16::from_le_bytes([*meta.first()?, *meta.get(1)?]));
        let key = meta.get(2..2 + len)?;
        let rest = meta.get(2 + len..2 + len + 16)?;
        let mut a = [0u8; 8];
        let mut b = [0u8; 8];
        a.copy_from_slice(&rest[..8]);
        b.copy_from_slice(&rest[8..]);
        out.push(Checkpoint {
            key: String::from_utf8_lossy(key).into(),
            file_id: u64::from_le_bytes(a),
            offset: u64::from_le_bytes(b),
            start: u64::from_le_bytes(b),
        });
        meta = &meta[2 + len + 16..];
    }
    Some(out)
}

/// Result of reading one record from a segment.
enum ReadOutcome {
    /// A valid record: header, body.
    Record(Header, Vec<u8>),
    /// Clean end of the segment.
    End,
    /// Cut short or damaged: the segment's valid part ends here.
    Damaged(&'static str),
}

fn read_record(file: &mut File, offset: u64, size: u64) -> std::io::Result<ReadOutcome> {
    if offset >= size {
        return Ok(ReadOutcome::End);
    }
    if size - offset < HEADER_LEN as u64 {
        return Ok(ReadOutcome::Damaged("header cut short"));
    }
    file.seek(SeekFrom::Start(offset))?;
    let mut hb = [0u8; HEADER_LEN];
    file.read_exact(&mut hb)?;
    let h = Header::decode(&hb);
    if h.body_len == 0 || h.body_len > MAX_BODY || h.meta_len > h.body_len {
        return Ok(ReadOutcome::Damaged("implausible header"));
    }
    if size - offset - (HEADER_LEN as u64) < u64::from(h.body_len) {
        return Ok(ReadOutcome::Damaged("body cut short"));
    }
    let mut body = vec![0u8; h.body_len as usize];
    file.read_exact(&mut body)?;
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&hb[..20]);
    hasher.update(&body);
    if hasher.finalize() != h.crc {
        return Ok(ReadOutcome::Damaged("checksum mismatch"));
    }
    Ok(ReadOutcome::Record(h, body))
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

/// The spool itself: synchronous, owned behind a [`SpoolHandle`] in the collector.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    config: SpoolConfig,
    segments: BTreeMap<u64, SegMeta>,
    active_id: u64,
    active: File,
    /// First unacknowledged record.
    ack: Pos,
    /// Records/events of the head segment before `ack`.
    acked_in_head: (u64, u64),
    /// Next record to hand to the sender; `read >= ack`.
    read: Pos,
    /// The segment of the last record handed out and not yet acknowledged or released.
    claimed_upto: Option<u64>,
    reader: Option<(u64, File)>,
    dirty: bool,
    checkpoints: BTreeMap<String, (u64, u64)>,
    stats: Arc<SpoolStats>,
    _lock: File,
}

impl Spool {
    /// Opens (or creates) the spool in `config.dir` (which must be set), recovering from a
    /// crash: damaged tails are truncated and counted, acknowledged segments removed.
    pub fn open(config: SpoolConfig, stats: Arc<SpoolStats>) -> Result<Spool> {
        config.validate().map_err(SpoolError::Config)?;
        let dir = config
            .dir
            .clone()
            .ok_or_else(|| SpoolError::Config("spool.dir is not set".into()))?;
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        if lock.try_lock().is_err() {
            return Err(SpoolError::Locked(dir));
        }

        let mut ack = read_ack(&dir);
        let checkpoints = read_checkpoints(&dir);

        let mut ids = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err(&dir))? {
            let entry = entry.map_err(io_err(&dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = name
                .strip_suffix(".seg")
                .and_then(|s| s.parse::<u64>().ok())
            {
                ids.push(id);
            }
        }
        ids.sort_unstable();

        let mut spool_checkpoints = checkpoints;
        let mut segments = BTreeMap::new();
        let mut acked_in_head = (0, 0);
        for id in ids {
            let path = segment_path(&dir, id);
            if id < ack.segment {
                std::fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            let size = file.metadata().map_err(io_err(&path))?.len();
            let mut meta = SegMeta::default();
            let mut offset = 0u64;
            let mut ack_on_boundary = ack.offset == 0;
            loop {
                if id == ack.segment && offset == ack.offset {
                    ack_on_boundary = true;
                }
                match read_record(&mut file, offset, size).map_err(io_err(&path))? {
                    ReadOutcome::End => break,
                    ReadOutcome::Damaged(why) if id == ack.segment && offset < ack.offset => {
                        // Damage among records Kafka already has. If records follow the
                        // cursor (a record boundary we wrote), skip to it and keep them;
                        // otherwise the whole segment is acknowledged: cut it here.
                        stats.corrupt_tails.fetch_add(1, Ordering::Relaxed);
                        warn!(
                            segment = %path.display(),
                            offset,
                            reason = why,
                            "spool: damaged record among acknowledged ones"
                        );
                        if ack.offset < size {
                            offset = ack.offset;
                        } else {
                            file.set_len(offset).map_err(io_err(&path))?;
                            stats
                                .truncated_bytes
                                .fetch_add(size - offset, Ordering::Relaxed);
                            ack.offset = offset;
                            ack_on_boundary = true;
                            break;
                        }
                        ack_on_boundary = true;
                    }
                    ReadOutcome::Damaged(why) => {
                        let cut = size - offset;
                        file.set_len(offset).map_err(io_err(&path))?;
                        let _ = file.sync_all();
                        stats.corrupt_tails.fetch_add(1, Ordering::Relaxed);
                        stats.truncated_bytes.fetch_add(cut, Ordering::Relaxed);
                        warn!(
                            segment = %path.display(),
                            offset,
                            bytes_cut = cut,
                            reason = why,
                            "spool: damaged tail truncated (earlier records kept)"
                        );
                        break;
                    }
                    ReadOutcome::Record(h, body) => {
                        if id == ack.segment && offset < ack.offset {
                            acked_in_head.0 += 1;
                            acked_in_head.1 += u64::from(h.rows);
                        }
                        meta.records += 1;
                        meta.events += u64::from(h.rows);
                        if let Some(cps) = decode_checkpoints(&body[..h.meta_len as usize]) {
                            for c in cps {
                                spool_checkpoints.insert(c.key.to_string(), (c.file_id, c.offset));
                            }
                        }
                        offset += HEADER_LEN as u64 + u64::from(h.body_len);
                    }
                }
            }
            meta.size = offset;
            if id == ack.segment && !ack_on_boundary {
                warn!(
                    segment = id,
                    offset = ack.offset,
                    "spool: acknowledgement cursor is not at a record; resending the segment"
                );
                ack.offset = 0;
                acked_in_head = (0, 0);
            }
            segments.insert(id, meta);
        }
        // The cursor must point at a record boundary inside a segment we have.
        match segments.first_key_value() {
            None => ack = Pos::default(),
            Some((&first, _)) if ack.segment != first || !segments.contains_key(&ack.segment) => {
                ack = Pos {
                    segment: first,
                    offset: 0,
                };
                acked_in_head = (0, 0);
            }
            Some((&first, m)) => {
                if ack.offset > m.size {
                    // Everything before the cursor was acknowledged, so all of it was.
                    warn!("spool: segment {first} is shorter than its acknowledgement cursor");
                    ack.offset = m.size;
                }
            }
        }
        let active_id = segments.last_key_value().map_or(1, |(&id, _)| id + 1);
        let active_path = segment_path(&dir, active_id);
        let active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&active_path)
            .map_err(io_err(&active_path))?;
        sync_dir(&dir);
        segments.insert(active_id, SegMeta::default());
        if segments.len() == 1 {
            ack = Pos {
                segment: active_id,
                offset: 0,
            };
        }
        let mut spool = Spool {
            dir,
            config,
            segments,
            active_id,
            active,
            ack,
            acked_in_head,
            read: ack,
            claimed_upto: None,
            reader: None,
            dirty: false,
            checkpoints: spool_checkpoints,
            stats,
            _lock: lock,
        };
        spool.normalize_ack()?;
        spool.publish_gauges();
        let (records, events) = spool.depth();
        if records > 0 {
            info!(
                records,
                events,
                bytes = spool.total_bytes(),
                "spool: unacknowledged records found; they will be sent again with their original batch sequence"
            );
        }
        Ok(spool)
    }

    /// The statistics of this spool.
    pub fn stats(&self) -> &Arc<SpoolStats> {
        &self.stats
    }

    /// The directory of the spool.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Recovered positions of file sources: key → (file id, offset).
    pub fn checkpoints(&self) -> &BTreeMap<String, (u64, u64)> {
        &self.checkpoints
    }

    /// Unacknowledged records and events.
    pub fn depth(&self) -> (u64, u64) {
        let (r, e) = self
            .segments
            .values()
            .fold((0, 0), |(r, e), m| (r + m.records, e + m.events));
        (r - self.acked_in_head.0, e - self.acked_in_head.1)
    }

    /// Bytes of segment files.
    pub fn total_bytes(&self) -> u64 {
        self.segments.values().map(|m| m.size).sum()
    }

    /// Appends a record. With policy `block` a record that does not fit returns
    /// [`SpoolError::Full`]; with `drop_oldest` the oldest records not in flight make room.
    pub fn append(
        &mut self,
        envelope: &[u8],
        rows: u32,
        checkpoints: &[Checkpoint],
    ) -> Result<Appended> {
        let bytes = encode_record(envelope, rows, checkpoints, now_us());
        let len = bytes.len() as u64;
        let max = self.config.max_bytes;
        if len > max / 2 {
            return Err(SpoolError::TooLarge { len, max });
        }
        if self.total_bytes() + len > max {
            match self.config.when_full {
                FullPolicy::Block => return Err(SpoolError::Full),
                FullPolicy::DropOldest => {
                    self.make_room(len)?;
                    if self.total_bytes() + len > max {
                        self.count_drop(1, u64::from(rows));
                        error!(
                            rows,
                            "spool full and nothing could be freed: this batch is dropped (counted)"
                        );
                        self.remember(checkpoints);
                        self.publish_gauges();
                        return Ok(Appended::DroppedItself);
                    }
                }
            }
        }
        let path = segment_path(&self.dir, self.active_id);
        let fsync = self.config.fsync == FsyncPolicy::Batch;
        let written = self.active.write_all(&bytes).and_then(|()| {
            if fsync {
                self.active.sync_data()
            } else {
                Ok(())
            }
        });
        if let Err(e) = written {
            // A full disk or an I/O error: cut what may have been written, so that the file
            // ends at a record boundary again; the caller keeps the batch and retries.
            let size = self.segments.get(&self.active_id).map_or(0, |m| m.size);
            let _ = self.active.set_len(size);
            return Err(io_err(&path)(e));
        }
        if fsync {
            self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
        } else {
            self.dirty = true;
        }
        let meta = self.segments.entry(self.active_id).or_default();
        meta.size += len;
        meta.records += 1;
        meta.events += u64::from(rows);
        let full = meta.size >= self.config.segment_bytes();
        self.remember(checkpoints);
        self.stats.appended_records.fetch_add(1, Ordering::Relaxed);
        if full {
            self.roll()?;
        }
        self.publish_gauges();
        Ok(Appended::Stored)
    }

    fn remember(&mut self, checkpoints: &[Checkpoint]) {
        for c in checkpoints {
            self.checkpoints
                .insert(c.key.to_string(), (c.file_id, c.offset));
        }
    }

    fn count_drop(&self, records: u64, events: u64) {
        self.stats
            .dropped_records
            .fetch_add(records, Ordering::Relaxed);
        self.stats
            .dropped_events
            .fetch_add(events, Ordering::Relaxed);
    }

    /// Forces written records to disk (policy `interval` calls this on its timer).
    pub fn sync(&mut self) -> Result<()> {
        if self.dirty {
            let path = segment_path(&self.dir, self.active_id);
            self.active.sync_data().map_err(io_err(&path))?;
            self.stats.fsyncs.fetch_add(1, Ordering::Relaxed);
            self.dirty = false;
        }
        Ok(())
    }

    /// Closes the active segment and starts a new one.
    fn roll(&mut self) -> Result<()> {
        if self.config.fsync != FsyncPolicy::Never {
            self.sync()?;
        }
        let id = self.active_id + 1;
        let path = segment_path(&self.dir, id);
        self.active = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err(&path))?;
        if self.config.fsync != FsyncPolicy::Never {
            sync_dir(&self.dir);
        }
        self.active_id = id;
        self.dirty = false;
        self.segments.insert(id, SegMeta::default());
        self.normalize_ack()?;
        Ok(())
    }

    /// Deletes the oldest segments that hold no record in flight until `len` more bytes fit.
    fn make_room(&mut self, len: u64) -> Result<()> {
        let max = self.config.max_bytes;
        while self.total_bytes() + len > max {
            let candidate = self
                .segments
                .keys()
                .copied()
                .find(|&id| id != self.active_id && self.claimed_upto.is_none_or(|c| id > c));
            let Some(id) = candidate else {
                // Only the active segment (or segments in flight) remain: close the active one
                // so that it can go next, unless it is empty or in flight.
                let active_meta = self
                    .segments
                    .get(&self.active_id)
                    .copied()
                    .unwrap_or_default();
                if active_meta.records > 0 && self.claimed_upto.is_none_or(|c| self.active_id > c) {
                    self.roll()?;
                    continue;
                }
                return Ok(());
            };
            let meta = self.segments.get(&id).copied().unwrap_or_default();
            let (mut records, mut events) = (meta.records, meta.events);
            if id == self.ack.segment {
                records -= self.acked_in_head.0;
                events -= self.acked_in_head.1;
            }
            self.remove_segment(id)?;
            self.count_drop(records, events);
            error!(
                dropped_records = records,
                dropped_events = events,
                segment = id,
                max_bytes = max,
                "spool full (when_full = drop_oldest): oldest unsent records dropped"
            );
            if id == self.ack.segment {
                self.ack = Pos {
                    segment: id + 1,
                    offset: 0,
                };
                self.acked_in_head = (0, 0);
                self.normalize_ack()?;
                self.write_ack();
            }
            if self.read < self.ack {
                self.read = self.ack;
            }
        }
        Ok(())
    }

    /// Persists the checkpoints, then deletes a segment file.
    fn remove_segment(&mut self, id: u64) -> Result<()> {
        self.write_checkpoints()?;
        let path = segment_path(&self.dir, id);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path)(e)),
        }
        self.segments.remove(&id);
        if self.reader.as_ref().is_some_and(|(r, _)| *r == id) {
            self.reader = None;
        }
        Ok(())
    }

    /// Moves `ack` off the end of closed segments (deleting them) onto the next record.
    fn normalize_ack(&mut self) -> Result<()> {
        loop {
            let seg = self.ack.segment;
            match self.segments.get(&seg) {
                None => {
                    // Deleted (dropped): the next segment that exists.
                    let Some((&next, _)) = self.segments.range(seg..).next() else {
                        return Ok(());
                    };
                    self.ack = Pos {
                        segment: next,
                        offset: 0,
                    };
                    self.acked_in_head = (0, 0);
                }
                Some(m) if seg != self.active_id && self.ack.offset >= m.size => {
                    self.remove_segment(seg)?;
                    self.ack = Pos {
                        segment: seg + 1,
                        offset: 0,
                    };
                    self.acked_in_head = (0, 0);
                }
                Some(_) => break,
            }
        }
        // Segments before the head are fully acknowledged.
        let old: Vec<u64> = self
            .segments
            .range(..self.ack.segment)
            .map(|(&id, _)| id)
            .collect();
        for id in old {
            self.remove_segment(id)?;
        }
        Ok(())
    }

    /// Hands out up to `max` records after the last one handed out, in order.
    pub fn claim(&mut self, max: usize) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        while out.len() < max {
            // Skip dropped segments and the ends of closed ones.
            let Some((&seg, meta)) = self.segments.range(self.read.segment..).next() else {
                break;
            };
            let meta = *meta;
            if seg != self.read.segment {
                self.read = Pos {
                    segment: seg,
                    offset: 0,
                };
            }
            if self.read.offset >= meta.size {
                if seg == self.active_id {
                    break;
                }
                self.read = Pos {
                    segment: seg + 1,
                    offset: 0,
                };
                continue;
            }
            let path = segment_path(&self.dir, seg);
            if self.reader.as_ref().is_none_or(|(id, _)| *id != seg) {
                let f = File::open(&path).map_err(io_err(&path))?;
                self.reader = Some((seg, f));
            }
            let Some((_, file)) = self.reader.as_mut() else {
                break;
            };
            match read_record(file, self.read.offset, meta.size).map_err(io_err(&path))? {
                ReadOutcome::Record(h, mut body) => {
                    let next = Pos {
                        segment: seg,
                        offset: self.read.offset + HEADER_LEN as u64 + u64::from(h.body_len),
                    };
                    let envelope = body.split_off(h.meta_len as usize);
                    out.push(Record {
                        pos: self.read,
                        next,
                        rows: h.rows,
                        spooled_us: h.spooled_us,
                        envelope,
                    });
                    self.claimed_upto = Some(seg);
                    self.read = next;
                }
                ReadOutcome::End => break,
                ReadOutcome::Damaged(why) => {
                    // The disk changed under us after the record was written and checked.
                    self.stats.corrupt_tails.fetch_add(1, Ordering::Relaxed);
                    error!(
                        segment = %path.display(),
                        offset = self.read.offset,
                        reason = why,
                        "spool: record unreadable; skipping the rest of this segment"
                    );
                    if seg == self.active_id {
                        break;
                    }
                    self.read = Pos {
                        segment: seg + 1,
                        offset: 0,
                    };
                }
            }
        }
        Ok(out)
    }

    /// Gives back every handed-out record that was not acknowledged: they are handed out again.
    pub fn release(&mut self) {
        self.read = self.ack;
        self.claimed_upto = None;
    }

    /// Marks `records` (a prefix of what [`Spool::claim`] handed out, in order) acknowledged,
    /// deleting segments that are fully acknowledged.
    pub fn ack(&mut self, records: &[Record]) -> Result<()> {
        for r in records {
            if r.next <= self.ack {
                continue; // dropped meanwhile, or acknowledged twice
            }
            if r.pos.segment != self.ack.segment {
                // The head is behind this record: everything before it was acknowledged.
                self.ack = Pos {
                    segment: r.pos.segment,
                    offset: 0,
                };
                self.acked_in_head = (0, 0);
                self.normalize_ack()?;
            }
            self.ack = r.next;
            self.acked_in_head.0 += 1;
            self.acked_in_head.1 += u64::from(r.rows);
            self.stats.acked_records.fetch_add(1, Ordering::Relaxed);
        }
        self.normalize_ack()?;
        if self.read < self.ack {
            self.read = self.ack;
        }
        if self.read == self.ack {
            self.claimed_upto = None;
        }
        self.write_ack();
        self.publish_gauges();
        Ok(())
    }

    fn write_ack(&self) {
        let path = self.dir.join("ack");
        let tmp = self.dir.join("ack.tmp");
        let text = format!("{} {}\n", self.ack.segment, self.ack.offset);
        let result = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = result {
            // Not fatal: a stale cursor only means records are sent again (same ids).
            warn!(error = %e, "spool: cannot record the acknowledgement cursor");
        }
    }

    fn write_checkpoints(&mut self) -> Result<()> {
        if self.checkpoints.is_empty() {
            return Ok(());
        }
        // The checkpoints may describe records not yet on disk: force them first.
        self.sync()?;
        let path = self.dir.join("checkpoints");
        let tmp = self.dir.join("checkpoints.tmp");
        let mut text = String::new();
        for (key, (id, offset)) in &self.checkpoints {
            // Keys are paths: one per line, the numbers first so that any key text parses.
            text.push_str(&format!("{id} {offset} {key}\n"));
        }
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            sync_dir(&self.dir);
            Ok(())
        };
        write().map_err(io_err(&path))
    }

    /// Reads the spool time of the record at the cursor, for the "oldest unsent" gauge.
    fn head_time(&mut self) -> Option<u64> {
        let (&seg, meta) = self
            .segments
            .range(self.ack.segment..)
            .find(|(_, m)| m.records > 0)?;
        let offset = if seg == self.ack.segment {
            self.ack.offset
        } else {
            0
        };
        if offset >= meta.size {
            return None;
        }
        let mut f = File::open(segment_path(&self.dir, seg)).ok()?;
        f.seek(SeekFrom::Start(offset)).ok()?;
        let mut hb = [0u8; HEADER_LEN];
        f.read_exact(&mut hb).ok()?;
        Some(Header::decode(&hb).spooled_us)
    }

    fn publish_gauges(&mut self) {
        let (records, events) = self.depth();
        let s = &self.stats;
        s.depth_records.store(records, Ordering::Relaxed);
        s.depth_events.store(events, Ordering::Relaxed);
        s.depth_bytes.store(self.total_bytes(), Ordering::Relaxed);
        let oldest = if records == 0 {
            0
        } else {
            self.head_time().unwrap_or(0)
        };
        self.stats
            .oldest_unacked_us
            .store(oldest, Ordering::Relaxed);
    }
}

fn read_ack(dir: &Path) -> Pos {
    let Ok(text) = std::fs::read_to_string(dir.join("ack")) else {
        return Pos::default();
    };
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next()) {
        (Some(Ok(segment)), Some(Ok(offset))) => Pos { segment, offset },
        _ => {
            warn!("spool: acknowledgement cursor unreadable; unacknowledged records are resent");
            Pos::default()
        }
    }
}

fn read_checkpoints(dir: &Path) -> BTreeMap<String, (u64, u64)> {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(dir.join("checkpoints")) else {
        return out;
    };
    for line in text.lines() {
        let mut parts = line.splitn(3, ' ');
        if let (Some(Ok(id)), Some(Ok(offset)), Some(key)) = (
            parts.next().map(str::parse::<u64>),
            parts.next().map(str::parse::<u64>),
            parts.next(),
        ) {
            out.insert(key.to_owned(), (id, offset));
        }
    }
    out
}

/// The spool shared by the batcher (appends) and the sender (claims, acknowledgements), with
/// wake-ups between them. File I/O runs on tokio's blocking threads.
#[derive(Debug, Clone)]
pub struct SpoolHandle {
    inner: Arc<Mutex<Spool>>,
    /// Signalled when records were appended.
    data: Arc<Notify>,
    /// Signalled when space was freed.
    space: Arc<Notify>,
    stats: Arc<SpoolStats>,
}

impl SpoolHandle {
    /// Wraps an opened spool.
    pub fn new(spool: Spool) -> Self {
        let stats = spool.stats.clone();
        SpoolHandle {
            inner: Arc::new(Mutex::new(spool)),
            data: Arc::new(Notify::new()),
            space: Arc::new(Notify::new()),
            stats,
        }
    }

    /// The spool's statistics.
    pub fn stats(&self) -> &Arc<SpoolStats> {
        &self.stats
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        let run = move || {
            let mut guard = inner.lock().unwrap_or_else(PoisonError::into_inner);
            f(&mut guard)
        };
        match tokio::task::spawn_blocking(run).await {
            Ok(v) => Ok(v),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(SpoolError::Io {
                path: PathBuf::from("(spool task)"),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }

    /// Synchronous access (for start-up and tests).
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Spool> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends a record, waiting for space under policy `block` (this is the backpressure).
    /// Errors other than "full" are returned; the caller retries them.
    pub async fn append(
        &self,
        envelope: Arc<Vec<u8>>,
        rows: u32,
        checkpoints: Arc<Vec<Checkpoint>>,
    ) -> Result<Appended> {
        let mut warned = false;
        loop {
            let space = self.space.notified();
            let (env, cps) = (envelope.clone(), checkpoints.clone());
            match self
                .with(move |s| s.append(&env, rows, &cps))
                .await
                .and_then(|r| r)
            {
                Err(SpoolError::Full) => {
                    if !warned {
                        warn!(
                            max_bytes = self.lock().config.max_bytes,
                            "spool full (when_full = block): holding sources back until Kafka acknowledges"
                        );
                        warned = true;
                    }
                    tokio::select! {
                        _ = space => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                other => {
                    self.data.notify_one();
                    return other;
                }
            }
        }
    }

    /// Waits until at least one record is there, then hands out up to `max`.
    pub async fn claim(&self, max: usize) -> Result<Vec<Record>> {
        loop {
            let data = self.data.notified();
            let records = self.with(move |s| s.claim(max)).await??;
            if !records.is_empty() {
                return Ok(records);
            }
            tokio::select! {
                _ = data => {}
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    }

    /// Acknowledges a prefix of the claimed records and wakes a blocked batcher.
    pub async fn ack(&self, records: Vec<Record>) -> Result<()> {
        let r = self.with(move |s| s.ack(&records)).await;
        self.space.notify_waiters();
        r?
    }

    /// Hands the unacknowledged claimed records out again later.
    pub async fn release(&self) -> Result<()> {
        self.with(Spool::release).await
    }

    /// fsyncs pending writes (the `interval` policy's timer).
    pub async fn sync(&self) -> Result<()> {
        self.with(Spool::sync).await?
    }

    /// Unacknowledged records and events.
    pub fn depth(&self) -> (u64, u64) {
        (
            get(&self.stats.depth_records),
            get(&self.stats.depth_events),
        )
    }
}

#[cfg(test)]
mod tests;
