use chrono::{DateTime, Datelike, NaiveDate, Utc};

use super::{five_field_hint, parse, parse_strict, Calendar, Kind, Schedule};
use crate::error::{CronProblem, Error, Field};

fn t(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|date| date.and_hms_opt(h, mi, s))
        .expect("valid test time")
        .and_utc()
}

fn sched(spec: &str) -> Schedule {
    parse(spec).unwrap_or_else(|e| panic!("{spec:?} should parse: {e}"))
}

fn next(spec: &str, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    sched(spec).next(after)
}

fn problem(spec: &str) -> CronProblem {
    match parse(spec) {
        Ok(s) => panic!("{spec:?} should not parse, got {s:?}"),
        Err(e) => e.cron_problem().cloned().expect("a cron error"),
    }
}

fn message(spec: &str) -> String {
    parse(spec).expect_err("should fail").to_string()
}

#[test]
fn every_minute_with_question_mark() {
    let s = sched("0 * * * * ?");
    assert_eq!(
        s.next(t(1970, 1, 1, 10, 0, 0)),
        Some(t(1970, 1, 1, 10, 1, 0))
    );
    assert_eq!(
        s.next(t(1970, 1, 1, 10, 0, 30)),
        Some(t(1970, 1, 1, 10, 1, 0))
    );
    assert_eq!(
        s.next(t(1970, 1, 1, 10, 0, 59)),
        Some(t(1970, 1, 1, 10, 1, 0))
    );
    // Strictly after, and sub-second parts are dropped first.
    let almost = t(1970, 1, 1, 10, 0, 59) + chrono::Duration::milliseconds(999);
    assert_eq!(s.next(almost), Some(t(1970, 1, 1, 10, 1, 0)));
    // The trailing space of upstream's test spec does not matter.
    assert_eq!(sched("0 * * * * * "), s);
}

/// Upstream robfig v1 `TestActivation`: does the schedule fire at `time`?
#[test]
fn activation_table() {
    let cases: &[(DateTime<Utc>, &str, bool)] = &[
        // Quarter hours (five fields: seconds first, no weekday).
        (t(2012, 7, 9, 15, 0, 0), "0 0/15 * * *", true),
        (t(2012, 7, 9, 15, 45, 0), "0 0/15 * * *", true),
        (t(2012, 7, 9, 15, 40, 0), "0 0/15 * * *", false),
        // Quarter hours offset by five minutes.
        (t(2012, 7, 9, 15, 5, 0), "0 5/15 * * *", true),
        (t(2012, 7, 9, 15, 20, 0), "0 5/15 * * *", true),
        (t(2012, 7, 9, 15, 50, 0), "0 5/15 * * *", true),
        // A month by name.
        (t(2012, 7, 15, 15, 0, 0), "0 0/15 * * Jul", true),
        (t(2012, 7, 15, 15, 0, 0), "0 0/15 * * Jun", false),
        // All six fields given.
        (t(2012, 7, 15, 8, 30, 0), "0 30 08 ? Jul Sun", true),
        (t(2012, 7, 15, 8, 30, 0), "0 30 08 15 Jul ?", true),
        (t(2012, 7, 16, 8, 30, 0), "0 30 08 ? Jul Sun", false),
        (t(2012, 7, 16, 8, 30, 0), "0 30 08 15 Jul ?", false),
        // Descriptors.
        (t(2012, 7, 9, 15, 0, 0), "@hourly", true),
        (t(2012, 7, 9, 15, 4, 0), "@hourly", false),
        (t(2012, 7, 9, 15, 0, 0), "@daily", false),
        (t(2012, 7, 9, 0, 0, 0), "@daily", true),
        (t(2012, 7, 9, 0, 0, 0), "@weekly", false),
        (t(2012, 7, 8, 0, 0, 0), "@weekly", true),
        (t(2012, 7, 8, 1, 0, 0), "@weekly", false),
        (t(2012, 7, 8, 0, 0, 0), "@monthly", false),
        (t(2012, 7, 1, 0, 0, 0), "@monthly", true),
        // Both day fields restricted: either may match.
        (t(2012, 7, 15, 0, 0, 0), "0 * * 1,15 * Sun", true),
        (t(2012, 6, 15, 0, 0, 0), "0 * * 1,15 * Sun", true),
        (t(2012, 8, 1, 0, 0, 0), "0 * * 1,15 * Sun", true),
        // A star in either (even a stepped `*/n`): both must match.
        (t(2012, 7, 15, 0, 0, 0), "0 * * * * Mon", false),
        (t(2012, 7, 15, 0, 0, 0), "0 * * */10 * Sun", false),
        (t(2012, 7, 9, 0, 0, 0), "0 * * 1,15 * *", false),
        (t(2012, 7, 15, 0, 0, 0), "0 * * 1,15 * *", true),
        (t(2012, 7, 15, 0, 0, 0), "0 * * */2 * Sun", true),
    ];
    for &(time, spec, fires) in cases {
        let fired = next(spec, time - chrono::Duration::seconds(1)) == Some(time);
        assert_eq!(fired, fires, "{spec:?} at {time}");
    }
}

