//! `batch_retry(job_id)`: resubmits a finished job's failed (retryable), expired and
//! cancelled items as a new job. Returns the new job's rows, like `batch_submit`.

use std::sync::Arc;

use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::BindInfo;

use super::submit::{columns, rows, SubmitRow};
use super::{fail, job_id_param, ty, Col, SqlError, SqlTable};
use crate::retry;
use crate::runtime::Runtime;

/// The `batch_retry` table function.
pub struct Retry;

impl SqlTable for Retry {
    const NAME: &'static str = "batch_retry";
    type Params = String;
    type Row = SubmitRow;

    fn columns() -> Vec<Col<SubmitRow>> {
        columns()
    }

    fn parameters() -> Vec<LogicalTypeHandle> {
        vec![ty(LogicalTypeId::Varchar)]
    }

    fn parse(bind: &BindInfo) -> Result<String, SqlError> {
        job_id_param(bind, Self::NAME)
    }

    fn run(rt: &Arc<Runtime>, job_id: &String) -> Result<Vec<SubmitRow>, SqlError> {
        let r = retry::retry(rt, job_id).map_err(|e| fail(Self::NAME, e))?;
        match &r.result {
            Some(res) => {
                let mut out = rows(&r.request, res);
                for row in &mut out {
                    row.message = format!("{}: {}", r.message, row.message);
                }
                Ok(out)
            }
            // Same columns as batch_submit: only status, processor, model, `skipped`
            // (left alone) and the message are filled.
            None => Ok(vec![SubmitRow {
                status: "nothing_to_retry".into(),
                processor: r.request.processor.clone(),
                model: r.request.model.clone(),
                skipped: Some(r.left_alone),
                message: r.message.clone(),
                ..SubmitRow::default()
            }]),
        }
    }
}
