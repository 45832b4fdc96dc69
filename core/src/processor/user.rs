//! Processors defined by users (`batch_define_processor`): the parts as given in SQL
//! ([`NewProcessor`]), checked and made into a [`Processor`] by [`define`], or refused
//! with one sentence saying what is wrong.

use serde_json::value::RawValue;
use serde_json::Value;

use super::{
    minify_json, product_labeling_definition,
    schema::{check_strict, RESULT_COLUMNS},
    Budgets, Definition, Processor, ProcessorError, BUILTIN_NAMES,
};

/// The output-token guess of a user-defined processor when `output_tokens` is not given.
const DEFAULT_OUTPUT_TOKENS: u32 = 400;
/// The largest output-token guess accepted.
const MAX_OUTPUT_TOKENS: i64 = 1_000_000;
/// The largest budget accepted (characters, or comments).
const MAX_BUDGET: i64 = 10_000_000;
/// The longest processor name (OpenAI's limit on a `json_schema` name).
const MAX_NAME_CHARS: usize = 64;

/// What a name may be, for messages.
pub const NAME_RULE: &str =
    "1 to 64 characters: letters, digits, '-' and '_', starting with a letter or digit";

/// The truncation budgets a definition overrides; `None` keeps product-labeling's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BudgetOverrides {
    pub title_chars: Option<i64>,
    pub body_chars: Option<i64>,
    pub comment_chars: Option<i64>,
    pub comments_total_chars: Option<i64>,
    pub max_comments: Option<i64>,
    pub short_field_chars: Option<i64>,
}

/// A processor as given in SQL, before its checks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewProcessor {
    pub name: String,
    pub system_prompt: Option<String>,
    pub user_template: Option<String>,
    /// JSON Schema text.
    pub response_schema: Option<String>,
    pub output_tokens: Option<i64>,
    pub model: Option<String>,
    pub budgets: BudgetOverrides,
}

fn check_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    let ok_start = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    if !ok_chars || !ok_start || name.chars().count() > MAX_NAME_CHARS {
        return Err(format!("the name must be {NAME_RULE}"));
    }
    if let Some(b) = BUILTIN_NAMES.iter().find(|b| b.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "'{b}' is a built-in processor and cannot be redefined (choose another name)"
        ));
    }
    Ok(())
}

fn budget(given: Option<i64>, default: usize, what: &str) -> Result<usize, String> {
    match given {
        None => Ok(default),
        Some(n) if (1..=MAX_BUDGET).contains(&n) => Ok(n as usize),
        Some(n) => Err(format!(
            "{what} must be between 1 and {MAX_BUDGET}, got {n}"
        )),
    }
}

fn budgets(o: &BudgetOverrides, d: &Budgets) -> Result<Budgets, String> {
    Ok(Budgets {
        title_chars: budget(o.title_chars, d.title_chars, "title_chars")?,
        body_chars: budget(o.body_chars, d.body_chars, "body_chars")?,
        comment_chars: budget(o.comment_chars, d.comment_chars, "comment_chars")?,
        comments_total_chars: budget(
            o.comments_total_chars,
            d.comments_total_chars,
            "comments_total_chars",
        )?,
        comments: budget(o.max_comments, d.comments, "max_comments")?,
        short_field_chars: budget(
            o.short_field_chars,
            d.short_field_chars,
            "short_field_chars",
        )?,
    })
}

fn required(v: &Option<String>, what: &str, example: &str) -> Result<String, String> {
    match v {
        Some(s) if !s.trim().is_empty() => Ok(s.clone()),
        _ => Err(format!(
            "{what} := is required and must not be empty ({example})"
        )),
    }
}

