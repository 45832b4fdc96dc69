//! `batch_results(processor)`: the latest analysis of each issue by a processor, its
//! answer's properties as typed columns.
//!
//! The columns depend on the processor, so this function is not a [`super::SqlTable`]:
//! its bind reads the processor's current definition (built in, or the user's latest,
//! from `ai_processors`) and turns the response schema into columns
//! (`ai_batch_core::processor::Shape`): strings and enums VARCHAR, integers BIGINT,
//! numbers DOUBLE, booleans BOOLEAN, arrays LISTs, objects STRUCTs. Around them:
//! `issue`, `issue_id` first; `model`, `processor_version`, `job_id`, `analysed_at`
//! last. An analysis of an older version whose answer lacks a property, or has it
//! with another type, shows NULL there.

use std::sync::{Arc, Mutex};

use ai_batch_core::processor::{self, Shape};
use duckdb::core::{
    DataChunkHandle, FlatVector, Inserter, ListVector, LogicalTypeHandle, LogicalTypeId,
    StructVector,
};
use duckdb::vtab::{BindInfo, InitInfo, TableFunctionInfo, VTab};
use serde_json::Value;

use super::{bind_runtime, contained, fail, ty, value_text, BoxError, SqlError};
use crate::runtime::Runtime;
use crate::store::{self, LatestAnalysis};

/// The SQL name.
pub const NAME: &str = "batch_results";

/// The `batch_results` table function.
pub struct Results;

/// What the bind found: the processor and the columns of its answer.
pub struct ResultsBind {
    rt: Arc<Runtime>,
    processor: String,
    columns: Vec<(String, Shape)>,
}

/// The rows, read by the first execution callback, and how many were handed out.
pub struct ResultsInit {
    state: Mutex<Option<(Vec<Row>, usize)>>,
}

/// One output row: the analysis and its answer, parsed.
struct Row {
    a: LatestAnalysis,
    answer: Option<Value>,
}

/// The DuckDB type of a shape.
fn logical(shape: &Shape) -> LogicalTypeHandle {
    match shape {
        Shape::Text => ty(LogicalTypeId::Varchar),
        Shape::Int => ty(LogicalTypeId::Bigint),
        Shape::Float => ty(LogicalTypeId::Double),
        Shape::Bool => ty(LogicalTypeId::Boolean),
        Shape::List(item) => LogicalTypeHandle::list(&logical(item)),
        Shape::Struct(fields) => {
            let f: Vec<(&str, LogicalTypeHandle)> = fields
                .iter()
                .map(|(n, s)| (n.as_str(), logical(s)))
                .collect();
            LogicalTypeHandle::struct_type(&f)
        }
    }
}

/// An integer from a JSON number (an integral float too).
fn as_int(v: &Value) -> Option<i64> {
    v.as_i64().or_else(|| {
        v.as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e18)
            .map(|f| f as i64)
    })
}

/// Writes scalar values (VARCHAR, BIGINT, DOUBLE, BOOLEAN); what does not fit is NULL.
fn write_flat(v: &mut FlatVector<'_>, shape: &Shape, vals: &[Option<&Value>]) {
    for (i, x) in vals.iter().enumerate() {
        let Some(x) = x.filter(|x| !x.is_null()) else {
            v.set_null(i);
            continue;
        };
        // SAFETY (the slices): DuckDB made the vector for this shape's type, with room
        // for `vals.len()` rows (a chunk's 2,048, or the list child reserved for them).
        match shape {
            Shape::Text => match x {
                Value::String(s) => v.insert(i, s.as_str()),
                other => v.insert(i, other.to_string().as_str()),
            },
            Shape::Int => match as_int(x) {
                Some(n) => unsafe { v.as_mut_slice::<i64>()[i] = n },
                None => v.set_null(i),
            },
            Shape::Float => match x.as_f64() {
                Some(f) => unsafe { v.as_mut_slice::<f64>()[i] = f },
                None => v.set_null(i),
            },
            Shape::Bool => match x.as_bool() {
                Some(b) => unsafe { v.as_mut_slice::<bool>()[i] = b },
                None => v.set_null(i),
            },
            Shape::List(_) | Shape::Struct(_) => v.set_null(i),
        }
    }
}

