//! Helpers for the collector's process tests: the development Kafka broker or a private tansu
//! broker of the test's own, the collector binary, reading back what arrived.
//!
//! The collector's tests do not use `varde-testkit`: it links the ClickHouse store, and the
//! collector must not, even in its tests' dependency tree.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use varde_core::{BatchReader, Envelope, EventId};
use varde_transport::Subscriber;
use varde_transport::kafka::{KafkaSettings, KafkaSubscriber};

/// Deadline for anything a test waits for: generous, because CI machines are shared.
pub const PATIENCE: Duration = Duration::from_secs(120);

/// The repository root (holds `deploy/dev/ports.env`).
pub fn repo_root() -> PathBuf {
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(manifest)
        .parent()
        .map(Path::to_path_buf)
        .expect("collectors/ has a parent")
}

/// The development broker's port: `VARDE_KAFKA_PORT`, else `deploy/dev/ports.env`.
pub fn dev_kafka_port() -> u16 {
    if let Some(p) = std::env::var("VARDE_KAFKA_PORT")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return p;
    }
    let text =
        std::fs::read_to_string(repo_root().join("deploy/dev/ports.env")).unwrap_or_default();
    text.lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == "VARDE_KAFKA_PORT")
        .and_then(|(_, v)| v.trim().parse().ok())
        .unwrap_or(19092)
}

/// Kafka settings for the development broker with a topic prefix of the test's own; fails with
/// the command that starts the broker when it is down.
pub fn dev_kafka(test: &str) -> KafkaSettings {
    let port = dev_kafka_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        panic!(
            "Kafka is not reachable on {addr}; start the development services with \
             `deploy/dev/services.sh up` (see DEVELOPERS.md)"
        );
    }
    let mut k = KafkaSettings::new(format!("127.0.0.1:{port}"));
    k.topic_prefix = unique_prefix(test);
    k
}

/// A topic prefix no other test (or run) uses.
pub fn unique_prefix(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "t-{test}-{}-{}-{nanos:x}.",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A loopback port free right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A free port below Linux's ephemeral range (32768–60999), for a server that is down while
/// clients keep connecting to it: a client's outbound port comes from the ephemeral range, and
/// when it happens to equal the destination port on loopback, the socket connects to itself
/// (TCP simultaneous open) and holds the port, so the server cannot bind it when it starts.
///
/// Each call in a process starts its search past the previous one's port: a reserved port is not
/// bound until its server starts, so a bind check alone would hand it out twice.
pub fn free_port_outside_ephemeral() -> u16 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let base = std::process::id() % 12_000;
    loop {
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        assert!(n < 12_000, "no free port below the ephemeral range");
        let port = u16::try_from(20_000 + (base + n) % 12_000).expect("below 32000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after [`PATIENCE`].
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {PATIENCE:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A tansu broker of the test's own, on a free port, storing in a temporary directory, so the
/// test may kill and restart it without disturbing anyone.
pub struct PrivateBroker {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TANSU_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var("HOME").unwrap_or_default();
    let cargo_bin = Path::new(&home).join(".cargo/bin/tansu");
    if cargo_bin.exists() {
        cargo_bin
    } else {
        PathBuf::from("tansu")
    }
}

impl PrivateBroker {
    /// Starts a broker on a free port (outside the ephemeral range: it may be killed and
    /// restarted while clients connect).
    pub fn start() -> PrivateBroker {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut b = PrivateBroker {
            port: free_port_outside_ephemeral(),
            dir,
            child: None,
        };
        b.restart();
        b
    }

    /// A broker that is not running yet, on a port reserved now (outside the ephemeral range:
    /// the collector's connection attempts meanwhile must not take it, see
    /// [`free_port_outside_ephemeral`]).
    pub fn stopped() -> PrivateBroker {
        PrivateBroker {
            port: free_port_outside_ephemeral(),
            dir: tempfile::tempdir().expect("tempdir"),
            child: None,
        }
    }

    /// `host:port`.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// (Re)starts the broker on the same port and data.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "broker already running");
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::File::create(self.dir.path().join("tansu.log")).expect("log file");
        let child = Command::new(tansu_bin())
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"])
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start tansu (cargo install tansu@0.6.0, see DEVELOPERS.md)");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        eventually("the private broker to listen", || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(|_| ())
        });
    }

    /// Kills the broker (SIGKILL) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log =
                std::fs::read_to_string(self.dir.path().join("tansu.log")).unwrap_or_default();
            eprintln!(
                "--- the private broker's log (port {}), last 100 lines:\n{}",
                self.port,
                tail(&log, 100)
            );
        }
    }
}

/// Creates a topic, retrying while a freshly started broker settles.
pub fn create_topic(settings: &KafkaSettings, topic: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    eventually("the topic to be created", || {
        rt.block_on(varde_transport::kafka::ensure_topics(
            settings,
            &[(topic.to_owned(), 1)],
        ))
        .ok()
    });
}

/// A running `varde-collector run`, killed when dropped.
pub struct Collector {
    pub child: Child,
    pub log: PathBuf,
}

