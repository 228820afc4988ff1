//! A report as a STIX 2.1 bundle: the CERT's identity, the affected municipalities as
//! identities, the incident, its indicators with a sighting each, a `report` object of the stage
//! that refers to them all, and the TLP 2.0 marking definition applied to every object.
//!
//! Identifiers are UUIDv5 of what the object is (the incident's id, the indicator's value), so
//! the same report exports to the same bundle, byte for byte. (STIX recommends UUIDv4;
//! `stix2-validator` says so in a warning, {103}, on every object: the price of ids that do not
//! change between exports of the same incident.) The TLP 2.0 marking definitions
//! are the ones OASIS published with the `tlp_2_0` property extension
//! (`extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d`), with their fixed ids.

use serde_json::{Value, json};
use uuid::Uuid;
use varde_store::incident::{Severity, Tlp};

use crate::model::{IncidentReport, Indicator, IndicatorKind, stix_time};

/// The TLP 2.0 property extension's definition id.
pub const TLP2_EXTENSION: &str = "extension-definition--60a3c5c5-0d10-413e-aab3-9e08dde9e88d";

/// The marking definition of a TLP 2.0 label: (id, `tlp_2_0` value).
pub fn tlp_marking(tlp: Tlp) -> (&'static str, &'static str) {
    match tlp {
        Tlp::Clear => (
            "marking-definition--94868c89-83c2-464b-929b-a1a8aa3c8487",
            "clear",
        ),
        Tlp::Green => (
            "marking-definition--bab4a63c-aed9-4cf5-a766-dfca5abac2bb",
            "green",
        ),
        Tlp::Amber => (
            "marking-definition--55d920b0-5e8b-4f79-9ee9-91f868d9b421",
            "amber",
        ),
        Tlp::AmberStrict => (
            "marking-definition--939a9414-2ddd-4d32-a0cd-375ea402b003",
            "amber+strict",
        ),
        Tlp::Red => (
            "marking-definition--e828b379-4e03-4974-9ac4-e53a884c97c1",
            "red",
        ),
    }
}

/// The namespace of Varde's STIX ids (a UUIDv5 of Varde's name in the URL namespace).
fn namespace() -> Uuid {
    Uuid::new_v5(
        &Uuid::NAMESPACE_URL,
        b"https://github.com/varde-cert/varde/stix",
    )
}

/// `<type>--<UUIDv5 of the parts>`.
pub fn stix_id(kind: &str, parts: &[&str]) -> String {
    let name = parts.join("\u{1f}");
    format!(
        "{kind}--{}",
        Uuid::new_v5(&namespace(), format!("{kind}\u{1f}{name}").as_bytes())
    )
}

fn pattern(i: &Indicator) -> String {
    let escaped = i.value.replace('\\', "\\\\").replace('\'', "\\'");
    match i.kind {
        IndicatorKind::Ipv4 => format!("[ipv4-addr:value = '{escaped}']"),
        IndicatorKind::Ipv6 => format!("[ipv6-addr:value = '{escaped}']"),
        IndicatorKind::Domain => format!("[domain-name:value = '{escaped}']"),
        IndicatorKind::Url => format!("[url:value = '{escaped}']"),
        IndicatorKind::Sha256 => format!("[file:hashes.'SHA-256' = '{escaped}']"),
        IndicatorKind::Sha1 => format!("[file:hashes.'SHA-1' = '{escaped}']"),
        IndicatorKind::Md5 => format!("[file:hashes.MD5 = '{escaped}']"),
    }
}

fn severity_word(s: Severity) -> &'static str {
    s.as_str()
}

