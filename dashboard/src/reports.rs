//! An incident's reports on the dashboard: which NIS2 report is due when (overdue marked, in the
//! list too), the reports the CERT submitted (each a versioned, immutable record with the STIX
//! bundle of that moment), the form that records a new one pre-filled from the previous, and
//! the exports (STIX 2.1, MISP, CSV, printable HTML) as downloads. A municipality account
//! downloads its own part of an incident that concerns it and nothing of a TLP:RED one; every
//! download is a row of the `exports` table, shown in the audit log.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use varde_core::id::parse_hex16;
use varde_report::{Deadlines, Format, Stage};
use varde_store::EventStore;
use varde_store::incident::{Incident, IncidentStatus};
use varde_store::reports::{ExportRecord, ReportLog, SubmittedReport};

use crate::alert::hex;
use crate::i18n::t;
use crate::{Dashboard, Role, format_time, now_us, refusal, same_token, unavailable};

/// The stages whose deadlines are shown and tracked, in order.
const TRACKED: [Stage; 3] = [Stage::EarlyWarning, Stage::Notification, Stage::Final];

/// Longest text of one field of a report.
pub const FIELD_MAX: usize = 10_000;

/// The deadlines of `i`, the final report's running from its first submitted notification.
pub(crate) fn deadlines(i: &Incident, reports: &[SubmittedReport]) -> Deadlines {
    let notified = reports
        .iter()
        .filter(|r| r.incident_id == i.incident_id && r.stage == Stage::Notification.as_str())
        .map(|r| r.at_us)
        .min();
    Deadlines::of(i.aware_at_us, notified)
}

/// The first tracked report of an open incident not submitted yet, with its deadline.
pub(crate) fn next_due(i: &Incident, reports: &[SubmittedReport]) -> Option<(Stage, i64)> {
    if i.status == IncidentStatus::Closed {
        return None;
    }
    let d = deadlines(i, reports);
    TRACKED.into_iter().find_map(|stage| {
        let done = reports
            .iter()
            .any(|r| r.incident_id == i.incident_id && r.stage == stage.as_str());
        (!done).then(|| d.of_stage(stage).map(|due| (stage, due)))?
    })
}

fn stage_label(s: Stage) -> &'static str {
    match s {
        Stage::EarlyWarning => t("Tidlig varsel", "Early warning"),
        Stage::Notification => t("Hendelsesvarsel", "Incident notification"),
        Stage::Intermediate => t("Mellomrapport", "Intermediate report"),
        Stage::Final => t("Sluttrapport", "Final report"),
        Stage::Progress => t("Framdriftsrapport", "Progress report"),
    }
}

/// The cell of the incident list: the next report and its deadline, overdue marked.
pub(crate) fn due_cell(next: Option<(Stage, i64)>, now: i64) -> Markup {
    html! {
        @match next {
            None => { "–" }
            Some((stage, due)) if due < now => {
                strong data-overdue=(stage.as_str()) { (stage_label(stage)) ": " (t("forfalt ", "overdue since ")) (format_time(due)) }
            }
            Some((stage, due)) => { span data-due=(stage.as_str()) { (stage_label(stage)) ": " (format_time(due)) } }
        }
    }
}

fn downloads(id: &str) -> Markup {
    html! {
        ul {
            @for f in Format::ALL {
                li {
                    a.ds-link href=(format!("/incidents/{id}/export?stage=notification&format={}", f.extension().split('.').next().unwrap_or("stix"))) download {
                        (match f {
                            Format::Stix => "STIX 2.1",
                            Format::Misp => "MISP",
                            Format::Csv => "CSV",
                            Format::Html => t("Utskriftsvennlig (HTML)", "Printable (HTML)"),
                        })
                    }
                }
            }
            li { a.ds-link href=(format!("/incidents/{id}/export?stage=notification&format=pdf")) download { "PDF" } }
        }
    }
}

