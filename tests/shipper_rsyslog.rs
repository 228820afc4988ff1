//! A municipality that ships with rsyslog instead of varde-collector: Debian's rsyslog with its
//! Kafka output (`omkafka`) and the JSON template of `docs/shippers.md` writes to the
//! municipality's `jsonl` topic on the broker of `deploy/dev/services.sh up`; the `varde
//! pipeline` binary consumes it into ClickHouse. Every line sent with util-linux `logger` is
//! stored exactly once, no identity number is stored in clear, and the sshd root password
//! logins raise the rule pack's alert.
//!
//! rsyslogd runs unpacked from Debian's packages (`deploy/dev/peers.sh`), with omkafka on
//! librdkafka 2.12.1: Debian 12's librdkafka 2.0.2 cannot talk to the development broker.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use varde_core::Kommunenummer;
use varde_store::{AlertQuery, EventQuery, EventStore};
use varde_testkit::process::{pipeline_config, start_pipeline};
use varde_testkit::{TestEnv, eventually, free_port};
use varde_transport::kafka::ensure_topics;
use varde_transport::{events_topic, jsonl_topic};

/// A valid (made-up) fødselsnummer.
const FNR: &str = "15059012387";
/// Lines from sshd (every tenth a root password login) and from an application.
const SSHD_LINES: usize = 300;
const APP_LINES: usize = 700;

fn peers_dir() -> PathBuf {
    std::env::var_os("VARDE_PEERS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/varde-peers")))
        .expect("HOME or VARDE_PEERS_DIR")
}

