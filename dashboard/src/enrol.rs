//! Collector enrolment on the CERT's side: one-time tokens, the enrolment and key rotation API
//! the collectors call over HTTPS, revocation, and the admins' page of enrolled collectors.
//!
//! The logic (`issue_token`, `redeem`, `rotate`, `revoke`) works on any store with the
//! collector registry and is what `varde admin collector`, the dashboard and `varde demo` all
//! call; the HTTP handlers only carry it. Every change is an append-only row
//! ([`varde_store::collectors`]): the registry is its own audit trail.
//!
//! One dashboard process redeems tokens one at a time (a lock around check and write), so a
//! token cannot enrol two collectors through it. Several dashboard processes sharing one store
//! could each redeem the same token in the same instant: run the enrolment API on one.

use std::collections::BTreeMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use varde_core::enrolment::{
    ApiError, EnrolRequest, EnrolResponse, EnrolmentToken, RotateRequest, RotateResponse,
    proof_message, rotate_message,
};
use varde_core::identity::{KeyId, PublicKey, hex_decode};
use varde_core::{CollectorId, Kommunenummer};
use varde_store::EventStore;
use varde_store::collectors::{
    CollectorRegistry, Collectors, IdentityRecord, TokenAction, TokenRecord,
};

use crate::i18n::t;
use crate::{Dashboard, Role, app_page, format_time, now_us, refusal};

/// The collector id of the pipeline's own security events (`varde_pipeline::identity`), which
/// the dashboard does not link.
pub const PIPELINE_COLLECTOR: &str = "varde-pipeline";

/// `[enrolment]` in the dashboard's configuration.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentConfig {
    /// The base URL collectors reach this dashboard's API at (`https://…`, no path).
    pub url: String,
    /// The certificate (PEM) that URL presents, whose SHA-256 tokens pin; default the
    /// dashboard's own `[tls] cert_file`.
    #[serde(default)]
    pub cert_file: Option<std::path::PathBuf>,
    /// Kafka bootstrap brokers the collectors send to.
    pub brokers: String,
    /// Topic prefix (default `varde.`).
    #[serde(default = "default_prefix")]
    pub topic_prefix: String,
    /// Kafka client settings given to every collector (no secrets: `security.protocol`,
    /// `sasl.mechanism`, `ssl.ca.location`, …).
    #[serde(default)]
    pub kafka_properties: BTreeMap<String, String>,
    /// How long a token is valid, in hours (default 24).
    #[serde(default = "default_token_hours")]
    pub token_hours: u64,
    /// How long an old key stays valid after a rotation, in hours (default 24).
    #[serde(default = "default_overlap_hours")]
    pub rotation_overlap_hours: u64,
}

fn default_prefix() -> String {
    "varde.".into()
}
fn default_token_hours() -> u64 {
    24
}
fn default_overlap_hours() -> u64 {
    24
}

/// Enrolment as the dashboard runs it.
#[derive(Debug, Clone)]
pub struct Enrolment {
    /// The configuration.
    pub config: EnrolmentConfig,
    /// SHA-256 of the DER certificate `config.url` presents, hex.
    pub pin: String,
}

impl Enrolment {
    /// Enrolment with the pin of the first certificate of the PEM file `cert_pem`.
    pub fn new(config: EnrolmentConfig, cert_pem: &[u8]) -> Result<Enrolment, String> {
        use rustls_pki_types::pem::PemObject as _;
        let cert = rustls_pki_types::CertificateDer::pem_slice_iter(cert_pem)
            .next()
            .ok_or("no certificate in the PEM file")?
            .map_err(|e| e.to_string())?;
        if !config.url.starts_with("https://") {
            return Err(format!("url {:?}: enrolment needs https://", config.url));
        }
        Ok(Enrolment {
            pin: varde_core::enrolment::fingerprint(cert.as_ref()),
            config,
        })
    }
}

/// Why an enrolment call was refused: the HTTP status and words for the municipality's IT
/// person or the CERT's admin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// HTTP status.
    pub status: u16,
    /// Why.
    pub message: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Refused {}

fn refused(status: u16, message: impl Into<String>) -> Refused {
    Refused {
        status,
        message: message.into(),
    }
}

