//! Enrolment end to end, as processes: `varde dashboard` serving its API over HTTPS (a
//! certificate made here, pinned by the token), `varde admin collector add` issuing a token,
//! `varde-collector enrol` redeeming it (key made on "the VM", configuration written), events
//! sent with that configuration through Kafka and `varde pipeline` to ClickHouse under the
//! token's tenant and the collector id the CERT gave. Then: the same token again, a token with
//! its tenant or pinned certificate changed, and an expired token are refused and change
//! nothing; `rotate-key` replaces the key and the next batch is taken; `varde admin collector
//! revoke` makes the next batch refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use varde_core::Kommunenummer;
use varde_core::enrolment::EnrolmentToken;
use varde_store::EventStore;
use varde_testkit::process::{Guard, pipeline_config, start_pipeline, write_syslog_lines};
use varde_testkit::{TestEnv, eventually, free_port, workspace_bin};
use varde_transport::events_topic;
use varde_transport::kafka::ensure_topics;

fn varde(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_varde"))
        .args(args)
        .output()
        .expect("run varde")
}

fn collector(args: &[&str]) -> Output {
    Command::new(workspace_bin("varde-collector"))
        .args(args)
        .env("VARDE_LOG", "warn")
        .output()
        .expect("run varde-collector")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn issue(dashboard_toml: &Path, tenant: &str, name: &str, extra: &[&str]) -> String {
    let mut args = vec![
        "admin",
        "collector",
        "add",
        "--config",
        dashboard_toml.to_str().expect("utf-8"),
        "--tenant",
        tenant,
        "--name",
        name,
    ];
    args.extend_from_slice(extra);
    let out = varde(&args);
    assert!(out.status.success(), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `varde-collector enrol` into `dir`'s `collector.toml` and `state/`.
fn enrol(token: &str, dir: &Path) -> Output {
    collector(&[
        "enrol",
        token,
        "--config",
        dir.join("collector.toml").to_str().expect("utf-8"),
        "--state-dir",
        dir.join("state").to_str().expect("utf-8"),
        "--start=false",
    ])
}

/// A refused enrolment wrote nothing.
fn assert_untouched(dir: &Path, out: &Output, why: &str) {
    assert!(
        !out.status.success(),
        "enrolment should fail: {}",
        text(out)
    );
    assert!(text(out).contains(why), "{}", text(out));
    assert!(
        !dir.join("collector.toml").exists(),
        "no configuration written"
    );
    assert!(!dir.join("state").exists(), "no state written");
}

/// The token with one field changed, its checksum made right again (so only the CERT can tell).
fn altered(token: &str, change: impl FnOnce(&mut EnrolmentToken)) -> String {
    let mut t = EnrolmentToken::parse(token).expect("token");
    change(&mut t);
    t.encode()
}

fn dashboard_config(dir: &Path, env: &TestEnv, port: u16) -> PathBuf {
    let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).expect("cert");
    std::fs::write(dir.join("cert.pem"), cert.cert.pem()).expect("write");
    std::fs::write(dir.join("key.pem"), cert.key_pair.serialize_pem()).expect("write");
    let accounts = dir.join("accounts.toml");
    varde_dashboard::add_account(
        &accounts,
        "admin",
        varde_dashboard::Role::Admin,
        None,
        "a long test password",
    )
    .expect("account");
    let kafka = env.kafka();
    let clickhouse = env.clickhouse();
    let path = dir.join("dashboard.toml");
    std::fs::write(
        &path,
        format!(
            "listen = \"127.0.0.1:{port}\"\naccounts = {accounts:?}\n\n\
             [clickhouse]\nurl = {:?}\ndatabase = {:?}\n\n\
             [tls]\ncert_file = {:?}\nkey_file = {:?}\n\n\
             [enrolment]\nurl = \"https://127.0.0.1:{port}\"\nbrokers = {:?}\ntopic_prefix = {:?}\n\
             rotation_overlap_hours = 1\n",
            clickhouse.url,
            clickhouse.database,
            dir.join("cert.pem"),
            dir.join("key.pem"),
            kafka.brokers,
            kafka.topic_prefix,
        ),
    )
    .expect("write dashboard config");
    path
}

/// Oslo's events in the store.
async fn stored(store: &impl EventStore) -> u64 {
    store
        .event_counts()
        .await
        .expect("counts")
        .iter()
        .filter(|c| c.tenant == "0301")
        .map(|c| c.events)
        .sum::<u64>()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_enrols_with_a_token_and_its_events_arrive_under_its_tenant() {
    let env = TestEnv::new("enrolment");
    let kafka = env.kafka();
    let clickhouse = env.clickhouse();
    let store = env.store().await;
    let oslo = Kommunenummer::parse("0301").expect("Oslo");
    ensure_topics(&kafka, &[(events_topic(&kafka.topic_prefix, oslo), 1)])
        .await
        .expect("topic");
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let dashboard_toml = dashboard_config(dir.path(), &env, port);
    let _dashboard = Guard(
        Command::new(env!("CARGO_BIN_EXE_varde"))
            .args(["dashboard", "--config"])
            .arg(&dashboard_toml)
            .stderr(std::fs::File::create(dir.path().join("dashboard.log")).expect("log"))
            .spawn()
            .expect("start the dashboard"),
    );
    eventually(
        "the dashboard listening",
        Duration::from_secs(60),
        || async {
            tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await;

    let token = issue(&dashboard_toml, "0301", "Oslo DMZ", &[]);
    assert!(token.starts_with("varde-enrol-1."), "{token}");

    // Tampered on the way: another tenant, or another certificate pinned. Refused, nothing
    // written.
    let vm = dir.path().join("vm-tampered");
    let forged = altered(&token, |t| {
        t.tenant = Kommunenummer::parse("4601").expect("Bergen")
    });
    assert_untouched(
        &vm,
        &enrol(&forged, &vm),
        "changed after the CERT issued it",
    );
    let wrong_pin = altered(&token, |t| t.pin = "00".repeat(32));
    assert_untouched(&vm, &enrol(&wrong_pin, &vm), "not the one the token pins");
    assert_untouched(
        &vm,
        &enrol(&token[..token.len() - 3], &vm),
        "the token is damaged",
    );

    // The real thing.
    let vm = dir.path().join("vm");
    let out = enrol(&token, &vm);
    assert!(out.status.success(), "{}", text(&out));
    let said = text(&out);
    let collector_id = said
        .split_whitespace()
        .skip_while(|w| *w != "collector")
        .nth(1)
        .expect("the collector id in the output")
        .to_owned();
    assert!(collector_id.starts_with("k0301-oslo-dmz-"), "{said}");
    let key = vm.join("state/collector.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key is private");
    }
    assert!(
        vm.join("state/privacy.key").exists(),
        "privacy key made on the VM"
    );
    let config = vm.join("collector.toml");
    let check = collector(&["check-config", config.to_str().expect("utf-8")]);
    assert!(check.status.success(), "{}", text(&check));

    // The same token again, on another machine: refused, nothing written.
    let again = dir.path().join("vm-again");
    assert_untouched(&again, &enrol(&token, &again), "used already");
    // An expired token.
    let expired = issue(
        &dashboard_toml,
        "0301",
        "Oslo late",
        &["--valid-minutes", "0"],
    );
    assert_untouched(&again, &enrol(&expired, &again), "expired");

    // Events through Kafka and the pipeline, under Oslo and the CERT's id for the collector.
    let pipeline_toml = pipeline_config(dir.path(), &kafka, &clickhouse, 50);
    let _pipeline = start_pipeline(
        Path::new(env!("CARGO_BIN_EXE_varde")),
        &pipeline_toml,
        Some(&dir.path().join("pipeline.log")),
    );
    let send = |log: &Path| {
        let out = collector(&[
            "send",
            "--config",
            config.to_str().expect("utf-8"),
            log.to_str().expect("utf-8"),
        ]);
        assert!(out.status.success(), "{}", text(&out));
    };
    let lines = |n: usize, name: &str| {
        let log = dir.path().join(name);
        write_syslog_lines(&log, n, 1000);
        log
    };
    send(&lines(300, "first.log"));
    eventually("300 events stored", Duration::from_secs(120), || async {
        (stored(&store).await == 300).then_some(())
    })
    .await;
    let events = store
        .events(&varde_store::EventQuery {
            tenant: Some(oslo),
            limit: 5,
        })
        .await
        .expect("events");
    assert!(events.iter().all(|e| e.collector_id == collector_id));

    // A new key, signed with the old one; the next batch is taken under it.
    let token_fields = EnrolmentToken::parse(&token).expect("token");
    let out = collector(&[
        "rotate-key",
        "--config",
        config.to_str().expect("utf-8"),
        "--url",
        &token_fields.url,
        "--pin",
        &token_fields.pin,
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(vm.join("state/collector.key.old").exists());
    send(&lines(200, "second.log"));
    eventually("500 events stored", Duration::from_secs(120), || async {
        (stored(&store).await == 500).then_some(())
    })
    .await;

    // Revoked from the command line: the next batch is refused, none of its events stored.
    let out = varde(&[
        "admin",
        "collector",
        "revoke",
        "--config",
        dashboard_toml.to_str().expect("utf-8"),
        &collector_id,
        "--reason",
        "test",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    // Plain syslog lines only: one batch of one kind.
    let third = dir.path().join("third.log");
    std::fs::write(
        &third,
        (0..100)
            .map(|i| format!("<13>Dec  6 05:00:00 fw01 app: plain line {i}\n"))
            .collect::<String>(),
    )
    .expect("write");
    send(&third);
    eventually(
        "the revoked collector's batch parked",
        Duration::from_secs(60),
        || async {
            let letters = store.dead_letters(10).await.expect("dead letters");
            letters
                .iter()
                .any(|l| l.reason == "revoked_key")
                .then_some(())
        },
    )
    .await;
    // 500 events of the collector and the security event of the refusal.
    let total = stored(&store).await;
    assert_eq!(total, 501, "none of the revoked batch's 100 events");
    env.cleanup().await;
}
