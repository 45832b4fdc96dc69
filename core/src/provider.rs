//! The provider seam: what ai_batch needs from a Batch API, in provider-neutral
//! terms. An operation (submit, refresh, cancel, reconcile) holds a
//! `Box<dyn Provider>` from [`for_name`] and never sees a provider's wire types.
//!
//! A provider maps its batch statuses onto [`JobStatus`] and its failures onto the
//! neutral classification of [`ProviderError`] (retryable? may the request have
//! reached the provider? not found? status, code, request id), all in its own
//! module (`openai/mod.rs` for OpenAI, `anthropic/mod.rs` for Anthropic).

use std::fmt;
use std::path::Path;

use crate::lifecycle::JobStatus;
use crate::processor::Processor;
use crate::requests::{RequestError, RequestOptions};
use crate::results::ParsedResults;

pub use crate::http::{ClientOptions, HttpError as ProviderError};

/// How much one batch may hold at this provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most requests in one batch file.
    pub max_requests: usize,
    /// The largest batch file, in bytes.
    pub max_bytes: usize,
}

/// Progress counters of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RequestCounts {
    /// Requests in the batch.
    pub total: u64,
    /// Requests that completed.
    pub completed: u64,
    /// Requests that failed.
    pub failed: u64,
}

/// One batch-level error (a validation failure, usually naming a line of the input).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchErrorLine {
    /// Error code.
    pub code: Option<String>,
    /// Line of the input file (1-based), when it applies.
    pub line: Option<u64>,
    /// Human-readable message.
    pub message: Option<String>,
    /// Offending parameter, when it applies.
    pub param: Option<String>,
}

/// A batch as the operations see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchView {
    /// The provider's batch id.
    pub id: String,
    /// Where the batch is, on our lifecycle.
    pub status: JobStatus,
    /// The provider's own status text, for messages.
    pub provider_status: String,
    /// Our job id, when the provider echoes it back.
    pub job_id: Option<String>,
    /// The staged input file.
    pub input_file_id: Option<String>,
    /// Results of the successful requests.
    pub output_file_id: Option<String>,
    /// Results of the failed requests.
    pub error_file_id: Option<String>,
    /// Progress counters.
    pub request_counts: Option<RequestCounts>,
    /// Batch-level errors.
    pub errors: Vec<BatchErrorLine>,
    /// Unix seconds.
    pub created_at: Option<i64>,
    /// Unix seconds at which the batch became terminal, when it is.
    pub finished_at: Option<i64>,
}

/// What is known of a job whose batch is looked for ([`Provider::find_for_job`]):
/// OpenAI finds it by the job id in its metadata or by its input file; Anthropic,
/// whose batches carry neither, by its number of requests and creation time among the
/// batches no other job owns, confirmed by the job id inside the results' `custom_id`s.
pub struct JobLookup<'a> {
    /// Our job id.
    pub job_id: &'a str,
    /// The staged input the batch was created from, when known.
    pub input_file_id: Option<&'a str>,
    /// Unix seconds: no earlier than this was a create sent.
    pub created_after: Option<i64>,
    /// Requests in the job's batch.
    pub requests: u64,
    /// Whether another job of ours already owns a provider batch id.
    pub owned: &'a dyn Fn(&str) -> bool,
}

impl fmt::Debug for JobLookup<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JobLookup")
            .field("job_id", &self.job_id)
            .field("input_file_id", &self.input_file_id)
            .field("created_after", &self.created_after)
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

/// A file staged at the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedFile {
    /// The provider's file id.
    pub id: String,
    /// Unix seconds.
    pub created_at: Option<i64>,
}

/// A provider's batch files: how much one may hold, the request line it takes, the
/// result lines it gives back. No network and no key, so a dry run encodes lines too.
pub trait Format: Sync + fmt::Debug {
    /// How much one batch file may hold.
    fn limits(&self) -> Limits;
    /// Checks a job's options against what this provider takes, before any line is
    /// written (bind time): a setting with no equivalent here is refused.
    fn check_options(&self, opts: &RequestOptions) -> Result<(), RequestError>;
    /// Appends one request line (with its `\n`) asking `processor`'s question about
    /// an issue whose user message is `user_text`; returns the bytes appended. On error
    /// nothing is appended.
    fn write_line(
        &self,
        out: &mut Vec<u8>,
        custom_id: &str,
        processor: &Processor,
        user_text: &str,
        opts: &RequestOptions,
    ) -> Result<usize, RequestError>;
    /// Reads the result files of a batch (on every core), validating each answer
    /// against `processor`.
    fn parse_results(&self, files: &[&[u8]], processor: &Processor) -> ParsedResults;
}

/// What ai_batch needs from a Batch API. Object-safe: operations hold a
/// `Box<dyn Provider>`. Every call is blocking and applies the HTTP module's
/// timeouts and retry rules.
pub trait Provider: Send + Sync + fmt::Debug {
    /// The provider's name in messages (`OpenAI`).
    fn name(&self) -> &'static str;
    /// The validated base URL.
    fn base_url(&self) -> &str;
    /// The timeouts and retry settings in use.
    fn options(&self) -> &ClientOptions;
    /// Its batch files' format.
    fn format(&self) -> &'static dyn Format;
    /// Uploads the request file at `path` under `filename`; returns its file id.
    /// Not repeated once it may have reached the provider.
    fn stage_input(&self, path: &Path, filename: &str) -> Result<StagedFile, ProviderError>;
    /// Creates the batch of our job `job_id` from a staged file (the job id travels
    /// as metadata, so [`Provider::find_for_job`] can find it). `before_attempt` runs
    /// just before each attempt is sent; its error stops the create, unsent.
    fn create(
        &self,
        input_file_id: &str,
        job_id: &str,
        before_attempt: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<BatchView, ProviderError>;
    /// The batch of a job whose create may have been lost (see [`JobLookup`]), newest
    /// first, not reading back past `created_after`.
    fn find_for_job(&self, job: &JobLookup<'_>) -> Result<Option<BatchView>, ProviderError>;
    /// Whether a create still in flight can be stopped from making a batch, by
    /// deleting its staged input ([`Provider::delete_input`]): OpenAI refuses a create
    /// naming a deleted file. Anthropic cannot be fenced: a lost create is decided
    /// only by waiting past the window in which it could land.
    fn fences_creates(&self) -> bool;
    /// The batch made from a staged input is recorded: a provider that keeps a local
    /// copy of staged input (Anthropic) drops it; one whose file is the batch's
    /// input at the provider (OpenAI) keeps it. Best effort.
    fn input_consumed(&self, input_file_id: &str);
    /// Staged input files named `filename`, created no earlier than `created_after`.
    fn find_inputs_named(
        &self,
        filename: &str,
        created_after: Option<i64>,
    ) -> Result<Vec<StagedFile>, ProviderError>;
    /// The batch now.
    fn poll(&self, batch_id: &str) -> Result<BatchView, ProviderError>;
    /// Asks the provider to cancel the batch. Not repeated after a failure that may
    /// have reached it: poll to see.
    fn cancel(&self, batch_id: &str) -> Result<BatchView, ProviderError>;
    /// A result file's bytes (at most `max_bytes`), scrubbed of the API key.
    fn fetch_results(&self, file_id: &str, max_bytes: u64) -> Result<Vec<u8>, ProviderError>;
    /// Deletes a staged input file.
    fn delete_input(&self, file_id: &str) -> Result<(), ProviderError>;
}
