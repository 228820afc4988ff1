//! Incidents: the list, the incident page, opening one from alert groups, and every change.
//!
//! Every change is a new row ([`varde_store::incident`]); the page shows the incident folded
//! from its rows and the rows themselves as the timeline. A municipality account reads through
//! the store's tenant filter (only incidents that concern it, only their shared rows and its own
//! linked groups) and changes nothing.

use crate::i18n::t;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use varde_core::Kommunenummer;
use varde_core::component::ComponentRegistry;
use varde_core::id::parse_hex16;
use varde_store::EventStore;
use varde_store::incident::{Change, Incident, IncidentChange, IncidentStatus, Severity, Tlp};

use crate::alert::hex;
use crate::{
    Account, Dashboard, Role, app_page, format_time, now_us, random_hex, refusal, same_token,
    unavailable,
};

/// Longest title, in characters.
pub const TITLE_MAX: usize = 200;
/// Longest comment, in characters.
pub const COMMENT_MAX: usize = 5000;

/// Norwegian names of the statuses.
pub fn status_label(s: IncidentStatus) -> &'static str {
    match s {
        IncidentStatus::New => t("Ny", "New"),
        IncidentStatus::Triage => t("Vurdering", "Triage"),
        IncidentStatus::Containment => t("Begrensning", "Containment"),
        IncidentStatus::Eradication => t("Fjerning", "Eradication"),
        IncidentStatus::Recovery => t("Gjenoppretting", "Recovery"),
        IncidentStatus::PostIncident => t("Etterarbeid", "Post-incident"),
        IncidentStatus::Closed => t("Lukket", "Closed"),
    }
}

/// Norwegian names of the severities.
pub fn severity_label(s: Severity) -> &'static str {
    match s {
        Severity::Low => t("Lav", "Low"),
        Severity::Medium => t("Middels", "Medium"),
        Severity::High => t("Høy", "High"),
        Severity::Critical => t("Kritisk", "Critical"),
    }
}

fn tlp_label(t: Tlp) -> String {
    format!("TLP:{}", t.as_str())
}

/// The severity a new incident starts with: the highest rule level among its groups
/// (Sigma's `critical`, `high`, `medium`; `low` and `informational` are low), medium without
/// groups.
fn severity_of_levels<'a>(levels: impl Iterator<Item = &'a str>) -> Severity {
    levels
        .map(|l| match l {
            "critical" => Severity::Critical,
            "high" => Severity::High,
            "medium" => Severity::Medium,
            _ => Severity::Low,
        })
        .max()
        .unwrap_or(Severity::Medium)
}

