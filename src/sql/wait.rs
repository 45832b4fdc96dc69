//! `batch_wait(job_id := ..., timeout := INTERVAL '10 minutes')`: polls until the jobs
//! are collected or the timeout passes; returns what `batch_refresh` returns.

use std::sync::Arc;
use std::time::Duration;

use duckdb::core::{LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::BindInfo;

use super::{fail, named_text, ty, Col, SqlError, SqlTable};
use crate::refresh::RefreshRow;
use crate::runtime::Runtime;

/// The `batch_wait` table function.
pub struct Wait;

/// What `timeout :=` is when it is not given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// The parameters of `batch_wait`.
pub struct WaitParams {
    job_id: Option<String>,
    /// As given (an INTERVAL arrives as its text); read in `run`.
    timeout: Option<String>,
}

impl SqlTable for Wait {
    const NAME: &'static str = "batch_wait";
    type Params = WaitParams;
    type Row = RefreshRow;

    fn columns() -> Vec<Col<RefreshRow>> {
        super::refresh::columns()
    }

    fn named_parameters() -> Vec<(&'static str, LogicalTypeHandle)> {
        vec![
            ("job_id", ty(LogicalTypeId::Varchar)),
            ("timeout", ty(LogicalTypeId::Varchar)),
        ]
    }

    fn parse(bind: &BindInfo) -> Result<WaitParams, SqlError> {
        Ok(WaitParams {
            job_id: named_text(bind, "job_id")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            timeout: named_text(bind, "timeout"),
        })
    }

    fn run(rt: &Arc<Runtime>, p: &WaitParams) -> Result<Vec<RefreshRow>, SqlError> {
        let timeout = match &p.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => timeout_of(rt, t)?,
        };
        crate::refresh::wait::wait(rt, p.job_id.as_deref(), timeout)
            .map_err(|e| fail(Self::NAME, e))
    }
}

/// The timeout given as an INTERVAL (its text, read by DuckDB's own cast) or as a
/// number of seconds.
fn timeout_of(rt: &Arc<Runtime>, text: &str) -> Result<Duration, SqlError> {
    let bad = |why: String| {
        fail(
            Wait::NAME,
            format!(
                "timeout must be an INTERVAL of 0 or more (e.g. INTERVAL '10 minutes') or a \
                 number of seconds, got '{}'{why}",
                ai_batch_core::text::echo(text)
            ),
        )
    };
    let secs = match text.trim().parse::<f64>() {
        Ok(s) => s,
        Err(_) => {
            let conn = rt.lease().map_err(|e| fail(Wait::NAME, e))?;
            crate::store::interval_seconds(&conn, text).map_err(|e| bad(format!(" ({e})")))?
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(bad(String::new()));
    }
    Ok(Duration::from_secs_f64(secs.min(30.0 * 86_400.0)))
}
