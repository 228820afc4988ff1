//! `/metrics` and `/health` over HTTP for Varde's long-running processes (the collector and the
//! pipeline): one small server, so each process only says what its two pages contain.
//!
//! The server is hyper's HTTP/1 connection handler: Varde writes no HTTP parser of its own, and
//! neither process pulls in a web framework for two read-only pages. Listen on loopback (or a
//! management network): the pages serve counts, not data, but need no exposure.
//!
//! - `GET /metrics`: [`StatusPages::metrics`], Prometheus text format 0.0.4.
//! - `GET /health`: [`StatusPages::health`]: a status code and a JSON body.
//! - Any other path is `404`, any other method `405`. A connection is closed after 60 s, so a
//!   client that holds one open cannot pin a task forever.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{info, warn};

pub use hyper::StatusCode;

/// What a process shows on its two pages.
pub trait StatusPages: Send + Sync + 'static {
    /// The Prometheus text exposition.
    fn metrics(&self) -> String;
    /// The health answer: `200` while all is well, `503` when an operator should look; a JSON
    /// body saying why.
    fn health(&self) -> (StatusCode, String);
}

/// The answer to one request (public for in-process tests of a process's pages).
pub fn respond<S: StatusPages + ?Sized, B>(pages: &S, req: &Request<B>) -> Response<Full<Bytes>> {
    let (code, content_type, body) = match (req.method().as_str(), req.uri().path()) {
        ("GET" | "HEAD", "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            pages.metrics(),
        ),
        ("GET" | "HEAD", "/health") => {
            let (code, body) = pages.health();
            (code, "application/json", body)
        }
        ("GET" | "HEAD", _) => (
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found: try /metrics or /health\n".to_owned(),
        ),
        _ => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain; charset=utf-8",
            "only GET\n".to_owned(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = code;
    if let Ok(v) = hyper::header::HeaderValue::from_str(content_type) {
        response
            .headers_mut()
            .insert(hyper::header::CONTENT_TYPE, v);
    }
    response
}

/// Serves `/metrics` and `/health` of `pages` on `listener` until `shutdown` turns true.
pub async fn serve<S: StatusPages>(
    listener: TcpListener,
    pages: Arc<S>,
    mut shutdown: watch::Receiver<bool>,
) {
    let local = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    info!(listen = %local, "serving /metrics and /health");
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                warn!(error = %e, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let pages = pages.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let response = respond(pages.as_ref(), &req);
                async move { Ok::<_, Infallible>(response) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
        });
    }
}
