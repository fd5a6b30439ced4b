//! Runs on Argo (`--executor argo`): submitting a run's Workflow, stopping and
//! deleting it, and ReportService's ReportWorkflow, through which the persistence
//! agent tells what the cluster did.

use std::sync::Arc;

use kfpd_cluster::status::{self, Nodes, Phase};
use kfpd_cluster::Created;
use kfpd_store::{Run, RunState, TaskKind, TaskState, TaskStateChange};

use super::Api;
use crate::argo::Argo;
use crate::error::{Code, Error, Result};

/// The states a run is in before it ends.
const UNFINISHED: [RunState; 4] = [
    RunState::Pending,
    RunState::Running,
    RunState::Canceling,
    RunState::Unspecified,
];

impl Api {
    /// Submits runs as Argo Workflows from now on.
    pub fn with_argo(mut self, argo: Arc<Argo>) -> Api {
        self.argo = Some(argo);
        self
    }

    pub fn argo(&self) -> Option<&Arc<Argo>> {
        self.argo.as_ref()
    }

    /// Compiles and creates the run's Workflow. Whatever stops it (the compiler,
    /// admission, a quota, an API server that does not answer) ends the run
    /// FAILED with that message: a run never waits PENDING for a Workflow that
    /// does not exist. Returns the run as it is afterwards.
    pub(super) async fn submit_workflow(&self, run: Run) -> Result<Run> {
        Ok(self.submit_workflow_with(run, None).await?.0)
    }

    /// [`Api::submit_workflow`], the workspace mounting `workspace_claim` when
    /// given; also returns the created Workflow.
    async fn submit_workflow_with(
        &self,
        run: Run,
        workspace_claim: Option<&str>,
    ) -> Result<(Run, Option<Created>)> {
        let Some(argo) = &self.argo else {
            return Ok((run, None));
        };
        let namespace = argo.namespace_of(&run.namespace).to_string();
        let submitted = async {
            let spec = self
                .store
                .run_spec(&run.id)
                .await
                .map_err(|error| format!("cannot read the run's pipeline spec: {error}"))?;
            let spec: serde_json::Value = serde_json::from_str(&spec)
                .map_err(|error| format!("the run's pipeline spec is not JSON: {error}"))?;
            let package = kfpd_ir::parse_spec_value(&spec).map_err(|error| error.to_string())?;
            let (parameters, _) = kfpd_core::run::runtime_config(&run.runtime_config)
                .map_err(|error| error.to_string())?;
            let workflow = argo.compile(
                &package,
                &run.id,
                parameters,
                &run.service_account,
                workspace_claim,
            )?;
            argo.cluster
                .submit(&namespace, &workflow)
                .await
                .map_err(|error| error.to_string())
        }
        .await;
        match submitted {
            Ok(created) => {
                tracing::info!(run_id = %run.id, workflow = %created.name, namespace = %namespace, "workflow submitted");
                Ok((run, Some(created)))
            }
            Err(message) => {
                tracing::warn!(run_id = %run.id, error = %message, "workflow not submitted");
                let failed = self
                    .store
                    .transition_run(
                        &run.id,
                        &UNFINISHED,
                        RunState::Failed,
                        Some(message),
                        self.now(),
                    )
                    .await?;
                Ok((failed, None))
            }
        }
    }

    /// Tells Argo to stop the run's Workflow (`spec.shutdown: Terminate`).
    pub(super) async fn stop_workflow(&self, run: &Run) -> Result<()> {
        let Some(argo) = &self.argo else {
            return Ok(());
        };
        let namespace = argo.namespace_of(&run.namespace);
        argo.cluster
            .terminate(namespace, &run.id)
            .await
            .map_err(|error| Error::unavailable(format!("terminate run {}: {error}", run.id)))?;
        Ok(())
    }

    /// Deletes the run's Workflows (and so their pods); the run's rows stay.
    pub(super) async fn delete_workflows(&self, run: &Run) -> Result<()> {
        let Some(argo) = &self.argo else {
            return Ok(());
        };
        let namespace = argo.namespace_of(&run.namespace);
        argo.cluster
            .delete_run(namespace, &run.id)
            .await
            .map_err(|error| {
                Error::unavailable(format!(
                    "cannot delete the Workflow of run {}: {error}",
                    run.id
                ))
            })
    }

