//! `batch_retry`: a new job for the items of a finished job that ended `failed`
//! (of a retryable kind), `expired` or `cancelled`.
//!
//! Which items it takes is [`lifecycle::retry_takes`]: an item that has been tried
//! [`MAX_ATTEMPTS`] times, or that failed for a reason a retry cannot fix
//! ([`NON_RETRYABLE_CODES`]), is left alone and reported. The new
//! job goes through the same path as `batch_submit` (skip checks included), records
//! `retry_of`, and its items carry the attempt number. A job is retried once: what
//! still fails in the retry is retried from the retry job (`batch_retry` of a job
//! that already has a retry names it), so attempts count along the chain.

use std::sync::Arc;

use ai_batch_core::lifecycle::{self, JobStatus, MAX_ATTEMPTS, NON_RETRYABLE_CODES};
use duckdb::Connection;

use crate::runtime::Runtime;
use crate::store;
use crate::submit::{self, Selection, SubmitError, SubmitRequest, SubmitResult};

/// What a retry did.
pub(crate) struct RetryResult {
    pub request: SubmitRequest,
    pub result: Option<SubmitResult>,
    pub left_alone: i64,
    pub message: String,
}

/// Retries the retryable items of `job_id`.
pub(crate) fn retry(rt: &Arc<Runtime>, job_id: &str) -> Result<RetryResult, SubmitError> {
    let (req, candidates, left_alone) = {
        let conn = rt.lease()?;
        let conn: &Connection = &conn;
        store::check_tables(conn, store::Reads::Tracking)?;
        store::ensure_schema(conn)?;
        let job = store::job(conn, job_id)?;
        if !JobStatus::parse(&job.status).is_terminal() {
            return Err(SubmitError::Invalid(format!(
                "job {job_id} is still {} (run batch_refresh() until it finishes, or batch_cancel('{job_id}'))",
                job.status
            )));
        }
        let store::RetrySource {
            base_url,
            options,
            collected,
        } = store::retry_source(conn, job_id)?;
        if !collected && job.provider_batch_id.is_some() {
            return Err(SubmitError::Invalid(format!(
                "the results of job {job_id} are not collected yet (run batch_refresh() first)"
            )));
        }
        // Its items already went to a retry job: sending them again from here would
        // duplicate work and restart their attempt count.
        if let Some(other) = store::retried_by(conn, job_id)? {
            return Err(SubmitError::Invalid(format!(
                "job {job_id} was already retried by {other} (run batch_retry('{other}') for what still failed there)"
            )));
        }
        let mut candidates = Vec::new();
        let mut prior_attempts = std::collections::HashMap::new();
        let mut left_alone = 0;
        for item in store::unsuccessful_items(conn, job_id)? {
            if lifecycle::retry_takes(item.status, item.error_code.as_deref(), item.attempts) {
                candidates.push(item.issue_id);
                prior_attempts.insert(item.issue_id, item.attempts);
            } else {
                left_alone += 1;
            }
        }
        let mut req = SubmitRequest::new(&job.processor, Selection::Ids(candidates.clone()));
        // Recorded with the new job and its items in the submit's own transaction.
        req.retry_of = Some(job_id.to_string());
        req.prior_attempts = prior_attempts;
        req.model = job.model.clone();
        req.model_given = true;
        // The same processor version as the job retried, not today's definition.
        let version = store::tracked_job(conn, job_id)?.processor_version;
        req.processor_version = Some(version).filter(|v| !v.is_empty());
        req.provider = job.provider.clone();
        req.provider_given = true;
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
