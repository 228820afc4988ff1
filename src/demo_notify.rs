//! The demo's notifications: contacts for its municipalities, two planted incidents (one
//! TLP:AMBER, one TLP:RED), the notifier queuing into the outbox of the embedded store, and a
//! webhook sink on loopback that checks every request's signature as a municipality's receiver
//! would. Nothing leaves the machine.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use varde_core::Kommunenummer;
use varde_notify::config::{Contact, Language, Level, Scope, Target, WebhookFormat};
use varde_notify::deliver::{SIGNATURE_HEADER, TIMESTAMP_HEADER, verify};
use varde_notify::{Notifier, Settings};
use varde_store::Alert;
use varde_store::embedded::EmbeddedStore;
use varde_store::incident::{Change, IncidentChange, Tlp};
use varde_store::outbox::{Outbox, State as Sent};

/// The demo's webhook signing secret (public, like the demo's pseudonymisation key).
const DEMO_WEBHOOK_SECRET: &[u8] = b"varde-demo-webhook-secret";

/// What the sink saw.
#[derive(Default)]
pub struct Sink {
    /// Requests whose signature and timestamp checked out.
    pub accepted: AtomicU64,
    /// Requests refused (401).
    pub refused: AtomicU64,
}

async fn receive(State(sink): State<Arc<Sink>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let now_s = chrono::Utc::now().timestamp();
    if verify(
        DEMO_WEBHOOK_SECRET,
        &header(TIMESTAMP_HEADER),
        &body,
        &header(SIGNATURE_HEADER),
        now_s,
        300,
    ) {
        sink.accepted.fetch_add(1, Ordering::Relaxed);
        StatusCode::NO_CONTENT
    } else {
        sink.refused.fetch_add(1, Ordering::Relaxed);
        StatusCode::UNAUTHORIZED
    }
}

async fn start_sink() -> Result<(SocketAddr, Arc<Sink>)> {
    let sink = Arc::new(Sink::default());
    let app = Router::new()
        .route("/hooks/{tenant}", post(receive))
        .with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("the demo's webhook sink")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the demo's webhook sink stopped");
        }
    });
    Ok((addr, sink))
}

fn contact(
    name: String,
    tenant: Kommunenummer,
    url: String,
    format: WebhookFormat,
    named: bool,
) -> Result<Contact> {
    Ok(Contact {
        name,
        scope: Scope::Municipality(tenant),
        target: Target::Webhook {
            url: url.parse().context("a sink URL")?,
            format,
            secret: Some(DEMO_WEBHOOK_SECRET.to_vec()),
        },
        language: Language::Nb,
        named,
        alerts: Some(Level::High),
        incidents: true,
        campaigns: true,
        collector_silent: None,
    })
}

