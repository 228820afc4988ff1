//! Personal data minimisation at the edge: keyed pseudonyms for national identity numbers and,
//! by policy, for citizens' IP addresses — before any event leaves the municipality.
//!
//! The CERT needs to see that *the same person* shows up in a credential-stuffing wave against
//! three municipal services; it does not need to know who that person is. So every Norwegian
//! national identity number found in an event is replaced by a pseudonym that is a keyed hash of
//! the number. The key belongs to the municipality, is created on the collector and never leaves
//! it: the CERT cannot reverse a pseudonym or test a guessed number against it, and two
//! municipalities' pseudonyms of one person differ.
//!
//! # What is detected
//!
//! Every text field of an [`Event`] is scanned: the message, the host, every text-typed column
//! and every attribute key and value. A candidate is a run of **exactly 11 ASCII digits bounded
//! by non-digits** (start and end of text count as non-digits), so `123456789012` (12 digits)
//! and the parts of `0101 9012 345` are left alone. A candidate is an identity number when
//! [`nin::classify`] accepts it: a fødselsnummer, D-number, H-number or synthetic test number
//! with an existing date and check digits valid under the classic rule *or* the rule for numbers
//! issued from 2032 (the arithmetic is documented in [`nin`]).
//!
//! Known gaps: numbers written with a separator (`010190 12345`, `010190-12345`) are not 11-digit
//! runs and are not detected; neither are numbers inside longer digit runs.
//!
//! # Bank account numbers
//!
//! A kontonummer is 11 digits with a mod-11 check digit whose equation is the *same* as the
//! identity number's second check digit, so every identity number is also a valid account
//! number, and an account number that happens to start with a valid date and satisfy the first
//! check digit is an identity number by every arithmetic test. A bare 11-digit number therefore
//! cannot be told apart: it is pseudonymised (the safe side). It is kept as it is only when
//! `keep_account_numbers` is on, it passes the account check, and the word right before it (only
//! separators such as spaces, `:`, `=`, `#`, `.`, `-`, `_`, quotes or brackets in between) is an
//! account word — one containing `konto` or `account`, or `kto`, `acct`, `acc`, `bban`, standing
//! at a word boundary (not glued to a letter or digit before it) — or is `nr`, `no`, `num`,
//! `number` or `nummer` preceded in the same way by an account word
//! (`kontonr: 12345678903`, `"account_number":"12345678903"`, `til konto 12345678903`). Account
//! numbers written in their usual `1234.56.78903` or `1234 56 78903` form are never 11-digit runs
//! and are untouched anyway.
//!
//! # Pseudonym format
//!
//! `fnr:` followed by the first 16 hex digits of `HMAC-SHA-256(key, "varde-nin-v1:" + the 11
//! digits)`, written as two groups of eight: `fnr:9f2c41d0-7a3be815`. The same number under the
//! same key always gives the same pseudonym; D-, H- and synthetic numbers use the same prefix
//! (the class would itself say something about the person). The dash keeps every digit run of a
//! pseudonym at most eight long, so **a pseudonym is never detected again**: scanning is
//! idempotent. 64 bits make collisions negligible for a municipality's population.
//!
//! # IP addresses
//!
//! With `ip_addresses = "pseudonymise"`, every IPv4 and IPv6 address in the same text fields that
//! is not in `internal_networks` (nor loopback or unspecified) is replaced by a keyed pseudonym
//! *of the same family*, so it still parses as an address and columns such as `client_ip` keep
//! their type:
//!
//! - IPv4 → `240.0.0.0/4` (reserved, never routed) with the low 28 bits from
//!   `HMAC-SHA-256(key, "varde-ip4-v1:" + 4 bytes)`, e.g. `243.18.7.201`;
//! - IPv6 → `100::/64` (the discard-only prefix of RFC 6666) with the low 64 bits from
//!   `HMAC-SHA-256(key, "varde-ip6-v1:" + 16 bytes)`, e.g. `100::8c1d:2f0a:51e3:9b44`;
//! - IPv4-mapped IPv6 (`::ffff:a.b.c.d`) keeps that form around the IPv4 pseudonym.
//!
//! Addresses already in those two ranges are left alone, which makes scanning idempotent. With
//! 28 bits, two of a few tens of thousands of distinct IPv4 addresses may share a pseudonym; that
//! is enough to follow one client through a wave of requests, not to count citizens. Addresses
//! are recognised by shape and then by `std`'s parser, so a four-part version number such as
//! `1.2.3.4` is pseudonymised too. Pseudonymising addresses hides attackers' addresses from the
//! CERT's threat intelligence as well, which is why it is off by default.
//!
//! # Counting
//!
//! [`Privacy::scrub_event`] returns [`PrivacyCounts`]: how many values it replaced or kept, never
//! the values themselves. [`crate::edge::EdgeStats`] adds them up per source for `/metrics`.

