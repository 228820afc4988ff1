//! One incident as a report sees it: the incident (as the reader may see it), the alerts of its
//! linked groups, the indicators found in them, its classification, the stage of the report
//! and the deadlines of the NIS2 rhythm.

use std::collections::BTreeMap;
use std::net::IpAddr;

use chrono::{DateTime, Months, Utc};
use varde_core::Kommunenummer;
use varde_store::Alert;
use varde_store::incident::{Incident, Tlp};

use crate::taxonomy::{self, Classification};

/// The stages of a NIS2 Article 23 report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    /// Within 24 hours of awareness: suspected malicious? cross-border impact?
    EarlyWarning,
    /// Within 72 hours of awareness: initial assessment, severity, impact, indicators.
    Notification,
    /// On request of the authority.
    Intermediate,
    /// Within one month of the notification: description, root cause, mitigation.
    Final,
    /// When the incident is still open at the final report's deadline.
    Progress,
}

impl Stage {
    /// Every stage, in order.
    pub const ALL: [Stage; 5] = [
        Stage::EarlyWarning,
        Stage::Notification,
        Stage::Intermediate,
        Stage::Final,
        Stage::Progress,
    ];

    /// The name on the command line and in files.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::EarlyWarning => "early-warning",
            Stage::Notification => "notification",
            Stage::Intermediate => "intermediate",
            Stage::Final => "final",
            Stage::Progress => "progress",
        }
    }

    /// The stage of a name.
    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|x| x.as_str() == s)
    }

    /// The English title.
    pub fn title(self) -> &'static str {
        match self {
            Stage::EarlyWarning => "Early warning",
            Stage::Notification => "Incident notification",
            Stage::Intermediate => "Intermediate report",
            Stage::Final => "Final report",
            Stage::Progress => "Progress report",
        }
    }
}

/// When each report is due, from the CERT's awareness (NIS2 Article 23(4)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Awareness + 24 hours.
    pub early_warning_us: i64,
    /// Awareness + 72 hours.
    pub notification_us: i64,
    /// One calendar month after the notification (after its deadline while none is submitted).
    pub final_us: i64,
}

impl Deadlines {
    /// The deadlines of an incident the CERT became aware of at `aware_us`, whose notification
    /// was submitted at `notified_us` (if it was).
    pub fn of(aware_us: i64, notified_us: Option<i64>) -> Deadlines {
        let hour = 3_600_000_000;
        let notification_us = aware_us + 72 * hour;
        let base = notified_us.unwrap_or(notification_us);
        let final_us = DateTime::<Utc>::from_timestamp_micros(base)
            .and_then(|t| t.checked_add_months(Months::new(1)))
            .map_or(base + 30 * 24 * hour, |t| t.timestamp_micros());
        Deadlines {
            early_warning_us: aware_us + 24 * hour,
            notification_us,
            final_us,
        }
    }

    /// The deadline of a stage (`None` for intermediate reports, which are on request, and for
    /// progress reports, due with the final one when the incident is still open).
    pub fn of_stage(&self, stage: Stage) -> Option<i64> {
        match stage {
            Stage::EarlyWarning => Some(self.early_warning_us),
            Stage::Notification => Some(self.notification_us),
            Stage::Final | Stage::Progress => Some(self.final_us),
            Stage::Intermediate => None,
        }
    }
}

/// What an indicator is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum IndicatorKind {
    /// An IPv4 address.
    Ipv4,
    /// An IPv6 address.
    Ipv6,
    /// A domain name.
    Domain,
    /// A URL.
    Url,
    /// A SHA-256 digest.
    Sha256,
    /// A SHA-1 digest.
    Sha1,
    /// An MD5 digest.
    Md5,
}

impl IndicatorKind {
    /// The name in CSV files.
    pub fn as_str(self) -> &'static str {
        match self {
            IndicatorKind::Ipv4 => "ipv4",
            IndicatorKind::Ipv6 => "ipv6",
            IndicatorKind::Domain => "domain",
            IndicatorKind::Url => "url",
            IndicatorKind::Sha256 => "sha256",
            IndicatorKind::Sha1 => "sha1",
            IndicatorKind::Md5 => "md5",
        }
    }
}

