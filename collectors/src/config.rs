//! The collector's configuration: one strict TOML file.
//!
//! Unknown keys are rejected with their line and column, so a typo never silently disables a
//! setting. See `deploy/examples/collector.toml` for a commented example.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use varde_core::{CollectorId, Kommunenummer};
use varde_transport::kafka::KafkaSettings;

/// Why a configuration file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown/invalid keys (the message carries line and column).
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What and where.
        message: String,
    },
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorConfig {
    /// This installation's id, e.g. `k0301-syslog-01` (1–64 of `A-Z a-z 0-9 . _ -`).
    pub collector_id: CollectorId,
    /// The municipality this collector belongs to (kommunenummer). The broker binds it to the
    /// collector's credentials: it may write only this tenant's topic.
    pub tenant: Kommunenummer,
    /// Directory for the collector's state (batch sequence); created if missing.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Where batches go.
    pub kafka: KafkaSettings,
    /// Batching.
    #[serde(default)]
    pub batch: BatchConfig,
    /// Inputs.
    #[serde(default)]
    pub sources: Vec<SourceConfig>,
    /// Personal data minimisation at the edge (see [`crate::privacy`]).
    #[serde(default)]
    pub privacy: PrivacyConfig,
}

/// The `[privacy]` section: how personal data is pseudonymised before anything leaves the
/// municipality. National identity numbers are always pseudonymised; there is no switch for it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The municipality's pseudonymisation key (32 random bytes as 64 hex digits). Created with
    /// mode 0600 when missing; refused when group or others may read it. The key never leaves
    /// the collector; every collector of one municipality should share it so that the same
    /// person gets the same pseudonym. Default: `<state_dir>/privacy.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// Keep 11-digit numbers that pass the bank account check and whose context says they are
    /// account numbers (`kontonr: …`, `account=…`). Default `true`.
    #[serde(default = "default_true")]
    pub keep_account_numbers: bool,
    /// What to do with IP addresses in events. Default `keep`.
    #[serde(default)]
    pub ip_addresses: IpAddressPolicy,
    /// Networks whose addresses are never pseudonymised (the municipality's own servers and
    /// clients). Default: RFC 1918, loopback, link-local, IPv6 unique-local and link-local.
    #[serde(default = "default_internal_networks")]
    pub internal_networks: Vec<ipnet::IpNet>,
}

/// What the collector does with IP addresses outside the internal networks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpAddressPolicy {
    /// Ship addresses as they are (the CERT needs attackers' addresses for threat intelligence).
    #[default]
    Keep,
    /// Replace every address outside `internal_networks` by a keyed pseudonym of the same
    /// family (IPv4 into 240.0.0.0/4, IPv6 into 100::/64).
    Pseudonymise,
}

fn default_true() -> bool {
    true
}

fn default_internal_networks() -> Vec<ipnet::IpNet> {
    [
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
    ]
    .iter()
    .filter_map(|n| n.parse().ok())
    .collect()
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            key_file: None,
            keep_account_numbers: true,
            ip_addresses: IpAddressPolicy::Keep,
            internal_networks: default_internal_networks(),
        }
    }
}

impl PrivacyConfig {
    /// The key file in use: `key_file`, or `privacy.key` in the state directory.
    pub fn key_path(&self, state_dir: &Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| state_dir.join("privacy.key"))
    }
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/varde-collector")
}

/// When a batch is closed and sent.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Close a batch at this many rows (default 5000).
    #[serde(default = "default_max_rows")]
    pub max_rows: usize,
    /// Close a batch when its first row is this old, in milliseconds (default 1000).
    #[serde(default = "default_max_delay_ms")]
    pub max_delay_ms: u64,
    /// How long one publish may wait for the broker's acknowledgement, in milliseconds, before
    /// it is retried (default 30000).
    #[serde(default = "default_publish_timeout_ms")]
    pub publish_timeout_ms: u64,
}

fn default_max_rows() -> usize {
    5000
}
fn default_max_delay_ms() -> u64 {
    1000
}
fn default_publish_timeout_ms() -> u64 {
    30_000
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_rows: default_max_rows(),
            max_delay_ms: default_max_delay_ms(),
            publish_timeout_ms: default_publish_timeout_ms(),
        }
    }
}

