//! `/metrics` (Prometheus text format 0.0.4) and `/health`, served on a local port.
//!
//! The municipality's IT person (or the CERT's monitoring, through a tunnel) sees at a glance
//! whether events flow, how much is waiting in the spool and for how long, and whether anything
//! was dropped. Every counter here is also logged when it moves.
//!
//! The server is Varde's one status server ([`varde_transport::status`], hyper's HTTP/1 handler):
//! no web framework for two read-only pages. It should listen on loopback (or a management
//! network): it serves counts, not data, but needs no exposure.
//!
//! - `GET /metrics`: counters per source (`source` label: the listener or file): events and
//!   bytes in, what the edge made of them (`varde_collector_edge_events_total{source,kind}`,
//!   unparsed lines, parse failures), values pseudonymised
//!   (`varde_collector_pseudonymised_total{source,what}`, counts only); per source kind for
//!   what Kafka acknowledged; spool depth (records, events, bytes), age of the oldest unsent
//!   record, drops, framing errors, Kafka publish errors.
//! - `GET /health`: `200` with a JSON summary while the collector works; `503` when the spool
//!   is more than 90 % full (the collector is about to push back on senders or drop).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;

use varde_core::SourceKind;
use varde_transport::status::StatusCode;

use crate::edge::EdgeStats;
use crate::shipper::Stats;
use crate::sources::SourceCounters;
use crate::spool::SpoolStats;

/// What the endpoint reports on.
#[derive(Debug)]
pub struct MetricsState {
    /// The collector's id (a label of `varde_collector_info`).
    pub collector_id: String,
    /// Its tenant (kommunenummer).
    pub tenant: String,
    /// The shipper's counters.
    pub stats: Arc<Stats>,
    /// The spool's counters, if there is a spool.
    pub spool: Option<Arc<SpoolStats>>,
    /// The spool's bound in bytes.
    pub spool_max_bytes: u64,
    /// Each source's label and counters.
    pub sources: Vec<(String, Arc<SourceCounters>)>,
    /// When the collector started.
    pub started: Instant,
}

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Age in seconds of the oldest unacknowledged spool record (0 when the spool is empty).
pub fn oldest_unsent_age_seconds(spool: &SpoolStats) -> f64 {
    let oldest = get(&spool.oldest_unacked_us);
    if oldest == 0 {
        return 0.0;
    }
    now_us().saturating_sub(oldest) as f64 / 1e6
}

