//! A line the collector accepted over the network is a line it keeps: lines sent with
//! util-linux `logger --tcp` to a running `varde-collector`, the collector killed with `-9`
//! while its batches are still open (every line read, not all of them spooled), then
//! restarted: every line arrives in Kafka exactly once. The lines are of two kinds (sshd lines
//! become `auth` events, the others `syslog`), so two batches are open at the kill.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;

use common::*;
use varde_transport::events_topic;

fn logger(port: u16, tag: &str, file: &Path) {
    let status = Command::new("logger")
        .args([
            "--tcp",
            "-n",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "-t",
            tag,
            "-f",
        ])
        .arg(file)
        .status()
        .expect("run logger (bsdutils)");
    assert!(status.success(), "logger failed");
}

#[test]
fn lines_read_over_tcp_survive_a_kill_9_with_their_batches_open() {
    let kafka = dev_kafka("journal");
    let tenant = varde_core::Kommunenummer::parse("4601").expect("Bergen");
    let topic = events_topic(&kafka.topic_prefix, tenant);
    create_topic(&kafka, &topic);
    let dir = tempfile::tempdir().expect("tempdir");
    let tcp = free_port();
    let metrics_port = free_port();
    let config = dir.path().join("collector.toml");
    // Batches close at 1,000 rows or after 3 s: 12,345 lines of two kinds leave both kinds'
    // batches open, holding lines the collector has read but not yet spooled.
    std::fs::write(
        &config,
        config_text(
            "k4601-journal",
            "4601",
            &dir.path().join("state"),
            &kafka,
            metrics_port,
            &format!(
                "[batch]\nmax_rows = 1000\nmax_delay_ms = 3000\n\n[[sources]]\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{tcp}\"\n"
            ),
        ),
    )
    .expect("config");
    let (app_lines, sshd_lines) = (9_000usize, 3_345usize);
    let n = app_lines + sshd_lines;
    let app = dir.path().join("app.txt");
    append_lines(&app, (0..app_lines).map(|i| format!("journal line {i:06}")));
    let sshd = dir.path().join("sshd.txt");
    append_lines(
        &sshd,
        (app_lines..n).map(|i| {
            format!("Failed password for invalid user u{i} from 203.0.113.9 port 4000 ssh2 journal line {i:06}")
        }),
    );

    let mut reader = Reader::new(&kafka, &topic);
    let mut collector = Collector::start(&config, dir.path());
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    eventually("the collector's /health", || http_get(metrics, "/health"));
    logger(tcp, "app", &app);
    logger(tcp, "sshd", &sshd);
    let source =
        format!("varde_collector_source_events_total{{source=\"syslog_tcp:127.0.0.1:{tcp}\"}}");
    eventually("every line read by the collector", || {
        let (_, page) = http_get(metrics, "/metrics")?;
        (metric(&page, &source)? >= n as f64).then_some(())
    });
    let (_, page) = http_get(metrics, "/metrics").expect("metrics");
    let spooled = metric(&page, "varde_collector_events_spooled_total").unwrap_or(0.0);
    collector.assert_running();
    collector.kill_9();
    eprintln!("killed -9 with {n} lines read and {spooled} spooled");
    assert!(
        spooled < n as f64,
        "every line was spooled before the kill; the test proves nothing"
    );

    let mut collector = Collector::start(&config, dir.path());
    reader.until("every line in Kafka", |events| {
        events
            .iter()
            .map(|a| a.message.as_str())
            .collect::<std::collections::HashSet<_>>()
            .len()
            >= n
    });
    let by_id = reader.by_id();
    let counts = message_counts(&by_id);
    let seen: std::collections::HashSet<usize> = counts
        .keys()
        .filter_map(|m| m.rsplit("journal line ").next()?.get(..6)?.parse().ok())
        .collect();
    let missing: Vec<usize> = (0..n).filter(|i| !seen.contains(i)).take(5).collect();
    assert!(missing.is_empty(), "lines missing, e.g. {missing:?}");
    assert_eq!(by_id.len(), n, "every line once by event id");
    let twice: Vec<_> = counts.iter().filter(|(_, c)| **c > 1).take(5).collect();
    assert!(twice.is_empty(), "lines under two event ids: {twice:?}");
    collector.assert_running();
    collector.terminate();
}
