//! The journal of a network source: every line a TCP, TLS or UDP listener accepted is appended
//! here *before* it goes to the batcher, so that a line the collector took from a sender is a
//! line it keeps, even when the process is killed with the batch still open.
//!
//! A network line then travels like a file line: it carries a checkpoint (key
//! `journal:<source>`, the journal's identity, the journal position after the line), the spool
//! records the checkpoint in the same record as the batch that holds the line, and after a
//! restart the collector replays the journal from the last spooled checkpoint: exactly the lines
//! that never reached the spool, with their original receive time. Segments that lie wholly
//! before the spooled checkpoint are retired: kept for reuse (up to [`SPARE_SEGMENTS`]) or
//! deleted.
//!
//! Layout under the source's directory:
//!
//! - `id`: the journal's identity (µs since the epoch at creation, decimal). A checkpoint of
//!   another identity is not this journal's (the directory was removed) and is ignored.
//! - `<start>.seg`: a segment, named by the journal position of its first byte (20 digits).
//!   Records: `len: u32 LE` (of the line), `crc32: u32 LE` (of the record's journal position as
//!   `u64 LE`, the time and the line), `receive time µs: i64 LE`, the line. A record that is
//!   short or fails its checksum (a torn write at power loss, or what a reused segment held
//!   before) ends the segment there; the rest is cut off when the journal is opened.
//! - `spare-<n>`: a retired segment kept to be written again. Overwriting blocks a file
//!   already has costs the kernel less than allocating new ones and freeing old ones at the
//!   rate lines arrive; the old records left behind the new ones cannot pass for new ones,
//!   because a record's checksum covers its position and positions only grow.
//! - `<start>.wal`: a segment of the first format (checksum of time and line only), written by
//!   collectors before segments were reused. It is read as such after an upgrade, never
//!   appended to (the journal goes on in a new `.seg` where it ends) and deleted once spooled.
//!
//! Durability: `write(2)` of each received chunk's records happens before the lines are handed
//! on, so a process crash loses nothing. Against power loss the journal is `fsync`ed on the
//! spool's policy (see `docs/collector.md`): at most the last interval's lines can be lost.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A segment is closed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 8 << 20;
/// Retired segments kept per journal to be written again (each about [`SEGMENT_BYTES`] on
/// disk); more are deleted.
pub const SPARE_SEGMENTS: usize = 8;
/// Bytes before each line in a record.
const HEADER: usize = 16;
/// The longest line a record holds (longer lines were cut by the framer already).
const MAX_RECORD_LINE: usize = 16 << 20;

/// The record format of a segment, told by its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Format {
    /// `.wal`: the checksum covers the time and the line.
    First,
    /// `.seg`: the checksum covers the record's journal position too.
    Positioned,
}

/// A segment on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Segment {
    start: u64,
    format: Format,
}

impl Segment {
    fn name(&self) -> String {
        match self.format {
            Format::First => format!("{:020}.wal", self.start),
            Format::Positioned => format!("{:020}.seg", self.start),
        }
    }
}

/// One line read back from the journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The line as received.
    pub line: Vec<u8>,
    /// When it was received, µs since the epoch.
    pub receive_time_us: i64,
    /// Journal position of its record's first byte.
    pub start: u64,
    /// Journal position after its record.
    pub after: u64,
}

/// The journal of one network source.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    key: std::sync::Arc<str>,
    id: u64,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// The segment being written (always of the positioned format).
    file: File,
    seg_start: u64,
    /// Bytes of records in it: where the next record goes.
    len: u64,
    unsynced: bool,
    /// Retired segments ready to be written again.
    spares: Vec<PathBuf>,
    /// The records of one append, reused.
    buf: Vec<u8>,
}

/// What a journal directory holds: its segments (ascending) and its spare files.
fn listing(dir: &Path) -> io::Result<(Vec<Segment>, Vec<PathBuf>)> {
    let mut segments = Vec::new();
    let mut spares = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let segment = |suffix: &str, format| {
            name.strip_suffix(suffix)
                .and_then(|s| s.parse::<u64>().ok())
                .map(|start| Segment { start, format })
        };
        if let Some(s) =
            segment(".seg", Format::Positioned).or_else(|| segment(".wal", Format::First))
        {
            segments.push(s);
        } else if name.starts_with("spare-") {
            spares.push(entry.path());
        }
    }
    segments.sort_unstable();
    Ok((segments, spares))
}

