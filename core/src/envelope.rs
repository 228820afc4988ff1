//! The wire envelope: one Kafka message = one compressed Arrow IPC batch of one source kind from
//! one collector.
//!
//! Layout (all integers little-endian):
//!
//! | offset   | size | field                                                      |
//! |----------|------|------------------------------------------------------------|
//! | 0        | 4    | magic `VRDE`                                               |
//! | 4        | 1    | envelope format version, [`ENVELOPE_VERSION`] (see below)  |
//! | 5        | 1    | source kind code ([`SourceKind::code`])                    |
//! | 6        | 2    | event schema version ([`crate::schema::SCHEMA_VERSION`])   |
//! | 8        | 8    | batch sequence number (per collector, strictly increasing) |
//! | 16       | 4    | row count                                                  |
//! | 20       | 4    | payload length: bytes of the uncompressed IPC stream       |
//! | 24       | 4    | tenant: kommunenummer, 4 ASCII digits                      |
//! | 28       | 1    | collector id length *n* (1–64)                             |
//! | 29       | *n*  | collector id (ASCII)                                       |
//! | 29 + *n* | 8    | signed versions: the signing key's id ([`KeyId`])          |
//! | 37 + *n* | 64   | signed versions: Ed25519 signature (see below)             |
//! | *h*      | …    | one zstd frame of an Arrow IPC stream: schema, exactly one |
//! |          |      | record batch, end-of-stream marker                         |
//!
//! ## Versions
//! | version | signed | the batch on the wire                                           |
//! |---------|--------|-----------------------------------------------------------------|
//! | 4       | yes    | without the `tenant`, `collector_id` and `source_kind` columns |
//! | 3       | no     | as version 4                                                    |
//! | 2       | yes    | every column of the kind's schema (read, no longer written)     |
//! | 1       | no     | as version 2 (read, no longer written)                          |
//!
//! From version 3 on the three columns that hold the same value in every row, the header's
//! tenant, collector id and kind, are left out of the IPC stream and made again from the header
//! when it is decoded: their offsets (an arithmetic progression zstd compresses poorly) were
//! 29 % of the bytes a collector sent for loggen's syslog lines (16.1 → 11.4 bytes per event)
//! and a quarter of its zstd instructions. A decoded envelope has the kind's full schema
//! whatever its version.
//!
//! ## Signatures (versions 2 and 4)
//! A collector signs every envelope with its Ed25519 key ([`crate::identity`]). The signature
//! covers [`SIGNING_CONTEXT`], every header byte before the signature (magic, versions, kind,
//! sequence, row count, payload length, tenant, collector id, key id), and the SHA-256 of the
//! compressed payload, so the pipeline checks who sent a batch, for which tenant, before it
//! decompresses a byte of it ([`EnvelopeHeader::verify`]). Versions 1 and 3 are the same
//! layouts without the key id and signature: readable, but the pipeline refuses them unless told
//! to accept unsigned batches.
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

use std::io::{Cursor, Read};

use arrow_array::RecordBatch;
use arrow_ipc::reader::StreamReader;
use arrow_ipc::writer::StreamWriter;

use sha2::{Digest, Sha256};

use crate::event::BatchReader;
use crate::identity::{CollectorKey, KEY_ID_LEN, KeyId, PublicKey, SIGNATURE_LEN};
use crate::schema::{COLLECTOR_ID, SCHEMA_VERSION, SOURCE_KIND, TENANT};
use crate::{CollectorId, Kommunenummer, SourceKind};

/// The four bytes every envelope starts with.
pub const MAGIC: [u8; 4] = *b"VRDE";
/// The envelope format version of signed envelopes, which collectors write.
pub const ENVELOPE_VERSION: u8 = 4;
/// The format version of unsigned envelopes ([`Envelope::encode`]): still read, refused by the
/// pipeline unless it is told to accept unsigned batches.
pub const ENVELOPE_VERSION_UNSIGNED: u8 = 3;
/// The signed format before version 4, with the header's columns in the batch: still read
/// (a collector's spool may hold such envelopes after an upgrade), no longer written.
pub const ENVELOPE_VERSION_SIGNED_FULL: u8 = 2;
/// The unsigned format before version 3: still read, no longer written.
pub const ENVELOPE_VERSION_UNSIGNED_FULL: u8 = 1;

