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
//! - **Campaigns**: a fired window raises one alert per municipality its hits came from, each
//!   with that municipality's own hits and newest event only; `correlation.scope` says whether
//!   others were hit too, never which. The rows share `correlation.window` (the window's id),
//!   so the CERT sees the whole campaign and each municipality its own part.
//! - **Campaigns grow**: after a window of a correlation not grouped by `tenant` fired, a
//!   municipality it had not touched that hits the same group within the timespan after the
//!   window's last hit joins it: one more row of the same `correlation.window` for that
//!   municipality (`correlation.joined_us`), and the hit is not counted again in a new window.
//! - **Chaining**: a correlation may reference correlations; a fired window is then one hit of
//!   the referencing correlation (identity: the window; time: its last hit; fields: its group),
//!   followed at most [`MAX_CHAIN_DEPTH`] deep. Correlations in a cycle are not evaluated.
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
    /// Seconds a hit may be behind its group's newest and still count (default 300: the
    /// municipalities' collectors deliver with different delays, and a campaign's group
    /// spans them); later ones are counted as late (the retro-hunt still finds them).
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
    300
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

/// A fired window of a correlation not grouped by `tenant`, kept for its timespan after its
/// last hit: a municipality it has not touched that hits the same group then joins it.
#[derive(Debug, Clone)]
struct Campaign {
    /// The fired window's id.
    id: [u8; 16],
    value: f64,
    first_us: i64,
    last_us: i64,
    /// Hits after this event time start afresh.
    until_us: i64,
    /// The municipalities touched so far.
    tenants: std::collections::BTreeSet<String>,
    /// Its hits (event, rule): one delivered again is not a new hit.
    hits: std::collections::BTreeSet<([u8; 16], usize)>,
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
    /// Fired campaigns still open to municipalities joining, by (correlation, group).
    campaigns: HashMap<(usize, Vec<String>), Campaign>,
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
        // A reference names a loaded detection rule, or a correlation (chaining). A
        // correlation is evaluated once all it references is: detection rules, or
        // correlations evaluated before it (so a cycle is never evaluated).
        let all: Vec<&Correlation> = set.correlations().iter().map(|(_, c)| c).collect();
        let of_rule = |r: &str| {
            set.rules()
                .iter()
                .find(|l| l.meta.id == *r || l.meta.name.as_deref() == Some(r))
                .map(rule_key)
        };
        let of_correlation = |r: &str| {
            all.iter()
                .position(|c| c.id == *r || c.name.as_deref() == Some(r))
        };
        let mut compiled: Vec<Compiled> = Vec::new();
        let mut done = vec![false; all.len()];
        loop {
            let mut progressed = false;
            for (i, c) in all.iter().enumerate() {
                if done[i] {
                    continue;
                }
                let keys: Option<Vec<String>> = c
                    .rules
                    .iter()
                    .map(|r| match of_rule(r) {
                        Some(k) => Some(k),
                        None => of_correlation(r)
                            .filter(|&j| j != i && done[j])
                            .map(|j| all[j].key()),
                    })
                    .collect();
                if let Some(rule_keys) = keys {
                    done[i] = true;
                    progressed = true;
                    compiled.push(Compiled {
                        definition: definition_of(c),
                        correlation: (*c).clone(),
                        key: c.key(),
                        rule_keys,
                    });
                }
            }
            if !progressed {
                break;
            }
        }
        let skipped = all
            .iter()
            .zip(&done)
            .filter(|(_, done)| !**done)
            .map(|(c, _)| {
                (
                    c.key(),
                    "references a correlation that is not evaluated (a cycle of correlations, \
                     or one whose rules are not loaded)"
                        .to_owned(),
                )
            })
            .collect();
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
            campaigns: HashMap::new(),
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
        for ((old, group), campaign) in prev.campaigns.drain() {
            let c = &prev.compiled[old];
            if let Some(&new) = now.get(&(c.definition, c.key.as_str())) {
                self.campaigns.insert((new, group), campaign);
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
            self.step(&(ci, h.group.clone()), hit);
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

    /// Puts `hit` into the window of `key` (correlation, group), evicting the stalest group
    /// when a new one does not fit. The key is copied only for a new group.
    fn take(&mut self, key: &(usize, Vec<String>), hit: Hit) -> Outcome {
        let c = &self.compiled[key.0].correlation;
        let outcome = match self.windows.get_mut(key) {
            Some(window) => window.add(c, hit, self.allowed_lateness_us),
            None => {
                let mut window = Window::default();
                let outcome = window.add(c, hit, self.allowed_lateness_us);
                if !matches!(outcome, Outcome::Fired { .. }) {
                    if self.windows.len() >= self.max_groups
                        && let Some(old) = self
                            .windows
                            .iter()
                            .min_by_key(|(_, w)| w.newest_us())
                            .map(|(k, _)| k.clone())
                    {
                        // Full: the group whose newest hit is oldest goes.
                        self.windows.remove(&old);
                        self.stats.evicted += 1;
                    }
                    self.windows.insert(key.clone(), window);
                }
                return outcome;
            }
        };
        match &outcome {
            Outcome::Late => self.stats.late += 1,
            Outcome::Fired { .. } => {
                self.windows.remove(key);
            }
            Outcome::Held | Outcome::Repeat => {}
        }
        outcome
    }

    /// One hit into `key` (correlation, group): the campaign it joins, with the hit (a
    /// municipality the group's fired campaign has not touched; the hit is then counted there
    /// only), or what its window did. A fired window of a correlation not grouped by `tenant`
    /// is kept as a campaign for its timespan after its last hit.
    fn step(&mut self, key: &(usize, Vec<String>), hit: Hit) -> (Option<(Campaign, Hit)>, Outcome) {
        if let Some(c) = self.campaigns.get_mut(key) {
            if hit.time_us > c.until_us {
                self.campaigns.remove(key);
            } else if c.hits.contains(&(hit.id, hit.rule)) {
                return (None, Outcome::Repeat);
            } else if !hit.origin.is_empty()
                && !hit.origin.contains(',')
                && c.tenants.insert(hit.origin.clone())
            {
                // Counted in the campaign it joined, not again in a new window.
                c.hits.insert((hit.id, hit.rule));
                return (Some((c.clone(), hit)), Outcome::Held);
            }
        }
        let ci = key.0;
        let group = &key.1;
        let outcome = self.take(key, hit);
        let compiled = &self.compiled[ci];
        if let Outcome::Fired {
            value,
            first_us,
            last_us,
            hits,
        } = &outcome
            && !compiled.correlation.group_by.iter().any(|g| g == "tenant")
        {
            let fired = FiredWindow {
                compiled,
                group,
                value: *value,
                first_us: *first_us,
                last_us: *last_us,
                hits,
                joined_us: None,
            };
            let campaign = Campaign {
                id: fired.id(),
                value: *value,
                first_us: *first_us,
                last_us: *last_us,
                until_us: last_us.saturating_add(compiled.correlation.timespan_us),
                tenants: hits
                    .iter()
                    .flat_map(|h| h.origin.split(','))
                    .map(str::to_owned)
                    .collect(),
                hits: hits.iter().map(|h| (h.id, h.rule)).collect(),
            };
            // Bounded as the windows are: the campaign open the shortest goes.
            if !self.campaigns.contains_key(key)
                && self.campaigns.len() >= self.max_groups
                && let Some(old) = self
                    .campaigns
                    .iter()
                    .min_by_key(|(_, c)| c.until_us)
                    .map(|(k, _)| k.clone())
            {
                self.campaigns.remove(&old);
            }
            self.campaigns.insert(key.clone(), campaign);
        }
        (None, outcome)
    }

    /// Correlations not evaluated and why, by correlation key.
    pub fn skipped(&self) -> &[(String, String)] {
        &self.skipped
    }

    /// Feeds one alert (a hit when its rule is referenced); `field` gives the value of a field
    /// of the alert's event by name. Returns the correlation alerts it completes: one per
    /// municipality the fired window's hits came from, and those of correlations that
    /// reference a fired one (chaining, at most [`MAX_CHAIN_DEPTH`] deep).
    pub fn observe(
        &mut self,
        alert: &Alert,
        field: &dyn Fn(&str) -> Option<String>,
        detect_time_us: i64,
    ) -> Vec<Alert> {
        let (mut out, mut pending) = self.observe_one(alert, field, detect_time_us);
        let mut depth = 0;
        while !pending.is_empty() && depth < MAX_CHAIN_DEPTH {
            depth += 1;
            let mut next = Vec::new();
            for fired in &pending {
                // A fired correlation's fields are its group (and Varde's own fields).
                let field = |name: &str| fired.matched_field(name).map(str::to_owned);
                let (rows, chained) = self.observe_one(fired, &field, detect_time_us);
                out.extend(rows);
                next.extend(chained);
            }
            pending = next;
        }
        out
    }

    /// One alert into the windows of the correlations that reference its rule: the alert
    /// rows of the windows it fired, and per fired window the hit it is for correlations
    /// that reference this one.
    fn observe_one(
        &mut self,
        alert: &Alert,
        field: &dyn Fn(&str) -> Option<String>,
        detect_time_us: i64,
    ) -> (Vec<Alert>, Vec<Alert>) {
        let Some(targets) = self.by_rule.get(&alert.rule_id).cloned() else {
            return (Vec::new(), Vec::new());
        };
        let mut rows = Vec::new();
        let mut chained = Vec::new();
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
            let key = (
                ci,
                c.group_by.iter().map(|g| value_of(g)).collect::<Vec<_>>(),
            );
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
            // The hit-log row's parts not moved into the window.
            let (event_time_us, value) = (hit.time_us, hit.value.clone());
            let (joined, outcome) = self.step(&key, hit);
            let group = &key.1;
            if let Some((c, joining)) = &joined {
                // A municipality joins a fired campaign: its own row of the same window.
                let row = FiredWindow {
                    compiled: &self.compiled[ci],
                    group,
                    value: c.value,
                    first_us: c.first_us,
                    last_us: c.last_us,
                    hits: std::slice::from_ref(joining),
                    joined_us: Some((c.id, joining.time_us)),
                };
                rows.extend(row.alerts(alert, detect_time_us));
            }
            if matches!(outcome, Outcome::Held | Outcome::Fired { .. }) {
                let seq = self
                    .next_seq
                    .max(u64::try_from(detect_time_us).unwrap_or(0));
                self.next_seq = seq + 1;
                let compiled = &self.compiled[ci];
                self.log.push(CorrelationHit {
                    seq,
                    observed_us: detect_time_us,
                    correlation: compiled.key.clone(),
                    definition: compiled.definition,
                    group: group.clone(),
                    rule_pos: u16::try_from(pos).unwrap_or(u16::MAX),
                    event_id: alert.event_id,
                    event_time_us,
                    tenant: alert.tenant.clone(),
                    value,
                });
            }
            if let Outcome::Fired {
                value,
                first_us,
                last_us,
                hits,
            } = outcome
            {
                self.stats.fired += 1;
                let fired = FiredWindow {
                    compiled: &self.compiled[ci],
                    group,
                    value,
                    first_us,
                    last_us,
                    hits: &hits,
                    joined_us: None,
                };
                rows.extend(fired.alerts(alert, detect_time_us));
                if self.by_rule.contains_key(&self.compiled[ci].key) {
                    chained.push(fired.chain_hit(alert, detect_time_us));
                }
            }
        }
        (rows, chained)
    }
}

/// How deep correlations of correlations are followed from one hit.
pub const MAX_CHAIN_DEPTH: usize = 10;

/// A fired window of one correlation and group.
struct FiredWindow<'a> {
    compiled: &'a Compiled,
    group: &'a [String],
    value: f64,
    first_us: i64,
    last_us: i64,
    /// The window's hits, oldest first (for a municipality joining a fired campaign, its hit).
    hits: &'a [Hit],
    /// A municipality joining the fired campaign of this id at this event time.
    joined_us: Option<([u8; 16], i64)>,
}