fn store_failed(e: &varde_store::Error) -> Refused {
    tracing::error!(error = %e, "the store failed during enrolment");
    refused(503, "the CERT's store is not answering; try again later")
}

fn random_hex<const N: usize>() -> Result<String, Refused> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| refused(503, "no randomness"))?;
    Ok(varde_core::identity::hex_encode(&bytes))
}

/// Makes a token for a collector named `name` of `tenant`, valid for `valid_us`; records it
/// (the hash of its text only) and returns it with its text.
pub async fn issue_token<St: Collectors>(
    store: &St,
    enrolment: &Enrolment,
    tenant: Kommunenummer,
    name: &str,
    valid_us: i64,
    actor: &str,
    now: i64,
) -> Result<(EnrolmentToken, String), Refused> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 80 || name.chars().any(char::is_control) {
        return Err(refused(
            400,
            "the collector's name must be 1 to 80 characters, no control characters",
        ));
    }
    let token = EnrolmentToken {
        url: enrolment.config.url.clone(),
        pin: enrolment.pin.clone(),
        id: random_hex::<8>()?,
        secret: random_hex::<32>()?,
        tenant,
        name: name.to_owned(),
        expires_us: now.saturating_add(valid_us),
    };
    let text = token.encode();
    store
        .write_tokens(&[TokenRecord {
            at_us: now,
            token_id: token.id.clone(),
            secret_hash: EnrolmentToken::text_hash(&text),
            tenant: tenant.to_string(),
            name: token.name.clone(),
            expires_us: token.expires_us,
            action: TokenAction::Issued,
            collector_id: String::new(),
            actor: actor.to_owned(),
        }])
        .await
        .map_err(|e| store_failed(&e))?;
    Ok((token, text))
}

/// A collector id for a new collector: `k<tenant>-<name as a slug>-<4 hex digits>`.
fn new_collector_id(tenant: Kommunenummer, name: &str) -> Result<CollectorId, Refused> {
    let mut slug = String::new();
    for c in name.to_lowercase().chars() {
        let c = match c {
            'æ' => Some("ae"),
            'ø' => Some("o"),
            'å' => Some("a"),
            c if c.is_ascii_alphanumeric() => None,
            _ => Some("-"),
        }
        .map_or_else(|| c.to_string(), str::to_owned);
        if !(c == "-" && (slug.is_empty() || slug.ends_with('-'))) {
            slug.push_str(&c);
        }
    }
    let slug: String = slug.trim_end_matches('-').chars().take(40).collect();
    let suffix = random_hex::<2>()?;
    let id = if slug.is_empty() {
        format!("k{tenant}-{suffix}")
    } else {
        format!("k{tenant}-{slug}-{suffix}")
    };
    CollectorId::new(id).map_err(|e| refused(500, e.to_string()))
}

fn parse_signature(text: &str, what: &str) -> Result<Vec<u8>, Refused> {
    hex_decode(text.trim())
        .filter(|b| b.len() == varde_core::identity::SIGNATURE_LEN)
        .ok_or_else(|| refused(400, format!("{what} is not 128 hexadecimal digits")))
}

