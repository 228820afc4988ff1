//! The rules the pipeline loaded (its catalog in the store): the list with hits per rule, which
//! are turned off, and the files that did not load, for the CERT; one rule's page, with its author
//! credited as the Detection Rule License asks, for anyone who sees an alert of it; and turning
//! a rule off and on again, for analysts, kept as append-only switches the pipeline reads.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use varde_store::{EventStore, RuleEntry, RuleSwitch, disabled_rules};

use crate::alert::REASON_MAX;
use crate::i18n::t;
use crate::{Dashboard, Role, app_page, format_time, now_us, page, random_hex, refusal};

/// The path of a rule's page.
pub(crate) fn rule_url(rule_id: &str) -> String {
    let id: String = form_urlencoded::byte_serialize(rule_id.as_bytes()).collect();
    format!("/rules/{id}")
}

/// The author's credit, as the Detection Rule License (SigmaHQ's rules) asks for it.
pub(crate) fn credit(rule: &RuleEntry) -> Markup {
    html! {
        p.rule-credit {
            @if rule.author.is_empty() {
                (t("Regelen oppgir ingen forfatter.", "The rule names no author."))
            } @else {
                (t("Regel skrevet av ", "Rule written by ")) strong { (rule.author) } ". "
            }
            (t(
                "Regler fra SigmaHQ er lisensiert under Detection Rule License (DRL) 1.1, som krever at forfatteren krediteres.",
                "Rules from SigmaHQ are licensed under the Detection Rule License (DRL) 1.1, which asks that the author be credited."
            ))
        }
    }
}

