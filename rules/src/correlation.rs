//! Sigma correlation rules (the specification's `correlation` documents): what they say, checked,
//! and a pure evaluator of their windows over a stream of base-rule hits.
//!
//! Parsed: every type (`event_count`, `value_count`, `temporal`, `temporal_ordered`,
//! `value_sum`, `value_avg`, `value_percentile`, `value_median`), `rules` (by `name` or `id`),
//! `group-by`, `timespan` (`s`, `m`, `h`, `d`, `w`), the condition (`gt`, `gte`, `lt`, `lte`,
//! `eq`, `neq`, several at once as a range; `field` for the value types; `percentile` for
//! `value_percentile`), `aliases` and `generate`. What is invalid is refused with the reason.
//!
//! [`Window`] evaluates one correlation for one group over hits in event time, the way a
//! sliding window over `timespan` does: each hit enters, hits older than `timespan` before it
//! leave, and the condition is tested; when it holds the correlation fires and the group's
//! window starts empty again, so one burst fires once. A hit older than the newest one seen by
//! more than `allowed_lateness` is refused as late (counted by the caller), never silently
//! folded in. The pipeline's correlator (`varde_pipeline::correlate`) keeps these windows per group; see
//! `docs/pipeline.md`.

use std::collections::{BTreeMap, VecDeque};

use serde_yaml::Value as Yaml;

use crate::{Error, Result};

/// The kind of aggregation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CorrelationType {
    /// How many hits in the window.
    EventCount,
    /// How many distinct values of `field` in the window.
    ValueCount,
    /// Every referenced rule hit in the window, in any order.
    Temporal,
    /// Every referenced rule hit in the window, in the order listed.
    TemporalOrdered,
    /// The sum of `field` over the window.
    ValueSum,
    /// The mean of `field` over the window.
    ValueAvg,
    /// A percentile of `field` over the window.
    ValuePercentile,
    /// The median of `field` over the window.
    ValueMedian,
}

impl CorrelationType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "event_count" => CorrelationType::EventCount,
            "value_count" => CorrelationType::ValueCount,
            "temporal" => CorrelationType::Temporal,
            "temporal_ordered" => CorrelationType::TemporalOrdered,
            "value_sum" => CorrelationType::ValueSum,
            "value_avg" => CorrelationType::ValueAvg,
            "value_percentile" => CorrelationType::ValuePercentile,
            "value_median" => CorrelationType::ValueMedian,
            _ => return None,
        })
    }

    /// Whether the condition needs a `field`.
    pub fn needs_field(self) -> bool {
        matches!(
            self,
            CorrelationType::ValueCount
                | CorrelationType::ValueSum
                | CorrelationType::ValueAvg
                | CorrelationType::ValuePercentile
                | CorrelationType::ValueMedian
        )
    }

    fn is_temporal(self) -> bool {
        matches!(
            self,
            CorrelationType::Temporal | CorrelationType::TemporalOrdered
        )
    }
}

/// One bound of a condition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// `gt`
    Gt(f64),
    /// `gte`
    Gte(f64),
    /// `lt`
    Lt(f64),
    /// `lte`
    Lte(f64),
    /// `eq`
    Eq(f64),
    /// `neq`
    Neq(f64),
}

impl Bound {
    fn holds(self, x: f64) -> bool {
        match self {
            Bound::Gt(v) => x > v,
            Bound::Gte(v) => x >= v,
            Bound::Lt(v) => x < v,
            Bound::Lte(v) => x <= v,
            Bound::Eq(v) => x == v,
            Bound::Neq(v) => x != v,
        }
    }
}

/// A correlation's condition: every bound must hold (several bounds make a range).
#[derive(Debug, Clone, PartialEq)]
pub struct Condition {
    /// The bounds.
    pub bounds: Vec<Bound>,
    /// The field aggregated by the value types.
    pub field: Option<String>,
    /// For `value_percentile`: which percentile (0–100).
    pub percentile: Option<f64>,
}

impl Condition {
    /// Whether `x` meets every bound.
    pub fn holds(&self, x: f64) -> bool {
        self.bounds.iter().all(|b| b.holds(x))
    }
}

/// A Sigma correlation rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    /// `id`.
    pub id: String,
    /// `name`, by which other correlations may reference it.
    pub name: Option<String>,
    /// `title`.
    pub title: String,
    /// `level`.
    pub level: Option<String>,
    /// The aggregation.
    pub kind: CorrelationType,
    /// The rules (or correlations) it aggregates, by name or id, as written.
    pub rules: Vec<String>,
    /// Fields whose values split hits into groups.
    pub group_by: Vec<String>,
    /// The window, in µs.
    pub timespan_us: i64,
    /// The condition (`None` for the temporal types without one: all rules must hit).
    pub condition: Option<Condition>,
    /// `aliases`: a group-by name → per referenced rule, the field that holds it there.
    pub aliases: BTreeMap<String, BTreeMap<String, String>>,
    /// `generate`: whether the referenced rules' own alerts are raised too (default false).
    pub generate: bool,
}

