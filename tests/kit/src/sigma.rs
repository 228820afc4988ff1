//! Sigma test material shared by the engine's property tests and the SQL differential test.

use std::collections::BTreeSet;

use varde_core::{Event, Value};
use varde_rules::RuleSetBuilder;
use varde_rules::ast::Document;

/// A Windows rule that uses every modifier once (`1 of them`), loaded as `handmade.yml`.
pub const EVERY_MODIFIER: &str = r#"
title: every modifier
id: hand-1
logsource: {product: windows}
detection:
    a:
        CommandLine|contains|windash: ' -enc '
    b:
        CommandLine|re|i: 'invoke-\w+'
    c:
        DestinationIp|cidr: ['10.0.0.0/8', 'fe80::/10', '2001:db8:8000::/33']
    d:
        DestinationPort|gte: 1024
    e:
        Image|endswith|cased: '.EXE'
    f:
        User|fieldref: ParentUser
    g:
        Details: null
    h:
        ScriptBlockText|base64offset|contains: 'IEX ('
    i:
        Image: '*\\?md.*'
    j:
        - 'mimikatz'
        - 'ÆØÅ'
    k:
        TargetObject|exists: true
    l:
        Hashes|neq: ''
    m:
        UtcTime|hour: 3
    condition: 1 of them
"#;

/// Small Windows rules, one test each, on the inputs where ClickHouse releases and the engine
/// are easiest to tell apart (malformed addresses, number and time text, newlines), loaded as
/// `edgecases.yml`.
pub const EDGE_CASES: &str = r#"
title: edge cidr v4
id: edge-1
logsource: {product: windows}
detection: {sel: {DestinationIp|cidr: '10.0.0.0/8'}, condition: sel}
---
title: edge cidr any v4
id: edge-2
logsource: {product: windows}
detection: {sel: {DestinationIp|cidr: '0.0.0.0/0'}, condition: sel}
---
title: edge cidr any v6
id: edge-3
logsource: {product: windows}
detection: {sel: {DestinationIp|cidr: '::/0'}, condition: sel}
---
title: edge cidr link-local
id: edge-4
logsource: {product: windows}
detection: {sel: {DestinationIp|cidr: ['fe80::/10', '2001:db8:8000::/33']}, condition: sel}
---
title: edge not in cidr
id: edge-5
logsource: {product: windows}
detection: {sel: {DestinationIp|cidr: '10.0.0.0/8'}, condition: not sel}
---
title: edge dot and newline
id: edge-6
logsource: {product: windows}
detection: {sel: {CommandLine|re: 'enc.AAA'}, condition: sel}
---
title: edge number
id: edge-7
logsource: {product: windows}
detection: {sel: {DestinationPort|gt: 1}, condition: sel}
---
title: edge hour
id: edge-8
logsource: {product: windows}
detection: {sel: {UtcTime|hour: 3}, condition: sel}
---
title: edge minute and year
id: edge-9
logsource: {product: windows}
detection: {a: {UtcTime|minute: 14}, b: {UtcTime|year: 1970}, c: {UtcTime|month: 3}, condition: 1 of them}
"#;

/// Values that some generated events carry in these fields instead of rule vocabulary: malformed
/// and edge-case addresses (`cidr`), numbers (`lt`/`gt`), times and newlines.
pub const TRICKY_VALUES: &[(&str, &[&str])] = &[
    (
        "DestinationIp",
        &[
            "10.1.2.3",
            " 10.1.2.3",
            "10.1.2.3 ",
            "\u{a0}10.1.2.3",
            "300.1.1.1",
            "010.1.2.3",
            "1.2.3",
            "C:\\x",
            "C:\\Windows\\System32",
            "::zz",
            "::",
            "::1",
            "fe80::1",
            "FE80::1%eth0",
            "fe80::1 ",
            "::ffff:10.1.2.3",
            "1:2:3:4:5:6:7:8:9",
            "2001:db8:8123::1",
            "[::1]",
        ],
    ),
    (
        "DestinationPort",
        &[
            "4444", " 4444", "+2000", "+inf", "-inf", ".", "e5", "1e3", "+.5e-1", "-5", "0x10",
            "nan",
        ],
    ),
    (
        "UtcTime",
        &[
            "2024-05-01 03:15:00.000",
            " 2024-05-01 03:14:00",
            "2024-02-31 03:15:00",
            "2024-03-01T03:14:00Z",
            "2024-05-01 05:15:00+02:00",
            "4444",
            "1714533300",
            "1714533300000",
            "2105-12-31 03:15:00",
            "1970-01-01T03:14:59.5+00:00",
            "03:15",
        ],
    ),
    ("CommandLine", &["enc AAA", "x enc\nAAA", "enc\r\nAAA"]),
];

