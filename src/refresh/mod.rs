//! `batch_refresh`: the rest of a job's life after submit. What it does next for a job
//! is [`lifecycle::refresh_step`]; this module acts on it. Polling is [`poll`], and a
//! job goes from `in_progress` to collected in [`collect`]; an `uploaded` job whose
//! create may have been lost is settled by `crate::reconcile`; `crate::cancel` reuses
//! the poll.
//!
//! `refresh` brings every active job (or one) up to date with the provider:
//!
//! - `created` (rows committed, the file id never recorded: the upload did not finish,
//!   so no batch can exist): the job and its items are marked `failed`
//!   (`interrupted`), ready for `batch_retry`. Nothing is sent.
//! - `uploaded` (the file is at the provider; the create call may or may not have
//!   reached it): see `reconcile`. The provider's batches are listed and matched on
//!   `metadata.ai_batch_job_id` or the job's `input_file_id`. Found: adopted. Not
//!   found: created now if no create was ever sent; left `uploaded` while a create
//!   sent earlier may still land; after that, the input file is deleted (so it can
//!   never land), the list read again, and the job failed `not_created`.
//! - a provider status: the batch is retrieved and the status and counts recorded.
//! - a terminal status not yet collected: the output and error files are downloaded
//!   and applied in one transaction: analyses written, every item moved to exactly
//!   one final state, counts and actual cost recorded, `collected_at` set. Applying is
//!   idempotent (only `pending` items change, only an uncollected job is applied).
//!   Files that are not what the provider counted are not applied (see [`collect`]);
//!   a file the provider no longer has (404) never blocks the job.
//!
//! A job is worked on by one call at a time: refresh, cancel and submit claim its
//! job id in the runtime (`Runtime::claim_job`) and re-read it under the claim. A
//! job claimed by another call (a submit still sending it, another connection's
//! refresh collecting it) is skipped and reported, so two connections refreshing at
//! once apply each job once, and a job that is being submitted is never taken for
//! an interrupted one.

use std::collections::HashMap;
use std::sync::Arc;

use ai_batch_core::cost::PriceTable;
use ai_batch_core::lifecycle::{self, code, JobStatus, RefreshStep};
use ai_batch_core::provider::{ClientOptions, Provider, ProviderError};
use ai_batch_core::providers::{self, Known};
use duckdb::Connection;

use crate::runtime::Runtime;
use crate::store::{self, TrackedJob};

mod collect;
pub(crate) mod poll;
mod queue;
pub(crate) mod wait;

