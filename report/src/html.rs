//! A report as a printable HTML page (A4, styles inline, no script, nothing fetched), which
//! headless Chromium turns into PDF (`varde report … --format pdf`).

use maud::{DOCTYPE, Markup, html};

use crate::model::{IncidentReport, Stage, stix_time};

const STYLE: &str = "
@page { size: A4; margin: 18mm 16mm; }
body { font-family: 'Noto Sans', 'DejaVu Sans', Arial, sans-serif; font-size: 10.5pt; color: #111; }
h1 { font-size: 17pt; margin: 0 0 4pt; }
h2 { font-size: 12.5pt; margin: 14pt 0 4pt; border-bottom: 1px solid #999; }
.tlp { display: inline-block; padding: 2pt 6pt; font-weight: bold; background: #000; }
.tlp-RED { color: #ff2b2b; } .tlp-AMBER, .tlp-AMBER\\+STRICT { color: #ffc000; }
.tlp-GREEN { color: #33ff00; } .tlp-CLEAR { color: #fff; }
table { border-collapse: collapse; width: 100%; margin: 4pt 0; }
th, td { border: 1px solid #bbb; padding: 2pt 4pt; text-align: left; vertical-align: top; }
th { background: #eee; }
dl { display: grid; grid-template-columns: max-content auto; gap: 2pt 10pt; }
dt { font-weight: bold; }
td, dd { overflow-wrap: anywhere; }
.overdue { color: #b00020; font-weight: bold; }
footer { margin-top: 16pt; font-size: 8.5pt; color: #555; }
";

fn time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn deadlines(r: &IncidentReport) -> Markup {
    html! {
        table {
            thead { tr { th { "Report" } th { "Due" } th { "State at generation" } } }
            tbody {
                @for stage in [Stage::EarlyWarning, Stage::Notification, Stage::Final] {
                    @if let Some(due) = r.deadlines.of_stage(stage) {
                        tr {
                            td { (stage.title()) @if stage == r.stage { " (this report)" } }
                            td { (time(due)) }
                            td {
                                @if stage == r.stage { "this report" }
                                @else if due < r.generated_us { span.overdue { "past due" } }
                                @else { "open" }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The page of `r`.
pub fn page(r: &IncidentReport) -> String {
    let label = format!("TLP:{}", r.tlp().as_str());
    let i = &r.incident;
    let id = r.incident_hex();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                title { (r.stage.title()) ": " (i.title) }
                style { (STYLE) }
            }
            body {
                p { span class={ "tlp tlp-" (r.tlp().as_str()) } { (label) } }
                h1 { (r.stage.title()) ": " (i.title) }
                p { (r.issuer.name) " · " (r.issuer.contact) " · generated " (time(r.generated_us)) }
                h2 { "Incident" }
                dl {
                    dt { "Id" } dd { code { (id) } }
                    dt { "Status" } dd { (i.status.as_str()) }
                    dt { "Severity" } dd { (i.severity.as_str()) }
                    dt { "Aware since" } dd { (time(i.aware_at_us)) }
                    dt { "Opened" } dd { (time(i.opened_at_us)) }
                    dt { "Classification (RSIT)" } dd {
                        @match &r.classification {
                            Some(c) => { (c.category_name) " / " (c.kind_name) " (" code { (c.key()) } ")" }
                            None => { "not set" }
                        }
                    }
                    dt { "Root cause (NIS CG)" } dd {
                        @match &r.root_cause { Some((_, n)) => { (n) } None => { "not set" } }
                    }
                    dt { "Affected municipalities" } dd {
                        @if r.municipalities.is_empty() { "none named" }
                        @for (n, (k, name)) in r.municipalities.iter().enumerate() {
                            @if n > 0 { ", " } (k) " " (name)
                        }
                    }
                    dt { "Shared components" } dd {
                        @if r.components.is_empty() { "none named" } @else { (r.components.join(", ")) }
                    }
                    dt { "Users affected" } dd { @match i.users_affected { Some(n) => { (n) } None => { "not known" } } }
                    dt { "Services affected" } dd { (r.components.len()) " shared component(s)" }
                }
                h2 { "Deadlines (NIS2 Article 23)" }
                (deadlines(r))
                h2 { "Indicators of compromise (" (r.indicators.len()) ")" }
                @if r.indicators.is_empty() { p { "None found in the incident's alerts." } } @else {
                    table {
                        thead { tr { th { "Kind" } th { "Value" } th { "First seen" } th { "Last seen" } th { "Alerts" } } }
                        tbody { @for x in &r.indicators {
                            tr { td { (x.kind.as_str()) } td { code { (x.value) } } td { (stix_time(x.first_us)) } td { (stix_time(x.last_us)) } td { (x.count) } }
                        } }
                    }
                }
                h2 { "Alerts (" (r.alerts.len()) ")" }
                @if r.alerts.is_empty() { p { "No linked alerts." } } @else {
                    table {
                        thead { tr { th { "Event time" } th { "Municipality" } th { "Rule" } th { "Level" } th { "Host" } } }
                        tbody { @for a in &r.alerts {
                            tr { td { (time(a.event_time_us)) } td { (a.tenant) } td { (a.rule_title) } td { (a.rule_level) } td { (a.host) } }
                        } }
                    }
                }
                footer {
                    (label) ": share only as the label allows (FIRST TLP 2.0). "
                    "Made by Varde from the incident's append-only record."
                }
            }
        }
    }
    .into_string()
}
