//! The notifier's rounds: queue what is due ([`Notifier::produce`]), then send what is queued
//! ([`Notifier::send_due`]).
//!
//! **Nothing lost, nothing visibly doubled.** A notification is an outbox row before anything
//! is sent, under an id derived from what it is about (contact, kind, interval or object), so
//! a notifier that crashes while queuing queues the same ids again and the rows collapse; one
//! that crashes after sending and before recording the try sends that row again under the same
//! idempotency key (`Message-ID`, `Varde-Delivery`), which mail clients and receivers use to
//! drop the second copy. Each try is recorded as soon as it ends.
//!
//! **Intervals.** A digest covers the alerts detected in one interval of `digest_interval`
//! (alerts at or above `immediate_level`: of `immediate_interval`), aligned to the epoch; it is
//! queued once the interval has ended and `grace` has passed (for alerts still being written).
//! A starting notifier looks back `catch_up` for intervals it has not queued yet. An alert
//! stored later than `grace` after its detection falls into no digest; an alert the pipeline
//! detects again (a replayed batch) counts in the interval of its newest detection.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use backon::{BackoffBuilder, ExponentialBuilder};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::{info, warn};
use varde_core::Kommunenummer;
use varde_store::incident::Incident;
use varde_store::outbox::{Attempt, Channel, Notification, Outbox, Outcome, State};
use varde_store::{Alert, EventStore};

use crate::compose::{self, IncidentNews, Message};
use crate::config::{Contact, Level, Scope, Settings, Target, WebhookFormat};
use crate::deliver::{DeliveryError, Mailer, Webhooks};

/// Most alerts one round reads (a round that finds more queues digests of the first ones and
/// says so in the log).
pub const ROUND_ALERTS_MAX: u64 = 200_000;

/// Notifications older than this are no longer sent (nor tried again).
pub const SEND_HORIZON: Duration = Duration::from_secs(7 * 86_400);

/// Counters since start.
#[derive(Debug, Default)]
pub struct Stats {
    /// Rows queued.
    pub queued: AtomicU64,
    /// Tries that got through.
    pub sent: AtomicU64,
    /// Tries to be repeated.
    pub retried: AtomicU64,
    /// Notifications given up.
    pub failed: AtomicU64,
    /// Rounds that could not read or write the store.
    pub store_errors: AtomicU64,
}

/// What one sending round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendReport {
    /// Sent.
    pub sent: u64,
    /// To be tried again.
    pub retried: u64,
    /// Given up.
    pub failed: u64,
}

/// Queues and sends notifications from a store.
pub struct Notifier<S> {
    store: S,
    settings: Settings,
    /// The contacts in use; replaced whole when the contacts file changes.
    contacts: RwLock<Arc<Vec<Contact>>>,
    /// The contacts file and the modification time it was read at, to reload it on change.
    contacts_file: Option<(PathBuf, Mutex<Option<SystemTime>>)>,
    mailer: Option<Mailer>,
    webhooks: Webhooks,
    stats: Arc<Stats>,
}

/// A notification's id: a digest of what it is about.
pub fn notification_id(parts: &[&[u8]]) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(b"varde/notification/v1\0");
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    let d = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    id
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// The time now, µs since the epoch.
pub fn now_us() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

impl<S: EventStore + Outbox + Sync> Notifier<S> {
    /// A notifier over `store` for `contacts`; fails when e-mail is configured but cannot be
    /// set up (the CA file, the password).
    pub fn new(store: S, settings: Settings, contacts: Vec<Contact>) -> Result<Self, String> {
        let mailer = match &settings.smtp {
            Some(smtp) => Some(Mailer::new(smtp, settings.from.clone())?),
            None => None,
        };
        let webhooks = Webhooks::new(settings.webhook_timeout)?;
        Ok(Notifier {
            store,
            settings,
            contacts: RwLock::new(Arc::new(contacts)),
            contacts_file: None,
            mailer,
            webhooks,
            stats: Arc::new(Stats::default()),
        })
    }

