//! What a transport failure is: the facts read from reqwest's error and its source
//! chain, and the classification (kind; may the request have been sent?).

use std::io;

use super::TransportKind;

/// What a transport failure says about itself, read from reqwest's error and the
/// chain of its sources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Facts {
    /// reqwest's connector failed (DNS, TCP connect, proxy, TLS handshake): it runs
    /// before a byte of the request is written.
    pub(super) connect: bool,
    /// The name did not resolve (hyper-util's `dns error`).
    pub(super) dns: bool,
    pub(super) timeout: bool,
    /// The request could not be built (bad URL or header).
    pub(super) builder: bool,
    /// hyper refused what the server sent as HTTP.
    pub(super) protocol: bool,
    /// The first I/O error kind in the chain, if any.
    pub(super) io: Option<io::ErrorKind>,
}

impl Facts {
    pub(super) fn of(e: &reqwest::Error) -> Facts {
        Facts {
            connect: e.is_connect(),
            timeout: e.is_timeout(),
            builder: e.is_builder(),
            ..Facts::of_chain(e)
        }
    }

    /// The facts the source chain of `e` holds.
    pub(super) fn of_chain(e: &(dyn std::error::Error + 'static)) -> Facts {
        let mut facts = Facts::default();
        let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(err) = cur {
            let text = err.to_string();
            facts.dns |= text.starts_with("dns error");
            facts.protocol |= text.starts_with("invalid HTTP") || text.contains("message head");
            if let Some(io) = err.downcast_ref::<io::Error>() {
                if io.kind() == io::ErrorKind::TimedOut {
                    facts.timeout = true;
                }
                if facts.io.is_none() && io.kind() != io::ErrorKind::Other {
                    facts.io = Some(io.kind());
                }
            }
            cur = err.source();
        }
        facts
    }
}

/// What kind of transport failure `f` is, and whether the request may have been
/// sent (conservative: only failures before the connection exists count as "not
/// sent").
pub(super) fn classify(f: &Facts) -> (TransportKind, bool) {
    if f.connect {
        // rustls reports a failed handshake as invalid data on the socket.
        let kind = if f.dns {
            TransportKind::Resolve
        } else if f.io == Some(io::ErrorKind::InvalidData) {
            TransportKind::Tls
        } else {
            TransportKind::Connect
        };
        return (kind, false);
    }
    if f.builder {
        return (TransportKind::Request, false);
    }
    if f.timeout {
        return (TransportKind::Timeout, true);
    }
    if f.protocol {
        return (TransportKind::Protocol, true);
    }
    match f.io {
        Some(kind) => classify_io(kind),
        None => (TransportKind::Io, true),
    }
}

pub(super) fn classify_io(kind: io::ErrorKind) -> (TransportKind, bool) {
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

/// A body read that failed because the body ended before its `Content-Length`
/// (hyper: "end of file before message length reached", or the connection closed
/// before the message completed).
pub(super) fn ends_early(e: &io::Error) -> bool {
    let facts = Facts::of_chain(e);
    if facts.timeout {
        return false;
    }
    facts.io == Some(io::ErrorKind::UnexpectedEof)
        || chain_text(e).contains("before message completed")
}

/// The messages of `e` and its sources, joined with `: ` (reqwest's own top line
/// names only the URL; the cause is below it).
pub(super) fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = err.source();
    }
    parts.join(": ")
}
