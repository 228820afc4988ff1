//! Any text as a Sigma rule file: loading never panics; a rule either loads or says why.
#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(mut b) = varde_rules::RuleSetBuilder::new(Default::default()) else { return };
    b.add_yaml("fuzz.yml", text);
    if let Ok(set) = b.build() {
        for e in set.errors() {
            assert!(!e.reason.is_empty());
        }
    }
});