/// Why a refresh (or cancel) failed as a whole.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RefreshError {
    #[error("{key_env} is not set (export it in the environment of the process that runs DuckDB)")]
    MissingKey { key_env: &'static str },
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{0}")]
    Provider(#[from] ProviderError),
    #[error("{0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("{0}")]
    Invalid(String),
}

impl From<crate::reconcile::ReconcileError> for RefreshError {
    fn from(e: crate::reconcile::ReconcileError) -> Self {
        match e {
            crate::reconcile::ReconcileError::Provider(e) => RefreshError::Provider(e),
            crate::reconcile::ReconcileError::Db(e) => RefreshError::Db(e),
        }
    }
}

/// What one job's refresh did.
#[derive(Debug, Clone, PartialEq)]
pub struct RefreshRow {
    pub job_id: String,
    pub old_status: String,
    pub new_status: String,
    pub issues_count: i64,
    pub completed_count: i64,
    pub failed_count: i64,
    pub pending_count: i64,
    pub applied: i64,
    pub actual_cost: Option<f64>,
    pub message: String,
    /// The provider's request counts at the last poll (None before any).
    pub provider_completed: Option<i64>,
    pub provider_failed: Option<i64>,
    pub provider_total: Option<i64>,
}

/// The row message of a job another call is working on.
const BUSY: &str = "skipped: another ai_batch call (a submit, refresh or cancel on another \
    connection) is working on this job right now (run batch_refresh() again in a moment)";

/// Providers by (provider, base URL), built once per call, each job talking to the
/// provider and base URL it was sent to. A key is read from the environment when a
/// job first needs it, and required only when a job needs the network.
pub(crate) struct Clients {
    pub(crate) opts: ClientOptions,
    by_url: HashMap<(&'static str, String), Box<dyn Provider>>,
}

impl Clients {
    pub(crate) fn new() -> Result<Self, RefreshError> {
        Ok(Clients {
            opts: crate::reconcile::client_options().map_err(RefreshError::Invalid)?,
            by_url: HashMap::new(),
        })
    }

    fn require_key(known: &Known) -> Result<String, RefreshError> {
        crate::settings::api_key(known).ok_or(RefreshError::MissingKey {
            key_env: known.key_env,
        })
    }

    /// The provider `job` was sent to.
    pub(crate) fn get(&mut self, job: &TrackedJob) -> Result<&dyn Provider, RefreshError> {
        let known = job_provider(job)?;
        let url = crate::settings::base_url_or_default(known, job.base_url.clone());
        let key = (known.id, url);
        if !self.by_url.contains_key(&key) {
            let api_key = Self::require_key(known)?;
            let p =
                providers::for_name(known.id, &key.1, api_key, self.opts.clone()).map_err(|e| {
                    match e {
                        providers::ForNameError::Setup(e) => RefreshError::Provider(e),
                        other => RefreshError::Invalid(other.to_string()),
                    }
                })?;
            self.by_url.insert(key.clone(), p);
        }
        self.by_url
            .get(&key)
            .map(|p| &**p)
            .ok_or_else(|| RefreshError::Invalid("client cache".into()))
    }
}

/// The settings of the provider `job` was sent to.
fn job_provider(job: &TrackedJob) -> Result<&'static Known, RefreshError> {
    providers::known(&job.provider).ok_or_else(|| {
        RefreshError::Invalid(format!(
            "job {} was sent to provider '{}', which this build of ai_batch does not speak",
            job.job_id, job.provider
        ))
    })
}

/// What refresh does next for `job` (see [`lifecycle::refresh_step`]).
fn step(job: &TrackedJob) -> RefreshStep {
    lifecycle::refresh_step(&job.status, job.collected, job.provider_batch_id.is_some())
}

/// Refreshes every active job, or the one named.
pub(crate) fn refresh(
    rt: &Arc<Runtime>,
    job_id: Option<&str>,
) -> Result<Vec<RefreshRow>, RefreshError> {
    let conn = rt.lease()?;
    let conn: &Connection = &conn;
    store::check_tables(conn, store::Reads::Tracking)?;
    store::ensure_schema(conn)?;
    let mut jobs = match job_id {
        Some(id) => vec![store::tracked_job(conn, id)?],
        None => store::uncollected_jobs(conn)?,
    };
    // Queued jobs last, oldest first: the polls before them free the room they need.
    jobs.sort_by_key(|j| (j.status == JobStatus::Queued, j.pk));
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut clients = Clients::new()?;
    // A missing key fails the call up front, unless no job needs the network.
    for j in jobs.iter().filter(|j| step(j).needs_key()) {
        Clients::require_key(job_provider(j)?)?;
    }
    let prices = crate::store::prices::price_table(conn)
        .map_err(|e| RefreshError::Invalid(e.to_string()))?;
    let mut prof = crate::profile::Profiler::new("refresh");
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let Some(_claim) = rt.claim_job(&job.job_id) else {
            out.push(summary_row(
                conn,
                &job,
                job.status.as_str(),
                0,
                BUSY.into(),
            )?);
            continue;
        };
        // Read it again under the claim: another call may have moved it meanwhile.
        let job = store::tracked_job(conn, &job.job_id)?;
        let row = match refresh_job(rt, conn, &mut clients, &prices, &job, &mut prof) {
            Ok(r) => r,
            // One job's trouble does not stop the others: it is reported on its row,
            // and the job is left as it was (a later refresh tries again).
            Err(e) => {
                let hint = match &e {
                    RefreshError::Provider(p) => what_to_do(p, "batch_refresh()"),
                    _ => "the job is left as it was; run batch_refresh() again once the cause is fixed"
                        .to_string(),
                };
                summary_row(
                    conn,
                    &job,
                    job.status.as_str(),
                    0,
                    format!("not refreshed: {e} ({hint})"),
                )?
            }
        };
        out.push(row);
    }
    Ok(out)
}

/// What to do after a provider error that left the job as it was.
pub(crate) fn what_to_do(e: &ProviderError, again: &str) -> String {
    if e.retryable() {
        format!(
            "temporary trouble at {}; the job is intact, run {again} again later",
            e.service()
        )
    } else {
        format!("the job is intact; fix the cause, then run {again} again")
    }
}

pub(crate) fn summary_row(
    conn: &Connection,
    job: &TrackedJob,
    old_status: &str,
    applied: i64,
    message: String,
) -> Result<RefreshRow, RefreshError> {
    let j = store::job(conn, &job.job_id)?;
    Ok(RefreshRow {
        job_id: j.job_id,
        old_status: old_status.to_string(),
        new_status: j.status,
        issues_count: j.issues_count,
        completed_count: j.completed_count,
        failed_count: j.failed_count,
        pending_count: j.pending_count,
        applied,
        actual_cost: j.actual_cost,
        message,
        provider_completed: j.provider_completed,
        provider_failed: j.provider_failed,
        provider_total: j.provider_total,
    })
}

