-- kfpd schema v1 (MySQL 8.4 / MariaDB). Times are Unix seconds. Large documents (pipeline specs)
-- live in their own tables or columns that list queries never read.

CREATE TABLE experiments (
    uuid VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(128) NOT NULL,
    description LONGTEXT NOT NULL,
    namespace VARCHAR(63) NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    last_run_created_at BIGINT NOT NULL DEFAULT 0,
    storage_state VARCHAR(32) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX experiments_namespace_name ON experiments (namespace, name);
CREATE INDEX experiments_namespace_created ON experiments (namespace, created_at, uuid);

CREATE TABLE default_experiment (
    id BIGINT NOT NULL PRIMARY KEY,
    experiment_uuid VARCHAR(64) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE pipelines (
    uuid VARCHAR(64) NOT NULL PRIMARY KEY,
    name VARCHAR(128) NOT NULL,
    display_name VARCHAR(255) NOT NULL,
    description LONGTEXT NOT NULL,
    namespace VARCHAR(63) NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    status VARCHAR(32) NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX pipelines_namespace_name ON pipelines (namespace, name);
CREATE INDEX pipelines_namespace_created ON pipelines (namespace, created_at, uuid);

CREATE TABLE pipeline_tags (
    pipeline_uuid VARCHAR(64) NOT NULL REFERENCES pipelines (uuid) ON DELETE CASCADE,
    tag_key VARCHAR(63) NOT NULL,
    tag_value VARCHAR(63) NOT NULL,
    PRIMARY KEY (pipeline_uuid, tag_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX pipeline_tags_key_value ON pipeline_tags (tag_key, tag_value, pipeline_uuid);

CREATE TABLE pipeline_versions (
    uuid VARCHAR(64) NOT NULL PRIMARY KEY,
    pipeline_uuid VARCHAR(64) NOT NULL REFERENCES pipelines (uuid) ON DELETE CASCADE,
    name VARCHAR(128) NOT NULL,
    display_name VARCHAR(255) NOT NULL,
    description LONGTEXT NOT NULL,
    created_at BIGINT NOT NULL,
    status VARCHAR(32) NOT NULL,
    code_source_url LONGTEXT NOT NULL,
    package_url LONGTEXT NOT NULL,
    pipeline_spec LONGTEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE UNIQUE INDEX pipeline_versions_pipeline_name ON pipeline_versions (pipeline_uuid, name);
CREATE INDEX pipeline_versions_pipeline_created ON pipeline_versions (pipeline_uuid, created_at, uuid);

CREATE TABLE pipeline_version_tags (
    version_uuid VARCHAR(64) NOT NULL REFERENCES pipeline_versions (uuid) ON DELETE CASCADE,
    tag_key VARCHAR(63) NOT NULL,
    tag_value VARCHAR(63) NOT NULL,
    PRIMARY KEY (version_uuid, tag_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX pipeline_version_tags_key_value ON pipeline_version_tags (tag_key, tag_value, version_uuid);

CREATE TABLE runs (
    uuid VARCHAR(64) NOT NULL PRIMARY KEY,
    experiment_uuid VARCHAR(64) NOT NULL,
    namespace VARCHAR(63) NOT NULL DEFAULT '',
    display_name VARCHAR(255) NOT NULL,
    description LONGTEXT NOT NULL,
    storage_state VARCHAR(32) NOT NULL,
    service_account VARCHAR(255) NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    scheduled_at BIGINT NOT NULL DEFAULT 0,
    finished_at BIGINT NOT NULL DEFAULT 0,
    archived_at BIGINT NOT NULL DEFAULT 0,
    state VARCHAR(32) NOT NULL,
    conditions VARCHAR(32) NOT NULL,
    error LONGTEXT,
    pipeline_uuid VARCHAR(64) NOT NULL DEFAULT '',
    pipeline_version_uuid VARCHAR(64) NOT NULL DEFAULT '',
    recurring_run_uuid VARCHAR(64) NOT NULL DEFAULT '',
    runtime_config LONGTEXT NOT NULL,
    state_history LONGTEXT NOT NULL,
    runtime_details LONGTEXT NOT NULL,
    inline_spec BIGINT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX runs_created ON runs (created_at, uuid);
CREATE INDEX runs_experiment_created ON runs (experiment_uuid, created_at, uuid);
CREATE INDEX runs_namespace_created ON runs (namespace, created_at, uuid);
CREATE INDEX runs_state_created ON runs (state, created_at, uuid);
CREATE INDEX runs_recurring_state ON runs (recurring_run_uuid, state);

CREATE TABLE run_specs (
    run_uuid VARCHAR(64) NOT NULL PRIMARY KEY REFERENCES runs (uuid) ON DELETE CASCADE,
    pipeline_spec LONGTEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

CREATE TABLE recurring_runs (
    uuid VARCHAR(64) NOT NULL PRIMARY KEY,
    display_name VARCHAR(255) NOT NULL,
    description LONGTEXT NOT NULL,
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
    pipeline_spec LONGTEXT,
    runtime_config LONGTEXT NOT NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE INDEX recurring_runs_created ON recurring_runs (created_at, uuid);
CREATE INDEX recurring_runs_experiment_created ON recurring_runs (experiment_uuid, created_at, uuid);
CREATE INDEX recurring_runs_namespace_created ON recurring_runs (namespace, created_at, uuid);
