//! `varde-bench`: Varde's benchmarks, printed as figures.
//!
//! ```text
//! cargo run --release -p varde-benches -- edge [--lines N] [--batch ROWS]
//! cargo run --release -p varde-benches -- sigma --corpus ../shared/corpus/sigmahq [--dump events.jsonl]
//! cargo run --release -p varde-benches -- pipeline --varde target/release/varde [--rates 10000,50000,100000]
//! cargo run --release -p varde-benches -- flows --collector target/release/varde-collector [--packets N --flows N]
//! ```
//!
//! `edge`: the collector's hot path, each stage timed alone over the same synthetic municipal
//! syslog (`varde_collector::sample`): syslog parsing, Arrow batch building, envelope encoding
//! (IPC + zstd), envelope decoding with full validation; then, on the mixed edge sample
//! (`varde_collector::sample::edge_sample_lines`: syslog, access logs, IIS, JSON logins, lines with
//! identity numbers), the privacy scan alone (identity numbers; identity numbers and addresses)
//! and the whole edge (`edge_event`: syslog → format detection → privacy). `sigma`: see [`sigma`];
//! `pipeline`: see [`pipeline`]; `flows`: see [`flows`].
//! Single-threaded; wall-clock time.

mod correlate;
mod flows;
mod pipeline;
mod sigma;

use std::time::Instant;

use anyhow::Result;
use clap::{Parser, Subcommand};
use varde_collector::config::IpAddressPolicy;
use varde_collector::edge::{EdgeSource, edge_event};
use varde_collector::privacy::{Privacy, PrivacyCounts, PrivacyKey, PrivacyPolicy};
use varde_collector::sample::{edge_sample_lines, sample_lines};
use varde_collector::syslog::parse_line;
use varde_core::{BatchBuilder, CollectorId, Envelope, Kommunenummer, SourceKind};

#[derive(Parser)]
#[command(name = "varde-bench", about = "Varde's benchmarks")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// The collector's path: parse → batch → encode, and the pipeline's decode.
    Edge {
        /// Lines to process.
        #[arg(long, default_value_t = 1_000_000)]
        lines: usize,
        /// Rows per batch.
        #[arg(long, default_value_t = 5000)]
        batch: usize,
    },
    /// Sigma matching on SigmaHQ rules and replicated regression samples.
    Sigma(sigma::Options),
    /// The central path under load: broker → `varde pipeline` → ClickHouse, with latency.
    Pipeline(pipeline::Options),
    /// Capture replay into flows, beside softflowd and pmacctd on the same file.
    Flows(flows::Options),
    /// Sigma correlations beside rsigma's on the same stream, and the cost of open groups.
    Correlate(correlate::Options),
}

fn rate(n: usize, secs: f64) -> String {
    format!("{:>12.0}", n as f64 / secs.max(1e-9))
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Edge { lines, batch } => edge(lines, batch),
        Command::Sigma(options) => sigma::run(&options),
        Command::Pipeline(options) => pipeline::run(&options),
        Command::Flows(options) => flows::run(&options),
        Command::Correlate(options) => correlate::run(&options),
    }
}

fn edge(lines: usize, batch: usize) -> Result<()> {
    let batch = batch.max(1);
    let tenant = Kommunenummer::parse("0301")?;
    let collector = CollectorId::new("k0301-bench")?;
    let now = 1_714_557_600_000_000;
    let input = sample_lines("0301", lines, now);
    let input_bytes: usize = input.iter().map(|l| l.len() + 1).sum();

    let t = Instant::now();
    let events: Vec<_> = input.iter().map(|l| parse_line(l, now)).collect();
    let parse_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut batches = Vec::new();
    for chunk in events.chunks(batch) {
        let mut b = BatchBuilder::new(SourceKind::Syslog, tenant, collector.clone(), chunk.len());
        for e in chunk {
            b.push(e)?;
        }
        batches.push(b.finish()?);
    }
    let build_s = t.elapsed().as_secs_f64();

    let envelopes = batches
        .into_iter()
        .enumerate()
        .map(|(seq, b)| Envelope::new(SourceKind::Syslog, tenant, collector.clone(), seq as u64, b))
        .collect::<Result<Vec<_>, _>>()?;
    let t = Instant::now();
    let mut unsigned = Vec::with_capacity(envelopes.len());
    for env in &envelopes {
        unsigned.push(env.encode()?);
    }
    let unsigned_s = t.elapsed().as_secs_f64();
    drop(unsigned);
    // What a collector does: encode and sign with its Ed25519 key.
    let (key, _) = varde_core::CollectorKey::generate()?;
    let t = Instant::now();
    let mut wire = Vec::with_capacity(envelopes.len());
    for env in &envelopes {
        wire.push(env.encode_signed(&key)?);
    }
    let encode_s = t.elapsed().as_secs_f64();
    let wire_bytes: usize = wire.iter().map(Vec::len).sum();
    // What the pipeline does before decoding: check the signature.
    let t = Instant::now();
    for w in &wire {
        varde_core::EnvelopeHeader::verify(w, &key.public_key())?;
    }
    let verify_s = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let mut decoded_rows = 0usize;
    for w in &wire {
        decoded_rows += Envelope::decode(w)?.batch.num_rows();
    }
    let decode_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(
        decoded_rows == lines,
        "decoded {decoded_rows} of {lines} rows"
    );

    println!(
        "varde-bench edge: {lines} lines ({:.1} MB of syslog), {batch} rows per batch, one thread",
        input_bytes as f64 / 1e6
    );
    println!("{:<34} {:>12}", "stage", "events/s");
    println!(
        "{:<34} {}",
        "parse syslog (RFC 5424/3164)",
        rate(lines, parse_s)
    );
    println!("{:<34} {}", "build Arrow batches", rate(lines, build_s));
    println!(
        "{:<34} {}",
        "encode envelopes (IPC + zstd 3)",
        rate(lines, unsigned_s)
    );
    println!(
        "{:<34} {}",
        "encode + sign (Ed25519)",
        rate(lines, encode_s)
    );
    println!("{:<34} {}", "verify signatures", rate(lines, verify_s));
    println!(
        "{:<34} {}",
        "decode + validate envelopes",
        rate(lines, decode_s)
    );
    println!(
        "{:<34} {}",
        "collector total (parse+build+enc)",
        rate(lines, parse_s + build_s + encode_s)
    );
    println!(
        "wire: {:.1} bytes/event ({:.1}x smaller than the syslog text), {} envelopes",
        wire_bytes as f64 / lines as f64,
        input_bytes as f64 / wire_bytes as f64,
        wire.len()
    );
    let per_batch = |secs: f64| secs / wire.len().max(1) as f64 * 1e6;
    println!(
        "per batch of {batch}: signing adds {:.1} µs, verifying takes {:.1} µs",
        per_batch(encode_s - unsigned_s),
        per_batch(verify_s)
    );
    edge_stages(lines, now)
}

