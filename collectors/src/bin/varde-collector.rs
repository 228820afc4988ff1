//! `varde-collector`: the collector binary.
//!
//! ```text
//! varde-collector check-config <file>          validate a configuration file
//! varde-collector run --config <file>          run the configured sources until SIGINT/SIGTERM
//! varde-collector send --config <file> <log>…  ship files of syslog lines once, then exit
//! varde-collector pcap <file.pcap|.pcapng>      print the flows of a capture file (no service)
//! ```
//!
//! Both `run` and `send` go through the disk spool (`<state_dir>/spool`): a batch is deleted
//! only once Kafka acknowledged it, and a restart sends what is left first.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};
use varde_collector::config::{CollectorConfig, SourceConfig};
use varde_collector::import;
use varde_collector::journal::{self, Journal};
use varde_collector::metrics::{self, MetricsState};
use varde_collector::privacy::Privacy;
use varde_collector::relp;
use varde_collector::shipper::{
    self, Input, SenderSettings, SequenceSource, Shipper, ShipperSettings, SpoolSink, Stats,
    input_channel_capacity, send_from_spool,
};
use varde_collector::sources::{self, FileStart, SourceContext, SourceCounters};
use varde_collector::spool::{FsyncPolicy, Spool, SpoolHandle, SpoolStats};
use varde_transport::events_topic;
use varde_transport::kafka::KafkaPublisher;

