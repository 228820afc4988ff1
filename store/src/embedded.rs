//! The embedded store of `varde demo`: events in memory, keyed by event id, so the same
//! contract as ClickHouse holds (a replayed envelope adds no visible event) with no server.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use varde_core::status::CollectorStatus;
use varde_core::{AlertId, Envelope, EventId, Kommunenummer};

use crate::collectors::{Collectors, IdentityRecord, TokenRecord};
use crate::incident::{Change, IncidentChange, SHARED_FIELDS};
use crate::outbox::{Attempt, Notification, Outbox, OutboxEntry};
use crate::reports::{ExportRecord, ReportLog, SubmittedReport};
use crate::{
    Alert, AlertCount, AlertQuery, DeadLetter, DroppedPartition, Error, EventCount, EventQuery,
    EventStore, GroupSeen, Hunt, Result, RuleEntry, RuleSwitch, StoredEvent, Table, TriageAction,
    VolumeBy, VolumePoint, day_of_us, flatten, partition_id_of_day,
};
use crate::{CollectorSeen, CorrelationHit, WindowQuery};

/// In-memory [`EventStore`]. Clones share the same data (the demo's pipeline writes what its
/// dashboard reads).
#[derive(Default, Clone)]
pub struct EmbeddedStore {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Default)]
struct Inner {
    /// Events ordered by (event time, id), the read order.
    events: BTreeMap<(i64, EventId), StoredEvent>,
    /// Event time of every stored id, to find duplicates.
    ids: HashMap<EventId, i64>,
    /// Alerts ordered by (event time, id), the read order; a re-written id replaces its row.
    alerts: BTreeMap<(i64, AlertId), Alert>,
    /// Refused messages by (topic, partition, offset).
    dead_letters: BTreeMap<(String, i32, i64), DeadLetter>,
    /// Triage history by action id (a rewritten id replaces its row, as in ClickHouse).
    triage: HashMap<[u8; 16], TriageAction>,
    /// Rule switches by id.
    switches: HashMap<[u8; 16], RuleSwitch>,
    /// The correlations' hit log by (seq, correlation, event, rule), as ClickHouse orders it.
    correlation_hits: BTreeMap<(u64, String, EventId, u16), CorrelationHit>,
    /// Incident changes by change id (likewise).
    incidents: HashMap<[u8; 16], IncidentChange>,
    /// The newest rule catalog and when it was loaded.
    rules: Option<(i64, Vec<RuleEntry>)>,
    /// The outbox: notifications by id (the first write of an id stays), and their tries.
    notifications: HashMap<[u8; 16], Notification>,
    /// Tries by (notification, attempt, outcome), as ClickHouse orders them.
    attempts: BTreeMap<([u8; 16], u32, &'static str), Attempt>,
    /// Submitted incident reports by id.
    reports: HashMap<[u8; 16], SubmittedReport>,
    /// Export records by id.
    exports: HashMap<[u8; 16], ExportRecord>,
    /// The collector registry's identity records, as written.
    identity: Vec<IdentityRecord>,
    /// Enrolment token records, as written.
    tokens: Vec<TokenRecord>,
}

impl EmbeddedStore {
    /// An empty store.
    pub fn new() -> Self {
        EmbeddedStore::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of distinct events stored.
    pub fn len(&self) -> usize {
        self.lock().ids.len()
    }

    /// Whether no event is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl EventStore for EmbeddedStore {
    async fn write_envelopes(&self, envelopes: &[Envelope]) -> Result<u64> {
        let mut flat = Vec::new();
        for envelope in envelopes {
            flat.extend(flatten(envelope)?);
        }
        let mut inner = self.lock();
        let written = flat.len() as u64;
        for r in flat {
            if inner.ids.contains_key(&r.event_id) {
                continue;
            }
            inner.ids.insert(r.event_id, r.event_time_us);
            let event = StoredEvent {
                event_id: r.event_id.to_string(),
                tenant: r.tenant.to_owned(),
                event_time_us: r.event_time_us,
                // Whole seconds, as ClickHouse keeps it.
                receive_time_us: r.receive_time_us.div_euclid(1_000_000) * 1_000_000,
                source_kind: r.source_kind.to_owned(),
                collector_id: r.collector_id.to_owned(),
                batch_seq: r.batch_seq,
                batch_row: r.batch_row,
                host: r.host.to_owned(),
                severity: r.severity,
                message: r.message.to_owned(),
                fields: r
                    .field_keys
                    .into_iter()
                    .map(str::to_owned)
                    .zip(r.field_values.into_iter().map(|v| v.into_owned()))
                    .collect(),
            };
            inner.events.insert((r.event_time_us, r.event_id), event);
        }
        Ok(written)
    }

    async fn event_counts(&self) -> Result<Vec<EventCount>> {
        let inner = self.lock();
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        for e in inner.events.values() {
            *counts
                .entry((e.tenant.clone(), e.source_kind.clone()))
                .or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((tenant, source_kind), events)| EventCount {
                tenant,
                source_kind,
                events,
            })
            .collect())
    }

