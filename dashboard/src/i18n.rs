//! Norwegian bokmål (the default) and English. Every text of the pages is written as
//! `t("bokmål", "English")`; the language of a request comes from the `varde_lang` cookie
//! (`GET /lang/{nb|en}` sets it) and is held for the request by [`middleware`], so rendering
//! code reads it without passing it around.

use axum::extract::{Path, Query, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

/// A language of the dashboard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Norwegian bokmål.
    Nb,
    /// English.
    En,
}

impl Lang {
    /// The BCP 47 code (`html lang`).
    pub fn code(self) -> &'static str {
        match self {
            Lang::Nb => "nb",
            Lang::En => "en",
        }
    }

    /// The language of a request: its `varde_lang` cookie, else bokmål.
    pub fn of(headers: &HeaderMap) -> Lang {
        match crate::cookie(headers, COOKIE) {
            Some("en") => Lang::En,
            _ => Lang::Nb,
        }
    }
}

const COOKIE: &str = "varde_lang";

tokio::task_local! {
    static LANG: Lang;
    static PATH: String;
}

/// The language of the request being answered (bokmål outside one).
pub fn lang() -> Lang {
    LANG.try_with(|l| *l).unwrap_or(Lang::Nb)
}

/// The text in the request's language.
pub fn t(nb: &'static str, en: &'static str) -> &'static str {
    match lang() {
        Lang::Nb => nb,
        Lang::En => en,
    }
}

/// The path and query of the request being answered (for a way back after switching).
pub fn request_path() -> String {
    PATH.try_with(Clone::clone)
        .unwrap_or_else(|_| "/alerts".to_owned())
}

/// Holds the request's language and path while its handler runs.
pub(crate) async fn middleware(request: Request, next: Next) -> Response {
    let l = Lang::of(request.headers());
    let path = request
        .uri()
        .path_and_query()
        .map_or_else(|| "/alerts".to_owned(), |p| p.as_str().to_owned());
    LANG.scope(l, PATH.scope(path, next.run(request))).await
}

#[derive(Deserialize)]
pub(crate) struct Back {
    back: Option<String>,
}

/// `GET /lang/{nb|en}?back=<path>`: remembers the language (a year) and goes back.
pub(crate) async fn choose(Path(code): Path<String>, Query(q): Query<Back>) -> Response {
    let value = match code.as_str() {
        "nb" | "en" => code,
        _ => return axum::http::StatusCode::NOT_FOUND.into_response(),
    };
    let back = crate::alert::safe_back(q.back.as_deref().unwrap_or("/alerts"));
    let mut response = Redirect::to(back).into_response();
    let cookie = format!("{COOKIE}={value}; Path=/; Max-Age=31536000; SameSite=Lax");
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}
