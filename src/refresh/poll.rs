//! Polling a job's batch at the provider: the status, request counts and result file
//! ids recorded; a batch still going reports its progress, a terminal one goes on to
//! be collected ([`super::collect`]) and the row says what the collect did.

use std::sync::Arc;

use ai_batch_core::cost::PriceTable;
use ai_batch_core::lifecycle::{self, JobStatus};
use ai_batch_core::provider::BatchView;
use duckdb::Connection;

use super::collect::{batch_errors_text, collect, Collected};
use super::{summary_row, Clients, RefreshError, RefreshRow};
use crate::runtime::Runtime;
use crate::store::{self, TrackedJob};

/// Records a polled batch, and collects it when it reached a terminal status. `old`
/// is the job's status before this call, for the row.
#[allow(clippy::too_many_arguments)]
pub(crate) fn finish_poll(
    rt: &Arc<Runtime>,
    conn: &Connection,
    clients: &mut Clients,
    prices: &PriceTable,
    job: &TrackedJob,
    batch: BatchView,
    old: &str,
    prof: &mut crate::profile::Profiler,
) -> Result<RefreshRow, RefreshError> {
    let status = batch.status.clone();
    let counts = batch.request_counts;
    store::job_polled(
        conn,
        job.pk,
        status.as_str(),
        batch.output_file_id.as_deref(),
        batch.error_file_id.as_deref(),
        counts.map(|c| store::ProviderCounts {
            completed: c.completed as i64,
            failed: c.failed as i64,
            total: c.total as i64,
        }),
    )?;
    prof.mark("poll", 1);
    if !lifecycle::collect_after_poll(&status) {
        let progress = counts
            .map(|c| {
                format!(
                    "{}/{} done, {} failed at the provider",
                    c.completed, c.total, c.failed
                )
            })
            .unwrap_or_default();
        let mut msg = format!("{status} {progress}").trim().to_string();
        if let JobStatus::Other(_) = status {
            msg.push_str(
                " (a status ai_batch does not know: the job stays active, and every \
                 batch_refresh() polls it again)",
            );
        }
        return summary_row(conn, job, old, 0, msg);
    }
    let client = clients.get(job)?;
    let applied = match collect(rt, conn, client, prices, job, &batch, prof)? {
        Collected::Applied(a) => a,
        Collected::Kept(msg) => return summary_row(conn, job, old, 0, msg),
    };
    let mut msg = format!("collected: {} items applied", applied.applied);
    if applied.unknown > 0 {
        msg.push_str(&format!(
            "; {} output lines with unknown custom_id ignored",
            applied.unknown
        ));
    }
    if applied.duplicates > 0 {
        msg.push_str(&format!(
            "; {} duplicate lines applied once",
            applied.duplicates
        ));
    }
    if let Some(c) = &batch.request_counts {
        msg.push_str(&format!(
            "; the provider counted {} completed, {} failed ({} answers failed validation here)",
            c.completed, c.failed, applied.invalid_answers
        ));
    }
    if let Some(e) = batch_errors_text(&batch) {
        msg.push_str(&format!("; provider errors: {e}"));
    }
    for note in &applied.notes {
        msg.push_str("; ");
        msg.push_str(note);
    }
    summary_row(conn, job, old, applied.applied, msg)
}
