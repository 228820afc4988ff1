//! The notifier's configuration (`notify.toml`) and the contacts file it names, both checked
//! whole when read: an address, URL, name or level that would not work is an error naming the
//! contact and the field, and nothing is started.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use lettre::message::Mailbox;
use reqwest::Url;
use serde::{Deserialize, Serialize};
use varde_core::Kommunenummer;
use varde_store::incident::Tlp;

/// A configuration or contacts file that cannot be used, with the file and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// The file.
    pub path: String,
    /// What is wrong, naming the contact and field.
    pub message: String,
}

fn err(path: &Path, message: impl Into<String>) -> ConfigError {
    ConfigError {
        path: path.display().to_string(),
        message: message.into(),
    }
}

/// Alert levels, lowest first (Sigma's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// `informational`.
    Informational,
    /// `low`.
    Low,
    /// `medium`.
    Medium,
    /// `high`.
    High,
    /// `critical`.
    Critical,
}

impl Level {
    /// The level of a rule's `level` value; `None` when empty or unknown.
    pub fn parse(s: &str) -> Option<Level> {
        match s {
            "informational" => Some(Level::Informational),
            "low" => Some(Level::Low),
            "medium" => Some(Level::Medium),
            "high" => Some(Level::High),
            "critical" => Some(Level::Critical),
            _ => None,
        }
    }

    /// Sigma's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }
}

/// The language a contact reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    /// Norwegian bokmål.
    #[default]
    Nb,
    /// English.
    En,
}

/// What a webhook's body looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// Varde's own, versioned JSON (`varde.notification/v1`, docs/notifications.md).
    #[default]
    Varde,
    /// A Mattermost or Slack incoming webhook (`{"text": …}`).
    Slack,
    /// A Microsoft Teams workflow webhook (an Adaptive Card message).
    Teams,
}

/// Where a contact is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// An e-mail address.
    Email(Mailbox),
    /// A webhook.
    Webhook {
        /// Its URL.
        url: Url,
        /// Its body.
        format: WebhookFormat,
        /// The HMAC-SHA-256 key the requests are signed with (none: unsigned, chat tools only).
        secret: Option<Vec<u8>>,
    },
}

/// Whose data a contact is told about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One municipality's.
    Municipality(Kommunenummer),
    /// A shared component's, for its owner (all municipalities, never named).
    Component(String),
}

/// One checked contact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Unique name, shown in the outbox (no control characters).
    pub name: String,
    /// Whose data.
    pub scope: Scope,
    /// How it is reached.
    pub target: Target,
    /// Its language.
    pub language: Language,
    /// A named recipient of the municipality (a person, not a shared mailbox or channel): only
    /// those receive TLP:AMBER and TLP:AMBER+STRICT content.
    pub named: bool,
    /// Alerts at or above this level go into its digests; `None`: no alerts.
    pub alerts: Option<Level>,
    /// Told when an incident that concerns it is opened, updated or closed.
    pub incidents: bool,
    /// Told of alerts that are part of a campaign across municipalities, whatever their level.
    pub campaigns: bool,
    /// Told when one of its collectors has sent nothing for this long (`None`: not told).
    pub collector_silent: Option<Duration>,
}

