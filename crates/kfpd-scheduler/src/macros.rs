//! Run macros in the parameters of fired runs, as upstream's ScheduledWorkflow
//! controller substitutes them.
//!
//! In a parameter value, `[[ScheduledTime]]` and `[[CurrentTime]]` become the
//! tick and the firing time as `YYYYMMDDhhmmss` (UTC), `[[Index]]` the run's
//! index (1 for the first fired run), `[[RunUUID]]` the run's id;
//! `[[ScheduledTime.<layout>]]` and `[[CurrentTime.<layout>]]` format with a
//! Go time layout (`2006-01-02`), and `{{$.scheduledTime.strftime('<fmt>')}}`
//! and `{{$.currentTime.strftime('<fmt>')}}` with strftime directives. Any
//! other `[[…]]` or `{{$.…}}` (such as the pipeline placeholders the engine
//! resolves itself) is left as it is, as is a format kfpd cannot read.

use chrono::{DateTime, Utc};

/// What the macros of one fired run stand for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Macros {
    pub run_id: String,
    /// The tick (Unix seconds).
    pub scheduled_at: i64,
    /// When the run is created (Unix seconds).
    pub now: i64,
    /// 1 for the first run the recurring run fires.
    pub index: i64,
}

const DEFAULT_LAYOUT: &str = "20060102150405";

impl Macros {
    /// `text` with every macro replaced.
    pub fn substitute(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some((before, found, after)) = next_macro(rest) {
            out.push_str(before);
            out.push_str(&self.expand(found).unwrap_or_else(|| found.to_string()));
            rest = after;
        }
        out.push_str(rest);
        out
    }

    fn expand(&self, found: &str) -> Option<String> {
        let scheduled = DateTime::from_timestamp(self.scheduled_at, 0)?;
        let now = DateTime::from_timestamp(self.now, 0)?;
        if found.starts_with("[[RunUUID]]") {
            return Some(self.run_id.clone());
        }
        if found.starts_with("[[ScheduledTime]]") {
            return Some(go_format(scheduled, DEFAULT_LAYOUT));
        }
        if found.starts_with("[[CurrentTime]]") {
            return Some(go_format(now, DEFAULT_LAYOUT));
        }
        if found.starts_with("[[Index]]") {
            return Some(self.index.to_string());
        }
        if let Some(layout) = inner(found, "[[ScheduledTime.", "]]") {
            return Some(go_format(scheduled, layout));
        }
        if let Some(layout) = inner(found, "[[CurrentTime.", "]]") {
            return Some(go_format(now, layout));
        }
        if let Some(format) = inner(found, "{{$.scheduledTime.strftime('", "')}}") {
            return strftime(scheduled, format);
        }
        if let Some(format) = inner(found, "{{$.currentTime.strftime('", "')}}") {
            return strftime(now, format);
        }
        None
    }
}

fn inner<'a>(found: &'a str, prefix: &str, suffix: &str) -> Option<&'a str> {
    found.strip_prefix(prefix)?.strip_suffix(suffix)
}

/// The first `[[…]]` or `{{$.…}}` in `text` (shortest, on one line), as
/// (text before it, the macro, text after it).
fn next_macro(text: &str) -> Option<(&str, &str, &str)> {
    let mut search_from = 0;
    while search_from < text.len() {
        let rest = &text[search_from..];
        let square = rest.find("[[");
        let curly = rest.find("{{$.");
        let (offset, open_len, close) = match (square, curly) {
            (Some(s), Some(c)) if c < s => (c, 4, "}}"),
            (Some(s), _) => (s, 2, "]]"),
            (None, Some(c)) => (c, 4, "}}"),
            (None, None) => return None,
        };
        let start = search_from + offset;
        let body = &text[start + open_len..];
        let line_end = body.find('\n').unwrap_or(body.len());
        if let Some(end) = body[..line_end].find(close) {
            let stop = start + open_len + end + close.len();
            return Some((&text[..start], &text[start..stop], &text[stop..]));
        }
        search_from = start + 1;
    }
    None
}

/// Formats with a Go reference-time layout (`Mon Jan 2 15:04:05 MST 2006`).
/// Times are UTC and whole seconds.
fn go_format(time: DateTime<Utc>, layout: &str) -> String {
    let mut out = String::new();
    let mut rest = layout;
    while !rest.is_empty() {
        let (piece, used) = go_chunk(time, rest);
        out.push_str(&piece);
        rest = &rest[used..];
    }
    out
}

