//! # varde-testkit: isolation for integration tests on the real services
//!
//! Integration tests run against the ClickHouse and Kafka broker that
//! `deploy/dev/services.sh up` starts on loopback (ports from `deploy/dev/ports.env`, overridable
//! by environment). Each test takes a [`TestEnv`], which gives it a ClickHouse database and a
//! Kafka topic prefix of its own, so tests run in parallel and never see each other's data.
//!
//! When a service is not reachable the test fails with the command that starts it: the services
//! are part of the test setup, not optional.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

pub mod clickhouse;
pub mod correlation;
pub mod process;
pub mod sigma;

use varde_store::clickhouse::{ClickHouseSettings, ClickHouseStore};
use varde_transport::kafka::KafkaSettings;

/// The repository root: the nearest directory above the running test's package (cargo sets
/// `CARGO_MANIFEST_DIR` at run time too) that holds `deploy/dev/ports.env`.
///
/// Found at run time, not baked in at compile time, so a build cache shared between clones at
/// different paths (as CI's is) never points a test at another clone's files.
pub fn workspace_root() -> PathBuf {
    let start = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::current_dir().ok())
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let start = start.canonicalize().unwrap_or(start);
    start
        .ancestors()
        .find(|dir| dir.join("deploy/dev/ports.env").is_file())
        .map(Path::to_path_buf)
        .unwrap_or(start)
}

/// Loopback ports of the development services.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// ClickHouse HTTP.
    pub clickhouse_http: u16,
    /// Kafka.
    pub kafka: u16,
    /// HTTP of the local cluster's first node (`deploy/dev/cluster.sh`; node i is this + i).
    pub cluster_http_base: u16,
}

/// Reads `deploy/dev/ports.env`, with environment variables of the same names taking precedence.
pub fn ports() -> Ports {
    let text =
        std::fs::read_to_string(workspace_root().join("deploy/dev/ports.env")).unwrap_or_default();
    let mut values: HashMap<String, String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    for key in [
        "VARDE_CLICKHOUSE_HTTP_PORT",
        "VARDE_KAFKA_PORT",
        "VARDE_CLUSTER_HTTP_BASE",
    ] {
        if let Ok(v) = std::env::var(key) {
            values.insert(key.to_owned(), v);
        }
    }
    let port = |key: &str, default: u16| {
        values
            .get(key)
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Ports {
        clickhouse_http: port("VARDE_CLICKHOUSE_HTTP_PORT", 18123),
        kafka: port("VARDE_KAFKA_PORT", 19092),
        cluster_http_base: port("VARDE_CLUSTER_HTTP_BASE", 18200),
    }
}

fn require(service: &str, port: u16) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    if TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err() {
        panic!(
            "{service} is not reachable on 127.0.0.1:{port}; start the development services with \
             `deploy/dev/services.sh up` (see DEVELOPERS.md)"
        );
    }
}

/// One test's isolated slice of the services.
pub struct TestEnv {
    id: String,
    ports: Ports,
}

impl TestEnv {
    /// A new environment for the test `name`. The accessors of each service fail the test, with
    /// the command that starts it, when that service is down.
    pub fn new(name: &str) -> TestEnv {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let ports = ports();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let clean: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(24)
            .collect();
        let id = format!(
            "{clean}_{}_{}_{nanos:x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        TestEnv { id, ports }
    }

    /// The unique id of this environment.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The ports in use.
    pub fn ports(&self) -> Ports {
        self.ports
    }

    /// ClickHouse settings pointing at this test's own database `t_<id>`.
    pub fn clickhouse(&self) -> ClickHouseSettings {
        require("ClickHouse", self.ports.clickhouse_http);
        ClickHouseSettings::new(
            format!("http://127.0.0.1:{}", self.ports.clickhouse_http),
            format!("t_{}", self.id),
        )
    }

    /// ClickHouse settings for this test's database `t_<id>` on the local cluster `varde`
    /// (`deploy/dev/cluster.sh`, started by `services.sh up`), through node `node` (0 is shard
    /// 1's first replica, nodes numbered shard-major).
    pub fn cluster_clickhouse(&self, node: u16) -> ClickHouseSettings {
        let port = self.ports.cluster_http_base + node;
        require("The local ClickHouse cluster", port);
        let mut s =
            ClickHouseSettings::new(format!("http://127.0.0.1:{port}"), format!("t_{}", self.id));
        s.cluster = Some("varde".to_owned());
        s
    }

    /// A migrated store on this test's database on the local cluster, through node `node`
    /// (see [`TestEnv::cluster_clickhouse`]).
    pub async fn cluster_store(&self, node: u16) -> ClickHouseStore {
        let store =
            ClickHouseStore::new(&self.cluster_clickhouse(node)).expect("valid test database name");
        store
            .migrate()
            .await
            .expect("migrations apply on the cluster");
        store
    }

    /// A migrated store on this test's database.
    pub async fn store(&self) -> ClickHouseStore {
        let store = ClickHouseStore::new(&self.clickhouse()).expect("valid test database name");
        store.migrate().await.expect("migrations apply");
        store
    }

    /// Kafka settings whose topic prefix `t<id>.` is this test's own.
    pub fn kafka(&self) -> KafkaSettings {
        require("Kafka", self.ports.kafka);
        let mut k = KafkaSettings::new(format!("127.0.0.1:{}", self.ports.kafka));
        k.topic_prefix = format!("t{}.", self.id.replace('_', "-"));
        k
    }

    /// Drops this test's database. Call at the end of a passing test; a failing test leaves it
    /// for inspection.
    pub async fn cleanup(self) {
        let store = ClickHouseStore::new(&self.clickhouse()).expect("valid test database name");
        if let Err(e) = store.drop_database().await {
            eprintln!("could not drop test database t_{}: {e}", self.id);
        }
    }
}

/// Path of a binary built from this workspace (e.g. `varde-collector`), next to the running
/// test's own build directory. `cargo test --workspace` builds every package's binaries.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable lives in target/<profile>/deps");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing; build it first: cargo build -p {name} (cargo test --workspace does)",
        path.display()
    );
    path
}

