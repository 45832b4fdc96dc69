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
//!
//! It is registered through DuckDB's C API directly rather than duckdb-rs's `VScalar`,
//! which offers no bind callback: the bind is where it refuses to run inside a
//! selection (see `guard`), before any row is executed.

use std::ffi::{c_void, CString};
use std::sync::Arc;

use duckdb::core::{FlatVector, ListVector, LogicalTypeHandle, LogicalTypeId, StructVector};
use duckdb::ffi;
use duckdb::types::DuckString;
use duckdb::vtab::arrow::WritableVector;

use ai_batch_core::text::echo;

use super::submit::{columns, rows, SubmitRow, NAME};
use super::{fail, write_cell, BoxError, ColType, SqlError};
use crate::runtime::Runtime;
use crate::submit::request::{self, Draft, NamedValues, PARAMS};
use crate::submit::{self, is_integer_type, Selection, SubmitError};

/// An option value read from a STRUCT field or a JSON object.
#[derive(Debug, Clone, PartialEq)]
enum Opt {
    Null,
    Text(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Anything else (a JSON object or array, a nested STRUCT, a LIST, ...): never a
    /// valid option value; what it is, for the message.
    Other(String),
}

impl Opt {
    /// What the value is, for "must be X, not Y".
    fn describe(&self) -> String {
        match self {
            Opt::Null => "NULL".into(),
            Opt::Text(_) => "a text".into(),
            Opt::Int(i) => format!("the number {i}"),
            Opt::Float(f) => format!("the number {f}"),
            Opt::Bool(b) => format!("{b}"),
            Opt::Other(what) => what.clone(),
        }
    }
}

/// An option of the wrong type: names the option, the type it needs and what it got.
fn wrong_type(name: &str, expected: &str, v: &Opt) -> SqlError {
    fail(
        NAME,
        format!(
            "option '{}' must be {expected}, not {} (options take the types of the table function's named parameters)",
            echo(name),
            v.describe()
        ),
    )
}

fn opt_text(name: &str, v: &Opt) -> Result<Option<String>, SqlError> {
    match v {
        Opt::Null => Ok(None),
        Opt::Text(s) => Ok(Some(s.clone())),
        _ => Err(wrong_type(name, "a text", v)),
    }
}
fn opt_bool(name: &str, v: &Opt) -> Result<Option<bool>, SqlError> {
    match v {
        Opt::Null => Ok(None),
        Opt::Bool(b) => Ok(Some(*b)),
        _ => Err(wrong_type(name, "true or false", v)),
    }
}
fn opt_int(name: &str, v: &Opt) -> Result<Option<i64>, SqlError> {
    // 2^63 as f64: whole floats below it (in magnitude) convert to i64 exactly.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    match v {
        Opt::Null => Ok(None),
        Opt::Int(i) => Ok(Some(*i)),
        Opt::Float(f) if f.fract() == 0.0 && f.abs() < LIMIT => Ok(Some(*f as i64)),
        _ => Err(wrong_type(name, "a whole number (BIGINT)", v)),
    }
}
fn opt_float(name: &str, v: &Opt) -> Result<Option<f64>, SqlError> {
    match v {
        Opt::Null => Ok(None),
        Opt::Int(i) => Ok(Some(*i as f64)),
        Opt::Float(f) if f.is_finite() => Ok(Some(*f)),
        _ => Err(wrong_type(name, "a number (DOUBLE)", v)),
    }
}

/// One option value, read as the type its parameter declares (see [`PARAMS`]).
struct OptValue<'a>(&'a Opt);

impl NamedValues for OptValue<'_> {
    type Error = SqlError;
    fn text(&mut self, name: &str) -> Result<Option<String>, SqlError> {
        opt_text(name, self.0)
    }
    fn boolean(&mut self, name: &str) -> Result<Option<bool>, SqlError> {
        opt_bool(name, self.0)
    }
    fn int(&mut self, name: &str) -> Result<Option<i64>, SqlError> {
        opt_int(name, self.0)
    }
    fn float(&mut self, name: &str) -> Result<Option<f64>, SqlError> {
        opt_float(name, self.0)
    }
}

