//! OpenAI's batch files as a [`Format`]: at most 50,000 requests or 200 MB per file;
//! request lines `{"custom_id", "method": "POST", "url": "/v1/chat/completions",
//! "body"}` (written by [`crate::requests::write_rendered_line`]); result lines
//! `{"custom_id", "response": {"status_code", "body"}, "error"}` (read by
//! [`crate::results::parse_files`]).

use crate::processor::Processor;
use crate::provider::{Format, Limits};
use crate::requests::{
    self, RequestError, RequestOptions, MAX_BATCH_FILE_BYTES, MAX_REQUESTS_PER_BATCH,
};
use crate::results::{self, ParsedResults};

/// OpenAI's JSONL batch files.
#[derive(Debug, Clone, Copy)]
pub struct OpenAiJsonl;

impl Format for OpenAiJsonl {
    fn limits(&self) -> Limits {
        Limits {
            max_requests: MAX_REQUESTS_PER_BATCH,
            max_bytes: MAX_BATCH_FILE_BYTES,
        }
    }

    fn check_options(&self, opts: &RequestOptions) -> Result<(), RequestError> {
        opts.validate()
    }

    fn write_line(
        &self,
        out: &mut Vec<u8>,
        custom_id: &str,
        processor: &Processor,
        user_text: &str,
        opts: &RequestOptions,
    ) -> Result<usize, RequestError> {
        requests::write_rendered_line(out, custom_id, processor, user_text, opts)
    }

    fn parse_results(&self, files: &[&[u8]], processor: &Processor) -> ParsedResults {
        results::parse_files(files, processor)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::processor::processor_by_name;

    #[test]
    fn a_line_written_is_a_line_read_back() {
        let p = processor_by_name("product-labeling").unwrap();
        let f: &dyn Format = &OpenAiJsonl;
        assert_eq!(f.limits().max_requests, 50_000);
        assert_eq!(f.limits().max_bytes, 200 * 1024 * 1024);
        let mut out = Vec::new();
        let n = f
            .write_line(
                &mut out,
                "job-1-issue-7",
                p,
                "Title: x",
                &RequestOptions::new("gpt-4o-mini"),
            )
            .unwrap();
        assert_eq!(n, out.len());
        let line: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(line["custom_id"], "job-1-issue-7");
        assert_eq!(line["url"], "/v1/chat/completions");
        assert_eq!(line["body"]["messages"][1]["content"], "Title: x");
        // An error line for that request comes back as a failed outcome of the same id.
        let result = br#"{"id":"r1","custom_id":"job-1-issue-7","response":null,"error":{"code":"server_error","message":"boom"}}"#;
        let parsed = f.parse_results(&[&result[..]], p);
        assert_eq!(parsed.outcomes.len(), 1);
        assert_eq!(parsed.outcomes[0].custom_id, "job-1-issue-7");
        assert!(!parsed.outcomes[0].answered);
    }
}
