//! The job and item lifecycle: every status a job or an item can be in, in one place.
//!
//! The statuses stored in `batch_jobs.status` and `batch_items.status` are the text of
//! these enums and nothing else. A provider maps its own statuses onto [`JobStatus`] in its
//! wire module; everything else speaks the enums. SQL that needs a set of statuses gets
//! its text from here ([`sql_list`]).
//!
//! The transitions are pure functions here, each tested for every state beside it:
//! what `batch_refresh` does next for a job ([`refresh_step`]) and what `batch_cancel`
//! does ([`cancel_step`]); what becomes of the items a result file does not mention
//! ([`unmentioned_items`]); which items a `batch_retry` takes ([`retry_takes`]). The
//! operations (`src/refresh/`, `src/cancel.rs`, `src/retry.rs`) act on the decision;
//! the store writes it.

use std::fmt;
use std::time::Duration;

/// Where a job is. `Created`, `Queued` and `Uploaded` are ours (nothing or only the input
/// file is at the provider); the rest follow the provider's batch. A status ai_batch does not know
/// (a provider may add `paused`) is kept verbatim in `Other` and is active.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum JobStatus {
    /// Recorded; nothing sent yet.
    Created,
    /// The request file is at the provider, no batch: the job waits for room under the
    /// account's queue limit (`ai_batch_limits`, or the provider said its limit was
    /// reached). `batch_refresh` / `batch_wait` send it when room frees.
    Queued,
    /// The request file is at the provider; a create may or may not have reached it.
    Uploaded,
    /// The provider is validating the input.
    Validating,
    /// Requests are being processed.
    InProgress,
    /// The provider is preparing the result files.
    Finalizing,
    /// A cancel was asked for; in-flight requests are finishing.
    Cancelling,
    /// Done; results are in the result files.
    Completed,
    /// The batch (or our attempt to create it) failed as a whole.
    Failed,
    /// The completion window passed; partial results may exist.
    Expired,
    /// Cancelled; partial results may exist.
    Cancelled,
    /// A status ai_batch does not know. Active until it turns terminal.
    Other(String),
}

impl JobStatus {
    /// Every known status, in lifecycle order.
    pub const KNOWN: [JobStatus; 11] = [
        JobStatus::Created,
        JobStatus::Queued,
        JobStatus::Uploaded,
        JobStatus::Validating,
        JobStatus::InProgress,
        JobStatus::Finalizing,
        JobStatus::Cancelling,
        JobStatus::Completed,
        JobStatus::Failed,
        JobStatus::Expired,
        JobStatus::Cancelled,
    ];

    /// The stored text.
    pub fn as_str(&self) -> &str {
        match self {
            JobStatus::Created => "created",
            JobStatus::Queued => "queued",
            JobStatus::Uploaded => "uploaded",
            JobStatus::Validating => "validating",
            JobStatus::InProgress => "in_progress",
            JobStatus::Finalizing => "finalizing",
            JobStatus::Cancelling => "cancelling",
            JobStatus::Completed => "completed",
            JobStatus::Failed => "failed",
            JobStatus::Expired => "expired",
            JobStatus::Cancelled => "cancelled",
            JobStatus::Other(s) => s,
        }
    }

    /// The status stored as `text`; unknown text is kept as [`JobStatus::Other`].
    pub fn parse(text: &str) -> JobStatus {
        Self::KNOWN
            .iter()
            .find(|s| s.as_str() == text)
            .cloned()
            .unwrap_or_else(|| JobStatus::Other(text.to_string()))
    }

    /// The batch changes no more (`completed`, `failed`, `expired`, `cancelled`). A
    /// terminal job is still active until it is collected.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            JobStatus::Completed | JobStatus::Failed | JobStatus::Expired | JobStatus::Cancelled
        )
    }

    /// The known statuses that are not terminal.
    pub fn active_known() -> impl Iterator<Item = &'static JobStatus> {
        Self::KNOWN.iter().filter(|s| !s.is_terminal())
    }

    /// The known terminal statuses.
    pub fn terminal() -> impl Iterator<Item = &'static JobStatus> {
        Self::KNOWN.iter().filter(|s| s.is_terminal())
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one item (one issue in one job) is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ItemStatus {
    /// Sent (or about to be); no result yet.
    Pending,
    /// A schema-valid answer is in `ai_analyses`.
    Completed,
    /// No usable answer; `error_code` says why.
    Failed,
    /// The batch expired before the request ran.
    Expired,
    /// The batch was cancelled before the request ran.
    Cancelled,
}

