//! The month's report: the incidents the CERT became aware of in a calendar month by
//! classification, municipality and component, open against closed, the month's alert volume
//! per day, municipality and component, and how long the CERT took to acknowledge and to resolve
//! the alert groups it handled, as printable HTML (with SVG bar charts, no script) and CSV.

use std::collections::BTreeMap;

use chrono::{NaiveDate, TimeZone, Utc};
use maud::{DOCTYPE, Markup, html};
use varde_store::incident::{Incident, IncidentStatus};
use varde_store::{EventStore, TriageKind, VolumeBy};

use crate::model::Issuer;
use crate::taxonomy;

/// Most triage actions a month's report reads.
pub const TRIAGE_MAX: u64 = 200_000;

/// A month's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct MonthReport {
    /// `YYYY-MM`.
    pub month: String,
    /// Its first microsecond.
    pub from_us: i64,
    /// The first microsecond of the next month.
    pub to_us: i64,
    /// The incidents the CERT became aware of in the month, as they stand now.
    pub incidents: Vec<Incident>,
    /// Alerts per day of event time (day start, alerts).
    pub daily: Vec<(i64, u64)>,
    /// Alerts per municipality, most first.
    pub by_municipality: Vec<(String, u64)>,
    /// Alerts per shared component, most first (empty key: none).
    pub by_component: Vec<(String, u64)>,
    /// Seconds from a group's first detection to its first triage action, per group handled.
    pub acknowledge_s: Vec<i64>,
    /// Seconds from a group's first detection to its resolution, per group resolved.
    pub resolve_s: Vec<i64>,
    /// When made.
    pub generated_us: i64,
    /// Who issues it.
    pub issuer: Issuer,
}

/// The span of `YYYY-MM` in µs; `None` when it is not a month.
pub fn month_span(month: &str) -> Option<(i64, i64)> {
    let (y, m) = month.split_once('-')?;
    let (y, m): (i32, u32) = (y.parse().ok()?, m.parse().ok()?);
    let first = NaiveDate::from_ymd_opt(y, m, 1)?;
    let next = if m == 12 {
        NaiveDate::from_ymd_opt(y + 1, 1, 1)?
    } else {
        NaiveDate::from_ymd_opt(y, m + 1, 1)?
    };
    let at = |d: NaiveDate| -> Option<i64> {
        Some(
            Utc.from_utc_datetime(&d.and_hms_opt(0, 0, 0)?)
                .timestamp_micros(),
        )
    };
    Some((at(first)?, at(next)?))
}

fn ranked(map: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// The month `YYYY-MM` from `store`, as the CERT sees it.
pub async fn assemble_month<S: EventStore>(
    store: &S,
    month: &str,
    generated_us: i64,
    issuer: Issuer,
) -> Result<Option<MonthReport>, varde_store::Error> {
    let Some((from_us, to_us)) = month_span(month) else {
        return Ok(None);
    };
    let mut incidents: Vec<Incident> = Incident::fold(&store.incident_changes(None, None).await?)
        .into_iter()
        .filter(|i| (from_us..to_us).contains(&i.aware_at_us))
        .collect();
    incidents.sort_by_key(|i| (i.aware_at_us, i.incident_id));
    let mut daily: BTreeMap<i64, u64> = BTreeMap::new();
    let mut by_municipality: BTreeMap<String, u64> = BTreeMap::new();
    for p in store
        .alert_volume(None, VolumeBy::Tenant, from_us, to_us, 86_400)
        .await?
    {
        *daily.entry(p.bucket_us).or_default() += p.alerts;
        *by_municipality.entry(p.key).or_default() += p.alerts;
    }
    let mut by_component: BTreeMap<String, u64> = BTreeMap::new();
    for p in store
        .alert_volume(None, VolumeBy::Component, from_us, to_us, 86_400)
        .await?
    {
        *by_component.entry(p.key).or_default() += p.alerts;
    }
    // Triage of the month: per group, its first action and its first resolution.
    let mut first_action: BTreeMap<([u8; 16], String), i64> = BTreeMap::new();
    let mut resolved: BTreeMap<([u8; 16], String), i64> = BTreeMap::new();
    for a in store.triage_log(TRIAGE_MAX).await? {
        if !(from_us..to_us).contains(&a.at_us) {
            continue;
        }
        let key = (a.dedup_key, a.tenant.clone());
        let e = first_action.entry(key.clone()).or_insert(a.at_us);
        *e = (*e).min(a.at_us);
        if a.kind == TriageKind::Resolve {
            let e = resolved.entry(key).or_insert(a.at_us);
            *e = (*e).min(a.at_us);
        }
    }
    let (mut acknowledge_s, mut resolve_s) = (Vec::new(), Vec::new());
    for ((key, tenant), at) in &first_action {
        let Ok(k) = varde_core::Kommunenummer::parse(tenant) else {
            continue;
        };
        let Some(first) = store
            .group_alerts(Some(k), *key, 10_000)
            .await?
            .iter()
            .map(|a| a.detect_time_us)
            .min()
        else {
            continue;
        };
        acknowledge_s.push((at - first).max(0) / 1_000_000);
        if let Some(r) = resolved.get(&(*key, tenant.clone())) {
            resolve_s.push((r - first).max(0) / 1_000_000);
        }
    }
    acknowledge_s.sort_unstable();
    resolve_s.sort_unstable();
    Ok(Some(MonthReport {
        month: month.to_owned(),
        from_us,
        to_us,
        incidents,
        daily: daily.into_iter().collect(),
        by_municipality: ranked(by_municipality),
        by_component: ranked(by_component),
        acknowledge_s,
        resolve_s,
        generated_us,
        issuer,
    }))
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank; `None` when empty.
pub fn quantile(sorted: &[i64], q: f64) -> Option<i64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.clamp(1, sorted.len()) - 1).copied()
}

