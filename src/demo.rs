//! `varde demo`: the whole path in one process, on bundled sample telemetry, with no external
//! service. Collectors parse and batch each municipality's logs, publish envelopes on the
//! in-process bus, and the same pipeline loop that production runs detects with Varde's rule
//! pack (through DataFusion) and stores events and alerts in the embedded store.
//!
//! Besides the everyday sample, a few municipalities see an attack scenario: a root login with
//! a password over SSH right after a password-guessing burst. The demo checks that exactly those
//! logins raise alerts.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::watch;
use varde_collector::edge::{EdgeSource, edge_event};
use varde_collector::privacy::{Privacy, PrivacyKey, PrivacyPolicy};
use varde_collector::sample::sample_lines;
use varde_collector::shipper::{SequenceSource, Shipper, ShipperSettings, Stats as CollectorStats};
use varde_core::{CollectorId, Kommunenummer};
use varde_pipeline::detect::{DetectionConfig, Detector};
use varde_pipeline::{LoopSettings, Stats as PipelineStats};
use varde_store::embedded::EmbeddedStore;
use varde_store::{AlertQuery, EventQuery, EventStore};
use varde_transport::events_topic;
use varde_transport::memory::MemoryBus;

/// The municipalities in the sample, with the size of their sample.
const SAMPLE: &[(&str, usize)] = &[
    ("0301", 600),
    ("4601", 400),
    ("5001", 300),
    ("1508", 150),
    ("1804", 120),
    ("3403", 90),
];

const PREFIX: &str = "varde.";
/// The demo's pseudonymisation key. A real collector creates a random key per municipality and
/// keeps it on its own disk (`[privacy] key_file`); this one is public and only for sample data.
const DEMO_PRIVACY_KEY: [u8; 32] = [0x44; 32];

/// Municipalities where the scenario plays, with how many root password logins succeed.
const SCENARIO: &[(&str, usize)] = &[("4601", 2), ("1804", 1)];

/// Municipalities whose web servers get the same known exploited path from one address within
/// a minute: a campaign (the pack's `web_exploit_campaign` correlation fires once, on the third).
const CAMPAIGN: &[&str] = &["0301", "4601", "5001"];

/// Municipalities whose citizen portal sees a failed ID-porten login from one address within a
/// minute: a spray (the pack's `idporten_spray_campaign` fires once, on the third).
const SPRAY: &[&str] = &["1508", "1804", "3403"];

/// The pack's spray correlation (`rules/sigma/oidc_idporten_spray_campaign.yml`).
const SPRAY_RULE: &str = "8f3a6d12-7b4e-4c1a-9e5d-2c6b0a8f4e10";

/// A failed ID-porten login to `tenant`'s citizen portal from the spraying address, at `t_us`.
fn failed_login(tenant: &str, t_us: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(t_us).unwrap_or_default();
    format!(
        "{{\"time\":\"{}\",\"client_id\":\"k{tenant}-innbyggerportal\",\"service\":\"byggesak\",\"acr\":\"idporten-loa-substantial\",\"outcome\":\"failure\",\"ip\":\"192.0.2.200\"}}",
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    )
}

/// The municipality one of whose servers sees a burst of failed root logins: twelve within
/// twelve seconds (the pack's `sshd_admin_login_burst` fires once, on the tenth).
const BURST: (&str, usize) = ("5001", 12);

/// The pack's burst correlation (`rules/sigma/lnx_sshd_admin_login_burst.yml`).
const BURST_RULE: &str = "9b4e1f73-2c8d-4a6e-b5f0-1d3a7c9e2b68";

/// A failed root password login on `tenant`'s SSH server, at `t_us`.
fn failed_root_login(tenant: &str, t_us: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(t_us).unwrap_or_default();
    format!(
        "<38>1 {} ssh01.k{tenant}.kommune.no sshd 4243 - - Failed password for root from 198.51.100.99 port 50200 ssh2",
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    )
}

