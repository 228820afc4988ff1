//! The one retry policy of Varde's processes: exponential backoff with jitter, capped.
//!
//! 357 collectors that lost their broker at the same moment must not come back in lockstep, and
//! neither must the pipeline instances hammering a ClickHouse that is starting up. Every wait is
//! the exponential step (from [`MIN_DELAY`], doubling, at most [`MAX_DELAY`]) plus a random share
//! of up to the same again, so waits lie between the step and twice the step, never above
//! 2 × [`MAX_DELAY`]. The delays come from [`backon`]; loops that keep their own state (the spool
//! sender) take them from [`Delays`], one-shot operations use [`policy`] or [`bounded`] with
//! `backon::Retryable`.

use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

/// The first wait (before jitter).
pub const MIN_DELAY: Duration = Duration::from_millis(100);
/// The largest step; with jitter a wait is at most twice this.
pub const MAX_DELAY: Duration = Duration::from_secs(5);

/// Retries without end: for work that must not be dropped (a batch to publish or store) and
/// whose caller stops it by other means (shutdown).
pub fn policy() -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(MIN_DELAY)
        .with_max_delay(MAX_DELAY)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
}

/// At most `retries` retries after the first attempt, same delays as [`policy`].
pub fn bounded(retries: usize) -> ExponentialBuilder {
    policy().with_max_times(retries)
}

/// The waits of [`policy`], for loops that decide themselves when to wait and when to start
/// over (after a success).
#[derive(Debug)]
pub struct Delays(ExponentialBackoff);

impl Delays {
    /// A fresh sequence, starting at [`MIN_DELAY`].
    pub fn new() -> Self {
        Delays(policy().build())
    }

    /// The next wait.
    pub fn next_delay(&mut self) -> Duration {
        self.0.next().unwrap_or(MAX_DELAY)
    }

    /// Starts over at [`MIN_DELAY`] (after a success).
    pub fn reset(&mut self) {
        *self = Delays::new();
    }
}

impl Default for Delays {
    fn default() -> Self {
        Delays::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_with_jitter_and_stay_under_the_cap() {
        let mut seen_jitter = false;
        for _ in 0..50 {
            let mut d = Delays::new();
            let mut step = MIN_DELAY;
            for _ in 0..20 {
                let wait = d.next_delay();
                // (backon computes the steps in f32: a microsecond of rounding either way)
                let slack = Duration::from_micros(10);
                assert!(wait + slack >= step, "{wait:?} below its step {step:?}");
                assert!(
                    wait <= step * 2 + slack,
                    "{wait:?} above twice its step {step:?}"
                );
                seen_jitter |= wait != step;
                step = (step * 2).min(MAX_DELAY);
            }
        }
        assert!(seen_jitter, "no wait in 1000 had jitter");
    }

    #[test]
    fn two_sequences_do_not_wait_in_lockstep() {
        let a: Vec<Duration> = (0..8)
            .scan(Delays::new(), |d, _| Some(d.next_delay()))
            .collect();
        let b: Vec<Duration> = (0..8)
            .scan(Delays::new(), |d, _| Some(d.next_delay()))
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn reset_starts_over() {
        let mut d = Delays::new();
        for _ in 0..10 {
            d.next_delay();
        }
        d.reset();
        assert!(d.next_delay() <= MIN_DELAY * 2);
    }

    #[test]
    fn bounded_gives_up() {
        assert_eq!(bounded(3).build().count(), 3);
    }
}
