//! The collector's syslog listeners fed by real syslog software, not by the tests' own bytes:
//!
//! - **syslog-ng's `loggen`** (Debian's `syslog-ng-core`) sends numbered messages to the
//!   collector over TCP with newline framing (its default, RFC 3164-style lines), over TCP as
//!   RFC 5424 with octet counting (`--syslog-proto`), and over UDP (`--dgram`, at a modest rate).
//! - **rsyslogd** (Debian's `rsyslog`) runs as a child of the test with its own configuration:
//!   two `imtcp` inputs on free ports, each with a ruleset that forwards with `omfwd` over TCP to
//!   the collector, one with `TCP_Framing="octet-counted"` and the RFC 5424 template
//!   (`RSYSLOG_SyslogProtocol23Format`), one with omfwd's defaults (LF framing, the traditional
//!   RFC 3164 forward format). util-linux `logger` sends numbered lines to rsyslog's inputs.
//!
//! Real: the senders, the collector binary (`varde-collector run`), the Kafka-protocol broker of
//! `deploy/dev/services.sh` (a topic of the test's own). Checked: after dropping repeats of an
//! event id (replays, which these runs should not have: the raw count is printed too), every
//! sent message is in the topic exactly once, identified by its sequence number, nothing else
//! is; and each carries the sender's host, app name, facility and severity (and loggen's
//! process id), parsed without `parse_error`, with the message text as sent. For UDP the collector's kernel-drop
//! counter must stay at zero.
//!
//! These tests found two gaps of the collector's parsing, since fixed: loggen's default
//! header, whose timestamp is ISO without a zone, was not parsed, and the BOM that RFC 5424
//! puts before a UTF-8 message stayed as the message's first character.
//!
//! The peers are not apt-installed (rsyslog and syslog-ng-core conflict as packages and would
//! start system services): `deploy/dev/peers.sh` unpacks Debian's packages into
//! `~/.cache/varde-peers` (or `$VARDE_PEERS_DIR`); `VARDE_LOGGEN` and `VARDE_RSYSLOGD` point
//! elsewhere. When a peer is missing the test fails and names that script.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use varde_core::{BatchReader, Envelope, EventId};
use varde_transport::Subscriber;
use varde_transport::events_topic;
use varde_transport::kafka::{KafkaSettings, KafkaSubscriber};

// ------------------------------------------------------------------ finding the peers ---

fn peers_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("VARDE_PEERS_DIR") {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".cache/varde-peers")
}

/// `$env`, else `<peers dir>/<default>`; fails naming `deploy/dev/peers.sh` when it is missing.
fn peer_binary(env: &str, default: &str, what: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| peers_dir().join(default));
    assert!(
        path.is_file(),
        "{what} not found at {} (set {env}, or VARDE_PEERS_DIR); install it with \
         `deploy/dev/peers.sh` (see DEVELOPERS.md)",
        path.display()
    );
    path
}

/// `<root>/usr` of a binary at `<root>/usr/{bin,sbin}/<name>`.
fn usr_of(bin: &Path) -> PathBuf {
    bin.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .expect("the peer binary lives in <root>/usr/bin or <root>/usr/sbin")
}

/// Runs `cmd` with output to `log`, killing it after [`PATIENCE`]; returns its exit and output.
fn run_bounded(mut cmd: Command, log: &Path, what: &str) -> (std::process::ExitStatus, String) {
    let file = std::fs::File::create(log).expect("log file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(file.try_clone().expect("log"))
        .stderr(file)
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let deadline = Instant::now() + PATIENCE;
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} still running after {PATIENCE:?}: {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, std::fs::read_to_string(log).unwrap_or_default())
}

/// syslog-ng's `loggen`, run from the root `deploy/dev/peers.sh` unpacked it into.
struct Loggen {
    bin: PathBuf,
    usr: PathBuf,
}

