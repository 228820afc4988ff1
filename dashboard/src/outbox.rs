//! The notification outbox, for the CERT's analysts and admins: what Varde told whom and
//! when, what is still queued, and what failed (with what the server said); each message as it
//! was sent, and its tries. With the notifier's configuration (`notify` in the dashboard's
//! configuration), the contacts too, each with a "send test" action that queues a test message
//! for the running notifier to send. Municipality accounts see none of it (403): the outbox
//! names every municipality.

use std::path::PathBuf;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use varde_notify::config::{Contact, ContactEntry, Language, Target, WebhookFormat};
use varde_store::EventStore;
use varde_store::outbox::{Outbox, OutboxEntry, State as Sent};

use crate::alert::hex;
use crate::i18n::t;
use crate::{Account, Dashboard, Role, app_page, format_time, now_us, refusal};

/// The notifier's configuration as the dashboard uses it.
#[derive(Debug, Clone)]
pub struct NotifySetup {
    /// Rendering (the dashboard's address, the sender).
    pub settings: varde_notify::Settings,
    /// The contacts, when there is no file to read them from.
    pub contacts: Vec<Contact>,
    /// The contacts file: read on every page, and edited by admins (the notifier rereads it
    /// when it changes). `None`: `contacts` as given, not editable.
    pub contacts_path: Option<PathBuf>,
}

impl NotifySetup {
    /// The contacts as they are now.
    fn current(&self) -> Result<Vec<Contact>, String> {
        match &self.contacts_path {
            Some(p) => varde_notify::config::load_contacts(p).map_err(|e| e.to_string()),
            None => Ok(self.contacts.clone()),
        }
    }
}

/// Most rows on the outbox page.
pub const LIMIT: u64 = 1000;

/// How far back the outbox page reads.
const DAYS: i64 = 30;

#[derive(Deserialize)]
pub(crate) struct OutboxQuery {
    state: Option<String>,
}

fn state_label(s: Sent) -> (&'static str, &'static str) {
    match s {
        Sent::Queued { tries: 0, .. } => ("queued", t("i kø", "queued")),
        Sent::Queued { .. } => ("retrying", t("prøves igjen", "retrying")),
        Sent::Sent { .. } => ("sent", t("sendt", "sent")),
        Sent::Failed { .. } => ("failed", t("feilet", "failed")),
    }
}

fn cert_only(account: &Account) -> Option<Response> {
    (account.role == Role::Municipality).then(|| {
        tracing::warn!(name = %account.name, "outbox refused: municipality account");
        refusal(
            StatusCode::FORBIDDEN,
            t("Ingen tilgang", "No access"),
            t(
                "Utboksen er for CERT-ets analytikere.",
                "The outbox is for the CERT's analysts.",
            ),
            "/alerts",
            t("Til varslene", "To the alerts"),
        )
    })
}

