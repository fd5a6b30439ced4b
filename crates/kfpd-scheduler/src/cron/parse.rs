//! Parsing of cron expressions (see the module docs of `cron` for the dialect).

use chrono::DateTime;

use super::duration::parse_go_duration;
use super::{Calendar, Kind, Schedule};
use crate::error::{CronProblem, Error, Field};

const MONTH_NAMES: [(&str, u32); 12] = [
    ("jan", 1),
    ("feb", 2),
    ("mar", 3),
    ("apr", 4),
    ("may", 5),
    ("jun", 6),
    ("jul", 7),
    ("aug", 8),
    ("sep", 9),
    ("oct", 10),
    ("nov", 11),
    ("dec", 12),
];

const WEEKDAY_NAMES: [(&str, u32); 7] = [
    ("sun", 0),
    ("mon", 1),
    ("tue", 2),
    ("wed", 3),
    ("thu", 4),
    ("fri", 5),
    ("sat", 6),
];

/// Parses `spec` exactly as robfig/cron v1 `cron.Parse` does: anything it
/// accepts is accepted here with the same meaning, anything it rejects is
/// rejected. Use it for triggers stored by upstream KFP.
pub fn parse(spec: &str) -> Result<Schedule, Error> {
    parse_compat(spec).map_err(|problem| Error::cron(spec, problem))
}

/// Parses `spec` for a new trigger: [`parse`] plus three refusals that catch
/// expressions which robfig accepts but which almost surely do not mean what
/// their author intended:
///
/// * five fields: robfig reads them as `sec min hour dom month`, while a user
///   of standard cron means `min hour dom month dow`; the error carries the
///   six-field expression they most likely meant (see [`five_field_hint`]);
/// * a schedule that no calendar date satisfies (such as `0 0 0 30 2 *`);
///   upstream's controller would misbehave on it;
/// * `@every` below one second, which robfig silently turns into one second.
pub fn parse_strict(spec: &str) -> Result<Schedule, Error> {
    let err = |problem| Error::cron(spec, problem);
    if !spec.starts_with('@') && spec.split_whitespace().count() == 5 {
        return Err(err(CronProblem::FiveFields {
            hint: five_field_hint(spec),
        }));
    }
    let schedule = parse(spec)?;
    match &schedule.kind {
        Kind::Every { .. } => {
            if let Some(value) = spec.strip_prefix(EVERY) {
                // The delay is clamped to >= 1s, so look at the raw duration.
                if parse_go_duration(value).is_ok_and(|nanos| nanos < NANOS_PER_SECOND) {
                    return Err(err(CronProblem::SubSecondInterval {
                        value: value.to_owned(),
                    }));
                }
            }
        }
        Kind::Calendar(_) => {
            // 400 years cover every calendar configuration, so a schedule
            // without a fire time after this instant has none at all.
            let reference = DateTime::from_timestamp(946_684_799, 0); // 1999-12-31T23:59:59Z
            if reference.and_then(|r| schedule.next(r)).is_none() {
                return Err(err(CronProblem::NeverFires));
            }
        }
    }
    Ok(schedule)
}

/// For a five-field expression, the six-field expression that a user of
/// standard cron (`min hour dom month dow`) most likely meant: the same
/// fields after a leading `0` seconds field, e.g. `"*/5 * * * *"` gives
/// `"0 */5 * * * *"`. `None` when `spec` does not have exactly five fields or
/// the suggestion would not parse (standard cron's Sunday = 7 is not valid
/// here, for instance).
pub fn five_field_hint(spec: &str) -> Option<String> {
    if spec.starts_with('@') {
        return None;
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return None;
    }
    let hint = format!("0 {}", fields.join(" "));
    parse(&hint).ok().map(|_| hint)
}

const EVERY: &str = "@every ";
const NANOS_PER_SECOND: i64 = 1_000_000_000;

fn parse_compat(spec: &str) -> Result<Schedule, CronProblem> {
    if spec.is_empty() {
        return Err(CronProblem::Empty);
    }
    // Like robfig: only a spec whose very first byte is '@' is a descriptor,
    // and descriptors are matched exactly (case and spacing matter).
    if spec.starts_with('@') {
        return parse_descriptor(spec);
    }
    let mut fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 && fields.len() != 6 {
        return Err(CronProblem::FieldCount {
            found: fields.len(),
        });
    }
    if fields.len() == 5 {
        fields.push("*");
    }
    let mut bits = [0u64; 6];
    let mut stars = [false; 6];
    for (i, (&text, field)) in fields.iter().zip(Field::ALL).enumerate() {
        (bits[i], stars[i]) = parse_field(text, field)?;
    }
    Ok(Schedule {
        kind: Kind::Calendar(Calendar {
            second: bits[0],
            minute: bits[1],
            hour: bits[2],
            dom: bits[3],
            month: bits[4],
            dow: bits[5],
            dom_star: stars[3],
            dow_star: stars[5],
        }),
    })
}

