-- Execution tracking without ML Metadata: the tasks of a run (every kind of node in
-- the pipeline's DAG), the artifacts they produce, and which tasks consumed them.

CREATE TABLE tasks (
    uuid VARCHAR(64) NOT NULL PRIMARY KEY,
    run_uuid VARCHAR(64) NOT NULL,
    parent_uuid VARCHAR(64) NOT NULL DEFAULT '',
    path VARCHAR(700) NOT NULL,
    kind VARCHAR(32) NOT NULL,
    name VARCHAR(255) NOT NULL,
    display_name VARCHAR(255) NOT NULL,
    iteration_index BIGINT NOT NULL DEFAULT -1,
    state VARCHAR(32) NOT NULL,
    state_history TEXT NOT NULL DEFAULT '[]',
    error TEXT,
    created_at BIGINT NOT NULL,
    started_at BIGINT NOT NULL DEFAULT 0,
    finished_at BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    inputs TEXT NOT NULL DEFAULT '{}',
    outputs TEXT NOT NULL DEFAULT '{}',
    details TEXT NOT NULL DEFAULT '{}',
    fingerprint VARCHAR(64) NOT NULL DEFAULT '',
    cached_from VARCHAR(64) NOT NULL DEFAULT ''
);
CREATE UNIQUE INDEX tasks_run_path ON tasks (run_uuid, path);
CREATE INDEX tasks_fingerprint ON tasks (fingerprint, finished_at);

CREATE TABLE artifacts (
    id BIGINT NOT NULL PRIMARY KEY,
    run_uuid VARCHAR(64) NOT NULL,
    producer_task_uuid VARCHAR(64) NOT NULL DEFAULT '',
    output_key VARCHAR(255) NOT NULL DEFAULT '',
    name VARCHAR(255) NOT NULL,
    uri VARCHAR(2048) NOT NULL,
    schema_title VARCHAR(255) NOT NULL,
    schema_version VARCHAR(64) NOT NULL DEFAULT '',
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
CREATE INDEX artifacts_run ON artifacts (run_uuid, id);
CREATE INDEX artifacts_producer ON artifacts (producer_task_uuid);

CREATE TABLE artifact_links (
    task_uuid VARCHAR(64) NOT NULL,
    artifact_id BIGINT NOT NULL,
    direction VARCHAR(8) NOT NULL,
    io_key VARCHAR(255) NOT NULL,
    run_uuid VARCHAR(64) NOT NULL,
    PRIMARY KEY (task_uuid, artifact_id, direction, io_key)
);
CREATE INDEX artifact_links_artifact ON artifact_links (artifact_id);
CREATE INDEX artifact_links_run ON artifact_links (run_uuid);
