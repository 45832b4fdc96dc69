//! The tracking tables: their DDL, defined once here, and every read and write of them.
//!
//! Tables live in the default schema of the database the extension was loaded into,
//! so `SELECT * FROM batch_jobs` works from any client. They carry no FOREIGN KEY
//! constraints (DuckDB rejects `ON DELETE CASCADE`, and a foreign key to
//! `batch_jobs(id)` makes `UPDATE batch_jobs SET status = ...` fail): this module
//! keeps them consistent itself.
//!
//! They are created on first use by any `batch_*` function, never at `LOAD` (SQL run
//! at load time would be written into the user's file and fails on a read-only
//! database).

use duckdb::{params, Connection, OptionalExt};

pub mod processors;

/// Tables the extension owns, in creation order.
pub const OWNED_TABLES: [&str; 3] = ["batch_jobs", "batch_items", "ai_analyses"];

/// The DDL of the tracking tables. Idempotent.
pub const SCHEMA_DDL: &str = r#"
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
    progress_at              TIMESTAMPTZ                -- when completed + failed last changed (first seen)
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
"#;

/// What went wrong in the tracking tables.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Tables or views of the user's are in the way of ours, or lack columns we read
    /// ([`check_tables`]). One sentence per object, each saying what to do.
    #[error("{0} (nothing was created, written or sent)")]
    Clash(String),
    #[error("the database is read-only and has no ai_batch tables yet (open it read-write once, or run a batch_* function on a writable copy)")]
    ReadOnlyWithoutTables,
    #[error("could not create the ai_batch tables: {0}")]
    Create(String),
    #[error("no job with job_id '{}' (see SELECT job_id FROM batch_history())", ai_batch_core::text::echo(.0))]
    UnknownJob(String),
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
}

/// Which tables a `batch_*` function reads besides the tracking tables (and the
/// `product_labels` view, which every function may create).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reads {
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
pub fn check_tables(conn: &Connection, reads: Reads) -> Result<(), StoreError> {
    let user: &[&UserTable] = match reads {
        Reads::Tracking => &[],
        Reads::IssueRefs => &[&ISSUES_FOR_REFS],
        Reads::Issues => &[&ISSUES_FOR_SUBMIT, &LABELS, &COMMENTS, &PRICES],
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

pub fn owned_tables_present(conn: &Connection) -> Result<usize, duckdb::Error> {
    conn.query_row(
        "SELECT count(*) FROM duckdb_tables() \
         WHERE database_name = current_database() AND schema_name = current_schema() \
           AND table_name IN ('batch_jobs', 'batch_items', 'ai_analyses')",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n as usize)
}

/// True when the database the connection points at is read-only.
pub fn is_read_only(conn: &Connection) -> Result<bool, duckdb::Error> {
    conn.query_row(
        "SELECT readonly FROM duckdb_databases() WHERE database_name = current_database()",
        [],
        |r| r.get::<_, bool>(0),
    )
}

/// The readable view of product-labeling results: one row per issue and recommended
/// label (the latest analysis of each issue), no JSON functions needed to read it.
/// Created once the `issues` table exists (it joins it).
pub const PRODUCT_LABELS_VIEW: &str = r#"
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
const ADDED_JOB_COLUMNS: [(&str, &str); 5] = [
    ("collect_attempts", "INTEGER"),
    ("provider_completed", "BIGINT"),
    ("provider_failed", "BIGINT"),
    ("provider_total", "BIGINT"),
    ("progress_at", "TIMESTAMPTZ"),
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
pub fn ensure_schema(conn: &Connection) -> Result<(), StoreError> {
    if owned_tables_present(conn)? == OWNED_TABLES.len() {
        ensure_added_columns(conn)?;
        return ensure_views(conn);
    }
    if is_read_only(conn)? {
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
pub fn table_exists(conn: &Connection, name: &str) -> Result<bool, duckdb::Error> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM duckdb_tables() WHERE database_name = current_database() \
                 AND schema_name = current_schema() AND table_name = ?) \
             OR EXISTS (SELECT 1 FROM duckdb_views() WHERE database_name = current_database() \
                 AND schema_name = current_schema() AND view_name = ?)",
        params![name, name],
        |r| r.get::<_, bool>(0),
    )
}

/// One row of `batch_history()`.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRow {
    pub job_id: String,
    pub status: String,
    pub provider: String,
    pub processor: String,
    pub model: String,
    pub issues_count: i64,
    pub completed_count: i64,
    pub failed_count: i64,
    pub skipped_count: i64,
    pub pending_count: i64,
    pub cost_estimate: Option<f64>,
    pub actual_cost: Option<f64>,
    pub estimated_input_tokens: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub created_at: Option<i64>,
    pub submitted_at: Option<i64>,
    pub completed_at: Option<i64>,
    pub provider_batch_id: Option<String>,
    pub error_message: Option<String>,
    /// The provider's request counts at the last poll, and when completed + failed
    /// last changed (Unix µs).
    pub provider_completed: Option<i64>,
    pub provider_failed: Option<i64>,
    pub provider_total: Option<i64>,
    pub progress_at: Option<i64>,
}

/// Filters of `batch_history()`.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub status: Option<String>,
    pub processor: Option<String>,
    pub max_rows: Option<i64>,
}

