//! Peer Sigma engines, measured on the same rules and events (`--features peers`).
//!
//! rsigma-eval 0.23 (the fastest Rust peer we know): events are given as flat JSON objects
//! (EventData keys plus EventID/Channel/Computer), built before timing, so JSON parsing is
//! excluded as it is for Varde's match figure.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use serde_json::{Map, Value as Json};

/// Times rsigma-eval over `lines` (evtx-style JSON documents) with the rules under `dirs`.
pub fn rsigma(dirs: &[PathBuf], lines: &[String]) -> Result<()> {
    let mut engine = rsigma_eval::Engine::new();
    let mut loaded = 0usize;
    let mut failed = 0usize;
    for dir in dirs {
        for file in varde_rules::load::rule_files(dir)? {
            let text = std::fs::read_to_string(&file)?;
            match rsigma_parser::parse_sigma_yaml(&text) {
                Ok(c) => match engine.add_collection(&c) {
                    Ok(()) => loaded += 1,
                    Err(_) => failed += 1,
                },
                Err(_) => failed += 1,
            }
        }
    }
    let events: Vec<Json> = lines
        .iter()
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
        let ev = rsigma_eval::event::JsonEvent::borrow(e);
        matches += engine.evaluate(&ev).len();
    }
    let s = t.elapsed().as_secs_f64();
    println!(
        "  match (rsigma-eval 0.23, 1 thread): {:>12.0} events/s   ({matches} matches on {} events; {loaded} rule files loaded, {failed} failed)",
        events.len() as f64 / s,
        events.len()
    );
    Ok(())
}