#[derive(Parser)]
#[command(
    name = "varde-collector",
    version,
    about = "Varde's log collector for a municipal network"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a configuration file and print what it would run.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
    },
    /// Run the configured sources until interrupted.
    Run {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Ship files of syslog lines once, wait until the broker has acknowledged every batch,
    /// print a JSON summary and exit.
    Send {
        /// The configuration file (its sources are not started).
        #[arg(long)]
        config: PathBuf,
        /// Files to ship once: files of lines (syslog, access logs, JSON lines, …), each line
        /// through the edge; `.evtx` Windows event logs and `.json` files of concatenated
        /// documents, each record as an event (pseudonymised like every line); `.pcap` and
        /// `.pcapng` captures (told by their first bytes), each flow as a `flow` event.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Print the network flows of a `.pcap` or `.pcapng` file, one per line, and a summary;
    /// needs no configuration and no service.
    Pcap {
        /// The capture file.
        file: PathBuf,
        /// `jsonl`: one JSON object per flow on stdout, the summary as JSON on stderr;
        /// `table`: aligned columns and a summary line, all on stdout.
        #[arg(long, value_enum, default_value = "jsonl")]
        format: PcapFormat,
        /// More shared components (the registry's TOML format) besides the built-in ones.
        #[arg(long)]
        components: Option<PathBuf>,
        /// Seconds without a packet after which a flow ends.
        #[arg(long, default_value_t = 300)]
        idle_timeout: u64,
        /// Seconds after which a long flow is reported and starts again.
        #[arg(long, default_value_t = 1800)]
        active_timeout: u64,
    },
    /// The collector's signing key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Enrol this machine with the CERT: make the collector's key here, register its public
    /// half with the token the CERT gave, and write a working configuration. A used, expired
    /// or tampered token changes nothing.
    Enrol {
        /// The enrolment token (`varde-enrol-1.…`).
        token: String,
        /// The configuration file to write (an existing one is kept as `<file>.before-enrol`).
        #[arg(long, default_value = "/etc/varde/collector.toml")]
        config: PathBuf,
        /// The state directory (key, privacy key, spool).
        #[arg(long, default_value = "/var/lib/varde-collector")]
        state_dir: PathBuf,
        /// After enrolling, `systemctl restart varde-collector` (the default when run as root
        /// on a machine with systemd); `--start=false` to only write the files.
        #[arg(long)]
        start: Option<bool>,
    },
    /// Replace this collector's key: the CERT takes the new key signed with the current one,
    /// which stays valid for the CERT's overlap. Restart the collector afterwards.
    RotateKey {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
        /// The CERT's enrolment URL (`https://…`), as in the token.
        #[arg(long)]
        url: String,
        /// SHA-256 of the CERT's certificate, as in the token (64 hex digits).
        #[arg(long)]
        pin: String,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Make this collector's Ed25519 key (at `[identity] key_file`, mode 0600) and print its
    /// public half for the CERT; refuses when a key is there already. `enrol` does this itself.
    New {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
    /// Print the public key and key id of this collector's key.
    Show {
        /// The configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum PcapFormat {
    Jsonl,
    Table,
}

fn main() -> Result<()> {
    // Before any thread exists (see the module).
    let allocator = varde_collector::memory::tune_allocator();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VARDE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    tracing::debug!(%allocator, "allocator settings");
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { config } => runtime()?.block_on(run(CollectorConfig::load(&config)?)),
        Command::Send { config, files } => {
            runtime()?.block_on(send(CollectorConfig::load(&config)?, files))
        }
        Command::Pcap {
            file,
            format,
            components,
            idle_timeout,
            active_timeout,
        } => pcap(
            &file,
            format,
            components.as_deref(),
            idle_timeout,
            active_timeout,
        ),
        Command::Key(KeyCommand::New { config }) => {
            let config = CollectorConfig::load(&config)?;
            let path = config.identity.key_path(&config.state_dir);
            let key = varde_collector::identity::create_key(&path)?;
            print_key(&config, &path, &key);
            Ok(())
        }
        Command::Enrol {
            token,
            config,
            state_dir,
            start,
        } => runtime()?.block_on(enrol(&token, config, state_dir, start)),
        Command::RotateKey { config, url, pin } => runtime()?.block_on(async {
            let config = CollectorConfig::load(&config)?;
            let r = varde_collector::enrol::rotate_key(&config, &url, &pin).await?;
            println!(
                "new key {} in use from the next start; the old key is valid until {}",
                r.key_id,
                varde_core::time::format_rfc3339(r.old_key_expires_us)
            );
            println!("restart the collector now: systemctl restart varde-collector");
            Ok(())
        }),
        Command::Key(KeyCommand::Show { config }) => {
            let config = CollectorConfig::load(&config)?;
            let path = config.identity.key_path(&config.state_dir);
            let key = varde_collector::identity::load_key(&path)?;
            print_key(&config, &path, &key);
            Ok(())
        }
    }
}

async fn enrol(
    token: &str,
    config: PathBuf,
    state_dir: PathBuf,
    start: Option<bool>,
) -> Result<()> {
    let hostname = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let paths = varde_collector::enrol::EnrolPaths { config, state_dir };
    let done =
        varde_collector::enrol::enrol(token, &paths, &hostname, varde_collector::sources::now_us())
            .await?;
    let r = &done.response;
    println!(
        "enrolled: collector {} of {} {} ({:?}), key {}",
        r.collector_id,
        r.tenant,
        r.tenant.name(),
        r.name,
        done.key_id
    );
    println!(
        "key file:      {} (mode 0600, never leaves this machine)",
        done.key_file.display()
    );
    println!("configuration: {}", done.config.display());
    println!("sends to:      {} topic {}", r.brokers, r.topic);
    own_files(&paths.state_dir);
    let systemd = std::path::Path::new("/run/systemd/system").exists();
    let root = nix::unistd::geteuid().is_root();
    if start.unwrap_or(systemd && root) {
        let status = std::process::Command::new("systemctl")
            .args(["restart", "varde-collector"])
            .status()
            .context("running systemctl")?;
        anyhow::ensure!(
            status.success(),
            "systemctl restart varde-collector: {status}"
        );
        println!("started: systemctl status varde-collector");
    } else {
        println!(
            "start it with: varde-collector run --config {}",
            done.config.display()
        );
    }
    Ok(())
}

/// Run as root by the package's user: hand the state directory and the keys to the service user
/// `varde-collector` when it exists, so the service can read them and nobody else can.
fn own_files(state_dir: &std::path::Path) {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let Ok(Some(user)) = nix::unistd::User::from_name("varde-collector") else {
        return;
    };
    for path in [
        state_dir.to_owned(),
        state_dir.join("collector.key"),
        state_dir.join("privacy.key"),
    ] {
        if let Err(e) =
            std::os::unix::fs::chown(&path, Some(user.uid.as_raw()), Some(user.gid.as_raw()))
        {
            eprintln!(
                "warning: could not give {} to varde-collector: {e}",
                path.display()
            );
        }
    }
}

fn print_key(config: &CollectorConfig, path: &std::path::Path, key: &varde_core::CollectorKey) {
    println!("collector  {}", config.collector_id);
    println!("tenant     {}", config.tenant);
    println!("key file   {}", path.display());
    println!("key id     {}", key.key_id());
    println!("public key {}", key.public_key());
}

fn pcap(
    file: &std::path::Path,
    format: PcapFormat,
    components: Option<&std::path::Path>,
    idle_timeout_s: u64,
    active_timeout_s: u64,
) -> Result<()> {
    use std::io::Write;
    use varde_collector::flow::{Attribution, format_us, pcap::read_file, table::FlowSettings};
    let mut registry = varde_core::ComponentRegistry::builtin();
    if let Some(path) = components {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        registry
            .extend_from_toml(&text)
            .with_context(|| format!("{}", path.display()))?;
    }
    let settings = FlowSettings {
        idle_timeout_s,
        active_timeout_s,
        ..FlowSettings::default()
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut failed: Option<std::io::Error> = None;
    if matches!(format, PcapFormat::Table) {
        writeln!(
            out,
            "{:<27} {:>10} {:<5} {:>41} {:>41} {:>8} {:>10} {:>8} {:>10}  component",
            "first seen (UTC)",
            "duration",
            "proto",
            "src",
            "dst",
            "out pkts",
            "out bytes",
            "in pkts",
            "in bytes"
        )?;
    }
    let mut attribution = Attribution::new(registry);
    let summary = read_file(file, settings, |mut f| {
        attribution.attribute(&mut f);
        if failed.is_some() {
            return;
        }
        let written = match format {
            PcapFormat::Jsonl => serde_json::to_writer(&mut out, &f)
                .map_err(std::io::Error::other)
                .and_then(|()| out.write_all(b"\n")),
            PcapFormat::Table => {
                let proto = match f.protocol {
                    6 => "TCP".to_owned(),
                    17 => "UDP".to_owned(),
                    1 => "ICMP".to_owned(),
                    58 => "ICMP6".to_owned(),
                    n => n.to_string(),
                };
                let end = |ip: std::net::IpAddr, port: u16| match ip {
                    std::net::IpAddr::V4(_) => format!("{ip}:{port}"),
                    std::net::IpAddr::V6(_) => format!("[{ip}]:{port}"),
                };
                writeln!(
                    out,
                    "{:<27} {:>10.3} {:<5} {:>41} {:>41} {:>8} {:>10} {:>8} {:>10}  {}",
                    format_us(f.first_us),
                    (f.last_us - f.first_us) as f64 / 1e6,
                    proto,
                    end(f.src_ip, f.src_port),
                    end(f.dst_ip, f.dst_port),
                    f.packets_out,
                    f.bytes_out,
                    f.packets_in,
                    f.bytes_in,
                    f.component.as_deref().unwrap_or("-")
                )
            }
        };
        if let Err(e) = written {
            failed = Some(e);
        }
    })?;
    if let Some(e) = failed {
        // A closed pipe (`| head`) ends the listing quietly; anything else is an error.
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            return Ok(());
        }
        return Err(e).context("writing the flows");
    }
    let malformed: u64 = summary.malformed.values().sum();
    match format {
        PcapFormat::Jsonl => {
            out.flush()?;
            eprintln!("{}", serde_json::json!({ "summary": summary }));
        }
        PcapFormat::Table => {
            writeln!(
                out,
                "Summary: {} flows, {} packets, {} IP bytes; {} frames, {} not IP, {} malformed, {} flows evicted",
                summary.table.flows,
                summary.packets,
                summary.bytes,
                summary.frames,
                summary.not_ip,
                malformed,
                summary.table.evicted
            )?;
            out.flush()?;
        }
    }
    if let Some(stopped) = &summary.stopped {
        anyhow::bail!(
            "{}: damaged or cut short; the flows above are those of the frames before: {stopped}",
            file.display()
        );
    }
    Ok(())
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    // Two worker threads are plenty for a collector on a 1–2 vCPU VM.
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

fn check_config(file: &std::path::Path) -> Result<()> {
    let config = CollectorConfig::load(file)?;
    config
        .flows
        .registry()
        .map_err(|e| anyhow::anyhow!("[flows] components: {e}"))?;
    for source in &config.sources {
        if let SourceConfig::SyslogTls {
            cert,
            key,
            client_ca,
            ..
        } = source
        {
            sources::tls_acceptor(cert, key, client_ca.as_deref())
                .map_err(|e| anyhow::anyhow!("{}: {}: {e}", file.display(), source.label()))?;
        }
    }
    let key_path = config.identity.key_path(&config.state_dir);
    let key = match varde_collector::identity::load_key(&key_path) {
        Ok(key) => format!("key {}", key.key_id()),
        Err(e) => format!("NOT READY: {e}"),
    };
    println!("{}: signing: {key}", file.display());
    let spool = config.spool_config();
    println!(
        "{}: ok: collector {} for {} {} -> {} (topic {}events.{}), {} source(s), spool {} (max {} bytes, when full: {:?})",
        file.display(),
        config.collector_id,
        config.tenant,
        config.tenant.name(),
        config.kafka.brokers,
        config.kafka.topic_prefix,
        config.tenant,
        config.sources.len(),
        spool
            .dir
            .as_deref()
            .unwrap_or(std::path::Path::new("?"))
            .display(),
        spool.max_bytes,
        spool.when_full,
    );
    Ok(())
}

/// The shipper, the spool and the sender of a running collector.
struct Running {
    tx: mpsc::Sender<Input>,
    stats: Arc<Stats>,
    spool: SpoolHandle,
    shipper: tokio::task::JoinHandle<()>,
    sender: tokio::task::JoinHandle<()>,
    stop_sender: watch::Sender<bool>,
    fsync_timer: Option<tokio::task::JoinHandle<()>>,
}

fn start_shipper(config: &CollectorConfig, sequence: SequenceSource) -> Result<Running> {
    let key_path = config.identity.key_path(&config.state_dir);
    let key = varde_collector::identity::load_key(&key_path)?;
    let publisher = KafkaPublisher::new(
        &config.kafka,
        config.collector_id.as_str(),
        Duration::from_millis(config.batch.publish_timeout_ms),
    )
    .context("creating the Kafka producer")?;
    let spool_config = config.spool_config();
    let spool = Spool::open(spool_config.clone(), Arc::new(SpoolStats::default()))
        .context("opening the spool")?;
    let spool = SpoolHandle::new(spool);
    let stats = Arc::new(Stats::default());
    let shipper = Shipper::with_sink(
        SpoolSink::new(spool.clone()),
        ShipperSettings {
            collector_id: config.collector_id.clone(),
            tenant: config.tenant,
            topic_prefix: config.kafka.topic_prefix.clone(),
            max_rows: config.batch.max_rows,
            max_delay: Duration::from_millis(config.batch.max_delay_ms),
            key: Arc::new(key),
        },
        sequence,
        stats.clone(),
    );
    let (tx, rx) = mpsc::channel(input_channel_capacity(config.batch.max_rows));
    let shipper = tokio::spawn(shipper.run(rx));
    let (stop_sender, stop) = watch::channel(false);
    let sender = tokio::spawn(send_from_spool(
        spool.clone(),
        publisher,
        SenderSettings {
            topic: events_topic(&config.kafka.topic_prefix, config.tenant),
            key: config.collector_id.as_str().as_bytes().to_vec(),
            max_in_flight: config.batch.max_in_flight,
        },
        stats.clone(),
        stop,
    ));
    let fsync_timer = (spool_config.fsync == FsyncPolicy::Interval).then(|| {
        let spool = spool.clone();
        let every = Duration::from_millis(spool_config.fsync_interval_ms);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(e) = spool.sync().await {
                    tracing::error!(error = %e, "spool fsync failed");
                }
            }
        })
    });
    Ok(Running {
        tx,
        stats,
        spool,
        shipper,
        sender,
        stop_sender,
        fsync_timer,
    })
}

impl Running {
    /// Closes the batcher, keeps publishing for up to `drain` (forever if `None`), then stops
    /// the sender. Unsent records stay in the spool.
    async fn finish(self, drain: Option<Duration>) -> Result<Arc<Stats>> {
        drop(self.tx);
        self.shipper.await.context("shipper task")?;
        shipper::drain(&self.spool, drain).await;
        let _ = self.stop_sender.send(true);
        self.sender.await.context("sender task")?;
        if let Some(t) = self.fsync_timer {
            t.abort();
        }
        if let Err(e) = self.spool.sync().await {
            tracing::error!(error = %e, "spool fsync failed");
        }
        Ok(self.stats)
    }
}

fn summary(stats: &Stats, spool: &SpoolStats) -> String {
    let g = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    format!(
        "{{\"events_in\":{},\"events_out\":{},\"batches_out\":{},\"bytes_out\":{},\"parse_errors\":{},\"events_rejected\":{},\"publish_errors\":{},\"events_spooled\":{},\"spool_records\":{},\"spool_dropped_events\":{},\"spool_corrupt_tails\":{}}}",
        g(&stats.events_in),
        g(&stats.events_out),
        g(&stats.batches_out),
        g(&stats.bytes_out),
        g(&stats.parse_errors),
        g(&stats.events_rejected),
        g(&stats.publish_errors),
        g(&stats.events_spooled),
        g(&spool.depth_records),
        g(&spool.dropped_events),
        g(&spool.corrupt_tails),
    )
}

async fn send(config: CollectorConfig, files: Vec<PathBuf>) -> Result<()> {
    let sequence = SequenceSource::open(&config.state_dir)
        .with_context(|| format!("opening state in {}", config.state_dir.display()))?;
    let privacy = load_privacy(&config)?;
    let json = Arc::new(config.json.clone());
    let running = start_shipper(&config, sequence)?;
    let spool_stats = running.spool.stats().clone();
    for file in &files {
        let ext = file.extension().and_then(|e| e.to_str());
        if varde_collector::flow::pcap::is_capture(file) {
            let summary = ship_capture(file, &config, &running.tx, &privacy).await?;
            info!(file = %file.display(), flows = summary.table.flows, packets = summary.packets,
                frames = summary.frames, not_ip = summary.not_ip,
                malformed = summary.malformed.values().sum::<u64>(), "capture file read");
            if let Some(stopped) = summary.stopped {
                warn!(file = %file.display(), %stopped, "capture file damaged or cut short; its flows up to there are shipped");
            }
            continue;
        }
        if ext == Some("json") {
            // Concatenated JSON documents, each through the edge as a JSON line would go.
            let read = sources::read_documents(file, &running.tx, &running.stats, &privacy, &json)
                .await
                .with_context(|| format!("importing {}", file.display()))?;
            if read.shipper_gone {
                anyhow::bail!("the shipper stopped while importing {}", file.display());
            }
            info!(file = %file.display(), documents = read.documents, "file imported");
            continue;
        }
        if ext == Some("evtx") {
            // Windows event logs: whole records, not lines.
            let imported = import::read_events(file, sources::now_us(), &json)
                .with_context(|| format!("importing {}", file.display()))?;
            for (i, why) in &imported.skipped {
                warn!(file = %file.display(), record = i, reason = %why, "record skipped");
            }
            let mut pseudonymised = 0;
            let events = imported.events.len();
            for (_, kind, mut event) in imported.events {
                let counts = privacy.scrub_event(&mut event);
                pseudonymised += counts.national_ids + counts.ip_addresses;
                if running.tx.send(Input::Event(kind, event)).await.is_err() {
                    anyhow::bail!("the shipper stopped while importing {}", file.display());
                }
            }
            info!(file = %file.display(), events, skipped = imported.skipped.len(), pseudonymised, "file imported");
            continue;
        }
        let lines = sources::read_file(file, &running.tx, &running.stats, &privacy, &json)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        info!(file = %file.display(), lines, "file read");
    }
    // `send` waits until the broker has every batch.
    let stats = running.finish(None).await?;
    println!("{}", summary(&stats, &spool_stats));
    Ok(())
}

/// Ships the flows of a capture file as `flow` events (attributed to components on the real
/// addresses, then pseudonymised by the privacy policy like every event).
async fn ship_capture(
    file: &std::path::Path,
    config: &CollectorConfig,
    tx: &mpsc::Sender<Input>,
    privacy: &Privacy,
) -> Result<varde_collector::flow::pcap::FileSummary> {
    use varde_collector::flow::{Attribution, pcap::read_file};
    let registry = config
        .flows
        .registry()
        .map_err(|e| anyhow::anyhow!("[flows] components: {e}"))?;
    let (file, tx, privacy, settings) = (
        file.to_owned(),
        tx.clone(),
        privacy.clone(),
        config.flows.table(),
    );
    tokio::task::spawn_blocking(move || {
        let mut attribution = Attribution::new(registry);
        let mut shipper_gone = false;
        let summary = read_file(&file, settings, |flow| {
            if shipper_gone {
                return;
            }
            let input = varde_collector::flow::shipper_input(flow, &mut attribution, &privacy);
            shipper_gone = tx.blocking_send(input).is_err();
        })?;
        if shipper_gone {
            anyhow::bail!("the shipper stopped while reading {}", file.display());
        }
        Ok(summary)
    })
    .await
    .context("the capture reader panicked")?
}

/// How often the journals are `fsync`ed: the spool's policy (`batch`: as often as a batch may
/// wait; `interval`: its interval; `never`: not at all).
fn journal_sync_every(config: &CollectorConfig) -> Option<Duration> {
    let spool = config.spool_config();
    match spool.fsync {
        FsyncPolicy::Batch => Some(Duration::from_millis(config.batch.max_delay_ms.max(10))),
        FsyncPolicy::Interval => Some(Duration::from_millis(spool.fsync_interval_ms.max(10))),
        FsyncPolicy::Never => None,
    }
}

/// Keeps the network sources' journals: `fsync`s them every `sync_every` (and at shutdown), and
/// retires the segments whose lines are all in the spool (the spool's checkpoint of the journal
/// is past them) four times a second, so that at full speed a retired segment is there to be
/// written again before a new one is needed.
async fn keep_journals(
    journals: Vec<Arc<Journal>>,
    spool: SpoolHandle,
    sync_every: Option<Duration>,
    mut shutdown: watch::Receiver<bool>,
) {
    let trim_every = Duration::from_millis(250);
    let tick = sync_every.unwrap_or(trim_every).min(trim_every);
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_sync = std::time::Instant::now();
    let mut last_trim = std::time::Instant::now();
    loop {
        let stopping = tokio::select! {
            _ = interval.tick() => false,
            _ = shutdown.changed() => true,
        };
        if stopping || sync_every.is_some_and(|every| last_sync.elapsed() >= every) {
            last_sync = std::time::Instant::now();
            for j in &journals {
                if let Err(e) = j.sync() {
                    tracing::error!(error = %e, journal = j.key(), "journal fsync failed");
                }
            }
        }
        if stopping || last_trim.elapsed() >= trim_every {
            last_trim = std::time::Instant::now();
            let spooled = spool.lock().checkpoints().clone();
            for j in &journals {
                if let Some((id, upto)) = spooled.get(j.key())
                    && *id == j.id()
                    && let Err(e) = j.trim(*upto)
                {
                    tracing::warn!(error = %e, journal = j.key(), "journal segments could not be retired");
                }
            }
        }
        if stopping {
            return;
        }
    }
}

/// The municipality's pseudonymisation, its key loaded (or created, mode 0600) once at start.
fn load_privacy(config: &CollectorConfig) -> Result<Privacy> {
    Privacy::from_config(&config.privacy, &config.state_dir).with_context(|| {
        format!(
            "pseudonymisation key {}",
            config.privacy.key_path(&config.state_dir).display()
        )
    })
}

async fn run(config: CollectorConfig) -> Result<()> {
    let sequence = SequenceSource::open(&config.state_dir)
        .with_context(|| format!("opening state in {}", config.state_dir.display()))?;
    let privacy = load_privacy(&config)?;
    let json = Arc::new(config.json.clone());
    let running = start_shipper(&config, sequence)?;
    let spool_stats = running.spool.stats().clone();
    let checkpoints = running.spool.lock().checkpoints().clone();
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = Vec::new();
    let mut labelled = Vec::new();
    let mut journals: Vec<Arc<Journal>> = Vec::new();
    for source in &config.sources {
        let counters = Arc::new(SourceCounters::default());
        labelled.push((source.label(), counters.clone()));
        let ctx = SourceContext::new(
            running.tx.clone(),
            running.stats.clone(),
            counters,
            shutdown.clone(),
            privacy.clone(),
        )
        .with_json_fields(json.clone());
        // Network sources journal what they accept (the journal replays, after a crash, the
        // lines that never reached the spool); files are their own journal; export datagrams
        // are not journalled (see docs/flows.md).
        let ctx = if matches!(
            source,
            SourceConfig::File { .. } | SourceConfig::Netflow { .. } | SourceConfig::Capture { .. }
        ) {
            ctx
        } else {
            let label = source.label();
            let dir = config
                .state_dir
                .join("journal")
                .join(journal::dir_name(&label));
            let j = Arc::new(
                Journal::open(&dir, &format!("journal:{label}"))
                    .with_context(|| format!("opening the journal {}", dir.display()))?,
            );
            let ctx = ctx.with_journal(j.clone());
            sources::replay_journal(&j, &checkpoints, &ctx)
                .await
                .with_context(|| format!("replaying the journal {}", dir.display()))?;
            journals.push(j);
            ctx
        };
        match source {
            SourceConfig::SyslogTcp { listen } => {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen} (tcp)"))?;
                tasks.push(tokio::spawn(sources::syslog_tcp(listener, ctx)));
            }
            SourceConfig::Relp { listen } => {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen} (relp)"))?;
                tasks.push(tokio::spawn(relp::relp(listener, ctx)));
            }
            SourceConfig::SyslogUdp {
                listen,
                receive_buffer_bytes,
            } => {
                let socket = sources::bind_udp(*listen, *receive_buffer_bytes)
                    .with_context(|| format!("listening on {listen} (udp)"))?;
                tasks.push(tokio::spawn(sources::syslog_udp(socket, ctx)));
            }
            SourceConfig::SyslogTls {
                listen,
                cert,
                key,
                client_ca,
            } => {
                let acceptor = sources::tls_acceptor(cert, key, client_ca.as_deref())
                    .map_err(|e| anyhow::anyhow!("{}: {e}", source.label()))?;
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen} (tls)"))?;
                tasks.push(tokio::spawn(sources::syslog_tls(listener, acceptor, ctx)));
            }
            SourceConfig::Capture {
                interface,
                promiscuous,
                receive_buffer_bytes,
            } => {
                let capture = varde_collector::flow::capture::Capture::open(
                    interface,
                    *promiscuous,
                    *receive_buffer_bytes,
                )?;
                let registry = config
                    .flows
                    .registry()
                    .map_err(|e| anyhow::anyhow!("[flows] components: {e}"))?;
                let (settings, privacy) = (config.flows.table(), privacy.clone());
                tasks.push(tokio::task::spawn_blocking(move || {
                    capture.run(
                        ctx,
                        settings,
                        varde_collector::flow::Attribution::new(registry),
                        privacy,
                    )
                }));
            }
            SourceConfig::Netflow { listen } => {
                let socket = tokio::net::UdpSocket::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen} (netflow)"))?;
                let registry = config
                    .flows
                    .registry()
                    .map_err(|e| anyhow::anyhow!("[flows] components: {e}"))?;
                tasks.push(tokio::spawn(
                    varde_collector::flow::netflow::netflow_source(
                        socket,
                        ctx,
                        varde_collector::flow::Attribution::new(registry),
                        privacy.clone(),
                    ),
                ));
            }
            SourceConfig::File { path, start_at } if sources::is_glob(path) => {
                tasks.push(tokio::spawn(sources::follow_glob(
                    path.clone(),
                    checkpoints.clone(),
                    *start_at,
                    ctx,
                )));
            }
            SourceConfig::File { path, .. } if sources::is_gzip(path) => {
                let checkpoints = checkpoints.clone();
                let path = path.clone();
                tasks.push(tokio::spawn(async move {
                    let done = std::sync::Mutex::new(std::collections::BTreeSet::new());
                    sources::read_gzip_file(path, &checkpoints, &done, ctx).await;
                }));
            }
            SourceConfig::File { path, start_at } => {
                let checkpoint = checkpoints.get(path.to_string_lossy().as_ref()).copied();
                let start = FileStart::resolve(checkpoint, *start_at);
                tasks.push(tokio::spawn(sources::follow_file(path.clone(), start, ctx)));
            }
        }
    }
    if !journals.is_empty() {
        tasks.push(tokio::spawn(keep_journals(
            journals,
            running.spool.clone(),
            journal_sync_every(&config),
            shutdown.clone(),
        )));
    }
    let state = Arc::new(MetricsState {
        collector_id: config.collector_id.to_string(),
        tenant: config.tenant.to_string(),
        stats: running.stats.clone(),
        spool: Some(spool_stats.clone()),
        spool_max_bytes: config.spool.max_bytes,
        sources: labelled,
        started: std::time::Instant::now(),
    });
    if let Some(listen) = config.metrics.listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("metrics: listening on {listen}"))?;
        tasks.push(tokio::spawn(metrics::serve(
            listener,
            state.clone(),
            shutdown.clone(),
        )));
    }
    if config.status.interval_s > 0 {
        tasks.push(tokio::spawn(varde_collector::status::report(
            running.tx.clone(),
            state,
            Duration::from_secs(config.status.interval_s),
            shutdown.clone(),
        )));
    }
    info!(
        collector = %config.collector_id,
        tenant = %config.tenant,
        sources = config.sources.len(),
        "collector running"
    );
    varde_transport::shutdown_signal().await;
    info!("shutting down: stopping sources, spooling what is buffered, sending what we can");
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let stats = running
        .finish(Some(Duration::from_millis(config.batch.drain_timeout_ms)))
        .await?;
    info!(summary = %summary(&stats, &spool_stats), "collector stopped");
    Ok(())
}
