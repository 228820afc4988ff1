//! Varde's binaries as processes in tests: configuration files for them, and a guard that kills
//! a child when the test ends (pass or fail), so no process outlives its test.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use varde_store::clickhouse::ClickHouseSettings;
use varde_transport::kafka::KafkaSettings;

/// Kills the child on drop.
pub struct Guard(pub Child);

impl Guard {
    /// Sends SIGKILL now (a crash, as `kill -9` does) and reaps the child.
    pub fn kill9(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Writes a collector configuration for `collector_id` of `tenant` into `dir` and returns its
/// path; batches of `max_rows`. The collector gets its signing key in its state directory, and
/// the key is registered in the store at `clickhouse` as an administrator would
/// ([`enrol_key`]), so the pipeline takes its batches.
pub fn collector_config(
    dir: &Path,
    collector_id: &str,
    tenant: &str,
    kafka: &KafkaSettings,
    clickhouse: &ClickHouseSettings,
    max_rows: usize,
) -> PathBuf {
    let state = dir.join(format!("{collector_id}-state"));
    let key_file = state.join("collector.key");
    let key = if key_file.exists() {
        varde_collector::identity::load_key(&key_file).expect("collector key")
    } else {
        varde_collector::identity::create_key(&key_file).expect("collector key")
    };
    enrol_key(clickhouse, collector_id, tenant, &key.public_key());
    let path = dir.join(format!("{collector_id}.toml"));
    let text = format!(
        "collector_id = \"{collector_id}\"\ntenant = \"{tenant}\"\nstate_dir = \"{}\"\n\n[kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}\"\n\n[batch]\nmax_rows = {max_rows}\n",
        dir.join(format!("{collector_id}-state")).display(),
        kafka.brokers,
        kafka.topic_prefix
    );
    std::fs::write(&path, text).expect("write collector config");
    path
}

/// Registers `key` for collector `collector_id` of `tenant` in the (migrated) store at
/// `clickhouse`, from a thread of its own, so sync test code can call it too.
pub fn enrol_key(
    clickhouse: &ClickHouseSettings,
    collector_id: &str,
    tenant: &str,
    key: &varde_core::PublicKey,
) {
    use varde_store::collectors::{Collectors, IdentityRecord};
    let record = IdentityRecord::key_added(
        crate::now_us(),
        &varde_core::CollectorId::new(collector_id).expect("collector id"),
        varde_core::Kommunenummer::parse(tenant).expect("tenant"),
        collector_id,
        key,
        "admin:test",
        "registered by the test",
    );
    let settings = clickhouse.clone();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let store = varde_store::clickhouse::ClickHouseStore::new(&settings).expect("store");
            store.migrate().await.expect("migrate");
            store.write_identity(&[record]).await.expect("register key");
        });
    })
    .join()
    .expect("key registered");
}

