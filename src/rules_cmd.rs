//! `varde rules check | match | correlate | hunt | bench | sql`: the Sigma engine from the
//! command line.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Subcommand;
use varde_core::{BatchBuilder, CollectorId, Kommunenummer, SourceKind};
use varde_rules::{RuleSet, RuleSetBuilder};

use crate::events;

/// The `varde rules` subcommands.
#[derive(Subcommand)]
pub enum RulesCommand {
    /// Load rules; print each rejected rule with file and reason, and a summary. Exit status 1
    /// when any rule fails to load.
    Check {
        /// Rule files or folders.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Machine-readable output: one JSON object per rejected rule, then a summary object.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        placeholders: PlaceholderArgs,
    },
    /// Match rules against event files; print one JSON line per match.
    Match {
        /// Rule files or folders.
        #[arg(long, required = true, num_args = 1..)]
        rules: Vec<PathBuf>,
        /// Event files: .evtx, .json (concatenated documents) or .jsonl.
        #[arg(long, required = true, num_args = 1..)]
        events: Vec<PathBuf>,
        #[command(flatten)]
        placeholders: PlaceholderArgs,
    },
    /// Run the correlation rules among the rules over event files, in file order, as the
    /// pipeline's windows would (event time, the allowed lateness); print one JSON line per
    /// fired window: correlation, group, aggregate, window. Every event is Oslo's (0301).
    Correlate {
        /// Rule files or folders (detection rules and the correlations over them).
        #[arg(long, required = true, num_args = 1..)]
        rules: Vec<PathBuf>,
        /// Event files: .evtx, .json (concatenated documents) or .jsonl.
        #[arg(long, required = true, num_args = 1..)]
        events: Vec<PathBuf>,
        /// Seconds a hit may be behind its group's newest and still count.
        #[arg(long, default_value_t = 300)]
        lateness_s: u64,
        #[command(flatten)]
        placeholders: PlaceholderArgs,
    },
    /// Retro-hunt: run the pipeline's correlations over the events stored in ClickHouse in a
    /// time range, as the stream would have; print one JSON line per correlation alert, and
    /// with `--write` store them (a window the stream fired has the same alert id, so only
    /// what the stream missed is added).
    Hunt {
        /// The pipeline's configuration: its ClickHouse and its rules (`[detection]`).
        #[arg(long)]
        config: PathBuf,
        /// From this event time (RFC 3339, e.g. 2026-12-01T00:00:00Z; inclusive).
        #[arg(long)]
        from: String,
        /// To this event time (RFC 3339; exclusive).
        #[arg(long)]
        to: String,
        /// Store the alerts found in ClickHouse's alerts table.
        #[arg(long)]
        write: bool,
        /// Refuse to hold more matches of the correlations' rules than this in memory.
        #[arg(long, default_value_t = 5_000_000)]
        max_hits: usize,
    },
    /// Measure matching speed on event files: events/s, matches, peak memory.
    Bench {
        /// Rule files or folders.
        #[arg(long, required = true, num_args = 1..)]
        rules: Vec<PathBuf>,
        /// Event files.
        #[arg(long, required = true, num_args = 1..)]
        events: Vec<PathBuf>,
        /// Match the events this many times.
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        /// Worker threads (batches are shared out between them).
        #[arg(long, default_value_t = 1)]
        threads: usize,
        #[command(flatten)]
        placeholders: PlaceholderArgs,
    },
    /// Print each rule as a ClickHouse hunt over the stored events: a `-- title (id) file` line,
    /// then one `SELECT` statement on one line, with the engine's semantics. Exit status 1 when
    /// a rule cannot be converted (reported on stderr) or fails to load.
    Sql {
        /// Rule files or folders.
        #[arg(long, required = true, num_args = 1..)]
        rules: Vec<PathBuf>,
        /// The database holding Varde's `events` table.
        #[arg(long, default_value = "varde")]
        database: String,
        #[command(flatten)]
        placeholders: PlaceholderArgs,
    },
}

/// Values for `expand` placeholders, given as `--placeholder name=value1,value2`.
#[derive(clap::Args, Clone, Default)]
pub struct PlaceholderArgs {
    /// A placeholder's values for rules using the `expand` modifier: NAME=V1,V2,… (repeatable).
    #[arg(long = "placeholder", value_name = "NAME=VALUES")]
    placeholders: Vec<String>,
}

