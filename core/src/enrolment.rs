//! Enrolment: the one-time token the CERT gives a municipality, and the messages of the
//! enrolment API, shared by the dashboard (which issues and redeems tokens) and the collector
//! (which redeems one).
//!
//! A token is `varde-enrol-1.` followed by base64url (no padding) of a JSON object, a dot, and
//! 8 hex digits of the SHA-256 of everything before the dot: the checksum catches a token that
//! was cut or mistyped before anything is sent. The object holds the CERT's enrolment URL, the
//! SHA-256 fingerprint of the certificate that URL presents (the collector pins it: no CA is
//! trusted for enrolment), the token's id and its 32-byte secret, the tenant and name of the
//! collector to be, and when the token expires. The CERT keeps only the SHA-256 of the whole
//! token text, so a token whose tenant, URL or fingerprint was changed is refused as tampered,
//! and a token that was used or has expired is refused too.
//!
//! Whoever holds a token can enrol one collector for its municipality until it is used or
//! expires: it is a secret like a password, sent over a channel the municipality trusts.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::identity::{PublicKey, hex_encode};
use crate::{CollectorId, Kommunenummer};

/// What every token starts with.
pub const TOKEN_PREFIX: &str = "varde-enrol-1.";
/// What a proof of possession signs before the token id and public key.
pub const PROOF_CONTEXT: &[u8] = b"varde.enrol.v1\0";
/// What a rotation request signs (with the old key) before the collector id and new key.
pub const ROTATE_CONTEXT: &[u8] = b"varde.rotate.v1\0";
/// The enrolment API's path on the dashboard.
pub const ENROL_PATH: &str = "/api/enrol";
/// The key rotation API's path on the dashboard.
pub const ROTATE_PATH: &str = "/api/rotate";

/// Why a token text is not a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// It does not start with [`TOKEN_PREFIX`].
    #[error("not a Varde enrolment token (it starts with {TOKEN_PREFIX})")]
    NotAToken,
    /// The checksum does not match: the token was cut or changed on the way.
    #[error("the token is damaged (cut or changed on the way): ask the CERT for a new one")]
    Damaged,
    /// The body is not what a token holds.
    #[error("the token's content is not readable: {0}")]
    Unreadable(String),
}

/// An enrolment token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolmentToken {
    /// The CERT's enrolment base URL (`https://…`, no path).
    pub url: String,
    /// SHA-256 of the DER certificate the URL presents, 64 hex digits.
    pub pin: String,
    /// The token's id (hex).
    pub id: String,
    /// The secret, 32 bytes as hex.
    pub secret: String,
    /// The collector's municipality.
    pub tenant: Kommunenummer,
    /// The collector's name, as the CERT gave it.
    pub name: String,
    /// When the token expires, µs since the epoch.
    pub expires_us: i64,
}

impl EnrolmentToken {
    /// The token's text.
    pub fn encode(&self) -> String {
        // Serialising a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(self).unwrap_or_default();
        let body = format!(
            "{TOKEN_PREFIX}{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json)
        );
        let sum = checksum(&body);
        format!("{body}.{sum}")
    }

    /// Reads a token's text (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<EnrolmentToken, TokenError> {
        let text = text.trim();
        let rest = text
            .strip_prefix(TOKEN_PREFIX)
            .ok_or(TokenError::NotAToken)?;
        let (body64, sum) = rest.rsplit_once('.').ok_or(TokenError::Damaged)?;
        if checksum(&text[..TOKEN_PREFIX.len() + body64.len()]) != sum {
            return Err(TokenError::Damaged);
        }
        let json = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body64)
            .map_err(|e| TokenError::Unreadable(e.to_string()))?;
        serde_json::from_slice(&json).map_err(|e| TokenError::Unreadable(e.to_string()))
    }

    /// SHA-256 of a token's text (trimmed), hex: what the CERT keeps instead of the token.
    pub fn text_hash(text: &str) -> String {
        hex_encode(&Sha256::digest(text.trim().as_bytes()))
    }
}

fn checksum(body: &str) -> String {
    hex_encode(&Sha256::digest(body.as_bytes())[..4])
}

/// The SHA-256 fingerprint of a DER certificate, 64 hex digits (what a token pins).
pub fn fingerprint(der: &[u8]) -> String {
    hex_encode(&Sha256::digest(der))
}