/// Applies named options to a request being read; unknown names are an error.
fn apply_options(draft: &mut Draft, opts: &[(String, Opt)]) -> Result<(), SqlError> {
    for (name, v) in opts {
        let Some(p) = request::param(name) else {
            let known: Vec<&str> = PARAMS.iter().map(|p| p.name).collect();
            return Err(fail(
                NAME,
                format!(
                    "unknown option '{}' (known: {})",
                    echo(name),
                    known.join(", ")
                ),
            ));
        };
        p.apply(draft, &mut OptValue(v))?;
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
            t if is_integer_type(t) => read_int(v, t, row)
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
            // Checked against the option's type by `apply_options`, which names it.
            other => Opt::Other(format!("a {}", format!("{other:?}").to_uppercase())),
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
                serde_json::Value::Array(_) => Opt::Other("a JSON array".into()),
                serde_json::Value::Object(_) => Opt::Other("a JSON object".into()),
            };
            // Named parameters are case-insensitive in SQL; so are STRUCT field names here.
            (k.to_ascii_lowercase(), o)
        })
        .collect())
}

/// One column of the input chunk, seen as the vector kinds duckdb-rs reads.
struct Column<'a> {
    flat: FlatVector<'a>,
    list: ListVector<'a>,
    fields: StructVector<'a>,
}

/// Raw vector handles, one per view (duckdb-rs ties each view to a `&mut` of its
/// handle; `duckdb_vector` is a plain pointer, so each view gets its own copy).
struct RawColumn([ffi::duckdb_vector; 3]);

impl RawColumn {
    /// # Safety
    /// `chunk` is the live input chunk of the current call and `i` is below its column
    /// count.
    unsafe fn new(chunk: ffi::duckdb_data_chunk, i: usize) -> Self {
        // SAFETY: see the function's contract.
        let v = unsafe { ffi::duckdb_data_chunk_get_vector(chunk, i as u64) };
        RawColumn([v; 3])
    }

    fn views(&mut self) -> Column<'_> {
        let [a, b, c] = &mut self.0;
        Column {
            flat: a.flat_vector(),
            list: b.list_vector(),
            fields: c.struct_vector(),
        }
    }
}