/// Renders the Prometheus text exposition.
pub fn render(state: &MetricsState) -> String {
    let mut out = String::with_capacity(4096);
    let mut family = |name: &str, kind: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP varde_collector_{name} {help}");
        let _ = writeln!(out, "# TYPE varde_collector_{name} {kind}");
        for (labels, value) in samples {
            let _ = writeln!(out, "varde_collector_{name}{labels} {value}");
        }
    };
    family(
        "info",
        "gauge",
        "The collector's identity.",
        &[(
            format!(
                "{{collector_id=\"{}\",tenant=\"{}\",version=\"{}\"}}",
                escape(&state.collector_id),
                escape(&state.tenant),
                env!("CARGO_PKG_VERSION")
            ),
            1.0,
        )],
    );
    family(
        "uptime_seconds",
        "gauge",
        "Seconds since the collector started.",
        &[(String::new(), state.started.elapsed().as_secs_f64())],
    );
    let per_source = |f: &dyn Fn(&SourceCounters) -> &AtomicU64| -> Vec<(String, f64)> {
        state
            .sources
            .iter()
            .map(|(name, c)| (format!("{{source=\"{}\"}}", escape(name)), get(f(c)) as f64))
            .collect()
    };
    family(
        "source_events_total",
        "counter",
        "Events received, per source.",
        &per_source(&|c| &c.events),
    );
    family(
        "source_bytes_total",
        "counter",
        "Bytes of received lines, per source.",
        &per_source(&|c| &c.bytes),
    );
    family(
        "source_parse_errors_total",
        "counter",
        "Lines kept raw because they were not valid syslog, per source.",
        &per_source(&|c| &c.parse_errors),
    );
    family(
        "source_framing_errors_total",
        "counter",
        "Malformed or truncated TCP frames (their bytes were still delivered), per source.",
        &per_source(&|c| &c.framing_errors),
    );
    family(
        "source_receive_buffer_drops_total",
        "counter",
        "UDP datagrams dropped by the kernel because the socket buffer was full (SO_RXQ_OVFL).",
        &per_source(&|c| &c.receive_buffer_drops),
    );
    family(
        "source_connections_total",
        "counter",
        "TCP/TLS connections accepted, per source.",
        &per_source(&|c| &c.connections),
    );
    family(
        "source_tls_handshake_errors_total",
        "counter",
        "Failed TLS handshakes, per source.",
        &per_source(&|c| &c.tls_handshake_errors),
    );
    let s = &state.stats;
    family(
        "events_in_total",
        "counter",
        "Events received by the batcher from all sources.",
        &[(String::new(), get(&s.events_in) as f64)],
    );
    let out_by_kind: Vec<(String, f64)> = SourceKind::ALL
        .iter()
        .filter_map(|k| {
            let c = s.events_out_by_kind.get(usize::from(k.code()))?;
            Some((format!("{{kind=\"{k}\"}}"), get(c) as f64))
        })
        .collect();
    family(
        "events_out_total",
        "counter",
        "Events in batches Kafka acknowledged, per source kind.",
        &out_by_kind,
    );
    for (name, help, c) in [
        (
            "batches_out_total",
            "Batches Kafka acknowledged.",
            &s.batches_out,
        ),
        (
            "bytes_out_total",
            "Bytes of envelopes Kafka acknowledged.",
            &s.bytes_out,
        ),
        (
            "events_spooled_total",
            "Events written to the disk spool.",
            &s.events_spooled,
        ),
        (
            "events_rejected_total",
            "Events that could not be batched or spooled (counted, logged).",
            &s.events_rejected,
        ),
        (
            "parse_errors_total",
            "Lines kept raw because they were not valid syslog.",
            &s.parse_errors,
        ),
        (
            "kafka_errors_total",
            "Failed publish attempts (each was retried; records stay in the spool).",
            &s.publish_errors,
        ),
    ] {
        family(name, "counter", help, &[(String::new(), get(c) as f64)]);
    }
    if let Some(sp) = &state.spool {
        for (name, kind, help, value) in [
            (
                "spool_records",
                "gauge",
                "Records (batches) in the spool not yet acknowledged by Kafka.",
                get(&sp.depth_records) as f64,
            ),
            (
                "spool_events",
                "gauge",
                "Events in the spool not yet acknowledged by Kafka.",
                get(&sp.depth_events) as f64,
            ),
            (
                "spool_bytes",
                "gauge",
                "Bytes of spool segment files on disk.",
                get(&sp.depth_bytes) as f64,
            ),
            (
                "spool_max_bytes",
                "gauge",
                "The spool's bound in bytes.",
                state.spool_max_bytes as f64,
            ),
            (
                "spool_oldest_unsent_age_seconds",
                "gauge",
                "Age of the oldest record not yet acknowledged (0 when empty).",
                oldest_unsent_age_seconds(sp),
            ),
            (
                "spool_dropped_records_total",
                "counter",
                "Records dropped because the spool was full (when_full = drop_oldest).",
                get(&sp.dropped_records) as f64,
            ),
            (
                "spool_dropped_events_total",
                "counter",
                "Events in records dropped because the spool was full.",
                get(&sp.dropped_events) as f64,
            ),
            (
                "spool_corrupt_tails_total",
                "counter",
                "Damaged spool records found (torn writes at power loss) and cut off.",
                get(&sp.corrupt_tails) as f64,
            ),
            (
                "spool_truncated_bytes_total",
                "counter",
                "Bytes cut off with damaged spool tails.",
                get(&sp.truncated_bytes) as f64,
            ),
            (
                "spool_fsyncs_total",
                "counter",
                "fsync calls of the spool.",
                get(&sp.fsyncs) as f64,
            ),
        ] {
            family(name, kind, help, &[(String::new(), value)]);
        }
    }
    // What the edge made of each source's lines (events per kind, unparsed lines, parse
    // failures, pseudonymised values).
    let edge: Vec<(&str, &EdgeStats)> = state
        .sources
        .iter()
        .map(|(name, c)| (name.as_str(), c.edge.as_ref()))
        .collect();
    out.push_str(&EdgeStats::render_prometheus(&edge));
    out
}