impl Correlation {
    /// The id alerts and the catalog carry: `id`, or `title:<title>` without one (as for rules).
    pub fn key(&self) -> String {
        if self.id.is_empty() {
            format!("title:{}", self.title)
        } else {
            self.id.clone()
        }
    }
}

fn key<'a>(map: &'a serde_yaml::Mapping, k: &str) -> Option<&'a Yaml> {
    map.get(Yaml::String(k.to_owned()))
}

fn text(v: &Yaml) -> Option<String> {
    match v {
        Yaml::String(s) => Some(s.clone()),
        Yaml::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn texts(v: Option<&Yaml>) -> Result<Vec<String>> {
    match v {
        None => Ok(Vec::new()),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .map(|i| text(i).ok_or_else(|| Error::invalid("a list item is not text")))
            .collect(),
        Some(other) => text(other)
            .map(|t| vec![t])
            .ok_or_else(|| Error::invalid("not text or a list of text")),
    }
}

/// Parses a timespan: a whole number and one of `s`, `m`, `h`, `d`, `w` (e.g. `5m`, `1h`).
pub fn parse_timespan(s: &str) -> Result<i64> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| Error::invalid(format!("timespan {s:?} has no unit (s, m, h, d, w)")))?;
    let (n, unit) = s.split_at(split);
    let n: i64 = n
        .parse()
        .map_err(|_| Error::invalid(format!("timespan {s:?} does not start with a number")))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        other => {
            return Err(Error::invalid(format!(
                "timespan {s:?}: unknown unit {other:?} (s, m, h, d, w)"
            )));
        }
    };
    if n <= 0 {
        return Err(Error::invalid(format!("timespan {s:?} must be positive")));
    }
    n.checked_mul(seconds)
        .and_then(|s| s.checked_mul(1_000_000))
        .ok_or_else(|| Error::invalid(format!("timespan {s:?} is too long")))
}

fn number(v: &Yaml, what: &str) -> Result<f64> {
    match v {
        Yaml::Number(n) => n
            .as_f64()
            .ok_or_else(|| Error::invalid(format!("{what} is not a number"))),
        _ => Err(Error::invalid(format!("{what} is not a number"))),
    }
}

fn condition(v: &Yaml, kind: CorrelationType) -> Result<Condition> {
    let map = v
        .as_mapping()
        .ok_or_else(|| Error::invalid("'condition' is not a map"))?;
    let mut c = Condition {
        bounds: Vec::new(),
        field: None,
        percentile: None,
    };
    for (k, v) in map {
        let k = k.as_str().unwrap_or("");
        let b = match k {
            "gt" => Bound::Gt(number(v, "gt")?),
            "gte" => Bound::Gte(number(v, "gte")?),
            "lt" => Bound::Lt(number(v, "lt")?),
            "lte" => Bound::Lte(number(v, "lte")?),
            "eq" => Bound::Eq(number(v, "eq")?),
            "neq" => Bound::Neq(number(v, "neq")?),
            "field" => {
                c.field =
                    Some(text(v).ok_or_else(|| Error::invalid("condition 'field' is not text"))?);
                continue;
            }
            "percentile" => {
                let p = number(v, "percentile")?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(Error::invalid("'percentile' must be between 0 and 100"));
                }
                c.percentile = Some(p);
                continue;
            }
            other => {
                return Err(Error::invalid(format!(
                    "condition: unknown key {other:?} (gt, gte, lt, lte, eq, neq, field, percentile)"
                )));
            }
        };
        c.bounds.push(b);
    }
    if c.bounds.is_empty() {
        return Err(Error::invalid(
            "the condition has no comparison (gt, gte, lt, lte, eq, neq)",
        ));
    }
    if kind.needs_field() && c.field.is_none() {
        return Err(Error::invalid(format!(
            "a {kind:?} correlation needs 'field' in its condition"
        )));
    }
    if !kind.needs_field() && c.field.is_some() {
        return Err(Error::invalid(format!(
            "a {kind:?} correlation takes no 'field'"
        )));
    }
    if kind == CorrelationType::ValuePercentile && c.percentile.is_none() {
        return Err(Error::invalid(
            "a value_percentile correlation needs 'percentile' in its condition",
        ));
    }
    Ok(c)
}

