//! One Anthropic batch request line, and the staged file's shape.
//!
//! A line is `{"custom_id":..,"params":{"model":..,"max_tokens":..,"system":..,
//! "messages":[{"role":"user","content":..}],"output_config":{"format":{"type":
//! "json_schema","schema":..}},"temperature"?:..}}`: the processor's system prompt and
//! user message, and a forced structured answer by Anthropic's **structured outputs**
//! (`output_config.format`), not a forced tool. Why: structured outputs constrain the
//! decoding to the schema, so the answer is the schema's JSON as one text block, read
//! and validated exactly like OpenAI's message content; a forced tool
//! (`tool_choice: {"type": "tool"}`) cannot be combined with extended thinking and,
//! without `strict`, only asks the model to follow `input_schema`. The price: older
//! models (Claude 3.x) do not take `output_config.format`, so they are refused at bind
//! (see [`supports_structured_outputs`]).
//!
//! The staged "file" is these lines as JSONL: there is no upload at Anthropic, the
//! create call streams them as its body's `requests` array ([`array_body`]).

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::processor::Processor;
use crate::requests::{is_valid_custom_id, RequestError, RequestOptions};

/// `max_tokens` when the job gives no `max_output_tokens`: Anthropic requires it. Four
/// times the processor's typical answer, at least this floor, so a normal answer is
/// never cut (only the tokens produced are billed).
pub const MIN_DEFAULT_MAX_TOKENS: u32 = 4096;
/// Anthropic's temperature range is 0..=1 (OpenAI's is 0..=2).
pub const MAX_TEMPERATURE: f64 = 1.0;
/// The `effort` values Anthropic's `output_config` takes; OpenAI's `reasoning_effort`
/// maps onto them by name. `none` means "no reasoning", Claude's default without
/// thinking, so it sends nothing; `minimal` has no equivalent and is refused.
pub const EFFORTS: [&str; 5] = ["low", "medium", "high", "xhigh", "max"];

/// What [`AnthropicOptions::from_request`] refuses: a setting with no Anthropic equivalent.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AnthropicRequestError {
    /// Temperature above Anthropic's 1.0.
    #[error("temperature {0} is outside Anthropic's range 0 to 1 (use a value from 0 to 1 for Claude models)")]
    Temperature(f64),
    /// A reasoning effort Anthropic has no equivalent for.
    #[error("reasoning_effort '{0}' has no Anthropic equivalent (use one of: none, low, medium, high, xhigh, max)")]
    Effort(String),
    /// A model that cannot take a forced structured answer.
    #[error("model '{0}' does not support structured outputs, which ai_batch needs for a schema-valid answer (use a Claude 4.5 model or newer, e.g. 'claude-haiku-4-5')")]
    NoStructuredOutputs(String),
    /// A custom_id Anthropic would refuse.
    #[error("invalid custom_id '{}' (expected 1 to 64 characters among A-Z, a-z, 0-9, _ and -)", crate::text::echo(.0))]
    CustomId(String),
    /// serde_json failed (should not happen when writing to memory).
    #[error("could not serialize a request line: {0}")]
    Serialize(String),
}

impl From<AnthropicRequestError> for RequestError {
    fn from(e: AnthropicRequestError) -> Self {
        RequestError::Provider(e.to_string())
    }
}

/// The per-job settings of Anthropic request lines.
#[derive(Debug, Clone, PartialEq)]
pub struct AnthropicOptions {
    /// The model, without an `anthropic:` prefix.
    pub model: String,
    /// Always sent.
    pub max_tokens: u32,
    /// Sent when set (0..=1).
    pub temperature: Option<f64>,
    /// `output_config.effort`, when set.
    pub effort: Option<&'static str>,
}