impl MonthReport {
    /// Incidents per classification (display name; "not classified").
    pub fn by_category(&self) -> Vec<(String, u64)> {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for i in &self.incidents {
            let name = taxonomy::classify(&i.category).map_or_else(
                || "not classified".to_owned(),
                |c| format!("{} / {}", c.category_name, c.kind_name),
            );
            *m.entry(name).or_default() += 1;
        }
        ranked(m)
    }

    /// Incidents per affected municipality.
    pub fn incidents_by_municipality(&self) -> Vec<(String, u64)> {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for i in &self.incidents {
            for k in i.municipalities() {
                *m.entry(k).or_default() += 1;
            }
        }
        ranked(m)
    }

    /// Incidents per affected component.
    pub fn incidents_by_component(&self) -> Vec<(String, u64)> {
        let mut m: BTreeMap<String, u64> = BTreeMap::new();
        for i in &self.incidents {
            for c in i.components() {
                *m.entry(c).or_default() += 1;
            }
        }
        ranked(m)
    }

    /// (open, closed) of the month's incidents, as they stand now.
    pub fn open_closed(&self) -> (usize, usize) {
        let closed = self
            .incidents
            .iter()
            .filter(|i| i.status == IncidentStatus::Closed)
            .count();
        (self.incidents.len() - closed, closed)
    }

    /// The CSV: one row per figure (`section,key,value`), formula injection defused.
    pub fn csv(&self) -> String {
        let mut w = csv::Writer::from_writer(Vec::new());
        let _ = w.write_record(["section", "key", "value"]);
        let mut row = |s: &str, k: &str, v: String| {
            let _ = w.write_record([s, &crate::table::cell(k), &v]);
        };
        let (open, closed) = self.open_closed();
        row("incidents", "total", self.incidents.len().to_string());
        row("incidents", "open", open.to_string());
        row("incidents", "closed", closed.to_string());
        for (k, n) in self.by_category() {
            row("incidents_by_category", &k, n.to_string());
        }
        for (k, n) in self.incidents_by_municipality() {
            row("incidents_by_municipality", &k, n.to_string());
        }
        for (k, n) in self.incidents_by_component() {
            row("incidents_by_component", &k, n.to_string());
        }
        for (day, n) in &self.daily {
            row(
                "alerts_by_day",
                &crate::model::stix_time(*day)[..10],
                n.to_string(),
            );
        }
        for (k, n) in &self.by_municipality {
            row("alerts_by_municipality", k, n.to_string());
        }
        for (k, n) in &self.by_component {
            row(
                "alerts_by_component",
                if k.is_empty() { "(none)" } else { k },
                n.to_string(),
            );
        }
        for (name, values) in [
            ("acknowledge_s", &self.acknowledge_s),
            ("resolve_s", &self.resolve_s),
        ] {
            row(name, "groups", values.len().to_string());
            for (q, label) in [(0.5, "median"), (0.9, "p90")] {
                if let Some(v) = quantile(values, q) {
                    row(name, label, v.to_string());
                }
            }
        }
        String::from_utf8(w.into_inner().unwrap_or_default()).unwrap_or_default()
    }

