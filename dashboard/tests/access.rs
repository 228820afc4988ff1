//! The dashboard's access rules in-process (`tower::ServiceExt::oneshot`) against the real
//! ClickHouse of `deploy/dev/services.sh up`: login, sessions, and tenant isolation of the alert
//! queue, also under hostile requests.

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use http_body_util::BodyExt;
use tower::ServiceExt;
use varde_core::{AlertId, EventId};
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

fn account(name: &str, role: Role, tenant: Option<&str>, password: &str) -> Account {
    Account {
        name: name.to_owned(),
        role,
        tenant: tenant.map(|t| varde_core::Kommunenummer::parse(t).expect("kommunenummer")),
        password_hash: hash_password(password).expect("hash"),
    }
}

/// The dashboard with two accounts: `oslo` (municipality 0301, password `oslo-pass`) and
/// `analyst` (`cert-pass`); plain-HTTP cookies.
fn app(store: varde_store::clickhouse::ClickHouseStore, settings: Settings) -> Router {
    Dashboard::new(
        store,
        vec![
            account("oslo", Role::Municipality, Some("0301"), "oslo-pass"),
            account("analyst", Role::Analyst, None, "cert-pass"),
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

#[tokio::test]
async fn a_municipality_sees_its_own_alerts_whatever_it_asks_for() {
    let env = TestEnv::new("dashaccess");
    let store = env.store().await;
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
        assert!(!page.contains("4601"), "{path}");
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
    assert!(page.contains("3 varsler i 2 grupper"), "{page}");
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

    // After logout the cookie is dead.
    let (status, _, _) = send(
        &app,
        Request::post("/logout")
            .header(header::COOKIE, &oslo)
            .body(Body::empty())
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    let (status, _) = get(&app, "/alerts", Some(&oslo)).await;
    assert_eq!(status, StatusCode::SEE_OTHER);
    env.cleanup().await;
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
