//! The dashboard in-process (`tower::ServiceExt::oneshot`) against the real ClickHouse of
//! `deploy/dev/services.sh up`: login, sessions, tenant isolation of the alert queue and the
//! alert page, and triage (CSRF, roles, the append-only history, statuses), also under hostile
//! requests.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use varde_core::{AlertId, BatchBuilder, CollectorId, Envelope, Event, EventId, SourceKind, Value};
use varde_dashboard::{Account, Dashboard, Role, Settings, hash_password};
use varde_store::{Alert, EventStore};
use varde_testkit::TestEnv;

fn alert(tenant: &str, n: u8, title: &str) -> Alert {
    Alert {
        alert_id: AlertId([n; 16]),
        dedup_key: [n; 16],
        tenant: tenant.to_owned(),
        component: "idporten".to_owned(),
        rule_id: format!("rule-{n}"),
        rule_title: title.to_owned(),
        rule_level: "high".to_owned(),
        rule_tags: vec![],
        event_id: EventId([n; 16]),
        event_time_us: 1_764_000_000_000_000 + i64::from(n),
        detect_time_us: 1_764_000_001_000_000,
        source_kind: "auth".to_owned(),
        host: format!("host-{tenant}"),
        matched: vec![],
    }
}

/// The page with the values of its CSRF fields blanked: a token is random hex and may hold
/// any four digits, so a test that asserts a municipality number is absent reads this.
fn without_csrf(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut rest = page;
    let field = r#"name="csrf" value=""#;
    while let Some(at) = rest.find(field) {
        let (head, tail) = rest.split_at(at + field.len());
        out.push_str(head);
        rest = tail.find('"').map_or("", |end| &tail[end..]);
    }
    out.push_str(rest);
    out
}

fn account(name: &str, role: Role, tenant: Option<&str>, password: &str) -> Account {
    Account {
        name: name.to_owned(),
        role,
        tenant: tenant.map(|t| varde_core::Kommunenummer::parse(t).expect("kommunenummer")),
        password_hash: hash_password(password).expect("hash"),
    }
}

/// The dashboard with three accounts: `oslo` (municipality 0301, password `oslo-pass`),
/// `analyst` (`cert-pass`) and `admin` (`admin-pass`); plain-HTTP cookies.
fn app(store: varde_store::clickhouse::ClickHouseStore, settings: Settings) -> Router {
    Dashboard::new(
        store,
        vec![
            account("oslo", Role::Municipality, Some("0301"), "oslo-pass"),
            account("analyst", Role::Analyst, None, "cert-pass"),
            account("admin", Role::Admin, None, "admin-pass"),
        ],
        Settings {
            secure_cookies: false,
            ..settings
        },
    )
    .router()
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, Option<String>, String) {
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let cookie = resp
        .headers()
        .get(header::SET_COOKIE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let location = resp
        .headers()
        .get(header::LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    (status, cookie.or(location), text)
}

async fn login(app: &Router, name: &str, password: &str) -> (StatusCode, Option<String>) {
    let body = format!("name={name}&password={password}");
    let (status, cookie, _) = send(
        app,
        Request::post("/login")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(body))
            .expect("request"),
    )
    .await;
    let session = cookie.and_then(|c| {
        c.split(';')
            .next()
            .filter(|kv| kv.starts_with("varde_session="))
            .map(str::to_owned)
    });
    (status, session)
}

async fn get(app: &Router, path: &str, session: Option<&str>) -> (StatusCode, String) {
    let mut req = Request::get(path);
    if let Some(s) = session {
        req = req.header(header::COOKIE, s);
    }
    let (status, _, body) = send(app, req.body(Body::empty()).expect("request")).await;
    (status, body)
}

/// POSTs a form; the status and the `Location` (or cookie) answered.
async fn post(app: &Router, path: &str, session: &str, form: &str) -> (StatusCode, String) {
    let (status, location, body) = send(
        app,
        Request::post(path)
            .header(header::COOKIE, session)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form.to_owned()))
            .expect("request"),
    )
    .await;
    (status, location.unwrap_or(body))
}

/// The CSRF token a page's forms carry.
fn csrf_of(page: &str) -> String {
    let start = page
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field in {page}"))
        + r#"name="csrf" value=""#.len();
    page[start..].split('"').next().expect("token").to_owned()
}

#[tokio::test]
async fn a_municipality_sees_its_own_alerts_whatever_it_asks_for() {
    let env = TestEnv::new("dashaccess");
    own_alerts_whatever_it_asks_for(env.store().await).await;
    env.cleanup().await;
}

/// The same through the distributed tables of the local ClickHouse cluster
/// (`deploy/dev/cluster.sh`, 2 shards x 2 replicas): the tenant condition is in the store's
/// query, whichever shard holds the rows.
#[tokio::test]
async fn a_municipality_sees_its_own_alerts_on_a_cluster_too() {
    let env = TestEnv::new("dashaccess_cluster");
    let store = env.cluster_store(1).await;
    own_alerts_whatever_it_asks_for(store.clone()).await;
    store.drop_database().await.expect("drop on the cluster");
}

