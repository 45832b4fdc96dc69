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
    columns, fail, named_bool, named_f64, named_i64, named_text, ty, value_text, Col, SqlError,
    SqlTable,
};
use crate::runtime::Runtime;
use crate::submit::request::{read_all, Draft, Kind, NamedValues, PARAMS};
use crate::submit::{self, Selection, SubmitRequest, SubmitResult};

/// The `batch_submit` table function.
pub struct Submit;

/// The function name, shared with the scalar form.
pub const NAME: &str = "batch_submit";

/// One output row of `batch_submit` (and `batch_retry`, and an element of the scalar
/// form's list): one job, with the selection's counts. NULL where not given.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubmitRow {
    pub job_id: Option<String>,
    pub status: String,
    pub processor: String,
    pub model: String,
    pub selected: Option<i64>,
    pub submitted: Option<i64>,
    pub skipped: Option<i64>,
    pub skipped_analysed: Option<i64>,
    pub skipped_active: Option<i64>,
    pub unknown_ids: Option<i64>,
    pub over_max: Option<i64>,
    pub estimated_input_tokens: Option<i64>,
    pub estimated_output_tokens: Option<i64>,
    pub cost_estimate: Option<f64>,
    pub provider_batch_id: Option<String>,
    pub message: String,
}

/// Output columns, shared with `batch_retry` and the scalar form (as STRUCT fields).
pub fn columns() -> Vec<Col<SubmitRow>> {
    columns!(SubmitRow {
        "job_id": Varchar = |r| r.job_id.clone(),
        "status": Varchar = |r| r.status.clone(),
        "processor": Varchar = |r| r.processor.clone(),
        "model": Varchar = |r| r.model.clone(),
        "selected": BigInt = |r| r.selected,
        "submitted": BigInt = |r| r.submitted,
        "skipped": BigInt = |r| r.skipped,
        "skipped_analysed": BigInt = |r| r.skipped_analysed,
        "skipped_active": BigInt = |r| r.skipped_active,
        "unknown_ids": BigInt = |r| r.unknown_ids,
        "over_max": BigInt = |r| r.over_max,
        "estimated_input_tokens": BigInt = |r| r.estimated_input_tokens,
        "estimated_output_tokens": BigInt = |r| r.estimated_output_tokens,
        "cost_estimate": Money = |r| r.cost_estimate,
        "provider_batch_id": Varchar = |r| r.provider_batch_id.clone(),
        "message": Varchar = |r| r.message.clone(),
    })
}

/// One row per job of a submit.
pub fn rows(req: &SubmitRequest, r: &SubmitResult) -> Vec<SubmitRow> {
    let s = &r.summary;
    r.jobs
        .iter()
        .map(|j| SubmitRow {
            job_id: j.job_id.clone(),
            status: j.status.clone(),
            processor: req.processor.clone(),
            model: r.model.clone(),
            selected: Some(s.selected),
            submitted: Some(j.submitted),
            skipped: Some(s.skipped()),
            skipped_analysed: Some(s.skipped_analysed),
            skipped_active: Some(s.skipped_active),
            unknown_ids: Some(s.unknown_ids),
            over_max: Some(s.over_max),
            estimated_input_tokens: Some(j.estimated_input_tokens),
            estimated_output_tokens: Some(j.estimated_output_tokens),
            cost_estimate: j.cost_estimate,
            provider_batch_id: j.provider_batch_id.clone(),
            message: j.message.clone(),
        })
        .collect()
}

/// The SQL type of a named parameter of this kind.
pub(crate) fn sql_type(kind: Kind) -> LogicalTypeId {
    match kind {
        Kind::Text => LogicalTypeId::Varchar,
        Kind::Bool => LogicalTypeId::Boolean,
        Kind::Int => LogicalTypeId::Bigint,
        Kind::Float => LogicalTypeId::Double,
    }
}

/// The named parameters and their SQL type ids, from [`PARAMS`]. Plain data: reading
/// them needs no DuckDB API (unit tests run without one).
pub(crate) fn named_types() -> Vec<(&'static str, LogicalTypeId)> {
    PARAMS
        .iter()
        .map(|p| (p.name, sql_type(p.kind())))
        .collect()
}

/// The named parameters, with their SQL types.
pub fn named() -> Vec<(&'static str, LogicalTypeHandle)> {
    named_types().into_iter().map(|(n, t)| (n, ty(t))).collect()
}

/// The named parameters as the bind gives them (already cast to their declared types
/// by DuckDB).
struct BindValues<'a>(&'a BindInfo);

impl NamedValues for BindValues<'_> {
    type Error = std::convert::Infallible;
    fn text(&mut self, name: &str) -> Result<Option<String>, Self::Error> {
        Ok(named_text(self.0, name))
    }
    fn boolean(&mut self, name: &str) -> Result<Option<bool>, Self::Error> {
        Ok(named_bool(self.0, name))
    }
    fn int(&mut self, name: &str) -> Result<Option<i64>, Self::Error> {
        Ok(named_i64(self.0, name))
    }
    fn float(&mut self, name: &str) -> Result<Option<f64>, Self::Error> {
        Ok(named_f64(self.0, name))
    }
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
    type Row = SubmitRow;

    fn columns() -> Vec<Col<SubmitRow>> {
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
        let mut draft = Draft::new(processor.trim(), selection);
        let Ok(()) = read_all(&mut draft, &mut BindValues(bind));
        draft.finish().map_err(|e| fail(NAME, e))
    }

    fn run(rt: &Arc<Runtime>, req: &SubmitRequest) -> Result<Vec<SubmitRow>, SqlError> {
        let result = submit::submit(rt, req).map_err(|e| fail(NAME, e))?;
        Ok(rows(req, &result))
    }
}
