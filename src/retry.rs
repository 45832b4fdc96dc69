//! `batch_retry`: a new job for the items of a finished job that ended `failed`
//! (of a retryable kind), `expired` or `cancelled`.
//!
//! An item that has been tried [`MAX_ATTEMPTS`] times, or that failed for a reason a
//! retry cannot fix ([`NON_RETRYABLE_CODES`]), is left alone and reported. The new
//! job goes through the same path as `batch_submit` (skip checks included), records
//! `retry_of`, and its items carry the attempt number. A job is retried once: what
//! still fails in the retry is retried from the retry job (`batch_retry` of a job
//! that already has a retry names it), so attempts count along the chain.

use std::sync::Arc;

use duckdb::{params, Connection, OptionalExt};

use crate::refresh::TERMINAL_STATUSES;
use crate::runtime::Runtime;
use crate::store;
use crate::submit::{self, Selection, SubmitError, SubmitRequest, SubmitResult};

/// How many times one issue is sent for one job lineage before retry leaves it alone.
pub const MAX_ATTEMPTS: i64 = 3;

/// Failure codes that a resend cannot fix.
pub const NON_RETRYABLE_CODES: [&str; 5] = [
    "context_length_exceeded",
    "invalid_prompt",
    "invalid_request",
    "content_filter",
    "refusal",
];

/// What a retry did.
pub struct RetryResult {
    pub request: SubmitRequest,
    pub result: Option<SubmitResult>,
    pub left_alone: i64,
    pub message: String,
}

/// Retries the retryable items of `job_id`.
pub fn retry(rt: &Arc<Runtime>, job_id: &str) -> Result<RetryResult, SubmitError> {
    let (req, candidates, left_alone) = {
        let conn = rt.lease()?;
        let conn: &Connection = &conn;
        store::check_tables(conn, store::Reads::Tracking)?;
        store::ensure_schema(conn)?;
        let job = store::job(conn, job_id)?;
        if !TERMINAL_STATUSES.contains(&job.status.as_str()) {
            return Err(SubmitError::Invalid(format!(
                "job {job_id} is still {} (run batch_refresh() until it finishes, or batch_cancel('{job_id}'))",
                job.status
            )));
        }
        let (base_url, options, collected): (Option<String>, Option<String>, bool) = conn.query_row(
            "SELECT base_url, options::VARCHAR, collected_at IS NOT NULL FROM batch_jobs WHERE job_id = ?",
            params![job_id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        if !collected && job.provider_batch_id.is_some() {
            return Err(SubmitError::Invalid(format!(
                "the results of job {job_id} are not collected yet (run batch_refresh() first)"
            )));
        }
        // Its items already went to a retry job: sending them again from here would
        // duplicate work and restart their attempt count.
        let retried_by: Option<String> = conn
            .query_row(
                "SELECT job_id FROM batch_jobs WHERE retry_of = ? ORDER BY id DESC LIMIT 1",
                params![job_id],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(other) = retried_by {
            return Err(SubmitError::Invalid(format!(
                "job {job_id} was already retried by {other} (run batch_retry('{other}') for what still failed there)"
            )));
        }
        let codes = NON_RETRYABLE_CODES
            .iter()
            .map(|c| format!("'{c}'"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut stmt = conn.prepare(&format!(
            "SELECT issue_id, attempts, \
                    (status IN ('expired', 'cancelled') \
                     OR (status = 'failed' AND coalesce(error_code, '') NOT IN ({codes}))) \
                    AND attempts < ? AS retryable \
             FROM batch_items b WHERE b.batch_job_id = (SELECT id FROM batch_jobs WHERE job_id = ?) \
               AND status IN ('failed', 'expired', 'cancelled') ORDER BY id"
        ))?;
        let rows = stmt.query_map(params![MAX_ATTEMPTS, job_id], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, bool>(2)?,
            ))
        })?;
        let mut candidates = Vec::new();
        let mut prior_attempts = std::collections::HashMap::new();
        let mut left_alone = 0;
        for row in rows {
            let (issue_id, attempts, retryable) = row?;
            if retryable {
                candidates.push(issue_id);
                prior_attempts.insert(issue_id, attempts);
            } else {
                left_alone += 1;
            }
        }
        let mut req = SubmitRequest::new(&job.processor, Selection::Ids(candidates.clone()));
        // Recorded with the new job and its items in the submit's own transaction.
        req.retry_of = Some(job_id.to_string());
        req.prior_attempts = prior_attempts;
        req.model = job.model.clone();
        req.provider = job.provider.clone();
        req.base_url = base_url;
        if let Some(o) = options.and_then(|o| serde_json::from_str::<serde_json::Value>(&o).ok()) {
            req.temperature = o.get("temperature").and_then(|v| v.as_f64());
            req.max_output_tokens = o.get("max_output_tokens").and_then(|v| v.as_i64());
            req.reasoning_effort = o
                .get("reasoning_effort")
                .and_then(|v| v.as_str())
                .map(str::to_string);
        }
        (req, candidates, left_alone)
    };
    let left_msg = if left_alone > 0 {
        format!(
            "; {left_alone} items left alone ({MAX_ATTEMPTS} attempts reached, or failed for a reason a retry cannot fix: {})",
            NON_RETRYABLE_CODES.join(", ")
        )
    } else {
        String::new()
    };
    if candidates.is_empty() {
        return Ok(RetryResult {
            request: req,
            result: None,
            left_alone,
            message: format!("nothing to retry in {job_id}{left_msg}"),
        });
    }
    let result = submit::submit(rt, &req)?;
    Ok(RetryResult {
        request: req,
        result: Some(result),
        left_alone,
        message: format!("retry of {job_id}{left_msg}"),
    })
}
