//! Reading event files for `varde rules match` and `varde rules bench`: the collector's import
//! ([`varde_collector::import`]): `.evtx` (Windows event logs), `.json` (one or several
//! concatenated JSON documents, as in SigmaHQ's regression samples) and `.jsonl` (one document
//! per line); Windows records in the evtx, Winlogbeat or NXLog shape are `windows_event`, login
//! events `oidc_login`, anything else `generic_json` (nested objects flattened with dots, a list
//! one attribute per element, so a rule on the field matches any element).

use std::path::Path;

use anyhow::Result;
use varde_collector::import::read_events;
use varde_collector::parse::json::JsonFields;
use varde_core::{Event, SourceKind};

/// Events of one file, in file order, each with its document index in the file. Records that
/// cannot be read are reported on stderr with their index and skipped.
pub fn read(path: &Path) -> Result<Vec<(usize, SourceKind, Event)>> {
    let imported = read_events(path, 0, &JsonFields::default())?;
    for (i, why) in &imported.skipped {
        eprintln!("{}: record {i} skipped: {why}", path.display());
    }
    Ok(imported.events)
}
