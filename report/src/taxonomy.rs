//! The classification an incident carries in every export: ENISA's Reference Security
//! Incident Taxonomy (RSIT: category and type) and the NIS Cooperation Group's root-cause
//! categories, as data files with their source and version (`report/data/`), built into the
//! binary.

use serde::Deserialize;

const RSIT: &str = include_str!("../data/rsit.toml");
const ROOT_CAUSES: &str = include_str!("../data/root_causes.toml");

/// One RSIT category with its types.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Category {
    /// Machine name, e.g. `intrusion-attempts` (the MISP predicate).
    pub id: String,
    /// Display name.
    pub name: String,
    /// (machine name, display name) of each type.
    pub types: Vec<(String, String)>,
}

/// The RSIT as shipped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Rsit {
    /// Where it comes from.
    pub source: String,
    /// Its version there.
    pub version: String,
    /// The MISP namespace (`rsit`).
    pub namespace: String,
    /// Its categories.
    #[serde(rename = "category")]
    pub categories: Vec<Category>,
}

/// The root-cause categories as shipped.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RootCauses {
    /// Where they come from.
    pub source: String,
    /// Its version.
    pub version: String,
    /// (machine name, display name).
    pub root_causes: Vec<(String, String)>,
}

/// The built-in RSIT. The data file is part of the build and checked by a test.
pub fn rsit() -> Rsit {
    toml::from_str(RSIT).unwrap_or_else(|_| Rsit {
        source: String::new(),
        version: String::new(),
        namespace: "rsit".into(),
        categories: Vec::new(),
    })
}

/// The built-in root-cause categories.
pub fn root_causes() -> RootCauses {
    toml::from_str(ROOT_CAUSES).unwrap_or_else(|_| RootCauses {
        source: String::new(),
        version: String::new(),
        root_causes: Vec::new(),
    })
}

/// A checked classification `category/type` (e.g. `intrusion-attempts/brute-force`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classification {
    /// The category's machine name.
    pub category: String,
    /// Its display name.
    pub category_name: String,
    /// The type's machine name.
    pub kind: String,
    /// Its display name.
    pub kind_name: String,
}

impl Classification {
    /// The stored form, `category/type`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.category, self.kind)
    }

    /// The MISP tag, `rsit:category="type"`.
    pub fn misp_tag(&self) -> String {
        format!("rsit:{}=\"{}\"", self.category, self.kind)
    }
}

/// The classification of a stored `category/type`; `None` when it is not in the RSIT.
pub fn classify(key: &str) -> Option<Classification> {
    let (category, kind) = key.split_once('/')?;
    let rsit = rsit();
    let c = rsit.categories.iter().find(|c| c.id == category)?;
    let (_, kind_name) = c.types.iter().find(|(id, _)| id == kind)?;
    Some(Classification {
        category: c.id.clone(),
        category_name: c.name.clone(),
        kind: kind.to_owned(),
        kind_name: kind_name.clone(),
    })
}

/// The display name of a root cause's machine name; `None` when unknown.
pub fn root_cause(key: &str) -> Option<String> {
    root_causes()
        .root_causes
        .into_iter()
        .find(|(id, _)| id == key)
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_files_load_with_their_source_and_version() {
        let r: Rsit = toml::from_str(RSIT).expect("rsit.toml");
        assert_eq!(r.categories.len(), 11);
        assert_eq!(r.namespace, "rsit");
        assert!(r.source.contains("ENISA") && r.version == "2");
        let types: usize = r.categories.iter().map(|c| c.types.len()).sum();
        assert_eq!(types, 36);
        let c: RootCauses = toml::from_str(ROOT_CAUSES).expect("root_causes.toml");
        assert_eq!(c.root_causes.len(), 5);
        assert!(c.source.contains("NIS Cooperation Group"));
    }

    #[test]
    fn classifications_are_checked_against_the_taxonomy() {
        let c = classify("intrusion-attempts/brute-force").expect("known");
        assert_eq!(c.kind_name, "Login attempts");
        assert_eq!(c.misp_tag(), "rsit:intrusion-attempts=\"brute-force\"");
        assert!(classify("intrusion-attempts/phishing").is_none());
        assert!(classify("nonsense").is_none());
        assert_eq!(
            root_cause("malicious-actions").as_deref(),
            Some("Malicious actions")
        );
        assert!(root_cause("aliens").is_none());
    }
}
