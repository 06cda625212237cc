//! Durations as people read them, and as serde writes them (seconds as a float).

use std::time::Duration;

use serde::Serializer;

/// A duration as a person writes it: `2s`, `1.25s`, `150ms`, `800µs`.
pub(crate) fn format_duration(duration: Duration) -> String {
    if duration >= Duration::from_secs(1) {
        if duration.subsec_nanos() == 0 {
            format!("{}s", duration.as_secs())
        } else {
            format!("{:.2}s", duration.as_secs_f64())
        }
    } else if duration >= Duration::from_millis(1) {
        if duration.subsec_nanos().is_multiple_of(1_000_000) {
            format!("{}ms", duration.as_millis())
        } else {
            format!("{:.1}ms", duration.as_secs_f64() * 1e3)
        }
    } else {
        format!("{}µs", duration.as_micros())
    }
}

/// A fixed-width offset for timeline columns: `1.250s`.
pub(crate) fn format_offset(duration: Duration) -> String {
    format!("{:.3}s", duration.as_secs_f64())
}

/// Serializes a duration as seconds (`#[serde(serialize_with = "crate::util::secs")]`).
pub(crate) fn secs<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// Serializes an optional duration as seconds, or `null`.
pub(crate) fn opt_secs<S: Serializer>(
    duration: &Option<Duration>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => serializer.serialize_some(&duration.as_secs_f64()),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_a_person_wrote_them() {
        assert_eq!(format_duration(Duration::from_secs(2)), "2s");
        assert_eq!(format_duration(Duration::from_millis(1250)), "1.25s");
        assert_eq!(format_duration(Duration::from_millis(150)), "150ms");
        assert_eq!(format_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(format_duration(Duration::from_micros(800)), "800µs");
    }
}
