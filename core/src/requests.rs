//! Request building: one JSONL line per issue for the OpenAI Batch API, the
//! `custom_id` scheme that ties a result back to its issue, and the sharding rule
//! that keeps every batch file within the provider's limits.
//!
//! Every line is produced by serde (dynamic strings go through serde_json's escaping);
//! the constant system message and `response_format` are spliced in as pre-serialized
//! [`RawValue`]s prepared once per processor, so a line costs one escape pass over the
//! issue text and nothing more.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::processor::{IssueInput, Processor, ProcessorError};

/// The most requests one OpenAI batch may hold.
pub const MAX_REQUESTS_PER_BATCH: usize = 50_000;
/// The largest batch input file OpenAI accepts ("200 MB").
pub const MAX_BATCH_FILE_BYTES: usize = 200 * 1024 * 1024;
/// The file size [`Sharder::new`] actually splits at: 190,000,000 bytes, which stays
/// below both readings of "200 MB" (200,000,000 and 209,715,200 bytes) with room for
/// the multipart envelope of the upload.
pub const DEFAULT_SHARD_BYTES: usize = 190_000_000;
/// The longest job id [`custom_id`] accepts: 64 (the `custom_id` limit) minus `-i`
/// minus the 20 characters of the longest `i64`.
pub const MAX_JOB_ID_LEN: usize = 42;
/// The endpoint every line targets.
pub const CHAT_COMPLETIONS_URL: &str = "/v1/chat/completions";

/// Errors while building request lines.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RequestError {
    /// The job id cannot be part of a `custom_id`.
    #[error("invalid job id '{}' (expected 1 to 42 characters among A-Z, a-z, 0-9 and _)", crate::text::echo(.0))]
    InvalidJobId(String),
    /// A `custom_id` does not match `^[A-Za-z0-9_-]{1,64}$`.
    #[error("invalid custom_id '{}' (expected 1 to 64 characters among A-Z, a-z, 0-9, _ and -)", crate::text::echo(.0))]
    InvalidCustomId(String),
    /// The model name is empty or unreasonable.
    #[error("invalid model name '{}' (expected a non-empty name of at most 256 characters)", crate::text::echo(.0))]
    InvalidModel(String),
    /// The temperature is not a finite number in 0..=2.
    #[error("invalid temperature {0} (expected a number from 0 to 2)")]
    InvalidTemperature(f64),
    /// `max_output_tokens` is zero.
    #[error("invalid max_output_tokens 0 (expected at least 1, or NULL for the model's default)")]
    InvalidMaxOutputTokens,
    /// `reasoning_effort` is not one of [`REASONING_EFFORTS`].
    #[error("invalid reasoning_effort '{0}' (expected one of: none, minimal, low, medium, high, xhigh, max)")]
    InvalidReasoningEffort(String),
    /// `reasoning_effort` was given for a model that does not reason.
    #[error("reasoning_effort is only for reasoning models (o1, o3, o4-mini, the gpt-5 family); '{0}' is not one (leave reasoning_effort out, or pick a reasoning model)")]
    ReasoningEffortNotSupported(String),
    /// One line alone exceeds the shard byte limit, so it can never be sent.
    #[error("request for issue {issue_id} is {bytes} bytes, more than a batch file may hold ({limit} bytes)")]
    LineTooLarge {
        /// The issue whose request is too large.
        issue_id: i64,
        /// The size of its line.
        bytes: usize,
        /// The shard byte limit.
        limit: usize,
    },
    /// The processor could not be prepared (a bug).
    #[error(transparent)]
    Processor(#[from] ProcessorError),
    /// A provider's line writer refused the job's settings (one it has no equivalent for).
    #[error("{0}")]
    Provider(String),
    /// serde_json failed to write a line (should not happen when writing to memory).
    #[error("could not serialize a request line: {0}")]
    Serialize(String),
}

/// Errors from [`parse_custom_id`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CustomIdError {
    /// The id belongs to another job.
    #[error("custom_id '{custom_id}' does not belong to job '{job_id}'")]
    OtherJob {
        /// The id found in the results.
        custom_id: String,
        /// The job being collected.
        job_id: String,
    },
    /// The id has the job's prefix but no well-formed issue id after it.
    #[error("custom_id '{0}' is malformed (expected <job_id>-i<issue id>)")]
    Malformed(String),
}

