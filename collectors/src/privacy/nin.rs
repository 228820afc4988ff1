//! Norwegian national identity numbers and bank account numbers: the arithmetic.
//!
//! An identity number has 11 digits `DDMMYY III K1 K2`: a birth date (possibly shifted, see
//! below), a three-digit individual number and two check digits.
//!
//! | class | date shift | example of the first four digits |
//! |---|---|---|
//! | fødselsnummer | none | `3112…` (31 December) |
//! | D-number (foreign workers, temporary residents) | day + 40 | `7112…` |
//! | H-number (assistance numbers in health care) | month + 40 | `3152…` |
//! | synthetic test number (Skatteetaten's Tenor test data) | month + 80 | `3192…` |
//! | synthetic D-number | day + 40 and month + 80 | `7192…` |
//!
//! A month shifted by 40 is read as an H-number; NAV's older synthetic numbers use the same shift
//! and cannot be told apart from H-numbers (both are pseudonymised, so this costs nothing).
//!
//! **The date must exist**: day 1–31 within the month's length, 29 February only in years
//! divisible by four. The century is deliberately *not* derived from the individual number: the
//! ranges that encoded it are reassigned by the 2032 reform, and for privacy a missed number is
//! worse than a pseudonymised look-alike. Every two-digit year divisible by four is a leap year
//! in some candidate century (2000 was one), so this is the loosest exact date check.
//!
//! **Check digits.** With `d1 … d11` the digits:
//!
//! - `S1 = 3·d1 + 7·d2 + 6·d3 + 1·d4 + 8·d5 + 9·d6 + 4·d7 + 5·d8 + 2·d9`.
//! - Classic rule (every number issued before 2032): `K1 = d10` makes `(S1 + K1) mod 11 = 0`
//!   (so `K1 = 11 − S1 mod 11`, 11 read as 0, and a computed 10 means the individual number is
//!   never issued).
//! - Rule for numbers issued from 2032: `K1` may be any digit for which `(S1 + K1) mod 11` is
//!   0, 1, 2 or 3. The classic numbers are exactly the case 0, so every classic number is also
//!   valid under the new rule; [`CheckRule`] says which one a number needs.
//! - Under both rules `K2 = d11` makes `(S2 + K2) mod 11 = 0` with
//!   `S2 = 5·d1 + 4·d2 + 3·d3 + 2·d4 + 7·d5 + 6·d6 + 5·d7 + 4·d8 + 3·d9 + 2·d10` — that is, over
//!   the first ten digits *including* `K1`. A computed 10 is never a valid `K2`.
//!
//! **Bank account numbers** (kontonummer, `BBBB.KK.NNNNN`) have one check digit: the 11th digit
//! makes `(5·d1 + 4·d2 + 3·d3 + 2·d4 + 7·d5 + 6·d6 + 5·d7 + 4·d8 + 3·d9 + 2·d10 + d11) mod 11 = 0`.
//! That is *the same equation as K2*: every valid identity number is also a valid account
//! number, and about one account number in eleven that happens to start with a valid date passes
//! the identity checks too. The digits alone can therefore never tell the two apart; only the
//! text around them can (see [`super`]).

/// Weights of the first check digit over digits 1–9.
const W1: [u32; 9] = [3, 7, 6, 1, 8, 9, 4, 5, 2];
/// Weights of the second check digit (and of the account check) over digits 1–10.
const W2: [u32; 10] = [5, 4, 3, 2, 7, 6, 5, 4, 3, 2];

/// The class of an identity number, from its date shift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NinClass {
    /// Fødselsnummer: the birth date as it is.
    Fodselsnummer,
    /// D-number: day + 40.
    DNumber,
    /// H-number: month + 40.
    HNumber,
    /// Skatteetaten's synthetic test number: month + 80.
    Synthetic,
    /// Synthetic D-number: day + 40 and month + 80.
    SyntheticDNumber,
}

/// Which first-check-digit rule a number satisfies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckRule {
    /// `(S1 + K1) mod 11 = 0`: valid under the classic rule (and under the 2032 rule too).
    Classic,
    /// `(S1 + K1) mod 11 ∈ {1, 2, 3}`: valid only under the rule for numbers issued from 2032.
    From2032,
}

/// What [`classify`] found out about a valid identity number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NinInfo {
    /// The class.
    pub class: NinClass,
    /// The first-check-digit rule it satisfies.
    pub rule: CheckRule,
    /// The (unshifted) birth day, 1–31.
    pub day: u8,
    /// The (unshifted) birth month, 1–12.
    pub month: u8,
    /// The two-digit birth year.
    pub year2: u8,
}

