//! The flow table: packets into bidirectional flows, expired by idle and active timeouts,
//! bounded in size (the least recently seen flow is evicted, and counted, when it is full).

use std::collections::HashMap;
use std::net::IpAddr;

use super::FlowRecord;
use super::decode::Packet;
use super::meta::{self, Meta};

/// How flows end. The defaults follow Suricata's `flow-timeouts` for established flows (300 s
/// idle) and the usual NetFlow exporter active timeout (30 min, as Cisco IOS and softflowd's
/// `maxlife` guidance); see `docs/flows.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlowSettings {
    /// A flow with no packet for this long ends, in seconds (default 300).
    pub idle_timeout_s: u64,
    /// A flow longer than this is reported and starts again, in seconds (default 1800), so
    /// long connections show up while they last.
    pub active_timeout_s: u64,
    /// Most flows held at once (default 1,000,000); when full, the least recently seen flow is
    /// reported early (evicted, counted).
    pub max_flows: usize,
}

fn default_idle_s() -> u64 {
    300
}
fn default_active_s() -> u64 {
    1800
}
fn default_max_flows() -> usize {
    1_000_000
}

impl Default for FlowSettings {
    fn default() -> Self {
        FlowSettings {
            idle_timeout_s: default_idle_s(),
            active_timeout_s: default_active_s(),
            max_flows: default_max_flows(),
        }
    }
}

/// What the table counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableStats {
    /// Packets that joined a flow.
    pub packets: u64,
    /// Flows reported.
    pub flows: u64,
    /// Flows reported early because the table was full.
    pub evicted: u64,
    /// Flows reported because they outlived the active timeout (and went on as new ones).
    pub active_expired: u64,
}

/// A flow's key, the same both ways: the lower endpoint (address, port) first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    a: IpAddr,
    b: IpAddr,
    a_port: u16,
    b_port: u16,
    protocol: u8,
}

impl Key {
    /// The key of a packet, and whether the packet goes from `a` to `b`.
    fn of(p: &Packet<'_>) -> (Key, bool) {
        let forward = (p.src, p.src_port) <= (p.dst, p.dst_port);
        let key = if forward {
            Key {
                a: p.src,
                b: p.dst,
                a_port: p.src_port,
                b_port: p.dst_port,
                protocol: p.protocol,
            }
        } else {
            Key {
                a: p.dst,
                b: p.src,
                a_port: p.dst_port,
                b_port: p.src_port,
                protocol: p.protocol,
            }
        };
        (key, forward)
    }
}

#[derive(Debug, Clone)]
struct Flow {
    /// Whether `a` of the key opened the flow.
    opened_by_a: bool,
    first_us: i64,
    last_us: i64,
    packets_out: u64,
    bytes_out: u64,
    packets_in: u64,
    bytes_in: u64,
    tcp_flags: u8,
    icmp: Option<(u8, u8)>,
    /// Boxed, and only once something was found: most flows carry none, and the table's size
    /// is its memory.
    meta: Option<Box<Meta>>,
}

impl Flow {
    fn new(opened_by_a: bool, ts_us: i64) -> Flow {
        Flow {
            opened_by_a,
            first_us: ts_us,
            last_us: ts_us,
            packets_out: 0,
            bytes_out: 0,
            packets_in: 0,
            bytes_in: 0,
            tcp_flags: 0,
            icmp: None,
            meta: None,
        }
    }
}

/// Payload packets of a flow looked at for DNS, TLS SNI and HTTP Host, each way.
const META_PACKETS: u64 = 8;

/// The table's hasher: `foldhash`, seeded at random per table (the keys come from the network,
/// so the seed must not be guessable), several times faster than the standard SipHash on
/// these small keys, which the flow benchmark spends most of its time hashing.
type Hasher = foldhash::fast::RandomState;

/// Packets into flows; flows out as [`FlowRecord`]s.
#[derive(Debug)]
pub struct FlowTable {
    settings: FlowSettings,
    flows: HashMap<Key, Flow, Hasher>,
    /// Packet time of the last sweep for timeouts.
    swept_us: i64,
    stats: TableStats,
}

impl FlowTable {
    /// An empty table.
    pub fn new(settings: FlowSettings) -> Self {
        FlowTable {
            settings,
            flows: HashMap::with_hasher(Hasher::default()),
            swept_us: i64::MIN,
            stats: TableStats::default(),
        }
    }

    /// The counts so far.
    pub fn stats(&self) -> TableStats {
        self.stats
    }