    async fn events(&self, query: &EventQuery) -> Result<Vec<StoredEvent>> {
        let inner = self.lock();
        Ok(inner
            .events
            .values()
            .filter(|e| query.tenant.is_none_or(|t| e.tenant == t.as_str()))
            .take(usize::try_from(query.limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn write_alerts(&self, alerts: &[Alert]) -> Result<u64> {
        let mut inner = self.lock();
        for a in alerts {
            inner
                .alerts
                .insert((a.event_time_us, a.alert_id), a.clone());
        }
        Ok(alerts.len() as u64)
    }

    async fn alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>> {
        let inner = self.lock();
        Ok(inner
            .alerts
            .values()
            .filter(|a| query.tenant.is_none_or(|t| a.tenant == t.as_str()))
            .take(usize::try_from(query.limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn recent_alerts(&self, query: &AlertQuery) -> Result<Vec<Alert>> {
        let inner = self.lock();
        Ok(inner
            .alerts
            .values()
            .rev()
            .filter(|a| query.tenant.is_none_or(|t| a.tenant == t.as_str()))
            .take(usize::try_from(query.limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn group_alerts(
        &self,
        tenant: Option<Kommunenummer>,
        dedup_key: [u8; 16],
        limit: u64,
    ) -> Result<Vec<Alert>> {
        Ok(self
            .lock()
            .alerts
            .values()
            .rev()
            .filter(|a| a.dedup_key == dedup_key)
            .filter(|a| tenant.is_none_or(|t| a.tenant == t.as_str()))
            .take(usize::try_from(limit).unwrap_or(usize::MAX))
            .cloned()
            .collect())
    }

    async fn campaign_alerts(
        &self,
        rule_id: &str,
        window: &str,
        since_us: i64,
        limit: u64,
    ) -> Result<Vec<Alert>> {
        let since = since_us.div_euclid(1_000_000);
        let mut rows: Vec<Alert> = self
            .lock()
            .alerts
            .values()
            .filter(|a| {
                a.rule_id == rule_id
                    && a.event_time_us.div_euclid(1_000_000) >= since
                    && a.matched
                        .iter()
                        .any(|(k, v)| k == "correlation.window" && v == window)
            })
            .cloned()
            .collect();
        rows.sort_by(|a, b| (&a.tenant, a.alert_id).cmp(&(&b.tenant, b.alert_id)));
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(rows)
    }

    async fn alerts_detected(&self, from_us: i64, to_us: i64, limit: u64) -> Result<Vec<Alert>> {
        let (from, to) = (from_us.div_euclid(1_000_000), to_us.div_euclid(1_000_000));
        let mut rows: Vec<Alert> = self
            .lock()
            .alerts
            .values()
            .filter(|a| (from..to).contains(&a.detect_time_us.div_euclid(1_000_000)))
            .cloned()
            .collect();
        rows.sort_by_key(|a| (a.detect_time_us.div_euclid(1_000_000), a.alert_id));
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(rows)
    }

    async fn component_spread(
        &self,
        tenant: Option<Kommunenummer>,
        component: &str,
        since_us: i64,
    ) -> Result<Vec<(String, u64)>> {
        let since = since_us.div_euclid(1_000_000);
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for a in self.lock().alerts.values() {
            if a.component == component
                && tenant.is_none_or(|t| a.tenant == t.as_str())
                && a.event_time_us.div_euclid(1_000_000) >= since
            {
                *counts.entry(a.tenant.clone()).or_default() += 1;
            }
        }
        let mut out: Vec<(String, u64)> = counts.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    async fn rule_spread(&self, rule_id: &str, since_us: i64) -> Result<Vec<(String, u64)>> {
        let since = since_us.div_euclid(1_000_000);
        let mut counts: BTreeMap<String, u64> = BTreeMap::new();
        for a in self.lock().alerts.values() {
            if a.rule_id == rule_id && a.event_time_us.div_euclid(1_000_000) >= since {
                *counts.entry(a.tenant.clone()).or_default() += 1;
            }
        }
        let mut out: Vec<(String, u64)> = counts.into_iter().collect();
        out.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        Ok(out)
    }

    async fn collectors(
        &self,
        tenant: Option<Kommunenummer>,
        now_us: i64,
    ) -> Result<Vec<CollectorSeen>> {
        let now = now_us.div_euclid(1_000_000);
        let week_ago_day = (now - 7 * 86_400).div_euclid(86_400);
        let mut seen: BTreeMap<(String, String), CollectorSeen> = BTreeMap::new();
        for e in self.lock().events.values() {
            if tenant.is_some_and(|t| e.tenant != t.as_str())
                || e.event_time_us.div_euclid(86_400_000_000) < week_ago_day
            {
                continue;
            }
            let c = seen
                .entry((e.tenant.clone(), e.collector_id.clone()))
                .or_insert_with(|| CollectorSeen {
                    collector_id: e.collector_id.clone(),
                    tenant: e.tenant.clone(),
                    last_receive_us: i64::MIN,
                    events_last_hour: 0,
                    kinds: Vec::new(),
                    status: None,
                });
            c.last_receive_us = c.last_receive_us.max(e.receive_time_us);
            if e.fields
                .iter()
                .any(|(k, _)| k == varde_core::status::MARKER)
            {
                if e.source_kind == "generic_json"
                    && c.status.as_ref().is_none_or(|s| s.at_us < e.event_time_us)
                {
                    let (keys, values): (Vec<String>, Vec<String>) =
                        e.fields.iter().cloned().unzip();
                    c.status = CollectorStatus::from_fields(e.event_time_us, &keys, &values);
                }
                continue;
            }
            if e.receive_time_us.div_euclid(1_000_000) >= now - 3600 {
                c.events_last_hour += 1;
            }
            if !c.kinds.contains(&e.source_kind) {
                c.kinds.push(e.source_kind.clone());
                c.kinds.sort();
            }
        }
        Ok(seen.into_values().collect())
    }

    async fn alerts_detected_after(
        &self,
        tenant: Option<Kommunenummer>,
        since_us: i64,
    ) -> Result<u64> {
        let second = since_us.div_euclid(1_000_000);
        Ok(self
            .lock()
            .alerts
            .values()
            .filter(|a| tenant.is_none_or(|t| a.tenant == t.as_str()))
            .filter(|a| a.detect_time_us.div_euclid(1_000_000) > second)
            .count() as u64)
    }

    async fn alert_volume(
        &self,
        tenant: Option<Kommunenummer>,
        by: VolumeBy,
        from_us: i64,
        to_us: i64,
        bucket_s: u32,
    ) -> Result<Vec<VolumePoint>> {
        let b = i64::from(bucket_s.max(1));
        // Whole seconds, as ClickHouse keeps event times.
        let (from, to) = (from_us.div_euclid(1_000_000), to_us.div_euclid(1_000_000));
        let mut counts: BTreeMap<(i64, String), u64> = BTreeMap::new();
        for a in self
            .lock()
            .alerts
            .values()
            .filter(|a| tenant.is_none_or(|t| a.tenant == t.as_str()))
        {
            let s = a.event_time_us.div_euclid(1_000_000);
            if s < from || s >= to {
                continue;
            }
            let key = match by {
                VolumeBy::Tenant => a.tenant.clone(),
                VolumeBy::Component => a.component.clone(),
            };
            *counts.entry((s.div_euclid(b) * b, key)).or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((bucket, key), alerts)| VolumePoint {
                bucket_us: bucket * 1_000_000,
                key,
                alerts,
            })
            .collect())
    }

    async fn alert_counts(&self) -> Result<Vec<AlertCount>> {
        let inner = self.lock();
        let mut counts: BTreeMap<(String, String), u64> = BTreeMap::new();
        for a in inner.alerts.values() {
            *counts
                .entry((a.tenant.clone(), a.rule_id.clone()))
                .or_default() += 1;
        }
        Ok(counts
            .into_iter()
            .map(|((tenant, rule_id), alerts)| AlertCount {
                tenant,
                rule_id,
                alerts,
            })
            .collect())
    }

    async fn write_dead_letters(&self, letters: &[DeadLetter]) -> Result<u64> {
        let mut inner = self.lock();
        for l in letters {
            inner
                .dead_letters
                .insert((l.topic.clone(), l.partition, l.offset), l.clone());
        }
        Ok(letters.len() as u64)
    }

    async fn drop_partitions_older_than(
        &self,
        table: Table,
        cutoff_day: u16,
    ) -> Result<Vec<DroppedPartition>> {
        // The same day "partitions" as ClickHouse: rows of one day go together.
        let mut days: BTreeMap<u16, u64> = BTreeMap::new();
        let mut inner = self.lock();
        let inner = &mut *inner;
        match table {
            Table::Events => {
                let ids = &mut inner.ids;
                inner.events.retain(|(us, id), _| {
                    let day = day_of_us(*us);
                    let keep = day >= cutoff_day;
                    if !keep {
                        *days.entry(day).or_default() += 1;
                        ids.remove(id);
                    }
                    keep
                });
            }
            Table::Alerts => inner.alerts.retain(|(us, _), _| {
                let day = day_of_us(*us);
                let keep = day >= cutoff_day;
                if !keep {
                    *days.entry(day).or_default() += 1;
                }
                keep
            }),
            Table::DeadLetters => inner.dead_letters.retain(|_, l| {
                let day = day_of_us(l.received_time_us);
                let keep = day >= cutoff_day;
                if !keep {
                    *days.entry(day).or_default() += 1;
                }
                keep
            }),
            Table::CorrelationHits => inner.correlation_hits.retain(|_, h| {
                let day = day_of_us(h.observed_us);
                let keep = day >= cutoff_day;
                if !keep {
                    *days.entry(day).or_default() += 1;
                }
                keep
            }),
        }
        Ok(days
            .into_iter()
            .map(|(day, rows)| DroppedPartition {
                partition: partition_id_of_day(day),
                day,
                rows,
            })
            .collect())
    }

    async fn check_alive(&self) -> Result<()> {
        Ok(())
    }

    async fn dead_letters(&self, limit: u64) -> Result<Vec<DeadLetter>> {
        let inner = self.lock();
        let mut out: Vec<DeadLetter> = inner.dead_letters.values().cloned().collect();
        out.sort_by_key(|l| (l.received_time_us, l.topic.clone(), l.partition, l.offset));
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(out)
    }

    async fn alert(&self, tenant: Option<Kommunenummer>, id: AlertId) -> Result<Option<Alert>> {
        let inner = self.lock();
        Ok(inner
            .alerts
            .iter()
            .find(|((_, a), alert)| *a == id && tenant.is_none_or(|t| alert.tenant == t.as_str()))
            .map(|(_, a)| a.clone()))
    }

    async fn event(
        &self,
        tenant: Option<Kommunenummer>,
        id: EventId,
    ) -> Result<Option<StoredEvent>> {
        let inner = self.lock();
        let Some(us) = inner.ids.get(&id) else {
            return Ok(None);
        };
        Ok(inner
            .events
            .get(&(*us, id))
            .filter(|e| tenant.is_none_or(|t| e.tenant == t.as_str()))
            .cloned())
    }

    async fn groups(
        &self,
        tenant: Option<Kommunenummer>,
        keys: &[[u8; 16]],
    ) -> Result<Vec<GroupSeen>> {
        let inner = self.lock();
        let mut seen: BTreeMap<([u8; 16], String), GroupSeen> = BTreeMap::new();
        for a in inner
            .alerts
            .values()
            .filter(|a| keys.contains(&a.dedup_key))
            .filter(|a| tenant.is_none_or(|t| a.tenant == t.as_str()))
        {
            let g = seen
                .entry((a.dedup_key, a.tenant.clone()))
                .or_insert_with(|| GroupSeen {
                    dedup_key: a.dedup_key,
                    tenant: a.tenant.clone(),
                    last_detect_us: i64::MIN,
                    component: a.component.clone(),
                    rule_title: a.rule_title.clone(),
                    rule_level: a.rule_level.clone(),
                });
            g.last_detect_us = g.last_detect_us.max(a.detect_time_us);
        }
        Ok(seen.into_values().collect())
    }

    async fn write_triage(&self, actions: &[TriageAction]) -> Result<u64> {
        let mut inner = self.lock();
        for a in actions {
            inner.triage.insert(a.action_id, a.clone());
        }
        Ok(actions.len() as u64)
    }

    async fn triage(
        &self,
        tenant: Option<Kommunenummer>,
        keys: &[[u8; 16]],
    ) -> Result<Vec<TriageAction>> {
        let inner = self.lock();
        let mut out: Vec<TriageAction> = inner
            .triage
            .values()
            .filter(|a| keys.contains(&a.dedup_key))
            .filter(|a| tenant.is_none_or(|t| a.tenant == t.as_str()))
            .cloned()
            .collect();
        out.sort_by_key(|a| (a.at_us, a.action_id));
        Ok(out)
    }

    async fn hunt(&self, _tenant: Option<Kommunenummer>, _hunt: &Hunt) -> Result<Vec<StoredEvent>> {
        Err(Error::Unsupported(
            "hunting runs Sigma rules as SQL on ClickHouse; the embedded store has no SQL",
        ))
    }

    async fn write_rules(&self, loaded_at_us: i64, entries: &[RuleEntry]) -> Result<u64> {
        let mut inner = self.lock();
        let newer = inner
            .rules
            .as_ref()
            .is_none_or(|(at, _)| *at <= loaded_at_us);
        if newer {
            let mut sorted = entries.to_vec();
            sorted.sort_by(|a, b| (&a.source, &a.rule_id).cmp(&(&b.source, &b.rule_id)));
            match &mut inner.rules {
                // Rows of the same load (written in parts) join it.
                Some((at, rows)) if *at == loaded_at_us => {
                    rows.extend(sorted);
                    rows.sort_by(|a, b| (&a.source, &a.rule_id).cmp(&(&b.source, &b.rule_id)));
                }
                _ => inner.rules = Some((loaded_at_us, sorted)),
            }
        }
        Ok(entries.len() as u64)
    }

    async fn rules(&self) -> Result<(Option<i64>, Vec<RuleEntry>)> {
        Ok(match &self.lock().rules {
            Some((at, rows)) => (Some(*at), rows.clone()),
            None => (None, Vec::new()),
        })
    }

    async fn rule(&self, rule_id: &str) -> Result<Option<RuleEntry>> {
        Ok(self.lock().rules.as_ref().and_then(|(_, rows)| {
            rows.iter()
                .find(|r| r.rule_id == rule_id && r.error.is_empty())
                .cloned()
        }))
    }

    async fn triage_log(&self, limit: u64) -> Result<Vec<TriageAction>> {
        let inner = self.lock();
        let mut out: Vec<TriageAction> = inner.triage.values().cloned().collect();
        out.sort_by_key(|a| std::cmp::Reverse((a.at_us, a.action_id)));
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(out)
    }

    async fn write_rule_switches(&self, switches: &[RuleSwitch]) -> Result<u64> {
        let mut inner = self.lock();
        for s in switches {
            inner.switches.insert(s.switch_id, s.clone());
        }
        Ok(switches.len() as u64)
    }

    async fn rule_switches(&self) -> Result<Vec<RuleSwitch>> {
        let inner = self.lock();
        let mut out: Vec<RuleSwitch> = inner.switches.values().cloned().collect();
        out.sort_by_key(|s| (s.at_us, s.switch_id));
        Ok(out)
    }

    async fn write_correlation_hits(&self, hits: &[CorrelationHit]) -> Result<u64> {
        let mut inner = self.lock();
        for h in hits {
            inner.correlation_hits.insert(
                (h.seq, h.correlation.clone(), h.event_id, h.rule_pos),
                h.clone(),
            );
        }
        Ok(hits.len() as u64)
    }

    async fn correlation_hits(&self, observed_since_us: i64) -> Result<Vec<CorrelationHit>> {
        // Whole seconds, as ClickHouse compares them.
        let since = observed_since_us.div_euclid(1_000_000) * 1_000_000;
        let inner = self.lock();
        Ok(inner
            .correlation_hits
            .values()
            .filter(|h| h.observed_us >= since)
            .cloned()
            .collect())
    }

    async fn window_hits(
        &self,
        tenant: Option<Kommunenummer>,
        window: &WindowQuery,
        limit: u64,
    ) -> Result<Vec<CorrelationHit>> {
        let inner = self.lock();
        let mut out: Vec<CorrelationHit> = inner
            .correlation_hits
            .values()
            .filter(|h| {
                h.correlation == window.correlation
                    && h.group == window.group
                    && (window.first_us..=window.last_us).contains(&h.event_time_us)
                    && tenant.is_none_or(|t| h.tenant == t.as_str())
            })
            .cloned()
            .collect();
        out.sort_by(|a, b| {
            (a.event_time_us, a.event_id, a.rule_pos, a.seq).cmp(&(
                b.event_time_us,
                b.event_id,
                b.rule_pos,
                b.seq,
            ))
        });
        out.dedup_by(|a, b| (a.event_id, a.rule_pos) == (b.event_id, b.rule_pos));
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(out)
    }

    async fn write_incident_changes(&self, changes: &[IncidentChange]) -> Result<u64> {
        let mut inner = self.lock();
        for c in changes {
            inner.incidents.insert(c.change_id, c.clone());
        }
        Ok(changes.len() as u64)
    }

    async fn incident_changes(
        &self,
        tenant: Option<Kommunenummer>,
        incident: Option<[u8; 16]>,
    ) -> Result<Vec<IncidentChange>> {
        let inner = self.lock();
        let mut rows: Vec<&IncidentChange> = inner
            .incidents
            .values()
            .filter(|c| incident.is_none_or(|id| c.incident_id == id))
            .collect();
        rows.sort_by_key(|c| (c.at_us, c.change_id));
        let Some(t) = tenant else {
            return Ok(rows.into_iter().cloned().collect());
        };
        let t = t.as_str();
        let own_link = |c: &IncidentChange| matches!(&c.change, Change::LinkGroup { tenant, .. } if tenant == t);
        // The same rule as the ClickHouse query: a linked group of its own, or named in the
        // latest list of further municipalities.
        let mut latest: HashMap<[u8; 16], &Vec<String>> = HashMap::new();
        for c in &rows {
            if let Change::Municipalities(m) = &c.change {
                latest.insert(c.incident_id, m);
            }
        }
        let concerned: Vec<[u8; 16]> = rows
            .iter()
            .filter(|c| own_link(c))
            .map(|c| c.incident_id)
            .chain(
                latest
                    .iter()
                    .filter(|(_, m)| m.iter().any(|x| x == t))
                    .map(|(id, _)| *id),
            )
            .collect();
        Ok(rows
            .into_iter()
            .filter(|c| concerned.contains(&c.incident_id))
            .filter(|c| SHARED_FIELDS.contains(&c.change.field()) || own_link(c))
            .cloned()
            .collect())
    }
}

impl ReportLog for EmbeddedStore {
    async fn write_reports(&self, reports: &[SubmittedReport]) -> Result<u64> {
        let mut inner = self.lock();
        for r in reports {
            inner.reports.insert(r.report_id, r.clone());
        }
        Ok(reports.len() as u64)
    }

    async fn reports(&self, incident: Option<[u8; 16]>) -> Result<Vec<SubmittedReport>> {
        let mut out: Vec<SubmittedReport> = self
            .lock()
            .reports
            .values()
            .filter(|r| incident.is_none_or(|i| r.incident_id == i))
            .cloned()
            .collect();
        out.sort_by_key(|r| (r.at_us, r.report_id));
        Ok(out)
    }

    async fn write_exports(&self, exports: &[ExportRecord]) -> Result<u64> {
        let mut inner = self.lock();
        for e in exports {
            inner.exports.insert(e.export_id, e.clone());
        }
        Ok(exports.len() as u64)
    }

    async fn exports(&self, limit: u64) -> Result<Vec<ExportRecord>> {
        let mut out: Vec<ExportRecord> = self.lock().exports.values().cloned().collect();
        out.sort_by_key(|e| (std::cmp::Reverse(e.at_us), e.export_id));
        out.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(out)
    }
}

impl Outbox for EmbeddedStore {
    async fn write_notifications(&self, notifications: &[Notification]) -> Result<u64> {
        let mut inner = self.lock();
        for n in notifications {
            inner
                .notifications
                .entry(n.notification_id)
                .or_insert_with(|| n.clone());
        }
        Ok(notifications.len() as u64)
    }

    async fn write_attempts(&self, attempts: &[Attempt]) -> Result<u64> {
        let mut inner = self.lock();
        for a in attempts {
            inner.attempts.insert(
                (a.notification_id, a.attempt, a.outcome.as_str()),
                a.clone(),
            );
        }
        Ok(attempts.len() as u64)
    }

    async fn outbox(&self, since_us: i64, limit: u64) -> Result<Vec<OutboxEntry>> {
        let since = since_us.div_euclid(1_000_000) * 1_000_000;
        let inner = self.lock();
        let mut rows: Vec<&Notification> = inner
            .notifications
            .values()
            .filter(|n| n.created_us >= since)
            .collect();
        rows.sort_by(|a, b| {
            (b.created_us, a.notification_id).cmp(&(a.created_us, b.notification_id))
        });
        rows.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        Ok(rows
            .into_iter()
            .map(|n| OutboxEntry {
                notification: n.clone(),
                attempts: inner
                    .attempts
                    .range((n.notification_id, 0, "")..=(n.notification_id, u32::MAX, "~"))
                    .map(|(_, a)| a.clone())
                    .collect(),
            })
            .collect())
    }

    async fn queued_ids(&self, ids: &[[u8; 16]]) -> Result<Vec<[u8; 16]>> {
        let inner = self.lock();
        Ok(ids
            .iter()
            .filter(|id| inner.notifications.contains_key(*id))
            .copied()
            .collect())
    }
}

impl Collectors for EmbeddedStore {
    async fn write_identity(&self, records: &[IdentityRecord]) -> Result<u64> {
        self.lock().identity.extend(records.iter().cloned());
        Ok(records.len() as u64)
    }

    async fn identity_log(&self) -> Result<Vec<IdentityRecord>> {
        let mut out = self.lock().identity.clone();
        out.sort_by_key(|r| r.at_us);
        Ok(out)
    }

    async fn identity_version(&self) -> Result<(u64, i64)> {
        let inner = self.lock();
        let newest = inner.identity.iter().map(|r| r.at_us).max().unwrap_or(0);
        Ok((inner.identity.len() as u64, newest))
    }

    async fn write_tokens(&self, records: &[TokenRecord]) -> Result<u64> {
        self.lock().tokens.extend(records.iter().cloned());
        Ok(records.len() as u64)
    }

    async fn tokens(&self, token_id: Option<&str>) -> Result<Vec<TokenRecord>> {
        let mut out: Vec<TokenRecord> = self
            .lock()
            .tokens
            .iter()
            .filter(|t| token_id.is_none_or(|id| t.token_id == id))
            .cloned()
            .collect();
        out.sort_by_key(|t| t.at_us);
        Ok(out)
    }
}
