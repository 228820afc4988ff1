//! Sigma correlation rules in the stream: the alerts of the rules a correlation references are
//! its hits; each hit goes into its group's sliding window
//! ([`varde_rules::correlation::Window`], in event time); when the condition holds a correlation
//! alert is raised.
//!
//! - **Groups**: the values of the correlation's `group-by` fields in the hit's event (a typed
//!   column or an attribute of that name, or through `aliases` the field the hit's rule names),
//!   plus Varde's own `tenant`, `host` and `component`. Groups are held in memory, at most
//!   `max_groups` (the one seen longest ago is evicted and counted).
//! - **Identity**: a hit is its event and rule: the same event delivered twice (a collector's
//!   retry) is one hit. A correlation alert's id is derived from the correlation, the group and
//!   the window's first hit, so the same window fires the same alert id however often it is
//!   replayed.
//! - **Not yet**: the windows live in memory, so a restart forgets open windows (a replay after
//!   a restart re-fills them from the replayed hits only); correlations of correlations
//!   (chaining) are listed as not evaluated; a correlation alert belongs to the tenant of its
//!   last hit.
//! - **`generate`**: as the specification says, a rule referenced only by correlations with
//!   `generate: false` (the default) raises no alert of its own: its matches only feed the
//!   correlations. One `generate: true` correlation keeps its own alerts.

use std::collections::HashMap;

use varde_core::id::digest16;
use varde_core::{AlertId, EventId};
use varde_rules::RuleSet;
use varde_rules::correlation::{Correlation, Hit, Outcome, Window};
use varde_rules::datafusion::rule_key;
use varde_store::Alert;

/// Default bound of open groups, over all correlations.
pub const DEFAULT_MAX_GROUPS: usize = 100_000;

/// Default lateness a hit may have behind its group's newest and still count (µs).
pub const DEFAULT_ALLOWED_LATENESS_US: i64 = 60_000_000;

struct Compiled {
    correlation: Correlation,
    /// The correlation's id as alerts carry it.
    key: String,
    /// Per referenced rule (by position): the catalog key of the loaded rule.
    rule_keys: Vec<String>,
}

/// What the correlator counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CorrelatorStats {
    /// Correlation alerts raised.
    pub fired: u64,
    /// Hits refused as later than the allowed lateness.
    pub late: u64,
    /// Groups evicted because `max_groups` were open.
    pub evicted: u64,
    /// Groups open now.
    pub groups: u64,
}

/// The correlations of a rule set and their open windows.
pub struct Correlator {
    compiled: Vec<Compiled>,
    /// Referenced rule key → (correlation index, position in its `rules`).
    by_rule: HashMap<String, Vec<(usize, usize)>>,
    windows: HashMap<(usize, Vec<String>), Window>,
    max_groups: usize,
    allowed_lateness_us: i64,
    stats: CorrelatorStats,
    /// Correlations not evaluated, with why (for the catalog).
    skipped: Vec<(String, String)>,
    /// Rules whose own alerts are not raised (`generate: false` everywhere they are referenced).
    hidden: std::collections::HashSet<String>,
}

