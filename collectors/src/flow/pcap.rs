//! `.pcap` and `.pcapng` files (read with the pure-Rust `pcap-file` crate) through the same
//! decoder and flow table as live capture: for offline analysis (`varde-collector pcap`) and
//! for tests. A file cut short or damaged part-way gives the flows of what was read before the
//! damage, and says where it stopped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use pcap_file::pcapng::{Block, PcapNgReader};
use serde::Serialize;

use super::FlowRecord;
use super::decode::{DecodeError, decode};
use super::table::{FlowSettings, FlowTable, TableStats};

/// What reading one file counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FileSummary {
    /// Frames in the file.
    pub frames: u64,
    /// Frames that were IP packets and joined a flow.
    pub packets: u64,
    /// IP bytes of those packets.
    pub bytes: u64,
    /// Frames that were not IP (skipped).
    pub not_ip: u64,
    /// Frames that could not be decoded, by what was wrong.
    pub malformed: BTreeMap<&'static str, u64>,
    /// The flow table's counts (flows reported, evicted, active timeouts).
    pub table: TableStats,
    /// Why reading stopped before the end of the file, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
}

/// Why a file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum PcapFileError {
    /// Not readable.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Neither pcap nor pcapng.
    #[error("{path}: not a pcap or pcapng file (magic {magic:02x?})")]
    Format {
        /// The file.
        path: String,
        /// Its first bytes.
        magic: Vec<u8>,
    },
    /// The file header is damaged.
    #[error("{path}: {message}")]
    Header {
        /// The file.
        path: String,
        /// What the reader said.
        message: String,
    },
}

/// Whether `path` starts like a `.pcap` or `.pcapng` file (by its first four bytes, whatever
/// its name).
pub fn is_capture(path: &Path) -> bool {
    let mut magic = [0u8; 4];
    File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && is_capture_magic(magic)
}

fn is_capture_magic(magic: [u8; 4]) -> bool {
    matches!(
        magic,
        [0xd4, 0xc3, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0xc3, 0xd4]
            | [0x4d, 0x3c, 0xb2, 0xa1]
            | [0xa1, 0xb2, 0x3c, 0x4d]
            | [0x0a, 0x0d, 0x0d, 0x0a]
    )
}

