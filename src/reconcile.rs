//! A create whose answer never came back: finding its batch, and deciding when it can
//! no longer land, so that a job is never created twice at the provider.
//!
//! The rule (README, `batch_refresh`, state `uploaded`; its pure decision for a job not
//! found, rules 3-5, is `lifecycle::reconcile_step`):
//!
//! 1. `submitted_at` is written just before each create attempt is sent (submit and
//!    refresh alike). A job `uploaded` with no `submitted_at` never had a create sent.
//! 2. Refresh lists the provider's batches (newest first, back to the job's creation)
//!    and takes the one whose `metadata.ai_batch_job_id` is the job id, or whose
//!    `input_file_id` is the job's uploaded file (a batch is created from exactly one
//!    file, and each of ours belongs to one job; some gateways list batches without
//!    metadata). Found: adopted.
//! 3. Not found, no create ever sent: created now, once.
//! 4. Not found, a create sent less than the settle window ago ([`SETTLE_FACTOR`] times
//!    the create timeout, [`CREATE_TIMEOUT_ENV`]): it may still land (the provider can
//!    answer after the client gave up). Nothing is created; the job stays `uploaded`
//!    and the row says when it is decided.
//! 5. Not found after the window: the job's input file is deleted at the provider (a
//!    create of a deleted file is refused, so a create still in flight can no longer
//!    make a batch), the batches are listed again (one that landed meanwhile is
//!    adopted), and only then is the job concluded `failed` (`not_created`): nothing
//!    was billed, `batch_retry` sends its issues again under a new job and file.

use std::time::Duration;

use ai_batch_core::lifecycle::{after_window, code, reconcile_step, ReconcileStep};
use ai_batch_core::provider::{BatchView, ClientOptions, JobLookup, Provider, ProviderError};
use duckdb::Connection;

use crate::store::{self, TrackedJob};

/// Why a lookup could not decide: the provider failed, or the database did (reading
/// which batches other jobs own).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ReconcileError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error(transparent)]
    Db(#[from] duckdb::Error),
}

/// Seconds one create attempt may take before the client gives up (default 60).
/// Tests shorten it; the settle window follows it.
pub(crate) const CREATE_TIMEOUT_ENV: &str = "AI_BATCH_CREATE_TIMEOUT_SECS";

/// A create not seen at the provider this many create timeouts after it was sent is
/// taken as one that may no longer land on its own (the input file is then deleted so
/// that it cannot).
pub(crate) const SETTLE_FACTOR: u32 = 3;

/// The client options, with the create timeout from [`CREATE_TIMEOUT_ENV`] if set.
pub(crate) fn client_options() -> Result<ClientOptions, String> {
    let mut opts = ClientOptions::default();
    let raw = std::env::var(CREATE_TIMEOUT_ENV).unwrap_or_default();
    if raw.trim().is_empty() {
        return Ok(opts);
    }
    let secs = raw
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| (0.1..=3600.0).contains(s))
        .ok_or_else(|| {
            let shown: String = raw.chars().take(40).collect();
            format!(
                "{CREATE_TIMEOUT_ENV} must be a number of seconds between 0.1 and 3600, got '{shown}' \
                 (unset it for the default of 60)"
            )
        })?;
    opts.create_timeout = Duration::from_secs_f64(secs);
    Ok(opts)
}

/// How long after a create was sent it may still land on its own.
pub(crate) fn settle_window(opts: &ClientOptions) -> Duration {
    opts.create_timeout * SETTLE_FACTOR
}

/// Sends the create of a job's batch from its uploaded file, writing `submitted_at`
/// just before each attempt (an attempt whose time cannot be written is not sent).
pub(crate) fn create_batch(
    conn: &Connection,
    client: &dyn Provider,
    job_pk: i64,
    job_id: &str,
    input_file_id: &str,
) -> Result<BatchView, ProviderError> {
    client.create(input_file_id, job_id, &mut || {
        store::create_sent(conn, job_pk)
            .map_err(|e| format!("could not record the send time in batch_jobs: {e}"))
    })
}

