//! A collector's identity: its Ed25519 key, the key's id, and what a signature covers.
//!
//! Each collector holds one Ed25519 private key, made on the municipality's machine at enrolment
//! and never sent anywhere; the CERT holds the public half in its registry of enrolled
//! collectors, bound to one tenant. Every envelope the collector sends is signed (see
//! [`crate::envelope`]), so the tenant of a batch is what the key says, not what the bytes or
//! the broker say.
//!
//! The signatures are ring's Ed25519 (RFC 8032); Varde adds no cryptography of its own, only the
//! framing of what is signed. This module does no I/O: making a key needs randomness, which the
//! caller passes in as the PKCS#8 document [`CollectorKey::generate`] asks the OS for through
//! ring.

use std::fmt;

use base64::Engine as _;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use sha2::{Digest, Sha256};

/// Length of an Ed25519 public key.
pub const PUBLIC_KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;
/// Length of a [`KeyId`].
pub const KEY_ID_LEN: usize = 8;

const PEM_LABEL: &str = "PRIVATE KEY";

/// RFC 8410, section 10.3: the DER of a PKCS#8 version 1 Ed25519 private key up to its 32-byte
/// seed (SEQUENCE, version 0, algorithm id-Ed25519 1.3.101.112, OCTET STRING of an OCTET STRING).
/// ring's version 2 documents start with the same bytes but for the version and outer length,
/// and hold the seed at the same offset.
const PKCS8_V1_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// Why a key, public key or signature could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// The private key file is not a PEM `PRIVATE KEY` holding an Ed25519 PKCS#8 document.
    #[error("not an Ed25519 private key (PEM \"PRIVATE KEY\", PKCS#8): {0}")]
    BadPrivateKey(String),
    /// The public key text is not 64 hexadecimal digits.
    #[error("not an Ed25519 public key (64 hexadecimal digits): {0:?}")]
    BadPublicKey(String),
    /// The signature does not verify under the key.
    #[error("signature does not verify")]
    BadSignature,
    /// The OS gave no randomness.
    #[error("no randomness from the operating system")]
    NoRandomness,
}

/// The id of a public key: the first 8 bytes of its SHA-256, written in every signed envelope so
/// the verifier knows which of a collector's keys (old and new overlap during a rotation) to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub [u8; KEY_ID_LEN]);

impl KeyId {
    /// The id of `public`.
    pub fn of(public: &PublicKey) -> KeyId {
        let digest = Sha256::digest(public.0);
        let mut id = [0u8; KEY_ID_LEN];
        id.copy_from_slice(&digest[..KEY_ID_LEN]);
        KeyId(id)
    }

    /// Parses the 16 hexadecimal digits [`KeyId`]'s `Display` writes.
    pub fn parse(text: &str) -> Option<KeyId> {
        let bytes = hex_decode(text)?;
        Some(KeyId(bytes.try_into().ok()?))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_encode(&self.0))
    }
}

/// An Ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_LEN]);

impl PublicKey {
    /// Parses 64 hexadecimal digits (surrounding white space ignored).
    pub fn parse(text: &str) -> Result<PublicKey, IdentityError> {
        hex_decode(text.trim())
            .and_then(|b| <[u8; PUBLIC_KEY_LEN]>::try_from(b).ok())
            .map(PublicKey)
            .ok_or_else(|| IdentityError::BadPublicKey(text.chars().take(80).collect()))
    }

    /// The key's id.
    pub fn key_id(&self) -> KeyId {
        KeyId::of(self)
    }

    /// Checks `signature` over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), IdentityError> {
        UnparsedPublicKey::new(&ED25519, self.0)
            .verify(message, signature)
            .map_err(|_| IdentityError::BadSignature)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex_encode(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

/// A collector's private key, which signs its envelopes.
pub struct CollectorKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
    key_id: KeyId,
}

impl fmt::Debug for CollectorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CollectorKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl CollectorKey {
    /// Makes a new key with the OS's randomness; returns it with its PEM file text, which the
    /// caller writes with mode 0600.
    ///
    /// The file holds PKCS#8 version 1 (RFC 8410's form, which `openssl genpkey` writes and
    /// OpenSSL 3.0 reads): ring makes the key as a version 2 document (with the public key),
    /// whose 32-byte seed is copied into the fixed version 1 encoding.
    pub fn generate() -> Result<(CollectorKey, String), IdentityError> {
        let rng = ring::rand::SystemRandom::new();
        let doc = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| IdentityError::NoRandomness)?;
        let seed = doc
            .as_ref()
            .get(PKCS8_V1_PREFIX.len()..PKCS8_V1_PREFIX.len() + 32)
            .ok_or_else(|| IdentityError::BadPrivateKey("short PKCS#8 document".into()))?;
        let mut v1 = PKCS8_V1_PREFIX.to_vec();
        v1.extend_from_slice(seed);
        let key = CollectorKey::from_pkcs8(&v1)?;
        let generated = Ed25519KeyPair::from_pkcs8(doc.as_ref())
            .map_err(|e| IdentityError::BadPrivateKey(e.to_string()))?;
        if key.public.0[..] != *generated.public_key().as_ref() {
            return Err(IdentityError::BadPrivateKey(
                "the version 1 document does not hold the generated key".into(),
            ));
        }
        Ok((key, pem_encode(&v1)))
    }

