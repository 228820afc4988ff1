//! The alert detail page and triage of alert groups.
//!
//! Both take the tenant of every store query from the account (a municipality account) or from
//! the store itself (the group's own tenant), never from the request, so no id, key or form
//! field reaches another municipality's data.

use crate::i18n::t;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use varde_core::pseudonym::{is_pseudonym, split_pseudonyms};
use varde_core::{AlertId, Kommunenummer};
use varde_store::{
    Alert, CorrelationHit, EventStore, Resolution, StoredEvent, TriageAction, TriageKind,
    WindowQuery,
};

use crate::triage::{Status, status};
use crate::{Dashboard, Role, app_page, format_time, now_us, random_hex, refusal, unavailable};

/// Longest free-text reason kept with a triage action, in characters.
pub const REASON_MAX: usize = 2000;
/// Longest a suppression may last, in days.
pub const SUPPRESS_MAX_DAYS: i64 = 366;

fn not_found() -> Response {
    refusal(
        StatusCode::NOT_FOUND,
        t("Fant ikke varselet", "Alert not found"),
        t(
            "Varselet finnes ikke, eller du har ikke tilgang til det.",
            "The alert does not exist, or you have no access to it.",
        ),
        "/alerts",
        t("Tilbake til varslene", "Back to the alerts"),
    )
}

/// A value, with pseudonyms in it marked as such (screen readers hear "pseudonym").
pub(crate) fn value(text: &str) -> Markup {
    html! {
        @for (piece, pseudonym) in split_pseudonyms(text) {
            @if pseudonym {
                span.pseudonym title=(t("Pseudonym: erstattet i kommunen før data forlot den", "Pseudonym: replaced in the municipality before the data left it")) {
                    code { (piece) } " " span.tag { (t("(pseudonym)", "(pseudonym)")) }
                }
            } @else {
                (piece)
            }
        }
    }
}

/// Norwegian names of the resolutions.
pub fn resolution_label(r: Resolution) -> &'static str {
    match r {
        Resolution::TruePositiveWithImpact => {
            t("Reell hendelse med konsekvens", "True positive with impact")
        }
        Resolution::TruePositiveWithoutImpact => t(
            "Reell hendelse uten konsekvens",
            "True positive without impact",
        ),
        Resolution::FalsePositive => t("Falsk positiv", "False positive"),
        Resolution::Legitimate => t("Legitim aktivitet", "Legitimate activity"),
        Resolution::NotApplicable => t("Ikke relevant", "Not applicable"),
    }
}

/// Norwegian names of the actions.
pub fn action_label(k: TriageKind) -> &'static str {
    match k {
        TriageKind::Acknowledge => t("Kvitter", "Acknowledge"),
        TriageKind::Assign => t("Tildel", "Assign"),
        TriageKind::Resolve => t("Løs", "Resolve"),
        TriageKind::Suppress => t("Undertrykk", "Suppress"),
        TriageKind::Reopen => t("Gjenåpne", "Reopen"),
    }
}

/// The status as shown.
pub fn status_label(s: &Status) -> String {
    match s {
        Status::New => t("Ny", "New").into(),
        Status::Acknowledged => t("Kvittert", "Acknowledged").into(),
        Status::Assigned(who) => format!("{} {who}", t("Tildelt", "Assigned to")),
        Status::Resolved(r) => format!("{}: {}", t("Løst", "Resolved"), resolution_label(*r)),
        Status::Suppressed { until_us } => format!(
            "{} {}",
            t("Undertrykt til", "Suppressed until"),
            format_time(*until_us)
        ),
    }
}

