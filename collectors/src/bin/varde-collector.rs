//! `varde-collector`: the collector binary.
//!
//! ```text
//! varde-collector check-config <file>          validate a configuration file
//! varde-collector run --config <file>          run the configured sources until SIGINT/SIGTERM
//! varde-collector send --config <file> <log>…  ship files of syslog lines once, then exit
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::sync::{mpsc, watch};
use tracing::info;
use varde_collector::config::{CollectorConfig, SourceConfig};
use varde_collector::shipper::{Input, SequenceSource, Shipper, ShipperSettings, Stats};
use varde_collector::sources;
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
        /// Files of syslog lines.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VARDE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { config } => runtime()?.block_on(run(CollectorConfig::load(&config)?)),
        Command::Send { config, files } => {
            runtime()?.block_on(send(CollectorConfig::load(&config)?, files))
        }
    }
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
    println!(
        "{}: ok: collector {} for {} {} -> {} (topic {}events.{}), {} source(s)",
        file.display(),
        config.collector_id,
        config.tenant,
        config.tenant.name(),
        config.kafka.brokers,
        config.kafka.topic_prefix,
        config.tenant,
        config.sources.len()
    );
    Ok(())
}

struct Running {
    tx: mpsc::Sender<Input>,
    stats: Arc<Stats>,
    shipper: tokio::task::JoinHandle<()>,
}

fn start_shipper(config: &CollectorConfig, sequence: SequenceSource) -> Result<Running> {
    let publisher = KafkaPublisher::new(
        &config.kafka,
        config.collector_id.as_str(),
        Duration::from_millis(config.batch.publish_timeout_ms),
    )
    .context("creating the Kafka producer")?;
    let stats = Arc::new(Stats::default());
    let shipper = Shipper::new(
        publisher,
        ShipperSettings {
            collector_id: config.collector_id.clone(),
            tenant: config.tenant,
            topic_prefix: config.kafka.topic_prefix.clone(),
            max_rows: config.batch.max_rows,
            max_delay: Duration::from_millis(config.batch.max_delay_ms),
        },
        sequence,
        stats.clone(),
    );
    // Room for about two batches: enough to keep the producer busy, small enough that a slow
    // broker pushes back on sources quickly.
    let (tx, rx) = mpsc::channel(config.batch.max_rows.saturating_mul(2).max(1024));
    let shipper = tokio::spawn(shipper.run(rx));
    Ok(Running { tx, stats, shipper })
}

fn summary(stats: &Stats) -> String {
    format!(
        "{{\"events_in\":{},\"events_out\":{},\"batches_out\":{},\"bytes_out\":{},\"parse_errors\":{},\"events_rejected\":{},\"publish_errors\":{}}}",
        Stats::get(&stats.events_in),
        Stats::get(&stats.events_out),
        Stats::get(&stats.batches_out),
        Stats::get(&stats.bytes_out),
        Stats::get(&stats.parse_errors),
        Stats::get(&stats.events_rejected),
        Stats::get(&stats.publish_errors),
    )
}

async fn send(config: CollectorConfig, files: Vec<PathBuf>) -> Result<()> {
    let sequence = SequenceSource::open(&config.state_dir)
        .with_context(|| format!("opening state in {}", config.state_dir.display()))?;
    let running = start_shipper(&config, sequence)?;
    for file in &files {
        let lines = sources::read_file(file, &running.tx, &running.stats)
            .await
            .with_context(|| format!("reading {}", file.display()))?;
        info!(file = %file.display(), lines, "file read");
    }
    drop(running.tx);
    running.shipper.await.context("shipper task")?;
    println!("{}", summary(&running.stats));
    Ok(())
}

async fn run(config: CollectorConfig) -> Result<()> {
    let sequence = SequenceSource::open(&config.state_dir)
        .with_context(|| format!("opening state in {}", config.state_dir.display()))?;
    let running = start_shipper(&config, sequence)?;
    let (stop, shutdown) = watch::channel(false);
    let mut tasks = Vec::new();
    for source in &config.sources {
        match source {
            SourceConfig::SyslogTcp { listen } => {
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .with_context(|| format!("listening on {listen}"))?;
                tasks.push(tokio::spawn(sources::syslog_tcp(
                    listener,
                    running.tx.clone(),
                    running.stats.clone(),
                    shutdown.clone(),
                )));
            }
            SourceConfig::File { path } => {
                tasks.push(tokio::spawn(sources::follow_file(
                    path.clone(),
                    running.tx.clone(),
                    running.stats.clone(),
                    shutdown.clone(),
                )));
            }
        }
    }
    info!(
        collector = %config.collector_id,
        tenant = %config.tenant,
        sources = config.sources.len(),
        "collector running"
    );
    varde_transport::shutdown_signal().await;
    info!("shutting down: stopping sources, sending what is buffered");
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    drop(running.tx);
    running.shipper.await.context("shipper task")?;
    info!(summary = %summary(&running.stats), "collector stopped");
    Ok(())
}
