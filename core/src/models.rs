//! Model names: which family a name belongs to, with no provider, price or tokenizer
//! attached (those modules ask here, so none of them has to ask another).

/// Whether `model` is a Claude model (Anthropic's): its name starts with `claude`,
/// in any case, after surrounding spaces.
pub fn is_claude(model: &str) -> bool {
    model
        .trim()
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case("claude"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claude_names_are_recognised() {
        for m in ["claude-haiku-4-5", " Claude-Sonnet-4-5", "CLAUDE"] {
            assert!(is_claude(m), "{m}");
        }
        for m in ["gpt-4o-mini", "claud", "", "anthropic:claude-x", "é-claude"] {
            assert!(!is_claude(m), "{m}");
        }
    }
}