/// The triage controls: hidden CSRF token, action, assignee, resolution, reason, expiry.
/// `keys` are hidden fields (the detail page); the queue's checkboxes add theirs.
pub(crate) fn triage_controls(
    csrf: &str,
    assignees: &[&str],
    keys: &[String],
    back: &str,
) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(csrf);
        input type="hidden" name="back" value=(back);
        @for k in keys { input type="hidden" name="key" value=(k); }
        fieldset.ds-fieldset {
            legend { (t("Behandle", "Triage")) }
            label.ds-label for="triage-action" { (t("Handling", "Action")) }
            select.ds-input id="triage-action" name="action" {
                @for k in TriageKind::ALL { option value=(k.as_str()) { (action_label(k)) } }
            }
            label.ds-label for="triage-assignee" { (t("Tildel til", "Assign to")) }
            select.ds-input id="triage-assignee" name="assignee" {
                option value="" { "–" }
                @for a in assignees { option value=(a) { (a) } }
            }
            label.ds-label for="triage-resolution" { (t("Utfall (ved løsning)", "Outcome (to resolve)")) }
            select.ds-input id="triage-resolution" name="resolution" {
                option value="" { "–" }
                @for r in Resolution::ALL { option value=(r.as_str()) { (resolution_label(r)) } }
            }
            label.ds-label for="triage-reason" { (t("Begrunnelse (påkrevd ved undertrykking)", "Reason (required to suppress)")) }
            input.ds-input id="triage-reason" name="reason" maxlength=(REASON_MAX);
            label.ds-label for="triage-until" { (t("Undertrykt til og med (UTC-dato)", "Suppressed through (UTC date)")) }
            input.ds-input id="triage-until" name="until" type="date";
            button.ds-button type="submit" { (t("Utfør", "Apply")) }
        }
    }
}

/// `GET /alerts/{id}`: the alert, its event with pseudonyms marked, its group's triage history
/// and, for analysts and admins, the triage controls.
pub(crate) async fn detail<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let Some(id) = AlertId::parse_hex(&id) else {
        return not_found();
    };
    let own = match account.role {
        Role::Municipality => match account.tenant {
            Some(t) => Some(t),
            None => return StatusCode::FORBIDDEN.into_response(),
        },
        Role::Admin | Role::Analyst => None,
    };
    let store = &d.inner.store;
    let alert = match store.alert(own, id).await {
        Ok(Some(a)) => a,
        Ok(None) => return not_found(),
        Err(e) => return unavailable("alert", &e),
    };
    // The alert's own tenant scopes everything else read for it.
    let Ok(tenant) = Kommunenummer::parse(&alert.tenant) else {
        return not_found();
    };
    let event = match store.event(Some(tenant), alert.event_id).await {
        Ok(e) => e,
        Err(e) => return unavailable("event", &e),
    };
    let history = match store.triage(Some(tenant), &[alert.dedup_key]).await {
        Ok(h) => h,
        Err(e) => return unavailable("triage", &e),
    };
    let last_detect = match store.groups(Some(tenant), &[alert.dedup_key]).await {
        Ok(g) => g
            .iter()
            .map(|g| g.last_detect_us)
            .max()
            .unwrap_or(alert.detect_time_us),
        Err(e) => return unavailable("groups", &e),
    };
    let group = match store
        .group_alerts(Some(tenant), alert.dedup_key, RELATED_MAX + 1)
        .await
    {
        Ok(g) => g,
        Err(e) => return unavailable("group alerts", &e),
    };
    // Where the same rule fired in the last week, across municipalities: for the CERT only.
    let spread = if account.role == Role::Municipality {
        Vec::new()
    } else {
        match store
            .rule_spread(&alert.rule_id, now_us() - 7 * 86_400_000_000)
            .await
        {
            Ok(s) => s,
            Err(e) => return unavailable("rule spread", &e),
        }
    };
    let rule = match store.rule(&alert.rule_id).await {
        Ok(r) => r,
        Err(e) => return unavailable("rule", &e),
    };
    // A correlation alert: the hits of its window, a municipality's own only.
    let window = match window_of(&alert) {
        Some(w) => match store.window_hits(own, &w, WINDOW_HITS_MAX + 1).await {
            Ok(h) => Some(h),
            Err(e) => return unavailable("window hits", &e),
        },
        None => None,
    };
    // A campaign (a window that touched several municipalities): its rows, for the CERT only.
    let campaign = match (&own, campaign_of(&alert)) {
        (None, Some((id, first_us))) => {
            match store
                .campaign_alerts(&alert.rule_id, id, first_us, CAMPAIGN_ROWS_MAX)
                .await
            {
                Ok(rows) => rows,
                Err(e) => return unavailable("campaign", &e),
            }
        }
        _ => Vec::new(),
    };
    let refs: Vec<&TriageAction> = history.iter().collect();
    let current = status(&refs, last_detect, now_us());
    let may_triage = account.role != Role::Municipality;
    let open_incidents = if may_triage {
        match crate::incident::open_incidents(&d).await {
            Ok(o) => o,
            Err(r) => return r,
        }
    } else {
        Vec::new()
    };
    let assignees = d.assignees();
    let key = hex(&alert.dedup_key);
    let back = format!("/alerts/{}", alert.alert_id);
    app_page(
        &alert.rule_title,
        &account,
        &csrf,
        html! {
            p { a.ds-link href="/alerts" { (t("← Varslene", "← Alerts")) } }
            h1.ds-heading data-size="lg" { (alert.rule_title) }
            (facts(&alert, &current))
            @if let Some(r) = &rule {
                h2.ds-heading data-size="sm" { (t("Regelen", "The rule")) }
                p { a.ds-link href=(crate::rules::rule_url(&r.rule_id)) { (r.title) } }
                @if !r.description.is_empty() { p { (r.description) } }
                (crate::rules::credit(r))
            }
            h2.ds-heading data-size="sm" { (t("Treff", "Matches")) }
            @if alert.matched.is_empty() {
                p { (t("Regelen oppga ingen felt.", "The rule named no fields.")) }
            } @else {
                table.ds-table data-border="" data-zebra="" {
                    caption { (t("Feltene regelen traff på", "The fields the rule matched")) }
                    thead { tr { th scope="col" { (t("Felt", "Field")) } th scope="col" { (t("Verdi", "Value")) } } }
                    tbody { @for (k, v) in &alert.matched { tr { th scope="row" { (k) } td { (value(v)) } } } }
                }
            }
            @if !campaign.is_empty() {
                (campaign_section(&alert, &campaign))
            }
            @if let Some(hits) = &window {
                (window_section(hits, own.is_none()))
            }
            h2.ds-heading data-size="sm" { (t("Hendelsen", "The event")) }
            (event_section(event.as_ref()))
            (related(&alert, &group, &spread))
            h2.ds-heading data-size="sm" { (t("Behandling", "Triage")) }
            (history_table(&history))
            @if may_triage {
                form method="post" action="/alerts/triage" {
                    (triage_controls(&csrf, &assignees, &[key], &back))
                    (crate::incident::incident_controls(&open_incidents))
                }
            }
        },
    )
    .into_response()
}

