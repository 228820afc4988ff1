//! The collector's edge: one received line → one typed, pseudonymised event.
//!
//! [`edge_row`] is the single entry point for the delivery side (and [`edge_event`] the same,
//! read back as an owned event): it writes the line into a row the caller keeps, and runs
//!
//! 1. syslog parsing ([`crate::syslog::parse_line_into`]; a line without `<PRI>` is kept whole),
//! 2. format detection on the body (the syslog message, or the whole line) by the parsers of
//!    [`crate::parse`]: JSON login events / Windows event records (evtx, Winlogbeat, NXLog) /
//!    any other JSON object (`generic_json`), IIS W3C directives and lines,
//!    Apache/nginx access logs, sshd and sudo lines, ID-porten structured data — in that order,
//! 3. privacy ([`crate::privacy::Privacy::scrub_row`]) over every text field,
//!
//! and counts what happened in the source's [`EdgeStats`]. **Nothing is dropped**: a line in an
//! unknown format is a `syslog` event with its raw text, and a line whose format was recognised
//! but which did not parse is kept the same way, counted in `parse_failures` and marked with the
//! attribute `edge.parse_error` (a fixed reason, never the value that failed).
//!
//! An event of another kind keeps the syslog header's host, severity and time (unless the line
//! carries a more precise time), keeps the body as its `message`, and carries the syslog typed
//! fields as attributes `syslog.facility`, `syslog.app_name`, `syslog.proc_id` and
//! `syslog.msg_id`.
//!
//! IIS W3C logs are stateful: a `#Fields:` line names the columns of the lines after it. The
//! header is remembered per [`EdgeSource`], so a delivery task should use one `EdgeSource` per
//! file or connection of W3C logs. Before any header, a line is taken for W3C only when it has
//! exactly the IIS default fields; with a header, a date-led line that does not fit it is a parse
//! failure.
//!
//! ```
//! use varde_collector::edge::{EdgeSource, edge_event};
//! use varde_collector::privacy::{Privacy, PrivacyKey, PrivacyPolicy};
//! use varde_core::SourceKind;
//!
//! let privacy = Privacy::new(&PrivacyKey::from_bytes([1; 32]), PrivacyPolicy::default());
//! let source = EdgeSource::new(privacy);
//! let (kind, event) = edge_event(
//!     "<38>1 2026-11-23T17:59:58Z web01 sshd 42 - - Failed password for root from 203.0.113.5 port 50022 ssh2",
//!     1_795_975_200_000_000,
//!     &source,
//! );
//! assert_eq!(kind, SourceKind::Auth);
//! let (kind, event) = edge_event("søknad fra 31129956715", 0, &source);
//! assert_eq!(kind, SourceKind::Syslog);
//! assert!(event.message.as_deref().is_some_and(|m| m.starts_with("søknad fra fnr:")));
//! assert_eq!(source.stats().snapshot().national_ids, 1);
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use varde_core::{Event, Row, RowText, SourceKind, ValueRef};
use varde_transport::exposition::{Family, Value as Sample};

use crate::parse::access::{self, Directive, IIS_DEFAULT_FIELDS};
use crate::parse::json::JsonFields;
use crate::parse::oidc::{self, JsonOutcome};
use crate::parse::{Outcome, Parsed, auth};
use crate::privacy::{Privacy, PrivacyCounts, Scan};
use crate::syslog::parse_line_into;

/// Counters of one source (a listener, a file): what came in, what it became, what the privacy
/// layer replaced. Values are never recorded, only counts.
#[derive(Debug, Default)]
pub struct EdgeStats {
    lines: AtomicU64,
    events: [AtomicU64; SourceKind::ALL.len()],
    unparsed_lines: AtomicU64,
    parse_failures: AtomicU64,
    national_ids: AtomicU64,
    ip_addresses: AtomicU64,
    account_numbers_kept: AtomicU64,
}

/// A copy of an [`EdgeStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EdgeCounts {
    /// Lines handled.
    pub lines: u64,
    /// Events produced, per kind, in [`SourceKind::ALL`] order.
    pub events: [u64; SourceKind::ALL.len()],
    /// Lines kept as raw text: neither syslog nor any known format.
    pub unparsed_lines: u64,
    /// Lines of a recognised format that did not parse (kept as `syslog`).
    pub parse_failures: u64,
    /// National identity numbers pseudonymised.
    pub national_ids: u64,
    /// IP addresses pseudonymised.
    pub ip_addresses: u64,
    /// Account numbers kept because of their context.
    pub account_numbers_kept: u64,
}

