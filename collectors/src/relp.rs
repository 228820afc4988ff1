//! RELP, rsyslog's Reliable Event Logging Protocol, for senders that want proof of delivery
//! (rsyslog's `omrelp`). Every message is acknowledged only once the collector keeps it: after
//! it is written to the source's journal (from which a restarted collector replays what never
//! reached the spool), and before it is batched. A sender that sees no
//! acknowledgement (the collector was killed, the connection broke) sends the message again.
//!
//! Frames (librelp's wire format): `TXNR SP COMMAND SP DATALEN [SP DATA] LF`, TXNR at most nine
//! digits, DATALEN the byte length of DATA. The collector answers `open` with its offers
//! (`200 OK`, `relp_version=0`, `commands=syslog`), each `syslog` with `TXNR rsp 6 200 OK`, and
//! `close` with `TXNR rsp 0` before closing. A malformed frame is counted as a framing error
//! and ends the connection (`0 serverclose 0`): what was not acknowledged is sent again by the
//! sender, so nothing is lost by refusing to guess.

use std::sync::atomic::Ordering;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::sources::{MAX_LINE, SourceContext, accept_connections};

/// Largest DATALEN accepted: a message the framer would cut anyway, plus room for offers.
const MAX_DATA: usize = MAX_LINE + 4096;

/// One RELP frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Transaction number.
    pub txnr: u64,
    /// Command (`open`, `syslog`, `close`, …).
    pub command: String,
    /// Its data.
    pub data: Vec<u8>,
}

/// Why a byte stream is not RELP.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelpError {
    /// A header field is malformed.
    #[error("malformed RELP header: {0}")]
    Header(&'static str),
    /// DATALEN larger than accepted.
    #[error("RELP frame of {0} bytes, more than the {MAX_DATA} accepted")]
    TooLarge(usize),
    /// The frame does not end with LF.
    #[error("RELP frame without its trailing LF")]
    Trailer,
}

/// Splits a byte stream into frames; keeps an incomplete frame for the next bytes.
#[derive(Debug, Default)]
pub struct Parser {
    buf: Vec<u8>,
}

fn field(buf: &[u8], from: usize, max: usize) -> Option<Result<(usize, usize), ()>> {
    // (end of field, index after the separator)
    let rest = &buf[from..];
    let end = rest
        .iter()
        .take(max + 1)
        .position(|b| *b == b' ' || *b == b'\n');
    match end {
        Some(e) if e > 0 && e <= max => Some(Ok((from + e, from + e + 1))),
        Some(_) => Some(Err(())),
        None if rest.len() > max => Some(Err(())),
        None => None,
    }
}

