//! A blocking client for the OpenAI Files and Batches APIs (`ureq` 3, rustls).
//!
//! Owns: the HTTP conversation with OpenAI (upload a JSONL file, create /
//! retrieve / list / cancel a batch, download / retrieve / delete a file), the
//! typed objects those calls return, the retry policy, and [`OpenAiError`].
//!
//! Retry policy, in one place ([`OpenAiClient`] applies it to every call):
//! - Calls that are safe to repeat (GET, DELETE) are retried on 408, 409, 429
//!   (except `insufficient_quota`), >= 500, connection failures, timeouts,
//!   connections closed mid-exchange and truncated downloads.
//! - Calls that create something (upload, create batch) and cancel are POSTs
//!   and are retried only when the request provably did not take effect: it
//!   never left (DNS or connect failure), or the server answered 429 (rate
//!   limited, not `insufficient_quota`). Any other failure is returned with
//!   [`OpenAiError::may_have_reached_provider`] set, so the caller reconciles
//!   (for instance with [`OpenAiClient::find_batch_for_job`]) instead of
//!   creating a second batch.
//! - A `x-should-retry: false` header always stops retries.
//! - The wait is `Retry-After` (`retry-after-ms`, seconds or HTTP date) capped
//!   at [`ClientOptions::max_retry_after`], else a capped exponential backoff
//!   with jitter.
//!
//! The API key is only ever placed in the `Authorization` header. `Debug` of
//! the client redacts it. Everything that comes in from the server is scrubbed
//! of it (and of any `Bearer` token, see [`redact_secrets`]) on the way in, in
//! one place per kind of input: JSON responses before they are parsed
//! (`read_json`: batch objects with their `errors.data`, lists, files), result
//! files downloaded into memory ([`OpenAiClient::download_file_to_vec`]), and
//! error bodies, headers and transport texts (`scrub`). Callers never see a
//! provider text that still holds the key.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use ureq::http::{header, HeaderMap, HeaderValue, Method, Request, Response};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{ConnectionDetails, Connector, DefaultConnector, NextTimeout};
use ureq::{Agent, AsSendBody, Body, SendBody};

use crate::http::{
    backoff_delay, clean_text, parse_retry_after, redact_secrets, redact_secrets_text,
    validate_base_url, Multipart,
};

/// The public OpenAI API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
/// The metadata key carrying our job id on every batch we create.
pub const JOB_ID_METADATA_KEY: &str = "ai_batch_job_id";
/// The only completion window the Batch API offers today.
pub const COMPLETION_WINDOW_24H: &str = "24h";
/// The batch endpoint for chat-completions requests.
pub const CHAT_COMPLETIONS_ENDPOINT: &str = "/v1/chat/completions";

/// The create call's name in errors; it has its own timeout ([`ClientOptions::create_timeout`]).
const CREATE_BATCH_OP: &str = "create batch";
const USER_AGENT: &str = concat!("ai_batch/", env!("CARGO_PKG_VERSION"));
/// At most this much of an error body is read.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// At most this much of a JSON response is read.
const MAX_JSON_BODY: u64 = 64 * 1024 * 1024;
/// Provider messages are cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 500;
/// Codes, types, request ids, locations are cut to this many characters.
const MAX_SHORT_CHARS: usize = 200;
/// Paging guard for [`OpenAiClient::scan_batches`].
const MAX_LIST_PAGES: u32 = 10_000;
/// OpenAI's metadata limits.
const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_KEY_CHARS: usize = 64;
const MAX_METADATA_VALUE_CHARS: usize = 512;

// ---------------------------------------------------------------------------
// Options and client
// ---------------------------------------------------------------------------

/// Timeouts and retry settings of an [`OpenAiClient`].
///
/// Each timeout applies to one attempt; retries get a fresh budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// DNS resolution plus TCP/TLS connection setup. Default 10 s.
    pub connect_timeout: Duration,
    /// Whole exchange of a JSON call (retrieve, list, cancel, delete). Default 60 s.
    pub request_timeout: Duration,
    /// Whole exchange of one create-batch attempt. Default 60 s. A create the client
    /// gave up on may still land at the provider later: callers reconcile by listing,
    /// and wait a multiple of this before concluding that it never will.
    pub create_timeout: Duration,
    /// Whole exchange of a file upload or download. Default 30 min
    /// (a 200 MB batch file over a slow uplink).
    pub transfer_timeout: Duration,
    /// A download whose socket stays silent this long, or an upload whose
    /// socket accepts nothing this long, is abandoned. Default 120 s.
    pub stall_timeout: Duration,
    /// Retries after the first attempt. Default 4.
    pub max_retries: u32,
    /// First backoff delay. Default 0.5 s.
    pub initial_backoff: Duration,
    /// Backoff cap. Default 8 s.
    pub max_backoff: Duration,
    /// Cap on a server-requested `Retry-After`. Default 60 s.
    pub max_retry_after: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            create_timeout: Duration::from_secs(60),
            transfer_timeout: Duration::from_secs(30 * 60),
            stall_timeout: Duration::from_secs(120),
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// A blocking OpenAI Files + Batches client. Build it once and reuse it: it
/// holds one connection pool.
pub struct OpenAiClient {
    agent: Agent,
    base_url: String,
    api_key: String,
    auth: HeaderValue,
    opts: ClientOptions,
}

impl fmt::Debug for OpenAiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiClient")
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

/// What one call is, for the retry loop.
struct Call<'a> {
    op: &'static str,
    method: Method,
    path: String,
    payload: Payload<'a>,
    /// Safe to repeat whatever happened (GET, DELETE).
    idempotent: bool,
    /// A file transfer: the long timeout applies.
    transfer: bool,
}

enum Payload<'a> {
    /// No body (GET, DELETE).
    None,
    /// A body held in memory.
    Bytes {
        bytes: &'a [u8],
        content_type: &'static str,
    },
    /// A multipart body around a file.
    Multipart {
        form: &'a Multipart,
        file: UploadSource<'a>,
    },
}

#[derive(Clone, Copy)]
enum UploadSource<'a> {
    Path(&'a Path),
    Bytes(&'a [u8]),
}

/// What [`OpenAiClient::scan_batches`] does after looking at one batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanStep {
    /// Keep looking.
    Continue,
    /// This is the batch: stop and return it.
    Found,
    /// Stop without a match (for instance: batches are now older than what we look for).
    Stop,
}

impl OpenAiClient {
    /// Builds a client for `base_url` (such as [`DEFAULT_BASE_URL`]).
    ///
    /// `base_url` must be `https://`, except on loopback hosts (`127.0.0.0/8`,
    /// `localhost`, `[::1]`) where `http://` is allowed. Environment proxies
    /// (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) are honoured, except for
    /// loopback hosts. Surrounding whitespace of `api_key` is ignored.
    pub fn new(base_url: &str, api_key: String, opts: ClientOptions) -> Result<Self, OpenAiError> {
        let api_key = api_key.trim().to_string();
        let base = validate_base_url(base_url).map_err(|reason| {
            let mut url = displayable_url(base_url);
            if api_key.len() >= 6 {
                url = url.replace(api_key.as_str(), "[redacted]");
            }
            OpenAiError::InvalidBaseUrl { url, reason }
        })?;
        if api_key.is_empty() {
            return Err(OpenAiError::MissingApiKey);
        }
        let mut auth = HeaderValue::from_str(&format!("Bearer {api_key}"))
            .map_err(|_| OpenAiError::InvalidApiKey)?;
        auth.set_sensitive(true);

        let mut config = Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_resolve(Some(opts.connect_timeout))
            .timeout_connect(Some(opts.connect_timeout))
            .timeout_global(Some(opts.request_timeout))
            .user_agent(USER_AGENT)
            .accept("application/json");
        if base.loopback {
            config = config.proxy(None);
        }
        // Resolver and connector are ureq's own, wrapped so that their failures are
        // known to have happened before any byte of the request was written.
        let agent = Agent::with_parts(
            config.build(),
            BeforeSendingConnector(DefaultConnector::default()),
            BeforeSendingResolver(DefaultResolver::default()),
        );
        Ok(OpenAiClient {
            agent,
            base_url: base.url,
            api_key,
            auth,
            opts,
        })
    }