/// Runs `varde-collector send --config <config> <file>` to its end (every batch acknowledged
/// by Kafka) and returns its summary line (JSON counts); fails the test with the collector's
/// stderr when it fails.
pub fn collector_send(config: &Path, file: &Path) -> String {
    let out = Command::new(crate::workspace_bin("varde-collector"))
        .args(["send", "--config"])
        .arg(config)
        .arg(file)
        .output()
        .expect("run varde-collector");
    assert!(
        out.status.success(),
        "collector failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Writes a pipeline configuration (consumer group `<prefix>pipeline`, Varde's built-in rule
/// pack, retention off: the test lines are dated in the past, and a restarted pipeline would
/// otherwise drop what the one before it stored) into `dir` and returns its path;
/// `max_messages` envelopes per poll.
pub fn pipeline_config(
    dir: &Path,
    kafka: &KafkaSettings,
    clickhouse: &ClickHouseSettings,
    max_messages: usize,
) -> PathBuf {
    let path = dir.join("pipeline.toml");
    let text = format!(
        "group_id = \"{}pipeline\"\n\n[kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{}\"\n\n[clickhouse]\nurl = \"{}\"\ndatabase = \"{}\"\n\n[loop]\npoll_wait_ms = 100\nmax_messages = {max_messages}\n\n[detection]\nreload_interval_s = 0\n\n[retention]\ncheck_interval_s = 0\n",
        kafka.topic_prefix, kafka.brokers, kafka.topic_prefix, clickhouse.url, clickhouse.database
    );
    std::fs::write(&path, text).expect("write pipeline config");
    path
}

/// Rewrites a [`pipeline_config`] file to take every partition of `tenant`'s topic itself
/// (`assignment = "static"`), resuming from the group's committed offsets; returns the new
/// text. A restarted instance then has its partition at once (the development broker's group
/// coordinator is slow to hand a killed member's partitions on; see DEVELOPERS.md).
pub fn static_assignment(config: &Path, tenant: &str) -> String {
    let text = std::fs::read_to_string(config).expect("read pipeline config");
    let text = text.replacen(
        "\n\n[kafka]",
        &format!("\nassignment = \"static\"\ntenants = [\"{tenant}\"]\n\n[kafka]"),
        1,
    );
    std::fs::write(config, &text).expect("write pipeline config");
    text
}

/// Starts a second `varde pipeline` on the configuration `text` plus a `/metrics` listener on
/// a free loopback port (written to `second.toml` in `dir`), its log going to `log`; returns
/// the process and the listener's address.
pub fn start_second_pipeline_with_metrics(
    varde_bin: &Path,
    dir: &Path,
    text: &str,
    log: &Path,
) -> (Guard, std::net::SocketAddr) {
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], crate::free_port()));
    let config = dir.join("second.toml");
    std::fs::write(
        &config,
        format!("{text}\n[metrics]\nlisten = \"{metrics}\"\n"),
    )
    .expect("write pipeline config");
    (start_pipeline(varde_bin, &config, Some(log)), metrics)
}

/// Starts `varde pipeline --config <config>` (the binary of the root package, `varde_bin`),
/// its log going to `log` (or nowhere).
pub fn start_pipeline(varde_bin: &Path, config: &Path, log: Option<&Path>) -> Guard {
    let stderr = match log {
        Some(path) => Stdio::from(std::fs::File::create(path).expect("pipeline log file")),
        None => Stdio::null(),
    };
    let child = Command::new(varde_bin)
        .args(["pipeline", "--config"])
        .arg(config)
        .env("VARDE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("start varde pipeline");
    Guard(child)
}

/// A valid (made-up) fødselsnummer that line 5 of [`write_syslog_lines`] carries.
pub const FNR: &str = "15059012387";

/// Writes `n` lines to `path`: in turn an RFC 5424 sshd failed login, an RFC 3164 sudo line, an
/// RFC 5424 ID-porten login with structured data, and a line that is not syslog; every
/// `root_every`-th line from line 3 (lines `i` with `i % root_every == 3`) is instead a root
/// login with a password (which Varde's rule pack alerts on). Every line ends with `e2e marker <i>` (the sshd lines: `e2e marker <i>:`).
pub fn write_syslog_lines(path: &Path, n: usize, root_every: usize) {
    let mut f = std::fs::File::create(path).expect("create log file");
    for i in 0..n {
        let line = match i % 4 {
            // A citizen's fødselsnummer in a command line: the collector must pseudonymise it.
            _ if i == 5 => format!(
                "<85>May  1 10:00:05 fw01 sudo: drift : COMMAND=/usr/bin/oppslag {FNR} e2e marker {i}"
            ),
            _ if i % root_every == 3 => format!(
                "<38>1 2024-05-01T12:00:00Z ssh01.bergen.kommune.no sshd 77 - - Accepted password for root from 198.51.100.7 port {} ssh2 e2e marker {i}",
                40000 + i
            ),
            0 => format!(
                "<38>1 2024-05-01T10:{:02}:{:02}.{:03}Z sak01.bergen.kommune.no sshd {} - - e2e marker {i}: Failed password for invalid user admin from 203.0.113.9 port 4{i:04} ssh2",
                (i / 60) % 60,
                i % 60,
                i % 1000,
                1000 + i
            ),
            1 => format!(
                "<85>May  1 10:00:{:02} fw01 sudo: drift : COMMAND=/bin/true e2e marker {i}",
                i % 60
            ),
            2 => format!(
                "<134>1 2024-05-01T11:00:00Z portal01 innbyggerportal - LOGIN [idporten@53595 acr=\"idporten-loa-high\"] e2e marker {i}"
            ),
            _ => format!("not syslog at all, e2e marker {i}"),
        };
        writeln!(f, "{line}").expect("write line");
    }
}
