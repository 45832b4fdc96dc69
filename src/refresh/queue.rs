//! Sending `queued` jobs: oldest first, each when the account's queue limit leaves room
//! (`lifecycle::admit`, the user's `ai_batch_limits`), and a job the provider refused
//! for its limit only after a job of its model ended or its backoff passed
//! (`lifecycle::requeue_ready`). The create is the submit path's (`submit::send`).

use std::sync::Arc;

use ai_batch_core::lifecycle::{self, Admission};
use duckdb::Connection;

use super::{summary_row, Clients, RefreshError, RefreshRow};
use crate::runtime::Runtime;
use crate::store::{self, limits, TrackedJob};

/// Sends a queued job if there is room, or records why it still waits.
pub(crate) fn send_queued(
    rt: &Arc<Runtime>,
    conn: &Connection,
    clients: &mut Clients,
    job: &TrackedJob,
) -> Result<RefreshRow, RefreshError> {
    let old = job.status.as_str();
    let Some(file_id) = job.input_file_id.as_deref() else {
        return Err(RefreshError::Invalid(format!(
            "job {} is '{old}' but has no input_file_id",
            job.job_id
        )));
    };
    // Decided under the write lock, and the job moved to `uploaded` before the lock is
    // let go: two calls never both take the same room.
    let wait = {
        let _g = rt.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = limits::queued_job(conn, job.pk)? else {
            return summary_row(conn, job, old, 0, "no longer queued".into());
        };
        let older = limits::queued_count(conn, &q.provider, &q.model, Some(job.pk))?;
        let wait = if older > 0 {
            Some(format!(
                "queued: behind {older} older queued job(s) of model {}; batch_refresh() or \
                 batch_wait() sends it when room frees",
                q.model
            ))
        } else if !lifecycle::requeue_ready(
            q.refusals,
            q.queued_ms,
            q.ended_since,
            crate::jobid::now_ms(),
        ) {
            Some(format!(
                "queued: the provider refused it for its queue limit {} time(s); it is sent \
                 again when a job of model {} ends, or {} s after the last refusal",
                q.refusals,
                q.model,
                lifecycle::requeue_backoff(q.refusals).as_secs()
            ))
        } else {
            let limit = limits::queue_limit(conn, &q.provider, &q.model)?;
            let held = limits::enqueued(conn, &q.provider, &q.model, Some(job.pk))?;
            match lifecycle::admit(limit, held, q.size) {
                Admission::Wait(why) => Some(why),
                Admission::Send => None,
            }
        };
        match &wait {
            Some(why) => store::job_error(conn, job.pk, why)?,
            None => store::job_uploaded(conn, job.pk, file_id)?,
        }
        wait
    };
    if let Some(why) = wait {
        return summary_row(conn, job, old, 0, why);
    }
    let client = clients.get(job)?;
    let msg = match crate::submit::create_job(conn, client, job.pk, &job.job_id, file_id) {
        Ok((status, batch_id)) => {
            format!("sent: room freed under the queue limit; batch {batch_id} created ({status})")
        }
        Err((_, msg)) => msg,
    };
    summary_row(conn, job, old, 0, msg)
}
