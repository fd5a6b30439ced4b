//! Driving one task of a run executed elsewhere (Argo): the server's side of the
//! pod interface's driver request. Given a task path, the task's inputs are
//! resolved from the rows its siblings left, its condition, loop items and cache
//! entry decided by `kfpd_core`, its row recorded, and the answer says whether a
//! pod must run. Driving a path again answers the same.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use kfpd_core::inputs::{self, Siblings};
use kfpd_core::run::{self as run_rules, RunFacts};
use kfpd_core::{dag as dag_rules, loops as loop_rules, ArtifactRef, Artifacts, Scope, TaskResult};
use kfpd_ir::spec::{ComponentSpec, DagSpec, ExecutorKind, Implementation, PipelineTaskSpec};
use kfpd_store::{Artifact, ArtifactLink, Direction, Task, TaskKind, TaskState};
use serde_json::{json, Map, Value};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::cache;
use crate::context::{RunContext, TaskCall};
use crate::engine::Engine;
use crate::importer;
use crate::records::TaskRecord;

/// What the executor does with a driven task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// Go on with the task (run its pod, enter its DAG, expand its loop); `false`
    /// when it ended without one (cached, skipped, an importer).
    pub execute: bool,
    /// A loop's number of items; 0 for other tasks.
    pub iteration_count: usize,
    /// The pod spec patch (JSON) when one was asked for and the task runs a pod;
    /// empty otherwise.
    pub pod_spec_patch: String,
}

/// Why a task cannot be driven.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The run or the task path does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The task cannot run as asked: bad inputs, a condition that cannot be
    /// evaluated, an upstream output missing. The task is recorded FAILED.
    #[error("{0}")]
    Invalid(String),
    /// Driven too early: an upstream task or the enclosing DAG is not there yet.
    #[error("{0}")]
    NotReady(String),
    #[error("{0}")]
    Internal(String),
}

/// A decision the core refused: the task cannot run as asked.
impl From<kfpd_core::Error> for DriveError {
    fn from(error: kfpd_core::Error) -> DriveError {
        DriveError::Invalid(error.to_string())
    }
}

/// Where a task path leads in the spec.
pub(crate) struct Located {
    /// The task at the path; `None` for the root and for a loop iteration.
    pub task: Option<(String, PipelineTaskSpec)>,
    /// The component the node runs (a loop's or an iteration's: the loop body).
    pub component: ComponentSpec,
}

impl Engine {
    /// Drives the task at `task_path` of run `run_id` (see the module's doc);
    /// `workflow`, when not empty, is the run's resource name.
    pub async fn drive(
        self: &Arc<Engine>,
        run_id: &str,
        task_path: &str,
        workflow: &str,
        pod_spec_patch: bool,
    ) -> Result<Decision, DriveError> {
        // One request of the run at a time: the first request of a run makes its
        // root row, the first of an iteration its row, and two at once must not
        // make two. Other runs' requests go on meanwhile.
        let _turn = self.driving.take(run_id).await;
        let mut driver = Driver::open(self, run_id).await?;
        if !workflow.is_empty() {
            driver.context.facts.workflow = Some(workflow.to_string());
        }
        driver.end_pvc_upstream(task_path).await?;
        let decision = driver.drive(task_path, pod_spec_patch).await;
        if let Err(error) = self.writer.flush().await {
            return Err(DriveError::Internal(format!(
                "cannot record the tasks of run {run_id}: {error}"
            )));
        }
        // A task that ended here (cached, skipped, imported, refused, a loop of no
        // items) may end the DAGs around it, and the run.
        let ended = match &decision {
            Ok(decision) if !decision.execute => true,
            Ok(decision) => decision.iteration_count == 0 && driver.is_loop(task_path),
            Err(DriveError::Invalid(_)) => true,
            Err(_) => false,
        };
        if ended {
            self.settle(run_id, task_path).await?;
        }
        decision
    }

    /// Ends the `CreatePVC` or `DeletePVC` task at `task_path` from its `resource`
    /// node in the Workflow, as the persistence agent reports it: `Ok` when Argo
    /// made or deleted the PVC, `Err` with the node's message when it could not.
    /// Then the DAGs around it, and the run, as a launcher's report would. Returns
    /// whether it ended it here: another task, or one ended already, is left alone.
    pub async fn end_resource_task(
        self: &Arc<Engine>,
        run_id: &str,
        task_path: &str,
        outcome: Result<(), String>,
    ) -> Result<bool, DriveError> {
        let _turn = self.driving.take(run_id).await;
        let mut driver = Driver::open(self, run_id).await?;
        let Some(row) = driver.context.previous.get(task_path).cloned() else {
            return Ok(false);
        };
        if row.state.is_final() || !driver.is_pvc_task(task_path) {
            return Ok(false);
        }
        let mut record = TaskRecord::resume(row);
        let (state, error) = match outcome {
            Ok(()) => (TaskState::Succeeded, None),
            Err(message) => (TaskState::Failed, Some(message)),
        };
        let outputs = match state {
            TaskState::Succeeded => object(&record.task.outputs),
            _ => Map::new(),
        };
        record.finish(&driver.context, state, error, &outputs);
        self.writer.flush().await.map_err(|error| {
            DriveError::Internal(format!("cannot record task {task_path:?}: {error}"))
        })?;
        driver.recorded(record.task, Vec::new());
        driver.settle(task_path).await?;
        self.writer.flush().await.map_err(|error| {
            DriveError::Internal(format!("cannot record the tasks of run {run_id}: {error}"))
        })?;
        Ok(true)
    }

