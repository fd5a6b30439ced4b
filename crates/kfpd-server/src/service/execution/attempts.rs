//! Retry attempts of a container task as the engine records them in the task row's
//! `details` (`attempt`: the latest one started; `attempts`: one entry per finished
//! attempt). Upstream runs every attempt in its own pod; kfpd names each attempt with
//! a node id of its own, `<task_id>-attempt-<n>`, usable wherever a pod name is:
//! `executor_detail` and the log endpoint.

use std::collections::HashMap;

use kfpd_api::v2beta1 as api;
use kfpd_store::{TaskState, TaskStateChange};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Between a task id and an attempt number in an attempt's node id.
const SEPARATOR: &str = "-attempt-";

/// One attempt as recorded by the engine.
#[derive(Clone, Debug, Default, Deserialize)]
pub(crate) struct Attempt {
    /// 1-based.
    pub attempt: u32,
    #[serde(default)]
    pub started_at: i64,
    #[serde(default)]
    pub finished_at: i64,
    /// `RUNNING`, then how the attempt ended: `SUCCEEDED`, `FAILED` or `CANCELED`.
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub error: Option<String>,
    /// The attempt's byte range in the task's log; older rows have none.
    #[serde(default)]
    pub log_offset: Option<u64>,
    #[serde(default)]
    pub log_length: Option<u64>,
}

impl Attempt {
    fn failed(&self) -> bool {
        self.state == "FAILED"
    }

    /// The task state that ended the attempt; None while it runs.
    fn outcome(&self) -> Option<TaskState> {
        match self.state.as_str() {
            "SUCCEEDED" => Some(TaskState::Succeeded),
            "FAILED" => Some(TaskState::Failed),
            "CANCELED" => Some(TaskState::Canceled),
            _ => None,
        }
    }

    fn ended(&self) -> bool {
        self.outcome().is_some() || self.finished_at > 0
    }

    fn range_end(&self) -> Option<u64> {
        Some(self.log_offset? + self.log_length?)
    }
}

/// The attempts of one task row.
#[derive(Debug, Default)]
pub(crate) struct Attempts {
    /// Recorded attempts, by number.
    recorded: Vec<Attempt>,
    /// The latest attempt started (possibly still running); 0 when none started.
    pub latest: u32,
}

impl Attempts {
    pub fn of(details: &Map<String, Value>) -> Attempts {
        let mut recorded: Vec<Attempt> = details
            .get("attempts")
            .and_then(Value::as_array)
            .map(|entries| {
                entries
                    .iter()
                    .filter_map(|entry| Attempt::deserialize(entry).ok())
                    .filter(|attempt| attempt.attempt > 0)
                    .collect()
            })
            .unwrap_or_default();
        recorded.sort_by_key(|attempt| attempt.attempt);
        recorded.dedup_by_key(|attempt| attempt.attempt);
        let started = details
            .get("attempt")
            .and_then(Value::as_u64)
            .and_then(|number| u32::try_from(number).ok())
            .unwrap_or(0);
        let latest = recorded
            .last()
            .map(|attempt| attempt.attempt)
            .unwrap_or(0)
            .max(started);
        Attempts { recorded, latest }
    }

    fn get(&self, number: u32) -> Option<&Attempt> {
        self.recorded
            .iter()
            .find(|attempt| attempt.attempt == number)
    }

    /// Whether attempt `number` was started.
    pub fn exists(&self, number: u32) -> bool {
        number >= 1 && number <= self.latest
    }

    /// Whether attempt `number` can write no more to the log.
    pub fn ended(&self, number: u32) -> bool {
        number < self.latest || self.get(number).is_some_and(Attempt::ended)
    }

    /// The byte range of attempt `number` in the task's log: its start, and its end
    /// when known (None: up to the end of the log). Without a recorded range the
    /// attempt's log is the whole log.
    pub fn log_range(&self, number: u32) -> (u64, Option<u64>) {
        match self.get(number) {
            Some(attempt) => match attempt.log_offset {
                Some(offset) => (offset, attempt.range_end()),
                None => (0, None),
            },
            // Running and not recorded yet: it begins where the previous one ended.
            None => match number
                .checked_sub(1)
                .and_then(|previous| self.get(previous))
                .and_then(Attempt::range_end)
            {
                Some(start) => (start, None),
                None => (0, None),
            },
        }
    }

