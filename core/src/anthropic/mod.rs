//! Anthropic's Message Batches as a [`Provider`]: the endpoints ([`client`]), the wire
//! types and results lines ([`wire`]), the request lines ([`request`]), the lost-create
//! reconcile without metadata ([`reconcile`]), and here the mapping of Anthropic's
//! batch statuses onto [`JobStatus`] (with `lifecycle.rs`, the only place Anthropic's
//! status strings live).
//!
//! How the seam maps: Anthropic has no file upload, so **staging** checks the request
//! JSONL and keeps its local path as the "input file id"; **create** streams that
//! file as the body's `requests` array. A batch's `results_url` stands in the
//! view's `output_file_id` (one results stream holds every outcome; there is no error
//! file), and [`Provider::fetch_results`] takes it.
//!
//! Errors: 429 and 529 (`overloaded_error`) and 5xx are retryable, 4xx are not (the
//! shared HTTP module's rules; a create is repeated on its own only after a 429 or
//! when nothing was sent).

mod client;
pub mod reconcile;
pub mod request;
mod wire;

use std::fmt;
use std::path::Path;

use serde::Deserialize;

use crate::http::{Auth, HttpError, Service};
use crate::lifecycle::JobStatus;
use crate::processor::Processor;
use crate::provider::{
    BatchView, Format, JobLookup, Limits, Provider, ProviderError, RequestCounts as Neutral,
    StagedFile,
};
use crate::requests::{RequestError, RequestOptions};
use crate::results::ParsedResults;

pub use crate::http::ClientOptions;
pub use client::{results_path, AnthropicClient};
pub use wire::{
    errored_code, parse_result_line, unix_seconds, BatchList, MessageBatch, RequestCounts,
};

/// The public Anthropic API (the root the `/v1/...` paths hang off).
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API version sent as `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";
/// Where staged request files are kept, beside the file staged.
pub const STAGED_DIR: &str = "staged";
/// Anthropic's limit on requests in one batch.
pub const MAX_REQUESTS_PER_BATCH: usize = 100_000;
/// Anthropic's limit is 256 MB per batch; a shard stays below this (the create body
/// adds 15 bytes around the file).
pub const MAX_BATCH_BYTES: usize = 250_000_000;

/// Anthropic for the HTTP module: the key in `x-api-key`, `anthropic-version` on every
/// request, no error code that stops a 429's retries.
pub(crate) const SERVICE: Service = Service {
    name: "Anthropic",
    key_env: "ANTHROPIC_API_KEY",
    final_codes: &[],
    auth: Auth::Header("x-api-key"),
    headers: &[("anthropic-version", API_VERSION)],
};

/// A Message Batch's `processing_status`. Statuses this client does not know are kept
/// verbatim in [`ProcessingStatus::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(from = "String")]
pub enum ProcessingStatus {
    /// Requests are being processed.
    InProgress,
    /// A cancel was asked for; in-flight requests are finishing.
    Canceling,
    /// Every request succeeded, errored, was canceled or expired; results are ready.
    Ended,
    /// A status this client does not know.
    Other(String),
}

impl From<String> for ProcessingStatus {
    fn from(s: String) -> Self {
        match s.as_str() {
            "in_progress" => ProcessingStatus::InProgress,
            "canceling" => ProcessingStatus::Canceling,
            "ended" => ProcessingStatus::Ended,
            _ => ProcessingStatus::Other(s),
        }
    }
}

impl ProcessingStatus {
    /// The wire text.
    pub fn as_str(&self) -> &str {
        match self {
            ProcessingStatus::InProgress => "in_progress",
            ProcessingStatus::Canceling => "canceling",
            ProcessingStatus::Ended => "ended",
            ProcessingStatus::Other(s) => s,
        }
    }
}

impl fmt::Display for ProcessingStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl MessageBatch {
    /// Where the batch is on our lifecycle. `ended` says only that processing stopped:
    /// after a cancel it is [`JobStatus::Cancelled`], with requests that expired
    /// [`JobStatus::Expired`], otherwise [`JobStatus::Completed`] (errored requests are
    /// item failures, as in an OpenAI batch that completed with an error file).
    pub fn job_status(&self) -> JobStatus {
        match &self.processing_status {
            ProcessingStatus::InProgress => JobStatus::InProgress,
            ProcessingStatus::Canceling => JobStatus::Cancelling,
            ProcessingStatus::Ended if self.cancel_initiated_at.is_some() => JobStatus::Cancelled,
            ProcessingStatus::Ended if self.request_counts.is_some_and(|c| c.expired > 0) => {
                JobStatus::Expired
            }
            ProcessingStatus::Ended => JobStatus::Completed,
            ProcessingStatus::Other(s) => JobStatus::Other(s.clone()),
        }
    }

