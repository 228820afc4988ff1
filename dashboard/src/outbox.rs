//! The notification outbox, for the CERT's analysts and admins: what Varde told whom and
//! when, what is still queued, and what failed (with what the server said); each message as it
//! was sent, and its tries. With the notifier's configuration (`notify` in the dashboard's
//! configuration), the contacts too, each with a "send test" action that queues a test message
//! for the running notifier to send. Municipality accounts see none of it (403): the outbox
//! names every municipality.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use varde_notify::config::{Contact, Target};
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
    /// The contacts.
    pub contacts: Vec<Contact>,
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
    let notify = d.inner.settings.notify.as_ref();
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
            @if let Some(n) = notify { (contacts_section(&csrf, &n.contacts)) }
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

fn contacts_section(csrf: &str, contacts: &[Contact]) -> Markup {
    html! {
        h2.ds-heading data-size="md" { (t("Kontakter", "Contacts")) }
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
                        }
                    }
                }
            }
        }
    }
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
    let Some(contact) = setup.contacts.iter().find(|c| c.name == name) else {
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
