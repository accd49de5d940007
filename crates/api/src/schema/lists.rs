//! `x-kubernetes-list-type` invariants (upstream's `schema/listtype`), checked after the schema:
//! a `set` holds no value twice, a `map`'s items are objects whose `x-kubernetes-list-map-keys`
//! are unique. Only the first repeat of a value is reported.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::embedded::child;
use super::golang::{self, shown};
use super::{Node, is_type_or_object_meta};
use crate::validation::FieldError;

pub(super) fn validate(root: &Node, object: &Value, errors: &mut Vec<FieldError>) {
    if let Value::Object(map) = object {
        object_lists(root, map, "", errors);
    }
}

fn object_lists(schema: &Node, map: &Map<String, Value>, path: &str, errors: &mut Vec<FieldError>) {
    let mut keys: Vec<&String> = map.keys().collect();
    keys.sort();
    if let Some(additional) = schema.additional_schema() {
        for key in &keys {
            if let Some(v) = map.get(key.as_str()) {
                value_lists(additional, v, &format!("{path}[{key}]"), errors);
            }
        }
    }
    for key in keys {
        if path.is_empty() && is_type_or_object_meta(key) {
            continue;
        }
        if let (Some(property), Some(v)) = (schema.properties.get(key), map.get(key)) {
            value_lists(property, v, &child(path, key), errors);
        }
    }
}

fn value_lists(schema: &Node, value: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match value {
        Value::Array(items) => array_lists(schema, items, path, errors),
        Value::Object(map) => object_lists(schema, map, path, errors),
        _ => {}
    }
}

fn duplicate(field: String, value: &Value) -> FieldError {
    FieldError {
        field,
        reason: "FieldValueDuplicate",
        detail: format!("Duplicate value: {}", shown(value)),
    }
}

fn array_lists(schema: &Node, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
    match schema.list_type.as_deref() {
        Some("set") => {
            for i in repeats(items) {
                errors.push(duplicate(format!("{path}[{i}]"), &items[i]));
            }
        }
        Some("map") => map_list(schema, items, path, errors),
        _ => {}
    }
    if let Some(item) = schema.items.as_deref() {
        for (i, v) in items.iter().enumerate() {
            value_lists(item, v, &format!("{path}[{i}]"), errors);
        }
    }
}

/// A list item's identity: scalars by Go type and value, objects and arrays by their JSON
/// (as upstream compares them), a missing map key apart from every value.
fn identity(value: Option<&Value>) -> String {
    match value {
        None => "missing".to_owned(),
        Some(v @ (Value::Array(_) | Value::Object(_))) => format!("compound {}", golang::json(v)),
        Some(Value::Number(n)) => match golang::GoNumber::of(n) {
            golang::GoNumber::Int(i) => format!("int {i}"),
            golang::GoNumber::Float(f) => format!("float {}", f.to_bits()),
        },
        Some(Value::String(s)) => format!("string {s}"),
        Some(Value::Bool(b)) => format!("bool {b}"),
        Some(Value::Null) => "null".to_owned(),
    }
}

/// The indices of the second appearance of each repeated item.
fn repeats(items: &[Value]) -> Vec<usize> {
    let identities: Vec<String> = items.iter().map(|v| identity(Some(v))).collect();
    second_appearances(&identities)
}

fn second_appearances(identities: &[String]) -> Vec<usize> {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    let mut found = Vec::new();
    for (i, id) in identities.iter().enumerate() {
        let times = seen.entry(id.as_str()).or_default();
        *times += 1;
        if *times == 2 {
            found.push(i);
        }
    }
    found
}

fn map_list(schema: &Node, items: &[Value], path: &str, errors: &mut Vec<FieldError>) {
    if let Some((i, item)) = items.iter().enumerate().find(|(_, x)| !x.is_null() && !x.is_object())
    {
        errors.push(FieldError {
            field: format!("{path}[{i}]"),
            reason: "FieldValueInvalid",
            detail: format!(
                "Invalid value: {}: must be an object for an array of list-type map",
                shown(item)
            ),
        });
        return;
    }
    if items.len() <= 1 {
        return;
    }
    if let [key] = schema.list_map_keys.as_slice() {
        let identities: Vec<String> = items.iter().map(|item| identity(item.get(key))).collect();
        for i in second_appearances(&identities) {
            let mut shown_key = Map::new();
            if let Some(v) = items[i].get(key) {
                shown_key.insert(key.clone(), v.clone());
            }
            errors.push(duplicate(format!("{path}[{i}]"), &Value::Object(shown_key)));
        }
        return;
    }
    let keys: Vec<Value> = items
        .iter()
        .map(|item| {
            let mut key = Map::new();
            for name in &schema.list_map_keys {
                if let Some(v) = item.get(name) {
                    key.insert(name.clone(), v.clone());
                }
            }
            Value::Object(key)
        })
        .collect();
    let identities: Vec<String> = keys.iter().map(|k| identity(Some(k))).collect();
    for i in second_appearances(&identities) {
        errors.push(duplicate(format!("{path}[{i}]"), &keys[i]));
    }
}
