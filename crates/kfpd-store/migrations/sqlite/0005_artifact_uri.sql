-- An importer without `reimport` looks for an artifact already recorded with its
-- URI; without an index that lookup would read every artifact.

CREATE INDEX artifacts_uri ON artifacts (uri);
