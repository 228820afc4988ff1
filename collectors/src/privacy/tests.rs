//! Tests of the privacy layer: examples, key files, and property tests over generated numbers.

use super::nin::{CheckRule, NinClass, classify, complete, digits, k1_remainder};
use super::*;
use proptest::prelude::*;

fn key() -> PrivacyKey {
    let mut b = [0u8; 32];
    for (i, x) in b.iter_mut().enumerate() {
        *x = u8::try_from(i).unwrap_or(0);
    }
    PrivacyKey::from_bytes(b)
}

fn privacy() -> Privacy {
    Privacy::new(&key(), PrivacyPolicy::default())
}

fn privacy_ips() -> Privacy {
    Privacy::new(
        &key(),
        PrivacyPolicy {
            ip_addresses: IpAddressPolicy::Pseudonymise,
            ..PrivacyPolicy::default()
        },
    )
}

fn scrub(p: &Privacy, text: &str) -> (String, PrivacyCounts) {
    let mut counts = PrivacyCounts::default();
    let out = p.scrub_text(text, &mut counts).into_owned();
    (out, counts)
}

fn ascii(d: &[u8; 11]) -> String {
    d.iter().map(|x| char::from(b'0' + x)).collect()
}

#[test]
fn a_derived_key_is_hmac_sha256_of_its_context() {
    // Expected value from Python's hmac module:
    // hmac.new(bytes([7]*32), b"varde-key-derive-v1:varde-jsonl-tenant-v1:0301", sha256)
    let derived = PrivacyKey::from_bytes([7; 32]).derive("varde-jsonl-tenant-v1:0301");
    let hex: String = derived.0.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        hex,
        "a3ced607709fb9bb0db056e0d5a00583da3be3f47b55ef9c42dc830c6dd637c4"
    );
    let other = PrivacyKey::from_bytes([7; 32]).derive("varde-jsonl-tenant-v1:4601");
    assert_ne!(derived.0, other.0);
}

#[test]
fn pseudonym_is_hmac_sha256_of_the_digits() {
    // Reference computed independently: Python's hmac.new(bytes(range(32)),
    // b"varde-nin-v1:31129956715", sha256).hexdigest()[:16].
    assert_eq!(
        privacy().national_id_pseudonym(b"31129956715"),
        "fnr:1b47fae3-1c5eff07"
    );
    // Same reference for the IPv4 pseudonym of 203.0.113.5.
    assert_eq!(
        privacy().ip_pseudonym("203.0.113.5".parse().expect("ip")),
        "248.64.61.89".parse::<IpAddr>().expect("ip")
    );
}

#[test]
fn numbers_in_text_are_replaced_and_counted() {
    let p = privacy();
    let (out, c) = scrub(&p, "søknad fra 31129956715 mottatt; ref=31129956715.");
    assert_eq!(
        out,
        "søknad fra fnr:1b47fae3-1c5eff07 mottatt; ref=fnr:1b47fae3-1c5eff07."
    );
    assert_eq!(c.national_ids, 2);
    // Not 11-digit runs: longer, shorter, split.
    for text in [
        "id 311299567150",
        "id 3112995671",
        "id 311299 56715",
        "x1311299567155",
        "tlf 31129956716",
    ] {
        let (out, c) = scrub(&p, text);
        assert_eq!(out, text);
        assert!(c.is_empty());
    }
}

