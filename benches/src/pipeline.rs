//! `varde-bench pipeline`: the central path under load, end to end, on the real broker and
//! ClickHouse.
//!
//! For each offered rate: a fresh ClickHouse database and topic prefix; a `varde pipeline`
//! process (the binary given by `--varde`) with every SigmaHQ Windows rule and Varde's pack
//! loaded; and a load generator in this process that behaves like `--tenants` collectors: each
//! municipality closes its batches every `--flush-ms` (the collector's `max_delay_ms`), one
//! envelope per kind, the municipalities out of phase. The events are the edge sample
//! (`varde_collector::sample::edge_sample_lines` through `edge_event`: syslog, sshd and sudo,
//! web access logs, IIS, ID-porten logins, JSON) mixed with Windows process creations (SigmaHQ's
//! regression samples, `--attack-percent` of them left as the attack they are, the rest
//! rewritten to ordinary processes). Every event's time is the moment its batch is closed.
//!
//! Measured over `--seconds` after `--warmup`: events and alerts stored per second (the
//! pipeline's own counters), the backlog at the end and how long it took to drain, CPU seconds
//! per million events of each process (this generator, the broker, the pipeline, ClickHouse; from
//! `/proc`), where the pipeline's loop spent its time (`varde_pipeline_stage_seconds_total`),
//! and event-to-alert latency: from the moment the batch was closed to the moment a query sees
//! the alert in ClickHouse (alerts are looked for every `--poll-ms`, which bounds the resolution).
//! At the end every event sent is counted in ClickHouse: nothing may be missing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::Value as Json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Mutex;
use varde_collector::edge::{EdgeSource, edge_event};
use varde_collector::privacy::{Privacy, PrivacyKey, PrivacyPolicy};
use varde_collector::sample::edge_sample_lines;
use varde_core::{BatchBuilder, CollectorId, Envelope, Event, Kommunenummer, SourceKind};
use varde_store::clickhouse::{ClickHouseSettings, ClickHouseStore};
use varde_transport::Publisher;
use varde_transport::kafka::{KafkaPublisher, KafkaSettings, ensure_topics};

/// Options of the pipeline benchmark.
#[derive(clap::Args)]
pub struct Options {
    /// Kafka bootstrap brokers.
    #[arg(long, default_value = "127.0.0.1:19092")]
    pub brokers: String,
    /// ClickHouse's HTTP endpoint.
    #[arg(long, default_value = "http://127.0.0.1:18123")]
    pub clickhouse: String,
    /// Offered rates, events per second, one run each.
    #[arg(long, value_delimiter = ',', default_value = "10000,50000,100000")]
    pub rates: Vec<u64>,
    /// Seconds measured per rate.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Seconds of load before measuring (caches, first inserts).
    #[arg(long, default_value_t = 10)]
    pub warmup: u64,
    /// Municipalities sending (each its own topic and collector).
    #[arg(long, default_value_t = 50)]
    pub tenants: usize,
    /// Partitions per municipality's topic.
    #[arg(long, default_value_t = 1)]
    pub partitions: i32,
    /// How often each municipality's collector closes its batches, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    pub flush_ms: u64,
    /// Percent of events that are Windows process creations (the rest: the edge sample).
    #[arg(long, default_value_t = 40)]
    pub windows_percent: u32,
    /// Percent of events that are flow records (synthetic, see `flow_pool`); taken from the
    /// whole before the Windows and edge shares are applied. 0 by default, as in the figures
    /// of the earlier tables.
    #[arg(long, default_value_t = 0)]
    pub flow_percent: u32,
    /// Percent of Windows events left as SigmaHQ's attack samples (the rest are benign).
    #[arg(long, default_value_t = 1)]
    pub attack_percent: u32,
    /// The SigmaHQ corpus (rules and regression samples).
    #[arg(long, default_value = "../shared/corpus/sigmahq")]
    pub corpus: PathBuf,
    /// Rule folders the pipeline loads, relative to the corpus.
    #[arg(long, default_value = "rules/windows")]
    pub rules: Vec<PathBuf>,
    /// The `varde` binary to run as the pipeline (a release build).
    #[arg(long)]
    pub varde: PathBuf,
    /// Messages per poll of the pipeline (its `[loop] max_messages`).
    #[arg(long, default_value_t = 200)]
    pub max_messages: usize,
    /// How often the alerts table is queried for new alerts, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub poll_ms: u64,
    /// Longest wait for the backlog to drain after the load stops, in seconds.
    #[arg(long, default_value_t = 300)]
    pub drain_timeout: u64,
    /// Keep each run's ClickHouse database (default: dropped at the end of its run).
    #[arg(long)]
    pub keep: bool,
    /// Send unsigned envelopes to a pipeline told to accept them (`[identity]
    /// accept_unsigned`): the figures without signature verification, for comparison.
    #[arg(long)]
    pub unsigned: bool,
    /// Store on this ClickHouse cluster (`[clickhouse] cluster`), through the server at
    /// `--clickhouse` (one of its nodes; `deploy/dev/cluster.sh up` makes cluster `varde`, node
    /// 1 at http://127.0.0.1:18200).
    #[arg(long)]
    pub cluster: Option<String>,
}

