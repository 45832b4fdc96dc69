//! `batch_history(status := ..., processor := ..., max_rows := ...)`: jobs, newest first.

use std::sync::Arc;

use duckdb::core::LogicalTypeId;
use duckdb::vtab::BindInfo;

use super::{fail, named_i64, named_text, ty, Cell, ColType, SqlError, SqlTable};
use crate::runtime::Runtime;
use crate::store::{self, HistoryFilter, JobRow};

/// The `batch_history` table function.
pub struct History;

/// Columns shared by `batch_history` and the job part of `batch_details`.
pub fn job_columns() -> Vec<(&'static str, ColType)> {
    use ColType::*;
    vec![
        ("job_id", Varchar),
        ("status", Varchar),
        ("provider", Varchar),
        ("processor", Varchar),
        ("model", Varchar),
        ("issues_count", BigInt),
        ("completed_count", BigInt),
        ("failed_count", BigInt),
        ("pending_count", BigInt),
        ("skipped_count", BigInt),
        ("cost_estimate", Money),
        ("actual_cost", Money),
        ("estimated_input_tokens", BigInt),
        ("input_tokens", BigInt),
        ("output_tokens", BigInt),
        ("created_at", TimestampTz),
        ("submitted_at", TimestampTz),
        ("completed_at", TimestampTz),
        ("provider_batch_id", Varchar),
        ("error_message", Varchar),
    ]
}

/// A job as cells, in `job_columns()` order.
pub fn job_cells(j: &JobRow) -> Vec<Cell> {
    vec![
        j.job_id.clone().into(),
        j.status.clone().into(),
        j.provider.clone().into(),
        j.processor.clone().into(),
        j.model.clone().into(),
        j.issues_count.into(),
        j.completed_count.into(),
        j.failed_count.into(),
        j.pending_count.into(),
        j.skipped_count.into(),
        j.cost_estimate.into(),
        j.actual_cost.into(),
        j.estimated_input_tokens.into(),
        j.input_tokens.into(),
        j.output_tokens.into(),
        j.created_at.into(),
        j.submitted_at.into(),
        j.completed_at.into(),
        j.provider_batch_id.clone().into(),
        j.error_message.clone().into(),
    ]
}

/// `'<completed + failed> / <total>'` from the provider's counts at the last poll.
fn progress_text(j: &JobRow) -> Option<String> {
    let total = j.provider_total?;
    let done = j.provider_completed.unwrap_or(0) + j.provider_failed.unwrap_or(0);
    Some(format!("{done} / {total}"))
}

/// A `batch_history` row: the job's cells, then its progress at the provider.
fn history_cells(j: &JobRow) -> Vec<Cell> {
    let mut cells = job_cells(j);
    cells.extend([
        progress_text(j).into(),
        j.provider_completed.into(),
        j.provider_failed.into(),
        j.provider_total.into(),
        j.progress_at.into(),
    ]);
    cells
}

impl SqlTable for History {
    const NAME: &'static str = "batch_history";
    type Params = HistoryFilter;

    fn columns() -> Vec<(&'static str, ColType)> {
        use ColType::*;
        let mut cols = job_columns();
        cols.extend([
            ("progress", Varchar),
            ("provider_completed", BigInt),
            ("provider_failed", BigInt),
            ("provider_total", BigInt),
            ("progress_at", TimestampTz),
        ]);
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

    fn run(rt: &Arc<Runtime>, p: &HistoryFilter) -> Result<Vec<Vec<Cell>>, SqlError> {
        let conn = rt.lease().map_err(|e| fail(Self::NAME, e))?;
        store::check_tables(&conn, store::Reads::Tracking).map_err(|e| fail(Self::NAME, e))?;
        store::ensure_schema(&conn).map_err(|e| fail(Self::NAME, e))?;
        let jobs = store::history(&conn, p).map_err(|e| fail(Self::NAME, e))?;
        Ok(jobs.iter().map(history_cells).collect())
    }
}
