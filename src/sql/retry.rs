//! `batch_retry(job_id)`: resubmits a finished job's failed (retryable), expired and
//! cancelled items as a new job. Returns the new job's rows, like `batch_submit`.

use std::sync::Arc;

use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::BindInfo;

use super::submit::{columns, rows};
use super::{fail, job_id_param, ty, Cell, ColType, SqlError, SqlTable};
use crate::retry;
use crate::runtime::Runtime;

/// The `batch_retry` table function.
pub struct Retry;

impl SqlTable for Retry {
    const NAME: &'static str = "batch_retry";
    type Params = String;

    fn columns() -> Vec<(&'static str, ColType)> {
        columns()
    }

    fn parameters() -> Vec<LogicalTypeHandle> {
        vec![ty(LogicalTypeId::Varchar)]
    }

    fn parse(bind: &BindInfo) -> Result<String, SqlError> {
        job_id_param(bind, Self::NAME)
    }

    fn run(rt: &Arc<Runtime>, job_id: &String) -> Result<Vec<Vec<Cell>>, SqlError> {
        let r = retry::retry(rt, job_id).map_err(|e| fail(Self::NAME, e))?;
        match &r.result {
            Some(res) => {
                let mut out = rows(&r.request, res);
                for row in &mut out {
                    if let Some(Cell::Text(m)) = row.last_mut() {
                        *m = format!("{}: {m}", r.message);
                    }
                }
                Ok(out)
            }
            None => {
                // Same columns as batch_submit: job_id, status, processor, model, then
                // counts; only `skipped` (left alone) and the message are filled.
                let row: Vec<Cell> = columns()
                    .iter()
                    .map(|(name, _)| match *name {
                        "status" => "nothing_to_retry".into(),
                        "processor" => r.request.processor.clone().into(),
                        "model" => r.request.model.clone().into(),
                        "skipped" => r.left_alone.into(),
                        "message" => r.message.clone().into(),
                        _ => Cell::Null,
                    })
                    .collect();
                Ok(vec![row])
            }
        }
    }
}
