//! Notifications delivered to real servers on loopback: aiosmtpd (PyPI) with STARTTLS, implicit
//! TLS and AUTH from a CA made in the test, one that defers and one that rejects; and a webhook
//! receiver in Python that verifies the signature and the replay window as docs/notifications.md
//! tells a municipality to, one that fails with 500 and one that hangs. Messages are parsed by
//! Python's e-mail parser, not by Varde. The store is the embedded one (the outbox's contract on
//! ClickHouse is `store/tests/clickhouse_store.rs`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use varde_core::{AlertId, EventId, Kommunenummer};
use varde_notify::config::{
    Contact, Language, Level, Scope, SmtpSettings, SmtpTls, Target, WebhookFormat,
};
use varde_notify::{Notifier, Settings};
use varde_store::embedded::EmbeddedStore;
use varde_store::outbox::{Outbox, OutboxEntry, State};
use varde_store::{Alert, EventStore};
use varde_testkit::process::Guard;
use varde_testkit::{free_port, workspace_root};

fn peer(name: &str) -> PathBuf {
    workspace_root().join("notify/tests/peers").join(name)
}

/// Starts a Python peer and waits for its "ready".
fn start(script: &str, args: &[String]) -> Guard {
    let mut child = Command::new("python3")
        .arg(peer(script))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3 (deploy/dev/services.sh up tools installs aiosmtpd)");
    let out = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .expect("ready line");
    assert_eq!(
        line.trim(),
        "ready",
        "{script} did not start (is aiosmtpd installed? deploy/dev/services.sh up tools)"
    );
    Guard(child)
}

/// A throwaway CA and a certificate for localhost/127.0.0.1 signed by it.
fn test_ca(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Varde notification test CA");
    let ca_key = KeyPair::generate().expect("key");
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &ca, &ca_key).expect("server cert");
    let (ca_path, cert_path, key_path) = (
        dir.join("ca.pem"),
        dir.join("server.crt"),
        dir.join("server.key"),
    );
    std::fs::write(&ca_path, ca.pem()).expect("ca");
    std::fs::write(&cert_path, cert.pem()).expect("cert");
    std::fs::write(&key_path, key.serialize_pem()).expect("key");
    (ca_path, cert_path, key_path)
}

fn settings(smtp: Option<SmtpSettings>) -> Settings {
    let mut s = Settings::new(
        "https://varde.cert.example/".parse().expect("url"),
        "Varde CERT <varde@cert.example>".parse().expect("from"),
    );
    s.smtp = smtp;
    s.grace = Duration::ZERO;
    s.retry_min = Duration::from_secs(1);
    s.retry_max = Duration::from_secs(2);
    s.webhook_timeout = Duration::from_secs(2);
    s
}

fn email_contact(name: &str, tenant: &str, address: &str, named: bool) -> Contact {
    Contact {
        name: name.into(),
        scope: Scope::Municipality(Kommunenummer::parse(tenant).expect("k")),
        target: Target::Email(address.parse().expect("address")),
        language: Language::En,
        named,
        alerts: Some(Level::High),
        incidents: true,
        campaigns: true,
        collector_silent: None,
    }
}

fn webhook_contact(name: &str, port: u16, format: WebhookFormat, secret: &str) -> Contact {
    Contact {
        name: name.into(),
        scope: Scope::Municipality(Kommunenummer::parse("0301").expect("k")),
        target: Target::Webhook {
            url: format!("http://127.0.0.1:{port}/varde")
                .parse()
                .expect("url"),
            format,
            secret: Some(secret.as_bytes().to_vec()),
        },
        language: Language::Nb,
        named: true,
        alerts: Some(Level::High),
        incidents: true,
        campaigns: true,
        collector_silent: None,
    }
}

/// Alert `n` of `tenant`, detected at `detect_us`.
fn alert(tenant: &str, n: u8, title: &str, detect_us: i64) -> Alert {
    Alert {
        alert_id: AlertId([n; 16]),
        dedup_key: [n; 16],
        tenant: tenant.into(),
        component: "idporten".into(),
        rule_id: format!("rule-{}", title.len()),
        rule_title: title.into(),
        rule_level: "high".into(),
        rule_tags: vec![],
        event_id: EventId([n; 16]),
        event_time_us: detect_us - 5_000_000,
        detect_time_us: detect_us,
        source_kind: "auth".into(),
        host: format!("srv.{tenant}"),
        matched: vec![],
    }
}

