//! The one HTTP module every provider uses: a `reqwest` client (rustls, no
//! redirects followed) called in blocking style, timeouts, the retry loop, and the
//! scrubbing of the API key out of everything received.
//!
//! Blocking style, not `reqwest::blocking`: [`HttpClient`] owns a one-worker tokio
//! runtime and waits on reqwest's async client (`Runtime::block_on`), which is what
//! `reqwest::blocking` does inside, with one difference that matters here: the
//! request file is streamed in 1 MiB frames read on the runtime's worker
//! ([`FileBody`]). `reqwest::blocking` streams a body from the calling thread in
//! 8 KiB pieces over a zero-capacity channel (`blocking/body.rs`, `send_future`), one
//! thread hand-off per piece: a 253 MB file took 1.2-1.7 s to a local sink that way
//! against 0.19-0.31 s in 1 MiB frames (a probe on reqwest 0.12.28, see
//! BENCHMARKS.md), and reading the whole file into memory first would add its size
//! to the peak RSS.
//!
//! Retry policy, in one place ([`HttpClient`] applies it to every call):
//! - Calls that are safe to repeat (GET, DELETE) are retried on 408, 409, 429
//!   (except a provider's final codes such as `insufficient_quota`), >= 500,
//!   connection failures, timeouts, connections closed mid-exchange and truncated
//!   downloads.
//! - Calls that create something (upload, create batch) and cancel are POSTs
//!   and are retried only when the request provably did not take effect: it
//!   never left (DNS, connect or TLS-handshake failure), or the server answered
//!   429 (rate limited, not a final code). Any other failure is returned with
//!   [`HttpError::may_have_reached_provider`] set, so the caller reconciles
//!   instead of creating a second batch.
//! - A `x-should-retry: false` header always stops retries.
//! - The wait is `Retry-After` (`retry-after-ms`, seconds or HTTP date) capped
//!   at [`ClientOptions::max_retry_after`], else a capped exponential backoff
//!   with jitter.
//!
//! "Did not reach the provider": reqwest reports a failure of its connector (DNS
//! resolution, TCP connect, proxy CONNECT, TLS handshake) as a connect error, and
//! the connector runs before a byte of the request is written ([`classify`]).
//!
//! The API key is only ever placed in the `Authorization` header (marked
//! sensitive). `Debug` of the client redacts it. Everything that comes in from
//! the server is scrubbed of it (and of any `Bearer` token, see
//! [`redact_secrets`]) on the way in, in one place per kind of input: JSON
//! responses before they are parsed ([`HttpClient::json`]), files downloaded into
//! memory ([`HttpClient::download_to_vec`]), and error bodies, headers and
//! transport texts (`scrub`).

mod body;
mod connect;
mod error;
mod rules;
mod transport;

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use body::{BodyReader, FileBody};
use connect::{ConnectWatch, WatchLayer};
use transport::{chain_text, classify, ends_early, Facts};

use reqwest::header::{self, HeaderMap, HeaderValue};
use reqwest::Method;
use reqwest::{Client, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::Deserialize;

pub use error::{ApiError, HttpError, TransportError, TransportKind};
pub(crate) use rules::{
    backoff_delay, clean_text, parse_retry_after, redact_secrets, redact_secrets_text, Multipart,
};
pub use rules::{validate_base_url, BaseUrl};

const USER_AGENT: &str = concat!("ai_batch/", env!("CARGO_PKG_VERSION"));
/// At most this much of an error body is read.
const MAX_ERROR_BODY: u64 = 64 * 1024;
/// At most this much of a JSON response is read.
const MAX_JSON_BODY: u64 = 64 * 1024 * 1024;
/// Provider messages are cut to this many characters.
const MAX_MESSAGE_CHARS: usize = 500;
/// Codes, types, request ids, locations are cut to this many characters.
pub(crate) const MAX_SHORT_CHARS: usize = 200;

/// Who is on the other end, for messages and the provider's own error rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Service {
    /// The name in messages (`OpenAI`).
    pub name: &'static str,
    /// The environment variable users set the key in (`OPENAI_API_KEY`).
    pub key_env: &'static str,
    /// Error codes (or types) no retry gets past, even on 429 (`insufficient_quota`).
    pub final_codes: &'static [&'static str],
    /// How the API key travels.
    pub auth: Auth,
    /// Headers sent with every request (`anthropic-version`).
    pub headers: &'static [(&'static str, &'static str)],
}

