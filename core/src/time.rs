//! Time helpers. Every timestamp in the event model is microseconds since the Unix epoch, UTC.

/// Microseconds per second.
pub const MICROS_PER_SECOND: i64 = 1_000_000;

/// Splits µs since the epoch into whole seconds (floored) and the microseconds within the second,
/// for stores that keep second-resolution times beside a sub-second column.
pub fn split_micros(us: i64) -> (i64, u32) {
    let secs = us.div_euclid(MICROS_PER_SECOND);
    let frac = us.rem_euclid(MICROS_PER_SECOND);
    // rem_euclid is in 0..1_000_000.
    (secs, u32::try_from(frac).unwrap_or(0))
}

/// Formats µs since the epoch as RFC 3339 in UTC with microseconds, e.g.
/// `2024-05-01T10:00:00.000001Z`; out-of-range values print as the raw number.
pub fn format_rfc3339(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map_or_else(
        || us.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_floors_negative_times() {
        assert_eq!(split_micros(1_500_000), (1, 500_000));
        assert_eq!(split_micros(-1), (-1, 999_999));
        assert_eq!(split_micros(0), (0, 0));
    }

    #[test]
    fn formats_utc() {
        assert_eq!(
            format_rfc3339(1_714_557_600_000_001),
            "2024-05-01T10:00:00.000001Z"
        );
    }
}