const JOB_COLUMNS: &str = "j.job_id, j.status, j.provider, j.processor, j.model, \
    j.issues_count, j.completed_count, j.failed_count, j.skipped_count, \
    (SELECT count(*) FROM batch_items bi WHERE bi.batch_job_id = j.id AND bi.status = 'pending') AS pending_count, \
    CAST(j.cost_estimate AS DOUBLE), CAST(j.actual_cost AS DOUBLE), \
    j.estimated_input_tokens, j.input_tokens, j.output_tokens, \
    epoch_us(j.created_at), epoch_us(j.submitted_at), epoch_us(j.completed_at), \
    j.provider_batch_id, j.error_message, \
    j.provider_completed, j.provider_failed, j.provider_total, epoch_us(j.progress_at)";

fn job_row(r: &duckdb::Row<'_>) -> duckdb::Result<JobRow> {
    Ok(JobRow {
        job_id: r.get(0)?,
        status: r.get(1)?,
        provider: r.get(2)?,
        processor: r.get(3)?,
        model: r.get(4)?,
        issues_count: r.get(5)?,
        completed_count: r.get(6)?,
        failed_count: r.get(7)?,
        skipped_count: r.get(8)?,
        pending_count: r.get(9)?,
        cost_estimate: r.get(10)?,
        actual_cost: r.get(11)?,
        estimated_input_tokens: r.get(12)?,
        input_tokens: r.get(13)?,
        output_tokens: r.get(14)?,
        created_at: r.get(15)?,
        submitted_at: r.get(16)?,
        completed_at: r.get(17)?,
        provider_batch_id: r.get(18)?,
        error_message: r.get(19)?,
        provider_completed: r.get(20)?,
        provider_failed: r.get(21)?,
        provider_total: r.get(22)?,
        progress_at: r.get(23)?,
    })
}