/// `GET /outbox?state=queued|retrying|sent|failed`.
pub(crate) async fn list<St: EventStore + Outbox + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Query(q): Query<OutboxQuery>,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    if let Some(r) = cert_only(&account) {
        return r;
    }
    let entries = match d
        .inner
        .store
        .outbox(now_us() - DAYS * 86_400_000_000, LIMIT)
        .await
    {
        Ok(e) => e,
        Err(e) => return crate::unavailable("outbox", &e),
    };
    let mut counts = [0usize; 4];
    for e in &entries {
        let i = match state_label(e.state()).0 {
            "queued" => 0,
            "retrying" => 1,
            "sent" => 2,
            _ => 3,
        };
        counts[i] += 1;
    }
    let wanted = q.state.as_deref().filter(|s| !s.is_empty());
    let shown: Vec<&OutboxEntry> = entries
        .iter()
        .filter(|e| wanted.is_none_or(|w| state_label(e.state()).0 == w))
        .collect();
    let contacts = d.inner.settings.notify.as_ref().map(NotifySetup::current);
    let editable = account.role == Role::Admin
        && d.inner
            .settings
            .notify
            .as_ref()
            .is_some_and(|n| n.contacts_path.is_some());
    app_page(
        t("Utboks", "Outbox"),
        &account,
        &csrf,
        html! {
            h1.ds-heading data-size="lg" { (t("Utboks", "Outbox")) }
            p data-outbox-failed=(counts[3]) {
                (t("Siste 30 dager: ", "Last 30 days: "))
                a.ds-link href="/outbox?state=queued" { (counts[0]) " " (t("i kø", "queued")) } ", "
                a.ds-link href="/outbox?state=retrying" { (counts[1]) " " (t("prøves igjen", "retrying")) } ", "
                a.ds-link href="/outbox?state=sent" { (counts[2]) " " (t("sendt", "sent")) } ", "
                a.ds-link href="/outbox?state=failed" { strong { (counts[3]) " " (t("feilet", "failed")) } }
                " · " a.ds-link href="/outbox" { (t("alle", "all")) }
            }
            table.ds-table data-border="" data-zebra="" data-outbox-rows=(shown.len()) {
                caption { (t("Meldinger, nyeste først", "Messages, newest first")) }
                thead { tr {
                    th scope="col" { (t("Lagt i kø (UTC)", "Queued (UTC)")) }
                    th scope="col" { (t("Kontakt", "Contact")) }
                    th scope="col" { (t("Kommune", "Municipality")) }
                    th scope="col" { (t("Hva", "What")) }
                    th scope="col" { "TLP" }
                    th scope="col" { (t("Emne", "Subject")) }
                    th scope="col" { (t("Status", "State")) }
                } }
                tbody {
                    @for e in &shown {
                        @let n = &e.notification;
                        tr {
                            td { (format_time(n.created_us)) }
                            td { (n.contact) br; small { (n.channel.as_str()) ": " (n.target) } }
                            td { (n.tenant) }
                            td { (n.kind) }
                            td { (n.tlp) }
                            td { a.ds-link href=(format!("/outbox/{}", hex(&n.notification_id))) { (n.subject) } }
                            td { (state_cell(e)) }
                        }
                    }
                }
            }
            @match &contacts {
                Some(Ok(c)) => { (contacts_section(&csrf, c, editable)) }
                Some(Err(e)) => { p.ds-paragraph { (t("Kontaktfilen kan ikke leses: ", "The contacts file cannot be read: ")) (e) } }
                None => {}
            }
        },
    )
    .into_response()
}

fn state_cell(e: &OutboxEntry) -> Markup {
    let state = e.state();
    let (key, label) = state_label(state);
    let last = e.attempts.iter().max_by_key(|a| a.attempt);
    html! {
        span data-state=(key) { (label) }
        @if !e.attempts.is_empty() { " (" (e.attempts.len()) " " (t("forsøk", "tries")) ")" }
        @if let Some(a) = last.filter(|a| !a.error.is_empty()) { br; small { (a.error) } }
    }
}

fn contacts_section(csrf: &str, contacts: &[Contact], editable: bool) -> Markup {
    html! {
        h2.ds-heading data-size="md" id="contacts" { (t("Kontakter", "Contacts")) }
        table.ds-table data-border="" data-contacts=(contacts.len()) {
            caption { (t("Fra varslerens kontaktfil", "From the notifier's contacts file")) }
            thead { tr {
                th scope="col" { (t("Navn", "Name")) }
                th scope="col" { (t("Hvor", "Where")) }
                th scope="col" { (t("Hva", "What")) }
                th scope="col" { (t("Test", "Test")) }
            } }
            tbody {
                @for c in contacts {
                    tr {
                        th scope="row" { (c.name) }
                        td { (match &c.target {
                            Target::Email(m) => m.to_string(),
                            Target::Webhook { url, .. } => url.to_string(),
                        }) }
                        td { (varde_notify::run::describe(c)) }
                        td {
                            form method="post" action="/outbox/test" {
                                input type="hidden" name="csrf" value=(csrf);
                                input type="hidden" name="contact" value=(c.name);
                                button.ds-button data-variant="secondary" type="submit" { (t("Send test", "Send test")) }
                            }
                            @if editable {
                                form method="post" action="/outbox/contacts" {
                                    input type="hidden" name="csrf" value=(csrf);
                                    input type="hidden" name="action" value="remove";
                                    input type="hidden" name="name" value=(c.name);
                                    button.ds-button data-variant="tertiary" type="submit" { (t("Fjern", "Remove")) }
                                }
                            }
                        }
                    }
                }
            }
        }
        @if editable { (add_form(csrf)) }
    }
}

