//! The collector's configuration: one strict TOML file.
//!
//! Unknown keys are rejected with their line and column, so a typo never silently disables a
//! setting. See `deploy/examples/collector.toml` for a commented example.
//!
//! ## Environment overrides
//! A few values can come from the environment instead, which wins over the file (handy for
//! secrets and for systemd drop-ins): see [`ENV_OVERRIDES`]. For example
//! `VARDE_COLLECTOR_KAFKA_BROKERS=kafka1.cert.example:9093` or
//! `VARDE_COLLECTOR_KAFKA_SASL_PASSWORD=…` (kept out of the file).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use varde_core::{CollectorId, Kommunenummer};
use varde_transport::kafka::KafkaSettings;

use crate::spool::SpoolConfig;

/// Environment variables that override configuration values: (variable, TOML path, kind).
/// `kind` is `"str"` or `"int"`. `kafka.properties.*` entries set librdkafka properties.
pub const ENV_OVERRIDES: &[(&str, &str, &str)] = &[
    ("VARDE_COLLECTOR_ID", "collector_id", "str"),
    ("VARDE_COLLECTOR_TENANT", "tenant", "str"),
    ("VARDE_COLLECTOR_STATE_DIR", "state_dir", "str"),
    ("VARDE_COLLECTOR_KAFKA_BROKERS", "kafka.brokers", "str"),
    (
        "VARDE_COLLECTOR_KAFKA_TOPIC_PREFIX",
        "kafka.topic_prefix",
        "str",
    ),
    (
        "VARDE_COLLECTOR_KAFKA_COMPRESSION",
        "kafka.compression",
        "str",
    ),
    (
        "VARDE_COLLECTOR_KAFKA_SECURITY_PROTOCOL",
        "kafka.properties.security.protocol",
        "str",
    ),
    (
        "VARDE_COLLECTOR_KAFKA_SASL_MECHANISM",
        "kafka.properties.sasl.mechanism",
        "str",
    ),
    (
        "VARDE_COLLECTOR_KAFKA_SASL_USERNAME",
        "kafka.properties.sasl.username",
        "str",
    ),
    (
        "VARDE_COLLECTOR_KAFKA_SASL_PASSWORD",
        "kafka.properties.sasl.password",
        "str",
    ),
    (
        "VARDE_COLLECTOR_KAFKA_SSL_CA_LOCATION",
        "kafka.properties.ssl.ca.location",
        "str",
    ),
    ("VARDE_COLLECTOR_SPOOL_DIR", "spool.dir", "str"),
    ("VARDE_COLLECTOR_SPOOL_MAX_BYTES", "spool.max_bytes", "int"),
    ("VARDE_COLLECTOR_METRICS_LISTEN", "metrics.listen", "str"),
];

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
    /// Which members of generic JSON lines hold the host, message and event time (see
    /// [`crate::parse::json`]). Defaults: `host`/`hostname`/`host.name`, `message`/`msg`,
    /// `@timestamp`/`timestamp`/`time`/`ts`.
    #[serde(default)]
    pub json: crate::parse::json::JsonFields,
    /// The disk spool between batches and Kafka.
    #[serde(default)]
    pub spool: SpoolConfig,
    /// `/metrics` and `/health`.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The collector's report on itself to the CERT (see [`crate::status`]).
    #[serde(default)]
    pub status: StatusConfig,
    /// Network flows: how they end, and the components they are attributed to.
    #[serde(default)]
    pub flows: FlowsConfig,
    /// The collector's signing key.
    #[serde(default)]
    pub identity: IdentityConfig,
}

/// The `[identity]` section: where the collector's Ed25519 key is (see [`crate::identity`]).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The key file (PEM, PKCS#8, mode 0600); default `<state_dir>/collector.key`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

impl IdentityConfig {
    /// The key file's path.
    pub fn key_path(&self, state_dir: &Path) -> PathBuf {
        self.key_file
            .clone()
            .unwrap_or_else(|| state_dir.join("collector.key"))
    }
}

/// The `[flows]` section (see [`crate::flow`]; defaults in `docs/flows.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowsConfig {
    /// Seconds without a packet after which a flow ends (default 300).
    #[serde(default = "FlowsConfig::default_idle")]
    pub idle_timeout_s: u64,
    /// Seconds after which a long flow is reported and starts again (default 1800).
    #[serde(default = "FlowsConfig::default_active")]
    pub active_timeout_s: u64,
    /// Most flows held at once (default 1,000,000).
    #[serde(default = "FlowsConfig::default_max_flows")]
    pub max_flows: usize,
    /// More shared components (the registry's TOML format) besides the built-in ones.
    #[serde(default)]
    pub components: Option<PathBuf>,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            idle_timeout_s: Self::default_idle(),
            active_timeout_s: Self::default_active(),
            max_flows: Self::default_max_flows(),
            components: None,
        }
    }
}

