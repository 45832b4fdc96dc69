//! The checks an answer passes after it parses: the JSON-schema subset strict structured
//! outputs use (`check_value`), then the processor's number ranges (`check_range`).
//! Errors are `(path, reason)`.

use serde_json::Value;

use std::fmt::Write as _;

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

fn type_matches(expected: &str, v: &Value) -> bool {
    match expected {
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        other => type_name(v) == other,
    }
}

/// Checks `value` against the subset of JSON schema this crate writes: `type` (one or
/// a list), `enum`, `properties` / `required` / `additionalProperties: false`, `items`,
/// `minimum` / `maximum`. Other keywords are ignored. Errors are `(path, reason)`.
pub(super) fn check_value(
    schema: &Value,
    value: &Value,
    path: &mut String,
) -> Result<(), (String, String)> {
    let fail = |path: &str, reason: String| Err((path.to_string(), reason));

    if let Some(t) = schema.get("type") {
        let ok = match t {
            Value::String(s) => type_matches(s, value),
            Value::Array(ts) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|s| type_matches(s, value)),
            _ => true,
        };
        if !ok {
            return fail(path, format!("expected {t}, found {}", type_name(value)));
        }
    }
    if let Some(Value::Array(allowed)) = schema.get("enum") {
        if !allowed.contains(value) {
            let shown = match value {
                Value::String(s) => format!("'{}'", truncate_chars(s, 80).0),
                other => type_name(other).to_string(),
            };
            let list: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            return fail(path, format!("{shown} is not one of {}", list.join(", ")));
        }
    }
    if let Some(x) = value.as_f64() {
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            if x < min {
                return fail(path, format!("{x} is below the minimum {min}"));
            }
        }
        if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
            if x > max {
                return fail(path, format!("{x} is above the maximum {max}"));
            }
        }
    }
    if let Value::Object(obj) = value {
        let props = schema.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !obj.contains_key(key) {
                    return fail(path, format!("required key '{key}' is missing"));
                }
            }
        }
        let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
        for (key, child) in obj {
            match props.and_then(|p| p.get(key)) {
                Some(child_schema) => {
                    let len = path.len();
                    path.push('.');
                    path.push_str(key);
                    check_value(child_schema, child, path)?;
                    path.truncate(len);
                }
                None if closed => {
                    return fail(
                        path,
                        format!("unexpected key '{}'", truncate_chars(key, 80).0),
                    );
                }
                None => {}
            }
        }
    }
    if let (Value::Array(items), Some(item_schema)) = (value, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            let len = path.len();
            let _ = write!(path, "[{i}]");
            check_value(item_schema, item, path)?;
            path.truncate(len);
        }
    }
    Ok(())
}