impl PlaceholderArgs {
    fn parse(&self) -> Result<varde_rules::compile::Placeholders> {
        let mut out = varde_rules::compile::Placeholders::new();
        for p in &self.placeholders {
            let (name, values) = p
                .split_once('=')
                .with_context(|| format!("--placeholder '{p}': expected NAME=V1,V2"))?;
            out.entry(name.trim_matches('%').to_owned())
                .or_default()
                .extend(values.split(',').map(str::to_owned));
        }
        Ok(out)
    }
}

fn load(paths: &[PathBuf], placeholders: &PlaceholderArgs) -> Result<(RuleSet, usize)> {
    let mut builder = RuleSetBuilder::new(placeholders.parse()?)?;
    let files = varde_rules::load::add_paths(&mut builder, paths).context("reading rules")?;
    Ok((builder.build()?, files))
}

fn json_str(s: &str) -> String {
    serde_json::Value::String(s.to_owned()).to_string()
}

/// Runs a `varde rules` subcommand; returns the process exit code.
pub fn run(cmd: RulesCommand) -> Result<i32> {
    match cmd {
        RulesCommand::Check {
            paths,
            json,
            placeholders,
        } => check(&paths, json, &placeholders),
        RulesCommand::Match {
            rules,
            events,
            placeholders,
        } => matches(&rules, &events, &placeholders),
        RulesCommand::Correlate {
            rules,
            events,
            lateness_s,
            placeholders,
        } => correlate(&rules, &events, lateness_s, &placeholders),
        RulesCommand::Hunt {
            config,
            from,
            to,
            write,
            max_hits,
        } => {
            let rt = tokio::runtime::Runtime::new()?;
            rt.block_on(hunt(&config, &from, &to, write, max_hits))
        }
        RulesCommand::Bench {
            rules,
            events,
            repeat,
            threads,
            placeholders,
        } => bench(&rules, &events, repeat, threads, &placeholders),
        RulesCommand::Sql {
            rules,
            database,
            placeholders,
        } => sql(&rules, &database, &placeholders),
    }
}

fn sql(rules: &[PathBuf], database: &str, placeholders: &PlaceholderArgs) -> Result<i32> {
    if database.is_empty()
        || !database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        anyhow::bail!("--database '{database}': letters, digits and '_' only");
    }
    let (set, _) = load(rules, placeholders)?;
    let mut failed = set.errors().len();
    for e in set.errors() {
        eprintln!("{}: rule not loaded: {}", e.source, e.reason);
    }
    for (r, rule) in set.rules().iter().enumerate() {
        let Some((expr, atoms, mapping)) = set.compiled(r) else {
            continue;
        };
        match varde_rules::sql::condition(expr, atoms, mapping) {
            Ok(cond) => {
                println!(
                    "-- {} ({}) {}",
                    rule.meta.title.replace('\n', " "),
                    rule.meta.id,
                    rule.source
                );
                println!("SELECT * FROM {database}.events FINAL WHERE {cond};");
            }
            Err(e) => {
                failed += 1;
                eprintln!("{}: '{}': no SQL: {e}", rule.source, rule.meta.title);
            }
        }
    }
    Ok(if failed == 0 { 0 } else { 1 })
}

