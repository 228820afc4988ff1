//! Hunting in history: a Sigma rule, pasted, run over the stored events of a time range, as
//! ClickHouse SQL made by `varde_rules::sql` (the same conversion `varde rules sql` prints and
//! CI checks against the engine). Results come a page at a time, or as CSV.
//!
//! The request's text never becomes SQL: the rule is parsed and compiled, and the condition is
//! written by the converter, which quotes every literal. The tenant is the store query's own
//! condition: a municipality account hunts in its own events only.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use varde_core::Kommunenummer;
use varde_rules::RuleSetBuilder;
use varde_rules::compile::Placeholders;
use varde_store::{EventStore, Hunt, StoredEvent};

use crate::alert::value;
use crate::i18n::t;
use crate::{Account, Dashboard, Role, app_page, format_time, now_us, same_token, scope};

/// Events per page.
pub const PAGE: u64 = 100;
/// Most events in one CSV export.
pub const CSV_MAX: u64 = 10_000;
/// Longest rule accepted, in bytes.
pub const RULE_MAX: usize = 64 * 1024;
/// Longest time range, in days.
pub const RANGE_MAX_DAYS: i64 = 366;

const EXAMPLE: &str = "title: Root login with a password
logsource:
  product: linux
  service: sshd
detection:
  selection:
    user: root
    auth_method: password
  condition: selection";

/// What the hunt form sends.
#[derive(Debug, Default)]
struct HuntForm {
    csrf: String,
    rule: String,
    from: String,
    to: String,
    tenant: String,
    offset: u64,
    csv: bool,
}

fn parse_form(body: &[u8]) -> HuntForm {
    let mut f = HuntForm::default();
    for (k, v) in form_urlencoded::parse(body) {
        match &*k {
            "csrf" => f.csrf = v.into_owned(),
            "rule" => f.rule = v.into_owned(),
            "from" => f.from = v.into_owned(),
            "to" => f.to = v.into_owned(),
            "tenant" => f.tenant = v.into_owned(),
            "offset" => f.offset = v.parse().unwrap_or(0),
            "format" => f.csv = v == "csv",
            _ => {}
        }
    }
    f
}

fn day(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map_or_else(String::new, |t| t.format("%Y-%m-%d").to_string())
}

fn form(account: &Account, csrf: &str, f: &HuntForm) -> Markup {
    html! {
        form method="post" action="/hunt" {
            input type="hidden" name="csrf" value=(csrf);
            div.hunt-rule {
                label.ds-label for="hunt-rule" { (t("Sigma-regel", "Sigma rule")) }
                textarea.ds-input id="hunt-rule" name="rule" rows="12" required
                    placeholder=(EXAMPLE) { (f.rule) }
            }
            label.ds-label for="hunt-from" { (t("Fra og med (UTC-dato)", "From (UTC date)")) }
            input.ds-input id="hunt-from" name="from" type="date" required value=(f.from);
            label.ds-label for="hunt-to" { (t("Til og med (UTC-dato)", "Through (UTC date)")) }
            input.ds-input id="hunt-to" name="to" type="date" required value=(f.to);
            @if account.role != Role::Municipality {
                label.ds-label for="hunt-tenant" { (t("Kommunenummer (tomt: alle)", "Municipality number (empty: all)")) }
                input.ds-input id="hunt-tenant" name="tenant" value=(f.tenant) inputmode="numeric" maxlength="4";
            }
            button.ds-button type="submit" name="format" value="html" { (t("Søk", "Search")) }
            button.ds-button data-variant="secondary" type="submit" name="format" value="csv" {
                (t("Last ned CSV", "Download CSV"))
            }
        }
    }
}

/// `GET /hunt`: the form, the last seven days by default.
pub(crate) async fn show<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let now = now_us();
    let f = HuntForm {
        from: day(now - 6 * 86_400_000_000),
        to: day(now),
        ..HuntForm::default()
    };
    page(&account, &csrf, &f, html! {})
}

