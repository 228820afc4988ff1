//! The wire envelope: one Kafka message = one compressed Arrow IPC batch of one source kind from
//! one collector.
//!
//! Layout (all integers little-endian):
//!
//! | offset   | size | field                                                      |
//! |----------|------|------------------------------------------------------------|
//! | 0        | 4    | magic `VRDE`                                               |
//! | 4        | 1    | envelope format version, [`ENVELOPE_VERSION`]              |
//! | 5        | 1    | source kind code ([`SourceKind::code`])                    |
//! | 6        | 2    | event schema version ([`crate::schema::SCHEMA_VERSION`])   |
//! | 8        | 8    | batch sequence number (per collector, strictly increasing) |
//! | 16       | 4    | row count                                                  |
//! | 20       | 4    | payload length: bytes of the uncompressed IPC stream       |
//! | 24       | 4    | tenant: kommunenummer, 4 ASCII digits                      |
//! | 28       | 1    | collector id length *n* (1–64)                             |
//! | 29       | *n*  | collector id (ASCII)                                       |
//! | 29 + *n* | …    | one zstd frame of an Arrow IPC stream: schema, exactly one |
//! |          |      | record batch, end-of-stream marker                         |
//!
//! The whole IPC stream is one zstd frame, so the Kafka producer need not compress again. The
//! fixed header lets a consumer route, count and reject a message (unknown kind, unsupported
//! version, foreign tenant, oversized) without decompressing anything.
//!
//! ## Hostile input
//! Envelopes come from 357 networks Varde does not control. Decoding never trusts a length it
//! has not checked against the bytes present: the payload length is bounded by the caller's limit
//! before anything is allocated, decompression stops at that length, and the IPC framing
//! (message and body lengths, every buffer's offset and length) is checked against the actual
//! bytes before Arrow reads them. Arrow's own validation then checks the arrays.
//!
//! The tenant in the header is what the collector claims; the pipeline checks it against the
//! tenant bound to the collector's authenticated identity and rejects a mismatch.

use std::io::Cursor;

use std::io::Read;

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;

use crate::event::BatchReader;
use crate::schema::SCHEMA_VERSION;
use crate::{CollectorId, Kommunenummer, SourceKind};

/// The four bytes every envelope starts with.
pub const MAGIC: [u8; 4] = *b"VRDE";
/// The envelope format version written by this code.
pub const ENVELOPE_VERSION: u8 = 1;
/// Size of the fixed part of the header, before the collector id.
pub const FIXED_HEADER_LEN: usize = 29;
/// The largest uncompressed payload [`Envelope::decode`] accepts: 64 MiB.
pub const DEFAULT_MAX_PAYLOAD: usize = 64 << 20;
const EOS: [u8; 8] = [0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0];