pub mod nin;

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use hmac::{Hmac, Mac};
use ipnet::IpNet;
use sha2::Sha256;
use varde_core::{Event, Row, RowText, Value};
use wide::u8x16;

use crate::config::{IpAddressPolicy, PrivacyConfig};
use crate::identity::{PrivateFileError, create_private, read_private};

type HmacSha256 = Hmac<Sha256>;

/// Why the privacy layer could not start.
#[derive(Debug, thiserror::Error)]
pub enum PrivacyError {
    /// The key file exists but could not be read.
    #[error("privacy key {path}: {source}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file could not be created.
    #[error("privacy key {path}: cannot create: {source}")]
    Create {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file does not hold 64 hex digits.
    #[error("privacy key {path}: expected 64 hex digits (32 bytes) and nothing else")]
    Format {
        /// The key file.
        path: PathBuf,
    },
    /// Group or others may read or write the key file.
    #[error("privacy key {path}: mode {mode:o} lets others read it; run chmod 600 on it")]
    Permissions {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The operating system gave no random bytes.
    #[error("no random bytes for a new privacy key: {0}")]
    Random(String),
}

const KEY_WHAT: &str = "privacy key";

impl PrivacyError {
    fn from_file(e: PrivateFileError) -> PrivacyError {
        match e {
            PrivateFileError::Permissions { path, mode, .. } => {
                PrivacyError::Permissions { path, mode }
            }
            PrivateFileError::Create { path, source, .. } => PrivacyError::Create { path, source },
            PrivateFileError::Read { path, source, .. } => PrivacyError::Read { path, source },
            PrivateFileError::Key { path, .. } => PrivacyError::Format { path },
        }
    }
}

/// A municipality's pseudonymisation key: 32 random bytes. Its `Debug` form hides the bytes.
#[derive(Clone)]
pub struct PrivacyKey([u8; 32]);

impl std::fmt::Debug for PrivacyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PrivacyKey(<redacted>)")
    }
}

impl PrivacyKey {
    /// A key from known bytes (tests, benchmarks).
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        PrivacyKey(bytes)
    }

    /// A key derived from this one for `context` (HMAC-SHA-256 of the context under this key):
    /// independent keys for several parties from one secret, none of which reveals another or
    /// this one. The pipeline derives each municipality's key for JSON lines this way.
    pub fn derive(&self, context: &str) -> PrivacyKey {
        // As in `Privacy::new`: the zero-padded block is the 32-byte key itself to HMAC.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&self.0);
        let mut mac = <HmacSha256 as hmac::digest::KeyInit>::new(&block.into());
        mac.update(b"varde-key-derive-v1:");
        mac.update(context.as_bytes());
        PrivacyKey(mac.finalize().into_bytes().into())
    }

    /// A new random key from the operating system.
    pub fn generate() -> Result<Self, PrivacyError> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes).map_err(|e| PrivacyError::Random(e.to_string()))?;
        Ok(PrivacyKey(bytes))
    }

    /// Reads the key at `path`, or creates it (random, mode 0600, parent directories as needed)
    /// when the file does not exist. Creation never overwrites a key another process wrote
    /// meanwhile. On Unix a key file that group or others may access is refused.
    pub fn load_or_create(path: &Path) -> Result<Self, PrivacyError> {
        if let Some(text) = read_private(KEY_WHAT, path).map_err(PrivacyError::from_file)? {
            return Self::parse_file(path, &text);
        }
        let key = Self::generate()?;
        // A key is never replaced (that would change every pseudonym): if one appeared
        // meanwhile, that one is used.
        match create_private(path, format!("{}\n", key.to_hex()).as_bytes()) {
            Ok(()) => Ok(key),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = read_private(KEY_WHAT, path)
                    .map_err(PrivacyError::from_file)?
                    .ok_or_else(|| PrivacyError::Read {
                        path: path.to_owned(),
                        source: std::io::ErrorKind::NotFound.into(),
                    })?;
                Self::parse_file(path, &text)
            }
            Err(source) => Err(PrivacyError::Create {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn parse_file(path: &Path, text: &str) -> Result<Self, PrivacyError> {
        let format = || PrivacyError::Format {
            path: path.to_owned(),
        };
        let hex = text.trim().as_bytes();
        if hex.len() != 64 {
            return Err(format());
        }
        let mut bytes = [0u8; 32];
        for (out, pair) in bytes.iter_mut().zip(hex.chunks_exact(2)) {
            let (Some(hi), Some(lo)) = (hex_value(pair[0]), hex_value(pair[1])) else {
                return Err(format());
            };
            *out = hi << 4 | lo;
        }
        Ok(PrivacyKey(bytes))
    }

    fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            push_hex(&mut s, b);
        }
        s
    }
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn push_hex(s: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    s.push(char::from(HEX[usize::from(b >> 4)]));
    s.push(char::from(HEX[usize::from(b & 15)]));
}

/// The resolved privacy policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrivacyPolicy {
    /// Keep valid account numbers that their context marks as such.
    pub keep_account_numbers: bool,
    /// What happens to IP addresses.
    pub ip_addresses: IpAddressPolicy,
    /// Networks whose addresses stay as they are.
    pub internal_networks: Vec<IpNet>,
}

