//! Settings read from the environment that more than one operation needs.

use ai_batch_core::providers::Known;

/// `given`, else the provider's base-URL variable (`OPENAI_BASE_URL`) when set and not
/// blank, else the provider's public API.
pub(crate) fn base_url_or_default(provider: &Known, given: Option<String>) -> String {
    given
        .or_else(|| {
            std::env::var(provider.base_url_env)
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .unwrap_or_else(|| provider.default_base_url.to_string())
}

/// The provider's API key from its environment variable, when set and not blank.
pub(crate) fn api_key(provider: &Known) -> Option<String> {
    std::env::var(provider.key_env)
        .ok()
        .filter(|k| !k.trim().is_empty())
}
