//! Identifiers: collectors and events.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Error;

/// Longest collector id accepted, in bytes.
pub const MAX_COLLECTOR_ID_LEN: usize = 64;

/// The identity of one collector installation, e.g. `k0301-syslog-01`.
///
/// 1 to [`MAX_COLLECTOR_ID_LEN`] ASCII characters from `[A-Za-z0-9._-]`, so it is safe in
/// topic names, file names, metric labels and ClickHouse without escaping.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CollectorId(String);

impl CollectorId {
    /// Validates and wraps a collector id.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if id.is_empty() || id.len() > MAX_COLLECTOR_ID_LEN || !id.chars().all(ok_char) {
            return Err(Error::BadCollectorId(id));
        }
        Ok(CollectorId(id))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CollectorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for CollectorId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        CollectorId::new(s)
    }
}

impl TryFrom<String> for CollectorId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        CollectorId::new(s)
    }
}

impl From<CollectorId> for String {
    fn from(id: CollectorId) -> String {
        id.0
    }
}

/// The deterministic id of one event: 128 bits derived from (collector id, batch sequence, row).
///
/// A batch that is delivered twice (a retry, a replay after a crash) yields the same ids, so the
/// store can collapse the copies. The derivation is SHA-256 over a domain tag and the three parts,
/// truncated to 16 bytes; it is part of the wire contract and never changes within a schema
/// version.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EventId(pub [u8; 16]);

impl EventId {
    /// The id of row `row` of batch `batch_seq` from `collector`.
    pub fn derive(collector: &str, batch_seq: u64, row: u32) -> EventId {
        let mut h = Sha256::new();
        h.update(b"varde/event/v1\0");
        h.update(collector.as_bytes());
        h.update([0u8]);
        h.update(batch_seq.to_be_bytes());
        h.update(row.to_be_bytes());
        let digest = h.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        EventId(id)
    }

    /// Parses the 32-character hex form.
    pub fn parse_hex(s: &str) -> Option<EventId> {
        parse_hex16(s).map(EventId)
    }
}

/// The deterministic id of one alert: one rule matching one event.
///
/// SHA-256 over a domain tag, the rule's id and the event id, truncated to 16 bytes: detecting
/// the same event again (a replayed batch) yields the same alert id, so the store collapses the
/// copies exactly as it does for events.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AlertId(pub [u8; 16]);

/// The 16 bytes written as 32 hex digits (either case), as ids and dedup keys are shown.
pub fn parse_hex16(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

impl AlertId {
    /// Parses the 32-character hex form.
    pub fn parse_hex(s: &str) -> Option<AlertId> {
        parse_hex16(s).map(AlertId)
    }

    /// The id of `rule_id` matching `event`.
    pub fn derive(rule_id: &str, event: EventId) -> AlertId {
        AlertId(digest16(
            b"varde/alert/v1\0",
            &[rule_id.as_bytes(), &event.0],
        ))
    }
}

/// SHA-256 of `tag` and `parts` (each followed by a zero byte), truncated to 16 bytes: the
/// derivation of Varde's deterministic ids and keys.
pub fn digest16(tag: &[u8], parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(tag);
    for part in parts {
        h.update(part);
        h.update([0u8]);
    }
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

impl fmt::Display for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for AlertId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlertId({self})")
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "EventId({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collector_ids_are_validated() {
        assert!(CollectorId::new("k0301-syslog-01").is_ok());
        assert!(CollectorId::new("a.b_c-D9").is_ok());
        for bad in ["", "has space", "æøå", "a/b", &"x".repeat(65)] {
            assert!(CollectorId::new(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn event_ids_are_deterministic_and_distinct() {
        let a = EventId::derive("c1", 7, 0);
        assert_eq!(a, EventId::derive("c1", 7, 0));
        assert_ne!(a, EventId::derive("c1", 7, 1));
        assert_ne!(a, EventId::derive("c1", 8, 0));
        assert_ne!(a, EventId::derive("c2", 7, 0));
        // The separator keeps ("c1", seq) and ("c", seq') apart even when bytes line up.
        assert_ne!(EventId::derive("c", 0x3100, 0), EventId::derive("c1", 0, 0));
        assert_eq!(EventId::parse_hex(&a.to_string()), Some(a));
        assert_eq!(EventId::parse_hex("zz"), None);
    }

    #[test]
    fn event_id_derivation_is_stable() {
        // Part of the wire contract: this value must never change within schema version 1.
        // (Computed independently: sha256(b"varde/event/v1\0k0301-test\0" + be64(1) + be32(0))[..16].)
        assert_eq!(
            EventId::derive("k0301-test", 1, 0).to_string(),
            "587baba450c12f801f406ce1b092af9f"
        );
    }

    #[test]
    fn alert_ids_are_stable_and_depend_on_rule_and_event() {
        let e = EventId::derive("k0301-a", 7, 3);
        let a = AlertId::derive("rule-1", e);
        assert_eq!(a, AlertId::derive("rule-1", e));
        assert_ne!(a, AlertId::derive("rule-2", e));
        assert_ne!(
            a,
            AlertId::derive("rule-1", EventId::derive("k0301-a", 7, 4))
        );
        // Part of the storage contract: a change here makes replays visible as duplicates.
        // (Independently computed: SHA-256 of the tag, each part followed by a zero byte.)
        assert_eq!(a.to_string(), "553483860a1b7ec179ed5ab718d6cd09");
        assert_eq!(
            AlertId::derive("", EventId([0; 16])).to_string(),
            "c79ae497c7288c71ce60df5f73e909a2"
        );
    }
}
