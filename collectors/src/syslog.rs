//! Syslog lines (RFC 5424 and RFC 3164) into events of kind `syslog`.
//!
//! Parsing is by `syslog_loose` (the parser Vector uses); the most common shape of all,
//! `<PRI>Mmm dd hh:mm:ss host tag[pid]: message`, is read by [`common_3164`] into the same
//! message `syslog_loose` makes of it, in a tenth of the time. A line without `<PRI>` is parsed only
//! when it starts with a syslog timestamp — `Mmm dd hh:mm:ss ` or RFC 3339 `YYYY-MM-DDThh:mm:ss`
//! — as the lines of files such as `/var/log/auth.log` do (then there is no facility or
//! severity). Any other line is not syslog at all and is kept whole as the message with
//! `parse_error = true`: nothing is ever dropped.
//! RFC 3164 timestamps carry neither year nor zone: the collector's local zone is assumed, and the
//! year is the one that puts the time closest to the receive time (so December lines read in
//! January belong to last year).

use chrono::{DateTime, Datelike, FixedOffset, Local, LocalResult, Offset, TimeZone, Utc};
use syslog_loose::{IncompleteDate, Message, ProcId, Protocol, Variant, decompose_pri};
use varde_core::{Event, Row, ValueRef};

/// Parses one syslog line received at `receive_time_us` (µs since the epoch).
pub fn parse_line(line: &str, receive_time_us: i64) -> Event {
    let mut row = Row::default();
    parse_line_into(line, receive_time_us, &mut row);
    row.to_event()
}

/// [`parse_line`] into `row` (emptied first, its buffers kept): what the collector's edge
/// does for every line, without an owned string per field.
pub fn parse_line_into(line: &str, receive_time_us: i64, row: &mut Row) {
    row.clear(receive_time_us);
    let line = line.trim_end_matches(['\r', '\n']);
    let receive_year = local_year(receive_time_us);
    let resolve_year = move |(month, day, ..): IncompleteDate| {
        nearest_year(receive_year, receive_time_us, month, day)
    };
    if !line.trim_start().starts_with('<') && !starts_with_timestamp(line) {
        return raw(row, line);
    }
    // RFC 3339 timestamps without a zone (syslog-ng's loggen, some appliances) are local time,
    // as RFC 3164 timestamps are: the zone is made explicit so the header parses.
    let zoned = with_local_zone(line);
    let line_to_parse = zoned.as_deref().unwrap_or(line);
    let common = LAST_MINUTE
        .with_borrow_mut(|minutes| common_3164(line_to_parse, resolve_year, CachedLocal, minutes));
    let Some(msg) = common.or_else(|| {
        syslog_loose::parse_message_with_year_exact_tz(
            line_to_parse,
            resolve_year,
            Some(CachedLocal),
            Variant::Either,
        )
        .ok()
    }) else {
        return raw(row, line);
    };
    if let Some(t) = msg.timestamp {
        row.event_time_us = t.timestamp_micros();
    }
    row.set_host_text(msg.hostname);
    row.severity = msg.severity.map(|s| s as u8);
    // RFC 5424 senders may start MSG with a byte-order mark to say it is UTF-8; it is not text.
    row.set_message_text(Some(msg.msg.strip_prefix('\u{feff}').unwrap_or(msg.msg)));
    if let Some(f) = msg.facility {
        row.set_value("facility", ValueRef::UInt(f as u64));
    }
    if let Some(app) = msg.appname {
        row.set_value("app_name", ValueRef::Str(app));
    }
    match msg.procid {
        Some(ProcId::PID(n)) => {
            row.set_value("proc_id", ValueRef::Str(itoa::Buffer::new().format(n)));
        }
        Some(ProcId::Name(s)) => row.set_value("proc_id", ValueRef::Str(s)),
        None => {}
    }
    if let Some(id) = msg.msgid {
        row.set_value("msg_id", ValueRef::Str(id));
    }
    row.set_value("parse_error", ValueRef::Bool(false));
    for element in &msg.structured_data {
        for (name, value) in &element.params {
            row.push_attr(&["sd.", element.id, ".", name], value);
        }
    }
}

/// The months of RFC 3164 timestamps as senders write them.
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

