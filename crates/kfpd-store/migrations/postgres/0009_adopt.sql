-- Adopting an upstream KFP database (kfpd adopt). Each upstream row brought over
-- is remembered with a fingerprint of its columns as upstream stored them, so a
-- later pass brings only rows that are new or changed since, and a pass that
-- stopped halfway (a crash) resumes where its last committed batch ended: the
-- marks are written in the transaction that writes the rows. Upstream's tables
-- are only ever read.

CREATE TABLE adopted_rows (
    source_table VARCHAR(32) NOT NULL,
    source_id VARCHAR(191) NOT NULL,
    fingerprint VARCHAR(64) NOT NULL,
    adopted_at BIGINT NOT NULL,
    PRIMARY KEY (source_table, source_id)
);

-- One row per finished pass: when, from where (the URL without its password)
-- and how many rows it brought.
CREATE TABLE adopt_passes (
    started_at BIGINT NOT NULL,
    finished_at BIGINT NOT NULL,
    source VARCHAR(512) NOT NULL,
    brought BIGINT NOT NULL,
    unchanged BIGINT NOT NULL,
    refused BIGINT NOT NULL
);
CREATE INDEX adopt_passes_finished ON adopt_passes (finished_at);