    /// Upstream's `executor_detail`: the latest attempt is the main job, earlier
    /// failed ones are the failed main jobs.
    pub fn executor_detail(&self, task_id: &str) -> Option<api::PipelineTaskExecutorDetail> {
        if self.latest == 0 {
            return None;
        }
        let failed_main_jobs = self
            .recorded
            .iter()
            .filter(|attempt| attempt.attempt < self.latest && attempt.failed())
            .map(|attempt| node_id(task_id, attempt.attempt))
            .collect();
        Some(api::PipelineTaskExecutorDetail {
            main_job: node_id(task_id, self.latest),
            failed_main_jobs,
            ..Default::default()
        })
    }

    /// The error of each failed attempt, keyed by the index of the FAILED entry that
    /// ended it in `history`. Every attempt begins with a RUNNING entry, so the last
    /// `latest` RUNNING entries are this execution's attempts (earlier ones belong to
    /// executions before a retry of the run), and the entry after an attempt's RUNNING
    /// entry is how it ended. Nothing is matched unless every recorded attempt agrees
    /// with the history, so an error is never put on the wrong entry.
    pub fn history_errors(&self, history: &[TaskStateChange]) -> HashMap<usize, String> {
        let running: Vec<usize> = history
            .iter()
            .enumerate()
            .filter(|(_, change)| change.state == TaskState::Running)
            .map(|(index, _)| index)
            .collect();
        let latest = self.latest as usize;
        if self.recorded.is_empty() || running.len() < latest {
            return HashMap::new();
        }
        let starts = &running[running.len() - latest..];
        let mut errors = HashMap::new();
        for attempt in &self.recorded {
            let Some(expected) = attempt.outcome() else {
                continue;
            };
            let Some(&start) = starts.get(attempt.attempt as usize - 1) else {
                return HashMap::new();
            };
            let end = start + 1;
            let Some(outcome) = history.get(end) else {
                return HashMap::new();
            };
            let in_order = (attempt.started_at == 0 || history[start].time <= attempt.started_at)
                && outcome.time >= attempt.finished_at;
            if outcome.state != expected || !in_order {
                return HashMap::new();
            }
            if let Some(error) = attempt.error.as_ref().filter(|_| attempt.failed()) {
                errors.insert(end, error.clone());
            }
        }
        errors
    }
}

/// The node id of attempt `number` of task `task_id`.
pub(crate) fn node_id(task_id: &str, number: u32) -> String {
    format!("{task_id}{SEPARATOR}{number}")
}

