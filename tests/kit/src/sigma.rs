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
/// Deterministic.
pub fn windows_events(vocab: &[String], n: usize) -> Vec<Event> {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let pre = ["", "C:\\Windows\\", " ", "x"];
    let suf = ["", ".exe", " -x", "\\"];
    (0..n)
        .map(|_| {
            let mut attrs = Vec::new();
            for f in EVENT_FIELDS {
                match rng.below(10) {
                    0..=2 => {}
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
