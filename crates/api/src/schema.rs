//! Structural schemas of CustomResourceDefinitions (`openAPIV3Schema`): pruning of the fields a
//! schema does not declare, defaulting, and validation with the messages upstream's
//! apiextensions-apiserver gives (kube-openapi's validators, converted to field errors).
//!
//! Values in `Invalid value: …` print as upstream's field errors print them for scalars (strings
//! quoted, numbers and booleans bare); objects and arrays print as JSON (upstream prints Go's
//! `%#v` of a map there).

use std::collections::BTreeMap;

use regex::Regex;
use serde_json::{Map, Value};

use crate::validation::FieldError;

/// Deeper schemas or objects than this are refused rather than walked.
const MAX_DEPTH: usize = 64;

/// One CRD version's schema, compiled once.
#[derive(Debug, Clone)]
pub struct Schema {
    root: Node,
}

#[derive(Debug, Clone, Default)]
struct Node {
    kind: Option<String>,
    nullable: bool,
    properties: BTreeMap<String, Node>,
    additional: Option<Box<Node>>,
    items: Option<Box<Node>>,
    required: Vec<String>,
    allowed: Option<Vec<Value>>,
    pattern: Option<(String, Regex)>,
    format: Option<String>,
    minimum: Option<f64>,
    maximum: Option<f64>,
    exclusive_minimum: bool,
    exclusive_maximum: bool,
    multiple_of: Option<f64>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    default: Option<Value>,
    preserve_unknown: bool,
    embedded: bool,
    int_or_string: bool,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
}

const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

fn invalid(field: &str, detail: String) -> FieldError {
    FieldError { field: field.to_owned(), reason: "FieldValueInvalid", detail }
}

impl Node {
    fn compile(schema: &Value, path: &str, depth: usize, errors: &mut Vec<FieldError>) -> Node {
        let at = |key: &str| if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") };
        if depth > MAX_DEPTH {
            errors.push(invalid(
                path,
                "Invalid value: \"...\": the schema is nested too deeply".into(),
            ));
            return Node::default();
        }
        let Some(map) = schema.as_object() else {
            errors.push(invalid(path, "Invalid value: \"...\": must be an object".into()));
            return Node::default();
        };
        let text = |key: &str| map.get(key).and_then(Value::as_str).map(str::to_owned);
        let number = |key: &str| map.get(key).and_then(Value::as_f64);
        let count = |key: &str| map.get(key).and_then(Value::as_u64);
        let flag = |key: &str| map.get(key).and_then(Value::as_bool).unwrap_or(false);
        let mut node = Node {
            kind: text("type").filter(|t| !t.is_empty()),
            nullable: flag("nullable"),
            format: text("format").filter(|f| !f.is_empty()),
            minimum: number("minimum"),
            maximum: number("maximum"),
            exclusive_minimum: flag("exclusiveMinimum"),
            exclusive_maximum: flag("exclusiveMaximum"),
            multiple_of: number("multipleOf"),
            min_length: count("minLength"),
            max_length: count("maxLength"),
            min_items: count("minItems"),
            max_items: count("maxItems"),
            unique_items: flag("uniqueItems"),
            min_properties: count("minProperties"),
            max_properties: count("maxProperties"),
            default: map.get("default").cloned(),
            preserve_unknown: flag("x-kubernetes-preserve-unknown-fields"),
            embedded: flag("x-kubernetes-embedded-resource"),
            int_or_string: flag("x-kubernetes-int-or-string"),
            list_type: text("x-kubernetes-list-type"),
            allowed: map.get("enum").and_then(Value::as_array).cloned(),
            ..Node::default()
        };
        if let Some(kind) = &node.kind
            && !TYPES.contains(&kind.as_str())
        {
            errors.push(FieldError {
                field: at("type"),
                reason: "FieldValueNotSupported",
                detail: format!(
                    "Unsupported value: \"{kind}\": supported values: {}",
                    TYPES.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ")
                ),
            });
        }
        node.required = strings(map.get("required"));
        node.list_map_keys = strings(map.get("x-kubernetes-list-map-keys"));
        if let Some(pattern) = text("pattern") {
            match Regex::new(&pattern) {
                Ok(regex) => node.pattern = Some((pattern, regex)),
                Err(e) => errors.push(invalid(
                    &at("pattern"),
                    format!("Invalid value: \"{pattern}\": must be a valid regular expression, but isn't: {e}"),
                )),
            }
        }
        if let Some(Value::Object(properties)) = map.get("properties") {
            for (name, schema) in properties {
                let child =
                    Node::compile(schema, &at(&format!("properties[{name}]")), depth + 1, errors);
                node.properties.insert(name.clone(), child);
            }
        }
        match map.get("additionalProperties") {
            Some(schema @ Value::Object(_)) => {
                node.additional = Some(Box::new(Node::compile(
                    schema,
                    &at("additionalProperties"),
                    depth + 1,
                    errors,
                )));
            }
            // `true` keeps every key with no schema for its value.
            Some(Value::Bool(true)) => {
                node.additional =
                    Some(Box::new(Node { preserve_unknown: true, ..Node::default() }));
            }
            _ => {}
        }
        if let Some(items) = map.get("items") {
            node.items = Some(Box::new(Node::compile(items, &at("items"), depth + 1, errors)));
        }
        for (key, list) in
            [("allOf", &mut node.all_of), ("anyOf", &mut node.any_of), ("oneOf", &mut node.one_of)]
        {
            if let Some(Value::Array(schemas)) = map.get(key) {
                for (i, schema) in schemas.iter().enumerate() {
                    list.push(Node::compile(
                        schema,
                        &at(&format!("{key}[{i}]")),
                        depth + 1,
                        errors,
                    ));
                }
            }
        }
        if let Some(not) = map.get("not") {
            node.not = Some(Box::new(Node::compile(not, &at("not"), depth + 1, errors)));
        }
        node
    }