/// Jobs, newest first, filtered.
pub fn history(conn: &Connection, f: &HistoryFilter) -> Result<Vec<JobRow>, StoreError> {
    let sql = format!(
        "SELECT {JOB_COLUMNS} FROM batch_jobs j \
         WHERE (?::VARCHAR IS NULL OR j.status = ?::VARCHAR) \
           AND (?::VARCHAR IS NULL OR j.processor = ?::VARCHAR) \
         ORDER BY j.created_at DESC, j.id DESC \
         LIMIT ?"
    );
    let mut stmt = conn.prepare(&sql)?;
    let limit = f.max_rows.unwrap_or(i64::MAX);
    let rows = stmt.query_map(
        params![f.status, f.status, f.processor, f.processor, limit],
        job_row,
    )?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// One job by its job id.
pub fn job(conn: &Connection, job_id: &str) -> Result<JobRow, StoreError> {
    let sql = format!("SELECT {JOB_COLUMNS} FROM batch_jobs j WHERE j.job_id = ?");
    conn.query_row(&sql, params![job_id], job_row)
        .optional()?
        .ok_or_else(|| StoreError::UnknownJob(job_id.to_string()))
}

/// One item of a job, with its issue reference when the `issues` table has it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemRow {
    pub item_id: i64,
    pub issue_id: i64,
    pub issue_ref: Option<String>,
    pub custom_id: String,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i64,
    pub estimated_input_tokens: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost: Option<f64>,
    pub updated_at: Option<i64>,
}

/// The items of a job, ordered by item id.
pub fn items(conn: &Connection, job_id: &str) -> Result<Vec<ItemRow>, StoreError> {
    let issue_ref = if table_exists(conn, "issues")? {
        "(SELECT i.org || '/' || i.repo || '#' || i.number FROM issues i WHERE i.id = b.issue_id)"
    } else {
        "NULL::VARCHAR"
    };
    let sql = format!(
        "SELECT b.id, b.issue_id, {issue_ref}, b.custom_id, b.status, b.error_code, b.error_message, \
                b.attempts, b.estimated_input_tokens, b.input_tokens, b.output_tokens, \
                CAST(b.cost AS DOUBLE), epoch_us(b.updated_at) \
         FROM batch_items b JOIN batch_jobs j ON j.id = b.batch_job_id \
         WHERE j.job_id = ? ORDER BY b.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![job_id], |r| {
        Ok(ItemRow {
            item_id: r.get(0)?,
            issue_id: r.get(1)?,
            issue_ref: r.get(2)?,
            custom_id: r.get(3)?,
            status: r.get(4)?,
            error_code: r.get(5)?,
            error_message: r.get(6)?,
            attempts: r.get(7)?,
            estimated_input_tokens: r.get(8)?,
            input_tokens: r.get(9)?,
            output_tokens: r.get(10)?,
            cost: r.get(11)?,
            updated_at: r.get(12)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// Records the uploaded input file of a job (status `uploaded`).
pub fn job_uploaded(conn: &Connection, job_pk: i64, file_id: &str) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET input_file_id = ?, status = 'uploaded', updated_at = current_timestamp \
         WHERE id = ?",
        params![file_id, job_pk],
    )?;
    Ok(())
}

/// Records the provider batch of a job and its first provider status.
pub fn job_created(
    conn: &Connection,
    job_pk: i64,
    batch_id: &str,
    status: &str,
) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET provider_batch_id = ?, status = ?, \
                submitted_at = coalesce(submitted_at, current_timestamp), \
                updated_at = current_timestamp, error_message = NULL \
         WHERE id = ?",
        params![batch_id, status, job_pk],
    )?;
    Ok(())
}

/// Records that a create of the job's batch is about to be sent (`submitted_at`),
/// before it is sent: a later refresh then knows whether a create may still land.
pub fn create_sent(conn: &Connection, job_pk: i64) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET submitted_at = current_timestamp, updated_at = current_timestamp \
         WHERE id = ?",
        params![job_pk],
    )?;
    Ok(())
}

/// Records an error on a job without changing its status.
pub fn job_error(conn: &Connection, job_pk: i64, message: &str) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET error_message = ?, updated_at = current_timestamp WHERE id = ?",
        params![message, job_pk],
    )?;
    Ok(())
}

