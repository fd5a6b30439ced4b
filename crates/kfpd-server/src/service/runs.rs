//! RunService.

use kfpd_api::v2beta1 as api;
use kfpd_auth::{Resource as Kind, Verb};
use kfpd_store::list::Resource;
use kfpd_store::{NewRun, RunState, Scope, StorageState};

use super::list::{query, total};
use super::source::check_parameters;
use super::Api;
use crate::convert;
use crate::error::{Code, Error, Result};

/// Upstream's answer to a run request without a namespace in multi-user mode.
const EMPTY_RUN_NAMESPACE: &str = "A run cannot have an empty namespace in multi-user mode";

impl Api {
    /// Refuses, naming it, a pipeline root the artifact store does not serve, before
    /// anything is stored. With `io` a local root is also created and must be writable,
    /// and a bucket must exist; recurring runs skip that, as their roots may hold macros.
    pub(super) async fn check_pipeline_root(
        &self,
        what: &str,
        config: Option<&api::RuntimeConfig>,
        io: bool,
        namespace: &str,
    ) -> Result<()> {
        let Some(store) = &self.artifacts else {
            return Ok(());
        };
        let Some(root) = config
            .map(|config| config.pipeline_root.as_str())
            .filter(|root| !root.trim().is_empty())
        else {
            return Ok(());
        };
        self.check_root_in_namespace(what, root, namespace)?;
        let checked = if io {
            store.check_root(root).await
        } else {
            store.pipeline_root(root)
        };
        match checked {
            Ok(_) => Ok(()),
            Err(error @ kfpd_artifacts::Error::RootRefused { .. }) => {
                Err(Error::invalid(format!("{what}: {error}")))
            }
            Err(error) => Err(Error::new(
                Code::Unavailable,
                format!("{what}: cannot check pipeline root {root:?}: {error}"),
            )),
        }
    }

    // Deprecated request fields are still honoured for older clients.
    #[allow(deprecated)]
    pub async fn create_run(&self, request: api::CreateRunRequest) -> Result<api::Run> {
        let Some(run) = request.run else {
            return Err(Error::invalid("run is required"));
        };
        if run.display_name.trim().is_empty() {
            return Err(Error::invalid("run display_name is required"));
        }
        if !run.plugins_output.is_empty() {
            return Err(Error::new(
                Code::Aborted,
                "plugins_output is set by the server and must not be given",
            ));
        }
        let experiment_id = if run.experiment_id.is_empty() {
            request.experiment_id.as_str()
        } else {
            run.experiment_id.as_str()
        };
        let experiment = self.experiment_for(experiment_id).await?;
        if self.settings.multi_user {
            if experiment.namespace.is_empty() {
                return Err(Error::invalid(EMPTY_RUN_NAMESPACE));
            }
            self.check_namespace(&experiment.namespace, Kind::Runs, Verb::Create)
                .await?;
        }
        let source = self
            .resolve_requested("create run", run.pipeline_source.as_ref().into(), true)
            .await?;
        check_parameters("create run", &source.package, run.runtime_config.as_ref())?;
        self.check_pipeline_root(
            "create run",
            run.runtime_config.as_ref(),
            true,
            &experiment.namespace,
        )
        .await?;
        let service_account = if run.service_account.is_empty() {
            self.settings.default_service_account.clone()
        } else {
            run.service_account.clone()
        };
        let now = self.now();
        let created = self
            .store
            .create_run(NewRun {
                experiment_id: experiment.id,
                namespace: experiment.namespace,
                display_name: run.display_name,
                description: run.description,
                service_account,
                created_at: now,
                scheduled_at: now,
                pipeline_id: source.pipeline_id,
                pipeline_version_id: source.pipeline_version_id,
                recurring_run_id: run.recurring_run_id,
                runtime_config: convert::runtime_config_json(&run.runtime_config)?,
                pipeline_spec: source.spec_json,
                inline_spec: source.inline,
            })
            .await?;
        let created = self.submit_workflow(created).await?;
        self.wake_executor();
        convert::run(created)
    }

    pub async fn get_run(&self, request: api::GetRunRequest) -> Result<api::Run> {
        let run = self.run_for(&request.run_id, Verb::Get).await?;
        let tasks = self.store.list_tasks(&run.id).await?;
        let links = if tasks.is_empty() {
            Vec::new()
        } else {
            self.store.run_artifact_links(&run.id).await?
        };
        let run_id = run.id.clone();
        let mut converted = convert::run(run)?;
        converted.run_details = super::execution::run_details(&run_id, &tasks, &links);
        Ok(converted)
    }

    pub async fn list_runs(&self, request: api::ListRunsRequest) -> Result<api::ListRunsResponse> {
        let list = query(
            Resource::Run,
            request.page_size,
            &request.page_token,
            &request.sort_by,
            &request.filter,
        )?;
        let scope = self
            .scope(
                &request.namespace,
                &request.experiment_id,
                Kind::Runs,
                EMPTY_RUN_NAMESPACE,
            )
            .await?;
        let page = self.store.list_runs(&scope, &list).await?;
        Ok(api::ListRunsResponse {
            runs: page
                .items
                .into_iter()
                .map(convert::run)
                .collect::<Result<_>>()?,
            total_size: total(page.total_size),
            next_page_token: page.next_page_token,
        })
    }

