//! Inputs: syslog over UDP, TCP and TLS, and files of syslog lines.
//!
//! Every source parses at the edge and sends events into the shipper's bounded channel; when the
//! channel is full a source waits, which stops it reading its socket or file (backpressure: a
//! TCP sender's window closes; UDP datagrams overflow the socket's receive buffer, where the
//! kernel counts them and [`syslog_udp`] reports the count).
//!
//! ## TCP framing (RFC 6587)
//! Decided per connection by its first byte: a digit means *octet counting*
//! (`<length> <message>`, messages may contain newlines), anything else (normally `<`) means
//! *non-transparent* framing by LF or CRLF. A connection whose octet count is malformed is
//! counted as a framing error, logged, and read as newline-framed from there on: no byte is
//! dropped. Messages longer than [`MAX_LINE`] are cut into pieces of that size.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};
use varde_core::{Event, Row, Value, ValueRef};

use crate::config::StartAt;
use crate::edge::{EdgeSource, EdgeStats, edge_event, edge_row};
use crate::journal::Journal;
use crate::parse::json::JsonFields;
use crate::privacy::{Privacy, PrivacyKey, PrivacyPolicy};
use crate::shipper::{EVENTS_PER_INPUT, Input, RowBuf, RowPool, Stats};
use crate::spool::Checkpoint;

/// Longest line accepted; a longer one is cut into pieces of this size, none dropped.
pub const MAX_LINE: usize = 64 * 1024;
/// Largest octet count accepted on a TCP connection; a larger one is a framing error.
pub const MAX_OCTET_FRAME: usize = 1 << 20;

/// Current time in µs since the epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Counters of one source (one listener or file), exported by `/metrics` with its name.
#[derive(Debug, Default)]
pub struct SourceCounters {
    /// Events handed to the shipper.
    pub events: AtomicU64,
    /// Bytes of those events' lines.
    pub bytes: AtomicU64,
    /// Lines kept raw because they were not valid syslog.
    pub parse_errors: AtomicU64,
    /// What the edge made of this source's lines: events per kind, unparsed lines, parse
    /// failures, pseudonymised values (counts only).
    pub edge: Arc<EdgeStats>,
    /// Malformed or truncated TCP frames (the bytes were still delivered as lines).
    pub framing_errors: AtomicU64,
    /// Datagrams the kernel dropped because the socket's receive buffer was full (UDP, from
    /// `SO_RXQ_OVFL`).
    pub receive_buffer_drops: AtomicU64,
    /// Connections accepted (TCP/TLS).
    pub connections: AtomicU64,
    /// TLS handshakes that failed.
    pub tls_handshake_errors: AtomicU64,
    /// Journal appends that failed (their lines went on unjournalled).
    pub journal_errors: AtomicU64,
    /// Flow sources: packets that joined a flow (capture).
    pub flow_packets: AtomicU64,
    /// Flow sources: flows reported early because the flow table was full (capture).
    pub flows_evicted: AtomicU64,
    /// Capture sources: frames the kernel dropped because the capture socket's receive buffer
    /// was full (from `PACKET_STATISTICS`).
    pub capture_drops: AtomicU64,
    /// Flow sources: templates received (NetFlow v9, IPFIX).
    pub netflow_templates: AtomicU64,
    /// Flow sources: distinct exporters seen (NetFlow, IPFIX).
    pub netflow_exporters: AtomicU64,
}

/// What every source task needs: the shipper's channel, the counters, the shutdown signal.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The shipper's input.
    pub tx: mpsc::Sender<Input>,
    /// The collector's counters.
    pub stats: Arc<Stats>,
    /// This source's counters.
    pub counters: Arc<SourceCounters>,
    /// Turns true when the collector stops.
    pub shutdown: watch::Receiver<bool>,
    /// The edge of this stream (a connection, a file, a listener's datagrams): parsers,
    /// privacy, the IIS W3C header last seen, counting into `counters.edge`.
    pub edge: Arc<EdgeSource>,
    /// The journal of a network source: lines are appended to it before they go on (see
    /// [`crate::journal`]); `None` for files, which are their own journal.
    pub journal: Option<Arc<Journal>>,
    /// The rows this source's events travel to the shipper in, kept for reuse.
    pub rows: Arc<RowPool>,
}

/// A pseudonymisation under a fixed key, for tests and benchmarks only (a real collector
/// loads or creates its municipality's key, see [`Privacy::from_config`]).
pub fn test_privacy() -> Privacy {
    Privacy::new(
        &PrivacyKey::from_bytes([0x5a; 32]),
        PrivacyPolicy::default(),
    )
}

impl SourceContext {
    /// The context of one configured source: its counters, and an edge under the
    /// municipality's `privacy` that counts into them.
    pub fn new(
        tx: mpsc::Sender<Input>,
        stats: Arc<Stats>,
        counters: Arc<SourceCounters>,
        shutdown: watch::Receiver<bool>,
        privacy: Privacy,
    ) -> Self {
        let edge = Arc::new(EdgeSource::with_stats(privacy, counters.edge.clone()));
        SourceContext {
            tx,
            stats,
            counters,
            shutdown,
            edge,
            journal: None,
            rows: Arc::new(RowPool::default()),
        }
    }

    /// The same context, appending every received line to `journal` before it goes on.
    pub fn with_journal(self, journal: Arc<Journal>) -> Self {
        SourceContext {
            journal: Some(journal),
            ..self
        }
    }

    /// Hands lines received over the network on: appended to the source's journal first (one
    /// write for all of them), then each through the edge with its journal checkpoint. When the
    /// journal cannot be written (a full or failing disk) the lines go on without it, logged
    /// and counted (`journal_errors`): better shipped with the old crash window than refused.
    /// `false` when the shipper is gone.
    pub async fn send_received(&self, lines: Lines) -> bool {
        let journalled = self.journal_lines(lines);
        self.send_journalled(journalled).await
    }

    /// The first half of [`SourceContext::send_received`]: writes `lines` to the journal (when
    /// the source has one). Once this returns the lines survive a crash of the process: a
    /// RELP listener acknowledges them here, before they are batched.
    pub fn journal_lines(&self, lines: Lines) -> Journalled {
        let now = now_us();
        let positions = match &self.journal {
            None => None,
            Some(j) => match j.append(lines.iter(), now) {
                Ok(p) => Some((j, p)),
                Err(e) => {
                    self.counters.journal_errors.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, journal = j.key(), lines = lines.len(),
                        "cannot write the journal; these lines go on unjournalled");
                    None
                }
            },
        };
        let checkpoints = positions.map(|(j, positions)| {
            positions
                .into_iter()
                .map(|(start, after)| checkpoint(j.shared_key(), j.id(), start, after))
                .collect()
        });
        Journalled {
            lines,
            received_us: now,
            checkpoints,
        }
    }

    /// The second half of [`SourceContext::send_received`]: each journalled line through the
    /// edge to the batcher, with its journal checkpoint. `false` when the shipper is gone.
    pub async fn send_journalled(&self, journalled: Journalled) -> bool {
        let Journalled {
            lines,
            received_us,
            checkpoints,
        } = journalled;
        let mut out = Outgoing::new(self);
        match checkpoints {
            None => {
                for line in lines.iter() {
                    if !out.line(line, received_us, None).await {
                        return false;
                    }
                }
            }
            Some(cps) => {
                for (line, cp) in lines.iter().zip(cps) {
                    if !out.line(line, received_us, Some(cp)).await {
                        return false;
                    }
                }
            }
        }
        out.send().await
    }

    /// The same context, taking the host, message and time of generic JSON objects from
    /// `fields` (the configuration's `[json]` section).
    pub fn with_json_fields(self, fields: Arc<JsonFields>) -> Self {
        let edge = EdgeSource::with_stats(self.edge.privacy().clone(), self.counters.edge.clone())
            .with_json_fields(fields);
        SourceContext {
            edge: Arc::new(edge),
            ..self
        }
    }

    /// A context for tests and one-off reads: its own channel end, counters and a shutdown
    /// signal that never fires, and a fixed pseudonymisation key ([`test_privacy`]).
    pub fn new_test(tx: mpsc::Sender<Input>) -> (Self, watch::Sender<bool>) {
        let (stop, shutdown) = watch::channel(false);
        let ctx = SourceContext::new(
            tx,
            Arc::new(Stats::default()),
            Arc::new(SourceCounters::default()),
            shutdown,
            test_privacy(),
        );
        (ctx, stop)
    }

    /// The same source for one more stream (a TCP connection, one file of a pattern): shared
    /// counters and privacy, its own edge state (an IIS W3C `#Fields:` header belongs to the
    /// stream that sent it).
    pub fn for_stream(&self) -> Self {
        SourceContext {
            edge: Arc::new(self.edge.sibling()),
            ..self.clone()
        }
    }

    /// Sends the complete lines at the front of `buf`, which starts at byte `offset` of the
    /// file `key` (identity `file_id`), each with the checkpoint after it; advances `offset`
    /// and leaves an incomplete tail in `buf`. `false` when the shipper is gone.
    async fn send_file_lines(
        &self,
        buf: &mut Vec<u8>,
        key: &Arc<str>,
        file_id: u64,
        offset: &mut u64,
    ) -> bool {
        let base = *offset;
        let lines = take_lines_with_ends(buf);
        let mut out = Outgoing::new(self);
        let now = now_us();
        for (line, end) in lines {
            let start = *offset;
            *offset = base + end as u64;
            if !out
                .line(&line, now, Some(checkpoint(key, file_id, start, *offset)))
                .await
            {
                return false;
            }
        }
        out.send().await
    }

    /// Runs one received line through the edge ([`edge_event`]: syslog parsing, format
    /// detection into typed columns, pseudonymisation) and hands the event to the shipper;
    /// `false` when the shipper is gone.
    pub async fn send_line(&self, line: &[u8], checkpoint: Option<Checkpoint>) -> bool {
        self.send_line_at(line, now_us(), checkpoint).await
    }

    /// [`SourceContext::send_line`] for a line received at `receive_time_us` (a line replayed
    /// from the journal keeps the time it first arrived).
    pub async fn send_line_at(
        &self,
        line: &[u8],
        receive_time_us: i64,
        checkpoint: Option<Checkpoint>,
    ) -> bool {
        let (kind, event) = self.edge_line(line, receive_time_us);
        let input = match checkpoint {
            Some(c) => Input::Tracked(kind, event, c),
            None => Input::Event(kind, event),
        };
        self.tx.send(input).await.is_ok()
    }

    /// One received line through the edge ([`edge_event`]), counted.
    fn edge_line(&self, line: &[u8], receive_time_us: i64) -> (varde_core::SourceKind, Event) {
        let text = utf8_lossy(line);
        let (kind, event) = edge_event(&text, receive_time_us, &self.edge);
        self.count(
            event.get("parse_error") == Some(&Value::Bool(true)),
            line.len(),
        );
        (kind, event)
    }

    /// Counts an event the edge made of a line of `len` bytes, kept raw when `raw`.
    fn count(&self, raw: bool, len: usize) {
        if raw {
            self.stats.parse_errors.fetch_add(1, Ordering::Relaxed);
            self.counters.parse_errors.fetch_add(1, Ordering::Relaxed);
        }
        self.counters.events.fetch_add(1, Ordering::Relaxed);
        self.counters.bytes.fetch_add(len as u64, Ordering::Relaxed);
    }
}