/// The documented template (docs/shippers.md), with the test's broker, topic and input port.
fn rsyslog_config(work: &Path, port: u16, broker: &str, topic: &str) -> String {
    let doc = std::fs::read_to_string(varde_testkit::workspace_root().join("docs/shippers.md"))
        .expect("docs/shippers.md");
    // The configuration block of the rsyslog section, as a municipality copies it.
    let block = doc
        .split("```rsyslog\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("an ```rsyslog block in docs/shippers.md");
    let block = block
        .replace("kafka.cert.example:9093", broker)
        .replace("varde.jsonl.0301", topic)
        .replace("port=\"6514\"", &format!("port=\"{port}\""))
        // The development broker speaks plain Kafka (no TLS, no SASL).
        .lines()
        .filter(|l| !l.contains("security.protocol") && !l.contains("sasl.") && !l.contains("ssl."))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "global(workDirectory=\"{}\")\nmodule(load=\"imtcp\")\n{block}\n",
        work.display()
    )
}

struct Rsyslogd(Child);

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_rsyslogd(dir: &Path, config: &str) -> Rsyslogd {
    let root = peers_dir();
    let bin = std::env::var_os("VARDE_RSYSLOGD")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("rsyslog/usr/sbin/rsyslogd"));
    let librdkafka = std::env::var_os("VARDE_RSYSLOG_LIBRDKAFKA")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("librdkafka-2.12.1"));
    let usr = bin
        .parent()
        .and_then(Path::parent)
        .expect("rsyslogd lives in <root>/usr/sbin");
    let modules = std::fs::read_dir(usr.join("lib"))
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path().join("rsyslog"))
        .find(|p| p.join("omkafka.so").is_file());
    let (Some(modules), true) = (modules, librdkafka.join("librdkafka.so.1").is_file()) else {
        panic!(
            "rsyslogd with omkafka and librdkafka 2.12.1 not found under {}; run \
             `deploy/dev/peers.sh` (deploy/dev/services.sh up does)",
            root.display()
        );
    };
    let conf = dir.join("rsyslog.conf");
    std::fs::write(&conf, config).expect("rsyslog.conf");
    let check = Command::new(&bin)
        .args(["-N1", "-f"])
        .arg(&conf)
        .arg("-M")
        .arg(&modules)
        .env("LD_LIBRARY_PATH", &librdkafka)
        .output()
        .expect("rsyslogd -N1");
    assert!(
        check.status.success(),
        "rsyslogd refused the documented configuration:\n{}{}\n{config}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let log = std::fs::File::create(dir.join("rsyslogd.log")).expect("log");
    let child = Command::new(&bin)
        .arg("-n")
        .arg("-f")
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslogd.pid"))
        .arg("-M")
        .arg(&modules)
        .env("LD_LIBRARY_PATH", &librdkafka)
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log"))
        .stderr(log)
        .spawn()
        .expect("start rsyslogd");
    Rsyslogd(child)
}

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rsyslog_with_omkafka_ships_json_lines_that_are_stored_once_and_pseudonymised() {
    let env = TestEnv::new("rsyslogjsonl");
    let kafka = env.kafka();
    let clickhouse = env.clickhouse();
    let store = env.store().await;
    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    let topic = jsonl_topic(&kafka.topic_prefix, oslo);
    ensure_topics(
        &kafka,
        &[
            (events_topic(&kafka.topic_prefix, oslo), 1),
            (topic.clone(), 2),
        ],
    )
    .await
    .expect("topics");
    let dir = tempfile::tempdir().expect("tempdir");

    let config = pipeline_config(dir.path(), &kafka, &clickhouse, 50);
    let text = std::fs::read_to_string(&config).expect("config");
    let text = text.replacen("\n\n[kafka]", "\ntenants = [\"0301\"]\n\n[kafka]", 1);
    let key = dir.path().join("jsonl.key");
    std::fs::write(
        &config,
        format!("{text}\n[jsonl]\nkey_file = \"{}\"\n", key.display()),
    )
    .expect("config");
    let _pipeline = start_pipeline(
        Path::new(env!("CARGO_BIN_EXE_varde")),
        &config,
        Some(&dir.path().join("pipeline.log")),
    );

    let port = free_port();
    let work = dir.path().join("rsyslog-work");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut rsyslogd = start_rsyslogd(
        dir.path(),
        &rsyslog_config(&work, port, &kafka.brokers, &topic),
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = rsyslogd.0.try_wait() {
            panic!(
                "rsyslogd exited with {status}: {}",
                std::fs::read_to_string(dir.path().join("rsyslogd.log")).unwrap_or_default()
            );
        }
        assert!(
            std::time::Instant::now() < deadline,
            "rsyslogd did not listen"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let sshd = dir.path().join("sshd.txt");
    let lines: Vec<String> = (0..SSHD_LINES)
        .map(|i| {
            if i % 10 == 0 {
                format!(
                    "Accepted password for root from 198.51.100.7 port {} ssh2",
                    40000 + i
                )
            } else {
                format!(
                    "Failed password for invalid user admin{i} from 203.0.113.9 port {} ssh2",
                    50000 + i
                )
            }
        })
        .collect();
    std::fs::write(&sshd, lines.join("\n") + "\n").expect("sshd lines");
    let app = dir.path().join("app.txt");
    let lines: Vec<String> = (0..APP_LINES)
        .map(|i| format!("oppslag {i} i folkeregisteret for {FNR} ferdig"))
        .collect();
    std::fs::write(&app, lines.join("\n") + "\n").expect("app lines");
    logger(port, "sshd", &sshd);
    logger(port, "innsyn", &app);

    let total = (SSHD_LINES + APP_LINES) as u64;
    eventually("every line stored", Duration::from_secs(120), || async {
        let n: u64 = store
            .event_counts()
            .await
            .ok()?
            .iter()
            .map(|c| c.events)
            .sum();
        (n >= total).then_some(())
    })
    .await;
    let events = store
        .events(&EventQuery {
            tenant: Some(oslo),
            limit: 10 * total,
        })
        .await
        .expect("events");
    assert_eq!(events.len() as u64, total, "every line exactly once");
    let auth = events.iter().filter(|e| e.source_kind == "auth").count();
    assert_eq!(auth, SSHD_LINES, "sshd lines are auth events");
    let clear = events
        .iter()
        .filter(|e| format!("{e:?}").contains(FNR))
        .count();
    assert_eq!(clear, 0, "identity numbers in clear");
    assert!(
        events.iter().filter(|e| e.message.contains("fnr:")).count() == APP_LINES,
        "each application line carries a pseudonym"
    );
    let planted = SSHD_LINES / 10;
    let alerts = eventually("the root-login alerts", Duration::from_secs(60), || async {
        let a = store
            .alerts(&AlertQuery {
                tenant: Some(oslo),
                limit: 1000,
            })
            .await
            .ok()?;
        (a.len() >= planted).then_some(a)
    })
    .await;
    assert_eq!(alerts.len(), planted);
    env.cleanup().await;
}