impl Default for PrivacyPolicy {
    fn default() -> Self {
        let c = PrivacyConfig::default();
        PrivacyPolicy {
            keep_account_numbers: c.keep_account_numbers,
            ip_addresses: c.ip_addresses,
            internal_networks: c.internal_networks,
        }
    }
}

/// How many values one scan replaced or kept. Counts only: never the values.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrivacyCounts {
    /// National identity numbers replaced by pseudonyms.
    pub national_ids: u64,
    /// IP addresses replaced by pseudonyms.
    pub ip_addresses: u64,
    /// 11-digit numbers kept because their context marks them as bank account numbers.
    pub account_numbers_kept: u64,
}

impl PrivacyCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: PrivacyCounts) {
        self.national_ids += other.national_ids;
        self.ip_addresses += other.ip_addresses;
        self.account_numbers_kept += other.account_numbers_kept;
    }

    /// True when nothing was replaced or kept.
    pub fn is_empty(&self) -> bool {
        *self == PrivacyCounts::default()
    }
}

/// The privacy layer of one collector: the key and the policy. Cheap to clone and shareable
/// between tasks.
#[derive(Clone)]
pub struct Privacy {
    inner: Arc<Inner>,
}

struct Inner {
    mac: HmacSha256,
    policy: PrivacyPolicy,
}

impl std::fmt::Debug for Privacy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Privacy")
            .field("policy", &self.inner.policy)
            .finish_non_exhaustive()
    }
}

impl Privacy {
    /// A privacy layer with `key` and `policy`.
    pub fn new(key: &PrivacyKey, policy: PrivacyPolicy) -> Self {
        // HMAC pads a key shorter than the hash's 64-byte block with zeros, so the block-sized
        // key below is the 32-byte key itself; this constructor cannot fail.
        let mut block = [0u8; 64];
        block[..32].copy_from_slice(&key.0);
        let mac = <HmacSha256 as hmac::digest::KeyInit>::new(&block.into());
        Privacy {
            inner: Arc::new(Inner { mac, policy }),
        }
    }

    /// The privacy layer a configuration asks for: loads or creates the key file (see
    /// [`PrivacyConfig::key_path`]).
    pub fn from_config(config: &PrivacyConfig, state_dir: &Path) -> Result<Self, PrivacyError> {
        let key = PrivacyKey::load_or_create(&config.key_path(state_dir))?;
        Ok(Privacy::new(
            &key,
            PrivacyPolicy {
                keep_account_numbers: config.keep_account_numbers,
                ip_addresses: config.ip_addresses,
                internal_networks: config.internal_networks.clone(),
            },
        ))
    }

    /// The policy in force.
    pub fn policy(&self) -> &PrivacyPolicy {
        &self.inner.policy
    }

    fn hmac(&self, domain: &[u8], data: &[u8]) -> [u8; 32] {
        let mut mac = self.inner.mac.clone();
        mac.update(domain);
        mac.update(data);
        mac.finalize().into_bytes().into()
    }