/// The events of one read on their way to the shipper: edged line by line into the rows of a
/// [`RowBuf`] from the source's pool, handed on [`EVENTS_PER_INPUT`] at a time as one
/// [`Input::Rows`].
struct Outgoing<'a> {
    ctx: &'a SourceContext,
    rows: RowBuf,
    /// Where the edge puts a row together again (a parsed line, a pseudonymised value).
    spare: Row,
}

impl<'a> Outgoing<'a> {
    fn new(ctx: &'a SourceContext) -> Self {
        Outgoing {
            ctx,
            rows: ctx.rows.take(),
            spare: Row::default(),
        }
    }

    /// Adds one line; sends when the message is full. `false` when the shipper is gone.
    async fn line(
        &mut self,
        line: &[u8],
        receive_time_us: i64,
        checkpoint: Option<Checkpoint>,
    ) -> bool {
        let text = utf8_lossy(line);
        let row = self.rows.next_row();
        let kind = edge_row(&text, receive_time_us, &self.ctx.edge, row, &mut self.spare);
        self.ctx.count(
            row.get("parse_error") == Some(ValueRef::Bool(true)),
            line.len(),
        );
        self.rows.commit(kind, checkpoint);
        if self.rows.len() < EVENTS_PER_INPUT {
            return true;
        }
        let full = std::mem::replace(&mut self.rows, self.ctx.rows.take());
        self.ctx.tx.send(Input::Rows(full)).await.is_ok()
    }

    /// Sends what is left. `false` when the shipper is gone.
    async fn send(self) -> bool {
        self.rows.is_empty() || self.ctx.tx.send(Input::Rows(self.rows)).await.is_ok()
    }
}

/// Lines written to a source's journal, not yet handed on (see
/// [`SourceContext::journal_lines`]).
#[derive(Debug)]
pub struct Journalled {
    lines: Lines,
    received_us: i64,
    /// One per line; `None` when the source has no journal or it could not be written.
    checkpoints: Option<Vec<Checkpoint>>,
}

impl Journalled {
    /// Whether the lines are in the journal (and so survive a crash of the process).
    pub fn is_journalled(&self) -> bool {
        self.checkpoints.is_some()
    }
}

/// A received line as text: borrowed when it is valid UTF-8 (checked with SIMD by
/// `simdutf8`, where `String::from_utf8_lossy` walks every byte), else with each invalid
/// sequence replaced by U+FFFD, as `from_utf8_lossy` does.
pub fn utf8_lossy(line: &[u8]) -> std::borrow::Cow<'_, str> {
    match simdutf8::basic::from_utf8(line) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(line),
    }
}

/// The messages of one read, written one after another into one buffer with where each ends:
/// one allocation for all of them, kept by whoever reuses the value, where a `Vec` per message
/// cost a `malloc` and a `free` per line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Lines {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl Lines {
    /// Appends one message.
    pub fn push(&mut self, line: &[u8]) {
        self.bytes.extend_from_slice(line);
        self.ends.push(self.bytes.len());
    }

    /// How many messages.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The messages, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + Clone + '_ {
        self.ends.iter().enumerate().map(|(i, &end)| {
            let start = i.checked_sub(1).map_or(0, |before| self.ends[before]);
            &self.bytes[start..end]
        })
    }

    /// The messages as owned byte strings (tests and callers that keep them).
    pub fn to_vecs(&self) -> Vec<Vec<u8>> {
        self.iter().map(<[u8]>::to_vec).collect()
    }

    /// Appends every message of `other`.
    pub fn append(&mut self, other: &Lines) {
        for line in other.iter() {
            self.push(line);
        }
    }
}

impl<T: AsRef<[u8]>> FromIterator<T> for Lines {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let mut lines = Lines::default();
        for line in iter {
            lines.push(line.as_ref());
        }
        lines
    }
}

/// Splits complete lines off the front of `buf` (LF or CRLF framing; lines longer than
/// [`MAX_LINE`] are cut), leaving an incomplete tail in place.
pub fn take_lines(buf: &mut Vec<u8>) -> Lines {
    let mut lines = Lines::default();
    take_lines_onto(buf, &mut lines);
    lines
}

/// [`take_lines`] appending to `lines`.
fn take_lines_onto(buf: &mut Vec<u8>, lines: &mut Lines) {
    // The lines are at most the buffer: one allocation, not one per doubling.
    lines.bytes.reserve(buf.len());
    split_lines(buf, |line, _| lines.push(line));
}

/// Like [`take_lines`], with the number of bytes of `buf` consumed up to the end of each line
/// (terminator included), for file checkpoints.
pub fn take_lines_with_ends(buf: &mut Vec<u8>) -> Vec<(Vec<u8>, usize)> {
    let mut lines = Vec::new();
    split_lines(buf, |line, end| lines.push((line.to_vec(), end)));
    lines
}

/// Hands each complete line at the front of `buf` to `each` with the bytes consumed up to its
/// end (LF or CRLF framing, the terminator not part of the line; lines longer than
/// [`MAX_LINE`] cut), then removes them from `buf`, leaving an incomplete tail.
fn split_lines(buf: &mut Vec<u8>, mut each: impl FnMut(&[u8], usize)) {
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        match memchr::memchr(b'\n', rest) {
            Some(i) if i <= MAX_LINE => {
                let mut line = &rest[..i];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                start += i + 1;
                each(line, start);
            }
            _ if rest.len() > MAX_LINE => {
                start += MAX_LINE;
                each(&rest[..MAX_LINE], start);
            }
            _ => break,
        }
    }
    buf.drain(..start);
}

/// How a TCP connection frames its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Not known until the first byte arrives.
    Undecided,
    /// RFC 6587 octet counting: `<length> <message>`.
    OctetCounting,
    /// RFC 6587 non-transparent framing: LF (or CRLF) after each message.
    NonTransparent,
}

/// Cuts a TCP byte stream into syslog messages, detecting the framing from the first byte.
#[derive(Debug)]
pub struct Framer {
    mode: Framing,
    buf: Vec<u8>,
    /// Octet counting: bytes still to come of the current message, and what came so far.
    pending: Option<usize>,
    frame: Vec<u8>,
    /// Framing errors seen.
    pub errors: u64,
}

impl Default for Framer {
    fn default() -> Self {
        Framer::new()
    }
}

impl Framer {
    /// A framer for a new connection.
    pub fn new() -> Self {
        Framer {
            mode: Framing::Undecided,
            buf: Vec::new(),
            pending: None,
            frame: Vec::new(),
            errors: 0,
        }
    }

    /// The framing in use.
    pub fn mode(&self) -> Framing {
        self.mode
    }

    /// Adds received bytes; returns the messages completed by them.
    pub fn push(&mut self, data: &[u8]) -> Lines {
        self.buf.extend_from_slice(data);
        self.frame()
    }

    /// The buffer a reader appends received bytes to, with room for at least `room` more; then
    /// [`Framer::frame`]. Reading straight into it spares the copy of every byte that
    /// [`Framer::push`] makes.
    pub fn spare(&mut self, room: usize) -> &mut Vec<u8> {
        self.buf.reserve(room);
        &mut self.buf
    }

    /// The messages completed by the bytes appended through [`Framer::spare`].
    pub fn frame(&mut self) -> Lines {
        let mut out = Lines::default();
        if self.mode == Framing::Undecided {
            let skip = self
                .buf
                .iter()
                .take_while(|b| matches!(b, b'\n' | b'\r' | b' ' | b'\t'))
                .count();
            self.buf.drain(..skip);
            match self.buf.first() {
                None => return out,
                Some(b) if b.is_ascii_digit() => self.mode = Framing::OctetCounting,
                Some(_) => self.mode = Framing::NonTransparent,
            }
        }
        if self.mode == Framing::OctetCounting {
            self.octets(&mut out);
        }
        if self.mode == Framing::NonTransparent {
            take_lines_onto(&mut self.buf, &mut out);
        }
        out
    }

