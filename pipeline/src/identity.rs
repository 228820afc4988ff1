//! Who sent a batch: every envelope's signature is checked against the registry of enrolled
//! collectors before its payload is decompressed.
//!
//! The registry is folded from the store's identity log ([`varde_store::collectors`]) and
//! reloaded whenever the log changes; the loop asks each time a poll brings messages, before it
//! judges any of them, so a revocation takes effect on the next batch polled after it was
//! written, and a collector enrolled a moment ago is known. An envelope is refused, with its reason, when it is unsigned (unless
//! `[identity] accept_unsigned` is set), names a collector or key the registry does not know,
//! its signature does not verify, its key is revoked or past the end of a rotation's overlap,
//! its header claims a tenant other than the key's, or it arrived on another tenant's topic.
//!
//! A refusal is parked like any hostile message and is also a **security event**: the pipeline
//! writes an event describing it (`generic_json`, collector [`PIPELINE_COLLECTOR`]) and an alert
//! of the built-in rule [`RULE_ID`] under the tenant whose topic carried it, so analysts see it
//! in the queue and the municipality learns that someone wrote to its topic. Both ids derive
//! from (topic, partition, offset): a replayed refusal collapses into the same rows.

use serde::Deserialize;
use varde_core::envelope::EnvelopeHeader;
use varde_core::id::digest16;
use varde_core::time::format_rfc3339;
use varde_core::{
    AlertId, BatchBuilder, CollectorId, Envelope, Event, EventId, Kommunenummer, SourceKind,
};
use varde_store::Alert;
use varde_store::collectors::{CollectorRegistry, Collectors};
use varde_transport::Message;

/// The built-in rule id of refused-identity alerts.
pub const RULE_ID: &str = "varde-collector-identity";
/// Its title.
pub const RULE_TITLE: &str =
    "Batch refused: the sender's collector identity does not hold (forged, replayed or revoked)";
/// The collector id of the events the pipeline writes about refused batches.
pub const PIPELINE_COLLECTOR: &str = "varde-pipeline";

/// Every identity refusal reason (the `reason` label of `varde_pipeline_rejected_total`).
pub const IDENTITY_REASONS: &[&str] = &[
    "unsigned",
    "unknown_collector",
    "unknown_key",
    "bad_signature",
    "revoked_key",
    "expired_key",
    "tenant_forged",
    "tenant_mismatch",
];

/// `[identity]` in the pipeline's configuration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentitySettings {
    /// Accept unsigned (version 1 or 3) envelopes, trusting their topic's tenant as before signed
    /// batches (default false). Only for moving a fleet of older collectors over: every
    /// unsigned batch is still counted (`unsigned_accepted`), and signed batches are verified
    /// all the same.
    #[serde(default)]
    pub accept_unsigned: bool,
}

/// Why an envelope's sender was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// One of [`IDENTITY_REASONS`].
    pub reason: &'static str,
    /// What exactly, for the dead letter and the security event.
    pub error: String,
}

/// The registry as the loop uses it.
#[derive(Debug, Default)]
pub struct Verifier {
    registry: CollectorRegistry,
    version: Option<(u64, i64)>,
    settings: IdentitySettings,
}

impl Verifier {
    /// An empty verifier: refuses every signed envelope until [`Verifier::refresh`] loaded the
    /// registry.
    pub fn new(settings: IdentitySettings) -> Verifier {
        Verifier {
            settings,
            ..Verifier::default()
        }
    }

    /// A verifier over a registry already folded (tests, the benchmark).
    pub fn with_registry(settings: IdentitySettings, registry: CollectorRegistry) -> Verifier {
        Verifier {
            registry,
            version: None,
            settings,
        }
    }

    /// Reloads the registry when the store's identity log changed; `Ok(true)` when it did.
    pub async fn refresh<St: Collectors>(&mut self, store: &St) -> varde_store::Result<bool> {
        let version = store.identity_version().await?;
        if self.version == Some(version) {
            return Ok(false);
        }
        let log = store.identity_log().await?;
        let registry = CollectorRegistry::fold(&log);
        for why in &registry.refused {
            tracing::warn!(record = %why, "collector identity record not applied");
        }
        self.registry = registry;
        self.version = Some(version);
        Ok(true)
    }

    /// Whether the registry has been loaded.
    pub fn loaded(&self) -> bool {
        self.version.is_some()
    }

    /// The registry in use.
    pub fn registry(&self) -> &CollectorRegistry {
        &self.registry
    }