#[test]
fn account_numbers_are_kept_only_in_their_context() {
    let p = privacy();
    // 31129956715 passes the account check too (every identity number does).
    for text in [
        "kontonr: 31129956715",
        "Kontonummer 31129956715",
        "betalt til konto 31129956715",
        "{\"account_number\":\"31129956715\"}",
        "acct=31129956715",
        "kto.nr. 31129956715",
        "bankkonto #31129956715",
    ] {
        let (out, c) = scrub(&p, text);
        assert_eq!(out, text, "{text}");
        assert_eq!(c.account_numbers_kept, 1, "{text}");
        assert_eq!(c.national_ids, 0);
    }
    // Only the word right before the number counts.
    for text in [
        "fnr 31129956715",
        "konto eier er 31129956715",
        "31129956715 konto",
        "kontoret ringte 31129956715",
    ] {
        let (out, c) = scrub(&p, text);
        assert_ne!(out, text, "{text}");
        assert_eq!(c.national_ids, 1, "{text}");
    }
    // An account word glued to a digit (or letter) before it is no context. Found by the
    // idempotence property: after the first number becomes `fnr:…ac474d7c`, the word would read
    // `cacct` on a second scan.
    for text in ["01010016882acct=01010016882", "9konto 31129956715"] {
        let (once, c) = scrub(&p, text);
        assert_eq!(c.account_numbers_kept, 0, "{text}");
        assert_eq!(scrub(&p, &once).0, once);
    }
    // The usual account formats are never 11-digit runs.
    for text in ["konto 3112.99.56715", "3112 99 56715", "3112.99.56715"] {
        assert_eq!(scrub(&p, text).0, text);
    }
    // With the switch off, account context is ignored.
    let strict = Privacy::new(
        &key(),
        PrivacyPolicy {
            keep_account_numbers: false,
            ..PrivacyPolicy::default()
        },
    );
    assert_eq!(scrub(&strict, "kontonr: 31129956715").1.national_ids, 1);
}

#[test]
fn ip_addresses_follow_the_policy() {
    let text =
        "login fra 203.0.113.5 via 10.1.2.3, v6 2001:db8::7 og [fe80::1]:22 ::ffff:198.51.100.9";
    let (out, c) = scrub(&privacy(), text);
    assert_eq!(out, text, "kept by default");
    assert!(c.is_empty());
    let p = privacy_ips();
    let (out, c) = scrub(&p, text);
    assert_eq!(c.ip_addresses, 3, "{out}");
    assert!(out.contains("248.64.61.89"), "{out}");
    assert!(out.contains("10.1.2.3"), "{out}");
    assert!(out.contains("[fe80::1]:22"), "{out}");
    assert!(!out.contains("2001:db8::7"), "{out}");
    assert!(out.contains(" 100::"), "{out}");
    assert!(out.contains("::ffff:24"), "{out}");
    // Not addresses: times, versions with more parts, MAC addresses.
    for text in [
        "kl 10:00:00",
        "v1.2.3.4.5",
        "mac 00:1a:2b:3c:4d:5e",
        "nginx/1.18.0",
    ] {
        assert_eq!(scrub(&p, text).0, text);
    }
}

#[test]
fn events_are_scrubbed_in_every_text_field() {
    let p = privacy_ips();
    let mut e = Event {
        message: Some("bruker 31129956715 logget inn".into()),
        host: Some("203.0.113.5".into()),
        typed: vec![
            ("src_ip", Value::Str("203.0.113.5".into())),
            ("status", Value::UInt(31_129_956_715)),
        ],
        attrs: vec![
            ("pid".into(), "31129956715".into()),
            ("31129956715".into(), "x".into()),
        ],
        ..Event::default()
    };
    let c = p.scrub_event(&mut e);
    assert_eq!(c.national_ids, 3);
    assert_eq!(c.ip_addresses, 2);
    assert_eq!(
        e.message.as_deref(),
        Some("bruker fnr:1b47fae3-1c5eff07 logget inn")
    );
    assert_eq!(e.host.as_deref(), Some("248.64.61.89"));
    assert_eq!(e.get("src_ip"), Some(&Value::Str("248.64.61.89".into())));
    assert_eq!(e.get("status"), Some(&Value::UInt(31_129_956_715)));
    assert_eq!(e.attrs[0].1, "fnr:1b47fae3-1c5eff07");
    assert_eq!(e.attrs[1].0, "fnr:1b47fae3-1c5eff07");
}

#[test]
fn different_keys_give_different_pseudonyms() {
    let other = Privacy::new(&PrivacyKey::from_bytes([7; 32]), PrivacyPolicy::default());
    assert_ne!(
        other.national_id_pseudonym(b"31129956715"),
        privacy().national_id_pseudonym(b"31129956715")
    );
}

#[test]
fn key_files_are_created_private_and_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub").join("privacy.key");
    let a = PrivacyKey::load_or_create(&path).expect("created");
    let b = PrivacyKey::load_or_create(&path).expect("loaded");
    assert_eq!(a.0, b.0);
    let text = std::fs::read_to_string(&path).expect("read");
    assert_eq!(text.trim().len(), 64);
    assert!(!format!("{a:?}").contains(&text.trim()[..8]));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = PrivacyKey::load_or_create(&path).expect_err("readable by others");
        assert!(err.to_string().contains("chmod 600"), "{err}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    std::fs::write(&path, "not hex\n").expect("write");
    let err = PrivacyKey::load_or_create(&path).expect_err("bad format");
    assert!(err.to_string().contains("64 hex digits"), "{err}");
    // No leftover temporary files.
    let names: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.file_name()))
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
}