/// Whether envelopes of `version` carry a key id and a signature.
fn is_signed(version: u8) -> bool {
    version == ENVELOPE_VERSION || version == ENVELOPE_VERSION_SIGNED_FULL
}

/// Whether envelopes of `version` leave the header's columns out of the batch.
fn is_compact(version: u8) -> bool {
    version == ENVELOPE_VERSION || version == ENVELOPE_VERSION_UNSIGNED
}

/// The columns every row of a batch shares with the header, left out of the batch on the wire
/// from version 3 on.
const HEADER_COLUMNS: [&str; 3] = [TENANT, COLLECTOR_ID, SOURCE_KIND];
/// What a signature's message starts with, so a Varde envelope signature can never be taken for
/// a signature over anything else the same key might sign.
pub const SIGNING_CONTEXT: &[u8] = b"varde.envelope.v2\0";
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
    #[error(
        "envelope format version {0} is not supported (this build reads {ENVELOPE_VERSION_UNSIGNED_FULL} to {ENVELOPE_VERSION})"
    )]
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
    /// A signed envelope's signature does not verify under the key it names.
    #[error("signature of key {key_id} does not verify over this envelope")]
    BadSignature {
        /// The key the envelope names.
        key_id: KeyId,
    },
    /// [`EnvelopeHeader::verify`] on an unsigned (version 1) envelope.
    #[error("the envelope is not signed")]
    Unsigned,
}

/// A signed envelope's key id and signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Signature {
    /// The signing key's id.
    pub key_id: KeyId,
    /// The Ed25519 signature.
    pub bytes: [u8; SIGNATURE_LEN],
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
    /// Key id and signature of a signed (version 2) envelope; `None` for version 1. Ignored by
    /// [`Envelope::encode`] and [`Envelope::encode_signed`], which write their own.
    pub signature: Option<Signature>,
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
        let version = bytes[4];
        if !(ENVELOPE_VERSION_UNSIGNED_FULL..=ENVELOPE_VERSION).contains(&version) {
            return Err(EnvelopeError::UnsupportedEnvelopeVersion(version));
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
        let (signature, end) = if is_signed(version) {
            let sig_end = end + KEY_ID_LEN + SIGNATURE_LEN;
            let block = bytes.get(end..sig_end).ok_or(EnvelopeError::Truncated {
                len: bytes.len(),
                need: sig_end,
            })?;
            let mut key_id = [0u8; KEY_ID_LEN];
            key_id.copy_from_slice(&block[..KEY_ID_LEN]);
            let mut sig = [0u8; SIGNATURE_LEN];
            sig.copy_from_slice(&block[KEY_ID_LEN..]);
            (
                Some(Signature {
                    key_id: KeyId(key_id),
                    bytes: sig,
                }),
                sig_end,
            )
        } else {
            (None, end)
        };
        Ok((
            EnvelopeHeader {
                kind,
                schema_version,
                batch_seq,
                row_count,
                payload_len,
                tenant,
                collector_id,
                signature,
            },
            end,
        ))
    }

    /// Checks a signed envelope's signature under `key` (the key its header names, looked up by
    /// the caller): the header and a hash of the still-compressed payload, so nothing is
    /// decompressed before the sender is known. `bytes` is the whole message.
    pub fn verify(bytes: &[u8], key: &PublicKey) -> Result<(), EnvelopeError> {
        let (header, payload_offset) = EnvelopeHeader::peek(bytes)?;
        let signature = header.signature.ok_or(EnvelopeError::Unsigned)?;
        let signed_len = payload_offset - SIGNATURE_LEN;
        let message = signed_message(&bytes[..signed_len], &bytes[payload_offset..]);
        key.verify(&message, &signature.bytes)
            .map_err(|_| EnvelopeError::BadSignature {
                key_id: signature.key_id,
            })
    }

    fn write(&self, out: &mut Vec<u8>, key_id: Option<KeyId>, layout: Layout) {
        out.extend_from_slice(&MAGIC);
        out.push(match (key_id.is_some(), layout) {
            (true, Layout::Compact) => ENVELOPE_VERSION,
            (false, Layout::Compact) => ENVELOPE_VERSION_UNSIGNED,
            #[cfg(test)]
            (true, Layout::Full) => ENVELOPE_VERSION_SIGNED_FULL,
            #[cfg(test)]
            (false, Layout::Full) => ENVELOPE_VERSION_UNSIGNED_FULL,
        });
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
        if let Some(key_id) = key_id {
            out.extend_from_slice(&key_id.0);
        }
    }
}

