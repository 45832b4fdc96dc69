//! The pure rules of the HTTP module: base-URL policy, retry timing (capped
//! exponential backoff with jitter, `Retry-After` in its three forms), the
//! streamed multipart body, the cleaning of text that a server sent us before
//! it goes into an error message, and the removal of secrets (the API key,
//! `Bearer` tokens) from everything a server sent us.
//!
//! Everything here is pure: no sockets, no clock reads except where a `now`
//! is passed in, so the rules are unit-tested on their own.

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// A validated provider base URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrl {
    /// `scheme://host[:port][/path]`, without a trailing slash.
    pub url: String,
    /// The host is a loopback address (`127.0.0.0/8`, `localhost`, `[::1]`).
    pub loopback: bool,
}

/// Checks a provider base URL such as `https://api.openai.com/v1`.
///
/// The scheme must be `https`, except for loopback hosts (`127.0.0.0/8`,
/// `localhost`, `[::1]`) where `http` is allowed, so a local fake provider can
/// be used without TLS. Credentials (`user:pass@`), queries and fragments are
/// refused. Returns the reason as a static text on failure.
pub fn validate_base_url(raw: &str) -> Result<BaseUrl, &'static str> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("it is empty");
    }
    if raw.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("it contains spaces or control characters");
    }
    let Some((scheme, rest)) = raw.split_once("://") else {
        return Err("it must start with https://");
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "https" && scheme != "http" {
        return Err("the scheme must be https");
    }
    if rest.contains('?') || rest.contains('#') {
        return Err("it must not contain a query or a fragment");
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err("it must not contain credentials (user:password@)");
    }
    let host = host_of(authority)?;
    let loopback = is_loopback_host(host);
    if scheme == "http" && !loopback {
        return Err(
            "the scheme must be https (http:// is only allowed for 127.0.0.1, localhost and [::1])",
        );
    }
    let path = path.trim_end_matches('/');
    Ok(BaseUrl {
        url: format!("{scheme}://{authority}{path}"),
        loopback,
    })
}

/// Splits `host[:port]` / `[v6]:port`, checking the port is numeric.
fn host_of(authority: &str) -> Result<&str, &'static str> {
    if authority.is_empty() {
        return Err("it has no host");
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some(end) = v6.find(']') else {
            return Err("its IPv6 host is missing the closing ]");
        };
        let after = v6.get(end + 1..).unwrap_or("");
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or("it has text after the IPv6 host")?,
            ),
        };
        (authority.get(..end + 2).unwrap_or(authority), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err("it has no host");
    }
    if let Some(port) = port {
        if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err("its port is not a number");
        }
        // TCP ports are 1 to 65535; `:99999` or `:0` can never be connected to.
        if !port.parse::<u16>().is_ok_and(|p| p >= 1) {
            return Err("its port must be a number from 1 to 65535");
        }
    }
    Ok(host)
}

/// `localhost`, `127.0.0.0/8` or `[::1]`.
fn is_loopback_host(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6
            .parse::<std::net::Ipv6Addr>()
            .is_ok_and(|ip| ip.is_loopback());
    }
    host.parse::<std::net::Ipv4Addr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// How long to wait before retry number `retry` (0 for the first retry):
/// `initial * 2^retry`, capped at `max`, then reduced by up to 25 % of jitter
/// (`jitter` in `[0, 1)`), as the official `openai-python` client does.
pub fn backoff_delay(retry: u32, initial: Duration, max: Duration, jitter: f64) -> Duration {
    let factor = 2f64.powi(i32::try_from(retry.min(30)).unwrap_or(30));
    let base = initial.as_secs_f64() * factor;
    let capped = base.min(max.as_secs_f64()).max(0.0);
    let jitter = if jitter.is_finite() {
        jitter.clamp(0.0, 1.0)
    } else {
        0.0
    };
    Duration::from_secs_f64(capped * (1.0 - 0.25 * jitter))
}

