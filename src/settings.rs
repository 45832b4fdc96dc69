//! Settings read from the environment that more than one operation needs.

use ai_batch_core::openai::DEFAULT_BASE_URL;

/// `given`, else `OPENAI_BASE_URL` when set and not blank, else OpenAI's own URL.
pub(crate) fn base_url_or_default(given: Option<String>) -> String {
    given
        .or_else(|| {
            std::env::var("OPENAI_BASE_URL")
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
}
