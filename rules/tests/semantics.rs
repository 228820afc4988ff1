//! The semantics of Sigma as Varde implements it: every modifier, the condition language, meta
//! filters, and one test for each point where engines disagree (see `varde_rules::reference`).
//! Every case is checked on both the vectorised engine and the reference matcher.

use varde_core::{BatchBuilder, CollectorId, Event, Kommunenummer, SourceKind, Value};
use varde_rules::RuleSetBuilder;
use varde_rules::compile::Placeholders;

const SYSMON: &str = "Microsoft-Windows-Sysmon/Operational";

fn win(attrs: &[(&str, &str)]) -> Event {
    Event {
        typed: vec![
            ("win_event_id", Value::UInt(1)),
            ("channel", Value::Str(SYSMON.into())),
        ],
        attrs: attrs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        ..Event::default()
    }
}

/// Which of `events` the rule `detection` (process_creation) matches, on both engines.
fn matching_with(
    detection: &str,
    events: &[Event],
    placeholders: Placeholders,
    extra: &str,
) -> Vec<usize> {
    matching_in(
        "{product: windows, category: process_creation}",
        detection,
        events,
        placeholders,
        extra,
    )
}

/// Which of `events` the rule `detection` with this logsource matches, on both engines.
fn matching_in(
    logsource: &str,
    detection: &str,
    events: &[Event],
    placeholders: Placeholders,
    extra: &str,
) -> Vec<usize> {
    let yaml =
        format!("title: t\nid: r1\nlogsource: {logsource}\ndetection:\n{detection}\n{extra}");
    let mut b = RuleSetBuilder::new(placeholders).expect("mappings");
    b.add_yaml("test.yml", &yaml);
    let set = b.build().expect("build");
    assert!(set.errors().is_empty(), "{:?}", set.errors());
    let mut batch = BatchBuilder::new(
        SourceKind::WindowsEvent,
        Kommunenummer::parse("0301").expect("tenant"),
        CollectorId::new("t").expect("id"),
        events.len(),
    );
    for e in events {
        batch.push(e).expect("push");
    }
    let batch = batch.finish().expect("batch");
    let mut fast: Vec<usize> = set
        .match_batch(SourceKind::WindowsEvent, &batch)
        .expect("match")
        .iter()
        .map(|m| m.row as usize)
        .collect();
    let mut slow: Vec<usize> = set
        .match_batch_reference(SourceKind::WindowsEvent, &batch)
        .expect("reference")
        .iter()
        .map(|m| m.row as usize)
        .collect();
    fast.sort_unstable();
    slow.sort_unstable();
    assert_eq!(fast, slow, "engine and reference disagree");
    fast
}

fn matching(detection: &str, events: &[Event]) -> Vec<usize> {
    matching_with(detection, events, Placeholders::new(), "")
}

fn rejected(detection: &str) -> String {
    let yaml =
        format!("title: t\nid: r1\nlogsource: {{product: windows}}\ndetection:\n{detection}\n");
    let mut b = RuleSetBuilder::new(Placeholders::new()).expect("mappings");
    b.add_yaml("test.yml", &yaml);
    let set = b.build().expect("build");
    assert_eq!(set.rules().len(), 0, "rule was accepted");
    set.errors()[0].reason.clone()
}

#[test]
fn plain_values_are_whole_value_case_insensitive() {
    let ev = [
        win(&[("Image", r"C:\Windows\CMD.exe")]),
        win(&[("Image", r"C:\Windows\cmd.exe.bak")]),
    ];
    assert_eq!(
        matching(
            "  sel:\n    Image: 'c:\\windows\\cmd.exe'\n  condition: sel",
            &ev
        ),
        vec![0]
    );
}

