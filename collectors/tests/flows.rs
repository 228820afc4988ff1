//! `varde-collector pcap` against real traffic and a real peer: on the loopback interface,
//! curl fetches pages from Python's `http.server` (one with the Host of Altinn) and OpenSSL's
//! `s_client` makes a TLS handshake with `s_server` naming ID-porten; Debian's `tcpdump`
//! captures it all to a file. Varde's flows of that file must be exactly the conversations
//! `tshark -z conv,tcp` finds in it: the same endpoints, packets each way, and bytes each way
//! (tshark counts frames: Varde counts IP bytes, as NetFlow does, so each frame's 14-byte
//! Ethernet header is taken off tshark's figure). The HTTP Host and the TLS server name, and the
//! shared components they name, must be found; the same capture as pcapng must give the same
//! flows; a capture cut short must give the flows before the cut and fail saying so.
//!
//! Capturing needs `CAP_NET_RAW` (CI runs as root): without it the test says so and skips.
//! `tcpdump` and `tshark` come from Debian (`.ci/run` installs them).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn collector() -> &'static str {
    env!("CARGO_BIN_EXE_varde-collector")
}

fn free_port() -> u16 {
    common::free_port()
}

fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One flow as `varde-collector pcap` printed it.
#[derive(Debug, serde::Deserialize)]
struct Flow {
    src_ip: String,
    src_port: u16,
    dst_ip: String,
    dst_port: u16,
    protocol: u8,
    packets_out: u64,
    bytes_out: u64,
    packets_in: u64,
    bytes_in: u64,
    tls_sni: Option<String>,
    http_host: Option<String>,
    component: Option<String>,
}

fn flows_of(file: &Path) -> (Vec<Flow>, String, bool) {
    let out = Command::new(collector())
        .args(["pcap", "--format", "jsonl"])
        .arg(file)
        .output()
        .expect("varde-collector runs");
    let flows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    (
        flows,
        String::from_utf8_lossy(&out.stderr).into_owned(),
        out.status.success(),
    )
}

/// tshark's TCP conversations: (A, B) → ((frames, bytes) A→B, (frames, bytes) B→A).
type Conversations = BTreeMap<(String, String), ((u64, u64), (u64, u64))>;

fn tshark_conversations(file: &Path) -> Conversations {
    tshark_conversations_of(file, "tcp")
}

/// tshark's conversations of `proto` (`tcp` or `udp`).
fn tshark_conversations_of(file: &Path, proto: &str) -> Conversations {
    let out = Command::new("tshark")
        .args(["-n", "-q", "-z", &format!("conv,{proto}"), "-r"])
        .arg(file)
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut convs = Conversations::new();
    for line in text.lines().filter(|l| l.contains("<->")) {
        // A <-> B  frames(B→A) n bytes  frames(A→B) n bytes  total …
        let words: Vec<&str> = line.split_whitespace().collect();
        assert!(
            words.len() > 8 && words[5] == "bytes" && words[8] == "bytes",
            "tshark printed a size in other units than bytes; keep the test's traffic under 10 kB a way: {line}"
        );
        let n = |i: usize| words[i].parse::<u64>().unwrap_or_else(|_| panic!("{line}"));
        convs.insert(
            (words[0].to_owned(), words[2].to_owned()),
            ((n(6), n(7)), (n(3), n(4))),
        );
    }
    convs
}

/// Python's `http.server` on `ip:port`, serving one small page from `<dir>/www`.
fn serve_page(dir: &Path, ip: &str, port: u16) -> Killed {
    let www = dir.join("www");
    std::fs::create_dir(&www).expect("www");
    std::fs::write(www.join("index.html"), "<p>Hei fra Varde</p>\n").expect("page");
    Killed(
        Command::new("python3")
            .args(["-m", "http.server", &port.to_string(), "--bind", ip])
            .current_dir(&www)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("http.server starts"),
    )
}

/// A typed field of a flow event read back from Kafka, if set.
fn field(e: &common::Arrived, name: &str) -> Option<String> {
    e.typed
        .iter()
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.clone())
}