impl Loggen {
    fn find() -> Loggen {
        let bin = peer_binary(
            "VARDE_LOGGEN",
            "syslog-ng/usr/bin/loggen",
            "syslog-ng's loggen",
        );
        let usr = usr_of(&bin);
        Loggen { bin, usr }
    }

    /// Sends `n` messages to 127.0.0.1:`port`; asserts that loggen exited cleanly and reports
    /// having sent all `n`.
    fn send(&self, args: &[&str], n: usize, port: u16, log: &Path) {
        let mut cmd = Command::new(&self.bin);
        cmd.env("LD_LIBRARY_PATH", self.usr.join("lib/syslog-ng"))
            .env("SYSLOGNG_PREFIX", &self.usr)
            .args(args)
            // Without --interval, loggen stops after 10 s whatever --number says.
            .args(["--number", &n.to_string(), "--interval", "600"])
            .args(["127.0.0.1", &port.to_string()]);
        let started = Instant::now();
        let (status, out) = run_bounded(cmd, log, "loggen");
        assert!(status.success(), "loggen {args:?} failed ({status}): {out}");
        // Its summary line: "average rate = … msg/sec, count=N, time=…".
        // Progress lines before it have a `count=` too.
        let count = out
            .lines()
            .find(|l| l.starts_with("average rate"))
            .and_then(|l| l.split_once("count=")?.1.split(',').next()?.parse().ok());
        assert_eq!(count, Some(n), "loggen {args:?} sent fewer messages: {out}");
        eprintln!(
            "loggen {args:?}: {n} messages sent in {:.2?}",
            started.elapsed()
        );
    }
}

/// A running `rsyslogd -n` with a configuration of the test's own, killed when dropped.
struct Rsyslogd {
    child: Child,
    log: PathBuf,
}

impl Rsyslogd {
    /// Writes `<dir>/rsyslog.conf` (a private work directory, then `config`) and starts
    /// rsyslogd in the foreground with it, its own pid file and its own module directory.
    fn start(dir: &Path, config: &str) -> Rsyslogd {
        let bin = peer_binary("VARDE_RSYSLOGD", "rsyslog/usr/sbin/rsyslogd", "rsyslogd");
        let usr = usr_of(&bin);
        let modules = std::fs::read_dir(usr.join("lib"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.path().join("rsyslog"))
            .find(|p| p.join("imtcp.so").is_file())
            .unwrap_or_else(|| {
                panic!(
                    "no rsyslog module directory (…/rsyslog/imtcp.so) under {}; run \
                     `deploy/dev/peers.sh`",
                    usr.join("lib").display()
                )
            });
        let work = dir.join("rsyslog-work");
        std::fs::create_dir_all(&work).expect("rsyslog work directory");
        let conf = dir.join("rsyslog.conf");
        std::fs::write(
            &conf,
            format!("global(workDirectory=\"{}\")\n{config}\n", work.display()),
        )
        .expect("rsyslog.conf");
        // Check the configuration first: a mistake then fails with rsyslog's own words.
        let mut check = Command::new(&bin);
        check
            .arg("-N1")
            .arg("-f")
            .arg(&conf)
            .arg("-M")
            .arg(&modules);
        let (status, out) = run_bounded(check, &dir.join("rsyslog-check.log"), "rsyslogd -N1");
        assert!(
            status.success(),
            "rsyslogd refused its configuration: {out}"
        );
        let log = dir.join("rsyslogd.log");
        let file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(&bin)
            .arg("-n")
            .arg("-f")
            .arg(&conf)
            .arg("-i")
            .arg(dir.join("rsyslogd.pid"))
            .arg("-M")
            .arg(&modules)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .expect("start rsyslogd");
        Rsyslogd { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until rsyslogd accepts connections on `port`, failing with its log if it exits.
    fn wait_listening(&mut self, port: u16) {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        eventually(&format!("rsyslogd to listen on {addr}"), || {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("rsyslogd exited with {status}:\n{}", self.log_text());
            }
            TcpStream::connect_timeout(&addr, Duration::from_millis(200))
                .ok()
                .map(|_| ())
        });
    }

    /// SIGTERM, then wait (bounded) for it to exit.
    fn stop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        eventually("rsyslogd to stop", || self.child.try_wait().ok().flatten());
    }
}

impl Drop for Rsyslogd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------ reading what arrived ---

/// One syslog event as read back from Kafka, with the fields these tests check.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    id: EventId,
    host: Option<String>,
    severity: Option<u8>,
    /// Typed syslog columns that have a value, by name, as text (`app_name`, `proc_id`, …).
    typed: BTreeMap<&'static str, String>,
    message: String,
}

