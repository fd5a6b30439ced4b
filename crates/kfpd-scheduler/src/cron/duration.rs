//! Go's `time.ParseDuration`, which robfig uses for `@every <duration>`.
//!
//! Reimplemented rather than approximated because the accepted grammar is
//! part of what a stored trigger means: `[-+]?([0-9]*(\.[0-9]*)?unit)+` with
//! units `ns us µs μs ms s m h`, a bare `0`, no spaces, and an `i64`
//! nanosecond range.

const UNITS: [(&str, u64); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("\u{b5}s", 1_000),  // micro sign
    ("\u{3bc}s", 1_000), // Greek small letter mu
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

const LIMIT: u64 = 1 << 63;

/// Parses a Go duration string into nanoseconds. The error is a short,
/// lowercase reason.
pub(crate) fn parse_go_duration(text: &str) -> Result<i64, String> {
    let invalid = || "not a valid duration (examples: 90s, 1h30m, 1.5h)".to_owned();
    let bytes = text.as_bytes();
    let mut pos = 0;
    let mut negative = false;
    if let Some(&sign @ (b'-' | b'+')) = bytes.first() {
        negative = sign == b'-';
        pos = 1;
    }
    if &bytes[pos..] == b"0" {
        return Ok(0);
    }
    if pos == bytes.len() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while pos < bytes.len() {
        if !(bytes[pos] == b'.' || bytes[pos].is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let int_start = pos;
        let mut whole: u64 = 0;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            whole = whole
                .checked_mul(10)
                .and_then(|w| w.checked_add(u64::from(bytes[pos] - b'0')))
                .filter(|&w| w <= LIMIT)
                .ok_or_else(invalid)?;
            pos += 1;
        }
        let has_int = pos > int_start;
        // Fraction part: Go keeps the digits that fit and scales in f64.
        let mut frac: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut has_frac = false;
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            let mut overflow = false;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                if !overflow {
                    match frac
                        .checked_mul(10)
                        .map(|f| f + u64::from(bytes[pos] - b'0'))
                    {
                        Some(f) if frac <= (LIMIT - 1) / 10 && f <= LIMIT => {
                            frac = f;
                            scale *= 10.0;
                        }
                        _ => overflow = true,
                    }
                }
                pos += 1;
            }
            has_frac = pos > frac_start;
        }
        if !has_int && !has_frac {
            return Err(invalid());
        }
        // Unit: everything up to the next digit or '.'.
        let unit_start = pos;
        while pos < bytes.len() && !(bytes[pos] == b'.' || bytes[pos].is_ascii_digit()) {
            pos += 1;
        }
        if pos == unit_start {
            return Err("missing unit (ns, us, ms, s, m or h)".to_owned());
        }
        // The unit is delimited by ASCII bytes, so these are char boundaries.
        let unit = text.get(unit_start..pos).unwrap_or_default();
        let Some(&(_, scale_ns)) = UNITS.iter().find(|(name, _)| *name == unit) else {
            return Err(format!("unknown unit {unit:?} (ns, us, ms, s, m or h)"));
        };
        if whole > LIMIT / scale_ns {
            return Err(invalid());
        }
        let mut value = whole * scale_ns;
        if frac > 0 {
            // Same float arithmetic as Go so that rounding agrees.
            value += (frac as f64 * (scale_ns as f64 / scale)) as u64;
            if value > LIMIT {
                return Err(invalid());
            }
        }
        total = total
            .checked_add(value)
            .filter(|&t| t <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if negative {
        // total <= 2^63, so the negation fits.
        return Ok((total as i128).wrapping_neg() as i64);
    }
    i64::try_from(total).map_err(|_| invalid())
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration;

    const S: i64 = 1_000_000_000;

    #[test]
    fn accepts_go_grammar() {
        let cases: &[(&str, i64)] = &[
            ("0", 0),
            ("+0", 0),
            ("-0", 0),
            ("0s", 0),
            ("1h30m", 90 * 60 * S),
            ("1.5h", 90 * 60 * S),
            (".5s", S / 2),
            ("1.s", S),
            ("90s", 90 * S),
            ("1m1s", 61 * S),
            ("300ms", 300_000_000),
            ("2us", 2_000),
            ("2\u{b5}s", 2_000),
            ("2\u{3bc}s", 2_000),
            ("7ns", 7),
            ("-1h", -3600 * S),
            ("1h1h", 7200 * S),
            ("2562047h", 2_562_047 * 3600 * S),
        ];
        for &(text, nanos) in cases {
            assert_eq!(parse_go_duration(text), Ok(nanos), "{text}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in [
            "", "+", "-", "00", "1", "h", ".", ".s", "1x", "1h 30m", " 1h", "1h ", "1H",
            "3000000h", "1..5s", "1e3s",
        ] {
            assert!(parse_go_duration(text).is_err(), "{text:?} should fail");
        }
        assert_eq!(
            parse_go_duration("1x").unwrap_err(),
            "unknown unit \"x\" (ns, us, ms, s, m or h)"
        );
        assert_eq!(
            parse_go_duration("5").unwrap_err(),
            "missing unit (ns, us, ms, s, m or h)"
        );
    }
}
