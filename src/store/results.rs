//! Applying a collected job's results: the staged result lines (temp table
//! `ai_batch_results`) become analyses, final item states and the job's counts and
//! cost, in one transaction.

use ai_batch_core::lifecycle::{ItemStatus, JobStatus, Unmentioned};
use duckdb::{params, Connection};

use super::{in_transaction, TrackedJob};

/// One result line to stage: an item's final state according to the result files.
pub(crate) struct StagedResult<'a> {
    pub custom_id: &'a str,
    /// The item status text (the result parser's, kept as it wrote it).
    pub status: &'a str,
    pub error_code: Option<&'a str>,
    pub error_message: Option<&'a str>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost: Option<f64>,
    /// The validated answer (JSON text) of a completed item.
    pub result: Option<&'a str>,
}

/// A validation error on line `line` (1-based) of the job's request file: the
/// `line`-th item of the job in id order (the order the file was written in).
pub(crate) struct LineError {
    pub line: i64,
    pub code: String,
    pub message: String,
}

/// Stages a job's result lines in the temp table `ai_batch_results` (replacing any
/// earlier one), through one appender, in the order given (see the caller: item
/// order applies ~100x faster), then one row per [`LineError`] for the item the line
/// names. [`apply_results`] applies them; [`drop_staged`] frees them.
pub(crate) fn stage_results<'a>(
    conn: &Connection,
    job_pk: i64,
    rows: impl IntoIterator<Item = StagedResult<'a>>,
    line_errors: &[LineError],
) -> duckdb::Result<()> {
    conn.execute_batch(
        "CREATE OR REPLACE TEMP TABLE ai_batch_results (custom_id VARCHAR, status VARCHAR, \
         error_code VARCHAR, error_message VARCHAR, input_tokens BIGINT, output_tokens BIGINT, \
         cost DOUBLE, result VARCHAR)",
    )?;
    {
        let mut app = conn.appender("ai_batch_results")?;
        for r in rows {
            app.append_row(params![
                r.custom_id,
                r.status,
                r.error_code,
                r.error_message,
                r.input_tokens,
                r.output_tokens,
                r.cost,
                r.result
            ])?;
        }
        app.flush()?;
    }
    for e in line_errors {
        conn.execute(
            "INSERT INTO ai_batch_results (custom_id, status, error_code, error_message) \
             SELECT custom_id, ?, ?, ? FROM batch_items WHERE batch_job_id = ? \
             ORDER BY id LIMIT 1 OFFSET ?",
            params![
                ItemStatus::Failed.as_str(),
                e.code,
                format!("line {} of the request file: {}", e.line, e.message),
                job_pk,
                (e.line - 1).max(0)
            ],
        )?;
    }
    Ok(())
}

/// Drops the staged results. Best effort: the temp table dies with the connection.
pub(crate) fn drop_staged(conn: &Connection) {
    let _ = conn.execute_batch("DROP TABLE IF EXISTS temp.ai_batch_results");
}

/// What applying a job's results changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ApplyCounts {
    /// Items moved out of `pending` by a result line.
    pub applied: i64,
    /// Result lines whose custom id is not an item of this job.
    pub unknown: i64,
    /// Items of this job whose answer came back (and was billed) but was unusable.
    pub invalid_answers: i64,
}

/// Applies the staged results (temp table `ai_batch_results`) of a terminal job in
/// one transaction: analyses for completed items, a final state for every pending
/// item (items no line mentions get `unmentioned`), the provider's final `status`,
/// counts, tokens, actual cost (NULL when billed tokens have no price: no price is
/// known for the model), `collected_at`, and `job_error` as the job's
/// `error_message` (what the collect found: it replaces an earlier attempt's note).
/// A job already collected is left untouched (idempotent).
pub(crate) fn apply_results(
    conn: &Connection,
    job: &TrackedJob,
    status: &JobStatus,
    unmentioned: &Unmentioned,
    job_error: Option<&str>,
) -> duckdb::Result<ApplyCounts> {
    let job_pk = job.pk;
    // Our own constants, inlined as before (these statements are the hot path).
    let pending = ItemStatus::Pending;
    let completed = ItemStatus::Completed;
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
            &format!(
                "SELECT count(*) FROM ai_batch_results r JOIN batch_items b \
                   ON b.custom_id = r.custom_id AND b.batch_job_id = ? \
                 WHERE b.status = '{pending}' AND r.status <> '{completed}' \
                   AND r.input_tokens IS NOT NULL"
            ),
            params![job_pk],
            |r| r.get(0),
        )?;
        conn.execute(
            &format!(
                "INSERT INTO ai_analyses (issue_id, processor, processor_version, model, \
                        batch_job_id, batch_item_id, result, input_tokens, output_tokens, cost) \
                 SELECT b.issue_id, ?, ?, ?, b.batch_job_id, b.id, r.result::JSON, \
                        r.input_tokens, r.output_tokens, r.cost \
                 FROM ai_batch_results r JOIN batch_items b \
                   ON b.custom_id = r.custom_id AND b.batch_job_id = ? \
                 WHERE b.status = '{pending}' AND r.status = '{completed}'"
            ),
            params![job.processor, job.processor_version, job.model, job_pk],
        )?;
        let applied = conn.execute(
            &format!(
                "UPDATE batch_items SET status = r.status, error_code = r.error_code, \
                        error_message = r.error_message, input_tokens = r.input_tokens, \
                        output_tokens = r.output_tokens, cost = r.cost, \
                        updated_at = current_timestamp \
                 FROM ai_batch_results r \
                 WHERE batch_items.batch_job_id = ? AND batch_items.custom_id = r.custom_id \
                   AND batch_items.status = '{pending}'"
            ),
            params![job_pk],
        )? as i64;
        conn.execute(
            &format!(
                "UPDATE batch_items SET status = ?, error_code = ?, error_message = ?, \
                        updated_at = current_timestamp \
                 WHERE batch_job_id = ? AND status = '{pending}'"
            ),
            params![
                unmentioned.status.as_str(),
                unmentioned.code,
                unmentioned.message,
                job_pk
            ],
        )?;
        conn.execute(
            &format!("UPDATE batch_jobs SET status = ?, \
                completed_count = s.completed, failed_count = s.not_completed, \
                input_tokens = s.input_tokens, output_tokens = s.output_tokens, \
                actual_cost = round(s.cost, 4), error_message = ?, \
                collected_at = current_timestamp, completed_at = coalesce(completed_at, current_timestamp), \
                updated_at = current_timestamp \
             FROM (SELECT count(*) FILTER (WHERE status = '{completed}') AS completed, \
                          count(*) FILTER (WHERE status NOT IN ('{completed}', '{pending}')) AS not_completed, \
                          coalesce(sum(input_tokens), 0) AS input_tokens, \
                          coalesce(sum(output_tokens), 0) AS output_tokens, \
                          CASE WHEN bool_or(cost IS NULL AND (coalesce(input_tokens, 0) > 0 \
                                                          OR coalesce(output_tokens, 0) > 0)) \
                               THEN NULL ELSE coalesce(sum(cost), 0) END AS cost \
                   FROM batch_items WHERE batch_job_id = ?) s \
             WHERE batch_jobs.id = ?"),
            params![status.as_str(), job_error, job_pk, job_pk],
        )?;
        crate::failpoint::hit("refresh_before_commit");
        Ok(ApplyCounts {
            applied,
            unknown,
            invalid_answers,
        })
    })
}