/// About the size of `batch` as an Arrow IPC stream: the bytes its arrays use (not the room
/// their buffers have), each buffer's padding, and the schema and batch messages. The stream
/// buffer starts this large, so writing it copies nothing and leaves little unused.
fn ipc_size_hint(batch: &RecordBatch) -> usize {
    let data: usize = batch
        .columns()
        .iter()
        .map(|c| {
            c.to_data()
                .get_slice_memory_size()
                .unwrap_or_else(|_| c.get_array_memory_size())
        })
        .sum();
    // Up to four buffers per column (validity, offsets, values, a list's child's), each padded
    // to 64 bytes, and the messages' flatbuffers (the schema's is about 2 KB).
    data + batch.num_columns() * 4 * 64 + 4096
}

/// What a version 2 signature signs: the context, the header before the signature, and the
/// SHA-256 of the compressed payload.
fn signed_message(header: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(SIGNING_CONTEXT.len() + header.len() + 32);
    message.extend_from_slice(SIGNING_CONTEXT);
    message.extend_from_slice(header);
    message.extend_from_slice(&Sha256::digest(payload));
    message
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
                signature: None,
            },
            batch,
        };
        envelope.check_batch(true)?;
        Ok(envelope)
    }

    /// Serialises to the signed wire form ([`ENVELOPE_VERSION`]), signed with the collector's
    /// `key`. A sender of many envelopes keeps an [`EnvelopeWriter`] instead.
    pub fn encode_signed(&self, key: &CollectorKey) -> Result<Vec<u8>, EnvelopeError> {
        EnvelopeWriter::new().encode_signed(self, key)
    }

    /// Serialises to the unsigned wire form ([`ENVELOPE_VERSION_UNSIGNED`]), which the pipeline
    /// refuses unless it accepts unsigned batches: for files, tests and tools, not for
    /// collectors.
    pub fn encode(&self) -> Result<Vec<u8>, EnvelopeError> {
        EnvelopeWriter::new().encode(self)
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
        let compact = is_compact(bytes[4]);
        let batch = if compact {
            with_header_columns(&header, &batch)?
        } else {
            batch
        };
        header.payload_len = 0;
        header.signature = None;
        let envelope = Envelope { header, batch };
        // The header's columns of a compact envelope were just made from the header.
        envelope.check_batch(!compact)?;
        Ok(envelope)
    }

    /// Checks the batch's row count and schema, and with `header_columns` that its tenant,
    /// collector and kind columns hold the header's values in every row.
    fn check_batch(&self, header_columns: bool) -> Result<(), EnvelopeError> {
        // Columns 2 and 3 are the tenant and the collector id (`schema::base_fields`).
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
        if !header_columns {
            return Ok(());
        }
        // The common case, every row as the header says, checked a column at a time; a batch
        // that is not is then read row by row for the first row that differs.
        let constant = |column: usize, value: &str| {
            self.batch
                .column(column)
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .is_some_and(|c| all_rows_are(c, value))
        };
        let as_header = constant(2, h.tenant.as_str()) && constant(3, h.collector_id.as_str());
        let rows_to_read = if as_header { 0 } else { rows };
        for row in 0..rows_to_read {
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

/// Encodes envelope after envelope, keeping zstd's context, the Arrow stream and the compressed
/// payload's buffers from one to the next. Each is a megabyte or more for a batch of thousands
/// of rows; made afresh for every batch they were fresh memory from the kernel every time, paid
/// for in page faults (about 2 MB of the 3 MB the collector faulted in per batch of 5,000
/// lines). The envelopes are the same bytes [`Envelope::encode_signed`] and [`Envelope::encode`]
/// make.
#[derive(Default)]
pub struct EnvelopeWriter {
    /// zstd's context at [`ZSTD_LEVEL`], made at the first envelope.
    compressor: Option<zstd::bulk::Compressor<'static>>,
    ipc: Vec<u8>,
    compressed: Vec<u8>,
}

impl std::fmt::Debug for EnvelopeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnvelopeWriter")
            .field("ipc_capacity", &self.ipc.capacity())
            .field("compressed_capacity", &self.compressed.capacity())
            .finish_non_exhaustive()
    }
}