#[test]
fn unicode_case_folding_decision() {
    // Decision: Unicode lowercase on both sides, so Norwegian letters fold too.
    let ev = [
        win(&[("User", "KOMMUNE\\ÆRLIG.ØSTBY")]),
        win(&[("User", "kommune\\ærlig.østby")]),
    ];
    assert_eq!(
        matching(
            "  sel:\n    User|contains: 'ærlig.øst'\n  condition: sel",
            &ev
        ),
        vec![0, 1]
    );
    assert_eq!(
        matching(
            "  sel:\n    User|contains|cased: 'ærlig'\n  condition: sel",
            &ev
        ),
        vec![1]
    );
}

#[test]
fn wildcards_and_escapes() {
    let ev = [
        win(&[("CommandLine", "net user admin /add")]),
        win(&[("CommandLine", "net  user x")]),
        win(&[("CommandLine", "select * from x")]),
    ];
    assert_eq!(
        matching(
            "  sel:\n    CommandLine: 'net user * /add'\n  condition: sel",
            &ev
        ),
        vec![0]
    );
    assert_eq!(
        matching(
            "  sel:\n    CommandLine: 'net?user*'\n  condition: sel",
            &ev
        ),
        vec![0]
    );
    assert_eq!(
        matching(
            "  sel:\n    CommandLine|contains: 'select \\*'\n  condition: sel",
            &ev
        ),
        vec![2]
    );
}

#[test]
fn number_vs_numeric_string_decision() {
    // EventID 4624 as a rule number matches the field whether it arrived as a number (the
    // `win_event_id` UInt column) or as text (an `EventID` attribute), and 4625 in either form
    // does not. `matching` checks the engine and the reference matcher alike.
    let column = |id: u64| {
        let mut e = win(&[]);
        e.typed[0] = ("win_event_id", Value::UInt(id));
        e
    };
    let events = [
        column(4624),
        win(&[("EventID", "4624")]),
        column(4625),
        win(&[("EventID", "4625")]),
        win(&[("EventID", "04624")]),
    ];
    // Any Windows event (a process_creation rule would only see event ids 1 and 4688).
    let windows = |yaml: &str, ev: &[Event]| {
        matching_in("{product: windows}", yaml, ev, Placeholders::new(), "")
    };
    let yaml = "  sel:\n    EventID: 4624\n  condition: sel";
    assert_eq!(windows(yaml, &events), vec![0, 1]);
    // The rule's number written as text decides nothing: '4624' selects the same events.
    assert_eq!(
        windows("  sel:\n    EventID: '4624'\n  condition: sel", &events),
        vec![0, 1]
    );
    // The attribute wins over the column when both exist.
    let mut both = column(1);
    both.attrs.push(("EventID".into(), "4624".into()));
    let mut shadowed = column(4624);
    shadowed.attrs.push(("EventID".into(), "1".into()));
    assert_eq!(windows(yaml, &[both, shadowed]), vec![0]);
    assert_eq!(
        matching(
            "  sel:\n    ProcessId: '4'\n  condition: sel",
            &[win(&[("ProcessId", "4")])]
        ),
        vec![0]
    );
}

#[test]
fn null_empty_and_missing_decision() {
    let ev = [win(&[("Image", "x")]), win(&[("Image", "")]), win(&[])];
    // null: absent or empty.
    assert_eq!(
        matching("  sel:\n    Image: null\n  condition: sel", &ev),
        vec![1, 2]
    );
    // '': present and empty only.
    assert_eq!(
        matching("  sel:\n    Image: ''\n  condition: sel", &ev),
        vec![1]
    );
    // exists: present, whatever the value.
    assert_eq!(
        matching("  sel:\n    Image|exists: true\n  condition: sel", &ev),
        vec![0, 1]
    );
    assert_eq!(
        matching("  sel:\n    Image|exists: false\n  condition: sel", &ev),
        vec![2]
    );
    // A batch where no event has the field at all: every row is absent.
    let none = [win(&[]), win(&[("User", "u")]), win(&[])];
    for (detection, want) in [
        ("  sel:\n    Image: null\n  condition: sel", vec![0, 1, 2]),
        (
            "  sel:\n    Image|exists: false\n  condition: sel",
            vec![0, 1, 2],
        ),
        ("  sel:\n    Image|exists: true\n  condition: sel", vec![]),
        ("  sel:\n    Image: null\n  condition: not sel", vec![]),
    ] {
        assert_eq!(matching(detection, &none), want, "{detection}");
    }
}