    /// The provider-neutral view: no job id (batches carry no metadata), no input file,
    /// the `results_url` as the one result file.
    pub fn to_view(&self) -> BatchView {
        let ended = self.processing_status == ProcessingStatus::Ended;
        BatchView {
            id: self.id.clone(),
            status: self.job_status(),
            provider_status: self.processing_status.as_str().to_string(),
            job_id: None,
            input_file_id: None,
            output_file_id: if ended {
                self.results_url.clone()
            } else {
                None
            },
            error_file_id: None,
            request_counts: self.request_counts.map(|c| Neutral {
                total: c.total(),
                completed: c.succeeded,
                failed: c.errored + c.canceled + c.expired,
            }),
            errors: Vec::new(),
            created_at: self.created_at.as_deref().and_then(unix_seconds),
            finished_at: self.ended_at.as_deref().and_then(unix_seconds),
        }
    }
}

/// Anthropic's Message Batches behind the [`Provider`] seam.
#[derive(Debug)]
pub struct AnthropicProvider {
    client: AnthropicClient,
}

impl AnthropicProvider {
    /// A provider talking to `base_url` (such as [`DEFAULT_BASE_URL`]) with `api_key`.
    pub fn new(
        base_url: &str,
        api_key: String,
        opts: ClientOptions,
    ) -> Result<Self, ProviderError> {
        Ok(AnthropicProvider {
            client: AnthropicClient::new(base_url, api_key, opts)?,
        })
    }

    /// The client underneath.
    pub fn client(&self) -> &AnthropicClient {
        &self.client
    }

    fn staged_shape(&self, path: &Path) -> Result<request::StagedShape, ProviderError> {
        let local = |source| HttpError::LocalIo {
            service: SERVICE.name,
            op: "stage requests",
            what: "cannot read",
            path: path.to_path_buf(),
            source,
        };
        let shape = request::check_jsonl_file(path)
            .map_err(local)?
            .map_err(|detail| HttpError::InvalidArgument {
                service: SERVICE.name,
                detail,
            })?;
        if shape.lines > MAX_REQUESTS_PER_BATCH as u64 || shape.body_bytes > 256 * 1024 * 1024 {
            return Err(HttpError::InvalidArgument {
                service: SERVICE.name,
                detail: format!(
                    "the request file holds {} requests in {} bytes, more than one batch takes \
                     ({MAX_REQUESTS_PER_BATCH} requests, 256 MB)",
                    shape.lines, shape.file_bytes
                ),
            });
        }
        Ok(shape)
    }

    /// The batch of a create whose answer was lost (see [`reconcile`]): batches created
    /// since `lost.sent_from` with `lost.requests` requests that `owned` does not claim;
    /// an ended candidate is decided by its results. `Ok(None)` when none fits.
    pub fn find_lost_create(
        &self,
        lost: &reconcile::LostCreate<'_>,
        owned: &dyn Fn(&str) -> bool,
        now: i64,
    ) -> Result<Option<BatchView>, ProviderError> {
        let stop_before = lost.sent_from.saturating_sub(reconcile::CLOCK_SLACK_SECS);
        let mut seen: Vec<MessageBatch> = Vec::new();
        self.client.scan_batches(|b| {
            let created = b.created_at.as_deref().and_then(unix_seconds);
            if created.is_some_and(|t| t < stop_before) {
                return false;
            }
            seen.push(b.clone());
            true
        })?;
        let listed: Vec<reconcile::Listed> = seen
            .iter()
            .map(|b| reconcile::Listed {
                id: b.id.clone(),
                created_at: b.created_at.as_deref().and_then(unix_seconds),
                requests: b.request_counts.map(|c| c.total()),
            })
            .collect();
        let ids = match reconcile::find_lost_create(lost, &listed, owned, now) {
            reconcile::Finding::One(id) => vec![id],
            reconcile::Finding::Several(ids) => ids,
            reconcile::Finding::WaitUntil(_) | reconcile::Finding::NotCreated => return Ok(None),
        };
        let mut open = Vec::new();
        for id in &ids {
            let Some(b) = seen.iter().find(|b| &b.id == id) else {
                continue;
            };
            match (&b.processing_status, b.results_url.as_deref()) {
                (ProcessingStatus::Ended, Some(url)) => {
                    let data = self.client.download_results(url, 512 * 1024 * 1024)?;
                    let cids = data
                        .split(|c| *c == b'\n')
                        .filter_map(|l| serde_json::from_slice::<serde_json::Value>(l).ok())
                        .filter_map(|v| v.get("custom_id")?.as_str().map(str::to_string))
                        .collect::<Vec<_>>();
                    if reconcile::results_owner(lost.job_id, cids.iter().map(String::as_str))
                        == reconcile::Owner::Ours
                    {
                        return Ok(Some(b.to_view()));
                    }
                }
                _ => open.push(b),
            }
        }
        match open.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one.to_view())),
            many => {
                Err(HttpError::Undecided {
                    service: SERVICE.name,
                    detail: format!(
                    "{} running batches ({}) could be job {}'s lost create; nothing is created \
                     while one could be: their results tell which once they end (refresh again \
                     then)",
                    many.len(),
                    many.iter().map(|b| b.id.as_str()).collect::<Vec<_>>().join(", "),
                    lost.job_id
                ),
                })
            }
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Anthropic's batch files as a [`Format`]: at most 100,000 requests or 250 MB (the API
/// takes 256 MB per create body); request lines by [`request::write_request_line`],
/// result lines by [`parse_result_line`].
#[derive(Debug, Clone, Copy)]
pub struct AnthropicJsonl;

