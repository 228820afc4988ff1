//! The dashboard in a real browser, end to end: `varde demo` runs the whole path (collectors,
//! pipeline with detection, store) and serves the dashboard while planting a root login every
//! 2 s; Debian's Chromium, driven by playwright-core (`tests/browser/e2e.cjs`), logs in as the
//! demo's analyst, finds the planted root logins in the queue, sees new ones announced live and
//! loads them, opens one, acknowledges it, opens an incident from its group,
//! comments and changes its status; then logs in as the demo's Bergen user and sees only Bergen's
//! alerts, gets 404 for Bodø's, and sees the incident without the CERT's comment. axe-core checks
//! every page for WCAG 2.1 A and AA; the demo's admin reads the analyst's changes in the audit
//! log; screenshots go to `<target>/browser-artifacts/`.
//!
//! Chromium, Node.js and the npm packages come from `deploy/dev/browser.sh`, which
//! `deploy/dev/services.sh up` runs; they live in `~/.cache/varde-browser` (or
//! `$VARDE_BROWSER_DIR`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use varde_testkit::process::Guard;
use varde_testkit::{free_port, workspace_bin, workspace_root};

fn browser_dir() -> PathBuf {
    std::env::var_os("VARDE_BROWSER_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/varde-browser")))
        .expect("HOME or VARDE_BROWSER_DIR")
}

/// Where the screenshots go: `<target>/browser-artifacts`.
fn artifacts() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    exe.parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target/<profile>/deps/<test>")
        .join("browser-artifacts")
}

#[test]
fn the_dashboard_in_chromium_with_axe_core() {
    let modules = browser_dir().join("node_modules");
    assert!(
        modules.join("playwright-core").is_dir() && modules.join("axe-core").is_dir(),
        "playwright-core and axe-core are missing under {}; install them with deploy/dev/browser.sh \
         (deploy/dev/services.sh up runs it)",
        modules.display()
    );
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "{chromium} is missing; install it with deploy/dev/browser.sh"
    );

    let port = free_port();
    let mut demo = Guard(
        Command::new(workspace_bin("varde"))
            .args(["demo", "--port", &port.to_string(), "--live-every", "2"])
            .env("VARDE_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start varde demo"),
    );
    let stdout = demo.0.stdout.take().expect("the demo's stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut url, mut analyst, mut bergen, mut admin) = (None, None, None, None);
    let started = Instant::now();
    while analyst.is_none() || bergen.is_none() || admin.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the demo did not serve its dashboard within 5 minutes"
        );
        let line = lines
            .next()
            .expect("the demo ended before serving its dashboard")
            .expect("a line of the demo's output");
        if let Some(rest) = line.strip_prefix("dashboard: ") {
            url = rest.split_whitespace().next().map(str::to_owned);
        }
        if let Some((_, p)) = line.split_once("analytiker / ") {
            analyst = Some(p.trim().to_owned());
        }
        if let Some((_, p)) = line.split_once("bergen / ") {
            bergen = Some(p.trim().to_owned());
        }
        if let Some((_, p)) = line.split_once(" admin / ") {
            admin = Some(p.trim().to_owned());
        }
    }
    let url = url.expect("the dashboard's URL");
    // Keep reading the demo's output so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});

    let out = artifacts();
    let run = Command::new("node")
        .arg(workspace_root().join("tests/browser/e2e.cjs"))
        .env("NODE_PATH", &modules)
        .env("VARDE_URL", &url)
        .env("ANALYST_PASSWORD", analyst.unwrap_or_default())
        .env("BERGEN_PASSWORD", bergen.unwrap_or_default())
        .env("ADMIN_PASSWORD", admin.unwrap_or_default())
        .env("ARTIFACTS", &out)
        .env("CHROMIUM", &chromium)
        .output()
        .expect("run node (install it with deploy/dev/browser.sh)");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "the browser run failed:\n{stderr}\n{stdout}"
    );
    let summary = stdout.lines().last().unwrap_or_default();
    println!("{summary}\nscreenshots: {}", out.display());
    for page in [
        "login",
        "queue",
        "queue-live",
        "alert",
        "incident",
        "incidents",
        "incidents-en",
        "hunt",
        "overview",
        "rules",
        "rule",
        "municipality-queue",
        "municipality-incident",
        "municipality",
        "audit",
    ] {
        assert!(
            summary.contains(&format!("\"{page}\"")),
            "{page} was not audited: {summary}"
        );
        assert!(
            out.join(format!("{page}.png")).is_file(),
            "no screenshot of {page}"
        );
    }
    demo.kill9();
}