fn is_job_id_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether `s` matches `^[A-Za-z0-9_-]{1,64}$`, the `custom_id` shape both OpenAI and
/// Anthropic accept.
pub fn is_valid_custom_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Checks that a job id can be embedded in a `custom_id` (see [`MAX_JOB_ID_LEN`]).
pub fn validate_job_id(job_id: &str) -> Result<(), RequestError> {
    if (1..=MAX_JOB_ID_LEN).contains(&job_id.len()) && job_id.bytes().all(is_job_id_char) {
        Ok(())
    } else {
        Err(RequestError::InvalidJobId(job_id.to_string()))
    }
}

/// The `custom_id` of one issue in one job: `{job_id}-i{issue_id}`, unique within the
/// batch (issue ids are unique) and matching `^[A-Za-z0-9_-]{1,64}$` whenever
/// [`validate_job_id`] accepts the job id (job ids contain no `-`, so the split back
/// is unambiguous). [`write_request_line`] re-checks the result.
pub fn custom_id(job_id: &str, issue_id: i64) -> String {
    format!("{job_id}-i{issue_id}")
}

/// The issue id inside a `custom_id` made by [`custom_id`] for `job_id`.
pub fn parse_custom_id(job_id: &str, custom_id: &str) -> Result<i64, CustomIdError> {
    let rest = custom_id
        .strip_prefix(job_id)
        .and_then(|r| r.strip_prefix("-i"))
        .ok_or_else(|| {
            if custom_id.starts_with(job_id) {
                CustomIdError::Malformed(custom_id.to_string())
            } else {
                CustomIdError::OtherJob {
                    custom_id: custom_id.to_string(),
                    job_id: job_id.to_string(),
                }
            }
        })?;
    let id: i64 = rest
        .parse()
        .map_err(|_| CustomIdError::Malformed(custom_id.to_string()))?;
    // Only the canonical spelling (no '+', no leading zeros) is ours.
    if id.to_string() != rest {
        return Err(CustomIdError::Malformed(custom_id.to_string()));
    }
    Ok(id)
}

/// Whose results a results file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Every `custom_id` is one of this job's.
    Ours,
    /// None is: another job's (or another program's) batch.
    Theirs,
    /// Some are ours and some not (never made by ai_batch), or there were none.
    Unclear,
}

/// Whether the `custom_id`s of a batch's results belong to `job_id` (a batch found
/// without metadata is confirmed by its results: `anthropic::reconcile`, collect).
pub fn results_owner<'a>(job_id: &str, custom_ids: impl IntoIterator<Item = &'a str>) -> Owner {
    let (mut ours, mut theirs) = (0u64, 0u64);
    for cid in custom_ids {
        if parse_custom_id(job_id, cid).is_ok() {
            ours += 1;
        } else {
            theirs += 1;
        }
    }
    match (ours, theirs) {
        (0, 0) => Owner::Unclear,
        (_, 0) => Owner::Ours,
        (0, _) => Owner::Theirs,
        _ => Owner::Unclear,
    }
}

/// Per-job request options.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestOptions {
    /// The model, e.g. `gpt-4.1-mini`.
    pub model: String,
    /// Sampling temperature; omitted from the request when `None` (reasoning models
    /// such as o3 and gpt-5 reject any value other than their default).
    pub temperature: Option<f64>,
    /// Sent as `max_completion_tokens`; omitted when `None`. For reasoning models this
    /// cap includes the hidden reasoning tokens.
    pub max_output_tokens: Option<u32>,
    /// Sent as `reasoning_effort` (reasoning models only); omitted when `None`.
    pub reasoning_effort: Option<String>,
}

/// The values OpenAI's Chat Completions API takes for `reasoning_effort` (which of them a
/// given reasoning model accepts is the provider's call: e.g. `none` only from gpt-5.1).
pub const REASONING_EFFORTS: [&str; 7] =
    ["none", "minimal", "low", "medium", "high", "xhigh", "max"];

impl RequestOptions {
    /// Options for `model` with no temperature and no output cap.
    pub fn new(model: impl Into<String>) -> Self {
        RequestOptions {
            model: model.into(),
            temperature: None,
            max_output_tokens: None,
            reasoning_effort: None,
        }
    }

