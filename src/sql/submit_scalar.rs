//! `batch_submit(processor, ids [, options])` as a scalar function.
//!
//! DuckDB refuses subqueries as arguments of C-API table functions, so the forms
//! `SELECT batch_submit('product-labeling', (SELECT list(id) FROM issues WHERE ...))`
//! and `SELECT batch_submit('product-labeling', list(id)) FROM issues WHERE ...` live
//! here. It submits exactly like the table function and returns its rows as a
//! `LIST(STRUCT(...))`. It is volatile: DuckDB never folds or caches it, and every
//! row it is called for is one submit. Options come as an optional third argument, a
//! STRUCT (`{'model': 'gpt-4o', 'dry_run': true}`) or a JSON text with the same keys
//! as the table function's named parameters.

use std::sync::Arc;

use duckdb::core::{DataChunkHandle, FlatVector, LogicalTypeHandle, LogicalTypeId};
use duckdb::types::DuckString;
use duckdb::vscalar::{ScalarFunctionSignature, VScalar};
use duckdb::vtab::arrow::WritableVector;

use ai_batch_core::text::echo;

use super::submit::{columns, rows, NAME};
use super::{fail, write_cell, SqlError};
use crate::runtime::Runtime;
use crate::submit::{self, Selection, SubmitRequest};

/// The scalar `batch_submit`.
pub struct SubmitScalar;

fn return_type() -> LogicalTypeHandle {
    let fields: Vec<(&str, LogicalTypeHandle)> = columns()
        .into_iter()
        .map(|(n, t)| (n, t.logical()))
        .collect();
    LogicalTypeHandle::list(&LogicalTypeHandle::struct_type(&fields))
}