impl FiredWindow<'_> {
    /// The window's identity: correlation, group, first hit (time and event). The same window
    /// replayed is the same id.
    fn id(&self) -> [u8; 16] {
        if let Some((id, _)) = self.joined_us {
            return id;
        }
        let mut parts: Vec<&[u8]> = vec![self.compiled.key.as_bytes()];
        for g in self.group {
            parts.push(g.as_bytes());
        }
        let first = self.first_us.to_be_bytes();
        parts.push(&first);
        // Two windows of a group may begin in the same second; their first hits differ.
        if let Some(h) = self.hits.first() {
            parts.push(&h.id);
        }
        digest16(b"varde/correlation/v1\0", &parts)
    }

    /// The fields every row of the window carries: the group and the aggregate.
    fn matched(&self) -> Vec<(String, String)> {
        let c = &self.compiled.correlation;
        let mut matched: Vec<(String, String)> = c
            .group_by
            .iter()
            .cloned()
            .zip(self.group.iter().cloned())
            .collect();
        matched.push(("correlation.type".into(), format!("{:?}", c.kind)));
        matched.push(("correlation.value".into(), self.value.to_string()));
        matched.push(("correlation.first_us".into(), self.first_us.to_string()));
        matched.push(("correlation.last_us".into(), self.last_us.to_string()));
        matched.push(("correlation.window".into(), EventId(self.id()).to_string()));
        matched
    }

    /// One alert per municipality the window's hits came from, each about that
    /// municipality only: its own hits (`correlation.hits`) and its newest event, with
    /// `correlation.scope` saying whether others were hit too, never which. The rows of one
    /// window share `correlation.window`, by which the CERT sees the whole campaign.
    fn alerts(&self, last: &Alert, detect_time_us: i64) -> Vec<Alert> {
        let c = &self.compiled.correlation;
        // Per municipality: hits and the newest hit (the window is in event-time order).
        let mut per: std::collections::BTreeMap<&str, (usize, &Hit)> =
            std::collections::BTreeMap::new();
        for h in self.hits {
            // A chained hit (a fired window) came from every municipality of its window.
            for origin in h.origin.split(',') {
                let e = per.entry(origin).or_insert((0, h));
                e.0 += 1;
                e.1 = h;
            }
        }
        let window = self.id();
        let scope = if per.len() > 1 || self.joined_us.is_some() {
            "several municipalities"
        } else {
            "one municipality"
        };
        per.into_iter()
            .map(|(tenant, (n, newest))| {
                let is_last = tenant == last.tenant;
                let mut dedup_parts: Vec<&[u8]> =
                    vec![self.compiled.key.as_bytes(), tenant.as_bytes()];
                for g in self.group {
                    dedup_parts.push(g.as_bytes());
                }
                let mut matched = self.matched();
                // A `tenant` group of a chained correlation lists its window's
                // municipalities: each row names its own only.
                for (k, v) in &mut matched {
                    if k == "tenant" {
                        *v = tenant.to_owned();
                    }
                }
                matched.push(("correlation.hits".into(), n.to_string()));
                matched.push(("correlation.scope".into(), scope.to_owned()));
                if let Some((_, at)) = self.joined_us {
                    matched.push(("correlation.joined_us".into(), at.to_string()));
                }
                let row_id = digest16(b"varde/correlation-row/v1\0", &[&window, tenant.as_bytes()]);
                Alert {
                    alert_id: AlertId::derive(&self.compiled.key, EventId(row_id)),
                    dedup_key: digest16(b"varde/dedup/v1\0", &dedup_parts),
                    tenant: tenant.to_owned(),
                    component: if is_last {
                        last.component.clone()
                    } else {
                        String::new()
                    },
                    rule_id: self.compiled.key.clone(),
                    rule_title: c.title.clone(),
                    rule_level: c.level.clone().unwrap_or_else(|| "high".to_owned()),
                    rule_tags: Vec::new(),
                    event_id: EventId(newest.id),
                    event_time_us: newest.time_us,
                    detect_time_us,
                    source_kind: last.source_kind.clone(),
                    host: if is_last {
                        last.host.clone()
                    } else {
                        String::new()
                    },
                    matched,
                }
            })
            .collect()
    }

    /// The window as one hit of the correlations that reference this one: its identity is
    /// the window's, its time the window's last hit, its fields the group.
    /// Its tenant is every municipality of the window, comma-separated, so the referencing
    /// correlation's alerts go to each of them.
    fn chain_hit(&self, last: &Alert, detect_time_us: i64) -> Alert {
        let window = EventId(self.id());
        let tenants: std::collections::BTreeSet<&str> =
            self.hits.iter().flat_map(|h| h.origin.split(',')).collect();
        Alert {
            alert_id: AlertId::derive(&self.compiled.key, window),
            dedup_key: [0; 16],
            tenant: tenants.into_iter().collect::<Vec<_>>().join(","),
            component: last.component.clone(),
            rule_id: self.compiled.key.clone(),
            rule_title: self.compiled.correlation.title.clone(),
            rule_level: String::new(),
            rule_tags: Vec::new(),
            event_id: window,
            event_time_us: self.last_us,
            detect_time_us,
            source_kind: last.source_kind.clone(),
            host: last.host.clone(),
            matched: self.matched(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use varde_rules::RuleSetBuilder;

    const BASE: &str = "title: Failed login\nid: 11111111-1111-1111-1111-111111111111\nname: failed\nlogsource:\n  product: linux\n  service: sshd\ndetection:\n  selection:\n    message|contains: Failed\n  condition: selection\nlevel: low\n";

    fn correlator(docs: &[&str]) -> Correlator {
        let mut b = RuleSetBuilder::new(Default::default()).expect("builder");
        b.add_yaml("base.yml", BASE);
        for (i, d) in docs.iter().enumerate() {
            b.add_yaml(&format!("c{i}.yml"), d);
        }
        let set = b.build().expect("rule set");
        Correlator::new(&set, &CorrelationSettings::default())
    }

    /// An alert of the base rule for `tenant`'s event number `n` at `second`.
    fn hit(tenant: &str, n: u8, second: i64, src: &str) -> (Alert, String) {
        let alert = Alert {
            alert_id: AlertId([n; 16]),
            dedup_key: [0; 16],
            tenant: tenant.to_owned(),
            component: String::new(),
            rule_id: "11111111-1111-1111-1111-111111111111".to_owned(),
            rule_title: "Failed login".to_owned(),
            rule_level: "low".to_owned(),
            rule_tags: Vec::new(),
            event_id: EventId([n; 16]),
            event_time_us: second * 1_000_000,
            detect_time_us: 0,
            source_kind: "auth".to_owned(),
            host: format!("ssh01.k{tenant}.kommune.no"),
            matched: Vec::new(),
        };
        (alert, src.to_owned())
    }

    fn feed(c: &mut Correlator, hits: &[(Alert, String)]) -> Vec<Alert> {
        let mut out = Vec::new();
        for (a, src) in hits {
            let field = |name: &str| (name == "src_ip").then(|| src.clone());
            out.extend(c.observe(a, &field, 1_000));
        }
        out
    }

    fn field<'a>(a: &'a Alert, name: &str) -> Option<&'a str> {
        a.matched_field(name)
    }

    const SPRAY: &str = "title: Spray\nid: 22222222-2222-2222-2222-222222222222\nname: spray\ncorrelation:\n  type: value_count\n  rules: [failed]\n  group-by: [src_ip]\n  timespan: 1h\n  condition:\n    field: tenant\n    gte: 3\nlevel: high\n";

    #[test]
    fn a_campaign_raises_one_row_per_municipality_with_its_own_part_only() {
        let mut c = correlator(&[SPRAY]);
        let out = feed(
            &mut c,
            &[
                hit("0301", 1, 0, "192.0.2.9"),
                hit("4601", 2, 10, "192.0.2.9"),
                hit("4601", 3, 20, "192.0.2.9"),
                hit("5001", 4, 30, "192.0.2.9"),
            ],
        );
        let tenants: Vec<&str> = out.iter().map(|a| a.tenant.as_str()).collect();
        assert_eq!(tenants, ["0301", "4601", "5001"]);
        let hits: Vec<Option<&str>> = out.iter().map(|a| field(a, "correlation.hits")).collect();
        assert_eq!(hits, [Some("1"), Some("2"), Some("1")]);
        // Each row points at its own municipality's newest event.
        let events: Vec<EventId> = out.iter().map(|a| a.event_id).collect();
        assert_eq!(
            events,
            [EventId([1; 16]), EventId([3; 16]), EventId([4; 16])]
        );
        // One campaign: the same window on every row, and different alerts.
        let window = field(&out[0], "correlation.window");
        assert!(window.is_some());
        assert!(out.iter().all(|a| field(a, "correlation.window") == window));
        assert!(
            out.iter()
                .all(|a| field(a, "correlation.scope") == Some("several municipalities"))
        );
        let ids: std::collections::BTreeSet<AlertId> = out.iter().map(|a| a.alert_id).collect();
        assert_eq!(ids.len(), 3);
        // No row names another municipality.
        for a in &out {
            for (_, v) in &a.matched {
                for other in ["0301", "4601", "5001"].iter().filter(|t| **t != a.tenant) {
                    assert!(!v.contains(other), "{a:?}");
                }
            }
        }
    }

    #[test]
    fn a_municipality_hit_after_the_campaign_fired_joins_it_once_also_after_a_restart() {
        let mut c = correlator(&[SPRAY]);
        let fired = feed(
            &mut c,
            &[
                hit("0301", 1, 0, "192.0.2.9"),
                hit("4601", 2, 10, "192.0.2.9"),
                hit("5001", 3, 20, "192.0.2.9"),
            ],
        );
        assert_eq!(fired.len(), 3);
        let window = field(&fired[0], "correlation.window").map(str::to_owned);
        // A fourth municipality within the hour: its own row of the same campaign.
        let joined = feed(&mut c, &[hit("1508", 4, 600, "192.0.2.9")]);
        assert_eq!(joined.len(), 1, "{joined:?}");
        let row = &joined[0];
        assert_eq!(row.tenant, "1508");
        assert_eq!(row.event_id, EventId([4; 16]));
        assert_eq!(field(row, "correlation.window"), window.as_deref());
        assert_eq!(field(row, "correlation.hits"), Some("1"));
        assert_eq!(field(row, "correlation.joined_us"), Some("600000000"));
        assert_eq!(
            field(row, "correlation.scope"),
            Some("several municipalities")
        );
        assert!(fired.iter().all(|a| a.alert_id != row.alert_id));
        // Again from a municipality already in it (a hit of a new window), or an event of the
        // campaign delivered again (not a hit at all): nothing.
        assert!(feed(&mut c, &[hit("4601", 5, 700, "192.0.2.9")]).is_empty());
        assert!(feed(&mut c, &[hit("1508", 4, 600, "192.0.2.9")]).is_empty());
        assert!(feed(&mut c, &[hit("0301", 1, 0, "192.0.2.9")]).is_empty());

        // The campaign outlives a restart: the log replayed, the next municipality joins it.
        let log = c.take_log();
        let mut again = correlator(&[SPRAY]);
        again.restore(&log);
        let joined = feed(&mut again, &[hit("1804", 6, 800, "192.0.2.9")]);
        assert_eq!(joined.len(), 1, "{joined:?}");
        assert_eq!(field(&joined[0], "correlation.window"), window.as_deref());
        // An hour after the campaign's last hit a municipality starts afresh.
        assert!(feed(&mut again, &[hit("3403", 7, 20 + 3_601, "192.0.2.9")]).is_empty());
    }

    #[test]
    fn a_correlation_of_a_correlation_counts_its_firings() {
        // Two sprays from one address within a day: the second firing of the spray
        // completes the outer correlation (grouped by the same field).
        let outer = "title: Repeated spray\nid: 33333333-3333-3333-3333-333333333333\ncorrelation:\n  type: event_count\n  rules: [spray]\n  group-by: [src_ip]\n  timespan: 1d\n  condition:\n    gte: 2\nlevel: critical\n";
        let mut c = correlator(&[SPRAY, outer]);
        assert!(c.skipped().is_empty(), "{:?}", c.skipped());
        assert_eq!(c.len(), 2);
        assert!(c.hides("22222222-2222-2222-2222-222222222222"));
        let mut hits = Vec::new();
        for round in 0..2u8 {
            for (i, t) in ["0301", "4601", "5001"].iter().enumerate() {
                let n = round * 3 + i as u8 + 1;
                hits.push(hit(t, n, i64::from(n) * 60, "192.0.2.9"));
            }
        }
        let out = feed(&mut c, &hits);
        let per_rule = |id: &str| out.iter().filter(|a| a.rule_id == id).count();
        assert_eq!(per_rule("22222222-2222-2222-2222-222222222222"), 6);
        // One row for each municipality of the sprays, each with its two sprays.
        let outer: Vec<&Alert> = out
            .iter()
            .filter(|a| a.rule_id == "33333333-3333-3333-3333-333333333333")
            .collect();
        let tenants: Vec<&str> = outer.iter().map(|a| a.tenant.as_str()).collect();
        assert_eq!(tenants, ["0301", "4601", "5001"]);
        for a in outer {
            assert_eq!(field(a, "src_ip"), Some("192.0.2.9"));
            assert_eq!(field(a, "correlation.value"), Some("2"));
            assert_eq!(field(a, "correlation.hits"), Some("2"));
        }
    }

    #[test]
    fn correlations_in_a_cycle_are_not_evaluated() {
        let a = "title: A\nid: 44444444-4444-4444-4444-444444444444\nname: a\ncorrelation:\n  type: event_count\n  rules: [b]\n  timespan: 1h\n  condition:\n    gte: 2\n";
        let b = "title: B\nid: 55555555-5555-5555-5555-555555555555\nname: b\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 1h\n  condition:\n    gte: 2\n";
        let c = correlator(&[a, b]);
        assert_eq!(c.len(), 0);
        assert_eq!(c.skipped().len(), 2, "{:?}", c.skipped());
    }

    #[test]
    fn the_log_replayed_into_a_new_correlator_completes_the_window_once() {
        let mut first = correlator(&[SPRAY]);
        let two = [
            hit("0301", 1, 0, "192.0.2.9"),
            hit("4601", 2, 10, "192.0.2.9"),
        ];
        assert!(feed(&mut first, &two).is_empty());
        let log = first.take_log();
        assert_eq!(log.len(), 2);
        assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));

        let mut second = correlator(&[SPRAY]);
        let r = second.restore(&log);
        assert_eq!((r.replayed, r.skipped, r.groups), (2, 0, 1));
        // A replayed delivery of the same events is not counted again.
        assert!(feed(&mut second, &two).is_empty());
        let out = feed(&mut second, &[hit("5001", 3, 20, "192.0.2.9")]);
        assert_eq!(out.len(), 3);
        // The log goes on after the restored sequence numbers.
        let next = second.take_log();
        assert!(next.iter().all(|h| h.seq > log[1].seq), "{next:?}");

        // An edited correlation does not take the old definition's hits.
        let mut edited = correlator(&[&SPRAY.replace("gte: 3", "gte: 4")]);
        let r = edited.restore(&log);
        assert_eq!((r.replayed, r.skipped, r.groups), (0, 2, 0));
    }
}
