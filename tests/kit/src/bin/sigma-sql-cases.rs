//! Writes the material of the Sigma → SQL check on a current ClickHouse
//! (`deploy/dev/check-sigma-sql-current.py`, run by CI with chdb): the events of
//! `tests/sigma_sql.rs` (the hand-made rules and, with the corpus, every SigmaHQ Windows rule's
//! vocabulary, plus malformed addresses, numbers and times) as rows of the `events` table, and
//! for every Windows rule the SQL condition Varde generates with the rows the engine matches.
//!
//! ```text
//! sigma-sql-cases <dir>     writes <dir>/events.jsonl and <dir>/cases.jsonl
//! ```
//!
//! `events.jsonl`: one JSON object per stored row, the `events` columns as the store writes them
//! (`event_id` as lowercase hex, times as seconds). `cases.jsonl`: one object per rule:
//! `rule` (index), `id`, `title`, `source`, `sql` (the `WHERE` condition) and `expected` (the hex
//! event ids the engine matches), or `unsupported` with the reason instead of `sql`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;

use varde_core::{BatchBuilder, BatchReader, CollectorId, EventId, Kommunenummer, SourceKind};
use varde_testkit::sigma::{sql_comparable, windows_events, windows_rules_with_vocabulary};

/// Events written, as in `tests/sigma_sql.rs`.
const EVENTS: usize = 2000;

fn json(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn json_list<'a>(items: impl Iterator<Item = &'a str>) -> String {
    format!("[{}]", items.map(json).collect::<Vec<_>>().join(","))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .ok_or("usage: sigma-sql-cases <output directory>")?,
    );
    std::fs::create_dir_all(&dir)?;
    let (builder, vocab) = windows_rules_with_vocabulary();
    let set = builder.build()?;
    let vocab = sql_comparable(vocab);
    let tenant = Kommunenummer::parse("0301")?;
    let collector = CollectorId::new("k0301-sqltest")?;

    let mut rows = String::new();
    let mut engine: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut stored = 0usize;
    for (seq, chunk) in windows_events(&vocab, EVENTS).chunks(500).enumerate() {
        let seq = seq as u64;
        let mut b = BatchBuilder::new(SourceKind::WindowsEvent, tenant, collector.clone(), 500);
        for e in chunk {
            b.push(e)?;
        }
        let batch = b.finish()?;
        for m in set.match_batch(SourceKind::WindowsEvent, &batch)? {
            let id = EventId::derive(collector.as_str(), seq, m.row);
            engine
                .entry(m.rule as usize)
                .or_default()
                .insert(id.to_string());
        }
        // The row the store writes (varde_store's flatten): typed columns, then attributes.
        let reader = BatchReader::new(SourceKind::WindowsEvent, &batch)?;
        for row in 0..reader.len() {
            let batch_row = u32::try_from(row)?;
            let mut keys: Vec<String> = Vec::new();
            let mut values: Vec<String> = Vec::new();
            for (k, v) in reader.typed_fields(row) {
                keys.push(k.to_owned());
                values.push(v);
            }
            for (k, v) in reader.attrs(row) {
                keys.push(k.to_owned());
                values.push(v.to_owned());
            }
            let secs = |us: i64| us.div_euclid(1_000_000).clamp(0, i64::from(u32::MAX));
            let frac = |us: i64| us.rem_euclid(1_000_000);
            let (t, r) = (reader.event_time_us(row), reader.receive_time_us(row));
            writeln!(
                rows,
                "{{\"tenant\":{},\"event_time\":{},\"event_time_us\":{},\"receive_time\":{},\"event_id\":{},\"collector_id\":{},\"batch_seq\":{seq},\"batch_row\":{batch_row},\"source_kind\":{},\"host\":{},\"severity\":{},\"message\":{},\"field_keys\":{},\"field_values\":{}}}",
                json(reader.tenant(row)),
                secs(t),
                frac(t),
                secs(r),
                json(&EventId::derive(collector.as_str(), seq, batch_row).to_string()),
                json(reader.collector_id(row)),
                json(SourceKind::WindowsEvent.name()),
                json(reader.host(row).unwrap_or("")),
                reader
                    .severity(row)
                    .map_or("null".into(), |s| s.to_string()),
                json(reader.message(row).unwrap_or("")),
                json_list(keys.iter().map(String::as_str)),
                json_list(values.iter().map(String::as_str)),
            )?;
            stored += 1;
        }
    }
    std::fs::write(dir.join("events.jsonl"), rows)?;

    let mut cases = String::new();
    let mut compared = 0usize;
    for (r, rule) in set.rules().iter().enumerate() {
        if rule.kind != SourceKind::WindowsEvent {
            continue;
        }
        let (expr, atoms, mapping) = set.compiled(r).ok_or("compiled rule")?;
        let head = format!(
            "\"rule\":{r},\"id\":{},\"title\":{},\"source\":{}",
            json(&rule.meta.id),
            json(&rule.meta.title),
            json(&rule.source)
        );
        match varde_rules::sql::condition(expr, atoms, mapping) {
            Ok(sql) => {
                let expected = engine.get(&r).cloned().unwrap_or_default();
                writeln!(
                    cases,
                    "{{{head},\"sql\":{},\"expected\":{}}}",
                    json(&sql),
                    json_list(expected.iter().map(String::as_str))
                )?;
                compared += 1;
            }
            Err(e) => writeln!(cases, "{{{head},\"unsupported\":{}}}", json(&e.to_string()))?,
        }
    }
    std::fs::write(dir.join("cases.jsonl"), cases)?;
    println!(
        "{}: {stored} events, {compared} Windows rules with SQL ({} fired in the engine)",
        dir.display(),
        engine.len()
    );
    Ok(())
}