    /// Reads a PEM `PRIVATE KEY` file's text (PKCS#8 v1 as OpenSSL writes it, or v2).
    pub fn from_pem(text: &str) -> Result<CollectorKey, IdentityError> {
        let der = pem_decode(text).ok_or_else(|| {
            IdentityError::BadPrivateKey(format!("no -----BEGIN {PEM_LABEL}----- block"))
        })?;
        CollectorKey::from_pkcs8(&der)
    }

    /// Reads a PKCS#8 document (DER).
    pub fn from_pkcs8(der: &[u8]) -> Result<CollectorKey, IdentityError> {
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|e| IdentityError::BadPrivateKey(e.to_string()))?;
        let mut public = [0u8; PUBLIC_KEY_LEN];
        public.copy_from_slice(pair.public_key().as_ref());
        let public = PublicKey(public);
        Ok(CollectorKey {
            key_id: public.key_id(),
            public,
            pair,
        })
    }

    /// The public half, for the CERT's registry.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The public key's id.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        let mut out = [0u8; SIGNATURE_LEN];
        out.copy_from_slice(self.pair.sign(message).as_ref());
        out
    }
}

fn pem_encode(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {PEM_LABEL}-----\n");
    for chunk in body.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    out
}

fn pem_decode(text: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {PEM_LABEL}-----");
    let end = format!("-----END {PEM_LABEL}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = start + text[start..].find(&end)?;
    let body: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// Lower-case hexadecimal.
pub fn hex_encode(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Hexadecimal (either case) to bytes; `None` for an odd length or another character.
pub fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks(2)
        .map(|pair| {
            let digit = |c: u8| char::from(c).to_digit(16);
            u8::try_from(digit(pair[0])? * 16 + digit(pair[1])?).ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032, section 7.1, TEST 2: the published public key and signature of the one-byte
    /// message 0x72, verified through Varde's types.
    #[test]
    fn rfc8032_test_vector_verifies_and_a_flipped_bit_does_not() {
        let public =
            PublicKey::parse("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
                .expect("hex");
        let sig = hex_decode(
            "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da\
             085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
        )
        .expect("hex");
        public.verify(&[0x72], &sig).expect("RFC 8032 vector");
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert_eq!(
            public.verify(&[0x72], &bad),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            public.verify(&[0x73], &sig),
            Err(IdentityError::BadSignature)
        );
        assert_eq!(
            public.verify(&[0x72], &sig[..63]),
            Err(IdentityError::BadSignature)
        );
    }

    #[test]
    fn a_generated_key_round_trips_through_its_pem_file_and_signs() {
        let (key, pem) = CollectorKey::generate().expect("key");
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
        let again = CollectorKey::from_pem(&pem).expect("pem");
        assert_eq!(again.public_key(), key.public_key());
        let sig = again.sign(b"batch");
        key.public_key().verify(b"batch", &sig).expect("verifies");
        assert_eq!(KeyId::parse(&key.key_id().to_string()), Some(key.key_id()));
        assert_eq!(
            PublicKey::parse(&key.public_key().to_string()).expect("hex"),
            key.public_key()
        );
    }

    #[test]
    fn bad_key_texts_are_refused_with_what_was_wrong() {
        assert!(matches!(
            CollectorKey::from_pem("hello"),
            Err(IdentityError::BadPrivateKey(_))
        ));
        assert!(matches!(
            CollectorKey::from_pem(
                "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
            ),
            Err(IdentityError::BadPrivateKey(_))
        ));
        assert!(PublicKey::parse("zz").is_err());
        assert!(PublicKey::parse(&"ab".repeat(31)).is_err());
        assert_eq!(hex_decode("0g"), None);
    }
}
