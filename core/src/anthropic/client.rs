//! The Message Batches endpoints, on the shared HTTP module ([`crate::http`]:
//! timeouts, retries, key scrubbing, streaming).
//!
//! Owns: the paths, methods and bodies of each call (create from the staged JSONL,
//! retrieve / list / cancel a batch, download its results), which of them are safe to
//! repeat, and where a `results_url` may point.

use std::path::Path;

use reqwest::Method;

use super::wire::{BatchList, MessageBatch};
use super::SERVICE;
use crate::http::{
    clean_text, Budget, Call, ClientOptions, HttpClient, HttpError, Payload, MAX_SHORT_CHARS,
};

const BATCHES: &str = "/v1/messages/batches";
/// Paging guard for [`AnthropicClient::scan_batches`].
const MAX_LIST_PAGES: u32 = 10_000;

/// A blocking Message Batches client. Build it once and reuse it.
#[derive(Debug)]
pub struct AnthropicClient {
    http: HttpClient,
}

impl AnthropicClient {
    /// A client for `base_url`, the root the `/v1/...` paths hang off
    /// (`https://api.anthropic.com`, or a gateway's path prefix), as for the official
    /// SDK. `https://` only, except on loopback hosts.
    pub fn new(base_url: &str, api_key: String, opts: ClientOptions) -> Result<Self, HttpError> {
        Ok(AnthropicClient {
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

    /// Creates a batch (`POST /v1/messages/batches`) whose `requests` are the lines of
    /// the staged JSONL at `path`, streamed (checked by
    /// [`super::request::check_jsonl_file`] when staged). `before_attempt` runs just
    /// before each attempt is sent; its error stops the create, unsent.
    ///
    /// Never repeated once the request may have reached Anthropic: reconcile
    /// ([`super::reconcile`]) before creating another.
    pub fn create_batch(
        &self,
        path: &Path,
        before_attempt: &mut dyn FnMut() -> Result<(), String>,
    ) -> Result<MessageBatch, HttpError> {
        let open = || super::request::array_body(path);
        let call = Call {
            op: "create batch",
            method: Method::POST,
            path: BATCHES.to_string(),
            payload: Payload::Stream {
                open: &open,
                content_type: "application/json",
            },
            idempotent: false,
            budget: Budget::Create,
        };
        self.http.json_noting(&call, before_attempt)
    }

    /// Retrieves a batch (`GET /v1/messages/batches/{id}`).
    pub fn retrieve_batch(&self, batch_id: &str) -> Result<MessageBatch, HttpError> {
        self.check_id(batch_id)?;
        self.http.json(&Call::get(
            "retrieve batch",
            format!("{BATCHES}/{batch_id}"),
        ))
    }

    /// Asks for a cancel (`POST .../{id}/cancel`). Not repeated after a failure that
    /// may have reached Anthropic: retrieve the batch to see.
    pub fn cancel_batch(&self, batch_id: &str) -> Result<MessageBatch, HttpError> {
        self.check_id(batch_id)?;
        self.http.json(&Call::post_empty(
            "cancel batch",
            format!("{BATCHES}/{batch_id}/cancel"),
        ))
    }

    /// One page of batches, newest first (`GET /v1/messages/batches?after_id=&limit=`).
    /// `limit` is clamped to 1..=1000.
    pub fn list_batches(&self, after_id: Option<&str>, limit: u32) -> Result<BatchList, HttpError> {
        let mut path = format!("{BATCHES}?limit={}", limit.clamp(1, 1000));
        if let Some(after) = after_id {
            self.check_id(after)?;
            path.push_str("&after_id=");
            path.push_str(after);
        }
        self.http.json(&Call::get("list batches", path))
    }

    /// Pages through the batches, newest first, until `visit` answers `false` or the
    /// list ends.
    pub fn scan_batches(
        &self,
        mut visit: impl FnMut(&MessageBatch) -> bool,
    ) -> Result<(), HttpError> {
        let mut after: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let page = self.list_batches(after.as_deref(), 1000)?;
            let next = page
                .last_id
                .clone()
                .or_else(|| page.data.last().map(|b| b.id.clone()));
            for b in &page.data {
                if !visit(b) {
                    return Ok(());
                }
            }
            match next {
                Some(next) if page.has_more && after.as_deref() != Some(next.as_str()) => {
                    after = Some(next);
                }
                _ => return Ok(()),
            }
        }
        Ok(())
    }

    /// The results JSONL at a batch's `results_url` (at most `max_bytes`), scrubbed of
    /// the API key. The key is only ever sent under the base URL: see [`results_path`].
    pub fn download_results(
        &self,
        results_url: &str,
        max_bytes: u64,
    ) -> Result<Vec<u8>, HttpError> {
        let path = results_path(self.base_url(), results_url).map_err(|e| self.http.invalid(e))?;
        self.http
            .download_to_vec("download results", results_url, path, max_bytes)
    }

    fn check_id(&self, id: &str) -> Result<(), HttpError> {
        if !id.is_empty()
            && id.len() <= 200
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            Ok(())
        } else {
            Err(self.http.invalid(format!(
                "batch id {:?} is not an id (expected letters, digits, _ and -)",
                clean_text(id, MAX_SHORT_CHARS)
            )))
        }
    }
}

/// The path (after the base URL) of a batch's `results_url`: a path is taken as it is
/// (the base URL's path prefix, a gateway's, comes first, as in the SDK); an absolute
/// URL must lie under the base URL, because the API key goes with the request.
pub fn results_path(base_url: &str, results_url: &str) -> Result<String, String> {
    let bad = |why: &str| {
        format!(
            "the batch's results_url {:?} {why}",
            clean_text(results_url, MAX_SHORT_CHARS)
        )
    };
    if results_url
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad("is not a URL"));
    }
    let path = if results_url.starts_with('/') && !results_url.starts_with("//") {
        results_url
    } else {
        let base = base_url.trim_end_matches('/');
        match results_url.strip_prefix(base) {
            Some(rest) if rest.starts_with('/') => rest,
            _ => {
                return Err(bad(&format!(
                    "is not under the base URL {base}; the API key is only sent there \
                     (set base_url to the host that serves the results)"
                )))
            }
        }
    };
    if path.split(['/', '?']).any(|seg| seg == "..") {
        return Err(bad("climbs out of the base URL"));
    }
    Ok(path.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn results_url_resolves_against_the_base_url_only() {
        let base = "https://api.anthropic.com";
        let url = "https://api.anthropic.com/v1/messages/batches/msgbatch_1/results";
        assert_eq!(
            results_path(base, url).unwrap(),
            "/v1/messages/batches/msgbatch_1/results"
        );
        // A relative results_url hangs off the base URL, gateway prefix included.
        assert_eq!(
            results_path("http://127.0.0.1:9/gw", "/v1/messages/batches/b/results").unwrap(),
            "/v1/messages/batches/b/results"
        );
        assert_eq!(
            results_path(
                "http://127.0.0.1:9/gw",
                "http://127.0.0.1:9/gw/v1/x/results"
            )
            .unwrap(),
            "/v1/x/results"
        );
        for bad in [
            "https://evil.example/v1/messages/batches/b/results",
            "https://api.anthropic.com.evil.example/v1/x",
            "//evil.example/v1/x",
            "/v1/../../x",
            "/v1/x y",
        ] {
            let e = results_path(base, bad).unwrap_err();
            assert!(e.contains("results_url"), "{bad}: {e}");
        }
        assert!(
            results_path("http://127.0.0.1:9/gw", "http://127.0.0.1:9/other/v1/x")
                .unwrap_err()
                .contains("only sent there")
        );
    }
}