impl Parser {
    /// Adds bytes; returns every frame now complete.
    pub fn push(&mut self, data: &[u8]) -> Result<Vec<Frame>, RelpError> {
        self.buf.extend_from_slice(data);
        let mut frames = Vec::new();
        let mut at = 0usize;
        while let Some(txnr) = field(&self.buf, at, 9) {
            let (txnr_end, cmd_from) = txnr.map_err(|()| RelpError::Header("TXNR"))?;
            let txnr_text = &self.buf[at..txnr_end];
            if !txnr_text.iter().all(u8::is_ascii_digit) || self.buf[txnr_end] != b' ' {
                return Err(RelpError::Header("TXNR"));
            }
            let Some(cmd) = field(&self.buf, cmd_from, 32) else {
                break;
            };
            let (cmd_end, len_from) = cmd.map_err(|()| RelpError::Header("COMMAND"))?;
            let command = &self.buf[cmd_from..cmd_end];
            if !command.iter().all(u8::is_ascii_alphabetic) || self.buf[cmd_end] != b' ' {
                return Err(RelpError::Header("COMMAND"));
            }
            let Some(len) = field(&self.buf, len_from, 9) else {
                break;
            };
            let (len_end, data_from) = len.map_err(|()| RelpError::Header("DATALEN"))?;
            let len_text = &self.buf[len_from..len_end];
            if !len_text.iter().all(u8::is_ascii_digit) {
                return Err(RelpError::Header("DATALEN"));
            }
            let len: usize = std::str::from_utf8(len_text)
                .ok()
                .and_then(|t| t.parse().ok())
                .ok_or(RelpError::Header("DATALEN"))?;
            if len > MAX_DATA {
                return Err(RelpError::TooLarge(len));
            }
            let end = if len == 0 {
                // "TXNR CMD 0\n": the LF was the separator after DATALEN.
                if self.buf[len_end] != b'\n' {
                    return Err(RelpError::Trailer);
                }
                frames.push(Frame {
                    txnr: parse_u64(txnr_text),
                    command: String::from_utf8_lossy(command).into_owned(),
                    data: Vec::new(),
                });
                data_from
            } else {
                if self.buf[len_end] != b' ' {
                    return Err(RelpError::Header("DATALEN"));
                }
                if self.buf.len() < data_from + len + 1 {
                    break;
                }
                if self.buf[data_from + len] != b'\n' {
                    return Err(RelpError::Trailer);
                }
                frames.push(Frame {
                    txnr: parse_u64(txnr_text),
                    command: String::from_utf8_lossy(command).into_owned(),
                    data: self.buf[data_from..data_from + len].to_vec(),
                });
                data_from + len + 1
            };
            at = end;
        }
        self.buf.drain(..at);
        Ok(frames)
    }
}

fn parse_u64(digits: &[u8]) -> u64 {
    digits
        .iter()
        .fold(0u64, |n, d| n * 10 + u64::from(d - b'0'))
}

/// A response frame: `TXNR rsp DATALEN[ DATA]\n`.
pub fn response(txnr: u64, data: &[u8]) -> Vec<u8> {
    let mut out = format!("{txnr} rsp {}", data.len()).into_bytes();
    if !data.is_empty() {
        out.push(b' ');
        out.extend_from_slice(data);
    }
    out.push(b'\n');
    out
}

/// The answer to `open`: the offers the collector supports.
fn open_response() -> Vec<u8> {
    format!(
        "200 OK\nrelp_version=0\nrelp_software=varde-collector,{},https://github.com/varde\ncommands=syslog",
        env!("CARGO_PKG_VERSION")
    )
    .into_bytes()
}

/// Keeps `messages` and acknowledges `txnrs` (with whatever else is queued in `out`): once
/// the journal has them they are acknowledged at once and then handed to the batcher; when the
/// source has no journal, or it could not be written, only after the batcher has them.
/// `false` when the shipper is gone (nothing more is acknowledged then).
async fn keep_and_ack<S: AsyncWrite + Unpin>(
    ctx: &SourceContext,
    stream: &mut S,
    messages: crate::sources::Lines,
    txnrs: &[u64],
    out: &mut Vec<u8>,
) -> std::io::Result<bool> {
    if messages.is_empty() {
        return Ok(true);
    }
    let journalled = ctx.journal_lines(messages);
    let durable = journalled.is_journalled();
    if durable {
        for t in txnrs {
            out.extend_from_slice(&response(*t, b"200 OK"));
        }
        stream.write_all(&std::mem::take(out)).await?;
    }
    if !ctx.send_journalled(journalled).await {
        return Ok(false);
    }
    if !durable {
        for t in txnrs {
            out.extend_from_slice(&response(*t, b"200 OK"));
        }
        stream.write_all(&std::mem::take(out)).await?;
    }
    Ok(true)
}

