//! Sending recorded jobs: upload each request file and create its batch, recording
//! every id as soon as it is known (see the order of steps in the module above).

use ai_batch_core::lifecycle::JobStatus;
use ai_batch_core::provider::{self, Provider};
use duckdb::Connection;

use super::error::SubmitError;
use super::outcome::{with_note, JobOutcome, PlannedJob};
use super::request::SubmitRequest;
use crate::store;

/// The provider for `req` at its base URL. The key and the base URL are checked
/// here, before anything is written.
pub(crate) fn make_provider(req: &SubmitRequest) -> Result<Box<dyn Provider>, SubmitError> {
    let known = req.known_provider();
    let key = crate::settings::api_key(known).ok_or(SubmitError::MissingKey {
        key_env: known.key_env,
    })?;
    let opts = crate::reconcile::client_options().map_err(SubmitError::Invalid)?;
    provider::for_name(known.id, &req.effective_base_url(), key, opts).map_err(|e| match e {
        provider::ForNameError::Setup(e) => SubmitError::Provider(e),
        other => SubmitError::Invalid(other.to_string()),
    })
}

/// The sender thread of a submit: uploads and creates each recorded job in turn. After
/// a failure, the later jobs are marked failed without being sent (batch_retry sends
/// them again).
pub(crate) fn send_jobs(
    conn: &Connection,
    client: &dyn Provider,
    jobs: std::sync::mpsc::Receiver<(PlannedJob, i64)>,
    described: &str,
    note: &Option<String>,
) -> Vec<JobOutcome> {
    let mut outcomes = Vec::new();
    let mut earlier_failure: Option<String> = None;
    for (p, job_pk) in jobs {
        let job_id = &p.built.job_id;
        let Some(path) = p.built.path.as_deref() else {
            continue;
        };
        // Sent or not, the request file is not needed after this iteration.
        let _spool_file = crate::build::RemoveOnDrop(Some(path.to_path_buf()));
        let base = JobOutcome {
            job_id: Some(job_id.clone()),
            status: String::new(),
            submitted: p.built.issue_ids.len() as i64,
            estimated_input_tokens: p.input_tokens as i64,
            estimated_output_tokens: p.output_tokens as i64,
            cost_estimate: p.cost_estimate,
            provider_batch_id: None,
            message: String::new(),
        };
        if let Some(prev) = &earlier_failure {
            let msg = format!("not sent because an earlier job of this submit failed ({prev}); batch_retry('{job_id}') sends it again");
            let status = match store::fail_job(conn, job_pk, "not_sent", &msg) {
                Ok(()) => JobStatus::Failed.as_str(),
                // still `created`: batch_refresh() marks it interrupted
                Err(_) => JobStatus::Created.as_str(),
            };
            outcomes.push(JobOutcome {
                status: status.into(),
                message: msg,
                ..base
            });
            continue;
        }
        match send_job(conn, client, job_pk, job_id, path) {
            Ok((status, batch_id)) => outcomes.push(JobOutcome {
                status,
                provider_batch_id: Some(batch_id),
                message: with_note(format!("submitted; {described}"), note),
                ..base
            }),
            Err((status, msg)) => {
                earlier_failure = Some(msg.clone());
                outcomes.push(JobOutcome {
                    status,
                    message: msg,
                    ..base
                });
            }
        }
    }
    outcomes
}

/// Uploads and creates one job's batch, recording each id as soon as it is known.
/// Ok: (provider status, batch id). Err: (job status now, message).
fn send_job(
    conn: &Connection,
    client: &dyn Provider,
    job_pk: i64,
    job_id: &str,
    path: &std::path::Path,
) -> Result<(String, String), (String, String)> {
    let db = |e: duckdb::Error| {
        (
            JobStatus::Created.to_string(),
            format!(
                "could not record progress in batch_jobs: {e} (run batch_refresh() to reconcile)"
            ),
        )
    };
    let file = match client.stage_input(path, &format!("{job_id}.jsonl")) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!(
                "upload failed, no batch was created: {e} (fix the cause, then batch_retry('{job_id}'))"
            );
            store::fail_job(conn, job_pk, "upload_failed", &msg).map_err(db)?;
            return Err((JobStatus::Failed.to_string(), msg));
        }
    };
    crate::failpoint::hit("submit_after_upload");
    store::job_uploaded(conn, job_pk, &file.id).map_err(db)?;
    crate::failpoint::hit("submit_after_upload_recorded");
    match crate::reconcile::create_batch(conn, client, job_pk, job_id, &file.id) {
        Ok(batch) => {
            crate::failpoint::hit("submit_after_create");
            let status = batch.status.as_str().to_string();
            store::job_created(conn, job_pk, &batch.id, &status).map_err(db)?;
            Ok((status, batch.id))
        }
        Err(e) if e.may_have_reached_provider() => {
            let msg = format!(
                "creating the batch may have reached {} but no answer came back: {e} \
                 (batch_refresh() looks the batch up by job id and input file, and does not create \
                 it again while this create may still land; nothing is sent twice)",
                client.name()
            );
            store::job_error(conn, job_pk, &msg).map_err(db)?;
            Err((JobStatus::Uploaded.to_string(), msg))
        }
        Err(e) => {
            let msg = format!(
                "creating the batch failed, no batch was created: {e}; {} (fix the cause, then batch_retry('{job_id}'))",
                crate::reconcile::delete_unused_input(client, &file.id)
            );
            store::fail_job(conn, job_pk, "create_failed", &msg).map_err(db)?;
            Err((JobStatus::Failed.to_string(), msg))
        }
    }
}
