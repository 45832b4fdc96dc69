//! The SQL skin: one file per SQL function, plus the glue they share here.
//!
//! Every table function follows one shape ([`SqlTable`]): `bind` turns DuckDB's
//! parameters into a plain struct (no side effects: bind runs several times per
//! query, and for EXPLAIN/DESCRIBE which never execute); the first execution
//! callback does the work once and keeps the rows; later callbacks hand them out
//! a chunk at a time. Errors are prefixed with the function's name.
//!
//! A function's output row is a plain Rust value; its columns (name, type, and how the
//! row gives the value) are declared once, as a list of [`Col`] (see [`columns!`]),
//! which gives both the result columns at bind and the cells at execution.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use duckdb::core::{DataChunkHandle, Inserter, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::{BindInfo, InitInfo, TableFunctionInfo, VTab, Value};

use crate::runtime::Runtime;

pub mod cancel;
pub mod details;
pub mod history;
pub mod processors;
pub mod refresh;
pub mod release;
pub mod results;
pub mod retry;
pub mod submit;
pub mod submit_scalar;
pub mod wait;

/// The boxed error type the duckdb-rs callbacks expect.
pub type BoxError = Box<dyn std::error::Error>;

/// An error a SQL function reports: always `<function>: <what failed> (<what to do>)`.
#[derive(Debug)]
pub struct SqlError(pub String);

impl std::fmt::Display for SqlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for SqlError {}

/// Builds a [`SqlError`] whose message starts with the function name.
pub fn fail(func: &str, msg: impl std::fmt::Display) -> SqlError {
    SqlError(format!("{func}: {msg}"))
}

/// Output column types the functions use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColType {
    Varchar,
    BigInt,
    Double,
    Bool,
    /// Microseconds since the epoch, shown as TIMESTAMP WITH TIME ZONE.
    TimestampTz,
    /// DECIMAL(10,4): money.
    Money,
}

impl ColType {
    pub(crate) fn logical(self) -> LogicalTypeHandle {
        match self {
            ColType::Varchar => LogicalTypeHandle::from(LogicalTypeId::Varchar),
            ColType::BigInt => LogicalTypeHandle::from(LogicalTypeId::Bigint),
            ColType::Double => LogicalTypeHandle::from(LogicalTypeId::Double),
            ColType::Bool => LogicalTypeHandle::from(LogicalTypeId::Boolean),
            ColType::TimestampTz => LogicalTypeHandle::from(LogicalTypeId::TimestampTZ),
            ColType::Money => LogicalTypeHandle::decimal(10, 4),
        }
    }
}

/// One output value.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl From<Option<String>> for Cell {
    fn from(v: Option<String>) -> Self {
        v.map(Cell::Text).unwrap_or(Cell::Null)
    }
}
impl From<String> for Cell {
    fn from(v: String) -> Self {
        Cell::Text(v)
    }
}
impl From<&str> for Cell {
    fn from(v: &str) -> Self {
        Cell::Text(v.to_string())
    }
}
impl From<Option<i64>> for Cell {
    fn from(v: Option<i64>) -> Self {
        v.map(Cell::Int).unwrap_or(Cell::Null)
    }
}
impl From<i64> for Cell {
    fn from(v: i64) -> Self {
        Cell::Int(v)
    }
}
impl From<Option<f64>> for Cell {
    fn from(v: Option<f64>) -> Self {
        v.map(Cell::Float).unwrap_or(Cell::Null)
    }
}
impl From<f64> for Cell {
    fn from(v: f64) -> Self {
        Cell::Float(v)
    }
}
impl From<bool> for Cell {
    fn from(v: bool) -> Self {
        Cell::Bool(v)
    }
}

/// One output column of rows of type `R`: its name, its type and its value in a row.
pub struct Col<R> {
    pub name: &'static str,
    pub ty: ColType,
    pub get: fn(&R) -> Cell,
}

/// Declares the output columns of a row type once: `columns!(Row { "name": Type =
/// |r| <value of r, anything that converts into a Cell>, ... })` gives a
/// `Vec<Col<Row>>`.
macro_rules! columns {
    ($row:ty { $($name:literal : $ty:ident = |$r:ident| $get:expr),* $(,)? }) => {
        vec![$($crate::sql::Col::<$row> {
            name: $name,
            ty: $crate::sql::ColType::$ty,
            get: |$r: &$row| $crate::sql::Cell::from($get),
        }),*]
    };
}
pub(crate) use columns;

