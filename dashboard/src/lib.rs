//! # varde-dashboard: the web face of Varde
//!
//! Server-rendered pages on axum, reading through varde-store. This first slice: local accounts
//! (argon2id hashes in an accounts file), sessions, the three roles and the **alert queue**,
//! with tenant isolation enforced in the store query: a municipality account's queries always
//! carry its own kommunenummer, whatever the request says.
//!
//! - `GET /login`, `POST /login` (form `name`, `password`): a session cookie (`HttpOnly`,
//!   `SameSite=Strict`, `Secure` unless turned off for loopback), 303 to `/alerts`; a wrong name
//!   or password is the same 401 either way; after 5 failures of one name within 15 minutes that
//!   name gets 429 until the window has passed.
//! - `GET /alerts?tenant=<kommunenummer>`: the alert queue, grouped by dedup key (count, first
//!   and last seen, most recent group first); analysts and admins see every municipality or the
//!   one asked for; a municipality account sees its own only.
//! - `POST /logout`; `GET /health`.
#![deny(missing_docs)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};
use axum::Router;
use axum::extract::{Form, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};
use serde::Deserialize;
use varde_core::Kommunenummer;
use varde_store::{Alert, AlertQuery, EventStore};

/// What an account may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything, including accounts and the audit log.
    Admin,
    /// The CERT's analysts: every municipality's alerts.
    Analyst,
    /// A municipality's staff: their own municipality only.
    Municipality,
}

/// One local account, as the accounts file holds it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Account {
    /// Login name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// The municipality of a `municipality` account (required for that role, refused for the
    /// others).
    #[serde(default)]
    pub tenant: Option<Kommunenummer>,
    /// argon2id PHC string (`varde admin hash-password`).
    pub password_hash: String,
}

/// Why the accounts file was refused.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct AccountsError {
    /// The file.
    pub path: PathBuf,
    /// What and where.
    pub message: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountsFile {
    #[serde(default, rename = "account")]
    accounts: Vec<Account>,
}

/// Parses an accounts file (`[[account]]` tables) and checks every account.
pub fn load_accounts(path: &Path) -> Result<Vec<Account>, AccountsError> {
    let err = |message: String| AccountsError {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let file: AccountsFile = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    for a in &file.accounts {
        if !seen.insert(a.name.as_str()) {
            return Err(err(format!("account {} twice", a.name)));
        }
        match (a.role, a.tenant) {
            (Role::Municipality, None) => {
                return Err(err(format!(
                    "account {}: a municipality account needs `tenant`",
                    a.name
                )));
            }
            (Role::Admin | Role::Analyst, Some(_)) => {
                return Err(err(format!(
                    "account {}: only municipality accounts have a `tenant`",
                    a.name
                )));
            }
            _ => {}
        }
        PasswordHash::new(&a.password_hash)
            .map_err(|e| err(format!("account {}: password_hash: {e}", a.name)))?;
    }
    Ok(file.accounts)
}

/// An argon2id hash of `password` with a random salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| e.to_string())?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// `varde dashboard --config <file>`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DashboardConfig {
    /// Address to serve on, e.g. `127.0.0.1:8080` (put TLS in front when it is not loopback).
    pub listen: std::net::SocketAddr,
    /// The accounts file (`[[account]]` tables: `name`, `role`, `tenant`, `password_hash`).
    pub accounts: PathBuf,
    /// Mark the session cookie `Secure` (default true; turn off only for plain HTTP on
    /// loopback).
    #[serde(default = "default_true")]
    pub secure_cookies: bool,
    /// ClickHouse.
    pub clickhouse: varde_store::clickhouse::ClickHouseSettings,
}

fn default_true() -> bool {
    true
}

