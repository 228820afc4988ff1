//! Sending one outbox row: e-mail over SMTP (lettre) or a signed webhook (reqwest).
//!
//! Both carry the notification's id as their idempotency key, so a row sent again after a
//! crash (sent, but the try not yet recorded) is recognisably the same message: the e-mail's
//! `Message-ID` is `<id@sender-domain>`, the webhook's `Varde-Delivery` header is the id.
//!
//! **Webhook signatures** (docs/notifications.md): `Varde-Timestamp` is the Unix time in
//! seconds of the request, `Varde-Signature` is `v1=` and the lowercase hex HMAC-SHA-256, keyed
//! with the contact's secret, of the timestamp, a full stop and the exact body bytes. A
//! receiver recomputes it, compares in constant time, and refuses timestamps more than five
//! minutes from its clock (the replay window). Redirects are not followed (the signature and
//! body would go to a host nobody configured).

use std::time::Duration;

use hmac::{Hmac, Mac};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use sha2::Sha256;
use varde_store::outbox::Notification;

use crate::config::{SmtpSettings, SmtpTls};

/// Why a try did not get through.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// Worth trying again (a 4xx SMTP reply, a 5xx or 429 HTTP status, no connection, a
    /// timeout).
    #[error("{0}")]
    Transient(String),
    /// Trying again will not help (a 5xx SMTP reply such as an unknown mailbox, a 4xx HTTP
    /// status, a message that cannot be built).
    #[error("{0}")]
    Permanent(String),
}

/// The header names of a signed webhook request.
pub const DELIVERY_HEADER: &str = "Varde-Delivery";
/// See [`DELIVERY_HEADER`].
pub const TIMESTAMP_HEADER: &str = "Varde-Timestamp";
/// See [`DELIVERY_HEADER`].
pub const SIGNATURE_HEADER: &str = "Varde-Signature";