impl ItemStatus {
    /// Every status.
    pub const ALL: [ItemStatus; 5] = [
        ItemStatus::Pending,
        ItemStatus::Completed,
        ItemStatus::Failed,
        ItemStatus::Expired,
        ItemStatus::Cancelled,
    ];

    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            ItemStatus::Pending => "pending",
            ItemStatus::Completed => "completed",
            ItemStatus::Failed => "failed",
            ItemStatus::Expired => "expired",
            ItemStatus::Cancelled => "cancelled",
        }
    }

    /// The status stored as `text`, if it is one.
    pub fn parse(text: &str) -> Option<ItemStatus> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for ItemStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `'a', 'b', ...`: the statuses as SQL string literals, for `status IN (...)`. The
/// texts are our own constants (no quotes in them), never user input.
pub fn sql_list<'a>(statuses: impl IntoIterator<Item = &'a str>) -> String {
    statuses
        .into_iter()
        .map(|s| format!("'{s}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ItemStatus {
    /// An item that ended without a usable answer (`failed`, `expired`, `cancelled`):
    /// the items `batch_retry` considers.
    pub fn is_unsuccessful(self) -> bool {
        matches!(
            self,
            ItemStatus::Failed | ItemStatus::Expired | ItemStatus::Cancelled
        )
    }

    /// The statuses of [`ItemStatus::is_unsuccessful`].
    pub fn unsuccessful() -> impl Iterator<Item = ItemStatus> {
        Self::ALL.into_iter().filter(|s| s.is_unsuccessful())
    }
}

/// `status NOT IN ('completed', ...)`-ready list of the terminal job statuses: SQL
/// that needs the active set reads it from here (a status not in it is active).
pub fn sql_terminal_list() -> String {
    sql_list(JobStatus::terminal().map(|s| s.as_str()))
}

/// The item error codes ai_batch writes itself (README, "Item error codes"). The
/// provider's own codes (an error file line's) are kept as the provider wrote them.
pub mod code {
    /// Complete result files hold no line for the item.
    pub const MISSING_RESULT: &str = "missing_result";
    /// The batch expired before the request ran.
    pub const BATCH_EXPIRED: &str = "batch_expired";
    /// The batch was cancelled before the request ran.
    pub const BATCH_CANCELLED: &str = "batch_cancelled";
    /// The batch failed as a whole (when its errors carry no code of their own).
    pub const BATCH_FAILED: &str = "batch_failed";
    /// The item's result was in a file the provider no longer has (404, 410).
    pub const RESULT_UNAVAILABLE: &str = "result_unavailable";
    /// The result files stayed unusable and collecting gave up on them.
    pub const RESULT_UNREADABLE: &str = "result_unreadable";
    /// A validation error on a line of the request file that carries no code.
    pub const INVALID_REQUEST: &str = "invalid_request";
    /// The job was interrupted before its uploaded file was recorded.
    pub const INTERRUPTED: &str = "interrupted";
    /// The provider never created the job's batch.
    pub const NOT_CREATED: &str = "not_created";
    /// Creating the batch failed; no batch was created.
    pub const CREATE_FAILED: &str = "create_failed";
    /// Cancelled before the job reached the provider.
    pub const CANCELLED: &str = "cancelled";
}

// ---------------------------------------------------------------------------------
// What refresh and cancel do next.

/// What `batch_refresh` does next for a job, from what is recorded of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshStep {
    /// Collected: nothing more will come ("already collected, nothing to do").
    AlreadyCollected,
    /// `created`: the upload was never recorded, so no batch can exist. The job and its
    /// items fail `interrupted`; an upload that finished unrecorded is deleted.
    FailInterrupted,
    /// `uploaded`: the create may or may not have reached the provider: find the batch,
    /// create it, wait, or seal the job (the reconcile rule, [`reconcile_step`]).
    Reconcile,
    /// `queued`: create its batch if the queue limit leaves room ([`admit`]), oldest
    /// first, after every other job was refreshed.
    SendQueued,
    /// A provider status that is not terminal, or one ai_batch does not know: poll.
    Poll,
    /// Terminal and not collected: retrieve the batch and collect its result files.
    Collect,
    /// No provider batch is recorded to poll (a job that failed before it had one).
    NoBatch,
}

impl RefreshStep {
    /// Whether this step talks to the provider (so the API key must be set). Only
    /// the steps that surely need nothing from the network do without it.
    pub fn needs_key(self) -> bool {
        !matches!(
            self,
            RefreshStep::AlreadyCollected | RefreshStep::FailInterrupted
        )
    }
}

/// What `batch_refresh` does next for a job in `status`, collected or not, with a
/// provider batch recorded or not.
pub fn refresh_step(status: &JobStatus, collected: bool, has_batch: bool) -> RefreshStep {
    if collected {
        return RefreshStep::AlreadyCollected;
    }
    match status {
        JobStatus::Created => RefreshStep::FailInterrupted,
        JobStatus::Uploaded => RefreshStep::Reconcile,
        JobStatus::Queued => RefreshStep::SendQueued,
        _ if !has_batch => RefreshStep::NoBatch,
        s if s.is_terminal() => RefreshStep::Collect,
        _ => RefreshStep::Poll,
    }
}

/// What a poll leads to: a batch that reached a terminal status is collected at once,
/// any other (one ai_batch does not know included) is recorded and polled again later.
pub fn collect_after_poll(polled: &JobStatus) -> bool {
    polled.is_terminal()
}

/// What `batch_cancel` does for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelStep {
    /// Terminal or collected: nothing to cancel.
    NothingToCancel,
    /// Nothing at the provider: the job and its pending items are cancelled here.
    CancelLocally,
    /// `uploaded` without a recorded batch: find the batch; not found, delete the input
    /// file (so a create in flight cannot land) and look again; then cancel what was
    /// found, or cancel locally.
    FindThenCancel,
    /// Cancel the recorded batch at the provider, then record the poll.
    CancelAtProvider,
}

