//! ExperimentService.

use kfpd_api::v2beta1 as api;
use kfpd_auth::{Resource as Kind, Verb};
use kfpd_store::list::Resource;
use kfpd_store::{NewExperiment, StorageState};

use super::list::{query, total};
use super::{check_length, Api};
use crate::convert;
use crate::error::{Error, Result};

/// Upstream's answer to an experiment request without a namespace in multi-user mode.
const EMPTY_NAMESPACE: &str = "An experiment cannot have an empty namespace in multi-user mode";

impl Api {
    pub async fn create_experiment(
        &self,
        request: api::CreateExperimentRequest,
    ) -> Result<api::Experiment> {
        let Some(experiment) = request.experiment else {
            return Err(Error::invalid("experiment is required"));
        };
        if experiment.display_name.trim().is_empty() {
            return Err(Error::invalid("experiment display_name is required"));
        }
        check_length("Experiment.Name", &experiment.display_name, 128)?;
        check_length("Experiment.Namespace", &experiment.namespace, 63)?;
        let namespace = self.namespace(&experiment.namespace, EMPTY_NAMESPACE)?;
        self.check_namespace(&namespace, Kind::Experiments, Verb::Create)
            .await?;
        let created = self
            .store
            .create_experiment(NewExperiment {
                name: experiment.display_name,
                description: experiment.description,
                namespace,
                created_at: self.now(),
            })
            .await?;
        Ok(convert::experiment(created))
    }

    pub async fn get_experiment(
        &self,
        request: api::GetExperimentRequest,
    ) -> Result<api::Experiment> {
        let found = self
            .experiment_checked(&request.experiment_id, Verb::Get)
            .await?;
        Ok(convert::experiment(found))
    }

    pub async fn list_experiments(
        &self,
        request: api::ListExperimentsRequest,
    ) -> Result<api::ListExperimentsResponse> {
        let list = query(
            Resource::Experiment,
            request.page_size,
            &request.page_token,
            &request.sort_by,
            &request.filter,
        )?;
        let namespace = self.namespace(&request.namespace, EMPTY_NAMESPACE)?;
        self.check_namespace(&namespace, Kind::Experiments, Verb::List)
            .await?;
        let page = self.store.list_experiments(Some(&namespace), &list).await?;
        Ok(api::ListExperimentsResponse {
            experiments: page.items.into_iter().map(convert::experiment).collect(),
            total_size: total(page.total_size),
            next_page_token: page.next_page_token,
        })
    }

    pub async fn archive_experiment(&self, request: api::ArchiveExperimentRequest) -> Result<()> {
        self.experiment_checked(&request.experiment_id, Verb::Archive)
            .await?;
        self.store
            .set_experiment_storage_state(
                &request.experiment_id,
                StorageState::Archived,
                self.now(),
            )
            .await?;
        Ok(())
    }

    pub async fn unarchive_experiment(
        &self,
        request: api::UnarchiveExperimentRequest,
    ) -> Result<()> {
        self.experiment_checked(&request.experiment_id, Verb::Unarchive)
            .await?;
        self.store
            .set_experiment_storage_state(
                &request.experiment_id,
                StorageState::Available,
                self.now(),
            )
            .await?;
        Ok(())
    }

    pub async fn delete_experiment(&self, request: api::DeleteExperimentRequest) -> Result<()> {
        self.experiment_checked(&request.experiment_id, Verb::Delete)
            .await?;
        self.store.delete_experiment(&request.experiment_id).await?;
        Ok(())
    }

    /// The experiment a run or recurring run goes to: the given one (which must
    /// exist and be visible to the caller), or the default experiment in
    /// single-user mode.
    pub(super) async fn experiment_for(&self, given: &str) -> Result<kfpd_store::Experiment> {
        if !given.is_empty() {
            return self.experiment_checked(given, Verb::Get).await;
        }
        if self.settings.multi_user {
            return Err(Error::invalid(
                "Experiment id can not be empty in multi-user mode",
            ));
        }
        Ok(self.store.default_experiment(self.now()).await?)
    }

    /// Makes sure the default experiment exists (single-user mode), as upstream
    /// does at start.
    pub async fn ensure_default_experiment(&self) -> Result<()> {
        if self.settings.multi_user {
            return Ok(());
        }
        self.store.default_experiment(self.now()).await?;
        Ok(())
    }
}
