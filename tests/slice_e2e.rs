//! The first end-to-end slice, as processes against the real services that
//! `deploy/dev/services.sh up` starts: `varde-collector send` reads a file of syslog lines and
//! publishes envelopes to Kafka; `varde pipeline` consumes them and writes ClickHouse rows. The
//! test checks the exact row count, the tenant and a few field values, that Varde's rule pack
//! raised exactly one alert per planted root password login, and a graceful stop.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use varde_core::Kommunenummer;
use varde_store::{EventQuery, EventStore};
use varde_testkit::process::{
    FNR, collector_config, collector_send, pipeline_config, start_pipeline, write_syslog_lines,
};
use varde_testkit::{TestEnv, eventually};
use varde_transport::events_topic;
use varde_transport::kafka::ensure_topics;

const N: usize = 5000;
/// Every `ROOT_EVERY`-th line (from line 3) is a root login with a password, which the pack's
/// sshd rule alerts on.
const ROOT_EVERY: usize = 100;
const ROOT_LOGINS: usize = N / ROOT_EVERY;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn syslog_file_to_clickhouse_through_kafka() {
    let env = TestEnv::new("slice_e2e");
    let kafka = env.kafka();
    let clickhouse = env.clickhouse();
    let bergen = Kommunenummer::parse("4601").expect("Bergen");
    let topic = events_topic(&kafka.topic_prefix, bergen);
    ensure_topics(&kafka, &[(topic.clone(), 3)])
        .await
        .expect("create topic");

    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("syslog.log");
    write_syslog_lines(&log, N, ROOT_EVERY);
    let collector_toml =
        collector_config(dir.path(), "k4601-e2e", "4601", &kafka, &clickhouse, 700);
    let pipeline_toml = pipeline_config(dir.path(), &kafka, &clickhouse, 200);

    // The pipeline first, subscribed by pattern to every tenant topic of this test's prefix.
    let mut pipeline = start_pipeline(Path::new(env!("CARGO_BIN_EXE_varde")), &pipeline_toml, None);

    let summary = collector_send(&collector_toml, &log);
    assert!(
        summary.contains(&format!("\"events_out\":{N}")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("\"parse_errors\":{}", N / 4 - ROOT_LOGINS)),
        "{summary}"
    );

    let store = varde_store::clickhouse::ClickHouseStore::new(&clickhouse).expect("store");
    let counts = eventually(
        "all rows in ClickHouse",
        Duration::from_secs(120),
        || async {
            let counts = store.event_counts().await.ok()?;
            (counts.iter().map(|c| c.events).sum::<u64>() >= N as u64).then_some(counts)
        },
    )
    .await;
    // Parsed at the edge into kinds: sshd and sudo lines are `auth`, ID-porten logins
    // `oidc_login` (every fourth line), the rest `syslog`; all of Bergen, N in all.
    assert!(counts.iter().all(|c| c.tenant == "4601"), "{counts:?}");
    let kinds: Vec<&str> = counts.iter().map(|c| c.source_kind.as_str()).collect();
    assert_eq!(kinds, ["auth", "oidc_login", "syslog"], "{counts:?}");
    assert_eq!(counts[1].events, (N / 4) as u64, "{counts:?}");
    assert_eq!(
        counts.iter().map(|c| c.events).sum::<u64>(),
        N as u64,
        "exactly N distinct events: {counts:?}"
    );

    let events = store
        .events(&EventQuery {
            tenant: Some(bergen),
            limit: 2 * N as u64,
        })
        .await
        .expect("read events");
    assert_eq!(events.len(), N, "no duplicates visible");
    let marker = |i: usize| {
        events
            .iter()
            .find(|e| {
                e.message.ends_with(&format!("e2e marker {i}"))
                    || e.message.contains(&format!("e2e marker {i}:"))
            })
            .unwrap_or_else(|| panic!("event {i} missing"))
    };
    // Parsed at the edge: every sshd line is an `auth` event, its syslog header kept as
    // `syslog.*` fields.
    let ssh = marker(8);
    assert_eq!(ssh.source_kind, "auth");
    assert_eq!(ssh.host, "sak01.bergen.kommune.no");
    assert_eq!(ssh.severity, Some(6));
    assert_eq!(ssh.collector_id, "k4601-e2e");
    for field in [
        ("program", "sshd"),
        ("syslog.app_name", "sshd"),
        ("syslog.proc_id", "1008"),
        ("syslog.facility", "4"),
    ] {
        assert!(
            ssh.fields.contains(&(field.0.into(), field.1.into())),
            "{field:?} in {:?}",
            ssh.fields
        );
    }
    assert_eq!(
        varde_core::time::format_rfc3339(ssh.event_time_us),
        "2024-05-01T10:00:08.008000Z"
    );
    // The ID-porten structured data became an `oidc_login` event's columns.
    let login = marker(10);
    assert_eq!(login.source_kind, "oidc_login");
    assert!(
        login
            .fields
            .contains(&("acr".into(), "idporten-loa-high".into())),
        "{:?}",
        login.fields
    );
    let alerts = eventually("the alerts", Duration::from_secs(60), || async {
        let a = store
            .alerts(&varde_store::AlertQuery {
                tenant: Some(bergen),
                limit: 1000,
            })
            .await
            .ok()?;
        (a.len() >= ROOT_LOGINS).then_some(a)
    })
    .await;
    assert_eq!(
        alerts.len(),
        ROOT_LOGINS,
        "one alert per planted login, no duplicates"
    );
    for a in &alerts {
        assert_eq!(a.rule_level, "high");
        assert_eq!(a.host, "ssh01.bergen.kommune.no");
        assert!(
            a.matched.iter().any(|(k, v)| k == "message"
                && v.starts_with("Accepted password for root from 198.51.100.7")),
            "{:?}",
            a.matched
        );
        assert!(events.iter().any(|e| e.event_id == a.event_id.to_string()));
    }
    // Pseudonymised at the edge: the number never left the collector, its keyed pseudonym did.
    let fnr = marker(5);
    assert!(
        !fnr.message.contains(FNR) && fnr.message.contains("fnr:"),
        "{}",
        fnr.message
    );
    let raw = marker(11);
    assert_eq!(raw.message, "not syslog at all, e2e marker 11");
    assert!(
        raw.fields.contains(&("parse_error".into(), "true".into())),
        "{:?}",
        raw.fields
    );

    // A graceful stop: SIGTERM, and the pipeline exits cleanly.
    let pid = pipeline.0.id().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(killed.success());
    let status = eventually("pipeline exit", Duration::from_secs(30), || {
        let s = pipeline.0.try_wait().ok().flatten();
        async move { s }
    })
    .await;
    assert!(status.success(), "pipeline exited with {status}");
    env.cleanup().await;
}