    fn octets(&mut self, out: &mut Lines) {
        let mut start = 0;
        loop {
            if let Some(rem) = self.pending {
                let room = MAX_LINE - self.frame.len();
                let n = rem.min(self.buf.len() - start).min(room);
                self.frame.extend_from_slice(&self.buf[start..start + n]);
                start += n;
                let rem = rem - n;
                if rem == 0 {
                    out.push(&self.frame);
                    self.frame.clear();
                    self.pending = None;
                } else {
                    self.pending = Some(rem);
                    if self.frame.len() == MAX_LINE {
                        out.push(&self.frame);
                        self.frame.clear();
                    }
                    if start == self.buf.len() {
                        break;
                    }
                }
                continue;
            }
            // Between frames: tolerate the LF some senders add after each message.
            while start < self.buf.len() && matches!(self.buf[start], b'\n' | b'\r') {
                start += 1;
            }
            let rest = &self.buf[start..];
            if rest.is_empty() {
                break;
            }
            let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == rest.len() && digits <= 7 {
                break; // the length is still arriving
            }
            let len = std::str::from_utf8(&rest[..digits])
                .ok()
                .and_then(|t| t.parse::<usize>().ok());
            match (rest.get(digits), len) {
                (Some(b' '), Some(len)) if (1..=MAX_OCTET_FRAME).contains(&len) && digits <= 7 => {
                    start += digits + 1;
                    self.pending = Some(len);
                }
                _ => {
                    // Not octet counting after all: read the rest of the connection as lines.
                    self.errors += 1;
                    self.mode = Framing::NonTransparent;
                    break;
                }
            }
        }
        self.buf.drain(..start);
    }

    /// The connection ended: whatever is left (an unterminated line, a truncated frame) as a
    /// last message. A truncated frame counts as a framing error.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        if self.pending.take().is_some() {
            self.errors += 1;
            let mut frame = std::mem::take(&mut self.frame);
            frame.append(&mut self.buf);
            return (!frame.is_empty()).then_some(frame);
        }
        let rest = std::mem::take(&mut self.buf);
        let trimmed = rest.iter().all(|b| matches!(b, b'\n' | b'\r'));
        (!trimmed).then_some(rest)
    }
}

/// A stream read that returned fewer bytes than this is followed by a pause of
/// [`COALESCE_FOR`] before the next read.
const COALESCE_BELOW: usize = 32 * 1024;

/// How long a connection waits after a short read. At a high rate the next read then takes what
/// arrived meanwhile in one piece (a 200-byte-line sender at 100,000 lines/s fills 40 KB in
/// 2 ms) instead of a few lines per read, each read costing a wake-up, a `recvfrom`, a journal
/// `pwrite` and an `epoll_wait`. A line waits at most this long more before it is read; a slow
/// sender's lines are read as they come, one pause after each.
const COALESCE_FOR: Duration = Duration::from_millis(2);

/// Reads a connection to its end (or until shutdown), framing and sending every message.
/// Returns the number of messages sent.
pub async fn pump_framed<R: AsyncRead + Unpin>(
    reader: R,
    ctx: &SourceContext,
) -> std::io::Result<u64> {
    pump_framed_pausing(reader, ctx, COALESCE_FOR).await
}

/// [`pump_framed`] with `pause` after a short read.
async fn pump_framed_pausing<R: AsyncRead + Unpin>(
    mut reader: R,
    ctx: &SourceContext,
    pause: Duration,
) -> std::io::Result<u64> {
    let mut shutdown = ctx.shutdown.clone();
    let mut framer = Framer::new();
    let mut sent = 0;
    let mut errors_seen = 0;
    loop {
        // Read into the framer's own buffer (`read_buf` reads nothing when the other branch
        // wins, so a shutdown loses no bytes). A shutdown seen during the pause is in the
        // signal's value, no longer a change to wait for.
        let n = if *shutdown.borrow() {
            0
        } else {
            tokio::select! {
                r = reader.read_buf(framer.spare(64 * 1024)) => r?,
                _ = shutdown.changed() => 0,
            }
        };
        let messages = if n == 0 {
            framer.finish().into_iter().collect::<Lines>()
        } else {
            framer.frame()
        };
        if framer.errors > errors_seen {
            ctx.counters
                .framing_errors
                .fetch_add(framer.errors - errors_seen, Ordering::Relaxed);
            warn!(
                "syslog/tcp: malformed octet-counted frame; reading the rest of the connection as lines"
            );
            errors_seen = framer.errors;
        }
        let count = messages.len() as u64;
        if !ctx.send_received(messages).await {
            return Ok(sent);
        }
        sent += count;
        if n == 0 {
            return Ok(sent);
        }
        if n < COALESCE_BELOW {
            // A short read: let the next one gather more (see COALESCE_FOR).
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// Reads `reader` to its end, sending every line (newline framing). Returns the number of
/// lines sent. A final line without a newline is sent too.
async fn pump_lines<R: AsyncRead + Unpin>(
    mut reader: R,
    ctx: &SourceContext,
) -> std::io::Result<u64> {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    loop {
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            if !buf.is_empty() {
                if !ctx.send_received([&buf].into_iter().collect()).await {
                    return Ok(sent);
                }
                sent += 1;
            }
            return Ok(sent);
        }
        buf.extend_from_slice(&chunk[..n]);
        let lines = take_lines(&mut buf);
        let count = lines.len() as u64;
        if !ctx.send_received(lines).await {
            return Ok(sent);
        }
        sent += count;
    }
}

/// Listens for syslog over TCP (octet counting or newline framing, per connection) until
/// shutdown.
pub async fn syslog_tcp(listener: TcpListener, ctx: SourceContext) {
    serve_tcp(listener, ctx, None).await;
}

/// Listens for syslog over TLS (RFC 5425; framing as for TCP) until shutdown.
pub async fn syslog_tls(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    ctx: SourceContext,
) {
    serve_tcp(listener, ctx, Some(acceptor)).await;
}

async fn serve_tcp(
    listener: TcpListener,
    ctx: SourceContext,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    let proto = if tls.is_some() {
        "syslog/tls"
    } else {
        "syslog/tcp"
    };
    accept_connections(listener, ctx, proto, move |stream, peer, ctx| {
        let tls = tls.clone();
        async move {
            let result = match tls {
                None => pump_framed(stream, &ctx).await,
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(30), acceptor.accept(stream))
                            .await;
                    match handshake {
                        Ok(Ok(stream)) => pump_framed(stream, &ctx).await,
                        Ok(Err(e)) => {
                            ctx.counters
                                .tls_handshake_errors
                                .fetch_add(1, Ordering::Relaxed);
                            warn!(%peer, error = %e, "syslog/tls handshake failed");
                            return;
                        }
                        Err(_) => {
                            ctx.counters
                                .tls_handshake_errors
                                .fetch_add(1, Ordering::Relaxed);
                            warn!(%peer, "syslog/tls handshake timed out");
                            return;
                        }
                    }
                }
            };
            match result {
                Ok(n) => debug!(%peer, messages = n, "{proto} connection closed"),
                Err(e) => warn!(%peer, error = %e, "{proto} connection failed"),
            }
        }
    })
    .await;
}

/// Accepts connections on `listener` until shutdown, counting them, and runs `serve` for each
/// on a task of its own, with the source's context for one more stream ([`SourceContext::for_stream`]).
pub async fn accept_connections<F, Fut>(
    listener: TcpListener,
    ctx: SourceContext,
    proto: &'static str,
    serve: F,
) where
    F: Fn(tokio::net::TcpStream, std::net::SocketAddr, SourceContext) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let local = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    info!(listen = %local, "{proto} listening");
    let mut shutdown = ctx.shutdown.clone();
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                ctx.counters.connections.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(serve(stream, peer, ctx.for_stream()));
            }
            Err(e) => {
                warn!(error = %e, "{proto}: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Builds the TLS acceptor of a `syslog_tls` listener from PEM files. With `client_ca`,
/// senders must present a certificate signed by it (mutual TLS).
pub fn tls_acceptor(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<tokio_rustls::TlsAcceptor, String> {
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(
        tls_server_config(cert, key, client_ca)?,
    )))
}

/// A TLS server configuration (ring, TLS 1.2 and 1.3) from PEM files: the certificate chain, its
/// key, and optionally the CAs client certificates must chain to. Shared by the syslog TLS
/// listener and the dashboard's HTTPS.
pub fn tls_server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<rustls::ServerConfig, String> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{}: {e}", cert.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no certificate found", cert.display()));
    }
    let key_der =
        PrivateKeyDer::from_pem_file(key).map_err(|e| format!("{}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in
                CertificateDer::pem_file_iter(ca).map_err(|e| format!("{}: {e}", ca.display()))?
            {
                let c = c.map_err(|e| format!("{}: {e}", ca.display()))?;
                roots.add(c).map_err(|e| format!("{}: {e}", ca.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .map_err(|e| format!("{}: {e}", ca.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key_der)
        .map_err(|e| format!("{} / {}: {e}", cert.display(), key.display()))?;
    Ok(config)
}

/// Binds a UDP socket for syslog, asks the kernel to report receive-buffer overflows
/// (`SO_RXQ_OVFL`) and optionally enlarges the receive buffer.
pub fn bind_udp(
    listen: std::net::SocketAddr,
    receive_buffer_bytes: Option<usize>,
) -> std::io::Result<UdpSocket> {
    let socket = std::net::UdpSocket::bind(listen)?;
    socket.set_nonblocking(true)?;
    if let Err(e) = nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RxqOvfl, &1) {
        warn!(error = %e, "SO_RXQ_OVFL unavailable: UDP receive-buffer drops will not be counted");
    }
    if let Some(bytes) = receive_buffer_bytes
        && let Err(e) =
            nix::sys::socket::setsockopt(&socket, nix::sys::socket::sockopt::RcvBuf, &bytes)
    {
        warn!(error = %e, bytes, "cannot set the UDP receive buffer size");
    }
    UdpSocket::from_std(socket)
}

/// One datagram and the kernel's cumulative drop counter, if it sent one.
fn recv_datagram(socket: &UdpSocket, buf: &mut [u8]) -> std::io::Result<(usize, Option<u32>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg};
    let mut cmsg = nix::cmsg_space!(u32);
    let mut iov = [std::io::IoSliceMut::new(buf)];
    let msg = recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_TRUNC,
    )
    .map_err(std::io::Error::from)?;
    let mut dropped = None;
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::RxqOvfl(n) = c {
                dropped = Some(n);
            }
        }
    }
    Ok((msg.bytes, dropped))
}