impl EdgeCounts {
    /// Events produced of `kind`.
    pub fn events_of(&self, kind: SourceKind) -> u64 {
        self.events[usize::from(kind.code() - 1)]
    }
}

impl EdgeStats {
    fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Adds one scan's privacy counts.
    pub fn record_privacy(&self, counts: PrivacyCounts) {
        Self::add(&self.national_ids, counts.national_ids);
        Self::add(&self.ip_addresses, counts.ip_addresses);
        Self::add(&self.account_numbers_kept, counts.account_numbers_kept);
    }

    /// The counters now.
    pub fn snapshot(&self) -> EdgeCounts {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut events = [0; SourceKind::ALL.len()];
        for (e, c) in events.iter_mut().zip(&self.events) {
            *e = get(c);
        }
        EdgeCounts {
            lines: get(&self.lines),
            events,
            unparsed_lines: get(&self.unparsed_lines),
            parse_failures: get(&self.parse_failures),
            national_ids: get(&self.national_ids),
            ip_addresses: get(&self.ip_addresses),
            account_numbers_kept: get(&self.account_numbers_kept),
        }
    }

    /// The metric families of several sources, each once, labelled `source="<name>"` (keep
    /// names to a bounded set such as the configured sources). Names:
    /// `varde_collector_edge_lines_total`, `varde_collector_edge_events_total{kind}`,
    /// `varde_collector_edge_unparsed_lines_total`, `varde_collector_edge_parse_failures_total`,
    /// `varde_collector_pseudonymised_total{what}` (`national_id`, `ip_address`),
    /// `varde_collector_account_numbers_kept_total`.
    pub fn families(sources: &[(&str, &EdgeStats)]) -> Vec<Family> {
        let snaps: Vec<(&str, EdgeCounts)> = sources
            .iter()
            .map(|(name, s)| (*name, s.snapshot()))
            .collect();
        let per = |name: &str, help: &str, f: fn(&EdgeCounts) -> u64| {
            snaps
                .iter()
                .fold(Family::counter(name, help), |family, (n, c)| {
                    family.with([("source", *n)], Sample::Int(f(c)))
                })
        };
        let mut events = Family::counter(
            "varde_collector_edge_events",
            "Events produced at the edge, by source kind.",
        );
        let mut pseudonymised = Family::counter(
            "varde_collector_pseudonymised",
            "Values replaced by keyed pseudonyms at the edge (counts only).",
        );
        for (n, c) in &snaps {
            for k in SourceKind::ALL {
                events.push(
                    [("source", *n), ("kind", k.name())],
                    Sample::Int(c.events_of(k)),
                );
            }
            pseudonymised.push(
                [("source", *n), ("what", "national_id")],
                Sample::Int(c.national_ids),
            );
            pseudonymised.push(
                [("source", *n), ("what", "ip_address")],
                Sample::Int(c.ip_addresses),
            );
        }
        vec![
            per(
                "varde_collector_edge_lines",
                "Lines handled at the edge.",
                |c| c.lines,
            ),
            events,
            per(
                "varde_collector_edge_unparsed_lines",
                "Lines kept as raw text (no known format).",
                |c| c.unparsed_lines,
            ),
            per(
                "varde_collector_edge_parse_failures",
                "Lines of a recognised format that did not parse (kept raw).",
                |c| c.parse_failures,
            ),
            pseudonymised,
            per(
                "varde_collector_account_numbers_kept",
                "11-digit numbers kept because their context marks them as bank account numbers.",
                |c| c.account_numbers_kept,
            ),
        ]
    }
}

/// One source's edge state: the privacy layer, the source's counters and the W3C header last
/// seen on it. Create one per configured source (or per file/connection of IIS logs).
#[derive(Debug)]
pub struct EdgeSource {
    privacy: Privacy,
    stats: Arc<EdgeStats>,
    w3c_fields: Mutex<Option<Arc<[String]>>>,
    json: Arc<JsonFields>,
}

impl EdgeSource {
    /// A source with fresh counters.
    pub fn new(privacy: Privacy) -> Self {
        Self::with_stats(privacy, Arc::new(EdgeStats::default()))
    }

    /// A source counting into `stats` (shared with the metrics endpoint).
    pub fn with_stats(privacy: Privacy, stats: Arc<EdgeStats>) -> Self {
        EdgeSource {
            privacy,
            stats,
            w3c_fields: Mutex::new(None),
            json: Arc::new(JsonFields::default()),
        }
    }