fn describe(c: &Change) -> Markup {
    html! {
        @match c {
            Change::Opened(title) => { (t("Opprettet: «", "Opened: «")) (title) "»" }
            Change::Title(title) => { (t("Ny tittel: «", "New title: «")) (title) "»" }
            Change::Status(s) => { (t("Status: ", "Status: ")) (status_label(*s)) }
            Change::Severity(s) => { (t("Alvorlighet: ", "Severity: ")) (severity_label(*s)) }
            Change::Tlp(label) => { (t("Deling: ", "Sharing: ")) (tlp_label(*label)) }
            Change::AwareAt(us) => { (t("Kjent for CERT fra: ", "Known to the CERT since: ")) (format_time(*us)) " UTC" }
            Change::LinkGroup { tenant, rule_title, .. } => { (t("Varselgruppe koblet: ", "Alert group linked: ")) (rule_title) " (" (tenant) ")" }
            Change::Municipalities(m) => { (t("Andre berørte kommuner: ", "Further affected municipalities: ")) @if m.is_empty() { (t("ingen", "none")) } @else { (m.join(", ")) } }
            Change::Components(m) => { (t("Andre berørte komponenter: ", "Further affected components: ")) @if m.is_empty() { (t("ingen", "none")) } @else { (m.join(", ")) } }
            Change::Comment(_) => { (t("Kommentar", "Comment")) }
            Change::Category(k) => { (t("Klassifisering (RSIT): ", "Classification (RSIT): ")) (varde_report::taxonomy::classify(k).map_or_else(|| k.clone(), |c| format!("{} – {}", c.category_name, c.kind_name))) }
            Change::RootCause(k) => { (t("Grunnårsak: ", "Root cause: ")) (varde_report::taxonomy::root_cause(k).unwrap_or_else(|| k.clone())) }
            Change::UsersAffected(n) => { (t("Berørte brukere: ", "Users affected: ")) @match n { Some(n) => { (n) } None => { (t("ukjent", "unknown")) } } }
        }
    }
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

fn bad_request(message: &str) -> Response {
    refusal(
        StatusCode::BAD_REQUEST,
        t("Ugyldig endring", "Invalid change"),
        message,
        "/incidents",
        t("Til hendelsene", "To the incidents"),
    )
}

/// The tenant filter of an account's reads: its own municipality, or none for the CERT.
// The error is the early answer to the request, made at most once per request.
#[allow(clippy::result_large_err)]
fn reader_scope(account: &Account) -> Result<Option<Kommunenummer>, Response> {
    match account.role {
        Role::Municipality => account
            .tenant
            .map(Some)
            .ok_or_else(|| StatusCode::FORBIDDEN.into_response()),
        Role::Admin | Role::Analyst => Ok(None),
    }
}

/// The incidents the account may see, folded, most recently changed first.
async fn visible<St: EventStore>(
    d: &Dashboard<St>,
    scope: Option<Kommunenummer>,
    id: Option<[u8; 16]>,
) -> Result<(Vec<Incident>, Vec<IncidentChange>), Response> {
    let rows = d
        .inner
        .store
        .incident_changes(scope, id)
        .await
        .map_err(|e| unavailable("incidents", &e))?;
    Ok((Incident::fold(&rows), rows))
}

/// The incident of the id in a path, folded, with its rows (as `scope` may see them); the
/// same 404 for a malformed id, an unknown one and one the account may not see.
async fn one<St: EventStore>(
    d: &Dashboard<St>,
    scope: Option<Kommunenummer>,
    id: &str,
) -> Result<(Incident, Vec<IncidentChange>), Response> {
    let id = parse_hex16(id).ok_or_else(not_found)?;
    let (incidents, rows) = visible(d, scope, Some(id)).await?;
    let incident = incidents.into_iter().next().ok_or_else(not_found)?;
    Ok((incident, rows))
}

/// The open incidents (not closed), for the queue's "add to incident" choice.
pub(crate) async fn open_incidents<St: EventStore>(
    d: &Dashboard<St>,
) -> Result<Vec<Incident>, Response> {
    let (all, _) = visible(d, None, None).await?;
    Ok(all
        .into_iter()
        .filter(|i| i.status != IncidentStatus::Closed)
        .collect())
}

/// Controls to open an incident from the chosen groups or add them to an open one; inside a
/// form whose `key` fields are the groups.
pub(crate) fn incident_controls(open: &[Incident]) -> Markup {
    html! {
        fieldset.ds-fieldset {
            legend { (t("Hendelse", "Incident")) }
            label.ds-label for="incident-title" { (t("Tittel på ny hendelse", "Title of a new incident")) }
            input.ds-input id="incident-title" name="title" maxlength=(TITLE_MAX);
            button.ds-button type="submit" formaction="/incidents" name="op" value="create" {
                (t("Opprett hendelse med valgte grupper", "Open an incident with the chosen groups"))
            }
            @if !open.is_empty() {
                label.ds-label for="incident-pick" { (t("Åpen hendelse", "Open incident")) }
                select.ds-input id="incident-pick" name="incident" {
                    @for i in open { option value=(hex(&i.incident_id)) { (i.title) } }
                }
                button.ds-button type="submit" formaction="/incidents" name="op" value="link" {
                    (t("Legg valgte grupper til hendelsen", "Add the chosen groups to the incident"))
                }
            }
        }
    }
}

/// A short table of incidents (title linked, status, severity, TLP), or "none".
pub(crate) fn incidents_table(incidents: &[&Incident]) -> Markup {
    html! {
        @if incidents.is_empty() {
            p { (t("Ingen.", "None.")) }
        } @else {
            table.ds-table data-border="" data-incidents=(incidents.len()) {
                caption { (t("Sist endret først", "Most recently changed first")) }
                thead { tr {
                    th scope="col" { (t("Tittel", "Title")) }
                    th scope="col" { (t("Status", "Status")) }
                    th scope="col" { (t("Alvorlighet", "Severity")) }
                    th scope="col" { (t("Deling", "Sharing")) }
                } }
                tbody {
                    @for i in incidents {
                        tr {
                            td { a.ds-link href={ "/incidents/" (hex(&i.incident_id)) } { (i.title) } }
                            td { (status_label(i.status)) }
                            td { (severity_label(i.severity)) }
                            td { (tlp_label(i.tlp)) }
                        }
                    }
                }
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    status: Option<String>,
}

/// `GET /incidents?status=open|closed|all`: the incidents the account may see.
pub(crate) async fn list<
    St: EventStore + varde_store::reports::ReportLog + Send + Sync + 'static,
>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Query(q): Query<ListQuery>,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let scope = match reader_scope(&account) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let filter = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("open");
    if !["open", "closed", "all"].contains(&filter) {
        return (StatusCode::BAD_REQUEST, "status: open, closed or all\n").into_response();
    }
    let (incidents, _) = match visible(&d, scope, None).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let total = incidents.len();
    let shown: Vec<&Incident> = incidents
        .iter()
        .filter(|i| match filter {
            "open" => i.status != IncidentStatus::Closed,
            "closed" => i.status == IncidentStatus::Closed,
            _ => true,
        })
        .collect();
    let may_change = account.role != Role::Municipality;
    // The CERT sees which report is due next; a municipality has no reports to make.
    let submitted = if may_change {
        match d.inner.store.reports(None).await {
            Ok(r) => r,
            Err(e) => return unavailable("reports", &e),
        }
    } else {
        Vec::new()
    };
    let now = now_us();
    app_page(
        t("Hendelser", "Incidents"),
        &account,
        &csrf,
        html! {
            h1.ds-heading data-size="lg" { (t("Hendelser", "Incidents")) }
            @if may_change {
                form method="get" action="/reports/month" {
                    label.ds-label for="month-report" { (t("Månedsrapport (ÅÅÅÅ-MM)", "Month report (YYYY-MM)")) }
                    input.ds-input id="month-report" name="month" required pattern="[0-9]{4}-[0-9]{2}"
                        value=(chrono::DateTime::from_timestamp_micros(now).map_or_else(String::new, |t| t.format("%Y-%m").to_string()));
                    label.ds-label for="month-format" { (t("Format", "Format")) }
                    select.ds-input id="month-format" name="format" {
                        option value="html" { (t("Utskriftsvennlig (HTML)", "Printable (HTML)")) }
                        option value="csv" { "CSV" }
                        option value="pdf" { "PDF" }
                    }
                    button.ds-button data-variant="secondary" type="submit" { (t("Last ned", "Download")) }
                }
            }
            form method="get" action="/incidents" {
                label.ds-label for="incident-filter" { (t("Vis", "Show")) }
                select.ds-input id="incident-filter" name="status" {
                    @for (value, label) in [("open", t("Åpne", "Open")), ("closed", t("Lukkede", "Closed")), ("all", t("Alle", "All"))] {
                        option value=(value) selected[value == filter] { (label) }
                    }
                }
                button.ds-button type="submit" { (t("Vis", "Show")) }
            }
            table.ds-table data-border="" data-zebra="" {
                caption { (shown.len()) (t(" av ", " of ")) (total) (t(" hendelser, sist endret først", " incidents, most recently changed first")) }
                thead { tr {
                    th scope="col" { (t("Tittel", "Title")) }
                    th scope="col" { (t("Status", "Status")) }
                    th scope="col" { (t("Alvorlighet", "Severity")) }
                    th scope="col" { (t("Deling", "Sharing")) }
                    th scope="col" { (t("Kommuner", "Municipalities")) }
                    th scope="col" { (t("Komponenter", "Components")) }
                    th scope="col" { (t("Kjent fra (UTC)", "Known since (UTC)")) }
                    th scope="col" { (t("Sist endret (UTC)", "Last changed (UTC)")) }
                    @if may_change { th scope="col" { (t("Neste rapport (UTC)", "Next report (UTC)")) } }
                } }
                tbody {
                    @for i in &shown {
                        tr data-incident-id=(hex(&i.incident_id)) data-status=(i.status.as_str()) {
                            td { a.ds-link href={ "/incidents/" (hex(&i.incident_id)) } { (i.title) } }
                            td { (status_label(i.status)) }
                            td { (severity_label(i.severity)) }
                            td { (tlp_label(i.tlp)) }
                            td { (i.municipalities().join(", ")) }
                            td { (i.components().join(", ")) }
                            td { (format_time(i.aware_at_us)) }
                            td { (format_time(i.changed_at_us)) }
                            @if may_change { td { (crate::reports::due_cell(crate::reports::next_due(i, &submitted), now)) } }
                        }
                    }
                }
            }
            @if may_change {
                h2.ds-heading data-size="sm" { (t("Ny hendelse", "New incident")) }
                form method="post" action="/incidents" {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="op" value="create";
                    label.ds-label for="new-title" { (t("Tittel", "Title")) }
                    input.ds-input id="new-title" name="title" required maxlength=(TITLE_MAX);
                    button.ds-button type="submit" { (t("Opprett", "Open")) }
                }
            }
        },
    )
    .into_response()
}

/// A form as sent, repeated fields kept.
#[derive(Debug, Default)]
struct IncidentForm {
    csrf: String,
    op: String,
    title: String,
    incident: String,
    keys: Vec<String>,
    value: String,
    components: Vec<String>,
}

fn parse_form(body: &[u8]) -> IncidentForm {
    let mut f = IncidentForm::default();
    for (k, v) in form_urlencoded::parse(body) {
        let v = v.into_owned();
        match &*k {
            "csrf" => f.csrf = v,
            "op" => f.op = v,
            "title" => f.title = v,
            "incident" => f.incident = v,
            "key" => f.keys.push(v),
            "value" => f.value = v,
            "component" => f.components.push(v),
            _ => {}
        }
    }
    f
}

/// The account and its checks for a change: logged in, the right token, not a municipality.
// As for `reader_scope`.
#[allow(clippy::result_large_err)]
fn changer<St: EventStore + Send + Sync + 'static>(
    d: &Dashboard<St>,
    headers: &HeaderMap,
    form: &IncidentForm,
) -> Result<Account, Response> {
    let Some((account, csrf)) = d.session(headers) else {
        return Err(Redirect::to("/login").into_response());
    };
    if !same_token(&form.csrf, &csrf) {
        tracing::warn!(name = %account.name, "incident change refused: missing or wrong CSRF token");
        return Err((StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response());
    }
    if account.role == Role::Municipality {
        tracing::warn!(name = %account.name, "incident change refused: municipality account");
        return Err((StatusCode::FORBIDDEN, "only the CERT changes incidents\n").into_response());
    }
    Ok(account)
}

fn change_row(
    incident_id: [u8; 16],
    actor: &str,
    at_us: i64,
    change: Change,
) -> Option<IncidentChange> {
    let change_id = random_hex::<16>().and_then(|h| parse_hex16(&h))?;
    Some(IncidentChange {
        change_id,
        incident_id,
        at_us,
        actor: actor.to_owned(),
        change,
    })
}

/// The links of the groups `keys` (every one must exist), leaving out those already in
/// `incident`.
async fn links<St: EventStore>(
    d: &Dashboard<St>,
    keys: &[String],
    incident: Option<&Incident>,
) -> Result<(Vec<Change>, Vec<String>), Response> {
    if keys.len() as u64 > d.inner.settings.page_size {
        return Err(bad_request("For mange grupper i én endring."));
    }
    let mut parsed: Vec<[u8; 16]> = Vec::new();
    for k in keys {
        match parse_hex16(k) {
            Some(key) if !parsed.contains(&key) => parsed.push(key),
            Some(_) => {}
            None => return Err(bad_request("Ugyldig gruppe.")),
        }
    }
    let groups = d
        .inner
        .store
        .groups(None, &parsed)
        .await
        .map_err(|e| unavailable("groups", &e))?;
    if parsed
        .iter()
        .any(|k| !groups.iter().any(|g| g.dedup_key == *k))
    {
        return Err(bad_request("En av gruppene finnes ikke."));
    }
    let levels: Vec<String> = groups.iter().map(|g| g.rule_level.clone()).collect();
    let changes = groups
        .into_iter()
        .filter(|g| {
            incident.is_none_or(|i| {
                !i.groups
                    .iter()
                    .any(|l| l.dedup_key == g.dedup_key && l.tenant == g.tenant)
            })
        })
        .map(|g| Change::LinkGroup {
            dedup_key: g.dedup_key,
            tenant: g.tenant,
            component: g.component,
            rule_title: g.rule_title,
        })
        .collect();
    Ok((changes, levels))
}

/// `POST /incidents` (`op=create` with `title`, or `op=link` with `incident`; `key` per group):
/// opens an incident from groups of alerts, or adds groups to an open one.
pub(crate) async fn create<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let account = match changer(&d, &headers, &form) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let now = now_us();
    let (incident_id, rows) = match form.op.as_str() {
        "create" => {
            let title = form.title.trim();
            if title.is_empty() || title.chars().count() > TITLE_MAX {
                return bad_request("En hendelse trenger en tittel (høyst 200 tegn).");
            }
            let (linked, levels) = match links(&d, &form.keys, None).await {
                Ok(l) => l,
                Err(r) => return r,
            };
            let Some(id) = random_hex::<16>().and_then(|h| parse_hex16(&h)) else {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            };
            let severity = severity_of_levels(levels.iter().map(String::as_str));
            let mut changes = vec![
                Change::Opened(title.to_owned()),
                Change::Severity(severity),
                Change::Tlp(Tlp::Amber),
            ];
            changes.extend(linked);
            (id, changes)
        }
        "link" => {
            let Some(id) = parse_hex16(&form.incident) else {
                return bad_request("Velg en hendelse.");
            };
            if form.keys.is_empty() {
                return bad_request("Velg minst én gruppe.");
            }
            let (incidents, _) = match visible(&d, None, Some(id)).await {
                Ok(v) => v,
                Err(r) => return r,
            };
            let Some(incident) = incidents.first() else {
                return bad_request("Hendelsen finnes ikke.");
            };
            let (linked, _) = match links(&d, &form.keys, Some(incident)).await {
                Ok(l) => l,
                Err(r) => return r,
            };
            (id, linked)
        }
        _ => return bad_request("Ukjent handling."),
    };
    // One change after another, a microsecond apart, so the history keeps their order.
    let mut out = Vec::with_capacity(rows.len());
    for (n, change) in rows.into_iter().enumerate() {
        let Some(row) = change_row(incident_id, &account.name, now + n as i64, change) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        out.push(row);
    }
    if let Err(e) = d.inner.store.write_incident_changes(&out).await {
        return unavailable("write incident", &e);
    }
    crate::metrics::Counters::add(&d.inner.counters.incident_changes, out.len() as u64);
    for c in &out {
        tracing::info!(actor = %c.actor, incident = %hex(&c.incident_id), change = c.change.field(), "incident");
    }
    Redirect::to(&format!("/incidents/{}", hex(&incident_id))).into_response()
}

/// `GET /incidents/{id}`: the incident, its groups, comments (the CERT's), timeline, and the
/// CERT's controls.
pub(crate) async fn show<
    St: EventStore + varde_store::reports::ReportLog + Send + Sync + 'static,
>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let scope = match reader_scope(&account) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let (i, rows) = match one(&d, scope, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let i = &i;
    let cert = account.role != Role::Municipality;
    let action = format!("/incidents/{}", hex(&i.incident_id));
    let submitted = if cert {
        match d.inner.store.reports(Some(i.incident_id)).await {
            Ok(r) => r,
            Err(e) => return unavailable("reports", &e),
        }
    } else {
        Vec::new()
    };
    let registry = ComponentRegistry::builtin();
    app_page(
        &i.title,
        &account,
        &csrf,
        html! {
            p { a.ds-link href="/incidents" { (t("← Hendelsene", "← Incidents")) } }
            h1.ds-heading data-size="lg" { (i.title) }
            dl {
                dt { (t("Status", "Status")) } dd data-status=(i.status.as_str()) { (status_label(i.status)) }
                dt { (t("Alvorlighet", "Severity")) } dd { (severity_label(i.severity)) }
                dt { (t("Deling", "Sharing")) } dd data-tlp=(i.tlp.as_str()) { (tlp_label(i.tlp)) }
                dt { (t("Kjent for CERT fra (UTC)", "Known to the CERT since (UTC)")) } dd { (format_time(i.aware_at_us)) }
                dt { (t("Opprettet (UTC)", "Opened (UTC)")) } dd { (format_time(i.opened_at_us)) @if cert { (t(" av ", " by ")) (i.opened_by) } }
                dt { (t("Berørte kommuner", "Affected municipalities")) } dd { @if i.municipalities().is_empty() { "–" } @else { (i.municipalities().join(", ")) } }
                dt { (t("Berørte komponenter", "Affected components")) } dd { @if i.components().is_empty() { "–" } @else { (i.components().join(", ")) } }
                dt { (t("Berørte brukere", "Users affected")) } dd data-users=(i.users_affected.map(|n| n.to_string()).unwrap_or_default()) { @match i.users_affected { Some(n) => { (n) } None => { (t("ukjent", "unknown")) } } }
            }
            (crate::reports::section(i, &submitted, &csrf, cert, now_us()))
            h2.ds-heading data-size="sm" { (t("Varselgrupper", "Alert groups")) }
            @if i.groups.is_empty() {
                p { (t("Ingen varselgrupper er koblet.", "No alert groups are linked.")) }
            } @else {
                table.ds-table data-border="" data-zebra="" {
                    caption { (i.groups.len()) (t(" koblede varselgrupper", " linked alert groups")) }
                    thead { tr { th scope="col" { (t("Kommune", "Municipality")) } th scope="col" { (t("Komponent", "Component")) } th scope="col" { (t("Regel", "Rule")) } th scope="col" { (t("Gruppe", "Group")) } } }
                    tbody {
                        @for g in &i.groups {
                            tr data-key=(hex(&g.dedup_key)) {
                                td { (g.tenant) } td { (g.component) } td { (g.rule_title) } td { code { (hex(&g.dedup_key)) } }
                            }
                        }
                    }
                }
            }
            @if cert {
                h2.ds-heading data-size="sm" { (t("Kommentarer", "Comments")) }
                @if i.comments.is_empty() { p { (t("Ingen kommentarer.", "No comments.")) } }
                @for (at, who, text) in &i.comments {
                    article.comment {
                        p { strong { (who) } " – " (format_time(*at)) " UTC" }
                        p.comment-text { (text) }
                    }
                }
            }
            h2.ds-heading data-size="sm" { (t("Tidslinje", "Timeline")) }
            ol.timeline {
                @for c in &rows {
                    li {
                        (format_time(c.at_us)) " UTC – " @if cert { (c.actor) } @else { "CERT" } ": " (describe(&c.change))
                    }
                }
            }
            @if cert {
                h2.ds-heading data-size="sm" { (t("Endre", "Change")) }
                (change_form(&action, &csrf, "status", t("Status", "Status"), html! {
                    select.ds-input id="change-status" name="value" {
                        @for s in IncidentStatus::ALL { option value=(s.as_str()) selected[*s == i.status] { (status_label(*s)) } }
                    }
                }))
                (change_form(&action, &csrf, "severity", t("Alvorlighet", "Severity"), html! {
                    select.ds-input id="change-severity" name="value" {
                        @for s in Severity::ALL { option value=(s.as_str()) selected[*s == i.severity] { (severity_label(*s)) } }
                    }
                }))
                (change_form(&action, &csrf, "tlp", t("Deling (TLP 2.0)", "Sharing (TLP 2.0)"), html! {
                    select.ds-input id="change-tlp" name="value" {
                        @for t in Tlp::ALL { option value=(t.as_str()) selected[*t == i.tlp] { (tlp_label(*t)) } }
                    }
                }))
                (change_form(&action, &csrf, "category", t("Klassifisering (ENISA RSIT)", "Classification (ENISA RSIT)"), html! {
                    select.ds-input id="change-category" name="value" {
                        option value="" { "–" }
                        @for c in &varde_report::taxonomy::rsit().categories {
                            optgroup label=(c.name) {
                                @for (k, name) in &c.types {
                                    @let key = format!("{}/{}", c.id, k);
                                    option value=(key) selected[key == i.category] { (name) }
                                }
                            }
                        }
                    }
                }))
                (change_form(&action, &csrf, "root_cause", t("Grunnårsak (NIS-samarbeidsgruppen)", "Root cause (NIS Cooperation Group)"), html! {
                    select.ds-input id="change-root_cause" name="value" {
                        option value="" { "–" }
                        @for (k, name) in &varde_report::taxonomy::root_causes().root_causes {
                            option value=(k) selected[*k == i.root_cause] { (name) }
                        }
                    }
                }))
                (change_form(&action, &csrf, "users", t("Berørte brukere (tomt: ukjent)", "Users affected (empty: unknown)"), html! {
                    input.ds-input id="change-users" name="value" type="number" min="0"
                        value=(i.users_affected.map(|n| n.to_string()).unwrap_or_default());
                }))
                (change_form(&action, &csrf, "title", t("Tittel", "Title"), html! {
                    input.ds-input id="change-title" name="value" value=(i.title) required maxlength=(TITLE_MAX);
                }))
                (change_form(&action, &csrf, "aware", t("Kjent for CERT fra (UTC)", "Known to the CERT since (UTC)"), html! {
                    input.ds-input id="change-aware" name="value" type="datetime-local" required
                        value=(chrono::DateTime::from_timestamp_micros(i.aware_at_us).map_or_else(String::new, |t| t.format("%Y-%m-%dT%H:%M").to_string()));
                }))
                (change_form(&action, &csrf, "municipalities", t("Andre berørte kommuner (kommunenumre, komma mellom)", "Further affected municipalities (numbers, comma-separated)"), html! {
                    input.ds-input id="change-municipalities" name="value" value=(i.extra_municipalities.join(", "));
                }))
                form method="post" action=(action) {
                    input type="hidden" name="csrf" value=(csrf);
                    input type="hidden" name="op" value="components";
                    fieldset.ds-fieldset {
                        legend { (t("Andre berørte komponenter", "Further affected components")) }
                        @for c in registry.components() {
                            @let field = format!("component-{}", c.id);
                            input.ds-input type="checkbox" id=(field) name="component" value=(c.id)
                                checked[i.extra_components.contains(&c.id)];
                            label.ds-label for=(field) { (c.name) }
                        }
                    }
                    button.ds-button type="submit" { (t("Lagre komponenter", "Save components")) }
                }
                (change_form(&action, &csrf, "comment", t("Ny kommentar", "New comment"), html! {
                    textarea.ds-input id="change-comment" name="value" required maxlength=(COMMENT_MAX) rows="4" {}
                }))
            }
        },
    )
    .into_response()
}

fn change_form(action: &str, csrf: &str, op: &str, label: &str, field: Markup) -> Markup {
    html! {
        form method="post" action=(action) {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="op" value=(op);
            label.ds-label for={ "change-" (op) } { (label) }
            (field)
            button.ds-button type="submit" { (t("Lagre", "Save")) }
        }
    }
}

/// `POST /incidents/{id}` (`op` and `value`, or `component` repeated): one change.
pub(crate) async fn change<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let form = parse_form(&body);
    let account = match changer(&d, &headers, &form) {
        Ok(a) => a,
        Err(r) => return r,
    };
    let (i, _) = match one(&d, None, &id).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (i, id) = (&i, i.incident_id);
    let value = form.value.trim();
    let change = match form.op.as_str() {
        "status" => match IncidentStatus::parse(value) {
            Some(s) if s == i.status => None,
            Some(s) => Some(Change::Status(s)),
            None => return bad_request("Ukjent status."),
        },
        "severity" => match Severity::parse(value) {
            Some(s) if s == i.severity => None,
            Some(s) => Some(Change::Severity(s)),
            None => return bad_request("Ukjent alvorlighet."),
        },
        "tlp" => match Tlp::parse(value) {
            Some(t) if t == i.tlp => None,
            Some(t) => Some(Change::Tlp(t)),
            None => return bad_request("Ukjent TLP-merking."),
        },
        "title" => {
            if value.is_empty() || value.chars().count() > TITLE_MAX {
                return bad_request("En hendelse trenger en tittel (høyst 200 tegn).");
            }
            (value != i.title).then(|| Change::Title(value.to_owned()))
        }
        "aware" => {
            let Ok(t) = chrono::NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M") else {
                return bad_request("Oppgi tidspunktet som ÅÅÅÅ-MM-DDTTT:MM (UTC).");
            };
            let us = t.and_utc().timestamp_micros();
            if us > now_us() {
                return bad_request("Tidspunktet kan ikke være fram i tid.");
            }
            (us != i.aware_at_us).then_some(Change::AwareAt(us))
        }
        "municipalities" => {
            let mut list: Vec<String> = Vec::new();
            for part in value.split([',', ' ', ';']).filter(|p| !p.is_empty()) {
                let Ok(k) = Kommunenummer::parse(part) else {
                    return bad_request("Et kommunenummer er ikke gyldig.");
                };
                let k = k.to_string();
                if !list.contains(&k) {
                    list.push(k);
                }
            }
            list.sort();
            (list != i.extra_municipalities).then_some(Change::Municipalities(list))
        }
        "components" => {
            let registry = ComponentRegistry::builtin();
            let mut list: Vec<String> = Vec::new();
            for c in &form.components {
                if registry.get(c).is_none() {
                    return bad_request("Ukjent komponent.");
                }
                if !list.contains(c) {
                    list.push(c.clone());
                }
            }
            list.sort();
            (list != i.extra_components).then_some(Change::Components(list))
        }
        "category" => {
            if !value.is_empty() && varde_report::taxonomy::classify(value).is_none() {
                return bad_request("Ukjent klassifisering.");
            }
            (value != i.category).then(|| Change::Category(value.to_owned()))
        }
        "users" => {
            let n = if value.is_empty() {
                None
            } else {
                match value.parse::<u64>() {
                    Ok(n) => Some(n),
                    Err(_) => return bad_request("Oppgi antallet brukere som et heltall."),
                }
            };
            (n != i.users_affected).then_some(Change::UsersAffected(n))
        }
        "root_cause" => {
            if !value.is_empty() && varde_report::taxonomy::root_cause(value).is_none() {
                return bad_request("Ukjent grunnårsak.");
            }
            (value != i.root_cause).then(|| Change::RootCause(value.to_owned()))
        }
        "comment" => {
            let text = form.value.trim_end();
            if text.trim().is_empty() || text.chars().count() > COMMENT_MAX {
                return bad_request("En kommentar må ha tekst (høyst 5000 tegn).");
            }
            Some(Change::Comment(text.to_owned()))
        }
        _ => return bad_request("Ukjent endring."),
    };
    if let Some(change) = change {
        let Some(row) = change_row(id, &account.name, now_us(), change) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        if let Err(e) = d
            .inner
            .store
            .write_incident_changes(std::slice::from_ref(&row))
            .await
        {
            return unavailable("write incident", &e);
        }
        crate::metrics::Counters::add(&d.inner.counters.incident_changes, 1);
        tracing::info!(actor = %row.actor, incident = %hex(&id), change = row.change.field(), "incident");
    }
    Redirect::to(&format!("/incidents/{}", hex(&id))).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_incident_starts_at_its_worst_rule_level() {
        assert_eq!(
            severity_of_levels(["low", "high", "medium"].into_iter()),
            Severity::High
        );
        assert_eq!(
            severity_of_levels(["informational"].into_iter()),
            Severity::Low
        );
        assert_eq!(
            severity_of_levels(["critical", "low"].into_iter()),
            Severity::Critical
        );
        assert_eq!(severity_of_levels(std::iter::empty()), Severity::Medium);
    }
}