/// A `.json` file of concatenated, pretty-printed documents (as SigmaHQ's samples and
/// PowerShell's exports are) given to `varde-collector send`: every document through the edge
/// into Kafka and on to ClickHouse, each of its kind; a broken one kept as a line that does not
/// parse, and the one after it read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_json_file_of_documents_reaches_clickhouse_through_the_edge() {
    let env = TestEnv::new("slice_e2e_json");
    let kafka = env.kafka();
    let clickhouse = env.clickhouse();
    let trondheim = Kommunenummer::parse("5001").expect("Trondheim");
    let topic = events_topic(&kafka.topic_prefix, trondheim);
    ensure_topics(&kafka, &[(topic, 1)])
        .await
        .expect("create topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let record = |id: u32, command: &str| {
        format!(
            "{{\n  \"Event\": {{\n    \"System\": {{\n      \"EventID\": {id},\n      \
             \"Channel\": \"Security\",\n      \"Computer\": \"ws07.trondheim.kommune.no\",\n      \
             \"TimeCreated\": {{\"#attributes\": {{\"SystemTime\": \"2026-04-17T05:24:53Z\"}}}}\n    \
             }},\n    \"EventData\": {{\n      \"CommandLine\": \"{command}\"\n    }}\n  }}\n}}\n"
        )
    };
    let text = record(4688, &format!("cmd /c echo {FNR}"))
        + &record(4689, "whoami /all")
        + "{\"message\": \"json import e2e\", \"host\": \"app03\"}\n"
        + "{\"broken\": }\n"
        + "{\"message\": \"after the broken one\"}\n";
    let file = dir.path().join("export.json");
    std::fs::write(&file, text).expect("write");
    let collector_toml =
        collector_config(dir.path(), "k5001-json", "5001", &kafka, &clickhouse, 100);
    let pipeline_toml = pipeline_config(dir.path(), &kafka, &clickhouse, 50);
    let _pipeline = start_pipeline(Path::new(env!("CARGO_BIN_EXE_varde")), &pipeline_toml, None);

    let summary = collector_send(&collector_toml, &file);
    assert!(summary.contains("\"events_out\":5,"), "{summary}");

    let store = varde_store::clickhouse::ClickHouseStore::new(&clickhouse).expect("store");
    let counts = eventually("the five rows", Duration::from_secs(120), || async {
        let counts = store.event_counts().await.ok()?;
        (counts.iter().map(|c| c.events).sum::<u64>() >= 5).then_some(counts)
    })
    .await;
    let kinds: Vec<(&str, u64)> = counts
        .iter()
        .map(|c| (c.source_kind.as_str(), c.events))
        .collect();
    assert_eq!(
        kinds,
        [("generic_json", 2), ("syslog", 1), ("windows_event", 2)],
        "{counts:?}"
    );
    assert!(counts.iter().all(|c| c.tenant == "5001"), "{counts:?}");
    let events = store
        .events(&EventQuery {
            tenant: Some(trondheim),
            limit: 10,
        })
        .await
        .expect("read events");
    let process = events
        .iter()
        .find(|e| {
            e.fields
                .iter()
                .any(|(k, v)| k == "CommandLine" && v.starts_with("cmd /c echo"))
        })
        .unwrap_or_else(|| panic!("the 4688 record in {events:?}"));
    assert_eq!(process.source_kind, "windows_event");
    assert_eq!(process.host, "ws07.trondheim.kommune.no");
    let command = process
        .fields
        .iter()
        .find(|(k, _)| k == "CommandLine")
        .map(|(_, v)| v.as_str())
        .unwrap_or_default();
    assert!(
        !command.contains(FNR) && command.contains("fnr:"),
        "{command}"
    );
    assert!(events.iter().any(|e| e.message == "after the broken one"));
    let broken = events
        .iter()
        .find(|e| e.source_kind == "syslog")
        .unwrap_or_else(|| panic!("the broken document in {events:?}"));
    assert_eq!(broken.message, "{\"broken\": }");
    assert!(
        broken
            .fields
            .contains(&("parse_error".into(), "true".into())),
        "{:?}",
        broken.fields
    );
    env.cleanup().await;
}