/// An incident over `alert`'s group, labelled `tlp`, as the dashboard opens one.
fn incident(alert: &Alert, title: &str, tlp: Tlp, n: u8, now_us: i64) -> Vec<IncidentChange> {
    let id = [0xd0, n, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    [
        Change::Opened(title.into()),
        Change::Severity(varde_store::incident::Severity::High),
        Change::Tlp(tlp),
        Change::Category("intrusions/privileged-account-compromise".into()),
        Change::RootCause("malicious-actions".into()),
        Change::LinkGroup {
            dedup_key: alert.dedup_key,
            tenant: alert.tenant.clone(),
            component: alert.component.clone(),
            rule_title: alert.rule_title.clone(),
        },
    ]
    .into_iter()
    .enumerate()
    .map(|(i, change)| IncidentChange {
        change_id: [
            0xd1,
            n,
            u8::try_from(i).unwrap_or(0),
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
        ],
        incident_id: id,
        at_us: now_us,
        actor: "analytiker".into(),
        change,
    })
    .collect()
}

/// Contacts, incidents, the sink and one notifier round; prints the outbox and fails unless
/// every queued message reached the sink with a valid signature. Returns the dashboard's view
/// of the notifier and the notifier, to keep running beside the dashboard.
pub async fn run(
    store: &EmbeddedStore,
    municipalities: &[&str],
    root_alerts: &[&Alert],
    port: u16,
    now_us: i64,
) -> Result<(varde_dashboard::NotifySetup, Notifier<EmbeddedStore>)> {
    let (addr, sink) = start_sink().await?;
    let mut contacts = Vec::new();
    for number in municipalities {
        let k = Kommunenummer::parse(number)?;
        contacts.push(contact(
            format!("IT-vakt {} {}", k.as_str(), k.name()),
            k,
            format!("http://{addr}/hooks/{number}"),
            WebhookFormat::Varde,
            true,
        )?);
    }
    // Bergen's shared chat channel is not a named recipient: TLP:AMBER content is withheld.
    let bergen = Kommunenummer::parse("4601")?;
    contacts.push(contact(
        "Bergen driftskanal".into(),
        bergen,
        format!("http://{addr}/hooks/4601-chat"),
        WebhookFormat::Slack,
        false,
    )?);
    // The planted root logins: an incident for each municipality hit, one of them TLP:RED.
    let mut changes = Vec::new();
    for (i, a) in root_alerts.iter().enumerate() {
        let tlp = if i == 0 { Tlp::Amber } else { Tlp::Red };
        let title = format!(
            "Root login with a password after password guessing in {}",
            Kommunenummer::parse(&a.tenant).map_or("?", |k| k.name())
        );
        changes.extend(incident(
            a,
            &title,
            tlp,
            u8::try_from(i).unwrap_or(0),
            now_us,
        ));
    }
    varde_store::EventStore::write_incident_changes(store, &changes).await?;

    let mut settings = Settings::new(
        format!("http://127.0.0.1:{port}/")
            .parse()
            .context("dashboard URL")?,
        "Varde demo <varde@demo.invalid>"
            .parse()
            .context("sender")?,
    );
    settings.digest_interval = Duration::from_secs(60);
    settings.immediate_interval = Duration::from_secs(10);
    settings.grace = Duration::from_secs(5);
    settings.poll_interval = Duration::from_secs(5);
    settings.retry_min = Duration::from_secs(1);
    settings.retry_max = Duration::from_secs(10);
    let notifier = Notifier::new(store.clone(), settings.clone(), contacts.clone())
        .map_err(anyhow::Error::msg)?;
    // The demo closes the current digest interval at once instead of waiting for its end.
    let interval = 60_000_000;
    let closed_until = (now_us.div_euclid(interval) + 1) * interval;
    let queued = notifier.produce_until(now_us, closed_until).await?;
    let report = notifier.send_due(now_us).await?;
    let entries = store.outbox(0, 1_000).await?;
    println!(
        "\nNotifications ({} contacts; webhooks to the demo's sink on {addr}, each signature checked there):",
        contacts.len()
    );
    println!("  {:<34} {:<10} {:<11} subject", "contact", "kind", "label");
    for e in entries.iter().rev() {
        let n = &e.notification;
        println!(
            "  {:<34} {:<10} {:<11} {}",
            n.contact, n.kind, n.tlp, n.subject
        );
    }
    let accepted = sink.accepted.load(Ordering::Relaxed);
    let refused = sink.refused.load(Ordering::Relaxed);
    let sent = entries
        .iter()
        .filter(|e| matches!(e.state(), Sent::Sent { .. }))
        .count() as u64;
    if queued == 0 || report.sent != queued || sent != queued || accepted != queued || refused > 0 {
        anyhow::bail!(
            "notifications: {queued} queued, {} sent ({} retrying, {} failed), the sink accepted {accepted} and refused {refused}",
            report.sent,
            report.retried,
            report.failed
        );
    }
    println!(
        "{queued} notifications queued in the outbox and delivered; the sink accepted all {accepted} signatures."
    );
    Ok((
        varde_dashboard::NotifySetup {
            settings,
            contacts,
            contacts_path: None,
        },
        notifier,
    ))
}

/// Writes the notification-stage report of every incident in `store` to `dir` in every format
/// (and PDF when Chromium is at hand); returns the files written.
pub async fn write_reports(
    store: &EmbeddedStore,
    dir: &std::path::Path,
    now_us: i64,
) -> Result<Vec<std::path::PathBuf>> {
    use varde_report::{Format, Issuer, Stage};
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let changes = varde_store::EventStore::incident_changes(store, None, None).await?;
    let mut written = Vec::new();
    for i in varde_store::incident::Incident::fold(&changes) {
        let Some(report) = varde_report::assemble(
            store,
            None,
            i.incident_id,
            Stage::Notification,
            now_us,
            Issuer {
                name: "Varde demo CERT".into(),
                contact: "cert@demo.invalid".into(),
            },
        )
        .await?
        else {
            continue;
        };
        let id: String = i.incident_id.iter().map(|b| format!("{b:02x}")).collect();
        for f in Format::ALL {
            let path = dir.join(format!("{id}.notification.{}", f.extension()));
            std::fs::write(&path, f.render(&report))
                .with_context(|| format!("writing {}", path.display()))?;
            written.push(path);
        }
        let pdf = dir.join(format!("{id}.notification.pdf"));
        match crate::report_cmd::pdf(&Format::Html.render(&report), &pdf) {
            Ok(()) => written.push(pdf),
            Err(e) => println!("  (no PDF: {e})"),
        }
    }
    Ok(written)
}
