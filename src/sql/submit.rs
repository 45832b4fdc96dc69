//! `batch_submit(processor, selection, <named parameters>)`: the table function form.
//!
//! `selection` is a SQL text (`$$SELECT id FROM issues WHERE ...$$`), a list of issue
//! ids (literal, `?`, `getvariable(...)`), or `'*'` to take every issue narrowed by the
//! filters. (DuckDB's C API registers exactly one signature per table function, so
//! the selection cannot be left out.) NULL selects nothing and says so.

use std::sync::Arc;

use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::{BindInfo, Value};

use super::{
    fail, named_bool, named_f64, named_i64, named_text, ty, value_text, Cell, ColType, SqlError,
    SqlTable,
};
use crate::runtime::Runtime;
use crate::submit::{self, Selection, SubmitRequest, SubmitResult};

/// The `batch_submit` table function.
pub struct Submit;

/// The function name, shared with the scalar form.
pub const NAME: &str = "batch_submit";

/// Output columns, shared with the scalar form (as STRUCT fields).
pub fn columns() -> Vec<(&'static str, ColType)> {
    use ColType::*;
    vec![
        ("job_id", Varchar),
        ("status", Varchar),
        ("processor", Varchar),
        ("model", Varchar),
        ("selected", BigInt),
        ("submitted", BigInt),
        ("skipped", BigInt),
        ("skipped_analysed", BigInt),
        ("skipped_active", BigInt),
        ("unknown_ids", BigInt),
        ("over_max", BigInt),
        ("estimated_input_tokens", BigInt),
        ("estimated_output_tokens", BigInt),
        ("cost_estimate", Money),
        ("provider_batch_id", Varchar),
        ("message", Varchar),
    ]
}

/// Result rows, in `columns()` order.
pub fn rows(req: &SubmitRequest, r: &SubmitResult) -> Vec<Vec<Cell>> {
    let s = &r.summary;
    r.jobs
        .iter()
        .map(|j| {
            vec![
                j.job_id.clone().into(),
                j.status.clone().into(),
                req.processor.clone().into(),
                req.model.clone().into(),
                s.selected.into(),
                j.submitted.into(),
                s.skipped().into(),
                s.skipped_analysed.into(),
                s.skipped_active.into(),
                s.unknown_ids.into(),
                s.over_max.into(),
                j.estimated_input_tokens.into(),
                j.estimated_output_tokens.into(),
                j.cost_estimate.into(),
                j.provider_batch_id.clone().into(),
                j.message.clone().into(),
            ]
        })
        .collect()
}

/// The named parameters and their SQL type ids. Plain data: reading the names needs
/// no DuckDB API (unit tests run without one).
pub const NAMED: [(&str, LogicalTypeId); 14] = [
    ("model", LogicalTypeId::Varchar),
    ("provider", LogicalTypeId::Varchar),
    ("base_url", LogicalTypeId::Varchar),
    ("dry_run", LogicalTypeId::Boolean),
    ("reprocess", LogicalTypeId::Boolean),
    ("max_issues", LogicalTypeId::Bigint),
    ("org", LogicalTypeId::Varchar),
    ("repo", LogicalTypeId::Varchar),
    ("state", LogicalTypeId::Varchar),
    ("missing_analysis", LogicalTypeId::Boolean),
    ("temperature", LogicalTypeId::Double),
    ("max_output_tokens", LogicalTypeId::Bigint),
    ("max_requests_per_job", LogicalTypeId::Bigint),
    ("reasoning_effort", LogicalTypeId::Varchar),
];

/// The named parameters, with their SQL types.
pub fn named() -> Vec<(&'static str, LogicalTypeHandle)> {
    NAMED.iter().map(|(n, t)| (*n, ty(*t))).collect()
}

/// One integer id of the selection argument. UBIGINT, HUGEINT and UHUGEINT values are
/// read through their text (duckdb-rs has no getter for them, and `to_int64` turns
/// an out-of-range value into -9223372036854775808): one that does not fit in a
/// BIGINT is refused, named.
fn id_value(v: &Value) -> Result<i64, SqlError> {
    use LogicalTypeId::*;
    match v.logical_type_id() {
        UBigint | Hugeint | UHugeint => {
            let text = v.to_string();
            text.trim()
                .parse::<i64>()
                .map_err(|_| fail(NAME, submit::id_out_of_range(&text)))
        }
        _ => Ok(v.to_int64()),
    }
}

