//! `varde notify` as a process against the real ClickHouse and a real SMTP server (aiosmtpd):
//! killed with `kill -9` while it sends, started again, and every notification arrives, none
//! of them as a second visible message: a message sent twice has the same `Message-ID` (its
//! outbox id), and the outbox holds each notification once.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use varde_core::{AlertId, EventId};
use varde_store::outbox::{Outbox, State};
use varde_store::{Alert, EventStore};
use varde_testkit::process::Guard;
use varde_testkit::{TestEnv, eventually, free_port, workspace_bin, workspace_root};

fn sink(port: u16, dir: &Path) -> Guard {
    let mut child = Command::new("python3")
        .arg(workspace_root().join("notify/tests/peers/smtp_sink.py"))
        .args(["--port", &port.to_string(), "--dir"])
        .arg(dir)
        // A slow server, so the kill lands while the notifier is sending.
        .args(["--delay", "0.3"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready");
    assert_eq!(
        line.trim(),
        "ready",
        "aiosmtpd did not start (deploy/dev/services.sh up tools)"
    );
    Guard(child)
}

fn notifier(config: &Path, log: &Path) -> Guard {
    let log = std::fs::File::create(log).expect("log");
    Guard(
        Command::new(workspace_bin("varde"))
            .args(["notify", "--config"])
            .arg(config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("varde notify"),
    )
}

/// The Message-IDs of the messages the server accepted, with how often each came.
fn message_ids(dir: &Path) -> BTreeMap<String, usize> {
    let mut ids = BTreeMap::new();
    for e in std::fs::read_dir(dir).expect("dir").flatten() {
        if e.path().extension().and_then(|x| x.to_str()) != Some("eml") {
            continue;
        }
        let text = std::fs::read_to_string(e.path()).expect("eml");
        let id = text
            .lines()
            .find_map(|l| {
                l.strip_prefix("Message-ID: ")
                    .or_else(|| l.strip_prefix("Message-Id: "))
            })
            .expect("a Message-ID header")
            .trim()
            .to_owned();
        *ids.entry(id).or_insert(0) += 1;
    }
    ids
}

#[tokio::test]
async fn a_notifier_killed_while_sending_loses_nothing_and_shows_nothing_twice() {
    let env = TestEnv::new("notify_restart");
    let store = env.store().await;
    let dir = tempfile::tempdir().expect("dir");
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).expect("mail dir");
    let port = free_port();
    let _smtp = sink(port, &mail);

    // Alerts of three municipalities in each of the last six closed minutes.
    let now = chrono::Utc::now().timestamp_micros();
    let minute = 60_000_000;
    let tenants = ["0301", "4601", "5001"];
    let mut alerts = Vec::new();
    let mut expected: BTreeSet<(&str, i64)> = BTreeSet::new();
    for k in 2..8 {
        let at = (now.div_euclid(minute) - k) * minute + 1_000_000;
        for (i, t) in tenants.iter().enumerate() {
            let n = u8::try_from(k * 3 + i as i64).expect("small");
            alerts.push(Alert {
                alert_id: AlertId([n; 16]),
                dedup_key: [n; 16],
                tenant: (*t).into(),
                component: String::new(),
                rule_id: "r".into(),
                rule_title: "Root login with a password".into(),
                rule_level: "high".into(),
                rule_tags: vec![],
                event_id: EventId([n; 16]),
                event_time_us: at,
                detect_time_us: at,
                source_kind: "auth".into(),
                host: "h".into(),
                matched: vec![],
            });
            expected.insert((t, at.div_euclid(minute)));
        }
    }
    store.write_alerts(&alerts).await.expect("alerts");

    let contacts = dir.path().join("contacts.toml");
    let mut text = String::new();
    for t in tenants {
        text.push_str(&format!(
            "[[contact]]\nname = \"IT {t}\"\ntenant = \"{t}\"\nemail = \"it@k{t}.example\"\nnamed = true\n\n"
        ));
    }
    std::fs::write(&contacts, text).expect("contacts");
    let ch = env.clickhouse();
    let config = dir.path().join("notify.toml");
    std::fs::write(
        &config,
        format!(
            "dashboard_url = \"http://127.0.0.1:8080/\"\nfrom = \"Varde <varde@cert.example>\"\ncontacts = \"contacts.toml\"\ndigest_interval_s = 60\nimmediate_interval_s = 10\ngrace_s = 0\ncatch_up_hours = 1\npoll_interval_s = 1\nretry_min_s = 1\nretry_max_s = 2\n\n[smtp]\nhost = \"127.0.0.1\"\nport = {port}\ntls = \"none\"\ntimeout_s = 10\n\n[clickhouse]\nurl = \"{}\"\ndatabase = \"{}\"\n",
            ch.url, ch.database
        ),
    )
    .expect("config");

    let mut first = notifier(&config, &dir.path().join("first.log"));
    // Killed once the server has taken the first message, while the rest are being sent.
    eventually("the first message", Duration::from_secs(60), || async {
        (!message_ids(&mail).is_empty()).then_some(())
    })
    .await;
    first.kill9();
    let before = message_ids(&mail).len();
    assert!(
        before < expected.len(),
        "the kill came after everything was sent ({before}); the test proves nothing"
    );

    let _second = notifier(&config, &dir.path().join("second.log"));
    let entries = eventually(
        "every notification sent",
        Duration::from_secs(90),
        || async {
            let entries = store.outbox(0, 1000).await.ok()?;
            (entries.len() == expected.len()
                && entries
                    .iter()
                    .all(|e| matches!(e.state(), State::Sent { .. })))
            .then_some(entries)
        },
    )
    .await;
    let ids = message_ids(&mail);
    // One message per (municipality, minute), each id its outbox row's, none lost.
    assert_eq!(ids.len(), expected.len(), "{ids:?}");
    for e in &entries {
        let hex: String = e
            .notification
            .notification_id
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert!(
            ids.contains_key(&format!("<{hex}@cert.example>")),
            "{hex} never arrived: {ids:?}"
        );
    }
    // At most the one in flight at the kill came twice, under the same Message-ID.
    let twice = ids.values().filter(|n| **n > 1).count();
    assert!(twice <= 1, "{ids:?}");
    env.cleanup().await;
}
