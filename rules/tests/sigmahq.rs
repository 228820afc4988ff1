//! SigmaHQ's own rules and regression samples (`../shared/corpus/sigmahq`): every rule loads or
//! is rejected with a precise reason, and every regression sample is matched by its rule.
//! Skips, saying so, when the corpus is absent.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use varde_core::{BatchBuilder, CollectorId, Kommunenummer, SourceKind};
use varde_rules::RuleSetBuilder;

fn corpus() -> Option<PathBuf> {
    let dir = varde_testkit::workspace_root().join("../shared/corpus/sigmahq");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: SigmaHQ corpus not found at {} (see ../shared/corpus/README.md)",
            dir.display()
        );
        None
    }
}

fn load_all(corpus: &Path) -> varde_rules::RuleSet {
    let mut builder = RuleSetBuilder::new(Default::default()).expect("mappings");
    let paths: Vec<PathBuf> = ["rules", "rules-emerging-threats", "rules-threat-hunting"]
        .iter()
        .map(|d| corpus.join(d))
        .collect();
    varde_rules::load::add_paths(&mut builder, &paths).expect("corpus readable");
    builder.build().expect("rule set")
}

#[test]
fn every_corpus_rule_loads_or_says_why() {
    let Some(corpus) = corpus() else { return };
    let set = load_all(&corpus);
    let mut by_class: BTreeMap<&str, usize> = BTreeMap::new();
    for e in set.errors() {
        *by_class.entry(e.class).or_default() += 1;
        eprintln!(
            "rejected {} ({}): {}",
            e.source,
            e.title.as_deref().unwrap_or("?"),
            e.reason
        );
    }
    let unmapped = set
        .rules()
        .iter()
        .filter(|r| !r.unmapped_fields.is_empty())
        .count();
    eprintln!(
        "loaded {} rules, rejected {} {:?}; {} loaded rules test fields their source kind lacks",
        set.rules().len(),
        set.errors().len(),
        by_class,
        unmapped
    );
    for e in set.errors() {
        assert!(!e.reason.is_empty());
        assert!(
            e.rule_id.is_some() || e.class == "yaml" || e.class == "io",
            "{e:?}"
        );
    }
    // Only rules whose placeholders are not configured may be rejected.
    let others: Vec<_> = set
        .errors()
        .iter()
        .filter(|e| e.class != "placeholder")
        .collect();
    assert!(
        others.is_empty(),
        "{} rules rejected for other reasons: {others:#?}",
        others.len()
    );
}

fn sample_batch(json_file: &Path) -> arrow_array::RecordBatch {
    let text = std::fs::read_to_string(json_file).expect("sample readable");
    let mut b = BatchBuilder::new(
        SourceKind::WindowsEvent,
        Kommunenummer::parse("0301").expect("tenant"),
        CollectorId::new("sigmahq-regression").expect("id"),
        8,
    );
    for doc in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>() {
        let doc = doc.expect("sample JSON");
        let event = varde_core::windows::event_from_evtx_json(&doc, 0).expect("a Windows event");
        b.push(&event).expect("fits the schema");
    }
    b.finish().expect("batch")
}

#[test]
fn every_regression_sample_is_matched_by_its_rule() {
    let Some(corpus) = corpus() else { return };
    let set = load_all(&corpus);
    let index: BTreeMap<&str, usize> = set
        .rules()
        .iter()
        .enumerate()
        .map(|(i, r)| (r.meta.id.as_str(), i))
        .collect();
    let mut infos = Vec::new();
    let mut stack = vec![corpus.join("regression_data")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("readable") {
            let p = entry.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "info.yml") {
                infos.push(p);
            }
        }
    }
    infos.sort();
    assert!(!infos.is_empty(), "no regression samples found");
    let mut failures = Vec::new();
    for info in &infos {
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&std::fs::read_to_string(info).expect("info")).expect("info yaml");
        let rule_id = yaml["rule_metadata"][0]["id"].as_str().expect("rule id");
        let evtx = yaml["regression_tests_info"][0]["path"]
            .as_str()
            .expect("path");
        let json = corpus.join(evtx).with_extension("json");
        let Some(&rule) = index.get(rule_id) else {
            failures.push(format!("{}: rule {rule_id} did not load", info.display()));
            continue;
        };
        let batch = sample_batch(&json);
        let matches = set
            .match_batch(SourceKind::WindowsEvent, &batch)
            .expect("match");
        if !matches.iter().any(|m| m.rule as usize == rule) {
            failures.push(format!(
                "{}: {} ({rule_id}) did not match",
                json.display(),
                set.rules()[rule].meta.title
            ));
        }
        let reference = set
            .match_batch_reference(SourceKind::WindowsEvent, &batch)
            .expect("reference");
        let mut a = matches.clone();
        let mut b = reference;
        a.sort();
        b.sort();
        if a != b {
            failures.push(format!("{}: engine and reference disagree", json.display()));
        }
    }
    eprintln!(
        "{} regression samples, {} failures",
        infos.len(),
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
