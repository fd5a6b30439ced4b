//! Tasks, artifacts and the links between them.

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::pipelines::push_values;
use super::rows::{int, opt_text, text};
use super::{Arg, Dialect, Sql, SqlStore};
use crate::{
    Artifact, ArtifactLink, Direction, Error, ExecutionStore, Task, TaskKind, TaskState,
    TaskStateChange,
};

const TASK_COLUMNS: &str = "uuid, run_uuid, parent_uuid, path, kind, name, display_name, \
     iteration_index, state, state_history, error, created_at, started_at, finished_at, attempts, \
     inputs, outputs, details, fingerprint, cached_from, cache_scope";

pub(super) const ARTIFACT_COLUMNS: &str =
    "id, run_uuid, producer_task_uuid, output_key, name, uri, \
     schema_title, schema_version, metadata, created_at";

fn task(row: &AnyRow) -> Result<Task, Error> {
    let history: Vec<TaskStateChange> = serde_json::from_str(&text(row, "state_history")?)
        .map_err(|error| {
            Error::Internal(format!("task state history is not valid JSON: {error}"))
        })?;
    Ok(Task {
        id: text(row, "uuid")?,
        run_id: text(row, "run_uuid")?,
        parent_id: text(row, "parent_uuid")?,
        path: text(row, "path")?,
        kind: TaskKind::parse(&text(row, "kind")?),
        name: text(row, "name")?,
        display_name: text(row, "display_name")?,
        iteration_index: int(row, "iteration_index")?,
        state: TaskState::parse(&text(row, "state")?),
        state_history: history,
        error: opt_text(row, "error")?,
        created_at: int(row, "created_at")?,
        started_at: int(row, "started_at")?,
        finished_at: int(row, "finished_at")?,
        attempts: int(row, "attempts")?,
        inputs: text(row, "inputs")?,
        outputs: text(row, "outputs")?,
        details: text(row, "details")?,
        fingerprint: text(row, "fingerprint")?,
        cached_from: text(row, "cached_from")?,
        cache_scope: text(row, "cache_scope")?,
    })
}

pub(super) fn artifact(row: &AnyRow) -> Result<Artifact, Error> {
    Ok(Artifact {
        id: int(row, "id")?,
        run_id: text(row, "run_uuid")?,
        producer_task_id: text(row, "producer_task_uuid")?,
        output_key: text(row, "output_key")?,
        name: text(row, "name")?,
        uri: text(row, "uri")?,
        schema_title: text(row, "schema_title")?,
        schema_version: text(row, "schema_version")?,
        metadata: text(row, "metadata")?,
        created_at: int(row, "created_at")?,
    })
}

fn link(row: &AnyRow) -> Result<ArtifactLink, Error> {
    let direction = match text(row, "direction")?.as_str() {
        "INPUT" => Direction::Input,
        _ => Direction::Output,
    };
    Ok(ArtifactLink {
        task_id: text(row, "task_uuid")?,
        artifact_id: int(row, "artifact_id")?,
        direction,
        key: text(row, "io_key")?,
    })
}

fn task_values(task: &Task) -> Result<[Arg; 21], Error> {
    let history = serde_json::to_string(&task.state_history)
        .map_err(|error| Error::Internal(format!("encoding task state history: {error}")))?;
    Ok([
        (&task.id).into(),
        (&task.run_id).into(),
        (&task.parent_id).into(),
        (&task.path).into(),
        task.kind.as_str().into(),
        (&task.name).into(),
        (&task.display_name).into(),
        task.iteration_index.into(),
        task.state.as_str().into(),
        history.into(),
        task.error.as_ref().into(),
        task.created_at.into(),
        task.started_at.into(),
        task.finished_at.into(),
        task.attempts.into(),
        (&task.inputs).into(),
        (&task.outputs).into(),
        (&task.details).into(),
        (&task.fingerprint).into(),
        (&task.cached_from).into(),
        (&task.cache_scope).into(),
    ])
}