fn parse_descriptor(spec: &str) -> Result<Schedule, CronProblem> {
    // Each calendar descriptor is exactly this expression in robfig, down to
    // which day fields count as starred.
    let equivalent = match spec {
        "@yearly" | "@annually" => "0 0 0 1 1 *",
        "@monthly" => "0 0 0 1 * *",
        "@weekly" => "0 0 0 * * 0",
        "@daily" | "@midnight" => "0 0 0 * * *",
        "@hourly" => "0 0 * * * *",
        _ => {
            let Some(value) = spec.strip_prefix(EVERY) else {
                return Err(CronProblem::UnknownDescriptor(spec.to_owned()));
            };
            let nanos =
                parse_go_duration(value).map_err(|reason| CronProblem::InvalidDuration {
                    value: value.to_owned(),
                    reason,
                })?;
            // robfig: anything below one second becomes one second, and the
            // delay is truncated to whole seconds.
            let seconds = (nanos / NANOS_PER_SECOND).max(1);
            return Ok(Schedule {
                kind: Kind::Every { seconds },
            });
        }
    };
    parse_compat(equivalent)
}

/// A field is a comma-separated list of terms. Empty terms are skipped, as in
/// robfig, so `1,,2` is `1,2` and `,` matches nothing.
fn parse_field(text: &str, field: Field) -> Result<(u64, bool), CronProblem> {
    let mut bits = 0;
    let mut star = false;
    for term in text.split(',').filter(|t| !t.is_empty()) {
        let (term_bits, term_star) = parse_term(term, field)?;
        bits |= term_bits;
        star |= term_star;
    }
    Ok((bits, star))
}

/// One term: `*`, `?`, `N` or `N-M`, optionally followed by `/step`.
fn parse_term(term: &str, field: Field) -> Result<(u64, bool), CronProblem> {
    let (min, max) = field.bounds();
    let mut slash_parts = term.split('/');
    let range = slash_parts.next().unwrap_or_default();
    let step_text = slash_parts.next();
    let extra_slash = slash_parts.next().is_some();

    let mut bounds = range.split('-');
    let low = bounds.next().unwrap_or_default();
    let high = bounds.next();
    let single = high.is_none();

    // robfig only looks at the text before the first '-' when it is a star,
    // so `*-5` is accepted and means `*`.
    let star = low == "*" || low == "?";
    let (start, mut end) = if star {
        (u64::from(min), u64::from(max))
    } else {
        let start = parse_value(low, field)?;
        match high {
            None => (start, start),
            Some(high) => {
                if bounds.next().is_some() {
                    return Err(CronProblem::TooManyHyphens {
                        field,
                        expr: term.to_owned(),
                    });
                }
                (start, parse_value(high, field)?)
            }
        }
    };

    if extra_slash {
        return Err(CronProblem::TooManySlashes {
            field,
            expr: term.to_owned(),
        });
    }
    let step = match step_text {
        None => 1,
        Some(text) => {
            let step = parse_number(text).ok_or_else(|| CronProblem::BadStep {
                field,
                expr: term.to_owned(),
                value: text.to_owned(),
            })?;
            if single {
                end = u64::from(max);
            }
            step
        }
    };

    let out_of_range = |value: u64| value < u64::from(min) || value > u64::from(max);
    for value in [start, end] {
        if out_of_range(value) {
            return Err(CronProblem::OutOfRange {
                field,
                value,
                min,
                max,
            });
        }
    }
    if start > end {
        return Err(CronProblem::ReversedRange { field, start, end });
    }
    if step == 0 {
        return Err(CronProblem::ZeroStep {
            field,
            expr: term.to_owned(),
        });
    }
    // Both ends are within the field's bounds (at most 59) here, and a step
    // beyond u32 selects only `start` just like u32::MAX does.
    let step = u32::try_from(step).unwrap_or(u32::MAX);
    Ok((range_bits(start as u32, end as u32, step), star))
}

/// A month or weekday name (in those fields), else a decimal number.
fn parse_value(text: &str, field: Field) -> Result<u64, CronProblem> {
    let names: &[(&str, u32)] = match field {
        Field::Month => &MONTH_NAMES,
        Field::DayOfWeek => &WEEKDAY_NAMES,
        _ => &[],
    };
    if !names.is_empty() {
        let lower = text.to_lowercase();
        if let Some(&(_, value)) = names.iter().find(|(name, _)| *name == lower) {
            return Ok(u64::from(value));
        }
    }
    parse_number(text).ok_or_else(|| CronProblem::NotANumber {
        field,
        value: text.to_owned(),
    })
}

/// A non-negative decimal as Go's `strconv.Atoi` reads it: an optional `+`
/// and at least one ASCII digit, within `i64`. (`-` never reaches here: it
/// separates range bounds.)
fn parse_number(text: &str) -> Option<u64> {
    let digits = text.strip_prefix('+').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits
        .parse::<i64>()
        .ok()
        .and_then(|v| u64::try_from(v).ok())
}

/// Bits `start..=end` stepping by `step` (requires `end <= 63`, `step >= 1`).
fn range_bits(start: u32, end: u32, step: u32) -> u64 {
    (start..=end)
        .step_by(step as usize)
        .fold(0, |bits, v| bits | 1 << v)
}
