//! The tracking tables' DDL, defined once here; their creation on first use (and the
//! columns a later release added); and the up-front check that no table or view of the
//! user's is in their way.
//!
//! They are created on first use by any `batch_*` function, never at `LOAD` (SQL run
//! at load time would be written into the user's file and fails on a read-only
//! database).

use duckdb::{params, Connection};

use super::{StoreError, Tx};

/// Tables the extension owns, in creation order.
pub(crate) const OWNED_TABLES: [&str; 4] =
    ["batch_jobs", "batch_items", "ai_analyses", "ai_processors"];

/// The tables of the first releases: a read-only database that has these (and not
/// `ai_processors`, added later) still works.
const FIRST_TABLES: usize = 3;

/// The table of processor definitions before it was `ai_processors` (its name is the
/// table function's now); its rows move on first use.
const OLD_PROCESSORS_TABLE: &str = "batch_processors";

/// The DDL of the tracking tables. Idempotent.
pub(crate) const SCHEMA_DDL: &str = r#"
CREATE SEQUENCE IF NOT EXISTS batch_jobs_id_seq;
CREATE TABLE IF NOT EXISTS batch_jobs (
    id                       BIGINT PRIMARY KEY DEFAULT nextval('batch_jobs_id_seq'),
    job_id                   VARCHAR NOT NULL UNIQUE,   -- human-usable: job_YYYYMMDD_HHMMSS_xxxx
    provider                 VARCHAR NOT NULL,          -- 'openai'
    processor                VARCHAR NOT NULL,          -- 'product-labeling'
    processor_version        VARCHAR,
    model                    VARCHAR NOT NULL,
    status                   VARCHAR NOT NULL,          -- see README: job statuses
    issues_count             INTEGER NOT NULL DEFAULT 0,-- items in this job
    completed_count          INTEGER NOT NULL DEFAULT 0,
    failed_count             INTEGER NOT NULL DEFAULT 0,
    skipped_count            INTEGER NOT NULL DEFAULT 0,-- selected but skipped at submit
    created_at               TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    submitted_at             TIMESTAMPTZ,
    completed_at             TIMESTAMPTZ,
    updated_at               TIMESTAMPTZ,
    collected_at             TIMESTAMPTZ,
    cost_estimate            DECIMAL(10,4),
    estimated_input_tokens   BIGINT,
    estimated_output_tokens  BIGINT,
    input_tokens             BIGINT,                    -- actual, from the provider's usage
    output_tokens            BIGINT,
    actual_cost              DECIMAL(10,4),
    selection_query          VARCHAR,                   -- the SQL text, the id list or the filters
    options                  JSON,                      -- temperature, max_output_tokens, ...
    base_url                 VARCHAR,
    provider_batch_id        VARCHAR,
    input_file_id            VARCHAR,
    output_file_id           VARCHAR,
    error_file_id            VARCHAR,
    retry_of                 VARCHAR,                   -- job_id this job retries
    error_message            VARCHAR,
    collect_attempts         INTEGER,                   -- refreshes that found the result files unusable
    provider_completed       BIGINT,                    -- the provider's request counts at the last poll
    provider_failed          BIGINT,
    provider_total           BIGINT,
    progress_at              TIMESTAMPTZ,               -- when completed + failed last changed (first seen)
    queued_at                TIMESTAMPTZ,               -- when the job last went 'queued'
    limit_refusals           INTEGER,                   -- creates the provider refused for its queue limit
    estimate_method          VARCHAR                    -- how estimated_input_tokens were counted
);
CREATE SEQUENCE IF NOT EXISTS batch_items_id_seq;
CREATE TABLE IF NOT EXISTS batch_items (
    id                       BIGINT PRIMARY KEY DEFAULT nextval('batch_items_id_seq'),
    batch_job_id             BIGINT NOT NULL,           -- batch_jobs.id
    issue_id                 BIGINT NOT NULL,           -- issues.id
    custom_id                VARCHAR NOT NULL,
    status                   VARCHAR NOT NULL,          -- pending, completed, failed, expired, cancelled
    error_code               VARCHAR,
    error_message            VARCHAR,
    attempts                 INTEGER NOT NULL DEFAULT 1,
    estimated_input_tokens   INTEGER,
    input_tokens             INTEGER,
    output_tokens            INTEGER,
    cost                     DECIMAL(12,6),
    created_at               TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    updated_at               TIMESTAMPTZ
);
CREATE SEQUENCE IF NOT EXISTS ai_analyses_id_seq;
CREATE TABLE IF NOT EXISTS ai_analyses (
    id                       BIGINT PRIMARY KEY DEFAULT nextval('ai_analyses_id_seq'),
    issue_id                 BIGINT NOT NULL,
    processor                VARCHAR NOT NULL,
    processor_version        VARCHAR NOT NULL,
    model                    VARCHAR NOT NULL,
    batch_job_id             BIGINT,
    batch_item_id            BIGINT,
    result                   JSON NOT NULL,
    input_tokens             INTEGER,
    output_tokens            INTEGER,
    cost                     DECIMAL(12,6),
    created_at               TIMESTAMPTZ NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS ai_processors (
    name                     VARCHAR NOT NULL,          -- 'product-labeling', or a user's name
    version                  VARCHAR NOT NULL,          -- first 12 hex digits of sha256(definition)
    definition               JSON NOT NULL,             -- the processor as data, canonical JSON
    created_at               TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    defined_at               TIMESTAMPTZ,               -- last batch_define_processor of it; NULL: stored with a job
    PRIMARY KEY (name, version)
);
"#;

/// Which tables a `batch_*` function reads besides the tracking tables (and the
/// `product_labels` view, which every function may create).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reads {
    /// Only the tracking tables (`batch_history`, `batch_refresh`, `batch_cancel`,
    /// `batch_retry` before it submits).
    Tracking,
    /// Also `issues(id, org, repo, number)` when it exists, to name each item's issue
    /// (`batch_details`).
    IssueRefs,
    /// Also the issues with their labels and comments, and the price table
    /// (`batch_submit`).
    Issues,
}

