//! `varde-bench sigma`: the process-creation detection workload.
//!
//! Rules: every rule under `<corpus>/rules/windows/process_creation` (or `--rules`). Events:
//! SigmaHQ's regression samples of the rules' kind, replicated with variations to `--events`
//! events, of which `--benign` percent are rewritten to ordinary Windows process starts. Timed
//! separately: JSON text → Arrow batches, and matching those batches (one thread).

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde_json::Value as Json;
use varde_core::{BatchBuilder, CollectorId, Kommunenummer, SourceKind};
use varde_rules::RuleSetBuilder;

/// Options of the sigma benchmark.
#[derive(clap::Args)]
pub struct Options {
    /// The SigmaHQ corpus.
    #[arg(long, default_value = "../shared/corpus/sigmahq")]
    pub corpus: PathBuf,
    /// Rule folders relative to the corpus (default: rules/windows/process_creation).
    #[arg(long)]
    pub rules: Vec<PathBuf>,
    /// Number of events.
    #[arg(long, default_value_t = 1_000_000)]
    pub events: usize,
    /// Percent of events rewritten as benign process starts.
    #[arg(long, default_value_t = 90)]
    pub benign: u32,
    /// Only sample events with this EventID (0: every sample event).
    #[arg(long, default_value_t = 1)]
    pub event_id: u64,
    /// Rows per batch.
    #[arg(long, default_value_t = 8192)]
    pub batch: usize,
    /// Also write the generated events, one JSON document per line, for the peer benchmark in
    /// benches/peers.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Runs of the match stage (the figure is over all of them).
    #[arg(long, default_value_t = 1)]
    pub repeat: usize,
}

const BENIGN: &[(&str, &str, &str)] = &[
    (
        r"C:\Windows\System32\svchost.exe",
        r"C:\Windows\system32\svchost.exe -k netsvcs -p -s Schedule",
        r"C:\Windows\System32\services.exe",
    ),
    (
        r"C:\Program Files\Google\Chrome\Application\chrome.exe",
        r#""C:\Program Files\Google\Chrome\Application\chrome.exe" --type=renderer --lang=nb --field-trial-handle=1720"#,
        r"C:\Program Files\Google\Chrome\Application\chrome.exe",
    ),
    (
        r"C:\Windows\explorer.exe",
        r"C:\Windows\Explorer.EXE",
        r"C:\Windows\System32\userinit.exe",
    ),
    (
        r"C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE",
        r#""C:\Program Files\Microsoft Office\root\Office16\WINWORD.EXE" /n "C:\Users\kari\Documents\Saksframlegg.docx""#,
        r"C:\Windows\explorer.exe",
    ),
    (
        r"C:\Windows\System32\conhost.exe",
        r"\??\C:\Windows\system32\conhost.exe 0xffffffff -ForceV1",
        r"C:\Windows\System32\svchost.exe",
    ),
    (
        r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
        r#""C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe" --type=utility --utility-sub-type=network.mojom.NetworkService"#,
        r"C:\Program Files (x86)\Microsoft\Edge\Application\msedge.exe",
    ),
    (
        r"C:\Windows\System32\backgroundTaskHost.exe",
        r#""C:\Windows\system32\backgroundTaskHost.exe" -ServerName:BackgroundTaskHost.WebAccountProvider"#,
        r"C:\Windows\System32\svchost.exe",
    ),
    (
        r"C:\Users\ola\AppData\Local\Microsoft\Teams\current\Teams.exe",
        r#""C:\Users\ola\AppData\Local\Microsoft\Teams\current\Teams.exe" --type=gpu-process"#,
        r"C:\Users\ola\AppData\Local\Microsoft\Teams\current\Teams.exe",
    ),
    (
        r"C:\Windows\System32\SearchProtocolHost.exe",
        r#""C:\Windows\system32\SearchProtocolHost.exe" Global\UsGthrFltPipeMssGthrPipe5_ Global\UsGthrCtrlFltPipeMssGthrPipe5 1 -2147483646 "Software\Microsoft\Windows Search""#,
        r"C:\Windows\System32\SearchIndexer.exe",
    ),
    (
        r"C:\Program Files\Microsoft OneDrive\OneDrive.exe",
        r#""C:\Program Files\Microsoft OneDrive\OneDrive.exe" /background"#,
        r"C:\Windows\explorer.exe",
    ),
];

pub(crate) fn templates(corpus: &Path, event_id: u64) -> Result<Vec<Json>> {
    let mut out = Vec::new();
    let mut stack = vec![corpus.join("regression_data")];
    while let Some(dir) = stack.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let p = entry?.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|e| e == "json") {
                let text = std::fs::read_to_string(&p)?;
                for doc in serde_json::Deserializer::from_str(&text).into_iter::<Json>() {
                    let doc = doc?;
                    let id = doc["Event"]["System"]["EventID"].as_u64().unwrap_or(0);
                    if event_id == 0 || id == event_id {
                        out.push(doc);
                    }
                }
            }
        }
    }
    anyhow::ensure!(
        !out.is_empty(),
        "no sample events found under {}",
        corpus.display()
    );
    Ok(out)
}