/// The pack's campaign correlation (`rules/sigma/web_exploit_campaign.yml`).
const CAMPAIGN_RULE: &str = "9c4e1b27-5d3a-4f6e-8b2c-1a7d0e5f3c08";

/// An nginx access line requesting Fortinet's exploited `fgt_lang` path, at `t_us`.
fn exploit_request(t_us: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(t_us).unwrap_or_default();
    format!(
        "203.0.113.66 - - [{}] \"GET /remote/fgt_lang?lang=/../../../..//////////dev/cmdb/sslvpn_websession HTTP/1.1\" 404 153 \"-\" \"python-requests/2.31.0\"",
        t.format("%d/%b/%Y:%H:%M:%S +0000")
    )
}

/// The sshd line of a successful root login with a password, from `ip`.
fn root_login(tenant: &str, ip: &str, t_us: i64) -> String {
    let t = chrono::DateTime::from_timestamp_micros(t_us).unwrap_or_default();
    format!(
        "<38>1 {} ssh01.k{tenant}.kommune.no sshd 4242 - - Accepted password for root from {ip} port 50122 ssh2",
        t.format("%Y-%m-%dT%H:%M:%S%.3fZ")
    )
}

/// Enrols a demo collector named `name` of `tenant` the way a municipality's is, in-process: the
/// CERT issues a token (`varde admin collector add`), the collector makes its key and request
/// from it (`varde-collector enrol`), the CERT redeems it (`POST /api/enrol`); only the HTTPS hop
/// between them is left out. Returns the id the CERT gave and the collector's key.
async fn enrol(
    store: &EmbeddedStore,
    tenant: Kommunenummer,
    name: &str,
) -> Result<(CollectorId, Arc<varde_core::CollectorKey>)> {
    let now = varde_collector::sources::now_us();
    let enrolment = varde_dashboard::enrol::Enrolment {
        config: varde_dashboard::enrol::EnrolmentConfig {
            url: "https://127.0.0.1".into(),
            cert_file: None,
            brokers: "in-process".into(),
            topic_prefix: PREFIX.into(),
            kafka_properties: Default::default(),
            token_hours: 1,
            rotation_overlap_hours: 24,
        },
        // No HTTPS hop in the demo: nothing presents a certificate to pin.
        pin: varde_core::enrolment::fingerprint(b"varde demo"),
    };
    let (_, token) = varde_dashboard::enrol::issue_token(
        store,
        &enrolment,
        tenant,
        name,
        3_600_000_000,
        "admin:demo",
        now,
    )
    .await?;
    let prepared = varde_collector::enrol::prepare(&token, "demo", now)?;
    let answer = varde_dashboard::enrol::redeem(store, &enrolment, &prepared.request, now).await?;
    anyhow::ensure!(answer.tenant == tenant, "enrolled for {}", answer.tenant);
    Ok((answer.collector_id, Arc::new(prepared.key)))
}

