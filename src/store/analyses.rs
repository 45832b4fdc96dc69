//! Reading `ai_analyses` for `batch_results`: the latest analysis of each issue by one
//! processor, with the issue's name and the job it came from.

use duckdb::{params, Connection};

use super::table_exists;

/// The latest analysis of one issue.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LatestAnalysis {
    /// `org/repo#number`, when the `issues` table names it.
    pub issue: Option<String>,
    pub issue_id: i64,
    /// The answer, as JSON text.
    pub result: String,
    pub model: String,
    pub processor_version: String,
    pub job_id: Option<String>,
    /// Microseconds since the epoch.
    pub analysed_at: i64,
}

/// Whether `issues` has the columns that name an issue.
fn issues_named(conn: &Connection) -> Result<bool, duckdb::Error> {
    conn.query_row(
        "SELECT count(DISTINCT column_name) = 3 FROM duckdb_columns() \
         WHERE database_name = current_database() AND schema_name = current_schema() \
           AND table_name = 'issues' AND column_name IN ('org', 'repo', 'number')",
        [],
        |r| r.get(0),
    )
}

/// The latest analysis of each issue by `processor`, by issue id. Empty when the
/// tracking tables do not exist yet.
pub(crate) fn latest_analyses(
    conn: &Connection,
    processor: &str,
) -> Result<Vec<LatestAnalysis>, duckdb::Error> {
    if !table_exists(conn, "ai_analyses")? || !table_exists(conn, "batch_jobs")? {
        return Ok(Vec::new());
    }
    let (issue, join) = if issues_named(conn)? {
        (
            "i.org || '/' || i.repo || '#' || i.number",
            "LEFT JOIN issues i ON i.id = a.issue_id",
        )
    } else {
        ("NULL::VARCHAR", "")
    };
    let sql = format!(
        "SELECT {issue}, a.issue_id, a.result::VARCHAR, a.model, a.processor_version, \
                j.job_id, epoch_us(a.created_at) \
         FROM (SELECT * FROM ai_analyses WHERE processor = ? \
               QUALIFY row_number() OVER (PARTITION BY issue_id \
                                          ORDER BY created_at DESC, id DESC) = 1) a \
         {join} LEFT JOIN batch_jobs j ON j.id = a.batch_job_id \
         ORDER BY a.issue_id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![processor], |r| {
        Ok(LatestAnalysis {
            issue: r.get(0)?,
            issue_id: r.get(1)?,
            result: r.get(2)?,
            model: r.get(3)?,
            processor_version: r.get(4)?,
            job_id: r.get(5)?,
            analysed_at: r.get(6)?,
        })
    })?;
    rows.collect()
}
