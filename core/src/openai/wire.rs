//! OpenAI's wire types: the JSON objects of the Files and Batches APIs, as serde
//! reads them. Unknown fields are ignored; nullable or missing fields are `Option`.
//! (The batch status strings live in [`super::BatchStatus`].)

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use super::{BatchStatus, JOB_ID_METADATA_KEY};

/// A page of `GET /files`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FileList {
    /// The files.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: Vec<FileObject>,
    /// Id of the last file of the page.
    #[serde(default)]
    pub last_id: Option<String>,
    /// Whether more pages follow.
    #[serde(default)]
    pub has_more: bool,
}

/// An OpenAI file object. Unknown fields are ignored; all but `id` optional.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileObject {
    /// `file-...`
    pub id: String,
    /// Always `file`.
    #[serde(default)]
    pub object: Option<String>,
    /// Size in bytes.
    #[serde(default)]
    pub bytes: Option<u64>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// The name given at upload.
    #[serde(default)]
    pub filename: Option<String>,
    /// `batch`, `batch_output`, ...
    #[serde(default)]
    pub purpose: Option<String>,
    /// Deprecated by OpenAI: `uploaded`, `processed`, `error`.
    #[serde(default)]
    pub status: Option<String>,
    /// Deprecated by OpenAI.
    #[serde(default)]
    pub status_details: Option<String>,
}

/// The answer of `DELETE /files/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDeleted {
    /// The file id.
    pub id: String,
    /// Always `file`.
    #[serde(default)]
    pub object: Option<String>,
    /// Whether the file is gone.
    #[serde(default)]
    pub deleted: bool,
}

/// An OpenAI batch object. Unknown fields are ignored; everything except
/// `id` and `status` is optional because it is nullable or may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// `batch_...`
    pub id: String,
    /// Lifecycle status.
    pub status: BatchStatus,
    /// Always `batch`.
    #[serde(default)]
    pub object: Option<String>,
    /// Per-request endpoint, such as `/v1/chat/completions`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Model, when OpenAI reports it.
    #[serde(default)]
    pub model: Option<String>,
    /// `24h`.
    #[serde(default)]
    pub completion_window: Option<String>,
    /// The uploaded JSONL.
    #[serde(default)]
    pub input_file_id: Option<String>,
    /// Results of the successful requests.
    #[serde(default)]
    pub output_file_id: Option<String>,
    /// Results of the failed requests.
    #[serde(default)]
    pub error_file_id: Option<String>,
    /// Batch-level errors (validation failures).
    #[serde(default)]
    pub errors: Option<BatchErrors>,
    /// Progress counters.
    #[serde(default)]
    pub request_counts: Option<RequestCounts>,
    /// Key-value pairs given at creation (non-string values are kept as JSON text).
    #[serde(default, deserialize_with = "lenient_metadata")]
    pub metadata: Option<BTreeMap<String, String>>,
    /// Token usage (batches created after September 2025).
    #[serde(default)]
    pub usage: Option<BatchUsage>,
    /// Unix seconds.
    #[serde(default)]
    pub created_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub in_progress_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub expires_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub finalizing_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub completed_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub failed_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub expired_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub cancelling_at: Option<i64>,
    /// Unix seconds.
    #[serde(default)]
    pub cancelled_at: Option<i64>,
}

impl Batch {
    /// Our job id, from `metadata.ai_batch_job_id`.
    pub fn job_id(&self) -> Option<&str> {
        self.metadata
            .as_ref()
            .and_then(|m| m.get(JOB_ID_METADATA_KEY))
            .map(String::as_str)
    }
}

/// `errors` of a batch.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchErrors {
    /// Always `list`.
    #[serde(default)]
    pub object: Option<String>,
    /// The errors.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: Vec<BatchError>,
}

/// One batch-level error.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchError {
    /// Error code.
    #[serde(default)]
    pub code: Option<String>,
    /// Line of the input file, when it applies.
    #[serde(default)]
    pub line: Option<u64>,
    /// Human-readable message.
    #[serde(default)]
    pub message: Option<String>,
    /// Offending parameter, when it applies.
    #[serde(default)]
    pub param: Option<String>,
}

/// `request_counts` of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Requests in the batch.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total: u64,
    /// Requests that completed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub completed: u64,
    /// Requests that failed.
    #[serde(default, deserialize_with = "null_as_default")]
    pub failed: u64,
}

/// `usage` of a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchUsage {
    /// Input tokens.
    #[serde(default, deserialize_with = "null_as_default")]
    pub input_tokens: u64,
    /// Breakdown of the input tokens.
    #[serde(default)]
    pub input_tokens_details: Option<InputTokensDetails>,
    /// Output tokens.
    #[serde(default, deserialize_with = "null_as_default")]
    pub output_tokens: u64,
    /// Breakdown of the output tokens.
    #[serde(default)]
    pub output_tokens_details: Option<OutputTokensDetails>,
    /// Total tokens.
    #[serde(default, deserialize_with = "null_as_default")]
    pub total_tokens: u64,
}

/// Input token breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InputTokensDetails {
    /// Tokens served from the prompt cache.
    #[serde(default, deserialize_with = "null_as_default")]
    pub cached_tokens: u64,
}

/// Output token breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct OutputTokensDetails {
    /// Reasoning tokens.
    #[serde(default, deserialize_with = "null_as_default")]
    pub reasoning_tokens: u64,
}

/// One page of `GET /batches`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BatchList {
    /// Always `list`.
    #[serde(default)]
    pub object: Option<String>,
    /// The batches, newest first.
    #[serde(default, deserialize_with = "null_as_default")]
    pub data: Vec<Batch>,
    /// Id of the first batch of the page.
    #[serde(default)]
    pub first_id: Option<String>,
    /// Id of the last batch of the page: the `after` cursor of the next page.
    #[serde(default)]
    pub last_id: Option<String>,
    /// More pages follow.
    #[serde(default, deserialize_with = "null_as_default")]
    pub has_more: bool,
}

fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn lenient_metadata<'de, D>(d: D) -> Result<Option<BTreeMap<String, String>>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, serde_json::Value>> = Option::deserialize(d)?;
    Ok(raw.map(|m| {
        m.into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::Null => None,
                serde_json::Value::String(s) => Some((k, s)),
                other => Some((k, other.to_string())),
            })
            .collect()
    }))
}