    /// Checks what every provider requires of the options: a model name, a
    /// temperature from 0 to 2, an output cap of at least 1.
    pub fn validate_common(&self) -> Result<(), RequestError> {
        let m = self.model.trim();
        if m.is_empty() || self.model.len() > 256 || m.len() != self.model.len() {
            return Err(RequestError::InvalidModel(self.model.clone()));
        }
        if let Some(t) = self.temperature {
            if !(t.is_finite() && (0.0..=2.0).contains(&t)) {
                return Err(RequestError::InvalidTemperature(t));
            }
        }
        if self.max_output_tokens == Some(0) {
            return Err(RequestError::InvalidMaxOutputTokens);
        }
        Ok(())
    }

    /// Checks the options of an OpenAI request before any line is written.
    pub fn validate(&self) -> Result<(), RequestError> {
        self.validate_common()?;
        if let Some(effort) = &self.reasoning_effort {
            if !REASONING_EFFORTS.contains(&effort.as_str()) {
                return Err(RequestError::InvalidReasoningEffort(effort.clone()));
            }
            if !crate::cost::is_reasoning_model(&self.model) {
                return Err(RequestError::ReasoningEffortNotSupported(
                    self.model.clone(),
                ));
            }
        }
        Ok(())
    }
}

/// What [`write_request_line`] appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WrittenLine {
    /// Bytes appended, including the trailing `\n`.
    pub bytes: usize,
    /// Whether the issue text was cut by the processor's truncation budget.
    pub truncated: bool,
}

#[derive(Serialize)]
struct Line<'a> {
    custom_id: &'a str,
    method: &'static str,
    url: &'static str,
    body: Body<'a>,
}

#[derive(Serialize)]
struct Body<'a> {
    model: &'a str,
    messages: (&'a RawValue, UserMsg<'a>),
    response_format: &'a RawValue,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_effort: Option<&'a str>,
}

#[derive(Serialize)]
struct UserMsg<'a> {
    role: &'static str,
    content: &'a str,
}

/// Appends one JSONL line (with its trailing `\n`) for `issue` to `out`:
///
/// `{"custom_id":..,"method":"POST","url":"/v1/chat/completions","body":{"model":..,
/// "messages":[system,user],"response_format":{..},"temperature"?:..,
/// "max_completion_tokens"?:..,"reasoning_effort"?:..}}`
///
/// On error nothing is appended. Validate `opts` once per job with
/// [`RequestOptions::validate`]; this function does not repeat that check per line.
pub fn write_request_line(
    out: &mut Vec<u8>,
    custom_id: &str,
    processor: &Processor,
    issue: &IssueInput,
    opts: &RequestOptions,
) -> Result<WrittenLine, RequestError> {
    let user = processor.user_message(issue);
    let bytes = write_rendered_line(out, custom_id, processor, &user.text, opts)?;
    Ok(WrittenLine {
        bytes,
        truncated: user.truncated(),
    })
}

/// Like [`write_request_line`], for a user message the caller already rendered with
/// [`Processor::user_message`] (so that it can count its tokens without rendering it
/// twice). Returns the bytes appended, including the trailing `\n`.
pub fn write_rendered_line(
    out: &mut Vec<u8>,
    custom_id: &str,
    processor: &Processor,
    user_text: &str,
    opts: &RequestOptions,
) -> Result<usize, RequestError> {
    if !is_valid_custom_id(custom_id) {
        return Err(RequestError::InvalidCustomId(custom_id.to_string()));
    }
    let system = processor.system_message_json()?;
    let response_format = processor.response_format_json()?;
    let line = Line {
        custom_id,
        method: "POST",
        url: CHAT_COMPLETIONS_URL,
        body: Body {
            model: &opts.model,
            messages: (
                system,
                UserMsg {
                    role: "user",
                    content: user_text,
                },
            ),
            response_format,
            temperature: opts.temperature,
            max_completion_tokens: opts.max_output_tokens,
            reasoning_effort: opts.reasoning_effort.as_deref(),
        },
    };
    let start = out.len();
    if let Err(e) = serde_json::to_writer(&mut *out, &line) {
        out.truncate(start);
        return Err(RequestError::Serialize(e.to_string()));
    }
    escape_line_separators(out, start);
    out.push(b'\n');
    Ok(out.len() - start)
}