/// Digits of an identity number.
pub const LEN: usize = 11;

/// The digit values of exactly 11 ASCII digits, or `None`.
pub fn digits(text: &[u8]) -> Option<[u8; LEN]> {
    let bytes: &[u8; LEN] = text.try_into().ok()?;
    let mut out = [0u8; LEN];
    for (o, b) in out.iter_mut().zip(bytes) {
        if !b.is_ascii_digit() {
            return None;
        }
        *o = b - b'0';
    }
    Some(out)
}

fn weighted(d: &[u8], weights: &[u32]) -> u32 {
    d.iter().zip(weights).map(|(d, w)| u32::from(*d) * w).sum()
}

/// The remainder `(S1 + K1) mod 11` of the first check digit.
pub fn k1_remainder(d: &[u8; 11]) -> u32 {
    (weighted(&d[..9], &W1) + u32::from(d[9])) % 11
}

/// True when the 11th digit is the mod-11 check digit over the first ten with weights
/// 5 4 3 2 7 6 5 4 3 2: the second check digit of an identity number, and the check digit of a
/// bank account number.
pub fn mod11_w2_ok(d: &[u8; 11]) -> bool {
    (weighted(&d[..10], &W2) + u32::from(d[10])).is_multiple_of(11)
}

/// True when `d` passes the check of a Norwegian bank account number.
pub fn is_account_number(d: &[u8; 11]) -> bool {
    mod11_w2_ok(d)
}

