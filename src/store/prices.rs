//! What a cost estimate reads from the database: the price table (built in, overridden
//! by the user's `ai_batch_prices`) and the average output tokens collected so far.

use ai_batch_core::cost::{ModelPrice, PriceTable};
use duckdb::{params, Connection};

/// Collected items of a processor+model needed before their average output tokens
/// replace the processor's default in estimates.
pub(crate) const MIN_HISTORY_FOR_OUTPUT_AVERAGE: i64 = 20;

/// Why the price table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum PriceError {
    #[error("ai_batch_prices: {0}")]
    Invalid(String),
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
}

/// The built-in batch prices, overridden by rows of a user table `ai_batch_prices(model,
/// input_per_mtok, output_per_mtok)` when it exists.
pub fn price_table(conn: &Connection) -> Result<PriceTable, PriceError> {
    let table = PriceTable::builtin();
    if !super::table_exists(conn, "ai_batch_prices")? {
        return Ok(table);
    }
    let mut stmt = conn.prepare(
        "SELECT model::VARCHAR, input_per_mtok::DOUBLE, output_per_mtok::DOUBLE FROM ai_batch_prices",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok(ModelPrice {
            model: r.get::<_, Option<String>>(0)?.unwrap_or_default(),
            input_per_mtok: r.get::<_, Option<f64>>(1)?.unwrap_or(f64::NAN),
            output_per_mtok: r.get::<_, Option<f64>>(2)?.unwrap_or(f64::NAN),
        })
    })?;
    let rows: Vec<ModelPrice> = rows.collect::<Result<_, _>>()?;
    table
        .with_overrides(rows)
        .map_err(|e| PriceError::Invalid(e.to_string()))
}

/// The average output tokens of `processor` + `model` items collected so far, once
/// there are at least [`MIN_HISTORY_FOR_OUTPUT_AVERAGE`] of them.
pub(crate) fn output_history_average(
    conn: &Connection,
    processor: &str,
    model: &str,
) -> duckdb::Result<Option<f64>> {
    conn.query_row(
        "SELECT CASE WHEN count(output_tokens) >= ? THEN avg(output_tokens) END \
         FROM ai_analyses WHERE processor = ? AND model = ?",
        params![MIN_HISTORY_FOR_OUTPUT_AVERAGE, processor, model],
        |r| r.get(0),
    )
}
