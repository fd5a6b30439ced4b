//! Attempts of a container task: the retry policy as Argo's `retryStrategy` applies
//! it, and the messages a failed attempt and a failed task carry.

use std::time::Duration;

use kfpd_ir::spec::RetryPolicy;

/// A task's retry policy with upstream's defaults, applied as Argo's
/// `retryStrategy` does: before retry `n` wait `backoff * factor^(n-1)`, and retry
/// only while the wait ends within `max duration` of the first attempt's start.
#[derive(Clone, Debug, PartialEq)]
pub struct RetryPlan {
    pub max_retries: u32,
    pub backoff: Duration,
    pub factor: f64,
    pub max_duration: Duration,
}

impl RetryPlan {
    /// Backoff factor when the policy sets none (the IR's documented default).
    const DEFAULT_FACTOR: f64 = 2.0;
    /// Limit when the policy sets none (the IR's documented default, 1 h).
    const DEFAULT_MAX_DURATION: Duration = Duration::from_secs(3600);

    pub fn of(policy: Option<&RetryPolicy>) -> RetryPlan {
        let Some(policy) = policy else {
            return RetryPlan {
                max_retries: 0,
                backoff: Duration::ZERO,
                factor: Self::DEFAULT_FACTOR,
                max_duration: Self::DEFAULT_MAX_DURATION,
            };
        };
        let seconds = |text: &Option<String>| {
            text.as_deref()
                .and_then(kfpd_ir::spec::parse_duration_secs)
                .filter(|secs| *secs >= 0.0)
                .map(Duration::from_secs_f64)
        };
        RetryPlan {
            max_retries: u32::try_from(policy.max_retry_count).unwrap_or(0),
            backoff: seconds(&policy.backoff_duration).unwrap_or(Duration::ZERO),
            factor: policy
                .backoff_factor
                .filter(|factor| *factor > 0.0)
                .unwrap_or(Self::DEFAULT_FACTOR),
            max_duration: seconds(&policy.backoff_max_duration)
                .filter(|limit| !limit.is_zero())
                .unwrap_or(Self::DEFAULT_MAX_DURATION),
        }
    }

    /// How long to wait before retrying after failed attempt `attempt` (1-based),
    /// `elapsed` after the first attempt started; `None` when there is no retry left.
    pub fn wait_before_retry(&self, attempt: u32, elapsed: Duration) -> Option<Duration> {
        if attempt > self.max_retries {
            return None;
        }
        let exponent = i32::try_from(attempt - 1).unwrap_or(i32::MAX);
        let wait = self.backoff.as_secs_f64() * self.factor.powi(exponent);
        let wait = Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX);
        let deadline_passed = elapsed
            .checked_add(wait)
            .is_none_or(|end| end > self.max_duration);
        if deadline_passed {
            return None;
        }
        Some(wait)
    }
}

/// Why an attempt whose process ended badly failed: its exit code (or signal) and
/// the last line of its log.
pub fn exit_reason(code: Option<i32>, signal: Option<i32>, last_log_line: Option<&str>) -> String {
    let reason = match (code, signal) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "unknown exit".to_string(),
    };
    match last_log_line {
        Some(line) => format!("failed with {reason}: {line}"),
        None => format!("failed with {reason}"),
    }
}

/// The error of a task whose last attempt failed with `failure`.
pub fn task_failure(display_name: &str, attempt: u32, max_attempts: u32, failure: &str) -> String {
    let tried = if attempt > 1 {
        format!(" (attempt {attempt} of {max_attempts})")
    } else {
        String::new()
    };
    format!("task {display_name:?}{tried}: {failure}")
}

/// The last non-empty line of a log, at most 500 characters, for error messages.
pub fn last_line(log: &str) -> Option<String> {
    log.lines()
        .rev()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .map(|line| line.chars().take(500).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn plan(policy: Value) -> RetryPlan {
        let policy: RetryPolicy = serde_json::from_value(policy).unwrap();
        RetryPlan::of(Some(&policy))
    }

    #[test]
    fn no_policy_means_one_attempt() {
        assert_eq!(
            RetryPlan::of(None).wait_before_retry(1, Duration::ZERO),
            None
        );
    }

    #[test]
    fn backoff_grows_by_the_factor() {
        let plan = plan(json!({"maxRetryCount": 3, "backoffDuration": "1s", "backoffFactor": 2.0}));
        let waits: Vec<Option<Duration>> = (1..=4)
            .map(|attempt| plan.wait_before_retry(attempt, Duration::ZERO))
            .collect();
        assert_eq!(
            waits,
            [
                Some(Duration::from_secs(1)),
                Some(Duration::from_secs(2)),
                Some(Duration::from_secs(4)),
                None
            ]
        );
    }

    #[test]
    fn max_duration_bounds_the_whole_retry_window() {
        let plan = plan(json!({
            "maxRetryCount": 5, "backoffDuration": "10s", "backoffFactor": 1.0, "backoffMaxDuration": "30s"
        }));
        assert_eq!(
            plan.wait_before_retry(1, Duration::from_secs(5)),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            plan.wait_before_retry(2, Duration::from_secs(25)),
            None,
            "the wait would end after 30 s"
        );
    }

    #[test]
    fn defaults_as_upstream() {
        let plan = plan(json!({"maxRetryCount": 2}));
        assert_eq!(plan.backoff, Duration::ZERO);
        assert_eq!(plan.factor, 2.0);
        assert_eq!(plan.max_duration, Duration::from_secs(3600));
        assert_eq!(
            plan.wait_before_retry(2, Duration::ZERO),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn failure_messages() {
        assert_eq!(
            exit_reason(Some(1), None, Some("ValueError: no")),
            "failed with exit code 1: ValueError: no"
        );
        assert_eq!(exit_reason(None, Some(9), None), "failed with signal 9");
        assert_eq!(
            task_failure("train", 3, 3, "failed with exit code 1"),
            "task \"train\" (attempt 3 of 3): failed with exit code 1"
        );
        assert_eq!(task_failure("train", 1, 1, "x"), "task \"train\": x");
        assert_eq!(last_line("a\nlast  \n\n").as_deref(), Some("last"));
        assert_eq!(last_line(" \n"), None);
    }
}
