//! Cron expressions with the semantics of `github.com/robfig/cron` v1.
//!
//! Upstream KFP validates and evaluates cron triggers with robfig/cron v1.2.0
//! `cron.Parse`, so stored recurring runs depend on its exact dialect:
//!
//! * Six whitespace-separated fields, **seconds first**:
//!   `sec min hour dom month [dow]`. The day-of-week field may be omitted
//!   (five fields then mean `sec min hour dom month`, *not* standard cron's
//!   `min hour dom month dow`).
//! * Each field is a comma list of `*`, `?`, `N`, `N-M`, with an optional
//!   `/step`; `N/step` means `N-max/step`. `?` is a synonym of `*` in every
//!   field. Months (`jan`..`dec`) and weekdays (`sun`..`sat`) may be named,
//!   case-insensitively. Day of week is 0-6 with Sunday = 0.
//! * Descriptors: `@yearly`/`@annually`, `@monthly`, `@weekly`,
//!   `@daily`/`@midnight`, `@hourly` and `@every <Go duration>`.
//! * Day matching: when the day-of-month *and* the day-of-week field are
//!   both restricted, a day matches if either matches; when either starts
//!   with `*` or `?` (including stepped forms such as `*/2`), both must match.
//!
//! [`parse`] accepts exactly what robfig v1 accepts. [`parse_strict`] is what
//! kfpd uses for new triggers: it additionally refuses five-field input (which
//! silently means something other than standard cron), schedules that can
//! never fire, and `@every` intervals below one second.
//!
//! Evaluation is on the UTC calendar. The evaluator works on civil date and
//! time components, so supporting a time zone later means converting at the
//! boundary of [`Schedule::next`] and friends, not changing the search.

mod duration;
mod eval;
mod parse;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};

pub use crate::error::{CronProblem, Error, Field};
pub use parse::{five_field_hint, parse, parse_strict};

/// A parsed cron expression or descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Calendar(Calendar),
    /// `@every`: a fixed delay in whole seconds (at least 1), counted from the
    /// previous fire time rather than aligned to the calendar.
    Every {
        seconds: i64,
    },
}

/// The set of matching values of each field, one bit per value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Calendar {
    second: u64,
    minute: u64,
    hour: u64,
    dom: u64,
    month: u64,
    dow: u64,
    /// The day-of-month field contained a `*` or `?` term; together with
    /// `dow_star` this selects AND rather than OR day matching.
    dom_star: bool,
    dow_star: bool,
}

impl Schedule {
    /// The first fire time strictly after `after`, in whole seconds.
    ///
    /// Like robfig, sub-second parts of `after` are dropped first. Returns
    /// `None` when the schedule never fires again (for example `30 Feb`).
    /// robfig gives up after five years and returns Go's zero time, which
    /// upstream's controller then treats as overdue; this searches a full
    /// 400-year Gregorian cycle instead, so `None` really means "never".
    pub fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let after = after.timestamp();
        let next = match &self.kind {
            Kind::Calendar(cal) => cal.next_after(after)?,
            Kind::Every { seconds } => after.checked_add(*seconds)?,
        };
        DateTime::from_timestamp(next, 0)
    }

    /// The last fire time of the sequence `first, next(first), next(next(first)), ...`
    /// that is not later than `bound`, or `None` when `bound < first`.
    ///
    /// `first` must itself be a fire time (a result of [`Schedule::next`]).
    /// This is the "skip to the latest fire time <= now" step of the
    /// no-catch-up rule, computed directly instead of by iterating `next`,
    /// which could take millions of steps for `@every 1s` after a long outage.
    pub fn last_fire_at_or_before(
        &self,
        first: DateTime<Utc>,
        bound: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let (first_s, bound_s) = (first.timestamp(), bound.timestamp());
        if bound < first {
            return None;
        }
        let last = match &self.kind {
            Kind::Every { seconds } => first_s + (bound_s - first_s) / seconds * seconds,
            Kind::Calendar(cal) => cal
                .prev_at_or_before(bound_s, first_s)
                .filter(|&t| t >= first_s)
                .unwrap_or(first_s),
        };
        DateTime::from_timestamp(last, 0)
    }

    /// The delay of an `@every` schedule, in seconds; `None` for calendar
    /// schedules.
    pub fn every_seconds(&self) -> Option<i64> {
        match self.kind {
            Kind::Every { seconds } => Some(seconds),
            Kind::Calendar(_) => None,
        }
    }
}