/// The shared test corpus (`../shared/corpus` beside the repository), if present.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = workspace_root().join("../shared/corpus");
    dir.is_dir().then_some(dir)
}

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout` with `what`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Status code and body of `GET path` at `addr`, over a plain TCP connection (HTTP/1.1,
/// `Connection: close`): for the `/metrics` and `/health` pages of Varde's processes.
pub async fn http_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .expect("send");
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8(raw).expect("utf-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("header and body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (code, body.to_owned())
}

/// A loopback port that was free a moment ago (bound, read, released), for a process under
/// test to listen on.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The committed offsets of consumer group `group` on every partition of `topic`, in partition
/// order (0 where nothing is committed), read through the Kafka protocol on a blocking thread.
pub async fn committed_offsets(kafka: &KafkaSettings, group: &str, topic: &str) -> Vec<i64> {
    let (kafka, group, topics) = (kafka.clone(), group.to_owned(), vec![topic.to_owned()]);
    tokio::task::spawn_blocking(move || {
        varde_transport::kafka::committed_offsets(&kafka, &group, &topics, Duration::from_secs(10))
    })
    .await
    .expect("join")
    .expect("committed offsets")
    .iter()
    .map(|c| c.offset.unwrap_or(0))
    .collect()
}

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400 * 1_000_000;

/// One envelope of `n` syslog events of Oslo's collector `k0301-ret`, batch sequence `seq`,
/// all on `day` (days since the epoch), an hour into it: for tests of day partitions and
/// retention.
pub fn envelope_on(day: u16, seq: u64, n: usize) -> varde_core::Envelope {
    use varde_core::{BatchBuilder, CollectorId, Envelope, Event, Kommunenummer, SourceKind};
    let tenant = Kommunenummer::parse("0301").expect("Oslo");
    let collector = CollectorId::new("k0301-ret").expect("id");
    let mut b = BatchBuilder::new(SourceKind::Syslog, tenant, collector.clone(), n);
    let start = i64::from(day) * DAY_US + 3_600_000_000;
    for i in 0..n {
        b.push(&Event {
            event_time_us: start + i as i64,
            receive_time_us: start,
            message: Some(format!("line {i} of day {day}")),
            ..Event::default()
        })
        .expect("push");
    }
    Envelope::new(
        SourceKind::Syslog,
        tenant,
        collector,
        seq,
        b.finish().expect("batch"),
    )
    .expect("envelope")
}

/// Now, µs since the epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// The signing key of test collector `collector`: one per id, made on first use in this test
/// process, so envelopes built anywhere in a test sign with the key its store knows.
pub fn test_key(collector: &str) -> std::sync::Arc<varde_core::CollectorKey> {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex, OnceLock};
    static KEYS: OnceLock<Mutex<HashMap<String, Arc<varde_core::CollectorKey>>>> = OnceLock::new();
    let mut keys = KEYS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    keys.entry(collector.to_owned())
        .or_insert_with(|| Arc::new(varde_core::CollectorKey::generate().expect("key").0))
        .clone()
}

/// Registers [`test_key`]`(collector)` for `collector` of `tenant` in `store`, as enrolment
/// would, and returns the key.
pub async fn enrol_test_collector<S: varde_store::collectors::Collectors>(
    store: &S,
    collector: &str,
    tenant: &str,
) -> std::sync::Arc<varde_core::CollectorKey> {
    let key = test_key(collector);
    let record = varde_store::collectors::IdentityRecord::key_added(
        now_us(),
        &varde_core::CollectorId::new(collector).expect("collector id"),
        varde_core::Kommunenummer::parse(tenant).expect("tenant"),
        collector,
        &key.public_key(),
        "admin:test",
        "registered by the test",
    );
    store.write_identity(&[record]).await.expect("register key");
    key
}