/// Whether `model` takes `output_config.format` (the Claude 4.5 generation and later;
/// Claude 3.x and the first Claude 4 models do not).
pub fn supports_structured_outputs(model: &str) -> bool {
    let m = model.strip_prefix("anthropic:").unwrap_or(model);
    if !m.starts_with("claude-") || m.starts_with("claude-3") {
        return false;
    }
    // The first Claude 4 models: `claude-opus-4`, `claude-sonnet-4`, alone or dated.
    let Some(rest) = m
        .strip_prefix("claude-opus-4")
        .or_else(|| m.strip_prefix("claude-sonnet-4"))
    else {
        return true;
    };
    let dated = rest.len() == 9
        && rest.starts_with('-')
        && rest.bytes().skip(1).all(|b| b.is_ascii_digit());
    !(rest.is_empty() || dated)
}

impl AnthropicOptions {
    /// The Anthropic settings for the job's [`RequestOptions`] (already checked by
    /// [`RequestOptions::validate`]), refusing what has no equivalent.
    pub fn from_request(
        opts: &RequestOptions,
        processor: &Processor,
    ) -> Result<AnthropicOptions, AnthropicRequestError> {
        let (model, effort) = check_options(opts)?;
        Ok(AnthropicOptions {
            model: model.to_string(),
            max_tokens: opts
                .max_output_tokens
                .unwrap_or_else(|| default_max_tokens(processor)),
            temperature: opts.temperature,
            effort,
        })
    }
}

/// Checks a job's options for Anthropic (bind time, and each [`AnthropicOptions`]):
/// the model (without its `anthropic:` prefix) must take structured outputs, the
/// temperature be within 0..=1, the reasoning effort have an equivalent. Returns the
/// model and the `output_config.effort` to send.
pub fn check_options(
    opts: &RequestOptions,
) -> Result<(&str, Option<&'static str>), AnthropicRequestError> {
    let model = opts.model.strip_prefix("anthropic:").unwrap_or(&opts.model);
    if !supports_structured_outputs(model) {
        return Err(AnthropicRequestError::NoStructuredOutputs(
            model.to_string(),
        ));
    }
    if let Some(t) = opts.temperature {
        if !(0.0..=MAX_TEMPERATURE).contains(&t) {
            return Err(AnthropicRequestError::Temperature(t));
        }
    }
    let effort = match opts.reasoning_effort.as_deref() {
        None | Some("none") => None,
        Some(e) => Some(
            *EFFORTS
                .iter()
                .find(|x| **x == e)
                .ok_or_else(|| AnthropicRequestError::Effort(e.to_string()))?,
        ),
    };
    Ok((model, effort))
}

/// `max_tokens` for a job that gives none (see [`MIN_DEFAULT_MAX_TOKENS`]).
pub fn default_max_tokens(processor: &Processor) -> u32 {
    processor
        .default_output_tokens()
        .saturating_mul(4)
        .max(MIN_DEFAULT_MAX_TOKENS)
}

#[derive(Serialize)]
struct Line<'a> {
    custom_id: &'a str,
    params: Params<'a>,
}

#[derive(Serialize)]
struct Params<'a> {
    model: &'a str,
    max_tokens: u32,
    system: &'a str,
    messages: [Msg<'a>; 1],
    output_config: OutputConfig<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    temperature: Option<f64>,
}

#[derive(Serialize)]
struct Msg<'a> {
    role: &'static str,
    content: &'a str,
}

#[derive(Serialize)]
struct OutputConfig<'a> {
    format: Format<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    effort: Option<&'static str>,
}

#[derive(Serialize)]
struct Format<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    schema: &'a Value,
}