/// The bundle of `r`, pretty-printed with sorted keys.
pub fn bundle(r: &IncidentReport) -> String {
    let (marking_id, tlp_value) = tlp_marking(r.tlp());
    let marks = json!([marking_id]);
    let inc_hex = r.incident_hex();
    let created = stix_time(r.incident.opened_at_us);
    let modified = stix_time(r.incident.changed_at_us.max(r.incident.opened_at_us));
    let cert_id = stix_id("identity", &["cert", &r.issuer.name]);
    let mut objects: Vec<Value> = Vec::new();
    objects.push(json!({
        "type": "marking-definition",
        "spec_version": "2.1",
        "id": marking_id,
        "created": "2022-10-01T00:00:00.000Z",
        "name": format!("TLP:{}", r.tlp().as_str()),
        "extensions": {
            TLP2_EXTENSION: {
                "extension_type": "property-extension",
                "tlp_2_0": tlp_value,
            }
        }
    }));
    objects.push(json!({
        "type": "identity",
        "spec_version": "2.1",
        "id": cert_id,
        "created": "2026-01-01T00:00:00.000Z",
        "modified": "2026-01-01T00:00:00.000Z",
        "name": r.issuer.name,
        "identity_class": "organization",
        "sectors": ["government-national"],
        "contact_information": r.issuer.contact,
        "object_marking_refs": marks,
    }));
    let mut refs: Vec<String> = Vec::new();
    let mut victims: Vec<String> = Vec::new();
    for (k, name) in &r.municipalities {
        let id = stix_id("identity", &["municipality", k]);
        objects.push(json!({
            "type": "identity",
            "spec_version": "2.1",
            "id": id,
            "created": created,
            "modified": created,
            "name": format!("{name} kommune"),
            "description": format!("Municipality {k} (kommunenummer)"),
            "identity_class": "organization",
            "sectors": ["government-local"],
            "created_by_ref": cert_id,
            "object_marking_refs": marks,
        }));
        refs.push(id.clone());
        victims.push(id);
    }
    let incident_id = stix_id("incident", &[&inc_hex]);
    let mut description = format!(
        "{} (status {}, severity {}, aware since {}).",
        r.incident.title,
        r.incident.status.as_str(),
        severity_word(r.incident.severity),
        stix_time(r.incident.aware_at_us)
    );
    if let Some(c) = &r.classification {
        description.push_str(&format!(
            " Classification (RSIT): {} / {}.",
            c.category_name, c.kind_name
        ));
    }
    if let Some((_, cause)) = &r.root_cause {
        description.push_str(&format!(" Root cause: {cause}."));
    }
    if !r.components.is_empty() {
        description.push_str(&format!(" Shared components: {}.", r.components.join(", ")));
    }
    if let Some(n) = r.incident.users_affected {
        description.push_str(&format!(" Users affected: {n}."));
    }
    let mut labels: Vec<String> = Vec::new();
    if let Some(c) = &r.classification {
        labels.push(c.misp_tag());
    }
    let mut incident = json!({
        "type": "incident",
        "spec_version": "2.1",
        "id": incident_id,
        "created": created,
        "modified": modified,
        "name": r.incident.title,
        "description": description,
        "created_by_ref": cert_id,
        "object_marking_refs": marks,
        "external_references": [{
            "source_name": "varde",
            "external_id": inc_hex,
        }],
    });
    // STIX forbids empty lists.
    if !labels.is_empty() {
        incident["labels"] = json!(labels);
    }
    objects.push(incident);
    refs.push(incident_id.clone());
    for i in &r.indicators {
        let id = stix_id("indicator", &[i.kind.as_str(), &i.value]);
        objects.push(json!({
            "type": "indicator",
            "spec_version": "2.1",
            "id": id,
            "created": created,
            "modified": created,
            "name": format!("{} {}", i.kind.as_str(), i.value),
            "description": format!(
                "Seen in {} alert(s) of incident {inc_hex}, {} to {}.",
                i.count,
                stix_time(i.first_us),
                stix_time(i.last_us.max(i.first_us))
            ),
            "indicator_types": ["malicious-activity"],
            "pattern": pattern(i),
            "pattern_type": "stix",
            "pattern_version": "2.1",
            "valid_from": stix_time(i.first_us),
            "created_by_ref": cert_id,
            "object_marking_refs": marks,
        }));
        refs.push(id.clone());
        let sighting = stix_id("sighting", &[&inc_hex, i.kind.as_str(), &i.value]);
        let mut s = json!({
            "type": "sighting",
            "spec_version": "2.1",
            "id": sighting,
            "created": created,
            "modified": created,
            "sighting_of_ref": id,
            "count": i.count,
            "first_seen": stix_time(i.first_us),
            "last_seen": stix_time(i.last_us.max(i.first_us)),
            "created_by_ref": cert_id,
            "object_marking_refs": marks,
        });
        if !victims.is_empty() {
            s["where_sighted_refs"] = json!(victims);
        }
        objects.push(s);
        refs.push(sighting.clone());
        let rel = stix_id("relationship", &[&incident_id, &id]);
        objects.push(json!({
            "type": "relationship",
            "spec_version": "2.1",
            "id": rel,
            "created": created,
            "modified": created,
            "relationship_type": "related-to",
            "source_ref": id,
            "target_ref": incident_id,
            "created_by_ref": cert_id,
            "object_marking_refs": marks,
        }));
        refs.push(rel);
    }
    let report_id = stix_id("report", &[&inc_hex, r.stage.as_str()]);
    objects.push(json!({
        "type": "report",
        "spec_version": "2.1",
        "id": report_id,
        "created": created,
        "modified": stix_time(r.generated_us),
        "name": format!("{}: {}", r.stage.title(), r.incident.title),
        "description": format!(
            "{} by {} of incident {inc_hex}, {} affected municipalities, {} indicators.",
            r.stage.title(),
            r.issuer.name,
            r.municipalities.len(),
            r.indicators.len()
        ),
        "report_types": ["threat-report"],
        "published": stix_time(r.generated_us),
        "object_refs": refs,
        "created_by_ref": cert_id,
        "object_marking_refs": marks,
    }));
    let bundle = json!({
        "type": "bundle",
        "id": stix_id("bundle", &[&inc_hex, r.stage.as_str(), &stix_time(r.generated_us)]),
        "objects": objects,
    });
    serde_json::to_string_pretty(&crate::canonical(bundle)).unwrap_or_default() + "\n"
}
