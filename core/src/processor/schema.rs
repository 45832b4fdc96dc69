//! What a processor's response schema may be, and the typed columns it gives.
//!
//! A user writes the schema in SQL (`batch_define_processor`); it is sent as the
//! provider's strict structured-output schema. [`check_strict`] refuses, when the
//! processor is defined, what either provider's strict mode does not accept:
//!
//! - OpenAI (Structured Outputs, `strict: true`): the root is an object; every object
//!   lists all its properties in `required` and has `additionalProperties: false`;
//!   types string, number, integer, boolean, object, array, null (a type list for
//!   nullable); `enum`; at most 10 levels of nesting and 5,000 properties.
//! - Anthropic (structured outputs / strict tool use): `additionalProperties: false` on
//!   every object; no numeric constraints (`minimum`, `maximum`, `multipleOf`), no
//!   string length constraints, `minItems` only 0 or 1; `enum` of scalars only.
//!
//! ai_batch accepts the part of both it can turn into typed DuckDB columns
//! ([`Shape`]): every node has one `type` (or one type and `"null"`), and the keywords
//! `type`, `description`, `title`, `enum`, `properties`, `required`,
//! `additionalProperties`, `items` (and `$schema` at the root). `anyOf`, `$ref` and the
//! rest are refused with a sentence saying so; a range goes into the description, as
//! product-labeling does for `confidence`.

use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The keywords a schema node may use.
const ALLOWED_KEYWORDS: [&str; 8] = [
    "type",
    "description",
    "title",
    "enum",
    "properties",
    "required",
    "additionalProperties",
    "items",
];

/// OpenAI's limit on object nesting.
const MAX_DEPTH: usize = 10;
/// OpenAI's limit on properties in one schema.
const MAX_PROPERTIES: usize = 5_000;

/// The columns `batch_results` adds beside the schema's properties; a top-level
/// property may not take one of these names.
pub const RESULT_COLUMNS: [&str; 6] = [
    "issue",
    "issue_id",
    "model",
    "processor_version",
    "job_id",
    "analysed_at",
];

/// The DuckDB type a schema node gives in `batch_results`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Shape {
    /// VARCHAR: strings and enums of strings.
    Text,
    /// BIGINT: `integer`.
    Int,
    /// DOUBLE: `number`.
    Float,
    /// BOOLEAN.
    Bool,
    /// LIST of the items' shape.
    List(Box<Shape>),
    /// STRUCT of the properties, in the schema's order.
    Struct(Vec<(String, Shape)>),
}

impl Shape {
    /// The DuckDB type as SQL text, e.g. `STRUCT("a" VARCHAR, "b" DOUBLE[])`.
    pub fn sql(&self) -> String {
        match self {
            Shape::Text => "VARCHAR".into(),
            Shape::Int => "BIGINT".into(),
            Shape::Float => "DOUBLE".into(),
            Shape::Bool => "BOOLEAN".into(),
            Shape::List(s) => format!("{}[]", s.sql()),
            Shape::Struct(fields) => {
                let f: Vec<String> = fields
                    .iter()
                    .map(|(n, s)| format!("\"{}\" {}", n.replace('"', "\"\""), s.sql()))
                    .collect();
                format!("STRUCT({})", f.join(", "))
            }
        }
    }
}

/// The one non-null type of a node (`"string"` or `["string", "null"]`).
fn node_type<'a>(node: &'a Map<String, Value>, path: &str) -> Result<&'a str, String> {
    match node.get("type") {
        Some(Value::String(t)) => Ok(t),
        Some(Value::Array(ts)) => {
            let named: Vec<&str> = ts.iter().filter_map(Value::as_str).collect();
            let non_null: Vec<&str> = named.iter().copied().filter(|t| *t != "null").collect();
            if named.len() != ts.len() || non_null.len() != 1 {
                return Err(format!(
                    "{path} has the type list {}: give one type, or one type and \"null\"",
                    Value::Array(ts.clone())
                ));
            }
            Ok(non_null[0])
        }
        Some(other) => Err(format!("{path} has a type that is not a string: {other}")),
        None => Err(format!(
            "{path} has no \"type\" (every property needs one, e.g. \"type\": \"string\")"
        )),
    }
}