/// What `batch_cancel` does for a job in `status`.
pub fn cancel_step(status: &JobStatus, collected: bool, has_batch: bool) -> CancelStep {
    if collected || status.is_terminal() {
        CancelStep::NothingToCancel
    } else if has_batch {
        CancelStep::CancelAtProvider
    } else if *status == JobStatus::Uploaded {
        CancelStep::FindThenCancel
    } else {
        CancelStep::CancelLocally
    }
}

/// What to do about an `uploaded` job whose batch the provider's list did not show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileStep {
    /// No create was ever sent: create now.
    Create,
    /// A create sent earlier may still land: do nothing until then (Unix ms).
    Wait { decide_at_ms: i64 },
    /// It may no longer land on its own: delete the input file, list again, conclude.
    Seal,
}

/// The reconcile rule for an `uploaded` job not found at the provider: `sent_ms` is
/// when the last create was sent (Unix ms), if ever; a create may land up to `window`
/// after it was sent.
pub fn reconcile_step(sent_ms: Option<i64>, now_ms: i64, window: Duration) -> ReconcileStep {
    let Some(sent) = sent_ms else {
        return ReconcileStep::Create;
    };
    let decide_at_ms = after_window(sent, window);
    if now_ms < decide_at_ms {
        ReconcileStep::Wait { decide_at_ms }
    } else {
        ReconcileStep::Seal
    }
}

/// Unix ms `window` after `t` (saturating).
pub fn after_window(t: i64, window: Duration) -> i64 {
    t.saturating_add(window.as_millis().min(i64::MAX as u128) as i64)
}

// ---------------------------------------------------------------------------------
// The account's queue: which queued job is sent, and when a refused one tries again.

/// A provider's limits on what may be enqueued at once for one model (a row of the
/// user's `ai_batch_limits`); `None`: no limit of that kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueLimit {
    pub max_tokens: Option<i64>,
    pub max_requests: Option<i64>,
}

/// What is enqueued (or what one job would add): input tokens, requests, jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Enqueued {
    pub tokens: i64,
    pub requests: i64,
    pub jobs: i64,
}

/// Whether a job goes to the provider now or waits `queued`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    Send,
    /// Wait; the text says why (shown in `batch_history().error_message`).
    Wait(String),
}

/// Whether a job of `job` size may be sent while `enqueued` is at the provider for
/// the same model under `limit`. A job is always sent when nothing else is enqueued
/// (there is nothing to wait for; if the provider refuses it, it is requeued).
pub fn admit(limit: QueueLimit, enqueued: Enqueued, job: Enqueued) -> Admission {
    if enqueued.jobs == 0 {
        return Admission::Send;
    }
    let over = |max: Option<i64>, used: i64, need: i64, what: &str| {
        max.filter(|m| used.saturating_add(need) > *m).map(|m| {
            format!(
                "queued: waiting for room under the queue limit ({used} of {m} enqueued {what} in use \
                 by {} running job(s), this job needs {need}); batch_refresh() or batch_wait() sends \
                 it when running jobs finish",
                enqueued.jobs
            )
        })
    };
    match over(limit.max_tokens, enqueued.tokens, job.tokens, "tokens").or_else(|| {
        over(
            limit.max_requests,
            enqueued.requests,
            job.requests,
            "requests",
        )
    }) {
        Some(why) => Admission::Wait(why),
        None => Admission::Send,
    }
}

