//! # varde-dashboard: the web face of Varde
//!
//! Server-rendered pages on axum, reading and writing through varde-store: local accounts
//! (argon2id hashes in an accounts file), sessions, the three roles, the **alert queue**, the
//! alert page and **triage**,
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
//! - `GET /alerts?status=<filter>`: `open` by default; see [`triage::FILTERS`].
//! - `GET /alerts/{id}`: the alert page; `POST /alerts/triage`: triage of one or many groups
//!   (analysts and admins, with the session's CSRF token); see the `alert` module.
//! - `POST /logout` (with the CSRF token); `GET /health`.
#![deny(missing_docs)]

mod alert;
mod assets;
mod audit;
mod component;
pub mod enrol;
mod hunt;
pub mod i18n;
mod incident;
mod live;
mod metrics;
mod municipality;
mod outbox;
pub use outbox::NotifySetup;
mod overview;
mod reports;
mod rules;
pub mod triage;

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

use crate::i18n::t;
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

/// Adds an account to the accounts file at `path` (made if missing): `password` is hashed with
/// argon2id, the whole file with the new account is checked as the dashboard checks it at start
/// (names unique, a tenant for municipality accounts only), then written beside and renamed over
/// the old one, owner-readable only. Nothing changes when a check fails.
pub fn add_account(
    path: &Path,
    name: &str,
    role: Role,
    tenant: Option<Kommunenummer>,
    password: &str,
) -> Result<(), AccountsError> {
    let err = |message: String| AccountsError {
        path: path.to_owned(),
        message,
    };
    if name.trim().is_empty() || name.chars().any(char::is_control) {
        return Err(err(
            "an account needs a name without control characters".into()
        ));
    }
    if password.is_empty() {
        return Err(err("an empty password".into()));
    }
    #[derive(serde::Serialize)]
    struct New<'a> {
        name: &'a str,
        role: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        tenant: Option<String>,
        password_hash: String,
    }
    #[derive(serde::Serialize)]
    struct File<'a> {
        account: Vec<New<'a>>,
    }
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(err(e.to_string())),
    };
    let role_name = match role {
        Role::Admin => "admin",
        Role::Analyst => "analyst",
        Role::Municipality => "municipality",
    };
    let added = toml::to_string(&File {
        account: vec![New {
            name,
            role: role_name,
            tenant: tenant.map(|t| t.to_string()),
            password_hash: hash_password(password).map_err(err)?,
        }],
    })
    .map_err(|e| err(e.to_string()))?;
    let mut text = existing;
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.is_empty() {
        text.push('\n');
    }
    text.push_str(&added);
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "accounts.toml".into());
    let temp = path.with_file_name(format!(".{file_name}.new"));
    {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&temp).map_err(|e| err(e.to_string()))?;
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| err(e.to_string()))?;
    }
    if let Err(e) = load_accounts(&temp) {
        let _ = std::fs::remove_file(&temp);
        return Err(err(e.message));
    }
    std::fs::rename(&temp, path).map_err(|e| err(e.to_string()))
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
    /// The notifier's configuration (`notify.toml`): its contacts on the outbox page, each with
    /// "send test". Without it the outbox is still shown.
    #[serde(default)]
    pub notify: Option<PathBuf>,
    /// The CERT's name as the issuer of reports (default "CERT").
    #[serde(default)]
    pub issuer: Option<String>,
    /// The CERT's contact in reports.
    #[serde(default)]
    pub issuer_contact: Option<String>,
    /// Serve HTTPS with this certificate and key (PEM) instead of plain HTTP.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Collector enrolment: the API collectors call and the tokens admins issue.
    #[serde(default)]
    pub enrolment: Option<enrol::EnrolmentConfig>,
}

/// `[tls]` in the dashboard's configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain (PEM), the server's certificate first.
    pub cert_file: PathBuf,
    /// Its private key (PEM).
    pub key_file: PathBuf,
}

