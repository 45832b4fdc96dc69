//! The checks an answer passes after it parses: its JSON Schema, with the maintained
//! `jsonschema` crate (`check_schema`), then the processor's number ranges
//! (`check_range`). Errors are `(path, reason)`, the path as `$.a[0].b`.

use jsonschema::error::{TypeKind, ValidationErrorKind};
use serde_json::Value;

use super::{truncate_chars, NumberRange};

/// Checks a [`NumberRange`]; errors are `(path, reason)`.
pub(super) fn check_range(r: &NumberRange, value: &Value) -> Result<(), (String, String)> {
    let path = || format!("$.{}", r.field);
    match value.get(&r.field).and_then(Value::as_f64) {
        Some(c) if (r.min..=r.max).contains(&c) => Ok(()),
        Some(c) => Err((
            path(),
            format!("{c} is outside the range {}..{}", r.min, r.max),
        )),
        None => Err((path(), "missing or not a number".to_string())),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `/a/0/b` (a JSON pointer) as `$.a[0].b`.
fn dollar_path(pointer: &str) -> String {
    let mut out = String::from("$");
    for seg in pointer.split('/').skip(1) {
        let seg = seg.replace("~1", "/").replace("~0", "~");
        if !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push('[');
            out.push_str(&seg);
            out.push(']');
        } else {
            out.push('.');
            out.push_str(&seg);
        }
    }
    out
}

/// Checks `value` against the processor's compiled schema; the first error, said as
/// the answer's path and a reason (the common kinds in ai_batch's own words, the
/// others in the crate's).
pub(super) fn check_schema(
    validator: &jsonschema::Validator,
    value: &Value,
) -> Result<(), (String, String)> {
    let Err(e) = validator.validate(value) else {
        return Ok(());
    };
    let path = dollar_path(e.instance_path().as_str());
    let instance = e.instance();
    let reason = match e.kind() {
        ValidationErrorKind::Required { property } => format!(
            "required key '{}' is missing",
            property.as_str().unwrap_or_default()
        ),
        ValidationErrorKind::AdditionalProperties { unexpected } => format!(
            "unexpected key '{}'",
            truncate_chars(unexpected.first().map(String::as_str).unwrap_or(""), 80).0
        ),
        ValidationErrorKind::Type {
            kind: TypeKind::Single(t),
        } => format!("expected \"{t}\", found {}", type_name(instance)),
        ValidationErrorKind::Enum { options } => {
            let shown = match instance.as_ref() {
                Value::String(s) => format!("'{}'", truncate_chars(s, 80).0),
                other => type_name(other).to_string(),
            };
            let list: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(Value::to_string).collect())
                .unwrap_or_default();
            format!("{shown} is not one of {}", list.join(", "))
        }
        _ => truncate_chars(&e.to_string(), 300).0.to_string(),
    };
    Err((path, reason))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_dollar_paths() {
        assert_eq!(dollar_path(""), "$");
        assert_eq!(dollar_path("/a/0/b"), "$.a[0].b");
        assert_eq!(dollar_path("/a~1b/c~0d"), "$.a/b.c~d");
    }
}
