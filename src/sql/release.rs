//! `batch_release()`: gives the extension's connections back now, so the database
//! can close even when automatic release is off (`AI_BATCH_AUTO_RELEASE=0`).
//! Later `batch_*` calls on this database instance fail with a clear error.

use std::sync::Arc;

use duckdb::vtab::BindInfo;

use super::{columns, Col, SqlError, SqlTable};
use crate::runtime::Runtime;

/// The `batch_release` table function.
pub struct Release;

impl SqlTable for Release {
    const NAME: &'static str = "batch_release";
    type Params = ();
    type Row = bool;

    fn columns() -> Vec<Col<bool>> {
        columns!(bool { "released": Bool = |r| *r })
    }

    fn parse(_: &BindInfo) -> Result<(), SqlError> {
        Ok(())
    }

    fn run(rt: &Arc<Runtime>, _: &()) -> Result<Vec<bool>, SqlError> {
        rt.release_now();
        Ok(vec![true])
    }
}