impl SqlStore {
    /// One statement that inserts the task or, when its id exists, overwrites the
    /// row: no read before the write.
    fn upsert_task(&self, task: &Task) -> Result<Sql, Error> {
        let values = task_values(task)?;
        let mut sql = Sql::new("INSERT INTO tasks (");
        sql.push(TASK_COLUMNS).push(") VALUES (");
        push_values(&mut sql, values);
        let columns = TASK_COLUMNS.split(',').map(str::trim).skip(1);
        match self.dialect() {
            Dialect::Sqlite | Dialect::Postgres => {
                sql.push(" ON CONFLICT (uuid) DO UPDATE SET ");
                for (index, column) in columns.enumerate() {
                    if index > 0 {
                        sql.push(", ");
                    }
                    sql.push(column).push(" = excluded.").push(column);
                }
            }
            Dialect::Mysql => {
                // VALUES() rather than the newer row alias, which MariaDB lacks.
                sql.push(" ON DUPLICATE KEY UPDATE ");
                for (index, column) in columns.enumerate() {
                    if index > 0 {
                        sql.push(", ");
                    }
                    sql.push(column).push(" = VALUES(").push(column).push(")");
                }
            }
        }
        Ok(sql)
    }
}

#[async_trait]
impl ExecutionStore for SqlStore {
    async fn save_tasks(&self, tasks: &[Task]) -> Result<(), Error> {
        // Built first, so a row that cannot be encoded writes nothing.
        let statements = tasks
            .iter()
            .map(|task| self.upsert_task(task))
            .collect::<Result<Vec<_>, _>>()?;
        self.write("save tasks", || async {
            let mut tx = self.begin_write().await?;
            for statement in &statements {
                tx.execute(statement).await?;
            }
            tx.commit().await
        })
        .await?;
        let mut runs: Vec<&str> = tasks.iter().map(|task| task.run_id.as_str()).collect();
        runs.sort_unstable();
        runs.dedup();
        for run_id in runs {
            self.changes.run(run_id);
        }
        Ok(())
    }