/// An open transaction on one of the extension's connections: rolled back when it is
/// dropped without [`Tx::commit`] — after an error returned with `?` and during a
/// panic alike — so a pooled connection never goes back to the pool inside a
/// transaction (the next call would see the old snapshot, or a read-only one).
pub struct Tx<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Tx<'c> {
    /// `BEGIN TRANSACTION`.
    pub fn begin(conn: &'c Connection) -> duckdb::Result<Self> {
        Self::start(conn, "BEGIN TRANSACTION")
    }

    /// `BEGIN TRANSACTION READ ONLY`: DuckDB refuses every write inside it.
    pub fn begin_read_only(conn: &'c Connection) -> duckdb::Result<Self> {
        Self::start(conn, "BEGIN TRANSACTION READ ONLY")
    }

    fn start(conn: &'c Connection, sql: &str) -> duckdb::Result<Self> {
        conn.execute_batch(sql)?;
        Ok(Tx { conn, open: true })
    }

    /// `COMMIT`. A failed commit is rolled back (by the drop) and reported.
    pub fn commit(mut self) -> duckdb::Result<()> {
        self.conn.execute_batch("COMMIT")?;
        self.open = false;
        Ok(())
    }
}

impl Drop for Tx<'_> {
    fn drop(&mut self) {
        if self.open {
            // After a failed COMMIT DuckDB may already have ended the transaction;
            // the ROLLBACK's "no transaction is active" is then expected. Whatever
            // else is left is caught when the connection goes back to the pool
            // (`Runtime::give_back`).
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Runs `f` in one transaction: COMMIT when it succeeds, ROLLBACK when it fails
/// (or panics: see [`Tx`]).
pub fn in_transaction<T, E: From<duckdb::Error>>(
    conn: &Connection,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let tx = Tx::begin(conn)?;
    let v = f()?;
    tx.commit()?;
    Ok(v)
}

/// Marks a job that never reached the provider `failed`, and its pending items
/// `failed` with `error_code` (they can be sent again with `batch_retry`). One
/// transaction.
pub fn fail_job(
    conn: &Connection,
    job_pk: i64,
    error_code: &str,
    message: &str,
) -> duckdb::Result<()> {
    in_transaction(conn, || {
        conn.execute(
            "UPDATE batch_jobs SET status = 'failed', error_message = ?, failed_count = issues_count, \
                    completed_at = current_timestamp, updated_at = current_timestamp \
             WHERE id = ?",
            params![message, job_pk],
        )?;
        conn.execute(
            "UPDATE batch_items SET status = 'failed', error_code = ?, error_message = ?, \
                    updated_at = current_timestamp \
             WHERE batch_job_id = ? AND status = 'pending'",
            params![error_code, message, job_pk],
        )?;
        Ok(())
    })
}

/// The provider's request counts of a batch, as one poll saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderCounts {
    pub completed: i64,
    pub failed: i64,
    pub total: i64,
}

/// Records a polled provider status, its request counts and the result file ids. A
/// collected job is final and left as it is (a stale poll never moves it back).
/// `progress_at` moves only when completed + failed differs from the recorded counts
/// (or none were recorded yet); a poll without counts keeps the recorded ones.
pub fn job_polled(
    conn: &Connection,
    job_pk: i64,
    status: &str,
    output_file_id: Option<&str>,
    error_file_id: Option<&str>,
    counts: Option<ProviderCounts>,
) -> duckdb::Result<()> {
    let (c, f, t) = match counts {
        Some(n) => (Some(n.completed), Some(n.failed), Some(n.total)),
        None => (None, None, None),
    };
    // SET expressions read the row as it was before this UPDATE.
    conn.execute(
        "UPDATE batch_jobs SET status = ?, output_file_id = coalesce(?, output_file_id), \
                error_file_id = coalesce(?, error_file_id), updated_at = current_timestamp, \
                progress_at = CASE WHEN ?::BIGINT IS NOT NULL AND (provider_completed IS NULL \
                    OR provider_completed + coalesce(provider_failed, 0) <> ?::BIGINT + ?::BIGINT) \
                    THEN current_timestamp ELSE progress_at END, \
                provider_completed = coalesce(?, provider_completed), \
                provider_failed = coalesce(?, provider_failed), \
                provider_total = coalesce(?, provider_total) \
         WHERE id = ? AND collected_at IS NULL",
        params![
            status,
            output_file_id,
            error_file_id,
            c,
            c,
            f,
            c,
            f,
            t,
            job_pk
        ],
    )?;
    Ok(())
}

/// How many refreshes found the job's result files unusable so far.
pub fn collect_attempts(conn: &Connection, job_pk: i64) -> duckdb::Result<i64> {
    conn.query_row(
        "SELECT coalesce(collect_attempts, 0) FROM batch_jobs WHERE id = ?",
        params![job_pk],
        |r| r.get(0),
    )
}

/// Records a refresh that found the job's result files unusable: the attempt number
/// and why, in `error_message`. The job is otherwise left as it was.
pub fn record_collect_attempt(
    conn: &Connection,
    job_pk: i64,
    attempts: i64,
    message: &str,
) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET collect_attempts = ?, error_message = ?, updated_at = current_timestamp \
         WHERE id = ? AND collected_at IS NULL",
        params![attempts, message, job_pk],
    )?;
    Ok(())
}

