//! JSON lines from third-party shippers: `<prefix>jsonl.<kommunenummer>` topics.
//!
//! A municipality that already runs rsyslog, syslog-ng, Vector, Fluent Bit, Winlogbeat or NXLog
//! can write its events as JSON objects (the form of `varde_core::jsonl`, one per line; a Kafka
//! message may hold one line or many) to its own JSON-lines topic instead of running Varde's
//! collector. The pipeline then does here what the collector's edge would have done:
//!
//! - the tenant is the topic's, as for envelopes; a line that claims another (`"tenant"`) is
//!   refused;
//! - every line is pseudonymised *before storage*, with the same code as the collector's edge
//!   (`varde_collector::privacy`): identity numbers always, IP addresses by policy. Each
//!   municipality gets its own key, derived from the pipeline's JSON-lines key file, so two
//!   municipalities' pseudonyms of one person differ, as they do with collectors;
//! - the lines of one message become one envelope per source kind, with deterministic event ids
//!   (collector id `jsonl-<kommunenummer>-p<partition>-<kind>`, batch sequence = the message's
//!   offset, row = the line's place among that kind's lines), so a replayed message collapses in
//!   the store like a replayed envelope; the receive time is the Kafka message's timestamp;
//! - lines that cannot be used (not JSON, wrong field types, too long, another tenant) are
//!   counted and parked together in one dead letter per message (reason `jsonl`, each line's
//!   number and error, the bad lines as payload); the good lines beside them go on.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::Deserialize;
use varde_collector::config::PrivacyConfig;
use varde_collector::privacy::{Privacy, PrivacyCounts, PrivacyError, PrivacyKey, PrivacyPolicy};
use varde_core::jsonl::parse_json_line;
use varde_core::{BatchBuilder, CollectorId, Envelope, Event, Kommunenummer, SourceKind};

/// The `[jsonl]` section of the pipeline's configuration; its presence turns the JSON-lines
/// topics on.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JsonLinesConfig {
    /// The pipeline's JSON-lines pseudonymisation key (32 random bytes as 64 hex digits,
    /// created with mode 0600 when missing). Each municipality's key is derived from it.
    /// Default `/var/lib/varde/jsonl-privacy.key`.
    #[serde(default = "default_key_file")]
    pub key_file: PathBuf,
    /// Longest line accepted, in bytes (default 1 MiB).
    #[serde(default = "default_max_line_bytes")]
    pub max_line_bytes: usize,
    /// What else is pseudonymised: the collector's `[privacy]` settings (`keep_account_numbers`,
    /// `ip_addresses`, `internal_networks`); its `key_file` is not used here.
    #[serde(default)]
    pub privacy: Option<PrivacyConfig>,
}

fn default_key_file() -> PathBuf {
    PathBuf::from("/var/lib/varde/jsonl-privacy.key")
}

fn default_max_line_bytes() -> usize {
    1 << 20
}

/// The dead-letter reason of a message's unusable lines.
pub const JSONL_REASON: &str = "jsonl";

/// Turns JSON-lines messages into envelopes; holds each municipality's privacy layer.
pub struct JsonLines {
    master: PrivacyKey,
    policy: PrivacyPolicy,
    max_line_bytes: usize,
    per_tenant: HashMap<Kommunenummer, Privacy>,
}

/// What one message gave.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One envelope per source kind present, in the order of first appearance.
    pub envelopes: Vec<Envelope>,
    /// Lines turned into events.
    pub lines: u64,
    /// Unusable lines: (1-based line number, error, the line).
    pub refused: Vec<(usize, String, Vec<u8>)>,
    /// What pseudonymisation replaced or kept.
    pub privacy: PrivacyCounts,
}

impl JsonLines {
    /// The JSON-lines layer of `config` (loads or creates the key file).
    pub fn from_config(config: &JsonLinesConfig) -> Result<Self, PrivacyError> {
        let master = PrivacyKey::load_or_create(&config.key_file)?;
        let policy = match &config.privacy {
            Some(p) => PrivacyPolicy {
                keep_account_numbers: p.keep_account_numbers,
                ip_addresses: p.ip_addresses,
                internal_networks: p.internal_networks.clone(),
            },
            None => PrivacyPolicy::default(),
        };
        Ok(JsonLines::new(master, policy, config.max_line_bytes))
    }

