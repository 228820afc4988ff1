//! One captured frame into the fields a flow needs, through `etherparse` (Ethernet II with
//! 802.1Q/QinQ VLAN tags, Linux cooked capture, raw IP; IPv4 and IPv6 with extension headers;
//! TCP, UDP, ICMP, ICMPv6). A frame that is not IP is skipped and counted; a frame cut short or
//! malformed is an error, counted by what was wrong, never a panic.

use std::net::IpAddr;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

/// Link types of capture files (the `LINKTYPE_*` numbers of tcpdump.org).
pub mod linktype {
    /// Ethernet II (`LINKTYPE_ETHERNET`).
    pub const ETHERNET: u32 = 1;
    /// Raw IPv4 or IPv6 (`LINKTYPE_RAW`).
    pub const RAW: u32 = 101;
    /// Linux cooked capture v1 (`LINKTYPE_LINUX_SLL`, tcpdump `-i any`).
    pub const LINUX_SLL: u32 = 113;
    /// Raw IPv4 (`LINKTYPE_IPV4`).
    pub const IPV4: u32 = 228;
    /// Raw IPv6 (`LINKTYPE_IPV6`).
    pub const IPV6: u32 = 229;
}

/// What a flow needs of one packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<'a> {
    /// Capture time, µs since the epoch.
    pub ts_us: i64,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// Source port (0 without ports).
    pub src_port: u16,
    /// Destination port.
    pub dst_port: u16,
    /// IP protocol number (for IPv6, of the header after the extension headers).
    pub protocol: u8,
    /// IP bytes: the IPv4 total length, or the IPv6 header and payload length.
    pub ip_len: u32,
    /// TCP flags (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40,
    /// CWR 0x80); 0 for other protocols.
    pub tcp_flags: u8,
    /// ICMP or ICMPv6 type and code.
    pub icmp: Option<(u8, u8)>,
    /// The transport payload (TCP or UDP data), as far as it was captured.
    pub payload: &'a [u8],
}

/// Why a frame was not a packet of a flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not IP (ARP, LLDP, …): skipped.
    #[error("not IP")]
    NotIp,
    /// A link type the decoder does not read.
    #[error("link type {0} is not supported")]
    LinkType(u32),
    /// Cut short or malformed headers.
    #[error("malformed: {0}")]
    Malformed(&'static str),
}

impl DecodeError {
    /// A stable label for counters.
    pub fn label(self) -> &'static str {
        match self {
            DecodeError::NotIp => "not_ip",
            DecodeError::LinkType(_) => "link_type",
            DecodeError::Malformed(what) => what,
        }
    }
}

/// Decodes one frame of link type `linktype` captured at `ts_us`.
pub fn decode(linktype: u32, frame: &[u8], ts_us: i64) -> Result<Packet<'_>, DecodeError> {
    let sliced = match linktype {
        linktype::ETHERNET => SlicedPacket::from_ethernet(frame),
        linktype::LINUX_SLL => SlicedPacket::from_linux_sll(frame),
        linktype::RAW | linktype::IPV4 | linktype::IPV6 => SlicedPacket::from_ip(frame),
        other => return Err(DecodeError::LinkType(other)),
    }
    .map_err(|e| DecodeError::Malformed(slice_error(&e)))?;
    let (src, dst, protocol, ip_len) = match &sliced.net {
        Some(NetSlice::Ipv4(ip)) => {
            let h = ip.header();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                ip.payload().ip_number.0,
                u32::from(h.total_len()),
            )
        }
        Some(NetSlice::Ipv6(ip)) => {
            let h = ip.header();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                ip.payload().ip_number.0,
                40 + u32::from(h.payload_length()),
            )
        }
        None => return Err(DecodeError::NotIp),
    };
    let mut p = Packet {
        ts_us,
        src,
        dst,
        src_port: 0,
        dst_port: 0,
        protocol,
        ip_len,
        tcp_flags: 0,
        icmp: None,
        payload: &[],
    };
    match &sliced.transport {
        Some(TransportSlice::Tcp(t)) => {
            p.src_port = t.source_port();
            p.dst_port = t.destination_port();
            p.tcp_flags = u8::from(t.fin())
                | u8::from(t.syn()) << 1
                | u8::from(t.rst()) << 2
                | u8::from(t.psh()) << 3
                | u8::from(t.ack()) << 4
                | u8::from(t.urg()) << 5
                | u8::from(t.ece()) << 6
                | u8::from(t.cwr()) << 7;
            p.payload = t.payload();
        }
        Some(TransportSlice::Udp(u)) => {
            p.src_port = u.source_port();
            p.dst_port = u.destination_port();
            p.payload = u.payload();
        }
        Some(TransportSlice::Icmpv4(i)) => p.icmp = Some((i.type_u8(), i.code_u8())),
        Some(TransportSlice::Icmpv6(i)) => p.icmp = Some((i.type_u8(), i.code_u8())),
        None => {}
    }
    Ok(p)
}

fn slice_error(e: &etherparse::err::packet::SliceError) -> &'static str {
    use etherparse::err::packet::SliceError as E;
    match e {
        E::Len(_) => "truncated",
        E::LinuxSll(_) => "linux_sll_header",
        E::Ip(_) => "ip_header",
        E::Ipv4(_) => "ipv4_header",
        E::Ipv6(_) => "ipv6_header",
        E::Ipv4Exts(_) | E::Ipv6Exts(_) => "ip_extension",
        E::Tcp(_) => "tcp_header",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Whatever the bytes and link type: a packet or an error, never a panic, and a
        /// payload that lies inside the frame.
        #[test]
        fn any_bytes_decode_or_fail_cleanly(
            frame in proptest::collection::vec(any::<u8>(), 0..200),
            linktype in prop_oneof![Just(1u32), Just(101), Just(113), Just(228), Just(229), any::<u32>()],
        ) {
            if let Ok(p) = decode(linktype, &frame, 0) {
                prop_assert!(p.payload.len() <= frame.len());
            }
        }
    }

    #[test]
    fn a_udp_packet_built_by_etherparse_reads_back() {
        let builder = etherparse::PacketBuilder::ethernet2([1; 6], [2; 6])
            .ipv4([192, 0, 2, 1], [198, 51, 100, 7], 64)
            .udp(5353, 53);
        let payload = [7u8; 12];
        let mut frame = Vec::new();
        builder
            .write(&mut frame, &payload)
            .expect("an IPv4/UDP frame");
        let p = decode(linktype::ETHERNET, &frame, 5).expect("decodes");
        assert_eq!(p.src, IpAddr::from([192, 0, 2, 1]));
        assert_eq!((p.src_port, p.dst_port, p.protocol), (5353, 53, 17));
        assert_eq!(p.ip_len, 20 + 8 + 12);
        assert_eq!(p.payload, &payload);
        assert_eq!(
            decode(linktype::ETHERNET, &frame[..20], 5),
            Err(DecodeError::Malformed("truncated"))
        );
        assert_eq!(decode(147, &frame, 5), Err(DecodeError::LinkType(147)));
    }
}