/// Appends one request line (with its `\n`) for a user message rendered by
/// [`Processor::user_message`]; returns the bytes appended. On error nothing is appended.
pub fn write_request_line(
    out: &mut Vec<u8>,
    custom_id: &str,
    processor: &Processor,
    user_text: &str,
    opts: &AnthropicOptions,
) -> Result<usize, AnthropicRequestError> {
    if !is_valid_custom_id(custom_id) {
        return Err(AnthropicRequestError::CustomId(custom_id.to_string()));
    }
    let schema = processor
        .schema()
        .map_err(|e| AnthropicRequestError::Serialize(e.to_string()))?;
    let line = Line {
        custom_id,
        params: Params {
            model: &opts.model,
            max_tokens: opts.max_tokens,
            system: processor.system_prompt(),
            messages: [Msg {
                role: "user",
                content: user_text,
            }],
            output_config: OutputConfig {
                format: Format {
                    kind: "json_schema",
                    schema,
                },
                effort: opts.effort,
            },
            temperature: opts.temperature,
        },
    };
    let start = out.len();
    if let Err(e) = serde_json::to_writer(&mut *out, &line) {
        out.truncate(start);
        return Err(AnthropicRequestError::Serialize(e.to_string()));
    }
    out.push(b'\n');
    Ok(out.len() - start)
}

// ---------------------------------------------------------------------------------
// The create body, streamed from the staged JSONL.

const BODY_PREFIX: &[u8] = b"{\"requests\":[";
const BODY_SUFFIX: &[u8] = b"]}";

/// A staged request file, checked: JSONL with one request per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StagedShape {
    /// Request lines.
    pub lines: u64,
    /// Bytes of the file.
    pub file_bytes: u64,
    /// Bytes of the create body made from it.
    pub body_bytes: u64,
}

/// Checks that `data` can become a `requests` array by turning each `\n` into `,`:
/// non-empty, every line non-empty and ended by `\n`.
pub fn check_jsonl(data: &[u8]) -> Result<StagedShape, String> {
    let mut check = JsonlCheck::default();
    check.feed(data)?;
    check.finish()
}

/// [`check_jsonl`] of a file, read in pieces (a batch file may hold 256 MB).
pub fn check_jsonl_file(path: &Path) -> io::Result<Result<StagedShape, String>> {
    let mut f = File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut check = JsonlCheck::default();
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            return Ok(check.finish());
        }
        if let Err(e) = check.feed(buf.get(..n).unwrap_or(&[])) {
            return Ok(Err(e));
        }
    }
}

#[derive(Default)]
struct JsonlCheck {
    lines: u64,
    bytes: u64,
    last: Option<u8>,
}

impl JsonlCheck {
    fn feed(&mut self, chunk: &[u8]) -> Result<(), String> {
        let Some(&first) = chunk.first() else {
            return Ok(());
        };
        // An empty line: `\n` first in the file or right after another `\n`.
        if first == b'\n' && self.last.is_none_or(|b| b == b'\n')
            || memchr::memmem::find(chunk, b"\n\n").is_some()
        {
            return Err("the request file has an empty line".into());
        }
        self.lines += memchr::memchr_iter(b'\n', chunk).count() as u64;
        self.bytes += chunk.len() as u64;
        self.last = chunk.last().copied();
        Ok(())
    }

    fn finish(self) -> Result<StagedShape, String> {
        match self.last {
            None => Err("the request file is empty".into()),
            Some(b) if b != b'\n' => Err("the request file does not end with a newline".into()),
            Some(_) => Ok(StagedShape {
                lines: self.lines,
                file_bytes: self.bytes,
                body_bytes: body_len(self.bytes),
            }),
        }
    }
}

fn body_len(file_bytes: u64) -> u64 {
    BODY_PREFIX.len() as u64 + file_bytes.saturating_sub(1) + BODY_SUFFIX.len() as u64
}

/// Turns every `\n` into `,` on the way through.
struct NewlinesToCommas<R>(R);

impl<R: Read> Read for NewlinesToCommas<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.0.read(buf)?;
        for b in buf.iter_mut().take(n) {
            if *b == b'\n' {
                *b = b',';
            }
        }
        Ok(n)
    }
}

