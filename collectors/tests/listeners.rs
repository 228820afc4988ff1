//! The syslog listeners as a municipality's senders use them: util-linux `logger` over TCP
//! (newline and RFC 6587 octet counting) and UDP, a TLS sender with a CA made in the test,
//! a malformed octet count, `/metrics` and `/health` read with real HTTP GETs, and
//! backpressure from a full spool to a TCP sender.

mod common;

use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use varde_transport::events_topic;

fn logger(args: &[&str], file: &Path) {
    let out = Command::new("logger")
        .args(args)
        .arg("-f")
        .arg(file)
        .output()
        .expect("run logger (util-linux)");
    assert!(
        out.status.success(),
        "logger {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_lines(path: &Path, tag: &str, n: usize) {
    let text: String = (0..n).map(|i| format!("{tag} {i:04}\n")).collect();
    std::fs::write(path, text).expect("write");
}

fn count_tag(events: &[Arrived], tag: &str) -> usize {
    events
        .iter()
        .filter(|a| a.message.starts_with(&format!("{tag} ")))
        .map(|a| a.message.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// A CA, and a server certificate for `localhost` / 127.0.0.1 signed by it, as PEM files.
fn make_pki(dir: &Path) -> (String, std::path::PathBuf, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Varde test CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    let cert_path = dir.join("server.crt");
    let key_path = dir.join("server.key");
    std::fs::write(&cert_path, cert.pem()).expect("write cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("write key");
    (ca.pem(), cert_path, key_path)
}

/// Sends octet-counted messages over TLS, as an RFC 5425 sender does.
fn send_tls(port: u16, ca_pem: &str, messages: &[String]) {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, ServerName};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("CA pem"))
            .expect("add CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        let mut tls = connector
            .connect(ServerName::try_from("localhost").expect("name"), tcp)
            .await
            .expect("TLS handshake with the collector");
        use tokio::io::AsyncWriteExt;
        for m in messages {
            let framed = format!("{} {m}", m.len());
            tls.write_all(framed.as_bytes()).await.expect("write");
        }
        tls.shutdown().await.expect("close");
    });
}

#[test]
fn tcp_udp_and_tls_listeners_deliver_what_real_senders_send() {
    let kafka = dev_kafka("listeners");
    let tenant = varde_core::Kommunenummer::parse("1103").expect("Stavanger");
    let topic = events_topic(&kafka.topic_prefix, tenant);
    create_topic(&kafka, &topic);
    let dir = tempfile::tempdir().expect("tempdir");
    let (ca_pem, cert, key) = make_pki(dir.path());
    let (tcp, tcp2, udp, tls, metrics_port) = (
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        free_port(),
    );
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        config_text(
            "k1103-listeners",
            "1103",
            &dir.path().join("state"),
            &kafka,
            metrics_port,
            &format!(
                "[batch]\nmax_rows = 100\nmax_delay_ms = 20\n\n\
                 [[sources]]\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{tcp}\"\n\n\
                 [[sources]]\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{tcp2}\"\n\n\
                 [[sources]]\ntype = \"syslog_udp\"\nlisten = \"127.0.0.1:{udp}\"\nreceive_buffer_bytes = 4194304\n\n\
                 [[sources]]\ntype = \"syslog_tls\"\nlisten = \"127.0.0.1:{tls}\"\ncert = \"{}\"\nkey = \"{}\"\n",
                cert.display(),
                key.display()
            ),
        ),
    )
    .expect("config");
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let mut collector = Collector::start(&config, dir.path());
    eventually("the collector's /health", || {
        http_get(metrics, "/health").filter(|(c, _)| *c == 200)
    });

    let n = 300;
    let file = dir.path().join("lines.txt");
    let tcp_port = tcp.to_string();
    write_lines(&file, "newline-framed", n);
    logger(
        &["--tcp", "-n", "127.0.0.1", "-P", &tcp_port, "-t", "app"],
        &file,
    );
    write_lines(&file, "octet-counted", n);
    logger(
        &[
            "--tcp",
            "--octet-count",
            "-n",
            "127.0.0.1",
            "-P",
            &tcp_port,
            "-t",
            "app",
        ],
        &file,
    );
    write_lines(&file, "over-udp", n);
    logger(
        &[
            "--udp",
            "-n",
            "127.0.0.1",
            "-P",
            &udp.to_string(),
            "-t",
            "app",
        ],
        &file,
    );
    // Messages with newlines inside survive octet counting over TLS.
    let tls_messages: Vec<String> = (0..n)
        .map(|i| format!("<14>1 2026-11-23T12:00:00Z fw01 app - - - over-tls {i:04}\nsecond line"))
        .collect();
    send_tls(tls, &ca_pem, &tls_messages);
    // A sender whose octet count is garbage: counted, and its bytes still arrive as lines.
    let mut raw = TcpStream::connect(("127.0.0.1", tcp2)).expect("connect");
    raw.write_all(b"12x broken-frame 0000\n<13>broken-frame 0001\n")
        .expect("write");
    drop(raw);

    let mut reader = Reader::new(&kafka, &topic);
    let udp_drops = || -> usize {
        http_get(metrics, "/metrics")
            .and_then(|(_, p)| {
                metric(
                    &p,
                    &format!("varde_collector_source_receive_buffer_drops_total{{source=\"syslog_udp:127.0.0.1:{udp}\"}}"),
                )
            })
            .unwrap_or(0.0) as usize
    };
    reader.until("every message from every listener", |e| {
        count_tag(e, "newline-framed") == n
            && count_tag(e, "octet-counted") == n
            && count_tag(e, "over-udp") + udp_drops() == n
            && e.iter()
                .filter(|a| a.message.starts_with("over-tls "))
                .count()
                >= n
            && e.iter().any(|a| a.message.contains("broken-frame 0001"))
    });
    assert!(
        reader
            .events
            .iter()
            .any(|a| a.message == "over-tls 0007\nsecond line"),
        "a multi-line message kept whole"
    );
    let (code, page) = http_get(metrics, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200);
    let m = |name: &str| metric(&page, name).unwrap_or(-1.0);
    assert_eq!(
        m(&format!(
            "varde_collector_source_events_total{{source=\"syslog_tcp:127.0.0.1:{tcp}\"}}"
        )),
        (2 * n) as f64
    );
    assert_eq!(
        m(&format!(
            "varde_collector_source_events_total{{source=\"syslog_tls:127.0.0.1:{tls}\"}}"
        )),
        n as f64
    );
    assert_eq!(
        m(&format!(
            "varde_collector_source_framing_errors_total{{source=\"syslog_tcp:127.0.0.1:{tcp2}\"}}"
        )),
        1.0
    );
    assert!(m("varde_collector_events_out_total{kind=\"syslog\"}") >= (4 * n) as f64);
    assert!(page.contains("# TYPE varde_collector_spool_oldest_unsent_age_seconds gauge"));
    // A scraper's parser reads the whole page, and every sample has its family's type.
    let scrape = prometheus_parse::Scrape::parse(page.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text");
    let untyped: Vec<&str> = scrape
        .samples
        .iter()
        .filter(|s| matches!(s.value, prometheus_parse::Value::Untyped(_)))
        .map(|s| s.metric.as_str())
        .collect();
    assert!(untyped.is_empty(), "samples without a TYPE: {untyped:?}");
    assert!(scrape.samples.iter().any(|s| {
        s.metric == "varde_collector_source_events_total"
            && s.labels.get("source") == Some(&format!("syslog_tls:127.0.0.1:{tls}"))
    }));
    collector.assert_running();
    collector.terminate();
}

#[test]
fn a_full_spool_pushes_back_on_a_tcp_sender_and_loses_nothing() {
    // No broker yet: the spool (block policy, 64 KiB) fills, then the batcher waits, the
    // channel fills, the listener stops reading and the sender's writes stall.
    let mut broker = PrivateBroker::stopped();
    let mut kafka = varde_transport::kafka::KafkaSettings::new(broker.brokers());
    kafka.topic_prefix = unique_prefix("backpressure");
    let tenant = varde_core::Kommunenummer::parse("3201").expect("Bærum");
    let topic = events_topic(&kafka.topic_prefix, tenant);
    let dir = tempfile::tempdir().expect("tempdir");
    let (tcp, metrics_port) = (free_port(), free_port());
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        config_text(
            "k3201-backpressure",
            "3201",
            &dir.path().join("state"),
            &kafka,
            metrics_port,
            &format!(
                "[batch]\nmax_rows = 200\nmax_delay_ms = 20\npublish_timeout_ms = 1000\n\n\
                 [spool]\nmax_bytes = 65536\nsegment_bytes = 8192\nwhen_full = \"block\"\nfsync = \"never\"\n\n\
                 [[sources]]\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{tcp}\"\n"
            ),
        ),
    )
    .expect("config");
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let mut collector = Collector::start(&config, dir.path());
    eventually("the collector's /health", || http_get(metrics, "/health"));

    let mut sender = TcpStream::connect(("127.0.0.1", tcp)).expect("connect");
    sender
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut sent = 0usize;
    let stalled = loop {
        let chunk: String = (sent..sent + 100)
            .map(|i| {
                format!(
                    "<13>1 2026-11-23T12:00:00Z pc17 app - - - pushed-back {i:07} {}\n",
                    "x".repeat(60)
                )
            })
            .collect();
        match sender.write_all(chunk.as_bytes()) {
            Ok(()) => sent += 100,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break true;
            }
            Err(e) => panic!("write failed: {e}"),
        }
        assert!(sent < 5_000_000, "the sender was never pushed back");
    };
    assert!(stalled);
    eprintln!("the sender stalled after {sent} lines");
    // A timed-out write_all may have written part of the chunk: finish that line cleanly.
    sender.set_write_timeout(None).expect("timeout");
    let (_, page) = http_get(metrics, "/metrics").expect("metrics");
    assert_eq!(
        metric(&page, "varde_collector_spool_dropped_events_total"),
        Some(0.0)
    );
    assert!(metric(&page, "varde_collector_spool_bytes").unwrap_or(0.0) <= 65536.0);
    collector.assert_running();

    broker.restart();
    create_topic(&kafka, &topic);
    // The sender's stalled chunk completes now; then one final marker line.
    let writer = std::thread::spawn(move || {
        // Rewrite nothing: a partial chunk's remainder is unknown, so close the line and
        // send a marker; lines are checked by number below.
        sender
            .write_all(b"\n<13>1 2026-11-23T12:00:00Z pc17 app - - - pushed-back end\n")
            .expect("write after the stall");
        drop(sender);
    });
    let mut reader = Reader::new(&kafka, &topic);
    reader.until("every line sent before the stall, and the marker", |e| {
        e.iter().any(|a| a.message == "pushed-back end")
    });
    writer.join().expect("writer");
    let numbers: std::collections::HashSet<usize> = reader
        .events
        .iter()
        .filter_map(|a| {
            a.message
                .strip_prefix("pushed-back ")?
                .get(..7)?
                .parse()
                .ok()
        })
        .collect();
    let missing: Vec<usize> = (0..sent).filter(|i| !numbers.contains(i)).take(5).collect();
    assert!(
        missing.is_empty(),
        "lines lost under backpressure, e.g. {missing:?}"
    );
    collector.terminate();
}