impl DashboardConfig {
    /// Enrolment as configured: the pin from `[enrolment] cert_file`, or the `[tls]`
    /// certificate. `None` without `[enrolment]`.
    pub fn enrolment(&self) -> Result<Option<enrol::Enrolment>, String> {
        let Some(config) = self.enrolment.clone() else {
            return Ok(None);
        };
        let cert = config
            .cert_file
            .clone()
            .or_else(|| self.tls.as_ref().map(|t| t.cert_file.clone()))
            .ok_or("[enrolment] needs cert_file, or [tls] for the dashboard's own certificate")?;
        let pem = std::fs::read(&cert).map_err(|e| format!("{}: {e}", cert.display()))?;
        enrol::Enrolment::new(config, &pem)
            .map(Some)
            .map_err(|e| format!("{}: {e}", cert.display()))
    }
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
    /// The notifier's contacts and settings (the outbox page's contacts and "send test");
    /// `None`: the outbox is shown without them.
    pub notify: Option<NotifySetup>,
    /// The CERT named as the issuer of reports and exports.
    pub issuer: varde_report::Issuer,
    /// Collector enrolment (the API and the token form); `None`: not offered.
    pub enrolment: Option<enrol::Enrolment>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            secure_cookies: true,
            session_idle: Duration::from_secs(8 * 3600),
            page_size: 500,
            login_attempts: 5,
            login_window: Duration::from_secs(15 * 60),
            notify: None,
            issuer: varde_report::Issuer {
                name: "CERT".into(),
                contact: String::new(),
            },
            enrolment: None,
        }
    }
}

#[derive(Debug, Clone)]
struct Session {
    account: usize,
    last_seen: Instant,
    /// The token every form of this session carries (`csrf`), compared on each change.
    csrf: String,
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
    counters: metrics::Counters,
    /// Token redemptions and rotations, one at a time (see [`enrol`]).
    enrol_lock: tokio::sync::Mutex<()>,
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
                counters: metrics::Counters::default(),
                enrol_lock: tokio::sync::Mutex::new(()),
            }),
        }
    }
}

impl<
    St: EventStore
        + varde_store::outbox::Outbox
        + varde_store::reports::ReportLog
        + varde_store::collectors::Collectors
        + Send
        + Sync
        + 'static,
> Dashboard<St>
{
    /// The routes.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(|| async { Redirect::to("/alerts") }))
            .route("/login", get(login_page).post(login::<St>))
            .route("/logout", post(logout::<St>))
            .route("/alerts", get(alert_queue::<St>))
            .route("/alerts/triage", post(alert::triage::<St>))
            .route("/alerts/stream", get(live::stream::<St>))
            .route("/alerts/{id}", get(alert::detail::<St>))
            .route(
                "/incidents",
                get(incident::list::<St>).post(incident::create::<St>),
            )
            .route(
                "/incidents/{id}",
                get(incident::show::<St>).post(incident::change::<St>),
            )
            .route("/health", get(metrics::health::<St>))
            .route("/metrics", get(metrics::metrics::<St>))
            .route("/assets/{name}", get(assets::serve))
            .route("/lang/{code}", get(i18n::choose))
            .route("/audit", get(audit::show::<St>))
            .route("/hunt", get(hunt::show::<St>).post(hunt::run::<St>))
            .route("/rules", get(rules::list::<St>))
            .route("/overview", get(overview::show::<St>))
            .route("/incidents/{id}/export", get(reports::export::<St>))
            .route("/reports/month", get(reports::month::<St>))
            .route("/incidents/{id}/reports", post(reports::record::<St>))
            .route(
                "/incidents/{id}/reports/{report}",
                get(reports::submitted::<St>),
            )
            .route("/api/enrol", post(enrol::api_enrol::<St>))
            .route("/api/rotate", post(enrol::api_rotate::<St>))
            .route("/collectors", get(enrol::page::<St>))
            .route("/collectors/tokens", post(enrol::issue::<St>))
            .route("/collectors/{id}/revoke", post(enrol::revoke_form::<St>))
            .route("/outbox", get(outbox::list::<St>))
            .route("/outbox/test", post(outbox::test::<St>))
            .route("/outbox/contacts", post(outbox::contacts::<St>))
            .route("/outbox/{id}", get(outbox::show::<St>))
            .route("/municipalities/{number}", get(municipality::show::<St>))
            .route("/components/{id}", get(component::show::<St>))
            .route("/rules/{id}", get(rules::show::<St>))
            .route("/rules/{id}/switch", post(rules::switch::<St>))
            .route_layer(axum::middleware::from_fn_with_state(
                self.clone(),
                metrics::count::<St>,
            ))
            .layer(axum::middleware::from_fn(i18n::middleware))
            .layer(axum::middleware::from_fn(security_headers))
            .with_state(self)
    }
}

