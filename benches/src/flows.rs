//! `flows`: capture replay into flow records, Varde beside Debian's `softflowd` and `pmacctd` on
//! the same file, each pinned to one core (`taskset -c 0`) and measured by GNU `time` (wall,
//! user + system CPU, peak resident memory).
//!
//! The file is synthetic and deterministic: `--flows` TCP conversations between clients in
//! 10.0.0.0/8 and 50 servers, `--packets` Ethernet/IPv4/TCP frames in all, dealt round-robin so
//! that every flow is open at once (the peak memory is the memory of that many active flows),
//! 1 µs apart (no flow times out before the end of the file); the first packet of each flow a
//! SYN, then alternately client and server with 40–200 bytes of payload.
//!
//! - Varde: `varde-collector pcap <file> --format jsonl > /dev/null` (decode, flow table, JSON
//!   out).
//! - softflowd: `softflowd -r <file> -n 127.0.0.1:9 -v 9 -d -m <2 × flows>` (its flow table,
//!   large enough for every flow, NetFlow v9 export to the discard port).
//! - pmacctd: a configuration file with `pcap_savefile`, the `print` plugin aggregating by
//!   `src_host,dst_host,src_port,dst_port,proto` into CSV (262,139 cache entries), and a 256 MiB
//!   plugin pipe (with the default pipe it loses most packets when a file is replayed at full
//!   speed; with 64 MiB it still lost 19 % here). Its core and plugin are two processes, both on
//!   the one core; `time` counts both. Its wall time includes a 2 s sleep pmacctd takes before
//!   reading a file.
//!
//! softflowd and pmacctd report one-way flows (two per conversation); Varde reports
//! conversations. "packets" is the packets the program accounted for in its flows: every one
//! of the file's frames, when nothing was lost.

use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapPacket, PcapWriter};

/// Options of `varde-bench flows`.
#[derive(clap::Args)]
pub struct Options {
    /// The `varde-collector` binary (build it with `--release`).
    #[arg(long)]
    pub collector: PathBuf,
    /// Frames in the file.
    #[arg(long, default_value_t = 2_000_000)]
    pub packets: usize,
    /// Flows in the file (all open at once).
    #[arg(long, default_value_t = 100_000)]
    pub flows: usize,
    /// Keep the generated file here instead of a temporary directory.
    #[arg(long)]
    pub keep: Option<PathBuf>,
    /// Runs of each program; the one with the least CPU time is shown (the others were slowed
    /// by something else on the machine).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

/// The run of `f` with the least CPU time, of `runs`.
fn best(runs: usize, mut f: impl FnMut() -> Result<Measured>) -> Result<Measured> {
    let mut best: Option<Measured> = None;
    for _ in 0..runs.max(1) {
        let m = f()?;
        if best.as_ref().is_none_or(|b| m.cpu < b.cpu) {
            best = Some(m);
        }
    }
    best.ok_or_else(|| anyhow::anyhow!("no run"))
}

fn generate(path: &Path, packets: usize, flows: usize) -> Result<u64> {
    let file = std::fs::File::create(path).with_context(|| format!("{}", path.display()))?;
    let mut writer = PcapWriter::new(BufWriter::new(file))?;
    let payload = [0x61u8; 200];
    let mut frame = Vec::with_capacity(400);
    let mut bytes = 0u64;
    let flows = flows.max(1);
    for i in 0..packets {
        let flow = i % flows;
        let nth = i / flows;
        let client = [10, (flow >> 16) as u8, (flow >> 8) as u8, flow as u8];
        let server = [192, 0, 2, (flow % 50) as u8 + 1];
        let client_port = 1024 + (flow % 60_000) as u16;
        let from_client = nth.is_multiple_of(2);
        let (src, dst, sport, dport) = if from_client {
            (client, server, client_port, 443)
        } else {
            (server, client, 443, client_port)
        };
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(src, dst, 64)
            .tcp(sport, dport, nth as u32 * 1000, 65_000);
        let size = if nth == 0 { 0 } else { 40 + (i * 7919) % 161 };
        frame.clear();
        if nth == 0 {
            builder.syn().write(&mut frame, &[])?;
        } else {
            builder
                .ack(nth as u32)
                .psh()
                .write(&mut frame, &payload[..size])?;
        }
        bytes += frame.len() as u64;
        let ts = Duration::from_micros(1_764_000_000_000_000 + i as u64);
        writer.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))?;
    }
    Ok(bytes)
}

/// Wall seconds, CPU seconds (user + system) and peak resident KiB of one run, and its stdout.
struct Measured {
    wall: f64,
    cpu: f64,
    max_rss_kib: u64,
    stdout: String,
    stderr: String,
}

