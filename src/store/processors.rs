//! `batch_processors`: the definition of each processor version jobs were sent with,
//! and how refresh finds the one a job needs.
//!
//! A job records its processor's name and version (a hash of the definition, see
//! `ai_batch_core::processor`). When it is recorded, the definition is stored here
//! once per (name, version), in the same transaction. At collect time the job's
//! results are validated against the processor of its own version:
//! 1. the built-in processor of that name when its version is the job's (and, for
//!    `product-labeling` jobs recorded before versions were hashes, version `1`);
//! 2. else the definition stored here for (name, version), which must hash to it;
//! 3. else the job is not collected: refresh reports why and leaves it as it was.
//!
//! The table is created with the first job recorded (a database from before it keeps
//! working without it). Issue 13's user-defined processors will add their
//! definitions here too.

use std::borrow::Cow;

use ai_batch_core::processor::{self, Processor, ProcessorError};
use duckdb::{params, Connection, OptionalExt};

/// The table of processor definitions. Idempotent.
pub const PROCESSORS_DDL: &str = r#"
CREATE TABLE IF NOT EXISTS batch_processors (
    name                     VARCHAR NOT NULL,          -- 'product-labeling'
    version                  VARCHAR NOT NULL,          -- first 12 hex digits of sha256(definition)
    definition               JSON NOT NULL,             -- the processor as data, canonical JSON
    created_at               TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (name, version)
);
"#;

/// Why the processor of a job could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "the job was sent with processor '{}' version '{}', which is neither built into this \
         ai_batch nor stored in batch_processors; its results are not collected, so that they \
         are not checked against another definition (collect it with the ai_batch build that \
         sent it)",
        ai_batch_core::text::echo(name),
        ai_batch_core::text::echo(version)
    )]
    Unknown { name: String, version: String },
    #[error("the job's processor cannot be used: {0}")]
    Processor(#[from] ProcessorError),
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
}

/// Stores the definition of `p` unless it is stored already. Runs inside the caller's
/// transaction (the one that records the job).
pub fn record(conn: &Connection, p: &Processor) -> Result<(), duckdb::Error> {
    conn.execute_batch(PROCESSORS_DDL)?;
    conn.execute(
        "INSERT INTO batch_processors (name, version, definition) SELECT ?, ?, ? \
         WHERE NOT EXISTS (SELECT 1 FROM batch_processors WHERE name = ? AND version = ?)",
        params![
            p.name(),
            p.version(),
            p.definition_json(),
            p.name(),
            p.version()
        ],
    )?;
    Ok(())
}

/// The processor a job with this processor name and version was sent with (see the
/// module docs for the order).
pub fn resolve(
    conn: &Connection,
    name: &str,
    version: &str,
) -> Result<Cow<'static, Processor>, ResolveError> {
    if let Some(p) = processor::builtin_for_job(name, version) {
        return Ok(Cow::Borrowed(p));
    }
    let stored: Option<String> = if super::table_exists(conn, "batch_processors")? {
        conn.query_row(
            "SELECT definition::VARCHAR FROM batch_processors WHERE name = ? AND version = ?",
            params![name, version],
            |r| r.get(0),
        )
        .optional()?
    } else {
        None
    };
    match stored {
        Some(text) => Ok(Cow::Owned(Processor::from_stored(name, version, &text)?)),
        None => Err(ResolveError::Unknown {
            name: name.to_string(),
            version: version.to_string(),
        }),
    }
}