/// Whether a provider error code (a create's, or a failed batch's first error) means
/// the account's queue is full: the job is requeued, never failed.
pub fn is_queue_full(code: Option<&str>, message: Option<&str>) -> bool {
    matches!(
        code,
        Some("token_limit_exceeded" | "request_limit_exceeded")
    ) || message.is_some_and(|m| {
        m.contains("Enqueued token limit reached") || m.contains("Enqueued request limit reached")
    })
}

/// What a poll leads to for a batch that ended `failed` because the provider's queue
/// was full (its first error, [`is_queue_full`]): the job goes back to `queued`, its
/// items untouched, instead of being collected as failed.
pub fn requeue_after_poll(polled: &JobStatus, code: Option<&str>, message: Option<&str>) -> bool {
    *polled == JobStatus::Failed && is_queue_full(code, message)
}

/// How long a job the provider refused for its queue limit waits before it is sent
/// again when no job of the model ended meanwhile: 1 minute, doubling per refusal,
/// at most 30 minutes (never a tight loop).
pub fn requeue_backoff(refusals: i64) -> Duration {
    let exp = refusals.clamp(1, 6) - 1;
    Duration::from_secs((60u64 << exp).min(1800))
}

/// Whether a queued job the provider refused `refusals` times (the last at
/// `refused_ms`) may be tried again: at once if it was never refused or a job of the
/// same model ended after the refusal; otherwise after [`requeue_backoff`].
pub fn requeue_ready(
    refusals: i64,
    refused_ms: Option<i64>,
    ended_since: bool,
    now_ms: i64,
) -> bool {
    match refused_ms {
        None => true,
        Some(_) if refusals <= 0 || ended_since => true,
        Some(t) => now_ms >= after_window(t, requeue_backoff(refusals)),
    }
}

/// `'a', ...` of the statuses whose jobs hold nothing at the provider's queue: the
/// terminal ones and `queued`.
pub fn sql_not_enqueued_list() -> String {
    sql_list(
        JobStatus::terminal()
            .chain([&JobStatus::Queued])
            .map(|s| s.as_str()),
    )
}

// ---------------------------------------------------------------------------------
// Items a result file does not mention.

/// The batch-level errors of a finished batch, as far as the rule needs them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchErrors<'a> {
    /// The code of the first error, if it has one.
    pub first_code: Option<&'a str>,
    /// The errors as text for a message (`code (line N): message; ...`), if any.
    pub text: Option<&'a str>,
    /// Some error names a line of the request file (a validation error).
    pub names_lines: bool,
}

/// Whether the result files can speak for every item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultFiles<'a> {
    /// Read whole: an item they do not mention has no result.
    Whole,
    /// A file answered 404/410: "the output file file-… or the error file file-…".
    Gone(&'a str),
    /// Collecting gave up on unusable files, for this reason.
    GivenUp(&'a str),
}

/// The final state of the items a job's result files do not mention.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmentioned {
    pub status: ItemStatus,
    pub code: String,
    pub message: String,
}

/// What becomes of the still-pending items no result line mentions, when a batch
/// that ended `batch_status` is collected: a file that is gone or given up on names
/// that; otherwise the batch's end does (expired, cancelled, failed: with a line
/// blamed, or as a whole), and a completed batch's missing lines end `missing_result`.
pub fn unmentioned_items(
    batch_status: &JobStatus,
    errors: BatchErrors<'_>,
    files: ResultFiles<'_>,
) -> Unmentioned {
    let (status, code, message) = match files {
        ResultFiles::Gone(gone) => (
            ItemStatus::Failed,
            code::RESULT_UNAVAILABLE.to_string(),
            format!(
                "no result: it was in {gone}, which the provider no longer has (404; result \
                 files expire some time after a batch ends) (batch_retry sends this request again)"
            ),
        ),
        ResultFiles::GivenUp(why) => (
            ItemStatus::Failed,
            code::RESULT_UNREADABLE.to_string(),
            format!("no result could be read for it: {why} (batch_retry sends this request again)"),
        ),
        ResultFiles::Whole => match batch_status {
            JobStatus::Expired => (
                ItemStatus::Expired,
                code::BATCH_EXPIRED.to_string(),
                "the batch expired before this request ran (batch_retry sends it again)".into(),
            ),
            JobStatus::Cancelled => (
                ItemStatus::Cancelled,
                code::BATCH_CANCELLED.to_string(),
                "the batch was cancelled before this request ran (batch_retry sends it again)"
                    .into(),
            ),
            // Validation errors that name lines blame those lines; the other requests
            // never ran because of them.
            JobStatus::Failed if errors.names_lines => (
                ItemStatus::Failed,
                code::BATCH_FAILED.to_string(),
                format!(
                    "never run: the batch failed validation at the provider because of other \
                     lines of the request file ({}) (batch_retry sends this request again)",
                    errors.text.unwrap_or_default()
                ),
            ),
            JobStatus::Failed => (
                ItemStatus::Failed,
                errors.first_code.unwrap_or(code::BATCH_FAILED).to_string(),
                format!(
                    "the batch failed at the provider: {}",
                    errors.text.unwrap_or("the batch failed")
                ),
            ),
            _ => (
                ItemStatus::Failed,
                code::MISSING_RESULT.to_string(),
                "the provider returned no result for this request".into(),
            ),
        },
    };
    Unmentioned {
        status,
        code,
        message,
    }
}