/// Writes arrays as a LIST: the entries, then every item into the child vector.
fn write_list(l: &mut ListVector<'_>, item: &Shape, vals: &[Option<&Value>]) {
    let mut items: Vec<Option<&Value>> = Vec::new();
    for (i, x) in vals.iter().enumerate() {
        match x {
            Some(Value::Array(a)) => {
                l.set_entry(i, items.len(), a.len());
                items.extend(a.iter().map(Some));
            }
            _ => {
                l.set_entry(i, items.len(), 0);
                l.set_null(i);
            }
        }
    }
    l.set_len(items.len());
    match item {
        Shape::List(inner) => write_list(&mut l.list_child(), inner, &items),
        Shape::Struct(fields) => write_struct(&mut l.struct_child(items.len()), fields, &items),
        scalar => write_flat(&mut l.child(items.len()), scalar, &items),
    }
}

/// Writes objects as a STRUCT, one child per property.
fn write_struct(s: &mut StructVector<'_>, fields: &[(String, Shape)], vals: &[Option<&Value>]) {
    for (f, (name, shape)) in fields.iter().enumerate() {
        let sub: Vec<Option<&Value>> = vals
            .iter()
            .map(|x| x.and_then(Value::as_object).and_then(|o| o.get(name)))
            .collect();
        write_shape(s, f, shape, &sub);
    }
    for (i, x) in vals.iter().enumerate() {
        if !matches!(x, Some(Value::Object(_))) {
            s.set_null(i);
        }
    }
}

/// Writes child `f` of a STRUCT vector.
fn write_shape(s: &StructVector<'_>, f: usize, shape: &Shape, vals: &[Option<&Value>]) {
    match shape {
        Shape::List(item) => write_list(&mut s.list_vector_child(f), item, vals),
        Shape::Struct(fields) => write_struct(&mut s.struct_vector_child(f), fields, vals),
        scalar => write_flat(&mut s.child(f, vals.len()), scalar, vals),
    }
}

/// Writes output column `c`.
fn write_column(out: &DataChunkHandle, c: usize, shape: &Shape, vals: &[Option<&Value>]) {
    match shape {
        Shape::List(item) => write_list(&mut out.list_vector(c), item, vals),
        Shape::Struct(fields) => write_struct(&mut out.struct_vector(c), fields, vals),
        scalar => write_flat(&mut out.flat_vector(c), scalar, vals),
    }
}

/// Borrows each value.
fn refs(v: &[Option<Value>]) -> Vec<Option<&Value>> {
    v.iter().map(Option::as_ref).collect()
}

/// The fixed columns before the answer's.
const HEAD: [(&str, LogicalTypeId); 2] = [
    ("issue", LogicalTypeId::Varchar),
    ("issue_id", LogicalTypeId::Bigint),
];
/// The fixed columns after the answer's.
const TAIL: [(&str, LogicalTypeId); 4] = [
    ("model", LogicalTypeId::Varchar),
    ("processor_version", LogicalTypeId::Varchar),
    ("job_id", LogicalTypeId::Varchar),
    ("analysed_at", LogicalTypeId::TimestampTZ),
];

