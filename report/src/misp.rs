//! A report as a MISP event (the JSON of MISP's event export and `MISPEvent.load`): the incident
//! as the event, its indicators as attributes with MISP's types and categories, the TLP label
//! and the classification as tags (`tlp:amber`, `rsit:intrusion-attempts="brute-force"`), the
//! affected municipalities and components as `text` attributes. UUIDs are UUIDv5 of what each
//! thing is, so the same report gives the same event.

use serde_json::{Value, json};
use uuid::Uuid;
use varde_store::incident::{IncidentStatus, Severity, Tlp};

use crate::model::{IncidentReport, IndicatorKind};

fn namespace() -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        b"https://github.com/varde-cert/varde/misp",
    )
}

fn uuid(parts: &[&str]) -> String {
    Uuid::new_v5(&namespace(), parts.join("\u{1f}").as_bytes()).to_string()
}

/// MISP's tag for a TLP 2.0 label (its `tlp` taxonomy).
pub fn tlp_tag(tlp: Tlp) -> &'static str {
    match tlp {
        Tlp::Clear => "tlp:clear",
        Tlp::Green => "tlp:green",
        Tlp::Amber => "tlp:amber",
        Tlp::AmberStrict => "tlp:amber+strict",
        Tlp::Red => "tlp:red",
    }
}

/// MISP's (type, category) of an indicator.
fn attribute_type(kind: IndicatorKind) -> (&'static str, &'static str) {
    match kind {
        IndicatorKind::Ipv4 | IndicatorKind::Ipv6 => ("ip-src", "Network activity"),
        IndicatorKind::Domain => ("domain", "Network activity"),
        IndicatorKind::Url => ("url", "Network activity"),
        IndicatorKind::Sha256 => ("sha256", "Payload delivery"),
        IndicatorKind::Sha1 => ("sha1", "Payload delivery"),
        IndicatorKind::Md5 => ("md5", "Payload delivery"),
    }
}

fn seconds(us: i64) -> String {
    us.div_euclid(1_000_000).to_string()
}

/// The event of `r`, pretty-printed.
pub fn event(r: &IncidentReport) -> String {
    let inc_hex = r.incident_hex();
    let timestamp = seconds(r.incident.changed_at_us.max(r.incident.opened_at_us));
    let mut tags = vec![json!({"name": tlp_tag(r.tlp())})];
    if let Some(c) = &r.classification {
        tags.push(json!({"name": c.misp_tag()}));
    }
    if let Some((id, _)) = &r.root_cause {
        tags.push(json!({"name": format!("varde:root-cause=\"{id}\"")}));
    }
    let mut attributes: Vec<Value> = Vec::new();
    for i in &r.indicators {
        let (kind, category) = attribute_type(i.kind);
        attributes.push(json!({
            "uuid": uuid(&["attribute", &inc_hex, i.kind.as_str(), &i.value]),
            "type": kind,
            "category": category,
            "value": i.value,
            "to_ids": true,
            "comment": format!("seen in {} alert(s)", i.count),
            "timestamp": seconds(i.last_us.max(i.first_us)),
            "first_seen": crate::model::stix_time(i.first_us),
            "last_seen": crate::model::stix_time(i.last_us.max(i.first_us)),
            "distribution": "5",
        }));
    }
    for (k, name) in &r.municipalities {
        attributes.push(json!({
            "uuid": uuid(&["municipality", &inc_hex, k]),
            "type": "text",
            "category": "Other",
            "value": format!("{k} {name}"),
            "to_ids": false,
            "comment": "affected municipality (kommunenummer)",
            "timestamp": timestamp,
            "distribution": "5",
        }));
    }
    for c in &r.components {
        attributes.push(json!({
            "uuid": uuid(&["component", &inc_hex, c]),
            "type": "text",
            "category": "Other",
            "value": c,
            "to_ids": false,
            "comment": "affected shared component",
            "timestamp": timestamp,
            "distribution": "5",
        }));
    }
    if let Some(n) = r.incident.users_affected {
        attributes.push(json!({
            "uuid": uuid(&["users-affected", &inc_hex]),
            "type": "counter",
            "category": "Other",
            "value": n.to_string(),
            "to_ids": false,
            "comment": "users affected",
            "timestamp": timestamp,
            "distribution": "5",
        }));
    }
    let threat_level = match r.incident.severity {
        Severity::Critical | Severity::High => "1",
        Severity::Medium => "2",
        Severity::Low => "3",
    };
    let analysis = match r.incident.status {
        IncidentStatus::New => "0",
        IncidentStatus::Closed | IncidentStatus::PostIncident => "2",
        _ => "1",
    };
    let date = chrono::DateTime::from_timestamp_micros(r.incident.aware_at_us)
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let event = json!({
        "Event": {
            "uuid": uuid(&["event", &inc_hex, r.stage.as_str()]),
            "info": format!("{}: {}", r.stage.title(), r.incident.title),
            "date": date,
            "threat_level_id": threat_level,
            "analysis": analysis,
            "distribution": "0",
            "published": false,
            "timestamp": timestamp,
            "Orgc": {"name": r.issuer.name, "uuid": uuid(&["org", &r.issuer.name])},
            "Tag": tags,
            "Attribute": attributes,
        }
    });
    serde_json::to_string_pretty(&crate::canonical(event)).unwrap_or_default() + "\n"
}