impl Format for AnthropicJsonl {
    fn limits(&self) -> Limits {
        Limits {
            max_requests: MAX_REQUESTS_PER_BATCH,
            max_bytes: MAX_BATCH_BYTES,
        }
    }

    fn check_options(&self, opts: &RequestOptions) -> Result<(), RequestError> {
        opts.validate_common()?;
        request::check_options(opts)?;
        Ok(())
    }

    fn write_line(
        &self,
        out: &mut Vec<u8>,
        custom_id: &str,
        processor: &Processor,
        user_text: &str,
        opts: &RequestOptions,
    ) -> Result<usize, RequestError> {
        let a = request::AnthropicOptions::from_request(opts, processor)?;
        Ok(request::write_request_line(
            out, custom_id, processor, user_text, &a,
        )?)
    }

    fn parse_results(&self, files: &[&[u8]], processor: &Processor) -> ParsedResults {
        crate::results::parse_files_with(files, processor, parse_result_line)
    }
}

impl Provider for AnthropicProvider {
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
        &AnthropicJsonl
    }

    /// Nothing is uploaded: the JSONL at `path` is checked and kept as
    /// `staged/<filename>` beside it (a hard link, else a copy), which outlives the
    /// caller's file until the batch is recorded ([`Provider::input_consumed`]) or
    /// surely not created ([`Provider::delete_input`]): a create sent again later (a
    /// queued job, one whose create was never sent) reads it. Its path is the
    /// "input file id".
    fn stage_input(&self, path: &Path, filename: &str) -> Result<StagedFile, ProviderError> {
        self.staged_shape(path)?;
        let local = |what: &'static str, at: &Path, source| HttpError::LocalIo {
            service: SERVICE.name,
            op: "stage requests",
            what,
            path: at.to_path_buf(),
            source,
        };
        let dir = path.parent().unwrap_or(Path::new(".")).join(STAGED_DIR);
        std::fs::create_dir_all(&dir).map_err(|e| local("cannot create", &dir, e))?;
        let kept = dir.join(Path::new(filename).file_name().unwrap_or_default());
        let _ = std::fs::remove_file(&kept);
        if std::fs::hard_link(path, &kept).is_err() {
            std::fs::copy(path, &kept).map_err(|e| local("cannot copy to", &kept, e))?;
        }
        let id = kept.to_str().ok_or_else(|| HttpError::InvalidArgument {
            service: SERVICE.name,
            detail: format!("the request file path {} is not UTF-8", kept.display()),
        })?;
        Ok(StagedFile {
            id: id.to_string(),
            created_at: None,
        })
    }

    /// Streams the staged JSONL (its path is `input_file_id`) as the create body. The
    /// job id travels inside every `custom_id`, not as metadata.
    fn create(
        &self,
        input_file_id: &str,
        _job_id: &str,
        before_attempt: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<BatchView, ProviderError> {
        let path = Path::new(input_file_id);
        self.staged_shape(path)?;
        self.client
            .create_batch(path, before_attempt)
            .map(|b| b.to_view())
    }

    /// Without metadata: the one batch created since `created_after` with the job's
    /// number of requests that no other job owns, confirmed by its results once ended
    /// (see [`AnthropicProvider::find_lost_create`]).
    fn find_for_job(&self, job: &JobLookup<'_>) -> Result<Option<BatchView>, ProviderError> {
        let now = now_secs();
        let lost = reconcile::LostCreate {
            job_id: job.job_id,
            requests: job.requests,
            sent_from: job.created_after.unwrap_or(0),
            land_by: now,
        };
        self.find_lost_create(&lost, job.owned, now)
    }

    fn fences_creates(&self) -> bool {
        false
    }

    /// The staged copy is no longer needed once the batch is recorded.
    fn input_consumed(&self, input_file_id: &str) {
        let _ = std::fs::remove_file(input_file_id);
    }

    /// Nothing is uploaded at Anthropic: there is nothing to find.
    fn find_inputs_named(
        &self,
        _filename: &str,
        _created_after: Option<i64>,
    ) -> Result<Vec<StagedFile>, ProviderError> {
        Ok(Vec::new())
    }

    fn poll(&self, batch_id: &str) -> Result<BatchView, ProviderError> {
        self.client.retrieve_batch(batch_id).map(|b| b.to_view())
    }

    fn cancel(&self, batch_id: &str) -> Result<BatchView, ProviderError> {
        self.client.cancel_batch(batch_id).map(|b| b.to_view())
    }

    /// `file_id` is the batch's `results_url`.
    fn fetch_results(&self, file_id: &str, max_bytes: u64) -> Result<Vec<u8>, ProviderError> {
        self.client.download_results(file_id, max_bytes)
    }

    /// Nothing was uploaded: the staged local copy is removed.
    fn delete_input(&self, file_id: &str) -> Result<(), ProviderError> {
        match std::fs::remove_file(file_id) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(HttpError::LocalIo {
                service: SERVICE.name,
                op: "delete staged requests",
                what: "cannot remove",
                path: file_id.into(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn batch(status: &str, cancel: bool, expired: u64) -> MessageBatch {
        serde_json::from_value(serde_json::json!({
            "id": "msgbatch_1", "type": "message_batch", "processing_status": status,
            "request_counts": {"processing": 0, "succeeded": 2, "errored": 1, "canceled": 1, "expired": expired},
            "created_at": "2026-01-01T00:00:00Z",
            "ended_at": if status == "ended" { Some("2026-01-01T00:10:00Z") } else { None },
            "cancel_initiated_at": if cancel { Some("2026-01-01T00:05:00Z") } else { None },
            "results_url": if status == "ended" { Some("https://api.anthropic.com/v1/messages/batches/msgbatch_1/results") } else { None },
        }))
        .unwrap()
    }

    #[test]
    fn every_status_maps_onto_the_lifecycle() {
        assert_eq!(
            batch("in_progress", false, 0).job_status(),
            JobStatus::InProgress
        );
        assert_eq!(
            batch("canceling", true, 0).job_status(),
            JobStatus::Cancelling
        );
        assert_eq!(batch("ended", true, 0).job_status(), JobStatus::Cancelled);
        assert_eq!(batch("ended", false, 3).job_status(), JobStatus::Expired);
        assert_eq!(batch("ended", false, 0).job_status(), JobStatus::Completed);
        assert_eq!(
            batch("paused", false, 0).job_status(),
            JobStatus::Other("paused".into())
        );
        for s in ["in_progress", "canceling", "ended", "paused"] {
            assert_eq!(ProcessingStatus::from(s.to_string()).as_str(), s);
        }
        assert!(batch("ended", false, 0).job_status().is_terminal());
        assert!(!batch("canceling", true, 0).job_status().is_terminal());
    }

    #[test]
    fn a_batch_becomes_a_neutral_view() {
        let v = batch("ended", false, 2).to_view();
        assert_eq!(
            (v.id.as_str(), v.provider_status.as_str()),
            ("msgbatch_1", "ended")
        );
        assert_eq!(v.job_id, None);
        assert_eq!(
            v.output_file_id.as_deref(),
            Some("https://api.anthropic.com/v1/messages/batches/msgbatch_1/results")
        );
        assert_eq!(v.error_file_id, None);
        assert_eq!(
            v.request_counts,
            Some(Neutral {
                total: 6,
                completed: 2,
                failed: 4
            })
        );
        assert_eq!(
            (v.created_at, v.finished_at),
            (Some(1_767_225_600), Some(1_767_226_200))
        );
        let v = batch("in_progress", false, 0).to_view();
        assert_eq!((v.output_file_id, v.finished_at), (None, None));
    }

    #[test]
    fn limits_and_settings() {
        let p = AnthropicProvider::new(
            "http://127.0.0.1:9",
            "sk-ant-x".into(),
            ClientOptions::default(),
        )
        .unwrap();
        assert_eq!(p.name(), "Anthropic");
        assert_eq!(p.format().limits().max_requests, 100_000);
        assert!(p.format().limits().max_bytes < 256 * 1024 * 1024);
        let e = AnthropicProvider::new("http://example.com", "k".into(), ClientOptions::default())
            .unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
        let e = AnthropicProvider::new(DEFAULT_BASE_URL, " ".into(), ClientOptions::default())
            .unwrap_err();
        assert!(e.to_string().contains("ANTHROPIC_API_KEY"), "{e}");
    }
}