/// The section of the incident page.
pub(crate) fn section(
    i: &Incident,
    reports: &[SubmittedReport],
    csrf: &str,
    cert: bool,
    now: i64,
) -> Markup {
    let id = hex(&i.incident_id);
    let d = deadlines(i, reports);
    let latest = reports.iter().max_by_key(|r| (r.at_us, r.report_id));
    let stages: Vec<(Stage, i64, Option<&SubmittedReport>)> = TRACKED
        .into_iter()
        .map(|stage| {
            let sent = reports
                .iter()
                .filter(|r| r.stage == stage.as_str())
                .max_by_key(|r| (r.version, r.at_us));
            (stage, d.of_stage(stage).unwrap_or(0), sent)
        })
        .collect();
    let next = next_due(i, reports).map(|(s, _)| s);
    html! {
        h2.ds-heading data-size="sm" id="reports" { (t("Rapportering (NIS2)", "Reporting (NIS2)")) }
        p { (t("Last ned hendelsen som ", "Download the incident as ")) }
        (downloads(&id))
        @if cert {
            table.ds-table data-border="" data-deadlines="" {
                caption { (t("Frister fra CERT-et ble kjent med hendelsen", "Deadlines from the CERT's awareness")) }
                thead { tr {
                    th scope="col" { (t("Rapport", "Report")) }
                    th scope="col" { (t("Frist (UTC)", "Due (UTC)")) }
                    th scope="col" { (t("Sendt", "Submitted")) }
                } }
                tbody {
                    @for (stage, due, sent) in &stages {
                        tr data-stage=(stage.as_str()) {
                            td { (stage_label(*stage)) }
                            td { (format_time(*due)) }
                            td {
                                @if let Some(r) = sent {
                                    (t("versjon ", "version ")) (r.version) ", " (format_time(r.at_us)) " (" (r.actor) ")"
                                } @else if *due < now && i.status != IncidentStatus::Closed {
                                    strong data-overdue=(stage.as_str()) { (t("forfalt", "overdue")) }
                                } @else {
                                    (t("ikke ennå", "not yet"))
                                }
                            }
                        }
                    }
                }
            }
            @if !reports.is_empty() {
                table.ds-table data-border="" data-submitted=(reports.len()) {
                    caption { (t("Innsendte rapporter, eldste først (uforanderlige)", "Submitted reports, oldest first (immutable)")) }
                    thead { tr {
                        th scope="col" { (t("Rapport", "Report")) }
                        th scope="col" { (t("Versjon", "Version")) }
                        th scope="col" { (t("Sendt (UTC)", "Submitted (UTC)")) }
                        th scope="col" { (t("Av", "By")) }
                        th scope="col" { "TLP" }
                        th scope="col" { "STIX" }
                    } }
                    tbody {
                        @for r in reports {
                            tr {
                                td { (Stage::parse(&r.stage).map_or_else(|| r.stage.clone(), |s| stage_label(s).to_owned())) }
                                td { (r.version) }
                                td { (format_time(r.at_us)) }
                                td { (r.actor) }
                                td { "TLP:" (r.tlp.as_str()) }
                                td { a.ds-link href=(format!("/incidents/{id}/reports/{}", hex(&r.report_id))) download { (t("last ned", "download")) } }
                            }
                        }
                    }
                }
            }
            form method="post" action=(format!("/incidents/{id}/reports")) {
                input type="hidden" name="csrf" value=(csrf);
                fieldset.ds-fieldset {
                    legend { (t("Registrer en innsendt rapport", "Record a submitted report")) }
                    label.ds-label for="report-stage" { (t("Rapport", "Report")) }
                    select.ds-input id="report-stage" name="stage" {
                        @for s in Stage::ALL {
                            option value=(s.as_str()) selected[next == Some(s)] { (stage_label(s)) }
                        }
                    }
                    label.ds-label for="report-summary" { (t("Hva skjedde, vurdering", "What happened, assessment")) }
                    textarea.ds-input id="report-summary" name="summary" rows="4" maxlength=(FIELD_MAX) {
                        (latest.map_or_else(|| i.title.clone(), |r| r.summary.clone()))
                    }
                    label.ds-label for="report-impact" { (t("Alvorlighet og virkning (brukere, tjenester)", "Severity and impact (users, services)")) }
                    textarea.ds-input id="report-impact" name="impact" rows="3" maxlength=(FIELD_MAX) {
                        (latest.map_or_else(String::new, |r| r.impact.clone()))
                    }
                    label.ds-label for="report-mitigation" { (t("Tiltak, gjort og pågående", "Mitigation, applied and ongoing")) }
                    textarea.ds-input id="report-mitigation" name="mitigation" rows="3" maxlength=(FIELD_MAX) {
                        (latest.map_or_else(String::new, |r| r.mitigation.clone()))
                    }
                    label.ds-label for="report-cross" { (t("Grenseoverskridende eller sektorovergripende virkning", "Cross-border or cross-sector impact")) }
                    textarea.ds-input id="report-cross" name="cross_border" rows="2" maxlength=(FIELD_MAX) {
                        (latest.map_or_else(String::new, |r| r.cross_border.clone()))
                    }
                    button.ds-button type="submit" { (t("Registrer", "Record")) }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct MonthQuery {
    month: Option<String>,
    format: Option<String>,
}

/// `GET /reports/month?month=YYYY-MM&format=html|csv` (analysts and admins): the month's
/// report as a download, recorded in the audit log (incident id all zeros, stage
/// `month YYYY-MM`).
pub(crate) async fn month<St: EventStore + ReportLog + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Query(q): Query<MonthQuery>,
) -> Response {
    let Some((account, _)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    if account.role == Role::Municipality {
        return refusal(
            StatusCode::FORBIDDEN,
            t("Ingen tilgang", "No access"),
            t(
                "Månedsrapporten gjelder alle kommuner og er for CERT-et.",
                "The month's report covers every municipality and is for the CERT.",
            ),
            "/incidents",
            t("Til hendelsene", "To the incidents"),
        );
    }
    let format = q.format.as_deref().unwrap_or("html");
    if !matches!(format, "html" | "csv" | "pdf") {
        return bad_request(t("Ukjent format.", "Unknown format."));
    }
    let month = q.month.unwrap_or_default();
    let store = &d.inner.store;
    let report = match varde_report::month::assemble_month(
        store,
        &month,
        now_us(),
        d.inner.settings.issuer.clone(),
    )
    .await
    {
        Ok(Some(r)) => r,
        Ok(None) => {
            return bad_request(t(
                "Oppgi måneden som ÅÅÅÅ-MM.",
                "Give the month as YYYY-MM.",
            ));
        }
        Err(e) => return unavailable("month report", &e),
    };
    if let Err(r) = audit_export(
        store,
        &account.name,
        "",
        [0; 16],
        &format!("month {month}"),
        format,
    )
    .await
    {
        return r;
    }
    match format {
        "csv" => attachment(
            Format::Csv.media_type(),
            &format!("varde-{month}.csv"),
            report.csv(),
        ),
        "pdf" => pdf_attachment(&format!("varde-{month}.pdf"), report.html()).await,
        _ => attachment(
            Format::Html.media_type(),
            &format!("varde-{month}.html"),
            report.html(),
        ),
    }
}

#[derive(Deserialize)]
pub(crate) struct ExportQuery {
    stage: Option<String>,
    format: Option<String>,
}

fn bad_request(message: &str) -> Response {
    refusal(
        StatusCode::BAD_REQUEST,
        t("Ugyldig forespørsel", "Invalid request"),
        message,
        "/incidents",
        t("Til hendelsene", "To the incidents"),
    )
}

fn not_found() -> Response {
    refusal(
        StatusCode::NOT_FOUND,
        t("Fant ikke hendelsen", "Incident not found"),
        t(
            "Hendelsen finnes ikke, eller du har ikke tilgang til den.",
            "The incident does not exist, or you have no access to it.",
        ),
        "/incidents",
        t("Til hendelsene", "To the incidents"),
    )
}

fn new_id() -> Option<[u8; 16]> {
    crate::random_hex::<16>().and_then(|h| parse_hex16(&h))
}

/// Records one export for the audit log (`tenant` empty for the CERT's whole incident); the
/// export is not served when this fails.
async fn audit_export<St: ReportLog>(
    store: &St,
    actor: &str,
    tenant: &str,
    incident_id: [u8; 16],
    stage: &str,
    format: &str,
) -> Result<(), Response> {
    let export_id = new_id().ok_or_else(|| StatusCode::INTERNAL_SERVER_ERROR.into_response())?;
    let record = ExportRecord {
        export_id,
        at_us: now_us(),
        actor: actor.to_owned(),
        tenant: tenant.to_owned(),
        incident_id,
        stage: stage.to_owned(),
        format: format.to_owned(),
    };
    store
        .write_exports(&[record])
        .await
        .map(|_| ())
        .map_err(|e| unavailable("audit log", &e))
}

/// The page printed to PDF by headless Chromium on the dashboard's host (off the async
/// threads); 503 with the reason when it cannot print.
async fn pdf_attachment(name: &str, html: String) -> Response {
    match tokio::task::spawn_blocking(move || varde_report::pdf::bytes(&html)).await {
        Ok(Ok(pdf)) => (
            [
                (header::CONTENT_TYPE, "application/pdf".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"{name}\""),
                ),
            ],
            pdf,
        )
            .into_response(),
        Ok(Err(why)) => refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            t("Ingen PDF", "No PDF"),
            &why,
            "/incidents",
            t("Til hendelsene", "To the incidents"),
        ),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn attachment(media_type: &str, name: &str, body: String) -> Response {
    (
        [
            (header::CONTENT_TYPE, media_type.to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
        ],
        body,
    )
        .into_response()
}

/// `GET /incidents/{id}/export?stage=…&format=stix|misp|csv|html`: the incident's report as the
/// account may see it, recorded in the audit log.
pub(crate) async fn export<St: EventStore + ReportLog + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ExportQuery>,
) -> Response {
    let Some((account, _)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let scope = match account.role {
        Role::Municipality => match account.tenant {
            Some(k) => Some(k),
            None => return StatusCode::FORBIDDEN.into_response(),
        },
        Role::Admin | Role::Analyst => None,
    };
    let Some(stage) = Stage::parse(q.stage.as_deref().unwrap_or("notification")) else {
        return bad_request(t("Ukjent rapporttype.", "Unknown report stage."));
    };
    let wanted = q.format.as_deref().unwrap_or("stix");
    let to_pdf = wanted == "pdf";
    let Some(format) = (if to_pdf {
        Some(Format::Html)
    } else {
        Format::parse(wanted)
    }) else {
        return bad_request(t("Ukjent format.", "Unknown format."));
    };
    let Some(incident_id) = parse_hex16(&id) else {
        return not_found();
    };
    let store = &d.inner.store;
    let report = match varde_report::assemble(
        store,
        scope,
        incident_id,
        stage,
        now_us(),
        d.inner.settings.issuer.clone(),
    )
    .await
    {
        Ok(Some(r)) => r,
        // Not there, not the account's, or TLP:RED for a municipality.
        Ok(None) => return not_found(),
        Err(e) => return unavailable("incident", &e),
    };
    // No export without its audit record.
    if let Err(r) = audit_export(
        store,
        &account.name,
        scope.as_ref().map_or("", |k| k.as_str()),
        incident_id,
        stage.as_str(),
        if to_pdf { "pdf" } else { format.extension() },
    )
    .await
    {
        return r;
    }
    tracing::info!(name = %account.name, incident = %id, stage = stage.as_str(), format = format.extension(), "incident exported");
    if to_pdf {
        return pdf_attachment(
            &format!("{}.{}.pdf", hex(&incident_id), stage.as_str()),
            format.render(&report),
        )
        .await;
    }
    attachment(
        format.media_type(),
        &format!(
            "{}.{}.{}",
            hex(&incident_id),
            stage.as_str(),
            format.extension()
        ),
        format.render(&report),
    )
}

/// `POST /incidents/{id}/reports` (analysts and admins; `csrf`, `stage`, `summary`, `impact`,
/// `mitigation`, `cross_border`): records a submitted report, with the STIX bundle of the
/// incident now, as the next version of its stage.
pub(crate) async fn record<St: EventStore + ReportLog + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let mut form = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        form.insert(k.into_owned(), v.into_owned());
    }
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    if !same_token(&field("csrf"), &csrf) {
        tracing::warn!(name = %account.name, "report refused: missing or wrong CSRF token");
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    if account.role == Role::Municipality {
        return refusal(
            StatusCode::FORBIDDEN,
            t("Ingen tilgang", "No access"),
            t(
                "Bare CERT-et registrerer rapporter.",
                "Only the CERT records reports.",
            ),
            "/incidents",
            t("Til hendelsene", "To the incidents"),
        );
    }
    let Some(stage) = Stage::parse(&field("stage")) else {
        return bad_request(t("Ukjent rapporttype.", "Unknown report stage."));
    };
    let texts = [
        field("summary"),
        field("impact"),
        field("mitigation"),
        field("cross_border"),
    ];
    if texts[0].is_empty() || texts.iter().any(|x| x.chars().count() > FIELD_MAX) {
        return bad_request(t(
            "En rapport trenger en vurdering, og hvert felt høyst 10 000 tegn.",
            "A report needs an assessment, and each field at most 10,000 characters.",
        ));
    }
    let Some(incident_id) = parse_hex16(&id) else {
        return not_found();
    };
    let store = &d.inner.store;
    let now = now_us();
    let report = match varde_report::assemble(
        store,
        None,
        incident_id,
        stage,
        now,
        d.inner.settings.issuer.clone(),
    )
    .await
    {
        Ok(Some(r)) => r,
        Ok(None) => return not_found(),
        Err(e) => return unavailable("incident", &e),
    };
    let previous = match store.reports(Some(incident_id)).await {
        Ok(r) => r,
        Err(e) => return unavailable("reports", &e),
    };
    let version = previous
        .iter()
        .filter(|r| r.stage == stage.as_str())
        .map(|r| r.version)
        .max()
        .unwrap_or(0)
        + 1;
    let Some(report_id) = new_id() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let [summary, impact, mitigation, cross_border] = texts;
    let submitted = SubmittedReport {
        report_id,
        incident_id,
        stage: stage.as_str().to_owned(),
        version,
        at_us: now,
        actor: account.name.clone(),
        tlp: report.tlp(),
        summary,
        impact,
        mitigation,
        cross_border,
        stix: Format::Stix.render(&report),
    };
    if let Err(e) = store.write_reports(&[submitted]).await {
        return unavailable("reports", &e);
    }
    tracing::info!(name = %account.name, incident = %id, stage = stage.as_str(), version, "report recorded");
    Redirect::to(&format!("/incidents/{}#reports", hex(&incident_id))).into_response()
}

/// `GET /incidents/{id}/reports/{report}` (analysts and admins): a submitted report's STIX
/// bundle as it was recorded.
pub(crate) async fn submitted<St: EventStore + ReportLog + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Path((id, report)): Path<(String, String)>,
) -> Response {
    let Some((account, _)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    if account.role == Role::Municipality {
        return not_found();
    }
    let (Some(incident_id), Some(report_id)) = (parse_hex16(&id), parse_hex16(&report)) else {
        return not_found();
    };
    let store = &d.inner.store;
    let Some(r) = (match store.reports(Some(incident_id)).await {
        Ok(r) => r.into_iter().find(|r| r.report_id == report_id),
        Err(e) => return unavailable("reports", &e),
    }) else {
        return not_found();
    };
    if let Err(r) = audit_export(store, &account.name, "", incident_id, &r.stage, "submitted").await
    {
        return r;
    }
    attachment(
        Format::Stix.media_type(),
        &format!("{}.{}.v{}.stix.json", hex(&incident_id), r.stage, r.version),
        r.stix,
    )
}
