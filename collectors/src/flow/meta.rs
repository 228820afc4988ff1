//! The metadata a CERT uses from a flow's first payload packets, and nothing else of the
//! payload: the DNS question and the addresses answered (`simple-dns`), the server name of a
//! TLS ClientHello (`tls-parser`), the Host of an HTTP/1 request (`httparse`). Anything that does
//! not parse is ignored: a flow is reported all the same.

use std::net::IpAddr;

use super::decode::Packet;

/// What was found so far in one flow.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The DNS question.
    pub dns_query: Option<String>,
    /// A and AAAA answers for it.
    pub dns_answers: Vec<IpAddr>,
    /// TLS SNI.
    pub tls_sni: Option<String>,
    /// HTTP Host.
    pub http_host: Option<String>,
}

/// Longest name kept (a DNS name is at most 253 characters).
const NAME_MAX: usize = 253;

/// Most answers kept per flow.
const ANSWERS_MAX: usize = 16;

/// Looks at one payload packet of a flow.
pub fn inspect(p: &Packet<'_>, meta: &mut Meta) {
    match p.protocol {
        17 if p.src_port == 53 || p.dst_port == 53 || p.src_port == 5353 || p.dst_port == 5353 => {
            dns(p.payload, meta)
        }
        // DNS over TCP: a two-byte length first.
        6 if (p.src_port == 53 || p.dst_port == 53) && p.payload.len() > 2 => {
            dns(&p.payload[2..], meta)
        }
        6 => {
            if meta.tls_sni.is_none() && p.payload.first() == Some(&0x16) {
                meta.tls_sni = sni(p.payload);
            } else if meta.http_host.is_none()
                && p.payload.first().is_some_and(u8::is_ascii_uppercase)
            {
                meta.http_host = http_host(p.payload);
            }
        }
        _ => {}
    }
}

fn clean_name(name: &str) -> Option<String> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    (!name.is_empty()
        && name.len() <= NAME_MAX
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_'))
    .then_some(name)
}

fn dns(payload: &[u8], meta: &mut Meta) {
    let Ok(packet) = simple_dns::Packet::parse(payload) else {
        return;
    };
    if meta.dns_query.is_none()
        && let Some(q) = packet.questions.first()
    {
        meta.dns_query = clean_name(&q.qname.to_string());
    }
    for a in &packet.answers {
        if meta.dns_answers.len() >= ANSWERS_MAX {
            break;
        }
        let ip = match &a.rdata {
            simple_dns::rdata::RData::A(a) => IpAddr::V4(std::net::Ipv4Addr::from(a.address)),
            simple_dns::rdata::RData::AAAA(a) => IpAddr::V6(std::net::Ipv6Addr::from(a.address)),
            _ => continue,
        };
        if !meta.dns_answers.contains(&ip) {
            meta.dns_answers.push(ip);
        }
    }
}

/// The server name of a TLS ClientHello that starts in this segment.
fn sni(payload: &[u8]) -> Option<String> {
    use tls_parser::{TlsExtension, TlsMessage, TlsMessageHandshake};
    let (_, record) = tls_parser::parse_tls_plaintext(payload).ok()?;
    for msg in &record.msg {
        if let TlsMessage::Handshake(TlsMessageHandshake::ClientHello(hello)) = msg {
            let (_, exts) = tls_parser::parse_tls_client_hello_extensions(hello.ext?).ok()?;
            for e in exts {
                if let TlsExtension::SNI(names) = e {
                    return names
                        .first()
                        .and_then(|(_, name)| std::str::from_utf8(name).ok())
                        .and_then(clean_name);
                }
            }
        }
    }
    None
}

/// The Host of an HTTP/1 request whose head starts in this segment.
fn http_host(payload: &[u8]) -> Option<String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    // A head cut by the segment's end still yields the headers before the cut.
    let _ = req.parse(payload);
    req.method?;
    let host = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("host"))?;
    let host = std::str::from_utf8(host.value).ok()?;
    // Without the port, and never an IPv6 literal's brackets.
    let name = if host.starts_with('[') {
        host.split(']').next()?.trim_start_matches('[')
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    clean_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(src_port: u16, dst_port: u16, protocol: u8, payload: &[u8]) -> Packet<'_> {
        Packet {
            ts_us: 0,
            src: IpAddr::from([10, 0, 0, 1]),
            dst: IpAddr::from([10, 0, 0, 2]),
            src_port,
            dst_port,
            protocol,
            ip_len: 0,
            tcp_flags: 0,
            icmp: None,
            payload,
        }
    }

    #[test]
    fn a_dns_response_written_after_rfc_1035_gives_its_question_and_answer() {
        // Header: id 0x1234, flags 0x8180 (response, recursion desired and available),
        // 1 question, 1 answer; question LOGIN.idporten.no A IN; answer: a pointer to the
        // name at offset 12, A IN, TTL 60, 4 bytes 198.51.100.7.
        let mut m = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 1, 0, 0, 0, 0];
        for label in ["LOGIN", "idporten", "no"] {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.extend_from_slice(&[0, 0, 1, 0, 1]);
        m.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 198, 51, 100, 7]);
        let mut meta = Meta::default();
        inspect(&packet(53, 40000, 17, &m), &mut meta);
        assert_eq!(meta.dns_query.as_deref(), Some("login.idporten.no"));
        assert_eq!(meta.dns_answers, vec![IpAddr::from([198, 51, 100, 7])]);
        // The same cut short: nothing, and no panic.
        let mut cut = Meta::default();
        inspect(&packet(53, 40000, 17, &m[..20]), &mut cut);
        assert_eq!(cut, Meta::default());
    }

    #[test]
    fn an_http_request_gives_its_host_without_the_port() {
        let mut meta = Meta::default();
        let req = b"GET / HTTP/1.1\r\nUser-Agent: x\r\nHost: WWW.Altinn.no:8080\r\n\r\n";
        inspect(&packet(40000, 80, 6, req), &mut meta);
        assert_eq!(meta.http_host.as_deref(), Some("www.altinn.no"));
    }
}