impl FlowsConfig {
    fn default_idle() -> u64 {
        crate::flow::table::FlowSettings::default().idle_timeout_s
    }
    fn default_active() -> u64 {
        crate::flow::table::FlowSettings::default().active_timeout_s
    }
    fn default_max_flows() -> usize {
        crate::flow::table::FlowSettings::default().max_flows
    }

    /// The flow table's settings.
    pub fn table(&self) -> crate::flow::table::FlowSettings {
        crate::flow::table::FlowSettings {
            idle_timeout_s: self.idle_timeout_s,
            active_timeout_s: self.active_timeout_s,
            max_flows: self.max_flows,
        }
    }

    /// The component registry: the built-in one and `components`.
    pub fn registry(&self) -> Result<varde_core::ComponentRegistry, String> {
        let mut registry = varde_core::ComponentRegistry::builtin();
        if let Some(path) = &self.components {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            registry
                .extend_from_toml(&text)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(registry)
    }
}

/// The `[status]` section.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// Seconds between two reports of spool depth and drops to the CERT (default 60; 0: none).
    #[serde(default = "default_status_interval_s")]
    pub interval_s: u64,
}

fn default_status_interval_s() -> u64 {
    60
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            interval_s: default_status_interval_s(),
        }
    }
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

/// Where `/metrics` (Prometheus text) and `/health` are served.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to listen on, e.g. `127.0.0.1:9464`; absent: no HTTP endpoint.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
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
    /// Spooled batches published concurrently (default 4; order is kept).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// On shutdown, how long to keep publishing what is spooled, in milliseconds (default
    /// 5000). What is left stays in the spool for the next start.
    #[serde(default = "default_drain_timeout_ms")]
    pub drain_timeout_ms: u64,
}

fn default_max_in_flight() -> usize {
    4
}
fn default_drain_timeout_ms() -> u64 {
    5000
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
            max_in_flight: default_max_in_flight(),
            drain_timeout_ms: default_drain_timeout_ms(),
        }
    }
}

/// One input.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    /// Syslog over TCP; framing (RFC 6587 octet counting or newlines) detected per connection.
    SyslogTcp {
        /// Address to listen on, e.g. `127.0.0.1:5514`.
        listen: SocketAddr,
    },
    /// RELP (rsyslog's `omrelp`): each message acknowledged once it is journalled, so the
    /// sender resends what the collector did not keep.
    Relp {
        /// Address to listen on, e.g. `0.0.0.0:2514`.
        listen: SocketAddr,
    },
    /// Syslog over UDP, one message per datagram.
    SyslogUdp {
        /// Address to listen on, e.g. `127.0.0.1:5514`.
        listen: SocketAddr,
        /// Socket receive buffer in bytes (`SO_RCVBUF`; the kernel caps it at
        /// `net.core.rmem_max`). Default: the system's.
        #[serde(default)]
        receive_buffer_bytes: Option<usize>,
    },
    /// Syslog over TLS (RFC 5425); framing as for TCP.
    SyslogTls {
        /// Address to listen on, e.g. `0.0.0.0:6514`.
        listen: SocketAddr,
        /// The server certificate chain (PEM).
        cert: PathBuf,
        /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
        key: PathBuf,
        /// If set, senders must present a certificate signed by this CA (PEM).
        #[serde(default)]
        client_ca: Option<PathBuf>,
    },
    /// Live capture on a network interface (`AF_PACKET`; needs `CAP_NET_RAW`), each flow a
    /// `flow` event (see `docs/flows.md`).
    Capture {
        /// The interface, e.g. `eth1` (a mirror or SPAN port). Not the loopback interface.
        interface: String,
        /// Whether to capture frames not addressed to this host (default true: a mirror port
        /// carries other hosts' traffic).
        #[serde(default = "default_true")]
        promiscuous: bool,
        /// The capture socket's receive buffer in bytes (`SO_RCVBUF`; the kernel caps it at
        /// `net.core.rmem_max`). Default 4 MiB. Frames that arrive while it is full are dropped
        /// by the kernel and counted in `varde_collector_source_capture_drops_total`.
        #[serde(default)]
        receive_buffer_bytes: Option<usize>,
    },
    /// NetFlow v5, v9 and IPFIX export datagrams (UDP) from the municipality's routers and
    /// firewalls, each record a `flow` event (see `docs/flows.md`).
    Netflow {
        /// Address to listen on, e.g. `0.0.0.0:2055`.
        listen: SocketAddr,
    },
    /// A file of syslog lines, read from its checkpoint (or beginning) and followed as it grows,
    /// through rotation by rename and copytruncate.
    File {
        /// The file, or a pattern with `*` and `?` in the file name only (e.g.
        /// `/var/log/nginx/*.log`): every matching file is followed, new ones within seconds.
        /// A name ending in `.gz` is a compressed (rotated) file: read once, to its end,
        /// through gzip, with checkpoints like any other file.
        path: PathBuf,
        /// Where to start in a file the collector has no checkpoint for: `beginning` (ship what
        /// is already in it; the default, so a new installation loses nothing) or `end` (only
        /// what is written from now on). Files that appear later are always read from their
        /// beginning; a checkpoint always wins.
        #[serde(default)]
        start_at: StartAt,
    },
}