    /// The pseudonym of an identity number given as its 11 ASCII digits: `fnr:` and 16 hex
    /// digits in two groups of eight.
    pub fn national_id_pseudonym(&self, digits: &[u8]) -> String {
        let h = self.hmac(b"varde-nin-v1:", digits);
        let mut s = String::with_capacity(21);
        s.push_str("fnr:");
        for (i, b) in h[..8].iter().enumerate() {
            if i == 4 {
                s.push('-');
            }
            push_hex(&mut s, *b);
        }
        s
    }

    /// The pseudonym of an address (see the module docs for the ranges).
    pub fn ip_pseudonym(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => IpAddr::V4(self.ipv4_pseudonym(v4)),
            IpAddr::V6(v6) => {
                if let Some(v4) = v6.to_ipv4_mapped() {
                    return IpAddr::V6(self.ipv4_pseudonym(v4).to_ipv6_mapped());
                }
                let h = self.hmac(b"varde-ip6-v1:", &v6.octets());
                let mut o = [0u8; 16];
                o[0] = 0x01;
                o[8..].copy_from_slice(&h[..8]);
                IpAddr::V6(Ipv6Addr::from(o))
            }
        }
    }

    fn ipv4_pseudonym(&self, v4: Ipv4Addr) -> Ipv4Addr {
        let h = self.hmac(b"varde-ip4-v1:", &v4.octets());
        let bits = u32::from_be_bytes([h[0], h[1], h[2], h[3]]);
        Ipv4Addr::from(0xf000_0000 | (bits & 0x0fff_ffff))
    }

    /// True when `ip` is shipped as it is: internal, loopback, unspecified, or already a
    /// pseudonym.
    pub fn ip_is_kept(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        if ip.is_loopback() || ip.is_unspecified() || varde_core::pseudonym::is_pseudonym_ip(ip) {
            return true;
        }
        self.inner
            .policy
            .internal_networks
            .iter()
            .any(|n| n.contains(&ip))
    }

    /// Scrubs one text: identity numbers always, IP addresses by policy. Returns the text
    /// unchanged (borrowed) when there was nothing to replace, and adds to `counts`.
    pub fn scrub_text<'a>(&self, text: &'a str, counts: &mut PrivacyCounts) -> Cow<'a, str> {
        self.scrub_looking_for(text, Candidates::ALL, counts)
    }

    /// [`Privacy::scrub_text`], looking only for what `look` says may be there.
    fn scrub_looking_for<'a>(
        &self,
        text: &'a str,
        look: Candidates,
        counts: &mut PrivacyCounts,
    ) -> Cow<'a, str> {
        let after_nin = if look.national_ids {
            self.scrub_national_ids(text, counts)
        } else {
            Cow::Borrowed(text)
        };
        // A pseudonym put in brings its own `:`, which the quick look did not see.
        let ip_possible = look.ip_addresses || matches!(after_nin, Cow::Owned(_));
        if !ip_possible || self.inner.policy.ip_addresses != IpAddressPolicy::Pseudonymise {
            return after_nin;
        }
        match after_nin {
            Cow::Borrowed(t) => self.scrub_ips(t, counts),
            Cow::Owned(t) => match self.scrub_ips(&t, counts) {
                Cow::Borrowed(_) => Cow::Owned(t),
                Cow::Owned(u) => Cow::Owned(u),
            },
        }
    }

    fn scrub_national_ids<'a>(&self, text: &'a str, counts: &mut PrivacyCounts) -> Cow<'a, str> {
        let bytes = text.as_bytes();
        let mut out: Option<String> = None;
        let mut copied = 0;
        let mut i = 0;
        while let Some(start) = next_digit(bytes, i) {
            i = start;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            let run = &bytes[start..i];
            let Some(d) = nin::digits(run) else { continue };
            if nin::classify(&d).is_none() {
                continue;
            }
            if self.inner.policy.keep_account_numbers
                && nin::is_account_number(&d)
                && account_context(&bytes[..start])
            {
                counts.account_numbers_kept += 1;
                continue;
            }
            let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
            // `start` and `i` border ASCII digits, so they are character boundaries.
            o.push_str(text.get(copied..start).unwrap_or_default());
            o.push_str(&self.national_id_pseudonym(run));
            copied = i;
            counts.national_ids += 1;
        }
        match out {
            None => Cow::Borrowed(text),
            Some(mut o) => {
                o.push_str(text.get(copied..).unwrap_or_default());
                Cow::Owned(o)
            }
        }
    }

    fn scrub_ips<'a>(&self, text: &'a str, counts: &mut PrivacyCounts) -> Cow<'a, str> {
        if memchr::memchr2(b'.', b':', text.as_bytes()).is_none() {
            return Cow::Borrowed(text);
        }
        let bytes = text.as_bytes();
        let mut out: Option<String> = None;
        let mut copied = 0;
        let Some(re) = ip_regex() else {
            return Cow::Borrowed(text);
        };
        for m in re.find_iter(text) {
            let (start, end) = (m.start(), m.end());
            let candidate = m.as_str();
            let is_v6 = candidate.contains(':');
            let before = start.checked_sub(1).map(|j| bytes[j]);
            let after = bytes.get(end).copied();
            let after2 = bytes.get(end + 1).copied();
            let bad_before = before.is_some_and(|c| {
                c.is_ascii_digit()
                    || c == b'.'
                    || (is_v6 && (c.is_ascii_alphanumeric() || c == b':'))
            });
            let bad_after = after.is_some_and(|c| {
                c.is_ascii_digit()
                    || (c == b'.' && after2.is_some_and(|n| n.is_ascii_digit()))
                    || (is_v6 && (c.is_ascii_alphanumeric() || c == b':'))
            });
            if bad_before || bad_after {
                continue;
            }
            let Ok(ip) = candidate.parse::<IpAddr>() else {
                continue;
            };
            if self.ip_is_kept(ip) {
                continue;
            }
            let o = out.get_or_insert_with(|| String::with_capacity(text.len() + 16));
            o.push_str(text.get(copied..start).unwrap_or_default());
            o.push_str(&self.ip_pseudonym(ip).to_string());
            copied = end;
            counts.ip_addresses += 1;
        }
        match out {
            None => Cow::Borrowed(text),
            Some(mut o) => {
                o.push_str(text.get(copied..).unwrap_or_default());
                Cow::Owned(o)
            }
        }
    }

    /// Scrubs every text field of `event` in place: message, host, text-typed columns, attribute
    /// keys and values. Returns what it replaced or kept.
    pub fn scrub_event(&self, event: &mut Event) -> PrivacyCounts {
        let mut counts = PrivacyCounts::default();
        let fix = |s: &mut String, counts: &mut PrivacyCounts| {
            if let Cow::Owned(new) = self.scrub_text(s, counts) {
                *s = new;
            }
        };
        if let Some(m) = event.message.as_mut() {
            fix(m, &mut counts);
        }
        if let Some(h) = event.host.as_mut() {
            fix(h, &mut counts);
        }
        for (_, value) in &mut event.typed {
            if let Value::Str(s) = value {
                fix(s, &mut counts);
            }
        }
        for (k, v) in &mut event.attrs {
            fix(k, &mut counts);
            fix(v, &mut counts);
        }
        counts
    }

    /// [`Privacy::scrub_event`] for a [`Row`]: every text scanned where it lies; only a row
    /// with something to replace is written again, into `spare` (then swapped with `row`).
    pub fn scrub_row(&self, row: &mut Row, spare: &mut Row) -> PrivacyCounts {
        let scan = self.scan(row.read());
        scan.apply(row, spare);
        scan.counts
    }

    /// The first half of [`Privacy::scrub_row`], on a row already read as text: what to
    /// replace, and the counts.
    ///
    /// A text is searched only for what it may hold: identity numbers when it has a run of 11
    /// digits, IP addresses (when they are pseudonymised) when it has a `.` or `:`. The
    /// attribute keys and values are looked at one buffer each: its runs of digits, cut where
    /// its texts end, and its `.` and `:` tell which texts hold one, and no other attribute
    /// is visited.
    pub fn scan(&self, text: RowText<'_>) -> Scan {
        let mut scan = Scan::default();
        let ips = self.inner.policy.ip_addresses == IpAddressPolicy::Pseudonymise;
        // The row's own texts (host, message, typed text) lie in one buffer too: its runs of
        // digits are found once, and a text holds one of its own where it overlaps a run by
        // at least the run length.
        let (own_buffer, spans) = text.own_buffer();
        let own_runs: Vec<(usize, usize)> = digit_runs(own_buffer.as_bytes(), nin::LEN).collect();
        let mut own = 0;
        for (start, end) in spans {
            let t = own_buffer.get(start..end).unwrap_or_default();
            let look = Candidates {
                national_ids: own_runs
                    .iter()
                    .any(|&(a, b)| b.min(end).saturating_sub(a.max(start)) >= nin::LEN),
                ip_addresses: ips && memchr::memchr2(b'.', b':', t.as_bytes()).is_some(),
            };
            self.look_into(t, own, look, &mut scan);
            own += 1;
        }
        // Texts are numbered own texts first, then each attribute's key and its value.
        let ((keys, key_ends), (values, value_ends)) = text.attr_buffers();
        for (buffer, ends, value) in [(keys, key_ends, 0), (values, value_ends, 1)] {
            let runs = texts_with_digit_runs(buffer.as_bytes(), ends, nin::LEN);
            let dots = if ips {
                texts_with_either(buffer.as_bytes(), ends, b'.', b':')
            } else {
                Vec::new()
            };
            let (mut runs, mut dots) = (runs.into_iter().peekable(), dots.into_iter().peekable());
            while let Some(&j) = match (runs.peek(), dots.peek()) {
                (Some(r), Some(d)) => Some(r.min(d)),
                (r, d) => r.or(d),
            } {
                let look = Candidates {
                    national_ids: runs.next_if_eq(&j).is_some(),
                    ip_addresses: dots.next_if_eq(&j).is_some(),
                };
                let start = j.checked_sub(1).and_then(|b| ends.get(b)).map_or(0, |&e| e);
                let end = ends.get(j).map_or(start, |&e| e);
                let t = buffer.get(start as usize..end as usize).unwrap_or_default();
                self.look_into(t, own + 2 * j + value, look, &mut scan);
            }
        }
        scan
    }

    /// Searches text number `i` for what `look` says it may hold, and notes its replacement.
    fn look_into(&self, t: &str, i: usize, look: Candidates, scan: &mut Scan) {
        if look.any()
            && let Cow::Owned(new) = self.scrub_looking_for(t, look, &mut scan.counts)
        {
            scan.replaced.push((i, new));
        }
    }
}