/// A numeric typed field of a flow event.
fn number(e: &common::Arrived, name: &str) -> u64 {
    field(e, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in {:?}", e.typed))
}

/// Checks a flow event against tshark's conversations: the same endpoints (either way round),
/// and packets and bytes each way (tshark's frame bytes less the 14-byte Ethernet header of
/// each frame). Returns the flow's packets.
fn assert_is_a_conversation(e: &common::Arrived, convs: &Conversations) -> u64 {
    let end =
        |ip: &str, port: &str| format!("{}:{}", field(e, ip).unwrap_or_default(), number(e, port));
    let (a, b) = (end("src_ip", "src_port"), end("dst_ip", "dst_port"));
    let (forward, backward) = convs
        .get(&(a.clone(), b.clone()))
        .copied()
        .or_else(|| convs.get(&(b.clone(), a.clone())).map(|&(ba, ab)| (ab, ba)))
        .unwrap_or_else(|| panic!("tshark has no conversation {a} <-> {b}: {convs:#?}"));
    let (po, pi) = (number(e, "packets_out"), number(e, "packets_in"));
    assert_eq!(
        (po, number(e, "bytes_out") + 14 * po),
        forward,
        "{a} -> {b}"
    );
    assert_eq!(
        (pi, number(e, "bytes_in") + 14 * pi),
        backward,
        "{b} -> {a}"
    );
    po + pi
}

/// Real traffic on the loopback interface captured by tcpdump into `<dir>/lo.pcap`: two curl
/// requests to Python's `http.server` (one with Altinn's Host), a TLS handshake naming
/// ID-porten between OpenSSL's `s_client` and `s_server`. `None` (said on stderr) when this
/// process may not capture. Returns the file and the servers' ports.
fn capture_traffic(dir: &Path) -> Option<(std::path::PathBuf, u16, u16)> {
    for tool in ["tcpdump", "tshark", "curl", "openssl", "python3"] {
        assert!(
            have(tool),
            "{tool} is missing: .ci/run installs it (apt-get install tcpdump tshark curl openssl)"
        );
    }
    let (http, tls) = (free_port(), free_port());
    let capture = dir.join("lo.pcap");
    let mut tcpdump = Killed(
        Command::new("tcpdump")
            .args(["-i", "lo", "-U", "--immediate-mode", "-n", "-w"])
            .arg(&capture)
            .arg(format!("tcp port {http} or tcp port {tls}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump starts"),
    );
    // tcpdump says "listening on lo" once it captures, or why it cannot.
    let mut stderr = tcpdump.0.stderr.take().expect("stderr");
    let mut said = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !String::from_utf8_lossy(&said).contains("listening on") {
        let mut byte = [0u8; 1];
        match std::io::Read::read(&mut stderr, &mut byte) {
            Ok(1) => said.push(byte[0]),
            _ => {
                let why = String::from_utf8_lossy(&said);
                if why.contains("ermission") || why.contains("not permitted") {
                    eprintln!("SKIPPED: tcpdump cannot capture here (needs CAP_NET_RAW): {why}");
                    return None;
                }
                panic!("tcpdump stopped: {why}");
            }
        }
        assert!(Instant::now() < deadline, "tcpdump did not start");
    }
    // tcpdump's further messages go nowhere, so it never blocks on a full pipe.
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));

    let _server = serve_page(dir, "127.0.0.1", http);
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
        ])
        .args([
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=login.idporten.no",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl req");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let _tls_server = Killed(
        Command::new("openssl")
            .args(["s_server", "-quiet", "-accept", &tls.to_string(), "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("s_server starts"),
    );
    wait_for_port(http);
    wait_for_port(tls);
    // The waits above opened and closed connections too: they are conversations like any other.
    for host in ["www.altinn.no", "127.0.0.1"] {
        let got = Command::new("curl")
            .args(["-s", "-H", &format!("Host: {host}")])
            .arg(format!("http://127.0.0.1:{http}/"))
            .output()
            .expect("curl");
        assert!(String::from_utf8_lossy(&got.stdout).contains("Hei fra Varde"));
    }
    let handshake = Command::new("openssl")
        .args(["s_client", "-connect", &format!("127.0.0.1:{tls}")])
        .args(["-servername", "login.idporten.no"])
        .stdin(Stdio::null())
        .output()
        .expect("s_client");
    assert!(
        String::from_utf8_lossy(&handshake.stdout).contains("BEGIN CERTIFICATE"),
        "{}",
        String::from_utf8_lossy(&handshake.stderr)
    );
    // Let the last FINs be captured, then stop tcpdump so that it writes everything out.
    std::thread::sleep(Duration::from_millis(1000));
    let _ = Command::new("kill")
        .args(["-INT", &tcpdump.0.id().to_string()])
        .status();
    let _ = tcpdump.0.wait();

    Some((capture, http, tls))
}

#[test]
fn flows_of_a_capture_are_the_conversations_tshark_sees() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((capture, http, tls)) = capture_traffic(dir.path()) else {
        return;
    };
    let convs = tshark_conversations(&capture);
    assert!(convs.len() >= 5, "tshark saw {convs:?}");
    let (flows, summary, ok) = flows_of(&capture);
    assert!(ok, "{summary}");
    assert_eq!(
        flows.len(),
        convs.len(),
        "{flows:#?}\n{convs:#?}\n{summary}"
    );
    for f in &flows {
        assert_eq!(f.protocol, 6);
        let a = format!("{}:{}", f.src_ip, f.src_port);
        let b = format!("{}:{}", f.dst_ip, f.dst_port);
        let (forward, backward) = match (
            convs.get(&(a.clone(), b.clone())),
            convs.get(&(b.clone(), a.clone())),
        ) {
            (Some(&(ab, ba)), _) => (ab, ba),
            (None, Some(&(ba, ab))) => (ab, ba),
            (None, None) => panic!("tshark has no conversation {a} <-> {b}: {convs:#?}"),
        };
        assert_eq!(
            (f.packets_out, f.bytes_out + 14 * f.packets_out),
            forward,
            "{a} -> {b}"
        );
        assert_eq!(
            (f.packets_in, f.bytes_in + 14 * f.packets_in),
            backward,
            "{b} -> {a}"
        );
        // The opener is the client: the servers' ports are the destination.
        assert!(f.dst_port == http || f.dst_port == tls, "{f:?}");
    }
    let altinn = flows
        .iter()
        .find(|f| f.http_host.as_deref() == Some("www.altinn.no"))
        .expect("the request to Altinn's host");
    assert_eq!(altinn.component.as_deref(), Some("altinn"));
    let plain = flows
        .iter()
        .find(|f| f.http_host.as_deref() == Some("127.0.0.1"))
        .expect("the other request");
    assert_eq!(plain.component, None);
    let idporten = flows
        .iter()
        .find(|f| f.tls_sni.is_some())
        .expect("the TLS handshake");
    assert_eq!(idporten.tls_sni.as_deref(), Some("login.idporten.no"));
    assert_eq!(idporten.component.as_deref(), Some("idporten"));
    assert!(summary.contains("\"malformed\":{}"), "{summary}");

    // The same capture as pcapng (written by tshark): the same flows.
    let ng = dir.path().join("lo.pcapng");
    let converted = Command::new("tshark")
        .args(["-F", "pcapng", "-r"])
        .arg(&capture)
        .arg("-w")
        .arg(&ng)
        .output()
        .expect("tshark converts");
    assert!(converted.status.success());
    let (ng_flows, ng_summary, ok) = flows_of(&ng);
    assert!(ok, "{ng_summary}");
    let key = |f: &Flow| {
        (
            f.src_port,
            f.dst_port,
            f.packets_out,
            f.bytes_out,
            f.packets_in,
            f.bytes_in,
        )
    };
    let mut expected: Vec<_> = flows.iter().map(key).collect();
    let mut got: Vec<_> = ng_flows.iter().map(key).collect();
    expected.sort_unstable();
    got.sort_unstable();
    assert_eq!(got, expected);

    // Cut short in the middle of its last packet: the flows before the cut, and an error.
    let bytes = std::fs::read(&capture).expect("read");
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 10]).expect("write");
    let (cut_flows, cut_summary, ok) = flows_of(&cut);
    assert!(!ok, "a file cut short is an error");
    assert!(cut_summary.contains("cut short"), "{cut_summary}");
    assert_eq!(cut_flows.len(), flows.len(), "{cut_summary}");
    let packets = |fs: &[Flow]| fs.iter().map(|f| f.packets_out + f.packets_in).sum::<u64>();
    assert_eq!(packets(&cut_flows) + 1, packets(&flows));
}