#[test]
fn values_inside_arrays_decision() {
    // A field holding several values (a list, or a repeated attribute) matches if any does.
    let ev = [
        win(&[("Tag", "alpha"), ("Tag", "beta")]),
        win(&[("Tag", "gamma")]),
    ];
    assert_eq!(
        matching("  sel:\n    Tag: beta\n  condition: sel", &ev),
        vec![0]
    );
    assert_eq!(
        matching(
            "  sel:\n    Tag|all:\n      - alpha\n      - beta\n  condition: sel",
            &ev
        ),
        vec![0]
    );
}

#[test]
fn keywords_search_every_text_field_decision() {
    let ev = [
        win(&[("CommandLine", "x mimikatz y")]),
        win(&[("ParentImage", "MIMIKATZ.exe")]),
        win(&[("Image", "a")]),
    ];
    assert_eq!(
        matching("  keywords:\n    - mimikatz\n  condition: keywords", &ev),
        vec![0, 1]
    );
    let ev = [win(&[("A", "foo"), ("B", "bar")]), win(&[("A", "foo")])];
    assert_eq!(
        matching(
            "  kw:\n    '|all':\n      - foo\n      - bar\n  condition: kw",
            &ev
        ),
        vec![0]
    );
}

#[test]
fn list_and_map_logic() {
    let ev = [
        win(&[("Image", "a.exe"), ("CommandLine", "-x")]),
        win(&[("Image", "b.exe"), ("CommandLine", "-y")]),
        win(&[("Image", "a.exe"), ("CommandLine", "-y")]),
    ];
    let d =
        "  sel:\n    - Image: a.exe\n      CommandLine: -x\n    - Image: b.exe\n  condition: sel";
    assert_eq!(matching(d, &ev), vec![0, 1]);
    let d = "  sel:\n    CommandLine|contains|all:\n      - '-'\n      - 'y'\n  condition: sel";
    assert_eq!(matching(d, &ev), vec![1, 2]);
}

#[test]
fn conditions_quantifiers_and_them() {
    let ev = [
        win(&[("A", "1")]),
        win(&[("B", "1")]),
        win(&[("A", "1"), ("B", "1")]),
        win(&[("C", "1")]),
    ];
    let defs = "  sel_a:\n    A: '1'\n  sel_b:\n    B: '1'\n  _hidden:\n    C: '1'\n";
    assert_eq!(
        matching(&format!("{defs}  condition: 1 of sel_*"), &ev),
        vec![0, 1, 2]
    );
    assert_eq!(
        matching(&format!("{defs}  condition: all of sel_*"), &ev),
        vec![2]
    );
    assert_eq!(
        matching(&format!("{defs}  condition: 1 of them"), &ev),
        vec![0, 1, 2]
    );
    assert_eq!(
        matching(&format!("{defs}  condition: sel_a and not sel_b"), &ev),
        vec![0]
    );
    assert_eq!(
        matching(
            &format!("{defs}  condition: sel_a or sel_b and not sel_a"),
            &ev
        ),
        vec![0, 1, 2]
    );
    assert_eq!(
        matching(
            &format!("{defs}  condition:\n    - sel_a and sel_b\n    - _hidden"),
            &ev
        ),
        vec![2, 3]
    );
}