/// Why a keyword outside [`ALLOWED_KEYWORDS`] is refused.
fn refused_keyword(key: &str) -> &'static str {
    match key {
        "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf" => {
            "Anthropic's strict mode accepts no numeric constraints; state the range in the description"
        }
        "minLength" | "maxLength" => {
            "Anthropic's strict mode accepts no string length constraints; state it in the description"
        }
        "minItems" | "maxItems" | "uniqueItems" => {
            "Anthropic's strict mode accepts only minItems 0 or 1; state the count in the description"
        }
        "anyOf" | "oneOf" | "allOf" | "not" => {
            "ai_batch gives each property one typed column, so a property has one type (use a type list with \"null\" for an optional value)"
        }
        "$ref" | "$defs" | "definitions" => {
            "ai_batch does not resolve references; write the sub-schema in place"
        }
        "default" | "const" | "pattern" | "format" | "examples" => {
            "ai_batch accepts only the keywords both providers' strict modes share"
        }
        "patternProperties" | "propertyNames" | "dependentRequired" | "if" | "then" | "else" => {
            "neither provider's strict mode accepts it"
        }
        _ => "it is not one of the keywords ai_batch accepts",
    }
}

struct Walk {
    properties: usize,
}

impl Walk {
    fn node(&mut self, v: &Value, path: &str, depth: usize) -> Result<Shape, String> {
        let Value::Object(node) = v else {
            return Err(format!("{path} is not a JSON object"));
        };
        for key in node.keys() {
            let root_only = key == "$schema" && depth == 0;
            if !ALLOWED_KEYWORDS.contains(&key.as_str()) && !root_only {
                return Err(format!(
                    "{path} uses \"{}\", which is refused: {}",
                    crate::text::echo(key),
                    refused_keyword(key)
                ));
            }
        }
        let ty = node_type(node, path)?;
        let shape = match ty {
            "string" => Shape::Text,
            "integer" => Shape::Int,
            "number" => Shape::Float,
            "boolean" => Shape::Bool,
            "array" => {
                let items = node.get("items").ok_or_else(|| {
                    format!("{path} is an array without \"items\" (say what each item is)")
                })?;
                Shape::List(Box::new(self.node(items, &format!("{path}[]"), depth + 1)?))
            }
            "object" => Shape::Struct(self.object(node, path, depth)?),
            other => {
                return Err(format!(
                    "{path} has the type \"{}\" (use string, number, integer, boolean, array or object)",
                    crate::text::echo(other)
                ))
            }
        };
        if ty != "object" {
            for k in ["properties", "required", "additionalProperties"] {
                if node.contains_key(k) {
                    return Err(format!("{path} is a {ty} but has \"{k}\""));
                }
            }
        }
        if ty != "array" && node.contains_key("items") {
            return Err(format!("{path} is a {ty} but has \"items\""));
        }
        if let Some(e) = node.get("enum") {
            check_enum(e, ty, path)?;
        }
        Ok(shape)
    }

    fn object(
        &mut self,
        node: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Result<Vec<(String, Shape)>, String> {
        if depth >= MAX_DEPTH {
            return Err(format!(
                "{path} nests objects more than {MAX_DEPTH} levels deep (OpenAI's limit)"
            ));
        }
        if node.get("additionalProperties") != Some(&Value::Bool(false)) {
            return Err(format!(
                "{path} needs \"additionalProperties\": false (both providers' strict modes require it on every object)"
            ));
        }
        let Some(Value::Object(props)) = node.get("properties") else {
            return Err(format!(
                "{path} is an object without \"properties\" (list its properties)"
            ));
        };
        if props.is_empty() {
            return Err(format!("{path} is an object with no properties"));
        }
        self.properties += props.len();
        if self.properties > MAX_PROPERTIES {
            return Err(format!(
                "the schema has more than {MAX_PROPERTIES} properties (OpenAI's limit)"
            ));
        }
        let required: Vec<&str> = match node.get("required") {
            Some(Value::Array(r)) => r.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let missing: Vec<&str> = props
            .keys()
            .map(String::as_str)
            .filter(|k| !required.contains(k))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "{path}: \"required\" must list every property (OpenAI's strict mode requires it; use a type list with \"null\" for an optional value); missing: {}",
                crate::text::echo(&missing.join(", "))
            ));
        }
        if let Some(extra) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(format!(
                "{path}: \"required\" names \"{}\", which is not a property",
                crate::text::echo(extra)
            ));
        }
        let mut seen: Vec<String> = Vec::new();
        let mut fields = Vec::with_capacity(props.len());
        for (name, child) in props {
            let lower = name.to_lowercase();
            if name.is_empty() || seen.contains(&lower) {
                return Err(format!(
                    "{path} has the property \"{}\" twice or empty (DuckDB column names ignore case)",
                    crate::text::echo(name)
                ));
            }
            seen.push(lower);
            let child_path = format!("{path}.{name}");
            fields.push((name.clone(), self.node(child, &child_path, depth + 1)?));
        }
        Ok(fields)
    }
}

