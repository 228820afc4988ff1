//! Any bytes through the identity-number (and address) scanner: no panic, scanning twice gives
//! what scanning once gave (a pseudonym is never detected again), text without digits is returned
//! as it was, and with account context off no valid identity number survives as an 11-digit run.
#![no_main]
use std::borrow::Cow;

use varde_collector::config::IpAddressPolicy;
use varde_collector::privacy::{nin, Privacy, PrivacyCounts, PrivacyKey, PrivacyPolicy};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let key = PrivacyKey::from_bytes([5; 32]);
    let plain = Privacy::new(&key, PrivacyPolicy { keep_account_numbers: false, ..PrivacyPolicy::default() });
    let full = Privacy::new(
        &key,
        PrivacyPolicy { ip_addresses: IpAddressPolicy::Pseudonymise, ..PrivacyPolicy::default() },
    );
    for p in [&plain, &full] {
        let mut counts = PrivacyCounts::default();
        let once = p.scrub_text(&text, &mut counts).into_owned();
        let mut again = PrivacyCounts::default();
        let twice = p.scrub_text(&once, &mut again);
        assert_eq!(twice, once, "scanning must be idempotent");
        assert!(again.national_ids == 0 && again.ip_addresses == 0);
        // Without digits there is no identity number; without ':' no address either.
        if !text.bytes().any(|b| b.is_ascii_digit() || b == b':') {
            assert!(matches!(p.scrub_text(&text, &mut counts), Cow::Borrowed(_)));
        }
    }
    let mut counts = PrivacyCounts::default();
    let out = plain.scrub_text(&text, &mut counts);
    for run in out.split(|c: char| !c.is_ascii_digit()) {
        let valid = nin::digits(run.as_bytes()).and_then(|d| nin::classify(&d));
        assert!(valid.is_none(), "an identity number survived");
    }
});
