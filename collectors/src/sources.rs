//! Inputs: syslog over TCP and files of syslog lines.
//!
//! Every source parses at the edge and sends events into the shipper's bounded channel; when the
//! channel is full a source waits, which stops it reading its socket or file (backpressure).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncSeekExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use varde_core::{SourceKind, Value};

use crate::shipper::{Input, Stats};
use crate::syslog::parse_line;

/// Longest line accepted; a longer one is cut into pieces of this size, none dropped.
pub const MAX_LINE: usize = 64 * 1024;

/// Current time in µs since the epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Parses a syslog line and hands it to the shipper; `false` when the shipper is gone.
pub async fn send_line(line: &[u8], tx: &mpsc::Sender<Input>, stats: &Stats) -> bool {
    let text = String::from_utf8_lossy(line);
    let event = parse_line(&text, now_us());
    if event.get("parse_error") == Some(&Value::Bool(true)) {
        stats
            .parse_errors
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    tx.send(Input::Event(SourceKind::Syslog, event))
        .await
        .is_ok()
}

/// Splits complete lines off the front of `buf` (LF or CRLF framing; lines longer than
/// [`MAX_LINE`] are cut), leaving an incomplete tail in place.
pub fn take_lines(buf: &mut Vec<u8>) -> Vec<Vec<u8>> {
    let mut lines = Vec::new();
    let mut start = 0;
    loop {
        let rest = &buf[start..];
        match rest.iter().position(|&b| b == b'\n') {
            Some(i) if i <= MAX_LINE => {
                let mut line = &rest[..i];
                if line.last() == Some(&b'\r') {
                    line = &line[..line.len() - 1];
                }
                lines.push(line.to_vec());
                start += i + 1;
            }
            _ if rest.len() > MAX_LINE => {
                lines.push(rest[..MAX_LINE].to_vec());
                start += MAX_LINE;
            }
            _ => break,
        }
    }
    buf.drain(..start);
    lines
}

/// Reads `reader` to its end (or until shutdown), sending every line. Returns the number of
/// lines sent. A final line without a newline is sent too.
async fn pump<R: AsyncRead + Unpin>(
    mut reader: R,
    tx: &mpsc::Sender<Input>,
    stats: &Stats,
    shutdown: &mut watch::Receiver<bool>,
) -> std::io::Result<u64> {
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut sent = 0;
    loop {
        let n = tokio::select! {
            r = reader.read(&mut chunk) => r?,
            _ = shutdown.changed() => 0,
        };
        if n == 0 {
            if !buf.is_empty() {
                if !send_line(&buf, tx, stats).await {
                    return Ok(sent);
                }
                sent += 1;
            }
            return Ok(sent);
        }
        buf.extend_from_slice(&chunk[..n]);
        for line in take_lines(&mut buf) {
            if !send_line(&line, tx, stats).await {
                return Ok(sent);
            }
            sent += 1;
        }
    }
}

/// Listens for syslog over TCP (newline framing) until shutdown.
pub async fn syslog_tcp(
    listener: TcpListener,
    tx: mpsc::Sender<Input>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    info!(listen = %local, "syslog/tcp listening");
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                let tx = tx.clone();
                let stats = stats.clone();
                let mut shutdown = shutdown.clone();
                tokio::spawn(async move {
                    match pump(stream, &tx, &stats, &mut shutdown).await {
                        Ok(n) => info!(%peer, lines = n, "syslog/tcp connection closed"),
                        Err(e) => warn!(%peer, error = %e, "syslog/tcp connection failed"),
                    }
                });
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Reads a whole file of syslog lines once; returns the number of lines sent.
pub async fn read_file(
    path: &Path,
    tx: &mpsc::Sender<Input>,
    stats: &Stats,
) -> std::io::Result<u64> {
    let file = tokio::fs::File::open(path).await?;
    let (_keep, mut never) = watch::channel(false);
    pump(file, tx, stats, &mut never).await
}

/// Reads a file from the beginning and follows it as it grows, until shutdown. A file that
/// shrinks (truncated in place) is read again from its start.
pub async fn follow_file(
    path: PathBuf,
    tx: mpsc::Sender<Input>,
    stats: Arc<Stats>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut offset: u64 = 0;
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        if *shutdown.borrow() {
            return;
        }
        let opened = tokio::fs::File::open(&path).await;
        let mut file = match opened {
            Ok(f) => f,
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot open; retrying in 5s");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
                    _ = shutdown.changed() => return,
                }
            }
        };
        let len = file.metadata().await.map_or(0, |m| m.len());
        if len < offset {
            info!(path = %path.display(), "file shrank; reading from the start");
            offset = 0;
            buf.clear();
        }
        if len > offset {
            if let Err(e) = file.seek(std::io::SeekFrom::Start(offset)).await {
                warn!(path = %path.display(), error = %e, "seek failed");
            } else {
                loop {
                    let n = match file.read(&mut chunk).await {
                        Ok(n) => n,
                        Err(e) => {
                            warn!(path = %path.display(), error = %e, "read failed");
                            break;
                        }
                    };
                    if n == 0 {
                        break;
                    }
                    offset += n as u64;
                    buf.extend_from_slice(&chunk[..n]);
                    for line in take_lines(&mut buf) {
                        if !send_line(&line, &tx, &stats).await {
                            return;
                        }
                    }
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lines_split_on_lf_and_crlf_keeping_the_tail() {
        let mut buf = b"a\r\nb\n\nc".to_vec();
        assert_eq!(
            take_lines(&mut buf),
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
                out.extend(take_lines(&mut buf));
            }
            prop_assert!(buf.is_empty());
            let want: Vec<Vec<u8>> = lines.iter().map(|l| l.clone().into_bytes()).collect();
            prop_assert_eq!(out, want);
        }
    }

    #[test]
    fn overlong_lines_are_cut_not_dropped() {
        let mut buf = vec![b'x'; MAX_LINE * 2 + 10];
        buf.push(b'\n');
        let lines = take_lines(&mut buf);
        assert_eq!(
            lines.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_LINE, MAX_LINE, 10]
        );
        assert!(buf.is_empty());
    }
}