/// The Windows event fields the generated test events fill: the fields SigmaHQ's Windows rules
/// and [`EVERY_MODIFIER`] test most.
pub const EVENT_FIELDS: &[&str] = &[
    "Image",
    "CommandLine",
    "ParentImage",
    "OriginalFileName",
    "ParentCommandLine",
    "User",
    "ParentUser",
    "IntegrityLevel",
    "TargetObject",
    "TargetFilename",
    "Details",
    "ImageLoaded",
    "DestinationIp",
    "DestinationPort",
    "ScriptBlockText",
    "Hashes",
    "UtcTime",
];

/// A rule-set builder holding [`EVERY_MODIFIER`] and, when the corpus is present, every SigmaHQ
/// rule under `rules/windows`; and the vocabulary of those rules' string values (wildcards
/// removed) plus a few values that make the hand-made rule fire. Says so on stderr when the
/// corpus is absent.
pub fn windows_rules_with_vocabulary() -> (RuleSetBuilder, Vec<String>) {
    let mut builder = RuleSetBuilder::new(Default::default()).expect("shipped mappings");
    builder.add_yaml("handmade.yml", EVERY_MODIFIER);
    builder.add_yaml("edgecases.yml", EDGE_CASES);
    let mut vocab: BTreeSet<String> = BTreeSet::new();
    match crate::corpus_dir()
        .map(|c| c.join("sigmahq/rules/windows"))
        .filter(|d| d.is_dir())
    {
        Some(dir) => {
            for file in varde_rules::load::rule_files(&dir).expect("corpus readable") {
                let text = std::fs::read_to_string(&file).expect("rule readable");
                for doc in varde_rules::ast::parse_documents(&text)
                    .into_iter()
                    .flatten()
                {
                    if let Document::Rule(r) = doc {
                        vocab.extend(r.detection.string_values().map(|s| s.replace('*', "")));
                    }
                }
                builder.add_yaml(&file.display().to_string(), &text);
            }
        }
        None => {
            eprintln!("SKIPPED the corpus part: ../shared/corpus/sigmahq/rules/windows not found")
        }
    }
    vocab.extend(
        [
            "powershell -enc AAA",
            "Invoke-Mimikatz",
            "10.1.2.3",
            "fe80::1",
            "2001:db8:8123::1",
            "SUVYICgo",
            "cmd.exe",
            "2024-05-01 03:15:00.000",
            "4444",
            "80",
            "ÆØÅ",
        ]
        .map(String::from),
    );
    (builder, vocab.into_iter().collect())
}

/// The values of `vocab` whose lowercase ClickHouse's `lowerUTF8` (18.16's included) and Rust
/// agree on: ASCII and Norwegian letters only.
pub fn sql_comparable(vocab: Vec<String>) -> Vec<String> {
    vocab
        .into_iter()
        .filter(|v| v.chars().all(|c| c.is_ascii() || "æøåÆØÅ".contains(c)))
        .collect()
}

/// A small deterministic generator (xorshift).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// `n` Windows events whose [`EVENT_FIELDS`] take values built from `vocab` (with prefixes,
/// suffixes, upper case, empty and absent values mixed in), spread over Sysmon process
/// creation, Security 4688, registry and PowerShell events: input on which many rules fire.
/// Fields of [`TRICKY_VALUES`] take one of those values in about a third of the events.
/// Deterministic.
pub fn windows_events(vocab: &[String], n: usize) -> Vec<Event> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pre = ["", "C:\\Windows\\", " ", "x"];
    let suf = ["", ".exe", " -x", "\\"];
    (0..n)
        .map(|_| {
            let mut attrs = Vec::new();
            for f in EVENT_FIELDS {
                let tricky = TRICKY_VALUES.iter().find(|(t, _)| t == f).map(|(_, v)| *v);
                match rng.below(10) {
                    0..=2 => {}
                    4..=6 if tricky.is_some() => {
                        let values = tricky.unwrap_or_default();
                        attrs.push(((*f).to_owned(), values[rng.below(values.len())].to_owned()));
                    }
                    3 => attrs.push(((*f).to_owned(), String::new())),
                    _ => {
                        let mut v = format!(
                            "{}{}{}",
                            pre[rng.below(4)],
                            vocab[rng.below(vocab.len())],
                            suf[rng.below(4)]
                        );
                        if rng.below(3) == 0 {
                            v = v.to_uppercase();
                        }
                        attrs.push(((*f).to_owned(), v));
                    }
                }
            }
            let (id, channel) = [
                (1, "Microsoft-Windows-Sysmon/Operational"),
                (1, "Microsoft-Windows-Sysmon/Operational"),
                (4688, "Security"),
                (13, "Microsoft-Windows-Sysmon/Operational"),
                (4104, "Microsoft-Windows-PowerShell/Operational"),
            ][rng.below(5)];
            Event {
                event_time_us: 1_714_557_600_000_000,
                receive_time_us: 1_714_557_600_000_000,
                host: Some("pc01.kommune.local".into()),
                typed: vec![
                    ("win_event_id", Value::UInt(id)),
                    ("channel", Value::Str(channel.into())),
                ],
                attrs,
                ..Event::default()
            }
        })
        .collect()
}
