-- Retention. A run whose artifacts and task logs were deleted from the artifact
-- store because it finished longer ago than the artifact retention allows keeps
-- its rows; artifacts_deleted_at (Unix seconds, 0 while they are kept) says when
-- they went, and each artifact whose object was deleted says so in deleted_at.
-- The indexes find the runs retention looks at by finish time, without reading
-- the runs whose artifacts are already gone.

ALTER TABLE runs ADD COLUMN artifacts_deleted_at BIGINT NOT NULL DEFAULT 0;
ALTER TABLE artifacts ADD COLUMN deleted_at BIGINT NOT NULL DEFAULT 0;
CREATE INDEX runs_artifacts_expiry ON runs (artifacts_deleted_at, finished_at, uuid);
CREATE INDEX runs_finished ON runs (finished_at, uuid);
