//! Pruning (upstream's `schema/pruning`): every field the structural schema does not declare goes,
//! except where `x-kubernetes-preserve-unknown-fields` keeps them; then the nulls a field may not
//! hold and has no default for (`schema/defaulting`'s `PruneNonNullableNullsWithoutDefaults`).

use serde_json::Value;

use super::{Additional, Node, is_type_or_object_meta};

fn child(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_owned() } else { format!("{path}.{key}") }
}

/// Prunes `object` (a resource: its own type and object meta stay) and returns what went, unsorted.
pub(super) fn prune(root: &Node, object: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    walk(object, Some(root), true, "", &mut unknown);
    unknown
}

/// `resource`: the value is the root or an embedded resource, whose type and object meta stay.
fn walk(
    value: &mut Value,
    schema: Option<&Node>,
    resource: bool,
    path: &str,
    unknown: &mut Vec<String>,
) {
    let Some(schema) = schema else {
        drop_everything(value, path, unknown);
        return;
    };
    if schema.preserve_unknown {
        keep_unknown(value, schema, resource, path, unknown);
        return;
    }
    match value {
        Value::Object(map) => {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                if resource && is_type_or_object_meta(&key) {
                    continue;
                }
                let field = child(path, &key);
                let declared = match schema.properties.get(&key) {
                    Some(property) => Some(Some(property)),
                    None => match &schema.additional {
                        Some(Additional::Schema(s)) => Some(Some(s.as_ref())),
                        Some(Additional::Allows(_)) => Some(None),
                        None => None,
                    },
                };
                match declared {
                    Some(property) => {
                        if let Some(v) = map.get_mut(&key) {
                            let embedded = property.is_some_and(|p| p.embedded);
                            walk(v, property, embedded, &field, unknown);
                        }
                    }
                    None => {
                        map.remove(&key);
                        unknown.push(field);
                    }
                }
            }
        }
        Value::Array(items) => {
            let item = schema.items.as_deref();
            for (i, v) in items.iter_mut().enumerate() {
                walk(v, item, item.is_some_and(|s| s.embedded), &format!("{path}[{i}]"), unknown);
            }
        }
        _ => {}
    }
}

/// Under `x-kubernetes-preserve-unknown-fields`: undeclared fields stay, declared ones are pruned
/// by their own schemas.
fn keep_unknown(
    value: &mut Value,
    schema: &Node,
    resource: bool,
    path: &str,
    unknown: &mut Vec<String>,
) {
    match value {
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if resource && is_type_or_object_meta(key) {
                    continue;
                }
                let declared = match schema.properties.get(key) {
                    Some(property) => Some(Some(property)),
                    None => match &schema.additional {
                        Some(Additional::Schema(s)) => Some(Some(s.as_ref())),
                        Some(Additional::Allows(_)) => Some(None),
                        None => None,
                    },
                };
                if let Some(property) = declared {
                    let embedded = property.is_some_and(|p| p.embedded);
                    walk(v, property, embedded, &child(path, key), unknown);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = schema.items.as_deref() {
                for (i, v) in items.iter_mut().enumerate() {
                    keep_unknown(v, item, item.embedded, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

/// No schema at all (under `additionalProperties: true|false`, or `items` missing): every
/// object below loses every field. Iterative, as nothing in the schema bounds the depth here.
fn drop_everything(value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    let mut removed = Vec::new();
    let mut stack = vec![(value, path.to_owned())];
    while let Some((value, path)) = stack.pop() {
        match value {
            Value::Object(map) => {
                for (key, v) in std::mem::take(map) {
                    unknown.push(child(&path, &key));
                    removed.push(v);
                }
            }
            Value::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    stack.push((v, format!("{path}[{i}]")));
                }
            }
            _ => {}
        }
    }
    dismantle(removed);
}

/// Drops values without recursing (serde_json's drop recurses once per level).
fn dismantle(mut values: Vec<Value>) {
    while let Some(mut value) = values.pop() {
        match &mut value {
            Value::Array(items) => values.append(items),
            Value::Object(map) => values.extend(std::mem::take(map).into_iter().map(|(_, v)| v)),
            _ => {}
        }
    }
}

/// Drops null fields whose schema is neither nullable nor defaulted.
pub(super) fn nulls(schema: &Node, value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.retain(|key, v| {
                let Some(field) = schema.field(key) else { return true };
                if v.is_null() {
                    return field.nullable || field.default.is_some();
                }
                nulls(field, v);
                true
            });
        }
        Value::Array(items) => {
            if let Some(item) = schema.items.as_deref() {
                for v in items {
                    nulls(item, v);
                }
            }
        }
        _ => {}
    }
}
