//! Durations (`250ms`, `1.5s`, `5m`) and sizes (`64KiB`, `10MB`) as written in the config.
//!
//! The parsers' error strings are complete user-facing messages (value, what is wrong, an example),
//! because the loader shows them verbatim after the key path. Arithmetic is exact (no floats), so
//! `0.1s` is 100ms and not 99.999…ms. The `format_*` helpers print values back for `syncgate check`.

use std::time::Duration;

const DURATION_HINT: &str = "use a number with ms, s, m or h, like 250ms, 30s, 5m";
const SIZE_HINT: &str =
    "use a number of bytes or a number with B, KB, MB, GB, KiB, MiB or GiB, like 512B, 64KiB, 1MiB";

/// Parses `250ms`, `30s`, `1.5s`, `5m`, `1h`. A unit is required: a bare `30` is ambiguous.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("{s:?} is not a duration; {DURATION_HINT}");
    let (number, unit) = split_number(s).ok_or_else(bad)?;
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        _ => return Err(bad()),
    };
    let nanos = number
        .scale(unit_nanos)
        .ok_or_else(|| format!("{s:?} is too long for a duration"))?;
    let secs = u64::try_from(nanos / 1_000_000_000)
        .map_err(|_| format!("{s:?} is too long for a duration"))?;
    // The remainder is below 10^9, so it always fits.
    let sub = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Ok(Duration::new(secs, sub))
}

/// Parses a byte count: a plain integer, or a number with a binary (`KiB`, `MiB`, `GiB`) or decimal
/// (`KB`, `MB`, `GB`) unit. Units are case-insensitive; a fraction must come out as whole bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let bad = || format!("{s:?} is not a size; {SIZE_HINT}");
    let (number, unit) = split_number(s).ok_or_else(bad)?;
    let multiplier: u128 = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        _ => return Err(bad()),
    };
    let (whole, exact) = number
        .scale_exact(multiplier)
        .ok_or_else(|| format!("{s:?} is too large for a size"))?;
    if !exact {
        return Err(format!("{s:?} is not a whole number of bytes; {SIZE_HINT}"));
    }
    u64::try_from(whole).map_err(|_| format!("{s:?} is too large for a size"))
}

/// Prints a duration the way the config would write it (`250ms`, `30s`, `10m`, `1.5s`).
pub(super) fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 && !d.is_zero() {
        return format!("{}us", d.as_micros());
    }
    if ms == 0 {
        "0s".to_owned()
    } else if ms.is_multiple_of(3_600_000) {
        format!("{}h", ms / 3_600_000)
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else if ms > 1000 {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}

/// Prints a byte count with the largest binary unit that divides it (`64KiB`, `1MiB`, `1000B`).
pub(super) fn format_size(bytes: u64) -> String {
    for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    format!("{bytes}B")
}

/// A non-negative decimal number as written: integer digits and fraction digits.
struct Decimal<'a> {
    int: &'a str,
    frac: &'a str,
}

impl Decimal<'_> {
    /// `self × multiplier`, truncated, or `None` on overflow.
    fn scale(&self, multiplier: u128) -> Option<u128> {
        self.scale_exact(multiplier).map(|(value, _)| value)
    }

    /// `self × multiplier` truncated, and whether the truncation lost nothing.
    fn scale_exact(&self, multiplier: u128) -> Option<(u128, bool)> {
        let int = parse_digits(self.int)?;
        let mut value = int.checked_mul(multiplier)?;
        if self.frac.is_empty() {
            return Some((value, true));
        }
        // 18 fraction digits times the largest unit multiplier (an hour in ns, 3.6e12) still fits in
        // a u128; digits past the 18th are below a nanosecond or a byte and only decide exactness.
        let frac_digits = &self.frac[..self.frac.len().min(18)];
        let frac = parse_digits(frac_digits)?;
        let denominator = 10u128.checked_pow(u32::try_from(frac_digits.len()).ok()?)?;
        let scaled = frac.checked_mul(multiplier)?;
        value = value.checked_add(scaled / denominator)?;
        let exact =
            scaled % denominator == 0 && self.frac[frac_digits.len()..].bytes().all(|b| b == b'0');
        Some((value, exact))
    }
}

