//! Defaulting (upstream's `schema/defaulting`): top-down, so a defaulted object gets its own
//! fields' defaults too; every default is a fresh copy.

use serde_json::Value;

use super::{MAX_DEPTH, Node};

/// A null that its schema does not allow (defaulting replaces it).
fn disallowed_null(value: &Value, schema: &Node) -> bool {
    value.is_null() && !schema.nullable
}

pub(super) fn apply(schema: &Node, value: &mut Value, depth: usize) {
    if depth > MAX_DEPTH {
        return;
    }
    match value {
        Value::Object(map) => {
            for (key, property) in &schema.properties {
                let Some(default) = &property.default else { continue };
                if map.get(key).is_none_or(|v| disallowed_null(v, property)) {
                    map.insert(key.clone(), default.clone());
                }
            }
            for (key, v) in map.iter_mut() {
                if let Some(property) = schema.properties.get(key) {
                    apply(property, v, depth + 1);
                } else if let Some(additional) = schema.additional_schema() {
                    if disallowed_null(v, additional) {
                        *v = additional.default.clone().unwrap_or(Value::Null);
                    }
                    apply(additional, v, depth + 1);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.items.as_deref() {
                for v in items {
                    if disallowed_null(v, item) {
                        *v = item.default.clone().unwrap_or(Value::Null);
                    }
                    apply(item, v, depth + 1);
                }
            }
        }
        _ => {}
    }
}