    /// Whether `key` of an object this node describes is declared.
    fn child(&self, key: &str) -> Option<&Node> {
        self.properties.get(key).or(self.additional.as_deref())
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// How upstream's field errors print a value.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

/// The type name kube-openapi reports for a value that has the wrong one.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integer(value: &Value) -> bool {
    matches!(value, Value::Number(n) if n.is_i64() || n.is_u64())
}

fn has_type(kind: &str, value: &Value) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => is_integer(value),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        _ => true,
    }
}

/// Go's `%v` of a float64 bound (`10`, `1.5`).
fn bound(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

impl Schema {
    /// Compiles `schema` (an `openAPIV3Schema`). Errors name paths relative to the schema root
    /// (`properties[spec].properties[x].pattern`).
    pub fn new(schema: &Value) -> Result<Schema, Vec<FieldError>> {
        let mut errors = Vec::new();
        let root = Node::compile(schema, "", 0, &mut errors);
        if errors.is_empty() { Ok(Schema { root }) } else { Err(errors) }
    }

    /// Removes the fields the schema does not declare and returns their paths (`spec.foo`,
    /// `spec.items[0].bar`). `apiVersion`, `kind` and `metadata` stay at the root and in
    /// embedded resources; `x-kubernetes-preserve-unknown-fields` keeps unknown fields.
    pub fn prune(&self, object: &mut Value) -> Vec<String> {
        let mut unknown = Vec::new();
        prune(&self.root, object, "", true, 0, &mut unknown);
        unknown
    }

    /// Fills in the schema's `default`s where fields are missing (or null and not nullable).
    pub fn default(&self, object: &mut Value) {
        default(&self.root, object, 0);
    }

    /// Validates `object` against the schema; the root's apiVersion, kind and metadata are the
    /// generic machinery's to check.
    pub fn validate(&self, object: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        validate(&self.root, object, "", 0, &mut errors);
        errors
    }
}

fn prune(
    node: &Node,
    value: &mut Value,
    path: &str,
    resource: bool,
    depth: usize,
    unknown: &mut Vec<String>,
) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let kept_meta =
                    resource && matches!(key.as_str(), "apiVersion" | "kind" | "metadata");
                let field = child_path(path, &key);
                match node.child(&key) {
                    Some(child) if !kept_meta => {
                        if let Some(v) = map.get_mut(&key) {
                            prune(child, v, &field, child.embedded, depth + 1, unknown);
                        }
                    }
                    _ if kept_meta || node.preserve_unknown => {}
                    _ => {
                        map.remove(&key);
                        unknown.push(field);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &node.items {
                for (i, v) in items.iter_mut().enumerate() {
                    prune(item, v, &format!("{path}[{i}]"), item.embedded, depth + 1, unknown);
                }
            }
        }
        _ => {}
    }
}

