//! The selection: its SQL checked with DuckDB's own parser, run read-only, and its ids
//! loaded into the temp table `ai_batch_sel_raw(id)` that `store::record::classify`
//! reads.

use ai_batch_core::text::{cap, echo, SQL_MESSAGE_CHARS};
use duckdb::{params, Connection};

use super::error::SubmitError;
use super::request::{Selection, SubmitRequest};
use crate::store;

/// Checks the selection SQL with DuckDB's own parser: exactly one statement, and a
/// SELECT (which covers WITH, VALUES and FROM-first queries).
fn check_selection_sql(conn: &Connection, sql: &str) -> Result<(), SubmitError> {
    let json: String =
        conn.query_row("SELECT json_serialize_sql(?::VARCHAR)", params![sql], |r| {
            r.get(0)
        })?;
    let v: serde_json::Value = serde_json::from_str(&json)
        .map_err(|e| SubmitError::BadSelection(format!("could not check it: {e}")))?;
    if v.get("error").and_then(|e| e.as_bool()) == Some(true) {
        let kind = v.get("error_type").and_then(|e| e.as_str()).unwrap_or("");
        let msg = v
            .get("error_message")
            .and_then(|e| e.as_str())
            .unwrap_or("")
            .to_string();
        return Err(SubmitError::BadSelection(if kind == "parser" {
            format!("invalid SQL: {}", cap(&msg, SQL_MESSAGE_CHARS))
        } else {
            "it is not a read-only query (INSERT, UPDATE, DELETE, CREATE, ATTACH, COPY, PRAGMA, SET, ... are refused)".to_string()
        }));
    }
    if let Some(refused) = crate::guard::refused_function(function_names(&v)) {
        return Err(SubmitError::SelectionCalls(refused));
    }
    let n = v
        .get("statements")
        .and_then(|s| s.as_array())
        .map(|a| a.len())
        .unwrap_or(0);
    if n != 1 {
        return Err(SubmitError::BadSelection(format!(
            "found {n} statements, expected exactly one"
        )));
    }
    Ok(())
}

/// Every `function_name` in DuckDB's serialized parse tree (scalar, table, aggregate
/// and macro calls alike).
fn function_names(v: &serde_json::Value) -> Vec<&str> {
    let mut names = Vec::new();
    let mut stack = vec![v];
    while let Some(v) = stack.pop() {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(name)) = map.get("function_name") {
                    names.push(name.as_str());
                }
                stack.extend(map.values());
            }
            serde_json::Value::Array(items) => stack.extend(items),
            _ => {}
        }
    }
    names
}

/// True for the integer types an `id` column (or a list of ids) may have. Values of
/// the wide ones (UBIGINT, HUGEINT, UHUGEINT) must still fit in a BIGINT, see
/// [`id_out_of_range`].
pub(crate) fn is_integer_type(t: duckdb::core::LogicalTypeId) -> bool {
    use duckdb::core::LogicalTypeId::*;
    matches!(
        t,
        Tinyint
            | Smallint
            | Integer
            | Bigint
            | UTinyint
            | USmallint
            | UInteger
            | UBigint
            | Hugeint
            | UHugeint
    )
}

/// An issue id that does not fit in a BIGINT (a HUGEINT or UBIGINT beyond its range),
/// named in the message: it is refused, never wrapped into another id.
pub(crate) fn id_out_of_range(value: &str) -> SubmitError {
    SubmitError::Invalid(format!(
        "issue id {} is out of range: issue ids are BIGINT, from {} to {} (check the selection)",
        echo(value),
        i64::MIN,
        i64::MAX
    ))
}

/// Maps an error of running the selection to a message for the user.
fn selection_run_error(what: &str, e: duckdb::Error) -> SubmitError {
    // DuckDB quotes the SQL (identifiers, the line): a pasted 100,000 characters must
    // not come back whole.
    let msg = cap(&e.to_string(), SQL_MESSAGE_CHARS);
    if msg.contains("read-only mode") {
        SubmitError::BadSelection(format!(
            "it is not a read-only query, it tries to write ({msg})"
        ))
    } else {
        SubmitError::BadSelection(format!("DuckDB could not {what} it: {msg}"))
    }
}

