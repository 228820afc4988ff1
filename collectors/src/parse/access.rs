//! Web server access logs into `web_access` events.
//!
//! **Apache/nginx** common and combined log formats, as both servers write them by default and
//! as nginx sends them over syslog:
//!
//! ```text
//! [vhost:port ]client ident user [time] "request" status bytes ["referrer" "user agent"][ rest]
//! 203.0.113.5 - kari [01/May/2024:09:59:58 +0200] "GET /innsyn?sak=12 HTTP/1.1" 200 5120 "-" "curl/8.5"
//! ```
//!
//! The `[time]` part may be missing (some syslog templates drop it; the syslog header's time is
//! used then). Quoted fields keep their escapes as the server wrote them (`\"`, nginx's `\x22`).
//! The request is split into `method`, `url_path`, `url_query` (after the first `?`, without it)
//! and `http_version`; a request that is not `METHOD target [HTTP/x]` (TLS bytes sent to a plain
//! port, say) is kept whole in the attribute `http.request`. Anything after the user agent (for
//! example nginx's `$request_time` appended to the format) is kept in `http.extra`.
//!
//! **IIS W3C extended** logs: `#Fields:` names the space-separated columns of the lines that
//! follow; `-` is no value, `+` stands for a space in the user agent. Known fields fill the
//! typed columns (`c-ip`, `cs-username`, `cs-method`, `cs-uri-stem`, `cs-uri-query`,
//! `cs-version`, `sc-status`, `sc-bytes`, `cs(Referer)`, `cs(User-Agent)`, `cs-host`,
//! `time-taken` in milliseconds → `duration_us`), `date` and `time` (UTC, as IIS writes them) give
//! the event time, and every other field is kept as `w3c.<field>`. Without a header the IIS
//! default field set ([`IIS_DEFAULT_FIELDS`]) is assumed (the edge then takes only lines with
//! exactly those fields for W3C).

use chrono::{DateTime, NaiveDateTime};
use varde_core::SourceKind;

use super::{Outcome, Parsed, static_regex};

/// The fields IIS logs by default, in order, for W3C lines seen before any `#Fields:` header.
pub const IIS_DEFAULT_FIELDS: [&str; 15] = [
    "date",
    "time",
    "s-ip",
    "cs-method",
    "cs-uri-stem",
    "cs-uri-query",
    "s-port",
    "cs-username",
    "c-ip",
    "cs(User-Agent)",
    "cs(Referer)",
    "sc-status",
    "sc-substatus",
    "sc-win32-status",
    "time-taken",
];

/// Parses an Apache/nginx common or combined access log line.
pub fn parse_combined(body: &str) -> Outcome {
    // Every such line quotes its request; most other syslog messages hold no `"` at all, and a
    // search for one byte is much cheaper than the expression (this runs for every syslog
    // line that no earlier parser took).
    if memchr::memchr(b'"', body.as_bytes()).is_none() {
        return Outcome::NotMine;
    }
    let Some(re) = static_regex!(concat!(
        r#"^(?:(?P<vhost>[A-Za-z0-9._-]+):(?P<vport>[0-9]{1,5}) )?"#,
        r#"(?P<client>[^\s"\[\]]+) (?P<ident>[^\s"]+) (?P<user>[^\s"]+|"[^"]*")"#,
        r#"(?: \[(?P<time>[^\]]{1,64})\])? "(?P<request>(?:[^"\\]|\\.)*)" "#,
        r#"(?P<status>[0-9]{3}) (?P<bytes>[0-9]{1,20}|-)"#,
        r#"(?: "(?P<referrer>(?:[^"\\]|\\.)*)" "(?P<agent>(?:[^"\\]|\\.)*)")?"#,
        r#"(?P<rest>.*)$"#,
    )) else {
        return Outcome::NotMine;
    };
    let Some(c) = re.captures(body) else {
        return Outcome::NotMine;
    };
    let get = |name: &str| c.name(name).map_or("", |m| m.as_str());
    let mut p = Parsed::new(SourceKind::WebAccess);
    p.text("client_ip", get("client"));
    p.text("user", get("user").trim_matches('"'));
    request(&mut p, get("request"));
    if !p.number("status", get("status")) || !p.number("bytes_sent", get("bytes")) {
        return Outcome::Failed("access log: status or size is not a number");
    }
    p.text("referrer", get("referrer"));
    p.text("user_agent", get("agent"));
    p.text("vhost", get("vhost"));
    p.attr("http.vhost_port", get("vport"));
    p.attr("http.ident", get("ident"));
    p.attr("http.extra", get("rest").trim());
    let time = get("time");
    if !time.is_empty() {
        match DateTime::parse_from_str(time, "%d/%b/%Y:%H:%M:%S %z") {
            Ok(t) => p.event_time_us = Some(t.timestamp_micros()),
            Err(_) => p.attr("http.time", time),
        }
    }
    Outcome::Parsed(p)
}

