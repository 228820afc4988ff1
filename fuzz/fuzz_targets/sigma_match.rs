//! Fuzzed field values against a rule set using every modifier: matching never panics, and the
//! vectorised engine agrees with the reference matcher.
#![no_main]
use std::sync::OnceLock;

use varde_core::{BatchBuilder, CollectorId, Event, Kommunenummer, SourceKind, Value};
use varde_rules::RuleSet;

const RULES: &str = r#"
title: fuzz
id: fuzz-1
logsource: {product: windows}
detection:
    a: {CommandLine|contains|windash: ' -enc '}
    b: {CommandLine|re|i: 'invoke-\w+'}
    c: {Image|cidr: ['10.0.0.0/8', 'fe80::/10']}
    d: {Image|gte: 1024}
    e: {Image|endswith|cased: '.EXE'}
    f: {Image|fieldref: CommandLine}
    g: {Image: null}
    h: {CommandLine|base64offset|contains: 'IEX ('}
    i: {Image: '*\?md.*'}
    j: ['mimikatz', 'ÆØÅ']
    k: {CommandLine|startswith: 'c:\win'}
    l: {Image|hour: 3}
    condition: 1 of them
"#;

fn rules() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| {
        let mut b = varde_rules::RuleSetBuilder::new(Default::default()).expect("mappings");
        b.add_yaml("fuzz.yml", RULES);
        b.build().expect("rules")
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\u{1}');
    let image = parts.next().unwrap_or_default().to_owned();
    let cmd = parts.next().unwrap_or_default().to_owned();
    let (Ok(tenant), Ok(id)) = (Kommunenummer::parse("0301"), CollectorId::new("fuzz")) else { return };
    let mut b = BatchBuilder::new(SourceKind::WindowsEvent, tenant, id, 1);
    let event = Event {
        typed: vec![("win_event_id", Value::UInt(1))],
        attrs: vec![("Image".into(), image), ("CommandLine".into(), cmd)],
        ..Event::default()
    };
    if b.push(&event).is_err() {
        return;
    }
    let Ok(batch) = b.finish() else { return };
    let set = rules();
    let mut fast = set.match_batch(SourceKind::WindowsEvent, &batch).expect("match");
    let mut slow = set.match_batch_reference(SourceKind::WindowsEvent, &batch).expect("reference");
    fast.sort();
    slow.sort();
    assert_eq!(fast, slow, "engine and reference disagree on {text:?}");
});