/// Why bytes are not a valid envelope. Each variant names what was wrong, for the dead-letter
/// record and the rejection counters.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// Fewer bytes than the header needs.
    #[error("truncated envelope: {len} bytes, the header needs {need}")]
    Truncated {
        /// Bytes present.
        len: usize,
        /// Bytes the header needs.
        need: usize,
    },
    /// Does not start with [`MAGIC`].
    #[error("not a Varde envelope (magic {0:02x?})")]
    BadMagic([u8; 4]),
    /// Unsupported envelope format version.
    #[error("envelope format version {0} is not supported (this build reads {ENVELOPE_VERSION})")]
    UnsupportedEnvelopeVersion(u8),
    /// Unknown source kind code.
    #[error("unknown source kind code {0}")]
    UnknownKind(u8),
    /// Unsupported event schema version.
    #[error("event schema version {0} is not supported (this build reads {SCHEMA_VERSION})")]
    UnsupportedSchemaVersion(u16),
    /// The tenant field is not a current kommunenummer.
    #[error("bad tenant in header: {0}")]
    BadTenant(#[from] crate::TenantError),
    /// The collector id is not valid.
    #[error("bad collector id in header: {0}")]
    BadCollectorId(String),
    /// The Arrow IPC payload could not be read.
    #[error("Arrow IPC payload: {0}")]
    Ipc(#[from] arrow_schema::ArrowError),
    /// The payload is larger than the decoder's limit.
    #[error("payload of {len} bytes exceeds the limit of {limit} bytes")]
    Oversized {
        /// Declared or actual payload length.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The zstd frame is damaged or its length differs from the header.
    #[error("compressed payload: {0}")]
    Compression(String),
    /// The IPC framing does not fit the bytes present.
    #[error("Arrow IPC framing: {0}")]
    Framing(String),
    /// The payload did not hold exactly one batch.
    #[error("payload holds {0} record batches, expected exactly 1")]
    BatchCount(usize),
    /// The row count in the header differs from the batch.
    #[error("header says {header} rows, batch has {batch}")]
    RowCount {
        /// Row count in the header.
        header: u32,
        /// Rows in the batch.
        batch: usize,
    },
    /// The batch does not have the schema of its kind, or its constant columns disagree with
    /// the header.
    #[error("batch does not match the header: {0}")]
    Mismatch(String),
}

/// zstd level for payloads: level 3 is zstd's default, a good speed/ratio point for a collector
/// on a small VM.
const ZSTD_LEVEL: i32 = 3;

/// The fixed header of an envelope, readable without decoding the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeHeader {
    /// Source kind of the batch.
    pub kind: SourceKind,
    /// Event schema version of the batch.
    pub schema_version: u16,
    /// Per-collector batch sequence number.
    pub batch_seq: u64,
    /// Number of rows.
    pub row_count: u32,
    /// Length of the uncompressed IPC stream: meaningful on the wire only, 0 in a decoded or
    /// newly built envelope.
    pub payload_len: u32,
    /// Tenant claimed by the collector.
    pub tenant: Kommunenummer,
    /// Collector that produced the batch.
    pub collector_id: CollectorId,
}

impl EnvelopeHeader {
    /// Reads and validates the header; returns it and the offset where the IPC stream starts.
    pub fn peek(bytes: &[u8]) -> Result<(EnvelopeHeader, usize), EnvelopeError> {
        if let Some(head) = bytes.get(..4)
            && head != MAGIC
        {
            return Err(EnvelopeError::BadMagic([
                head[0], head[1], head[2], head[3],
            ]));
        }
        if bytes.len() < FIXED_HEADER_LEN {
            return Err(EnvelopeError::Truncated {
                len: bytes.len(),
                need: FIXED_HEADER_LEN,
            });
        }
        if bytes[4] != ENVELOPE_VERSION {
            return Err(EnvelopeError::UnsupportedEnvelopeVersion(bytes[4]));
        }
        let kind = SourceKind::from_code(bytes[5]).ok_or(EnvelopeError::UnknownKind(bytes[5]))?;
        let schema_version = u16::from_le_bytes([bytes[6], bytes[7]]);
        if schema_version != SCHEMA_VERSION {
            return Err(EnvelopeError::UnsupportedSchemaVersion(schema_version));
        }
        let mut seq = [0u8; 8];
        seq.copy_from_slice(&bytes[8..16]);
        let batch_seq = u64::from_le_bytes(seq);
        let row_count = u32::from_le_bytes([bytes[16], bytes[17], bytes[18], bytes[19]]);
        let payload_len = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        let tenant_text = String::from_utf8_lossy(&bytes[24..28]);
        let tenant = Kommunenummer::parse(&tenant_text)?;
        let id_len = usize::from(bytes[28]);
        let end = FIXED_HEADER_LEN + id_len;
        if bytes.len() < end {
            return Err(EnvelopeError::Truncated {
                len: bytes.len(),
                need: end,
            });
        }
        let id_text = String::from_utf8_lossy(&bytes[FIXED_HEADER_LEN..end]).into_owned();
        let collector_id = CollectorId::new(id_text.clone())
            .map_err(|_| EnvelopeError::BadCollectorId(id_text))?;
        Ok((
            EnvelopeHeader {
                kind,
                schema_version,
                batch_seq,
                row_count,
                payload_len,
                tenant,
                collector_id,
            },
            end,
        ))
    }

    fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.push(ENVELOPE_VERSION);
        out.push(self.kind.code());
        out.extend_from_slice(&self.schema_version.to_le_bytes());
        out.extend_from_slice(&self.batch_seq.to_le_bytes());
        out.extend_from_slice(&self.row_count.to_le_bytes());
        out.extend_from_slice(&self.payload_len.to_le_bytes());
        out.extend_from_slice(self.tenant.as_str().as_bytes());
        let id = self.collector_id.as_str().as_bytes();
        // CollectorId guarantees 1..=64 bytes.
        out.push(u8::try_from(id.len()).unwrap_or(u8::MAX));
        out.extend_from_slice(id);
    }
}

/// A decoded envelope: its header and its batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The header.
    pub header: EnvelopeHeader,
    /// The events.
    pub batch: RecordBatch,
}

