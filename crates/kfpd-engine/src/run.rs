//! Executing one run: its root DAG, recorded task by task in the store.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use kfpd_core::run::{self as rules, Outcome, RunFacts};
use kfpd_core::Scope;
use kfpd_store::{Run, RunState, Task, TaskKind};
use serde_json::Value;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::context::RunContext;
use crate::dag;
use crate::engine::Engine;
use crate::records::TaskRecord;

impl Engine {
    /// Executes a run that is already RUNNING (claimed by the caller) to its end.
    /// Tasks that succeeded in an earlier attempt of the same run are kept.
    pub async fn execute(self: &Arc<Engine>, run: Run, cancel: CancellationToken) -> Outcome {
        let run_id = run.id.clone();
        let outcome = match self.try_execute(run, cancel).await {
            Ok(outcome) => outcome,
            Err(message) => Outcome {
                state: RunState::Failed,
                error: Some(message),
            },
        };
        // Every task row is stored before the caller records the run's end.
        if let Err(error) = self.writer.flush().await {
            tracing::warn!(run = %run_id, %error, "cannot record the run's last tasks");
        }
        outcome
    }

    async fn try_execute(
        self: &Arc<Engine>,
        run: Run,
        cancel: CancellationToken,
    ) -> Result<Outcome, String> {
        let spec_json = self
            .store
            .run_spec(&run.id)
            .await
            .map_err(|error| format!("cannot read the run's pipeline spec: {error}"))?;
        let spec_value: Value = serde_json::from_str(&spec_json)
            .map_err(|error| format!("the run's pipeline spec is not JSON: {error}"))?;
        let package = kfpd_ir::parse_spec_value(&spec_value).map_err(|error| error.to_string())?;
        let spec = package.spec().clone();
        let pipeline_name = package.pipeline_name().to_string();

        let (parameters, requested_root) = rules::runtime_config(&run.runtime_config)?;
        // CreateRun checked the root already; this checks again in case the
        // server's allowed roots changed since.
        let pipeline_root = self
            .artifacts
            .run_root(&requested_root, &run.namespace)
            .map_err(|error| error.to_string())?;
        let root_parameters = rules::root_inputs(&spec, parameters)?;

        let previous: HashMap<String, Task> = self
            .store
            .list_tasks(&run.id)
            .await
            .map_err(|error| format!("cannot read the run's tasks: {error}"))?
            .into_iter()
            .map(|task| (task.path.clone(), task))
            .collect();

        let context = Arc::new(RunContext {
            engine: Arc::clone(self),
            facts: RunFacts::new(&run, &pipeline_name, &pipeline_root),
            spec: spec.clone(),
            platform: package.platform().cloned(),
            cancel: cancel.clone(),
            previous,
            first_error: Mutex::new(None),
            log_uploads: Mutex::new(JoinSet::new()),
            in_workspace: Mutex::default(),
            run,
        });
        // Shared by the run's tasks (`{{$.workspace_path}}`, `TMPDIR`); made once, here.
        for dir in [context.workspace_dir(), context.temp_dir()] {
            tokio::fs::create_dir_all(&dir)
                .await
                .map_err(|error| format!("cannot create {}: {error}", dir.display()))?;
        }

        let display_name = if spec.pipeline_info.display_name.is_empty() {
            pipeline_name.clone()
        } else {
            spec.pipeline_info.display_name.clone()
        };
        let mut root = TaskRecord::start(
            &context,
            "",
            "root",
            TaskKind::Root,
            &pipeline_name,
            &display_name,
            -1,
            &root_parameters,
        );
        let scope = Scope {
            parameters: root_parameters,
            artifacts: Default::default(),
        };
        let result = dag::run_dag(
            Arc::clone(&context),
            spec.root.clone(),
            scope,
            root.task.id.clone(),
            "root".to_string(),
        )
        .await;
        root.finish(
            &context,
            result.state,
            result.error.clone(),
            &result.parameters,
        );
        let uploads = context
            .log_uploads
            .lock()
            .map(|mut uploads| std::mem::take(&mut *uploads))
            .unwrap_or_default();
        uploads.join_all().await;

        let first_failure = context
            .first_error
            .lock()
            .ok()
            .and_then(|first| first.clone());
        Ok(rules::outcome(
            result.state,
            result.error,
            cancel.is_cancelled(),
            first_failure,
        ))
    }
}
