//! Any bytes as a web server access log line (Apache/nginx combined, IIS W3C with or without a
//! `#Fields:` header) and through the whole edge: parsing never panics, a parsed line always fits
//! the `web_access` schema, and the edge always returns one event that fits its kind.
#![no_main]
use varde_collector::edge::{EdgeSource, edge_event};
use varde_collector::parse::access::{self, Directive, IIS_DEFAULT_FIELDS};
use varde_collector::parse::Outcome;
use varde_collector::privacy::{Privacy, PrivacyKey, PrivacyPolicy};
use varde_core::{BatchBuilder, CollectorId, Event, Kommunenummer, SourceKind};

fn fits(kind: SourceKind, event: &Event) -> bool {
    let (Ok(tenant), Ok(id)) = (Kommunenummer::parse("0301"), CollectorId::new("fuzz")) else {
        return true;
    };
    BatchBuilder::new(kind, tenant, id, 1).push(event).is_ok()
}

fn check(outcome: Outcome) {
    if let Outcome::Parsed(p) = outcome {
        assert_eq!(p.kind, SourceKind::WebAccess);
        let event = Event { typed: p.typed, attrs: p.attrs, ..Event::default() };
        assert!(fits(SourceKind::WebAccess, &event), "a parsed line must fit web_access");
    }
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.splitn(2, '\n');
    let first = lines.next().unwrap_or_default();
    let second = lines.next().unwrap_or_default();
    check(access::parse_combined(first));
    check(access::parse_w3c(first, &IIS_DEFAULT_FIELDS));
    let _ = access::looks_like_w3c(first);
    if let Some(Directive::Fields(fields)) = access::directive(first) {
        check(access::parse_w3c(second, &fields));
    }
    let source = EdgeSource::new(Privacy::new(&PrivacyKey::from_bytes([9; 32]), PrivacyPolicy::default()));
    for line in [first, second] {
        let (kind, event) = edge_event(line, 1_714_557_600_000_000, &source);
        assert!(fits(kind, &event), "an edge event must fit its kind");
    }
    assert_eq!(source.stats().snapshot().lines, 2);
});