/// Redeems a token: checks it (known, not tampered, not used, not expired), checks that the
/// caller holds the key it registers, and enrols the collector. Call under
/// [`Dashboard`]'s enrolment lock (the CLI and the demo are one caller each).
pub async fn redeem<St: Collectors>(
    store: &St,
    enrolment: &Enrolment,
    request: &EnrolRequest,
    now: i64,
) -> Result<EnrolResponse, Refused> {
    let token = EnrolmentToken::parse(&request.token).map_err(|e| refused(400, e.to_string()))?;
    let records = store
        .tokens(Some(&token.id))
        .await
        .map_err(|e| store_failed(&e))?;
    let Some(issued) = records.iter().find(|r| r.action == TokenAction::Issued) else {
        return Err(refused(403, "this token was not issued by this CERT"));
    };
    if !crate::same_token(
        &EnrolmentToken::text_hash(&request.token),
        &issued.secret_hash,
    ) {
        tracing::warn!(token = %token.id, "enrolment refused: the token was changed");
        return Err(refused(
            403,
            "this token was changed after the CERT issued it; ask the CERT for a new one",
        ));
    }
    if let Some(used) = records.iter().find(|r| r.action == TokenAction::Used) {
        tracing::warn!(token = %token.id, collector = %used.collector_id, "enrolment refused: token used");
        return Err(refused(
            403,
            format!(
                "this token was used already, at {}, to enrol collector {}; a token enrols one collector",
                format_time(used.at_us),
                used.collector_id
            ),
        ));
    }
    if issued.expires_us <= now {
        return Err(refused(
            403,
            format!(
                "this token expired at {}; ask the CERT for a new one",
                format_time(issued.expires_us)
            ),
        ));
    }
    let tenant = Kommunenummer::parse(&issued.tenant).map_err(|e| refused(500, e.to_string()))?;
    let public = PublicKey::parse(&request.public_key).map_err(|e| refused(400, e.to_string()))?;
    let proof = parse_signature(&request.proof, "proof")?;
    public
        .verify(&proof_message(&token.id, &public), &proof)
        .map_err(|_| refused(400, "the proof does not verify under the public key sent"))?;
    let registry =
        CollectorRegistry::fold(&store.identity_log().await.map_err(|e| store_failed(&e))?);
    if registry
        .collectors
        .values()
        .any(|c| c.key(public.key_id()).is_some())
    {
        return Err(refused(409, "this public key is enrolled already"));
    }
    let collector = new_collector_id(tenant, &issued.name)?;
    let actor = format!("collector:{collector}");
    // The token is spent first: a failure after this leaves a used token and no collector
    // (ask for a new token), never a token that enrols twice.
    store
        .write_tokens(&[TokenRecord {
            at_us: now,
            token_id: token.id.clone(),
            secret_hash: String::new(),
            tenant: tenant.to_string(),
            name: issued.name.clone(),
            expires_us: issued.expires_us,
            action: TokenAction::Used,
            collector_id: collector.to_string(),
            actor: actor.clone(),
        }])
        .await
        .map_err(|e| store_failed(&e))?;
    let reason = if request.hostname.is_empty() {
        "enrolment".to_owned()
    } else {
        let host: String = request
            .hostname
            .chars()
            .filter(|c| !c.is_control())
            .take(100)
            .collect();
        format!("enrolment from {host}")
    };
    store
        .write_identity(&[IdentityRecord::key_added(
            now,
            &collector,
            tenant,
            &issued.name,
            &public,
            &actor,
            &reason,
        )])
        .await
        .map_err(|e| store_failed(&e))?;
    tracing::info!(%collector, %tenant, key = %public.key_id(), token = %token.id, "collector enrolled");
    let c = &enrolment.config;
    Ok(EnrolResponse {
        topic: varde_core_topic(&c.topic_prefix, tenant),
        collector_id: collector,
        tenant,
        name: issued.name.clone(),
        brokers: c.brokers.clone(),
        topic_prefix: c.topic_prefix.clone(),
        kafka_properties: c.kafka_properties.clone(),
    })
}

/// `<prefix>events.<tenant>`, as `varde_transport::events_topic` names it.
fn varde_core_topic(prefix: &str, tenant: Kommunenummer) -> String {
    format!("{prefix}events.{tenant}")
}