#[test]
fn udp_datagrams_the_kernel_drops_are_counted_exactly() {
    // The collector is held back (broker down, tiny spool with `block`), so its UDP socket
    // (with a tiny receive buffer) overflows while logger keeps sending.
    let mut broker = PrivateBroker::stopped();
    let mut kafka = varde_transport::kafka::KafkaSettings::new(broker.brokers());
    kafka.topic_prefix = unique_prefix("udpdrops");
    let tenant = varde_core::Kommunenummer::parse("4204").expect("Kristiansand");
    let topic = events_topic(&kafka.topic_prefix, tenant);
    let dir = tempfile::tempdir().expect("tempdir");
    let (udp, metrics_port) = (free_port(), free_port());
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        config_text(
            "k4204-udp",
            "4204",
            &dir.path().join("state"),
            &kafka,
            metrics_port,
            &format!(
                "[batch]\nmax_rows = 100\nmax_delay_ms = 20\npublish_timeout_ms = 1000\n\n\
                 [spool]\nmax_bytes = 65536\nsegment_bytes = 8192\nwhen_full = \"block\"\nfsync = \"never\"\n\n\
                 [[sources]]\ntype = \"syslog_udp\"\nlisten = \"127.0.0.1:{udp}\"\nreceive_buffer_bytes = 4096\n"
            ),
        ),
    )
    .expect("config");
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let mut collector = Collector::start(&config, dir.path());
    eventually("the collector's /health", || http_get(metrics, "/health"));

    let n = 20_000;
    let file = dir.path().join("lines.txt");
    write_lines(&file, "udp-burst", n);
    logger(
        &[
            "--udp",
            "-n",
            "127.0.0.1",
            "-P",
            &udp.to_string(),
            "-t",
            "app",
        ],
        &file,
    );
    collector.assert_running();

    broker.restart();
    create_topic(&kafka, &topic);
    let source = format!("{{source=\"syslog_udp:127.0.0.1:{udp}\"}}");
    let mut reader = Reader::new(&kafka, &topic);
    // Everything the kernel kept has been read and delivered once the collector's count of
    // received datagrams is all in Kafka and the spool is empty.
    reader.until("every received datagram delivered", |e| {
        let Some((_, page)) = http_get(metrics, "/metrics") else {
            return false;
        };
        let received = metric(
            &page,
            &format!("varde_collector_source_events_total{source}"),
        )
        .unwrap_or(-1.0) as usize;
        metric(&page, "varde_collector_spool_records") == Some(0.0)
            && count_tag(e, "udp-burst") == received
    });
    // The kernel reports its drop counter with the next datagram: send one more.
    write_lines(&file, "udp-probe", 1);
    logger(
        &[
            "--udp",
            "-n",
            "127.0.0.1",
            "-P",
            &udp.to_string(),
            "-t",
            "app",
        ],
        &file,
    );
    reader.until("the probe datagram", |e| count_tag(e, "udp-probe") == 1);
    let (_, page) = http_get(metrics, "/metrics").expect("metrics");
    let drops = metric(
        &page,
        &format!("varde_collector_source_receive_buffer_drops_total{source}"),
    )
    .unwrap_or(0.0) as usize;
    let delivered = count_tag(&reader.events, "udp-burst");
    eprintln!("sent {n} datagrams: {delivered} delivered, {drops} dropped by the kernel (counted)");
    assert!(
        drops > 0,
        "the burst was meant to overflow a 4 KiB receive buffer"
    );
    assert_eq!(delivered + drops, n, "delivered + counted drops = sent");
    collector.terminate();
}
