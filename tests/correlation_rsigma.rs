//! Varde's correlations against rsigma's, the strongest peer: the same rules (every
//! correlation type, a range condition, a correlation of a correlation) over the same generated
//! event streams, through `varde rules correlate` (the pipeline's `Correlator`) and rsigma-eval
//! 0.23's `CorrelationEngine` (`benches/peers`, `rsigma-correlate`, built by this test with
//! cargo). Both must fire the same correlations for the same groups with the same aggregates,
//! the same number of times.
//!
//! The rules (`benches/correlation/rules`, which `varde-bench correlate` measures too): every
//! correlation type but `value_percentile` (below), a range condition and a correlation of a
//! correlation. The temporal correlations carry their condition (`gte: 3`, every rule): without one the
//! specification means "all rules", which Varde does, while rsigma 0.23 compiles a missing
//! condition to `gte: 1` (any one rule).
//!
//! `value_percentile` is not compared: rsigma 0.23 returns the window's percentile without
//! testing it against the condition (`WindowState::check_condition`), so it fires on every
//! hit. Varde's percentile (numpy's linear interpolation, the method rsigma uses too) is held
//! to published values in `rules/tests/correlation.rs`.
//!
//! The streams (`varde_testkit::correlation::stream`): events of several users, sources and
//! hosts interleaved, with bursts in one second (arrival order shuffled within the second),
//! ordinary steps and gaps longer than every window. Within one group the events arrive in time
//! order: out of order within a group is where the two differ on purpose (rsigma's windows
//! follow arrival order; Varde's follow event time and refuse hits later than the allowed
//! lateness, `rules/tests/correlation.rs`).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value as Json;

fn root() -> PathBuf {
    varde_testkit::workspace_root()
}

/// Builds rsigma's side (its own project and lock file) and returns the binary.
fn rsigma_correlate() -> PathBuf {
    let peers = root().join("benches/peers");
    let target = peers.join("target");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "build",
            "--quiet",
            "--bin",
            "rsigma-correlate",
            "--manifest-path",
        ])
        .arg(peers.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target)
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "building benches/peers (rsigma-eval 0.23 from crates.io) failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    target.join("debug/rsigma-correlate")
}

/// One fired correlation: its id, its group as (name, value) pairs, its aggregate × 10⁶.
type Fired = (String, Vec<(String, String)>, i64);

fn fired(stdout: &[u8]) -> Vec<Fired> {
    let mut out: Vec<_> = String::from_utf8_lossy(stdout)
        .lines()
        .map(|l| {
            let v: Json = serde_json::from_str(l).expect("a JSON line");
            let group = v["group"]
                .as_array()
                .expect("group")
                .iter()
                .map(|p| {
                    (
                        p[0].as_str().expect("name").to_owned(),
                        p[1].as_str().expect("value").to_owned(),
                    )
                })
                .collect();
            let value = v["value"].as_f64().expect("value");
            (
                v["correlation"].as_str().expect("id").to_owned(),
                group,
                (value * 1e6).round() as i64,
            )
        })
        .collect();
    out.sort();
    out
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn varde_and_rsigma_fire_the_same_correlations_on_generated_streams() {
    let peer = rsigma_correlate();
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = root().join("benches/correlation/rules");
    let mut per_correlation: std::collections::BTreeMap<String, usize> = Default::default();
    for seed in 1..=4u64 {
        let events = dir.path().join(format!("events-{seed}.jsonl"));
        std::fs::write(&events, varde_testkit::correlation::stream(seed, 3000, 4))
            .expect("write events");
        let varde = fired(&run(Command::new(env!("CARGO_BIN_EXE_varde"))
            .args(["rules", "correlate", "--rules"])
            .arg(&rules)
            .arg("--events")
            .arg(&events)));
        let rsigma = fired(&run(Command::new(&peer).arg(&rules).arg(&events)));
        if varde != rsigma {
            let count = |v: &[Fired]| {
                let mut m: std::collections::BTreeMap<Fired, usize> = Default::default();
                for f in v {
                    *m.entry(f.clone()).or_default() += 1;
                }
                m
            };
            let (a, b) = (count(&varde), count(&rsigma));
            let differ: Vec<_> = a
                .keys()
                .chain(b.keys())
                .filter(|k| a.get(*k) != b.get(*k))
                .take(8)
                .map(|k| {
                    (
                        k,
                        a.get(k).copied().unwrap_or(0),
                        b.get(k).copied().unwrap_or(0),
                    )
                })
                .collect();
            panic!(
                "seed {seed}: Varde fired {} times, rsigma {}; (fired, Varde's count, rsigma's) where they differ: {differ:?}",
                varde.len(),
                rsigma.len(),
            );
        }
        for (c, _, _) in &varde {
            *per_correlation.entry(c.clone()).or_default() += 1;
        }
    }
    eprintln!("fired per correlation over all seeds: {per_correlation:?}");
    // Every correlation fired somewhere, or the comparison proves nothing for it.
    assert_eq!(per_correlation.len(), 9, "{per_correlation:?}");
}
