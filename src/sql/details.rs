//! `batch_details(job_id)`: the job's fields, repeated on one row per item with the
//! item's issue (`org/repo#number`), status, error, tokens and cost. A job without
//! items gives one row whose item columns are NULL.

use std::sync::Arc;

use duckdb::core::LogicalTypeId;
use duckdb::vtab::BindInfo;

use super::history::{job_columns, HasJob};
use super::{columns, fail, job_id_param, ty, Col, SqlError, SqlTable};
use crate::runtime::Runtime;
use crate::store::{self, ItemRow, JobRow};

/// The `batch_details` table function.
pub struct Details;

/// A `batch_details` row: the job, and one of its items (None for a job without items).
pub struct DetailRow {
    job: Arc<JobRow>,
    item: Option<ItemRow>,
}

impl HasJob for DetailRow {
    fn job(&self) -> &JobRow {
        &self.job
    }
}

fn item_columns() -> Vec<Col<DetailRow>> {
    columns!(DetailRow {
        "item_id": BigInt = |r| r.item.as_ref().map(|i| i.item_id),
        "issue_id": BigInt = |r| r.item.as_ref().map(|i| i.issue_id),
        "issue": Varchar = |r| r.item.as_ref().and_then(|i| i.issue_ref.clone()),
        "custom_id": Varchar = |r| r.item.as_ref().map(|i| i.custom_id.clone()),
        "item_status": Varchar = |r| r.item.as_ref().map(|i| i.status.clone()),
        "item_error_code": Varchar = |r| r.item.as_ref().and_then(|i| i.error_code.clone()),
        "item_error_message": Varchar = |r| r.item.as_ref().and_then(|i| i.error_message.clone()),
        "attempts": BigInt = |r| r.item.as_ref().map(|i| i.attempts),
        "item_estimated_input_tokens": BigInt = |r| r.item.as_ref().and_then(|i| i.estimated_input_tokens),
        "item_input_tokens": BigInt = |r| r.item.as_ref().and_then(|i| i.input_tokens),
        "item_output_tokens": BigInt = |r| r.item.as_ref().and_then(|i| i.output_tokens),
        "item_cost": Double = |r| r.item.as_ref().and_then(|i| i.cost),
        "item_updated_at": TimestampTz = |r| r.item.as_ref().and_then(|i| i.updated_at),
    })
}

impl SqlTable for Details {
    const NAME: &'static str = "batch_details";
    type Params = String;
    type Row = DetailRow;

    fn columns() -> Vec<Col<DetailRow>> {
        let mut c = job_columns();
        c.extend(item_columns());
        c
    }

    fn parameters() -> Vec<duckdb::core::LogicalTypeHandle> {
        vec![ty(LogicalTypeId::Varchar)]
    }

    fn parse(bind: &BindInfo) -> Result<String, SqlError> {
        job_id_param(bind, Self::NAME)
    }

    fn run(rt: &Arc<Runtime>, job_id: &String) -> Result<Vec<DetailRow>, SqlError> {
        let conn = rt.lease().map_err(|e| fail(Self::NAME, e))?;
        store::check_tables(&conn, store::Reads::IssueRefs).map_err(|e| fail(Self::NAME, e))?;
        store::ensure_schema(&conn).map_err(|e| fail(Self::NAME, e))?;
        let job = Arc::new(store::job(&conn, job_id).map_err(|e| fail(Self::NAME, e))?);
        let items = store::items(&conn, job_id).map_err(|e| fail(Self::NAME, e))?;
        if items.is_empty() {
            return Ok(vec![DetailRow { job, item: None }]);
        }
        Ok(items
            .into_iter()
            .map(|it| DetailRow {
                job: Arc::clone(&job),
                item: Some(it),
            })
            .collect())
    }
}