/// Oslo's three alerts and Bergen's one, detected in the digest interval before `now`.
async fn planted(store: &EmbeddedStore, now: i64) {
    let interval = 900_000_000;
    let t = (now.div_euclid(interval) - 1) * interval + 60_000_000;
    store
        .write_alerts(&[
            alert("0301", 1, "Failed ID-porten logins from one address", t),
            alert("0301", 2, "Failed ID-porten logins from one address", t + 1),
            alert("0301", 3, "Root login with a password", t + 2),
            alert("4601", 4, "Bergen's own rule", t + 3),
        ])
        .await
        .expect("alerts");
}

/// A fresh store with the planted alerts, a notifier over it for `contacts`, and the
/// notifications of `now` queued.
async fn queued(
    settings: Settings,
    contacts: Vec<Contact>,
    now: i64,
) -> (EmbeddedStore, Notifier<EmbeddedStore>) {
    let store = EmbeddedStore::new();
    planted(&store, now).await;
    let notifier = Notifier::new(store.clone(), settings, contacts).expect("notifier");
    notifier.produce(now).await.expect("produce");
    (store, notifier)
}

fn received(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some(ext))
        .collect();
    files.sort();
    files
}

fn parse_eml(files: &[PathBuf]) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .arg(peer("parse_eml.py"))
        .args(files)
        .output()
        .expect("python3");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect()
}

async fn outbox(store: &EmbeddedStore) -> Vec<OutboxEntry> {
    store.outbox(0, 1000).await.expect("outbox")
}

