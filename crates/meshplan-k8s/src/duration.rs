//! Durations as Kubernetes and its Go tools write them (`metav1.Duration` fields such as a
//! cert-manager Certificate's `duration`, flags such as `--timeout`): Go's `time.ParseDuration`
//! and `time.Duration.String`, on a signed count of nanoseconds as Go's `time.Duration` holds.
//!
//! [`parse_go_duration`] accepts exactly what Go accepts: an optional sign, then one or more
//! decimal numbers (a fraction allowed on any of them) each with a unit `ns`, `us` (`µs`, `μs`),
//! `ms`, `s`, `m` or `h`, in any order (`1h30m`, `1.5h`, `90m1h`, `.5s`, `-2m3.4s`); `0` alone
//! needs no unit. It refuses what Go refuses, spaces included, and durations beyond Go's range
//! (about 292 years). Errors read as Go's.

use std::fmt::Write as _;

/// Why a text is not a Go duration; the messages are Go's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GoDurationError {
    /// Not of the duration grammar, or out of range.
    #[error("time: invalid duration {}", quote(.0))]
    Invalid(String),
    /// A number without a unit (`1h30`).
    #[error("time: missing unit in duration {}", quote(.0))]
    MissingUnit(String),
    /// A unit Go does not know (`1d`).
    #[error("time: unknown unit {} in duration {}", quote(.unit), quote(.input))]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole text.
        input: String,
    },
}

const NANOS_PER_MICRO: u64 = 1_000;
const NANOS_PER_MILLI: u64 = 1_000_000;
const NANOS_PER_SECOND: u64 = 1_000_000_000;
/// Go accumulates the magnitude in a `uint64` and allows up to 2^63 (the negative minimum).
const LIMIT: u64 = 1 << 63;

fn unit_nanos(unit: &str) -> Option<u64> {
    Some(match unit {
        "ns" => 1,
        // U+00B5 (micro sign) and U+03BC (Greek small letter mu).
        "us" | "\u{b5}s" | "\u{3bc}s" => NANOS_PER_MICRO,
        "ms" => NANOS_PER_MILLI,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => 3_600 * NANOS_PER_SECOND,
        _ => return None,
    })
}

/// The leading `[0-9]*` of `s` as an integer (`None` past 2^63), and the rest.
fn leading_int(s: &str) -> Option<(u64, &str)> {
    let end = s.bytes().take_while(u8::is_ascii_digit).count();
    let mut x: u64 = 0;
    for digit in s[..end].bytes() {
        if x > LIMIT / 10 {
            return None;
        }
        x = x * 10 + u64::from(digit - b'0');
        if x > LIMIT {
            return None;
        }
    }
    Some((x, &s[end..]))
}

/// The leading `[0-9]*` of a fraction as `x / scale`; past 2^63 further digits are ignored
/// (they cannot change the result by a nanosecond).
fn leading_fraction(s: &str) -> (u64, f64, &str) {
    let end = s.bytes().take_while(u8::is_ascii_digit).count();
    let (mut x, mut scale, mut overflow) = (0u64, 1f64, false);
    for digit in s[..end].bytes() {
        if overflow {
            continue;
        }
        if x > (LIMIT - 1) / 10 {
            overflow = true;
            continue;
        }
        let y = x * 10 + u64::from(digit - b'0');
        if y > LIMIT {
            overflow = true;
            continue;
        }
        x = y;
        scale *= 10.0;
    }
    (x, scale, &s[end..])
}

