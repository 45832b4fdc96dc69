-- =============================================================================
-- sql/import_issues.sql — import a folder of gh-analysis issue JSON files
-- =============================================================================
--
-- Reads every file matching a glob (one issue per file, as gh-analysis writes them:
-- data/issues/{org}_{repo}_issue_{n}.json) into the tables of sql/schema.sql.
-- Re-runnable: running it again with the same or updated files never duplicates rows.
--
-- HOW TO RUN
--
--   The glob comes from the variable `issues_glob`; when it is unset the default is
--   'data/issues/*.json' (relative to the current working directory).
--
--   duckdb shell:
--       duckdb data/issues.duckdb
--       D .read sql/schema.sql
--       D SET VARIABLE issues_glob = 'data/sample/issues/*.json';   -- optional
--       D .read sql/import_issues.sql
--
--   one line, non-interactive:
--       duckdb data/issues.duckdb \
--           -c ".read sql/schema.sql" \
--           -c "SET VARIABLE issues_glob = 'data/sample/issues/*.json'" \
--           -c ".read sql/import_issues.sql"
--
--   Python (the file is plain SQL, no dot-commands, so it runs through execute()):
--       con = duckdb.connect('data/issues.duckdb')
--       con.execute(open('sql/schema.sql').read())
--       con.execute("SET VARIABLE issues_glob = ?", ['data/sample/issues/*.json'])
--       con.execute(open('sql/import_issues.sql').read())
--
--   ON ERROR (bad file, no file matched): nothing is written, but the session is left
--   inside the script's aborted transaction — `.read` / execute() stop at the failing
--   statement, before COMMIT. Run ROLLBACK before reusing the session:
--       duckdb shell:  ROLLBACK;        python:  con.execute('ROLLBACK')
--   (`duckdb db -c ... -c ".read sql/import_issues.sql"` just exits non-zero.)
--
--   Why a variable and not a macro: read_json(COALESCE(getvariable('issues_glob'), ...))
--   is accepted by both DuckDB 1.5.6 (the `duckdb` CLI from PyPI) and 2.0.1 (the Python
--   wheel) — the glob is folded to a constant at bind time. Checked on both.
--
-- WHAT IT DOES (all inside one transaction: on any error nothing is written)
--
--   1. Stages the files into a TEMP table `_gh_import` (one row per issue). If the
--      glob holds the same (org, repo, number) twice, the row with the newest
--      updated_at wins (then the last file name).
--   2. Fails with a message naming a file if any file lacks org, repo or issue.number.
--   3. Upserts `issues` by (org, repo, number): an existing issue keeps its `id`
--      (INSERT ... ON CONFLICT (org, repo, number) DO UPDATE); imported_at is set to
--      now. NB: the sequence is consumed even for updated rows, so ids can have gaps.
--   4. Replaces the labels and comments OF THE IMPORTED ISSUES ONLY (delete, then
--      insert from the files). Issues not in the glob are left untouched; issues
--      whose file disappeared are NOT deleted.
--   5. Prints one summary row: issues imported, of which new / updated, labels, comments.
--
-- ROBUSTNESS
--
--   Only org, repo and issue.number are required. Everything else may be missing or
--   null: body, state, user, labels, comments, timestamps. Unknown keys are ignored.
--   `labels` may be a list of objects ({name, color, description, ...}) or of plain
--   strings; `comments` is used only when it is an array (the raw GitHub API puts a
--   comment COUNT there — then the issue just gets no comment rows).
--   Timestamps are ISO-8601 strings (GitHub's "2024-01-15T10:00:00Z"); a malformed one
--   fails the import with DuckDB's conversion error rather than being silently dropped.
--   A glob matching no file fails with DuckDB's "No files found" error.
-- =============================================================================

BEGIN TRANSACTION;

-- 1. Stage ------------------------------------------------------------------------
CREATE OR REPLACE TEMP TABLE _gh_import AS
SELECT
    filename                                    AS source_file,
    org,
    repo,
    issue.number                                AS number,
    issue.title                                 AS title,
    issue.body                                  AS body,
    issue.state                                 AS state,
    issue."user".login                          AS author_login,
    issue."user".id                             AS author_id,
    CAST(issue.created_at AS TIMESTAMPTZ)       AS created_at,
    CAST(issue.updated_at AS TIMESTAMPTZ)       AS updated_at,
    -- kept as JSON and unpacked below, so odd shapes never fail the read
    issue.labels                                AS labels_json,
    issue.comments                              AS comments_json,
    -- filled in step 3
    CAST(NULL AS BIGINT)                        AS issue_id,
    CAST(NULL AS BOOLEAN)                       AS is_new
FROM read_json(
    COALESCE(getvariable('issues_glob'), 'data/issues/*.json'),
    format = 'auto',
    filename = true,
    maximum_object_size = 268435456,            -- 256 MiB: long threads are big
    columns = {
        org:   'VARCHAR',
        repo:  'VARCHAR',
        issue: 'STRUCT(
                    number     INTEGER,
                    title      VARCHAR,
                    body       VARCHAR,
                    state      VARCHAR,
                    labels     JSON,
                    "user"     STRUCT(login VARCHAR, id BIGINT),
                    comments   JSON,
                    created_at VARCHAR,
                    updated_at VARCHAR
                )'
    }
)
QUALIFY row_number() OVER (
    PARTITION BY org, repo, issue.number
    ORDER BY CAST(issue.updated_at AS TIMESTAMPTZ) DESC NULLS LAST, filename DESC
) = 1;