/// How a provider wants the API key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <key>` (OpenAI).
    Bearer,
    /// The key alone in the named header (`x-api-key` at Anthropic).
    Header(&'static str),
}

/// Timeouts and retry settings of an [`HttpClient`].
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
    /// No byte received for this long ends an attempt (a download that stalls, an
    /// answer that never starts; so it also caps the other timeouts); a connection
    /// whose sent data stays unacknowledged this long (an upload the peer stopped
    /// reading) is dropped (`TCP_USER_TIMEOUT`); a silent peer is probed by TCP
    /// keep-alive at this interval. Default 120 s.
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

/// Which timeout one attempt of a call gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    /// [`ClientOptions::request_timeout`].
    Json,
    /// [`ClientOptions::create_timeout`].
    Create,
    /// [`ClientOptions::transfer_timeout`].
    Transfer,
}

/// What one call is, for the retry loop.
pub(crate) struct Call<'a> {
    pub(crate) op: &'static str,
    pub(crate) method: Method,
    /// The path after the base URL, with its query.
    pub(crate) path: String,
    pub(crate) payload: Payload<'a>,
    /// Safe to repeat whatever happened (GET, DELETE).
    pub(crate) idempotent: bool,
    pub(crate) budget: Budget,
}

impl Call<'_> {
    /// A GET of a JSON answer.
    pub(crate) fn get(op: &'static str, path: String) -> Self {
        Call {
            op,
            method: Method::GET,
            path,
            payload: Payload::None,
            idempotent: true,
            budget: Budget::Json,
        }
    }

    /// A POST without a body (a cancel): not repeated once it may have reached the provider.
    pub(crate) fn post_empty(op: &'static str, path: String) -> Self {
        Call {
            op,
            method: Method::POST,
            path,
            payload: Payload::Bytes {
                bytes: b"",
                content_type: "application/json",
            },
            idempotent: false,
            budget: Budget::Json,
        }
    }
}

pub(crate) enum Payload<'a> {
    /// No body (GET, DELETE).
    None,
    /// A body held in memory.
    Bytes {
        bytes: &'a [u8],
        content_type: &'static str,
    },
    /// A body streamed from a reader that `open` makes afresh for every attempt,
    /// together with its exact length.
    Stream {
        open: &'a (dyn Fn() -> io::Result<(Box<dyn Read + Send>, u64)> + Sync),
        content_type: &'static str,
    },
    /// A multipart body around a file, streamed from disk.
    Multipart {
        form: &'a Multipart,
        file: UploadSource<'a>,
    },
}

#[derive(Clone, Copy)]
pub(crate) enum UploadSource<'a> {
    Path(&'a Path),
    /// Bytes in memory (the tests' small uploads).
    #[cfg(test)]
    Bytes(&'a [u8]),
}

/// A blocking HTTP client for one provider. Build it once and reuse it: it
/// holds one connection pool and one runtime thread.
pub struct HttpClient {
    /// Declared before `rt`, so it is dropped while the runtime still runs.
    client: Client,
    /// One worker thread: it drives the connections (idle ones too, so the pool
    /// sees a connection the server closed) and reads [`FileBody`]'s frames.
    rt: tokio::runtime::Runtime,
    /// reqwest's connector, watched (see [`connect`]).
    connects: Arc<ConnectWatch>,
    service: Service,
    base_url: String,
    api_key: String,
    auth_header: header::HeaderName,
    auth: HeaderValue,
    opts: ClientOptions,
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("service", &self.service.name)
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .field("opts", &self.opts)
            .finish_non_exhaustive()
    }
}

