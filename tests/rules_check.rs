//! `varde rules check` on correlation rules: each one is said to be evaluated by the pipeline,
//! or not evaluated with the reason, and one that is not makes the exit status 1.

use std::process::Command;

fn check(dir: &std::path::Path) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_varde"))
        .args(["rules", "check"])
        .arg(dir)
        .output()
        .expect("run varde rules check");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn correlations_are_reported_evaluated_or_not_with_the_reason() {
    let rules = varde_testkit::workspace_root().join("benches/correlation/rules");
    let (code, out) = check(&rules);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out.matches(": evaluated\n").count(), 9, "{out}");
    assert!(out.contains("(0 not evaluated)"), "{out}");

    // Two correlations that reference each other: neither can ever fire.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("cycle.yml"),
        "title: A\nid: 44444444-4444-4444-4444-444444444444\nname: a\ncorrelation:\n  type: event_count\n  rules: [b]\n  timespan: 1h\n  condition:\n    gte: 2\n---\ntitle: B\nid: 55555555-5555-5555-5555-555555555555\nname: b\ncorrelation:\n  type: event_count\n  rules: [a]\n  timespan: 1h\n  condition:\n    gte: 2\n",
    )
    .expect("write");
    let (code, out) = check(dir.path());
    assert_eq!(code, 1, "{out}");
    assert_eq!(
        out.matches("not evaluated: references a correlation")
            .count(),
        2,
        "{out}"
    );
    assert!(out.contains("(2 not evaluated)"), "{out}");
}
