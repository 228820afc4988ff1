//! Reading rules from files and folders: the only I/O of this crate.

use std::path::{Path, PathBuf};

use crate::RuleSetBuilder;

/// Every `.yml`/`.yaml` file under `path` (or `path` itself), sorted.
pub fn rule_files(path: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    if path.is_file() {
        out.push(path.to_owned());
        return Ok(out);
    }
    let mut stack = vec![path.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")) {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Adds every rule file under each path to `builder`; unreadable files are recorded as load
/// errors, not fatal.
pub fn add_paths(builder: &mut RuleSetBuilder, paths: &[PathBuf]) -> std::io::Result<usize> {
    let mut files = 0;
    for path in paths {
        for file in rule_files(path)? {
            files += 1;
            let name = file.display().to_string();
            match std::fs::read_to_string(&file) {
                Ok(text) => builder.add_yaml(&name, &text),
                Err(e) => builder.add_io_error(&name, &e),
            }
        }
    }
    Ok(files)
}