impl<St: EventStore + Send + Sync + 'static> Dashboard<St> {
    fn sessions(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.inner
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// The account of the request's session and the session's CSRF token, if it has a live
    /// session.
    fn session(&self, headers: &HeaderMap) -> Option<(Account, String)> {
        let token = session_token(headers)?;
        let mut sessions = self.sessions();
        let idle = self.inner.settings.session_idle;
        sessions.retain(|_, s| s.last_seen.elapsed() < idle);
        let s = sessions.get_mut(&token)?;
        s.last_seen = Instant::now();
        let account = self.inner.accounts.get(s.account)?.clone();
        Some((account, s.csrf.clone()))
    }

    /// The account of the request, its CSRF token and the tenant its reads are limited to
    /// ([`scope`]), or the answer to give instead: the login page without a session, 400 for a
    /// tenant that is not a kommunenummer, 403 for a municipality account without its tenant.
    // The error is the early answer to the request, made at most once per request.
    #[allow(clippy::result_large_err)]
    fn scoped(
        &self,
        headers: &HeaderMap,
        asked: Option<&str>,
    ) -> Result<(Account, String, Option<Kommunenummer>), Response> {
        let Some((account, csrf)) = self.session(headers) else {
            return Err(Redirect::to("/login").into_response());
        };
        let tenant = scope(&account, asked)
            .map_err(|code| (code, "tenant: not a kommunenummer\n").into_response())?;
        if account.role == Role::Municipality && tenant.is_none() {
            // Cannot happen for a loaded account; refuse rather than show everything.
            return Err(StatusCode::FORBIDDEN.into_response());
        }
        Ok((account, csrf, tenant))
    }

    /// Sessions not yet idle for too long.
    fn live_sessions(&self) -> usize {
        let idle = self.inner.settings.session_idle;
        self.sessions()
            .values()
            .filter(|s| s.last_seen.elapsed() < idle)
            .count()
    }

    /// Who alerts can be assigned to: the analysts and admins, by name.
    fn assignees(&self) -> Vec<&str> {
        self.inner
            .accounts
            .iter()
            .filter(|a| a.role != Role::Municipality)
            .map(|a| a.name.as_str())
            .collect()
    }
}

/// A new random password (20 hex digits, 80 bits from the operating system), for accounts
/// made by a program such as `varde demo`.
pub fn new_password() -> Result<String, String> {
    random_hex::<10>().ok_or_else(|| "the operating system gave no random bytes".to_owned())
}