impl Contact {
    /// The kommunenummer it belongs to, when it is a municipality's.
    pub fn tenant(&self) -> Option<Kommunenummer> {
        match &self.scope {
            Scope::Municipality(k) => Some(*k),
            Scope::Component(_) => None,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct ContactsFile {
    #[serde(default)]
    contact: Vec<ContactEntry>,
}

/// One `[[contact]]` of the contacts file, as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ContactEntry {
    /// Unique name.
    pub name: String,
    /// The municipality's kommunenummer (or `component`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// A shared component's id, for its owner (or `tenant`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// An e-mail address (or `webhook`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// A webhook URL (or `email`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
    /// `varde` (default), `slack` or `teams`.
    #[serde(default)]
    pub webhook_format: WebhookFormat,
    /// The environment variable holding the webhook's signing secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_env: Option<String>,
    /// A file holding the webhook's signing secret (one line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret_file: Option<PathBuf>,
    /// `nb` (default) or `en`.
    #[serde(default)]
    pub language: Language,
    /// A named recipient (receives TLP:AMBER content); default false.
    #[serde(default)]
    pub named: bool,
    /// Alerts at or above this level (`informational` … `critical`), or `none`; default `high`.
    #[serde(default = "default_alerts")]
    pub alerts: String,
    /// Incidents; default true.
    #[serde(default = "yes")]
    pub incidents: bool,
    /// Campaigns; default true.
    #[serde(default = "yes")]
    pub campaigns: bool,
    /// Minutes of collector silence before telling (0: never); default 0.
    #[serde(default)]
    pub collector_silent_min: u64,
}

fn default_alerts() -> String {
    "high".into()
}

fn yes() -> bool {
    true
}

/// Most bytes of a contact name (it reaches a header of the outbox and the dashboard).
pub const NAME_MAX: usize = 200;

/// Refuses text that may reach a header: control characters (CR and LF above all) and
/// anything longer than `max`.
pub fn header_safe(what: &str, value: &str, max: usize) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err(format!("{what} is empty"));
    }
    if value.len() > max {
        return Err(format!("{what} is longer than {max} bytes"));
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "{what} holds the control character {c:?} (it could inject a header)"
        ));
    }
    Ok(())
}

/// Parses an e-mail address, refusing what could inject a header.
pub fn parse_mailbox(what: &str, value: &str) -> Result<Mailbox, String> {
    header_safe(what, value, 320)?;
    Mailbox::from_str(value).map_err(|e| format!("{what} {value:?} is not an e-mail address: {e}"))
}

/// Whether a URL's host is the loopback (plain HTTP is allowed there only).
fn loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d == "localhost",
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    }
}

/// Parses a webhook URL: https, or http on the loopback; no credentials in it.
pub fn parse_webhook_url(what: &str, value: &str) -> Result<Url, String> {
    header_safe(what, value, 2_000)?;
    let url = Url::parse(value).map_err(|e| format!("{what} {value:?} is not a URL: {e}"))?;
    match url.scheme() {
        "https" => {}
        "http" if loopback(&url) => {}
        "http" => {
            return Err(format!(
                "{what} {value:?} is plain http to another host: use https"
            ));
        }
        s => return Err(format!("{what} {value:?} has scheme {s:?}: use https")),
    }
    if url.host().is_none() {
        return Err(format!("{what} {value:?} names no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!(
            "{what} {value:?} carries credentials: put a secret in webhook_secret_env instead"
        ));
    }
    Ok(url)
}

