//! The `varde-collector` binary's configuration check, as an operator runs it.

use std::process::Command;

fn collector() -> Command {
    Command::new(env!("CARGO_BIN_EXE_varde-collector"))
}

#[test]
fn check_config_accepts_the_shipped_example() {
    // Cargo sets CARGO_MANIFEST_DIR at run time too; the run-time value stays true when the
    // build cache is shared between clones at different paths.
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let example = std::path::Path::new(&manifest_dir).join("../deploy/examples/collector.toml");
    let out = collector()
        .arg("check-config")
        .arg(&example)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(": ok: collector"), "{stdout}");
}

#[test]
fn check_config_accepts_the_packaged_configuration() {
    let manifest_dir =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    let packaged = std::path::Path::new(&manifest_dir).join("../deploy/debian/collector.toml");
    let out = collector()
        .arg("check-config")
        .arg(&packaged)
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn check_config_names_file_and_line_of_a_typo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "collector_id = \"k0301-a\"\ntenant = \"0301\"\n[kafka]\nbrokers = \"x:1\"\nbroker_timeout = 3\n",
    )
    .expect("write");
    let out = collector()
        .arg("check-config")
        .arg(&file)
        .output()
        .expect("run");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("line 5"), "{stderr}");
    assert!(stderr.contains("broker_timeout"), "{stderr}");
}