/// Adds a collector's new key, signed with its current one; the current key expires after the
/// overlap.
pub async fn rotate<St: Collectors>(
    store: &St,
    enrolment: &Enrolment,
    request: &RotateRequest,
    now: i64,
) -> Result<RotateResponse, Refused> {
    let registry =
        CollectorRegistry::fold(&store.identity_log().await.map_err(|e| store_failed(&e))?);
    let c = registry
        .get(&request.collector_id)
        .ok_or_else(|| refused(403, "this collector is not enrolled"))?;
    if !c.active_at(now) {
        return Err(refused(403, "this collector is revoked"));
    }
    let key_id = KeyId::parse(&request.key_id).ok_or_else(|| refused(400, "bad key id"))?;
    let current = c
        .key(key_id)
        .filter(|k| k.valid_at(now))
        .ok_or_else(|| refused(403, "the current key is not a valid key of this collector"))?;
    let new = PublicKey::parse(&request.new_public_key).map_err(|e| refused(400, e.to_string()))?;
    let message = rotate_message(&request.collector_id, &new);
    current
        .public_key
        .verify(&message, &parse_signature(&request.signature, "signature")?)
        .map_err(|_| refused(403, "the request is not signed by the current key"))?;
    new.verify(
        &message,
        &parse_signature(&request.new_key_proof, "new key proof")?,
    )
    .map_err(|_| refused(400, "the new key's proof does not verify"))?;
    if registry
        .collectors
        .values()
        .any(|other| other.key(new.key_id()).is_some())
    {
        return Err(refused(409, "this public key is enrolled already"));
    }
    let overlap = i64::try_from(enrolment.config.rotation_overlap_hours)
        .unwrap_or(i64::MAX / 3_600_000_000)
        .saturating_mul(3_600_000_000);
    let until = now.saturating_add(overlap);
    let actor = format!("collector:{}", c.collector_id);
    store
        .write_identity(&[
            IdentityRecord::key_added(
                now,
                &c.collector_id,
                c.tenant,
                &c.name,
                &new,
                &actor,
                "rotation",
            ),
            IdentityRecord::key_expires(now, c, key_id, until, &actor, "rotation"),
        ])
        .await
        .map_err(|e| store_failed(&e))?;
    tracing::info!(collector = %c.collector_id, old = %key_id, new = %new.key_id(), "collector key rotated");
    Ok(RotateResponse {
        key_id: new.key_id().to_string(),
        old_key_expires_us: until,
    })
}

/// Revokes a collector (every key) from `now` on.
pub async fn revoke<St: Collectors>(
    store: &St,
    collector: &CollectorId,
    actor: &str,
    reason: &str,
    now: i64,
) -> Result<(), Refused> {
    let registry =
        CollectorRegistry::fold(&store.identity_log().await.map_err(|e| store_failed(&e))?);
    let c = registry
        .get(collector)
        .ok_or_else(|| refused(404, format!("collector {collector} is not enrolled")))?;
    if c.revoked_us.is_some() {
        return Err(refused(
            409,
            format!("collector {collector} is revoked already"),
        ));
    }
    let reason: String = reason
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect();
    store
        .write_identity(&[IdentityRecord::revoked(now, c, None, actor, &reason)])
        .await
        .map_err(|e| store_failed(&e))?;
    tracing::warn!(%collector, actor, reason, "collector revoked");
    Ok(())
}

fn api_refusal(r: Refused) -> Response {
    (
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
        Json(ApiError { error: r.message }),
    )
        .into_response()
}

fn read_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Refused> {
    if body.len() > 16 * 1024 {
        return Err(refused(413, "the request is larger than 16 KiB"));
    }
    serde_json::from_slice(body).map_err(|e| refused(400, format!("not a valid request: {e}")))
}

/// One call of the collectors' API: enrolment configured, the JSON body read, `call` made under
/// the enrolment lock, its answer as JSON or its refusal with status and words.
async fn api_call<St, Req, Ans, F, Fut>(d: Dashboard<St>, body: Bytes, call: F) -> Response
where
    St: EventStore + Collectors + Send + Sync + 'static,
    Req: serde::de::DeserializeOwned,
    Ans: serde::Serialize,
    F: FnOnce(Dashboard<St>, Enrolment, Req) -> Fut,
    Fut: std::future::Future<Output = Result<Ans, Refused>>,
{
    let Some(enrolment) = d.inner.settings.enrolment.clone() else {
        return api_refusal(refused(
            404,
            "enrolment is not configured on this dashboard",
        ));
    };
    let request: Req = match read_json(&body) {
        Ok(r) => r,
        Err(r) => return api_refusal(r),
    };
    let lock = d.clone();
    let _one_at_a_time = lock.inner.enrol_lock.lock().await;
    match call(d, enrolment, request).await {
        Ok(answer) => Json(answer).into_response(),
        Err(r) => api_refusal(r),
    }
}