/// The delay a response asks for: `retry-after-ms` (milliseconds, checked
/// first), else `Retry-After` as seconds or as an HTTP date (IMF-fixdate).
/// Returns `None` when no usable positive delay is given.
pub fn parse_retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(ms) = header("retry-after-ms").and_then(parse_non_negative) {
        if ms > 0.0 {
            return duration_from_secs(ms / 1000.0);
        }
    }
    let value = header("retry-after")?;
    if let Some(secs) = parse_non_negative(value) {
        return if secs > 0.0 {
            duration_from_secs(secs)
        } else {
            None
        };
    }
    let at = parse_http_date(value)?;
    at.duration_since(now).ok().filter(|d| !d.is_zero())
}

fn parse_non_negative(s: &str) -> Option<f64> {
    let v: f64 = s.parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some(v)
}

fn duration_from_secs(secs: f64) -> Option<Duration> {
    // Anything beyond a day is nonsense for a retry; callers cap far lower.
    Duration::try_from_secs_f64(secs.min(86_400.0)).ok()
}

/// An HTTP date (IMF-fixdate such as `Sun, 06 Nov 1994 08:49:37 GMT`, and the two
/// obsolete forms RFC 9110 asks recipients to accept), by the `httpdate` crate.
fn parse_http_date(s: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(s).ok()
}

/// Makes server-sent text safe and short for an error message: control
/// characters become spaces, runs of spaces collapse, and the text is cut at
/// `max_chars` characters (an ellipsis marks the cut).
pub fn clean_text(s: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(s.len().min(max_chars + 3));
    let mut count = 0usize;
    let mut last_space = true;
    for c in s.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' {
            if last_space {
                continue;
            }
            last_space = true;
        } else {
            last_space = false;
        }
        if count == max_chars {
            let trimmed = out.trim_end().len();
            out.truncate(trimmed);
            out.push('…');
            return out;
        }
        out.push(c);
        count += 1;
    }
    out.trim_end().to_string()
}

/// What a secret found in provider text is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Keys shorter than this are not searched for (they would match ordinary text).
const MIN_KEY_LEN: usize = 6;
/// A `Bearer` token shorter than this is prose ("Bearer auth"), not a credential.
const MIN_BEARER_TOKEN: usize = 12;

/// Removes secrets from bytes a provider sent: every occurrence of `key` (as is,
/// and as it reads inside a JSON string), then every `Bearer <token>` (spelt
/// `Bearer`, `bearer` or `BEARER`; the word included) whose token is the redacted
/// key or at least 12 token characters long. Each becomes [`REDACTED`], which is
/// valid inside a JSON string, so a JSON document stays parseable. Returns `None`
/// when there is nothing to remove (the common case costs four SIMD scans).
pub fn redact_secrets(data: &[u8], key: &str) -> Option<Vec<u8>> {
    let mut changed: Option<Vec<u8>> = None;
    if key.len() >= MIN_KEY_LEN {
        let escaped = serde_json::to_string(key).unwrap_or_default();
        let escaped = escaped
            .strip_prefix('"')
            .and_then(|e| e.strip_suffix('"'))
            .unwrap_or(key);
        for form in [key, escaped] {
            let cur = changed.as_deref().unwrap_or(data);
            if let Some(next) = replace_all(cur, form.as_bytes(), REDACTED.as_bytes()) {
                changed = Some(next);
            }
            if escaped == key {
                break;
            }
        }
    }
    let cur = changed.as_deref().unwrap_or(data);
    match redact_bearer(cur) {
        Some(next) => Some(next),
        None => changed,
    }
}

/// [`redact_secrets`] for text.
pub fn redact_secrets_text(text: &str, key: &str) -> String {
    match redact_secrets(text.as_bytes(), key) {
        // Only ASCII runs were replaced by ASCII: still UTF-8.
        Some(b) => String::from_utf8(b)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        None => text.to_string(),
    }
}

fn replace_all(data: &[u8], needle: &[u8], with: &[u8]) -> Option<Vec<u8>> {
    let mut hits = memchr::memmem::find_iter(data, needle).peekable();
    hits.peek()?;
    let mut out = Vec::with_capacity(data.len());
    let mut at = 0;
    for hit in hits {
        if hit < at {
            continue;
        }
        out.extend_from_slice(data.get(at..hit).unwrap_or_default());
        out.extend_from_slice(with);
        at = hit + needle.len();
    }
    out.extend_from_slice(data.get(at..).unwrap_or_default());
    Some(out)
}

/// RFC 6750 `b64token` characters (and `=` padding).
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
}

