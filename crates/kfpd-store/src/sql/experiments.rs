//! Experiments, the default experiment, and archive cascades.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::rows::{int, text};
use super::{Sql, SqlStore, Tx};
use crate::list::{ListQuery, Page};
use crate::{new_id, Error, Experiment, ExperimentStore, NewExperiment, StorageState};

const COLUMNS: &str =
    "uuid, name, description, namespace, created_at, last_run_created_at, storage_state";

const DEFAULT_NAME: &str = "Default";
const DEFAULT_DESCRIPTION: &str =
    "All runs created without specifying an experiment will be grouped here.";

fn experiment(row: &AnyRow) -> Result<Experiment, Error> {
    Ok(Experiment {
        id: text(row, "uuid")?,
        name: text(row, "name")?,
        description: text(row, "description")?,
        namespace: text(row, "namespace")?,
        created_at: int(row, "created_at")?,
        last_run_created_at: int(row, "last_run_created_at")?,
        storage_state: StorageState::parse(&text(row, "storage_state")?),
    })
}

async fn insert(tx: &mut Tx<'_>, new: &NewExperiment) -> Result<Experiment, Error> {
    let created = Experiment {
        id: new_id(),
        name: new.name.clone(),
        description: new.description.clone(),
        namespace: new.namespace.clone(),
        created_at: new.created_at,
        last_run_created_at: 0,
        storage_state: StorageState::Available,
    };
    let mut sql = Sql::new("INSERT INTO experiments (");
    sql.push(COLUMNS).push(") VALUES (");
    sql.bind(&created.id)
        .push(", ")
        .bind(&created.name)
        .push(", ");
    sql.bind(&created.description)
        .push(", ")
        .bind(&created.namespace)
        .push(", ");
    sql.bind(created.created_at).push(", ").bind(0).push(", ");
    sql.bind(created.storage_state.as_str()).push(")");
    tx.execute(&sql).await.map_err(|error| match error {
        Error::AlreadyExists(_) => Error::AlreadyExists(format!(
            "experiment named {:?} already exists in namespace {:?}. Please specify a new name",
            new.name, new.namespace
        )),
        other => other,
    })?;
    Ok(created)
}

async fn default_id(tx: &mut Tx<'_>) -> Result<Option<String>, Error> {
    let sql = Sql::new("SELECT experiment_uuid FROM default_experiment WHERE id = 1");
    let row = tx.fetch_optional(&sql).await?;
    row.map(|row| text(&row, "experiment_uuid")).transpose()
}

#[async_trait]
impl ExperimentStore for SqlStore {
    async fn create_experiment(&self, new: NewExperiment) -> Result<Experiment, Error> {
        self.write("create experiment", || async {
            let mut tx = self.begin_write().await?;
            let created = insert(&mut tx, &new).await?;
            tx.commit().await?;
            Ok(created)
        })
        .await
    }

