//! Sigma correlation rules: the specification's own examples (Sigma specification 2.0,
//! "Sigma Correlation Rules") parse to what they say, invalid ones are refused with their reason,
//! references are resolved against the loaded rules, and the sliding windows fire when the
//! specification says they should.

use varde_rules::RuleSetBuilder;
use varde_rules::ast::{Document, parse_documents};
use varde_rules::correlation::{
    Bound, Correlation, CorrelationType, Hit, Outcome, Window, parse_timespan,
};

fn one(text: &str) -> Correlation {
    match parse_documents(text).into_iter().next() {
        Some(Ok(Document::Correlation(c))) => c,
        other => panic!("not a correlation: {other:?}"),
    }
}

fn refused(text: &str) -> String {
    match parse_documents(text).into_iter().next() {
        Some(Err(e)) => e.to_string(),
        other => panic!("accepted: {other:?}"),
    }
}

const EVENT_COUNT: &str = r#"
title: Many failed logins to the same computer
id: 0e95725d-7320-415d-80f7-004da920fc11
correlation:
  type: event_count
  rules:
    - 5638f7c0-ac70-491d-8465-2a65075e0d86
  group-by:
    - ComputerName
  timespan: 1h
  condition:
    gte: 100
level: high
"#;

const VALUE_COUNT: &str = r#"
title: Failed logon attempts with more than 100 different user accounts per source and destination
id: 0e95725d-7320-415d-80f7-004da920fc12
correlation:
  type: value_count
  rules:
    - failed_logon
  group-by:
    - ComputerName
    - WorkstationName
  timespan: 1d
  condition:
    gt: 100
    field: User
level: high
"#;

const TEMPORAL: &str = r#"
title: Reconnaissance commands defined in three different rules
id: 0e95725d-7320-415d-80f7-004da920fc13
correlation:
  type: temporal
  rules:
    - recon_cmd_a
    - recon_cmd_b
    - recon_cmd_c
  group-by:
    - ComputerName
    - User
  timespan: 5m
  ordered: false
level: high
"#;

const ALIASES: &str = r#"
title: Internal error followed by a new outbound connection
correlation:
  type: temporal_ordered
  rules:
    - internal_error
    - new_network_connection
  group-by:
    - internal_ip
    - remote_ip
  timespan: 10s
  aliases:
    internal_ip:
      internal_error: destination.ip
      new_network_connection: source.ip
    remote_ip:
      internal_error: source.ip
      new_network_connection: destination.ip
"#;

#[test]
fn the_specifications_examples_parse_to_what_they_say() {
    let c = one(EVENT_COUNT);
    assert_eq!(c.kind, CorrelationType::EventCount);
    assert_eq!(c.rules, vec!["5638f7c0-ac70-491d-8465-2a65075e0d86"]);
    assert_eq!(c.group_by, vec!["ComputerName"]);
    assert_eq!(c.timespan_us, 3_600_000_000);
    let cond = c.condition.expect("condition");
    assert_eq!(cond.bounds, vec![Bound::Gte(100.0)]);
    assert_eq!(c.level.as_deref(), Some("high"));
    assert!(!c.generate);

    let c = one(VALUE_COUNT);
    assert_eq!(c.kind, CorrelationType::ValueCount);
    assert_eq!(c.timespan_us, 86_400_000_000);
    let cond = c.condition.expect("condition");
    assert_eq!(cond.field.as_deref(), Some("User"));
    assert_eq!(cond.bounds, vec![Bound::Gt(100.0)]);

    let c = one(TEMPORAL);
    assert_eq!(c.kind, CorrelationType::Temporal);
    assert_eq!(c.rules.len(), 3);
    assert_eq!(c.condition, None);

    let c = one(ALIASES);
    assert_eq!(c.kind, CorrelationType::TemporalOrdered);
    assert_eq!(c.timespan_us, 10_000_000);
    assert_eq!(
        c.aliases["internal_ip"]["new_network_connection"],
        "source.ip"
    );
    assert_eq!(c.aliases["remote_ip"]["internal_error"], "source.ip");
}

#[test]
fn invalid_correlations_are_refused_with_the_reason() {
    let with = |from: &str, to: &str| EVENT_COUNT.replace(from, to);
    let cases = [
        (with("event_count", "event_sum"), "unknown correlation type"),
        (with("  timespan: 1h\n", ""), "'timespan' is missing"),
        (with("timespan: 1h", "timespan: 1y"), "unknown unit"),
        (with("timespan: 1h", "timespan: 0m"), "must be positive"),
        (with("    gte: 100\n", "    above: 100\n"), "unknown key"),
        (
            with("    gte: 100\n", "    gte: 100\n    field: User\n"),
            "takes no 'field'",
        ),
        (
            VALUE_COUNT.replace("    field: User\n", ""),
            "needs 'field'",
        ),
        (
            VALUE_COUNT.replace("value_count", "value_percentile"),
            "needs 'percentile'",
        ),
        (
            TEMPORAL.replace("    - recon_cmd_b\n    - recon_cmd_c\n", ""),
            "at least two rules",
        ),
        (with("title: Many", "titel: Many"), "'title' is missing"),
    ];
    for (text, why) in cases {
        let e = refused(&text);
        assert!(e.contains(why), "{why:?} not in {e:?}");
    }
    assert_eq!(parse_timespan("90s").expect("90 s"), 90_000_000);
    assert_eq!(parse_timespan("2w").expect("2 w"), 14 * 86_400_000_000);
}