/// What a text may hold, as far as a quick look at its buffer tells.
#[derive(Debug, Clone, Copy)]
struct Candidates {
    national_ids: bool,
    ip_addresses: bool,
}

impl Candidates {
    const ALL: Candidates = Candidates {
        national_ids: true,
        ip_addresses: true,
    };

    fn any(self) -> bool {
        self.national_ids || self.ip_addresses
    }
}

/// Which of the bytes of `block` (at most 64) are ASCII digits: bit `j` for byte `j`, bits
/// past the block's end clear. Sixteen bytes at a time: after subtracting `'0'` a digit is a
/// byte of at most 9, which the minimum with 9 leaves unchanged.
fn digit_mask(block: &[u8]) -> u64 {
    if let Ok(full) = <&[u8; 64]>::try_from(block) {
        return digit_mask_64(full);
    }
    // A shorter block (most texts are): only the sixteen-byte parts it has.
    let mut parts = block.chunks_exact(16);
    let (mut mask, mut k) = (0u64, 0);
    for part in parts.by_ref() {
        mask |= digit_mask_16(part) << k;
        k += 16;
    }
    let tail = parts.remainder();
    if !tail.is_empty() && k < 64 {
        let mut padded = [0u8; 16]; // zero bytes are no digits
        padded[..tail.len()].copy_from_slice(tail);
        mask |= digit_mask_16(&padded) << k;
    }
    mask
}

