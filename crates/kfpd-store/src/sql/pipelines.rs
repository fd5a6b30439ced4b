//! Pipelines, their versions and the tags on both.

use std::collections::HashMap;

use async_trait::async_trait;
use sqlx::any::AnyRow;

use super::rows::{int, text};
use super::{Arg, Sql, SqlStore, Tx};
use crate::list::{ListQuery, Page};
use crate::{
    new_id, Error, NewPipeline, NewPipelineVersion, Pipeline, PipelineStore, PipelineUpdate,
    PipelineVersion, Tags,
};

const PIPELINE_COLUMNS: &str = "uuid, name, display_name, description, namespace, created_at";
const VERSION_COLUMNS: &str = "uuid, pipeline_uuid, name, display_name, description, created_at, \
     code_source_url, package_url, pipeline_spec";
const READY: &str = "READY";

/// Which tag table belongs to which resource.
#[derive(Clone, Copy)]
struct TagTable {
    table: &'static str,
    owner: &'static str,
}

const PIPELINE_TAGS: TagTable = TagTable {
    table: "pipeline_tags",
    owner: "pipeline_uuid",
};
const VERSION_TAGS: TagTable = TagTable {
    table: "pipeline_version_tags",
    owner: "version_uuid",
};

fn pipeline(row: &AnyRow) -> Result<Pipeline, Error> {
    Ok(Pipeline {
        id: text(row, "uuid")?,
        name: text(row, "name")?,
        display_name: text(row, "display_name")?,
        description: text(row, "description")?,
        namespace: text(row, "namespace")?,
        created_at: int(row, "created_at")?,
        tags: Tags::new(),
    })
}

fn version(row: &AnyRow) -> Result<PipelineVersion, Error> {
    Ok(PipelineVersion {
        id: text(row, "uuid")?,
        pipeline_id: text(row, "pipeline_uuid")?,
        name: text(row, "name")?,
        display_name: text(row, "display_name")?,
        description: text(row, "description")?,
        created_at: int(row, "created_at")?,
        code_source_url: text(row, "code_source_url")?,
        package_url: text(row, "package_url")?,
        pipeline_spec: text(row, "pipeline_spec")?,
        tags: Tags::new(),
    })
}

async fn write_tags(
    tx: &mut Tx<'_>,
    tags: TagTable,
    owner: &str,
    values: &Tags,
) -> Result<(), Error> {
    let mut clear = Sql::new("DELETE FROM ");
    clear
        .push(tags.table)
        .push(" WHERE ")
        .push(tags.owner)
        .push(" = ")
        .bind(owner);
    tx.execute(&clear).await?;
    for (key, value) in values {
        let mut insert = Sql::new("INSERT INTO ");
        insert
            .push(tags.table)
            .push(" (")
            .push(tags.owner)
            .push(", tag_key, tag_value) VALUES (")
            .bind(owner)
            .push(", ")
            .bind(key)
            .push(", ")
            .bind(value)
            .push(")");
        tx.execute(&insert).await?;
    }
    Ok(())
}

async fn insert_version(
    tx: &mut Tx<'_>,
    new: &NewPipelineVersion,
) -> Result<PipelineVersion, Error> {
    let created = PipelineVersion {
        id: new_id(),
        pipeline_id: new.pipeline_id.clone(),
        name: new.name.clone(),
        display_name: new.display_name.clone(),
        description: new.description.clone(),
        created_at: new.created_at,
        code_source_url: new.code_source_url.clone(),
        package_url: new.package_url.clone(),
        pipeline_spec: new.pipeline_spec.clone(),
        tags: new.tags.clone(),
    };
    let mut sql = Sql::new("INSERT INTO pipeline_versions (");
    sql.push(VERSION_COLUMNS).push(", status) VALUES (");
    let values: [Arg; 10] = [
        (&created.id).into(),
        (&created.pipeline_id).into(),
        (&created.name).into(),
        (&created.display_name).into(),
        (&created.description).into(),
        created.created_at.into(),
        (&created.code_source_url).into(),
        (&created.package_url).into(),
        (&created.pipeline_spec).into(),
        READY.into(),
    ];
    push_values(&mut sql, values);
    tx.execute(&sql).await.map_err(|error| match error {
        Error::AlreadyExists(_) => Error::AlreadyExists(format!(
            "pipeline version named {:?} already exists in pipeline {}",
            new.name, new.pipeline_id
        )),
        other => other,
    })?;
    write_tags(tx, VERSION_TAGS, &created.id, &created.tags).await?;
    Ok(created)
}