async fn own_alerts_whatever_it_asks_for(store: varde_store::clickhouse::ClickHouseStore) {
    store
        .write_alerts(&[
            alert("0301", 1, "Oslo root login"),
            alert("0301", 2, "Oslo path traversal"),
            alert("4601", 3, "Bergen <script>alert(1)</script>"),
            // The same rule on the same host again, an hour later: one group of two.
            Alert {
                alert_id: AlertId([4; 16]),
                event_id: EventId([4; 16]),
                event_time_us: 1_764_003_600_000_000,
                ..alert("0301", 1, "Oslo root login")
            },
        ])
        .await
        .expect("alerts");
    let app = app(store, Settings::default());

    // Not logged in: to the login page.
    let (status, _) = get(&app, "/alerts", None).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // Wrong password and unknown name: the same answer.
    assert_eq!(
        login(&app, "oslo", "guess").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&app, "nobody", "guess").await.0,
        StatusCode::UNAUTHORIZED
    );
    // A forged session cookie is no session.
    let (status, _) = get(&app, "/alerts", Some("varde_session=00ff")).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    let (status, oslo) = login(&app, "oslo", "oslo-pass").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let oslo = oslo.expect("a session cookie");
    for path in [
        "/alerts",
        "/alerts?tenant=4601",
        "/alerts?tenant=",
        "/alerts?tenant=0301",
    ] {
        let (status, page) = get(&app, path, Some(&oslo)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(page.contains("Oslo root login"), "{path}");
        assert!(page.contains("Oslo path traversal"), "{path}");
        assert!(
            !page.contains("Bergen"),
            "{path}: another tenant's alert shown"
        );
        assert!(!page.contains("<td>4601</td>"), "{path}");
    }
    // Hostile parameters are refused, not passed on.
    for path in [
        "/alerts?tenant=0301'%20OR%20'1'='1",
        "/alerts?tenant=9999",
        "/alerts?tenant=4601;DROP",
    ] {
        let (status, page) = get(&app, path, Some(&oslo)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {page}");
        assert!(!page.contains("Bergen"));
    }

    // Grouped by dedup key: the repeated root login is one row of two, seen most recently
    // (times as Python's datetime.utcfromtimestamp gives them).
    let (_, page) = get(&app, "/alerts", Some(&oslo)).await;
    assert_eq!(page.matches("<tr data-alert-id").count(), 2, "{page}");
    assert!(page.contains("2 av 2 grupper (3 varsler)"), "{page}");
    let first_row = page.split("<tr data-alert-id").nth(1).expect("a row");
    assert!(first_row.contains("data-count=\"2\""), "{first_row}");
    assert!(first_row.contains("Oslo root login"), "{first_row}");
    assert!(first_row.contains("2025-11-24 17:00:00"), "{first_row}");
    assert!(first_row.contains("2025-11-24 16:00:00"), "{first_row}");

    let (_, analyst) = login(&app, "analyst", "cert-pass").await;
    let analyst = analyst.expect("a session cookie");
    let (_, all) = get(&app, "/alerts", Some(&analyst)).await;
    assert!(all.contains("Oslo root login") && all.contains("Bergen"));
    // Titles are data: escaped, never markup.
    assert!(
        all.contains("Bergen &lt;script&gt;alert(1)&lt;/script&gt;"),
        "{all}"
    );
    assert!(!all.contains("<script>"));
    let (_, bergen) = get(&app, "/alerts?tenant=4601", Some(&analyst)).await;
    assert!(bergen.contains("Bergen") && !bergen.contains("Oslo root login"));

    // Logout needs the session's own token (another site cannot log anyone out) ...
    let (status, _) = post(&app, "/logout", &oslo, "csrf=00ff").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, page) = get(&app, "/alerts", Some(&oslo)).await;
    let (status, _) = post(&app, "/logout", &oslo, &format!("csrf={}", csrf_of(&page))).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // ... after which the cookie is dead.
    let (status, _) = get(&app, "/alerts", Some(&oslo)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn repeated_failed_logins_of_a_name_are_refused_for_a_while() {
    let env = TestEnv::new("dashlimit");
    let store = env.store().await;
    let app = app(
        store,
        Settings {
            login_attempts: 3,
            ..Settings::default()
        },
    );
    for _ in 0..3 {
        assert_eq!(
            login(&app, "oslo", "guess").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    // Now even the right password is refused for that name ...
    let (status, session) = login(&app, "oslo", "oslo-pass").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(session.is_none());
    // ... and unknown names are limited the same way, so guessing names gains nothing.
    for _ in 0..3 {
        assert_eq!(login(&app, "nobody", "x").await.0, StatusCode::UNAUTHORIZED);
    }
    assert_eq!(
        login(&app, "nobody", "x").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another name is not affected.
    assert_eq!(
        login(&app, "analyst", "cert-pass").await.0,
        StatusCode::SEE_OTHER
    );
    env.cleanup().await;
}

/// One sshd event of Oslo's, as the collector's edge leaves it: the identity number and the
/// citizen's address already replaced by pseudonyms (shapes as `varde_collector::privacy` makes
/// them), the server's own address kept.
fn oslo_login_event() -> Envelope {
    let collector = CollectorId::new("k0301-ssh").expect("collector id");
    let oslo = varde_core::Kommunenummer::parse("0301").expect("Oslo");
    let mut b = BatchBuilder::new(SourceKind::WebAccess, oslo, collector.clone(), 1);
    b.push(&Event {
        event_time_us: 1_764_000_000_000_000,
        receive_time_us: 1_764_000_000_500_000,
        host: Some("ssh01.oslo.kommune.no".into()),
        severity: Some(6),
        message: Some(
            "Accepted password for fnr:0123abcd-ef456789 from 240.10.20.30 port 50122 ssh2".into(),
        ),
        typed: vec![
            ("status", Value::UInt(200)),
            ("client_ip", Value::Str("240.10.20.30".into())),
        ],
        attrs: vec![("server".into(), "10.1.2.3".into())],
    })
    .expect("push");
    Envelope::new(
        SourceKind::WebAccess,
        oslo,
        collector,
        1,
        b.finish().expect("batch"),
    )
    .expect("envelope")
}

#[tokio::test]
async fn the_alert_page_shows_the_event_with_pseudonyms_marked_and_only_to_its_tenant() {
    let env = TestEnv::new("dashdetail");
    let store = env.store().await;
    store
        .write_envelopes(&[oslo_login_event()])
        .await
        .expect("event");
    let oslo_alert = Alert {
        event_id: EventId::derive("k0301-ssh", 1, 0),
        matched: vec![("client_ip".into(), "240.10.20.30".into())],
        rule_tags: vec!["attack.t1078".into()],
        ..alert("0301", 1, "Oslo root login")
    };
    let bergen_alert = alert("4601", 3, "Bergen secret rule");
    store
        .write_alerts(&[oslo_alert.clone(), bergen_alert.clone()])
        .await
        .expect("alerts");
    let app = app(store, Settings::default());
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");

    let own = format!("/alerts/{}", oslo_alert.alert_id);
    let (status, page) = get(&app, &own, Some(&oslo)).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains("Oslo root login"));
    assert!(page.contains("attack.t1078"));
    // The message's two pseudonyms, the client_ip field's and the matched value's are marked;
    // the server's own address is not.
    assert_eq!(page.matches("(pseudonym)").count(), 4, "{page}");
    assert!(
        page.contains("<code>fnr:0123abcd-ef456789</code>"),
        "{page}"
    );
    assert!(page.contains("10.1.2.3") && !page.contains("<code>10.1.2.3</code>"));
    assert!(page.contains("1 av dem pseudonymer"), "{page}");
    assert!(page.contains("Ingen har behandlet"));
    // A municipality account gets no triage controls.
    assert!(!page.contains("/alerts/triage"), "{page}");

    // Another tenant's alert, by its id in any spelling, is not found, and tells nothing.
    let other = bergen_alert.alert_id.to_string();
    for path in [
        format!("/alerts/{other}"),
        format!("/alerts/{}", other.to_uppercase()),
        format!("/alerts/{other}?tenant=4601"),
        "/alerts/zz".into(),
        "/alerts/0301'%20OR%201=1".into(),
        format!("/alerts/{}", "0".repeat(32)),
    ] {
        let (status, page) = get(&app, &path, Some(&oslo)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.contains("Bergen"), "{path}");
    }
    let (status, _) = get(&app, &own, None).await;
    assert_eq!(status, StatusCode::SEE_OTHER, "not logged in");

    // The CERT sees both; the Bergen alert's event is not stored, which the page says.
    let (status, page) = get(&app, &format!("/alerts/{other}"), Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains("Bergen secret rule"));
    assert!(page.contains("ikke lenger lagret"));
    assert!(page.contains(r#"action="/alerts/triage""#));
    env.cleanup().await;
}

#[tokio::test]
async fn triage_is_the_analysts_append_only_and_scoped_by_the_store() {
    let env = TestEnv::new("dashtriage");
    triage_append_only_and_scoped(env.store().await).await;
    env.cleanup().await;
}

/// Triage through the distributed tables of the local ClickHouse cluster (2 shards x 2
/// replicas), the dashboard talking to the first replica of the first shard.
#[tokio::test]
async fn triage_is_the_analysts_append_only_and_scoped_by_the_store_on_a_cluster_too() {
    let env = TestEnv::new("dashtriage_cluster");
    let store = env.cluster_store(0).await;
    triage_append_only_and_scoped(store.clone()).await;
    store.drop_database().await.expect("drop on the cluster");
}

async fn triage_append_only_and_scoped(store: varde_store::clickhouse::ClickHouseStore) {
    store
        .write_alerts(&[
            alert("0301", 1, "Oslo root login"),
            Alert {
                alert_id: AlertId([2; 16]),
                event_id: EventId([2; 16]),
                ..alert("0301", 1, "Oslo root login")
            },
            alert("4601", 3, "Bergen path traversal"),
        ])
        .await
        .expect("alerts");
    let app = app(store.clone(), Settings::default());
    let oslo_key = "01".repeat(16);
    let bergen_key = "03".repeat(16);
    let keys = [[1u8; 16], [3u8; 16]];

    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let (_, queue) = get(&app, "/alerts", Some(&analyst)).await;
    assert!(queue.contains("2 av 2 grupper (3 varsler)"), "{queue}");
    let csrf = csrf_of(&queue);

    // Without the session's token, or with another's, nothing is written.
    let ack = format!("action=acknowledge&key={oslo_key}");
    for form in [
        ack.clone(),
        format!("{ack}&csrf="),
        format!("{ack}&csrf={}", "0".repeat(64)),
    ] {
        let (status, _) = post(&app, "/alerts/triage", &analyst, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{form}");
    }
    // A municipality account may not triage, even with its own valid token.
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");
    let (_, oslo_queue) = get(&app, "/alerts", Some(&oslo)).await;
    assert!(!oslo_queue.contains("/alerts/triage"));
    let oslo_csrf = csrf_of(&oslo_queue);
    let (status, _) = post(
        &app,
        "/alerts/triage",
        &oslo,
        &format!("csrf={oslo_csrf}&action=acknowledge&key={oslo_key}"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Not logged in: to the login page.
    let (status, _) = post(&app, "/alerts/triage", "varde_session=00", &ack).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // Requests the dashboard cannot carry out are refused whole.
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(1)).format("%Y-%m-%d");
    for form in [
        format!("action=resolve&key={oslo_key}"),
        format!("action=resolve&key={oslo_key}&resolution=maybe"),
        format!("action=suppress&key={oslo_key}&until={tomorrow}"),
        format!("action=suppress&key={oslo_key}&reason=noise&until=2020-01-01"),
        format!("action=suppress&key={oslo_key}&reason=noise&until=2099-01-01"),
        format!("action=assign&key={oslo_key}&assignee=oslo"),
        format!("action=delete&key={oslo_key}"),
        "action=acknowledge".to_owned(),
        "action=acknowledge&key=zz".to_owned(),
        format!("action=acknowledge&key={oslo_key}&key={}", "09".repeat(16)),
        format!(
            "action=acknowledge&key={oslo_key}&reason={}",
            "x".repeat(2001)
        ),
    ] {
        let (status, page) = post(
            &app,
            "/alerts/triage",
            &analyst,
            &format!("csrf={csrf}&{form}"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}: {page}");
    }
    assert_eq!(store.triage(None, &keys).await.expect("history"), vec![]);

    // Acknowledge Oslo's group; the way back is only ever a local queue page.
    let (status, location) = post(
        &app,
        "/alerts/triage",
        &analyst,
        &format!("csrf={csrf}&action=acknowledge&key={oslo_key}&back=https://evil.example/"),
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/alerts")
    );
    // Both groups resolved in one go; the tenant of each row is the store's, not the form's.
    let (status, location) = post(
        &app,
        "/alerts/triage",
        &analyst,
        &format!(
            "csrf={csrf}&action=resolve&resolution=false_positive&reason=test+traffic\
             &key={oslo_key}&key={bergen_key}&tenant=9999&back=/alerts?status=resolved"
        ),
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/alerts?status=resolved")
    );
    let history = store.triage(None, &keys).await.expect("history");
    let rows: Vec<(&str, &str, &str, &str)> = history
        .iter()
        .map(|a| {
            (
                a.tenant.as_str(),
                a.kind.as_str(),
                a.before.as_str(),
                a.actor.as_str(),
            )
        })
        .collect();
    assert_eq!(history.len(), 3, "{history:?}");
    assert!(
        rows.contains(&("0301", "acknowledge", "new", "analyst")),
        "{rows:?}"
    );
    assert!(
        rows.contains(&("0301", "resolve", "acknowledged", "analyst")),
        "{rows:?}"
    );
    assert!(
        rows.contains(&("4601", "resolve", "new", "analyst")),
        "{rows:?}"
    );
    assert!(history.iter().all(|a| a.kind.as_str() != "resolve"
        || (a.resolution == Some(varde_store::Resolution::FalsePositive)
            && a.reason == "test traffic")));

    // The queue shows them resolved, out of the open view.
    let (_, open) = get(&app, "/alerts", Some(&analyst)).await;
    assert!(open.contains("0 av 2 grupper"), "{open}");
    let (_, resolved) = get(&app, "/alerts?status=resolved", Some(&analyst)).await;
    assert_eq!(
        resolved.matches(r#"data-status="resolved""#).count(),
        2,
        "{resolved}"
    );
    // Oslo sees its own group's status, not Bergen's.
    let (_, oslo_resolved) = get(&app, "/alerts?status=resolved", Some(&oslo)).await;
    assert_eq!(
        oslo_resolved.matches(r#"data-status="resolved""#).count(),
        1
    );
    assert!(!oslo_resolved.contains("Bergen"));
    let (status, _) = get(&app, "/alerts?status=deleted", Some(&analyst)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // A new alert in Bergen's resolved group brings it back as new.
    let later = chrono::Utc::now().timestamp_micros() + 2_000_000;
    store
        .write_alerts(&[Alert {
            alert_id: AlertId([5; 16]),
            event_id: EventId([5; 16]),
            detect_time_us: later,
            ..alert("4601", 3, "Bergen path traversal")
        }])
        .await
        .expect("alert");
    let (_, open) = get(&app, "/alerts", Some(&analyst)).await;
    assert!(open.contains("1 av 2 grupper"), "{open}");
    assert!(open.contains(r#"data-status="new""#) && open.contains("Bergen"));

    // Suppressed until tomorrow: out of the open view, still counted; then reopened.
    let (status, _) = post(
        &app,
        "/alerts/triage",
        &analyst,
        &format!(
            "csrf={csrf}&action=suppress&key={bergen_key}&reason=planned+scan&until={tomorrow}"
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, suppressed) = get(&app, "/alerts?status=suppressed", Some(&analyst)).await;
    assert!(
        suppressed.contains("1 av 2 grupper (4 varsler)"),
        "{suppressed}"
    );
    let (status, _) = post(
        &app,
        "/alerts/triage",
        &analyst,
        &format!("csrf={csrf}&action=assign&assignee=analyst&key={bergen_key}"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (_, open) = get(&app, "/alerts?status=assigned", Some(&analyst)).await;
    assert!(open.contains("Tildelt analyst"), "{open}");

    // The alert page shows the group's history, with the status before each action.
    let (_, page) = get(
        &app,
        &format!("/alerts/{}", AlertId([5; 16])),
        Some(&analyst),
    )
    .await;
    assert!(
        page.contains("planned scan") && page.contains("suppressed"),
        "{page}"
    );
    assert_eq!(store.triage(None, &keys).await.expect("history").len(), 5);
}

/// The incident id in a `/incidents/<id>` location.
fn incident_of(location: &str) -> String {
    location
        .strip_prefix("/incidents/")
        .unwrap_or_else(|| panic!("not an incident page: {location}"))
        .to_owned()
}

#[tokio::test]
async fn incidents_are_the_certs_record_and_a_municipality_sees_only_its_part() {
    let env = TestEnv::new("dashincident");
    incidents_cert_record_municipality_part(env.store().await).await;
    env.cleanup().await;
}

/// Incidents through the distributed tables of the local ClickHouse cluster, the dashboard
/// talking to the second shard's first replica: the incident queries' subqueries run GLOBAL.
#[tokio::test]
async fn incidents_are_the_certs_record_and_a_municipality_sees_only_its_part_on_a_cluster_too() {
    let env = TestEnv::new("dashincident_cluster");
    let store = env.cluster_store(2).await;
    incidents_cert_record_municipality_part(store.clone()).await;
    store.drop_database().await.expect("drop on the cluster");
}

async fn incidents_cert_record_municipality_part(store: varde_store::clickhouse::ClickHouseStore) {
    store
        .write_alerts(&[
            alert("0301", 1, "Oslo root login"),
            alert("4601", 3, "Bergen path traversal"),
        ])
        .await
        .expect("alerts");
    let app = app(store.clone(), Settings::default());
    let oslo_key = "01".repeat(16);
    let bergen_key = "03".repeat(16);
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let (_, queue) = get(&app, "/alerts", Some(&analyst)).await;
    let csrf = csrf_of(&queue);
    assert!(queue.contains(r#"formaction="/incidents""#), "{queue}");

    // Opened from the two groups of the queue.
    let (status, location) = post(
        &app,
        "/incidents",
        &analyst,
        &format!(
            "csrf={csrf}&op=create&title=Credential+stuffing&key={oslo_key}&key={bergen_key}\
             &action=acknowledge"
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let id = incident_of(&location);
    let page_of = |id: &str| format!("/incidents/{id}");
    let (status, page) = get(&app, &page_of(&id), Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(">Credential stuffing</h1>"), "{page}");
    // Severity from the groups' rules (level high), TLP:AMBER to begin with, the municipalities
    // and component of the groups.
    assert!(page.contains("Høy") && page.contains("TLP:AMBER"), "{page}");
    assert!(
        page.contains("0301, 4601") && page.contains("idporten"),
        "{page}"
    );

    // Refused whole: no title, an unknown group, a wrong token, a municipality.
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");
    let (_, oslo_queue) = get(&app, "/alerts", Some(&oslo)).await;
    assert!(
        !oslo_queue.contains("formaction"),
        "no incident controls for a municipality"
    );
    let oslo_csrf = csrf_of(&oslo_queue);
    for (session, form, expected) in [
        (
            &analyst,
            format!("csrf={csrf}&op=create&title=+"),
            StatusCode::BAD_REQUEST,
        ),
        (
            &analyst,
            format!("csrf={csrf}&op=create&title=x&key={}", "09".repeat(16)),
            StatusCode::BAD_REQUEST,
        ),
        (
            &analyst,
            format!("csrf={csrf}&op=link&incident={id}"),
            StatusCode::BAD_REQUEST,
        ),
        (
            &analyst,
            format!("csrf={csrf}&op=drop"),
            StatusCode::BAD_REQUEST,
        ),
        (
            &analyst,
            "csrf=00&op=create&title=x".to_owned(),
            StatusCode::FORBIDDEN,
        ),
        (
            &oslo,
            format!("csrf={oslo_csrf}&op=create&title=x"),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let (status, page) = post(&app, "/incidents", session, &form).await;
        assert_eq!(status, expected, "{form}: {page}");
    }
    for form in [
        format!("csrf={oslo_csrf}&op=comment&value=hello"),
        format!("csrf={oslo_csrf}&op=status&value=closed"),
    ] {
        let (status, _) = post(&app, &page_of(&id), &oslo, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{form}");
    }

    // The workflow: each change one row; an unchanged value writes nothing.
    let changes = [
        "op=status&value=containment",
        "op=status&value=containment",
        "op=tlp&value=AMBER%2BSTRICT",
        "op=comment&value=%3Cb%3EBergen%27s+VPN%3C%2Fb%3E+blocked",
        "op=municipalities&value=5001%2C+0301",
        "op=components&component=altinn&component=altinn",
        "op=aware&value=2025-11-24T15%3A00",
        "op=title&value=Credential+stuffing+against+ID-porten",
    ];
    for form in changes {
        let (status, location) = post(
            &app,
            &page_of(&id),
            &analyst,
            &format!("csrf={csrf}&{form}"),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{form}: {location}");
    }
    for form in [
        "op=status&value=done",
        "op=tlp&value=amber",
        "op=severity&value=huge",
        "op=municipalities&value=9999",
        "op=components&component=facebook",
        "op=aware&value=2999-01-01T00%3A00",
        "op=aware&value=yesterday",
        "op=comment&value=+",
        "op=title&value=",
        "op=delete",
    ] {
        let (status, _) = post(
            &app,
            &page_of(&id),
            &analyst,
            &format!("csrf={csrf}&{form}"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{form}");
    }
    let (status, _) = get(&app, &page_of(&"0".repeat(32)), Some(&analyst)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let raw = varde_core::id::parse_hex16(&id).expect("id");
    let rows = store.incident_changes(None, Some(raw)).await.expect("rows");
    let fields: Vec<&str> = rows.iter().map(|r| r.change.field()).collect();
    assert_eq!(
        fields,
        [
            "opened",
            "severity",
            "tlp",
            "link_group",
            "link_group",
            "status",
            "tlp",
            "comment",
            "municipalities",
            "components",
            "aware_at",
            "title"
        ]
    );
    assert!(rows.iter().all(|r| r.actor == "analyst"));
    let (_, page) = get(&app, &page_of(&id), Some(&analyst)).await;
    assert!(
        page.contains("Begrensning") && page.contains("TLP:AMBER+STRICT"),
        "{page}"
    );
    assert!(
        page.contains("&lt;b&gt;Bergen's VPN&lt;/b&gt; blocked"),
        "{page}"
    );
    assert!(
        page.contains("0301, 4601, 5001") && page.contains("altinn, idporten"),
        "{page}"
    );
    assert!(page.contains("2025-11-24 15:00:00"), "{page}");

    // Oslo sees the incident, its own group and the shared facts, not the CERT's comment, not
    // Bergen's group, not who did what, and no controls.
    let (_, list) = get(&app, "/incidents", Some(&oslo)).await;
    assert!(
        list.contains("Credential stuffing against ID-porten"),
        "{list}"
    );
    let (status, page) = get(&app, &page_of(&id), Some(&oslo)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("Begrensning") && page.contains("TLP:AMBER+STRICT"),
        "{page}"
    );
    assert!(
        page.contains("Oslo root login") && page.contains("0301"),
        "{page}"
    );
    for hidden in [
        "Bergen",
        "4601",
        "VPN",
        "analyst",
        "5001",
        "altinn",
        r#"name="op""#,
    ] {
        assert!(!page.contains(hidden), "{hidden} shown to Oslo: {page}");
    }

    // A second incident, then Oslo's group added to it from the queue.
    let (_, location) = post(
        &app,
        "/incidents",
        &analyst,
        &format!("csrf={csrf}&op=create&title=Phishing+wave"),
    )
    .await;
    let second = incident_of(&location);
    let (_, page) = get(&app, &page_of(&second), Some(&analyst)).await;
    assert!(
        page.contains("Middels") && page.contains("Ingen varselgrupper"),
        "{page}"
    );
    let (_, oslo_list) = get(&app, "/incidents", Some(&oslo)).await;
    assert!(!oslo_list.contains("Phishing wave"), "not Oslo's yet");
    let (status, location) = post(
        &app,
        "/incidents",
        &analyst,
        &format!("csrf={csrf}&op=link&incident={second}&key={oslo_key}&key={oslo_key}"),
    )
    .await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, page_of(&second).as_str())
    );
    let (_, oslo_list) = get(&app, "/incidents", Some(&oslo)).await;
    assert!(oslo_list.contains("Phishing wave"), "{oslo_list}");

    // Closed incidents leave the default list.
    post(
        &app,
        &page_of(&second),
        &analyst,
        &format!("csrf={csrf}&op=status&value=closed"),
    )
    .await;
    let (_, open) = get(&app, "/incidents", Some(&analyst)).await;
    assert!(
        open.contains("1 av 2 hendelser") && !open.contains("Phishing wave"),
        "{open}"
    );
    let (_, closed) = get(&app, "/incidents?status=closed", Some(&analyst)).await;
    assert!(closed.contains("Phishing wave"));
    let (status, _) = get(&app, "/incidents?status=deleted", Some(&analyst)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn the_styles_are_served_from_the_binary() {
    let env = TestEnv::new("dashassets");
    let app = app(env.store().await, Settings::default());
    let (status, css) = get(&app, "/assets/designsystemet.css", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(css.contains("@layer ds.components"));
    let (status, theme) = get(&app, "/assets/theme.css", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(theme.contains("--ds-color-"));
    let (status, license) = get(&app, "/assets/LICENSE.designsystemet", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(license.contains("Permission is hereby granted"));
    for path in [
        "/assets/../Cargo.toml",
        "/assets/%2e%2e%2fCargo.toml",
        "/assets/nothing.css",
    ] {
        assert_eq!(
            get(&app, path, None).await.0,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    // The login page links them, with a skip link to the main content.
    let (_, login) = get(&app, "/login", None).await;
    assert!(login.contains(r#"href="/assets/designsystemet.css""#));
    assert!(login.contains(r##"href="#innhold""##) && login.contains(r#"id="innhold""#));
    env.cleanup().await;
}

/// The first server-sent event of `path`.
async fn first_event(app: &Router, path: &str, session: &str) -> (StatusCode, String) {
    let resp = app
        .clone()
        .oneshot(
            Request::get(path)
                .header(header::COOKIE, session)
                .body(Body::empty())
                .expect("request"),
        )
        .await
        .expect("response");
    let status = resp.status();
    if status != StatusCode::OK {
        return (status, String::new());
    }
    assert_eq!(
        resp.headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.as_bytes()),
        Some(&b"text/event-stream"[..])
    );
    let mut body = resp.into_body();
    let frame = body
        .frame()
        .await
        .expect("an event")
        .expect("a frame")
        .into_data()
        .expect("data");
    (status, String::from_utf8_lossy(&frame).into_owned())
}

#[tokio::test]
async fn the_live_queue_counts_new_alerts_in_the_accounts_scope() {
    let env = TestEnv::new("dashlive");
    let store = env.store().await;
    // Both detected at 1_764_000_001 s (see `alert`).
    store
        .write_alerts(&[alert("0301", 1, "Oslo"), alert("4601", 3, "Bergen")])
        .await
        .expect("alerts");
    let app = app(store, Settings::default());
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let before: i64 = 1_764_000_000_500_000;
    for (session, path, expected) in [
        (&analyst, format!("/alerts/stream?since={before}"), 2),
        (
            &analyst,
            format!("/alerts/stream?since={before}&tenant=4601"),
            1,
        ),
        (&oslo, format!("/alerts/stream?since={before}"), 1),
        // A municipality cannot widen its count with a tenant parameter.
        (
            &oslo,
            format!("/alerts/stream?since={before}&tenant=4601"),
            1,
        ),
        (
            &analyst,
            "/alerts/stream?since=1764000001000000".to_owned(),
            0,
        ),
    ] {
        let (status, event) = first_event(&app, &path, session).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(
            event,
            format!("event: alerts\ndata: {{\"new\":{expected}}}\n\n"),
            "{path}"
        );
    }
    let (status, _) = first_event(&app, "/alerts/stream?since=x", &analyst).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = first_event(&app, "/alerts/stream?since=0", "varde_session=00").await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    // The queue page carries what the stream needs and loads the script.
    let (_, page) = get(&app, "/alerts", Some(&oslo)).await;
    assert!(page.contains("data-live-since=") && page.contains(r#"src="/assets/live.js""#));
    assert!(
        page.contains(r#"id="live-notice" role="status" hidden"#),
        "{page}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn english_is_a_choice_that_is_remembered() {
    let env = TestEnv::new("dashlang");
    let store = env.store().await;
    store
        .write_alerts(&[alert("0301", 1, "Oslo root login")])
        .await
        .expect("alerts");
    let app = app(store, Settings::default());
    let session = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let (_, page) = get(&app, "/alerts", Some(&session)).await;
    assert!(page.contains(r#"<html lang="nb""#) && page.contains("Logg ut"));
    assert!(page.contains(r#"href="/lang/en?back=%2Falerts""#), "{page}");

    let (status, cookie, _) = send(
        &app,
        Request::get("/lang/en?back=/alerts%3Fstatus%3Dnew")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let cookie = cookie.expect("a language cookie");
    assert!(cookie.starts_with("varde_lang=en;"), "{cookie}");
    let both = format!("{session}; varde_lang=en");
    let (_, page) = get(&app, "/alerts?status=new", Some(&both)).await;
    assert!(page.contains(r#"<html lang="en""#), "{page}");
    for english in [
        "Alerts – all municipalities",
        "Log out",
        "1 of 1 groups (1 alerts)",
        "Acknowledge",
        "Norsk",
    ] {
        assert!(page.contains(english), "{english}: {page}");
    }
    assert!(!page.contains("Logg ut"));
    // Only the two languages, and only a way back into the dashboard.
    let (status, _) = get(&app, "/lang/de", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, location, _) = send(
        &app,
        Request::get("/lang/nb?back=https://evil.example/")
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    assert!(location.is_some());
    env.cleanup().await;
}

#[tokio::test]
async fn the_audit_log_is_for_admins_and_shows_before_and_after() {
    let env = TestEnv::new("dashaudit");
    let store = env.store().await;
    store
        .write_alerts(&[alert("0301", 1, "Oslo root login")])
        .await
        .expect("alerts");
    let app = app(store, Settings::default());
    let key = "01".repeat(16);
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let (_, queue) = get(&app, "/alerts", Some(&analyst)).await;
    assert!(
        !queue.contains(r#"href="/audit""#),
        "no audit link for an analyst"
    );
    let csrf = csrf_of(&queue);
    for form in [
        format!("action=acknowledge&key={key}"),
        format!("action=resolve&resolution=legitimate&reason=drill&key={key}"),
    ] {
        let (status, _) = post(
            &app,
            "/alerts/triage",
            &analyst,
            &format!("csrf={csrf}&{form}"),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
    let (_, location) = post(
        &app,
        "/incidents",
        &analyst,
        &format!("csrf={csrf}&op=create&title=Drill&key={key}"),
    )
    .await;
    for value in ["containment", "recovery"] {
        let (status, _) = post(
            &app,
            &location,
            &analyst,
            &format!("csrf={csrf}&op=status&value={value}"),
        )
        .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }

    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");
    for session in [&analyst, &oslo] {
        assert_eq!(
            get(&app, "/audit", Some(session)).await.0,
            StatusCode::FORBIDDEN
        );
    }
    assert_eq!(get(&app, "/audit", None).await.0, StatusCode::SEE_OTHER);
    let admin = login(&app, "admin", "admin-pass").await.1.expect("session");
    let (status, log) = get(&app, "/audit", Some(&admin)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        log.contains(r#"href="/audit""#),
        "the admin's menu has the log"
    );
    // Two triage actions, the incident's opening, severity, TLP, link and two status changes.
    assert!(log.contains("8 endringer, nyeste først"), "{log}");
    let rows: Vec<&str> = log.split("<tr>").skip(2).collect();
    // Newest first: recovery after containment, with containment as the value before.
    assert!(
        rows[0].contains("Begrensning") && rows[0].contains("Gjenoppretting"),
        "{}",
        rows[0]
    );
    assert!(
        rows.iter()
            .any(|r| r.contains("<td>new</td><td>acknowledged</td>")),
        "{log}"
    );
    assert!(
        rows.iter().any(
            |r| r.contains("<td>acknowledged</td><td>resolved:legitimate</td>")
                && r.contains("drill")
        ),
        "{log}"
    );
    assert!(rows.iter().all(|r| r.contains("<td>analyst</td>")));
    let (_, nobody) = get(&app, "/audit?actor=nobody", Some(&admin)).await;
    assert!(nobody.contains("0 endringer"), "{nobody}");
    env.cleanup().await;
}

/// A Sigma rule for the hunt form, URL-encoded.
fn rule_form(rule: &str) -> String {
    form_urlencoded::byte_serialize(rule.as_bytes()).collect()
}

#[tokio::test]
async fn hunting_runs_a_sigma_rule_over_the_accounts_own_events() {
    let env = TestEnv::new("dashhunt");
    hunting_own_events(env.store().await).await;
    env.cleanup().await;
}

/// Hunting through the distributed tables of the local ClickHouse cluster, the dashboard
/// talking to the second shard's second replica.
#[tokio::test]
async fn hunting_runs_a_sigma_rule_over_the_accounts_own_events_on_a_cluster_too() {
    let env = TestEnv::new("dashhunt_cluster");
    let store = env.cluster_store(3).await;
    hunting_own_events(store.clone()).await;
    store.drop_database().await.expect("drop on the cluster");
}

async fn hunting_own_events(store: varde_store::clickhouse::ClickHouseStore) {
    store
        .write_envelopes(&[oslo_login_event()])
        .await
        .expect("events");
    let app = app(store, Settings::default());
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let (status, form) = get(&app, "/hunt", Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    let csrf = csrf_of(&form);
    let (_, oslo_form) = get(&app, "/hunt", Some(&oslo)).await;
    let oslo_csrf = csrf_of(&oslo_form);
    assert!(
        !oslo_form.contains("hunt-tenant"),
        "no tenant field for a municipality"
    );

    let rule = |value: &str| {
        rule_form(&format!(
            "title: Hunt\nlogsource:\n  category: webserver\ndetection:\n  selection:\n    server: '{value}'\n  condition: selection\n"
        ))
    };
    // The event is of 2025-11-24 (see `oslo_login_event`).
    let range = "from=2025-11-24&to=2025-11-24";
    let hunt = |session: &str, token: &str, extra: String| {
        let app = app.clone();
        let form = format!("csrf={token}&{range}&{extra}");
        let session = session.to_owned();
        async move { post(&app, "/hunt", &session, &form).await }
    };
    let (status, page) = hunt(&analyst, &csrf, format!("rule={}", rule("10.1.2.3"))).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert!(page.contains(r#"data-hunt-results="1""#), "{page}");
    assert!(
        page.contains("<code>fnr:0123abcd-ef456789</code>"),
        "pseudonyms marked: {page}"
    );
    // Oslo finds its own event; asking for Bergen changes nothing for it.
    let (_, page) = hunt(
        &oslo,
        &oslo_csrf,
        format!("rule={}&tenant=4601", rule("10.1.2.3")),
    )
    .await;
    assert!(page.contains(r#"data-hunt-results="1""#), "{page}");
    // An analyst narrowed to Bergen finds nothing.
    let (_, page) = hunt(
        &analyst,
        &csrf,
        format!("rule={}&tenant=4601", rule("10.1.2.3")),
    )
    .await;
    assert!(page.contains(r#"data-hunt-results="0""#), "{page}");
    // Outside the range: nothing.
    let (_, page) = post(
        &app,
        "/hunt",
        &analyst,
        &format!(
            "csrf={csrf}&from=2025-11-25&to=2025-11-30&rule={}",
            rule("10.1.2.3")
        ),
    )
    .await;
    assert!(page.contains(r#"data-hunt-results="0""#), "{page}");
    // Values that would break hand-made SQL are only values: no error, no match.
    for hostile in [
        "10.1.2.3' OR '1'='1",
        "?",
        "\\' OR 1=1 --",
        "%' ; DROP TABLE events; --",
    ] {
        let (status, page) = hunt(
            &analyst,
            &csrf,
            format!("rule={}", rule(&hostile.replace('\'', "''"))),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{hostile}: {page}");
        assert!(
            page.contains(r#"data-hunt-results="0""#),
            "{hostile}: {page}"
        );
    }
    // CSV of the same hunt.
    let (status, _, csv) = send(
        &app,
        Request::post("/hunt")
            .header(header::COOKIE, &analyst)
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(format!(
                "csrf={csrf}&{range}&format=csv&rule={}",
                rule("10.1.2.3")
            )))
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("a CSV row")).collect();
    assert_eq!(rows.len(), 1, "{csv}");
    assert_eq!(&rows[0][1], "0301");
    assert!(rows[0][5].contains("fnr:0123abcd-ef456789"));
    // Refused with the reason: not a rule, two dates reversed, a wrong token.
    for (form, expected) in [
        (
            format!("rule={}", rule_form("title: x")),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("rule={}", rule_form(": : :")),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("rule={}&tenant=9999", rule("x")),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (status, page) = hunt(&analyst, &csrf, form.clone()).await;
        assert_eq!(status, expected, "{form}: {page}");
    }
    let (status, _) = post(
        &app,
        "/hunt",
        &analyst,
        &format!(
            "csrf={csrf}&from=2025-11-30&to=2025-11-24&rule={}",
            rule("x")
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = hunt(&analyst, "00", format!("rule={}", rule("x"))).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// The value of `metric` with `labels` in a Prometheus text page, read by a scraper's parser.
fn sample(text: &str, metric: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("/metrics parses as Prometheus text");
    scrape
        .samples
        .iter()
        .find(|s| s.metric == metric && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

#[tokio::test]
async fn the_dashboard_reports_itself_in_metrics_and_health() {
    let env = TestEnv::new("dashmetrics");
    let store = env.store().await;
    store
        .write_alerts(&[alert("0301", 1, "Oslo root login")])
        .await
        .expect("alerts");
    let app = app(store, Settings::default());
    assert_eq!(
        login(&app, "analyst", "wrong").await.0,
        StatusCode::UNAUTHORIZED
    );
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let (_, queue) = get(&app, "/alerts", Some(&analyst)).await;
    let csrf = csrf_of(&queue);
    let key = "01".repeat(16);
    post(
        &app,
        "/alerts/triage",
        &analyst,
        &format!("csrf={csrf}&action=acknowledge&key={key}"),
    )
    .await;
    post(
        &app,
        "/alerts/triage",
        &analyst,
        &format!("csrf=00&action=acknowledge&key={key}"),
    )
    .await;
    get(&app, &format!("/alerts/{}", "0".repeat(32)), Some(&analyst)).await;

    let (status, text) = get(&app, "/metrics", None).await;
    assert_eq!(status, StatusCode::OK);
    let requests = "varde_dashboard_requests_total";
    for (route, code, n) in [
        ("/login", "401", 1.0),
        ("/login", "303", 1.0),
        ("/alerts", "200", 1.0),
        ("/alerts/triage", "303", 1.0),
        ("/alerts/triage", "403", 1.0),
        ("/alerts/:id", "404", 1.0),
    ] {
        assert_eq!(
            sample(&text, requests, &[("route", route), ("status", code)]),
            Some(n),
            "{route} {code}: {text}"
        );
    }
    assert_eq!(
        sample(&text, "varde_dashboard_triage_actions_total", &[]),
        Some(1.0)
    );
    assert_eq!(sample(&text, "varde_dashboard_sessions", &[]), Some(1.0));
    assert_eq!(sample(&text, "varde_dashboard_accounts", &[]), Some(3.0));

    let (status, body) = get(&app, "/health", None).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::OK, r#"{"status":"ok"}"#)
    );
    // A store that does not answer: 503, saying so.
    let mut unreachable = env.clickhouse();
    unreachable.url = format!("http://127.0.0.1:{}", varde_testkit::free_port());
    let down = varde_store::clickhouse::ClickHouseStore::new(&unreachable).expect("store");
    let app = self::app(down, Settings::default());
    let (status, body) = get(&app, "/health", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains(r#""status":"store_unreachable""#), "{body}");
    env.cleanup().await;
}

#[tokio::test]
async fn the_rules_page_shows_the_catalog_and_credits_each_author() {
    let env = TestEnv::new("dashrules");
    let store = env.store().await;
    store
        .write_alerts(&[alert("0301", 1, "Oslo root login")])
        .await
        .expect("alerts");
    let entry = |id: &str, title: &str| varde_store::RuleEntry {
        rule_id: id.into(),
        source: format!("{title}.yml"),
        title: title.into(),
        level: "high".into(),
        status: "test".into(),
        author: "Jane Doe <script>".into(),
        description: "Finds root logins.".into(),
        references: vec!["https://example.org/x".into()],
        kind: "auth".into(),
        text: "title: x\n".into(),
        ..varde_store::RuleEntry::default()
    };
    store
        .write_rules(
            1_764_000_000_000_000,
            &[
                entry("rule-1", "Oslo root login"),
                entry("title:Odd / id ?&", "Odd"),
                varde_store::RuleEntry {
                    source: "broken.yml".into(),
                    error: "yaml: bad indentation".into(),
                    ..varde_store::RuleEntry::default()
                },
            ],
        )
        .await
        .expect("catalog");
    let app = app(store, Settings::default());
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");

    let (status, page) = get(&app, "/rules", Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"data-rules="2""#) && page.contains(r#"data-load-errors="1""#),
        "{page}"
    );
    assert!(page.contains("yaml: bad indentation"));
    let first = page.split("<tr data-rule-id").nth(1).expect("a row");
    assert!(
        first.contains("Oslo root login") && first.contains("<td>1</td>"),
        "most hits first: {first}"
    );
    assert_eq!(
        get(&app, "/rules", Some(&oslo)).await.0,
        StatusCode::FORBIDDEN
    );

    // One rule, for any role: the author credited (escaped), the DRL named.
    for session in [&analyst, &oslo] {
        let (status, page) = get(&app, "/rules/rule-1", Some(session)).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            page.contains("Jane Doe &lt;script&gt;") && page.contains("Detection Rule License"),
            "{page}"
        );
    }
    let (status, _) = get(
        &app,
        "/rules/title%3AOdd%20%2F%20id%20%3F%26",
        Some(&analyst),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "an id with /, ? and & round-trips");
    assert_eq!(
        get(&app, "/rules/nothing", Some(&analyst)).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/rules/broken", Some(&analyst)).await.0,
        StatusCode::NOT_FOUND
    );

    // The alert page names its rule and credits its author.
    let (_, page) = get(&app, &format!("/alerts/{}", AlertId([1; 16])), Some(&oslo)).await;
    assert!(
        page.contains(r#"href="/rules/rule-1""#) && page.contains("Jane Doe"),
        "{page}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn analysts_turn_rules_off_and_on_with_a_reason_and_the_admin_sees_it() {
    let env = TestEnv::new("dashswitch");
    let store = env.store().await;
    store
        .write_rules(
            1_764_000_000_000_000,
            &[varde_store::RuleEntry {
                rule_id: "rule-1".into(),
                source: "a.yml".into(),
                title: "Root login".into(),
                ..varde_store::RuleEntry::default()
            }],
        )
        .await
        .expect("catalog");
    let app = app(store.clone(), Settings::default());
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");
    let admin = login(&app, "admin", "admin-pass").await.1.expect("session");

    let (_, page) = get(&app, "/rules/rule-1", Some(&analyst)).await;
    assert!(page.contains(r#"data-rule-state="on""#), "{page}");
    let token = csrf_of(&page);
    let off = format!("csrf={token}&enabled=false&reason=Noisy+%3Cb%3E+in+Bergen");
    // Refused: no CSRF token, no reason, a value that is neither off nor on, a rule not loaded.
    let refused = [
        (
            "/rules/rule-1/switch",
            "enabled=false&reason=x".to_owned(),
            StatusCode::FORBIDDEN,
        ),
        (
            "/rules/rule-1/switch",
            format!("csrf={token}&enabled=false&reason=+"),
            StatusCode::BAD_REQUEST,
        ),
        (
            "/rules/rule-1/switch",
            format!("csrf={token}&enabled=maybe&reason=x"),
            StatusCode::BAD_REQUEST,
        ),
        ("/rules/nothing/switch", off.clone(), StatusCode::NOT_FOUND),
    ];
    for (path, form, expected) in refused {
        assert_eq!(
            post(&app, path, &analyst, &form).await.0,
            expected,
            "{form}"
        );
    }
    assert!(store.rule_switches().await.expect("read").is_empty());

    // A municipality account is refused, whatever token it brings.
    let (_, own_page) = get(&app, "/rules/rule-1", Some(&oslo)).await;
    assert!(!own_page.contains("data-rule-state"), "{own_page}");
    let oslo_off = format!("csrf={}&enabled=false&reason=x", csrf_of(&own_page));
    assert_eq!(
        post(&app, "/rules/rule-1/switch", &oslo, &oslo_off).await.0,
        StatusCode::FORBIDDEN
    );
    assert!(store.rule_switches().await.expect("read").is_empty());

    // The analyst turns it off: one row, in the list and on the page, reason escaped.
    let (status, location) = post(&app, "/rules/rule-1/switch", &analyst, &off).await;
    assert_eq!(
        (status, location.as_str()),
        (StatusCode::SEE_OTHER, "/rules/rule-1")
    );
    let rows = store.rule_switches().await.expect("read");
    assert_eq!(rows.len(), 1);
    assert!(
        !rows[0].enabled && rows[0].actor == "analyst" && rows[0].reason == "Noisy <b> in Bergen"
    );
    let (_, page) = get(&app, "/rules/rule-1", Some(&analyst)).await;
    assert!(page.contains(r#"data-rule-state="off""#), "{page}");
    assert!(page.contains("Noisy &lt;b&gt; in Bergen"), "{page}");
    let (_, list) = get(&app, "/rules", Some(&analyst)).await;
    assert!(list.contains(r#"data-rule-id="rule-1" data-off"#), "{list}");

    // And on again; the admin's audit log shows both with before and after.
    let on = format!("csrf={token}&enabled=true&reason=Tuned");
    assert_eq!(
        post(&app, "/rules/rule-1/switch", &analyst, &on).await.0,
        StatusCode::SEE_OTHER
    );
    let (_, page) = get(&app, "/rules/rule-1", Some(&analyst)).await;
    assert!(page.contains(r#"data-rule-state="on""#), "{page}");
    assert!(varde_store::disabled_rules(&store.rule_switches().await.expect("read")).is_empty());
    let (_, audit) = get(&app, "/audit", Some(&admin)).await;
    let tuned = audit
        .split("<tr>")
        .find(|r| r.contains("Tuned"))
        .expect("the switch on");
    assert!(tuned.contains("<td>off</td><td>on</td>"), "{tuned}");
    let noisy = audit
        .split("<tr>")
        .find(|r| r.contains("Noisy"))
        .expect("the switch off");
    assert!(noisy.contains("<td>on</td><td>off</td>"), "{noisy}");
    env.cleanup().await;
}

#[tokio::test]
async fn the_overview_counts_alert_volume_in_the_accounts_scope() {
    let env = TestEnv::new("dashoverview");
    let store = env.store().await;
    let now = chrono::Utc::now().timestamp_micros();
    let recent = |tenant: &str, n: u8, hours_ago: i64| Alert {
        event_time_us: now - hours_ago * 3_600_000_000,
        ..alert(tenant, n, "recent")
    };
    store
        .write_alerts(&[
            recent("0301", 1, 1),
            recent("0301", 2, 2),
            recent("4601", 3, 1),
            // Outside the last 7 days.
            recent("4601", 4, 24 * 9),
        ])
        .await
        .expect("alerts");
    let app = app(store, Settings::default());
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");

    let (status, page) = get(&app, "/overview", Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page.matches("data-chart=").count(), 2, "{page}");
    // The tables say what the charts draw: Oslo 2, Bergen 1; ID-porten 3 (the helper's
    // component), most first.
    assert!(
        page.contains("<th scope=\"row\">0301 Oslo</th><td>2</td>"),
        "{page}"
    );
    assert!(
        page.contains("<th scope=\"row\">4601 Bergen</th><td>1</td>"),
        "{page}"
    );
    assert!(
        page.contains("<th scope=\"row\">ID-porten</th><td>3</td>"),
        "{page}"
    );
    assert!(page.contains(r#"src="/assets/uplot.js""#));

    // Oslo: its own volume only, whatever it asks for; no per-municipality chart.
    for path in ["/overview", "/overview?tenant=4601", "/overview?days=30"] {
        let (status, page) = get(&app, path, Some(&oslo)).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert!(!page.contains("volume-municipalities"), "{path}");
        assert!(
            page.contains("<th scope=\"row\">ID-porten</th><td>2</td>"),
            "{path}: {page}"
        );
    }
    assert_eq!(
        get(&app, "/overview?days=2", Some(&analyst)).await.0,
        StatusCode::BAD_REQUEST
    );
    let (status, _) = get(&app, "/assets/uplot.js", None).await;
    assert_eq!(status, StatusCode::OK);
    env.cleanup().await;
}

#[tokio::test]
async fn the_alert_page_shows_its_group_and_where_the_rule_fired_to_the_cert_only() {
    let env = TestEnv::new("dashrelated");
    let store = env.store().await;
    let now = chrono::Utc::now().timestamp_micros();
    let fired = |tenant: &str, n: u8, key: u8| Alert {
        dedup_key: [key; 16],
        rule_id: "rule-1".into(),
        event_time_us: now - i64::from(n) * 60_000_000,
        ..alert(tenant, n, "Root login")
    };
    store
        .write_alerts(&[
            fired("0301", 1, 1),
            fired("0301", 2, 1),
            fired("4601", 3, 3),
            fired("4601", 4, 3),
        ])
        .await
        .expect("alerts");
    let app = app(store, Settings::default());
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");
    let path = format!("/alerts/{}", AlertId([1; 16]));

    let (_, page) = get(&app, &path, Some(&analyst)).await;
    assert!(page.contains(r#"data-group-alerts="1""#), "{page}");
    assert!(page.contains(&format!(r#"href="/alerts/{}""#, AlertId([2; 16]))));
    assert!(
        page.contains(r#"data-spread="rule" data-rows="2""#),
        "{page}"
    );
    assert!(page.contains("0301 Oslo") && page.contains("4601 Bergen"));

    // Oslo sees its group, not where else the rule fired.
    let (_, page) = get(&app, &path, Some(&oslo)).await;
    assert!(page.contains(r#"data-group-alerts="1""#), "{page}");
    assert!(
        !page.contains(r#"data-spread="rule""#) && !without_csrf(&page).contains("4601"),
        "{page}"
    );
    env.cleanup().await;
}

/// A campaign's window: two hits in Oslo, one in Bergen, and the correlation alert's row for
/// each, and Trondheim's row for joining later. The CERT sees all three hits on either row and
/// the campaign's municipalities; Oslo sees its own two hits and nothing of the others.
#[tokio::test]
async fn a_correlation_alert_shows_its_windows_events_and_a_municipality_only_its_own() {
    let env = TestEnv::new("dashwindow");
    let store = env.store().await;
    let t0 = 1_796_119_200_000_000_i64;
    let hit = |tenant: &str, n: u8, seq: u64| varde_store::CorrelationHit {
        seq,
        observed_us: t0,
        correlation: "corr-1".into(),
        definition: [7; 16],
        group: vec!["192.0.2.200".into()],
        rule_pos: 0,
        event_id: EventId([n; 16]),
        event_time_us: t0 + i64::from(n) * 1_000_000,
        tenant: tenant.into(),
        value: Some(tenant.into()),
    };
    store
        .write_correlation_hits(&[
            hit("0301", 1, 1),
            hit("4601", 2, 2),
            hit("0301", 3, 3),
            // Outside the window's span: not shown.
            hit("0301", 9, 4),
        ])
        .await
        .expect("hits");
    // As the pipeline writes a campaign's rows: the window's fields, each municipality's hits
    // and newest event; `joined` for a municipality that hit the group after it fired.
    let row = |tenant: &str, n: u8, hits: u32, window: &str, joined: bool| {
        let mut matched: Vec<(String, String)> = vec![
            ("src_ip".into(), "192.0.2.200".into()),
            ("correlation.first_us".into(), (t0 + 1_000_000).to_string()),
            ("correlation.last_us".into(), (t0 + 3_000_000).to_string()),
            ("correlation.window".into(), window.repeat(16)),
            ("correlation.hits".into(), hits.to_string()),
            ("correlation.scope".into(), "several municipalities".into()),
        ];
        if joined {
            matched.push((
                "correlation.joined_us".into(),
                (t0 + i64::from(n) * 1_000_000).to_string(),
            ));
        }
        Alert {
            rule_id: "corr-1".into(),
            rule_title: "Spray".into(),
            event_id: EventId([n; 16]),
            event_time_us: t0 + i64::from(n) * 1_000_000,
            matched,
            ..alert(tenant, n, "Spray")
        }
    };
    store
        .write_alerts(&[
            row("0301", 3, 2, "ab", false),
            row("4601", 2, 1, "ab", false),
            // Trondheim joined the campaign after it fired.
            row("5001", 5, 1, "ab", true),
            // Another window of the same correlation: another campaign.
            row("1103", 6, 4, "cd", false),
        ])
        .await
        .expect("alerts");
    let app = app(store, Settings::default());
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");
    let path = format!("/alerts/{}", AlertId([3; 16]));

    let (status, page) = get(&app, &path, Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-window-hits="3""#), "{page}");
    assert!(page.contains(&EventId([2; 16]).to_string()) && page.contains("4601"));
    assert!(!page.contains(&EventId([9; 16]).to_string()), "{page}");
    // The campaign: three municipalities (one joined late), four hits, not the other window's.
    assert!(page.contains(r#"data-campaign-rows="3""#), "{page}");
    assert!(page.contains(r#"data-campaign-hits="4""#), "{page}");
    let campaign = page
        .split(r#"data-campaign-rows="3""#)
        .nth(1)
        .and_then(|rest| rest.split("</table>").next())
        .unwrap_or_default();
    assert!(campaign.contains("5001 Trondheim") && campaign.contains("4601 Bergen"));
    assert!(campaign.contains(&format!(r#"href="/alerts/{}""#, AlertId([5; 16]))));
    assert!(campaign.contains("etter utløsning"), "{campaign}");
    assert!(!campaign.contains("1103"), "{campaign}");

    let (status, page) = get(&app, &path, Some(&oslo)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-window-hits="2""#), "{page}");
    // (Names and cells, not bare digits: a random session token may hold any four digits.)
    assert!(
        !page.contains("data-campaign") && !page.contains("5001 Trondheim"),
        "{page}"
    );
    assert!(
        !page.contains("4601 Bergen")
            && !page.contains(">4601<")
            && !page.contains(&EventId([2; 16]).to_string()),
        "{page}"
    );
    // Bergen's row is not Oslo's to open.
    let (status, _) = get(&app, &format!("/alerts/{}", AlertId([2; 16])), Some(&oslo)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    env.cleanup().await;
}

/// One web access event of `tenant` from collector `collector`, received at `at_us`.
fn event_at(tenant: &str, collector: &str, at_us: i64) -> Envelope {
    let id = CollectorId::new(collector).expect("collector id");
    let k = varde_core::Kommunenummer::parse(tenant).expect("kommunenummer");
    let mut b = BatchBuilder::new(SourceKind::WebAccess, k, id.clone(), 1);
    b.push(&Event {
        event_time_us: at_us,
        receive_time_us: at_us,
        host: Some(format!("web.{collector}")),
        severity: None,
        message: Some("GET / HTTP/1.1".into()),
        typed: vec![("status", Value::UInt(200))],
        attrs: vec![],
    })
    .expect("push");
    Envelope::new(SourceKind::WebAccess, k, id, 1, b.finish().expect("batch")).expect("envelope")
}

/// A collector's report on itself, as the collector sends it.
fn report_at(tenant: &str, collector: &str, at_us: i64) -> Envelope {
    let id = CollectorId::new(collector).expect("collector id");
    let k = varde_core::Kommunenummer::parse(tenant).expect("kommunenummer");
    let mut b = BatchBuilder::new(SourceKind::GenericJson, k, id.clone(), 1);
    let report = varde_core::status::CollectorStatus {
        at_us,
        spool_bytes: 2 << 20,
        spool_max_bytes: 1 << 30,
        spool_records: 3,
        spool_events: 1234,
        dropped_spool_full_events: 10,
        dropped_receive_buffer_datagrams: 7,
        ..Default::default()
    };
    b.push(&report.event()).expect("push");
    Envelope::new(
        SourceKind::GenericJson,
        k,
        id,
        2,
        b.finish().expect("batch"),
    )
    .expect("envelope")
}

#[tokio::test]
async fn a_municipality_page_shows_its_collectors_alerts_and_incidents_to_it_and_the_cert() {
    let env = TestEnv::new("dashmunicipality");
    let store = env.store().await;
    let now = chrono::Utc::now().timestamp_micros();
    store
        .write_envelopes(&[
            event_at("0301", "k0301-web", now - 60_000_000),
            // Silent for an hour.
            event_at("0301", "k0301-ssh", now - 3_600_000_000),
            event_at("4601", "k4601-web", now - 60_000_000),
            report_at("0301", "k0301-web", now - 30_000_000),
        ])
        .await
        .expect("events");
    store
        .write_alerts(&[Alert {
            event_time_us: now - 120_000_000,
            ..alert("0301", 1, "Oslo root login")
        }])
        .await
        .expect("alerts");
    let app = app(store, Settings::default());
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");

    let (status, page) = get(&app, "/municipalities/0301", Some(&oslo)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("0301 Oslo") && page.contains(r#"data-alerts-week="1""#),
        "{page}"
    );
    assert!(page.contains(r#"data-collectors="2""#), "{page}");
    assert!(
        page.contains(r#"data-collector="k0301-ssh" data-silent="true""#),
        "{page}"
    );
    assert!(
        page.contains(r#"data-collector="k0301-web" data-silent="false""#),
        "{page}"
    );
    // The web collector's own report: 1,234 events waiting, 17 lost; the ssh one sent none.
    let web = page
        .split("<tr data-collector=\"k0301-web\"")
        .nth(1)
        .and_then(|r| r.split("</tr>").next())
        .expect("the web collector's row");
    assert!(
        web.contains(r#"data-spool-events="1234""#) && web.contains(r#"data-lost="17""#),
        "{web}"
    );
    assert!(
        web.contains("<td>1</td>"),
        "its report is not one of its events: {web}"
    );
    assert!(
        !page.contains("k4601"),
        "another municipality's collector: {page}"
    );
    // The menu leads there.
    assert!(page.contains(r#"href="/municipalities/0301""#));
    // Another municipality's page, or a made-up one: not found, for Oslo.
    for path in [
        "/municipalities/4601",
        "/municipalities/9999",
        "/municipalities/0301'--",
    ] {
        let (status, page) = get(&app, path, Some(&oslo)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert!(!page.contains("k4601"));
    }
    // The CERT sees Bergen's.
    let (status, page) = get(&app, "/municipalities/4601", Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains(r#"data-collector="k4601-web""#) && !page.contains("k0301"),
        "{page}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_component_page_shows_where_its_alerts_came_from_within_the_accounts_scope() {
    let env = TestEnv::new("dashcomponent");
    let store = env.store().await;
    let now = chrono::Utc::now().timestamp_micros();
    let recent = |tenant: &str, n: u8| Alert {
        event_time_us: now - i64::from(n) * 60_000_000,
        ..alert(tenant, n, "ID-porten login")
    };
    store
        .write_alerts(&[recent("0301", 1), recent("0301", 2), recent("4601", 3)])
        .await
        .expect("alerts");
    let app = app(store, Settings::default());
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");
    // An incident with Oslo's group: its ID-porten component makes it the component's.
    let (_, queue) = get(&app, "/alerts", Some(&analyst)).await;
    let csrf = csrf_of(&queue);
    assert!(
        queue.contains(r#"href="/components/idporten""#),
        "the queue links the component"
    );
    let (status, _) = post(
        &app,
        "/incidents",
        &analyst,
        &format!(
            "csrf={csrf}&op=create&title=ID-porten+wave&key={}",
            "01".repeat(16)
        ),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    let (status, page) = get(&app, "/components/idporten", Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        page.contains("ID-porten") && page.contains(r#"data-alerts-week="3""#),
        "{page}"
    );
    assert!(
        page.contains(r#"data-spread="component" data-rows="2""#)
            && page.contains("ID-porten wave"),
        "{page}"
    );
    let (_, page) = get(&app, "/components/idporten", Some(&oslo)).await;
    assert!(
        page.contains(r#"data-alerts-week="2""#)
            && page.contains(r#"data-spread="component" data-rows="1""#),
        "{page}"
    );
    assert!(
        !without_csrf(&page).contains("4601") && page.contains("ID-porten wave"),
        "{page}"
    );
    assert_eq!(
        get(&app, "/components/nothing", Some(&analyst)).await.0,
        StatusCode::NOT_FOUND
    );
    env.cleanup().await;
}

#[tokio::test]
async fn every_answer_carries_a_content_security_policy() {
    let env = TestEnv::new("dashcsp");
    let app = app(env.store().await, Settings::default());
    for path in ["/login", "/alerts", "/assets/theme.css", "/nothing"] {
        let resp = app
            .clone()
            .oneshot(Request::get(path).body(Body::empty()).expect("request"))
            .await
            .expect("response");
        let h = resp.headers();
        let csp = h
            .get(header::CONTENT_SECURITY_POLICY)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        assert!(
            csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{path}: {csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{path}");
        assert_eq!(
            h.get(header::X_CONTENT_TYPE_OPTIONS).map(|v| v.as_bytes()),
            Some(&b"nosniff"[..])
        );
        assert_eq!(
            h.get(header::X_FRAME_OPTIONS).map(|v| v.as_bytes()),
            Some(&b"DENY"[..])
        );
    }
    // No page carries an inline script or style attribute for the policy to refuse.
    let session = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    for path in ["/alerts", "/incidents", "/overview", "/hunt", "/rules"] {
        let (_, page) = get(&app, path, Some(&session)).await;
        assert!(
            !page.contains("<script>") && !page.contains(" style=\""),
            "{path}"
        );
    }
    env.cleanup().await;
}

/// The outbox: the CERT sees every message with its state and tries, a failed one with the
/// server's words; a municipality account is refused; "send test" queues a test message to a
/// contact of the notifier's file (CSRF-checked), rendered as the notifier renders it.
#[tokio::test]
async fn the_outbox_shows_the_cert_what_was_sent_and_failed_and_queues_tests() {
    use varde_store::outbox::{Attempt, Channel, Notification, Outbox, Outcome};
    let env = TestEnv::new("dashoutbox");
    let store = env.store().await;
    let now = chrono::Utc::now().timestamp_micros();
    let note = |n: u8, tenant: &str, subject: &str| Notification {
        notification_id: [n; 16],
        created_us: now - i64::from(n) * 60_000_000,
        contact: format!("IT {tenant}"),
        tenant: tenant.into(),
        channel: Channel::Email,
        target: format!("it@k{tenant}.example"),
        kind: "digest".into(),
        tlp: "TLP:AMBER".into(),
        subject: subject.into(),
        text: format!("TLP:AMBER\n\n{subject} <script>alert(1)</script>"),
        html: String::new(),
        payload: String::new(),
    };
    store
        .write_notifications(&[
            note(1, "0301", "[TLP:AMBER] Varde: Alerts, 0301 Oslo (3)"),
            note(2, "4601", "[TLP:AMBER] Varde: Alerts, 4601 Bergen (1)"),
        ])
        .await
        .expect("queue");
    store
        .write_attempts(&[
            Attempt {
                notification_id: [1; 16],
                attempt: 1,
                at_us: now,
                outcome: Outcome::Sent,
                error: String::new(),
                next_us: 0,
            },
            Attempt {
                notification_id: [2; 16],
                attempt: 1,
                at_us: now,
                outcome: Outcome::Failed,
                error: "SMTP: permanent error (550): 5.1.1 no such mailbox".into(),
                next_us: 0,
            },
        ])
        .await
        .expect("tries");
    let contacts = varde_notify::config::parse_contacts(
        "[[contact]]\nname = \"IT 0301\"\ntenant = \"0301\"\nemail = \"it@k0301.example\"\nnamed = true\n",
        std::path::Path::new("contacts.toml"),
    )
    .expect("contacts");
    let notify = varde_dashboard::NotifySetup {
        settings: varde_notify::Settings::new(
            "http://127.0.0.1:8080/".parse().expect("url"),
            "Varde <varde@cert.example>".parse().expect("from"),
        ),
        contacts,
        contacts_path: None,
    };
    let app = app(
        store.clone(),
        Settings {
            notify: Some(notify),
            ..Settings::default()
        },
    );
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");

    let (status, page) = get(&app, "/outbox", Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-outbox-failed="1""#), "{page}");
    assert!(page.contains(r#"data-outbox-rows="2""#), "{page}");
    assert!(page.contains("5.1.1 no such mailbox"));
    assert!(page.contains(r#"data-contacts="1""#));
    let (_, failed) = get(&app, "/outbox?state=failed", Some(&analyst)).await;
    assert!(failed.contains(r#"data-outbox-rows="1""#) && failed.contains("4601 Bergen"));
    let path = format!("/outbox/{}", "01".repeat(16));
    let (status, one) = get(&app, &path, Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(one.contains(r#"data-attempts="1""#), "{one}");
    // The message is shown as text, never as markup.
    assert!(one.contains("&lt;script&gt;") && !one.contains("<script>alert"));
    let (status, _) = get(&app, "/outbox/zz", Some(&analyst)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Municipalities never see the outbox: it names every municipality.
    for path in ["/outbox", path.as_str()] {
        let (status, page) = get(&app, path, Some(&oslo)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}");
        assert!(!page.contains("Bergen"), "{page}");
    }
    let (_, page) = get(&app, "/alerts", Some(&oslo)).await;
    assert!(!page.contains(r#"href="/outbox""#));

    // Send test: refused without the CSRF token, queued with it.
    let (status, _) = post(&app, "/outbox/test", &analyst, "contact=IT+0301&csrf=00").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf = csrf_of(&page_of(&app, &analyst).await);
    let (status, location) = post(
        &app,
        "/outbox/test",
        &analyst,
        &format!("contact=IT+0301&csrf={csrf}"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    assert!(location.starts_with("/outbox/"), "{location}");
    let rows = store.outbox(0, 100).await.expect("outbox");
    let test = rows
        .iter()
        .find(|e| e.notification.kind == "test")
        .expect("a test message queued");
    assert_eq!(test.notification.target, "it@k0301.example");
    assert!(test.notification.subject.starts_with("[TLP:CLEAR] "));
    let (status, _) = post(
        &app,
        "/outbox/test",
        &analyst,
        &format!("contact=Nobody&csrf={csrf}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post(
        &app,
        "/outbox/test",
        &oslo,
        &format!("contact=IT+0301&csrf={}", csrf_of(&page)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    env.cleanup().await;
}

/// A page of the analyst's session, for its CSRF token.
async fn page_of(app: &Router, session: &str) -> String {
    get(app, "/outbox", Some(session)).await.1
}

/// Admins edit the contacts file from the outbox page: a contact is added and removed, a
/// hostile or broken one is refused with the reason and the file stays as it was; analysts and
/// municipality accounts cannot change it.
#[tokio::test]
async fn admins_edit_the_contacts_file_and_bad_contacts_change_nothing() {
    let env = TestEnv::new("dashcontacts");
    let store = env.store().await;
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("contacts.toml");
    std::fs::write(
        &path,
        "[[contact]]\nname = \"IT 0301\"\ntenant = \"0301\"\nemail = \"it@k0301.example\"\n",
    )
    .expect("contacts");
    let notify = varde_dashboard::NotifySetup {
        settings: varde_notify::Settings::new(
            "http://127.0.0.1:8080/".parse().expect("url"),
            "Varde <varde@cert.example>".parse().expect("from"),
        ),
        contacts: Vec::new(),
        contacts_path: Some(path.clone()),
    };
    let app = app(
        store,
        Settings {
            notify: Some(notify),
            ..Settings::default()
        },
    );
    let admin = login(&app, "admin", "admin-pass").await.1.expect("session");
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let (_, page) = get(&app, "/outbox", Some(&admin)).await;
    assert!(page.contains(r#"data-contacts="1""#), "{page}");
    assert!(page.contains(r#"name="action" value="add""#));
    let csrf = csrf_of(&page);
    let form = |fields: &str| format!("csrf={csrf}&{fields}");

    let (status, location) = post(
        &app,
        "/outbox/contacts",
        &admin,
        &form("action=add&name=Bergen+SOC&tenant=4601&webhook=https%3A%2F%2Fsoc.bergen.example%2Fhook&webhook_format=slack&alerts=critical&language=en&named=true&incidents=true"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    let (_, page) = get(&app, "/outbox", Some(&admin)).await;
    assert!(page.contains(r#"data-contacts="2""#), "{page}");
    let contacts = varde_notify::config::load_contacts(&path).expect("the file checks out");
    assert_eq!(contacts[1].name, "Bergen SOC");
    assert_eq!(
        contacts[1].alerts,
        Some(varde_notify::config::Level::Critical)
    );
    assert!(contacts[1].named && !contacts[1].campaigns);

    let before = std::fs::read_to_string(&path).expect("read");
    for (fields, why) in [
        (
            "action=add&name=x%0D%0ABcc%3A+evil%40example.com&tenant=0301&email=a%40b.no",
            "control character",
        ),
        (
            "action=add&name=Bad&tenant=0301&email=not+an+address",
            "not an e-mail address",
        ),
        (
            "action=add&name=IT+0301&tenant=0301&email=a%40b.no",
            "used twice",
        ),
        (
            "action=add&name=Plain&tenant=0301&webhook=http%3A%2F%2Fexample.com%2F&webhook_format=slack",
            "plain http",
        ),
        ("action=remove&name=Nobody", "no contact is named"),
    ] {
        let (status, page) = post(&app, "/outbox/contacts", &admin, &form(fields)).await;
        assert!(
            status == StatusCode::BAD_REQUEST || status == StatusCode::NOT_FOUND,
            "{fields}: {status}"
        );
        assert!(page.contains(why), "{fields}: {page}");
        assert_eq!(
            std::fs::read_to_string(&path).expect("read"),
            before,
            "{fields}"
        );
    }
    let big = form(&format!("action=add&name={}", "a".repeat(20_000)));
    let (status, _) = post(&app, "/outbox/contacts", &admin, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);

    // Analysts send tests but do not edit contacts.
    let (_, page) = get(&app, "/outbox", Some(&analyst)).await;
    assert!(!page.contains(r#"name="action" value="add""#));
    let (status, _) = post(
        &app,
        "/outbox/contacts",
        &analyst,
        &format!("csrf={}&action=remove&name=IT+0301", csrf_of(&page)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(std::fs::read_to_string(&path).expect("read"), before);

    let (status, _) = post(
        &app,
        "/outbox/contacts",
        &admin,
        &form("action=remove&name=IT+0301"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let left = varde_notify::config::load_contacts(&path).expect("contacts");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].name, "Bergen SOC");
    env.cleanup().await;
}

/// Reports: deadlines with overdue marked, a submitted report recorded as version 1 and 2 with
/// its STIX bundle, exports as downloads recorded in the audit log; a municipality exports its
/// own part only, nothing of a TLP:RED incident, and records nothing.
#[tokio::test]
async fn incident_reports_are_recorded_exported_within_tlp_and_audited() {
    use varde_store::incident::{Change, IncidentChange, Tlp};
    let env = TestEnv::new("dashreports");
    let store = env.store().await;
    let now = chrono::Utc::now().timestamp_micros();
    let mut oslo_alert = alert("0301", 1, "Failed logins");
    oslo_alert.matched = vec![("src_ip".into(), "203.0.113.9".into())];
    let mut bergen_alert = alert("4601", 2, "Failed logins");
    bergen_alert.matched = vec![("src_ip".into(), "198.51.100.77".into())];
    store
        .write_alerts(&[oslo_alert, bergen_alert])
        .await
        .expect("alerts");
    let incident = |n: u8, tlp: Tlp| -> Vec<IncidentChange> {
        [
            Change::Opened(format!("Spray {n}")),
            Change::Tlp(tlp),
            // Aware four days ago: the early warning and the notification are overdue.
            Change::AwareAt(now - 4 * 86_400_000_000),
            Change::LinkGroup {
                dedup_key: [1; 16],
                tenant: "0301".into(),
                component: "idporten".into(),
                rule_title: "Failed logins".into(),
            },
            Change::LinkGroup {
                dedup_key: [2; 16],
                tenant: "4601".into(),
                component: "idporten".into(),
                rule_title: "Failed logins".into(),
            },
        ]
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
                7,
            ],
            incident_id: [n; 16],
            at_us: now - 1_000_000 + i64::try_from(k).expect("small"),
            actor: "kari".into(),
            change,
        })
        .collect()
    };
    store
        .write_incident_changes(&[incident(0xa1, Tlp::Amber), incident(0xa2, Tlp::Red)].concat())
        .await
        .expect("incidents");
    let app = app(store.clone(), Settings::default());
    let analyst = login(&app, "analyst", "cert-pass")
        .await
        .1
        .expect("session");
    let oslo = login(&app, "oslo", "oslo-pass").await.1.expect("session");
    let admin = login(&app, "admin", "admin-pass").await.1.expect("session");
    let amber = format!("/incidents/{}", "a1".repeat(16));
    let red = format!("/incidents/{}", "a2".repeat(16));

    let (_, list) = get(&app, "/incidents", Some(&analyst)).await;
    assert!(list.contains(r#"data-overdue="early-warning""#), "{list}");
    let (_, page) = get(&app, &amber, Some(&analyst)).await;
    assert!(page.contains("data-deadlines") && page.contains(r#"data-overdue="notification""#));
    let csrf = csrf_of(&page);
    let form = format!(
        "csrf={csrf}&stage=early-warning&summary=Spray+from+one+address&impact=2+municipalities&mitigation=&cross_border="
    );
    for _ in 0..2 {
        let (status, location) = post(&app, &format!("{amber}/reports"), &analyst, &form).await;
        assert_eq!(status, StatusCode::SEE_OTHER, "{location}");
    }
    // Users affected: a number, or empty for unknown; anything else refused.
    let (status, _) = post(
        &app,
        &amber,
        &analyst,
        &format!("csrf={csrf}&op=users&value=1200"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = post(
        &app,
        &amber,
        &analyst,
        &format!("csrf={csrf}&op=users&value=-3"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, page) = get(&app, &amber, Some(&analyst)).await;
    assert!(page.contains(r#"data-users="1200""#), "{page}");
    assert!(page.contains(r#"data-submitted="2""#), "{page}");
    assert!(
        !page.contains(r#"data-overdue="early-warning""#),
        "submitted: {page}"
    );
    // The form is pre-filled from the previous report.
    assert!(page.contains(">2 municipalities</textarea>"), "{page}");
    let submitted = varde_store::reports::ReportLog::reports(&store, Some([0xa1; 16]))
        .await
        .expect("reports");
    assert_eq!(
        submitted.iter().map(|r| r.version).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let (status, stix) = get(
        &app,
        &format!(
            "{amber}/reports/{}",
            varde_report_hex(&submitted[0].report_id)
        ),
        Some(&analyst),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(stix.contains("\"type\": \"bundle\"") && stix.contains("203.0.113.9"));
    // Hostile input: no assessment, or too long.
    let (status, _) = post(
        &app,
        &format!("{amber}/reports"),
        &analyst,
        &format!("csrf={csrf}&stage=final&summary="),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(
        &app,
        &format!("{amber}/reports"),
        &analyst,
        &format!("csrf={csrf}&stage=soon&summary=x"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Exports: the CERT gets the whole incident.
    let (status, cert_stix) =
        get(&app, &format!("{amber}/export?format=stix"), Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(cert_stix.contains("203.0.113.9") && cert_stix.contains("198.51.100.77"));
    let (status, misp) = get(
        &app,
        &format!("{amber}/export?format=misp&stage=final"),
        Some(&analyst),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(misp.contains("tlp:amber"), "{misp}");
    // Oslo: its own part only; nothing of the TLP:RED incident; records nothing.
    let (status, own) = get(&app, &format!("{amber}/export?format=csv"), Some(&oslo)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        own.contains("203.0.113.9") && !own.contains("198.51.100.77"),
        "{own}"
    );
    let (status, _) = get(&app, &format!("{red}/export?format=stix"), Some(&oslo)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, oslo_page) = get(&app, &amber, Some(&oslo)).await;
    assert!(!oslo_page.contains("data-deadlines"), "{oslo_page}");
    let (status, _) = post(
        &app,
        &format!("{amber}/reports"),
        &oslo,
        &format!("csrf={}&stage=final&summary=x", csrf_of(&oslo_page)),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = get(&app, &format!("{amber}/export?format=docx"), Some(&analyst)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // The month's report: for the CERT only, as a download.
    let month = chrono::DateTime::from_timestamp_micros(now - 4 * 86_400_000_000)
        .expect("time")
        .format("%Y-%m")
        .to_string();
    let (status, csv) = get(
        &app,
        &format!("/reports/month?month={month}&format=csv"),
        Some(&analyst),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(csv.contains("incidents,total,2"), "{csv}");
    let (status, _) = get(&app, &format!("/reports/month?month={month}"), Some(&oslo)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // PDF, printed by Chromium on the dashboard's host: the same audit.
    let (status, pdf) = get(&app, &format!("{amber}/export?format=pdf"), Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(pdf.starts_with("%PDF-"));
    let (status, pdf) = get(
        &app,
        &format!("/reports/month?month={month}&format=pdf"),
        Some(&analyst),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(pdf.starts_with("%PDF-"));
    let (status, _) = get(&app, "/reports/month?month=2026-13", Some(&analyst)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Every export is in the audit log, with who and whose part.
    let exports = varde_store::reports::ReportLog::exports(&store, 100)
        .await
        .expect("exports");
    assert_eq!(exports.len(), 7, "{exports:?}");
    assert!(exports.iter().any(|x| x.format == "pdf"));
    assert!(exports.iter().any(|x| x.stage == format!("month {month}")));
    assert!(
        exports
            .iter()
            .any(|x| x.actor == "oslo" && x.tenant == "0301")
    );
    let (_, log) = get(&app, "/audit", Some(&admin)).await;
    assert!(
        log.contains("Eksport av hendelse") || log.contains("Export of incident"),
        "{log}"
    );
    env.cleanup().await;
}

fn varde_report_hex(id: &[u8; 16]) -> String {
    id.iter().map(|b| format!("{b:02x}")).collect()
}

/// The enrolment API as a collector calls it: `POST /api/enrol` with JSON.
async fn api(app: &Router, path: &str, json: String) -> (StatusCode, String) {
    let (status, _, body) = send(
        app,
        Request::post(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(json))
            .expect("request"),
    )
    .await;
    (status, body)
}

#[tokio::test]
async fn collectors_are_enrolled_by_token_listed_revoked_and_audited_for_the_cert_only() {
    use varde_core::enrolment::{EnrolRequest, proof_message};
    use varde_core::identity::hex_encode;
    let env = TestEnv::new("dash_collectors");
    let store = env.store().await;
    // A third-party shipper's events (the pipeline names JSON-lines batches this way).
    let oslo = varde_core::Kommunenummer::parse("0301").expect("Oslo");
    let shipper = CollectorId::new("jsonl-0301-p0-syslog").expect("id");
    let mut b = BatchBuilder::new(SourceKind::Syslog, oslo, shipper.clone(), 1);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_micros() as i64;
    b.push(&Event {
        event_time_us: now,
        receive_time_us: now,
        message: Some("from Vector".into()),
        ..Event::default()
    })
    .expect("push");
    let shipped = Envelope::new(
        SourceKind::Syslog,
        oslo,
        shipper,
        1,
        b.finish().expect("batch"),
    )
    .expect("envelope");
    store.write_envelopes(&[shipped]).await.expect("write");

    let enrolment = varde_dashboard::enrol::Enrolment {
        config: toml::from_str("url = \"https://cert.example:8443\"\nbrokers = \"kafka:9093\"\n")
            .expect("config"),
        pin: "ab".repeat(32),
    };
    let app = app(
        store.clone(),
        Settings {
            enrolment: Some(enrolment),
            ..Settings::default()
        },
    );
    let (_, admin) = login(&app, "admin", "admin-pass").await;
    let admin = admin.expect("admin session");
    let (_, analyst) = login(&app, "analyst", "cert-pass").await;
    let analyst = analyst.expect("analyst session");
    let (_, oslo_session) = login(&app, "oslo", "oslo-pass").await;
    let oslo_session = oslo_session.expect("oslo session");

    // The page: the shipper is a source without signatures; a municipality may not look.
    let (status, page) = get(&app, "/collectors", Some(&analyst)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(page.contains(r#"data-unsigned="0301""#), "{page}");
    assert!(page.contains("jsonl-0301-p0-syslog"));
    assert_eq!(
        get(&app, "/collectors", Some(&oslo_session)).await.0,
        StatusCode::FORBIDDEN
    );

    // An analyst may not make a token; an admin may, and sees it once.
    let csrf = csrf_of(&get(&app, "/collectors", Some(&analyst)).await.1);
    let (status, _) = post(
        &app,
        "/collectors/tokens",
        &analyst,
        &format!("csrf={csrf}&tenant=0301&name=Oslo+DMZ"),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let csrf = csrf_of(&get(&app, "/collectors", Some(&admin)).await.1);
    let (status, shown) = post(
        &app,
        "/collectors/tokens",
        &admin,
        &format!("csrf={csrf}&tenant=0301&name=Oslo+DMZ"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{shown}");
    let token = shown
        .split_whitespace()
        .find(|w| w.starts_with("varde-enrol-1."))
        .expect("the token on the page")
        .trim_end_matches("</code></pre><p>")
        .split('<')
        .next()
        .expect("token")
        .to_owned();

    // The collector redeems it over the API; a second use, a bad proof: refused.
    let (key, _) = varde_core::CollectorKey::generate().expect("key");
    let parsed = varde_core::enrolment::EnrolmentToken::parse(&token).expect("token parses");
    assert_eq!(parsed.pin, "ab".repeat(32));
    let request = |key: &varde_core::CollectorKey, proof_key: &varde_core::CollectorKey| {
        serde_json::to_string(&EnrolRequest {
            token: token.clone(),
            public_key: key.public_key().to_string(),
            proof: hex_encode(&proof_key.sign(&proof_message(&parsed.id, &key.public_key()))),
            hostname: "vm1".into(),
        })
        .expect("json")
    };
    let (other, _) = varde_core::CollectorKey::generate().expect("key");
    let (status, body) = api(&app, "/api/enrol", request(&key, &other)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.contains("proof does not verify"), "{body}");
    let (status, body) = api(&app, "/api/enrol", request(&key, &key)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer: varde_core::enrolment::EnrolResponse = serde_json::from_str(&body).expect("answer");
    assert_eq!(answer.tenant, oslo);
    assert!(answer.collector_id.as_str().starts_with("k0301-oslo-dmz-"));
    let (status, body) = api(&app, "/api/enrol", request(&other, &other)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(body.contains("used already"), "{body}");
    let (status, body) = api(&app, "/api/enrol", "{not json".into()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // Listed as active; revoked by the admin with a reason; the registry says so.
    let (_, page) = get(&app, "/collectors", Some(&admin)).await;
    assert!(page.contains(answer.collector_id.as_str()));
    assert!(page.contains(r#"data-state="active""#));
    let csrf = csrf_of(&page);
    let (status, _) = post(
        &app,
        &format!("/collectors/{}/revoke", answer.collector_id),
        &admin,
        &format!("csrf={csrf}&reason=VM+stolen"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let registry = varde_store::collectors::CollectorRegistry::fold(
        &varde_store::collectors::Collectors::identity_log(&store)
            .await
            .expect("log"),
    );
    let c = registry.get(&answer.collector_id).expect("enrolled");
    assert!(c.revoked_us.is_some());
    assert!(
        get(&app, "/collectors", Some(&admin))
            .await
            .1
            .contains(r#"data-state="revoked""#)
    );

    // The audit log holds the token, the enrolment and the revocation with who did them.
    let (_, log) = get(&app, "/audit", Some(&admin)).await;
    assert!(log.contains("admin:admin"), "{log}");
    assert!(
        log.contains(&format!("collector:{}", answer.collector_id)),
        "{log}"
    );
    assert!(log.contains("VM stolen"), "{log}");
    env.cleanup().await;
}