/// The correlation of one document's map (which has a `correlation` key).
pub fn parse(map: &serde_yaml::Mapping) -> Result<Correlation> {
    let title = key(map, "title").and_then(text).unwrap_or_default();
    if title.is_empty() {
        return Err(Error::invalid("'title' is missing"));
    }
    let body = key(map, "correlation")
        .and_then(Yaml::as_mapping)
        .ok_or_else(|| Error::invalid("'correlation' is not a map"))?;
    let kind_text = key(body, "type")
        .and_then(text)
        .ok_or_else(|| Error::invalid("correlation 'type' is missing"))?;
    let kind = CorrelationType::parse(&kind_text).ok_or_else(|| {
        Error::invalid(format!(
            "unknown correlation type {kind_text:?} (event_count, value_count, temporal, \
             temporal_ordered, value_sum, value_avg, value_percentile, value_median)"
        ))
    })?;
    let rules = texts(key(body, "rules")).map_err(|e| e.context("'rules'"))?;
    if rules.is_empty() {
        return Err(Error::invalid("correlation 'rules' is missing or empty"));
    }
    if kind.is_temporal() && rules.len() < 2 {
        return Err(Error::invalid(
            "a temporal correlation needs at least two rules",
        ));
    }
    let group_by = texts(key(body, "group-by")).map_err(|e| e.context("'group-by'"))?;
    let timespan = key(body, "timespan")
        .and_then(text)
        .ok_or_else(|| Error::invalid("correlation 'timespan' is missing"))?;
    let timespan_us = parse_timespan(&timespan)?;
    let condition = match key(body, "condition") {
        Some(c) => Some(condition(c, kind)?),
        None if kind.is_temporal() => None,
        None => {
            return Err(Error::invalid(format!(
                "a {kind_text} correlation needs a 'condition'"
            )));
        }
    };
    let mut aliases = BTreeMap::new();
    if let Some(a) = key(body, "aliases") {
        let a = a
            .as_mapping()
            .ok_or_else(|| Error::invalid("'aliases' is not a map"))?;
        for (alias, per_rule) in a {
            let alias = alias
                .as_str()
                .ok_or_else(|| Error::invalid("an alias name is not text"))?;
            let per_rule = per_rule
                .as_mapping()
                .ok_or_else(|| Error::invalid(format!("alias {alias:?} is not a map")))?;
            let mut fields = BTreeMap::new();
            for (rule, field) in per_rule {
                let (Some(rule), Some(field)) = (rule.as_str(), text(field)) else {
                    return Err(Error::invalid(format!(
                        "alias {alias:?}: each entry is `rule: field`"
                    )));
                };
                fields.insert(rule.to_owned(), field);
            }
            aliases.insert(alias.to_owned(), fields);
        }
    }
    let generate = match key(body, "generate").or_else(|| key(map, "generate")) {
        None => false,
        Some(Yaml::Bool(b)) => *b,
        Some(_) => return Err(Error::invalid("'generate' is not true or false")),
    };
    Ok(Correlation {
        id: key(map, "id").and_then(text).unwrap_or_default(),
        name: key(map, "name").and_then(text),
        title,
        level: key(map, "level")
            .and_then(text)
            .map(|l| l.to_ascii_lowercase()),
        kind,
        rules,
        group_by,
        timespan_us,
        condition,
        aliases,
        generate,
    })
}

/// One hit of a referenced rule, as the window sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// Event time, µs.
    pub time_us: i64,
    /// Which of the correlation's `rules` it is (its position in the list).
    pub rule: usize,
    /// The value of the condition's `field`, if the correlation has one.
    pub value: Option<String>,
    /// The hit's identity (its event's id): the same event and rule again (a batch delivered
    /// twice) is not counted twice.
    pub id: [u8; 16],
    /// Where the hit's event came from (for Varde, the municipality), handed back with the
    /// fired window so an alert can say whom it touched.
    pub origin: String,
}

/// What adding a hit did.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Taken in; the condition does not hold (yet).
    Held,
    /// The condition holds: fired with this aggregate over the window `[first_us, last_us]`
    /// of these hits; the window is empty again.
    Fired {
        /// The aggregate the condition was tested on (count, distinct values, sum, …; for
        /// the temporal types the number of rules seen).
        value: f64,
        /// The oldest hit in the window.
        first_us: i64,
        /// The newest.
        last_us: i64,
        /// The hits in the window, oldest first.
        hits: Vec<Hit>,
    },
    /// Older than the newest hit seen by more than the allowed lateness: not taken in.
    Late,
    /// The same event and rule is already in the window (a repeat delivery): not counted.
    Repeat,
}