/// Receives syslog over UDP until shutdown: one message per datagram (a trailing newline is
/// removed). Datagrams dropped by the kernel because the receive buffer was full are counted
/// in [`SourceCounters::receive_buffer_drops`] (Linux `SO_RXQ_OVFL`: the kernel attaches its
/// cumulative count to each datagram received, so drops show up with the next datagram);
/// datagrams lost on the network cannot be seen by anyone.
pub async fn syslog_udp(socket: UdpSocket, ctx: SourceContext) {
    let local = socket
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    info!(listen = %local, "syslog/udp listening");
    let mut shutdown = ctx.shutdown.clone();
    let mut buf = vec![0u8; MAX_LINE];
    let mut last_drops: u32 = 0;
    loop {
        tokio::select! {
            r = socket.readable() => {
                if let Err(e) = r {
                    warn!(error = %e, "syslog/udp: socket error");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            }
            _ = shutdown.changed() => return,
        }
        // Every datagram already waiting, up to one message's worth, is taken in this wake-up
        // and handed on together (one journal write, one message to the shipper).
        let mut datagrams = Lines::default();
        while datagrams.len() < EVENTS_PER_INPUT {
            let received = socket.try_io(tokio::io::Interest::READABLE, || {
                recv_datagram(&socket, &mut buf)
            });
            let (len, drops) = match received {
                Ok(r) => r,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    warn!(error = %e, "syslog/udp: receive failed");
                    break;
                }
            };
            if let Some(total) = drops
                && total != last_drops
            {
                let new = total.wrapping_sub(last_drops);
                last_drops = total;
                ctx.counters
                    .receive_buffer_drops
                    .fetch_add(u64::from(new), Ordering::Relaxed);
                warn!(
                    dropped = new,
                    total, "syslog/udp: the kernel dropped datagrams (receive buffer full)"
                );
            }
            // MSG_TRUNC makes `len` the datagram's real length: longer than the buffer means cut.
            let mut data = &buf[..len.min(buf.len())];
            while let Some(stripped) = data.strip_suffix(b"\n") {
                data = stripped.strip_suffix(b"\r").unwrap_or(stripped);
            }
            datagrams.push(data);
        }
        if !datagrams.is_empty() && !ctx.send_received(datagrams).await {
            return;
        }
    }
}

/// Replays the lines of a network source's journal that never reached the spool: those after
/// the spool's checkpoint for the journal (`spooled`: identity and position), or all of them
/// when the checkpoint is another journal's or there is none. Each keeps its receive time and
/// gets its journal checkpoint, so the next spooled batch moves the checkpoint past it.
/// Returns the number of lines replayed.
pub async fn replay_journal(
    journal: &Journal,
    spooled: &std::collections::BTreeMap<String, (u64, u64)>,
    ctx: &SourceContext,
) -> std::io::Result<u64> {
    let ours = |key: &str| {
        spooled
            .get(key)
            .filter(|(id, _)| *id == journal.id())
            .map(|(_, offset)| *offset)
    };
    // Every line before the journal's checkpoint is spooled; after it, a line of a kind whose
    // own checkpoint is past it is spooled too (batches are per kind, see the shipper).
    let from = ours(journal.key()).unwrap_or(0);
    let entries = journal.read_from(from)?;
    let mut sent = 0;
    for e in entries {
        let text = utf8_lossy(&e.line);
        let (kind, event) = edge_event(&text, e.receive_time_us, &ctx.edge);
        if ours(&crate::shipper::kind_key(journal.key(), kind)).is_some_and(|done| e.after <= done)
        {
            continue;
        }
        let cp = checkpoint(journal.shared_key(), journal.id(), e.start, e.after);
        ctx.count(
            event.get("parse_error") == Some(&Value::Bool(true)),
            e.line.len(),
        );
        if ctx.tx.send(Input::Tracked(kind, event, cp)).await.is_err() {
            break;
        }
        sent += 1;
    }
    if sent > 0 {
        info!(
            journal = journal.key(),
            lines = sent,
            "replayed journalled lines that were not yet spooled"
        );
    }
    Ok(sent)
}

/// Reads a whole file of lines once, through the edge; returns the number of lines sent.
pub async fn read_file(
    path: &Path,
    tx: &mpsc::Sender<Input>,
    stats: &Arc<Stats>,
    privacy: &Privacy,
    json: &Arc<JsonFields>,
) -> std::io::Result<u64> {
    let file = tokio::fs::File::open(path).await?;
    let (_keep, shutdown) = watch::channel(false);
    let ctx = one_off_context(tx, stats, privacy, json, shutdown);
    pump_lines(file, &ctx).await
}

/// The context of a file read once by `varde-collector send`: no journal, its own counters.
fn one_off_context(
    tx: &mpsc::Sender<Input>,
    stats: &Arc<Stats>,
    privacy: &Privacy,
    json: &Arc<JsonFields>,
    shutdown: watch::Receiver<bool>,
) -> SourceContext {
    SourceContext::new(
        tx.clone(),
        stats.clone(),
        Arc::new(SourceCounters::default()),
        shutdown,
        privacy.clone(),
    )
    .with_json_fields(json.clone())
}

/// What [`read_documents`] read of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentsRead {
    /// Documents sent through the edge.
    pub documents: u64,
    /// Whether the shipper stopped before every document was handed to it.
    pub shipper_gone: bool,
}

/// Reads a file of one or more concatenated JSON documents (a `.json` file, as SigmaHQ's
/// regression samples and PowerShell's `ConvertTo-Json` exports are) through the edge: each
/// document, line breaks and all, goes on exactly as a line of a JSON-lines file does (a
/// Windows record decoded straight into a row, anything else detected, parsed and
/// pseudonymised the same way), in runs of up to [`EVENTS_PER_INPUT`]. A document that does
/// not parse is kept as such a line is (a row marked with its parse error), and the documents
/// after it are read on ([`crate::import::JsonDocuments`] finds them by their brackets).
pub async fn read_documents(
    path: &Path,
    tx: &mpsc::Sender<Input>,
    stats: &Arc<Stats>,
    privacy: &Privacy,
    json: &Arc<JsonFields>,
) -> std::io::Result<DocumentsRead> {
    let bytes = tokio::fs::read(path).await?;
    let text = utf8_lossy(&bytes);
    let (_keep, shutdown) = watch::channel(false);
    let ctx = one_off_context(tx, stats, privacy, json, shutdown);
    let mut read = DocumentsRead {
        documents: 0,
        shipper_gone: false,
    };
    let mut lines = Lines::default();
    for document in crate::import::JsonDocuments::new(&text) {
        lines.push(document);
        if lines.len() >= EVENTS_PER_INPUT {
            let count = lines.len() as u64;
            if !ctx.send_received(std::mem::take(&mut lines)).await {
                read.shipper_gone = true;
                return Ok(read);
            }
            read.documents += count;
        }
    }
    let count = lines.len() as u64;
    if count > 0 {
        if !ctx.send_received(lines).await {
            read.shipper_gone = true;
            return Ok(read);
        }
        read.documents += count;
    }
    Ok(read)
}

/// The identity of a file (device and inode folded into one number), to notice rotation.
fn file_id(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.ino() ^ meta.dev().rotate_left(48)
}

/// Where [`follow_file`] starts reading a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileStart {
    /// At a checkpoint from the spool: (file identity, byte offset). A checkpoint of another
    /// file (rotated while the collector was down) means the file's beginning.
    Checkpoint(u64, u64),
    /// At the file's beginning: every line already in it is shipped.
    Beginning,
    /// At the file's end as it is when first opened: only lines written from now on.
    End,
}

impl FileStart {
    /// The start for a file given its checkpoint (if the spool has one) and the source's
    /// `start_at` policy, which applies only when there is no checkpoint.
    pub fn resolve(checkpoint: Option<(u64, u64)>, at: StartAt) -> Self {
        match (checkpoint, at) {
            (Some((id, offset)), _) => FileStart::Checkpoint(id, offset),
            (None, StartAt::Beginning) => FileStart::Beginning,
            (None, StartAt::End) => FileStart::End,
        }
    }
}

