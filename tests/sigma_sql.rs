//! Differential test: SigmaHQ rules converted to ClickHouse SQL select exactly the stored events
//! that the streaming engine matches, on the real ClickHouse that `deploy/dev/services.sh up`
//! starts (18.16 in CI). Events are generated from the rules' own values (so rules fire),
//! stored through the store's writer, matched by the engine, and queried back by SQL.
//! The corpus part skips, saying so, when `../shared/corpus` is absent; the hand-made rules
//! (every modifier) always run.

use std::collections::{BTreeMap, BTreeSet};

use varde_core::{BatchBuilder, CollectorId, Envelope, EventId, Kommunenummer, SourceKind};
use varde_rules::RuleSet;
use varde_store::EventStore;
use varde_testkit::TestEnv;

use varde_testkit::sigma::windows_events;

fn rules_and_vocab() -> (RuleSet, Vec<String>) {
    let (builder, vocab) = varde_testkit::sigma::windows_rules_with_vocabulary();
    (builder.build().expect("rule set"), vocab)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_selects_exactly_what_the_engine_matches() {
    let env = TestEnv::new("sigma_sql");
    let store = env.store().await;
    let (set, vocab) = rules_and_vocab();
    let vocab = varde_testkit::sigma::sql_comparable(vocab);
    let tenant = Kommunenummer::parse("0301").expect("tenant");
    let collector = CollectorId::new("k0301-sqltest").expect("id");

    // Store the events, and record what the engine matches, by event id.
    let mut engine: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
    let mut envelopes = Vec::new();
    for (seq, chunk) in windows_events(&vocab, 2000).chunks(500).enumerate() {
        let mut b = BatchBuilder::new(
            SourceKind::WindowsEvent,
            tenant,
            collector.clone(),
            chunk.len(),
        );
        for e in chunk {
            b.push(e).expect("push");
        }
        let batch = b.finish().expect("batch");
        for m in set
            .match_batch(SourceKind::WindowsEvent, &batch)
            .expect("match")
        {
            let id = EventId::derive(collector.as_str(), seq as u64, m.row);
            engine
                .entry(m.rule as usize)
                .or_default()
                .insert(id.to_string());
        }
        envelopes.push(
            Envelope::new(
                SourceKind::WindowsEvent,
                tenant,
                collector.clone(),
                seq as u64,
                batch,
            )
            .expect("envelope"),
        );
    }
    store
        .write_envelopes(&envelopes)
        .await
        .expect("store events");

    // Ask ClickHouse, 40 rules per query.
    // Every Windows rule (the hand-made one is rule 0).
    let rules: Vec<usize> = (0..set.rules().len())
        .filter(|&r| set.rules()[r].kind == SourceKind::WindowsEvent)
        .collect();
    let mut unsupported = Vec::new();
    let mut mismatches = Vec::new();
    let mut compared = 0usize;
    let started = std::time::Instant::now();
    for chunk in rules.chunks(20) {
        let mut conds = Vec::new();
        let mut ids = Vec::new();
        for &r in chunk {
            let (expr, atoms, mapping) = set.compiled(r).expect("compiled");
            match varde_rules::sql::condition(expr, atoms, mapping) {
                Ok(c) => {
                    conds.push(format!("toString(toUInt8({c}))"));
                    ids.push(r);
                }
                Err(e) => unsupported.push(format!("{}: {e}", set.rules()[r].meta.title)),
            }
        }
        if conds.is_empty() {
            continue;
        }
        let sql = format!(
            "SELECT concat(lower(hex(event_id)), ' ', {}) FROM {{db}}.events FINAL",
            conds.join(", ")
        );
        let rows = store
            .select_strings(&sql)
            .await
            .expect("rule SQL runs on ClickHouse");
        let mut by_sql: BTreeMap<usize, BTreeSet<String>> = BTreeMap::new();
        for row in rows {
            let (id, flags) = row.split_once(' ').expect("id and flags");
            for (i, f) in flags.chars().enumerate() {
                if f == '1' {
                    by_sql.entry(ids[i]).or_default().insert(id.to_owned());
                }
            }
        }
        for &r in &ids {
            compared += 1;
            let a = engine.get(&r).cloned().unwrap_or_default();
            let b = by_sql.get(&r).cloned().unwrap_or_default();
            if a != b {
                mismatches.push(format!(
                    "{} ({}): engine {} events, SQL {} events",
                    set.rules()[r].meta.title,
                    set.rules()[r].source,
                    a.len(),
                    b.len()
                ));
            }
        }
    }
    let fired = engine.len();
    eprintln!(
        "{compared} rules compared on 2000 stored events in {:.1} s ({fired} fired at least once), {} unsupported, {} mismatches",
        started.elapsed().as_secs_f64(),
        unsupported.len(),
        mismatches.len()
    );
    // Without the corpus only the hand-made every-modifier rule is compared.
    let min_fired = if varde_testkit::corpus_dir().is_some() {
        20
    } else {
        1
    };
    assert!(
        fired >= min_fired,
        "too few rules fired ({fired}) for the comparison to mean much"
    );
    assert!(unsupported.is_empty(), "{unsupported:#?}");
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    env.cleanup().await;
}
