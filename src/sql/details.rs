//! `batch_details(job_id)`: the job's fields, repeated on one row per item with the
//! item's issue (`org/repo#number`), status, error, tokens and cost. A job without
//! items gives one row whose item columns are NULL.

use std::sync::Arc;

use duckdb::core::LogicalTypeId;
use duckdb::vtab::BindInfo;

use super::history::{job_cells, job_columns};
use super::{fail, job_id_param, ty, Cell, ColType, SqlError, SqlTable};
use crate::runtime::Runtime;
use crate::store;

/// The `batch_details` table function.
pub struct Details;

fn item_columns() -> Vec<(&'static str, ColType)> {
    use ColType::*;
    vec![
        ("item_id", BigInt),
        ("issue_id", BigInt),
        ("issue", Varchar),
        ("custom_id", Varchar),
        ("item_status", Varchar),
        ("item_error_code", Varchar),
        ("item_error_message", Varchar),
        ("attempts", BigInt),
        ("item_estimated_input_tokens", BigInt),
        ("item_input_tokens", BigInt),
        ("item_output_tokens", BigInt),
        ("item_cost", Double),
        ("item_updated_at", TimestampTz),
    ]
}

impl SqlTable for Details {
    const NAME: &'static str = "batch_details";
    type Params = String;

    fn columns() -> Vec<(&'static str, ColType)> {
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

    fn run(rt: &Arc<Runtime>, job_id: &String) -> Result<Vec<Vec<Cell>>, SqlError> {
        let conn = rt.lease().map_err(|e| fail(Self::NAME, e))?;
        store::check_tables(&conn, store::Reads::IssueRefs).map_err(|e| fail(Self::NAME, e))?;
        store::ensure_schema(&conn).map_err(|e| fail(Self::NAME, e))?;
        let job = store::job(&conn, job_id).map_err(|e| fail(Self::NAME, e))?;
        let items = store::items(&conn, job_id).map_err(|e| fail(Self::NAME, e))?;
        let head = job_cells(&job);
        if items.is_empty() {
            let mut row = head;
            row.extend(std::iter::repeat_n(Cell::Null, item_columns().len()));
            return Ok(vec![row]);
        }
        Ok(items
            .into_iter()
            .map(|it| {
                let mut row = head.clone();
                row.extend([
                    it.item_id.into(),
                    it.issue_id.into(),
                    it.issue_ref.into(),
                    it.custom_id.into(),
                    it.status.into(),
                    it.error_code.into(),
                    it.error_message.into(),
                    it.attempts.into(),
                    it.estimated_input_tokens.into(),
                    it.input_tokens.into(),
                    it.output_tokens.into(),
                    it.cost.into(),
                    it.updated_at.into(),
                ]);
                row
            })
            .collect())
    }
}
