//! `ai_processors`: one table of processor definitions, one row per (name, version).
//! It holds the processors users define (`batch_define_processor`) and the
//! definition of every version a job was sent with, built-in ones included.
//!
//! - [`define`] stores a user's definition and marks it the current one of its name
//!   (`defined_at`, the latest wins; defining an older text again makes it current).
//! - [`current`] gives the processor `batch_submit` and `batch_results` use for a
//!   name: the built-in one, else the user's current definition.
//! - [`record`] stores the definition of a job's processor version, in the
//!   transaction that records the job (the table exists: `ensure_schema`).
//! - [`resolve`] gives collect the processor of a job's own version:
//!   1. the built-in processor of that name when its version is the job's (and, for
//!      `product-labeling` jobs recorded before versions were hashes, version `1`);
//!   2. else the definition stored here for (name, version), which must hash to it;
//!   3. else the job is not collected: refresh reports why and leaves it as it was.
//! - [`list`] gives `batch_processors()` its rows.
//!
//! The table was called `batch_processors` before the table function took that name;
//! `store::schema` moves an old one's rows here on first use.

use std::borrow::Cow;

use ai_batch_core::processor::{self, Processor, ProcessorError};
use duckdb::{params, Connection, OptionalExt};

use super::{table_exists, StoreError, Tx};

/// Why the processor of a job could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error(
        "the job was sent with processor '{}' version '{}', which is neither built into this \
         ai_batch nor stored in ai_processors; its results are not collected, so that they \
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
    insert_new(conn, p, false)
}

/// Inserts the definition of `p` unless (name, version) is there; `defined`: with
/// `defined_at` now (a user's definition), else NULL (stored because a job used it).
fn insert_new(conn: &Connection, p: &Processor, defined: bool) -> Result<(), duckdb::Error> {
    conn.execute(
        "INSERT INTO ai_processors (name, version, definition, defined_at) \
         SELECT ?, ?, ?, CASE WHEN ? THEN current_timestamp END \
         WHERE NOT EXISTS (SELECT 1 FROM ai_processors WHERE name = ? AND version = ?)",
        params![
            p.name(),
            p.version(),
            p.definition_json(),
            defined,
            p.name(),
            p.version()
        ],
    )?;
    Ok(())
}

/// What [`define`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Defined {
    /// The version that was current before, if the name had one.
    pub previous_version: Option<String>,
}

/// Stores a user's definition and makes it the current one of its name, in one
/// transaction. The caller has made sure the tables exist (`ensure_schema`).
pub fn define(conn: &Connection, p: &Processor) -> Result<Defined, StoreError> {
    if super::is_read_only(conn)? {
        return Err(StoreError::ReadOnly(
            "a definition is stored in its ai_processors table",
        ));
    }
    let tx = Tx::begin(conn)?;
    let previous_version = current_row(conn, p.name())?.map(|(v, _)| v);
    conn.execute(
        "UPDATE ai_processors SET defined_at = current_timestamp WHERE name = ? AND version = ?",
        params![p.name(), p.version()],
    )?;
    insert_new(conn, p, true)?;
    tx.commit()?;
    Ok(Defined { previous_version })
}