fn hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn digests_go_out_over_starttls_with_auth_each_municipality_its_own_within_tlp() {
    let dir = tempfile::tempdir().expect("dir");
    let mail = dir.path().join("mail");
    std::fs::create_dir(&mail).expect("mail dir");
    let (ca, cert, key) = test_ca(dir.path());
    let port = free_port();
    let _smtp = start(
        "smtp_sink.py",
        &[
            "--port".into(),
            port.to_string(),
            "--dir".into(),
            mail.display().to_string(),
            "--tls".into(),
            "starttls".into(),
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
            "--auth".into(),
            "varde:s3cret-pass".into(),
        ],
    );
    let password = dir.path().join("smtp-password");
    std::fs::write(&password, "s3cret-pass\n").expect("password");
    let smtp = SmtpSettings {
        host: "localhost".into(),
        port: Some(port),
        tls: SmtpTls::Starttls,
        username: Some("varde".into()),
        password_env: None,
        password_file: Some(password),
        ca_file: Some(ca),
        timeout_s: 10,
    };
    let store = EmbeddedStore::new();
    let now = varde_notify::run::now_us();
    planted(&store, now).await;
    let notifier = Notifier::new(
        store.clone(),
        settings(Some(smtp)),
        vec![
            email_contact("Oslo IT-vakt", "0301", "Kari <it-vakt@oslo.example>", true),
            // Bergen's shared mailbox is not a named recipient: TLP:AMBER content is withheld.
            email_contact("Bergen postmottak", "4601", "post@bergen.example", false),
        ],
    )
    .expect("notifier");
    assert_eq!(notifier.produce(now).await.expect("produce"), 2);
    // Queued again (a restart): nothing new.
    assert_eq!(notifier.produce(now).await.expect("produce"), 0);
    let report = notifier.send_due(now).await.expect("send");
    assert_eq!((report.sent, report.retried, report.failed), (2, 0, 0));
    // Sent ones are not sent again.
    let again = notifier.send_due(now + 3_600_000_000).await.expect("send");
    assert_eq!(again.sent, 0);

    let files = received(&mail, "eml");
    assert_eq!(files.len(), 2, "{files:?}");
    let envelopes: Vec<serde_json::Value> = received(&mail, "json")
        .iter()
        .map(|p| serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json"))
        .collect();
    assert!(
        envelopes
            .iter()
            .all(|e| e["tls"] == true && e["auth"] == true),
        "{envelopes:?}"
    );
    let mails = parse_eml(&files);
    let entries = outbox(&store).await;
    for m in &mails {
        let to = m["to"].as_str().expect("to");
        let subject = m["subject"].as_str().expect("subject");
        let text = m["text"].as_str().expect("a text part");
        let html = m["html"].as_str().expect("an HTML part");
        assert!(subject.starts_with("[TLP:AMBER] Varde: "), "{subject}");
        assert!(text.starts_with("TLP:AMBER"), "{text}");
        assert!(html.contains("TLP:AMBER"));
        // The Message-ID is the outbox row's id: the idempotency key.
        let row = entries
            .iter()
            .find(|e| to.contains(&e.notification.target.replace("Kari <", "").replace('>', "")))
            .expect("its outbox row");
        assert_eq!(
            m["message_id"].as_str(),
            Some(format!("<{}@cert.example>", hex(&row.notification.notification_id)).as_str())
        );
        if to.contains("oslo") {
            assert!(text.contains("Root login with a password"), "{text}");
            assert!(text.contains("2 × Failed ID-porten logins"), "{text}");
            assert!(text.contains("What to do first"));
            assert!(!text.contains("Bergen") && !text.contains("4601"), "{text}");
        } else {
            assert!(to.contains("post@bergen.example"), "{to}");
            assert!(text.contains("Log in to Varde"), "{text}");
            assert!(!text.contains("Bergen's own rule") && !html.contains("Bergen's own rule"));
            assert!(!text.contains("Oslo"), "{text}");
        }
    }
    assert!(
        entries
            .iter()
            .all(|e| matches!(e.state(), State::Sent { .. }))
    );
}

#[tokio::test]
async fn implicit_tls_works_a_deferring_server_is_retried_and_a_rejecting_one_fails_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let (ca, cert, key) = test_ca(dir.path());
    let smtp = |port: u16| SmtpSettings {
        host: "localhost".into(),
        port: Some(port),
        tls: SmtpTls::Implicit,
        username: None,
        password_env: None,
        password_file: None,
        ca_file: Some(ca.clone()),
        timeout_s: 10,
    };
    let sink = |extra: &[&str]| {
        let mail = tempfile::tempdir_in(dir.path()).expect("mail");
        let port = free_port();
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--dir".into(),
            mail.path().display().to_string(),
            "--tls".into(),
            "implicit".into(),
            "--cert".into(),
            cert.display().to_string(),
            "--key".into(),
            key.display().to_string(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        (start("smtp_sink.py", &args), mail, port)
    };

    // Deferred twice (451), then accepted: three tries, one message.
    let (_guard, mail, port) = sink(&["--defer", "2"]);
    let now = varde_notify::run::now_us();
    let (store, notifier) = queued(
        settings(Some(smtp(port))),
        vec![email_contact("Oslo", "0301", "it@oslo.example", true)],
        now,
    )
    .await;
    let r1 = notifier.send_due(now).await.expect("try 1");
    assert_eq!((r1.sent, r1.retried), (0, 1));
    // Not due again before its wait.
    assert_eq!(notifier.send_due(now).await.expect("early").retried, 0);
    let later = now + 3_600_000_000;
    assert_eq!(notifier.send_due(later).await.expect("try 2").retried, 1);
    assert_eq!(
        notifier
            .send_due(later + 3_600_000_000)
            .await
            .expect("try 3")
            .sent,
        1
    );
    let entry = &outbox(&store).await[0];
    assert_eq!(entry.attempts.len(), 3);
    assert!(entry.attempts[0].error.contains("451"), "{entry:?}");
    assert!(entry.attempts[0].next_us > entry.attempts[0].at_us);
    assert_eq!(received(mail.path(), "eml").len(), 1);

    // Rejected (550): failed at the first try, with the server's words.
    let (_guard, mail, port) = sink(&["--reject"]);
    let (store, notifier) = queued(
        settings(Some(smtp(port))),
        vec![email_contact("Oslo", "0301", "nobody@oslo.example", true)],
        now,
    )
    .await;
    assert_eq!(notifier.send_due(now).await.expect("try").failed, 1);
    let entry = &outbox(&store).await[0];
    assert!(matches!(entry.state(), State::Failed { .. }));
    assert!(entry.attempts[0].error.contains("550"), "{entry:?}");
    assert!(received(mail.path(), "eml").is_empty());

    // Nobody listening (the connection is refused): tried again later.
    let closed = free_port();
    let (store, notifier) = queued(
        settings(Some(smtp(closed))),
        vec![email_contact("Oslo", "0301", "it@oslo.example", true)],
        now,
    )
    .await;
    assert_eq!(notifier.send_due(now).await.expect("try").retried, 1);
    let entry = &outbox(&store).await[0];
    assert!(
        matches!(entry.state(), State::Queued { tries: 1, .. }),
        "{entry:?}"
    );

    // Deferred for ever: failed after max_attempts.
    let (_guard, _mail, port) = sink(&["--defer", "100"]);
    let store = EmbeddedStore::new();
    planted(&store, now).await;
    let mut s = settings(Some(smtp(port)));
    s.max_attempts = 2;
    let notifier = Notifier::new(
        store.clone(),
        s,
        vec![email_contact("Oslo", "0301", "it@oslo.example", true)],
    )
    .expect("notifier");
    notifier.produce(now).await.expect("produce");
    assert_eq!(notifier.send_due(now).await.expect("1").retried, 1);
    assert_eq!(notifier.send_due(later).await.expect("2").failed, 1);
    let entry = &outbox(&store).await[0];
    assert!(
        entry.attempts[1].error.contains("after 2 tries"),
        "{entry:?}"
    );
}

#[tokio::test]
async fn webhooks_are_signed_verified_by_the_receiver_and_retried_through_500_and_timeouts() {
    let dir = tempfile::tempdir().expect("dir");
    let secret = "municipal-webhook-secret-0301";
    let receiver = |extra: &[&str]| {
        let got = tempfile::tempdir_in(dir.path()).expect("dir");
        let port = free_port();
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--dir".into(),
            got.path().display().to_string(),
            "--secret".into(),
            secret.into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        (start("webhook_receiver.py", &args), got, port)
    };
    let now = varde_notify::run::now_us();
    let later = now + 3_600_000_000;

    // Fails twice with 500, hangs once past the sender's timeout, then accepts.
    let (_guard, got, port) = receiver(&["--fail", "2", "--hang", "1"]);
    let store = EmbeddedStore::new();
    planted(&store, now).await;
    let notifier = Notifier::new(
        store.clone(),
        settings(None),
        vec![webhook_contact(
            "Oslo hook",
            port,
            WebhookFormat::Varde,
            secret,
        )],
    )
    .expect("notifier");
    assert_eq!(notifier.produce(now).await.expect("produce"), 1);
    assert_eq!(notifier.send_due(now).await.expect("1 hangs").retried, 1);
    assert_eq!(notifier.send_due(later).await.expect("2: 500").retried, 1);
    assert_eq!(
        notifier
            .send_due(later + 3_600_000_000)
            .await
            .expect("3: 500")
            .retried,
        1
    );
    assert_eq!(
        notifier
            .send_due(later + 7_200_000_000)
            .await
            .expect("4")
            .sent,
        1
    );
    let entry = &outbox(&store).await[0];
    let errors: Vec<&str> = entry.attempts.iter().map(|a| a.error.as_str()).collect();
    assert!(
        errors[1].contains("500") && errors[2].contains("500"),
        "{errors:?}"
    );
    let files = received(got.path(), "json");
    assert_eq!(files.len(), 1);
    let delivery: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&files[0]).expect("read")).expect("json");
    assert_eq!(
        delivery["delivery"].as_str(),
        Some(hex(&entry.notification.notification_id).as_str())
    );
    let body: serde_json::Value =
        serde_json::from_str(delivery["body"].as_str().expect("body")).expect("body json");
    assert_eq!(body["schema"], "varde.notification/v1");
    assert_eq!(body["tlp"], "TLP:AMBER");
    assert_eq!(body["municipality"]["number"], "0301");
    assert_eq!(body["counts"].as_array().map(Vec::len), Some(2));
    // Bergen's number nowhere but, by chance, in the hashed id or the creation time's digits.
    let mut content = body.clone();
    if let Some(fields) = content.as_object_mut() {
        fields.remove("id");
        fields.remove("created");
    }
    assert!(!content.to_string().contains("4601"), "{content}");

    // A wrong secret: the receiver refuses (401) and the notification fails at once.
    let (_guard, got, port) = receiver(&[]);
    let store = EmbeddedStore::new();
    planted(&store, now).await;
    let notifier = Notifier::new(
        store.clone(),
        settings(None),
        vec![webhook_contact(
            "Oslo hook",
            port,
            WebhookFormat::Varde,
            "not-the-municipality-secret",
        )],
    )
    .expect("notifier");
    notifier.produce(now).await.expect("produce");
    assert_eq!(notifier.send_due(now).await.expect("try").failed, 1);
    assert!(
        outbox(&store).await[0].attempts[0].error.contains("401"),
        "{:?}",
        outbox(&store).await
    );
    assert_eq!(
        std::fs::read_to_string(got.path().join("refused"))
            .expect("refused")
            .trim(),
        "1"
    );

    // Chat tools: Mattermost/Slack and Teams shapes.
    let (_guard, got, port) = receiver(&[]);
    let mut slack = webhook_contact("Oslo Mattermost", port, WebhookFormat::Slack, secret);
    slack.language = Language::En;
    let teams = webhook_contact("Oslo Teams", port, WebhookFormat::Teams, secret);
    let (_store, notifier) = queued(settings(None), vec![slack, teams], now).await;
    assert_eq!(notifier.send_due(now).await.expect("send").sent, 2);
    let bodies: Vec<serde_json::Value> = received(got.path(), "json")
        .iter()
        .map(|p| {
            let d: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(p).expect("read")).expect("json");
            serde_json::from_str(d["body"].as_str().expect("body")).expect("body json")
        })
        .collect();
    assert!(bodies.iter().any(|b| {
        b["text"]
            .as_str()
            .is_some_and(|t| t.contains("[TLP:AMBER]"))
    }));
    assert!(bodies.iter().any(|b| {
        b["attachments"][0]["contentType"] == "application/vnd.microsoft.card.adaptive"
            && b["attachments"][0]["content"]["body"][0]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("[TLP:AMBER]"))
    }));
}