/// The end of `Bearer <token>` starting at `start` (the `B`), if it holds a credential.
fn bearer_end(data: &[u8], start: usize) -> Option<usize> {
    let mut i = start + b"bearer".len();
    let spaces = data
        .get(i..)?
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t'))
        .count();
    if spaces == 0 {
        return None;
    }
    i += spaces;
    let rest = data.get(i..)?;
    if rest.starts_with(REDACTED.as_bytes()) {
        return Some(i + REDACTED.len());
    }
    let token = rest.iter().take_while(|b| is_token_byte(**b)).count();
    (token >= MIN_BEARER_TOKEN).then_some(i + token)
}

fn redact_bearer(data: &[u8]) -> Option<Vec<u8>> {
    // One scan per usual spelling: each needle starts with a rare byte (b, B), which
    // keeps the SIMD prefilter fast on 100+ MB result files.
    let mut starts: Vec<usize> = Vec::new();
    for word in [&b"Bearer"[..], &b"bearer"[..], &b"BEARER"[..]] {
        starts.extend(memchr::memmem::find_iter(data, word));
    }
    starts.sort_unstable();
    let mut out: Option<Vec<u8>> = None;
    let mut at = 0;
    for start in starts {
        if start < at {
            continue;
        }
        let Some(end) = bearer_end(data, start) else {
            continue;
        };
        let o = out.get_or_insert_with(|| Vec::with_capacity(data.len()));
        o.extend_from_slice(data.get(at..start).unwrap_or_default());
        o.extend_from_slice(REDACTED.as_bytes());
        at = end;
    }
    let mut o = out?;
    o.extend_from_slice(data.get(at..).unwrap_or_default());
    Some(o)
}

/// A `multipart/form-data` body made of text fields and one file part, sent
/// as a chained reader (`head` + file + `tail`) so a large file is streamed
/// from disk rather than loaded in memory.
#[derive(Debug, Clone)]
pub struct Multipart {
    boundary: String,
    head: Vec<u8>,
    tail: Vec<u8>,
}

impl Multipart {
    /// Builds the parts around a file: `fields` first, then the file under
    /// `file_field` with `filename` and `file_type`. The filename is reduced
    /// to `[A-Za-z0-9._-]` so it can never break the header it sits in.
    pub fn new(fields: &[(&str, &str)], file_field: &str, filename: &str, file_type: &str) -> Self {
        let boundary = format!("ai-batch-{:032x}", rand::random::<u128>());
        let mut head = String::new();
        for (name, value) in fields {
            head.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"\r\n\r\n{value}\r\n",
                safe_token(name)
            ));
        }
        head.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{}\"; filename=\"{}\"\r\nContent-Type: {}\r\n\r\n",
            safe_token(file_field),
            safe_filename(filename),
            safe_token(file_type),
        ));
        let tail = format!("\r\n--{boundary}--\r\n");
        Multipart {
            boundary,
            head: head.into_bytes(),
            tail: tail.into_bytes(),
        }
    }

    /// The `Content-Type` header value, with the boundary.
    pub fn content_type(&self) -> String {
        format!("multipart/form-data; boundary={}", self.boundary)
    }

    /// The exact body length for a file of `file_len` bytes.
    pub fn body_len(&self, file_len: u64) -> u64 {
        self.head.len() as u64 + file_len + self.tail.len() as u64
    }

    /// The body as one reader: head, exactly `file_len` bytes of `file`, tail. It owns
    /// copies of the (small) head and tail, so it can be handed to the HTTP client.
    pub fn reader<R: Read + Send + 'static>(
        &self,
        file: R,
        file_len: u64,
    ) -> impl Read + Send + 'static {
        io::Cursor::new(self.head.clone())
            .chain(file.take(file_len))
            .chain(io::Cursor::new(self.tail.clone()))
    }
}

fn safe_token(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
        .collect()
}

