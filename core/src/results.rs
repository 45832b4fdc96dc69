//! Reading a batch's output and error files: one outcome per `custom_id`.
//!
//! Lines are matched by `custom_id`, never by position. A line either carries a
//! chat completion (`response.status_code == 200`), whose answer must be valid JSON
//! for the processor's schema, or a failure (`response.status_code != 200` with an
//! error body, or `error` set, as in `batch_expired` / `batch_cancelled` lines).
//! Nothing half-parsed comes out of here: an answer is either fully valid or the
//! item fails with the reason.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use crate::processor::Processor;

/// The final state of one item according to the provider's files.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A valid answer.
    Completed {
        /// The validated structured result, as compact JSON text.
        result: String,
    },
    /// No usable answer.
    Failed {
        /// `failed`, `expired` or `cancelled`.
        status: &'static str,
        /// A short machine-readable reason (`invalid_answer`, `refusal`, `truncated`,
        /// `batch_expired`, the provider's error code, an HTTP status, ...).
        code: String,
        /// What happened, for the user.
        message: String,
    },
}

/// One line's outcome.
#[derive(Debug, Clone, PartialEq)]
pub struct LineOutcome {
    /// The request's custom id.
    pub custom_id: String,
    /// What happened.
    pub outcome: Outcome,
    /// Prompt tokens the provider reported (billed even when the answer is unusable).
    pub input_tokens: Option<i64>,
    /// Completion tokens the provider reported.
    pub output_tokens: Option<i64>,
    /// The line carries the model's answer (a 200 response, billed), usable or not:
    /// what the provider's `request_counts.completed` counts.
    pub answered: bool,
}

/// A line that is not a result line (not JSON, no custom id, cut off).
#[derive(Debug, Clone, PartialEq)]
pub struct UnreadableLine {
    /// Index of the file in the list given to [`parse_files`].
    pub file: usize,
    /// 1-based line number in that file.
    pub line: usize,
    /// The start of the line, flattened and cut (see [`EXCERPT_CHARS`]).
    pub excerpt: String,
}

/// Unreadable lines reported by number and excerpt; the others are only counted.
pub const MAX_UNREADABLE_REPORTED: usize = 5;
/// Characters of an unreadable line quoted in its report.
pub const EXCERPT_CHARS: usize = 60;

/// What a whole file (or files) said.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedResults {
    /// One outcome per distinct custom id (the first line for a custom id wins).
    pub outcomes: Vec<LineOutcome>,
    /// Lines whose custom id had already been seen.
    pub duplicate_lines: usize,
    /// Lines that are not JSON or have no custom id.
    pub unreadable_lines: usize,
    /// The first [`MAX_UNREADABLE_REPORTED`] of them, in file and line order.
    pub unreadable: Vec<UnreadableLine>,
}

#[derive(Deserialize)]
struct Line {
    #[serde(default)]
    custom_id: Option<String>,
    #[serde(default)]
    response: Option<Response>,
    #[serde(default)]
    error: Option<LineError>,
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    status_code: Option<i64>,
    #[serde(default)]
    body: Option<Value>,
}

#[derive(Deserialize)]
struct LineError {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

const MAX_MESSAGE: usize = 500;

pub(crate) fn cap(s: &str) -> String {
    if s.len() <= MAX_MESSAGE {
        return s.to_string();
    }
    let mut end = MAX_MESSAGE;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

fn status_for_code(code: &str) -> &'static str {
    match code {
        "batch_expired" => "expired",
        "batch_cancelled" => "cancelled",
        _ => "failed",
    }
}

fn usage(body: Option<&Value>) -> (Option<i64>, Option<i64>) {
    let u = body.and_then(|b| b.get("usage"));
    (
        u.and_then(|u| u.get("prompt_tokens"))
            .and_then(Value::as_i64),
        u.and_then(|u| u.get("completion_tokens"))
            .and_then(Value::as_i64),
    )
}

/// Reads a successful chat completion body into an outcome.
fn completion_outcome(body: &Value, processor: &Processor) -> Outcome {
    let choice = body
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first());
    let Some(choice) = choice else {
        return failed("empty_answer", "the response has no choices".to_string());
    };
    let message = choice.get("message");
    answer_outcome(
        message
            .and_then(|m| m.get("refusal"))
            .and_then(Value::as_str),
        choice.get("finish_reason").and_then(Value::as_str),
        message
            .and_then(|m| m.get("content"))
            .and_then(Value::as_str),
        processor,
    )
}

