//! Network flows at the edge: packets decoded ([`decode`]), aggregated into bidirectional flows
//! ([`table`]) with the metadata a CERT uses and nothing of the payload ([`meta`]: DNS
//! questions and answers, TLS SNI, HTTP Host), attributed to the shared components, and read
//! from `.pcap`/`.pcapng` files ([`pcap`]) for offline analysis and tests, captured live on an
//! interface ([`capture`]), or received as NetFlow/IPFIX exports ([`netflow`]).
//!
//! A flow's `src` is the side that opened it (the first packet seen, or the client of a TCP
//! handshake first seen at its SYN-ACK); `out` counts what `src` sent, `in` what it received.
//! Bytes are IP bytes (header and payload, as NetFlow counts them), not link-layer frames.

pub mod capture;
pub mod decode;
pub mod meta;
pub mod netflow;
pub mod pcap;
pub mod table;

use std::net::IpAddr;

use serde::Serialize;
use varde_core::{ComponentRegistry, Event, Value};

/// One flow, as reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlowRecord {
    /// The side that opened the flow.
    pub src_ip: IpAddr,
    /// Its port (0 for protocols without ports).
    pub src_port: u16,
    /// The other side.
    pub dst_ip: IpAddr,
    /// Its port.
    pub dst_port: u16,
    /// IP protocol number (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6).
    pub protocol: u8,
    /// First packet, µs since the epoch.
    #[serde(rename = "first_seen", serialize_with = "rfc3339")]
    pub first_us: i64,
    /// Last packet, µs since the epoch.
    #[serde(rename = "last_seen", serialize_with = "rfc3339")]
    pub last_us: i64,
    /// Packets `src` sent.
    pub packets_out: u64,
    /// IP bytes `src` sent.
    pub bytes_out: u64,
    /// Packets `src` received.
    pub packets_in: u64,
    /// IP bytes `src` received.
    pub bytes_in: u64,
    /// TCP flags seen either way, OR-ed (TCP only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<u8>,
    /// ICMP type of the first ICMP packet.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    /// Its code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// The DNS question asked in the flow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns_query: Option<String>,
    /// The addresses the DNS answers gave for it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_answers: Vec<IpAddr>,
    /// The server name of a TLS ClientHello.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_sni: Option<String>,
    /// The Host of an HTTP request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http_host: Option<String>,
    /// The shared component the flow concerns (see [`Attribution`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub component: Option<String>,
    /// The NetFlow/IPFIX exporter's address, for exported flows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exporter: Option<String>,
    /// The exporter's sampling interval (1 in N packets) when it samples; the counts are
    /// already multiplied by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampling_rate: Option<u32>,
}

fn rfc3339<S: serde::Serializer>(us: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_us(*us))
}

/// µs since the epoch as RFC 3339 UTC with microseconds.
pub fn format_us(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_default()
}

impl FlowRecord {
    /// A flow of `protocol` from `src` to `dst` with nothing else known yet: ports, times and
    /// counts zero, every optional field empty.
    pub fn new(src: IpAddr, dst: IpAddr, protocol: u8) -> Self {
        FlowRecord {
            src_ip: src,
            src_port: 0,
            dst_ip: dst,
            dst_port: 0,
            protocol,
            first_us: 0,
            last_us: 0,
            packets_out: 0,
            bytes_out: 0,
            packets_in: 0,
            bytes_in: 0,
            tcp_flags: None,
            icmp_type: None,
            icmp_code: None,
            dns_query: None,
            dns_answers: Vec::new(),
            tls_sni: None,
            http_host: None,
            component: None,
            exporter: None,
            sampling_rate: None,
        }
    }