impl Row {
    fn typed(&self, name: &str) -> Option<&str> {
        self.typed.get(name).map(String::as_str)
    }
}

/// Reads a topic from its start, keeping every event.
struct Rows {
    sub: KafkaSubscriber,
    rt: tokio::runtime::Runtime,
    rows: Vec<Row>,
}

impl Rows {
    fn new(settings: &KafkaSettings, topic: &str) -> Rows {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let group = format!("{}peers-reader-{}", settings.topic_prefix, free_port());
        let sub = {
            let _guard = rt.enter();
            KafkaSubscriber::new(settings, &group, &[topic.to_owned()]).expect("subscribe")
        };
        Rows {
            sub,
            rt,
            rows: Vec::new(),
        }
    }

    /// Polls once (up to 200 ms); returns how many events came.
    fn poll(&mut self) -> usize {
        let Ok(msgs) = self
            .rt
            .block_on(self.sub.poll_batch(1000, Duration::from_millis(200)))
        else {
            return 0; // the broker busy for a moment: poll again
        };
        let before = self.rows.len();
        for m in msgs {
            let env = Envelope::decode(&m.payload).expect("a valid envelope");
            let reader = BatchReader::new(env.header.kind, &env.batch).expect("batch");
            for row in 0..reader.len() {
                self.rows.push(Row {
                    id: EventId::derive(
                        env.header.collector_id.as_str(),
                        env.header.batch_seq,
                        row as u32,
                    ),
                    host: reader.host(row).map(str::to_owned),
                    severity: reader.severity(row),
                    typed: reader.typed_fields(row).into_iter().collect(),
                    message: reader.message(row).unwrap_or_default().to_owned(),
                });
            }
        }
        self.rows.len() - before
    }

    /// Polls until `done` holds for the events so far.
    fn until(&mut self, what: &str, mut done: impl FnMut(&[Row]) -> bool) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            self.poll();
            if done(&self.rows) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {PATIENCE:?} waiting for {what}; {} events so far, the first: {:?}",
                self.rows.len(),
                self.rows.first()
            );
        }
    }

    /// Polls until nothing new came for `quiet`: late repeats would show up here.
    fn drain(&mut self, quiet: Duration) {
        let mut last = Instant::now();
        while last.elapsed() < quiet {
            if self.poll() > 0 {
                last = Instant::now();
            }
        }
    }

    /// One row per distinct event id; panics if one id carries two different events.
    fn distinct(&self) -> Vec<&Row> {
        let mut by_id: HashMap<EventId, &Row> = HashMap::new();
        for r in &self.rows {
            if let Some(prev) = by_id.insert(r.id, r) {
                assert_eq!(prev, r, "one event id, two events");
            }
        }
        by_id.into_values().collect()
    }
}

