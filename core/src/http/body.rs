//! Bodies in blocking style on the client's runtime: a response read as `io::Read`
//! ([`BodyReader`]) and a request file streamed in 1 MiB frames ([`FileBody`]; the
//! module above says why not `reqwest::blocking`).

use std::io::{self, Read};

use reqwest::{Body, Response};

/// A response body read in blocking style: each chunk awaited on the client's runtime.
pub(super) struct BodyReader<'a> {
    pub(super) rt: &'a tokio::runtime::Runtime,
    pub(super) resp: Response,
    /// What is left of the last chunk.
    pub(super) pending: bytes::Bytes,
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pending.is_empty() {
            match self.rt.block_on(self.resp.chunk()) {
                Ok(Some(chunk)) => self.pending = chunk,
                Ok(None) => return Ok(0),
                // As `reqwest::blocking` reports it: a timeout as `TimedOut`, the
                // rest as `Other` around reqwest's error (its chain is read by `Facts`).
                Err(e) if e.is_timeout() => return Err(io::Error::new(io::ErrorKind::TimedOut, e)),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
        let n = buf.len().min(self.pending.len());
        let chunk = self.pending.split_to(n);
        buf.get_mut(..n).unwrap_or_default().copy_from_slice(&chunk);
        Ok(n)
    }
}

/// A request body streamed from a reader in 1 MiB frames with its exact length
/// (so hyper sends `Content-Length`). Polled on the runtime's worker, which reads
/// the file: a read from the page cache takes well under a millisecond.
pub(super) struct FileBody {
    reader: std::sync::Mutex<Box<dyn Read + Send>>,
    left: u64,
}

impl FileBody {
    const FRAME: u64 = 1 << 20;

    pub(super) fn body(reader: impl Read + Send + 'static, len: u64) -> Body {
        Body::wrap(FileBody {
            reader: std::sync::Mutex::new(Box::new(reader)),
            left: len,
        })
    }
}

impl http_body::Body for FileBody {
    type Data = bytes::Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, io::Error>>> {
        use std::task::Poll;
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let want = self.left.min(Self::FRAME);
        let mut buf = Vec::with_capacity(usize::try_from(want).unwrap_or(0));
        let read = match self.reader.lock() {
            Ok(mut r) => r.by_ref().take(want).read_to_end(&mut buf),
            Err(_) => Err(io::Error::other("the upload's reader was poisoned")),
        };
        Poll::Ready(Some(match read {
            Ok(0) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file is shorter than when the upload started",
            )),
            Ok(n) => {
                self.left -= n as u64;
                Ok(http_body::Frame::data(bytes::Bytes::from(buf)))
            }
            Err(e) => Err(e),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.left)
    }
}
