//! Why a submit failed.

use ai_batch_core::provider::ProviderError;

use crate::build::BuildError;
use crate::store;
use crate::store::prices::PriceError;

/// Why a submit failed. Messages say what failed and what to do.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("{0}")]
    Invalid(String),
    #[error("selection must be a single SELECT (or WITH / VALUES / FROM) query: {0}")]
    BadSelection(String),
    #[error("{0}")]
    SelectionCalls(crate::guard::Refused),
    #[error("{key_env} is not set (export it in the environment of the process that runs DuckDB; it is never read from SQL)")]
    MissingKey { key_env: &'static str },
    #[error("no issues table in this database (create it with sql/schema.sql and import issues with sql/import_issues.sql)")]
    NoIssues,
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("{0}")]
    Prices(#[from] PriceError),
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
    #[error("could not build the requests: {0}")]
    Build(String),
    #[error("{0}")]
    Building(#[from] BuildError),
    #[error("could not write the request file: {0}")]
    Spool(String),
    #[error("{0}")]
    Provider(#[from] ProviderError),
    #[error("{0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    /// The build failed after earlier jobs of the same submit were committed and sent.
    #[error("{error}; the job(s) recorded before the failure were sent as usual: {jobs} (see batch_history(); running the same batch_submit again submits only the issues not in them)")]
    PartlySent {
        error: Box<SubmitError>,
        jobs: String,
    },
}