/// Appends `v1, v2, …)`.
pub(super) fn push_values<const N: usize>(sql: &mut Sql, values: [Arg; N]) {
    for (index, value) in values.into_iter().enumerate() {
        if index > 0 {
            sql.push(", ");
        }
        sql.bind(value);
    }
    sql.push(")");
}

impl SqlStore {
    /// Tags of many owners in one query.
    async fn load_tags(
        &self,
        tags: TagTable,
        owners: &[String],
    ) -> Result<HashMap<String, Tags>, Error> {
        let mut found: HashMap<String, Tags> = HashMap::new();
        if owners.is_empty() {
            return Ok(found);
        }
        let mut sql = Sql::new("SELECT ");
        sql.push(tags.owner)
            .push(" AS owner, tag_key, tag_value FROM ")
            .push(tags.table)
            .push(" WHERE ")
            .push(tags.owner)
            .push(" IN (");
        for (index, owner) in owners.iter().enumerate() {
            if index > 0 {
                sql.push(", ");
            }
            sql.bind(owner);
        }
        sql.push(")");
        for row in self.fetch_all(&sql).await? {
            found
                .entry(text(&row, "owner")?)
                .or_default()
                .insert(text(&row, "tag_key")?, text(&row, "tag_value")?);
        }
        Ok(found)
    }

    /// Applies a display-name/tags update to a pipeline or version row in one
    /// transaction; `table` and `tags` are constants of this module.
    async fn apply_update(
        &self,
        table: &str,
        tags: TagTable,
        kind: &str,
        id: &str,
        update: &PipelineUpdate,
    ) -> Result<(), Error> {
        self.write("update pipeline", || async {
            let mut tx = self.begin_write().await?;
            let lock = tx.for_update();
            let mut check = Sql::new("SELECT uuid FROM ");
            check.push(table).push(" WHERE uuid = ").bind(id).push(lock);
            if tx.fetch_optional(&check).await?.is_none() {
                return Err(Error::not_found(kind, id));
            }
            if let Some(display_name) = &update.display_name {
                let mut sql = Sql::new("UPDATE ");
                sql.push(table)
                    .push(" SET display_name = ")
                    .bind(display_name)
                    .push(" WHERE uuid = ")
                    .bind(id);
                tx.execute(&sql).await?;
            }
            if let Some(values) = &update.tags {
                write_tags(&mut tx, tags, id, values).await?;
            }
            tx.commit().await
        })
        .await
    }

    async fn with_pipeline_tags(&self, mut items: Vec<Pipeline>) -> Result<Vec<Pipeline>, Error> {
        let ids: Vec<String> = items.iter().map(|item| item.id.clone()).collect();
        let mut tags = self.load_tags(PIPELINE_TAGS, &ids).await?;
        for item in &mut items {
            item.tags = tags.remove(&item.id).unwrap_or_default();
        }
        Ok(items)
    }

    async fn with_version_tags(
        &self,
        mut items: Vec<PipelineVersion>,
    ) -> Result<Vec<PipelineVersion>, Error> {
        let ids: Vec<String> = items.iter().map(|item| item.id.clone()).collect();
        let mut tags = self.load_tags(VERSION_TAGS, &ids).await?;
        for item in &mut items {
            item.tags = tags.remove(&item.id).unwrap_or_default();
        }
        Ok(items)
    }

    async fn one_pipeline(
        &self,
        sql: &Sql,
        missing: impl FnOnce() -> Error,
    ) -> Result<Pipeline, Error> {
        let row = self.fetch_optional(sql).await?.ok_or_else(missing)?;
        let found = pipeline(&row)?;
        let mut tagged = self.with_pipeline_tags(vec![found]).await?;
        tagged
            .pop()
            .ok_or_else(|| Error::Internal("pipeline vanished".into()))
    }

    async fn one_version(
        &self,
        sql: &Sql,
        missing: impl FnOnce() -> Error,
    ) -> Result<PipelineVersion, Error> {
        let row = self.fetch_optional(sql).await?.ok_or_else(missing)?;
        let found = version(&row)?;
        let mut tagged = self.with_version_tags(vec![found]).await?;
        tagged
            .pop()
            .ok_or_else(|| Error::Internal("pipeline version vanished".into()))
    }
}