/// Marks a job as collected (nothing more will come for it).
pub fn mark_collected(conn: &Connection, job_pk: i64) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET collected_at = current_timestamp WHERE id = ?",
        params![job_pk],
    )?;
    Ok(())
}

/// Cancels a job that never reached the provider, and its pending items.
pub fn cancel_local_job(conn: &Connection, job_pk: i64, message: &str) -> duckdb::Result<()> {
    in_transaction(conn, || {
        conn.execute(
            "UPDATE batch_items SET status = 'cancelled', error_code = 'cancelled', error_message = ?, \
                    updated_at = current_timestamp WHERE batch_job_id = ? AND status = 'pending'",
            params![message, job_pk],
        )?;
        conn.execute(
            "UPDATE batch_jobs SET status = 'cancelled', error_message = ?, failed_count = issues_count, \
                    completed_at = current_timestamp, collected_at = current_timestamp, \
                    updated_at = current_timestamp WHERE id = ?",
            params![message, job_pk],
        )?;
        Ok(())
    })
}

/// What applying a job's results changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApplyCounts {
    /// Items moved out of `pending` by a result line.
    pub applied: i64,
    /// Result lines whose custom id is not an item of this job.
    pub unknown: i64,
    /// Items of this job whose answer came back (and was billed) but was unusable.
    pub invalid_answers: i64,
}