    /// Ends what the end of the task at `path` ended (see `settle`), from the rows
    /// as they are now.
    pub(crate) async fn settle(
        self: &Arc<Engine>,
        run_id: &str,
        path: &str,
    ) -> Result<(), DriveError> {
        let mut driver = Driver::open(self, run_id).await?;
        driver.settle(path).await?;
        self.writer.flush().await.map_err(|error| {
            DriveError::Internal(format!("cannot record the tasks of run {run_id}: {error}"))
        })
    }
}

/// A run's pipeline, parsed once per server: a run's spec never changes.
pub(crate) struct ParsedSpec {
    spec: kfpd_ir::spec::PipelineSpec,
    platform: Option<kfpd_ir::spec::PlatformSpec>,
    pipeline_name: String,
}

/// How many runs' parsed pipelines a server keeps.
const PARSED_SPECS: usize = 256;

async fn parsed_spec(engine: &Arc<Engine>, run_id: &str) -> Result<Arc<ParsedSpec>, DriveError> {
    if let Some(parsed) = engine
        .parsed_specs
        .lock()
        .ok()
        .and_then(|specs| specs.get(run_id).cloned())
    {
        return Ok(parsed);
    }
    let spec_json = engine.store.run_spec(run_id).await.map_err(|error| {
        DriveError::Internal(format!(
            "cannot read the pipeline spec of run {run_id}: {error}"
        ))
    })?;
    let spec_value: Value = serde_json::from_str(&spec_json).map_err(|error| {
        DriveError::Internal(format!(
            "the pipeline spec of run {run_id} is not JSON: {error}"
        ))
    })?;
    let package = kfpd_ir::parse_spec_value(&spec_value)
        .map_err(|error| DriveError::Internal(error.to_string()))?;
    let parsed = Arc::new(ParsedSpec {
        spec: package.spec().clone(),
        platform: package.platform().cloned(),
        pipeline_name: package.pipeline_name().to_string(),
    });
    if let Ok(mut specs) = engine.parsed_specs.lock() {
        if specs.len() >= PARSED_SPECS {
            specs.clear();
        }
        specs.insert(run_id.to_string(), Arc::clone(&parsed));
    }
    Ok(parsed)
}

/// One driver request: the run, its rows and artifacts as they are now.
pub(crate) struct Driver {
    pub(crate) context: RunContext,
    /// Artifact links by task id.
    links: HashMap<String, Vec<ArtifactLink>>,
    /// Artifacts by id, recorded by this run or linked from others.
    artifacts: HashMap<i64, Artifact>,
}

