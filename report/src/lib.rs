//! Varde's reports on incidents, shared by the CLI (`varde report`) and the dashboard; no web
//! code here. An [`model::IncidentReport`] is built from an incident (as the reader may see
//! it) and the alerts of its linked groups, and written as:
//!
//! - [`stix::bundle`]: STIX 2.1, with TLP 2.0 marking definitions on every object;
//! - [`misp::event`]: a MISP event, with `tlp:` and `rsit:` tags;
//! - [`table::csv`]: CSV of indicators and alerts, safe against formula injection;
//! - [`html::page`]: a printable page (PDF through headless Chromium, in the CLI);
//! - [`month`]: the month's report (incidents, alert volume, response times) as HTML and CSV.
//!
//! Every format is deterministic for the same input (ids are UUIDv5 of what things are, output
//! is sorted), so exports diff cleanly and are tested against golden files
//! (`report/tests/golden/`, `VARDE_BLESS=1` rewrites them). The taxonomies are
//! [`taxonomy`]. Deadlines follow NIS2 Article 23 ([`model::Deadlines`]).

pub mod html;
pub mod misp;
pub mod model;
pub mod month;
pub mod pdf;
pub mod stix;
pub mod table;
pub mod taxonomy;

pub use model::{Deadlines, IncidentReport, Issuer, Stage};

/// `v` with the keys of every object sorted, whatever map serde_json was built with (the
/// workspace may enable its `preserve_order`), so JSON exports are canonical.
pub fn canonical(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let mut entries: Vec<(String, serde_json::Value)> = m.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, canonical(v)))
                    .collect(),
            )
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(canonical).collect())
        }
        other => other,
    }
}

/// The formats `varde report` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// STIX 2.1 bundle (`.stix.json`).
    Stix,
    /// MISP event (`.misp.json`).
    Misp,
    /// CSV (`.csv`).
    Csv,
    /// Printable HTML (`.html`).
    Html,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 4] = [Format::Stix, Format::Misp, Format::Csv, Format::Html];

    /// The format of a name (`stix`, `misp`, `csv`, `html`).
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "stix" => Some(Format::Stix),
            "misp" => Some(Format::Misp),
            "csv" => Some(Format::Csv),
            "html" => Some(Format::Html),
            _ => None,
        }
    }

    /// The file name ending.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Stix => "stix.json",
            Format::Misp => "misp.json",
            Format::Csv => "csv",
            Format::Html => "html",
        }
    }

    /// The media type (downloads).
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Stix | Format::Misp => "application/json",
            Format::Csv => "text/csv; charset=utf-8",
            Format::Html => "text/html; charset=utf-8",
        }
    }

    /// The report in this format.
    pub fn render(self, r: &IncidentReport) -> String {
        match self {
            Format::Stix => stix::bundle(r),
            Format::Misp => misp::event(r),
            Format::Csv => table::csv(r),
            Format::Html => html::page(r),
        }
    }
}

/// The report of `stage` on incident `incident_id` as `tenant` may see it (`None`: the CERT,
/// everything), with the alerts of its linked groups, made at `generated_us` by `issuer`.
/// `Ok(None)` when the incident does not exist or is not the reader's to see. A municipality
/// gets its own part only (the store's filter: its linked groups, never the CERT's comments or
/// the other municipalities' groups) and nothing of a TLP:RED incident.
pub async fn assemble<S: varde_store::EventStore>(
    store: &S,
    tenant: Option<varde_core::Kommunenummer>,
    incident_id: [u8; 16],
    stage: Stage,
    generated_us: i64,
    issuer: Issuer,
) -> Result<Option<IncidentReport>, varde_store::Error> {
    let changes = store.incident_changes(tenant, Some(incident_id)).await?;
    let Some(incident) = varde_store::incident::Incident::fold(&changes)
        .into_iter()
        .find(|i| i.incident_id == incident_id)
    else {
        return Ok(None);
    };
    if tenant.is_some() && incident.tlp == varde_store::incident::Tlp::Red {
        return Ok(None);
    }
    let mut alerts = Vec::new();
    for g in &incident.groups {
        let Ok(k) = varde_core::Kommunenummer::parse(&g.tenant) else {
            continue;
        };
        if tenant.is_some_and(|t| t != k) {
            continue;
        }
        alerts.extend(store.group_alerts(Some(k), g.dedup_key, ALERTS_MAX).await?);
    }
    Ok(Some(IncidentReport::new(
        stage,
        incident,
        alerts,
        None,
        generated_us,
        issuer,
    )))
}

/// Most alerts of one linked group a report includes.
pub const ALERTS_MAX: u64 = 10_000;