/// `POST /api/enrol`.
pub(crate) async fn api_enrol<St: EventStore + Collectors + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    body: Bytes,
) -> Response {
    api_call(d, body, |d, enrolment, request: EnrolRequest| async move {
        redeem(&d.inner.store, &enrolment, &request, now_us()).await
    })
    .await
}

/// `POST /api/rotate`.
pub(crate) async fn api_rotate<St: EventStore + Collectors + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    body: Bytes,
) -> Response {
    api_call(d, body, |d, enrolment, request: RotateRequest| async move {
        rotate(&d.inner.store, &enrolment, &request, now_us()).await
    })
    .await
}

/// `GET /collectors`: every enrolled collector with its keys and state, the tokens issued and
/// not used, and (for admins) the forms to issue a token and to revoke.
pub(crate) async fn page<St: EventStore + Collectors + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    if account.role == Role::Municipality {
        return refusal(
            StatusCode::FORBIDDEN,
            t("Ingen tilgang", "No access"),
            t(
                "Innrullerte innsamlere er for CERT-et.",
                "Enrolled collectors are for the CERT.",
            ),
            "/alerts",
            t("Til varslene", "To the alerts"),
        );
    }
    let now = now_us();
    let (log, tokens, seen) = match (
        d.inner.store.identity_log().await,
        d.inner.store.tokens(None).await,
        d.inner.store.collectors(None, now).await,
    ) {
        (Ok(l), Ok(t), Ok(s)) => (l, t, s),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            return crate::unavailable("collector registry", &e);
        }
    };
    let registry = CollectorRegistry::fold(&log);
    // Sources seen in the last week that are not enrolled collectors (nor the pipeline's own
    // security events): JSON-lines shippers, or batches accepted unsigned.
    let unsigned: Vec<&varde_store::CollectorSeen> = seen
        .iter()
        .filter(|c| c.collector_id != PIPELINE_COLLECTOR)
        .filter(|c| {
            CollectorId::new(c.collector_id.clone()).map_or(true, |id| registry.get(&id).is_none())
        })
        .collect();
    let used: std::collections::HashSet<&str> = tokens
        .iter()
        .filter(|r| r.action == TokenAction::Used)
        .map(|r| r.token_id.as_str())
        .collect();
    let open: Vec<&TokenRecord> = tokens
        .iter()
        .filter(|r| r.action == TokenAction::Issued && !used.contains(r.token_id.as_str()))
        .collect();
    let admin = account.role == Role::Admin;
    let body = html! {
        h1.ds-heading data-size="lg" { (t("Innsamlere", "Collectors")) }
        p { (t(
            "Hver innsamler signerer hver batch med sin egen nøkkel; rørledningen avviser batcher fra ukjente, tilbakekalte eller forfalskede nøkler.",
            "Every collector signs every batch with its own key; the pipeline refuses batches from unknown, revoked or forged keys."
        )) }
        table.ds-table data-border {
            caption { (t("Innrullerte innsamlere", "Enrolled collectors")) }
            thead { tr {
                th scope="col" { (t("Innsamler", "Collector")) }
                th scope="col" { (t("Kommune", "Municipality")) }
                th scope="col" { (t("Navn", "Name")) }
                th scope="col" { (t("Innrullert", "Enrolled")) }
                th scope="col" { (t("Nøkler", "Keys")) }
                th scope="col" { (t("Status", "State")) }
                @if admin { th scope="col" { (t("Handling", "Action")) } }
            } }
            tbody {
                @for c in registry.collectors.values() {
                    tr {
                        td { code { (c.collector_id) } }
                        td { a.ds-link href=(crate::municipality::municipality_url(c.tenant.as_str())) { (c.tenant) " " (c.tenant.name()) } }
                        td { (c.name) }
                        td { (format_time(c.enrolled_us)) }
                        td { ul { @for k in &c.keys { li {
                            code { (k.key_id) } " "
                            @if let Some(r) = k.revoked_us { (t("tilbakekalt ", "revoked ")) (format_time(r)) }
                            @else if let Some(e) = k.expires_us { (t("gyldig til ", "valid until ")) (format_time(e)) }
                            @else { (t("gyldig", "valid")) }
                        } } } }
                        td data-state=(if c.active_at(now) { "active" } else { "revoked" }) {
                            @if let Some(r) = c.revoked_us { (t("tilbakekalt ", "revoked ")) (format_time(r)) }
                            @else if c.active_at(now) { (t("aktiv", "active")) }
                            @else { (t("ingen gyldig nøkkel", "no valid key")) }
                        }
                        @if admin { td {
                            @if c.revoked_us.is_none() {
                                form method="post" action={ "/collectors/" (c.collector_id) "/revoke" } {
                                    input type="hidden" name="csrf" value=(csrf);
                                    label.ds-label for={ "reason-" (c.collector_id) } { (t("Grunn", "Reason")) }
                                    input.ds-input id={ "reason-" (c.collector_id) } name="reason" required;
                                    button.ds-button data-variant="secondary" data-color="danger" type="submit" { (t("Tilbakekall", "Revoke")) }
                                }
                            }
                        } }
                    }
                }
            }
        }
        h2.ds-heading data-size="md" { (t("Kilder uten signatur", "Sources without signatures")) }
        p { (t(
            "Sett siste uke, men ikke innrullerte: tredjeparts avsendere på JSON-linje-emnene (kommunen bestemmes bare av meglerens tilgangskontroll) og batcher tatt imot usignert.",
            "Seen in the last week, not enrolled: third-party shippers on the JSON-lines topics (their municipality rests on the broker's access control alone) and batches accepted unsigned."
        )) }
        @if unsigned.is_empty() { p { (t("Ingen.", "None.")) } } @else {
            table.ds-table data-border {
                caption { (t("Usignerte kilder", "Unsigned sources")) }
                thead { tr {
                    th scope="col" { (t("Kilde", "Source")) }
                    th scope="col" { (t("Kommune", "Municipality")) }
                    th scope="col" { (t("Sist mottatt", "Last received")) }
                    th scope="col" { (t("Typer", "Kinds")) }
                } }
                tbody { @for c in &unsigned { tr data-unsigned=(c.tenant) {
                    td { code { (c.collector_id) } }
                    td { (c.tenant) }
                    td { (format_time(c.last_receive_us)) }
                    td { (c.kinds.join(", ")) }
                } } }
            }
        }
        h2.ds-heading data-size="md" { (t("Ubrukte innrulleringsnøkler", "Unused enrolment tokens")) }
        @if open.is_empty() { p { (t("Ingen.", "None.")) } } @else {
            table.ds-table data-border {
                caption { (t("Utstedt, ikke brukt", "Issued, not used")) }
                thead { tr {
                    th scope="col" { "id" }
                    th scope="col" { (t("Kommune", "Municipality")) }
                    th scope="col" { (t("Navn", "Name")) }
                    th scope="col" { (t("Utløper", "Expires")) }
                    th scope="col" { (t("Utstedt av", "Issued by")) }
                } }
                tbody { @for r in &open { tr {
                    td { code { (r.token_id) } }
                    td { (r.tenant) }
                    td { (r.name) }
                    td { (format_time(r.expires_us)) @if r.expires_us <= now { " " (t("(utløpt)", "(expired)")) } }
                    td { (r.actor) }
                } } }
            }
        }
        @if admin {
            h2.ds-heading data-size="md" { (t("Ny innsamler", "New collector")) }
            @if d.inner.settings.enrolment.is_none() {
                p.ds-alert data-color="warning" { (t(
                    "Innrullering er ikke satt opp på dette dashbordet ([enrolment] i konfigurasjonen).",
                    "Enrolment is not configured on this dashboard ([enrolment] in its configuration)."
                )) }
            } @else {
                form method="post" action="/collectors/tokens" {
                    input type="hidden" name="csrf" value=(csrf);
                    label.ds-label for="tenant" { (t("Kommunenummer", "Kommunenummer")) }
                    input.ds-input id="tenant" name="tenant" required pattern="[0-9]{4}" inputmode="numeric";
                    label.ds-label for="name" { (t("Navn på innsamleren", "The collector's name")) }
                    input.ds-input id="name" name="name" required maxlength="80";
                    button.ds-button type="submit" { (t("Lag innrulleringsnøkkel", "Make an enrolment token")) }
                }
            }
        }
    };
    app_page(t("Innsamlere", "Collectors"), &account, &csrf, body).into_response()
}