/// `(task_id, attempt)` of an attempt's node id; None for anything else.
pub(crate) fn parse_node_id(node_id: &str) -> Option<(&str, u32)> {
    let (task_id, number) = node_id.rsplit_once(SEPARATOR)?;
    let number: u32 = number.parse().ok()?;
    (!task_id.is_empty() && number >= 1).then_some((task_id, number))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attempts(details: Value) -> Attempts {
        Attempts::of(details.as_object().expect("object"))
    }

    fn change(time: i64, state: TaskState) -> TaskStateChange {
        TaskStateChange { time, state }
    }

    fn failed_twice() -> Attempts {
        attempts(json!({
            "attempt": 3,
            "attempts": [
                {"attempt": 1, "started_at": 10, "finished_at": 11, "state": "FAILED",
                 "error": "exit 1", "log_offset": 0, "log_length": 5},
                {"attempt": 2, "started_at": 12, "finished_at": 13, "state": "FAILED",
                 "error": "exit 2", "log_offset": 5, "log_length": 7},
                {"attempt": 3, "started_at": 14, "finished_at": 15, "state": "SUCCEEDED",
                 "log_offset": 12, "log_length": 3},
            ],
        }))
    }

    #[test]
    fn node_ids_round_trip() {
        assert_eq!(node_id("t-1", 2), "t-1-attempt-2");
        assert_eq!(parse_node_id("t-1-attempt-2"), Some(("t-1", 2)));
        assert_eq!(
            parse_node_id("t-attempt-1-attempt-10"),
            Some(("t-attempt-1", 10))
        );
        for other in [
            "t-1",
            "t-attempt-0",
            "t-attempt-x",
            "-attempt-1",
            "t-attempt-",
        ] {
            assert_eq!(parse_node_id(other), None, "{other}");
        }
    }

    #[test]
    fn executor_detail_names_the_last_attempt_and_the_failed_ones() {
        let detail = failed_twice().executor_detail("t").expect("detail");
        assert_eq!(detail.main_job, "t-attempt-3");
        assert_eq!(detail.failed_main_jobs, ["t-attempt-1", "t-attempt-2"]);
        // A running third attempt that is not recorded yet is the main job already.
        let running = attempts(json!({"attempt": 2, "attempts": [
            {"attempt": 1, "state": "FAILED", "error": "x"}]}));
        let detail = running.executor_detail("t").expect("detail");
        assert_eq!(detail.main_job, "t-attempt-2");
        assert_eq!(detail.failed_main_jobs, ["t-attempt-1"]);
        assert!(attempts(json!({})).executor_detail("t").is_none());
    }

    #[test]
    fn log_ranges() {
        let all = failed_twice();
        assert_eq!(all.log_range(1), (0, Some(5)));
        assert_eq!(all.log_range(2), (5, Some(12)));
        assert_eq!(all.log_range(3), (12, Some(15)));
        assert!(all.ended(3) && all.ended(1));
        let running = attempts(json!({"attempt": 2, "attempts": [
            {"attempt": 1, "state": "FAILED", "log_offset": 0, "log_length": 4}]}));
        assert_eq!(running.log_range(2), (4, None));
        assert!(running.ended(1) && !running.ended(2));
        // Without ranges an attempt's log is the whole log.
        let bare = attempts(json!({"attempt": 2, "attempts": [{"attempt": 1, "state": "FAILED"}]}));
        assert_eq!(bare.log_range(1), (0, None));
        assert_eq!(bare.log_range(2), (0, None));
    }

    #[test]
    fn errors_go_to_the_failed_entries_of_this_execution() {
        use TaskState::*;
        let history = vec![
            // An earlier execution of the run, before a retry.
            change(1, Running),
            change(2, Failed),
            change(10, Running),
            change(11, Failed),
            change(12, Running),
            change(13, Failed),
            change(14, Running),
            change(15, Succeeded),
        ];
        let errors = failed_twice().history_errors(&history);
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[&3], "exit 1");
        assert_eq!(errors[&5], "exit 2");
        // A history that does not match the attempts gets no errors.
        let short = &history[..5];
        assert!(failed_twice().history_errors(short).is_empty());
        let mut swapped = history.clone();
        swapped[7].state = Failed;
        assert!(failed_twice().history_errors(&swapped).is_empty());
        // An attempt recorded when it starts, then canceled.
        let canceled = attempts(json!({"attempt": 2, "attempts": [
            {"attempt": 1, "started_at": 1, "finished_at": 2, "state": "FAILED", "error": "boom"},
            {"attempt": 2, "started_at": 3, "finished_at": 4, "state": "CANCELED"}]}));
        let history = [
            change(1, Running),
            change(2, Failed),
            change(3, Running),
            change(4, Canceled),
        ];
        let errors = canceled.history_errors(&history);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[&1], "boom");
        assert!(canceled.ended(2));
        // While the second attempt runs its entry says RUNNING.
        let running = attempts(json!({"attempt": 2, "attempts": [
            {"attempt": 1, "started_at": 1, "finished_at": 2, "state": "FAILED", "error": "boom",
             "log_offset": 0, "log_length": 9},
            {"attempt": 2, "started_at": 3, "state": "RUNNING", "log_offset": 9}]}));
        assert_eq!(running.history_errors(&history[..3]).len(), 1);
        assert!(!running.ended(2));
        assert_eq!(running.log_range(2), (9, None));
    }
}