/// One indicator of compromise found in the incident's alerts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Indicator {
    /// What it is.
    pub kind: IndicatorKind,
    /// Its value (addresses and domains normalised, digests lowercase).
    pub value: String,
    /// The first alert's event time, µs.
    pub first_us: i64,
    /// The last one's.
    pub last_us: i64,
    /// In how many alerts.
    pub count: u64,
}

/// Whether an address may identify an attacker: public unicast, not one of Varde's pseudonyms
/// (`240.0.0.0/4`, `100::/64`), not private, loopback, link-local or documentation space that a
/// municipality's own network uses.
fn public(ip: IpAddr) -> bool {
    if varde_core::pseudonym::is_pseudonym_ip(ip) {
        return false;
    }
    match ip {
        IpAddr::V4(a) => {
            !(a.is_private()
                || a.is_loopback()
                || a.is_link_local()
                || a.is_unspecified()
                || a.is_broadcast()
                || a.is_multicast())
        }
        IpAddr::V6(a) => {
            let s = a.segments();
            !(a.is_loopback()
                || a.is_unspecified()
                || a.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80)
        }
    }
}

fn is_hex(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The indicator a matched field holds, judged by its name and its value.
pub fn indicator_of(field: &str, value: &str) -> Option<(IndicatorKind, String)> {
    let name = field.to_ascii_lowercase();
    if name.starts_with("correlation.") {
        return None;
    }
    let v = value.trim();
    if v.is_empty() || v.len() > 2048 {
        return None;
    }
    if (name.contains("ip") || name.contains("addr") || name.ends_with("host"))
        && let Ok(ip) = v.parse::<IpAddr>()
    {
        return public(ip).then(|| match ip {
            IpAddr::V4(a) => (IndicatorKind::Ipv4, a.to_string()),
            IpAddr::V6(a) => (IndicatorKind::Ipv6, a.to_string()),
        });
    }
    if name.contains("url") && (v.starts_with("http://") || v.starts_with("https://")) {
        return Some((IndicatorKind::Url, v.to_owned()));
    }
    if name.contains("sha256") && v.len() == 64 && is_hex(v) {
        return Some((IndicatorKind::Sha256, v.to_ascii_lowercase()));
    }
    if name.contains("sha1") && v.len() == 40 && is_hex(v) {
        return Some((IndicatorKind::Sha1, v.to_ascii_lowercase()));
    }
    if name.contains("md5") && v.len() == 32 && is_hex(v) {
        return Some((IndicatorKind::Md5, v.to_ascii_lowercase()));
    }
    if (name.contains("domain") || name.contains("sni") || name.contains("query"))
        && v.contains('.')
        && v.len() <= 253
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Some((
            IndicatorKind::Domain,
            v.trim_end_matches('.').to_ascii_lowercase(),
        ));
    }
    None
}

/// The indicators of `alerts`, sorted by kind and value.
pub fn indicators(alerts: &[Alert]) -> Vec<Indicator> {
    let mut by: BTreeMap<(IndicatorKind, String), Indicator> = BTreeMap::new();
    for a in alerts {
        let mut seen = std::collections::BTreeSet::new();
        for (k, v) in &a.matched {
            let Some((kind, value)) = indicator_of(k, v) else {
                continue;
            };
            if !seen.insert((kind, value.clone())) {
                continue;
            }
            let e = by
                .entry((kind, value.clone()))
                .or_insert_with(|| Indicator {
                    kind,
                    value,
                    first_us: a.event_time_us,
                    last_us: a.event_time_us,
                    count: 0,
                });
            e.first_us = e.first_us.min(a.event_time_us);
            e.last_us = e.last_us.max(a.event_time_us);
            e.count += 1;
        }
    }
    by.into_values().collect()
}

/// The CERT that issues the report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// Its name, e.g. "KommuneCERT".
    pub name: String,
    /// Its contact, e.g. an address.
    pub contact: String,
}

