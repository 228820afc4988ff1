//! Generated event streams for the correlation rules in `benches/correlation/rules` (the
//! differential test against rsigma and `varde-bench correlate`): JSON lines with a `ts` in
//! seconds, which both Varde and rsigma read as the event time.
//!
//! Events of `users` users, four sources and three hosts are interleaved: failed and good logins
//! (`action: login`), the steps `a`, `b`, `c` of a sequence, transfers (`xfer`, with `bytes`) and
//! noise. Time moves in bursts within one second (their arrival order shuffled), ordinary steps
//! of up to 15 s and gaps of 10–30 minutes, longer than every window. Within one group the
//! events arrive in time order.

/// A small deterministic generator (xorshift64*), so a failing seed can be replayed.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// The first event time of every stream: 2026-12-01T10:00:00Z.
pub const START_S: i64 = 1_796_119_200;

/// `n` events from `seed`, as JSON lines in arrival order.
pub fn stream(seed: u64, n: usize, users: usize) -> String {
    let mut rng = Rng::new(seed);
    let sources = ["192.0.2.1", "192.0.2.2", "198.51.100.7", "203.0.113.9"];
    let hosts = ["app01", "app02", "db01"];
    let mut t = START_S;
    let mut second: Vec<String> = Vec::new();
    let mut out = String::with_capacity(n * 130);
    let flush = |second: &mut Vec<String>, rng: &mut Rng, out: &mut String| {
        // Arrival within one second is shuffled (Fisher-Yates).
        for i in (1..second.len()).rev() {
            let j = rng.below(i as u64 + 1) as usize;
            second.swap(i, j);
        }
        for e in second.drain(..) {
            out.push_str(&e);
            out.push('\n');
        }
    };
    for _ in 0..n {
        let step = match rng.below(100) {
            0..30 => 0,
            30..95 => 1 + rng.below(15) as i64,
            _ => 600 + rng.below(1200) as i64,
        };
        if step > 0 {
            flush(&mut second, &mut rng, &mut out);
            t += step;
        }
        let action = match rng.below(100) {
            0..40 => "login",
            40..50 => "a",
            50..60 => "b",
            60..70 => "c",
            70..90 => "xfer",
            _ => "noise",
        };
        let outcome = if rng.below(10) < 7 { "fail" } else { "ok" };
        let user = rng.below(users as u64);
        let src = sources[rng.below(4) as usize];
        let host = hosts[rng.below(3) as usize];
        let bytes = rng.below(4000);
        second.push(format!(
            "{{\"ts\":{t},\"action\":\"{action}\",\"outcome\":\"{outcome}\",\"user\":\"u{user}\",\"src\":\"{src}\",\"host_name\":\"{host}\",\"bytes\":{bytes}}}"
        ));
    }
    flush(&mut second, &mut rng, &mut out);
    out
}

/// `n` failed logins, one second apart, of `users` users in turn: with `users = n` every
/// event opens a group of its own that never fires (how much an open group costs), with
/// `users = 1` they all fall in one group.
pub fn failed_logins(n: usize, users: usize) -> String {
    let mut out = String::with_capacity(n * 110);
    for i in 0..n {
        out.push_str(&format!(
            "{{\"ts\":{},\"action\":\"login\",\"outcome\":\"fail\",\"user\":\"u{}\",\"src\":\"192.0.2.1\",\"host_name\":\"app01\",\"bytes\":0}}\n",
            START_S + i as i64,
            i % users.max(1)
        ));
    }
    out
}
