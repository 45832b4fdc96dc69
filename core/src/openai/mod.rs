//! OpenAI as a [`Provider`]: the Files and Batches APIs ([`client`]), their wire
//! types ([`wire`]), and here the mapping of OpenAI's batch statuses onto
//! [`JobStatus`] (with `lifecycle.rs`, the only place OpenAI's status strings
//! live) and of its errors onto the neutral classification of [`ProviderError`].
//!
//! The HTTP conversation itself (timeouts, retries, `Retry-After`, key scrubbing,
//! streaming) is the shared [`crate::http`] module's.

mod client;
mod jsonl;
mod wire;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::http::{HttpError, Service};
use crate::lifecycle::JobStatus;
use crate::provider::{
    BatchErrorLine, BatchView, Format, JobLookup, Provider, ProviderError,
    RequestCounts as NeutralCounts, StagedFile,
};

pub use crate::http::{ApiError, ClientOptions, TransportError, TransportKind};
pub(crate) use client::OpenAiClient;
pub use jsonl::OpenAiJsonl;
pub(crate) use wire::Batch;

/// Everything that can go wrong talking to OpenAI (the HTTP module's error, whose
/// messages name OpenAI). No variant ever holds the API key.
pub type OpenAiError = HttpError;

/// The public OpenAI API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The metadata key carrying our job id on every batch we create.
pub const JOB_ID_METADATA_KEY: &str = "ai_batch_job_id";
/// The only completion window the Batch API offers today.
pub const COMPLETION_WINDOW_24H: &str = "24h";
/// The batch endpoint for chat-completions requests.
pub const CHAT_COMPLETIONS_ENDPOINT: &str = "/v1/chat/completions";

/// OpenAI for the HTTP module: its name in messages, where users set the key, and
/// the error code no retry gets past (`insufficient_quota`: out of credit).
pub(crate) const SERVICE: Service = Service {
    name: "OpenAI",
    key_env: "OPENAI_API_KEY",
    final_codes: &["insufficient_quota"],
    auth: crate::http::Auth::Bearer,
    headers: &[],
};

/// A batch's lifecycle status. Statuses this client does not know yet are
/// kept verbatim in [`BatchStatus::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum BatchStatus {
    /// The input file is being validated.
    Validating,
    /// Validation failed; see [`Batch::errors`].
    Failed,
    /// Requests are being processed.
    InProgress,
    /// Results are being prepared.
    Finalizing,
    /// Done; results in the output / error files.
    Completed,
    /// The completion window passed; partial results may exist.
    Expired,
    /// Cancel requested; finishing in-flight requests.
    Cancelling,
    /// Cancelled; partial results may exist.
    Cancelled,
    /// A status this client does not know.
    Other(String),
}

impl BatchStatus {
    /// The wire text.
    pub fn as_str(&self) -> &str {
        match self {
            BatchStatus::Validating => "validating",
            BatchStatus::Failed => "failed",
            BatchStatus::InProgress => "in_progress",
            BatchStatus::Finalizing => "finalizing",
            BatchStatus::Completed => "completed",
            BatchStatus::Expired => "expired",
            BatchStatus::Cancelling => "cancelling",
            BatchStatus::Cancelled => "cancelled",
            BatchStatus::Other(s) => s,
        }
    }

    /// The batch will not change any more (`completed`, `failed`, `expired`, `cancelled`).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            BatchStatus::Completed
                | BatchStatus::Failed
                | BatchStatus::Expired
                | BatchStatus::Cancelled
        )
    }
}

impl From<String> for BatchStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "validating" => BatchStatus::Validating,
            "failed" => BatchStatus::Failed,
            "in_progress" => BatchStatus::InProgress,
            "finalizing" => BatchStatus::Finalizing,
            "completed" => BatchStatus::Completed,
            "expired" => BatchStatus::Expired,
            "cancelling" => BatchStatus::Cancelling,
            "cancelled" => BatchStatus::Cancelled,
            _ => BatchStatus::Other(s),
        }
    }
}