/// Parses a duration as Go's `time.ParseDuration` does, into nanoseconds.
pub fn parse_go_duration(text: &str) -> Result<i64, GoDurationError> {
    let invalid = || GoDurationError::Invalid(text.to_string());
    let (negative, mut s) = match text.as_bytes().first() {
        Some(b'-') => (true, &text[1..]),
        Some(b'+') => (false, &text[1..]),
        _ => (false, text),
    };
    if s == "0" {
        return Ok(0);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !s.is_empty() {
        if !s.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let before = s.len();
        let (whole, rest) = leading_int(s).ok_or_else(invalid)?;
        s = rest;
        let has_whole = s.len() != before;
        let (mut fraction, mut scale, mut has_fraction) = (0, 1.0, false);
        if let Some(rest) = s.strip_prefix('.') {
            let (f, sc, rest2) = leading_fraction(rest);
            has_fraction = rest2.len() != rest.len();
            (fraction, scale, s) = (f, sc, rest2);
        }
        if !has_whole && !has_fraction {
            return Err(invalid());
        }
        let unit_len = s
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(s.len());
        if unit_len == 0 {
            return Err(GoDurationError::MissingUnit(text.to_string()));
        }
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let nanos = unit_nanos(unit).ok_or_else(|| GoDurationError::UnknownUnit {
            unit: unit.to_string(),
            input: text.to_string(),
        })?;
        if whole > LIMIT / nanos {
            return Err(invalid());
        }
        let mut value = whole * nanos;
        if fraction > 0 {
            // As Go: float64 keeps fractions of an hour nanosecond-accurate.
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let part = (fraction as f64 * (nanos as f64 / scale)) as u64;
            value += part;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total += value;
        if total > LIMIT {
            return Err(invalid());
        }
    }
    if negative {
        // total <= 2^63: its negation fits (2^63 itself is i64::MIN).
        return Ok(0i64.wrapping_sub_unsigned(total));
    }
    i64::try_from(total).map_err(|_| invalid())
}

/// Formats nanoseconds as Go's `time.Duration.String` does: `48h0m0s`, `1h30m0s`, `1.5s`,
/// `500ms`, `0s`.
pub fn format_go_duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".to_string();
    }
    if u < NANOS_PER_SECOND {
        let (digits, unit) = if u < NANOS_PER_MICRO {
            (0, "ns")
        } else if u < NANOS_PER_MILLI {
            (3, "\u{b5}s")
        } else {
            (6, "ms")
        };
        return format!("{sign}{}{unit}", decimal(u, digits));
    }
    let seconds = u / NANOS_PER_SECOND;
    let mut out = sign.to_string();
    let (h, m) = (seconds / 3_600, (seconds / 60) % 60);
    if h > 0 {
        let _ = write!(out, "{h}h");
    }
    if seconds >= 60 {
        let _ = write!(out, "{m}m");
    }
    let _ = write!(
        out,
        "{}s",
        decimal((seconds % 60) * NANOS_PER_SECOND + u % NANOS_PER_SECOND, 9)
    );
    out
}

/// `v / 10^digits` with the fraction's trailing zeros (and a bare point) left out.
fn decimal(v: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let (int, frac) = (v / scale, v % scale);
    if frac == 0 {
        return int.to_string();
    }
    let frac = format!("{frac:0width$}", width = digits as usize);
    format!("{int}.{}", frac.trim_end_matches('0'))
}

