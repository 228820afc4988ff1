//! A collector's report on itself: how deep its spool is and what it had to drop, sent to the
//! CERT as an ordinary `generic_json` event on the municipality's own topic, so that it travels
//! the same way as everything else (spooled when Kafka is away, tenant-checked by the pipeline,
//! stored and retained with the events) and the dashboard can show it on the municipality's
//! page.
//!
//! The collector writes it with [`CollectorStatus::event`]; the store reads the newest one of
//! each collector back with [`CollectorStatus::from_fields`]. The field names are defined here
//! once. A report is only as trustworthy as the collector that sent it: it describes that
//! collector (the envelope's collector id), never another.

use crate::event::Event;

/// The marker field of a status event (its value is the format version, `1`).
pub const MARKER: &str = "varde.collector_status";

/// The message of a status event.
pub const MESSAGE: &str = "varde-collector status";

const SPOOL_BYTES: &str = "spool.bytes";
const SPOOL_MAX_BYTES: &str = "spool.max_bytes";
const SPOOL_RECORDS: &str = "spool.records";
const SPOOL_EVENTS: &str = "spool.events";
const SPOOL_OLDEST_S: &str = "spool.oldest_unsent_seconds";
const DROPPED_SPOOL: &str = "dropped.spool_full_events";
const DROPPED_UDP: &str = "dropped.receive_buffer_datagrams";
const DROPPED_CAPTURE: &str = "dropped.capture_packets";
const REJECTED: &str = "dropped.rejected_events";
const JOURNAL_ERRORS: &str = "errors.journal";
const PUBLISH_ERRORS: &str = "errors.publish";
const VERSION: &str = "version";

/// What a collector reports about itself; counters are totals since it started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CollectorStatus {
    /// When the report was made, µs since the epoch.
    pub at_us: i64,
    /// Bytes of spool segment files on disk.
    pub spool_bytes: u64,
    /// The spool's bound in bytes.
    pub spool_max_bytes: u64,
    /// Records (batches) not yet acknowledged by Kafka.
    pub spool_records: u64,
    /// Events in them.
    pub spool_events: u64,
    /// Age of the oldest unacknowledged record, whole seconds (0 when the spool is empty).
    pub oldest_unsent_s: u64,
    /// Events the spool dropped because it was full (`drop_oldest`).
    pub dropped_spool_full_events: u64,
    /// Datagrams the kernel dropped because a UDP listener's receive buffer was full.
    pub dropped_receive_buffer_datagrams: u64,
    /// Packets the kernel dropped because a capture source's socket buffer was full.
    pub dropped_capture_packets: u64,
    /// Events that could not join a batch.
    pub rejected_events: u64,
    /// Journal appends that failed.
    pub journal_errors: u64,
    /// Failed publish attempts (each was retried).
    pub publish_errors: u64,
    /// The collector's version.
    pub version: String,
}

impl CollectorStatus {
    /// The report as a `generic_json` event.
    pub fn event(&self) -> Event {
        let n = |k: &str, v: u64| (k.to_owned(), v.to_string());
        Event {
            event_time_us: self.at_us,
            receive_time_us: self.at_us,
            message: Some(MESSAGE.to_owned()),
            attrs: vec![
                (MARKER.to_owned(), "1".to_owned()),
                n(SPOOL_BYTES, self.spool_bytes),
                n(SPOOL_MAX_BYTES, self.spool_max_bytes),
                n(SPOOL_RECORDS, self.spool_records),
                n(SPOOL_EVENTS, self.spool_events),
                n(SPOOL_OLDEST_S, self.oldest_unsent_s),
                n(DROPPED_SPOOL, self.dropped_spool_full_events),
                n(DROPPED_UDP, self.dropped_receive_buffer_datagrams),
                n(DROPPED_CAPTURE, self.dropped_capture_packets),
                n(REJECTED, self.rejected_events),
                n(JOURNAL_ERRORS, self.journal_errors),
                n(PUBLISH_ERRORS, self.publish_errors),
                (VERSION.to_owned(), self.version.clone()),
            ],
            ..Event::default()
        }
    }

    /// A report from a stored event's fields, made at `at_us`; `None` unless the fields carry
    /// the marker. A count that is missing or not a number reads as 0.
    pub fn from_fields(at_us: i64, keys: &[String], values: &[String]) -> Option<Self> {
        let get = |k: &str| keys.iter().position(|x| x == k).and_then(|i| values.get(i));
        get(MARKER)?;
        let n = |k: &str| get(k).and_then(|v| v.parse().ok()).unwrap_or(0);
        Some(CollectorStatus {
            at_us,
            spool_bytes: n(SPOOL_BYTES),
            spool_max_bytes: n(SPOOL_MAX_BYTES),
            spool_records: n(SPOOL_RECORDS),
            spool_events: n(SPOOL_EVENTS),
            oldest_unsent_s: n(SPOOL_OLDEST_S),
            dropped_spool_full_events: n(DROPPED_SPOOL),
            dropped_receive_buffer_datagrams: n(DROPPED_UDP),
            dropped_capture_packets: n(DROPPED_CAPTURE),
            rejected_events: n(REJECTED),
            journal_errors: n(JOURNAL_ERRORS),
            publish_errors: n(PUBLISH_ERRORS),
            version: get(VERSION).cloned().unwrap_or_default(),
        })
    }

    /// Events, datagrams and captured packets lost at the edge: dropped by a full spool or a
    /// full receive buffer, or rejected from batches.
    pub fn lost(&self) -> u64 {
        self.dropped_spool_full_events
            .saturating_add(self.dropped_receive_buffer_datagrams)
            .saturating_add(self.dropped_capture_packets)
            .saturating_add(self.rejected_events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_reads_back_from_its_fields() {
        let s = CollectorStatus {
            at_us: 1_764_000_000_000_000,
            spool_bytes: 4096,
            spool_max_bytes: 1 << 30,
            spool_records: 3,
            spool_events: 1500,
            oldest_unsent_s: 42,
            dropped_spool_full_events: 7,
            dropped_receive_buffer_datagrams: 11,
            dropped_capture_packets: 13,
            rejected_events: 1,
            journal_errors: 2,
            publish_errors: 5,
            version: "0.1.0".into(),
        };
        let e = s.event();
        let (keys, values): (Vec<String>, Vec<String>) = e.attrs.into_iter().unzip();
        assert_eq!(
            CollectorStatus::from_fields(s.at_us, &keys, &values),
            Some(s.clone())
        );
        assert_eq!(s.lost(), 32);
        // Any other event is not a report, and a garbled count reads as 0.
        assert_eq!(
            CollectorStatus::from_fields(0, &["a".into()], &["1".into()]),
            None
        );
        let garbled = CollectorStatus::from_fields(
            0,
            &[MARKER.into(), SPOOL_BYTES.into()],
            &["1".into(), "lots".into()],
        )
        .expect("marked");
        assert_eq!(garbled.spool_bytes, 0);
    }
}
