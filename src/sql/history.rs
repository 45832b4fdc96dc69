//! `batch_history(status := ..., processor := ..., max_rows := ...)`: jobs, newest first.

use std::sync::Arc;

use ai_batch_core::lifecycle::JobStatus;
use ai_batch_core::progress;

use duckdb::core::LogicalTypeId;
use duckdb::vtab::BindInfo;

use super::{columns, fail, named_i64, named_text, ty, Col, SqlError, SqlTable};
use crate::runtime::Runtime;
use crate::store::{self, HistoryFilter, JobRow};

/// The `batch_history` table function.
pub struct History;

/// A row that carries a job: `batch_history` rows are jobs, `batch_details` rows a job
/// and one of its items.
pub trait HasJob {
    fn job(&self) -> &JobRow;
}

impl HasJob for JobRow {
    fn job(&self) -> &JobRow {
        self
    }
}

/// Columns shared by `batch_history` and the job part of `batch_details`.
pub fn job_columns<R: HasJob>() -> Vec<Col<R>> {
    columns!(R {
        "job_id": Varchar = |r| r.job().job_id.clone(),
        "status": Varchar = |r| r.job().status.clone(),
        "provider": Varchar = |r| r.job().provider.clone(),
        "processor": Varchar = |r| r.job().processor.clone(),
        "model": Varchar = |r| r.job().model.clone(),
        "issues_count": BigInt = |r| r.job().issues_count,
        "completed_count": BigInt = |r| r.job().completed_count,
        "failed_count": BigInt = |r| r.job().failed_count,
        "pending_count": BigInt = |r| r.job().pending_count,
        "skipped_count": BigInt = |r| r.job().skipped_count,
        "cost_estimate": Money = |r| r.job().cost_estimate,
        "actual_cost": Money = |r| r.job().actual_cost,
        "estimated_input_tokens": BigInt = |r| r.job().estimated_input_tokens,
        "estimate_method": Varchar = |r| r.job().estimate_method.clone(),
        "input_tokens": BigInt = |r| r.job().input_tokens,
        "output_tokens": BigInt = |r| r.job().output_tokens,
        "created_at": TimestampTz = |r| r.job().created_at,
        "submitted_at": TimestampTz = |r| r.job().submitted_at,
        "completed_at": TimestampTz = |r| r.job().completed_at,
        "provider_batch_id": Varchar = |r| r.job().provider_batch_id.clone(),
        "error_message": Varchar = |r| r.job().error_message.clone(),
    })
}

/// `'<completed + failed> / <total>'` from the provider's counts at the last poll.
fn progress_text(j: &JobRow) -> Option<String> {
    let total = j.provider_total?;
    let done = j.provider_completed.unwrap_or(0) + j.provider_failed.unwrap_or(0);
    Some(format!("{done} / {total}"))
}

fn now_secs() -> i64 {
    crate::jobid::now_ms() / 1000
}

/// The plain note on a job that looks stuck, or finished but not collected.
fn note(j: &JobRow) -> Option<String> {
    let secs = |us: Option<i64>| us.map(|u| u / 1_000_000);
    progress::note(
        &JobStatus::parse(&j.status),
        progress::JobTimes {
            now: now_secs(),
            created: secs(j.created_at),
            submitted: secs(j.submitted_at),
            progress: secs(j.progress_at),
            collected: j.collected_at.is_some(),
        },
    )
}

impl SqlTable for History {
    const NAME: &'static str = "batch_history";
    type Params = HistoryFilter;
    type Row = JobRow;

    /// The job's columns, then its progress at the provider.
    fn columns() -> Vec<Col<JobRow>> {
        let mut cols = job_columns();
        cols.extend(columns!(JobRow {
            "progress": Varchar = |j| progress_text(j),
            "provider_completed": BigInt = |j| j.provider_completed,
            "provider_failed": BigInt = |j| j.provider_failed,
            "provider_total": BigInt = |j| j.provider_total,
            "progress_at": TimestampTz = |j| j.progress_at,
            "age": Varchar = |j| j.created_at.map(|c| progress::age_text(now_secs() - c / 1_000_000)),
            "note": Varchar = |j| note(j),
        }));
        cols
    }

    fn named_parameters() -> Vec<(&'static str, duckdb::core::LogicalTypeHandle)> {
        vec![
            ("status", ty(LogicalTypeId::Varchar)),
            ("processor", ty(LogicalTypeId::Varchar)),
            ("max_rows", ty(LogicalTypeId::Bigint)),
        ]
    }

    fn parse(bind: &BindInfo) -> Result<HistoryFilter, SqlError> {
        let max_rows = named_i64(bind, "max_rows");
        if let Some(n) = max_rows {
            if n < 0 {
                return Err(fail(
                    Self::NAME,
                    format!("max_rows must be 0 or more, got {n} (leave it out for all jobs)"),
                ));
            }
        }
        Ok(HistoryFilter {
            status: named_text(bind, "status"),
            processor: named_text(bind, "processor"),
            max_rows,
        })
    }

    fn run(rt: &Arc<Runtime>, p: &HistoryFilter) -> Result<Vec<JobRow>, SqlError> {
        let conn = rt.lease().map_err(|e| fail(Self::NAME, e))?;
        store::check_tables(&conn, store::Reads::Tracking).map_err(|e| fail(Self::NAME, e))?;
        store::ensure_schema(&conn).map_err(|e| fail(Self::NAME, e))?;
        store::history(&conn, p).map_err(|e| fail(Self::NAME, e))
    }
}