impl Options {
    fn clickhouse_settings(&self, db: &str) -> ClickHouseSettings {
        let mut s = ClickHouseSettings::new(self.clickhouse.clone(), db);
        s.cluster = self.cluster.clone();
        s
    }
}

/// One mixed event of the pool, with its kind.
type Pooled = (SourceKind, Event);

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// xorshift64: the generator's deterministic choices.
fn next_random(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// `n` synthetic flow records of one municipal network, as the collector reports them: 2,000
/// clients in 10.20.0.0/14 talking to 200 servers in the documentation ranges (a tenth of them
/// with the names of shared components), 70 % HTTPS with the TLS server name, 20 % DNS to the
/// municipality's resolver with the question, 5 % HTTP with the host, 5 % other TCP; sizes
/// spread over four orders of magnitude, durations up to two minutes, ephemeral source ports.
fn flow_pool(n: usize, now: i64) -> Vec<Pooled> {
    use std::net::{IpAddr, Ipv4Addr};
    const NAMES: [&str; 10] = [
        "login.idporten.no",
        "www.altinn.no",
        "platform.altinn.no",
        "kontaktregisteret.no",
        "digitalpostkasse.no",
        "svarut.ks.no",
        "api.fiks.ks.no",
        "data.brreg.no",
        "skatteetaten.no",
        "nav.no",
    ];
    let mut state = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            let r = next_random(&mut state);
            let client = (r % 2000) as u32;
            let src = Ipv4Addr::new(
                10,
                20 + (client >> 10) as u8,
                (client >> 2) as u8,
                (client % 250) as u8 + 1,
            );
            let server = ((r >> 11) % 200) as u8;
            let dst = if server < 100 {
                Ipv4Addr::new(198, 51, 100, server + 1)
            } else {
                Ipv4Addr::new(203, 0, 113, server - 99)
            };
            let name = NAMES[usize::from(server) % NAMES.len()];
            let service = (r >> 20) % 100;
            let bytes_out = 200 + ((next_random(&mut state) % 20_000) >> ((r >> 30) % 8));
            let bytes_in = 500 + ((next_random(&mut state) % 2_000_000) >> ((r >> 33) % 12));
            let start = now - i64::try_from(r >> 40).unwrap_or(0) % 120_000_000;
            let mut flow =
                varde_collector::flow::FlowRecord::new(IpAddr::V4(src), IpAddr::V4(dst), 6);
            flow.src_port = 32_768 + ((r >> 17) % 28_000) as u16;
            flow.dst_port = 443;
            flow.first_us = start;
            flow.last_us = start + i64::try_from((r >> 24) % 60_000_000).unwrap_or(0);
            flow.packets_out = bytes_out / 700 + 1;
            flow.bytes_out = bytes_out;
            flow.packets_in = bytes_in / 1200 + 1;
            flow.bytes_in = bytes_in;
            flow.tcp_flags = Some(0x1b);
            match service {
                0..70 => flow.tls_sni = Some(name.to_owned()),
                70..90 => {
                    flow.dst_ip = IpAddr::V4(Ipv4Addr::new(10, 20, 0, 53));
                    flow.dst_port = 53;
                    flow.protocol = 17;
                    flow.tcp_flags = None;
                    flow.dns_query = Some(name.to_owned());
                    flow.dns_answers = vec![IpAddr::V4(dst)];
                }
                90..95 => {
                    flow.dst_port = 80;
                    flow.http_host = Some(name.to_owned());
                }
                _ => flow.dst_port = 8443,
            }
            if server.is_multiple_of(10) {
                flow.component = Some(name.to_owned());
            }
            (SourceKind::Flow, flow.event(now))
        })
        .collect()
}