#[async_trait]
impl PipelineStore for SqlStore {
    async fn create_pipeline(
        &self,
        new: NewPipeline,
        first_version: Option<NewPipelineVersion>,
    ) -> Result<(Pipeline, Option<PipelineVersion>), Error> {
        let created = Pipeline {
            id: new_id(),
            name: new.name.clone(),
            display_name: new.display_name.clone(),
            description: new.description.clone(),
            namespace: new.namespace.clone(),
            created_at: new.created_at,
            tags: new.tags.clone(),
        };
        self.write("create pipeline", || async {
            let mut tx = self.begin_write().await?;
            let mut sql = Sql::new("INSERT INTO pipelines (");
            sql.push(PIPELINE_COLUMNS).push(", status) VALUES (");
            let values: [Arg; 7] = [
                (&created.id).into(),
                (&created.name).into(),
                (&created.display_name).into(),
                (&created.description).into(),
                (&created.namespace).into(),
                created.created_at.into(),
                READY.into(),
            ];
            push_values(&mut sql, values);
            tx.execute(&sql).await.map_err(|error| match error {
                Error::AlreadyExists(_) => Error::AlreadyExists(format!(
                    "pipeline named {:?} already exists in namespace {:?}",
                    new.name, new.namespace
                )),
                other => other,
            })?;
            write_tags(&mut tx, PIPELINE_TAGS, &created.id, &created.tags).await?;
            let version = match first_version.clone() {
                Some(mut first) => {
                    first.pipeline_id = created.id.clone();
                    Some(insert_version(&mut tx, &first).await?)
                }
                None => None,
            };
            tx.commit().await?;
            Ok((created.clone(), version))
        })
        .await
    }

