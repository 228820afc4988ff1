//! The month's report over the embedded store, its figures checked against the planted data
//! counted by hand: incidents by classification and municipality, open against closed, alert
//! volume per municipality and component, and the time to acknowledge and to resolve.

use varde_core::{AlertId, EventId};
use varde_report::Issuer;
use varde_report::month::assemble_month;
use varde_store::embedded::EmbeddedStore;
use varde_store::incident::{Change, IncidentChange, IncidentStatus};
use varde_store::{Alert, EventStore, Resolution, TriageAction, TriageKind};

const NOV: i64 = 1_793_491_200_000_000; // 2026-11-01 00:00:00 UTC
const HOUR: i64 = 3_600_000_000;

fn alert(n: u8, tenant: &str, component: &str, at: i64) -> Alert {
    Alert {
        alert_id: AlertId([n; 16]),
        dedup_key: [n % 2; 16],
        tenant: tenant.into(),
        component: component.into(),
        rule_id: "r".into(),
        rule_title: "Root login".into(),
        rule_level: "high".into(),
        rule_tags: vec![],
        event_id: EventId([n; 16]),
        event_time_us: at,
        detect_time_us: at,
        source_kind: "auth".into(),
        host: "h".into(),
        matched: vec![],
    }
}

#[tokio::test]
async fn a_months_figures_are_those_of_its_data() {
    let store = EmbeddedStore::new();
    // Five alerts in November (Oslo three, two of them on ID-porten; Bergen two), one in October.
    store
        .write_alerts(&[
            alert(1, "0301", "idporten", NOV + 10 * HOUR),
            alert(3, "0301", "idporten", NOV + 11 * HOUR),
            alert(5, "0301", "", NOV + 30 * HOUR),
            alert(2, "4601", "", NOV + 12 * HOUR),
            alert(4, "4601", "altinn", NOV + 13 * HOUR),
            alert(6, "4601", "", NOV - 5 * HOUR),
        ])
        .await
        .expect("alerts");
    // Oslo's group (odd alerts, key 1) acknowledged 2 h after its first detection, resolved
    // after 5 h; Bergen's (key 0) acknowledged after 4 h (from its first November detection:
    // October's alert 6 belongs to it too, so 21 h).
    let action = |n: u8, tenant: &str, key: u8, kind: TriageKind, at: i64| TriageAction {
        action_id: [n; 16],
        at_us: at,
        tenant: tenant.into(),
        dedup_key: [key; 16],
        kind,
        actor: "kari".into(),
        assignee: String::new(),
        resolution: (kind == TriageKind::Resolve).then_some(Resolution::FalsePositive),
        reason: String::new(),
        until_us: 0,
        before: String::new(),
    };
    store
        .write_triage(&[
            action(1, "0301", 1, TriageKind::Acknowledge, NOV + 12 * HOUR),
            action(2, "0301", 1, TriageKind::Resolve, NOV + 15 * HOUR),
            action(3, "4601", 0, TriageKind::Acknowledge, NOV + 16 * HOUR),
        ])
        .await
        .expect("triage");
    let incident = |n: u8, aware: i64, category: &str, closed: bool| -> Vec<IncidentChange> {
        let mut changes = vec![
            Change::Opened(format!("Incident {n}")),
            Change::AwareAt(aware),
            Change::Municipalities(vec!["0301".into()]),
        ];
        if !category.is_empty() {
            changes.push(Change::Category(category.into()));
        }
        if closed {
            changes.push(Change::Status(IncidentStatus::Closed));
        }
        changes
            .into_iter()
            .enumerate()
            .map(|(k, change)| IncidentChange {
                change_id: [
                    n,
                    u8::try_from(k).expect("small"),
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    0,
                    3,
                ],
                incident_id: [n; 16],
                at_us: NOV + 40 * HOUR + i64::try_from(k).expect("small"),
                actor: "kari".into(),
                change,
            })
            .collect()
    };
    store
        .write_incident_changes(
            &[
                incident(1, NOV + HOUR, "intrusion-attempts/brute-force", false),
                incident(2, NOV + 50 * HOUR, "intrusion-attempts/brute-force", true),
                incident(3, NOV + 60 * HOUR, "", false),
                // Aware in October: not November's.
                incident(4, NOV - 2 * HOUR, "fraud/phishing", false),
            ]
            .concat(),
        )
        .await
        .expect("incidents");
    let m = assemble_month(
        &store,
        "2026-11",
        NOV + 31 * 24 * HOUR,
        Issuer {
            name: "KommuneCERT".into(),
            contact: String::new(),
        },
    )
    .await
    .expect("store")
    .expect("a month");
    assert_eq!(m.incidents.len(), 3);
    assert_eq!(m.open_closed(), (2, 1));
    assert_eq!(
        m.by_category(),
        vec![
            ("Intrusion Attempts / Login attempts".to_owned(), 2),
            ("not classified".to_owned(), 1)
        ]
    );
    assert_eq!(m.incidents_by_municipality(), vec![("0301".to_owned(), 3)]);
    assert_eq!(
        m.by_municipality,
        vec![("0301".to_owned(), 3), ("4601".to_owned(), 2)]
    );
    assert_eq!(
        m.by_component,
        vec![
            (String::new(), 2),
            ("idporten".to_owned(), 2),
            ("altinn".to_owned(), 1)
        ]
    );
    assert_eq!(m.daily.iter().map(|d| d.1).sum::<u64>(), 5);
    // Oslo: first detection 10:00, acknowledged 12:00 (2 h), resolved 15:00 (5 h). Bergen:
    // first detection in October (19:00 the day before), acknowledged 16:00: 21 h.
    assert_eq!(m.acknowledge_s, vec![2 * 3600, 21 * 3600]);
    assert_eq!(m.resolve_s, vec![5 * 3600]);
    let csv = m.csv();
    assert!(
        csv.contains("incidents,open,2") && csv.contains("resolve_s,median,18000"),
        "{csv}"
    );
    let html = m.html();
    assert!(html.contains("<svg") && html.contains("Month report 2026-11"));
}
