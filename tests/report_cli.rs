//! `varde report` against the real ClickHouse: an incident stored as the dashboard stores it,
//! written as STIX, MISP, CSV, HTML and PDF (headless Chromium), listed with its deadlines; an
//! unknown id or a bad stage refused with a clear error.

use std::process::Command;

use varde_store::EventStore;
use varde_store::incident::{Change, IncidentChange, Tlp};
use varde_testkit::{TestEnv, workspace_bin};

#[tokio::test]
async fn an_incident_is_written_in_every_format_and_listed_with_its_deadlines() {
    let env = TestEnv::new("report_cli");
    let store = env.store().await;
    let now = chrono::Utc::now().timestamp_micros();
    let id = [0x5f; 16];
    let changes: Vec<IncidentChange> = [
        Change::Opened("Password spray against ID-porten logins".into()),
        Change::Tlp(Tlp::Green),
        // Aware four days ago: the early warning and the notification are overdue.
        Change::AwareAt(now - 4 * 86_400_000_000),
        Change::Category("intrusion-attempts/brute-force".into()),
    ]
    .into_iter()
    .enumerate()
    .map(|(n, change)| IncidentChange {
        change_id: [u8::try_from(n).expect("small"); 16],
        incident_id: id,
        at_us: now + i64::try_from(n).expect("small"),
        actor: "kari".into(),
        change,
    })
    .collect();
    store
        .write_incident_changes(&changes)
        .await
        .expect("incident");
    let dir = tempfile::tempdir().expect("dir");
    let config = dir.path().join("any.toml");
    let ch = env.clickhouse();
    std::fs::write(
        &config,
        format!(
            "[clickhouse]\nurl = \"{}\"\ndatabase = \"{}\"\n",
            ch.url, ch.database
        ),
    )
    .expect("config");
    let hex = "5f".repeat(16);
    let varde = |args: &[&str]| {
        Command::new(workspace_bin("varde"))
            .args(args)
            .arg("--config")
            .arg(&config)
            .output()
            .expect("varde report")
    };
    let out = varde(&["report", "incident", &hex, "--format", "stix"]);
    assert!(out.status.success(), "{out:?}");
    let bundle: serde_json::Value = serde_json::from_slice(&out.stdout).expect("STIX JSON");
    assert_eq!(bundle["type"], "bundle");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"tlp_2_0\": \"green\""));
    for (format, expected) in [
        ("misp", "Early warning: Password spray"),
        ("csv", "section,time_first"),
        ("html", "Early warning: Password spray"),
    ] {
        let out = varde(&[
            "report",
            "incident",
            &hex,
            "--stage",
            "early-warning",
            "--format",
            format,
        ]);
        assert!(out.status.success(), "{format}: {out:?}");
        assert!(
            String::from_utf8_lossy(&out.stdout).contains(expected),
            "{format}"
        );
    }
    let pdf = dir.path().join("report.pdf");
    let out = varde(&[
        "report",
        "incident",
        &hex,
        "--format",
        "pdf",
        "--out",
        pdf.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(std::fs::read(&pdf).expect("pdf").starts_with(b"%PDF-"));

    // The month's report of the month the CERT became aware of it: the incident counted.
    let month = chrono::DateTime::from_timestamp_micros(now - 4 * 86_400_000_000)
        .expect("time")
        .format("%Y-%m")
        .to_string();
    let out = varde(&["report", "month", &month, "--format", "csv"]);
    assert!(out.status.success(), "{out:?}");
    let csv = String::from_utf8_lossy(&out.stdout);
    assert!(
        csv.contains("incidents,total,1")
            && csv.contains("incidents_by_category,Intrusion Attempts / Login attempts,1"),
        "{csv}"
    );
    let month_pdf = dir.path().join("month.pdf");
    let out = varde(&[
        "report",
        "month",
        &month,
        "--format",
        "pdf",
        "--out",
        month_pdf.to_str().expect("path"),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        std::fs::read(&month_pdf)
            .expect("pdf")
            .starts_with(b"%PDF-")
    );
    let out = varde(&["report", "month", "2026-13"]);
    assert!(!out.status.success());

    // Every CLI export is in the audit log.
    let exports = varde_store::reports::ReportLog::exports(&store, 100)
        .await
        .expect("exports");
    assert_eq!(exports.len(), 7, "{exports:?}");
    assert!(exports.iter().all(|x| x.actor.starts_with("cli:")));
    assert!(
        exports
            .iter()
            .any(|x| x.format == "pdf" && x.incident_id == id)
    );

    let out = varde(&["report", "list"]);
    assert!(out.status.success(), "{out:?}");
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.contains(&hex) && list.contains("OVERDUE"), "{list}");

    let out = varde(&["report", "incident", &"00".repeat(16)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no incident"),
        "{out:?}"
    );
    let out = varde(&["report", "incident", &hex, "--stage", "soon"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--stage soon"),
        "{out:?}"
    );
    env.cleanup().await;
}