    /// The validated base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        &self.opts
    }

    // -- Files ---------------------------------------------------------------

    /// Uploads a JSONL file from disk with purpose `batch` (`POST /files`),
    /// streamed: the file is never held in memory. `filename` is the name
    /// OpenAI shows (reduced to `[A-Za-z0-9._-]`).
    ///
    /// Not retried once the request may have reached OpenAI (an orphan file
    /// is harmless but the caller decides): see the module documentation.
    pub fn upload_batch_file(
        &self,
        path: &Path,
        filename: &str,
    ) -> Result<FileObject, OpenAiError> {
        self.upload(UploadSource::Path(path), filename)
    }

    /// Uploads JSONL held in memory with purpose `batch` (`POST /files`).
    pub fn upload_batch_bytes(
        &self,
        bytes: &[u8],
        filename: &str,
    ) -> Result<FileObject, OpenAiError> {
        self.upload(UploadSource::Bytes(bytes), filename)
    }

    fn upload(&self, file: UploadSource<'_>, filename: &str) -> Result<FileObject, OpenAiError> {
        let form = Multipart::new(
            &[("purpose", "batch")],
            "file",
            filename,
            "application/jsonl",
        );
        let call = Call {
            op: "upload file",
            method: Method::POST,
            path: "/files".to_string(),
            payload: Payload::Multipart { form: &form, file },
            idempotent: false,
            transfer: true,
        };
        self.execute(&call, |resp| self.read_json(&call, resp))
    }

    /// Retrieves a file's metadata (`GET /files/{id}`).
    pub fn retrieve_file(&self, file_id: &str) -> Result<FileObject, OpenAiError> {
        check_id("file id", file_id)?;
        let call = Call::get("retrieve file", format!("/files/{file_id}"));
        self.execute(&call, |resp| self.read_json(&call, resp))
    }

    /// Deletes a file (`DELETE /files/{id}`). Retried like a GET; note that a
    /// retry after a lost success answers 404 ([`OpenAiError::is_not_found`]).
    pub fn delete_file(&self, file_id: &str) -> Result<FileDeleted, OpenAiError> {
        check_id("file id", file_id)?;
        let call = Call {
            method: Method::DELETE,
            ..Call::get("delete file", format!("/files/{file_id}"))
        };
        self.execute(&call, |resp| self.read_json(&call, resp))
    }

    /// Downloads a file's content (`GET /files/{id}/content`) to `dest`,
    /// streamed. The bytes go to `dest` + `.part` first and are renamed to
    /// `dest` only when complete, so `dest` never holds a partial file. A body
    /// shorter than its `Content-Length` is an error (retried). Returns the
    /// number of bytes written.
    pub fn download_file(&self, file_id: &str, dest: &Path) -> Result<u64, OpenAiError> {
        check_id("file id", file_id)?;
        let mut part_name = dest.as_os_str().to_owned();
        part_name.push(".part");
        let part = PathBuf::from(part_name);
        let call = Call {
            transfer: true,
            ..Call::get("download file", format!("/files/{file_id}/content"))
        };
        let result = self.execute(&call, |resp| {
            let local = |what: &'static str| {
                let part = part.clone();
                move |source| OpenAiError::LocalIo {
                    op: "download file",
                    what,
                    path: part,
                    source,
                }
            };
            let file = File::create(&part).map_err(local("cannot create"))?;
            let mut out = BufWriter::with_capacity(256 * 1024, file);
            let n = self.copy_body(&call, file_id, resp, (&mut out, &part), u64::MAX)?;
            let file = out
                .into_inner()
                .map_err(|e| local("cannot write")(e.into_error()))?;
            file.sync_all().map_err(local("cannot write"))?;
            Ok(n)
        });
        match result {
            Ok(n) => match std::fs::rename(&part, dest) {
                Ok(()) => Ok(n),
                Err(source) => {
                    let _ = std::fs::remove_file(&part);
                    Err(OpenAiError::LocalIo {
                        op: "download file",
                        what: "cannot move the download into place at",
                        path: dest.to_path_buf(),
                        source,
                    })
                }
            },
            Err(e) => {
                let _ = std::fs::remove_file(&part);
                Err(e)
            }
        }
    }

    /// Downloads a file's content into memory, refusing more than `max_bytes`.
    /// Same checks and retries as [`OpenAiClient::download_file`]. The bytes
    /// come back scrubbed of the API key and `Bearer` tokens (a provider that
    /// echoes the request's `Authorization` into its error lines stores nothing).
    pub fn download_file_to_vec(
        &self,
        file_id: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, OpenAiError> {
        check_id("file id", file_id)?;
        let call = Call {
            transfer: true,
            ..Call::get("download file", format!("/files/{file_id}/content"))
        };
        self.execute(&call, |resp| {
            // Sized from Content-Length up front: growing a 30+ MB Vec by doubling
            // copies it several times and faults in twice the pages.
            let hint = resp.body().content_length().unwrap_or(0).min(max_bytes);
            let mut out = Vec::with_capacity(usize::try_from(hint).unwrap_or(0));
            self.copy_body(
                &call,
                file_id,
                resp,
                (&mut out, Path::new("<memory>")),
                max_bytes,
            )?;
            Ok(self.scrub_bytes(out))
        })
    }

    // -- Batches -------------------------------------------------------------

    /// Creates a batch (`POST /batches`) from an uploaded file. `endpoint` is
    /// the per-request endpoint (such as [`CHAT_COMPLETIONS_ENDPOINT`]),
    /// `completion_window` is [`COMPLETION_WINDOW_24H`], `metadata` should
    /// carry [`JOB_ID_METADATA_KEY`] (at most 16 pairs, keys up to 64 and
    /// values up to 512 characters).
    ///
    /// Never repeated once the request may have reached OpenAI: on such an
    /// error ([`OpenAiError::may_have_reached_provider`]) look the batch up
    /// with [`OpenAiClient::find_batch_for_job`] before creating another.
    pub fn create_batch(
        &self,
        input_file_id: &str,
        endpoint: &str,
        completion_window: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<Batch, OpenAiError> {
        self.create_batch_noting(
            input_file_id,
            endpoint,
            completion_window,
            metadata,
            &mut || Ok(()),
        )
    }

    /// [`create_batch`](Self::create_batch), calling `before_attempt` just before each
    /// attempt is sent (the first, and any retry). The caller records there when a
    /// create was last sent, so it can later tell whether that create may still land.
    /// If it fails, that attempt is not sent and the error is
    /// [`OpenAiError::NotSent`].
    pub fn create_batch_noting(
        &self,
        input_file_id: &str,
        endpoint: &str,
        completion_window: &str,
        metadata: &BTreeMap<String, String>,
        before_attempt: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<Batch, OpenAiError> {
        check_id("input file id", input_file_id)?;
        if !endpoint.starts_with('/') || endpoint.chars().any(|c| c.is_whitespace()) {
            return Err(OpenAiError::InvalidArgument(format!(
                "batch endpoint {:?} must be a path such as /v1/chat/completions",
                clean_text(endpoint, MAX_SHORT_CHARS)
            )));
        }
        if completion_window.trim().is_empty() {
            return Err(OpenAiError::InvalidArgument(
                "the completion window is empty (use 24h)".to_string(),
            ));
        }
        check_metadata(metadata)?;
        #[derive(Serialize)]
        struct CreateBatch<'a> {
            input_file_id: &'a str,
            endpoint: &'a str,
            completion_window: &'a str,
            #[serde(skip_serializing_if = "BTreeMap::is_empty")]
            metadata: &'a BTreeMap<String, String>,
        }
        let body = serde_json::to_vec(&CreateBatch {
            input_file_id,
            endpoint,
            completion_window,
            metadata,
        })
        .map_err(|e| {
            OpenAiError::InvalidArgument(format!("cannot encode the batch request: {e}"))
        })?;
        let call = Call {
            op: CREATE_BATCH_OP,
            method: Method::POST,
            path: "/batches".to_string(),
            payload: Payload::Bytes {
                bytes: &body,
                content_type: "application/json",
            },
            idempotent: false,
            transfer: false,
        };
        let mut before = || {
            before_attempt().map_err(|detail| OpenAiError::NotSent {
                op: CREATE_BATCH_OP,
                detail,
            })
        };
        self.execute_noting(&call, &mut before, |resp| self.read_json(&call, resp))
    }

    /// Retrieves a batch (`GET /batches/{id}`).
    pub fn retrieve_batch(&self, batch_id: &str) -> Result<Batch, OpenAiError> {
        check_id("batch id", batch_id)?;
        let call = Call::get("retrieve batch", format!("/batches/{batch_id}"));
        self.execute(&call, |resp| self.read_json(&call, resp))
    }

    /// Cancels a batch (`POST /batches/{id}/cancel`). Not repeated after a
    /// failure that may have reached OpenAI: retrieve the batch to see.
    pub fn cancel_batch(&self, batch_id: &str) -> Result<Batch, OpenAiError> {
        check_id("batch id", batch_id)?;
        let call = Call {
            op: "cancel batch",
            method: Method::POST,
            path: format!("/batches/{batch_id}/cancel"),
            payload: Payload::Bytes {
                bytes: b"",
                content_type: "application/json",
            },
            idempotent: false,
            transfer: false,
        };
        self.execute(&call, |resp| self.read_json(&call, resp))
    }

    /// One page of the organisation's batches, newest first (`GET /batches`).
    /// `limit` is clamped to 1..=100.
    pub fn list_batches(&self, after: Option<&str>, limit: u32) -> Result<BatchList, OpenAiError> {
        let mut path = format!("/batches?limit={}", limit.clamp(1, 100));
        if let Some(after) = after {
            check_id("batch id", after)?;
            path.push_str("&after=");
            path.push_str(after);
        }
        let call = Call::get("list batches", path);
        self.execute(&call, |resp| self.read_json(&call, resp))
    }

    /// One page of files with `purpose`, newest first (GET /files).
    pub fn list_files(
        &self,
        purpose: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<FileList, OpenAiError> {
        check_id("purpose", purpose)?;
        let mut path = format!(
            "/files?purpose={purpose}&order=desc&limit={}",
            limit.clamp(1, 10_000)
        );
        if let Some(after) = after {
            check_id("file id", after)?;
            path.push_str("&after=");
            path.push_str(after);
        }
        let call = Call::get("list files", path);
        self.execute(&call, |resp| self.read_json(&call, resp))
    }

    /// Files with `purpose` named exactly `filename`, looking back no further than
    /// `created_after` (Unix seconds) when given. Used to find an upload whose file id
    /// was never recorded.
    pub fn find_files_named(
        &self,
        purpose: &str,
        filename: &str,
        created_after: Option<i64>,
    ) -> Result<Vec<FileObject>, OpenAiError> {
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self.list_files(purpose, after.as_deref(), 1000)?;
            let mut older = false;
            for f in &page.data {
                if let (Some(limit), Some(t)) = (created_after, f.created_at) {
                    if t < limit {
                        older = true;
                        continue;
                    }
                }
                if f.filename.as_deref() == Some(filename) {
                    found.push(f.clone());
                }
            }
            let next = page
                .last_id
                .clone()
                .or_else(|| page.data.last().map(|f| f.id.clone()));
            if older || !page.has_more || next.is_none() {
                break;
            }
            after = next;
        }
        Ok(found)
    }

    /// Pages through all batches, newest first, calling `visit` on each until
    /// it answers [`ScanStep::Found`] (that batch is returned) or
    /// [`ScanStep::Stop`], or the list ends (`None`).
    pub fn scan_batches(
        &self,
        mut visit: impl FnMut(&Batch) -> ScanStep,
    ) -> Result<Option<Batch>, OpenAiError> {
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self.list_batches(after.as_deref(), 100)?;
            let next = page
                .last_id
                .clone()
                .or_else(|| page.data.last().map(|b| b.id.clone()));
            for batch in page.data {
                match visit(&batch) {
                    ScanStep::Continue => {}
                    ScanStep::Found => return Ok(Some(batch)),
                    ScanStep::Stop => return Ok(None),
                }
            }
            match next {
                // A page that does not move the cursor would loop forever.
                Some(next) if page.has_more && after.as_deref() != Some(next.as_str()) => {
                    after = Some(next);
                }
                _ => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The first batch (newest first) for which `pred` is true.
    pub fn find_batch(
        &self,
        mut pred: impl FnMut(&Batch) -> bool,
    ) -> Result<Option<Batch>, OpenAiError> {
        self.scan_batches(|b| {
            if pred(b) {
                ScanStep::Found
            } else {
                ScanStep::Continue
            }
        })
    }

    /// The batch of a job: the one whose metadata carries `ai_batch_job_id = job_id`,
    /// or the one created from `input_file_id` (a batch is created from exactly one
    /// uploaded file, and ours are never shared between jobs). The second match finds
    /// the batch when the list answers without `metadata` (some gateways strip it).
    /// With `created_after` (Unix seconds; give the time the job was recorded minus some
    /// slack), the scan stops at the first older batch instead of paging through the
    /// whole history.
    pub fn find_batch_for_job(
        &self,
        job_id: &str,
        input_file_id: Option<&str>,
        created_after: Option<i64>,
    ) -> Result<Option<Batch>, OpenAiError> {
        self.scan_batches(|b| {
            let same_file = input_file_id.is_some() && b.input_file_id.as_deref() == input_file_id;
            if b.job_id() == Some(job_id) || same_file {
                ScanStep::Found
            } else if let (Some(limit), Some(created)) = (created_after, b.created_at) {
                if created < limit {
                    ScanStep::Stop
                } else {
                    ScanStep::Continue
                }
            } else {
                ScanStep::Continue
            }
        })
    }

    // -- The retry loop ----------------------------------------------------------

    /// Runs `call` until `handle` accepts a 2xx response, retrying what the
    /// policy allows (see the module documentation).
    fn execute<T>(
        &self,
        call: &Call<'_>,
        handle: impl FnMut(Response<Body>) -> Result<T, OpenAiError>,
    ) -> Result<T, OpenAiError> {
        self.execute_noting(call, &mut || Ok(()), handle)
    }

    /// [`execute`](Self::execute), calling `before` just before each attempt is sent;
    /// its error stops the call (that attempt is not sent).
    fn execute_noting<T>(
        &self,
        call: &Call<'_>,
        before: &mut dyn FnMut() -> Result<(), OpenAiError>,
        mut handle: impl FnMut(Response<Body>) -> Result<T, OpenAiError>,
    ) -> Result<T, OpenAiError> {
        let mut attempt: u32 = 0;
        loop {
            attempt += 1;
            before()?;
            let result = self
                .send_once(call)
                .and_then(|resp| self.check_status(call, resp))
                .and_then(&mut handle);
            let err = match result {
                Ok(value) => return Ok(value),
                Err(err) => err,
            };
            if attempt > self.opts.max_retries || !err.auto_retry(call.idempotent) {
                return Err(err.with_attempts(attempt));
            }
            let delay = match err.retry_after() {
                Some(asked) => asked.min(self.opts.max_retry_after),
                None => backoff_delay(
                    attempt - 1,
                    self.opts.initial_backoff,
                    self.opts.max_backoff,
                    rand::random::<f64>(),
                ),
            };
            std::thread::sleep(delay);
        }
    }

    fn send_once(&self, call: &Call<'_>) -> Result<Response<Body>, OpenAiError> {
        let url = format!("{}{}", self.base_url, call.path);
        let mut builder = Request::builder()
            .method(call.method.clone())
            .uri(url)
            .header(header::AUTHORIZATION, self.auth.clone());
        let (mut reader, len): (Box<dyn Read + '_>, Option<u64>) = match &call.payload {
            Payload::None => (Box::new(io::empty()), None),
            Payload::Bytes {
                bytes,
                content_type,
            } => {
                builder = builder.header(header::CONTENT_TYPE, *content_type);
                (Box::new(*bytes), Some(bytes.len() as u64))
            }
            Payload::Multipart { form, file } => {
                builder = builder.header(header::CONTENT_TYPE, form.content_type());
                match *file {
                    UploadSource::Bytes(bytes) => {
                        let len = bytes.len() as u64;
                        (Box::new(form.reader(bytes, len)), Some(form.body_len(len)))
                    }
                    UploadSource::Path(path) => {
                        let local = |source| OpenAiError::LocalIo {
                            op: call.op,
                            what: "cannot read",
                            path: path.to_path_buf(),
                            source,
                        };
                        let f = File::open(path).map_err(local)?;
                        let len = f.metadata().map_err(local)?.len();
                        (Box::new(form.reader(f, len)), Some(form.body_len(len)))
                    }
                }
            }
        };
        match len {
            None => self.dispatch(call, builder, ()),
            Some(len) => {
                let builder = builder.header(header::CONTENT_LENGTH, len);
                self.dispatch(call, builder, SendBody::from_reader(&mut reader))
            }
        }
    }

    fn dispatch<S: AsSendBody>(
        &self,
        call: &Call<'_>,
        builder: ureq::http::request::Builder,
        body: S,
    ) -> Result<Response<Body>, OpenAiError> {
        let request = builder.body(body).map_err(|e| {
            OpenAiError::InvalidArgument(format!(
                "cannot build the {} request: {}",
                call.op,
                self.scrub(&e.to_string(), MAX_SHORT_CHARS)
            ))
        })?;
        let mut configured = self.agent.configure_request(request);
        if call.op == CREATE_BATCH_OP {
            configured = configured.timeout_global(Some(self.opts.create_timeout));
        }
        if call.transfer {
            configured = configured.timeout_global(Some(self.opts.transfer_timeout));
            configured = if call.method == Method::GET {
                configured.timeout_per_read(Some(self.opts.stall_timeout))
            } else {
                configured.timeout_per_write(Some(self.opts.stall_timeout))
            };
        }
        self.agent
            .run(configured.build())
            .map_err(|e| self.transport_error(call, &e))
    }

    /// 2xx passes; 3xx is a redirect we do not follow; anything else becomes
    /// an [`ApiError`] built from the body and headers.
    fn check_status(
        &self,
        call: &Call<'_>,
        mut resp: Response<Body>,
    ) -> Result<Response<Body>, OpenAiError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let headers = resp.headers();
        let request_id = self.header_text(headers, "x-request-id");
        if status.is_redirection() {
            return Err(OpenAiError::Redirect {
                op: call.op,
                status: status.as_u16(),
                location: self.header_text(headers, "location"),
                request_id,
            });
        }
        let retry_after = parse_retry_after(headers, SystemTime::now());
        let should_retry = match headers.get("x-should-retry").map(HeaderValue::as_bytes) {
            Some(b"true") => Some(true),
            Some(b"false") => Some(false),
            _ => None,
        };
        let mut raw = Vec::new();
        // An unreadable error body still leaves the status to report.
        let _ = resp
            .body_mut()
            .as_reader()
            .take(MAX_ERROR_BODY)
            .read_to_end(&mut raw);
        let (code, error_type, message, param) = self.parse_error_body(&raw);
        Err(OpenAiError::Api(Box::new(ApiError {
            op: call.op,
            status: status.as_u16(),
            code,
            error_type,
            message,
            param,
            request_id,
            retry_after,
            should_retry,
            attempts: 1,
        })))
    }

    /// `{"error": {"message", "type", "param", "code"}}`, or the body as text.
    #[allow(clippy::type_complexity)]
    fn parse_error_body(
        &self,
        raw: &[u8],
    ) -> (
        Option<String>,
        Option<String>,
        Option<String>,
        Option<String>,
    ) {
        #[derive(Deserialize)]
        struct Envelope {
            error: Option<ErrorBody>,
        }
        #[derive(Deserialize)]
        struct ErrorBody {
            message: Option<serde_json::Value>,
            #[serde(rename = "type")]
            kind: Option<serde_json::Value>,
            code: Option<serde_json::Value>,
            param: Option<serde_json::Value>,
        }
        let text = |v: Option<serde_json::Value>, max: usize| {
            let s = match v? {
                serde_json::Value::Null => return None,
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            };
            let s = self.scrub(&s, max);
            (!s.is_empty()).then_some(s)
        };
        match serde_json::from_slice::<serde_json::Value>(raw) {
            Ok(value) => match serde_json::from_value::<Envelope>(value.clone()) {
                Ok(Envelope { error: Some(e) }) => (
                    text(e.code, MAX_SHORT_CHARS),
                    text(e.kind, MAX_SHORT_CHARS),
                    text(e.message, MAX_MESSAGE_CHARS),
                    text(e.param, MAX_SHORT_CHARS),
                ),
                // Some other JSON shape (a proxy's): a top-level message or detail, if any.
                _ => {
                    let field = |k: &str| value.get(k).filter(|v| v.is_string()).cloned();
                    let message = field("message").or_else(|| field("detail"));
                    (None, None, text(message, MAX_MESSAGE_CHARS), None)
                }
            },
            Err(_) => {
                let body = String::from_utf8_lossy(raw);
                let body = self.scrub(&body, MAX_MESSAGE_CHARS);
                (None, None, (!body.is_empty()).then_some(body), None)
            }
        }
    }

    fn read_json<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        mut resp: Response<Body>,
    ) -> Result<T, OpenAiError> {
        let op = call.op;
        let request_id = self.header_text(resp.headers(), "x-request-id");
        let mut raw = Vec::new();
        resp.body_mut()
            .as_reader()
            .take(MAX_JSON_BODY + 1)
            .read_to_end(&mut raw)
            .map_err(|e| self.body_error(call, &e))?;
        if raw.len() as u64 > MAX_JSON_BODY {
            return Err(OpenAiError::Decode {
                op,
                detail: format!("the response is larger than {} MiB", MAX_JSON_BODY >> 20),
                request_id,
            });
        }
        let raw = self.scrub_bytes(raw);
        serde_json::from_slice(&raw).map_err(|e| OpenAiError::Decode {
            op,
            detail: self.scrub(&e.to_string(), MAX_SHORT_CHARS),
            request_id,
        })
    }

    /// Streams a 2xx body into `out` (named `out_path` in errors), checking
    /// `Content-Length` and `limit`.
    fn copy_body(
        &self,
        call: &Call<'_>,
        file_id: &str,
        resp: Response<Body>,
        (out, out_path): (&mut dyn Write, &Path),
        limit: u64,
    ) -> Result<u64, OpenAiError> {
        let op = call.op;
        let expected = resp.body().content_length();
        let request_id = self.header_text(resp.headers(), "x-request-id");
        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; 64 * 1024];
        let mut received: u64 = 0;
        let truncated = |received| OpenAiError::Truncated {
            file_id: file_id.to_string(),
            expected: expected.unwrap_or(0),
            received,
            attempts: 1,
        };
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if expected.is_some_and(|x| received < x)
                        && e.kind() == io::ErrorKind::UnexpectedEof
                    {
                        return Err(truncated(received));
                    }
                    return Err(self.body_error(call, &e));
                }
            };
            received += n as u64;
            if received > limit {
                return Err(OpenAiError::Decode {
                    op,
                    detail: format!("file {file_id} is larger than the {limit} bytes allowed"),
                    request_id,
                });
            }
            let chunk = buf.get(..n).unwrap_or(&[]);
            out.write_all(chunk)
                .map_err(|source| OpenAiError::LocalIo {
                    op,
                    what: "cannot write",
                    path: out_path.to_path_buf(),
                    source,
                })?;
        }
        if expected.is_some_and(|x| received != x) {
            return Err(truncated(received));
        }
        Ok(received)
    }

    // -- Error building (every server or transport text goes through scrub) ----

    fn scrub(&self, text: &str, max_chars: usize) -> String {
        clean_text(&redact_secrets_text(text, &self.api_key), max_chars)
    }

    /// A response body without the key or `Bearer` tokens in it.
    fn scrub_bytes(&self, raw: Vec<u8>) -> Vec<u8> {
        redact_secrets(&raw, &self.api_key).unwrap_or(raw)
    }

    fn header_text(&self, headers: &HeaderMap, name: &str) -> Option<String> {
        let value = headers.get(name)?;
        let text = String::from_utf8_lossy(value.as_bytes());
        let text = self.scrub(&text, MAX_SHORT_CHARS);
        (!text.is_empty()).then_some(text)
    }

    /// A failure reading a response body: the request was sent.
    fn body_error(&self, call: &Call<'_>, e: &io::Error) -> OpenAiError {
        let (kind, detail) = match e.get_ref().and_then(|i| i.downcast_ref::<ureq::Error>()) {
            Some(inner) => (classify(inner).0, inner.to_string()),
            None => (classify_io(e.kind()).0, e.to_string()),
        };
        OpenAiError::Transport(Box::new(TransportError {
            op: call.op,
            kind,
            detail: self.scrub(&detail, MAX_SHORT_CHARS),
            sent: true,
            idempotent: call.idempotent,
            attempts: 1,
        }))
    }

    fn transport_error(&self, call: &Call<'_>, e: &ureq::Error) -> OpenAiError {
        let (kind, sent) = classify(e);
        // A marked failure shows ureq's own text, not "other: ...".
        let detail = match e {
            ureq::Error::Other(inner) => inner.to_string(),
            _ => e.to_string(),
        };
        OpenAiError::Transport(Box::new(TransportError {
            op: call.op,
            kind,
            detail: self.scrub(&detail, MAX_SHORT_CHARS),
            sent,
            idempotent: call.idempotent,
            attempts: 1,
        }))
    }
}