/// Rewrites raw U+2028 / U+2029 in `out[start..]` as `\u2028` / `\u2029`, as Python's
/// `json.dumps` writes them. JSON allows them raw, but consumers that split lines on
/// them (Python's `str.splitlines`, for one) would cut such a request in two. serde_json
/// only ever writes them inside strings, where the escape means the same character.
fn escape_line_separators(out: &mut Vec<u8>, start: usize) {
    // Both are E2 80 A8 / E2 80 A9 in UTF-8. Find the first with SIMD; most lines have none.
    let finder = memchr::memmem::Finder::new(b"\xE2\x80");
    let is_sep = |b: &[u8], at: usize| matches!(b.get(at + 2), Some(0xA8 | 0xA9));
    let mut from = start;
    let first = loop {
        match finder.find(&out[from..]) {
            None => return,
            Some(p) if is_sep(out, from + p) => break from + p,
            Some(p) => from += p + 2,
        }
    };
    let tail = out.split_off(first);
    let mut i = 0;
    while let Some(p) = finder.find(&tail[i..]) {
        let at = i + p;
        out.extend_from_slice(&tail[i..at]);
        match tail.get(at + 2) {
            Some(0xA8) => out.extend_from_slice(b"\\u2028"),
            Some(0xA9) => out.extend_from_slice(b"\\u2029"),
            _ => {
                out.extend_from_slice(&tail[at..at + 2]);
                i = at + 2;
                continue;
            }
        }
        i = at + 3;
    }
    out.extend_from_slice(&tail[i..]);
}

/// What the [`Sharder`] says about the next line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardStep {
    /// Append the line to the current shard.
    Continue,
    /// Close the current shard first; the line starts a new one.
    StartNew,
}

/// Counts lines and bytes of the batch file being built and says when the next line
/// must start a new file (and so a new job).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharder {
    max_lines: usize,
    max_bytes: usize,
    lines: usize,
    bytes: usize,
}

impl Default for Sharder {
    fn default() -> Self {
        Sharder::new()
    }
}

impl Sharder {
    /// A sharder with the provider limits: [`MAX_REQUESTS_PER_BATCH`] lines and
    /// [`DEFAULT_SHARD_BYTES`] bytes per file.
    pub fn new() -> Self {
        Sharder::with_limits(MAX_REQUESTS_PER_BATCH, DEFAULT_SHARD_BYTES)
    }

    /// A sharder with other limits (tests, or a user who wants smaller jobs).
    /// Zero limits are raised to 1.
    pub fn with_limits(max_lines: usize, max_bytes: usize) -> Self {
        Sharder {
            max_lines: max_lines.max(1),
            max_bytes: max_bytes.max(1),
            lines: 0,
            bytes: 0,
        }
    }

    /// The per-file byte limit.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// The per-file line limit.
    pub fn max_lines(&self) -> usize {
        self.max_lines
    }

    /// Lines in the current shard.
    pub fn lines(&self) -> usize {
        self.lines
    }

