//! Durations as operators write them: `30s`, `5m`, `1h30m`, `500ms` (Go / kubectl style).
//!
//! Reading is Go's `time.ParseDuration` ([`meshplan_k8s::parse_go_duration`], shared with the
//! sandbox's cert-manager), restricted to what a plan's timeouts need: whole numbers of `h`,
//! `m`, `s` and `ms`, and a positive total.

use std::time::Duration;

/// Parses a duration such as `1h30m`; `None` for anything else (including zero, a sign, a
/// fraction, `ns`/`us` units, and more than Go's maximum of about 292 years).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if !text
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'h' | b'm' | b's'))
    {
        return None;
    }
    let nanos = meshplan_k8s::parse_go_duration(text).ok()?;
    u64::try_from(nanos)
        .ok()
        .filter(|&n| n > 0)
        .map(Duration::from_nanos)
}

/// Formats a duration the way [`parse_duration`] reads it (`1h30m`, `45s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = d.as_secs();
    let mut out = String::new();
    for (unit, size) in [("h", 3600), ("m", 60)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    if secs > 0 || out.is_empty() {
        out.push_str(&format!("{secs}s"));
    }
    out
}

/// A measured duration for people: `850ms`, `4.9s`, `42s`, `1m05s`, `1h02m` (never `4998ms`).
pub fn human_duration(d: Duration) -> String {
    let ms = d.as_millis();
    let secs = d.as_secs();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 10_000 {
        format!("{}.{}s", ms / 1000, (ms % 1000) / 100)
    } else if secs < 60 {
        format!("{secs}s")
    } else if secs < 3600 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else if secs % 3600 < 60 {
        format!("{}h", secs / 3600)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measured_durations_read_in_human_units() {
        let ms = Duration::from_millis;
        assert_eq!(human_duration(ms(850)), "850ms");
        assert_eq!(human_duration(ms(4998)), "4.9s");
        assert_eq!(human_duration(ms(42_400)), "42s");
        assert_eq!(human_duration(ms(65_000)), "1m05s");
        assert_eq!(human_duration(ms(3_725_000)), "1h02m");
        assert_eq!(human_duration(ms(300_000)), "5m");
        assert_eq!(human_duration(ms(7_200_000)), "2h");
    }

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in [
            "",
            "0s",
            "10",
            "5 minutes",
            "m5",
            "-1s",
            "1.5m",
            "99999999999999999999h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn go_s_range_is_the_limit() {
        // Beyond Go's range (helm and kubectl refuse it too) a deadline could not be computed.
        assert_eq!(
            parse_duration("2562047h"),
            Some(Duration::from_secs(2_562_047 * 3600))
        );
        assert_eq!(parse_duration("2562048h"), None);
        assert_eq!(parse_duration(" 90s\n"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("30m1h"), Some(Duration::from_secs(5400)));
        for bad in ["1us", "10ns", "+5s", ".5s", "1h 30m", "0"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }

    #[test]
    fn format_round_trips() {
        for text in ["1h30m", "45s", "250ms", "2h", "5m"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
    }
}
