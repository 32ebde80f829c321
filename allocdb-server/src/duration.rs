//! Durations as people type them on a command line: `500ms`, `30s`, `1.5s`, `5m`, `0.5h`.
//!
//! A unit is required: a bare number is ambiguous (slots? seconds?) and is refused. A fraction
//! is allowed with any unit; the result is rounded up to whole milliseconds, so a non-zero
//! duration never becomes zero.

use std::time::Duration;

/// The forms every error names, so the user sees what would have worked.
const ACCEPTED: &str = "a number and a unit: ms, s, m or h (e.g. 250ms, 1.5s, 2m, 0.5h)";

/// Digits after the point kept; more would only describe nanoseconds nobody can ask for.
const FRACTION_DIGITS_MAX: usize = 9;

/// Parses `<digits>[.<digits>]<unit>` with unit `ms`, `s`, `m` or `h`.
///
/// # Errors
/// A message naming what is wrong (no number, no or an unknown unit, an overflow) and the
/// accepted forms.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let number_end = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(number_end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && fraction.is_empty() || fraction.contains('.') {
        return Err(format!("duration {text:?}: expected {ACCEPTED}"));
    }
    if number.ends_with('.') {
        return Err(format!(
            "duration {text:?}: a point must be followed by digits; expected {ACCEPTED}"
        ));
    }
    let nanos_per_unit: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" => {
            return Err(format!(
                "duration {text:?}: a unit is required; expected {ACCEPTED}"
            ));
        }
        other => {
            return Err(format!(
                "duration {text:?}: unknown unit {other:?}; expected {ACCEPTED}"
            ));
        }
    };
    let too_large = || format!("duration {text:?} is too large");
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let mut nanos = whole.checked_mul(nanos_per_unit).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        // fraction / 10^digits of a unit, in nanoseconds, rounded up.
        let digits = &fraction[..fraction.len().min(FRACTION_DIGITS_MAX)];
        let numerator: u128 = digits.parse().map_err(|_| too_large())?;
        let scale = 10_u128.pow(u32::try_from(digits.len()).unwrap_or(0));
        let rest_nonzero = fraction[digits.len()..].bytes().any(|b| b != b'0');
        let part = (numerator * nanos_per_unit).div_ceil(scale) + u128::from(rest_nonzero);
        nanos = nanos.checked_add(part).ok_or_else(too_large)?;
    }
    let millis = u64::try_from(nanos.div_ceil(1_000_000)).map_err(|_| too_large())?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn parses_units_and_fractions_and_refuses_the_rest() {
        let good = [
            ("500ms", 500),
            ("250ms", 250),
            ("30s", 30_000),
            ("1.5s", 1_500),
            ("0.5h", 1_800_000),
            ("2m", 120_000),
            (".5s", 500),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("0s", 0),
            ("0.0s", 0),
            ("1.0001s", 1_001),
            ("0.1ms", 1),
            ("0.0000000001s", 1),
            (" 7s ", 7_000),
        ];
        for (text, millis) in good {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(millis)),
                "{text}"
            );
        }
        let bad = [
            ("", "expected a number"),
            ("s", "expected a number"),
            (".s", "expected a number"),
            ("1.s", "followed by digits"),
            ("1.2.3s", "expected a number"),
            ("30", "unit is required"),
            ("30sec", "unknown unit"),
            ("-3s", "expected a number"),
            ("99999999999999999999999999999999999999999s", "too large"),
            ("9999999999999999h", "too large"),
        ];
        for (text, message) in bad {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(message), "{text}: {error}");
            assert!(
                error.contains("1.5s") || message == "too large",
                "names the accepted forms: {error}"
            );
        }
    }
}
