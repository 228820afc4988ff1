//! The notification outbox: every message Varde sends a municipality is a row here before it is
//! sent, and every try to send it is a row after.
//!
//! Both tables are append-only (DESIGN.md): a [`Notification`] is written once under an id
//! derived from what it is about (the contact, the kind, the interval or the object), so a
//! producer that runs again after a crash writes the same row and it collapses; an
//! [`Attempt`] records one try and its outcome. The state of a notification is its newest
//! attempt ([`OutboxEntry::state`]): none yet (queued), `retry` (queued again from `next_us`),
//! `sent` or `failed` (given up after the configured number of tries, shown to analysts).

use std::future::Future;

use crate::Result;

/// How a notification travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Channel {
    /// E-mail over SMTP.
    Email,
    /// An HTTP POST, signed.
    Webhook,
}

impl Channel {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Channel::Email => "email",
            Channel::Webhook => "webhook",
        }
    }

    /// The channel of a stored name.
    pub fn parse(s: &str) -> Option<Channel> {
        match s {
            "email" => Some(Channel::Email),
            "webhook" => Some(Channel::Webhook),
            _ => None,
        }
    }
}

/// One message to one contact, as it will be sent (rendered once, when queued).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// Deterministic from what the message is about; also its idempotency key (the e-mail's
    /// `Message-ID`, the webhook's delivery id).
    pub notification_id: [u8; 16],
    /// When it was queued, µs since the epoch.
    pub created_us: i64,
    /// The contact's name (as configured).
    pub contact: String,
    /// The kommunenummer it concerns; empty for a shared component's owner.
    pub tenant: String,
    /// E-mail or webhook.
    pub channel: Channel,
    /// The address or URL it goes to.
    pub target: String,
    /// What it is: `digest`, `immediate`, `incident`, `collector_silent`, `test`.
    pub kind: String,
    /// Its TLP 2.0 label, as in the message (`TLP:AMBER`, …).
    pub tlp: String,
    /// The subject (e-mail) or title.
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body (e-mail); empty for a webhook.
    pub html: String,
    /// The request body (webhook); empty for an e-mail.
    pub payload: String,
}

/// How one try ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Accepted by the server or receiver.
    Sent,
    /// Not accepted; tried again from `next_us`.
    Retry,
    /// Not accepted, and no more tries.
    Failed,
}

impl Outcome {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Sent => "sent",
            Outcome::Retry => "retry",
            Outcome::Failed => "failed",
        }
    }

    /// The outcome of a stored name.
    pub fn parse(s: &str) -> Option<Outcome> {
        match s {
            "sent" => Some(Outcome::Sent),
            "retry" => Some(Outcome::Retry),
            "failed" => Some(Outcome::Failed),
            _ => None,
        }
    }
}

/// One try to send a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The notification.
    pub notification_id: [u8; 16],
    /// 1 for the first try.
    pub attempt: u32,
    /// When it ended, µs since the epoch.
    pub at_us: i64,
    /// How.
    pub outcome: Outcome,
    /// What the server or receiver said, or why it could not be reached; empty when sent.
    pub error: String,
    /// For a retry: not before this, µs since the epoch.
    pub next_us: i64,
}

/// Where a notification stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// To be sent from this time on (µs; the creation time when never tried).
    Queued {
        /// Not before.
        due_us: i64,
        /// Tries so far.
        tries: u32,
    },
    /// Sent at this time.
    Sent {
        /// When.
        at_us: i64,
    },
    /// Given up.
    Failed {
        /// When.
        at_us: i64,
    },
}

/// A notification and its tries, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The message.
    pub notification: Notification,
    /// Its tries, in order.
    pub attempts: Vec<Attempt>,
}

impl OutboxEntry {
    /// The state its newest try left it in. A try recorded twice (a retried write) counts once:
    /// the highest attempt number wins, and of one number a final outcome wins.
    pub fn state(&self) -> State {
        let newest = self.attempts.iter().max_by_key(|a| {
            (
                a.attempt,
                matches!(a.outcome, Outcome::Sent | Outcome::Failed),
            )
        });
        match newest {
            None => State::Queued {
                due_us: self.notification.created_us,
                tries: 0,
            },
            Some(a) => match a.outcome {
                Outcome::Sent => State::Sent { at_us: a.at_us },
                Outcome::Failed => State::Failed { at_us: a.at_us },
                Outcome::Retry => State::Queued {
                    due_us: a.next_us,
                    tries: a.attempt,
                },
            },
        }
    }
}

/// The outbox tables of a store.
pub trait Outbox {
    /// Queues notifications; one already queued under the same id stays as it was.
    fn write_notifications(
        &self,
        notifications: &[Notification],
    ) -> impl Future<Output = Result<u64>> + Send;

    /// Records tries.
    fn write_attempts(&self, attempts: &[Attempt]) -> impl Future<Output = Result<u64>> + Send;

    /// The notifications queued at or after `since_us`, newest first, at most `limit`, each
    /// with its tries.
    fn outbox(
        &self,
        since_us: i64,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<OutboxEntry>>> + Send;

    /// The ids among `ids` that are queued already (any state).
    fn queued_ids(&self, ids: &[[u8; 16]]) -> impl Future<Output = Result<Vec<[u8; 16]>>> + Send;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attempts: Vec<(u32, Outcome, i64)>) -> OutboxEntry {
        OutboxEntry {
            notification: Notification {
                notification_id: [1; 16],
                created_us: 100,
                contact: "c".into(),
                tenant: "0301".into(),
                channel: Channel::Email,
                target: "it@example.no".into(),
                kind: "digest".into(),
                tlp: "TLP:AMBER".into(),
                subject: "s".into(),
                text: "t".into(),
                html: String::new(),
                payload: String::new(),
            },
            attempts: attempts
                .into_iter()
                .map(|(attempt, outcome, at_us)| Attempt {
                    notification_id: [1; 16],
                    attempt,
                    at_us,
                    outcome,
                    error: String::new(),
                    next_us: at_us + 10,
                })
                .collect(),
        }
    }

    #[test]
    fn the_newest_try_decides_the_state() {
        assert_eq!(
            entry(vec![]).state(),
            State::Queued {
                due_us: 100,
                tries: 0
            }
        );
        assert_eq!(
            entry(vec![(1, Outcome::Retry, 200)]).state(),
            State::Queued {
                due_us: 210,
                tries: 1
            }
        );
        assert_eq!(
            entry(vec![(2, Outcome::Sent, 300), (1, Outcome::Retry, 200)]).state(),
            State::Sent { at_us: 300 }
        );
        // The same try recorded twice, once before the sender knew it had gone out.
        assert_eq!(
            entry(vec![(1, Outcome::Retry, 200), (1, Outcome::Failed, 200)]).state(),
            State::Failed { at_us: 200 }
        );
    }
}