/// Deterministic variations: process ids, host, user; benign events get ordinary processes.
pub(crate) fn generate(templates: &[Json], n: usize, benign_percent: u32) -> Vec<String> {
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..n)
        .map(|i| {
            let mut doc = templates[i % templates.len()].clone();
            let r = next();
            let data = &mut doc["Event"]["EventData"];
            if let Some(obj) = data.as_object_mut() {
                obj.insert("ProcessId".into(), Json::from(1000 + r % 60_000));
                if (r >> 20) % 100 < u64::from(benign_percent) {
                    let (image, cmd, parent) = BENIGN[((r >> 8) as usize) % BENIGN.len()];
                    let exe = image.rsplit('\\').next().unwrap_or(image);
                    obj.insert("Image".into(), Json::from(image));
                    obj.insert("OriginalFileName".into(), Json::from(exe));
                    obj.insert(
                        "CommandLine".into(),
                        Json::from(format!("{cmd} --n={}", r % 9973)),
                    );
                    obj.insert("ParentImage".into(), Json::from(parent));
                    obj.insert("ParentCommandLine".into(), Json::from(parent));
                    obj.insert(
                        "User".into(),
                        Json::from(format!("KOMMUNE\\user{}", r % 500)),
                    );
                }
            }
            doc["Event"]["System"]["Computer"] =
                Json::from(format!("pc{:04}.kommune.local", r % 3000));
            doc.to_string()
        })
        .collect()
}

/// Minor page faults of this process so far (`/proc/self/stat`; 0 when unreadable).
fn minor_faults() -> u64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // After the command name in parentheses: state is field 3, minflt field 10.
            let rest = s.get(s.rfind(')')? + 1..)?;
            rest.split_whitespace().nth(7)?.parse().ok()
        })
        .unwrap_or(0)
}

pub(crate) fn peak_rss_kib() -> u64 {
    crate::pipeline::peak_rss_kib_of("self")
}