/// Reads the most common syslog shape, `<PRI>Mmm dd hh:mm:ss host tag[pid]: message` (the
/// `[pid]` optional), into the message `syslog_loose` makes of the same line; `None` for any
/// other shape, which `syslog_loose` then reads. Deliberately narrow: a month not written
/// `Jan`…`Dec`, tabs, a trailing `:` on the time, a host or tag that is `-`, not ASCII, or a
/// host ending in `:`, a message starting with `[` or `-` (which `syslog_loose` may take for
/// structured data) are all left to `syslog_loose`. A property test holds the two to the same
/// fields on generated lines.
fn common_3164<'a, F, Tz>(
    line: &'a str,
    year_of: F,
    tz: Tz,
    minutes: &mut LastMinute,
) -> Option<Message<&'a str>>
where
    F: FnOnce(IncompleteDate) -> i32,
    Tz: TimeZone,
{
    let s = line.trim();
    let b = s.as_bytes();
    let mut i = 0;
    let expect = |c: u8, i: &mut usize| {
        let ok = b.get(*i) == Some(&c);
        *i += usize::from(ok);
        ok
    };
    if !expect(b'<', &mut i) {
        return None;
    }
    let (pri, at) = number(b, i, 3)?;
    i = at;
    if !expect(b'>', &mut i) || pri > 191 {
        return None;
    }
    let month = b.get(i..i + 3)?;
    let month = MONTHS.iter().position(|m| m.as_slice() == month)? as u32 + 1;
    i += 3;
    let spaces = |i: usize| i + b[i..].iter().take_while(|&&c| c == b' ').count();
    let at = spaces(i);
    if at == i {
        return None;
    }
    let (day, at) = number(b, at, 2)?;
    let i2 = spaces(at);
    if i2 == at {
        return None;
    }
    let (hour, at) = number(b, i2, 2)?;
    i = at;
    if !expect(b':', &mut i) {
        return None;
    }
    let (minute, at) = number(b, i, 2)?;
    i = at;
    if !expect(b':', &mut i) {
        return None;
    }
    let (second, at) = number(b, i, 2)?;
    i = at;
    // The host: a space, then a word of visible ASCII not ending in `:`.
    if !expect(b' ', &mut i) {
        return None;
    }
    let host_end = i + b[i..].iter().take_while(|c| c.is_ascii_graphic()).count();
    let host = &s[i..host_end];
    if host.is_empty() || host == "-" || host.ends_with(':') || b.get(host_end) != Some(&b' ') {
        return None;
    }
    i = host_end + 1;
    // The tag: a word of visible ASCII without `:`, then `:`.
    let tag_end = i + b[i..]
        .iter()
        .take_while(|&&c| c.is_ascii_graphic() && c != b':')
        .count();
    let tag = &s[i..tag_end];
    if tag.is_empty() || tag == "-" || b.get(tag_end) != Some(&b':') {
        return None;
    }
    i = tag_end + 1;
    // Spaces or tabs after the colon belong to no field.
    i += b[i..]
        .iter()
        .take_while(|&&c| c == b' ' || c == b'\t')
        .count();
    if matches!(b.get(i), Some(b'[' | b'-')) {
        return None;
    }
    // `app[pid]`: the tag is a few ASCII bytes, searched byte by byte (`str::find` costs more
    // to set up than such a search).
    let byte_at = |t: &str, c: u8| t.bytes().position(|x| x == c);
    let (appname, procid) = match byte_at(tag, b'[') {
        Some(open) => {
            let (app, rest) = (&tag[..open], &tag[open + 1..]);
            match byte_at(rest, b']') {
                Some(end) if end > 0 && end + 1 == rest.len() => (app, Some(&rest[..end])),
                _ => (tag, None),
            }
        }
        None => (tag, None),
    };
    let date = (month, day, hour, minute, second);
    let year = year_of(date);
    let timestamp = minutes.at(&tz, (year, month, day, hour, minute), second)?;
    let (facility, severity) = decompose_pri(pri as u8);
    Some(Message {
        protocol: Protocol::RFC3164,
        facility,
        severity,
        timestamp: Some(timestamp),
        hostname: Some(host),
        appname: Some(appname),
        procid: procid.map(ProcId::from),
        msgid: None,
        structured_data: Vec::new(),
        msg: &s[i..],
    })
}

/// The decimal number of 1 to `most` digits at `b[i..]`, and where it ends.
fn number(b: &[u8], i: usize, most: usize) -> Option<(u32, usize)> {
    // One pass over at most `most + 1` bytes: the value and the count together.
    let (mut value, mut n) = (0u32, 0);
    while n <= most {
        match b.get(i + n) {
            Some(&d) if d.is_ascii_digit() => {
                value = value * 10 + u32::from(d - b'0');
                n += 1;
            }
            _ => break,
        }
    }
    (n > 0 && n <= most).then_some((value, i + n))
}