    /// The same source, taking the host, message and time of generic JSON objects from
    /// `fields` (the `[json]` section of the configuration).
    pub fn with_json_fields(mut self, fields: Arc<JsonFields>) -> Self {
        self.json = fields;
        self
    }

    /// Another stream of the same source (one more connection or file): the same privacy,
    /// JSON fields and counters, no W3C header seen yet.
    pub fn sibling(&self) -> Self {
        Self::with_stats(self.privacy.clone(), self.stats.clone())
            .with_json_fields(self.json.clone())
    }

    /// The source's counters (share the `Arc` with the metrics endpoint).
    pub fn stats(&self) -> &Arc<EdgeStats> {
        &self.stats
    }

    /// The privacy layer in use.
    pub fn privacy(&self) -> &Privacy {
        &self.privacy
    }

    fn w3c_fields(&self) -> Option<Arc<[String]>> {
        self.w3c_fields
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_w3c_fields(&self, fields: Vec<String>) {
        *self
            .w3c_fields
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(fields.into());
    }
}

/// What detection decided for one line.
enum Detected {
    Parsed(Parsed),
    Whole(Event, SourceKind),
    /// A Windows event record, decoded into the spare row.
    WindowsRow,
    Keep,
    Failed(&'static str),
}

fn detect(
    row: RowText<'_>,
    receive_time_us: i64,
    source: &EdgeSource,
    spare: &mut Row,
    try_evtx: bool,
) -> Detected {
    let body = row.message().unwrap_or_default();
    let trimmed = body.trim_start();
    if trimmed.starts_with('{') {
        let json = trimmed.trim_end();
        if try_evtx && json.ends_with('}') && oidc::evtx_into(json, receive_time_us, spare) {
            return Detected::WindowsRow;
        }
        match oidc::parse_json_tree(body, receive_time_us, &source.json) {
            JsonOutcome::Login(p) => return Detected::Parsed(p),
            JsonOutcome::Windows(e) => return Detected::Whole(*e, SourceKind::WindowsEvent),
            JsonOutcome::Other(e) => return Detected::Whole(*e, SourceKind::GenericJson),
            JsonOutcome::Failed(why) => return Detected::Failed(why),
            JsonOutcome::NotMine => {}
        }
    }
    if body.starts_with('#') {
        return match access::directive(body) {
            Some(Directive::Fields(fields)) => {
                source.set_w3c_fields(fields);
                Detected::Keep
            }
            _ => Detected::Keep,
        };
    }
    if access::looks_like_w3c(body) {
        let outcome = match source.w3c_fields() {
            Some(fields) => access::parse_w3c(body, &fields),
            // Without a header, only a line with exactly IIS's default fields is taken for W3C:
            // plenty of applications start their lines with `YYYY-MM-DD hh:mm:ss `.
            None if body.split(' ').count() == IIS_DEFAULT_FIELDS.len() => {
                access::parse_w3c(body, &IIS_DEFAULT_FIELDS)
            }
            None => Outcome::NotMine,
        };
        if outcome != Outcome::NotMine {
            return from_outcome(outcome);
        }
    }
    let program = match row.get("app_name") {
        Some(ValueRef::Str(s)) => s,
        _ => "",
    };
    // Every line of sshd and sudo is an `auth` event (Sigma's `linux/sshd` and `linux/sudo`
    // rules are routed to that kind); the lines that are not logins or commands carry only
    // their program and message.
    if auth::is_sshd(program) {
        return Detected::Parsed(match auth::parse_sshd(program, body) {
            Outcome::Parsed(p) => p,
            _ => auth::program_only(program),
        });
    } else if program == "sudo" {
        return Detected::Parsed(match auth::parse_sudo(body) {
            Outcome::Parsed(p) => p,
            _ => auth::program_only(program),
        });
    }
    match access::parse_combined(body) {
        Outcome::NotMine => {}
        other => return from_outcome(other),
    }
    let mut attrs = row.attrs().peekable();
    if attrs.peek().is_none() {
        return Detected::Keep; // no structured data to read
    }
    let attrs: Vec<(String, String)> = attrs.map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    from_outcome(oidc::from_structured_data(&attrs))
}

fn from_outcome(outcome: Outcome) -> Detected {
    match outcome {
        Outcome::Parsed(p) => Detected::Parsed(p),
        Outcome::NotMine => Detected::Keep,
        Outcome::Failed(why) => Detected::Failed(why),
    }
}

/// Writes into `out` the syslog row `syslog` as an event of the parsed kind: the syslog typed
/// fields become `syslog.*` attributes, then come the syslog attributes the parser did not
/// consume, then the parser's own.
fn rebuild(row: &Row, parsed: &Parsed, out: &mut Row) {
    let syslog = row.read();
    out.clear(row.receive_time_us);
    out.event_time_us = parsed.event_time_us.unwrap_or(row.event_time_us);
    out.severity = row.severity;
    out.set_host_text(syslog.host().or(parsed.host.as_deref()));
    out.set_message_text(syslog.message());
    for (name, value) in &parsed.typed {
        out.set_value(name, value.as_ref());
    }
    for (name, value) in syslog.typed() {
        match value {
            ValueRef::Str(s) => out.push_attr(&["syslog.", name], s),
            ValueRef::UInt(n) => out.push_attr(&["syslog.", name], itoa::Buffer::new().format(n)),
            _ => {} // parse_error: meaningless once the body parsed
        }
    }
    for (k, v) in syslog.attrs() {
        if !parsed.consumed_attrs.iter().any(|c| c == k) {
            out.push_attr(&[k], v);
        }
    }
    for (k, v) in &parsed.attrs {
        out.push_attr(&[k], v);
    }
}

/// Turns one received line into one event: syslog parsing, format detection, privacy. See the
/// module docs. Never fails and never drops: the worst case is a `syslog` event holding the raw
/// line (with identity numbers pseudonymised).
pub fn edge_event(line: &str, receive_time_us: i64, source: &EdgeSource) -> (SourceKind, Event) {
    let (mut row, mut spare) = (Row::default(), Row::default());
    let kind = edge_row(line, receive_time_us, source, &mut row, &mut spare);
    (kind, row.to_event())
}

/// [`edge_event`] into `row`, keeping its buffers (and those of `spare`, where a row is put
/// together again when a parser or the privacy layer rewrites it): the collector's own path,
/// with no owned string per field.
pub fn edge_row(
    line: &str,
    receive_time_us: i64,
    source: &EdgeSource,
    row: &mut Row,
    spare: &mut Row,
) -> SourceKind {
    let stats = &source.stats;
    EdgeStats::add(&stats.lines, 1);
    // A JSON line without a syslog header (a file or socket of JSON lines) holding a Windows
    // record is decoded straight into the row, not first copied into it as a raw message: the
    // same event the steps below make of it.
    let bare = line.trim_end_matches(['\r', '\n']).trim();
    let bare_json = bare.starts_with('{') && bare.ends_with('}');
    if bare_json && oidc::evtx_into(bare, receive_time_us, row) {
        let scan = source.privacy.scan(row.read());
        return finish(source, row, spare, SourceKind::WindowsEvent, scan);
    }
    parse_line_into(line, receive_time_us, row);
    let text = row.read();
    // A bare JSON line was tried as a Windows record above; its body is that same text.
    let (kind, scan) = match detect(text, receive_time_us, source, spare, !bare_json) {
        // The common case: the row is final as parsed, and is scanned as read already.
        Detected::Keep => {
            if text.get("parse_error") == Some(ValueRef::Bool(true)) {
                EdgeStats::add(&stats.unparsed_lines, 1);
            }
            (SourceKind::Syslog, source.privacy.scan(text))
        }
        Detected::Parsed(parsed) => {
            rebuild(row, &parsed, spare);
            std::mem::swap(row, spare);
            (parsed.kind, source.privacy.scan(row.read()))
        }
        Detected::WindowsRow => {
            if spare.host().is_none() {
                spare.set_host_text(row.host());
            }
            std::mem::swap(row, spare);
            (SourceKind::WindowsEvent, source.privacy.scan(row.read()))
        }
        Detected::Whole(event, kind) => {
            spare.assign(&event);
            spare.receive_time_us = receive_time_us;
            if event.host.is_none() {
                spare.set_host_text(row.host());
            }
            std::mem::swap(row, spare);
            (kind, source.privacy.scan(row.read()))
        }
        Detected::Failed(why) => {
            EdgeStats::add(&stats.parse_failures, 1);
            row.push_attr(&["edge.parse_error"], why);
            (SourceKind::Syslog, source.privacy.scan(row.read()))
        }
    };
    finish(source, row, spare, kind, scan)
}

/// The last step of [`edge_row`]: the privacy layer's replacements written, the event counted.
fn finish(
    source: &EdgeSource,
    row: &mut Row,
    spare: &mut Row,
    kind: SourceKind,
    scan: Scan,
) -> SourceKind {
    scan.apply(row, spare);
    source.stats.record_privacy(scan.counts);
    EdgeStats::add(&source.stats.events[usize::from(kind.code() - 1)], 1);
    kind
}

#[cfg(test)]
mod tests;
