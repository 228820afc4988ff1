//! One municipality's page: its alerts of the last week, the incidents that concern it, and its
//! collectors as their events and their own newest reports (spool depth, drops) show them. A municipality account reaches its own page only; every
//! read carries the page's municipality as the store query's tenant.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use varde_core::Kommunenummer;
use varde_store::incident::{Incident, IncidentStatus};
use varde_store::{AlertQuery, EventStore, VolumeBy};

use crate::i18n::t;
use crate::incident::incidents_table;
use crate::{Dashboard, Role, app_page, format_time, now_us, refusal, unavailable};

/// A collector that has sent nothing for this long is shown as silent.
pub const SILENT_AFTER_S: i64 = 15 * 60;

/// Alerts per municipality (linked to its page), most first, with `caption`; `attr` names the
/// table for tests and scripts.
pub(crate) fn spread_table(spread: &[(String, u64)], caption: &str, attr: &str) -> Markup {
    html! {
        table.ds-table data-border="" data-spread=(attr) data-rows=(spread.len()) {
            caption { (caption) }
            thead { tr {
                th scope="col" { (t("Kommune", "Municipality")) }
                th scope="col" { (t("Varsler", "Alerts")) }
            } }
            tbody {
                @for (k, n) in spread {
                    tr {
                        th scope="row" {
                            a.ds-link href=(municipality_url(k)) {
                                (k) " " (Kommunenummer::parse(k).map_or("", |m| m.name()))
                            }
                        }
                        td { (n) }
                    }
                }
            }
        }
    }
}

/// The path of a municipality's page.
pub(crate) fn municipality_url(k: &str) -> String {
    format!("/municipalities/{k}")
}

fn not_found() -> Response {
    refusal(
        StatusCode::NOT_FOUND,
        t("Fant ikke kommunen", "Municipality not found"),
        t(
            "Kommunen finnes ikke, eller du har ikke tilgang til den.",
            "The municipality does not exist, or you have no access to it.",
        ),
        "/alerts",
        t("Tilbake til varslene", "Back to the alerts"),
    )
}