/// The event pool every municipality cycles through (each from its own offset).
fn pool(o: &Options, size: usize) -> Result<Vec<Pooled>> {
    let flows_n = size * o.flow_percent.min(100) as usize / 100;
    let rest = pool_without_flows(o, size - flows_n)?;
    if flows_n == 0 {
        return Ok(rest);
    }
    Ok(interleave(
        flow_pool(flows_n, now_us()),
        rest,
        o.flow_percent,
    ))
}

/// `a` and `b` mixed deterministically, `percent_a` % of the places taken from `a` while both
/// last, then the rest of whichever is left.
fn interleave(a: Vec<Pooled>, b: Vec<Pooled>, percent_a: u32) -> Vec<Pooled> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter(), b.into_iter());
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    loop {
        let next = if next_random(&mut state) % 100 < u64::from(percent_a) {
            a.next().or_else(|| b.next())
        } else {
            b.next().or_else(|| a.next())
        };
        match next {
            Some(p) => out.push(p),
            None => return out,
        }
    }
}

/// The log part of the pool: the edge sample and Windows process creations.
fn pool_without_flows(o: &Options, size: usize) -> Result<Vec<Pooled>> {
    let now = now_us();
    let windows_n = size * o.windows_percent.min(100) as usize / 100;
    let edge_n = size - windows_n;
    let key = PrivacyKey::from_bytes([7; 32]);
    let source = EdgeSource::new(Privacy::new(&key, PrivacyPolicy::default()));
    let edge: Vec<Pooled> = edge_sample_lines("0301", edge_n, now)
        .iter()
        .map(|l| edge_event(l, now, &source))
        .collect();
    let templates = crate::sigma::templates(&o.corpus, 1)?;
    let mut windows = Vec::with_capacity(windows_n);
    for line in crate::sigma::generate(&templates, windows_n, 100 - o.attack_percent.min(100)) {
        let doc: Json = serde_json::from_str(&line)?;
        windows.push((
            SourceKind::WindowsEvent,
            varde_core::windows::event_from_evtx_json(&doc, now)?,
        ));
    }
    Ok(interleave(windows, edge, o.windows_percent))
}

/// One municipality's collector, as the generator plays it.
struct Sender {
    tenant: Kommunenummer,
    collector: CollectorId,
    /// Signs every envelope, as the collector does; `None` with `--unsigned`.
    key: Option<Arc<varde_core::CollectorKey>>,
    topic: String,
    seq: u64,
    cursor: usize,
    next_flush: Instant,
    last_flush: Instant,
    carry: f64,
}

/// Counts of what the generator sent.
#[derive(Default, Clone, Copy)]
struct Sent {
    events: u64,
    envelopes: u64,
    bytes: u64,
}

/// Sends at `rate` events per second until `until`, closing each municipality's batches every
/// `flush`; returns what was sent.
async fn generate(
    publisher: &KafkaPublisher,
    senders: &mut [Sender],
    pool: &[Pooled],
    rate: u64,
    flush: Duration,
    until: Instant,
) -> Result<Sent> {
    let per_tenant = rate as f64 / senders.len().max(1) as f64;
    let mut sent = Sent::default();
    loop {
        let now = Instant::now();
        if now >= until {
            return Ok(sent);
        }
        let mut wire: Vec<(String, Vec<u8>, Vec<u8>)> = Vec::new();
        for s in senders.iter_mut().filter(|s| s.next_flush <= now) {
            let exact = per_tenant * now.duration_since(s.last_flush).as_secs_f64() + s.carry;
            let count = exact.floor() as usize;
            s.carry = exact - count as f64;
            s.last_flush = now;
            s.next_flush += flush;
            if count == 0 {
                continue;
            }
            let t_us = now_us();
            let mut builders: Vec<(SourceKind, BatchBuilder)> = Vec::new();
            for i in 0..count {
                let (kind, template) = &pool[(s.cursor + i) % pool.len()];
                let at = match builders.iter().position(|(k, _)| k == kind) {
                    Some(at) => at,
                    None => {
                        builders.push((
                            *kind,
                            BatchBuilder::new(*kind, s.tenant, s.collector.clone(), count),
                        ));
                        builders.len() - 1
                    }
                };
                let mut event = template.clone();
                event.event_time_us = t_us;
                event.receive_time_us = t_us;
                builders[at].1.push(&event)?;
            }
            s.cursor = (s.cursor + count) % pool.len();
            for (kind, mut builder) in builders {
                let envelope = Envelope::new(
                    kind,
                    s.tenant,
                    s.collector.clone(),
                    s.seq,
                    builder.finish()?,
                )?;
                s.seq += 1;
                sent.events += u64::from(envelope.header.row_count);
                let bytes = match &s.key {
                    Some(key) => envelope.encode_signed(key)?,
                    None => envelope.encode()?,
                };
                sent.bytes += bytes.len() as u64;
                sent.envelopes += 1;
                wire.push((
                    s.topic.clone(),
                    s.collector.as_str().as_bytes().to_vec(),
                    bytes,
                ));
            }
        }
        // Acknowledged by the broker before the next round, as the collector's spool does.
        let results = futures::future::join_all(
            wire.iter()
                .map(|(topic, key, bytes)| publisher.publish(topic, key, bytes)),
        )
        .await;
        for r in results {
            r.context("publishing an envelope")?;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// `GET path` on a local HTTP server: the body of a 200, or an error.
async fn http_get(addr: &str, path: &str) -> Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw)).await??;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").context("no HTTP body")?;
    if !head.starts_with("HTTP/1.1 200") {
        bail!("{path}: {}", head.lines().next().unwrap_or_default());
    }
    Ok(body.to_owned())
}