fn days_in_month(month: u8, year2: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if year2.is_multiple_of(4) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Classifies 11 digit values as a national identity number: a valid (shifted) date and valid
/// check digits under the classic or the 2032 rule. `None` when it is not one.
pub fn classify(d: &[u8; 11]) -> Option<NinInfo> {
    let dd = d[0] * 10 + d[1];
    let mm = d[2] * 10 + d[3];
    let year2 = d[4] * 10 + d[5];
    let (day, d_number) = match dd {
        1..=31 => (dd, false),
        41..=71 => (dd - 40, true),
        _ => return None,
    };
    let (month, class) = match (mm, d_number) {
        (1..=12, false) => (mm, NinClass::Fodselsnummer),
        (1..=12, true) => (mm, NinClass::DNumber),
        (41..=52, false) => (mm - 40, NinClass::HNumber),
        (81..=92, false) => (mm - 80, NinClass::Synthetic),
        (81..=92, true) => (mm - 80, NinClass::SyntheticDNumber),
        _ => return None,
    };
    if day > days_in_month(month, year2) {
        return None;
    }
    let rule = match k1_remainder(d) {
        0 => CheckRule::Classic,
        1..=3 => CheckRule::From2032,
        _ => return None,
    };
    if !mod11_w2_ok(d) {
        return None;
    }
    Some(NinInfo {
        class,
        rule,
        day,
        month,
        year2,
    })
}

/// [`classify`] for text that must be exactly 11 ASCII digits.
pub fn classify_str(text: &str) -> Option<NinInfo> {
    classify(&digits(text.as_bytes())?)
}

/// Completes nine digits (date and individual number) into a valid identity number under
/// `rule`, choosing the first-check-digit remainder `r1` (0 for the classic rule, 1–3 for the
/// 2032 rule). `None` when no digit gives that remainder or the second check digit would be 10.
/// Used by Varde's tests, fuzzing and sample data to make numbers; never to validate.
pub fn complete(first9: [u8; 9], r1: u32) -> Option<[u8; 11]> {
    let s1 = weighted(&first9, &W1);
    // K1 with (s1 + k1) % 11 == r1.
    let k1 = (r1 + 11 * 2 - s1 % 11) % 11;
    if k1 > 9 {
        return None;
    }
    let mut d = [0u8; 11];
    d[..9].copy_from_slice(&first9);
    d[9] = u8::try_from(k1).ok()?;
    let s2 = weighted(&d[..10], &W2);
    let k2 = (11 - s2 % 11) % 11;
    if k2 > 9 {
        return None;
    }
    d[10] = u8::try_from(k2).ok()?;
    Some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_numbers() {
        // The worked example of the classic rule: 311299567 → K1 = 1, K2 = 5.
        let info = classify_str("31129956715").expect("valid");
        assert_eq!(info.class, NinClass::Fodselsnummer);
        assert_eq!(info.rule, CheckRule::Classic);
        assert_eq!((info.day, info.month, info.year2), (31, 12, 99));
        assert!(classify_str("31129956716").is_none(), "wrong K2");
        assert!(classify_str("31129956725").is_none(), "wrong K1");
        assert!(is_account_number(&digits(b"31129956715").expect("digits")));
    }

    #[test]
    fn every_class_and_rule_is_recognised() {
        let cases: [([u8; 6], NinClass); 5] = [
            ([0, 1, 0, 1, 9, 0], NinClass::Fodselsnummer),
            ([4, 1, 0, 1, 9, 0], NinClass::DNumber),
            ([0, 1, 4, 1, 9, 0], NinClass::HNumber),
            ([0, 1, 8, 1, 9, 0], NinClass::Synthetic),
            ([4, 1, 8, 1, 9, 0], NinClass::SyntheticDNumber),
        ];
        for (date, class) in cases {
            for r1 in 0..=3 {
                let made = (0..1000u32).find_map(|ind| {
                    let mut f = [0u8; 9];
                    f[..6].copy_from_slice(&date);
                    f[6] = u8::try_from(ind / 100).ok()?;
                    f[7] = u8::try_from(ind / 10 % 10).ok()?;
                    f[8] = u8::try_from(ind % 10).ok()?;
                    complete(f, r1)
                });
                let d = made.expect("some individual number works");
                let info = classify(&d).expect("valid");
                assert_eq!(info.class, class);
                let want = if r1 == 0 {
                    CheckRule::Classic
                } else {
                    CheckRule::From2032
                };
                assert_eq!(info.rule, want);
                assert_eq!(k1_remainder(&d), r1);
            }
        }
    }

    #[test]
    fn dates_must_exist() {
        let make = |date: [u8; 6]| {
            (0..1000u32).find_map(|ind| {
                let mut f = [0u8; 9];
                f[..6].copy_from_slice(&date);
                f[6] = u8::try_from(ind / 100).ok()?;
                f[7] = u8::try_from(ind / 10 % 10).ok()?;
                f[8] = u8::try_from(ind % 10).ok()?;
                complete(f, 0)
            })
        };
        for bad in [
            [0, 0, 0, 1, 9, 0], // day 0
            [3, 2, 0, 1, 9, 0], // 32 January
            [3, 1, 0, 4, 9, 0], // 31 April
            [2, 9, 0, 2, 0, 1], // 29 February 01
            [0, 1, 1, 3, 9, 0], // month 13
            [0, 1, 0, 0, 9, 0], // month 0
            [4, 1, 4, 1, 9, 0], // D and H at once
            [7, 2, 0, 1, 9, 0], // D-number day 32
            [0, 1, 9, 3, 9, 0], // synthetic month 13
        ] {
            let d = make(bad).expect("check digits exist");
            assert!(classify(&d).is_none(), "{d:?}");
        }
        for good in [[2, 9, 0, 2, 0, 0], [2, 9, 0, 2, 9, 6], [6, 9, 8, 2, 0, 4]] {
            let d = make(good).expect("check digits exist");
            assert!(classify(&d).is_some(), "{d:?}");
        }
    }

    #[test]
    fn remainders_outside_the_2032_set_are_refused() {
        // Find a number whose K1 remainder is 4..=10 but whose K2 is right.
        let mut seen = 0;
        for ind in 0..1000u32 {
            for k1 in 0..10u8 {
                let mut d = [0, 1, 0, 1, 9, 0, 0, 0, 0, k1, 0];
                d[6] = u8::try_from(ind / 100).unwrap_or(0);
                d[7] = u8::try_from(ind / 10 % 10).unwrap_or(0);
                d[8] = u8::try_from(ind % 10).unwrap_or(0);
                let s2 = weighted(&d[..10], &W2);
                let k2 = (11 - s2 % 11) % 11;
                if k2 > 9 {
                    continue;
                }
                d[10] = u8::try_from(k2).unwrap_or(0);
                let r1 = k1_remainder(&d);
                assert_eq!(classify(&d).is_some(), r1 <= 3, "{d:?} r1={r1}");
                seen += usize::from(r1 > 3);
            }
        }
        assert!(seen > 1000);
    }

    #[test]
    fn digits_wants_exactly_eleven_ascii_digits() {
        assert!(digits(b"0123456789").is_none());
        assert!(digits(b"012345678901").is_none());
        assert!(digits(b"0123456789a").is_none());
        assert_eq!(digits(b"01234567890").map(|d| d[10]), Some(0));
    }
}