/// Everything one report of one incident says.
#[derive(Debug, Clone, PartialEq)]
pub struct IncidentReport {
    /// The stage.
    pub stage: Stage,
    /// The incident, as the reader may see it.
    pub incident: Incident,
    /// The alerts of its linked groups, oldest first.
    pub alerts: Vec<Alert>,
    /// Their indicators.
    pub indicators: Vec<Indicator>,
    /// The RSIT classification, when set and known.
    pub classification: Option<Classification>,
    /// The root cause's (machine name, display name), when set and known.
    pub root_cause: Option<(String, String)>,
    /// Affected municipalities: kommunenummer and name.
    pub municipalities: Vec<(String, String)>,
    /// Affected shared components.
    pub components: Vec<String>,
    /// The deadlines.
    pub deadlines: Deadlines,
    /// When the report was made, µs (an input, so the same input gives the same file).
    pub generated_us: i64,
    /// Who issues it.
    pub issuer: Issuer,
}

impl IncidentReport {
    /// The report of `stage` over `incident` and the alerts of its groups, made at
    /// `generated_us` by `issuer`; `notified_us` is when the notification was submitted.
    pub fn new(
        stage: Stage,
        incident: Incident,
        mut alerts: Vec<Alert>,
        notified_us: Option<i64>,
        generated_us: i64,
        issuer: Issuer,
    ) -> Self {
        alerts.sort_by_key(|a| (a.event_time_us, a.alert_id.0));
        alerts.dedup_by(|a, b| a.alert_id == b.alert_id);
        let indicators = indicators(&alerts);
        let classification = taxonomy::classify(&incident.category);
        let root_cause = taxonomy::root_cause(&incident.root_cause)
            .map(|name| (incident.root_cause.clone(), name));
        let municipalities = incident
            .municipalities()
            .into_iter()
            .map(|k| {
                let name = Kommunenummer::parse(&k).map_or("", |m| m.name()).to_owned();
                (k, name)
            })
            .collect();
        let components = incident.components();
        let deadlines = Deadlines::of(incident.aware_at_us, notified_us);
        IncidentReport {
            stage,
            incident,
            alerts,
            indicators,
            classification,
            root_cause,
            municipalities,
            components,
            deadlines,
            generated_us,
            issuer,
        }
    }

    /// The incident's id as 32 lowercase hex digits (as the dashboard shows it).
    pub fn incident_hex(&self) -> String {
        self.incident
            .incident_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The report's TLP label (the incident's).
    pub fn tlp(&self) -> Tlp {
        self.incident.tlp
    }
}

/// RFC 3339 with milliseconds, as STIX timestamps are written.
pub fn stix_time(us: i64) -> String {
    DateTime::<Utc>::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| "1970-01-01T00:00:00.000Z".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines_follow_nis2_from_awareness() {
        // 2026-01-31 10:00 UTC: the month after the notification (2026-02-03) ends 2026-03-03.
        let aware = 1_769_853_600_000_000;
        let d = Deadlines::of(aware, None);
        assert_eq!(stix_time(d.early_warning_us), "2026-02-01T10:00:00.000Z");
        assert_eq!(stix_time(d.notification_us), "2026-02-03T10:00:00.000Z");
        assert_eq!(stix_time(d.final_us), "2026-03-03T10:00:00.000Z");
        // Submitted early: the month runs from the submission.
        let d = Deadlines::of(aware, Some(aware + 3_600_000_000));
        assert_eq!(stix_time(d.final_us), "2026-02-28T11:00:00.000Z");
        assert_eq!(d.of_stage(Stage::Intermediate), None);
    }

    #[test]
    fn indicators_are_public_addresses_urls_digests_and_domains_never_pseudonyms() {
        for (field, value, expected) in [
            ("src_ip", "203.0.113.7", Some("ipv4")),
            ("client_ip", "10.1.2.3", None),
            ("src_ip", "240.12.34.56", None),
            ("src_ip", "2001:db8::1", Some("ipv6")),
            ("src_ip", "fd00::1", None),
            ("url", "https://evil.example/x", Some("url")),
            ("url_path", "/cgi-bin/x", None),
            ("sha256", &"a".repeat(64), Some("sha256")),
            ("correlation.window", &"ab".repeat(16), None),
            ("dns_query", "c2.evil.example.", Some("domain")),
            ("user", "root", None),
        ] {
            assert_eq!(
                indicator_of(field, value).map(|(k, _)| k.as_str()),
                expected,
                "{field}={value}"
            );
        }
        assert_eq!(
            indicator_of("dns_query", "C2.Evil.Example.").map(|(_, v)| v),
            Some("c2.evil.example".into())
        );
    }
}
