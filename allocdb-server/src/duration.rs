//! Durations as people type them on a command line: `500ms`, `30s`, `5m`, `2h`.
//!
//! A unit is required: a bare number is ambiguous (slots? seconds?) and is refused.

use std::time::Duration;

/// Parses `<digits><unit>` with unit `ms`, `s`, `m` or `h`.
///
/// # Errors
/// A message naming what is wrong: no digits, no or an unknown unit, or an overflow.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(digits_end);
    if digits.is_empty() {
        return Err(format!(
            "duration {text:?}: expected a number followed by ms, s, m or h (e.g. 30s)"
        ));
    }
    let value: u64 = digits
        .parse()
        .map_err(|_| format!("duration {text:?}: the number is too large"))?;
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "" => {
            return Err(format!(
                "duration {text:?}: a unit is required (ms, s, m or h), e.g. {value}s"
            ));
        }
        other => {
            return Err(format!(
                "duration {text:?}: unknown unit {other:?} (use ms, s, m or h)"
            ));
        }
    };
    let millis = value
        .checked_mul(millis_per_unit)
        .ok_or_else(|| format!("duration {text:?} is too large"))?;
    Ok(Duration::from_millis(millis))
}

#[cfg(test)]
mod tests {
    use super::parse_duration;
    use std::time::Duration;

    #[test]
    fn parses_units_and_refuses_the_rest() {
        let good = [
            ("500ms", 500),
            ("30s", 30_000),
            ("5m", 300_000),
            ("2h", 7_200_000),
            ("0s", 0),
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
            ("30", "unit is required"),
            ("30sec", "unknown unit"),
            ("1.5s", "unknown unit"),
            ("-3s", "expected a number"),
            ("99999999999999999999s", "too large"),
            ("9999999999999999h", "too large"),
        ];
        for (text, message) in bad {
            let error = parse_duration(text).unwrap_err();
            assert!(error.contains(message), "{text}: {error}");
        }
    }
}
