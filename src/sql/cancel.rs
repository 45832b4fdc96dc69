//! `batch_cancel(job_id)`: cancels a job at the provider (or locally, if it never got
//! there). Results that completed before the cancel are still collected.

use std::sync::Arc;

use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::BindInfo;

use super::refresh::columns;
use super::{fail, job_id_param, ty, Col, SqlError, SqlTable};
use crate::cancel;
use crate::refresh::RefreshRow;
use crate::runtime::Runtime;

/// The `batch_cancel` table function.
pub struct Cancel;

impl SqlTable for Cancel {
    const NAME: &'static str = "batch_cancel";
    type Params = String;
    type Row = RefreshRow;

    fn columns() -> Vec<Col<RefreshRow>> {
        columns()
    }

    fn parameters() -> Vec<LogicalTypeHandle> {
        vec![ty(LogicalTypeId::Varchar)]
    }

    fn parse(bind: &BindInfo) -> Result<String, SqlError> {
        job_id_param(bind, Self::NAME)
    }

    fn run(rt: &Arc<Runtime>, job_id: &String) -> Result<Vec<RefreshRow>, SqlError> {
        let row = cancel::cancel(rt, job_id).map_err(|e| fail(Self::NAME, e))?;
        Ok(vec![row])
    }
}
