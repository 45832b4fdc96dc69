//! The rest of a job's life: polling, reconciling, collecting results, cancelling.
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

use ai_batch_core::cost::{self, PriceTable};
use ai_batch_core::openai::{Batch, BatchStatus, ClientOptions, OpenAiClient, OpenAiError};
use ai_batch_core::processor::Processor;
use ai_batch_core::results::{self, Outcome};
use duckdb::{params, Connection, OptionalExt};

use crate::runtime::Runtime;
use crate::store;

/// Statuses after which a batch changes no more. Any other status, including one
/// ai_batch does not know (a provider may add `paused`, say), is active until collected.
pub const TERMINAL_STATUSES: [&str; 4] = ["completed", "failed", "expired", "cancelled"];

/// Statuses of a job that is still going somewhere (and, active too, any status
/// not in [`TERMINAL_STATUSES`]).
pub const ACTIVE_STATUSES: [&str; 6] = [
    "created",
    "uploaded",
    "validating",
    "in_progress",
    "finalizing",
    "cancelling",
];

/// A batch whose result files are unusable (cut short, fewer answers than the
/// provider counted) is collected from what can be read only after this many
/// refreshes found them so ...
pub const COLLECT_GIVE_UP_ATTEMPTS: i64 = 3;
/// ... and no sooner than this long after the batch finished at the provider.
pub const COLLECT_GIVE_UP_AFTER_SECS: i64 = 3600;
/// Item code: the item's result was in a file the provider no longer has (404, 410).
pub const CODE_RESULT_UNAVAILABLE: &str = "result_unavailable";
/// Item code: the item's result could not be read from the files when the rule above
/// gave up on them.
pub const CODE_RESULT_UNREADABLE: &str = "result_unreadable";

