//! The retro-hunt raises what the stream raised: the pipeline, as a process against the real
//! Kafka and ClickHouse of `deploy/dev/services.sh up`, takes bursts of failed root logins on
//! servers of two municipalities and an ID-porten spray across three; then `varde rules hunt`
//! runs the same correlations (the pack's) over the stored events. Both must give the same
//! correlation alerts, id for id, and `--write` must add none that the stream already stored.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use varde_store::{AlertQuery, EventStore};
use varde_testkit::process::{collector_config, collector_send, pipeline_config, start_pipeline};
use varde_testkit::{TestEnv, eventually};
use varde_transport::events_topic;
use varde_transport::kafka::ensure_topics;

/// The pack's `lnx_sshd_admin_login_burst.yml` and `oidc_idporten_spray_campaign.yml`.
const BURST: &str = "9b4e1f73-2c8d-4a6e-b5f0-1d3a7c9e2b68";
const SPRAY: &str = "8f3a6d12-7b4e-4c1a-9e5d-2c6b0a8f4e10";

fn varde() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_varde"))
}

/// `n` failed root logins on `host` of `tenant`, `step` seconds apart from `start` (seconds
/// after 10:00 on 1 December 2026).
fn failed_root_logins(tenant: &str, host: &str, start: u32, n: u32, step: u32) -> String {
    (0..n)
        .map(|i| {
            let s = start + i * step;
            format!(
                "<38>1 2026-12-01T10:{:02}:{:02}Z {host}.k{tenant}.kommune.no sshd 77 - - Failed password for root from 198.51.100.20 port {} ssh2\n",
                s / 60,
                s % 60,
                40_000 + i
            )
        })
        .collect()
}

/// A failed ID-porten login to `tenant`'s citizen portal from the spraying address, `second`
/// seconds after 11:00. (The three municipalities' topics are consumed in no particular order,
/// so the spray's hits must be within the allowed lateness of each other for the stream to
/// take them all; the hunt, in event-time order, would take any spread.)
fn failed_idporten_login(tenant: &str, second: u32) -> String {
    format!(
        "{{\"time\":\"2026-12-01T11:00:{second:02}.000Z\",\"client_id\":\"k{tenant}-innbyggerportal\",\"service\":\"byggesak\",\"acr\":\"idporten-loa-substantial\",\"outcome\":\"failure\",\"ip\":\"192.0.2.200\"}}\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hunt_over_clickhouse_raises_the_streams_correlation_alerts() {
    let env = TestEnv::new("corrhunt");
    let kafka = env.kafka();
    let clickhouse = env.clickhouse();
    let store = env.store().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // 0301: 25 logins on app01 (two bursts of ten, five left over) and 9 on app02 (none);
    // 4601: 12 on app01 (one). A failed ID-porten login from one address in each of three.
    let plan = [
        (
            "0301",
            failed_root_logins("0301", "app01", 0, 25, 7)
                + &failed_root_logins("0301", "app02", 3, 9, 11)
                + &failed_idporten_login("0301", 5),
        ),
        (
            "4601",
            failed_root_logins("4601", "app01", 1, 12, 13) + &failed_idporten_login("4601", 20),
        ),
        ("5001", failed_idporten_login("5001", 40)),
    ];
    let mut lines = 0;
    for (tenant, text) in &plan {
        let topic = events_topic(
            &kafka.topic_prefix,
            varde_core::Kommunenummer::parse(tenant).expect("kommunenummer"),
        );
        ensure_topics(&kafka, &[(topic, 1)])
            .await
            .expect("create topic");
        let file = dir.path().join(format!("{tenant}.log"));
        std::fs::write(&file, text).expect("write lines");
        let config = collector_config(
            dir.path(),
            &format!("k{tenant}-hunt"),
            tenant,
            &kafka,
            &clickhouse,
            100,
        );
        collector_send(&config, &file);
        lines += text.lines().count() as u64;
    }
    let config = pipeline_config(dir.path(), &kafka, &clickhouse, 4);
    let _pipeline = start_pipeline(varde(), &config, Some(&dir.path().join("pipeline.log")));
    eventually("every event stored", Duration::from_secs(120), || async {
        let stored: u64 = store
            .event_counts()
            .await
            .ok()?
            .iter()
            .map(|c| c.events)
            .sum();
        (stored == lines).then_some(())
    })
    .await;
    let correlation_alerts = || async {
        store
            .alerts(&AlertQuery {
                tenant: None,
                limit: 1000,
            })
            .await
            .expect("read alerts")
            .into_iter()
            .filter(|a| a.rule_id == BURST || a.rule_id == SPRAY)
            .collect::<Vec<_>>()
    };
    // Three bursts and the spray's three rows (one per municipality).
    let stream = eventually(
        "the stream's correlation alerts",
        Duration::from_secs(60),
        || async {
            let a = correlation_alerts().await;
            (a.len() >= 6).then_some(a)
        },
    )
    .await;
    let per_rule = |id: &str| stream.iter().filter(|a| a.rule_id == id).count();
    assert_eq!((per_rule(BURST), per_rule(SPRAY)), (3, 3), "{stream:#?}");
    let stream_ids: BTreeSet<String> = stream.iter().map(|a| a.alert_id.to_string()).collect();

    let hunt = |write: bool| {
        let mut cmd = Command::new(varde());
        cmd.args(["rules", "hunt", "--config"]).arg(&config).args([
            "--from",
            "2026-12-01T00:00:00Z",
            "--to",
            "2026-12-02T00:00:00Z",
        ]);
        if write {
            cmd.arg("--write");
        }
        let out = cmd.output().expect("run varde rules hunt");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("a JSON line");
                v["alert_id"].as_str().expect("alert_id").to_owned()
            })
            .collect::<BTreeSet<String>>()
    };
    assert_eq!(
        hunt(false),
        stream_ids,
        "the hunt's alerts are the stream's"
    );
    assert_eq!(hunt(true), stream_ids);
    // Written next to the stream's: the same ids, nothing added.
    let after = correlation_alerts().await;
    let after_ids: BTreeSet<String> = after.iter().map(|a| a.alert_id.to_string()).collect();
    assert_eq!(after_ids, stream_ids);
    assert_eq!(after.len(), stream.len());
    env.cleanup().await;
}