#[test]
fn from_config_uses_the_state_directory() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = Privacy::from_config(&PrivacyConfig::default(), dir.path()).expect("privacy");
    assert!(dir.path().join("privacy.key").exists());
    let q = Privacy::from_config(&PrivacyConfig::default(), dir.path()).expect("privacy");
    assert_eq!(
        p.national_id_pseudonym(b"31129956715"),
        q.national_id_pseudonym(b"31129956715")
    );
}

// ---- generated numbers -------------------------------------------------------------------------

fn days_in(month: u8, year2: u8) -> u8 {
    match month {
        2 if year2.is_multiple_of(4) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

const CLASSES: [NinClass; 5] = [
    NinClass::Fodselsnummer,
    NinClass::DNumber,
    NinClass::HNumber,
    NinClass::Synthetic,
    NinClass::SyntheticDNumber,
];

fn shift(class: NinClass) -> (u8, u8) {
    match class {
        NinClass::Fodselsnummer => (0, 0),
        NinClass::DNumber => (40, 0),
        NinClass::HNumber => (0, 40),
        NinClass::Synthetic => (0, 80),
        NinClass::SyntheticDNumber => (40, 80),
    }
}

/// A valid identity number of any class under either rule, with its class and K1 remainder.
fn valid_number() -> impl Strategy<Value = ([u8; 11], NinClass, u32)> {
    (
        0..5usize,
        1..=12u8,
        1..=31u8,
        0..100u8,
        0..1000u16,
        0..=3u32,
    )
        .prop_filter_map(
            "no check digits for this individual number",
            |(c, month, day, year2, ind, r1)| {
                let class = CLASSES[c];
                let day = day.min(days_in(month, year2));
                let (ds, ms) = shift(class);
                let (dd, mm) = (day + ds, month + ms);
                let ind = u8::try_from(ind / 100)
                    .ok()
                    .zip(u8::try_from(ind % 100).ok())?;
                let first9 = [
                    dd / 10,
                    dd % 10,
                    mm / 10,
                    mm % 10,
                    year2 / 10,
                    year2 % 10,
                    ind.0,
                    ind.1 / 10,
                    ind.1 % 10,
                ];
                complete(first9, r1).map(|d| (d, class, r1))
            },
        )
}

/// Text around numbers: anything, but never a digit at either end.
fn filler() -> impl Strategy<Value = String> {
    "([^0-9]{1,12}[0-9]{0,4}[^0-9]{1,12}){0,3}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every generated number is recognised with its class and rule.
    #[test]
    fn valid_numbers_are_classified((d, class, r1) in valid_number()) {
        let info = classify(&d);
        prop_assert!(info.is_some(), "{}", ascii(&d));
        let info = info.unwrap_or_else(|| unreachable!());
        prop_assert_eq!(info.class, class);
        prop_assert_eq!(info.rule, if r1 == 0 { CheckRule::Classic } else { CheckRule::From2032 });
        prop_assert_eq!(k1_remainder(&d), r1);
    }

    /// Changing any one digit of a valid number makes it invalid: every weight of the second
    /// check digit is non-zero mod 11.
    #[test]
    fn one_wrong_digit_is_refused((d, _, _) in valid_number(), pos in 0..11usize, delta in 1..10u8) {
        let mut bad = d;
        bad[pos] = (bad[pos] + delta) % 10;
        prop_assert!(classify(&bad).is_none(), "{} → {}", ascii(&d), ascii(&bad));
    }

    /// A first check digit with remainder 4..=10 is refused even with a right second one.
    #[test]
    fn remainders_beyond_the_2032_set_are_refused((d, _, _) in valid_number(), r1 in 4..=10u32) {
        let mut first9 = [0u8; 9];
        first9.copy_from_slice(&d[..9]);
        // complete() only builds remainders 0..=3 for us; build this one by hand.
        let s1: u32 = first9.iter().zip([3u32, 7, 6, 1, 8, 9, 4, 5, 2]).map(|(a, w)| u32::from(*a) * w).sum();
        let k1 = (r1 + 22 - s1 % 11) % 11;
        if k1 > 9 {
            return Ok(()); // no digit gives this remainder here
        }
        let mut bad = [0u8; 11];
        bad[..9].copy_from_slice(&first9);
        bad[9] = u8::try_from(k1).unwrap_or(0);
        let s2: u32 = bad[..10].iter().zip([5u32, 4, 3, 2, 7, 6, 5, 4, 3, 2]).map(|(a, w)| u32::from(*a) * w).sum();
        let k2 = (11 - s2 % 11) % 11;
        if k2 > 9 {
            return Ok(()); // never issued: the second check digit would be 10
        }
        bad[10] = u8::try_from(k2).unwrap_or(0);
        prop_assert_eq!(k1_remainder(&bad), r1);
        prop_assert!(classify(&bad).is_none());
    }

    /// Check digits right (under either rule) but no such (shifted) date: refused.
    #[test]
    fn impossible_dates_are_refused(
        bad_day in prop_oneof![Just(0u8), 32..=40u8, 72..=99u8],
        bad_month in prop_oneof![Just(0u8), 13..=40u8, 53..=80u8, 93..=99u8],
        good_day in 1..=28u8, good_month in 1..=12u8, which in 0..3usize,
        year2 in 0..100u8, ind in 0..1000u16, r1 in 0..=3u32,
    ) {
        let (dd, mm) = match which {
            0 => (bad_day, good_month),
            1 => (good_day, bad_month),
            _ => (bad_day, bad_month),
        };
        let ind = [ind / 100, ind / 10 % 10, ind % 10].map(|x| u8::try_from(x).unwrap_or(0));
        let first9 = [dd / 10, dd % 10, mm / 10, mm % 10, year2 / 10, year2 % 10, ind[0], ind[1], ind[2]];
        if let Some(d) = complete(first9, r1) {
            prop_assert!(classify(&d).is_none(), "{}", ascii(&d));
        }
    }

    /// A number inside text is replaced by its pseudonym and counted; the text around it stays.
    #[test]
    fn numbers_in_text_are_pseudonymised(
        (d, _, _) in valid_number(), pre in filler(), post in filler(),
    ) {
        let p = privacy();
        let n = ascii(&d);
        // Keep the account-context rule out of this property.
        let pre = format!("{pre} fnr ");
        let (out, c) = scrub(&p, &format!("{pre}{n}{post}"));
        let pseudonym = p.national_id_pseudonym(n.as_bytes());
        prop_assert_eq!(&out, &format!("{pre}{pseudonym}{post}"));
        prop_assert!(c.national_ids >= 1);
    }

    /// A valid number glued to another digit is not an 11-digit run and stays.
    #[test]
    fn numbers_inside_longer_runs_stay((d, _, _) in valid_number(), extra in 0..10u8, front in any::<bool>()) {
        let n = ascii(&d);
        let text = if front { format!("x{extra}{n}y") } else { format!("x{n}{extra}y") };
        prop_assert_eq!(scrub(&privacy(), &text).0, text);
    }

    /// Text without an identity number (or address, when addresses are pseudonymised) comes
    /// back unchanged and borrowed.
    #[test]
    fn text_without_numbers_is_unchanged(text in "[^0-9]{0,80}", no_colon in "[^0-9:]{0,80}") {
        let mut counts = PrivacyCounts::default();
        let out = privacy().scrub_text(&text, &mut counts);
        prop_assert!(matches!(out, Cow::Borrowed(_)));
        // Without digits and colons there is no address either.
        let out = privacy_ips().scrub_text(&no_colon, &mut counts);
        prop_assert!(matches!(out, Cow::Borrowed(_)));
        prop_assert!(counts.is_empty());
    }

    /// Digit runs that are not valid identity numbers are left alone.
    #[test]
    fn invalid_runs_are_unchanged(pre in filler(), run in "[0-9]{1,20}", post in filler()) {
        let text = format!("{pre} {run} {post}");
        let valid = digits(run.as_bytes()).and_then(|d| classify(&d)).is_some();
        prop_assume!(!valid);
        prop_assert_eq!(scrub(&privacy(), &text).0, text);
    }

    /// Scrubbing is idempotent, with and without addresses: a pseudonym is never detected again.
    #[test]
    fn scrubbing_is_idempotent(
        parts in prop::collection::vec(
            prop_oneof![
                filler(),
                valid_number().prop_map(|(d, _, _)| ascii(&d)),
                "[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}\\.[0-9]{1,3}",
                "[0-9a-f]{1,4}:[0-9a-f]{0,4}:[0-9a-f:]{0,12}",
                "(konto|kontonr|account_number|acct)[ :=]{1,2}",
                "[ ,;]",
            ],
            0..12,
        ),
    ) {
        let text: String = parts.concat();
        for p in [privacy(), privacy_ips()] {
            let (once, _) = scrub(&p, &text);
            let (twice, c) = scrub(&p, &once);
            prop_assert_eq!(&twice, &once);
            prop_assert_eq!(c.national_ids, 0);
            prop_assert_eq!(c.ip_addresses, 0);
        }
    }

    /// The same number gives the same pseudonym in every position; different numbers give
    /// different pseudonyms.
    #[test]
    fn pseudonyms_are_stable((a, _, _) in valid_number(), (b, _, _) in valid_number()) {
        let p = privacy();
        let (pa, pb) = (p.national_id_pseudonym(ascii(&a).as_bytes()), p.national_id_pseudonym(ascii(&b).as_bytes()));
        prop_assert_eq!(&pa, &p.national_id_pseudonym(ascii(&a).as_bytes()));
        prop_assert_eq!(a == b, pa == pb);
        prop_assert_eq!(pa.len(), 21);
    }

    /// Any text at all: no panic, and no valid 11-digit run survives outside account context.
    #[test]
    fn no_identity_number_survives(text in "\\PC{0,60}", (d, _, _) in valid_number()) {
        let p = Privacy::new(&key(), PrivacyPolicy { keep_account_numbers: false, ..PrivacyPolicy::default() });
        let text = format!("{text} {} ", ascii(&d));
        let (out, _) = scrub(&p, &text);
        let bytes = out.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() { i += 1; }
            if i > start {
                let survived = digits(&bytes[start..i]).and_then(|d| classify(&d));
                prop_assert!(survived.is_none(), "{out}");
            } else {
                i += 1;
            }
        }
    }
}

#[test]
fn digits_are_found_where_they_are() {
    let reference = |b: &[u8], i: usize| b[i..].iter().position(u8::is_ascii_digit).map(|p| i + p);
    for text in [
        "",
        "abc",
        "seq: 0000000000, thread",
        "PADDPADDPADDPADD7",
        "æøå€😀 /:9",
    ] {
        let b = text.as_bytes();
        for i in 0..=b.len() {
            assert_eq!(
                super::next_digit(b, i),
                reference(b, i),
                "{text:?} from {i}"
            );
        }
    }
    // Every byte value at every place in a word, after every other byte value.
    for before in 0..=255u8 {
        for hit in 0..=255u8 {
            for at in 0..9 {
                let mut b = vec![before; 12];
                b[at] = hit;
                assert_eq!(
                    super::next_digit(&b, 0),
                    reference(&b, 0),
                    "{before} then {hit} at {at}"
                );
            }
        }
    }
}

/// A text made of pieces that matter to the privacy layer: identity numbers, account context,
/// IP addresses of both families, digit runs of other lengths, dots and colons, and filler.
fn privacy_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        valid_number().prop_map(|(d, _, _)| ascii(&d)),
        Just("kontonr ".to_owned()),
        Just("10.0.0.7".to_owned()),
        Just("fe80::1".to_owned()),
        Just("2001:db8::42".to_owned()),
        Just("09:59:58".to_owned()),
        "[0-9]{1,14}",
        "[.:a-f ]{0,6}",
        filler(),
    ];
    prop::collection::vec(piece, 0..5).prop_map(|pieces| pieces.concat())
}

