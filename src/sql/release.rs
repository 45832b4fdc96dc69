//! `batch_release()`: gives the extension's connections back now, so the database
//! can close even when automatic release is off (`AI_BATCH_AUTO_RELEASE=0`).
//! Later `batch_*` calls on this database instance fail with a clear error.

use std::sync::Arc;

use duckdb::vtab::BindInfo;

use super::{Cell, ColType, SqlError, SqlTable};
use crate::runtime::Runtime;

/// The `batch_release` table function.
pub struct Release;

impl SqlTable for Release {
    const NAME: &'static str = "batch_release";
    type Params = ();

    fn columns() -> Vec<(&'static str, ColType)> {
        vec![("released", ColType::Bool)]
    }

    fn parse(_: &BindInfo) -> Result<(), SqlError> {
        Ok(())
    }

    fn run(rt: &Arc<Runtime>, _: &()) -> Result<Vec<Vec<Cell>>, SqlError> {
        rt.release_now();
        Ok(vec![vec![Cell::Bool(true)]])
    }
}
