//! How Varde's pseudonyms look, so that every reader can tell them from real values.
//!
//! The collector's edge (and the pipeline, for third-party JSON lines) replaces national
//! identity numbers and, by policy, citizens' IP addresses with keyed pseudonyms
//! (`varde_collector::privacy`). Their shapes are fixed and chosen to be recognisable:
//!
//! - an identity number becomes `fnr:` and 16 lowercase hex digits in two groups of eight
//!   (`fnr:1a2b3c4d-5e6f7a8b`);
//! - an IPv4 address becomes an address in `240.0.0.0/4` (reserved, never routed);
//! - an IPv6 address becomes an address in `100::/64` (the discard-only prefix, RFC 6666).
//!
//! A real address in those ranges cannot occur in traffic, so an address in them is a pseudonym.

use std::net::IpAddr;

/// True when `ip` lies in a pseudonym range (`240.0.0.0/4`, `100::/64`, or an IPv4-mapped
/// IPv6 address of `240.0.0.0/4`).
pub fn is_pseudonym_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.octets()[0] & 0xf0 == 0xf0,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.octets()[0] & 0xf0 == 0xf0,
            None => v6.segments()[..4] == [0x0100, 0, 0, 0],
        },
    }
}

/// True when `s` is exactly an identity number's pseudonym: `fnr:`, eight lowercase hex
/// digits, `-`, eight lowercase hex digits.
pub fn is_national_id_pseudonym(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("fnr:") else {
        return false;
    };
    let b = rest.as_bytes();
    b.len() == 17
        && b[8] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 8 || matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// True when the whole of `value` is a pseudonym (an identity number's, or an address in a
/// pseudonym range).
pub fn is_pseudonym(value: &str) -> bool {
    is_national_id_pseudonym(value) || value.parse::<IpAddr>().is_ok_and(is_pseudonym_ip)
}

/// Splits `text` into pieces, each with whether it is a pseudonym, in order; joined they give
/// `text` back. Words are runs of letters, digits and `:.-%`; a trailing `.`, `:` or `-` of a
/// word (the end of a sentence) is not part of it.
pub fn split_pseudonyms(text: &str) -> Vec<(&str, bool)> {
    let word = |c: char| c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '-' | '%');
    let mut out: Vec<(&str, bool)> = Vec::new();
    let mut plain_start = 0;
    let mut i = 0;
    let bytes = text.as_bytes();
    while i < text.len() {
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        if !word(c) {
            i += c.len_utf8();
            continue;
        }
        let start = i;
        while i < text.len() && text[i..].chars().next().is_some_and(word) {
            i += 1; // word characters are ASCII
        }
        let mut end = i;
        while end > start && matches!(bytes[end - 1], b'.' | b':' | b'-') {
            end -= 1;
        }
        if is_pseudonym(&text[start..end]) {
            if plain_start < start {
                out.push((&text[plain_start..start], false));
            }
            out.push((&text[start..end], true));
            plain_start = end;
        }
    }
    if plain_start < text.len() {
        out.push((&text[plain_start..], false));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_the_reserved_ones() {
        for p in [
            "240.0.0.1",
            "255.255.255.254",
            "100::1",
            "100::ffff:ffff:ffff:ffff",
            "::ffff:240.1.2.3",
        ] {
            assert!(is_pseudonym(p), "{p}");
        }
        for r in [
            "239.255.255.255",
            "10.0.0.1",
            "100:0:0:1::1",
            "2001:db8::1",
            "::ffff:10.0.0.1",
            "1.2.3.4",
        ] {
            assert!(!is_pseudonym(r), "{r}");
        }
    }

    #[test]
    fn identity_number_pseudonyms_have_one_shape() {
        assert!(is_pseudonym("fnr:0123abcd-ef456789"));
        for not in [
            "fnr:0123abcd-ef45678",
            "fnr:0123ABCD-ef456789",
            "fnr:0123abcdef456789",
            "fnr:0123abcd-ef4567890",
            "dnr:0123abcd-ef456789",
            "01019012345",
        ] {
            assert!(!is_pseudonym(not), "{not}");
        }
    }

    #[test]
    fn pseudonyms_are_found_in_text_and_the_text_is_kept() {
        let text = "Accepted password for fnr:0123abcd-ef456789 from 240.1.2.3. Port 22, peer 10.0.0.9 (100::7)";
        let pieces = split_pseudonyms(text);
        let joined: String = pieces.iter().map(|(p, _)| *p).collect();
        assert_eq!(joined, text);
        let found: Vec<&str> = pieces.iter().filter(|(_, f)| *f).map(|(p, _)| *p).collect();
        assert_eq!(found, ["fnr:0123abcd-ef456789", "240.1.2.3", "100::7"]);
        assert_eq!(split_pseudonyms(""), []);
        assert_eq!(split_pseudonyms("ingen her"), [("ingen her", false)]);
    }
}
