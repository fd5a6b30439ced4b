-- kfpd schema v1 (PostgreSQL). Times are Unix seconds. Large documents (pipeline specs)
-- live in their own tables or columns that list queries never read.

CREATE TABLE experiments (
    uuid VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(128) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    namespace VARCHAR(63) NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    last_run_created_at BIGINT NOT NULL DEFAULT 0,
    storage_state VARCHAR(32) NOT NULL
);
CREATE UNIQUE INDEX experiments_namespace_name ON experiments (namespace, name);
CREATE INDEX experiments_namespace_created ON experiments (namespace, created_at, uuid);

CREATE TABLE default_experiment (
    id BIGINT NOT NULL PRIMARY KEY,
    experiment_uuid VARCHAR(64) NOT NULL
);

CREATE TABLE pipelines (
    uuid VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(128) NOT NULL,
    display_name VARCHAR(255) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    namespace VARCHAR(63) NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    status VARCHAR(32) NOT NULL
);
CREATE UNIQUE INDEX pipelines_namespace_name ON pipelines (namespace, name);
CREATE INDEX pipelines_namespace_created ON pipelines (namespace, created_at, uuid);

CREATE TABLE pipeline_tags (
    pipeline_uuid VARCHAR(64) NOT NULL REFERENCES pipelines (uuid) ON DELETE CASCADE,
    tag_key VARCHAR(63) NOT NULL,
    tag_value VARCHAR(63) NOT NULL,
    PRIMARY KEY (pipeline_uuid, tag_key)
);
CREATE INDEX pipeline_tags_key_value ON pipeline_tags (tag_key, tag_value, pipeline_uuid);

CREATE TABLE pipeline_versions (
    uuid VARCHAR(64) NOT NULL PRIMARY KEY,
    pipeline_uuid VARCHAR(64) NOT NULL REFERENCES pipelines (uuid) ON DELETE CASCADE,
    name VARCHAR(128) NOT NULL,
    display_name VARCHAR(255) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    status VARCHAR(32) NOT NULL,
    code_source_url TEXT NOT NULL DEFAULT '',
    package_url TEXT NOT NULL DEFAULT '',
    pipeline_spec TEXT NOT NULL
);
CREATE UNIQUE INDEX pipeline_versions_pipeline_name ON pipeline_versions (pipeline_uuid, name);
CREATE INDEX pipeline_versions_pipeline_created ON pipeline_versions (pipeline_uuid, created_at, uuid);

CREATE TABLE pipeline_version_tags (
    version_uuid VARCHAR(64) NOT NULL REFERENCES pipeline_versions (uuid) ON DELETE CASCADE,
    tag_key VARCHAR(63) NOT NULL,
    tag_value VARCHAR(63) NOT NULL,
    PRIMARY KEY (version_uuid, tag_key)
);
CREATE INDEX pipeline_version_tags_key_value ON pipeline_version_tags (tag_key, tag_value, version_uuid);

CREATE TABLE runs (
    uuid VARCHAR(64) NOT NULL PRIMARY KEY,
    experiment_uuid VARCHAR(64) NOT NULL,
    namespace VARCHAR(63) NOT NULL DEFAULT '',
    display_name VARCHAR(255) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    storage_state VARCHAR(32) NOT NULL,
    service_account VARCHAR(255) NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    scheduled_at BIGINT NOT NULL DEFAULT 0,
    finished_at BIGINT NOT NULL DEFAULT 0,
    archived_at BIGINT NOT NULL DEFAULT 0,
    state VARCHAR(32) NOT NULL,
    conditions VARCHAR(32) NOT NULL,
    error TEXT,
    pipeline_uuid VARCHAR(64) NOT NULL DEFAULT '',
    pipeline_version_uuid VARCHAR(64) NOT NULL DEFAULT '',
    recurring_run_uuid VARCHAR(64) NOT NULL DEFAULT '',
    runtime_config TEXT NOT NULL DEFAULT '',
    state_history TEXT NOT NULL DEFAULT '[]',
    runtime_details TEXT NOT NULL DEFAULT '',
    inline_spec BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX runs_created ON runs (created_at, uuid);
CREATE INDEX runs_experiment_created ON runs (experiment_uuid, created_at, uuid);
CREATE INDEX runs_namespace_created ON runs (namespace, created_at, uuid);
CREATE INDEX runs_state_created ON runs (state, created_at, uuid);
CREATE INDEX runs_recurring_state ON runs (recurring_run_uuid, state);

CREATE TABLE run_specs (
    run_uuid VARCHAR(64) NOT NULL PRIMARY KEY REFERENCES runs (uuid) ON DELETE CASCADE,
    pipeline_spec TEXT NOT NULL
);

CREATE TABLE recurring_runs (
    uuid VARCHAR(64) NOT NULL PRIMARY KEY,
    display_name VARCHAR(255) NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    namespace VARCHAR(63) NOT NULL DEFAULT '',
    experiment_uuid VARCHAR(64) NOT NULL,
    service_account VARCHAR(255) NOT NULL DEFAULT '',
    max_concurrency BIGINT NOT NULL,
    no_catchup BIGINT NOT NULL DEFAULT 0,
    enabled BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL DEFAULT 0,
    trigger_kind VARCHAR(16) NOT NULL,
    cron VARCHAR(255) NOT NULL DEFAULT '',
    interval_second BIGINT NOT NULL DEFAULT 0,
    start_time BIGINT,
    end_time BIGINT,
    pipeline_uuid VARCHAR(64) NOT NULL DEFAULT '',
    pipeline_version_uuid VARCHAR(64) NOT NULL DEFAULT '',
    pipeline_spec TEXT,
    runtime_config TEXT NOT NULL DEFAULT ''
);
CREATE INDEX recurring_runs_created ON recurring_runs (created_at, uuid);
CREATE INDEX recurring_runs_experiment_created ON recurring_runs (experiment_uuid, created_at, uuid);
CREATE INDEX recurring_runs_namespace_created ON recurring_runs (namespace, created_at, uuid);