/// The samples of the pipeline's `/metrics` this benchmark reads.
#[derive(Default, Clone, Debug)]
struct Scrape {
    rows: f64,
    alerts: f64,
    envelopes: f64,
    stages: [f64; 4],
    rules: f64,
    running: bool,
}

const STAGES: [&str; 4] = ["decode", "detect", "store", "commit"];

async fn scrape(addr: &str) -> Result<Scrape> {
    let text = http_get(addr, "/metrics").await?;
    let mut s = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let v: f64 = value.parse().unwrap_or(0.0);
        match name {
            "varde_pipeline_rows_written_total" => s.rows = v,
            "varde_pipeline_alerts_written_total" => s.alerts = v,
            "varde_pipeline_envelopes_total" => s.envelopes = v,
            "varde_pipeline_rules_loaded" => s.rules = v,
            "varde_pipeline_running" => s.running = v == 1.0,
            _ => {
                for (i, stage) in STAGES.iter().enumerate() {
                    if name == format!("varde_pipeline_stage_seconds_total{{stage=\"{stage}\"}}") {
                        s.stages[i] = v;
                    }
                }
            }
        }
    }
    Ok(s)
}

/// CPU seconds (user + system) a process has used, from `/proc/<pid>/stat`.
fn cpu_seconds(pid: u32, ticks_per_s: f64) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0.0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // After the command: state(0) … utime(11), stime(12).
    (ticks(11) + ticks(12)) / ticks_per_s
}

/// Processes whose command name starts with `prefix` (e.g. the broker, ClickHouse's server).
fn pids_named(prefix: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| {
        let e = e.ok()?;
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        comm.trim().starts_with(prefix).then_some(pid)
    })
    .collect()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak resident set (`VmHWM`) of a process (`"self"` or a pid), in KiB.
pub(crate) fn peak_rss_kib_of(pid: &str) -> u64 {
    status_kib_of(pid, "VmHWM:")
}

