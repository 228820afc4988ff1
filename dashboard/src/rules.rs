//! The rules the pipeline loaded (its catalog in the store): the list with hits per rule and the
//! files that did not load, for the CERT; and one rule's page, with its author credited as the
//! Detection Rule License asks, for anyone who sees an alert of it.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use varde_store::{EventStore, RuleEntry};

use crate::i18n::t;
use crate::{Dashboard, Role, app_page, format_time, page};

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
                    (loaded.len()) (t(" regler lastet", " rules loaded")) ", " (failed.len())
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
                } }
                tbody {
                    @for r in &loaded {
                        tr data-rule-id=(r.rule_id) {
                            td { a.ds-link href=(rule_url(&r.rule_id)) { (r.title) } }
                            td { (r.level) }
                            td { (r.status) }
                            td { (r.kind) }
                            td { (r.author) }
                            td { (hits.get(&r.rule_id).copied().unwrap_or(0)) }
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

/// `GET /rules/{id}`: one rule of the newest load: what it looks for, its credit, its YAML.
/// No municipality data is on it, so every role may read it.
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
    app_page(
        &rule.title,
        &account,
        &csrf,
        html! {
            h1.ds-heading data-size="lg" { (rule.title) }
            (credit(rule))
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
