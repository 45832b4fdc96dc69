//! Anthropic's wire types: the Message Batch object and its list as serde reads them,
//! the RFC 3339 timestamps they carry, and the results JSONL lines read into item
//! outcomes. Unknown fields are ignored. (The status strings live in [`super`].)

use serde::Deserialize;
use serde_json::Value;

use super::ProcessingStatus;
use crate::lifecycle::code;
use crate::processor::Processor;
use crate::results::{answer_outcome, cap, failed, LineOutcome, Outcome};

/// A Message Batch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageBatch {
    /// `msgbatch_...`
    pub id: String,
    /// `in_progress`, `canceling`, `ended`.
    pub processing_status: ProcessingStatus,
    /// Counters; only `processing` moves before the batch ends.
    #[serde(default)]
    pub request_counts: Option<RequestCounts>,
    /// RFC 3339.
    #[serde(default)]
    pub created_at: Option<String>,
    /// RFC 3339, once ended.
    #[serde(default)]
    pub ended_at: Option<String>,
    /// RFC 3339, once a cancel was asked for.
    #[serde(default)]
    pub cancel_initiated_at: Option<String>,
    /// Where the results JSONL is, once ended: absolute, or a path under the base URL.
    #[serde(default)]
    pub results_url: Option<String>,
}

/// A Message Batch's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub struct RequestCounts {
    /// Not finished.
    #[serde(default)]
    pub processing: u64,
    /// Answered.
    #[serde(default)]
    pub succeeded: u64,
    /// Failed.
    #[serde(default)]
    pub errored: u64,
    /// Not run: the batch was canceled.
    #[serde(default)]
    pub canceled: u64,
    /// Not run: the batch expired.
    #[serde(default)]
    pub expired: u64,
}

impl RequestCounts {
    /// Requests in the batch.
    pub fn total(&self) -> u64 {
        self.processing + self.succeeded + self.errored + self.canceled + self.expired
    }
}

/// A page of `GET /v1/messages/batches`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct BatchList {
    /// The batches.
    #[serde(default)]
    pub data: Vec<MessageBatch>,
    /// More pages follow (ask with `after_id = last_id`).
    #[serde(default)]
    pub has_more: bool,
    /// Id of the last batch of the page.
    #[serde(default)]
    pub last_id: Option<String>,
}

/// Unix seconds of an RFC 3339 timestamp (`2026-11-30T17:45:03.123Z`, `+01:00`
/// offsets too); `None` when it is not one.
pub fn unix_seconds(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = ts.get(r)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
    }
    let offset = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let off = num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60;
            if *sign == b'+' {
                off
            } else {
                -off
            }
        }
        _ => return None,
    };
    // Days from the civil date (H. Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s - offset)
}

// ---------------------------------------------------------------------------------
// Results lines.

#[derive(Deserialize)]
struct ResultLine {
    custom_id: String,
    result: LineResult,
}

#[derive(Deserialize)]
struct LineResult {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    message: Option<Message>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Vec<Value>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    input_tokens: Option<i64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<i64>,
    #[serde(default)]
    cache_read_input_tokens: Option<i64>,
    #[serde(default)]
    output_tokens: Option<i64>,
}

/// The error code stored for an `errored` result of Anthropic error type `kind`:
/// `invalid_request_error` becomes ai_batch's `invalid_request` (a resend cannot fix
/// it, see [`crate::lifecycle::NON_RETRYABLE_CODES`]); the others (`api_error`,
/// `overloaded_error`, `rate_limit_error`, ...) are kept and retried.
pub fn errored_code(kind: &str) -> &str {
    match kind {
        "invalid_request_error" => code::INVALID_REQUEST,
        other => other,
    }
}

