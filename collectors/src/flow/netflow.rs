//! NetFlow v5, v9 and IPFIX export packets into flow records, for municipalities whose firewall
//! or router already exports flows. Parsing is `netflow_parser`'s: templates are kept per
//! exporter (v9 by address and source id, IPFIX by address and observation domain, as RFC 3954
//! and RFC 7011 scope them), data that arrives before its template is held and replayed when the
//! template comes, and its limits bound what a hostile datagram can make it allocate.
//!
//! Exported flows are one-way: each record becomes a flow with `out` counts only (`in` is 0),
//! its exporter's address in `exporter`, and packets and bytes multiplied by the sampling
//! interval when the exporter samples (v5's header, or the record's `samplingInterval` /
//! `samplingPacketInterval`), with the interval in `sampling_rate`.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};

use netflow_parser::variable_versions::ipfix::FlowSetBody as IpfixBody;
use netflow_parser::variable_versions::ipfix::lookup::{IANAIPFixField as Iana, IPFixField};
use netflow_parser::variable_versions::v9::FlowSetBody as V9Body;
use netflow_parser::{
    AutoScopedParser, FieldValue, NetflowPacket, NetflowParser, PendingFlowsConfig, V9Field,
};

use super::FlowRecord;

/// What the receiver counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetflowStats {
    /// Datagrams received.
    pub datagrams: u64,
    /// Flow records made.
    pub records: u64,
    /// Datagrams (or their tails) the parser refused.
    pub errors: u64,
    /// Data records whose template had not arrived (held for replay by the parser).
    pub without_template: u64,
    /// Templates received.
    pub templates: u64,
    /// Exporters seen (addresses).
    pub exporters: BTreeSet<IpAddr>,
}

/// Export datagrams in, flow records out.
pub struct NetflowReceiver {
    parser: AutoScopedParser,
    stats: NetflowStats,
}

impl std::fmt::Debug for NetflowReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetflowReceiver")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Default for NetflowReceiver {
    fn default() -> Self {
        Self::new()
    }
}