fn default(node: &Node, value: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, child) in &node.properties {
                let missing = match map.get(key) {
                    None => true,
                    Some(Value::Null) => !child.nullable,
                    Some(_) => false,
                };
                if missing && let Some(d) = &child.default {
                    map.insert(key.clone(), d.clone());
                }
            }
            for (key, v) in map.iter_mut() {
                if let Some(child) = node.child(key) {
                    default(child, v, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &node.items {
                for v in items {
                    default(item, v, depth + 1);
                }
            }
        }
        _ => {}
    }
}

fn validate(node: &Node, value: &Value, path: &str, depth: usize, errors: &mut Vec<FieldError>) {
    if depth > MAX_DEPTH {
        errors
            .push(invalid(path, "Invalid value: \"...\": the object is nested too deeply".into()));
        return;
    }
    let name = if path.is_empty() { "body".to_owned() } else { path.to_owned() };
    let type_error = |errors: &mut Vec<FieldError>, wanted: &str, actual: &str| {
        errors.push(FieldError {
            field: path.to_owned(),
            reason: "FieldValueTypeInvalid",
            detail: format!(
                "Invalid value: \"{actual}\": {name} in body must be of type {wanted}: \"{actual}\""
            ),
        });
    };
    if value.is_null() && (node.nullable || node.kind.is_none() && !node.int_or_string) {
        return;
    }
    if node.int_or_string {
        if !is_integer(value) && !value.is_string() {
            type_error(errors, "integer,string", type_name(value));
            return;
        }
    } else if let Some(kind) = &node.kind
        && !has_type(kind, value)
    {
        type_error(errors, kind, type_name(value));
        return;
    }
    let fail = |errors: &mut Vec<FieldError>, message: String| {
        errors.push(invalid(
            path,
            format!("Invalid value: {}: {name} in body {message}", shown(value)),
        ));
    };
    if let Some(allowed) = &node.allowed
        && !allowed.contains(value)
    {
        errors.push(FieldError {
            field: path.to_owned(),
            reason: "FieldValueNotSupported",
            detail: format!(
                "Unsupported value: {}: supported values: {}",
                shown(value),
                allowed.iter().map(shown).collect::<Vec<_>>().join(", ")
            ),
        });
    }
    match value {
        Value::String(s) => {
            let chars = s.chars().count() as u64;
            if let Some(max) = node.max_length
                && chars > max
            {
                errors.push(FieldError {
                    field: path.to_owned(),
                    reason: "FieldValueTooLong",
                    detail: format!("Too long: may not be more than {max} bytes"),
                });
            }
            if let Some(min) = node.min_length
                && chars < min
            {
                fail(errors, format!("should be at least {min} chars long"));
            }
            if let Some((pattern, regex)) = &node.pattern
                && !regex.is_match(s)
            {
                fail(errors, format!("should match '{pattern}'"));
            }
            if let Some(format) = &node.format
                && !format_ok(format, s)
            {
                errors.push(FieldError {
                    field: path.to_owned(),
                    reason: "FieldValueTypeInvalid",
                    detail: format!(
                        "Invalid value: {}: {name} in body must be of type {format}: {}",
                        shown(value),
                        shown(value)
                    ),
                });
            }
        }
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or_default();
            if let Some(max) = node.maximum {
                if node.exclusive_maximum && x >= max {
                    fail(errors, format!("should be less than {}", bound(max)));
                } else if x > max {
                    fail(errors, format!("should be less than or equal to {}", bound(max)));
                }
            }
            if let Some(min) = node.minimum {
                if node.exclusive_minimum && x <= min {
                    fail(errors, format!("should be greater than {}", bound(min)));
                } else if x < min {
                    fail(errors, format!("should be greater than or equal to {}", bound(min)));
                }
            }
            if let Some(m) = node.multiple_of
                && m != 0.0
                && (x / m).fract() != 0.0
            {
                fail(errors, format!("should be a multiple of {}", bound(m)));
            }
        }
        Value::Array(items) => {
            let len = items.len() as u64;
            if let Some(max) = node.max_items
                && len > max
            {
                errors.push(FieldError {
                    field: path.to_owned(),
                    reason: "FieldValueTooMany",
                    detail: format!("Too many: {len}: must have at most {max} items"),
                });
            }
            if let Some(min) = node.min_items
                && len < min
            {
                fail(errors, format!("should have at least {min} items"));
            }
            if node.unique_items && has_duplicates(items) {
                fail(errors, "shouldn't contain duplicates".into());
            }
            list_duplicates(node, items, path, errors);
            if let Some(item) = &node.items {
                for (i, v) in items.iter().enumerate() {
                    validate(item, v, &format!("{path}[{i}]"), depth + 1, errors);
                }
            }
        }
        Value::Object(map) => {
            // The root's type meta and metadata are the generic machinery's.
            let generic =
                |key: &str| depth == 0 && matches!(key, "apiVersion" | "kind" | "metadata");
            for key in node.required.iter().filter(|k| !generic(k)) {
                if map.get(key).is_none_or(Value::is_null) {
                    errors.push(FieldError {
                        field: child_path(path, key),
                        reason: "FieldValueRequired",
                        detail: "Required value".into(),
                    });
                }
            }
            let len = map.len() as u64;
            if let Some(max) = node.max_properties
                && len > max
            {
                errors.push(FieldError {
                    field: path.to_owned(),
                    reason: "FieldValueTooMany",
                    detail: format!("Too many: {len}: must have at most {max} items"),
                });
            }
            if let Some(min) = node.min_properties
                && len < min
            {
                fail(errors, format!("should have at least {min} properties"));
            }
            for (key, v) in map.iter().filter(|(k, _)| !generic(k)) {
                if let Some(child) = node.child(key) {
                    validate(child, v, &child_path(path, key), depth + 1, errors);
                }
            }
        }
        _ => {}
    }
    for sub in &node.all_of {
        validate(sub, value, path, depth + 1, errors);
    }
    let passes = |sub: &Node| {
        let mut found = Vec::new();
        validate(sub, value, path, depth + 1, &mut found);
        found.is_empty()
    };
    if !node.any_of.is_empty() && !node.any_of.iter().any(passes) {
        fail(errors, "must validate at least one schema (anyOf)".into());
    }
    if !node.one_of.is_empty() && node.one_of.iter().filter(|s| passes(s)).count() != 1 {
        fail(errors, "must validate one and only one schema (oneOf)".into());
    }
    if let Some(not) = &node.not
        && passes(not)
    {
        fail(errors, "must not validate the schema (not)".into());
    }
}