/// An option value read from a STRUCT field or a JSON object.
#[derive(Debug, Clone, PartialEq)]
enum Opt {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

fn opt_text(name: &str, v: &Opt) -> Result<Option<String>, SqlError> {
    match v {
        Opt::Null => Ok(None),
        Opt::Text(s) => Ok(Some(s.clone())),
        _ => Err(fail(
            NAME,
            format!("option '{}' must be a text", echo(name)),
        )),
    }
}
fn opt_bool(name: &str, v: &Opt) -> Result<Option<bool>, SqlError> {
    match v {
        Opt::Null => Ok(None),
        Opt::Bool(b) => Ok(Some(*b)),
        _ => Err(fail(
            NAME,
            format!("option '{}' must be true or false", echo(name)),
        )),
    }
}
fn opt_int(name: &str, v: &Opt) -> Result<Option<i64>, SqlError> {
    match v {
        Opt::Null => Ok(None),
        Opt::Int(i) => Ok(Some(*i)),
        Opt::Float(f) if f.fract() == 0.0 => Ok(Some(*f as i64)),
        _ => Err(fail(
            NAME,
            format!("option '{}' must be a whole number", echo(name)),
        )),
    }
}
fn opt_float(name: &str, v: &Opt) -> Result<Option<f64>, SqlError> {
    match v {
        Opt::Null => Ok(None),
        Opt::Int(i) => Ok(Some(*i as f64)),
        Opt::Float(f) => Ok(Some(*f)),
        _ => Err(fail(
            NAME,
            format!("option '{}' must be a number", echo(name)),
        )),
    }
}

/// Applies named options to a request; unknown names are an error.
fn apply_options(req: &mut SubmitRequest, opts: &[(String, Opt)]) -> Result<(), SqlError> {
    for (name, v) in opts {
        let n = name.as_str();
        match n {
            "model" => {
                if let Some(m) = opt_text(n, v)? {
                    req.model = m.trim().to_string();
                }
            }
            "provider" => {
                if let Some(p) = opt_text(n, v)? {
                    req.provider = p.trim().to_ascii_lowercase();
                }
            }
            "base_url" => req.base_url = opt_text(n, v)?,
            "org" => req.org = opt_text(n, v)?,
            "repo" => req.repo = opt_text(n, v)?,
            "state" => req.state = opt_text(n, v)?,
            "dry_run" => req.dry_run = opt_bool(n, v)?.unwrap_or(false),
            "reprocess" => req.reprocess = opt_bool(n, v)?.unwrap_or(false),
            "missing_analysis" => req.missing_analysis = opt_bool(n, v)?.unwrap_or(false),
            "max_issues" => req.max_issues = opt_int(n, v)?,
            "max_output_tokens" => req.max_output_tokens = opt_int(n, v)?,
            "max_requests_per_job" => req.max_requests_per_job = opt_int(n, v)?,
            "temperature" => req.temperature = opt_float(n, v)?,
            other => {
                let known: Vec<&str> = super::submit::NAMED.iter().map(|(k, _)| *k).collect();
                return Err(fail(
                    NAME,
                    format!(
                        "unknown option '{}' (known: {})",
                        echo(other),
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn read_varchar(v: &FlatVector<'_>, row: usize) -> Option<String> {
    if v.row_is_null(row as u64) {
        return None;
    }
    // SAFETY: the vector is VARCHAR and `row` is within the chunk.
    let s = unsafe { v.as_slice::<duckdb::ffi::duckdb_string_t>() };
    s.get(row).map(|p| {
        let mut p = *p;
        DuckString::new(&mut p).as_str().to_string()
    })
}

/// An integer of row `row`; `Err` holds the value's text when it does not fit in a
/// BIGINT (a UBIGINT, HUGEINT or UHUGEINT beyond its range): never wrapped.
fn read_int(v: &FlatVector<'_>, t: LogicalTypeId, row: usize) -> Result<Option<i64>, String> {
    fn fit<T: Copy + ToString>(x: Option<&T>) -> Result<Option<i64>, String>
    where
        i64: TryFrom<T>,
    {
        x.map(|x| i64::try_from(*x).map_err(|_| x.to_string()))
            .transpose()
    }
    if v.row_is_null(row as u64) {
        return Ok(None);
    }
    // SAFETY: each arm reads the vector with the physical type of its logical type.
    unsafe {
        match t {
            LogicalTypeId::Tinyint => fit(v.as_slice::<i8>().get(row)),
            LogicalTypeId::Smallint => fit(v.as_slice::<i16>().get(row)),
            LogicalTypeId::Integer => fit(v.as_slice::<i32>().get(row)),
            LogicalTypeId::Bigint => fit(v.as_slice::<i64>().get(row)),
            LogicalTypeId::UTinyint => fit(v.as_slice::<u8>().get(row)),
            LogicalTypeId::USmallint => fit(v.as_slice::<u16>().get(row)),
            LogicalTypeId::UInteger => fit(v.as_slice::<u32>().get(row)),
            LogicalTypeId::UBigint => fit(v.as_slice::<u64>().get(row)),
            LogicalTypeId::Hugeint => fit(v
                .as_slice::<duckdb::ffi::duckdb_hugeint>()
                .get(row)
                .map(|h| (i128::from(h.upper) << 64) | i128::from(h.lower))
                .as_ref()),
            LogicalTypeId::UHugeint => fit(v
                .as_slice::<duckdb::ffi::duckdb_uhugeint>()
                .get(row)
                .map(|h| (u128::from(h.upper) << 64) | u128::from(h.lower))
                .as_ref()),
            _ => Ok(None),
        }
    }
}

fn is_int(t: LogicalTypeId) -> bool {
    crate::submit::is_integer_type(t)
}

fn read_opt(
    name: &str,
    v: &FlatVector<'_>,
    t: &LogicalTypeHandle,
    row: usize,
) -> Result<Opt, SqlError> {
    if v.row_is_null(row as u64) {
        return Ok(Opt::Null);
    }
    let id = t.id();
    // SAFETY: each arm reads the vector with the physical type of its logical type.
    unsafe {
        Ok(match id {
            LogicalTypeId::Varchar => read_varchar(v, row).map(Opt::Text).unwrap_or(Opt::Null),
            LogicalTypeId::Boolean => v
                .as_slice::<bool>()
                .get(row)
                .map(|b| Opt::Bool(*b))
                .unwrap_or(Opt::Null),
            LogicalTypeId::Double => v
                .as_slice::<f64>()
                .get(row)
                .map(|f| Opt::Float(*f))
                .unwrap_or(Opt::Null),
            LogicalTypeId::Float => v
                .as_slice::<f32>()
                .get(row)
                .map(|f| Opt::Float(*f as f64))
                .unwrap_or(Opt::Null),
            LogicalTypeId::Decimal => {
                let scale = t.decimal_scale() as i32;
                let raw: Option<i128> = match t.decimal_width() {
                    0..=4 => v.as_slice::<i16>().get(row).map(|x| *x as i128),
                    5..=9 => v.as_slice::<i32>().get(row).map(|x| *x as i128),
                    10..=18 => v.as_slice::<i64>().get(row).map(|x| *x as i128),
                    _ => v.as_slice::<i128>().get(row).copied(),
                };
                raw.map(|r| Opt::Float(r as f64 / 10f64.powi(scale)))
                    .unwrap_or(Opt::Null)
            }
            t if is_int(t) => read_int(v, t, row)
                .map_err(|text| {
                    fail(
                        NAME,
                        format!(
                            "option '{}' is {}, out of range (at most {})",
                            echo(name),
                            echo(&text),
                            i64::MAX
                        ),
                    )
                })?
                .map(Opt::Int)
                .unwrap_or(Opt::Null),
            other => {
                return Err(fail(
                    NAME,
                    format!(
                        "unsupported option value type {other:?} (use text, numbers or booleans)"
                    ),
                ))
            }
        })
    }
}

fn options_from_json(text: &str) -> Result<Vec<(String, Opt)>, SqlError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|e| {
        fail(
            NAME,
            format!("options must be a STRUCT like {{'model': 'gpt-4o'}} or a JSON object: {e}"),
        )
    })?;
    let obj = v
        .as_object()
        .ok_or_else(|| fail(NAME, "options JSON must be an object"))?;
    Ok(obj
        .iter()
        .map(|(k, v)| {
            let o = match v {
                serde_json::Value::Null => Opt::Null,
                serde_json::Value::Bool(b) => Opt::Bool(*b),
                serde_json::Value::Number(n) => match n.as_i64() {
                    Some(i) => Opt::Int(i),
                    None => Opt::Float(n.as_f64().unwrap_or(f64::NAN)),
                },
                serde_json::Value::String(s) => Opt::Text(s.clone()),
                other => Opt::Text(other.to_string()),
            };
            (k.clone(), o)
        })
        .collect())
}

/// Reads row `row`'s options from the third column, if any.
fn read_options(input: &DataChunkHandle, row: usize) -> Result<Vec<(String, Opt)>, SqlError> {
    if input.num_columns() < 3 {
        return Ok(Vec::new());
    }
    let flat = input.flat_vector(2);
    if flat.row_is_null(row as u64) {
        return Ok(Vec::new());
    }
    let t = flat.logical_type();
    match t.id() {
        LogicalTypeId::Struct => {
            let sv = input.struct_vector(2);
            let n = t.num_children();
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let name = t.child_name(i).to_ascii_lowercase();
                let ct = t.child(i);
                let child = sv.child(i, input.len());
                let value = read_opt(&name, &child, &ct, row)?;
                out.push((name, value));
            }
            Ok(out)
        }
        LogicalTypeId::Varchar => match read_varchar(&flat, row) {
            Some(s) => options_from_json(&s),
            None => Ok(Vec::new()),
        },
        LogicalTypeId::SqlNull => Ok(Vec::new()),
        _ => Err(fail(
            NAME,
            "options must be a STRUCT like {'model': 'gpt-4o', 'dry_run': true} or a JSON text",
        )),
    }
}

fn out_of_range(text: String) -> SqlError {
    fail(NAME, submit::id_out_of_range(&text))
}

/// Reads row `row`'s selection from the second column.
///
/// A NULL is [`Selection::Null`] (nothing selected, said in the message), never
/// "every issue": the subquery `(SELECT list(id) FROM issues WHERE <nothing matches>)`
/// is a NULL `BIGINT[]`, and with filter options it must not turn into "all issues of
/// the org". `'*'` is the explicit "every issue the filters allow".
fn read_selection(input: &DataChunkHandle, row: usize) -> Result<Selection, SqlError> {
    let flat = input.flat_vector(1);
    let t = flat.logical_type();
    if t.id() == LogicalTypeId::SqlNull || flat.row_is_null(row as u64) {
        return Ok(Selection::Null);
    }
    match t.id() {
        LogicalTypeId::Varchar => Ok(super::submit::selection_from_text(
            read_varchar(&flat, row).unwrap_or_default(),
        )),
        LogicalTypeId::List => {
            let child_t = t.child(0).id();
            if !is_int(child_t) && child_t != LogicalTypeId::SqlNull {
                return Err(fail(
                    NAME,
                    "the id list must hold integer issue ids (e.g. list(id) or [1, 2, 3])",
                ));
            }
            let list = input.list_vector(1);
            let (offset, len) = list.get_entry(row);
            let child = list.child(list.len());
            let mut ids = Vec::with_capacity(len);
            for i in offset..offset + len {
                if let Some(id) = read_int(&child, child_t, i).map_err(out_of_range)? {
                    ids.push(id);
                }
            }
            Ok(Selection::Ids(ids))
        }
        t if is_int(t) => Ok(Selection::Ids(
            read_int(&flat, t, row)
                .map_err(out_of_range)?
                .into_iter()
                .collect(),
        )),
        _ => Err(fail(
            NAME,
            "the second argument must be a list of issue ids, a SQL text, or '*' for every issue the filter options allow",
        )),
    }
}

impl VScalar for SubmitScalar {
    type State = Arc<Runtime>;

    fn invoke(
        rt: &Arc<Runtime>,
        input: &mut DataChunkHandle,
        output: &mut dyn WritableVector,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let n = input.len();
        let procs = input.flat_vector(0);
        let mut all_rows = Vec::with_capacity(n);
        for row in 0..n {
            let processor = read_varchar(&procs, row).ok_or_else(|| {
                fail(NAME, "processor must not be NULL (e.g. 'product-labeling')")
            })?;
            let mut req = SubmitRequest::new(processor.trim(), read_selection(input, row)?);
            apply_options(&mut req, &read_options(input, row)?)?;
            req.validate().map_err(|e| fail(NAME, e))?;
            if rt.is_released() {
                return Err(Box::new(fail(NAME, crate::runtime::RuntimeError::Released)));
            }
            let result = submit::submit(rt, &req).map_err(|e| fail(NAME, e))?;
            all_rows.push(rows(&req, &result));
        }
        let total: usize = all_rows.iter().map(|r| r.len()).sum();
        let mut list = output.list_vector();
        let cols = columns();
        let child = list.struct_child(total.max(1));
        let mut offset = 0;
        for (row, job_rows) in all_rows.iter().enumerate() {
            list.set_entry(row, offset, job_rows.len());
            for (k, jr) in job_rows.iter().enumerate() {
                for (c, (_, ty)) in cols.iter().enumerate() {
                    let mut fv = child.child(c, total.max(1));
                    let cell = jr.get(c).unwrap_or(&super::Cell::Null);
                    write_cell(&mut fv, offset + k, *ty, cell);
                }
            }
            offset += job_rows.len();
        }
        list.set_len(total);
        Ok(())
    }

    fn signatures() -> Vec<ScalarFunctionSignature> {
        let v = || LogicalTypeHandle::from(LogicalTypeId::Varchar);
        let any = || LogicalTypeHandle::from(LogicalTypeId::Any);
        vec![
            ScalarFunctionSignature::exact(vec![v(), any()], return_type()),
            ScalarFunctionSignature::exact(vec![v(), any(), any()], return_type()),
        ]
    }

    fn volatile() -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn json_options_apply() {
        let mut req = SubmitRequest::new("product-labeling", Selection::Ids(vec![1]));
        let opts = options_from_json(
            r#"{"model": "gpt-4o", "dry_run": true, "max_issues": 5, "temperature": 0.2}"#,
        )
        .unwrap();
        apply_options(&mut req, &opts).unwrap();
        assert_eq!(req.model, "gpt-4o");
        assert!(req.dry_run);
        assert_eq!(req.max_issues, Some(5));
        assert_eq!(req.temperature, Some(0.2));
    }

    #[test]
    fn unknown_and_mistyped_options_fail() {
        let mut req = SubmitRequest::new("product-labeling", Selection::Ids(vec![1]));
        let e = apply_options(&mut req, &[("modle".into(), Opt::Text("x".into()))]).unwrap_err();
        assert!(e.to_string().contains("unknown option 'modle'"), "{e}");
        let e =
            apply_options(&mut req, &[("dry_run".into(), Opt::Text("yes".into()))]).unwrap_err();
        assert!(e.to_string().contains("true or false"), "{e}");
    }
}