fn form_fields(body: &Bytes) -> std::collections::HashMap<String, String> {
    form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
        .collect()
}

/// `POST /collectors/tokens`: an admin issues a token; the page shows it once, with the command
/// for the municipality.
pub(crate) async fn issue<St: EventStore + Collectors + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let form = form_fields(&body);
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    if !crate::same_token(&field("csrf"), &csrf) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    let back = |status: StatusCode, why: &str| {
        refusal(
            status,
            t("Ingen nøkkel laget", "No token made"),
            why,
            "/collectors",
            t("Til innsamlerne", "To the collectors"),
        )
    };
    if account.role != Role::Admin {
        return back(
            StatusCode::FORBIDDEN,
            t(
                "Bare administratorer rullerer inn innsamlere.",
                "Only administrators enrol collectors.",
            ),
        );
    }
    let Some(enrolment) = d.inner.settings.enrolment.clone() else {
        return back(StatusCode::NOT_FOUND, "enrolment is not configured");
    };
    let Ok(tenant) = Kommunenummer::parse(&field("tenant")) else {
        return back(
            StatusCode::BAD_REQUEST,
            t("Ikke et kommunenummer.", "Not a kommunenummer."),
        );
    };
    let valid = i64::try_from(enrolment.config.token_hours)
        .unwrap_or(24)
        .saturating_mul(3_600_000_000);
    let actor = format!("admin:{}", account.name);
    match issue_token(
        &d.inner.store,
        &enrolment,
        tenant,
        &field("name"),
        valid,
        &actor,
        now_us(),
    )
    .await
    {
        Ok((token, text)) => {
            let body = html! {
                h1.ds-heading data-size="lg" { (t("Innrulleringsnøkkel", "Enrolment token")) }
                p { (t("For ", "For ")) (token.name) " (" (tenant) " " (tenant.name()) "). "
                    (t("Gyldig til ", "Valid until ")) (format_time(token.expires_us)) ". "
                    (t("Vises bare nå; send den som et passord.", "Shown only now; send it like a password.")) }
                p { (t("På kommunens maskin, etter at pakken er installert:", "On the municipality's machine, once the package is installed:")) }
                pre.varde-token { code { "sudo varde-collector enrol " (text) } }
                p { a.ds-link href="/collectors" { (t("Til innsamlerne", "To the collectors")) } }
            };
            app_page(
                t("Innrulleringsnøkkel", "Enrolment token"),
                &account,
                &csrf,
                body,
            )
            .into_response()
        }
        Err(r) => back(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
            &r.message,
        ),
    }
}