impl std::fmt::Debug for Correlator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Correlator")
            .field("correlations", &self.compiled.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Correlator {
    /// The correlations of `set` whose references are all loaded detection rules.
    pub fn new(set: &RuleSet, max_groups: usize, allowed_lateness_us: i64) -> Self {
        let mut compiled = Vec::new();
        let mut skipped = Vec::new();
        for (_, c) in set.correlations() {
            let keys: Option<Vec<String>> = c
                .rules
                .iter()
                .map(|r| {
                    set.rules()
                        .iter()
                        .find(|l| l.meta.id == *r || l.meta.name.as_deref() == Some(r))
                        .map(rule_key)
                })
                .collect();
            let key = c.key();
            match keys {
                Some(rule_keys) => compiled.push(Compiled {
                    correlation: c.clone(),
                    key,
                    rule_keys,
                }),
                None => skipped.push((
                    key,
                    "a correlation of correlations (chaining) is not evaluated yet".to_owned(),
                )),
            }
        }
        let mut by_rule: HashMap<String, Vec<(usize, usize)>> = HashMap::new();
        for (i, c) in compiled.iter().enumerate() {
            for (pos, k) in c.rule_keys.iter().enumerate() {
                by_rule.entry(k.clone()).or_default().push((i, pos));
            }
        }
        let hidden = by_rule
            .iter()
            .filter(|(_, uses)| uses.iter().all(|(i, _)| !compiled[*i].correlation.generate))
            .map(|(k, _)| k.clone())
            .collect();
        Correlator {
            compiled,
            by_rule,
            windows: HashMap::new(),
            max_groups: max_groups.max(1),
            allowed_lateness_us,
            stats: CorrelatorStats::default(),
            skipped,
            hidden,
        }
    }

    /// Correlations evaluated.
    pub fn len(&self) -> usize {
        self.compiled.len()
    }

    /// Whether no correlation is evaluated.
    pub fn is_empty(&self) -> bool {
        self.compiled.is_empty()
    }

    /// Whether `rule_key`'s own alerts are not raised (`generate: false`).
    pub fn hides(&self, rule_key: &str) -> bool {
        self.hidden.contains(rule_key)
    }

    /// Whether an alert of `rule_key` is a hit of some correlation.
    pub fn wants(&self, rule_key: &str) -> bool {
        self.by_rule.contains_key(rule_key)
    }

    /// The counts so far.
    pub fn stats(&self) -> CorrelatorStats {
        CorrelatorStats {
            groups: self.windows.len() as u64,
            ..self.stats
        }
    }

    /// Goes on counting from `prev` (a reloaded rule set keeps the counters monotonic).
    pub fn carry(&mut self, prev: CorrelatorStats) {
        self.stats.fired = prev.fired;
        self.stats.late = prev.late;
        self.stats.evicted = prev.evicted;
    }

    /// Correlations not evaluated and why, by correlation key.
    pub fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    /// Feeds one alert (a hit when its rule is referenced); `field` gives the value of a field
    /// of the alert's event by name. Returns the correlation alerts it completes.
    pub fn observe(
        &mut self,
        alert: &Alert,
        field: &dyn Fn(&str) -> Option<String>,
        detect_time_us: i64,
    ) -> Vec<Alert> {
        let Some(targets) = self.by_rule.get(&alert.rule_id).cloned() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (ci, pos) in targets {
            let compiled = &self.compiled[ci];
            let c = &compiled.correlation;
            let rule_ref = &c.rules[pos];
            let value_of = |name: &str| -> String {
                let mapped = c
                    .aliases
                    .get(name)
                    .and_then(|per_rule| per_rule.get(rule_ref))
                    .map_or(name, String::as_str);
                match mapped {
                    "tenant" => alert.tenant.clone(),
                    "host" if !alert.host.is_empty() => alert.host.clone(),
                    "component" => alert.component.clone(),
                    other => field(other).unwrap_or_default(),
                }
            };
            let group: Vec<String> = c.group_by.iter().map(|g| value_of(g)).collect();
            let value = c
                .condition
                .as_ref()
                .and_then(|cond| cond.field.as_deref())
                .map(value_of);
            let hit = Hit {
                id: alert.event_id.0,
                time_us: alert.event_time_us,
                rule: pos,
                value,
            };
            let gkey = (ci, group);
            if !self.windows.contains_key(&gkey) && self.windows.len() >= self.max_groups {
                // Full: the group whose newest hit is oldest goes.
                if let Some(old) = self
                    .windows
                    .iter()
                    .min_by_key(|(_, w)| w.newest_us())
                    .map(|(k, _)| k.clone())
                {
                    self.windows.remove(&old);
                    self.stats.evicted += 1;
                }
            }
            let window = self.windows.entry(gkey.clone()).or_default();
            match window.add(c, hit, self.allowed_lateness_us) {
                Outcome::Held | Outcome::Repeat => {}
                Outcome::Late => self.stats.late += 1,
                Outcome::Fired {
                    value,
                    first_us,
                    last_us,
                    hits,
                } => {
                    self.stats.fired += 1;
                    self.windows.remove(&gkey);
                    out.push(correlation_alert(
                        compiled,
                        &gkey.1,
                        alert,
                        (value, first_us, last_us, hits),
                        detect_time_us,
                    ));
                }
            }
        }
        out
    }
}

fn correlation_alert(
    compiled: &Compiled,
    group: &[String],
    last: &Alert,
    (value, first_us, last_us, hits): (f64, i64, i64, usize),
    detect_time_us: i64,
) -> Alert {
    let c = &compiled.correlation;
    let mut parts: Vec<&[u8]> = vec![compiled.key.as_bytes()];
    for g in group {
        parts.push(g.as_bytes());
    }
    let first = first_us.to_be_bytes();
    parts.push(&first);
    // The window's identity stands in for an event id: rule, group, first hit.
    let window_id = EventId(digest16(b"varde/correlation/v1\0", &parts));
    let mut dedup_parts: Vec<&[u8]> = vec![compiled.key.as_bytes(), last.tenant.as_bytes()];
    for g in group {
        dedup_parts.push(g.as_bytes());
    }
    let mut matched: Vec<(String, String)> = c
        .group_by
        .iter()
        .cloned()
        .zip(group.iter().cloned())
        .collect();
    matched.push(("correlation.type".into(), format!("{:?}", c.kind)));
    matched.push(("correlation.value".into(), value.to_string()));
    matched.push(("correlation.hits".into(), hits.to_string()));
    matched.push(("correlation.first_us".into(), first_us.to_string()));
    matched.push(("correlation.last_us".into(), last_us.to_string()));
    Alert {
        alert_id: AlertId::derive(&compiled.key, window_id),
        dedup_key: digest16(b"varde/dedup/v1\0", &dedup_parts),
        tenant: last.tenant.clone(),
        component: last.component.clone(),
        rule_id: compiled.key.clone(),
        rule_title: c.title.clone(),
        rule_level: c.level.clone().unwrap_or_else(|| "high".to_owned()),
        rule_tags: Vec::new(),
        event_id: last.event_id,
        event_time_us: last_us,
        detect_time_us,
        source_kind: last.source_kind.clone(),
        host: last.host.clone(),
        matched,
    }
}
