//! `varde demo`: the whole path in one process, on bundled sample telemetry, with no external
//! service. Collectors parse and batch each municipality's logs, publish envelopes on the
//! in-process bus, and the same pipeline loop that production runs stores them in the embedded
//! store.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;
use varde_collector::sample::sample_lines;
use varde_collector::shipper::{SequenceSource, Shipper, ShipperSettings, Stats as CollectorStats};
use varde_collector::syslog::parse_line;
use varde_core::{CollectorId, Kommunenummer, SourceKind, Value};
use varde_pipeline::{LoopSettings, Stats as PipelineStats};
use varde_store::embedded::EmbeddedStore;
use varde_store::{EventQuery, EventStore};
use varde_transport::events_topic;
use varde_transport::memory::MemoryBus;

/// The municipalities in the sample, with the size of their sample.
const SAMPLE: &[(&str, usize)] = &[
    ("0301", 600),
    ("4601", 400),
    ("5001", 300),
    ("1508", 150),
    ("1804", 120),
    ("3403", 90),
];

const PREFIX: &str = "varde.";

/// Runs the demo and prints what happened.
pub async fn run() -> Result<()> {
    let started = Instant::now();
    let now_us = varde_collector::sources::now_us();
    let bus = MemoryBus::new();
    let store = EmbeddedStore::new();

    println!(
        "Varde demo: collectors -> in-process bus -> pipeline -> embedded store (no external service)\n"
    );
    println!(
        "{:<28} {:<16} {:>6} {:>8} {:>13}",
        "municipality", "collector", "lines", "batches", "parse errors"
    );
    let mut topics = Vec::new();
    let mut total_lines = 0usize;
    for (number, n) in SAMPLE {
        let tenant = Kommunenummer::parse(number).context("sample municipality")?;
        let collector = CollectorId::new(format!("k{number}-demo-01"))?;
        let stats = Arc::new(CollectorStats::default());
        let mut shipper = Shipper::new(
            bus.clone(),
            ShipperSettings {
                collector_id: collector.clone(),
                tenant,
                topic_prefix: PREFIX.into(),
                max_rows: 256,
                max_delay: Duration::from_secs(1),
            },
            SequenceSource::in_memory(),
            stats.clone(),
        );
        let mut parse_errors = 0u64;
        for line in sample_lines(number, *n, now_us) {
            let event = parse_line(&line, now_us);
            if event.get("parse_error") == Some(&Value::Bool(true)) {
                parse_errors += 1;
            }
            shipper.push(SourceKind::Syslog, &event).await;
        }
        shipper.flush_all().await;
        total_lines += n;
        topics.push(events_topic(PREFIX, tenant));
        println!(
            "{:<28} {:<16} {:>6} {:>8} {:>13}",
            format!("{number} {}", tenant.name()),
            collector.as_str(),
            CollectorStats::get(&stats.events_out),
            CollectorStats::get(&stats.batches_out),
            parse_errors
        );
    }
    // Everything is published; the pipeline drains the bus and stops when it is closed.
    bus.close();

    let stats = PipelineStats::default();
    let mut subscriber = bus.subscribe("varde-pipeline", &topics);
    let (_stop, shutdown) = watch::channel(false);
    varde_pipeline::run(
        &mut subscriber,
        &store,
        LoopSettings::default(),
        &stats,
        shutdown,
    )
    .await;
    println!(
        "\npipeline: {} envelopes, {} rows written, {} rejected",
        PipelineStats::get(&stats.envelopes),
        PipelineStats::get(&stats.rows_written),
        stats.rejected().values().sum::<u64>()
    );

    println!("\nstored events per municipality and source kind:");
    let mut stored_total = 0;
    for c in store.event_counts().await? {
        let name = Kommunenummer::parse(&c.tenant).map_or("?", |k| k.name());
        println!(
            "  {} {:<24} {:<12} {:>6}",
            c.tenant, name, c.source_kind, c.events
        );
        stored_total += c.events;
    }
    println!("\na few stored events of 0301 Oslo:");
    let oslo = Kommunenummer::parse("0301")?;
    for e in store
        .events(&EventQuery {
            tenant: Some(oslo),
            limit: 5,
        })
        .await?
    {
        let app = e
            .fields
            .iter()
            .find(|(k, _)| k == "app_name")
            .map_or("-", |(_, v)| v.as_str());
        println!(
            "  {} id {}… {} {}: {}",
            varde_core::time::format_rfc3339(e.event_time_us),
            e.event_id.get(..8).unwrap_or(""),
            e.host,
            app,
            e.message
        );
    }
    println!(
        "\n{total_lines} lines in, {stored_total} events stored, in {:.2} s.",
        started.elapsed().as_secs_f64()
    );
    if stored_total != total_lines as u64 {
        anyhow::bail!("{total_lines} lines went in but {stored_total} events were stored");
    }
    println!(
        "Next: detection (Sigma), alerts and the analysts' dashboard join this demo as they land."
    );
    Ok(())
}