impl<'a> Call<'a> {
    fn get(op: &'static str, path: String) -> Self {
        Call {
            op,
            method: Method::GET,
            path,
            payload: Payload::None,
            idempotent: true,
            transfer: false,
        }
    }
}

/// A failure while resolving the host or opening the connection (TCP, proxy
/// CONNECT, TLS handshake): ureq calls the resolver and the connector before it
/// writes a byte of the request, so such a request never reached the provider.
#[derive(Debug)]
struct BeforeSending {
    /// The host name could not be resolved (else: the connection failed).
    resolving: bool,
    error: ureq::Error,
}

impl fmt::Display for BeforeSending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for BeforeSending {}

impl BeforeSending {
    fn wrap(resolving: bool, error: ureq::Error) -> ureq::Error {
        ureq::Error::Other(Box::new(BeforeSending { resolving, error }))
    }

    fn kind(&self) -> TransportKind {
        if self.resolving {
            return TransportKind::Resolve;
        }
        match classify(&self.error).0 {
            TransportKind::Tls => TransportKind::Tls,
            TransportKind::Request => TransportKind::Request,
            _ => TransportKind::Connect,
        }
    }
}

/// ureq's resolver, its failures marked [`BeforeSending`].
#[derive(Debug)]
struct BeforeSendingResolver(DefaultResolver);

impl Resolver for BeforeSendingResolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        self.0
            .resolve(uri, config, timeout)
            .map_err(|e| BeforeSending::wrap(true, e))
    }
}

/// ureq's connector chain (TCP, proxy, TLS handshake), its failures marked
/// [`BeforeSending`].
#[derive(Debug)]
struct BeforeSendingConnector(DefaultConnector);

impl Connector<()> for BeforeSendingConnector {
    type Out = <DefaultConnector as Connector<()>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<()>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        self.0
            .connect(details, chained)
            .map_err(|e| BeforeSending::wrap(false, e))
    }
}

/// What kind of transport failure `e` is, and whether the request may have
/// been sent (conservative: only failures before the connection exists count
/// as "not sent").
fn classify(e: &ureq::Error) -> (TransportKind, bool) {
    use ureq::Error as E;
    use ureq::Timeout as T;
    match e {
        E::Other(inner) => match inner.downcast_ref::<BeforeSending>() {
            Some(before) => (before.kind(), false),
            None => (TransportKind::Io, true),
        },
        E::HostNotFound => (TransportKind::Resolve, false),
        E::ConnectionFailed => (TransportKind::Connect, false),
        E::Timeout(T::Resolve) => (TransportKind::Resolve, false),
        E::Timeout(T::Connect) => (TransportKind::Connect, false),
        E::Timeout(_) => (TransportKind::Timeout, true),
        E::Io(io) => classify_io(io.kind()),
        E::Tls(_) | E::Pem(_) | E::Rustls(_) => (TransportKind::Tls, true),
        E::BadUri(_) | E::Http(_) | E::InvalidProxyUrl | E::RequireHttpsOnly(_) => {
            (TransportKind::Request, false)
        }
        E::Protocol(_)
        | E::LargeResponseHeader(..)
        | E::BodyExceedsLimit(_)
        | E::TooManyRedirects
        | E::RedirectFailed
        | E::StatusCode(_) => (TransportKind::Protocol, true),
        _ => (TransportKind::Io, true),
    }
}

fn classify_io(kind: io::ErrorKind) -> (TransportKind, bool) {
    use io::ErrorKind as K;
    match kind {
        K::ConnectionRefused
        | K::HostUnreachable
        | K::NetworkUnreachable
        | K::NetworkDown
        | K::AddrNotAvailable => (TransportKind::Connect, false),
        K::ConnectionReset
        | K::ConnectionAborted
        | K::BrokenPipe
        | K::UnexpectedEof
        | K::NotConnected => (TransportKind::ConnectionClosed, true),
        K::TimedOut | K::WouldBlock => (TransportKind::Timeout, true),
        _ => (TransportKind::Io, true),
    }
}