    async fn get_experiment(&self, id: &str) -> Result<Experiment, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(COLUMNS)
            .push(" FROM experiments WHERE uuid = ")
            .bind(id);
        let row = self.fetch_optional(&sql).await?;
        let row = row.ok_or_else(|| Error::not_found("experiment", id))?;
        experiment(&row)
    }

    async fn list_experiments(
        &self,
        namespace: Option<&str>,
        query: &ListQuery,
    ) -> Result<Page<Experiment>, Error> {
        let mut scope = Sql::new(" FROM experiments WHERE 1 = 1");
        if let Some(namespace) = namespace {
            scope.push(" AND namespace = ").bind(namespace);
        }
        scope.push_conditions(self.dialect, &query.conditions, None);
        self.list_page(COLUMNS, &scope, query, experiment).await
    }

    async fn set_experiment_storage_state(
        &self,
        id: &str,
        state: StorageState,
        now: i64,
    ) -> Result<(), Error> {
        self.write("archive experiment", || async {
            let mut tx = self.begin_write().await?;
            let mut sql = Sql::new("UPDATE experiments SET storage_state = ");
            sql.bind(state.as_str()).push(" WHERE uuid = ").bind(id);
            if tx.execute(&sql).await? == 0 && !exists(&mut tx, id).await? {
                return Err(Error::not_found("experiment", id));
            }
            if state == StorageState::Archived {
                super::run_counts::archive_experiment_runs(
                    &mut tx,
                    id,
                    StorageState::Archived.as_str(),
                )
                .await?;
                let mut jobs = Sql::new("UPDATE recurring_runs SET enabled = 0, updated_at = ");
                jobs.bind(now)
                    .push(" WHERE experiment_uuid = ")
                    .bind(id)
                    .push(" AND enabled <> 0");
                tx.execute(&jobs).await?;
            }
            tx.commit().await
        })
        .await?;
        // Its runs were archived with it.
        self.changes.runs();
        Ok(())
    }

    async fn delete_experiment(&self, id: &str) -> Result<(), Error> {
        self.write("delete experiment", || async {
            let mut tx = self.begin_write().await?;
            if default_id(&mut tx).await?.as_deref() == Some(id) {
                return Err(Error::Aborted(format!(
                    "experiment {id} is the default experiment and cannot be deleted"
                )));
            }
            let mut sql = Sql::new("DELETE FROM experiments WHERE uuid = ");
            sql.bind(id);
            if tx.execute(&sql).await? == 0 {
                return Err(Error::not_found("experiment", id));
            }
            tx.commit().await
        })
        .await
    }

    async fn default_experiment(&self, now: i64) -> Result<Experiment, Error> {
        // Fast path: already made.
        let lookup = Sql::new("SELECT experiment_uuid FROM default_experiment WHERE id = 1");
        if let Some(row) = self.fetch_optional(&lookup).await? {
            let id = text(&row, "experiment_uuid")?;
            match self.get_experiment(&id).await {
                Ok(found) => return Ok(found),
                Err(Error::NotFound(_)) => {}
                Err(other) => return Err(other),
            }
        }
        let mut choose = || async {
            let mut tx = self.begin_write().await?;
            let lock = tx.for_update();
            let mut sql = Sql::new("SELECT experiment_uuid FROM default_experiment WHERE id = 1");
            sql.push(lock);
            let current = tx.fetch_optional(&sql).await?;
            if let Some(row) = current {
                let id = text(&row, "experiment_uuid")?;
                let mut get = Sql::new("SELECT ");
                get.push(COLUMNS)
                    .push(" FROM experiments WHERE uuid = ")
                    .bind(&id);
                if let Some(found) = tx.fetch_optional(&get).await? {
                    tx.commit().await?;
                    return experiment(&found);
                }
            }
            // Reuse an experiment called Default in the empty namespace, else create it.
            let mut by_name = Sql::new("SELECT ");
            by_name
                .push(COLUMNS)
                .push(" FROM experiments WHERE namespace = '' AND name = ")
                .bind(DEFAULT_NAME);
            let chosen = match tx.fetch_optional(&by_name).await? {
                Some(row) => experiment(&row)?,
                None => {
                    let new = NewExperiment {
                        name: DEFAULT_NAME.to_string(),
                        description: DEFAULT_DESCRIPTION.to_string(),
                        namespace: String::new(),
                        created_at: now,
                    };
                    insert(&mut tx, &new).await?
                }
            };
            tx.execute(&Sql::new("DELETE FROM default_experiment WHERE id = 1"))
                .await?;
            let mut pointer =
                Sql::new("INSERT INTO default_experiment (id, experiment_uuid) VALUES (1, ");
            pointer.bind(&chosen.id).push(")");
            tx.execute(&pointer).await?;
            tx.commit().await?;
            Ok(chosen)
        };
        match self
            .write("create the default experiment", &mut choose)
            .await
        {
            // Another server created it at the same moment (PostgreSQL, MySQL: both
            // inserted `Default`); the second pass finds theirs.
            Err(Error::AlreadyExists(_)) => {
                self.write("create the default experiment", &mut choose)
                    .await
            }
            chosen => chosen,
        }
    }
}

async fn exists(tx: &mut Tx<'_>, id: &str) -> Result<bool, Error> {
    let mut sql = Sql::new("SELECT uuid FROM experiments WHERE uuid = ");
    sql.bind(id);
    Ok(tx.fetch_optional(&sql).await?.is_some())
}
