//! A watch on reqwest's connector (DNS, TCP connect, proxy, TLS handshake), so a
//! streamed upload whose connection never came up is still known as "nothing was
//! sent".
//!
//! Why: a streamed request body can hide the connector's error behind its own (with
//! `reqwest::blocking`, "send failed because receiver is gone" instead of the connect
//! error). The connector runs before a byte of the request is written, so a
//! connector failure during a call, with no connection made in that call, proves
//! the request never left. [`ConnectWatch`] counts successes and remembers the last
//! failure for [`super::HttpClient`] to read.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use super::{chain_text, Facts};

/// What the watch has seen, shared with the layer in the client.
#[derive(Debug, Default)]
pub(crate) struct ConnectWatch {
    made: AtomicU64,
    failed: AtomicU64,
    /// The last connector failure: its source chain's text and what it says.
    last_failure: Mutex<Option<(String, Facts)>>,
}

/// The counters at one moment, to compare after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    made: u64,
    failed: u64,
}

impl ConnectWatch {
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            made: self.made.load(Ordering::SeqCst),
            failed: self.failed.load(Ordering::SeqCst),
        }
    }

    /// Since `before`, a connection failed and none was made: the text of that
    /// failure. (The client is used by one thread at a time; a connection made by
    /// another call in between would make this answer `None`, the safe side.)
    pub(crate) fn failed_without_connecting(&self, before: Mark) -> Option<(String, Facts)> {
        let now = self.mark();
        if now.made != before.made || now.failed == before.failed {
            return None;
        }
        self.last_failure.lock().ok().and_then(|g| g.clone())
    }

    fn record<T>(&self, result: &Result<T, BoxError>) {
        match result {
            Ok(_) => {
                self.made.fetch_add(1, Ordering::SeqCst);
            }
            Err(e) => {
                let e: &(dyn std::error::Error + 'static) = &**e;
                let facts = Facts {
                    connect: true,
                    ..Facts::of_chain(e)
                };
                if let Ok(mut g) = self.last_failure.lock() {
                    *g = Some((chain_text(e), facts));
                }
                self.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// The tower layer given to `reqwest::ClientBuilder::connector_layer`.
#[derive(Debug, Clone)]
pub(crate) struct WatchLayer(pub(crate) Arc<ConnectWatch>);

impl<S> tower_layer::Layer<S> for WatchLayer {
    type Service = Watched<S>;

    fn layer(&self, inner: S) -> Watched<S> {
        Watched {
            inner,
            watch: Arc::clone(&self.0),
        }
    }
}

/// The connector service, watched.
#[derive(Debug, Clone)]
pub(crate) struct Watched<S> {
    inner: S,
    watch: Arc<ConnectWatch>,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl<S, R> tower_service::Service<R> for Watched<S>
where
    S: tower_service::Service<R, Error = BoxError>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: R) -> Self::Future {
        let fut = self.inner.call(req);
        let watch = Arc::clone(&self.watch);
        Box::pin(async move {
            let result = fut.await;
            watch.record(&result);
            result
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_counts_only_without_a_connection() {
        let w = ConnectWatch::default();
        let m = w.mark();
        assert_eq!(w.failed_without_connecting(m), None);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        w.record::<()>(&Err(Box::new(refused)));
        let (text, facts) = w.failed_without_connecting(m).unwrap();
        assert_eq!(text, "refused");
        assert!(facts.connect);
        assert_eq!(facts.io, Some(std::io::ErrorKind::ConnectionRefused));
        // A connection made since (a retry inside the pool, another call): unknown.
        w.record::<()>(&Ok(()));
        assert_eq!(w.failed_without_connecting(m), None);
        let m = w.mark();
        assert_eq!(w.failed_without_connecting(m), None);
    }
}