impl Results {
    fn bind_inner(bind: &BindInfo) -> Result<ResultsBind, SqlError> {
        let rt = bind_runtime(bind, NAME)?;
        let processor = value_text(&bind.get_parameter(0))
            .map(|s| s.trim().to_string())
            .ok_or_else(|| fail(NAME, "processor must not be NULL (e.g. 'product-labeling')"))?;
        // Read only: the bind creates nothing (it runs for EXPLAIN and DESCRIBE too).
        let conn = rt.lease().map_err(|e| fail(NAME, e))?;
        let p = store::processors::current(&conn, &processor).map_err(|e| fail(NAME, e))?;
        let columns = processor::result_shape(p.schema_text());
        for (n, t) in HEAD {
            bind.add_result_column(n, ty(t));
        }
        for (n, s) in &columns {
            bind.add_result_column(n, logical(s));
        }
        for (n, t) in TAIL {
            bind.add_result_column(n, ty(t));
        }
        Ok(ResultsBind {
            rt,
            processor,
            columns,
        })
    }

    fn read(b: &ResultsBind) -> Result<Vec<Row>, SqlError> {
        let conn = b.rt.lease().map_err(|e| fail(NAME, e))?;
        let rows = store::latest_analyses(&conn, &b.processor).map_err(|e| fail(NAME, e))?;
        Ok(rows
            .into_iter()
            .map(|a| Row {
                answer: serde_json::from_str(&a.result).ok(),
                a,
            })
            .collect())
    }

    fn func_inner(
        func: &TableFunctionInfo<Self>,
        out: &mut DataChunkHandle,
    ) -> Result<(), BoxError> {
        let b = func.get_bind_data();
        let init = func.get_init_data();
        let mut guard = init.state.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            *guard = Some((Self::read(b)?, 0));
        }
        let Some((rows, pos)) = guard.as_mut() else {
            out.set_len(0);
            return Ok(());
        };
        let take = (rows.len() - *pos).min(2048);
        let chunk = &rows[*pos..*pos + take];
        let text = |f: fn(&Row) -> Option<&str>| -> Vec<Option<Value>> {
            chunk
                .iter()
                .map(|r| f(r).map(|s| Value::String(s.to_string())))
                .collect()
        };
        let ints = |f: fn(&Row) -> i64| -> Vec<Option<Value>> {
            chunk.iter().map(|r| Some(Value::from(f(r)))).collect()
        };
        write_column(out, 0, &Shape::Text, &refs(&text(|r| r.a.issue.as_deref())));
        write_column(out, 1, &Shape::Int, &refs(&ints(|r| r.a.issue_id)));
        for (i, (name, shape)) in b.columns.iter().enumerate() {
            let vals: Vec<Option<&Value>> = chunk
                .iter()
                .map(|r| r.answer.as_ref().and_then(|a| a.get(name)))
                .collect();
            write_column(out, HEAD.len() + i, shape, &vals);
        }
        let c = HEAD.len() + b.columns.len();
        write_column(out, c, &Shape::Text, &refs(&text(|r| Some(&r.a.model))));
        write_column(
            out,
            c + 1,
            &Shape::Text,
            &refs(&text(|r| Some(&r.a.processor_version))),
        );
        write_column(
            out,
            c + 2,
            &Shape::Text,
            &refs(&text(|r| r.a.job_id.as_deref())),
        );
        // TIMESTAMP WITH TIME ZONE is microseconds since the epoch, as BIGINT is.
        write_column(out, c + 3, &Shape::Int, &refs(&ints(|r| r.a.analysed_at)));
        *pos += take;
        out.set_len(take);
        Ok(())
    }
}

impl VTab for Results {
    type InitData = ResultsInit;
    type BindData = ResultsBind;

    fn bind(bind: &BindInfo) -> Result<Self::BindData, BoxError> {
        contained(NAME, || {
            Self::bind_inner(bind).map_err(|e| Box::new(e) as BoxError)
        })
    }

    fn init(_: &InitInfo) -> Result<Self::InitData, BoxError> {
        Ok(ResultsInit {
            state: Mutex::new(None),
        })
    }

    fn func(func: &TableFunctionInfo<Self>, output: &mut DataChunkHandle) -> Result<(), BoxError> {
        contained(NAME, || Self::func_inner(func, output))
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(vec![ty(LogicalTypeId::Varchar)])
    }
}
