//! The tracking tables: their DDL, defined once here, and every read and write of them.
//!
//! Tables live in the default schema of the database the extension was loaded into,
//! so `SELECT * FROM batch_jobs` works from any client. They carry no FOREIGN KEY
//! constraints (DuckDB rejects `ON DELETE CASCADE`, and a foreign key to
//! `batch_jobs(id)` makes `UPDATE batch_jobs SET status = ...` fail): this module
//! keeps them consistent itself.
//!
//! Sub-modules by table and task: [`schema`] (DDL, creation, the clash check), [`jobs`]
//! (`batch_jobs`), [`items`] (`batch_items`), [`results`] (staging and applying a
//! job's result files into `ai_analyses` and the items). Every statement takes and
//! returns plain row structs; transactions roll back on drop ([`Tx`]).

use duckdb::{Connection, Transaction};

mod analyses;
mod items;
mod jobs;
pub(crate) mod limits;
pub mod prices;
pub mod processors;
pub mod record;
mod results;
mod schema;

pub(crate) use analyses::*;
pub(crate) use items::*;
pub(crate) use jobs::*;
pub use jobs::{HistoryFilter, JobRow};
pub(crate) use results::*;
pub(crate) use schema::*;

/// What went wrong in the tracking tables.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Tables or views of the user's are in the way of ours, or lack columns we read
    /// ([`check_tables`]). One sentence per object, each saying what to do.
    #[error("{0} (nothing was created, written or sent)")]
    Clash(String),
    #[error("the database is read-only and has no ai_batch tables yet (open it read-write once, or run a batch_* function on a writable copy)")]
    ReadOnlyWithoutTables,
    /// A write to a database opened read-only.
    #[error("the database is read-only, and {0} (open it read-write)")]
    ReadOnly(&'static str),
    #[error("could not create the ai_batch tables: {0}")]
    Create(String),
    #[error("no job with job_id '{}' (see SELECT job_id FROM batch_history())", ai_batch_core::text::echo(.0))]
    UnknownJob(String),
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
}

/// An open transaction on one of the extension's connections: rolled back when it is
/// dropped without [`Tx::commit`] — after an error returned with `?` and during a
/// panic alike — so a pooled connection never goes back to the pool inside a
/// transaction (the next call would see the old snapshot, or a read-only one).
///
/// A read-write one is duckdb-rs's own [`Transaction`] (rolls back on drop). duckdb-rs
/// has no read-only transaction, so [`Tx::begin_read_only`] opens `BEGIN TRANSACTION
/// READ ONLY` itself and rolls it back on drop the same way.
pub(crate) struct Tx<'c>(Open<'c>);

enum Open<'c> {
    ReadWrite(Transaction<'c>),
    ReadOnly(ReadOnly<'c>),
}

/// A `READ ONLY` transaction, rolled back on drop unless committed.
struct ReadOnly<'c> {
    conn: &'c Connection,
    open: bool,
}

impl<'c> Tx<'c> {
    /// A read-write transaction (`BEGIN TRANSACTION`).
    pub(crate) fn begin(conn: &'c Connection) -> duckdb::Result<Self> {
        Transaction::new_unchecked(conn).map(|t| Tx(Open::ReadWrite(t)))
    }

    /// `BEGIN TRANSACTION READ ONLY`: DuckDB refuses every write inside it.
    pub(crate) fn begin_read_only(conn: &'c Connection) -> duckdb::Result<Self> {
        conn.execute_batch("BEGIN TRANSACTION READ ONLY")?;
        Ok(Tx(Open::ReadOnly(ReadOnly { conn, open: true })))
    }

    /// `COMMIT`. A failed commit is rolled back (by the drop) and reported.
    pub(crate) fn commit(self) -> duckdb::Result<()> {
        match self.0 {
            Open::ReadWrite(t) => t.commit(),
            Open::ReadOnly(mut r) => {
                r.conn.execute_batch("COMMIT")?;
                r.open = false;
                Ok(())
            }
        }
    }
}

impl Drop for ReadOnly<'_> {
    fn drop(&mut self) {
        if self.open {
            // After a failed COMMIT DuckDB may already have ended the transaction;
            // the ROLLBACK's "no transaction is active" is then expected (duckdb-rs's
            // `Transaction` ignores it the same way). Whatever else is left is caught
            // when the connection goes back to the pool (`Runtime::give_back`).
            let _ = self.conn.execute_batch("ROLLBACK");
        }
    }
}

/// Runs `f` in one transaction: COMMIT when it succeeds, ROLLBACK when it fails
/// (or panics: see [`Tx`]).
pub(crate) fn in_transaction<T, E: From<duckdb::Error>>(
    conn: &Connection,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    let tx = Tx::begin(conn)?;
    let v = f()?;
    tx.commit()?;
    Ok(v)
}

/// The seconds of an INTERVAL given as text (`'10 minutes'`, `'00:10:00'`), read
/// with DuckDB's own cast.
pub(crate) fn interval_seconds(conn: &duckdb::Connection, text: &str) -> duckdb::Result<f64> {
    conn.query_row(
        "SELECT epoch(CAST(? AS INTERVAL))::DOUBLE",
        duckdb::params![text],
        |r| r.get(0),
    )
}