/// Most alerts of the group shown on an alert's page.
pub const RELATED_MAX: u64 = 20;

/// Most hits of a correlation window shown on its alert's page.
pub const WINDOW_HITS_MAX: u64 = 200;

/// Most rows of a campaign (municipalities) shown on its alert's page.
pub const CAMPAIGN_ROWS_MAX: u64 = 400;

/// The campaign a correlation alert belongs to (its window id and first hit), when its window
/// touched several municipalities; `None` for other alerts.
fn campaign_of(a: &Alert) -> Option<(&str, i64)> {
    if a.matched_field("correlation.scope")? != "several municipalities" {
        return None;
    }
    Some((
        a.matched_field("correlation.window")?,
        a.matched_field("correlation.first_us")?.parse().ok()?,
    ))
}

/// A campaign as the CERT sees it: every municipality it touched, with its hits and newest
/// event, those that joined after it fired marked, and the totals.
fn campaign_section(a: &Alert, rows: &[Alert]) -> Markup {
    let hits = |r: &Alert| -> u64 {
        r.matched_field("correlation.hits")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    let total: u64 = rows.iter().map(hits).sum();
    let first = a
        .matched_field("correlation.first_us")
        .and_then(|v| v.parse::<i64>().ok());
    let newest = rows.iter().map(|r| r.event_time_us).max();
    let component = rows
        .iter()
        .map(|r| r.component.as_str())
        .chain(a.matched_field("component"))
        .find(|c| !c.is_empty());
    html! {
        h2.ds-heading data-size="sm" { (t("Kampanjen", "The campaign")) }
        p data-campaign-municipalities=(rows.len()) data-campaign-hits=(total) {
            (t("Kommuner", "Municipalities")) ": " strong { (rows.len()) } ", "
            (t("treff", "hits")) ": " strong { (total) }
            @if let Some(f) = first { ", " (t("første", "first")) ": " (format_time(f)) }
            @if let Some(l) = newest { ", " (t("siste", "last")) ": " (format_time(l)) }
            @if let Some(c) = component { ", " (t("komponent", "component")) ": " (c) }
        }
        p { (t(
            "Hver kommune ser bare sin egen rad; hvilke andre kommuner som er rammet, er CERTs informasjon.",
            "Each municipality sees its own row only; which others were hit is the CERT's information."
        )) }
        table.ds-table data-border="" data-zebra="" data-campaign-rows=(rows.len()) {
            caption { (t("Kommunene kampanjen rammet", "The municipalities the campaign hit")) }
            thead { tr {
                th scope="col" { (t("Kommune", "Municipality")) }
                th scope="col" { (t("Treff", "Hits")) }
                th scope="col" { (t("Siste hendelse (UTC)", "Last event (UTC)")) }
                th scope="col" { (t("Kom med", "Joined")) }
                th scope="col" { (t("Varsel", "Alert")) }
            } }
            tbody {
                @for r in rows {
                    tr {
                        th scope="row" {
                            a.ds-link href=(crate::municipality::municipality_url(&r.tenant)) {
                                (r.tenant) " " (Kommunenummer::parse(&r.tenant).map_or("", |m| m.name()))
                            }
                        }
                        td { (hits(r)) }
                        td { (format_time(r.event_time_us)) }
                        td {
                            @match r.matched_field("correlation.joined_us").and_then(|v| v.parse::<i64>().ok()) {
                                Some(at) => { (t("etter utløsning, ", "after it fired, ")) (format_time(at)) }
                                None => { (t("da den ble utløst", "when it fired")) }
                            }
                        }
                        td {
                            @if r.alert_id == a.alert_id { (t("denne", "this one")) }
                            @else { a.ds-link href=(format!("/alerts/{}", r.alert_id)) { (t("åpne", "open")) } }
                        }
                    }
                }
            }
        }
        @if u64::try_from(rows.len()).unwrap_or(u64::MAX) >= CAMPAIGN_ROWS_MAX {
            p { (t("Flere kommuner enn vist.", "More municipalities than shown.")) }
        }
    }
}

/// The window a correlation alert fired on (its group, first and last hit), from its matched
/// fields; `None` for other alerts.
fn window_of(a: &Alert) -> Option<WindowQuery> {
    let get = |name: &str| a.matched_field(name);
    get("correlation.window")?;
    Some(WindowQuery {
        correlation: a.rule_id.clone(),
        group: a
            .matched
            .iter()
            .filter(|(k, _)| !k.starts_with("correlation."))
            .map(|(_, v)| v.clone())
            .collect(),
        first_us: get("correlation.first_us")?.parse().ok()?,
        last_us: get("correlation.last_us")?.parse().ok()?,
    })
}

/// The hits of a correlation alert's window: its events, with their municipality for the CERT.
fn window_section(hits: &[CorrelationHit], cert: bool) -> Markup {
    let shown = &hits[..hits
        .len()
        .min(usize::try_from(WINDOW_HITS_MAX).unwrap_or(usize::MAX))];
    html! {
        h2.ds-heading data-size="sm" { (t("Hendelsene i vinduet", "The events of the window")) }
        @if hits.is_empty() {
            p { (t("Ingen av vinduets hendelser er lagret her.", "None of the window's events is stored here.")) }
        } @else {
            table.ds-table data-border="" data-window-hits=(shown.len()) {
                caption { (t(
                    "Hendelsene korrelasjonen talte, eldste først",
                    "The events the correlation counted, oldest first"
                )) }
                thead { tr {
                    th scope="col" { (t("Hendelsestid (UTC)", "Event time (UTC)")) }
                    @if cert { th scope="col" { (t("Kommune", "Municipality")) } }
                    th scope="col" { (t("Hendelse", "Event")) }
                    th scope="col" { (t("Verdi", "Value")) }
                } }
                tbody {
                    @for h in shown {
                        tr {
                            td { (format_time(h.event_time_us)) }
                            @if cert { td { (value(&h.tenant)) } }
                            td { code { (h.event_id) } }
                            td { (value(h.value.as_deref().unwrap_or(""))) }
                        }
                    }
                }
            }
            @if hits.len() > shown.len() {
                p { (t("Flere hendelser enn vist.", "More events than shown.")) }
            }
        }
    }
}

/// The other alerts of the group, and (for the CERT) where the same rule fired lately.
fn related(a: &Alert, group: &[Alert], spread: &[(String, u64)]) -> Markup {
    let others: Vec<&Alert> = group
        .iter()
        .filter(|g| g.alert_id != a.alert_id)
        .take(usize::try_from(RELATED_MAX).unwrap_or(usize::MAX))
        .collect();
    html! {
        h2.ds-heading data-size="sm" { (t("Relaterte varsler", "Related alerts")) }
        @if others.is_empty() {
            p { (t("Ingen andre varsler i gruppen.", "No other alerts in the group.")) }
        } @else {
            table.ds-table data-border="" data-group-alerts=(others.len()) {
                caption { (t("De nyeste andre varslene i gruppen", "The newest other alerts of the group")) }
                thead { tr {
                    th scope="col" { (t("Hendelsestid (UTC)", "Event time (UTC)")) }
                    th scope="col" { (t("Vert", "Host")) }
                    th scope="col" { (t("Varsel", "Alert")) }
                } }
                tbody {
                    @for g in &others {
                        tr {
                            td { (format_time(g.event_time_us)) }
                            td { (value(&g.host)) }
                            td { a.ds-link href={ "/alerts/" (g.alert_id) } { code { (g.alert_id) } } }
                        }
                    }
                }
            }
        }
        @if !spread.is_empty() {
            (crate::municipality::spread_table(
                spread,
                t("Samme regel i kommunene siste 7 døgn", "The same rule in the municipalities, last 7 days"),
                "rule",
            ))
        }
    }
}

fn facts(a: &Alert, current: &Status) -> Markup {
    html! {
        dl {
            dt { (t("Status", "Status")) } dd data-status=(current.key()) { (status_label(current)) }
            dt { (t("Kommune", "Municipality")) } dd { (a.tenant) }
            dt { (t("Komponent", "Component")) } dd { @if a.component.is_empty() { "–" } @else { a.ds-link href=(crate::component::component_url(&a.component)) { (a.component) } } }
            dt { (t("Nivå", "Level")) } dd { (a.rule_level) }
            dt { (t("Regel", "Rule")) } dd { code { (a.rule_id) } }
            dt { (t("Tagger", "Tags")) } dd { @if a.rule_tags.is_empty() { "–" } @else { (a.rule_tags.join(", ")) } }
            dt { (t("Vert", "Host")) } dd { (value(&a.host)) }
            dt { (t("Kilde", "Source")) } dd { (a.source_kind) }
            dt { (t("Hendelsestid (UTC)", "Event time (UTC)")) } dd { (format_time(a.event_time_us)) }
            dt { (t("Oppdaget (UTC)", "Detected (UTC)")) } dd { (format_time(a.detect_time_us)) }
            dt { (t("Varsel-id", "Alert id")) } dd { code { (a.alert_id) } }
            dt { (t("Gruppe", "Group")) } dd { code { (hex(&a.dedup_key)) } }
        }
    }
}

fn event_section(event: Option<&StoredEvent>) -> Markup {
    let Some(e) = event else {
        return html! { p { (t("Hendelsen er ikke lenger lagret (oppbevaringstiden er ute).", "The event is no longer stored (its retention has passed).")) } };
    };
    let pseudonyms = e.fields.iter().filter(|(_, v)| is_pseudonym(v)).count();
    html! {
        dl {
            dt { (t("Melding", "Message")) } dd { @if e.message.is_empty() { "–" } @else { (value(&e.message)) } }
            dt { (t("Innsamler", "Collector")) } dd { code { (e.collector_id) } " batch " (e.batch_seq) (t(", rad ", ", row ")) (e.batch_row) }
            dt { (t("Hendelse-id", "Event id")) } dd { code { (e.event_id) } }
        }
        table.ds-table data-border="" data-zebra="" {
            caption { (e.fields.len()) (t(" felt, ", " fields, ")) (pseudonyms) (t(" av dem pseudonymer", " of them pseudonyms")) }
            thead { tr { th scope="col" { (t("Felt", "Field")) } th scope="col" { (t("Verdi", "Value")) } } }
            tbody { @for (k, v) in &e.fields { tr { th scope="row" { (k) } td { (value(v)) } } } }
        }
    }
}

fn history_table(history: &[TriageAction]) -> Markup {
    html! {
        @if history.is_empty() {
            p { (t("Ingen har behandlet denne gruppen ennå.", "Nobody has triaged this group yet.")) }
        } @else {
            table.ds-table data-border="" data-zebra="" {
                caption { (t("Historikk for gruppen, eldste først", "The group's history, oldest first")) }
                thead { tr {
                    th scope="col" { (t("Tid (UTC)", "Time (UTC)")) } th scope="col" { (t("Hvem", "Who")) } th scope="col" { (t("Handling", "Action")) }
                    th scope="col" { (t("Detaljer", "Details")) } th scope="col" { (t("Status før", "Status before")) }
                } }
                tbody {
                    @for a in history {
                        tr {
                            td { (format_time(a.at_us)) }
                            td { (a.actor) }
                            td { (action_label(a.kind)) }
                            td {
                                @if !a.assignee.is_empty() { (t("til ", "to ")) (a.assignee) " " }
                                @if let Some(r) = a.resolution { (resolution_label(r)) " " }
                                @if a.until_us > 0 { (t("til ", "to ")) (format_time(a.until_us)) " " }
                                @if !a.reason.is_empty() { "«" (a.reason) "»" }
                            }
                            td { (a.before) }
                        }
                    }
                }
            }
        }
    }
}

/// 32 lowercase hex digits.
pub(crate) fn hex(bytes: &[u8; 16]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A triage request as sent by the form, before it is checked.
#[derive(Debug, Default)]
struct TriageForm {
    csrf: String,
    action: String,
    keys: Vec<String>,
    assignee: String,
    resolution: String,
    reason: String,
    until: String,
    back: String,
}

fn parse_form(body: &[u8]) -> TriageForm {
    let mut f = TriageForm::default();
    for (k, v) in form_urlencoded::parse(body) {
        let v = v.into_owned();
        match &*k {
            "csrf" => f.csrf = v,
            "action" => f.action = v,
            "key" => f.keys.push(v),
            "assignee" => f.assignee = v,
            "resolution" => f.resolution = v,
            "reason" => f.reason = v,
            "until" => f.until = v,
            "back" => f.back = v,
            // Unknown fields (a tenant, say) are ignored: nothing is taken from them.
            _ => {}
        }
    }
    f
}

fn bad_request(message: &str) -> Response {
    refusal(
        StatusCode::BAD_REQUEST,
        t("Ugyldig behandling", "Invalid triage"),
        message,
        "/alerts",
        t("Tilbake til varslene", "Back to the alerts"),
    )
}

/// Where to go after an action: back to a page of the dashboard's alerts or incidents, never
/// elsewhere.
pub(crate) fn safe_back(back: &str) -> &str {
    let local = ["/alerts", "/incidents"].iter().any(|p| {
        back == *p || back.starts_with(&format!("{p}?")) || back.starts_with(&format!("{p}/"))
    });
    let ok = local
        && !back.contains("//")
        && !back.contains('\\')
        && back.bytes().all(|b| b.is_ascii_graphic());
    if ok { back } else { "/alerts" }
}

/// `POST /alerts/triage`: one action on one or more groups (`key` repeated), for analysts and
/// admins, with the session's CSRF token. Every group must exist; its tenant comes from the
/// store. One append-only row per group and tenant, with the status before; all or nothing.
pub(crate) async fn triage<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let form = parse_form(&body);
    if !crate::same_token(&form.csrf, &csrf) {
        tracing::warn!(name = %account.name, "triage refused: missing or wrong CSRF token");
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    if account.role == Role::Municipality {
        tracing::warn!(name = %account.name, "triage refused: municipality account");
        return (
            StatusCode::FORBIDDEN,
            "only the CERT's analysts triage alerts\n",
        )
            .into_response();
    }
    let Some(kind) = TriageKind::parse(&form.action) else {
        return bad_request("Ukjent handling.");
    };
    if form.keys.is_empty() {
        return bad_request("Velg minst én gruppe.");
    }
    if form.keys.len() as u64 > d.inner.settings.page_size {
        return bad_request("For mange grupper i én handling.");
    }
    let mut keys: Vec<[u8; 16]> = Vec::with_capacity(form.keys.len());
    for k in &form.keys {
        match varde_core::id::parse_hex16(k) {
            Some(key) if !keys.contains(&key) => keys.push(key),
            Some(_) => {}
            None => return bad_request("Ugyldig gruppe."),
        }
    }
    let reason = form.reason.trim().to_owned();
    if reason.chars().count() > REASON_MAX {
        return bad_request("Begrunnelsen er for lang.");
    }
    let now = now_us();
    let (mut assignee, mut resolution, mut until_us) = (String::new(), None, 0);
    match kind {
        TriageKind::Assign => {
            if !d.assignees().contains(&form.assignee.as_str()) {
                return bad_request("Velg en analytiker å tildele til.");
            }
            assignee = form.assignee.clone();
        }
        TriageKind::Resolve => match Resolution::parse(&form.resolution) {
            Some(r) => resolution = Some(r),
            None => return bad_request("Velg et utfall for å løse."),
        },
        TriageKind::Suppress => {
            if reason.is_empty() {
                return bad_request("En undertrykking må ha en begrunnelse.");
            }
            // Through the end of the chosen day, UTC.
            let Ok(day) = chrono::NaiveDate::parse_from_str(&form.until, "%Y-%m-%d") else {
                return bad_request("Velg en dato undertrykkingen varer til og med.");
            };
            let Some(end) = day.succ_opt().and_then(|d| d.and_hms_opt(0, 0, 0)) else {
                return bad_request("Ugyldig dato.");
            };
            until_us = end.and_utc().timestamp_micros();
            if until_us <= now || until_us > now + SUPPRESS_MAX_DAYS * 86_400_000_000 {
                return bad_request("Datoen må være fra i dag og høyst ett år fram.");
            }
        }
        TriageKind::Acknowledge | TriageKind::Reopen => {}
    }
    let store = &d.inner.store;
    let groups = match store.groups(None, &keys).await {
        Ok(g) => g,
        Err(e) => return unavailable("groups", &e),
    };
    if keys
        .iter()
        .any(|k| !groups.iter().any(|g| g.dedup_key == *k))
    {
        return bad_request("En av gruppene finnes ikke.");
    }
    let history = match store.triage(None, &keys).await {
        Ok(h) => h,
        Err(e) => return unavailable("triage", &e),
    };
    let mut actions = Vec::with_capacity(groups.len());
    for g in &groups {
        let own: Vec<&TriageAction> = history
            .iter()
            .filter(|a| a.dedup_key == g.dedup_key && a.tenant == g.tenant)
            .collect();
        let before = status(&own, g.last_detect_us, now).audit();
        let Some(id) = random_hex::<16>().and_then(|h| varde_core::id::parse_hex16(&h)) else {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        };
        actions.push(TriageAction {
            action_id: id,
            at_us: now,
            tenant: g.tenant.clone(),
            dedup_key: g.dedup_key,
            kind,
            actor: account.name.clone(),
            assignee: assignee.clone(),
            resolution,
            reason: reason.clone(),
            until_us,
            before,
        });
    }
    if let Err(e) = store.write_triage(&actions).await {
        return unavailable("write triage", &e);
    }
    crate::metrics::Counters::add(&d.inner.counters.triage_actions, actions.len() as u64);
    for a in &actions {
        tracing::info!(actor = %a.actor, action = a.kind.as_str(), tenant = %a.tenant,
            group = %hex(&a.dedup_key), before = %a.before, "triage");
    }
    Redirect::to(safe_back(&form.back)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_alert_pages_are_returned_to() {
        assert_eq!(safe_back("/alerts"), "/alerts");
        assert_eq!(
            safe_back("/alerts?status=new&tenant=0301"),
            "/alerts?status=new&tenant=0301"
        );
        assert_eq!(safe_back("/alerts/00ff"), "/alerts/00ff");
        assert_eq!(safe_back("/incidents?status=all"), "/incidents?status=all");
        for evil in [
            "https://evil.example/alerts",
            "//evil.example",
            "/alerts//evil",
            "/alerts/\\evil",
            "/login",
            "/incidentsx",
            "",
            "/alerts\r\nSet-Cookie: x",
        ] {
            assert_eq!(safe_back(evil), "/alerts", "{evil:?}");
        }
    }

    #[test]
    fn repeated_keys_are_all_kept() {
        let f = parse_form(b"csrf=t&action=resolve&key=aa&key=bb&resolution=false_positive&tenant=4601&reason=a+b%26c");
        assert_eq!(f.keys, ["aa", "bb"]);
        assert_eq!(f.reason, "a b&c");
        assert_eq!(f.action, "resolve");
    }
}