fn refresh_job(
    rt: &Arc<Runtime>,
    conn: &Connection,
    clients: &mut Clients,
    prices: &PriceTable,
    job: &TrackedJob,
    prof: &mut crate::profile::Profiler,
) -> Result<RefreshRow, RefreshError> {
    let old = job.status.as_str();
    match (step(job), job.provider_batch_id.as_deref()) {
        (RefreshStep::AlreadyCollected, _) => summary_row(
            conn,
            job,
            old,
            0,
            format!(
                "already collected, nothing to do (the job is {})",
                job.status
            ),
        ),
        (RefreshStep::FailInterrupted, _) => {
            let mut msg = "interrupted before the upload of its request file was recorded; \
                no batch was created (batch_retry sends these issues again)"
                .to_string();
            if let Some(note) = delete_orphan_upload(clients, job) {
                msg.push_str("; ");
                msg.push_str(&note);
            }
            let _g = rt.write_lock.lock().unwrap_or_else(|e| e.into_inner());
            store::fail_job(conn, job.pk, code::INTERRUPTED, &msg)?;
            store::mark_collected(conn, job.pk)?;
            summary_row(conn, job, old, 0, msg)
        }
        (RefreshStep::Reconcile, _) => refresh_uploaded(rt, conn, clients, prices, job, prof),
        (RefreshStep::SendQueued, _) => queue::send_queued(rt, conn, clients, job),
        (RefreshStep::Poll | RefreshStep::Collect, Some(batch_id)) => {
            let batch = clients.get(job)?.poll(batch_id)?;
            poll::finish_poll(rt, conn, clients, prices, job, batch, old, prof)
        }
        (RefreshStep::Poll | RefreshStep::Collect | RefreshStep::NoBatch, _) => {
            summary_row(conn, job, old, 0, "no provider batch to poll".into())
        }
    }
}

/// An upload that finished after the crash point may sit at the provider unused
/// (named `<job_id>.jsonl`): delete it. Best effort, and only with a key at hand; the
/// note says what happened.
fn delete_orphan_upload(clients: &mut Clients, job: &TrackedJob) -> Option<String> {
    crate::settings::api_key(job_provider(job).ok()?)?;
    let client = clients.get(job).ok()?;
    let name = format!("{}.jsonl", job.job_id);
    let after = job.created_epoch.map(|t| t - 3600);
    match client.find_inputs_named(&name, after) {
        Ok(files) if files.is_empty() => None,
        Ok(files) => {
            let mut deleted = 0;
            for f in &files {
                if client.delete_input(&f.id).is_ok() {
                    deleted += 1;
                }
            }
            Some(format!(
                "deleted {deleted} of {} unused uploaded file(s) named {name}",
                files.len()
            ))
        }
        Err(e) => Some(format!("could not look for an unused upload: {e}")),
    }
}

/// A job whose create may have been lost: see `reconcile` for the rule.
fn refresh_uploaded(
    rt: &Arc<Runtime>,
    conn: &Connection,
    clients: &mut Clients,
    prices: &PriceTable,
    job: &TrackedJob,
    prof: &mut crate::profile::Profiler,
) -> Result<RefreshRow, RefreshError> {
    use crate::reconcile::{self, Outcome};
    let Some(file_id) = job.input_file_id.as_deref() else {
        return Err(RefreshError::Invalid(format!(
            "job {} is '{}' but has no input_file_id",
            job.job_id, job.status
        )));
    };
    let window = reconcile::settle_window(&clients.opts);
    let client = clients.get(job)?;
    match reconcile::reconcile(conn, client, job, file_id, window, crate::jobid::now_ms())? {
        Outcome::Found(batch, note) => {
            store::job_created(conn, job.pk, &batch.id, batch.status.as_str())?;
            client.input_consumed(file_id);
            let job = store::tracked_job(conn, &job.job_id)?;
            let uploaded = JobStatus::Uploaded.as_str();
            let mut row =
                poll::finish_poll(rt, conn, clients, prices, &job, *batch, uploaded, prof)?;
            if let Some(note) = note {
                row.message = format!("{}; {note}", row.message);
            }
            Ok(row)
        }
        Outcome::Waiting(msg) => summary_row(conn, job, job.status.as_str(), 0, msg),
        Outcome::Failed(code, msg) => {
            let _g = rt.write_lock.lock().unwrap_or_else(|e| e.into_inner());
            store::fail_job(conn, job.pk, code, &msg)?;
            store::mark_collected(conn, job.pk)?;
            summary_row(conn, job, job.status.as_str(), 0, msg)
        }
    }
}