impl Envelope {
    /// Wraps a batch built by [`crate::BatchBuilder`] for the given collector and sequence.
    ///
    /// The batch's kind, tenant and collector columns must agree with the arguments.
    pub fn new(
        kind: SourceKind,
        tenant: Kommunenummer,
        collector_id: CollectorId,
        batch_seq: u64,
        batch: RecordBatch,
    ) -> Result<Envelope, EnvelopeError> {
        let row_count = u32::try_from(batch.num_rows())
            .map_err(|_| EnvelopeError::Mismatch("more than 2^32 rows".into()))?;
        let envelope = Envelope {
            header: EnvelopeHeader {
                kind,
                schema_version: SCHEMA_VERSION,
                batch_seq,
                row_count,
                payload_len: 0,
                tenant,
                collector_id,
            },
            batch,
        };
        envelope.check_batch()?;
        Ok(envelope)
    }

    /// Serialises to the wire form.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        let mut ipc = Vec::with_capacity(256 + self.batch.get_array_memory_size());
        let mut writer = StreamWriter::try_new(&mut ipc, &self.batch.schema())?;
        writer.write(&self.batch)?;
        writer.finish()?;
        drop(writer);
        let mut header = self.header.clone();
        header.payload_len = u32::try_from(ipc.len()).map_err(|_| EnvelopeError::Oversized {
            len: ipc.len(),
            limit: u32::MAX as usize,
        })?;
        let mut out = Vec::with_capacity(64 + ipc.len() / 3);
        header.write(&mut out);
        zstd::stream::copy_encode(ipc.as_slice(), &mut out, ZSTD_LEVEL)
            .map_err(|e| EnvelopeError::Compression(e.to_string()))?;
        Ok(out)
    }

    /// Parses and fully validates the wire form, accepting payloads up to
    /// [`DEFAULT_MAX_PAYLOAD`]: see [`Envelope::decode_with_limit`].
    pub fn decode(bytes: &[u8]) -> Result<Envelope, EnvelopeError> {
        Envelope::decode_with_limit(bytes, DEFAULT_MAX_PAYLOAD)
    }

    /// Parses and fully validates the wire form: header, payload size against `max_payload`,
    /// the zstd frame, the IPC framing, the schema of the kind, the row count, and the constant
    /// columns against the header. Never panics and never allocates more than `max_payload`
    /// plus the decoded arrays, whatever the bytes.
    pub fn decode_with_limit(bytes: &[u8], max_payload: usize) -> Result<Envelope, EnvelopeError> {
        let (mut header, offset) = EnvelopeHeader::peek(bytes)?;
        let declared = header.payload_len as usize;
        if declared > max_payload {
            return Err(EnvelopeError::Oversized {
                len: declared,
                limit: max_payload,
            });
        }
        let ipc = decompress_bounded(&bytes[offset..], declared)?;
        check_ipc_framing(&ipc)?;
        let batch = std::panic::catch_unwind(|| read_single_batch(&ipc)).map_err(|_| {
            EnvelopeError::Framing("the Arrow reader rejected the payload".into())
        })??;
        header.payload_len = 0;
        let envelope = Envelope { header, batch };
        envelope.check_batch()?;
        Ok(envelope)
    }

    fn check_batch(&self) -> Result<(), EnvelopeError> {
        let h = &self.header;
        let rows = self.batch.num_rows();
        if rows != h.row_count as usize {
            return Err(EnvelopeError::RowCount {
                header: h.row_count,
                batch: rows,
            });
        }
        let reader = BatchReader::new(h.kind, &self.batch)
            .map_err(|e| EnvelopeError::Mismatch(e.to_string()))?;
        for row in 0..rows {
            if reader.tenant(row) != h.tenant.as_str() {
                return Err(EnvelopeError::Mismatch(format!(
                    "row {row}: tenant '{}' but header says {}",
                    reader.tenant(row),
                    h.tenant
                )));
            }
            if reader.collector_id(row) != h.collector_id.as_str() {
                return Err(EnvelopeError::Mismatch(format!(
                    "row {row}: collector '{}' but header says {}",
                    reader.collector_id(row),
                    h.collector_id
                )));
            }
        }
        // The source_kind column is checked by the schema only in type; check its values too.
        let kinds = self
            .batch
            .column(5)
            .as_any()
            .downcast_ref::<arrow_array::StringArray>();
        if let Some(kinds) = kinds
            && let Some(bad) = kinds.iter().flatten().find(|k| *k != h.kind.name())
        {
            return Err(EnvelopeError::Mismatch(format!(
                "source_kind '{bad}' in a {} batch",
                h.kind
            )));
        }
        Ok(())
    }
}

