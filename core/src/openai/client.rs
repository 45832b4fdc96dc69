//! The OpenAI Files and Batches endpoints, on the shared HTTP module
//! ([`crate::http`]: timeouts, retries, key scrubbing, streaming).
//!
//! Owns: the paths, methods and bodies of each call (upload a JSONL file, create /
//! retrieve / list / cancel a batch, download / retrieve / delete a file), which of
//! them are safe to repeat, and the checks on ids and metadata made before anything
//! is sent.

use std::collections::BTreeMap;
use std::path::Path;

use reqwest::Method;
use serde::Serialize;

use super::wire::{Batch, BatchList, FileDeleted, FileList, FileObject};
use super::{OpenAiError, SERVICE};
use crate::http::{
    clean_text, Budget, Call, ClientOptions, HttpClient, Multipart, Payload, UploadSource,
    MAX_SHORT_CHARS,
};

/// The create call's name in errors; it has its own timeout ([`ClientOptions::create_timeout`]).
const CREATE_BATCH_OP: &str = "create batch";
/// Paging guard for [`OpenAiClient::scan_batches`].
const MAX_LIST_PAGES: u32 = 10_000;
/// OpenAI's metadata limits.
const MAX_METADATA_PAIRS: usize = 16;
const MAX_METADATA_KEY_CHARS: usize = 64;
const MAX_METADATA_VALUE_CHARS: usize = 512;

/// A blocking OpenAI Files + Batches client. Build it once and reuse it: it
/// holds one connection pool.
#[derive(Debug)]
pub struct OpenAiClient {
    http: HttpClient,
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
    /// Builds a client for `base_url` (such as [`super::DEFAULT_BASE_URL`]).
    ///
    /// `base_url` must be `https://`, except on loopback hosts (`127.0.0.0/8`,
    /// `localhost`, `[::1]`) where `http://` is allowed. Environment proxies
    /// (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) are honoured, except for
    /// loopback hosts. Surrounding whitespace of `api_key` is ignored.
    pub fn new(base_url: &str, api_key: String, opts: ClientOptions) -> Result<Self, OpenAiError> {
        Ok(OpenAiClient {
            http: HttpClient::new(SERVICE, base_url, api_key, opts)?,
        })
    }

    /// The validated base URL, without a trailing slash.
    pub fn base_url(&self) -> &str {
        self.http.base_url()
    }