fn page(account: &Account, csrf: &str, f: &HuntForm, results: Markup) -> Response {
    app_page(
        t("Jakt", "Hunt"),
        account,
        csrf,
        html! {
            h1.ds-heading data-size="lg" { (t("Jakt i lagrede hendelser", "Hunt in stored events")) }
            p { (t(
                "Lim inn en Sigma-regel; den kjøres som SQL over hendelsene i tidsrommet.",
                "Paste a Sigma rule; it runs as SQL over the events of the time range."
            )) }
            (form(account, csrf, f))
            (results)
        },
    )
    .into_response()
}

fn refused(account: &Account, csrf: &str, f: &HuntForm, why: &str) -> Response {
    let mut response = page(
        account,
        csrf,
        f,
        html! { p.ds-alert data-color="danger" role="alert" { (why) } },
    );
    *response.status_mut() = StatusCode::BAD_REQUEST;
    response
}

/// The rule's SQL condition, or why there is none.
fn condition(text: &str) -> Result<String, String> {
    let mut builder = RuleSetBuilder::new(Placeholders::new()).map_err(|e| e.to_string())?;
    builder.add_yaml("hunt", text);
    let set = builder.build().map_err(|e| e.to_string())?;
    if let Some(e) = set.errors().first() {
        return Err(e.reason.clone());
    }
    if set.rules().len() != 1 {
        return Err(t("Lim inn nøyaktig én regel.", "Paste exactly one rule.").to_owned());
    }
    let (expr, atoms, mapping) = set.compiled(0).ok_or_else(|| {
        t(
            "Regelen kunne ikke kompileres.",
            "The rule did not compile.",
        )
        .to_owned()
    })?;
    varde_rules::sql::condition(expr, atoms, mapping).map_err(|e| e.to_string())
}

/// `POST /hunt`: runs the rule (every role; a municipality in its own events only).
pub(crate) async fn run<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let f = parse_form(&body);
    if !same_token(&f.csrf, &csrf) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    let tenant = match scope(&account, Some(f.tenant.trim())) {
        Ok(t) => t,
        Err(_) => {
            return refused(
                &account,
                &csrf,
                &f,
                t("Ugyldig kommunenummer.", "Invalid municipality number."),
            );
        }
    };
    if account.role == Role::Municipality && tenant.is_none() {
        return StatusCode::FORBIDDEN.into_response();
    }
    if f.rule.len() > RULE_MAX {
        return refused(
            &account,
            &csrf,
            &f,
            t("Regelen er for lang.", "The rule is too long."),
        );
    }
    let range = (
        chrono::NaiveDate::parse_from_str(&f.from, "%Y-%m-%d"),
        chrono::NaiveDate::parse_from_str(&f.to, "%Y-%m-%d"),
    );
    let (Ok(from), Ok(to)) = range else {
        return refused(
            &account,
            &csrf,
            &f,
            t("Velg to datoer.", "Choose two dates."),
        );
    };
    let days = (to - from).num_days() + 1;
    if !(1..=RANGE_MAX_DAYS).contains(&days) {
        return refused(
            &account,
            &csrf,
            &f,
            t(
                "Tidsrommet må være fra én dag til ett år, med fra-datoen først.",
                "The range must be one day to a year, the from date first.",
            ),
        );
    }
    let from_us = from
        .and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp_micros());
    let to_us = from_us + days * 86_400_000_000;
    let condition = match condition(&f.rule) {
        Ok(c) => c,
        Err(why) => {
            let message = format!(
                "{}: {why}",
                t("Regelen ble ikke godtatt", "The rule was refused")
            );
            let mut response = page(
                &account,
                &csrf,
                &f,
                html! {
                    p.ds-alert data-color="danger" role="alert" { (message) }
                },
            );
            *response.status_mut() = StatusCode::BAD_REQUEST;
            return response;
        }
    };
    let hunt = Hunt {
        condition,
        from_us,
        to_us,
        limit: if f.csv { CSV_MAX } else { PAGE + 1 },
        offset: if f.csv { 0 } else { f.offset },
    };
    crate::metrics::Counters::add(&d.inner.counters.hunts, 1);
    let events = match d.inner.store.hunt(tenant, &hunt).await {
        Ok(e) => e,
        Err(varde_store::Error::Unsupported(why)) => {
            let mut response = page(
                &account,
                &csrf,
                &f,
                html! {
                    p.ds-alert data-color="warning" role="alert" { (why) }
                },
            );
            *response.status_mut() = StatusCode::NOT_IMPLEMENTED;
            return response;
        }
        Err(e) => return crate::unavailable("hunt", &e),
    };
    tracing::info!(actor = %account.name, tenant = ?tenant.map(|t| t.to_string()), events = events.len(),
        csv = f.csv, "hunt");
    if f.csv {
        return csv(&events);
    }
    let more = events.len() as u64 > PAGE;
    let shown = &events[..events.len().min(PAGE as usize)];
    page(&account, &csrf, &f, results(&csrf, &f, tenant, shown, more))
}

