//! The retro-hunt: the correlations of a rule set over the events already stored, as the
//! stream would have raised them. Each detection rule a correlation references runs as its
//! ClickHouse condition ([`varde_rules::sql`], the same rows the engine matches) over the
//! events of the time range; the matches, in event-time order, go through a fresh
//! [`Correlator`] with the stream's windows. A window the stream fired over the same events
//! fires here with the same alert id (it is derived from the correlation, the group and the
//! window's first hit), so writing the hunt's alerts next to the stream's adds only what the
//! stream missed (`tests/correlation_hunt.rs` compares the two on the real ClickHouse).
//!
//! Not the same as the stream: the shared component of an event (`component`) is the
//! pipeline's enrichment and is not stored with the event, so a correlation grouped by
//! `component` groups every hunted hit under an empty component.

use varde_core::{AlertId, EventId};
use varde_rules::RuleSet;
use varde_rules::datafusion::rule_key;
use varde_store::{Alert, EventStore, Hunt, StoredEvent};

use crate::correlate::{CorrelationSettings, Correlator};

/// Why a retro-hunt could not run.
#[derive(Debug, thiserror::Error)]
pub enum HuntError {
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] varde_store::Error),
    /// A referenced rule has no SQL form.
    #[error("rule {rule}: no ClickHouse condition: {reason}")]
    NoSql {
        /// The rule.
        rule: String,
        /// Why.
        reason: String,
    },
    /// More hits than the bound.
    #[error("more than {0} hits in the time range; narrow it or raise --max-hits")]
    TooManyHits(usize),
    /// No correlation to run.
    #[error("no correlation among the rules is evaluated")]
    NoCorrelation,
}

/// What a retro-hunt found.
#[derive(Debug, Default)]
pub struct HuntReport {
    /// Hits (matches of referenced rules) fed to the correlations.
    pub hits: usize,
    /// The correlation alerts, in the order the windows fired.
    pub alerts: Vec<Alert>,
}

/// Events read from the store per query.
const PAGE: u64 = 50_000;

/// Runs the correlations of `set` over the stored events of `[from_us, to_us)` (whole
/// seconds), at most `max_hits` matches of their rules.
pub async fn correlate_stored<St: EventStore>(
    store: &St,
    set: &RuleSet,
    from_us: i64,
    to_us: i64,
    max_hits: usize,
) -> Result<HuntReport, HuntError> {
    let mut correlator = Correlator::new(
        set,
        &CorrelationSettings {
            restore_hours: 0,
            ..CorrelationSettings::default()
        },
    );
    if correlator.is_empty() {
        return Err(HuntError::NoCorrelation);
    }
    // (event time, event id, rule) → the event, for every match of a referenced rule.
    let mut hits: Vec<(i64, String, usize, std::sync::Arc<StoredEvent>)> = Vec::new();
    for (r, rule) in set.rules().iter().enumerate() {
        if !correlator.wants(&rule_key(rule)) {
            continue;
        }
        let Some((expr, atoms, mapping)) = set.compiled(r) else {
            continue;
        };
        let condition =
            varde_rules::sql::condition(expr, atoms, mapping).map_err(|e| HuntError::NoSql {
                rule: rule_key(rule),
                reason: e.to_string(),
            })?;
        let mut offset = 0;
        loop {
            let page = store
                .hunt(
                    None,
                    &Hunt {
                        condition: condition.clone(),
                        from_us,
                        to_us,
                        limit: PAGE,
                        offset,
                    },
                )
                .await?;
            let n = page.len() as u64;
            for e in page {
                if hits.len() >= max_hits {
                    return Err(HuntError::TooManyHits(max_hits));
                }
                hits.push((
                    e.event_time_us,
                    e.event_id.clone(),
                    r,
                    std::sync::Arc::new(e),
                ));
            }
            if n < PAGE {
                break;
            }
            offset += n;
        }
    }
    hits.sort_by(|a, b| (a.0, &a.1, a.2).cmp(&(b.0, &b.1, b.2)));
    let mut report = HuntReport {
        hits: hits.len(),
        alerts: Vec::new(),
    };
    for (_, _, r, e) in &hits {
        let key = rule_key(&set.rules()[*r]);
        let event_id = EventId::parse_hex(&e.event_id).unwrap_or(EventId([0; 16]));
        let alert = Alert {
            alert_id: AlertId::derive(&key, event_id),
            dedup_key: [0; 16],
            tenant: e.tenant.clone(),
            component: String::new(),
            rule_id: key,
            rule_title: set.rules()[*r].meta.title.clone(),
            rule_level: set.rules()[*r].meta.level.clone().unwrap_or_default(),
            rule_tags: Vec::new(),
            event_id,
            event_time_us: e.event_time_us,
            detect_time_us: 0,
            source_kind: e.source_kind.clone(),
            host: e.host.clone(),
            matched: Vec::new(),
        };
        let field = |name: &str| {
            e.fields
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        report
            .alerts
            .extend(correlator.observe(&alert, &field, crate::now_us()));
        // The hit log is the stream's (for restarts); the hunt keeps none.
        drop(correlator.take_log());
    }
    Ok(report)
}