/// What a proof of possession signs: the context, the token id, the public key.
pub fn proof_message(token_id: &str, key: &PublicKey) -> Vec<u8> {
    let mut m = PROOF_CONTEXT.to_vec();
    m.extend_from_slice(token_id.as_bytes());
    m.push(0);
    m.extend_from_slice(&key.0);
    m
}

/// What a rotation request signs with the current key: the context, the collector id, the new
/// public key.
pub fn rotate_message(collector: &CollectorId, new_key: &PublicKey) -> Vec<u8> {
    let mut m = ROTATE_CONTEXT.to_vec();
    m.extend_from_slice(collector.as_str().as_bytes());
    m.push(0);
    m.extend_from_slice(&new_key.0);
    m
}

/// `POST /api/enrol`: a collector redeems a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolRequest {
    /// The token's text, as the CERT gave it.
    pub token: String,
    /// The collector's new public key, 64 hex digits.
    pub public_key: String,
    /// Ed25519 signature of [`proof_message`] with the new key, 128 hex digits: the collector
    /// holds the private half.
    pub proof: String,
    /// The machine's host name, for the CERT's records.
    #[serde(default)]
    pub hostname: String,
}

/// The answer to an enrolment: what the collector's configuration needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrolResponse {
    /// The collector's id, chosen by the CERT.
    pub collector_id: CollectorId,
    /// Its municipality.
    pub tenant: Kommunenummer,
    /// Its name.
    pub name: String,
    /// Kafka bootstrap brokers.
    pub brokers: String,
    /// Topic prefix.
    pub topic_prefix: String,
    /// The topic the collector writes (`<prefix>events.<tenant>`).
    pub topic: String,
    /// Kafka client settings that are not secrets (`security.protocol`, `sasl.mechanism`,
    /// `sasl.username`, …); passwords are given separately.
    #[serde(default)]
    pub kafka_properties: std::collections::BTreeMap<String, String>,
}

/// `POST /api/rotate`: an enrolled collector adds a new key, signing the request with its
/// current one; the current key stays valid for the CERT's overlap, then expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// The collector.
    pub collector_id: CollectorId,
    /// The current key's id (16 hex digits).
    pub key_id: String,
    /// The new public key, 64 hex digits.
    pub new_public_key: String,
    /// Ed25519 signature of [`rotate_message`] with the current key, 128 hex digits.
    pub signature: String,
    /// Ed25519 signature of the same message with the new key: the collector holds it too.
    pub new_key_proof: String,
}

/// The answer to a rotation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RotateResponse {
    /// The new key's id.
    pub key_id: String,
    /// When the old key stops being valid, µs since the epoch.
    pub old_key_expires_us: i64,
}

/// An error answer of the enrolment API (HTTP 4xx), for the collector to print.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// Why, in words for the municipality's IT person.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> EnrolmentToken {
        EnrolmentToken {
            url: "https://cert.example:8443".into(),
            pin: "ab".repeat(32),
            id: "0123456789abcdef".into(),
            secret: "cd".repeat(32),
            tenant: Kommunenummer::parse("0301").expect("Oslo"),
            name: "Oslo DMZ".into(),
            expires_us: 1_800_000_000_000_000,
        }
    }

    #[test]
    fn a_token_round_trips_and_any_change_is_caught() {
        let text = token().encode();
        assert!(text.starts_with(TOKEN_PREFIX));
        assert_eq!(EnrolmentToken::parse(&format!("  {text}\n")), Ok(token()));
        // Cut, or one character changed anywhere: damaged (or not a token at all).
        for cut in [text.len() - 1, text.len() / 2, TOKEN_PREFIX.len() + 3] {
            assert!(EnrolmentToken::parse(&text[..cut]).is_err(), "cut at {cut}");
        }
        for i in TOKEN_PREFIX.len()..text.len() {
            let mut changed = text.clone().into_bytes();
            changed[i] = if changed[i] == b'A' { b'B' } else { b'A' };
            let changed = String::from_utf8(changed).expect("ascii");
            assert!(EnrolmentToken::parse(&changed).is_err(), "byte {i} changed");
        }
        assert_eq!(EnrolmentToken::parse("hello"), Err(TokenError::NotAToken));
    }
}