pub(crate) fn delete_input(client: &dyn Provider, file_id: &str) -> Result<(), ProviderError> {
    match client.delete_input(file_id) {
        Ok(()) => Ok(()),
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}

/// The batch of a job whose create may have been lost (see `JobLookup`: by job id and
/// input file at OpenAI, by size and time among the batches no other job of this
/// database owns at Anthropic). The list is not read further back than an hour before
/// the job was recorded.
pub(crate) fn find_batch(
    conn: &Connection,
    client: &dyn Provider,
    job: &TrackedJob,
) -> Result<Option<BatchView>, ReconcileError> {
    let others = store::batch_ids_of_other_jobs(conn, &job.job_id)?;
    let owned = |id: &str| others.contains(id);
    Ok(client.find_for_job(&JobLookup {
        job_id: &job.job_id,
        input_file_id: job.input_file_id.as_deref(),
        created_after: job.created_epoch.map(|t| t - 3600),
        requests: job.requests,
        owned: &owned,
    })?)
}

/// Seals a job whose batch the caller's lookup did not show: deletes its input file at
/// the provider (a create naming a deleted file is refused, so one still in flight can
/// no longer make a batch), then looks once more for a batch that landed meanwhile. A
/// provider that cannot fence a create (Anthropic) has its staged copy removed and is
/// not looked at again: nothing was fenced off, and the caller, past the window in
/// which a create could land, has just looked.
pub(crate) fn seal(
    conn: &Connection,
    client: &dyn Provider,
    job: &TrackedJob,
    input_file_id: &str,
) -> Result<Option<BatchView>, ReconcileError> {
    delete_input(client, input_file_id)?;
    if !client.fences_creates() {
        return Ok(None);
    }
    find_batch(conn, client, job)
}

/// What sealing did, for messages.
pub(crate) fn sealed_text(client: &dyn Provider, file: &str) -> String {
    if client.fences_creates() {
        format!(
            "its uploaded request file {file} was deleted at the provider, so a create still in \
             flight can no longer make a batch"
        )
    } else {
        format!(
            "{} cannot stop a create in flight, so none was waited for longer than the window \
             ({CREATE_TIMEOUT_ENV} sets it); its staged request file {file} was removed",
            client.name()
        )
    }
}

/// Deletes the input file of a create that surely made no batch, and says so.
pub(crate) fn delete_unused_input(client: &dyn Provider, file_id: &str) -> String {
    match delete_input(client, file_id) {
        Ok(()) => format!("its uploaded request file {file_id} was deleted at the provider"),
        Err(e) => format!(
            "its uploaded request file {file_id} could not be deleted at the provider ({e}); \
             delete it there by hand"
        ),
    }
}

/// How reconciling an `uploaded` job ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The job's batch, with a note for the row when there is something to say.
    Found(Box<BatchView>, Option<String>),
    /// Nothing decided yet; the row message says why and until when.
    Waiting(String),
    /// No batch exists and none can appear any more: fail the job with this code and
    /// message (its input file is deleted).
    Failed(&'static str, String),
}

/// Rules 2-5 of the module docs. A provider error leaves the job as it was (the
/// caller reports it; the next refresh starts again).
pub(crate) fn reconcile(
    conn: &Connection,
    client: &dyn Provider,
    job: &TrackedJob,
    file: &str,
    window: Duration,
    now_ms: i64,
) -> Result<Outcome, ReconcileError> {
    if let Some(b) = find_batch(conn, client, job)? {
        return Ok(Outcome::Found(Box::new(b), None));
    }
    match reconcile_step(job.sent_ms, now_ms, window) {
        ReconcileStep::Create => match create_batch(conn, client, job.pk, &job.job_id, file) {
            Ok(b) => Ok(Outcome::Found(
                Box::new(b),
                Some("created now (no create had been sent for it before)".into()),
            )),
            Err(e @ ProviderError::NotSent { .. }) => Err(e.into()),
            Err(e) if e.may_have_reached_provider() => Ok(Outcome::Waiting(format!(
                "creating the batch may have reached {} but no answer came back: {e}; it is \
                 not created again, and the job is decided by the first batch_refresh() after {}",
                client.name(),
                utc_text(after_window(now_ms, window))
            ))),
            Err(e) => Ok(Outcome::Failed(
                code::CREATE_FAILED,
                format!(
                    "creating the batch failed, no batch was created: {e}; {} (fix the cause, \
                     then batch_retry('{}'))",
                    delete_unused_input(client, file),
                    job.job_id
                ),
            )),
        },
        ReconcileStep::Wait { decide_at_ms } => Ok(Outcome::Waiting(format!(
            "no batch at the provider carries this job's id or its input file {file} yet, but \
             the create sent at {} may still land: it is not created again, and the job is \
             decided by the first batch_refresh() after {}",
            utc_text(job.sent_ms.unwrap_or_default()),
            utc_text(decide_at_ms)
        ))),
        ReconcileStep::Seal => {
            if let Some(b) = seal(conn, client, job, file)? {
                return Ok(Outcome::Found(
                    Box::new(b),
                    Some(format!(
                        "the batch appeared only after the window in which its create could \
                         land; if the provider fails it for its input file {file} being deleted, \
                         batch_retry sends its issues again"
                    )),
                ));
            }
            Ok(Outcome::Failed(
                code::NOT_CREATED,
                format!(
                    "the provider never created a batch for this job: none is its batch, {} s \
                     after the create was sent; {}; nothing was billed (batch_retry('{}') sends \
                     these issues again)",
                    window.as_secs_f64(),
                    sealed_text(client, file),
                    job.job_id
                ),
            ))
        }
    }
}

/// `2026-11-30 12:34:56 UTC` for Unix milliseconds.
pub(crate) fn utc_text(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = crate::jobid::civil_from_unix(ms.div_euclid(1000));
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_create_timeout_comes_from_the_environment() {
        // One test touches the variable, so no other test races with it.
        std::env::remove_var(CREATE_TIMEOUT_ENV);
        let d = client_options().unwrap();
        assert_eq!(d.create_timeout, Duration::from_secs(60));
        assert_eq!(settle_window(&d), Duration::from_secs(180));
        std::env::set_var(CREATE_TIMEOUT_ENV, "1.5");
        assert_eq!(
            client_options().unwrap().create_timeout,
            Duration::from_millis(1500)
        );
        for bad in ["0", "-1", "abc", "NaN", "1e9"] {
            std::env::set_var(CREATE_TIMEOUT_ENV, bad);
            let e = client_options().unwrap_err();
            assert!(e.contains(CREATE_TIMEOUT_ENV) && e.contains(bad), "{e}");
        }
        std::env::set_var(CREATE_TIMEOUT_ENV, "");
        assert_eq!(
            client_options().unwrap().create_timeout,
            Duration::from_secs(60)
        );
        std::env::remove_var(CREATE_TIMEOUT_ENV);
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(utc_text(1_767_261_600_999), "2026-01-01 10:00:00 UTC");
    }
}
