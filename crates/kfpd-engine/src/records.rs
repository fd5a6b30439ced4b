//! Task rows: created when a task starts, updated when it ends.

use kfpd_store::{Task, TaskKind, TaskState, TaskStateChange};
use serde_json::{Map, Value};

use crate::engine::RunContext;

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A task row this attempt owns.
pub(crate) struct TaskRecord {
    pub task: Task,
}

impl TaskRecord {
    /// Creates (or, on a retry, takes over) the row at `path` in state RUNNING.
    #[allow(clippy::too_many_arguments)]
    pub async fn start(
        context: &RunContext,
        parent_id: &str,
        path: &str,
        kind: TaskKind,
        name: &str,
        display_name: &str,
        iteration_index: i64,
        inputs: &Map<String, Value>,
    ) -> Result<TaskRecord, String> {
        let at = now();
        let previous = context.previous.get(path);
        let mut history = previous
            .map(|task| task.state_history.clone())
            .unwrap_or_default();
        history.push(TaskStateChange {
            time: at,
            state: TaskState::Running,
        });
        let task = Task {
            id: previous
                .map(|task| task.id.clone())
                .unwrap_or_else(kfpd_store::new_id),
            run_id: context.run.id.clone(),
            parent_id: parent_id.to_string(),
            path: path.to_string(),
            kind,
            name: name.to_string(),
            display_name: display_name.to_string(),
            iteration_index,
            state: TaskState::Running,
            state_history: history,
            error: None,
            created_at: previous.map(|task| task.created_at).unwrap_or(at),
            started_at: at,
            finished_at: 0,
            attempts: previous.map(|task| task.attempts).unwrap_or(0),
            inputs: Value::Object(inputs.clone()).to_string(),
            outputs: "{}".to_string(),
            details: "{}".to_string(),
            fingerprint: String::new(),
            cached_from: String::new(),
            cache_scope: String::new(),
        };
        context
            .engine
            .store
            .save_task(&task)
            .await
            .map_err(|error| format!("cannot record task {name:?}: {error}"))?;
        Ok(TaskRecord { task })
    }

    /// Records a task that never ran (skipped, or not started after a failure).
    #[allow(clippy::too_many_arguments)]
    pub async fn not_run(
        context: &RunContext,
        parent_id: &str,
        path: &str,
        kind: TaskKind,
        name: &str,
        display_name: &str,
        state: TaskState,
        reason: &str,
    ) {
        let at = now();
        let task = Task {
            id: context
                .previous
                .get(path)
                .map(|task| task.id.clone())
                .unwrap_or_else(kfpd_store::new_id),
            run_id: context.run.id.clone(),
            parent_id: parent_id.to_string(),
            path: path.to_string(),
            kind,
            name: name.to_string(),
            display_name: display_name.to_string(),
            iteration_index: -1,
            state,
            state_history: vec![TaskStateChange { time: at, state }],
            error: Some(reason.to_string()),
            created_at: at,
            started_at: 0,
            finished_at: at,
            attempts: 0,
            inputs: "{}".to_string(),
            outputs: "{}".to_string(),
            details: "{}".to_string(),
            fingerprint: String::new(),
            cached_from: String::new(),
            cache_scope: String::new(),
        };
        if let Err(error) = context.engine.store.save_task(&task).await {
            tracing::warn!(run = %context.run.id, task = name, %error, "cannot record skipped task");
        }
    }

    pub fn set_detail(&mut self, key: &str, value: Value) {
        let mut details: Map<String, Value> =
            serde_json::from_str(&self.task.details).unwrap_or_default();
        details.insert(key.to_string(), value);
        self.task.details = Value::Object(details).to_string();
    }

    pub async fn save(&self, context: &RunContext) {
        if let Err(error) = context.engine.store.save_task(&self.task).await {
            tracing::warn!(run = %context.run.id, task = %self.task.name, %error, "cannot record task");
        }
    }

    pub async fn finish(
        &mut self,
        context: &RunContext,
        state: TaskState,
        error: Option<String>,
        outputs: &Map<String, Value>,
    ) {
        let at = now();
        self.task.state = state;
        self.task.error = error;
        self.task.finished_at = at;
        self.task.outputs = Value::Object(outputs.clone()).to_string();
        self.task
            .state_history
            .push(TaskStateChange { time: at, state });
        self.save(context).await;
    }
}