impl HttpClient {
    /// Builds a client for `base_url`.
    ///
    /// `base_url` must be `https://`, except on loopback hosts (`127.0.0.0/8`,
    /// `localhost`, `[::1]`) where `http://` is allowed. Environment proxies
    /// (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) are honoured, except for
    /// loopback hosts. Surrounding whitespace of `api_key` is ignored.
    pub fn new(
        service: Service,
        base_url: &str,
        api_key: String,
        opts: ClientOptions,
    ) -> Result<Self, HttpError> {
        let api_key = api_key.trim().to_string();
        let base = validate_base_url(base_url).map_err(|reason| {
            let mut url = displayable_url(base_url);
            if api_key.len() >= 6 {
                url = url.replace(api_key.as_str(), "[redacted]");
            }
            HttpError::InvalidBaseUrl {
                service: service.name,
                url,
                reason,
            }
        })?;
        if api_key.is_empty() {
            return Err(HttpError::MissingApiKey {
                service: service.name,
                key_env: service.key_env,
            });
        }
        let invalid_key = || HttpError::InvalidApiKey {
            service: service.name,
            key_env: service.key_env,
        };
        let bad_header = |name: &str| HttpError::InvalidArgument {
            service: service.name,
            detail: format!("the header {name} cannot be sent"),
        };
        let header_name = |name: &'static str| {
            header::HeaderName::from_bytes(name.as_bytes()).map_err(|_| bad_header(name))
        };
        let (auth_header, auth_text) = match service.auth {
            Auth::Bearer => (header::AUTHORIZATION, format!("Bearer {api_key}")),
            Auth::Header(name) => (header_name(name)?, api_key.clone()),
        };
        let mut auth = HeaderValue::from_str(&auth_text).map_err(|_| invalid_key())?;
        auth.set_sensitive(true);
        let mut defaults = HeaderMap::new();
        defaults.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        for (name, value) in service.headers {
            let value = HeaderValue::from_str(value).map_err(|_| bad_header(name))?;
            defaults.insert(header_name(name)?, value);
        }
        let connects = Arc::new(ConnectWatch::default());
        let mut builder = Client::builder()
            .user_agent(USER_AGENT)
            .default_headers(defaults)
            .redirect(reqwest::redirect::Policy::none())
            .referer(false)
            .connect_timeout(opts.connect_timeout)
            // No total timeout here: every request sets its own (see `Budget`).
            .read_timeout(opts.stall_timeout)
            .tcp_keepalive(opts.stall_timeout)
            .tcp_user_timeout(opts.stall_timeout)
            .connector_layer(WatchLayer(Arc::clone(&connects)));
        if base.loopback {
            builder = builder.no_proxy();
        }
        let setup = |e: &dyn fmt::Display| HttpError::InvalidArgument {
            service: service.name,
            detail: format!(
                "cannot set up the HTTP client: {}",
                clean_text(&e.to_string(), MAX_SHORT_CHARS)
            ),
        };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("ai_batch-http")
            .enable_all()
            .build()
            .map_err(|e| setup(&e))?;
        // reqwest's client registers its resolver and timers with the runtime it is
        // built in.
        let client = rt
            .block_on(async { builder.build() })
            .map_err(|e| setup(&e))?;
        Ok(HttpClient {
            client,
            rt,
            connects,
            service,
            base_url: base.url,
            api_key,
            auth_header,
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

    /// An [`HttpError::InvalidArgument`] naming this provider.
    pub(crate) fn invalid(&self, detail: String) -> HttpError {
        HttpError::InvalidArgument {
            service: self.service.name,
            detail,
        }
    }

    // -- Calls -----------------------------------------------------------------

    /// Runs `call` and parses its JSON answer (scrubbed of secrets first).
    pub(crate) fn json<T: DeserializeOwned>(&self, call: &Call<'_>) -> Result<T, HttpError> {
        self.execute(call, &mut || Ok(()), |resp| self.read_json(call, resp))
    }

    /// [`json`](Self::json), calling `before` just before each attempt is sent (the
    /// first, and any retry). If it fails, that attempt is not sent and the error is
    /// [`HttpError::NotSent`].
    pub(crate) fn json_noting<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        before: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<T, HttpError> {
        let mut before = || {
            before().map_err(|detail| HttpError::NotSent {
                service: self.service.name,
                op: call.op,
                detail,
            })
        };
        self.execute(call, &mut before, |resp| self.read_json(call, resp))
    }

    /// Used by the tests only: collect downloads into memory.
    #[cfg(test)]
    /// Downloads the body of GET `path` to `dest`, streamed. The bytes go to `dest` +
    /// `.part` first and are renamed to `dest` only when complete, so `dest` never
    /// holds a partial file. A body shorter than its `Content-Length` is an error
    /// (retried). Returns the number of bytes written.
    pub(crate) fn download_to_file(
        &self,
        op: &'static str,
        file_id: &str,
        path: String,
        dest: &Path,
    ) -> Result<u64, HttpError> {
        let mut part_name = dest.as_os_str().to_owned();
        part_name.push(".part");
        let part = std::path::PathBuf::from(part_name);
        let call = Call {
            budget: Budget::Transfer,
            ..Call::get(op, path)
        };
        let local = |what: &'static str, path: &Path| {
            let path = path.to_path_buf();
            let service = self.service.name;
            move |source| HttpError::LocalIo {
                service,
                op,
                what,
                path,
                source,
            }
        };
        let result = self.execute(&call, &mut || Ok(()), |resp| {
            let file = File::create(&part).map_err(local("cannot create", &part))?;
            let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
            let n = self.copy_body(&call, file_id, resp, (&mut out, &part), u64::MAX)?;
            let file = out
                .into_inner()
                .map_err(|e| local("cannot write", &part)(e.into_error()))?;
            file.sync_all().map_err(local("cannot write", &part))?;
            Ok(n)
        });
        let moved = result.and_then(|n| {
            std::fs::rename(&part, dest)
                .map(|()| n)
                .map_err(local("cannot move the download into place at", dest))
        });
        if moved.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        moved
    }

    /// Downloads the body of GET `path` into memory, refusing more than
    /// `max_bytes`. Same checks and retries as [`download_to_file`](Self::download_to_file).
    /// The bytes come back scrubbed of the API key and `Bearer` tokens (a provider
    /// that echoes the request's `Authorization` into its error lines stores nothing).
    pub(crate) fn download_to_vec(
        &self,
        op: &'static str,
        file_id: &str,
        path: String,
        max_bytes: u64,
    ) -> Result<Vec<u8>, HttpError> {
        let call = Call {
            budget: Budget::Transfer,
            ..Call::get(op, path)
        };
        self.execute(&call, &mut || Ok(()), |resp| {
            // Sized from Content-Length up front: growing a 30+ MB Vec by doubling
            // copies it several times and faults in twice the pages.
            let hint = resp.content_length().unwrap_or(0).min(max_bytes);
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

    // -- The retry loop ----------------------------------------------------------

    /// Runs `call` until `handle` accepts a 2xx response, retrying what the
    /// policy allows (see the module documentation), calling `before` just before
    /// each attempt is sent; its error stops the call (that attempt is not sent).
    fn execute<T>(
        &self,
        call: &Call<'_>,
        before: &mut dyn FnMut() -> Result<(), HttpError>,
        mut handle: impl FnMut(Response) -> Result<T, HttpError>,
    ) -> Result<T, HttpError> {
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

    fn send_once(&self, call: &Call<'_>) -> Result<Response, HttpError> {
        let url = format!("{}{}", self.base_url, call.path);
        let timeout = match call.budget {
            Budget::Json => self.opts.request_timeout,
            Budget::Create => self.opts.create_timeout,
            Budget::Transfer => self.opts.transfer_timeout,
        };
        let builder: RequestBuilder = self
            .client
            .request(call.method.clone(), url)
            .header(self.auth_header.clone(), self.auth.clone())
            .timeout(timeout);
        let builder = match &call.payload {
            Payload::None => builder,
            Payload::Bytes {
                bytes,
                content_type,
            } => builder
                .header(header::CONTENT_TYPE, *content_type)
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(bytes.to_vec()),
            Payload::Stream { open, content_type } => {
                let (reader, len) = open().map_err(|source| HttpError::LocalIo {
                    service: self.service.name,
                    op: call.op,
                    what: "cannot read",
                    path: std::path::PathBuf::from("<request body>"),
                    source,
                })?;
                builder
                    .header(header::CONTENT_TYPE, *content_type)
                    .body(FileBody::body(reader, len))
            }
            Payload::Multipart { form, file } => {
                let builder = builder.header(header::CONTENT_TYPE, form.content_type());
                // `FileBody` streams the reader and sends its exact Content-Length.
                let body = match *file {
                    #[cfg(test)]
                    UploadSource::Bytes(bytes) => {
                        let len = bytes.len() as u64;
                        FileBody::body(
                            form.reader(io::Cursor::new(bytes.to_vec()), len),
                            form.body_len(len),
                        )
                    }
                    UploadSource::Path(path) => {
                        let local = |source| HttpError::LocalIo {
                            service: self.service.name,
                            op: call.op,
                            what: "cannot read",
                            path: path.to_path_buf(),
                            source,
                        };
                        let f = File::open(path).map_err(local)?;
                        let len = f.metadata().map_err(local)?.len();
                        FileBody::body(form.reader(f, len), form.body_len(len))
                    }
                };
                builder.body(body)
            }
        };
        let mark = self.connects.mark();
        // Built inside the runtime: reqwest arms the timeout when `send` is called.
        self.rt
            .block_on(async { builder.send().await })
            .map_err(|e| {
                // A streamed body hides the connector's error behind its own; the watch
                // still knows the connection never came up.
                match self.connects.failed_without_connecting(mark) {
                    Some((detail, facts)) if !e.is_connect() => {
                        let (kind, sent) = classify(&facts);
                        self.transport(call, kind, sent, &detail)
                    }
                    _ => self.transport_error(call, &e),
                }
            })
    }

    /// 2xx passes; 3xx is a redirect we do not follow; anything else becomes
    /// an [`ApiError`] built from the body and headers.
    fn check_status(&self, call: &Call<'_>, resp: Response) -> Result<Response, HttpError> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let headers = resp.headers();
        let request_id = self.request_id(headers);
        if status.is_redirection() {
            return Err(HttpError::Redirect {
                service: self.service.name,
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
        let _ = self.reader(resp).take(MAX_ERROR_BODY).read_to_end(&mut raw);
        let body = self.parse_error_body(&raw);
        let final_code = [&body.code, &body.error_type]
            .into_iter()
            .flatten()
            .any(|c| self.service.final_codes.contains(&c.as_str()));
        Err(HttpError::Api(Box::new(ApiError {
            service: self.service.name,
            op: call.op,
            status: status.as_u16(),
            code: body.code,
            error_type: body.error_type,
            message: body.message,
            param: body.param,
            request_id,
            retry_after,
            should_retry,
            final_code,
            attempts: 1,
        })))
    }

    /// `{"error": {"message", "type", "param", "code"}}` (the shape OpenAI and
    /// Anthropic share), else a top-level `message`/`detail`, else the body as text.
    fn parse_error_body(&self, raw: &[u8]) -> ErrorBody {
        #[derive(Deserialize)]
        struct Envelope {
            error: Option<Fields>,
        }
        #[derive(Deserialize)]
        struct Fields {
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
                Ok(Envelope { error: Some(e) }) => ErrorBody {
                    code: text(e.code, MAX_SHORT_CHARS),
                    error_type: text(e.kind, MAX_SHORT_CHARS),
                    message: text(e.message, MAX_MESSAGE_CHARS),
                    param: text(e.param, MAX_SHORT_CHARS),
                },
                // Some other JSON shape (a proxy's): a top-level message or detail, if any.
                _ => {
                    let field = |k: &str| value.get(k).filter(|v| v.is_string()).cloned();
                    let message = field("message").or_else(|| field("detail"));
                    ErrorBody {
                        message: text(message, MAX_MESSAGE_CHARS),
                        ..ErrorBody::default()
                    }
                }
            },
            Err(_) => {
                let body = String::from_utf8_lossy(raw);
                let body = self.scrub(&body, MAX_MESSAGE_CHARS);
                ErrorBody {
                    message: (!body.is_empty()).then_some(body),
                    ..ErrorBody::default()
                }
            }
        }
    }

    fn read_json<T: DeserializeOwned>(
        &self,
        call: &Call<'_>,
        resp: Response,
    ) -> Result<T, HttpError> {
        let op = call.op;
        let request_id = self.request_id(resp.headers());
        let mut raw = Vec::new();
        self.reader(resp)
            .take(MAX_JSON_BODY + 1)
            .read_to_end(&mut raw)
            .map_err(|e| self.body_error(call, &e))?;
        let decode = |detail| HttpError::Decode {
            service: self.service.name,
            op,
            detail,
            request_id,
        };
        if raw.len() as u64 > MAX_JSON_BODY {
            return Err(decode(format!(
                "the response is larger than {} MiB",
                MAX_JSON_BODY >> 20
            )));
        }
        let raw = self.scrub_bytes(raw);
        serde_json::from_slice(&raw)
            .map_err(|e| decode(self.scrub(&e.to_string(), MAX_SHORT_CHARS)))
    }

    /// Streams a 2xx body into `out` (named `out_path` in errors), checking
    /// `Content-Length` and `limit`.
    fn copy_body(
        &self,
        call: &Call<'_>,
        file_id: &str,
        resp: Response,
        (out, out_path): (&mut dyn Write, &Path),
        limit: u64,
    ) -> Result<u64, HttpError> {
        let op = call.op;
        let expected = resp.content_length();
        let request_id = self.request_id(resp.headers());
        let mut resp = self.reader(resp);
        let mut buf = vec![0u8; 64 * 1024];
        let mut received: u64 = 0;
        let truncated = |received| HttpError::Truncated {
            service: self.service.name,
            file_id: file_id.to_string(),
            expected: expected.unwrap_or(0),
            received,
            attempts: 1,
        };
        loop {
            let n = match resp.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if expected.is_some_and(|x| received < x) && ends_early(&e) {
                        return Err(truncated(received));
                    }
                    return Err(self.body_error(call, &e));
                }
            };
            received += n as u64;
            if received > limit {
                return Err(HttpError::Decode {
                    service: self.service.name,
                    op,
                    detail: format!("file {file_id} is larger than the {limit} bytes allowed"),
                    request_id,
                });
            }
            let chunk = buf.get(..n).unwrap_or(&[]);
            out.write_all(chunk).map_err(|source| HttpError::LocalIo {
                service: self.service.name,
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

    /// The body of `resp` as a blocking reader.
    fn reader(&self, resp: Response) -> BodyReader<'_> {
        BodyReader {
            rt: &self.rt,
            resp,
            pending: bytes::Bytes::new(),
        }
    }

    // -- Error building (every server or transport text goes through scrub) ----

    /// Server or transport text made safe for a message: secrets out, flattened, capped.
    pub(crate) fn scrub(&self, text: &str, max_chars: usize) -> String {
        clean_text(&redact_secrets_text(text, &self.api_key), max_chars)
    }

    /// A response body without the key or `Bearer` tokens in it.
    fn scrub_bytes(&self, raw: Vec<u8>) -> Vec<u8> {
        redact_secrets(&raw, &self.api_key).unwrap_or(raw)
    }

    /// The response's request id: `x-request-id` (OpenAI), else `request-id` (Anthropic).
    fn request_id(&self, headers: &HeaderMap) -> Option<String> {
        self.header_text(headers, "x-request-id")
            .or_else(|| self.header_text(headers, "request-id"))
    }

    fn header_text(&self, headers: &HeaderMap, name: &str) -> Option<String> {
        let value = headers.get(name)?;
        let text = String::from_utf8_lossy(value.as_bytes());
        let text = self.scrub(&text, MAX_SHORT_CHARS);
        (!text.is_empty()).then_some(text)
    }

    /// A failure reading a response body: the request was sent.
    fn body_error(&self, call: &Call<'_>, e: &io::Error) -> HttpError {
        let mut facts = Facts::of_chain(e);
        facts.io = facts.io.or(Some(e.kind()));
        let (kind, _) = classify(&facts);
        self.transport(call, kind, true, &chain_text(e))
    }

    fn transport_error(&self, call: &Call<'_>, e: &reqwest::Error) -> HttpError {
        let facts = Facts::of(e);
        let (kind, sent) = classify(&facts);
        self.transport(call, kind, sent, &chain_text(e))
    }

    fn transport(
        &self,
        call: &Call<'_>,
        kind: TransportKind,
        sent: bool,
        detail: &str,
    ) -> HttpError {
        HttpError::Transport(Box::new(TransportError {
            service: self.service.name,
            op: call.op,
            kind,
            detail: self.scrub(detail, MAX_SHORT_CHARS),
            sent,
            idempotent: call.idempotent,
            attempts: 1,
        }))
    }
}

/// The fields of a provider's error body.
#[derive(Default)]
struct ErrorBody {
    code: Option<String>,
    error_type: Option<String>,
    message: Option<String>,
    param: Option<String>,
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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn connector_failures_are_known_unsent() {
        let connect = |dns, io| Facts {
            connect: true,
            dns,
            io,
            ..Facts::default()
        };
        assert_eq!(
            classify(&connect(true, None)),
            (TransportKind::Resolve, false)
        );
        assert_eq!(
            classify(&connect(false, Some(io::ErrorKind::ConnectionRefused))),
            (TransportKind::Connect, false)
        );
        assert_eq!(
            classify(&connect(false, Some(io::ErrorKind::InvalidData))),
            (TransportKind::Tls, false)
        );
        // A connect timeout is still before sending.
        let timed_out = Facts {
            timeout: true,
            ..connect(false, Some(io::ErrorKind::TimedOut))
        };
        assert_eq!(classify(&timed_out), (TransportKind::Connect, false));
        // Without the connector's mark, the same errors could have come from the
        // middle of an exchange.
        let mid = |io| Facts {
            io,
            ..Facts::default()
        };
        assert_eq!(classify(&mid(None)), (TransportKind::Io, true));
        assert_eq!(
            classify(&mid(Some(io::ErrorKind::ConnectionReset))),
            (TransportKind::ConnectionClosed, true)
        );
        let timeout = Facts {
            timeout: true,
            ..Facts::default()
        };
        assert_eq!(classify(&timeout), (TransportKind::Timeout, true));
        let builder = Facts {
            builder: true,
            ..Facts::default()
        };
        assert_eq!(classify(&builder), (TransportKind::Request, false));
        let protocol = Facts {
            protocol: true,
            ..Facts::default()
        };
        assert_eq!(classify(&protocol), (TransportKind::Protocol, true));
    }

    #[test]
    fn facts_are_read_from_the_source_chain() {
        #[derive(Debug)]
        struct Wrap(&'static str, io::Error);
        impl fmt::Display for Wrap {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl std::error::Error for Wrap {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.1)
            }
        }
        let dns = Wrap(
            "dns error",
            io::Error::other("failed to lookup address information"),
        );
        let f = Facts::of_chain(&dns);
        assert!(f.dns && f.io.is_none(), "{f:?}");
        let eof = Wrap(
            "error reading a body from connection",
            io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "end of file before message length reached",
            ),
        );
        let e = io::Error::other(eof);
        assert!(ends_early(&e));
        assert_eq!(
            chain_text(&e),
            "error reading a body from connection: end of file before message length reached"
        );
        let timed_out = io::Error::new(io::ErrorKind::TimedOut, "operation timed out");
        assert!(!ends_early(&timed_out));
        assert!(Facts::of_chain(&timed_out).timeout);
    }

    #[test]
    fn displayable_url_masks_credentials() {
        assert_eq!(
            displayable_url(" https://user:pw@api.example.com/v1 "),
            "https://***@api.example.com/v1"
        );
        assert_eq!(displayable_url("not a url"), "not a url");
    }
}
