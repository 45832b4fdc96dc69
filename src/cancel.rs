//! `batch_cancel`: what it does for a job is [`lifecycle::cancel_step`]. A job with a
//! batch is cancelled at the provider and polled (`refresh::poll`); one that never
//! reached the provider is cancelled here; an `uploaded` one whose create may have
//! been lost is looked for first, and its input file deleted when it is not found (so
//! a create still in flight can no longer land). `batch_refresh` collects the partial
//! results of a cancelled batch.

use std::sync::Arc;

use ai_batch_core::lifecycle::{self, CancelStep};
use duckdb::Connection;

use crate::jobid::now_ms;
use crate::reconcile;
use crate::refresh::{poll, summary_row, what_to_do, Clients, RefreshError, RefreshRow};
use crate::runtime::Runtime;
use crate::store::{self, TrackedJob};

/// The row message of a job cancelled here.
const NOT_REACHED: &str = "cancelled before it reached the provider";

/// Cancels a job: at the provider when it has a batch there, locally otherwise.
pub(crate) fn cancel(rt: &Arc<Runtime>, job_id: &str) -> Result<RefreshRow, RefreshError> {
    let conn = rt.lease()?;
    let conn: &Connection = &conn;
    store::check_tables(conn, store::Reads::Tracking)?;
    store::ensure_schema(conn)?;
    let job = store::tracked_job(conn, job_id)?;
    let Some(_claim) = rt.claim_job(&job.job_id) else {
        return Err(RefreshError::Invalid(format!(
            "job {job_id} is busy: another ai_batch call (a submit, refresh or cancel on another \
             connection) is working on it right now (run batch_cancel('{job_id}') again in a moment)"
        )));
    };
    // Read it again under the claim.
    let job = store::tracked_job(conn, job_id)?;
    let old = job.status.as_str();
    let step = lifecycle::cancel_step(&job.status, job.collected, job.provider_batch_id.is_some());
    match step {
        CancelStep::NothingToCancel => {
            let collect = if job.collected {
                ""
            } else {
                " (its results are not collected yet: run batch_refresh())"
            };
            return summary_row(
                conn,
                &job,
                old,
                0,
                format!(
                    "nothing to cancel: the job is already {}{collect}",
                    job.status
                ),
            );
        }
        // Interrupted before its file was uploaded: nothing at the provider.
        CancelStep::CancelLocally => return cancel_locally(rt, conn, &job, NOT_REACHED),
        CancelStep::FindThenCancel | CancelStep::CancelAtProvider => {}
    }
    let mut clients = Clients::new()?;
    let window = reconcile::settle_window(&clients.opts);
    let client = clients.get(&job)?;
    // A job whose create may have been lost: find its batch first. Not found: its
    // input file is deleted (a create still in flight can then no longer land) and the
    // list read again. A provider that cannot stop a create in flight (Anthropic) is
    // not cancelled locally while the create may still land: that batch would run on,
    // billed, with no job to collect it.
    let mut sealed = None;
    let batch_id = match (step, &job.provider_batch_id, job.input_file_id.as_deref()) {
        (CancelStep::CancelAtProvider, Some(id), _) => Some(id.clone()),
        (_, _, file) => match reconcile::find_batch(conn, client, &job)? {
            Some(b) => Some(b.id),
            None => match (
                file,
                lifecycle::reconcile_step(job.sent_ms, now_ms(), window),
            ) {
                (Some(_), lifecycle::ReconcileStep::Wait { decide_at_ms })
                    if !client.fences_creates() =>
                {
                    return summary_row(
                        conn,
                        &job,
                        old,
                        0,
                        format!(
                            "not cancelled yet: the create sent at {} may still land at {}, \
                             which cannot stop a create in flight; run batch_cancel('{}') again \
                             after {} (it then cancels the batch if it landed, or the job here \
                             if it did not)",
                            reconcile::utc_text(job.sent_ms.unwrap_or_default()),
                            client.name(),
                            job.job_id,
                            reconcile::utc_text(decide_at_ms)
                        ),
                    );
                }
                (Some(f), _) => {
                    sealed = Some(reconcile::sealed_text(client, f));
                    reconcile::seal(conn, client, &job, f)?.map(|b| b.id)
                }
                (None, _) => None,
            },
        },
    };
    let Some(batch_id) = batch_id else {
        let msg = match sealed {
            Some(how) => format!("cancelled before it reached the provider; {how}"),
            None => NOT_REACHED.to_string(),
        };
        return cancel_locally(rt, conn, &job, &msg);
    };
    let batch = match client.cancel(&batch_id) {
        Ok(b) => b,
        // Finished meanwhile (the provider refuses to cancel): just poll it.
        Err(e) if e.status() == Some(409) || e.status() == Some(400) => client.poll(&batch_id)?,
        Err(e) => {
            let hint = what_to_do(&e, &format!("batch_cancel('{}')", job.job_id));
            return Err(RefreshError::Invalid(format!(
                "{e} ({hint}; cancelling twice is harmless)"
            )));
        }
    };
    if job.provider_batch_id.is_none() {
        store::job_created(conn, job.pk, &batch.id, batch.status.as_str())?;
        if let Some(f) = job.input_file_id.as_deref() {
            client.input_consumed(f);
        }
    }
    let job = store::tracked_job(conn, job_id)?;
    let prices = crate::store::prices::price_table(conn)
        .map_err(|e| RefreshError::Invalid(e.to_string()))?;
    let mut prof = crate::profile::Profiler::new("cancel");
    let mut row = poll::finish_poll(rt, conn, &mut clients, &prices, &job, batch, old, &mut prof)?;
    if !row.message.starts_with("collected") && !row.message.starts_with("not collected") {
        row.message = format!(
            "cancel requested ({}); batch_refresh() collects the partial results when the provider finishes",
            row.message
        );
    }
    Ok(row)
}

/// Cancels a job that has nothing at the provider: it and its pending items end
/// `cancelled`, and it is collected.
fn cancel_locally(
    rt: &Arc<Runtime>,
    conn: &Connection,
    job: &TrackedJob,
    msg: &str,
) -> Result<RefreshRow, RefreshError> {
    let _g = rt.write_lock.lock().unwrap_or_else(|e| e.into_inner());
    store::cancel_local_job(conn, job.pk, msg)?;
    summary_row(conn, job, job.status.as_str(), 0, msg.into())
}
