//! The account's queue: the user's `ai_batch_limits` (per provider and model, like
//! `ai_batch_prices`), what the jobs of a model hold enqueued at the provider, and the
//! `queued` writes. The rule that decides is `lifecycle::admit`.

use ai_batch_core::lifecycle::{self, Enqueued, JobStatus, QueueLimit};
use duckdb::{params, Connection, OptionalExt};

use super::StoreError;

/// The user's table of queue limits.
pub(crate) const LIMITS_TABLE: &str = "ai_batch_limits";

/// The limit of `provider` + `model` from `ai_batch_limits` (names compared without
/// case); no table or no row: no limit. `max_enqueued_requests` is optional.
pub(crate) fn queue_limit(
    conn: &Connection,
    provider: &str,
    model: &str,
) -> Result<QueueLimit, StoreError> {
    if !super::table_exists(conn, LIMITS_TABLE)? {
        return Ok(QueueLimit::default());
    }
    let has_requests: bool = conn.query_row(
        "SELECT count(*) > 0 FROM duckdb_columns() WHERE database_name = current_database() \
         AND schema_name = current_schema() AND table_name = ? AND column_name = 'max_enqueued_requests'",
        params![LIMITS_TABLE],
        |r| r.get(0),
    )?;
    let requests = if has_requests {
        "max_enqueued_requests::BIGINT"
    } else {
        "NULL::BIGINT"
    };
    let sql = format!(
        "SELECT min(max_enqueued_tokens::BIGINT), min({requests}) FROM {LIMITS_TABLE} \
         WHERE lower(trim(provider)) = lower(trim(?)) AND lower(trim(model)) = lower(trim(?))"
    );
    let (max_tokens, max_requests): (Option<i64>, Option<i64>) = conn
        .query_row(&sql, params![provider, model], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(|e| {
            StoreError::Clash(format!(
                "{LIMITS_TABLE} could not be read: {e} (it needs provider VARCHAR, model VARCHAR, \
                 max_enqueued_tokens BIGINT and optionally max_enqueued_requests BIGINT)"
            ))
        })?;
    for (name, v) in [
        ("max_enqueued_tokens", max_tokens),
        ("max_enqueued_requests", max_requests),
    ] {
        if let Some(n) = v.filter(|n| *n < 1) {
            return Err(StoreError::Clash(format!(
                "{LIMITS_TABLE}: {name} of {provider} {model} is {n}; it must be at least 1 \
                 (NULL for no limit)"
            )));
        }
    }
    Ok(QueueLimit {
        max_tokens,
        max_requests,
    })
}

/// What the jobs of `provider` + `model` hold at the provider's queue: every job not
/// collected whose status is neither terminal nor `queued` (a `created` or `uploaded`
/// job is about to be there), but for `except` (the job being decided).
pub(crate) fn enqueued(
    conn: &Connection,
    provider: &str,
    model: &str,
    except: Option<i64>,
) -> duckdb::Result<Enqueued> {
    let not_held = lifecycle::sql_not_enqueued_list();
    conn.query_row(
        &format!(
            "SELECT coalesce(sum(estimated_input_tokens), 0)::BIGINT, \
                    coalesce(sum(issues_count), 0)::BIGINT, count(*)::BIGINT \
             FROM batch_jobs WHERE provider = ? AND model = ? AND collected_at IS NULL \
               AND status NOT IN ({not_held}) AND id IS DISTINCT FROM ?"
        ),
        params![provider, model, except],
        |r| {
            Ok(Enqueued {
                tokens: r.get(0)?,
                requests: r.get(1)?,
                jobs: r.get(2)?,
            })
        },
    )
}

/// How many `queued` jobs of `provider` + `model` wait, all or only those older than
/// job `before` (oldest first: a job waits behind them).
pub(crate) fn queued_count(
    conn: &Connection,
    provider: &str,
    model: &str,
    before: Option<i64>,
) -> duckdb::Result<i64> {
    conn.query_row(
        "SELECT count(*) FROM batch_jobs WHERE provider = ? AND model = ? AND status = ? \
         AND collected_at IS NULL AND (?::BIGINT IS NULL OR id < ?::BIGINT)",
        params![provider, model, JobStatus::Queued.as_str(), before, before],
        |r| r.get(0),
    )
}

/// A queued job as the send decision needs it.
#[derive(Debug, Clone)]
pub(crate) struct QueuedJob {
    pub provider: String,
    pub model: String,
    /// Its own size.
    pub size: Enqueued,
    /// Creates the provider refused for its queue limit.
    pub refusals: i64,
    /// When it last went `queued` (Unix ms).
    pub queued_ms: Option<i64>,
    /// Whether a job of the same provider and model ended after that.
    pub ended_since: bool,
}

/// The [`QueuedJob`] of `job_pk`, if it is still `queued` and not collected.
pub(crate) fn queued_job(conn: &Connection, job_pk: i64) -> duckdb::Result<Option<QueuedJob>> {
    let terminal = lifecycle::sql_terminal_list();
    conn.query_row(
        &format!(
            "SELECT j.provider, j.model, coalesce(j.estimated_input_tokens, 0), j.issues_count, \
                    coalesce(j.limit_refusals, 0), epoch_ms(j.queued_at), \
                    EXISTS (SELECT 1 FROM batch_jobs o WHERE o.provider = j.provider \
                        AND o.model = j.model AND o.id <> j.id AND o.status IN ({terminal}) \
                        AND o.updated_at > coalesce(j.queued_at, j.created_at)) \
             FROM batch_jobs j WHERE j.id = ? AND j.status = ? AND j.collected_at IS NULL"
        ),
        params![job_pk, JobStatus::Queued.as_str()],
        |r| {
            Ok(QueuedJob {
                provider: r.get(0)?,
                model: r.get(1)?,
                size: Enqueued {
                    tokens: r.get(2)?,
                    requests: r.get(3)?,
                    jobs: 1,
                },
                refusals: r.get(4)?,
                queued_ms: r.get(5)?,
                ended_since: r.get(6)?,
            })
        },
    )
    .optional()
}

/// Puts a job (its request file uploaded as `file_id`) in `queued`, saying why in
/// `error_message`. `refused`: the provider refused it for its queue limit, so its
/// batch (if one was created and failed) is forgotten, the refusal counted, and the
/// provider's counts cleared. Items are not touched: they stay `pending`.
pub(crate) fn job_queued(
    conn: &Connection,
    job_pk: i64,
    file_id: &str,
    why: &str,
    refused: bool,
) -> duckdb::Result<()> {
    conn.execute(
        "UPDATE batch_jobs SET status = ?, input_file_id = ?, error_message = ?, \
                queued_at = current_timestamp, updated_at = current_timestamp, \
                limit_refusals = coalesce(limit_refusals, 0) + CASE WHEN ? THEN 1 ELSE 0 END, \
                provider_batch_id = CASE WHEN ? THEN NULL ELSE provider_batch_id END, \
                output_file_id = CASE WHEN ? THEN NULL ELSE output_file_id END, \
                error_file_id = CASE WHEN ? THEN NULL ELSE error_file_id END, \
                provider_completed = CASE WHEN ? THEN NULL ELSE provider_completed END, \
                provider_failed = CASE WHEN ? THEN NULL ELSE provider_failed END, \
                provider_total = CASE WHEN ? THEN NULL ELSE provider_total END, \
                progress_at = CASE WHEN ? THEN NULL ELSE progress_at END, \
                submitted_at = CASE WHEN ? THEN NULL ELSE submitted_at END \
         WHERE id = ? AND collected_at IS NULL",
        params![
            JobStatus::Queued.as_str(),
            file_id,
            why,
            refused,
            refused,
            refused,
            refused,
            refused,
            refused,
            refused,
            refused,
            refused,
            job_pk
        ],
    )?;
    Ok(())
}
