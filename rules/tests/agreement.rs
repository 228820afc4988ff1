//! Property test: the vectorised engine agrees with the row-at-a-time reference matcher on
//! generated events, for every Windows rule of the SigmaHQ corpus (`../shared/corpus`; skipped,
//! saying so, when it is absent) and for a hand-made set that exercises every modifier.
//!
//! Events are built from the rules' own values (so rules do fire), decorated with prefixes,
//! suffixes, case changes and non-ASCII letters whose lowercase is tricky.

use std::sync::OnceLock;

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use varde_core::{BatchBuilder, CollectorId, Event, Kommunenummer, SourceKind, Value};
use varde_rules::{RuleSet, RuleSetBuilder};

use varde_testkit::sigma::EVENT_FIELDS as FIELDS;

struct Corpus {
    set: RuleSet,
    vocab: Vec<String>,
}

fn corpus() -> &'static Option<Corpus> {
    static CORPUS: OnceLock<Option<Corpus>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let (builder, vocab) = varde_testkit::sigma::windows_rules_with_vocabulary();
        Some(Corpus {
            set: builder.build().expect("rule set"),
            vocab,
        })
    })
}

fn decorated(vocab: &'static [String]) -> impl Strategy<Value = String> {
    (
        0..vocab.len(),
        prop::sample::select(vec!["", "C:\\Windows\\", " ", "x", "\\"]),
        prop::sample::select(vec!["", ".exe", " -x", "\\", " "]),
        0..4u8,
        prop::sample::select(vec!["", "Ä", "ſ", "İ", "ß", "K"]),
    )
        .prop_map(move |(i, pre, suf, case, odd)| {
            let base = format!("{pre}{}{odd}{suf}", vocab[i]);
            match case {
                0 => base,
                1 => base.to_uppercase(),
                2 => base.to_lowercase(),
                _ => base
                    .chars()
                    .enumerate()
                    .map(|(i, c)| {
                        if i % 2 == 0 {
                            c.to_ascii_uppercase()
                        } else {
                            c
                        }
                    })
                    .collect(),
            }
        })
}

fn event(vocab: &'static [String]) -> impl Strategy<Value = Event> {
    let fields: Vec<_> = FIELDS
        .iter()
        .map(|f| {
            prop_oneof![
                3 => Just(None),
                1 => Just(Some(((*f).to_owned(), String::new()))),
                6 => decorated(vocab).prop_map(move |v| Some(((*f).to_owned(), v))),
            ]
        })
        .collect();
    (
        prop::sample::select(vec![1u64, 1, 1, 3, 4104, 13]),
        prop::sample::select(vec![
            "Microsoft-Windows-Sysmon/Operational",
            "Security",
            "Microsoft-Windows-PowerShell/Operational",
        ]),
        fields,
        prop::option::of(decorated(vocab)),
    )
        .prop_map(|(id, channel, fields, parent_user)| {
            let mut attrs: Vec<(String, String)> = fields.into_iter().flatten().collect();
            if let Some(p) = parent_user {
                attrs.push(("ParentUser".into(), p));
            }
            Event {
                typed: vec![
                    ("win_event_id", Value::UInt(id)),
                    ("channel", Value::Str(channel.into())),
                ],
                attrs,
                ..Event::default()
            }
        })
}

fn batch_of(events: &[Event]) -> arrow_array::RecordBatch {
    let mut b = BatchBuilder::new(
        SourceKind::WindowsEvent,
        Kommunenummer::parse("0301").expect("tenant"),
        CollectorId::new("prop").expect("id"),
        events.len(),
    );
    for e in events {
        b.push(e).expect("push");
    }
    b.finish().expect("batch")
}

/// The engine and the reference find the same matches.
fn agree(set: &RuleSet, events: &[Event]) -> Result<(), TestCaseError> {
    let batch = batch_of(events);
    let mut fast = set
        .match_batch(SourceKind::WindowsEvent, &batch)
        .expect("match");
    let mut slow = set
        .match_batch_reference(SourceKind::WindowsEvent, &batch)
        .expect("reference");
    fast.sort();
    slow.sort();
    prop_assert_eq!(fast, slow);
    Ok(())
}

