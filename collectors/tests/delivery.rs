//! Fault tests of the collector's delivery, as processes against a real Kafka-protocol broker
//! (tansu): `kill -9` of the collector mid-stream, the broker going away and coming back, and a
//! full spool under `when_full = "drop_oldest"`.
//!
//! Every test counts lines by content *and* by event id: after dropping repeats of an event id
//! (what the pipeline's stores do), every line the test wrote must be there exactly once, or
//! (drop test) be counted as dropped.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use varde_transport::events_topic;

fn line(i: usize) -> String {
    format!("<13>1 2026-11-23T12:00:00Z web01.kommune.no app - - - delivery line {i:06}")
}

fn lines(range: std::ops::Range<usize>) -> impl Iterator<Item = String> {
    range.map(line)
}

fn expect_exactly_once(reader: &Reader, n: usize) {
    let by_id = reader.by_id();
    eprintln!(
        "read {} events from Kafka: {} distinct event ids (repeats of an id are replays)",
        reader.events.len(),
        by_id.len()
    );
    let counts = message_counts(&by_id);
    let want: Vec<String> = (0..n).map(|i| format!("delivery line {i:06}")).collect();
    let missing: Vec<&String> = want
        .iter()
        .filter(|m| !counts.keys().any(|k| k.ends_with(m.as_str())))
        .take(5)
        .collect();
    assert!(missing.is_empty(), "lines missing, e.g. {missing:?}");
    let twice: Vec<(&String, &usize)> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(
        twice.is_empty(),
        "lines that arrived under two different event ids: {twice:?}"
    );
    assert_eq!(by_id.len(), n, "distinct event ids");
}

#[test]
fn kill_9_mid_stream_then_restart_delivers_every_line_exactly_once_after_dedup() {
    let kafka = dev_kafka("kill9");
    let tenant = varde_core::Kommunenummer::parse("4601").expect("Bergen");
    let topic = events_topic(&kafka.topic_prefix, tenant);
    create_topic(&kafka, &topic);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "").expect("create log");
    let config = dir.path().join("collector.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config,
        config_text(
            "k4601-kill9",
            "4601",
            &dir.path().join("state"),
            &kafka,
            metrics_port,
            &format!(
                "[batch]\nmax_rows = 40\nmax_delay_ms = 20\n\n[spool]\nfsync = \"batch\"\n\n[[sources]]\ntype = \"file\"\npath = \"{}\"\n",
                log.display()
            ),
        ),
    )
    .expect("config");

    let n = 30_000;
    let mut reader = Reader::new(&kafka, &topic);
    let mut collector = Collector::start(&config, dir.path());
    // The municipality's application keeps logging throughout, kills included.
    let writer = {
        let log = log.clone();
        std::thread::spawn(move || {
            for start in (0..n).step_by(100) {
                append_lines(&log, lines(start..start + 100));
                std::thread::sleep(Duration::from_millis(3));
            }
        })
    };
    // Three kills, each once more lines have arrived: mid-stream, with batches open, spooled
    // and in flight.
    for round in 1..=3 {
        reader.until("progress before the kill", |e| distinct(e) >= round * n / 5);
        collector.assert_running();
        collector.kill_9();
        collector = Collector::start(&config, dir.path());
    }
    writer.join().expect("writer");
    reader.until("every line to arrive", |e| distinct(e) >= n);
    collector.assert_running();
    expect_exactly_once(&reader, n);
    collector.terminate();
}