/// Asserts that, after dropping repeats of an event id, the events read are exactly one for each
/// key in `0..n` (`key` extracts it), and nothing else; returns them by key.
fn exactly_once(
    reader: &Rows,
    n: usize,
    key: impl Fn(&Row) -> Option<usize>,
) -> BTreeMap<usize, &Row> {
    let distinct = reader.distinct();
    eprintln!(
        "read {} events from Kafka: {} distinct event ids (repeats of an id are replays)",
        reader.rows.len(),
        distinct.len()
    );
    let mut by_key: BTreeMap<usize, Vec<&Row>> = BTreeMap::new();
    let mut strays = Vec::new();
    for r in distinct {
        match key(r) {
            Some(k) if k < n => by_key.entry(k).or_default().push(r),
            _ => strays.push(r),
        }
    }
    assert!(
        strays.is_empty(),
        "{} events that were not sent, e.g. {:?}",
        strays.len(),
        strays.first()
    );
    let missing: Vec<usize> = (0..n).filter(|k| !by_key.contains_key(k)).collect();
    assert!(
        missing.is_empty(),
        "{} of {n} messages missing, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    let twice: Vec<(&usize, &Vec<&Row>)> = by_key.iter().filter(|(_, v)| v.len() > 1).collect();
    assert!(
        twice.is_empty(),
        "{} messages arrived as more than one event, e.g. {:?}",
        twice.len(),
        twice.first()
    );
    by_key
        .into_iter()
        .map(|(k, mut v)| (k, v.remove(0)))
        .collect()
}

// ------------------------------------------------------------------- the collector ---

/// A collector with the given `[[sources]]`, its topic created, `/health` answering.
struct Setup {
    kafka: KafkaSettings,
    topic: String,
    dir: tempfile::TempDir,
    metrics: SocketAddr,
    collector: Collector,
}

fn setup(test: &str, tenant: &str, sources: &str) -> Setup {
    let kafka = dev_kafka(test);
    let kommune = varde_core::Kommunenummer::parse(tenant).expect("kommunenummer");
    let topic = events_topic(&kafka.topic_prefix, kommune);
    create_topic(&kafka, &topic);
    let dir = tempfile::tempdir().expect("tempdir");
    let metrics_port = free_port();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        config_text(
            &format!("k{tenant}-{test}"),
            tenant,
            &dir.path().join("state"),
            &kafka,
            metrics_port,
            &format!("[batch]\nmax_rows = 500\nmax_delay_ms = 20\n\n{sources}"),
        ),
    )
    .expect("config");
    let metrics = SocketAddr::from(([127, 0, 0, 1], metrics_port));
    let collector = Collector::start(&config, dir.path());
    eventually("the collector's /health", || {
        http_get(metrics, "/health").filter(|(c, _)| *c == 200)
    });
    Setup {
        kafka,
        topic,
        dir,
        metrics,
        collector,
    }
}

impl Setup {
    /// Reads the topic from its start until `done` holds for what arrived.
    fn read_until(&mut self, what: &str, done: impl FnMut(&[Row]) -> bool) -> Rows {
        let mut reader = Rows::new(&self.kafka, &self.topic);
        let started = Instant::now();
        reader.until(what, done);
        eprintln!(
            "{what}: all in Kafka {:.2?} after reading began",
            started.elapsed()
        );
        reader
    }

    /// Stops the collector cleanly, then reads until the topic is quiet (late repeats would
    /// show up there).
    fn stop_and_drain(&mut self, reader: &mut Rows) {
        self.collector.assert_running();
        self.collector.terminate();
        reader.drain(Duration::from_secs(2));
    }
}

// --------------------------------------------------------------------------- loggen ---

/// loggen's sequence number: `… seq: 0000000042, thread: …`.
fn loggen_seq(r: &Row) -> Option<usize> {
    r.message
        .split_once("seq: ")?
        .1
        .split(',')
        .next()?
        .parse()
        .ok()
}

fn count_loggen(rows: &[Row]) -> usize {
    rows.iter()
        .filter_map(loggen_seq)
        .collect::<std::collections::HashSet<_>>()
        .len()
}

/// The header loggen puts on its messages.
#[derive(Clone, Copy, Debug)]
enum LoggenForm {
    /// Its default: `<38>2026-12-01T21:39:39 localhost prg00000[1234]: seq: …`, a BSD-style
    /// header with an ISO timestamp without a zone.
    Bsd,
    /// `--syslog-proto`: `<38>1 2026-12-01T21:39:41+00:00 localhost prg00000 1234 - - \u{feff}seq: …`.
    Rfc5424,
}