/// Go's `time` package quoting in its errors: ASCII control and non-ASCII bytes as `\x..`.
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                let _ = write!(out, "\\x{b:02x}");
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NS: i64 = 1;
    const US: i64 = 1_000;
    const MS: i64 = 1_000_000;
    const S: i64 = 1_000_000_000;
    const M: i64 = 60 * S;
    const H: i64 = 60 * M;

    /// The cases of Go's own `time` package tests (`parseDurationTests`).
    #[test]
    fn parses_what_go_parses() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("5s", 5 * S),
            ("30s", 30 * S),
            ("1478s", 1478 * S),
            ("-5s", -5 * S),
            ("+5s", 5 * S),
            ("-0", 0),
            ("+0", 0),
            ("5.0s", 5 * S),
            ("5.6s", 5 * S + 600 * MS),
            ("5.s", 5 * S),
            (".5s", 500 * MS),
            ("1.0s", S),
            ("1.00s", S),
            ("1.004s", S + 4 * MS),
            ("1.0040s", S + 4 * MS),
            ("100.00100s", 100 * S + MS),
            ("10ns", 10 * NS),
            ("11us", 11 * US),
            ("12\u{b5}s", 12 * US),
            ("12\u{3bc}s", 12 * US),
            ("13ms", 13 * MS),
            ("14s", 14 * S),
            ("15m", 15 * M),
            ("16h", 16 * H),
            ("3h30m", 3 * H + 30 * M),
            ("10.5s4m", 4 * M + 10 * S + 500 * MS),
            ("-2m3.4s", -(2 * M + 3 * S + 400 * MS)),
            (
                "1h2m3s4ms5us6ns",
                H + 2 * M + 3 * S + 4 * MS + 5 * US + 6 * NS,
            ),
            ("39h9m14.425s", 39 * H + 9 * M + 14 * S + 425 * MS),
            ("52763797000ns", 52_763_797_000 * NS),
            ("0.3333333333333333333h", 20 * M),
            ("9007199254740993ns", (1 << 53) + 1),
            ("9223372036854775807ns", i64::MAX),
            ("9223372036854775.807us", i64::MAX),
            ("9223372036s854ms775us807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("-9223372036854775.808us", i64::MIN),
            ("-9223372036s854ms775us808ns", i64::MIN),
            ("-2562047h47m16.854775808s", i64::MIN),
            ("0.100000000000000000000h", 6 * M),
            (
                "0.830103483285477580700h",
                49 * M + 48 * S + 372_539_827 * NS,
            ),
            // What plan files and cert-manager resources hold.
            ("2160h", 2160 * H),
            ("2160h0m0s", 2160 * H),
            ("1.5h", 90 * M),
            ("500ms", 500 * MS),
            ("1m1h", H + M),
            ("1h1h", 2 * H),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration(text), Ok(*want), "{text:?}");
        }
    }

    /// The refusals of Go's own tests (`parseDurationErrorTests`) and the forms other duration
    /// syntaxes accept but Go does not.
    #[test]
    fn refuses_what_go_refuses() {
        for text in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{fffd}",
            "\u{fffd} hello \u{fffd} world",
            "9223372036854775810ns",
            "9223372036854775808ns",
            "-9223372036854775809ns",
            "9223372036854776us",
            "3000000h",
            "9223372036854775.808us",
            "9223372036854ms775us808ns",
            "1h 30m",
            " 30s",
            "30s ",
            "1 hour",
            "1hr",
            "PT1H",
            "1h ago",
            "1,5h",
            "1H",
            "1..5h",
            "1h30",
        ] {
            assert!(
                parse_go_duration(text).is_err(),
                "{text:?} should be refused"
            );
        }
    }

    #[test]
    fn errors_read_as_go_s() {
        let message = |t: &str| parse_go_duration(t).unwrap_err().to_string();
        assert_eq!(message(""), r#"time: invalid duration """#);
        assert_eq!(message("1h30"), r#"time: missing unit in duration "1h30""#);
        assert_eq!(message("1d"), r#"time: unknown unit "d" in duration "1d""#);
        assert_eq!(message("3000000h"), r#"time: invalid duration "3000000h""#);
        assert_eq!(
            message("\u{fffd}"),
            r#"time: invalid duration "\xef\xbf\xbd""#
        );
        assert_eq!(
            message("1\u{b5}x"),
            r#"time: unknown unit "\xc2\xb5x" in duration "1\xc2\xb5x""#
        );
    }

    /// Go's `durationTests` for `Duration.String`.
    #[test]
    fn formats_as_go() {
        for (nanos, want) in [
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1\u{b5}s"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (4 * M + 5 * S, "4m5s"),
            (4 * M + 5_001 * MS, "4m5.001s"),
            (5 * H + 6 * M + 7_001 * MS, "5h6m7.001s"),
            (8 * M + 1, "8m0.000000001s"),
            (48 * H, "48h0m0s"),
            (90 * M, "1h30m0s"),
            (25 * S, "25s"),
            (-2 * M, "-2m0s"),
            (-500 * MS, "-500ms"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
        ] {
            assert_eq!(format_go_duration(nanos), want, "{nanos}");
            assert_eq!(parse_go_duration(want), Ok(nanos), "{want}");
        }
    }
}