/// `GET /rules`: the catalog of the newest load, with hits per rule (analysts and admins).
pub(crate) async fn list<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    if account.role == Role::Municipality {
        return (
            StatusCode::FORBIDDEN,
            page(
                t("Ingen tilgang", "No access"),
                html! { p { (t("Regeloversikten er for CERT.", "The rule overview is for the CERT.")) } },
            ),
        )
            .into_response();
    }
    let store = &d.inner.store;
    let (at, entries) = match store.rules().await {
        Ok(r) => r,
        Err(e) => return crate::unavailable("rules", &e),
    };
    let mut hits: HashMap<String, u64> = HashMap::new();
    match store.alert_counts().await {
        Ok(counts) => {
            for c in counts {
                *hits.entry(c.rule_id).or_default() += c.alerts;
            }
        }
        Err(e) => return crate::unavailable("rules", &e),
    }
    let off = match store.rule_switches().await {
        Ok(switches) => disabled_rules(&switches),
        Err(e) => return crate::unavailable("rule switches", &e),
    };
    let (loaded, failed): (Vec<&RuleEntry>, Vec<&RuleEntry>) =
        entries.iter().partition(|e| e.error.is_empty());
    let mut loaded = loaded;
    loaded.sort_by(|a, b| {
        let (ha, hb) = (hits.get(&a.rule_id), hits.get(&b.rule_id));
        hb.cmp(&ha).then_with(|| a.title.cmp(&b.title))
    });
    app_page(
        t("Regler", "Rules"),
        &account,
        &csrf,
        html! {
            h1.ds-heading data-size="lg" { (t("Regler", "Rules")) }
            @match at {
                None => p { (t("Ingen pipeline har skrevet regelkatalogen ennå.", "No pipeline has written the rule catalog yet.")) }
                Some(at) => p {
                    (loaded.len()) (t(" regler lastet", " rules loaded")) ", "
                    (loaded.iter().filter(|r| off.contains(&r.rule_id)).count())
                    (t(" slått av, ", " turned off, ")) (failed.len())
                    (t(" filer ble ikke lastet; sist lastet ", " files did not load; last loaded "))
                    (format_time(at)) " UTC."
                }
            }
            table.ds-table data-border="" data-zebra="" data-rules=(loaded.len()) {
                caption { (t("Lastede regler, flest treff først", "Loaded rules, most hits first")) }
                thead { tr {
                    th scope="col" { (t("Regel", "Rule")) }
                    th scope="col" { (t("Nivå", "Level")) }
                    th scope="col" { (t("Status", "Status")) }
                    th scope="col" { (t("Kilde", "Source")) }
                    th scope="col" { (t("Forfatter", "Author")) }
                    th scope="col" { (t("Varsler", "Alerts")) }
                    th scope="col" { (t("I bruk", "In use")) }
                } }
                tbody {
                    @for r in &loaded {
                        @let is_off = off.contains(&r.rule_id);
                        tr data-rule-id=(r.rule_id) data-off[is_off] {
                            td { a.ds-link href=(rule_url(&r.rule_id)) { (r.title) } }
                            td { (r.level) }
                            td { (r.status) }
                            td { (r.kind) }
                            td { (r.author) }
                            td { (hits.get(&r.rule_id).copied().unwrap_or(0)) }
                            td { (on_off(!is_off)) }
                        }
                    }
                }
            }
            @if !failed.is_empty() {
                h2.ds-heading data-size="sm" { (t("Filer som ikke ble lastet", "Files that did not load")) }
                table.ds-table data-border="" data-load-errors=(failed.len()) {
                    caption { (t("Hvorfor, per fil", "Why, per file")) }
                    thead { tr {
                        th scope="col" { (t("Fil", "File")) }
                        th scope="col" { (t("Regel", "Rule")) }
                        th scope="col" { (t("Grunn", "Reason")) }
                    } }
                    tbody {
                        @for r in &failed {
                            tr { td { code { (r.source) } } td { (r.title) } td { (r.error) } }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}

fn on_off(on: bool) -> &'static str {
    if on {
        t("på", "on")
    } else {
        t("slått av", "turned off")
    }
}

/// Whether the rule is on, and for analysts and admins its switches and the form to switch it.
fn switch_section(rule_id: &str, own: &[&RuleSwitch], csrf: &str) -> Markup {
    let on = own.last().is_none_or(|s| s.enabled);
    html! {
        h2.ds-heading data-size="sm" { (t("I bruk", "In use")) }
        p data-rule-state=(if on { "on" } else { "off" }) {
            @if on {
                (t("Regelen er på: pipelinen melder varsler fra den.", "The rule is on: the pipeline raises its alerts."))
            } @else {
                (t("Regelen er slått av: hendelsene lagres, men pipelinen melder ikke varsler fra den.",
                   "The rule is turned off: events are stored, but the pipeline raises no alerts of it."))
            }
        }
        form method="post" action={ (rule_url(rule_id)) "/switch" } {
            input type="hidden" name="csrf" value=(csrf);
            input type="hidden" name="enabled" value=(if on { "false" } else { "true" });
            label.ds-label for="switch-reason" { (t("Begrunnelse", "Reason")) }
            input.ds-input id="switch-reason" name="reason" required maxlength=(REASON_MAX);
            button.ds-button type="submit" {
                @if on { (t("Slå av regelen", "Turn the rule off")) } @else { (t("Slå på regelen", "Turn the rule on")) }
            }
        }
        @if !own.is_empty() {
            table.ds-table data-border="" data-switches=(own.len()) {
                caption { (t("Endringer, eldste først", "Switches, oldest first")) }
                thead { tr {
                    th scope="col" { (t("Tid (UTC)", "Time (UTC)")) }
                    th scope="col" { (t("Hvem", "Who")) }
                    th scope="col" { (t("Til", "To")) }
                    th scope="col" { (t("Begrunnelse", "Reason")) }
                } }
                tbody {
                    @for s in own {
                        tr { td { (format_time(s.at_us)) } td { (s.actor) } td { (on_off(s.enabled)) } td { (s.reason) } }
                    }
                }
            }
        }
    }
}

/// `GET /rules/{id}`: one rule of the newest load: what it looks for, its credit, its YAML.
/// No municipality data is on it, so every role may read it; whether it is on, who switched it
/// and the switch are for analysts and admins.
pub(crate) async fn show<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let found = match d.inner.store.rule(&id).await {
        Ok(r) => r,
        Err(e) => return crate::unavailable("rules", &e),
    };
    let Some(rule) = found.as_ref() else {
        return (
            StatusCode::NOT_FOUND,
            page(
                t("Fant ikke regelen", "Rule not found"),
                html! { p { (t("Regelen er ikke blant de lastede.", "The rule is not among those loaded.")) } },
            ),
        )
            .into_response();
    };
    let switches = if account.role == Role::Municipality {
        Vec::new()
    } else {
        match d.inner.store.rule_switches().await {
            Ok(s) => s,
            Err(e) => return crate::unavailable("rule switches", &e),
        }
    };
    let own: Vec<&RuleSwitch> = switches
        .iter()
        .filter(|s| s.rule_id == rule.rule_id)
        .collect();
    app_page(
        &rule.title,
        &account,
        &csrf,
        html! {
            h1.ds-heading data-size="lg" { (rule.title) }
            (credit(rule))
            @if account.role != Role::Municipality { (switch_section(&rule.rule_id, &own, &csrf)) }
            @if !rule.description.is_empty() { p { (rule.description) } }
            dl {
                dt { (t("Regel-id", "Rule id")) } dd { code { (rule.rule_id) } }
                dt { (t("Nivå", "Level")) } dd { (rule.level) }
                dt { (t("Status", "Status")) } dd { (rule.status) }
                dt { (t("Kilde", "Source")) } dd { (rule.kind) }
                dt { (t("Tagger", "Tags")) } dd { (rule.tags.join(", ")) }
                dt { (t("Fil", "File")) } dd { code { (rule.source) } }
            }
            @if !rule.falsepositives.is_empty() {
                h2.ds-heading data-size="sm" { (t("Kjente falske positive", "Known false positives")) }
                ul { @for f in &rule.falsepositives { li { (f) } } }
            }
            @if !rule.references.is_empty() {
                h2.ds-heading data-size="sm" { (t("Referanser", "References")) }
                // Shown as text, not links: they come from rule files, not from the CERT.
                ul { @for r in &rule.references { li { code { (r) } } } }
            }
            @if !rule.text.is_empty() {
                h2.ds-heading data-size="sm" { (t("Regelen", "The rule")) }
                pre.rule-text tabindex="0" aria-label=(t("Regelens YAML", "The rule's YAML")) { code { (rule.text) } }
            }
        },
    )
    .into_response()
}

fn switch_refused(status: StatusCode, message: &str, rule_id: &str) -> Response {
    refusal(
        status,
        t("Regelen ble ikke endret", "The rule was not changed"),
        message,
        &rule_url(rule_id),
        t("Tilbake til regelen", "Back to the rule"),
    )
}

/// `POST /rules/{id}/switch`: an analyst or admin turns a loaded rule off or on again, with a
/// reason; kept as one append-only row (the audit log shows it), read by the pipeline within
/// its `rule_switch_interval_s`.
pub(crate) async fn switch<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let (mut form_csrf, mut enabled, mut reason) = (String::new(), None, String::new());
    for (k, v) in form_urlencoded::parse(&body) {
        match &*k {
            "csrf" => form_csrf = v.into_owned(),
            "enabled" => {
                enabled = match &*v {
                    "true" => Some(true),
                    "false" => Some(false),
                    _ => None,
                }
            }
            "reason" => reason = v.trim().to_owned(),
            _ => {}
        }
    }
    if !crate::same_token(&form_csrf, &csrf) {
        tracing::warn!(name = %account.name, "rule switch refused: missing or wrong CSRF token");
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    if account.role == Role::Municipality {
        tracing::warn!(name = %account.name, "rule switch refused: municipality account");
        return switch_refused(
            StatusCode::FORBIDDEN,
            t(
                "Bare CERT-ets analytikere slår regler av og på.",
                "Only the CERT's analysts turn rules off and on.",
            ),
            &id,
        );
    }
    let Some(enabled) = enabled else {
        return switch_refused(
            StatusCode::BAD_REQUEST,
            t("Velg av eller på.", "Choose off or on."),
            &id,
        );
    };
    if reason.is_empty() || reason.chars().count() > REASON_MAX {
        return switch_refused(
            StatusCode::BAD_REQUEST,
            t(
                "En endring må ha en begrunnelse på høyst 2000 tegn.",
                "A switch needs a reason of at most 2000 characters.",
            ),
            &id,
        );
    }
    let store = &d.inner.store;
    match store.rule(&id).await {
        Ok(Some(_)) => {}
        Ok(None) => {
            return refusal(
                StatusCode::NOT_FOUND,
                t("Regelen ble ikke endret", "The rule was not changed"),
                t(
                    "Regelen er ikke blant de lastede.",
                    "The rule is not among those loaded.",
                ),
                "/rules",
                t("Til regeloversikten", "To the rules"),
            );
        }
        Err(e) => return crate::unavailable("rules", &e),
    }
    let Some(switch_id) = random_hex::<16>().and_then(|h| varde_core::id::parse_hex16(&h)) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let row = RuleSwitch {
        switch_id,
        at_us: now_us(),
        rule_id: id.clone(),
        enabled,
        actor: account.name.clone(),
        reason,
    };
    if let Err(e) = store.write_rule_switches(std::slice::from_ref(&row)).await {
        return crate::unavailable("write rule switch", &e);
    }
    tracing::info!(actor = %row.actor, rule = %row.rule_id, enabled, "rule switched");
    Redirect::to(&rule_url(&id)).into_response()
}
