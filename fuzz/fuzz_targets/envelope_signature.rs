//! A signed envelope with up to eight (position, byte) changes: verification never panics, and
//! it succeeds only when the bytes are the signed ones (no change survives Ed25519). The header
//! parser and the decoder see the same bytes.
#![no_main]
use std::sync::LazyLock;

use varde_core::envelope::EnvelopeHeader;
use varde_core::{BatchBuilder, CollectorId, CollectorKey, Envelope, Event, Kommunenummer, SourceKind};

static KEY: LazyLock<CollectorKey> = LazyLock::new(|| {
    CollectorKey::generate().map(|(k, _)| k).unwrap_or_else(|e| panic!("no key: {e}"))
});

fn signed(rows: &[u8]) -> Option<Vec<u8>> {
    let tenant = Kommunenummer::parse("0301").ok()?;
    let id = CollectorId::new("fuzz").ok()?;
    let mut b = BatchBuilder::new(SourceKind::Syslog, tenant, id.clone(), 4);
    for chunk in rows.chunks(16) {
        b.push(&Event {
            message: Some(String::from_utf8_lossy(chunk).into_owned()),
            ..Event::default()
        })
        .ok()?;
    }
    Envelope::new(SourceKind::Syslog, tenant, id, 7, b.finish().ok()?).ok()?.encode_signed(&KEY).ok()
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let (muts, rows) = data.split_at(data.len().min(24));
    let Some(original) = signed(rows) else { return };
    let mut bytes = original.clone();
    for m in muts.chunks(3) {
        if let [hi, lo, v] = m {
            let pos = (usize::from(*hi) << 8 | usize::from(*lo)) % bytes.len();
            bytes[pos] = *v;
        }
    }
    let verified = EnvelopeHeader::verify(&bytes, &KEY.public_key()).is_ok();
    assert_eq!(verified, bytes == original, "verification must hold exactly for the signed bytes");
    let _ = EnvelopeHeader::peek(&bytes);
    let _ = Envelope::decode_with_limit(&bytes, 1 << 20);
    // Any bytes at all as a signed envelope.
    let _ = EnvelopeHeader::verify(data, &KEY.public_key());
});
