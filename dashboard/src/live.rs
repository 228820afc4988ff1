//! The live queue: `GET /alerts/stream` tells an open queue page, over server-sent events, how
//! many alerts detection has added since the page was made, so the analyst sees them arrive
//! without the page changing under their hands (selections and focus stay; `live.js` shows a
//! notice in a polite live region with a link that loads them).

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream};
use serde::Deserialize;
use varde_store::EventStore;

use crate::Dashboard;

/// How often the stream asks the store.
pub const POLL: Duration = Duration::from_secs(2);

#[derive(Deserialize)]
pub(crate) struct StreamQuery {
    /// When the page was made, µs since the epoch.
    since: i64,
    tenant: Option<String>,
}

/// `GET /alerts/stream?since=<µs>&tenant=<kommunenummer>`: an `alerts` event with
/// `{"new": n}` whenever the number of alerts detected after `since` (in the account's scope)
/// changes; it ends when the session does.
pub(crate) async fn stream<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Query(q): Query<StreamQuery>,
) -> Response {
    let (_, _, tenant) = match d.scoped(&headers, q.tenant.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let events = updates(d, headers, tenant, q.since);
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

fn updates<St: EventStore + Send + Sync + 'static>(
    d: Dashboard<St>,
    headers: HeaderMap,
    tenant: Option<varde_core::Kommunenummer>,
    since: i64,
) -> impl Stream<Item = Result<Event, Infallible>> {
    // State: the count last sent (None before the first), and whether to wait before asking.
    stream::unfold((None::<u64>, false), move |(last, wait)| {
        let d = d.clone();
        let headers = headers.clone();
        async move {
            let mut wait = wait;
            loop {
                if wait {
                    tokio::time::sleep(POLL).await;
                }
                wait = true;
                // A session that ended (logout, idle) ends the stream.
                d.session(&headers)?;
                match d.inner.store.alerts_detected_after(tenant, since).await {
                    Ok(n) if Some(n) != last => {
                        let event = Event::default()
                            .event("alerts")
                            .data(format!("{{\"new\":{n}}}"));
                        return Some((Ok(event), (Some(n), true)));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "live queue: the store failed; trying again")
                    }
                }
            }
        }
    })
}
