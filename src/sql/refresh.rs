//! `batch_refresh(job_id := ...)`: polls active jobs, reconciles interrupted ones,
//! collects the results of finished ones. One row per job touched.

use std::sync::Arc;

use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::BindInfo;

use super::{columns, fail, named_text, ty, Col, SqlError, SqlTable};
use crate::refresh::{self, RefreshRow};
use crate::runtime::Runtime;

/// The `batch_refresh` table function.
pub struct Refresh;

/// Columns shared with `batch_cancel`.
pub fn columns() -> Vec<Col<RefreshRow>> {
    columns!(RefreshRow {
        "job_id": Varchar = |r| r.job_id.clone(),
        "old_status": Varchar = |r| r.old_status.clone(),
        "status": Varchar = |r| r.new_status.clone(),
        "issues_count": BigInt = |r| r.issues_count,
        "completed_count": BigInt = |r| r.completed_count,
        "failed_count": BigInt = |r| r.failed_count,
        "pending_count": BigInt = |r| r.pending_count,
        "applied": BigInt = |r| r.applied,
        "actual_cost": Money = |r| r.actual_cost,
        "message": Varchar = |r| r.message.clone(),
        "provider_completed": BigInt = |r| r.provider_completed,
        "provider_failed": BigInt = |r| r.provider_failed,
        "provider_total": BigInt = |r| r.provider_total,
    })
}

impl SqlTable for Refresh {
    const NAME: &'static str = "batch_refresh";
    type Params = Option<String>;
    type Row = RefreshRow;

    fn columns() -> Vec<Col<RefreshRow>> {
        columns()
    }

    fn named_parameters() -> Vec<(&'static str, LogicalTypeHandle)> {
        vec![("job_id", ty(LogicalTypeId::Varchar))]
    }

    fn parse(bind: &BindInfo) -> Result<Option<String>, SqlError> {
        Ok(named_text(bind, "job_id")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty()))
    }

    fn run(rt: &Arc<Runtime>, job_id: &Option<String>) -> Result<Vec<RefreshRow>, SqlError> {
        refresh::refresh(rt, job_id.as_deref()).map_err(|e| fail(Self::NAME, e))
    }
}