impl NetflowReceiver {
    /// A receiver holding data that arrives before its template (the parser's default bounds).
    pub fn new() -> Self {
        let builder = NetflowParser::builder().with_pending_flows(PendingFlowsConfig::default());
        let parser = AutoScopedParser::try_with_builder(builder).unwrap_or_default();
        NetflowReceiver {
            parser,
            stats: NetflowStats::default(),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> &NetflowStats {
        &self.stats
    }

    /// The flow records of one datagram from `from`.
    pub fn datagram(&mut self, from: SocketAddr, data: &[u8]) -> Vec<FlowRecord> {
        self.stats.datagrams += 1;
        self.stats.exporters.insert(from.ip());
        let result = self.parser.parse_from_source(from, data);
        if result.error.is_some() {
            self.stats.errors += 1;
        }
        let exporter = from.ip().to_string();
        let mut out = Vec::new();
        for packet in &result.packets {
            match packet {
                NetflowPacket::V5(v5) => {
                    let h = &v5.header;
                    let boot_ms = i64::from(h.unix_secs) * 1000
                        + i64::from(h.unix_nsecs / 1_000_000)
                        - i64::from(h.sys_up_time);
                    let sampling = u32::from(h.sampling_interval & 0x3fff).max(1);
                    for r in &v5.flowsets {
                        let mut f = FlowRecord::new(
                            IpAddr::V4(r.src_addr),
                            IpAddr::V4(r.dst_addr),
                            r.protocol_number,
                        );
                        f.src_port = r.src_port;
                        f.dst_port = r.dst_port;
                        f.packets_out = u64::from(r.d_pkts);
                        f.bytes_out = u64::from(r.d_octets);
                        f.first_us = (boot_ms + i64::from(r.first)) * 1000;
                        f.last_us = (boot_ms + i64::from(r.last)) * 1000;
                        f.tcp_flags = (r.protocol_number == 6).then_some(r.tcp_flags);
                        icmp_from_port(&mut f);
                        out.push(finish(f, &exporter, sampling));
                    }
                }
                NetflowPacket::V9(v9) => {
                    let boot_ms =
                        i64::from(v9.header.unix_secs) * 1000 - i64::from(v9.header.sys_up_time);
                    for set in &v9.flowsets {
                        match &set.body {
                            V9Body::Data(data) => {
                                for fields in &data.fields {
                                    if let Some(f) = from_v9(fields, boot_ms, &exporter) {
                                        out.push(f);
                                    }
                                }
                            }
                            V9Body::Template(t) => self.stats.templates += t.templates.len() as u64,
                            V9Body::OptionsTemplate(t) => {
                                self.stats.templates += t.templates.len() as u64
                            }
                            V9Body::NoTemplate(_) => self.stats.without_template += 1,
                            V9Body::OptionsData(_) | V9Body::Empty => {}
                        }
                    }
                }
                NetflowPacket::IPFix(ipfix) => {
                    let export_ms = i64::from(ipfix.header.export_time) * 1000;
                    for set in &ipfix.flowsets {
                        match &set.body {
                            IpfixBody::Data(data) => {
                                for fields in &data.fields {
                                    if let Some(f) = from_ipfix(fields, export_ms, &exporter) {
                                        out.push(f);
                                    }
                                }
                            }
                            IpfixBody::V9Data(data) => {
                                for fields in &data.fields {
                                    if let Some(f) = from_v9(fields, export_ms, &exporter) {
                                        out.push(f);
                                    }
                                }
                            }
                            IpfixBody::Template(_)
                            | IpfixBody::V9Template(_)
                            | IpfixBody::OptionsTemplate(_)
                            | IpfixBody::V9OptionsTemplate(_) => self.stats.templates += 1,
                            IpfixBody::Templates(t) => self.stats.templates += t.len() as u64,
                            IpfixBody::V9Templates(t) => self.stats.templates += t.len() as u64,
                            IpfixBody::OptionsTemplates(t) => {
                                self.stats.templates += t.len() as u64
                            }
                            IpfixBody::V9OptionsTemplates(t) => {
                                self.stats.templates += t.len() as u64
                            }
                            IpfixBody::NoTemplate(_) => self.stats.without_template += 1,
                            IpfixBody::OptionsData(_)
                            | IpfixBody::V9OptionsData(_)
                            | IpfixBody::Empty => {}
                        }
                    }
                }
                // v7 (Catalyst switches) and versions newer than this parser knows: counted
                // as errors.
                _ => self.stats.errors += 1,
            }
        }
        self.stats.records += out.len() as u64;
        out
    }
}

/// NetFlow puts ICMP's type and code in the destination port (type × 256 + code).
fn icmp_from_port(f: &mut FlowRecord) {
    if f.protocol == 1 || f.protocol == 58 {
        f.icmp_type = Some((f.dst_port >> 8) as u8);
        f.icmp_code = Some((f.dst_port & 0xff) as u8);
    }
}

fn finish(mut f: FlowRecord, exporter: &str, sampling: u32) -> FlowRecord {
    if sampling > 1 {
        f.packets_out = f.packets_out.saturating_mul(u64::from(sampling));
        f.bytes_out = f.bytes_out.saturating_mul(u64::from(sampling));
        f.sampling_rate = Some(sampling);
    }
    f.exporter = Some(exporter.to_owned());
    f
}

fn ip(v: &FieldValue) -> Option<IpAddr> {
    match v {
        FieldValue::Ip4Addr(a) => Some(IpAddr::V4(*a)),
        FieldValue::Ip6Addr(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

fn flags(v: &FieldValue) -> Option<u8> {
    match v {
        FieldValue::TcpControlBits(bits, _) => Some((u16::from(*bits) & 0xff) as u8),
        other => other.as_u8(),
    }
}

/// A v9 data record (`boot_ms`: the exporter's boot time, for its uptime timestamps).
fn from_v9(fields: &[(V9Field, FieldValue)], boot_ms: i64, exporter: &str) -> Option<FlowRecord> {
    let get = |want: &[V9Field]| {
        want.iter()
            .find_map(|w| fields.iter().find(|(k, _)| k == w).map(|(_, v)| v))
    };
    let src = get(&[V9Field::Ipv4SrcAddr, V9Field::Ipv6SrcAddr]).and_then(ip)?;
    let dst = get(&[V9Field::Ipv4DstAddr, V9Field::Ipv6DstAddr]).and_then(ip)?;
    let protocol = get(&[V9Field::Protocol]).and_then(FieldValue::as_u8)?;
    let mut f = FlowRecord::new(src, dst, protocol);
    f.src_port = get(&[V9Field::L4SrcPort])
        .and_then(FieldValue::as_u16)
        .unwrap_or(0);
    f.dst_port = get(&[V9Field::L4DstPort])
        .and_then(FieldValue::as_u16)
        .unwrap_or(0);
    f.packets_out = get(&[V9Field::InPkts])
        .and_then(FieldValue::as_u64)
        .unwrap_or(0);
    f.bytes_out = get(&[V9Field::InBytes])
        .and_then(FieldValue::as_u64)
        .unwrap_or(0);
    let uptime = |k: V9Field| {
        get(&[k])
            .and_then(FieldValue::as_u64)
            .and_then(|ms| i64::try_from(ms).ok())
            .map(|ms| (boot_ms + ms) * 1000)
    };
    f.first_us = uptime(V9Field::FirstSwitched).unwrap_or(boot_ms * 1000);
    f.last_us = uptime(V9Field::LastSwitched).unwrap_or(f.first_us);
    if protocol == 6 {
        f.tcp_flags = get(&[V9Field::TcpFlags]).and_then(flags);
    }
    match get(&[V9Field::IcmpType]).and_then(FieldValue::as_u16) {
        Some(tc) if protocol == 1 || protocol == 58 => {
            f.icmp_type = Some((tc >> 8) as u8);
            f.icmp_code = Some((tc & 0xff) as u8);
        }
        _ => icmp_from_port(&mut f),
    }
    let sampling = get(&[V9Field::SamplingInterval])
        .and_then(FieldValue::as_u64)
        .and_then(|s| u32::try_from(s).ok())
        .unwrap_or(1)
        .max(1);
    Some(finish(f, exporter, sampling))
}

/// An IPFIX data record (`export_ms`: the message's export time, for relative timestamps).
fn from_ipfix(
    fields: &[(IPFixField, FieldValue)],
    export_ms: i64,
    exporter: &str,
) -> Option<FlowRecord> {
    let get = |want: &[Iana]| {
        want.iter().find_map(|w| {
            fields
                .iter()
                .find(|(k, _)| matches!(k, IPFixField::IANA(i) if i == w))
                .map(|(_, v)| v)
        })
    };
    let src = get(&[Iana::SourceIpv4address, Iana::SourceIpv6address]).and_then(ip)?;
    let dst = get(&[Iana::DestinationIpv4address, Iana::DestinationIpv6address]).and_then(ip)?;
    let protocol = get(&[Iana::ProtocolIdentifier]).and_then(FieldValue::as_u8)?;
    let mut f = FlowRecord::new(src, dst, protocol);
    f.src_port = get(&[Iana::SourceTransportPort])
        .and_then(FieldValue::as_u16)
        .unwrap_or(0);
    f.dst_port = get(&[Iana::DestinationTransportPort])
        .and_then(FieldValue::as_u16)
        .unwrap_or(0);
    f.packets_out = get(&[Iana::PacketDeltaCount, Iana::PacketTotalCount])
        .and_then(FieldValue::as_u64)
        .unwrap_or(0);
    f.bytes_out = get(&[Iana::OctetDeltaCount, Iana::OctetTotalCount])
        .and_then(FieldValue::as_u64)
        .unwrap_or(0);
    // Absolute times (milliseconds or seconds since the epoch, as `as_u64` gives them in ms),
    // else uptimes relative to the exporter's init time, else the export time.
    let ms = |k: &[Iana]| {
        get(k)
            .and_then(FieldValue::as_u64)
            .and_then(|v| i64::try_from(v).ok())
    };
    let init = ms(&[Iana::SystemInitTimeMilliseconds]);
    let at =
        |absolute: &[Iana], uptime: Iana| ms(absolute).or_else(|| Some(init? + ms(&[uptime])?));
    f.first_us = at(
        &[Iana::FlowStartMilliseconds, Iana::FlowStartSeconds],
        Iana::FlowStartSysUpTime,
    )
    .unwrap_or(export_ms)
        * 1000;
    f.last_us = at(
        &[Iana::FlowEndMilliseconds, Iana::FlowEndSeconds],
        Iana::FlowEndSysUpTime,
    )
    .map_or(f.first_us, |ms| ms * 1000);
    if protocol == 6 {
        f.tcp_flags = get(&[Iana::TcpControlBits]).and_then(flags);
    }
    match get(&[Iana::IcmpTypeCodeIpv4, Iana::IcmpTypeCodeIpv6]).and_then(FieldValue::as_u16) {
        Some(tc) => {
            f.icmp_type = Some((tc >> 8) as u8);
            f.icmp_code = Some((tc & 0xff) as u8);
        }
        None => icmp_from_port(&mut f),
    }
    let sampling = get(&[Iana::SamplingInterval, Iana::SamplingPacketInterval])
        .and_then(FieldValue::as_u64)
        .and_then(|s| u32::try_from(s).ok())
        .unwrap_or(1)
        .max(1);
    Some(finish(f, exporter, sampling))
}

/// The `netflow` source: export datagrams on `socket` (from any exporter) into `flow` events,
/// attributed to components by `attribution` and pseudonymised by `privacy` like every event,
/// until shutdown. Counted in the source's counters: `events` (flows), `bytes` (datagram
/// bytes), `parse_errors` (datagrams the parser refused, wholly or in part).
pub async fn netflow_source(
    socket: tokio::net::UdpSocket,
    ctx: crate::sources::SourceContext,
    mut attribution: super::Attribution,
    privacy: crate::privacy::Privacy,
) {
    use std::sync::atomic::Ordering;
    let local = socket
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a| a.to_string());
    tracing::info!(listen = %local, "netflow/ipfix listening");
    let mut shutdown = ctx.shutdown.clone();
    let mut receiver = NetflowReceiver::new();
    // The largest UDP payload: an export datagram is never longer.
    let mut buf = vec![0u8; 65_535];
    let (mut errors, mut exporters) = (0, 0);
    loop {
        let (len, from) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "netflow: receive failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        ctx.counters.bytes.fetch_add(len as u64, Ordering::Relaxed);
        let flows = receiver.datagram(from, &buf[..len]);
        let stats = receiver.stats();
        ctx.counters
            .netflow_templates
            .store(stats.templates, Ordering::Relaxed);
        ctx.counters
            .netflow_exporters
            .store(stats.exporters.len() as u64, Ordering::Relaxed);
        if stats.errors > errors {
            errors = stats.errors;
            ctx.counters.parse_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(exporter = %from, bytes = len, "netflow: datagram refused (in whole or in part)");
        }
        if stats.exporters.len() > exporters {
            exporters = stats.exporters.len();
            tracing::info!(exporter = %from.ip(), "netflow: new exporter");
        }
        for flow in flows {
            ctx.counters.events.fetch_add(1, Ordering::Relaxed);
            let input = super::shipper_input(flow, &mut attribution, &privacy);
            if ctx.tx.send(input).await.is_err() {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A NetFlow v5 datagram with one record, written after Cisco's v5 layout: header (24
    /// bytes) and one 48-byte record, 10.0.0.1:40000 → 192.0.2.9:443 TCP, 7 packets, 900
    /// bytes, first/last 1,000/2,000 ms of uptime, flags SYN|ACK, sampling 1 in 10.
    fn v5() -> Vec<u8> {
        let mut d = Vec::new();
        d.extend_from_slice(&5u16.to_be_bytes()); // version
        d.extend_from_slice(&1u16.to_be_bytes()); // count
        d.extend_from_slice(&10_000u32.to_be_bytes()); // sys_up_time (ms)
        d.extend_from_slice(&1_700_000_000u32.to_be_bytes()); // unix_secs
        d.extend_from_slice(&0u32.to_be_bytes()); // unix_nsecs
        d.extend_from_slice(&1u32.to_be_bytes()); // flow_sequence
        d.extend_from_slice(&[0, 0]); // engine type, id
        d.extend_from_slice(&(0x4000u16 | 10).to_be_bytes()); // sampling: mode 1, 1 in 10
        d.extend_from_slice(&[10, 0, 0, 1, 192, 0, 2, 9, 0, 0, 0, 0]); // src, dst, next hop
        d.extend_from_slice(&[0, 1, 0, 2]); // input, output
        d.extend_from_slice(&7u32.to_be_bytes());
        d.extend_from_slice(&900u32.to_be_bytes());
        d.extend_from_slice(&1_000u32.to_be_bytes());
        d.extend_from_slice(&2_000u32.to_be_bytes());
        d.extend_from_slice(&40_000u16.to_be_bytes());
        d.extend_from_slice(&443u16.to_be_bytes());
        d.extend_from_slice(&[0, 0x12, 6, 0]); // pad, tcp_flags, protocol, tos
        d.extend_from_slice(&[0, 0, 0, 0, 24, 24, 0, 0]); // src/dst AS, masks, pad
        d
    }

    #[test]
    fn a_v5_record_is_read_with_its_sampling_applied() {
        let mut r = NetflowReceiver::new();
        let from: SocketAddr = "192.0.2.1:2055".parse().expect("addr");
        let flows = r.datagram(from, &v5());
        assert_eq!(flows.len(), 1, "{:?}", r.stats());
        let f = &flows[0];
        assert_eq!(
            (f.src_ip, f.src_port, f.dst_ip, f.dst_port, f.protocol),
            (
                IpAddr::from([10, 0, 0, 1]),
                40_000,
                IpAddr::from([192, 0, 2, 9]),
                443,
                6
            )
        );
        assert_eq!(
            (f.packets_out, f.bytes_out, f.sampling_rate),
            (70, 9_000, Some(10))
        );
        // Booted 10 s before 1,700,000,000 s: first at 1 s of uptime.
        assert_eq!(f.first_us, (1_700_000_000 - 10 + 1) * 1_000_000);
        assert_eq!(f.last_us, (1_700_000_000 - 10 + 2) * 1_000_000);
        assert_eq!(f.tcp_flags, Some(0x12));
        assert_eq!(f.exporter.as_deref(), Some("192.0.2.1"));
    }

    proptest! {
        /// Truncated or garbled datagrams: flows or counted errors, never a panic.
        #[test]
        fn any_datagram_is_read_or_counted(
            bytes in proptest::collection::vec(any::<u8>(), 0..400),
            cut in 0usize..72,
            version in prop_oneof![Just(5u16), Just(9), Just(10), any::<u16>()],
        ) {
            let mut r = NetflowReceiver::new();
            let from: SocketAddr = "192.0.2.1:2055".parse().expect("addr");
            let mut garbled = version.to_be_bytes().to_vec();
            garbled.extend_from_slice(&bytes);
            let _ = r.datagram(from, &garbled);
            let _ = r.datagram(from, &v5()[..cut]);
            prop_assert_eq!(r.stats().datagrams, 2);
        }
    }
}