/// Upstream robfig v1 `TestNext` (the time-zone cases do not apply to UTC).
#[test]
fn next_table() {
    type Case = (DateTime<Utc>, &'static str, Option<DateTime<Utc>>);
    let cases: &[Case] = &[
        (
            t(2012, 7, 9, 14, 45, 0),
            "0 0/15 * * *",
            Some(t(2012, 7, 9, 15, 0, 0)),
        ),
        (
            t(2012, 7, 9, 14, 59, 0),
            "0 0/15 * * *",
            Some(t(2012, 7, 9, 15, 0, 0)),
        ),
        (
            t(2012, 7, 9, 14, 59, 59),
            "0 0/15 * * *",
            Some(t(2012, 7, 9, 15, 0, 0)),
        ),
        // Carry into the next hour.
        (
            t(2012, 7, 9, 15, 45, 0),
            "0 20-35/15 * * *",
            Some(t(2012, 7, 9, 16, 20, 0)),
        ),
        // Carry into the next day.
        (
            t(2012, 7, 9, 23, 46, 0),
            "0 */15 * * *",
            Some(t(2012, 7, 10, 0, 0, 0)),
        ),
        (
            t(2012, 7, 9, 23, 45, 0),
            "0 20-35/15 * * *",
            Some(t(2012, 7, 10, 0, 20, 0)),
        ),
        (
            t(2012, 7, 9, 23, 35, 51),
            "15/35 20-35/15 * * *",
            Some(t(2012, 7, 10, 0, 20, 15)),
        ),
        (
            t(2012, 7, 9, 23, 35, 51),
            "15/35 20-35/15 1/2 * *",
            Some(t(2012, 7, 10, 1, 20, 15)),
        ),
        (
            t(2012, 7, 9, 23, 35, 51),
            "15/35 20-35/15 10-12 * *",
            Some(t(2012, 7, 10, 10, 20, 15)),
        ),
        (
            t(2012, 7, 9, 23, 35, 51),
            "15/35 20-35/15 1/2 */2 * *",
            Some(t(2012, 7, 11, 1, 20, 15)),
        ),
        (
            t(2012, 7, 9, 23, 35, 51),
            "15/35 20-35/15 * 9-20 * *",
            Some(t(2012, 7, 10, 0, 20, 15)),
        ),
        (
            t(2012, 7, 9, 23, 35, 51),
            "15/35 20-35/15 * 9-20 Jul *",
            Some(t(2012, 7, 10, 0, 20, 15)),
        ),
        // Carry into a later month.
        (
            t(2012, 7, 9, 23, 35, 0),
            "0 0 0 9 Apr-Oct ?",
            Some(t(2012, 8, 9, 0, 0, 0)),
        ),
        (
            t(2012, 7, 9, 23, 35, 0),
            "0 0 0 */5 Apr,Aug,Oct Mon",
            Some(t(2012, 8, 6, 0, 0, 0)),
        ),
        (
            t(2012, 7, 9, 23, 35, 0),
            "0 0 0 */5 Oct Mon",
            Some(t(2012, 10, 1, 0, 0, 0)),
        ),
        // Carry into the next year.
        (
            t(2012, 7, 9, 23, 35, 0),
            "0 0 0 * Feb Mon",
            Some(t(2013, 2, 4, 0, 0, 0)),
        ),
        (
            t(2012, 7, 9, 23, 35, 0),
            "0 0 0 * Feb Mon/2",
            Some(t(2013, 2, 1, 0, 0, 0)),
        ),
        // Every unit carries at once.
        (
            t(2012, 12, 31, 23, 59, 45),
            "0 * * * * *",
            Some(t(2013, 1, 1, 0, 0, 0)),
        ),
        // Only leap years have a 29 February.
        (
            t(2012, 7, 9, 23, 35, 0),
            "0 0 0 29 Feb ?",
            Some(t(2016, 2, 29, 0, 0, 0)),
        ),
        // Dates that do not exist.
        (t(2012, 7, 9, 23, 35, 0), "0 0 0 30 Feb ?", None),
        (t(2012, 7, 9, 23, 35, 0), "0 0 0 31 Apr ?", None),
    ];
    for &(after, spec, expected) in cases {
        assert_eq!(next(spec, after), expected, "{spec:?} after {after}");
    }
}

#[test]
fn descriptors() {
    let from = t(2012, 7, 9, 14, 45, 10); // a Monday
    let cases = [
        ("@yearly", t(2013, 1, 1, 0, 0, 0)),
        ("@annually", t(2013, 1, 1, 0, 0, 0)),
        ("@monthly", t(2012, 8, 1, 0, 0, 0)),
        ("@weekly", t(2012, 7, 15, 0, 0, 0)),
        ("@daily", t(2012, 7, 10, 0, 0, 0)),
        ("@midnight", t(2012, 7, 10, 0, 0, 0)),
        ("@hourly", t(2012, 7, 9, 15, 0, 0)),
    ];
    for (spec, expected) in cases {
        assert_eq!(next(spec, from), Some(expected), "{spec}");
    }
    assert_eq!(sched("@yearly"), sched("0 0 0 1 jan ?"));
    assert_eq!(sched("@weekly"), sched("0 0 0 ? * sun"));
    assert_eq!(sched("@hourly"), sched("0 0 * * * *"));
    // Descriptors are exact: no other case, no surrounding space.
    assert_eq!(
        problem("@Daily"),
        CronProblem::UnknownDescriptor("@Daily".into())
    );
    assert_eq!(
        problem("@daily "),
        CronProblem::UnknownDescriptor("@daily ".into())
    );
    assert_eq!(problem(" @daily"), CronProblem::FieldCount { found: 1 });
    assert_eq!(
        message("@fortnightly"),
        "cron \"@fortnightly\": unknown descriptor \"@fortnightly\" (known: @yearly, \
         @annually, @monthly, @weekly, @daily, @midnight, @hourly, @every <duration>)"
    );
}

#[test]
fn every_durations() {
    let s = sched("@every 1h30m");
    assert_eq!(s.every_seconds(), Some(5400));
    let from = t(2024, 5, 1, 10, 0, 0);
    assert_eq!(s.next(from), Some(t(2024, 5, 1, 11, 30, 0)));
    // Counted from the given time, not aligned to the calendar; sub-second
    // parts of that time are dropped.
    let odd = t(2024, 5, 1, 10, 7, 3) + chrono::Duration::milliseconds(600);
    assert_eq!(s.next(odd), Some(t(2024, 5, 1, 11, 37, 3)));

    // robfig: below one second becomes one second, fractions are truncated.
    for (spec, seconds) in [
        ("@every 1s", 1),
        ("@every 1.5s", 1),
        ("@every 2999ms", 2),
        ("@every 500ms", 1),
        ("@every 0", 1),
        ("@every 0s", 1),
        ("@every -1h", 1),
        ("@every 1.5h", 5400),
        ("@every 2h45m10s", 9910),
    ] {
        assert_eq!(sched(spec).every_seconds(), Some(seconds), "{spec}");
    }
    assert_eq!(sched("0 * * * * *").every_seconds(), None);

    assert!(matches!(
        problem("@every 1h 30m"),
        CronProblem::InvalidDuration { .. }
    ));
    assert!(matches!(
        problem("@every  1h"),
        CronProblem::InvalidDuration { .. }
    ));
    assert_eq!(
        problem("@every"),
        CronProblem::UnknownDescriptor("@every".into())
    );
    assert_eq!(
        message("@every 5x"),
        "cron \"@every 5x\": @every: invalid duration \"5x\": unknown unit \"x\" \
         (ns, us, ms, s, m or h)"
    );
}

#[test]
fn names_are_case_insensitive() {
    let a = sched("0 0 0 * JAN-mar MoN-fRi");
    assert_eq!(a, sched("0 0 0 * 1-3 1-5"));
    assert_eq!(sched("0 0 0 * dec sun"), sched("0 0 0 * 12 0"));
    assert_eq!(sched("0 0 12 * Jan,Jul sat"), sched("0 0 12 * 1,7 6"));
    // Names only in their own fields.
    assert_eq!(
        problem("0 0 0 mon * *"),
        CronProblem::NotANumber {
            field: Field::DayOfMonth,
            value: "mon".into()
        }
    );
    // Only the three-letter forms.
    assert!(matches!(
        problem("0 0 0 * January *"),
        CronProblem::NotANumber {
            field: Field::Month,
            ..
        }
    ));
    // 2024-01-06 is a Saturday; the next weekday in Jan-Mar is Monday the 8th.
    assert_eq!(a.next(t(2024, 1, 6, 0, 0, 0)), Some(t(2024, 1, 8, 0, 0, 0)));
}

#[test]
fn day_of_month_and_day_of_week() {
    // Both restricted: the 13th or a Friday (OR).
    let s = sched("0 0 0 13 * fri");
    // 2024-09-01 is a Sunday: Friday the 6th comes before the 13th.
    assert_eq!(s.next(t(2024, 9, 1, 0, 0, 0)), Some(t(2024, 9, 6, 0, 0, 0)));
    assert_eq!(
        s.next(t(2024, 9, 12, 0, 0, 0)),
        Some(t(2024, 9, 13, 0, 0, 0))
    );
    // The 13th is itself a Friday in September 2024; next is Friday the 20th.
    assert_eq!(
        s.next(t(2024, 9, 13, 0, 0, 0)),
        Some(t(2024, 9, 20, 0, 0, 0))
    );

    // `?` or `*` in one of them: the other alone decides (AND with all).
    assert_eq!(
        sched("0 0 0 ? * fri").next(t(2024, 9, 1, 0, 0, 0)),
        Some(t(2024, 9, 6, 0, 0, 0))
    );
    assert_eq!(
        sched("0 0 0 13 * ?").next(t(2024, 9, 1, 0, 0, 0)),
        Some(t(2024, 9, 13, 0, 0, 0))
    );

    // robfig v1 quirk: `*/2` still counts as a star, so this is AND:
    // an odd day of the month that is also a Friday.
    let quirk = sched("0 0 0 */2 * fri");
    assert_eq!(
        quirk.next(t(2024, 9, 1, 0, 0, 0)),
        Some(t(2024, 9, 13, 0, 0, 0))
    );
    // ...whereas a plain list is restricted, so this is OR.
    assert_eq!(
        sched("0 0 0 1-31/2 * fri").next(t(2024, 9, 1, 0, 0, 0)),
        Some(t(2024, 9, 3, 0, 0, 0))
    );
}

#[test]
fn robfig_quirks_are_kept() {
    // `?` is accepted in every field, meaning `*`.
    assert_eq!(sched("? ? ? ? ? ?"), sched("* * * * * *"));
    // Text after `*-` is ignored.
    assert_eq!(sched("0 *-5 * * * *"), sched("0 * * * * *"));
    // Empty list items are skipped.
    assert_eq!(sched("1,,2 * * * * *"), sched("1,2 * * * * *"));
    // A leading '+' is read as by Go's strconv.Atoi.
    assert_eq!(sched("+5 * * * * *"), sched("5 * * * * *"));
    // Leading zeros.
    assert_eq!(sched("0 30 08 * * *"), sched("0 30 8 * * *"));
    // `N/step` runs to the end of the field.
    assert_eq!(sched("0 50/5 * * * *"), sched("0 50,55 * * * *"));
    // Any whitespace separates fields.
    assert_eq!(sched("0\t*\n* * *  *"), sched("0 * * * * *"));
    // A field of only commas matches nothing: accepted, but never fires.
    for spec in [
        "0 , * * * *",
        ", * * * * *",
        "0 0 , * * *",
        "0 0 0 * , *",
        "0 0 0 , * ,",
        "0 0 0 , * *",
    ] {
        assert_eq!(next(spec, t(2024, 1, 1, 0, 0, 0)), None, "{spec}");
    }
    // With both day fields restricted, one empty list leaves the other.
    assert_eq!(
        next("0 0 0 , * mon", t(2024, 1, 1, 0, 0, 0)),
        Some(t(2024, 1, 8, 0, 0, 0))
    );
}

#[test]
fn five_fields_mean_seconds_first() {
    // robfig v1 reads five fields as `sec min hour dom month`.
    let s = sched("0 30 * * *");
    assert_eq!(s, sched("0 30 * * * *"));
    assert_eq!(
        s.next(t(2024, 1, 1, 10, 0, 0)),
        Some(t(2024, 1, 1, 10, 30, 0))
    );
    // So `*/5 * * * *` fires every five *seconds*.
    assert_eq!(
        sched("*/5 * * * *").next(t(2024, 1, 1, 10, 0, 0)),
        Some(t(2024, 1, 1, 10, 0, 5))
    );
}

#[test]
fn invalid_specs() {
    let cases: &[(&str, &str)] = &[
        ("", "cron \"\": empty expression"),
        (
            "   ",
            "cron \"   \": expected 6 fields (sec min hour dom month dow; dow may be omitted), found 0",
        ),
        (
            "* * * *",
            "cron \"* * * *\": expected 6 fields (sec min hour dom month dow; dow may be omitted), found 4",
        ),
        (
            "0 0 0 * * * 2024",
            "cron \"0 0 0 * * * 2024\": expected 6 fields (sec min hour dom month dow; dow may be omitted), found 7",
        ),
        ("0 61 * * * *", "cron \"0 61 * * * *\": minute 61 out of range 0-59"),
        ("60 * * * * *", "cron \"60 * * * * *\": second 60 out of range 0-59"),
        ("0 0 24 * * *", "cron \"0 0 24 * * *\": hour 24 out of range 0-23"),
        ("0 0 0 0 * *", "cron \"0 0 0 0 * *\": day of month 0 out of range 1-31"),
        ("0 0 0 32 * *", "cron \"0 0 0 32 * *\": day of month 32 out of range 1-31"),
        ("0 0 0 * 13 *", "cron \"0 0 0 * 13 *\": month 13 out of range 1-12"),
        ("0 0 0 * 0 *", "cron \"0 0 0 * 0 *\": month 0 out of range 1-12"),
        ("0 0 0 * * 7", "cron \"0 0 0 * * 7\": day of week 7 out of range 0-6"),
        ("0 50-70 * * * *", "cron \"0 50-70 * * * *\": minute 70 out of range 0-59"),
        ("0 70/5 * * * *", "cron \"0 70/5 * * * *\": minute 70 out of range 0-59"),
        ("0 30-10 * * * *", "cron \"0 30-10 * * * *\": minute range 30-10 starts after it ends"),
        ("0 0 0 * dec-jan *", "cron \"0 0 0 * dec-jan *\": month range 12-1 starts after it ends"),
        ("*/0 * * * * *", "cron \"*/0 * * * * *\": second \"*/0\": step must be at least 1"),
        ("0 */x * * * *", "cron \"0 */x * * * *\": minute \"*/x\": step \"x\" is not a number"),
        ("0 */ * * * *", "cron \"0 */ * * * *\": minute \"*/\": step \"\" is not a number"),
        ("0 */-1 * * * *", "cron \"0 */-1 * * * *\": minute \"*/-1\": step \"-1\" is not a number"),
        ("0 1/2/3 * * * *", "cron \"0 1/2/3 * * * *\": minute \"1/2/3\": too many '/'"),
        ("0 1-2-3 * * * *", "cron \"0 1-2-3 * * * *\": minute \"1-2-3\": too many '-'"),
        ("0 x * * * *", "cron \"0 x * * * *\": minute \"x\" is not a number"),
        ("0 -5 * * * *", "cron \"0 -5 * * * *\": minute \"\" is not a number"),
        ("0 5- * * * *", "cron \"0 5- * * * *\": minute \"\" is not a number"),
        ("0 *5 * * * *", "cron \"0 *5 * * * *\": minute \"*5\" is not a number"),
        ("0 1.5 * * * *", "cron \"0 1.5 * * * *\": minute \"1.5\" is not a number"),
        ("0 0 0 * foo *", "cron \"0 0 0 * foo *\": month \"foo\" is not a number or month name (jan-dec)"),
        ("0 0 0 * * funday", "cron \"0 0 0 * * funday\": day of week \"funday\" is not a number or weekday name (sun-sat)"),
        ("0 99999999999999999999 * * * *", "cron \"0 99999999999999999999 * * * *\": minute \"99999999999999999999\" is not a number"),
        ("TZ=UTC 0 * * * * *", "cron \"TZ=UTC 0 * * * * *\": expected 6 fields (sec min hour dom month dow; dow may be omitted), found 7"),
        ("TZ=UTC * * * * *", "cron \"TZ=UTC * * * * *\": second \"TZ=UTC\" is not a number"),
    ];
    for &(spec, expected) in cases {
        assert_eq!(message(spec), expected, "{spec:?}");
    }
    // The first bad field is reported.
    assert!(matches!(
        problem("99 99 * * * *"),
        CronProblem::OutOfRange {
            field: Field::Second,
            ..
        }
    ));
}

#[test]
fn five_field_hint_suggests_seconds() {
    assert_eq!(
        five_field_hint("*/5 * * * *").as_deref(),
        Some("0 */5 * * * *")
    );
    assert_eq!(
        five_field_hint(" 30  2 * *   mon-fri ").as_deref(),
        Some("0 30 2 * * mon-fri")
    );
    assert_eq!(five_field_hint("0 */5 * * * *"), None);
    assert_eq!(five_field_hint("@daily"), None);
    assert_eq!(five_field_hint("* * * *"), None);
    // Standard cron's Sunday = 7 is not valid here, so no suggestion.
    assert_eq!(five_field_hint("0 0 * * 7"), None);
}

#[test]
fn strict_parsing() {
    // Six fields and descriptors pass.
    assert_eq!(parse_strict("0 * * * * ?"), parse("0 * * * * ?"));
    assert_eq!(parse_strict("@every 1h30m"), parse("@every 1h30m"));
    assert_eq!(parse_strict("@every 1s"), parse("@every 1s"));
    assert_eq!(parse_strict("@daily"), parse("@daily"));
    // Rare but possible dates pass.
    assert!(parse_strict("0 0 0 29 feb ?").is_ok());
    assert!(parse_strict("0 0 0 */29 feb mon").is_ok());

    // Five fields are refused with a hint.
    let err = parse_strict("*/5 * * * *").unwrap_err();
    assert_eq!(
        err.to_string(),
        "cron \"*/5 * * * *\": 5 fields given, but the first field is seconds, so 6 are \
         required (sec min hour dom month dow); did you mean \"0 */5 * * * *\"?"
    );
    assert_eq!(
        err.cron_problem(),
        Some(&CronProblem::FiveFields {
            hint: Some("0 */5 * * * *".into())
        })
    );
    assert_eq!(
        parse_strict("0 0 * * 7").unwrap_err().to_string(),
        "cron \"0 0 * * 7\": 5 fields given, but the first field is seconds, so 6 are \
         required (sec min hour dom month dow)"
    );
    // Schedules that never fire are refused.
    for spec in [
        "0 0 0 30 feb ?",
        "0 0 0 31 apr,jun,sep,nov *",
        "0 , * * * *",
    ] {
        assert_eq!(
            parse_strict(spec).unwrap_err().cron_problem(),
            Some(&CronProblem::NeverFires),
            "{spec}"
        );
    }
    assert_eq!(
        parse_strict("0 0 0 30 2 *").unwrap_err().to_string(),
        "cron \"0 0 0 30 2 *\": the schedule never fires: no calendar date matches it"
    );
    // Sub-second @every is refused instead of silently becoming 1s.
    for spec in ["@every 500ms", "@every 0", "@every -1h"] {
        assert!(
            matches!(
                parse_strict(spec).unwrap_err().cron_problem(),
                Some(CronProblem::SubSecondInterval { .. })
            ),
            "{spec}"
        );
    }
    // Ordinary errors are the same as in `parse`.
    assert_eq!(parse_strict("0 61 * * * *"), parse("0 61 * * * *"));
}

#[test]
fn rare_schedule_beyond_robfig_horizon() {
    // The 1st of February on a Monday (AND, because `*/29` counts as a star).
    // 2027 to 2038 is an eleven-year gap, where robfig would give up.
    let s = sched("0 0 0 */29 feb mon");
    assert_eq!(s.next(t(2016, 1, 1, 0, 0, 0)), Some(t(2016, 2, 1, 0, 0, 0)));
    assert_eq!(s.next(t(2016, 2, 1, 0, 0, 0)), Some(t(2021, 2, 1, 0, 0, 0)));
    assert_eq!(s.next(t(2021, 2, 1, 0, 0, 0)), Some(t(2027, 2, 1, 0, 0, 0)));
    assert_eq!(s.next(t(2027, 2, 1, 0, 0, 0)), Some(t(2038, 2, 1, 0, 0, 0)));
}

#[test]
fn last_fire_at_or_before() {
    let s = sched("0 * * * * ?");
    let first = t(1970, 1, 1, 10, 1, 0);
    assert_eq!(
        s.last_fire_at_or_before(first, t(1970, 1, 1, 10, 2, 0)),
        Some(t(1970, 1, 1, 10, 2, 0))
    );
    assert_eq!(
        s.last_fire_at_or_before(first, t(2024, 6, 1, 12, 30, 45)),
        Some(t(2024, 6, 1, 12, 30, 0))
    );
    assert_eq!(s.last_fire_at_or_before(first, first), Some(first));
    assert_eq!(
        s.last_fire_at_or_before(first, t(1970, 1, 1, 10, 1, 59)),
        Some(first)
    );
    assert_eq!(
        s.last_fire_at_or_before(first, t(1970, 1, 1, 10, 0, 59)),
        None
    );

    // Sparse calendar: the latest 13th-of-the-month before the bound.
    let monthly = sched("0 0 9 13 * *");
    assert_eq!(
        monthly.last_fire_at_or_before(t(2020, 1, 13, 9, 0, 0), t(2024, 9, 13, 8, 59, 59)),
        Some(t(2024, 8, 13, 9, 0, 0))
    );

    // @every counts whole intervals from the first tick.
    let every = sched("@every 1h30m");
    let first = t(2024, 1, 1, 0, 0, 0);
    assert_eq!(
        every.last_fire_at_or_before(first, t(2024, 1, 1, 4, 29, 59)),
        Some(t(2024, 1, 1, 3, 0, 0))
    );
    assert_eq!(
        every.last_fire_at_or_before(first, t(2024, 1, 1, 4, 30, 0)),
        Some(t(2024, 1, 1, 4, 30, 0))
    );
    // Matches iterating `next` one step at a time.
    let mut it = first;
    let bound = t(2024, 1, 3, 7, 0, 0);
    while let Some(n) = every.next(it).filter(|n| *n <= bound) {
        it = n;
    }
    assert_eq!(every.last_fire_at_or_before(first, bound), Some(it));
}

#[test]
fn extreme_times_do_not_panic() {
    let s = sched("0 0 0 * * *");
    assert_eq!(s.next(DateTime::<Utc>::MAX_UTC), None);
    assert!(s.next(DateTime::<Utc>::MIN_UTC).is_some());
    let e = sched("@every 2562047h");
    assert_eq!(e.next(DateTime::<Utc>::MAX_UTC), None);
    assert_eq!(
        s.last_fire_at_or_before(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC)
            .map(|d| d.year()),
        Some(DateTime::<Utc>::MAX_UTC.year())
    );
}

// ---- Cross-check against a brute-force matcher -------------------------------

/// The day rule restated independently of the evaluator.
fn brute_day(cal: &Calendar, date: NaiveDate) -> bool {
    let month = cal.month & (1 << date.month()) != 0;
    let dom = cal.dom & (1 << date.day()) != 0;
    let dow = cal.dow & (1 << date.weekday().num_days_from_sunday()) != 0;
    let either_star = cal.dom_star || cal.dow_star;
    month && if either_star { dom && dow } else { dom || dow }
}

/// Straightforward reference: walk days, then every matching (h, m, s) in
/// order. Slow but obviously right.
fn brute_next(cal: &Calendar, after: i64, days: i64) -> Option<i64> {
    let start = DateTime::from_timestamp(after, 0)?.date_naive();
    for offset in 0..days {
        let date = start + chrono::Duration::days(offset);
        if !brute_day(cal, date) {
            continue;
        }
        for h in (0..24).filter(|h| cal.hour & (1 << h) != 0) {
            for m in (0..60).filter(|m| cal.minute & (1 << m) != 0) {
                for s in (0..60).filter(|s| cal.second & (1 << s) != 0) {
                    let ts = date.and_hms_opt(h, m, s)?.and_utc().timestamp();
                    if ts > after {
                        return Some(ts);
                    }
                }
            }
        }
    }
    None
}

fn brute_prev(cal: &Calendar, at: i64, days: i64) -> Option<i64> {
    let start = DateTime::from_timestamp(at, 0)?.date_naive();
    for offset in 0..days {
        let date = start - chrono::Duration::days(offset);
        if !brute_day(cal, date) {
            continue;
        }
        for h in (0..24).rev().filter(|h| cal.hour & (1 << h) != 0) {
            for m in (0..60).rev().filter(|m| cal.minute & (1 << m) != 0) {
                for s in (0..60).rev().filter(|s| cal.second & (1 << s) != 0) {
                    let ts = date.and_hms_opt(h, m, s)?.and_utc().timestamp();
                    if ts <= at {
                        return Some(ts);
                    }
                }
            }
        }
    }
    None
}

struct Lcg(u64);

impl Lcg {
    fn below(&mut self, n: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) % u64::from(n)) as u32
    }

    fn term(&mut self, field: Field) -> String {
        let (min, max) = field.bounds();
        let span = max - min + 1;
        let a = min + self.below(span);
        let b = a + self.below(max - a + 1);
        let step = 1 + self.below(span / 2 + 1);
        match self.below(9) {
            0 => "*".into(),
            1 => "?".into(),
            2 => format!("*/{step}"),
            3 => format!("{a}/{step}"),
            4 => format!("{a}-{b}"),
            5 => format!("{a}-{b}/{step}"),
            6 => format!("{a},{b}"),
            7 => match field {
                Field::Month => ["jan", "Apr", "JUL", "oct"][self.below(4) as usize].into(),
                Field::DayOfWeek => ["sun", "Mon", "FRI", "sat"][self.below(4) as usize].into(),
                _ => a.to_string(),
            },
            _ => a.to_string(),
        }
    }
}