/// The (version, definition) of a user processor's current definition.
fn current_row(conn: &Connection, name: &str) -> Result<Option<(String, String)>, StoreError> {
    if !table_exists(conn, "ai_processors")? {
        return Ok(None);
    }
    Ok(conn
        .query_row(
            "SELECT version, definition::VARCHAR FROM ai_processors \
             WHERE name = ? AND defined_at IS NOT NULL \
             ORDER BY defined_at DESC, created_at DESC LIMIT 1",
            params![name],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?)
}

/// The names of the user-defined processors, sorted.
pub fn user_names(conn: &Connection) -> Result<Vec<String>, StoreError> {
    if !table_exists(conn, "ai_processors")? {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare(
        "SELECT DISTINCT name FROM ai_processors WHERE defined_at IS NOT NULL ORDER BY name",
    )?;
    let names = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<Vec<String>, _>>()?;
    Ok(names)
}

/// Why [`current`] found no processor.
#[derive(Debug, thiserror::Error)]
pub enum CurrentError {
    #[error("{0}")]
    Processor(#[from] ProcessorError),
    #[error("{0}")]
    Store(#[from] StoreError),
}

impl From<duckdb::Error> for CurrentError {
    fn from(e: duckdb::Error) -> Self {
        CurrentError::Store(e.into())
    }
}

/// The processor of this name as it is now: the built-in one, else the user's current
/// definition; else the "unknown processor" error naming every known one.
pub fn current(conn: &Connection, name: &str) -> Result<Cow<'static, Processor>, CurrentError> {
    if let Some(p) = processor::processor_by_name(name) {
        return Ok(Cow::Borrowed(p));
    }
    match current_row(conn, name)? {
        Some((version, text)) => Ok(Cow::Owned(Processor::from_stored(name, &version, &text)?)),
        None => {
            let user = user_names(conn)?;
            match processor::require_processor(name, &user) {
                Ok(p) => Ok(Cow::Borrowed(p)),
                Err(e) => Err(e.into()),
            }
        }
    }
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
    let stored: Option<String> = if table_exists(conn, "ai_processors")? {
        conn.query_row(
            "SELECT definition::VARCHAR FROM ai_processors WHERE name = ? AND version = ?",
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

/// One row of `batch_processors()`: a version of a processor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessorRow {
    pub name: String,
    pub version: String,
    /// Whether `batch_submit` uses this version now.
    pub current: bool,
    pub builtin: bool,
    /// The definition, when stored or built in (NULL for versions only analyses name).
    pub definition: Option<String>,
    pub analyses: i64,
    pub jobs: i64,
    pub defined_at: Option<i64>,
}

/// Every processor version: the built-in ones as they are now, every stored version,
/// and versions only jobs or analyses name; with their counts of analyses and jobs.
pub fn list(conn: &Connection) -> Result<Vec<ProcessorRow>, StoreError> {
    let mut rows: Vec<ProcessorRow> = Vec::new();
    let has = |t: &str| table_exists(conn, t);
    let stored = if has("ai_processors")? {
        "SELECT name, version, definition::VARCHAR AS definition, epoch_us(defined_at) AS defined_at \
         FROM ai_processors"
    } else {
        "SELECT NULL::VARCHAR AS name, NULL::VARCHAR AS version, NULL::VARCHAR AS definition, \
                NULL::BIGINT AS defined_at WHERE false"
    };
    let (analyses, jobs) = if has("ai_analyses")? && has("batch_jobs")? {
        (
            "SELECT processor AS name, processor_version AS version, count(*) AS n \
             FROM ai_analyses GROUP BY ALL",
            "SELECT processor AS name, coalesce(processor_version, '') AS version, count(*) AS n \
             FROM batch_jobs GROUP BY ALL",
        )
    } else {
        let none =
            "SELECT NULL::VARCHAR AS name, NULL::VARCHAR AS version, 0::BIGINT AS n WHERE false";
        (none, none)
    };
    let sql = format!(
        "WITH s AS ({stored}), a AS ({analyses}), j AS ({jobs}), \
         k AS (SELECT name, version FROM s UNION SELECT name, version FROM a \
               UNION SELECT name, version FROM j) \
         SELECT k.name, k.version, s.definition, s.defined_at, \
                coalesce(a.n, 0), coalesce(j.n, 0), \
                max(s.defined_at) OVER (PARTITION BY k.name) AS latest \
         FROM k LEFT JOIN s USING (name, version) LEFT JOIN a USING (name, version) \
         LEFT JOIN j USING (name, version) ORDER BY k.name, s.defined_at NULLS FIRST, k.version"
    );
    let mut stmt = conn.prepare(&sql)?;
    let found = stmt
        .query_map([], |r| {
            let defined_at: Option<i64> = r.get(3)?;
            let latest: Option<i64> = r.get(6)?;
            Ok(ProcessorRow {
                name: r.get(0)?,
                version: r.get(1)?,
                definition: r.get(2)?,
                defined_at,
                analyses: r.get(4)?,
                jobs: r.get(5)?,
                current: defined_at.is_some() && defined_at == latest,
                builtin: false,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for name in processor::BUILTIN_NAMES {
        let Some(p) = processor::processor_by_name(name) else {
            continue;
        };
        if !found
            .iter()
            .any(|r| r.name == name && r.version == p.version())
        {
            rows.push(ProcessorRow {
                name: name.to_string(),
                version: p.version().to_string(),
                definition: Some(p.definition_json().to_string()),
                ..ProcessorRow::default()
            });
        }
    }
    rows.extend(found);
    for r in &mut rows {
        if let Some(p) = processor::processor_by_name(&r.name) {
            r.builtin = true;
            r.current = r.version == p.version();
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(rows)
}