impl EnvelopeWriter {
    /// A writer with nothing kept yet.
    pub fn new() -> Self {
        EnvelopeWriter::default()
    }

    /// Serialises `envelope` to the signed wire form ([`ENVELOPE_VERSION`]), signed with the
    /// collector's `key`.
    pub fn encode_signed(
        &mut self,
        envelope: &Envelope,
        key: &CollectorKey,
    ) -> Result<Vec<u8>, EnvelopeError> {
        self.encode_signed_as(envelope, key, Layout::Compact)
    }

    /// Serialises `envelope` to the unsigned wire form ([`ENVELOPE_VERSION_UNSIGNED`]).
    pub fn encode(&mut self, envelope: &Envelope) -> Result<Vec<u8>, EnvelopeError> {
        self.encode_with(envelope, None, Layout::Compact, |_, _| [0u8; SIGNATURE_LEN])
    }

    fn encode_signed_as(
        &mut self,
        envelope: &Envelope,
        key: &CollectorKey,
        layout: Layout,
    ) -> Result<Vec<u8>, EnvelopeError> {
        let key_id = key.key_id();
        self.encode_with(envelope, Some(key_id), layout, |header, payload| {
            key.sign(&signed_message(header, payload))
        })
    }

    fn encode_with(
        &mut self,
        envelope: &Envelope,
        key_id: Option<KeyId>,
        layout: Layout,
        sign: impl FnOnce(&[u8], &[u8]) -> [u8; SIGNATURE_LEN],
    ) -> Result<Vec<u8>, EnvelopeError> {
        let compact;
        let batch = match layout {
            #[cfg(test)]
            Layout::Full => &envelope.batch,
            Layout::Compact => {
                compact = without_header_columns(&envelope.batch)?;
                &compact
            }
        };
        self.ipc.clear();
        self.ipc.reserve(ipc_size_hint(batch));
        let mut writer = StreamWriter::try_new(&mut self.ipc, &batch.schema())?;
        writer.write(batch)?;
        writer.finish()?;
        drop(writer);
        let ipc = self.ipc.as_slice();
        let mut header = envelope.header.clone();
        header.payload_len = u32::try_from(ipc.len()).map_err(|_| EnvelopeError::Oversized {
            len: ipc.len(),
            limit: u32::MAX as usize,
        })?;
        let compression = |e: std::io::Error| EnvelopeError::Compression(e.to_string());
        let compressor = match &mut self.compressor {
            Some(c) => c,
            None => self
                .compressor
                .insert(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(compression)?),
        };
        // One call over the whole stream: zstd sizes its tables for the input and needs no
        // window buffer of its own (the streaming encoder took 3.6 MB per batch).
        self.compressed.clear();
        self.compressed
            .reserve(zstd::zstd_safe::compress_bound(ipc.len()));
        compressor
            .compress_to_buffer(ipc, &mut self.compressed)
            .map_err(compression)?;
        // The header (about 160 bytes, with the collector id), the signature, the payload.
        let mut out = Vec::with_capacity(160 + SIGNATURE_LEN + self.compressed.len());
        header.write(&mut out, key_id, layout);
        let signed_len = out.len();
        if key_id.is_some() {
            out.extend_from_slice(&[0u8; SIGNATURE_LEN]);
        }
        let payload_offset = out.len();
        out.extend_from_slice(&self.compressed);
        if key_id.is_some() {
            let signature = sign(&out[..signed_len], &out[payload_offset..]);
            out[signed_len..payload_offset].copy_from_slice(&signature);
        }
        Ok(out)
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

/// Whether a batch goes on the wire with or without the header's columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Versions 1 and 2: every column. Only read now; written by the tests of that reading.
    #[cfg(test)]
    Full,
    /// Versions 3 and 4: without [`HEADER_COLUMNS`].
    Compact,
}

/// `batch` without [`HEADER_COLUMNS`], as it goes on the wire from version 3 on (no column is
/// copied).
fn without_header_columns(batch: &RecordBatch) -> Result<RecordBatch, EnvelopeError> {
    let schema = batch.schema();
    let keep: Vec<usize> = (0..schema.fields().len())
        .filter(|&i| !HEADER_COLUMNS.contains(&schema.field(i).name().as_str()))
        .collect();
    if keep.len() + HEADER_COLUMNS.len() != schema.fields().len() {
        return Err(EnvelopeError::Mismatch(
            "the batch lacks a tenant, collector_id or source_kind column".into(),
        ));
    }
    Ok(batch.project(&keep)?)
}

/// The batch of a version 3 or 4 envelope with the header's columns put back in their places:
/// the batch must have exactly the kind's schema without them.
fn with_header_columns(
    header: &EnvelopeHeader,
    wire: &RecordBatch,
) -> Result<RecordBatch, EnvelopeError> {
    let full = crate::schema::schema(header.kind);
    let expected = full
        .fields()
        .iter()
        .filter(|f| !HEADER_COLUMNS.contains(&f.name().as_str()));
    let wire_schema = wire.schema();
    if wire_schema.fields().len() + HEADER_COLUMNS.len() != full.fields().len()
        || !expected.eq(wire_schema.fields().iter())
    {
        return Err(EnvelopeError::Mismatch(format!(
            "the batch does not have the {} schema without its header's columns",
            header.kind
        )));
    }
    let rows = wire.num_rows();
    let mut wire_columns = wire.columns().iter();
    let mut columns = Vec::with_capacity(full.fields().len());
    for field in full.fields() {
        let column: arrow_array::ArrayRef = match field.name().as_str() {
            TENANT => repeated(header.tenant.as_str(), rows)?,
            COLLECTOR_ID => repeated(header.collector_id.as_str(), rows)?,
            SOURCE_KIND => repeated(header.kind.name(), rows)?,
            _ => match wire_columns.next() {
                Some(c) => std::sync::Arc::clone(c),
                None => return Err(EnvelopeError::Mismatch("a column is missing".into())),
            },
        };
        columns.push(column);
    }
    Ok(RecordBatch::try_new(full, columns)?)
}

/// A string column of `rows` rows, each `value`; an error when its bytes would not fit Arrow's
/// 32-bit offsets.
fn repeated(value: &str, rows: usize) -> Result<arrow_array::ArrayRef, EnvelopeError> {
    let total = rows
        .checked_mul(value.len())
        .filter(|&n| i32::try_from(n).is_ok())
        .ok_or_else(|| EnvelopeError::Oversized {
            len: rows.saturating_mul(value.len()),
            limit: i32::MAX as usize,
        })?;
    let mut data = Vec::with_capacity(total);
    for _ in 0..rows {
        data.extend_from_slice(value.as_bytes());
    }
    let offsets = arrow_buffer::OffsetBuffer::from_lengths(std::iter::repeat_n(value.len(), rows));
    let array =
        arrow_array::StringArray::try_new(offsets, arrow_buffer::Buffer::from_vec(data), None)?;
    Ok(std::sync::Arc::new(array))
}

fn read_single_batch(ipc: &[u8]) -> Result<RecordBatch, EnvelopeError> {
    let mut reader = StreamReader::try_new(Cursor::new(ipc), None)?;
    match reader.next() {
        Some(batch) => Ok(batch?),
        None => Err(EnvelopeError::BatchCount(0)),
    }
}

/// Whether every row of `array` holds `value` (as `array.value(row) == value` for each row,
/// validity aside): its offsets step by the value's length, and its bytes are the value
/// repeated, compared a few kilobytes at a time rather than one row at a time.
fn all_rows_are(array: &arrow_array::StringArray, value: &str) -> bool {
    let len = value.len();
    let offsets = array.value_offsets();
    let Some(first) = offsets.first().and_then(|&o| usize::try_from(o).ok()) else {
        return true;
    };
    let stepped = offsets.iter().enumerate().all(|(i, &o)| {
        usize::try_from(o).ok() == i.checked_mul(len).and_then(|n| n.checked_add(first))
    });
    if !stepped {
        return false;
    }
    let rows = offsets.len() - 1;
    let Some(data) = rows
        .checked_mul(len)
        .and_then(|n| array.value_data().get(first..first + n))
    else {
        return false;
    };
    if len == 0 {
        return true;
    }
    let pattern = value.as_bytes().repeat((4096 / len).max(1));
    data.chunks(pattern.len())
        .all(|chunk| pattern.get(..chunk.len()) == Some(chunk))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BatchBuilder, Event};
    use proptest::prelude::*;

