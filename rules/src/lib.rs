//! # varde-rules: Varde's Sigma engine
//!
//! Parse Sigma rules (specification 2.x), compile a whole rule set once per source kind, and
//! match entire Arrow batches of events at a time.
//!
//! - [`ast`]: YAML documents → rules and meta filters.
//! - [`condition`]: the condition language.
//! - [`correlation`]: Sigma correlation rules, checked, and their sliding windows.
//! - [`string`]: Sigma strings with wildcards and escaping.
//! - [`compile`]: modifiers and conditions → boolean expressions over shared atoms.
//! - [`mapping`]: field mappings and logsource routing (data in `rules/mappings/`).
//! - [`engine`]: the vectorised matcher ([`RuleSet`]).
//! - [`reference`]: the row-at-a-time definitions, the oracle of the property tests, and where
//!   the choices on points Sigma engines disagree about are documented.
//! - [`sql`]: the same compiled rules as ClickHouse SQL, for hunting in stored events.
//! - [`load`]: reading rule files and folders (the only I/O in this crate).
//! - [`explain`]: the fields an alert shows (what the rule tests, with the event's values).
//! - [`pack`]: Varde's own rules (`rules/sigma/`), built in.
//! - `datafusion` (feature `datafusion`): the matcher as the DataFusion scalar function
//!   `sigma_match(kind, columns...)`, so that the pipeline's streaming plan and SQL hunts over
//!   Arrow data run the very same compiled rules.
//!
//! ```
//! use varde_rules::RuleSetBuilder;
//! use varde_core::{BatchBuilder, CollectorId, Event, Kommunenummer, SourceKind, Value};
//!
//! let mut builder = RuleSetBuilder::new(Default::default())?;
//! builder.add_yaml("example.yml", r#"
//! title: Encoded PowerShell
//! id: 00000000-0000-0000-0000-000000000001
//! logsource: {product: windows, category: process_creation}
//! detection:
//!     selection:
//!         Image|endswith: '\powershell.exe'
//!         CommandLine|contains|windash: ' -enc '
//!     condition: selection
//! level: high
//! "#);
//! let rules = builder.build()?;
//!
//! let mut batch = BatchBuilder::new(SourceKind::WindowsEvent, Kommunenummer::parse("0301")?,
//!     CollectorId::new("k0301-win")?, 1);
//! batch.push(&Event {
//!     typed: vec![("win_event_id", Value::UInt(1)),
//!                 ("channel", Value::Str("Microsoft-Windows-Sysmon/Operational".into()))],
//!     attrs: vec![("Image".into(), r"C:\Windows\System32\WindowsPowerShell\v1.0\PowerShell.exe".into()),
//!                 ("CommandLine".into(), "powershell /enc SQBFAFgA".into())],
//!     ..Event::default()
//! })?;
//! let matches = rules.match_batch(SourceKind::WindowsEvent, &batch.finish()?)?;
//! assert_eq!(matches.len(), 1);
//! assert_eq!(rules.rules()[matches[0].rule as usize].meta.title, "Encoded PowerShell");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]

pub mod ast;
pub mod compile;
pub mod condition;
pub mod correlation;
#[cfg(feature = "datafusion")]
pub mod datafusion;
pub mod engine;
pub mod explain;
pub mod fields;
pub mod load;
pub mod mapping;
pub mod pack;
pub mod reference;
pub mod sql;
pub mod string;

pub use engine::{LoadError, LoadedRule, Match, RuleSet, RuleSetBuilder};

/// Why a rule or document did not load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Not valid YAML.
    #[error("YAML: {0}")]
    Yaml(String),
    /// Valid YAML but not a valid Sigma document.
    #[error("{0}")]
    Invalid(String),
    /// A valid Sigma feature Varde does not support yet.
    #[error("unsupported: {0}")]
    Unsupported(String),
}

impl Error {
    pub(crate) fn invalid(m: impl Into<String>) -> Self {
        Error::Invalid(m.into())
    }

    /// Prefixes the message with where it happened.
    pub fn context(self, what: impl std::fmt::Display) -> Self {
        match self {
            Error::Yaml(m) => Error::Yaml(format!("{what}: {m}")),
            Error::Invalid(m) => Error::Invalid(format!("{what}: {m}")),
            Error::Unsupported(m) => Error::Unsupported(format!("{what}: {m}")),
        }
    }

    /// A short class name for counting rejections.
    pub fn class(&self) -> &'static str {
        match self {
            Error::Yaml(_) => "yaml",
            Error::Invalid(m) if m.contains("placeholder") => "placeholder",
            Error::Invalid(_) => "invalid",
            Error::Unsupported(_) => "unsupported",
        }
    }
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