fn read_secret(entry: &ContactEntry, base: &Path) -> Result<Option<Vec<u8>>, String> {
    let secret = match (&entry.webhook_secret_env, &entry.webhook_secret_file) {
        (Some(_), Some(_)) => {
            return Err("give webhook_secret_env or webhook_secret_file, not both".into());
        }
        (Some(var), None) => std::env::var(var)
            .map_err(|_| format!("webhook_secret_env: the variable {var} is not set"))?,
        (None, Some(file)) => {
            let file = if file.is_absolute() {
                file.clone()
            } else {
                base.join(file)
            };
            std::fs::read_to_string(&file)
                .map_err(|e| format!("webhook_secret_file {}: {e}", file.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_owned()
        }
        (None, None) => return Ok(None),
    };
    if secret.len() < 16 {
        return Err("the webhook secret is shorter than 16 bytes".into());
    }
    Ok(Some(secret.into_bytes()))
}

impl ContactEntry {
    /// Checks the entry; `base` resolves a relative `webhook_secret_file`.
    pub fn check(&self, base: &Path) -> Result<Contact, String> {
        header_safe("name", &self.name, NAME_MAX)?;
        let scope = match (&self.tenant, &self.component) {
            (Some(t), None) => Scope::Municipality(
                Kommunenummer::parse(t).map_err(|e| format!("tenant {t:?}: {e}"))?,
            ),
            (None, Some(c)) => {
                if varde_core::component::ComponentRegistry::builtin()
                    .get(c)
                    .is_none()
                {
                    return Err(format!("component {c:?} is not a known shared component"));
                }
                Scope::Component(c.clone())
            }
            (Some(_), Some(_)) => return Err("give tenant or component, not both".into()),
            (None, None) => {
                return Err("give tenant (a kommunenummer) or component (its owner)".into());
            }
        };
        let target = match (&self.email, &self.webhook) {
            (Some(e), None) => {
                if self.webhook_secret_env.is_some() || self.webhook_secret_file.is_some() {
                    return Err("a webhook secret without a webhook".into());
                }
                Target::Email(parse_mailbox("email", e)?)
            }
            (None, Some(w)) => {
                let url = parse_webhook_url("webhook", w)?;
                let secret = read_secret(self, base)?;
                if secret.is_none() && self.webhook_format == WebhookFormat::Varde {
                    return Err(
                        "a varde webhook needs a signing secret (webhook_secret_env or webhook_secret_file)"
                            .into(),
                    );
                }
                Target::Webhook {
                    url,
                    format: self.webhook_format,
                    secret,
                }
            }
            (Some(_), Some(_)) => {
                return Err("give email or webhook, not both (make two contacts)".into());
            }
            (None, None) => return Err("give email or webhook".into()),
        };
        let alerts = match self.alerts.as_str() {
            "none" => None,
            l => Some(Level::parse(l).ok_or_else(|| {
                format!(
                    "alerts {l:?} is not a level (informational, low, medium, high, critical) or none"
                )
            })?),
        };
        Ok(Contact {
            name: self.name.clone(),
            scope,
            target,
            language: self.language,
            named: self.named,
            alerts,
            incidents: self.incidents,
            campaigns: self.campaigns,
            collector_silent: (self.collector_silent_min > 0)
                .then(|| Duration::from_secs(self.collector_silent_min * 60)),
        })
    }
}

/// The entries of a contacts file as written (for the dashboard's admins to edit).
pub fn read_entries(path: &Path) -> Result<Vec<ContactEntry>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
    let file: ContactsFile = toml::from_str(&text).map_err(|e| err(path, e.to_string()))?;
    Ok(file.contact)
}

/// Replaces the contacts file with `entries`, after checking them all as the notifier will
/// (nothing is written when one does not check out); written to a temporary file beside it and
/// renamed over it, so a reader sees the old file or the new one. Comments are not kept.
pub fn write_contacts(path: &Path, entries: &[ContactEntry]) -> Result<Vec<Contact>, ConfigError> {
    let text = toml::to_string(&ContactsFile {
        contact: entries.to_vec(),
    })
    .map_err(|e| err(path, e.to_string()))?;
    let text = format!(
        "# Varde's notification contacts (docs/notifications.md); written by the dashboard.\n{text}"
    );
    let contacts = parse_contacts(&text, path)?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, &text).map_err(|e| err(&tmp, e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(path, e.to_string()))?;
    Ok(contacts)
}

/// Reads and checks a contacts file (`[[contact]]` tables); names must be unique.
pub fn load_contacts(path: &Path) -> Result<Vec<Contact>, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
    parse_contacts(&text, path)
}

