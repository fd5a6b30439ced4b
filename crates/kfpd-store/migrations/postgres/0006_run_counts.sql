-- Run counts per (namespace, experiment, storage state, state), so that a run list
-- filtered only on those columns gets its total_size from a few small rows instead
-- of counting a million runs. Every statement that inserts, deletes or changes those
-- columns of a run adjusts the counts in the same transaction. Writers spread over
-- `shard` (derived from the run id) so concurrent creates in one experiment do not
-- all update one row; only sums over shards mean anything, a single row may be
-- negative.
CREATE TABLE run_counts (
    namespace VARCHAR(63) NOT NULL,
    experiment_uuid VARCHAR(64) NOT NULL,
    storage_state VARCHAR(32) NOT NULL,
    state VARCHAR(32) NOT NULL,
    shard SMALLINT NOT NULL,
    run_count BIGINT NOT NULL,
    PRIMARY KEY (namespace, experiment_uuid, storage_state, state, shard)
);
INSERT INTO run_counts (namespace, experiment_uuid, storage_state, state, shard, run_count)
SELECT namespace, experiment_uuid, storage_state, state, 0, COUNT(*)
FROM runs GROUP BY namespace, experiment_uuid, storage_state, state;