/// `N` random bytes from the operating system, as hex; `None` if it has none to give.
fn random_hex<const N: usize>() -> Option<String> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Compares a token sent with one held, in time independent of where they differ.
fn same_token(sent: &str, held: &str) -> bool {
    sent.len() == held.len()
        && !held.is_empty()
        && sent
            .bytes()
            .zip(held.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn session_token(headers: &HeaderMap) -> Option<String> {
    cookie(headers, COOKIE).map(str::to_owned)
}

/// What every answer carries: a Content-Security-Policy that lets pages load only the
/// dashboard's own scripts, styles and images (no inline script, no other origin, no framing,
/// forms only to the dashboard), and the usual companions.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; \
    frame-ancestors 'none'; base-uri 'none'";

async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in [
        (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The store did not answer: logged with what was asked, 503 to the browser.
pub(crate) fn unavailable(what: &str, e: &varde_store::Error) -> Response {
    tracing::error!(error = %e, what, "the store failed");
    (
        StatusCode::SERVICE_UNAVAILABLE,
        "the store is not answering\n",
    )
        .into_response()
}

/// A page that says why a request was not carried out, with `status`, and the way back.
pub(crate) fn refusal(
    status: StatusCode,
    title: &str,
    message: &str,
    back: &str,
    back_label: &str,
) -> Response {
    (
        status,
        page(
            title,
            html! {
                h1.ds-heading data-size="lg" { (title) }
                p.ds-alert data-color="danger" role="alert" { (message) }
                p { a.ds-link href=(back) { (back_label) } }
            },
        ),
    )
        .into_response()
}

/// The value of cookie `name` of a request.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A page without the logged-in header (login, errors).
fn page(title: &str, body: Markup) -> Html<String> {
    document(title, None, body)
}

/// A page behind the login: the header with the menu, the account and logout, then `body`.
fn app_page(title: &str, account: &Account, csrf: &str, body: Markup) -> Html<String> {
    document(title, Some(nav(account, csrf)), body)
}

fn document(title: &str, header: Option<Markup>, body: Markup) -> Html<String> {
    Html(
        html! {
            (DOCTYPE)
            html lang=(i18n::lang().code()) data-color-scheme="light" data-size="md" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (title) " – Varde" }
                    link rel="stylesheet" href=(assets::THEME_URL);
                    link rel="stylesheet" href=(assets::COMPONENTS_URL);
                    link rel="stylesheet" href=(assets::VARDE_URL);
                }
                body {
                    a.ds-skip-link href="#innhold" { (t("Hopp til hovedinnholdet", "Skip to main content")) }
                    @if let Some(h) = header { (h) }
                    main id="innhold" tabindex="-1" { (body) }
                }
            }
        }
        .into_string(),
    )
}

/// A link to the other language, named in that language (and marked as such for screen
/// readers); it comes back to the page it was on.
fn language_switch() -> Markup {
    let (code, name) = match i18n::lang() {
        i18n::Lang::Nb => ("en", "English"),
        i18n::Lang::En => ("nb", "Norsk"),
    };
    let back: String = form_urlencoded::byte_serialize(i18n::request_path().as_bytes()).collect();
    html! {
        p {
            a.ds-link href={ "/lang/" (code) "?back=" (back) } lang=(code) data-lang-switch { (name) }
        }
    }
}

/// The top of every page behind the login: where to go, who is logged in, logout.
fn nav(account: &Account, csrf: &str) -> Markup {
    html! {
        header.varde-header {
            p.varde-brand { a.ds-link href="/alerts" { "Varde" } }
            nav aria-label=(t("Hovedmeny", "Main menu")) {
                ul {
                    li { a.ds-link href="/alerts" { (t("Varsler", "Alerts")) } }
                    li { a.ds-link href="/incidents" { (t("Hendelser", "Incidents")) } }
                    li { a.ds-link href="/overview" { (t("Oversikt", "Overview")) } }
                    @if let Some(k) = account.tenant {
                        li { a.ds-link href=(municipality::municipality_url(k.as_str())) { (t("Min kommune", "My municipality")) } }
                    }
                    li { a.ds-link href="/hunt" { (t("Jakt", "Hunt")) } }
                    @if account.role != Role::Municipality {
                        li { a.ds-link href="/rules" { (t("Regler", "Rules")) } }
                    }
                    @if account.role != Role::Municipality {
                        li { a.ds-link href="/outbox" { (t("Utboks", "Outbox")) } }
                    }
                    @if account.role != Role::Municipality {
                        li { a.ds-link href="/collectors" { (t("Innsamlere", "Collectors")) } }
                    }
                    @if account.role == Role::Admin {
                        li { a.ds-link href="/audit" { (t("Revisjonslogg", "Audit log")) } }
                    }
                }
            }
            p { (t("Innlogget som ", "Logged in as ")) (account.name) }
            (language_switch())
            form method="post" action="/logout" {
                input type="hidden" name="csrf" value=(csrf);
                button.ds-button data-variant="secondary" type="submit" { (t("Logg ut", "Log out")) }
            }
        }
    }
}

fn login_form(error: Option<&str>) -> Html<String> {
    page(
        t("Logg inn", "Log in"),
        html! {
            h1.ds-heading data-size="lg" { "Varde" }
            (language_switch())
            @if let Some(e) = error { p.ds-alert data-color="danger" role="alert" { (e) } }
            form method="post" action="/login" {
                label.ds-label for="name" { (t("Brukernavn", "User name")) }
                input.ds-input id="name" name="name" autocomplete="username" required;
                label.ds-label for="password" { (t("Passord", "Password")) }
                input.ds-input id="password" name="password" type="password" autocomplete="current-password" required;
                button.ds-button type="submit" { (t("Logg inn", "Log in")) }
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
                login_form(Some(t(
                    "For mange mislykkede forsøk. Prøv igjen senere.",
                    "Too many failed attempts. Try again later.",
                ))),
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
            login_form(Some(t(
                "Feil brukernavn eller passord.",
                "Wrong user name or password.",
            ))),
        )
            .into_response();
    };
    d.inner
        .failures
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&form.name);
    let (Some(token), Some(csrf)) = (random_hex::<32>(), random_hex::<32>()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    d.sessions().insert(
        token.clone(),
        Session {
            account,
            last_seen: Instant::now(),
            csrf,
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

/// `POST /logout` (form `csrf`): ends the session. A live session is ended only with its own
/// CSRF token, so another site cannot log an analyst out.
async fn logout<St: EventStore + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(token) = session_token(&headers) {
        let sent = form_urlencoded::parse(&body)
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        let mut sessions = d.sessions();
        if let Some(s) = sessions.get(&token) {
            if !same_token(&sent, &s.csrf) {
                return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
            }
            sessions.remove(&token);
        }
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
    status: Option<String>,
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
    let (account, csrf, tenant) = match d.scoped(&headers, q.tenant.as_deref()) {
        Ok(s) => s,
        Err(r) => return r,
    };
    let filter = q
        .status
        .as_deref()
        .filter(|s| !s.is_empty())
        .unwrap_or("open");
    if !triage::FILTERS.contains(&filter) {
        return (StatusCode::BAD_REQUEST, "status: not a status filter\n").into_response();
    }
    let store = &d.inner.store;
    let alerts = match store
        .recent_alerts(&AlertQuery {
            tenant,
            limit: d.inner.settings.page_size,
        })
        .await
    {
        Ok(a) => a,
        Err(e) => return unavailable("alert queue", &e),
    };
    let mut groups = group(&alerts);
    let keys: Vec<[u8; 16]> = groups.iter().map(|g| g.newest.dedup_key).collect();
    let history = match store.triage(tenant, &keys).await {
        Ok(h) => h,
        Err(e) => return unavailable("alert queue: triage", &e),
    };
    let now = now_us();
    for g in &mut groups {
        let own: Vec<&varde_store::TriageAction> = history
            .iter()
            .filter(|a| a.dedup_key == g.newest.dedup_key && a.tenant == g.newest.tenant)
            .collect();
        g.status = triage::status(&own, g.last_detect_us, now);
    }
    let open_incidents = if account.role == Role::Municipality {
        Vec::new()
    } else {
        match incident::open_incidents(&d).await {
            Ok(o) => o,
            Err(r) => return r,
        }
    };
    let view = QueueView {
        now,
        open_incidents,
        account: &account,
        csrf: &csrf,
        tenant,
        filter,
        alerts: alerts.len(),
        assignees: d.assignees(),
    };
    queue_page(&view, &groups).into_response()
}

/// Alerts of one dedup key (the same rule, tenant, component and host): how many, when first
/// and last seen, the newest of them, and where triage has it.
struct Group<'a> {
    newest: &'a Alert,
    count: usize,
    first_us: i64,
    last_us: i64,
    last_detect_us: i64,
    status: triage::Status,
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
            last_detect_us: a.detect_time_us,
            status: triage::Status::New,
        });
        g.count += 1;
        g.first_us = g.first_us.min(a.event_time_us);
        g.last_detect_us = g.last_detect_us.max(a.detect_time_us);
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

/// What the queue page shows besides the groups.
struct QueueView<'a> {
    /// When the page is made, µs since the epoch: the live queue counts from here.
    now: i64,
    account: &'a Account,
    csrf: &'a str,
    tenant: Option<Kommunenummer>,
    filter: &'a str,
    alerts: usize,
    assignees: Vec<&'a str>,
    open_incidents: Vec<varde_store::incident::Incident>,
}

fn filter_label(f: &str) -> &'static str {
    match f {
        "open" => t(
            "Åpne (nye, kvitterte, tildelte)",
            "Open (new, acknowledged, assigned)",
        ),
        "new" => t("Nye", "New"),
        "acknowledged" => t("Kvitterte", "Acknowledged"),
        "assigned" => t("Tildelte", "Assigned"),
        "resolved" => t("Løste", "Resolved"),
        "suppressed" => t("Undertrykte", "Suppressed"),
        _ => "",
    }
}

fn queue_page(v: &QueueView<'_>, groups: &[Group<'_>]) -> Html<String> {
    let scope = v.tenant.map_or_else(
        || t("alle kommuner", "all municipalities").to_owned(),
        |k| format!("{} {k}", t("kommune", "municipality")),
    );
    let shown: Vec<&Group<'_>> = groups
        .iter()
        .filter(|g| g.status.passes(v.filter))
        .collect();
    let may_triage = v.account.role != Role::Municipality;
    let tenant_param = v.tenant.map(|t| t.to_string()).unwrap_or_default();
    let back = if tenant_param.is_empty() {
        format!("/alerts?status={}", v.filter)
    } else {
        format!("/alerts?status={}&tenant={tenant_param}", v.filter)
    };
    let table = html! {
        table.ds-table data-border="" data-zebra="" data-live-since=(v.now) data-live-tenant=(tenant_param) {
            caption {
                (shown.len()) (t(" av ", " of ")) (groups.len()) (t(" grupper (", " groups (")) (v.alerts) (t(" varsler): ", " alerts): "))
                (filter_label(v.filter).to_lowercase()) (t(", sist sett først", ", most recently seen first"))
            }
            thead { tr {
                @if may_triage { th scope="col" { (t("Velg", "Select")) } }
                th scope="col" { (t("Sist sett (UTC)", "Last seen (UTC)")) }
                th scope="col" { (t("Først sett (UTC)", "First seen (UTC)")) }
                th scope="col" { (t("Antall", "Count")) }
                th scope="col" { (t("Status", "Status")) }
                th scope="col" { (t("Kommune", "Municipality")) }
                th scope="col" { (t("Nivå", "Level")) }
                th scope="col" { (t("Regel", "Rule")) }
                th scope="col" { (t("Komponent", "Component")) }
                th scope="col" { (t("Vert", "Host")) }
            } }
            tbody {
                @for g in &shown {
                    @let key = alert::hex(&g.newest.dedup_key);
                    tr data-alert-id=(g.newest.alert_id.to_string()) data-count=(g.count)
                        data-status=(g.status.key()) data-key=(key) {
                        @if may_triage {
                            td { input.ds-input type="checkbox" name="key" value=(key)
                                aria-label={ (t("Velg gruppen ", "Select the group ")) (g.newest.rule_title) (t(" på ", " on ")) (g.newest.host) }; }
                        }
                        td { (format_time(g.last_us)) }
                        td { (format_time(g.first_us)) }
                        td { (g.count) }
                        td { (alert::status_label(&g.status)) }
                        td { a.ds-link href=(municipality::municipality_url(&g.newest.tenant)) { (g.newest.tenant) } }
                        td { (g.newest.rule_level) }
                        td { a.ds-link href={ "/alerts/" (g.newest.alert_id) } { (g.newest.rule_title) } }
                        td {
                            @if !g.newest.component.is_empty() {
                                a.ds-link href=(component::component_url(&g.newest.component)) { (g.newest.component) }
                            }
                        }
                        td { (g.newest.host) }
                    }
                }
            }
        }
    };
    app_page(
        t("Varsler", "Alerts"),
        v.account,
        v.csrf,
        html! {
            h1.ds-heading data-size="lg" { (t("Varsler – ", "Alerts – ")) (scope) }
            form method="get" action="/alerts" {
                @if v.account.role != Role::Municipality && !tenant_param.is_empty() {
                    input type="hidden" name="tenant" value=(tenant_param);
                }
                label.ds-label for="status-filter" { (t("Status", "Status")) }
                select.ds-input id="status-filter" name="status" {
                    @for f in triage::FILTERS {
                        option value=(f) selected[f == v.filter] { (filter_label(f)) }
                    }
                }
                button.ds-button type="submit" { (t("Vis", "Show")) }
            }
            div.ds-alert data-color="info" id="live-notice" role="status" hidden
                data-one=(t("1 nytt varsel", "1 new alert")) data-many=(t("nye varsler", "new alerts")) {
                span data-count {} (t(" siden siden ble lastet. ", " since the page was loaded. "))
                a.ds-link href=(back) { (t("Vis dem", "Show them")) }
            }
            script src=(assets::LIVE_URL) defer {}
            @if may_triage {
                form method="post" action="/alerts/triage" {
                    (table)
                    (alert::triage_controls(v.csrf, &v.assignees, &[], &back))
                    (incident::incident_controls(&v.open_incidents))
                }
            } @else {
                (table)
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
    fn accounts_are_added_checked_and_nothing_changes_on_a_refusal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("accounts.toml");
        let oslo = Kommunenummer::parse("0301").expect("Oslo");
        add_account(&path, "kari", Role::Analyst, None, "s3cret \"quoted\"").expect("first");
        add_account(&path, "drift-oslo", Role::Municipality, Some(oslo), "pw").expect("second");
        let before = std::fs::read_to_string(&path).expect("file");
        for (name, role, tenant) in [
            ("kari", Role::Admin, None),
            ("x", Role::Municipality, None),
            ("y", Role::Analyst, Some(oslo)),
            ("", Role::Analyst, None),
        ] {
            assert!(
                add_account(&path, name, role, tenant, "pw").is_err(),
                "{name}"
            );
        }
        assert_eq!(std::fs::read_to_string(&path).expect("file"), before);
        let accounts = load_accounts(&path).expect("loads");
        assert_eq!(accounts.len(), 2);
        assert_eq!(accounts[1].tenant, Some(oslo));
        let hash = PasswordHash::new(&accounts[0].password_hash).expect("PHC");
        assert!(
            Argon2::default()
                .verify_password(b"s3cret \"quoted\"", &hash)
                .is_ok()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
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