/// A user table (or view) a function reads, with the columns it reads from it.
struct UserTable {
    name: &'static str,
    columns: &'static [&'static str],
    /// What the table is, for the message.
    what: &'static str,
}

const ISSUES_FOR_SUBMIT: UserTable = UserTable {
    name: "issues",
    columns: &["id", "org", "repo", "number", "title", "body", "state"],
    what: "the gh-analysis issues of sql/schema.sql",
};
const ISSUES_FOR_REFS: UserTable = UserTable {
    name: "issues",
    columns: &["id", "org", "repo", "number"],
    what: "the gh-analysis issues of sql/schema.sql",
};
const LABELS: UserTable = UserTable {
    name: "labels",
    columns: &["issue_id", "name"],
    what: "the gh-analysis labels of sql/schema.sql",
};
const COMMENTS: UserTable = UserTable {
    name: "comments",
    columns: &["issue_id", "author_login", "body", "position"],
    what: "the gh-analysis comments of sql/schema.sql",
};
const LIMITS: UserTable = UserTable {
    name: "ai_batch_limits",
    columns: &["provider", "model", "max_enqueued_tokens"],
    what: "your account's queue limits, see Queue limits in the README",
};
const PRICES: UserTable = UserTable {
    name: "ai_batch_prices",
    columns: &["model", "input_per_mtok", "output_per_mtok"],
    what: "your price overrides, see Cost in the README",
};

/// The view the extension creates (see [`PRODUCT_LABELS_VIEW`]).
const VIEW_NAME: &str = "product_labels";