/// The checksum of a record at journal position `at`: `time_and_line` is the record after its
/// length and checksum (the receive time, then the line).
fn checksum(format: Format, at: u64, time_and_line: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    if format == Format::Positioned {
        hasher.update(&at.to_le_bytes());
    }
    hasher.update(time_and_line);
    hasher.finalize()
}

/// Parses the records of `data` (segment `seg`), calling `each` for those ending after `from`;
/// returns the length of the valid prefix.
fn scan(data: &[u8], seg: Segment, from: u64, mut each: impl FnMut(Entry)) -> usize {
    let mut at = 0usize;
    while data.len() - at >= HEADER {
        let h = &data[at..at + HEADER];
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
        let mut time = [0u8; 8];
        time.copy_from_slice(&h[8..16]);
        if len > MAX_RECORD_LINE || data.len() - at - HEADER < len {
            break;
        }
        let line = &data[at + HEADER..at + HEADER + len];
        let start = seg.start + at as u64;
        if checksum(seg.format, start, &data[at + 8..at + HEADER + len]) != crc {
            break;
        }
        at += HEADER + len;
        let after = seg.start + at as u64;
        if after > from {
            each(Entry {
                line: line.to_vec(),
                receive_time_us: i64::from_le_bytes(time),
                start,
                after,
            });
        }
    }
    at
}

