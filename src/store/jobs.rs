//! `batch_jobs`: one row per job, every read and write of it.

use ai_batch_core::lifecycle::{self, code, ItemStatus, JobStatus};
use duckdb::{params, Connection, OptionalExt};

use super::{in_transaction, StoreError};

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
    /// How `estimated_input_tokens` were counted.
    pub estimate_method: Option<String>,
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
    /// When the job was collected (Unix µs); None while it is active.
    pub collected_at: Option<i64>,
}

/// Filters of `batch_history()`.
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    pub status: Option<String>,
    pub processor: Option<String>,
    pub max_rows: Option<i64>,
}

/// The columns of a [`JobRow`], from `batch_jobs j`.
fn job_columns() -> String {
    let pending = ItemStatus::Pending;
    format!(
        "j.job_id, j.status, j.provider, j.processor, j.model, \
         j.issues_count, j.completed_count, j.failed_count, j.skipped_count, \
         (SELECT count(*) FROM batch_items bi WHERE bi.batch_job_id = j.id AND bi.status = '{pending}') AS pending_count, \
         CAST(j.cost_estimate AS DOUBLE), CAST(j.actual_cost AS DOUBLE), \
         j.estimated_input_tokens, j.input_tokens, j.output_tokens, \
         epoch_us(j.created_at), epoch_us(j.submitted_at), epoch_us(j.completed_at), \
         j.provider_batch_id, j.error_message, \
         j.provider_completed, j.provider_failed, j.provider_total, epoch_us(j.progress_at), \
         epoch_us(j.collected_at), j.estimate_method"
    )
}

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
        collected_at: r.get(24)?,
        estimate_method: r.get(25)?,
    })
}

/// Jobs, newest first, filtered.
pub(crate) fn history(conn: &Connection, f: &HistoryFilter) -> Result<Vec<JobRow>, StoreError> {
    let sql = format!(
        "SELECT {} FROM batch_jobs j \
         WHERE (?::VARCHAR IS NULL OR j.status = ?::VARCHAR) \
           AND (?::VARCHAR IS NULL OR j.processor = ?::VARCHAR) \
         ORDER BY j.created_at DESC, j.id DESC \
         LIMIT ?",
        job_columns()
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
pub(crate) fn job(conn: &Connection, job_id: &str) -> Result<JobRow, StoreError> {
    let sql = format!(
        "SELECT {} FROM batch_jobs j WHERE j.job_id = ?",
        job_columns()
    );
    conn.query_row(&sql, params![job_id], job_row)
        .optional()?
        .ok_or_else(|| StoreError::UnknownJob(job_id.to_string()))
}

/// Records the uploaded input file of a job (status `uploaded`).
pub(crate) fn job_uploaded(conn: &Connection, job_pk: i64, file_id: &str) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET input_file_id = ?, status = ?, updated_at = current_timestamp \
         WHERE id = ?",
        params![file_id, JobStatus::Uploaded.as_str(), job_pk],
    )?;
    Ok(())
}

/// Records the provider batch of a job and its first provider status.
pub(crate) fn job_created(
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

/// Takes back a batch adopted for a lost create that its results show is another's:
/// the job is `uploaded` again with no batch, so the next refresh looks again (an
/// ended batch is adopted only when its results are the job's).
pub(crate) fn job_unadopted(conn: &Connection, job_pk: i64, message: &str) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET provider_batch_id = NULL, status = ?, output_file_id = NULL, \
                error_file_id = NULL, provider_completed = NULL, provider_failed = NULL, \
                provider_total = NULL, collect_attempts = NULL, error_message = ?, \
                updated_at = current_timestamp \
         WHERE id = ?",
        params![JobStatus::Uploaded.as_str(), message, job_pk],
    )?;
    Ok(())
}

/// Records that a create of the job's batch is about to be sent (`submitted_at`),
/// before it is sent: a later refresh then knows whether a create may still land.
pub(crate) fn create_sent(conn: &Connection, job_pk: i64) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET submitted_at = current_timestamp, updated_at = current_timestamp \
         WHERE id = ?",
        params![job_pk],
    )?;
    Ok(())
}