#[test]
fn next_and_prev_match_brute_force() {
    let mut rng = Lcg(0x5eed);
    let mut checked = 0;
    for _ in 0..400 {
        let spec: Vec<String> = Field::ALL.iter().map(|&f| rng.term(f)).collect();
        let spec = spec.join(" ");
        let Kind::Calendar(cal) = sched(&spec).kind else {
            unreachable!()
        };
        for _ in 0..4 {
            // Somewhere in 2023-2025, at any second.
            let at = 1_672_531_200 + i64::from(rng.below(3 * 365 * 86_400));
            let at_dt = DateTime::from_timestamp(at, 0).expect("in range");
            // Schedules that match within two years are compared exactly.
            let days = 2 * 366;
            if let Some(expected) = brute_next(&cal, at, days) {
                assert_eq!(
                    sched(&spec).next(at_dt).map(|d| d.timestamp()),
                    Some(expected),
                    "next {spec:?} after {at_dt}"
                );
                checked += 1;
            }
            if let Some(expected) = brute_prev(&cal, at, days) {
                assert_eq!(
                    cal.prev_at_or_before(at, at - days * 86_400),
                    Some(expected),
                    "prev {spec:?} at {at_dt}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "only {checked} comparisons");
}

#[test]
fn error_type_is_shared() {
    // `cron::Error` and the crate-level `Error` are the same type.
    let e: Error = parse("x").unwrap_err();
    let _: &crate::Error = &e;
}