fn digit_mask_64(block: &[u8; 64]) -> u64 {
    block
        .chunks_exact(16)
        .enumerate()
        .fold(0, |mask, (k, part)| mask | digit_mask_16(part) << (16 * k))
}

/// [`digit_mask`] of sixteen bytes (`part` has sixteen).
#[inline(always)]
fn digit_mask_16(part: &[u8]) -> u64 {
    let bytes = u8x16::new(<[u8; 16]>::try_from(part).unwrap_or_default());
    let shifted = bytes - u8x16::splat(b'0');
    let digits = shifted.min(u8x16::splat(9)).cmp_eq(shifted);
    u64::from(digits.move_mask() as u16)
}

/// True when `mask` has `len` set bits in a row (`len` ≥ 1): after each step bit `i` stays
/// set only where the `have` bits from `i` up are all set, and `have` grows to `len` in as
/// many steps as it takes to double to it.
fn has_run_of_bits(mask: u64, len: usize) -> bool {
    let (mut x, mut have) = (mask, 1usize);
    while have < len && x != 0 {
        let step = have.min(len - have);
        x &= x.checked_shr(step as u32).unwrap_or(0);
        have += step;
    }
    x != 0
}

/// The runs of ASCII digits in `b` at least `len` long (`len` > 8), as (start, end), in
/// order. A block of 64 bytes at a time becomes one mask of its digits; a block whose mask
/// has no run that long, once a run open from the block before is closed, is done in a few
/// instructions, which is nearly every block of a log's text. Only the rest is walked run by
/// run.
fn digit_runs(b: &[u8], len: usize) -> std::vec::IntoIter<(usize, usize)> {
    debug_assert!(len > 8);
    let mut out = Vec::new();
    // The start of the run reaching the end of the block before.
    let mut open: Option<usize> = None;
    for (n, block) in b.chunks(64).enumerate() {
        let (base, width) = (n * 64, block.len());
        let mut mask = digit_mask(block);
        if let Some(start) = open.take() {
            // The digits at the block's start continue that run.
            let lead = mask.trailing_ones() as usize;
            if lead == 64 {
                open = Some(start);
                continue;
            }
            if base + lead - start >= len {
                out.push((start, base + lead));
            }
            mask &= u64::MAX << lead;
        }
        if !has_run_of_bits(mask, len) {
            // Only the digits at the block's end may start a long run, in the next block.
            let top = (mask << (64 - width)).leading_ones() as usize;
            if width == 64 && top > 0 {
                open = Some(base + 64 - top);
            }
            continue;
        }
        let mut rest = mask;
        while rest != 0 {
            let from = rest.trailing_zeros() as usize;
            let run = (rest >> from).trailing_ones() as usize;
            if from + run == 64 {
                open = Some(base + from);
                break;
            }
            if run >= len {
                out.push((base + from, base + from + run));
            }
            rest &= u64::MAX << (from + run);
        }
    }
    if let Some(start) = open
        && b.len() - start >= len
    {
        out.push((start, b.len()));
    }
    out.into_iter()
}

