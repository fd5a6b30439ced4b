//! When a recurring run fires: the rules of upstream's ScheduledWorkflow
//! controller, as pure functions of the trigger, the recurring run's creation
//! time, the last fired tick and `now` (all Unix seconds, UTC).
//!
//! # Rules (upstream behaviour)
//!
//! Let `base` be the last fired tick, else the trigger's start time, else the
//! creation time.
//!
//! * **Periodic** (`interval` seconds, at least 1): the next tick is
//!   `base + interval`, or the start time if that is later than `base`. So
//!   the first tick of a trigger with a start time is `start + interval`,
//!   not `start`. A tick after the end time means the trigger is finished.
//!   With `no_catchup`, if `now >= next + interval` (more than one tick was
//!   missed) the tick is `now`, or the end time if that is earlier; later
//!   ticks then count from there.
//! * **Cron**: the next tick is the first fire time strictly after
//!   `max(base, start)`; after the end time the trigger is finished. With
//!   `no_catchup`, the tick is the latest fire time that is `<= now` and
//!   `<= end` (but never before that first fire time).
//! * **One-off** (no trigger): a single tick at the creation time.
//!
//! End times are inclusive: a tick exactly at the end still fires.
//!
//! # Claiming ticks exactly once
//!
//! A scheduler that stores `last_fired` per recurring run can claim ticks
//! from a database:
//!
//! 1. Index rows by [`Trigger::wake_at`], which does not depend on `now`:
//!    a trigger is due at `now` exactly when `wake_at <= now`, with or
//!    without `no_catchup` (no-catch-up only changes *which* tick fires).
//! 2. For a due row, [`Trigger::poll`] gives the tick to fire. It is always
//!    strictly later than `last_fired`, so a conditional update
//!    `SET last_fired = tick WHERE last_fired = <value read>` succeeds for
//!    exactly one claimant; derive the run's name from the tick (or from an
//!    index bumped by the same update) so a retry after a crash is idempotent.
//! 3. Store the new `wake_at` in the same update and repeat: a trigger that
//!    is behind fires its missed ticks back to back, as upstream does.

use chrono::DateTime;

use crate::cron::Schedule;
use crate::error::Error;

/// A recurring run's trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trigger {
    pub kind: TriggerKind,
    /// No tick is earlier than this (Unix seconds); ignored for one-off runs.
    pub start: Option<i64>,
    /// No tick is later than this (Unix seconds, inclusive); ignored for
    /// one-off runs.
    pub end: Option<i64>,
}

/// What kind of trigger a recurring run has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TriggerKind {
    /// No trigger in the API (`trigger: {}`): fire once, at creation.
    Once,
    /// `cron_schedule`.
    Cron(Schedule),
    /// `periodic_schedule`. An interval below 1 is treated as 1 second (as
    /// upstream does for 0) so that ticks always advance.
    Periodic { interval_seconds: i64 },
}

/// Upstream's bounds on `max_concurrency`: below 1 counts as 1, above 10 as 10.
pub const MAX_CONCURRENCY: i64 = 10;

/// The concurrency limit upstream's controller applies for a stored value.
pub fn effective_max_concurrency(given: i64) -> i64 {
    given.clamp(1, MAX_CONCURRENCY)
}

/// What a scheduler does with a recurring run at `now`: upstream's
/// "should run now" (enabled, below its concurrency limit, a tick due).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Fire this tick now.
    Fire(i64),
    /// This tick is due, but the recurring run has `max_concurrency` active
    /// runs; it fires once one of them ends (the tick is kept, not skipped).
    AtCapacity(i64),
    /// The recurring run is disabled; this would be its next tick.
    Disabled(Option<i64>),
    /// The next tick, which is still in the future.
    Later(i64),
    /// The trigger will not fire again.
    Finished,
}

/// The recurring run's side of [`Trigger::decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    pub enabled: bool,
    /// Runs of the recurring run that have not finished.
    pub active_runs: i64,
    /// As stored; clamped with [`effective_max_concurrency`].
    pub max_concurrency: i64,
}

/// The outcome of [`Trigger::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poll {
    /// Fire this tick now.
    Due(i64),
    /// The next tick, which is still in the future.
    Later(i64),
    /// The trigger will not fire again.
    Finished,
}

impl Trigger {
    /// A one-off trigger.
    pub fn once() -> Self {
        Trigger {
            kind: TriggerKind::Once,
            start: None,
            end: None,
        }
    }

    /// A cron trigger.
    pub fn cron(schedule: Schedule, start: Option<i64>, end: Option<i64>) -> Self {
        Trigger {
            kind: TriggerKind::Cron(schedule),
            start,
            end,
        }
    }

    /// A periodic trigger; rejects intervals below one second like the
    /// upstream API server does.
    pub fn periodic(
        interval_seconds: i64,
        start: Option<i64>,
        end: Option<i64>,
    ) -> Result<Self, Error> {
        if interval_seconds < 1 {
            return Err(Error::Interval { interval_seconds });
        }
        Ok(Trigger {
            kind: TriggerKind::Periodic { interval_seconds },
            start,
            end,
        })
    }