/// What loggen sends: `<38>` (auth.info), host `localhost`, program `prg00000`, pid 1234, and
/// a text `seq: <10 digits>, thread: 0000, runid: <per run>, stamp: <time> PADD…`.
fn check_loggen_rows(rows: &BTreeMap<usize, &Row>, form: LoggenForm) {
    let runids: std::collections::HashSet<&str> = rows
        .values()
        .filter_map(|r| r.message.split_once("runid: ")?.1.split(',').next())
        .collect();
    assert_eq!(runids.len(), 1, "one loggen run: {runids:?}");
    for (seq, r) in rows {
        let context = || format!("loggen message {seq} ({form:?}): {r:?}");
        let text = format!("seq: {seq:010}, thread: 0000, runid: ");
        // Both forms parse: loggen's default header has an ISO timestamp without a zone
        // (taken as local time), and the RFC 5424 form's BOM before MSG is not text.
        assert_eq!(r.typed("parse_error"), Some("false"), "{}", context());
        assert_eq!(r.host.as_deref(), Some("localhost"), "{}", context());
        assert_eq!(r.typed("app_name"), Some("prg00000"), "{}", context());
        assert_eq!(r.typed("proc_id"), Some("1234"), "{}", context());
        assert_eq!(r.typed("facility"), Some("4"), "{}", context());
        assert_eq!(r.severity, Some(6), "{}", context());
        assert!(r.message.starts_with(&text), "{}", context());
        assert!(r.message.contains(", stamp: "), "{}", context());
    }
}

fn loggen_over_tcp(test: &str, tenant: &str, form: LoggenForm, args: &[&str], n: usize) {
    let loggen = Loggen::find();
    let tcp = free_port();
    let mut s = setup(
        test,
        tenant,
        &format!("[[sources]]\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{tcp}\"\n"),
    );
    let log = s.dir.path().join("loggen.log");
    loggen.send(args, n, tcp, &log);
    let mut reader = s.read_until(&format!("{n} messages from loggen {args:?}"), |rows| {
        count_loggen(rows) >= n
    });
    s.stop_and_drain(&mut reader);
    let rows = exactly_once(&reader, n, loggen_seq);
    check_loggen_rows(&rows, form);
}

#[test]
fn loggen_over_tcp_newline_framed_arrives_exactly_once() {
    // loggen's default: `<38>2026-12-01T21:28:18 localhost prg00000[1234]: seq: …` + LF.
    loggen_over_tcp(
        "loggen-tcp",
        "0301",
        LoggenForm::Bsd,
        &["--inet", "--stream", "--rate", "100000"],
        10_000,
    );
}

#[test]
fn loggen_rfc5424_octet_counted_over_tcp_arrives_exactly_once() {
    // `--syslog-proto`: `<len> <38>1 2026-…+00:00 localhost prg00000 1234 - - \u{feff}seq: …`
    // (RFC 5424 with a BOM before the message, each frame counted, LF inside the count).
    loggen_over_tcp(
        "loggen-5424",
        "4601",
        LoggenForm::Rfc5424,
        &["--inet", "--stream", "--syslog-proto", "--rate", "100000"],
        10_000,
    );
}