fn parse_digits(digits: &str) -> Option<u128> {
    if digits.is_empty() {
        return Some(0);
    }
    digits.parse().ok()
}

/// Splits `1.5s` into the number and `s`. `None` when there is no number, or it is malformed.
fn split_number(s: &str) -> Option<(Decimal<'_>, &str)> {
    let end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(end);
    let (int, frac) = match number.split_once('.') {
        Some((int, frac)) => (int, frac),
        None => (number, ""),
    };
    let well_formed = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && !(number.contains('.') && frac.is_empty());
    well_formed.then_some((Decimal { int, frac }, unit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units_and_decimals_parse_exactly() {
        let table = [
            ("250ms", Duration::from_millis(250)),
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h", Duration::from_secs(3600)),
            ("1.5s", Duration::from_millis(1500)),
            ("0.1s", Duration::from_millis(100)),
            ("0.5ms", Duration::from_micros(500)),
            ("0s", Duration::ZERO),
            ("2.25m", Duration::from_secs(135)),
        ];
        for (text, want) in table {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn durations_without_a_known_unit_are_rejected_with_a_hint() {
        for text in [
            "30", "2 sec", "2sec", "s", "", "-1s", "1.s", ".5s", "1d", "1m30s", "1,5s", " 1s",
        ] {
            let err = parse_duration(text).expect_err(text);
            assert!(err.contains("is not a duration"), "{text}: {err}");
            assert!(err.contains("like 250ms, 30s, 5m"), "{text}: {err}");
        }
    }

    #[test]
    fn absurdly_long_durations_are_rejected() {
        let err = parse_duration("99999999999999999999999h").unwrap_err();
        assert!(err.contains("too long"), "{err}");
    }

    #[test]
    fn sizes_take_binary_and_decimal_units() {
        let table = [
            ("64KiB", 65_536),
            ("1MiB", 1_048_576),
            ("1GiB", 1_073_741_824),
            ("512B", 512),
            ("10KB", 10_000),
            ("10MB", 10_000_000),
            ("2GB", 2_000_000_000),
            ("4096", 4096),
            ("64kib", 65_536),
            ("1.5KB", 1500),
            ("0.5KiB", 512),
        ];
        for (text, want) in table {
            assert_eq!(parse_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn malformed_sizes_are_rejected_with_a_hint() {
        for text in ["64K", "1 MiB", "MiB", "-1", "1TB", "x"] {
            let err = parse_size(text).expect_err(text);
            assert!(err.contains("is not a size"), "{text}: {err}");
            assert!(err.contains("64KiB"), "{text}: {err}");
        }
        let err = parse_size("0.1KiB").unwrap_err();
        assert!(err.contains("not a whole number of bytes"), "{err}");
    }

    #[test]
    fn formatting_round_trips_typical_values() {
        for text in ["250ms", "30s", "10m", "1h", "1.5s", "0s"] {
            let d = parse_duration(text).unwrap();
            assert_eq!(format_duration(d), text);
        }
        for text in ["64KiB", "1MiB", "1GiB", "512B", "1000B"] {
            let n = parse_size(text).unwrap();
            assert_eq!(format_size(n), text);
        }
    }

    #[test]
    fn long_fractions_are_not_mistaken_for_overflow() {
        // Found by fuzzing: 26 nines after the point used to overflow the intermediate product.
        let d = parse_duration("0.99999999999999999999999999h").unwrap();
        assert!(d < Duration::from_secs(3600) && d > Duration::from_secs(3599));
        let err = parse_size("0.999999999999999999999999999999GiB").unwrap_err();
        assert!(err.contains("whole number of bytes"), "{err}");
    }
}