    async fn get_pipeline(&self, id: &str) -> Result<Pipeline, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(PIPELINE_COLUMNS)
            .push(" FROM pipelines WHERE uuid = ")
            .bind(id);
        self.one_pipeline(&sql, || Error::not_found("pipeline", id))
            .await
    }

    async fn get_pipeline_by_name(&self, namespace: &str, name: &str) -> Result<Pipeline, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(PIPELINE_COLUMNS)
            .push(" FROM pipelines WHERE namespace = ")
            .bind(namespace)
            .push(" AND name = ")
            .bind(name);
        self.one_pipeline(&sql, || {
            Error::NotFound(format!(
                "pipeline named {name:?} not found in namespace {namespace:?}"
            ))
        })
        .await
    }

    async fn list_pipelines(
        &self,
        namespace: Option<&str>,
        query: &ListQuery,
    ) -> Result<Page<Pipeline>, Error> {
        let mut scope = Sql::new(" FROM pipelines WHERE status = ");
        scope.bind(READY);
        if let Some(namespace) = namespace {
            scope.push(" AND namespace = ").bind(namespace);
        }
        scope.push_conditions(
            self.dialect,
            &query.conditions,
            Some((PIPELINE_TAGS.table, PIPELINE_TAGS.owner)),
        );
        let page = self
            .list_page(PIPELINE_COLUMNS, &scope, query, pipeline)
            .await?;
        let items = self.with_pipeline_tags(page.items).await?;
        Ok(Page { items, ..page })
    }

    async fn update_pipeline(&self, id: &str, update: PipelineUpdate) -> Result<Pipeline, Error> {
        self.apply_update("pipelines", PIPELINE_TAGS, "pipeline", id, &update)
            .await?;
        self.get_pipeline(id).await
    }

    async fn delete_pipeline(&self, id: &str, cascade: bool) -> Result<(), Error> {
        self.write("delete pipeline", || async {
            let mut tx = self.begin_write().await?;
            let lock = tx.for_update();
            let mut check = Sql::new("SELECT uuid FROM pipelines WHERE uuid = ");
            check.bind(id).push(lock);
            if tx.fetch_optional(&check).await?.is_none() {
                return Err(Error::not_found("pipeline", id));
            }
            let mut versions =
                Sql::new("SELECT COUNT(*) FROM pipeline_versions WHERE pipeline_uuid = ");
            versions.bind(id);
            let count = match tx.fetch_optional(&versions).await? {
                Some(row) => int(&row, 0)?,
                None => 0,
            };
            if count > 0 && !cascade {
                return Err(Error::FailedPrecondition(format!(
                    "pipeline {id} still has {count} version(s); delete them first or set cascade=true"
                )));
            }
            // Tags and versions go with the pipeline (ON DELETE CASCADE); spelled out so
            // the result does not depend on foreign-key enforcement being on.
            for statement in [
                "DELETE FROM pipeline_version_tags WHERE version_uuid IN (SELECT uuid FROM pipeline_versions WHERE pipeline_uuid = ",
                "DELETE FROM pipeline_versions WHERE pipeline_uuid = ",
                "DELETE FROM pipeline_tags WHERE pipeline_uuid = ",
            ] {
                let mut sql = Sql::new(statement);
                sql.bind(id);
                if statement.contains("IN (SELECT") {
                    sql.push(")");
                }
                tx.execute(&sql).await?;
            }
            let mut sql = Sql::new("DELETE FROM pipelines WHERE uuid = ");
            sql.bind(id);
            tx.execute(&sql).await?;
            tx.commit().await
        })
        .await
    }

    async fn create_pipeline_version(
        &self,
        new: NewPipelineVersion,
    ) -> Result<PipelineVersion, Error> {
        self.write("create pipeline version", || async {
            let mut tx = self.begin_write().await?;
            let lock = tx.for_update();
            let mut check = Sql::new("SELECT uuid FROM pipelines WHERE uuid = ");
            check.bind(&new.pipeline_id).push(lock);
            if tx.fetch_optional(&check).await?.is_none() {
                return Err(Error::not_found("pipeline", &new.pipeline_id));
            }
            let created = insert_version(&mut tx, &new).await?;
            tx.commit().await?;
            Ok(created)
        })
        .await
    }

    async fn get_pipeline_version(&self, id: &str) -> Result<PipelineVersion, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(VERSION_COLUMNS)
            .push(" FROM pipeline_versions WHERE uuid = ")
            .bind(id);
        self.one_version(&sql, || Error::not_found("pipeline version", id))
            .await
    }

    async fn latest_pipeline_version(&self, pipeline_id: &str) -> Result<PipelineVersion, Error> {
        let mut sql = Sql::new("SELECT ");
        sql.push(VERSION_COLUMNS)
            .push(" FROM pipeline_versions WHERE pipeline_uuid = ")
            .bind(pipeline_id)
            .push(" AND status = ")
            .bind(READY)
            .push(" ORDER BY created_at DESC, uuid DESC LIMIT 1");
        self.one_version(&sql, || {
            Error::NotFound(format!(
                "pipeline {pipeline_id} not found or has no versions"
            ))
        })
        .await
    }

    async fn list_pipeline_versions(
        &self,
        pipeline_id: &str,
        query: &ListQuery,
    ) -> Result<Page<PipelineVersion>, Error> {
        let mut scope = Sql::new(" FROM pipeline_versions WHERE pipeline_uuid = ");
        scope.bind(pipeline_id);
        scope.push_conditions(
            self.dialect,
            &query.conditions,
            Some((VERSION_TAGS.table, VERSION_TAGS.owner)),
        );
        let page = self
            .list_page(VERSION_COLUMNS, &scope, query, version)
            .await?;
        let items = self.with_version_tags(page.items).await?;
        Ok(Page { items, ..page })
    }

    async fn update_pipeline_version(
        &self,
        id: &str,
        update: PipelineUpdate,
    ) -> Result<PipelineVersion, Error> {
        self.apply_update(
            "pipeline_versions",
            VERSION_TAGS,
            "pipeline version",
            id,
            &update,
        )
        .await?;
        self.get_pipeline_version(id).await
    }

    async fn delete_pipeline_version(&self, id: &str) -> Result<(), Error> {
        self.write("delete pipeline version", || async {
            let mut tx = self.begin_write().await?;
            let mut tags = Sql::new("DELETE FROM pipeline_version_tags WHERE version_uuid = ");
            tags.bind(id);
            tx.execute(&tags).await?;
            let mut sql = Sql::new("DELETE FROM pipeline_versions WHERE uuid = ");
            sql.bind(id);
            if tx.execute(&sql).await? == 0 {
                return Err(Error::not_found("pipeline version", id));
            }
            tx.commit().await
        })
        .await
    }
}