/// Checks the text of a contacts file (`path` for messages and relative secret files).
pub fn parse_contacts(text: &str, path: &Path) -> Result<Vec<Contact>, ConfigError> {
    let file: ContactsFile = toml::from_str(text).map_err(|e| err(path, e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out: Vec<Contact> = Vec::with_capacity(file.contact.len());
    for (i, entry) in file.contact.iter().enumerate() {
        let contact = entry.check(base).map_err(|m| {
            err(
                path,
                format!("contact {} ({:?}): {m}", i + 1, entry.name.trim()),
            )
        })?;
        if out.iter().any(|c| c.name == contact.name) {
            return Err(err(
                path,
                format!(
                    "contact {}: the name {:?} is used twice",
                    i + 1,
                    contact.name
                ),
            ));
        }
        out.push(contact);
    }
    Ok(out)
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Implicit,
    /// None: a relay on the loopback only.
    None,
}

/// `[smtp]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// The server.
    pub host: String,
    /// Its port; default 587 (starttls), 465 (implicit), 25 (none).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `implicit` or `none` (loopback only).
    #[serde(default)]
    pub tls: SmtpTls,
    /// Login name, when the server wants authentication.
    #[serde(default)]
    pub username: Option<String>,
    /// The environment variable holding the password (or `password_file`).
    #[serde(default)]
    pub password_env: Option<String>,
    /// A file holding the password, one line (or `password_env`).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// A PEM file of further CA certificates to trust (a private CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Seconds before a connection or command is given up; default 30.
    #[serde(default = "default_smtp_timeout")]
    pub timeout_s: u64,
}

fn default_smtp_timeout() -> u64 {
    30
}

impl SmtpSettings {
    /// The password, from its variable or file; `None` without authentication.
    pub fn password(&self) -> Result<Option<String>, String> {
        match (&self.password_env, &self.password_file) {
            (Some(var), _) => std::env::var(var)
                .map(Some)
                .map_err(|_| format!("smtp.password_env: the variable {var} is not set")),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map(|s| Some(s.trim_end_matches(['\r', '\n']).to_owned()))
                .map_err(|e| format!("smtp.password_file {}: {e}", file.display())),
            (None, None) => Ok(None),
        }
    }
}

/// `notify.toml`, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFile {
    /// The dashboard's address as municipalities reach it (links in every message).
    pub dashboard_url: String,
    /// The sender of e-mail (`Name <address>`).
    pub from: String,
    /// The contacts file.
    pub contacts: PathBuf,
    /// Seconds a digest covers; default 900.
    #[serde(default = "default_digest")]
    pub digest_interval_s: u64,
    /// Alerts at or above this level are sent sooner, in their own short digest; default
    /// `critical`.
    #[serde(default = "default_immediate_level")]
    pub immediate_level: String,
    /// Seconds an immediate digest covers; default 60.
    #[serde(default = "default_immediate")]
    pub immediate_interval_s: u64,
    /// Seconds an interval is held open after its end for alerts still being stored; default 120.
    #[serde(default = "default_grace")]
    pub grace_s: u64,
    /// Hours back a starting notifier looks for what it has not queued yet; default 24.
    #[serde(default = "default_catch_up")]
    pub catch_up_hours: u64,
    /// The TLP label of alert digests (alerts carry none of their own); default `AMBER`.
    #[serde(default = "default_alert_tlp")]
    pub alert_tlp: String,
    /// Tries before a notification is marked failed; default 8.
    #[serde(default = "default_attempts")]
    pub max_attempts: u32,
    /// The first wait before a retry, seconds; default 30 (doubling, with jitter).
    #[serde(default = "default_retry_min")]
    pub retry_min_s: u64,
    /// The longest wait, seconds; default 3600.
    #[serde(default = "default_retry_max")]
    pub retry_max_s: u64,
    /// Seconds between rounds; default 10.
    #[serde(default = "default_poll")]
    pub poll_interval_s: u64,
    /// Seconds a webhook request may take; default 15.
    #[serde(default = "default_webhook_timeout")]
    pub webhook_timeout_s: u64,
    /// `[smtp]`; needed when a contact has an e-mail address.
    #[serde(default)]
    pub smtp: Option<SmtpSettings>,
    /// `[clickhouse]`: the store (`varde notify`).
    pub clickhouse: varde_store::clickhouse::ClickHouseSettings,
}

fn default_digest() -> u64 {
    900
}
fn default_immediate_level() -> String {
    "critical".into()
}
fn default_immediate() -> u64 {
    60
}
fn default_grace() -> u64 {
    120
}
fn default_catch_up() -> u64 {
    24
}
fn default_alert_tlp() -> String {
    "AMBER".into()
}
fn default_attempts() -> u32 {
    8
}
fn default_retry_min() -> u64 {
    30
}
fn default_retry_max() -> u64 {
    3600
}
fn default_poll() -> u64 {
    10
}
fn default_webhook_timeout() -> u64 {
    15
}

