-- =============================================================================
-- sql/schema.sql — the gh-analysis issue schema for DuckDB
-- =============================================================================
--
-- Three tables hold what gh-analysis keeps as one JSON file per issue
-- (data/issues/{org}_{repo}_issue_{n}.json):
--
--   issues    one row per GitHub issue; `issues.id` is the integer key that every
--             other table (labels, comments, and the ai_batch tracking tables
--             batch_items / ai_analyses) refers to. (org, repo, number) is unique.
--   labels    one row per label per issue; (issue_id, name) is unique.
--   comments  one row per comment, in thread order (`position`, 0-based).
--
-- Usage (idempotent: every statement is CREATE ... IF NOT EXISTS, so running it on
-- a database that already has the tables changes nothing):
--
--   duckdb data/issues.duckdb -c ".read sql/schema.sql"
--   python: con.execute(open('sql/schema.sql').read())
--
-- Then import issues with sql/import_issues.sql.
--
-- DuckDB facts this file is designed around (checked on DuckDB 1.5.6 and 2.0.1):
--   * `INTEGER PRIMARY KEY` does not auto-increment: ids come from sequences,
--     `DEFAULT nextval('<seq>')`.
--   * `ON DELETE CASCADE` is rejected by the parser, and FOREIGN KEY constraints make
--     a re-import fail (a referenced issue row cannot be deleted or, with indexes,
--     updated). So there are NO foreign keys here: labels.issue_id and
--     comments.issue_id refer to issues.id by convention, and the import script
--     (and the extension) keep them consistent — they delete an issue's labels and
--     comments themselves before re-inserting them.
--   * Timestamps are instants: GitHub writes ISO-8601 UTC ("2024-01-15T10:00:00Z"),
--     stored as TIMESTAMPTZ (displayed in the session's TimeZone setting; use
--     `SET TimeZone = 'UTC'` for stable output).
--   * Sequences are consumed by `INSERT ... ON CONFLICT DO UPDATE` even when the
--     row already exists, so ids may have gaps after a re-import. Existing rows keep
--     their id; only gaps appear. Never assume ids are dense.
-- =============================================================================

CREATE SEQUENCE IF NOT EXISTS issues_id_seq START 1;
CREATE SEQUENCE IF NOT EXISTS comments_id_seq START 1;

-- One row per GitHub issue.
CREATE TABLE IF NOT EXISTS issues (
    id            BIGINT PRIMARY KEY DEFAULT nextval('issues_id_seq'),
    org           VARCHAR NOT NULL,          -- GitHub owner, e.g. 'replicatedhq'
    repo          VARCHAR NOT NULL,          -- repository name, e.g. 'kots'
    number        INTEGER NOT NULL,          -- issue number within the repository
    title         VARCHAR,
    body          VARCHAR,                   -- markdown; NULL when the issue has no body
    state         VARCHAR,                   -- 'open' | 'closed'
    author_login  VARCHAR,                   -- issue.user.login
    author_id     BIGINT,                    -- issue.user.id (GitHub user id)
    created_at    TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ,
    imported_at   TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,  -- last (re-)import
    UNIQUE (org, repo, number)
);

-- One row per label per issue. Replaced wholesale on every re-import of the issue.
CREATE TABLE IF NOT EXISTS labels (
    issue_id      BIGINT NOT NULL,           -- issues.id (no FOREIGN KEY, see above)
    name          VARCHAR NOT NULL,          -- e.g. 'bug', 'product::kots', 'type::feature'
    color         VARCHAR,                   -- hex without '#', e.g. 'd73a4a'
    description   VARCHAR,
    PRIMARY KEY (issue_id, name)
);

-- One row per comment, in thread order. Replaced wholesale on every re-import.
CREATE TABLE IF NOT EXISTS comments (
    id            BIGINT PRIMARY KEY DEFAULT nextval('comments_id_seq'),
    issue_id      BIGINT NOT NULL,           -- issues.id (no FOREIGN KEY, see above)
    position      INTEGER NOT NULL,          -- 0-based order in the file's comments array
    github_id     BIGINT,                    -- comments[].id when present
    author_login  VARCHAR,                   -- comments[].user.login
    body          VARCHAR,
    created_at    TIMESTAMPTZ,
    updated_at    TIMESTAMPTZ
);

-- Lookups by issue: the import (delete-then-insert per issue) and the extension
-- (building one request per issue with its labels and comments).
CREATE INDEX IF NOT EXISTS comments_issue_id_idx ON comments (issue_id);
CREATE INDEX IF NOT EXISTS labels_issue_id_idx ON labels (issue_id);
