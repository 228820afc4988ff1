//! `varde`: the operator's command line.
//!
//! ```text
//! varde demo                       the whole path in one process, on bundled sample data
//! varde pipeline --config <file>   consume from Kafka, store in ClickHouse, until SIGINT/SIGTERM
//! varde migrate --config <file>    create or upgrade the ClickHouse schema, then exit
//! varde rules check|match|bench    the Sigma engine on files
//! ```

mod collector_cmd;
mod demo;
mod demo_notify;
mod events;
mod report_cmd;
mod rules_cmd;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tokio::sync::watch;
use tracing::info;
use varde_pipeline::detect::Detector;
use varde_pipeline::jsonl::JsonLines;
use varde_pipeline::metrics::{LagStats, MetricsState};
use varde_pipeline::retention::RetentionStats;
use varde_pipeline::{Assignment, PipelineConfig, Stats};
use varde_store::clickhouse::ClickHouseStore;
use varde_transport::kafka::KafkaSubscriber;

#[derive(Parser)]
#[command(
    name = "varde",
    version,
    about = "Varde: telemetry and incident pipeline for a sector CERT"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run collectors, pipeline and store in one process on bundled sample telemetry from
    /// several municipalities, with no external service, print what happened, then serve the
    /// dashboard over it on loopback until interrupted.
    Demo {
        /// The dashboard's port on 127.0.0.1.
        #[arg(long, default_value_t = 8080)]
        port: u16,
        /// While serving, plant a root login with a password every this many seconds, so
        /// alerts keep arriving (0: none).
        #[arg(long, default_value_t = 20)]
        live_every: u64,
    },
    /// Run the pipeline: consume envelopes from Kafka and store events in ClickHouse.
    Pipeline {
        /// The configuration file (see deploy/examples/pipeline.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Create or upgrade the ClickHouse schema and exit.
    Migrate {
        /// The pipeline configuration file (its [clickhouse] table is used).
        #[arg(long, required_unless_present = "print_sql")]
        config: Option<PathBuf>,
        /// Print every migration's statements for database DB (one per line, `;`-terminated)
        /// instead of applying them.
        #[arg(long, value_name = "DB")]
        print_sql: Option<String>,
        /// With --print-sql: the statements for ClickHouse cluster NAME (replicated local
        /// tables and distributed tables, `ON CLUSTER`; see docs/capacity.md).
        #[arg(long, value_name = "NAME", requires = "print_sql")]
        cluster: Option<String>,
    },
    /// Sigma rules: check, match against event files, measure.
    #[command(subcommand)]
    Rules(rules_cmd::RulesCommand),
    /// Serve the web dashboard (the alert queue) on the configured address.
    Dashboard {
        /// The configuration file (see deploy/examples/dashboard.toml).
        #[arg(long)]
        config: PathBuf,
    },
    /// Tell municipalities about their alerts, incidents and silent collectors by e-mail and
    /// webhook: queue into the outbox in ClickHouse and send from it (docs/notifications.md).
    Notify {
        /// The configuration file (see deploy/examples/notify.toml).
        #[arg(long)]
        config: PathBuf,
        /// Check the configuration and the contacts, print them, and exit.
        #[arg(long, conflicts_with = "test")]
        check: bool,
        /// Queue a test message to the contact of this name and exit (the running notifier
        /// sends it).
        #[arg(long, value_name = "CONTACT")]
        test: Option<String>,
    },
    /// Incident reports: STIX 2.1, MISP, CSV, printable HTML and PDF (docs/reports.md).
    #[command(subcommand)]
    Report(report_cmd::ReportCommand),
    /// Administration.
    #[command(subcommand)]
    Admin(AdminCommand),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Read a password on standard input (one line) and print its argon2id hash, for the
    /// `password_hash` of an account in the dashboard's accounts file.
    HashPassword,
    /// Add an account to the dashboard's accounts file, with the password read on standard
    /// input (one line); the file is checked as the dashboard checks it and replaced whole.
    CreateUser {
        /// The accounts file (made when missing).
        #[arg(long)]
        accounts: PathBuf,
        /// Login name.
        #[arg(long)]
        name: String,
        /// admin, analyst or municipality.
        #[arg(long)]
        role: String,
        /// The kommunenummer of a municipality account.
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Enrolled collectors: enrolment tokens, the list, revocation (docs/collector.md).
    #[command(subcommand)]
    Collector(collector_cmd::CollectorCommand),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if let Command::Rules(cmd) = cli.command {
        let code = rules_cmd::run(cmd)?;
        std::process::exit(code);
    }
    if let Command::Admin(AdminCommand::CreateUser {
        accounts,
        name,
        role,
        tenant,
    }) = &cli.command
    {
        let role = match role.as_str() {
            "admin" => varde_dashboard::Role::Admin,
            "analyst" => varde_dashboard::Role::Analyst,
            "municipality" => varde_dashboard::Role::Municipality,
            other => anyhow::bail!("--role {other}: admin, analyst or municipality"),
        };
        let tenant = tenant
            .as_deref()
            .map(varde_core::Kommunenummer::parse)
            .transpose()
            .context("--tenant")?;
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        let password = line.trim_end_matches(['\n', '\r']);
        varde_dashboard::add_account(accounts, name, role, tenant, password)?;
        println!("account {name} added to {}", accounts.display());
        return Ok(());
    }
    if let Command::Admin(AdminCommand::HashPassword) = cli.command {
        let mut line = String::new();
        std::io::stdin()
            .read_line(&mut line)
            .context("reading the password on standard input")?;
        let password = line.trim_end_matches(['\n', '\r']);
        anyhow::ensure!(!password.is_empty(), "an empty password");
        let hash = varde_dashboard::hash_password(password).map_err(anyhow::Error::msg)?;
        println!("{hash}");
        return Ok(());
    }
    // The demo prints a report on stdout; its log keeps to warnings unless VARDE_LOG says more.
    let default_level = match cli.command {
        Command::Demo { .. } => "warn",
        _ => "info",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("VARDE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Demo { port, live_every } => runtime.block_on(demo::run(port, live_every)),
        Command::Admin(AdminCommand::Collector(cmd)) => runtime.block_on(collector_cmd::run(cmd)),
        Command::Rules(_) | Command::Admin(_) => Ok(()),
        Command::Dashboard { config } => runtime.block_on(dashboard(&config)),
        Command::Report(cmd) => runtime.block_on(report_cmd::run(cmd)),
        Command::Notify {
            config,
            check,
            test,
        } => runtime.block_on(notify(&config, check, test.as_deref())),
        Command::Pipeline { config } => runtime.block_on(pipeline(PipelineConfig::load(&config)?)),
        Command::Migrate {
            print_sql: Some(db),
            cluster,
            ..
        } => {
            use varde_store::schema;
            let one_line = |statement: &str| {
                statement
                    .replace("{db}", &db)
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            if let Some(c) = &cluster {
                anyhow::ensure!(
                    schema::valid_cluster_name(c),
                    "'{c}' is not a usable cluster name: letters, digits and '_' only"
                );
                println!("-- the table of applied migrations");
                println!(
                    "{};",
                    one_line(&schema::CLUSTER_MIGRATIONS_TABLE.replace("{cluster}", c))
                );
            }
            for m in schema::MIGRATIONS {
                println!("-- migration {}: {}", m.version, m.name);
                for statement in m.statements {
                    match &cluster {
                        Some(c) => {
                            for s in schema::on_cluster(statement, c).map_err(anyhow::Error::msg)? {
                                println!("{};", one_line(&s));
                            }
                        }
                        None => println!("{};", one_line(statement)),
                    }
                }
            }
            Ok(())
        }
        Command::Migrate { config, .. } => runtime.block_on(async {
            let config = config.context("--config is required")?;
            let config = PipelineConfig::load(&config)?;
            let store = ClickHouseStore::new(&config.clickhouse)?;
            let applied = store.migrate().await.context("migrating ClickHouse")?;
            println!(
                "database {}: {} migration(s) applied {:?}",
                store.database(),
                applied.len(),
                applied
            );
            Ok(())
        }),
    }
}

/// The store of `settings`, reached and migrated.
async fn migrated_store(
    settings: &varde_store::clickhouse::ClickHouseSettings,
) -> Result<ClickHouseStore> {
    let store = ClickHouseStore::new(settings)?;
    store
        .ping()
        .await
        .with_context(|| format!("connecting to ClickHouse at {}", settings.url))?;
    store.migrate().await.context("migrating ClickHouse")?;
    Ok(store)
}

async fn dashboard(path: &std::path::Path) -> Result<()> {
    let config = varde_dashboard::DashboardConfig::load(path)?;
    let accounts = varde_dashboard::load_accounts(&config.accounts)?;
    let store = migrated_store(&config.clickhouse).await?;
    let notify = match &config.notify {
        Some(path) => {
            let n = varde_notify::NotifyConfig::load(path)?;
            Some(varde_dashboard::NotifySetup {
                settings: n.settings,
                contacts: n.contacts,
                contacts_path: Some(n.contacts_path),
            })
        }
        None => None,
    };
    let app = varde_dashboard::Dashboard::new(
        store,
        accounts,
        varde_dashboard::Settings {
            secure_cookies: config.secure_cookies,
            notify,
            issuer: varde_report::Issuer {
                name: config.issuer.clone().unwrap_or_else(|| "CERT".into()),
                contact: config.issuer_contact.clone().unwrap_or_default(),
            },
            enrolment: config
                .enrolment()
                .map_err(|e| anyhow::anyhow!("{}: [enrolment]: {e}", path.display()))?,
            ..varde_dashboard::Settings::default()
        },
    )
    .router();
    let Some(tls) = &config.tls else {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        info!(listen = %config.listen, "dashboard serving (HTTP)");
        return axum::serve(listener, app)
            .with_graceful_shutdown(varde_transport::shutdown_signal())
            .await
            .context("serving the dashboard");
    };
    let server_config =
        varde_collector::sources::tls_server_config(&tls.cert_file, &tls.key_file, None)
            .map_err(|e| anyhow::anyhow!("{}: [tls]: {e}", path.display()))?;
    let handle = axum_server::Handle::new();
    let stopping = handle.clone();
    tokio::spawn(async move {
        varde_transport::shutdown_signal().await;
        stopping.graceful_shutdown(Some(std::time::Duration::from_secs(10)));
    });
    info!(listen = %config.listen, "dashboard serving (HTTPS)");
    axum_server::bind_rustls(
        config.listen,
        axum_server::tls_rustls::RustlsConfig::from_config(std::sync::Arc::new(server_config)),
    )
    .handle(handle)
    .serve(app.into_make_service())
    .await
    .context("serving the dashboard")
}

async fn notify(path: &std::path::Path, check: bool, test: Option<&str>) -> Result<()> {
    let config = varde_notify::NotifyConfig::load(path)?;
    if check {
        println!(
            "{}: {} contact(s) in {}",
            path.display(),
            config.contacts.len(),
            config.contacts_path.display()
        );
        for c in &config.contacts {
            println!("  {}", varde_notify::run::describe(c));
        }
        return Ok(());
    }
    let store = migrated_store(&config.clickhouse).await?;
    let notifier = varde_notify::Notifier::new(store, config.settings, config.contacts)
        .map_err(anyhow::Error::msg)?
        .with_contacts_file(config.contacts_path);
    if let Some(name) = test {
        let id = notifier
            .queue_test(name, varde_notify::run::now_us())
            .await
            .map_err(anyhow::Error::msg)?;
        println!(
            "test message {} queued for {name}; the running notifier sends it",
            varde_core::EventId(id)
        );
        return Ok(());
    }
    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        varde_transport::shutdown_signal().await;
        let _ = stop.send(true);
    });
    notifier.run(shutdown).await;
    info!("notifier stopped");
    Ok(())
}

async fn pipeline(config: PipelineConfig) -> Result<()> {
    let store = ClickHouseStore::new(&config.clickhouse)?;
    let version = store
        .ping()
        .await
        .with_context(|| format!("connecting to ClickHouse at {}", config.clickhouse.url))?;
    let applied = store.migrate().await.context("migrating ClickHouse")?;
    info!(version, database = store.database(), applied = ?applied, "ClickHouse ready");
    let (mut detector, report) =
        Detector::from_config(&config.detection).context("loading the detection rules")?;
    info!(
        rules = report.loaded,
        rule_errors = report.errors.len(),
        "detection ready"
    );
    let mut json_lines = match &config.jsonl {
        Some(c) => Some(JsonLines::from_config(c).with_context(|| {
            format!(
                "the JSON-lines pseudonymisation key {}",
                c.key_file.display()
            )
        })?),
        None => None,
    };
    let topics = config.topics();
    let mut subscriber = match config.assignment {
        Assignment::Group => KafkaSubscriber::new(&config.kafka, &config.group_id, &topics)
            .context("joining the Kafka consumer group")?,
        Assignment::Static => {
            let (kafka, group, topics) = (
                config.kafka.clone(),
                config.group_id.clone(),
                topics.clone(),
            );
            tokio::task::spawn_blocking(move || {
                KafkaSubscriber::assigned(&kafka, &group, &topics, Duration::from_secs(10))
            })
            .await
            .context("assigning partitions")?
            .context("assigning every partition of the configured tenants' topics")?
        }
    };
    info!(group = %config.group_id, assignment = ?config.assignment, topics = ?topics,
        "pipeline consuming");

    let stats = Arc::new(Stats::default());
    stats.record_rules(&report);
    let (stop, shutdown) = watch::channel(false);
    let mut background = Vec::new();
    let retention_stats = Arc::new(RetentionStats::default());
    {
        let (store, stats, settings, shutdown) = (
            store.clone(),
            retention_stats.clone(),
            config.retention,
            shutdown.clone(),
        );
        background.push(tokio::spawn(async move {
            varde_pipeline::retention::run_retention(&store, settings, &stats, shutdown).await;
        }));
    }
    if let Some(m) = config.metrics {
        let listener = tokio::net::TcpListener::bind(m.listen)
            .await
            .with_context(|| format!("metrics: listening on {}", m.listen))?;
        let lag = Arc::new(LagStats::default());
        let probe = subscriber.lag_probe();
        let read: varde_pipeline::metrics::LagReader =
            Arc::new(move || probe.partitions(Duration::from_secs(2)));
        background.push(tokio::spawn(varde_pipeline::metrics::refresh_lag(
            read,
            lag.clone(),
            Duration::from_secs(m.lag_interval_s),
            shutdown.clone(),
        )));
        {
            let (store, stats, shutdown) = (store.clone(), stats.clone(), shutdown.clone());
            background.push(tokio::spawn(async move {
                varde_pipeline::metrics::probe_store(
                    &store,
                    &stats,
                    Duration::from_secs(10),
                    shutdown,
                )
                .await;
            }));
        }
        let state = Arc::new(MetricsState {
            group_id: config.group_id.clone(),
            stats: stats.clone(),
            lag,
            retention: config.retention,
            retention_stats: retention_stats.clone(),
            unhealthy_after: Duration::from_secs(m.store_unhealthy_after_s),
            started: std::time::Instant::now(),
        });
        background.push(tokio::spawn(varde_pipeline::metrics::serve(
            listener,
            state,
            shutdown.clone(),
        )));
    }
    let reporter = {
        let stats = stats.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(10));
            tick.tick().await;
            loop {
                tick.tick().await;
                info!(
                    messages = Stats::get(&stats.messages),
                    rows = Stats::get(&stats.rows_written),
                    alerts = Stats::get(&stats.alerts_written),
                    write_retries = Stats::get(&stats.write_retries),
                    rejected = ?stats.rejected(),
                    "pipeline progress"
                );
            }
        })
    };
    let signal = tokio::spawn(async move {
        varde_transport::shutdown_signal().await;
        info!("shutting down: finishing the batch in hand");
        let _ = stop.send(true);
    });
    varde_pipeline::run_with_json_lines(
        &mut subscriber,
        &store,
        &mut detector,
        json_lines.as_mut(),
        varde_pipeline::LoopSettings {
            identity: config.identity,
            ..config.loop_settings
        },
        &stats,
        shutdown,
    )
    .await;
    reporter.abort();
    signal.abort();
    for task in background {
        task.abort();
    }
    Ok(())
}