/// The checked settings the notifier runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Links in messages start here (ends with `/`).
    pub dashboard_url: Url,
    /// E-mail sender.
    pub from: Mailbox,
    /// A digest's span.
    pub digest_interval: Duration,
    /// Alerts at or above go into immediate digests.
    pub immediate_level: Level,
    /// An immediate digest's span.
    pub immediate_interval: Duration,
    /// How long an interval is held open after its end.
    pub grace: Duration,
    /// How far back a round looks.
    pub catch_up: Duration,
    /// The label of alert digests.
    pub alert_tlp: Tlp,
    /// Tries before failed.
    pub max_attempts: u32,
    /// First retry wait.
    pub retry_min: Duration,
    /// Longest retry wait.
    pub retry_max: Duration,
    /// Between rounds.
    pub poll_interval: Duration,
    /// A webhook request's limit.
    pub webhook_timeout: Duration,
    /// SMTP, when any contact has e-mail.
    pub smtp: Option<SmtpSettings>,
}

impl Settings {
    /// Defaults for a dashboard at `dashboard_url` sending as `from` (tests and the demo).
    pub fn new(dashboard_url: Url, from: Mailbox) -> Self {
        Settings {
            dashboard_url,
            from,
            digest_interval: Duration::from_secs(default_digest()),
            immediate_level: Level::Critical,
            immediate_interval: Duration::from_secs(default_immediate()),
            grace: Duration::from_secs(default_grace()),
            catch_up: Duration::from_secs(default_catch_up() * 3600),
            alert_tlp: Tlp::Amber,
            max_attempts: default_attempts(),
            retry_min: Duration::from_secs(default_retry_min()),
            retry_max: Duration::from_secs(default_retry_max()),
            poll_interval: Duration::from_secs(default_poll()),
            webhook_timeout: Duration::from_secs(default_webhook_timeout()),
            smtp: None,
        }
    }
}

/// `notify.toml` read and checked, with its contacts.
#[derive(Debug, Clone)]
pub struct NotifyConfig {
    /// The settings.
    pub settings: Settings,
    /// The contacts.
    pub contacts: Vec<Contact>,
    /// The contacts file (the dashboard shows it).
    pub contacts_path: PathBuf,
    /// The store.
    pub clickhouse: varde_store::clickhouse::ClickHouseSettings,
}