/// The expansion of the layout element at the start of `layout` and its length.
fn go_chunk(time: DateTime<Utc>, layout: &str) -> (String, usize) {
    // Longest elements first where one is a prefix of another.
    const ELEMENTS: &[(&str, &str)] = &[
        ("January", "%B"),
        ("Jan", "%b"),
        ("Monday", "%A"),
        ("Mon", "%a"),
        ("MST", "UTC"),
        ("2006", "%Y"),
        ("_2006", "_%Y"),
        ("002", "%j"),
        ("__2", "%_j"),
        ("_2", "%e"),
        ("01", "%m"),
        ("02", "%d"),
        ("03", "%I"),
        ("04", "%M"),
        ("05", "%S"),
        ("06", "%y"),
        ("15", "%H"),
        ("PM", "%p"),
        ("pm", "%P"),
        ("-07:00:00", "+00:00:00"),
        ("-070000", "+000000"),
        ("-07:00", "+00:00"),
        ("-0700", "+0000"),
        ("-07", "+00"),
        ("Z07:00:00", "Z"),
        ("Z070000", "Z"),
        ("Z07:00", "Z"),
        ("Z0700", "Z"),
        ("Z07", "Z"),
    ];
    for (element, format) in ELEMENTS {
        if layout.starts_with(element) {
            let expanded = if format.contains('%') {
                time.format(format).to_string()
            } else {
                (*format).to_string()
            };
            return (expanded, element.len());
        }
    }
    // Unpadded numbers: month `1`, day `2`, 12-hour `3`, minute `4`, second `5`.
    let unpadded = match layout.as_bytes()[0] {
        b'1' => Some("%-m"),
        b'2' => Some("%-d"),
        b'3' => Some("%-I"),
        b'4' => Some("%-M"),
        b'5' => Some("%-S"),
        _ => None,
    };
    if let Some(format) = unpadded {
        return (time.format(format).to_string(), 1);
    }
    // Fractional seconds `.000` (kept, always zero) or `.999` (dropped when zero).
    let bytes = layout.as_bytes();
    if matches!(bytes[0], b'.' | b',') && bytes.len() > 1 && matches!(bytes[1], b'0' | b'9') {
        let digit = bytes[1];
        let run = bytes[1..].iter().take_while(|b| **b == digit).count();
        let followed_by_digit = bytes.get(1 + run).is_some_and(u8::is_ascii_digit);
        if !followed_by_digit {
            let text = if digit == b'0' {
                format!("{}{}", bytes[0] as char, "0".repeat(run))
            } else {
                String::new()
            };
            return (text, 1 + run);
        }
    }
    let ch = layout.chars().next().map_or(1, char::len_utf8);
    (layout[..ch].to_string(), ch)
}

/// Formats with strftime directives; `None` (leave the macro) for a directive
/// kfpd does not know.
fn strftime(time: DateTime<Utc>, format: &str) -> Option<String> {
    const KNOWN: &str = "AaBbCDdeFHIjklMmnpRrSsTtUuVWwYyZz%";
    let mut chars = format.chars();
    while let Some(ch) = chars.next() {
        if ch == '%'
            && !chars
                .next()
                .is_some_and(|directive| KNOWN.contains(directive))
        {
            return None;
        }
    }
    Some(time.format(format).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn macros(scheduled_at: i64, now: i64, index: i64) -> Macros {
        Macros {
            run_id: "0b7c2a52-0000-5000-8000-000000000000".into(),
            scheduled_at,
            now,
            index,
        }
    }

    #[test]
    fn upstream_formatter_cases() {
        let m = macros(25, 26, 27);
        assert_eq!(
            m.substitute("FOO [[ScheduledTime]] FOO"),
            "FOO 19700101000025 FOO"
        );
        assert_eq!(
            m.substitute("FOO [[CurrentTime]] FOO"),
            "FOO 19700101000026 FOO"
        );
        assert_eq!(m.substitute("FOO [[Index]] FOO"), "FOO 27 FOO");
        assert_eq!(
            m.substitute("FOO [[ScheduledTime.15-04-05]] FOO"),
            "FOO 00-00-25 FOO"
        );
        assert_eq!(
            m.substitute("FOO [[CurrentTime.15-04-05]] FOO"),
            "FOO 00-00-26 FOO"
        );
        assert_eq!(
            m.substitute("[[ScheduledTime]] [[ScheduledTime]] [[Index]]"),
            "19700101000025 19700101000025 27"
        );
        assert_eq!(m.substitute("FOO FOO FOO"), "FOO FOO FOO");
        assert_eq!(m.substitute(""), "");
    }

    #[test]
    fn run_uuid_and_strftime() {
        let m = macros(1_718_000_000, 1_718_000_003, 2);
        assert_eq!(
            m.substitute("id=[[RunUUID]]"),
            "id=0b7c2a52-0000-5000-8000-000000000000"
        );
        assert_eq!(
            m.substitute("{{$.scheduledTime.strftime('%Y-%m-%d %H:%M:%S')}}"),
            "2024-06-10 06:13:20"
        );
        assert_eq!(
            m.substitute("t={{$.currentTime.strftime('%s')}}"),
            "t=1718000003"
        );
        // Unknown directives and other placeholders stay.
        assert_eq!(
            m.substitute("{{$.scheduledTime.strftime('%Q')}}"),
            "{{$.scheduledTime.strftime('%Q')}}"
        );
        assert_eq!(
            m.substitute("{{$.pipeline_job_name}} [[Unknown]]"),
            "{{$.pipeline_job_name}} [[Unknown]]"
        );
    }

    #[test]
    fn go_layouts() {
        // Sunday 2024-03-03 07:08:09 UTC, day 63 of the year.
        let time = DateTime::from_timestamp(1_709_449_689, 0).unwrap();
        let cases = [
            ("2006-01-02T15:04:05Z07:00", "2024-03-03T07:08:09Z"),
            (
                "Mon Jan _2 15:04:05 MST 2006",
                "Sun Mar  3 07:08:09 UTC 2024",
            ),
            ("Monday, 2 January 06", "Sunday, 3 March 24"),
            ("3:4:5 PM", "7:8:9 AM"),
            ("002 __2", "063  63"),
            ("15:04:05.000 -0700", "07:08:09.000 +0000"),
            ("15:04:05.999", "07:08:09"),
            ("1/2", "3/3"),
            ("date: 2006", "date: 2024"),
        ];
        for (layout, expected) in cases {
            assert_eq!(go_format(time, layout), expected, "{layout}");
        }
    }

    #[test]
    fn unclosed_and_multiline_macros_are_left() {
        let m = macros(25, 26, 27);
        assert_eq!(m.substitute("[[Index"), "[[Index");
        assert_eq!(m.substitute("[[Ind\nex]] [[Index]]"), "[[Ind\nex]] 27");
        assert_eq!(m.substitute("[[[Index]]"), "[[[Index]]");
    }
}
