//! What a submit reads and writes on the tracking tables: which of the selected issues
//! to take ([`classify`]) and one job with its pending items ([`record_job`]). Plain
//! rows in, plain results out; the statuses come from `ai_batch_core::lifecycle`.

use std::collections::HashMap;

use ai_batch_core::lifecycle::{ItemStatus, JobStatus};
use ai_batch_core::processor::Processor;
use ai_batch_core::requests::custom_id;
use duckdb::{params, Connection};

/// How a selection broke down (what [`classify`] found).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SelectionSummary {
    /// Distinct non-NULL ids the selection produced.
    pub selected: i64,
    /// Ids that are not in `issues`.
    pub unknown_ids: i64,
    /// Some of the unknown ids, for the message.
    pub unknown_sample: Vec<i64>,
    /// Known ids that the filters (org, repo, state) left out.
    pub filtered_out: i64,
    /// Skipped: this processor already analysed them (and `reprocess` is off).
    pub skipped_analysed: i64,
    /// Skipped: an item of this processor is still pending in another job.
    pub skipped_active: i64,
    /// Left for later by `max_issues`.
    pub over_max: i64,
    /// Taken into jobs.
    pub to_submit: i64,
}

/// What [`classify`] needs to know about the request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClassifyRequest<'a> {
    pub org: Option<&'a str>,
    pub repo: Option<&'a str>,
    pub state: Option<&'a str>,
    pub processor: &'a str,
    pub missing_analysis: bool,
    /// `stale := true`: the processor's current version. An issue then counts as
    /// analysed only when its latest analysis is of this version and not older than
    /// the issue's `updated_at`.
    pub stale_version: Option<&'a str>,
    pub reprocess: bool,
    pub max_issues: Option<i64>,
    /// Whether the tracking tables exist (a dry run does not create them).
    pub tracked: bool,
}

/// Classifies the ids of the temp table `ai_batch_sel_raw(id)` and fills the temp
/// table `ai_batch_todo(id)` with what to submit.
pub(crate) fn classify(
    conn: &Connection,
    req: &ClassifyRequest<'_>,
) -> duckdb::Result<SelectionSummary> {
    let pending = ItemStatus::Pending.as_str();
    let (analysed, active) = if req.tracked {
        (
            if req.stale_version.is_some() {
                // Fresh: the latest analysis is of version $5 and not older than the
                // issue's updated_at (when the issues table keeps one).
                let not_older = if issues_have_updated_at(conn)? {
                    "AND (i.updated_at IS NULL OR a.created_at >= i.updated_at)"
                } else {
                    ""
                };
                format!(
                    "coalesce((SELECT a.processor_version = $5::VARCHAR {not_older} \
                     FROM ai_analyses a WHERE a.issue_id = r.id AND a.processor = $4 \
                     ORDER BY a.created_at DESC, a.id DESC LIMIT 1), false)"
                )
            } else {
                "($5::VARCHAR IS NULL AND EXISTS (SELECT 1 FROM ai_analyses a \
                  WHERE a.issue_id = r.id AND a.processor = $4))"
                    .to_string()
            },
            format!(
                "EXISTS (SELECT 1 FROM batch_items b JOIN batch_jobs j ON j.id = b.batch_job_id \
                 WHERE b.issue_id = r.id AND j.processor = $4 AND b.status = '{pending}')"
            ),
        )
    } else {
        // No tracking tables yet (dry run): nothing analysed, nothing active. $4 and $5
        // are still referenced so that the parameter count does not change.
        let none = "($4::VARCHAR IS NULL AND $5::VARCHAR IS NULL)".to_string();
        (none.clone(), none)
    };
    let sql = format!(
        "CREATE OR REPLACE TEMP TABLE ai_batch_sel AS \
         WITH r AS (SELECT DISTINCT id FROM ai_batch_sel_raw WHERE id IS NOT NULL) \
         SELECT r.id, i.id IS NULL AS unknown, \
                (i.id IS NOT NULL AND ($1::VARCHAR IS NULL OR i.org = $1::VARCHAR) \
                                  AND ($2::VARCHAR IS NULL OR i.repo = $2::VARCHAR) \
                                  AND ($3::VARCHAR IS NULL OR i.state = $3::VARCHAR)) AS matches, \
                {analysed} AS analysed, {active} AS active \
         FROM r LEFT JOIN issues i ON i.id = r.id"
    );
    conn.execute(
        &sql,
        params![
            req.org,
            req.repo,
            req.state,
            req.processor,
            req.stale_version
        ],
    )?;
    // missing_analysis filters analysed issues out (not "skipped"); reprocess lets
    // them through; an issue in an active job is never submitted twice.
    let (skip_analysed, drop_analysed) = if req.missing_analysis {
        (false, true)
    } else {
        (!req.reprocess, false)
    };
    let (selected, unknown, filtered_out, sk_analysed, sk_active, filtered_analysed, eligible): (
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
        i64,
    ) = conn.query_row(
        "SELECT count(*), \
                count(*) FILTER (WHERE unknown), \
                count(*) FILTER (WHERE NOT unknown AND NOT matches), \
                count(*) FILTER (WHERE matches AND analysed AND $1 AND NOT active), \
                count(*) FILTER (WHERE matches AND active), \
                count(*) FILTER (WHERE matches AND analysed AND $2 AND NOT active), \
                count(*) FILTER (WHERE matches AND NOT active AND NOT (analysed AND ($1 OR $2))) \
         FROM ai_batch_sel",
        params![skip_analysed, drop_analysed],
        |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ))
        },
    )?;
    let take = req.max_issues.map(|m| m.min(eligible)).unwrap_or(eligible);
    conn.execute(
        "CREATE OR REPLACE TEMP TABLE ai_batch_todo AS \
         SELECT id FROM ai_batch_sel \
         WHERE matches AND NOT active AND NOT (analysed AND ($1 OR $2)) \
         ORDER BY id LIMIT $3",
        params![skip_analysed, drop_analysed, take],
    )?;
    let unknown_sample: Vec<i64> = {
        let mut stmt =
            conn.prepare("SELECT id FROM ai_batch_sel WHERE unknown ORDER BY id LIMIT 5")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    Ok(SelectionSummary {
        selected,
        unknown_ids: unknown,
        unknown_sample,
        filtered_out: filtered_out + filtered_analysed,
        skipped_analysed: sk_analysed,
        skipped_active: sk_active,
        over_max: eligible - take,
        to_submit: take,
    })
}

