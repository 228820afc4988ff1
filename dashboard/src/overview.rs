//! The overview: alert volume over time per municipality and per shared component, as charts
//! (uPlot, vendored) with the same numbers as tables beside them, so that the page says the
//! same without sight or script. A municipality account sees its own volume only (the tenant is
//! the store query's condition).

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use varde_core::component::ComponentRegistry;
use varde_store::{EventStore, VolumeBy, VolumePoint};

use crate::i18n::t;
use crate::{Dashboard, Role, app_page, assets, format_time, now_us};

/// Series drawn per chart; the rest are summed as one.
pub const TOP: usize = 8;

#[derive(Deserialize)]
pub(crate) struct OverviewQuery {
    days: Option<u32>,
    tenant: Option<String>,
}

/// One chart's data: bucket starts (seconds) and one series per key, totals first.
struct Chart {
    x: Vec<i64>,
    series: Vec<(String, Vec<u64>)>,
}

fn chart(
    points: &[VolumePoint],
    from_s: i64,
    to_s: i64,
    bucket_s: i64,
    label: impl Fn(&str) -> String,
) -> Chart {
    let x: Vec<i64> = (0..)
        .map(|i| from_s + i * bucket_s)
        .take_while(|s| *s < to_s)
        .collect();
    let mut by_key: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for p in points {
        let s = p.bucket_us.div_euclid(1_000_000);
        let Ok(i) = usize::try_from((s - from_s).div_euclid(bucket_s)) else {
            continue;
        };
        if i >= x.len() {
            continue;
        }
        by_key
            .entry(p.key.clone())
            .or_insert_with(|| vec![0; x.len()])[i] += p.alerts;
    }
    let mut series: Vec<(String, Vec<u64>)> = by_key.into_iter().collect();
    series.sort_by(|a, b| {
        b.1.iter()
            .sum::<u64>()
            .cmp(&a.1.iter().sum::<u64>())
            .then_with(|| a.0.cmp(&b.0))
    });
    if series.len() > TOP {
        let rest = series.split_off(TOP - 1);
        let mut others = vec![0; x.len()];
        for (_, values) in &rest {
            for (o, v) in others.iter_mut().zip(values) {
                *o += v;
            }
        }
        series.push((format!("{} ({})", t("andre", "others"), rest.len()), others));
        return Chart {
            x,
            series: series
                .into_iter()
                .enumerate()
                .map(|(i, (k, v))| if i < TOP - 1 { (label(&k), v) } else { (k, v) })
                .collect(),
        };
    }
    Chart {
        x,
        series: series.into_iter().map(|(k, v)| (label(&k), v)).collect(),
    }
}