    /// DeleteRun and ArchiveRun: deletes the run's Workflows, then a workspace
    /// claim a retry handed over but no Workflow owns (the garbage collector
    /// deletes those that have an owner). The claim is best effort: a failure
    /// is logged with the run, the Workflows are what must go.
    pub(super) async fn clean_up_workflows(&self, run: &Run) -> Result<()> {
        self.delete_workflows(run).await?;
        let Some(argo) = &self.argo else {
            return Ok(());
        };
        if !self.has_workspace(run).await {
            return Ok(());
        }
        let namespace = argo.namespace_of(&run.namespace);
        match argo
            .cluster
            .delete_unowned_run_claims(namespace, &run.id)
            .await
        {
            Ok(claims) => {
                for claim in claims {
                    tracing::info!(run_id = %run.id, claim = %claim, "deleted the run's unowned workspace claim");
                }
            }
            Err(error) => {
                tracing::warn!(run_id = %run.id, error = %error, "the run's workspace claim was not deleted");
            }
        }
        Ok(())
    }

    /// RetryRun on Argo: the failed part runs again in a new Workflow. Tasks that
    /// succeeded, were cached or skipped keep their rows (the driver answers them
    /// without a pod); every other row (failed, canceled, or left running) goes
    /// back to PENDING with its attempts cleared, so its driver request and
    /// launcher run it afresh. The old Workflow is deleted first; its workspace
    /// claim is taken off it beforehand and mounted by the new one, which
    /// becomes its owner, so the kept tasks' files are still there.
    pub(super) async fn retry_on_argo(&self, run: Run) -> Result<()> {
        let claim = self.hand_over_workspace(&run).await?;
        self.delete_workflows(&run).await?;
        let now = self.now();
        let mut reset = Vec::new();
        for mut task in self.store.list_tasks(&run.id).await? {
            // Skipped by a condition or a skipped upstream: the same again.
            if task.state.is_done() || task.state == TaskState::Skipped {
                continue;
            }
            let mut details: serde_json::Map<String, serde_json::Value> =
                serde_json::from_str(&task.details).unwrap_or_default();
            for key in [
                "attempt",
                "attempts",
                "exit_code",
                "pod_name",
                "pod_namespace",
            ] {
                details.remove(key);
            }
            task.details = serde_json::Value::Object(details).to_string();
            task.state = TaskState::Pending;
            task.state_history.push(TaskStateChange {
                time: now,
                state: TaskState::Pending,
            });
            task.error = None;
            task.finished_at = 0;
            task.attempts = 0;
            reset.push(task);
        }
        self.store.save_tasks(&reset).await?;
        let pending = self
            .store
            .transition_run(
                &run.id,
                &[RunState::Failed, RunState::Canceled],
                RunState::Pending,
                None,
                now,
            )
            .await?;
        // A submission that fails leaves the claim labelled with the run and
        // without an owner: the next retry takes it again, DeleteRun and
        // ArchiveRun delete it.
        let (submitted, created) = self.submit_workflow_with(pending, claim.as_deref()).await?;
        if submitted.state == RunState::Failed {
            return Err(Error::unavailable(format!(
                "retry run {}: {}",
                run.id,
                submitted.error.unwrap_or_default()
            )));
        }
        if let (Some(argo), Some(claim), Some(created)) = (&self.argo, &claim, &created) {
            let namespace = argo.namespace_of(&run.namespace);
            match argo.cluster.adopt_claim(namespace, claim, created).await {
                Ok(()) => {
                    tracing::info!(run_id = %run.id, claim = %claim, workflow = %created.name, "workspace claim handed to the retry's workflow");
                }
                Err(error) => {
                    // The run goes on; only the claim's deletion with the Workflow is lost.
                    tracing::warn!(run_id = %run.id, claim = %claim, error = %error, "workspace claim left without an owner: DeleteRun and ArchiveRun delete it, the workflow's TTL does not");
                }
            }
        }
        Ok(())
    }