/// The create body `{"requests":[line,line,...]}` streamed from the staged JSONL at
/// `path` (checked by [`check_jsonl`] when staged), and its exact length. Opened afresh
/// for every attempt.
pub fn array_body(path: &Path) -> io::Result<(Box<dyn Read + Send>, u64)> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let reader = io::Cursor::new(BODY_PREFIX)
        .chain(NewlinesToCommas(
            io::BufReader::with_capacity(256 * 1024, f).take(len.saturating_sub(1)),
        ))
        .chain(io::Cursor::new(BODY_SUFFIX));
    Ok((Box::new(reader), body_len(len)))
}

/// The user message of a line written by [`write_request_line`], as raw JSON text:
/// for tests and the estimate. `None` when the line is not one of ours.
pub fn user_content(line: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct L<'a> {
        #[serde(borrow)]
        params: P<'a>,
    }
    #[derive(serde::Deserialize)]
    struct P<'a> {
        #[serde(borrow)]
        messages: Vec<&'a RawValue>,
    }
    let l: L<'_> = serde_json::from_str(line).ok()?;
    let m: Value = serde_json::from_str(l.params.messages.first()?.get()).ok()?;
    m.get("content")?.as_str().map(str::to_string)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::processor::processor_by_name;

    fn pl() -> &'static Processor {
        processor_by_name("product-labeling").unwrap()
    }

    fn opts(model: &str) -> RequestOptions {
        RequestOptions::new(model)
    }

    #[test]
    fn a_line_carries_system_user_schema_and_max_tokens() {
        let o = AnthropicOptions::from_request(&opts("anthropic:claude-haiku-4-5"), pl()).unwrap();
        assert_eq!(o.model, "claude-haiku-4-5");
        assert_eq!(o.max_tokens, default_max_tokens(pl()));
        assert!(o.max_tokens >= MIN_DEFAULT_MAX_TOKENS);
        let mut out = b"x".to_vec();
        let n =
            write_request_line(&mut out, "job1-i7", pl(), "Title: kurl\n\"quoted\"", &o).unwrap();
        assert_eq!(n, out.len() - 1);
        assert_eq!(out.last(), Some(&b'\n'));
        assert_eq!(out.iter().filter(|b| **b == b'\n').count(), 1);
        let v: Value = serde_json::from_slice(&out[1..]).unwrap();
        assert_eq!(v["custom_id"], "job1-i7");
        let p = &v["params"];
        assert_eq!(p["model"], "claude-haiku-4-5");
        assert_eq!(p["max_tokens"], o.max_tokens);
        assert_eq!(p["system"], pl().system_prompt());
        assert_eq!(p["messages"][0]["role"], "user");
        assert_eq!(p["messages"][0]["content"], "Title: kurl\n\"quoted\"");
        assert_eq!(p["output_config"]["format"]["type"], "json_schema");
        assert_eq!(
            &p["output_config"]["format"]["schema"],
            pl().schema().unwrap()
        );
        assert!(p.get("temperature").is_none() && p["output_config"].get("effort").is_none());
        assert_eq!(
            user_content(std::str::from_utf8(&out[1..]).unwrap()).as_deref(),
            Some("Title: kurl\n\"quoted\"")
        );
    }

    #[test]
    fn temperature_max_tokens_and_effort_map_or_are_refused() {
        let mut r = opts("claude-sonnet-4-5");
        r.temperature = Some(0.3);
        r.max_output_tokens = Some(900);
        r.reasoning_effort = Some("high".into());
        let o = AnthropicOptions::from_request(&r, pl()).unwrap();
        assert_eq!(
            (o.temperature, o.max_tokens, o.effort),
            (Some(0.3), 900, Some("high"))
        );
        let mut out = Vec::new();
        write_request_line(&mut out, "j-i1", pl(), "u", &o).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["params"]["temperature"], 0.3);
        assert_eq!(v["params"]["max_tokens"], 900);
        assert_eq!(v["params"]["output_config"]["effort"], "high");
        r.reasoning_effort = Some("none".into());
        assert_eq!(
            AnthropicOptions::from_request(&r, pl()).unwrap().effort,
            None
        );
        r.reasoning_effort = Some("minimal".into());
        let e = AnthropicOptions::from_request(&r, pl()).unwrap_err();
        assert!(
            e.to_string()
                .contains("'minimal' has no Anthropic equivalent"),
            "{e}"
        );
        r.reasoning_effort = None;
        r.temperature = Some(1.5);
        let e = AnthropicOptions::from_request(&r, pl()).unwrap_err();
        assert!(
            e.to_string().contains("outside Anthropic's range 0 to 1"),
            "{e}"
        );
        r.temperature = Some(1.0);
        assert!(AnthropicOptions::from_request(&r, pl()).is_ok());
    }

    #[test]
    fn only_models_with_structured_outputs_are_taken() {
        for ok in [
            "claude-haiku-4-5",
            "claude-sonnet-4-5-20250929",
            "claude-opus-4-1",
            "claude-opus-4-5",
            "anthropic:claude-sonnet-4-6",
            "claude-haiku-5",
        ] {
            assert!(supports_structured_outputs(ok), "{ok}");
        }
        for no in [
            "claude-3-5-haiku-latest",
            "claude-3-opus-20240229",
            "claude-sonnet-4-20250514",
            "claude-opus-4-20250514",
            "claude-sonnet-4",
            "gpt-4o-mini",
        ] {
            assert!(!supports_structured_outputs(no), "{no}");
        }
        let e = AnthropicOptions::from_request(&opts("claude-3-5-haiku-latest"), pl()).unwrap_err();
        assert!(
            e.to_string()
                .contains("does not support structured outputs"),
            "{e}"
        );
    }

    #[test]
    fn a_bad_custom_id_appends_nothing() {
        let o = AnthropicOptions::from_request(&opts("claude-haiku-4-5"), pl()).unwrap();
        let mut out = b"keep".to_vec();
        for bad in ["", "has space", "a.b", &"x".repeat(65)] {
            assert!(matches!(
                write_request_line(&mut out, bad, pl(), "u", &o),
                Err(AnthropicRequestError::CustomId(_))
            ));
        }
        assert_eq!(out, b"keep");
        // The longest job id ai_batch makes still fits Anthropic's custom_id rule.
        let job = "j".repeat(crate::requests::MAX_JOB_ID_LEN);
        let cid = crate::requests::custom_id(&job, i64::MAX);
        assert!(write_request_line(&mut out, &cid, pl(), "u", &o).is_ok());
    }

    #[test]
    fn the_staged_jsonl_streams_as_a_requests_array() {
        let o = AnthropicOptions::from_request(&opts("claude-haiku-4-5"), pl()).unwrap();
        let mut data = Vec::new();
        for i in 0..3 {
            write_request_line(&mut data, &format!("j-i{i}"), pl(), "line\nbreak", &o).unwrap();
        }
        let shape = check_jsonl(&data).unwrap();
        assert_eq!((shape.lines, shape.file_bytes), (3, data.len() as u64));
        let path = std::env::temp_dir().join(format!(
            "ai_batch_anthropic_body_{}.jsonl",
            std::process::id()
        ));
        std::fs::write(&path, &data).unwrap();
        assert_eq!(check_jsonl_file(&path).unwrap(), Ok(shape));
        let (mut r, len) = array_body(&path).unwrap();
        let mut body = Vec::new();
        r.read_to_end(&mut body).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(len, body.len() as u64);
        assert_eq!(len, shape.body_bytes);
        let v: Value = serde_json::from_slice(&body).unwrap();
        let reqs = v["requests"].as_array().unwrap();
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[2]["custom_id"], "j-i2");
        assert_eq!(reqs[0]["params"]["messages"][0]["content"], "line\nbreak");
        for bad in [&b""[..], b"{}", b"{}\n\n{}\n", b"\n{}\n"] {
            assert!(check_jsonl(bad).is_err(), "{bad:?}");
        }
    }
}
