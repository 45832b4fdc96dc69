//! [`HttpError`]: everything that can go wrong talking to a provider over HTTP, and
//! the neutral classification every caller uses (retryable? may the request have
//! reached the provider? not found? status, code, request id).
//!
//! No variant ever holds the API key: server and transport texts are scrubbed of it
//! before they are stored here. Messages name the service (`OpenAI`, ...) given
//! by the provider in its [`Service`](super::Service).

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

/// Everything that can go wrong talking to a provider.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// No key was given.
    #[error("the {service} API key is empty (set {key_env})")]
    MissingApiKey {
        /// The provider's name in messages.
        service: &'static str,
        /// The environment variable users set the key in.
        key_env: &'static str,
    },
    /// The key cannot be sent in an HTTP header.
    #[error("the {service} API key contains characters that cannot be sent in an HTTP header (check {key_env})")]
    InvalidApiKey {
        /// The provider's name in messages.
        service: &'static str,
        /// The environment variable users set the key in.
        key_env: &'static str,
    },
    /// The base URL was refused.
    #[error("invalid {service} base URL {url:?}: {reason}")]
    InvalidBaseUrl {
        /// The provider's name in messages.
        service: &'static str,
        /// The URL as given (credentials masked).
        url: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// A parameter was refused before anything was sent.
    #[error("invalid {service} request: {detail}")]
    InvalidArgument {
        /// The provider's name in messages.
        service: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The provider's answers do not decide the question yet (several batches could
    /// be a lost create's); asking again later will.
    #[error("{service}: {detail}")]
    Undecided {
        /// The provider's name in messages.
        service: &'static str,
        /// What is undecided, and when it will be.
        detail: String,
    },
    /// The provider (or something in between) answered with an error status.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// The exchange failed below HTTP.
    #[error("{0}")]
    Transport(Box<TransportError>),
    /// The server answered with a redirect, which is never followed.
    #[error("{service} {op}: the server answered {status} redirecting to {}; redirects are not followed (check the base URL){}",
        location.as_deref().unwrap_or("nowhere"),
        request_id.as_deref().map(|r| format!(" (request {r})")).unwrap_or_default())]
    Redirect {
        /// The provider's name in messages.
        service: &'static str,
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
    #[error("{service} {op}: unexpected response: {detail}{}",
        request_id.as_deref().map(|r| format!(" (request {r})")).unwrap_or_default())]
    Decode {
        /// The provider's name in messages.
        service: &'static str,
        /// The operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
        /// The `x-request-id` header.
        request_id: Option<String>,
    },
    /// A download ended before its `Content-Length`.
    #[error("{service} download of file {file_id} was cut short: received {received} of {expected} bytes, try again{}",
        attempts_note(*attempts))]
    Truncated {
        /// The provider's name in messages.
        service: &'static str,
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
    #[error("{service} {op} was not sent: {detail}")]
    NotSent {
        /// The provider's name in messages.
        service: &'static str,
        /// The operation.
        op: &'static str,
        /// Why.
        detail: String,
    },
    /// A local file could not be read or written.
    #[error("{service} {op}: {what} {}: {source}", path.display())]
    LocalIo {
        /// The provider's name in messages.
        service: &'static str,
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

/// An error status from the provider.
///
/// Displays as `OpenAI returned 401 invalid_api_key: Incorrect API key
/// provided (request req_123)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// The provider's name in messages.
    pub service: &'static str,
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
    /// The `x-request-id` header, to quote to the provider's support.
    pub request_id: Option<String>,
    /// The delay the server asked for, if any.
    pub retry_after: Option<Duration>,
    /// The `x-should-retry` header, if any.
    pub should_retry: Option<bool>,
    /// The code (or type) is one the provider says no retry gets past, such as
    /// OpenAI's `insufficient_quota` (see [`Service::final_codes`](super::Service)).
    pub final_code: bool,
    /// Attempts made, including retries.
    pub attempts: u32,
}

impl ApiError {
    /// The status is one that a later attempt may get past.
    fn status_retryable(&self) -> bool {
        (matches!(self.status, 408 | 409 | 429) && !self.final_code) || self.status >= 500
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} returned {}", self.service, self.status)?;
        if let Some(code) = self.code.as_deref().or(self.error_type.as_deref()) {
            write!(f, " {code}")?;
        }
        let reason = reqwest::StatusCode::from_u16(self.status)
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

    pub(crate) fn retryable(self) -> bool {
        !matches!(self, TransportKind::Tls | TransportKind::Request)
    }
}

/// A failure below HTTP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransportError {
    /// The provider's name in messages.
    pub service: &'static str,
    /// The operation (`create batch`, ...).
    pub op: &'static str,
    /// What failed.
    pub kind: TransportKind,
    /// The transport's own text (scrubbed, capped).
    pub detail: String,
    /// The request may have been sent (only DNS/connect/TLS-handshake failures say no).
    pub sent: bool,
    /// The call was safe to repeat.
    pub idempotent: bool,
    /// Attempts made, including retries.
    pub attempts: u32,
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let service = self.service;
        write!(
            f,
            "{service} {} failed: {} ({})",
            self.op,
            self.kind.describe(),
            self.detail
        )?;
        if !self.sent {
            write!(f, "; the request did not reach {service}, nothing was sent")?;
        } else if !self.idempotent {
            write!(
                f,
                "; the request may have reached {service}, check before repeating it"
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

impl HttpError {
    /// The provider's name in messages (`OpenAI`).
    pub fn service(&self) -> &'static str {
        match self {
            HttpError::MissingApiKey { service, .. }
            | HttpError::InvalidApiKey { service, .. }
            | HttpError::InvalidBaseUrl { service, .. }
            | HttpError::InvalidArgument { service, .. }
            | HttpError::Undecided { service, .. }
            | HttpError::Redirect { service, .. }
            | HttpError::Decode { service, .. }
            | HttpError::Truncated { service, .. }
            | HttpError::NotSent { service, .. }
            | HttpError::LocalIo { service, .. } => service,
            HttpError::Api(e) => e.service,
            HttpError::Transport(e) => e.service,
        }
    }

    /// A later attempt may succeed: statuses 408, 409, 429 (not a final code such
    /// as `insufficient_quota`) and 5xx, network failures and timeouts, truncated
    /// downloads. When the error also
    /// [`may_have_reached_provider`](Self::may_have_reached_provider),
    /// reconcile before trying again.
    pub fn retryable(&self) -> bool {
        match self {
            HttpError::Api(e) => e.should_retry.unwrap_or_else(|| e.status_retryable()),
            HttpError::Transport(e) => e.kind.retryable(),
            HttpError::Truncated { .. } => true,
            _ => false,
        }
    }

    /// The request may have taken effect at the provider (a batch or a file may
    /// exist), so a blind repeat could duplicate it. False only when the
    /// failure proves otherwise: nothing was sent, the call was refused before
    /// the network, or the provider answered with a client error other than
    /// 408/409 (400, 401, 403, 404, 422, 429, ...) or a redirect.
    pub fn may_have_reached_provider(&self) -> bool {
        match self {
            HttpError::Api(e) => matches!(e.status, 408 | 409) || e.status >= 500 || e.status < 300,
            HttpError::Transport(e) => e.sent,
            HttpError::Decode { .. } | HttpError::Truncated { .. } => true,
            _ => false,
        }
    }

    /// The HTTP status, for [`HttpError::Api`] and redirects.
    pub fn status(&self) -> Option<u16> {
        match self {
            HttpError::Api(e) => Some(e.status),
            HttpError::Redirect { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The provider's error code (`error.code`).
    pub fn code(&self) -> Option<&str> {
        match self {
            HttpError::Api(e) => e.code.as_deref(),
            _ => None,
        }
    }

    /// The `x-request-id` of the failing response.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            HttpError::Api(e) => e.request_id.as_deref(),
            HttpError::Redirect { request_id, .. } | HttpError::Decode { request_id, .. } => {
                request_id.as_deref()
            }
            _ => None,
        }
    }

    /// A 404: the batch or file does not exist (or no longer).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// A download was cut short (retryable; the result files are not usable yet).
    pub fn is_truncated(&self) -> bool {
        matches!(self, HttpError::Truncated { .. })
    }

    /// The caller's step before an attempt failed: nothing was sent.
    pub fn is_not_sent(&self) -> bool {
        matches!(self, HttpError::NotSent { .. })
    }

    /// Attempts made (1 when the error came from the first try or before the network).
    pub fn attempts(&self) -> u32 {
        match self {
            HttpError::Api(e) => e.attempts,
            HttpError::Transport(e) => e.attempts,
            HttpError::Truncated { attempts, .. } => *attempts,
            _ => 1,
        }
    }

    /// Whether the retry loop may repeat the call on its own.
    pub(crate) fn auto_retry(&self, idempotent: bool) -> bool {
        if let HttpError::Api(e) = self {
            if e.should_retry == Some(false) {
                return false;
            }
        }
        if idempotent {
            return self.retryable();
        }
        match self {
            // Nothing left the machine.
            HttpError::Transport(e) => !e.sent && e.kind.retryable(),
            // Rate limited: refused before any processing.
            HttpError::Api(e) => e.status == 429 && !e.final_code,
            _ => false,
        }
    }

    pub(crate) fn retry_after(&self) -> Option<Duration> {
        match self {
            HttpError::Api(e) => e.retry_after,
            _ => None,
        }
    }

    pub(crate) fn with_attempts(mut self, n: u32) -> Self {
        match &mut self {
            HttpError::Api(e) => e.attempts = n,
            HttpError::Transport(e) => e.attempts = n,
            HttpError::Truncated { attempts, .. } => *attempts = n,
            _ => {}
        }
        self
    }
}