fn check_enum(e: &Value, ty: &str, path: &str) -> Result<(), String> {
    let Value::Array(values) = e else {
        return Err(format!("{path} has an \"enum\" that is not a list"));
    };
    if values.is_empty() {
        return Err(format!("{path} has an empty \"enum\""));
    }
    let fits = |v: &Value| match ty {
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => false,
    };
    if let Some(bad) = values.iter().find(|v| !fits(v) && !v.is_null()) {
        return Err(format!(
            "{path} has the enum value {} that is not a {ty} (enums hold values of the property's type)",
            crate::text::echo(&bad.to_string())
        ));
    }
    Ok(())
}

/// The keys of a JSON text's objects in the order written (serde_json's `Map` sorts
/// them), nested; what is not an object has none.
#[derive(Debug, Default)]
struct Keys(Vec<(String, Keys)>);

impl<'de> Deserialize<'de> for Keys {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Keys;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("JSON")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Keys, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = m.next_key::<String>()? {
                    out.push((k, m.next_value::<Keys>()?));
                }
                Ok(Keys(out))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Keys, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Keys::default())
            }
            fn visit_bool<E>(self, _: bool) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_i64<E>(self, _: i64) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_u64<E>(self, _: u64) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_f64<E>(self, _: f64) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_str<E>(self, _: &str) -> Result<Keys, E> {
                Ok(Keys::default())
            }
            fn visit_unit<E>(self) -> Result<Keys, E> {
                Ok(Keys::default())
            }
        }
        d.deserialize_any(V)
    }
}

impl Keys {
    fn get(&self, key: &str) -> Option<&Keys> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }
}

/// Puts the fields of an object node in the order its `properties` were written, at
/// every depth.
fn reorder(fields: &mut [(String, Shape)], node: &Keys) {
    let Some(props) = node.get("properties") else {
        return;
    };
    fields.sort_by_key(|(name, _)| props.0.iter().position(|(k, _)| k == name));
    for (name, shape) in fields.iter_mut() {
        if let Some(child) = props.get(name) {
            reorder_shape(shape, child);
        }
    }
}

fn reorder_shape(shape: &mut Shape, node: &Keys) {
    match shape {
        Shape::Struct(fields) => reorder(fields, node),
        Shape::List(item) => {
            if let Some(items) = node.get("items") {
                reorder_shape(item, items);
            }
        }
        _ => {}
    }
}

/// The shape a node's `type` says, whatever else it holds; VARCHAR when it says none.
fn loose_shape(v: &Value, depth: usize) -> Shape {
    let Some(node) = v.as_object().filter(|_| depth <= MAX_DEPTH) else {
        return Shape::Text;
    };
    match node_type(node, "$").unwrap_or("string") {
        "integer" => Shape::Int,
        "number" => Shape::Float,
        "boolean" => Shape::Bool,
        "array" => Shape::List(Box::new(
            node.get("items")
                .map_or(Shape::Text, |i| loose_shape(i, depth + 1)),
        )),
        "object" => match node.get("properties").and_then(Value::as_object) {
            Some(props) if !props.is_empty() => Shape::Struct(
                props
                    .iter()
                    .map(|(n, p)| (n.clone(), loose_shape(p, depth + 1)))
                    .collect(),
            ),
            _ => Shape::Text,
        },
        _ => Shape::Text,
    }
}