    proptest! {
        /// A column is "all rows are `value`" exactly when each of its rows is, for columns
        /// cut out of longer ones (offsets not starting at 0), empty values and columns, and
        /// values that are a prefix or an extension of one another.
        #[test]
        fn all_rows_are_is_row_by_row(
            rows in prop::collection::vec(prop::sample::select(vec!["0301", "030", "03010", "", "4601"]), 0..40),
            value in prop::sample::select(vec!["0301", "030", ""]),
            cut in 0usize..5,
            long in any::<bool>(),
        ) {
            // Long runs of one value too, past one comparison's few kilobytes.
            let rows: Vec<&str> = if long { vec![value; 3000 + rows.len()] } else { rows };
            let array = arrow_array::StringArray::from(rows.clone());
            let cut = cut.min(rows.len());
            let sliced = array.slice(cut, rows.len() - cut);
            let want = (0..rows.len() - cut).all(|r| sliced.value(r) == value);
            prop_assert_eq!(all_rows_are(&sliced, value), want);
        }
    }

    fn syslog_envelope(rows: usize) -> Envelope {
        let tenant = Kommunenummer::parse("4601").expect("tenant");
        let collector = CollectorId::new("k4601-fw-02").expect("id");
        let mut builder = BatchBuilder::new(SourceKind::Syslog, tenant, collector.clone(), rows);
        for i in 0..rows {
            builder
                .push(&Event {
                    host: Some(format!("fw{}", i % 3)),
                    message: Some(format!("line {i}")),
                    attrs: vec![("k".into(), i.to_string())],
                    ..Event::default()
                })
                .expect("push");
        }
        let batch = builder.finish().expect("batch");
        Envelope::new(SourceKind::Syslog, tenant, collector, 9, batch).expect("envelope")
    }

