//! Structural schemas of CustomResourceDefinitions (`spec.versions[*].schema.openAPIV3Schema`)
//! applied to custom resources the way upstream's apiextensions-apiserver applies them: pruning of
//! undeclared fields (and of nulls a field may not hold), defaulting, and validation with
//! kube-openapi's messages converted to field errors, plus the embedded-resource type meta and
//! `x-kubernetes-list-type` checks that follow it.
//!
//! Entry point: [`Schema::new`] once per CRD version, then, per write, [`Schema::prune`],
//! [`Schema::default`] and [`Schema::validate`] in that order, as upstream's decoder, defaulter and
//! strategy do. The root's `apiVersion`, `kind` and `metadata` are left to the generic object
//! machinery: never pruned, defaulted into or validated here.
//!
//! How values print in messages follows upstream's `field.Error`: strings quoted as Go's `%q`,
//! integers and booleans bare, floats as Go's `%v` (`1.5`, `1e+06`), objects and arrays as Go's
//! `encoding/json` renders them (sorted keys, `<>&` escaped).

mod defaults;
mod embedded;
mod formats;
mod golang;
mod lists;
mod pattern;
mod prune;
mod validate;

use std::collections::BTreeMap;

use serde_json::Value;

use crate::validation::FieldError;

/// Schemas nested deeper than this are refused; every walk over an object follows the schema, so
/// this also bounds the recursion over objects.
const MAX_DEPTH: usize = 100;

/// The OpenAPI v3 types a CRD schema may name (sorted, as upstream lists them).
const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// One CRD version's schema, compiled once (its `pattern`s compiled up front).
#[derive(Debug, Clone)]
pub struct Schema {
    root: Node,
}

/// One schema node: its structure (properties, items, additionalProperties) drives pruning and
/// defaulting; the rest are value validations.
#[derive(Debug, Clone, Default)]
struct Node {
    /// The types a value may have as kube-openapi sees them: `[type]`, `[integer, string]` for
    /// `x-kubernetes-int-or-string`, or none.
    types: Vec<String>,
    nullable: bool,
    /// `format` after upstream strips the ones it does not check for the node's type.
    format: Option<String>,
    maximum: Option<f64>,
    exclusive_maximum: bool,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    multiple_of: Option<f64>,
    max_length: Option<i64>,
    min_length: Option<i64>,
    pattern: Option<pattern::Pattern>,
    max_items: Option<i64>,
    min_items: Option<i64>,
    unique_items: bool,
    max_properties: Option<i64>,
    min_properties: Option<i64>,
    required: Vec<String>,
    /// `enum`; empty means no constraint, as upstream treats it.
    allowed: Vec<Value>,
    /// `default`, absent when the schema states none or `null`.
    default: Option<Value>,
    properties: BTreeMap<String, Node>,
    additional: Option<Additional>,
    items: Option<Box<Node>>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
    preserve_unknown: bool,
    embedded: bool,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
}

/// `additionalProperties`: a schema for every undeclared key, or a bare boolean.
#[derive(Debug, Clone)]
enum Additional {
    Allows(bool),
    Schema(Box<Node>),
}

impl Node {
    /// The schema of key `key` of an object this node describes (`None`: no schema, which prunes
    /// everything below it).
    fn field(&self, key: &str) -> Option<&Node> {
        match self.properties.get(key) {
            Some(property) => Some(property),
            None => self.additional_schema(),
        }
    }

    fn additional_schema(&self) -> Option<&Node> {
        match &self.additional {
            Some(Additional::Schema(schema)) => Some(schema),
            _ => None,
        }
    }
}

/// The keys a resource (the root, or an `x-kubernetes-embedded-resource`) keeps for the generic
/// machinery.
fn is_type_or_object_meta(key: &str) -> bool {
    matches!(key, "apiVersion" | "kind" | "metadata")
}

impl Schema {
    /// Compiles `schema` (an `openAPIV3Schema`). Errors name paths relative to the schema root
    /// (`properties[spec].properties[x].pattern`) with upstream's CRD validation messages.
    pub fn new(schema: &Value) -> Result<Schema, Vec<FieldError>> {
        let (compiled, errors) = Schema::compile(schema);
        if errors.is_empty() { Ok(compiled) } else { Err(errors) }
    }