    /// The printable page.
    pub fn html(&self) -> String {
        let (open, closed) = self.open_closed();
        let hours = |s: Option<i64>| {
            s.map_or_else(|| "–".to_owned(), |s| format!("{:.1} h", s as f64 / 3600.0))
        };
        html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    title { "Month report " (self.month) }
                    style { (STYLE) }
                }
                body {
                    h1 { "Month report " (self.month) }
                    p { (self.issuer.name) " · generated " (crate::model::stix_time(self.generated_us)) }
                    h2 { "Incidents" }
                    p { (self.incidents.len()) " incidents the CERT became aware of in the month: "
                        (open) " open, " (closed) " closed (as they stand at generation)." }
                    (table("By classification (ENISA RSIT)", &self.by_category()))
                    (table("By municipality", &self.incidents_by_municipality()))
                    (table("By shared component", &self.incidents_by_component()))
                    h2 { "Alerts" }
                    (bars("Alerts per day (event time, UTC)", &self.daily.iter().map(|(d, n)| (crate::model::stix_time(*d)[8..10].to_owned(), *n)).collect::<Vec<_>>()))
                    (bars("Alerts per municipality", &self.by_municipality))
                    (bars("Alerts per shared component", &self.by_component.iter().map(|(k, n)| (if k.is_empty() { "(none)".to_owned() } else { k.clone() }, *n)).collect::<Vec<_>>()))
                    h2 { "Response" }
                    table {
                        thead { tr { th { "" } th { "Groups" } th { "Median" } th { "90th percentile" } } }
                        tbody {
                            tr { td { "First detection to acknowledgement" } td { (self.acknowledge_s.len()) }
                                 td { (hours(quantile(&self.acknowledge_s, 0.5))) } td { (hours(quantile(&self.acknowledge_s, 0.9))) } }
                            tr { td { "First detection to resolution" } td { (self.resolve_s.len()) }
                                 td { (hours(quantile(&self.resolve_s, 0.5))) } td { (hours(quantile(&self.resolve_s, 0.9))) } }
                        }
                    }
                    footer { "Made by Varde from the append-only records of incidents, alerts and triage." }
                }
            }
        }
        .into_string()
    }
}

const STYLE: &str = "
@page { size: A4; margin: 18mm 16mm; }
body { font-family: 'Noto Sans', 'DejaVu Sans', Arial, sans-serif; font-size: 10.5pt; color: #111; }
h1 { font-size: 17pt; } h2 { font-size: 12.5pt; border-bottom: 1px solid #999; }
table { border-collapse: collapse; margin: 4pt 0 10pt; }
th, td { border: 1px solid #bbb; padding: 2pt 6pt; text-align: left; }
th { background: #eee; }
figure { margin: 4pt 0 10pt; } figcaption { font-weight: bold; }
footer { margin-top: 16pt; font-size: 8.5pt; color: #555; }
";

fn table(caption: &str, rows: &[(String, u64)]) -> Markup {
    html! {
        table {
            caption { (caption) }
            thead { tr { th { "" } th { "Incidents" } } }
            tbody {
                @if rows.is_empty() { tr { td colspan="2" { "none" } } }
                @for (k, n) in rows { tr { td { (k) } td { (n) } } }
            }
        }
    }
}

/// A horizontal bar chart in SVG, with the numbers written out (it prints, and reads without it).
fn bars(caption: &str, rows: &[(String, u64)]) -> Markup {
    let max = rows.iter().map(|r| r.1).max().unwrap_or(0).max(1);
    let height = 16 * rows.len().max(1) + 4;
    html! {
        figure {
            figcaption { (caption) }
            @if rows.is_empty() { p { "none" } } @else {
                svg xmlns="http://www.w3.org/2000/svg" width="520" height=(height) role="img" aria-label=(caption) {
                    @for (n, (k, v)) in rows.iter().enumerate() {
                        @let y = 16 * n + 2;
                        @let w = (300 * *v / max).max(1);
                        text x="0" y=(y + 11) font-size="10" { (k) }
                        rect x="150" y=(y) width=(w) height="12" fill="#1e2b3c" {}
                        text x=(155 + w) y=(y + 11) font-size="10" { (v) }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_are_calendar_months() {
        let (from, to) = month_span("2026-11").expect("month");
        assert_eq!(crate::model::stix_time(from), "2026-11-01T00:00:00.000Z");
        assert_eq!(crate::model::stix_time(to), "2026-12-01T00:00:00.000Z");
        let (_, to) = month_span("2026-12").expect("december");
        assert_eq!(crate::model::stix_time(to), "2027-01-01T00:00:00.000Z");
        assert!(month_span("2026-13").is_none() && month_span("november").is_none());
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let v = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
        assert_eq!(quantile(&v, 0.5), Some(5));
        assert_eq!(quantile(&v, 0.9), Some(9));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[7], 0.9), Some(7));
    }
}
