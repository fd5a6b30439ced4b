-- Cache entries are looked up per pipeline and namespace, as upstream's
-- TaskService filter does (fingerprint, pipelineName, namespace): a task's
-- fingerprint alone does not say which pipeline it belongs to.

ALTER TABLE tasks ADD COLUMN cache_scope VARCHAR(320) NOT NULL DEFAULT '';
DROP INDEX tasks_fingerprint;
CREATE INDEX tasks_cache ON tasks (fingerprint, cache_scope, finished_at);
