//! One plain HTTP/1.1 exchange with the Python fake provider's control API, shared by
//! the Rust tests that drive it (the OpenAI client's unit tests, `anthropic_fake.rs`).
//! Test-only: it panics on anything unexpected.
#![allow(clippy::expect_used)]

use std::io::{Read, Write};

/// Sends `method path` with a JSON `body` to the server of `base` (`http://host:port`,
/// any path after it ignored), `Connection: close`, and returns the JSON answer.
pub fn exchange(base: &str, method: &str, path: &str, body: &str) -> serde_json::Value {
    let host = base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    let mut s = std::net::TcpStream::connect(&host).expect("connect to the fake");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send to the fake");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read the fake's answer");
    let text = String::from_utf8(raw).expect("a UTF-8 answer");
    let (_, json) = text.split_once("\r\n\r\n").expect("headers and a body");
    serde_json::from_str(json).expect("a JSON body")
}