/// Why a refresh (or cancel) failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum RefreshError {
    #[error(
        "OPENAI_API_KEY is not set (export it in the environment of the process that runs DuckDB)"
    )]
    MissingKey,
    #[error("{0}")]
    Store(#[from] store::StoreError),
    #[error("database error: {0}")]
    Db(#[from] duckdb::Error),
    #[error("{0}")]
    Provider(#[from] OpenAiError),
    #[error("{0}")]
    Runtime(#[from] crate::runtime::RuntimeError),
    #[error("{0}")]
    Invalid(String),
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

/// A job as refresh needs it.
#[derive(Debug, Clone)]
struct Job {
    pk: i64,
    job_id: String,
    status: String,
    processor: String,
    processor_version: String,
    model: String,
    base_url: Option<String>,
    provider_batch_id: Option<String>,
    input_file_id: Option<String>,
    created_epoch: Option<i64>,
    /// When the last create was sent (Unix ms), if ever.
    sent_ms: Option<i64>,
    collected: bool,
}

const JOB_SQL: &str =
    "SELECT id, job_id, status, processor, coalesce(processor_version, ''), model, \
    base_url, provider_batch_id, input_file_id, epoch(created_at)::BIGINT, \
    collected_at IS NOT NULL, epoch_ms(submitted_at) FROM batch_jobs";

/// The row message of a job another call is working on.
const BUSY: &str = "skipped: another ai_batch call (a submit, refresh or cancel on another \
    connection) is working on this job right now (run batch_refresh() again in a moment)";

fn job_from_row(r: &duckdb::Row<'_>) -> duckdb::Result<Job> {
    Ok(Job {
        pk: r.get(0)?,
        job_id: r.get(1)?,
        status: r.get(2)?,
        processor: r.get(3)?,
        processor_version: r.get(4)?,
        model: r.get(5)?,
        base_url: r.get(6)?,
        provider_batch_id: r.get(7)?,
        input_file_id: r.get(8)?,
        created_epoch: r.get(9)?,
        collected: r.get(10)?,
        sent_ms: r.get(11)?,
    })
}

fn load_job(conn: &Connection, job_id: &str) -> Result<Job, RefreshError> {
    conn.query_row(
        &format!("{JOB_SQL} WHERE job_id = ?"),
        params![job_id],
        job_from_row,
    )
    .optional()?
    .ok_or_else(|| store::StoreError::UnknownJob(job_id.to_string()).into())
}

fn jobs_to_refresh(conn: &Connection, job_id: Option<&str>) -> Result<Vec<Job>, RefreshError> {
    if let Some(id) = job_id {
        return Ok(vec![load_job(conn, id)?]);
    }
    // Every job not collected, but for those that failed before reaching the provider:
    // a status ai_batch does not know stays active and is polled again.
    let terminal = TERMINAL_STATUSES
        .iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(",");
    let sql = format!(
        "{JOB_SQL} WHERE collected_at IS NULL \
            AND (status NOT IN ({terminal}) OR provider_batch_id IS NOT NULL) \
         ORDER BY id"
    );
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([], job_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Clients by base URL, built once per call. The key is read from the environment
/// when the call starts, and required only when a job needs the network.
struct Clients {
    key: Option<String>,
    opts: ClientOptions,
    by_url: HashMap<String, OpenAiClient>,
}

impl Clients {
    fn new() -> Result<Self, RefreshError> {
        let key = std::env::var("OPENAI_API_KEY")
            .ok()
            .filter(|k| !k.trim().is_empty());
        Ok(Clients {
            key,
            opts: crate::reconcile::client_options().map_err(RefreshError::Invalid)?,
            by_url: HashMap::new(),
        })
    }

    fn require_key(&self) -> Result<&str, RefreshError> {
        self.key.as_deref().ok_or(RefreshError::MissingKey)
    }

    fn get(&mut self, base_url: &str) -> Result<&OpenAiClient, RefreshError> {
        if !self.by_url.contains_key(base_url) {
            let key = self.require_key()?.to_string();
            let c = OpenAiClient::new(base_url, key, self.opts.clone())?;
            self.by_url.insert(base_url.to_string(), c);
        }
        self.by_url
            .get(base_url)
            .ok_or_else(|| RefreshError::Invalid("client cache".into()))
    }
}

fn job_base_url(job: &Job) -> String {
    crate::submit::base_url_or_default(job.base_url.clone())
}

/// Refreshes every active job, or the one named.
pub fn refresh(rt: &Arc<Runtime>, job_id: Option<&str>) -> Result<Vec<RefreshRow>, RefreshError> {
    let conn = rt.lease()?;
    let conn: &Connection = &conn;
    store::check_tables(conn, store::Reads::Tracking)?;
    store::ensure_schema(conn)?;
    let jobs = jobs_to_refresh(conn, job_id)?;
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let mut clients = Clients::new()?;
    // A missing key fails the call up front, unless no job needs the network.
    if jobs.iter().any(|j| !j.collected && j.status != "created") {
        clients.require_key()?;
    }
    let prices =
        crate::submit::price_table(conn).map_err(|e| RefreshError::Invalid(e.to_string()))?;
    let mut prof = crate::profile::Profiler::new("refresh");
    let mut out = Vec::with_capacity(jobs.len());
    for job in jobs {
        let Some(_claim) = rt.claim_job(&job.job_id) else {
            out.push(summary_row(conn, &job, &job.status, 0, BUSY.into())?);
            continue;
        };
        // Read it again under the claim: another call may have moved it meanwhile.
        let job = load_job(conn, &job.job_id)?;
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
                    &job.status,
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
fn what_to_do(e: &OpenAiError, again: &str) -> String {
    if e.retryable() {
        format!("temporary trouble at OpenAI; the job is intact, run {again} again later")
    } else {
        format!("the job is intact; fix the cause, then run {again} again")
    }
}

fn summary_row(
    conn: &Connection,
    job: &Job,
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
    job: &Job,
    prof: &mut crate::profile::Profiler,
) -> Result<RefreshRow, RefreshError> {
    let old = job.status.clone();
    if job.collected {
        return summary_row(
            conn,
            job,
            &old,
            0,
            format!(
                "already collected, nothing to do (the job is {})",
                job.status
            ),
        );
    }
    match job.status.as_str() {
        "created" => {
            let mut msg = "interrupted before the upload of its request file was recorded; \
                no batch was created (batch_retry sends these issues again)"
                .to_string();
            if let Some(note) = delete_orphan_upload(clients, job) {
                msg.push_str("; ");
                msg.push_str(&note);
            }
            let _g = rt.write_lock.lock().unwrap_or_else(|e| e.into_inner());
            store::fail_job(conn, job.pk, "interrupted", &msg)?;
            store::mark_collected(conn, job.pk)?;
            return summary_row(conn, job, &old, 0, msg);
        }
        "uploaded" => return refresh_uploaded(rt, conn, clients, prices, job, prof),
        _ => {}
    }
    let Some(batch_id) = job.provider_batch_id.clone() else {
        return summary_row(conn, job, &old, 0, "no provider batch to poll".into());
    };
    let client = clients.get(&job_base_url(job))?;
    let batch = client.retrieve_batch(&batch_id)?;
    finish_poll(rt, conn, clients, prices, job, batch, &old, prof)
}

/// An upload that finished after the crash point may sit at the provider unused
/// (named `<job_id>.jsonl`): delete it. Best effort, and only with a key at hand; the
/// note says what happened.
fn delete_orphan_upload(clients: &mut Clients, job: &Job) -> Option<String> {
    clients.key.as_ref()?;
    let client = clients.get(&job_base_url(job)).ok()?;
    let name = format!("{}.jsonl", job.job_id);
    let after = job.created_epoch.map(|t| t - 3600);
    match client.find_files_named("batch", &name, after) {
        Ok(files) if files.is_empty() => None,
        Ok(files) => {
            let mut deleted = 0;
            for f in &files {
                if client.delete_file(&f.id).is_ok() {
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
    job: &Job,
    prof: &mut crate::profile::Profiler,
) -> Result<RefreshRow, RefreshError> {
    use crate::reconcile::{self, Outcome};
    let Some(file_id) = job.input_file_id.as_deref() else {
        return Err(RefreshError::Invalid(format!(
            "job {} is 'uploaded' but has no input_file_id",
            job.job_id
        )));
    };
    let window = reconcile::settle_window(&clients.opts);
    let client = clients.get(&job_base_url(job))?;
    let uploaded = reconcile::Uploaded {
        pk: job.pk,
        job_id: &job.job_id,
        input_file_id: file_id,
        created_epoch: job.created_epoch,
        sent_ms: job.sent_ms,
    };
    match reconcile::reconcile(conn, client, &uploaded, window, reconcile::now_ms())? {
        Outcome::Found(batch, note) => {
            store::job_created(conn, job.pk, &batch.id, batch.status.as_str())?;
            let job = load_job(conn, &job.job_id)?;
            let mut row = finish_poll(rt, conn, clients, prices, &job, *batch, "uploaded", prof)?;
            if let Some(note) = note {
                row.message = format!("{}; {note}", row.message);
            }
            Ok(row)
        }
        Outcome::Waiting(msg) => summary_row(conn, job, &job.status, 0, msg),
        Outcome::Failed(code, msg) => {
            let _g = rt.write_lock.lock().unwrap_or_else(|e| e.into_inner());
            store::fail_job(conn, job.pk, code, &msg)?;
            store::mark_collected(conn, job.pk)?;
            summary_row(conn, job, &job.status, 0, msg)
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn finish_poll(
    rt: &Arc<Runtime>,
    conn: &Connection,
    clients: &mut Clients,
    prices: &PriceTable,
    job: &Job,
    batch: Batch,
    old: &str,
    prof: &mut crate::profile::Profiler,
) -> Result<RefreshRow, RefreshError> {
    let status = batch.status.as_str().to_string();
    let counts = batch.request_counts;
    store::job_polled(
        conn,
        job.pk,
        &status,
        batch.output_file_id.as_deref(),
        batch.error_file_id.as_deref(),
        counts.map(|c| store::ProviderCounts {
            completed: c.completed as i64,
            failed: c.failed as i64,
            total: c.total as i64,
        }),
    )?;
    prof.mark("poll", 1);
    if !batch.status.is_terminal() {
        let progress = counts
            .map(|c| {
                format!(
                    "{}/{} done, {} failed at the provider",
                    c.completed, c.total, c.failed
                )
            })
            .unwrap_or_default();
        let mut msg = format!("{status} {progress}").trim().to_string();
        if let BatchStatus::Other(_) = batch.status {
            msg.push_str(
                " (a status ai_batch does not know: the job stays active, and every \
                 batch_refresh() polls it again)",
            );
        }
        return summary_row(conn, job, old, 0, msg);
    }
    let client = clients.get(&job_base_url(job))?;
    let applied = match collect(rt, conn, client, prices, job, &batch, prof)? {
        Collected::Applied(a) => a,
        Collected::Kept(msg) => return summary_row(conn, job, old, 0, msg),
    };
    let mut msg = format!("collected: {} items applied", applied.applied);
    if applied.unknown > 0 {
        msg.push_str(&format!(
            "; {} output lines with unknown custom_id ignored",
            applied.unknown
        ));
    }
    if applied.duplicates > 0 {
        msg.push_str(&format!(
            "; {} duplicate lines applied once",
            applied.duplicates
        ));
    }
    if let Some(c) = &batch.request_counts {
        msg.push_str(&format!(
            "; the provider counted {} completed, {} failed ({} answers failed validation here)",
            c.completed, c.failed, applied.invalid_answers
        ));
    }
    if let Some(e) = batch_errors_text(&batch) {
        msg.push_str(&format!("; provider errors: {e}"));
    }
    for note in &applied.notes {
        msg.push_str("; ");
        msg.push_str(note);
    }
    summary_row(conn, job, old, applied.applied, msg)
}

fn batch_errors_text(batch: &Batch) -> Option<String> {
    let errs = batch.errors.as_ref()?;
    if errs.data.is_empty() {
        return None;
    }
    let parts: Vec<String> = errs
        .data
        .iter()
        .take(5)
        .map(|e| {
            let line = e.line.map(|l| format!(" (line {l})")).unwrap_or_default();
            format!(
                "{}{}: {}",
                e.code.as_deref().unwrap_or("error"),
                line,
                e.message.as_deref().unwrap_or("")
            )
        })
        .collect();
    let more = if errs.data.len() > 5 {
        format!(" and {} more", errs.data.len() - 5)
    } else {
        String::new()
    };
    Some(format!("{}{more}", parts.join("; ")))
}

struct Applied {
    applied: i64,
    unknown: i64,
    duplicates: i64,
    invalid_answers: i64,
    /// What the user must know about the files (gone, unreadable lines, given up).
    notes: Vec<String>,
}

/// What a collect did: applied as final, or kept for the next refresh.
enum Collected {
    Applied(Applied),
    /// The files are not final; the job is kept as it was. The row's message.
    Kept(String),
}

/// The downloaded result files of a batch, and what kept the others from being read.
#[derive(Default)]
struct Downloads {
    /// (`output` / `error`, file id, bytes), in that order.
    files: Vec<(&'static str, String, Vec<u8>)>,
    /// Files the provider no longer has: (kind, file id).
    gone: Vec<(&'static str, String)>,
    /// Why the downloaded files cannot be taken as final (a download cut short).
    bad: Vec<String>,
}

/// Downloads the output and error files. A file that answers 404 or 410 is gone
/// (OpenAI deletes result files some time after a batch ends); a download that stays
/// shorter than its `Content-Length` through the client's retries is bad; any other
/// failure fails the collect, leaving the job as it was.
fn download_results(client: &OpenAiClient, batch: &Batch) -> Result<Downloads, RefreshError> {
    let mut d = Downloads::default();
    for (kind, id) in [
        ("output", &batch.output_file_id),
        ("error", &batch.error_file_id),
    ] {
        let Some(id) = id else { continue };
        match client.download_file_to_vec(id, 2 * 1024 * 1024 * 1024) {
            Ok(bytes) => d.files.push((kind, id.clone(), bytes)),
            Err(e) if matches!(e.status(), Some(404 | 410)) => d.gone.push((kind, id.clone())),
            Err(e @ OpenAiError::Truncated { .. }) => d.bad.push(format!("the {kind} file: {e}")),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(d)
}

/// `output file line 3: <html>…; error file line 7: {"custom_id…` for the first
/// unreadable lines, with how many there are in all.
fn describe_unreadable(
    parsed: &results::ParsedResults,
    files: &[(&'static str, String, Vec<u8>)],
) -> Option<String> {
    if parsed.unreadable_lines == 0 {
        return None;
    }
    let shown: Vec<String> = parsed
        .unreadable
        .iter()
        .map(|u| {
            let kind = files.get(u.file).map_or("result", |f| f.0);
            format!("{kind} file line {}: {}", u.line, u.excerpt)
        })
        .collect();
    let more = parsed.unreadable_lines.saturating_sub(shown.len());
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Some(format!(
        "{} unreadable line(s) ({}{more})",
        parsed.unreadable_lines,
        shown.join("; ")
    ))
}

/// When the batch reached its final status at the provider (Unix seconds).
fn finished_at(batch: &Batch) -> Option<i64> {
    batch
        .completed_at
        .or(batch.failed_at)
        .or(batch.expired_at)
        .or(batch.cancelled_at)
}

fn now_epoch() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Downloads the result files of a terminal batch and applies them atomically.
///
/// The files are applied as final only when they are whole: every download complete
/// (no shorter than its `Content-Length`), and at least as many answers read as the
/// provider counted `completed` (or, without counts, every line readable). Otherwise
/// the job is kept as it was, the reason goes into its `error_message`, and the next
/// refresh downloads the files again. After [`COLLECT_GIVE_UP_ATTEMPTS`] such
/// refreshes, and no sooner than [`COLLECT_GIVE_UP_AFTER_SECS`] after the batch
/// finished, what can be read is applied and the items without a result end `failed`
/// with [`CODE_RESULT_UNREADABLE`]. A file the provider no longer has (404, 410) is
/// not waited for: the other file is applied and the items without a result end
/// `failed` with [`CODE_RESULT_UNAVAILABLE`]. Both codes are retried by `batch_retry`.
fn collect(
    rt: &Arc<Runtime>,
    conn: &Connection,
    client: &OpenAiClient,
    prices: &PriceTable,
    job: &Job,
    batch: &Batch,
    prof: &mut crate::profile::Profiler,
) -> Result<Collected, RefreshError> {
    // The processor of the job's own version, not today's of that name.
    let resolved = store::processors::resolve(conn, &job.processor, &job.processor_version)
        .map_err(|e| RefreshError::Invalid(e.to_string()))?;
    let proc_: &Processor = &resolved;
    // Download first (no lock held, nothing written): a failure leaves the job as is.
    let mut dl = download_results(client, batch)?;
    prof.mark("download", dl.files.iter().map(|f| f.2.len() as u64).sum());
    crate::failpoint::hit("refresh_after_download");
    let slices: Vec<&[u8]> = dl.files.iter().map(|f| f.2.as_slice()).collect();
    let parsed = results::parse_files(&slices, proc_);
    prof.mark("parse_validate", parsed.outcomes.len() as u64);
    let unreadable = describe_unreadable(&parsed, &dl.files);
    let output_read = dl.files.iter().any(|f| f.0 == "output");
    drop(slices);
    dl.files = Vec::new(); // the bytes are parsed: free them before applying
    if output_read && dl.bad.is_empty() {
        let answered = parsed
            .outcomes
            .iter()
            .filter(|o| {
                o.answered
                    && ai_batch_core::requests::parse_custom_id(&job.job_id, &o.custom_id).is_ok()
            })
            .count() as u64;
        match batch.request_counts {
            Some(c) if answered < c.completed => dl.bad.push(format!(
                "the provider counted {} completed, {answered} answers read",
                c.completed
            )),
            None if unreadable.is_some() => dl
                .bad
                .push("the provider gave no request counts to check".into()),
            _ => {}
        }
    }
    let mut notes: Vec<String> = Vec::new();
    let give_up = if dl.bad.is_empty() {
        false
    } else {
        let attempts = store::collect_attempts(conn, job.pk)? + 1;
        let waited =
            finished_at(batch).is_none_or(|t| now_epoch() - t >= COLLECT_GIVE_UP_AFTER_SECS);
        let why = format!(
            "{}{}",
            dl.bad.join("; "),
            unreadable
                .as_deref()
                .map(|u| format!("; {u}"))
                .unwrap_or_default()
        );
        if attempts < COLLECT_GIVE_UP_ATTEMPTS || !waited {
            let msg = format!(
                "not collected: the result files are not what the provider counted ({why}); the job \
                 is kept as it was and its files are downloaded again on the next refresh (attempt \
                 {attempts} of {COLLECT_GIVE_UP_ATTEMPTS}: after {COLLECT_GIVE_UP_ATTEMPTS} \
                 attempts, and no sooner than 1 hour after the batch finished, what can be read is \
                 collected and the rest ends {CODE_RESULT_UNREADABLE}, for batch_retry)"
            );
            store::record_collect_attempt(conn, job.pk, attempts, &msg)?;
            return Ok(Collected::Kept(msg));
        }
        notes.push(format!(
            "given up after {attempts} attempts: {why}; the items without a result end \
             {CODE_RESULT_UNREADABLE} (batch_retry sends them again)"
        ));
        true
    };
    if !give_up {
        notes.extend(unreadable.clone());
    }
    // "the output file file-… or the error file file-…"
    let gone = (!dl.gone.is_empty()).then(|| {
        let names: Vec<String> = dl
            .gone
            .iter()
            .map(|(k, id)| format!("the {k} file {id}"))
            .collect();
        names.join(" or ")
    });
    if let Some(gone) = &gone {
        notes.push(format!(
            "{gone} answered 404: no longer at the provider (OpenAI deletes result files some \
             time after a batch ends); the items whose result was in it end \
             {CODE_RESULT_UNAVAILABLE} (batch_retry sends them again)"
        ));
    }
    let price = prices.lookup(&job.model).ok().map(|m| m.price.clone());

    // What happens to items the files do not mention.
    let batch_error = batch_errors_text(batch);
    let errors_name_lines = batch
        .errors
        .as_ref()
        .is_some_and(|e| e.data.iter().any(|d| d.line.is_some()));
    let (left_status, left_code, left_msg): (&str, String, String) = match &batch.status {
        BatchStatus::Expired => (
            "expired",
            "batch_expired".into(),
            "the batch expired before this request ran (batch_retry sends it again)".into(),
        ),
        BatchStatus::Cancelled => (
            "cancelled",
            "batch_cancelled".into(),
            "the batch was cancelled before this request ran (batch_retry sends it again)".into(),
        ),
        // Validation errors that name lines blame those lines (below); the other
        // requests never ran because of them.
        BatchStatus::Failed if errors_name_lines => (
            "failed",
            "batch_failed".into(),
            format!(
                "never run: the batch failed validation at the provider because of other lines \
                 of the request file ({}) (batch_retry sends this request again)",
                batch_error.clone().unwrap_or_default()
            ),
        ),
        BatchStatus::Failed => {
            let code = batch
                .errors
                .as_ref()
                .and_then(|e| e.data.first())
                .and_then(|e| e.code.clone())
                .unwrap_or_else(|| "batch_failed".to_string());
            let text = batch_error
                .clone()
                .unwrap_or_else(|| "the batch failed".into());
            (
                "failed",
                code,
                format!("the batch failed at the provider: {text}"),
            )
        }
        _ => (
            "failed",
            "missing_result".into(),
            "the provider returned no result for this request".into(),
        ),
    };
    // Items without a result because a file is gone, or unreadable when given up.
    let (left_status, left_code, left_msg): (&str, String, String) = if let Some(gone) = &gone {
        (
            "failed",
            CODE_RESULT_UNAVAILABLE.into(),
            format!(
                "no result: it was in {gone}, which the provider no longer has (404; result \
                 files expire some time after a batch ends) (batch_retry sends this request again)"
            ),
        )
    } else if give_up {
        (
            "failed",
            CODE_RESULT_UNREADABLE.into(),
            format!(
                "no result could be read for it: {} (batch_retry sends this request again)",
                dl.bad.join("; ")
            ),
        )
    } else {
        (left_status, left_code, left_msg)
    };
    let job_error = {
        let parts: Vec<String> = batch_error
            .iter()
            .cloned()
            .chain(notes.iter().cloned())
            .collect();
        (!parts.is_empty()).then(|| parts.join("; "))
    };
    // Validation errors that name a line of our input file name an item: line N is
    // the Nth item of the job in id order (the order the file was written in).
    // Several errors on one line make one entry (the first code, every message), so
    // each item gets exactly one staged row.
    let mut line_errors: Vec<(i64, String, String)> = Vec::new();
    for d in batch.errors.iter().flat_map(|e| e.data.iter()) {
        let Some(line) = d.line else { continue };
        let code = d.code.clone().unwrap_or_else(|| "invalid_request".into());
        let text = format!("{code}: {}", d.message.as_deref().unwrap_or(""));
        match line_errors.iter_mut().find(|e| e.0 == line as i64) {
            Some(e) => {
                e.2.push_str("; ");
                e.2.push_str(&text);
            }
            None => line_errors.push((line as i64, code, text)),
        }
    }

    let _guard = rt.write_lock.lock().unwrap_or_else(|e| e.into_inner());
    conn.execute_batch(
        "CREATE OR REPLACE TEMP TABLE ai_batch_results (custom_id VARCHAR, status VARCHAR, \
         error_code VARCHAR, error_message VARCHAR, input_tokens BIGINT, output_tokens BIGINT, \
         cost DOUBLE, result VARCHAR)",
    )?;
    {
        let mut app = conn.appender("ai_batch_results")?;
        // Staged in item order (items were written in issue id order, which the
        // custom id carries): DuckDB applies an UPDATE ... FROM whose source is in
        // the target's row order ~100x faster than one in the provider's shuffled
        // order (26k rows: 0.02 s instead of 2.3 s).
        let mut in_item_order: Vec<&results::LineOutcome> = parsed.outcomes.iter().collect();
        // (each key once: parsing a custom id checks its job-id prefix)
        in_item_order.sort_by_cached_key(|o| {
            ai_batch_core::requests::parse_custom_id(&job.job_id, &o.custom_id).unwrap_or(i64::MAX)
        });
        for o in in_item_order {
            let cost = match (&price, o.input_tokens, o.output_tokens) {
                (Some(p), Some(i), Some(out)) => Some(cost::cost_usd_unrounded(
                    i.max(0) as u64,
                    out.max(0) as u64,
                    p,
                )),
                _ => None,
            };
            match &o.outcome {
                Outcome::Completed { result } => app.append_row(params![
                    o.custom_id,
                    "completed",
                    None::<String>,
                    None::<String>,
                    o.input_tokens,
                    o.output_tokens,
                    cost,
                    result
                ])?,
                Outcome::Failed {
                    status,
                    code,
                    message,
                } => app.append_row(params![
                    o.custom_id,
                    *status,
                    code,
                    message,
                    o.input_tokens,
                    o.output_tokens,
                    cost,
                    None::<String>
                ])?,
            }
        }
        app.flush()?;
    }
    for (line, code, message) in &line_errors {
        conn.execute(
            "INSERT INTO ai_batch_results (custom_id, status, error_code, error_message) \
             SELECT custom_id, 'failed', ?, ? FROM batch_items WHERE batch_job_id = ? \
             ORDER BY id LIMIT 1 OFFSET ?",
            params![
                code,
                format!("line {line} of the request file: {message}"),
                job.pk,
                (line - 1).max(0)
            ],
        )?;
    }
    prof.mark("stage_results", parsed.outcomes.len() as u64);
    let applied = store::apply_results(
        conn,
        job.pk,
        batch.status.as_str(),
        &job.processor,
        &job.processor_version,
        &job.model,
        (left_status, &left_code, &left_msg),
        job_error.as_deref(),
    )?;
    let _ = conn.execute_batch("DROP TABLE IF EXISTS temp.ai_batch_results");
    prof.mark("apply", applied.applied as u64);
    crate::failpoint::hit("refresh_after_commit");
    Ok(Collected::Applied(Applied {
        applied: applied.applied,
        unknown: applied.unknown,
        duplicates: parsed.duplicate_lines as i64,
        invalid_answers: applied.invalid_answers,
        notes,
    }))
}

/// Cancels a job: at the provider when it has a batch there, locally otherwise.
pub fn cancel(rt: &Arc<Runtime>, job_id: &str) -> Result<RefreshRow, RefreshError> {
    let conn = rt.lease()?;
    let conn: &Connection = &conn;
    store::check_tables(conn, store::Reads::Tracking)?;
    store::ensure_schema(conn)?;
    let job = load_job(conn, job_id)?;
    let Some(_claim) = rt.claim_job(&job.job_id) else {
        return Err(RefreshError::Invalid(format!(
            "job {job_id} is busy: another ai_batch call (a submit, refresh or cancel on another \
             connection) is working on it right now (run batch_cancel('{job_id}') again in a moment)"
        )));
    };
    // Read it again under the claim.
    let job = load_job(conn, job_id)?;
    let old = job.status.clone();
    if job.collected || TERMINAL_STATUSES.contains(&job.status.as_str()) {
        let collect = if job.collected {
            ""
        } else {
            " (its results are not collected yet: run batch_refresh())"
        };
        return summary_row(
            conn,
            &job,
            &old,
            0,
            format!(
                "nothing to cancel: the job is already {}{collect}",
                job.status
            ),
        );
    }
    if job.status == "created" && job.provider_batch_id.is_none() {
        // Interrupted before its file was uploaded: nothing at the provider.
        let msg = "cancelled before it reached the provider";
        let _g = rt.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        store::cancel_local_job(conn, job.pk, msg)?;
        return summary_row(conn, &job, &old, 0, msg.into());
    }
    let mut clients = Clients::new()?;
    let client = clients.get(&job_base_url(&job))?;
    // A job whose create may have been lost: find its batch first. Not found: its
    // input file is deleted (a create still in flight can then no longer land) and the
    // list read again.
    let mut sealed = false;
    let batch_id = match (&job.provider_batch_id, job.status.as_str()) {
        (Some(id), _) => Some(id.clone()),
        (None, "uploaded") => {
            let file = job.input_file_id.as_deref();
            match crate::reconcile::find_batch(client, &job.job_id, file, job.created_epoch)? {
                Some(b) => Some(b.id),
                None => match file {
                    Some(f) => {
                        sealed = true;
                        crate::reconcile::seal(client, &job.job_id, f, job.created_epoch)?
                            .map(|b| b.id)
                    }
                    None => None,
                },
            }
        }
        _ => None,
    };
    let Some(batch_id) = batch_id else {
        let msg = if sealed {
            "cancelled before it reached the provider; its uploaded request file was deleted \
             there, so a create still in flight can no longer make a batch"
        } else {
            "cancelled before it reached the provider"
        };
        let _g = rt.write_lock.lock().unwrap_or_else(|e| e.into_inner());
        store::cancel_local_job(conn, job.pk, msg)?;
        return summary_row(conn, &job, &old, 0, msg.into());
    };
    let batch = match client.cancel_batch(&batch_id) {
        Ok(b) => b,
        // Finished meanwhile (the provider refuses to cancel): just poll it.
        Err(e) if e.status() == Some(409) || e.status() == Some(400) => {
            client.retrieve_batch(&batch_id)?
        }
        Err(e) => {
            let hint = what_to_do(&e, &format!("batch_cancel('{}')", job.job_id));
            return Err(RefreshError::Invalid(format!(
                "{e} ({hint}; cancelling twice is harmless)"
            )));
        }
    };
    if job.provider_batch_id.is_none() {
        store::job_created(conn, job.pk, &batch.id, batch.status.as_str())?;
    }
    let job = load_job(conn, job_id)?;
    let prices =
        crate::submit::price_table(conn).map_err(|e| RefreshError::Invalid(e.to_string()))?;
    let mut prof = crate::profile::Profiler::new("cancel");
    let mut row = finish_poll(
        rt,
        conn,
        &mut clients,
        &prices,
        &job,
        batch,
        &old,
        &mut prof,
    )?;
    if !row.message.starts_with("collected") && !row.message.starts_with("not collected") {
        row.message = format!(
            "cancel requested ({}); batch_refresh() collects the partial results when the provider finishes",
            row.message
        );
    }
    Ok(row)
}
