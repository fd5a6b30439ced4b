//! Schedule math for recurring runs.
//!
//! The API server validates recurring-run triggers with it and the scheduler
//! uses it to decide when a recurring run fires. Keeping both on one crate
//! means a trigger is never accepted by one and misread by the other.
//!
//! The crate is pure: nothing here reads the clock or touches storage. Every
//! function that needs "now" takes it as an argument, so the scheduler can be
//! tested with a fake clock and can claim ticks from a database.
//!
//! * [`cron`]: a parser and evaluator compatible with the Go package
//!   `github.com/robfig/cron` v1 (`cron.Parse`), which upstream KFP uses for
//!   cron triggers, plus the stricter [`cron::parse_strict`] that kfpd applies
//!   to new triggers.
//! * [`schedule`]: the next-fire-time rules of upstream's ScheduledWorkflow
//!   controller (periodic, cron, one-off; catch-up and `no_catchup`; enabled
//!   and `max_concurrency`).
//! * [`naming`] and [`macros`]: the display name of a fired run and the
//!   `[[ScheduledTime]]`-style macros in its parameters, as upstream makes them.
//!
//! All times are UTC. Cron expressions are evaluated on the UTC calendar,
//! which is what upstream does with its default `CRON_SCHEDULE_TIMEZONE`.

pub mod cron;
mod error;
pub mod macros;
pub mod naming;
pub mod schedule;

pub use cron::{five_field_hint, parse, parse_strict, Schedule};
pub use error::{CronProblem, Error, Field};
pub use schedule::{effective_max_concurrency, Decision, Gate, Poll, Trigger, TriggerKind};