fn has_duplicates(items: &[Value]) -> bool {
    items.iter().enumerate().any(|(i, a)| items[..i].contains(a))
}

/// `x-kubernetes-list-type: set` items and `map` keys must be unique.
fn list_duplicates(node: &Node, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
    let key_of = |item: &Value| -> Value {
        let mut keys = Map::new();
        for k in &node.list_map_keys {
            if let Some(v) = item.get(k) {
                keys.insert(k.clone(), v.clone());
            }
        }
        Value::Object(keys)
    };
    let identities: Vec<Value> = match node.list_type.as_deref() {
        Some("set") => items.to_vec(),
        Some("map") if !node.list_map_keys.is_empty() => items.iter().map(key_of).collect(),
        _ => return,
    };
    for (i, identity) in identities.iter().enumerate() {
        if identities[..i].contains(identity) {
            errors.push(FieldError {
                field: format!("{path}[{i}]"),
                reason: "FieldValueDuplicate",
                detail: format!("Duplicate value: {}", shown(identity)),
            });
        }
    }
}

/// The string formats upstream checks for custom resources; others pass.
fn format_ok(format: &str, s: &str) -> bool {
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let date = |t: &str| {
        let parts: Vec<&str> = t.split('-').collect();
        parts.len() == 3
            && parts[0].len() == 4
            && parts[1].len() == 2
            && parts[2].len() == 2
            && parts.iter().all(|p| digits(p))
    };
    match format {
        "date" => date(s),
        "date-time" | "datetime" => {
            let Some((day, time)) = s.split_once(['T', 't', ' ']) else { return false };
            let clock = time.trim_end_matches(['Z', 'z']);
            let clock = clock.split(['+', '-']).next().unwrap_or_default();
            let hms: Vec<&str> = clock.split('.').next().unwrap_or_default().split(':').collect();
            date(day) && hms.len() == 3 && hms.iter().all(|p| p.len() == 2 && digits(p))
        }
        "uuid" => {
            let groups: Vec<&str> = s.split('-').collect();
            groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
                && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
        }
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
        }),
        "byte" => {
            s.len().is_multiple_of(4)
                && s.trim_end_matches('=')
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
        }
        "email" => {
            s.split_once('@').is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests;