    /// Bytes in the current shard.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Records a line of `line_bytes` bytes for issue `issue_id` and says whether it
    /// goes into the current shard or starts a new one (the counters then restart with
    /// this line). An empty shard always takes the line; a line larger than the byte
    /// limit on its own is an error and is not recorded.
    pub fn push(&mut self, issue_id: i64, line_bytes: usize) -> Result<ShardStep, RequestError> {
        if line_bytes > self.max_bytes {
            return Err(RequestError::LineTooLarge {
                issue_id,
                bytes: line_bytes,
                limit: self.max_bytes,
            });
        }
        let fits = self.lines < self.max_lines && self.bytes + line_bytes <= self.max_bytes;
        if self.lines == 0 || fits {
            self.lines += 1;
            self.bytes += line_bytes;
            Ok(ShardStep::Continue)
        } else {
            self.lines = 1;
            self.bytes = line_bytes;
            Ok(ShardStep::StartNew)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::processor::{processor_by_name, CommentInput, MAX_BODY_CHARS};
    use serde_json::Value;

    /// One finished batch input file of [`shard_all`].
    struct Shard {
        job_id: String,
        jsonl: Vec<u8>,
        issue_ids: Vec<i64>,
        truncated_issue_ids: Vec<i64>,
    }

    /// Cuts `issues` into batch files the way the submit pipeline does: each line is
    /// written with the current job's custom id and offered to the [`Sharder`]; when it
    /// says [`ShardStep::StartNew`], the file is closed and the line rewritten under a
    /// new job id from `new_job_id` (its size may differ).
    fn shard_all(
        issues: &[IssueInput],
        opts: &RequestOptions,
        mut sharder: Sharder,
        mut new_job_id: impl FnMut() -> String,
    ) -> Result<Vec<Shard>, RequestError> {
        opts.validate()?;
        let new_shard = |job_id: String| -> Result<Shard, RequestError> {
            validate_job_id(&job_id)?;
            Ok(Shard {
                job_id,
                jsonl: Vec::new(),
                issue_ids: Vec::new(),
                truncated_issue_ids: Vec::new(),
            })
        };
        let mut shards = vec![new_shard(new_job_id())?];
        for issue in issues {
            let mut cur = shards.last_mut().unwrap();
            let start = cur.jsonl.len();
            let cid = custom_id(&cur.job_id, issue.id);
            let mut line = write_request_line(&mut cur.jsonl, &cid, pl(), issue, opts)?;
            if sharder.push(issue.id, line.bytes)? == ShardStep::StartNew {
                cur.jsonl.truncate(start);
                shards.push(new_shard(new_job_id())?);
                cur = shards.last_mut().unwrap();
                let cid = custom_id(&cur.job_id, issue.id);
                line = write_request_line(&mut cur.jsonl, &cid, pl(), issue, opts)?;
                sharder = Sharder::with_limits(sharder.max_lines(), sharder.max_bytes());
                sharder.push(issue.id, line.bytes)?;
            }
            cur.issue_ids.push(issue.id);
            if line.truncated {
                cur.truncated_issue_ids.push(issue.id);
            }
        }
        shards.retain(|s| !s.issue_ids.is_empty());
        Ok(shards)
    }

    fn pl() -> &'static Processor {
        processor_by_name("product-labeling").unwrap()
    }

    fn issue(id: i64) -> IssueInput {
        IssueInput {
            id,
            org: "acme".into(),
            repo: "widgets".into(),
            number: id * 10,
            author: "octocat".into(),
            title: format!("Issue {id}"),
            body: Some("body".into()),
            state: "open".into(),
            labels: vec!["product::kots".into()],
            comments: vec![],
        }
    }

    fn opts() -> RequestOptions {
        RequestOptions::new("gpt-4.1-mini")
    }

    fn one_line(issue: &IssueInput, opts: &RequestOptions) -> (Value, String) {
        let mut out = Vec::new();
        let w = write_request_line(&mut out, "job_1-i1", pl(), issue, opts).unwrap();
        assert_eq!(w.bytes, out.len());
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with('\n'));
        assert_eq!(text.matches('\n').count(), 1, "exactly one line");
        (serde_json::from_str(text.trim_end()).unwrap(), text)
    }

    #[test]
    fn custom_id_roundtrip() {
        let job = "job_20261129_043000_ab12";
        for id in [0, 1, 42, -5, i64::MAX, i64::MIN] {
            let c = custom_id(job, id);
            assert!(is_valid_custom_id(&c), "{c}");
            assert_eq!(parse_custom_id(job, &c).unwrap(), id);
        }
        assert_eq!(custom_id(job, 7), "job_20261129_043000_ab12-i7");
        let longest = "j".repeat(MAX_JOB_ID_LEN);
        validate_job_id(&longest).unwrap();
        assert!(is_valid_custom_id(&custom_id(&longest, i64::MIN)));
        assert_eq!(custom_id(&longest, i64::MIN).len(), 64);
    }

    #[test]
    fn custom_id_rejections() {
        let job = "job_a";
        assert!(matches!(
            parse_custom_id(job, "job_b-i1"),
            Err(CustomIdError::OtherJob { .. })
        ));
        for bad in [
            "job_a-i",
            "job_a-ix",
            "job_a-i+1",
            "job_a-i01",
            "job_a-1",
            "job_a_x-i1",
            "job_a-i1 ",
        ] {
            assert!(parse_custom_id(job, bad).is_err(), "{bad}");
        }
        // A job whose id is a prefix of another's cannot steal its results.
        assert!(parse_custom_id("job_a", "job_ab-i1").is_err());
        for bad in ["", "job-x", "job x", "jöb", &"j".repeat(MAX_JOB_ID_LEN + 1)] {
            assert!(validate_job_id(bad).is_err(), "{bad}");
        }
        assert!(!is_valid_custom_id(""));
        assert!(!is_valid_custom_id(&"a".repeat(65)));
        assert!(!is_valid_custom_id("a b"));
        assert!(!is_valid_custom_id("a.b"));
        let mut out = Vec::new();
        let err = write_request_line(&mut out, "bad id", pl(), &issue(1), &opts()).unwrap_err();
        assert!(matches!(err, RequestError::InvalidCustomId(_)));
        assert!(out.is_empty());
    }