    /// Which runs or recurring runs (`kind`) a list covers: one experiment, or in
    /// multi-user mode one namespace (`missing` answers its absence); everything in
    /// single-user mode.
    pub(super) async fn scope(
        &self,
        namespace: &str,
        experiment_id: &str,
        kind: Kind,
        missing: &str,
    ) -> Result<Scope> {
        if !experiment_id.is_empty() {
            let experiment = self.experiment_checked(experiment_id, Verb::Get).await?;
            if self.settings.multi_user
                && !namespace.is_empty()
                && experiment.namespace != namespace
            {
                return Err(Error::invalid(format!(
                    "Experiment {experiment_id} belongs to namespace '{}' instead of '{namespace}'",
                    experiment.namespace
                )));
            }
            if self.settings.multi_user {
                self.check_namespace(&experiment.namespace, kind, Verb::List)
                    .await?;
            }
            return Ok(Scope {
                namespace: None,
                experiment_id: Some(experiment.id),
            });
        }
        if self.settings.multi_user {
            let namespace = self.namespace(namespace, missing)?;
            self.check_namespace(&namespace, kind, Verb::List).await?;
            return Ok(Scope {
                namespace: Some(namespace),
                experiment_id: None,
            });
        }
        Ok(Scope::default())
    }

    /// Archiving keeps the run's rows; a finished run's Workflow is deleted (an
    /// unfinished one's goes once it ends and its TTL passes).
    pub async fn archive_run(&self, request: api::ArchiveRunRequest) -> Result<()> {
        let run = self.run_for(&request.run_id, Verb::Archive).await?;
        if run.state.is_terminal() {
            self.clean_up_workflows(&run).await?;
        }
        self.store
            .set_run_storage_state(&request.run_id, StorageState::Archived, self.now())
            .await?;
        Ok(())
    }

    pub async fn unarchive_run(&self, request: api::UnarchiveRunRequest) -> Result<()> {
        self.run_for(&request.run_id, Verb::Unarchive).await?;
        self.store
            .set_run_storage_state(&request.run_id, StorageState::Available, self.now())
            .await?;
        Ok(())
    }

    pub async fn delete_run(&self, request: api::DeleteRunRequest) -> Result<()> {
        let run = self.run_for(&request.run_id, Verb::Delete).await?;
        if self.argo.is_some() {
            self.clean_up_workflows(&run).await?;
        }
        self.store.delete_run(&request.run_id).await?;
        Ok(())
    }

    /// A run that has not started ends CANCELED at once (nothing to stop); a running
    /// one goes to CANCELING until its executor has stopped it.
    pub async fn terminate_run(&self, request: api::TerminateRunRequest) -> Result<()> {
        let run = self.run_for(&request.run_id, Verb::Terminate).await?;
        let now = self.now();
        let not_started = [RunState::Pending, RunState::Unspecified, RunState::Paused];
        let result = if not_started.contains(&run.state) {
            self.store
                .transition_run(
                    &run.id,
                    &not_started,
                    RunState::Canceled,
                    Some("run was terminated before it started".into()),
                    now,
                )
                .await
        } else if run.state == RunState::Running {
            self.store
                .transition_run(
                    &run.id,
                    &[RunState::Running],
                    RunState::Canceling,
                    None,
                    now,
                )
                .await
        } else {
            return Err(Error::new(
                Code::FailedPrecondition,
                format!(
                    "run {} is {} and cannot be terminated",
                    run.id,
                    run.state.as_str()
                ),
            ));
        };
        result?;
        // A PENDING run's Workflow may exist already (its pods not started yet).
        self.stop_workflow(&run).await?;
        self.wake_executor();
        Ok(())
    }

    /// Puts a failed or canceled run back to PENDING for its executor to pick up.
    pub async fn retry_run(&self, request: api::RetryRunRequest) -> Result<()> {
        let run = self.run_for(&request.run_id, Verb::Retry).await?;
        match run.state {
            RunState::Failed | RunState::Canceled => {}
            RunState::Succeeded | RunState::Skipped => {
                return Err(Error::new(
                    Code::FailedPrecondition,
                    format!(
                        "run {} is {}; there is nothing to retry",
                        run.id,
                        run.state.as_str()
                    ),
                ))
            }
            _ => {
                return Err(Error::new(
                    Code::Aborted,
                    format!(
                        "run {} is {}; only a finished run can be retried",
                        run.id,
                        run.state.as_str()
                    ),
                ))
            }
        }
        let deleted_at = self.store.run_artifacts_deleted_at(&run.id).await?;
        if deleted_at > 0 {
            return Err(Error::new(
                Code::FailedPrecondition,
                format!(
                    "run {} cannot be retried: retention deleted its artifacts and logs at {}; create a new run instead",
                    run.id,
                    super::execution::rfc3339(deleted_at)
                ),
            ));
        }
        if self.argo.is_some() {
            return self.retry_on_argo(run).await;
        }
        self.store
            .transition_run(
                &run.id,
                &[RunState::Failed, RunState::Canceled],
                RunState::Pending,
                None,
                self.now(),
            )
            .await?;
        self.wake_executor();
        Ok(())
    }
}