fn privacy_event() -> impl Strategy<Value = Event> {
    (
        prop::option::of(privacy_text()),
        prop::option::of(privacy_text()),
        prop::option::of(privacy_text()),
        prop::collection::vec((privacy_text(), privacy_text()), 0..6),
    )
        .prop_map(|(host, message, app, attrs)| Event {
            host,
            message,
            typed: app
                .map(|a| vec![("app_name", Value::Str(a)), ("facility", Value::UInt(3))])
                .unwrap_or_default(),
            attrs,
            ..Event::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// A row scrubbed where it lies (each buffer looked at whole first, then only the texts
    /// that may hold something searched) comes out as the same event scrubbed field by field,
    /// with the same counts, under either IP policy; a reused row keeps nothing of the last.
    #[test]
    fn rows_are_scrubbed_as_events_are(events in prop::collection::vec(privacy_event(), 1..4)) {
        for p in [privacy(), privacy_ips()] {
            let (mut row, mut spare) = (Row::default(), Row::default());
            for e in &events {
                let mut want = e.clone();
                let want_counts = p.scrub_event(&mut want);
                row.assign(e);
                let counts = p.scrub_row(&mut row, &mut spare);
                prop_assert_eq!(row.to_event(), want);
                prop_assert_eq!(counts, want_counts);
            }
        }
    }
}

#[test]
fn digit_runs_are_cut_where_texts_end() {
    // Three texts: five digits, eleven digits, four digits; the buffer's run of 20 is no
    // text's but the middle one's 11.
    assert_eq!(
        texts_with_digit_runs(b"12345678901234567890", &[5, 16, 20], 11),
        [1]
    );
    // Ten digits and one: eleven in the buffer, in no text.
    assert_eq!(
        texts_with_digit_runs(b"12345678901", &[10, 11], 11),
        Vec::<usize>::new()
    );
    // Runs inside longer texts, empty texts between, a run at the very end.
    assert_eq!(
        texts_with_digit_runs(
            b"id 31129956715 xx2024-01-01abc12345678901",
            &[15, 15, 27, 41],
            11
        ),
        [0, 3]
    );
    assert!(texts_with_digit_runs(b"", &[], 11).is_empty());
}

/// The runs of at least `len` digits, found one byte at a time.
fn digit_runs_bytewise(b: &[u8], len: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_digit() {
            let start = i;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            if i - start >= len {
                out.push((start, i));
            }
        } else {
            i += 1;
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// Eight bytes at a time finds the runs one byte at a time finds, for any bytes: digits,
    /// the bytes next to them (`/`, `:`), high bytes, and long runs across word edges.
    #[test]
    fn digit_runs_are_found_as_byte_by_byte(
        b in prop::collection::vec(prop_oneof![
            4 => b'0'..=b'9',
            1 => prop::sample::select(vec![b'/', b':', b'a', 0x80, 0xb0, 0xb9, 0xff, 0]),
            1 => any::<u8>(),
        ], 0..300),
        len in 9usize..14,
    ) {
        prop_assert_eq!(digit_runs(&b, len).collect::<Vec<_>>(), digit_runs_bytewise(&b, len));
    }

    /// The same for long runs: digit runs of up to 200 bytes between single other bytes, so
    /// that runs fill, start, end and cross 64-byte blocks at every place.
    #[test]
    fn long_digit_runs_are_found_as_byte_by_byte(
        pieces in prop::collection::vec(
            (0usize..200, prop::sample::select(vec![b'/', b':', b'a', 0x80, 0xff])),
            0..6,
        ),
        lead in 0usize..64,
        len in 9usize..14,
    ) {
        let mut b = vec![b'x'; lead];
        for (run, other) in pieces {
            b.extend((0..run).map(|i| b'0' + (i % 10) as u8));
            b.push(other);
        }
        prop_assert_eq!(digit_runs(&b, len).collect::<Vec<_>>(), digit_runs_bytewise(&b, len));
    }

    /// The texts of a buffer holding a `.` or `:` are the texts in which `memchr2` finds one,
    /// empty texts and texts at the buffer's ends included.
    #[test]
    fn texts_with_a_dot_or_colon_are_found_text_by_text(
        texts in prop::collection::vec(
            prop::collection::vec(prop::sample::select(vec![b'.', b':', b'a', b'1', b' ']), 0..6),
            0..12,
        ),
    ) {
        let buffer: Vec<u8> = texts.concat();
        let ends: Vec<u32> = texts
            .iter()
            .scan(0u32, |end, t| {
                *end += t.len() as u32;
                Some(*end)
            })
            .collect();
        let want: Vec<usize> = texts
            .iter()
            .enumerate()
            .filter(|(_, t)| memchr::memchr2(b'.', b':', t).is_some())
            .map(|(i, _)| i)
            .collect();
        prop_assert_eq!(texts_with_either(&buffer, &ends, b'.', b':'), want);
    }
}