/// Which of the texts written one after another into `buffer`, each ending at its entry of
/// `ends`, hold a run of at least `len` digits of their own (a run of the buffer cut where the
/// texts end), in order.
fn texts_with_digit_runs(buffer: &[u8], ends: &[u32], len: usize) -> Vec<usize> {
    let mut out = Vec::new();
    // The first text that may overlap the next run (runs come in order).
    let mut first = 0;
    for (start, end) in digit_runs(buffer, len) {
        while ends.get(first).is_some_and(|&e| e as usize <= start) {
            first += 1;
        }
        let mut t = first;
        let mut text_start = t
            .checked_sub(1)
            .and_then(|before| ends.get(before))
            .map_or(0, |&e| e as usize);
        while let Some(&text_end) = ends.get(t) {
            if text_start >= end {
                break;
            }
            let text_end = text_end as usize;
            if text_end.min(end).saturating_sub(text_start.max(start)) >= len
                && out.last() != Some(&t)
            {
                out.push(t);
            }
            text_start = text_end;
            t += 1;
        }
    }
    out
}

/// Which of the texts written one after another into `buffer`, each ending at its entry of
/// `ends`, hold the byte `a` or `b`, in order: each text is left at its first such byte.
fn texts_with_either(buffer: &[u8], ends: &[u32], a: u8, b: u8) -> Vec<usize> {
    let mut out = Vec::new();
    let (mut at, mut t) = (0usize, 0usize);
    while let Some(found) = buffer
        .get(at..)
        .and_then(|rest| memchr::memchr2(a, b, rest))
    {
        let pos = at + found;
        while ends.get(t).is_some_and(|&e| e as usize <= pos) {
            t += 1;
        }
        let Some(&end) = ends.get(t) else { break };
        out.push(t);
        at = end as usize;
        t += 1;
    }
    out
}

