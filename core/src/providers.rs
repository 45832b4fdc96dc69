//! The providers ai_batch can talk to: what it knows of each before talking to it
//! ([`Known`]: where the key and base URL are set, the public URL, the batch files'
//! format), and [`for_name`], which makes one. Kept apart from the seam
//! (`provider.rs`) so that imports point one way: providers → openai / anthropic →
//! provider.

use crate::provider::{ClientOptions, Format, Provider, ProviderError};

/// What ai_batch knows of a provider before talking to it: where its settings live,
/// and its batch files' format.
#[derive(Debug, Clone, Copy)]
pub struct Known {
    /// The name stored in `batch_jobs.provider` (`openai`).
    pub id: &'static str,
    /// The name in messages (`OpenAI`).
    pub name: &'static str,
    /// The environment variable holding the API key.
    pub key_env: &'static str,
    /// The environment variable that overrides the base URL.
    pub base_url_env: &'static str,
    /// The public API's base URL.
    pub default_base_url: &'static str,
    /// Its batch files' format.
    pub format: &'static dyn Format,
    /// The model a submit uses when neither it nor its processor names one.
    pub default_model: &'static str,
    /// Whether a model name is one of this provider's (`claude-*` for Anthropic).
    /// A model that is another provider's is refused at bind.
    pub owns_model: fn(&str) -> bool,
}

pub use crate::models::is_claude;

/// OpenAI's settings.
pub const OPENAI: Known = Known {
    id: "openai",
    name: "OpenAI",
    key_env: "OPENAI_API_KEY",
    base_url_env: "OPENAI_BASE_URL",
    default_base_url: crate::openai::DEFAULT_BASE_URL,
    format: &crate::openai::OpenAiJsonl,
    default_model: "gpt-4o-mini",
    // Fine-tunes, gateways and new families are OpenAI's unless they are Claude's.
    owns_model: |m| !is_claude(m),
};

/// Anthropic's settings.
pub const ANTHROPIC: Known = Known {
    id: "anthropic",
    name: "Anthropic",
    key_env: "ANTHROPIC_API_KEY",
    base_url_env: "ANTHROPIC_BASE_URL",
    default_base_url: crate::anthropic::DEFAULT_BASE_URL,
    format: &crate::anthropic::AnthropicJsonl,
    default_model: "claude-haiku-4-5",
    owns_model: is_claude,
};

/// The providers ai_batch can talk to.
pub const SUPPORTED: [Known; 2] = [OPENAI, ANTHROPIC];

/// The provider a model belongs to when none is named: Anthropic for `claude-*`,
/// OpenAI otherwise.
pub fn for_model(model: &str) -> &'static Known {
    if is_claude(model) {
        &ANTHROPIC
    } else {
        &OPENAI
    }
}

/// The settings of provider `id`, when ai_batch can talk to it.
pub fn known(id: &str) -> Option<&'static Known> {
    SUPPORTED.iter().find(|k| k.id == id)
}

/// Why [`for_name`] could not make a provider.
#[derive(Debug, thiserror::Error)]
pub enum ForNameError {
    /// A name ai_batch does not know.
    #[error("unknown provider '{0}' (supported: openai, anthropic)")]
    Unknown(String),
    /// The provider refused its settings (base URL, key).
    #[error("{0}")]
    Setup(#[from] ProviderError),
}

/// The provider called `name` (`openai`, `anthropic`), talking to `base_url` with `api_key`.
pub fn for_name(
    name: &str,
    base_url: &str,
    api_key: String,
    options: ClientOptions,
) -> Result<Box<dyn Provider>, ForNameError> {
    match name {
        "openai" => Ok(Box::new(crate::openai::OpenAiProvider::new(
            base_url, api_key, options,
        )?)),
        "anthropic" => Ok(Box::new(crate::anthropic::AnthropicProvider::new(
            base_url, api_key, options,
        )?)),
        other => Err(ForNameError::Unknown(crate::http::clean_text(other, 80))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::provider::{ClientOptions, Provider};

    #[test]
    fn for_name_knows_openai_and_anthropic() {
        let opts = ClientOptions::default;
        let p = for_name("openai", "http://127.0.0.1:9/v1", "sk-x".into(), opts()).unwrap();
        assert_eq!(p.name(), "OpenAI");
        assert_eq!(p.base_url(), "http://127.0.0.1:9/v1");
        assert_eq!(p.format().limits().max_requests, 50_000);
        let k = known("openai").unwrap();
        assert_eq!(
            (k.key_env, k.base_url_env),
            ("OPENAI_API_KEY", "OPENAI_BASE_URL")
        );
        assert_eq!(k.name, p.name());
        assert!(known("acme").is_none());
        let p = for_name("anthropic", "http://127.0.0.1:9", "k".into(), opts()).unwrap();
        assert_eq!(p.name(), "Anthropic");
        let k = known("anthropic").unwrap();
        assert_eq!(
            (k.key_env, k.base_url_env, k.name),
            ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "Anthropic")
        );
        assert_eq!(for_model("claude-haiku-4-5").id, "anthropic");
        assert_eq!(for_model(" Claude-Sonnet-4-5").id, "anthropic");
        for m in ["gpt-4o-mini", "o3", "ft:gpt-4o-mini:acme::x", "llama-3"] {
            assert_eq!(for_model(m).id, "openai", "{m}");
            assert!((OPENAI.owns_model)(m) && !(ANTHROPIC.owns_model)(m), "{m}");
        }
        assert!(!(OPENAI.owns_model)("claude-haiku-4-5"));
        for k in SUPPORTED {
            assert!((k.owns_model)(k.default_model), "{}", k.id);
        }
        assert_eq!(p.format().limits().max_requests, 100_000);
        let e = for_name("acme", "http://127.0.0.1:9/v1", "k".into(), opts()).unwrap_err();
        assert!(e.to_string().contains("unknown provider 'acme'"), "{e}");
        let e = for_name("openai", "http://example.com/v1", "k".into(), opts()).unwrap_err();
        assert!(e.to_string().contains("https"), "{e}");
        // The provider is usable as a trait object across threads.
        fn assert_send_sync<T: Send + Sync + ?Sized>() {}
        assert_send_sync::<dyn Provider>();
    }
}
