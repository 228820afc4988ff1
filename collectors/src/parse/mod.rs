//! Edge parsers: the text of a line into the typed columns of a [`SourceKind`].
//!
//! Each parser looks at the *body* of a line — the syslog message when the line was syslog, the
//! whole line when it was not — and says one of three things ([`Outcome`]): this is mine and here
//! are the columns; this is not my format; or this is my format but broken. The caller
//! ([`crate::edge`]) keeps the line in every case: an unknown format stays a `syslog` event with
//! its raw text, a broken one too, counted.
//!
//! - [`access`]: web server access logs — Apache/nginx common and combined (with an optional
//!   `vhost:port` prefix), IIS W3C extended with its `#Fields:` header → `web_access`.
//! - [`auth`]: sshd (accepted/failed password, publickey, keyboard-interactive; invalid users;
//!   too many attempts) and sudo command lines → `auth`.
//! - [`oidc`]: JSON login events of municipal services and ID-porten (the accepted shape is
//!   documented there), and syslog lines with `idporten@53595` structured data → `oidc_login`;
//!   Windows event records in evtx, Winlogbeat or NXLog JSON → `windows_event` (by
//!   [`varde_core::windows`]).
//! - [`json`]: any other JSON object → `generic_json`, flattened, with configurable host,
//!   message and time members.

pub mod access;
pub mod auth;
pub mod json;
pub mod oidc;

use varde_core::schema::{ColumnType, typed_columns};
use varde_core::{SourceKind, Value};

/// The columns a parser found in a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Parsed {
    /// The kind of event the line is.
    pub kind: SourceKind,
    /// Values of the kind's typed columns.
    pub typed: Vec<(&'static str, Value)>,
    /// Further fields, as text.
    pub attrs: Vec<(String, String)>,
    /// When it happened, if the line says so more precisely than its syslog header (µs).
    pub event_time_us: Option<i64>,
    /// The host, if the line names it and the syslog header did not.
    pub host: Option<String>,
    /// Syslog structured-data attributes the parser turned into columns (to drop from attrs).
    pub consumed_attrs: Vec<String>,
}

impl Parsed {
    /// An empty result of `kind`.
    pub fn new(kind: SourceKind) -> Self {
        Parsed {
            kind,
            typed: Vec::new(),
            attrs: Vec::new(),
            event_time_us: None,
            host: None,
            consumed_attrs: Vec::new(),
        }
    }

    /// The columns as an event of their own (no syslog header around them), received at
    /// `receive_time_us`.
    pub fn into_event(self, receive_time_us: i64) -> varde_core::Event {
        varde_core::Event {
            event_time_us: self.event_time_us.unwrap_or(receive_time_us),
            receive_time_us,
            host: self.host,
            typed: self.typed,
            attrs: self.attrs,
            ..varde_core::Event::default()
        }
    }

    /// Sets a text column unless the value is empty or `-` (the log formats' "no value").
    pub fn text(&mut self, column: &'static str, value: &str) {
        if !value.is_empty() && value != "-" {
            self.typed.push((column, Value::Str(value.to_owned())));
        }
    }

    /// Sets an unsigned column from decimal text; `-` and empty are no value. `false` when the
    /// text is neither a number nor empty, or does not fit the column's width in the kind's
    /// schema (an HTTP status of 401401 would make the whole event unbatchable).
    pub fn number(&mut self, column: &'static str, value: &str) -> bool {
        if value.is_empty() || value == "-" {
            return true;
        }
        let max = match typed_columns(self.kind).iter().find(|c| c.name == column) {
            Some(spec) => match spec.ty {
                ColumnType::UInt8 => u64::from(u8::MAX),
                ColumnType::UInt16 => u64::from(u16::MAX),
                ColumnType::UInt32 => u64::from(u32::MAX),
                ColumnType::UInt64 => u64::MAX,
                _ => return false,
            },
            None => return false,
        };
        match value.parse::<u64>() {
            Ok(n) if n <= max => {
                self.typed.push((column, Value::UInt(n)));
                true
            }
            _ => false,
        }
    }

    /// Adds an attribute unless the value is empty or `-`.
    pub fn attr(&mut self, key: impl Into<String>, value: &str) {
        if !value.is_empty() && value != "-" {
            self.attrs.push((key.into(), value.to_owned()));
        }
    }
}

/// What a parser made of a line body.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The line is in this parser's format.
    Parsed(Parsed),
    /// Not this parser's format: try the next one, or keep the line as syslog.
    NotMine,
    /// This parser's format, but malformed: the line is kept as syslog and counted.
    Failed(&'static str),
}

/// Compiles a constant pattern once. `None` only if the pattern were invalid, which the unit
/// tests of every parser rule out; the parser then reports [`Outcome::NotMine`].
macro_rules! static_regex {
    ($pattern:expr) => {{
        static RE: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
        RE.get_or_init(|| regex::Regex::new($pattern).ok()).as_ref()
    }};
}
pub(crate) use static_regex;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_must_fit_their_column() {
        let mut p = Parsed::new(SourceKind::WebAccess);
        assert!(p.number("status", "401"));
        assert!(!p.number("status", "401401"), "UInt16 column");
        assert!(p.number("bytes_sent", "18446744073709551615"));
        assert!(!p.number("bytes_sent", "18446744073709551616"));
        assert!(!p.number("user", "1"), "not a numeric column");
        assert!(!p.number("no_such_column", "1"));
        assert!(p.number("status", "-"));
        assert_eq!(p.typed.len(), 2);
    }
}