/// Follows a file from its checkpoint (or its beginning or end, see [`FileStart`]), as it
/// grows, until shutdown.
///
/// - Every line is sent with the position after it ([`Checkpoint`]); the spool stores the
///   position with the batch, so after a restart the file is read on from the last line that
///   reached the spool: nothing is lost and nothing is read twice.
/// - *Rotation by rename* (logrotate's default): the old file is read to its end (and for one
///   more second, for an application that has not reopened its log yet), then the new file at
///   the path from its start.
/// - *copytruncate*: when the file at the path becomes shorter than the position, it is read
///   again from its start. (Lines written between logrotate's copy and its truncate are lost
///   by copytruncate itself: prefer rotation by rename.)
/// - A checkpoint for a different file (rotated while the collector was down) is ignored:
///   the new file is read from its start.
pub async fn follow_file(path: PathBuf, start: FileStart, ctx: SourceContext) {
    let ctx = ctx.for_stream();
    let (start, mut at_end) = match start {
        FileStart::Checkpoint(id, offset) => (Some((id, offset)), false),
        FileStart::Beginning => (None, false),
        FileStart::End => (None, true),
    };
    let mut shutdown = ctx.shutdown.clone();
    let key: Arc<str> = path.to_string_lossy().into();
    let mut resume = start;
    let mut chunk = vec![0u8; 64 * 1024];
    'reopen: loop {
        if *shutdown.borrow() {
            return;
        }
        let mut file = match tokio::fs::File::open(&path).await {
            Ok(f) => f,
            Err(e) => {
                debug!(path = %path.display(), error = %e, "cannot open; retrying");
                // A file that did not exist at start is new when it appears: read it whole.
                at_end = false;
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        let Ok(meta) = file.metadata().await else {
            continue;
        };
        let id = file_id(&meta);
        let mut offset = match resume.take() {
            Some((rid, off)) if rid == id && off <= meta.len() => off,
            Some((rid, _)) if rid == id => {
                info!(path = %path.display(), "file shorter than its checkpoint (truncated); reading from the start");
                0
            }
            Some(_) => {
                info!(path = %path.display(), "file replaced since the checkpoint (rotated); reading the new file from the start");
                0
            }
            // Start at the end: only on the first open, never after a rotation (the new file's
            // lines are new).
            None if at_end => meta.len(),
            None => 0,
        };
        at_end = false;
        if let Err(e) = file.seek(std::io::SeekFrom::Start(offset)).await {
            warn!(path = %path.display(), error = %e, "seek failed");
            continue;
        }
        let mut buf: Vec<u8> = Vec::new();
        let mut draining: Option<std::time::Instant> = None;
        loop {
            let n = match file.read(&mut chunk).await {
                Ok(n) => n,
                Err(e) => {
                    warn!(path = %path.display(), error = %e, "read failed; reopening");
                    resume = Some((id, offset));
                    continue 'reopen;
                }
            };
            if n > 0 {
                buf.extend_from_slice(&chunk[..n]);
                if !ctx.send_file_lines(&mut buf, &key, id, &mut offset).await {
                    return;
                }
                continue;
            }
            if let Some(since) = draining {
                // After a rotation the old file is read for one more second, so that lines an
                // application writes before it reopens its log are not lost.
                if since.elapsed() < Duration::from_secs(1) {
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(250)) => continue,
                        _ = shutdown.changed() => return,
                    }
                }
                if !buf.is_empty() {
                    // The old file ends without a newline: its last line is complete now.
                    let line = std::mem::take(&mut buf);
                    let start = offset;
                    offset += line.len() as u64;
                    let cp = checkpoint(&key, id, start, offset);
                    if !ctx.send_line(&line, Some(cp)).await {
                        return;
                    }
                }
                info!(path = %path.display(), "file rotated; reading the new one from the start");
                continue 'reopen;
            }
            // At the end of the file: has it been rotated or truncated?
            let current = tokio::fs::metadata(&path).await.ok();
            let rotated = current.as_ref().is_some_and(|m| file_id(m) != id);
            let truncated = current
                .as_ref()
                .is_some_and(|m| file_id(m) == id && m.len() < offset + buf.len() as u64);
            if rotated {
                // Read the old file once more: a writer may have added lines after our last
                // read and before it reopened the new file.
                draining = Some(std::time::Instant::now());
                continue;
            }
            if truncated {
                info!(path = %path.display(), "file truncated (copytruncate); reading from the start");
                resume = Some((id, 0));
                continue 'reopen;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}

/// How long a compressed file must have been left alone before a pattern source reads it.
pub const GZIP_SETTLE: Duration = Duration::from_secs(2);

/// Whether a file source's file is gzip-compressed (a rotated log): its name ends in `.gz`.
pub fn is_gzip(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "gz")
}

/// The checkpoint key of a compressed file: its identity, compressed size and modification
/// time rather than its path, so that logrotate renaming `x.log.4.gz` to `x.log.5.gz` does not
/// make it a new file (a rename keeps all three), while a new file that happens to reuse a
/// deleted file's inode is still new.
fn gzip_key(meta: &std::fs::Metadata) -> String {
    use std::os::unix::fs::MetadataExt;
    format!(
        "gz:{:x}:{}:{}.{}",
        file_id(meta),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec()
    )
}

/// Reads a gzip-compressed (rotated) log file once, to its end, through the edge. Compressed
/// files do not grow, so nothing is followed: the task ends at the end of the file.
///
/// Each line carries a checkpoint of the decompressed bytes read so far, keyed by the file's
/// identity ([`gzip_key`]); on restart the file is decompressed again and the part before the
/// checkpoint skipped, so a file is shipped once however often the collector restarts or
/// logrotate renames it. `done` holds the keys of the files this run has started reading (a
/// pattern source shares it between its files); a file already in it is not read again. A damaged gzip stream ends the file: what was
/// decoded before the damage is shipped, the error is logged and counted as a framing error.
pub async fn read_gzip_file(
    path: PathBuf,
    checkpoints: &std::collections::BTreeMap<String, (u64, u64)>,
    done: &std::sync::Mutex<std::collections::BTreeSet<String>>,
    ctx: SourceContext,
) {
    let ctx = ctx.for_stream();
    let meta = match std::fs::metadata(&path) {
        Ok(m) => m,
        Err(e) => {
            warn!(path = %path.display(), error = %e, "cannot read compressed file");
            return;
        }
    };
    let key = gzip_key(&meta);
    let shared_key: Arc<str> = key.as_str().into();
    let id = file_id(&meta);
    // Claim the file: a pattern's next scan, or a rename, must not start a second reader.
    let claimed = done
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(key.clone());
    if !claimed {
        return;
    }
    let skip = checkpoints
        .get(&key)
        .filter(|(cid, _)| *cid == id)
        .map_or(0, |(_, off)| *off);
    // Decompression runs on a blocking thread and hands decoded chunks over a small bounded
    // channel: backpressure from the shipper stops the decoder too.
    let (chunks, mut rx) = mpsc::channel::<std::io::Result<Vec<u8>>>(4);
    let file_path = path.clone();
    let decoder = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        let file = match std::fs::File::open(&file_path) {
            Ok(f) => f,
            Err(e) => {
                let _ = chunks.blocking_send(Err(e));
                return;
            }
        };
        let mut gz = flate2::read::MultiGzDecoder::new(std::io::BufReader::new(file));
        let mut to_skip = skip;
        loop {
            let mut chunk = vec![0u8; 64 * 1024];
            match gz.read(&mut chunk) {
                Ok(0) => return,
                Ok(n) => {
                    chunk.truncate(n);
                    if to_skip >= n as u64 {
                        to_skip -= n as u64;
                        continue;
                    }
                    let from = usize::try_from(to_skip).unwrap_or(0);
                    to_skip = 0;
                    chunk.drain(..from);
                    if chunks.blocking_send(Ok(chunk)).is_err() {
                        return;
                    }
                }
                Err(e) => {
                    let _ = chunks.blocking_send(Err(e));
                    return;
                }
            }
        }
    });
    info!(path = %path.display(), from = skip, "reading compressed file");
    let mut shutdown = ctx.shutdown.clone();
    let mut buf = Vec::new();
    let mut offset = skip;
    let mut complete = true;
    loop {
        let next = tokio::select! {
            c = rx.recv() => c,
            _ = shutdown.changed() => { complete = false; None }
        };
        match next {
            None => break,
            Some(Ok(chunk)) => {
                buf.extend_from_slice(&chunk);
                if !ctx
                    .send_file_lines(&mut buf, &shared_key, id, &mut offset)
                    .await
                {
                    return;
                }
            }
            Some(Err(e)) => {
                ctx.counters.framing_errors.fetch_add(1, Ordering::Relaxed);
                warn!(path = %path.display(), error = %e, "compressed file is damaged; shipping what was decoded before the damage");
                break;
            }
        }
    }
    drop(rx);
    let _ = decoder.await;
    if !complete {
        return;
    }
    if !buf.is_empty() {
        let line = std::mem::take(&mut buf);
        let start = offset;
        offset += line.len() as u64;
        if !ctx
            .send_line(&line, Some(checkpoint(&shared_key, id, start, offset)))
            .await
        {
            return;
        }
    }
    info!(path = %path.display(), "compressed file read to its end");
}

/// Whether a file source's path is a pattern: `*` or `?` in its file name.
pub fn is_glob(path: &Path) -> bool {
    path.file_name().is_some_and(|n| {
        n.as_encoded_bytes()
            .iter()
            .any(|b| matches!(b, b'*' | b'?'))
    })
}