/// Whether `issues` has an `updated_at` column (sql/schema.sql's does).
fn issues_have_updated_at(conn: &Connection) -> duckdb::Result<bool> {
    conn.query_row(
        "SELECT count(*) > 0 FROM duckdb_columns() WHERE database_name = current_database() \
           AND schema_name = current_schema() AND table_name = 'issues' \
           AND column_name = 'updated_at'",
        [],
        |r| r.get(0),
    )
}

/// A job to record (status `created`) with its items (`pending`).
#[derive(Debug, Clone)]
pub(crate) struct NewJob<'a> {
    pub job_id: &'a str,
    pub provider: &'a str,
    /// The processor, whose definition is stored with its version (`ai_processors`).
    pub processor: &'a Processor,
    pub model: &'a str,
    /// The selection-level skipped count (on the first job of a submit only).
    pub skipped: i64,
    pub cost_estimate: Option<f64>,
    pub estimated_input_tokens: i64,
    pub estimated_output_tokens: i64,
    /// How the input tokens were estimated (`TokenEstimate::label`).
    pub estimate_method: &'a str,
    /// What is kept in `selection_query`.
    pub selection: &'a str,
    /// The request options, as JSON.
    pub options: &'a str,
    pub base_url: &'a str,
    pub retry_of: Option<&'a str>,
    /// The issues, in line order, and their input tokens.
    pub issue_ids: &'a [i64],
    pub tokens: &'a [u64],
    /// Attempts each issue already had (a retry); the new item gets one more.
    pub prior_attempts: &'a HashMap<i64, i64>,
}

/// Commits one job and its pending items in one transaction. Returns the job's primary
/// key.
pub(crate) fn record_job(conn: &Connection, job: &NewJob<'_>) -> duckdb::Result<i64> {
    super::in_transaction(conn, || -> duckdb::Result<i64> {
        super::processors::record(conn, job.processor)?;
        let pk: i64 = conn.query_row(
            "INSERT INTO batch_jobs (job_id, provider, processor, processor_version, model, status, \
                issues_count, skipped_count, cost_estimate, estimated_input_tokens, \
                estimated_output_tokens, estimate_method, selection_query, options, base_url, \
                retry_of, updated_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, current_timestamp) RETURNING id",
            params![
                job.job_id,
                job.provider,
                job.processor.name(),
                job.processor.version(),
                job.model,
                JobStatus::Created.as_str(),
                job.issue_ids.len() as i64,
                job.skipped,
                job.cost_estimate,
                job.estimated_input_tokens,
                job.estimated_output_tokens,
                job.estimate_method,
                job.selection,
                job.options,
                job.base_url,
                job.retry_of,
            ],
            |r| r.get(0),
        )?;
        let mut app = conn.appender_with_columns(
            "batch_items",
            &[
                "batch_job_id",
                "issue_id",
                "custom_id",
                "status",
                "estimated_input_tokens",
                "attempts",
            ],
        )?;
        let pending = ItemStatus::Pending.as_str();
        for (id, tokens) in job.issue_ids.iter().zip(job.tokens) {
            let attempts = job.prior_attempts.get(id).copied().unwrap_or(0) + 1;
            app.append_row(params![
                pk,
                id,
                custom_id(job.job_id, *id),
                pending,
                *tokens as i64,
                attempts
            ])?;
        }
        app.flush()?;
        Ok(pk)
    })
}
