//! The dashboard's `/metrics` (Prometheus text, encoded by `prometheus-client` through
//! `varde_transport::exposition`, as every Varde process does) and `/health`.
//!
//! Requests are counted by route template and status by a middleware, so refusals show up
//! without a counter at each refusal: 401 (wrong logins), 429 (limited logins), 403 (wrong CSRF
//! tokens, roles), 404 (ids not found or not the account's), 503 (the store failing). Besides
//! them: triage actions and incident changes written, hunts run, live sessions.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use varde_store::EventStore;
use varde_transport::exposition::{CONTENT_TYPE, Family, Value, encode};

use crate::Dashboard;

/// What the dashboard counts.
pub(crate) struct Counters {
    started: Instant,
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Triage rows written.
    pub triage_actions: AtomicU64,
    /// Incident change rows written.
    pub incident_changes: AtomicU64,
    /// Hunts run (pages and CSV exports).
    pub hunts: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            started: Instant::now(),
            requests: Mutex::new(BTreeMap::new()),
            triage_actions: AtomicU64::new(0),
            incident_changes: AtomicU64::new(0),
            hunts: AtomicU64::new(0),
        }
    }
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// Counts each answered request by its route template and status.
pub(crate) async fn count<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    request: Request,
    next: Next,
) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        // `/alerts/:id`, not `/alerts/{id}`: braces inside label values trip simple parsers.
        .map_or_else(
            || "unmatched".to_owned(),
            |p| p.as_str().replace('{', ":").replace('}', ""),
        );
    let response = next.run(request).await;
    let mut requests = d
        .inner
        .counters
        .requests
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    *requests
        .entry((route, response.status().as_u16()))
        .or_default() += 1;
    response
}

/// `GET /metrics`.
pub(crate) async fn metrics<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
) -> Response {
    let c = &d.inner.counters;
    let mut requests = Family::counter(
        "varde_dashboard_requests",
        "Requests answered, by route template and HTTP status.",
    );
    for ((route, status), n) in c.requests.lock().unwrap_or_else(|p| p.into_inner()).iter() {
        requests.push(
            [("route", route.clone()), ("status", status.to_string())],
            Value::Int(*n),
        );
    }
    let get = |a: &AtomicU64| Value::Int(a.load(Ordering::Relaxed));
    let families = vec![
        Family::gauge("varde_dashboard_info", "The dashboard's version.")
            .with([("version", env!("CARGO_PKG_VERSION"))], Value::Int(1)),
        Family::gauge(
            "varde_dashboard_uptime_seconds",
            "Seconds since the dashboard started.",
        )
        .value(Value::Float(c.started.elapsed().as_secs_f64())),
        requests,
        Family::counter(
            "varde_dashboard_triage_actions",
            "Triage actions written (one per group and action).",
        )
        .value(get(&c.triage_actions)),
        Family::counter(
            "varde_dashboard_incident_changes",
            "Incident changes written (openings, links, status, comments, ...).",
        )
        .value(get(&c.incident_changes)),
        Family::counter(
            "varde_dashboard_hunts",
            "Hunts run (pages and CSV exports).",
        )
        .value(get(&c.hunts)),
        Family::gauge("varde_dashboard_sessions", "Live sessions.")
            .value(Value::Int(d.live_sessions() as u64)),
        Family::gauge("varde_dashboard_accounts", "Accounts loaded.")
            .value(Value::Int(d.inner.accounts.len() as u64)),
    ];
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], encode(families)).into_response()
}

/// `GET /health`: 200 `{"status":"ok"}` while the store answers, else 503
/// `{"status":"store_unreachable","error":…}`.
pub(crate) async fn health<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
) -> Response {
    // The cheapest read every store has: alerts detected after the end of time.
    let (code, body) = match d.inner.store.alerts_detected_after(None, i64::MAX).await {
        Ok(_) => (StatusCode::OK, serde_json::json!({ "status": "ok" })),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({ "status": "store_unreachable", "error": e.to_string() }),
        ),
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