    /// Flows held now.
    pub fn len(&self) -> usize {
        self.flows.len()
    }

    /// Whether no flow is held.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    /// Adds a packet; flows that ended by then (timeouts by packet time, eviction) are pushed
    /// to `out`.
    pub fn push(&mut self, p: &Packet<'_>, out: &mut Vec<FlowRecord>) {
        // Timeouts are checked once a second of packet time: a sweep costs the table's size.
        if p.ts_us.saturating_sub(self.swept_us) >= 1_000_000 {
            self.expire(p.ts_us, out);
            self.swept_us = p.ts_us;
        }
        let (key, forward) = Key::of(p);
        let active_us = secs_us(self.settings.active_timeout_s);
        let mut outlived = None;
        let flow = match self.flows.get_mut(&key) {
            Some(f) => {
                // Active timeout: report what the flow did so far and go on as a new one.
                if p.ts_us.saturating_sub(f.first_us) >= active_us {
                    let fresh = Flow::new(f.opened_by_a, p.ts_us);
                    outlived = Some(std::mem::replace(f, fresh));
                }
                f
            }
            None => {
                if self.flows.len() >= self.settings.max_flows.max(1) {
                    self.evict_one(out);
                }
                // The sender of the first packet opened it, except a TCP handshake first
                // seen at its SYN-ACK, which the other side opened.
                let syn_ack = p.protocol == 6 && p.tcp_flags & 0x12 == 0x12;
                self.flows
                    .entry(key)
                    .or_insert_with(|| Flow::new(forward != syn_ack, p.ts_us))
            }
        };
        let outbound = forward == flow.opened_by_a;
        flow.last_us = flow.last_us.max(p.ts_us);
        flow.first_us = flow.first_us.min(p.ts_us);
        let payload_packets = if outbound {
            flow.packets_out += 1;
            flow.bytes_out += u64::from(p.ip_len);
            flow.packets_out
        } else {
            flow.packets_in += 1;
            flow.bytes_in += u64::from(p.ip_len);
            flow.packets_in
        };
        flow.tcp_flags |= p.tcp_flags;
        if flow.icmp.is_none() {
            flow.icmp = p.icmp;
        }
        if !p.payload.is_empty() && payload_packets <= META_PACKETS {
            let mut found = flow.meta.take().map(|m| *m).unwrap_or_default();
            meta::inspect(p, &mut found);
            if found != Meta::default() {
                flow.meta = Some(Box::new(found));
            }
        }
        self.stats.packets += 1;
        if let Some(old) = outlived {
            self.stats.active_expired += 1;
            self.report(key, old, out);
        }
    }

    /// Reports the flows idle for the idle timeout at packet time `now_us`.
    pub fn expire(&mut self, now_us: i64, out: &mut Vec<FlowRecord>) {
        let idle_us = secs_us(self.settings.idle_timeout_s);
        let ended: Vec<Key> = self
            .flows
            .iter()
            .filter(|(_, f)| now_us.saturating_sub(f.last_us) >= idle_us)
            .map(|(k, _)| *k)
            .collect();
        let mut ended: Vec<(Key, Flow)> = ended
            .into_iter()
            .filter_map(|k| self.flows.remove(&k).map(|f| (k, f)))
            .collect();
        ended.sort_by_key(|(_, f)| (f.first_us, f.last_us));
        for (k, f) in ended {
            self.report(k, f, out);
        }
    }

    /// Reports every flow still held (end of a file, shutdown), oldest first.
    pub fn drain(&mut self, out: &mut Vec<FlowRecord>) {
        let mut all: Vec<(Key, Flow)> = self.flows.drain().collect();
        all.sort_by_key(|(_, f)| (f.first_us, f.last_us));
        for (k, f) in all {
            self.report(k, f, out);
        }
    }

    fn evict_one(&mut self, out: &mut Vec<FlowRecord>) {
        let oldest = self
            .flows
            .iter()
            .min_by_key(|(_, f)| f.last_us)
            .map(|(k, _)| *k);
        if let Some(k) = oldest
            && let Some(f) = self.flows.remove(&k)
        {
            self.stats.evicted += 1;
            self.report(k, f, out);
        }
    }