/// One web access event of collector `collector` of `tenant`, received at `at_us`.
fn event_at(tenant: &str, collector: &str, at_us: i64) -> varde_core::Envelope {
    use varde_core::{BatchBuilder, CollectorId, Envelope, Event, SourceKind};
    let id = CollectorId::new(collector).expect("collector id");
    let k = Kommunenummer::parse(tenant).expect("kommunenummer");
    let mut b = BatchBuilder::new(SourceKind::WebAccess, k, id.clone(), 1);
    b.push(&Event {
        event_time_us: at_us,
        receive_time_us: at_us,
        host: Some("web".into()),
        severity: None,
        message: Some("GET / HTTP/1.1".into()),
        typed: vec![],
        attrs: vec![],
    })
    .expect("push");
    Envelope::new(SourceKind::WebAccess, k, id, 1, b.finish().expect("batch")).expect("envelope")
}

/// Incidents, silent collectors and contacts edited while the notifier runs: a shared mailbox
/// (not named) gets a TLP:GREEN incident's content and only a notice of a TLP:RED one; a
/// collector silent past the contact's limit is told once; a contact added to the file is used
/// from the next round on, and a file that no longer checks out changes nothing.
#[tokio::test]
async fn incidents_silent_collectors_and_an_edited_contacts_file() {
    use varde_store::incident::{Change, IncidentChange, Severity, Tlp};
    let dir = tempfile::tempdir().expect("dir");
    let store = EmbeddedStore::new();
    let now = varde_notify::run::now_us();
    let minute = 60_000_000;
    // Oslo's web collector sent last two hours ago; Bergen's a minute ago.
    store
        .write_envelopes(&[
            event_at("0301", "k0301-web", now - 120 * minute),
            event_at("4601", "k4601-web", now - minute),
        ])
        .await
        .expect("events");
    let incident = |n: u8, title: &str, tlp: Tlp| -> Vec<IncidentChange> {
        [
            Change::Opened(title.into()),
            Change::Severity(Severity::High),
            Change::Tlp(tlp),
            Change::LinkGroup {
                dedup_key: [n; 16],
                tenant: "0301".into(),
                component: String::new(),
                rule_title: "Root login".into(),
            },
            // The CERT's list of further municipalities: never shown to Oslo.
            Change::Municipalities(vec!["4601".into()]),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, change)| IncidentChange {
            change_id: [
                n,
                u8::try_from(i).expect("small"),
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
                1,
            ],
            incident_id: [n; 16],
            at_us: now - 5 * minute,
            actor: "kari".into(),
            change,
        })
        .collect()
    };
    store
        .write_incident_changes(
            &[
                incident(1, "Phishing wave against the city's staff", Tlp::Green),
                incident(2, "Ransomware on the file servers", Tlp::Red),
            ]
            .concat(),
        )
        .await
        .expect("incidents");
    let path = dir.path().join("contacts.toml");
    std::fs::write(
        &path,
        "[[contact]]\nname = \"Oslo postmottak\"\ntenant = \"0301\"\nemail = \"post@oslo.example\"\nlanguage = \"en\"\ncollector_silent_min = 60\n",
    )
    .expect("contacts");
    let contacts = varde_notify::config::load_contacts(&path).expect("contacts");
    let notifier = Notifier::new(store.clone(), settings(None), contacts)
        .expect("notifier")
        .with_contacts_file(path.clone());
    assert_eq!(notifier.produce(now).await.expect("produce"), 3);
    let rows = outbox(&store).await;
    let text_of = |kind: &str, needle: &str| {
        rows.iter()
            .find(|e| e.notification.kind == kind && e.notification.text.contains(needle))
            .map(|e| e.notification.clone())
    };
    let green = text_of("incident", "Phishing wave").expect("the TLP:GREEN incident");
    assert!(
        green.subject.starts_with("[TLP:GREEN] Varde: New incident"),
        "{}",
        green.subject
    );
    assert!(
        !green.text.contains("4601") && !green.text.contains("Bergen"),
        "{}",
        green.text
    );
    let red = text_of("incident", "An incident needs your attention").expect("a notice");
    assert!(red.subject.starts_with("[TLP:RED] "));
    assert!(
        rows.iter()
            .all(|e| !e.notification.text.contains("Ransomware"))
    );
    let silent = text_of("collector_silent", "k0301-web").expect("Oslo's silent collector");
    assert!(silent.subject.starts_with("[TLP:GREEN] "));
    assert!(
        rows.iter()
            .all(|e| !e.notification.text.contains("k4601-web"))
    );
    // Nothing new while nothing changed.
    assert_eq!(notifier.produce(now + 1).await.expect("again"), 0);

    // A second contact in the file: used from the next round on.
    std::fs::write(
        &path,
        format!(
            "{}\n[[contact]]\nname = \"Oslo IT\"\ntenant = \"0301\"\nemail = \"it@oslo.example\"\nnamed = true\n",
            std::fs::read_to_string(&path).expect("read")
        ),
    )
    .expect("contacts");
    bump_mtime(&path);
    notifier.reload_contacts();
    assert_eq!(notifier.contacts().len(), 2);
    assert_eq!(
        notifier.produce(now + 2).await.expect("new contact"),
        2,
        "its two incidents"
    );
    // A broken file: the contacts in use stay.
    std::fs::write(&path, "[[contact]]\nname = \"x\"\n").expect("broken");
    bump_mtime(&path);
    notifier.reload_contacts();
    assert_eq!(notifier.contacts().len(), 2);
}

/// Moves a file's modification time on, so a change within the same second is seen.
fn bump_mtime(path: &Path) {
    let f = std::fs::File::options()
        .append(true)
        .open(path)
        .expect("open");
    let written = f.metadata().and_then(|m| m.modified()).expect("mtime");
    f.set_modified(written + Duration::from_secs(1))
        .expect("set mtime");
}