fn check(paths: &[PathBuf], json: bool, placeholders: &PlaceholderArgs) -> Result<i32> {
    let (set, files) = load(paths, placeholders)?;
    let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
    for e in set.errors() {
        *by_class.entry(e.class).or_default() += 1;
        if json {
            println!(
                "{{\"file\":{},\"rule_id\":{},\"title\":{},\"class\":{},\"reason\":{}}}",
                json_str(&e.source),
                e.rule_id.as_deref().map_or("null".into(), json_str),
                e.title.as_deref().map_or("null".into(), json_str),
                json_str(e.class),
                json_str(&e.reason)
            );
        } else {
            println!(
                "{}: {}{}: {}",
                e.source,
                e.title
                    .as_deref()
                    .map(|t| format!("'{t}' "))
                    .unwrap_or_default(),
                e.rule_id
                    .as_deref()
                    .map(|i| format!("({i})"))
                    .unwrap_or_default(),
                e.reason
            );
        }
    }
    let mut warnings = 0;
    for r in set.rules().iter().filter(|r| !r.unmapped_fields.is_empty()) {
        warnings += 1;
        if !json {
            println!(
                "{}: '{}': warning: {} events never have field(s) {}; those items can never match",
                r.source,
                r.meta.title,
                r.kind,
                r.unmapped_fields.join(", ")
            );
        }
    }
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    for r in set.rules() {
        *per_kind.entry(r.kind.to_string()).or_default() += 1;
    }
    // Correlation rules: what each one aggregates, so a reader can see it is what they meant,
    // and whether the pipeline evaluates it (and why not).
    let correlator = varde_pipeline::correlate::Correlator::new(&set, &Default::default());
    let mut not_evaluated = 0;
    for (source, c) in set.correlations() {
        let note = match correlator.skipped().iter().find(|(k, _)| *k == c.key()) {
            Some((_, why)) => {
                not_evaluated += 1;
                format!("not evaluated: {why}")
            }
            None => "evaluated".to_owned(),
        };
        if json {
            println!(
                "{{\"file\":{},\"rule_id\":{},\"title\":{},\"correlation\":{},\"note\":{}}}",
                json_str(source),
                json_str(&c.id),
                json_str(&c.title),
                json_str(&format!("{:?}", c.kind)),
                json_str(&note)
            );
        } else {
            println!(
                "{source}: '{}': correlation {:?} over {} rule(s), group-by [{}], timespan {} s: {note}",
                c.title,
                c.kind,
                c.rules.len(),
                c.group_by.join(", "),
                c.timespan_us / 1_000_000
            );
        }
    }
    if json {
        let classes: Vec<String> = by_class
            .iter()
            .map(|(k, v)| format!("{}:{v}", json_str(k)))
            .collect();
        let kinds: Vec<String> = per_kind
            .iter()
            .map(|(k, v)| format!("{}:{v}", json_str(k)))
            .collect();
        println!(
            "{{\"summary\":{{\"files\":{files},\"loaded\":{},\"correlations\":{},\"not_evaluated\":{not_evaluated},\"rejected\":{},\"rejected_by_class\":{{{}}},\"loaded_by_kind\":{{{}}},\"warnings\":{warnings}}}}}",
            set.rules().len(),
            set.correlations().len(),
            set.errors().len(),
            classes.join(","),
            kinds.join(",")
        );
    } else {
        println!(
            "{files} files: {} rules loaded, {} correlation rules checked ({not_evaluated} not evaluated), {} rejected {:?}; by source kind {:?}; {warnings} with unmapped fields",
            set.rules().len(),
            set.correlations().len(),
            set.errors().len(),
            by_class,
            per_kind
        );
    }
    Ok(if set.errors().is_empty() && not_evaluated == 0 {
        0
    } else {
        1
    })
}

/// Events of a file as one batch per kind, with each row's index in the file.
fn batches(
    path: &std::path::Path,
) -> Result<Vec<(SourceKind, arrow_array::RecordBatch, Vec<usize>)>> {
    let tenant = Kommunenummer::parse("0301")?;
    let collector = CollectorId::new("varde-rules")?;
    let mut by_kind: BTreeMap<SourceKind, (BatchBuilder, Vec<usize>)> = BTreeMap::new();
    for (i, kind, event) in events::read(path)? {
        let (b, idx) = by_kind.entry(kind).or_insert_with(|| {
            (
                BatchBuilder::new(kind, tenant, collector.clone(), 64),
                Vec::new(),
            )
        });
        b.push(&event)
            .with_context(|| format!("{}: event {i}", path.display()))?;
        idx.push(i);
    }
    by_kind
        .into_iter()
        .map(|(k, (mut b, idx))| Ok((k, b.finish()?, idx)))
        .collect()
}

fn matches(rules: &[PathBuf], files: &[PathBuf], placeholders: &PlaceholderArgs) -> Result<i32> {
    let (set, _) = load(rules, placeholders)?;
    for e in set.errors() {
        eprintln!("{}: rule not loaded: {}", e.source, e.reason);
    }
    for file in files {
        let mut lines = Vec::new();
        for (kind, batch, index) in batches(file)? {
            for m in set.match_batch(kind, &batch)? {
                let rule = &set.rules()[m.rule as usize];
                lines.push((
                    index[m.row as usize],
                    format!(
                        "{{\"rule_id\":{},\"rule_title\":{},\"file\":{},\"event_index\":{}}}",
                        json_str(&rule.meta.id),
                        json_str(&rule.meta.title),
                        json_str(&file.display().to_string()),
                        index[m.row as usize]
                    ),
                ));
            }
        }
        lines.sort();
        for (_, l) in lines {
            println!("{l}");
        }
    }
    Ok(0)
}