impl Collector {
    /// Starts `varde-collector run --config <config>`, logging to `<dir>/collector-<n>.log`.
    pub fn start(config: &Path, dir: &Path) -> Collector {
        static N: AtomicU32 = AtomicU32::new(0);
        let log = dir.join(format!(
            "collector-{}.log",
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_varde-collector"))
            .arg("run")
            .arg("--config")
            .arg(config)
            .env("VARDE_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start varde-collector");
        Collector { child, log }
    }

    /// SIGKILL: no chance to flush anything.
    pub fn kill_9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait for a clean exit.
    pub fn terminate(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                assert!(
                    status.success(),
                    "collector exited with {status}: {}",
                    self.log_text()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "collector did not stop: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test with the log if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("collector exited early with {status}:\n{}", self.log_text());
        }
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A failing test's directory is deleted with it: what the collector said goes with the
        // failure.
        if std::thread::panicking() {
            eprintln!(
                "--- the collector's log ({}), last 200 lines:\n{}",
                self.log.display(),
                tail(&self.log_text(), 200)
            );
        }
    }
}

/// One event as read back from Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Arrived {
    pub id: EventId,
    pub message: String,
    /// The event's remaining fields.
    pub attrs: Vec<(String, String)>,
    /// The source kind of its batch.
    pub kind: varde_core::SourceKind,
    /// Its typed columns that are set, as text.
    pub typed: Vec<(&'static str, String)>,
}

/// Reads a topic from the start, collecting every event, until `done(events)` holds.
pub struct Reader {
    sub: KafkaSubscriber,
    rt: tokio::runtime::Runtime,
    pub events: Vec<Arrived>,
}

impl Reader {
    /// A reader of every partition of `topic` from its beginning, assigned statically (no
    /// group to join: the development broker's group coordinator is slow to settle on a
    /// freshly started broker, see DEVELOPERS.md).
    pub fn new(settings: &KafkaSettings, topic: &str) -> Reader {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let group = format!("{}reader-{}", settings.topic_prefix, free_port());
        let sub = {
            let _guard = rt.enter();
            eventually("a reader of the topic", || {
                KafkaSubscriber::assigned(
                    settings,
                    &group,
                    &[topic.to_owned()],
                    Duration::from_secs(10),
                )
                .ok()
            })
        };
        Reader {
            sub,
            rt,
            events: Vec::new(),
        }
    }

    /// Polls once (up to 200 ms) and decodes what came.
    pub fn poll(&mut self) {
        let msgs = match self
            .rt
            .block_on(self.sub.poll_batch(1000, Duration::from_millis(200)))
        {
            Ok(m) => m,
            Err(_) => return, // broker away for a moment; poll again
        };
        for m in msgs {
            let env = Envelope::decode(&m.payload).expect("a valid envelope");
            let reader = BatchReader::new(env.header.kind, &env.batch).expect("batch");
            for row in 0..reader.len() {
                self.events.push(Arrived {
                    id: EventId::derive(
                        env.header.collector_id.as_str(),
                        env.header.batch_seq,
                        row as u32,
                    ),
                    message: reader.message(row).unwrap_or_default().to_owned(),
                    attrs: reader
                        .attrs(row)
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                    kind: env.header.kind,
                    typed: reader.typed_fields(row),
                });
            }
        }
    }

    /// Polls until `done` holds for the events so far.
    pub fn until(&mut self, what: &str, mut done: impl FnMut(&[Arrived]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.poll();
            if done(&self.events) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {PATIENCE:?} waiting for {what}; {} events so far",
                self.events.len()
            );
        }
    }

    /// Distinct event ids → message; panics if one id carries two different messages.
    pub fn by_id(&self) -> HashMap<EventId, String> {
        let mut out: HashMap<EventId, String> = HashMap::new();
        for e in &self.events {
            if let Some(prev) = out.insert(e.id, e.message.clone()) {
                assert_eq!(prev, e.message, "one event id, two messages");
            }
        }
        out
    }
}

/// After dedup by event id: how often each message occurs.
pub fn message_counts(by_id: &HashMap<EventId, String>) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for m in by_id.values() {
        *counts.entry(m.clone()).or_insert(0) += 1;
    }
    counts
}

/// GETs `path` from `addr` over plain HTTP/1.1; returns (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

/// A metric's value from a Prometheus text page (the first sample of that name and labels).
pub fn metric(page: &str, name_and_labels: &str) -> Option<f64> {
    page.lines().find_map(|l| {
        l.strip_prefix(name_and_labels)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Appends lines to a file, flushing each chunk.
pub fn append_lines(path: &Path, lines: impl IntoIterator<Item = String>) {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log file");
    let mut text = String::new();
    for l in lines {
        text.push_str(&l);
        text.push('\n');
    }
    f.write_all(text.as_bytes()).expect("append");
}

/// A collector configuration with a file source and metrics; `extra` is appended. Makes the
/// collector's signing key in `state` when it has none (these tests stop at Kafka, where no
/// pipeline checks it).
pub fn config_text(
    id: &str,
    tenant: &str,
    state: &Path,
    kafka: &KafkaSettings,
    metrics_port: u16,
    extra: &str,
) -> String {
    let key = state.join("collector.key");
    if !key.exists() {
        varde_collector::identity::create_key(&key).expect("collector key");
    }
    format!(
        "collector_id = \"{id}\"\ntenant = \"{tenant}\"\nstate_dir = \"{}\"\n\n[kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}\"\n\n[metrics]\nlisten = \"127.0.0.1:{metrics_port}\"\n\n{status}{extra}\n",
        state.display(),
        kafka.brokers,
        kafka.topic_prefix,
        // The collector's own reports would add events to the counts tests check; only the
        // tests that ask for them (with a `[status]` section of their own) get them.
        status = if extra.contains("[status]") {
            ""
        } else {
            "[status]\ninterval_s = 0\n\n"
        },
    )
}