/// One line of a batch's results JSONL: `succeeded` (the answer, validated like
/// OpenAI's message content), `errored` (the error's type and message), `canceled`
/// and `expired` (`batch_cancelled` / `batch_expired`, as for OpenAI). `None` for a
/// line that is not a result line.
pub fn parse_result_line(line: &str, processor: &Processor) -> Option<LineOutcome> {
    let parsed: ResultLine = serde_json::from_str(line).ok()?;
    let r = parsed.result;
    let mut tokens = (None, None);
    let mut answered = false;
    let outcome = match r.kind.as_str() {
        "succeeded" => {
            let m = r.message?;
            answered = true;
            if let Some(u) = &m.usage {
                // Cache reads and writes are input too (priced differently; none today).
                let cached = u.cache_creation_input_tokens.unwrap_or(0)
                    + u.cache_read_input_tokens.unwrap_or(0);
                tokens = (u.input_tokens.map(|t| t + cached), u.output_tokens);
            }
            message_outcome(&m, processor)
        }
        "errored" => {
            // {"type":"error","error":{"type":..,"message":..}}
            let e = r.error.as_ref();
            let inner = e.and_then(|e| e.get("error")).or(e);
            let kind = inner
                .and_then(|e| e.get("type"))
                .and_then(Value::as_str)
                .unwrap_or("error");
            let message = inner
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .map(cap)
                .unwrap_or_else(|| format!("the request failed ({kind})"));
            failed(errored_code(kind), message)
        }
        "canceled" => failed(
            code::BATCH_CANCELLED,
            "the batch was cancelled before this request ran (batch_retry sends it again)".into(),
        ),
        "expired" => failed(
            code::BATCH_EXPIRED,
            "the batch expired before this request ran (batch_retry sends it again)".into(),
        ),
        other => failed(
            "unknown_result",
            format!(
                "the provider reported a result of unknown type '{}'",
                cap(other)
            ),
        ),
    };
    Some(LineOutcome {
        custom_id: parsed.custom_id,
        outcome,
        input_tokens: tokens.0,
        output_tokens: tokens.1,
        answered,
    })
}