    /// The flow as a `flow` event (received at `receive_time_us`).
    pub fn event(&self, receive_time_us: i64) -> Event {
        let mut typed = vec![
            ("src_ip", Value::Str(self.src_ip.to_string())),
            ("src_port", Value::UInt(u64::from(self.src_port))),
            ("dst_ip", Value::Str(self.dst_ip.to_string())),
            ("dst_port", Value::UInt(u64::from(self.dst_port))),
            ("protocol", Value::UInt(u64::from(self.protocol))),
            ("flow_start", Value::Time(self.first_us)),
            ("flow_end", Value::Time(self.last_us)),
            ("packets_out", Value::UInt(self.packets_out)),
            ("bytes_out", Value::UInt(self.bytes_out)),
            ("packets_in", Value::UInt(self.packets_in)),
            ("bytes_in", Value::UInt(self.bytes_in)),
        ];
        let mut opt = |name: &'static str, v: Option<Value>| {
            if let Some(v) = v {
                typed.push((name, v));
            }
        };
        opt(
            "tcp_flags",
            self.tcp_flags.map(|f| Value::UInt(u64::from(f))),
        );
        opt(
            "icmp_type",
            self.icmp_type.map(|f| Value::UInt(u64::from(f))),
        );
        opt(
            "icmp_code",
            self.icmp_code.map(|f| Value::UInt(u64::from(f))),
        );
        opt("dns_query", self.dns_query.clone().map(Value::Str));
        opt("tls_sni", self.tls_sni.clone().map(Value::Str));
        opt("http_host", self.http_host.clone().map(Value::Str));
        opt("component", self.component.clone().map(Value::Str));
        opt("exporter", self.exporter.clone().map(Value::Str));
        opt(
            "sampling_rate",
            self.sampling_rate.map(|r| Value::UInt(u64::from(r))),
        );
        let attrs = if self.dns_answers.is_empty() {
            Vec::new()
        } else {
            let answers: Vec<String> = self.dns_answers.iter().map(|a| a.to_string()).collect();
            vec![("dns_answers".to_owned(), answers.join(","))]
        };
        Event {
            event_time_us: self.first_us,
            receive_time_us,
            typed,
            attrs,
            ..Event::default()
        }
    }
}

/// A flow as the shipper's input: attributed to a component on its real addresses, then
/// pseudonymised by `privacy` like every event, as a `flow` event received now.
pub fn shipper_input(
    mut flow: FlowRecord,
    attribution: &mut Attribution,
    privacy: &crate::privacy::Privacy,
) -> crate::shipper::Input {
    attribution.attribute(&mut flow);
    let mut event = flow.event(crate::sources::now_us());
    privacy.scrub_event(&mut event);
    crate::shipper::Input::Event(varde_core::SourceKind::Flow, event)
}

/// Which shared component a flow concerns: by the names in it (TLS SNI, HTTP Host, DNS
/// question) against the registry's host names, by its far end against the registry's networks,
/// and by addresses DNS answers gave for a component's names (learned as flows pass, at most
/// [`Attribution::LEARNED_MAX`], the oldest forgotten first).
#[derive(Debug)]
pub struct Attribution {
    registry: ComponentRegistry,
    learned: std::collections::HashMap<IpAddr, String>,
    order: std::collections::VecDeque<IpAddr>,
}

impl Attribution {
    /// Most addresses learned from DNS answers.
    pub const LEARNED_MAX: usize = 65_536;

    /// Attribution by `registry`.
    pub fn new(registry: ComponentRegistry) -> Self {
        Attribution {
            registry,
            learned: std::collections::HashMap::new(),
            order: std::collections::VecDeque::new(),
        }
    }

    /// Sets `flow.component`, and learns the addresses of a component's DNS answers.
    pub fn attribute(&mut self, flow: &mut FlowRecord) {
        let by_name = [&flow.tls_sni, &flow.http_host, &flow.dns_query]
            .into_iter()
            .flatten()
            .find_map(|n| self.registry.match_host(n))
            .map(|c| c.id.clone());
        if let (Some(id), Some(_)) = (&by_name, &flow.dns_query) {
            for a in &flow.dns_answers {
                if self.learned.insert(*a, id.clone()).is_none() {
                    self.order.push_back(*a);
                    if self.order.len() > Self::LEARNED_MAX
                        && let Some(old) = self.order.pop_front()
                    {
                        self.learned.remove(&old);
                    }
                }
            }
        }
        flow.component = by_name
            .or_else(|| {
                [flow.dst_ip, flow.src_ip]
                    .into_iter()
                    .find_map(|ip| self.registry.match_ip(ip))
                    .map(|c| c.id.clone())
            })
            .or_else(|| {
                [flow.dst_ip, flow.src_ip]
                    .into_iter()
                    .find_map(|ip| self.learned.get(&ip).cloned())
            });
    }
}