    fn report(&mut self, k: Key, f: Flow, out: &mut Vec<FlowRecord>) {
        self.stats.flows += 1;
        let (icmp_type, icmp_code) = match f.icmp {
            Some((t, c)) => (Some(t), Some(c)),
            None => (None, None),
        };
        let meta = f.meta.map(|m| *m).unwrap_or_default();
        let ((src_ip, src_port), (dst_ip, dst_port)) = if f.opened_by_a {
            ((k.a, k.a_port), (k.b, k.b_port))
        } else {
            ((k.b, k.b_port), (k.a, k.a_port))
        };
        out.push(FlowRecord {
            src_ip,
            src_port,
            dst_ip,
            dst_port,
            protocol: k.protocol,
            first_us: f.first_us,
            last_us: f.last_us,
            packets_out: f.packets_out,
            bytes_out: f.bytes_out,
            packets_in: f.packets_in,
            bytes_in: f.bytes_in,
            tcp_flags: (k.protocol == 6).then_some(f.tcp_flags),
            icmp_type,
            icmp_code,
            dns_query: meta.dns_query,
            dns_answers: meta.dns_answers,
            tls_sni: meta.tls_sni,
            http_host: meta.http_host,
            component: None,
            exporter: None,
            sampling_rate: None,
        });
    }
}

fn secs_us(s: u64) -> i64 {
    i64::try_from(s.saturating_mul(1_000_000)).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(ts_s: i64, from: (u8, u16), to: (u8, u16), flags: u8) -> Packet<'static> {
        Packet {
            ts_us: ts_s * 1_000_000,
            src: IpAddr::from([10, 0, 0, from.0]),
            dst: IpAddr::from([10, 0, 0, to.0]),
            src_port: from.1,
            dst_port: to.1,
            protocol: 6,
            ip_len: 100,
            tcp_flags: flags,
            icmp: None,
            payload: &[],
        }
    }

    #[test]
    fn both_directions_make_one_flow_opened_by_the_first_sender() {
        let mut t = FlowTable::new(FlowSettings::default());
        let mut out = Vec::new();
        t.push(&packet(0, (1, 40000), (2, 443), 0x02), &mut out);
        t.push(&packet(0, (2, 443), (1, 40000), 0x12), &mut out);
        t.push(&packet(1, (1, 40000), (2, 443), 0x10), &mut out);
        t.drain(&mut out);
        assert_eq!(out.len(), 1);
        let f = &out[0];
        assert_eq!((f.src_port, f.dst_port), (40000, 443));
        assert_eq!(
            (f.packets_out, f.bytes_out, f.packets_in, f.bytes_in),
            (2, 200, 1, 100)
        );
        assert_eq!(f.tcp_flags, Some(0x12));
        assert_eq!((f.first_us, f.last_us), (0, 1_000_000));
    }

    #[test]
    fn a_handshake_first_seen_at_its_syn_ack_is_the_clients_flow() {
        let mut t = FlowTable::new(FlowSettings::default());
        let mut out = Vec::new();
        t.push(&packet(0, (2, 443), (1, 40000), 0x12), &mut out);
        t.drain(&mut out);
        assert_eq!((out[0].src_port, out[0].packets_in), (40000, 1));
    }

    #[test]
    fn idle_and_active_timeouts_end_flows_and_a_full_table_evicts_the_stalest() {
        let settings = FlowSettings {
            idle_timeout_s: 10,
            active_timeout_s: 100,
            max_flows: 2,
        };
        let mut t = FlowTable::new(settings);
        let mut out = Vec::new();
        // Idle for 10 s: the next packet of the same pair starts a new flow.
        t.push(&packet(0, (1, 1), (2, 2), 0), &mut out);
        t.push(&packet(11, (1, 1), (2, 2), 0), &mut out);
        assert_eq!(out.len(), 1);
        // A packet every 5 s for 120 s: reported once at 100 s, and goes on.
        for s in (11..=131).step_by(5) {
            t.push(&packet(s, (1, 1), (2, 2), 0), &mut out);
        }
        assert_eq!(t.stats().active_expired, 1);
        assert_eq!(out.len(), 2);
        // A third pair while two are held: the stalest one goes.
        t.push(&packet(131, (3, 3), (4, 4), 0), &mut out);
        t.push(&packet(132, (5, 5), (6, 6), 0), &mut out);
        assert_eq!(t.stats().evicted, 1);
        assert_eq!(t.len(), 2);
        t.drain(&mut out);
        let packets: u64 = out.iter().map(|f| f.packets_out + f.packets_in).sum();
        assert_eq!(
            packets,
            t.stats().packets,
            "every packet is in exactly one flow"
        );
        assert_eq!(out.len() as u64, t.stats().flows);
    }
}
