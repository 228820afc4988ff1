//! The audit log, for admins: every change analysts made, newest first: triage actions on alert
//! groups, changes to incidents and rules turned off or on, with who, when, and the value before
//! and after. All come from append-only tables, so the log is the record itself, not a copy that
//! could drift.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use varde_store::EventStore;
use varde_store::incident::{Change, Incident};
use varde_store::{TriageAction, TriageKind};

use crate::alert::{action_label, hex, resolution_label};
use crate::i18n::t;
use crate::incident::{severity_label, status_label};
use crate::{Dashboard, Role, app_page, format_time, page};

/// Most entries of each kind read for one page.
pub const LIMIT: u64 = 1000;

#[derive(Deserialize)]
pub(crate) struct AuditQuery {
    actor: Option<String>,
}

/// One line of the log.
struct Entry {
    at_us: i64,
    actor: String,
    what: Markup,
    before: String,
    after: String,
}

fn triage_after(a: &TriageAction) -> String {
    match a.kind {
        TriageKind::Acknowledge => "acknowledged".into(),
        TriageKind::Assign => format!("assigned:{}", a.assignee),
        TriageKind::Resolve => format!(
            "resolved:{}",
            a.resolution.map(|r| r.as_str()).unwrap_or_default()
        ),
        TriageKind::Suppress => format!("suppressed:{}", format_time(a.until_us)),
        TriageKind::Reopen => "new".into(),
    }
}

/// The value a change sets, as the log shows it.
fn value(c: &Change) -> String {
    match c {
        Change::Opened(s)
        | Change::Title(s)
        | Change::Comment(s)
        | Change::Category(s)
        | Change::RootCause(s) => s.clone(),
        Change::UsersAffected(n) => n.map(|n| n.to_string()).unwrap_or_default(),
        Change::Status(s) => status_label(*s).to_owned(),
        Change::Severity(s) => severity_label(*s).to_owned(),
        Change::Tlp(l) => format!("TLP:{}", l.as_str()),
        Change::AwareAt(us) => format!("{} UTC", format_time(*us)),
        Change::LinkGroup {
            tenant, rule_title, ..
        } => format!("{rule_title} ({tenant})"),
        Change::Municipalities(m) | Change::Components(m) => m.join(", "),
    }
}

fn field_label(c: &Change) -> &'static str {
    match c {
        Change::Opened(_) => t("opprettet", "opened"),
        Change::Title(_) => t("tittel", "title"),
        Change::Status(_) => t("status", "status"),
        Change::Severity(_) => t("alvorlighet", "severity"),
        Change::Tlp(_) => t("deling", "sharing"),
        Change::AwareAt(_) => t("kjent fra", "known since"),
        Change::LinkGroup { .. } => t("varselgruppe koblet", "alert group linked"),
        Change::Municipalities(_) => t("andre kommuner", "further municipalities"),
        Change::Components(_) => t("andre komponenter", "further components"),
        Change::Comment(_) => t("kommentar", "comment"),
        Change::Category(_) => t("klassifisering (RSIT)", "classification (RSIT)"),
        Change::RootCause(_) => t("grunnårsak", "root cause"),
        Change::UsersAffected(_) => t("berørte brukere", "users affected"),
    }
}

/// `GET /audit?actor=<name>`: the log, for admins only.
pub(crate) async fn show<
    St: EventStore
        + varde_store::reports::ReportLog
        + varde_store::collectors::Collectors
        + Send
        + Sync
        + 'static,