    /// The IPC stream inside an envelope, read with Arrow's own reader.
    fn wire_batch(bytes: &[u8]) -> RecordBatch {
        let (header, offset) = EnvelopeHeader::peek(bytes).expect("header");
        let ipc = zstd::stream::decode_all(&bytes[offset..]).expect("zstd");
        assert_eq!(ipc.len(), header.payload_len as usize);
        let mut reader = StreamReader::try_new(Cursor::new(ipc), None).expect("stream");
        reader.next().expect("a batch").expect("valid batch")
    }

    #[test]
    fn written_envelopes_leave_the_header_columns_out_and_decode_with_them() {
        let envelope = syslog_envelope(300);
        let key = CollectorKey::generate().expect("key").0;
        for (bytes, version) in [
            (envelope.encode().expect("encode"), 3),
            (envelope.encode_signed(&key).expect("encode"), 4),
        ] {
            assert_eq!(bytes[4], version);
            let wire = wire_batch(&bytes);
            let names: Vec<&str> = wire
                .schema_ref()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            assert!(
                !names.contains(&"tenant")
                    && !names.contains(&"collector_id")
                    && !names.contains(&"source_kind"),
                "{names:?}"
            );
            assert_eq!(names.len() + 3, envelope.batch.num_columns());
            assert_eq!(wire.num_rows(), 300);
            let decoded = Envelope::decode(&bytes).expect("decode");
            assert_eq!(decoded.batch, envelope.batch);
            let tenants = decoded
                .batch
                .column_by_name("tenant")
                .and_then(|c| {
                    c.as_any()
                        .downcast_ref::<arrow_array::StringArray>()
                        .cloned()
                })
                .expect("tenant column");
            assert!(tenants.iter().all(|t| t == Some("4601")));
        }
        assert!(
            EnvelopeHeader::verify(&envelope.encode_signed(&key).expect("e"), &key.public_key())
                .is_ok()
        );
    }