/// One group's sliding window for one correlation.
#[derive(Debug, Clone)]
pub struct Window {
    hits: VecDeque<Hit>,
    newest_us: i64,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            hits: VecDeque::new(),
            newest_us: i64::MIN,
        }
    }
}

impl Window {
    /// Hits in the window now.
    pub fn len(&self) -> usize {
        self.hits.len()
    }

    /// Whether the window is empty.
    pub fn is_empty(&self) -> bool {
        self.hits.is_empty()
    }

    /// The newest event time seen (`i64::MIN` before the first hit).
    pub fn newest_us(&self) -> i64 {
        self.newest_us
    }

    /// Adds a hit of `c`'s rules and tests the condition; `allowed_lateness_us` is how far
    /// behind the newest hit seen a hit may be and still count.
    pub fn add(&mut self, c: &Correlation, hit: Hit, allowed_lateness_us: i64) -> Outcome {
        if hit.time_us < self.newest_us.saturating_sub(allowed_lateness_us) {
            return Outcome::Late;
        }
        if self
            .hits
            .iter()
            .any(|h| h.id == hit.id && h.rule == hit.rule)
        {
            return Outcome::Repeat;
        }
        self.newest_us = self.newest_us.max(hit.time_us);
        // Kept in event-time order (then by event, so hits of one instant have the same
        // order however they arrived), and a late hit lands where it belongs.
        let at = self
            .hits
            .partition_point(|h| (h.time_us, h.id) <= (hit.time_us, hit.id));
        self.hits.insert(at, hit);
        let cutoff = self.newest_us.saturating_sub(c.timespan_us);
        while self.hits.front().is_some_and(|h| h.time_us < cutoff) {
            self.hits.pop_front();
        }
        let value = match aggregate(c, &self.hits) {
            Some(v) => v,
            None => return Outcome::Held,
        };
        // The temporal types fire when every rule was seen, or, with a condition, when the
        // number of different rules seen meets it.
        let fires = match &c.condition {
            Some(cond) => cond.holds(value),
            None => value >= c.rules.len() as f64,
        };
        if !fires {
            return Outcome::Held;
        }
        Outcome::Fired {
            value,
            first_us: self.hits.front().map_or(0, |h| h.time_us),
            last_us: self.hits.back().map_or(0, |h| h.time_us),
            hits: std::mem::take(&mut self.hits).into(),
        }
    }
}

fn numbers(hits: &VecDeque<Hit>) -> Vec<f64> {
    hits.iter()
        .filter_map(|h| h.value.as_deref()?.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite())
        .collect()
}

/// The window's aggregate; `None` when there is nothing to test yet (no numeric values).
fn aggregate(c: &Correlation, hits: &VecDeque<Hit>) -> Option<f64> {
    Some(match c.kind {
        CorrelationType::EventCount => hits.len() as f64,
        CorrelationType::ValueCount => {
            let distinct: std::collections::BTreeSet<&str> =
                hits.iter().filter_map(|h| h.value.as_deref()).collect();
            distinct.len() as f64
        }
        CorrelationType::Temporal => {
            let seen: std::collections::BTreeSet<usize> = hits.iter().map(|h| h.rule).collect();
            seen.len() as f64
        }
        CorrelationType::TemporalOrdered => {
            // The longest prefix of the rule list found in event-time order within the window.
            // Hits of the same instant count in either order (which came first is unknown), as
            // rsigma counts them.
            let mut next = 0;
            let mut at = i64::MIN;
            while next < c.rules.len() {
                // The window is in event-time order: the first such hit is the earliest.
                match hits.iter().find(|h| h.rule == next && h.time_us >= at) {
                    Some(h) => {
                        at = h.time_us;
                        next += 1;
                    }
                    None => break,
                }
            }
            next as f64
        }
        CorrelationType::ValueSum => numbers(hits).iter().sum(),
        CorrelationType::ValueAvg => {
            let v = numbers(hits);
            if v.is_empty() {
                return None;
            }
            v.iter().sum::<f64>() / v.len() as f64
        }
        CorrelationType::ValueMedian => percentile(numbers(hits), 50.0)?,
        CorrelationType::ValuePercentile => {
            percentile(numbers(hits), c.condition.as_ref()?.percentile?)?
        }
    })
}

/// The `p`th percentile by linear interpolation between closest ranks (numpy's default).
fn percentile(mut v: Vec<f64>, p: f64) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let rank = p / 100.0 * (v.len() - 1) as f64;
    let (lo, hi) = (rank.floor() as usize, rank.ceil() as usize);
    let (a, b) = (v[lo], v[hi.min(v.len() - 1)]);
    Some(a + (b - a) * (rank - lo as f64))
}