/// The admins' form for a new contact.
fn add_form(csrf: &str) -> Markup {
    html! {
        form method="post" action="/outbox/contacts" {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="action" value="add";
            fieldset.ds-fieldset {
                legend { (t("Ny kontakt", "New contact")) }
                label.ds-label for="c-name" { (t("Navn", "Name")) }
                input.ds-input id="c-name" name="name" required maxlength=(varde_notify::config::NAME_MAX);
                label.ds-label for="c-tenant" { (t("Kommunenummer (eller komponent under)", "Kommunenummer (or component below)")) }
                input.ds-input id="c-tenant" name="tenant" maxlength="4" inputmode="numeric";
                label.ds-label for="c-component" { (t("Felleskomponent (for eieren)", "Shared component (for its owner)")) }
                input.ds-input id="c-component" name="component" maxlength="64";
                label.ds-label for="c-email" { (t("E-post (eller webhook under)", "E-mail (or webhook below)")) }
                input.ds-input id="c-email" name="email" type="email" maxlength="320";
                label.ds-label for="c-webhook" { "Webhook (https)" }
                input.ds-input id="c-webhook" name="webhook" type="url" maxlength="2000";
                label.ds-label for="c-format" { (t("Webhook-format", "Webhook format")) }
                select.ds-input id="c-format" name="webhook_format" {
                    option value="varde" { "Varde (signert JSON)" }
                    option value="slack" { "Mattermost / Slack" }
                    option value="teams" { "Microsoft Teams" }
                }
                label.ds-label for="c-secret" { (t("Miljøvariabel med webhook-hemmeligheten", "Environment variable holding the webhook secret")) }
                input.ds-input id="c-secret" name="webhook_secret_env" maxlength="128";
                label.ds-label for="c-alerts" { (t("Varsler fra nivå", "Alerts from level")) }
                select.ds-input id="c-alerts" name="alerts" {
                    @for l in ["critical", "high", "medium", "low", "informational", "none"] {
                        option value=(l) selected[l == "high"] { (l) }
                    }
                }
                label.ds-label for="c-language" { (t("Språk", "Language")) }
                select.ds-input id="c-language" name="language" {
                    option value="nb" { "Norsk bokmål" }
                    option value="en" { "English" }
                }
                label.ds-label for="c-silent" { (t("Stille innsamler etter minutter (0: aldri)", "Silent collector after minutes (0: never)")) }
                input.ds-input id="c-silent" name="collector_silent_min" type="number" min="0" max="10080" value="0";
                div {
                    input.ds-input type="checkbox" id="c-named" name="named" value="true";
                    label.ds-label for="c-named" { (t("Navngitt mottaker (får TLP:AMBER-innhold)", "Named recipient (receives TLP:AMBER content)")) }
                }
                div {
                    input.ds-input type="checkbox" id="c-incidents" name="incidents" value="true" checked;
                    label.ds-label for="c-incidents" { (t("Hendelser", "Incidents")) }
                }
                div {
                    input.ds-input type="checkbox" id="c-campaigns" name="campaigns" value="true" checked;
                    label.ds-label for="c-campaigns" { (t("Kampanjer", "Campaigns")) }
                }
                button.ds-button type="submit" { (t("Legg til", "Add")) }
            }
        }
    }
}

/// Longest form body `POST /outbox/contacts` reads.
const FORM_MAX: usize = 16 * 1024;

