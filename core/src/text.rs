//! Showing user input inside a message.
//!
//! Every error or note that repeats something the user typed (a model name, a
//! processor, an option name, a job id) goes through [`echo`], so a pasted
//! 100,000-character value comes back as its first [`ECHO_CHARS`] characters and
//! its length, never whole.

/// At most this many characters of a user's value are repeated in a message.
pub(crate) const ECHO_CHARS: usize = 100;

/// At most this many characters of a DuckDB message about the user's SQL (which
/// quotes it) are repeated.
pub const SQL_MESSAGE_CHARS: usize = 500;

/// `s` as it may appear in a message: control characters shown as spaces, and
/// when longer than [`ECHO_CHARS`] characters, its beginning followed by
/// `… (N characters)`.
pub fn echo(s: &str) -> String {
    let flat: String = s
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    cap(&flat, ECHO_CHARS)
}

/// `s` cut to its first `max_chars` characters followed by `… (N characters)` when it
/// is longer; as it is otherwise. For texts that quote user input, such as DuckDB's
/// messages about a selection SQL.
pub fn cap(s: &str, max_chars: usize) -> String {
    let total = s.chars().count();
    if total <= max_chars {
        return s.to_string();
    }
    let head: String = s.chars().take(max_chars).collect();
    format!("{head}… ({total} characters)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_values_are_kept_and_long_ones_capped() {
        assert_eq!(echo("gpt-4o-mini"), "gpt-4o-mini");
        assert_eq!(echo(""), "");
        assert_eq!(echo("a\nb"), "a b");
        let long = "x".repeat(100_000);
        let e = echo(&long);
        assert_eq!(e, format!("{}… (100000 characters)", "x".repeat(100)));
        assert_eq!(
            echo(&"é".repeat(101)),
            format!("{}… (101 characters)", "é".repeat(100))
        );
        assert_eq!(echo(&"y".repeat(100)), "y".repeat(100));
        assert_eq!(cap("ab\ncd", 3), "ab\n… (5 characters)");
        assert_eq!(cap("ab\ncd", 5), "ab\ncd");
    }
}