#[test]
fn what_is_not_a_capture_file_is_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let junk = dir.path().join("junk.pcap");
    std::fs::write(&junk, b"GET / HTTP/1.1\r\n").expect("write");
    let out = Command::new(collector())
        .arg("pcap")
        .arg(&junk)
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a pcap or pcapng file"), "{err}");
    assert!(out.stdout.is_empty());
}

#[test]
fn flows_sent_to_kafka_arrive_as_flow_events_with_tshark_s_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((capture, http, tls)) = capture_traffic(dir.path()) else {
        return;
    };
    let convs = tshark_conversations(&capture);
    let kafka = common::dev_kafka("flows");
    let tenant = varde_core::Kommunenummer::parse("0301").expect("Oslo");
    let topic = varde_transport::events_topic(&kafka.topic_prefix, tenant);
    common::create_topic(&kafka, &topic);
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        common::config_text(
            "k0301-flows",
            "0301",
            &dir.path().join("state"),
            &kafka,
            free_port(),
            "[flows]\nidle_timeout_s = 60\n",
        ),
    )
    .expect("config");
    let sent = Command::new(collector())
        .args(["send", "--config"])
        .arg(&config)
        .arg(&capture)
        .output()
        .expect("varde-collector send");
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let mut reader = common::Reader::new(&kafka, &topic);
    reader.until("every flow", |e| e.len() >= convs.len());
    assert_eq!(reader.events.len(), convs.len());
    let mut components = Vec::new();
    for e in &reader.events {
        assert_eq!(e.kind, varde_core::SourceKind::Flow);
        assert_is_a_conversation(e, &convs);
        assert_eq!(number(e, "protocol"), 6);
        let dst_port = number(e, "dst_port");
        assert!(dst_port == u64::from(http) || dst_port == u64::from(tls));
        if let Some(c) = field(e, "component") {
            components.push(c);
        }
    }
    components.sort();
    assert_eq!(components, vec!["altinn".to_owned(), "idporten".to_owned()]);
}