    /// Before a retry deletes the run's Workflow: takes the workspace claim off
    /// it (so Kubernetes' garbage collector leaves it) and returns its name for
    /// the new Workflow to mount. `None` when the pipeline has no workspace, or
    /// has one whose claim never existed and that no succeeded task wrote to
    /// (the retry gets a new, empty claim). Nothing has changed when this fails.
    async fn hand_over_workspace(&self, run: &Run) -> Result<Option<String>> {
        let Some(argo) = &self.argo else {
            return Ok(None);
        };
        if !self.has_workspace(run).await {
            return Ok(None);
        }
        let namespace = argo.namespace_of(&run.namespace);
        let kept = |error: kfpd_cluster::Error| {
            Error::unavailable(format!(
                "retry run {}: the run's workspace cannot be kept: {error}",
                run.id
            ))
        };
        let workflows = argo
            .cluster
            .run_workflow_objects(namespace, &run.id)
            .await
            .map_err(kept)?;
        for workflow in &workflows {
            let Some(claim) = kfpd_cluster::workflow_claim(workflow, kfpd_argo::WORKSPACE_VOLUME)
            else {
                continue;
            };
            let owner = workflow.metadata.uid.as_deref().unwrap_or_default();
            if argo
                .cluster
                .release_claim(namespace, &claim, owner, &run.id)
                .await
                .map_err(kept)?
                .is_some()
            {
                return Ok(Some(claim));
            }
        }
        // Released by an earlier retry whose Workflow was never created.
        let unowned = argo
            .cluster
            .unowned_run_claims(namespace, &run.id)
            .await
            .map_err(kept)?;
        if let Some(claim) = unowned.into_iter().next() {
            return Ok(Some(claim));
        }
        let wrote: Vec<String> = self
            .store
            .list_tasks(&run.id)
            .await?
            .into_iter()
            .filter(|task| {
                task.state == TaskState::Succeeded
                    && matches!(task.kind, TaskKind::Runtime | TaskKind::Importer)
            })
            .map(|task| task.path)
            .collect();
        if wrote.is_empty() {
            return Ok(None);
        }
        Err(Error::new(
            Code::FailedPrecondition,
            format!(
                "run {} cannot be retried: its workspace volume claim no longer exists (deleted with its Workflow, or by hand), and tasks that succeeded ({}) may have left files there that the retried tasks read; create a new run instead",
                run.id,
                wrote.join(", ")
            ),
        ))
    }

    /// Whether the run's pipeline has a workspace (`pipelineConfig.workspace`).
    /// A spec that cannot be read counts as none: its submission says why.
    async fn has_workspace(&self, run: &Run) -> bool {
        let Ok(spec) = self.store.run_spec(&run.id).await else {
            return false;
        };
        let Ok(spec) = serde_json::from_str::<serde_json::Value>(&spec) else {
            return false;
        };
        let Ok(package) = kfpd_ir::parse_spec_value(&spec) else {
            return false;
        };
        package
            .platform()
            .and_then(|platform| platform.kubernetes())
            .and_then(|kubernetes| kubernetes.pipeline_config.as_ref())
            .and_then(|config| config.workspace.as_ref())
            .is_some()
    }

    /// Unfinished runs whose Workflow goes to `namespace` (`None`: every run),
    /// with their creation times, for the agent's reconcile. Read from the store
    /// in every mode: the agent is not a user and is not scoped to one.
    pub async fn unfinished_runs(&self, namespace: Option<&str>) -> Result<Vec<(String, i64)>> {
        let filter = serde_json::json!({"predicates": [{
            "key": "state",
            "operation": "IN",
            "string_values": {"values": ["PENDING", "RUNNING", "CANCELING"]},
        }]})
        .to_string();
        let mut runs = Vec::new();
        let mut page_token = String::new();
        loop {
            let list = super::list::query(
                kfpd_store::list::Resource::Run,
                500,
                &page_token,
                "",
                &filter,
            )?;
            let page = self
                .store
                .list_runs(&kfpd_store::Scope::default(), &list)
                .await?;
            for run in page.items {
                let goes_to = match &self.argo {
                    Some(argo) => argo.namespace_of(&run.namespace).to_string(),
                    None => run.namespace.clone(),
                };
                if namespace.is_none_or(|watched| watched == goes_to) {
                    runs.push((run.id, run.created_at));
                }
            }
            if page.next_page_token.is_empty() {
                return Ok(runs);
            }
            page_token = page.next_page_token;
        }
    }