/// Matches a file name against a pattern of `*` (any run of bytes) and `?` (one byte).
pub fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// The files in the pattern's directory whose names match it, sorted.
fn glob_matches(pattern: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (pattern.parent(), pattern.file_name()) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter(|e| wildcard_match(name.as_encoded_bytes(), e.file_name().as_encoded_bytes()))
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Follows every file matching `pattern` (wildcards `*` and `?` in the file name only), each
/// as [`follow_file`] does, and picks up new matching files every two seconds.
///
/// Make the pattern match the live files only (`/var/log/nginx/*.log`, not `*.log*`): a rotated
/// file that still matches would be read again under its new name. Compressed rotated files
/// are the exception: matches ending in `.gz` are read once each ([`read_gzip_file`]), however
/// logrotate renames them, so `/var/log/nginx/access.log.*.gz` ships a backlog of rotated logs.
///
/// `start_at` applies to the files that match when the collector starts and have no
/// checkpoint; a file that appears later is new, and is read from its beginning.
pub async fn follow_glob(
    pattern: PathBuf,
    checkpoints: std::collections::BTreeMap<String, (u64, u64)>,
    start_at: StartAt,
    ctx: SourceContext,
) {
    let mut shutdown = ctx.shutdown.clone();
    let mut followed = std::collections::BTreeSet::new();
    let mut tasks = Vec::new();
    let mut first_scan = true;
    let checkpoints = Arc::new(checkpoints);
    let gzip_done = Arc::new(std::sync::Mutex::new(std::collections::BTreeSet::new()));
    info!(pattern = %pattern.display(), "following files matching a pattern");
    loop {
        let pattern2 = pattern.clone();
        let matches = tokio::task::spawn_blocking(move || glob_matches(&pattern2))
            .await
            .unwrap_or_default();
        for path in matches {
            if is_gzip(&path) {
                // Compressed files are read once each, recognised by their identity, not their
                // name: a renamed one is not read again, a new one under an old name is read.
                // A file modified in the last seconds may still be being compressed (logrotate
                // writes the .gz in place): it waits for a later scan.
                let ready = std::fs::metadata(&path).is_ok_and(|m| {
                    let settled = m
                        .modified()
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|age| age >= GZIP_SETTLE);
                    settled
                        && !gzip_done
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .contains(&gzip_key(&m))
                });
                if ready {
                    let (checkpoints, done, ctx) =
                        (checkpoints.clone(), gzip_done.clone(), ctx.clone());
                    tasks.push(tokio::spawn(async move {
                        read_gzip_file(path, &checkpoints, &done, ctx).await;
                    }));
                }
                continue;
            }
            if followed.insert(path.clone()) {
                info!(path = %path.display(), "following a new file");
                let checkpoint = checkpoints.get(path.to_string_lossy().as_ref()).copied();
                let at = if first_scan {
                    start_at
                } else {
                    StartAt::Beginning
                };
                let start = FileStart::resolve(checkpoint, at);
                tasks.push(tokio::spawn(follow_file(path, start, ctx.clone())));
            }
        }
        first_scan = false;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(2)) => {}
            _ = shutdown.changed() => break,
        }
    }
    for t in tasks {
        let _ = t.await;
    }
}