/// Runs `program args` pinned and timed; with `log`, its output goes to that file instead of
/// pipes (pmacctd's print plugin, a process of its own, does not purge its cache into its
/// output file when its standard streams are pipes).
fn measure(program: &str, args: &[&str], log: Option<&Path>) -> Result<Measured> {
    let times = tempfile::NamedTempFile::new()?;
    let mut cmd = Command::new("/usr/bin/time");
    cmd.args(["-f", "%e %U %S %M", "-o"])
        .arg(times.path())
        .args(["taskset", "-c", "0", program])
        .args(args)
        .stdin(Stdio::null());
    if let Some(log) = log {
        let f = std::fs::File::create(log)?;
        cmd.stdout(f.try_clone()?).stderr(f);
    }
    let out = cmd
        .output()
        .with_context(|| format!("running {program} under /usr/bin/time and taskset"))?;
    if !out.status.success() {
        bail!(
            "{program} failed: {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    let text = std::fs::read_to_string(times.path())?;
    let f: Vec<f64> = text
        .lines()
        .last()
        .unwrap_or("")
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    if f.len() != 4 {
        bail!("unexpected /usr/bin/time output: {text}");
    }
    Ok(Measured {
        wall: f[0],
        cpu: f[1] + f[2],
        max_rss_kib: f[3] as u64,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Runs the benchmark and prints one row per program.
pub fn run(o: &Options) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let path = o
        .keep
        .clone()
        .unwrap_or_else(|| dir.path().join("flows.pcap"));
    let bytes = generate(&path, o.packets, o.flows)?;
    let file = path.display().to_string();
    println!(
        "flows: {} frames ({:.0} MiB of frames), {} flows, all open at once; one core (taskset -c 0)",
        o.packets,
        bytes as f64 / 1_048_576.0,
        o.flows
    );
    println!(
        "{:<12} {:>8} {:>8} {:>14} {:>12} {:>10} {:>10} {:>12}",
        "program",
        "wall s",
        "cpu s",
        "packets/s cpu",
        "flows/s cpu",
        "flows out",
        "packets",
        "peak RSS MiB"
    );
    let row = |name: &str, m: &Measured, flows_out: Option<u64>, packets: Option<u64>| {
        let pps = o.packets as f64 / m.cpu.max(1e-3);
        let fps = o.flows as f64 / m.cpu.max(1e-3);
        let shown = |n: Option<u64>| n.map_or("?".to_owned(), |n| n.to_string());
        println!(
            "{:<12} {:>8.2} {:>8.2} {:>14.0} {:>12.0} {:>10} {:>10} {:>12.1}",
            name,
            m.wall,
            m.cpu,
            pps,
            fps,
            shown(flows_out),
            shown(packets),
            m.max_rss_kib as f64 / 1024.0
        );
    };

    let collector = o.collector.display().to_string();
    let varde = best(o.runs, || {
        measure(&collector, &["pcap", &file, "--format", "jsonl"], None)
    })?;
    let (mut varde_flows, mut varde_packets) = (0u64, 0u64);
    for line in varde.stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line)?;
        varde_flows += 1;
        varde_packets +=
            v["packets_out"].as_u64().unwrap_or(0) + v["packets_in"].as_u64().unwrap_or(0);
    }
    row("varde", &varde, Some(varde_flows), Some(varde_packets));

    let max_flows = (2 * o.flows + 1000).to_string();
    match best(o.runs, || {
        measure(
            "softflowd",
            &[
                "-r",
                &file,
                "-n",
                "127.0.0.1:9",
                "-v",
                "9",
                "-d",
                "-m",
                &max_flows,
            ],
            None,
        )
    }) {
        Ok(m) => {
            // softflowd's closing statistics: "flushed = N" (its flows) and per protocol
            // "tcp (6): <octets> <packets> …".
            let text = format!("{}\n{}", m.stdout, m.stderr);
            let flows = text.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("flushed =")
                    .and_then(|n| n.trim().parse::<u64>().ok())
            });
            let packets = text.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("tcp (6):")
                    .and_then(|rest| rest.split_whitespace().nth(1))
                    .and_then(|n| n.parse::<u64>().ok())
            });
            // softflowd counts a conversation as one flow internally and exports it both ways.
            row("softflowd", &m, flows.map(|f| 2 * f), packets);
        }
        Err(e) => println!("softflowd    not measured: {e}"),
    }
    let csv = dir.path().join("pmacct.csv");
    let conf = dir.path().join("pmacct.conf");
    std::fs::write(
        &conf,
        format!(
            "daemonize: false\npcap_savefile: {file}\npcap_savefile_wait: false\nplugins: print\n\
             aggregate: src_host,dst_host,src_port,dst_port,proto\nprint_output: csv\n\
             print_output_file: {}\nprint_cache_entries: 262139\n\
             plugin_buffer_size: 102400\nplugin_pipe_size: 268435456\n",
            csv.display()
        ),
    )?;
    let conf_arg = conf.display().to_string();
    let pmacct_log = dir.path().join("pmacct.log");
    // Each run waits for the print plugin, which may still be writing when the core has
    // exited, until the file exists and stops growing (at most 60 s); flows and packets are
    // those of the last run.
    match best(o.runs, || {
        let _ = std::fs::remove_file(&csv);
        let m = measure("pmacctd", &["-f", &conf_arg], Some(&pmacct_log))?;
        let mut last = None;
        for _ in 0..120 {
            let size = std::fs::metadata(&csv).ok().map(|m| m.len());
            if size.is_some() && size == last {
                break;
            }
            last = size;
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(m)
    }) {
        Ok(m) => {
            let text = std::fs::read_to_string(&csv).unwrap_or_default();
            let rows: Vec<&str> = text.lines().skip(1).collect();
            let packets = rows
                .iter()
                .filter_map(|r| r.split(',').nth(5)?.parse::<u64>().ok())
                .sum();
            if rows.is_empty() {
                eprintln!(
                    "pmacctd wrote no flows to {}: {}",
                    csv.display(),
                    std::fs::read_to_string(&pmacct_log)
                        .unwrap_or_default()
                        .lines()
                        .rev()
                        .take(5)
                        .collect::<Vec<_>>()
                        .join(" | ")
                );
            }
            row("pmacctd", &m, Some(rows.len() as u64), Some(packets));
        }
        Err(e) => println!("pmacctd      not measured: {e}"),
    }
    Ok(())
}