/// A SQL table function: parameters in, rows out.
pub trait SqlTable: Sized + 'static {
    /// The SQL name.
    const NAME: &'static str;
    /// The parsed parameters.
    type Params: Send + Sync;
    /// One output row.
    type Row: Send + Sync + 'static;
    /// Output columns, declared once (see [`columns!`]).
    fn columns() -> Vec<Col<Self::Row>>;
    /// Positional parameter types.
    fn parameters() -> Vec<LogicalTypeHandle> {
        Vec::new()
    }
    /// Named parameter types.
    fn named_parameters() -> Vec<(&'static str, LogicalTypeHandle)> {
        Vec::new()
    }
    /// Reads the parameters. Must not have side effects.
    fn parse(bind: &BindInfo) -> Result<Self::Params, SqlError>;
    /// Does the work, once per execution.
    fn run(rt: &Arc<Runtime>, params: &Self::Params) -> Result<Vec<Self::Row>, SqlError>;
}

/// Bind data of every table function: the runtime and the parsed parameters.
pub struct Bound<P> {
    rt: Arc<Runtime>,
    params: P,
}

/// Execution state: rows produced by the first callback and how many were handed out.
pub struct Progress<R> {
    state: Mutex<Option<(Vec<R>, usize)>>,
}

/// The duckdb-rs adapter for a [`SqlTable`].
pub struct Table<T>(PhantomData<T>);

impl<T: SqlTable> VTab for Table<T> {
    type InitData = Progress<T::Row>;
    type BindData = Bound<T::Params>;

    fn bind(bind: &BindInfo) -> Result<Self::BindData, BoxError> {
        contained(T::NAME, || Self::bind_inner(bind))
    }

    fn init(_: &InitInfo) -> Result<Self::InitData, BoxError> {
        Ok(Progress {
            state: Mutex::new(None),
        })
    }

    fn func(func: &TableFunctionInfo<Self>, output: &mut DataChunkHandle) -> Result<(), BoxError> {
        contained(T::NAME, || Self::func_inner(func, output))
    }

    fn parameters() -> Option<Vec<LogicalTypeHandle>> {
        Some(T::parameters())
    }

    fn named_parameters() -> Option<Vec<(String, LogicalTypeHandle)>> {
        Some(
            T::named_parameters()
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect(),
        )
    }
}

impl<T: SqlTable> Table<T> {
    fn bind_inner(bind: &BindInfo) -> Result<Bound<T::Params>, BoxError> {
        let rt = bind_runtime(bind, T::NAME)?;
        let params = T::parse(bind)?;
        for col in T::columns() {
            bind.add_result_column(col.name, col.ty.logical());
        }
        Ok(Bound { rt, params })
    }

    fn func_inner(
        func: &TableFunctionInfo<Self>,
        output: &mut DataChunkHandle,
    ) -> Result<(), BoxError> {
        let bound = func.get_bind_data();
        let progress = func.get_init_data();
        let mut guard = progress.state.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none() {
            let rows = T::run(&bound.rt, &bound.params)?;
            *guard = Some((rows, 0));
        }
        let Some((rows, pos)) = guard.as_mut() else {
            output.set_len(0);
            return Ok(());
        };
        let take = (rows.len() - *pos).min(2048);
        for (c, col) in T::columns().iter().enumerate() {
            let mut vector = output.flat_vector(c);
            for (r, row) in rows.iter().skip(*pos).take(take).enumerate() {
                write_cell(&mut vector, r, col.ty, &(col.get)(row));
            }
        }
        *pos += take;
        output.set_len(take);
        Ok(())
    }
}

/// The start of every bind: inside a selection, no ai_batch function may even bind;
/// then the runtime the function was registered with, unless it was released.
pub(crate) fn bind_runtime(bind: &BindInfo, name: &'static str) -> Result<Arc<Runtime>, SqlError> {
    crate::guard::refuse_inside_selection(name).map_err(SqlError)?;
    let rt_ptr = bind.get_extra_info::<Arc<Runtime>>();
    if rt_ptr.is_null() {
        return Err(fail(
            name,
            "internal error: extension state missing (LOAD ai_batch again)",
        ));
    }
    // SAFETY: registered with an `Arc<Runtime>` as extra info; DuckDB keeps it alive
    // as long as the function exists.
    let rt = unsafe { &*rt_ptr }.clone();
    if rt.is_released() {
        return Err(fail(name, crate::runtime::RuntimeError::Released));
    }
    Ok(rt)
}