/// `POST /outbox/contacts` (admins; `csrf`, `action` = `add` with the contact's fields, or
/// `remove` with `name`): edits the contacts file, after checking the whole new file as the
/// notifier will. A contact that does not check out is refused with the reason; the file is
/// unchanged.
pub(crate) async fn contacts<St: EventStore + Outbox + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let refused = |status: StatusCode, why: String| {
        refusal(
            status,
            t(
                "Kontaktene ble ikke endret",
                "The contacts were not changed",
            ),
            &why,
            "/outbox#contacts",
            t("Til kontaktene", "To the contacts"),
        )
    };
    if body.len() > FORM_MAX {
        return refused(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the form is larger than {FORM_MAX} bytes"),
        );
    }
    let mut form: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    for (k, v) in form_urlencoded::parse(&body) {
        form.insert(k.into_owned(), v.into_owned());
    }
    let field = |k: &str| form.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    if !crate::same_token(&field("csrf"), &csrf) {
        tracing::warn!(name = %account.name, "contact change refused: missing or wrong CSRF token");
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    if account.role != Role::Admin {
        tracing::warn!(name = %account.name, "contact change refused: not an admin");
        return refused(
            StatusCode::FORBIDDEN,
            t(
                "Bare administratorer endrer kontaktene.",
                "Only administrators change the contacts.",
            )
            .into(),
        );
    }
    let Some(path) = d
        .inner
        .settings
        .notify
        .as_ref()
        .and_then(|n| n.contacts_path.clone())
    else {
        return refused(
            StatusCode::NOT_FOUND,
            t(
                "Dashbordet har ingen kontaktfil å endre.",
                "The dashboard has no contacts file to change.",
            )
            .into(),
        );
    };
    let mut entries = match varde_notify::config::read_entries(&path) {
        Ok(e) => e,
        Err(e) => return refused(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    let opt = |k: &str| Some(field(k)).filter(|v| !v.is_empty());
    let name = field("name");
    match field("action").as_str() {
        "add" => {
            let entry = ContactEntry {
                name: form.get("name").cloned().unwrap_or_default(),
                tenant: opt("tenant"),
                component: opt("component"),
                email: form.get("email").cloned().filter(|v| !v.is_empty()),
                webhook: opt("webhook"),
                webhook_format: match field("webhook_format").as_str() {
                    "slack" => WebhookFormat::Slack,
                    "teams" => WebhookFormat::Teams,
                    _ => WebhookFormat::Varde,
                },
                webhook_secret_env: opt("webhook_secret_env"),
                webhook_secret_file: None,
                language: if field("language") == "en" {
                    Language::En
                } else {
                    Language::Nb
                },
                named: field("named") == "true",
                alerts: opt("alerts").unwrap_or_else(|| "high".into()),
                incidents: field("incidents") == "true",
                campaigns: field("campaigns") == "true",
                collector_silent_min: match field("collector_silent_min").as_str() {
                    "" => 0,
                    n => match n.parse() {
                        Ok(n) => n,
                        Err(_) => {
                            return refused(
                                StatusCode::BAD_REQUEST,
                                format!("collector_silent_min {n:?} is not a number of minutes"),
                            );
                        }
                    },
                },
            };
            entries.push(entry);
        }
        "remove" => {
            let before = entries.len();
            entries.retain(|e| e.name != name);
            if entries.len() == before {
                return refused(
                    StatusCode::NOT_FOUND,
                    format!("no contact is named {name:?}"),
                );
            }
        }
        other => {
            return refused(StatusCode::BAD_REQUEST, format!("unknown action {other:?}"));
        }
    }
    if let Err(e) = varde_notify::config::write_contacts(&path, &entries) {
        tracing::warn!(name = %account.name, error = %e, "contact change refused");
        return refused(StatusCode::BAD_REQUEST, e.to_string());
    }
    tracing::info!(name = %account.name, action = %field("action"), contact = %name, "contacts changed");
    Redirect::to("/outbox#contacts").into_response()
}

/// `GET /outbox/{id}`: one message as sent, and its tries.
pub(crate) async fn show<St: EventStore + Outbox + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    if let Some(r) = cert_only(&account) {
        return r;
    }
    let not_found = || {
        refusal(
            StatusCode::NOT_FOUND,
            t("Fant ikke meldingen", "Message not found"),
            t(
                "Ingen melding de siste 30 dagene har denne id-en.",
                "No message of the last 30 days has this id.",
            ),
            "/outbox",
            t("Til utboksen", "To the outbox"),
        )
    };
    let Some(wanted) = varde_core::id::parse_hex16(&id) else {
        return not_found();
    };
    let entries = match d
        .inner
        .store
        .outbox(now_us() - DAYS * 86_400_000_000, LIMIT * 10)
        .await
    {
        Ok(e) => e,
        Err(e) => return crate::unavailable("outbox", &e),
    };
    let Some(e) = entries
        .into_iter()
        .find(|e| e.notification.notification_id == wanted)
    else {
        return not_found();
    };
    let n = &e.notification;
    app_page(
        &n.subject,
        &account,
        &csrf,
        html! {
            p { a.ds-link href="/outbox" { (t("← Utboksen", "← The outbox")) } }
            h1.ds-heading data-size="md" { (n.subject) }
            dl {
                dt { (t("Id (Message-ID / Varde-Delivery)", "Id (Message-ID / Varde-Delivery)")) } dd { code { (hex(&n.notification_id)) } }
                dt { (t("Kontakt", "Contact")) } dd { (n.contact) }
                dt { (t("Til", "To")) } dd { (n.channel.as_str()) ": " (n.target) }
                dt { (t("Kommune", "Municipality")) } dd { (n.tenant) }
                dt { "TLP" } dd { (n.tlp) }
                dt { (t("Lagt i kø (UTC)", "Queued (UTC)")) } dd { (format_time(n.created_us)) }
                dt { (t("Status", "State")) } dd { (state_cell(&e)) }
            }
            h2.ds-heading data-size="sm" { (t("Meldingen", "The message")) }
            pre.varde-message data-message="text" { (n.text) }
            @if !n.payload.is_empty() {
                h2.ds-heading data-size="sm" { (t("Webhook-innholdet", "The webhook body")) }
                pre.varde-message data-message="payload" { (n.payload) }
            }
            h2.ds-heading data-size="sm" { (t("Forsøk", "Tries")) }
            @if e.attempts.is_empty() {
                p { (t("Ikke forsøkt ennå.", "Not tried yet.")) }
            } @else {
                table.ds-table data-border="" data-attempts=(e.attempts.len()) {
                    caption { (t("Hvert forsøk på å sende meldingen", "Every try to send the message")) }
                    thead { tr {
                        th scope="col" { "#" }
                        th scope="col" { (t("Tid (UTC)", "Time (UTC)")) }
                        th scope="col" { (t("Utfall", "Outcome")) }
                        th scope="col" { (t("Svar", "Reply")) }
                        th scope="col" { (t("Neste forsøk (UTC)", "Next try (UTC)")) }
                    } }
                    tbody {
                        @for a in &e.attempts {
                            tr {
                                td { (a.attempt) }
                                td { (format_time(a.at_us)) }
                                td { (a.outcome.as_str()) }
                                td { (a.error) }
                                td { @if a.next_us > 0 { (format_time(a.next_us)) } }
                            }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

/// `POST /outbox/test` (`csrf`, `contact`): queues a test message to the contact.
pub(crate) async fn test<St: EventStore + Outbox + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let (mut form_csrf, mut name) = (String::new(), String::new());
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "csrf" => form_csrf = v.into_owned(),
            "contact" => name = v.into_owned(),
            _ => {}
        }
    }
    if !crate::same_token(&form_csrf, &csrf) {
        tracing::warn!(name = %account.name, "test message refused: missing or wrong CSRF token");
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    if let Some(r) = cert_only(&account) {
        return r;
    }
    let Some(setup) = d.inner.settings.notify.as_ref() else {
        return refusal(
            StatusCode::NOT_FOUND,
            t("Ingen varsler er satt opp", "No notifier is set up"),
            t(
                "Dashbordets konfigurasjon nevner ingen notify.toml.",
                "The dashboard's configuration names no notify.toml.",
            ),
            "/outbox",
            t("Til utboksen", "To the outbox"),
        );
    };
    let contacts = match setup.current() {
        Ok(c) => c,
        Err(e) => {
            return refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                t(
                    "Kontaktfilen kan ikke leses",
                    "The contacts file cannot be read",
                ),
                &e,
                "/outbox",
                t("Til utboksen", "To the outbox"),
            );
        }
    };
    let Some(contact) = contacts.iter().find(|c| c.name == name) else {
        return refusal(
            StatusCode::NOT_FOUND,
            t("Fant ikke kontakten", "Contact not found"),
            t(
                "Ingen kontakt i kontaktfilen har dette navnet.",
                "No contact of the contacts file has this name.",
            ),
            "/outbox",
            t("Til utboksen", "To the outbox"),
        );
    };
    let row = varde_notify::run::test_notification(&setup.settings, contact, now_us());
    if let Err(e) = d
        .inner
        .store
        .write_notifications(std::slice::from_ref(&row))
        .await
    {
        return crate::unavailable("outbox", &e);
    }
    tracing::info!(name = %account.name, contact = %contact.name, "test message queued");
    Redirect::to(&format!("/outbox/{}", hex(&row.notification_id))).into_response()
}