#[test]
fn references_resolve_by_name_or_id_and_others_are_reported() {
    let base = r#"
title: Failed ID-porten login
id: 11111111-1111-1111-1111-111111111111
name: failed_idporten_login
logsource: {product: idporten, category: authentication}
detection:
  sel: {outcome: failure}
  condition: sel
"#;
    let by_name = EVENT_COUNT.replace(
        "5638f7c0-ac70-491d-8465-2a65075e0d86",
        "failed_idporten_login",
    );
    let by_id = EVENT_COUNT.replace(
        "5638f7c0-ac70-491d-8465-2a65075e0d86",
        "11111111-1111-1111-1111-111111111111",
    );
    let mut b = RuleSetBuilder::new(Default::default()).expect("builder");
    b.add_yaml("base.yml", base);
    b.add_yaml("by_name.yml", &by_name);
    b.add_yaml("by_id.yml", &by_id);
    b.add_yaml("dangling.yml", EVENT_COUNT);
    let set = b.build().expect("build");
    let kept: Vec<&str> = set.correlations().iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(kept, vec!["by_name.yml", "by_id.yml"]);
    let dangling = set
        .errors()
        .iter()
        .find(|e| e.source == "dangling.yml")
        .expect("the dangling one is reported");
    assert!(
        dangling
            .reason
            .contains("5638f7c0-ac70-491d-8465-2a65075e0d86"),
        "{dangling:?}"
    );
}

const MIN: i64 = 60_000_000;

/// A hit at `minute` of rule `rule`; each call a different event.
fn hit(minute: i64, rule: usize, value: Option<&str>) -> Hit {
    static NEXT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Hit {
        id: [n; 16],
        time_us: minute * MIN,
        rule,
        value: value.map(str::to_owned),
        origin: String::new(),
    }
}

fn fired(o: &Outcome) -> Option<f64> {
    match o {
        Outcome::Fired { value, .. } => Some(*value),
        _ => None,
    }
}

#[test]
fn event_count_slides_over_the_timespan_and_fires_once_per_burst() {
    let c = one(&EVENT_COUNT
        .replace("gte: 100", "gte: 3")
        .replace("timespan: 1h", "timespan: 5m"));
    let mut w = Window::default();
    // 0, 4 and 6 minutes: at 6 the hit of minute 0 has left the window.
    assert_eq!(w.add(&c, hit(0, 0, None), 0), Outcome::Held);
    assert_eq!(w.add(&c, hit(4, 0, None), 0), Outcome::Held);
    assert_eq!(w.add(&c, hit(6, 0, None), 0), Outcome::Held);
    assert_eq!(w.len(), 2);
    // A third within five minutes of the fourth: fires, with the window's extent.
    match w.add(&c, hit(8, 0, None), 0) {
        Outcome::Fired {
            value,
            first_us,
            last_us,
            hits,
        } => {
            assert_eq!((value, hits.len()), (3.0, 3));
            assert_eq!((first_us, last_us), (4 * MIN, 8 * MIN));
        }
        other => panic!("{other:?}"),
    }
    // And starts again: the next hit alone does not fire.
    assert!(w.is_empty());
    assert_eq!(w.add(&c, hit(9, 0, None), 0), Outcome::Held);
}

#[test]
fn late_hits_are_refused_beyond_the_allowed_lateness_and_placed_in_time_within_it() {
    let c = one(&EVENT_COUNT
        .replace("gte: 100", "gte: 3")
        .replace("timespan: 1h", "timespan: 5m"));
    let mut w = Window::default();
    assert_eq!(w.add(&c, hit(10, 0, None), MIN), Outcome::Held);
    assert_eq!(w.add(&c, hit(8, 0, None), MIN), Outcome::Late);
    assert_eq!(w.add(&c, hit(9, 0, None), MIN), Outcome::Held);
    assert_eq!(fired(&w.add(&c, hit(11, 0, None), MIN)), Some(3.0));
}

#[test]
fn the_same_event_delivered_twice_is_one_hit() {
    let c = one(&EVENT_COUNT
        .replace("gte: 100", "gte: 2")
        .replace("timespan: 1h", "timespan: 5m"));
    let mut w = Window::default();
    let first = hit(0, 0, None);
    assert_eq!(w.add(&c, first.clone(), 0), Outcome::Held);
    assert_eq!(w.add(&c, first, 0), Outcome::Repeat);
    assert_eq!(w.len(), 1);
    assert_eq!(fired(&w.add(&c, hit(1, 0, None), 0)), Some(2.0));
}