/// Opens segment `start` (positioned format) for writing at offset 0: a spare renamed to it
/// when there is one (its old records stay behind what is written, see the module docs), else
/// a new file.
fn start_segment(dir: &Path, start: u64, spares: &mut Vec<PathBuf>) -> io::Result<File> {
    let path = dir.join(
        Segment {
            start,
            format: Format::Positioned,
        }
        .name(),
    );
    while let Some(spare) = spares.pop() {
        match fs::rename(&spare, &path) {
            Ok(()) => break,
            // Gone (removed by hand): try the next one.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    let file = open_segment(&path)?;
    File::open(dir)?.sync_all()?;
    Ok(file)
}

/// Opens (or creates) a segment file to read and to write at chosen offsets, keeping what it
/// holds.
fn open_segment(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .read(true)
        .write(true)
        .truncate(false)
        .open(path)
}

impl Journal {
    /// Opens (or creates) the journal in `dir` for the source whose checkpoint key is `key`,
    /// cutting off a torn record (or a reused segment's old records) at the end of the last
    /// segment. A journal whose last segment is of the first format goes on in a new segment
    /// where that one ends.
    pub fn open(dir: &Path, key: &str) -> io::Result<Journal> {
        fs::create_dir_all(dir)?;
        let id_path = dir.join("id");
        let id = match fs::read_to_string(&id_path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: {e}", id_path.display()),
                )
            })?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let id = u64::try_from(crate::sources::now_us()).unwrap_or(1).max(1);
                let tmp = dir.join("id.tmp");
                fs::write(&tmp, format!("{id}\n"))?;
                File::open(&tmp)?.sync_all()?;
                fs::rename(&tmp, &id_path)?;
                File::open(dir)?.sync_all()?;
                id
            }
            Err(e) => return Err(e),
        };
        let (segments, mut spares) = listing(dir)?;
        spares.sort_unstable();
        let last = segments.last().copied().unwrap_or(Segment {
            start: 0,
            format: Format::Positioned,
        });
        let path = dir.join(last.name());
        let mut file = open_segment(&path)?;
        let mut data = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut data)?;
        let valid = scan(&data, last, u64::MAX, |_| {});
        if valid < data.len() {
            // A torn write, or the old records of a reused segment: nothing after the valid
            // prefix may be read as a record once new ones are written up to it.
            tracing::info!(journal = %dir.display(), segment = last.start, cut = data.len() - valid,
                "journal: what follows the last whole record of the segment was cut off");
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        let (file, seg_start, len) = match last.format {
            Format::Positioned => (file, last.start, valid as u64),
            Format::First => {
                let start = last.start + valid as u64;
                drop(file);
                if valid == 0 {
                    fs::remove_file(&path)?;
                }
                (start_segment(dir, start, &mut spares)?, start, 0)
            }
        };
        Ok(Journal {
            dir: dir.to_owned(),
            key: key.into(),
            id,
            inner: Mutex::new(Inner {
                file,
                seg_start,
                len,
                unsynced: false,
                spares,
                buf: Vec::new(),
            }),
        })
    }

    /// The checkpoint key of the journal's lines (`journal:<source>`).
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The same key, shared by the checkpoints of the journal's lines.
    pub fn shared_key(&self) -> &std::sync::Arc<str> {
        &self.key
    }

    /// The journal's identity (the `file_id` of its checkpoints).
    pub fn id(&self) -> u64 {
        self.id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends `lines`, received at `receive_time_us`, in one write; returns each line's
    /// (start, after) journal positions.
    pub fn append<I, L>(&self, lines: I, receive_time_us: i64) -> io::Result<Vec<(u64, u64)>>
    where
        I: IntoIterator<Item = L>,
        I::IntoIter: Clone,
        L: AsRef<[u8]>,
    {
        let lines = lines.into_iter();
        let mut guard = self.lock();
        let inner = &mut *guard;
        if inner.len >= SEGMENT_BYTES {
            let start = inner.seg_start + inner.len;
            inner.file.sync_all()?;
            inner.file = start_segment(&self.dir, start, &mut inner.spares)?;
            inner.seg_start = start;
            inner.len = 0;
            inner.unsynced = false;
        }
        let time = receive_time_us.to_le_bytes();
        let buf = &mut inner.buf;
        buf.clear();
        buf.reserve(lines.clone().map(|l| l.as_ref().len() + HEADER).sum());
        let mut positions = Vec::with_capacity(lines.size_hint().0);
        let mut pos = inner.seg_start + inner.len;
        for line in lines {
            let line = line.as_ref();
            let line = &line[..line.len().min(MAX_RECORD_LINE)];
            let at = buf.len();
            buf.extend_from_slice(&u32::try_from(line.len()).unwrap_or(u32::MAX).to_le_bytes());
            buf.extend_from_slice(&[0; 4]);
            buf.extend_from_slice(&time);
            buf.extend_from_slice(line);
            let crc = checksum(Format::Positioned, pos, &buf[at + 8..]);
            buf[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
            let after = pos + (HEADER + line.len()) as u64;
            positions.push((pos, after));
            pos = after;
        }
        inner.file.write_all_at(buf, inner.len)?;
        inner.len += buf.len() as u64;
        inner.unsynced = true;
        // A large read's records are not kept for the next one.
        if buf.capacity() > 1 << 20 {
            *buf = Vec::new();
        }
        Ok(positions)
    }

    /// `fsync`s what was appended since the last call.
    pub fn sync(&self) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.unsynced {
            inner.file.sync_data()?;
            inner.unsynced = false;
        }
        Ok(())
    }

    /// Every line whose record ends after journal position `from`, in order.
    pub fn read_from(&self, from: u64) -> io::Result<Vec<Entry>> {
        let _guard = self.lock();
        let mut out = Vec::new();
        let (segments, _) = listing(&self.dir)?;
        for (i, seg) in segments.iter().enumerate() {
            let end_known = segments.get(i + 1).map(|s| s.start);
            if end_known.is_some_and(|end| end <= from) {
                continue;
            }
            let data = fs::read(self.dir.join(seg.name()))?;
            scan(&data, *seg, from, |e| out.push(e));
        }
        Ok(out)
    }

    /// Retires the segments that lie wholly before journal position `upto` (their lines are in
    /// the spool); the segment being written is kept. A retired segment of the positioned
    /// format becomes a spare while there are fewer than [`SPARE_SEGMENTS`]; the others are
    /// deleted. Returns how many were retired.
    pub fn trim(&self, upto: u64) -> io::Result<usize> {
        let (current, spare_count) = {
            let inner = self.lock();
            (inner.seg_start, inner.spares.len())
        };
        let (segments, _) = listing(&self.dir)?;
        let mut kept = Vec::new();
        let mut retired = 0;
        for pair in segments.windows(2) {
            let (seg, next) = (pair[0], pair[1].start);
            if next <= upto && seg.start < current {
                let path = self.dir.join(seg.name());
                if seg.format == Format::Positioned && spare_count + kept.len() < SPARE_SEGMENTS {
                    let spare = self.dir.join(format!("spare-{:020}", seg.start));
                    fs::rename(&path, &spare)?;
                    kept.push(spare);
                } else {
                    fs::remove_file(path)?;
                }
                retired += 1;
            }
        }
        if !kept.is_empty() {
            self.lock().spares.extend(kept);
        }
        Ok(retired)
    }

    /// Bytes of journal on disk, spare segments included.
    pub fn disk_bytes(&self) -> u64 {
        let (segments, spares) = listing(&self.dir).unwrap_or_default();
        segments
            .iter()
            .map(|s| self.dir.join(s.name()))
            .chain(spares)
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }
}