/// Where a file source starts in a file it has no checkpoint for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartAt {
    /// Read the whole file.
    #[default]
    Beginning,
    /// Skip what is in the file when the collector first opens it.
    End,
}

impl SourceConfig {
    /// A short name for logs and metrics labels, e.g. `syslog_tcp:127.0.0.1:5514`.
    pub fn label(&self) -> String {
        match self {
            SourceConfig::SyslogTcp { listen } => format!("syslog_tcp:{listen}"),
            SourceConfig::Relp { listen } => format!("relp:{listen}"),
            SourceConfig::SyslogUdp { listen, .. } => format!("syslog_udp:{listen}"),
            SourceConfig::SyslogTls { listen, .. } => format!("syslog_tls:{listen}"),
            SourceConfig::File { path, .. } => format!("file:{}", path.display()),
            SourceConfig::Netflow { listen } => format!("netflow:{listen}"),
            SourceConfig::Capture { interface, .. } => format!("capture:{interface}"),
        }
    }
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

    /// Parses and validates configuration text; `path` is used in messages only. The
    /// process environment's overrides ([`ENV_OVERRIDES`]) apply.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        Self::parse_with_env(text, path, |k| std::env::var(k).ok())
    }

    /// [`CollectorConfig::parse`] with the environment given as a function (for tests).
    pub fn parse_with_env(
        text: &str,
        path: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let overrides: Vec<(&str, &str, &str, String)> = ENV_OVERRIDES
            .iter()
            .filter_map(|(var, key, kind)| env(var).map(|v| (*var, *key, *kind, v)))
            .collect();
        let config: CollectorConfig =
            if overrides.is_empty() {
                toml::from_str(text).map_err(|e| invalid(e.to_string().trim_end().to_owned()))?
            } else {
                let mut table: toml::Table = toml::from_str(text)
                    .map_err(|e| invalid(e.to_string().trim_end().to_owned()))?;
                let names: Vec<&str> = overrides.iter().map(|o| o.0).collect();
                for (var, key, kind, value) in &overrides {
                    let value =
                        if *kind == "int" {
                            toml::Value::Integer(value.trim().parse().map_err(|_| {
                                invalid(format!("{var} = {value:?} is not an integer"))
                            })?)
                        } else {
                            toml::Value::String(value.clone())
                        };
                    set_path(&mut table, key, value);
                }
                toml::Value::Table(table)
                    .try_into()
                    .map_err(|e: toml::de::Error| {
                        invalid(format!(
                            "with environment overrides {}: {}",
                            names.join(", "),
                            e.to_string().trim_end()
                        ))
                    })?
            };
        if config.batch.max_rows == 0 || config.batch.max_rows > 1_000_000 {
            return Err(invalid(format!(
                "batch.max_rows = {} is outside 1..=1000000",
                config.batch.max_rows
            )));
        }
        if config.batch.max_in_flight == 0 || config.batch.max_in_flight > 64 {
            return Err(invalid(format!(
                "batch.max_in_flight = {} is outside 1..=64",
                config.batch.max_in_flight
            )));
        }
        if config.kafka.brokers.trim().is_empty() {
            return Err(invalid("kafka.brokers is empty".into()));
        }
        config.spool.validate().map_err(invalid)?;
        let mut seen = std::collections::BTreeSet::new();
        for source in &config.sources {
            if let SourceConfig::File { path: file, .. } = source
                && file.parent().is_some_and(|d| {
                    d.as_os_str()
                        .as_encoded_bytes()
                        .iter()
                        .any(|b| matches!(b, b'*' | b'?'))
                })
            {
                return Err(invalid(format!(
                    "file source {}: wildcards are allowed in the file name only",
                    file.display()
                )));
            }
            let label = source.label();
            if !seen.insert(label.clone()) {
                return Err(invalid(format!("source {label} is configured twice")));
            }
        }
        Ok(config)
    }

    /// The spool's settings with its directory resolved (`<state_dir>/spool` by default).
    pub fn spool_config(&self) -> SpoolConfig {
        let mut spool = self.spool.clone();
        if spool.dir.is_none() {
            spool.dir = Some(self.state_dir.join("spool"));
        }
        spool
    }
}

