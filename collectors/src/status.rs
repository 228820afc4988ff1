//! The collector's report on itself to the CERT: every `[status] interval_s` (60 s by default)
//! its spool depth and what it dropped, as one `generic_json` event on its own topic
//! ([`varde_core::status`]), batched, spooled and shipped like every other event. The
//! municipality's page of the dashboard shows the newest report of each collector.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use varde_core::SourceKind;
use varde_core::status::CollectorStatus;

use crate::metrics::{MetricsState, oldest_unsent_age_seconds};
use crate::shipper::Input;

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// The report of `state` at `at_us`.
pub fn snapshot(state: &MetricsState, at_us: i64) -> CollectorStatus {
    let mut s = CollectorStatus {
        at_us,
        spool_max_bytes: state.spool_max_bytes,
        rejected_events: get(&state.stats.events_rejected),
        publish_errors: get(&state.stats.publish_errors),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..CollectorStatus::default()
    };
    if let Some(spool) = &state.spool {
        s.spool_bytes = get(&spool.depth_bytes);
        s.spool_records = get(&spool.depth_records);
        s.spool_events = get(&spool.depth_events);
        s.oldest_unsent_s = oldest_unsent_age_seconds(spool) as u64;
        s.dropped_spool_full_events = get(&spool.dropped_events);
    }
    for (_, c) in &state.sources {
        s.dropped_receive_buffer_datagrams = s
            .dropped_receive_buffer_datagrams
            .saturating_add(get(&c.receive_buffer_drops));
        s.dropped_capture_packets = s
            .dropped_capture_packets
            .saturating_add(get(&c.capture_drops));
        s.journal_errors = s.journal_errors.saturating_add(get(&c.journal_errors));
    }
    s
}

/// Sends a report into the shipper every `every` (the first one `every` after the start) until
/// shutdown or until the shipper is gone.
pub async fn report(
    tx: mpsc::Sender<Input>,
    state: Arc<MetricsState>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        let status = snapshot(&state, crate::sources::now_us());
        if tx
            .send(Input::Event(SourceKind::GenericJson, status.event()))
            .await
            .is_err()
        {
            return;
        }
    }
}
