//! Sending recorded jobs: upload each request file and create its batch, recording
//! every id as soon as it is known (see the order of steps in the module above).

use ai_batch_core::lifecycle::{self, JobStatus};
use ai_batch_core::provider::Provider;
use ai_batch_core::providers;
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
    providers::for_name(known.id, &req.effective_base_url(), key, opts).map_err(|e| match e {
        providers::ForNameError::Setup(e) => SubmitError::Provider(e),
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
    // Once the provider refused a create for its queue limit, the later jobs wait too.
    let mut queue_rest: Option<String> = None;
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
        if let Some(why) = p.queue.as_ref().or(queue_rest.as_ref()) {
            let (status, message) = match queue_job(conn, client, job_pk, job_id, path, why) {
                Ok(()) => (JobStatus::Queued.to_string(), why.clone()),
                Err((status, msg)) => {
                    earlier_failure = Some(msg.clone());
                    (status, msg)
                }
            };
            outcomes.push(JobOutcome {
                status,
                message,
                ..base
            });
            continue;
        }
        match send_job(conn, client, job_pk, job_id, path) {
            Err((status, msg)) if status == JobStatus::Queued.as_str() => {
                queue_rest = Some(
                    "queued: an earlier job of this submit was refused for the provider's queue \
                     limit; batch_refresh() or batch_wait() sends it when room frees"
                        .to_string(),
                );
                outcomes.push(JobOutcome {
                    status,
                    message: msg,
                    ..base
                });
            }
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

/// The message of a failed write to batch_jobs during a send.
fn db_failed(e: duckdb::Error) -> (String, String) {
    (
        JobStatus::Created.to_string(),
        format!("could not record progress in batch_jobs: {e} (run batch_refresh() to reconcile)"),
    )
}

/// Uploads one job's request file and records it (`uploaded`). Err: (job status now,
/// message); a failed upload fails the job.
fn upload_job(
    conn: &Connection,
    client: &dyn Provider,
    job_pk: i64,
    job_id: &str,
    path: &std::path::Path,
) -> Result<String, (String, String)> {
    let file = match client.stage_input(path, &format!("{job_id}.jsonl")) {
        Ok(f) => f,
        Err(e) => {
            let msg = format!(
                "upload failed, no batch was created: {e} (fix the cause, then batch_retry('{job_id}'))"
            );
            store::fail_job(conn, job_pk, "upload_failed", &msg).map_err(db_failed)?;
            return Err((JobStatus::Failed.to_string(), msg));
        }
    };
    crate::failpoint::hit("submit_after_upload");
    store::job_uploaded(conn, job_pk, &file.id).map_err(db_failed)?;
    crate::failpoint::hit("submit_after_upload_recorded");
    Ok(file.id)
}

/// Uploads one job's request file and leaves the job `queued` (no batch), saying why.
fn queue_job(
    conn: &Connection,
    client: &dyn Provider,
    job_pk: i64,
    job_id: &str,
    path: &std::path::Path,
    why: &str,
) -> Result<(), (String, String)> {
    let file_id = upload_job(conn, client, job_pk, job_id, path)?;
    store::limits::job_queued(conn, job_pk, &file_id, why, false).map_err(db_failed)
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
    let file_id = upload_job(conn, client, job_pk, job_id, path)?;
    create_job(conn, client, job_pk, job_id, &file_id)
}

/// Creates the batch of a job whose request file is uploaded (`file_id`), as submit
/// does after the upload and refresh does for a `queued` job. Ok: (provider status,
/// batch id). Err: (job status now, message): `queued` again if the provider refused
/// it for its queue limit (items untouched), `uploaded` if the create may have reached
/// the provider (refresh reconciles), `failed` otherwise.
pub(crate) fn create_job(
    conn: &Connection,
    client: &dyn Provider,
    job_pk: i64,
    job_id: &str,
    file_id: &str,
) -> Result<(String, String), (String, String)> {
    let db = db_failed;
    match crate::reconcile::create_batch(conn, client, job_pk, job_id, file_id) {
        Ok(batch) => {
            crate::failpoint::hit("submit_after_create");
            let status = batch.status.as_str().to_string();
            store::job_created(conn, job_pk, &batch.id, &status).map_err(db)?;
            client.input_consumed(file_id);
            Ok((status, batch.id))
        }
        Err(e) if lifecycle::is_queue_full(e.code(), Some(&e.to_string())) => {
            let msg = format!(
                "queued: the provider refused the create for its queue limit ({e}); the items \
                 are untouched, and batch_refresh() or batch_wait() sends it again when room frees"
            );
            store::limits::job_queued(conn, job_pk, file_id, &msg, true).map_err(db)?;
            Err((JobStatus::Queued.to_string(), msg))
        }
        Err(e) if e.may_have_reached_provider() => {
            let msg = format!(
                "creating the batch may have reached {} but no answer came back: {e} \
                 (batch_refresh() looks the batch up, and does not create it again while this \
                 create may still land; nothing is sent twice)",
                client.name()
            );
            store::job_error(conn, job_pk, &msg).map_err(db)?;
            Err((JobStatus::Uploaded.to_string(), msg))
        }
        Err(e) => {
            let msg = format!(
                "creating the batch failed, no batch was created: {e}; {} (fix the cause, then batch_retry('{job_id}'))",
                crate::reconcile::delete_unused_input(client, file_id)
            );
            store::fail_job(conn, job_pk, "create_failed", &msg).map_err(db)?;
            Err((JobStatus::Failed.to_string(), msg))
        }
    }
}