/// `POST /collectors/{id}/revoke`: an admin revokes a collector; its next batch is refused.
pub(crate) async fn revoke_form<St: EventStore + Collectors + Send + Sync + 'static>(
    State(d): State<Dashboard<St>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some((account, csrf)) = d.session(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let form = form_fields(&body);
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    if !crate::same_token(&field("csrf"), &csrf) {
        return (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response();
    }
    let back = |status: StatusCode, why: &str| {
        refusal(
            status,
            t("Ikke tilbakekalt", "Not revoked"),
            why,
            "/collectors",
            t("Til innsamlerne", "To the collectors"),
        )
    };
    if account.role != Role::Admin {
        return back(
            StatusCode::FORBIDDEN,
            t(
                "Bare administratorer tilbakekaller innsamlere.",
                "Only administrators revoke collectors.",
            ),
        );
    }
    let Ok(collector) = CollectorId::new(id) else {
        return back(StatusCode::NOT_FOUND, "not a collector id");
    };
    let reason = field("reason");
    if reason.is_empty() {
        return back(
            StatusCode::BAD_REQUEST,
            t("Oppgi en grunn.", "Give a reason."),
        );
    }
    let actor = format!("admin:{}", account.name);
    match revoke(&d.inner.store, &collector, &actor, &reason, now_us()).await {
        Ok(()) => Redirect::to("/collectors").into_response(),
        Err(r) => back(
            StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_REQUEST),
            &r.message,
        ),
    }
}