/// Runs the benchmark and prints its figures.
pub fn run(o: &Options) -> Result<()> {
    let rule_dirs: Vec<PathBuf> = if o.rules.is_empty() {
        vec![o.corpus.join("rules/windows/process_creation")]
    } else {
        o.rules.iter().map(|r| o.corpus.join(r)).collect()
    };
    let t = Instant::now();
    let mut builder = RuleSetBuilder::new(Default::default())?;
    let files = varde_rules::load::add_paths(&mut builder, &rule_dirs)?;
    let set = builder.build()?;
    let compile_s = t.elapsed().as_secs_f64();

    let templates = templates(&o.corpus, o.event_id)?;
    let lines = generate(&templates, o.events, o.benign);
    let json_bytes: usize = lines.iter().map(String::len).sum();

    // JSON text → Arrow batches, decoded in one pass into reused rows.
    let tenant = Kommunenummer::parse("0301")?;
    let collector = CollectorId::new("bench")?;
    // One builder per path, finished per batch and reused, as the collector's shipper does.
    let builder =
        || BatchBuilder::new(SourceKind::WindowsEvent, tenant, collector.clone(), o.batch);
    // Each batch is handed on once made and its buffers given back to the builder, as the
    // collector's shipper does once a batch is encoded; the batches the matching below needs
    // are made again after the clock stopped, so keeping them all (the whole input, hundreds
    // of megabytes) is not part of the figure.
    let mut decoder = varde_core::windows::EvtxDecoder::default();
    let mut b = builder();
    let faults = minor_faults();
    let t = Instant::now();
    for chunk in lines.chunks(o.batch.max(1)) {
        for line in chunk {
            b.push_row(decoder.decode_str(line, 0)?)?;
        }
        let batch = b.finish()?;
        b.recycle(std::hint::black_box(batch));
    }
    let parse_s = t.elapsed().as_secs_f64();
    let parse_faults = minor_faults().saturating_sub(faults);
    // The same, each batch dropped instead of given back: new memory for every batch.
    let faults = minor_faults();
    let t = Instant::now();
    for chunk in lines.chunks(o.batch.max(1)) {
        for line in chunk {
            b.push_row(decoder.decode_str(line, 0)?)?;
        }
        std::hint::black_box(b.finish()?);
    }
    let dropped_s = t.elapsed().as_secs_f64();
    let dropped_faults = minor_faults().saturating_sub(faults);
    // The collector's own edge on the same lines (a JSON line read from a file or a socket):
    // syslog framing looked for, the format detected, the record decoded into the edge's row,
    // every text scanned for identity numbers, the row appended.
    let edge = varde_collector::edge::EdgeSource::new(varde_collector::sources::test_privacy());
    let (mut row, mut spare) = (varde_core::Row::default(), varde_core::Row::default());
    let t = Instant::now();
    for chunk in lines.chunks(o.batch.max(1)) {
        for line in chunk {
            varde_collector::edge::edge_row(line, 0, &edge, &mut row, &mut spare);
            b.push_row(&row)?;
        }
        let batch = b.finish()?;
        b.recycle(std::hint::black_box(batch));
    }
    let edge_s = t.elapsed().as_secs_f64();
    // A `.json` file given to `varde-collector send`: the same records pretty-printed (as
    // SigmaHQ's samples and PowerShell's exports are) and concatenated, each document found
    // by its brackets (`import::JsonDocuments`) and taken through the edge.
    let mut pretty = String::new();
    for line in &lines {
        pretty.push_str(&serde_json::to_string_pretty(
            &serde_json::from_str::<Json>(line)?,
        )?);
        pretty.push('\n');
    }
    let mut documents = varde_collector::import::JsonDocuments::new(&pretty);
    let t = Instant::now();
    loop {
        let mut rows = 0;
        for document in documents.by_ref().take(o.batch.max(1)) {
            let document = std::str::from_utf8(document)?;
            varde_collector::edge::edge_row(document, 0, &edge, &mut row, &mut spare);
            b.push_row(&row)?;
            rows += 1;
        }
        if rows == 0 {
            break;
        }
        let batch = b.finish()?;
        b.recycle(std::hint::black_box(batch));
    }
    let documents_s = t.elapsed().as_secs_f64();
    let pretty_bytes = pretty.len();
    drop(pretty);
    let kept_t = Instant::now();
    let mut batches = Vec::new();
    for chunk in lines.chunks(o.batch.max(1)) {
        for line in chunk {
            b.push_row(decoder.decode_str(line, 0)?)?;
        }
        batches.push(b.finish()?);
    }
    let kept_s = kept_t.elapsed().as_secs_f64();

    // The same through a parsed tree and owned events, as a caller holding a
    // `serde_json::Value` converts it.
    let t = Instant::now();
    let mut b = builder();
    for chunk in lines.chunks(o.batch.max(1)) {
        for line in chunk {
            let doc: Json = serde_json::from_str(line)?;
            b.push(&varde_core::windows::event_from_evtx_json(&doc, 0)?)?;
        }
        std::hint::black_box(b.finish()?);
    }
    let tree_s = t.elapsed().as_secs_f64();

    // Matching, one thread.
    let t = Instant::now();
    let mut matches = 0usize;
    let mut matched_rows = 0usize;
    for _ in 1..o.repeat.max(1) {
        for b in &batches {
            std::hint::black_box(set.match_batch(SourceKind::WindowsEvent, b)?);
        }
    }
    for b in &batches {
        let m = set.match_batch(SourceKind::WindowsEvent, b)?;
        let mut rows: Vec<u32> = m.iter().map(|m| m.row).collect();
        rows.sort_unstable();
        rows.dedup();
        matched_rows += rows.len();
        matches += m.len();
    }
    let match_s = t.elapsed().as_secs_f64();

    println!(
        "varde-bench sigma: {} rule files, {} rules loaded ({} rejected), compiled in {compile_s:.2} s",
        files,
        set.rules().len(),
        set.errors().len()
    );
    println!("  atoms per kind: {:?}", set.atom_counts());
    println!(
        "  events: {} ({} sample templates, {}% rewritten benign), {:.1} MB of JSON, {} rows per batch",
        o.events,
        templates.len(),
        o.benign,
        json_bytes as f64 / 1e6,
        o.batch
    );
    println!(
        "  JSON -> Arrow batches:   {:>12.0} events/s   ({parse_faults} page faults)",
        o.events as f64 / parse_s
    );
    println!(
        "    the same, each batch dropped instead of given back: {:.0} events/s ({dropped_faults} page faults)",
        o.events as f64 / dropped_s
    );
    println!(
        "    the same, every batch kept for the matching below: {:.0} events/s",
        o.events as f64 / kept_s
    );
    println!(
        "    the collector's edge on the same lines (detection, decoding, privacy scan) → Arrow: {:.0} events/s",
        o.events as f64 / edge_s
    );
    println!(
        "    a .json file of the same records pretty-printed ({:.1} MB), document by document through the edge → Arrow: {:.0} events/s",
        pretty_bytes as f64 / 1e6,
        o.events as f64 / documents_s
    );
    println!(
        "    the same through a serde_json tree and owned events: {:.0} events/s",
        o.events as f64 / tree_s
    );
    println!(
        "  match (varde, 1 thread): {:>12.0} events/s   ({matches} matches on {matched_rows} events, {:.1}%)",
        (o.events * o.repeat.max(1)) as f64 / match_s,
        100.0 * matched_rows as f64 / o.events.max(1) as f64
    );
    println!("  peak RSS: {} MiB", peak_rss_kib() / 1024);

    if let Some(path) = &o.dump {
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        println!("  events written to {}", path.display());
    }
    Ok(())
}