-- 2. Validate (error() aborts the transaction; SET VARIABLE keeps the shell quiet) ---
SET VARIABLE _gh_import_check = (
    SELECT CASE WHEN count(*) > 0 THEN error(
        'import_issues.sql: ' || count(*) || ' file(s) lack org, repo or issue.number, e.g. '
        || min(source_file) || ' — every gh-analysis issue file needs {"org", "repo", "issue": {"number", ...}}'
    ) END
    FROM _gh_import
    WHERE org IS NULL OR repo IS NULL OR number IS NULL
);
RESET VARIABLE _gh_import_check;

-- 3. Upsert issues ------------------------------------------------------------------
UPDATE _gh_import AS s
SET is_new = NOT EXISTS (
    SELECT 1 FROM issues i WHERE i.org = s.org AND i.repo = s.repo AND i.number = s.number
);

INSERT INTO issues (org, repo, number, title, body, state, author_login, author_id,
                    created_at, updated_at, imported_at)
SELECT org, repo, number, title, body, state, author_login, author_id,
       created_at, updated_at, current_timestamp
FROM _gh_import
ORDER BY org, repo, number          -- new issues get ids in a stable order
ON CONFLICT (org, repo, number) DO UPDATE SET
    title        = excluded.title,
    body         = excluded.body,
    state        = excluded.state,
    author_login = excluded.author_login,
    author_id    = excluded.author_id,
    created_at   = excluded.created_at,
    updated_at   = excluded.updated_at,
    imported_at  = excluded.imported_at;

UPDATE _gh_import AS s
SET issue_id = i.id
FROM issues i
WHERE i.org = s.org AND i.repo = s.repo AND i.number = s.number;

-- 4. Replace labels and comments of the imported issues -----------------------------
DELETE FROM labels   WHERE issue_id IN (SELECT issue_id FROM _gh_import);
DELETE FROM comments WHERE issue_id IN (SELECT issue_id FROM _gh_import);

INSERT INTO labels (issue_id, name, color, description)
SELECT issue_id, name, color, description
FROM (
    SELECT
        issue_id,
        CASE WHEN json_type(l) = 'VARCHAR' THEN l ->> '$' ELSE l ->> 'name' END AS name,
        l ->> 'color'       AS color,
        l ->> 'description' AS description
    FROM (
        SELECT issue_id, unnest(json_extract(labels_json, '$[*]')) AS l
        FROM _gh_import
        WHERE json_type(labels_json) = 'ARRAY'
    )
)
WHERE name IS NOT NULL
QUALIFY row_number() OVER (PARTITION BY issue_id, name) = 1;   -- a label once per issue

INSERT INTO comments (issue_id, position, github_id, author_login, body,
                      created_at, updated_at)
SELECT
    issue_id,
    pos,
    TRY_CAST(c ->> 'id' AS BIGINT),
    c ->> '$.user.login',
    c ->> 'body',
    CAST(c ->> 'created_at' AS TIMESTAMPTZ),
    CAST(c ->> 'updated_at' AS TIMESTAMPTZ)
FROM (
    SELECT
        issue_id,
        unnest(json_extract(comments_json, '$[*]'))                       AS c,
        unnest(range(CAST(json_array_length(comments_json) AS BIGINT)))   AS pos
    FROM _gh_import
    WHERE json_type(comments_json) = 'ARRAY'
)
ORDER BY issue_id, pos;

COMMIT;

-- 5. Summary ------------------------------------------------------------------------
SELECT
    count(*)                                                                AS issues,
    count(*) FILTER (WHERE is_new)                                          AS issues_new,
    count(*) FILTER (WHERE NOT is_new)                                      AS issues_updated,
    (SELECT count(*) FROM labels   WHERE issue_id IN (SELECT issue_id FROM _gh_import)) AS labels,
    (SELECT count(*) FROM comments WHERE issue_id IN (SELECT issue_id FROM _gh_import)) AS comments
FROM _gh_import;

DROP TABLE IF EXISTS _gh_import;