/// Reads row `row`'s options from the third column, if any.
fn read_options(
    col: Option<&Column<'_>>,
    len: usize,
    row: usize,
) -> Result<Vec<(String, Opt)>, SqlError> {
    let Some(col) = col else {
        return Ok(Vec::new());
    };
    let flat = &col.flat;
    if flat.row_is_null(row as u64) {
        return Ok(Vec::new());
    }
    let t = flat.logical_type();
    match t.id() {
        LogicalTypeId::Struct => {
            let n = t.num_children();
            let mut out = Vec::with_capacity(n);
            for i in 0..n {
                let name = t.child_name(i).to_ascii_lowercase();
                let ct = t.child(i);
                let child = col.fields.child(i, len);
                out.push((name.clone(), read_opt(&name, &child, &ct, row)?));
            }
            Ok(out)
        }
        LogicalTypeId::Varchar => match read_varchar(flat, row) {
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
fn read_selection(col: &Column<'_>, row: usize) -> Result<Selection, SqlError> {
    let flat = &col.flat;
    let t = flat.logical_type();
    if t.id() == LogicalTypeId::SqlNull || flat.row_is_null(row as u64) {
        return Ok(Selection::Null);
    }
    match t.id() {
        LogicalTypeId::Varchar => Ok(super::submit::selection_from_text(
            read_varchar(flat, row).unwrap_or_default(),
        )),
        LogicalTypeId::List => {
            let child_t = t.child(0).id();
            if !is_integer_type(child_t) && child_t != LogicalTypeId::SqlNull {
                return Err(fail(
                    NAME,
                    "the id list must hold integer issue ids (e.g. list(id) or [1, 2, 3])",
                ));
            }
            let list = &col.list;
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
        t if is_integer_type(t) => Ok(Selection::Ids(
            read_int(flat, t, row)
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

/// One call: every row of the chunk is one submit, in order.
///
/// # Safety
/// `chunk` is the live input chunk of the current call.
unsafe fn invoke(
    rt: &Arc<Runtime>,
    chunk: ffi::duckdb_data_chunk,
    output: &mut dyn WritableVector,
) -> Result<(), BoxError> {
    // SAFETY: `chunk` is live (the function's contract).
    let (n, ncols) = unsafe {
        (
            ffi::duckdb_data_chunk_get_size(chunk) as usize,
            ffi::duckdb_data_chunk_get_column_count(chunk) as usize,
        )
    };
    // SAFETY: the signatures have 2 or 3 arguments; a third is read only when present.
    let mut raw: Vec<RawColumn> = (0..ncols.min(3))
        .map(|i| unsafe { RawColumn::new(chunk, i) })
        .collect();
    let cols: Vec<Column<'_>> = raw.iter_mut().map(RawColumn::views).collect();
    let (Some(procs), Some(selection)) = (cols.first(), cols.get(1)) else {
        return Err(Box::new(fail(NAME, "internal error: arguments missing")));
    };
    let options = cols.get(2);
    // Every row's arguments are checked before the first row is submitted: a bad
    // argument on row 3 must not leave rows 1-2 sent.
    let mut requests = Vec::with_capacity(n);
    for row in 0..n {
        let processor = read_varchar(&procs.flat, row)
            .ok_or_else(|| fail(NAME, "processor must not be NULL (e.g. 'product-labeling')"))?;
        let mut draft = Draft::new(processor.trim(), read_selection(selection, row)?);
        apply_options(&mut draft, &read_options(options, n, row)?)?;
        requests.push(draft.finish().map_err(|e| fail(NAME, e))?);
    }
    let mut all_rows = Vec::with_capacity(n);
    let mut recorded: Vec<String> = Vec::new();
    for req in &requests {
        if rt.is_released() {
            return Err(Box::new(fail(NAME, crate::runtime::RuntimeError::Released)));
        }
        let result = submit::submit(rt, req).map_err(|e| fail(NAME, after_rows(e, &recorded)))?;
        recorded.extend(result.jobs.iter().filter_map(|j| j.job_id.clone()));
        all_rows.push(rows(req, &result));
    }
    write_output(output, &all_rows);
    Ok(())
}

/// A failed submit of one row, naming the jobs earlier rows of the same call recorded
/// (they were sent as usual), as the table form's pipeline error does.
fn after_rows(e: SubmitError, earlier: &[String]) -> SubmitError {
    if earlier.is_empty() {
        return e;
    }
    let (error, jobs) = match e {
        SubmitError::PartlySent { error, jobs } => {
            (error, format!("{}, {jobs}", earlier.join(", ")))
        }
        e => (Box::new(e), earlier.join(", ")),
    };
    SubmitError::PartlySent { error, jobs }
}

/// Writes one `LIST(STRUCT(...))` per input row.
fn write_output(output: &mut dyn WritableVector, all_rows: &[Vec<SubmitRow>]) {
    let total: usize = all_rows.iter().map(|r| r.len()).sum();
    let mut list = output.list_vector();
    let cols = columns();
    let child = list.struct_child(total.max(1));
    let mut offset = 0;
    for (row, job_rows) in all_rows.iter().enumerate() {
        list.set_entry(row, offset, job_rows.len());
        for (k, jr) in job_rows.iter().enumerate() {
            for (c, col) in cols.iter().enumerate() {
                let mut fv = child.child(c, total.max(1));
                write_cell(&mut fv, offset + k, col.ty, &(col.get)(jr));
            }
        }
        offset += job_rows.len();
    }
    list.set_len(total);
}

// ---- registration through the C API ----

/// A C string for DuckDB; interior NULs (never in our own texts) become spaces.
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', " ")).unwrap_or_default()
}

/// The runtime registered as the function's extra info.
///
/// # Safety
/// `ptr` is the extra info set by [`register`] (or null).
unsafe fn runtime_from(ptr: *mut c_void) -> Option<&'static Arc<Runtime>> {
    // SAFETY: set by `register` to a leaked `Box<Arc<Runtime>>` that DuckDB frees
    // (through `drop_runtime`) only when the function is destroyed.
    unsafe { ptr.cast::<Arc<Runtime>>().as_ref() }
}

unsafe extern "C" fn drop_runtime(ptr: *mut c_void) {
    if !ptr.is_null() {
        // SAFETY: `ptr` came from `Box::into_raw` in `register`.
        drop(unsafe { Box::from_raw(ptr.cast::<Arc<Runtime>>()) });
    }
}

/// Bind: refuses inside a selection. Nothing else: arguments are read per row.
unsafe extern "C" fn bind_callback(info: ffi::duckdb_bind_info) {
    let result = super::contained(NAME, || {
        crate::guard::refuse_inside_selection(NAME).map_err(|e| Box::new(SqlError(e)) as BoxError)
    });
    if let Err(e) = result {
        let msg = c_string(&e.to_string());
        // SAFETY: `info` is the bind info DuckDB passed in.
        unsafe { ffi::duckdb_scalar_function_bind_set_error(info, msg.as_ptr()) };
    }
}

/// Execution: one submit per row; any error (or panic) becomes the function's error.
unsafe extern "C" fn invoke_callback(
    info: ffi::duckdb_function_info,
    input: ffi::duckdb_data_chunk,
    mut output: ffi::duckdb_vector,
) {
    let result = super::contained(NAME, || {
        // SAFETY: `info` is the function info DuckDB passed in; its extra info is ours.
        let rt = unsafe { runtime_from(ffi::duckdb_scalar_function_get_extra_info(info)) }
            .ok_or_else(|| {
                fail(
                    NAME,
                    "internal error: extension state missing (LOAD ai_batch again)",
                )
            })?;
        // SAFETY: `input` is this call's live chunk.
        unsafe { invoke(rt, input, &mut output) }
    });
    if let Err(e) = result {
        let msg = c_string(&e.to_string());
        // SAFETY: `info` is the function info DuckDB passed in.
        unsafe { ffi::duckdb_scalar_function_set_error(info, msg.as_ptr()) };
    }
}

/// A raw logical type for an output column; the caller destroys it.
unsafe fn raw_type(t: ColType) -> ffi::duckdb_logical_type {
    // SAFETY: plain constructors of the C API.
    unsafe {
        match t {
            ColType::Varchar => {
                ffi::duckdb_create_logical_type(ffi::DUCKDB_TYPE_DUCKDB_TYPE_VARCHAR)
            }
            ColType::BigInt => ffi::duckdb_create_logical_type(ffi::DUCKDB_TYPE_DUCKDB_TYPE_BIGINT),
            ColType::Double => ffi::duckdb_create_logical_type(ffi::DUCKDB_TYPE_DUCKDB_TYPE_DOUBLE),
            ColType::Bool => ffi::duckdb_create_logical_type(ffi::DUCKDB_TYPE_DUCKDB_TYPE_BOOLEAN),
            ColType::TimestampTz => {
                ffi::duckdb_create_logical_type(ffi::DUCKDB_TYPE_DUCKDB_TYPE_TIMESTAMP_TZ)
            }
            ColType::Money => ffi::duckdb_create_decimal_type(10, 4),
        }
    }
}

/// `LIST(STRUCT(<the table function's columns>))`; the caller destroys it.
unsafe fn raw_return_type() -> ffi::duckdb_logical_type {
    let cols = columns();
    let names: Vec<CString> = cols.iter().map(|c| c_string(c.name)).collect();
    let mut name_ptrs: Vec<*const std::os::raw::c_char> =
        names.iter().map(|n| n.as_ptr()).collect();
    // SAFETY: the arrays hold `cols.len()` valid entries; every type created here is
    // destroyed after DuckDB copied it into the struct / list type.
    unsafe {
        let mut types: Vec<ffi::duckdb_logical_type> =
            cols.iter().map(|c| raw_type(c.ty)).collect();
        let mut st = ffi::duckdb_create_struct_type(
            types.as_mut_ptr(),
            name_ptrs.as_mut_ptr(),
            cols.len() as u64,
        );
        for t in &mut types {
            ffi::duckdb_destroy_logical_type(t);
        }
        let list = ffi::duckdb_create_list_type(st);
        ffi::duckdb_destroy_logical_type(&mut st);
        list
    }
}

/// Registers `batch_submit(VARCHAR, ANY)` and `batch_submit(VARCHAR, ANY, ANY)`.
///
/// # Safety
/// `db` is the database handle DuckDB passed to the entrypoint, still inside it.
pub unsafe fn register(db: ffi::duckdb_database, rt: &Arc<Runtime>) -> Result<(), BoxError> {
    let name = c_string(NAME);
    // SAFETY: every handle created here is valid until destroyed at the end; DuckDB
    // copies functions, types and the set when they are added / registered.
    unsafe {
        let mut con: ffi::duckdb_connection = std::ptr::null_mut();
        if ffi::duckdb_connect(db, &mut con) != ffi::DuckDBSuccess {
            return Err(Box::new(fail(
                NAME,
                "could not open a connection to register the scalar form",
            )));
        }
        let mut set = ffi::duckdb_create_scalar_function_set(name.as_ptr());
        let mut ret = raw_return_type();
        let mut varchar = raw_type(ColType::Varchar);
        let mut any = ffi::duckdb_create_logical_type(ffi::DUCKDB_TYPE_DUCKDB_TYPE_ANY);
        let mut added = true;
        for n_any in [1, 2] {
            let mut f = ffi::duckdb_create_scalar_function();
            ffi::duckdb_scalar_function_set_name(f, name.as_ptr());
            ffi::duckdb_scalar_function_add_parameter(f, varchar);
            for _ in 0..n_any {
                ffi::duckdb_scalar_function_add_parameter(f, any);
            }
            ffi::duckdb_scalar_function_set_return_type(f, ret);
            ffi::duckdb_scalar_function_set_function(f, Some(invoke_callback));
            ffi::duckdb_scalar_function_set_bind(f, Some(bind_callback));
            // Volatile: never folded or cached; every row is one submit.
            ffi::duckdb_scalar_function_set_volatile(f);
            let extra = Box::into_raw(Box::new(Arc::clone(rt))).cast::<c_void>();
            ffi::duckdb_scalar_function_set_extra_info(f, extra, Some(drop_runtime));
            added &= ffi::duckdb_add_scalar_function_to_set(set, f) == ffi::DuckDBSuccess;
            ffi::duckdb_destroy_scalar_function(&mut f);
        }
        let registered =
            added && ffi::duckdb_register_scalar_function_set(con, set) == ffi::DuckDBSuccess;
        ffi::duckdb_destroy_logical_type(&mut any);
        ffi::duckdb_destroy_logical_type(&mut varchar);
        ffi::duckdb_destroy_logical_type(&mut ret);
        ffi::duckdb_destroy_scalar_function_set(&mut set);
        ffi::duckdb_disconnect(&mut con);
        if !registered {
            return Err(Box::new(fail(NAME, "could not register the scalar form")));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::submit::request::Kind;

    #[test]
    fn json_options_apply() {
        let mut d = Draft::new("product-labeling", Selection::Ids(vec![1]));
        let opts = options_from_json(
            r#"{"model": "gpt-4o", "dry_run": true, "max_issues": 5, "temperature": 0.2}"#,
        )
        .unwrap();
        apply_options(&mut d, &opts).unwrap();
        let req = d.finish().unwrap();
        assert_eq!(req.model, "gpt-4o");
        assert!(req.dry_run);
        assert_eq!(req.max_issues, Some(5));
        assert_eq!(req.temperature, Some(0.2));
    }

    #[test]
    fn json_options_take_provider_prefix_and_reasoning_effort() {
        let mut d = Draft::new("product-labeling", Selection::Ids(vec![1]));
        let opts = options_from_json(
            r#"{"model": "openai:o4-mini", "reasoning_effort": "low", "provider": "openai"}"#,
        )
        .unwrap();
        apply_options(&mut d, &opts).unwrap();
        let req = d.finish().unwrap();
        assert_eq!(
            (req.model.as_str(), req.provider.as_str()),
            ("o4-mini", "openai")
        );
        assert_eq!(req.reasoning_effort.as_deref(), Some("low"));
    }

    #[test]
    fn unknown_and_mistyped_options_fail() {
        let mut d = Draft::new("product-labeling", Selection::Ids(vec![1]));
        let e = apply_options(&mut d, &[("modle".into(), Opt::Text("x".into()))]).unwrap_err();
        assert!(e.to_string().contains("unknown option 'modle'"), "{e}");
        let e = apply_options(&mut d, &[("dry_run".into(), Opt::Text("yes".into()))]).unwrap_err();
        assert!(e.to_string().contains("true or false"), "{e}");
    }

    #[test]
    fn json_options_of_the_wrong_type_name_the_option_and_its_type() {
        for (json, expected) in [
            (
                r#"{"model": {"a": 1}}"#,
                "option 'model' must be a text, not a JSON object",
            ),
            (
                r#"{"org": ["acme"]}"#,
                "option 'org' must be a text, not a JSON array",
            ),
            (
                r#"{"base_url": 5}"#,
                "option 'base_url' must be a text, not the number 5",
            ),
            (
                r#"{"dry_run": "true"}"#,
                "option 'dry_run' must be true or false, not a text",
            ),
            (
                r#"{"max_issues": 1.5}"#,
                "option 'max_issues' must be a whole number (BIGINT)",
            ),
            (
                r#"{"max_issues": 1e30}"#,
                "option 'max_issues' must be a whole number (BIGINT)",
            ),
            (
                r#"{"temperature": "0.5"}"#,
                "option 'temperature' must be a number (DOUBLE), not a text",
            ),
        ] {
            let mut d = Draft::new("product-labeling", Selection::Ids(vec![1]));
            let opts = options_from_json(json).unwrap();
            let e = apply_options(&mut d, &opts).unwrap_err().to_string();
            assert!(e.starts_with("batch_submit: "), "{e}");
            assert!(e.contains(expected), "{json}: {e}");
        }
        // Keys are case-insensitive, as named parameters are; whole floats are integers.
        let mut d = Draft::new("product-labeling", Selection::Ids(vec![1]));
        let opts = options_from_json(r#"{"Model": "gpt-4o", "MAX_ISSUES": 3.0}"#).unwrap();
        apply_options(&mut d, &opts).unwrap();
        let req = d.finish().unwrap();
        assert_eq!((req.model.as_str(), req.max_issues), ("gpt-4o", Some(3)));
    }

    /// Named values with only `.0` given (a sample of its type), as a bind of a call
    /// that names just that parameter.
    struct Only(&'static str);

    impl NamedValues for Only {
        type Error = std::convert::Infallible;
        fn text(&mut self, name: &str) -> Result<Option<String>, Self::Error> {
            Ok((name == self.0).then(|| "sample".to_string()))
        }
        fn boolean(&mut self, name: &str) -> Result<Option<bool>, Self::Error> {
            Ok((name == self.0).then_some(true))
        }
        fn int(&mut self, name: &str) -> Result<Option<i64>, Self::Error> {
            Ok((name == self.0).then_some(7))
        }
        fn float(&mut self, name: &str) -> Result<Option<f64>, Self::Error> {
            Ok((name == self.0).then_some(0.5))
        }
    }

    /// The same samples as a STRUCT field and as a JSON value.
    fn samples(kind: Kind) -> (Opt, &'static str) {
        match kind {
            Kind::Text => (Opt::Text("sample".into()), r#""sample""#),
            Kind::Bool => (Opt::Bool(true), "true"),
            Kind::Int => (Opt::Int(7), "7"),
            Kind::Float => (Opt::Float(0.5), "0.5"),
        }
    }

    #[test]
    fn every_parameter_is_registered_read_by_the_bind_and_taken_as_an_option() {
        let registered = super::super::submit::named_types();
        assert_eq!(registered.len(), PARAMS.len());
        let blank = Draft::new("product-labeling", Selection::All);
        let mut seen: Vec<Draft> = Vec::new();
        for p in &PARAMS {
            let name = p.name;
            // Registered by the table function, with the SQL type of its kind.
            let sql_type = super::super::submit::sql_type(p.kind());
            assert!(
                registered.contains(&(name, sql_type)),
                "{name} not registered"
            );
            // Read by the table function's bind.
            let mut bound = blank.clone();
            let Ok(()) = request::read_all(&mut bound, &mut Only(name));
            assert_ne!(bound, blank, "{name}: the bind does not read it");
            // Taken by the scalar form, as a STRUCT field and as JSON, to the same
            // request.
            let (opt, json) = samples(p.kind());
            let mut as_struct = blank.clone();
            apply_options(&mut as_struct, &[(name.to_string(), opt)]).unwrap();
            assert_eq!(as_struct, bound, "{name}: STRUCT option and bind differ");
            let mut as_json = blank.clone();
            let opts = options_from_json(&format!(r#"{{"{name}": {json}}}"#)).unwrap();
            apply_options(&mut as_json, &opts).unwrap();
            assert_eq!(as_json, bound, "{name}: JSON option and bind differ");
            // Each parameter sets something of its own.
            assert!(!seen.contains(&bound), "{name} sets what another one sets");
            seen.push(bound);
        }
    }

    #[test]
    fn unknown_options_list_every_parameter() {
        let mut d = Draft::new("product-labeling", Selection::All);
        let e = apply_options(&mut d, &[("nope".into(), Opt::Null)])
            .unwrap_err()
            .to_string();
        for (name, _) in super::super::submit::named_types() {
            assert!(e.contains(name), "{name} missing from: {e}");
        }
    }
}