/// The edge stages on the mixed edge sample: privacy scanning and `edge_event`.
fn edge_stages(lines: usize, now: i64) -> Result<()> {
    let input = edge_sample_lines("0301", lines, now);
    let input_bytes: usize = input.iter().map(|l| l.len() + 1).sum();
    let key = PrivacyKey::from_bytes([42; 32]);
    let ids_only = Privacy::new(&key, PrivacyPolicy::default());
    let with_ips = Privacy::new(
        &key,
        PrivacyPolicy {
            ip_addresses: IpAddressPolicy::Pseudonymise,
            ..PrivacyPolicy::default()
        },
    );
    let scan = |p: &Privacy| {
        let mut counts = PrivacyCounts::default();
        let t = Instant::now();
        let mut changed = 0usize;
        for line in &input {
            changed += usize::from(matches!(
                p.scrub_text(line, &mut counts),
                std::borrow::Cow::Owned(_)
            ));
        }
        (t.elapsed().as_secs_f64(), counts, changed)
    };
    let (ids_s, ids_counts, ids_changed) = scan(&ids_only);
    let (ips_s, ips_counts, _) = scan(&with_ips);

    let source = EdgeSource::new(ids_only);
    let t = Instant::now();
    let mut kinds = [0usize; SourceKind::ALL.len()];
    for line in &input {
        let (kind, event) = edge_event(line, now, &source);
        kinds[usize::from(kind.code() - 1)] += 1;
        std::hint::black_box(event);
    }
    let edge_s = t.elapsed().as_secs_f64();
    let counts = source.stats().snapshot();

    println!();
    println!(
        "edge sample: {lines} lines ({:.1} MB: syslog, access logs, IIS, JSON logins), one thread",
        input_bytes as f64 / 1e6
    );
    println!("{:<34} {:>12} {:>8}", "stage", "lines/s", "MB/s");
    let mbs = |secs: f64| format!("{:>8.1}", input_bytes as f64 / 1e6 / secs.max(1e-9));
    println!(
        "{:<34} {} {}",
        "privacy scan (identity numbers)",
        rate(lines, ids_s),
        mbs(ids_s)
    );
    println!(
        "{:<34} {} {}",
        "privacy scan (ids + IP addresses)",
        rate(lines, ips_s),
        mbs(ips_s)
    );
    println!(
        "{:<34} {} {}",
        "edge_event (syslog+parse+privacy)",
        rate(lines, edge_s),
        mbs(edge_s)
    );
    println!(
        "pseudonymised: {} identity numbers in {} lines, {} addresses (with IPs on); {} account numbers kept",
        ids_counts.national_ids,
        ids_changed,
        ips_counts.ip_addresses,
        ids_counts.account_numbers_kept
    );
    let kinds: Vec<String> = SourceKind::ALL
        .iter()
        .zip(kinds)
        .filter(|(_, n)| *n > 0)
        .map(|(k, n)| format!("{k} {n}"))
        .collect();
    println!(
        "edge events by kind: {}; unparsed {}, parse failures {}",
        kinds.join(", "),
        counts.unparsed_lines,
        counts.parse_failures
    );
    Ok(())
}
