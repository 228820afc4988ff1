//! Any bytes as a syslog line: parsing never panics and the event always fits its batch.
#![no_main]
use varde_core::{BatchBuilder, CollectorId, Kommunenummer, SourceKind};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let event = varde_collector::syslog::parse_line(&line, 1_714_557_600_000_000);
    let (Ok(tenant), Ok(id)) = (Kommunenummer::parse("0301"), CollectorId::new("fuzz")) else { return };
    let mut b = BatchBuilder::new(SourceKind::Syslog, tenant, id, 1);
    assert!(b.push(&event).is_ok(), "a parsed line must fit the syslog schema");
});