/// `v1=` and the hex HMAC-SHA-256 of `"{timestamp}.{body}"` under `secret`.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    // HMAC takes a key of any length.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let tag = mac.finalize().into_bytes();
    let mut out = String::with_capacity(3 + 64);
    out.push_str("v1=");
    for b in tag {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

/// A receiver's check of a signed request: the signature matches (compared in constant time)
/// and the timestamp lies within `window_s` of `now_s`. The Rust twin of the Python in
/// docs/notifications.md.
pub fn verify(
    secret: &[u8],
    timestamp: &str,
    body: &[u8],
    signature: &str,
    now_s: i64,
    window_s: i64,
) -> bool {
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if (now_s - ts).abs() > window_s {
        return false;
    }
    let Some(hex_tag) = signature.strip_prefix("v1=") else {
        return false;
    };
    let Some(tag) = (0..hex_tag.len())
        .step_by(2)
        .map(|i| {
            hex_tag
                .get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
    else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&tag).is_ok()
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends e-mail through the configured SMTP server.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Mailer {
    /// A mailer for `[smtp]`, sending as `from`.
    pub fn new(smtp: &SmtpSettings, from: Mailbox) -> Result<Self, String> {
        let port = smtp.port.unwrap_or(match smtp.tls {
            SmtpTls::Starttls => 587,
            SmtpTls::Implicit => 465,
            SmtpTls::None => 25,
        });
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(port)
            .timeout(Some(Duration::from_secs(smtp.timeout_s.max(1))));
        if smtp.tls != SmtpTls::None {
            let mut params = TlsParameters::builder(smtp.host.clone());
            if let Some(file) = &smtp.ca_file {
                let pem = std::fs::read(file)
                    .map_err(|e| format!("smtp.ca_file {}: {e}", file.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| format!("smtp.ca_file {}: {e}", file.display()))?;
                params = params.add_root_certificate(cert);
            }
            let params = params
                .build_rustls()
                .map_err(|e| format!("smtp TLS settings: {e}"))?;
            builder = builder.tls(match smtp.tls {
                SmtpTls::Implicit => Tls::Wrapper(params),
                _ => Tls::Required(params),
            });
        } else {
            builder = builder.tls(Tls::None);
        }
        if let (Some(user), Some(password)) = (&smtp.username, smtp.password()?) {
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
        })
    }

    /// The message as it goes out: text and HTML parts, its id as `Message-ID`.
    pub fn message(&self, n: &Notification) -> Result<lettre::Message, DeliveryError> {
        let to: Mailbox = n.target.parse().map_err(|e| {
            DeliveryError::Permanent(format!("{:?} is not an e-mail address: {e}", n.target))
        })?;
        let domain = self.from.email.domain().to_owned();
        lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(n.subject.clone())
            .message_id(Some(format!("<{}@{domain}>", hex(&n.notification_id))))
            .multipart(MultiPart::alternative_plain_html(
                n.text.clone(),
                n.html.clone(),
            ))
            .map_err(|e| DeliveryError::Permanent(format!("the message cannot be built: {e}")))
    }

    /// Sends one e-mail notification.
    pub async fn send(&self, n: &Notification) -> Result<(), DeliveryError> {
        let message = self.message(n)?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => Err(DeliveryError::Permanent(format!("SMTP: {e}"))),
            Err(e) => Err(DeliveryError::Transient(format!("SMTP: {e}"))),
        }
    }
}

/// Posts webhook notifications.
#[derive(Clone)]
pub struct Webhooks {
    client: reqwest::Client,
}

impl Webhooks {
    /// A client whose requests give up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("varde/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("the webhook client: {e}"))?;
        Ok(Webhooks { client })
    }

    /// Posts one webhook notification, signed with `secret` when there is one, at Unix time
    /// `now_s`.
    pub async fn send(
        &self,
        n: &Notification,
        secret: Option<&[u8]>,
        now_s: i64,
    ) -> Result<(), DeliveryError> {
        let body = n.payload.clone().into_bytes();
        let mut request = self
            .client
            .post(&n.target)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(DELIVERY_HEADER, hex(&n.notification_id));
        if let Some(secret) = secret {
            request = request
                .header(TIMESTAMP_HEADER, now_s.to_string())
                .header(SIGNATURE_HEADER, signature(secret, now_s, &body));
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| DeliveryError::Transient(format!("webhook: {e}")))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let said: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
        let what = format!("webhook: HTTP {status}: {said}");
        if status.is_server_error()
            || status == reqwest::StatusCode::TOO_MANY_REQUESTS
            || status == reqwest::StatusCode::REQUEST_TIMEOUT
        {
            Err(DeliveryError::Transient(what))
        } else {
            Err(DeliveryError::Permanent(what))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Computed independently with OpenSSL (the docs' shell check):
        //   printf '%s' '1700000000.{"a":1}' | openssl dgst -sha256 -hmac 'a-secret-of-16-bytes'
        assert_eq!(
            signature(b"a-secret-of-16-bytes", 1_700_000_000, br#"{"a":1}"#),
            "v1=001f7b5df107572ddd8913cfe09db99120e472c5ca61a1f99f60db0123c42104"
        );
    }

    #[test]
    fn a_receiver_accepts_the_signature_and_refuses_a_wrong_secret_a_changed_body_or_a_replay() {
        let sig = "v1=001f7b5df107572ddd8913cfe09db99120e472c5ca61a1f99f60db0123c42104";
        let body = br#"{"a":1}"#;
        let ok = |secret: &[u8], body: &[u8], sig: &str, now: i64| {
            verify(secret, "1700000000", body, sig, now, 300)
        };
        assert!(ok(b"a-secret-of-16-bytes", body, sig, 1_700_000_100));
        assert!(!ok(b"another-secret-16b", body, sig, 1_700_000_100));
        assert!(!ok(
            b"a-secret-of-16-bytes",
            br#"{"a":2}"#,
            sig,
            1_700_000_100
        ));
        assert!(!ok(b"a-secret-of-16-bytes", body, sig, 1_700_000_301));
        assert!(!ok(b"a-secret-of-16-bytes", body, "v1=00", 1_700_000_100));
        assert!(!ok(
            b"a-secret-of-16-bytes",
            body,
            "sha256=00",
            1_700_000_100
        ));
    }
}