/// The columns of one of our tables, read from [`SCHEMA_DDL`] (never retyped).
fn ddl_columns(table: &str) -> Vec<&'static str> {
    let head = format!("CREATE TABLE IF NOT EXISTS {table} (");
    let Some(start) = SCHEMA_DDL.find(&head) else {
        return Vec::new();
    };
    SCHEMA_DDL
        .get(start + head.len()..)
        .unwrap_or("")
        .lines()
        .take_while(|l| !l.starts_with(')'))
        .filter_map(|l| l.split_whitespace().next())
        // Column names are lower case; `PRIMARY KEY (...)` and the like are not columns.
        .filter(|w| w.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .collect()
}

/// Names a list of columns, capped.
fn column_list(cols: &[&str]) -> String {
    const SHOWN: usize = 8;
    let mut s = cols
        .iter()
        .take(SHOWN)
        .copied()
        .collect::<Vec<_>>()
        .join(", ");
    if cols.len() > SHOWN {
        s.push_str(&format!(" and {} more", cols.len() - SHOWN));
    }
    s
}

/// Checks, before anything is created, written or sent, that no table or view of the
/// user's is in the way: our three tables, if present, are tables with every column
/// we keep; `product_labels`, if present, is a view; and the user tables this
/// function reads (`reads`) have the columns it reads. One catalog query per call.
/// Each problem gets one sentence naming the object, what is wrong and what to do.
pub(crate) fn check_tables(conn: &Connection, reads: Reads) -> Result<(), StoreError> {
    let user: &[&UserTable] = match reads {
        Reads::Tracking => &[],
        Reads::IssueRefs => &[&ISSUES_FOR_REFS],
        Reads::Issues => &[&ISSUES_FOR_SUBMIT, &LABELS, &COMMENTS, &PRICES, &LIMITS],
    };
    let order: Vec<&str> = OWNED_TABLES
        .iter()
        .copied()
        .chain([VIEW_NAME])
        .chain(user.iter().map(|u| u.name))
        .collect();
    let names = order
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    // Names compare case-insensitively, as DuckDB resolves them.
    let sql = format!(
        "WITH o AS (\
           SELECT table_name AS name, false AS is_view FROM duckdb_tables() \
           WHERE database_name = current_database() AND schema_name = current_schema() \
             AND lower(table_name) IN ({names}) \
           UNION ALL \
           SELECT view_name, true FROM duckdb_views() \
           WHERE database_name = current_database() AND schema_name = current_schema() \
             AND lower(view_name) IN ({names})), \
         c AS (\
           SELECT table_name, string_agg(lower(column_name), ',') AS cols FROM duckdb_columns() \
           WHERE database_name = current_database() AND schema_name = current_schema() \
             AND lower(table_name) IN ({names}) \
           GROUP BY table_name) \
         SELECT lower(o.name), o.is_view, c.cols FROM o LEFT JOIN c ON c.table_name = o.name"
    );
    let mut stmt = conn.prepare(&sql)?;
    let mut found = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, bool>(1)?,
                r.get::<_, Option<String>>(2)?.unwrap_or_default(),
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    // Always the same order of sentences, whatever the catalog's.
    found.sort_by_key(|(name, ..)| order.iter().position(|n| n == name));
    let mut problems = Vec::new();
    for (name, is_view, cols) in &found {
        let present: Vec<&str> = cols.split(',').collect();
        let missing = |wanted: &[&str]| -> Vec<String> {
            wanted
                .iter()
                .filter(|c| !present.contains(c))
                .map(|c| c.to_string())
                .collect()
        };
        if OWNED_TABLES.contains(&name.as_str()) {
            if *is_view {
                problems.push(format!(
                    "{name} is a view, but ai_batch keeps a table of that name: rename the view \
                     (ALTER VIEW {name} RENAME TO my_{name}) or drop it"
                ));
                continue;
            }
            // Columns a later release added are added on first use (ensure_schema).
            let wanted: Vec<&str> = ddl_columns(name)
                .into_iter()
                .filter(|c| name != "batch_jobs" || !ADDED_JOB_COLUMNS.iter().any(|(a, _)| a == c))
                .collect();
            let lacking = missing(&wanted);
            if !lacking.is_empty() {
                let lacking: Vec<&str> = lacking.iter().map(String::as_str).collect();
                problems.push(format!(
                    "the table {name} was not created by this version of ai_batch: it lacks the \
                     column(s) {} that ai_batch keeps there; rename it (ALTER TABLE {name} \
                     RENAME TO my_{name}) so that ai_batch can create its own, or use another \
                     database",
                    column_list(&lacking)
                ));
            }
        } else if name == VIEW_NAME {
            if !is_view {
                problems.push(format!(
                    "{name} is a table, but ai_batch creates a view of that name (one row per \
                     analysed issue and label): rename the table (ALTER TABLE {name} RENAME TO \
                     my_{name}) or drop it"
                ));
            }
        } else if let Some(u) = user.iter().find(|u| u.name == name) {
            let lacking = missing(u.columns);
            if !lacking.is_empty() {
                let lacking: Vec<&str> = lacking.iter().map(String::as_str).collect();
                problems.push(format!(
                    "{name} lacks the column(s) {} that ai_batch reads ({name}({}): {}); add \
                     them, or rename the {} if it is something else",
                    column_list(&lacking),
                    u.columns.join(", "),
                    u.what,
                    if *is_view { "view" } else { "table" }
                ));
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StoreError::Clash(problems.join("; ")))
    }
}

/// How many of the `first` [`OWNED_TABLES`] exist.
fn tables_present(conn: &Connection, first: usize) -> Result<usize, duckdb::Error> {
    let names = OWNED_TABLES[..first]
        .iter()
        .map(|n| format!("'{n}'"))
        .collect::<Vec<_>>()
        .join(", ");
    conn.query_row(
        &format!(
            "SELECT count(*) FROM duckdb_tables() \
             WHERE database_name = current_database() AND schema_name = current_schema() \
               AND table_name IN ({names})"
        ),
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as usize)
}

/// Whether the tables that track jobs and analyses exist (a dry run creates none).
pub(crate) fn tracking_tables_present(conn: &Connection) -> Result<bool, duckdb::Error> {
    Ok(tables_present(conn, FIRST_TABLES)? == FIRST_TABLES)
}

/// How many of the [`OWNED_TABLES`] exist.
pub(crate) fn owned_tables_present(conn: &Connection) -> Result<usize, duckdb::Error> {
    tables_present(conn, OWNED_TABLES.len())
}

/// Moves the rows of the old `batch_processors` table (ai_batch's, recognised by its
/// columns) into `ai_processors` and drops it. Inside the caller's transaction.
fn migrate_old_processors(conn: &Connection) -> Result<(), duckdb::Error> {
    let ours: bool = conn.query_row(
        "SELECT count(*) = 4 AND count(*) FILTER (WHERE column_name IN \
                ('name', 'version', 'definition', 'created_at')) = 4 \
         FROM duckdb_columns() \
         WHERE database_name = current_database() AND schema_name = current_schema() \
           AND table_name = ?",
        params![OLD_PROCESSORS_TABLE],
        |r| r.get(0),
    )?;
    if ours {
        conn.execute_batch(&format!(
            "INSERT INTO ai_processors (name, version, definition, created_at) \
             SELECT name, version, definition, created_at FROM {OLD_PROCESSORS_TABLE} o \
             WHERE NOT EXISTS (SELECT 1 FROM ai_processors p \
                               WHERE p.name = o.name AND p.version = o.version); \
             DROP TABLE {OLD_PROCESSORS_TABLE};"
        ))?;
    }
    Ok(())
}

/// True when the database the connection points at is read-only.
pub(crate) fn is_read_only(conn: &Connection) -> Result<bool, duckdb::Error> {
    conn.query_row(
        "SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()",
        [],
        |r| r.get::<_, bool>(0),
    )
}

/// The readable view of product-labeling results: one row per issue and recommended
/// label (the latest analysis of each issue), no JSON functions needed to read it.
/// Created once the `issues` table exists (it joins it).
pub(crate) const PRODUCT_LABELS_VIEW: &str = r#"
CREATE VIEW IF NOT EXISTS product_labels AS
SELECT i.org || '/' || i.repo || '#' || i.number AS issue,
       i.id AS issue_id, i.org, i.repo, i.number, i.title,
       rec.label, rec.reasoning,
       TRY_CAST(a.result->>'confidence' AS DOUBLE) AS confidence,
       a.result->>'summary' AS summary,
       a.model, a.processor_version, j.job_id, a.created_at AS analysed_at
FROM (SELECT * FROM ai_analyses WHERE processor = 'product-labeling'
      QUALIFY row_number() OVER (PARTITION BY issue_id ORDER BY created_at DESC, id DESC) = 1) a
JOIN issues i ON i.id = a.issue_id
LEFT JOIN batch_jobs j ON j.id = a.batch_job_id
CROSS JOIN UNNEST(from_json(a.result->'recommended_labels',
                            '[{"label":"VARCHAR","reasoning":"VARCHAR"}]')) AS u(rec)
"#;

/// The columns of `issues` that `product_labels` reads.
const VIEW_ISSUE_COLUMNS: [&str; 5] = ["id", "org", "repo", "number", "title"];

/// Creates the result views when the tables they join exist. An `issues` table
/// that lacks a column the view reads (not the gh-analysis schema) gets no view;
/// that never stops a `batch_*` function.
fn ensure_views(conn: &Connection) -> Result<(), StoreError> {
    if table_exists(conn, "product_labels")? || !table_exists(conn, "issues")? {
        return Ok(());
    }
    if is_read_only(conn)? {
        return Ok(());
    }
    let wanted = VIEW_ISSUE_COLUMNS
        .iter()
        .map(|c| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let present: i64 = conn.query_row(
        &format!(
            "SELECT count(DISTINCT column_name) FROM duckdb_columns() \
             WHERE database_name = current_database() AND schema_name = current_schema() \
               AND table_name = 'issues' AND column_name IN ({wanted})"
        ),
        [],
        |r| r.get(0),
    )?;
    if present < VIEW_ISSUE_COLUMNS.len() as i64 {
        return Ok(());
    }
    // Best effort: an `issues` table of another shape (no gh-analysis columns) gets no
    // view, and that must not stop the functions that do not need it.
    let _ = conn.execute_batch(PRODUCT_LABELS_VIEW);
    Ok(())
}

/// Columns added to `batch_jobs` after its first release, with their type: a
/// database created before gets them on first use (`ADD COLUMN`, appended last, as
/// in [`SCHEMA_DDL`]).
const ADDED_JOB_COLUMNS: [(&str, &str); 8] = [
    ("collect_attempts", "INTEGER"),
    ("provider_completed", "BIGINT"),
    ("provider_failed", "BIGINT"),
    ("provider_total", "BIGINT"),
    ("progress_at", "TIMESTAMPTZ"),
    ("queued_at", "TIMESTAMPTZ"),
    ("limit_refusals", "INTEGER"),
    ("estimate_method", "VARCHAR"),
];

/// Adds the [`ADDED_JOB_COLUMNS`] a `batch_jobs` of an older release lacks. Nothing
/// on a read-only database (the functions that need them write anyway).
fn ensure_added_columns(conn: &Connection) -> Result<(), StoreError> {
    let names = ADDED_JOB_COLUMNS
        .iter()
        .map(|(c, _)| format!("'{c}'"))
        .collect::<Vec<_>>()
        .join(", ");
    let present: i64 = conn.query_row(
        &format!(
            "SELECT count(*) FROM duckdb_columns() \
             WHERE database_name = current_database() AND schema_name = current_schema() \
               AND table_name = 'batch_jobs' AND column_name IN ({names})"
        ),
        [],
        |r| r.get(0),
    )?;
    if present == ADDED_JOB_COLUMNS.len() as i64 || is_read_only(conn)? {
        return Ok(());
    }
    for (col, ty) in ADDED_JOB_COLUMNS {
        conn.execute_batch(&format!(
            "ALTER TABLE batch_jobs ADD COLUMN IF NOT EXISTS {col} {ty}"
        ))?;
    }
    Ok(())
}

/// Creates the tracking tables if any is missing, and the result views. Cheap when
/// they all exist.
pub(crate) fn ensure_schema(conn: &Connection) -> Result<(), StoreError> {
    if owned_tables_present(conn)? == OWNED_TABLES.len() {
        ensure_added_columns(conn)?;
        return ensure_views(conn);
    }
    if is_read_only(conn)? {
        // A database of an older release, opened read-only, lacks only the tables
        // added since: the functions that read them do without.
        if tracking_tables_present(conn)? {
            return Ok(());
        }
        return Err(StoreError::ReadOnlyWithoutTables);
    }
    // Calls of this process create one at a time (a static lock holds no database
    // handle); another process' creator shows up as a write-write conflict on the
    // catalog, answered by looking again.
    static DDL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one_at_a_time = DDL.lock().unwrap_or_else(|e| e.into_inner());
    if owned_tables_present(conn)? == OWNED_TABLES.len() {
        return ensure_views(conn);
    }
    for attempt in 0..3 {
        let r = Tx::begin(conn).and_then(|tx| {
            conn.execute_batch(SCHEMA_DDL)?;
            migrate_old_processors(conn)?;
            tx.commit()
        });
        match r {
            Ok(()) => return ensure_views(conn),
            Err(e) => {
                if owned_tables_present(conn)? == OWNED_TABLES.len() {
                    return ensure_views(conn);
                }
                if attempt == 2 {
                    return Err(StoreError::Create(e.to_string()));
                }
            }
        }
    }
    Ok(())
}

/// True if a table (or view) of that name exists in the current schema.
pub(crate) fn table_exists(conn: &Connection, name: &str) -> Result<bool, duckdb::Error> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() \
                 AND schema_name = current_schema() AND table_name = ?) \
             OR EXISTS (SELECT 1 FROM duckdb_views() WHERE database_name = current_database() \
                 AND schema_name = current_schema() AND view_name = ?)",
        params![name, name],
        |r| r.get::<_, bool>(0),
    )
}