/// Serves one RELP connection until the sender closes it, an error, or shutdown. Returns the
/// number of messages kept and acknowledged.
pub async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    ctx: &SourceContext,
) -> std::io::Result<u64> {
    let mut shutdown = ctx.shutdown.clone();
    let mut parser = Parser::default();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut kept = 0u64;
    loop {
        let n = tokio::select! {
            r = stream.read(&mut chunk) => r?,
            _ = shutdown.changed() => {
                let _ = stream.write_all(b"0 serverclose 0\n").await;
                return Ok(kept);
            }
        };
        if n == 0 {
            return Ok(kept);
        }
        let frames = match parser.push(&chunk[..n]) {
            Ok(f) => f,
            Err(e) => {
                ctx.counters.framing_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "relp: malformed frame; closing the connection (the sender resends what was not acknowledged)");
                let _ = stream.write_all(b"0 serverclose 0\n").await;
                return Ok(kept);
            }
        };
        let mut messages = crate::sources::Lines::default();
        let mut pending: Vec<u64> = Vec::new();
        let mut out: Vec<u8> = Vec::new();
        let mut closing = false;
        for f in frames {
            match f.command.as_str() {
                "syslog" => {
                    let mut data = f.data;
                    while data.last() == Some(&b'\n') {
                        data.pop();
                    }
                    messages.push(&data);
                    pending.push(f.txnr);
                }
                other => {
                    // Keep order: what came before is kept and acknowledged first.
                    let batch = std::mem::take(&mut messages);
                    let txnrs = std::mem::take(&mut pending);
                    kept += txnrs.len() as u64;
                    if !keep_and_ack(ctx, &mut stream, batch, &txnrs, &mut out).await? {
                        return Ok(kept);
                    }
                    match other {
                        "open" => out.extend_from_slice(&response(f.txnr, &open_response())),
                        "close" => {
                            out.extend_from_slice(&response(f.txnr, b""));
                            closing = true;
                        }
                        _ => out.extend_from_slice(&response(
                            f.txnr,
                            format!("500 command {other} not supported").as_bytes(),
                        )),
                    }
                }
            }
        }
        kept += pending.len() as u64;
        if !keep_and_ack(ctx, &mut stream, messages, &pending, &mut out).await? {
            return Ok(kept);
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
        }
        if closing {
            let _ = stream.shutdown().await;
            return Ok(kept);
        }
    }
}

/// Listens for RELP until shutdown.
pub async fn relp(listener: TcpListener, ctx: SourceContext) {
    accept_connections(listener, ctx, "relp", |stream, peer, ctx| async move {
        match serve_connection(stream, &ctx).await {
            Ok(n) => debug!(%peer, messages = n, "relp connection closed"),
            Err(e) => warn!(%peer, error = %e, "relp connection failed"),
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_split_however_the_bytes_arrive() {
        let offers = "relp_version=0\nrelp_software=librelp,1.11.0,http://librelp.adiscon.com\ncommands=syslog";
        let text = format!(
            "1 open {} {offers}\n2 syslog 5 hello\n3 close 0\n",
            offers.len()
        );
        let stream = text.as_bytes();
        for cut in 0..stream.len() {
            let mut p = Parser::default();
            let mut frames = p.push(&stream[..cut]).expect("first part");
            frames.extend(p.push(&stream[cut..]).expect("second part"));
            assert_eq!(frames.len(), 3, "cut at {cut}");
            assert_eq!(frames[0].command, "open");
            assert!(frames[0].data.starts_with(b"relp_version=0\n"));
            assert_eq!(
                frames[1],
                Frame {
                    txnr: 2,
                    command: "syslog".into(),
                    data: b"hello".to_vec()
                }
            );
            assert_eq!((frames[2].txnr, frames[2].command.as_str()), (3, "close"));
            assert!(frames[2].data.is_empty());
        }
    }

    #[test]
    fn malformed_frames_are_refused_not_guessed() {
        for bad in [
            &b"x syslog 5 hello\n"[..],
            b"1 sys-log 5 hello\n",
            b"1 syslog five hello\n",
            b"1 syslog 5 helloX",
            b"1234567890 syslog 1 a\n",
            b"1 syslog 999999999 a",
        ] {
            assert!(
                Parser::default().push(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn responses_have_librelps_form() {
        assert_eq!(response(7, b"200 OK"), b"7 rsp 6 200 OK\n");
        assert_eq!(response(3, b""), b"3 rsp 0\n");
    }
}
