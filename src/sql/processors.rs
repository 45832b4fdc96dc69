//! `batch_define_processor(name, system_prompt := ..., user_template := ...,
//! response_schema := ..., ...)`: creates or replaces a user-defined processor; and
//! `batch_processors()`: every processor and version, with its counts.

use std::sync::Arc;

use ai_batch_core::processor::{self, BudgetOverrides, NewProcessor};
use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::BindInfo;
use serde_json::Value;

use super::{columns, fail, named_i64, named_text, ty, value_text, Col, SqlError, SqlTable};
use crate::runtime::Runtime;
use crate::store::{self, processors::ProcessorRow};

/// The `batch_define_processor` table function.
pub struct Define;

/// One row of `batch_define_processor`: what became of the definition.
#[derive(Debug, Clone, PartialEq)]
pub struct DefineRow {
    pub name: String,
    pub version: String,
    pub previous_version: Option<String>,
    /// `defined` (a new name), `redefined` (a new version), `unchanged`.
    pub status: &'static str,
    pub message: String,
}

/// The named parameters that are text.
const TEXT_PARAMS: [&str; 4] = ["system_prompt", "user_template", "response_schema", "model"];
/// The named parameters that are numbers: the output guess, then the budgets.
const INT_PARAMS: [&str; 7] = [
    "output_tokens",
    "title_chars",
    "body_chars",
    "comment_chars",
    "comments_total_chars",
    "max_comments",
    "short_field_chars",
];

impl SqlTable for Define {
    const NAME: &'static str = "batch_define_processor";
    type Params = NewProcessor;
    type Row = DefineRow;

    fn columns() -> Vec<Col<DefineRow>> {
        columns!(DefineRow {
            "name": Varchar = |r| r.name.clone(),
            "version": Varchar = |r| r.version.clone(),
            "previous_version": Varchar = |r| r.previous_version.clone(),
            "status": Varchar = |r| r.status,
            "message": Varchar = |r| r.message.clone(),
        })
    }

    fn parameters() -> Vec<LogicalTypeHandle> {
        vec![ty(LogicalTypeId::Varchar)]
    }

    fn named_parameters() -> Vec<(&'static str, LogicalTypeHandle)> {
        TEXT_PARAMS
            .iter()
            .map(|n| (*n, ty(LogicalTypeId::Varchar)))
            .chain(INT_PARAMS.iter().map(|n| (*n, ty(LogicalTypeId::Bigint))))
            .collect()
    }

    fn parse(bind: &BindInfo) -> Result<NewProcessor, SqlError> {
        let name = value_text(&bind.get_parameter(0))
            .map(|s| s.trim().to_string())
            .ok_or_else(|| fail(Self::NAME, "the name must not be NULL (e.g. 'triage-kind')"))?;
        let n = NewProcessor {
            name,
            system_prompt: named_text(bind, "system_prompt"),
            user_template: named_text(bind, "user_template"),
            response_schema: named_text(bind, "response_schema"),
            output_tokens: named_i64(bind, "output_tokens"),
            model: named_text(bind, "model"),
            budgets: BudgetOverrides {
                title_chars: named_i64(bind, "title_chars"),
                body_chars: named_i64(bind, "body_chars"),
                comment_chars: named_i64(bind, "comment_chars"),
                comments_total_chars: named_i64(bind, "comments_total_chars"),
                max_comments: named_i64(bind, "max_comments"),
                short_field_chars: named_i64(bind, "short_field_chars"),
            },
        };
        // Every check that needs no database, at bind: a bad definition is refused
        // before anything runs.
        processor::define(&n).map_err(|e| fail(Self::NAME, e))?;
        Ok(n)
    }

    fn run(rt: &Arc<Runtime>, n: &NewProcessor) -> Result<Vec<DefineRow>, SqlError> {
        let p = processor::define(n).map_err(|e| fail(Self::NAME, e))?;
        let conn = rt.lease().map_err(|e| fail(Self::NAME, e))?;
        store::check_tables(&conn, store::Reads::Tracking).map_err(|e| fail(Self::NAME, e))?;
        store::ensure_schema(&conn).map_err(|e| fail(Self::NAME, e))?;
        let d = store::processors::define(&conn, &p).map_err(|e| fail(Self::NAME, e))?;
        let (status, message) = match &d.previous_version {
            None => (
                "defined",
                format!(
                    "processor '{}' defined; run it with batch_submit('{}', ...)",
                    p.name(),
                    p.name()
                ),
            ),
            Some(v) if v == p.version() => (
                "unchanged",
                "the definition is the current one already".to_string(),
            ),
            Some(v) => (
                "redefined",
                format!(
                    "new version (was {v}); analyses of older versions stay, and \
                     batch_submit(..., stale := true) takes their issues again"
                ),
            ),
        };
        Ok(vec![DefineRow {
            name: p.name().to_string(),
            version: p.version().to_string(),
            previous_version: d.previous_version,
            status,
            message,
        }])
    }
}

/// The `batch_processors` table function.
pub struct List;

/// One row of `batch_processors()`.
#[derive(Debug, Clone, PartialEq)]
pub struct ListRow {
    row: ProcessorRow,
    /// The stored definition, parsed (NULL when not known).
    def: Option<Value>,
}

impl ListRow {
    fn text(&self, key: &str) -> Option<String> {
        self.def
            .as_ref()
            .and_then(|d| d.get(key))
            .and_then(Value::as_str)
            .map(str::to_string)
    }
}

impl SqlTable for List {
    const NAME: &'static str = "batch_processors";
    type Params = ();
    type Row = ListRow;

    fn columns() -> Vec<Col<ListRow>> {
        columns!(ListRow {
            "name": Varchar = |r| r.row.name.clone(),
            "version": Varchar = |r| r.row.version.clone(),
            "current": Bool = |r| r.row.current,
            "builtin": Bool = |r| r.row.builtin,
            "model": Varchar = |r| r.text("model"),
            "output_tokens": BigInt = |r| r.def.as_ref().and_then(|d| d["output_tokens"].as_i64()),
            "response_schema": Varchar = |r| r.def.as_ref().map(|d| d["response_schema"].to_string()),
            "system_prompt": Varchar = |r| r.text("system_prompt"),
            "user_template": Varchar = |r| r.text("user_template"),
            "analyses": BigInt = |r| r.row.analyses,
            "jobs": BigInt = |r| r.row.jobs,
            "defined_at": TimestampTz = |r| r.row.defined_at,
        })
    }

    fn parse(_: &BindInfo) -> Result<(), SqlError> {
        Ok(())
    }

    fn run(rt: &Arc<Runtime>, _: &()) -> Result<Vec<ListRow>, SqlError> {
        let conn = rt.lease().map_err(|e| fail(Self::NAME, e))?;
        store::check_tables(&conn, store::Reads::Tracking).map_err(|e| fail(Self::NAME, e))?;
        store::ensure_schema(&conn).map_err(|e| fail(Self::NAME, e))?;
        let rows = store::processors::list(&conn).map_err(|e| fail(Self::NAME, e))?;
        Ok(rows
            .into_iter()
            .map(|row| ListRow {
                def: row
                    .definition
                    .as_deref()
                    .and_then(|t| serde_json::from_str(t).ok()),
                row,
            })
            .collect())
    }
}
