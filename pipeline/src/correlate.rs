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
//! - **Restarts**: every hit a window takes is logged ([`Correlator::take_log`] →
//!   `correlation_hits`, written with the batch's alerts before its offset is committed). A
//!   starting pipeline replays the log's last `restore_hours` through the same windows
//!   ([`Correlator::restore`]), so a window open when the pipeline stopped, or was killed, is
//!   open again with the same hits, and fires once. A rule reload keeps the windows of every
//!   correlation whose definition did not change.
//! - **Campaigns**: a correlation alert lists the municipalities its window's hits came from,
//!   with a count each (`correlation.tenants`), and the number of them
//!   (`correlation.tenant_count`).
//! - **Not yet**: correlations of correlations (chaining) are listed as not evaluated; a
//!   correlation alert belongs to the tenant of its last hit.
//! - **`generate`**: as the specification says, a rule referenced only by correlations with
//!   `generate: false` (the default) raises no alert of its own: its matches only feed the
//!   correlations. One `generate: true` correlation keeps its own alerts.

use std::collections::HashMap;

use serde::Deserialize;
use varde_core::id::digest16;
use varde_core::{AlertId, EventId};
use varde_rules::RuleSet;
use varde_rules::correlation::{Correlation, Hit, Outcome, Window};
use varde_rules::datafusion::rule_key;
use varde_store::{Alert, CorrelationHit};

/// The `[detection.correlation]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorrelationSettings {
    /// Open groups at most, over all correlations (default 100 000); the group seen longest
    /// ago is evicted and counted.
    #[serde(default = "default_max_groups")]
    pub max_groups: usize,
    /// Seconds a hit may be behind its group's newest and still count (default 60); later
    /// ones are counted as late.
    #[serde(default = "default_allowed_lateness_s")]
    pub allowed_lateness_s: u64,
    /// Hours of the hit log a starting pipeline replays to rebuild its windows (default 24;
    /// 0: start with empty windows). Keep it within `retention.correlation_hits_days`.
    #[serde(default = "default_restore_hours")]
    pub restore_hours: u64,
}

fn default_max_groups() -> usize {
    100_000
}
fn default_allowed_lateness_s() -> u64 {
    60
}
fn default_restore_hours() -> u64 {
    24
}

impl Default for CorrelationSettings {
    fn default() -> Self {
        CorrelationSettings {
            max_groups: default_max_groups(),
            allowed_lateness_s: default_allowed_lateness_s(),
            restore_hours: default_restore_hours(),
        }
    }
}

struct Compiled {
    correlation: Correlation,
    /// The correlation's id as alerts carry it.
    key: String,
    /// Per referenced rule (by position): the catalog key of the loaded rule.
    rule_keys: Vec<String>,
    /// A digest of the definition: logged hits of another definition are not replayed.
    definition: [u8; 16],
}

/// A digest of everything a correlation's windows depend on.
fn definition_of(c: &Correlation) -> [u8; 16] {
    digest16(
        b"varde/correlation-definition/v1\0",
        &[format!("{c:?}").as_bytes()],
    )
}

/// What [`Correlator::restore`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RestoreReport {
    /// Logged hits replayed into windows.
    pub replayed: u64,
    /// Logged hits of correlations no longer loaded, or since edited: not replayed.
    pub skipped: u64,
    /// Groups open afterwards.
    pub groups: u64,
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
    /// Logged hits replayed at start.
    pub restored: u64,
}