fn checkpoint(key: &Arc<str>, file_id: u64, start: u64, offset: u64) -> Checkpoint {
    Checkpoint {
        key: Arc::clone(key),
        file_id,
        offset,
        start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use varde_core::SourceKind;

    #[test]
    fn lines_split_on_lf_and_crlf_keeping_the_tail() {
        let mut buf = b"a\r\nb\n\nc".to_vec();
        assert_eq!(
            take_lines(&mut buf).to_vecs(),
            vec![b"a".to_vec(), b"b".to_vec(), b"".to_vec()]
        );
        assert_eq!(buf, b"c");
    }

    proptest! {
        /// However the bytes are chunked, the same lines come out and no byte is lost.
        #[test]
        fn framing_is_independent_of_chunking(
            lines in prop::collection::vec("[^\n\r]{0,50}", 0..20),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let data: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
            let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
            points.push(0);
            points.push(data.len());
            points.sort_unstable();
            let mut buf = Vec::new();
            let mut out = Vec::new();
            for w in points.windows(2) {
                buf.extend_from_slice(&data[w[0]..w[1]]);
                out.extend(take_lines(&mut buf).to_vecs());
            }
            prop_assert!(buf.is_empty());
            let want: Vec<Vec<u8>> = lines.iter().map(|l| l.clone().into_bytes()).collect();
            prop_assert_eq!(out, want);
        }

        /// A received line reads as the standard library's lossy conversion reads it, valid
        /// UTF-8 or not (ASCII, multi-byte text, cut sequences, stray bytes).
        #[test]
        fn received_text_is_the_lossy_conversion(
            parts in prop::collection::vec(
                prop_oneof![
                    "[ -~]{0,40}".prop_map(String::into_bytes),
                    "\\PC{0,10}".prop_map(String::into_bytes),
                    prop::collection::vec(any::<u8>(), 0..6),
                ],
                0..6,
            ),
        ) {
            let line: Vec<u8> = parts.concat();
            prop_assert_eq!(utf8_lossy(&line), String::from_utf8_lossy(&line));
        }
    }

    /// Feeds `data` to a new framer in the pieces given by `cuts`; returns the messages and
    /// the framer.
    fn frame_in_pieces(data: &[u8], cuts: &[prop::sample::Index]) -> (Vec<Vec<u8>>, Framer) {
        let mut points: Vec<usize> = cuts.iter().map(|c| c.index(data.len() + 1)).collect();
        points.push(0);
        points.push(data.len());
        points.sort_unstable();
        let mut framer = Framer::new();
        let mut out = Vec::new();
        for w in points.windows(2) {
            out.extend(framer.push(&data[w[0]..w[1]]).to_vecs());
        }
        out.extend(framer.finish());
        (out, framer)
    }

    #[test]
    fn framing_is_detected_per_connection() {
        let mut f = Framer::new();
        assert_eq!(
            f.push(b"<13>a\n<13>b\n").to_vecs(),
            vec![b"<13>a".to_vec(), b"<13>b".to_vec()]
        );
        assert_eq!(f.mode(), Framing::NonTransparent);

        let mut f = Framer::new();
        let got = f.push(b"9 <13>a\nb c11 <13>second\n").to_vecs();
        assert_eq!(got, vec![b"<13>a\nb c".to_vec(), b"<13>second\n".to_vec()]);
        assert_eq!(f.mode(), Framing::OctetCounting);
        assert_eq!(f.finish(), None);
        assert_eq!(f.errors, 0);
    }

    #[test]
    fn a_bad_octet_count_falls_back_to_lines_keeping_every_byte() {
        let mut f = Framer::new();
        let mut got = f.push(b"5 <13>a12x oops\n<13>b\n").to_vecs();
        got.extend(f.finish());
        assert_eq!(
            got,
            vec![b"<13>a".to_vec(), b"12x oops".to_vec(), b"<13>b".to_vec()]
        );
        assert_eq!(f.errors, 1);
        assert_eq!(f.mode(), Framing::NonTransparent);
    }

    #[test]
    fn a_connection_closed_mid_frame_delivers_the_partial_frame_and_counts_it() {
        let mut f = Framer::new();
        assert!(f.push(b"20 <13>only ten").is_empty());
        assert_eq!(f.finish(), Some(b"<13>only ten".to_vec()));
        assert_eq!(f.errors, 1);
    }

    #[test]
    fn octet_frames_longer_than_max_line_are_cut_not_dropped() {
        let body = vec![b'y'; MAX_LINE + 10];
        let mut data = format!("{} ", body.len()).into_bytes();
        data.extend_from_slice(&body);
        let mut f = Framer::new();
        let got = f.push(&data);
        assert_eq!(
            got.iter().map(<[u8]>::len).collect::<Vec<_>>(),
            vec![MAX_LINE, 10]
        );
    }

    proptest! {
        /// Octet-counted messages of any bytes (newlines included), cut into any pieces, come
        /// out whole and in order.
        #[test]
        fn octet_counting_is_independent_of_chunking(
            messages in prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..15),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let mut data = Vec::new();
            for m in &messages {
                data.extend_from_slice(format!("{} ", m.len()).as_bytes());
                data.extend_from_slice(m);
            }
            let (out, framer) = frame_in_pieces(&data, &cuts);
            prop_assert_eq!(framer.errors, 0);
            prop_assert_eq!(out, messages);
        }

        /// Newline-framed syslog (starting with `<`) gives the same lines as `take_lines`.
        #[test]
        fn newline_framing_matches_take_lines(
            lines in prop::collection::vec("<[0-9]{1,3}>[^\n\r]{0,60}", 1..20),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..8),
        ) {
            let data: Vec<u8> = lines.iter().flat_map(|l| format!("{l}\n").into_bytes()).collect();
            let (out, framer) = frame_in_pieces(&data, &cuts);
            prop_assert_eq!(framer.mode(), Framing::NonTransparent);
            let want: Vec<Vec<u8>> = lines.iter().map(|l| l.clone().into_bytes()).collect();
            prop_assert_eq!(out, want);
        }

        /// A peer's arbitrary bytes never panic the framer, and every byte that is not framing
        /// (length prefixes, separators) comes out: nothing is silently dropped.
        #[test]
        fn arbitrary_bytes_never_panic_and_are_not_lost(
            data in prop::collection::vec(any::<u8>(), 0..2000),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
        ) {
            let (out, _) = frame_in_pieces(&data, &cuts);
            let out_bytes: usize = out.iter().map(Vec::len).sum();
            prop_assert!(out_bytes <= data.len());
            // Separators and length prefixes are at most every byte that is a digit, a space,
            // CR or LF.
            let framing: usize = data
                .iter()
                .filter(|b| b.is_ascii_digit() || matches!(b, b' ' | b'\n' | b'\r' | b'\t'))
                .count();
            prop_assert!(out_bytes + framing >= data.len());
        }
    }

    #[test]
    fn wildcards_match_file_names() {
        assert!(wildcard_match(b"*.log", b"access.log"));
        assert!(wildcard_match(b"*.log", b".log"));
        assert!(!wildcard_match(b"*.log", b"access.log.1"));
        assert!(wildcard_match(b"app-?.log", b"app-1.log"));
        assert!(!wildcard_match(b"app-?.log", b"app-12.log"));
        assert!(wildcard_match(b"a*b*c", b"aXXbYYbc"));
        assert!(wildcard_match(b"*", b""));
        assert!(!wildcard_match(b"a", b""));
        assert!(is_glob(Path::new("/var/log/nginx/*.log")));
        assert!(!is_glob(Path::new("/var/log/syslog")));
    }

    /// Receives events from the channel until `n` lines arrived (generous deadline).
    async fn receive(rx: &mut mpsc::Receiver<Input>, n: usize) -> Vec<(String, Option<u64>)> {
        let mut out = Vec::new();
        while out.len() < n {
            let input = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("lines within a minute")
                .expect("source alive");
            match input {
                Input::Tracked(_, e, c) => {
                    out.push((e.message.unwrap_or_default(), Some(c.offset)))
                }
                Input::Event(_, e) => out.push((e.message.unwrap_or_default(), None)),
                Input::Rows(mut rows) => out.extend(rows.iter_mut().map(|(_, row, c)| {
                    let message = row.message().unwrap_or_default().to_owned();
                    (message, c.as_ref().map(|c| c.offset))
                })),
                Input::Flush(_) => {}
            }
        }
        out
    }

    /// The number of lines in each message the source sends, for `n` lines in all.
    async fn reads(rx: &mut mpsc::Receiver<Input>, n: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        while sizes.iter().sum::<usize>() < n {
            let input = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("lines within a minute")
                .expect("source alive");
            match input {
                Input::Rows(rows) => sizes.push(rows.len()),
                Input::Event(..) | Input::Tracked(..) => sizes.push(1),
                Input::Flush(_) => {}
            }
        }
        sizes
    }

    /// A connection read with `pause` after a short read: its sending end, what the source
    /// sends, its stop signal and the reading task.
    #[allow(clippy::type_complexity)]
    fn pausing_connection(
        pause: Duration,
    ) -> (
        tokio::io::DuplexStream,
        mpsc::Receiver<Input>,
        watch::Sender<bool>,
        tokio::task::JoinHandle<std::io::Result<u64>>,
    ) {
        let (tx_side, rx_side) = tokio::io::duplex(64 * 1024);
        let (tx, rx) = mpsc::channel(100);
        let (ctx, stop) = SourceContext::new_test(tx);
        let task = tokio::spawn(async move { pump_framed_pausing(rx_side, &ctx, pause).await });
        (tx_side, rx, stop, task)
    }

    #[tokio::test]
    async fn lines_that_arrive_during_the_pause_after_a_short_read_are_read_at_once() {
        use tokio::io::AsyncWriteExt;
        let (mut tx_side, mut rx, _stop, task) = pausing_connection(Duration::from_millis(500));
        tx_side.write_all(b"one\n").await.expect("write");
        assert_eq!(reads(&mut rx, 1).await, vec![1]);
        // The reader now pauses: three writes, each giving the reader a chance to run (this
        // test's runtime has one thread), arrive as one read. Without the pause each would be
        // a read of its own.
        for line in [&b"two\n"[..], b"three\n", b"four\n"] {
            tx_side.write_all(line).await.expect("write");
            tokio::task::yield_now().await;
        }
        assert_eq!(reads(&mut rx, 3).await, vec![3]);
        drop(tx_side);
        let sent = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the connection ends with its sender")
            .expect("task")
            .expect("read");
        assert_eq!(sent, 4);
    }

    #[tokio::test]
    async fn a_shutdown_during_the_pause_ends_the_connection_with_its_last_line() {
        use tokio::io::AsyncWriteExt;
        // A pause longer than the wait below: only the shutdown can end it in time.
        let (mut tx_side, mut rx, stop, task) = pausing_connection(Duration::from_secs(120));
        tx_side
            .write_all(b"one\ntwo, unterminated")
            .await
            .expect("write");
        assert_eq!(receive(&mut rx, 1).await[0].0, "one");
        stop.send(true).expect("stop");
        let sent = tokio::time::timeout(Duration::from_secs(30), task)
            .await
            .expect("the connection ends at shutdown, its sender still open")
            .expect("task")
            .expect("read");
        assert_eq!(sent, 2);
        assert_eq!(receive(&mut rx, 1).await[0].0, "two, unterminated");
        drop(tx_side);
    }

    /// The events of every row the source sends, until the channel is empty and closed.
    async fn all_events(mut rx: mpsc::Receiver<Input>) -> Vec<(SourceKind, Event)> {
        let mut out = Vec::new();
        while let Some(input) = rx.recv().await {
            match input {
                Input::Rows(mut rows) => {
                    out.extend(
                        rows.iter_mut()
                            .map(|(kind, row, _)| (*kind, row.to_event())),
                    );
                }
                Input::Event(kind, e) | Input::Tracked(kind, e, _) => out.push((kind, e)),
                Input::Flush(_) => {}
            }
        }
        out
    }

    #[tokio::test]
    async fn a_file_of_json_documents_is_read_through_the_edge_broken_ones_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("export.json");
        // A pretty-printed Windows record (a command line holding an escaped line break and a
        // national identity number), a one-line generic document, a pretty-printed one with
        // `\r\n` line ends, a broken document, one whose strings hold brackets and quotes, a
        // stray number, and a last document cut short.
        let text = concat!(
            "{\n  \"Event\": {\n    \"System\": {\n      \"EventID\": 4688,\n",
            "      \"Channel\": \"Security\",\n      \"Computer\": \"ws01.kommune.no\",\n",
            "      \"TimeCreated\": {\"#attributes\": {\"SystemTime\": \"2026-04-17T05:24:53.088849Z\"}}\n",
            "    },\n    \"EventData\": {\n",
            "      \"CommandLine\": \"cmd /c echo 01017000027\\nsecond line\",\n",
            "      \"User\": \"KOMMUNE\\\\ola\"\n    }\n  }\n}\n",
            "{\"message\": \"one line\", \"host\": \"app01\"}",
            "\r\n{\r\n  \"message\": \"two\\tlines\",\r\n  \"n\": [1,\r\n 2]\r\n}\n",
            "{\"broken\": }\n",
            "{\"message\": \"a } and a \\\" and a ] and a \\\\\"}\n",
            "42\n",
            "{\"message\": \"cut",
        );
        std::fs::write(&path, text).expect("write");
        let (tx, rx) = mpsc::channel(100);
        let read = read_documents(
            &path,
            &tx,
            &Arc::new(Stats::default()),
            &test_privacy(),
            &Arc::new(JsonFields::default()),
        )
        .await
        .expect("read");
        drop(tx);
        assert_eq!(read.documents, 7);
        assert!(!read.shipper_gone);
        let events = all_events(rx).await;
        let summary: Vec<(SourceKind, Option<&str>)> = events
            .iter()
            .map(|(k, e)| (*k, e.message.as_deref()))
            .collect();
        assert_eq!(events.len(), 7, "{events:?}");

        let (kind, windows) = &events[0];
        assert_eq!(*kind, SourceKind::WindowsEvent);
        assert_eq!(windows.get("win_event_id"), Some(&Value::UInt(4688)));
        assert_eq!(windows.host.as_deref(), Some("ws01.kommune.no"));
        let attr = |e: &Event, k: &str| {
            e.attrs
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.clone())
        };
        let command = attr(windows, "CommandLine").expect("CommandLine");
        // The escaped line break is a line break again; the identity number is pseudonymised.
        assert!(command.contains("\nsecond line"), "{command}");
        assert!(!command.contains("01017000027"), "{command}");
        assert!(command.contains("fnr:"), "{command}");
        assert_eq!(attr(windows, "User").as_deref(), Some("KOMMUNE\\ola"));

        assert_eq!(
            summary[1..3],
            [
                (SourceKind::GenericJson, Some("one line")),
                (SourceKind::GenericJson, Some("two\tlines")),
            ]
        );
        assert_eq!(events[1].1.host.as_deref(), Some("app01"));
        assert_eq!(
            summary[4],
            (
                SourceKind::GenericJson,
                Some("a } and a \" and a ] and a \\")
            )
        );
        // What is not a document is kept whole, as a line that is not syslog is.
        for (i, whole) in [(3, "{\"broken\": }"), (5, "42"), (6, "{\"message\": \"cut")] {
            assert_eq!(summary[i], (SourceKind::Syslog, Some(whole)), "{summary:?}");
            assert_eq!(events[i].1.get("parse_error"), Some(&Value::Bool(true)));
        }
    }

    fn append(path: &Path, text: &str) {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .expect("open");
        f.write_all(text.as_bytes()).expect("write");
    }

    #[tokio::test]
    async fn files_are_followed_through_rename_and_copytruncate_with_checkpoints() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "one\ntwo\n");
        let (tx, mut rx) = mpsc::channel(100);
        let (ctx, stop) = SourceContext::new_test(tx);
        let task = tokio::spawn(follow_file(path.clone(), FileStart::Beginning, ctx.clone()));
        let got = receive(&mut rx, 2).await;
        assert_eq!(got, vec![("one".into(), Some(4)), ("two".into(), Some(8))]);

        // Rotation by rename: a late write to the old file, then the new file.
        std::fs::rename(&path, dir.path().join("app.log.1")).expect("rename");
        append(&dir.path().join("app.log.1"), "late\n");
        append(&path, "new\n");
        let got: Vec<String> = receive(&mut rx, 2).await.into_iter().map(|l| l.0).collect();
        assert_eq!(got, vec!["late".to_owned(), "new".to_owned()]);

        // copytruncate: the file shrinks, and is read again from its start.
        std::fs::write(&path, "").expect("truncate");
        tokio::time::sleep(Duration::from_millis(600)).await;
        append(&path, "after truncate\n");
        let got = receive(&mut rx, 1).await;
        assert_eq!(got, vec![("after truncate".into(), Some(15))]);
        let _ = stop.send(true);
        task.await.expect("follower");

        // A restart from a checkpoint reads on after it, not from the start.
        append(&path, "resumed\n");
        let id = file_id(&std::fs::metadata(&path).expect("stat"));
        let (tx, mut rx) = mpsc::channel(100);
        let (ctx, stop) = SourceContext::new_test(tx);
        let task = tokio::spawn(follow_file(
            path.clone(),
            FileStart::Checkpoint(id, 15),
            ctx,
        ));
        assert_eq!(
            receive(&mut rx, 1).await,
            vec![("resumed".into(), Some(23))]
        );
        let _ = stop.send(true);
        task.await.expect("follower");
    }

    #[tokio::test]
    async fn a_glob_follows_existing_and_new_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        append(&dir.path().join("a.log"), "from a\n");
        append(&dir.path().join("skip.txt"), "not matched\n");
        let (tx, mut rx) = mpsc::channel(100);
        let (ctx, stop) = SourceContext::new_test(tx);
        let task = tokio::spawn(follow_glob(
            dir.path().join("*.log"),
            std::collections::BTreeMap::new(),
            StartAt::Beginning,
            ctx,
        ));
        assert_eq!(receive(&mut rx, 1).await[0].0, "from a");
        append(&dir.path().join("b.log"), "from b\n");
        assert_eq!(receive(&mut rx, 1).await[0].0, "from b");
        let _ = stop.send(true);
        task.await.expect("glob follower");
    }

    fn gzip(path: &Path, text: &str) {
        use std::io::Write;
        let file = std::fs::File::create(path).expect("create");
        let mut gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        gz.write_all(text.as_bytes()).expect("compress");
        gz.finish().expect("finish");
    }

    #[tokio::test]
    async fn compressed_rotated_files_are_read_once_with_checkpoints_across_renames() {
        let dir = tempfile::tempdir().expect("tempdir");
        gzip(
            &dir.path().join("app.log.2.gz"),
            "old one\nold two\nno newline",
        );
        append(&dir.path().join("app.log"), "live\n");
        let (tx, mut rx) = mpsc::channel(100);
        let (ctx, stop) = SourceContext::new_test(tx);
        let task = tokio::spawn(follow_glob(
            dir.path().join("app.log.*.gz"),
            std::collections::BTreeMap::new(),
            StartAt::Beginning,
            ctx,
        ));
        let got = receive(&mut rx, 3).await;
        assert_eq!(
            got,
            vec![
                ("old one".into(), Some(8)),
                ("old two".into(), Some(16)),
                ("no newline".into(), Some(26)),
            ]
        );
        // logrotate renames it, and adds a new compressed file: only the new one is read.
        std::fs::rename(
            dir.path().join("app.log.2.gz"),
            dir.path().join("app.log.3.gz"),
        )
        .expect("rename");
        gzip(&dir.path().join("app.log.2.gz"), "newer\n");
        assert_eq!(receive(&mut rx, 1).await, vec![("newer".into(), Some(6))]);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(rx.try_recv().is_err(), "a renamed file was read again");
        let _ = stop.send(true);
        task.await.expect("glob follower");

        // After a restart with a checkpoint in the middle of a file, the rest of it is read.
        let path = dir.path().join("app.log.3.gz");
        let meta = std::fs::metadata(&path).expect("stat");
        let checkpoints =
            std::collections::BTreeMap::from([(gzip_key(&meta), (file_id(&meta), 8))]);
        let (tx, mut rx) = mpsc::channel(100);
        let (ctx, _stop) = SourceContext::new_test(tx);
        let done = std::sync::Mutex::new(std::collections::BTreeSet::new());
        read_gzip_file(path.clone(), &checkpoints, &done, ctx.clone()).await;
        let got: Vec<String> = receive(&mut rx, 2).await.into_iter().map(|l| l.0).collect();
        assert_eq!(got, vec!["old two".to_owned(), "no newline".to_owned()]);
        // Read to its end in this run: not again.
        read_gzip_file(path, &checkpoints, &done, ctx).await;
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_damaged_compressed_file_ships_what_decoded_and_counts_the_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.log.1.gz");
        let lines: String = (0..2000).map(|i| format!("line {i}\n")).collect();
        gzip(&path, &lines);
        let mut bytes = std::fs::read(&path).expect("read");
        let cut = bytes.len() / 2;
        bytes.truncate(cut);
        std::fs::write(&path, &bytes).expect("write");
        let (tx, mut rx) = mpsc::channel(10_000);
        let (ctx, _stop) = SourceContext::new_test(tx);
        let counters = ctx.counters.clone();
        let done = std::sync::Mutex::new(std::collections::BTreeSet::new());
        read_gzip_file(path, &std::collections::BTreeMap::new(), &done, ctx).await;
        let mut n = 0;
        while let Ok(Input::Rows(mut rows)) = rx.try_recv() {
            for (_, row, c) in rows.iter_mut() {
                assert!(c.is_some());
                assert!(row.message().is_some_and(|m| m.starts_with("line ")));
                n += 1;
            }
        }
        assert!(n > 0 && n < 2000, "{n} lines");
        assert_eq!(counters.framing_errors.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn start_at_end_skips_what_is_there_but_not_what_comes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("app.log");
        append(&path, "before start\n");
        let (tx, mut rx) = mpsc::channel(100);
        let (ctx, stop) = SourceContext::new_test(tx);
        let task = tokio::spawn(follow_file(path.clone(), FileStart::End, ctx));
        tokio::time::sleep(Duration::from_millis(600)).await;
        append(&path, "after start\n");
        assert_eq!(
            receive(&mut rx, 1).await,
            vec![("after start".into(), Some(25))]
        );
        // A file that appears after the start is new: read from its beginning even at `End`.
        let late = dir.path().join("late.log");
        let (tx2, mut rx2) = mpsc::channel(100);
        let (ctx2, stop2) = SourceContext::new_test(tx2);
        let task2 = tokio::spawn(follow_file(late.clone(), FileStart::End, ctx2));
        tokio::time::sleep(Duration::from_millis(700)).await;
        append(&late, "first line of a new file\n");
        assert_eq!(receive(&mut rx2, 1).await[0].0, "first line of a new file");
        let _ = stop2.send(true);
        task2.await.expect("follower");
        // After a rotation the new file is read from its beginning.
        std::fs::rename(&path, dir.path().join("app.log.1")).expect("rename");
        append(&path, "rotated in\n");
        assert_eq!(receive(&mut rx, 1).await[0].0, "rotated in");
        let _ = stop.send(true);
        task.await.expect("follower");
        assert_eq!(
            FileStart::resolve(Some((1, 2)), StartAt::End),
            FileStart::Checkpoint(1, 2)
        );
    }

    #[tokio::test]
    async fn lines_become_typed_events_of_their_kind() {
        let (tx, mut rx) = mpsc::channel(100);
        let (ctx, _stop) = SourceContext::new_test(tx);
        for line in [
            "<38>1 2024-05-01T09:59:58Z ssh01 sshd 7 - - Accepted password for root from 203.0.113.7 port 4000 ssh2",
            r#"{"winlog":{"event_id":4688,"channel":"Security","computer_name":"ws01","event_data":{"NewProcessName":"C:\\x.exe"}}}"#,
            r#"{"level":"warn","msg":"disk 91 % full","host":"app01"}"#,
            "søknad fra 31129956715",
        ] {
            assert!(ctx.send_line(line.as_bytes(), None).await);
        }
        let mut kinds = Vec::new();
        for _ in 0..4 {
            if let Some(Input::Event(kind, e)) = rx.recv().await {
                kinds.push((kind, e.message.unwrap_or_default()));
            }
        }
        assert_eq!(kinds[0].0, SourceKind::Auth);
        assert_eq!(kinds[1].0, SourceKind::WindowsEvent);
        assert_eq!(
            kinds[2],
            (SourceKind::GenericJson, "disk 91 % full".to_owned())
        );
        assert_eq!(kinds[3].0, SourceKind::Syslog);
        assert!(!kinds[3].1.contains("31129956715"), "{}", kinds[3].1);
        let edge = ctx.counters.edge.snapshot();
        assert_eq!(edge.national_ids, 1);
        assert_eq!(ctx.counters.events.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn overlong_lines_are_cut_not_dropped() {
        let mut buf = vec![b'x'; MAX_LINE * 2 + 10];
        buf.push(b'\n');
        let lines = take_lines(&mut buf);
        assert_eq!(
            lines.iter().map(<[u8]>::len).collect::<Vec<_>>(),
            vec![MAX_LINE, MAX_LINE, 10]
        );
        assert!(buf.is_empty());
    }
}