fn results(
    csrf: &str,
    f: &HuntForm,
    tenant: Option<Kommunenummer>,
    events: &[StoredEvent],
    more: bool,
) -> Markup {
    let first = f.offset + 1;
    html! {
        h2.ds-heading data-size="sm" { (t("Treff", "Results")) }
        @if events.is_empty() {
            p data-hunt-results="0" { (t("Ingen hendelser traff regelen i tidsrommet.", "No event in the range matched the rule.")) }
        } @else {
            table.ds-table data-border="" data-zebra="" data-hunt-results=(events.len()) {
                caption {
                    (t("Hendelse ", "Events ")) (first) "–" (f.offset + events.len() as u64)
                    @if let Some(k) = tenant { " (" (k) ")" }
                    (t(", eldste først", ", oldest first"))
                }
                thead { tr {
                    th scope="col" { (t("Tid (UTC)", "Time (UTC)")) }
                    th scope="col" { (t("Kommune", "Municipality")) }
                    th scope="col" { (t("Kilde", "Source")) }
                    th scope="col" { (t("Vert", "Host")) }
                    th scope="col" { (t("Melding", "Message")) }
                } }
                tbody {
                    @for e in events {
                        tr data-event-id=(e.event_id) {
                            td { (format_time(e.event_time_us)) }
                            td { (e.tenant) }
                            td { (e.source_kind) }
                            td { (value(&e.host)) }
                            td { (value(&e.message)) }
                        }
                    }
                }
            }
        }
        @if more {
            form method="post" action="/hunt" {
                input type="hidden" name="csrf" value=(csrf);
                input type="hidden" name="rule" value=(f.rule);
                input type="hidden" name="from" value=(f.from);
                input type="hidden" name="to" value=(f.to);
                input type="hidden" name="tenant" value=(f.tenant);
                input type="hidden" name="offset" value=(f.offset + PAGE);
                button.ds-button data-variant="secondary" type="submit" name="format" value="html" {
                    (t("Neste side", "Next page"))
                }
            }
        }
    }
}

/// The events as CSV (RFC 4180, by the `csv` crate): one row per event, the fields as
/// `key=value` joined by `; `.
fn csv(events: &[StoredEvent]) -> Response {
    let mut out = csv::Writer::from_writer(Vec::new());
    let header = [
        "event_time",
        "tenant",
        "source_kind",
        "host",
        "severity",
        "message",
        "collector_id",
        "batch_seq",
        "batch_row",
        "event_id",
        "fields",
    ];
    let mut rows = vec![out.write_record(header)];
    for e in events {
        let fields: Vec<String> = e.fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        rows.push(out.write_record([
            varde_core::time::format_rfc3339(e.event_time_us),
            e.tenant.clone(),
            e.source_kind.clone(),
            e.host.clone(),
            e.severity.map(|s| s.to_string()).unwrap_or_default(),
            e.message.clone(),
            e.collector_id.clone(),
            e.batch_seq.to_string(),
            e.batch_row.to_string(),
            e.event_id.clone(),
            fields.join("; "),
        ]));
    }
    let body = match (
        rows.into_iter().collect::<Result<Vec<()>, _>>(),
        out.into_inner(),
    ) {
        (Ok(_), Ok(body)) => body,
        _ => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"varde-hunt.csv\"",
            ),
        ],
        body,
    )
        .into_response()
}