/// True if the table (or view) `table` of the current schema has the column `column`
/// (compared case-insensitively, as DuckDB resolves names). For optional columns of
/// the user's tables: one catalog query, once per call, never per row.
pub(crate) fn column_exists(
    conn: &Connection,
    table: &str,
    column: &str,
) -> Result<bool, duckdb::Error> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM duckdb_columns() WHERE database_name = current_database() \
                 AND schema_name = current_schema() AND table_name = ? \
                 AND lower(column_name) = lower(?))",
        params![table, column],
        |r| r.get::<_, bool>(0),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ddl_columns_reads_every_column_of_our_tables() {
        let jobs = ddl_columns("batch_jobs");
        assert_eq!(jobs.len(), 39, "{jobs:?}");
        assert!(jobs.contains(&"collect_attempts"));
        assert_eq!(jobs.first(), Some(&"id"));
        assert!(jobs.contains(&"collected_at") && jobs.contains(&"error_message"));
        assert_eq!(jobs.last(), Some(&"estimate_method"));
        let items = ddl_columns("batch_items");
        assert_eq!(items.len(), 14, "{items:?}");
        assert!(items.contains(&"custom_id") && items.contains(&"updated_at"));
        let analyses = ddl_columns("ai_analyses");
        assert_eq!(analyses.len(), 12, "{analyses:?}");
        assert!(analyses.contains(&"result"));
        let processors = ddl_columns("ai_processors");
        assert_eq!(
            processors,
            ["name", "version", "definition", "created_at", "defined_at"]
        );
        assert!(ddl_columns("issues").is_empty());
    }

    #[test]
    fn column_lists_are_capped() {
        assert_eq!(column_list(&["a", "b"]), "a, b");
        let many: Vec<&str> = ddl_columns("batch_jobs");
        assert!(column_list(&many).ends_with(" and 31 more"));
    }
}