/// Ids go into URL paths: only `[A-Za-z0-9_-]`, as OpenAI's ids are.
fn check_id(what: &str, id: &str) -> Result<(), OpenAiError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(OpenAiError::InvalidArgument(format!(
            "{what} {:?} is not a valid OpenAI id (letters, digits, _ and - only)",
            clean_text(id, 80)
        )))
    }
}

fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), OpenAiError> {
    if metadata.len() > MAX_METADATA_PAIRS {
        return Err(OpenAiError::InvalidArgument(format!(
            "batch metadata has {} pairs; OpenAI allows at most {MAX_METADATA_PAIRS}",
            metadata.len()
        )));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(OpenAiError::InvalidArgument(format!(
                "batch metadata key {:?} must have 1 to {MAX_METADATA_KEY_CHARS} characters",
                clean_text(k, 80)
            )));
        }
        if v.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(OpenAiError::InvalidArgument(format!(
                "batch metadata value of {:?} is longer than {MAX_METADATA_VALUE_CHARS} characters",
                clean_text(k, 80)
            )));
        }
    }
    Ok(())
}

/// A base URL as shown in an error: never with its `user:password@` part.
fn displayable_url(raw: &str) -> String {
    let raw = raw.trim();
    let shown = match raw.split_once("://") {
        Some((scheme, rest)) => {
            let authority_end = rest.find('/').unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://***@{host}{path}"),
                None => raw.to_string(),
            }
        }
        None => raw.to_string(),
    };
    clean_text(&shown, MAX_SHORT_CHARS)
}

// ---------------------------------------------------------------------------
// Objects
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Everything that can go wrong talking to OpenAI. No variant ever holds the
/// API key: server and transport texts are scrubbed of it.
#[derive(Debug, thiserror::Error)]
pub enum OpenAiError {
    /// No key was given.
    #[error("the OpenAI API key is empty (set OPENAI_API_KEY)")]
    MissingApiKey,
    /// The key cannot be sent in an HTTP header.
    #[error("the OpenAI API key contains characters that cannot be sent in an HTTP header (check OPENAI_API_KEY)")]
    InvalidApiKey,
    /// The base URL was refused.
    #[error("invalid OpenAI base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The URL as given (credentials masked).
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A parameter was refused before anything was sent.
    #[error("invalid OpenAI request: {0}")]
    InvalidArgument(String),
    /// OpenAI (or something in between) answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The exchange failed below HTTP.
    #[error("{0}")]
    Transport(Box<TransportError>),
    /// The server answered with a redirect, which is never followed.
    #[error("OpenAI {op}: the server answered {status} redirecting to {}; redirects are not followed (check the base URL){}",
        location.as_deref().unwrap_or("nowhere"),
        request_id.as_deref().map(|r| format!(" (request {r})")).unwrap_or_default())]
    Redirect {
        /// The operation.
        op: &'static str,
        /// The 3xx status.
        status: u16,
        /// The `Location` header (cleaned, capped).
        location: Option<String>,
        /// The `x-request-id` header.
        request_id: Option<String>,
    },
    /// A 2xx response whose body is not what the API documents.
    #[error("OpenAI {op}: unexpected response: {detail}{}",
        request_id.as_deref().map(|r| format!(" (request {r})")).unwrap_or_default())]
    Decode {
        /// The operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
        /// The `x-request-id` header.
        request_id: Option<String>,
    },
    /// A download ended before its `Content-Length`.
    #[error("OpenAI download of file {file_id} was cut short: received {received} of {expected} bytes, try again{}",
        attempts_note(*attempts))]
    Truncated {
        /// The file.
        file_id: String,
        /// The announced length.
        expected: u64,
        /// What arrived.
        received: u64,
        /// Attempts made.
        attempts: u32,
    },
    /// The caller's step before an attempt failed, so the attempt was not sent.
    #[error("OpenAI {op} was not sent: {detail}")]
    NotSent {
        /// The operation.
        op: &'static str,
        /// Why.
        detail: String,
    },
    /// A local file could not be read or written.
    #[error("OpenAI {op}: {what} {}: {source}", path.display())]
    LocalIo {
        /// The operation.
        op: &'static str,
        /// What failed.
        what: &'static str,
        /// The local path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}

/// An error status from OpenAI.
///
/// Displays as `OpenAI returned 401 invalid_api_key: Incorrect API key
/// provided (request req_123)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The operation (`create batch`, ...).
    pub op: &'static str,
    /// HTTP status.
    pub status: u16,
    /// `error.code`, such as `invalid_api_key` or `insufficient_quota`.
    pub code: Option<String>,
    /// `error.type`, such as `invalid_request_error`.
    pub error_type: Option<String>,
    /// `error.message` (or the body text), capped at 500 characters.
    pub message: Option<String>,
    /// `error.param`.
    pub param: Option<String>,
    /// The `x-request-id` header, to quote to OpenAI support.
    pub request_id: Option<String>,
    /// The delay the server asked for, if any.
    pub retry_after: Option<Duration>,
    /// The `x-should-retry` header, if any.
    pub should_retry: Option<bool>,
    /// Attempts made, including retries.
    pub attempts: u32,
}

impl ApiError {
    fn is_insufficient_quota(&self) -> bool {
        self.code.as_deref() == Some("insufficient_quota")
            || self.error_type.as_deref() == Some("insufficient_quota")
    }

    /// The status is one that a later attempt may get past.
    fn status_retryable(&self) -> bool {
        (matches!(self.status, 408 | 409 | 429) && !self.is_insufficient_quota())
            || self.status >= 500
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "OpenAI returned {}", self.status)?;
        if let Some(code) = self.code.as_deref().or(self.error_type.as_deref()) {
            write!(f, " {code}")?;
        }
        let reason = ureq::http::StatusCode::from_u16(self.status)
            .ok()
            .and_then(|s| s.canonical_reason());
        match (self.message.as_deref(), reason) {
            (Some(m), _) => write!(f, ": {m}")?,
            (None, Some(r)) => write!(f, ": {r}")?,
            (None, None) => {}
        }
        let mut notes = Vec::new();
        if let Some(id) = &self.request_id {
            notes.push(format!("request {id}"));
        }
        if self.attempts > 1 {
            notes.push(format!("{} attempts", self.attempts));
        }
        if !notes.is_empty() {
            write!(f, " ({})", notes.join(", "))?;
        }
        Ok(())
    }
}

/// What failed below HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    /// The host name could not be resolved (nothing sent).
    Resolve,
    /// No connection could be made: refused, unreachable, connect timeout (nothing sent).
    Connect,
    /// A timeout once connected.
    Timeout,
    /// The connection was closed or reset mid-exchange.
    ConnectionClosed,
    /// TLS failed (certificate, handshake).
    Tls,
    /// The server sent something that is not valid HTTP.
    Protocol,
    /// The request could not be built (nothing sent).
    Request,
    /// Another network I/O error.
    Io,
}

impl TransportKind {
    fn describe(self) -> &'static str {
        match self {
            TransportKind::Resolve => "could not resolve the host",
            TransportKind::Connect => "could not connect",
            TransportKind::Timeout => "timed out",
            TransportKind::ConnectionClosed => "the connection was closed unexpectedly",
            TransportKind::Tls => "TLS failed",
            TransportKind::Protocol => "the server sent an invalid HTTP response",
            TransportKind::Request => "could not build the request",
            TransportKind::Io => "network error",
        }
    }

    fn retryable(self) -> bool {
        !matches!(self, TransportKind::Tls | TransportKind::Request)
    }
}

/// A failure below HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// The operation (`create batch`, ...).
    pub op: &'static str,
    /// What failed.
    pub kind: TransportKind,
    /// The transport's own text (scrubbed, capped).
    pub detail: String,
    /// The request may have been sent (only DNS/connect failures say no).
    pub sent: bool,
    /// The call was safe to repeat.
    pub idempotent: bool,
    /// Attempts made, including retries.
    pub attempts: u32,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "OpenAI {} failed: {} ({})",
            self.op,
            self.kind.describe(),
            self.detail
        )?;
        if !self.sent {
            f.write_str("; the request did not reach OpenAI, nothing was sent")?;
        } else if !self.idempotent {
            write!(
                f,
                "; the request may have reached OpenAI, check before repeating it"
            )?;
        }
        f.write_str(&attempts_note(self.attempts))
    }
}

fn attempts_note(attempts: u32) -> String {
    if attempts > 1 {
        format!(" ({attempts} attempts)")
    } else {
        String::new()
    }
}

impl OpenAiError {
    /// A later attempt may succeed: statuses 408, 409, 429 (not
    /// `insufficient_quota`) and 5xx, network failures and timeouts,
    /// truncated downloads. When the error also
    /// [`may_have_reached_provider`](Self::may_have_reached_provider),
    /// reconcile before trying again.
    pub fn retryable(&self) -> bool {
        match self {
            OpenAiError::Api(e) => e.should_retry.unwrap_or_else(|| e.status_retryable()),
            OpenAiError::Transport(e) => e.kind.retryable(),
            OpenAiError::Truncated { .. } => true,
            _ => false,
        }
    }

    /// The request may have taken effect at OpenAI (a batch or a file may
    /// exist), so a blind repeat could duplicate it. False only when the
    /// failure proves otherwise: nothing was sent, the call was refused before
    /// the network, or OpenAI answered with a client error other than 408/409
    /// (400, 401, 403, 404, 422, 429, ...) or a redirect.
    pub fn may_have_reached_provider(&self) -> bool {
        match self {
            OpenAiError::Api(e) => {
                matches!(e.status, 408 | 409) || e.status >= 500 || e.status < 300
            }
            OpenAiError::Transport(e) => e.sent,
            OpenAiError::Decode { .. } | OpenAiError::Truncated { .. } => true,
            _ => false,
        }
    }