/// The `/health` answer: status code and JSON body.
pub fn health(state: &MetricsState) -> (StatusCode, String) {
    let (records, bytes, age) = state.spool.as_ref().map_or((0, 0, 0.0), |sp| {
        (
            get(&sp.depth_records),
            get(&sp.depth_bytes),
            oldest_unsent_age_seconds(sp),
        )
    });
    let nearly_full = state.spool_max_bytes > 0 && bytes * 10 > state.spool_max_bytes * 9;
    let status = if nearly_full {
        "spool_nearly_full"
    } else {
        "ok"
    };
    let body = format!(
        "{{\"status\":\"{status}\",\"spool_records\":{records},\"spool_bytes\":{bytes},\"oldest_unsent_age_seconds\":{age:.3},\"events_out\":{}}}\n",
        get(&state.stats.events_out)
    );
    let code = if nearly_full {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (code, body)
}

impl varde_transport::status::StatusPages for MetricsState {
    fn metrics(&self) -> String {
        render(self)
    }

    fn health(&self) -> (StatusCode, String) {
        health(self)
    }
}

/// Serves `/metrics` and `/health` on `listener` until `shutdown` turns true (the server is
/// [`varde_transport::status`]).
pub async fn serve(
    listener: TcpListener,
    state: Arc<MetricsState>,
    shutdown: watch::Receiver<bool>,
) {
    varde_transport::status::serve(listener, state, shutdown).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_has_help_type_and_labelled_samples() {
        let counters = Arc::new(SourceCounters::default());
        counters.events.store(5, Ordering::Relaxed);
        // What the edge counted for this source: two identity numbers pseudonymised.
        let edge = crate::edge::EdgeSource::with_stats(
            crate::sources::test_privacy(),
            counters.edge.clone(),
        );
        let _ = crate::edge::edge_event("fnr 31129956715 og 31129956715", 0, &edge);
        let spool = Arc::new(SpoolStats::default());
        spool.dropped_events.store(7, Ordering::Relaxed);
        let state = MetricsState {
            collector_id: "k0301-a".into(),
            tenant: "0301".into(),
            stats: Arc::new(Stats::default()),
            spool: Some(spool),
            spool_max_bytes: 100,
            sources: vec![("syslog_tcp:\"x\"".into(), counters)],
            started: Instant::now(),
        };
        let text = render(&state);
        assert!(
            text.contains("# TYPE varde_collector_source_events_total counter"),
            "{text}"
        );
        assert!(
            text.contains("varde_collector_source_events_total{source=\"syslog_tcp:\\\"x\\\"\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("varde_collector_spool_dropped_events_total 7"),
            "{text}"
        );
        assert!(
            text.contains("varde_collector_events_out_total{kind=\"syslog\"} 0"),
            "{text}"
        );
        assert!(
            text.contains(
                "varde_collector_pseudonymised_total{source=\"syslog_tcp:\\\"x\\\"\",what=\"national_id\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "varde_collector_edge_events_total{source=\"syslog_tcp:\\\"x\\\"\",kind=\"syslog\"} 1"
            ),
            "{text}"
        );
        let (code, body) = health(&state);
        assert_eq!(code, StatusCode::OK);
        assert!(body.starts_with("{\"status\":\"ok\""), "{body}");
        if let Some(sp) = &state.spool {
            sp.depth_bytes.store(95, Ordering::Relaxed);
        }
        let (code, body) = health(&state);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body.contains("spool_nearly_full"), "{body}");
    }
}