#[test]
fn string_modifiers() {
    let ev = [
        win(&[("CommandLine", r"C:\x\powershell.exe -Enc AAA")]),
        win(&[("CommandLine", "powershell")]),
    ];
    assert_eq!(
        matching(
            "  s:\n    CommandLine|startswith: 'c:\\x'\n  condition: s",
            &ev
        ),
        vec![0]
    );
    assert_eq!(
        matching(
            "  s:\n    CommandLine|endswith: 'SHELL'\n  condition: s",
            &ev
        ),
        vec![1]
    );
    assert_eq!(
        matching(
            "  s:\n    CommandLine|contains|windash: ' /enc '\n  condition: s",
            &ev
        ),
        vec![0]
    );
    let dash = win(&[("CommandLine", "ps \u{2014}enc x")]);
    assert_eq!(
        matching(
            "  s:\n    CommandLine|contains|windash: ' -enc '\n  condition: s",
            &[dash]
        ),
        vec![0]
    );
}

#[test]
fn regex_modifiers() {
    let ev = [
        win(&[("CommandLine", "Invoke-Mimikatz\nnext")]),
        win(&[("CommandLine", "invoke-mimikatz")]),
    ];
    // Case-sensitive by default.
    assert_eq!(
        matching(
            "  s:\n    CommandLine|re: 'Invoke-\\w+'\n  condition: s",
            &ev
        ),
        vec![0]
    );
    assert_eq!(
        matching(
            "  s:\n    CommandLine|re|i: '^invoke-mimikatz$'\n  condition: s",
            &ev
        ),
        vec![1]
    );
    assert_eq!(
        matching("  s:\n    CommandLine|re|m: '^next$'\n  condition: s", &ev),
        vec![0]
    );
    assert_eq!(
        matching(
            "  s:\n    CommandLine|re|s: 'Mimikatz.next'\n  condition: s",
            &ev
        ),
        vec![0]
    );
    // Short literals of a case-sensitive expression, on ASCII and other values, and an
    // expression case-insensitive in part only.
    let ev = [
        win(&[("CommandLine", "tool -T x")]),
        win(&[("CommandLine", "tool -t x")]),
        win(&[("CommandLine", "chrome.exe --type=renderer -f x")]),
        win(&[("CommandLine", "verktøy -d x")]),
        win(&[("CommandLine", "verktøy -D x")]),
    ];
    assert_eq!(
        matching(
            "  s:\n    CommandLine|re: '\\s-[FTd]\\s'\n  condition: s",
            &ev
        ),
        vec![0, 3]
    );
    assert_eq!(
        matching(
            "  s:\n    CommandLine|re: '(?i:TOOL) -[t]'\n  condition: s",
            &ev
        ),
        vec![1]
    );
    assert!(
        rejected("  s:\n    CommandLine|re: '(unclosed'\n  condition: s")
            .contains("regular expression")
    );
}

#[test]
fn encoding_modifiers() {
    // base64offset of "IEX (" at its three offsets, as pySigma computes them.
    let ev = [
        win(&[("CommandLine", "powershell -e SUVYICgoTmV3")]),
        win(&[("CommandLine", "x lFWCAo y")]),
        win(&[("CommandLine", "nothing")]),
    ];
    assert_eq!(
        matching(
            "  s:\n    CommandLine|base64offset|contains: 'IEX ('\n  condition: s",
            &ev
        ),
        vec![0, 1]
    );
    // wide (UTF-16LE) then base64offset: the literal SigmaHQ itself hard-codes.
    let ev = [win(&[(
        "CommandLine",
        "-enc OgA6AEYAcgBvAG0AQgBhAHMAZQA2ADQAUwB0AHIAaQBuAGcA",
    )])];
    assert_eq!(
        matching(
            "  s:\n    CommandLine|wide|base64offset|contains: '::FromBase64String'\n  condition: s",
            &ev
        ),
        vec![0]
    );
    let ev = [win(&[("CommandLine", "x Y21k y")])];
    assert_eq!(
        matching(
            "  s:\n    CommandLine|base64|contains: 'cmd'\n  condition: s",
            &ev
        ),
        vec![0]
    );
    assert!(rejected("  s:\n    CommandLine|base64: 'a*b'\n  condition: s").contains("wildcards"));
}