fn correlate(
    rules: &[PathBuf],
    files: &[PathBuf],
    lateness_s: u64,
    placeholders: &PlaceholderArgs,
) -> Result<i32> {
    use varde_core::{AlertId, BatchReader, EventId};
    use varde_pipeline::correlate::{CorrelationSettings, Correlator};
    use varde_rules::datafusion::rule_key;

    let (set, _) = load(rules, placeholders)?;
    for e in set.errors() {
        eprintln!("{}: rule not loaded: {}", e.source, e.reason);
    }
    let mut correlator = Correlator::new(
        &set,
        &CorrelationSettings {
            allowed_lateness_s: lateness_s,
            restore_hours: 0,
            ..CorrelationSettings::default()
        },
    );
    for (key, why) in correlator.skipped() {
        eprintln!("{key}: correlation not evaluated: {why}");
    }
    if correlator.is_empty() {
        anyhow::bail!("no correlation rule to run among the rules given");
    }
    let keys: Vec<String> = set.rules().iter().map(rule_key).collect();
    // Clocks for `varde-bench correlate`: matching, and correlating (file import excluded).
    let (mut match_time, mut correlate_time) = (Duration::ZERO, Duration::ZERO);
    let (mut events_seen, mut fired_windows) = (0usize, 0usize);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (file_no, file) in files.iter().enumerate() {
        let kinds = batches(file)?;
        events_seen += kinds.iter().map(|(_, b, _)| b.num_rows()).sum::<usize>();
        let clock = Instant::now();
        let readers = kinds
            .iter()
            .map(|(kind, batch, _)| BatchReader::new(*kind, batch))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        // Every match, in file order (then rule order within an event).
        let mut hits: Vec<(usize, usize, usize, usize)> = Vec::new();
        for (k, (kind, batch, index)) in kinds.iter().enumerate() {
            for m in set.match_batch(*kind, batch)? {
                hits.push((index[m.row as usize], m.rule as usize, k, m.row as usize));
            }
        }
        hits.sort_unstable();
        match_time += clock.elapsed();
        let clock = Instant::now();
        for (i, r, k, row) in hits {
            let key = &keys[r];
            if !correlator.wants(key) {
                continue;
            }
            let reader = &readers[k];
            let event_id = EventId::derive(
                "varde-rules",
                file_no as u64,
                u32::try_from(i).unwrap_or(u32::MAX),
            );
            let alert = varde_store::Alert {
                alert_id: AlertId::derive(key, event_id),
                dedup_key: [0; 16],
                tenant: reader.tenant(row).to_owned(),
                component: String::new(),
                rule_id: key.clone(),
                rule_title: set.rules()[r].meta.title.clone(),
                rule_level: set.rules()[r].meta.level.clone().unwrap_or_default(),
                rule_tags: Vec::new(),
                event_id,
                event_time_us: reader.event_time_us(row),
                detect_time_us: 0,
                source_kind: reader.kind().name().to_owned(),
                host: reader.host(row).unwrap_or("").to_owned(),
                matched: Vec::new(),
            };
            let field = |name: &str| varde_pipeline::detect::field_of(reader, row, name);
            let fired = correlator.observe(&alert, &field, 0);
            // The hit log is the pipeline's (for restarts); nothing keeps it here.
            drop(correlator.take_log());
            for fired in fired {
                fired_windows += 1;
                let get = |name: &str| fired.matched_field(name).unwrap_or("");
                let group: Vec<serde_json::Value> = fired
                    .matched
                    .iter()
                    .filter(|(k, _)| !k.starts_with("correlation."))
                    .map(|(k, v)| serde_json::json!([k, v]))
                    .collect();
                let value: f64 = get("correlation.value").parse().unwrap_or(f64::NAN);
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "correlation": fired.rule_id,
                        "title": fired.rule_title,
                        "tenant": fired.tenant,
                        "group": group,
                        "value": value,
                        "hits": get("correlation.hits").parse::<u64>().unwrap_or(0),
                        "first_us": get("correlation.first_us").parse::<i64>().unwrap_or(0),
                        "last_us": get("correlation.last_us").parse::<i64>().unwrap_or(0),
                        "file": file.display().to_string(),
                        "event_index": i,
                    })
                )?;
            }
        }
        correlate_time += clock.elapsed();
    }
    out.flush()?;
    let stats = correlator.stats();
    eprintln!(
        "{} correlation windows fired ({fired_windows} alerts), {} late hits refused, {} groups evicted, {} groups open",
        stats.fired, stats.late, stats.evicted, stats.groups
    );
    eprintln!(
        "events={events_seen} match_seconds={:.3} correlate_seconds={:.3} peak_rss_kib={}",
        match_time.as_secs_f64(),
        correlate_time.as_secs_f64(),
        peak_rss_kib()
    );
    Ok(0)
}

