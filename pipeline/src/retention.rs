//! Retention: old rows go by whole day partitions, on a schedule.
//!
//! ClickHouse 18.16 has no TTL, so the pipeline enforces retention itself: every table is
//! `PARTITION BY` a day (`events` and `alerts` by the event's day, `dead_letters` by the day the
//! message was refused), and every `check_interval_s` each table's partitions whose day is
//! before *today (UTC) − its days* are dropped whole ([`EventStore::drop_partitions_older_than`]).
//! With `events_days = 30` a run on 1 June keeps 2 May and later and drops 1 May and earlier.
//! Each drop is logged (table, partition, rows) and counted in [`RetentionStats`]
//! (`varde_pipeline_retention_*` on `/metrics`). Several pipeline instances may run it at the
//! same time: dropping a partition that is already gone is not an error, so at worst one of them
//! logs a drop that another made too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::watch;
use tracing::{info, warn};
use varde_store::{DroppedPartition, EventStore, Table, today_day};

/// The `[retention]` section: days to keep per table (0 keeps forever).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionSettings {
    /// Days of events to keep (default 30).
    #[serde(default = "default_events_days")]
    pub events_days: u16,
    /// Days of alerts to keep, by the day of the alerted event (default 400).
    #[serde(default = "default_alerts_days")]
    pub alerts_days: u16,
    /// Days of dead letters to keep, by the day they were refused (default 30).
    #[serde(default = "default_dead_letters_days")]
    pub dead_letters_days: u16,
    /// Days of the correlations' hit log to keep, by the day a hit was observed (default 7; a
    /// starting pipeline replays `detection.correlation.restore_hours` of it).
    #[serde(default = "default_correlation_hits_days")]
    pub correlation_hits_days: u16,
    /// Seconds between retention runs (default 3600; the first run is at start). 0 turns
    /// retention off altogether.
    #[serde(default = "default_check_interval_s")]
    pub check_interval_s: u64,
}

fn default_events_days() -> u16 {
    30
}
fn default_alerts_days() -> u16 {
    400
}
fn default_dead_letters_days() -> u16 {
    30
}
fn default_correlation_hits_days() -> u16 {
    7
}
fn default_check_interval_s() -> u64 {
    3600
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            events_days: default_events_days(),
            alerts_days: default_alerts_days(),
            dead_letters_days: default_dead_letters_days(),
            correlation_hits_days: default_correlation_hits_days(),
            check_interval_s: default_check_interval_s(),
        }
    }
}

impl RetentionSettings {
    /// Days kept of `table` (0: forever).
    pub fn days(&self, table: Table) -> u16 {
        match table {
            Table::Events => self.events_days,
            Table::Alerts => self.alerts_days,
            Table::DeadLetters => self.dead_letters_days,
            Table::CorrelationHits => self.correlation_hits_days,
        }
    }

    /// The first day kept of `table` on `today` (days since the epoch): partitions before it
    /// are dropped. `None` when the table is kept forever.
    pub fn cutoff(&self, table: Table, today: u16) -> Option<u16> {
        match self.days(table) {
            0 => None,
            days => Some(today.saturating_sub(days)),
        }
    }
}

/// Counters of retention, per table in the order of [`Table::ALL`].
#[derive(Debug, Default)]
pub struct RetentionStats {
    /// Partitions dropped, per table.
    pub dropped_partitions: [AtomicU64; 4],
    /// Rows in the dropped partitions, per table.
    pub dropped_rows: [AtomicU64; 4],
    /// Runs completed (whether or not they dropped anything).
    pub runs: AtomicU64,
    /// Tables whose run failed (the store refused or was down; retried at the next run).
    pub errors: AtomicU64,
    /// When the last run ended, µs since the epoch (0: none yet).
    pub last_run_us: AtomicU64,
}

fn index(table: Table) -> usize {
    Table::ALL.iter().position(|t| *t == table).unwrap_or(0)
}

impl RetentionStats {
    /// Partitions dropped from `table` so far.
    pub fn dropped_partitions(&self, table: Table) -> u64 {
        self.dropped_partitions[index(table)].load(Ordering::Relaxed)
    }

    /// Rows in the partitions dropped from `table` so far.
    pub fn dropped_rows(&self, table: Table) -> u64 {
        self.dropped_rows[index(table)].load(Ordering::Relaxed)
    }
}

/// One retention run over every table, as of `today` (days since the epoch, UTC). A table the
/// store fails on is logged and counted in [`RetentionStats::errors`]; the others still run.
/// Returns what was dropped.
pub async fn retention_pass<St: EventStore>(
    store: &St,
    settings: &RetentionSettings,
    today: u16,
    stats: &RetentionStats,
) -> Vec<(Table, DroppedPartition)> {
    let mut dropped = Vec::new();
    for table in Table::ALL {
        let Some(cutoff) = settings.cutoff(table, today) else {
            continue;
        };
        match store.drop_partitions_older_than(table, cutoff).await {
            Ok(parts) => {
                for p in parts {
                    info!(table = table.name(), partition = %p.partition, rows = p.rows,
                        days = settings.days(table), "retention: dropped a day partition");
                    stats.dropped_partitions[index(table)].fetch_add(1, Ordering::Relaxed);
                    stats.dropped_rows[index(table)].fetch_add(p.rows, Ordering::Relaxed);
                    dropped.push((table, p));
                }
            }
            Err(e) => {
                stats.errors.fetch_add(1, Ordering::Relaxed);
                warn!(table = table.name(), error = %e, "retention: run failed; retrying at the next run");
            }
        }
    }
    stats.runs.fetch_add(1, Ordering::Relaxed);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    stats.last_run_us.store(now, Ordering::Relaxed);
    dropped
}

/// Runs [`retention_pass`] at once and then every `check_interval_s` until `shutdown` turns
/// true; returns at once when the interval is 0 (retention off).
pub async fn run_retention<St: EventStore>(
    store: &St,
    settings: RetentionSettings,
    stats: &RetentionStats,
    mut shutdown: watch::Receiver<bool>,
) {
    if settings.check_interval_s == 0 {
        info!("retention: off (check_interval_s = 0)");
        return;
    }
    info!(
        events_days = settings.events_days,
        alerts_days = settings.alerts_days,
        dead_letters_days = settings.dead_letters_days,
        every_s = settings.check_interval_s,
        "retention: on (0 days = kept forever)"
    );
    let every = Duration::from_secs(settings.check_interval_s);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let dropped = retention_pass(store, &settings, today_day(), stats).await;
        if !dropped.is_empty() {
            info!(partitions = dropped.len(), "retention: run done");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cutoffs_keep_the_last_n_days() {
        let s = RetentionSettings::default();
        assert_eq!(s.cutoff(Table::Events, 20_000), Some(19_970));
        assert_eq!(s.cutoff(Table::Alerts, 20_000), Some(19_600));
        assert_eq!(s.cutoff(Table::DeadLetters, 10), Some(0));
        let forever = RetentionSettings {
            events_days: 0,
            ..s
        };
        assert_eq!(forever.cutoff(Table::Events, 20_000), None);
    }

    #[test]
    fn the_section_is_strict() {
        let s: RetentionSettings = toml::from_str("events_days = 7").expect("valid");
        assert_eq!((s.events_days, s.alerts_days), (7, 400));
        let err = toml::from_str::<RetentionSettings>("event_days = 7")
            .expect_err("typo")
            .to_string();
        assert!(err.contains("event_days"), "{err}");
    }
}
