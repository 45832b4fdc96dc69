//! `ai_batch`: a DuckDB extension that sends GitHub issues to LLM Batch APIs from SQL
//! and tracks every job, item, result and cent in the same database.
//!
//! This file is the entrypoint and registration only. See `docs/ARCHITECTURE.md`.

mod build;
pub mod cancel;
pub mod failpoint;
pub mod guard;
mod interrupt;
mod jobid;
pub mod profile;
pub mod reconcile;
pub mod refresh;
pub mod retry;
pub mod runtime;
mod settings;
pub mod spool;
mod sql;
pub mod store;
mod submit;

use std::sync::Arc;

use duckdb::ffi;
use duckdb::Connection;

use runtime::Runtime;
use sql::{SqlTable, Table};

/// The oldest DuckDB C API this extension accepts. Older versions (1.4, 1.5.0) either
/// crash in LOAD or silently ignore parts of the API with the macro's default.
const MIN_DUCKDB_VERSION: &str = "v1.5.6";

fn register<T: SqlTable>(conn: &Connection, rt: &Arc<Runtime>) -> duckdb::Result<()> {
    conn.register_table_function_with_extra_info::<Table<T>, Arc<Runtime>>(T::NAME, rt)
}

/// Registers every function.
///
/// # Safety
/// `db` is the database handle DuckDB passed to the entrypoint, still inside it.
unsafe fn init(
    conn: Connection,
    db: ffi::duckdb_database,
) -> Result<(), Box<dyn std::error::Error>> {
    let rt = Runtime::start(&conn)?;
    register::<sql::history::History>(&conn, &rt)?;
    register::<sql::details::Details>(&conn, &rt)?;
    register::<sql::release::Release>(&conn, &rt)?;
    register::<sql::submit::Submit>(&conn, &rt)?;
    register::<sql::refresh::Refresh>(&conn, &rt)?;
    register::<sql::wait::Wait>(&conn, &rt)?;
    register::<sql::cancel::Cancel>(&conn, &rt)?;
    register::<sql::retry::Retry>(&conn, &rt)?;
    register::<sql::processors::Define>(&conn, &rt)?;
    register::<sql::processors::List>(&conn, &rt)?;
    // Its columns come from the processor's schema, so it is a VTab of its own.
    conn.register_table_function_with_extra_info::<sql::results::Results, Arc<Runtime>>(
        sql::results::NAME,
        &rt,
    )?;
    // SAFETY: the caller's contract.
    unsafe { sql::submit_scalar::register(db, &rt) }?;
    Ok(())
}

unsafe fn init_internal(
    info: ffi::duckdb_extension_info,
    access: *const ffi::duckdb_extension_access,
) -> Result<bool, Box<dyn std::error::Error>> {
    // SAFETY: DuckDB passes valid `info` and `access` pointers to the entrypoint.
    unsafe {
        if !ffi::duckdb_rs_extension_api_init(info, access, MIN_DUCKDB_VERSION)? {
            // DuckDB already reported the version mismatch.
            return Ok(false);
        }
        let get_database = (*access)
            .get_database
            .ok_or("ai_batch: DuckDB gave no get_database function")?;
        let db_ptr = get_database(info);
        if db_ptr.is_null() {
            return Ok(false);
        }
        let db: ffi::duckdb_database = (*db_ptr).cast();
        let conn = Connection::open_from_raw(db)?;
        init(conn, db)?;
    }
    Ok(true)
}

/// The entrypoint DuckDB calls on `LOAD`.
///
/// # Safety
/// Called by DuckDB with valid extension info and access pointers.
#[no_mangle]
pub unsafe extern "C" fn ai_batch_init_c_api(
    info: ffi::duckdb_extension_info,
    access: *const ffi::duckdb_extension_access,
) -> bool {
    let result = std::panic::catch_unwind(|| unsafe { init_internal(info, access) });
    let err = match result {
        Ok(Ok(v)) => return v,
        Ok(Err(e)) => format!("ai_batch: LOAD failed: {e}"),
        Err(_) => "ai_batch: LOAD failed: internal panic".to_string(),
    };
    unsafe {
        if let Some(set_error) = (*access).set_error {
            let msg = std::ffi::CString::new(err.replace('\0', " "))
                .unwrap_or_else(|_| c"ai_batch: LOAD failed".to_owned());
            set_error(info, msg.as_ptr());
        }
    }
    false
}
