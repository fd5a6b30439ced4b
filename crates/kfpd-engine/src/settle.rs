//! Ending the rows no pod ends, for runs executed on Argo: once a task ended, the
//! DAG instances around it (iterations, loops, DAG tasks, the root) whose tasks
//! all ended get their final state and outputs, as the local engine records them
//! when a DAG returns; the root's end ends the run with the local engine's
//! outcome rules.

use kfpd_core::run as run_rules;
use kfpd_store::{RunState, Task, TaskKind, TaskState};

use crate::drive::{DriveError, Driver};
use crate::records::{now, TaskRecord};

impl Driver {
    /// Ends every DAG instance from `path` up whose tasks all ended; stops at the
    /// first that is still going.
    pub(crate) async fn settle(&mut self, path: &str) -> Result<(), DriveError> {
        let mut at = Some(path.to_string());
        while let Some(current) = at {
            let Some(row) = self.context.previous.get(&current).cloned() else {
                break;
            };
            if !row.state.is_final() {
                let Some(result) = self.ended_result(&current, &row)? else {
                    break;
                };
                let mut record = TaskRecord::resume(row);
                record.finish(
                    &self.context,
                    result.state,
                    result.error.clone(),
                    &result.parameters,
                );
                let kind = record.task.kind;
                self.context
                    .previous
                    .insert(current.clone(), record.task.clone());
                if kind == TaskKind::Root {
                    self.end_run(result.state, result.error).await?;
                }
            }
            at = current
                .rsplit_once('/')
                .map(|(parent, _)| parent.to_string());
        }
        Ok(())
    }

    /// The result of a DAG instance whose tasks all ended; `None` for a task a pod
    /// ends, or a DAG still going.
    fn ended_result(
        &self,
        path: &str,
        row: &Task,
    ) -> Result<Option<kfpd_core::TaskResult>, DriveError> {
        match row.kind {
            TaskKind::Root => {
                let root = self.context.spec.root.clone();
                self.dag_result(path, &root)
            }
            TaskKind::LoopIteration => {
                let located = self.locate(path)?;
                self.dag_result(path, &located.component)
            }
            TaskKind::Loop
            | TaskKind::Dag
            | TaskKind::Condition
            | TaskKind::ConditionBranch
            | TaskKind::ExitHandler => self.result_of(path),
            _ => Ok(None),
        }
    }

    /// Records the run's end from its root's, as the local executor does.
    async fn end_run(&self, state: TaskState, error: Option<String>) -> Result<(), DriveError> {
        let outcome = run_rules::outcome(state, error, false, self.first_failure());
        self.context
            .engine
            .writer
            .flush()
            .await
            .map_err(|error| DriveError::Internal(format!("cannot record the tasks: {error}")))?;
        let run_id = &self.context.run.id;
        match self
            .context
            .engine
            .store
            .transition_run(
                run_id,
                &[RunState::Pending, RunState::Running],
                outcome.state,
                outcome.error.clone(),
                now(),
            )
            .await
        {
            Ok(_) => Ok(()),
            // Stopped or ended by someone else meanwhile: theirs stands.
            Err(kfpd_store::Error::FailedPrecondition(reason)) => {
                tracing::debug!(run = %run_id, %reason, "run already ended");
                Ok(())
            }
            Err(error) => Err(DriveError::Internal(format!(
                "cannot record the end of run {run_id}: {error}"
            ))),
        }
    }

    /// The run's first failure, as the local engine reports it: the earliest task
    /// that failed by itself (no failed task inside it).
    fn first_failure(&self) -> Option<String> {
        let rows = &self.context.previous;
        let has_failed_child = |row: &Task| {
            rows.values()
                .any(|child| child.parent_id == row.id && child.state == TaskState::Failed)
        };
        rows.values()
            .filter(|row| row.state == TaskState::Failed && !has_failed_child(row))
            .min_by_key(|row| (row.finished_at, row.created_at))
            .and_then(|row| row.error.clone())
    }
}
