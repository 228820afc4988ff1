//! The journal of a network source: every line a TCP, TLS or UDP listener accepted is appended
//! here *before* it goes to the batcher, so that a line the collector took from a sender is a
//! line it keeps, even when the process is killed with the batch still open.
//!
//! A network line then travels like a file line: it carries a checkpoint (key
//! `journal:<source>`, the journal's identity, the journal position after the line), the spool
//! records the checkpoint in the same record as the batch that holds the line, and after a
//! restart the collector replays the journal from the last spooled checkpoint: exactly the lines
//! that never reached the spool, with their original receive time. Segments that lie wholly
//! before the spooled checkpoint are deleted.
//!
//! Layout under the source's directory:
//!
//! - `id`: the journal's identity (µs since the epoch at creation, decimal). A checkpoint of
//!   another identity is not this journal's (the directory was removed) and is ignored.
//! - `<start>.wal`: a segment, named by the journal position of its first byte (20 digits).
//!   Records: `len: u32 LE` (of the line), `crc32: u32 LE` (of time and line), `receive time
//!   µs: i64 LE`, the line. A record that is short or fails its checksum (a torn write at power
//!   loss) ends the journal there; it is cut off when the journal is opened.
//!
//! Durability: `write(2)` of each received chunk's records happens before the lines are handed
//! on, so a process crash loses nothing. Against power loss the journal is `fsync`ed on the
//! spool's policy (see `docs/collector.md`): at most the last interval's lines can be lost.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// A segment is closed and a new one started once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 8 << 20;
/// Bytes before each line in a record.
const HEADER: usize = 16;
/// The longest line a record holds (longer lines were cut by the framer already).
const MAX_RECORD_LINE: usize = 16 << 20;

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
    file: File,
    seg_start: u64,
    len: u64,
    unsynced: bool,
}

fn segment_name(start: u64) -> String {
    format!("{start:020}.wal")
}

/// Segment starts in `dir`, ascending.
fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(start) = name
            .strip_suffix(".wal")
            .and_then(|s| s.parse::<u64>().ok())
        {
            out.push(start);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Parses the records of `data` (a segment starting at journal position `seg_start`), calling
/// `each` for those ending after `from`; returns the length of the valid prefix.
fn scan(data: &[u8], seg_start: u64, from: u64, mut each: impl FnMut(Entry)) -> usize {
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
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&time);
        hasher.update(line);
        if hasher.finalize() != crc {
            break;
        }
        let start = seg_start + at as u64;
        at += HEADER + len;
        let after = seg_start + at as u64;
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

impl Journal {
    /// Opens (or creates) the journal in `dir` for the source whose checkpoint key is `key`,
    /// cutting off a torn record at the end of the last segment.
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
        let starts = segments(dir)?;
        let seg_start = starts.last().copied().unwrap_or(0);
        let path = dir.join(segment_name(seg_start));
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        let mut data = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut data)?;
        let valid = scan(&data, seg_start, u64::MAX, |_| {});
        if valid < data.len() {
            tracing::warn!(journal = %dir.display(), cut = data.len() - valid,
                "journal: a torn record at the end was cut off");
            file.set_len(valid as u64)?;
            file.sync_all()?;
        }
        Ok(Journal {
            dir: dir.to_owned(),
            key: key.into(),
            id,
            inner: Mutex::new(Inner {
                file,
                seg_start,
                len: valid as u64,
                unsynced: false,
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
        let mut inner = self.lock();
        if inner.len >= SEGMENT_BYTES {
            let start = inner.seg_start + inner.len;
            inner.file.sync_all()?;
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .append(true)
                .open(self.dir.join(segment_name(start)))?;
            File::open(&self.dir)?.sync_all()?;
            *inner = Inner {
                file,
                seg_start: start,
                len: 0,
                unsynced: false,
            };
        }
        let time = receive_time_us.to_le_bytes();
        let mut buf = Vec::with_capacity(lines.clone().map(|l| l.as_ref().len() + HEADER).sum());
        let mut positions = Vec::with_capacity(lines.size_hint().0);
        let mut pos = inner.seg_start + inner.len;
        for line in lines {
            let line = line.as_ref();
            let line = &line[..line.len().min(MAX_RECORD_LINE)];
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&time);
            hasher.update(line);
            buf.extend_from_slice(&u32::try_from(line.len()).unwrap_or(u32::MAX).to_le_bytes());
            buf.extend_from_slice(&hasher.finalize().to_le_bytes());
            buf.extend_from_slice(&time);
            buf.extend_from_slice(line);
            let after = pos + (HEADER + line.len()) as u64;
            positions.push((pos, after));
            pos = after;
        }
        inner.file.write_all(&buf)?;
        inner.len += buf.len() as u64;
        inner.unsynced = true;
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
        let starts = segments(&self.dir)?;
        for (i, start) in starts.iter().enumerate() {
            let end_known = starts.get(i + 1).copied();
            if end_known.is_some_and(|end| end <= from) {
                continue;
            }
            let data = fs::read(self.dir.join(segment_name(*start)))?;
            scan(&data, *start, from, |e| out.push(e));
        }
        Ok(out)
    }

    /// Deletes the segments that lie wholly before journal position `upto` (their lines are
    /// in the spool); the segment being written is kept. Returns how many were deleted.
    pub fn trim(&self, upto: u64) -> io::Result<usize> {
        let current = self.lock().seg_start;
        let starts = segments(&self.dir)?;
        let mut deleted = 0;
        for pair in starts.windows(2) {
            let (start, next) = (pair[0], pair[1]);
            if next <= upto && start < current {
                fs::remove_file(self.dir.join(segment_name(start)))?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    /// Bytes of journal on disk.
    pub fn disk_bytes(&self) -> u64 {
        segments(&self.dir)
            .unwrap_or_default()
            .iter()
            .filter_map(|s| fs::metadata(self.dir.join(segment_name(*s))).ok())
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
        let seg = dir.path().join(segment_name(0));
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
        let starts = segments(dir.path()).expect("segments");
        assert!(starts.len() >= 2, "{starts:?}");
        // Nothing spooled yet: nothing deleted.
        assert_eq!(j.trim(0).expect("trim"), 0);
        // Everything spooled: every closed segment goes, the open one stays.
        let deleted = j.trim(last).expect("trim");
        assert_eq!(deleted, starts.len() - 1);
        assert_eq!(segments(dir.path()).expect("segments").len(), 1);
        assert!(j.read_from(last).expect("read").is_empty());
    }

    #[test]
    fn labels_become_directory_names() {
        assert_eq!(dir_name("syslog_tcp:0.0.0.0:514"), "syslog_tcp_0.0.0.0_514");
        assert_eq!(dir_name("syslog_udp:[::]:514"), "syslog_udp______514");
    }
}