fn check(events: &[Event]) -> Result<(), TestCaseError> {
    match corpus() {
        Some(c) => agree(&c.set, events),
        None => Ok(()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn vectorised_engine_agrees_with_the_reference(
        events in prop::collection::vec(event(corpus().as_ref().map_or(&[][..], |c| &c.vocab[..])), 1..24)
    ) {
        check(&events)?;
    }
}

/// Batches large enough that command lines stop being cached (they rarely repeat) and are
/// scanned value by value: every rule of the corpus and of the small sets agrees with the
/// reference, on batches of odd and even length.
#[test]
fn uncached_values_agree_with_the_reference() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for len in [1_201, 1_200] {
        let mut events: Vec<Event> = prop::collection::vec(small_event(), len)
            .new_tree(&mut runner)
            .expect("tree")
            .current();
        for (i, e) in events.iter_mut().enumerate() {
            let unique = format!("{i} ");
            match e.attrs.iter_mut().find(|(k, _)| k == "CommandLine") {
                Some((_, v)) => v.insert_str(0, &unique),
                None => e.attrs.push(("CommandLine".to_owned(), unique)),
            }
            // Every fifth row holds a second value, not ASCII.
            if i % 5 == 0 && i + 1 < len {
                e.attrs
                    .push(("CommandLine".to_owned(), "ärlig -nop".to_owned()));
            }
        }
        // The last row matches.
        if let Some(last) = events.last_mut() {
            last.attrs = vec![("CommandLine".to_owned(), format!("{len} iex -nop"))];
        }
        for set in [small(), keywords()] {
            agree(set, &events).expect("agreement");
        }
        if let Some(c) = corpus() {
            agree(&c.set, &events).expect("agreement on the corpus");
        }
    }
}

#[test]
fn generated_events_do_fire_rules() {
    // Guards the property test against vacuity: its events must make rules match.
    let Some(c) = corpus() else { return };
    let vocab: &'static [String] = &c.vocab;
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let mut total = 0;
    for _ in 0..8 {
        let events = prop::collection::vec(event(vocab), 24)
            .new_tree(&mut runner)
            .expect("tree")
            .current();
        total += c
            .set
            .match_batch(SourceKind::WindowsEvent, &batch_of(&events))
            .expect("match")
            .len();
    }
    assert!(total > 20, "only {total} matches on 192 generated events");
}

const SMALL: &str = r#"
title: positions
id: small-1
logsource: {product: windows}
detection:
    s1:
        Image|startswith: 'c:\win'
    s2:
        Image|endswith: '.exe'
    s3:
        Image: 'c:\windows\cmd.exe'
    s4:
        CommandLine|contains: '-nop'
    s5:
        CommandLine: '*-w?hidden*'
    s6:
        CommandLine|contains|all: ['iex', 'http']
    s7:
        Image|cased: 'C:\Windows\CMD.exe'
    s8:
        Image|contains: 'ärlig'
    condition: 1 of them
---
title: combos
id: small-2
logsource: {product: windows}
detection:
    a:
        Image|endswith: '\cmd.exe'
    b:
        CommandLine|startswith: '/c'
    f:
        CommandLine|contains: 'whoami'
    condition: a and b and not f
---
title: a case-sensitive expression
id: small-6
logsource: {product: windows}
detection:
    r:
        CommandLine|re: 'iex.*-nop'
    condition: r
---
title: keywords beside fields
id: small-3
logsource: {product: windows}
detection:
    keywords:
        - whoami
        - 'iex'
    img:
        Image|endswith: '.exe'
    cmd:
        CommandLine|contains: '-nop'
    condition: (img and keywords) or (not cmd and not keywords)
---
title: keywords under not
id: small-4
logsource: {product: windows}
detection:
    kw:
        - 'http'
    kw2:
        - '*-w?hidden*'
    img:
        Image|startswith: 'c:\win'
    condition: img and kw and not kw2
---
title: keywords alone
id: small-5
logsource: {product: windows}
detection:
    kw:
        - 'ärlig'
    img:
        Image|endswith: 'cmd.exe'
    condition: img and not kw
"#;

/// Keyword rules whose tests are all uncased `contains`: searched in a row's values joined.
const KEYWORDS: &str = r#"
title: keywords beside fields
id: kw-1
logsource: {product: windows}
detection:
    keywords:
        - whoami
        - 'ärlig'
        - 'c:\win'
        - 'ſ'
    img:
        Image|endswith: '.exe'
    condition: keywords and not img
---
title: every keyword
id: kw-2
logsource: {product: windows}
detection:
    kw:
        '|all':
            - iex
            - http
    condition: kw
---
title: a keyword with a control byte
id: kw-3
logsource: {product: windows}
detection:
    kw:
        - "x\0"
    condition: kw
"#;

/// A rule set of one YAML text, compiled without errors.
fn compiled(name: &str, yaml: &str) -> RuleSet {
    let mut b = RuleSetBuilder::new(Default::default()).expect("mappings");
    b.add_yaml(name, yaml);
    let set = b.build().expect(name);
    assert!(set.errors().is_empty(), "{name}: {:?}", set.errors());
    set
}

fn keywords() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| compiled("keywords.yml", KEYWORDS))
}

fn small() -> &'static RuleSet {
    static SET: OnceLock<RuleSet> = OnceLock::new();
    SET.get_or_init(|| compiled("small.yml", SMALL))
}

fn small_value() -> impl Strategy<Value = String> {
    let pieces = vec![
        "c:\\windows\\cmd.exe",
        "C:\\Windows\\CMD.exe",
        "c:\\win",
        "x",
        " ",
        ".exe",
        "-nop",
        "-w hidden",
        "-wXhidden",
        "iex",
        "http",
        "/c",
        "whoami",
        "ärlig",
        "ÄRLIG",
        "\\cmd.exe",
        "İ",
        "ſ",
        "who",
        "ami",
        "\0",
        "\u{1}",
        "ÄRLIG\0",
        "IEX",
        "-NOP",
    ];
    prop::collection::vec(prop::sample::select(pieces), 0..5).prop_map(|p| p.concat())
}

fn small_event() -> impl Strategy<Value = Event> {
    (
        prop::option::of(small_value()),
        prop::option::of(small_value()),
    )
        .prop_map(|(image, cmd)| {
            let mut attrs = Vec::new();
            attrs.extend(image.map(|v| ("Image".to_owned(), v)));
            attrs.extend(cmd.map(|v| ("CommandLine".to_owned(), v)));
            Event {
                typed: vec![
                    ("win_event_id", Value::UInt(1)),
                    (
                        "channel",
                        Value::Str("Microsoft-Windows-Sysmon/Operational".into()),
                    ),
                ],
                attrs,
                ..Event::default()
            }
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn vectorised_engine_agrees_on_positions_and_case(events in prop::collection::vec(small_event(), 1..40)) {
        agree(small(), &events)?;
    }

    #[test]
    fn keywords_searched_in_joined_values_agree_with_the_reference(events in prop::collection::vec(small_event(), 1..40)) {
        agree(keywords(), &events)?;
    }
}