#[test]
fn loggen_over_udp_at_a_modest_rate_arrives_exactly_once() {
    let loggen = Loggen::find();
    let n = 2_000;
    let udp = free_port();
    let mut s = setup(
        "loggen-udp",
        "5001",
        &format!(
            "[[sources]]\ntype = \"syslog_udp\"\nlisten = \"127.0.0.1:{udp}\"\n\
             receive_buffer_bytes = 4194304\n"
        ),
    );
    let log = s.dir.path().join("loggen.log");
    // 1,000 datagrams a second: far below what the collector reads, so the kernel drops none.
    loggen.send(&["--inet", "--dgram", "--rate", "1000"], n, udp, &log);
    let drops_metric = format!(
        "varde_collector_source_receive_buffer_drops_total{{source=\"syslog_udp:127.0.0.1:{udp}\"}}"
    );
    let metrics = s.metrics;
    let drops = || {
        http_get(metrics, "/metrics")
            .and_then(|(_, page)| metric(&page, &drops_metric))
            .unwrap_or(0.0) as usize
    };
    // Stops early when datagrams were dropped, so the assertion below says so.
    let mut reader = s.read_until(&format!("{n} datagrams from loggen"), |rows| {
        count_loggen(rows) >= n || count_loggen(rows) + drops() >= n
    });
    assert_eq!(
        drops(),
        0,
        "the kernel dropped datagrams (the collector's counter); {} of {n} arrived",
        count_loggen(&reader.rows)
    );
    s.stop_and_drain(&mut reader);
    let rows = exactly_once(&reader, n, loggen_seq);
    // Datagrams carry loggen's default header, as over TCP.
    check_loggen_rows(&rows, LoggenForm::Bsd);
}

// -------------------------------------------------------------------------- rsyslog ---