    /// The options this client was built with.
    pub fn options(&self) -> &ClientOptions {
        self.http.options()
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

    /// Used by the tests only (the operations go through the `Provider` seam).
    #[cfg(test)]
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
            budget: Budget::Transfer,
        };
        self.http.json(&call)
    }

    /// Used by the tests only (the operations go through the `Provider` seam).
    #[cfg(test)]
    /// Retrieves a file's metadata (`GET /files/{id}`).
    pub fn retrieve_file(&self, file_id: &str) -> Result<FileObject, OpenAiError> {
        check_id(&self.http, "file id", file_id)?;
        let call = Call::get("retrieve file", format!("/files/{file_id}"));
        self.http.json(&call)
    }

    /// Deletes a file (`DELETE /files/{id}`). Retried like a GET; note that a
    /// retry after a lost success answers 404 ([`OpenAiError::is_not_found`]).
    pub fn delete_file(&self, file_id: &str) -> Result<FileDeleted, OpenAiError> {
        check_id(&self.http, "file id", file_id)?;
        let call = Call {
            method: Method::DELETE,
            ..Call::get("delete file", format!("/files/{file_id}"))
        };
        self.http.json(&call)
    }

    /// Used by the tests only (the operations go through the `Provider` seam).
    #[cfg(test)]
    /// Downloads a file's content (`GET /files/{id}/content`) to `dest`,
    /// streamed. The bytes go to `dest` + `.part` first and are renamed to
    /// `dest` only when complete, so `dest` never holds a partial file. A body
    /// shorter than its `Content-Length` is an error (retried). Returns the
    /// number of bytes written.
    pub fn download_file(&self, file_id: &str, dest: &Path) -> Result<u64, OpenAiError> {
        check_id(&self.http, "file id", file_id)?;
        self.http.download_to_file(
            "download file",
            file_id,
            format!("/files/{file_id}/content"),
            dest,
        )
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
        check_id(&self.http, "file id", file_id)?;
        self.http.download_to_vec(
            "download file",
            file_id,
            format!("/files/{file_id}/content"),
            max_bytes,
        )
    }

    // -- Batches -------------------------------------------------------------

    /// Used by the tests only (the operations go through the `Provider` seam).
    #[cfg(test)]
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
        check_id(&self.http, "input file id", input_file_id)?;
        if !endpoint.starts_with('/') || endpoint.chars().any(|c| c.is_whitespace()) {
            return Err(self.http.invalid(format!(
                "batch endpoint {:?} must be a path such as /v1/chat/completions",
                clean_text(endpoint, MAX_SHORT_CHARS)
            )));
        }
        if completion_window.trim().is_empty() {
            return Err(self
                .http
                .invalid("the completion window is empty (use 24h)".to_string()));
        }
        check_metadata(&self.http, metadata)?;
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
            self.http
                .invalid(format!("cannot encode the batch request: {e}"))
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
            budget: Budget::Create,
        };
        self.http.json_noting(&call, before_attempt)
    }

    /// Retrieves a batch (`GET /batches/{id}`).
    pub fn retrieve_batch(&self, batch_id: &str) -> Result<Batch, OpenAiError> {
        check_id(&self.http, "batch id", batch_id)?;
        let call = Call::get("retrieve batch", format!("/batches/{batch_id}"));
        self.http.json(&call)
    }

    /// Cancels a batch (`POST /batches/{id}/cancel`). Not repeated after a
    /// failure that may have reached OpenAI: retrieve the batch to see.
    pub fn cancel_batch(&self, batch_id: &str) -> Result<Batch, OpenAiError> {
        check_id(&self.http, "batch id", batch_id)?;
        let call = Call {
            op: "cancel batch",
            method: Method::POST,
            path: format!("/batches/{batch_id}/cancel"),
            payload: Payload::Bytes {
                bytes: b"",
                content_type: "application/json",
            },
            idempotent: false,
            budget: Budget::Json,
        };
        self.http.json(&call)
    }

    /// One page of the organisation's batches, newest first (`GET /batches`).
    /// `limit` is clamped to 1..=100.
    pub fn list_batches(&self, after: Option<&str>, limit: u32) -> Result<BatchList, OpenAiError> {
        let mut path = format!("/batches?limit={}", limit.clamp(1, 100));
        if let Some(after) = after {
            check_id(&self.http, "batch id", after)?;
            path.push_str("&after=");
            path.push_str(after);
        }
        let call = Call::get("list batches", path);
        self.http.json(&call)
    }

    /// One page of files with `purpose`, newest first (GET /files).
    pub fn list_files(
        &self,
        purpose: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<FileList, OpenAiError> {
        check_id(&self.http, "purpose", purpose)?;
        let mut path = format!(
            "/files?purpose={purpose}&order=desc&limit={}",
            limit.clamp(1, 10_000)
        );
        if let Some(after) = after {
            check_id(&self.http, "file id", after)?;
            path.push_str("&after=");
            path.push_str(after);
        }
        let call = Call::get("list files", path);
        self.http.json(&call)
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
}

/// Ids go into URL paths: only `[A-Za-z0-9_-]`, as OpenAI's ids are.
fn check_id(http: &HttpClient, what: &str, id: &str) -> Result<(), OpenAiError> {
    let ok = !id.is_empty()
        && id.len() <= 200
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(http.invalid(format!(
            "{what} {:?} is not a valid OpenAI id (letters, digits, _ and - only)",
            clean_text(id, 80)
        )))
    }
}

fn check_metadata(
    http: &HttpClient,
    metadata: &BTreeMap<String, String>,
) -> Result<(), OpenAiError> {
    if metadata.len() > MAX_METADATA_PAIRS {
        return Err(http.invalid(format!(
            "batch metadata has {} pairs; OpenAI allows at most {MAX_METADATA_PAIRS}",
            metadata.len()
        )));
    }
    for (k, v) in metadata {
        if k.is_empty() || k.chars().count() > MAX_METADATA_KEY_CHARS {
            return Err(http.invalid(format!(
                "batch metadata key {:?} must have 1 to {MAX_METADATA_KEY_CHARS} characters",
                clean_text(k, 80)
            )));
        }
        if v.chars().count() > MAX_METADATA_VALUE_CHARS {
            return Err(http.invalid(format!(
                "batch metadata value of {:?} is longer than {MAX_METADATA_VALUE_CHARS} characters",
                clean_text(k, 80)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "../../tests/common/fake_http.rs"]
mod fake_http;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::super::{
        BatchStatus, TransportKind, CHAT_COMPLETIONS_ENDPOINT, COMPLETION_WINDOW_24H,
        DEFAULT_BASE_URL, JOB_ID_METADATA_KEY,
    };
    use super::*;
    use std::collections::VecDeque;
    use std::io::{BufRead, BufReader};
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::path::PathBuf;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;
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
            Some(super::super::wire::RequestCounts {
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
        assert_eq!(e.attempts(), 5, "{e:?}");
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
            assert!(
                matches!(e, OpenAiError::InvalidArgument { .. }),
                "{id}: {e:?}"
            );
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
            Err(OpenAiError::MissingApiKey { .. })
        ));
        let bad = format!("{SENTINEL}\nInjected: 1");
        let e = OpenAiClient::new(DEFAULT_BASE_URL, bad, ClientOptions::default()).unwrap_err();
        assert!(matches!(e, OpenAiError::InvalidApiKey { .. }));
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
        fake_http::exchange(base, "POST", path, body)
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
        let state = fake_http::exchange(&base, "GET", "/_fake/state", "");
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