/// The outcome of the first choice of a successful completion.
pub(crate) fn answer_outcome(
    refusal: Option<&str>,
    finish: Option<&str>,
    content: Option<&str>,
    processor: &Processor,
) -> Outcome {
    if let Some(refusal) = refusal {
        return failed("refusal", format!("the model refused: {}", cap(refusal)));
    }
    if finish == Some("length") {
        return failed(
            "truncated",
            "the answer was cut off at the output token limit (finish_reason: length); raise max_output_tokens"
                .to_string(),
        );
    }
    if finish == Some("content_filter") {
        return failed(
            "content_filter",
            "the answer was withheld by the provider's content filter".to_string(),
        );
    }
    let Some(content) = content else {
        return failed("empty_answer", "the answer has no content".to_string());
    };
    match processor.validate_result(content) {
        Ok(result) => Outcome::Completed {
            result: result.to_string(),
        },
        Err(e) => failed("invalid_answer", cap(&e.to_string())),
    }
}

/// The common line, typed: a 200 response with choices and no line error. Parsing
/// into these structs skips every field we do not read, where a `Value` would build
/// a map of the whole completion (about half of the collect's parsing time). Any
/// other shape is left to the general path.
#[derive(Deserialize)]
struct FastLine {
    custom_id: String,
    response: FastResponse,
    #[serde(default)]
    error: Option<serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct FastResponse {
    status_code: i64,
    body: FastBody,
}

#[derive(Deserialize)]
struct FastBody {
    choices: Vec<FastChoice>,
    #[serde(default)]
    usage: Option<FastUsage>,
}

#[derive(Deserialize)]
struct FastChoice {
    #[serde(default)]
    finish_reason: Option<String>,
    message: FastMessage,
}

#[derive(Deserialize)]
struct FastMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
}

#[derive(Deserialize)]
struct FastUsage {
    #[serde(default)]
    prompt_tokens: Option<i64>,
    #[serde(default)]
    completion_tokens: Option<i64>,
}

fn parse_common_line(line: &str, processor: &Processor) -> Option<LineOutcome> {
    let parsed: FastLine = serde_json::from_str(line).ok()?;
    if parsed.error.is_some() || parsed.response.status_code != 200 {
        return None;
    }
    let body = parsed.response.body;
    let choice = body.choices.first()?;
    let outcome = answer_outcome(
        choice.message.refusal.as_deref(),
        choice.finish_reason.as_deref(),
        choice.message.content.as_deref(),
        processor,
    );
    Some(LineOutcome {
        custom_id: parsed.custom_id,
        outcome,
        input_tokens: body.usage.as_ref().and_then(|u| u.prompt_tokens),
        output_tokens: body.usage.as_ref().and_then(|u| u.completion_tokens),
        answered: true,
    })
}

pub(crate) fn failed(code: &str, message: String) -> Outcome {
    Outcome::Failed {
        status: status_for_code(code),
        code: code.to_string(),
        message,
    }
}

/// Parses one line of an output or error file.
pub fn parse_line(line: &str, processor: &Processor) -> Option<LineOutcome> {
    parse_common_line(line, processor).or_else(|| parse_any_line(line, processor))
}

/// [`parse_line`] for any shape of line (through a `Value`).
fn parse_any_line(line: &str, processor: &Processor) -> Option<LineOutcome> {
    let parsed: Line = serde_json::from_str(line).ok()?;
    let custom_id = parsed.custom_id?;
    let body = parsed.response.as_ref().and_then(|r| r.body.as_ref());
    let (input_tokens, output_tokens) = usage(body);
    let status_code = parsed.response.as_ref().and_then(|r| r.status_code);
    let answered = parsed.error.is_none() && status_code == Some(200);
    let outcome = if let Some(err) = parsed.error {
        let code = err.code.unwrap_or_else(|| "error".to_string());
        let message = cap(&err.message.unwrap_or_else(|| code.clone()));
        failed(&code, message)
    } else if status_code == Some(200) {
        match body {
            Some(b) => completion_outcome(b, processor),
            None => failed("empty_answer", "the response has no body".to_string()),
        }
    } else {
        // An HTTP-level failure: the error sits in the response body.
        let e = body.and_then(|b| b.get("error"));
        let code = e
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .or_else(|| status_code.map(|s| format!("http_{s}")))
            .unwrap_or_else(|| "error".to_string());
        let message = e
            .and_then(|e| e.get("message"))
            .and_then(Value::as_str)
            .map(cap)
            .unwrap_or_else(|| format!("the request failed with status {status_code:?}"));
        failed(&code, message)
    };
    Some(LineOutcome {
        custom_id,
        outcome,
        input_tokens,
        output_tokens,
        answered,
    })
}

/// Parses output and error files together; the first line seen for a custom id wins.
/// Lines are parsed and validated on every core; the result is in file order.
pub fn parse_files(files: &[&[u8]], processor: &Processor) -> ParsedResults {
    parse_files_with(files, processor, parse_line)
}