/// Applies the staged results (temp table `ai_batch_results`) of a terminal job in
/// one transaction: analyses for completed items, a final state for every pending
/// item (items no line mentions get `leftover`), the provider's final `status`,
/// counts, tokens, actual cost, `collected_at`, and `job_error` as the job's
/// `error_message` (what the collect found: it replaces an earlier attempt's note).
/// A job already collected is left untouched (idempotent).
#[allow(clippy::too_many_arguments)]
pub fn apply_results(
    conn: &Connection,
    job_pk: i64,
    status: &str,
    processor: &str,
    processor_version: &str,
    model: &str,
    leftover: (&str, &str, &str),
    job_error: Option<&str>,
) -> duckdb::Result<ApplyCounts> {
    in_transaction(conn, || {
        let collected: bool = conn.query_row(
            "SELECT collected_at IS NOT NULL FROM batch_jobs WHERE id = ?",
            params![job_pk],
            |r| r.get(0),
        )?;
        if collected {
            return Ok(ApplyCounts::default());
        }
        let unknown: i64 = conn.query_row(
            "SELECT count(DISTINCT r.custom_id) FROM ai_batch_results r WHERE NOT EXISTS \
             (SELECT 1 FROM batch_items b WHERE b.batch_job_id = ? AND b.custom_id = r.custom_id)",
            params![job_pk],
            |r| r.get(0),
        )?;
        let invalid_answers: i64 = conn.query_row(
            "SELECT count(*) FROM ai_batch_results r JOIN batch_items b \
               ON b.custom_id = r.custom_id AND b.batch_job_id = ? \
             WHERE b.status = 'pending' AND r.status <> 'completed' AND r.input_tokens IS NOT NULL",
            params![job_pk],
            |r| r.get(0),
        )?;
        conn.execute(
            "INSERT INTO ai_analyses (issue_id, processor, processor_version, model, batch_job_id, \
                    batch_item_id, result, input_tokens, output_tokens, cost) \
             SELECT b.issue_id, ?, ?, ?, b.batch_job_id, b.id, r.result::JSON, r.input_tokens, \
                    r.output_tokens, r.cost \
             FROM ai_batch_results r JOIN batch_items b \
               ON b.custom_id = r.custom_id AND b.batch_job_id = ? \
             WHERE b.status = 'pending' AND r.status = 'completed'",
            params![processor, processor_version, model, job_pk],
        )?;
        let applied = conn.execute(
            "UPDATE batch_items SET status = r.status, error_code = r.error_code, \
                    error_message = r.error_message, input_tokens = r.input_tokens, \
                    output_tokens = r.output_tokens, cost = r.cost, updated_at = current_timestamp \
             FROM ai_batch_results r \
             WHERE batch_items.batch_job_id = ? AND batch_items.custom_id = r.custom_id \
               AND batch_items.status = 'pending'",
            params![job_pk],
        )? as i64;
        let (left_status, code, message) = leftover;
        conn.execute(
            "UPDATE batch_items SET status = ?, error_code = ?, error_message = ?, \
                    updated_at = current_timestamp \
             WHERE batch_job_id = ? AND status = 'pending'",
            params![left_status, code, message, job_pk],
        )?;
        conn.execute(
            "UPDATE batch_jobs SET status = ?, \
                completed_count = s.completed, failed_count = s.not_completed, \
                input_tokens = s.input_tokens, output_tokens = s.output_tokens, \
                actual_cost = round(s.cost, 4), error_message = ?, \
                collected_at = current_timestamp, completed_at = coalesce(completed_at, current_timestamp), \
                updated_at = current_timestamp \
             FROM (SELECT count(*) FILTER (WHERE status = 'completed') AS completed, \
                          count(*) FILTER (WHERE status NOT IN ('completed', 'pending')) AS not_completed, \
                          coalesce(sum(input_tokens), 0) AS input_tokens, \
                          coalesce(sum(output_tokens), 0) AS output_tokens, \
                          coalesce(sum(cost), 0) AS cost \
                   FROM batch_items WHERE batch_job_id = ?) s \
             WHERE batch_jobs.id = ?",
            params![status, job_error, job_pk, job_pk],
        )?;
        crate::failpoint::hit("refresh_before_commit");
        Ok(ApplyCounts {
            applied,
            unknown,
            invalid_answers,
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn ddl_columns_reads_every_column_of_our_tables() {
        let jobs = ddl_columns("batch_jobs");
        assert_eq!(jobs.len(), 36, "{jobs:?}");
        assert!(jobs.contains(&"collect_attempts"));
        assert_eq!(jobs.first(), Some(&"id"));
        assert!(jobs.contains(&"collected_at") && jobs.contains(&"error_message"));
        assert_eq!(jobs.last(), Some(&"progress_at"));
        let items = ddl_columns("batch_items");
        assert_eq!(items.len(), 14, "{items:?}");
        assert!(items.contains(&"custom_id") && items.contains(&"updated_at"));
        let analyses = ddl_columns("ai_analyses");
        assert_eq!(analyses.len(), 12, "{analyses:?}");
        assert!(analyses.contains(&"result"));
        assert!(ddl_columns("issues").is_empty());
    }

    #[test]
    fn column_lists_are_capped() {
        assert_eq!(column_list(&["a", "b"]), "a, b");
        let many: Vec<&str> = ddl_columns("batch_jobs");
        assert!(column_list(&many).ends_with(" and 28 more"));
    }
}