    /// A JSON-lines layer with a known master key (tests, benchmarks).
    pub fn new(master: PrivacyKey, policy: PrivacyPolicy, max_line_bytes: usize) -> Self {
        JsonLines {
            master,
            policy,
            max_line_bytes,
            per_tenant: HashMap::new(),
        }
    }

    /// The privacy layer of `tenant`: its key derived from the master key.
    pub fn privacy(&mut self, tenant: Kommunenummer) -> &Privacy {
        let (master, policy) = (&self.master, &self.policy);
        self.per_tenant.entry(tenant).or_insert_with(|| {
            let key = master.derive(&format!("varde-jsonl-tenant-v1:{tenant}"));
            Privacy::new(&key, policy.clone())
        })
    }

    /// Decodes the JSON lines of one message of `tenant`'s topic, read from `partition` at
    /// `offset`, received (Kafka's timestamp) at `receive_time_us`.
    pub fn decode(
        &mut self,
        payload: &[u8],
        tenant: Kommunenummer,
        partition: i32,
        offset: i64,
        receive_time_us: i64,
    ) -> Decoded {
        let max = self.max_line_bytes;
        let privacy = self.privacy(tenant).clone();
        let mut out = Decoded::default();
        let mut by_kind: Vec<(SourceKind, Vec<(usize, Event)>)> = Vec::new();
        for (i, raw) in payload.split(|b| *b == b'\n').enumerate() {
            let number = i + 1;
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            if raw.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            if raw.len() > max {
                out.refused.push((
                    number,
                    format!("line of {} bytes, more than the {max} accepted", raw.len()),
                    raw[..max.min(4096)].to_vec(),
                ));
                continue;
            }
            let text = match std::str::from_utf8(raw) {
                Ok(t) => t,
                Err(e) => {
                    out.refused
                        .push((number, format!("not UTF-8: {e}"), raw.to_vec()));
                    continue;
                }
            };
            let line = match parse_json_line(text, receive_time_us) {
                Ok(l) => l,
                Err(e) => {
                    out.refused.push((number, e.to_string(), raw.to_vec()));
                    continue;
                }
            };
            if let Some(claim) = &line.claimed_tenant
                && claim.as_str() != tenant.as_str()
            {
                out.refused.push((
                    number,
                    format!("claims tenant {claim} on the topic of {tenant}"),
                    raw.to_vec(),
                ));
                continue;
            }
            let mut event = line.event;
            out.privacy.add(privacy.scrub_event(&mut event));
            match by_kind.iter_mut().find(|(k, _)| *k == line.kind) {
                Some((_, events)) => events.push((number, event)),
                None => by_kind.push((line.kind, vec![(number, event)])),
            }
        }
        let seq = u64::try_from(offset).unwrap_or(0);
        for (kind, events) in by_kind {
            let collector =
                match CollectorId::new(format!("jsonl-{tenant}-p{partition}-{}", kind.name())) {
                    Ok(c) => c,
                    Err(e) => {
                        for (number, _) in &events {
                            out.refused.push((*number, e.to_string(), Vec::new()));
                        }
                        continue;
                    }
                };
            let mut builder = BatchBuilder::new(kind, tenant, collector.clone(), events.len());
            let mut rows = 0u64;
            for (number, event) in &events {
                match builder.push(event) {
                    Ok(()) => rows += 1,
                    Err(e) => out.refused.push((*number, e.to_string(), Vec::new())),
                }
            }
            if rows == 0 {
                continue;
            }
            let envelope = builder
                .finish()
                .map_err(|e| e.to_string())
                .and_then(|batch| {
                    Envelope::new(kind, tenant, collector, seq, batch).map_err(|e| e.to_string())
                });
            match envelope {
                Ok(e) => {
                    out.lines += rows;
                    out.envelopes.push(e);
                }
                Err(e) => {
                    for (number, _) in &events {
                        out.refused.push((*number, e.clone(), Vec::new()));
                    }
                }
            }
        }
        out.refused.sort_by_key(|(n, _, _)| *n);
        out
    }
}

/// The error text and payload of a message's dead letter for its refused lines: each line's
/// number and error; the lines themselves, one per line, so they can be fixed and sent again.
pub fn refused_letter(refused: &[(usize, String, Vec<u8>)]) -> (String, Vec<u8>) {
    let mut error = format!("{} unusable JSON line(s):", refused.len());
    let mut payload = Vec::new();
    for (number, why, line) in refused {
        error.push_str(&format!(" line {number}: {why};"));
        payload.extend_from_slice(line);
        payload.push(b'\n');
    }
    error.pop();
    (error, payload)
}