/// [`parse_files`] with another provider's line parser (Anthropic's:
/// `anthropic::parse_result_line`).
pub fn parse_files_with(
    files: &[&[u8]],
    processor: &Processor,
    parse_line: fn(&str, &Processor) -> Option<LineOutcome>,
) -> ParsedResults {
    // (file, 1-based line number, bytes) of every line that is not blank.
    let lines: Vec<(usize, usize, &[u8])> = files
        .iter()
        .enumerate()
        .flat_map(|(f, data)| {
            data.split(|b| *b == b'\n')
                .enumerate()
                .map(move |(n, raw)| (f, n + 1, raw))
        })
        .filter(|(_, _, raw)| raw.iter().any(|b| !b.is_ascii_whitespace()))
        .collect();
    let parsed = crate::cost::par_map(
        &lines,
        |(_, _, raw)| raw.len(),
        |(_, _, raw)| {
            std::str::from_utf8(raw)
                .ok()
                .and_then(|line| parse_line(line, processor))
        },
    );
    let mut seen: HashMap<String, ()> = HashMap::with_capacity(parsed.len());
    let mut out = ParsedResults::default();
    for (p, (file, line, raw)) in parsed.into_iter().zip(&lines) {
        match p {
            None => {
                out.unreadable_lines += 1;
                if out.unreadable.len() < MAX_UNREADABLE_REPORTED {
                    let head = raw.get(..EXCERPT_CHARS * 4).unwrap_or(raw);
                    out.unreadable.push(UnreadableLine {
                        file: *file,
                        line: *line,
                        excerpt: crate::http::clean_text(
                            &String::from_utf8_lossy(head),
                            EXCERPT_CHARS,
                        ),
                    });
                }
            }
            Some(o) => {
                if seen.insert(o.custom_id.clone(), ()).is_some() {
                    out.duplicate_lines += 1;
                } else {
                    out.outcomes.push(o);
                }
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::processor::processor_by_name;
    use serde_json::json;

    fn pl() -> &'static Processor {
        processor_by_name("product-labeling").unwrap()
    }

    fn answer() -> String {
        json!({
            "summary": "s", "root_cause_analysis": "r", "current_labels_assessment": "c",
            "recommended_labels": [{"label": "product::kots", "reasoning": "admin console"}],
            "confidence": 0.8
        })
        .to_string()
    }

    fn ok_line(cid: &str, content: &str, finish: &str) -> String {
        json!({"id": "batch_req_1", "custom_id": cid, "error": null, "response": {"status_code": 200,
            "request_id": "r", "body": {"choices": [{"index": 0, "finish_reason": finish,
            "message": {"role": "assistant", "content": content, "refusal": null}}],
            "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120}}}})
        .to_string()
    }

    #[test]
    fn typed_path_agrees_with_the_general_one() {
        let lines = [
            ok_line("a", &answer(), "stop"),
            ok_line("b", "not json", "stop"),
            ok_line("c", &answer()[..30], "length"),
            ok_line("d", &answer(), "content_filter"),
            json!({"custom_id": "e", "error": null, "response": {"status_code": 200, "body": {"choices": [
                {"finish_reason": "stop", "message": {"role": "assistant", "content": null, "refusal": "no"}}]}}})
            .to_string(),
            json!({"custom_id": "f", "error": null, "response": {"status_code": 200, "body": {"choices": [
                {"finish_reason": "stop", "message": {"role": "assistant", "content": null}}],
                "usage": {"prompt_tokens": 7}}}})
            .to_string(),
            json!({"custom_id": "g", "response": {"status_code": 200, "body": {"choices": [
                {"message": {"content": answer()}}], "usage": null, "extra": [1, {"x": 2}]}}})
            .to_string(),
        ];
        let mut typed = 0;
        for line in &lines {
            let general = parse_any_line(line, pl());
            assert!(general.is_some(), "{line}");
            if let Some(fast) = parse_common_line(line, pl()) {
                typed += 1;
                assert_eq!(Some(fast), general, "{line}");
            }
        }
        assert_eq!(typed, lines.len(), "every line here has the common shape");
        // Other shapes are not taken by the typed path, and the general one reads them.
        for line in [
            json!({"custom_id": "h", "response": {"status_code": 500, "body": {"error": {"code": "server_error", "message": "m"}}}, "error": null}).to_string(),
            json!({"custom_id": "i", "response": null, "error": {"code": "batch_expired", "message": "m"}}).to_string(),
            json!({"custom_id": "j", "response": {"status_code": 200, "body": {"choices": []}}, "error": null}).to_string(),
            json!({"custom_id": "k", "response": {"status_code": 200, "body": {"choices": "odd"}}, "error": null}).to_string(),
        ] {
            assert!(parse_common_line(&line, pl()).is_none(), "{line}");
            assert!(parse_line(&line, pl()).is_some(), "{line}");
        }
    }

    #[test]
    fn completed_line_is_validated() {
        let o = parse_line(&ok_line("j-i1", &answer(), "stop"), pl()).unwrap();
        assert_eq!(o.custom_id, "j-i1");
        assert_eq!(o.input_tokens, Some(100));
        assert_eq!(o.output_tokens, Some(20));
        match o.outcome {
            Outcome::Completed { result } => {
                let result: Value = serde_json::from_str(&result).unwrap();
                assert_eq!(result["recommended_labels"][0]["label"], "product::kots")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unusable_answers_fail_with_reason() {
        let cases = [
            (ok_line("a", &answer()[..40], "length"), "truncated"),
            (ok_line("b", "not json", "stop"), "invalid_answer"),
            (
                ok_line("c", r#"{"summary": "only"}"#, "stop"),
                "invalid_answer",
            ),
        ];
        for (line, code) in cases {
            match parse_line(&line, pl()).unwrap().outcome {
                Outcome::Failed {
                    code: c, status, ..
                } => {
                    assert_eq!(c, code);
                    assert_eq!(status, "failed");
                }
                other => panic!("{other:?}"),
            }
        }
        let refusal =
            json!({"custom_id": "d", "response": {"status_code": 200, "body": {"choices": [
            {"finish_reason": "stop", "message": {"content": null, "refusal": "I can't"}}]}}})
            .to_string();
        assert!(matches!(parse_line(&refusal, pl()).unwrap().outcome,
            Outcome::Failed { ref code, .. } if code == "refusal"));
    }

    #[test]
    fn error_lines_map_to_states() {
        let http = json!({"custom_id": "x", "response": {"status_code": 400, "body": {"error":
            {"code": "context_length_exceeded", "message": "too long"}}}, "error": null})
        .to_string();
        let expired = json!({"custom_id": "y", "response": null, "error":
            {"code": "batch_expired", "message": "expired"}})
        .to_string();
        let cancelled = json!({"custom_id": "z", "response": null, "error":
            {"code": "batch_cancelled", "message": "cancelled"}})
        .to_string();
        let got: Vec<(&str, String)> = [http, expired, cancelled]
            .iter()
            .map(|l| match parse_line(l, pl()).unwrap().outcome {
                Outcome::Failed { status, code, .. } => (status, code),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("failed", "context_length_exceeded".to_string()),
                ("expired", "batch_expired".to_string()),
                ("cancelled", "batch_cancelled".to_string())
            ]
        );
    }

    #[test]
    fn duplicates_and_garbage_are_counted_once() {
        let a = ok_line("j-i1", &answer(), "stop");
        let file = format!("{a}\n{a}\nnot json\n{{\"no_custom_id\": 1}}\n\n");
        let r = parse_files(&[file.as_bytes()], pl());
        assert_eq!(r.outcomes.len(), 1);
        assert_eq!(r.duplicate_lines, 1);
        assert_eq!(r.unreadable_lines, 2);
        assert!(r.outcomes[0].answered);
    }

    #[test]
    fn unreadable_lines_are_reported_by_file_line_and_excerpt() {
        let a = ok_line("j-i1", &answer(), "stop");
        let out = format!("{a}\n\n<html>\r\t<body>{}</body>\n", "x".repeat(500));
        let cut = &a[..a.len() / 2];
        let err = format!(
            "{}\n{cut}",
            json!({"custom_id": "j-i2", "response": null, "error": {"code": "batch_expired", "message": "m"}})
        );
        let mut many = String::new();
        for _ in 0..MAX_UNREADABLE_REPORTED + 2 {
            many.push_str("junk\n");
        }
        let r = parse_files(&[out.as_bytes(), err.as_bytes(), many.as_bytes()], pl());
        assert_eq!(r.unreadable_lines, 2 + MAX_UNREADABLE_REPORTED + 2);
        assert_eq!(r.unreadable.len(), MAX_UNREADABLE_REPORTED);
        let at: Vec<(usize, usize)> = r.unreadable.iter().map(|u| (u.file, u.line)).collect();
        assert_eq!(at, vec![(0, 3), (1, 2), (2, 1), (2, 2), (2, 3)]);
        let html = &r.unreadable[0].excerpt;
        assert!(
            html.starts_with("<html> <body>xxx") && html.ends_with('…'),
            "{html}"
        );
        assert_eq!(html.chars().count(), EXCERPT_CHARS + 1);
        assert!(cut.starts_with(r.unreadable[1].excerpt.trim_end_matches('…')));
        // What the provider counts as completed: the answered lines only.
        let answered: Vec<bool> = r.outcomes.iter().map(|o| o.answered).collect();
        assert_eq!(answered, vec![true, false]);
    }
}