    /// The counters.
    pub fn stats(&self) -> Arc<Stats> {
        self.stats.clone()
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Reloads the contacts from `path` whenever its modification time changes (the
    /// dashboard's admins edit it); a file that no longer checks out is logged and the contacts
    /// in use are kept.
    pub fn with_contacts_file(mut self, path: PathBuf) -> Self {
        let seen = modified(&path);
        self.contacts_file = Some((path, Mutex::new(seen)));
        self
    }

    /// The contacts in use.
    pub fn contacts(&self) -> Arc<Vec<Contact>> {
        self.contacts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Rereads the contacts file when it changed since it was last read.
    pub fn reload_contacts(&self) {
        let Some((path, seen)) = &self.contacts_file else {
            return;
        };
        let now = modified(path);
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        if now == *seen {
            return;
        }
        *seen = now;
        match crate::config::load_contacts(path) {
            Ok(c) => {
                info!(contacts = c.len(), file = %path.display(), "contacts reloaded");
                *self.contacts.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
            }
            Err(e) => {
                warn!(error = %e, "the contacts file changed but does not check out; the contacts in use are kept");
            }
        }
    }

    fn row(&self, id: [u8; 16], created_us: i64, contact: &Contact, m: &Message) -> Notification {
        outbox_row(id, created_us, contact, m)
    }

    /// Queues a test message to the contact named `name` (the dashboard's "send test");
    /// returns its id.
    pub async fn queue_test(&self, name: &str, now_us: i64) -> Result<[u8; 16], String> {
        let contacts = self.contacts();
        let contact = contacts
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| format!("no contact is named {name:?}"))?;
        let row = test_notification(&self.settings, contact, now_us);
        self.store
            .write_notifications(std::slice::from_ref(&row))
            .await
            .map_err(|e| format!("queuing the test message: {e}"))?;
        self.stats.queued.fetch_add(1, Ordering::Relaxed);
        Ok(row.notification_id)
    }

    /// Queues every notification that is due at `now_us` and not queued yet; returns how many.
    pub async fn produce(&self, now_us: i64) -> Result<u64, varde_store::Error> {
        let grace = i64::try_from(self.settings.grace.as_micros()).unwrap_or(i64::MAX);
        self.produce_until(now_us, now_us - grace).await
    }

    /// As [`Notifier::produce`], with the intervals that end at or before `closed_until` taken
    /// as closed (`varde demo` closes the current ones at once rather than wait for their end).
    pub async fn produce_until(
        &self,
        now_us: i64,
        closed_until: i64,
    ) -> Result<u64, varde_store::Error> {
        let s = &self.settings;
        let contacts = self.contacts();
        let horizon = now_us - i64::try_from(s.catch_up.as_micros()).unwrap_or(i64::MAX);
        let digest_us = i64::try_from(s.digest_interval.as_micros()).unwrap_or(i64::MAX);
        let immediate_us = i64::try_from(s.immediate_interval.as_micros()).unwrap_or(i64::MAX);
        // Everything detected from the first digest interval after the horizon to the end of
        // the last closed interval of either cadence.
        let from = horizon.div_euclid(immediate_us) * immediate_us;
        let to = closed_until.div_euclid(immediate_us) * immediate_us;
        let alerts = if to > from && contacts.iter().any(|c| c.alerts.is_some() || c.campaigns) {
            self.store
                .alerts_detected(from, to, ROUND_ALERTS_MAX)
                .await?
        } else {
            Vec::new()
        };
        if alerts.len() as u64 >= ROUND_ALERTS_MAX {
            warn!(
                alerts = alerts.len(),
                "more alerts in the catch-up span than one round reads: the digests count the first ones"
            );
        }
        // Each row is stamped with the round's time: when it was queued.
        let mut candidates: Vec<([u8; 16], &Contact, Message)> = Vec::new();
        for contact in contacts.iter() {
            // Alert digests of both cadences.
            let mut buckets: BTreeMap<(bool, i64), Vec<&Alert>> = BTreeMap::new();
            for a in alerts.iter().filter(|a| compose::wants(contact, a)) {
                let immediate = Level::parse(&a.rule_level).unwrap_or(Level::Medium)
                    >= s.immediate_level
                    && contact.alerts.is_some();
                let span = if immediate { immediate_us } else { digest_us };
                let k = a.detect_time_us.div_euclid(span);
                if (k + 1) * span > closed_until || k * span < horizon - span {
                    continue;
                }
                buckets.entry((immediate, k)).or_default().push(a);
            }
            for ((immediate, k), list) in buckets {
                let span = if immediate { immediate_us } else { digest_us };
                let kind: &[u8] = if immediate { b"immediate" } else { b"digest" };
                let id = notification_id(&[contact.name.as_bytes(), kind, &k.to_be_bytes()]);
                let m = compose::digest(s, contact, &list, (k * span, (k + 1) * span), immediate);
                candidates.push((id, contact, m));
            }
        }
        // Incidents and silent collectors, per municipality that has contacts for them.
        let mut tenants: Vec<Kommunenummer> = contacts
            .iter()
            .filter(|c| c.incidents || c.collector_silent.is_some())
            .filter_map(Contact::tenant)
            .collect();
        tenants.sort_by(|a, b| a.as_str().cmp(b.as_str()));
        tenants.dedup();
        let mut incidents: HashMap<Kommunenummer, Vec<Incident>> = HashMap::new();
        let mut collectors: HashMap<Kommunenummer, Vec<varde_store::CollectorSeen>> =
            HashMap::new();
        for t in tenants {
            let own = contacts.iter().filter(|c| c.tenant() == Some(t));
            if own.clone().any(|c| c.incidents) {
                let changes = self.store.incident_changes(Some(t), None).await?;
                incidents.insert(t, Incident::fold(&changes));
            }
            if own.clone().any(|c| c.collector_silent.is_some()) {
                collectors.insert(t, self.store.collectors(Some(t), now_us).await?);
            }
        }
        for contact in contacts.iter() {
            let Some(t) = contact.tenant() else { continue };
            if contact.incidents {
                for inc in incidents.get(&t).into_iter().flatten() {
                    let at = inc.changed_at_us;
                    let k = at.div_euclid(immediate_us);
                    if at < horizon || (k + 1) * immediate_us > closed_until {
                        continue;
                    }
                    let news = if inc.status == varde_store::incident::IncidentStatus::Closed {
                        IncidentNews::Closed
                    } else if inc.opened_at_us.div_euclid(immediate_us) == k {
                        IncidentNews::Opened
                    } else {
                        IncidentNews::Updated
                    };
                    let id = notification_id(&[
                        contact.name.as_bytes(),
                        b"incident",
                        &inc.incident_id,
                        &k.to_be_bytes(),
                    ]);
                    let m = compose::incident(s, contact, inc, news);
                    candidates.push((id, contact, m));
                }
            }
            if let Some(limit) = contact.collector_silent {
                let limit = i64::try_from(limit.as_micros()).unwrap_or(i64::MAX);
                for c in collectors.get(&t).into_iter().flatten() {
                    if now_us - c.last_receive_us < limit || c.last_receive_us < horizon - limit {
                        continue;
                    }
                    let id = notification_id(&[
                        contact.name.as_bytes(),
                        b"collector_silent",
                        c.collector_id.as_bytes(),
                        &c.last_receive_us.to_be_bytes(),
                    ]);
                    let m =
                        compose::collector_silent(s, contact, &c.collector_id, c.last_receive_us);
                    candidates.push((id, contact, m));
                }
            }
        }
        if candidates.is_empty() {
            return Ok(0);
        }
        let ids: Vec<[u8; 16]> = candidates.iter().map(|c| c.0).collect();
        let queued: std::collections::HashSet<[u8; 16]> =
            self.store.queued_ids(&ids).await?.into_iter().collect();
        let rows: Vec<Notification> = candidates
            .iter()
            .filter(|(id, ..)| !queued.contains(id))
            .map(|(id, contact, m)| self.row(*id, now_us, contact, m))
            .collect();
        if rows.is_empty() {
            return Ok(0);
        }
        self.store.write_notifications(&rows).await?;
        let n = rows.len() as u64;
        self.stats.queued.fetch_add(n, Ordering::Relaxed);
        info!(queued = n, "notifications queued");
        Ok(n)
    }

    /// The wait before try `attempt + 1`: exponential from `retry_min`, at most `retry_max`,
    /// with jitter.
    fn backoff(&self, attempt: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.settings.retry_min)
            .with_max_delay(self.settings.retry_max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempt.saturating_sub(1) as usize)
            .unwrap_or(self.settings.retry_max)
    }

    /// Sends one queued notification now and records the try.
    async fn send_one(&self, n: &Notification, tries: u32) -> Result<Outcome, varde_store::Error> {
        let contacts = self.contacts();
        let contact = contacts.iter().find(|c| c.name == n.contact);
        let result = match (contact, n.channel) {
            (None, _) => Err(DeliveryError::Permanent(format!(
                "no contact is named {:?} any more",
                n.contact
            ))),
            (Some(_), Channel::Email) => match &self.mailer {
                Some(m) => m.send(n).await,
                None => Err(DeliveryError::Permanent(
                    "e-mail is not configured ([smtp])".into(),
                )),
            },
            (Some(c), Channel::Webhook) => {
                let secret = match &c.target {
                    Target::Webhook { secret, .. } => secret.as_deref(),
                    Target::Email(_) => None,
                };
                self.webhooks
                    .send(n, secret, now_us().div_euclid(1_000_000))
                    .await
            }
        };
        let attempt = tries + 1;
        let ended = now_us();
        let (outcome, error, next_us) = match result {
            Ok(()) => (Outcome::Sent, String::new(), 0),
            Err(DeliveryError::Permanent(e)) => (Outcome::Failed, e, 0),
            Err(DeliveryError::Transient(e)) if attempt >= self.settings.max_attempts => {
                (Outcome::Failed, format!("{e} (after {attempt} tries)"), 0)
            }
            Err(DeliveryError::Transient(e)) => {
                let wait = i64::try_from(self.backoff(attempt).as_micros()).unwrap_or(i64::MAX);
                (Outcome::Retry, e, ended.saturating_add(wait))
            }
        };
        match outcome {
            Outcome::Sent => self.stats.sent.fetch_add(1, Ordering::Relaxed),
            Outcome::Retry => self.stats.retried.fetch_add(1, Ordering::Relaxed),
            Outcome::Failed => self.stats.failed.fetch_add(1, Ordering::Relaxed),
        };
        if outcome != Outcome::Sent {
            warn!(
                notification = %hex(&n.notification_id),
                contact = %n.contact,
                attempt,
                outcome = outcome.as_str(),
                %error,
                "notification not delivered"
            );
        }
        self.store
            .write_attempts(&[Attempt {
                notification_id: n.notification_id,
                attempt,
                at_us: ended,
                outcome,
                error,
                next_us,
            }])
            .await?;
        Ok(outcome)
    }

    /// Sends every queued notification that is due at `now_us`, oldest first.
    pub async fn send_due(&self, now_us: i64) -> Result<SendReport, varde_store::Error> {
        let since = now_us - i64::try_from(SEND_HORIZON.as_micros()).unwrap_or(i64::MAX);
        let mut due: Vec<(Notification, u32)> = self
            .store
            .outbox(since, 100_000)
            .await?
            .into_iter()
            .filter_map(|e| match e.state() {
                State::Queued { due_us, tries } if due_us <= now_us => {
                    Some((e.notification, tries))
                }
                _ => None,
            })
            .collect();
        due.sort_by_key(|(n, _)| (n.created_us, n.notification_id));
        let mut report = SendReport::default();
        for (n, tries) in &due {
            match self.send_one(n, *tries).await? {
                Outcome::Sent => report.sent += 1,
                Outcome::Retry => report.retried += 1,
                Outcome::Failed => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// One round: reload the contacts if their file changed, queue, then send.
    pub async fn round(&self, now_us: i64) -> Result<SendReport, varde_store::Error> {
        self.reload_contacts();
        self.produce(now_us).await?;
        self.send_due(now_us).await
    }

    /// Rounds every `poll_interval` until `shutdown` turns true; a round that cannot reach the
    /// store is counted, logged and tried again at the next.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) {
        info!(
            contacts = self.contacts().len(),
            digest_interval_s = self.settings.digest_interval.as_secs(),
            "notifier running"
        );
        loop {
            if let Err(e) = self.round(now_us()).await {
                self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
                warn!(error = %e, "notification round failed; trying again next round");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.poll_interval) => {}
                _ = shutdown.changed() => {}
            }
            if *shutdown.borrow() {
                break;
            }
        }
    }
}

/// The outbox row of message `m` for `contact`: its channel and target, and for a webhook
/// the body in the contact's format.
pub fn outbox_row(id: [u8; 16], created_us: i64, contact: &Contact, m: &Message) -> Notification {
    let (channel, target, html, payload) = match &contact.target {
        Target::Email(mailbox) => (
            Channel::Email,
            mailbox.to_string(),
            m.html.clone(),
            String::new(),
        ),
        Target::Webhook { url, format, .. } => (
            Channel::Webhook,
            url.to_string(),
            String::new(),
            match format {
                WebhookFormat::Varde => compose::varde_payload(&hex(&id), created_us, contact, m),
                WebhookFormat::Slack => compose::slack_payload(m),
                WebhookFormat::Teams => compose::teams_payload(m),
            },
        ),
    };
    Notification {
        notification_id: id,
        created_us,
        contact: contact.name.clone(),
        tenant: contact
            .tenant()
            .map(|k| k.as_str().to_owned())
            .unwrap_or_default(),
        channel,
        target,
        kind: m.kind.to_owned(),
        tlp: compose::label(m.tlp),
        subject: m.subject.clone(),
        text: m.text.clone(),
        html,
        payload,
    }
}

/// A test message to `contact` queued at `now_us` (the dashboard's "send test", `varde notify
/// --test`).
pub fn test_notification(settings: &Settings, contact: &Contact, now_us: i64) -> Notification {
    let id = notification_id(&[contact.name.as_bytes(), b"test", &now_us.to_be_bytes()]);
    let m = compose::test_message(settings, contact, now_us);
    outbox_row(id, now_us, contact, &m)
}

/// One line about a contact: name, whose data, where, what it wants.
pub fn describe(c: &Contact) -> String {
    let whose = match &c.scope {
        Scope::Municipality(k) => format!("{} {}", k.as_str(), k.name()),
        Scope::Component(id) => format!("owner of {id}"),
    };
    let target = match &c.target {
        Target::Email(m) => format!("e-mail {m}"),
        Target::Webhook {
            url,
            format,
            secret,
        } => format!(
            "webhook {url} ({format:?}, {})",
            if secret.is_some() {
                "signed"
            } else {
                "unsigned"
            }
        ),
    };
    let mut wants = Vec::new();
    if let Some(l) = c.alerts {
        wants.push(format!("alerts ≥ {}", l.as_str()));
    }
    if c.campaigns {
        wants.push("campaigns".into());
    }
    if c.incidents {
        wants.push("incidents".into());
    }
    if let Some(d) = c.collector_silent {
        wants.push(format!("collectors silent ≥ {} min", d.as_secs() / 60));
    }
    format!(
        "{:?}: {whose}, {target}, {}, {:?}, {}",
        c.name,
        if c.named {
            "named (TLP:AMBER content)"
        } else {
            "not named (no TLP:AMBER content)"
        },
        c.language,
        wants.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_digests_of_their_framed_parts() {
        let a = notification_id(&[b"ab", b"c"]);
        let b = notification_id(&[b"a", b"bc"]);
        assert_ne!(a, b, "the parts are length-framed");
        assert_eq!(a, notification_id(&[b"ab", b"c"]));
    }
}