impl From<BatchStatus> for String {
    fn from(s: BatchStatus) -> Self {
        match s {
            BatchStatus::Other(s) => s,
            known => known.as_str().to_string(),
        }
    }
}

impl fmt::Display for BatchStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BatchStatus {
    /// Where a batch in this status is on our lifecycle. A status this client does
    /// not know stays [`JobStatus::Other`] (active until it turns terminal).
    pub fn to_job_status(&self) -> JobStatus {
        match self {
            BatchStatus::Validating => JobStatus::Validating,
            BatchStatus::Failed => JobStatus::Failed,
            BatchStatus::InProgress => JobStatus::InProgress,
            BatchStatus::Finalizing => JobStatus::Finalizing,
            BatchStatus::Completed => JobStatus::Completed,
            BatchStatus::Expired => JobStatus::Expired,
            BatchStatus::Cancelling => JobStatus::Cancelling,
            BatchStatus::Cancelled => JobStatus::Cancelled,
            BatchStatus::Other(s) => JobStatus::Other(s.clone()),
        }
    }
}

impl Batch {
    /// The provider-neutral view of this batch.
    pub fn to_view(&self) -> BatchView {
        BatchView {
            id: self.id.clone(),
            status: self.status.to_job_status(),
            provider_status: self.status.as_str().to_string(),
            job_id: self.job_id().map(str::to_string),
            input_file_id: self.input_file_id.clone(),
            output_file_id: self.output_file_id.clone(),
            error_file_id: self.error_file_id.clone(),
            request_counts: self.request_counts.map(|c| NeutralCounts {
                total: c.total,
                completed: c.completed,
                failed: c.failed,
            }),
            errors: self
                .errors
                .iter()
                .flat_map(|e| e.data.iter())
                .map(|d| BatchErrorLine {
                    code: d.code.clone(),
                    line: d.line,
                    message: d.message.clone(),
                    param: d.param.clone(),
                })
                .collect(),
            created_at: self.created_at,
            finished_at: self
                .completed_at
                .or(self.failed_at)
                .or(self.expired_at)
                .or(self.cancelled_at),
        }
    }
}

/// OpenAI's Batch API behind the [`Provider`] seam.
#[derive(Debug)]
pub struct OpenAiProvider {
    client: OpenAiClient,
}

impl OpenAiProvider {
    /// A provider talking to `base_url` (such as [`DEFAULT_BASE_URL`]) with `api_key`.
    pub fn new(
        base_url: &str,
        api_key: String,
        opts: ClientOptions,
    ) -> Result<Self, ProviderError> {
        Ok(OpenAiProvider {
            client: OpenAiClient::new(base_url, api_key, opts)?,
        })
    }
}