fn message_outcome(m: &Message, processor: &Processor) -> Outcome {
    match m.stop_reason.as_deref() {
        Some("refusal") => {
            return failed("refusal", "the model refused (stop_reason: refusal)".into());
        }
        Some("max_tokens") => {
            return failed(
                "truncated",
                "the answer was cut off at the output token limit (stop_reason: max_tokens); raise max_output_tokens"
                    .into(),
            );
        }
        _ => {}
    }
    // Structured outputs answer one text block; a forced tool answers a tool_use block.
    let text = m
        .content
        .iter()
        .find_map(|block| match block.get("type").and_then(Value::as_str) {
            Some("text") => block
                .get("text")
                .and_then(Value::as_str)
                .map(str::to_string),
            Some("tool_use") => block.get("input").map(Value::to_string),
            _ => None,
        });
    answer_outcome(None, None, text.as_deref(), processor)
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

    fn answer() -> Value {
        json!({"summary": "s", "root_cause_analysis": "r", "current_labels_assessment": "c",
            "recommended_labels": [{"label": "product::kots", "reasoning": "x"}], "confidence": 0.8})
    }

    fn ok(cid: &str, content: Value, stop: &str) -> String {
        json!({"custom_id": cid, "result": {"type": "succeeded", "message": {"id": "msg_1",
            "type": "message", "role": "assistant", "model": "claude-haiku-4-5", "content": content,
            "stop_reason": stop, "usage": {"input_tokens": 100, "output_tokens": 20,
            "cache_creation_input_tokens": 3, "cache_read_input_tokens": 2}}}})
        .to_string()
    }

    #[test]
    fn timestamps_read_as_unix_seconds() {
        assert_eq!(unix_seconds("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            unix_seconds("2024-09-24T18:37:24.100435Z"),
            Some(1_727_203_044)
        );
        assert_eq!(
            unix_seconds("2024-09-24T20:37:24+02:00"),
            Some(1_727_203_044)
        );
        assert_eq!(unix_seconds("2000-03-01T00:00:00Z"), Some(951_868_800));
        for bad in [
            "",
            "2024-09-24",
            "2024-13-01T00:00:00Z",
            "2024-09-24T18:37:24",
            "2024-09-24T18:37:24Zx",
            "abcd-09-24T18:37:24Z",
        ] {
            assert_eq!(unix_seconds(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_batch_object_parses() {
        let b: MessageBatch = serde_json::from_str(
            r#"{"id":"msgbatch_1","type":"message_batch","processing_status":"ended",
            "request_counts":{"processing":0,"succeeded":3,"errored":1,"canceled":0,"expired":2},
            "created_at":"2026-01-01T00:00:00Z","ended_at":"2026-01-01T01:00:00Z",
            "cancel_initiated_at":null,"archived_at":null,"expires_at":"2026-01-02T00:00:00Z",
            "results_url":"https://api.anthropic.com/v1/messages/batches/msgbatch_1/results","new":1}"#,
        )
        .unwrap();
        assert_eq!(b.processing_status, ProcessingStatus::Ended);
        assert_eq!(b.request_counts.unwrap().total(), 6);
        assert_eq!(
            b.created_at.as_deref().and_then(unix_seconds),
            Some(1_767_225_600)
        );
    }

    #[test]
    fn succeeded_lines_are_validated_like_openai_content() {
        let o = parse_result_line(
            &ok(
                "j-i1",
                json!([{"type": "text", "text": answer().to_string()}]),
                "end_turn",
            ),
            pl(),
        )
        .unwrap();
        assert_eq!(o.custom_id, "j-i1");
        assert!(matches!(o.outcome, Outcome::Completed { .. }), "{o:?}");
        assert_eq!(
            (o.input_tokens, o.output_tokens, o.answered),
            (Some(105), Some(20), true)
        );
        // A forced tool's answer is read from its input.
        let o = parse_result_line(&ok("j-i2", json!([{"type": "tool_use", "id": "t", "name": "product_labeling", "input": answer()}]), "tool_use"), pl()).unwrap();
        assert!(matches!(o.outcome, Outcome::Completed { .. }), "{o:?}");
        let code_of = |line: String| match parse_result_line(&line, pl()).unwrap().outcome {
            Outcome::Failed { status, code, .. } => (status, code),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code_of(ok("a", json!([]), "refusal")),
            ("failed", "refusal".into())
        );
        assert_eq!(
            code_of(ok(
                "a",
                json!([{"type": "text", "text": "{\"summ"}]),
                "max_tokens"
            )),
            ("failed", "truncated".into())
        );
        assert_eq!(
            code_of(ok(
                "a",
                json!([{"type": "text", "text": "not json"}]),
                "end_turn"
            )),
            ("failed", "invalid_answer".into())
        );
        assert_eq!(
            code_of(ok("a", json!([]), "end_turn")),
            ("failed", "empty_answer".into())
        );
    }

    #[test]
    fn errored_canceled_and_expired_lines_map_onto_item_failures() {
        let errored = |kind: &str| {
            json!({"custom_id": "j-i3", "result": {"type": "errored", "error": {"type": "error",
                "error": {"type": kind, "message": "boom"}, "request_id": "req_1"}}})
            .to_string()
        };
        let read = |line: &str| {
            let o = parse_result_line(line, pl()).unwrap();
            assert!(!o.answered && o.input_tokens.is_none());
            match o.outcome {
                Outcome::Failed {
                    status,
                    code,
                    message,
                } => (status, code, message),
                other => panic!("{other:?}"),
            }
        };
        assert_eq!(
            read(&errored("invalid_request_error")),
            ("failed", "invalid_request".into(), "boom".into())
        );
        assert_eq!(read(&errored("overloaded_error")).1, "overloaded_error");
        assert_eq!(read(&errored("api_error")).1, "api_error");
        let (status, code, _) = read(r#"{"custom_id":"j-i4","result":{"type":"canceled"}}"#);
        assert_eq!((status, code.as_str()), ("cancelled", "batch_cancelled"));
        let (status, code, _) = read(r#"{"custom_id":"j-i5","result":{"type":"expired"}}"#);
        assert_eq!((status, code.as_str()), ("expired", "batch_expired"));
        assert_eq!(
            read(r#"{"custom_id":"j","result":{"type":"paused"}}"#).1,
            "unknown_result"
        );
        // Retry takes what OpenAI's retry takes.
        use crate::lifecycle::{retry_takes, ItemStatus};
        assert!(!retry_takes(
            ItemStatus::Failed,
            Some(errored_code("invalid_request_error")),
            1
        ));
        assert!(retry_takes(
            ItemStatus::Failed,
            Some(errored_code("overloaded_error")),
            1
        ));
        assert!(parse_result_line("not json", pl()).is_none());
        assert!(parse_result_line(r#"{"custom_id":"x"}"#, pl()).is_none());
    }

    #[test]
    fn whole_results_files_parse_with_the_shared_reader() {
        let data = [
            ok(
                "j-i1",
                json!([{"type": "text", "text": answer().to_string()}]),
                "end_turn",
            ),
            r#"{"custom_id":"j-i2","result":{"type":"expired"}}"#.to_string(),
            ok("j-i1", json!([]), "refusal"),
            "{cut".to_string(),
        ]
        .join("\n");
        let parsed = crate::results::parse_files_with(&[data.as_bytes()], pl(), parse_result_line);
        assert_eq!(parsed.outcomes.len(), 2);
        assert_eq!((parsed.duplicate_lines, parsed.unreadable_lines), (1, 1));
        assert!(matches!(
            parsed.outcomes[0].outcome,
            Outcome::Completed { .. }
        ));
    }
}
