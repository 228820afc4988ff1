//! Varde's notifications: each municipality told about its own alerts, incidents, campaigns
//! and silent collectors, by e-mail and signed webhooks, through a durable outbox, within
//! TLP 2.0 (docs/notifications.md).
//!
//! - [`config`]: `notify.toml` and the contacts file, checked whole when read.
//! - [`compose`]: what each message says, in bokmål or English, and the one TLP gate.
//! - [`deliver`]: SMTP (lettre) and webhooks (reqwest, HMAC-SHA-256 signatures).
//! - [`run`]: the rounds that queue into the outbox and send from it, at least once, each
//!   message under its own idempotency key.

pub mod compose;
pub mod config;
pub mod deliver;
pub mod run;

pub use config::{Contact, NotifyConfig, Settings};
pub use run::Notifier;