/// Splits `METHOD target HTTP/x` into its columns; anything else is kept whole.
fn request(p: &mut Parsed, request: &str) {
    let mut parts = request.split(' ');
    let (method, target, version, extra) = (parts.next(), parts.next(), parts.next(), parts.next());
    let token = |m: &str| !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-');
    match (method, target, version, extra) {
        (Some(m), Some(t), v, None)
            if token(m) && !t.is_empty() && v.is_none_or(|v| v.starts_with("HTTP/")) =>
        {
            p.text("method", m);
            let (path, query) = t.split_once('?').unwrap_or((t, ""));
            p.text("url_path", path);
            if !query.is_empty() {
                p.typed
                    .push(("url_query", varde_core::Value::Str(query.to_owned())));
            }
            if let Some(v) = v {
                p.text("http_version", v);
            }
        }
        _ => p.attr("http.request", request),
    }
}

/// A W3C directive line (`#Fields:`, `#Software:`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Directive {
    /// `#Fields:` with the field names in order.
    Fields(Vec<String>),
    /// Any other `#` directive.
    Other,
}

/// The directive on a line starting with `#`, if it is one.
pub fn directive(body: &str) -> Option<Directive> {
    let rest = body.strip_prefix('#')?;
    if let Some(fields) = rest.strip_prefix("Fields:") {
        let names: Vec<String> = fields.split_whitespace().map(str::to_owned).collect();
        return (!names.is_empty() && names.len() <= 64).then_some(Directive::Fields(names));
    }
    let name_end = rest.find(':')?;
    rest[..name_end]
        .bytes()
        .all(|b| b.is_ascii_alphabetic() || b == b'-')
        .then_some(Directive::Other)
}

/// True when `body` starts like a W3C line: `YYYY-MM-DD hh:mm:ss `.
pub fn looks_like_w3c(body: &str) -> bool {
    let b = body.as_bytes();
    let shape = b"dddd-dd-dd dd:dd:dd ";
    b.len() > shape.len()
        && shape.iter().zip(b).all(|(s, c)| match s {
            b'd' => c.is_ascii_digit(),
            other => other == c,
        })
}