    /// The HTTP status, for [`OpenAiError::Api`] and redirects.
    pub fn status(&self) -> Option<u16> {
        match self {
            OpenAiError::Api(e) => Some(e.status),
            OpenAiError::Redirect { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// OpenAI's `error.code`.
    pub fn code(&self) -> Option<&str> {
        match self {
            OpenAiError::Api(e) => e.code.as_deref(),
            _ => None,
        }
    }

    /// The `x-request-id` of the failing response.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            OpenAiError::Api(e) => e.request_id.as_deref(),
            OpenAiError::Redirect { request_id, .. } | OpenAiError::Decode { request_id, .. } => {
                request_id.as_deref()
            }
            _ => None,
        }
    }

    /// A 404: the batch or file does not exist (or no longer).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Attempts made (1 when the error came from the first try or before the network).
    pub fn attempts(&self) -> u32 {
        match self {
            OpenAiError::Api(e) => e.attempts,
            OpenAiError::Transport(e) => e.attempts,
            OpenAiError::Truncated { attempts, .. } => *attempts,
            _ => 1,
        }
    }

    /// Whether the retry loop may repeat the call on its own.
    fn auto_retry(&self, idempotent: bool) -> bool {
        if let OpenAiError::Api(e) = self {
            if e.should_retry == Some(false) {
                return false;
            }
        }
        if idempotent {
            return self.retryable();
        }
        match self {
            // Nothing left the machine.
            OpenAiError::Transport(e) => !e.sent && e.kind.retryable(),
            // Rate limited: refused before any processing.
            OpenAiError::Api(e) => e.status == 429 && !e.is_insufficient_quota(),
            _ => false,
        }
    }

    fn retry_after(&self) -> Option<Duration> {
        match self {
            OpenAiError::Api(e) => e.retry_after,
            _ => None,
        }
    }

    fn with_attempts(mut self, n: u32) -> Self {
        match &mut self {
            OpenAiError::Api(e) => e.attempts = n,
            OpenAiError::Transport(e) => e.attempts = n,
            OpenAiError::Truncated { attempts, .. } => *attempts = n,
            _ => {}
        }
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader};
    use std::net::{TcpListener, TcpStream};
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Instant;

    const KEY: &str = "sk-test-0123456789abcdef";
    const SENTINEL: &str = "sk-SENTINEL-7f3a9c1e5b2d";

    // -- A scripted HTTP/1.1 server on 127.0.0.1:0 ----------------------------

    /// One request as the server saw it.
    #[derive(Debug, Clone)]
    struct Seen {
        method: String,
        target: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    type Echo = Box<dyn Fn(&Seen) -> Vec<u8> + Send>;

    enum Reply {
        /// Bytes written as they are, then the connection is closed.
        Raw(Vec<u8>),
        /// The reply is built from the request.
        Echo(Echo),
        /// Read the request, say nothing for this long, close.
        Silent(Duration),
    }

    struct Server {
        base: String,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl Server {
        /// Serves `replies` in order, one per connection (every reply closes
        /// its connection); afterwards answers 418.
        fn start(replies: Vec<Reply>) -> Server {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            let base = format!("http://{}/v1", listener.local_addr().unwrap());
            let seen = Arc::new(Mutex::new(Vec::new()));
            let script = Arc::new(Mutex::new(VecDeque::from(replies)));
            let seen2 = Arc::clone(&seen);
            std::thread::spawn(move || {
                for stream in listener.incoming() {
                    let Ok(stream) = stream else { break };
                    let seen = Arc::clone(&seen2);
                    let script = Arc::clone(&script);
                    std::thread::spawn(move || serve_one(stream, &seen, &script));
                }
            });
            Server { base, seen }
        }

        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }

        fn count(&self) -> usize {
            self.seen.lock().unwrap().len()
        }
    }

    fn serve_one(mut stream: TcpStream, seen: &Mutex<Vec<Seen>>, script: &Mutex<VecDeque<Reply>>) {
        let Some(req) = read_request(&stream) else {
            return;
        };
        // Take the reply in the same critical section as the recording, so the
        // n-th request always gets the n-th reply.
        let reply = {
            let mut seen = seen.lock().unwrap();
            seen.push(req.clone());
            script.lock().unwrap().pop_front()
        };
        let bytes = match reply {
            Some(Reply::Raw(b)) => b,
            Some(Reply::Echo(f)) => f(&req),
            Some(Reply::Silent(d)) => {
                std::thread::sleep(d);
                return;
            }
            None => response(418, &[], "unexpected request"),
        };
        let _ = stream.write_all(&bytes);
        let _ = stream.flush();
        let _ = stream.shutdown(std::net::Shutdown::Write);
        // Let the client read everything before the socket goes away.
        let mut sink = Vec::new();
        let _ = stream.read_to_end(&mut sink);
    }

    fn read_request(stream: &TcpStream) -> Option<Seen> {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .ok()?;
        let mut reader = BufReader::new(stream.try_clone().ok()?);
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let mut parts = line.split_whitespace();
        let method = parts.next()?.to_string();
        let target = parts.next()?.to_string();
        let mut headers = Vec::new();
        loop {
            line.clear();
            reader.read_line(&mut line).ok()?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let (k, v) = l.split_once(':')?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        let mut body = Vec::new();
        if let Some(len) = get("content-length") {
            body.resize(len.parse().ok()?, 0);
            reader.read_exact(&mut body).ok()?;
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                line.clear();
                reader.read_line(&mut line).ok()?;
                let size = usize::from_str_radix(line.trim(), 16).ok()?;
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk).ok()?;
                if size == 0 {
                    break;
                }
                body.extend_from_slice(&chunk[..size]);
            }
        }
        Some(Seen {
            method,
            target,
            headers,
            body,
        })
    }

    fn response(status: u16, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status} Scripted\r\ncontent-length: {}\r\nconnection: close\r\n",
            body.len()
        );
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(body);
        out.into_bytes()
    }

    fn json(status: u16, body: &str) -> Reply {
        Reply::Raw(response(
            status,
            &[("content-type", "application/json")],
            body,
        ))
    }

    fn json_h(status: u16, headers: &[(&str, &str)], body: &str) -> Reply {
        let mut h = vec![("content-type", "application/json")];
        h.extend_from_slice(headers);
        Reply::Raw(response(status, &h, body))
    }

    fn api_error(status: u16, code: &str, message: &str) -> Reply {
        json_h(
            status,
            &[("x-request-id", "req_123")],
            &format!(
                r#"{{"error":{{"message":"{message}","type":"invalid_request_error","param":null,"code":"{code}"}}}}"#
            ),
        )
    }

    fn fast_opts() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_secs(5),
            transfer_timeout: Duration::from_secs(10),
            stall_timeout: Duration::from_secs(5),
            max_retries: 4,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(4),
            max_retry_after: Duration::from_millis(200),
        }
    }

    fn client_for(server: &Server) -> OpenAiClient {
        OpenAiClient::new(&server.base, KEY.to_string(), fast_opts()).unwrap()
    }

    /// A base URL where nothing listens.
    fn closed_base() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/v1")
    }

    fn temp_path(tag: &str) -> PathBuf {
        static N: AtomicU32 = AtomicU32::new(0);
        std::env::temp_dir().join(format!(
            "ai_batch_openai_{tag}_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ))
    }

    const BATCH_JSON: &str = r#"{
      "id": "batch_abc123",
      "object": "batch",
      "endpoint": "/v1/chat/completions",
      "model": "gpt-4o-mini-2024-07-18",
      "errors": null,
      "input_file_id": "file-abc123",
      "completion_window": "24h",
      "status": "completed",
      "output_file_id": "file-cvaTdG",
      "error_file_id": "file-HOWS94",
      "created_at": 1711471533,
      "in_progress_at": 1711471538,
      "expires_at": 1711557933,
      "finalizing_at": 1711493133,
      "completed_at": 1711493163,
      "failed_at": null,
      "expired_at": null,
      "cancelling_at": null,
      "cancelled_at": null,
      "request_counts": {"total": 100, "completed": 95, "failed": 5},
      "usage": {
        "input_tokens": 1500,
        "input_tokens_details": {"cached_tokens": 1024},
        "output_tokens": 500,
        "output_tokens_details": {"reasoning_tokens": 300},
        "total_tokens": 2000
      },
      "metadata": {"customer_id": "user_123456789", "ai_batch_job_id": "job-1", "n": 3},
      "a_field_from_the_future": {"x": [1, 2]}
    }"#;

    fn batch_json(id: &str, job_id: &str, created_at: i64) -> String {
        format!(
            r#"{{"id":"{id}","object":"batch","endpoint":"/v1/chat/completions","input_file_id":"file-1","completion_window":"24h","status":"in_progress","created_at":{created_at},"metadata":{{"ai_batch_job_id":"{job_id}"}},"request_counts":{{"total":2,"completed":1,"failed":0}}}}"#
        )
    }

    // -- Objects --------------------------------------------------------------

    #[test]
    fn parses_a_real_batch_and_sends_the_key() {
        let server = Server::start(vec![json(200, BATCH_JSON)]);
        let b = client_for(&server).retrieve_batch("batch_abc123").unwrap();
        assert_eq!(b.id, "batch_abc123");
        assert_eq!(b.status, BatchStatus::Completed);
        assert!(b.status.is_terminal());
        assert_eq!(b.output_file_id.as_deref(), Some("file-cvaTdG"));
        assert_eq!(b.error_file_id.as_deref(), Some("file-HOWS94"));
        assert_eq!(b.input_file_id.as_deref(), Some("file-abc123"));
        assert_eq!(b.errors, None);
        assert_eq!(
            b.request_counts,
            Some(RequestCounts {
                total: 100,
                completed: 95,
                failed: 5
            })
        );
        let usage = b.usage.unwrap();
        assert_eq!(
            (usage.input_tokens, usage.output_tokens, usage.total_tokens),
            (1500, 500, 2000)
        );
        assert_eq!(usage.input_tokens_details.unwrap().cached_tokens, 1024);
        assert_eq!(usage.output_tokens_details.unwrap().reasoning_tokens, 300);
        assert_eq!(b.job_id(), Some("job-1"));
        assert_eq!(
            b.metadata.as_ref().unwrap().get("n").map(String::as_str),
            Some("3")
        );
        assert_eq!(b.created_at, Some(1_711_471_533));
        assert_eq!(b.completed_at, Some(1_711_493_163));
        assert_eq!(b.failed_at, None);

        let seen = server.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].method, "GET");
        assert_eq!(seen[0].target, "/v1/batches/batch_abc123");
        assert_eq!(
            seen[0].header("authorization"),
            Some(format!("Bearer {KEY}").as_str())
        );
        assert!(seen[0]
            .header("user-agent")
            .unwrap()
            .starts_with("ai_batch/"));
        assert_eq!(seen[0].header("accept"), Some("application/json"));
    }

    #[test]
    fn parses_failed_batch_errors_and_unknown_status() {
        let failed = r#"{"id":"batch_f","object":"batch","status":"failed","errors":{"object":"list","data":[
            {"code":"invalid_json_line","line":3,"message":"This line is not parseable as valid JSON.","param":null}]},
            "metadata":null,"request_counts":null,"usage":null}"#;
        let b: Batch = serde_json::from_str(failed).unwrap();
        assert_eq!(b.status, BatchStatus::Failed);
        let errors = b.errors.unwrap().data;
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].code.as_deref(), Some("invalid_json_line"));
        assert_eq!(errors[0].line, Some(3));
        assert_eq!(errors[0].param, None);
        let b: Batch =
            serde_json::from_str(r#"{"id":"b","status":"paused","errors":{"data":null}}"#).unwrap();
        assert_eq!(b.status, BatchStatus::Other("paused".to_string()));
        assert!(!b.status.is_terminal());
        assert_eq!(serde_json::to_value(&b.status).unwrap(), "paused");
        let f: FileObject = serde_json::from_str(
            r#"{"id":"file-1","object":"file","bytes":120000,"created_at":1677610602,"expires_at":null,"filename":"in.jsonl","purpose":"batch","status":"processed","status_details":null}"#,
        )
        .unwrap();
        assert_eq!(f.bytes, Some(120_000));
        assert_eq!(f.purpose.as_deref(), Some("batch"));
    }

    #[test]
    fn lists_and_finds_a_batch_by_job_id_across_pages() {
        let page1 = format!(
            r#"{{"object":"list","data":[{},{}],"first_id":"batch_3","last_id":"batch_2","has_more":true}}"#,
            batch_json("batch_3", "job-x", 300),
            batch_json("batch_2", "job-y", 200)
        );
        let page2 = format!(
            r#"{{"object":"list","data":[{}],"first_id":"batch_1","last_id":"batch_1","has_more":false}}"#,
            batch_json("batch_1", "job-target", 100)
        );
        let server = Server::start(vec![json(200, &page1), json(200, &page2)]);
        let found = client_for(&server)
            .find_batch_for_job("job-target", None, None)
            .unwrap()
            .unwrap();
        assert_eq!(found.id, "batch_1");
        let seen = server.seen();
        assert_eq!(seen[0].target, "/v1/batches?limit=100");
        assert_eq!(seen[1].target, "/v1/batches?limit=100&after=batch_2");
    }

    #[test]
    fn find_stops_at_batches_older_than_the_job() {
        let page1 = format!(
            r#"{{"object":"list","data":[{},{}],"first_id":"batch_3","last_id":"batch_2","has_more":true}}"#,
            batch_json("batch_3", "job-x", 300),
            batch_json("batch_2", "job-y", 200)
        );
        let server = Server::start(vec![json(200, &page1)]);
        let client = client_for(&server);
        assert_eq!(
            client.find_batch_for_job("job-z", None, Some(250)).unwrap(),
            None
        );
        assert_eq!(server.count(), 1);
        let list = OpenAiClient::new(&server.base, KEY.to_string(), fast_opts()).unwrap();
        assert!(list.list_batches(Some("../etc"), 10).is_err());
    }

    // -- Retries --------------------------------------------------------------

    #[test]
    fn retries_429_honouring_retry_after_ms() {
        let server = Server::start(vec![
            json_h(
                429,
                &[("retry-after-ms", "150")],
                r#"{"error":{"code":"rate_limit_exceeded","message":"slow down"}}"#,
            ),
            json(200, BATCH_JSON),
        ]);
        let start = Instant::now();
        client_for(&server).retrieve_batch("batch_abc123").unwrap();
        assert!(
            start.elapsed() >= Duration::from_millis(150),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(server.count(), 2);
    }

    #[test]
    fn retries_429_honouring_retry_after_seconds_capped() {
        // 30 s asked, capped at max_retry_after (200 ms); the backoff alone is ~1 ms.
        let server = Server::start(vec![
            json_h(
                429,
                &[("retry-after", "30")],
                r#"{"error":{"code":"rate_limit_exceeded"}}"#,
            ),
            json(200, BATCH_JSON),
        ]);
        let start = Instant::now();
        client_for(&server).retrieve_batch("batch_abc123").unwrap();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert_eq!(server.count(), 2);
    }

    #[test]
    fn retries_503_honouring_retry_after_http_date() {
        let server = Server::start(vec![
            json_h(
                503,
                &[("retry-after", "Fri, 01 Jan 2100 00:00:00 GMT")],
                "{}",
            ),
            json(200, BATCH_JSON),
        ]);
        let start = Instant::now();
        client_for(&server).retrieve_batch("batch_abc123").unwrap();
        let took = start.elapsed();
        assert!(
            took >= Duration::from_millis(200) && took < Duration::from_secs(5),
            "{took:?}"
        );
        assert_eq!(server.count(), 2);
    }

    #[test]
    fn retries_5xx_then_succeeds() {
        let server = Server::start(vec![
            json(500, "{}"),
            Reply::Raw(response(502, &[], "<html>bad gateway</html>")),
            json(503, "{}"),
            json(200, BATCH_JSON),
        ]);
        client_for(&server).retrieve_batch("batch_abc123").unwrap();
        assert_eq!(server.count(), 4);
    }

    #[test]
    fn gives_up_after_max_retries() {
        let server = Server::start(
            (0..6)
                .map(|_| json(500, r#"{"error":{"message":"boom","type":"server_error"}}"#))
                .collect(),
        );
        let e = client_for(&server)
            .retrieve_batch("batch_abc123")
            .unwrap_err();
        assert_eq!(server.count(), 5);
        assert_eq!(e.attempts(), 5);
        assert!(e.retryable());
        assert_eq!(
            e.to_string(),
            "OpenAI returned 500 server_error: boom (5 attempts)"
        );
    }

    #[test]
    fn timeout_on_get_is_retried() {
        let server = Server::start(vec![
            Reply::Silent(Duration::from_secs(2)),
            json(200, BATCH_JSON),
        ]);
        let opts = ClientOptions {
            request_timeout: Duration::from_millis(300),
            ..fast_opts()
        };
        let client = OpenAiClient::new(&server.base, KEY.to_string(), opts).unwrap();
        client.retrieve_batch("batch_abc123").unwrap();
        assert_eq!(server.count(), 2);
    }

    #[test]
    fn create_batch_is_not_retried_after_a_500() {
        let server = Server::start(vec![
            json(
                500,
                r#"{"error":{"message":"The server had an error","type":"server_error","code":null}}"#,
            ),
            json(200, BATCH_JSON),
        ]);
        let meta = BTreeMap::from([(JOB_ID_METADATA_KEY.to_string(), "job-1".to_string())]);
        let e = client_for(&server)
            .create_batch(
                "file-abc123",
                CHAT_COMPLETIONS_ENDPOINT,
                COMPLETION_WINDOW_24H,
                &meta,
            )
            .unwrap_err();
        assert_eq!(server.count(), 1);
        assert!(e.may_have_reached_provider());
        assert!(e.retryable());
        assert_eq!(e.status(), Some(500));
    }

    #[test]
    fn create_batch_sends_the_documented_body() {
        let server = Server::start(vec![json(200, BATCH_JSON)]);
        let meta = BTreeMap::from([(JOB_ID_METADATA_KEY.to_string(), "job-1".to_string())]);
        let b = client_for(&server)
            .create_batch(
                "file-abc123",
                CHAT_COMPLETIONS_ENDPOINT,
                COMPLETION_WINDOW_24H,
                &meta,
            )
            .unwrap();
        assert_eq!(b.id, "batch_abc123");
        let seen = &server.seen()[0];
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str()),
            ("POST", "/v1/batches")
        );
        assert_eq!(seen.header("content-type"), Some("application/json"));
        let body: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "input_file_id": "file-abc123",
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"ai_batch_job_id": "job-1"}
            })
        );
    }

    #[test]
    fn create_batch_is_retried_after_a_rate_limit_429() {
        let server = Server::start(vec![
            api_error(429, "rate_limit_exceeded", "Rate limit reached"),
            json(200, BATCH_JSON),
        ]);
        client_for(&server)
            .create_batch(
                "file-abc123",
                CHAT_COMPLETIONS_ENDPOINT,
                "24h",
                &BTreeMap::new(),
            )
            .unwrap();
        assert_eq!(server.count(), 2);
    }

    fn create_noting(
        client: &OpenAiClient,
        note: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<Batch, OpenAiError> {
        let md = BTreeMap::new();
        client.create_batch_noting("file-abc123", CHAT_COMPLETIONS_ENDPOINT, "24h", &md, note)
    }

    #[test]
    fn create_batch_noting_is_called_before_every_attempt() {
        let server = Server::start(vec![
            api_error(429, "rate_limit_exceeded", "Rate limit reached"),
            json(200, BATCH_JSON),
        ]);
        let mut noted = 0;
        create_noting(&client_for(&server), &mut || {
            noted += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!((server.count(), noted), (2, 2));
        // A note that fails stops the create before anything is sent.
        let server = Server::start(vec![json(200, BATCH_JSON)]);
        let e = create_noting(&client_for(&server), &mut || {
            Err("the database is read-only".to_string())
        })
        .unwrap_err();
        assert_eq!(server.count(), 0);
        assert!(!e.may_have_reached_provider());
        assert!(
            e.to_string()
                .contains("was not sent: the database is read-only"),
            "{e}"
        );
    }

    #[test]
    fn create_has_its_own_timeout() {
        // The JSON timeout is long, the create timeout short: the create gives up.
        let server = Server::start(vec![Reply::Silent(Duration::from_secs(2))]);
        let opts = ClientOptions {
            request_timeout: Duration::from_secs(5),
            create_timeout: Duration::from_millis(300),
            ..fast_opts()
        };
        let client = OpenAiClient::new(&server.base, KEY.to_string(), opts).unwrap();
        let t = std::time::Instant::now();
        let e = create_noting(&client, &mut || Ok(())).unwrap_err();
        assert!(
            t.elapsed() < Duration::from_millis(1500),
            "{:?}",
            t.elapsed()
        );
        assert!(e.may_have_reached_provider(), "{e}");
    }

    #[test]
    fn finds_a_job_batch_by_its_input_file_when_metadata_is_missing() {
        let mut a: serde_json::Value =
            serde_json::from_str(&batch_json("batch_2", "job-x", 200)).unwrap();
        let mut b: serde_json::Value =
            serde_json::from_str(&batch_json("batch_1", "job-y", 100)).unwrap();
        for (v, file) in [(&mut a, "file-other"), (&mut b, "file-mine")] {
            let o = v.as_object_mut().unwrap();
            o.remove("metadata");
            o.insert("input_file_id".into(), file.into());
        }
        let page = format!(
            r#"{{"object":"list","data":[{a},{b}],"first_id":"batch_2","last_id":"batch_1","has_more":false}}"#
        );
        let server = Server::start(vec![json(200, &page), json(200, &page)]);
        let client = client_for(&server);
        assert_eq!(
            client.find_batch_for_job("job-y", None, None).unwrap(),
            None
        );
        let found = client
            .find_batch_for_job("job-y", Some("file-mine"), None)
            .unwrap()
            .unwrap();
        assert_eq!(found.id, "batch_1");
    }

    #[test]
    fn create_batch_is_retried_when_nothing_was_sent() {
        let client = OpenAiClient::new(&closed_base(), KEY.to_string(), fast_opts()).unwrap();
        let e = client
            .create_batch(
                "file-abc123",
                CHAT_COMPLETIONS_ENDPOINT,
                "24h",
                &BTreeMap::new(),
            )
            .unwrap_err();
        assert!(
            matches!(&e, OpenAiError::Transport(t) if t.kind == TransportKind::Connect && !t.sent),
            "{e:?}"
        );
        assert_eq!(e.attempts(), 5);
        assert!(!e.may_have_reached_provider());
        assert!(e.retryable());
        assert!(e.to_string().contains("could not connect"), "{e}");
        assert!(
            e.to_string()
                .contains("the request did not reach OpenAI, nothing was sent"),
            "{e}"
        );
        assert!(!e.to_string().contains("may have reached"), "{e}");
    }

    #[test]
    fn resolver_and_connector_failures_are_known_unsent() {
        // What ureq's resolver returns when the name does not resolve.
        let dns =
            io::Error::other("failed to lookup address information: Name or service not known");
        let e = BeforeSending::wrap(true, ureq::Error::Io(dns));
        assert_eq!(classify(&e), (TransportKind::Resolve, false));
        // Unmarked, the same error could have come from the middle of an exchange.
        let dns = io::Error::other("failed to lookup address information");
        assert_eq!(classify(&ureq::Error::Io(dns)), (TransportKind::Io, true));
        let tls = BeforeSending::wrap(false, ureq::Error::Tls("handshake"));
        assert_eq!(classify(&tls), (TransportKind::Tls, false));
        let refused = io::Error::new(io::ErrorKind::ConnectionRefused, "refused");
        let e = BeforeSending::wrap(false, ureq::Error::Io(refused));
        assert_eq!(classify(&e), (TransportKind::Connect, false));
    }

    #[test]
    fn a_failed_tls_handshake_sent_nothing() {
        // A loopback server that answers a TLS ClientHello with plain HTTP.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for _ in 0..5 {
                let Ok((mut s, _)) = listener.accept() else {
                    return;
                };
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n");
            }
        });
        let client = OpenAiClient::new(
            &format!("https://localhost:{port}/v1"),
            KEY.to_string(),
            fast_opts(),
        )
        .unwrap();
        let e = client
            .create_batch(
                "file-abc123",
                CHAT_COMPLETIONS_ENDPOINT,
                "24h",
                &BTreeMap::new(),
            )
            .unwrap_err();
        assert!(matches!(&e, OpenAiError::Transport(t) if !t.sent), "{e:?}");
        assert!(!e.may_have_reached_provider(), "{e}");
        assert!(e.to_string().contains("nothing was sent"), "{e}");
        drop(client);
        let _ = std::net::TcpStream::connect(("127.0.0.1", port));
        let _ = server;
    }

    #[test]
    fn create_batch_timeout_is_not_retried() {
        let server = Server::start(vec![
            Reply::Silent(Duration::from_secs(2)),
            json(200, BATCH_JSON),
        ]);
        let opts = ClientOptions {
            create_timeout: Duration::from_millis(300),
            ..fast_opts()
        };
        let client = OpenAiClient::new(&server.base, KEY.to_string(), opts).unwrap();
        let e = client
            .create_batch(
                "file-abc123",
                CHAT_COMPLETIONS_ENDPOINT,
                "24h",
                &BTreeMap::new(),
            )
            .unwrap_err();
        assert_eq!(server.count(), 1);
        assert!(e.may_have_reached_provider());
        assert!(e.retryable());
        let text = e.to_string();
        assert!(
            text.contains("timed out") && text.contains("may have reached OpenAI"),
            "{text}"
        );
    }

    #[test]
    fn cancel_is_a_post_and_is_not_retried() {
        let server = Server::start(vec![json(500, "{}"), json(200, BATCH_JSON)]);
        let e = client_for(&server)
            .cancel_batch("batch_abc123")
            .unwrap_err();
        assert_eq!(server.count(), 1);
        let seen = &server.seen()[0];
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str()),
            ("POST", "/v1/batches/batch_abc123/cancel")
        );
        assert_eq!(seen.header("content-length"), Some("0"));
        assert!(e.may_have_reached_provider());
    }

    #[test]
    fn no_retry_on_401_and_display_format() {
        let server = Server::start(vec![
            api_error(401, "invalid_api_key", "Incorrect API key provided"),
            json(200, BATCH_JSON),
        ]);
        let e = client_for(&server)
            .retrieve_batch("batch_abc123")
            .unwrap_err();
        assert_eq!(server.count(), 1);
        assert_eq!(
            e.to_string(),
            "OpenAI returned 401 invalid_api_key: Incorrect API key provided (request req_123)"
        );
        assert!(!e.retryable());
        assert!(!e.may_have_reached_provider());
        assert_eq!(e.code(), Some("invalid_api_key"));
        assert_eq!(e.request_id(), Some("req_123"));
    }

    #[test]
    fn no_retry_on_400_403_404() {
        for status in [400, 403, 404] {
            let server = Server::start(vec![api_error(status, "x", "no"), json(200, BATCH_JSON)]);
            let e = client_for(&server)
                .retrieve_batch("batch_abc123")
                .unwrap_err();
            assert_eq!(server.count(), 1, "{status}");
            assert!(!e.retryable(), "{status}");
            assert_eq!(e.is_not_found(), status == 404);
        }
    }

    #[test]
    fn no_retry_on_insufficient_quota() {
        let server = Server::start(vec![
            api_error(429, "insufficient_quota", "You exceeded your current quota"),
            json(200, BATCH_JSON),
        ]);
        let e = client_for(&server)
            .retrieve_batch("batch_abc123")
            .unwrap_err();
        assert_eq!(server.count(), 1);
        assert!(!e.retryable());
        assert_eq!(e.code(), Some("insufficient_quota"));
    }

    #[test]
    fn x_should_retry_false_stops_retries() {
        let server = Server::start(vec![
            json_h(503, &[("x-should-retry", "false")], "{}"),
            json(200, BATCH_JSON),
        ]);
        let e = client_for(&server)
            .retrieve_batch("batch_abc123")
            .unwrap_err();
        assert_eq!(server.count(), 1);
        assert!(!e.retryable());
        assert_eq!(e.to_string(), "OpenAI returned 503: Service Unavailable");
    }

    #[test]
    fn delete_is_retried_like_a_get() {
        let server = Server::start(vec![
            json(503, "{}"),
            json(
                200,
                r#"{"id":"file-abc123","object":"file","deleted":true}"#,
            ),
        ]);
        let d = client_for(&server).delete_file("file-abc123").unwrap();
        assert!(d.deleted);
        let seen = server.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (seen[1].method.as_str(), seen[1].target.as_str()),
            ("DELETE", "/v1/files/file-abc123")
        );
    }

    #[test]
    fn redirects_are_not_followed() {
        let server = Server::start(vec![
            Reply::Raw(response(
                302,
                &[("location", "http://127.0.0.1:1/v1/batches/x")],
                "",
            )),
            json(200, BATCH_JSON),
        ]);
        let e = client_for(&server)
            .retrieve_batch("batch_abc123")
            .unwrap_err();
        assert_eq!(server.count(), 1);
        assert!(
            matches!(e, OpenAiError::Redirect { status: 302, .. }),
            "{e:?}"
        );
        assert!(!e.retryable());
        assert!(e.to_string().contains("redirects are not followed"), "{e}");
    }

    // -- Files ----------------------------------------------------------------

    fn file_reply(status: u16, content: &[u8], announced: usize) -> Reply {
        let mut raw = format!(
            "HTTP/1.1 {status} OK\r\ncontent-type: application/octet-stream\r\ncontent-length: {announced}\r\nconnection: close\r\n\r\n"
        )
        .into_bytes();
        raw.extend_from_slice(content);
        Reply::Raw(raw)
    }

    #[test]
    fn download_streams_to_disk() {
        let content: Vec<u8> = (0..1_200_000u32).map(|i| (i % 251) as u8).collect();
        let server = Server::start(vec![file_reply(200, &content, content.len())]);
        let dest = temp_path("dl");
        let n = client_for(&server)
            .download_file("file-out", &dest)
            .unwrap();
        assert_eq!(n, content.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), content);
        assert_eq!(server.seen()[0].target, "/v1/files/file-out/content");
        std::fs::remove_file(&dest).unwrap();
    }

    #[test]
    fn truncated_download_is_detected_and_retried() {
        let full = b"{\"custom_id\":\"a\"}\n{\"custom_id\":\"b\"}\n";
        let server = Server::start(vec![
            file_reply(200, &full[..10], full.len()),
            file_reply(200, full, full.len()),
        ]);
        let dest = temp_path("trunc_ok");
        let n = client_for(&server)
            .download_file("file-out", &dest)
            .unwrap();
        assert_eq!(n, full.len() as u64);
        assert_eq!(std::fs::read(&dest).unwrap(), full);
        assert_eq!(server.count(), 2);
        std::fs::remove_file(&dest).unwrap();

        let server = Server::start(
            (0..5)
                .map(|_| file_reply(200, &full[..10], full.len()))
                .collect(),
        );
        let dest = temp_path("trunc_bad");
        let e = client_for(&server)
            .download_file("file-out", &dest)
            .unwrap_err();
        assert!(
            matches!(e, OpenAiError::Truncated { expected, received: 10, attempts: 5, .. } if expected == full.len() as u64),
            "{e:?}"
        );
        assert!(e.retryable());
        assert!(!dest.exists());
        let mut part = dest.into_os_string();
        part.push(".part");
        assert!(!PathBuf::from(part).exists());
    }

    #[test]
    fn download_to_vec_respects_the_limit() {
        let server = Server::start(vec![
            file_reply(200, b"0123456789", 10),
            file_reply(200, b"0123456789", 10),
        ]);
        let client = client_for(&server);
        assert_eq!(
            client.download_file_to_vec("file-x", 10).unwrap(),
            b"0123456789"
        );
        let e = client.download_file_to_vec("file-x", 9).unwrap_err();
        assert!(matches!(e, OpenAiError::Decode { .. }), "{e:?}");
    }

    /// Splits a multipart body into (headers, content) parts.
    fn multipart_parts(content_type: &str, body: &[u8]) -> Vec<(String, Vec<u8>)> {
        fn find(h: &[u8], n: &[u8], from: usize) -> Option<usize> {
            h.get(from..)?
                .windows(n.len())
                .position(|w| w == n)
                .map(|p| p + from)
        }
        let boundary = content_type.split_once("boundary=").unwrap().1;
        let delim = format!("--{boundary}").into_bytes();
        let mut parts = Vec::new();
        let mut pos = find(body, &delim, 0).unwrap() + delim.len();
        loop {
            if body[pos..].starts_with(b"--") {
                break;
            }
            let start = pos + 2; // CRLF after the delimiter
            let next = find(body, &delim, start).unwrap();
            let part = &body[start..next - 2]; // CRLF before the next delimiter
            let split = find(part, b"\r\n\r\n", 0).unwrap();
            parts.push((
                String::from_utf8(part[..split].to_vec()).unwrap(),
                part[split + 4..].to_vec(),
            ));
            pos = next + delim.len();
        }
        parts
    }

    #[test]
    fn upload_streams_a_correct_multipart_body() {
        let path = temp_path("up.jsonl");
        let line = "{\"custom_id\":\"issue-1\",\"method\":\"POST\",\"url\":\"/v1/chat/completions\",\"body\":{}}\n";
        let content = line.repeat(20_000);
        std::fs::write(&path, &content).unwrap();
        let server = Server::start(vec![json(
            200,
            r#"{"id":"file-up1","object":"file","bytes":1620000,"created_at":1,"filename":"job-1.jsonl","purpose":"batch","status":"processed"}"#,
        )]);
        let f = client_for(&server)
            .upload_batch_file(&path, "job-1.jsonl")
            .unwrap();
        assert_eq!(f.id, "file-up1");
        let seen = &server.seen()[0];
        assert_eq!(
            (seen.method.as_str(), seen.target.as_str()),
            ("POST", "/v1/files")
        );
        assert_eq!(seen.header("transfer-encoding"), None);
        assert_eq!(
            seen.header("content-length"),
            Some(seen.body.len().to_string().as_str())
        );
        let ct = seen.header("content-type").unwrap();
        assert!(ct.starts_with("multipart/form-data; boundary="), "{ct}");
        let parts = multipart_parts(ct, &seen.body);
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0].0,
            "Content-Disposition: form-data; name=\"purpose\""
        );
        assert_eq!(parts[0].1, b"batch");
        assert!(
            parts[1]
                .0
                .contains("name=\"file\"; filename=\"job-1.jsonl\""),
            "{}",
            parts[1].0
        );
        assert!(parts[1].0.contains("Content-Type: application/jsonl"));
        assert!(parts[1].1 == content.as_bytes(), "file part differs");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn upload_is_not_retried_after_a_500_but_is_after_a_refused_connect() {
        let server = Server::start(vec![json(500, "{}"), json(200, "{}")]);
        let e = client_for(&server)
            .upload_batch_bytes(b"{}\n", "x.jsonl")
            .unwrap_err();
        assert_eq!(server.count(), 1);
        assert!(e.may_have_reached_provider());

        let client = OpenAiClient::new(&closed_base(), KEY.to_string(), fast_opts()).unwrap();
        let e = client.upload_batch_bytes(b"{}\n", "x.jsonl").unwrap_err();
        assert_eq!(e.attempts(), 5);
        assert!(!e.may_have_reached_provider());
    }

    #[test]
    fn upload_of_a_missing_file_is_a_local_error() {
        let client = OpenAiClient::new(&closed_base(), KEY.to_string(), fast_opts()).unwrap();
        let e = client
            .upload_batch_file(&temp_path("missing"), "x.jsonl")
            .unwrap_err();
        assert!(matches!(e, OpenAiError::LocalIo { .. }), "{e:?}");
        assert!(!e.retryable());
        assert!(!e.may_have_reached_provider());
    }

    // -- Arguments and construction -------------------------------------------

    #[test]
    fn bad_arguments_fail_before_the_network() {
        let client = OpenAiClient::new(&closed_base(), KEY.to_string(), fast_opts()).unwrap();
        for id in ["", "../etc/passwd", "batch/1", "a b", "batch?x=1"] {
            let e = client.retrieve_batch(id).unwrap_err();
            assert!(matches!(e, OpenAiError::InvalidArgument(_)), "{id}: {e:?}");
        }
        let too_many: BTreeMap<String, String> = (0..17)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        let e = client
            .create_batch("file-1", CHAT_COMPLETIONS_ENDPOINT, "24h", &too_many)
            .unwrap_err();
        assert!(e.to_string().contains("at most 16"), "{e}");
        let long = BTreeMap::from([("k".to_string(), "v".repeat(513))]);
        assert!(client
            .create_batch("file-1", CHAT_COMPLETIONS_ENDPOINT, "24h", &long)
            .is_err());
        assert!(client
            .create_batch("file-1", "v1/chat", "24h", &BTreeMap::new())
            .is_err());
    }

    #[test]
    fn client_and_errors_can_cross_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<OpenAiClient>();
        assert_send_sync::<OpenAiError>();
    }

    #[test]
    fn construction_checks_url_and_key() {
        let e = OpenAiClient::new(
            &format!("http://proxy.example.com/{SENTINEL}/v1"),
            SENTINEL.to_string(),
            ClientOptions::default(),
        )
        .unwrap_err();
        assert_no_key("base url", &e);
        let e = OpenAiClient::new(
            "http://api.example.com/v1",
            KEY.to_string(),
            ClientOptions::default(),
        )
        .unwrap_err();
        assert!(matches!(e, OpenAiError::InvalidBaseUrl { .. }));
        assert!(e.to_string().contains("https"), "{e}");
        let e = OpenAiClient::new(
            "https://user:hunter2@api.example.com/v1",
            KEY.to_string(),
            ClientOptions::default(),
        )
        .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(
            OpenAiClient::new(DEFAULT_BASE_URL, KEY.to_string(), ClientOptions::default()).is_ok()
        );
        assert!(OpenAiClient::new(
            "http://localhost:8080/v1/",
            KEY.to_string(),
            ClientOptions::default()
        )
        .is_ok());
        assert!(matches!(
            OpenAiClient::new(DEFAULT_BASE_URL, "  ".to_string(), ClientOptions::default()),
            Err(OpenAiError::MissingApiKey)
        ));
        let bad = format!("{SENTINEL}\nInjected: 1");
        let e = OpenAiClient::new(DEFAULT_BASE_URL, bad, ClientOptions::default()).unwrap_err();
        assert!(matches!(e, OpenAiError::InvalidApiKey));
        assert!(!format!("{e} {e:?}").contains(SENTINEL));
        let c = OpenAiClient::new(
            DEFAULT_BASE_URL,
            format!(" {KEY}\n"),
            ClientOptions::default(),
        )
        .unwrap();
        assert_eq!(c.base_url(), DEFAULT_BASE_URL);
    }

    // -- The key never leaks --------------------------------------------------

    fn assert_no_key(what: &str, e: &OpenAiError) {
        let shown = format!("{e}");
        let debug = format!("{e:?}");
        assert!(
            !shown.contains(SENTINEL),
            "{what}: Display leaks the key: {shown}"
        );
        assert!(
            !debug.contains(SENTINEL),
            "{what}: Debug leaks the key: {debug}"
        );
        assert!(!shown.contains("SENTINEL"), "{what}: {shown}");
    }

    #[test]
    fn the_key_never_appears_in_errors() {
        let opts = ClientOptions {
            max_retries: 0,
            request_timeout: Duration::from_millis(300),
            ..fast_opts()
        };
        let echo_auth = |status: u16| {
            Reply::Echo(Box::new(move |seen: &Seen| {
                let auth = seen.header("authorization").unwrap_or("").to_string();
                response(
                    status,
                    &[("x-request-id", &auth), ("content-type", "text/plain")],
                    &format!("you sent {auth}"),
                )
            }))
        };
        let server = Server::start(vec![
            // 1. JSON error echoing the key in every field and header.
            json_h(
                401,
                &[("x-request-id", SENTINEL)],
                &format!(
                    r#"{{"error":{{"message":"Incorrect API key provided: {SENTINEL}.","type":"{SENTINEL}","param":"{SENTINEL}","code":"{SENTINEL}"}}}}"#
                ),
            ),
            // 2. Plain-text error echoing the Authorization header.
            echo_auth(500),
            // 3. Redirect whose Location carries the key.
            Reply::Raw(response(
                307,
                &[
                    ("location", &format!("http://127.0.0.1:1/?key={SENTINEL}")),
                    ("x-request-id", SENTINEL),
                ],
                "",
            )),
            // 4. A 2xx whose body does not parse, with the key in the offending value.
            json_h(
                200,
                &[("x-request-id", SENTINEL)],
                &format!(r#"{{"id":"b","status":"ok","request_counts":"{SENTINEL}"}}"#),
            ),
            // 5. A truncated download.
            file_reply(200, SENTINEL.as_bytes(), 1000),
            // 6. A timeout.
            Reply::Silent(Duration::from_secs(2)),
            // 7. An upload answered by an echo.
            echo_auth(400),
        ]);
        let client = OpenAiClient::new(&server.base, SENTINEL.to_string(), opts.clone()).unwrap();
        assert!(!format!("{client:?}").contains(SENTINEL));

        let e = client.retrieve_batch("batch_1").unwrap_err();
        assert!(e.to_string().contains("[redacted]"), "{e}");
        assert_no_key("json error", &e);
        assert_no_key("text error", &client.retrieve_batch("batch_1").unwrap_err());
        assert_no_key("redirect", &client.retrieve_batch("batch_1").unwrap_err());
        assert_no_key("decode", &client.retrieve_batch("batch_1").unwrap_err());
        assert_no_key(
            "truncated",
            &client.download_file_to_vec("file-1", 1 << 20).unwrap_err(),
        );
        assert_no_key("timeout", &client.retrieve_batch("batch_1").unwrap_err());
        assert_no_key(
            "upload",
            &client.upload_batch_bytes(b"{}", "x.jsonl").unwrap_err(),
        );
        assert_eq!(server.count(), 7);
        // Every request carried the key, so the server really had it to echo.
        assert!(server
            .seen()
            .iter()
            .all(|s| s.header("authorization") == Some(format!("Bearer {SENTINEL}").as_str())));

        let refused = OpenAiClient::new(&closed_base(), SENTINEL.to_string(), opts).unwrap();
        assert_no_key("connect", &refused.retrieve_batch("batch_1").unwrap_err());
        assert_no_key(
            "local",
            &refused
                .upload_batch_file(&temp_path("none"), "x")
                .unwrap_err(),
        );
    }

    #[test]
    fn an_echoed_key_is_scrubbed_from_successful_answers_too() {
        let echo = format!("(request header Authorization: Bearer {SENTINEL})");
        let batch = format!(
            r#"{{"id":"batch_1","object":"batch","status":"failed","errors":{{"object":"list","data":[{{"code":"{SENTINEL}","line":1,"message":"bad {echo}","param":null}}]}}}}"#
        );
        let line = format!(
            r#"{{"custom_id":"c1","response":null,"error":{{"code":"request_timeout","message":"timed out {echo}; key {SENTINEL}"}}}}"#
        );
        let server = Server::start(vec![
            json(200, &batch),
            json(
                200,
                &format!(r#"{{"object":"list","data":[{batch}],"has_more":false}}"#),
            ),
            file_reply(200, line.as_bytes(), line.len()),
        ]);
        let client = OpenAiClient::new(&server.base, SENTINEL.to_string(), fast_opts()).unwrap();
        let b = client.retrieve_batch("batch_1").unwrap();
        let listed = client.list_batches(None, 10).unwrap();
        let file = client.download_file_to_vec("file-1", 1 << 20).unwrap();
        for text in [
            format!("{b:?}"),
            format!("{listed:?}"),
            String::from_utf8(file.clone()).unwrap(),
        ] {
            assert!(
                !text.contains(SENTINEL) && !text.contains("Bearer"),
                "{text}"
            );
            assert!(text.contains("[redacted]"), "{text}");
        }
        let e = &b.errors.unwrap().data[0];
        assert_eq!(
            e.message.as_deref(),
            Some("bad (request header Authorization: [redacted])")
        );
        assert_eq!(e.code.as_deref(), Some("[redacted]"));
        let v: serde_json::Value = serde_json::from_slice(&file).unwrap();
        assert_eq!(
            v["error"]["message"],
            "timed out (request header Authorization: [redacted]); key [redacted]"
        );
    }

    // -- Against the Python fake provider (manual) ----------------------------

    /// Runs against a live fake provider (it is reset, so not a shared one):
    /// `AI_BATCH_TEST_BASE_URL=http://127.0.0.1:PORT/v1 cargo test -p ai_batch_core openai -- --ignored`
    /// (key from `AI_BATCH_TEST_API_KEY`, default `sk-fake-test-key`).
    #[test]
    #[ignore = "needs AI_BATCH_TEST_BASE_URL (the fake provider)"]
    fn live_fake_provider() {
        live_round_trip();
        live_faults();
    }

    /// Posts to the fake provider's control API (`/_fake/...`, no auth).
    fn fake_control(base: &str, path: &str, body: &str) -> serde_json::Value {
        let root = base.trim_end_matches("/v1");
        let mut resp = ureq::post(&format!("{root}{path}"))
            .header("content-type", "application/json")
            .send(body)
            .unwrap();
        resp.body_mut().read_json().unwrap()
    }

    /// The retry rules against the fake provider's injected faults.
    fn live_faults() {
        let base = std::env::var("AI_BATCH_TEST_BASE_URL").expect("AI_BATCH_TEST_BASE_URL");
        let key = std::env::var("AI_BATCH_TEST_API_KEY")
            .unwrap_or_else(|_| "sk-fake-test-key".to_string());
        let opts = ClientOptions {
            initial_backoff: Duration::from_millis(5),
            max_backoff: Duration::from_millis(20),
            ..ClientOptions::default()
        };
        let client = OpenAiClient::new(&base, key, opts).unwrap();
        fake_control(&base, "/_fake/reset", "{}");
        let job = "job-faults";
        let line = r#"{"custom_id":"issue-1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"kots"}]}}"#;
        let file = client
            .upload_batch_bytes(format!("{line}\n").as_bytes(), "faults.jsonl")
            .unwrap();

        // Two 429s (retried, Retry-After honoured), then a create that happens but whose answer is lost.
        fake_control(
            &base,
            "/_fake/config",
            r#"{"faults": [
                {"kind": "rate_limit", "method": "POST", "path": "/v1/batches", "count": 2, "retry_after_ms": 50},
                {"kind": "reset", "method": "POST", "path": "/v1/batches", "after_action": true}]}"#,
        );
        let meta = BTreeMap::from([(JOB_ID_METADATA_KEY.to_string(), job.to_string())]);
        let e = client
            .create_batch(
                &file.id,
                CHAT_COMPLETIONS_ENDPOINT,
                COMPLETION_WINDOW_24H,
                &meta,
            )
            .unwrap_err();
        eprintln!("lost create: {e}");
        assert!(e.may_have_reached_provider(), "{e:?}");
        let found = client
            .find_batch_for_job(job, None, None)
            .unwrap()
            .expect("the lost batch is found");
        let state = fake_control(&base, "/_fake/config", "{}");
        assert!(state.is_object());
        let mut state = ureq::get(&format!("{}/_fake/state", base.trim_end_matches("/v1")))
            .call()
            .unwrap();
        let state: serde_json::Value = state.body_mut().read_json().unwrap();
        assert_eq!(
            state["counts"]["creates_by_job"][job], 1,
            "{}",
            state["counts"]
        );

        // 502 with an HTML body twice, then the retrieve succeeds.
        fake_control(
            &base,
            "/_fake/config",
            r#"{"fault": {"kind": "bad_gateway", "method": "GET", "path": "/v1/batches/", "count": 2}}"#,
        );
        assert_eq!(client.retrieve_batch(&found.id).unwrap().id, found.id);

        // insufficient_quota is final.
        fake_control(
            &base,
            "/_fake/config",
            r#"{"fault": {"kind": "insufficient_quota", "method": "GET", "path": "/v1/batches/", "count": 1}}"#,
        );
        let e = client.retrieve_batch(&found.id).unwrap_err();
        eprintln!("quota: {e}");
        assert_eq!(
            (e.status(), e.code(), e.retryable()),
            (Some(429), Some("insufficient_quota"), false)
        );

        // A truncated download is retried.
        let mut batch = client.retrieve_batch(&found.id).unwrap();
        while !batch.status.is_terminal() {
            batch = client.retrieve_batch(&found.id).unwrap();
        }
        let out = batch.output_file_id.expect("output file");
        fake_control(
            &base,
            "/_fake/config",
            r#"{"fault": {"kind": "truncate", "path": "/v1/files/", "count": 2, "truncate_fraction": 0.3}}"#,
        );
        let bytes = client.download_file_to_vec(&out, 1 << 20).unwrap();
        assert!(String::from_utf8(bytes).unwrap().contains("issue-1"));

        // A 500 on create is not repeated.
        fake_control(
            &base,
            "/_fake/config",
            r#"{"fault": {"kind": "server_error", "method": "POST", "path": "/v1/batches", "count": 1}}"#,
        );
        let e = client
            .create_batch(
                &file.id,
                CHAT_COMPLETIONS_ENDPOINT,
                COMPLETION_WINDOW_24H,
                &meta,
            )
            .unwrap_err();
        eprintln!("create 500: {e}");
        assert_eq!(e.attempts(), 1);
        fake_control(&base, "/_fake/reset", "{}");
    }

    /// Upload, create, find, poll, download, delete.
    fn live_round_trip() {
        let base = std::env::var("AI_BATCH_TEST_BASE_URL").expect("AI_BATCH_TEST_BASE_URL");
        let key = std::env::var("AI_BATCH_TEST_API_KEY")
            .unwrap_or_else(|_| "sk-fake-test-key".to_string());
        let client = OpenAiClient::new(&base, key, ClientOptions::default()).unwrap();
        let job = format!("job-live-{}", std::process::id());
        let jsonl = r#"{"custom_id":"issue-1","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Title: kots admin console crashes"}]}}
{"custom_id":"issue-2","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Title: docs typo"}]}}
"#;
        let path = temp_path("live.jsonl");
        std::fs::write(&path, jsonl).unwrap();
        let file = client
            .upload_batch_file(&path, &format!("{job}.jsonl"))
            .unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(client.retrieve_file(&file.id).unwrap().id, file.id);
        let meta = BTreeMap::from([(JOB_ID_METADATA_KEY.to_string(), job.clone())]);
        let created = client
            .create_batch(
                &file.id,
                CHAT_COMPLETIONS_ENDPOINT,
                COMPLETION_WINDOW_24H,
                &meta,
            )
            .unwrap();
        assert_eq!(created.job_id(), Some(job.as_str()));
        let found = client
            .find_batch_for_job(&job, None, None)
            .unwrap()
            .expect("batch listed");
        assert_eq!(found.id, created.id);
        let mut batch = client.retrieve_batch(&created.id).unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !batch.status.is_terminal() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            batch = client.retrieve_batch(&created.id).unwrap();
        }
        eprintln!(
            "batch {} is {} with {:?}",
            batch.id, batch.status, batch.request_counts
        );
        if let Some(out) = &batch.output_file_id {
            let dest = temp_path("live_out.jsonl");
            let n = client.download_file(out, &dest).unwrap();
            let text = std::fs::read_to_string(&dest).unwrap();
            assert_eq!(n as usize, text.len());
            assert!(text.contains("issue-1"), "{text}");
            std::fs::remove_file(&dest).unwrap();
        }
        assert!(client.delete_file(&file.id).unwrap().deleted);
        let e = client.retrieve_batch("batch_does_not_exist").unwrap_err();
        assert!(e.is_not_found(), "{e}");
    }
}
