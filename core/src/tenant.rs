//! Tenants: Norwegian municipalities, by kommunenummer.
//!
//! The list shipped in `core/data/kommuner.csv` is Statistics Norway's classification of
//! municipalities (KLASS 131, "Standard for kommuneinndeling"), valid from 2024-01-01; the file's
//! first line names the exact source. Counties come from `core/data/fylker.csv` (KLASS 104).
//! When the municipal structure changes, replace the two files and bump nothing else: numbers are
//! validated against the list, so a retired number is rejected with a clear reason.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

const KOMMUNER_CSV: &str = include_str!("../data/kommuner.csv");
const FYLKER_CSV: &str = include_str!("../data/fylker.csv");

/// Why a text is not a tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TenantError {
    /// Not four ASCII digits.
    #[error("'{0}' is not a kommunenummer: expected exactly 4 digits, e.g. 0301")]
    Malformed(String),
    /// Four digits, but no current municipality has that number.
    #[error(
        "'{0}' is not the number of a current municipality (SSB KLASS 131, valid from 2024-01-01)"
    )]
    Unknown(String),
}

/// A municipality's number (kommunenummer): four digits, the first two being its county.
///
/// Only numbers of current municipalities can be constructed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Kommunenummer([u8; 4]);

impl Kommunenummer {
    /// Validates a kommunenummer against the shipped list.
    pub fn parse(s: &str) -> Result<Self, TenantError> {
        let bytes = s.as_bytes();
        if bytes.len() != 4 || !bytes.iter().all(u8::is_ascii_digit) {
            return Err(TenantError::Malformed(s.to_owned()));
        }
        let k = Kommunenummer([bytes[0], bytes[1], bytes[2], bytes[3]]);
        if registry().municipalities.contains_key(&k) {
            Ok(k)
        } else {
            Err(TenantError::Unknown(s.to_owned()))
        }
    }

    /// The four digits as text.
    pub fn as_str(&self) -> &str {
        // Constructed only from ASCII digits.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    /// The municipality's name, in SSB's official form.
    pub fn name(&self) -> &'static str {
        registry()
            .municipalities
            .get(self)
            .map_or("", String::as_str)
    }

    /// The county number (fylkesnummer): the first two digits.
    pub fn county_number(&self) -> &str {
        &self.as_str()[..2]
    }

    /// The county's name.
    pub fn county_name(&self) -> &'static str {
        registry()
            .counties
            .get(self.county_number())
            .map_or("", String::as_str)
    }

    /// Every current municipality, by number.
    pub fn all() -> impl Iterator<Item = Kommunenummer> {
        registry().municipalities.keys().copied()
    }
}

impl fmt::Display for Kommunenummer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Kommunenummer {
    type Err = TenantError;
    fn from_str(s: &str) -> Result<Self, TenantError> {
        Kommunenummer::parse(s)
    }
}

impl TryFrom<String> for Kommunenummer {
    type Error = TenantError;
    fn try_from(s: String) -> Result<Self, TenantError> {
        Kommunenummer::parse(&s)
    }
}

impl From<Kommunenummer> for String {
    fn from(k: Kommunenummer) -> String {
        k.as_str().to_owned()
    }
}

struct Registry {
    municipalities: BTreeMap<Kommunenummer, String>,
    counties: BTreeMap<String, String>,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(|| Registry {
        municipalities: data_rows(KOMMUNER_CSV)
            .filter_map(|(num, name)| {
                let b = num.as_bytes();
                (b.len() == 4 && b.iter().all(u8::is_ascii_digit))
                    .then(|| (Kommunenummer([b[0], b[1], b[2], b[3]]), name))
            })
            .collect(),
        counties: data_rows(FYLKER_CSV).collect(),
    })
}

/// Rows of a shipped `number,name` CSV file: comment lines (`#`) and the header skipped, an
/// optionally double-quoted name.
fn data_rows(csv: &'static str) -> impl Iterator<Item = (String, String)> {
    csv.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .skip(1)
        .filter_map(|line| {
            let (num, name) = line.split_once(',')?;
            let name = name.trim();
            let name = name
                .strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .map_or_else(|| name.to_owned(), |n| n.replace("\"\"", "\""));
            Some((num.trim().to_owned(), name))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_list_is_complete() {
        let all: Vec<_> = Kommunenummer::all().collect();
        assert_eq!(all.len(), 357, "the 2024 structure has 357 municipalities");
        for k in &all {
            assert!(!k.name().is_empty(), "{k} has no name");
            assert!(!k.county_name().is_empty(), "{k} has no county");
        }
    }

    #[test]
    fn known_numbers_parse_with_names() {
        let oslo = Kommunenummer::parse("0301").expect("Oslo");
        assert_eq!(oslo.name(), "Oslo");
        assert_eq!(oslo.county_number(), "03");
        let bergen = Kommunenummer::parse("4601").expect("Bergen");
        assert_eq!(bergen.name(), "Bergen");
        assert_eq!(bergen.county_name(), "Vestland");
        assert_eq!(
            Kommunenummer::parse("5001").expect("Trondheim").name(),
            "Trondheim - Tråante"
        );
    }

    #[test]
    fn bad_numbers_are_rejected_with_reason() {
        assert_eq!(
            Kommunenummer::parse("301"),
            Err(TenantError::Malformed("301".into()))
        );
        assert_eq!(
            Kommunenummer::parse("03O1"),
            Err(TenantError::Malformed("03O1".into()))
        );
        assert_eq!(
            Kommunenummer::parse("０３０１"),
            Err(TenantError::Malformed("０３０１".into()))
        );
        // 1201 was Bergen's number before 2020.
        assert_eq!(
            Kommunenummer::parse("1201"),
            Err(TenantError::Unknown("1201".into()))
        );
        assert!(Kommunenummer::parse("9999").is_err());
    }
}
