//! Any bytes as a Kafka message: decoding never panics and never allocates past its limit.
//!
//! Inputs starting with 0xFF are structure-aware: the rest builds a valid envelope (rows from
//! the bytes), then up to eight (position, byte) changes are applied to its encoding, so the
//! fuzzer reaches the Arrow and zstd layers and not only the header checks.
#![no_main]
use varde_core::{BatchBuilder, CollectorId, Envelope, Event, Kommunenummer, SourceKind};

fn mutated(data: &[u8]) -> Option<Vec<u8>> {
    let (muts, rows) = data.split_at(data.len().min(24));
    let tenant = Kommunenummer::parse("0301").ok()?;
    let id = CollectorId::new("fuzz").ok()?;
    let mut b = BatchBuilder::new(SourceKind::Syslog, tenant, id.clone(), 4);
    for chunk in rows.chunks(16) {
        b.push(&Event {
            message: Some(String::from_utf8_lossy(chunk).into_owned()),
            attrs: vec![("k".into(), format!("{chunk:?}"))],
            ..Event::default()
        })
        .ok()?;
    }
    let mut bytes = Envelope::new(SourceKind::Syslog, tenant, id, 7, b.finish().ok()?).ok()?.encode().ok()?;
    for m in muts.chunks(3) {
        if let [hi, lo, v] = m {
            let pos = (usize::from(*hi) << 8 | usize::from(*lo)) % bytes.len();
            bytes[pos] = *v;
        }
    }
    Some(bytes)
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    // arrow-ipc 59 panics (instead of returning an error) on some malformed buffers, e.g. an
    // offsets buffer whose length is not a multiple of 4. `Envelope::decode_with_limit` contains
    // those panics with `catch_unwind`, as it does in production; libFuzzer's hook would abort
    // before the unwind reaches it, so this target keeps the default quiet. A panic anywhere
    // else still aborts (libfuzzer-sys checks the closure's own unwind) and is reported.
    static QUIET: std::sync::Once = std::sync::Once::new();
    QUIET.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    match data.split_first() {
        Some((0xff, rest)) => {
            if let Some(bytes) = mutated(rest) {
                let _ = Envelope::decode_with_limit(&bytes, 1 << 20);
            }
        }
        _ => {
            let _ = Envelope::decode_with_limit(data, 1 << 20);
        }
    }
});