/// The correlations of a rule set and their open windows.
pub struct Correlator {
    compiled: Vec<Compiled>,
    /// Referenced rule key → (correlation index, position in its `rules`).
    by_rule: HashMap<String, Vec<(usize, usize)>>,
    windows: HashMap<(usize, Vec<String>), Window>,
    max_groups: usize,
    allowed_lateness_us: i64,
    restore_hours: u64,
    stats: CorrelatorStats,
    /// Hits taken since the last [`Correlator::take_log`].
    log: Vec<CorrelationHit>,
    /// The next log sequence number (at least the detection time in µs).
    next_seq: u64,
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
    pub fn new(set: &RuleSet, settings: &CorrelationSettings) -> Self {
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
                    definition: definition_of(c),
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
            max_groups: settings.max_groups.max(1),
            allowed_lateness_us: i64::try_from(settings.allowed_lateness_s)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
            restore_hours: settings.restore_hours,
            stats: CorrelatorStats::default(),
            log: Vec::new(),
            next_seq: 0,
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

    /// Takes over from the correlator of the previous rule set: its counters (kept
    /// monotonic), its log position and unwritten log, and the open windows of every
    /// correlation whose definition did not change.
    pub fn carry(&mut self, prev: &mut Correlator) {
        let s = prev.stats;
        self.stats.fired = s.fired;
        self.stats.late = s.late;
        self.stats.evicted = s.evicted;
        self.stats.restored = s.restored;
        self.next_seq = prev.next_seq;
        self.log = std::mem::take(&mut prev.log);
        let now: HashMap<([u8; 16], &str), usize> = self
            .compiled
            .iter()
            .enumerate()
            .map(|(i, c)| ((c.definition, c.key.as_str()), i))
            .collect();
        for ((old, group), window) in prev.windows.drain() {
            let c = &prev.compiled[old];
            if let Some(&new) = now.get(&(c.definition, c.key.as_str())) {
                self.windows.insert((new, group), window);
            }
        }
    }

    /// How far back a starting pipeline replays the log (µs); `None` when nothing is to be
    /// replayed (no correlation, or `restore_hours = 0`).
    pub fn restore_horizon_us(&self) -> Option<i64> {
        (!self.compiled.is_empty() && self.restore_hours > 0).then(|| {
            i64::try_from(self.restore_hours)
                .unwrap_or(i64::MAX)
                .saturating_mul(3_600_000_000)
        })
    }

    /// Replays logged hits (in `seq` order) into the windows, raising nothing and counting
    /// nothing but the replay: the windows are as they were when the hits were first taken.
    pub fn restore(&mut self, hits: &[CorrelationHit]) -> RestoreReport {
        let by: HashMap<([u8; 16], String), usize> = self
            .compiled
            .iter()
            .enumerate()
            .map(|(i, c)| ((c.definition, c.key.clone()), i))
            .collect();
        let counters = self.stats;
        let mut report = RestoreReport::default();
        for h in hits {
            self.next_seq = self.next_seq.max(h.seq.saturating_add(1));
            let Some(&ci) = by.get(&(h.definition, h.correlation.clone())) else {
                report.skipped += 1;
                continue;
            };
            let hit = Hit {
                id: h.event_id.0,
                time_us: h.event_time_us,
                rule: usize::from(h.rule_pos),
                value: h.value.clone(),
                origin: h.tenant.clone(),
            };
            self.take(ci, h.group.clone(), hit);
            report.replayed += 1;
        }
        self.stats = counters;
        self.stats.restored += report.replayed;
        report.groups = self.windows.len() as u64;
        report
    }

    /// The hits taken since the last call, for the store's log.
    pub fn take_log(&mut self) -> Vec<CorrelationHit> {
        std::mem::take(&mut self.log)
    }

    /// Puts `hit` into the window of (`ci`, `group`), evicting the stalest group when full.
    fn take(&mut self, ci: usize, group: Vec<String>, hit: Hit) -> Outcome {
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
        let outcome = window.add(
            &self.compiled[ci].correlation,
            hit,
            self.allowed_lateness_us,
        );
        match &outcome {
            Outcome::Late => self.stats.late += 1,
            Outcome::Fired { .. } => {
                self.windows.remove(&gkey);
            }
            Outcome::Held | Outcome::Repeat => {}
        }
        outcome
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
                origin: alert.tenant.clone(),
            };
            let logged = CorrelationHit {
                seq: 0,
                observed_us: detect_time_us,
                correlation: compiled.key.clone(),
                definition: compiled.definition,
                group: group.clone(),
                rule_pos: u16::try_from(pos).unwrap_or(u16::MAX),
                event_id: alert.event_id,
                event_time_us: hit.time_us,
                tenant: alert.tenant.clone(),
                value: hit.value.clone(),
            };
            let outcome = self.take(ci, group.clone(), hit);
            if matches!(outcome, Outcome::Held | Outcome::Fired { .. }) {
                let seq = self
                    .next_seq
                    .max(u64::try_from(detect_time_us).unwrap_or(0));
                self.next_seq = seq + 1;
                self.log.push(CorrelationHit { seq, ..logged });
            }
            if let Outcome::Fired {
                value,
                first_us,
                last_us,
                hits,
            } = outcome
            {
                self.stats.fired += 1;
                out.push(correlation_alert(
                    &self.compiled[ci],
                    &group,
                    alert,
                    FiredWindow {
                        value,
                        first_us,
                        last_us,
                        hits: &hits,
                    },
                    detect_time_us,
                ));
            }
        }
        out
    }
}

/// A fired window, as the alert reports it.
struct FiredWindow<'a> {
    value: f64,
    first_us: i64,
    last_us: i64,
    hits: &'a [Hit],
}

fn correlation_alert(
    compiled: &Compiled,
    group: &[String],
    last: &Alert,
    FiredWindow {
        value,
        first_us,
        last_us,
        hits,
    }: FiredWindow<'_>,
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
    matched.push(("correlation.hits".into(), hits.len().to_string()));
    // The municipalities the window's hits came from, with a count each (sorted by number).
    let mut tenants: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for h in hits {
        *tenants.entry(h.origin.as_str()).or_default() += 1;
    }
    matched.push(("correlation.tenant_count".into(), tenants.len().to_string()));
    matched.push((
        "correlation.tenants".into(),
        tenants
            .iter()
            .map(|(t, n)| format!("{t}:{n}"))
            .collect::<Vec<_>>()
            .join(","),
    ));
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