/// Sets `a.b.c` in a TOML table; `kafka.properties.<rest>` takes the whole rest as one key
/// (librdkafka property names contain dots).
fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) {
    let parts: Vec<&str> = if let Some(prop) = key.strip_prefix("kafka.properties.") {
        vec!["kafka", "properties", prop]
    } else {
        key.split('.').collect()
    };
    let mut t = table;
    for part in &parts[..parts.len() - 1] {
        let entry = t
            .entry((*part).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        let toml::Value::Table(inner) = entry else {
            return;
        };
        t = inner;
    }
    if let Some(last) = parts.last() {
        t.insert((*last).to_owned(), value);
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
        assert!(
            err(format!(
                "{GOOD}\n[spool]\nmax_bytes = 1000000\nsegment_bytes = 500000\n"
            ))
            .contains("spool.segment_bytes")
        );
        assert!(err(format!("{GOOD}\n[spool]\nwhen_full = \"panic\"\n")).contains("panic"));
        assert!(
            err(format!(
                "{GOOD}\n[[sources]]\ntype = \"file\"\npath = \"/var/log/syslog\"\n"
            ))
            .contains("twice")
        );
    }

    #[test]
    fn every_source_type_and_the_spool_parse() {
        let text = format!(
            "{GOOD}
[[sources]]
type = \"syslog_udp\"
listen = \"127.0.0.1:5514\"
receive_buffer_bytes = 4194304

[[sources]]
type = \"syslog_tls\"
listen = \"0.0.0.0:6514\"
cert = \"/etc/varde/tls.crt\"
key = \"/etc/varde/tls.key\"

[spool]
max_bytes = 104857600
fsync = \"interval\"
fsync_interval_ms = 200
when_full = \"drop_oldest\"

[metrics]
listen = \"127.0.0.1:9464\"

[kafka.properties]
\"security.protocol\" = \"sasl_ssl\"
"
        )
        .replace(
            "[kafka]\nbrokers = \"127.0.0.1:19092\"",
            "[kafka]\nbrokers = \"127.0.0.1:19092\"\ncompression = \"lz4\"",
        );
        let c =
            CollectorConfig::parse_with_env(&text, Path::new("c.toml"), |_| None).expect("valid");
        assert_eq!(c.sources.len(), 4);
        assert_eq!(c.spool.when_full, crate::spool::FullPolicy::DropOldest);
        assert_eq!(c.spool_config().dir, Some(PathBuf::from("/tmp/x/spool")));
        assert_eq!(
            c.metrics.listen,
            Some("127.0.0.1:9464".parse().expect("addr"))
        );
        assert_eq!(c.kafka.compression.as_str(), "lz4");
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let env = |k: &str| match k {
            "VARDE_COLLECTOR_KAFKA_BROKERS" => Some("kafka.cert.example:9093".to_owned()),
            "VARDE_COLLECTOR_KAFKA_SASL_PASSWORD" => Some("s3cret".to_owned()),
            "VARDE_COLLECTOR_SPOOL_MAX_BYTES" => Some("2097152".to_owned()),
            _ => None,
        };
        let c = CollectorConfig::parse_with_env(GOOD, Path::new("c.toml"), env).expect("valid");
        assert_eq!(c.kafka.brokers, "kafka.cert.example:9093");
        assert_eq!(
            c.kafka.properties.get("sasl.password").map(String::as_str),
            Some("s3cret")
        );
        assert_eq!(c.spool.max_bytes, 2_097_152);
        let bad = |k: &str| (k == "VARDE_COLLECTOR_SPOOL_MAX_BYTES").then(|| "lots".to_owned());
        let err = CollectorConfig::parse_with_env(GOOD, Path::new("c.toml"), bad)
            .expect_err("not a number")
            .to_string();
        assert!(err.contains("VARDE_COLLECTOR_SPOOL_MAX_BYTES"), "{err}");
    }
}