/// Runs the selection SQL inside a READ ONLY transaction (so DuckDB itself refuses
/// any write hidden in it: a data-modifying CTE, `nextval`, ...) and returns its
/// `id` column. The ids are few (8 bytes each), so they are collected before the
/// transaction ends; the temp table is filled afterwards.
fn run_selection_sql(conn: &Connection, sql: &str) -> Result<Vec<Option<i64>>, SubmitError> {
    // Rolled back when this function returns, whatever happens (see `store::Tx`).
    let _read_only = store::Tx::begin_read_only(conn)?;
    // From here until the rows are read, every ai_batch function refuses to bind on
    // this thread (see `guard`): the check above cannot see into views or macros.
    let scope = crate::guard::SelectionScope::enter();
    let refused = |e: duckdb::Error, what: &str| match scope.refused() {
        Some(func) => SubmitError::SelectionCalls(crate::guard::Refused::Own(func)),
        None => selection_run_error(what, e),
    };
    let mut stmt = conn.prepare(sql).map_err(|e| refused(e, "prepare"))?;
    let mut rows = stmt.query([]).map_err(|e| refused(e, "run"))?;
    let (idx, ty) = rows
        .as_ref()
        .and_then(|s| {
            s.column_index("id")
                .ok()
                .map(|i| (i, s.column_logical_type(i).id()))
        })
        .ok_or_else(|| {
            SubmitError::BadSelection(
                "it has no column named id (select the issue ids as id, e.g. SELECT id FROM issues WHERE ...)".into(),
            )
        })?;
    let null_typed = ty == duckdb::core::LogicalTypeId::SqlNull;
    if !is_integer_type(ty) && !null_typed {
        return Err(SubmitError::BadSelection(format!(
            "its id column must hold integer issue ids, not {} (select issues.id, or CAST(... AS BIGINT) AS id)",
            format!("{ty:?}").to_uppercase()
        )));
    }
    crate::failpoint::panic_at("selection_read");
    let mut ids = Vec::new();
    while let Some(row) = rows.next().map_err(|e| refused(e, "run"))? {
        // A column of type NULL (`SELECT NULL AS id`) holds nothing but NULLs, and
        // duckdb-rs cannot read one (it panics): NULL ids select nothing.
        let id: Option<i64> = if null_typed {
            None
        } else {
            match row.get::<_, Option<i64>>(idx) {
                Ok(id) => id,
                Err(e) => {
                    use duckdb::types::ValueRef;
                    return Err(match row.get_ref(idx) {
                        Ok(ValueRef::HugeInt(v)) => id_out_of_range(&v.to_string()),
                        Ok(ValueRef::UHugeInt(v)) => id_out_of_range(&v.to_string()),
                        Ok(ValueRef::UBigInt(v)) => id_out_of_range(&v.to_string()),
                        _ => SubmitError::BadSelection(format!(
                            "its id column must hold integer issue ids that fit in a BIGINT ({e})"
                        )),
                    });
                }
            }
        };
        ids.push(id);
    }
    Ok(ids)
}

/// Fills the temp table `ai_batch_sel_raw(id)` from the selection.
pub(crate) fn load_selection(conn: &Connection, req: &SubmitRequest) -> Result<(), SubmitError> {
    // Check the SQL before touching anything.
    if let Selection::Sql(sql) = &req.selection {
        check_selection_sql(conn, sql)?;
    }
    conn.execute_batch("CREATE OR REPLACE TEMP TABLE ai_batch_sel_raw (id BIGINT)")?;
    match &req.selection {
        Selection::Sql(sql) => {
            let ids = run_selection_sql(conn, sql)?;
            let mut app = conn.appender("ai_batch_sel_raw")?;
            for id in ids {
                app.append_row(params![id])?;
            }
            app.flush()?;
        }
        Selection::Ids(ids) => {
            let mut app = conn.appender("ai_batch_sel_raw")?;
            for id in ids {
                app.append_row(params![id])?;
            }
            app.flush()?;
        }
        Selection::All => {
            conn.execute_batch("INSERT INTO ai_batch_sel_raw SELECT id FROM issues")?;
        }
        Selection::Null => {}
    }
    Ok(())
}

/// Drops the temp tables of a submit (the selection, its classes, what to submit).
pub(crate) fn drop_temp(conn: &Connection) {
    let _ = conn.execute_batch(
        "DROP TABLE IF EXISTS temp.ai_batch_sel_raw; DROP TABLE IF EXISTS temp.ai_batch_sel; \
         DROP TABLE IF EXISTS temp.ai_batch_todo;",
    );
}