impl DashboardConfig {
    /// Reads a configuration file (unknown keys are errors, with line and column).
    pub fn load(path: &Path) -> Result<Self, AccountsError> {
        let text = std::fs::read_to_string(path).map_err(|e| AccountsError {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        toml::from_str(&text).map_err(|e| AccountsError {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
    }
}

/// How the dashboard runs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Mark the session cookie `Secure` (leave on unless serving plain HTTP on loopback).
    pub secure_cookies: bool,
    /// A session ends after this long without a request.
    pub session_idle: Duration,
    /// Most alerts on one page.
    pub page_size: u64,
    /// Failed logins of one name within `login_window` after which that name is refused (429)
    /// until the window has passed.
    pub login_attempts: usize,
    /// See `login_attempts`.
    pub login_window: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            secure_cookies: true,
            session_idle: Duration::from_secs(8 * 3600),
            page_size: 500,
            login_attempts: 5,
            login_window: Duration::from_secs(15 * 60),
        }
    }
}

#[derive(Debug, Clone)]
struct Session {
    account: usize,
    last_seen: Instant,
}

struct Inner<St> {
    store: St,
    accounts: Vec<Account>,
    /// A hash of a random password, verified against when the name is unknown, so that a wrong
    /// name costs as much time as a wrong password.
    dummy_hash: String,
    sessions: Mutex<HashMap<String, Session>>,
    /// Failed logins per name within the window.
    failures: Mutex<HashMap<String, Vec<Instant>>>,
    settings: Settings,
}

/// The dashboard's state, shared by every request.
pub struct Dashboard<St> {
    inner: Arc<Inner<St>>,
}

impl<St> Clone for Dashboard<St> {
    fn clone(&self) -> Self {
        Dashboard {
            inner: self.inner.clone(),
        }
    }
}

const COOKIE: &str = "varde_session";

impl<St: EventStore + Send + Sync + 'static> Dashboard<St> {
    /// A dashboard over `store` with `accounts`.
    pub fn new(store: St, accounts: Vec<Account>, settings: Settings) -> Self {
        Dashboard {
            inner: Arc::new(Inner {
                store,
                accounts,
                dummy_hash: hash_password("not an account").unwrap_or_default(),
                sessions: Mutex::new(HashMap::new()),
                failures: Mutex::new(HashMap::new()),
                settings,
            }),
        }
    }

    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(|| async { Redirect::to("/alerts") }))
            .route("/login", get(login_page).post(login::<St>))
            .route("/logout", post(logout::<St>))
            .route("/alerts", get(alert_queue::<St>))
            .route("/health", get(|| async { "ok\n" }))
            .with_state(self)
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The account of the request's session, if it has a live one.
    fn account(&self, headers: &HeaderMap) -> Option<&Account> {
        let token = session_token(headers)?;
        let mut sessions = self.sessions();
        let idle = self.inner.settings.session_idle;
        sessions.retain(|_, s| s.last_seen.elapsed() < idle);
        let s = sessions.get_mut(&token)?;
        s.last_seen = Instant::now();
        self.inner.accounts.get(s.account)
    }
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

fn page(title: &str, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang="nb" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " – Varde" }
                }
                body {
                    main { (body) }
                }
            }
        }
        .into_string(),
    )
}

fn login_form(error: Option<&str>) -> Html<String> {
    page(
        "Logg inn",
        html! {
            h1 { "Varde" }
            @if let Some(e) = error { p role="alert" { (e) } }
            form method="post" action="/login" {
                label for="name" { "Brukernavn" }
                input id="name" name="name" autocomplete="username" required;
                label for="password" { "Passord" }
                input id="password" name="password" type="password" autocomplete="current-password" required;
                button type="submit" { "Logg inn" }
            }
        },
    )
}

async fn login_page() -> Html<String> {
    login_form(None)
}

#[derive(Deserialize)]
struct LoginForm {
    name: String,
    password: String,
}