    /// The next tick after `last_fired` (the last tick that fired, `None`
    /// before the first), or `None` when the trigger is finished. The tick
    /// may be `<= now`, meaning it is due.
    ///
    /// `now` only matters with `no_catchup`. The result is always later
    /// than `last_fired`.
    pub fn next_fire(
        &self,
        created_at: i64,
        last_fired: Option<i64>,
        now: i64,
        no_catchup: bool,
    ) -> Option<i64> {
        let base = last_fired.or(self.start).unwrap_or(created_at);
        let tick = match &self.kind {
            TriggerKind::Once => {
                return match last_fired {
                    None => Some(created_at),
                    Some(_) => None,
                }
            }
            TriggerKind::Periodic { interval_seconds } => {
                let interval = (*interval_seconds).max(1);
                let next = match self.start {
                    Some(start) if start > base => start,
                    _ => base.checked_add(interval)?,
                };
                // Upstream skips this check when it jumps to the start time;
                // kfpd applies it uniformly so a start after the end never fires.
                if self.after_end(next) {
                    return None;
                }
                match next.checked_add(interval) {
                    Some(next_next) if no_catchup && now >= next_next => {
                        self.end.map_or(now, |end| end.min(now))
                    }
                    _ => next,
                }
            }
            TriggerKind::Cron(schedule) => {
                let from = self.start.map_or(base, |start| start.max(base));
                let first = schedule.next(DateTime::from_timestamp(from, 0)?)?;
                if self.after_end(first.timestamp()) {
                    return None;
                }
                if !no_catchup {
                    first.timestamp()
                } else {
                    let bound = self.end.map_or(now, |end| end.min(now));
                    match DateTime::from_timestamp(bound, 0) {
                        Some(bound) => schedule
                            .last_fire_at_or_before(first, bound)
                            .unwrap_or(first)
                            .timestamp(),
                        None => first.timestamp(),
                    }
                }
            }
        };
        Some(tick)
    }

    /// The earliest time at which the trigger can be due again: the next tick
    /// as if catching up. It does not depend on `now`, and for any `now`,
    /// `wake_at <= now` exactly when [`Trigger::poll`] says [`Poll::Due`]
    /// (with or without `no_catchup`), so a scheduler can store and index it.
    pub fn wake_at(&self, created_at: i64, last_fired: Option<i64>) -> Option<i64> {
        self.next_fire(created_at, last_fired, i64::MIN, false)
    }

    /// Whether a tick is due at `now`, and which one.
    pub fn poll(
        &self,
        created_at: i64,
        last_fired: Option<i64>,
        now: i64,
        no_catchup: bool,
    ) -> Poll {
        match self.next_fire(created_at, last_fired, now, no_catchup) {
            Some(tick) if tick <= now => Poll::Due(tick),
            Some(tick) => Poll::Later(tick),
            None => Poll::Finished,
        }
    }

    /// [`Trigger::poll`] plus upstream's other two conditions: a disabled
    /// recurring run never fires, and one with `max_concurrency` active runs
    /// waits (keeping its tick).
    pub fn decide(
        &self,
        created_at: i64,
        last_fired: Option<i64>,
        now: i64,
        no_catchup: bool,
        gate: Gate,
    ) -> Decision {
        let poll = self.poll(created_at, last_fired, now, no_catchup);
        if !gate.enabled {
            return Decision::Disabled(match poll {
                Poll::Due(tick) | Poll::Later(tick) => Some(tick),
                Poll::Finished => None,
            });
        }
        match poll {
            Poll::Due(tick)
                if gate.active_runs >= effective_max_concurrency(gate.max_concurrency) =>
            {
                Decision::AtCapacity(tick)
            }
            Poll::Due(tick) => Decision::Fire(tick),
            Poll::Later(tick) => Decision::Later(tick),
            Poll::Finished => Decision::Finished,
        }
    }

    /// The last tick that catching up at `now` would fire, or `None` when no
    /// tick is due. Setting `last_fired` to it skips every missed tick while
    /// keeping the schedule's phase: kfpd does this when a recurring run is
    /// enabled again or its trigger is edited, so neither backfills.
    ///
    /// Equal to the last tick of repeatedly polling with catch-up at a fixed
    /// `now`, but computed directly (a 1-second trigger may be millions of
    /// ticks behind).
    pub fn latest_due(&self, created_at: i64, last_fired: Option<i64>, now: i64) -> Option<i64> {
        let first = match self.poll(created_at, last_fired, now, false) {
            Poll::Due(tick) => tick,
            Poll::Later(_) | Poll::Finished => return None,
        };
        let bound = self.end.map_or(now, |end| end.min(now));
        let latest = match &self.kind {
            TriggerKind::Once => first,
            TriggerKind::Periodic { interval_seconds } => {
                let interval = (*interval_seconds).max(1);
                if bound <= first {
                    first
                } else {
                    first + (bound - first) / interval * interval
                }
            }
            TriggerKind::Cron(schedule) => {
                let (Some(first_time), Some(bound_time)) = (
                    DateTime::from_timestamp(first, 0),
                    DateTime::from_timestamp(bound, 0),
                ) else {
                    return Some(first);
                };
                schedule
                    .last_fire_at_or_before(first_time, bound_time)
                    .map_or(first, |time| time.timestamp())
            }
        };
        Some(latest)
    }

    fn after_end(&self, tick: i64) -> bool {
        self.end.is_some_and(|end| tick > end)
    }
}

#[cfg(test)]
mod tests;
