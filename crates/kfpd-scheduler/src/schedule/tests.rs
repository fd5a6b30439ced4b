use chrono::NaiveDate;

use super::{Poll, Trigger, TriggerKind};
use crate::cron::parse;
use crate::error::Error;

const SECOND: i64 = 1;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

fn ts(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> i64 {
    NaiveDate::from_ymd_opt(y, mo, d)
        .and_then(|date| date.and_hms_opt(h, mi, s))
        .expect("valid test time")
        .and_utc()
        .timestamp()
}

fn cron(spec: &str, start: Option<i64>, end: Option<i64>) -> Trigger {
    Trigger::cron(parse(spec).expect("valid cron"), start, end)
}

fn periodic(interval: i64, start: Option<i64>, end: Option<i64>) -> Trigger {
    Trigger::periodic(interval, start, end).expect("valid interval")
}

/// Fires every due tick at a fixed `now`, like the controller requeueing
/// itself after each submission.
fn fire_all(trigger: &Trigger, created_at: i64, now: i64, no_catchup: bool) -> Vec<i64> {
    let mut last = None;
    let mut fired = Vec::new();
    while let Poll::Due(tick) = trigger.poll(created_at, last, now, no_catchup) {
        assert!(last.is_none_or(|l| tick > l), "ticks must advance");
        fired.push(tick);
        last = Some(tick);
        assert!(fired.len() < 10_000, "runaway trigger");
    }
    fired
}

// ---- Upstream periodic_schedule_test.go ---------------------------------------

#[test]
fn periodic_start_and_end() {
    let t = periodic(MINUTE, Some(10 * HOUR), Some(11 * HOUR));
    // A last tick before the start: the start itself is next.
    assert_eq!(t.next_fire(0, Some(0), 0, false), Some(10 * HOUR));
    assert_eq!(
        t.next_fire(0, Some(10 * HOUR + 5 * MINUTE), 0, false),
        Some(10 * HOUR + 6 * MINUTE)
    );
    assert_eq!(t.next_fire(0, Some(13 * HOUR), 0, false), None);
}

#[test]
fn periodic_interval_only() {
    let t = periodic(MINUTE, None, None);
    assert_eq!(
        t.next_fire(0, Some(10 * HOUR), 0, false),
        Some(10 * HOUR + MINUTE)
    );
}

#[test]
fn periodic_zero_interval_is_one_second() {
    let t = Trigger {
        kind: TriggerKind::Periodic {
            interval_seconds: 0,
        },
        start: Some(10 * HOUR),
        end: Some(11 * HOUR),
    };
    assert_eq!(
        t.next_fire(0, Some(10 * HOUR), 0, false),
        Some(10 * HOUR + SECOND)
    );
    let negative = Trigger {
        kind: TriggerKind::Periodic {
            interval_seconds: -60,
        },
        start: None,
        end: None,
    };
    assert_eq!(negative.next_fire(0, Some(100), 0, false), Some(101));
}

#[test]
fn periodic_base_precedence() {
    let t = periodic(60, Some(10 * HOUR + 10 * MINUTE), Some(11 * HOUR));
    let created = 10 * HOUR + 15 * MINUTE;
    // The last tick wins.
    assert_eq!(
        t.next_fire(created, Some(10 * HOUR + 20 * MINUTE), 0, false),
        Some(10 * HOUR + 21 * MINUTE)
    );
    // Then the start time: the first tick is start + interval.
    assert_eq!(
        t.next_fire(created, None, 0, false),
        Some(10 * HOUR + 11 * MINUTE)
    );
    // Then the creation time.
    let t = periodic(60, None, Some(11 * HOUR));
    assert_eq!(
        t.next_fire(created, None, 0, false),
        Some(10 * HOUR + 16 * MINUTE)
    );
}

#[test]
fn periodic_no_catchup() {
    let t = periodic(60, Some(10 * HOUR + 10 * MINUTE), Some(11 * HOUR));
    let created = 10 * HOUR + 15 * MINUTE;
    let last = Some(10 * HOUR + 20 * MINUTE);
    let next = |now| t.next_fire(created, last, now, true);
    // Not yet time for the next tick.
    assert_eq!(
        next(10 * HOUR + 20 * MINUTE + 30),
        Some(10 * HOUR + 21 * MINUTE)
    );
    // Exactly time.
    assert_eq!(next(10 * HOUR + 21 * MINUTE), Some(10 * HOUR + 21 * MINUTE));
    // Shortly after: still the scheduled tick.
    assert_eq!(
        next(10 * HOUR + 21 * MINUTE + 30),
        Some(10 * HOUR + 21 * MINUTE)
    );
    // Behind by more than one interval: now.
    assert_eq!(next(10 * HOUR + 30 * MINUTE), Some(10 * HOUR + 30 * MINUTE));
    // Behind and past the end: the end.
    assert_eq!(next(12 * HOUR), Some(11 * HOUR));
    // No last tick: start time, then creation time, as with catch-up.
    assert_eq!(
        t.next_fire(created, None, 0, true),
        Some(10 * HOUR + 11 * MINUTE)
    );
    let t = periodic(60, None, Some(11 * HOUR));
    assert_eq!(
        t.next_fire(created, None, 0, true),
        Some(10 * HOUR + 16 * MINUTE)
    );
}

#[test]
fn periodic_start_in_the_future() {
    let start = ts(2012, 11, 1, 22, 0, 0);
    let t = periodic(24 * HOUR, Some(start), None);
    assert_eq!(t.next_fire(0, Some(0), 0, false), Some(start));
}

// ---- Upstream cron_schedule_test.go -------------------------------------------

#[test]
fn cron_start_and_end() {
    let t = cron("0 * * * * * ", Some(10 * HOUR), Some(11 * HOUR));
    assert_eq!(t.next_fire(0, Some(0), 0, false), Some(10 * HOUR + MINUTE));
    assert_eq!(
        t.next_fire(0, Some(10 * HOUR + 5 * MINUTE), 0, false),
        Some(10 * HOUR + 6 * MINUTE)
    );
    assert_eq!(t.next_fire(0, Some(13 * HOUR), 0, false), None);
}

#[test]
fn cron_only() {
    let t = cron("0 * * * * * ", None, None);
    assert_eq!(
        t.next_fire(0, Some(10 * HOUR), 0, false),
        Some(10 * HOUR + MINUTE)
    );
}

#[test]
fn cron_missing_or_invalid_is_rejected_up_front() {
    // Upstream only notices at evaluation time and never fires; here such a
    // trigger cannot be built.
    assert!(parse("").is_err());
    assert!(parse("*$&%*(W&").is_err());
}

#[test]
fn cron_base_precedence() {
    let t = cron(
        "0 * * * * * ",
        Some(10 * HOUR + 10 * MINUTE),
        Some(11 * HOUR),
    );
    let created = 10 * HOUR + 15 * MINUTE;
    assert_eq!(
        t.next_fire(created, Some(10 * HOUR + 20 * MINUTE), 0, false),
        Some(10 * HOUR + 21 * MINUTE)
    );
    assert_eq!(
        t.next_fire(created, None, 0, false),
        Some(10 * HOUR + 11 * MINUTE)
    );
    let t = cron("0 * * * * * ", None, Some(11 * HOUR));
    assert_eq!(
        t.next_fire(created, None, 0, false),
        Some(10 * HOUR + 16 * MINUTE)
    );
}

#[test]
fn cron_no_catchup() {
    let t = cron(
        "0 * * * * * ",
        Some(10 * HOUR + 10 * MINUTE),
        Some(11 * HOUR),
    );
    let created = 10 * HOUR + 15 * MINUTE;
    let last = Some(10 * HOUR + 20 * MINUTE);
    let next = |now| t.next_fire(created, last, now, true);
    assert_eq!(
        next(10 * HOUR + 20 * MINUTE + 30),
        Some(10 * HOUR + 21 * MINUTE)
    );
    assert_eq!(next(10 * HOUR + 21 * MINUTE), Some(10 * HOUR + 21 * MINUTE));
    assert_eq!(
        next(10 * HOUR + 21 * MINUTE + 30),
        Some(10 * HOUR + 21 * MINUTE)
    );
    // Behind: the latest fire time <= now.
    assert_eq!(next(10 * HOUR + 30 * MINUTE), Some(10 * HOUR + 30 * MINUTE));
    assert_eq!(
        next(10 * HOUR + 30 * MINUTE + 59),
        Some(10 * HOUR + 30 * MINUTE)
    );
    // Way behind, past the end: the latest fire time <= end.
    assert_eq!(next(12 * HOUR), Some(11 * HOUR));
    assert_eq!(
        t.next_fire(created, None, 0, true),
        Some(10 * HOUR + 11 * MINUTE)
    );
    let t = cron("0 * * * * * ", None, Some(11 * HOUR));
    assert_eq!(
        t.next_fire(created, None, 0, true),
        Some(10 * HOUR + 16 * MINUTE)
    );
}

#[test]
fn cron_no_catchup_latest_tick_is_aligned_to_the_schedule() {
    // Unlike periodic no-catch-up (which fires at `now`), cron stays on its
    // calendar: 09:00 on weekdays.
    let t = cron("0 0 9 * * mon-fri", None, None);
    let created = ts(2024, 1, 1, 12, 0, 0); // a Monday
    let now = ts(2024, 1, 14, 10, 0, 0); // the Sunday after next
    assert_eq!(
        t.next_fire(created, None, now, true),
        Some(ts(2024, 1, 12, 9, 0, 0))
    );
    assert_eq!(
        t.next_fire(created, None, now, false),
        Some(ts(2024, 1, 2, 9, 0, 0))
    );
}

#[test]
fn every_descriptor_trigger() {
    let t = cron("@every 1h30m", Some(ts(2024, 1, 1, 0, 0, 0)), None);
    let created = ts(2023, 12, 1, 0, 0, 0);
    assert_eq!(
        t.next_fire(created, None, 0, false),
        Some(ts(2024, 1, 1, 1, 30, 0))
    );
    assert_eq!(
        t.next_fire(created, Some(ts(2024, 1, 1, 1, 30, 0)), 0, false),
        Some(ts(2024, 1, 1, 3, 0, 0))
    );
    // No catch-up after a long outage: latest tick of the chain, computed
    // directly rather than by millions of steps.
    let now = ts(2024, 6, 1, 10, 0, 0);
    let tick = t.next_fire(created, None, now, true).expect("a tick");
    assert!(tick <= now && now - tick < 90 * MINUTE);
    assert_eq!((tick - ts(2024, 1, 1, 0, 0, 0)) % (90 * MINUTE), 0);

    let fast = cron("@every 1s", Some(ts(2000, 1, 1, 0, 0, 0)), None);
    assert_eq!(fast.next_fire(0, None, now, true), Some(now));
}

// ---- Upstream scheduled_workflow_test.go --------------------------------------

#[test]
fn one_off() {
    let t = Trigger::once();
    let created = 9 * HOUR;
    assert_eq!(t.poll(created, None, 10 * HOUR, false), Poll::Due(created));
    assert_eq!(
        t.poll(created, Some(11 * HOUR), 10 * HOUR, false),
        Poll::Finished
    );
    assert_eq!(t.poll(created, None, HOUR, false), Poll::Later(created));
    // Start, end and no_catchup do not apply.
    let windowed = Trigger {
        kind: TriggerKind::Once,
        start: Some(20 * HOUR),
        end: Some(HOUR),
    };
    assert_eq!(
        windowed.poll(created, None, 10 * HOUR, true),
        Poll::Due(created)
    );
    assert_eq!(
        fire_all(&windowed, created, 10 * HOUR, false),
        vec![created]
    );
}

#[test]
fn poll_cron_and_periodic() {
    let created = 9 * HOUR;
    for t in [cron("0 * * * * *", None, None), periodic(60, None, None)] {
        assert_eq!(
            t.poll(created, None, 10 * HOUR, false),
            Poll::Due(9 * HOUR + MINUTE)
        );
        assert_eq!(
            t.poll(created, None, 3 * HOUR, false),
            Poll::Later(9 * HOUR + MINUTE)
        );
    }
}

#[test]
fn poll_daily_hour_window() {
    // `* * 15 * * *` fires every second of 15:00-15:59.
    let created = ts(2006, 1, 1, 16, 4, 5);
    let now = ts(2006, 1, 3, 14, 4, 5);
    let t = cron("* * 15 * * *", None, None);
    assert_eq!(
        t.poll(created, None, now, false),
        Poll::Due(ts(2006, 1, 2, 15, 0, 0))
    );
    // With an end before the first fire time, it never fires.
    let now = ts(2006, 1, 2, 14, 4, 5);
    let t = cron("* * 15 * * *", None, Some(now + 30 * MINUTE));
    assert_eq!(t.poll(created, None, now, false), Poll::Finished);
}

// ---- Upstream integration test: a two-minute window in 1970 --------------------

#[test]
fn window_in_1970_catchup_and_no_catchup() {
    let start = 10 * HOUR;
    let end = 10 * HOUR + 2 * MINUTE;
    let created = ts(2024, 3, 1, 12, 0, 0);
    let now = created + 40;
    for t in [
        periodic(60, Some(start), Some(end)),
        cron("0 * * * * ?", Some(start), Some(end)),
    ] {
        assert_eq!(
            fire_all(&t, created, now, false),
            vec![start + MINUTE, start + 2 * MINUTE],
            "{t:?} catch-up"
        );
        assert_eq!(
            fire_all(&t, created, now, true),
            vec![start + 2 * MINUTE],
            "{t:?} no catch-up"
        );
        assert_eq!(t.wake_at(created, Some(end)), None);
    }
}

// ---- kfpd design properties -----------------------------------------------------

#[test]
fn periodic_validation() {
    assert_eq!(
        Trigger::periodic(0, None, None).unwrap_err(),
        Error::Interval {
            interval_seconds: 0
        }
    );
    assert_eq!(
        Trigger::periodic(-5, None, None).unwrap_err().to_string(),
        "periodic interval -5 is invalid: it must be at least 1 second"
    );
    assert!(Trigger::periodic(1, None, None).is_ok());
}

#[test]
fn periodic_no_catchup_shifts_the_phase() {
    let t = periodic(60, None, None);
    // Far behind: fire at now, then count intervals from there.
    assert_eq!(t.next_fire(0, Some(0), 1000, true), Some(1000));
    assert_eq!(t.next_fire(0, Some(1000), 1000, true), Some(1060));
    // Catch-up fires every missed tick.
    assert_eq!(
        fire_all(&t, 0, 600, false),
        (1..=10).map(|i| i * 60).collect::<Vec<_>>()
    );
    assert_eq!(fire_all(&t, 0, 600, true), vec![600]);
}

#[test]
fn start_after_end_never_fires() {
    // Upstream would fire once at the start when a last tick precedes it.
    let t = periodic(60, Some(100), Some(50));
    assert_eq!(t.next_fire(0, Some(0), 1000, false), None);
    assert_eq!(t.next_fire(0, None, 1000, false), None);
    let t = cron("* * * * * *", Some(100), Some(50));
    assert_eq!(t.next_fire(0, None, 1000, false), None);
}

#[test]
fn end_is_inclusive() {
    let t = periodic(60, Some(0), Some(120));
    assert_eq!(fire_all(&t, 0, 1000, false), vec![60, 120]);
    let t = cron("0 * * * * *", Some(0), Some(120));
    assert_eq!(fire_all(&t, 0, 1000, false), vec![60, 120]);
}

#[test]
fn no_overflow_panics() {
    let t = Trigger {
        kind: TriggerKind::Periodic {
            interval_seconds: i64::MAX,
        },
        start: None,
        end: None,
    };
    assert_eq!(t.next_fire(0, Some(i64::MAX - 5), i64::MAX, true), None);
    assert_eq!(t.next_fire(i64::MIN, None, 0, true), Some(-1));
    assert_eq!(t.next_fire(i64::MIN, None, i64::MAX, true), Some(i64::MAX));
    let c = cron("0 * * * * *", None, None);
    assert_eq!(c.next_fire(0, Some(i64::MAX), i64::MAX, true), None);
    assert_eq!(c.next_fire(i64::MIN, None, i64::MIN, true), None);
    assert_eq!(c.poll(0, Some(i64::MAX - 1), 0, false), Poll::Finished);
}

#[test]
fn ticks_advance_and_wake_at_predicts_due() {
    let triggers = [
        periodic(60, None, None),
        periodic(7, Some(1_000), Some(50_000)),
        periodic(3_600, Some(-500), None),
        cron("0 * * * * ?", None, None),
        cron("*/13 */7 * * * *", Some(2_000), Some(80_000)),
        cron("0 0 */2 * * mon-fri", None, None),
        cron("@every 1h30m", Some(500), None),
        cron("@every 17s", None, Some(40_000)),
        Trigger::once(),
    ];
    let created = 1_234;
    for t in &triggers {
        for no_catchup in [false, true] {
            let mut last = None;
            let mut now = 0;
            let mut fired = 0;
            // Advance a fake clock irregularly and fire whatever is due.
            for step in 0..2_000i64 {
                now += (step * 7_919) % 311;
                let wake = t.wake_at(created, last);
                match t.poll(created, last, now, no_catchup) {
                    Poll::Due(tick) => {
                        assert!(wake.is_some_and(|w| w <= now), "{t:?}");
                        assert!(last.is_none_or(|l| tick > l), "{t:?}");
                        assert!(tick <= now);
                        if let (Some(end), false) = (t.end, t.kind == TriggerKind::Once) {
                            assert!(tick <= end, "{t:?}");
                        }
                        last = Some(tick);
                        fired += 1;
                    }
                    Poll::Later(tick) => {
                        assert_eq!(wake, Some(tick), "{t:?}");
                        assert!(tick > now);
                    }
                    Poll::Finished => assert_eq!(wake, None),
                }
            }
            assert!(fired > 0, "{t:?} never fired");
        }
    }
}

// ---- Upstream scheduled_workflow_test.go: enabled and max concurrency ----------

use super::{effective_max_concurrency, Decision, Gate};

fn gate(active_runs: i64, max_concurrency: i64) -> Gate {
    Gate {
        enabled: true,
        active_runs,
        max_concurrency,
    }
}

#[test]
fn max_concurrency_is_clamped_like_upstream() {
    assert_eq!(effective_max_concurrency(0), 1);
    assert_eq!(effective_max_concurrency(-3), 1);
    assert_eq!(effective_max_concurrency(1), 1);
    assert_eq!(effective_max_concurrency(7), 7);
    assert_eq!(effective_max_concurrency(2_000_000), 10);
}

#[test]
fn decide_one_off() {
    let t = Trigger::once();
    let created = 9 * HOUR;
    let now = 10 * HOUR;
    assert_eq!(
        t.decide(created, None, now, false, gate(0, 1)),
        Decision::Fire(created)
    );
    // Has already run.
    assert_eq!(
        t.decide(created, Some(11 * HOUR), now, false, gate(0, 1)),
        Decision::Finished
    );
    // Not yet time.
    assert_eq!(
        t.decide(created, None, HOUR, false, gate(0, 1)),
        Decision::Later(created)
    );
    // Disabled.
    let disabled = Gate {
        enabled: false,
        ..gate(0, 1)
    };
    assert_eq!(
        t.decide(created, None, now, false, disabled),
        Decision::Disabled(Some(created))
    );
    // An active run and the default limit of one.
    assert_eq!(
        t.decide(created, None, now, false, gate(1, 0)),
        Decision::AtCapacity(created)
    );
}

#[test]
fn decide_cron_and_periodic_with_concurrency() {
    let created = 9 * HOUR;
    for t in [cron("0 * * * * *", None, None), periodic(60, None, None)] {
        // Nine of ten active: runs now.
        assert_eq!(
            t.decide(created, None, 10 * HOUR, false, gate(9, 10)),
            Decision::Fire(9 * HOUR + MINUTE)
        );
        // Not yet time.
        assert_eq!(
            t.decide(created, None, 3 * HOUR, false, gate(9, 10)),
            Decision::Later(9 * HOUR + MINUTE)
        );
        // Ten of ten active: waits, keeping the tick.
        assert_eq!(
            t.decide(created, None, 10 * HOUR, false, gate(10, 10)),
            Decision::AtCapacity(9 * HOUR + MINUTE)
        );
        // A stored limit above 10 still means 10.
        assert_eq!(
            t.decide(created, None, 10 * HOUR, false, gate(10, 50)),
            Decision::AtCapacity(9 * HOUR + MINUTE)
        );
    }
}

#[test]
fn decide_with_end_before_first_tick_is_finished() {
    // Upstream: `* * 15 * * *` with an end 30 minutes after now, before 15:00.
    let created = ts(2006, 1, 1, 16, 4, 5);
    let now = ts(2006, 1, 2, 14, 4, 5);
    let t = cron("* * 15 * * *", None, Some(now + 30 * MINUTE));
    assert_eq!(
        t.decide(created, None, now, false, gate(9, 10)),
        Decision::Finished
    );
    let t = cron("* * 15 * * *", None, None);
    assert_eq!(
        t.decide(created, None, ts(2006, 1, 3, 14, 4, 5), false, gate(9, 10)),
        Decision::Fire(ts(2006, 1, 2, 15, 0, 0))
    );
}

#[test]
fn catchup_at_capacity_resumes_with_the_kept_tick() {
    // With catch-up a tick blocked by max_concurrency fires later, in order;
    // without, the latest due tick fires instead.
    let t = periodic(60, None, None);
    let created = 0;
    let last = Some(5 * MINUTE);
    let now = 10 * MINUTE + 30;
    assert_eq!(
        t.decide(created, last, now, false, gate(1, 1)),
        Decision::AtCapacity(6 * MINUTE)
    );
    assert_eq!(
        t.decide(created, last, now, false, gate(0, 1)),
        Decision::Fire(6 * MINUTE)
    );
    assert_eq!(
        t.decide(created, last, now, true, gate(0, 1)),
        Decision::Fire(now)
    );
    let c = cron("0 * * * * *", None, None);
    assert_eq!(
        c.decide(created, last, now, true, gate(0, 1)),
        Decision::Fire(10 * MINUTE)
    );
}

// ---- kfpd: skipping missed ticks on enable and on trigger edits ------------------

#[test]
fn latest_due_is_the_last_tick_catch_up_would_fire() {
    let triggers = [
        periodic(60, None, None),
        periodic(7, Some(1_000), Some(50_000)),
        periodic(3_600, Some(-500), None),
        periodic(1, Some(10_000), Some(10_000)),
        cron("0 * * * * ?", None, None),
        cron("*/13 */7 * * * *", Some(2_000), Some(80_000)),
        cron("@every 17s", None, Some(40_000)),
        cron("0 0 12 * * *", None, None),
        Trigger::once(),
    ];
    let created = 1_234;
    for t in &triggers {
        for last in [None, Some(1_500), Some(20_000)] {
            for now in [0, 1_300, 5_000, 30_000, 60_000, 100_000] {
                let all = {
                    let mut last = last;
                    let mut fired = Vec::new();
                    while let Poll::Due(tick) = t.poll(created, last, now, false) {
                        fired.push(tick);
                        last = Some(tick);
                    }
                    fired
                };
                assert_eq!(
                    t.latest_due(created, last, now),
                    all.last().copied(),
                    "{t:?} last {last:?} now {now}"
                );
            }
        }
    }
}

#[test]
fn skipping_keeps_the_phase() {
    // Hourly from midnight, last fired at 05:00, enabled again at 08:20:
    // the 06:00, 07:00 and 08:00 ticks are skipped and 09:00 is next.
    let t = periodic(HOUR, Some(0), None);
    let anchor = t.latest_due(0, Some(5 * HOUR), 8 * HOUR + 20 * MINUTE);
    assert_eq!(anchor, Some(8 * HOUR));
    assert_eq!(t.wake_at(0, anchor), Some(9 * HOUR));
    // A long way behind: computed directly, not tick by tick.
    let every_second = periodic(1, Some(0), None);
    assert_eq!(every_second.latest_due(0, None, 1 << 40), Some(1 << 40));
    let every = cron("@every 1s", Some(0), None);
    assert_eq!(every.latest_due(0, None, 1 << 33), Some(1 << 33));
}