    /// The compiled schema however broken, and what is wrong with it.
    fn compile(schema: &Value) -> (Schema, Vec<FieldError>) {
        let mut errors = Errors::default();
        let root = compile(schema, "", 0, &mut errors);
        errors.schema.append(&mut errors.structural);
        (Schema { root }, errors.schema)
    }

    /// Removes the fields the schema does not declare and returns their paths, sorted, as
    /// upstream names them in `unknown field "spec.foo"` (`spec.items[0].bar`, `spec.map.key.x`).
    /// Nulls a field may not hold and has no default for go too, unreported, as upstream drops
    /// them while decoding.
    pub fn prune(&self, object: &mut Value) -> Vec<String> {
        let mut unknown = prune::prune(&self.root, object);
        prune::nulls(&self.root, object);
        unknown.sort();
        unknown
    }

    /// Applies the schema's `default`s, top-down: a missing field (or a null one that may not be
    /// null) gets a copy of its default, and defaults under `items` and `additionalProperties`
    /// apply to every element.
    pub fn default(&self, object: &mut Value) {
        defaults::apply(&self.root, object, 0);
    }

    /// Validates `object`: the schema's value validations (kube-openapi's, in its order), then the
    /// type meta of embedded resources, then `x-kubernetes-list-type` uniqueness.
    pub fn validate(&self, object: &Value) -> Vec<FieldError> {
        let mut errors = validate::validate(&self.root, object);
        embedded::validate(&self.root, object, &mut errors);
        lists::validate(&self.root, object, &mut errors);
        errors
    }
}

/// Problems of a schema: upstream reports its CRD validation's first, then the structural ones
/// (unparseable patterns).
#[derive(Default)]
struct Errors {
    schema: Vec<FieldError>,
    structural: Vec<FieldError>,
}

