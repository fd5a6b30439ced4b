//! Searching the UTC calendar for matching seconds.
//!
//! Both searches walk civil time from coarse to fine: a month that does not
//! match is skipped whole, then a day, then an hour, a minute, a second. Every
//! skip jumps over times that share the non-matching component, so the first
//! time that survives all checks is the nearest match.

use chrono::{DateTime, Datelike, NaiveDate, Timelike};

use super::Calendar;

/// How far to look before declaring that a schedule never fires. The
/// Gregorian calendar (dates and weekdays) repeats every 400 years.
const SEARCH_YEARS: i32 = 401;

impl Calendar {
    fn day_matches(&self, date: NaiveDate) -> bool {
        let dom = has(self.dom, date.day());
        let dow = has(self.dow, date.weekday().num_days_from_sunday());
        // robfig's rule: a `*`/`?` in either field makes both required.
        if self.dom_star || self.dow_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// True when a field matches nothing (robfig accepts `,` as a field),
    /// which would otherwise cost a search through the whole horizon.
    fn has_empty_field(&self) -> bool {
        let days_empty = if self.dom_star || self.dow_star {
            self.dom == 0 || self.dow == 0
        } else {
            self.dom == 0 && self.dow == 0
        };
        self.second == 0 || self.minute == 0 || self.hour == 0 || self.month == 0 || days_empty
    }

    /// First matching second strictly after `after` (Unix seconds).
    pub(super) fn next_after(&self, after: i64) -> Option<i64> {
        if self.has_empty_field() {
            return None;
        }
        let start = DateTime::from_timestamp(after.checked_add(1)?, 0)?.naive_utc();
        let mut date = start.date();
        let (mut h, mut m, mut s) = (start.hour(), start.minute(), start.second());
        let limit = date.year().checked_add(SEARCH_YEARS)?;
        loop {
            if date.year() > limit {
                return None;
            }
            if !has(self.month, date.month()) {
                date = first_of_next_month(date)?;
                (h, m, s) = (0, 0, 0);
                continue;
            }
            if !self.day_matches(date) {
                date = date.succ_opt()?;
                (h, m, s) = (0, 0, 0);
                continue;
            }
            let Some(hour) = next_bit(self.hour, h, 23) else {
                date = date.succ_opt()?;
                (h, m, s) = (0, 0, 0);
                continue;
            };
            if hour != h {
                (h, m, s) = (hour, 0, 0);
            }
            let Some(minute) = next_bit(self.minute, m, 59) else {
                (date, h) = next_hour(date, h)?;
                (m, s) = (0, 0);
                continue;
            };
            if minute != m {
                (m, s) = (minute, 0);
            }
            let Some(second) = next_bit(self.second, s, 59) else {
                (date, h, m) = next_minute(date, h, m)?;
                s = 0;
                continue;
            };
            return Some(date.and_hms_opt(h, m, second)?.and_utc().timestamp());
        }
    }

    /// Last matching second at or before `at`, not looking before the day of
    /// `floor` (both Unix seconds). A result earlier than `floor` on that
    /// day is possible; callers compare.
    pub(super) fn prev_at_or_before(&self, at: i64, floor: i64) -> Option<i64> {
        if self.has_empty_field() {
            return None;
        }
        let start = DateTime::from_timestamp(at, 0)?.naive_utc();
        let floor_date = DateTime::from_timestamp(floor, 0)?.date_naive();
        let mut date = start.date();
        let (mut h, mut m, mut s) = (start.hour(), start.minute(), start.second());
        let limit = date.year().checked_sub(SEARCH_YEARS)?;
        loop {
            if date < floor_date || date.year() < limit {
                return None;
            }
            if !has(self.month, date.month()) {
                date = date.with_day(1)?.pred_opt()?;
                (h, m, s) = (23, 59, 59);
                continue;
            }
            if !self.day_matches(date) {
                date = date.pred_opt()?;
                (h, m, s) = (23, 59, 59);
                continue;
            }
            let Some(hour) = prev_bit(self.hour, h) else {
                date = date.pred_opt()?;
                (h, m, s) = (23, 59, 59);
                continue;
            };
            if hour != h {
                (h, m, s) = (hour, 59, 59);
            }
            let Some(minute) = prev_bit(self.minute, m) else {
                (date, h) = prev_hour(date, h)?;
                (m, s) = (59, 59);
                continue;
            };
            if minute != m {
                (m, s) = (minute, 59);
            }
            let Some(second) = prev_bit(self.second, s) else {
                (date, h, m) = prev_minute(date, h, m)?;
                s = 59;
                continue;
            };
            return Some(date.and_hms_opt(h, m, second)?.and_utc().timestamp());
        }
    }
}

fn has(bits: u64, value: u32) -> bool {
    value < 64 && bits & (1 << value) != 0
}

/// Smallest set bit in `from..=max`.
fn next_bit(bits: u64, from: u32, max: u32) -> Option<u32> {
    let window = (bits >> from << from) & (u64::MAX >> (63 - max));
    (window != 0).then(|| window.trailing_zeros())
}

/// Largest set bit in `0..=from` (`from <= 63`).
fn prev_bit(bits: u64, from: u32) -> Option<u32> {
    let window = bits & (u64::MAX >> (63 - from));
    (window != 0).then(|| 63 - window.leading_zeros())
}

fn first_of_next_month(date: NaiveDate) -> Option<NaiveDate> {
    if date.month() == 12 {
        NaiveDate::from_ymd_opt(date.year().checked_add(1)?, 1, 1)
    } else {
        NaiveDate::from_ymd_opt(date.year(), date.month() + 1, 1)
    }
}

fn next_hour(date: NaiveDate, h: u32) -> Option<(NaiveDate, u32)> {
    if h >= 23 {
        Some((date.succ_opt()?, 0))
    } else {
        Some((date, h + 1))
    }
}

fn next_minute(date: NaiveDate, h: u32, m: u32) -> Option<(NaiveDate, u32, u32)> {
    if m >= 59 {
        let (date, h) = next_hour(date, h)?;
        Some((date, h, 0))
    } else {
        Some((date, h, m + 1))
    }
}

fn prev_hour(date: NaiveDate, h: u32) -> Option<(NaiveDate, u32)> {
    if h == 0 {
        Some((date.pred_opt()?, 23))
    } else {
        Some((date, h - 1))
    }
}

fn prev_minute(date: NaiveDate, h: u32, m: u32) -> Option<(NaiveDate, u32, u32)> {
    if m == 0 {
        let (date, h) = prev_hour(date, h)?;
        Some((date, h, 59))
    } else {
        Some((date, h, m - 1))
    }
}