/// A memory figure (`VmHWM:`, `VmRSS:`, …) of a process's `/proc/<pid>/status`, in KiB (0 when
/// unreadable).
pub(crate) fn status_kib_of(pid: &str, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn peak_rss_mib(pid: u32) -> u64 {
    peak_rss_kib_of(&pid.to_string()) / 1024
}

/// CPU seconds of the processes measured, at one moment.
#[derive(Clone, Copy, Default)]
struct Cpu {
    generator: f64,
    broker: f64,
    pipeline: f64,
    clickhouse: f64,
}

fn cpu_now(pipeline: u32, broker: &[u32], clickhouse: &[u32], ticks: f64) -> Cpu {
    Cpu {
        generator: cpu_seconds(std::process::id(), ticks),
        broker: broker.iter().map(|p| cpu_seconds(*p, ticks)).sum(),
        pipeline: cpu_seconds(pipeline, ticks),
        clickhouse: clickhouse.iter().map(|p| cpu_seconds(*p, ticks)).sum(),
    }
}

/// Alerts seen so far: id → (event time µs, first seen µs).
type Seen = Arc<Mutex<HashMap<String, (i64, i64)>>>;

/// Looks for new alerts every `every` until `stop`; records when each was first seen.
async fn watch_alerts(store: ClickHouseStore, seen: Seen, every: Duration, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::Relaxed) {
        let since_s = now_us() / 1_000_000 - 120;
        let sql = format!(
            "SELECT concat(hex(alert_id), ' ', toString(toUInt64(event_time) * 1000000 + event_time_us)) \
             FROM {{db}}.alerts WHERE event_time >= toDateTime({since_s})"
        );
        if let Ok(rows) = store.select_strings(&sql).await {
            let at = now_us();
            let mut seen = seen.lock().await;
            for row in rows {
                if let Some((id, t)) = row.split_once(' ')
                    && let Ok(t) = t.parse::<i64>()
                {
                    seen.entry(id.to_owned()).or_insert((t, at));
                }
            }
        }
        tokio::time::sleep(every).await;
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Stops the pipeline with SIGTERM (a clean shutdown), then SIGKILL if it lingers.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn pipeline_config(
    o: &Options,
    dir: &Path,
    prefix: &str,
    db: &str,
    metrics: &str,
) -> Result<PathBuf> {
    let rules: Vec<String> = o
        .rules
        .iter()
        .map(|r| format!("{:?}", o.corpus.join(r).display().to_string()))
        .collect();
    let text = format!(
        "group_id = \"{prefix}pipeline\"\n\n[kafka]\nbrokers = \"{}\"\ntopic_prefix = \"{prefix}\"\n\n\
         [clickhouse]\nurl = \"{}\"\ndatabase = \"{db}\"\n{}\n[metrics]\nlisten = \"{metrics}\"\nlag_interval_s = 5\n\n\
         [loop]\nmax_messages = {}\npoll_wait_ms = 100\n\n[retention]\ncheck_interval_s = 0\n\n\
         [detection]\nbuiltin_pack = true\nrules = [{}]\nreload_interval_s = 0\n\n\
         [detection.placeholders]\nhigh_assurance_services = [\"byggesak\", \"barnevern\"]\n\
         municipal_oidc_clients = [\"k0301-portal\", \"k0301-innbyggerportal\"]\n\n\
         [identity]\naccept_unsigned = {}\n",
        o.brokers,
        o.clickhouse,
        o.cluster
            .as_ref()
            .map_or_else(String::new, |c| format!("cluster = \"{c}\"\n")),
        o.max_messages,
        rules.join(", "),
        o.unsigned
    );
    let path = dir.join(format!("{prefix}toml"));
    std::fs::write(&path, text)?;
    Ok(path)
}

fn free_loopback() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

/// Figures of one offered rate.
struct Figures {
    rate: u64,
    offered: f64,
    stored: f64,
    alerts: f64,
    backlog: f64,
    drain_s: f64,
    lat: (f64, f64, f64, usize, usize),
    cpu_per_m: Cpu,
    cores: Cpu,
    stages_per_m: [f64; 4],
    envelopes_per_s: f64,
    mb_per_s: f64,
    rss_mib: u64,
    missing: i64,
}

async fn one_rate(o: &Options, pool: &[Pooled], rate: u64, dir: &Path) -> Result<Figures> {
    let run = format!("bench{}r{rate}", std::process::id());
    let prefix = format!("{run}.");
    let db = format!("bench_{}_{rate}", std::process::id());
    let kafka = KafkaSettings {
        topic_prefix: prefix.clone(),
        ..KafkaSettings::new(o.brokers.clone())
    };
    let tenants: Vec<Kommunenummer> = Kommunenummer::all().take(o.tenants.max(1)).collect();
    let topics: Vec<(String, i32)> = tenants
        .iter()
        .map(|t| {
            (
                varde_transport::events_topic(&prefix, *t),
                o.partitions.max(1),
            )
        })
        .collect();
    ensure_topics(&kafka, &topics)
        .await
        .context("creating the topics")?;
    let store = ClickHouseStore::new(&o.clickhouse_settings(&db))?;

    let metrics = free_loopback()?;
    let config = pipeline_config(o, dir, &prefix, &db, &metrics)?;
    let log = std::fs::File::create(dir.join(format!("{run}.log")))?;
    let mut child = Command::new(&o.varde)
        .args(["pipeline", "--config"])
        .arg(&config)
        .env("VARDE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .with_context(|| format!("starting {}", o.varde.display()))?;
    let pid = child.id();
    let result = measure(
        o, pool, rate, &kafka, &store, &tenants, &metrics, pid, &mut child,
    )
    .await;
    stop(&mut child);
    if result.is_ok() {
        for table in ["events", "alerts"] {
            match stored_bytes(o, &store, table).await {
                Ok((bytes, rows)) if rows > 0 => println!(
                    "  stored {table}: {rows} rows, {bytes} bytes compressed, {:.1} bytes per row{}",
                    bytes as f64 / rows as f64,
                    if o.cluster.is_some() {
                        " (one replica of each shard)"
                    } else {
                        ""
                    }
                ),
                Ok(_) => {}
                Err(e) => eprintln!("  stored {table}: cannot read the sizes: {e}"),
            }
        }
        if let Err(e) = stored_bytes_by_kind(&store).await {
            eprintln!("  stored events by kind: cannot read the sizes: {e}");
        }
    }
    if !o.keep {
        let _ = store.drop_database().await;
    }
    result
}

/// Compressed bytes and rows of `table`'s active parts (in cluster mode: of one replica of
/// each shard, through `cluster()`), after merges settle.
async fn stored_bytes(o: &Options, store: &ClickHouseStore, table: &str) -> Result<(u64, u64)> {
    let (parts, local) = match &o.cluster {
        Some(c) => (
            format!("cluster('{c}', system, parts)"),
            format!("{table}_local"),
        ),
        None => ("system.parts".to_owned(), table.to_owned()),
    };
    let got = store
        .select_strings(&format!(
            "SELECT concat(toString(sum(data_compressed_bytes)), ' ', toString(sum(rows))) \
             FROM {parts} WHERE database = '{{db}}' AND table = '{local}' AND active"
        ))
        .await?;
    let line = got.first().context("no answer")?;
    let (bytes, rows) = line.split_once(' ').context("two numbers")?;
    Ok((bytes.parse()?, rows.parse()?))
}

/// Compressed bytes per stored event of each source kind. A kind's rows are mixed with the
/// others' in `events` (ordered by tenant, time and id), so their share of its parts cannot be
/// read off; instead each kind's rows are copied into a table of their own with the same
/// columns, engine and order, merged into one part, measured and dropped. On a cluster the
/// copy lives on the node the store talks to (a plain `ReplacingMergeTree`, one replica's
/// worth) and is filled through the distributed table.
async fn stored_bytes_by_kind(store: &ClickHouseStore) -> Result<()> {
    let kinds = store
        .select_strings("SELECT DISTINCT source_kind FROM {db}.events ORDER BY source_kind")
        .await?;
    for kind in kinds {
        if !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            eprintln!("  stored events of kind {kind:?}: skipped (not a plain kind name)");
            continue;
        }
        let copy = format!("{{db}}.bytes_of_{kind}");
        store
            .execute(&format!("DROP TABLE IF EXISTS {copy}"))
            .await?;
        store
            .execute(&format!(
                "CREATE TABLE {copy} AS {{db}}.events ENGINE = ReplacingMergeTree() \
                 PARTITION BY event_date ORDER BY (tenant, event_time, event_id)"
            ))
            .await?;
        store
            .execute(&format!(
                "INSERT INTO {copy} SELECT * FROM {{db}}.events WHERE source_kind = '{kind}'"
            ))
            .await?;
        store
            .execute(&format!("OPTIMIZE TABLE {copy} FINAL"))
            .await?;
        let got = store
            .select_strings(&format!(
                "SELECT concat(toString(sum(data_compressed_bytes)), ' ', \
                 toString(sum(data_uncompressed_bytes)), ' ', toString(sum(rows))) \
                 FROM system.parts WHERE database = '{{db}}' AND table = 'bytes_of_{kind}' AND active"
            ))
            .await?;
        store
            .execute(&format!("DROP TABLE IF EXISTS {copy}"))
            .await?;
        let mut numbers = got
            .first()
            .context("no answer")?
            .split(' ')
            .map(str::parse::<u64>);
        let (Some(Ok(packed)), Some(Ok(plain)), Some(Ok(rows))) =
            (numbers.next(), numbers.next(), numbers.next())
        else {
            bail!("three numbers expected");
        };
        if rows > 0 {
            println!(
                "  stored events of kind {kind}: {rows} rows, {:.1} bytes per event compressed, {:.1} uncompressed",
                packed as f64 / rows as f64,
                plain as f64 / rows as f64
            );
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
async fn measure(
    o: &Options,
    pool: &[Pooled],
    rate: u64,
    kafka: &KafkaSettings,
    store: &ClickHouseStore,
    tenants: &[Kommunenummer],
    metrics: &str,
    pid: u32,
    child: &mut Child,
) -> Result<Figures> {
    // Ready: serving /metrics with its rules loaded.
    let started = Instant::now();
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            bail!("the pipeline exited at start ({status}); see its log");
        }
        if let Ok(s) = scrape(metrics).await
            && s.running
            && s.rules > 0.0
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("the pipeline did not start within 600 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let rules = scrape(metrics).await?.rules;
    eprintln!(
        "[bench] {rate} ev/s: pipeline ready in {:.1} s with {rules} rules",
        started.elapsed().as_secs_f64()
    );

    let publisher = KafkaPublisher::new(kafka, "varde-bench", Duration::from_secs(30))?;
    let flush = Duration::from_millis(o.flush_ms.max(10));
    let t0 = Instant::now();
    // Each municipality's collector is enrolled as a real one is: its key made here, the
    // public half in the registry the pipeline verifies against.
    let mut keys = Vec::with_capacity(tenants.len());
    for t in tenants {
        let collector = CollectorId::new(format!("k{}-bench", t.as_str()))?;
        let (key, _) = varde_core::CollectorKey::generate()?;
        if !o.unsigned {
            use varde_store::collectors::{Collectors, IdentityRecord};
            store
                .write_identity(&[IdentityRecord::key_added(
                    now_us(),
                    &collector,
                    *t,
                    "bench",
                    &key.public_key(),
                    "admin:bench",
                    "enrolment",
                )])
                .await?;
        }
        keys.push((collector, (!o.unsigned).then(|| Arc::new(key))));
    }
    let mut senders: Vec<Sender> = tenants
        .iter()
        .zip(keys)
        .enumerate()
        .map(|(i, (t, (collector, key)))| -> Result<Sender> {
            let phase = flush.mul_f64(i as f64 / tenants.len() as f64);
            Ok(Sender {
                tenant: *t,
                collector,
                key,
                topic: varde_transport::events_topic(&kafka.topic_prefix, *t),
                seq: 0,
                cursor: (i * 7919) % pool.len().max(1),
                next_flush: t0 + phase,
                last_flush: t0 + phase - flush,
                carry: 0.0,
            })
        })
        .collect::<Result<_>>()?;

    let seen: Seen = Arc::default();
    let stop_watch = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(watch_alerts(
        store.clone(),
        seen.clone(),
        Duration::from_millis(o.poll_ms.max(10)),
        stop_watch.clone(),
    ));

    let warm = generate(
        &publisher,
        &mut senders,
        pool,
        rate,
        flush,
        t0 + Duration::from_secs(o.warmup),
    )
    .await?;
    let broker = pids_named("tansu");
    let broker = if broker.is_empty() {
        pids_named("kafka")
    } else {
        broker
    };
    let clickhouse = pids_named("clickhouse-serv");
    let ticks = clock_ticks();
    let (m0, c0, w0, w0_us) = (
        scrape(metrics).await?,
        cpu_now(pid, &broker, &clickhouse, ticks),
        Instant::now(),
        now_us(),
    );
    let window = generate(
        &publisher,
        &mut senders,
        pool,
        rate,
        flush,
        w0 + Duration::from_secs(o.seconds),
    )
    .await?;
    let (m1, c1, secs, w1_us) = (
        scrape(metrics).await?,
        cpu_now(pid, &broker, &clickhouse, ticks),
        w0.elapsed().as_secs_f64(),
        now_us(),
    );
    let total = (warm.events + window.events) as f64;
    let backlog = total - m1.rows;

    // Drain: every event sent stored.
    let drain_start = Instant::now();
    let mut last = m1.clone();
    while last.rows < total && drain_start.elapsed() < Duration::from_secs(o.drain_timeout) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        last = scrape(metrics).await?;
    }
    let drain_s = drain_start.elapsed().as_secs_f64();
    // The last alerts become visible to the watcher.
    tokio::time::sleep(Duration::from_millis(3 * o.poll_ms.max(10) + 500)).await;
    stop_watch.store(true, Ordering::Relaxed);
    let _ = watcher.await;

    let stored: i64 = store
        .select_strings("SELECT toString(count()) FROM {db}.events FINAL")
        .await?
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    let in_window: i64 = store
        .select_strings(&format!(
            "SELECT toString(count()) FROM {{db}}.alerts FINAL WHERE event_time >= toDateTime({}) AND event_time < toDateTime({})",
            w0_us / 1_000_000 + 1,
            w1_us / 1_000_000
        ))
        .await?
        .first()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let seen = seen.lock().await;
    let mut lat: Vec<f64> = seen
        .values()
        .filter(|(t, _)| {
            *t >= (w0_us / 1_000_000 + 1) * 1_000_000 && *t < (w1_us / 1_000_000) * 1_000_000
        })
        .map(|(t, at)| (at - t) as f64 / 1000.0)
        .collect();
    lat.sort_by(f64::total_cmp);
    let n_lat = lat.len();
    let per_m = |a: f64, b: f64| (b - a) / ((m1.rows - m0.rows).max(1.0) / 1e6);
    let mut stages = [0.0; 4];
    for (i, s) in stages.iter_mut().enumerate() {
        *s = per_m(m0.stages[i], m1.stages[i]);
    }
    Ok(Figures {
        rate,
        offered: window.events as f64 / secs,
        stored: (m1.rows - m0.rows) / secs,
        alerts: (m1.alerts - m0.alerts) / secs,
        backlog,
        drain_s,
        lat: (
            percentile(&lat, 0.5),
            percentile(&lat, 0.99),
            lat.last().copied().unwrap_or(f64::NAN),
            n_lat,
            usize::try_from(in_window).unwrap_or(0),
        ),
        cpu_per_m: Cpu {
            generator: per_m(c0.generator, c1.generator),
            broker: per_m(c0.broker, c1.broker),
            pipeline: per_m(c0.pipeline, c1.pipeline),
            clickhouse: per_m(c0.clickhouse, c1.clickhouse),
        },
        cores: Cpu {
            generator: (c1.generator - c0.generator) / secs,
            broker: (c1.broker - c0.broker) / secs,
            pipeline: (c1.pipeline - c0.pipeline) / secs,
            clickhouse: (c1.clickhouse - c0.clickhouse) / secs,
        },
        stages_per_m: stages,
        envelopes_per_s: window.envelopes as f64 / secs,
        mb_per_s: window.bytes as f64 / secs / 1e6,
        rss_mib: peak_rss_mib(pid),
        missing: total as i64 - stored,
    })
}

/// Runs the benchmark and prints its figures.
pub fn run(o: &Options) -> Result<()> {
    if !o.corpus.join("regression_data").is_dir() {
        bail!(
            "the SigmaHQ corpus is not at {} (its rules and regression samples are the workload); pass --corpus",
            o.corpus.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let pool = pool(o, 200_000)?;
    let mut kinds: HashMap<String, usize> = HashMap::new();
    for (k, _) in &pool {
        *kinds.entry(k.to_string()).or_default() += 1;
    }
    let mut kinds: Vec<_> = kinds.into_iter().collect();
    kinds.sort();
    let dir = tempfile::tempdir()?;
    println!(
        "varde-bench pipeline: {} municipalities, batches closed every {} ms, {} s measured after {} s warm-up",
        o.tenants, o.flush_ms, o.seconds, o.warmup
    );
    println!(
        "  event mix (of {}): {}",
        pool.len(),
        kinds
            .iter()
            .map(|(k, n)| format!("{k} {:.0}%", 100.0 * *n as f64 / pool.len() as f64))
            .collect::<Vec<_>>()
            .join(", ")
    );
    for rate in &o.rates {
        let f = runtime.block_on(one_rate(o, &pool, *rate, dir.path()))?;
        print_figures(&f);
    }
    Ok(())
}

fn print_figures(f: &Figures) {
    let (p50, p99, max, n, total) = f.lat;
    println!(
        "\noffered {} ev/s: sent {:.0} ev/s ({:.0} envelopes/s, {:.1} MB/s), stored {:.0} ev/s, {:.1} alerts/s",
        f.rate, f.offered, f.envelopes_per_s, f.mb_per_s, f.stored, f.alerts
    );
    println!(
        "  backlog at the end: {:.0} events, drained in {:.1} s; missing after the drain: {}",
        f.backlog, f.drain_s, f.missing
    );
    println!(
        "  event-to-alert latency: p50 {p50:.0} ms, p99 {p99:.0} ms, max {max:.0} ms ({n} of {total} alerts of the window seen)"
    );
    let c = f.cpu_per_m;
    println!(
        "  CPU s per 1M events: generator {:.2}, broker {:.2}, pipeline {:.2}, ClickHouse {:.2}",
        c.generator, c.broker, c.pipeline, c.clickhouse
    );
    let c = f.cores;
    println!(
        "  cores busy: generator {:.2}, broker {:.2}, pipeline {:.2}, ClickHouse {:.2}",
        c.generator, c.broker, c.pipeline, c.clickhouse
    );
    let s = f.stages_per_m;
    println!(
        "  pipeline loop, wall s per 1M events: decode {:.2}, detect {:.2}, store {:.2}, commit {:.2}; peak RSS {} MiB",
        s[0], s[1], s[2], s[3], f.rss_mib
    );
}
