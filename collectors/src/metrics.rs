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

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::sync::watch;

use varde_core::SourceKind;
use varde_transport::exposition::{self, Family, Value};
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

/// The `/metrics` families.
pub fn families(state: &MetricsState) -> Vec<Family> {
    let mut out: Vec<Family> = Vec::with_capacity(48);
    let p = |name: &str| format!("varde_collector_{name}");
    out.push(Family::gauge(p("info"), "The collector's identity.").with(
        [
            ("collector_id", state.collector_id.as_str()),
            ("tenant", state.tenant.as_str()),
            ("version", env!("CARGO_PKG_VERSION")),
        ],
        Value::Int(1),
    ));
    out.push(
        Family::gauge(p("uptime_seconds"), "Seconds since the collector started.")
            .value(Value::Float(state.started.elapsed().as_secs_f64())),
    );
    let per_source = |name: &str, help: &str, f: &dyn Fn(&SourceCounters) -> &AtomicU64| {
        state
            .sources
            .iter()
            .fold(Family::counter(p(name), help), |family, (source, c)| {
                family.with([("source", source.as_str())], Value::Int(get(f(c))))
            })
    };
    out.push(per_source(
        "source_events",
        "Events received, per source.",
        &|c| &c.events,
    ));
    out.push(per_source(
        "source_bytes",
        "Bytes of received lines, per source.",
        &|c| &c.bytes,
    ));
    out.push(per_source(
        "source_parse_errors",
        "Lines kept raw because they were not valid syslog, per source.",
        &|c| &c.parse_errors,
    ));
    out.push(per_source(
        "source_framing_errors",
        "Malformed or truncated TCP frames (their bytes were still delivered), per source.",
        &|c| &c.framing_errors,
    ));
    out.push(per_source(
        "source_receive_buffer_drops",
        "UDP datagrams dropped by the kernel because the socket buffer was full (SO_RXQ_OVFL).",
        &|c| &c.receive_buffer_drops,
    ));
    out.push(per_source(
        "source_connections",
        "TCP/TLS connections accepted, per source.",
        &|c| &c.connections,
    ));
    out.push(per_source(
        "source_tls_handshake_errors",
        "Failed TLS handshakes, per source.",
        &|c| &c.tls_handshake_errors,
    ));
    out.push(per_source(
        "source_journal_errors",
        "Journal writes that failed, per network source (their lines went on unjournalled).",
        &|c| &c.journal_errors,
    ));
    out.push(per_source(
        "source_flow_packets",
        "Packets that joined a flow, per capture source.",
        &|c| &c.flow_packets,
    ));
    out.push(per_source(
        "source_flows_evicted",
        "Flows reported early because the flow table was full, per capture source.",
        &|c| &c.flows_evicted,
    ));
    out.push(per_source(
        "source_capture_drops",
        "Frames the kernel dropped because the capture socket's buffer was full (PACKET_STATISTICS), per capture source.",
        &|c| &c.capture_drops,
    ));
    out.push(per_source(
        "source_netflow_templates",
        "NetFlow v9 and IPFIX templates received, per netflow source.",
        &|c| &c.netflow_templates,
    ));
    out.push(per_source(
        "source_netflow_exporters",
        "Distinct exporters seen, per netflow source.",
        &|c| &c.netflow_exporters,
    ));
    let s = &state.stats;
    out.push(
        Family::counter(
            p("events_in"),
            "Events received by the batcher from all sources.",
        )
        .value(Value::Int(get(&s.events_in))),
    );
    let mut out_by_kind = Family::counter(
        p("events_out"),
        "Events in batches Kafka acknowledged, per source kind.",
    );
    for k in SourceKind::ALL {
        if let Some(c) = s.events_out_by_kind.get(usize::from(k.code())) {
            out_by_kind.push([("kind", k.name())], Value::Int(get(c)));
        }
    }
    out.push(out_by_kind);
    for (name, help, c) in [
        ("batches_out", "Batches Kafka acknowledged.", &s.batches_out),
        (
            "bytes_out",
            "Bytes of envelopes Kafka acknowledged.",
            &s.bytes_out,
        ),
        (
            "events_spooled",
            "Events written to the disk spool.",
            &s.events_spooled,
        ),
        (
            "events_rejected",
            "Events that could not be batched or spooled (counted, logged).",
            &s.events_rejected,
        ),
        (
            "parse_errors",
            "Lines kept raw because they were not valid syslog.",
            &s.parse_errors,
        ),
        (
            "kafka_errors",
            "Failed publish attempts (each was retried; records stay in the spool).",
            &s.publish_errors,
        ),
    ] {
        out.push(Family::counter(p(name), help).value(Value::Int(get(c))));
    }
    if let Some(sp) = &state.spool {
        for (name, help, value) in [
            (
                "spool_records",
                "Records (batches) in the spool not yet acknowledged by Kafka.",
                Value::Int(get(&sp.depth_records)),
            ),
            (
                "spool_events",
                "Events in the spool not yet acknowledged by Kafka.",
                Value::Int(get(&sp.depth_events)),
            ),
            (
                "spool_bytes",
                "Bytes of spool segment files on disk.",
                Value::Int(get(&sp.depth_bytes)),
            ),
            (
                "spool_max_bytes",
                "The spool's bound in bytes.",
                Value::Int(state.spool_max_bytes),
            ),
            (
                "spool_oldest_unsent_age_seconds",
                "Age of the oldest record not yet acknowledged (0 when empty).",
                Value::Float(oldest_unsent_age_seconds(sp)),
            ),
        ] {
            out.push(Family::gauge(p(name), help).value(value));
        }
        for (name, help, c) in [
            (
                "spool_dropped_records",
                "Records dropped because the spool was full (when_full = drop_oldest).",
                &sp.dropped_records,
            ),
            (
                "spool_dropped_events",
                "Events in records dropped because the spool was full.",
                &sp.dropped_events,
            ),
            (
                "spool_corrupt_tails",
                "Damaged spool records found (torn writes at power loss) and cut off.",
                &sp.corrupt_tails,
            ),
            (
                "spool_truncated_bytes",
                "Bytes cut off with damaged spool tails.",
                &sp.truncated_bytes,
            ),
            ("spool_fsyncs", "fsync calls of the spool.", &sp.fsyncs),
        ] {
            out.push(Family::counter(p(name), help).value(Value::Int(get(c))));
        }
    }
    // What the edge made of each source's lines (events per kind, unparsed lines, parse
    // failures, pseudonymised values).
    let edge: Vec<(&str, &EdgeStats)> = state
        .sources
        .iter()
        .map(|(name, c)| (name.as_str(), c.edge.as_ref()))
        .collect();
    out.extend(EdgeStats::families(&edge));
    out
}

/// Renders the Prometheus text exposition.
pub fn render(state: &MetricsState) -> String {
    exposition::encode(families(state))
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
    let body = serde_json::json!({
        "status": status,
        "spool_records": records,
        "spool_bytes": bytes,
        "oldest_unsent_age_seconds": (age * 1000.0).round() / 1000.0,
        "events_out": get(&state.stats.events_out),
    })
    .to_string()
        + "\n";
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