/// One input.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Syslog over TCP, newline-framed.
    SyslogTcp {
        /// Address to listen on, e.g. `127.0.0.1:5514`.
        listen: SocketAddr,
    },
    /// A file of syslog lines, read from the beginning and then followed as it grows.
    File {
        /// The file.
        path: PathBuf,
    },
}

impl CollectorConfig {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and validates configuration text; `path` is used in messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let config: CollectorConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        if config.batch.max_rows == 0 || config.batch.max_rows > 1_000_000 {
            return Err(invalid(format!(
                "batch.max_rows = {} is outside 1..=1000000",
                config.batch.max_rows
            )));
        }
        if config.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers is empty".into()));
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
collector_id = "k0301-test"
tenant = "0301"
state_dir = "/tmp/x"

[kafka]
brokers = "127.0.0.1:19092"

[[sources]]
type = "syslog_tcp"
listen = "127.0.0.1:5514"

[[sources]]
type = "file"
path = "/var/log/syslog"
"#;

    #[test]
    fn a_good_file_parses_with_defaults() {
        let c = CollectorConfig::parse(GOOD, Path::new("c.toml")).expect("valid");
        assert_eq!(c.tenant.as_str(), "0301");
        assert_eq!(c.batch.max_rows, 5000);
        assert_eq!(c.kafka.topic_prefix, "varde.");
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.privacy.ip_addresses, IpAddressPolicy::Keep);
        assert!(c.privacy.keep_account_numbers);
        assert_eq!(c.privacy.internal_networks.len(), 8);
        assert_eq!(
            c.privacy.key_path(&c.state_dir),
            Path::new("/tmp/x/privacy.key")
        );
    }

    #[test]
    fn the_privacy_section_is_strict() {
        let text = format!(
            "{GOOD}\n[privacy]\nkey_file = \"/etc/varde/k.key\"\nip_addresses = \"pseudonymise\"\ninternal_networks = [\"10.1.0.0/16\"]\n"
        );
        let c = CollectorConfig::parse(&text, Path::new("c.toml")).expect("valid");
        assert_eq!(c.privacy.ip_addresses, IpAddressPolicy::Pseudonymise);
        assert_eq!(c.privacy.internal_networks.len(), 1);
        assert_eq!(
            c.privacy.key_path(&c.state_dir),
            Path::new("/etc/varde/k.key")
        );
        let err = |t: String| {
            CollectorConfig::parse(&t, Path::new("c.toml"))
                .expect_err("invalid")
                .to_string()
        };
        assert!(
            err(format!("{GOOD}\n[privacy]\nip_adresses = \"keep\"\n")).contains("ip_adresses")
        );
        assert!(err(format!("{GOOD}\n[privacy]\nip_addresses = \"hash\"\n")).contains("hash"));
        assert!(
            err(format!(
                "{GOOD}\n[privacy]\ninternal_networks = [\"10.0.0.0/33\"]\n"
            ))
            .contains("internal_networks")
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_line() {
        let text = GOOD.replace("state_dir", "stat_dir");
        let err = CollectorConfig::parse(&text, Path::new("c.toml"))
            .expect_err("typo")
            .to_string();
        assert!(err.starts_with("c.toml: "), "{err}");
        assert!(err.contains("line 4"), "{err}");
        assert!(err.contains("stat_dir"), "{err}");
    }

    #[test]
    fn bad_values_say_why() {
        let err = |t: String| {
            CollectorConfig::parse(&t, Path::new("c.toml"))
                .expect_err("invalid")
                .to_string()
        };
        assert!(
            err(GOOD.replace("\"0301\"", "\"1201\""))
                .contains("not the number of a current municipality")
        );
        assert!(err(GOOD.replace("k0301-test", "bad id")).contains("not a valid collector id"));
        assert!(err(GOOD.replace("syslog_tcp", "carrier_pigeon")).contains("carrier_pigeon"));
        assert!(err(format!("{GOOD}\n[batch]\nmax_rows = 0\n")).contains("max_rows"));
    }
}