/// Runs a DuckDB callback of function `func` and turns a panic into a clear error.
///
/// The last line of defence: no code path is meant to panic (clippy denies `unwrap` and
/// `expect`), and duckdb-rs would catch one too, but only with a bare "Rust callback
/// panicked". A pooled connection in use when the panic struck is closed, not lent
/// again (see `runtime::Lease`); a transaction on it is rolled back (`store::Tx`).
pub fn contained<T>(func: &str, f: impl FnOnce() -> Result<T, BoxError>) -> Result<T, BoxError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".into());
            Err(Box::new(fail(
                func,
                format!(
                    "internal error, this is a bug: {what} (the call was stopped; anything it committed before shows in batch_history(); please report it with the statement that caused it)"
                ),
            )))
        }
    }
}

pub(crate) fn write_cell(
    v: &mut duckdb::core::FlatVector<'_>,
    row: usize,
    ty: ColType,
    cell: &Cell,
) {
    // SAFETY (all `as_mut_slice` calls): the vector was created by DuckDB for this
    // column type, with capacity >= 2048 rows, and `row < 2048`.
    match (ty, cell) {
        (_, Cell::Null) => v.set_null(row),
        (ColType::Varchar, Cell::Text(s)) => v.insert(row, s.as_str()),
        (ColType::Varchar, other) => v.insert(row, cell_text(other).as_str()),
        (ColType::BigInt | ColType::TimestampTz, Cell::Int(i)) => unsafe {
            v.as_mut_slice::<i64>()[row] = *i;
        },
        (ColType::Double, Cell::Float(f)) => unsafe {
            v.as_mut_slice::<f64>()[row] = *f;
        },
        (ColType::Double, Cell::Int(i)) => unsafe {
            v.as_mut_slice::<f64>()[row] = *i as f64;
        },
        (ColType::Money, Cell::Float(f)) => unsafe {
            v.as_mut_slice::<i64>()[row] = (f * 10_000.0).round() as i64;
        },
        (ColType::Bool, Cell::Bool(b)) => unsafe {
            v.as_mut_slice::<bool>()[row] = *b;
        },
        _ => v.set_null(row),
    }
}

fn cell_text(c: &Cell) -> String {
    match c {
        Cell::Null => String::new(),
        Cell::Text(s) => s.clone(),
        Cell::Int(i) => i.to_string(),
        Cell::Float(f) => f.to_string(),
        Cell::Bool(b) => b.to_string(),
    }
}

// ---- parameter reading, NULL-safe (Value::to_string on NULL aborts the host) ----

/// A VARCHAR-ish value, or None for SQL NULL.
pub fn value_text(v: &Value) -> Option<String> {
    if v.is_null() {
        None
    } else {
        Some(v.to_string())
    }
}

/// The single job id argument of `batch_details`, `batch_cancel`, `batch_retry`:
/// trimmed, never NULL or empty.
pub fn job_id_param(bind: &BindInfo, func: &str) -> Result<String, SqlError> {
    match value_text(&bind.get_parameter(0)) {
        Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => Err(fail(
            func,
            "job_id must not be NULL or empty (pass a job_id from batch_history())",
        )),
    }
}

/// A named parameter as text; None when absent or NULL.
pub fn named_text(bind: &BindInfo, name: &str) -> Option<String> {
    bind.get_named_parameter(name).and_then(|v| value_text(&v))
}

/// A named BOOLEAN parameter; None when absent or NULL.
pub fn named_bool(bind: &BindInfo, name: &str) -> Option<bool> {
    bind.get_named_parameter(name)
        .filter(|v| !v.is_null())
        .map(|v| v.to_bool())
}

/// A named BIGINT parameter; None when absent or NULL.
pub fn named_i64(bind: &BindInfo, name: &str) -> Option<i64> {
    bind.get_named_parameter(name)
        .filter(|v| !v.is_null())
        .map(|v| v.to_int64())
}

/// A named DOUBLE parameter; None when absent or NULL.
pub fn named_f64(bind: &BindInfo, name: &str) -> Option<f64> {
    bind.get_named_parameter(name)
        .filter(|v| !v.is_null())
        .map(|v| v.to_double())
}

/// The logical type handle for a plain type id.
pub fn ty(id: LogicalTypeId) -> LogicalTypeHandle {
    LogicalTypeHandle::from(id)
}
