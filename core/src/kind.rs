//! Source kinds: what sort of telemetry a batch holds.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The kind of telemetry in one batch. Every batch holds exactly one kind, and each kind has its
/// own Arrow schema (see [`crate::schema`]).
///
/// The numeric code is part of the wire envelope and must never be reused for another kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// Syslog messages (RFC 3164 or RFC 5424), or any line received on a syslog listener.
    Syslog,
    /// Web server access logs (Apache/nginx combined, IIS W3C).
    WebAccess,
    /// Authentication lines (sshd, sudo, PAM).
    Auth,
    /// Windows event log records, as forwarded in JSON by Winlogbeat/NXLog or read from `.evtx`.
    WindowsEvent,
    /// Network flow records (captured by the collector or received as NetFlow/IPFIX).
    Flow,
    /// OpenID Connect login events of municipal services, notably ID-porten logins.
    OidcLogin,
    /// Any other JSON document; all fields are kept as key/value pairs.
    GenericJson,
}

impl SourceKind {
    /// Every kind, in code order.
    pub const ALL: [SourceKind; 7] = [
        SourceKind::Syslog,
        SourceKind::WebAccess,
        SourceKind::Auth,
        SourceKind::WindowsEvent,
        SourceKind::Flow,
        SourceKind::OidcLogin,
        SourceKind::GenericJson,
    ];

    /// The stable one-byte code used in the wire envelope.
    pub const fn code(self) -> u8 {
        match self {
            SourceKind::Syslog => 1,
            SourceKind::WebAccess => 2,
            SourceKind::Auth => 3,
            SourceKind::WindowsEvent => 4,
            SourceKind::Flow => 5,
            SourceKind::OidcLogin => 6,
            SourceKind::GenericJson => 7,
        }
    }

    /// The kind for a wire code, if it is one.
    pub const fn from_code(code: u8) -> Option<SourceKind> {
        Some(match code {
            1 => SourceKind::Syslog,
            2 => SourceKind::WebAccess,
            3 => SourceKind::Auth,
            4 => SourceKind::WindowsEvent,
            5 => SourceKind::Flow,
            6 => SourceKind::OidcLogin,
            7 => SourceKind::GenericJson,
            _ => return None,
        })
    }

    /// The stable lowercase name, as stored in the `source_kind` column and used in JSON lines.
    pub const fn name(self) -> &'static str {
        match self {
            SourceKind::Syslog => "syslog",
            SourceKind::WebAccess => "web_access",
            SourceKind::Auth => "auth",
            SourceKind::WindowsEvent => "windows_event",
            SourceKind::Flow => "flow",
            SourceKind::OidcLogin => "oidc_login",
            SourceKind::GenericJson => "generic_json",
        }
    }
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A string that names no source kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown source kind '{0}' (expected one of: syslog, web_access, auth, windows_event, flow, oidc_login, generic_json)"
)]
pub struct UnknownSourceKind(pub String);

impl FromStr for SourceKind {
    type Err = UnknownSourceKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SourceKind::ALL
            .into_iter()
            .find(|k| k.name() == s)
            .ok_or_else(|| UnknownSourceKind(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_names_round_trip() {
        for kind in SourceKind::ALL {
            assert_eq!(SourceKind::from_code(kind.code()), Some(kind));
            assert_eq!(kind.name().parse::<SourceKind>(), Ok(kind));
        }
        assert_eq!(SourceKind::from_code(0), None);
        assert_eq!(SourceKind::from_code(8), None);
        assert!("Syslog".parse::<SourceKind>().is_err());
    }
}
