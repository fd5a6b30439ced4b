//! Task rows: created when a task starts, updated when it ends. A row is written
//! once per change of state. Only a container's start is waited for (its row is
//! RUNNING before its process is); everything else goes through the writer's queue.

use kfpd_store::{Task, TaskKind, TaskState, TaskStateChange};
use serde_json::{Map, Value};

use crate::context::RunContext;

pub(crate) fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A task row this attempt owns.
pub(crate) struct TaskRecord {
    pub task: Task,
    /// The row's `details`, encoded into it only when the row is written.
    details: Map<String, Value>,
}

impl TaskRecord {
    /// Creates (or, on a retry, takes over) the row at `path` in state RUNNING and
    /// queues it: a DAG's row goes with the first write of a task inside it.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        context: &RunContext,
        parent_id: &str,
        path: &str,
        kind: TaskKind,
        name: &str,
        display_name: &str,
        iteration_index: i64,
        inputs: &Map<String, Value>,
    ) -> TaskRecord {
        let record = TaskRecord::begin(
            context,
            parent_id,
            path,
            kind,
            name,
            display_name,
            iteration_index,
            inputs,
        );
        record.save(context);
        record
    }

    /// [`TaskRecord::start`] without queueing: for a task whose row is written once
    /// it knows more (its command and log), or only when it ends.
    #[allow(clippy::too_many_arguments)]
    pub fn begin(
        context: &RunContext,
        parent_id: &str,
        path: &str,
        kind: TaskKind,
        name: &str,
        display_name: &str,
        iteration_index: i64,
        inputs: &Map<String, Value>,
    ) -> TaskRecord {
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
        TaskRecord {
            task,
            details: Map::new(),
        }
    }

    /// Takes over a stored row as it is, details included (a launcher reporting on
    /// a task the driver request started).
    pub fn resume(task: Task) -> TaskRecord {
        let details = serde_json::from_str(&task.details).unwrap_or_default();
        TaskRecord { task, details }
    }

    pub fn detail(&self, key: &str) -> Option<&Value> {
        self.details.get(key)
    }

    /// Writes the row now, with whatever rows are queued.
    pub async fn write(&self, context: &RunContext) -> Result<(), String> {
        context
            .engine
            .writer
            .write(self.row())
            .await
            .map_err(|error| format!("cannot record task {:?}: {error}", self.task.name))
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
        context.engine.writer.defer(task);
    }

    pub fn set_detail(&mut self, key: &str, value: Value) {
        self.details.insert(key.to_string(), value);
    }

    /// The row as it is now, details included.
    fn row(&self) -> Task {
        let mut task = self.task.clone();
        task.details = Value::Object(self.details.clone()).to_string();
        task
    }

    /// Queues the row as it is now; it is stored with the next write.
    pub fn save(&self, context: &RunContext) {
        context.engine.writer.defer(self.row());
    }

    pub fn finish(
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
        self.save(context);
    }
}