fn at(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

fn invalid(field: String, value: &str, detail: &str) -> FieldError {
    FieldError {
        field,
        reason: "FieldValueInvalid",
        detail: format!("Invalid value: {value}: {detail}"),
    }
}

fn forbidden(field: String, detail: &str) -> FieldError {
    FieldError { field, reason: "FieldValueForbidden", detail: format!("Forbidden: {detail}") }
}

fn required(field: String, detail: &str) -> FieldError {
    FieldError { field, reason: "FieldValueRequired", detail: format!("Required value: {detail}") }
}

fn not_supported(field: String, value: &str, supported: &[&str]) -> FieldError {
    let quoted: Vec<String> = supported.iter().map(|s| golang::quote(s)).collect();
    FieldError {
        field,
        reason: "FieldValueNotSupported",
        detail: format!(
            "Unsupported value: {}: supported values: {}",
            golang::quote(value),
            quoted.join(", ")
        ),
    }
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A count (`maxLength`, `minItems`, ...); upstream's are int64.
fn count(map: &serde_json::Map<String, Value>, key: &str) -> Option<i64> {
    let value = map.get(key)?;
    value.as_i64().or_else(|| value.as_u64().map(|_| i64::MAX))
}

fn compile(schema: &Value, path: &str, depth: usize, errors: &mut Errors) -> Node {
    if depth > MAX_DEPTH {
        errors.schema.push(forbidden(
            path.to_owned(),
            &format!("schemas may not be nested more than {MAX_DEPTH} levels deep"),
        ));
        return Node::default();
    }
    let Some(map) = schema.as_object() else {
        errors.schema.push(invalid(
            path.to_owned(),
            &golang::json(schema),
            "must be a schema object",
        ));
        return Node::default();
    };
    let text = |key: &str| map.get(key).and_then(Value::as_str);
    let number = |key: &str| map.get(key).and_then(Value::as_f64);
    let flag = |key: &str| map.get(key).and_then(Value::as_bool).unwrap_or(false);

    let kind = text("type").unwrap_or_default();
    let int_or_string = flag("x-kubernetes-int-or-string");
    let types = if int_or_string {
        vec!["integer".to_owned(), "string".to_owned()]
    } else if kind.is_empty() {
        Vec::new()
    } else {
        vec![kind.to_owned()]
    };
    let mut node = Node {
        format: text("format").and_then(|f| formats::supported(f, &types)),
        types,
        nullable: flag("nullable"),
        maximum: number("maximum"),
        exclusive_maximum: flag("exclusiveMaximum"),
        minimum: number("minimum"),
        exclusive_minimum: flag("exclusiveMinimum"),
        multiple_of: number("multipleOf"),
        max_length: count(map, "maxLength"),
        min_length: count(map, "minLength"),
        max_items: count(map, "maxItems"),
        min_items: count(map, "minItems"),
        unique_items: flag("uniqueItems"),
        max_properties: count(map, "maxProperties"),
        min_properties: count(map, "minProperties"),
        required: strings(map.get("required")),
        allowed: map.get("enum").and_then(Value::as_array).cloned().unwrap_or_default(),
        default: map.get("default").filter(|d| !d.is_null()).cloned(),
        preserve_unknown: flag("x-kubernetes-preserve-unknown-fields"),
        embedded: flag("x-kubernetes-embedded-resource"),
        list_type: text("x-kubernetes-list-type").map(str::to_owned),
        list_map_keys: strings(map.get("x-kubernetes-list-map-keys")),
        ..Node::default()
    };

    // Upstream's CRD validation, in its order.
    match map.get("type") {
        Some(Value::String(kind)) if !kind.is_empty() && !TYPES.contains(&kind.as_str()) => {
            errors.schema.push(not_supported(at(path, "type"), kind, TYPES));
        }
        Some(other @ (Value::Array(_) | Value::Object(_) | Value::Number(_) | Value::Bool(_))) => {
            errors.schema.push(not_supported(at(path, "type"), &golang::json(other), TYPES));
        }
        _ => {}
    }
    if text("id").is_some_and(|id| !id.is_empty()) {
        errors.schema.push(forbidden(at(path, "id"), "id is not supported"));
    }
    for key in ["additionalItems", "patternProperties", "definitions", "dependencies", "$ref"] {
        let present = match map.get(key) {
            None | Some(Value::Null) => false,
            Some(Value::Object(m)) if matches!(key, "patternProperties" | "definitions") => {
                !m.is_empty()
            }
            Some(_) => true,
        };
        if present {
            errors.schema.push(forbidden(at(path, key), &format!("{key} is not supported")));
        }
    }
    if kind == "null" {
        errors.schema.push(forbidden(
            at(path, "type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if matches!(map.get("items"), Some(Value::Array(_))) {
        errors
            .schema
            .push(forbidden(at(path, "items"), "items must be a schema object and not an array"));
    }
    if node.unique_items {
        errors.schema.push(forbidden(
            at(path, "uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }

    let has_properties =
        map.get("properties").and_then(Value::as_object).is_some_and(|p| !p.is_empty());
    match map.get("additionalProperties") {
        Some(Value::Bool(allows)) => {
            if has_properties && !allows {
                errors.schema.push(forbidden(
                    at(path, "additionalProperties"),
                    "additionalProperties and properties are mutual exclusive",
                ));
            }
            node.additional = Some(Additional::Allows(*allows));
        }
        Some(schema @ Value::Object(_)) => {
            if has_properties {
                errors.schema.push(forbidden(
                    at(path, "additionalProperties"),
                    "additionalProperties and properties are mutual exclusive",
                ));
            }
            let child = compile(schema, &at(path, "additionalProperties"), depth + 1, errors);
            node.additional = Some(Additional::Schema(Box::new(child)));
        }
        _ => {}
    }
    if let Some(Value::Object(properties)) = map.get("properties") {
        for (name, schema) in properties {
            let child =
                compile(schema, &at(path, &format!("properties[{name}]")), depth + 1, errors);
            node.properties.insert(name.clone(), child);
        }
    }
    if let Some(not) = map.get("not") {
        node.not = Some(Box::new(compile(not, &at(path, "not"), depth + 1, errors)));
    }
    for (key, list) in
        [("allOf", &mut node.all_of), ("oneOf", &mut node.one_of), ("anyOf", &mut node.any_of)]
    {
        if let Some(Value::Array(schemas)) = map.get(key) {
            for (i, schema) in schemas.iter().enumerate() {
                list.push(compile(schema, &at(path, &format!("{key}[{i}]")), depth + 1, errors));
            }
        }
    }
    if let Some(items @ Value::Object(_)) = map.get("items") {
        node.items = Some(Box::new(compile(items, &at(path, "items"), depth + 1, errors)));
    }

    if map.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errors.schema.push(invalid(
            at(path, "x-kubernetes-preserve-unknown-fields"),
            "false",
            "must be true or undefined",
        ));
    }
    if let Some(map_type) = text("x-kubernetes-map-type") {
        if kind.is_empty() {
            errors.schema.push(required(
                at(path, "type"),
                "must be object if x-kubernetes-map-type is specified",
            ));
        } else if kind != "object" {
            errors.schema.push(invalid(
                at(path, "type"),
                &golang::quote(kind),
                "must be object if x-kubernetes-map-type is specified",
            ));
        }
        if map_type != "atomic" && map_type != "granular" {
            errors.schema.push(not_supported(
                at(path, "x-kubernetes-map-type"),
                map_type,
                &["atomic", "granular"],
            ));
        }
    }
    list_type_errors(&node, kind, map, path, errors);

    if let Some(source) = text("pattern") {
        match pattern::Pattern::new(source) {
            Ok(compiled) => node.pattern = Some(compiled),
            Err(e) => errors.structural.push(invalid(
                at(path, "pattern"),
                &golang::quote(source),
                &format!("must be a valid regular expression, but isn't: {e}"),
            )),
        }
    }
    node
}

/// Upstream's rules for `x-kubernetes-list-type` and `x-kubernetes-list-map-keys`.
fn list_type_errors(
    node: &Node,
    kind: &str,
    map: &serde_json::Map<String, Value>,
    path: &str,
    errors: &mut Errors,
) {
    let list_type = node.list_type.as_deref();
    if list_type.is_some() && kind != "array" {
        if kind.is_empty() {
            errors.schema.push(required(
                at(path, "type"),
                "must be array if x-kubernetes-list-type is specified",
            ));
        } else {
            errors.schema.push(invalid(
                at(path, "type"),
                &golang::quote(kind),
                "must be array if x-kubernetes-list-type is specified",
            ));
        }
    }
    if let Some(list_type) = list_type
        && !matches!(list_type, "atomic" | "set" | "map")
    {
        errors.schema.push(not_supported(
            at(path, "x-kubernetes-list-type"),
            list_type,
            &["atomic", "set", "map"],
        ));
    }
    if !node.list_map_keys.is_empty() {
        match list_type {
            None => errors.schema.push(required(
                at(path, "x-kubernetes-list-type"),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
            Some("map") => {}
            Some(other) => errors.schema.push(invalid(
                at(path, "x-kubernetes-list-type"),
                &golang::quote(other),
                "must be map if x-kubernetes-list-map-keys is non-empty",
            )),
        }
    }
    if list_type != Some("map") {
        return;
    }
    if node.list_map_keys.is_empty() {
        errors.schema.push(required(
            at(path, "x-kubernetes-list-map-keys"),
            "must not be empty if x-kubernetes-list-type is map",
        ));
    }
    let Some(items) = map.get("items") else {
        errors.schema.push(required(
            at(path, "items"),
            "must have a schema if x-kubernetes-list-type is map",
        ));
        return;
    };
    let item_type = items.get("type").and_then(Value::as_str).unwrap_or_default();
    if item_type != "object" {
        errors.schema.push(invalid(
            at(path, "items.type"),
            &golang::quote(item_type),
            "must be object if parent array's x-kubernetes-list-type is map",
        ));
        return;
    }
    let keys_json = golang::json(&Value::from(node.list_map_keys.clone()));
    let mut seen = Vec::new();
    for key in &node.list_map_keys {
        match items.get("properties").and_then(|p| p.get(key)) {
            Some(property) => {
                let property_type = property.get("type").and_then(Value::as_str);
                if matches!(property_type, Some("array" | "object")) {
                    errors.schema.push(invalid(
                        at(path, &format!("items.properties[{key}].type")),
                        &golang::quote(item_type),
                        "must be a scalar type if parent array's x-kubernetes-list-type is map",
                    ));
                }
            }
            None => errors.schema.push(invalid(
                at(path, "x-kubernetes-list-map-keys"),
                &keys_json,
                "entries must all be names of item properties",
            )),
        }
        if seen.contains(&key) {
            errors.schema.push(invalid(
                at(path, "x-kubernetes-list-map-keys"),
                &keys_json,
                "must not contain duplicate entries",
            ));
        }
        seen.push(key);
    }
}

#[cfg(test)]
mod tests;