    async fn get_task(&self, id: &str) -> Result<Task, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(TASK_COLUMNS)
            .push(" FROM tasks WHERE uuid = ")
            .bind(id);
        let row = self.fetch_optional(&sql).await?;
        task(&row.ok_or_else(|| Error::not_found("task", id))?)
    }

    async fn list_tasks(&self, run_id: &str) -> Result<Vec<Task>, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(TASK_COLUMNS)
            .push(" FROM tasks WHERE run_uuid = ")
            .bind(run_id)
            .push(" ORDER BY created_at, path");
        self.fetch_all(&sql).await?.iter().map(task).collect()
    }

    async fn find_cached_task(
        &self,
        fingerprint: &str,
        scope: &str,
        not_before: i64,
    ) -> Result<Option<Task>, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(TASK_COLUMNS)
            .push(" FROM tasks WHERE fingerprint = ")
            .bind(fingerprint)
            .push(" AND cache_scope = ")
            .bind(scope)
            .push(" AND state = ")
            .bind(TaskState::Succeeded.as_str())
            .push(" AND finished_at >= ")
            .bind(not_before)
            // Not from a run whose artifacts retention deleted.
            .push(" AND run_uuid IN (SELECT uuid FROM runs WHERE artifacts_deleted_at = 0)")
            .push(" ORDER BY finished_at DESC LIMIT 1");
        self.fetch_optional(&sql)
            .await?
            .as_ref()
            .map(task)
            .transpose()
    }

    async fn create_artifact(&self, artifact: &Artifact) -> Result<(), Error> {
        let mut sql = Sql::new("INSERT INTO artifacts (");
        sql.push(ARTIFACT_COLUMNS).push(") VALUES (");
        push_values(
            &mut sql,
            [
                artifact.id.into(),
                (&artifact.run_id).into(),
                (&artifact.producer_task_id).into(),
                (&artifact.output_key).into(),
                (&artifact.name).into(),
                (&artifact.uri).into(),
                (&artifact.schema_title).into(),
                (&artifact.schema_version).into(),
                (&artifact.metadata).into(),
                artifact.created_at.into(),
            ],
        );
        self.write("create artifact", || async {
            let mut tx = self.begin_write().await?;
            tx.execute(&sql).await?;
            if !artifact.producer_task_id.is_empty() {
                let mut link = Sql::new(
                    "INSERT INTO artifact_links (task_uuid, artifact_id, direction, io_key, run_uuid) VALUES (",
                );
                push_values(
                    &mut link,
                    [
                        (&artifact.producer_task_id).into(),
                        artifact.id.into(),
                        Direction::Output.as_str().into(),
                        (&artifact.output_key).into(),
                        (&artifact.run_id).into(),
                    ],
                );
                tx.execute(&link).await?;
            }
            tx.commit().await
        })
        .await?;
        self.changes.run(&artifact.run_id);
        Ok(())
    }

    async fn link_artifact(&self, run_id: &str, link: &ArtifactLink) -> Result<(), Error> {
        let mut exists = Sql::new("SELECT task_uuid FROM artifact_links WHERE task_uuid = ");
        exists
            .bind(&link.task_id)
            .push(" AND artifact_id = ")
            .bind(link.artifact_id)
            .push(" AND direction = ")
            .bind(link.direction.as_str())
            .push(" AND io_key = ")
            .bind(&link.key);
        self.write("link artifact", || async {
            let mut tx = self.begin_write().await?;
            if tx.fetch_optional(&exists).await?.is_some() {
                return Ok(());
            }
            let mut sql = Sql::new(
                "INSERT INTO artifact_links (task_uuid, artifact_id, direction, io_key, run_uuid) VALUES (",
            );
            push_values(
                &mut sql,
                [
                    (&link.task_id).into(),
                    link.artifact_id.into(),
                    link.direction.as_str().into(),
                    (&link.key).into(),
                    run_id.into(),
                ],
            );
            tx.execute(&sql).await?;
            tx.commit().await
        })
        .await?;
        self.changes.run(run_id);
        Ok(())
    }

    async fn get_artifact(&self, id: i64) -> Result<Artifact, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(ARTIFACT_COLUMNS)
            .push(" FROM artifacts WHERE id = ")
            .bind(id);
        let row = self.fetch_optional(&sql).await?;
        artifact(&row.ok_or_else(|| Error::not_found("artifact", &id.to_string()))?)
    }

    async fn find_artifacts_by_uri(
        &self,
        uri: &str,
        schema_title: &str,
        limit: i64,
    ) -> Result<Vec<Artifact>, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(ARTIFACT_COLUMNS)
            .push(" FROM artifacts WHERE uri = ")
            .bind(uri)
            .push(" AND schema_title = ")
            .bind(schema_title)
            .push(" ORDER BY created_at, id LIMIT ")
            .bind(limit.max(0));
        self.fetch_all(&sql).await?.iter().map(artifact).collect()
    }

    async fn list_artifacts(&self, run_id: &str) -> Result<Vec<Artifact>, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(ARTIFACT_COLUMNS)
            .push(" FROM artifacts WHERE run_uuid = ")
            .bind(run_id)
            .push(" OR id IN (SELECT artifact_id FROM artifact_links WHERE run_uuid = ")
            .bind(run_id)
            .push(") ORDER BY created_at, id");
        self.fetch_all(&sql).await?.iter().map(artifact).collect()
    }

    async fn run_artifact_links(&self, run_id: &str) -> Result<Vec<ArtifactLink>, Error> {
        let mut sql = Sql::new(
            "SELECT task_uuid, artifact_id, direction, io_key FROM artifact_links WHERE run_uuid = ",
        );
        sql.bind(run_id);
        self.fetch_all(&sql).await?.iter().map(link).collect()
    }

    async fn artifact_links(&self, artifact_id: i64) -> Result<Vec<ArtifactLink>, Error> {
        let mut sql = Sql::new(
            "SELECT task_uuid, artifact_id, direction, io_key FROM artifact_links WHERE artifact_id = ",
        );
        sql.bind(artifact_id);
        self.fetch_all(&sql).await?.iter().map(link).collect()
    }

    async fn run_spec(&self, run_id: &str) -> Result<String, Error> {
        let mut sql = Sql::new("SELECT pipeline_spec FROM run_specs WHERE run_uuid = ");
        sql.bind(run_id);
        let row = self.fetch_optional(&sql).await?;
        text(
            &row.ok_or_else(|| Error::not_found("run", run_id))?,
            "pipeline_spec",
        )
    }
}
