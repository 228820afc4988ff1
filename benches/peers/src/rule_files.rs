//! The rule files under a folder, for both peer programs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Appends every `.yml`/`.yaml` file below `dir` (recursively) to `out`.
pub fn rule_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let p = entry?.path();
        if p.is_dir() {
            rule_files(&p, out)?;
        } else if p.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(p);
        }
    }
    Ok(())
}