#[test]
fn numeric_cidr_and_time_modifiers() {
    let ev = [
        win(&[
            ("DestinationPort", "445"),
            ("DestinationIp", "10.1.2.3"),
            ("UtcTime", "2024-05-01 03:15:00.000"),
        ]),
        win(&[
            ("DestinationPort", "80"),
            ("DestinationIp", "fe80::1"),
            ("UtcTime", "2024-05-01T14:00:00Z"),
        ]),
        win(&[("DestinationPort", "n/a"), ("DestinationIp", "not an ip")]),
    ];
    assert_eq!(
        matching("  s:\n    DestinationPort|gte: 400\n  condition: s", &ev),
        vec![0]
    );
    assert_eq!(
        matching("  s:\n    DestinationPort|lt: 100\n  condition: s", &ev),
        vec![1]
    );
    assert_eq!(
        matching(
            "  s:\n    DestinationIp|cidr: 10.0.0.0/8\n  condition: s",
            &ev
        ),
        vec![0]
    );
    assert_eq!(
        matching(
            "  s:\n    DestinationIp|cidr: 'fe80::/10'\n  condition: s",
            &ev
        ),
        vec![1]
    );
    assert_eq!(
        matching("  s:\n    UtcTime|hour: 3\n  condition: s", &ev),
        vec![0]
    );
    assert_eq!(
        matching("  s:\n    UtcTime|month: 5\n  condition: s", &ev),
        vec![0, 1]
    );
}

#[test]
fn neq_cased_and_fieldref() {
    let ev = [
        win(&[("User", "A"), ("ParentUser", "a")]),
        win(&[("User", "A"), ("ParentUser", "B")]),
        win(&[("ParentUser", "B")]),
    ];
    // neq holds for an absent field (decision).
    assert_eq!(
        matching("  s:\n    User|neq: 'a'\n  condition: s", &ev),
        vec![2]
    );
    assert_eq!(
        matching("  s:\n    User|cased: 'a'\n  condition: s", &ev),
        Vec::<usize>::new()
    );
    // fieldref: case-insensitive unless cased; false when either side is absent.
    assert_eq!(
        matching("  s:\n    User|fieldref: ParentUser\n  condition: s", &ev),
        vec![0]
    );
    assert_eq!(
        matching(
            "  s:\n    User|fieldref|cased: ParentUser\n  condition: s",
            &ev
        ),
        Vec::<usize>::new()
    );
    assert_eq!(
        matching(
            "  s:\n    User|fieldref|neq: ParentUser\n  condition: s",
            &ev
        ),
        vec![1, 2]
    );
}

#[test]
fn expand_placeholders_from_configuration() {
    let ev = [win(&[("Computer", "dc01")]), win(&[("Computer", "ws17")])];
    let d = "  s:\n    Computer|expand: '%dcs%'\n  condition: s";
    let mut p = Placeholders::new();
    p.insert("dcs".into(), vec!["dc01".into(), "dc02".into()]);
    assert_eq!(matching_with(d, &ev, p, ""), vec![0]);
    assert!(rejected(d).contains("placeholder %dcs% is not configured"));
}

#[test]
fn meta_filters_apply_to_the_rules_they_name() {
    let ev = [
        win(&[("User", "adm_kari"), ("Image", "x.exe")]),
        win(&[("User", "ola"), ("Image", "x.exe")]),
    ];
    let filter = "---\ntitle: Drop admin accounts\nlogsource: {product: windows, category: process_creation}\nfilter:\n  rules: [r1]\n  selection:\n    User|startswith: adm_\n  condition: not selection\n";
    assert_eq!(
        matching_with(
            "  s:\n    Image: x.exe\n  condition: s",
            &ev,
            Placeholders::new(),
            filter
        ),
        vec![1]
    );
    let other = filter.replace("[r1]", "[another-rule]");
    assert_eq!(
        matching_with(
            "  s:\n    Image: x.exe\n  condition: s",
            &ev,
            Placeholders::new(),
            &other
        ),
        vec![0, 1]
    );
}