impl Provider for OpenAiProvider {
    fn name(&self) -> &'static str {
        SERVICE.name
    }

    fn base_url(&self) -> &str {
        self.client.base_url()
    }

    fn options(&self) -> &ClientOptions {
        self.client.options()
    }

    fn format(&self) -> &'static dyn Format {
        &OpenAiJsonl
    }

    fn stage_input(&self, path: &Path, filename: &str) -> Result<StagedFile, ProviderError> {
        let f = self.client.upload_batch_file(path, filename)?;
        Ok(StagedFile {
            id: f.id,
            created_at: f.created_at,
        })
    }

    fn create(
        &self,
        input_file_id: &str,
        job_id: &str,
        before_attempt: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<BatchView, ProviderError> {
        let metadata = BTreeMap::from([(JOB_ID_METADATA_KEY.to_string(), job_id.to_string())]);
        self.client
            .create_batch_noting(
                input_file_id,
                CHAT_COMPLETIONS_ENDPOINT,
                COMPLETION_WINDOW_24H,
                &metadata,
                before_attempt,
            )
            .map(|b| b.to_view())
    }

    /// By the job id in the batch's metadata, or by its input file (a batch is made
    /// from one file, and each of ours belongs to one job).
    fn find_for_job(&self, job: &JobLookup<'_>) -> Result<Option<BatchView>, ProviderError> {
        Ok(self
            .client
            .find_batch_for_job(job.job_id, job.input_file_id, job.created_after)?
            .map(|b| b.to_view()))
    }

    fn fences_creates(&self) -> bool {
        true
    }

    /// The uploaded file is the batch's input at OpenAI: it stays.
    fn input_consumed(&self, _input_file_id: &str) {}

    fn find_inputs_named(
        &self,
        filename: &str,
        created_after: Option<i64>,
    ) -> Result<Vec<StagedFile>, ProviderError> {
        Ok(self
            .client
            .find_files_named("batch", filename, created_after)?
            .into_iter()
            .map(|f| StagedFile {
                id: f.id,
                created_at: f.created_at,
            })
            .collect())
    }

    fn poll(&self, batch_id: &str) -> Result<BatchView, ProviderError> {
        self.client.retrieve_batch(batch_id).map(|b| b.to_view())
    }

    fn cancel(&self, batch_id: &str) -> Result<BatchView, ProviderError> {
        self.client.cancel_batch(batch_id).map(|b| b.to_view())
    }

    fn fetch_results(&self, file_id: &str, max_bytes: u64) -> Result<Vec<u8>, ProviderError> {
        self.client.download_file_to_vec(file_id, max_bytes)
    }

    fn delete_input(&self, file_id: &str) -> Result<(), ProviderError> {
        self.client.delete_file(file_id).map(|_| ())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn every_status_maps_onto_the_lifecycle() {
        let cases = [
            ("validating", JobStatus::Validating),
            ("failed", JobStatus::Failed),
            ("in_progress", JobStatus::InProgress),
            ("finalizing", JobStatus::Finalizing),
            ("completed", JobStatus::Completed),
            ("expired", JobStatus::Expired),
            ("cancelling", JobStatus::Cancelling),
            ("cancelled", JobStatus::Cancelled),
            ("paused", JobStatus::Other("paused".to_string())),
        ];
        for (text, job) in cases {
            let status = BatchStatus::from(text.to_string());
            assert_eq!(status.as_str(), text);
            assert_eq!(String::from(status.clone()), text);
            assert_eq!(status.to_job_status(), job, "{text}");
            // The text stored for the job is the provider's own.
            assert_eq!(status.to_job_status().as_str(), text);
            assert_eq!(status.is_terminal(), job.is_terminal(), "{text}");
        }
        assert!(matches!(
            BatchStatus::from("in_progress".to_string()),
            BatchStatus::InProgress
        ));
    }

    #[test]
    fn a_batch_becomes_a_neutral_view() {
        let b: Batch = serde_json::from_str(
            r#"{"id":"batch_1","status":"failed","input_file_id":"file-in",
                "output_file_id":null,"error_file_id":"file-err",
                "errors":{"object":"list","data":[{"code":"invalid_json_line","line":3,"message":"bad","param":null}]},
                "request_counts":{"total":2,"completed":0,"failed":2},
                "metadata":{"ai_batch_job_id":"job-1"},"created_at":10,"failed_at":20}"#,
        )
        .unwrap();
        let v = b.to_view();
        assert_eq!(v.id, "batch_1");
        assert_eq!(v.status, JobStatus::Failed);
        assert_eq!(v.provider_status, "failed");
        assert_eq!(v.job_id.as_deref(), Some("job-1"));
        assert_eq!(v.input_file_id.as_deref(), Some("file-in"));
        assert_eq!(v.output_file_id, None);
        assert_eq!(v.error_file_id.as_deref(), Some("file-err"));
        assert_eq!(
            v.request_counts,
            Some(NeutralCounts {
                total: 2,
                completed: 0,
                failed: 2
            })
        );
        assert_eq!(v.errors.len(), 1);
        assert_eq!(v.errors[0].line, Some(3));
        assert_eq!(v.errors[0].code.as_deref(), Some("invalid_json_line"));
        assert_eq!((v.created_at, v.finished_at), (Some(10), Some(20)));
    }
}