fn logger_to(port: u16, tag: &str, file: &Path) {
    let out = Command::new("logger")
        .args(["--tcp", "-n", "127.0.0.1", "-P", &port.to_string()])
        .args(["-t", tag, "-f"])
        .arg(file)
        .output()
        .expect("run logger (util-linux)");
    assert!(
        out.status.success(),
        "logger failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `<label> 0042` → 42.
fn labelled(label: &'static str) -> impl Fn(&Row) -> Option<usize> {
    move |r: &Row| {
        let digits = r.message.strip_prefix(label)?.strip_prefix(' ')?;
        (digits.len() == 4).then_some(())?;
        digits.parse().ok()
    }
}

#[test]
fn rsyslog_forwarding_octet_counted_and_lf_framed_arrives_exactly_once() {
    let n = 2_000;
    let collector_tcp = free_port();
    let mut s = setup(
        "rsyslog",
        "1103",
        &format!("[[sources]]\ntype = \"syslog_tcp\"\nlisten = \"127.0.0.1:{collector_tcp}\"\n"),
    );
    let (in_octet, in_lf) = (free_port(), free_port());
    // One input per framing, each with its own ruleset, so rsyslog's own messages (start,
    // stop) go nowhere near the collector.
    let mut rsyslog = Rsyslogd::start(
        s.dir.path(),
        &format!(
            "module(load=\"imtcp\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{in_octet}\" ruleset=\"octet\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{in_lf}\" ruleset=\"lf\")\n\
             ruleset(name=\"octet\") {{\n  action(type=\"omfwd\" target=\"127.0.0.1\" \
             port=\"{collector_tcp}\" protocol=\"tcp\" TCP_Framing=\"octet-counted\" \
             template=\"RSYSLOG_SyslogProtocol23Format\")\n}}\n\
             ruleset(name=\"lf\") {{\n  action(type=\"omfwd\" target=\"127.0.0.1\" \
             port=\"{collector_tcp}\" protocol=\"tcp\")\n}}\n"
        ),
    );
    rsyslog.wait_listening(in_octet);
    rsyslog.wait_listening(in_lf);

    let file = s.dir.path().join("lines.txt");
    let started = Instant::now();
    let text: String = (0..n).map(|i| format!("via-octet {i:04}\n")).collect();
    std::fs::write(&file, text).expect("write");
    logger_to(in_octet, "octetapp", &file);
    let text: String = (0..n).map(|i| format!("via-lf {i:04}\n")).collect();
    std::fs::write(&file, text).expect("write");
    logger_to(in_lf, "lfapp", &file);
    eprintln!(
        "logger: {} lines to rsyslog in {:.2?}",
        2 * n,
        started.elapsed()
    );

    let octet = labelled("via-octet");
    let lf = labelled("via-lf");
    let count = |rows: &[Row], key: &dyn Fn(&Row) -> Option<usize>| {
        rows.iter()
            .filter_map(key)
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let mut reader = s.read_until(&format!("{n} + {n} lines forwarded by rsyslog"), |rows| {
        count(rows, &octet) >= n && count(rows, &lf) >= n
    });
    rsyslog.stop();
    s.stop_and_drain(&mut reader);

    // logger names the machine as the host (rsyslog keeps the host a message brings).
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .expect("the machine's hostname")
        .trim()
        .to_owned();
    let sent_by = |r: &Row| octet(r).or_else(|| lf(r).map(|k| k + n));
    let rows = exactly_once(&reader, 2 * n, sent_by);
    for (k, r) in &rows {
        let (label, app, i) = if *k < n {
            ("via-octet", "octetapp", *k)
        } else {
            ("via-lf", "lfapp", *k - n)
        };
        let context = || format!("{label} {i:04}: {r:?}");
        assert_eq!(r.message, format!("{label} {i:04}"), "{}", context());
        assert_eq!(r.host.as_deref(), Some(host.as_str()), "{}", context());
        assert_eq!(r.typed("app_name"), Some(app), "{}", context());
        // logger's default priority: user.notice.
        assert_eq!(r.typed("facility"), Some("1"), "{}", context());
        assert_eq!(r.severity, Some(5), "{}", context());
        assert_eq!(r.typed("parse_error"), Some("false"), "{}", context());
    }
}

// ----------------------------------------------------------------------------- RELP ---

/// rsyslog forwards over RELP (`omrelp`, acknowledged per message) to the collector's `relp`
/// source; the collector is killed with `-9` mid-stream and rsyslog keeps queueing while it is
/// down. What the collector acknowledged it had journalled; what it had not, rsyslog sends
/// again: every line arrives, and none under two event ids.
#[test]
fn rsyslog_over_relp_loses_nothing_when_the_collector_is_killed() {
    let n = 6_000;
    let relp = free_port();
    let mut s = setup(
        "relp",
        "1103",
        &format!("[[sources]]\ntype = \"relp\"\nlisten = \"127.0.0.1:{relp}\"\n"),
    );
    let input = free_port();
    let mut rsyslog = Rsyslogd::start(
        s.dir.path(),
        &format!(
            "module(load=\"imtcp\")\nmodule(load=\"omrelp\")\n\
             input(type=\"imtcp\" address=\"127.0.0.1\" port=\"{input}\" ruleset=\"relp\")\n\
             ruleset(name=\"relp\") {{\n  action(type=\"omrelp\" target=\"127.0.0.1\" \
             port=\"{relp}\" queue.type=\"LinkedList\" queue.size=\"100000\" \
             action.resumeRetryCount=\"-1\" action.resumeInterval=\"1\")\n}}\n"
        ),
    );
    rsyslog.wait_listening(input);
    let relp_lines = labelled("via-relp");
    let count = |rows: &[Row]| {
        rows.iter()
            .filter_map(&relp_lines)
            .collect::<std::collections::HashSet<_>>()
            .len()
    };
    let send = |range: std::ops::Range<usize>| {
        let file = s.dir.path().join(format!("relp-{}.txt", range.start));
        let text: String = range.map(|i| format!("via-relp {i:04}\n")).collect();
        std::fs::write(&file, text).expect("write");
        logger_to(input, "relpapp", &file);
    };
    send(0..n / 3);
    let mut reader = Rows::new(&s.kafka, &s.topic);
    reader.until("a first part over RELP", |rows| count(rows) >= n / 6);
    s.collector.assert_running();
    s.collector.kill_9();
    // While the collector is down rsyslog keeps what it cannot deliver.
    send(n / 3..2 * n / 3);
    s.collector = Collector::start(&s.dir.path().join("collector.toml"), s.dir.path());
    send(2 * n / 3..n);
    reader.until(&format!("all {n} lines over RELP"), |rows| count(rows) >= n);
    rsyslog.stop();
    s.stop_and_drain(&mut reader);
    let rows = exactly_once(&reader, n, labelled("via-relp"));
    for r in rows.values() {
        assert_eq!(r.typed("app_name"), Some("relpapp"));
    }
}