    #[test]
    fn line_shape() {
        let (v, text) = one_line(&issue(1), &opts());
        assert_eq!(v["custom_id"], "job_1-i1");
        assert_eq!(v["method"], "POST");
        assert_eq!(v["url"], "/v1/chat/completions");
        let body = &v["body"];
        assert_eq!(body["model"], "gpt-4.1-mini");
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][0]["content"], pl().system_prompt());
        assert_eq!(body["messages"][1]["role"], "user");
        assert_eq!(
            body["messages"][1]["content"],
            pl().user_message(&issue(1)).text
        );
        assert_eq!(body["response_format"]["type"], "json_schema");
        assert_eq!(body["response_format"]["json_schema"]["strict"], true);
        assert_eq!(
            body["response_format"]["json_schema"]["name"],
            "product_labeling"
        );
        assert!(body.get("temperature").is_none());
        assert!(body.get("max_completion_tokens").is_none());
        assert!(!text.contains("temperature"));
        assert_eq!(body.as_object().unwrap().len(), 3);
        assert!(text.starts_with(r#"{"custom_id":"job_1-i1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4.1-mini","messages":[{"role":"system","content":"#));
    }

    #[test]
    fn optional_fields() {
        let o = RequestOptions {
            temperature: Some(0.2),
            max_output_tokens: Some(800),
            ..opts()
        };
        let (v, _) = one_line(&issue(1), &o);
        assert_eq!(v["body"]["temperature"], 0.2);
        assert_eq!(v["body"]["max_completion_tokens"], 800);
        let o = RequestOptions {
            temperature: Some(0.0),
            ..opts()
        };
        assert_eq!(one_line(&issue(1), &o).0["body"]["temperature"], 0.0);
    }

    #[test]
    fn options_validation() {
        opts().validate().unwrap();
        for t in [f64::NAN, f64::INFINITY, -0.1, 2.1] {
            let o = RequestOptions {
                temperature: Some(t),
                ..opts()
            };
            assert!(o.validate().is_err(), "{t}");
        }
        assert!(RequestOptions::new("").validate().is_err());
        assert!(RequestOptions::new(" gpt-4o").validate().is_err());
        assert!(RequestOptions::new("x".repeat(300)).validate().is_err());
        let o = RequestOptions {
            max_output_tokens: Some(0),
            ..opts()
        };
        assert_eq!(o.validate(), Err(RequestError::InvalidMaxOutputTokens));
    }

    #[test]
    fn line_separators_are_escaped_and_other_text_kept() {
        for text in [
            "plain",
            "\u{2028}",
            "a\u{2029}",
            "curly ’ dash — \u{2028} ellipsis … \u{2029}\u{2028} end",
            "— — —",
            "\u{2027}\u{202a}\u{2028}",
        ] {
            let mut i = issue(5);
            // Bracketed: the renderer trims the body, and U+2028 is white space.
            let body = format!("<{text}>");
            i.body = Some(body.clone());
            let (v, line) = one_line(&i, &opts());
            assert!(
                !line.contains('\u{2028}') && !line.contains('\u{2029}'),
                "{text:?}"
            );
            let content = v["body"]["messages"][1]["content"].as_str().unwrap();
            assert!(content.contains(&body), "{text:?} must survive the escape");
        }
    }

    #[test]
    fn reasoning_effort_is_sent_and_checked() {
        let o = RequestOptions {
            reasoning_effort: Some("high".into()),
            ..RequestOptions::new("o4-mini")
        };
        o.validate().unwrap();
        let (v, _) = one_line(&issue(1), &o);
        assert_eq!(v["body"]["reasoning_effort"], "high");
        assert!(!one_line(&issue(1), &opts()).1.contains("reasoning_effort"));
        let bad = RequestOptions {
            reasoning_effort: Some("extreme".into()),
            ..o.clone()
        };
        assert_eq!(
            bad.validate(),
            Err(RequestError::InvalidReasoningEffort("extreme".into()))
        );
        let not_reasoning = RequestOptions {
            reasoning_effort: Some("low".into()),
            ..opts()
        };
        let msg = not_reasoning.validate().unwrap_err().to_string();
        assert!(
            msg.contains("only for reasoning models") && msg.contains("gpt-4.1-mini"),
            "{msg}"
        );
        for e in REASONING_EFFORTS {
            RequestOptions {
                reasoning_effort: Some(e.into()),
                ..RequestOptions::new("gpt-5-mini")
            }
            .validate()
            .unwrap();
        }
    }

    #[test]
    fn escaping_roundtrips() {
        let nasty = "quote \" backslash \\ newline \n tab \t cr \r nul \u{0} bell \u{7} esc \u{1b} \
                     del \u{7f} emoji 🦀👨‍👩‍👧 rtl \u{202e} ls \u{2028} ps \u{2029} nbsp \u{a0} </script> {\"json\":1}";
        let mut i = issue(3);
        i.title = nasty.into();
        i.body = Some(nasty.repeat(3));
        i.labels = vec![nasty.into()];
        i.comments = vec![CommentInput {
            author: nasty.into(),
            body: nasty.into(),
        }];
        i.org = "o\"rg".into();
        let (v, text) = one_line(&i, &opts());
        let content = v["body"]["messages"][1]["content"].as_str().unwrap();
        assert_eq!(content, pl().user_message(&i).text);
        assert!(content.contains(nasty));
        // Raw control characters never reach the file, nor the line separators
        // U+2028 / U+2029 that Python's splitlines() would cut the line at.
        assert!(!text.trim_end().bytes().any(|b| b < 0x20));
        assert!(!text.contains('\u{2028}') && !text.contains('\u{2029}'));
        assert!(text.contains("ls \\u2028 ps \\u2029"));
        assert_eq!(text.trim_end().lines().count(), 1);
        assert!(
            text.contains("🦀"),
            "non-ASCII is written as UTF-8, not escaped"
        );
    }

    #[test]
    fn truncation_is_reported() {
        let mut i = issue(4);
        i.body = Some("a".repeat(MAX_BODY_CHARS + 1));
        let mut out = Vec::new();
        let w = write_request_line(&mut out, "j-i4", pl(), &i, &opts()).unwrap();
        assert!(w.truncated);
        let w = write_request_line(&mut out, "j-i5", pl(), &issue(5), &opts()).unwrap();
        assert!(!w.truncated);
        // Both lines parse.
        for line in String::from_utf8(out).unwrap().lines() {
            let _: Value = serde_json::from_str(line).unwrap();
        }
    }

    #[test]
    fn many_lines_each_parse() {
        let mut out = Vec::new();
        let mut total = 0;
        for id in 0..200 {
            let mut i = issue(id);
            i.body = Some(format!(
                "line {id}\n\"quoted\"\t{}",
                "é".repeat(id as usize)
            ));
            total += write_request_line(&mut out, &custom_id("job_x", id), pl(), &i, &opts())
                .unwrap()
                .bytes;
        }
        assert_eq!(total, out.len());
        let text = String::from_utf8(out).unwrap();
        let ids: Vec<i64> = text
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                parse_custom_id("job_x", v["custom_id"].as_str().unwrap()).unwrap()
            })
            .collect();
        assert_eq!(ids, (0..200).collect::<Vec<_>>());
    }

    #[test]
    fn sharder_boundaries() {
        let mut s = Sharder::with_limits(3, 100);
        assert_eq!(s.push(1, 40).unwrap(), ShardStep::Continue);
        assert_eq!(s.push(2, 60).unwrap(), ShardStep::Continue); // exactly 100 bytes
        assert_eq!(s.push(3, 1).unwrap(), ShardStep::StartNew); // 101 > 100
        assert_eq!((s.lines(), s.bytes()), (1, 1));
        assert_eq!(s.push(4, 1).unwrap(), ShardStep::Continue);
        assert_eq!(s.push(5, 1).unwrap(), ShardStep::Continue); // 3 lines
        assert_eq!(s.push(6, 1).unwrap(), ShardStep::StartNew); // 4th line
        assert!(matches!(
            s.push(7, 101),
            Err(RequestError::LineTooLarge {
                issue_id: 7,
                bytes: 101,
                limit: 100
            })
        ));
        assert_eq!(
            (s.lines(), s.bytes()),
            (1, 1),
            "a rejected line is not counted"
        );
        assert_eq!(s.push(8, 100).unwrap(), ShardStep::StartNew);
        let d = Sharder::new();
        assert_eq!(d.max_lines(), MAX_REQUESTS_PER_BATCH);
        assert_eq!(d.max_bytes(), DEFAULT_SHARD_BYTES);
        const { assert!(DEFAULT_SHARD_BYTES < 200_000_000) };
        const { assert!(DEFAULT_SHARD_BYTES < MAX_BATCH_FILE_BYTES) };
    }

    #[test]
    fn sharding_splits_by_lines_and_bytes() {
        let mut n = 0;
        let o = opts();
        let issues: Vec<IssueInput> = (1..=7).map(issue).collect();
        let shards = shard_all(&issues, &o, Sharder::with_limits(3, usize::MAX), || {
            n += 1;
            format!("job_{n}")
        })
        .unwrap();
        let ids: Vec<Vec<i64>> = shards.iter().map(|s| s.issue_ids.clone()).collect();
        assert_eq!(ids, vec![vec![1, 2, 3], vec![4, 5, 6], vec![7]]);
        for s in &shards {
            let text = std::str::from_utf8(&s.jsonl).unwrap();
            let parsed: Vec<i64> = text
                .lines()
                .map(|l| {
                    let v: Value = serde_json::from_str(l).unwrap();
                    parse_custom_id(&s.job_id, v["custom_id"].as_str().unwrap()).unwrap()
                })
                .collect();
            assert_eq!(
                parsed, s.issue_ids,
                "custom_ids carry their own shard's job id"
            );
        }
        assert_eq!(shards[2].job_id, "job_3");

        // Byte limit: one line is ~7 KB here; a 16 KB shard holds two.
        let mut line = Vec::new();
        let one = write_request_line(&mut line, "job_1-i1", pl(), &issue(1), &o)
            .unwrap()
            .bytes;
        let mut n = 0;
        let issues: Vec<IssueInput> = (1..=5).map(issue).collect();
        let shards = shard_all(&issues, &o, Sharder::with_limits(100, one * 2 + 10), || {
            n += 1;
            format!("job_{n}")
        })
        .unwrap();
        let sizes: Vec<(usize, usize)> = shards
            .iter()
            .map(|s| (s.issue_ids.len(), s.jsonl.len()))
            .collect();
        assert_eq!(sizes.iter().map(|s| s.0).collect::<Vec<_>>(), vec![2, 2, 1]);
        assert!(sizes.iter().all(|s| s.1 <= one * 2 + 10));
    }

    #[test]
    fn sharding_empty_and_bad_job_id() {
        let o = opts();
        let job_1 = || "job_1".to_string();
        assert!(shard_all(&[], &o, Sharder::new(), job_1)
            .unwrap()
            .is_empty());
        assert!(shard_all(&[], &o, Sharder::new(), || "bad-id".to_string()).is_err());
        let bad = RequestOptions::new("");
        assert!(shard_all(&[], &bad, Sharder::new(), job_1).is_err());
    }

    #[test]
    fn sharding_truncated_ids() {
        let o = opts();
        let mut big = issue(2);
        big.body = Some("b".repeat(MAX_BODY_CHARS * 2));
        let shards =
            shard_all(&[issue(1), big], &o, Sharder::new(), || "job_1".to_string()).unwrap();
        assert_eq!(shards.len(), 1);
        assert_eq!(shards[0].issue_ids, vec![1, 2]);
        assert_eq!(shards[0].truncated_issue_ids, vec![2]);
    }

    #[test]
    fn results_tell_whose_batch_it_is() {
        assert_eq!(results_owner("job7", ["job7-i1", "job7-i22"]), Owner::Ours);
        assert_eq!(
            results_owner("job7", ["job8-i1", "job77-i2"]),
            Owner::Theirs
        );
        assert_eq!(
            results_owner("job7", ["job7-i1", "job8-i2"]),
            Owner::Unclear
        );
        assert_eq!(results_owner("job7", []), Owner::Unclear);
        // A job id that is a prefix of another's is not confused with it.
        assert_eq!(results_owner("job7", ["job77-i1"]), Owner::Theirs);
    }
}
