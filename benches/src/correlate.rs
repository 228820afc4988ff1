//! `varde-bench correlate`: Varde's correlations beside rsigma-eval 0.23's on the same stream,
//! with the same rules (`benches/correlation/rules`: every correlation type but
//! `value_percentile`, a range and a chain, over five detection rules).
//!
//! Runs, each a process: `varde rules correlate` (detection over Arrow batches, then the
//! pipeline's `Correlator` over the matches, one thread) and `rsigma-correlate`
//! (`benches/peers`, its `CorrelationEngine` event by event) over one generated stream
//! (`varde_testkit::correlation::stream`), and rsigma with the detection rules alone, for its
//! detection-only time. Both programs time their own work with reading and parsing the file
//! left out, and report their peak resident set. Then the cost of open groups: failed logins of
//! as many users as events (`--groups` groups open at the end, none fired) against the same
//! number in one group, as resident memory grown while the events are processed: rsigma's in
//! `rsigma-correlate` (its parsed events are all in memory before), Varde's correlator fed the
//! same hits in this process (no file import to free memory it could reuse).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// Options of the correlation benchmark.
#[derive(clap::Args)]
pub struct Options {
    /// The `varde` binary (a release build).
    #[arg(long, default_value = "target/release/varde")]
    pub varde: PathBuf,
    /// rsigma's side (`cargo build --release --manifest-path benches/peers/Cargo.toml`).
    #[arg(long, default_value = "benches/peers/target/release/rsigma-correlate")]
    pub rsigma: PathBuf,
    /// The rules: a folder with `base/` (detection rules) and `correlations/`.
    #[arg(long, default_value = "benches/correlation/rules")]
    pub rules: PathBuf,
    /// Events in the mixed stream.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Users in the mixed stream (the groups of the user-grouped correlations).
    #[arg(long, default_value_t = 1000)]
    pub users: usize,
    /// Open groups for the memory figure (below rsigma's default cap of 100,000 state entries,
    /// which would evict).
    #[arg(long, default_value_t = 90_000)]
    pub groups: usize,
}

/// What one program reported on its last stderr line (`key=value` pairs).
struct Report {
    fields: Vec<(String, String)>,
    stdout_lines: usize,
}

impl Report {
    fn get(&self, key: &str) -> Result<f64> {
        self.fields
            .iter()
            .find(|(k, _)| k == key)
            .with_context(|| format!("no {key}= in the report"))?
            .1
            .parse()
            .with_context(|| format!("{key} is not a number"))
    }
}

fn run_reporting(cmd: &mut Command) -> Result<Report> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{cmd:?} failed:\n{stderr}");
    }
    let last = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("events="))
        .with_context(|| format!("{cmd:?} printed no report:\n{stderr}"))?;
    Ok(Report {
        fields: last
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        stdout_lines: String::from_utf8_lossy(&out.stdout).lines().count(),
    })
}

fn varde(o: &Options, events: &Path) -> Result<Report> {
    run_reporting(
        Command::new(&o.varde)
            .args(["rules", "correlate", "--rules"])
            .arg(o.rules.join("base"))
            .arg(o.rules.join("correlations"))
            .arg("--events")
            .arg(events),
    )
}

fn rsigma(o: &Options, events: &Path, with_correlations: bool) -> Result<Report> {
    let mut cmd = Command::new(&o.rsigma);
    cmd.arg(o.rules.join("base"));
    if with_correlations {
        cmd.arg(o.rules.join("correlations"));
    }
    run_reporting(cmd.arg(events))
}