/// `GET /municipalities/{kommunenummer}`.
pub(crate) async fn show<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Path(number): Path<String>,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let Ok(k) = Kommunenummer::parse(&number) else {
        return not_found();
    };
    if account.role == Role::Municipality && account.tenant != Some(k) {
        return not_found();
    }
    let store = &d.inner.store;
    let now = now_us();
    let week_ago = now - 7 * 86_400_000_000;
    let volume = match store
        .alert_volume(
            Some(k),
            VolumeBy::Component,
            week_ago,
            now + 1_000_000,
            86_400,
        )
        .await
    {
        Ok(v) => v,
        Err(e) => return unavailable("municipality: volume", &e),
    };
    let alerts_week: u64 = volume.iter().map(|p| p.alerts).sum();
    let recent = match store
        .recent_alerts(&AlertQuery {
            tenant: Some(k),
            limit: 1,
        })
        .await
    {
        Ok(r) => r,
        Err(e) => return unavailable("municipality: recent alerts", &e),
    };
    let incidents = match store.incident_changes(Some(k), None).await {
        Ok(rows) => Incident::fold(&rows),
        Err(e) => return unavailable("municipality: incidents", &e),
    };
    let collectors = match store.collectors(Some(k), now).await {
        Ok(c) => c,
        Err(e) => return unavailable("municipality: collectors", &e),
    };
    let open: Vec<&Incident> = incidents
        .iter()
        .filter(|i| i.status != IncidentStatus::Closed)
        .collect();
    let title = format!("{k} {}", k.name());
    app_page(
        &title,
        &account,
        &csrf,
        html! {
            h1.ds-heading data-size="lg" { (title) }
            dl {
                dt { (t("Varsler siste 7 døgn", "Alerts, last 7 days")) } dd data-alerts-week=(alerts_week) { (alerts_week) }
                dt { (t("Siste varsel (UTC)", "Latest alert (UTC)")) }
                dd { @match recent.first() { Some(a) => (format_time(a.event_time_us)), None => "–" } }
                dt { (t("Åpne hendelser", "Open incidents")) } dd { (open.len()) }
            }
            p { a.ds-link href={ "/alerts?tenant=" (k) } { (t("Kommunens varsler", "The municipality's alerts")) } }
            h2.ds-heading data-size="sm" { (t("Innsamlere", "Collectors")) }
            @if collectors.is_empty() {
                p { (t("Ingen innsamler har levert hendelser den siste uken.", "No collector has delivered events in the last week.")) }
            } @else {
                table.ds-table data-border="" data-collectors=(collectors.len()) {
                    caption { (t("Innsamlere som har levert hendelser den siste uken", "Collectors that delivered events in the last week")) }
                    thead { tr {
                        th scope="col" { (t("Innsamler", "Collector")) }
                        th scope="col" { (t("Sist mottatt (UTC)", "Last received (UTC)")) }
                        th scope="col" { (t("Hendelser siste time", "Events, last hour")) }
                        th scope="col" { (t("Per sekund", "Per second")) }
                        th scope="col" { (t("Kilder", "Sources")) }
                        th scope="col" { (t("I spoolen", "In the spool")) }
                        th scope="col" { (t("Tapt", "Lost")) }
                        th scope="col" { (t("Rapport (UTC)", "Report (UTC)")) }
                        th scope="col" { (t("Tilstand", "State")) }
                    } }
                    tbody {
                        @for c in &collectors {
                            @let silent = now - c.last_receive_us > SILENT_AFTER_S * 1_000_000;
                            tr data-collector=(c.collector_id) data-silent=(silent) {
                                td { code { (c.collector_id) } }
                                td { (format_time(c.last_receive_us)) }
                                td { (c.events_last_hour) }
                                td { (format!("{:.2}", c.events_last_hour as f64 / 3600.0)) }
                                td { (c.kinds.join(", ")) }
                                @match &c.status {
                                    Some(r) => {
                                        td data-spool-events=(r.spool_events) {
                                            (r.spool_events) (t(" hendelser, ", " events, "))
                                            (format!("{:.1}", r.spool_bytes as f64 / 1_048_576.0)) " MiB"
                                            @if r.spool_max_bytes > 0 {
                                                (format!(" ({:.0} %)", r.spool_bytes as f64 * 100.0 / r.spool_max_bytes as f64))
                                            }
                                            @if r.oldest_unsent_s > 0 {
                                                br; (t("eldste venter ", "oldest waiting ")) (r.oldest_unsent_s) " s"
                                            }
                                        }
                                        td data-lost=(r.lost()) title=(t(
                                            "Siden innsamleren startet: forkastet fordi spoolen var full, datagrammer og fangede pakker kjernen forkastet, hendelser som ikke passet i en batch",
                                            "Since the collector started: dropped by a full spool, datagrams and captured packets the kernel dropped, events that did not fit a batch"
                                        )) {
                                            @if r.lost() == 0 { "0" } @else { strong { (r.lost()) } }
                                        }
                                        td { (format_time(r.at_us)) }
                                    }
                                    None => { td { "–" } td { "–" } td { (t("ingen", "none")) } }
                                }
                                td {
                                    @if silent { strong { (t("Stille", "Silent")) } } @else { (t("Leverer", "Delivering")) }
                                }
                            }
                        }
                    }
                }
            }
            p { (t(
                "Hver innsamler rapporterer spoolens dybde og hva den har mistet en gang i minuttet (standard); en rapport gjort mens Kafka var borte, kommer når forbindelsen er tilbake.",
                "Each collector reports its spool depth and what it lost once a minute (by default); a report made while Kafka was away arrives when it is back."
            )) }
            h2.ds-heading data-size="sm" { (t("Hendelser som gjelder kommunen", "Incidents that concern the municipality")) }
            (incidents_table(&incidents.iter().collect::<Vec<_>>()))
        },
    )
    .into_response()
}