impl NotifyConfig {
    /// Reads `notify.toml` and its contacts file; every problem is an error naming the field.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| err(path, e.to_string()))?;
        let file: NotifyFile = toml::from_str(&text).map_err(|e| err(path, e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let contacts_path = if file.contacts.is_absolute() {
            file.contacts.clone()
        } else {
            base.join(&file.contacts)
        };
        let settings = file.check().map_err(|m| err(path, m))?;
        let contacts = load_contacts(&contacts_path)?;
        if settings.smtp.is_none()
            && let Some(c) = contacts
                .iter()
                .find(|c| matches!(c.target, Target::Email(_)))
        {
            return Err(err(
                path,
                format!(
                    "contact {:?} has an e-mail address but there is no [smtp]",
                    c.name
                ),
            ));
        }
        Ok(NotifyConfig {
            settings,
            contacts,
            contacts_path,
            clickhouse: file.clickhouse,
        })
    }
}

impl NotifyFile {
    /// Checks the settings.
    pub fn check(&self) -> Result<Settings, String> {
        let mut dashboard_url = Url::parse(&self.dashboard_url)
            .map_err(|e| format!("dashboard_url {:?}: {e}", self.dashboard_url))?;
        if !matches!(dashboard_url.scheme(), "http" | "https") {
            return Err(format!(
                "dashboard_url {:?} is not http(s)",
                self.dashboard_url
            ));
        }
        if !dashboard_url.path().ends_with('/') {
            let path = format!("{}/", dashboard_url.path());
            dashboard_url.set_path(&path);
        }
        let from = parse_mailbox("from", &self.from)?;
        let immediate_level = Level::parse(&self.immediate_level).ok_or_else(|| {
            format!(
                "immediate_level {:?} is not a level (informational … critical)",
                self.immediate_level
            )
        })?;
        let alert_tlp = Tlp::parse(self.alert_tlp.trim_start_matches("TLP:")).ok_or_else(|| {
            format!(
                "alert_tlp {:?} is not a TLP 2.0 label (CLEAR, GREEN, AMBER, AMBER+STRICT, RED)",
                self.alert_tlp
            )
        })?;
        if self.digest_interval_s < 60 || self.digest_interval_s > 86_400 {
            return Err("digest_interval_s must lie between 60 and 86400".into());
        }
        if self.immediate_interval_s < 10 || self.immediate_interval_s > self.digest_interval_s {
            return Err("immediate_interval_s must lie between 10 and digest_interval_s".into());
        }
        if self.max_attempts == 0 {
            return Err("max_attempts must be at least 1".into());
        }
        if self.retry_min_s == 0 || self.retry_max_s < self.retry_min_s {
            return Err(
                "retry_min_s must be at least 1 and retry_max_s at least retry_min_s".into(),
            );
        }
        if self.catch_up_hours == 0 {
            return Err("catch_up_hours must be at least 1".into());
        }
        if let Some(smtp) = &self.smtp {
            header_safe("smtp.host", &smtp.host, 255)?;
            if smtp.tls == SmtpTls::None
                && !matches!(smtp.host.as_str(), "localhost" | "127.0.0.1" | "::1")
            {
                return Err(format!(
                    "smtp.tls = \"none\" sends mail in clear text: allowed to a relay on the loopback only, not {:?}",
                    smtp.host
                ));
            }
            let password = smtp.password_env.is_some() || smtp.password_file.is_some();
            if smtp.username.is_some() != password
                || (smtp.password_env.is_some() && smtp.password_file.is_some())
            {
                return Err(
                    "smtp: give username with one of password_env and password_file, or none of them"
                        .into(),
                );
            }
            smtp.password()?;
        }
        Ok(Settings {
            dashboard_url,
            from,
            digest_interval: Duration::from_secs(self.digest_interval_s),
            immediate_level,
            immediate_interval: Duration::from_secs(self.immediate_interval_s),
            grace: Duration::from_secs(self.grace_s),
            catch_up: Duration::from_secs(self.catch_up_hours * 3600),
            alert_tlp,
            max_attempts: self.max_attempts,
            retry_min: Duration::from_secs(self.retry_min_s),
            retry_max: Duration::from_secs(self.retry_max_s),
            poll_interval: Duration::from_secs(self.poll_interval_s.max(1)),
            webhook_timeout: Duration::from_secs(self.webhook_timeout_s.max(1)),
            smtp: self.smtp.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<Vec<Contact>, String> {
        parse_contacts(text, Path::new("/etc/varde/contacts.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_contact_is_checked_with_its_defaults() {
        let c = check(
            "[[contact]]\nname = \"Oslo IT-vakt\"\ntenant = \"0301\"\nemail = \"Kari Nordmann <it-vakt@oslo.kommune.no>\"\nnamed = true\n",
        )
        .expect("valid");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].alerts, Some(Level::High));
        assert!(c[0].incidents && c[0].campaigns && c[0].named);
        assert_eq!(c[0].collector_silent, None);
        assert_eq!(c[0].language, Language::Nb);
        assert_eq!(c[0].tenant().map(|k| k.name()), Some("Oslo"));
    }

    #[test]
    fn hostile_and_broken_contacts_are_refused_with_the_field_named() {
        for (text, expected) in [
            (
                "[[contact]]\nname = \"x\\r\\nBcc: evil@example.com\"\ntenant = \"0301\"\nemail = \"a@b.no\"\n",
                "control character",
            ),
            (
                "[[contact]]\nname = \"x\"\ntenant = \"0301\"\nemail = \"a@b.no\\r\\nBcc: evil@example.com\"\n",
                "control character",
            ),
            (
                "[[contact]]\nname = \"x\"\ntenant = \"0301\"\nemail = \"not an address\"\n",
                "not an e-mail address",
            ),
            (
                "[[contact]]\nname = \"x\"\ntenant = \"9999\"\nemail = \"a@b.no\"\n",
                "tenant \"9999\"",
            ),
            (
                "[[contact]]\nname = \"x\"\ntenant = \"0301\"\nwebhook = \"http://hooks.example.com/x\"\nwebhook_format = \"slack\"\n",
                "plain http",
            ),
            (
                "[[contact]]\nname = \"x\"\ntenant = \"0301\"\nwebhook = \"https://user:pw@hooks.example.com/x\"\nwebhook_format = \"slack\"\n",
                "credentials",
            ),
            (
                "[[contact]]\nname = \"x\"\ntenant = \"0301\"\nwebhook = \"https://hooks.example.com/x\"\n",
                "needs a signing secret",
            ),
            (
                "[[contact]]\nname = \"x\"\ntenant = \"0301\"\nemail = \"a@b.no\"\nalerts = \"severe\"\n",
                "not a level",
            ),
            (
                "[[contact]]\nname = \"x\"\ncomponent = \"nosuch\"\nemail = \"a@b.no\"\n",
                "not a known shared component",
            ),
            (
                "[[contact]]\nname = \"x\"\ntenant = \"0301\"\nemail = \"a@b.no\"\n[[contact]]\nname = \"x\"\ntenant = \"4601\"\nemail = \"c@d.no\"\n",
                "used twice",
            ),
            (
                "[[contact]]\nname = \"x\"\ntenant = \"0301\"\nemail = \"a@b.no\"\nphone = \"1\"\n",
                "unknown field",
            ),
        ] {
            let e = check(text).expect_err(text);
            assert!(e.contains(expected), "{e} (wanted {expected:?})");
            assert!(e.starts_with("/etc/varde/contacts.toml: "), "{e}");
        }
    }

    #[test]
    fn a_written_contacts_file_reads_back_the_same_and_a_bad_entry_writes_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("contacts.toml");
        let original = "[[contact]]\nname = \"Oslo\"\ntenant = \"0301\"\nemail = \"it@oslo.example\"\nnamed = true\nlanguage = \"en\"\nalerts = \"critical\"\ncollector_silent_min = 30\n";
        std::fs::write(&path, original).expect("write");
        let mut entries = read_entries(&path).expect("entries");
        let before = load_contacts(&path).expect("contacts");
        entries.push(ContactEntry {
            name: "Bergen".into(),
            tenant: Some("4601".into()),
            component: None,
            email: None,
            webhook: Some("https://hooks.bergen.example/x".into()),
            webhook_format: WebhookFormat::Slack,
            webhook_secret_env: None,
            webhook_secret_file: None,
            language: Language::Nb,
            named: false,
            alerts: "high".into(),
            incidents: true,
            campaigns: false,
            collector_silent_min: 0,
        });
        let written = write_contacts(&path, &entries).expect("write");
        assert_eq!(
            written[0], before[0],
            "the first contact reads back the same"
        );
        assert_eq!(load_contacts(&path).expect("reload"), written);
        assert_eq!(read_entries(&path).expect("entries"), entries);
        // A hostile entry: refused, and the file is as it was.
        let text = std::fs::read_to_string(&path).expect("read");
        let mut bad = entries.clone();
        bad[1].name = "x\nBcc: evil@example.com".into();
        let e = write_contacts(&path, &bad).expect_err("refused");
        assert!(e.to_string().contains("control character"), "{e}");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    }

    #[test]
    fn webhook_urls_are_https_or_loopback() {
        assert!(parse_webhook_url("w", "https://hooks.example.com/a").is_ok());
        assert!(parse_webhook_url("w", "http://127.0.0.1:9000/a").is_ok());
        assert!(parse_webhook_url("w", "http://[::1]:9000/a").is_ok());
        assert!(parse_webhook_url("w", "ftp://example.com/a").is_err());
        assert!(parse_webhook_url("w", "https://exa mple.com/").is_err());
    }
}