/// Runs the benchmark and prints its figures.
pub fn run(o: &Options) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mixed = dir.path().join("mixed.jsonl");
    std::fs::write(
        &mixed,
        varde_testkit::correlation::stream(1, o.events, o.users),
    )?;
    let v = varde(o, &mixed)?;
    let r_base = rsigma(o, &mixed, false)?;
    let r = rsigma(o, &mixed, true)?;
    if v.stdout_lines != r.stdout_lines {
        bail!(
            "Varde fired {} correlations and rsigma {}: the two disagree, no figure is fair",
            v.stdout_lines,
            r.stdout_lines
        );
    }
    let n = v.get("events")?;
    let (vm, vc) = (v.get("match_seconds")?, v.get("correlate_seconds")?);
    let (rb, rf) = (r_base.get("seconds")?, r.get("seconds")?);
    println!(
        "mixed stream: {n:.0} events, {} users, {} correlations fired by each",
        o.users, v.stdout_lines
    );
    println!(
        "| | detection only ev/s | detection + correlation ev/s | correlation alone s | peak RSS |"
    );
    println!("|---|---:|---:|---:|---:|");
    println!(
        "| Varde (`varde rules correlate`) | {:.0} | {:.0} | {vc:.3} | {:.0} MiB |",
        n / vm,
        n / (vm + vc),
        v.get("peak_rss_kib")? / 1024.0
    );
    println!(
        "| rsigma-eval 0.23 (`rsigma-correlate`) | {:.0} | {:.0} | {:.3} | {:.0} MiB |",
        n / rb,
        n / rf,
        (rf - rb).max(0.0),
        r.get("peak_rss_kib")? / 1024.0
    );

    let open = dir.path().join("open.jsonl");
    let one = dir.path().join("one.jsonl");
    std::fs::write(
        &open,
        varde_testkit::correlation::failed_logins(o.groups, o.groups),
    )?;
    std::fs::write(&one, varde_testkit::correlation::failed_logins(o.groups, 1))?;
    let (r_open, r_one) = (rsigma(o, &open, true)?, rsigma(o, &one, true)?);
    let (v_open, v_one) = (varde_state_kib(o, o.groups)?, varde_state_kib(o, 1)?);
    let per_100k = |kib: f64| kib / 1024.0 * 100_000.0 / o.groups as f64;
    println!(
        "\nopen groups: {} failed logins of {} users (none fires) against as many of one user;",
        o.groups, o.groups
    );
    println!("resident memory grown while processing them");
    println!("| | one group | all open | per 100k open groups |");
    println!("|---|---:|---:|---:|");
    println!(
        "| Varde (`Correlator`, in-process) | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        v_one as f64 / 1024.0,
        v_open as f64 / 1024.0,
        per_100k(v_open as f64 - v_one as f64)
    );
    let (ro, r1) = (r_open.get("state_rss_kib")?, r_one.get("state_rss_kib")?);
    println!(
        "| rsigma-eval 0.23 (`CorrelationEngine`) | {:.1} MiB | {:.1} MiB | {:.1} MiB |",
        r1 / 1024.0,
        ro / 1024.0,
        per_100k(ro - r1)
    );
    Ok(())
}

/// Resident memory (KiB) grown while Varde's correlator takes `--groups` failed logins of
/// `users` users, one second apart (the hits `failed_logins` writes, as the pipeline hands them
/// over), with room for every group.
fn varde_state_kib(o: &Options, users: usize) -> Result<u64> {
    use varde_core::{AlertId, EventId};
    use varde_pipeline::correlate::{CorrelationSettings, Correlator};

    let mut builder = varde_rules::RuleSetBuilder::new(Default::default())?;
    varde_rules::load::add_paths(
        &mut builder,
        &[o.rules.join("base"), o.rules.join("correlations")],
    )?;
    let set = builder.build()?;
    let rule = set
        .rules()
        .iter()
        .find(|r| r.meta.name.as_deref() == Some("failed_login"))
        .context("the rules have no failed_login")?;
    let key = varde_rules::datafusion::rule_key(rule);
    let mut correlator = Correlator::new(
        &set,
        &CorrelationSettings {
            max_groups: o.groups * 2,
            restore_hours: 0,
            ..CorrelationSettings::default()
        },
    );
    let before = crate::pipeline::status_kib_of("self", "VmRSS:");
    for i in 0..o.groups {
        let row = u32::try_from(i)?;
        let event_id = EventId::derive("bench", 0, row);
        let alert = varde_store::Alert {
            alert_id: AlertId::derive(&key, event_id),
            dedup_key: [0; 16],
            tenant: "0301".to_owned(),
            component: String::new(),
            rule_id: key.clone(),
            rule_title: String::new(),
            rule_level: String::new(),
            rule_tags: Vec::new(),
            event_id,
            event_time_us: (varde_testkit::correlation::START_S + i64::from(row)) * 1_000_000,
            detect_time_us: 0,
            source_kind: "generic_json".to_owned(),
            host: String::new(),
            matched: Vec::new(),
        };
        let user = format!("u{}", i % users.max(1));
        let field = |name: &str| match name {
            "user" => Some(user.clone()),
            "src" => Some("192.0.2.1".to_owned()),
            "host_name" => Some("app01".to_owned()),
            _ => None,
        };
        drop(correlator.observe(&alert, &field, 0));
        drop(correlator.take_log());
    }
    let grown = crate::pipeline::status_kib_of("self", "VmRSS:").saturating_sub(before);
    drop(correlator);
    Ok(grown)
}