/// Parses a schema text, keeping the order of its properties.
fn parse(text: &str) -> Result<(Value, Keys), String> {
    let value: Value =
        serde_json::from_str(text).map_err(|e| format!("it is not valid JSON: {e}"))?;
    let keys: Keys =
        serde_json::from_str(text).map_err(|e| format!("it is not valid JSON: {e}"))?;
    Ok((value, keys))
}

/// Checks a response schema (JSON text) against the strict subset both providers
/// accept (see the module docs) and gives the typed columns of its top-level
/// properties, in the order written. Errors are one sentence naming the place (`$.a.b`)
/// and what to do.
pub fn check_strict(text: &str) -> Result<Vec<(String, Shape)>, String> {
    let (schema, keys) = parse(text)?;
    if let Err(e) = jsonschema::meta::validate(&schema) {
        return Err(format!("it is not valid JSON Schema: {e}"));
    }
    let mut walk = Walk { properties: 0 };
    let root = schema
        .as_object()
        .ok_or_else(|| "the schema is not a JSON object".to_string())?;
    if node_type(root, "$")? != "object" {
        return Err(
            "the schema's root must be {\"type\": \"object\", ...} (both providers' strict modes require it)"
                .into(),
        );
    }
    match walk.node(&schema, "$", 0)? {
        Shape::Struct(mut fields) => {
            reorder(&mut fields, &keys);
            Ok(fields)
        }
        _ => Err("the schema's root must be an object".into()),
    }
}

