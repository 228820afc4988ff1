//! Synthetic but realistic syslog from a municipal network, deterministic per municipality:
//! what `varde demo` ships and what the benchmarks parse.

/// A small deterministic generator, so the sample is the same on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        let i = usize::try_from(self.next() % items.len() as u64).unwrap_or(0);
        items[i]
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Sample syslog lines of one municipality: RFC 5424 and RFC 3164 lines from sshd, sudo, a
/// firewall, a web server, a citizen portal logging ID-porten logins, and a few lines that are
/// not syslog at all. Times run over the hour before `now_us`.
pub fn sample_lines(tenant: &str, n: usize, now_us: i64) -> Vec<String> {
    let seed = tenant.bytes().fold(0x9e37_79b9_7f4a_7c15u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut rng = Rng(seed | 1);
    let users = [
        "kari", "ola", "admin", "root", "drift", "backup", "test", "oracle",
    ];
    let hosts = ["fw01", "web01", "sak01", "ad01", "portal01"];
    let paths = [
        "/",
        "/login",
        "/innsyn",
        "/api/sak",
        "/../../etc/passwd",
        "/wp-login.php",
    ];
    let start = now_us - 3_600_000_000;
    let step = 3_600_000_000 / i64::try_from(n.max(1)).unwrap_or(1);
    (0..n)
        .map(|i| {
            let t_us = start + step * i64::try_from(i).unwrap_or(0);
            let t = chrono::DateTime::from_timestamp_micros(t_us).unwrap_or_default();
            let ts5424 = t.format("%Y-%m-%dT%H:%M:%S%.3fZ");
            let ts3164 = t.with_timezone(&chrono::Local).format("%b %e %H:%M:%S");
            let host = format!("{}.k{tenant}.kommune.no", rng.pick(&hosts));
            let ip = format!("203.0.113.{}", rng.below(254) + 1);
            let user = rng.pick(&users);
            let pid = 1000 + rng.below(30_000);
            match rng.below(20) {
                0..=5 => format!(
                    "<38>1 {ts5424} {host} sshd {pid} - - Failed password for invalid user {user} from {ip} port {} ssh2",
                    1024 + rng.below(60_000)
                ),
                6..=7 => format!(
                    "<38>1 {ts5424} {host} sshd {pid} - - Accepted publickey for {user} from 10.{net}.0.{} port 52144 ssh2",
                    rng.below(254) + 1,
                    net = tenant.parse::<u32>().unwrap_or(0) % 256
                ),
                8..=9 => format!(
                    "<85>{ts3164} {host} sudo: {user} : TTY=pts/0 ; PWD=/home/{user} ; USER=root ; COMMAND=/usr/bin/systemctl restart nginx"
                ),
                10..=12 => format!(
                    "<4>{ts3164} {host} kernel: [UFW BLOCK] IN=eth0 OUT= SRC={ip} DST=10.0.0.5 PROTO=TCP SPT={} DPT={}",
                    1024 + rng.below(60_000),
                    rng.pick(&["22", "3389", "445", "443"])
                ),
                13..=16 => format!(
                    "<190>1 {ts5424} {host} nginx - - - {ip} - - \"GET {} HTTP/1.1\" {} {}",
                    rng.pick(&paths),
                    rng.pick(&["200", "302", "404", "403"]),
                    rng.below(20_000)
                ),
                17..=18 => format!(
                    "<134>1 {ts5424} {host} innbyggerportal - LOGIN [idporten@53595 acr=\"{}\" client_id=\"k{tenant}-portal\" outcome=\"{}\"] ID-porten login",
                    rng.pick(&["idporten-loa-high", "idporten-loa-substantial"]),
                    rng.pick(&["success", "success", "success", "access_denied"])
                ),
                _ => format!("console: link eth0 flapped ({} times)", rng.below(9) + 1),
            }
        })
        .collect()
}

/// A valid identity number (mostly classic check digits, one in four under the 2032 rule; one in
/// ten a D-number) drawn from `rng`: synthetic, but shaped like a real citizen's.
fn national_id(rng: &mut Rng) -> String {
    loop {
        let day =
            u8::try_from(rng.below(28) + 1).unwrap_or(1) + if rng.below(10) == 0 { 40 } else { 0 };
        let month = u8::try_from(rng.below(12) + 1).unwrap_or(1);
        let year = u8::try_from(rng.below(100)).unwrap_or(0);
        let ind = u16::try_from(rng.below(1000)).unwrap_or(0);
        let r1 = if rng.below(4) == 0 {
            1 + rng.below(3) as u32
        } else {
            0
        };
        let first9 = [
            day / 10,
            day % 10,
            month / 10,
            month % 10,
            year / 10,
            year % 10,
            u8::try_from(ind / 100).unwrap_or(0),
            u8::try_from(ind / 10 % 10).unwrap_or(0),
            u8::try_from(ind % 10).unwrap_or(0),
        ];
        if let Some(d) = crate::privacy::nin::complete(first9, r1) {
            return d.iter().map(|x| char::from(b'0' + x)).collect();
        }
    }
}

/// What the edge sees from one municipality: the syslog of [`sample_lines`] mixed with lines
/// read from files — Apache/nginx access logs (some with identity numbers in the query), IIS W3C
/// lines (default fields), JSON ID-porten login events of a municipal service (with the `pid`
/// claim), sshd logins by people who typed their fødselsnummer as user name, and payment log
/// lines naming an account number. Deterministic per municipality, like [`sample_lines`].
pub fn edge_sample_lines(tenant: &str, n: usize, now_us: i64) -> Vec<String> {
    let syslog = sample_lines(tenant, n, now_us);
    let seed = tenant.bytes().fold(0x51_7cc1_b727_220au64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut rng = Rng(seed | 1);
    let paths = [
        "/",
        "/innsyn",
        "/api/sak",
        "/min-side",
        "/wp-login.php",
        "/owa/auth/logon.aspx",
    ];
    let agents = [
        "Mozilla/5.0 (Windows NT 10.0; Win64; x64)",
        "curl/8.5.0",
        "python-requests/2.31",
    ];
    syslog
        .into_iter()
        .enumerate()
        .map(|(i, line)| {
            let t_us = now_us - 3_600_000_000 + i64::try_from(i).unwrap_or(0) * 1000;
            let t = chrono::DateTime::from_timestamp_micros(t_us).unwrap_or_default();
            let ip = format!("198.51.100.{}", rng.below(254) + 1);
            match rng.below(10) {
                0..=3 => line,
                4..=5 => {
                    let query = if rng.below(3) == 0 {
                        format!("?fnr={}", national_id(&mut rng))
                    } else {
                        format!("?side={}", rng.below(50))
                    };
                    format!(
                        "{ip} - - [{}] \"GET {}{query} HTTP/1.1\" {} {} \"-\" \"{}\"",
                        t.format("%d/%b/%Y:%H:%M:%S %z"),
                        rng.pick(&paths),
                        rng.pick(&["200", "302", "404", "401"]),
                        rng.below(40_000),
                        rng.pick(&agents)
                    )
                }
                6 => format!(
                    "{} 10.0.0.8 {} {} - 443 - {ip} {} - {} 0 0 {}",
                    t.format("%Y-%m-%d %H:%M:%S"),
                    rng.pick(&["GET", "POST"]),
                    rng.pick(&paths),
                    rng.pick(&agents).replace(' ', "+"),
                    rng.pick(&["200", "401", "302"]),
                    rng.below(900)
                ),
                7 => format!(
                    "{{\"time\":\"{}\",\"client_id\":\"k{tenant}-innbyggerportal\",\"service\":\"byggesak\",\"acr\":\"{}\",\"amr\":[\"BankID\"],\"pid\":\"{}\",\"ip\":\"{ip}\",\"outcome\":\"{}\"}}",
                    t.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                    rng.pick(&["idporten-loa-high", "idporten-loa-substantial"]),
                    national_id(&mut rng),
                    rng.pick(&["success", "success", "failure"])
                ),
                8 => format!(
                    "<38>1 {} sak01.k{tenant}.kommune.no sshd {} - - Failed password for invalid user {} from {ip} port {} ssh2",
                    t.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                    1000 + rng.below(30_000),
                    national_id(&mut rng),
                    1024 + rng.below(60_000)
                ),
                _ => format!(
                    "<134>1 {} okonomi01.k{tenant}.kommune.no faktura - - - utbetaling til kontonr: {} ref {}",
                    t.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                    national_id(&mut rng),
                    rng.below(1_000_000)
                ),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syslog::parse_line;
    use varde_core::Value;

    #[test]
    fn samples_are_deterministic_and_mostly_syslog() {
        let a = sample_lines("0301", 200, 1_714_557_600_000_000);
        let b = sample_lines("0301", 200, 1_714_557_600_000_000);
        assert_eq!(a, b);
        assert_ne!(a, sample_lines("4601", 200, 1_714_557_600_000_000));
        let raw = a
            .iter()
            .filter(|l| parse_line(l, 0).get("parse_error") == Some(&Value::Bool(true)))
            .count();
        assert!(raw > 0 && raw < 40, "{raw} raw lines");
    }

    #[test]
    fn edge_samples_are_deterministic_and_hold_identity_numbers() {
        let a = edge_sample_lines("0301", 500, 1_714_557_600_000_000);
        assert_eq!(a, edge_sample_lines("0301", 500, 1_714_557_600_000_000));
        let with_numbers = a
            .iter()
            .filter(|l| l.contains("fnr=") || l.contains("\"pid\""))
            .count();
        assert!(with_numbers > 30, "{with_numbers}");
    }
}