/// Decompresses one zstd frame, refusing to produce more or fewer than `expected` bytes.
fn decompress_bounded(compressed: &[u8], expected: usize) -> Result<Vec<u8>, EnvelopeError> {
    let decoder = zstd::stream::read::Decoder::with_buffer(compressed)
        .map_err(|e| EnvelopeError::Compression(e.to_string()))?;
    // Reads at most one byte past the declared length, so a lie in the header cannot make the
    // decoder allocate more than the caller's limit.
    let mut out = Vec::with_capacity(expected.min(1 << 20));
    let read_limit = u64::try_from(expected)
        .unwrap_or(u64::MAX)
        .saturating_add(1);
    decoder
        .take(read_limit)
        .read_to_end(&mut out)
        .map_err(|e| EnvelopeError::Compression(e.to_string()))?;
    if out.len() != expected {
        return Err(EnvelopeError::Compression(format!(
            "header declares {expected} bytes, the frame holds {}{}",
            if out.len() > expected {
                "more than "
            } else {
                ""
            },
            out.len().min(expected)
        )));
    }
    Ok(out)
}

/// Walks the IPC stream's messages and checks every declared length against the bytes present:
/// a schema message, one record batch message whose buffers lie inside its body, and the
/// end-of-stream marker at the very end.
fn check_ipc_framing(ipc: &[u8]) -> Result<(), EnvelopeError> {
    let err = |m: String| EnvelopeError::Framing(m);
    let mut pos = 0usize;
    let mut messages = 0usize;
    loop {
        let rest = &ipc[pos..];
        if rest.len() < 8 {
            return Err(err(format!(
                "stream ends at byte {pos} without an end-of-stream marker"
            )));
        }
        if rest[..4] != [0xff; 4] {
            return Err(err(format!("no continuation marker at byte {pos}")));
        }
        let meta_len = i32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if meta_len == 0 {
            if rest.len() != EOS.len() {
                return Err(err(format!(
                    "{} bytes after the end-of-stream marker",
                    rest.len() - 8
                )));
            }
            break;
        }
        let meta_len = usize::try_from(meta_len)
            .map_err(|_| err(format!("negative metadata length at byte {pos}")))?;
        let meta = rest.get(8..8 + meta_len).ok_or_else(|| {
            err(format!(
                "metadata of {meta_len} bytes at byte {pos} runs past the end"
            ))
        })?;
        let message = arrow_ipc::root_as_message(meta)
            .map_err(|e| err(format!("message at byte {pos}: {e}")))?;
        let body_len = usize::try_from(message.bodyLength())
            .map_err(|_| err(format!("negative body length at byte {pos}")))?;
        let body_start = 8 + meta_len;
        if !(pos + body_start).is_multiple_of(8) || !body_len.is_multiple_of(8) {
            return Err(err(format!(
                "message at byte {pos} is not padded to 8 bytes"
            )));
        }
        if rest.len() - body_start < body_len {
            return Err(err(format!(
                "body of {body_len} bytes at byte {pos} runs past the end"
            )));
        }
        match (messages, message.header_type()) {
            (0, arrow_ipc::MessageHeader::Schema) => {}
            (1, arrow_ipc::MessageHeader::RecordBatch) => {
                let rb = message
                    .header_as_record_batch()
                    .ok_or_else(|| err("record batch message without header".into()))?;
                if rb.compression().is_some() {
                    return Err(err(
                        "IPC body compression is not used by Varde envelopes".into()
                    ));
                }
                for (i, b) in rb.buffers().iter().flatten().enumerate() {
                    let (off, len) = (b.offset(), b.length());
                    // Arrow readers assume 8-byte aligned buffers (and panic otherwise).
                    if off % 8 != 0 {
                        return Err(err(format!(
                            "buffer {i} at offset {off} is not 8-byte aligned"
                        )));
                    }
                    let inside = off >= 0
                        && len >= 0
                        && usize::try_from(off.saturating_add(len))
                            .is_ok_and(|end| end <= body_len);
                    if !inside {
                        return Err(err(format!(
                            "buffer {i} ({off}+{len}) lies outside the {body_len}-byte body"
                        )));
                    }
                }
            }
            (n, kind) => {
                return Err(err(format!(
                    "message {n} is a {kind:?}; expected a schema, then one record batch"
                )));
            }
        }
        messages += 1;
        pos += body_start + body_len;
    }
    if messages != 2 {
        return Err(EnvelopeError::BatchCount(messages.saturating_sub(1)));
    }
    Ok(())
}

fn read_single_batch(ipc: &[u8]) -> Result<RecordBatch, EnvelopeError> {
    let mut reader = StreamReader::try_new(Cursor::new(ipc), None)?;
    match reader.next() {
        Some(batch) => Ok(batch?),
        None => Err(EnvelopeError::BatchCount(0)),
    }
}
