-- Firing recurring runs. Each row remembers the last tick it fired (or skipped,
-- when it was enabled again or its trigger changed) and when it is due next;
-- a scheduler claims a tick by moving last_fired_at forward with a conditional
-- UPDATE in the transaction that inserts the run. next_fire_at is NULL when the
-- trigger will not fire again. revision counts edits, so a tick computed from an
-- older trigger cannot be claimed.

ALTER TABLE recurring_runs ADD COLUMN last_fired_at BIGINT;
ALTER TABLE recurring_runs ADD COLUMN next_fire_at BIGINT;
ALTER TABLE recurring_runs ADD COLUMN fired_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE recurring_runs ADD COLUMN revision BIGINT NOT NULL DEFAULT 0;
-- Recurring runs stored before kfpd fired them start from now instead of
-- backfilling since their creation; one-off ones still fire once. A next_fire_at
-- of 0 makes the scheduler look at each row once and store its real next tick.
UPDATE recurring_runs SET last_fired_at = UNIX_TIMESTAMP() WHERE trigger_kind <> 'none';
UPDATE recurring_runs SET next_fire_at = 0;
CREATE INDEX recurring_runs_due ON recurring_runs (enabled, next_fire_at);