    /// ReportWorkflow: records what a Workflow says about its run. The server
    /// ends tasks and runs itself as the launchers report; a report adds what
    /// only the cluster knows: a pod that failed without its launcher reporting
    /// (never started, killed, evicted), a Workflow that ended, was stopped or
    /// deleted. A run that has ended keeps its state.
    pub async fn report_workflow(&self, text: &str) -> Result<()> {
        let workflow = status::parse_text(text)
            .map_err(|error| Error::invalid(format!("report workflow: {error}")))?;
        // The reporter names the Workflow's namespace: one not allowed to report
        // there is refused (403) before the run is looked up, so that a not-found
        // answer means the run is not there for a reporter of that namespace (a
        // persistence agent deletes such Workflows as orphans) and never that the
        // reporter lacks the right.
        self.check_namespace(
            &workflow.namespace,
            kfpd_auth::Resource::Runs,
            kfpd_auth::Verb::Report,
        )
        .await?;
        let run = self
            .run_for(&workflow.run_id, kfpd_auth::Verb::Report)
            .await?;
        let now = self.now();
        let ended = workflow.phase.is_final() || workflow.deleting;
        if !run.state.is_terminal() {
            if workflow.phase == Phase::Running && run.state == RunState::Pending {
                self.store
                    .transition_run(&run.id, &[RunState::Pending], RunState::Running, None, now)
                    .await
                    .ok();
            }
            self.end_resource_tasks(&run, &workflow).await?;
            if ended {
                self.end_from_workflow(&run, &workflow).await?;
            }
        }
        if workflow.phase.is_final() && !workflow.deleting && !workflow.persisted {
            if let Some(argo) = &self.argo {
                if let Err(error) = argo
                    .cluster
                    .mark_persisted(&workflow.namespace, &workflow.name)
                    .await
                {
                    // The next report tries again; nothing is lost meanwhile.
                    tracing::warn!(workflow = %workflow.name, %error, "cannot label workflow as recorded");
                }
            }
        }
        Ok(())
    }

    /// `CreatePVC` / `DeletePVC` tasks run as Argo `resource` nodes, on which no
    /// launcher reports: each report ends those whose node ended, SUCCEEDED or
    /// FAILED with the node's message, and with them the DAGs around them and the
    /// run (while the Workflow still runs, so a failed PVC fails the run as a failed
    /// pod's task does).
    async fn end_resource_tasks(&self, run: &Run, workflow: &status::Workflow) -> Result<()> {
        let (Nodes::Listed(nodes), Some(engine)) = (&workflow.nodes, &self.driver) else {
            return Ok(());
        };
        let mut ended: Vec<&status::Node> = nodes
            .iter()
            .filter(|node| node.resource && node.task_path.is_some())
            .filter(|node| node.failed() || node.phase == "Succeeded")
            .collect();
        if ended.is_empty() {
            return Ok(());
        }
        // Only tasks still open: a report repeats the nodes that ended before.
        let open: std::collections::HashSet<String> = self
            .store
            .list_tasks(&run.id)
            .await?
            .into_iter()
            .filter(|task| !task.state.is_final())
            .map(|task| task.path)
            .collect();
        ended.retain(|node| {
            node.task_path
                .as_ref()
                .is_some_and(|path| open.contains(path))
        });
        ended.sort_by_key(|node| node.finished_at.unwrap_or(i64::MAX));
        for node in ended {
            let Some(path) = &node.task_path else {
                continue;
            };
            let outcome = if node.failed() {
                Err(if node.message.is_empty() {
                    format!("resource {} {}", node.name, node.phase.to_lowercase())
                } else {
                    format!("resource {}: {}", node.name, node.message)
                })
            } else {
                Ok(())
            };
            if let Err(error) = engine.end_resource_task(&run.id, path, outcome).await {
                tracing::debug!(run_id = %run.id, task = %path, %error, "task not ended from its resource node");
            }
        }
        Ok(())
    }

