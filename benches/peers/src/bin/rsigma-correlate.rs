//! `rsigma-correlate`: rsigma-eval 0.23's correlation engine over a JSON-lines event stream, for
//! the differential test of Varde's correlations (`tests/correlation_rsigma.rs`).
//!
//! ```text
//! cargo run --manifest-path benches/peers/Cargo.toml --bin rsigma-correlate -- RULE_DIR... EVENTS.jsonl
//! ```
//!
//! Every event is processed in file order at the time of its `ts` field (seconds since the epoch, which Varde reads too;
//! the same field); a window is cleared when it fires (`CorrelationAction::Reset`, Varde's semantics).
//! Prints one JSON object per fired correlation: `{"correlation", "group", "value"}`, the group
//! as `[name, value]` pairs in the correlation's `group-by` order. On stderr at the end: events,
//! seconds spent processing them (detection and correlation; reading and parsing the file
//! excluded), correlations fired, the peak resident set (`VmHWM`) and the resident memory grown
//! while processing (the engine's state), for `varde-bench correlate`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use rsigma_eval::result::ResultBody;
use rsigma_eval::{CorrelationAction, CorrelationConfig, CorrelationEngine, JsonEvent};
use serde_json::{Value as Json, json};

#[path = "../rule_files.rs"]
mod rule_files;
use rule_files::rule_files;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((events, dirs)) = args.split_last().filter(|(_, d)| !d.is_empty()) else {
        anyhow::bail!("usage: rsigma-correlate RULE_DIR... EVENTS.jsonl");
    };
    let mut files = Vec::new();
    for dir in dirs {
        rule_files(Path::new(dir), &mut files)?;
    }
    files.sort();
    let mut engine = CorrelationEngine::new(CorrelationConfig {
        action_on_match: CorrelationAction::Reset,
        ..CorrelationConfig::default()
    });
    for f in &files {
        let text = std::fs::read_to_string(f)?;
        let collection = rsigma_parser::parse_sigma_yaml(&text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
        engine
            .add_collection(&collection)
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?;
    }
    let text = std::fs::read_to_string(events)?;
    // Parsed before the clock starts, as Varde's figure leaves its file import out.
    let parsed = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let event: Json =
                serde_json::from_str(line).with_context(|| format!("{events}: line {}", i + 1))?;
            let ts = event["ts"]
                .as_i64()
                .with_context(|| format!("{events}: line {} has no ts", i + 1))?;
            Ok((event, ts))
        })
        .collect::<Result<Vec<_>>>()?;
    let rss_before = status_kib("VmRSS:");
    let started = std::time::Instant::now();
    let mut fired = 0usize;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (event, ts) in &parsed {
        for r in engine.process_event_at(&JsonEvent::borrow(event), *ts) {
            if let ResultBody::Correlation(body) = &r.body {
                fired += 1;
                writeln!(
                    out,
                    "{}",
                    json!({
                        "correlation": r.header.rule_id.clone().unwrap_or(r.header.rule_title.clone()),
                        "group": body.group_key,
                        "value": body.aggregated_value,
                    })
                )?;
            }
        }
    }
    out.flush()?;
    let secs = started.elapsed().as_secs_f64();
    // The engine's state: resident memory grown while processing (the parsed events were
    // all in memory before).
    let state = status_kib("VmRSS:").saturating_sub(rss_before);
    eprintln!(
        "events={} seconds={secs:.3} fired={fired} peak_rss_kib={} state_rss_kib={state}",
        parsed.len(),
        status_kib("VmHWM:")
    );
    Ok(())
}

/// A `/proc/self/status` figure in KiB (0 when unreadable).
fn status_kib(key: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}