/// Parses a W3C line against its `fields` (from `#Fields:`, or [`IIS_DEFAULT_FIELDS`]).
pub fn parse_w3c<S: AsRef<str>>(body: &str, fields: &[S]) -> Outcome {
    let values: Vec<&str> = body.split(' ').collect();
    if values.len() != fields.len() {
        return Outcome::Failed("w3c: the line does not have the fields of its #Fields header");
    }
    let mut p = Parsed::new(SourceKind::WebAccess);
    let (mut date, mut time) = ("", "");
    for (field, value) in fields.iter().zip(&values) {
        let field = field.as_ref();
        let ok = match field.to_ascii_lowercase().as_str() {
            "date" => {
                date = value;
                true
            }
            "time" => {
                time = value;
                true
            }
            "c-ip" => {
                p.text("client_ip", value);
                true
            }
            "cs-username" => {
                p.text("user", value);
                true
            }
            "cs-method" => {
                p.text("method", value);
                true
            }
            "cs-uri-stem" => {
                p.text("url_path", value);
                true
            }
            "cs-uri-query" => {
                p.text("url_query", value);
                true
            }
            "cs-version" => {
                p.text("http_version", value);
                true
            }
            "sc-status" => p.number("status", value),
            "sc-bytes" => p.number("bytes_sent", value),
            "cs(referer)" => {
                p.text("referrer", value);
                true
            }
            "cs(user-agent)" => {
                p.text("user_agent", &value.replace('+', " "));
                true
            }
            "cs-host" => {
                p.text("vhost", value);
                true
            }
            "time-taken" => match value.parse::<u64>() {
                Ok(ms) => {
                    p.typed.push((
                        "duration_us",
                        varde_core::Value::UInt(ms.saturating_mul(1000)),
                    ));
                    true
                }
                Err(_) => *value == "-",
            },
            "s-computername" => {
                if *value != "-" {
                    p.host = Some((*value).to_owned());
                }
                true
            }
            _ => {
                p.attr(format!("w3c.{field}"), value);
                true
            }
        };
        if !ok {
            return Outcome::Failed("w3c: a numeric field is not a number");
        }
    }
    if !date.is_empty() && !time.is_empty() {
        let stamp = format!("{date} {time}");
        match NaiveDateTime::parse_from_str(&stamp, "%Y-%m-%d %H:%M:%S%.f") {
            Ok(t) => p.event_time_us = Some(t.and_utc().timestamp_micros()),
            Err(_) => return Outcome::Failed("w3c: date or time is not valid"),
        }
    }
    Outcome::Parsed(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use varde_core::Value;

    fn parsed(o: Outcome) -> Parsed {
        match o {
            Outcome::Parsed(p) => p,
            other => panic!("not parsed: {other:?}"),
        }
    }

    fn get<'a>(p: &'a Parsed, column: &str) -> Option<&'a Value> {
        p.typed
            .iter()
            .find_map(|(c, v)| (*c == column).then_some(v))
    }

    fn s(v: &str) -> Option<Value> {
        Some(Value::Str(v.into()))
    }

    #[test]
    fn combined() {
        let p = parsed(parse_combined(
            r#"203.0.113.5 - kari [01/May/2024:09:59:58 +0200] "GET /innsyn?sak=12&x=1 HTTP/1.1" 200 5120 "https://kommune.no/" "curl/8.5 (x)""#,
        ));
        assert_eq!(get(&p, "client_ip").cloned(), s("203.0.113.5"));
        assert_eq!(get(&p, "user").cloned(), s("kari"));
        assert_eq!(get(&p, "method").cloned(), s("GET"));
        assert_eq!(get(&p, "url_path").cloned(), s("/innsyn"));
        assert_eq!(get(&p, "url_query").cloned(), s("sak=12&x=1"));
        assert_eq!(get(&p, "http_version").cloned(), s("HTTP/1.1"));
        assert_eq!(get(&p, "status"), Some(&Value::UInt(200)));
        assert_eq!(get(&p, "bytes_sent"), Some(&Value::UInt(5120)));
        assert_eq!(get(&p, "referrer").cloned(), s("https://kommune.no/"));
        assert_eq!(get(&p, "user_agent").cloned(), s("curl/8.5 (x)"));
        // 2024-05-01T07:59:58Z
        assert_eq!(p.event_time_us, Some(1_714_550_398_000_000));
    }

    #[test]
    fn common_vhost_missing_time_and_odd_requests() {
        let p = parsed(parse_combined(
            r#"www.k0301.kommune.no:443 2001:db8::5 - - [01/May/2024:09:59:58 +0000] "POST /login HTTP/2.0" 302 -"#,
        ));
        assert_eq!(get(&p, "vhost").cloned(), s("www.k0301.kommune.no"));
        assert_eq!(get(&p, "client_ip").cloned(), s("2001:db8::5"));
        assert_eq!(get(&p, "bytes_sent"), None);
        assert_eq!(get(&p, "user"), None);
        // The sample's nginx-over-syslog form has no time.
        let p = parsed(parse_combined(
            r#"203.0.113.9 - - "GET /../../etc/passwd HTTP/1.1" 404 12"#,
        ));
        assert_eq!(get(&p, "url_path").cloned(), s("/../../etc/passwd"));
        assert_eq!(p.event_time_us, None);
        let p = parsed(parse_combined(
            r#"203.0.113.9 - - [01/May/2024:09:59:58 +0000] "\x16\x03\x01\x02\x00" 400 157 "-" "-" 0.001"#,
        ));
        assert_eq!(get(&p, "method"), None);
        assert!(
            p.attrs
                .contains(&("http.request".into(), r"\x16\x03\x01\x02\x00".into()))
        );
        assert!(p.attrs.contains(&("http.extra".into(), "0.001".into())));
        assert_eq!(get(&p, "user_agent"), None);
    }

    #[test]
    fn other_lines_are_not_access_logs() {
        for line in [
            "Failed password for root from 203.0.113.5 port 22 ssh2",
            "GET / HTTP/1.1",
            "",
            "a b c \"d\" 2000 1",
        ] {
            assert_eq!(parse_combined(line), Outcome::NotMine, "{line}");
        }
    }

    #[test]
    fn w3c_with_header_and_default() {
        let Some(Directive::Fields(fields)) = directive(
            "#Fields: date time s-ip cs-method cs-uri-stem cs-uri-query s-port cs-username c-ip cs(User-Agent) cs(Referer) sc-status sc-substatus sc-win32-status time-taken",
        ) else {
            panic!("fields");
        };
        assert_eq!(fields, IIS_DEFAULT_FIELDS);
        let line = "2024-05-01 07:59:58 10.0.0.5 GET /owa/auth/logon.aspx replaceCurrent=1 443 - 203.0.113.5 Mozilla/5.0+(Windows+NT+10.0) - 200 0 0 15";
        assert!(looks_like_w3c(line));
        let p = parsed(parse_w3c(line, &fields));
        assert_eq!(get(&p, "url_path").cloned(), s("/owa/auth/logon.aspx"));
        assert_eq!(get(&p, "url_query").cloned(), s("replaceCurrent=1"));
        assert_eq!(
            get(&p, "user_agent").cloned(),
            s("Mozilla/5.0 (Windows NT 10.0)")
        );
        assert_eq!(get(&p, "duration_us"), Some(&Value::UInt(15_000)));
        assert_eq!(get(&p, "status"), Some(&Value::UInt(200)));
        assert_eq!(get(&p, "user"), None);
        assert!(p.attrs.contains(&("w3c.s-ip".into(), "10.0.0.5".into())));
        assert_eq!(p.event_time_us, Some(1_714_550_398_000_000));
        assert!(matches!(
            parse_w3c("2024-05-01 07:59:58 x", &fields),
            Outcome::Failed(_)
        ));
        let bad = line.replace(" 200 ", " OK ");
        assert!(matches!(parse_w3c(&bad, &fields), Outcome::Failed(_)));
        // Found by the access_log fuzz target: a status beyond UInt16 made an unbatchable event.
        let bad = line.replace(" 200 ", " 401401 ");
        assert!(matches!(parse_w3c(&bad, &fields), Outcome::Failed(_)));
        assert_eq!(
            directive("#Software: Microsoft Internet Information Services 10.0"),
            Some(Directive::Other)
        );
        assert_eq!(directive("#!/bin/sh"), None);
        assert!(!looks_like_w3c("2024-05-01T07:59:58Z x"));
    }
}