/// Distinct messages among the events.
fn distinct(events: &[Arrived]) -> usize {
    events
        .iter()
        .map(|a| a.message.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

#[test]
fn broker_down_for_a_while_and_a_kill_meanwhile_lose_nothing() {
    let mut broker = PrivateBroker::start();
    let mut kafka = varde_transport::kafka::KafkaSettings::new(broker.brokers());
    kafka.topic_prefix = unique_prefix("outage");
    let tenant = varde_core::Kommunenummer::parse("0301").expect("Oslo");
    let topic = events_topic(&kafka.topic_prefix, tenant);
    create_topic(&kafka, &topic);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "").expect("create log");
    let config = dir.path().join("collector.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config,
        config_text(
            "k0301-outage",
            "0301",
            &dir.path().join("state"),
            &kafka,
            metrics_port,
            &format!(
                "[batch]\nmax_rows = 100\nmax_delay_ms = 20\npublish_timeout_ms = 2000\n\n[[sources]]\ntype = \"file\"\npath = \"{}\"\n",
                log.display()
            ),
        ),
    )
    .expect("config");
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let mut collector = Collector::start(&config, dir.path());

    let mut reader = Reader::new(&kafka, &topic);
    append_lines(&log, lines(0..500));
    reader.until("the first 500 lines", |e| distinct(e) >= 500);
    drop(reader);

    broker.kill();
    append_lines(&log, lines(500..2000));
    // The collector keeps them in its spool meanwhile: see it on /metrics.
    eventually("1500 events waiting in the spool", || {
        let (_, page) = http_get(metrics, "/metrics")?;
        let spooled = metric(&page, "varde_collector_spool_events")?;
        (spooled >= 1500.0).then_some(())
    });
    collector.assert_running();
    let (code, health) = http_get(metrics, "/health").expect("health answers");
    assert_eq!(code, 200, "{health}");
    assert!(health.contains("\"spool_records\":"), "{health}");

    // And the collector dies meanwhile: the spooled batches must survive it and be sent
    // after the restart with their original sequence numbers.
    collector.kill_9();
    append_lines(&log, lines(2000..2500));
    collector = Collector::start(&config, dir.path());
    eventually("2000 events waiting in the spool after the restart", || {
        let (_, page) = http_get(metrics, "/metrics")?;
        let spooled = metric(&page, "varde_collector_spool_events")?;
        (spooled >= 2000.0).then_some(())
    });
    assert!(
        collector
            .log_text()
            .contains("unacknowledged records found"),
        "the restart found the spooled batches: {}",
        collector.log_text()
    );

    broker.restart();
    let mut reader = Reader::new(&kafka, &topic);
    reader.until("all 2500 lines after the broker came back", |e| {
        distinct(e) >= 2500
    });
    expect_exactly_once(&reader, 2500);
    eventually("the spool to empty", || {
        let (_, page) = http_get(metrics, "/metrics")?;
        (metric(&page, "varde_collector_spool_records")? == 0.0).then_some(())
    });
    collector.terminate();
}

#[test]
fn reports_made_while_the_broker_is_down_tell_the_cert_how_deep_the_spool_was() {
    let mut broker = PrivateBroker::stopped();
    let mut kafka = varde_transport::kafka::KafkaSettings::new(broker.brokers());
    kafka.topic_prefix = unique_prefix("status");
    let tenant = varde_core::Kommunenummer::parse("3201").expect("Bærum");
    let topic = events_topic(&kafka.topic_prefix, tenant);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    append_lines(&log, lines(0..300));
    let config = dir.path().join("collector.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config,
        config_text(
            "k3201-status",
            "3201",
            &dir.path().join("state"),
            &kafka,
            metrics_port,
            &format!(
                "[status]\ninterval_s = 1\n\n[batch]\nmax_rows = 100\nmax_delay_ms = 20\npublish_timeout_ms = 1000\n\n[[sources]]\ntype = \"file\"\npath = \"{}\"\n",
                log.display()
            ),
        ),
    )
    .expect("config");
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let mut collector = Collector::start(&config, dir.path());
    // /metrics sees the 300 lines wait in the spool, then a few reports made meanwhile.
    eventually("300 lines and two reports in the spool", || {
        let (_, page) = http_get(metrics, "/metrics")?;
        (metric(&page, "varde_collector_spool_events")? >= 302.0).then_some(())
    });
    collector.assert_running();

    broker.restart();
    create_topic(&kafka, &topic);
    let mut reader = Reader::new(&kafka, &topic);
    let report = |a: &Arrived| {
        let (keys, values): (Vec<String>, Vec<String>) = a.attrs.iter().cloned().unzip();
        varde_core::status::CollectorStatus::from_fields(0, &keys, &values)
    };
    // Every line arrives, and a report made during the outage says the 300 lines were waiting;
    // one made after it says the spool emptied.
    reader.until("the lines and a report after the spool emptied", |e| {
        distinct(e) >= 300 && e.iter().filter_map(report).any(|r| r.spool_events == 0)
    });
    let reports: Vec<_> = reader.events.iter().filter_map(report).collect();
    assert!(
        reports
            .iter()
            .any(|r| r.spool_events >= 300 && r.spool_records >= 3),
        "{reports:?}"
    );
    for r in &reports {
        assert_eq!(r.lost(), 0, "{r:?}");
        assert_eq!(r.version, env!("CARGO_PKG_VERSION"));
        assert!(r.spool_max_bytes > 0);
    }
    let lines_arrived = reader
        .events
        .iter()
        .filter(|a| a.message != varde_core::status::MESSAGE)
        .count();
    assert!(lines_arrived >= 300, "{lines_arrived}");
    collector.terminate();
}

#[test]
#[ignore = "tansu 0.6.0, the dev/CI broker, loses its storage task after this test's restart in about 1 of 5 runs under load (every Produce and Metadata then fails with Storage(UnableToSend), also after another restart), seen 2026-12-06 with both logs; the collector kept every record and retried. Run with --ignored"]
fn a_full_spool_with_drop_oldest_counts_exactly_what_it_dropped() {
    // The broker is down from the start: everything goes to the spool, which overflows.
    let mut broker = PrivateBroker::stopped();
    let mut kafka = varde_transport::kafka::KafkaSettings::new(broker.brokers());
    kafka.topic_prefix = unique_prefix("dropoldest");
    let tenant = varde_core::Kommunenummer::parse("5001").expect("Trondheim");
    let topic = events_topic(&kafka.topic_prefix, tenant);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    let n = 20_000;
    append_lines(&log, lines(0..n));
    let config = dir.path().join("collector.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config,
        config_text(
            "k5001-drop",
            "5001",
            &dir.path().join("state"),
            &kafka,
            metrics_port,
            &format!(
                "[batch]\nmax_rows = 50\nmax_delay_ms = 20\npublish_timeout_ms = 1000\n\n[spool]\nmax_bytes = 131072\nsegment_bytes = 16384\nwhen_full = \"drop_oldest\"\nfsync = \"never\"\n\n[[sources]]\ntype = \"file\"\npath = \"{}\"\n",
                log.display()
            ),
        ),
    )
    .expect("config");
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let mut collector = Collector::start(&config, dir.path());

    // Every line is either in the spool or dropped, and the bound holds.
    let page = eventually("every line spooled or dropped", || {
        let (_, page) = http_get(metrics, "/metrics")?;
        let spooled = metric(&page, "varde_collector_events_spooled_total")?;
        let dropped_itself = metric(&page, "varde_collector_events_rejected_total")?;
        let bytes = metric(&page, "varde_collector_spool_bytes")?;
        assert!(bytes <= 131072.0, "the spool exceeded its bound: {bytes}");
        assert_eq!(dropped_itself, 0.0);
        (spooled as usize == n).then_some(page)
    });
    let dropped =
        metric(&page, "varde_collector_spool_dropped_events_total").expect("dropped") as usize;
    assert!(dropped > 0, "a 128 KiB spool cannot hold {n} lines");
    collector.assert_running();
    assert!(
        collector
            .log_text()
            .contains("oldest unsent records dropped"),
        "drops are logged"
    );

    broker.restart();
    create_topic(&kafka, &topic);
    let mut reader = Reader::new(&kafka, &topic);
    let mut final_dropped = dropped;
    reader.until("the spool to drain into Kafka", |e| {
        let distinct = distinct(e);
        let Some((_, page)) = http_get(metrics, "/metrics") else {
            return false;
        };
        final_dropped =
            metric(&page, "varde_collector_spool_dropped_events_total").unwrap_or(0.0) as usize;
        metric(&page, "varde_collector_spool_records") == Some(0.0) && distinct + final_dropped >= n
    });
    let by_id = reader.by_id();
    let counts = message_counts(&by_id);
    eprintln!(
        "sent {n}, dropped {final_dropped} (first count {dropped}), delivered {} distinct ids",
        by_id.len()
    );
    assert!(
        counts.values().all(|c| *c == 1),
        "a line arrived under two event ids"
    );
    assert_eq!(
        by_id.len() + final_dropped,
        n,
        "delivered ({}) + dropped ({final_dropped}) = sent ({n})",
        by_id.len()
    );
    collector.terminate();
}

#[test]
fn records_sent_again_after_a_lost_acknowledgement_keep_their_event_ids() {
    // Kafka has every batch, but the collector dies and its acknowledgement cursor is lost
    // (it is deliberately not fsynced): every record still in the spool goes out again. The
    // repeats must carry the same event ids, so that dropping repeats leaves each line once.
    let kafka = dev_kafka("replay");
    let tenant = varde_core::Kommunenummer::parse("1106").expect("Haugesund");
    let topic = events_topic(&kafka.topic_prefix, tenant);
    create_topic(&kafka, &topic);
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("app.log");
    append_lines(&log, lines(0..1000));
    let config = dir.path().join("collector.toml");
    let metrics_port = free_port();
    std::fs::write(
        &config,
        config_text(
            "k1106-replay",
            "1106",
            &dir.path().join("state"),
            &kafka,
            metrics_port,
            &format!(
                "[batch]\nmax_rows = 100\nmax_delay_ms = 20\n\n[spool]\nmax_bytes = 67108864\nsegment_bytes = 16777216\n\n[[sources]]\ntype = \"file\"\npath = \"{}\"\n",
                log.display()
            ),
        ),
    )
    .expect("config");
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let mut collector = Collector::start(&config, dir.path());
    let mut reader = Reader::new(&kafka, &topic);
    reader.until("the first 1000 lines", |e| distinct(e) >= 1000);
    eventually("every batch acknowledged", || {
        let (_, page) = http_get(metrics, "/metrics")?;
        (metric(&page, "varde_collector_spool_records")? == 0.0).then_some(())
    });
    let first = reader.events.len();
    collector.kill_9();
    std::fs::remove_file(dir.path().join("state/spool/ack")).expect("the cursor file exists");

    let mut collector = Collector::start(&config, dir.path());
    append_lines(&log, lines(1000..1200));
    reader.until("the replayed batches and 200 new lines", |e| {
        e.len() >= first + 1000 && distinct(e) >= 1200
    });
    eprintln!(
        "{} events read for 1200 lines: the first 1000 arrived twice",
        reader.events.len()
    );
    expect_exactly_once(&reader, 1200);
    collector.terminate();
}