>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Query(q): Query<AuditQuery>,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    if account.role != Role::Admin {
        tracing::warn!(name = %account.name, "audit log refused: not an admin");
        return (
            StatusCode::FORBIDDEN,
            page(
                t("Ingen tilgang", "No access"),
                html! { p { (t("Revisjonsloggen er for administratorer.", "The audit log is for administrators.")) } },
            ),
        )
            .into_response();
    }
    let store = &d.inner.store;
    let (triage, changes, switches) = match (
        store.triage_log(LIMIT).await,
        store.incident_changes(None, None).await,
        store.rule_switches().await,
    ) {
        (Ok(a), Ok(c), Ok(s)) => (a, c, s),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return crate::unavailable("audit log", &e);
        }
    };
    let (exports, reports) = match (store.exports(LIMIT).await, store.reports(None).await) {
        (Ok(x), Ok(r)) => (x, r),
        (Err(e), _) | (_, Err(e)) => return crate::unavailable("audit log", &e),
    };
    let mut entries: Vec<Entry> = triage
        .iter()
        .map(|a| Entry {
            at_us: a.at_us,
            actor: a.actor.clone(),
            what: html! {
                (action_label(a.kind)) " – " (t("gruppe", "group")) " " code { (hex(&a.dedup_key)) }
                " (" (a.tenant) ")"
                @if let Some(r) = a.resolution { ": " (resolution_label(r)) }
                @if !a.reason.is_empty() { " «" (a.reason) "»" }
            },
            before: a.before.clone(),
            after: triage_after(a),
        })
        .collect();
    let titles: HashMap<[u8; 16], String> = Incident::fold(&changes)
        .into_iter()
        .map(|i| (i.incident_id, i.title))
        .collect();
    let mut ordered: Vec<_> = changes.iter().collect();
    ordered.sort_by_key(|c| (c.at_us, c.change_id));
    let mut last: HashMap<([u8; 16], &'static str), String> = HashMap::new();
    for c in ordered {
        let after = value(&c.change);
        let field = c.change.field();
        let before = match c.change {
            // Each link and comment stands alone.
            Change::LinkGroup { .. } | Change::Comment(_) | Change::Opened(_) => String::new(),
            _ => last
                .get(&(c.incident_id, field))
                .cloned()
                .unwrap_or_default(),
        };
        last.insert((c.incident_id, field), after.clone());
        let id = hex(&c.incident_id);
        let title = titles.get(&c.incident_id).cloned().unwrap_or_default();
        entries.push(Entry {
            at_us: c.at_us,
            actor: c.actor.clone(),
            what: html! {
                (t("Hendelse", "Incident")) " " a.ds-link href={ "/incidents/" (id) } { (title) }
                ": " (field_label(&c.change))
            },
            before,
            after,
        });
    }
    // Switches come oldest first: each one's before is the rule's previous state (on, when none).
    let mut state: HashMap<&str, bool> = HashMap::new();
    for s in &switches {
        let before = state.insert(s.rule_id.as_str(), s.enabled).unwrap_or(true);
        entries.push(Entry {
            at_us: s.at_us,
            actor: s.actor.clone(),
            what: html! {
                (t("Regel", "Rule")) " " a.ds-link href=(crate::rules::rule_url(&s.rule_id)) { code { (s.rule_id) } }
                " «" (s.reason) "»"
            },
            before: if before { "on" } else { "off" }.into(),
            after: if s.enabled { "on" } else { "off" }.into(),
        });
    }
    // Exports and submitted reports: what left Varde, and what was reported, by whom.
    for x in &exports {
        let id = hex(&x.incident_id);
        entries.push(Entry {
            at_us: x.at_us,
            actor: x.actor.clone(),
            what: html! {
                @if x.incident_id == [0; 16] {
                    (t("Eksport: ", "Export: ")) (x.stage) ", " (x.format)
                } @else {
                    (t("Eksport av hendelse", "Export of incident")) " " a.ds-link href={ "/incidents/" (id) } { code { (id) } }
                    ": " (x.stage) ", " (x.format)
                    @if !x.tenant.is_empty() { " (" (x.tenant) ")" }
                }
            },
            before: String::new(),
            after: x.format.clone(),
        });
    }
    for r in &reports {
        let id = hex(&r.incident_id);
        entries.push(Entry {
            at_us: r.at_us,
            actor: r.actor.clone(),
            what: html! {
                (t("Rapport registrert for hendelse", "Report recorded for incident")) " " a.ds-link href={ "/incidents/" (id) } { code { (id) } }
                ": " (r.stage)
            },
            before: String::new(),
            after: format!("v{}", r.version),
        });
    }
    // Collector identity: enrolments, rotations, revocations, and the tokens behind them.
    let (identity, tokens) = match (store.identity_log().await, store.tokens(None).await) {
        (Ok(i), Ok(t)) => (i, t),
        (Err(e), _) | (_, Err(e)) => return crate::unavailable("audit log", &e),
    };
    for r in &identity {
        use varde_store::collectors::IdentityAction;
        let (what, after) = match r.action {
            IdentityAction::KeyAdded => (t("nøkkel lagt til", "key added"), r.key_id.clone()),
            IdentityAction::KeyExpires => (
                t("nøkkel utløper", "key expires"),
                format!("{} {}", r.key_id, format_time(r.until_us)),
            ),
            IdentityAction::Revoked => (
                t("tilbakekalt", "revoked"),
                if r.key_id.is_empty() {
                    t("alle nøkler", "every key").to_owned()
                } else {
                    r.key_id.clone()
                },
            ),
        };
        entries.push(Entry {
            at_us: r.at_us,
            actor: r.actor.clone(),
            what: html! {
                (t("Innsamler", "Collector")) " " code { (r.collector_id) } " (" (r.tenant) "): " (what)
                @if !r.reason.is_empty() { " «" (r.reason) "»" }
            },
            before: String::new(),
            after,
        });
    }
    for r in &tokens {
        use varde_store::collectors::TokenAction;
        entries.push(Entry {
            at_us: r.at_us,
            actor: r.actor.clone(),
            what: html! {
                (t("Innrulleringsnøkkel", "Enrolment token")) " " code { (r.token_id) }
                " (" (r.tenant) ", «" (r.name) "»)"
            },
            before: String::new(),
            after: match r.action {
                TokenAction::Issued => format!("issued, expires {}", format_time(r.expires_us)),
                TokenAction::Used => format!("used by {}", r.collector_id),
            },
        });
    }
    let actor = q.actor.as_deref().filter(|a| !a.is_empty());
    entries.retain(|e| actor.is_none_or(|a| e.actor == a));
    entries.sort_by_key(|e| std::cmp::Reverse(e.at_us));
    entries.truncate(usize::try_from(LIMIT).unwrap_or(usize::MAX));
    app_page(
        t("Revisjonslogg", "Audit log"),
        &account,
        &csrf,
        html! {
            h1.ds-heading data-size="lg" { (t("Revisjonslogg", "Audit log")) }
            form method="get" action="/audit" {
                label.ds-label for="audit-actor" { (t("Hvem", "Who")) }
                input.ds-input id="audit-actor" name="actor" value=(actor.unwrap_or_default());
                button.ds-button type="submit" { (t("Vis", "Show")) }
            }
            table.ds-table data-border="" data-zebra="" {
                caption { (entries.len()) (t(" endringer, nyeste først", " changes, newest first")) }
                thead { tr {
                    th scope="col" { (t("Tid (UTC)", "Time (UTC)")) }
                    th scope="col" { (t("Hvem", "Who")) }
                    th scope="col" { (t("Hva", "What")) }
                    th scope="col" { (t("Før", "Before")) }
                    th scope="col" { (t("Etter", "After")) }
                } }
                tbody {
                    @for e in &entries {
                        tr {
                            td { (format_time(e.at_us)) }
                            td { (e.actor) }
                            td { (e.what) }
                            td { (e.before) }
                            td { (e.after) }
                        }
                    }
                }
            }
        },
    )
    .into_response()
}