impl Driver {
    pub(crate) async fn open(engine: &Arc<Engine>, run_id: &str) -> Result<Driver, DriveError> {
        let store = &engine.store;
        let internal = |what: &str, error: kfpd_store::Error| {
            DriveError::Internal(format!("cannot read {what} of run {run_id}: {error}"))
        };
        let run = store.get_run(run_id).await.map_err(|error| match error {
            kfpd_store::Error::NotFound(_) => {
                DriveError::NotFound(format!("run {run_id:?} not found"))
            }
            other => internal("the run", other),
        })?;
        let parsed = parsed_spec(engine, run_id).await?;
        let (_, requested_root) =
            run_rules::runtime_config(&run.runtime_config).map_err(DriveError::from)?;
        let pipeline_root = engine
            .artifacts
            .run_root(&requested_root, &run.namespace)
            .map_err(|error| DriveError::Invalid(error.to_string()))?;
        let previous: HashMap<String, Task> = store
            .list_tasks(run_id)
            .await
            .map_err(|error| internal("the tasks", error))?
            .into_iter()
            .map(|task| (task.path.clone(), task))
            .collect();
        let mut links: HashMap<String, Vec<ArtifactLink>> = HashMap::new();
        for link in store
            .run_artifact_links(run_id)
            .await
            .map_err(|error| internal("the artifact links", error))?
        {
            links.entry(link.task_id.clone()).or_default().push(link);
        }
        let mut artifacts: HashMap<i64, Artifact> = store
            .list_artifacts(run_id)
            .await
            .map_err(|error| internal("the artifacts", error))?
            .into_iter()
            .map(|artifact| (artifact.id, artifact))
            .collect();
        let in_details = previous
            .values()
            .filter(|task| is_dag_like(task.kind))
            .flat_map(|task| {
                let details: Value = serde_json::from_str(&task.details).unwrap_or_default();
                details[INPUT_ARTIFACTS]
                    .as_object()
                    .into_iter()
                    .flatten()
                    .flat_map(|(_, ids)| ids.as_array().cloned().unwrap_or_default())
                    .filter_map(|id| id.as_i64())
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>();
        let mut foreign: Vec<i64> = links
            .values()
            .flatten()
            .map(|link| link.artifact_id)
            .chain(in_details)
            .filter(|id| !artifacts.contains_key(id))
            .collect();
        foreign.sort_unstable();
        foreign.dedup();
        for id in foreign {
            let artifact = store
                .get_artifact(id)
                .await
                .map_err(|error| internal("a linked artifact", error))?;
            artifacts.insert(id, artifact);
        }
        let context = RunContext {
            engine: Arc::clone(engine),
            facts: RunFacts::new(&run, &parsed.pipeline_name, &pipeline_root),
            spec: parsed.spec.clone(),
            platform: parsed.platform.clone(),
            cancel: CancellationToken::new(),
            previous,
            first_error: Mutex::new(None),
            log_uploads: Mutex::new(JoinSet::new()),
            in_workspace: Mutex::default(),
            run,
        };
        Ok(Driver {
            context,
            links,
            artifacts,
        })
    }

    async fn drive(&self, path: &str, want_patch: bool) -> Result<Decision, DriveError> {
        let Some((parent_path, _)) = path.rsplit_once('/') else {
            self.root().await?;
            return Ok(EXECUTED);
        };
        let located = self.locate(path)?;
        let Some((name, task)) = located.task else {
            return Err(DriveError::Invalid(format!(
                "{path:?} is a loop iteration, not a task: drive the tasks inside it"
            )));
        };
        if let Some(row) = self.context.previous.get(path) {
            // A task refused before it ran is refused again, with the same reason.
            if row.state == TaskState::Failed && row.attempts == 0 {
                return Err(DriveError::Invalid(row.error.clone().unwrap_or_default()));
            }
            return Ok(decision_of(row));
        }
        let parent = self.dag_instance(parent_path).await?;
        let parent_component = self.locate(parent_path)?.component;
        let dag = parent_component
            .dag
            .as_ref()
            .ok_or_else(|| DriveError::Internal(format!("{parent_path:?} is not a DAG")))?;
        let (results, _) = self.children(parent_path, dag, Some(&name))?;
        let upstream = dag_rules::upstream(dag);
        let upstream = upstream.get(name.as_str()).cloned().unwrap_or_default();
        if let Some(waiting) = upstream
            .iter()
            .find(|dependency| !results.contains_key(**dependency))
        {
            return Err(DriveError::NotReady(format!(
                "task {path:?} cannot be driven yet: upstream task {waiting:?} has not ended"
            )));
        }
        let runs_on_completion = dag_rules::runs_on_completion(&task);
        let dag_failed = results
            .values()
            .any(|result| result.state == TaskState::Failed);
        let display_name = dag_rules::display_name(&name, &task);
        let kind = dag_rules::task_kind(&self.context.spec, &task);
        let (parent_id, task_name, shown) =
            (parent.id.as_str(), name.as_str(), display_name.as_str());
        let not_run = move |state: TaskState, reason: String| async move {
            TaskRecord::not_run(
                &self.context,
                parent_id,
                path,
                kind,
                task_name,
                shown,
                state,
                &reason,
            )
            .await;
        };
        if let Some((state, reason)) =
            dag_rules::not_started(false, dag_failed, runs_on_completion, &upstream, &results)
        {
            not_run(state, reason).await;
            return Ok(NOT_EXECUTED);
        }
        let siblings = Siblings {
            spec: &self.context.spec,
            run: &self.context.facts,
            scope: &parent.scope,
            results: &results,
        };
        let resolved = match inputs::resolve(&siblings, &task, &name, runs_on_completion) {
            Ok(resolved) => resolved,
            Err(error) => {
                let message = format!("task {display_name:?}: {error}");
                not_run(TaskState::Failed, message.clone()).await;
                return Err(DriveError::Invalid(message));
            }
        };
        match dag_rules::skipped_by_condition(&task, &resolved) {
            Ok(None) => {}
            Ok(Some(reason)) => {
                not_run(TaskState::Skipped, reason).await;
                return Ok(NOT_EXECUTED);
            }
            Err(error) => {
                let message = format!("task {display_name:?}: {error}");
                not_run(TaskState::Failed, message.clone()).await;
                return Err(DriveError::Invalid(message));
            }
        }
        let component = self
            .context
            .spec
            .component(&task.component_ref.name)
            .cloned()
            .ok_or_else(|| DriveError::Internal(format!("{path:?} has no component")))?;
        let mut parameters = resolved.parameters;
        inputs::apply_defaults(&component, &mut parameters);
        if let Some(error) = inputs::unfilled_required(
            &component,
            &parameters,
            &resolved.artifacts,
            &resolved.missing,
        ) {
            let message = format!("task {display_name:?}: {error}");
            not_run(TaskState::Failed, message.clone()).await;
            return Err(DriveError::Invalid(message));
        }
        let patch = if want_patch && kind == TaskKind::Runtime {
            let sibling_outputs = results
                .iter()
                .map(|(sibling, result)| (sibling.clone(), result.parameters.clone()))
                .collect();
            let driven = kfpd_argo::patch::Driven {
                spec: &self.context.spec,
                platform: self.context.platform.as_ref(),
                name: &display_name,
                task: &task,
                component: &component,
                dag,
                dag_inputs: &parent.scope.parameters,
                sibling_outputs,
                task_inputs: parameters.clone(),
            };
            match kfpd_argo::patch::pod_spec_patch(driven) {
                Ok(patch) => Some(patch.to_string()),
                Err(error) => {
                    let message = format!("task {display_name:?}: {error}");
                    not_run(TaskState::Failed, message.clone()).await;
                    return Err(DriveError::Invalid(message));
                }
            }
        } else {
            None
        };
        let call = TaskCall {
            name: name.clone(),
            display_name: display_name.clone(),
            path: path.to_string(),
            parent_id: parent.id.clone(),
            task,
            component,
            parameters,
            artifacts: resolved.artifacts,
        };
        self.start(call, kind, patch).await
    }

    /// Records a task that passed its checks and says what runs next.
    async fn start(
        &self,
        call: TaskCall,
        kind: TaskKind,
        patch: Option<String>,
    ) -> Result<Decision, DriveError> {
        let context = &self.context;
        if kind == TaskKind::Loop {
            let items = match loop_rules::items(&call.task, &call.parameters, &call.artifacts) {
                Ok(items) => items,
                Err(error) => {
                    let message = format!("task {:?}: {error}", call.display_name);
                    self.fail(&call, kind, &message).await;
                    return Err(DriveError::Invalid(message));
                }
            };
            let mut record = self.begin(&call, kind);
            record.set_detail("iteration_count", json!(items.items.len()));
            self.write(&mut record, &call.artifacts).await?;
            // An iteration's row is made when its first task is driven: one that
            // never starts (fail-fast) has none, as in the local engine.
            return Ok(Decision {
                execute: true,
                iteration_count: items.items.len(),
                pod_spec_patch: String::new(),
            });
        }
        match call.component.implementation() {
            Some(Implementation::Dag(_)) => {
                let mut record = self.begin(&call, kind);
                self.write(&mut record, &call.artifacts).await?;
                Ok(EXECUTED)
            }
            Some(Implementation::Executor(label)) => {
                let executor =
                    context.spec.executor(label).cloned().ok_or_else(|| {
                        DriveError::Internal(format!("unknown executor {label:?}"))
                    })?;
                match executor.kind() {
                    Some(ExecutorKind::Container(container))
                        if pvc_placeholder(&container.image).is_some() =>
                    {
                        // Argo's `resource` template makes or deletes the PVC, never
                        // from the cache; the task runs until that node ended (see
                        // `end_resource_task`). `name`, what the compiler named the
                        // PVC, is its output then.
                        let mut record = self.begin(&call, kind);
                        let mut outputs = Map::new();
                        if pvc_placeholder(&container.image) == Some(CREATE_PVC_IMAGE) {
                            outputs.insert("name".into(), json!(self.pvc_name(&call.parameters)));
                        }
                        record.task.outputs = Value::Object(outputs).to_string();
                        self.write(&mut record, &call.artifacts).await?;
                        Ok(EXECUTED)
                    }
                    Some(ExecutorKind::Container(container)) => {
                        let key = cache::key_for(context, &call, container);
                        if let Some(key) = &key {
                            if let Some(hit) = cache::find(context, key, &call.display_name).await {
                                cache::reuse(context, &call, key, hit).await;
                                return Ok(NOT_EXECUTED);
                            }
                        }
                        let mut record = self.begin(&call, kind);
                        if let Some(key) = &key {
                            record.task.fingerprint = key.fingerprint.clone();
                            record.task.cache_scope = key.scope.clone();
                        }
                        record.set_detail("image", json!(container.image));
                        if let Some(patch) = &patch {
                            record.set_detail(POD_SPEC_PATCH, json!(patch));
                        }
                        self.write(&mut record, &call.artifacts).await?;
                        Ok(Decision {
                            pod_spec_patch: patch.unwrap_or_default(),
                            ..EXECUTED
                        })
                    }
                    Some(ExecutorKind::Importer(spec)) => {
                        let mut record = self.begin(&call, kind);
                        match importer::run(context, &call, spec, &record).await {
                            // The artifact is recorded; the importer's pod copies it
                            // into the workspace, and its launcher's report ends the task.
                            Ok(_) if spec.download_to_workspace => {
                                record.set_detail(DOWNLOAD_TO_WORKSPACE, json!(true));
                                self.write(&mut record, &call.artifacts).await?;
                                Ok(EXECUTED)
                            }
                            Ok(result) => {
                                record.finish(context, result.state, None, &result.parameters);
                                Ok(NOT_EXECUTED)
                            }
                            Err(error) => {
                                let message = format!("task {:?}: {error}", call.display_name);
                                record.finish(
                                    context,
                                    TaskState::Failed,
                                    Some(message.clone()),
                                    &Map::new(),
                                );
                                Err(DriveError::Invalid(message))
                            }
                        }
                    }
                    _ => {
                        let message = format!(
                            "task {:?}: only container and importer executors run on Argo",
                            call.display_name
                        );
                        self.fail(&call, kind, &message).await;
                        Err(DriveError::Invalid(message))
                    }
                }
            }
            None => {
                let message = format!(
                    "task {:?}: its component has no implementation",
                    call.display_name
                );
                self.fail(&call, kind, &message).await;
                Err(DriveError::Invalid(message))
            }
        }
    }

    fn begin(&self, call: &TaskCall, kind: TaskKind) -> TaskRecord {
        TaskRecord::begin(
            &self.context,
            &call.parent_id,
            &call.path,
            kind,
            &call.name,
            &call.display_name,
            -1,
            &call.parameters,
        )
    }

    async fn fail(&self, call: &TaskCall, kind: TaskKind, message: &str) {
        TaskRecord::not_run(
            &self.context,
            &call.parent_id,
            &call.path,
            kind,
            &call.name,
            &call.display_name,
            TaskState::Failed,
            message,
        )
        .await;
    }

    /// Stores the row with its input artifacts: a container's linked, where the
    /// launcher finds them; a DAG's or a loop's in its details (the local engine
    /// links none to them), where the tasks inside find them.
    async fn write(
        &self,
        record: &mut TaskRecord,
        artifacts: &Artifacts,
    ) -> Result<(), DriveError> {
        if is_dag_like(record.task.kind) {
            let ids: Map<String, Value> = artifacts
                .iter()
                .map(|(name, list)| (name.clone(), list.iter().map(|a| json!(a.id)).collect()))
                .collect();
            record.set_detail(INPUT_ARTIFACTS, Value::Object(ids));
            return record
                .write(&self.context)
                .await
                .map_err(DriveError::Internal);
        }
        record
            .write(&self.context)
            .await
            .map_err(DriveError::Internal)?;
        for (name, list) in artifacts {
            for artifact in list {
                let link = ArtifactLink {
                    task_id: record.task.id.clone(),
                    artifact_id: artifact.id,
                    direction: Direction::Input,
                    key: name.clone(),
                };
                self.context
                    .engine
                    .store
                    .link_artifact(&self.context.run.id, &link)
                    .await
                    .map_err(|error| {
                        DriveError::Internal(format!(
                            "cannot record artifact input {name:?}: {error}"
                        ))
                    })?;
            }
        }
        Ok(())
    }

    /// Takes a task's row and output artifacts as just recorded, so what this
    /// request decides next (the DAGs it ends) sees them without reading again.
    pub(crate) fn recorded(&mut self, task: Task, outputs: Vec<Artifact>) {
        for artifact in outputs {
            self.links
                .entry(task.id.clone())
                .or_default()
                .push(ArtifactLink {
                    task_id: task.id.clone(),
                    artifact_id: artifact.id,
                    direction: Direction::Output,
                    key: artifact.output_key.clone(),
                });
            self.artifacts.insert(artifact.id, artifact);
        }
        self.context.previous.insert(task.path.clone(), task);
    }

    /// A task waiting only for its upstream tasks' success (not one that runs on
    /// completion) is driven once each upstream node succeeded: Argo's `depends`
    /// says so. So a `CreatePVC`/`DeletePVC` still RUNNING here, an upstream task or
    /// one inside an upstream DAG, made or deleted its PVC though the Workflow's
    /// report did not tell yet: it ends SUCCEEDED now, with the DAGs it ended, so
    /// this request need not wait for that report.
    async fn end_pvc_upstream(&mut self, path: &str) -> Result<(), DriveError> {
        let Some((parent_path, _)) = path.rsplit_once('/') else {
            return Ok(());
        };
        if self.context.previous.contains_key(path) {
            return Ok(());
        }
        let Ok(Located {
            task: Some((name, task)),
            ..
        }) = self.locate(path)
        else {
            return Ok(());
        };
        if dag_rules::runs_on_completion(&task) {
            return Ok(());
        }
        let Ok(parent) = self.locate(parent_path) else {
            return Ok(());
        };
        let Some(dag) = parent.component.dag.as_ref() else {
            return Ok(());
        };
        let upstream: Vec<String> = dag_rules::upstream(dag)
            .get(name.as_str())
            .into_iter()
            .flatten()
            .map(|dependency| format!("{parent_path}/{dependency}"))
            .collect();
        let within = |row: &Task| {
            upstream.iter().any(|dependency| {
                row.path == *dependency
                    || row
                        .path
                        .strip_prefix(dependency.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            })
        };
        let mut running: Vec<Task> = self
            .context
            .previous
            .values()
            .filter(|row| row.state == TaskState::Running && within(row))
            .filter(|row| self.is_pvc_task(&row.path))
            .cloned()
            .collect();
        running.sort_by(|a, b| a.path.cmp(&b.path));
        for row in running {
            let path = row.path.clone();
            let mut record = TaskRecord::resume(row);
            let outputs = object(&record.task.outputs);
            record.finish(&self.context, TaskState::Succeeded, None, &outputs);
            self.recorded(record.task, Vec::new());
            self.settle(&path).await?;
        }
        Ok(())
    }

    /// Whether the task at `path` is `CreatePVC` or `DeletePVC` of kfp-kubernetes.
    pub(crate) fn is_pvc_task(&self, path: &str) -> bool {
        self.locate(path).is_ok_and(|located| {
            self.context
                .spec
                .executor_of(&located.component)
                .and_then(|executor| executor.kind())
                .is_some_and(|kind| {
                    matches!(kind, ExecutorKind::Container(c) if pvc_placeholder(&c.image).is_some())
                })
        })
    }

    /// The PVC a `CreatePVC` task makes, as the compiler names it: `pvc_name`, else
    /// the Workflow's name followed by `pvc_name_suffix`.
    fn pvc_name(&self, parameters: &Map<String, Value>) -> String {
        if let Some(name) = parameters
            .get("pvc_name")
            .and_then(Value::as_str)
            .filter(|name| !name.is_empty())
        {
            return name.to_string();
        }
        let suffix = parameters
            .get("pvc_name_suffix")
            .and_then(Value::as_str)
            .unwrap_or_default();
        format!("{}{suffix}", self.context.facts.resource_name())
    }

    /// Whether the task at `path` is a loop.
    fn is_loop(&self, path: &str) -> bool {
        self.locate(path).is_ok_and(|located| {
            located.task.is_some_and(|(_, task)| {
                task.parameter_iterator.is_some() || task.artifact_iterator.is_some()
            })
        })
    }

    /// The root's row, made on the first request of a run from its runtime config;
    /// the run is RUNNING from then on.
    async fn root(&self) -> Result<Task, DriveError> {
        if let Some(row) = self.context.previous.get("root") {
            return Ok(row.clone());
        }
        let context = &self.context;
        let started = context
            .engine
            .store
            .transition_run(
                &context.run.id,
                &[kfpd_store::RunState::Pending],
                kfpd_store::RunState::Running,
                None,
                crate::records::now(),
            )
            .await;
        match started {
            Ok(_) | Err(kfpd_store::Error::FailedPrecondition(_)) => {}
            Err(error) => {
                return Err(DriveError::Internal(format!(
                    "cannot start run {}: {error}",
                    context.run.id
                )))
            }
        }
        let (parameters, _) =
            run_rules::runtime_config(&context.run.runtime_config).map_err(DriveError::from)?;
        let parameters =
            run_rules::root_inputs(&context.spec, parameters).map_err(DriveError::from)?;
        let display_name = if context.spec.pipeline_info.display_name.is_empty() {
            context.facts.pipeline_name.clone()
        } else {
            context.spec.pipeline_info.display_name.clone()
        };
        let record = TaskRecord::begin(
            context,
            "",
            "root",
            TaskKind::Root,
            &context.facts.pipeline_name,
            &display_name,
            -1,
            &parameters,
        );
        record.write(context).await.map_err(DriveError::Internal)?;
        Ok(record.task)
    }

    /// Follows a task path through the spec.
    pub(crate) fn locate(&self, path: &str) -> Result<Located, DriveError> {
        let unknown =
            || DriveError::NotFound(format!("task path {path:?} is not in the run's pipeline"));
        let mut segments = path.split('/');
        if segments.next() != Some("root") {
            return Err(DriveError::NotFound(format!(
                "task path {path:?} does not start at \"root\""
            )));
        }
        let spec = &self.context.spec;
        let mut located = Located {
            task: None,
            component: spec.root.clone(),
        };
        let mut in_loop = false;
        // Tasks without a retry policy take the one of the DAG task around them.
        let mut inherited_retry = None;
        for segment in segments {
            if in_loop {
                segment.parse::<usize>().map_err(|_| unknown())?;
                located.task = None;
                in_loop = false;
                continue;
            }
            let dag = located.component.dag.as_ref().ok_or_else(unknown)?;
            let mut task = dag.tasks.get(segment).ok_or_else(unknown)?.clone();
            if task.retry_policy.is_none() {
                task.retry_policy = inherited_retry.clone();
            }
            inherited_retry = task.retry_policy.clone();
            let component = spec
                .component(&task.component_ref.name)
                .cloned()
                .ok_or_else(unknown)?;
            in_loop = task.parameter_iterator.is_some() || task.artifact_iterator.is_some();
            located = Located {
                task: Some((segment.to_string(), task)),
                component,
            };
        }
        Ok(located)
    }

    /// A DAG instance (the root, a DAG task, a loop iteration): its row and scope.
    async fn dag_instance(&self, path: &str) -> Result<Instance, DriveError> {
        if path == "root" {
            let row = self.root().await?;
            let parameters = object(&row.inputs);
            return Ok(Instance {
                id: row.id,
                scope: Scope {
                    parameters,
                    artifacts: BTreeMap::new(),
                },
            });
        }
        let not_driven = || {
            DriveError::NotReady(format!(
                "{path:?} has not been driven yet: drive it before its tasks"
            ))
        };
        if let Some(row) = self
            .context
            .previous
            .get(path)
            .filter(|row| row.kind != TaskKind::LoopIteration)
        {
            return Ok(Instance {
                id: row.id.clone(),
                scope: Scope {
                    parameters: object(&row.inputs),
                    artifacts: self.inputs_of(row),
                },
            });
        }
        // A loop iteration: the loop's scope with its item.
        let (loop_path, index) = path.rsplit_once('/').ok_or_else(not_driven)?;
        let index: usize = index.parse().map_err(|_| not_driven())?;
        let loop_row = self
            .context
            .previous
            .get(loop_path)
            .ok_or_else(not_driven)?;
        let located = self.locate(loop_path)?;
        let Some((_, loop_task)) = located.task else {
            return Err(not_driven());
        };
        let items = loop_rules::items(
            &loop_task,
            &object(&loop_row.inputs),
            &self.inputs_of(loop_row),
        )
        .map_err(DriveError::from)?;
        let item = items.items.get(index).cloned().ok_or_else(|| {
            DriveError::NotFound(format!(
                "loop {loop_path:?} has {} items, not an item {index}",
                items.items.len()
            ))
        })?;
        let scope =
            loop_rules::iteration_scope(&located.component, &items.scope, &items.item_input, item);
        let row = match self.context.previous.get(path) {
            Some(row) => row.clone(),
            None => {
                let record = TaskRecord::begin(
                    &self.context,
                    &loop_row.id,
                    path,
                    TaskKind::LoopIteration,
                    &loop_row.name,
                    &format!("{}-iteration-{index}", loop_row.display_name),
                    i64::try_from(index).unwrap_or(i64::MAX),
                    &loop_rules::iteration_inputs(&scope, &items.item_input),
                );
                record
                    .write(&self.context)
                    .await
                    .map_err(DriveError::Internal)?;
                record.task
            }
        };
        Ok(Instance { id: row.id, scope })
    }

    /// A DAG's or a loop's input artifacts, kept in its details.
    fn inputs_of(&self, row: &Task) -> Artifacts {
        let details: Value = serde_json::from_str(&row.details).unwrap_or_default();
        let mut found: Artifacts = BTreeMap::new();
        for (name, ids) in details[INPUT_ARTIFACTS].as_object().into_iter().flatten() {
            let list = found.entry(name.clone()).or_default();
            for id in ids
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
            {
                if let Some(artifact) = self.artifacts.get(&id) {
                    list.push(ArtifactRef::from(artifact));
                }
            }
        }
        found
    }

    /// The artifacts linked to task `id` in `direction`, by key.
    pub(crate) fn linked(&self, id: &str, direction: Direction) -> Artifacts {
        let mut found: Artifacts = BTreeMap::new();
        for link in self.links.get(id).into_iter().flatten() {
            if link.direction != direction {
                continue;
            }
            if let Some(artifact) = self.artifacts.get(&link.artifact_id) {
                found
                    .entry(link.key.clone())
                    .or_default()
                    .push(ArtifactRef::from(artifact));
            }
        }
        found
    }

    /// How the node at `path` ended, from the rows: a task's own row, a DAG's or a
    /// loop's from its children. `None` while it has not ended (or never started).
    pub(crate) fn result_of(&self, path: &str) -> Result<Option<TaskResult>, DriveError> {
        let Some(row) = self.context.previous.get(path) else {
            return Ok(None);
        };
        if row.state.is_final() {
            let mut result = TaskResult {
                state: row.state,
                error: row.error.clone(),
                parameters: object(&row.outputs),
                artifacts: self.linked(&row.id, Direction::Output),
            };
            // A DAG's output artifacts are its tasks': they are not linked to its row.
            let ran_tasks = row.started_at > 0 && is_dag_like(row.kind);
            if ran_tasks {
                if let Some(computed) = self.computed_result(path, row)? {
                    result.artifacts = computed.artifacts;
                }
            }
            return Ok(Some(result));
        }
        self.computed_result(path, row)
    }

    /// A DAG's or a loop's result from its children's rows.
    fn computed_result(&self, path: &str, row: &Task) -> Result<Option<TaskResult>, DriveError> {
        let located = self.locate(path)?;
        match row.kind {
            TaskKind::Loop => {
                let Some((_, task)) = &located.task else {
                    return Ok(None);
                };
                let count = serde_json::from_str::<Value>(&row.details)
                    .ok()
                    .and_then(|details| details.get("iteration_count").and_then(Value::as_u64))
                    .unwrap_or(0);
                let mut iterations = Vec::new();
                let mut never_started = false;
                for index in 0..count {
                    let iteration = format!("{path}/{index}");
                    if !self.context.previous.contains_key(&iteration) {
                        never_started = true;
                        iterations.push(None);
                        continue;
                    }
                    match self.dag_result(&iteration, &located.component)? {
                        Some(result) => iterations.push(Some(result)),
                        None => return Ok(None),
                    }
                }
                let failed = iterations
                    .iter()
                    .flatten()
                    .any(|result| result.state == TaskState::Failed);
                // Iterations not started are still to come, unless one failed
                // (fail-fast: then they never start).
                if never_started && !failed {
                    return Ok(None);
                }
                let display_name = dag_rules::display_name(&row.name, task);
                Ok(Some(loop_rules::result(
                    &located.component,
                    &display_name,
                    &iterations,
                    failed,
                )))
            }
            TaskKind::Dag
            | TaskKind::Condition
            | TaskKind::ConditionBranch
            | TaskKind::ExitHandler => self.dag_result(path, &located.component),
            _ => Ok(None),
        }
    }

    /// A DAG instance's result from its tasks' rows, once every one ended.
    pub(crate) fn dag_result(
        &self,
        path: &str,
        component: &ComponentSpec,
    ) -> Result<Option<TaskResult>, DriveError> {
        let Some(dag) = &component.dag else {
            return Ok(None);
        };
        let (results, settled) = self.children(path, dag, None)?;
        if !settled {
            return Ok(None);
        }
        Ok(Some(dag_rules::result(dag, &results)))
    }

    /// The results of the tasks of the DAG instance at `path` (but `except`) that
    /// ended, and whether all of them did.
    fn children(
        &self,
        path: &str,
        dag: &DagSpec,
        except: Option<&str>,
    ) -> Result<(HashMap<String, TaskResult>, bool), DriveError> {
        let mut results = HashMap::new();
        let mut never_driven = Vec::new();
        let mut settled = true;
        for name in dag.tasks.keys() {
            match self.result_of(&format!("{path}/{name}"))? {
                Some(result) => {
                    results.insert(name.clone(), result);
                }
                // Driven, still going.
                None if self
                    .context
                    .previous
                    .contains_key(&format!("{path}/{name}")) =>
                {
                    settled = false;
                }
                None if except == Some(name.as_str()) => {}
                None => never_driven.push(name.as_str()),
            }
        }
        let all_ended = dag_rules::settle_never_started(dag, &mut results, &never_driven);
        Ok((results, settled && all_ended))
    }
}

/// Images of the placeholder components `kfp.kubernetes.CreatePVC` and `DeletePVC`.
const CREATE_PVC_IMAGE: &str = "argostub/createpvc";
const DELETE_PVC_IMAGE: &str = "argostub/deletepvc";

fn pvc_placeholder(image: &str) -> Option<&'static str> {
    [CREATE_PVC_IMAGE, DELETE_PVC_IMAGE]
        .into_iter()
        .find(|placeholder| *placeholder == image)
}

/// The details key of a DAG's or a loop's input artifact ids, by input.
const INPUT_ARTIFACTS: &str = "input_artifacts";

/// Rows whose result comes from the tasks inside them.
fn is_dag_like(kind: TaskKind) -> bool {
    matches!(
        kind,
        TaskKind::Loop
            | TaskKind::Dag
            | TaskKind::Condition
            | TaskKind::ConditionBranch
            | TaskKind::ExitHandler
    )
}

/// A DAG instance being driven into.
struct Instance {
    id: String,
    scope: Scope,
}

const EXECUTED: Decision = Decision {
    execute: true,
    iteration_count: 0,
    pod_spec_patch: String::new(),
};

const NOT_EXECUTED: Decision = Decision {
    execute: false,
    iteration_count: 0,
    pod_spec_patch: String::new(),
};

/// The details key of the pod spec patch a container task was answered with.
const POD_SPEC_PATCH: &str = "pod_spec_patch";
/// The details key marking an importer whose pod copies its artifact into the
/// run's workspace.
pub(crate) const DOWNLOAD_TO_WORKSPACE: &str = "download_to_workspace";

/// The answer for a task driven before.
fn decision_of(row: &Task) -> Decision {
    let details = serde_json::from_str::<Value>(&row.details).unwrap_or_default();
    let ran = !matches!(
        row.state,
        TaskState::Cached | TaskState::Skipped | TaskState::Failed | TaskState::Canceled
    );
    let execute = match row.kind {
        // Its pod ran already (a retried run's new Workflow skips it), or it never
        // had one.
        TaskKind::Runtime | TaskKind::Importer if row.state == TaskState::Succeeded => false,
        TaskKind::Importer => ran && details[DOWNLOAD_TO_WORKSPACE] == json!(true),
        _ => ran,
    };
    let iteration_count = details
        .get("iteration_count")
        .and_then(Value::as_u64)
        .and_then(|count| usize::try_from(count).ok())
        .unwrap_or(0);
    let pod_spec_patch = match details.get(POD_SPEC_PATCH) {
        Some(Value::String(patch)) if execute => patch.clone(),
        _ => String::new(),
    };
    Decision {
        execute,
        iteration_count,
        pod_spec_patch,
    }
}

pub(crate) fn object(json: &str) -> Map<String, Value> {
    serde_json::from_str(json).unwrap_or_default()
}