async fn login<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    Form(form): Form<LoginForm>,
) -> Response {
    let window = d.inner.settings.login_window;
    {
        let mut failures = d.inner.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.retain(|_, at| {
            at.retain(|t| t.elapsed() < window);
            !at.is_empty()
        });
        if failures
            .get(&form.name)
            .is_some_and(|at| at.len() >= d.inner.settings.login_attempts)
        {
            tracing::warn!(name = %form.name, "login refused: too many failures");
            let mut response = (
                StatusCode::TOO_MANY_REQUESTS,
                login_form(Some("For mange mislykkede forsøk. Prøv igjen senere.")),
            )
                .into_response();
            if let Ok(v) = HeaderValue::from_str(&window.as_secs().to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return response;
        }
    }
    let found = d.inner.accounts.iter().position(|a| a.name == form.name);
    let hash = found.map_or(d.inner.dummy_hash.as_str(), |i| {
        d.inner.accounts[i].password_hash.as_str()
    });
    let ok = PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(form.password.as_bytes(), &h)
            .is_ok()
    });
    let Some(account) = found.filter(|_| ok) else {
        d.inner
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(form.name.clone())
            .or_default()
            .push(Instant::now());
        tracing::warn!(name = %form.name, "login refused");
        return (
            StatusCode::UNAUTHORIZED,
            login_form(Some("Feil brukernavn eller passord.")),
        )
            .into_response();
    };
    d.inner
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&form.name);
    let mut token = [0u8; 32];
    if getrandom::fill(&mut token).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let token: String = token.iter().map(|b| format!("{b:02x}")).collect();
    d.sessions().insert(
        token.clone(),
        Session {
            account,
            last_seen: Instant::now(),
        },
    );
    tracing::info!(name = %form.name, "logged in");
    let secure = if d.inner.settings.secure_cookies {
        "; Secure"
    } else {
        ""
    };
    let cookie = format!("{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict{secure}");
    let mut response = Redirect::to("/alerts").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

async fn logout<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
) -> Response {
    if let Some(token) = session_token(&headers) {
        d.sessions().remove(&token);
    }
    let mut response = Redirect::to("/login").into_response();
    let gone = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if let Ok(v) = HeaderValue::from_str(&gone) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[derive(Deserialize)]
struct QueueQuery {
    tenant: Option<String>,
}

/// The tenant a request may see: a municipality account its own, always; others the one asked
/// for (or all). `Err` for a tenant parameter that is not a kommunenummer.
fn scope(account: &Account, asked: Option<&str>) -> Result<Option<Kommunenummer>, StatusCode> {
    let asked = match asked.filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(Kommunenummer::parse(t).map_err(|_| StatusCode::BAD_REQUEST)?),
    };
    Ok(match account.role {
        Role::Municipality => account.tenant,
        Role::Admin | Role::Analyst => asked,
    })
}

async fn alert_queue<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    Query(q): Query<QueueQuery>,
) -> Response {
    let Some(account) = d.account(&headers).cloned() else {
        return Redirect::to("/login").into_response();
    };
    let tenant = match scope(&account, q.tenant.as_deref()) {
        Ok(t) => t,
        Err(code) => return (code, "tenant: not a kommunenummer\n").into_response(),
    };
    if account.role == Role::Municipality && tenant.is_none() {
        // Cannot happen for a loaded account; refuse rather than show everything.
        return StatusCode::FORBIDDEN.into_response();
    }
    let alerts = match d
        .inner
        .store
        .recent_alerts(&AlertQuery {
            tenant,
            limit: d.inner.settings.page_size,
        })
        .await
    {
        Ok(a) => a,
        Err(e) => {
            tracing::error!(error = %e, "alert queue: store failed");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "the store is not answering\n",
            )
                .into_response();
        }
    };
    queue_page(&account, tenant, &alerts).into_response()
}

/// Alerts of one dedup key (the same rule, tenant, component and host): how many, when first
/// and last seen, and the newest of them.
struct Group<'a> {
    newest: &'a Alert,
    count: usize,
    first_us: i64,
    last_us: i64,
}

/// Groups `alerts` by dedup key, the most recently seen group first.
fn group(alerts: &[Alert]) -> Vec<Group<'_>> {
    let mut by_key: HashMap<[u8; 16], Group<'_>> = HashMap::new();
    for a in alerts {
        let g = by_key.entry(a.dedup_key).or_insert(Group {
            newest: a,
            count: 0,
            first_us: a.event_time_us,
            last_us: a.event_time_us,
        });
        g.count += 1;
        g.first_us = g.first_us.min(a.event_time_us);
        if a.event_time_us >= g.last_us {
            g.last_us = a.event_time_us;
            g.newest = a;
        }
    }
    let mut groups: Vec<Group<'_>> = by_key.into_values().collect();
    groups.sort_by(|x, y| {
        y.last_us
            .cmp(&x.last_us)
            .then_with(|| x.newest.alert_id.0.cmp(&y.newest.alert_id.0))
    });
    groups
}