#[test]
fn logsource_routing_keeps_rules_to_their_events() {
    let mut other = win(&[("Image", "x.exe")]);
    other.typed[0] = ("win_event_id", Value::UInt(3)); // a Sysmon network connection
    assert_eq!(
        matching(
            "  s:\n    Image: x.exe\n  condition: s",
            &[win(&[("Image", "x.exe")]), other]
        ),
        vec![0]
    );
}

#[test]
fn bad_rules_are_rejected_with_reasons() {
    assert!(
        rejected("  s:\n    A|nosuchmod: x\n  condition: s")
            .contains("unknown modifier 'nosuchmod'")
    );
    assert!(rejected("  s:\n    A: x\n  condition: s and t").contains("'t', which is not defined"));
    assert!(
        rejected("  s:\n    A: x\n  condition: 1 of f*").contains("matches no search identifier")
    );
    assert!(rejected("  s:\n    A|exists: maybe\n  condition: s").contains("exists"));
    assert!(rejected("  s:\n    A: x\n  condition: s | count() > 3").contains("aggregation"));
    assert!(rejected("  s:\n    A|cidr: 10.0.0.300/8\n  condition: s").contains("not a network"));
}

/// A Security log event (channel `Security`, the given event id).
fn security(event_id: u64, attrs: &[(&str, &str)]) -> Event {
    let mut e = win(attrs);
    e.typed = vec![
        ("win_event_id", Value::UInt(event_id)),
        ("channel", Value::Str("Security".into())),
    ];
    e
}

#[test]
fn security_4688_is_process_creation_with_its_own_field_names() {
    let detection = "    selection:\n        Image|endswith: '\\whoami.exe'\n        ParentImage|endswith: '\\cmd.exe'\n        User|contains: 'adm'\n        CommandLine|contains: '/all'\n    condition: selection";
    let events = [
        // Security 4688: the process fields under their 4688 names.
        security(
            4688,
            &[
                ("NewProcessName", r"C:\Windows\System32\whoami.exe"),
                ("ParentProcessName", r"C:\Windows\System32\cmd.exe"),
                ("SubjectUserName", "kadmin"),
                ("CommandLine", "whoami /all"),
            ],
        ),
        // Sysmon process creation with the same values under Sysmon's names.
        win(&[
            ("Image", r"C:\Windows\System32\whoami.exe"),
            ("ParentImage", r"C:\Windows\System32\cmd.exe"),
            ("User", r"KOMMUNE\kadmin"),
            ("CommandLine", "whoami /all"),
        ]),
        // Sysmon names on a 4688 event, 4688 names on a Sysmon event: neither is renamed.
        security(
            4688,
            &[
                ("Image", r"C:\Windows\System32\whoami.exe"),
                ("ParentImage", r"C:\Windows\System32\cmd.exe"),
                ("User", "kadmin"),
                ("CommandLine", "whoami /all"),
            ],
        ),
        win(&[
            ("NewProcessName", r"C:\Windows\System32\whoami.exe"),
            ("ParentProcessName", r"C:\Windows\System32\cmd.exe"),
            ("SubjectUserName", "kadmin"),
            ("CommandLine", "whoami /all"),
        ]),
        // Another Security event id is not process creation.
        security(
            4624,
            &[
                ("NewProcessName", r"C:\Windows\System32\whoami.exe"),
                ("ParentProcessName", r"C:\Windows\System32\cmd.exe"),
                ("SubjectUserName", "kadmin"),
                ("CommandLine", "whoami /all"),
            ],
        ),
    ];
    assert_eq!(matching(detection, &events), vec![0, 1]);
}