    /// Checks the sender of `bytes` (whose header is `header`) on a topic of `topic_tenant` at
    /// `now_us`. `Ok(false)` for an unsigned envelope accepted by the settings.
    pub fn check(
        &self,
        bytes: &[u8],
        header: &EnvelopeHeader,
        topic_tenant: Option<Kommunenummer>,
        now_us: i64,
    ) -> Result<bool, Refusal> {
        let refuse = |reason: &'static str, error: String| Err(Refusal { reason, error });
        let id = &header.collector_id;
        let signed = match header.signature {
            None if self.settings.accept_unsigned => false,
            None => {
                return refuse(
                    "unsigned",
                    format!(
                        "collector {id} sent an unsigned batch (envelope version 1 or 3); \
                         enrol it, or set [identity] accept_unsigned while moving over"
                    ),
                );
            }
            Some(signature) => {
                let Some(collector) = self.registry.get(id) else {
                    return refuse(
                        "unknown_collector",
                        format!("collector {id} is not enrolled"),
                    );
                };
                let Some(key) = collector.key(signature.key_id) else {
                    return refuse(
                        "unknown_key",
                        format!("key {} is not a key of collector {id}", signature.key_id),
                    );
                };
                if EnvelopeHeader::verify(bytes, &key.public_key).is_err() {
                    return refuse(
                        "bad_signature",
                        format!(
                            "the signature of key {} of collector {id} does not verify",
                            signature.key_id
                        ),
                    );
                }
                if let Some(at) = collector.revoked_us.filter(|&r| now_us >= r) {
                    return refuse(
                        "revoked_key",
                        format!("collector {id} was revoked at {}", format_rfc3339(at)),
                    );
                }
                if let Some(at) = key.revoked_us.filter(|&r| now_us >= r) {
                    return refuse(
                        "revoked_key",
                        format!(
                            "key {} of collector {id} was revoked at {}",
                            signature.key_id,
                            format_rfc3339(at)
                        ),
                    );
                }
                if let Some(at) = key.expires_us.filter(|&e| now_us >= e) {
                    return refuse(
                        "expired_key",
                        format!(
                            "key {} of collector {id} stopped being valid at {} (rotated)",
                            signature.key_id,
                            format_rfc3339(at)
                        ),
                    );
                }
                if collector.tenant != header.tenant {
                    return refuse(
                        "tenant_forged",
                        format!(
                            "collector {id} is enrolled for {}, its batch claims {}",
                            collector.tenant, header.tenant
                        ),
                    );
                }
                true
            }
        };
        if topic_tenant != Some(header.tenant) {
            return refuse(
                "tenant_mismatch",
                format!(
                    "collector {id} of tenant {} wrote to the topic of {}",
                    header.tenant,
                    topic_tenant.map_or_else(|| "no tenant".to_owned(), |t| t.to_string())
                ),
            );
        }
        Ok(signed)
    }
}

/// The event and alert that tell analysts about a refused batch, under the tenant of the topic
/// it arrived on (the claimed tenant when the topic names none). `None` when the topic and the
/// header name no tenant.
pub fn security_event(
    m: &Message,
    header: &EnvelopeHeader,
    topic_tenant: Option<Kommunenummer>,
    refusal: &Refusal,
    now_us: i64,
) -> Option<(Envelope, Alert)> {
    let tenant = topic_tenant.unwrap_or(header.tenant);
    let collector = CollectorId::new(PIPELINE_COLLECTOR).ok()?;
    let place = digest16(
        b"varde/refused-batch/v1\0",
        &[
            m.topic.as_bytes(),
            &m.partition.to_be_bytes(),
            &m.offset.to_be_bytes(),
        ],
    );
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&place[..8]);
    let batch_seq = u64::from_be_bytes(seq);
    let event_time_us = m.timestamp_ms.map_or(now_us, |ms| ms.saturating_mul(1000));
    let key_id = header
        .signature
        .map_or_else(String::new, |s| s.key_id.to_string());
    let attrs = vec![
        ("varde.refused_batch".to_owned(), "1".to_owned()),
        ("reason".to_owned(), refusal.reason.to_owned()),
        ("error".to_owned(), refusal.error.clone()),
        ("topic".to_owned(), m.topic.clone()),
        ("partition".to_owned(), m.partition.to_string()),
        ("offset".to_owned(), m.offset.to_string()),
        ("claimed.tenant".to_owned(), header.tenant.to_string()),
        (
            "claimed.collector_id".to_owned(),
            header.collector_id.to_string(),
        ),
        ("claimed.batch_seq".to_owned(), header.batch_seq.to_string()),
        ("key_id".to_owned(), key_id),
        ("rows".to_owned(), header.row_count.to_string()),
    ];
    let event = Event {
        event_time_us,
        receive_time_us: now_us,
        host: Some(header.collector_id.to_string()),
        severity: Some(2),
        message: Some(format!(
            "batch refused ({}): {}",
            refusal.reason, refusal.error
        )),
        typed: Vec::new(),
        attrs,
    };
    let mut builder = BatchBuilder::new(SourceKind::GenericJson, tenant, collector.clone(), 1);
    builder.push(&event).ok()?;
    let envelope = Envelope::new(
        SourceKind::GenericJson,
        tenant,
        collector,
        batch_seq,
        builder.finish().ok()?,
    )
    .ok()?;
    let event_id = EventId::derive(PIPELINE_COLLECTOR, batch_seq, 0);
    let host = header.collector_id.to_string();
    let alert = Alert {
        alert_id: AlertId::derive(RULE_ID, event_id),
        dedup_key: digest16(
            b"varde/dedup/v1\0",
            &[
                RULE_ID.as_bytes(),
                tenant.as_str().as_bytes(),
                b"",
                host.as_bytes(),
            ],
        ),
        tenant: tenant.to_string(),
        component: String::new(),
        rule_id: RULE_ID.to_owned(),
        rule_title: RULE_TITLE.to_owned(),
        rule_level: "high".to_owned(),
        rule_tags: vec!["attack.t1565.002".to_owned(), "varde.identity".to_owned()],
        event_id,
        event_time_us,
        detect_time_us: now_us,
        source_kind: SourceKind::GenericJson.name().to_owned(),
        host,
        matched: vec![
            ("reason".to_owned(), refusal.reason.to_owned()),
            ("claimed.tenant".to_owned(), header.tenant.to_string()),
            (
                "claimed.collector_id".to_owned(),
                header.collector_id.to_string(),
            ),
            ("topic".to_owned(), m.topic.clone()),
        ],
    };
    Some((envelope, alert))
}