// ---------------------------------------------------------------------------------
// Which failures a retry takes.

/// How many times one issue is sent for one job lineage before retry leaves it alone.
pub const MAX_ATTEMPTS: i64 = 3;

/// Failure codes that a resend cannot fix.
pub const NON_RETRYABLE_CODES: [&str; 5] = [
    "context_length_exceeded",
    "invalid_prompt",
    code::INVALID_REQUEST,
    "content_filter",
    "refusal",
];

/// Whether `batch_retry` sends an item again: it ended expired or cancelled, or failed
/// for a reason a resend can fix (not one of [`NON_RETRYABLE_CODES`]), and was tried
/// fewer than [`MAX_ATTEMPTS`] times. Pending and completed items are never retried.
pub fn retry_takes(status: ItemStatus, error_code: Option<&str>, attempts: i64) -> bool {
    let fixable = match status {
        ItemStatus::Expired | ItemStatus::Cancelled => true,
        ItemStatus::Failed => !error_code.is_some_and(|c| NON_RETRYABLE_CODES.contains(&c)),
        ItemStatus::Pending | ItemStatus::Completed => false,
    };
    fixable && attempts < MAX_ATTEMPTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_status_text_round_trips_and_unknown_is_kept() {
        for s in JobStatus::KNOWN {
            assert_eq!(JobStatus::parse(s.as_str()), s);
        }
        assert_eq!(
            JobStatus::parse("paused"),
            JobStatus::Other("paused".into())
        );
        assert!(!JobStatus::parse("paused").is_terminal());
    }

    #[test]
    fn active_and_terminal_split_the_known_statuses() {
        let active: Vec<&str> = JobStatus::active_known().map(|s| s.as_str()).collect();
        assert_eq!(
            active,
            [
                "created",
                "queued",
                "uploaded",
                "validating",
                "in_progress",
                "finalizing",
                "cancelling"
            ]
        );
        let terminal: Vec<&str> = JobStatus::terminal().map(|s| s.as_str()).collect();
        assert_eq!(terminal, ["completed", "failed", "expired", "cancelled"]);
    }

    #[test]
    fn item_status_round_trips() {
        for s in ItemStatus::ALL {
            assert_eq!(ItemStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ItemStatus::parse("done"), None);
    }

    #[test]
    fn sql_list_quotes_each() {
        assert_eq!(
            sql_list(JobStatus::terminal().map(|s| s.as_str())),
            "'completed', 'failed', 'expired', 'cancelled'"
        );
    }

    fn all_job_statuses() -> Vec<JobStatus> {
        let mut v = JobStatus::KNOWN.to_vec();
        v.push(JobStatus::Other("paused".into()));
        v
    }

    #[test]
    fn refresh_step_for_every_state() {
        use RefreshStep::*;
        for s in all_job_statuses() {
            for has_batch in [false, true] {
                // Collected wins over everything.
                assert_eq!(refresh_step(&s, true, has_batch), AlreadyCollected, "{s}");
                let want = match (s.as_str(), has_batch) {
                    ("created", _) => FailInterrupted,
                    ("uploaded", _) => Reconcile,
                    ("queued", _) => SendQueued,
                    (_, false) => NoBatch,
                    ("completed" | "failed" | "expired" | "cancelled", true) => Collect,
                    (
                        "validating" | "in_progress" | "finalizing" | "cancelling" | "paused",
                        true,
                    ) => Poll,
                    (other, _) => panic!("untested status {other}"),
                };
                assert_eq!(refresh_step(&s, false, has_batch), want, "{s} {has_batch}");
            }
        }
    }

    #[test]
    fn only_collected_and_interrupted_jobs_refresh_without_a_key() {
        use RefreshStep::*;
        for step in [AlreadyCollected, FailInterrupted] {
            assert!(!step.needs_key(), "{step:?}");
        }
        for step in [Reconcile, SendQueued, Poll, Collect, NoBatch] {
            assert!(step.needs_key(), "{step:?}");
        }
    }

    #[test]
    fn a_poll_collects_terminal_batches_only() {
        for s in all_job_statuses() {
            assert_eq!(collect_after_poll(&s), s.is_terminal(), "{s}");
        }
        assert!(collect_after_poll(&JobStatus::Completed));
        assert!(!collect_after_poll(&JobStatus::InProgress));
        assert!(!collect_after_poll(&JobStatus::Other("paused".into())));
    }

    #[test]
    fn cancel_step_for_every_state() {
        use CancelStep::*;
        for s in all_job_statuses() {
            for has_batch in [false, true] {
                assert_eq!(cancel_step(&s, true, has_batch), NothingToCancel, "{s}");
                let want = if s.is_terminal() {
                    NothingToCancel
                } else if has_batch {
                    CancelAtProvider
                } else if s == JobStatus::Uploaded {
                    FindThenCancel
                } else {
                    CancelLocally
                };
                assert_eq!(cancel_step(&s, false, has_batch), want, "{s} {has_batch}");
            }
        }
        assert_eq!(
            cancel_step(&JobStatus::Created, false, false),
            CancelLocally
        );
        assert_eq!(
            cancel_step(&JobStatus::Uploaded, false, false),
            FindThenCancel
        );
        assert_eq!(
            cancel_step(&JobStatus::InProgress, false, true),
            CancelAtProvider
        );
        assert_eq!(
            cancel_step(&JobStatus::Completed, false, true),
            NothingToCancel
        );
    }

    #[test]
    fn the_reconcile_decision_for_a_job_not_found() {
        let w = Duration::from_secs(180);
        assert_eq!(reconcile_step(None, 5_000, w), ReconcileStep::Create);
        assert_eq!(
            reconcile_step(Some(1_000), 1_000, w),
            ReconcileStep::Wait {
                decide_at_ms: 181_000
            }
        );
        assert_eq!(
            reconcile_step(Some(1_000), 180_999, w),
            ReconcileStep::Wait {
                decide_at_ms: 181_000
            }
        );
        assert_eq!(reconcile_step(Some(1_000), 181_000, w), ReconcileStep::Seal);
        // A clock that went backwards keeps waiting rather than deciding early.
        assert!(matches!(
            reconcile_step(Some(1_000), 0, w),
            ReconcileStep::Wait { .. }
        ));
        // No overflow at the far end.
        assert_eq!(after_window(i64::MAX - 1, w), i64::MAX);
    }

    fn unmentioned(
        status: JobStatus,
        errors: BatchErrors<'_>,
        files: ResultFiles<'_>,
    ) -> (ItemStatus, String) {
        let u = unmentioned_items(&status, errors, files);
        (u.status, u.code)
    }

    #[test]
    fn unmentioned_items_by_batch_end() {
        let none = BatchErrors::default();
        let whole = ResultFiles::Whole;
        let f = |c: &str| c.to_string();
        assert_eq!(
            unmentioned(JobStatus::Completed, none, whole),
            (ItemStatus::Failed, f(code::MISSING_RESULT))
        );
        assert_eq!(
            unmentioned(JobStatus::Expired, none, whole),
            (ItemStatus::Expired, f(code::BATCH_EXPIRED))
        );
        assert_eq!(
            unmentioned(JobStatus::Cancelled, none, whole),
            (ItemStatus::Cancelled, f(code::BATCH_CANCELLED))
        );
        // Failed as a whole, without errors: batch_failed.
        let u = unmentioned_items(&JobStatus::Failed, none, whole);
        assert_eq!(
            (u.status, u.code.as_str()),
            (ItemStatus::Failed, code::BATCH_FAILED)
        );
        assert_eq!(
            u.message,
            "the batch failed at the provider: the batch failed"
        );
        // Failed with a code: the batch error's code.
        let coded = BatchErrors {
            first_code: Some("token_limit_exceeded"),
            text: Some("token_limit_exceeded: too many tokens"),
            names_lines: false,
        };
        let u = unmentioned_items(&JobStatus::Failed, coded, whole);
        assert_eq!(
            (u.status, u.code.as_str()),
            (ItemStatus::Failed, "token_limit_exceeded")
        );
        assert_eq!(
            u.message,
            "the batch failed at the provider: token_limit_exceeded: too many tokens"
        );
        // Failed validation naming lines: the others never ran, batch_failed.
        let lines = BatchErrors {
            first_code: Some("invalid_request"),
            text: Some("invalid_request (line 2): bad"),
            names_lines: true,
        };
        let u = unmentioned_items(&JobStatus::Failed, lines, whole);
        assert_eq!(
            (u.status, u.code.as_str()),
            (ItemStatus::Failed, code::BATCH_FAILED)
        );
        assert!(
            u.message.starts_with("never run: ")
                && u.message.contains("(invalid_request (line 2): bad)"),
            "{}",
            u.message
        );
        // Any other status (a poll never collects one, but the rule is total).
        for s in JobStatus::active_known()
            .cloned()
            .chain([JobStatus::Other("paused".into())])
        {
            assert_eq!(
                unmentioned(s, none, whole),
                (ItemStatus::Failed, f(code::MISSING_RESULT))
            );
        }
    }

    #[test]
    fn gone_and_given_up_files_name_the_items_whatever_the_batch_end() {
        let errs = BatchErrors {
            first_code: Some("x"),
            text: Some("x: y"),
            names_lines: true,
        };
        for s in all_job_statuses() {
            for e in [BatchErrors::default(), errs] {
                let u = unmentioned_items(&s, e, ResultFiles::Gone("the output file file-1"));
                assert_eq!(
                    (u.status, u.code.as_str()),
                    (ItemStatus::Failed, code::RESULT_UNAVAILABLE)
                );
                assert!(
                    u.message
                        .starts_with("no result: it was in the output file file-1, "),
                    "{}",
                    u.message
                );
                let u = unmentioned_items(&s, e, ResultFiles::GivenUp("cut short"));
                assert_eq!(
                    (u.status, u.code.as_str()),
                    (ItemStatus::Failed, code::RESULT_UNREADABLE)
                );
                assert_eq!(
                    u.message,
                    "no result could be read for it: cut short (batch_retry sends this request again)"
                );
            }
        }
    }

    #[test]
    fn retry_takes_every_status_code_and_attempt() {
        let codes: Vec<Option<&str>> = NON_RETRYABLE_CODES
            .iter()
            .map(|c| Some(*c))
            .chain([
                None,
                Some(""),
                Some(code::MISSING_RESULT),
                Some(code::RESULT_UNAVAILABLE),
                Some(code::BATCH_FAILED),
                Some("http_500"),
                Some("Refusal"),
            ])
            .collect();
        for s in ItemStatus::ALL {
            for c in &codes {
                for attempts in 0..=MAX_ATTEMPTS + 1 {
                    let fixable = match s {
                        ItemStatus::Expired | ItemStatus::Cancelled => true,
                        ItemStatus::Failed => {
                            !matches!(c, Some(k) if NON_RETRYABLE_CODES.contains(k))
                        }
                        ItemStatus::Pending | ItemStatus::Completed => false,
                    };
                    assert_eq!(
                        retry_takes(s, *c, attempts),
                        fixable && attempts < MAX_ATTEMPTS,
                        "{s} {c:?} {attempts}"
                    );
                }
            }
        }
        // The edges, spelled out.
        assert!(retry_takes(ItemStatus::Failed, None, 1));
        assert!(retry_takes(ItemStatus::Failed, Some("http_500"), 2));
        assert!(!retry_takes(ItemStatus::Failed, Some("http_500"), 3));
        assert!(!retry_takes(ItemStatus::Failed, Some("refusal"), 1));
        assert!(!retry_takes(ItemStatus::Failed, Some("invalid_request"), 1));
        assert!(retry_takes(ItemStatus::Expired, Some("batch_expired"), 2));
        assert!(retry_takes(ItemStatus::Cancelled, Some("cancelled"), 2));
        assert!(!retry_takes(ItemStatus::Cancelled, Some("refusal"), 3));
        assert!(!retry_takes(ItemStatus::Completed, None, 1));
        assert!(!retry_takes(ItemStatus::Pending, None, 1));
    }

    #[test]
    fn unsuccessful_items_are_the_retry_candidates() {
        let u: Vec<&str> = ItemStatus::unsuccessful().map(|s| s.as_str()).collect();
        assert_eq!(u, ["failed", "expired", "cancelled"]);
        for s in ItemStatus::ALL {
            // Nothing outside the candidates is ever taken.
            if !s.is_unsuccessful() {
                assert!(!retry_takes(s, None, 0));
            }
        }
        assert_eq!(
            sql_terminal_list(),
            "'completed', 'failed', 'expired', 'cancelled'"
        );
    }

    #[test]
    fn admit_sends_within_the_limit_and_waits_over_it() {
        let lim = QueueLimit {
            max_tokens: Some(100),
            max_requests: None,
        };
        let job = Enqueued {
            tokens: 40,
            requests: 4,
            jobs: 1,
        };
        let e = |tokens, requests, jobs| Enqueued {
            tokens,
            requests,
            jobs,
        };
        // Nothing enqueued: sent, whatever its size.
        assert_eq!(admit(lim, e(0, 0, 0), job), Admission::Send);
        assert_eq!(admit(lim, e(0, 0, 0), e(1_000, 1, 1)), Admission::Send);
        // At the limit exactly: sent; one token over: waits.
        assert_eq!(admit(lim, e(60, 6, 1), job), Admission::Send);
        let Admission::Wait(why) = admit(lim, e(61, 6, 1), job) else {
            panic!("should wait")
        };
        assert!(
            why.contains("61 of 100 enqueued tokens in use by 1 running job(s), this job needs 40"),
            "{why}"
        );
        // No limit: always sent.
        assert_eq!(
            admit(QueueLimit::default(), e(1 << 40, 1 << 30, 9), job),
            Admission::Send
        );
        // The request limit on its own.
        let req = QueueLimit {
            max_tokens: None,
            max_requests: Some(10),
        };
        assert_eq!(admit(req, e(999, 6, 1), job), Admission::Send);
        let Admission::Wait(why) = admit(req, e(0, 7, 2), job) else {
            panic!("should wait")
        };
        assert!(why.contains("7 of 10 enqueued requests"), "{why}");
        // No overflow.
        assert!(matches!(
            admit(lim, e(i64::MAX, 0, 1), job),
            Admission::Wait(_)
        ));
    }

    #[test]
    fn queue_full_codes_and_messages() {
        assert!(is_queue_full(Some("token_limit_exceeded"), None));
        assert!(is_queue_full(Some("request_limit_exceeded"), None));
        assert!(is_queue_full(
            None,
            Some("Enqueued token limit reached for gpt-4o-mini in organization org-x. Limit: 2,000,000 enqueued tokens.")
        ));
        assert!(is_queue_full(
            Some("x"),
            Some("Enqueued request limit reached for gpt-4o in organization org-x. Limit: 1,000,000 enqueued requests.")
        ));
        assert!(!is_queue_full(
            Some("rate_limit_exceeded"),
            Some("Rate limit reached")
        ));
        assert!(!is_queue_full(None, None));
        for s in all_job_statuses() {
            assert_eq!(
                requeue_after_poll(&s, Some("token_limit_exceeded"), None),
                s == JobStatus::Failed,
                "{s}"
            );
            assert!(
                !requeue_after_poll(&s, Some("invalid_request"), None),
                "{s}"
            );
        }
        assert!(!is_queue_full(Some("invalid_request"), Some("bad line")));
    }

    #[test]
    fn a_refused_job_waits_for_a_finished_job_or_the_backoff() {
        assert_eq!(requeue_backoff(0), Duration::from_secs(60));
        assert_eq!(requeue_backoff(1), Duration::from_secs(60));
        assert_eq!(requeue_backoff(2), Duration::from_secs(120));
        assert_eq!(requeue_backoff(5), Duration::from_secs(960));
        assert_eq!(requeue_backoff(6), Duration::from_secs(1800));
        assert_eq!(requeue_backoff(60), Duration::from_secs(1800));
        // Never refused: ready.
        assert!(requeue_ready(0, None, false, 0));
        // Refused once at t=1000 ms: waits 60 s unless a job ended since.
        assert!(!requeue_ready(1, Some(1_000), false, 1_000));
        assert!(!requeue_ready(1, Some(1_000), false, 60_999));
        assert!(requeue_ready(1, Some(1_000), false, 61_000));
        assert!(requeue_ready(1, Some(1_000), true, 1_001));
        // Twice: two minutes.
        assert!(!requeue_ready(2, Some(0), false, 119_999));
        assert!(requeue_ready(2, Some(0), false, 120_000));
    }

    #[test]
    fn queued_jobs_are_active_and_hold_no_room() {
        assert!(!JobStatus::Queued.is_terminal());
        assert_eq!(
            sql_not_enqueued_list(),
            "'completed', 'failed', 'expired', 'cancelled', 'queued'"
        );
        // Nothing at the provider: cancelled locally.
        assert_eq!(
            cancel_step(&JobStatus::Queued, false, false),
            CancelStep::CancelLocally
        );
    }
}
