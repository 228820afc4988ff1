//! The exports of one incident: byte for byte the golden files in `tests/golden/` (rewrite
//! them with `VARDE_BLESS=1 cargo test -p varde-report --test exports` and read the diff), the
//! STIX bundle valid for OASIS's `stix2-validator` and the MISP event loaded by MISP's own
//! `pymisp` (both from PyPI, installed by `deploy/dev/services.sh up tools`), and hostile text
//! defused in CSV and escaped in HTML.

use std::path::{Path, PathBuf};
use std::process::Command;

use varde_core::{AlertId, EventId};
use varde_report::{Format, IncidentReport, Issuer, Stage};
use varde_store::Alert;
use varde_store::incident::{Change, Incident, IncidentChange, IncidentStatus, Severity, Tlp};

const T0: i64 = 1_796_119_200_000_000; // 2026-12-01 10:00:00 UTC

fn alert(n: u8, tenant: &str, host: &str, matched: &[(&str, &str)]) -> Alert {
    Alert {
        alert_id: AlertId([n; 16]),
        dedup_key: [n; 16],
        tenant: tenant.into(),
        component: "idporten".into(),
        rule_id: "r1".into(),
        rule_title: "Failed ID-porten logins from one address <script>".into(),
        rule_level: "high".into(),
        rule_tags: vec![],
        event_id: EventId([n; 16]),
        event_time_us: T0 + i64::from(n) * 60_000_000,
        detect_time_us: T0 + i64::from(n) * 60_000_000 + 1_000_000,
        source_kind: "oidc_login".into(),
        host: host.into(),
        matched: matched
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn report(tlp: Tlp) -> IncidentReport {
    let c = |n: u8, change: Change| IncidentChange {
        change_id: [n; 16],
        incident_id: [0xab; 16],
        at_us: T0 + i64::from(n) * 1_000_000,
        actor: "kari".into(),
        change,
    };
    let changes = vec![
        c(
            1,
            Change::Opened("Password spray against ID-porten logins".into()),
        ),
        c(2, Change::Severity(Severity::High)),
        c(3, Change::Tlp(tlp)),
        c(4, Change::Status(IncidentStatus::Containment)),
        c(
            5,
            Change::LinkGroup {
                dedup_key: [1; 16],
                tenant: "0301".into(),
                component: "idporten".into(),
                rule_title: "Failed logins".into(),
            },
        ),
        c(6, Change::Municipalities(vec!["4601".into()])),
        c(7, Change::Category("intrusion-attempts/brute-force".into())),
        c(8, Change::RootCause("malicious-actions".into())),
        c(9, Change::UsersAffected(Some(1200))),
    ];
    let incident = Incident::fold(&changes).remove(0);
    let alerts = vec![
        alert(
            1,
            "0301",
            "=HYPERLINK(\"http://evil.example\")",
            &[
                ("src_ip", "203.0.113.7"),
                ("client_ip", "10.0.0.5"),
                ("url", "https://evil.example/login?x='1'"),
            ],
        ),
        alert(
            2,
            "0301",
            "web01",
            &[("src_ip", "203.0.113.7"), ("src_ip6", "2001:db8::66")],
        ),
        alert(
            3,
            "4601",
            "web02",
            &[
                ("dns_query", "c2.evil.example"),
                ("file_sha256", &"AB".repeat(32)),
            ],
        ),
    ];
    IncidentReport::new(
        Stage::Notification,
        incident,
        alerts,
        None,
        T0 + 86_400_000_000,
        Issuer {
            name: "KommuneCERT".into(),
            contact: "cert@kommunecert.example".into(),
        },
    )
}

/// This crate's directory as cargo gives it to the running test (a build shared between two
/// checkouts must not send the test to the other one's files).
fn crate_dir() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

fn golden(name: &str) -> PathBuf {
    crate_dir().join("tests/golden").join(name)
}

fn validate(kind: &str, path: &Path) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(crate_dir().join("tests/peers/validate.py"))
        .arg(kind)
        .arg(path)
        .output()
        .expect("python3 (deploy/dev/services.sh up tools installs the validators)");
    assert!(
        out.status.success(),
        "the {kind} validator failed to run (deploy/dev/services.sh up tools installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("validator JSON")
}

#[test]
fn every_format_matches_its_golden_file() {
    let r = report(Tlp::Amber);
    let bless = std::env::var_os("VARDE_BLESS").is_some();
    for f in Format::ALL {
        let text = f.render(&r);
        assert_eq!(text, f.render(&r), "{f:?} is deterministic");
        let path = golden(&format!("incident.{}", f.extension()));
        if bless {
            std::fs::write(&path, &text).expect("bless");
            continue;
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|_| {
            panic!(
                "{} is missing: VARDE_BLESS=1 cargo test -p varde-report --test exports",
                path.display()
            )
        });
        assert!(
            text == want,
            "{} differs from the export; if the change is meant, bless it (VARDE_BLESS=1) and read the diff",
            path.display()
        );
    }
}

#[test]
fn the_stix_bundle_is_valid_stix_2_1_with_tlp_2_0_on_every_object() {
    let dir = tempfile::tempdir().expect("dir");
    for tlp in [
        Tlp::Clear,
        Tlp::Green,
        Tlp::Amber,
        Tlp::AmberStrict,
        Tlp::Red,
    ] {
        let mut r = report(tlp);
        if tlp == Tlp::Clear {
            // Not yet classified: no empty lists (STIX forbids them).
            r.classification = None;
            r.root_cause = None;
        }
        let path = dir.path().join("bundle.json");
        std::fs::write(&path, Format::Stix.render(&r)).expect("write");
        let v = validate("stix", &path);
        assert_eq!(v["valid"], true, "{tlp:?}: {v}");
        assert_eq!(v["errors"].as_array().map(Vec::len), Some(0), "{v}");
        // Reported: the only warnings are {103}, UUIDv5 ids where STIX recommends UUIDv4
        // (deterministic ids are the point; see stix.rs).
        let warnings: Vec<&str> = v["warnings"]
            .as_array()
            .expect("warnings")
            .iter()
            .filter_map(|w| w.as_str())
            .collect();
        eprintln!(
            "stix2-validator ({tlp:?}): 0 errors, {} warnings",
            warnings.len()
        );
        let other: Vec<&&str> = warnings.iter().filter(|w| !w.contains("{103}")).collect();
        assert!(other.is_empty(), "{other:?}");
        let bundle: serde_json::Value =
            serde_json::from_str(&Format::Stix.render(&r)).expect("json");
        let marking = varde_report::stix::tlp_marking(tlp).0;
        let objects = bundle["objects"].as_array().expect("objects");
        for o in objects {
            if o["type"] != "marking-definition" {
                assert_eq!(o["object_marking_refs"][0], marking, "{o}");
            }
        }
        let count = |t: &str| objects.iter().filter(|o| o["type"] == t).count();
        // 203.0.113.7, 2001:db8::66, the URL, the domain, the digest; not 10.0.0.5.
        assert_eq!((count("indicator"), count("sighting")), (5, 5));
        assert_eq!(count("incident"), 1);
        assert_eq!(count("report"), 1);
    }
}

#[test]
fn the_misp_event_loads_in_pymisp_with_its_tags_and_attributes() {
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("event.json");
    std::fs::write(&path, Format::Misp.render(&report(Tlp::AmberStrict))).expect("write");
    let v = validate("misp", &path);
    assert_eq!(v["valid"], true, "{v}");
    let tags: Vec<&str> = v["tags"]
        .as_array()
        .expect("tags")
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert!(tags.contains(&"tlp:amber+strict"), "{tags:?}");
    assert!(
        tags.contains(&"rsit:intrusion-attempts=\"brute-force\""),
        "{tags:?}"
    );
    let attributes = v["attributes"].to_string();
    assert!(attributes.contains("ip-src:203.0.113.7"), "{attributes}");
    assert!(attributes.contains("sha256:abab"), "{attributes}");
    assert!(attributes.contains("text:4601 Bergen"), "{attributes}");
    assert!(attributes.contains("counter:1200"), "{attributes}");
    assert!(!attributes.contains("10.0.0.5"), "{attributes}");
}

#[test]
fn hostile_text_is_defused_in_csv_and_escaped_in_html() {
    let r = report(Tlp::Amber);
    let csv = Format::Csv.render(&r);
    assert!(csv.contains("'=HYPERLINK"), "{csv}");
    assert!(!csv.contains(",=HYPERLINK"), "{csv}");
    let html = Format::Html.render(&r);
    assert!(html.contains("&lt;script&gt;") && !html.contains("<script>"));
    assert!(html.contains("TLP:AMBER"));
    assert!(html.contains("Login attempts") && html.contains("Malicious actions"));
}