/// Turns the selection argument into a [`Selection`].
///
/// Every NULL, typed or not, is [`Selection::Null`]: it selects nothing and the result
/// says so. Hosts disagree on the type a literal `NULL` arrives with (untyped in the
/// 2.0 wheels, typed in the 1.5.6 CLI), and a misspelled `getvariable('idz')` is as
/// untyped as the literal, so no NULL may stand for "every issue the filters allow":
/// that is the explicit text `'*'`.
pub fn selection_from_value(v: &Value) -> Result<Selection, SqlError> {
    let t = v.logical_type_id();
    if v.is_null() {
        return Ok(Selection::Null);
    }
    match t {
        LogicalTypeId::Varchar => Ok(selection_from_text(value_text(v).unwrap_or_default())),
        LogicalTypeId::List => {
            let items = v.to_list().unwrap_or_default();
            let mut ids = Vec::with_capacity(items.len());
            for item in &items {
                if item.is_null() {
                    continue;
                }
                if !submit::is_integer_type(item.logical_type_id()) {
                    return Err(fail(
                        NAME,
                        "the selection list must hold integer issue ids (e.g. [1, 2, 3] or getvariable('ids'))",
                    ));
                }
                ids.push(id_value(item)?);
            }
            Ok(Selection::Ids(ids))
        }
        t if submit::is_integer_type(t) => Ok(Selection::Ids(vec![id_value(v)?])),
        _ => Err(fail(
            NAME,
            "selection must be a SQL text ($$SELECT id FROM issues ...$$), a list of issue ids, or '*' for every issue the filters allow",
        )),
    }
}

/// A selection text: `'*'` (every issue, narrowed by the filters) or SQL.
pub fn selection_from_text(text: String) -> Selection {
    if text.trim() == crate::submit::ALL_ISSUES {
        Selection::All
    } else {
        Selection::Sql(text)
    }
}

impl SqlTable for Submit {
    const NAME: &'static str = NAME;
    type Params = SubmitRequest;

    fn columns() -> Vec<(&'static str, ColType)> {
        columns()
    }

    fn parameters() -> Vec<LogicalTypeHandle> {
        vec![ty(LogicalTypeId::Varchar), ty(LogicalTypeId::Any)]
    }

    fn named_parameters() -> Vec<(&'static str, LogicalTypeHandle)> {
        named()
    }

    fn parse(bind: &BindInfo) -> Result<SubmitRequest, SqlError> {
        let processor = value_text(&bind.get_parameter(0))
            .ok_or_else(|| fail(NAME, "processor must not be NULL (e.g. 'product-labeling')"))?;
        let selection = selection_from_value(&bind.get_parameter(1))?;
        let mut req = SubmitRequest::new(processor.trim(), selection);
        req.set_model_and_provider(named_text(bind, "model"), named_text(bind, "provider"))
            .map_err(|e| fail(NAME, e))?;
        req.base_url = named_text(bind, "base_url");
        req.dry_run = named_bool(bind, "dry_run").unwrap_or(false);
        req.reprocess = named_bool(bind, "reprocess").unwrap_or(false);
        req.max_issues = named_i64(bind, "max_issues");
        req.org = named_text(bind, "org");
        req.repo = named_text(bind, "repo");
        req.state = named_text(bind, "state");
        req.missing_analysis = named_bool(bind, "missing_analysis").unwrap_or(false);
        req.temperature = named_f64(bind, "temperature");
        req.max_output_tokens = named_i64(bind, "max_output_tokens");
        req.max_requests_per_job = named_i64(bind, "max_requests_per_job");
        req.reasoning_effort = named_text(bind, "reasoning_effort").map(|e| e.trim().to_string());
        req.validate().map_err(|e| fail(NAME, e))?;
        Ok(req)
    }

    fn run(rt: &Arc<Runtime>, req: &SubmitRequest) -> Result<Vec<Vec<Cell>>, SqlError> {
        let result = submit::submit(rt, req).map_err(|e| fail(NAME, e))?;
        Ok(rows(req, &result))
    }
}