/// The typed columns of a schema (JSON text), for `batch_results`: [`check_strict`]'s
/// when it passes; otherwise (a definition stored by an older build) one column per
/// top-level property, each typed by what its `type` says or VARCHAR.
pub fn result_shape(text: &str) -> Vec<(String, Shape)> {
    if let Ok(f) = check_strict(text) {
        return f;
    }
    let Ok((schema, keys)) = parse(text) else {
        return Vec::new();
    };
    let Some(Value::Object(props)) = schema.get("properties") else {
        return Vec::new();
    };
    let mut fields: Vec<(String, Shape)> = props
        .iter()
        .map(|(n, p)| (n.clone(), loose_shape(p, 0)))
        .collect();
    reorder(&mut fields, &keys);
    fields
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn triage() -> Value {
        json!({
            "type": "object",
            "properties": {
                "kind": {"type": "string", "enum": ["bug", "feature", "question"]},
                "components": {"type": "array", "items": {"type": "string"}},
                "severity": {"type": "object", "properties": {
                    "level": {"type": "integer"},
                    "reason": {"type": ["string", "null"]}
                }, "required": ["level", "reason"], "additionalProperties": false},
                "confidence": {"type": "number", "description": "0 to 1"},
                "needs_bundle": {"type": "boolean"}
            },
            "required": ["kind", "components", "severity", "confidence", "needs_bundle"],
            "additionalProperties": false
        })
    }

    /// The triage schema as written (its properties not in alphabetical order).
    const TRIAGE: &str = r#"{"type": "object", "properties": {
        "kind": {"type": "string", "enum": ["bug", "feature", "question"]},
        "components": {"type": "array", "items": {"type": "string"}},
        "severity": {"type": "object", "properties": {
            "level": {"type": "integer"}, "reason": {"type": ["string", "null"]}},
            "required": ["level", "reason"], "additionalProperties": false},
        "confidence": {"type": "number", "description": "0 to 1"},
        "needs_bundle": {"type": "boolean"}},
      "required": ["kind", "components", "severity", "confidence", "needs_bundle"],
      "additionalProperties": false}"#;

    fn check(v: &Value) -> Result<Vec<(String, Shape)>, String> {
        check_strict(&v.to_string())
    }

    #[test]
    fn a_strict_schema_gives_typed_columns_in_the_order_written() {
        assert_eq!(serde_json::from_str::<Value>(TRIAGE).unwrap(), triage());
        let cols = check_strict(TRIAGE).unwrap();
        let sql: Vec<String> = cols
            .iter()
            .map(|(n, s)| format!("{n} {}", s.sql()))
            .collect();
        assert_eq!(
            sql,
            [
                "kind VARCHAR",
                "components VARCHAR[]",
                "severity STRUCT(\"level\" BIGINT, \"reason\" VARCHAR)",
                "confidence DOUBLE",
                "needs_bundle BOOLEAN"
            ]
        );
        assert_eq!(result_shape(TRIAGE), cols);
        // Nested objects keep their order too.
        let nested = r#"{"type":"object","properties":{"o":{"type":"array","items":{"type":"object",
            "properties":{"z":{"type":"string"},"a":{"type":"string"}},"required":["z","a"],
            "additionalProperties":false}}},"required":["o"],"additionalProperties":false}"#;
        assert_eq!(
            check_strict(nested).unwrap()[0].1.sql(),
            "STRUCT(\"z\" VARCHAR, \"a\" VARCHAR)[]"
        );
        // A stored schema outside the subset still gives columns, by its types.
        let loose = r#"{"type":"object","properties":{"b":{"type":"integer","minimum":1},"a":{"anyOf":[]}}}"#;
        let cols = result_shape(loose);
        assert_eq!(
            cols,
            [
                ("b".to_string(), Shape::Int),
                ("a".to_string(), Shape::Text)
            ]
        );
    }

    #[test]
    fn product_labeling_schema_is_strict() {
        let p = super::super::processor_by_name("product-labeling").unwrap();
        let cols = check_strict(p.schema_text()).unwrap();
        let names: Vec<&str> = cols.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "summary",
                "root_cause_analysis",
                "current_labels_assessment",
                "recommended_labels",
                "confidence"
            ]
        );
        assert_eq!(cols.len(), 5);
        assert_eq!(
            cols[3].1.sql(),
            "STRUCT(\"label\" VARCHAR, \"reasoning\" VARCHAR)[]"
        );
    }

    #[test]
    fn refusals_name_the_place_and_the_reason() {
        let refused = |edit: fn(&mut Value)| {
            let mut s = triage();
            edit(&mut s);
            check(&s).unwrap_err()
        };
        let e = refused(|s| s["properties"]["confidence"]["minimum"] = json!(0));
        assert!(
            e.contains("$.confidence uses \"minimum\"") && e.contains("Anthropic"),
            "{e}"
        );
        let e = refused(|s| s["properties"]["severity"]["additionalProperties"] = json!(true));
        assert!(
            e.contains("$.severity needs \"additionalProperties\": false"),
            "{e}"
        );
        let e = refused(|s| s["required"] = json!(["kind"]));
        assert!(
            e.contains("must list every property") && e.contains("components"),
            "{e}"
        );
        let e = refused(|s| s["properties"]["kind"] = json!({"anyOf": [{"type": "string"}]}));
        assert!(e.contains("\"anyOf\""), "{e}");
        let e = refused(|s| s["properties"]["components"] = json!({"type": "array"}));
        assert!(e.contains("without \"items\""), "{e}");
        let e = refused(|s| s["properties"]["kind"]["enum"] = json!([1, 2]));
        assert!(e.contains("not a string"), "{e}");
        let e = refused(|s| s["type"] = json!("array"));
        assert!(e.contains("root must be"), "{e}");
        // Not JSON Schema at all: the validator crate's meta-schema says so.
        let e = refused(|s| s["properties"]["kind"]["type"] = json!("text"));
        assert!(e.contains("not valid JSON Schema"), "{e}");
        let e = refused(|s| s["properties"]["kind"] = json!({"description": "x"}));
        assert!(e.contains("$.kind has no \"type\""), "{e}");
        // Too deep for OpenAI.
        let mut deep = json!({"type": "string"});
        for _ in 0..11 {
            deep = json!({"type": "object", "properties": {"a": deep}, "required": ["a"], "additionalProperties": false});
        }
        assert!(check(&deep).unwrap_err().contains("10 levels"));
        assert!(check_strict("{").unwrap_err().contains("not valid JSON"));
    }
}