/// True when `line` starts with a BSD (`May  1 09:59:58 `) or RFC 3339 (`2024-05-01T09:59:58`)
/// timestamp, as the lines of local log files without `<PRI>` do.
fn starts_with_timestamp(line: &str) -> bool {
    let b = line.as_bytes();
    let shaped = |shape: &[u8]| {
        b.len() > shape.len()
            && shape.iter().zip(b).all(|(s, c)| match s {
                b'd' => c.is_ascii_digit(),
                b'D' => c.is_ascii_digit() || *c == b' ',
                b'a' => c.is_ascii_alphabetic(),
                other => other == c,
            })
    };
    const MONTHS: [&[u8]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    (shaped(b"aaa Dd dd:dd:dd ") && MONTHS.iter().any(|m| b.starts_with(m)))
        || shaped(b"dddd-dd-ddTdd:dd:dd")
}

/// `line` with the collector's local zone offset added to a leading RFC 3339 timestamp that
/// has none (after an optional `<PRI>`), e.g. `<38>2026-12-01T21:39:39 host app: msg` →
/// `<38>2026-12-01T21:39:39+01:00 host app: msg`; `None` when there is nothing to add.
fn with_local_zone(line: &str) -> Option<String> {
    let start = if line.starts_with('<') {
        memchr::memchr(b'>', line.as_bytes())? + 1
    } else {
        0
    };
    let rest = &line[start..];
    let b = rest.as_bytes();
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd";
    let shaped = b.len() > SHAPE.len()
        && SHAPE.iter().zip(b).all(|(s, c)| {
            if *s == b'd' {
                c.is_ascii_digit()
            } else {
                s == c
            }
        });
    if !shaped {
        return None;
    }
    let mut end = SHAPE.len();
    if b.get(end) == Some(&b'.') {
        end += 1;
        while b.get(end).is_some_and(u8::is_ascii_digit) {
            end += 1;
        }
    }
    if b.get(end) != Some(&b' ') {
        return None; // a zone (`Z`, `+01:00`) or something else follows
    }
    let naive = chrono::NaiveDateTime::parse_from_str(&rest[..end], "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    let offset = LOCAL_ZONE
        .with_borrow_mut(|z| z.offset_of_local(&naive))?
        .to_string();
    Some(format!(
        "{}{}{offset}{}",
        &line[..start],
        &rest[..end],
        &rest[end..]
    ))
}

fn raw(row: &mut Row, line: &str) {
    row.set_message_text(Some(line));
    row.set_value("parse_error", ValueRef::Bool(true));
}

/// The year for a year-less (month, day) that puts it nearest to the receive time.
fn nearest_year(receive_year: i32, receive_time_us: i64, month: u32, day: u32) -> i32 {
    LOCAL_ZONE.with_borrow_mut(|z| z.nearest_year(receive_year, receive_time_us, month, day))
}

/// The year, in the collector's local zone, of an instant (µs since the epoch).
fn local_year(utc_us: i64) -> i32 {
    LOCAL_ZONE.with_borrow_mut(|z| z.local_year(utc_us))
}

thread_local! {
    /// The collector's local zone, cached per thread (see [`ZoneCache`]).
    static LOCAL_ZONE: std::cell::RefCell<ZoneCache<Local>> =
        std::cell::RefCell::new(ZoneCache::new(Local));
    /// The last local minute of a RFC 3164 date this thread read (see [`LastMinute`]).
    static LAST_MINUTE: std::cell::RefCell<LastMinute> =
        std::cell::RefCell::new(LastMinute::default());
}

/// A (year, month, day, hour, minute) of local time.
type MinuteKey = (i32, u32, u32, u32, u32);

/// The last local minute a date was read in, and the instant its first second is (the
/// earliest, when the clock was turned back; `None` for a minute skipped when it was turned
/// forward). Lines of a stream mostly share their minute, and the calendar arithmetic of
/// making an instant of a local date and time is done once for all of them: an instant of the
/// same minute is its start plus the seconds, since offsets change only on whole minutes (as
/// [`ZoneCache`] assumes too).
#[derive(Debug, Default)]
pub(crate) struct LastMinute(Option<(MinuteKey, Option<DateTime<FixedOffset>>)>);

impl LastMinute {
    /// `tz.with_ymd_and_hms(…).earliest()` at a fixed offset, as chrono gives it: `None` for a
    /// time that does not exist there, or a second past 59.
    pub(crate) fn at<Tz: TimeZone>(
        &mut self,
        tz: &Tz,
        key: MinuteKey,
        second: u32,
    ) -> Option<DateTime<FixedOffset>> {
        if second > 59 {
            return None;
        }
        let start = match self.0 {
            Some((k, start)) if k == key => start,
            _ => {
                let (year, month, day, hour, minute) = key;
                let start = tz
                    .with_ymd_and_hms(year, month, day, hour, minute, 0)
                    .earliest()
                    .map(|t| {
                        let offset = t.offset().fix();
                        t.with_timezone(&offset)
                    });
                self.0 = Some((key, start));
                start
            }
        };
        start?.checked_add_signed(chrono::TimeDelta::seconds(i64::from(second)))
    }
}

/// The collector's local zone for `syslog_loose`, answered from this thread's [`ZoneCache`]:
/// RFC 3164 dates (`Dec  6 11:12:38`) are local time, and asking chrono's `Local` for each one
/// read the clock. The same offsets as `Local` for dates without a year; for the rare dates with
/// one (`Dec  6 2026 11:12:38`) `syslog_loose` takes the offset at the time read as UTC, which
/// differs from reading it as local time only within two hours of a clock change.
#[derive(Debug, Clone, Copy)]
struct CachedLocal;

impl TimeZone for CachedLocal {
    type Offset = FixedOffset;

    fn from_offset(_: &FixedOffset) -> Self {
        CachedLocal
    }

    fn offset_from_local_date(&self, local: &chrono::NaiveDate) -> LocalResult<FixedOffset> {
        match local.and_hms_opt(0, 0, 0) {
            Some(midnight) => self.offset_from_local_datetime(&midnight),
            None => LocalResult::None,
        }
    }

    fn offset_from_local_datetime(
        &self,
        local: &chrono::NaiveDateTime,
    ) -> LocalResult<FixedOffset> {
        LOCAL_ZONE.with_borrow_mut(|z| z.local_offsets(local))
    }

    fn offset_from_utc_date(&self, utc: &chrono::NaiveDate) -> FixedOffset {
        utc.and_hms_opt(0, 0, 0)
            .map_or(FixedOffset::east_opt(0).unwrap_or(Utc.fix()), |t| {
                self.offset_from_utc_datetime(&t)
            })
    }

    fn offset_from_utc_datetime(&self, utc: &chrono::NaiveDateTime) -> FixedOffset {
        LOCAL_ZONE
            .with_borrow_mut(|z| z.offset_at(utc.and_utc().timestamp_micros()))
            .unwrap_or(Utc.fix())
    }
}

/// A (receive year, month, day) and local noon of that day in the year before, that year and
/// the year after (µs since the epoch; `None` where there is no such day or time).
type NoonsAround = ((i32, u32, u32), [Option<i64>; 3]);

/// A local minute and the offsets (in seconds east of UTC) of its times: earliest, latest.
type LocalMinute = (i64, Option<i32>, Option<i32>);

/// A time zone's offsets, cached by the minute they are asked for.
///
/// Syslog timestamps without a zone are local time, so every such line needs the local offset,
/// some lines three (the year of a RFC 3164 date is chosen among three). chrono's `Local` checks
/// on every conversion whether the zone changed (it reads the clock each time), which cost the
/// collector several per cent of its CPU at full speed. Offsets change only on whole minutes,
/// so the offset of any time is the offset of its minute's start, asked of the zone once and
/// kept; a minute not in the cache asks the zone again, so a changed zone file is still noticed
/// within a minute. Small direct-mapped tables: a line's few minutes rarely collide.
pub(crate) struct ZoneCache<Tz> {
    tz: Tz,
    /// By local minute: the offsets of local times in it, earliest and latest (two when the
    /// clock was turned back, none for the minutes skipped when it was turned forward).
    local: [Option<LocalMinute>; 16],
    /// By UTC minute: the offset at instants in it.
    utc: [Option<(i64, Option<i32>)>; 4],
    /// By day (days since the Common Era's start): the instant of local noon, µs since the
    /// epoch. A year-less date asks for the same day in three years, 365 or 366 days apart:
    /// eight slots by day number keep the three apart.
    noons: [Option<(i32, Option<i64>)>; 8],
    /// The last (receive year, month, day) a year was chosen for, and the local noons of that
    /// day in the year before, that year and the year after: a stream's lines mostly share
    /// their date.
    noons_around: Option<NoonsAround>,
    /// The last UTC minute asked for its local year, and that year.
    year_of_minute: Option<(i64, i32)>,
}

impl<Tz: TimeZone> ZoneCache<Tz> {
    pub(crate) fn new(tz: Tz) -> Self {
        ZoneCache {
            tz,
            local: [None; 16],
            utc: [None; 4],
            noons: [None; 8],
            noons_around: None,
            year_of_minute: None,
        }
    }

    /// Of the year before `receive_year`, that year and the next, the one that puts local noon
    /// of (`month`, `day`) nearest to `receive_time_us` (the earlier on a tie).
    pub(crate) fn nearest_year(
        &mut self,
        receive_year: i32,
        receive_time_us: i64,
        month: u32,
        day: u32,
    ) -> i32 {
        let key = (receive_year, month, day);
        let noons = match self.noons_around {
            Some((k, noons)) if k == key => noons,
            _ => {
                let mut noon = |year: i32| {
                    chrono::NaiveDate::from_ymd_opt(year, month, day.max(1))
                        .and_then(|date| self.local_noon(date))
                };
                let noons = [
                    noon(receive_year - 1),
                    noon(receive_year),
                    noon(receive_year + 1),
                ];
                self.noons_around = Some((key, noons));
                noons
            }
        };
        // The first of the nearest (a plain loop: the range-and-zip form cost about 150
        // instructions per line).
        let distance = |noon: Option<i64>| noon.map_or(i64::MAX, |t| (t - receive_time_us).abs());
        let mut best = (receive_year - 1, distance(noons[0]));
        for (year, noon) in [(receive_year, noons[1]), (receive_year + 1, noons[2])] {
            let d = distance(noon);
            if d < best.1 {
                best = (year, d);
            }
        }
        best.0
    }

    /// The local year of the instant `utc_us` (µs since the epoch); 1970 for an instant chrono
    /// cannot represent. Kept per UTC minute when the offset is a whole number of minutes (then
    /// the local year cannot change inside the minute).
    pub(crate) fn local_year(&mut self, utc_us: i64) -> i32 {
        let minute = utc_us.div_euclid(60_000_000);
        if let Some((m, year)) = self.year_of_minute
            && m == minute
        {
            return year;
        }
        let Some(utc) = DateTime::<Utc>::from_timestamp_micros(utc_us) else {
            return 1970;
        };
        let offset = self.offset_at(utc_us);
        let year = match offset {
            Some(offset) => utc.with_timezone(&offset).year(),
            None => utc.year(),
        };
        if offset.is_none_or(|o| o.local_minus_utc() % 60 == 0) {
            self.year_of_minute = Some((minute, year));
        }
        year
    }

    /// The offset of the local time `naive`, as `tz.from_local_datetime(naive).earliest()`
    /// gives it; `None` for a local time that does not exist (skipped by a change to summer
    /// time).
    pub(crate) fn offset_of_local(&mut self, naive: &chrono::NaiveDateTime) -> Option<FixedOffset> {
        self.local_offsets(naive).earliest()
    }

    /// The offsets the local time `naive` can have, as `tz.offset_from_local_datetime` gives
    /// them.
    pub(crate) fn local_offsets(
        &mut self,
        naive: &chrono::NaiveDateTime,
    ) -> LocalResult<FixedOffset> {
        let minute = naive.and_utc().timestamp().div_euclid(60);
        let slot = minute.rem_euclid(16) as usize;
        let (earliest, latest) = match self.local[slot] {
            Some((m, earliest, latest)) if m == minute => (earliest, latest),
            _ => {
                let Some(start) = DateTime::from_timestamp(minute * 60, 0) else {
                    return LocalResult::None;
                };
                let offsets = self
                    .tz
                    .offset_from_local_datetime(&start.naive_utc())
                    .map(|o| o.fix().local_minus_utc());
                let (earliest, latest) = (offsets.earliest(), offsets.latest());
                self.local[slot] = Some((minute, earliest, latest));
                (earliest, latest)
            }
        };
        match (
            earliest.and_then(FixedOffset::east_opt),
            latest.and_then(FixedOffset::east_opt),
        ) {
            (Some(e), Some(l)) if e == l => LocalResult::Single(e),
            (Some(e), Some(l)) => LocalResult::Ambiguous(e, l),
            _ => LocalResult::None,
        }
    }

    /// The instant of noon, local time, on `date` (µs since the epoch); `None` when that
    /// time does not exist there.
    pub(crate) fn local_noon(&mut self, date: chrono::NaiveDate) -> Option<i64> {
        let day = date.num_days_from_ce();
        let slot = day.rem_euclid(8) as usize;
        if let Some((d, instant)) = self.noons[slot]
            && d == day
        {
            return instant;
        }
        let noon = date.and_hms_opt(12, 0, 0)?;
        let instant = self.offset_of_local(&noon).map(|offset| {
            noon.and_utc().timestamp_micros() - i64::from(offset.local_minus_utc()) * 1_000_000
        });
        self.noons[slot] = Some((day, instant));
        instant
    }

    /// The offset at the instant `utc_us` (µs since the epoch).
    pub(crate) fn offset_at(&mut self, utc_us: i64) -> Option<FixedOffset> {
        let minute = utc_us.div_euclid(60_000_000);
        let slot = minute.rem_euclid(4) as usize;
        let seconds = match self.utc[slot] {
            Some((m, seconds)) if m == minute => seconds,
            _ => {
                let seconds = DateTime::from_timestamp(minute * 60, 0).map(|start| {
                    self.tz
                        .offset_from_utc_datetime(&start.naive_utc())
                        .fix()
                        .local_minus_utc()
                });
                self.utc[slot] = Some((minute, seconds));
                seconds
            }
        };
        FixedOffset::east_opt(seconds?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use varde_core::Value;

    /// An instant of a local date and time from the last minute's start plus its seconds is
    /// what chrono-tz's Europe/Oslo gives directly, through both clock changes of 2025 (the
    /// skipped hour has none, the repeated hour its earlier instant), seconds 0 to 60 asked in an
    /// order that moves between minutes, and days that do not exist.
    #[test]
    fn instants_of_a_minute_are_the_zones_own() {
        use chrono_tz::Europe::Oslo;
        let mut minutes = LastMinute::default();
        let keys: [MinuteKey; 10] = [
            (2025, 3, 30, 1, 59),
            (2025, 3, 30, 2, 0),
            (2025, 3, 30, 2, 30),
            (2025, 3, 30, 3, 0),
            (2025, 10, 26, 1, 59),
            (2025, 10, 26, 2, 0),
            (2025, 10, 26, 2, 59),
            (2025, 10, 26, 3, 0),
            (2025, 2, 30, 12, 0),
            (2024, 2, 29, 23, 59),
        ];
        let mut checked = 0;
        for step in [1u32, 7, 13] {
            for k in 0..keys.len() * 61 {
                // Runs of a few seconds in one minute, then another minute.
                let key = keys[(k / 5 * step as usize) % keys.len()];
                let second = (k as u32 * step) % 61;
                let (year, month, day, hour, minute) = key;
                let want = Oslo
                    .with_ymd_and_hms(year, month, day, hour, minute, second)
                    .earliest()
                    .map(|t| t.fixed_offset());
                assert_eq!(
                    minutes.at(&Oslo, key, second),
                    want,
                    "{key:?} second {second}"
                );
                checked += usize::from(want.is_some());
            }
        }
        assert!(checked > 1000, "only {checked} instants existed");
    }

    /// The cache answers as the zone itself does, around both of Norway's clock changes of
    /// 2024 and 2025 (chrono-tz's Europe/Oslo is the reference), whatever order it is asked in.
    #[test]
    fn cached_offsets_are_the_zones_own_across_clock_changes() {
        use chrono::NaiveDate;
        use chrono_tz::Europe::Oslo;
        let mut cache = ZoneCache::new(Oslo);
        let days = [
            (2024, 3, 31),
            (2024, 10, 27),
            (2025, 3, 30),
            (2025, 10, 26),
            (2025, 7, 1),
        ];
        let mut checked = 0;
        for (y, m, d) in days {
            let midnight = NaiveDate::from_ymd_opt(y, m, d)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .expect("a date");
            // Every 17 seconds through the day, and back again through the cache's slots.
            for step in (0..86_400 / 17).chain((0..86_400 / 17).rev()) {
                let naive = midnight + chrono::Duration::seconds(step * 17);
                let want = Oslo
                    .from_local_datetime(&naive)
                    .earliest()
                    .map(|t| t.offset().fix());
                assert_eq!(cache.offset_of_local(&naive), want, "local {naive}");
                let all = Oslo.offset_from_local_datetime(&naive).map(|o| o.fix());
                assert_eq!(cache.local_offsets(&naive), all, "local {naive}");
                let utc_us = naive.and_utc().timestamp_micros() + 123_456;
                let want = Oslo.offset_from_utc_datetime(&naive).fix();
                assert_eq!(cache.offset_at(utc_us), Some(want), "utc {naive}");
                checked += 1;
            }
        }
        assert!(checked > 25_000);
        // Local noon of the same day in consecutive years, asked in turn as a year-less date
        // does.
        for _ in 0..3 {
            for year in 2023..=2026 {
                for (m, d) in [(3, 31), (10, 27), (12, 6)] {
                    let date = NaiveDate::from_ymd_opt(year, m, d).expect("a date");
                    let want = Oslo
                        .from_local_datetime(&date.and_hms_opt(12, 0, 0).expect("noon"))
                        .earliest()
                        .map(|t| t.timestamp_micros());
                    assert_eq!(cache.local_noon(date), want, "noon of {date}");
                }
            }
        }
        // The hour skipped in spring has no offset; the hour repeated in autumn takes summer time.
        let skipped = NaiveDate::from_ymd_opt(2024, 3, 31)
            .and_then(|d| d.and_hms_opt(2, 30, 0))
            .expect("a time");
        assert_eq!(cache.offset_of_local(&skipped), None);
        let repeated = NaiveDate::from_ymd_opt(2024, 10, 27)
            .and_then(|d| d.and_hms_opt(2, 30, 0))
            .expect("a time");
        assert_eq!(
            cache.offset_of_local(&repeated),
            FixedOffset::east_opt(7200)
        );
    }

    /// The year chosen for a year-less date, and the local year of a receive time, are those
    /// chrono-tz's Europe/Oslo gives when asked directly, at receive times every 13 hours 7
    /// minutes through two years (both new years, both clock changes), for dates across the
    /// year, asked in an order that keeps reusing and replacing the kept answers.
    #[test]
    fn years_are_the_zones_own() {
        use chrono::NaiveDate;
        use chrono_tz::Europe::Oslo;
        let mut cache = ZoneCache::new(Oslo);
        let start = Utc
            .with_ymd_and_hms(2023, 12, 1, 0, 0, 0)
            .earliest()
            .map(|t| t.timestamp_micros())
            .expect("a time");
        let step = (13 * 60 + 7) * 60 * 1_000_000_i64;
        // Days of one month side by side, so a kept answer is asked for its month's other day.
        let dates = [
            (1, 1),
            (1, 31),
            (6, 30),
            (6, 1),
            (7, 1),
            (7, 31),
            (12, 31),
            (12, 1),
            (2, 29),
            (3, 31),
            (10, 27),
        ];
        let mut checked = 0;
        for k in 0..1_340 {
            let t = start + k * step;
            let year = DateTime::<Utc>::from_timestamp_micros(t)
                .map(|u| u.with_timezone(&Oslo).year())
                .expect("a time");
            assert_eq!(cache.local_year(t), year, "local year at {t}");
            assert_eq!(cache.local_year(t + 1), year, "again, from the cache");
            for &(month, day) in dates.iter().cycle().skip(k as usize % dates.len()).take(3) {
                let want = [year - 1, year, year + 1]
                    .into_iter()
                    .min_by_key(|&y| {
                        NaiveDate::from_ymd_opt(y, month, day)
                            .and_then(|d| d.and_hms_opt(12, 0, 0))
                            .and_then(|noon| Oslo.from_local_datetime(&noon).earliest())
                            .map_or(i64::MAX, |noon| (noon.timestamp_micros() - t).abs())
                    })
                    .expect("three years");
                assert_eq!(
                    cache.nearest_year(year, t, month, day),
                    want,
                    "{month}-{day} at {t}"
                );
                checked += 1;
            }
        }
        assert!(checked > 4_000);
    }

    const NOW: i64 = 1_714_557_600_000_000; // 2024-05-01T10:00:00Z

    #[test]
    fn timestamps_without_a_zone_are_local_and_byte_order_marks_are_not_text() {
        // syslog-ng's loggen: an RFC 3339 time without zone, then an RFC 3164 header.
        let e = parse_line(
            "<38>2024-05-01T12:00:00 localhost prg00000[1234]: seq: 0000000001, thread: 0000",
            NOW,
        );
        assert_eq!(e.get("parse_error"), Some(&Value::Bool(false)), "{e:?}");
        assert_eq!(e.host.as_deref(), Some("localhost"));
        assert_eq!(e.get("app_name"), Some(&Value::Str("prg00000".into())));
        assert_eq!(e.get("proc_id"), Some(&Value::Str("1234".into())));
        assert_eq!(e.severity, Some(6));
        let local = Local
            .with_ymd_and_hms(2024, 5, 1, 12, 0, 0)
            .earliest()
            .map(|t| t.timestamp_micros());
        assert_eq!(Some(e.event_time_us), local);
        assert_eq!(e.message.as_deref(), Some("seq: 0000000001, thread: 0000"));
        // A zone present is left alone.
        assert_eq!(with_local_zone("<38>2024-05-01T12:00:00Z h a: m"), None);
        assert_eq!(
            with_local_zone("<38>1 2024-05-01T12:00:00Z h a - - m"),
            None
        );
        // RFC 5424 with a BOM before MSG.
        let e = parse_line("<38>1 2024-05-01T09:59:58Z h app 1 - - \u{feff}hello", NOW);
        assert_eq!(e.message.as_deref(), Some("hello"));
    }

    #[test]
    fn rfc5424_with_structured_data() {
        let e = parse_line(
            r#"<165>1 2024-05-01T09:59:58.5Z fw01.kommune.no sshd 4242 ID47 [exampleSDID@32473 iut="3" eventSource="Application"] Failed password for root"#,
            NOW,
        );
        assert_eq!(e.event_time_us, 1_714_557_598_500_000);
        assert_eq!(e.host.as_deref(), Some("fw01.kommune.no"));
        assert_eq!(e.severity, Some(5));
        assert_eq!(e.get("facility"), Some(&Value::UInt(20)));
        assert_eq!(e.get("app_name"), Some(&Value::Str("sshd".into())));
        assert_eq!(e.get("proc_id"), Some(&Value::Str("4242".into())));
        assert_eq!(e.get("msg_id"), Some(&Value::Str("ID47".into())));
        assert_eq!(e.get("parse_error"), Some(&Value::Bool(false)));
        assert_eq!(e.message.as_deref(), Some("Failed password for root"));
        assert!(
            e.attrs
                .contains(&("sd.exampleSDID@32473.iut".into(), "3".into()))
        );
    }

    #[test]
    fn rfc3164_takes_the_nearest_year() {
        let e = parse_line(
            "<34>Apr 30 22:14:15 mymachine su: 'su root' failed for lonvick",
            NOW,
        );
        assert_eq!(e.host.as_deref(), Some("mymachine"));
        assert_eq!(e.severity, Some(2));
        assert_eq!(e.get("app_name"), Some(&Value::Str("su".into())));
        let year = DateTime::<Utc>::from_timestamp_micros(e.event_time_us)
            .map(|t| t.year())
            .expect("valid time");
        assert_eq!(year, 2024);
        // A December line received in early January belongs to the previous year.
        let jan = 1_704_153_600_000_000; // 2024-01-02T00:00:00Z
        let e = parse_line("<13>Dec 31 12:00:00 host app: x", jan);
        let year = DateTime::<Utc>::from_timestamp_micros(e.event_time_us)
            .map(|t| t.year())
            .expect("valid time");
        assert_eq!(year, 2023);
    }

    #[test]
    fn file_lines_without_pri_are_syslog() {
        let e = parse_line(
            "May  1 09:59:58 sak01 sshd[4242]: Accepted publickey for drift from 10.0.0.7 port 52144 ssh2",
            NOW,
        );
        assert_eq!(e.get("parse_error"), Some(&Value::Bool(false)));
        assert_eq!(e.host.as_deref(), Some("sak01"));
        assert_eq!(e.get("app_name"), Some(&Value::Str("sshd".into())));
        assert_eq!(e.get("proc_id"), Some(&Value::Str("4242".into())));
        assert_eq!(e.severity, None);
        assert!(
            e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("Accepted publickey"))
        );
        let e = parse_line(
            "2024-05-01T09:59:58.123456+02:00 sak01 sudo:     kari : TTY=pts/0 ; PWD=/ ; USER=root ; COMMAND=/bin/id",
            NOW,
        );
        assert_eq!(e.get("parse_error"), Some(&Value::Bool(false)));
        assert_eq!(e.event_time_us, 1_714_550_398_123_456);
        assert_eq!(e.get("app_name"), Some(&Value::Str("sudo".into())));
    }

    #[test]
    fn non_syslog_lines_are_kept_raw() {
        for line in [
            "just some text",
            "",
            "<not a pri",
            "\u{0}\u{1}binary",
            "2024-05-01 07:59:58 10.0.0.5 GET / - 443",
            "Mayday 1 09:59:58 x",
        ] {
            let e = parse_line(line, NOW);
            assert_eq!(e.get("parse_error"), Some(&Value::Bool(true)), "{line:?}");
            assert_eq!(e.message.as_deref(), Some(line));
            assert_eq!(e.event_time_us, NOW);
        }
    }

    /// Both readings of `line`, field by field: the common-shape reader's (if it takes the
    /// line) against syslog_loose's, the reference.
    fn agree<Tz: TimeZone + Copy>(line: &str, tz: Tz) -> Result<bool, String> {
        let year = |_: IncompleteDate| 2026;
        let Some(fast) = common_3164(line, year, tz, &mut LastMinute::default()) else {
            return Ok(false);
        };
        let reference =
            syslog_loose::parse_message_with_year_exact_tz(line, year, Some(tz), Variant::Either)
                .map_err(|e| format!("{line:?}: taken here, refused by syslog_loose: {e}"))?;
        let fields = |m: &Message<&str>| {
            format!(
                "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
                m.protocol,
                m.facility,
                m.severity,
                m.timestamp,
                m.hostname,
                m.appname,
                m.procid,
                m.msgid,
                m.structured_data,
                m.msg
            )
        };
        if fields(&fast) != fields(&reference) {
            return Err(format!(
                "{line:?}:\n here:         {}\n syslog_loose: {}",
                fields(&fast),
                fields(&reference)
            ));
        }
        Ok(true)
    }

    #[test]
    fn the_common_shape_is_read_as_syslog_loose_reads_it() {
        for line in [
            "<38>Dec  6 11:12:38 localhost prg00000[1234]: seq: 0000000000, thread: 0000",
            "<13>Jan  5 09:00:01 fw01 kernel: link down",
            "<86>Dec 31 23:59:59 srv sshd[812]: Accepted publickey for kari from 10.0.0.5",
            "<0>Feb 28 1:2:3 fe80::1 app[x1]:no space after the colon  ",
            "<191>Oct 11 22:14:15 h a[b[c]:\tt",
            "<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8",
            "<34>Oct 11 22:14:15 mymachine su:",
        ] {
            assert_eq!(agree(line, Utc), Ok(true), "{line}");
            assert_eq!(agree(line, chrono_tz::Europe::Oslo), Ok(true), "{line}");
        }
        // Shapes left to syslog_loose.
        for line in [
            "<38>dec  6 11:12:38 localhost app: m",
            "<38>Dec\t6 11:12:38 localhost app: m",
            "<38>Dec  6 11:12:38: localhost app: m",
            "<38>Dec  6 2024 11:12:38 localhost app: m",
            "<192>Dec  6 11:12:38 localhost app: m",
            "<38>Dec  6 11:12:38 - app: m",
            "<38>Dec  6 11:12:38 host: app: m",
            "<38>Dec  6 11:12:38 localhost app: [x@1 a=\"1\"] m",
            "<38>Dec  6 11:12:38 localhost app: - m",
            "<38>Dec  6 11:12:38 localhost app m",
            "<38>Feb 30 11:12:38 localhost app: m",
            "<38>1 2024-05-01T09:59:58Z host app - - - m",
            "Dec  6 11:12:38 localhost app: m",
        ] {
            assert_eq!(agree(line, Utc), Ok(false), "{line}");
        }
    }

    /// One of `options`, the first (the common shape's) three times in four.
    fn piece(options: &'static [&'static str]) -> impl Strategy<Value = &'static str> {
        prop_oneof![3 => Just(options[0]), 1 => prop::sample::select(options)]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        /// Lines near the common shape, with the variations senders and syslog_loose's
        /// grammar allow: whatever the common-shape reader takes, it reads as syslog_loose does.
        #[test]
        fn common_shape_lines_agree_with_syslog_loose(
            parts in (
                piece(&["<38>", "<0>", "<191>", "<192>", "<999>", "<>", "", "<38> ", " <13>", "<013>"]),
                piece(&["Dec", "dec", "DEC", "Jan", "Mar", "Feb", "Xyz", "Oct"]),
                piece(&[" ", "  ", "\t", ""]),
                piece(&["6", "06", "31", "30", "29", "0", "123", "x"]),
                piece(&[" ", "  ", "\t"]),
                piece(&["11:12:38", "1:2:3", "11:12:38:", "25:00:00", "11:12", "02:30:00", "23:59:60"]),
            ),
            rest in (
                piece(&[" localhost", " -", " host:", " fe80::1", "  h", " é", "", " a\u{1}b", " h:x"]),
                piece(&[" prg00000[1234]", " app", " app[]", " [12]", " a[b]c", " a[1", " -", " su", "", " a[+5]", " a[01]", " é[1]"]),
                piece(&[":", ": ", ":\t", ":  ", "", " :", " "]),
                piece(&["hello", "[sd x=\"1\"] m", "- dash", "", "  trailing  \r\n", "é unicode", "a: b", "-"]),
            ),
        ) {
            let (pri, month, s1, day, s2, time) = parts;
            let (host, tag, colon, msg) = rest;
            let line = format!("{pri}{month}{s1}{day}{s2}{time}{host}{tag}{colon}{msg}");
            if let Err(why) = agree(&line, Utc) {
                prop_assert!(false, "{}", why);
            }
            if let Err(why) = agree(&line, chrono_tz::Europe::Oslo) {
                prop_assert!(false, "{}", why);
            }
        }
    }
}