/// Runs the demo, prints what happened, then serves the dashboard over the demo's store on
/// `127.0.0.1:port` until interrupted, with the path still running and a root login planted
/// every `live_every_s` seconds (0: none).
pub async fn run(port: u16, live_every_s: u64) -> Result<()> {
    let started = Instant::now();
    let now_us = varde_collector::sources::now_us();
    let bus = MemoryBus::new();
    let store = EmbeddedStore::new();

    println!(
        "Varde demo: collectors -> in-process bus -> pipeline -> embedded store (no external service)\n"
    );
    println!(
        "{:<28} {:<16} {:>6} {:>8} {:>13}",
        "municipality", "collector", "lines", "batches", "parse errors"
    );
    let mut topics = Vec::new();
    let mut total_lines = 0usize;
    for (number, n) in SAMPLE {
        let tenant = Kommunenummer::parse(number).context("sample municipality")?;
        let (collector, key) = enrol(&store, tenant, "demo 01").await?;
        let stats = Arc::new(CollectorStats::default());
        let mut shipper = Shipper::new(
            bus.clone(),
            ShipperSettings {
                collector_id: collector.clone(),
                tenant,
                topic_prefix: PREFIX.into(),
                max_rows: 256,
                max_delay: Duration::from_secs(1),
                key,
            },
            SequenceSource::in_memory(),
            stats.clone(),
        );
        let mut lines = sample_lines(number, *n, now_us);
        let logins = SCENARIO
            .iter()
            .find(|(t, _)| t == number)
            .map_or(0, |(_, k)| *k);
        for i in 0..logins {
            lines.push(root_login(
                number,
                &format!("198.51.100.{}", 10 + i),
                now_us - 60_000_000,
            ));
        }
        if let Some(i) = CAMPAIGN.iter().position(|t| t == number) {
            lines.push(exploit_request(now_us - 50_000_000 + i as i64 * 1_000_000));
        }
        if let Some(i) = SPRAY.iter().position(|t| t == number) {
            lines.push(failed_login(
                number,
                now_us - 40_000_000 + i as i64 * 1_000_000,
            ));
        }
        if *number == BURST.0 {
            for i in 0..BURST.1 {
                lines.push(failed_root_login(
                    number,
                    now_us - 30_000_000 + i as i64 * 1_000_000,
                ));
            }
        }
        let n = &lines.len();
        // The collector's edge: syslog parsing, typed columns (web access, sshd/sudo, ID-porten
        // logins), pseudonymisation under a demo key.
        let edge = EdgeSource::new(Privacy::new(
            &PrivacyKey::from_bytes(DEMO_PRIVACY_KEY),
            PrivacyPolicy::default(),
        ));
        for line in lines {
            let (kind, event) = edge_event(&line, now_us, &edge);
            shipper.push(kind, &event).await;
        }
        let edge_counts = edge.stats().snapshot();
        let parse_errors = edge_counts.unparsed_lines + edge_counts.parse_failures;
        shipper.flush_all().await;
        total_lines += n;
        topics.push(events_topic(PREFIX, tenant));
        println!(
            "{:<28} {:<16} {:>6} {:>8} {:>13}",
            format!("{number} {}", tenant.name()),
            collector.as_str(),
            CollectorStats::get(&stats.events_out),
            CollectorStats::get(&stats.batches_out),
            parse_errors
        );
    }
    // Everything is published; the pipeline drains the bus and stops when it is closed.
    bus.close();

    let stats = PipelineStats::default();
    let mut detection = DetectionConfig::default();
    detection.placeholders.insert(
        "municipal_oidc_clients".into(),
        SAMPLE.iter().map(|(t, _)| format!("k{t}-portal")).collect(),
    );
    detection.placeholders.insert(
        "high_assurance_services".into(),
        vec!["innbyggerportal".into()],
    );
    detection.reload_interval_s = 0;
    let (mut detector, report) = Detector::from_config(&detection)?;
    if !report.errors.is_empty() {
        anyhow::bail!("Varde's rule pack did not load: {:?}", report.errors);
    }
    let mut subscriber = bus.subscribe("varde-pipeline", &topics);
    let (_stop, shutdown) = watch::channel(false);
    varde_pipeline::run(
        &mut subscriber,
        &store,
        &mut detector,
        LoopSettings::default(),
        &stats,
        shutdown,
    )
    .await;
    println!(
        "\npipeline: {} envelopes, {} rows written, {} rejected; {} rules (Varde's pack), {} alerts",
        PipelineStats::get(&stats.envelopes),
        PipelineStats::get(&stats.rows_written),
        stats.rejected().values().sum::<u64>(),
        report.loaded,
        PipelineStats::get(&stats.alerts_written),
    );

    println!("\nstored events per municipality and source kind:");
    let mut stored_total = 0;
    for c in store.event_counts().await? {
        let name = Kommunenummer::parse(&c.tenant).map_or("?", |k| k.name());
        println!(
            "  {} {:<24} {:<12} {:>6}",
            c.tenant, name, c.source_kind, c.events
        );
        stored_total += c.events;
    }
    println!("\na few stored events of 0301 Oslo:");
    let oslo = Kommunenummer::parse("0301")?;
    for e in store
        .events(&EventQuery {
            tenant: Some(oslo),
            limit: 5,
        })
        .await?
    {
        let app = e
            .fields
            .iter()
            .find(|(k, _)| k == "app_name")
            .map_or("-", |(_, v)| v.as_str());
        println!(
            "  {} id {}… {} {}: {}",
            varde_core::time::format_rfc3339(e.event_time_us),
            e.event_id.get(..8).unwrap_or(""),
            e.host,
            app,
            e.message
        );
    }
    println!(
        "\n{total_lines} lines in, {stored_total} events stored, in {:.2} s.",
        started.elapsed().as_secs_f64()
    );
    if stored_total != total_lines as u64 {
        anyhow::bail!("{total_lines} lines went in but {stored_total} events were stored");
    }
    println!("\nalerts per municipality and rule:");
    let mut root_alerts = 0u64;
    let root_rule = detector
        .rules()
        .rules()
        .iter()
        .find(|r| r.source.ends_with("lnx_sshd_root_password_login.yml"))
        .map(varde_rules::datafusion::rule_key)
        .unwrap_or_default();
    for c in store.alert_counts().await? {
        let name = Kommunenummer::parse(&c.tenant).map_or("?", |k| k.name());
        let title = detector
            .rules()
            .rules()
            .iter()
            .find(|r| r.meta.id == c.rule_id)
            .map(|r| r.meta.title.clone())
            .or_else(|| {
                detector
                    .rules()
                    .correlations()
                    .iter()
                    .find(|(_, k)| k.id == c.rule_id)
                    .map(|(_, k)| k.title.clone())
            })
            .unwrap_or_else(|| c.rule_id.clone());
        println!("  {} {:<24} {:<52} {:>4}", c.tenant, name, title, c.alerts);
        if c.rule_id == root_rule {
            root_alerts += c.alerts;
        }
    }
    for a in store
        .alerts(&AlertQuery {
            tenant: None,
            limit: 3,
        })
        .await?
    {
        println!(
            "  alert {}… [{}] {} on {}: {}",
            a.alert_id.to_string().get(..8).unwrap_or(""),
            a.rule_level,
            a.rule_title,
            a.host,
            a.matched
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
    }
    let expected: usize = SCENARIO.iter().map(|(_, k)| k).sum();
    if root_alerts != expected as u64 {
        anyhow::bail!(
            "{expected} root password logins were planted but {root_alerts} alerts were raised"
        );
    }
    println!("\nThe {expected} planted root password logins raised exactly {root_alerts} alerts.");
    // The campaign: one correlation alert when the third municipality is hit.
    let all = store
        .alerts(&AlertQuery {
            tenant: None,
            limit: 10_000,
        })
        .await?;
    // Each planted pattern: one correlation alert per municipality it touched.
    let planted: [(&str, String, &[&str]); 3] = [
        (
            CAMPAIGN_RULE,
            format!(
                "The same exploited path requested in {} municipalities",
                CAMPAIGN.len()
            ),
            CAMPAIGN,
        ),
        (
            SPRAY_RULE,
            format!(
                "Failed ID-porten logins from one address in {} municipalities",
                SPRAY.len()
            ),
            SPRAY,
        ),
        (
            BURST_RULE,
            format!(
                "{} failed root logins on one server of {}",
                BURST.1,
                Kommunenummer::parse(BURST.0).map_or("?", |k| k.name())
            ),
            &[BURST.0],
        ),
    ];
    for (rule, what, touched) in planted {
        let mut raised: Vec<&str> = all
            .iter()
            .filter(|a| a.rule_id == rule)
            .map(|a| a.tenant.as_str())
            .collect();
        raised.sort_unstable();
        if raised != touched {
            anyhow::bail!(
                "{what} raised correlation alerts for {raised:?}, not one for each of {touched:?}"
            );
        }
        let first = all.iter().find(|a| a.rule_id == rule);
        let title = first.map_or("", |a| a.rule_title.as_str());
        // A campaign is read back as one: every row of its window, as its page shows them.
        if touched.len() > 1 {
            let window = first.and_then(|a| {
                Some((
                    a.matched_field("correlation.window")?.to_owned(),
                    a.matched_field("correlation.first_us")?
                        .parse::<i64>()
                        .ok()?,
                ))
            });
            let Some((window, first_us)) = window else {
                anyhow::bail!("{what}: its correlation alert names no window");
            };
            let mut rows: Vec<String> = store
                .campaign_alerts(rule, &window, first_us, 1_000)
                .await?
                .into_iter()
                .map(|a| a.tenant)
                .collect();
            rows.sort_unstable();
            if rows != touched {
                anyhow::bail!("{what}: its campaign reads back as {rows:?}, not {touched:?}");
            }
        }
        println!(
            "{what} raised one correlation alert per municipality touched ({}): {title}.",
            touched.join(", ")
        );
    }
    // Notifications: an incident for each municipality of the scenario, digests of the alerts,
    // all through the outbox to a webhook sink on loopback.
    let mut root: Vec<&varde_store::Alert> = Vec::new();
    for (tenant, _) in SCENARIO {
        if let Some(a) = all
            .iter()
            .find(|a| a.rule_id == root_rule && a.tenant == *tenant)
        {
            root.push(a);
        }
    }
    let numbers: Vec<&str> = SAMPLE.iter().map(|(n, _)| *n).collect();
    let (notify, notifier) = crate::demo_notify::run(
        &store,
        &numbers,
        &root,
        port,
        varde_collector::sources::now_us(),
    )
    .await?;
    // The reports of the planted incidents, in every format, where the user can open them.
    let reports_dir =
        std::env::temp_dir().join(format!("varde-demo-reports-{}", std::process::id()));
    let files =
        crate::demo_notify::write_reports(&store, &reports_dir, varde_collector::sources::now_us())
            .await?;
    println!(
        "\nreports: {} files of the incidents' notification-stage reports (STIX 2.1, MISP, CSV, HTML, PDF) in {}",
        files.len(),
        reports_dir.display()
    );
    // The notifier keeps running beside the dashboard: live alerts reach the sink in one-minute
    // digests. Its stop signal is never sent: it ends with the process.
    let (keep, shutdown) = watch::channel(false);
    tokio::spawn(async move {
        let _keep = keep;
        notifier.run(shutdown).await;
    });
    if live_every_s > 0 {
        live(&store, detector, live_every_s);
        println!(
            "\nlive: collectors keep sending; a root login with a password is planted every {live_every_s} s (--live-every)"
        );
    }
    serve_dashboard(store, port, notify).await
}

/// Keeps the path running while the dashboard serves: a pipeline over a bus of its own into the
/// same store, and collectors (enrolled as `demo live`, so their event ids are new) sending a
/// little of each municipality's everyday sample and, in turn, one planted root login every
/// `every_s` seconds. Runs until the process ends.
fn live(store: &EmbeddedStore, mut detector: Detector, every_s: u64) {
    let bus = MemoryBus::new();
    let topics: Vec<String> = SAMPLE
        .iter()
        .filter_map(|(t, _)| Kommunenummer::parse(t).ok())
        .map(|t| events_topic(PREFIX, t))
        .collect();
    let mut subscriber = bus.subscribe("varde-pipeline-live", &topics);
    let pipeline_store = store.clone();
    tokio::spawn(async move {
        let stats = PipelineStats::default();
        let (_stop, shutdown) = watch::channel(false);
        varde_pipeline::run(
            &mut subscriber,
            &pipeline_store,
            &mut detector,
            LoopSettings::default(),
            &stats,
            shutdown,
        )
        .await;
    });
    let shipper_store = store.clone();
    tokio::spawn(async move {
        let edge = EdgeSource::new(Privacy::new(
            &PrivacyKey::from_bytes(DEMO_PRIVACY_KEY),
            PrivacyPolicy::default(),
        ));
        let mut shippers = Vec::new();
        for (number, _) in SAMPLE {
            let Ok(tenant) = Kommunenummer::parse(number) else {
                continue;
            };
            let Ok((collector, key)) = enrol(&shipper_store, tenant, "demo live").await else {
                continue;
            };
            let shipper = Shipper::new(
                bus.clone(),
                ShipperSettings {
                    collector_id: collector,
                    tenant,
                    topic_prefix: PREFIX.into(),
                    max_rows: 256,
                    max_delay: Duration::from_secs(1),
                    key,
                },
                SequenceSource::in_memory(),
                Arc::new(CollectorStats::default()),
            );
            shippers.push((*number, shipper));
        }
        let mut turn = 0usize;
        loop {
            tokio::time::sleep(Duration::from_secs(every_s)).await;
            let now_us = varde_collector::sources::now_us();
            let planted = turn % shippers.len().max(1);
            for (i, (number, shipper)) in shippers.iter_mut().enumerate() {
                let mut lines = sample_lines(number, 5, now_us);
                if i == planted {
                    lines.push(root_login(number, "198.51.100.99", now_us));
                }
                for line in lines {
                    let (kind, event) = edge_event(&line, now_us, &edge);
                    shipper.push(kind, &event).await;
                }
                shipper.flush_all().await;
            }
            turn += 1;
        }
    });
}

/// The dashboard over the demo's store, with three accounts whose passwords are made for this
/// run and printed: an analyst of the CERT, an admin (who reads the audit log) and a user of
/// Bergen municipality (where the scenario played).
async fn serve_dashboard(
    store: EmbeddedStore,
    port: u16,
    notify: varde_dashboard::NotifySetup,
) -> Result<()> {
    let admin = varde_dashboard::new_password().map_err(anyhow::Error::msg)?;
    let analyst = varde_dashboard::new_password().map_err(anyhow::Error::msg)?;
    let bergen = varde_dashboard::new_password().map_err(anyhow::Error::msg)?;
    let account = |name: &str, role, tenant: Option<&str>, password: &str| -> Result<_> {
        Ok(varde_dashboard::Account {
            name: name.into(),
            role,
            tenant: tenant.map(Kommunenummer::parse).transpose()?,
            password_hash: varde_dashboard::hash_password(password).map_err(anyhow::Error::msg)?,
        })
    };
    let accounts = vec![
        account("admin", varde_dashboard::Role::Admin, None, &admin)?,
        account("analytiker", varde_dashboard::Role::Analyst, None, &analyst)?,
        account(
            "bergen",
            varde_dashboard::Role::Municipality,
            Some("4601"),
            &bergen,
        )?,
    ];
    let app = varde_dashboard::Dashboard::new(
        store,
        accounts,
        varde_dashboard::Settings {
            // Plain HTTP on loopback: a Secure cookie would never come back.
            secure_cookies: false,
            notify: Some(notify),
            ..varde_dashboard::Settings::default()
        },
    )
    .router();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("listening on 127.0.0.1:{port} (choose another with --port)"))?;
    let addr = listener.local_addr()?;
    println!("\ndashboard: http://{addr}/ (Ctrl-C stops the demo)");
    println!("  analyst of the CERT:      analytiker / {analyst}");
    println!("  admin (audit log):        admin / {admin}");
    println!("  user of 4601 Bergen:      bergen / {bergen}");
    use std::io::Write as _;
    std::io::stdout().flush()?;
    axum::serve(listener, app)
        .with_graceful_shutdown(varde_transport::shutdown_signal())
        .await
        .context("serving the dashboard")?;
    println!("demo stopped");
    Ok(())
}