/// The directory name of a source's journal: its label with every character other than
/// letters, digits, `.`, `-` and `_` replaced by `_`.
pub fn dir_name(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(range: std::ops::Range<usize>) -> Vec<Vec<u8>> {
        range.map(|i| format!("line {i}").into_bytes()).collect()
    }

    fn segment(start: u64) -> Segment {
        Segment {
            start,
            format: Format::Positioned,
        }
    }

    #[test]
    fn appended_lines_are_read_back_from_a_position_across_reopens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), "journal:t").expect("open");
        let first = j.append(lines(0..3), 7).expect("append");
        let second = j.append(lines(3..5), 9).expect("append");
        assert_eq!(first[0].0, 0);
        assert_eq!(first[1].0, first[0].1);
        assert_eq!(second[0].0, first[2].1);
        let id = j.id();
        drop(j);
        let j = Journal::open(dir.path(), "journal:t").expect("reopen");
        assert_eq!(j.id(), id, "the identity survives a restart");
        let rest = j.read_from(first[2].1).expect("read");
        assert_eq!(
            rest.iter().map(|e| e.line.clone()).collect::<Vec<_>>(),
            lines(3..5)
        );
        assert_eq!(rest[0].receive_time_us, 9);
        assert_eq!(j.read_from(0).expect("all").len(), 5);
        // Appending after a reopen continues the positions.
        let third = j.append(lines(5..6), 11).expect("append");
        assert_eq!(third[0].0, second[1].1);
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_lines_before_it_are_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), "journal:t").expect("open");
        let pos = j.append(lines(0..4), 1).expect("append");
        drop(j);
        let seg = dir.path().join(segment(0).name());
        // Half of the last record was written when the power went.
        let cut = pos[3].0 + (pos[3].1 - pos[3].0) / 2;
        let f = OpenOptions::new().write(true).open(&seg).expect("segment");
        f.set_len(cut).expect("truncate");
        drop(f);
        let j = Journal::open(dir.path(), "journal:t").expect("reopen");
        assert_eq!(
            j.read_from(0)
                .expect("read")
                .iter()
                .map(|e| e.line.clone())
                .collect::<Vec<_>>(),
            lines(0..3)
        );
        // A flipped byte in a record ends the journal there too.
        let mut data = fs::read(&seg).expect("read");
        let at = usize::try_from(pos[1].0).expect("small") + HEADER;
        data[at] ^= 0xff;
        fs::write(&seg, &data).expect("write");
        drop(j);
        let j = Journal::open(dir.path(), "journal:t").expect("reopen");
        assert_eq!(j.read_from(0).expect("read").len(), 1);
        let next = j.append(lines(9..10), 1).expect("append");
        assert_eq!(
            next[0].0, pos[1].0,
            "appends continue after the valid prefix"
        );
    }

    #[test]
    fn segments_roll_and_trim_keeps_what_is_not_spooled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), "journal:t").expect("open");
        let big = vec![vec![b'x'; 1 << 20]; 3];
        let mut last = 0;
        for _ in 0..6 {
            last = j.append(&big, 1).expect("append")[2].1;
        }
        let (starts, _) = listing(dir.path()).expect("listing");
        assert!(starts.len() >= 2, "{starts:?}");
        // Nothing spooled yet: nothing retired.
        assert_eq!(j.trim(0).expect("trim"), 0);
        // Everything spooled: every closed segment goes, the open one stays.
        let retired = j.trim(last).expect("trim");
        assert_eq!(retired, starts.len() - 1);
        let (segments, spares) = listing(dir.path()).expect("listing");
        assert_eq!(segments.len(), 1);
        assert_eq!(spares.len(), retired, "kept to be written again");
        assert!(j.read_from(last).expect("read").is_empty());
    }

    /// Lines of 1 MiB, so that the records of a reused segment line up with the new ones.
    fn mib(tag: u8, i: usize) -> Vec<u8> {
        let mut line = vec![tag; 1 << 20];
        line[0] = u8::try_from(i).expect("small");
        line
    }

    #[test]
    fn a_reused_segment_shows_only_its_new_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(dir.path(), "journal:t").expect("open");
        let mut written: Vec<((u64, u64), Vec<u8>)> = Vec::new();
        let append = |written: &mut Vec<_>, line: Vec<u8>| {
            let at = j.append([&line], 3).expect("append")[0];
            written.push((at, line));
        };
        // Eight records fill segment 0; the ninth starts segment 1.
        for i in 0..9 {
            append(&mut written, mib(b'a', i));
        }
        assert_eq!(j.trim(written[7].0.1).expect("trim"), 1);
        let (segments, spares) = listing(dir.path()).expect("listing");
        assert_eq!((segments.len(), spares.len()), (1, 1));
        // Segment 1 fills up; the next segment is segment 0's file, its eight old records
        // behind the three new ones.
        for i in 0..7 {
            append(&mut written, mib(b'b', i));
        }
        for i in 0..3 {
            append(&mut written, mib(b'c', i));
        }
        let (segments, spares) = listing(dir.path()).expect("listing");
        assert!(spares.is_empty(), "the spare was written again");
        let current = segments.last().expect("a segment");
        assert_eq!(current.start, written[16].0.0);
        let on_disk = fs::metadata(dir.path().join(current.name()))
            .expect("metadata")
            .len();
        assert!(
            on_disk > written[18].0.1 - current.start,
            "old records stay behind"
        );
        // Lines compared by length, index and tag (a failure prints a few numbers, not MiBs).
        let short = |l: &[u8]| (l.len(), l.first().copied(), l.last().copied());
        let expect = |from: usize| {
            written[from..]
                .iter()
                .map(|w| short(&w.1))
                .collect::<Vec<_>>()
        };
        let read = |j: &Journal, from: u64| {
            j.read_from(from)
                .expect("read")
                .iter()
                .map(|e| short(&e.line))
                .collect::<Vec<_>>()
        };
        assert_eq!(read(&j, written[15].0.1), expect(16));
        assert_eq!(read(&j, 0), expect(8));
        drop(j);
        // After a restart the same, and the journal goes on after the last new record.
        let j = Journal::open(dir.path(), "journal:t").expect("reopen");
        assert_eq!(read(&j, 0), expect(8));
        let next = j.append(lines(0..1), 4).expect("append");
        assert_eq!(next[0].0, written[18].0.1);
        assert_eq!(read(&j, written[18].0.1), [short(b"line 0")]);
    }

    #[test]
    fn a_journal_of_the_first_format_is_read_and_goes_on_in_a_new_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::write(dir.path().join("id"), "42\n").expect("id");
        // Records as collectors wrote them before segments were reused: the checksum covers
        // the time and the line, not the position.
        let mut data = Vec::new();
        for (i, line) in lines(0..3).iter().enumerate() {
            let time = (5 + i64::try_from(i).expect("small")).to_le_bytes();
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&time);
            hasher.update(line);
            data.extend_from_slice(&u32::try_from(line.len()).expect("short").to_le_bytes());
            data.extend_from_slice(&hasher.finalize().to_le_bytes());
            data.extend_from_slice(&time);
            data.extend_from_slice(line);
        }
        let end = data.len() as u64;
        data.extend_from_slice(&[7, 0, 0]);
        fs::write(dir.path().join(format!("{:020}.wal", 0)), &data).expect("segment");
        let j = Journal::open(dir.path(), "journal:t").expect("open");
        assert_eq!(j.id(), 42);
        let old = j.read_from(0).expect("read");
        assert_eq!(
            old.iter().map(|e| e.line.clone()).collect::<Vec<_>>(),
            lines(0..3)
        );
        assert_eq!(
            old.iter().map(|e| e.receive_time_us).collect::<Vec<_>>(),
            [5, 6, 7]
        );
        assert_eq!(old[2].after, end);
        let new = j.append(lines(3..5), 9).expect("append");
        assert_eq!(new[0].0, end, "positions go on where the old segment ends");
        assert_eq!(
            j.read_from(0)
                .expect("read")
                .into_iter()
                .map(|e| e.line)
                .collect::<Vec<_>>(),
            lines(0..5)
        );
        let (segments, _) = listing(dir.path()).expect("listing");
        assert_eq!(
            segments,
            [
                Segment {
                    start: 0,
                    format: Format::First
                },
                segment(end)
            ]
        );
        // Once spooled, the old segment is deleted, not kept for reuse.
        assert_eq!(j.trim(new[1].1).expect("trim"), 1);
        assert_eq!(
            listing(dir.path()).expect("listing"),
            (vec![segment(end)], vec![])
        );
        drop(j);
        let j = Journal::open(dir.path(), "journal:t").expect("reopen");
        assert_eq!(j.read_from(0).expect("read").len(), 2);
    }

    #[test]
    fn labels_become_directory_names() {
        assert_eq!(dir_name("syslog_tcp:0.0.0.0:514"), "syslog_tcp_0.0.0.0_514");
        assert_eq!(dir_name("syslog_udp:[::]:514"), "syslog_udp______514");
    }
}