/// Records an error on a job without changing its status.
pub(crate) fn job_error(conn: &Connection, job_pk: i64, message: &str) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET error_message = ?, updated_at = current_timestamp WHERE id = ?",
        params![message, job_pk],
    )?;
    Ok(())
}

/// Marks a job that never reached the provider `failed`, and its pending items
/// `failed` with `error_code` (they can be sent again with `batch_retry`). One
/// transaction.
pub(crate) fn fail_job(
    conn: &Connection,
    job_pk: i64,
    error_code: &str,
    message: &str,
) -> duckdb::Result<()> {
    in_transaction(conn, || {
        conn.execute(
            "UPDATE batch_jobs SET status = ?, error_message = ?, failed_count = issues_count, \
                    completed_at = current_timestamp, updated_at = current_timestamp \
             WHERE id = ?",
            params![JobStatus::Failed.as_str(), message, job_pk],
        )?;
        conn.execute(
            "UPDATE batch_items SET status = ?, error_code = ?, error_message = ?, \
                    updated_at = current_timestamp \
             WHERE batch_job_id = ? AND status = ?",
            params![
                ItemStatus::Failed.as_str(),
                error_code,
                message,
                job_pk,
                ItemStatus::Pending.as_str()
            ],
        )?;
        Ok(())
    })
}

/// The provider's request counts of a batch, as one poll saw them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProviderCounts {
    pub completed: i64,
    pub failed: i64,
    pub total: i64,
}

/// Records a polled provider status, its request counts and the result file ids. A
/// collected job is final and left as it is (a stale poll never moves it back).
/// `progress_at` moves only when completed + failed differs from the recorded counts
/// (or none were recorded yet); a poll without counts keeps the recorded ones.
pub(crate) fn job_polled(
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
pub(crate) fn collect_attempts(conn: &Connection, job_pk: i64) -> duckdb::Result<i64> {
    conn.query_row(
        "SELECT coalesce(collect_attempts, 0) FROM batch_jobs WHERE id = ?",
        params![job_pk],
        |r| r.get(0),
    )
}

/// Records a refresh that found the job's result files unusable: the attempt number
/// and why, in `error_message`. The job is otherwise left as it was.
pub(crate) fn record_collect_attempt(
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
pub(crate) fn mark_collected(conn: &Connection, job_pk: i64) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET collected_at = current_timestamp WHERE id = ?",
        params![job_pk],
    )?;
    Ok(())
}

/// Cancels a job that never reached the provider, and its pending items.
pub(crate) fn cancel_local_job(
    conn: &Connection,
    job_pk: i64,
    message: &str,
) -> duckdb::Result<()> {
    in_transaction(conn, || {
        conn.execute(
            "UPDATE batch_items SET status = ?, error_code = ?, error_message = ?, \
                    updated_at = current_timestamp WHERE batch_job_id = ? AND status = ?",
            params![
                ItemStatus::Cancelled.as_str(),
                code::CANCELLED,
                message,
                job_pk,
                ItemStatus::Pending.as_str()
            ],
        )?;
        conn.execute(
            "UPDATE batch_jobs SET status = ?, error_message = ?, failed_count = issues_count, \
                    completed_at = current_timestamp, collected_at = current_timestamp, \
                    updated_at = current_timestamp WHERE id = ?",
            params![JobStatus::Cancelled.as_str(), message, job_pk],
        )?;
        Ok(())
    })
}

/// A job as the operations on its life (refresh, cancel) need it.
#[derive(Debug, Clone)]
pub(crate) struct TrackedJob {
    pub pk: i64,
    pub job_id: String,
    pub status: JobStatus,
    pub processor: String,
    pub processor_version: String,
    pub model: String,
    /// The provider it was sent to (`openai`).
    pub provider: String,
    pub base_url: Option<String>,
    pub provider_batch_id: Option<String>,
    pub input_file_id: Option<String>,
    /// When the job was recorded (Unix seconds).
    pub created_epoch: Option<i64>,
    /// When the last create was sent (Unix ms), if ever.
    pub sent_ms: Option<i64>,
    pub collected: bool,
    /// Requests in its batch (one per issue).
    pub requests: u64,
}