fn safe_filename(s: &str) -> String {
    let name: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if name.is_empty() {
        "batch.jsonl".to_string()
    } else {
        name
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;
    use std::time::UNIX_EPOCH;

    #[test]
    fn base_url_https_and_loopback_http() {
        let ok = validate_base_url("https://api.openai.com/v1/").unwrap();
        assert_eq!(ok.url, "https://api.openai.com/v1");
        assert!(!ok.loopback);
        assert_eq!(
            validate_base_url("HTTPS://api.openai.com/v1").unwrap().url,
            "https://api.openai.com/v1"
        );
        for url in [
            "http://127.0.0.1:8080/v1",
            "http://127.1.2.3/v1",
            "http://localhost:1234",
            "http://LOCALHOST/v1",
            "http://[::1]:9000/v1",
            "https://localhost/v1",
        ] {
            let b = validate_base_url(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert!(b.loopback, "{url}");
        }
        assert_eq!(
            validate_base_url("http://127.0.0.1:5/v1//").unwrap().url,
            "http://127.0.0.1:5/v1"
        );
    }

    #[test]
    fn base_url_refusals() {
        for url in [
            "",
            "api.openai.com/v1",
            "http://api.openai.com/v1",
            "http://example.com",
            "http://127.0.0.1.evil.com/v1",
            "http://localhost.evil.com/v1",
            "http://10.0.0.1/v1",
            "http://[::2]/v1",
            "ftp://127.0.0.1/v1",
            "https://user:pw@api.openai.com/v1",
            "https://api.openai.com/v1?key=x",
            "https://api.openai.com/v1#x",
            "https://api.openai.com:port/v1",
            "http://127.0.0.1:99999/v1",
            "http://127.0.0.1:65536/v1",
            "http://127.0.0.1:0/v1",
            "http://127.0.0.1:/v1",
            "http://[::1]:99999/v1",
            "https://api.openai.com:4x3/v1",
            "https:///v1",
            "https://api.openai.com/v 1",
        ] {
            assert!(validate_base_url(url).is_err(), "{url} should be refused");
        }
        let e = validate_base_url("http://example.com").unwrap_err();
        assert!(e.contains("https"), "{e}");
        let e = validate_base_url("http://127.0.0.1:99999/v1").unwrap_err();
        assert!(e.contains("1 to 65535"), "{e}");
        assert!(validate_base_url("http://127.0.0.1:65535/v1").is_ok());
        assert!(validate_base_url("http://127.0.0.1:00080/v1").is_ok());
    }

    #[test]
    fn http_date_imf_fixdate() {
        let t = parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        let t = parse_http_date("Thu, 01 Jan 1970 00:00:00 GMT").unwrap();
        assert_eq!(t, UNIX_EPOCH);
        let t = parse_http_date("Tue, 29 Feb 2000 23:59:59 GMT").unwrap();
        assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 951_868_799);
        // The obsolete RFC 850 and asctime forms, which RFC 9110 asks recipients to
        // accept, are read by httpdate (the hand-written parser refused them).
        for obsolete in ["Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994"] {
            let t = parse_http_date(obsolete).unwrap_or_else(|| panic!("{obsolete}"));
            assert_eq!(t.duration_since(UNIX_EPOCH).unwrap().as_secs(), 784_111_777);
        }
        for bad in [
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 31 Nov 1994 08:49:37 GMT",
            "Sun, 29 Feb 1900 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "",
        ] {
            assert!(parse_http_date(bad).is_none(), "{bad}");
        }
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_forms() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        let ra = |pairs: &[(&'static str, &str)]| parse_retry_after(&headers(pairs), now);
        assert_eq!(
            ra(&[("retry-after-ms", "250")]),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            ra(&[("retry-after-ms", "1.5"), ("retry-after", "9")]),
            Some(Duration::from_micros(1500))
        );
        assert_eq!(ra(&[("retry-after", "3")]), Some(Duration::from_secs(3)));
        assert_eq!(
            ra(&[("retry-after", "0.5")]),
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            ra(&[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")]),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            ra(&[("retry-after", "Sun, 06 Nov 1994 08:49:00 GMT")]),
            None
        );
        assert_eq!(ra(&[("retry-after", "0")]), None);
        assert_eq!(ra(&[("retry-after", "-3")]), None);
        assert_eq!(ra(&[("retry-after", "soon")]), None);
        assert_eq!(
            ra(&[("retry-after-ms", "x"), ("retry-after", "2")]),
            Some(Duration::from_secs(2))
        );
        assert_eq!(ra(&[]), None);
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        let i = Duration::from_millis(500);
        let m = Duration::from_secs(8);
        assert_eq!(backoff_delay(0, i, m, 0.0), Duration::from_millis(500));
        assert_eq!(backoff_delay(1, i, m, 0.0), Duration::from_secs(1));
        assert_eq!(backoff_delay(3, i, m, 0.0), Duration::from_secs(4));
        assert_eq!(backoff_delay(10, i, m, 0.0), Duration::from_secs(8));
        assert_eq!(backoff_delay(u32::MAX, i, m, 0.0), Duration::from_secs(8));
        let j = backoff_delay(10, i, m, 0.999_999);
        assert!(
            j >= Duration::from_secs(6) && j < Duration::from_secs(8),
            "{j:?}"
        );
        assert_eq!(backoff_delay(0, i, m, f64::NAN), Duration::from_millis(500));
    }

    #[test]
    fn clean_text_caps_and_flattens() {
        assert_eq!(clean_text("a\r\n\tb   c", 100), "a b c");
        assert_eq!(clean_text("abcdef", 3), "abc…");
        assert_eq!(clean_text("", 3), "");
        assert_eq!(clean_text("ééééé", 2), "éé…");
    }

    #[test]
    fn secrets_are_redacted_everywhere_in_provider_bytes() {
        let key = "sk-proj-Abc123_def-456";
        let r = |s: &str| redact_secrets_text(s, key);
        assert_eq!(r("no secret here"), "no secret here");
        assert!(redact_secrets(b"no secret here", key).is_none());
        assert_eq!(r(&format!("k={key};k={key}")), "k=[redacted];k=[redacted]");
        assert_eq!(
            r(&format!("header Authorization: Bearer {key})")),
            "header Authorization: [redacted])"
        );
        assert_eq!(r(&format!("bearer  {key}")), "[redacted]");
        assert_eq!(r(&format!("BEARER\t{key}")), "[redacted]");
        // Another credential after Bearer goes too; prose after Bearer stays.
        assert_eq!(
            r("Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30.abc"),
            "Authorization: [redacted]"
        );
        assert_eq!(
            r("use Bearer auth (Authorization: Bearer YOUR_KEY)"),
            "use Bearer auth (Authorization: Bearer YOUR_KEY)"
        );
        assert_eq!(r("Bearer"), "Bearer");
        // Inside JSON the document stays parseable, with the key gone.
        let doc = serde_json::json!({"errors": {"data": [{"message": format!("Authorization: Bearer {key}")}]}})
            .to_string();
        let clean = redact_secrets(doc.as_bytes(), key).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&clean).unwrap();
        assert_eq!(
            v["errors"]["data"][0]["message"],
            "Authorization: [redacted]"
        );
        // A key with characters JSON escapes is found in its escaped form too.
        let odd = "sk-\"quoted\"-key";
        let doc = serde_json::json!({ "m": format!("key {odd}") }).to_string();
        let clean = String::from_utf8(redact_secrets(doc.as_bytes(), odd).unwrap()).unwrap();
        assert_eq!(clean, r#"{"m":"key [redacted]"}"#);
        // Short keys are not searched for; text around keys keeps its UTF-8.
        assert_eq!(redact_secrets_text("abc abc", "abc"), "abc abc");
        assert_eq!(r(&format!("é{key}ü")), "é[redacted]ü");
    }

    #[test]
    fn multipart_layout() {
        let mp = Multipart::new(
            &[("purpose", "batch")],
            "file",
            "my \"in\"\r\nput.jsonl",
            "application/jsonl",
        );
        let file = b"{\"a\":1}\n";
        let mut body = Vec::new();
        mp.reader(&file[..], file.len() as u64)
            .read_to_end(&mut body)
            .unwrap();
        assert_eq!(body.len() as u64, mp.body_len(file.len() as u64));
        let text = String::from_utf8(body).unwrap();
        let boundary = mp
            .content_type()
            .split_once("boundary=")
            .unwrap()
            .1
            .to_string();
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(text.contains("name=\"purpose\"\r\n\r\nbatch\r\n"));
        assert!(text.contains("filename=\"my__in___put.jsonl\""));
        assert!(text.ends_with(&format!("{{\"a\":1}}\n\r\n--{boundary}--\r\n")));
    }
}