    async fn end_from_workflow(&self, run: &Run, workflow: &status::Workflow) -> Result<()> {
        // Pods that failed without their launcher's report fail their tasks; that
        // ends the DAGs around them and the run as the launcher's report would.
        let mut first_pod_failure = None;
        if let (Nodes::Listed(nodes), Some(engine)) = (&workflow.nodes, &self.driver) {
            let mut failed: Vec<&status::Node> = nodes
                .iter()
                .filter(|node| matches!(node.kind.as_str(), "Pod" | "Retry") && node.failed())
                .filter(|node| !node.resource)
                .filter(|node| node.task_path.is_some())
                .collect();
            failed.sort_by_key(|node| node.finished_at.unwrap_or(i64::MAX));
            for node in failed {
                let Some(path) = &node.task_path else {
                    continue;
                };
                let message = if node.message.is_empty() {
                    format!("pod {} {}", node.name, node.phase.to_lowercase())
                } else {
                    format!("pod {}: {}", node.name, node.message)
                };
                match engine.fail_task(&run.id, path, &message).await {
                    Ok(true) => {
                        first_pod_failure.get_or_insert(message);
                    }
                    Ok(false) => {}
                    Err(error) => {
                        tracing::debug!(run_id = %run.id, task = %path, %error, "task not failed from its node")
                    }
                }
            }
        }
        if let Nodes::Offloaded { version } = &workflow.nodes {
            tracing::info!(
                workflow = %workflow.name,
                offload_version = %version,
                "node status offloaded to argo's database, which kfpd does not read: the run ends from the workflow's phase"
            );
        }
        let run = self.store.get_run(&run.id).await?;
        if run.state.is_terminal() {
            return Ok(());
        }
        let name = if workflow.name.is_empty() {
            format!("of run {}", run.id)
        } else {
            workflow.name.clone()
        };
        let (state, error) = if run.state == RunState::Canceling || workflow.shutdown {
            (RunState::Canceled, Some("run was terminated".to_string()))
        } else if workflow.phase == Phase::Succeeded {
            (RunState::Succeeded, None)
        } else if !workflow.phase.is_final() {
            (
                RunState::Failed,
                Some(format!("workflow {name} was deleted before the run ended")),
            )
        } else {
            let message = first_pod_failure
                .or_else(|| Some(workflow.message.clone()).filter(|m| !m.is_empty()))
                .unwrap_or_else(|| format!("workflow {name} {:?}", workflow.phase).to_lowercase());
            (RunState::Failed, Some(message))
        };
        match self
            .store
            .transition_run(&run.id, &UNFINISHED, state, error, self.now())
            .await
        {
            Ok(_) => self.end_open_tasks(&run.id).await,
            // Ended meanwhile by a launcher's report: that state stands.
            Err(kfpd_store::Error::FailedPrecondition(_)) => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Tasks still open when the Workflow ended (stopped, deleted, or their pods
    /// gone without a report) will never report: they end CANCELED.
    async fn end_open_tasks(&self, run_id: &str) -> Result<()> {
        let now = self.now();
        let mut ended = Vec::new();
        for mut task in self.store.list_tasks(run_id).await? {
            if task.state.is_final() {
                continue;
            }
            task.state = TaskState::Canceled;
            task.state_history.push(TaskStateChange {
                time: now,
                state: TaskState::Canceled,
            });
            task.finished_at = now;
            task.error
                .get_or_insert_with(|| "the run's Workflow ended before this task did".into());
            ended.push(task);
        }
        self.store.save_tasks(&ended).await?;
        Ok(())
    }
}
