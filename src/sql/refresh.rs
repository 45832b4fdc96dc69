//! `batch_refresh(job_id := ...)`: polls active jobs, reconciles interrupted ones,
//! collects the results of finished ones. One row per job touched.

use std::sync::Arc;

use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::BindInfo;

use super::{fail, named_text, ty, Cell, ColType, SqlError, SqlTable};
use crate::refresh::{self, RefreshRow};
use crate::runtime::Runtime;

/// The `batch_refresh` table function.
pub struct Refresh;

/// Columns shared with `batch_cancel`.
pub fn columns() -> Vec<(&'static str, ColType)> {
    use ColType::*;
    vec![
        ("job_id", Varchar),
        ("old_status", Varchar),
        ("status", Varchar),
        ("issues_count", BigInt),
        ("completed_count", BigInt),
        ("failed_count", BigInt),
        ("pending_count", BigInt),
        ("applied", BigInt),
        ("actual_cost", Money),
        ("message", Varchar),
        ("provider_completed", BigInt),
        ("provider_failed", BigInt),
        ("provider_total", BigInt),
    ]
}

/// A row in `columns()` order.
pub fn cells(r: RefreshRow) -> Vec<Cell> {
    vec![
        r.job_id.into(),
        r.old_status.into(),
        r.new_status.into(),
        r.issues_count.into(),
        r.completed_count.into(),
        r.failed_count.into(),
        r.pending_count.into(),
        r.applied.into(),
        r.actual_cost.into(),
        r.message.into(),
        r.provider_completed.into(),
        r.provider_failed.into(),
        r.provider_total.into(),
    ]
}

impl SqlTable for Refresh {
    const NAME: &'static str = "batch_refresh";
    type Params = Option<String>;

    fn columns() -> Vec<(&'static str, ColType)> {
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

    fn run(rt: &Arc<Runtime>, job_id: &Option<String>) -> Result<Vec<Vec<Cell>>, SqlError> {
        let rows = refresh::refresh(rt, job_id.as_deref()).map_err(|e| fail(Self::NAME, e))?;
        Ok(rows.into_iter().map(cells).collect())
    }
}
