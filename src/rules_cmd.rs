//! `varde rules check | match | bench | sql`: the Sigma engine from the command line.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

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
    // Correlation rules: what each one aggregates, so a reader can see it is what they meant.
    for (source, c) in set.correlations() {
        if json {
            println!(
                "{{\"file\":{},\"rule_id\":{},\"title\":{},\"correlation\":{},\"note\":{}}}",
                json_str(source),
                json_str(&c.id),
                json_str(&c.title),
                json_str(&format!("{:?}", c.kind)),
                json_str("checked")
            );
        } else {
            println!(
                "{source}: '{}': correlation {:?} over {} rule(s), group-by [{}], timespan {} s: checked",
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
            "{{\"summary\":{{\"files\":{files},\"loaded\":{},\"correlations\":{},\"rejected\":{},\"rejected_by_class\":{{{}}},\"loaded_by_kind\":{{{}}},\"warnings\":{warnings}}}}}",
            set.rules().len(),
            set.correlations().len(),
            set.errors().len(),
            classes.join(","),
            kinds.join(",")
        );
    } else {
        println!(
            "{files} files: {} rules loaded, {} correlation rules checked, {} rejected {:?}; by source kind {:?}; {warnings} with unmapped fields",
            set.rules().len(),
            set.correlations().len(),
            set.errors().len(),
            by_class,
            per_kind
        );
    }
    Ok(if set.errors().is_empty() { 0 } else { 1 })
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

fn peak_rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse::<u64>().ok())
            })
        })
        .map_or(0, |k| k / 1024)
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
