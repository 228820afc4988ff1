//! `varde-peer-bench`: rsigma-eval 0.23 (the fastest Rust Sigma peer we know) on the events
//! `varde-bench sigma --dump` wrote, with the same rule folders, one thread.
//!
//! ```text
//! cargo run --release --manifest-path benches/peers/Cargo.toml -- EVENTS.jsonl RULE_DIR... [--limit N]
//! ```
//!
//! Events are given to rsigma as flat JSON objects (EventData keys plus EventID, Channel,
//! Computer), built before timing, so JSON parsing is excluded as it is for Varde's match figure.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::{Map, Value as Json};

mod rule_files;
use rule_files::rule_files;

fn main() -> Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut limit = usize::MAX;
    if let Some(i) = args.iter().position(|a| a == "--limit") {
        limit = args.get(i + 1).context("--limit needs a number")?.parse()?;
        args.drain(i..i + 2);
    }
    let (events_file, dirs) = args.split_first().context("usage: EVENTS.jsonl RULE_DIR...")?;
    let mut files = Vec::new();
    for d in dirs {
        rule_files(Path::new(d), &mut files)?;
    }
    let mut engine = rsigma_eval::Engine::new();
    let (mut loaded, mut failed) = (0usize, 0usize);
    for f in &files {
        let text = std::fs::read_to_string(f)?;
        match rsigma_parser::parse_sigma_yaml(&text).map(|c| engine.add_collection(&c)) {
            Ok(Ok(())) => loaded += 1,
            _ => failed += 1,
        }
    }
    let text = std::fs::read_to_string(events_file)?;
    let events: Vec<Json> = text
        .lines()
        .take(limit)
        .map(|l| {
            let doc: Json = serde_json::from_str(l).unwrap_or(Json::Null);
            let mut flat = Map::new();
            if let Some(data) = doc["Event"]["EventData"].as_object() {
                flat.extend(data.clone());
            }
            for key in ["EventID", "Channel", "Computer"] {
                flat.insert(key.to_owned(), doc["Event"]["System"][key].clone());
            }
            Json::Object(flat)
        })
        .collect();
    let t = Instant::now();
    let mut matches = 0usize;
    for e in &events {
        matches += engine.evaluate(&rsigma_eval::event::JsonEvent::borrow(e)).len();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "rsigma-eval 0.23, 1 thread: {:.0} events/s ({matches} matches on {} events; {loaded} rule files loaded, {failed} failed)",
        events.len() as f64 / s,
        events.len()
    );
    Ok(())
}