/// µs since the epoch of an RFC 3339 time given as `--{what}`.
fn rfc3339_us(what: &str, text: &str) -> Result<i64> {
    chrono::DateTime::parse_from_rfc3339(text.trim())
        .map(|t| t.timestamp_micros())
        .with_context(|| format!("--{what} {text:?}: not an RFC 3339 time (2026-12-01T00:00:00Z)"))
}

async fn hunt(
    config: &std::path::Path,
    from: &str,
    to: &str,
    write: bool,
    max_hits: usize,
) -> Result<i32> {
    use varde_store::EventStore;
    use varde_store::clickhouse::ClickHouseStore;

    let (from_us, to_us) = (rfc3339_us("from", from)?, rfc3339_us("to", to)?);
    if to_us <= from_us {
        anyhow::bail!("--to must be after --from");
    }
    let config = varde_pipeline::PipelineConfig::load(config)?;
    let (detector, report) = varde_pipeline::detect::Detector::from_config(&config.detection)?;
    for e in &report.errors {
        eprintln!("{}: rule not loaded: {}", e.source, e.reason);
    }
    let set = detector.rules();
    let store = ClickHouseStore::new(&config.clickhouse)?;
    store
        .ping()
        .await
        .with_context(|| format!("connecting to ClickHouse at {}", config.clickhouse.url))?;
    let found =
        varde_pipeline::hunt::correlate_stored(&store, &set, from_us, to_us, max_hits).await?;
    for a in &found.alerts {
        let matched: serde_json::Map<String, serde_json::Value> = a
            .matched
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "alert_id": a.alert_id.to_string(),
                "correlation": a.rule_id,
                "title": a.rule_title,
                "tenant": a.tenant,
                "event_id": a.event_id.to_string(),
                "event_time_us": a.event_time_us,
                "matched": matched,
            })
        );
    }
    if write && !found.alerts.is_empty() {
        let n = store.write_alerts(&found.alerts).await?;
        eprintln!("{n} correlation alerts written to ClickHouse");
    }
    eprintln!(
        "{} matches of the correlations' rules, {} correlation alerts",
        found.hits,
        found.alerts.len()
    );
    Ok(0)
}

fn peak_rss_mib() -> u64 {
    peak_rss_kib() / 1024
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .unwrap_or(0)
}

fn bench(
    rules: &[PathBuf],
    files: &[PathBuf],
    repeat: usize,
    threads: usize,
    placeholders: &PlaceholderArgs,
) -> Result<i32> {
    let t = Instant::now();
    let (set, _) = load(rules, placeholders)?;
    let compile_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut all = Vec::new();
    for f in files {
        all.extend(batches(f)?.into_iter().map(|(k, b, _)| (k, b)));
    }
    let parse_s = t.elapsed().as_secs_f64();
    let events: usize = all.iter().map(|(_, b)| b.num_rows()).sum();
    let repeat = repeat.max(1);
    let threads = threads.max(1);
    let t = Instant::now();
    let total_matches: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|w| {
                let (set, all) = (&set, &all);
                s.spawn(move || {
                    let mut n = 0;
                    for _ in 0..repeat {
                        for (i, (k, b)) in all.iter().enumerate() {
                            if i % threads == w {
                                n += set.match_batch(*k, b).map_or(0, |m| m.len());
                            }
                        }
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let match_s = t.elapsed().as_secs_f64();
    println!(
        "{} rules ({} rejected) compiled in {compile_s:.2} s; {events} events read in {parse_s:.2} s",
        set.rules().len(),
        set.errors().len()
    );
    println!(
        "{:.0} events/s on {threads} thread(s) ({} events x {repeat}), {} matches per pass, peak RSS {} MiB",
        (events * repeat) as f64 / match_s,
        events,
        total_matches / repeat,
        peak_rss_mib()
    );
    Ok(0)
}