#[test]
fn value_count_counts_distinct_values() {
    let c = one(&VALUE_COUNT
        .replace("gt: 100", "gte: 3")
        .replace("timespan: 1d", "timespan: 10m"));
    let mut w = Window::default();
    for (m, user) in [(0, "ola"), (1, "kari"), (2, "ola"), (3, "ola")] {
        assert_eq!(w.add(&c, hit(m, 0, Some(user)), 0), Outcome::Held);
    }
    assert_eq!(fired(&w.add(&c, hit(4, 0, Some("per")), 0)), Some(3.0));
}

#[test]
fn temporal_needs_every_rule_and_ordered_needs_their_order() {
    let c = one(TEMPORAL);
    let mut w = Window::default();
    assert_eq!(w.add(&c, hit(0, 2, None), 0), Outcome::Held);
    assert_eq!(w.add(&c, hit(1, 0, None), 0), Outcome::Held);
    assert_eq!(w.add(&c, hit(1, 0, None), 0), Outcome::Held);
    assert_eq!(fired(&w.add(&c, hit(2, 1, None), 0)), Some(3.0));
    // Outside five minutes the first rule's hit is forgotten.
    let mut w = Window::default();
    w.add(&c, hit(0, 0, None), 0);
    w.add(&c, hit(6, 1, None), 0);
    assert_eq!(w.add(&c, hit(7, 2, None), 0), Outcome::Held);

    let ordered = one(&TEMPORAL.replace("type: temporal", "type: temporal_ordered"));
    let mut w = Window::default();
    w.add(&ordered, hit(0, 2, None), 0);
    w.add(&ordered, hit(1, 1, None), 0);
    assert_eq!(
        w.add(&ordered, hit(2, 0, None), 0),
        Outcome::Held,
        "c, b, a is not a, b, c"
    );
    assert_eq!(w.add(&ordered, hit(3, 1, None), 0), Outcome::Held);
    assert_eq!(fired(&w.add(&ordered, hit(4, 2, None), 0)), Some(3.0));
    // Hits of the same instant count in either order: b arriving before a in the same
    // minute is still a, b (their order is unknown), then c.
    let mut w = Window::default();
    w.add(&ordered, hit(0, 1, None), 0);
    w.add(&ordered, hit(0, 0, None), 0);
    assert_eq!(fired(&w.add(&ordered, hit(1, 2, None), 0)), Some(3.0));
}

#[test]
fn numeric_aggregates_sum_average_median_and_percentile() {
    let base = VALUE_COUNT.replace("timespan: 1d", "timespan: 1h");
    let sum = one(&base
        .replace("value_count", "value_sum")
        .replace("gt: 100", "gte: 1000"));
    let mut w = Window::default();
    assert_eq!(w.add(&sum, hit(0, 0, Some("600")), 0), Outcome::Held);
    assert_eq!(
        w.add(&sum, hit(1, 0, Some("not a number")), 0),
        Outcome::Held
    );
    assert_eq!(
        fired(&w.add(&sum, hit(2, 0, Some("400.5")), 0)),
        Some(1000.5)
    );

    let avg = one(&base
        .replace("value_count", "value_avg")
        .replace("gt: 100", "gt: 10"));
    let mut w = Window::default();
    let h = hit(0, 0, Some("30"));
    assert_eq!(
        w.add(&avg, h.clone(), 0),
        Outcome::Fired {
            value: 30.0,
            first_us: 0,
            last_us: 0,
            hits: vec![h]
        }
    );
    let median = one(&base
        .replace("value_count", "value_median")
        .replace("gt: 100", "gt: 5"));
    let mut w = Window::default();
    for v in ["1", "9", "2"] {
        assert_eq!(w.add(&median, hit(0, 0, Some(v)), 0), Outcome::Held);
    }
    // 1 → 1, 1, 9 → 5, 1, 2, 9 → 2; then 1, 2, 9, 10 → 5.5 (numpy's linear interpolation).
    assert_eq!(fired(&w.add(&median, hit(0, 0, Some("10")), 0)), Some(5.5));
    let p90 = one(&base
        .replace("value_count", "value_percentile")
        .replace("    gt: 100\n", "    gt: 90\n    percentile: 90\n"));
    let mut w = Window::default();
    for v in 1..=10 {
        let o = w.add(&p90, hit(0, 0, Some(&(v * 10).to_string())), 0);
        // The 90th percentile of 10, 20, … 100 is 91 (numpy), above 90 only with all ten.
        if v < 10 {
            assert_eq!(o, Outcome::Held, "{v}");
        } else {
            assert_eq!(fired(&o), Some(91.0));
        }
    }
}