const TRACKED_SQL: &str =
    "SELECT id, job_id, status, processor, coalesce(processor_version, ''), model, \
    base_url, provider_batch_id, input_file_id, epoch(created_at)::BIGINT, \
    collected_at IS NOT NULL, epoch_ms(submitted_at), provider, issues_count FROM batch_jobs";

fn tracked_from_row(r: &duckdb::Row<'_>) -> duckdb::Result<TrackedJob> {
    Ok(TrackedJob {
        pk: r.get(0)?,
        job_id: r.get(1)?,
        status: JobStatus::parse(&r.get::<_, String>(2)?),
        processor: r.get(3)?,
        processor_version: r.get(4)?,
        model: r.get(5)?,
        base_url: r.get(6)?,
        provider_batch_id: r.get(7)?,
        input_file_id: r.get(8)?,
        created_epoch: r.get(9)?,
        collected: r.get(10)?,
        sent_ms: r.get(11)?,
        provider: r.get(12)?,
        requests: r.get::<_, Option<i64>>(13)?.unwrap_or(0).max(0) as u64,
    })
}

/// The provider batch ids that jobs other than `job_id` hold (a batch found for a
/// lost create must not be one of them).
pub(crate) fn batch_ids_of_other_jobs(
    conn: &Connection,
    job_id: &str,
) -> duckdb::Result<std::collections::HashSet<String>> {
    let mut stmt = conn.prepare(
        "SELECT provider_batch_id FROM batch_jobs \
         WHERE provider_batch_id IS NOT NULL AND job_id <> ?",
    )?;
    let ids = stmt.query_map([job_id], |r| r.get::<_, String>(0))?;
    ids.collect()
}

/// One job by its job id, as refresh and cancel need it.
pub(crate) fn tracked_job(conn: &Connection, job_id: &str) -> Result<TrackedJob, StoreError> {
    conn.query_row(
        &format!("{TRACKED_SQL} WHERE job_id = ?"),
        params![job_id],
        tracked_from_row,
    )
    .optional()?
    .ok_or_else(|| StoreError::UnknownJob(job_id.to_string()))
}

/// Every job not collected, in id order, but for those that ended before reaching
/// the provider (terminal with no provider batch). A status ai_batch does not know
/// is not terminal, so such a job stays in the list and is polled again.
pub(crate) fn uncollected_jobs(conn: &Connection) -> Result<Vec<TrackedJob>, StoreError> {
    let terminal = lifecycle::sql_terminal_list();
    let sql = format!(
        "{TRACKED_SQL} WHERE collected_at IS NULL \
            AND (status NOT IN ({terminal}) OR provider_batch_id IS NOT NULL) \
         ORDER BY id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], tracked_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// What a retry copies from the job it retries besides its [`JobRow`].
pub(crate) struct RetrySource {
    pub base_url: Option<String>,
    /// The job's `options` JSON, as text.
    pub options: Option<String>,
    pub collected: bool,
}

/// The [`RetrySource`] of a job.
pub(crate) fn retry_source(conn: &Connection, job_id: &str) -> Result<RetrySource, StoreError> {
    Ok(conn.query_row(
        "SELECT base_url, options::VARCHAR, collected_at IS NOT NULL FROM batch_jobs WHERE job_id = ?",
        params![job_id],
        |r| {
            Ok(RetrySource {
                base_url: r.get(0)?,
                options: r.get(1)?,
                collected: r.get(2)?,
            })
        },
    )?)
}

/// The job id of the latest retry of a job, if it has one.
pub(crate) fn retried_by(conn: &Connection, job_id: &str) -> Result<Option<String>, StoreError> {
    Ok(conn
        .query_row(
            "SELECT job_id FROM batch_jobs WHERE retry_of = ? ORDER BY id DESC LIMIT 1",
            params![job_id],
            |r| r.get(0),
        )
        .optional()?)
}