/// nfdump's reading of the flows in `dir` (written by nfcapd): (src, src port, dst, dst port,
/// protocol, packets, bytes) per flow.
fn nfdump_flows(dir: &Path) -> Vec<(String, u16, String, u16, String, u64, u64)> {
    let out = Command::new("nfdump")
        .arg("-R")
        .arg(dir)
        .args(["-o", "csv"])
        .output()
        .expect("nfdump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} in nfdump's header {header:?}"))
    };
    let (sa, da, sp, dp, pr, pkt, byt) = (
        col("sa"),
        col("da"),
        col("sp"),
        col("dp"),
        col("pr"),
        col("ipkt"),
        col("ibyt"),
    );
    lines
        .map(|l| l.split(',').map(str::trim).collect::<Vec<_>>())
        .filter(|w| w.len() == header.len())
        .map(|w| {
            let n = |i: usize| w[i].parse::<u64>().unwrap_or_else(|_| panic!("{w:?}"));
            (
                w[sa].to_owned(),
                n(sp) as u16,
                w[da].to_owned(),
                n(dp) as u16,
                w[pr].to_owned(),
                n(pkt),
                n(byt),
            )
        })
        .collect()
}

fn udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free UDP port")
}

/// softflowd reads the capture and exports its flows as NetFlow `version` to `port`.
fn softflowd_export(capture: &Path, version: u8, port: u16) {
    let out = Command::new("softflowd")
        .arg("-r")
        .arg(capture)
        .args([
            "-n",
            &format!("127.0.0.1:{port}"),
            "-v",
            &version.to_string(),
            "-d",
        ])
        .output()
        .expect("softflowd runs");
    assert!(
        out.status.success(),
        "softflowd -v {version}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn netflow_v5_v9_and_ipfix_from_softflowd_are_the_flows_nfdump_reads() {
    for tool in ["softflowd", "nfcapd", "nfdump"] {
        assert!(
            Command::new(tool).arg("-h").output().is_ok(),
            "{tool} is missing: .ci/run installs it (apt-get install softflowd nfdump)"
        );
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let Some((capture, _, _)) = capture_traffic(dir.path()) else {
        return;
    };
    // The peers' reading: softflowd's export of each version into nfcapd, read by nfdump.
    let mut expected = Vec::new();
    for version in [5u8, 9, 10] {
        let store = dir.path().join(format!("nfcapd-v{version}"));
        std::fs::create_dir(&store).expect("nfcapd dir");
        let port = udp_port();
        let mut nfcapd = Killed(
            Command::new("nfcapd")
                .arg("-w")
                .arg(&store)
                .args(["-p", &port.to_string(), "-b", "127.0.0.1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("nfcapd starts"),
        );
        std::thread::sleep(Duration::from_millis(500));
        softflowd_export(&capture, version, port);
        std::thread::sleep(Duration::from_millis(500));
        // nfcapd writes its file out when it stops.
        let _ = Command::new("kill")
            .args(["-TERM", &nfcapd.0.id().to_string()])
            .status();
        let _ = nfcapd.0.wait();
        let flows = nfdump_flows(&store);
        assert!(flows.len() >= 10, "v{version}: nfdump read {flows:?}");
        expected.extend(flows);
    }

    // Varde's: the same exports into a collector's netflow source, read back from Kafka.
    let kafka = common::dev_kafka("netflow");
    let tenant = varde_core::Kommunenummer::parse("1103").expect("Stavanger");
    let topic = varde_transport::events_topic(&kafka.topic_prefix, tenant);
    common::create_topic(&kafka, &topic);
    let listen = udp_port();
    let metrics_port = free_port();
    let config = dir.path().join("collector.toml");
    std::fs::write(
        &config,
        common::config_text(
            "k1103-netflow",
            "1103",
            &dir.path().join("state"),
            &kafka,
            metrics_port,
            &format!(
                "[batch]\nmax_delay_ms = 50\n\n[[sources]]\ntype = \"netflow\"\nlisten = \"127.0.0.1:{listen}\"\n"
            ),
        ),
    )
    .expect("config");
    let mut collector = common::Collector::start(&config, dir.path());
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port));
    common::eventually("the collector serving /metrics", || {
        common::http_get(metrics, "/health")
    });
    for version in [5u8, 9, 10] {
        softflowd_export(&capture, version, listen);
    }
    let mut reader = common::Reader::new(&kafka, &topic);
    reader.until("every exported flow", |e| e.len() >= expected.len());
    collector.assert_running();
    let mut got: Vec<_> = reader
        .events
        .iter()
        .map(|e| {
            assert_eq!(e.kind, varde_core::SourceKind::Flow);
            assert_eq!(field(e, "exporter").as_deref(), Some("127.0.0.1"));
            assert_eq!(number(e, "packets_in"), 0, "exported flows are one-way");
            (
                field(e, "src_ip").unwrap_or_default(),
                number(e, "src_port") as u16,
                field(e, "dst_ip").unwrap_or_default(),
                number(e, "dst_port") as u16,
                match number(e, "protocol") {
                    6 => "TCP".to_owned(),
                    other => other.to_string(),
                },
                number(e, "packets_out"),
                number(e, "bytes_out"),
            )
        })
        .collect();
    got.sort();
    expected.sort();
    assert_eq!(got, expected);
    // One exporter; v9 and IPFIX sent their templates; no datagram refused.
    let (_, page) = common::http_get(metrics, "/metrics").expect("metrics");
    let source = format!("{{source=\"netflow:127.0.0.1:{listen}\"}}");
    let m = |name: &str| {
        common::metric(&page, &format!("varde_collector_{name}{source}"))
            .unwrap_or_else(|| panic!("{name} in {page}"))
    };
    assert_eq!(m("source_netflow_exporters_total"), 1.0);
    assert!(m("source_netflow_templates_total") >= 2.0);
    assert_eq!(m("source_parse_errors_total"), 0.0);
    assert_eq!(m("source_events_total") as usize, expected.len());
    collector.terminate();
}

/// A veth pair with one end in a network namespace of its own: traffic between the namespace
/// and this one crosses `host_end` once each way. Removed on drop.
struct Veth {
    ns: String,
    host_end: String,
    host_ip: String,
}

impl Veth {
    fn create(tag: u16) -> Option<Veth> {
        let ns = format!("varde-{tag}");
        let (host_end, ns_end) = (format!("vh{tag}"), format!("vn{tag}"));
        let net = format!("10.{}.{}", 200 + (tag % 50), tag % 250);
        let host_ip = format!("{net}.1");
        let steps: Vec<Vec<String>> = vec![
            vec!["netns".into(), "add".into(), ns.clone()],
            vec![
                "link".into(),
                "add".into(),
                host_end.clone(),
                "type".into(),
                "veth".into(),
                "peer".into(),
                "name".into(),
                ns_end.clone(),
            ],
            vec![
                "link".into(),
                "set".into(),
                ns_end.clone(),
                "netns".into(),
                ns.clone(),
            ],
            vec![
                "addr".into(),
                "add".into(),
                format!("{host_ip}/24"),
                "dev".into(),
                host_end.clone(),
            ],
            vec!["link".into(), "set".into(), host_end.clone(), "up".into()],
            vec![
                "-n".into(),
                ns.clone(),
                "addr".into(),
                "add".into(),
                format!("{net}.2/24"),
                "dev".into(),
                ns_end.clone(),
            ],
            vec![
                "-n".into(),
                ns.clone(),
                "link".into(),
                "set".into(),
                ns_end.clone(),
                "up".into(),
            ],
        ];
        let veth = Veth {
            ns,
            host_end,
            host_ip,
        };
        for step in steps {
            let out = Command::new("ip").args(&step).output().ok()?;
            if !out.status.success() {
                eprintln!(
                    "SKIPPED: `ip {}` failed (a network namespace and a veth pair need root): {}",
                    step.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
                return None;
            }
        }
        Some(veth)
    }

    /// Runs `program args` inside the namespace.
    fn exec(&self, program: &str, args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", &self.ns, program])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_end])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A collector of municipality `tenant` capturing `veth`'s host end (flows ending after 1 s
/// idle; `extra` more lines of the source's table) into a topic of its own; returns once it
/// serves `/metrics` and has had a moment to open the capture.
fn capturing_collector(
    veth: &Veth,
    dir: &Path,
    tenant: &str,
    extra: &str,
) -> (
    varde_transport::kafka::KafkaSettings,
    String,
    common::Collector,
    std::net::SocketAddr,
) {
    let kafka = common::dev_kafka(&format!("capture-{tenant}"));
    let k = varde_core::Kommunenummer::parse(tenant).expect("tenant");
    let topic = varde_transport::events_topic(&kafka.topic_prefix, k);
    common::create_topic(&kafka, &topic);
    let metrics_port = free_port();
    let config = dir.join("collector.toml");
    std::fs::write(
        &config,
        common::config_text(
            &format!("k{tenant}-capture"),
            tenant,
            &dir.join("state"),
            &kafka,
            metrics_port,
            &format!(
                "[batch]\nmax_delay_ms = 50\n\n[flows]\nidle_timeout_s = 1\n\n[[sources]]\ntype = \"capture\"\ninterface = \"{}\"\n{extra}",
                veth.host_end
            ),
        ),
    )
    .expect("config");
    let collector = common::Collector::start(&config, dir);
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], metrics_port));
    common::eventually("the collector serving /metrics", || {
        common::http_get(metrics, "/health")
    });
    std::thread::sleep(Duration::from_millis(1500));
    (kafka, topic, collector, metrics)
}

#[test]
fn live_capture_on_an_interface_gives_the_conversations_tshark_sees() {
    let tag = (std::process::id() % 10_000) as u16;
    let Some(veth) = Veth::create(tag) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let http = free_port();
    let _server = serve_page(dir.path(), &veth.host_ip, http);
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect((veth.host_ip.as_str(), http)).is_err() {
        assert!(Instant::now() < deadline, "http.server did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The reference: tcpdump on the same interface.
    let capture = dir.path().join("veth.pcap");
    let mut tcpdump = Killed(
        Command::new("tcpdump")
            .args(["-i", &veth.host_end, "-U", "--immediate-mode", "-n", "-w"])
            .arg(&capture)
            .arg(format!("tcp port {http} or udp port 53"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("tcpdump starts"),
    );
    // A resolver on this side: dnsmasq answering for ID-porten's login name only.
    let _resolver = Killed(
        Command::new("dnsmasq")
            .args([
                "--no-daemon",
                "--conf-file=/dev/null",
                "--no-resolv",
                "--no-hosts",
            ])
            .args(["--bind-interfaces", "--port=53", "--user=root"])
            .arg(format!("--listen-address={}", veth.host_ip))
            .arg("--address=/login.idporten.no/192.0.2.77")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dnsmasq starts (apt-get install dnsmasq-base)"),
    );
    // Varde: a collector capturing the same interface, flows ending after 1 s idle.
    let (kafka, topic, mut collector, metrics) = capturing_collector(&veth, dir.path(), "4203", "");
    for page in ["/", "/index.html", "/nothing"] {
        let got = veth.exec(
            "curl",
            &[
                "-s",
                "-o",
                "/dev/null",
                &format!("http://{}:{http}{page}", veth.host_ip),
            ],
        );
        assert!(
            got.status.success(),
            "{}",
            String::from_utf8_lossy(&got.stderr)
        );
    }
    // And one DNS question from the namespace, with dig.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let answer = veth.exec(
            "dig",
            &[
                "+short",
                "+tries=1",
                "+time=1",
                &format!("@{}", veth.host_ip),
                "login.idporten.no",
            ],
        );
        if String::from_utf8_lossy(&answer.stdout).trim() == "192.0.2.77" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "dnsmasq did not answer: {answer:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(1000));
    let _ = Command::new("kill")
        .args(["-INT", &tcpdump.0.id().to_string()])
        .status();
    let _ = tcpdump.0.wait();
    let convs = tshark_conversations(&capture);
    assert_eq!(convs.len(), 3, "{convs:#?}");
    let dns_convs = tshark_conversations_of(&capture, "udp");
    assert!(!dns_convs.is_empty(), "tshark saw no DNS exchange");

    let mut reader = common::Reader::new(&kafka, &topic);
    reader.until("the three flows", |e| {
        e.iter()
            .filter(|a| a.kind == varde_core::SourceKind::Flow)
            .filter(|a| {
                a.typed
                    .iter()
                    .any(|(k, v)| *k == "dst_port" && *v == http.to_string())
            })
            .count()
            >= 3
    });
    collector.assert_running();
    let flows: Vec<_> = reader
        .events
        .iter()
        .filter(|a| a.kind == varde_core::SourceKind::Flow)
        .filter(|a| {
            a.typed
                .iter()
                .any(|(k, v)| *k == "dst_port" && *v == http.to_string())
        })
        .collect();
    assert_eq!(flows.len(), 3);
    let mut packets = 0;
    for e in flows {
        packets += assert_is_a_conversation(e, &convs);
    }
    // The DNS exchanges (dig may have asked more than once): each one flow with tshark's
    // counts, the question, the answer and the component it names.
    reader.until("the DNS flows", |e| {
        e.iter()
            .filter(|a| a.typed.iter().any(|(k, v)| *k == "dst_port" && v == "53"))
            .count()
            >= dns_convs.len()
    });
    let dns: Vec<_> = reader
        .events
        .iter()
        .filter(|a| a.typed.iter().any(|(k, v)| *k == "dst_port" && v == "53"))
        .collect();
    assert_eq!(dns.len(), dns_convs.len());
    for e in dns {
        assert_is_a_conversation(e, &dns_convs);
        assert_eq!(field(e, "dns_query").as_deref(), Some("login.idporten.no"));
        assert_eq!(field(e, "component").as_deref(), Some("idporten"));
        assert!(
            e.attrs
                .contains(&("dns_answers".to_owned(), "192.0.2.77".to_owned())),
            "{:?}",
            e.attrs
        );
    }
    let (_, page) = common::http_get(metrics, "/metrics").expect("metrics");
    let counted = common::metric(
        &page,
        &format!(
            "varde_collector_source_flow_packets_total{{source=\"capture:{}\"}}",
            veth.host_end
        ),
    )
    .unwrap_or_else(|| panic!("flow packets in {page}"));
    assert!(counted >= packets as f64, "{counted} < {packets}");
    collector.terminate();
}

/// The kernel's drops are counted: a capture socket with the smallest receive buffer the kernel
/// grants, flooded with UDP datagrams from the namespace (to a socket that never reads them, so
/// nothing answers), must lose frames, and every datagram the sender sent must be either in a
/// flow or in `varde_collector_source_capture_drops_total` (the sender's own count is the
/// reference; the only other frames on the link are a few of ARP and IPv6 neighbour discovery).
#[test]
fn frames_the_kernel_drops_from_a_full_capture_buffer_are_counted() {
    const PER_BURST: u64 = 20_000;
    // Next to the live capture test's pair (its tag is this one less): another subnet.
    let tag = (std::process::id() % 10_000 + 1) as u16;
    let Some(veth) = Veth::create(tag) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The datagrams' destination: bound on this side, never read.
    let sink = std::net::UdpSocket::bind((veth.host_ip.as_str(), 0)).expect("udp sink");
    let port = sink.local_addr().expect("addr").port();
    let (kafka, topic, mut collector, metrics) =
        capturing_collector(&veth, dir.path(), "4204", "receive_buffer_bytes = 1\n");
    let drops_metric = format!(
        "varde_collector_source_capture_drops_total{{source=\"capture:{}\"}}",
        veth.host_end
    );
    let drops = || {
        let (_, page) = common::http_get(metrics, "/metrics").expect("metrics");
        common::metric(&page, &drops_metric).unwrap_or_else(|| panic!("{drops_metric} in {page}"))
            as u64
    };
    // Bursts of full-size datagrams, each from a sender of its own (a flow of its own), until
    // the kernel has dropped some; the collector reads the kernel's counts every half second.
    let flood = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nn = 0\nfor _ in range({PER_BURST}):\n    try:\n        s.sendto(b'v' * 1400, ('{}', {port}))\n        n += 1\n    except OSError:\n        pass\nprint(n)\n",
        veth.host_ip
    );
    let (mut sent, mut bursts) = (0u64, 0usize);
    while bursts < 20 {
        let out = veth.exec("python3", &["-c", &flood]);
        assert!(out.status.success(), "{out:?}");
        sent += String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse::<u64>()
            .expect("the sender's count");
        bursts += 1;
        std::thread::sleep(Duration::from_millis(1200));
        if drops() > 0 {
            break;
        }
    }
    let is_ours = |a: &&common::Arrived| {
        a.kind == varde_core::SourceKind::Flow
            && a.typed
                .iter()
                .any(|(k, v)| *k == "dst_port" && *v == port.to_string())
    };
    let mut reader = common::Reader::new(&kafka, &topic);
    reader.until("a flow per burst", |e| {
        e.iter().filter(is_ours).count() >= bursts
    });
    let flows: Vec<_> = reader.events.iter().filter(is_ours).collect();
    assert_eq!(flows.len(), bursts, "one flow per sender");
    let captured: u64 = flows.iter().map(|e| number(e, "packets_out")).sum();
    assert!(
        flows.iter().all(|e| number(e, "packets_in") == 0),
        "nothing answered"
    );
    let dropped = drops();
    assert!(
        dropped > 0,
        "no drops after {bursts} bursts of {PER_BURST} datagrams into the smallest buffer"
    );
    assert!(captured < sent, "captured {captured} of {sent}");
    // Every datagram sent is in a flow or among the drops; the drops may also hold a few of
    // the link's own frames.
    assert!(
        captured + dropped >= sent && captured + dropped <= sent + 50,
        "sent {sent}, captured {captured}, the kernel dropped {dropped}"
    );
    eprintln!(
        "sent {sent} in {bursts} bursts: {captured} in flows, {dropped} dropped by the kernel"
    );
    collector.assert_running();
    collector.terminate();
    drop(sink);
}