/// Checks a user's definition and makes it a processor: a name that is not a
/// built-in's, a system prompt, a template whose fields are known, a response schema
/// that is valid JSON Schema within both providers' strict subsets, sane budgets and
/// output guess. The version is the hash of the result, as for the built-ins.
pub fn define(n: &NewProcessor) -> Result<Processor, ProcessorError> {
    let invalid = |detail: String| ProcessorError::Invalid {
        name: n.name.clone(),
        detail,
    };
    check_name(&n.name).map_err(invalid)?;
    let system_prompt = required(
        &n.system_prompt,
        "system_prompt",
        "what the model is to do with each issue",
    )
    .map_err(invalid)?;
    let user_template = required(
        &n.user_template,
        "user_template",
        "e.g. 'Title: {{title}}\\n{{body}}'",
    )
    .map_err(invalid)?;
    let schema_text = required(
        &n.response_schema,
        "response_schema",
        "a JSON Schema of an object, as text",
    )
    .map_err(invalid)?;
    serde_json::from_str::<Value>(&schema_text)
        .map_err(|e| invalid(format!("response_schema is not valid JSON: {e}")))?;
    let columns =
        check_strict(&schema_text).map_err(|e| invalid(format!("response_schema: {e}")))?;
    if let Some((c, _)) = columns
        .iter()
        .find(|(c, _)| RESULT_COLUMNS.iter().any(|r| r.eq_ignore_ascii_case(c)))
    {
        return Err(invalid(format!(
            "response_schema has the top-level property '{}', a column batch_results adds itself ({}); rename it",
            crate::text::echo(c),
            RESULT_COLUMNS.join(", ")
        )));
    }
    let output_tokens = match n.output_tokens {
        None => DEFAULT_OUTPUT_TOKENS,
        Some(t) if (1..=MAX_OUTPUT_TOKENS).contains(&t) => t as u32,
        Some(t) => {
            return Err(invalid(format!(
                "output_tokens must be between 1 and {MAX_OUTPUT_TOKENS}, got {t}"
            )))
        }
    };
    let model = match &n.model {
        None => None,
        Some(m) if m.trim().is_empty() => {
            return Err(invalid(
                "model := must not be empty (leave it out for batch_submit's default)".into(),
            ))
        }
        Some(m) => Some(m.trim().to_string()),
    };
    let defaults = product_labeling_definition().map_err(invalid)?.budgets;
    let def = Definition {
        name: n.name.clone(),
        system_prompt,
        user_template,
        budgets: budgets(&n.budgets, &defaults).map_err(invalid)?,
        response_schema: RawValue::from_string(minify_json(&schema_text))
            .map_err(|e| invalid(format!("response_schema is not valid JSON: {e}")))?,
        output_tokens,
        ranges: Vec::new(),
        model,
    };
    Processor::new(def)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn triage() -> NewProcessor {
        NewProcessor {
            name: "triage-kind".into(),
            system_prompt: Some("Classify the issue.".into()),
            user_template: Some("{{org}}/{{repo}}#{{number}} {{title}}\n{{body}}".into()),
            response_schema: Some(
                r#"{"type":"object","properties":{"kind":{"type":"string","enum":["bug","feature"]}},
                   "required":["kind"],"additionalProperties":false}"#
                    .into(),
            ),
            ..NewProcessor::default()
        }
    }

    #[test]
    fn a_definition_makes_a_processor_with_a_hash_version() {
        let p = define(&triage()).unwrap();
        assert_eq!(p.name(), "triage-kind");
        assert_eq!(p.version().len(), 12);
        assert_eq!(p.default_output_tokens(), DEFAULT_OUTPUT_TOKENS);
        assert_eq!(p.default_model(), None);
        assert!(!p.is_builtin());
        // Stored and read back, it is the same processor.
        let back = Processor::from_stored(p.name(), p.version(), p.definition_json()).unwrap();
        assert_eq!(back.version(), p.version());
        // Whitespace in the schema text is not part of it; any real change is.
        let mut spaced = triage();
        spaced.response_schema = spaced.response_schema.map(|s| format!("  {s}\n"));
        assert_eq!(define(&spaced).unwrap().version(), p.version());
        let mut m = triage();
        m.model = Some(" gpt-4.1-mini ".into());
        let pm = define(&m).unwrap();
        assert_eq!(pm.default_model(), Some("gpt-4.1-mini"));
        assert_ne!(pm.version(), p.version());
        let mut b = triage();
        b.budgets.body_chars = Some(100);
        assert_ne!(define(&b).unwrap().version(), p.version());
        // An answer is checked against its schema.
        assert!(p.validate_result(r#"{"kind":"bug"}"#).is_ok());
        let e = p
            .validate_result(r#"{"kind":"docs"}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("$.kind: 'docs' is not one of"), "{e}");
    }

    #[test]
    fn budgets_given_are_the_ones_rendered() {
        let mut n = triage();
        n.user_template = Some("{{title}}|{{body}}|{{comments}}".into());
        n.budgets.body_chars = Some(10);
        n.budgets.title_chars = Some(3);
        n.budgets.max_comments = Some(1);
        let p = define(&n).unwrap();
        let issue = super::super::IssueInput {
            title: "abcdef".into(),
            body: Some("0123456789abcdef".into()),
            comments: vec![
                super::super::CommentInput {
                    author: "a".into(),
                    body: "first".into(),
                },
                super::super::CommentInput {
                    author: "b".into(),
                    body: "second".into(),
                },
            ],
            ..Default::default()
        };
        let m = p.user_message(&issue);
        assert!(m.text.starts_with("abc\n[... truncated 3 characters ...]|0123456789\n[... truncated 6 characters ...]|"), "{}", m.text);
        assert!(
            m.text.contains("[comment 1] a:\nfirst") && !m.text.contains("second"),
            "{}",
            m.text
        );
        assert_eq!(m.omitted_comments, 1);
    }

    #[test]
    fn bad_definitions_each_say_why() {
        let refused = |edit: fn(&mut NewProcessor)| {
            let mut n = triage();
            edit(&mut n);
            define(&n).unwrap_err().to_string()
        };
        let e = refused(|n| n.name = "Product-Labeling".into());
        assert!(e.contains("is a built-in processor"), "{e}");
        let e = refused(|n| n.name = "has space".into());
        assert!(e.contains("letters, digits"), "{e}");
        let e = refused(|n| n.user_template = Some("{{assignee}}".into()));
        assert!(e.contains("unknown field '{{assignee}}'"), "{e}");
        let e = refused(|n| n.response_schema = Some("{oops".into()));
        assert!(e.contains("response_schema is not valid JSON"), "{e}");
        let e = refused(|n| n.response_schema = Some(r#"{"type":"objekt"}"#.into()));
        assert!(e.contains("not valid JSON Schema"), "{e}");
        let e = refused(|n| {
            n.response_schema = Some(
                r#"{"type":"object","properties":{"n":{"type":"number","maximum":1}},"required":["n"],"additionalProperties":false}"#.into(),
            )
        });
        assert!(e.contains("\"maximum\"") && e.contains("Anthropic"), "{e}");
        let e = refused(|n| {
            n.response_schema = Some(
                r#"{"type":"object","properties":{"Issue_ID":{"type":"integer"}},"required":["Issue_ID"],"additionalProperties":false}"#.into(),
            )
        });
        assert!(e.contains("'Issue_ID', a column batch_results adds"), "{e}");
        let e = refused(|n| n.system_prompt = Some("  ".into()));
        assert!(e.contains("system_prompt := is required"), "{e}");
        let e = refused(|n| n.output_tokens = Some(0));
        assert!(e.contains("output_tokens must be between"), "{e}");
        let e = refused(|n| n.budgets.max_comments = Some(-1));
        assert!(e.contains("max_comments must be between"), "{e}");
        assert!(
            e.starts_with("processor 'triage-kind' is not valid: "),
            "{e}"
        );
    }
}