fn render(id: &str, title: &str, c: &Chart) -> Markup {
    let data = serde_json::json!({
        "x": c.x,
        "series": c.series.iter().map(|(label, values)| serde_json::json!({ "label": label, "values": values })).collect::<Vec<_>>(),
    });
    let total: u64 = c.series.iter().map(|(_, v)| v.iter().sum::<u64>()).sum();
    html! {
        figure.chart-figure {
            figcaption { h2.ds-heading data-size="sm" id=(id) { (title) } }
            @if total == 0 {
                p { (t("Ingen varsler i tidsrommet.", "No alerts in the range.")) }
            } @else {
                div.chart data-chart=(data.to_string()) role="img"
                    aria-label={ (title) ": " (total) (t(" varsler; tallene står i tabellen under.", " alerts; the numbers are in the table below.")) } {}
                table.ds-table data-border="" aria-describedby=(id) data-chart-table=(c.series.len()) {
                    caption { (t("Varsler i tidsrommet, flest først", "Alerts in the range, most first")) }
                    thead { tr {
                        th scope="col" { (t("Hvem", "Who")) }
                        th scope="col" { (t("Varsler", "Alerts")) }
                        th scope="col" { (t("Flest i ett intervall", "Most in one interval")) }
                        th scope="col" { (t("Da (UTC)", "When (UTC)")) }
                    } }
                    tbody {
                        @for (label, values) in &c.series {
                            @let (peak_i, peak) = values.iter().enumerate().max_by_key(|(i, v)| (**v, std::cmp::Reverse(*i))).map_or((0, 0), |(i, v)| (i, *v));
                            tr {
                                th scope="row" { (label) }
                                td { (values.iter().sum::<u64>()) }
                                td { (peak) }
                                td { (c.x.get(peak_i).map_or_else(String::new, |s| format_time(s * 1_000_000))) }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `GET /overview?days=1|7|30&tenant=`: alert volume per municipality and per component.
pub(crate) async fn show<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Query(q): Query<OverviewQuery>,
) -> Response {
    let (account, csrf, tenant) = match d.scoped(&headers, q.tenant.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let days = q.days.unwrap_or(7);
    let bucket_s: i64 = match days {
        1 => 3600,
        7 => 6 * 3600,
        30 => 86_400,
        _ => return (StatusCode::BAD_REQUEST, "days: 1, 7 or 30\n").into_response(),
    };
    // Whole buckets, ending with the one now is in.
    let now_s = now_us().div_euclid(1_000_000);
    let to_s = (now_s.div_euclid(bucket_s) + 1) * bucket_s;
    let from_s = to_s - i64::from(days) * 86_400;
    let store = &d.inner.store;
    let (from_us, to_us) = (from_s * 1_000_000, to_s * 1_000_000);
    let b = u32::try_from(bucket_s).unwrap_or(3600);
    let (by_tenant, by_component) = match (
        store
            .alert_volume(tenant, VolumeBy::Tenant, from_us, to_us, b)
            .await,
        store
            .alert_volume(tenant, VolumeBy::Component, from_us, to_us, b)
            .await,
    ) {
        (Ok(a), Ok(c)) => (a, c),
        (Err(e), _) | (_, Err(e)) => return crate::unavailable("overview", &e),
    };
    let registry = ComponentRegistry::builtin();
    let component_name = |id: &str| -> String {
        if id.is_empty() {
            t("ingen komponent", "no component").to_owned()
        } else {
            registry
                .get(id)
                .map_or_else(|| id.to_owned(), |c| c.name.clone())
        }
    };
    let municipality_name = |k: &str| -> String {
        varde_core::Kommunenummer::parse(k)
            .map_or_else(|_| k.to_owned(), |n| format!("{k} {}", n.name()))
    };
    let tenants = chart(&by_tenant, from_s, to_s, bucket_s, municipality_name);
    let components = chart(&by_component, from_s, to_s, bucket_s, component_name);
    let tenant_param = tenant.map(|k| k.to_string()).unwrap_or_default();
    app_page(
        t("Oversikt", "Overview"),
        &account,
        &csrf,
        html! {
            link rel="stylesheet" href=(assets::UPLOT_CSS_URL);
            h1.ds-heading data-size="lg" { (t("Oversikt", "Overview")) }
            form method="get" action="/overview" {
                @if account.role != Role::Municipality && !tenant_param.is_empty() {
                    input type="hidden" name="tenant" value=(tenant_param);
                }
                label.ds-label for="overview-days" { (t("Tidsrom", "Range")) }
                select.ds-input id="overview-days" name="days" {
                    @for (n, label) in [(1, t("siste døgn", "last day")), (7, t("siste 7 døgn", "last 7 days")), (30, t("siste 30 døgn", "last 30 days"))] {
                        option value=(n) selected[n == days] { (label) }
                    }
                }
                button.ds-button type="submit" { (t("Vis", "Show")) }
            }
            p { (t("Varsler etter når hendelsen skjedde (UTC), fra ", "Alerts by when the event happened (UTC), from ")) (format_time(from_us)) (t(" til ", " to ")) (format_time(to_us)) "." }
            @if account.role != Role::Municipality {
                (render("volume-municipalities", t("Varsler per kommune", "Alerts per municipality"), &tenants))
            }
            (render("volume-components", t("Varsler per felleskomponent", "Alerts per shared component"), &components))
            script src=(assets::UPLOT_JS_URL) defer {}
            script src=(assets::CHARTS_URL) defer {}
        },
    )
    .into_response()
}