/// What [`Privacy::scan`] found in a row: the texts to replace (numbered as
/// [`RowText::texts`] yields them) and the counts.
#[derive(Debug, Default)]
pub struct Scan {
    /// What was replaced, counted.
    pub counts: PrivacyCounts,
    replaced: Vec<(usize, String)>,
}

impl Scan {
    /// Writes the replacements into `row` (through `spare`, then swapped with it); nothing to
    /// do, and nothing copied, when there are none.
    pub fn apply(&self, row: &mut Row, spare: &mut Row) {
        if self.replaced.is_empty() {
            return;
        }
        row.rewrite_texts(spare, |i| {
            self.replaced
                .iter()
                .find(|(j, _)| *j == i)
                .map(|(_, text)| text.as_str())
        });
        std::mem::swap(row, spare);
    }
}

/// The position of the first ASCII digit in `b` at or after `i`, eight bytes at a time: after
/// `^ 0x30` a digit is a byte below 10, and a byte's high bit is set in `hits` where it is one
/// (and nowhere before the first: a borrow only carries up from a hit), so the lowest set bit
/// is the answer. Most of a log line is not digits; this is what the scan for identity numbers
/// spends its time on.
fn next_digit(b: &[u8], mut i: usize) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([1; 8]);
    const HIGH: u64 = ONES << 7;
    while let Some(chunk) = b.get(i..i + 8) {
        let Ok(word) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let y = u64::from_le_bytes(word) ^ (ONES * 0x30);
        let hits = y.wrapping_sub(ONES * 10) & !y & HIGH;
        if hits != 0 {
            return Some(i + (hits.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    b.get(i..)?
        .iter()
        .position(u8::is_ascii_digit)
        .map(|p| i + p)
}

/// Candidates for IP addresses: IPv6 shapes (with an optional IPv4 tail) and dotted quads.
/// Only a candidate that `std` parses as an address counts.
/// (`None` only if the constant pattern failed to compile, which the tests rule out.)
fn ip_regex() -> Option<&'static regex::Regex> {
    static RE: OnceLock<Option<regex::Regex>> = OnceLock::new();
    RE.get_or_init(|| {
        let v4 = r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}";
        let pattern = format!(r"[0-9A-Fa-f]{{0,4}}(?::(?:{v4}|[0-9A-Fa-f]{{0,4}})){{2,8}}|{v4}");
        regex::Regex::new(&pattern).ok()
    })
    .as_ref()
}

/// True when the text right before an 11-digit number marks it as a bank account number.
///
/// Each word must start the text or follow a character that is neither a letter nor a digit:
/// `31129956715acct=…` is no account context. This keeps scanning idempotent — a pseudonym
/// ends in hex digits, and `…ac474d7cacct=` must read the same before and after.
fn account_context(before: &[u8]) -> bool {
    let Some((word, rest)) = last_word(before) else {
        return false;
    };
    if is_account_word(&word) {
        return true;
    }
    if matches!(word.as_str(), "nr" | "no" | "num" | "number" | "nummer") {
        return last_word(rest).is_some_and(|(word2, _)| is_account_word(&word2));
    }
    false
}

fn is_account_word(word: &str) -> bool {
    word.contains("konto")
        || word.contains("account")
        || matches!(word, "kto" | "ktonr" | "acct" | "acc" | "bban")
}

/// The last word (ASCII letters, lowercased) before up to four separator bytes at the end of
/// `text`, and the text before that word; `None` when the word does not start at a word
/// boundary (start of text, or after a byte that is not an ASCII letter or digit).
fn last_word(text: &[u8]) -> Option<(String, &[u8])> {
    let mut end = text.len();
    let mut seps = 0;
    while end > 0
        && seps < 4
        && matches!(
            text[end - 1],
            b' ' | b'\t' | b':' | b'=' | b'#' | b'.' | b'-' | b'_' | b'"' | b'\'' | b'(' | b'['
        )
    {
        end -= 1;
        seps += 1;
    }
    let mut start = end;
    while start > 0 && end - start < 24 && text[start - 1].is_ascii_alphabetic() {
        start -= 1;
    }
    if start > 0 && text[start - 1].is_ascii_alphanumeric() {
        return None;
    }
    let word = text[start..end]
        .iter()
        .map(|b| char::from(b.to_ascii_lowercase()))
        .collect();
    Some((word, &text[..start]))
}

#[cfg(test)]
mod tests;