fn queue_page(account: &Account, tenant: Option<Kommunenummer>, alerts: &[Alert]) -> Html<String> {
    let scope = tenant.map_or_else(|| "alle kommuner".to_owned(), |t| format!("kommune {t}"));
    let groups = group(alerts);
    page(
        "Varsler",
        html! {
            h1 { "Varsler – " (scope) }
            p { "Innlogget som " (account.name) }
            form method="post" action="/logout" { button type="submit" { "Logg ut" } }
            table {
                caption { (alerts.len()) " varsler i " (groups.len()) " grupper, sist sett først" }
                thead { tr {
                    th scope="col" { "Sist sett (UTC)" }
                    th scope="col" { "Først sett (UTC)" }
                    th scope="col" { "Antall" }
                    th scope="col" { "Kommune" }
                    th scope="col" { "Nivå" }
                    th scope="col" { "Regel" }
                    th scope="col" { "Komponent" }
                    th scope="col" { "Vert" }
                } }
                tbody {
                    @for g in &groups {
                        tr data-alert-id=(g.newest.alert_id.to_string()) data-count=(g.count) {
                            td { (format_time(g.last_us)) }
                            td { (format_time(g.first_us)) }
                            td { (g.count) }
                            td { (g.newest.tenant) }
                            td { (g.newest.rule_level) }
                            td { (g.newest.rule_title) }
                            td { (g.newest.component) }
                            td { (g.newest.host) }
                        }
                    }
                }
            }
        },
    )
}

fn format_time(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map_or_else(String::new, |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Vec<Account>, AccountsError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("accounts.toml");
        std::fs::write(&path, text).expect("write");
        load_accounts(&path)
    }

    #[test]
    fn accounts_are_checked_when_loaded() {
        let hash = hash_password("pw").expect("hash");
        let ok = load(&format!(
            "[[account]]\nname = \"a\"\nrole = \"analyst\"\npassword_hash = \"{hash}\"\n\n\
             [[account]]\nname = \"k\"\nrole = \"municipality\"\ntenant = \"0301\"\npassword_hash = \"{hash}\"\n"
        ))
        .expect("valid");
        assert_eq!(ok.len(), 2);
        for (bad, word) in [
            (
                format!(
                    "[[account]]\nname = \"k\"\nrole = \"municipality\"\npassword_hash = \"{hash}\"\n"
                ),
                "needs `tenant`",
            ),
            (
                format!(
                    "[[account]]\nname = \"a\"\nrole = \"analyst\"\ntenant = \"0301\"\npassword_hash = \"{hash}\"\n"
                ),
                "only municipality",
            ),
            (
                "[[account]]\nname = \"a\"\nrole = \"analyst\"\npassword_hash = \"plain\"\n"
                    .to_owned(),
                "password_hash",
            ),
            (
                format!("[[account]]\nname = \"a\"\nrole = \"root\"\npassword_hash = \"{hash}\"\n"),
                "role",
            ),
            (
                format!(
                    "[[account]]\nname = \"a\"\nrole = \"analyst\"\npassword_hash = \"{hash}\"\n[[account]]\nname = \"a\"\nrole = \"admin\"\npassword_hash = \"{hash}\"\n"
                ),
                "twice",
            ),
            (
                format!(
                    "[[account]]\nname = \"k\"\nrole = \"municipality\"\ntenant = \"9999\"\npassword_hash = \"{hash}\"\n"
                ),
                "tenant",
            ),
        ] {
            let err = load(&bad).expect_err(&bad).to_string();
            assert!(err.contains(word), "{bad}: {err}");
        }
    }

    #[test]
    fn hashes_are_argon2id_and_salted() {
        let a = hash_password("same").expect("hash");
        let b = hash_password("same").expect("hash");
        assert!(a.starts_with("$argon2id$"), "{a}");
        assert_ne!(a, b, "a random salt each time");
        let parsed = PasswordHash::new(&a).expect("PHC");
        assert!(Argon2::default().verify_password(b"same", &parsed).is_ok());
        assert!(
            Argon2::default()
                .verify_password(b"other", &parsed)
                .is_err()
        );
    }
}
