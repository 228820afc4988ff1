//! `varde report`: an incident's staged report as STIX 2.1, MISP, CSV, printable HTML or PDF,
//! read from ClickHouse (any Varde configuration with a `[clickhouse]` table), and the incidents
//! with their NIS2 deadlines.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use varde_report::{Deadlines, Format, Issuer, Stage};
use varde_store::EventStore;
use varde_store::clickhouse::{ClickHouseSettings, ClickHouseStore};
use varde_store::incident::Incident;

#[derive(Subcommand)]
pub enum ReportCommand {
    /// Write one incident's report.
    Incident {
        /// The incident's id (32 hex digits, as on its dashboard page).
        id: String,
        /// A Varde configuration file with a [clickhouse] table (pipeline.toml, dashboard.toml).
        #[arg(long)]
        config: PathBuf,
        /// early-warning, notification, intermediate, final or progress.
        #[arg(long, default_value = "notification")]
        stage: String,
        /// stix, misp, csv, html or pdf (headless Chromium).
        #[arg(long, default_value = "stix")]
        format: String,
        /// Where to write it (default: standard output; required for pdf).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The issuing CERT's name.
        #[arg(long, default_value = "KommuneCERT")]
        issuer: String,
        /// The issuing CERT's contact.
        #[arg(long, default_value = "")]
        contact: String,
    },
    /// Write the month's report: incidents by classification, municipality and component, open
    /// and closed, alert volume, time to acknowledge and to resolve.
    Month {
        /// The month, YYYY-MM.
        month: String,
        /// A Varde configuration file with a [clickhouse] table.
        #[arg(long)]
        config: PathBuf,
        /// html, csv or pdf (headless Chromium).
        #[arg(long, default_value = "html")]
        format: String,
        /// Where to write it (default: standard output; required for pdf).
        #[arg(long)]
        out: Option<PathBuf>,
        /// The issuing CERT's name.
        #[arg(long, default_value = "KommuneCERT")]
        issuer: String,
    },
    /// List the incidents with the deadlines of their reports.
    List {
        /// A Varde configuration file with a [clickhouse] table.
        #[arg(long)]
        config: PathBuf,
    },
}

/// The `[clickhouse]` table of any Varde configuration.
fn clickhouse_of(path: &Path) -> Result<ClickHouseSettings> {
    #[derive(serde::Deserialize)]
    struct Only {
        clickhouse: ClickHouseSettings,
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let only: Only = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: no usable [clickhouse] table: {e}", path.display()))?;
    Ok(only.clickhouse)
}

/// Records a CLI export for the audit log (actor `cli:<user>`); the report is not written when
/// this fails. A month's report has no incident: its id is all zeros, its stage `month YYYY-MM`.
async fn audit(
    store: &ClickHouseStore,
    incident_id: [u8; 16],
    stage: &str,
    format: &str,
) -> Result<()> {
    use varde_store::reports::{ExportRecord, ReportLog};
    let mut export_id = [0u8; 16];
    getrandom::fill(&mut export_id).map_err(|e| anyhow::anyhow!("random id: {e}"))?;
    let user = std::env::var("USER").unwrap_or_else(|_| "unknown".into());
    store
        .write_exports(&[ExportRecord {
            export_id,
            at_us: chrono::Utc::now().timestamp_micros(),
            actor: format!("cli:{user}"),
            tenant: String::new(),
            incident_id,
            stage: stage.to_owned(),
            format: format.to_owned(),
        }])
        .await
        .context("recording the export in the audit log")?;
    Ok(())
}

/// Prints `html` to a PDF at `out` with headless Chromium.
pub fn pdf(html: &str, out: &Path) -> Result<()> {
    varde_report::pdf::print(html, out).map_err(anyhow::Error::msg)
}

pub async fn run(cmd: ReportCommand) -> Result<()> {
    match cmd {
        ReportCommand::Incident {
            id,
            config,
            stage,
            format,
            out,
            issuer,
            contact,
        } => {
            let Some(incident_id) = varde_core::id::parse_hex16(&id) else {
                bail!("{id:?} is not an incident id (32 hex digits)");
            };
            let Some(stage) = Stage::parse(&stage) else {
                bail!(
                    "--stage {stage}: early-warning, notification, intermediate, final or progress"
                );
            };
            let (format, to_pdf) = match format.as_str() {
                "pdf" => (Format::Html, true),
                f => (
                    Format::parse(f)
                        .with_context(|| format!("--format {f}: stix, misp, csv, html or pdf"))?,
                    false,
                ),
            };
            let store = ClickHouseStore::new(&clickhouse_of(&config)?)?;
            let Some(report) = varde_report::assemble(
                &store,
                None,
                incident_id,
                stage,
                chrono::Utc::now().timestamp_micros(),
                Issuer {
                    name: issuer,
                    contact,
                },
            )
            .await?
            else {
                bail!("no incident {id}");
            };
            let text = format.render(&report);
            audit(
                &store,
                incident_id,
                stage.as_str(),
                if to_pdf { "pdf" } else { format.extension() },
            )
            .await?;
            match (out, to_pdf) {
                (Some(out), true) => pdf(&text, &out)?,
                (None, true) => bail!("--format pdf needs --out"),
                (Some(out), false) => std::fs::write(&out, text)
                    .with_context(|| format!("writing {}", out.display()))?,
                (None, false) => print!("{text}"),
            }
            Ok(())
        }
        ReportCommand::Month {
            month,
            config,
            format,
            out,
            issuer,
        } => {
            if !matches!(format.as_str(), "html" | "csv" | "pdf") {
                bail!("--format {format}: html, csv or pdf");
            }
            let store = ClickHouseStore::new(&clickhouse_of(&config)?)?;
            let Some(report) = varde_report::month::assemble_month(
                &store,
                &month,
                chrono::Utc::now().timestamp_micros(),
                Issuer {
                    name: issuer,
                    contact: String::new(),
                },
            )
            .await?
            else {
                bail!("{month:?} is not a month (YYYY-MM)");
            };
            let text = if format == "csv" {
                report.csv()
            } else {
                report.html()
            };
            audit(&store, [0; 16], &format!("month {month}"), &format).await?;
            match (out, format.as_str()) {
                (Some(out), "pdf") => pdf(&text, &out)?,
                (None, "pdf") => bail!("--format pdf needs --out"),
                (Some(out), _) => std::fs::write(&out, text)
                    .with_context(|| format!("writing {}", out.display()))?,
                (None, _) => print!("{text}"),
            }
            Ok(())
        }
        ReportCommand::List { config } => {
            let store = ClickHouseStore::new(&clickhouse_of(&config)?)?;
            let incidents = Incident::fold(&store.incident_changes(None, None).await?);
            let now = chrono::Utc::now().timestamp_micros();
            let time = |us: i64| varde_core::time::format_rfc3339(us);
            println!(
                "incident                          status        tlp           early warning due      notification due       final due"
            );
            for i in incidents {
                let d = Deadlines::of(i.aware_at_us, None);
                let mark = |due: i64| {
                    if due < now && i.status != varde_store::incident::IncidentStatus::Closed {
                        format!("{} OVERDUE", time(due))
                    } else {
                        time(due)
                    }
                };
                let id: String = i.incident_id.iter().map(|b| format!("{b:02x}")).collect();
                println!(
                    "{id}  {:<13} {:<13} {:<22} {:<22} {}  {}",
                    i.status.as_str(),
                    format!("TLP:{}", i.tlp.as_str()),
                    mark(d.early_warning_us),
                    mark(d.notification_us),
                    mark(d.final_us),
                    i.title
                );
            }
            Ok(())
        }
    }
}
