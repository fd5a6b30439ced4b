-- An importer without `reimport` looks for an artifact already recorded with its
-- URI; without an index that lookup would read every artifact. A prefix index:
-- the whole column is longer than InnoDB's key limit.

CREATE INDEX artifacts_uri ON artifacts (uri(255));