    /// Envelopes of versions 1 and 2 (a spool written before the upgrade, an older collector)
    /// are still read, and a signed one still verifies.
    #[test]
    fn envelopes_of_the_full_versions_are_still_read() {
        let envelope = syslog_envelope(50);
        let key = CollectorKey::generate().expect("key").0;
        let mut writer = EnvelopeWriter::new();
        let v1 = writer
            .encode_with(&envelope, None, Layout::Full, |_, _| [0u8; SIGNATURE_LEN])
            .expect("v1");
        let v2 = writer
            .encode_signed_as(&envelope, &key, Layout::Full)
            .expect("v2");
        assert_eq!((v1[4], v2[4]), (1, 2));
        assert_eq!(wire_batch(&v1).num_columns(), envelope.batch.num_columns());
        assert_eq!(Envelope::decode(&v1).expect("v1 decodes"), envelope);
        assert_eq!(Envelope::decode(&v2).expect("v2 decodes"), envelope);
        assert!(EnvelopeHeader::verify(&v2, &key.public_key()).is_ok());
        // And the header's columns still have to agree with the header there.
        let mut forged = v1.clone();
        forged[24..28].copy_from_slice(b"0301");
        let err = Envelope::decode(&forged).expect_err("tenant differs from the rows");
        assert!(err.to_string().contains("header says 0301"), "{err}");
    }

    /// A full batch marked as compact, or a compact one marked as full, is refused with a
    /// reason, not read with columns out of place.
    #[test]
    fn a_batch_of_the_other_layout_is_refused() {
        let envelope = syslog_envelope(20);
        let mut writer = EnvelopeWriter::new();
        let mut full_as_compact = writer
            .encode_with(&envelope, None, Layout::Full, |_, _| [0u8; SIGNATURE_LEN])
            .expect("v1");
        full_as_compact[4] = ENVELOPE_VERSION_UNSIGNED;
        let err = Envelope::decode(&full_as_compact).expect_err("full batch in version 3");
        assert!(
            err.to_string().contains("without its header's columns"),
            "{err}"
        );
        let mut compact_as_full = writer.encode(&envelope).expect("v3");
        compact_as_full[4] = ENVELOPE_VERSION_UNSIGNED_FULL;
        assert!(matches!(
            Envelope::decode(&compact_as_full),
            Err(EnvelopeError::Mismatch(_))
        ));
        let mut unknown = writer.encode(&envelope).expect("v3");
        unknown[4] = 5;
        assert!(matches!(
            Envelope::decode(&unknown),
            Err(EnvelopeError::UnsupportedEnvelopeVersion(5))
        ));
    }

    /// The stream buffer's starting size holds the whole IPC stream, so writing it never grows
    /// the buffer (a copy of everything written so far, and twice the room at the peak), for
    /// batches of one row up to many long ones, with and without attributes.
    #[test]
    fn the_size_hint_holds_the_whole_stream() {
        let tenant = Kommunenummer::parse("0301").expect("tenant");
        for (rows, len, attrs) in [(1, 0, 0), (10, 3, 1), (5000, 200, 0), (2000, 900, 6)] {
            let mut builder = BatchBuilder::new(
                SourceKind::Syslog,
                tenant,
                CollectorId::new("k0301-01").expect("id"),
                rows,
            );
            for i in 0..rows {
                builder
                    .push(&Event {
                        host: Some(format!("host{}", i % 7)),
                        message: Some("m".repeat(len + i % 13)),
                        attrs: (0..attrs)
                            .map(|a| (format!("k{a}"), "v".repeat(a * 5)))
                            .collect(),
                        ..Event::default()
                    })
                    .expect("push");
            }
            let batch = builder.finish().expect("batch");
            let mut ipc = Vec::new();
            let mut writer = StreamWriter::try_new(&mut ipc, &batch.schema()).expect("writer");
            writer.write(&batch).expect("write");
            writer.finish().expect("finish");
            drop(writer);
            let hint = ipc_size_hint(&batch);
            assert!(
                hint >= ipc.len(),
                "{rows} rows: hint {hint} < stream {}",
                ipc.len()
            );
            assert!(
                hint <= ipc.len() + 64 * 1024,
                "{rows} rows: hint {hint} ≫ stream {}",
                ipc.len()
            );
        }
    }
}