/// Reads `path`, hands every flow to `emit` as it ends (and the rest at the end of the file,
/// oldest first), not yet attributed to components; returns the counts.
pub fn read_file(
    path: &Path,
    settings: FlowSettings,
    mut emit: impl FnMut(FlowRecord),
) -> Result<FileSummary, PcapFileError> {
    let shown = path.display().to_string();
    let io = |source| PcapFileError::Io {
        path: shown.clone(),
        source,
    };
    let mut file = BufReader::new(File::open(path).map_err(io)?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(io)?;
    let rest = std::io::Cursor::new(magic).chain(file);
    let mut table = FlowTable::new(settings);
    let mut summary = FileSummary::default();
    let mut out = Vec::new();
    let mut flush = |out: &mut Vec<FlowRecord>| {
        for f in out.drain(..) {
            emit(f);
        }
    };
    let frame = |summary: &mut FileSummary,
                 table: &mut FlowTable,
                 out: &mut Vec<FlowRecord>,
                 linktype: u32,
                 data: &[u8],
                 ts_us: i64| {
        summary.frames += 1;
        match decode(linktype, data, ts_us) {
            Ok(p) => {
                summary.packets += 1;
                summary.bytes += u64::from(p.ip_len);
                table.push(&p, out);
            }
            Err(DecodeError::NotIp) => summary.not_ip += 1,
            Err(e) => *summary.malformed.entry(e.label()).or_default() += 1,
        }
    };
    match magic {
        [0xd4, 0xc3, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0xc3, 0xd4]
        | [0x4d, 0x3c, 0xb2, 0xa1]
        | [0xa1, 0xb2, 0x3c, 0x4d] => {
            let mut reader = PcapReader::new(rest).map_err(|e| PcapFileError::Header {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            let linktype = u32::from(reader.header().datalink);
            while let Some(next) = reader.next_packet() {
                match next {
                    Ok(p) => {
                        let ts = i64::try_from(p.timestamp.as_micros()).unwrap_or(i64::MAX);
                        frame(&mut summary, &mut table, &mut out, linktype, &p.data, ts);
                        flush(&mut out);
                    }
                    Err(e) => {
                        summary.stopped = Some(format!("after frame {}: {e}", summary.frames));
                        break;
                    }
                }
            }
        }
        [0x0a, 0x0d, 0x0d, 0x0a] => {
            let mut reader = PcapNgReader::new(rest).map_err(|e| PcapFileError::Header {
                path: shown.clone(),
                message: e.to_string(),
            })?;
            // Per interface: link type and timestamp resolution (pcap-file hands the raw
            // timestamp units on as nanoseconds; `if_tsresol` says what they are).
            let mut interfaces: Vec<(u32, u8)> = Vec::new();
            while let Some(next) = reader.next_block() {
                match next {
                    Ok(Block::SectionHeader(_)) => interfaces.clear(),
                    Ok(Block::InterfaceDescription(idb)) => {
                        let tsresol = idb
                            .options
                            .iter()
                            .find_map(|o| match o {
                                InterfaceDescriptionOption::IfTsResol(r) => Some(*r),
                                _ => None,
                            })
                            .unwrap_or(6);
                        interfaces.push((u32::from(idb.linktype), tsresol));
                    }
                    Ok(Block::EnhancedPacket(epb)) => {
                        let Some(&(linktype, tsresol)) = interfaces.get(epb.interface_id as usize)
                        else {
                            summary.frames += 1;
                            *summary.malformed.entry("unknown_interface").or_default() += 1;
                            continue;
                        };
                        let ts = units_to_us(epb.timestamp.as_nanos(), tsresol);
                        frame(&mut summary, &mut table, &mut out, linktype, &epb.data, ts);
                        flush(&mut out);
                    }
                    Ok(Block::SimplePacket(spb)) => {
                        // No timestamp: they join flows at time 0 of the file's first
                        // interface.
                        let linktype = interfaces.first().map_or(0, |i| i.0);
                        frame(&mut summary, &mut table, &mut out, linktype, &spb.data, 0);
                        flush(&mut out);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        summary.stopped = Some(format!("after frame {}: {e}", summary.frames));
                        break;
                    }
                }
            }
        }
        other => {
            return Err(PcapFileError::Format {
                path: shown,
                magic: other.to_vec(),
            });
        }
    }
    table.drain(&mut out);
    flush(&mut out);
    summary.table = table.stats();
    Ok(summary)
}

/// Timestamp units of resolution `tsresol` (pcapng `if_tsresol`: 10^-n seconds, or 2^-n with
/// the high bit set) into µs.
fn units_to_us(units: u128, tsresol: u8) -> i64 {
    let us = if tsresol & 0x80 == 0 {
        let exp = u32::from(tsresol);
        if exp >= 6 {
            units / 10u128.saturating_pow(exp - 6)
        } else {
            units.saturating_mul(10u128.pow(6 - exp))
        }
    } else {
        let exp = u32::from(tsresol & 0x7f);
        units
            .saturating_mul(1_000_000)
            .checked_shr(exp)
            .unwrap_or(0)
    };
    i64::try_from(us).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::units_to_us;

    #[test]
    fn pcapng_timestamp_resolutions() {
        assert_eq!(units_to_us(1_700_000_000_123_456, 6), 1_700_000_000_123_456);
        assert_eq!(
            units_to_us(1_700_000_000_123_456_789, 9),
            1_700_000_000_123_456
        );
        assert_eq!(units_to_us(1_700_000_000_123, 3), 1_700_000_000_123_000);
        // 2^-10 s units: 1024 of them are one second.
        assert_eq!(units_to_us(1024 * 5, 0x80 | 10), 5_000_000);
    }
}
