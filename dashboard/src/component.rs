//! One shared component's page (ID-porten, Altinn, ...): what it is, which municipalities its
//! alerts came from in the last week, and the incidents that touch it. A municipality account
//! sees its own part only: every read carries its tenant as the store query's condition.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use varde_core::component::ComponentRegistry;
use varde_store::EventStore;
use varde_store::incident::Incident;

use crate::i18n::t;
use crate::incident::incidents_table;
use crate::municipality::spread_table;
use crate::{Dashboard, Role, app_page, now_us, refusal, unavailable};

/// The path of a component's page.
pub(crate) fn component_url(id: &str) -> String {
    let id: String = form_urlencoded::byte_serialize(id.as_bytes()).collect();
    format!("/components/{id}")
}

/// `GET /components/{id}`.
pub(crate) async fn show<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let registry = ComponentRegistry::builtin();
    let Some(component) = registry.get(&id) else {
        return refusal(
            StatusCode::NOT_FOUND,
            t("Fant ikke komponenten", "Component not found"),
            t(
                "Ingen felleskomponent har denne id-en.",
                "No shared component has this id.",
            ),
            "/overview",
            t("Til oversikten", "To the overview"),
        );
    };
    let scope = match account.role {
        Role::Municipality => match account.tenant {
            Some(k) => Some(k),
            None => return StatusCode::FORBIDDEN.into_response(),
        },
        Role::Admin | Role::Analyst => None,
    };
    let store = &d.inner.store;
    let spread = match store
        .component_spread(scope, &component.id, now_us() - 7 * 86_400_000_000)
        .await
    {
        Ok(s) => s,
        Err(e) => return unavailable("component: spread", &e),
    };
    let incidents: Vec<Incident> = match store.incident_changes(scope, None).await {
        Ok(rows) => Incident::fold(&rows)
            .into_iter()
            .filter(|i| i.components().contains(&component.id))
            .collect(),
        Err(e) => return unavailable("component: incidents", &e),
    };
    let total: u64 = spread.iter().map(|(_, n)| n).sum();
    app_page(
        &component.name,
        &account,
        &csrf,
        html! {
            h1.ds-heading data-size="lg" { (component.name) }
            dl {
                dt { (t("Forvaltes av", "Run by")) } dd { (component.owner) }
                dt { (t("Vertsnavn", "Host names")) } dd { (component.hostnames.join(", ")) }
                dt { (t("Varsler siste 7 døgn", "Alerts, last 7 days")) } dd data-alerts-week=(total) { (total) }
            }
            h2.ds-heading data-size="sm" { (t("Kommuner med varsler mot komponenten", "Municipalities with alerts on the component")) }
            @if spread.is_empty() {
                p { (t("Ingen varsler mot komponenten den siste uken.", "No alerts on the component in the last week.")) }
            } @else {
                (spread_table(&spread, t("Siste 7 døgn, flest først", "Last 7 days, most first"), "component"))
            }
            h2.ds-heading data-size="sm" { (t("Hendelser som berører komponenten", "Incidents that touch the component")) }
            (incidents_table(&incidents.iter().collect::<Vec<_>>()))
        },
    )
    .into_response()
}
