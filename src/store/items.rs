//! `batch_items`: one row per issue in a job, read item by item.

use ai_batch_core::lifecycle::{sql_list, ItemStatus};
use duckdb::{params, Connection};

use super::{table_exists, StoreError};

/// One item of a job, with its issue reference when the `issues` table has it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ItemRow {
    pub item_id: i64,
    pub issue_id: i64,
    pub issue_ref: Option<String>,
    pub custom_id: String,
    pub status: String,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub attempts: i64,
    pub estimated_input_tokens: Option<i64>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    pub cost: Option<f64>,
    pub updated_at: Option<i64>,
}

/// The items of a job, ordered by item id.
pub(crate) fn items(conn: &Connection, job_id: &str) -> Result<Vec<ItemRow>, StoreError> {
    let issue_ref = if table_exists(conn, "issues")? {
        "(SELECT i.org || '/' || i.repo || '#' || i.number FROM issues i WHERE i.id = b.issue_id)"
    } else {
        "NULL::VARCHAR"
    };
    let sql = format!(
        "SELECT b.id, b.issue_id, {issue_ref}, b.custom_id, b.status, b.error_code, b.error_message, \
                b.attempts, b.estimated_input_tokens, b.input_tokens, b.output_tokens, \
                CAST(b.cost AS DOUBLE), epoch_us(b.updated_at) \
         FROM batch_items b JOIN batch_jobs j ON j.id = b.batch_job_id \
         WHERE j.job_id = ? ORDER BY b.id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![job_id], |r| {
        Ok(ItemRow {
            item_id: r.get(0)?,
            issue_id: r.get(1)?,
            issue_ref: r.get(2)?,
            custom_id: r.get(3)?,
            status: r.get(4)?,
            error_code: r.get(5)?,
            error_message: r.get(6)?,
            attempts: r.get(7)?,
            estimated_input_tokens: r.get(8)?,
            input_tokens: r.get(9)?,
            output_tokens: r.get(10)?,
            cost: r.get(11)?,
            updated_at: r.get(12)?,
        })
    })?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// An item that ended without a usable answer, as a retry weighs it.
pub(crate) struct Unsuccessful {
    pub issue_id: i64,
    pub attempts: i64,
    pub status: ItemStatus,
    pub error_code: Option<String>,
}

/// The items of a job that ended `failed`, `expired` or `cancelled`, in item order.
pub(crate) fn unsuccessful_items(
    conn: &Connection,
    job_id: &str,
) -> Result<Vec<Unsuccessful>, StoreError> {
    let statuses = sql_list(ItemStatus::unsuccessful().map(ItemStatus::as_str));
    let mut stmt = conn.prepare(&format!(
        "SELECT issue_id, attempts, status, error_code \
         FROM batch_items b WHERE b.batch_job_id = (SELECT id FROM batch_jobs WHERE job_id = ?) \
           AND status IN ({statuses}) ORDER BY id"
    ))?;
    let rows = stmt.query_map(params![job_id], |r| {
        let status: String = r.get(2)?;
        Ok((r.get(0)?, r.get(1)?, status, r.get(3)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (issue_id, attempts, status, error_code) = row?;
        // Always one of the statuses asked for.
        let Some(status) = ItemStatus::parse(&status) else {
            continue;
        };
        out.push(Unsuccessful {
            issue_id,
            attempts,
            status,
            error_code,
        });
    }
    Ok(out)
}
